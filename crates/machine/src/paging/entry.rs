//! Encoding and decoding one page-table entry.
//!
//! An entry is a raw integer (4 or 8 bytes in simulated RAM); what its bits mean depends on
//! the level it sits at. [`PageTableEntry`] keeps the raw value and takes the level from the
//! format's LEVELS table whenever it must interpret it: the address field of a 2-level 4 MiB
//! page is split (bits 31:22, plus PSE-36's physical bits 39:32 in entry bits 20:13), bit 12
//! is PAT only in a large-page entry, and NX exists only in 8-byte entries.
//!
//! Encoding refuses only what cannot be represented (a misaligned or too-wide address, a
//! flag that would land on an address bit). Bits the CPU treats as reserved — a PAE PDPTE
//! with R/W set, say — encode fine: catching them is the MMU's job, as on real hardware.

use super::flags::PteFlags;
use super::level::{Format, Leaf, PageTableLevel};
use crate::addr::PhysAddr;
use core::fmt;

/// Address bits 51:12 of an 8-byte entry.
const ADDR_MASK_64: u64 = 0x000f_ffff_ffff_f000;
/// Address bits 31:12 of a 4-byte entry.
const ADDR_MASK_32: u64 = 0xffff_f000;
/// Bits 31:22 of a 2-level 4 MiB entry: physical bits 31:22.
const PSE_LOW_MASK: u64 = 0xffc0_0000;
/// Entry bit where PSE-36 keeps physical bit 32.
const PSE36_SHIFT: u32 = 13;
/// PSE-36 holds physical bits 39:32 in entry bits 20:13.
const PSE36_BITS: u32 = 8;

/// Why an entry cannot be encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    #[error("physical address {addr:#x} is not {align:#x}-aligned as a {level} entry requires")]
    Misaligned {
        addr: u64,
        align: u64,
        level: &'static PageTableLevel,
    },
    #[error("physical address {addr:#x} does not fit the {bits} address bits of a {level} entry")]
    TooWide {
        addr: u64,
        bits: u32,
        level: &'static PageTableLevel,
    },
    #[error("flags {flags:?} cannot be encoded in a {level} entry")]
    BadFlags {
        flags: PteFlags,
        level: &'static PageTableLevel,
    },
}

/// One page-table entry, as the raw bits stored in memory (a 4-byte entry is zero-extended).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PageTableEntry(u64);

impl fmt::Debug for PageTableEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PageTableEntry({:#x})", self.0)
    }
}

impl PageTableEntry {
    /// The all-zero, not-present entry (`pte_none`).
    pub const EMPTY: PageTableEntry = PageTableEntry(0);

    /// Wrap raw bits read from a table.
    pub const fn from_raw(raw: u64) -> Self {
        PageTableEntry(raw)
    }

    /// The raw bits, as stored in memory.
    pub const fn raw(self) -> u64 {
        self.0
    }

    /// Build an entry for `level`. With [`PteFlags::PSE`] at a level that allows large pages
    /// the entry maps a large page at `phys` (which must be aligned to it); at the PTE level
    /// bit 7 is PAT and `phys` is a 4 KiB frame; otherwise `phys` is the next table.
    pub fn new(
        level: &'static PageTableLevel,
        phys: PhysAddr,
        flags: PteFlags,
    ) -> Result<Self, EntryError> {
        let format = level.format;
        let large = is_large_bits(level, flags.bits());
        let bad = |flags| EntryError::BadFlags { flags, level };
        if flags.bits() & !PteFlags::all().bits() != 0 {
            return Err(bad(flags));
        }
        if flags.contains(PteFlags::NX) && !format.has_nx_bit() {
            return Err(bad(flags));
        }
        if flags.contains(PteFlags::PAT_LARGE) && !large {
            return Err(bad(flags));
        }
        let align = if large { level.span() } else { 4096 };
        let addr = phys.as_u64();
        if addr & (align - 1) != 0 {
            return Err(EntryError::Misaligned { addr, align, level });
        }
        let bits = format.entry_phys_bits(large);
        if addr >> bits != 0 {
            return Err(EntryError::TooWide { addr, bits, level });
        }
        let addr_bits = if large && format == Format::TwoLevel {
            (addr & PSE_LOW_MASK) | ((addr >> 32) << PSE36_SHIFT)
        } else {
            addr
        };
        Ok(PageTableEntry(addr_bits | flags.bits()))
    }

    /// P bit.
    pub const fn is_present(self) -> bool {
        self.0 & PteFlags::PRESENT.bits() != 0
    }

    /// Whether the entry, at `level`, is a large-page mapping (PS set where PS means
    /// "large page"). The 2-level MMU additionally requires CR4.PSE; that is the walker's
    /// business, not the encoding's.
    pub fn is_large(self, level: &PageTableLevel) -> bool {
        is_large_bits(level, self.0)
    }

    /// Whether the entry maps a page (a PTE, or a large-page directory entry).
    pub fn is_leaf(self, level: &PageTableLevel) -> bool {
        level.is_pte_level() || self.is_large(level)
    }

    /// The flags, read the way `level` defines them.
    pub fn flags(self, level: &PageTableLevel) -> PteFlags {
        let mut bits = self.0 & PteFlags::LOW_MASK;
        if self.is_large(level) {
            bits |= self.0 & PteFlags::PAT_LARGE.bits();
        }
        if level.format.has_nx_bit() {
            bits |= self.0 & PteFlags::NX.bits();
        }
        PteFlags::from_bits_retain(bits)
    }

    /// The physical address the entry holds at `level`: the next table, the 4 KiB frame, or
    /// the base of the large page.
    pub fn addr(self, level: &PageTableLevel) -> PhysAddr {
        if self.is_large(level) {
            self.large_addr(level)
        } else {
            self.table_addr(level.format)
        }
    }

    /// The address field read as a 4 KiB-aligned table or frame address (what the 2-level
    /// MMU uses for a PDE when CR4.PSE is clear, whatever the PS bit says).
    pub const fn table_addr(self, format: Format) -> PhysAddr {
        match format {
            Format::TwoLevel => PhysAddr::new(self.0 & ADDR_MASK_32),
            Format::Pae | Format::FourLevel => PhysAddr::new(self.0 & ADDR_MASK_64),
        }
    }

    /// The address field read as the base of a large page mapped at `level`.
    pub fn large_addr(self, level: &PageTableLevel) -> PhysAddr {
        match level.format {
            Format::TwoLevel => {
                let high = (self.0 >> PSE36_SHIFT) & ((1 << PSE36_BITS) - 1);
                PhysAddr::new((self.0 & PSE_LOW_MASK) | (high << 32))
            }
            Format::Pae | Format::FourLevel => {
                PhysAddr::new(self.0 & ADDR_MASK_64 & !(level.span() - 1))
            }
        }
    }

    /// The same entry with `flags` added.
    pub const fn with(self, flags: PteFlags) -> Self {
        PageTableEntry(self.0 | flags.bits())
    }

    /// The same entry with `flags` removed.
    pub const fn without(self, flags: PteFlags) -> Self {
        PageTableEntry(self.0 & !flags.bits())
    }
}

fn is_large_bits(level: &PageTableLevel, raw: u64) -> bool {
    matches!(level.leaf, Leaf::WithPs) && raw & PteFlags::PSE.bits() != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORMATS: [Format; 3] = [Format::TwoLevel, Format::Pae, Format::FourLevel];

    /// The fourteen distinct flag bits (PSE and PAT share bit 7).
    const DISTINCT: [PteFlags; 14] = [
        PteFlags::PRESENT,
        PteFlags::WRITABLE,
        PteFlags::USER,
        PteFlags::PWT,
        PteFlags::PCD,
        PteFlags::ACCESSED,
        PteFlags::DIRTY,
        PteFlags::PSE,
        PteFlags::GLOBAL,
        PteFlags::SOFTW1,
        PteFlags::SOFTW2,
        PteFlags::SOFTW3,
        PteFlags::PAT_LARGE,
        PteFlags::NX,
    ];

    fn combo(mask: u32) -> PteFlags {
        DISTINCT
            .iter()
            .enumerate()
            .filter(|(i, _)| mask & (1 << i) != 0)
            .fold(PteFlags::empty(), |acc, (_, f)| acc | *f)
    }

    /// Representative addresses for a mapping of `align` bytes within `bits` address bits.
    fn addresses(align: u64, bits: u32) -> [u64; 3] {
        let top = (1u64 << bits) - align;
        [0, align * 3, top]
    }

    #[test]
    fn every_flag_combination_round_trips() {
        let mut encoded = 0u32;
        for format in FORMATS {
            for level in format.levels() {
                for mask in 0..(1u32 << DISTINCT.len()) {
                    let flags = combo(mask);
                    let large = level.large_page().is_some() && flags.contains(PteFlags::PSE);
                    let expect_ok = (format.has_nx_bit() || !flags.contains(PteFlags::NX))
                        && (large || !flags.contains(PteFlags::PAT_LARGE));
                    let align = if large { level.span() } else { 4096 };
                    for addr in addresses(align, format.entry_phys_bits(large)) {
                        let e = PageTableEntry::new(level, PhysAddr::new(addr), flags);
                        let Ok(e) = e else {
                            assert!(!expect_ok, "{level} {flags:?} {addr:#x}: {e:?}");
                            continue;
                        };
                        assert!(expect_ok, "{level} {flags:?} accepted");
                        encoded += 1;
                        assert_eq!(e.flags(level), flags, "{level} {addr:#x}");
                        assert_eq!(e.addr(level), PhysAddr::new(addr), "{level} {flags:?}");
                        assert_eq!(e.is_large(level), large);
                        assert_eq!(e.is_leaf(level), large || level.is_pte_level());
                        assert_eq!(e.is_present(), flags.contains(PteFlags::PRESENT));
                        // flag bits sit at their architectural positions
                        assert_eq!(e.raw() & 0xfff, flags.bits() & 0xfff);
                        if format == Format::TwoLevel {
                            assert!(e.raw() <= u64::from(u32::MAX));
                        }
                        // decoding from the raw value alone gives the same entry back
                        let again = PageTableEntry::new(level, e.addr(level), e.flags(level));
                        assert_eq!(again, Ok(e));
                    }
                }
            }
        }
        assert!(encoded > 100_000, "only {encoded} encodings checked");
    }

    #[test]
    fn pse36_high_bits_live_in_20_13() {
        let pgd = Format::TwoLevel.top_level();
        let flags = PteFlags::PRESENT | PteFlags::WRITABLE | PteFlags::PSE | PteFlags::PAT_LARGE;
        let e = PageTableEntry::new(pgd, PhysAddr::new(0x3_4040_0000), flags).unwrap();
        assert_eq!(e.raw(), 0x4040_0000 | (3 << 13) | 0x1083);
        assert_eq!(e.addr(pgd), PhysAddr::new(0x3_4040_0000));
        // bit 21 is never an address bit
        let odd = PageTableEntry::from_raw(0x0020_0083);
        assert_eq!(odd.addr(pgd), PhysAddr::new(0));
        // the top of PSE-36's reach
        let top = PageTableEntry::new(pgd, PhysAddr::new(0xff_ffc0_0000), flags).unwrap();
        assert_eq!(top.raw() & 0x001f_e000, 0x001f_e000);
        assert!(matches!(
            PageTableEntry::new(pgd, PhysAddr::new(1 << 40), flags),
            Err(EntryError::TooWide { bits: 40, .. })
        ));
    }

    #[test]
    fn linux_encodings() {
        // head_32.S: PDE_IDENT_ATTR 0x063 on a 4 MiB identity page
        let pgd = Format::TwoLevel.top_level();
        let e = PageTableEntry::new(
            pgd,
            PhysAddr::new(0x40_0000),
            PteFlags::from_bits_retain(0x063) | PteFlags::PSE,
        )
        .unwrap();
        assert_eq!(e.raw(), 0x40_00e3);
        // __PAGE_KERNEL (P|RW|A|D|G|NX) on a PAE PTE above 4 GiB
        let pte = Format::Pae.pte_level();
        let k = PteFlags::PRESENT
            | PteFlags::WRITABLE
            | PteFlags::ACCESSED
            | PteFlags::DIRTY
            | PteFlags::GLOBAL
            | PteFlags::NX;
        let e = PageTableEntry::new(pte, PhysAddr::new(0x2_3456_7000), k).unwrap();
        assert_eq!(e.raw(), 0x8000_0002_3456_7163);
        // in a PTE, bit 7 is PAT, not a large page
        let e = PageTableEntry::new(pte, PhysAddr::new(0x1000), PteFlags::PAT).unwrap();
        assert!(!e.is_large(pte) && e.is_leaf(pte));
    }

    #[test]
    fn unencodable_entries_are_refused() {
        let pmd = &Format::Pae.levels()[1];
        let large = PteFlags::PRESENT | PteFlags::PSE;
        assert!(matches!(
            PageTableEntry::new(pmd, PhysAddr::new(0x1000), large),
            Err(EntryError::Misaligned {
                align: 0x20_0000,
                ..
            })
        ));
        assert!(matches!(
            PageTableEntry::new(pmd, PhysAddr::new(0x1234), PteFlags::PRESENT),
            Err(EntryError::Misaligned { align: 4096, .. })
        ));
        let pte2 = Format::TwoLevel.pte_level();
        assert!(matches!(
            PageTableEntry::new(pte2, PhysAddr::new(1 << 32), PteFlags::PRESENT),
            Err(EntryError::TooWide { bits: 32, .. })
        ));
        assert!(matches!(
            PageTableEntry::new(pte2, PhysAddr::new(0), PteFlags::NX),
            Err(EntryError::BadFlags { .. })
        ));
        assert!(matches!(
            PageTableEntry::new(pte2, PhysAddr::new(0), PteFlags::from_bits_retain(1 << 40)),
            Err(EntryError::BadFlags { .. })
        ));
    }

    #[test]
    fn pdpte_with_reserved_bits_still_encodes() {
        // Writing _PAGE_TABLE into a PAE PDPTE is a kernel bug the CPU catches at CR3 load;
        // the encoder must let the simulated kernel make it.
        let pdpt = Format::Pae.top_level();
        let bad = PteFlags::PRESENT | PteFlags::WRITABLE | PteFlags::USER;
        let e = PageTableEntry::new(pdpt, PhysAddr::new(0x5000), bad).unwrap();
        assert_eq!(e.raw(), 0x5007);
        assert_eq!(e.addr(pdpt), PhysAddr::new(0x5000));
    }
}
