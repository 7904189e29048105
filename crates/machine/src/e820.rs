//! The BIOS e820 memory map, as QEMU's `pc` machine and SeaBIOS hand it to the kernel.
//!
//! The e820 map is the firmware's answer to "where is RAM?": a list of typed physical
//! ranges. Its shape decides everything the kernel computes later (`max_pfn`, zones,
//! highmem), so it is built here by the same rules as the machine the reference boots ran
//! on, rather than written down per RAM size:
//!
//! - QEMU 7.2 `pc` (i440fx, `pc_piix.c`): RAM below 4 GiB is all of it when it is smaller
//!   than the traditional 3.5 GiB split; from 3.5 GiB on, the split moves down to 3 GiB
//!   (gigabyte alignment) and the rest is remapped above 4 GiB. The size is first rounded
//!   up to 8 KiB, as QEMU does for `-m`.
//! - SeaBIOS 1.16: the 256 KiB BIOS flash alias below 4 GiB and the 64 KiB BIOS segment at
//!   0xf0000 are reserved, the legacy 640 KiB – 960 KiB hole is dropped, the 1 KiB EBDA at
//!   the top of conventional memory is reserved, and the top of RAM below 4 GiB is taken
//!   for the high table zone: 256 KiB are reserved, then the part QEMU's 128 KiB ACPI
//!   table blob did not use is given back, leaving the last 128 KiB reserved.
//!
//! The map is kept sorted and merged, like SeaBIOS keeps its own list. The kernel's edits
//! (`mem=`, trimming the BIOS range) belong to the kernel crate and work on a copy.

use crate::addr::PhysAddr;
use core::fmt;

/// Largest RAM the simulated machine takes: what a PAE kernel can address (36 bits).
pub const MAX_RAM_BYTES: u64 = 64 << 30;

/// QEMU rounds `-m` up to this granularity.
const QEMU_RAM_ALIGN: u64 = 8 << 10;
/// QEMU's traditional split of RAM below 4 GiB (`max-ram-below-4g` default).
const QEMU_MAX_RAM_BELOW_4G: u64 = 0xe000_0000;
/// With gigabyte alignment, a machine that needs a split gets RAM up to 3 GiB below 4 GiB.
const QEMU_GIGABYTE_SPLIT: u64 = 0xc000_0000;
const FOUR_GIB: u64 = 1 << 32;

/// End of conventional memory (640 KiB) and the EBDA SeaBIOS reserves just below it.
const LOWRAM_END: u64 = 0xa_0000;
const EBDA_SIZE: u64 = 0x400;
/// The legacy VGA window: not RAM to the CPU.
const VGA_START: u64 = 0xa_0000;
const VGA_END: u64 = 0xc_0000;
/// SeaBIOS's own 64 KiB segment.
const BIOS_ADDR: u64 = 0xf_0000;
const BIOS_SIZE: u64 = 0x1_0000;
/// The BIOS flash alias at the very top of the 32-bit space.
const BIOS_FLASH_ADDR: u64 = 0xfffc_0000;
const BIOS_FLASH_SIZE: u64 = 256 << 10;
/// SeaBIOS's high table zone (BUILD_MAX_HIGHTABLE) and QEMU's ACPI blob inside it.
const HIGH_TABLE_SIZE: u64 = 256 << 10;
const ACPI_BLOB_SIZE: u64 = 128 << 10;
/// Smallest RAM with room for SeaBIOS's tables above 1 MiB.
const MIN_RAM_BYTES: u64 = 2 << 20;

/// The type of an e820 range, with the numbers the BIOS interface uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum E820Type {
    /// E820_TYPE_RAM (1): usable RAM.
    Usable,
    /// E820_TYPE_RESERVED (2).
    Reserved,
    /// E820_TYPE_ACPI (3): ACPI tables, reclaimable after parsing.
    Acpi,
    /// E820_TYPE_NVS (4): ACPI non-volatile storage.
    Nvs,
    /// E820_TYPE_UNUSABLE (5): RAM with errors.
    Unusable,
}

impl E820Type {
    /// The number the BIOS returns in `int 15h, ax=e820h`. When ranges overlap, the kernel
    /// keeps the type with the higher number.
    pub const fn code(self) -> u32 {
        match self {
            E820Type::Usable => 1,
            E820Type::Reserved => 2,
            E820Type::Acpi => 3,
            E820Type::Nvs => 4,
            E820Type::Unusable => 5,
        }
    }

    /// The word the kernel prints after a range (`e820_print_type`).
    pub const fn kernel_name(self) -> &'static str {
        match self {
            E820Type::Usable => "usable",
            E820Type::Reserved => "reserved",
            E820Type::Acpi => "ACPI data",
            E820Type::Nvs => "ACPI NVS",
            E820Type::Unusable => "unusable",
        }
    }
}

impl fmt::Display for E820Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kernel_name())
    }
}

/// One range of the map: `size` bytes from `addr`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct E820Entry {
    pub addr: PhysAddr,
    pub size: u64,
    pub kind: E820Type,
}

impl E820Entry {
    pub const fn new(addr: u64, size: u64, kind: E820Type) -> Self {
        E820Entry {
            addr: PhysAddr::new(addr),
            size,
            kind,
        }
    }

    /// First byte past the range (saturating: a range may run to the end of the space).
    pub fn end(&self) -> u64 {
        self.addr.as_u64().saturating_add(self.size)
    }
}

/// The kernel's way of printing a range: `[mem 0x%016llx-0x%016llx] usable`.
impl fmt::Display for E820Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[mem {:#018x}-{:#018x}] {}",
            self.addr.as_u64(),
            self.end().wrapping_sub(1),
            self.kind
        )
    }
}

/// A machine that cannot be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum E820Error {
    #[error("RAM size {0} bytes is too small: the pc machine needs at least 2 MiB")]
    TooSmall(u64),
    #[error("RAM size {0} bytes is too large: the simulated machine holds at most 64 GiB")]
    TooLarge(u64),
}

/// The firmware memory map plus the RAM behind it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct E820Map {
    entries: Vec<E820Entry>,
    /// Physical RAM banks (start, length): what memory chips answer, whatever the map says.
    banks: Vec<(PhysAddr, u64)>,
}

impl E820Map {
    /// The map QEMU 7.2's `pc` machine with SeaBIOS 1.16 presents for `-m ram_bytes`.
    pub fn qemu_pc(ram_bytes: u64) -> Result<E820Map, E820Error> {
        if ram_bytes < MIN_RAM_BYTES {
            return Err(E820Error::TooSmall(ram_bytes));
        }
        if ram_bytes > MAX_RAM_BYTES {
            return Err(E820Error::TooLarge(ram_bytes));
        }
        let ram = ram_bytes.div_ceil(QEMU_RAM_ALIGN) * QEMU_RAM_ALIGN;
        let (below_4g, above_4g) = qemu_pc_ram_split(ram);

        let mut map = E820Map {
            entries: Vec::new(),
            banks: Vec::new(),
        };
        // QEMU's fw_cfg "etc/e820": the RAM.
        map.add(0, below_4g, E820Type::Usable);
        if above_4g > 0 {
            map.add(FOUR_GIB, above_4g, E820Type::Usable);
        }
        // SeaBIOS qemu_preinit: the flash alias at the top of 4 GiB.
        map.add(BIOS_FLASH_ADDR, BIOS_FLASH_SIZE, E820Type::Reserved);
        // SeaBIOS malloc_preinit: nothing between 640 KiB and the BIOS, the BIOS itself.
        map.remove(LOWRAM_END, BIOS_ADDR - LOWRAM_END);
        map.add(BIOS_ADDR, BIOS_SIZE, E820Type::Reserved);
        // The high table zone at the top of RAM below 4 GiB.
        let high_zone = (below_4g - HIGH_TABLE_SIZE) & !15;
        map.add(high_zone, HIGH_TABLE_SIZE, E820Type::Reserved);
        // The EBDA at the top of conventional memory.
        map.add(LOWRAM_END - EBDA_SIZE, EBDA_SIZE, E820Type::Reserved);
        // malloc_prepboot: the ACPI blob sits at the top of the zone (64-byte aligned);
        // whole pages below it go back to RAM.
        let acpi = (high_zone + HIGH_TABLE_SIZE - ACPI_BLOB_SIZE) & !63;
        let giveback = (acpi - high_zone) & !(crate::PAGE_SIZE - 1);
        if giveback > 0 {
            map.add(high_zone, giveback, E820Type::Usable);
        }

        map.banks.push((PhysAddr::new(0), VGA_START));
        map.banks.push((PhysAddr::new(VGA_END), below_4g - VGA_END));
        if above_4g > 0 {
            map.banks.push((PhysAddr::new(FOUR_GIB), above_4g));
        }
        Ok(map)
    }

    /// A map from explicit entries (sorted and merged); the RAM banks are taken to be the
    /// usable, ACPI and NVS ranges.
    pub fn from_entries(entries: &[E820Entry]) -> E820Map {
        let mut map = E820Map {
            entries: Vec::new(),
            banks: Vec::new(),
        };
        for e in entries {
            map.add(e.addr.as_u64(), e.size, e.kind);
        }
        map.banks = map
            .entries
            .iter()
            .filter(|e| matches!(e.kind, E820Type::Usable | E820Type::Acpi | E820Type::Nvs))
            .map(|e| (e.addr, e.size))
            .collect();
        map
    }

    /// The ranges, ascending and non-overlapping.
    pub fn entries(&self) -> &[E820Entry] {
        &self.entries
    }

    /// Physical RAM (start, length), ascending: the argument for `PhysMem::new`.
    pub fn ram_banks(&self) -> Vec<(PhysAddr, u64)> {
        self.banks.clone()
    }

    /// Total bytes of usable RAM according to the map.
    pub fn usable_bytes(&self) -> u64 {
        self.entries
            .iter()
            .filter(|e| e.kind == E820Type::Usable)
            .map(|e| e.size)
            .sum()
    }

    /// Mark `[start, start+size)` as `kind`, overriding what was there (SeaBIOS `e820_add`).
    fn add(&mut self, start: u64, size: u64, kind: E820Type) {
        if size == 0 {
            return;
        }
        self.remove(start, size);
        let at = self
            .entries
            .iter()
            .position(|e| e.addr.as_u64() > start)
            .unwrap_or(self.entries.len());
        self.entries.insert(at, E820Entry::new(start, size, kind));
        self.merge();
    }

    /// Drop `[start, start+size)` from every range, splitting ranges it cuts in two.
    fn remove(&mut self, start: u64, size: u64) {
        let end = start.saturating_add(size);
        let mut out = Vec::with_capacity(self.entries.len() + 1);
        for e in &self.entries {
            let (s, t) = (e.addr.as_u64(), e.end());
            if t <= start || s >= end {
                out.push(*e);
                continue;
            }
            if s < start {
                out.push(E820Entry::new(s, start - s, e.kind));
            }
            if t > end {
                out.push(E820Entry::new(end, t - end, e.kind));
            }
        }
        self.entries = out;
    }

    /// Join neighbours of the same type.
    fn merge(&mut self) {
        let mut out: Vec<E820Entry> = Vec::with_capacity(self.entries.len());
        for e in &self.entries {
            if let Some(last) = out.last_mut() {
                if last.kind == e.kind && last.end() == e.addr.as_u64() {
                    last.size += e.size;
                    continue;
                }
            }
            out.push(*e);
        }
        self.entries = out;
    }
}

/// How QEMU's `pc` machine splits RAM around the PCI hole: (below 4 GiB, above 4 GiB).
pub fn qemu_pc_ram_split(ram: u64) -> (u64, u64) {
    let mut lowmem = QEMU_MAX_RAM_BELOW_4G;
    if ram >= QEMU_MAX_RAM_BELOW_4G {
        lowmem = lowmem.min(QEMU_GIGABYTE_SPLIT);
    }
    if ram >= lowmem {
        (lowmem, ram - lowmem)
    } else {
        (ram, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The map's ranges as the kernel prints them (without the `BIOS-e820: ` prefix).
    fn lines(ram: u64) -> Vec<String> {
        E820Map::qemu_pc(ram)
            .unwrap()
            .entries()
            .iter()
            .map(E820Entry::to_string)
            .collect()
    }

    #[test]
    fn one_gib_has_no_ram_above_4g() {
        assert_eq!(
            lines(1 << 30),
            [
                "[mem 0x0000000000000000-0x000000000009fbff] usable",
                "[mem 0x000000000009fc00-0x000000000009ffff] reserved",
                "[mem 0x00000000000f0000-0x00000000000fffff] reserved",
                "[mem 0x0000000000100000-0x000000003ffdffff] usable",
                "[mem 0x000000003ffe0000-0x000000003fffffff] reserved",
                "[mem 0x00000000fffc0000-0x00000000ffffffff] reserved",
            ]
        );
    }

    #[test]
    fn split_moves_to_3g_from_3584m() {
        assert_eq!(qemu_pc_ram_split(3 << 30), (3 << 30, 0));
        assert_eq!(qemu_pc_ram_split(3583 << 20), (3583 << 20, 0));
        assert_eq!(qemu_pc_ram_split(3584 << 20), (3 << 30, 512 << 20));
        assert_eq!(qemu_pc_ram_split(16 << 30), (3 << 30, 13 << 30));
        let l = lines(3584 << 20);
        assert_eq!(l[3], "[mem 0x0000000000100000-0x00000000bffdffff] usable");
        assert_eq!(l[6], "[mem 0x0000000100000000-0x000000011fffffff] usable");
    }

    #[test]
    fn sizes_are_rounded_like_qemu() {
        let m = E820Map::qemu_pc((512 << 20) + 1).unwrap();
        let top = m.entries()[4];
        assert_eq!(top.kind, E820Type::Reserved);
        assert_eq!(top.end(), (512 << 20) + 8192);
        assert_eq!(top.size, 128 << 10);
    }

    #[test]
    fn banks_skip_the_vga_window() {
        let m = E820Map::qemu_pc(8 << 30).unwrap();
        assert_eq!(
            m.ram_banks(),
            vec![
                (PhysAddr::new(0), 0xa_0000),
                (PhysAddr::new(0xc_0000), 0xc000_0000 - 0xc_0000),
                (PhysAddr::new(1 << 32), 5 << 30),
            ]
        );
        assert_eq!(
            m.usable_bytes(),
            0x9fc00 + 0xbffe_0000 - 0x10_0000 + (5 << 30)
        );
    }

    #[test]
    fn bad_sizes() {
        assert_eq!(E820Map::qemu_pc(0), Err(E820Error::TooSmall(0)));
        assert!(E820Map::qemu_pc(64 << 30).is_ok());
        assert!(matches!(
            E820Map::qemu_pc((64 << 30) + 1),
            Err(E820Error::TooLarge(_))
        ));
    }

    #[test]
    fn from_entries_sorts_and_merges() {
        let m = E820Map::from_entries(&[
            E820Entry::new(0x10_0000, 0x10_0000, E820Type::Usable),
            E820Entry::new(0, 0x9_f000, E820Type::Usable),
            E820Entry::new(0x20_0000, 0x10_0000, E820Type::Usable),
        ]);
        assert_eq!(m.entries().len(), 2);
        assert_eq!(m.entries()[1].size, 0x20_0000);
        assert_eq!(m.ram_banks().len(), 2);
    }
}
