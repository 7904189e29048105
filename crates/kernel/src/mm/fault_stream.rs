//! The fault stream: [`Kernel::user_access_run`], a program's loop of user accesses over a
//! range of pages (shmwork's children read or write every page of the segment), with the
//! fault path specialised for the common case of that loop.
//!
//! A run is exactly `user_access` page after page: every access goes through the CPU's
//! TLB and walk, and every #PF through the fault path. What changes is how a fault is
//! handled when it is the ordinary one of a SysV segment (`do_read_fault` /
//! `do_shared_fault` of a missing PTE): what `handle_mm_fault` looks up at every fault (the
//! VMA and its rights, the PTE page of the current PMD, the segment, the PTE bits) is found
//! once per VMA and PMD ([`Stream`]), and the fault then runs the generic steps themselves
//! in the generic order: the fault counters, `pte_offset_map` (the design's kmap of a
//! highmem PTE page, the same function the generic path calls), the entry read through the
//! mapping, `pte_unmap`, the page cache lookup, the same map for `set_pte_at`, the RSS
//! counters.
//!
//! With a highmem PTE page of the 6.1 kernel the fault's two map / access / unmap groups
//! share one borrow of the quick kmap paths, and each is one slot step where its end state
//! is the usual one (`AtomicKmap::read_cycle` / `write_cycle`; ARCHITECTURE.md, "The fault
//! stream"). `madvise(MADV_POPULATE_READ)` runs the same fault between its two
//! `follow_page` reads of the entry ([`super::populate_stream`]). Once a fault's slot steps
//! were of the stream's PTE page, the reader's next pages under that directory entry go as
//! a fault run ([`machine::FaultRun`], [`run_pages`]): what the CPU's touch, the slot steps
//! and the retry test in common is tested once for the run, and each page costs what
//! differs from page to page.
//!
//! Anything else takes the generic path for that fault, before any state has changed: no
//! PTE page, another VMA kind, a dead process, the highmem debug checks. Once a fault has
//! started on the stream, its rare branches (a present PTE: spurious or COW; a page not yet
//! in the page cache; an error) continue in the generic functions from the same state.
//! `crates/kernel/tests/fault_stream.rs` runs the workload with the stream on and off and
//! compares every counter, every TLB and all of RAM.

use super::fault::{user_access_kind, RssKind, TASK_RSS_EVENTS_THRESH};
use super::pgtable_user::{access_bug, PteMap, WalkLen};
use super::{MmCounters, MmError, MmState, ProcId, Process, ShmSeg, VmaKind, PAGE_SIZE};
use crate::design::KernelDesign;
use crate::highmem::kmap_local::AtomicKmap;
use crate::mmzone::PgData;
use crate::pgtable_types::_PAGE_PRESENT;
use crate::vmstat::{VmEventItem, VmEvents};
use crate::Kernel;
use machine::mmu::PageFault;
use machine::{Access, AccessError, FaultRun, Pfn, RunEnd, RunSteps, RunStop, VirtAddr};

/// What the faults of one VMA under one PMD have in common.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Stream {
    /// The addresses covered, `[lo, hi)`: empty until prepared.
    pub(super) lo: u64,
    pub(super) hi: u64,
    pub(super) write: bool,
    pub(super) exec: bool,
    pub(super) vi: usize,
    pub(super) seg: usize,
    pub(super) vma_start: u64,
    pub(super) ptepfn: u64,
    /// The new PTE's bits (`vma->vm_page_prot`, dirty for a write).
    pub(super) bits: u64,
    /// `sizeof(pte_t)`: 8 with PAE, 4 without.
    pub(super) size: u8,
    /// `PTRS_PER_PTE - 1`.
    pub(super) idx_mask: u64,
    /// `pte_offset_map` is 6.1's `kmap_atomic` (a highmem PTE page of the 6.1 design):
    /// the fault runs its quick paths on one borrow ([`Kernel::stream_fault_atomic`]).
    pub(super) atomic: bool,
    /// `pte_offset_map` is the direct map (a low-memory PTE page of a 32-bit kernel, any
    /// design): the reader's pages go as fault runs with no slot
    /// ([`Kernel::access_direct`]).
    pub(super) direct: bool,
}

impl Stream {
    #[inline(always)]
    pub(super) fn covers(&self, addr: u64, write: bool) -> bool {
        addr.wrapping_sub(self.lo) < self.hi.wrapping_sub(self.lo) && write == self.write
    }

    pub(super) fn invalidate(&mut self) {
        self.hi = self.lo;
    }

    /// The index in the segment of the page at `addr`.
    #[inline(always)]
    pub(super) fn pgoff(&self, addr: u64) -> u64 {
        ((addr & !(PAGE_SIZE - 1)) - self.vma_start) / PAGE_SIZE
    }

    /// `shm_fault()`'s lookup: the segment's page `pgoff` if it is in the page cache.
    #[inline(always)]
    pub(super) fn cached(&self, shm: &[ShmSeg], pgoff: u64) -> Option<Pfn> {
        cached_in(self.pages(shm), pgoff)
    }

    /// The segment's page cache, by index (empty if the segment is gone).
    #[inline(always)]
    pub(super) fn pages<'a>(&self, shm: &'a [ShmSeg]) -> &'a [Option<Pfn>] {
        shm.get(self.seg).map_or(&[], |g| &g.pages[..])
    }
}

impl Kernel {
    /// `npages` user accesses by process `p` on `cpu` from `start`, page by page: exactly
    /// [`Self::user_access`] for each page in order, stopping at the first error, with the
    /// ordinary faults of a SysV segment taken on the fault stream (module docs) when
    /// `mm.fault_stream` is on.
    pub fn user_access_run(
        &mut self,
        cpu: usize,
        p: ProcId,
        start: u64,
        npages: u64,
        write: bool,
    ) -> Result<(), MmError> {
        if !self.mm.fault_stream {
            for i in 0..npages {
                self.user_access(cpu, p, start + i * PAGE_SIZE, write)?;
            }
            return Ok(());
        }
        let mut s = Stream::default();
        let mut i = 0;
        while i < npages {
            let va = start + i * PAGE_SIZE;
            if (s.atomic || s.direct) && s.covers(va, write) && self.stream_ready(p) {
                // As many pages as one borrow of the quick kmap paths (or one fault run
                // through the direct map) takes, then the rest of the page it stopped at.
                let (next, stop) = if s.atomic {
                    self.access_atomic(cpu, p, start, i, npages, write, &s)
                } else {
                    self.access_direct(cpu, p, start, i, npages, write, &s)
                };
                i = next;
                if let Some(stop) = stop {
                    self.access_handoff(cpu, p, start + i * PAGE_SIZE, write, &mut s, stop)?;
                    i += 1;
                }
                continue;
            }
            self.stream_access(cpu, p, va, write, &mut s, 0)?;
            i += 1;
        }
        Ok(())
    }

    /// The reader's pages from `first` on one borrow of the quick kmap paths
    /// ([`AtomicKmap`]): between two faults only the CPU's own accesses run, through the
    /// borrow. Once a fault's slot steps were of the stream's PTE page, the pages after it
    /// go as a fault run ([`run_pages`]); a page the run stops before, and the first ones,
    /// page by page ([`access_page_on`]).
    #[inline(never)]
    #[allow(clippy::too_many_arguments)]
    fn access_atomic(
        &mut self,
        cpu: usize,
        p: ProcId,
        start: u64,
        first: u64,
        npages: u64,
        write: bool,
        s: &Stream,
    ) -> (u64, Option<ReadStop>) {
        let access = user_access_kind(write);
        let Some((mut a, mm, node)) = self.atomic_parts(cpu) else {
            return (first, Some(ReadStop::Touch(0)));
        };
        let end = start + npages * PAGE_SIZE;
        let mut i = first;
        while i < npages {
            let va = start + i * PAGE_SIZE;
            if i != first && !(s.covers(va, write) && ready(mm, p)) {
                return (i, None);
            }
            let hi = s.hi.min(end);
            if let Some(run) = a.fault_run(Pfn::new(s.ptepfn), va, hi, access) {
                let r = run_pages(&mut a, mm, node, cpu, p, s, &run, va);
                mm.fault_run_pages += (r.at - va) / PAGE_SIZE;
                i = (r.at - start) / PAGE_SIZE;
                match r.stop {
                    None => continue,
                    Some(RunStop::Untouched) => {}
                    Some(RunStop::Handler(_, stop)) => return (i, Some(stop)),
                    Some(RunStop::Retry(_)) => {
                        if let Err(stop) = retry_on(&mut a, cpu, r.at, access) {
                            return (i, Some(stop));
                        }
                        i += 1;
                        continue;
                    }
                }
            }
            let va = start + i * PAGE_SIZE;
            if let Err(stop) = access_page_on(&mut a, mm, node, cpu, p, va, access, s) {
                return (i, Some(stop));
            }
            i += 1;
        }
        (i, None)
    }

    /// The reader's pages from `first` on as one fault run through the direct map
    /// ([`Machine::direct_fault_run`], [`run_handler`]): a low-memory PTE page is read and
    /// written with the kernel's plain loads and stores, so the pages need no kmap borrow.
    /// The page it stopped at goes on as [`Self::access_handoff`] takes it.
    ///
    /// [`Machine::direct_fault_run`]: machine::Machine::direct_fault_run
    #[inline(never)]
    #[allow(clippy::too_many_arguments)]
    fn access_direct(
        &mut self,
        cpu: usize,
        p: ProcId,
        start: u64,
        first: u64,
        npages: u64,
        write: bool,
        s: &Stream,
    ) -> (u64, Option<ReadStop>) {
        let access = user_access_kind(write);
        let va = start + first * PAGE_SIZE;
        let hi = s.hi.min(start + npages * PAGE_SIZE);
        let Kernel {
            machine, mm, node, ..
        } = self;
        let r = {
            let Some(mut handler) = run_handler(mm, node, cpu, p, s, false) else {
                return (first, Some(ReadStop::Touch(0)));
            };
            let table = s.ptepfn << 12;
            machine.direct_fault_run(cpu, va, hi, access, table, |st, pf| handler(st, pf))
        };
        mm.fault_run_pages += (r.at - va) / PAGE_SIZE;
        let i = (r.at - start) / PAGE_SIZE;
        match r.stop {
            None => (i, None),
            Some(RunStop::Untouched) => (i, Some(ReadStop::Touch(0))),
            Some(RunStop::Handler(_, stop)) => (i, Some(stop)),
            Some(RunStop::Retry(_)) => (i, Some(ReadStop::Touch(1))),
        }
    }

    /// The quick kmap paths' borrow of `cpu` ([`AtomicKmap`]), with the process state and
    /// the node beside it: all that a stream fault on the borrow touches.
    #[inline(always)]
    pub(super) fn atomic_parts(
        &mut self,
        cpu: usize,
    ) -> Option<(AtomicKmap<'_>, &mut MmState, &mut PgData)> {
        let Kernel {
            sched,
            hm,
            machine,
            kmap_local,
            mm,
            node,
            ..
        } = self;
        let a = AtomicKmap::new(sched, hm, machine, kmap_local, cpu)?;
        Some((a, mm, node))
    }

    /// The access at `va` from where [`Self::access_atomic`] stopped: the fault it left
    /// pending (on the stream or generic), then the retries.
    #[cold]
    #[inline(never)]
    fn access_handoff(
        &mut self,
        cpu: usize,
        p: ProcId,
        va: u64,
        write: bool,
        s: &mut Stream,
        stop: ReadStop,
    ) -> Result<(), MmError> {
        let tries = match stop {
            ReadStop::Touch(tries) => tries,
            ReadStop::Fault { addr, write, tries } => {
                self.stream_or_generic_fault(cpu, p, addr, write, s)?;
                tries + 1
            }
            ReadStop::Detour {
                addr,
                write,
                idx,
                d,
                tries,
            } => {
                self.detour_or_generic_fault(cpu, p, addr, write, idx, d, s)?;
                tries + 1
            }
            ReadStop::Err(e) => return Err(e),
        };
        self.stream_access(cpu, p, va, write, s, tries)
    }

    /// [`Self::user_access`] with the stream's fault handler, from try `first` (the first
    /// touch is try 0, the retries after each fault the next ones).
    #[inline(always)]
    fn stream_access(
        &mut self,
        cpu: usize,
        p: ProcId,
        va: u64,
        write: bool,
        s: &mut Stream,
        first: usize,
    ) -> Result<(), MmError> {
        let access = user_access_kind(write);
        for i in first..4 {
            // The first access of a page the run has not touched usually faults, and its
            // retry misses in a set without the page: the machine's entry points for those
            // (the same state as `translate` leaves).
            let r = if i == 0 {
                self.machine
                    .translate_unmapped(cpu, VirtAddr::new(va), access)
            } else {
                self.machine
                    .translate_refault(cpu, VirtAddr::new(va), access)
            };
            match r {
                Ok(_) => return Ok(()),
                Err(AccessError::PageFault(pf)) => {
                    crate::trace::page_fault_user(cpu, pf.addr.as_u64(), pf.error_code.bits());
                    let write = pf.error_code.bits() & 2 != 0;
                    let addr = pf.addr.as_u64();
                    self.stream_or_generic_fault(cpu, p, addr, write, s)?;
                }
                Err(e) => return Err(MmError::Bug(e.to_string())),
            }
        }
        Err(MmError::Bug(format!("fault loop at {va:#x}")))
    }

    /// `handle_mm_fault` for the stream: `Ok(false)` when the fault is not the stream's
    /// (nothing changed: the caller takes the generic path), `Ok(true)` when it was handled
    /// as `handle_mm_fault` would have, an error where it would have failed.
    #[inline(always)]
    pub(super) fn stream_fault(
        &mut self,
        cpu: usize,
        p: ProcId,
        addr: u64,
        write: bool,
        s: &mut Stream,
    ) -> Result<bool, MmError> {
        if !s.covers(addr, write) && !self.stream_prepare(p, addr, write, s) {
            return Ok(false);
        }
        // handle_mm_fault(): the counters, the VMA (the lookup's cache lands on it); the
        // process must still be alive with its mm.
        let Some(proc) = self.mm.procs.get_mut(p.0) else {
            return Ok(false);
        };
        match proc.mm.as_ref() {
            Some(mm) if !proc.dead => mm.mmap_cache.set(s.vi),
            _ => return Ok(false),
        }
        proc.min_flt += 1;
        // check_sync_rss_stat().
        let events = proc.rss_stat.events;
        proc.rss_stat.events += 1;
        self.mm.counters.faults += 1;
        self.node.vm_events[VmEventItem::Pgfault] += 1;
        if events > TASK_RSS_EVENTS_THRESH {
            self.sync_mm_rss(p);
        }
        let idx = (addr >> 12) & s.idx_mask;
        if s.atomic {
            return self.stream_fault_atomic(cpu, p, addr, write, idx, s);
        }
        // handle_pte_fault(): pte_offset_map, read the entry.
        let m = self.stream_map(cpu, s)?;
        self.stream_fault_mapped(cpu, p, m, idx, addr, write, s)
    }

    /// [`Self::stream_fault`] from the PTE page's map `m` on: the entry read through it,
    /// `pte_unmap`, the page cache, `finish_fault`.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn stream_fault_mapped(
        &mut self,
        cpu: usize,
        p: ProcId,
        m: PteMap,
        idx: u64,
        addr: u64,
        write: bool,
        s: &mut Stream,
    ) -> Result<bool, MmError> {
        let old = match self.stream_pte_get(cpu, m, idx, s) {
            Ok(v) => v,
            Err(e) => return Err(self.stream_unmap_err(cpu, m, e)),
        };
        if old & _PAGE_PRESENT != 0 {
            return self.stream_present(cpu, p, m, idx, old, addr, write, s);
        }
        self.pte_unmap(cpu, m)?;
        self.stream_unmapped(cpu, p, idx, addr, s)
    }

    /// [`Self::stream_fault`] once the PTE page is unmapped: `__do_fault()` →
    /// `shm_fault()`, the segment's page cache by index, then `finish_fault()`: the same
    /// map again, `set_pte_at`, unmap, RSS.
    #[inline(always)]
    fn stream_unmapped(
        &mut self,
        cpu: usize,
        p: ProcId,
        idx: u64,
        addr: u64,
        s: &mut Stream,
    ) -> Result<bool, MmError> {
        let pgoff = s.pgoff(addr);
        let Some(pfn) = s.cached(&self.mm.shm, pgoff) else {
            return self.stream_uncached(cpu, p, idx, pgoff, s);
        };
        let m = self.stream_map(cpu, s)?;
        self.stream_pte_set(cpu, m, idx, pfn.phys().as_u64() | s.bits, s)?;
        self.pte_unmap(cpu, m)?;
        self.node.page_add_file_rmap(pfn.as_u64());
        self.add_rss(p, RssKind::Shmem)?;
        Ok(true)
    }

    /// [`Self::stream_fault`] of a highmem PTE page of the 6.1 kernel: `pte_offset_map`'s
    /// `kmap_atomic` and `pte_unmap`'s `kunmap_atomic`, twice, on one borrow of the CPU,
    /// its task and the kmap area ([`AtomicKmap`]), with the entry read and written
    /// through the slot by the CPU. Where a quick map or unmap does not apply (nothing
    /// changed), the fault goes on in the generic functions from there. (Populate's copy of
    /// these steps is [`atomic_fault`]; sharing it costs this path 9 instructions a fault.)
    #[inline(always)]
    fn stream_fault_atomic(
        &mut self,
        cpu: usize,
        p: ProcId,
        addr: u64,
        write: bool,
        idx: u64,
        s: &mut Stream,
    ) -> Result<bool, MmError> {
        let Some(mut a) = AtomicKmap::new(
            &mut self.sched,
            &self.hm,
            &mut self.machine,
            &mut self.kmap_local,
            cpu,
        ) else {
            return self.stream_map_slow(cpu, p, idx, addr, write, s);
        };
        let ptepfn = Pfn::new(s.ptepfn);
        let off = idx * u64::from(s.size);
        // handle_pte_fault(): pte_offset_map, read the entry, pte_unmap (one slot step
        // for the usual none entry).
        let none = |v: u64| v & _PAGE_PRESENT == 0;
        if a.read_cycle(ptepfn, off, s.size, none).is_some() {
            self.mm.counters.pte_kmaps += 1;
        } else {
            let Some(va) = a.map(ptepfn) else {
                return self.stream_map_slow(cpu, p, idx, addr, write, s);
            };
            self.mm.counters.pte_kmaps += 1;
            let (c, mem) = a.cpu();
            let old = match c.read_virt_entry(mem, va + off, s.size) {
                Ok(v) => v,
                Err(e) => {
                    return Err(self.stream_unmap_err(cpu, PteMap::Atomic(va), access_bug(e)));
                }
            };
            if old & _PAGE_PRESENT != 0 {
                let m = PteMap::Atomic(va);
                return self.stream_present(cpu, p, m, idx, old, addr, write, s);
            }
            if !a.unmap(va) {
                return self.stream_unmap_slow(cpu, p, va, idx, addr, s);
            }
        }
        // __do_fault() → shm_fault().
        let pgoff = s.pgoff(addr);
        let Some(pfn) = s.cached(&self.mm.shm, pgoff) else {
            return self.stream_uncached(cpu, p, idx, pgoff, s);
        };
        // finish_fault(): the same map again, set_pte_at, unmap, RSS.
        let pte = pfn.phys().as_u64() | s.bits;
        if a.write_cycle(ptepfn, off, s.size, pte) {
            self.mm.counters.pte_kmaps += 1;
        } else {
            let Some(va) = a.map(ptepfn) else {
                self.finish_fault(cpu, p, ptepfn, idx, pte, RssKind::Shmem)?;
                return Ok(true);
            };
            self.mm.counters.pte_kmaps += 1;
            let (c, mem) = a.cpu();
            c.write_virt_entry(mem, va + off, s.size, pte)
                .map_err(access_bug)?;
            if !a.unmap(va) {
                self.pte_unmap(cpu, PteMap::Atomic(va))?;
            }
        }
        self.node.page_add_file_rmap(pfn.as_u64());
        self.add_rss(p, RssKind::Shmem)?;
        Ok(true)
    }

    /// The rest of a populate fault [`atomic_fault`] left at `d`, in the generic functions
    /// (as [`Self::stream_fault_atomic`] goes on at each of those steps).
    #[cold]
    #[inline(never)]
    #[allow(clippy::too_many_arguments)]
    pub(super) fn stream_detour(
        &mut self,
        cpu: usize,
        p: ProcId,
        addr: u64,
        write: bool,
        idx: u64,
        d: Detour,
        s: &mut Stream,
    ) -> Result<bool, MmError> {
        let m = |va| PteMap::Atomic(va);
        match d {
            Detour::Map => self.stream_map_slow(cpu, p, idx, addr, write, s),
            Detour::Read(va, e) => Err(self.stream_unmap_err(cpu, m(va), access_bug(e))),
            Detour::Present(va, old) => {
                self.stream_present(cpu, p, m(va), idx, old, addr, write, s)
            }
            Detour::Unmap(va) => self.stream_unmap_slow(cpu, p, va, idx, addr, s),
            Detour::Uncached(pgoff) => self.stream_uncached(cpu, p, idx, pgoff, s),
            Detour::Remap(pte) => {
                let ptepfn = Pfn::new(s.ptepfn);
                self.finish_fault(cpu, p, ptepfn, idx, pte, RssKind::Shmem)?;
                Ok(true)
            }
            Detour::Write(e) => Err(access_bug(e)),
            Detour::Unmap2(va, pfn) => {
                self.pte_unmap(cpu, m(va))?;
                self.node.page_add_file_rmap(pfn);
                self.add_rss(p, RssKind::Shmem)?;
                Ok(true)
            }
        }
    }

    /// [`Self::stream_fault_atomic`] where the quick map does not apply: the generic map.
    #[cold]
    #[inline(never)]
    fn stream_map_slow(
        &mut self,
        cpu: usize,
        p: ProcId,
        idx: u64,
        addr: u64,
        write: bool,
        s: &mut Stream,
    ) -> Result<bool, MmError> {
        let m = self.stream_map(cpu, s)?;
        self.stream_fault_mapped(cpu, p, m, idx, addr, write, s)
    }

    /// [`Self::stream_fault_atomic`] where the quick unmap does not apply: the generic
    /// unmap, and the rest of the fault.
    #[cold]
    #[inline(never)]
    fn stream_unmap_slow(
        &mut self,
        cpu: usize,
        p: ProcId,
        va: VirtAddr,
        idx: u64,
        addr: u64,
        s: &mut Stream,
    ) -> Result<bool, MmError> {
        self.pte_unmap(cpu, PteMap::Atomic(va))?;
        self.stream_unmapped(cpu, p, idx, addr, s)
    }

    /// The read entry is present: the generic `do_present_pte` (spurious fault or COW).
    #[cold]
    #[inline(never)]
    #[allow(clippy::too_many_arguments)]
    fn stream_present(
        &mut self,
        cpu: usize,
        p: ProcId,
        m: PteMap,
        idx: u64,
        old: u64,
        addr: u64,
        write: bool,
        s: &mut Stream,
    ) -> Result<bool, MmError> {
        s.invalidate();
        let ptepfn = Pfn::new(s.ptepfn);
        self.do_present_pte(cpu, p, m, ptepfn, idx, old, addr, write, s.exec)?;
        Ok(true)
    }

    /// The page is not in the segment's page cache yet: the allocating path, then
    /// `finish_fault` as the generic path runs it.
    #[cold]
    #[inline(never)]
    fn stream_uncached(
        &mut self,
        cpu: usize,
        p: ProcId,
        idx: u64,
        pgoff: u64,
        s: &mut Stream,
    ) -> Result<bool, MmError> {
        s.invalidate();
        let pfn = self.shmem_get_page(cpu, p, s.seg, pgoff)?;
        let pte = pfn.phys().as_u64() | s.bits;
        self.finish_fault(cpu, p, Pfn::new(s.ptepfn), idx, pte, RssKind::Shmem)?;
        Ok(true)
    }

    /// A read through the map failed: unmap, and the read's error.
    #[cold]
    #[inline(never)]
    fn stream_unmap_err(&mut self, cpu: usize, m: PteMap, e: MmError) -> MmError {
        let _ = self.pte_unmap(cpu, m);
        e
    }

    /// `pte_get` with the entry size of the stream: a kmap_atomic'd PTE page is read
    /// straight through its slot.
    #[inline(always)]
    pub(super) fn stream_pte_get(
        &mut self,
        cpu: usize,
        m: PteMap,
        idx: u64,
        s: &Stream,
    ) -> Result<u64, MmError> {
        match m {
            PteMap::Atomic(va) => self
                .machine
                .read_virt_entry(cpu, va + idx * u64::from(s.size), s.size)
                .map_err(access_bug),
            _ => self.pte_get(cpu, m, idx),
        }
    }

    /// `pte_set` with the entry size of the stream, as [`Self::stream_pte_get`].
    #[inline(always)]
    fn stream_pte_set(
        &mut self,
        cpu: usize,
        m: PteMap,
        idx: u64,
        v: u64,
        s: &Stream,
    ) -> Result<(), MmError> {
        match m {
            PteMap::Atomic(va) => self
                .machine
                .write_virt_entry(cpu, va + idx * u64::from(s.size), s.size, v)
                .map_err(access_bug),
            _ => self.pte_set(cpu, m, idx, v),
        }
    }

    /// What must hold at each fault for the prepared stream to apply (nothing changes):
    /// the process alive with its mm.
    #[inline(always)]
    pub(super) fn stream_ready(&self, p: ProcId) -> bool {
        ready(&self.mm, p)
    }

    /// Find what the faults at `addr` have in common, or `false` when the fault is not one
    /// the stream takes. Reads only (and `find_vma`'s cache, as the generic path would).
    #[inline(never)]
    pub(super) fn stream_prepare(&self, p: ProcId, addr: u64, write: bool, s: &mut Stream) -> bool {
        s.invalidate();
        let d = &self.hm.debug;
        if d.debug_highmem || d.checker || d.atomic_sleep {
            return false;
        }
        let Some(mm) = self.mm.procs.get(p.0).and_then(|pr| pr.mm.as_ref()) else {
            return false;
        };
        let Some(vi) = mm.find_vma(addr) else {
            return false;
        };
        let v = &mm.vmas[vi];
        let VmaKind::Shm { seg } = v.kind else {
            return false;
        };
        if (write && !v.write) || (!write && !v.read) || self.mm.shm.get(seg).is_none() {
            return false;
        }
        let shift = self.pmd_shift();
        let key = addr >> shift;
        let Some(ptepfn) = mm.pte_pages.pfn(key as u32) else {
            return false;
        };
        *s = Stream {
            lo: v.start.max(key << shift),
            hi: v.end.min((key + 1) << shift),
            write,
            exec: v.exec,
            vi,
            seg,
            vma_start: v.start,
            ptepfn: ptepfn.as_u64(),
            bits: self.user_pte_bits(v.write, write, v.exec),
            size: self.geo.entry_size() as u8,
            idx_mask: self.ptes_per_page() - 1,
            atomic: self.hm.design == KernelDesign::Linux61
                && self.hm.pte_map == crate::design::PteMapApi::KmapAtomic
                && ptepfn.as_u64() >= self.layout.max_low_pfn.as_u64(),
            // A 64-bit kernel's 4-level tables take no fault run.
            direct: ptepfn.as_u64() < self.layout.max_low_pfn.as_u64()
                && self.config.arch == crate::config::Arch::I386,
        };
        true
    }

    /// `pte_offset_map` of the stream's PTE page: the generic map (the direct map, or the
    /// design's atomic kmap of a highmem PTE page), so both paths share every step of it.
    #[inline(always)]
    pub(super) fn stream_map(&mut self, cpu: usize, s: &Stream) -> Result<PteMap, MmError> {
        self.pte_map(cpu, Pfn::new(s.ptepfn), WalkLen::Short)
    }

    /// The #PF at `addr`: on the stream, else (nothing changed) the generic
    /// `handle_mm_fault` with the stream dropped.
    #[inline(always)]
    pub(super) fn stream_or_generic_fault(
        &mut self,
        cpu: usize,
        p: ProcId,
        addr: u64,
        write: bool,
        s: &mut Stream,
    ) -> Result<(), MmError> {
        if !self.stream_fault(cpu, p, addr, write, s)? {
            s.invalidate();
            self.handle_mm_fault(cpu, p, addr, write)?;
        }
        Ok(())
    }

    /// The rest of a stream fault from detour `d` ([`Self::stream_detour`]), else the
    /// generic `handle_mm_fault` with the stream dropped.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn detour_or_generic_fault(
        &mut self,
        cpu: usize,
        p: ProcId,
        addr: u64,
        write: bool,
        idx: u64,
        d: Detour,
        s: &mut Stream,
    ) -> Result<(), MmError> {
        if !self.stream_detour(cpu, p, addr, write, idx, d, s)? {
            s.invalidate();
            self.handle_mm_fault(cpu, p, addr, write)?;
        }
        Ok(())
    }
}

/// Where [`access_page_on`] left an access for the generic functions
/// ([`Kernel::access_handoff`]).
#[derive(Debug)]
enum ReadStop {
    /// The access goes on at this try, nothing pending.
    Touch(usize),
    /// Try `tries` raised this #PF (traced), not yet handled.
    Fault {
        addr: u64,
        write: bool,
        tries: usize,
    },
    /// Try `tries` raised this #PF, whose fault on entry `idx` [`atomic_fault`] took up to
    /// the step `d`.
    Detour {
        addr: u64,
        write: bool,
        idx: u64,
        d: Detour,
        tries: usize,
    },
    /// A translation failed otherwise.
    Err(MmError),
}

/// [`Kernel::stream_access`] on the quick kmap paths of borrow `a`, for a page the
/// prepared stream covers (the process alive): the first touch through the CPU; its #PF
/// (traced) taken as the stream takes it ([`fault_accounting`], [`atomic_fault`], rmap and
/// RSS); the retry. Where the generic functions must take over otherwise.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn access_page_on(
    a: &mut AtomicKmap,
    mm: &mut MmState,
    node: &mut PgData,
    cpu: usize,
    p: ProcId,
    va: u64,
    access: Access,
    s: &Stream,
) -> Result<(), ReadStop> {
    let pf = match a.translate_unmapped(VirtAddr::new(va), access) {
        Ok(_) => return Ok(()),
        Err(AccessError::PageFault(pf)) => pf,
        Err(e) => return Err(ReadStop::Err(MmError::Bug(e.to_string()))),
    };
    crate::trace::page_fault_user(cpu, pf.addr.as_u64(), pf.error_code.bits());
    let (addr, write) = (pf.addr.as_u64(), pf.error_code.bits() & 2 != 0);
    if !s.covers(addr, write) || !fault_accounting(mm, &mut node.vm_events, p, s) {
        return Err(ReadStop::Fault {
            addr,
            write,
            tries: 0,
        });
    }
    let idx = (addr >> 12) & s.idx_mask;
    let pfn =
        atomic_fault(a, &mut mm.counters, &mm.shm, s, addr, idx).map_err(|d| ReadStop::Detour {
            addr,
            write,
            idx,
            d,
            tries: 0,
        })?;
    node.page_add_file_rmap(pfn);
    mm.procs[p.0].rss_stat.count.shmem += 1;
    retry_on(a, cpu, va, access)
}

/// The retry of the access at `va` once its fault is handled, on borrow `a`: where the
/// generic functions must take over if it faults again.
#[inline(always)]
fn retry_on(a: &mut AtomicKmap, cpu: usize, va: u64, access: Access) -> Result<(), ReadStop> {
    match a.translate_refault(VirtAddr::new(va), access) {
        Ok(_) => Ok(()),
        Err(AccessError::PageFault(pf)) => {
            crate::trace::page_fault_user(cpu, pf.addr.as_u64(), pf.error_code.bits());
            Err(ReadStop::Fault {
                addr: pf.addr.as_u64(),
                write: pf.error_code.bits() & 2 != 0,
                tries: 1,
            })
        }
        Err(e) => Err(ReadStop::Err(MmError::Bug(e.to_string()))),
    }
}

/// The pages of fault run `run` from `from` on ([`AtomicKmap::run_faults`]), each fault
/// taken as [`access_page_on`] takes it: traced, [`fault_accounting`], then
/// [`atomic_fault`]'s steps as the run's slot steps (the entry read, the page-cache lookup,
/// the write), rmap and RSS. A fault that stops returns what the generic functions go on
/// from, as [`access_page_on`] does.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn run_pages(
    a: &mut AtomicKmap,
    mm: &mut MmState,
    node: &mut PgData,
    cpu: usize,
    p: ProcId,
    s: &Stream,
    run: &FaultRun,
    from: u64,
) -> RunEnd<ReadStop> {
    let Some(mut handler) = run_handler(mm, node, cpu, p, s, true) else {
        return RunEnd {
            at: from,
            steps: 0,
            stop: Some(RunStop::Untouched),
        };
    };
    a.run_faults(
        run,
        from,
        #[inline(always)]
        |st, pf| handler(st, pf),
    )
}

/// A fault run's handler for process `p` on stream `s`, or `None` where the process is no
/// longer alive with its mm; it takes a fault as [`access_page_on`] does: traced,
/// [`proc_fault_accounting`],
/// the entry read and the new one written through the run's steps (each a `kmap_atomic`
/// cycle of the PTE page where `kmapped`, else the direct map's load and store), the
/// page-cache lookup between them, rmap and RSS. A fault that stops returns what the
/// generic functions go on from.
#[inline(always)]
fn run_handler<'a>(
    mm: &'a mut MmState,
    node: &'a mut PgData,
    cpu: usize,
    p: ProcId,
    s: &'a Stream,
    kmapped: bool,
) -> Option<impl FnMut(&mut RunSteps, PageFault) -> Result<(), ReadStop> + 'a> {
    let MmState {
        procs,
        counters,
        shm,
        ..
    } = mm;
    let pages = s.pages(shm);
    let proc = procs
        .get_mut(p.0)
        .filter(|pr| !pr.dead && pr.mm.is_some())?;
    Some(
        #[inline(always)]
        move |st: &mut RunSteps, pf: PageFault| {
            let (addr, code) = (pf.addr.as_u64(), pf.error_code.bits());
            crate::trace::page_fault_user(cpu, addr, code);
            let write = code & 2 != 0;
            proc_fault_accounting(proc, counters, &mut node.vm_events, s);
            let idx = (addr >> 12) & s.idx_mask;
            let off = idx * u64::from(s.size);
            let detour = |d| ReadStop::Detour {
                addr,
                write,
                idx,
                d,
                tries: 0,
            };
            // handle_pte_fault(): pte_offset_map, the none entry, pte_unmap.
            if st.read(off, s.size, |v| v & _PAGE_PRESENT == 0).is_none() {
                return Err(detour(Detour::Map));
            }
            if kmapped {
                counters.pte_kmaps += 1;
            }
            // __do_fault() → shm_fault().
            let pgoff = s.pgoff(addr);
            let Some(pfn) = cached_in(pages, pgoff) else {
                return Err(detour(Detour::Uncached(pgoff)));
            };
            // finish_fault(): the same map, set_pte_at, unmap; rmap and RSS.
            let pte = pfn.phys().as_u64() | s.bits;
            if !st.write(off, s.size, pte) {
                return Err(detour(Detour::Remap(pte)));
            }
            if kmapped {
                counters.pte_kmaps += 1;
            }
            node.page_add_file_rmap(pfn.as_u64());
            proc.rss_stat.count.shmem += 1;
            Ok(())
        },
    )
}

/// What must hold at each fault for the prepared stream to apply: process `p` alive
/// with its mm.
#[inline(always)]
pub(super) fn ready(mm: &MmState, p: ProcId) -> bool {
    let proc = &mm.procs[p.0];
    !proc.dead && proc.mm.is_some()
}

/// `handle_mm_fault()`'s accounting of a fault on stream `s` by process `p`: the VMA (the
/// lookup's cache lands on it), `min_flt`, `check_sync_rss_stat()`, the fault counter and
/// PGFAULT. `false`, having changed nothing, where the process is no longer alive with
/// its mm (the fault is then not the stream's).
#[inline(always)]
pub(super) fn fault_accounting(
    mm: &mut MmState,
    events: &mut VmEvents,
    p: ProcId,
    s: &Stream,
) -> bool {
    let Some(proc) = mm.procs.get_mut(p.0) else {
        return false;
    };
    if proc.dead || proc.mm.is_none() {
        return false;
    }
    proc_fault_accounting(proc, &mut mm.counters, events, s);
    true
}

/// [`fault_accounting`] for `proc`, alive with its mm.
#[inline(always)]
fn proc_fault_accounting(
    proc: &mut Process,
    counters: &mut MmCounters,
    events: &mut VmEvents,
    s: &Stream,
) {
    if let Some(m) = proc.mm.as_ref() {
        m.mmap_cache.set(s.vi);
    }
    proc.min_flt += 1;
    // check_sync_rss_stat().
    let old = proc.rss_stat.events;
    proc.rss_stat.events += 1;
    counters.faults += 1;
    events[VmEventItem::Pgfault] += 1;
    if old > TASK_RSS_EVENTS_THRESH {
        proc.sync_mm_rss();
    }
}

/// The page `pgoff` of a segment's page cache `pages`, if it is there.
#[inline(always)]
fn cached_in(pages: &[Option<Pfn>], pgoff: u64) -> Option<Pfn> {
    pages.get(pgoff as usize).copied().flatten()
}

/// A step of a fault that [`atomic_fault`] did not take, with what the generic functions
/// need to go on from there ([`Kernel::stream_detour`]).
#[derive(Debug)]
pub(super) enum Detour {
    /// `handle_pte_fault`'s map (nothing done yet).
    Map,
    /// The read through the slot at this address failed.
    Read(VirtAddr, AccessError),
    /// The entry read through the slot is present.
    Present(VirtAddr, u64),
    /// `pte_unmap` of the slot.
    Unmap(VirtAddr),
    /// The page at this index is not in the segment's page cache.
    Uncached(u64),
    /// `finish_fault`'s map, for this new PTE.
    Remap(u64),
    /// The write through the slot failed.
    Write(AccessError),
    /// `finish_fault`'s `pte_unmap` of the slot, after mapping this page.
    Unmap2(VirtAddr, u64),
}

/// [`Kernel::stream_fault`] on the quick kmap paths, from `handle_pte_fault` to
/// `finish_fault`'s unmap: `pte_offset_map` (`kmap_atomic`), the entry read through the
/// slot, `pte_unmap` (`kunmap_atomic`), `shm_fault()`'s page-cache lookup, the same map,
/// `set_pte_at` through the slot, the unmap (the page mapped comes back); or the first step
/// these do not take (everything before it done).
#[inline(always)]
pub(super) fn atomic_fault(
    a: &mut AtomicKmap,
    counters: &mut MmCounters,
    shm: &[ShmSeg],
    s: &Stream,
    addr: u64,
    idx: u64,
) -> Result<u64, Detour> {
    let ptepfn = Pfn::new(s.ptepfn);
    let off = idx * u64::from(s.size);
    // The usual none entry in one slot step.
    let none = |v: u64| v & _PAGE_PRESENT == 0;
    if a.read_cycle(ptepfn, off, s.size, none).is_some() {
        counters.pte_kmaps += 1;
    } else {
        let va = a.map(ptepfn).ok_or(Detour::Map)?;
        counters.pte_kmaps += 1;
        let (c, mem) = a.cpu();
        let old = c
            .read_virt_entry(mem, va + off, s.size)
            .map_err(|e| Detour::Read(va, e))?;
        if old & _PAGE_PRESENT != 0 {
            return Err(Detour::Present(va, old));
        }
        if !a.unmap(va) {
            return Err(Detour::Unmap(va));
        }
    }
    // __do_fault() → shm_fault().
    let pgoff = s.pgoff(addr);
    let pfn = s.cached(shm, pgoff).ok_or(Detour::Uncached(pgoff))?;
    // finish_fault(): the same map again, set_pte_at, unmap (the caller counts the RSS).
    let pte = pfn.phys().as_u64() | s.bits;
    if a.write_cycle(ptepfn, off, s.size, pte) {
        counters.pte_kmaps += 1;
        return Ok(pfn.as_u64());
    }
    let va = a.map(ptepfn).ok_or(Detour::Remap(pte))?;
    counters.pte_kmaps += 1;
    let (c, mem) = a.cpu();
    c.write_virt_entry(mem, va + off, s.size, pte)
        .map_err(Detour::Write)?;
    if !a.unmap(va) {
        return Err(Detour::Unmap2(va, pfn.as_u64()));
    }
    Ok(pfn.as_u64())
}
