//! `get_user_pages()` (`__get_user_pages`: `follow_page_mask`, `faultin_page` loop) and
//! `madvise(MADV_POPULATE_READ)` (`faultin_vma_page_range`).

use super::pgtable_user::WalkLen;
use super::{MmError, ProcId, PAGE_SIZE};
use crate::pgtable_types::{_PAGE_PRESENT, _PAGE_RW};
use crate::sched::TaskId;
use crate::Kernel;
use machine::Pfn;

impl Kernel {
    /// `follow_page_mask()`: the page mapped at `va` if its PTE allows the access.
    fn follow_page(
        &mut self,
        cpu: usize,
        p: ProcId,
        va: u64,
        write: bool,
    ) -> Result<Option<Pfn>, MmError> {
        let key = (va >> self.pmd_shift()) as u32;
        let Some(ptepfn) = self.mm.procs[p.0]
            .mm
            .as_ref()
            .and_then(|m| m.pte_pages.pfn(key))
        else {
            return Ok(None);
        };
        let idx = (va >> 12) & (self.ptes_per_page() - 1);
        let m = self.pte_map(cpu, ptepfn, WalkLen::Short)?;
        let v = self.pte_get(cpu, m, idx);
        self.pte_unmap(cpu, m)?;
        let v = v?;
        if v & _PAGE_PRESENT == 0 || (write && v & _PAGE_RW == 0) {
            return Ok(None);
        }
        Ok(Some(Pfn::new(
            (v & 0x000f_ffff_ffff_f000 & !crate::pgtable_types::_PAGE_NX) >> 12,
        )))
    }

    /// `__get_user_pages()` for process `p` on `cpu`: each page is looked up, faulted in
    /// with `handle_mm_fault` when missing, and looked up again.
    pub fn gup_process(
        &mut self,
        cpu: usize,
        p: ProcId,
        addr: u64,
        npages: usize,
        write: bool,
        want: bool,
    ) -> Result<Vec<Pfn>, MmError> {
        let mut out = Vec::with_capacity(if want { npages } else { 0 });
        for i in 0..npages as u64 {
            let va = addr + i * PAGE_SIZE;
            let mut tries = 0;
            loop {
                if let Some(pfn) = self.follow_page(cpu, p, va, write)? {
                    if want {
                        out.push(pfn);
                    }
                    break;
                }
                tries += 1;
                if tries > 3 {
                    return Err(MmError::Bug(format!("gup: no progress at {va:#x}")));
                }
                self.handle_mm_fault(cpu, p, va, write)?; // faultin_page()
            }
        }
        Ok(out)
    }

    /// `get_user_pages(task, addr, npages, write)`: the pages behind a user buffer of
    /// `task`, faulted in as needed (run on the task's CPU).
    pub fn get_user_pages(
        &mut self,
        task: TaskId,
        addr: u64,
        npages: usize,
        write: bool,
    ) -> Result<Vec<Pfn>, MmError> {
        let p = self.mm.by_task(task).ok_or(MmError::NoProc)?;
        let cpu = self.sched.tasks[task.0].cpu;
        self.gup_process(cpu, p, addr, npages, write, true)
    }

    /// `madvise(start, len, MADV_POPULATE_READ)`.
    pub fn madvise_populate_read(
        &mut self,
        cpu: usize,
        p: ProcId,
        start: u64,
        len: u64,
    ) -> Result<(), MmError> {
        let n = len.div_ceil(PAGE_SIZE) as usize;
        self.gup_process(cpu, p, start, n, false, false).map(|_| ())
    }
}
