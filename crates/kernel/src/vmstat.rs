//! The vm counters of mm/vmstat.c: the counter enums, their `vmstat_text[]` names, and the
//! per-CPU stat thresholds.
//!
//! Linux keeps four arrays of counters — per zone (`enum zone_stat_item`), per-zone NUMA
//! events (`enum numa_stat_item`, CONFIG_NUMA), per node (`enum node_stat_item`) and per-CPU
//! events (`enum vm_event_item`) — and prints them under the names of one table. Which
//! entries exist depends on the configuration. These lists hold the entries of Debian's
//! i386 builds (ZSMALLOC, SWAP, TRANSPARENT_HUGEPAGE, MIGRATION, COMPACTION, HUGETLB_PAGE,
//! MEMORY_BALLOON, KSM, ZSWAP, X86, HIGHMEM; no NUMA, CMA or shadow call stack) and of its
//! amd64 build (the same, with DMA32 and ZONE_DEVICE instead of HIGHMEM, NUMA,
//! NUMA_BALANCING and PUD-sized THP), in Linux 6.1's order; [`VmstatConfig`] says which a
//! build prints and how it names the zone-indexed events. Each enum is declared once, here,
//! for every user: the page allocator counts into the typed arrays of its zones and node
//! (signed, as the kernel's `atomic_long_t` counters are), and the /proc formatters print
//! unsigned snapshots of the same arrays in the same order.

use crate::mmzone::ZoneType;
use serde::ser::{Serialize, SerializeMap, Serializer};
use std::borrow::Cow;
use std::ops::{Index, IndexMut};

/// Declares a counter enum, its name table, and a fixed-size counter array indexed by it.
macro_rules! stat_items {
    (
        $(#[$meta:meta])*
        enum $item:ident, array $stats:ident, names $names:ident, count $count:ident {
            $($(#[$vmeta:meta])* $variant:ident => $text:literal,)*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
        #[repr(usize)]
        pub enum $item {
            $($(#[$vmeta])* $variant,)*
        }

        /// Number of counters in the array.
        pub const $count: usize = [$($text,)*].len();

        /// Names printed by /proc, in array order.
        pub const $names: [&str; $count] = [$($text,)*];

        impl $item {
            /// Every item, in array order.
            pub const ALL: [$item; $count] = [$($item::$variant,)*];

            /// The name /proc prints for this counter.
            pub const fn name(self) -> &'static str {
                $names[self as usize]
            }

            /// The item printed under `name`, if any.
            pub fn from_name(name: &str) -> Option<Self> {
                $names.iter().position(|n| *n == name).map(|i| Self::ALL[i])
            }
        }

        /// One value per counter, indexed by the enum: unsigned in /proc snapshots, signed
        /// (`i64`) in the kernel's own counters.
        #[derive(Clone, Debug, PartialEq, Eq)]
        pub struct $stats<T = u64>(pub [T; $count]);

        impl<T: Default + Copy> Default for $stats<T> {
            fn default() -> Self {
                Self([T::default(); $count])
            }
        }

        impl<T> Index<$item> for $stats<T> {
            type Output = T;
            fn index(&self, item: $item) -> &T {
                &self.0[item as usize]
            }
        }

        impl<T> IndexMut<$item> for $stats<T> {
            fn index_mut(&mut self, item: $item) -> &mut T {
                &mut self.0[item as usize]
            }
        }

        impl<T: Copy> $stats<T> {
            /// `(item, value)` pairs in array order.
            pub fn iter(&self) -> impl Iterator<Item = ($item, T)> + '_ {
                $item::ALL.iter().map(move |&i| (i, self[i]))
            }
        }

        impl<T: Serialize> Serialize for $stats<T> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let mut map = serializer.serialize_map(Some($count))?;
                for (item, value) in $item::ALL.iter().zip(&self.0) {
                    map.serialize_entry(item.name(), value)?;
                }
                map.end()
            }
        }
    };
}

stat_items! {
    /// `enum zone_stat_item`: counters kept per zone.
    enum ZoneStatItem, array ZoneStats, names ZONE_STAT_NAMES, count NR_VM_ZONE_STAT_ITEMS {
        NrFreePages => "nr_free_pages",
        NrZoneInactiveAnon => "nr_zone_inactive_anon",
        NrZoneActiveAnon => "nr_zone_active_anon",
        NrZoneInactiveFile => "nr_zone_inactive_file",
        NrZoneActiveFile => "nr_zone_active_file",
        NrZoneUnevictable => "nr_zone_unevictable",
        NrZoneWritePending => "nr_zone_write_pending",
        NrMlock => "nr_mlock",
        NrBounce => "nr_bounce",
        NrZspages => "nr_zspages",
        NrFreeCmaPages => "nr_free_cma",
    }
}

stat_items! {
    /// `enum node_stat_item`: counters kept per node. All are in pages except
    /// `NrKernelStackKb` (kB); the slab items are kept in pages at node level.
    enum NodeStatItem, array NodeStats, names NODE_STAT_NAMES, count NR_VM_NODE_STAT_ITEMS {
        NrInactiveAnon => "nr_inactive_anon",
        NrActiveAnon => "nr_active_anon",
        NrInactiveFile => "nr_inactive_file",
        NrActiveFile => "nr_active_file",
        NrUnevictable => "nr_unevictable",
        NrSlabReclaimableB => "nr_slab_reclaimable",
        NrSlabUnreclaimableB => "nr_slab_unreclaimable",
        NrIsolatedAnon => "nr_isolated_anon",
        NrIsolatedFile => "nr_isolated_file",
        WorkingsetNodes => "workingset_nodes",
        WorkingsetRefaultAnon => "workingset_refault_anon",
        WorkingsetRefaultFile => "workingset_refault_file",
        WorkingsetActivateAnon => "workingset_activate_anon",
        WorkingsetActivateFile => "workingset_activate_file",
        WorkingsetRestoreAnon => "workingset_restore_anon",
        WorkingsetRestoreFile => "workingset_restore_file",
        WorkingsetNodereclaim => "workingset_nodereclaim",
        NrAnonMapped => "nr_anon_pages",
        NrFileMapped => "nr_mapped",
        NrFilePages => "nr_file_pages",
        NrFileDirty => "nr_dirty",
        NrWriteback => "nr_writeback",
        NrWritebackTemp => "nr_writeback_temp",
        NrShmem => "nr_shmem",
        NrShmemThps => "nr_shmem_hugepages",
        NrShmemPmdmapped => "nr_shmem_pmdmapped",
        NrFileThps => "nr_file_hugepages",
        NrFilePmdmapped => "nr_file_pmdmapped",
        NrAnonThps => "nr_anon_transparent_hugepages",
        NrVmscanWrite => "nr_vmscan_write",
        NrVmscanImmediate => "nr_vmscan_immediate_reclaim",
        NrDirtied => "nr_dirtied",
        NrWritten => "nr_written",
        NrThrottledWritten => "nr_throttled_written",
        NrKernelMiscReclaimable => "nr_kernel_misc_reclaimable",
        NrFollPinAcquired => "nr_foll_pin_acquired",
        NrFollPinReleased => "nr_foll_pin_released",
        NrKernelStackKb => "nr_kernel_stack",
        NrPagetable => "nr_page_table_pages",
        NrSecondaryPagetable => "nr_sec_page_table_pages",
        NrSwapcache => "nr_swapcached",
        /// CONFIG_NUMA_BALANCING (amd64): pages promoted from a slow memory tier, and the
        /// candidates for it. No tier exists here, so both stay 0.
        PgpromoteSuccess => "pgpromote_success",
        PgpromoteCandidate => "pgpromote_candidate",
    }
}

stat_items! {
    /// `enum numa_stat_item` (CONFIG_NUMA): per-zone events of `zone_statistics()` and of
    /// interleaved allocations, printed after the zone counters.
    enum NumaStatItem, array NumaStats, names NUMA_STAT_NAMES, count NR_VM_NUMA_EVENT_ITEMS {
        NumaHit => "numa_hit",
        NumaMiss => "numa_miss",
        NumaForeign => "numa_foreign",
        NumaInterleaveHit => "numa_interleave",
        NumaLocal => "numa_local",
        NumaOther => "numa_other",
    }
}

stat_items! {
    /// `enum vm_event_item`: per-CPU event counters (summed over CPUs for /proc/vmstat).
    /// `Pgpgin`/`Pgpgout` count 512-byte sectors; /proc/vmstat shows them in kB.
    enum VmEventItem, array VmEvents, names VM_EVENT_NAMES, count NR_VM_EVENT_ITEMS {
        Pgpgin => "pgpgin",
        Pgpgout => "pgpgout",
        Pswpin => "pswpin",
        Pswpout => "pswpout",
        /// `FOR_ALL_ZONES(PGALLOC)` and the two after it: a slot per zone number, called
        /// after i386's zones as [`ZoneType`] is; a build's names are
        /// [`VmstatConfig::event_name`]'s.
        PgallocDma => "pgalloc_dma",
        PgallocNormal => "pgalloc_normal",
        PgallocHigh => "pgalloc_high",
        PgallocMovable => "pgalloc_movable",
        PgallocDevice => "pgalloc_device",
        AllocstallDma => "allocstall_dma",
        AllocstallNormal => "allocstall_normal",
        AllocstallHigh => "allocstall_high",
        AllocstallMovable => "allocstall_movable",
        AllocstallDevice => "allocstall_device",
        PgscanSkipDma => "pgskip_dma",
        PgscanSkipNormal => "pgskip_normal",
        PgscanSkipHigh => "pgskip_high",
        PgscanSkipMovable => "pgskip_movable",
        PgscanSkipDevice => "pgskip_device",
        Pgfree => "pgfree",
        Pgactivate => "pgactivate",
        Pgdeactivate => "pgdeactivate",
        Pglazyfree => "pglazyfree",
        Pgfault => "pgfault",
        Pgmajfault => "pgmajfault",
        Pglazyfreed => "pglazyfreed",
        Pgrefill => "pgrefill",
        Pgreuse => "pgreuse",
        PgstealKswapd => "pgsteal_kswapd",
        PgstealDirect => "pgsteal_direct",
        PgdemoteKswapd => "pgdemote_kswapd",
        PgdemoteDirect => "pgdemote_direct",
        PgscanKswapd => "pgscan_kswapd",
        PgscanDirect => "pgscan_direct",
        PgscanDirectThrottle => "pgscan_direct_throttle",
        PgscanAnon => "pgscan_anon",
        PgscanFile => "pgscan_file",
        PgstealAnon => "pgsteal_anon",
        PgstealFile => "pgsteal_file",
        /// CONFIG_NUMA: node reclaim that failed (no node reclaim on one node).
        PgscanZoneReclaimFailed => "zone_reclaim_failed",
        Pginodesteal => "pginodesteal",
        SlabsScanned => "slabs_scanned",
        KswapdInodesteal => "kswapd_inodesteal",
        KswapdLowWmarkHitQuickly => "kswapd_low_wmark_hit_quickly",
        KswapdHighWmarkHitQuickly => "kswapd_high_wmark_hit_quickly",
        Pageoutrun => "pageoutrun",
        Pgrotated => "pgrotated",
        DropPagecache => "drop_pagecache",
        DropSlab => "drop_slab",
        OomKill => "oom_kill",
        /// CONFIG_NUMA_BALANCING: the NUMA hinting scanner and its faults and migrations
        /// (no second node to balance towards).
        NumaPteUpdates => "numa_pte_updates",
        NumaHugePteUpdates => "numa_huge_pte_updates",
        NumaHintFaults => "numa_hint_faults",
        NumaHintFaultsLocal => "numa_hint_faults_local",
        NumaPageMigrate => "numa_pages_migrated",
        PgmigrateSuccess => "pgmigrate_success",
        PgmigrateFail => "pgmigrate_fail",
        ThpMigrationSuccess => "thp_migration_success",
        ThpMigrationFail => "thp_migration_fail",
        ThpMigrationSplit => "thp_migration_split",
        CompactmigrateScanned => "compact_migrate_scanned",
        CompactfreeScanned => "compact_free_scanned",
        Compactisolated => "compact_isolated",
        Compactstall => "compact_stall",
        Compactfail => "compact_fail",
        Compactsuccess => "compact_success",
        KcompactdWake => "compact_daemon_wake",
        KcompactdMigrateScanned => "compact_daemon_migrate_scanned",
        KcompactdFreeScanned => "compact_daemon_free_scanned",
        HtlbBuddyPgalloc => "htlb_buddy_alloc_success",
        HtlbBuddyPgallocFail => "htlb_buddy_alloc_fail",
        UnevictablePgculled => "unevictable_pgs_culled",
        UnevictablePgscanned => "unevictable_pgs_scanned",
        UnevictablePgrescued => "unevictable_pgs_rescued",
        UnevictablePgmlocked => "unevictable_pgs_mlocked",
        UnevictablePgmunlocked => "unevictable_pgs_munlocked",
        UnevictablePgcleared => "unevictable_pgs_cleared",
        UnevictablePgstranded => "unevictable_pgs_stranded",
        ThpFaultAlloc => "thp_fault_alloc",
        ThpFaultFallback => "thp_fault_fallback",
        ThpFaultFallbackCharge => "thp_fault_fallback_charge",
        ThpCollapseAlloc => "thp_collapse_alloc",
        ThpCollapseAllocFailed => "thp_collapse_alloc_failed",
        ThpFileAlloc => "thp_file_alloc",
        ThpFileFallback => "thp_file_fallback",
        ThpFileFallbackCharge => "thp_file_fallback_charge",
        ThpFileMapped => "thp_file_mapped",
        ThpSplitPage => "thp_split_page",
        ThpSplitPageFailed => "thp_split_page_failed",
        ThpDeferredSplitPage => "thp_deferred_split_page",
        ThpSplitPmd => "thp_split_pmd",
        ThpScanExceedNonePte => "thp_scan_exceed_none_pte",
        ThpScanExceedSwapPte => "thp_scan_exceed_swap_pte",
        ThpScanExceedSharedPte => "thp_scan_exceed_share_pte",
        /// CONFIG_HAVE_ARCH_TRANSPARENT_HUGEPAGE_PUD (x86_64): PUD-sized THP splits (only
        /// DAX maps them).
        ThpSplitPud => "thp_split_pud",
        ThpZeroPageAlloc => "thp_zero_page_alloc",
        ThpZeroPageAllocFailed => "thp_zero_page_alloc_failed",
        ThpSwpout => "thp_swpout",
        ThpSwpoutFallback => "thp_swpout_fallback",
        BalloonInflate => "balloon_inflate",
        BalloonDeflate => "balloon_deflate",
        BalloonMigrate => "balloon_migrate",
        SwapRa => "swap_ra",
        SwapRaHit => "swap_ra_hit",
        KsmSwpinCopy => "ksm_swpin_copy",
        CowKsm => "cow_ksm",
        Zswpin => "zswpin",
        Zswpout => "zswpout",
        DirectMapLevel2Split => "direct_map_level2_splits",
        DirectMapLevel3Split => "direct_map_level3_splits",
    }
}

impl NodeStatItem {
    /// `vmstat_item_print_in_thp()`: the THP counters are kept in base pages but printed in
    /// huge pages by /proc/zoneinfo and /proc/vmstat (not by /proc/meminfo).
    pub const fn print_in_thp(self) -> bool {
        matches!(
            self,
            NodeStatItem::NrAnonThps
                | NodeStatItem::NrShmemThps
                | NodeStatItem::NrShmemPmdmapped
                | NodeStatItem::NrFileThps
                | NodeStatItem::NrFilePmdmapped
        )
    }
}

impl NodeStats {
    /// The value /proc/zoneinfo and /proc/vmstat print for `item` (THP items in huge pages
    /// of `hpage_pmd_nr` base pages).
    pub fn printed(&self, item: NodeStatItem, hpage_pmd_nr: u64) -> u64 {
        let pages = self[item];
        if item.print_in_thp() && hpage_pmd_nr != 0 {
            pages / hpage_pmd_nr
        } else {
            pages
        }
    }
}

/// `FOR_ALL_ZONES` events: each has one slot per zone number (the model's
/// [`ZoneType`]), in zone order, starting at the listed item.
const ZONE_EVENTS: [(VmEventItem, &str); 3] = [
    (VmEventItem::PgallocDma, "pgalloc"),
    (VmEventItem::AllocstallDma, "allocstall"),
    (VmEventItem::PgscanSkipDma, "pgskip"),
];

/// Zone numbers, hence slots of each zone-indexed event.
const NR_ZONE_SLOTS: usize = ZoneType::ALL.len();

// Each zone-indexed event's slots are consecutive, in zone-number order.
const _: () = {
    assert!(NR_ZONE_SLOTS == 5);
    assert!(VmEventItem::PgallocDevice as usize == VmEventItem::PgallocDma as usize + 4);
    assert!(VmEventItem::AllocstallDevice as usize == VmEventItem::AllocstallDma as usize + 4);
    assert!(VmEventItem::PgscanSkipDevice as usize == VmEventItem::PgscanSkipDma as usize + 4);
};

impl VmEventItem {
    /// The `pgalloc_<zone>` event of zone number `zone_idx`.
    pub fn pgalloc(zone_idx: usize) -> Option<Self> {
        (zone_idx < NR_ZONE_SLOTS).then(|| Self::ALL[Self::PgallocDma as usize + zone_idx])
    }

    /// A zone-indexed event's stem ("pgalloc") and zone number; `None` for the others.
    pub fn zone_event(self) -> Option<(&'static str, usize)> {
        ZONE_EVENTS.iter().find_map(|&(first, stem)| {
            let zone = (self as usize).wrapping_sub(first as usize);
            (zone < NR_ZONE_SLOTS).then_some((stem, zone))
        })
    }
}

impl VmEvents {
    /// `__count_zid_vm_events(PGALLOC, zid, delta)`: count an allocation from `zone`.
    ///
    /// The `pgalloc_<zone>` slots are consecutive, in zone-number order, so the item is an
    /// addition to the first one rather than a table lookup (this is on the order-0 fast
    /// path of every allocation).
    #[inline(always)]
    pub fn count_pgalloc(&mut self, zone: ZoneType, delta: u64) {
        self.0[VmEventItem::PgallocDma as usize + zone.idx()] += delta;
    }
    /// `__count_zid_vm_events(ALLOCSTALL, zid, 1)`: a direct reclaim for `zone`.
    pub fn count_allocstall(&mut self, zone: ZoneType) {
        self.0[VmEventItem::AllocstallDma as usize + zone.idx()] += 1;
    }
}

/// Which conditional entries of `vmstat_text[]` (and of /proc/zoneinfo) a build has.
///
/// The enums above hold the entries of every build the model knows, in 6.1's order; a build
/// prints those its configuration compiles in, so one array layout serves both and a
/// counter's slot never depends on the build. The zone-indexed events (`FOR_ALL_ZONES`)
/// have a slot per zone number, named by the build's `TEXTS_FOR_ZONES`: zone number 1 is
/// "normal" on i386 and "dma32" on x86_64, number 2 "high" and "normal".
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct VmstatConfig {
    /// `TEXTS_FOR_ZONES`, by zone number: one per zone the build has.
    pub zone_texts: &'static [&'static str],
    /// CONFIG_NUMA: the per-zone `numa_*` events and `zone_reclaim_failed`.
    pub numa: bool,
    /// CONFIG_NUMA_BALANCING: `pgpromote_*` (node) and the `numa_*` hinting events.
    pub numa_balancing: bool,
    /// CONFIG_HAVE_ARCH_TRANSPARENT_HUGEPAGE_PUD: `thp_split_pud`.
    pub thp_pud: bool,
}

impl Default for VmstatConfig {
    fn default() -> Self {
        Self::I386
    }
}

impl VmstatConfig {
    /// Debian's 686 and 686-pae builds: HIGHMEM, no NUMA.
    pub const I386: VmstatConfig = VmstatConfig {
        zone_texts: &["dma", "normal", "high", "movable"],
        numa: false,
        numa_balancing: false,
        thp_pud: false,
    };
    /// Debian's amd64 build: DMA32 and ZONE_DEVICE, NUMA with NUMA_BALANCING, PUD THP.
    pub const X86_64: VmstatConfig = VmstatConfig {
        zone_texts: &["dma", "dma32", "normal", "movable", "device"],
        numa: true,
        numa_balancing: true,
        thp_pud: true,
    };

    /// Whether the build has node counter `item`.
    pub fn has_node_item(&self, item: NodeStatItem) -> bool {
        match item {
            NodeStatItem::PgpromoteSuccess | NodeStatItem::PgpromoteCandidate => {
                self.numa_balancing
            }
            _ => true,
        }
    }

    /// The node counters the build prints, in order.
    pub fn node_items(&self) -> impl Iterator<Item = NodeStatItem> + '_ {
        NodeStatItem::ALL
            .into_iter()
            .filter(|&i| self.has_node_item(i))
    }

    /// Whether the build has event `item`.
    pub fn has_event(&self, item: VmEventItem) -> bool {
        use VmEventItem as E;
        if let Some((_, zone)) = item.zone_event() {
            return zone < self.zone_texts.len();
        }
        match item {
            E::PgscanZoneReclaimFailed => self.numa,
            E::NumaPteUpdates
            | E::NumaHugePteUpdates
            | E::NumaHintFaults
            | E::NumaHintFaultsLocal
            | E::NumaPageMigrate => self.numa_balancing,
            E::ThpSplitPud => self.thp_pud,
            _ => true,
        }
    }

    /// The name /proc/vmstat prints for `item` in this build, `None` if it has no such
    /// event.
    pub fn event_name(&self, item: VmEventItem) -> Option<Cow<'static, str>> {
        if !self.has_event(item) {
            return None;
        }
        Some(match item.zone_event() {
            Some((stem, zone)) => Cow::Owned(format!("{stem}_{}", self.zone_texts[zone])),
            None => Cow::Borrowed(item.name()),
        })
    }

    /// The event this build prints as `name`.
    pub fn event_from_name(&self, name: &str) -> Option<VmEventItem> {
        VmEventItem::ALL
            .into_iter()
            .find(|&i| self.event_name(i).is_some_and(|n| n == name))
    }
}

/// Thresholds never exceed this (the per-CPU deltas are `s8`).
pub const MAX_STAT_THRESHOLD: i32 = 125;

/// `fls()`: 1-based index of the most significant set bit, 0 for 0.
pub const fn fls(x: u32) -> u32 {
    u32::BITS - x.leading_zeros()
}

/// `calculate_normal_threshold()`: zone counters are updated in per-CPU deltas folded into the
/// zone only past this threshold, so reads are cheap but approximate. It grows with the
/// logarithm of the CPU count and of the zone size in 128 MiB units:
/// `2 * fls(cpus) * (1 + fls(managed >> 15))`, at most 125.
pub fn calculate_normal_threshold(managed_pages: u64, num_online_cpus: u32) -> i32 {
    // Zone size in 128 MiB units: managed >> (27 - PAGE_SHIFT), an int in the kernel.
    let mem = (managed_pages >> (27 - machine::PAGE_SHIFT)) as u32;
    let threshold = 2 * fls(num_online_cpus) * (1 + fls(mem));
    (threshold.min(MAX_STAT_THRESHOLD as u32)) as i32
}

/// `calculate_pressure_threshold()`: while kswapd runs, the low−min watermark gap shared among
/// the online CPUs keeps the total drift below that gap; at least 1 and at most 125.
pub fn calculate_pressure_threshold(
    low_wmark_pages: u64,
    min_wmark_pages: u64,
    num_online_cpus: u32,
) -> i32 {
    let distance = low_wmark_pages.saturating_sub(min_wmark_pages);
    let per_cpu = distance / u64::from(num_online_cpus.max(1));
    per_cpu.clamp(1, MAX_STAT_THRESHOLD as u64) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_round_trip() {
        for item in NodeStatItem::ALL {
            assert_eq!(NodeStatItem::from_name(item.name()), Some(item));
        }
        for item in ZoneStatItem::ALL {
            assert_eq!(ZoneStatItem::from_name(item.name()), Some(item));
        }
        for item in VmEventItem::ALL {
            assert_eq!(VmEventItem::from_name(item.name()), Some(item));
        }
        assert_eq!(ZoneStatItem::from_name("numa_hit"), None);
    }

    #[test]
    fn thp_items_print_in_huge_pages() {
        let mut s = NodeStats::default();
        s[NodeStatItem::NrAnonThps] = 1024;
        s[NodeStatItem::NrShmem] = 1024;
        assert_eq!(s.printed(NodeStatItem::NrAnonThps, 512), 2);
        assert_eq!(s.printed(NodeStatItem::NrShmem, 512), 1024);
    }

    #[test]
    fn serializes_as_name_map() {
        let mut s: ZoneStats = ZoneStats::default();
        s[ZoneStatItem::NrFreePages] = 7;
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.starts_with("{\"nr_free_pages\":7,\"nr_zone_inactive_anon\":0"));
    }

    #[test]
    fn pgalloc_by_zone_index() {
        assert_eq!(VmEventItem::pgalloc(2), Some(VmEventItem::PgallocHigh));
        assert_eq!(VmEventItem::pgalloc(4), Some(VmEventItem::PgallocDevice));
        assert_eq!(VmEventItem::pgalloc(5), None);
        assert_eq!(
            VmEventItem::AllocstallMovable.zone_event(),
            Some(("allocstall", 3))
        );
        assert_eq!(VmEventItem::Pgfree.zone_event(), None);
    }

    /// The zone-indexed events take the build's zone names; the NUMA and PUD entries exist
    /// only in the amd64 build.
    #[test]
    fn each_build_names_its_own_events() {
        let (i386, x86_64) = (VmstatConfig::I386, VmstatConfig::X86_64);
        let name = |c: VmstatConfig, i| c.event_name(i).map(|n| n.into_owned());
        assert_eq!(
            name(i386, VmEventItem::PgallocNormal).unwrap(),
            "pgalloc_normal"
        );
        assert_eq!(
            name(x86_64, VmEventItem::PgallocNormal).unwrap(),
            "pgalloc_dma32"
        );
        assert_eq!(
            name(x86_64, VmEventItem::PgallocHigh).unwrap(),
            "pgalloc_normal"
        );
        assert_eq!(
            name(i386, VmEventItem::PgscanSkipHigh).unwrap(),
            "pgskip_high"
        );
        assert_eq!(
            name(x86_64, VmEventItem::PgscanSkipDevice).unwrap(),
            "pgskip_device"
        );
        assert_eq!(name(i386, VmEventItem::PgallocDevice), None);
        assert_eq!(name(i386, VmEventItem::ThpSplitPud), None);
        assert_eq!(name(i386, VmEventItem::NumaHintFaults), None);
        assert!(!i386.has_node_item(NodeStatItem::PgpromoteSuccess));
        assert!(x86_64.has_node_item(NodeStatItem::PgpromoteCandidate));
        for c in [i386, x86_64] {
            for item in VmEventItem::ALL {
                if let Some(n) = c.event_name(item) {
                    assert_eq!(c.event_from_name(&n), Some(item), "{n}");
                }
            }
        }
        assert_eq!(i386.event_from_name("pgalloc_dma32"), None);
        assert_eq!(x86_64.event_from_name("pgalloc_high"), None);
    }

    #[test]
    fn kernel_counters_are_signed_and_count_pgalloc_by_zone() {
        let mut s: ZoneStats<i64> = ZoneStats::default();
        s[ZoneStatItem::NrFreePages] -= 3;
        assert_eq!(s.iter().next(), Some((ZoneStatItem::NrFreePages, -3)));
        let mut e = VmEvents::default();
        e.count_pgalloc(ZoneType::HighMem, 8);
        e.count_pgalloc(ZoneType::Dma, 1);
        assert_eq!(e[VmEventItem::PgallocHigh], 8);
        assert_eq!(e[VmEventItem::PgallocDma], 1);
        assert_eq!(e[VmEventItem::PgallocNormal], 0);
    }

    #[test]
    fn fls_matches_kernel_definition() {
        assert_eq!(fls(0), 0);
        assert_eq!(fls(1), 1);
        assert_eq!(fls(2), 2);
        assert_eq!(fls(3), 2);
        assert_eq!(fls(0x8000_0000), 32);
    }

    /// Rows of the sample table in the comment above calculate_normal_threshold() (zone size
    /// taken from its `fls(mem)+1` column where the size column disagrees).
    #[test]
    fn sample_table() {
        const MIB128: u64 = 32768; // pages
        let rows: [(i32, u32, u64); 10] = [
            (8, 1, 7 * MIB128 + 1),   // 0.9-1 GB, 1 CPU
            (16, 2, 7 * MIB128 + 1),  // 0.9-1 GB, 2 CPUs
            (20, 2, 8 * MIB128 + 1),  // 1-2 GB
            (24, 2, 16 * MIB128 + 1), // 2-4 GB
            (28, 2, 32 * MIB128 + 1), // 4-8 GB
            (4, 2, MIB128 - 1),       // <128M
            (30, 4, 8 * MIB128 + 1),  // fls(mem)+1 = 5, 4 CPUs
            (10, 16, MIB128 - 1),     // <128M, 16 CPUs
            (70, 64, 8 * MIB128 + 1),
            (125, 1024, 64 * MIB128 + 1),
        ];
        for (want, cpus, managed) in rows {
            assert_eq!(
                calculate_normal_threshold(managed, cpus),
                want,
                "{cpus} cpus {managed}"
            );
        }
    }

    #[test]
    fn pressure_threshold_bounds() {
        assert_eq!(calculate_pressure_threshold(100, 100, 1), 1);
        assert_eq!(calculate_pressure_threshold(1100, 100, 4), 125);
        assert_eq!(calculate_pressure_threshold(300, 100, 4), 50);
    }
}
