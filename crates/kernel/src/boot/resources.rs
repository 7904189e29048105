//! The small early allocations between `paging_init()` and the per-CPU areas.
//!
//! After mem_map, setup_arch and start_kernel take a handful of cache-line-aligned
//! memblock allocations for bookkeeping: the HPET's and the IO-APIC's `struct resource`
//! (acpi_boot_init, io_apic_init_mappings), one resource per e820 entry
//! (e820__reserve_resources) and a `firmware_map_entry` per firmware e820 entry for
//! /sys/firmware/memmap (CONFIG_FIRMWARE_MEMMAP), and two copies of the command line (setup_command_line).
//! Each is tiny, but memblock packs them top-down into the partial page below mem_map,
//! so together with the per-CPU metadata they decide whether that page overflows into
//! one more reserved page.

use super::BootError;
use crate::memblock::Memblock;

/// `SMP_CACHE_BYTES` of the 686 builds (CONFIG_X86_L1_CACHE_SHIFT=6).
pub const SMP_CACHE_BYTES: u64 = 64;
/// `HPET_RESOURCE_NAME_SIZE` and `IOAPIC_RESOURCE_NAME_SIZE`.
const HPET_NAME: u64 = 9;
const IOAPIC_NAME: u64 = 11;
/// QEMU's pc machine: one IO-APIC, one HPET.
const NR_IOAPICS: u64 = 1;

/// sizeof(struct resource): start and end are `resource_size_t` (64-bit with PAE), then
/// name, flags, desc and the parent/sibling/child pointers.
pub fn sizeof_resource(pae: bool) -> u64 {
    let size_t = if pae { 8 } else { 4 };
    2 * size_t + 6 * 4
}

/// sizeof(struct firmware_map_entry): start, end (u64), type, a list_head and a kobject
/// (name, entry, parent, kset, ktype, sd, kref, flag bits: 36 bytes on i386).
const SIZEOF_FIRMWARE_MAP_ENTRY: u64 = 8 + 8 + 4 + 8 + 36;

/// setup_arch after paging_init: HPET, IO-APIC and e820 resources, firmware map entries.
pub fn reserve_resources(
    memblock: &mut Memblock,
    pae: bool,
    e820_entries: u64,
    firmware_e820_entries: u64,
) -> Result<(), BootError> {
    let res = sizeof_resource(pae);
    for size in [
        res + HPET_NAME,
        (IOAPIC_NAME + res) * NR_IOAPICS,
        res * e820_entries,
    ] {
        alloc_small(memblock, size, "resources")?;
    }
    for _ in 0..firmware_e820_entries {
        alloc_small(memblock, SIZEOF_FIRMWARE_MAP_ENTRY, "firmware memmap")?;
    }
    Ok(())
}

/// start_kernel's setup_command_line(): saved_command_line and static_command_line.
pub fn setup_command_line(memblock: &mut Memblock, cmdline: &str) -> Result<(), BootError> {
    let len = cmdline.len() as u64 + 1;
    for _ in 0..2 {
        alloc_small(memblock, len, "command line")?;
    }
    Ok(())
}

fn alloc_small(memblock: &mut Memblock, size: u64, what: &'static str) -> Result<(), BootError> {
    memblock
        .alloc_range(size, SMP_CACHE_BYTES, 0, u64::MAX, what)
        .map(|_| ())
        .map_err(|e| BootError::Panic(format!("Failed to allocate {what}: {e}")))
}
