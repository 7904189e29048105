//! Allocating pages: `__alloc_pages`, the zonelist walk and a reclaim-less slow path.
//!
//! The fast path tries each zone the gfp mask allows, highest first, against its low
//! watermark. The slow path recomputes the allocation flags from the mask (reserves for
//! __GFP_HIGH and non-blocking callers, the min watermark, highatomic access) and tries again.
//! The model has no reclaim, compaction or OOM killer yet, so what follows is the part of the
//! kernel's retry logic that does not depend on them: the retry budget, giving back highatomic
//! reserves, __GFP_NOFAIL's last resort, and the "page allocation failure" report. When the
//! kernel would have invoked the OOM killer instead of failing, the failure says so.

use core::fmt;

use machine::Pfn;

use crate::gfp::{
    format_gfp_mode, gfp_migratetype, gfp_pfmemalloc_flags, gfp_to_alloc_flags, AllocFlags, Gfp,
};
use crate::mmzone::{
    pcp_list_id, MigrateType, PgData, ZoneType, MAX_ORDER, PAGE_ALLOC_COSTLY_ORDER,
};
use crate::page::{PageFlags, COMPOUND_PAGE_DTOR, LINK_HEAD, LINK_NONE, TAIL_MAPPING};

use super::buddy::ZoneMut;
use super::pcp::pcp_allowed_order;
use super::MAX_RECLAIM_RETRIES;

/// Marker in `lru.next` of a page handed out from the reserves (`set_page_pfmemalloc`).
pub const PFMEMALLOC_MARK: u32 = LINK_HEAD | 0x4000_0002;

/// A successful allocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AllocatedPages {
    /// First page of the block (refcount 1; a compound head with __GFP_COMP).
    pub pfn: Pfn,
    pub order: u32,
    pub zone: ZoneType,
    /// The mask after `gfp_allowed_mask`, as the allocator used it.
    pub gfp: Gfp,
    /// The caller must zero the pages (`__GFP_ZERO` or `init_on_alloc`); the allocator never
    /// touches contents. Highmem pages need a temporary mapping for that.
    pub init: bool,
}

/// Why an allocation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AllocFailureKind {
    /// `order >= MAX_ORDER` (the kernel WARNs and returns NULL).
    BadOrder,
    /// The CPU is not online.
    BadCpu,
    /// No memory the request may use, and the kernel would give up too.
    NoMemory,
    /// No memory, and the kernel would now invoke the OOM killer and retry; the model has
    /// none, so the caller decides (no "page allocation failure" report is produced).
    WouldOom,
}

/// A failed allocation with the kernel's report, never printed by the allocator itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllocFailure {
    pub gfp: Gfp,
    pub order: u32,
    pub kind: AllocFailureKind,
    /// `warn_alloc()` output ("<comm>: page allocation failure: ..." and the Mem-Info block),
    /// empty with __GFP_NOWARN or when no report would be printed.
    pub report: Vec<String>,
}

impl fmt::Display for AllocFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            AllocFailureKind::BadOrder => write!(f, "order {} is not below MAX_ORDER", self.order),
            AllocFailureKind::BadCpu => write!(f, "allocation on a CPU that is not online"),
            AllocFailureKind::NoMemory | AllocFailureKind::WouldOom => write!(
                f,
                "page allocation failure: order:{}, mode:{}",
                self.order,
                format_gfp_mode(self.gfp)
            ),
        }
    }
}

impl std::error::Error for AllocFailure {}

/// `struct alloc_context`.
#[derive(Clone, Copy, Debug)]
struct AllocContext {
    highest_zoneidx: ZoneType,
    migratetype: MigrateType,
}

impl ZoneMut<'_> {
    /// `rmqueue_buddy()`: straight from the buddy lists (orders the pcp does not cache, or
    /// an empty pcp refill). Order-0 non-blocking and OOM allocations may dip into the
    /// highatomic reserve as a last resort.
    fn rmqueue_buddy(
        &mut self,
        order: u32,
        alloc_flags: AllocFlags,
        mt: MigrateType,
    ) -> Option<u32> {
        let pfn = loop {
            let mut page = None;
            if alloc_flags.contains(AllocFlags::HIGHATOMIC) {
                page = self.__rmqueue_smallest(order, MigrateType::HighAtomic);
            }
            if page.is_none() {
                page = self.__rmqueue(order, mt, alloc_flags);
                if page.is_none() && alloc_flags.intersects(AllocFlags::OOM | AllocFlags::NON_BLOCK)
                {
                    page = self.__rmqueue_smallest(order, MigrateType::HighAtomic);
                }
            }
            let pfn = page?;
            let pmt = MigrateType::from_index(self.map.p(pfn).index as usize);
            self.mod_zone_freepage_state(-(1i64 << order), pmt);
            if !self.check_new_page_bad(pfn, order) {
                break pfn;
            }
        };
        self.events.count_pgalloc(self.zone.zone_idx, 1 << order);
        self.zone.zone_statistics();
        Some(pfn)
    }

    /// `prep_new_page()` / `post_alloc_hook()`: refcount 1, compound set-up, pfmemalloc.
    fn prep_new_page(&mut self, pfn: u32, order: u32, gfp: Gfp, alloc_flags: AllocFlags) {
        let head = self.map.pm(pfn);
        head.set_private(0);
        head.set_count(1);
        if order != 0 && gfp.contains(Gfp::COMP) {
            // prep_compound_page()
            head.set(PageFlags::HEAD);
            for p in pfn + 1..pfn + (1 << order) {
                let t = self.map.pm(p);
                t.mapping = TAIL_MAPPING;
                t.set_compound_head(pfn);
                t.set_private(0);
            }
            // prep_compound_head(): dtor and order in the first tail page, compound_mapcount
            // -1 (in the `mapping` word) and compound_pincount 0 (in `index`).
            let first = self.map.pm(pfn + 1);
            first.lru_prev = COMPOUND_PAGE_DTOR as u32 | (order << 8);
            first.mapping = u32::MAX;
            first.index = 0;
        }
        let head = self.map.pm(pfn);
        head.lru_next = if alloc_flags.contains(AllocFlags::NO_WATERMARKS) {
            PFMEMALLOC_MARK
        } else {
            LINK_NONE
        };
    }
}

impl PgData {
    /// The zones an allocation may use, highest first.
    fn zonelist_for(&self, highest: ZoneType) -> impl Iterator<Item = ZoneType> + '_ {
        self.zonelist.iter().copied().filter(move |&z| z <= highest)
    }

    /// `rmqueue()`: from the pcp list when the order is cached, else from the buddy lists;
    /// a boosted zone asks for kswapd.
    fn rmqueue(
        &mut self,
        z: ZoneType,
        order: u32,
        alloc_flags: AllocFlags,
        mt: MigrateType,
        cpu: usize,
    ) -> Option<u32> {
        let pcp_ok = pcp_allowed_order(order, self.thp_enabled, self.pageblock_order);
        let mut zc = self.zone_ctx(z);
        let mut page = None;
        if pcp_ok {
            page = zc.rmqueue_pcplist(order, mt, alloc_flags, cpu);
        }
        if page.is_none() {
            page = zc.rmqueue_buddy(order, alloc_flags, mt);
        }
        if zc.zone.flags.boosted_watermark {
            zc.zone.flags.boosted_watermark = false;
            self.boosted_zone_wakes_kswapd(z);
        }
        page
    }

    /// `rmqueue()` took a page from a zone a steal boosted: `wakeup_kswapd(zone, 0, 0,
    /// zone_idx)`, and kswapd runs once the allocation is done (rare: out of line).
    #[cold]
    #[inline(never)]
    fn boosted_zone_wakes_kswapd(&mut self, z: ZoneType) {
        self.wakeup_kswapd(z, Gfp::empty(), 0, z);
        self.kswapd_run();
    }

    /// `get_page_from_freelist()`: the first zone of the zonelist that passes its watermark
    /// and has the pages.
    fn get_page_from_freelist(
        &mut self,
        gfp: Gfp,
        order: u32,
        alloc_flags: AllocFlags,
        ac: &AllocContext,
        cpu: usize,
    ) -> Option<(u32, ZoneType)> {
        for i in 0..self.zonelist.len() {
            let z = self.zonelist[i];
            if z > ac.highest_zoneidx {
                continue;
            }
            let zone = self.zone(z);
            let mark = zone.wmark_pages(alloc_flags.wmark());
            if !zone.zone_watermark_fast(order, mark, ac.highest_zoneidx, alloc_flags, gfp)
                && !alloc_flags.contains(AllocFlags::NO_WATERMARKS)
            {
                // No node reclaim on a UMA machine: try the next zone.
                continue;
            }
            if let Some(pfn) = self.rmqueue(z, order, alloc_flags, ac.migratetype, cpu) {
                let mut zc = self.zone_ctx(z);
                zc.prep_new_page(pfn, order, gfp, alloc_flags);
                // A high-order atomic allocation may reserve its pageblock for the future.
                if alloc_flags.contains(AllocFlags::HIGHATOMIC) {
                    zc.reserve_highatomic_pageblock(pfn);
                }
                return Some((pfn, z));
            }
        }
        None
    }

    /// `alloc_pages()` / `__alloc_pages()` on `cpu`: a block of 2^order pages.
    #[inline(always)]
    pub fn alloc_pages(
        &mut self,
        gfp: Gfp,
        order: u32,
        cpu: usize,
    ) -> Result<AllocatedPages, AllocFailure> {
        if order == 0 && cpu < self.nr_cpus {
            if let Some(a) = self.alloc_order0_fast(gfp & self.gfp_allowed_mask, cpu) {
                return Ok(a);
            }
        }
        self.__alloc_pages(gfp, order, cpu)
    }

    /// `__alloc_pages()`: everything the order-0 fast path leaves.
    #[inline(never)]
    fn __alloc_pages(
        &mut self,
        gfp: Gfp,
        order: u32,
        cpu: usize,
    ) -> Result<AllocatedPages, AllocFailure> {
        let fail = |kind| AllocFailure {
            gfp,
            order,
            kind,
            report: Vec::new(),
        };
        if cpu >= self.nr_cpus {
            return Err(fail(AllocFailureKind::BadCpu));
        }
        if order as usize >= MAX_ORDER {
            return Err(fail(AllocFailureKind::BadOrder));
        }
        let gfp = gfp & self.gfp_allowed_mask;
        let ac = AllocContext {
            highest_zoneidx: self.gfp_zone(gfp),
            migratetype: gfp_migratetype(gfp, self.page_group_by_mobility_disabled),
        };
        // The fast path: low watermark; ALLOC_KSWAPD mirrors __GFP_KSWAPD_RECLAIM.
        let mut alloc_flags = AllocFlags::empty().with_wmark(crate::mmzone::WMark::Low);
        if gfp.contains(Gfp::KSWAPD_RECLAIM) {
            alloc_flags |= AllocFlags::KSWAPD;
        }
        let ((pfn, zone), gfp_used) =
            match self.get_page_from_freelist(gfp, order, alloc_flags, &ac, cpu) {
                Some(g) => (g, gfp),
                None => self.__alloc_pages_slowpath(gfp, order, &ac, cpu)?,
            };
        crate::trace::mm_page_alloc(cpu, pfn as u64, order, ac.migratetype as u32, gfp.bits());
        Ok(AllocatedPages {
            pfn: Pfn::new(pfn as u64),
            order,
            zone,
            gfp: gfp_used,
            init: self.init_on_alloc || gfp_used.contains(Gfp::ZERO),
        })
    }

    /// The attempt of `__alloc_pages_direct_reclaim()` once reclaim made progress and the
    /// per-CPU lists were drained: the zonelist at the slow path's watermark (min), without
    /// waking kswapd again or reporting a failure.
    pub fn get_page_after_reclaim(
        &mut self,
        gfp: Gfp,
        order: u32,
        cpu: usize,
    ) -> Option<AllocatedPages> {
        if cpu >= self.nr_cpus || order as usize >= MAX_ORDER {
            return None;
        }
        let gfp = gfp & self.gfp_allowed_mask;
        let ac = AllocContext {
            highest_zoneidx: self.gfp_zone(gfp),
            migratetype: gfp_migratetype(gfp, self.page_group_by_mobility_disabled),
        };
        let alloc_flags = gfp_to_alloc_flags(gfp, order);
        let (pfn, zone) = self.get_page_from_freelist(gfp, order, alloc_flags, &ac, cpu)?;
        crate::trace::mm_page_alloc(cpu, pfn as u64, order, ac.migratetype as u32, gfp.bits());
        Some(AllocatedPages {
            pfn: Pfn::new(pfn as u64),
            order,
            zone,
            gfp,
            init: self.init_on_alloc || gfp.contains(Gfp::ZERO),
        })
    }

    /// The common case of `get_page_from_freelist()` for order 0, in one pass: the first
    /// zone the mask allows passes the order-0 shortcut of `zone_watermark_fast()` and its
    /// pcp list has a page. It does exactly what the general path does in that case
    /// (`rmqueue_pcplist`, `prep_new_page`) and changes nothing when it returns `None`, so
    /// the caller can then take the general path from the start.
    #[inline(always)]
    fn alloc_order0_fast(&mut self, gfp: Gfp, cpu: usize) -> Option<AllocatedPages> {
        let highest = self.gfp_zone(gfp);
        let mt = gfp_migratetype(gfp, self.page_group_by_mobility_disabled);
        let z = *self.zonelist.iter().find(|&&z| z <= highest)?;
        let PgData {
            mem_map,
            node_zones,
            vm_events,
            init_on_alloc,
            ..
        } = self;
        let zone = &mut node_zones[z as usize];
        // zone_watermark_fast(), order 0, ALLOC_WMARK_LOW without reserve rights. The
        // kernel reads NR_FREE_PAGES clamped at 0; the clamp is implied here, since a
        // negative count minus itself is the same 0 (the reserve is never negative).
        let free = zone.vm_stat[crate::mmzone::ZoneStatItem::NrFreePages];
        let usable = free - free.min(zone.nr_reserved_highatomic as i64);
        let mark = zone.wmark_pages(crate::mmzone::WMark::Low) as i64;
        if usable <= mark + zone.lowmem_reserve[highest as usize] {
            return None;
        }
        // rmqueue_pcplist() with a non-empty list.
        let pindex = mt as usize;
        let pcp = zone.per_cpu_pageset.get_mut(cpu)?;
        // prep_new_page() for order 0 from the fast path (never ALLOC_NO_WATERMARKS), on
        // the descriptor the list removal has at hand: the page is ours from here on.
        let pfn = mem_map.list_pop_first_with(
            &mut pcp.lists[pindex],
            pcp_list_id(cpu, pindex),
            |head| {
                head.set_private(0);
                head.set_count(1);
            },
        )?;
        pcp.count -= 1;
        pcp.free_factor >>= 1;
        vm_events.count_pgalloc(z, 1);
        zone.zone_statistics();
        // rmqueue(): a boosted zone asks for kswapd.
        let boosted = zone.flags.boosted_watermark;
        let init = *init_on_alloc || gfp.contains(Gfp::ZERO);
        if boosted {
            zone.flags.boosted_watermark = false;
            self.boosted_zone_wakes_kswapd(z);
        }
        crate::trace::mm_page_alloc(cpu, pfn as u64, 0, mt as u32, gfp.bits());
        Some(AllocatedPages {
            pfn: Pfn::new(pfn as u64),
            order: 0,
            zone: z,
            gfp,
            init,
        })
    }

    /// `alloc_page()`.
    pub fn alloc_page(&mut self, gfp: Gfp, cpu: usize) -> Result<AllocatedPages, AllocFailure> {
        self.alloc_pages(gfp, 0, cpu)
    }

    /// `__get_free_pages()`: a lowmem block (the kernel returns its direct-map address; this
    /// returns the pfn, which the caller maps with `__va`).
    pub fn __get_free_pages(
        &mut self,
        gfp: Gfp,
        order: u32,
        cpu: usize,
    ) -> Result<AllocatedPages, AllocFailure> {
        self.alloc_pages(gfp & !Gfp::HIGHMEM, order, cpu)
    }

    /// `get_zeroed_page()`.
    pub fn get_zeroed_page(
        &mut self,
        gfp: Gfp,
        cpu: usize,
    ) -> Result<AllocatedPages, AllocFailure> {
        self.__get_free_pages(gfp | Gfp::ZERO, 0, cpu)
    }

    /// `should_reclaim_retry()` with no reclaim progress possible: the retry budget runs
    /// out, unless even the reclaimable-and-free pages cannot meet the min watermark, in
    /// which case the highatomic reserves are released first.
    fn should_reclaim_retry(
        &mut self,
        order: u32,
        ac: &AllocContext,
        alloc_flags: AllocFlags,
        no_progress_loops: &mut u32,
    ) -> bool {
        *no_progress_loops += 1;
        let mut ret = false;
        if *no_progress_loops <= MAX_RECLAIM_RETRIES {
            // zone_reclaimable_pages() is 0: nothing on the LRU lists in this model.
            ret = self.zonelist_for(ac.highest_zoneidx).any(|z| {
                let zone = self.zone(z);
                let free = zone.page_state(crate::mmzone::ZoneStatItem::NrFreePages) as i64;
                zone.__zone_watermark_ok(
                    order,
                    zone.min_wmark_pages(),
                    ac.highest_zoneidx,
                    alloc_flags,
                    free,
                )
            });
        }
        if !ret {
            return self.unreserve_highatomic_pageblock(ac.highest_zoneidx, ac.migratetype, true);
        }
        ret
    }

    /// `__alloc_pages_slowpath()` without reclaim, compaction or OOM killing.
    fn __alloc_pages_slowpath(
        &mut self,
        gfp: Gfp,
        order: u32,
        ac: &AllocContext,
        cpu: usize,
    ) -> Result<((u32, ZoneType), Gfp), AllocFailure> {
        let mut gfp = gfp;
        let can_direct_reclaim = gfp.contains(Gfp::DIRECT_RECLAIM);
        let can_compact = gfp.contains(Gfp::IO);
        let costly_order = order > PAGE_ALLOC_COSTLY_ORDER;
        // Atomic reserves are not for callers that can sleep.
        if gfp.contains(Gfp::ATOMIC | Gfp::DIRECT_RECLAIM) {
            gfp.remove(Gfp::ATOMIC);
        }
        let mut alloc_flags = gfp_to_alloc_flags(gfp, order);
        let mut would_oom = false;
        let have_zone = self.zonelist_for(ac.highest_zoneidx).next().is_some();

        'nopage: {
            if !have_zone {
                break 'nopage;
            }
            if alloc_flags.contains(AllocFlags::KSWAPD) {
                self.wake_all_kswapds(gfp, order, ac.highest_zoneidx);
            }
            if let Some(g) = self.get_page_from_freelist(gfp, order, alloc_flags, ac, cpu) {
                return Ok((g, gfp));
            }
            // On to direct reclaim, which gives kswapd the CPU.
            self.kswapd_run();
            let mut no_progress_loops = 0u32;
            loop {
                // retry: keep kswapd awake while the allocation loops.
                if alloc_flags.contains(AllocFlags::KSWAPD) {
                    self.wake_all_kswapds(gfp, order, ac.highest_zoneidx);
                    self.kswapd_run();
                }
                let reserve_flags = gfp_pfmemalloc_flags(gfp);
                if !reserve_flags.is_empty() {
                    alloc_flags = reserve_flags | (alloc_flags & AllocFlags::KSWAPD);
                }
                if let Some(g) = self.get_page_from_freelist(gfp, order, alloc_flags, ac, cpu) {
                    return Ok((g, gfp));
                }
                // Not willing to reclaim: nothing can be balanced.
                if !can_direct_reclaim {
                    break 'nopage;
                }
                // Direct reclaim and compaction make no progress in this model.
                if gfp.contains(Gfp::NORETRY) {
                    break 'nopage;
                }
                if costly_order && (!can_compact || !gfp.contains(Gfp::RETRY_MAYFAIL)) {
                    break 'nopage;
                }
                if self.should_reclaim_retry(order, ac, alloc_flags, &mut no_progress_loops) {
                    continue;
                }
                // __alloc_pages_may_oom(): the OOM killer would be invoked here.
                would_oom = !costly_order
                    && !gfp.intersects(Gfp::RETRY_MAYFAIL | Gfp::THISNODE)
                    && ac.highest_zoneidx >= self.zone_model.normal
                    && (gfp.contains(Gfp::FS) || gfp.contains(Gfp::NOFAIL));
                break 'nopage;
            }
        }

        // nopage:
        if gfp.contains(Gfp::NOFAIL) && can_direct_reclaim {
            // __alloc_pages_cpuset_fallback() with some access to the reserves, never
            // ALLOC_NO_WATERMARKS (cpusets do not restrict anything here). The kernel would
            // then loop until memory appears; the model reports the failure instead.
            let f = AllocFlags::MIN_RESERVE | AllocFlags::CPUSET;
            if let Some(g) = self.get_page_from_freelist(gfp, order, f, ac, cpu) {
                return Ok((g, gfp));
            }
        }
        if would_oom {
            return Err(AllocFailure {
                gfp,
                order,
                kind: AllocFailureKind::WouldOom,
                report: Vec::new(),
            });
        }
        let report = self.warn_alloc(gfp, order, cpu);
        Err(AllocFailure {
            gfp,
            order,
            kind: AllocFailureKind::NoMemory,
            report,
        })
    }
}
