//! User accesses through the simulated MMU and the fault path: `exc_page_fault` →
//! `do_user_addr_fault` → `handle_mm_fault` → `handle_pte_fault` → `do_read_fault` (with
//! fault-around where the VMA's ops have `map_pages`: `filemap.rs`; SysV shm's have not) /
//! `do_shared_fault` / `do_anonymous_page` / `do_cow_fault` / `do_wp_page`.
//!
//! RSS is counted as 6.1 counts it with SPLIT_RSS_COUNTING: a fault adds its pages to the
//! faulting task's `rss_stat` (`inc_mm_counter_fast`), which goes into the mm's counters
//! every `TASK_RSS_EVENTS_THRESH` faults (`check_sync_rss_stat`) and at exit; what
//! /proc/PID/status, the OOM killer and `get_mm_rss` read are the mm's counters.

use super::pgtable_user::{PteMap, WalkLen};
use super::{MmError, ProcId, VmaKind, PAGE_SIZE};
use crate::gfp::{Gfp, GFP_HIGHUSER_MOVABLE};
use crate::pgtable_types::{
    _PAGE_ACCESSED, _PAGE_DIRTY, _PAGE_NX, _PAGE_PRESENT, _PAGE_RW, _PAGE_USER,
};
use crate::vmstat::{NodeStatItem, VmEventItem};
use crate::Kernel;
use machine::{Access, AccessError, Pfn, VirtAddr};

impl super::Process {
    /// `oom_unkillable_task()`: the global init (no parent), or a stand-in for part of it
    /// ([`super::Process::init_part`]).
    pub fn oom_unkillable(&self) -> bool {
        self.ppid == 0 || self.init_part
    }

    /// `sync_mm_rss()` of this task ([`Kernel::sync_mm_rss`]).
    #[inline(never)]
    pub(super) fn sync_mm_rss(&mut self) {
        let st = std::mem::take(&mut self.rss_stat);
        if let Some(mm) = self.mm.as_mut() {
            mm.rss.add(st.count);
        }
    }
}

/// What `handle_mm_fault` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultDone {
    /// A PTE was installed or made writable.
    Mapped(Pfn),
    /// The PTE was already there (another path or a spurious fault).
    Present(Pfn),
}

/// `TASK_RSS_EVENTS_THRESH`: a task's RSS increments reach its mm once per this many faults
/// (the sync happens on the fault after: every 66th).
pub const TASK_RSS_EVENTS_THRESH: u32 = 64;

/// The CPU's access for a user-mode read or write.
#[inline(always)]
pub(super) const fn user_access_kind(write: bool) -> Access {
    if write {
        Access::USER_WRITE
    } else {
        Access::USER_READ
    }
}

/// Which RSS counter a new mapping adds to.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum RssKind {
    File,
    Anon,
    Shmem,
}

/// What the fault path reads of the VMA.
pub(super) struct VmaView {
    pub(super) start: u64,
    pub(super) read: bool,
    pub(super) write: bool,
    pub(super) exec: bool,
    pub(super) kind: VmaKind,
}

impl Kernel {
    /// `switch_mm()`: process `p` runs on `cpu` — its task becomes current and its pgd is
    /// loaded into CR3.
    pub fn switch_to_process(&mut self, cpu: usize, p: ProcId) -> Result<(), MmError> {
        let task = self.mm.procs[p.0].task;
        self.context_switch(cpu, task)
            .map_err(|e| MmError::Bug(e.to_string()))?;
        let pgd = self.mm.procs[p.0].mm.as_ref().ok_or(MmError::NoProc)?.pgd;
        if self.machine.cpus[cpu].regs().cr3 & !0xfff != pgd.phys().as_u64() {
            crate::trace::tlb_flush(cpu, crate::trace::FlushReason::OnTaskSwitch, -1);
            self.machine
                .write_cr3(cpu, pgd.phys().as_u64())
                .map_err(|e| MmError::Bug(e.to_string()))?;
        }
        Ok(())
    }

    /// A user-mode access by the current process on `cpu`: the TLB, then the walk; a #PF
    /// goes to the fault handler with the CPU's error code and the access is retried.
    pub fn user_access(
        &mut self,
        cpu: usize,
        p: ProcId,
        va: u64,
        write: bool,
    ) -> Result<(), MmError> {
        let access = user_access_kind(write);
        for _ in 0..4 {
            match self.machine.translate(cpu, VirtAddr::new(va), access) {
                Ok(_) => return Ok(()),
                Err(AccessError::PageFault(pf)) => {
                    crate::trace::page_fault_user(cpu, pf.addr.as_u64(), pf.error_code.bits());
                    let write = pf.error_code.bits() & 2 != 0;
                    self.handle_mm_fault(cpu, p, pf.addr.as_u64(), write)?;
                }
                Err(e) => return Err(MmError::Bug(e.to_string())),
            }
        }
        Err(MmError::Bug(format!("fault loop at {va:#x}")))
    }

    pub(super) fn user_pte_bits(&self, write_ok: bool, dirty: bool, exec: bool) -> u64 {
        let mut v = _PAGE_PRESENT | _PAGE_USER | _PAGE_ACCESSED;
        if write_ok {
            v |= _PAGE_RW;
        }
        if dirty {
            v |= _PAGE_DIRTY;
        }
        if !exec && self.geo.pae && self.masks.supported & _PAGE_NX != 0 {
            v |= _PAGE_NX;
        }
        v
    }

    fn pte_pfn(&self, v: u64) -> Pfn {
        Pfn::new((v & 0x000f_ffff_ffff_f000 & !_PAGE_NX) >> 12)
    }

    /// A new user page (GFP_HIGHUSER_MOVABLE), zeroed.
    fn alloc_user_page(&mut self, cpu: usize, p: ProcId) -> Result<Pfn, MmError> {
        let pfn = self.mm_alloc_pages(GFP_HIGHUSER_MOVABLE | Gfp::ZERO, 0, cpu, Some(p))?;
        Ok(pfn)
    }

    /// `handle_mm_fault()`: counts PGFAULT, finds the VMA (through the mm's cache: a
    /// sequential scan stays in one VMA), allocates the PTE page if the PMD is empty, and
    /// installs the PTE for the faulting page.
    pub fn handle_mm_fault(
        &mut self,
        cpu: usize,
        p: ProcId,
        va: u64,
        write: bool,
    ) -> Result<FaultDone, MmError> {
        self.node.vm_events[VmEventItem::Pgfault] += 1;
        self.mm.counters.faults += 1;
        self.mm.procs[p.0].min_flt += 1;
        self.check_sync_rss_stat(p);
        let proc = &self.mm.procs[p.0];
        if proc.dead {
            return Err(MmError::Killed);
        }
        let mm = proc.mm.as_ref().ok_or(MmError::NoProc)?;
        let vi = mm.find_vma(va).ok_or(MmError::Segv(va))?;
        let v = &mm.vmas[vi];
        let vma = VmaView {
            start: v.start,
            read: v.read,
            write: v.write,
            exec: v.exec,
            kind: v.kind,
        };
        if (write && !vma.write) || (!write && !vma.read) || vma.kind == VmaKind::Special {
            return Err(MmError::Segv(va));
        }
        // __handle_mm_fault(): the PMD is in low memory; the PTE page first (pte_alloc).
        let ptepfn = self.pte_alloc(cpu, p, va)?;
        let idx = (va >> 12) & (self.ptes_per_page() - 1);
        // handle_pte_fault(): pte_offset_map, read the entry.
        let m = self.pte_map(cpu, ptepfn, WalkLen::Short)?;
        let old = match self.pte_get(cpu, m, idx) {
            Ok(v) => v,
            Err(e) => {
                let _ = self.pte_unmap(cpu, m);
                return Err(e);
            }
        };
        if old & _PAGE_PRESENT != 0 {
            return self.do_present_pte(cpu, p, m, ptepfn, idx, old, va, write, vma.exec);
        }
        // No PTE: unmap while the page is found (the kernel drops the map before ->fault).
        self.pte_unmap(cpu, m)?;
        // do_read_fault(): ->map_pages() first.
        if !write && self.should_fault_around(vma.kind) {
            if let Some(pfn) = self.do_fault_around(cpu, p, ptepfn, vi, va)? {
                return Ok(FaultDone::Mapped(pfn));
            }
        }
        let page_va = va & !(PAGE_SIZE - 1);
        let (pfn, bits, kind) = match vma.kind {
            // do_read_fault() / do_shared_fault() → __do_fault() → shm_fault().
            VmaKind::Shm { seg } => {
                let pgoff = (page_va - vma.start) / PAGE_SIZE;
                let pfn = self.shmem_get_page(cpu, p, seg, pgoff)?;
                (
                    pfn,
                    self.user_pte_bits(vma.write, write, vma.exec),
                    RssKind::Shmem,
                )
            }
            VmaKind::ShmemZero { file, pgoff } => {
                // shmem_fault() on the "/dev/zero" file of a shared anonymous mapping.
                let off = pgoff + (page_va - vma.start) / PAGE_SIZE;
                let f = super::mman::ShmemFile::Zero(file);
                let pfn = self.shmem_file_get_page(cpu, p, f, off)?;
                (
                    pfn,
                    self.user_pte_bits(vma.write, write, vma.exec),
                    RssKind::Shmem,
                )
            }
            _ => self.do_private_fault(cpu, p, vi, &vma, page_va, write)?,
        };
        self.finish_fault(cpu, p, ptepfn, idx, pfn.phys().as_u64() | bits, kind)?;
        Ok(FaultDone::Mapped(pfn))
    }

    /// `finish_fault()`: `pte_offset_map_lock`, `set_pte_at` of entry `idx` to `pte`,
    /// `pte_unmap_unlock`, then the RSS counter of `kind` and the RSS high-water mark.
    pub(super) fn finish_fault(
        &mut self,
        cpu: usize,
        p: ProcId,
        ptepfn: Pfn,
        idx: u64,
        pte: u64,
        kind: RssKind,
    ) -> Result<(), MmError> {
        let m = self.pte_map(cpu, ptepfn, WalkLen::Short)?;
        self.pte_set(cpu, m, idx, pte)?;
        self.pte_unmap(cpu, m)?;
        if kind != RssKind::Anon {
            self.node.page_add_file_rmap(self.pte_pfn(pte).as_u64());
        }
        self.add_rss(p, kind)
    }

    /// `inc_mm_counter_fast()`: one more page of `kind` in the faulting task's
    /// `rss_stat` (the task is the mm's own: `current->mm == mm`).
    #[inline]
    pub(super) fn add_rss(&mut self, p: ProcId, kind: RssKind) -> Result<(), MmError> {
        let c = &mut self.mm.procs[p.0].rss_stat.count;
        match kind {
            RssKind::File => c.file += 1,
            RssKind::Anon => c.anon += 1,
            RssKind::Shmem => c.shmem += 1,
        }
        Ok(())
    }

    /// `check_sync_rss_stat()`, at the start of each fault: on the fault after every
    /// `TASK_RSS_EVENTS_THRESH` the task's counts go into its mm's.
    #[inline]
    pub(super) fn check_sync_rss_stat(&mut self, p: ProcId) {
        let st = &mut self.mm.procs[p.0].rss_stat;
        let old = st.events;
        st.events += 1;
        if old > TASK_RSS_EVENTS_THRESH {
            self.sync_mm_rss(p);
        }
    }

    /// `sync_mm_rss()`: the task's RSS counts are added to its mm's, and reset.
    pub fn sync_mm_rss(&mut self, p: ProcId) {
        self.mm.procs[p.0].sync_mm_rss();
    }

    /// What `get_mm_rss()` would read right after a sync: the mm's counters plus the
    /// task's pending increments (tests compare this with the pages actually mapped).
    pub fn rss_after_sync(&self, p: ProcId) -> super::Rss {
        let proc = &self.mm.procs[p.0];
        let mut r = proc.mm.as_ref().map(|m| m.rss).unwrap_or_default();
        r.add(proc.rss_stat.count);
        r
    }

    /// The PTE is present (the map `m` still held): a spurious fault, or `do_wp_page()` for
    /// a write to a write-protected private page (COW after fork).
    #[allow(clippy::too_many_arguments)]
    #[inline(never)]
    pub(super) fn do_present_pte(
        &mut self,
        cpu: usize,
        p: ProcId,
        m: PteMap,
        ptepfn: Pfn,
        idx: u64,
        old: u64,
        va: u64,
        write: bool,
        exec: bool,
    ) -> Result<FaultDone, MmError> {
        let page_va = va & !(PAGE_SIZE - 1);
        if !(write && old & _PAGE_RW == 0) {
            self.pte_unmap(cpu, m)?;
            return Ok(FaultDone::Present(self.pte_pfn(old)));
        }
        let pfn = self.pte_pfn(old);
        let refs = self.mm.anon_refs.get(&pfn.as_u64()).copied().unwrap_or(0);
        if refs == 1 {
            // wp_page_reuse(): the page is this mapping's alone (PGREUSE).
            self.node.vm_events[VmEventItem::Pgreuse] += 1;
            self.pte_set(cpu, m, idx, old | _PAGE_RW | _PAGE_DIRTY)?;
            self.pte_unmap(cpu, m)?;
            let _ = self.machine.invlpg(cpu, VirtAddr::new(page_va));
            return Ok(FaultDone::Mapped(pfn));
        }
        self.pte_unmap(cpu, m)?;
        let n = self.alloc_user_page(cpu, p)?;
        let m2 = self.pte_map(cpu, ptepfn, WalkLen::Short)?;
        if refs > 1 {
            self.mm.anon_refs.insert(pfn.as_u64(), refs - 1);
        } else {
            // A file page copied (the only private file pages are the rootfs binary's,
            // shmem pages): `dec_mm_counter_fast(mm_counter_file)`, one more anon page;
            // the file page loses this mapping.
            let c = &mut self.mm.procs[p.0].rss_stat.count;
            c.shmem -= 1;
            c.anon += 1;
            self.node.page_remove_file_rmap(pfn.as_u64());
        }
        self.mm.anon_refs.insert(n.as_u64(), 1);
        self.node.vm_stat[NodeStatItem::NrAnonMapped] += 1;
        self.node.folio_add_lru(cpu, n); // folio_add_lru_vma()
        let v = n.phys().as_u64() | self.user_pte_bits(true, true, exec);
        self.pte_set(cpu, m2, idx, v)?;
        self.pte_unmap(cpu, m2)?;
        let _ = self.machine.invlpg(cpu, VirtAddr::new(page_va));
        Ok(FaultDone::Mapped(n))
    }

    /// The page for a missing PTE in a private VMA: `do_cow_fault()` / the executable's page
    /// cache (`do_read_fault()`) for the file, `do_anonymous_page()` for anonymous memory.
    #[inline(never)]
    fn do_private_fault(
        &mut self,
        cpu: usize,
        p: ProcId,
        vi: usize,
        vma: &VmaView,
        page_va: u64,
        write: bool,
    ) -> Result<(Pfn, u64, RssKind), MmError> {
        match vma.kind {
            VmaKind::File { pgoff } => {
                let fpg = pgoff + (page_va - vma.start) / PAGE_SIZE;
                if write {
                    // do_cow_fault(): a private copy.
                    let n = self.alloc_user_page(cpu, p)?;
                    self.anon_vma_prepare(cpu, p, vi)?;
                    self.mm.anon_refs.insert(n.as_u64(), 1);
                    self.node.vm_stat[NodeStatItem::NrAnonMapped] += 1;
                    self.node.folio_add_lru(cpu, n);
                    Ok((n, self.user_pte_bits(true, true, vma.exec), RssKind::Anon))
                } else {
                    // __do_fault() → shmem_fault() on the rootfs file.
                    let pfn = self.binary_file_page(cpu, p, fpg)?;
                    let bits = self.user_pte_bits(false, false, vma.exec);
                    Ok((pfn, bits, RssKind::Shmem))
                }
            }
            VmaKind::Vdso => {
                // special_mapping_fault(): the vDSO image's page; not a shmem page.
                let pfn = self.vdso_page();
                Ok((pfn, self.user_pte_bits(false, false, true), RssKind::File))
            }
            VmaKind::Anon => {
                // do_anonymous_page(): the workload's anonymous accesses are writes; a read
                // gets its own zeroed page too (the model has no shared zero page).
                let n = self.alloc_user_page(cpu, p)?;
                self.anon_vma_prepare(cpu, p, vi)?;
                self.mm.anon_refs.insert(n.as_u64(), 1);
                self.node.vm_stat[NodeStatItem::NrAnonMapped] += 1;
                self.node.folio_add_lru(cpu, n);
                Ok((
                    n,
                    self.user_pte_bits(vma.write, true, vma.exec),
                    RssKind::Anon,
                ))
            }
            VmaKind::Shm { .. } | VmaKind::ShmemZero { .. } | VmaKind::Special => {
                Err(MmError::Segv(page_va))
            }
        }
    }

    /// The rootfs file's page `fpg`: from its page cache, or (a cache dropped since) a new
    /// shmem page added to it.
    fn binary_file_page(&mut self, cpu: usize, p: ProcId, fpg: u64) -> Result<Pfn, MmError> {
        if let Some(&f) = self.mm.binary_pages.get(&fpg) {
            return Ok(f);
        }
        let f = self.mm_alloc_pages(super::mman::SHMEM_FOLIO_GFP, 0, cpu, Some(p))?;
        self.node.vm_stat[NodeStatItem::NrShmem] += 1;
        self.node.vm_stat[NodeStatItem::NrFilePages] += 1;
        self.mm.binary_pages.insert(fpg, f);
        self.node.folio_add_lru(cpu, f);
        Ok(f)
    }

    /// The page `[vdso]` maps: `vdso_image_32`'s data is `__ro_after_init`, in the image's
    /// rodata; the model takes the first page of the image's rodata (its exact address is
    /// not among the model's System.map symbols). Reserved memory: never allocated or freed.
    pub(crate) fn vdso_page(&self) -> Pfn {
        Pfn::new(self.config.image_phys.start_rodata.div_ceil(PAGE_SIZE))
    }

    /// `anon_vma_prepare()`: the anon_vma and its chain object, once per VMA.
    pub(crate) fn anon_vma_prepare(
        &mut self,
        cpu: usize,
        p: ProcId,
        vi: usize,
    ) -> Result<(), MmError> {
        let has = self.mm.procs[p.0]
            .mm
            .as_ref()
            .is_some_and(|m| m.vmas[vi].anon_vma);
        if has {
            return Ok(());
        }
        let objs = self.alloc_objs(cpu, &["anon_vma", "anon_vma_chain"]);
        let mm = self.mm.procs[p.0].mm.as_mut().ok_or(MmError::NoProc)?;
        mm.vmas[vi].anon_vma = true;
        mm.vmas[vi].anon_objs.extend(objs);
        Ok(())
    }
}
