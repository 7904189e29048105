//! A 32-bit process's upper page tables on the 64-bit kernel (4-level paging, compat
//! mode): `pgd_ctor`'s copy of the kernel's pgd entries, `__pud_alloc` and `__pmd_alloc`
//! on the first PTE page of a GiB, and their release at exit (`free_pgd_range`).
//!
//! What the real kernel counts, the model counts (arch/x86/mm/pgtable.c, mm/memory.c):
//! a PMD page goes through `pgtable_pmd_page_ctor` (NR_PAGETABLE, meminfo PageTables) and
//! `mm_inc_nr_pmds`; a PUD page only through `mm_inc_nr_puds`, so it shows in VmPTE but
//! not in PageTables; the pgd (two pages with PTI) in neither. With PTI, `set_pgd` writes
//! a user entry into both halves of the pgd (`pti_set_user_pgtbl`): the user copy as is,
//! the kernel copy with NX so the kernel never executes user code.

use super::{MmError, ProcId, Upper4};
use crate::gfp::GFP_PGTABLE_USER;
use crate::pgtable::Geometry;
use crate::pgtable_types::{_PAGE_NX, _PAGE_TABLE};
use crate::vmstat::NodeStatItem;
use crate::Kernel;
use machine::{Pfn, PhysAddr, PAGE_SIZE};

impl Kernel {
    /// `pgd_ctor` on 4-level paging: the kernel's pgd entries (from PAGE_OFFSET's up) are
    /// copied from `init_top_pgt`.
    pub(super) fn clone_kernel_pgd_4level(&mut self, pgd: PhysAddr) {
        let geo = self.geo;
        let first = geo.pgd_index(self.config.page_offset());
        let swapper = PhysAddr::new(self.swapper_pg_dir);
        for i in first..geo.ptrs_per_pgd() {
            let v = geo.read(&self.machine.mem, swapper, i).unwrap_or(0);
            let _ = geo.write(&mut self.machine.mem, pgd, i, v);
        }
    }

    /// `pmd_alloc(pud_alloc(pgd, va), va)`: the PMD page of `va`'s GiB, with the PUD page
    /// above it, each allocated (zeroed, GFP_PGTABLE_USER) and hooked in if missing.
    pub(super) fn pmd_alloc(&mut self, cpu: usize, p: ProcId, va: u64) -> Result<Pfn, MmError> {
        let gib = (va >> Geometry::PUD_SHIFT) as usize;
        let (pmd, pud) = {
            let u = self.upper4(p)?;
            (u.pmds.get(gib).copied().flatten(), u.pud)
        };
        if let Some(pmd) = pmd {
            return Ok(pmd);
        }
        let pud = match pud {
            Some(pud) => pud,
            None => self.__pud_alloc(cpu, p)?,
        };
        let pmd = self.mm_alloc_pages(GFP_PGTABLE_USER, 0, cpu, Some(p))?;
        // pgtable_pmd_page_ctor, mm_inc_nr_pmds, pud_populate.
        self.node.vm_stat[NodeStatItem::NrPagetable] += 1;
        let entry = pud.phys() + Geometry::long_mode().pud_index(va) * 8;
        self.write_entry(entry, pmd.phys().as_u64() | _PAGE_TABLE)?;
        let mm = self.mm.procs[p.0].mm.as_mut().ok_or(MmError::NoProc)?;
        let slot = mm.upper.pmds.get_mut(gib).ok_or(MmError::Segv(va))?;
        *slot = Some(pmd);
        mm.nr_pmds += 1;
        Ok(pmd)
    }

    fn upper4(&self, p: ProcId) -> Result<&Upper4, MmError> {
        let mm = self.mm.procs[p.0].mm.as_ref().ok_or(MmError::NoProc)?;
        Ok(&mm.upper)
    }

    /// `__pud_alloc`: the PUD page under pgd entry 0 (the whole 32-bit space), counted in
    /// the mm's page tables only (`mm_inc_nr_puds`; no page ctor, so not in PageTables).
    fn __pud_alloc(&mut self, cpu: usize, p: ProcId) -> Result<Pfn, MmError> {
        let pud = self.mm_alloc_pages(GFP_PGTABLE_USER, 0, cpu, Some(p))?;
        let mm = self.mm.procs[p.0].mm.as_mut().ok_or(MmError::NoProc)?;
        mm.upper.pud = Some(pud);
        mm.nr_puds += 1;
        let pgd = mm.pgd.phys();
        let val = pud.phys().as_u64() | _PAGE_TABLE;
        self.set_user_pgd(pgd, 0, val)?;
        Ok(pud)
    }

    /// `set_pgd` of a user entry: with PTI the user half gets it as is and the kernel half
    /// with NX (`pti_set_user_pgtbl`); without PTI only the pgd.
    fn set_user_pgd(&mut self, pgd: PhysAddr, idx: u64, val: u64) -> Result<(), MmError> {
        let nx = self.masks.supported & _PAGE_NX;
        if self.config.page_table_isolation {
            self.write_entry(pgd + PAGE_SIZE + idx * 8, val)?;
            self.write_entry(pgd + idx * 8, val | nx)
        } else {
            self.write_entry(pgd + idx * 8, val)
        }
    }

    fn write_entry(&mut self, at: PhysAddr, val: u64) -> Result<(), MmError> {
        self.machine
            .mem
            .write_u64(at, val)
            .map_err(|e| MmError::Bug(e.to_string()))
    }

    /// `free_pgd_range`'s upper levels at exit: the PMD pages (`pmd_free_tlb`,
    /// `pgtable_pmd_page_dtor`), then the PUD page.
    pub(crate) fn free_upper4(&mut self, cpu: usize, upper: &Upper4) {
        for pmd in upper.pmds.iter().flatten() {
            self.node.vm_stat[NodeStatItem::NrPagetable] -= 1;
            let _ = self.machine.mem.fill(pmd.phys(), PAGE_SIZE, 0);
            self.mm_free_pages(*pmd, 0, cpu);
        }
        if let Some(pud) = upper.pud {
            let _ = self.machine.mem.fill(pud.phys(), PAGE_SIZE, 0);
            self.mm_free_pages(pud, 0, cpu);
        }
    }
}
