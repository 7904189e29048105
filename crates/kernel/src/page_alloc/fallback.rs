//! Falling back to another migrate type, and the high-order atomic reserve.
//!
//! Pageblocks are labelled with the mobility of what they hold so that unmovable pages do not
//! end up scattered over memory. When a type's lists are empty, `__rmqueue_fallback` takes
//! the *largest* free block of a fallback type (approximating "the pageblock with most free
//! pages") and, when the steal is big enough or the request is unmovable/reclaimable, moves
//! the whole pageblock's free pages over and relabels it once half of it is free or alike.
//! Stealing raises the zone's watermark boost so kswapd reclaims a little extra. Failing
//! high-order atomic allocations may reserve a pageblock as HighAtomic; under pressure such
//! reserves are given back (`unreserve_highatomic_pageblock`).

use crate::gfp::AllocFlags;
use crate::mmzone::{MigrateType, PgData, WMark, ZoneType, MAX_ORDER};

use super::buddy::ZoneMut;

/// `fallbacks[]`: the types each pcp type may borrow from, in order.
pub fn fallbacks(mt: MigrateType) -> &'static [MigrateType] {
    match mt {
        MigrateType::Unmovable => &[MigrateType::Reclaimable, MigrateType::Movable],
        MigrateType::Movable => &[MigrateType::Reclaimable, MigrateType::Unmovable],
        MigrateType::Reclaimable => &[MigrateType::Unmovable, MigrateType::Movable],
        MigrateType::HighAtomic | MigrateType::Isolate => &[],
    }
}

/// `can_steal_fallback()`: whole pageblocks may be taken for big blocks, and always for
/// unmovable and reclaimable requests (their pollution of movable blocks is the worse evil).
pub fn can_steal_fallback(
    order: u32,
    start_mt: MigrateType,
    pageblock_order: u32,
    mobility_disabled: bool,
) -> bool {
    if order >= pageblock_order {
        return true;
    }
    order >= pageblock_order / 2
        || start_mt == MigrateType::Reclaimable
        || start_mt == MigrateType::Unmovable
        || mobility_disabled
}

/// `mult_frac(x, n, d)`.
fn mult_frac(x: u64, n: u64, d: u64) -> u64 {
    (x / d) * n + ((x % d) * n) / d
}

impl ZoneMut<'_> {
    /// `boost_watermark()`.
    pub fn boost_watermark(&mut self) -> bool {
        if self.boost_factor <= 0 {
            return false;
        }
        let nr = self.pageblock_nr_pages();
        // Small zones would go OOM from the boost alone.
        if nr * 4 > self.zone.managed_pages {
            return false;
        }
        let mut max_boost = mult_frac(
            self.zone.watermark[WMark::High as usize],
            self.boost_factor as u64,
            10000,
        );
        // Watermarks not set up yet: do not boost that early.
        if max_boost == 0 {
            return false;
        }
        max_boost = max_boost.max(nr);
        self.zone.watermark_boost = (self.zone.watermark_boost + nr).min(max_boost);
        true
    }

    /// `change_pageblock_range()`.
    fn change_pageblock_range(&mut self, pfn: u32, start_order: u32, mt: MigrateType) {
        let nr = self.pageblock_nr_pages() as u32;
        let blocks = 1u32 << (start_order - self.pageblock_order());
        for i in 0..blocks {
            self.set_pageblock_migratetype(pfn + i * nr, mt);
        }
    }

    /// `steal_suitable_fallback()`.
    pub fn steal_suitable_fallback(
        &mut self,
        pfn: u32,
        alloc_flags: AllocFlags,
        start_type: MigrateType,
        whole_block: bool,
    ) {
        let current_order = self.map.p(pfn).buddy_order();
        let old_block_type = self.get_pageblock_migratetype(pfn);

        if old_block_type != MigrateType::HighAtomic {
            if current_order >= self.pageblock_order() {
                // Take ownership of the whole range.
                self.change_pageblock_range(pfn, current_order, start_type);
            } else {
                if self.boost_watermark() && alloc_flags.contains(AllocFlags::KSWAPD) {
                    self.zone.flags.boosted_watermark = true;
                }
                if whole_block {
                    let (free_pages, movable_pages) = self.move_freepages_block(pfn, start_type);
                    let alike_pages = if start_type == MigrateType::Movable {
                        movable_pages
                    } else if old_block_type == MigrateType::Movable {
                        // Non-movable request stealing a movable block: everything that is
                        // neither free nor movable counts as compatible.
                        self.pageblock_nr_pages()
                            .saturating_sub(free_pages + movable_pages)
                    } else {
                        0
                    };
                    // Moving the block fails at zone boundaries.
                    if free_pages != 0 {
                        if free_pages + alike_pages >= 1 << (self.pageblock_order() - 1)
                            || self.mobility_disabled
                        {
                            self.set_pageblock_migratetype(pfn, start_type);
                        }
                        return;
                    }
                }
            }
        }
        self.move_to_free_list(pfn, current_order, start_type);
    }

    /// `find_suitable_fallback()`: the first fallback type with a free block of `order`, and
    /// whether whole pageblocks may be stolen at that order.
    pub fn find_suitable_fallback(
        &self,
        order: u32,
        mt: MigrateType,
        only_stealable: bool,
    ) -> Option<(MigrateType, bool)> {
        let area = &self.zone.free_area[order as usize];
        if area.nr_free == 0 {
            return None;
        }
        let mut can_steal = false;
        for &fallback_mt in fallbacks(mt) {
            if area.free_list[fallback_mt as usize].is_empty() {
                continue;
            }
            if can_steal_fallback(order, mt, self.pageblock_order(), self.mobility_disabled) {
                can_steal = true;
            }
            if !only_stealable || can_steal {
                return Some((fallback_mt, can_steal));
            }
        }
        None
    }

    /// `reserve_highatomic_pageblock()`: at most 1% of the zone plus one pageblock.
    pub fn reserve_highatomic_pageblock(&mut self, pfn: u32) {
        let nr = self.pageblock_nr_pages();
        let max_managed = self.zone.managed_pages / 100 + nr;
        if self.zone.nr_reserved_highatomic >= max_managed {
            return;
        }
        let mt = self.get_pageblock_migratetype(pfn);
        // Only normal pageblocks (those that can merge with others).
        if mt.is_mergeable() {
            self.zone.nr_reserved_highatomic += nr;
            self.set_pageblock_migratetype(pfn, MigrateType::HighAtomic);
            self.move_freepages_block(pfn, MigrateType::HighAtomic);
        }
    }

    /// `__rmqueue_fallback()`: steal from the largest suitable block of another type (or the
    /// smallest, for movable requests that could not take a whole pageblock). Returns whether
    /// something was moved to `start_mt`'s lists.
    pub fn __rmqueue_fallback(
        &mut self,
        order: u32,
        start_mt: MigrateType,
        alloc_flags: AllocFlags,
    ) -> bool {
        // ALLOC_NOFRAGMENT does not exist without ZONE_DMA32, so min_order is the request.
        let min_order = order;
        let mut found = None;
        for current_order in (min_order..MAX_ORDER as u32).rev() {
            let Some((fallback_mt, can_steal)) =
                self.find_suitable_fallback(current_order, start_mt, false)
            else {
                continue;
            };
            if !can_steal && start_mt == MigrateType::Movable && current_order > order {
                // find_smallest: splitting the smallest block will not fragment for good.
                for o in order..MAX_ORDER as u32 {
                    if let Some((mt, cs)) = self.find_suitable_fallback(o, start_mt, false) {
                        found = Some((o, mt, cs));
                        break;
                    }
                }
            } else {
                found = Some((current_order, fallback_mt, can_steal));
            }
            break;
        }
        let Some((current_order, fallback_mt, can_steal)) = found else {
            return false;
        };
        let Some(pfn) = self.get_page_from_free_area(current_order, fallback_mt) else {
            return false;
        };
        self.steal_suitable_fallback(pfn, alloc_flags, start_mt, can_steal);
        true
    }

    /// `__rmqueue()`: the smallest block of `mt`, stealing from a fallback type when needed.
    pub fn __rmqueue(
        &mut self,
        order: u32,
        mt: MigrateType,
        alloc_flags: AllocFlags,
    ) -> Option<u32> {
        loop {
            if let Some(pfn) = self.__rmqueue_smallest(order, mt) {
                return Some(pfn);
            }
            if !self.__rmqueue_fallback(order, mt, alloc_flags) {
                return None;
            }
        }
    }
}

impl PgData {
    /// `unreserve_highatomic_pageblock()`: give a HighAtomic pageblock back to `migratetype`
    /// when an allocation is about to fail. Without `force`, one reserved block is kept.
    pub(crate) fn unreserve_highatomic_pageblock(
        &mut self,
        highest_zoneidx: ZoneType,
        migratetype: MigrateType,
        force: bool,
    ) -> bool {
        let zones: Vec<ZoneType> = self
            .zonelist
            .iter()
            .copied()
            .filter(|&z| z <= highest_zoneidx)
            .collect();
        let nr = self.pageblock_nr_pages();
        for z in zones {
            let mut zc = self.zone_ctx(z);
            if !force && zc.zone.nr_reserved_highatomic <= nr {
                continue;
            }
            for order in 0..MAX_ORDER as u32 {
                let Some(pfn) = zc.get_page_from_free_area(order, MigrateType::HighAtomic) else {
                    continue;
                };
                if zc.get_pageblock_migratetype(pfn) == MigrateType::HighAtomic {
                    let r = &mut zc.zone.nr_reserved_highatomic;
                    *r -= nr.min(*r);
                }
                zc.set_pageblock_migratetype(pfn, migratetype);
                let (moved, _) = zc.move_freepages_block(pfn, migratetype);
                if moved != 0 {
                    return true;
                }
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gfp::AllocFlags;
    use crate::page_alloc::test_node;
    use machine::Pfn;

    fn node() -> PgData {
        let mut pg = test_node([0, 4096, 4096, 0], (0, 4096), 1);
        pg.__free_pages_core(Pfn::new(1024), 10).expect("free");
        pg
    }

    #[test]
    fn fallback_table() {
        assert_eq!(
            fallbacks(MigrateType::Unmovable),
            [MigrateType::Reclaimable, MigrateType::Movable]
        );
        assert_eq!(
            fallbacks(MigrateType::Movable),
            [MigrateType::Reclaimable, MigrateType::Unmovable]
        );
        assert!(fallbacks(MigrateType::HighAtomic).is_empty());
        assert!(can_steal_fallback(0, MigrateType::Unmovable, 9, false));
        assert!(!can_steal_fallback(3, MigrateType::Movable, 9, false));
        assert!(can_steal_fallback(4, MigrateType::Movable, 9, false));
        assert!(can_steal_fallback(3, MigrateType::Movable, 9, true));
    }

    #[test]
    fn unmovable_steal_relabels_the_pageblock() {
        let mut pg = node();
        let mut z = pg.zone_ctx(ZoneType::Normal);
        // Nothing Unmovable is free: the order-10 Movable block is split, and since the
        // stolen block covers whole pageblocks they are relabelled up front.
        let pfn = z
            .__rmqueue(0, MigrateType::Unmovable, AllocFlags::empty())
            .expect("page");
        assert_eq!(pfn, 1024);
        assert_eq!(z.get_pageblock_migratetype(1024), MigrateType::Unmovable);
        assert_eq!(z.get_pageblock_migratetype(1536), MigrateType::Unmovable);
        // The remainder sits on the Unmovable lists.
        assert_eq!(
            z.get_page_from_free_area(9, MigrateType::Unmovable),
            Some(1536)
        );
        assert_eq!(
            z.zone.watermark_boost, 0,
            "order >= pageblock_order does not boost"
        );
    }

    #[test]
    fn partial_steal_moves_free_pages_and_relabels_when_half_free() {
        let mut pg = node();
        // Watermarks so that the boost has something to scale.
        pg.node_zones[1].watermark = [10, 20, 30, 40];
        pg.node_zones[1].managed_pages = 4096;
        let mut z = pg.zone_ctx(ZoneType::Normal);
        // Split the order-10 block into Movable pieces first.
        let m = z
            .__rmqueue_smallest(0, MigrateType::Movable)
            .expect("movable");
        assert_eq!(m, 1024);
        // Largest Movable block now is order 9 at 1536 (its own pageblock): that steals
        // whole. Take it away so only the pageblock at 1024 has free Movable pieces.
        let big = z
            .__rmqueue_smallest(9, MigrateType::Movable)
            .expect("order 9");
        assert_eq!(big, 1536);
        let pfn = z
            .__rmqueue(0, MigrateType::Unmovable, AllocFlags::KSWAPD)
            .expect("steal");
        // The largest fallback was the order-8 piece at 1280; all 511 free pages of the
        // pageblock moved to Unmovable and the block was relabelled.
        assert_eq!(z.get_pageblock_migratetype(1024), MigrateType::Unmovable);
        assert_eq!(pfn, 1025);
        // min(boost + pageblock, max(pageblock, high * 15000 / 10000 = 45)) = 512.
        assert_eq!(z.zone.watermark_boost, 512);
        assert!(z.zone.flags.boosted_watermark);
        for o in 0..9 {
            assert_eq!(z.get_page_from_free_area(o, MigrateType::Movable), None);
        }
    }

    #[test]
    fn highatomic_reserve_and_unreserve() {
        let mut pg = node();
        pg.zonelist = vec![ZoneType::Normal];
        let mut z = pg.zone_ctx(ZoneType::Normal);
        let pfn = z.__rmqueue_smallest(1, MigrateType::Movable).expect("page");
        z.reserve_highatomic_pageblock(pfn);
        assert_eq!(z.zone.nr_reserved_highatomic, 512);
        assert_eq!(z.get_pageblock_migratetype(pfn), MigrateType::HighAtomic);
        assert_eq!(
            z.get_page_from_free_area(1, MigrateType::HighAtomic),
            Some(1026)
        );
        // A second reservation is refused (limit is managed/100 + one pageblock).
        assert!(!pg.unreserve_highatomic_pageblock(ZoneType::Normal, MigrateType::Movable, false));
        assert!(pg.unreserve_highatomic_pageblock(ZoneType::Normal, MigrateType::Movable, true));
        assert_eq!(pg.node_zones[1].nr_reserved_highatomic, 0);
        assert_eq!(
            pg.node_zones[1].get_pageblock_migratetype(1024),
            MigrateType::Movable
        );
    }
}
