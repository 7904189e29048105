//! Building the node: zone spans, the memory map, and the boot-time hand-over of memory.
//!
//! `free_area_init` turns the architecture's zone limits and memblock's memory ranges into
//! zones (spanned / present pages, an estimate of managed pages that charges lowmem zones for
//! their share of `mem_map`), allocates `mem_map` and initialises every descriptor: pages in
//! memory get their zone and one reference, each memory pageblock starts Movable, and pages in
//! holes are marked Reserved. Nothing is free until the boot frees ranges into the buddy
//! allocator (`__free_pages_core`, `free_highmem_page`), after which pcp lists and
//! watermarks are set up (`setup_per_cpu_pageset`, `init_per_zone_wmark_min`).

use machine::Pfn;

use crate::mmzone::{
    MigrateType, PgData, ZoneModel, ZoneType, MAX_NR_ZONES, MAX_ORDER, MAX_ZONE_NUMBERS, NR_CPUS,
};
use crate::page::{MemMap, Page, PageFlags, LINK_NONE, MAX_LINK_PFN};

use super::free::FreeError;

/// What the architecture hands to `free_area_init` for the one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeConfig {
    /// `max_zone_pfn[]` as `zone_sizes_init` fills it: DMA = min(MAX_DMA_PFN, max_low_pfn),
    /// Normal = max_low_pfn, HighMem = max_pfn. The Movable entry is ignored (no
    /// `kernelcore=` support: ZONE_MOVABLE stays empty). A zone number past these (x86_64's
    /// ZONE_DEVICE) has a limit of 0, as `zone_sizes_init` leaves it: empty.
    pub max_zone_pfn: [u64; MAX_NR_ZONES],
    /// `memblock.memory` as sorted, non-overlapping `[start, end)` pfn ranges.
    pub memory: Vec<(u64, u64)>,
    /// Possible (= online) CPUs.
    pub nr_cpus: usize,
    /// 9 with PAE, 10 without (HUGETLB_PAGE order, capped at MAX_ORDER - 1).
    pub pageblock_order: u32,
    /// TRANSPARENT_HUGEPAGE: adds the pageblock-order pcp lists.
    pub thp: bool,
    /// What the zone numbers mean: i386's DMA / Normal / HighMem or x86_64's DMA / DMA32 /
    /// Normal (then `max_zone_pfn` is MAX_DMA_PFN, MAX_DMA32_PFN, max_pfn).
    pub zone_model: ZoneModel,
    /// `dma_reserve` (`memblock_find_dma_reserve`, x86_64 only): DMA-zone pages memblock
    /// holds at `free_area_init`, left out of the zone's first managed estimate.
    pub dma_reserve: u64,
}

/// Why a node could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InitError {
    #[error("no memory ranges")]
    NoMemory,
    #[error("memory range [{0:#x}, {1:#x}) is empty, unsorted or overlaps the previous one")]
    BadRange(u64, u64),
    #[error("pfn {0:#x} is beyond what the model's page lists can address")]
    PfnTooLarge(u64),
    #[error("{0} CPUs: between 1 and NR_CPUS ({NR_CPUS}) are supported")]
    BadCpuCount(usize),
    #[error("pageblock_order {0} must be between 1 and MAX_ORDER - 1")]
    BadPageblockOrder(u32),
}

fn mem_line(start_pfn: u64, end_pfn: u64) -> String {
    format!(
        "[mem {:#018x}-{:#018x}]",
        start_pfn << 12,
        (end_pfn << 12).wrapping_sub(1)
    )
}

impl PgData {
    /// `free_area_init()` for the single node: zone ranges, node totals, `mem_map`,
    /// `free_area_init_core` and `memmap_init`. Returns the node and the kernel's boot log
    /// lines ("Zone ranges:", "On node 0, zone DMA: 1 pages in unavailable ranges", ...).
    pub fn new(cfg: &NodeConfig) -> Result<(PgData, Vec<String>), InitError> {
        if cfg.memory.is_empty() {
            return Err(InitError::NoMemory);
        }
        let mut prev_end = 0;
        for &(s, e) in &cfg.memory {
            if s >= e || s < prev_end {
                return Err(InitError::BadRange(s, e));
            }
            prev_end = e;
        }
        if prev_end >= MAX_LINK_PFN {
            return Err(InitError::PfnTooLarge(prev_end));
        }
        if cfg.nr_cpus == 0 || cfg.nr_cpus > NR_CPUS {
            return Err(InitError::BadCpuCount(cfg.nr_cpus));
        }
        if cfg.pageblock_order == 0 || cfg.pageblock_order as usize >= MAX_ORDER {
            return Err(InitError::BadPageblockOrder(cfg.pageblock_order));
        }
        let mut log = Vec::new();

        // Record where the zone boundaries are.
        let mut lowest = [0u64; MAX_ZONE_NUMBERS];
        let mut highest = [0u64; MAX_ZONE_NUMBERS];
        let mut start_pfn = cfg.memory[0].0;
        for &z in cfg.zone_model.zones() {
            if z == ZoneType::Movable {
                continue;
            }
            let max_zone_pfn = cfg.max_zone_pfn.get(z as usize).copied().unwrap_or(0);
            let end_pfn = max_zone_pfn.max(start_pfn).min(MAX_LINK_PFN);
            lowest[z as usize] = start_pfn;
            highest[z as usize] = end_pfn;
            start_pfn = end_pfn;
        }
        // find_usable_zone_for_movable()
        let movable_zone = [ZoneType::HighMem, ZoneType::Normal, ZoneType::Dma]
            .into_iter()
            .find(|&z| highest[z as usize] > lowest[z as usize])
            .unwrap_or(ZoneType::Dma);

        log.push(String::from("Zone ranges:"));
        for &z in cfg.zone_model.zones() {
            if z == ZoneType::Movable {
                continue;
            }
            let (lo, hi) = (lowest[z as usize], highest[z as usize]);
            if lo == hi {
                log.push(format!("  {:<8} empty", cfg.zone_model.name(z)));
            } else {
                log.push(format!(
                    "  {:<8} {}",
                    cfg.zone_model.name(z),
                    mem_line(lo, hi)
                ));
            }
        }
        log.push(String::from("Movable zone start for each node"));
        log.push(String::from("Early memory node ranges"));
        for &(s, e) in &cfg.memory {
            log.push(format!("  node {:>3}: {}", 0, mem_line(s, e)));
        }

        // get_pfn_range_for_nid()
        let node_start = cfg.memory[0].0;
        let node_end = prev_end;
        log.push(format!(
            "Initmem setup node 0 {}",
            mem_line(node_start, node_end)
        ));

        let mem_map = MemMap::new(node_start, node_end);
        let mut pg = PgData::empty(cfg.nr_cpus, cfg.pageblock_order, mem_map);
        pg.thp_enabled = cfg.thp;
        pg.movable_zone = movable_zone;
        pg.zone_model = cfg.zone_model;
        pg.sysctl.lowmem_reserve_ratio = cfg.zone_model.lowmem_reserve_ratio;
        pg.dma_reserve = cfg.dma_reserve;
        for &z in cfg.zone_model.zones() {
            pg.node_zones[z as usize].name = cfg.zone_model.name(z);
        }
        pg.memory = cfg.memory.clone();
        pg.node_start_pfn = node_start;
        pg.max_mapnr = node_end;

        // calculate_node_totalpages()
        let mut total = 0;
        let mut real_total = 0;
        for &z in cfg.zone_model.zones() {
            let (lo, hi) = (lowest[z as usize], highest[z as usize]);
            let zs = node_start.clamp(lo, hi);
            let ze = node_end.clamp(lo, hi);
            let spanned = if ze < node_start || zs > node_end {
                0
            } else {
                ze.min(node_end) - zs.max(node_start)
            };
            let (zs, ze) = (zs.max(node_start), ze.min(node_end));
            let absent = absent_pages_in_range(&cfg.memory, zs, ze);
            let zone = &mut pg.node_zones[z as usize];
            zone.zone_start_pfn = if spanned != 0 { zs } else { 0 };
            zone.spanned_pages = spanned;
            zone.present_pages = spanned - absent.min(spanned);
            total += spanned;
            real_total += zone.present_pages;
        }
        pg.node_spanned_pages = total;
        pg.node_present_pages = real_total;

        pg.free_area_init_core();
        if cfg.zone_model.deferred_struct_page_init {
            pg.first_deferred_pfn = pg.defer_init_pfn();
        }
        pg.memmap_init(&mut log);
        Ok((pg, log))
    }

    /// `free_area_init_core()`: estimate managed pages and set up the empty zones.
    fn free_area_init_core(&mut self) {
        for &z in self.zone_types() {
            let highmem = self.is_highmem(z);
            let zone = &mut self.node_zones[z as usize];
            let size = zone.spanned_pages;
            let mut freesize = zone.present_pages;
            let memmap_pages = self.zone_model.calc_memmap_size(size, freesize);
            if !highmem && freesize >= memmap_pages {
                freesize -= memmap_pages;
            }
            // set_dma_reserve(): x86_64's count of memblock-reserved DMA pages (0 on i386).
            if z == ZoneType::Dma && freesize > self.dma_reserve {
                freesize -= self.dma_reserve;
            }
            if !highmem {
                self.nr_kernel_pages += freesize;
            } else if self.nr_kernel_pages > memmap_pages * 2 {
                self.nr_kernel_pages -= memmap_pages;
            }
            self.nr_all_pages += freesize;
            // zone_init_internals(): an approximate managed count until the boot frees.
            zone.managed_pages = freesize;
            if size == 0 {
                continue;
            }
            // setup_usemap(): one entry per pageblock from the aligned zone start; a fresh
            // bitmap reads as Unmovable (0).
            let nr = zone.pageblock_nr_pages();
            let blocks = (size + (zone.zone_start_pfn & (nr - 1))).div_ceil(nr);
            zone.pageblock_flags = vec![MigrateType::Unmovable; blocks as usize];
            // init_currently_empty_zone()
            self.nr_zones = self.nr_zones.max(z as usize + 1);
            zone.initialized = true;
        }
    }

    /// `memmap_init()`: initialise the descriptors of every memory range, zone by zone, and
    /// those of the holes before each range (Reserved).
    fn memmap_init(&mut self, log: &mut Vec<String>) {
        let mut hole_pfn = 0u64;
        let memory = self.memory.clone();
        let mut last_zone = ZoneType::Dma;
        let mut end_pfn = 0;
        for &(start, end) in &memory {
            end_pfn = end;
            for &z in self.zone_types() {
                if !self.zone(z).is_populated() {
                    continue;
                }
                // memmap_init_zone_range()
                let zone = self.zone(z);
                let (zs, ze) = (zone.zone_start_pfn, zone.zone_end_pfn());
                let (s, e) = (start.clamp(zs, ze), end.clamp(zs, ze));
                if s >= e {
                    continue;
                }
                self.memmap_init_range(z, s, e);
                if hole_pfn < s {
                    self.init_unavailable_range(hole_pfn, s, z, log);
                }
                hole_pfn = e;
                last_zone = z;
            }
        }
        if hole_pfn < end_pfn {
            self.init_unavailable_range(hole_pfn, end_pfn, last_zone, log);
        }
    }

    /// `memmap_init_range()` (MEMINIT_EARLY): fresh descriptors, Movable pageblocks up to
    /// `first_deferred_pfn` (`defer_init` stops the kernel's loop there; the model still
    /// writes the descriptors beyond, see `deferred.rs`). Every descriptor of the range gets
    /// the same value, written once into the zero-filled map.
    fn memmap_init_range(&mut self, z: ZoneType, start: u64, end: u64) {
        let mut fresh = Page::default();
        fresh.init_single(z);
        self.mem_map.fill(start, end, fresh);
        let nr = self.pageblock_nr_pages();
        let marked_end = self.first_deferred_pfn.map_or(end, |first| end.min(first));
        let mut pfn = start.next_multiple_of(nr);
        while pfn < marked_end {
            self.node_zones[z as usize].store_pageblock_migratetype(pfn, MigrateType::Movable);
            pfn += nr;
        }
    }

    /// `init_unavailable_range()`: holes get a descriptor in the zone that follows them, and
    /// PageReserved.
    fn init_unavailable_range(&mut self, spfn: u64, epfn: u64, z: ZoneType, log: &mut Vec<String>) {
        let nr = self.pageblock_nr_pages();
        let mut pgcnt = 0u64;
        let mut pfn = spfn;
        while pfn < epfn {
            let block_start = pfn & !(nr - 1);
            if !self.pfn_valid(block_start) {
                pfn = block_start + nr;
                continue;
            }
            let p = &mut self.mem_map[Pfn::new(pfn)];
            p.init_single(z);
            p.set(PageFlags::RESERVED);
            pgcnt += 1;
            pfn += 1;
        }
        if pgcnt != 0 {
            log.push(format!(
                "On node 0, zone {}: {} pages in unavailable ranges",
                self.zone_model.name(z),
                pgcnt
            ));
        }
    }

    /// `build_all_zonelists()` at boot: the fallback zonelist (populated zones, highest
    /// first) and the mobility-grouping decision. Returns the kernel's log line.
    pub fn build_all_zonelists(&mut self) -> String {
        self.zonelist = self
            .zone_types()
            .iter()
            .rev()
            .copied()
            .filter(|&z| self.zone(z).is_populated())
            .collect();
        let vm_total_pages =
            self.nr_free_zone_pages(self.gfp_zone(crate::gfp::GFP_HIGHUSER_MOVABLE));
        self.page_group_by_mobility_disabled =
            vm_total_pages < self.pageblock_nr_pages() * crate::mmzone::MIGRATE_TYPES as u64;
        format!(
            "Built 1 zonelists, mobility grouping {}.  Total pages: {}",
            if self.page_group_by_mobility_disabled {
                "off"
            } else {
                "on"
            },
            vm_total_pages
        )
    }

    /// `reserve_bootmem_region()`: mark a memblock-reserved pfn range PageReserved.
    pub fn reserve_bootmem_region(&mut self, start: Pfn, end: Pfn) {
        for pfn in start.as_u64()..end.as_u64() {
            if self.pfn_valid(pfn) {
                let p = &mut self.mem_map[Pfn::new(pfn)];
                p.lru_next = LINK_NONE;
                p.lru_prev = LINK_NONE;
                p.set(PageFlags::RESERVED);
            }
        }
    }

    /// `reset_all_zones_managed_pages()`: once, before the boot frees count pages as managed.
    pub fn reset_all_zones_managed_pages(&mut self) {
        if self.reset_managed_pages_done {
            return;
        }
        for z in &mut self.node_zones {
            z.managed_pages = 0;
        }
        self.reset_managed_pages_done = true;
    }

    /// `adjust_managed_page_count()`.
    pub fn adjust_managed_page_count(&mut self, pfn: Pfn, count: i64) {
        let Some(p) = self.mem_map.get(pfn) else {
            return;
        };
        let highmem = self.is_highmem(p.zonenum());
        let z = &mut self.node_zones[p.zonenum() as usize];
        z.managed_pages = z.managed_pages.saturating_add_signed(count);
        self.totalram_pages = self.totalram_pages.saturating_add_signed(count);
        if highmem {
            self.totalhigh_pages = self.totalhigh_pages.saturating_add_signed(count);
        }
    }

    /// `totalram_pages_add()` (memblock_free_all adds what it freed).
    pub fn totalram_pages_add(&mut self, count: i64) {
        self.totalram_pages = self.totalram_pages.saturating_add_signed(count);
    }

    /// The page-allocator half of i386 `mem_init()`: `set_highmem_pages_init()` (every free
    /// highmem page, one at a time, through the boot CPU's pageset) then `memblock_free_all()`
    /// (reserved ranges marked PageReserved, free lowmem below `max_low_pfn` in blocks, and
    /// the total added to `totalram_pages`). `free` and `reserved` are memblock's free and
    /// reserved ranges as `[start, end)` pfns. With DEFERRED_STRUCT_PAGE_INIT the deferred
    /// pages are freed here too, after `deferred_init_memmap`'s pageblock marks (see
    /// `deferred.rs`). Returns the kernel's log lines.
    pub fn mem_init_free(
        &mut self,
        free: &[(u64, u64)],
        reserved: &[(u64, u64)],
        max_low_pfn: u64,
    ) -> Result<Vec<String>, FreeError> {
        let mut log = Vec::new();
        // set_highmem_pages_init()
        self.reset_all_zones_managed_pages();
        for &z in self.zone_types() {
            if !self.is_highmem(z) {
                continue;
            }
            let (zs, ze) = (self.zone(z).zone_start_pfn, self.zone(z).zone_end_pfn());
            log.push(format!(
                "Initializing {} for node 0 ({zs:08x}:{ze:08x})",
                self.zone_model.name(z)
            ));
            for &(s, e) in free {
                let (s, e) = (s.clamp(zs, ze.max(zs)), e.clamp(zs, ze.max(zs)));
                // FLATMEM pfn_valid() is `pfn < max_mapnr`: a prefix of the range.
                let e = e.min(self.max_mapnr.max(s));
                if self.debug_vm || !self.boot_pageset_drains(z) {
                    for pfn in s..e {
                        self.free_highmem_page(Pfn::new(pfn))?;
                    }
                } else {
                    self.free_highmem_range(z, s, e)?;
                }
            }
        }
        // memblock_free_all()
        self.reset_all_zones_managed_pages();
        for &(s, e) in reserved {
            self.reserve_bootmem_region(Pfn::new(s), Pfn::new(e));
        }
        self.deferred_free_marks(free);
        let mut count = 0;
        for &(s, e) in free {
            let e = e.min(max_low_pfn);
            if s < e {
                count += self.__free_pages_memory(Pfn::new(s), Pfn::new(e))?;
            }
        }
        self.totalram_pages_add(count as i64);
        Ok(log)
    }

    /// memblock's `__free_pages_memory()`: free `[start, end)` as naturally aligned blocks of
    /// order `min(MAX_ORDER - 1, ffs(start))`, shrunk to fit, through `__free_pages_core`.
    /// Returns the number of pages freed (the caller adds them to `totalram_pages`).
    pub fn __free_pages_memory(&mut self, start: Pfn, end: Pfn) -> Result<u64, FreeError> {
        let (mut s, e) = (start.as_u64(), end.as_u64());
        let mut freed = 0;
        while s < e {
            let mut order = if s == 0 {
                MAX_ORDER as u32 - 1
            } else {
                s.trailing_zeros().min(MAX_ORDER as u32 - 1)
            };
            while s + (1 << order) > e {
                order -= 1;
            }
            self.__free_pages_core(Pfn::new(s), order)?;
            s += 1 << order;
            freed += 1 << order;
        }
        Ok(freed)
    }
}

/// `__absent_pages_in_range()`: pfns of `[start, end)` not covered by memory.
fn absent_pages_in_range(memory: &[(u64, u64)], start: u64, end: u64) -> u64 {
    if start >= end {
        return 0;
    }
    let mut absent = end - start;
    for &(s, e) in memory {
        let (s, e) = (s.clamp(start, end), e.clamp(start, end));
        absent -= e - s;
    }
    absent
}
