//! `get_user_pages()` (`__get_user_pages`: `follow_page_mask`, `faultin_page` loop) and
//! `madvise(MADV_POPULATE_READ)` (`faultin_vma_page_range`).
//!
//! The pages a caller asks for come with a reference, as 6.1's `try_grab_page` takes it:
//! FOLL_GET (`get_user_pages`) one per page, dropped with `put_page`; FOLL_PIN
//! (`pin_user_pages`) `GUP_PIN_COUNTING_BIAS` per order-0 page, dropped with
//! `unpin_user_page`, which is how `page_maybe_dma_pinned` tells a DMA pin from ordinary
//! references. A page unmapped (munmap, exit, IPC_RMID) while referenced loses its mapping
//! and its counters at once but stays allocated until the last reference goes.

use super::pgtable_user::WalkLen;
use super::{MmError, ProcId, PAGE_SIZE};
use crate::pgtable_types::{_PAGE_PRESENT, _PAGE_RW};
use crate::sched::TaskId;
use crate::vmstat::NodeStatItem;
use crate::Kernel;
use machine::Pfn;

/// `GUP_PIN_COUNTING_BIAS`: what one FOLL_PIN adds to an order-0 page's refcount.
pub const GUP_PIN_COUNTING_BIAS: i32 = 1 << 10;

impl Kernel {
    /// `follow_page_mask()`: the page mapped at `va` if its PTE allows the access; with
    /// `touch` (FOLL_TOUCH) the page found is marked accessed.
    pub(super) fn follow_page(
        &mut self,
        cpu: usize,
        p: ProcId,
        va: u64,
        write: bool,
        touch: bool,
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
        let pfn = (v & 0x000f_ffff_ffff_f000 & !crate::pgtable_types::_PAGE_NX) >> 12;
        if touch {
            self.node.folio_mark_accessed(cpu, pfn);
        }
        Ok(Some(Pfn::new(pfn)))
    }

    /// `__get_user_pages()` for process `p` on `cpu`: each page is looked up, faulted in
    /// with `handle_mm_fault` when missing, and looked up again (and, with `touch`,
    /// FOLL_TOUCH, marked accessed when found).
    #[allow(clippy::too_many_arguments)]
    pub fn gup_process(
        &mut self,
        cpu: usize,
        p: ProcId,
        addr: u64,
        npages: usize,
        write: bool,
        want: bool,
        touch: bool,
    ) -> Result<Vec<Pfn>, MmError> {
        let mut out = Vec::with_capacity(if want { npages } else { 0 });
        for i in 0..npages as u64 {
            let va = addr + i * PAGE_SIZE;
            let mut tries = 0;
            loop {
                if let Some(pfn) = self.follow_page(cpu, p, va, write, touch)? {
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

    /// The pages behind `task`'s buffer, faulted in on the task's CPU, before the caller
    /// takes its reference (FOLL_GET) or pin (FOLL_PIN) on each.
    fn gup_task(
        &mut self,
        task: TaskId,
        addr: u64,
        npages: usize,
        write: bool,
        touch: bool,
    ) -> Result<Vec<Pfn>, MmError> {
        let p = self.mm.by_task(task).ok_or(MmError::NoProc)?;
        let cpu = self.sched.tasks[task.0].cpu;
        self.gup_process(cpu, p, addr, npages, write, true, touch)
    }

    /// `get_user_pages(task, addr, npages, write)`: the pages behind a user buffer of
    /// `task`, faulted in as needed (run on the task's CPU), FOLL_TOUCH as 6.1 adds it.
    pub fn get_user_pages(
        &mut self,
        task: TaskId,
        addr: u64,
        npages: usize,
        write: bool,
    ) -> Result<Vec<Pfn>, MmError> {
        let pages = self.gup_task(task, addr, npages, write, true)?;
        for &pfn in &pages {
            self.node.mem_map[pfn].get(); // try_grab_page(FOLL_GET)
        }
        Ok(pages)
    }

    /// `pin_user_pages(addr, npages, FOLL_WRITE?)` of `task`'s buffer: the pages, each
    /// pinned (`GUP_PIN_COUNTING_BIAS` added, NR_FOLL_PIN_ACQUIRED counted).
    pub fn pin_user_pages(
        &mut self,
        task: TaskId,
        addr: u64,
        npages: usize,
        write: bool,
    ) -> Result<Vec<Pfn>, MmError> {
        // 6.1's pin_user_pages() adds FOLL_PIN but not FOLL_TOUCH.
        let pages = self.gup_task(task, addr, npages, write, false)?;
        for &pfn in &pages {
            let page = &mut self.node.mem_map[pfn];
            page.set_count(page.count() + GUP_PIN_COUNTING_BIAS);
            self.node.vm_stat[NodeStatItem::NrFollPinAcquired] += 1;
        }
        Ok(pages)
    }

    /// `page_ref_count()`.
    pub fn page_ref_count(&self, pfn: Pfn) -> i32 {
        self.node.mem_map[pfn].count()
    }

    /// `page_maybe_dma_pinned()` of an order-0 page: its refcount holds at least one pin's
    /// bias (ordinary references alone could, in theory, reach it too: "maybe").
    pub fn page_maybe_dma_pinned(&self, pfn: Pfn) -> bool {
        self.page_ref_count(pfn) >= GUP_PIN_COUNTING_BIAS
    }

    /// `put_page()`: drop one reference; the last one frees the page.
    pub fn put_page(&mut self, pfn: Pfn, cpu: usize) {
        self.mm_free_pages(pfn, 0, cpu);
    }

    /// `unpin_user_page()`: remove one pin; a page nothing else holds is freed.
    pub fn unpin_user_page(&mut self, pfn: Pfn, cpu: usize) -> Result<(), MmError> {
        let count = self.page_ref_count(pfn);
        if count < GUP_PIN_COUNTING_BIAS {
            return Err(MmError::Bug(format!(
                "unpin_user_page: pfn {:#x} is not pinned (refcount {count})",
                pfn.as_u64()
            )));
        }
        self.node.vm_stat[NodeStatItem::NrFollPinReleased] += 1;
        // The bias less one reference, then the last of it through put_page's free path.
        self.node.mem_map[pfn].set_count(count - (GUP_PIN_COUNTING_BIAS - 1));
        self.put_page(pfn, cpu);
        Ok(())
    }

    /// `unpin_user_pages()`.
    pub fn unpin_user_pages(&mut self, pages: &[Pfn], cpu: usize) -> Result<(), MmError> {
        pages
            .iter()
            .try_for_each(|&pfn| self.unpin_user_page(pfn, cpu))
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
        // faultin_vma_page_range(): FOLL_TOUCH, and lru_add_drain() when done.
        let r = if self.mm.fault_stream {
            self.populate_run(cpu, p, start, n as u64, false)
        } else {
            self.gup_process(cpu, p, start, n, false, false, true)
                .map(|_| ())
        };
        self.node.lru_add_drain(cpu);
        r
    }
}
