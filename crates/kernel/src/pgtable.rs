//! Kernel page-table geometry and entry access (asm/pgtable-2level.h, pgtable-3level.h).
//!
//! i386 has two formats: 2-level (1024 four-byte entries per table, the PMD folded into the
//! PGD, 4 MiB large pages) and PAE 3-level (a 4-entry PDPT, 512 eight-byte entries per
//! PMD/PTE table, 2 MiB large pages). The kernel's page tables are bytes in simulated RAM;
//! low-memory tables are reached through the direct map, which for the simulator means a
//! physical access at `__pa(table)`. Tables in high memory must be kmapped first: callers
//! go through `highmem` for those.
//!
//! The 64-bit kernel (the `x86_64` variant) has a third: 4-level paging, PAE's 8-byte
//! entries and 512-entry tables with a PML4 (the pgd) and a PUD level above the PMD. The
//! p4d level is folded, as it is on a CPU without LA57.

use crate::pgtable_types::PteVal;
use machine::{BusError, PhysAddr, PhysMem};

/// The page-table shape of a kernel build.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Geometry {
    pub pae: bool,
    /// 4-level paging (long mode): pgd → pud → pmd → pte; `pae` is set too.
    pub long: bool,
}

impl Geometry {
    pub const fn new(pae: bool) -> Self {
        Geometry { pae, long: false }
    }
    /// The 64-bit kernel's 4-level format.
    pub const fn long_mode() -> Self {
        Geometry {
            pae: true,
            long: true,
        }
    }
    /// PUD_SHIFT of the 4-level format (one PUD entry spans 1 GiB).
    pub const PUD_SHIFT: u32 = 30;
    /// Index of `va`'s entry in its PUD table (4-level only).
    pub const fn pud_index(self, va: u64) -> u64 {
        (va >> Self::PUD_SHIFT) & 511
    }
    /// Bytes per entry.
    pub const fn entry_size(self) -> u64 {
        if self.pae {
            8
        } else {
            4
        }
    }
    /// PGDIR_SHIFT: 22 (2-level), 30 (PAE) or 39 (4-level).
    pub const fn pgdir_shift(self) -> u32 {
        if self.long {
            39
        } else if self.pae {
            30
        } else {
            22
        }
    }
    /// PMD_SHIFT: the span of one PMD entry (folded into the PGD without PAE).
    pub const fn pmd_shift(self) -> u32 {
        if self.pae {
            21
        } else {
            22
        }
    }
    pub const fn pmd_size(self) -> u64 {
        1 << self.pmd_shift()
    }
    pub const fn pmd_mask(self) -> u64 {
        !(self.pmd_size() - 1)
    }
    pub const fn ptrs_per_pgd(self) -> u64 {
        if self.long {
            512
        } else if self.pae {
            4
        } else {
            1024
        }
    }
    pub const fn ptrs_per_pmd(self) -> u64 {
        if self.pae {
            512
        } else {
            1
        }
    }
    pub const fn ptrs_per_pte(self) -> u64 {
        if self.pae {
            512
        } else {
            1024
        }
    }
    pub const fn pgd_index(self, va: u64) -> u64 {
        (va >> self.pgdir_shift()) & (self.ptrs_per_pgd() - 1)
    }
    pub const fn pmd_index(self, va: u64) -> u64 {
        (va >> self.pmd_shift()) & (self.ptrs_per_pmd() - 1)
    }
    /// Index of `va`'s entry in its PMD table: the PMD index with PAE, the PGD index without
    /// (where the PMD is folded into the page directory).
    pub const fn pmd_slot(self, va: u64) -> u64 {
        if self.pae {
            self.pmd_index(va)
        } else {
            self.pgd_index(va)
        }
    }
    pub const fn pte_index(self, va: u64) -> u64 {
        (va >> 12) & (self.ptrs_per_pte() - 1)
    }
    /// Physical-address bits of an entry (bits 12.. up to 36 with PAE as Linux limits it).
    pub const fn pfn_mask(self) -> PteVal {
        if self.pae {
            0x0000_000f_ffff_f000
        } else {
            0xffff_f000
        }
    }
    /// PTE_PFN_MASK for a large-page entry.
    pub const fn large_pfn_mask(self) -> PteVal {
        if self.pae {
            0x0000_000f_ffe0_0000
        } else {
            0xffc0_0000
        }
    }

    /// Read entry `idx` of the table at `table`.
    pub fn read(self, mem: &PhysMem, table: PhysAddr, idx: u64) -> Result<PteVal, BusError> {
        let pa = table + idx * self.entry_size();
        if self.pae {
            mem.read_u64(pa)
        } else {
            mem.read_u32(pa).map(u64::from)
        }
    }

    /// Write entry `idx` of the table at `table` (`set_pte` / `set_pmd` / `set_pgd`).
    pub fn write(
        self,
        mem: &mut PhysMem,
        table: PhysAddr,
        idx: u64,
        val: PteVal,
    ) -> Result<(), BusError> {
        let pa = table + idx * self.entry_size();
        if self.pae {
            mem.write_u64(pa, val)
        } else {
            mem.write_u32(pa, val as u32)
        }
    }

    /// The table an entry points to.
    pub const fn entry_table(self, val: PteVal) -> PhysAddr {
        PhysAddr::new(val & self.pfn_mask())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes() {
        let pae = Geometry::new(true);
        assert_eq!(pae.pgd_index(0xc000_0000), 3);
        assert_eq!(pae.pmd_index(0xc020_0000), 1);
        assert_eq!(pae.pte_index(0xc020_1000), 1);
        let two = Geometry::new(false);
        assert_eq!(two.pgd_index(0xc000_0000), 768);
        assert_eq!(two.pmd_index(0xc040_0000), 0);
        assert_eq!(two.pte_index(0xc040_3000), 3);
        assert_eq!(two.pmd_size(), 4 << 20);
        assert_eq!(pae.pmd_size(), 2 << 20);
    }

    #[test]
    fn read_write_round_trip() {
        let mut mem = PhysMem::new(&[(PhysAddr::new(0), 1 << 20)]).unwrap();
        let g = Geometry::new(false);
        g.write(&mut mem, PhysAddr::new(0x1000), 5, 0x1234_5063)
            .unwrap();
        assert_eq!(g.read(&mem, PhysAddr::new(0x1000), 5).unwrap(), 0x1234_5063);
        let p = Geometry::new(true);
        p.write(&mut mem, PhysAddr::new(0x2000), 511, 0x8000_0001_2345_6063)
            .unwrap();
        assert_eq!(
            p.read(&mem, PhysAddr::new(0x2000), 511).unwrap(),
            0x8000_0001_2345_6063
        );
    }
}
