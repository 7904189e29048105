//! Snapshots of the running simulated kernel, for the formatters of this module.
//!
//! The formatters take plain snapshots so that the same code prints both the real kernel's
//! numbers (in the fidelity tests) and the model's. This file reads the model: zones, pcp
//! lists, free lists, pageblocks, counters and sysctls of a booted [`Kernel`].

use super::*;
use crate::boot::Kernel;
use crate::mmzone::{MigrateType, PgData, Zone};

/// Every /proc file the model can show, by the name `highmem proc` takes.
pub const PROC_FILES: &[&str] = &[
    "meminfo",
    "zoneinfo",
    "buddyinfo",
    "pagetypeinfo",
    "vmstat",
    "vmallocinfo",
    "slabinfo",
    "sys/vm/min_free_kbytes",
    "sys/vm/lowmem_reserve_ratio",
    "sys/vm/watermark_scale_factor",
    "sys/vm/watermark_boost_factor",
    "sys/vm/percpu_pagelist_high_fraction",
    "sys/vm/overcommit_memory",
    "sys/vm/overcommit_ratio",
    "sys/vm/admin_reserve_kbytes",
    "sys/vm/user_reserve_kbytes",
    "sys/vm/extfrag_threshold",
    "sys/vm/stat_interval",
];

/// `zone_page_state()` of every zone item.
fn zone_stats(z: &Zone) -> ZoneStats {
    let mut s = ZoneStats::default();
    for item in ZoneStatItem::ALL {
        s[item] = z.page_state(item);
    }
    s
}

/// `zone_numa_event_state()` of every NUMA item.
fn numa_events(z: &Zone) -> NumaStats {
    let mut s = NumaStats::default();
    for item in NumaStatItem::ALL {
        s[item] = z.numa_event_state(item);
    }
    s
}

/// `node_page_state()` of every node item.
fn node_stats(node: &PgData) -> NodeStats {
    let mut s = NodeStats::default();
    for item in NodeStatItem::ALL {
        s[item] = node.node_page_state(item);
    }
    s
}

fn hpage_pmd_nr(k: &Kernel) -> u64 {
    if k.config.pae {
        512
    } else {
        1024
    }
}

/// /proc/meminfo.
pub fn meminfo(k: &Kernel) -> MeminfoSnapshot {
    let mut zs = ZoneStats::default();
    for z in k.node.zones() {
        for (item, v) in zone_stats(z).iter() {
            zs[item] += v;
        }
    }
    MeminfoSnapshot {
        pae: k.config.pae,
        no_highmem: k.config.highmem == crate::config::Highmem::NoHighmem,
        totalram_pages: k.node.totalram_pages,
        totalhigh_pages: k.node.totalhigh_pages,
        free_highpages: k.node.nr_free_highpages(),
        zone_stats: zs,
        node_stats: node_stats(&k.node),
        totalreserve_pages: k.node.totalreserve_pages,
        low_wmark_pages_sum: k.node.zones().iter().map(|z| z.low_wmark_pages()).sum(),
        overcommit_ratio: meminfo::DEFAULT_OVERCOMMIT_RATIO,
        vmalloc_total_bytes: k.layout.vmalloc_end.as_u64() - k.layout.vmalloc_start.as_u64(),
        vmalloc_nr_pages: k.vmap.nr_vmalloc_pages,
        pcpu_nr_pages: k.percpu_pages,
        hugetlb: HugetlbSnapshot::default_hstate(k.config.pae),
        direct_pages_4k: k.direct_pages.pages_4k,
        direct_pages_large: k.direct_pages.pages_large,
        committed_as_pages: k.vm_memory_committed(),
        ..Default::default()
    }
}

/// /proc/zoneinfo.
pub fn zoneinfo(k: &Kernel) -> ZoneinfoSnapshot {
    zoneinfo_of(&k.node, hpage_pmd_nr(k))
}

/// /proc/zoneinfo of a node on its own: every zone number of its model, populated or not.
pub fn zoneinfo_of(node: &PgData, hpage_pmd_nr: u64) -> ZoneinfoSnapshot {
    let nr_zones = node.zone_model.nr_zones;
    let zones = node
        .zones()
        .iter()
        .map(|z| ZoneinfoZone {
            name: z.name.to_string(),
            vm_stat: zone_stats(z),
            numa_events: numa_events(z),
            watermark_min: z.watermark[0],
            watermark_low: z.watermark[1],
            watermark_high: z.watermark[2],
            watermark_boost: z.watermark_boost,
            spanned_pages: z.spanned_pages,
            present_pages: z.present_pages,
            managed_pages: z.managed_pages,
            cma_pages: 0,
            lowmem_reserve: z.lowmem_reserve[..nr_zones].to_vec(),
            pagesets: z
                .per_cpu_pageset
                .iter()
                .enumerate()
                .map(|(cpu, p)| PagesetSnapshot {
                    cpu: cpu as u32,
                    count: p.count,
                    high: p.high,
                    batch: p.batch,
                    stat_threshold: z.stat_threshold,
                })
                .collect(),
            zone_start_pfn: z.zone_start_pfn,
        })
        .collect();
    ZoneinfoSnapshot {
        config: node.zone_model.vmstat,
        hpage_pmd_nr,
        nodes: vec![ZoneinfoNode {
            node_id: 0,
            node_stats: node_stats(node),
            kswapd_failures: node.kswapd_failures,
            zones,
        }],
    }
}

/// /proc/buddyinfo.
pub fn buddyinfo(k: &Kernel) -> BuddyinfoSnapshot {
    buddyinfo_of(&k.node)
}

/// /proc/buddyinfo of a node on its own (the x86_64 boot, which stops at the page
/// allocator).
pub fn buddyinfo_of(node: &PgData) -> BuddyinfoSnapshot {
    let zones = node
        .zones()
        .iter()
        .map(|z| {
            let mut nr_free = [0u64; MAX_ORDER];
            for (o, n) in nr_free.iter_mut().enumerate() {
                *n = z.free_area[o].nr_free;
            }
            BuddyinfoZone {
                name: z.name.to_string(),
                populated: z.is_populated(),
                nr_free,
            }
        })
        .collect();
    BuddyinfoSnapshot {
        nodes: vec![BuddyinfoNode { node_id: 0, zones }],
    }
}

/// /proc/pagetypeinfo.
pub fn pagetypeinfo(k: &Kernel) -> PagetypeinfoSnapshot {
    pagetypeinfo_of(&k.node)
}

/// /proc/pagetypeinfo of a node on its own.
pub fn pagetypeinfo_of(node: &PgData) -> PagetypeinfoSnapshot {
    let map = &node.mem_map;
    let zones = node
        .zones()
        .iter()
        .map(|z| {
            let mut free_count = [[0u64; MAX_ORDER]; MIGRATE_TYPES];
            for (mt_idx, row) in free_count.iter_mut().enumerate() {
                let mt = MigrateType::from_index(mt_idx);
                for (o, n) in row.iter_mut().enumerate() {
                    *n = z.free_list_len(map, o, mt);
                }
            }
            let block_count = node.pageblock_counts(z.zone_idx);
            PagetypeinfoZone {
                name: z.name.to_string(),
                populated: z.is_populated(),
                free_count,
                block_count,
            }
        })
        .collect();
    PagetypeinfoSnapshot {
        pageblock_order: node.pageblock_order,
        nodes: vec![PagetypeinfoNode {
            node_id: 0,
            has_memory: true,
            zones,
        }],
    }
}

/// /proc/vmstat.
pub fn vmstat(k: &Kernel) -> VmstatSnapshot {
    let m = meminfo(k);
    let (dirty_threshold, dirty_background_threshold) = global_dirty_limits(k);
    let mut numa = NumaStats::default();
    for z in k.node.zones() {
        for (item, v) in numa_events(z).iter() {
            numa[item] += v;
        }
    }
    VmstatSnapshot {
        config: k.node.zone_model.vmstat,
        hpage_pmd_nr: hpage_pmd_nr(k),
        zone_stats: m.zone_stats,
        numa_events: numa,
        node_stats: m.node_stats,
        events: k.node.vm_events.clone(),
        dirty_threshold,
        dirty_background_threshold,
    }
}

/// `vm_dirty_ratio` and `dirty_background_ratio` defaults (percent of dirtyable memory).
const VM_DIRTY_RATIO: u64 = 20;
const DIRTY_BACKGROUND_RATIO: u64 = 10;

/// `global_dirty_limits()` (mm/page-writeback.c) as a non-realtime reader sees them.
///
/// Dirtyable memory is the free pages above `totalreserve_pages` plus the file LRU; with
/// `vm_highmem_is_dirtyable` = 0 (the default) what high memory contributes — its free
/// pages above the high watermark and its file LRU — is taken out again, because page-cache
/// writers must not fill low memory on behalf of highmem. The kernel adds 1 so the result is
/// never 0, and computes the ratios in PAGE_SIZE fixed point.
pub fn global_dirty_limits(k: &Kernel) -> (u64, u64) {
    use crate::vmstat::ZoneStatItem as Z;
    let node = &k.node;
    let free = node.nr_free_pages();
    let mut x = free - free.min(node.totalreserve_pages);
    let file = |item: crate::mmzone::NodeStatItem| node.node_page_state(item);
    x += file(crate::mmzone::NodeStatItem::NrInactiveFile);
    x += file(crate::mmzone::NodeStatItem::NrActiveFile);
    let mut high = 0u64;
    for z in node.zones().iter().filter(|z| node.is_highmem(z.zone_idx)) {
        if !z.is_populated() {
            continue;
        }
        let mut nr = z.page_state(Z::NrFreePages);
        nr -= nr.min(z.high_wmark_pages());
        nr += z.page_state(Z::NrZoneInactiveFile) + z.page_state(Z::NrZoneActiveFile);
        high += nr;
    }
    x -= high.min(x);
    let available = x + 1;
    let page = machine::PAGE_SIZE;
    let thresh = (VM_DIRTY_RATIO * page / 100) * available / page;
    let mut bg = (DIRTY_BACKGROUND_RATIO * page / 100) * available / page;
    if bg >= thresh {
        bg = thresh / 2;
    }
    (thresh, bg)
}

/// The /proc/sys/vm files.
pub fn sysctl(k: &Kernel) -> VmSysctlSnapshot {
    let s = &k.node.sysctl;
    VmSysctlSnapshot {
        min_free_kbytes: s.min_free_kbytes,
        lowmem_reserve_ratio: s.lowmem_reserve_ratio[..k.node.zone_model.nr_zones].to_vec(),
        watermark_scale_factor: s.watermark_scale_factor,
        watermark_boost_factor: s.watermark_boost_factor,
        percpu_pagelist_high_fraction: s.percpu_pagelist_high_fraction,
        overcommit_memory: 0,
        overcommit_ratio: meminfo::DEFAULT_OVERCOMMIT_RATIO as i32,
        admin_reserve_kbytes: k.admin_reserve_kbytes,
        user_reserve_kbytes: k.user_reserve_kbytes,
        extfrag_threshold: 500,
        stat_interval_secs: 1,
    }
}

/// The /proc files of a node on its own: what the x86_64 boot, which stops at the page
/// allocator, can show (meminfo needs more than the node).
pub const NODE_PROC_FILES: &[&str] = &[
    "zoneinfo",
    "buddyinfo",
    "pagetypeinfo",
    "sys/vm/min_free_kbytes",
    "sys/vm/lowmem_reserve_ratio",
    "sys/vm/watermark_scale_factor",
];

/// The text of `/proc/<name>` for a node on its own ([`NODE_PROC_FILES`]).
pub fn read_node(node: &PgData, name: &str) -> Option<String> {
    Some(match name.trim_start_matches("/proc/") {
        "zoneinfo" => format_zoneinfo(&zoneinfo_of(node, node.pageblock_nr_pages())),
        "buddyinfo" => format_buddyinfo(&buddyinfo_of(node)),
        "pagetypeinfo" => format_pagetypeinfo(&pagetypeinfo_of(node)),
        "sys/vm/min_free_kbytes" => format!("{}\n", node.sysctl.min_free_kbytes),
        "sys/vm/lowmem_reserve_ratio" => {
            let ratios = &node.sysctl.lowmem_reserve_ratio[..node.zone_model.nr_zones];
            format_dointvec(&ratios.iter().map(|&r| i64::from(r)).collect::<Vec<_>>())
        }
        "sys/vm/watermark_scale_factor" => format!("{}\n", node.sysctl.watermark_scale_factor),
        _ => return None,
    })
}

/// The text of `/proc/<name>` (e.g. "meminfo", "sys/vm/min_free_kbytes"), if the model has it.
pub fn read(k: &Kernel, name: &str) -> Option<String> {
    let name = name.trim_start_matches("/proc/");
    Some(match name {
        "meminfo" => format_meminfo(&meminfo(k)),
        "zoneinfo" => format_zoneinfo(&zoneinfo(k)),
        "buddyinfo" => format_buddyinfo(&buddyinfo(k)),
        "pagetypeinfo" => format_pagetypeinfo(&pagetypeinfo(k)),
        "vmstat" => format_vmstat(&vmstat(k)),
        "vmallocinfo" => vmallocinfo::format_vmallocinfo(&vmallocinfo::vmallocinfo(k)),
        "slabinfo" => super::format_slabinfo(&super::slabinfo::slabinfo(k)),
        other => return sysctl(k).read(&format!("/proc/{other}")),
    })
}
