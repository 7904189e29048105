//! Watermarks, the lowmem reserve, `min_free_kbytes` and the sysctls that retune them.
//!
//! Each zone has three watermarks: below `low` kswapd is woken, below `min` only privileged
//! allocations proceed, and kswapd stops at `high`. `min_free_kbytes` (about
//! 4·sqrt(lowmem in kB)) is spread over the lowmem zones by size; highmem gets a small fixed
//! `min` because emergency allocations cannot use it, but the same gaps to low/high. The
//! lowmem reserve keeps a share of each lower zone away from allocations that could have used
//! a higher one, which on a highmem machine is what keeps Normal from being eaten by user
//! pages.

use crate::gfp::{AllocFlags, Gfp, ALLOC_RESERVES, GFP_USER};
use crate::mmzone::{
    MigrateType, PgData, WMark, Zone, ZoneStatItem, ZoneType, MAX_ORDER, MIGRATE_PCPTYPES,
    SWAP_CLUSTER_MAX,
};
use crate::vmstat::calculate_normal_threshold;

/// `MIN_PERCPU_PAGELIST_HIGH_FRACTION`.
pub const MIN_PERCPU_PAGELIST_HIGH_FRACTION: i32 = 8;

/// A sysctl write the kernel rejects with -EINVAL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SysctlError {
    #[error("invalid value {value} for vm.{name}")]
    Invalid { name: &'static str, value: i64 },
}

/// `proc_dointvec_minmax()`'s check of a written value: an int within `[min, max]`, else
/// -EINVAL.
fn dointvec_minmax(name: &'static str, value: i64, min: i32, max: i32) -> Result<i32, SysctlError> {
    if (i64::from(min)..=i64::from(max)).contains(&value) {
        Ok(value as i32)
    } else {
        Err(SysctlError::Invalid { name, value })
    }
}

/// `int_sqrt()`: floor of the square root.
pub fn int_sqrt(x: u64) -> u64 {
    if x < 2 {
        return x;
    }
    let mut m: u64 = 1 << ((63 - x.leading_zeros()) & !1);
    let mut y = 0u64;
    let mut x = x;
    while m != 0 {
        let b = y + m;
        y >>= 1;
        if x >= b {
            x -= b;
            y += m;
        }
        m >>= 2;
    }
    y
}

/// `mult_frac()`.
fn mult_frac(x: u64, n: u64, d: u64) -> u64 {
    (x / d) * n + ((x % d) * n) / d
}

impl Zone {
    /// `__zone_watermark_unusable_free()`: pages an allocation of `order` cannot count on.
    pub fn watermark_unusable_free(&self, order: u32, alloc_flags: AllocFlags) -> i64 {
        let mut unusable = (1i64 << order) - 1;
        // Without rights to the reserves, the highatomic reserve is not for this caller.
        if !alloc_flags.intersects(ALLOC_RESERVES) {
            unusable += self.nr_reserved_highatomic as i64;
        }
        unusable
    }

    /// `__zone_watermark_ok()`: enough free pages above `mark` plus the lowmem reserve for
    /// `highest_zoneidx`, and for order > 0 a free block of at least that order.
    pub fn __zone_watermark_ok(
        &self,
        order: u32,
        mark: u64,
        highest_zoneidx: ZoneType,
        alloc_flags: AllocFlags,
        free_pages: i64,
    ) -> bool {
        let mut min = mark as i64;
        let free_pages = free_pages - self.watermark_unusable_free(order, alloc_flags);
        if alloc_flags.intersects(ALLOC_RESERVES) {
            // __GFP_HIGH may use half of the min reserve, non-blocking callers a bit more.
            if alloc_flags.contains(AllocFlags::MIN_RESERVE) {
                min -= min / 2;
                if alloc_flags.contains(AllocFlags::NON_BLOCK) {
                    min -= min / 4;
                }
            }
            // OOM victims may go further still.
            if alloc_flags.contains(AllocFlags::OOM) {
                min -= min / 2;
            }
        }
        if free_pages <= min + self.lowmem_reserve[highest_zoneidx as usize] {
            return false;
        }
        if order == 0 {
            return true;
        }
        for o in order as usize..MAX_ORDER {
            let area = &self.free_area[o];
            if area.nr_free == 0 {
                continue;
            }
            if area.free_list[..MIGRATE_PCPTYPES]
                .iter()
                .any(|l| !l.is_empty())
            {
                return true;
            }
            if alloc_flags.intersects(AllocFlags::HIGHATOMIC | AllocFlags::OOM)
                && !area.free_list[MigrateType::HighAtomic as usize].is_empty()
            {
                return true;
            }
        }
        false
    }

    /// `zone_watermark_ok()`.
    pub fn zone_watermark_ok(
        &self,
        order: u32,
        mark: u64,
        highest_zoneidx: ZoneType,
        alloc_flags: AllocFlags,
    ) -> bool {
        let free = self.page_state(ZoneStatItem::NrFreePages) as i64;
        self.__zone_watermark_ok(order, mark, highest_zoneidx, alloc_flags, free)
    }

    /// `zone_watermark_fast()`: an order-0 shortcut, and GFP_ATOMIC ignores the boost at
    /// the min watermark.
    pub fn zone_watermark_fast(
        &self,
        order: u32,
        mark: u64,
        highest_zoneidx: ZoneType,
        alloc_flags: AllocFlags,
        gfp: Gfp,
    ) -> bool {
        let free_pages = self.page_state(ZoneStatItem::NrFreePages) as i64;
        if order == 0 {
            let reserved = self.watermark_unusable_free(0, alloc_flags);
            let usable = free_pages - free_pages.min(reserved);
            if usable > mark as i64 + self.lowmem_reserve[highest_zoneidx as usize] {
                return true;
            }
        }
        if self.__zone_watermark_ok(order, mark, highest_zoneidx, alloc_flags, free_pages) {
            return true;
        }
        if order == 0
            && gfp.contains(Gfp::ATOMIC)
            && self.watermark_boost != 0
            && alloc_flags.wmark() == WMark::Min
        {
            let mark = self.watermark[WMark::Min as usize];
            return self.__zone_watermark_ok(order, mark, highest_zoneidx, alloc_flags, free_pages);
        }
        false
    }
}

impl PgData {
    /// `nr_free_zone_pages()`: managed pages above the high watermark in the zones usable by
    /// an allocation whose highest zone is `offset`.
    pub fn nr_free_zone_pages(&self, offset: ZoneType) -> u64 {
        self.zonelist
            .iter()
            .filter(|&&z| z <= offset)
            .map(|&z| {
                let zone = self.zone(z);
                zone.managed_pages.saturating_sub(zone.high_wmark_pages())
            })
            .sum()
    }

    /// `nr_free_buffer_pages()`: the same for ZONE_DMA and ZONE_NORMAL.
    pub fn nr_free_buffer_pages(&self) -> u64 {
        self.nr_free_zone_pages(self.gfp_zone(GFP_USER))
    }

    /// `calculate_min_free_kbytes()`: sqrt(lowmem_kbytes * 16) clamped to [128, 262144],
    /// unless the administrator's value is larger. Returns the kernel's warning, if any.
    pub fn calculate_min_free_kbytes(&mut self) -> Option<String> {
        let lowmem_kbytes = self.nr_free_buffer_pages() * 4;
        let new = int_sqrt(lowmem_kbytes * 16).min(i32::MAX as u64) as i32;
        if new > self.sysctl.user_min_free_kbytes {
            self.sysctl.min_free_kbytes = new.clamp(128, 262_144);
            None
        } else {
            Some(format!(
                "min_free_kbytes is not updated to {} because user defined value {} is preferred",
                new, self.sysctl.user_min_free_kbytes
            ))
        }
    }

    /// `__setup_per_zone_wmarks()`.
    fn __setup_per_zone_wmarks(&mut self) {
        let pages_min = (self.sysctl.min_free_kbytes.max(0) as u64) >> 2;
        let scale = self.sysctl.watermark_scale_factor.max(0) as u64;
        let lowmem_pages: u64 = self
            .zone_types()
            .iter()
            .filter(|&&z| !self.is_highmem(z))
            .map(|&z| self.zone(z).managed_pages)
            .sum();
        for &z in self.zone_types() {
            let highmem = self.is_highmem(z);
            let zone = &mut self.node_zones[z as usize];
            let managed = zone.managed_pages;
            let tmp = (pages_min * managed).checked_div(lowmem_pages).unwrap_or(0);
            zone.watermark[WMark::Min as usize] = if highmem {
                // __GFP_HIGH and PF_MEMALLOC allocations rarely need highmem: cap min, but
                // keep the proportional gaps for kswapd.
                (managed / 1024).clamp(SWAP_CLUSTER_MAX, 128)
            } else {
                tmp
            };
            let gap = (tmp >> 2).max(mult_frac(managed, scale, 10000));
            zone.watermark_boost = 0;
            zone.watermark[WMark::Low as usize] = zone.min_wmark_pages() + gap;
            zone.watermark[WMark::High as usize] = zone.low_wmark_pages() + gap;
            zone.watermark[WMark::Promo as usize] = zone.high_wmark_pages() + gap;
        }
        self.calculate_totalreserve_pages();
    }

    /// `setup_per_zone_wmarks()`: watermarks, then every zone's pcp high/batch.
    pub fn setup_per_zone_wmarks(&mut self) {
        self.__setup_per_zone_wmarks();
        for &z in self.zone_types() {
            self.zone_pcp_update(z, 0);
        }
    }

    /// `calculate_totalreserve_pages()`.
    pub fn calculate_totalreserve_pages(&mut self) {
        let mut reserve = 0;
        let nr_zones = self.zone_model.nr_zones;
        for (i, zone) in self.zones().iter().enumerate() {
            let max = zone.lowmem_reserve[i..nr_zones]
                .iter()
                .copied()
                .max()
                .unwrap_or(0)
                .max(0) as u64;
            reserve += (max + zone.high_wmark_pages()).min(zone.managed_pages);
        }
        self.totalreserve_pages = reserve;
    }

    /// `setup_per_zone_lowmem_reserve()`: zone i keeps back (managed pages of zones i+1..=j)
    /// / ratio[i] from allocations whose highest zone is j.
    pub fn setup_per_zone_lowmem_reserve(&mut self) {
        let nr_zones = self.zone_model.nr_zones;
        for i in 0..nr_zones - 1 {
            let ratio = self.sysctl.lowmem_reserve_ratio[i];
            let clear = ratio <= 0 || self.node_zones[i].managed_pages == 0;
            let mut managed = 0u64;
            for j in i + 1..nr_zones {
                managed += self.node_zones[j].managed_pages;
                self.node_zones[i].lowmem_reserve[j] = if clear {
                    0
                } else {
                    (managed / ratio as u64) as i64
                };
            }
        }
        self.calculate_totalreserve_pages();
    }

    /// `refresh_zone_stat_thresholds()` (mm/vmstat.c): the per-cpu counter threshold and the
    /// drift mark below which free counts are summed exactly.
    pub fn refresh_zone_stat_thresholds(&mut self) {
        let cpus = self.nr_cpus as u32;
        for zone in &mut self.node_zones {
            if !zone.is_populated() {
                continue;
            }
            let threshold = calculate_normal_threshold(zone.managed_pages, cpus);
            zone.stat_threshold = threshold;
            let tolerate_drift = zone.low_wmark_pages() - zone.min_wmark_pages();
            let max_drift = cpus as u64 * threshold as u64;
            if max_drift > tolerate_drift {
                zone.percpu_drift_mark = zone.high_wmark_pages() + max_drift;
            }
        }
    }

    /// `init_per_zone_wmark_min()` (postcore initcall): min_free_kbytes, watermarks, stat
    /// thresholds and the lowmem reserve. khugepaged's adjustment comes later, when it
    /// starts: [`PgData::set_recommended_min_free_kbytes`]. Returns kernel log lines.
    pub fn init_per_zone_wmark_min(&mut self) -> Vec<String> {
        let mut log = Vec::new();
        log.extend(self.calculate_min_free_kbytes());
        self.setup_per_zone_wmarks();
        self.refresh_zone_stat_thresholds();
        self.setup_per_zone_lowmem_reserve();
        log
    }

    /// `set_recommended_min_free_kbytes()` (mm/khugepaged.c, run when khugepaged starts with
    /// THP enabled): keep enough free pageblocks for fragmentation avoidance — 2 per lowmem
    /// zone plus 3×3 for the migrate types — capped at 5% of lowmem. Returns the kernel's
    /// message when it raises an administrator's value.
    pub fn set_recommended_min_free_kbytes(&mut self) -> Option<String> {
        let mut msg = None;
        if !self.thp_enabled {
            msg = self.calculate_min_free_kbytes();
        } else {
            let gfp_user_zone = self.gfp_zone(GFP_USER);
            let nr_zones = self
                .zone_types()
                .iter()
                .filter(|&&z| self.zone(z).is_populated() && z <= gfp_user_zone)
                .count() as u64;
            let nr = self.pageblock_nr_pages();
            let mut recommended = nr * nr_zones * 2;
            recommended += nr * nr_zones * (MIGRATE_PCPTYPES * MIGRATE_PCPTYPES) as u64;
            recommended = recommended.min(self.nr_free_buffer_pages() / 20);
            let recommended_kb = recommended << 2;
            if recommended_kb > self.sysctl.min_free_kbytes.max(0) as u64 {
                if self.sysctl.user_min_free_kbytes >= 0 {
                    msg = Some(format!(
                        "raising min_free_kbytes from {} to {} to help transparent hugepage allocations",
                        self.sysctl.min_free_kbytes, recommended_kb
                    ));
                }
                self.sysctl.min_free_kbytes = recommended_kb.min(i32::MAX as u64) as i32;
            }
        }
        self.setup_per_zone_wmarks();
        msg
    }

    /// What kswapd's `balance_pgdat()` does to the watermark boost once it has run: drop it.
    /// The model has no kswapd; the caller decides when a requested wakeup has "run".
    pub fn reset_watermark_boost(&mut self) {
        for z in &mut self.node_zones {
            z.watermark_boost = 0;
            z.flags.boosted_watermark = false;
        }
    }

    /// Write `vm.min_free_kbytes` (`min_free_kbytes_sysctl_handler`).
    pub fn sysctl_min_free_kbytes(&mut self, value: i64) -> Result<(), SysctlError> {
        let value = dointvec_minmax("min_free_kbytes", value, 0, i32::MAX)?;
        self.sysctl.min_free_kbytes = value;
        self.sysctl.user_min_free_kbytes = value;
        self.setup_per_zone_wmarks();
        Ok(())
    }

    /// Write `vm.watermark_scale_factor` (1..=3000).
    pub fn sysctl_watermark_scale_factor(&mut self, value: i64) -> Result<(), SysctlError> {
        self.sysctl.watermark_scale_factor =
            dointvec_minmax("watermark_scale_factor", value, 1, 3000)?;
        self.setup_per_zone_wmarks();
        Ok(())
    }

    /// Write `vm.watermark_boost_factor` (takes effect at the next boost).
    pub fn sysctl_watermark_boost_factor(&mut self, value: i64) -> Result<(), SysctlError> {
        self.sysctl.watermark_boost_factor =
            dointvec_minmax("watermark_boost_factor", value, 0, i32::MAX)?;
        Ok(())
    }

    /// Write `vm.lowmem_reserve_ratio`: values below 1 become 0 (no reserve).
    pub fn sysctl_lowmem_reserve_ratio(&mut self, values: &[i64]) -> Result<(), SysctlError> {
        for (i, &v) in values.iter().take(self.zone_model.nr_zones).enumerate() {
            if v > i32::MAX as i64 {
                return Err(SysctlError::Invalid {
                    name: "lowmem_reserve_ratio",
                    value: v,
                });
            }
            self.sysctl.lowmem_reserve_ratio[i] = if v < 1 { 0 } else { v as i32 };
        }
        self.setup_per_zone_lowmem_reserve();
        Ok(())
    }

    /// A read of `vm.lowmem_reserve_ratio`: 6.1's handler recomputes the reserves (and
    /// `totalreserve_pages`) on a read as on a write, from the zones' managed pages as they
    /// are now — after the boot freed its init memory and the initrd, which the boot's own
    /// computation did not see.
    pub fn sysctl_read_lowmem_reserve_ratio(&mut self) -> Vec<i32> {
        self.setup_per_zone_lowmem_reserve();
        self.sysctl.lowmem_reserve_ratio[..self.zone_model.nr_zones].to_vec()
    }

    /// Write `vm.percpu_pagelist_high_fraction` (0, or at least 8).
    pub fn sysctl_percpu_pagelist_high_fraction(&mut self, value: i64) -> Result<(), SysctlError> {
        const NAME: &str = "percpu_pagelist_high_fraction";
        let fraction = dointvec_minmax(NAME, value, 0, i32::MAX)?;
        if fraction != 0 && fraction < MIN_PERCPU_PAGELIST_HIGH_FRACTION {
            return Err(SysctlError::Invalid { name: NAME, value });
        }
        if fraction == self.sysctl.percpu_pagelist_high_fraction {
            return Ok(());
        }
        self.sysctl.percpu_pagelist_high_fraction = fraction;
        for &z in self.zone_types() {
            if self.zone(z).is_populated() {
                self.zone_set_pageset_high_and_batch(z, 0);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::page_alloc::test_node;

    /// The spec's §12 illustrative vector: managed DMA 3840, Normal 216000, HighMem 786000,
    /// two CPUs, no boost.
    fn spec_node() -> PgData {
        let mut pg = test_node([4096, 8192, 12288, 0], (1, 12288), 2);
        pg.build_all_zonelists();
        pg.node_zones[0].managed_pages = 3840;
        pg.node_zones[1].managed_pages = 216_000;
        pg.node_zones[2].managed_pages = 786_000;
        pg.setup_per_cpu_pageset();
        pg
    }

    #[test]
    fn int_sqrt_floors() {
        assert_eq!(int_sqrt(14_069_760), 3750);
        for x in [0u64, 1, 2, 3, 4, 15, 16, 17, 1 << 40, u64::MAX] {
            let r = int_sqrt(x);
            assert!(r.checked_mul(r).is_some_and(|s| s <= x));
            assert!(!matches!((r + 1).checked_mul(r + 1), Some(s) if s <= x));
        }
    }

    #[test]
    fn watermarks_match_the_spec_vector() {
        let mut pg = spec_node();
        pg.init_per_zone_wmark_min();
        assert_eq!(pg.sysctl.min_free_kbytes, 3750);
        let w = |z: usize| pg.node_zones[z].watermark;
        assert_eq!(w(0)[..3], [16, 20, 24]);
        assert_eq!(w(1)[..3], [920, 1150, 1380]);
        assert_eq!(w(2)[..3], [128, 965, 1802]);
        assert_eq!(pg.node_zones[0].lowmem_reserve[..4], [0, 843, 3914, 3914]);
        assert_eq!(pg.node_zones[1].lowmem_reserve[..4], [0, 0, 24562, 24562]);
        assert_eq!(pg.node_zones[2].lowmem_reserve[..4], [0, 0, 0, 0]);
        assert_eq!(pg.node_zones[3].lowmem_reserve[..4], [0, 0, 0, 0]);
        let pcp = |z: usize| {
            (
                pg.node_zones[z].pageset_batch,
                pg.node_zones[z].pageset_high,
            )
        };
        assert_eq!(pcp(0), (1, 10));
        assert_eq!(pcp(1), (63, 575));
        assert_eq!(pcp(2), (63, 482));
        for cpu in 0..2 {
            assert_eq!(pg.node_zones[1].per_cpu_pageset[cpu].high, 575);
        }
        // totalreserve: min(managed, max reserve + high) per zone (DMA is capped by its size).
        assert_eq!(pg.totalreserve_pages, 3840 + (24562 + 1380) + 1802);
    }

    #[test]
    fn sysctls_recompute_and_validate() {
        let mut pg = spec_node();
        pg.init_per_zone_wmark_min();
        pg.sysctl_min_free_kbytes(8000).expect("ok");
        assert_eq!(pg.sysctl.user_min_free_kbytes, 8000);
        assert_eq!(pg.node_zones[1].watermark[0], 2000 * 216_000 / 219_840);
        assert!(
            pg.calculate_min_free_kbytes().is_some(),
            "user value is preferred"
        );
        assert!(pg.sysctl_min_free_kbytes(-1).is_err());
        pg.sysctl_watermark_scale_factor(100).expect("ok");
        let n = &pg.node_zones[1];
        assert_eq!(n.watermark[1] - n.watermark[0], 2160);
        assert!(pg.sysctl_watermark_scale_factor(0).is_err());
        pg.sysctl_lowmem_reserve_ratio(&[0, 64, 0, 0]).expect("ok");
        assert_eq!(pg.node_zones[0].lowmem_reserve[..4], [0; 4]);
        assert_eq!(pg.node_zones[1].lowmem_reserve[2], 786_000 / 64);
        assert!(pg.sysctl_percpu_pagelist_high_fraction(4).is_err());
        pg.sysctl_percpu_pagelist_high_fraction(8).expect("ok");
        assert_eq!(pg.node_zones[1].pageset_high, 216_000 / 8 / 2);
    }

    #[test]
    fn recommended_min_free_kbytes_for_thp() {
        let mut pg = spec_node();
        pg.init_per_zone_wmark_min();
        let cap = pg.nr_free_buffer_pages() / 20;
        assert_eq!(pg.set_recommended_min_free_kbytes(), None);
        // Two lowmem zones: 512 * 2 * 2 + 512 * 2 * 9 pages, capped at 5% of lowmem.
        assert_eq!(pg.sysctl.min_free_kbytes as u64, 11_264.min(cap) * 4);
        assert!(cap < 11_264);
    }

    #[test]
    fn watermark_check_honours_reserves_and_orders() {
        let mut pg = spec_node();
        pg.init_per_zone_wmark_min();
        let z = &mut pg.node_zones[1];
        z.vm_stat[ZoneStatItem::NrFreePages] = 1000;
        let min = z.min_wmark_pages();
        assert!(z.__zone_watermark_ok(0, min, ZoneType::Normal, AllocFlags::empty(), 1000));
        assert!(!z.__zone_watermark_ok(0, 1000, ZoneType::Normal, AllocFlags::empty(), 1000));
        // __GFP_HIGH may use half of min.
        assert!(z.__zone_watermark_ok(0, 1800, ZoneType::Normal, AllocFlags::MIN_RESERVE, 1000));
        // The lowmem reserve for highmem-capable requests counts.
        assert!(!z.__zone_watermark_ok(0, min, ZoneType::HighMem, AllocFlags::empty(), 1000));
        // Order > 0 needs a free block: the lists are empty here.
        assert!(!z.__zone_watermark_ok(1, min, ZoneType::Normal, AllocFlags::empty(), 1000));
    }
}
