//! User page tables: `pgd_alloc` / `pgd_free` (arch/x86/mm/pgtable.c), `pte_alloc_one` with
//! `__userpte_alloc_gfp`, `pmd_install`, and the PTE-page accessors of each design:
//! 6.1 `pte_offset_map` = `kmap_atomic` (6.5+: `kmap_local_page`, `PteMapApi`), 2.5's typed
//! `KM_PTE0` / `KM_PTE1`, 2.4-SuSE's
//! `pte_offset_atomic` (KM_USER0) for short walks and the persistent `kmap` for long ones.

use super::oom_kill::OomRatelimit;
use super::{MmError, ProcId};
use crate::design::{KernelDesign, KmType, PteMapApi};
use crate::gfp::{Gfp, GFP_PGTABLE_USER};
use crate::page_alloc::AllocFailureKind;
use crate::pgtable_types::{_PAGE_PRESENT, _PAGE_TABLE};
use crate::sched::Blocking;
use crate::vmstat::NodeStatItem;
use crate::{Kernel, KernelAllocError};
use machine::{AccessError, BusError, Pfn, PhysAddr, VirtAddr};

/// A kernel access to a mapped PTE page faulted: the kernel would oops.
#[cold]
#[inline(never)]
pub(crate) fn access_bug(e: AccessError) -> MmError {
    MmError::Bug(e.to_string())
}

/// A map or unmap of a PTE page failed: the kernel would BUG.
#[cold]
#[inline(never)]
fn kmap_bug(e: crate::highmem::KmapError) -> MmError {
    MmError::Bug(e.to_string())
}

/// A PTE page outside RAM.
#[cold]
#[inline(never)]
pub(crate) fn bus_bug(e: BusError) -> MmError {
    MmError::Bug(e.to_string())
}

/// How a PTE page is reached for one walk.
#[derive(Clone, Copy, Debug)]
pub enum PteMap {
    /// Low memory: the direct map (a physical access in the model).
    Direct(PhysAddr),
    /// 6.1 `kmap_atomic`.
    Atomic(VirtAddr),
    /// 6.5+ `kmap_local_page`.
    Local(VirtAddr),
    /// 2.4 / 2.5 typed atomic kmap.
    Typed(VirtAddr, KmType),
    /// 2.4 persistent `kmap` (pte_offset / kmap_pagetable).
    Persistent(VirtAddr, Pfn),
}

/// A walk that holds its map for many entries (zap, copy) or one (a fault).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalkLen {
    Short,
    Long,
    /// The second map of `copy_page_range` (`pte_offset_map_nested`, KM_PTE1).
    Nested,
}

impl Kernel {
    /// `__userpte_alloc_gfp`: GFP_PGTABLE_USER, plus __GFP_HIGHMEM with CONFIG_HIGHPTE unless
    /// `userpte=nohigh`.
    pub fn userpte_alloc_gfp(&self) -> Gfp {
        let highmem = self.config.highpte
            && self.config.highmem != crate::config::Highmem::NoHighmem
            && !self.mm.userpte_nohigh;
        if highmem {
            GFP_PGTABLE_USER | Gfp::HIGHMEM
        } else {
            GFP_PGTABLE_USER
        }
    }

    /// One allocation on behalf of process `p`, with the slow path's direct reclaim and OOM
    /// killer: when the allocator fails at the min watermark, reclaim runs; if it made
    /// progress the per-CPU lists are drained and the allocation tried once more; else (or
    /// if that fails too) `out_of_memory` kills a victim and the allocation is retried
    /// (`__alloc_pages_may_oom`'s "did_some_progress"), for as long as the killer finds
    /// victims, as the kernel's order-0 allocations do.
    pub fn mm_alloc_pages(
        &mut self,
        gfp: Gfp,
        order: u32,
        cpu: usize,
        p: Option<ProcId>,
    ) -> Result<Pfn, MmError> {
        let mut oom_rs = OomRatelimit::default();
        loop {
            match self.alloc_pages(gfp, order, cpu) {
                Ok(a) => return Ok(a.pfn),
                Err(KernelAllocError::Alloc(f)) if f.kind == AllocFailureKind::WouldOom => {
                    if self.__alloc_pages_direct_reclaim(gfp, cpu) {
                        if let Some(a) = self.node.get_page_after_reclaim(gfp, order, cpu) {
                            return match self.init_allocated(a, cpu) {
                                Ok(a) => Ok(a.pfn),
                                Err(e) => Err(MmError::Bug(e.to_string())),
                            };
                        }
                    }
                    self.__alloc_pages_may_oom(gfp, order, cpu, p, &mut oom_rs)?;
                }
                Err(KernelAllocError::Alloc(f)) => {
                    for l in f.report {
                        self.log.log(crate::printk::LogLevel::Warning, l);
                    }
                    return Err(MmError::Oom);
                }
                Err(KernelAllocError::Oops(s)) => return Err(MmError::Bug(s)),
            }
        }
    }

    /// `__alloc_pages_direct_reclaim()`: reclaim ([`Self::try_to_free_pages`]) and, when it
    /// made progress, drain the per-CPU lists, where the freed pages and those of exited
    /// tasks wait uncounted by the watermark check. True on progress. (The kernel tries the
    /// zonelist once before the drain too; that attempt finds the same buddy counts here.)
    pub(crate) fn __alloc_pages_direct_reclaim(&mut self, gfp: Gfp, cpu: usize) -> bool {
        if self.try_to_free_pages(gfp, cpu) == 0 {
            return false;
        }
        self.node.drain_all_pages(None);
        true
    }

    /// `__alloc_pages_may_oom()` once reclaim gave up: kill a victim; the caller retries.
    ///
    /// Without reclaim progress nothing drains the per-CPU lists, so the victims' page
    /// tables stay in the lists they were freed to, uncounted by the watermark check, and
    /// the killing goes on until a zone's buddy free count passes its watermark (a pcp list
    /// over its `high` gives a batch back). Its last attempt at the high watermark cannot
    /// succeed in this model: nothing was freed since the attempt that just failed. Err
    /// when nothing could be killed (the kernel panicked) or the victim is the allocating
    /// task itself.
    pub(crate) fn __alloc_pages_may_oom(
        &mut self,
        gfp: Gfp,
        order: u32,
        cpu: usize,
        p: Option<ProcId>,
        oom_rs: &mut OomRatelimit,
    ) -> Result<(), MmError> {
        if !self.out_of_memory(gfp, order, cpu, p, oom_rs) {
            return Err(MmError::Panic(
                super::oom_kill::SYSTEM_DEADLOCKED.to_string(),
            ));
        }
        if p.is_some_and(|p| self.mm.procs[p.0].dead) {
            return Err(MmError::Killed);
        }
        Ok(())
    }

    pub(crate) fn mm_free_pages(&mut self, pfn: Pfn, order: u32, cpu: usize) {
        let r = if order == 0 {
            // put_page(): a user page's last reference takes it off its LRU list.
            self.node.put_page_lru(pfn, cpu)
        } else {
            self.node.__free_pages(pfn, order, cpu)
        };
        if let Err(e) = r {
            self.log
                .log(crate::printk::LogLevel::Err, format!("BUG: {e}"));
        }
    }

    /// PAE's `PREALLOCATED_PMDS` plus PTI's user PMDs (one per kernel pgd entry,
    /// KERNEL_PGD_PTRS; KERNEL_PGD_BOUNDARY is the first pgd entry above PAGE_OFFSET, 3 on
    /// the 3G split): the PMD pages `pgd_alloc` gives every mm. None without PAE.
    pub(crate) fn nr_preallocated_pmds(&self) -> usize {
        if !self.geo.pae || self.geo.long {
            return 0;
        }
        let kernel_pgd_boundary = (self.config.page_offset() >> 30) as usize;
        4 + if self.config.page_table_isolation {
            4 - kernel_pgd_boundary
        } else {
            0
        }
    }

    /// The pgd's order: two pages with PTI (the user copy beside the kernel's).
    pub(crate) fn pgd_order(&self) -> u32 {
        u32::from(self.config.page_table_isolation)
    }

    /// `pgd_alloc()`: the pgd (order 1 with PTI), PAE's preallocated PMDs (`preallocate_pmds`,
    /// plus PTI's user PMD), the kernel part copied from swapper_pg_dir (`pgd_ctor`, and the
    /// kernel PMD's contents when the kernel PMD is not shared).
    pub fn pgd_alloc(
        &mut self,
        cpu: usize,
        p: Option<ProcId>,
    ) -> Result<(Pfn, u32, Vec<Pfn>), MmError> {
        let order = self.pgd_order();
        let pgd = self.mm_alloc_pages(GFP_PGTABLE_USER & !Gfp::HIGHMEM, order, cpu, p)?;
        let pgd_pa = pgd.phys();
        let swapper = PhysAddr::new(self.swapper_pg_dir);
        let mut pmds = Vec::new();
        let kernel_pgd_boundary = self.config.page_offset() >> 30;
        if self.geo.long {
            self.clone_kernel_pgd_4level(pgd_pa);
        } else if self.geo.pae {
            for _ in 0..self.nr_preallocated_pmds() {
                match self.mm_alloc_pages(GFP_PGTABLE_USER, 0, cpu, p) {
                    Ok(pmd) => {
                        // pgtable_pmd_page_ctor(): the PMD page is a page table.
                        self.node.vm_stat[NodeStatItem::NrPagetable] += 1;
                        pmds.push(pmd);
                    }
                    Err(e) => {
                        for pmd in pmds {
                            self.node.vm_stat[NodeStatItem::NrPagetable] -= 1;
                            self.mm_free_pages(pmd, 0, cpu);
                        }
                        self.mm_free_pages(pgd, order, cpu);
                        return Err(e);
                    }
                }
            }
            // pgd_prepopulate_pmd(): each PDPTE points to its PMD page (the PDPTE format has
            // only P besides the address, as swapper's entries show).
            for i in 0..4u64 {
                let sw = self.machine.mem.read_u64(swapper + i * 8).unwrap_or(0);
                let flags = if sw & _PAGE_PRESENT != 0 {
                    sw & 0xfff
                } else {
                    _PAGE_PRESENT
                };
                let pmd = pmds[i as usize];
                let _ = self
                    .machine
                    .mem
                    .write_u64(pgd_pa + i * 8, pmd.phys().as_u64() | flags);
                // The kernel's PMDs (from KERNEL_PGD_BOUNDARY up): copy swapper's.
                if i >= kernel_pgd_boundary && sw & _PAGE_PRESENT != 0 {
                    let src = PhysAddr::new(sw & 0x000f_ffff_ffff_f000);
                    let mut buf = vec![0u8; 4096];
                    let _ = self.machine.mem.read(src, &mut buf);
                    let _ = self.machine.mem.write(pmd.phys(), &buf);
                }
            }
        } else {
            // clone_pgd_range(): the kernel's pgd entries.
            let first = self.config.page_offset() >> 22;
            for i in first..1024 {
                let v = self.machine.mem.read_u32(swapper + i * 4).unwrap_or(0);
                let _ = self.machine.mem.write_u32(pgd_pa + i * 4, v);
            }
        }
        Ok((pgd, order, pmds))
    }

    /// Where the PMD entry of `va` lives (a lowmem pgd or PMD page): its physical address.
    pub(crate) fn user_pmd_entry(&self, p: ProcId, va: u64) -> Option<PhysAddr> {
        let mm = self.mm.procs[p.0].mm.as_ref()?;
        if self.geo.long {
            let pmd = (*mm.upper.pmds.get((va >> 30) as usize)?)?;
            Some(pmd.phys() + ((va >> 21) & 511) * 8)
        } else if self.geo.pae {
            let pmd = mm.pmds.get((va >> 30) as usize)?;
            Some(pmd.phys() + ((va >> 21) & 511) * 8)
        } else {
            Some(mm.pgd.phys() + (va >> 22) * 4)
        }
    }

    pub(crate) fn pmd_shift(&self) -> u32 {
        if self.geo.pae {
            21
        } else {
            22
        }
    }

    pub(crate) fn ptes_per_page(&self) -> u64 {
        if self.geo.pae {
            512
        } else {
            1024
        }
    }

    /// `pte_alloc()`: the PTE page under the PMD entry of `va`, allocated by
    /// [`Self::__pte_alloc`] when the entry is empty.
    #[inline]
    pub fn pte_alloc(&mut self, cpu: usize, p: ProcId, va: u64) -> Result<Pfn, MmError> {
        let key = (va >> self.pmd_shift()) as u32;
        let mm = self.mm.procs[p.0].mm.as_ref().ok_or(MmError::NoProc)?;
        match mm.pte_pages.pfn(key) {
            Some(pfn) => Ok(pfn),
            None => self.__pte_alloc(cpu, p, va),
        }
    }

    /// `__pte_alloc()`: `pte_alloc_one` (`__userpte_alloc_gfp`, zeroed by the allocator, the
    /// ctor counts NR_PAGETABLE) and `pmd_install` (`mm_inc_nr_ptes`, `pmd_populate`).
    #[inline(never)]
    fn __pte_alloc(&mut self, cpu: usize, p: ProcId, va: u64) -> Result<Pfn, MmError> {
        let key = (va >> self.pmd_shift()) as u32;
        if self.geo.long {
            self.pmd_alloc(cpu, p, va)?;
        }
        let gfp = self.userpte_alloc_gfp();
        let pfn = self.mm_alloc_pages(gfp, 0, cpu, Some(p))?;
        self.node.vm_stat[NodeStatItem::NrPagetable] += 1;
        self.mm.counters.pte_pages_allocated += 1;
        let entry = self.user_pmd_entry(p, va).ok_or(MmError::Segv(va))?;
        let val = pfn.phys().as_u64() | _PAGE_TABLE;
        let r = if self.geo.pae {
            self.machine.mem.write_u64(entry, val)
        } else {
            self.machine.mem.write_u32(entry, val as u32)
        };
        r.map_err(|e| MmError::Bug(e.to_string()))?;
        let mm = self.mm.procs[p.0].mm.as_mut().ok_or(MmError::NoProc)?;
        mm.pte_pages.insert(key, pfn);
        mm.nr_ptes += 1;
        Ok(pfn)
    }

    /// Map a PTE page for a walk, as the design does (`pte_offset_map` and friends): low
    /// memory through the direct map, 6.1's `kmap_atomic` inline, the older designs' maps
    /// out of line.
    #[inline(always)]
    pub fn pte_map(&mut self, cpu: usize, pfn: Pfn, len: WalkLen) -> Result<PteMap, MmError> {
        if pfn.as_u64() < self.layout.max_low_pfn.as_u64() {
            return Ok(PteMap::Direct(pfn.phys()));
        }
        self.mm.counters.pte_kmaps += 1;
        if self.hm.design == KernelDesign::Linux61 && self.hm.pte_map == PteMapApi::KmapAtomic {
            return match self.kmap_atomic(cpu, pfn) {
                Ok(va) => Ok(PteMap::Atomic(va)),
                Err(e) => Err(kmap_bug(e)),
            };
        }
        self.pte_map_typed(cpu, pfn, len)
    }

    /// [`Self::pte_map`] of a highmem PTE page for the 2.5 and 2.4 designs.
    #[inline(never)]
    fn pte_map_typed(&mut self, cpu: usize, pfn: Pfn, len: WalkLen) -> Result<PteMap, MmError> {
        let bug = kmap_bug;
        match self.hm.design {
            KernelDesign::Linux61 => match self.hm.pte_map {
                PteMapApi::KmapAtomic => self.kmap_atomic(cpu, pfn).map(PteMap::Atomic),
                PteMapApi::KmapLocal => self.kmap_local_page(cpu, pfn).map(PteMap::Local),
            }
            .map_err(bug),
            KernelDesign::Highpte25 => {
                let t = if len == WalkLen::Nested {
                    KmType::KM_PTE1
                } else {
                    KmType::KM_PTE0
                };
                self.kmap_atomic_typed(cpu, pfn, t)
                    .map(|va| PteMap::Typed(va, t))
                    .map_err(bug)
            }
            KernelDesign::PteHighmem24 => match len {
                WalkLen::Short => self
                    .kmap_atomic_typed(cpu, pfn, KmType::KM_USER0)
                    .map(|va| PteMap::Typed(va, KmType::KM_USER0))
                    .map_err(bug),
                WalkLen::Nested => self
                    .kmap_atomic_typed(cpu, pfn, KmType::KM_USER1)
                    .map(|va| PteMap::Typed(va, KmType::KM_USER1))
                    .map_err(bug),
                WalkLen::Long => {
                    self.mm.counters.pte_pkmaps += 1;
                    match self.kmap(cpu, pfn).map_err(bug)? {
                        Blocking::Ready(va) => Ok(PteMap::Persistent(va, pfn)),
                        Blocking::Sleep(_) => {
                            // No free pkmap slot: the model does not sleep here; fall back to
                            // the short-walk atomic map (what a converted path would use).
                            self.kmap_atomic_typed(cpu, pfn, KmType::KM_USER0)
                                .map(|va| PteMap::Typed(va, KmType::KM_USER0))
                                .map_err(bug)
                        }
                    }
                }
            },
        }
    }

    /// `pte_unmap()` / `pte_unmap_nested()` / `pte_kunmap()`.
    #[inline(always)]
    pub fn pte_unmap(&mut self, cpu: usize, m: PteMap) -> Result<(), MmError> {
        match m {
            PteMap::Direct(_) => Ok(()),
            PteMap::Atomic(va) => self.kunmap_atomic(cpu, va).map_err(kmap_bug),
            PteMap::Local(va) => self.kunmap_local(cpu, va).map_err(kmap_bug),
            PteMap::Typed(va, t) => self.kunmap_atomic_typed(cpu, va, t).map_err(kmap_bug),
            PteMap::Persistent(_, pfn) => self.kunmap(cpu, pfn).map_err(kmap_bug),
        }
    }

    /// Read entry `idx` of a mapped PTE page: a physical read through the direct map, or
    /// one kernel load through the mapping's virtual address (TLB, walk on a miss).
    #[inline(always)]
    pub fn pte_get(&mut self, cpu: usize, m: PteMap, idx: u64) -> Result<u64, MmError> {
        let size = self.geo.entry_size() as u8;
        let off = idx * u64::from(size);
        match m {
            PteMap::Direct(pa) => if size == 8 {
                self.machine.mem.read_entry_u64(pa + off)
            } else {
                self.machine.mem.read_entry_u32(pa + off).map(u64::from)
            }
            .map_err(bus_bug),
            PteMap::Atomic(va)
            | PteMap::Local(va)
            | PteMap::Typed(va, _)
            | PteMap::Persistent(va, _) => self
                .machine
                .read_virt_entry(cpu, va + off, size)
                .map_err(access_bug),
        }
    }

    /// Write entry `idx` of a mapped PTE page (`set_pte_at`): one store, physical or
    /// through the mapping's virtual address.
    #[inline(always)]
    pub fn pte_set(&mut self, cpu: usize, m: PteMap, idx: u64, v: u64) -> Result<(), MmError> {
        let size = self.geo.entry_size() as u8;
        let off = idx * u64::from(size);
        match m {
            PteMap::Direct(pa) => if size == 8 {
                self.machine.mem.write_u64(pa + off, v)
            } else {
                self.machine.mem.write_u32(pa + off, v as u32)
            }
            .map_err(bus_bug),
            PteMap::Atomic(va)
            | PteMap::Local(va)
            | PteMap::Typed(va, _)
            | PteMap::Persistent(va, _) => self
                .machine
                .write_virt_entry(cpu, va + off, size, v)
                .map_err(access_bug),
        }
    }

    /// Run `f` over the mapped PTE page's bytes from `off` to its end: through the direct
    /// map, or read through the mapping's address (one translation for the page).
    pub(crate) fn pte_page_read<R>(
        &mut self,
        cpu: usize,
        m: PteMap,
        off: u64,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<R, MmError> {
        match m {
            PteMap::Direct(pa) => {
                let frame = self.machine.mem.frame(pa.pfn()).map_err(bus_bug)?;
                Ok(f(&frame[off as usize..]))
            }
            PteMap::Atomic(va)
            | PteMap::Local(va)
            | PteMap::Typed(va, _)
            | PteMap::Persistent(va, _) => self
                .machine
                .with_virt_page(cpu, va + off, f)
                .map_err(access_bug),
        }
    }

    /// `pgd_free()`: the PMD pages (`pgtable_pmd_page_dtor`) and the pgd.
    pub(crate) fn pgd_free(&mut self, cpu: usize, pgd: Pfn, order: u32, pmds: &[Pfn]) {
        for &pmd in pmds {
            self.node.vm_stat[NodeStatItem::NrPagetable] -= 1;
            let _ = self.machine.mem.fill(pmd.phys(), 4096, 0);
            self.mm_free_pages(pmd, 0, cpu);
        }
        self.mm_free_pages(pgd, order, cpu);
    }
}
