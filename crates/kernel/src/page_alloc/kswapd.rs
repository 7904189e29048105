//! kswapd and kcompactd as far as a machine without swap needs them (mm/vmscan.c,
//! mm/compaction.c).
//!
//! The allocator wakes kswapd when an allocation dips below a low watermark
//! (`wake_all_kswapds`) or takes a page from a zone whose watermarks a fallback steal has
//! boosted (`rmqueue`). kswapd then runs `balance_pgdat` until the node is balanced (a zone
//! the allocation may use is above its high watermark) or hopeless. Two things it does
//! are visible even when nothing can be reclaimed — the model's case: no swap, and the
//! workloads' pages are shmem or in use:
//!
//! - **The watermark boost goes.** `balance_pgdat` takes back the boost it found, whether
//!   or not its boosted reclaim freed anything. Without kswapd a steal's boost (2 MiB on a
//!   PAE pageblock) would stay and raise every watermark of the zone for good.
//! - **Failures count.** A run that reclaims nothing adds one to `kswapd_failures`. At
//!   `MAX_RECLAIM_RETRIES` the node is hopeless: zoneinfo's `node_unreclaimable`, the OOM
//!   report's `all_unreclaimable? yes`, and no more wakeups. An imbalanced node fails at
//!   every run, and kswapd, which will not sleep on an imbalanced node, runs again at once:
//!   so the first time low memory runs out it spins to 16 failures (the real runs' 16
//!   `pageoutrun` and 15 `kswapd_high_wmark_hit_quickly`).
//!
//! The thread runs when the allocating task gives up the CPU: right after the allocation
//! that woke it, or, in the slow path, before direct reclaim. Its 100 ms short sleep before
//! a full sleep ends without a wakeup (the model has no clock), so
//! `kswapd_low_wmark_hit_quickly` stays 0. A kcompactd request (order > 0: a boosted
//! kswapd run asks for pageblock order) makes it run and count `compact_daemon_wake`;
//! compaction itself (page migration) is not modelled, so the zones stay as they are.

use super::MAX_RECLAIM_RETRIES;
use crate::gfp::Gfp;
use crate::mmzone::{PgData, ZoneType};
use crate::vmstat::VmEventItem;

/// kswapd's and kcompactd's state in `pglist_data`, and kswapd's own locals.
#[derive(Clone, Debug, Default)]
pub struct Reclaimd {
    /// The threads exist (`kswapd_init`, `kcompactd_init`): wakeups before do nothing.
    pub running: bool,
    /// kswapd was woken and has not run yet.
    pub woken: bool,
    /// `pgdat->kswapd_order`.
    pub kswapd_order: u32,
    /// `pgdat->kswapd_highest_zoneidx` (`None`: MAX_NR_ZONES, no request).
    pub kswapd_highest_zoneidx: Option<ZoneType>,
    /// kswapd's `highest_zoneidx` of its last run (`None`: MAX_NR_ZONES - 1).
    pub last_highest_zoneidx: Option<ZoneType>,
    /// `pgdat->kcompactd_max_order`.
    pub kcompactd_max_order: u32,
    /// `pgdat->kcompactd_highest_zoneidx` (`None`: nr_zones - 1).
    pub kcompactd_highest_zoneidx: Option<ZoneType>,
}

impl PgData {
    /// The last zone number of the node.
    fn top_zone(&self) -> ZoneType {
        *self.zone_types().last().unwrap_or(&ZoneType::Normal)
    }

    /// The node's managed zones up to `highest`, lowest first.
    fn eligible(&self, highest: ZoneType) -> impl Iterator<Item = ZoneType> + '_ {
        self.zone_types()
            .iter()
            .copied()
            .filter(move |&z| z <= highest && self.zone(z).managed_pages > 0)
    }

    /// `pgdat_balanced()`: a zone the allocation may use is above its high watermark (a
    /// node without such zones is balanced).
    pub fn pgdat_balanced(&self, order: u32, highest: ZoneType) -> bool {
        let mut any = false;
        for z in self.eligible(highest) {
            any = true;
            let zone = self.zone(z);
            let mark = zone.high_wmark_pages();
            if zone.zone_watermark_ok(order, mark, highest, Default::default()) {
                return true;
            }
        }
        !any
    }

    /// `pgdat_watermark_boosted()`.
    fn pgdat_watermark_boosted(&self, highest: ZoneType) -> bool {
        self.eligible(highest)
            .any(|z| self.zone(z).watermark_boost != 0)
    }

    /// `wakeup_kswapd()`: record the request; wake the thread unless the node is hopeless
    /// or already balanced without a boost (kcompactd may be woken instead).
    pub(crate) fn wakeup_kswapd(
        &mut self,
        zone: ZoneType,
        gfp: Gfp,
        order: u32,
        highest: ZoneType,
    ) {
        if self.zone(zone).managed_pages == 0 {
            return;
        }
        let r = &mut self.reclaimd;
        if r.kswapd_highest_zoneidx.is_none_or(|c| c < highest) {
            r.kswapd_highest_zoneidx = Some(highest);
        }
        r.kswapd_order = r.kswapd_order.max(order);
        if !r.running {
            return;
        }
        if self.kswapd_failures >= MAX_RECLAIM_RETRIES
            || (self.pgdat_balanced(order, highest) && !self.pgdat_watermark_boosted(highest))
        {
            if !gfp.contains(Gfp::DIRECT_RECLAIM) {
                self.wakeup_kcompactd(order, highest);
            }
            return;
        }
        self.kswapd_wakeups += 1;
        self.reclaimd.woken = true;
    }

    /// `wake_all_kswapds()` of one node: the first zone of the allocation's zonelist.
    pub(crate) fn wake_all_kswapds(&mut self, gfp: Gfp, order: u32, highest: ZoneType) {
        if let Some(z) = self.zonelist.iter().copied().find(|&z| z <= highest) {
            self.wakeup_kswapd(z, gfp, order, highest);
        }
    }

    /// The woken kswapd gets the CPU: `balance_pgdat`, then `kswapd_try_to_sleep`, until
    /// it sleeps.
    pub(crate) fn kswapd_run(&mut self) {
        while std::mem::take(&mut self.reclaimd.woken) {
            let r = &mut self.reclaimd;
            let alloc_order = std::mem::take(&mut r.kswapd_order);
            let highest = r
                .kswapd_highest_zoneidx
                .take()
                .or(r.last_highest_zoneidx)
                .unwrap_or_else(|| self.top_zone());
            self.reclaimd.last_highest_zoneidx = Some(highest);
            self.balance_pgdat(alloc_order, highest);
            // kswapd()'s loop reads the order again (reset before balancing, no new request
            // meanwhile: 0; the zone stays) and tries to sleep at it.
            let order = self.reclaimd.kswapd_order;
            let highest = self.reclaimd.kswapd_highest_zoneidx.unwrap_or(highest);
            self.kswapd_try_to_sleep(order, highest);
        }
    }

    /// `balance_pgdat()` with nothing to reclaim: a boosted node gives up its boosted
    /// reclaim at once, an imbalanced one goes through every priority; either way nothing
    /// was reclaimed (one more failure), and the boost found at the start is taken back.
    /// (The order it returns matters only when reclaim lowered it: never here.)
    fn balance_pgdat(&mut self, order: u32, highest: ZoneType) {
        self.vm_events[VmEventItem::Pageoutrun] += 1;
        let boosts: Vec<(ZoneType, u64)> = self
            .eligible(highest)
            .map(|z| (z, self.zone(z).watermark_boost))
            .filter(|&(_, b)| b != 0)
            .collect();
        let balanced = self.pgdat_balanced(order, highest);
        if !boosts.is_empty() || !balanced {
            self.kswapd_failures += 1;
        }
        if !boosts.is_empty() {
            for (z, b) in boosts {
                let zone = self.zone_mut_ref(z);
                zone.watermark_boost -= b.min(zone.watermark_boost);
            }
            self.wakeup_kcompactd(self.pageblock_order, highest);
        }
    }

    /// `prepare_kswapd_sleep()`.
    fn prepare_kswapd_sleep(&self, order: u32, highest: ZoneType) -> bool {
        self.kswapd_failures >= MAX_RECLAIM_RETRIES || self.pgdat_balanced(order, highest)
    }

    /// `kswapd_try_to_sleep()` at `order` (its alloc and reclaim order, the same here):
    /// sleep (waking kcompactd first) if it may, else count the premature wakeup and go
    /// round again.
    fn kswapd_try_to_sleep(&mut self, order: u32, highest: ZoneType) {
        if self.prepare_kswapd_sleep(order, highest) {
            self.wakeup_kcompactd(order, highest);
            // The short sleep ends without a wakeup; the second check sees the same node.
            return;
        }
        self.vm_events[VmEventItem::KswapdHighWmarkHitQuickly] += 1;
        self.reclaimd.woken = true;
    }

    /// `wakeup_kcompactd()`: an order > 0 records a request. kcompactd runs on it: at
    /// once where a zone is suitable for compaction (the wakeup), else within its 500 ms
    /// poll, which finds the request pending. Either way `kcompactd_do_work` runs, and the
    /// model has no clock to tell the two apart.
    fn wakeup_kcompactd(&mut self, order: u32, highest: ZoneType) {
        if order == 0 {
            return;
        }
        let r = &mut self.reclaimd;
        r.kcompactd_max_order = r.kcompactd_max_order.max(order);
        if r.kcompactd_highest_zoneidx.is_none_or(|c| c > highest) {
            r.kcompactd_highest_zoneidx = Some(highest);
        }
        if r.running {
            self.kcompactd_do_work();
        }
    }

    /// `kcompactd_do_work()`: counted, and the request consumed. The compaction of the
    /// zones where it is suitable (page migration) is not modelled: they stay as they are.
    fn kcompactd_do_work(&mut self) {
        self.vm_events[VmEventItem::KcompactdWake] += 1;
        self.reclaimd.kcompactd_max_order = 0;
        self.reclaimd.kcompactd_highest_zoneidx = None;
    }
}
