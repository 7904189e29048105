//! The three x86 paging formats as tables of levels.
//!
//! A format is fully described, for walking purposes, by its list of levels from the top
//! (the table CR3 points at) down to the PTE level: how many entries a table holds, which
//! linear-address bits select one, how wide an entry is, and whether an entry may map a page
//! there. The numbers come from Intel SDM Vol. 3A ch. 4 and match Linux's
//! `pgtable-2level_types.h` / `pgtable-3level_types.h` / `pgtable_64_types.h`.

use core::fmt;

/// A page-table format understood by the MMU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum Format {
    /// Classic 32-bit paging: page directory + page table, 4-byte entries, 4 MiB pages with
    /// CR4.PSE.
    TwoLevel,
    /// PAE paging: 4-entry PDPT + page directory + page table, 8-byte entries, 2 MiB pages.
    Pae,
    /// x86-64 4-level paging (IA-32e), kept for comparison: 4 KiB / 2 MiB / 1 GiB pages.
    FourLevel,
}

/// Whether an entry at a level can map a page.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Leaf {
    /// Entries always point to a next-level table (PAE PDPT, PML4).
    Never,
    /// Entries always map a page (the PTE level).
    Always,
    /// Entries map a large page when their PS bit (7) is set. In 2-level paging the CPU
    /// honours PS only with CR4.PSE (see [`Format::large_pages_need_cr4_pse`]).
    WithPs,
}

/// One level of a paging format.
#[derive(Debug, PartialEq, Eq)]
pub struct PageTableLevel {
    /// The format this level belongs to.
    pub format: Format,
    /// 0 for the table CR3 points at, increasing downwards.
    pub depth: u8,
    /// Linux's name for the level (`pgd`, `pud`, `pmd`, `pte`).
    pub name: &'static str,
    /// The Intel SDM's name for the table (`PML4`, `PDPT`, `PD`, `PT`).
    pub sdm_name: &'static str,
    /// Entries per table.
    pub entries: u16,
    /// Right shift of a linear address that brings this level's index to bit 0; also log2
    /// of the span one entry covers.
    pub index_shift: u8,
    /// Bytes per entry (4 or 8).
    pub entry_size: u8,
    /// Whether an entry here may map a page.
    pub leaf: Leaf,
}

impl PageTableLevel {
    /// Bytes of linear address space one entry covers (the page size if it is a leaf).
    pub const fn span(&self) -> u64 {
        1 << self.index_shift
    }

    /// This level's index for a linear address.
    pub const fn index(&self, linear: u64) -> usize {
        ((linear >> self.index_shift) & (self.entries as u64 - 1)) as usize
    }

    /// Byte offset, inside its table, of the entry that translates `linear`.
    pub const fn entry_offset(&self, linear: u64) -> u64 {
        self.index(linear) as u64 * self.entry_size as u64
    }

    /// Size of one table of this level in bytes.
    pub const fn table_bytes(&self) -> u64 {
        self.entries as u64 * self.entry_size as u64
    }

    /// Whether this is the PTE level (every entry maps a 4 KiB page).
    pub const fn is_pte_level(&self) -> bool {
        matches!(self.leaf, Leaf::Always)
    }

    /// The large page an entry here maps when PS is set, if the level allows one.
    pub const fn large_page(&self) -> Option<PageSize> {
        match self.leaf {
            Leaf::WithPs => PageSize::from_shift(self.index_shift),
            _ => None,
        }
    }
}

impl fmt::Display for PageTableLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({:?} {})", self.name, self.format, self.sdm_name)
    }
}

/// Sizes of pages an x86 MMU can map.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum PageSize {
    Size4K,
    /// PAE and 4-level PDE with PS.
    Size2M,
    /// 2-level PDE with PS (needs CR4.PSE).
    Size4M,
    /// 4-level PDPTE with PS (needs 1 GiB page support).
    Size1G,
}

impl PageSize {
    /// log2 of the size.
    pub const fn shift(self) -> u8 {
        match self {
            PageSize::Size4K => 12,
            PageSize::Size2M => 21,
            PageSize::Size4M => 22,
            PageSize::Size1G => 30,
        }
    }

    /// The size in bytes.
    pub const fn bytes(self) -> u64 {
        1 << self.shift()
    }

    /// The page size of a given shift, if x86 has one.
    pub const fn from_shift(shift: u8) -> Option<PageSize> {
        match shift {
            12 => Some(PageSize::Size4K),
            21 => Some(PageSize::Size2M),
            22 => Some(PageSize::Size4M),
            30 => Some(PageSize::Size1G),
            _ => None,
        }
    }
}

const TWO_LEVEL: [PageTableLevel; 2] = [
    PageTableLevel {
        format: Format::TwoLevel,
        depth: 0,
        name: "pgd",
        sdm_name: "PD",
        entries: 1024,
        index_shift: 22,
        entry_size: 4,
        leaf: Leaf::WithPs,
    },
    PageTableLevel {
        format: Format::TwoLevel,
        depth: 1,
        name: "pte",
        sdm_name: "PT",
        entries: 1024,
        index_shift: 12,
        entry_size: 4,
        leaf: Leaf::Always,
    },
];

const PAE: [PageTableLevel; 3] = [
    PageTableLevel {
        format: Format::Pae,
        depth: 0,
        name: "pgd",
        sdm_name: "PDPT",
        entries: 4,
        index_shift: 30,
        entry_size: 8,
        leaf: Leaf::Never,
    },
    PageTableLevel {
        format: Format::Pae,
        depth: 1,
        name: "pmd",
        sdm_name: "PD",
        entries: 512,
        index_shift: 21,
        entry_size: 8,
        leaf: Leaf::WithPs,
    },
    PageTableLevel {
        format: Format::Pae,
        depth: 2,
        name: "pte",
        sdm_name: "PT",
        entries: 512,
        index_shift: 12,
        entry_size: 8,
        leaf: Leaf::Always,
    },
];

const FOUR_LEVEL: [PageTableLevel; 4] = [
    PageTableLevel {
        format: Format::FourLevel,
        depth: 0,
        name: "pgd",
        sdm_name: "PML4",
        entries: 512,
        index_shift: 39,
        entry_size: 8,
        leaf: Leaf::Never,
    },
    PageTableLevel {
        format: Format::FourLevel,
        depth: 1,
        name: "pud",
        sdm_name: "PDPT",
        entries: 512,
        index_shift: 30,
        entry_size: 8,
        leaf: Leaf::WithPs,
    },
    PageTableLevel {
        format: Format::FourLevel,
        depth: 2,
        name: "pmd",
        sdm_name: "PD",
        entries: 512,
        index_shift: 21,
        entry_size: 8,
        leaf: Leaf::WithPs,
    },
    PageTableLevel {
        format: Format::FourLevel,
        depth: 3,
        name: "pte",
        sdm_name: "PT",
        entries: 512,
        index_shift: 12,
        entry_size: 8,
        leaf: Leaf::Always,
    },
];

impl Format {
    /// The LEVELS table, top level first.
    pub const fn levels(self) -> &'static [PageTableLevel] {
        match self {
            Format::TwoLevel => &TWO_LEVEL,
            Format::Pae => &PAE,
            Format::FourLevel => &FOUR_LEVEL,
        }
    }

    /// The level at `depth` (0 = top), if the format has that many.
    pub fn level(self, depth: usize) -> Option<&'static PageTableLevel> {
        self.levels().get(depth)
    }

    /// The top level (the table CR3 points at).
    pub const fn top_level(self) -> &'static PageTableLevel {
        &self.levels()[0]
    }

    /// The PTE level.
    pub const fn pte_level(self) -> &'static PageTableLevel {
        let levels = self.levels();
        &levels[levels.len() - 1]
    }

    /// Bytes per entry.
    pub const fn entry_size(self) -> u8 {
        match self {
            Format::TwoLevel => 4,
            Format::Pae | Format::FourLevel => 8,
        }
    }

    /// Width of the linear addresses the format translates.
    pub const fn linear_bits(self) -> u32 {
        match self {
            Format::TwoLevel | Format::Pae => 32,
            Format::FourLevel => 48,
        }
    }

    /// Alignment of the top-level table CR3 points at (PAE's PDPT is 32 bytes, 32-aligned).
    pub const fn root_align(self) -> u64 {
        match self {
            Format::TwoLevel | Format::FourLevel => 4096,
            Format::Pae => 32,
        }
    }

    /// Whether entries are wide enough to hold the NX bit (63).
    pub const fn has_nx_bit(self) -> bool {
        !matches!(self, Format::TwoLevel)
    }

    /// Whether PS in a directory entry is honoured only when CR4.PSE is set.
    pub const fn large_pages_need_cr4_pse(self) -> bool {
        matches!(self, Format::TwoLevel)
    }

    /// Whether the top-level entries are loaded into PDPTE registers at CR3 write time
    /// instead of being read during each walk.
    pub const fn has_pdpte_registers(self) -> bool {
        matches!(self, Format::Pae)
    }

    /// The physical-address bits an entry can express at all (whatever the CPU's
    /// MAXPHYADDR): 32 for 2-level 4 KiB mappings (40 for PSE-36 large pages), 52 otherwise.
    pub const fn entry_phys_bits(self, large: bool) -> u32 {
        match (self, large) {
            (Format::TwoLevel, false) => 32,
            (Format::TwoLevel, true) => 40,
            _ => 52,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_cover_the_linear_address() {
        for format in [Format::TwoLevel, Format::Pae, Format::FourLevel] {
            let levels = format.levels();
            let bits: u32 = levels.iter().map(|l| l.entries.trailing_zeros()).sum();
            assert_eq!(bits + 12, format.linear_bits(), "{format:?}");
            for (depth, l) in levels.iter().enumerate() {
                assert_eq!(l.depth as usize, depth);
                assert_eq!(l.format, format);
                assert_eq!(l.entry_size, format.entry_size());
                assert!(l.entries.is_power_of_two());
                // each level's index sits right above the next one's
                let below = levels
                    .get(depth + 1)
                    .map_or(12, |n| n.index_shift as u32 + n.entries.trailing_zeros());
                assert_eq!(l.index_shift as u32, below, "{l}");
            }
            assert!(format.pte_level().is_pte_level());
            assert_eq!(format.pte_level().index_shift, 12);
        }
    }

    #[test]
    fn table_geometry_matches_linux() {
        // PTRS_PER_PGD / PTRS_PER_PTE and PGDIR_SHIFT of the i386 headers
        assert_eq!(Format::TwoLevel.top_level().entries, 1024);
        assert_eq!(Format::TwoLevel.top_level().index_shift, 22);
        assert_eq!(Format::Pae.top_level().table_bytes(), 32);
        assert_eq!(Format::Pae.levels()[1].index_shift, 21);
        assert_eq!(Format::Pae.pte_level().table_bytes(), 4096);
        assert_eq!(Format::TwoLevel.pte_level().table_bytes(), 4096);
    }

    #[test]
    fn large_pages_per_format() {
        let large = |f: Format| -> Vec<PageSize> {
            f.levels().iter().filter_map(|l| l.large_page()).collect()
        };
        assert_eq!(large(Format::TwoLevel), vec![PageSize::Size4M]);
        assert_eq!(large(Format::Pae), vec![PageSize::Size2M]);
        assert_eq!(
            large(Format::FourLevel),
            vec![PageSize::Size1G, PageSize::Size2M]
        );
    }

    #[test]
    fn index_extraction() {
        let pae = Format::Pae.levels();
        let va = 0xc123_4567u64;
        assert_eq!(pae[0].index(va), 3);
        assert_eq!(pae[1].index(va), (va as usize >> 21) & 511);
        assert_eq!(pae[2].index(va), (va as usize >> 12) & 511);
        assert_eq!(pae[2].entry_offset(va), ((va >> 12) & 511) * 8);
        let two = Format::TwoLevel.levels();
        assert_eq!(two[0].index(va), 0x304);
        assert_eq!(two[1].entry_offset(va), 0x234 * 4);
    }
}
