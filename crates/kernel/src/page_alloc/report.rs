//! The allocator's reports: `warn_alloc()` and the Mem-Info block of `__show_mem()`.
//!
//! A failed allocation prints one header line (task, order, gfp mask with its `%pGg` names,
//! nodemask and cpuset) and then the memory summary: global counters, the node's counters,
//! one line per zone with free pages, watermarks and pcp totals, the lowmem reserve, and the
//! free blocks per order with the migrate types present. The lines are returned, never
//! printed; a non-NUMA kernel prints no "Node 0 " before the zone lines.

use crate::gfp::{format_gfp_mode, Gfp};
use crate::mmzone::{
    MigrateType, NodeStatItem, PgData, ZoneStatItem, ZoneType, MAX_ORDER, MIGRATE_TYPES,
};

/// Pages to kB.
fn k(pages: u64) -> u64 {
    pages << 2
}

impl PgData {
    /// Sum a zone counter over all zones (`global_zone_page_state`).
    fn global_zone_state(&self, item: ZoneStatItem) -> u64 {
        self.node_zones.iter().map(|z| z.page_state(item)).sum()
    }

    /// `__show_free_areas()` for zones up to `max_zone_idx`, from `cpu`'s point of view.
    pub fn show_free_areas(&self, max_zone_idx: ZoneType, cpu: usize) -> Vec<String> {
        use NodeStatItem as N;
        let n = |i| self.node_page_state(i);
        let mut out = Vec::new();
        let shown = |z: ZoneType| self.zone(z).is_populated() && z <= max_zone_idx;
        let free_pcp: u64 = self
            .zone_types()
            .iter()
            .filter(|&&z| shown(z))
            .map(|&z| self.zone(z).pcp_count())
            .sum();

        out.push(format!(
            "active_anon:{} inactive_anon:{} isolated_anon:{}",
            n(N::NrActiveAnon),
            n(N::NrInactiveAnon),
            n(N::NrIsolatedAnon)
        ));
        out.push(format!(
            " active_file:{} inactive_file:{} isolated_file:{}",
            n(N::NrActiveFile),
            n(N::NrInactiveFile),
            n(N::NrIsolatedFile)
        ));
        out.push(format!(
            " unevictable:{} dirty:{} writeback:{}",
            n(N::NrUnevictable),
            n(N::NrFileDirty),
            n(N::NrWriteback)
        ));
        out.push(format!(
            " slab_reclaimable:{} slab_unreclaimable:{}",
            n(N::NrSlabReclaimableB),
            n(N::NrSlabUnreclaimableB)
        ));
        out.push(format!(
            " mapped:{} shmem:{} pagetables:{}",
            n(N::NrFileMapped),
            n(N::NrShmem),
            n(N::NrPagetable)
        ));
        out.push(format!(
            " sec_pagetables:{} bounce:{}",
            n(N::NrSecondaryPagetable),
            self.global_zone_state(ZoneStatItem::NrBounce)
        ));
        out.push(format!(
            " kernel_misc_reclaimable:{}",
            n(N::NrKernelMiscReclaimable)
        ));
        out.push(format!(
            " free:{} free_pcp:{} free_cma:{}",
            self.global_zone_state(ZoneStatItem::NrFreePages),
            free_pcp,
            self.global_zone_state(ZoneStatItem::NrFreeCmaPages)
        ));

        let node_has_managed_zones = self
            .zone_types()
            .iter()
            .any(|&z| z <= max_zone_idx && self.zone(z).managed_pages != 0);
        if node_has_managed_zones {
            let thp = if self.thp_enabled {
                format!(
                    " shmem_thp: {}kB shmem_pmdmapped: {}kB anon_thp: {}kB",
                    k(n(N::NrShmemThps)),
                    k(n(N::NrShmemPmdmapped)),
                    k(n(N::NrAnonThps))
                )
            } else {
                String::new()
            };
            out.push(format!(
                "Node {} active_anon:{}kB inactive_anon:{}kB active_file:{}kB inactive_file:{}kB \
                 unevictable:{}kB isolated(anon):{}kB isolated(file):{}kB mapped:{}kB dirty:{}kB \
                 writeback:{}kB shmem:{}kB{} writeback_tmp:{}kB kernel_stack:{}kB pagetables:{}kB \
                 sec_pagetables:{}kB all_unreclaimable? {}",
                self.node_id,
                k(n(N::NrActiveAnon)),
                k(n(N::NrInactiveAnon)),
                k(n(N::NrActiveFile)),
                k(n(N::NrInactiveFile)),
                k(n(N::NrUnevictable)),
                k(n(N::NrIsolatedAnon)),
                k(n(N::NrIsolatedFile)),
                k(n(N::NrFileMapped)),
                k(n(N::NrFileDirty)),
                k(n(N::NrWriteback)),
                k(n(N::NrShmem)),
                thp,
                k(n(N::NrWritebackTemp)),
                n(N::NrKernelStackKb),
                k(n(N::NrPagetable)),
                k(n(N::NrSecondaryPagetable)),
                if self.kswapd_failures >= super::MAX_RECLAIM_RETRIES {
                    "yes"
                } else {
                    "no"
                }
            ));
        }

        for &z in self.zone_types().iter().filter(|&&z| shown(z)) {
            let zone = self.zone(z);
            let s = |i| zone.page_state(i);
            let local_pcp = zone
                .per_cpu_pageset
                .get(cpu)
                .map_or(0, |p| p.count.max(0) as u64);
            out.push(format!(
                "{} free:{}kB boost:{}kB min:{}kB low:{}kB high:{}kB reserved_highatomic:{}KB \
                 active_anon:{}kB inactive_anon:{}kB active_file:{}kB inactive_file:{}kB \
                 unevictable:{}kB writepending:{}kB present:{}kB managed:{}kB mlocked:{}kB \
                 bounce:{}kB free_pcp:{}kB local_pcp:{}kB free_cma:{}kB",
                zone.name,
                k(s(ZoneStatItem::NrFreePages)),
                k(zone.watermark_boost),
                k(zone.min_wmark_pages()),
                k(zone.low_wmark_pages()),
                k(zone.high_wmark_pages()),
                k(zone.nr_reserved_highatomic),
                k(s(ZoneStatItem::NrZoneActiveAnon)),
                k(s(ZoneStatItem::NrZoneInactiveAnon)),
                k(s(ZoneStatItem::NrZoneActiveFile)),
                k(s(ZoneStatItem::NrZoneInactiveFile)),
                k(s(ZoneStatItem::NrZoneUnevictable)),
                k(s(ZoneStatItem::NrZoneWritePending)),
                k(zone.present_pages),
                k(zone.managed_pages),
                k(s(ZoneStatItem::NrMlock)),
                k(s(ZoneStatItem::NrBounce)),
                k(zone.pcp_count()),
                k(local_pcp),
                k(s(ZoneStatItem::NrFreeCmaPages)),
            ));
            let reserve: String = zone.lowmem_reserve[..self.zone_model.nr_zones]
                .iter()
                .map(|r| format!(" {r}"))
                .collect();
            out.push(format!("lowmem_reserve[]:{reserve}"));
        }

        for &z in self.zone_types().iter().filter(|&&z| shown(z)) {
            let zone = self.zone(z);
            let mut line = format!("{}: ", zone.name);
            let mut total = 0u64;
            for order in 0..MAX_ORDER {
                let area = &zone.free_area[order];
                let nr = area.nr_free;
                total += nr << order;
                line.push_str(&format!("{}*{}kB ", nr, 4u64 << order));
                if nr != 0 {
                    let types: String = (0..MIGRATE_TYPES)
                        .filter(|&t| !area.free_list[t].is_empty())
                        .map(|t| MigrateType::ALL[t].letter())
                        .collect();
                    line.push_str(&format!("({types}) "));
                }
            }
            line.push_str(&format!("= {}kB", k(total)));
            out.push(line);
        }

        // hugetlb_show_meminfo_node(): no huge pages are reserved in this model.
        out.push(format!(
            "Node {} hugepages_total=0 hugepages_free=0 hugepages_surp=0 hugepages_size={}kB",
            self.node_id,
            4u64 << self.pageblock_order
        ));
        out.push(format!("{} total pagecache pages", n(N::NrFilePages)));
        // show_swap_cache_info(): no swap devices in this model.
        out.push(format!("{} pages in swap cache", n(N::NrSwapcache)));
        out.push(String::from("Free swap  = 0kB"));
        out.push(String::from("Total swap = 0kB"));
        out
    }

    /// `__show_mem()`: "Mem-Info:", the free areas, and the RAM / highmem / reserved totals.
    pub fn show_mem(&self, max_zone_idx: ZoneType, cpu: usize) -> Vec<String> {
        let mut out = vec![String::from("Mem-Info:")];
        out.extend(self.show_free_areas(max_zone_idx, cpu));
        let (mut total, mut reserved, mut highmem) = (0u64, 0u64, 0u64);
        for zone in self.node_zones.iter().filter(|z| z.is_populated()) {
            total += zone.present_pages;
            reserved += zone.present_pages.saturating_sub(zone.managed_pages);
            if self.is_highmem(zone.zone_idx) {
                highmem += zone.present_pages;
            }
        }
        out.push(format!("{total} pages RAM"));
        out.push(format!("{highmem} pages HighMem/MovableOnly"));
        out.push(format!("{reserved} pages reserved"));
        out.push(String::from("0 pages hwpoisoned"));
        out
    }

    /// `warn_alloc()`: the header and the memory summary for the zones the mask allows.
    /// The kernel also dumps the stack; the model has none to dump. Nothing is reported with
    /// __GFP_NOWARN, or for a DMA request on a machine without DMA memory.
    pub(crate) fn warn_alloc(&self, gfp: Gfp, order: u32, cpu: usize) -> Vec<String> {
        if gfp.contains(Gfp::NOWARN)
            || (gfp.contains(Gfp::DMA) && !self.zone(ZoneType::Dma).is_managed())
        {
            return Vec::new();
        }
        let mut out = vec![format!(
            "{}: page allocation failure: order:{}, mode:{}, nodemask=(null),cpuset=/,mems_allowed=0",
            self.current_comm,
            order,
            format_gfp_mode(gfp)
        )];
        out.extend(self.show_mem(self.gfp_zone(gfp), cpu));
        out
    }
}
