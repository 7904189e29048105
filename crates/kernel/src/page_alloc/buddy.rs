//! The buddy lists of one zone: take the smallest block that fits and split it, merge freed
//! blocks with their buddies.
//!
//! A free block of order n starts at a pfn aligned to 2^n; its buddy is the other half of the
//! aligned 2^(n+1) block (`pfn ^ (1 << n)`). Freeing merges upward while the buddy is a free
//! head of the same order in the same zone; allocation splits downward, keeping the lowest
//! part and putting each upper half back (`expand`). Blocks of pageblock order or more never
//! merge across pageblocks whose types cannot fall back to each other (HighAtomic, Isolate).

use crate::mmzone::{
    free_list_id, MigrateType, PgData, Zone, ZoneStatItem, ZoneType, MAX_ORDER, MIGRATE_PCPTYPES,
};
use crate::page::{MemMap, PageFlags};
use crate::vmstat::VmEvents;

use super::Fpi;

/// Everything a zone-local allocator operation touches: the `mem_map`, the zone, the
/// global event counters and kernel log, and the few globals that steer the algorithms.
pub(crate) struct ZoneMut<'a> {
    pub map: &'a mut MemMap,
    pub zone: &'a mut Zone,
    pub events: &'a mut VmEvents,
    pub kmsg: &'a mut Vec<String>,
    pub comm: &'a str,
    pub mobility_disabled: bool,
    pub boost_factor: i32,
    pub nr_pcp_lists: usize,
}

impl PgData {
    /// Borrow one zone together with the node state its operations need.
    pub(crate) fn zone_ctx(&mut self, z: ZoneType) -> ZoneMut<'_> {
        let nr_pcp_lists = self.nr_pcp_lists();
        ZoneMut {
            map: &mut self.mem_map,
            zone: &mut self.node_zones[z as usize],
            events: &mut self.vm_events,
            kmsg: &mut self.kmsg,
            comm: &self.current_comm,
            mobility_disabled: self.page_group_by_mobility_disabled,
            boost_factor: self.sysctl.watermark_boost_factor,
            nr_pcp_lists,
        }
    }
}

impl ZoneMut<'_> {
    #[inline]
    pub fn pageblock_order(&self) -> u32 {
        self.zone.pageblock_order
    }
    #[inline]
    pub fn pageblock_nr_pages(&self) -> u64 {
        1 << self.zone.pageblock_order
    }

    /// `get_pfnblock_migratetype()`.
    #[inline]
    pub fn get_pageblock_migratetype(&self, pfn: u32) -> MigrateType {
        self.zone.get_pageblock_migratetype(pfn as u64)
    }

    /// `set_pageblock_migratetype()`: with mobility grouping off, the pcp types collapse to
    /// Unmovable.
    pub fn set_pageblock_migratetype(&mut self, pfn: u32, mt: MigrateType) {
        let mt = if self.mobility_disabled && (mt as usize) < MIGRATE_PCPTYPES {
            MigrateType::Unmovable
        } else {
            mt
        };
        self.zone.store_pageblock_migratetype(pfn as u64, mt);
    }

    /// `__mod_zone_freepage_state()` (no CMA counter in this configuration).
    #[inline]
    pub fn mod_zone_freepage_state(&mut self, nr: i64, _mt: MigrateType) {
        self.zone.mod_page_state(ZoneStatItem::NrFreePages, nr);
    }

    /// `add_to_free_list()`.
    #[inline]
    pub fn add_to_free_list(&mut self, pfn: u32, order: u32, mt: MigrateType) {
        self.map.list_add(self.zone, free_list_id(order, mt), pfn);
        self.zone.free_area[order as usize].nr_free += 1;
    }

    /// `add_to_free_list_tail()`.
    #[inline]
    pub fn add_to_free_list_tail(&mut self, pfn: u32, order: u32, mt: MigrateType) {
        self.map
            .list_add_tail(self.zone, free_list_id(order, mt), pfn);
        self.zone.free_area[order as usize].nr_free += 1;
    }

    /// `move_to_free_list()`: to the tail, so moved pages are not reused first.
    #[inline]
    pub fn move_to_free_list(&mut self, pfn: u32, order: u32, mt: MigrateType) {
        self.map
            .list_move_tail(self.zone, free_list_id(order, mt), pfn);
    }

    /// `del_page_from_free_list()`.
    #[inline]
    pub fn del_page_from_free_list(&mut self, pfn: u32, order: u32) {
        self.map.pm(pfn).clear(PageFlags::REPORTED);
        self.map.list_del(self.zone, pfn);
        let p = self.map.pm(pfn);
        p.clear_buddy();
        p.set_private(0);
        self.zone.free_area[order as usize].nr_free -= 1;
    }

    /// `get_page_from_free_area()`.
    #[inline]
    pub fn get_page_from_free_area(&self, order: u32, mt: MigrateType) -> Option<u32> {
        self.zone.free_area[order as usize].free_list[mt as usize].first()
    }

    /// `page_is_buddy()`: the buddy is a free head (or guard page) of this order in the same
    /// zone.
    #[inline]
    fn page_is_buddy(&self, pfn: u32, buddy: u32, order: u32) -> bool {
        let b = self.map.p(buddy);
        if !b.is_guard() && !b.is_buddy() {
            return false;
        }
        if b.buddy_order() != order {
            return false;
        }
        self.map.p(pfn).zonenum() == b.zonenum()
    }

    /// `find_buddy_page_pfn()`: the buddy's pfn, and whether it is free to merge with.
    #[inline]
    fn find_buddy_page_pfn(&self, pfn: u32, order: u32) -> (bool, u32) {
        let buddy = pfn ^ (1 << order);
        (self.page_is_buddy(pfn, buddy, order), buddy)
    }

    /// `buddy_merge_likely()`: the next-higher block's buddy is free, so this block may
    /// merge soon; keep it at the tail.
    fn buddy_merge_likely(&self, pfn: u32, buddy_pfn: u32, order: u32) -> bool {
        if order as usize >= MAX_ORDER - 2 {
            return false;
        }
        let higher = buddy_pfn & pfn;
        self.find_buddy_page_pfn(higher, order + 1).0
    }

    /// `__free_one_page()`: account the pages free, merge with free buddies, and insert the
    /// result at the head of its list (tail for FPI_TO_TAIL or when a merge looks likely).
    pub fn __free_one_page(&mut self, pfn: u32, order: u32, mt: MigrateType, fpi: Fpi) {
        let mut pfn = pfn;
        let mut order = order;
        let mut buddy_pfn = 0;
        if mt != MigrateType::Isolate {
            self.mod_zone_freepage_state(1 << order, mt);
        }
        while (order as usize) < MAX_ORDER - 1 {
            let (is_buddy, b) = self.find_buddy_page_pfn(pfn, order);
            buddy_pfn = b;
            if !is_buddy {
                break;
            }
            if order >= self.pageblock_order() {
                // No merging between pageblocks that have no fallbacks and normal ones:
                // isolation and highatomic accounting depend on it.
                let buddy_mt = self.get_pageblock_migratetype(buddy_pfn);
                if mt != buddy_mt && (!mt.is_mergeable() || !buddy_mt.is_mergeable()) {
                    break;
                }
            }
            self.del_page_from_free_list(buddy_pfn, order);
            pfn &= buddy_pfn;
            order += 1;
        }
        self.map.pm(pfn).set_buddy_order(order);
        // No page shuffling in this configuration.
        let to_tail = fpi.contains(Fpi::TO_TAIL) || self.buddy_merge_likely(pfn, buddy_pfn, order);
        if to_tail {
            self.add_to_free_list_tail(pfn, order, mt);
        } else {
            self.add_to_free_list(pfn, order, mt);
        }
    }

    /// `expand()`: split a block of order `high` down to `low`, keeping the lowest part and
    /// putting each upper half at the head of its order's list.
    pub fn expand(&mut self, pfn: u32, low: u32, high: u32, mt: MigrateType) {
        let mut high = high;
        let mut size = 1u32 << high;
        while high > low {
            high -= 1;
            size >>= 1;
            self.add_to_free_list(pfn + size, high, mt);
            self.map.pm(pfn + size).set_buddy_order(high);
        }
    }

    /// `__rmqueue_smallest()`: the first block of the smallest order that fits, from the
    /// lists of `mt`.
    pub fn __rmqueue_smallest(&mut self, order: u32, mt: MigrateType) -> Option<u32> {
        for current_order in order..MAX_ORDER as u32 {
            let Some(pfn) = self.get_page_from_free_area(current_order, mt) else {
                continue;
            };
            self.del_page_from_free_list(pfn, current_order);
            self.expand(pfn, order, current_order, mt);
            // set_pcppage_migratetype()
            self.map.pm(pfn).index = mt as u32;
            return Some(pfn);
        }
        None
    }

    /// `move_freepages()`: move every free block in `[start, end]` to `mt`'s lists; also
    /// count allocated pages that look movable (on an LRU, or non-LRU movable).
    pub fn move_freepages(&mut self, start: u32, end: u32, mt: MigrateType) -> (u64, u64) {
        let mut pfn = start;
        let mut moved = 0u64;
        let mut movable = 0u64;
        while pfn <= end {
            let p = self.map.p(pfn);
            if !p.is_buddy() {
                if p.test(PageFlags::LRU) || p.is_movable_mapping() {
                    movable += 1;
                }
                pfn += 1;
                continue;
            }
            let order = p.buddy_order();
            self.move_to_free_list(pfn, order, mt);
            pfn += 1 << order;
            moved += 1 << order;
        }
        (moved, movable)
    }

    /// `move_freepages_block()`: `move_freepages` over `pfn`'s pageblock, clipped at the
    /// zone start; nothing moves when the pageblock runs past the zone end.
    pub fn move_freepages_block(&mut self, pfn: u32, mt: MigrateType) -> (u64, u64) {
        let nr = self.pageblock_nr_pages() as u32;
        let mut start = pfn & !(nr - 1);
        let end = start + nr - 1;
        if !self.zone.spans_pfn(start as u64) {
            start = pfn;
        }
        if !self.zone.spans_pfn(end as u64) {
            return (0, 0);
        }
        self.move_freepages(start, end, mt)
    }
}

#[cfg(test)]
mod tests {
    use crate::mmzone::{MigrateType, ZoneType};
    use crate::page_alloc::{test_node, Fpi};
    use machine::Pfn;

    /// One Normal zone of 2048 pages, nothing freed yet.
    fn node() -> crate::mmzone::PgData {
        test_node([0, 2048, 2048, 0], (0, 2048), 1)
    }

    #[test]
    fn expand_keeps_the_lower_part_and_queues_upper_halves() {
        let mut pg = node();
        pg.__free_pages_core(Pfn::new(1024), 10).expect("free");
        let mut z = pg.zone_ctx(ZoneType::Normal);
        let got = z.__rmqueue_smallest(0, MigrateType::Movable).expect("page");
        assert_eq!(got, 1024);
        for o in 0..10u32 {
            let head = z.get_page_from_free_area(o, MigrateType::Movable);
            assert_eq!(head, Some(1024 + (1 << o)), "order {o}");
            assert_eq!(z.zone.free_area[o as usize].nr_free, 1);
        }
        assert_eq!(z.zone.free_area[10].nr_free, 0);
        assert_eq!(z.map.p(1024).index, MigrateType::Movable as u32);
    }

    #[test]
    fn freeing_merges_buddies_back_to_one_block() {
        let mut pg = node();
        pg.__free_pages_core(Pfn::new(1024), 10).expect("free");
        let mut z = pg.zone_ctx(ZoneType::Normal);
        let a = z.__rmqueue_smallest(0, MigrateType::Movable).expect("a");
        let b = z.__rmqueue_smallest(0, MigrateType::Movable).expect("b");
        assert_eq!((a, b), (1024, 1025));
        z.__free_one_page(b, 0, MigrateType::Movable, Fpi::NONE);
        assert_eq!(z.zone.free_area[0].nr_free, 1);
        z.__free_one_page(a, 0, MigrateType::Movable, Fpi::NONE);
        for o in 0..10 {
            assert_eq!(z.zone.free_area[o].nr_free, 0, "order {o}");
        }
        assert_eq!(z.zone.free_area[10].nr_free, 1);
        assert!(z.map.p(1024).is_buddy());
        assert_eq!(z.map.p(1024).buddy_order(), 10);
        assert!(!z.map.p(1025).is_buddy());
    }

    #[test]
    fn no_merge_across_a_highatomic_pageblock() {
        let mut pg = node();
        pg.__free_pages_core(Pfn::new(1024), 9).expect("free");
        let mut z = pg.zone_ctx(ZoneType::Normal);
        z.set_pageblock_migratetype(1536, MigrateType::HighAtomic);
        // Hand-craft: 1536 gets freed as a highatomic order-9 block.
        z.map.pm(1536).set_count(0);
        z.__free_one_page(1536, 9, MigrateType::HighAtomic, Fpi::NONE);
        assert_eq!(z.zone.free_area[9].nr_free, 2);
        assert_eq!(z.zone.free_area[10].nr_free, 0);
    }
}
