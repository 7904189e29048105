//! Zones and the node (`include/linux/mmzone.h`).
//!
//! i386 splits physical memory into DMA (first 16 MiB), Normal (the rest of what the kernel
//! maps permanently) and HighMem (everything else, reachable only through temporary
//! mappings); Movable exists only with `kernelcore=`. x86_64 numbers DMA, DMA32, Normal,
//! Movable and (CONFIG_ZONE_DEVICE) Device; see [`ZoneModel`]. Each zone owns a buddy free area with one
//! list per order and migrate type, per-CPU page lists, watermarks, the lowmem reserve that
//! protects it from allocations that could have used a higher zone, and a pageblock
//! migratetype map. The node (`pglist_data`) owns the zones, the zonelist and the `mem_map`.
//! This module holds the data; `page_alloc` holds the algorithms. The counter enums of the
//! zone and node `vm_stat[]` arrays are declared once in `vmstat` and re-exported here, where
//! `mmzone.h` declares them.

use crate::gfp::{Gfp, GFP_BOOT_MASK};
use crate::page::{ListHead, ListHeads, MemMap};
pub use crate::vmstat::{
    NodeStatItem, NodeStats, NumaStatItem, NumaStats, ZoneStatItem, ZoneStats,
    NR_VM_NODE_STAT_ITEMS, NR_VM_ZONE_STAT_ITEMS,
};
use crate::vmstat::{VmEvents, VmstatConfig};

/// `MAX_ORDER` in v6.1 is exclusive: orders 0..=10.
pub const MAX_ORDER: usize = 11;
/// `MAX_ORDER_NR_PAGES`: pages in the largest block (4 MiB).
pub const MAX_ORDER_NR_PAGES: u64 = 1 << (MAX_ORDER - 1);
/// `PAGE_ALLOC_COSTLY_ORDER`.
pub const PAGE_ALLOC_COSTLY_ORDER: u32 = 3;
/// `MAX_NR_ZONES` on i386 (DMA, Normal, HighMem, Movable).
pub const MAX_NR_ZONES: usize = 4;
/// Room for the zone numbers of every [`ZoneModel`]: x86_64 with CONFIG_ZONE_DEVICE numbers
/// five (its `MAX_NR_ZONES`); a model uses the first [`ZoneModel::nr_zones`].
pub const MAX_ZONE_NUMBERS: usize = 5;
/// `MIGRATE_TYPES` with MEMORY_ISOLATION and without CMA.
pub const MIGRATE_TYPES: usize = 5;
/// `MIGRATE_PCPTYPES`: the types that have per-CPU lists.
pub const MIGRATE_PCPTYPES: usize = 3;
/// `NR_WMARK` (min, low, high, promo).
pub const NR_WMARK: usize = 4;
/// `NR_LOWORDER_PCP_LISTS`: one list per pcp type for orders 0..=3.
pub const NR_LOWORDER_PCP_LISTS: usize = MIGRATE_PCPTYPES * (PAGE_ALLOC_COSTLY_ORDER as usize + 1);
/// `NR_PCP_THP` in 6.1.y: two THP lists (movable and the rest) with TRANSPARENT_HUGEPAGE.
pub const NR_PCP_THP: usize = 2;
/// Room for the pcp lists of a THP kernel; a non-THP kernel uses the first 12.
pub const NR_PCP_LISTS_MAX: usize = NR_LOWORDER_PCP_LISTS + NR_PCP_THP;
/// `CONFIG_NR_CPUS` of the reference kernels.
pub const NR_CPUS: usize = 32;
/// `SWAP_CLUSTER_MAX`.
pub const SWAP_CLUSTER_MAX: u64 = 32;
/// `MAX_DMA_PFN`: 16 MiB.
pub const MAX_DMA_PFN: u64 = (16 << 20) >> 12;
/// `sizeof(struct page)`.
pub const STRUCT_PAGE_SIZE: u64 = 40;

/// Number of free-list heads in a zone (`free_area[MAX_ORDER].free_list[MIGRATE_TYPES]`).
pub const NR_FREE_LISTS: usize = MAX_ORDER * MIGRATE_TYPES;

/// `zone_names[]`, in zone-index order.
pub const ZONE_NAMES: [&str; MAX_NR_ZONES] = ["DMA", "Normal", "HighMem", "Movable"];

/// `enum zone_type` on i386, plus x86_64's fifth number, ZONE_DEVICE.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ZoneType {
    Dma = 0,
    Normal = 1,
    HighMem = 2,
    Movable = 3,
    /// ZONE_DEVICE (x86_64 only): the zone of `memremap_pages()`'s device memory. The
    /// model has none, so the zone is always empty and no page carries its number.
    Device = 4,
}

impl ZoneType {
    /// Every zone number; a node uses the first [`ZoneModel::nr_zones`] ([`ZoneModel::zones`]).
    pub const ALL: [ZoneType; MAX_ZONE_NUMBERS] = [
        ZoneType::Dma,
        ZoneType::Normal,
        ZoneType::HighMem,
        ZoneType::Movable,
        ZoneType::Device,
    ];

    /// `zone_names[]` of i386 (and "Device" for number 4); [`ZoneModel::name`] gives the
    /// model's.
    pub fn name(self) -> &'static str {
        match self {
            ZoneType::Device => "Device",
            z => ZONE_NAMES[z as usize],
        }
    }
    /// Zone of a page's 2-bit zone number (the field cannot hold more: no page of the model
    /// is ZONE_DEVICE memory). A match rather than a table: the discriminants are the
    /// numbers, so it compiles to nothing.
    #[inline(always)]
    pub fn from_index(i: usize) -> ZoneType {
        match i & 3 {
            0 => ZoneType::Dma,
            1 => ZoneType::Normal,
            2 => ZoneType::HighMem,
            _ => ZoneType::Movable,
        }
    }
    pub fn idx(self) -> usize {
        self as usize
    }
}

/// `is_highmem_idx()`: HighMem, and Movable when it was carved from HighMem.
pub fn is_highmem_idx(zone: ZoneType, movable_zone: ZoneType) -> bool {
    zone == ZoneType::HighMem || (zone == ZoneType::Movable && movable_zone == ZoneType::HighMem)
}

/// What the zone numbers mean on an architecture. `enum zone_type` has conditional members:
/// i386 numbers DMA, Normal, HighMem, Movable; x86_64 (Debian's, CONFIG_ZONE_DEVICE) numbers
/// DMA, DMA32, Normal, Movable, Device. The model keeps one zone number ([`ZoneType`], named
/// after i386) and reads its meaning here: on x86_64 number 1 is DMA32, number 2 is Normal,
/// number 4 is Device, and nothing is high memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ZoneModel {
    /// `MAX_NR_ZONES`: how many zone numbers the node has (every one is listed in
    /// /proc/zoneinfo and has a `protection` entry and a `lowmem_reserve_ratio`).
    pub nr_zones: usize,
    /// `zone_names[]`, by zone number (the first `nr_zones`).
    pub names: [&'static str; MAX_ZONE_NUMBERS],
    /// CONFIG_HIGHMEM: number 2 is ZONE_HIGHMEM.
    pub highmem: bool,
    /// The number of ZONE_NORMAL.
    pub normal: ZoneType,
    /// `GFP_ZONE_TABLE`.
    pub gfp_zone_table: u32,
    /// SPARSEMEM: pages per memory section (`pfn_valid` is "the section has memory"); 0 for
    /// FLATMEM (`pfn < max_mapnr`).
    pub section_pages: u64,
    /// `sizeof(struct page)`.
    pub struct_page_size: u64,
    /// The default `sysctl_lowmem_reserve_ratio[]`, by zone number (the first `nr_zones`).
    pub lowmem_reserve_ratio: [i32; MAX_ZONE_NUMBERS],
    /// The build's counters: the zone-indexed events named by these zones
    /// (`TEXTS_FOR_ZONES`), and the amd64 build's NUMA ones.
    pub vmstat: VmstatConfig,
    /// CONFIG_DEFERRED_STRUCT_PAGE_INIT (64-bit only; on in Debian's amd64 build): the early
    /// memmap stops one section into the zone that ends the node, which leaves the pageblocks
    /// memblock holds above that point Unmovable (`page_alloc/deferred.rs`).
    pub deferred_struct_page_init: bool,
}

impl ZoneModel {
    /// i386: DMA below 16 MiB, Normal up to max_low_pfn, HighMem above.
    pub const I386: ZoneModel = ZoneModel {
        nr_zones: MAX_NR_ZONES,
        names: [
            ZONE_NAMES[0],
            ZONE_NAMES[1],
            ZONE_NAMES[2],
            ZONE_NAMES[3],
            "",
        ],
        highmem: true,
        normal: ZoneType::Normal,
        gfp_zone_table: crate::gfp::GFP_ZONE_TABLE,
        section_pages: 0,
        struct_page_size: STRUCT_PAGE_SIZE,
        lowmem_reserve_ratio: [256, 32, 0, 0, 0],
        vmstat: VmstatConfig::I386,
        deferred_struct_page_init: false,
    };
    /// x86_64: DMA below 16 MiB, DMA32 below 4 GiB, Normal above; no HighMem; Movable
    /// (without `kernelcore=`) and Device empty.
    pub const X86_64: ZoneModel = ZoneModel {
        nr_zones: 5,
        names: ["DMA", "DMA32", "Normal", "Movable", "Device"],
        highmem: false,
        normal: ZoneType::HighMem,
        gfp_zone_table: crate::gfp::GFP_ZONE_TABLE_64,
        section_pages: 1 << (27 - 12),
        struct_page_size: 64,
        lowmem_reserve_ratio: [256, 256, 32, 0, 0],
        vmstat: VmstatConfig::X86_64,
        deferred_struct_page_init: true,
    };
    /// `calc_memmap_size()`: the memmap's pages for a zone. FLATMEM's covers the span;
    /// SPARSEMEM's only the present pages when the span has large holes.
    pub fn calc_memmap_size(&self, spanned: u64, present: u64) -> u64 {
        let pages = if self.section_pages != 0 && spanned > present + (present >> 4) {
            present
        } else {
            spanned
        };
        (pages * self.struct_page_size).div_ceil(4096)
    }
    /// The name of zone number `z`.
    pub fn name(&self, z: ZoneType) -> &'static str {
        self.names[z as usize]
    }
    /// The zone numbers of this model, in order (`for (i = 0; i < MAX_NR_ZONES; i++)`).
    pub fn zones(&self) -> &'static [ZoneType] {
        let all: &'static [ZoneType; MAX_ZONE_NUMBERS] = &ZoneType::ALL;
        &all[..self.nr_zones]
    }
}

/// `migratetype_names[]`, in enum order, as /proc/pagetypeinfo prints them.
pub const MIGRATETYPE_NAMES: [&str; MIGRATE_TYPES] = [
    "Unmovable",
    "Movable",
    "Reclaimable",
    "HighAtomic",
    "Isolate",
];

/// `enum migratetype` (MEMORY_ISOLATION, no CMA).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum MigrateType {
    Unmovable = 0,
    Movable = 1,
    Reclaimable = 2,
    HighAtomic = 3,
    Isolate = 4,
}

impl MigrateType {
    pub const ALL: [MigrateType; MIGRATE_TYPES] = [
        MigrateType::Unmovable,
        MigrateType::Movable,
        MigrateType::Reclaimable,
        MigrateType::HighAtomic,
        MigrateType::Isolate,
    ];
    /// `migratetype_names[]`.
    pub fn name(self) -> &'static str {
        MIGRATETYPE_NAMES[self as usize]
    }
    /// The letter `show_migration_types()` prints.
    pub fn letter(self) -> char {
        match self {
            MigrateType::Unmovable => 'U',
            MigrateType::Movable => 'M',
            MigrateType::Reclaimable => 'E',
            MigrateType::HighAtomic => 'H',
            MigrateType::Isolate => 'I',
        }
    }
    /// The type stored in a small integer field (out-of-range values read as Unmovable, like a
    /// zeroed pageblock bitmap).
    #[inline(always)]
    pub fn from_index(i: usize) -> MigrateType {
        // A match rather than a table lookup: the discriminants are the numbers.
        match i {
            1 => MigrateType::Movable,
            2 => MigrateType::Reclaimable,
            3 => MigrateType::HighAtomic,
            4 => MigrateType::Isolate,
            _ => MigrateType::Unmovable,
        }
    }
    pub fn idx(self) -> usize {
        self as usize
    }
    /// `migratetype_is_mergeable()`: types that can fall back can merge with each other.
    pub fn is_mergeable(self) -> bool {
        (self as usize) < MIGRATE_PCPTYPES
    }
}

/// `enum zone_watermarks`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WMark {
    Min = 0,
    Low = 1,
    High = 2,
    Promo = 3,
}

/// `struct free_area`.
#[derive(Clone, Debug)]
pub struct FreeArea {
    pub free_list: [ListHead; MIGRATE_TYPES],
    /// Number of free blocks of this order, all types.
    pub nr_free: u64,
}

/// `struct per_cpu_pages`.
#[derive(Clone, Debug)]
pub struct PerCpuPages {
    /// Pages on the lists (base pages: an order-n entry counts 2^n).
    pub count: i32,
    pub high: i32,
    pub batch: i32,
    pub free_factor: i16,
    pub lists: [ListHead; NR_PCP_LISTS_MAX],
}

/// Zone flag bits the allocator uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ZoneFlags {
    /// `ZONE_BOOSTED_WATERMARK`.
    pub boosted_watermark: bool,
    /// `ZONE_RECLAIM_ACTIVE`.
    pub reclaim_active: bool,
}

/// `struct zone`.
#[derive(Clone, Debug)]
pub struct Zone {
    pub zone_idx: ZoneType,
    pub name: &'static str,
    /// `_watermark[]`, without boost; use the `*_wmark_pages` accessors.
    pub watermark: [u64; NR_WMARK],
    pub watermark_boost: u64,
    pub nr_reserved_highatomic: u64,
    /// `lowmem_reserve[]`: pages kept back from allocations whose highest usable zone is j.
    /// Only the first `ZoneModel::nr_zones` entries exist.
    pub lowmem_reserve: [i64; MAX_ZONE_NUMBERS],
    /// One pageset per possible CPU.
    pub per_cpu_pageset: Vec<PerCpuPages>,
    pub pageset_high: i32,
    pub pageset_batch: i32,
    /// Migratetype of each pageblock, from `pageblock_start_pfn(zone_start_pfn)`.
    pub pageblock_flags: Vec<MigrateType>,
    pub zone_start_pfn: u64,
    pub spanned_pages: u64,
    pub present_pages: u64,
    pub managed_pages: u64,
    pub nr_isolate_pageblock: u64,
    pub initialized: bool,
    pub free_area: [FreeArea; MAX_ORDER],
    pub flags: ZoneFlags,
    pub percpu_drift_mark: u64,
    /// `per_cpu_zonestats->stat_threshold` (same on every CPU).
    pub stat_threshold: i32,
    /// `vm_stat[]`.
    pub vm_stat: ZoneStats<i64>,
    /// NUMA_HIT of `vm_numa_event[]`: the allocation calls this zone satisfied
    /// (`zone_statistics`); see [`Zone::numa_event_state`] for the other items.
    pub numa_hit: u64,
    /// NUMA_INTERLEAVE_HIT: allocations under an interleave policy that got the node
    /// they asked for (`alloc_page_interleave`).
    pub numa_interleave_hit: u64,
    pub(crate) pageblock_order: u32,
}

/// Set in the list id of a pcp list; free-list ids stay below it.
pub const PCP_LIST_ID: u32 = 1 << 9;

/// List id of `free_area[order].free_list[mt]` inside a zone: `order << 3 | mt`, so that
/// decoding an id (only needed when a page's neighbour is a list head) is two shifts.
#[inline]
pub fn free_list_id(order: u32, mt: MigrateType) -> u32 {
    order << 3 | mt as u32
}

/// List id of `per_cpu_pageset[cpu].lists[pindex]` inside a zone:
/// `PCP_LIST_ID | cpu << 4 | pindex` (cpu < NR_CPUS = 32, pindex < 16).
#[inline]
pub fn pcp_list_id(cpu: usize, pindex: usize) -> u32 {
    PCP_LIST_ID | (cpu as u32) << 4 | pindex as u32
}

impl ListHeads for Zone {
    #[inline]
    fn list_head(&self, id: u32) -> &ListHead {
        if id & PCP_LIST_ID == 0 {
            &self.free_area[(id >> 3) as usize].free_list[(id & 7) as usize]
        } else {
            &self.per_cpu_pageset[((id >> 4) & 31) as usize].lists[(id & 15) as usize]
        }
    }
    #[inline]
    fn list_head_mut(&mut self, id: u32) -> &mut ListHead {
        if id & PCP_LIST_ID == 0 {
            &mut self.free_area[(id >> 3) as usize].free_list[(id & 7) as usize]
        } else {
            &mut self.per_cpu_pageset[((id >> 4) & 31) as usize].lists[(id & 15) as usize]
        }
    }
}

/// `BOOT_PAGESET_HIGH` / `BOOT_PAGESET_BATCH`: a pageset that hands every page straight
/// back to the buddy lists.
pub const BOOT_PAGESET_HIGH: i32 = 0;
pub const BOOT_PAGESET_BATCH: i32 = 1;

impl PerCpuPages {
    /// `per_cpu_pages_init()`: empty lists, boot high/batch.
    pub fn new(cpu: usize) -> Self {
        PerCpuPages {
            count: 0,
            high: BOOT_PAGESET_HIGH,
            batch: BOOT_PAGESET_BATCH,
            free_factor: 0,
            lists: core::array::from_fn(|p| ListHead::new(pcp_list_id(cpu, p))),
        }
    }
}

impl Zone {
    /// An empty, uninitialised zone (as `free_area_init_core` finds it).
    pub fn new(zone_idx: ZoneType, nr_cpus: usize, pageblock_order: u32) -> Self {
        Zone {
            zone_idx,
            name: zone_idx.name(),
            watermark: [0; NR_WMARK],
            watermark_boost: 0,
            nr_reserved_highatomic: 0,
            lowmem_reserve: [0; MAX_ZONE_NUMBERS],
            per_cpu_pageset: (0..nr_cpus).map(PerCpuPages::new).collect(),
            pageset_high: BOOT_PAGESET_HIGH,
            pageset_batch: BOOT_PAGESET_BATCH,
            pageblock_flags: Vec::new(),
            zone_start_pfn: 0,
            spanned_pages: 0,
            present_pages: 0,
            managed_pages: 0,
            nr_isolate_pageblock: 0,
            initialized: false,
            free_area: core::array::from_fn(|o| FreeArea {
                free_list: core::array::from_fn(|t| {
                    ListHead::new(free_list_id(o as u32, MigrateType::ALL[t]))
                }),
                nr_free: 0,
            }),
            flags: ZoneFlags::default(),
            percpu_drift_mark: 0,
            stat_threshold: 0,
            vm_stat: ZoneStats::default(),
            numa_hit: 0,
            numa_interleave_hit: 0,
            pageblock_order,
        }
    }

    /// `zone_end_pfn()`.
    pub fn zone_end_pfn(&self) -> u64 {
        self.zone_start_pfn + self.spanned_pages
    }
    /// `zone_spans_pfn()`.
    #[inline]
    pub fn spans_pfn(&self, pfn: u64) -> bool {
        // start <= pfn < start + spanned, as one unsigned compare.
        pfn.wrapping_sub(self.zone_start_pfn) < self.spanned_pages
    }
    /// `populated_zone()`.
    pub fn is_populated(&self) -> bool {
        self.present_pages != 0
    }
    /// `managed_zone()`.
    pub fn is_managed(&self) -> bool {
        self.managed_pages != 0
    }
    /// `wmark_pages()`: the watermark including the boost.
    pub fn wmark_pages(&self, w: WMark) -> u64 {
        self.watermark[w as usize] + self.watermark_boost
    }
    pub fn min_wmark_pages(&self) -> u64 {
        self.wmark_pages(WMark::Min)
    }
    pub fn low_wmark_pages(&self) -> u64 {
        self.wmark_pages(WMark::Low)
    }
    pub fn high_wmark_pages(&self) -> u64 {
        self.wmark_pages(WMark::High)
    }
    /// `zone_page_state()` (negative per-cpu drift reads as 0 in the kernel).
    pub fn page_state(&self, item: ZoneStatItem) -> u64 {
        self.vm_stat[item].max(0) as u64
    }
    /// `__mod_zone_page_state()`.
    pub fn mod_page_state(&mut self, item: ZoneStatItem, delta: i64) {
        self.vm_stat[item] += delta;
    }
    /// `zone_statistics(preferred_zone, zone, 1)`: one allocation call this zone satisfied
    /// (by `rmqueue`, whatever its order). On one node every zone is on the preferred
    /// zone's node and on the allocating CPU's, so of the kernel's tests only NUMA_HIT and
    /// NUMA_LOCAL are ever counted, by the same amount: one add keeps both.
    #[inline(always)]
    pub fn zone_statistics(&mut self) {
        self.numa_hit += 1;
    }
    /// `zone_numa_event_state()`: NUMA_LOCAL is NUMA_HIT on one node (see
    /// [`Zone::zone_statistics`]); a miss, a foreign or an other-node allocation needs a
    /// second node.
    pub fn numa_event_state(&self, item: NumaStatItem) -> u64 {
        match item {
            NumaStatItem::NumaHit | NumaStatItem::NumaLocal => self.numa_hit,
            NumaStatItem::NumaInterleaveHit => self.numa_interleave_hit,
            NumaStatItem::NumaMiss | NumaStatItem::NumaForeign | NumaStatItem::NumaOther => 0,
        }
    }
    /// `pageblock_nr_pages`.
    pub fn pageblock_nr_pages(&self) -> u64 {
        1 << self.pageblock_order
    }
    /// Index of `pfn`'s pageblock in `pageblock_flags`.
    fn pageblock_index(&self, pfn: u64) -> usize {
        let base = self.zone_start_pfn & !(self.pageblock_nr_pages() - 1);
        (pfn.wrapping_sub(base) >> self.pageblock_order) as usize
    }
    /// `get_pfnblock_migratetype()`.
    pub fn get_pageblock_migratetype(&self, pfn: u64) -> MigrateType {
        self.pageblock_flags
            .get(self.pageblock_index(pfn))
            .copied()
            .unwrap_or(MigrateType::Unmovable)
    }
    /// Raw store into the pageblock map (the mobility-grouping rule is applied by the caller,
    /// `set_pageblock_migratetype` in `page_alloc`).
    pub(crate) fn store_pageblock_migratetype(&mut self, pfn: u64, mt: MigrateType) {
        let i = self.pageblock_index(pfn);
        if let Some(slot) = self.pageblock_flags.get_mut(i) {
            *slot = mt;
        }
    }
    /// `usemap_size()`: bytes of the pageblock bitmap the boot allocates for this zone
    /// (4 bits per pageblock, rounded up to whole longs).
    pub fn usemap_size(&self) -> u64 {
        usemap_size(
            self.zone_start_pfn,
            self.spanned_pages,
            self.pageblock_order,
        )
    }
    /// Total pages on this zone's pcp lists, all CPUs.
    pub fn pcp_count(&self) -> u64 {
        self.per_cpu_pageset
            .iter()
            .map(|p| p.count.max(0) as u64)
            .sum()
    }
    /// Number of pages on `free_area[order].free_list[mt]` (walks the list, as
    /// /proc/pagetypeinfo does).
    pub fn free_list_len(&self, map: &MemMap, order: usize, mt: MigrateType) -> u64 {
        map.list_iter(self, free_list_id(order as u32, mt), usize::MAX)
            .count() as u64
    }
}

/// `usemap_size()` for a zone `[start, start + size)`.
pub fn usemap_size(zone_start_pfn: u64, zonesize: u64, pageblock_order: u32) -> u64 {
    let nr = 1u64 << pageblock_order;
    let size = zonesize + (zone_start_pfn & (nr - 1));
    let bits = size.div_ceil(nr) * 4;
    bits.div_ceil(32) * 32 / 8
}

/// The vm sysctls the page allocator owns (`/proc/sys/vm/...`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmSysctl {
    pub min_free_kbytes: i32,
    /// -1 until the administrator writes `min_free_kbytes`.
    pub user_min_free_kbytes: i32,
    pub watermark_boost_factor: i32,
    pub watermark_scale_factor: i32,
    /// `sysctl_lowmem_reserve_ratio[]` (the first `ZoneModel::nr_zones` entries).
    pub lowmem_reserve_ratio: [i32; MAX_ZONE_NUMBERS],
    pub percpu_pagelist_high_fraction: i32,
}

impl Default for VmSysctl {
    fn default() -> Self {
        VmSysctl {
            min_free_kbytes: 1024,
            user_min_free_kbytes: -1,
            watermark_boost_factor: 15000,
            watermark_scale_factor: 10,
            lowmem_reserve_ratio: ZoneModel::I386.lowmem_reserve_ratio,
            percpu_pagelist_high_fraction: 0,
        }
    }
}

/// `pglist_data` (the only node, `contig_page_data`) together with the allocator's globals,
/// which on a one-node machine belong to it.
#[derive(Clone, Debug)]
pub struct PgData {
    pub node_id: u32,
    /// Room for every zone number; the node's are the first `zone_model.nr_zones`
    /// ([`PgData::zones`]).
    pub node_zones: [Zone; MAX_ZONE_NUMBERS],
    pub nr_zones: usize,
    pub node_start_pfn: u64,
    pub node_spanned_pages: u64,
    pub node_present_pages: u64,
    /// `node_zonelists[ZONELIST_FALLBACK]`: populated zones, highest first.
    pub zonelist: Vec<ZoneType>,
    pub mem_map: MemMap,
    /// Node `vm_stat[]`.
    pub vm_stat: NodeStats<i64>,
    pub totalreserve_pages: u64,
    /// `kswapd_failures`: kswapd runs that reclaimed nothing (zoneinfo's
    /// `node_unreclaimable`, the OOM report's `all_unreclaimable?` at MAX_RECLAIM_RETRIES).
    pub kswapd_failures: u32,
    /// Times the allocator woke kswapd (`wakeup_kswapd` that got through).
    pub kswapd_wakeups: u64,
    /// kswapd's and kcompactd's requests and state.
    pub reclaimd: crate::page_alloc::Reclaimd,
    /// Each CPU's LRU batches (`cpu_fbatches`, mm/swap.c).
    pub lru_fbatches: Vec<crate::mm::swap::CpuFbatches>,

    /// `pageblock_order` (9 with PAE, 10 without).
    pub pageblock_order: u32,
    /// Possible (= online) CPUs.
    pub nr_cpus: usize,
    /// TRANSPARENT_HUGEPAGE: pageblock-order pages also go through the pcp lists.
    pub thp_enabled: bool,
    /// `init_on_alloc` (INIT_ON_ALLOC_DEFAULT_ON): every allocation must be zeroed.
    pub init_on_alloc: bool,
    /// FLATMEM `max_mapnr` (`pfn_valid(pfn)` is `pfn < max_mapnr`).
    pub max_mapnr: u64,
    /// `movable_zone`: the zone ZONE_MOVABLE would be carved from.
    pub movable_zone: ZoneType,
    /// What the zone numbers mean (i386 or x86_64).
    pub zone_model: ZoneModel,
    /// `dma_reserve` (see `NodeConfig::dma_reserve`).
    pub dma_reserve: u64,
    /// `memblock.memory` ranges the node was built from, as `[start, end)` pfns.
    pub memory: Vec<(u64, u64)>,
    /// `first_deferred_pfn` (DEFERRED_STRUCT_PAGE_INIT): where the early memmap stopped;
    /// `None` for the kernel's ULONG_MAX (nothing deferred).
    pub first_deferred_pfn: Option<u64>,

    pub sysctl: VmSysctl,
    /// `gfp_allowed_mask`: GFP_BOOT_MASK until interrupts are enabled.
    pub gfp_allowed_mask: Gfp,
    pub page_group_by_mobility_disabled: bool,
    pub totalram_pages: u64,
    pub totalhigh_pages: u64,
    pub nr_kernel_pages: u64,
    pub nr_all_pages: u64,
    pub(crate) reset_managed_pages_done: bool,
    /// `vm_event_states`, summed over CPUs.
    pub vm_events: VmEvents,
    /// `current->comm` used in allocator messages.
    pub current_comm: String,
    /// Kernel log lines produced by the allocator (bad page reports, allocation failures).
    pub kmsg: Vec<String>,
    /// The model's `CONFIG_DEBUG_VM`: off by default (the reference kernels are built
    /// without it), on in tests. When on, the boot frees highmem page by page through the
    /// boot pageset exactly as the kernel does (instead of the equivalent block frees), and
    /// boot frees re-validate every page of a block. The bad-page checks of
    /// `free_pages_prepare` / `free_pcppages_bulk` belong to the modelled (non-DEBUG_VM)
    /// kernel and always run; `debug_vm::check_node` is the invariant checker tests run.
    pub debug_vm: bool,
}

impl PgData {
    /// The node skeleton before `free_area_init` fills it.
    pub(crate) fn empty(nr_cpus: usize, pageblock_order: u32, mem_map: MemMap) -> Self {
        PgData {
            node_id: 0,
            node_zones: core::array::from_fn(|i| {
                Zone::new(ZoneType::ALL[i], nr_cpus, pageblock_order)
            }),
            nr_zones: 0,
            node_start_pfn: 0,
            node_spanned_pages: 0,
            node_present_pages: 0,
            zonelist: Vec::new(),
            mem_map,
            vm_stat: NodeStats::default(),
            totalreserve_pages: 0,
            kswapd_failures: 0,
            kswapd_wakeups: 0,
            reclaimd: Default::default(),
            lru_fbatches: vec![Default::default(); nr_cpus],
            pageblock_order,
            nr_cpus,
            thp_enabled: true,
            init_on_alloc: true,
            max_mapnr: 0,
            movable_zone: ZoneType::HighMem,
            zone_model: ZoneModel::I386,
            dma_reserve: 0,
            memory: Vec::new(),
            first_deferred_pfn: None,
            sysctl: VmSysctl::default(),
            gfp_allowed_mask: GFP_BOOT_MASK,
            page_group_by_mobility_disabled: false,
            totalram_pages: 0,
            totalhigh_pages: 0,
            nr_kernel_pages: 0,
            nr_all_pages: 0,
            reset_managed_pages_done: false,
            vm_events: VmEvents::default(),
            current_comm: String::from("swapper/0"),
            kmsg: Vec::new(),
            debug_vm: false,
        }
    }

    pub fn zone(&self, z: ZoneType) -> &Zone {
        &self.node_zones[z as usize]
    }
    /// The node's zone numbers, in order.
    pub fn zone_types(&self) -> &'static [ZoneType] {
        self.zone_model.zones()
    }
    /// The node's zones (`node_zones[0..MAX_NR_ZONES]`), in zone-number order.
    pub fn zones(&self) -> &[Zone] {
        &self.node_zones[..self.zone_model.nr_zones]
    }
    pub fn zone_mut_ref(&mut self, z: ZoneType) -> &mut Zone {
        &mut self.node_zones[z as usize]
    }
    /// `pgdat_end_pfn()`.
    pub fn node_end_pfn(&self) -> u64 {
        self.node_start_pfn + self.node_spanned_pages
    }
    /// `pageblock_nr_pages`.
    pub fn pageblock_nr_pages(&self) -> u64 {
        1 << self.pageblock_order
    }
    /// Number of pcp lists (`NR_PCP_LISTS`).
    pub fn nr_pcp_lists(&self) -> usize {
        if self.thp_enabled {
            NR_PCP_LISTS_MAX
        } else {
            NR_LOWORDER_PCP_LISTS
        }
    }
    /// `is_highmem()` of a zone of this node.
    pub fn is_highmem(&self, z: ZoneType) -> bool {
        self.zone_model.highmem && is_highmem_idx(z, self.movable_zone)
    }
    /// `gfp_zone()` with this architecture's `GFP_ZONE_TABLE`.
    #[inline(always)]
    pub fn gfp_zone(&self, gfp: crate::gfp::Gfp) -> ZoneType {
        crate::gfp::gfp_zone_in(self.zone_model.gfp_zone_table, gfp)
    }
    /// `node_page_state()`.
    pub fn node_page_state(&self, item: NodeStatItem) -> u64 {
        self.vm_stat[item].max(0) as u64
    }
    /// `mod_node_page_state()`.
    pub fn mod_node_page_state(&mut self, item: NodeStatItem, delta: i64) {
        self.vm_stat[item] += delta;
    }
    /// `mod_zone_page_state()`.
    pub fn mod_zone_page_state(&mut self, z: ZoneType, item: ZoneStatItem, delta: i64) {
        self.node_zones[z as usize].mod_page_state(item, delta);
    }
    /// `global_zone_page_state(NR_FREE_PAGES)`, i.e. `nr_free_pages()`.
    pub fn nr_free_pages(&self) -> u64 {
        self.node_zones
            .iter()
            .map(|z| z.page_state(ZoneStatItem::NrFreePages))
            .sum()
    }
    /// Free pages of the highmem zones (`nr_free_highpages()`).
    pub fn nr_free_highpages(&self) -> u64 {
        self.node_zones
            .iter()
            .filter(|z| self.is_highmem(z.zone_idx))
            .map(|z| z.page_state(ZoneStatItem::NrFreePages))
            .sum()
    }
    /// `pfn_valid()`: FLATMEM's `pfn < max_mapnr`, or SPARSEMEM's "its section has memory".
    pub fn pfn_valid(&self, pfn: u64) -> bool {
        let sec = self.zone_model.section_pages;
        if sec == 0 {
            return pfn < self.max_mapnr && self.mem_map.contains(machine::Pfn::new(pfn));
        }
        let (s, e) = (pfn & !(sec - 1), (pfn & !(sec - 1)) + sec);
        self.mem_map.contains(machine::Pfn::new(pfn))
            && self.memory.iter().any(|&(ms, me)| ms < e && s < me)
    }
    /// `pagetypeinfo_showblockcount_print()`: pageblocks of zone `z` by migratetype, visiting
    /// the zone from its start pfn in pageblock steps and skipping pfns whose descriptor is
    /// invalid or belongs to another zone (holes inside a zone count, as Unmovable).
    pub fn pageblock_counts(&self, z: ZoneType) -> [u64; MIGRATE_TYPES] {
        let zone = self.zone(z);
        let mut counts = [0u64; MIGRATE_TYPES];
        let mut pfn = zone.zone_start_pfn;
        while pfn < zone.zone_end_pfn() {
            if self.pfn_valid(pfn) && self.mem_map[machine::Pfn::new(pfn)].zonenum() == z {
                counts[zone.get_pageblock_migratetype(pfn) as usize] += 1;
            }
            pfn += zone.pageblock_nr_pages();
        }
        counts
    }

    /// Take the kernel log lines produced since the last call.
    pub fn take_kmsg(&mut self) -> Vec<String> {
        core::mem::take(&mut self.kmsg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_the_kernel_tables() {
        let z: Vec<_> = ZoneModel::I386.zones().iter().map(|z| z.name()).collect();
        assert_eq!(z, ["DMA", "Normal", "HighMem", "Movable"]);
        let m = ZoneModel::X86_64;
        let z: Vec<_> = m.zones().iter().map(|&z| m.name(z)).collect();
        assert_eq!(z, ["DMA", "DMA32", "Normal", "Movable", "Device"]);
        let m: Vec<_> = MigrateType::ALL.iter().map(|m| m.name()).collect();
        assert_eq!(
            m,
            [
                "Unmovable",
                "Movable",
                "Reclaimable",
                "HighAtomic",
                "Isolate"
            ]
        );
        assert_eq!(
            NodeStatItem::ALL.len(),
            crate::vmstat::NODE_STAT_NAMES.len()
        );
        for (i, n) in NodeStatItem::ALL.iter().enumerate() {
            assert_eq!(*n as usize, i);
        }
        for (i, n) in ZoneStatItem::ALL.iter().enumerate() {
            assert_eq!(*n as usize, i);
        }
        assert_eq!(NodeStatItem::NrSwapcache.name(), "nr_swapcached");
    }

    /// `TEXTS_FOR_ZONES` names a build's zones in its own zone-number order: the zone name in
    /// lower case, HighMem as "high".
    #[test]
    fn vmstat_zone_texts_follow_the_zone_numbers() {
        for m in [ZoneModel::I386, ZoneModel::X86_64] {
            let texts: Vec<String> = m
                .zones()
                .iter()
                .map(|&z| m.name(z).to_lowercase().replace("highmem", "high"))
                .collect();
            assert_eq!(m.vmstat.zone_texts, texts.as_slice());
        }
    }

    #[test]
    fn list_ids_decode_to_their_heads() {
        let z = Zone::new(ZoneType::Normal, 3, 9);
        for o in 0..MAX_ORDER as u32 {
            for mt in MigrateType::ALL {
                let id = free_list_id(o, mt);
                assert_eq!(*z.list_head(id), ListHead::new(id));
            }
        }
        for cpu in 0..3 {
            for p in 0..NR_PCP_LISTS_MAX {
                let id = pcp_list_id(cpu, p);
                assert_eq!(*z.list_head(id), ListHead::new(id));
            }
        }
    }

    #[test]
    fn usemap_rounds_to_longs() {
        // DMA zone [1, 4096) with 512-page blocks: 8 blocks * 4 bits = 32 bits = 4 bytes.
        assert_eq!(usemap_size(1, 4095, 9), 4);
        // 9 blocks need a second long.
        assert_eq!(usemap_size(0, 4097, 9), 8);
    }
}
