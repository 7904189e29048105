//! `madvise(MADV_POPULATE_READ)` on the fault stream: `__get_user_pages()` without a page
//! list, per page `follow_page`, `handle_mm_fault` when it finds nothing, `follow_page`
//! again, with the faults of an ordinary SysV-segment page taken as the fault stream takes
//! them ([`super::fault_stream`]).
//!
//! With a highmem PTE page of the 6.1 kernel every one of those reads and writes of the
//! page's entry is a `kmap_atomic` / access / `kunmap_atomic` of the PTE page, taken as a
//! slot step (`AtomicKmap::read_cycle` / `write_cycle`). Between two pages the loop touches
//! only the process's `mm` and the node's page metadata, so the pages of one PTE page run on
//! one borrow of the CPU, its task, the kmap area and RAM ([`Kernel::populate_atomic`]):
//! every slot step after the first repeats the last one's slot and needs no walk. Where a
//! step is not the usual one, the page goes on in the generic functions from where it
//! stopped ([`Kernel::populate_handoff`]).

use super::fault_stream::{atomic_fault, fault_accounting, ready, Detour, Stream};
use super::pgtable_user::{access_bug, PteMap};
use super::{MmCounters, MmError, MmState, ProcId, PAGE_SIZE};
use crate::highmem::kmap_local::AtomicKmap;
use crate::mmzone::PgData;
use crate::pgtable_types::{_PAGE_NX, _PAGE_PRESENT, _PAGE_RW};
use crate::Kernel;
use machine::{AccessError, Pfn, VirtAddr};

impl Kernel {
    /// `__get_user_pages()` without a page list (what `madvise(MADV_POPULATE_READ)` runs)
    /// on the stream: exactly `gup_process(.., want = false)` — per page `follow_page`,
    /// `handle_mm_fault` when it finds nothing, `follow_page` again — with both taken on the
    /// stream while the page lies in the prepared VMA and PMD, and on one borrow of the
    /// quick kmap paths for a highmem PTE page of the 6.1 kernel
    /// ([`Self::populate_atomic`]).
    pub(crate) fn populate_run(
        &mut self,
        cpu: usize,
        p: ProcId,
        addr: u64,
        npages: u64,
        write: bool,
    ) -> Result<(), MmError> {
        let mut s = Stream::default();
        let mut i = 0;
        while i < npages {
            let gup = if s.atomic && s.covers(addr + i * PAGE_SIZE, write) && self.stream_ready(p) {
                // As many pages as one borrow of the quick kmap paths takes, then the rest
                // of the page it stopped at.
                let (next, stop) = self.populate_atomic(cpu, p, addr, i, npages, write, &s);
                i = next;
                match stop {
                    None => continue,
                    Some(stop) => {
                        let va = addr + i * PAGE_SIZE;
                        self.populate_handoff(cpu, p, va, write, &mut s, stop)?
                    }
                }
            } else {
                Gup::Follow(0)
            };
            let va = addr + i * PAGE_SIZE;
            match gup {
                Gup::Done => {}
                // The loop's start (inline: every page of a PTE page in the direct map).
                Gup::Follow(0) => self.populate_page(cpu, p, va, write, &mut s)?,
                _ => self.populate_resume(cpu, p, va, write, &mut s, gup)?,
            }
            i += 1;
        }
        Ok(())
    }

    /// `__get_user_pages()`'s loop for the page at `va`: `follow_page`, and while it
    /// finds nothing (at most 3 times) `faultin_page` and `follow_page` again.
    #[inline(always)]
    fn populate_page(
        &mut self,
        cpu: usize,
        p: ProcId,
        va: u64,
        write: bool,
        s: &mut Stream,
    ) -> Result<(), MmError> {
        let mut tries = 0;
        while !self.stream_follow(cpu, p, va, write, s)? {
            tries += 1;
            if tries > 3 {
                return Err(MmError::Bug(format!("gup: no progress at {va:#x}")));
            }
            // faultin_page()
            if !self.stream_fault(cpu, p, va, write, s)? {
                s.invalidate();
                self.handle_mm_fault(cpu, p, va, write)?;
            }
        }
        Ok(())
    }

    /// [`Self::populate_page`] from `gup` on, where [`Self::populate_atomic`] left it. Its
    /// loop repeats `populate_page`'s on purpose: one shared `faultin_page` step, even
    /// inlined, costs populate 22 instructions a page (16 on x86_64) under callgrind.
    #[inline(never)]
    fn populate_resume(
        &mut self,
        cpu: usize,
        p: ProcId,
        va: u64,
        write: bool,
        s: &mut Stream,
        gup: Gup,
    ) -> Result<(), MmError> {
        let (mut tries, mut follow) = match gup {
            Gup::Done => return Ok(()),
            Gup::Follow(tries) => (tries, true),
            Gup::Fault(tries) => (tries, false),
        };
        loop {
            if follow && self.stream_follow(cpu, p, va, write, s)? {
                return Ok(());
            }
            follow = true;
            tries += 1;
            if tries > 3 {
                return Err(MmError::Bug(format!("gup: no progress at {va:#x}")));
            }
            // faultin_page()
            if !self.stream_fault(cpu, p, va, write, s)? {
                s.invalidate();
                self.handle_mm_fault(cpu, p, va, write)?;
            }
        }
    }

    /// [`Self::populate_page`] from its start for page `first` (which the prepared stream
    /// covers with a highmem PTE page of the 6.1 kernel, the process alive) and the pages
    /// after it while the stream covers them, all on one borrow of the quick kmap paths
    /// ([`populate_page_on`]): the page it stopped at, and what its loop goes on with
    /// (`None`: nothing done to that page, which the stream no longer covers, or the end).
    /// The borrow is of the CPU, its task, the kmap area and RAM, and the pages in between
    /// touch only `mm` and `node`: a slot step may repeat the last one's, even across pages.
    /// (The reader's loop, [`Self::access_atomic`], is of the same shape; a loop shared
    /// through a closure lays populate's page out with 90 instructions more.)
    #[allow(clippy::too_many_arguments)]
    fn populate_atomic(
        &mut self,
        cpu: usize,
        p: ProcId,
        addr: u64,
        first: u64,
        npages: u64,
        write: bool,
        s: &Stream,
    ) -> (u64, Option<Stop>) {
        let Some((mut a, mm, node)) = self.atomic_parts(cpu) else {
            return (first, Some(Stop::Gup(Gup::Follow(0))));
        };
        let mut i = first;
        while i < npages {
            let va = addr + i * PAGE_SIZE;
            if i != first && !(s.covers(va, write) && ready(mm, p)) {
                return (i, None);
            }
            match populate_page_on(&mut a, mm, node, cpu, p, va, write, s) {
                Ok(Gup::Done) => i += 1,
                Ok(gup) => return (i, Some(Stop::Gup(gup))),
                Err(stop) => return (i, Some(stop)),
            }
        }
        (i, None)
    }

    /// The page at `va` from where [`Self::populate_atomic`] stopped, up to where its loop
    /// goes on.
    #[cold]
    #[inline(never)]
    fn populate_handoff(
        &mut self,
        cpu: usize,
        p: ProcId,
        va: u64,
        write: bool,
        s: &mut Stream,
        stop: Stop,
    ) -> Result<Gup, MmError> {
        match stop {
            Stop::Gup(gup) => Ok(gup),
            Stop::Unmap { kva, v, tries } => {
                self.pte_unmap(cpu, PteMap::Atomic(kva))?;
                let v = v.map_err(access_bug)?;
                Ok(after_follow_touch(&mut self.node, cpu, v, write, tries))
            }
            Stop::Detour(idx, d) => {
                self.detour_or_generic_fault(cpu, p, va, write, idx, d, s)?;
                Ok(Gup::Follow(1))
            }
            Stop::Err(e) => Err(e),
        }
    }

    /// `follow_page_mask()` of [`Self::populate_run`]: whether the page at `va` is mapped
    /// for the access (its PTE read through the stream's map when the stream covers it).
    /// Always inline: out of line it costs each page of a direct-mapped PTE page ~60.
    #[inline(always)]
    fn stream_follow(
        &mut self,
        cpu: usize,
        p: ProcId,
        va: u64,
        write: bool,
        s: &Stream,
    ) -> Result<bool, MmError> {
        if !s.covers(va, write) || !self.stream_ready(p) {
            return Ok(self.follow_page(cpu, p, va, write, true)?.is_some());
        }
        let idx = (va >> 12) & s.idx_mask;
        let v = if s.atomic {
            self.stream_follow_atomic(cpu, idx, s)?
        } else {
            self.stream_pte_read(cpu, idx, s)?
        };
        Ok(after_follow_touch(&mut self.node, cpu, v, write, 0).is_done())
    }

    /// `follow_page_pte()`'s read of entry `idx`: `pte_offset_map`, the entry, `pte_unmap`.
    #[inline(always)]
    fn stream_pte_read(&mut self, cpu: usize, idx: u64, s: &Stream) -> Result<u64, MmError> {
        let m = self.stream_map(cpu, s)?;
        let v = self.stream_pte_get(cpu, m, idx, s);
        self.pte_unmap(cpu, m)?;
        v
    }

    /// [`Self::stream_pte_read`] of a highmem PTE page of the 6.1 kernel, on one borrow
    /// of the CPU, its task and the kmap area ([`AtomicKmap`]), as in
    /// [`Self::stream_fault_atomic`].
    #[inline(always)]
    fn stream_follow_atomic(&mut self, cpu: usize, idx: u64, s: &Stream) -> Result<u64, MmError> {
        let Some(mut a) = AtomicKmap::new(
            &mut self.sched,
            &self.hm,
            &mut self.machine,
            &mut self.kmap_local,
            cpu,
        ) else {
            return self.stream_pte_read_slow(cpu, idx, s);
        };
        let Some((va, v)) = atomic_pte_read(&mut a, &mut self.mm.counters, idx, s) else {
            return self.stream_pte_read_slow(cpu, idx, s);
        };
        if let Some(va) = va.filter(|&k| !a.unmap(k)) {
            self.pte_unmap(cpu, PteMap::Atomic(va))?;
        }
        v.map_err(access_bug)
    }

    /// [`Self::stream_follow_atomic`] where the quick map does not apply.
    #[cold]
    #[inline(never)]
    fn stream_pte_read_slow(&mut self, cpu: usize, idx: u64, s: &Stream) -> Result<u64, MmError> {
        self.stream_pte_read(cpu, idx, s)
    }
}

/// Where [`populate_page_on`] left a page for the generic functions
/// ([`Kernel::populate_handoff`]).
#[derive(Debug)]
enum Stop {
    /// `__get_user_pages()`'s loop goes on from here.
    Gup(Gup),
    /// `follow_page`'s map at `kva`, which the quick unmap did not take: `pte_unmap`, then
    /// the loop after the entry read, `tries` faults in.
    Unmap {
        kva: VirtAddr,
        v: Result<u64, AccessError>,
        tries: u32,
    },
    /// The step of the fault on entry `idx` that [`atomic_fault`] did not take.
    Detour(u64, Detour),
    /// The entry read failed.
    Err(MmError),
}

/// [`Kernel::populate_page`] on the quick kmap paths of borrow `a`, for a page the
/// prepared stream covers (the process alive): `follow_page`, and when it finds nothing
/// the fault ([`fault_accounting`], [`atomic_fault`], rmap and RSS) and `follow_page`
/// again. Where the loop goes on, or where the generic functions must take over.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn populate_page_on(
    a: &mut AtomicKmap,
    mm: &mut MmState,
    node: &mut PgData,
    cpu: usize,
    p: ProcId,
    va: u64,
    write: bool,
    s: &Stream,
) -> Result<Gup, Stop> {
    let idx = (va >> 12) & s.idx_mask;
    // follow_page_mask()
    let Some((kva, v)) = atomic_pte_read(a, &mut mm.counters, idx, s) else {
        return Ok(Gup::Follow(0));
    };
    if let Some(kva) = kva.filter(|&k| !a.unmap(k)) {
        return Err(Stop::Unmap { kva, v, tries: 0 });
    }
    let v = v.map_err(|e| Stop::Err(access_bug(e)))?;
    match after_follow_touch(node, cpu, v, write, 0) {
        Gup::Fault(_) => {}
        done => return Ok(done),
    }
    // faultin_page() → handle_mm_fault() on the stream (it covers `va`).
    if !fault_accounting(mm, &mut node.vm_events, p, s) {
        return Ok(Gup::Fault(0));
    }
    let pfn =
        atomic_fault(a, &mut mm.counters, &mm.shm, s, va, idx).map_err(|d| Stop::Detour(idx, d))?;
    node.page_add_file_rmap(pfn);
    mm.procs[p.0].rss_stat.count.shmem += 1;
    // follow_page_mask() again.
    let Some((kva, v)) = atomic_pte_read(a, &mut mm.counters, idx, s) else {
        return Ok(Gup::Follow(1));
    };
    if let Some(kva) = kva.filter(|&k| !a.unmap(k)) {
        return Err(Stop::Unmap { kva, v, tries: 1 });
    }
    let v = v.map_err(|e| Stop::Err(access_bug(e)))?;
    Ok(after_follow_touch(node, cpu, v, write, 1))
}

/// Whether `follow_page_pte()` finds the page of PTE `v` mapped for the access.
#[inline(always)]
fn follows(v: u64, write: bool) -> bool {
    v & _PAGE_PRESENT != 0 && !(write && v & _PAGE_RW == 0)
}

/// Where [`Kernel::populate_atomic`] leaves a page of [`Kernel::populate_run`]: done, or
/// `__get_user_pages()`'s loop to go on with, after that many faults, at `follow_page`
/// or (it has just found nothing) at the next fault.
#[derive(Clone, Copy, Debug)]
enum Gup {
    Done,
    Follow(u32),
    Fault(u32),
}

impl Gup {
    fn is_done(self) -> bool {
        matches!(self, Gup::Done)
    }
}

/// Where the loop goes after a `follow_page` that read PTE `v`, `tries` faults in: done
/// when the page is mapped for the access — which, FOLL_TOUCH, marks it accessed — else
/// to the fault.
#[inline(always)]
fn after_follow_touch(node: &mut PgData, cpu: usize, v: u64, write: bool, tries: u32) -> Gup {
    if follows(v, write) {
        node.folio_mark_accessed(cpu, (v & 0x000f_ffff_ffff_f000 & !_PAGE_NX) >> 12);
        Gup::Done
    } else {
        Gup::Fault(tries)
    }
}
/// `follow_page_pte()`'s map and read of entry `idx` of the stream's PTE page on the quick
/// `kmap_atomic`: the slot's address and what the CPU read through it (the caller
/// unmaps), or `None`, having changed nothing, where the quick map does not apply.
#[inline(always)]
fn atomic_pte_read(
    a: &mut AtomicKmap,
    counters: &mut MmCounters,
    idx: u64,
    s: &Stream,
) -> Option<(Option<VirtAddr>, Result<u64, AccessError>)> {
    let (pfn, off) = (Pfn::new(s.ptepfn), idx * u64::from(s.size));
    if let Some(v) = a.read_cycle(pfn, off, s.size, |_| true) {
        counters.pte_kmaps += 1;
        return Some((None, Ok(v)));
    }
    let va = a.map(pfn)?;
    counters.pte_kmaps += 1;
    let (c, mem) = a.cpu();
    Some((Some(va), c.read_virt_entry(mem, va + off, s.size)))
}
