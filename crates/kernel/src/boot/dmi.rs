//! `dmi_setup()`: the firmware's SMBIOS tables, read early in setup_arch.
//!
//! What matters for memory is where the kernel keeps what it saves: the identification
//! strings (BIOS vendor, product name, …) and the memory-device array go through
//! `dmi_alloc()`, which on x86 is `extend_brk()` — before `early_alloc_pgt_buf()` takes its
//! page-aligned buffer from the brk. A few hundred bytes of strings therefore push the
//! page-table buffer one page further and make `reserve_brk()` keep one page more. The
//! tables are those QEMU 7.2's `pc` machine builds (SMBIOS 2.8, SeaBIOS 1.16.2), which the
//! reference boots print in their `DMI:` line.

use super::brk::Brk;
use super::BootError;

/// QEMU's strings for the `pc` (i440FX) machine and SeaBIOS, as dmi_decode() saves them.
const BIOS_VENDOR: &str = "SeaBIOS";
const BIOS_VERSION: &str = "1.16.2-debian-1.16.2-1";
const BIOS_DATE: &str = "04/01/2014";
const SYS_VENDOR: &str = "QEMU";
const PRODUCT_NAME: &str = "Standard PC (i440FX + PIIX, 1996)";
const MACHINE_VERSION: &str = "pc-i440fx-7.2";

/// QEMU describes RAM as DIMMs of at most 16 GiB (SMBIOS type 17 entries).
const QEMU_MAX_DIMM: u64 = 16 << 30;
/// sizeof(struct dmi_memdev_info) on i386: two pointers, a u64, a u16, a u8 (4-aligned).
const DMI_MEMDEV_INFO: u64 = 20;

/// The strings and arrays dmi_decode() and dmi_memdev_walk() save, in bytes, in order.
fn saved_objects(ram: u64) -> Vec<u64> {
    let string = |s: &str| s.len() as u64 + 1;
    let dimms = ram.div_ceil(QEMU_MAX_DIMM).max(1);
    vec![
        // Type 0: vendor, version, date, then the BIOS release "0.0" in an 8-byte buffer
        // (QEMU leaves the EC firmware release at 0xff.0xff, which is not saved).
        string(BIOS_VENDOR),
        string(BIOS_VERSION),
        string(BIOS_DATE),
        8,
        // Type 1: vendor, product, version (no serial, an all-zero UUID, no SKU/family).
        string(SYS_VENDOR),
        string(PRODUCT_NAME),
        string(MACHINE_VERSION),
        // Type 3: chassis vendor, type (printed into a 3-byte buffer), version.
        string(SYS_VENDOR),
        3,
        string(MACHINE_VERSION),
        // dmi_memdev_walk(): one dmi_memdev_info per type-17 device.
        dimms * DMI_MEMDEV_INFO,
    ]
}

/// `dmi_setup()`: save the identification into the brk (`dmi_alloc`, int-aligned) and
/// return the kernel's lines.
pub fn dmi_setup(brk: &mut Brk, ram: u64) -> Result<Vec<String>, BootError> {
    for size in saved_objects(ram) {
        brk.extend(size, 4)?;
    }
    Ok(vec![
        "SMBIOS 2.8 present.".to_string(),
        format!("DMI: {SYS_VENDOR} {PRODUCT_NAME}, BIOS {BIOS_VERSION} {BIOS_DATE}"),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_take_part_of_one_page_and_push_the_next_page_aligned_user() {
        let mut brk = Brk::new(0x1f0b000, 0x2135000);
        brk.extend(4096, 4096).expect("head_32 table");
        dmi_setup(&mut brk, 8 << 30).expect("dmi");
        let used = brk.end - 0x1f0c000;
        assert!(used > 0 && used < 4096, "{used}");
        let next = brk.extend(4096, 4096).expect("pgt_buf");
        assert_eq!(next, 0x1f0d000);
    }
}
