//! Per-CPU page lists (`struct per_cpu_pages`).
//!
//! Orders up to PAGE_ALLOC_COSTLY_ORDER (and THP-sized blocks) are cached per CPU in one list
//! per order and pcp migrate type, so most allocations and frees avoid the zone lock. An empty
//! list is refilled with `batch` blocks in one go (appended at the tail, so they come out in
//! ascending pfn order); a list that grows past `high` gives back a batch from the tails,
//! round-robin over the lists, scaled up while a CPU keeps freeing without allocating
//! (`free_factor`). `high` follows the zone's low watermark split across CPUs.

use crate::gfp::AllocFlags;
use crate::mmzone::{
    pcp_list_id, MigrateType, PerCpuPages, PgData, ZoneFlags, ZoneType, MIGRATE_PCPTYPES,
    NR_LOWORDER_PCP_LISTS, PAGE_ALLOC_COSTLY_ORDER,
};
use crate::vmstat::VmEventItem;

use super::buddy::ZoneMut;
use super::{Fpi, PCP_BATCH_SCALE_MAX};

/// `order_to_pindex()`: orders 0..=3 have one list per pcp type; the THP order has a movable
/// list and one for the rest (6.1.y).
pub fn order_to_pindex(mt: MigrateType, order: u32) -> usize {
    if order > PAGE_ALLOC_COSTLY_ORDER {
        return NR_LOWORDER_PCP_LISTS + usize::from(mt == MigrateType::Movable);
    }
    MIGRATE_PCPTYPES * order as usize + mt as usize
}

/// `pindex_to_order()`.
pub fn pindex_to_order(pindex: usize, pageblock_order: u32) -> u32 {
    if pindex >= NR_LOWORDER_PCP_LISTS {
        return pageblock_order;
    }
    (pindex / MIGRATE_PCPTYPES) as u32
}

/// `pcp_allowed_order()`.
pub fn pcp_allowed_order(order: u32, thp_enabled: bool, pageblock_order: u32) -> bool {
    order <= PAGE_ALLOC_COSTLY_ORDER || (thp_enabled && order == pageblock_order)
}

/// `nr_pcp_free()`: how many pages to give back once `count` reached `high`.
pub fn nr_pcp_free(pcp: &mut PerCpuPages, high: i32, batch: i32, free_high: bool) -> i32 {
    // Free everything if batch freeing high-order pages.
    if free_high {
        return pcp.count;
    }
    // PCP disabled or boot pageset.
    if high < batch {
        return 1;
    }
    let min_nr_free = batch;
    let max_nr_free = high - batch;
    // Double the batch each time a CPU keeps freeing without allocating.
    let batch = batch << pcp.free_factor;
    if batch < max_nr_free && pcp.free_factor < PCP_BATCH_SCALE_MAX {
        pcp.free_factor += 1;
    }
    batch.max(min_nr_free).min(max_nr_free)
}

/// `nr_pcp_high()`.
#[inline]
pub fn nr_pcp_high(pcp: &PerCpuPages, flags: ZoneFlags, free_high: bool) -> i32 {
    let high = pcp.high;
    if high == 0 || free_high {
        return 0;
    }
    if !flags.reclaim_active {
        return high;
    }
    // While reclaim is active, limit what the pcp lists may hold.
    (pcp.batch << 2).min(high)
}

/// `zone_batchsize()`: about 0.1% of the zone or 1 MiB, whichever is smaller, as 2^n - 1.
pub fn zone_batchsize(managed_pages: u64) -> i32 {
    let mut batch = (managed_pages >> 10).min((1 << 20) / 4096) as i32;
    batch /= 4;
    if batch < 1 {
        batch = 1;
    }
    let x = (batch + batch / 2) as u32;
    (1i32 << (31 - x.leading_zeros())) - 1
}

/// `zone_highsize()`: the zone's low watermark (or `managed / fraction`) split across the
/// online CPUs, and never below four batches.
pub fn zone_highsize(
    low_wmark: u64,
    managed_pages: u64,
    batch: i32,
    nr_online_cpus: usize,
    cpu_online: usize,
    percpu_pagelist_high_fraction: i32,
) -> i32 {
    let total_pages = if percpu_pagelist_high_fraction == 0 {
        low_wmark
    } else {
        managed_pages / percpu_pagelist_high_fraction as u64
    };
    let mut nr_split_cpus = nr_online_cpus + cpu_online;
    if nr_split_cpus == 0 {
        nr_split_cpus = nr_online_cpus.max(1);
    }
    let high = (total_pages / nr_split_cpus as u64).min(i32::MAX as u64) as i32;
    high.max(batch << 2)
}

impl ZoneMut<'_> {
    /// `rmqueue_bulk()`: take `count` blocks for the pcp list `pindex`, appending them at
    /// the tail. NR_FREE_PAGES drops by what left the buddy lists.
    fn rmqueue_bulk(
        &mut self,
        order: u32,
        count: i32,
        cpu: usize,
        pindex: usize,
        mt: MigrateType,
        alloc_flags: AllocFlags,
    ) -> i32 {
        let mut i = 0;
        let mut allocated = 0;
        while i < count {
            let Some(pfn) = self.__rmqueue(order, mt, alloc_flags) else {
                break;
            };
            i += 1;
            // check_pcp_refill(): a page in a bad state is leaked, not queued.
            if self.check_new_page_bad(pfn, order) {
                continue;
            }
            self.map
                .list_add_tail(self.zone, pcp_list_id(cpu, pindex), pfn);
            allocated += 1;
        }
        self.zone.mod_page_state(
            crate::mmzone::ZoneStatItem::NrFreePages,
            -((i as i64) << order),
        );
        allocated
    }

    /// `__rmqueue_pcplist()`: the first page of list `pindex`, refilling an empty list
    /// first.
    #[inline]
    fn __rmqueue_pcplist(
        &mut self,
        order: u32,
        mt: MigrateType,
        alloc_flags: AllocFlags,
        cpu: usize,
        pindex: usize,
    ) -> Option<u32> {
        let id = pcp_list_id(cpu, pindex);
        let pcp = &mut self.zone.per_cpu_pageset[cpu];
        if let Some(pfn) = self.map.list_pop_first(&mut pcp.lists[pindex], id) {
            pcp.count -= 1 << order;
            return Some(pfn);
        }
        self.pcp_refill(order, mt, alloc_flags, cpu, pindex)
    }

    /// The empty-list half of `__rmqueue_pcplist()`: `rmqueue_bulk()` a batch, then take
    /// the first page.
    #[cold]
    fn pcp_refill(
        &mut self,
        order: u32,
        mt: MigrateType,
        alloc_flags: AllocFlags,
        cpu: usize,
        pindex: usize,
    ) -> Option<u32> {
        let mut batch = self.zone.per_cpu_pageset[cpu].batch;
        // Boot pagesets (batch 1) never keep pages around.
        if batch > 1 {
            batch = (batch >> order).max(2);
        }
        let alloced = self.rmqueue_bulk(order, batch, cpu, pindex, mt, alloc_flags);
        let pcp = &mut self.zone.per_cpu_pageset[cpu];
        pcp.count += alloced << order;
        let pfn = self
            .map
            .list_pop_first(&mut pcp.lists[pindex], pcp_list_id(cpu, pindex))?;
        pcp.count -= 1 << order;
        Some(pfn)
    }

    /// `rmqueue_pcplist()`.
    #[inline]
    pub fn rmqueue_pcplist(
        &mut self,
        order: u32,
        mt: MigrateType,
        alloc_flags: AllocFlags,
        cpu: usize,
    ) -> Option<u32> {
        // An allocation halves the freeing scale factor.
        self.zone.per_cpu_pageset[cpu].free_factor >>= 1;
        let pindex = order_to_pindex(mt, order);
        let pfn = self.__rmqueue_pcplist(order, mt, alloc_flags, cpu, pindex)?;
        self.events.count_pgalloc(self.zone.zone_idx, 1 << order);
        self.zone.zone_statistics();
        Some(pfn)
    }

    /// `free_pcppages_bulk()`: give `count` pages back to the buddy lists, starting with list
    /// `pindex` and going round-robin, each list drained from its tail.
    pub fn free_pcppages_bulk(&mut self, count: i32, cpu: usize, pindex: usize) {
        let nr_lists = self.nr_pcp_lists as isize;
        let mut count = count.min(self.zone.per_cpu_pageset[cpu].count);
        let mut min_pindex: isize = 0;
        let mut max_pindex: isize = nr_lists - 1;
        // Make sure the requested list is drained first.
        let mut pindex = pindex as isize - 1;
        let pbo = self.pageblock_order();
        // No pageblock isolation in this model, so the stored migratetype is trusted.
        while count > 0 {
            loop {
                pindex += 1;
                if pindex > max_pindex {
                    pindex = min_pindex;
                }
                if !self.zone.per_cpu_pageset[cpu].lists[pindex as usize].is_empty() {
                    break;
                }
                if pindex == max_pindex {
                    max_pindex -= 1;
                }
                if pindex == min_pindex {
                    min_pindex += 1;
                }
                if min_pindex > max_pindex {
                    // pcp->count disagrees with the lists; nothing left to free.
                    return;
                }
            }
            let pi = pindex as usize;
            let order = pindex_to_order(pi, pbo);
            let nr_pages = 1i32 << order;
            let id = pcp_list_id(cpu, pi);
            while let Some(pfn) = self
                .map
                .list_pop_last(&mut self.zone.per_cpu_pageset[cpu].lists[pi], id)
            {
                let mt = MigrateType::from_index(self.map.p(pfn).index as usize);
                count -= nr_pages;
                self.zone.per_cpu_pageset[cpu].count -= nr_pages;
                // bulkfree_pcp_prepare(): a page in a bad state is reported and leaked.
                if self.free_page_is_bad(pfn).is_none() {
                    self.__free_one_page(pfn, order, mt, Fpi::NONE);
                }
                if count <= 0 {
                    break;
                }
            }
        }
    }

    /// `free_unref_page_commit()`: queue a page on this CPU's list and trim the list when it
    /// reaches `high`.
    #[inline]
    pub fn free_unref_page_commit(&mut self, cpu: usize, pfn: u32, mt: MigrateType, order: u32) {
        self.events[VmEventItem::Pgfree] += 1 << order;
        let pindex = order_to_pindex(mt, order);
        let flags = self.zone.flags;
        let pcp = &mut self.zone.per_cpu_pageset[cpu];
        self.map
            .list_add_at(&mut pcp.lists[pindex], pcp_list_id(cpu, pindex), pfn);
        pcp.count += 1 << order;
        // High-order pages other than THPs fragment; limit them while freeing heavily.
        let free_high = pcp.free_factor != 0 && order != 0 && order <= PAGE_ALLOC_COSTLY_ORDER;
        let high = nr_pcp_high(pcp, flags, free_high);
        if pcp.count >= high {
            let batch = pcp.batch;
            let n = nr_pcp_free(pcp, high, batch, free_high);
            self.free_pcppages_bulk(n, cpu, pindex);
        }
    }

    /// `drain_pages_zone()`: empty one CPU's lists in chunks of `batch << PCP_BATCH_SCALE_MAX`.
    pub fn drain_pages_zone(&mut self, cpu: usize) {
        loop {
            let pcp = &self.zone.per_cpu_pageset[cpu];
            let count = pcp.count;
            if count <= 0 {
                break;
            }
            let to_drain = count.min(pcp.batch << PCP_BATCH_SCALE_MAX);
            self.free_pcppages_bulk(to_drain, cpu, 0);
            if self.zone.per_cpu_pageset[cpu].count >= count {
                // Lists and count disagree; stop rather than spin.
                break;
            }
        }
    }
}

impl PgData {
    /// `zone_set_pageset_high_and_batch()`.
    pub(crate) fn zone_set_pageset_high_and_batch(&mut self, z: ZoneType, cpu_online: usize) {
        let nr_cpus = self.nr_cpus;
        let fraction = self.sysctl.percpu_pagelist_high_fraction;
        let zone = &mut self.node_zones[z as usize];
        let new_batch = zone_batchsize(zone.managed_pages).max(1);
        let new_high = zone_highsize(
            zone.low_wmark_pages(),
            zone.managed_pages,
            new_batch,
            nr_cpus,
            cpu_online,
            fraction,
        );
        if zone.pageset_high == new_high && zone.pageset_batch == new_batch {
            return;
        }
        zone.pageset_high = new_high;
        zone.pageset_batch = new_batch;
        for pcp in &mut zone.per_cpu_pageset {
            pcp.batch = new_batch;
            pcp.high = new_high;
        }
    }

    /// `zone_pcp_update()`.
    pub fn zone_pcp_update(&mut self, z: ZoneType, cpu_online: usize) {
        self.zone_set_pageset_high_and_batch(z, cpu_online);
    }

    /// `setup_per_cpu_pageset()`: real pagesets for the populated zones (until then every
    /// zone uses boot pagesets, high 0 and batch 1).
    pub fn setup_per_cpu_pageset(&mut self) {
        for &z in self.zone_types() {
            if !self.zone(z).is_populated() {
                continue;
            }
            // The boot pagesets never hold pages, so re-initialising loses nothing.
            let zone = &mut self.node_zones[z as usize];
            for (cpu, pcp) in zone.per_cpu_pageset.iter_mut().enumerate() {
                if pcp.count == 0 {
                    *pcp = PerCpuPages::new(cpu);
                }
            }
            self.zone_set_pageset_high_and_batch(z, 0);
        }
    }

    /// `drain_local_pages()`: this CPU's lists of one zone, or of all zones.
    pub fn drain_local_pages(&mut self, zone: Option<ZoneType>, cpu: usize) {
        if cpu >= self.nr_cpus {
            return;
        }
        match zone {
            Some(z) => self.zone_ctx(z).drain_pages_zone(cpu),
            None => {
                for &z in self.zone_types() {
                    if self.zone(z).is_populated() {
                        self.zone_ctx(z).drain_pages_zone(cpu);
                    }
                }
            }
        }
    }

    /// `drain_all_pages()`: every CPU that has pcp pages (in `zone`, or anywhere).
    pub fn drain_all_pages(&mut self, zone: Option<ZoneType>) {
        for cpu in 0..self.nr_cpus {
            let has_pcps = match zone {
                Some(z) => self.zone(z).per_cpu_pageset[cpu].count != 0,
                None => self.zone_types().iter().any(|&z| {
                    self.zone(z).is_populated() && self.zone(z).per_cpu_pageset[cpu].count != 0
                }),
            };
            if has_pcps {
                self.drain_local_pages(zone, cpu);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mmzone::NR_LOWORDER_PCP_LISTS;

    #[test]
    fn pindex_layout() {
        assert_eq!(order_to_pindex(MigrateType::Unmovable, 0), 0);
        assert_eq!(order_to_pindex(MigrateType::Reclaimable, 3), 11);
        assert_eq!(
            order_to_pindex(MigrateType::Movable, 9),
            NR_LOWORDER_PCP_LISTS + 1
        );
        assert_eq!(
            order_to_pindex(MigrateType::Unmovable, 9),
            NR_LOWORDER_PCP_LISTS
        );
        assert_eq!(pindex_to_order(11, 9), 3);
        assert_eq!(pindex_to_order(13, 10), 10);
        assert!(pcp_allowed_order(9, true, 9) && !pcp_allowed_order(9, false, 9));
        assert!(!pcp_allowed_order(4, true, 9));
    }

    #[test]
    fn batch_and_high_of_the_spec_test_vector() {
        // §12: DMA 3840, Normal 216000, HighMem 786000 managed pages, 2 CPUs.
        assert_eq!(zone_batchsize(3840).max(1), 1);
        assert_eq!(zone_batchsize(216_000), 63);
        assert_eq!(zone_batchsize(786_000), 63);
        assert_eq!(zone_highsize(20, 3840, 1, 2, 0, 0), 10);
        assert_eq!(zone_highsize(1150, 216_000, 63, 2, 0, 0), 575);
        assert_eq!(zone_highsize(965, 786_000, 63, 2, 0, 0), 482);
        // A low watermark smaller than four batches is raised.
        assert_eq!(zone_highsize(100, 216_000, 63, 2, 0, 0), 252);
        // percpu_pagelist_high_fraction replaces the watermark with managed / fraction.
        assert_eq!(zone_highsize(1150, 216_000, 63, 2, 0, 8), 13_500);
    }

    #[test]
    fn nr_pcp_free_scales_with_free_factor() {
        let mut pcp = PerCpuPages::new(0);
        pcp.count = 600;
        assert_eq!(nr_pcp_free(&mut pcp, 0, 1, false), 1);
        assert_eq!(nr_pcp_free(&mut pcp, 575, 63, false), 63);
        assert_eq!(pcp.free_factor, 1);
        assert_eq!(nr_pcp_free(&mut pcp, 575, 63, false), 126);
        assert_eq!(nr_pcp_free(&mut pcp, 575, 63, false), 252);
        assert_eq!(nr_pcp_free(&mut pcp, 575, 63, false), 504);
        assert_eq!(pcp.free_factor, 4);
        // 63 << 4 exceeds high - batch: clamped, and the factor stops growing.
        assert_eq!(nr_pcp_free(&mut pcp, 575, 63, false), 512);
        assert_eq!(pcp.free_factor, 4);
        pcp.free_factor = PCP_BATCH_SCALE_MAX;
        assert_eq!(nr_pcp_free(&mut pcp, 1 << 20, 63, false), 63 << 5);
        assert_eq!(
            pcp.free_factor, PCP_BATCH_SCALE_MAX,
            "capped by PCP_BATCH_SCALE_MAX"
        );
        assert_eq!(nr_pcp_free(&mut pcp, 575, 63, true), 600);
        let flags = ZoneFlags {
            boosted_watermark: false,
            reclaim_active: true,
        };
        pcp.high = 575;
        pcp.batch = 63;
        assert_eq!(nr_pcp_high(&pcp, flags, false), 252);
        assert_eq!(nr_pcp_high(&pcp, ZoneFlags::default(), true), 0);
    }
}
