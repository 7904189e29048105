//! /proc/zoneinfo (mm/vmstat.c `zoneinfo_show_print`).
//!
//! Every zone of every online node is listed, populated or not, because the protection
//! (lowmem_reserve) line of an empty zone is still meaningful. The node's counters are printed
//! once, inside its first populated zone. Unpopulated zones stop after the protection line;
//! populated ones go on with their counters (with CONFIG_NUMA, the zone's NUMA events after
//! them), one pageset per online CPU, and the node's reclaim state. The watermarks printed
//! include the boost.

use super::{NodeStats, NumaStats, VmstatConfig, ZoneStatItem, ZoneStats, MAX_RECLAIM_RETRIES};
use serde::Serialize;
use std::fmt::Write;

/// One CPU's `per_cpu_pages` and its vmstat threshold for a zone.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PagesetSnapshot {
    pub cpu: u32,
    pub count: i32,
    pub high: i32,
    pub batch: i32,
    /// `per_cpu_zonestat.stat_threshold` (see `calculate_normal_threshold`).
    pub stat_threshold: i32,
}

/// One `struct zone`, as zoneinfo reads it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ZoneinfoZone {
    pub name: String,
    /// Zone counters; "pages free" is `vm_stat[NR_FREE_PAGES]`.
    pub vm_stat: ZoneStats,
    /// `zone_numa_event_state()` of every NUMA item (printed with CONFIG_NUMA).
    pub numa_events: NumaStats,
    /// `_watermark[WMARK_MIN/LOW/HIGH]`, without the boost.
    pub watermark_min: u64,
    pub watermark_low: u64,
    pub watermark_high: u64,
    pub watermark_boost: u64,
    pub spanned_pages: u64,
    /// A zone is populated when it has present pages.
    pub present_pages: u64,
    pub managed_pages: u64,
    pub cma_pages: u64,
    /// `lowmem_reserve[]`, one entry per zone number of the node (`MAX_NR_ZONES`: 4 on
    /// i386, 5 on x86_64 with ZONE_DEVICE).
    pub lowmem_reserve: Vec<i64>,
    /// One per online CPU, in CPU order (ignored for unpopulated zones).
    pub pagesets: Vec<PagesetSnapshot>,
    pub zone_start_pfn: u64,
}

impl ZoneinfoZone {
    /// `populated_zone()`.
    pub fn populated(&self) -> bool {
        self.present_pages != 0
    }
    /// `min_wmark_pages()`: base watermark plus boost.
    pub fn min_wmark_pages(&self) -> u64 {
        self.watermark_min + self.watermark_boost
    }
    /// `low_wmark_pages()`.
    pub fn low_wmark_pages(&self) -> u64 {
        self.watermark_low + self.watermark_boost
    }
    /// `high_wmark_pages()`.
    pub fn high_wmark_pages(&self) -> u64 {
        self.watermark_high + self.watermark_boost
    }
}

/// One online node (`pg_data_t`) and its zones, all `MAX_NR_ZONES` of them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ZoneinfoNode {
    pub node_id: u32,
    /// Node counters in pages (THP items in base pages; kernel stack in kB).
    pub node_stats: NodeStats,
    /// `pgdat->kswapd_failures`.
    pub kswapd_failures: u32,
    pub zones: Vec<ZoneinfoZone>,
}

/// The whole of /proc/zoneinfo.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ZoneinfoSnapshot {
    /// The build's entries (the node counters, the zones' NUMA events).
    pub config: VmstatConfig,
    /// `HPAGE_PMD_NR`: 512 with PAE, 1024 without; divides the THP node counters.
    pub hpage_pmd_nr: u64,
    pub nodes: Vec<ZoneinfoNode>,
}

/// The text of /proc/zoneinfo.
pub fn format_zoneinfo(s: &ZoneinfoSnapshot) -> String {
    let mut out = String::with_capacity(8192);
    for node in &s.nodes {
        let first_populated = node.zones.iter().position(ZoneinfoZone::populated);
        for (idx, zone) in node.zones.iter().enumerate() {
            format_zone(&mut out, s, node, zone, first_populated == Some(idx));
        }
    }
    out
}

fn format_zone(
    o: &mut String,
    s: &ZoneinfoSnapshot,
    node: &ZoneinfoNode,
    zone: &ZoneinfoZone,
    first_populated: bool,
) {
    let _ = write!(o, "Node {}, zone {:>8}", node.node_id, zone.name);
    if first_populated {
        o.push_str("\n  per-node stats");
        for item in s.config.node_items() {
            let value = node.node_stats.printed(item, s.hpage_pmd_nr);
            let _ = write!(o, "\n      {:<12} {}", item.name(), value);
        }
    }
    let _ = write!(
        o,
        "\n  pages free     {}\n        boost    {}\n        min      {}\n        low      {}\
         \n        high     {}\n        spanned  {}\n        present  {}\n        managed  {}\
         \n        cma      {}",
        zone.vm_stat[ZoneStatItem::NrFreePages],
        zone.watermark_boost,
        zone.min_wmark_pages(),
        zone.low_wmark_pages(),
        zone.high_wmark_pages(),
        zone.spanned_pages,
        zone.present_pages,
        zone.managed_pages,
        zone.cma_pages,
    );
    o.push_str("\n        protection: (");
    for (j, reserve) in zone.lowmem_reserve.iter().enumerate() {
        let sep = if j == 0 { "" } else { ", " };
        let _ = write!(o, "{sep}{reserve}");
    }
    o.push(')');

    if !zone.populated() {
        o.push('\n');
        return;
    }
    for (item, value) in zone.vm_stat.iter() {
        let _ = write!(o, "\n      {:<12} {}", item.name(), value);
    }
    if s.config.numa {
        for (item, value) in zone.numa_events.iter() {
            let _ = write!(o, "\n      {:<12} {}", item.name(), value);
        }
    }
    o.push_str("\n  pagesets");
    for pcp in &zone.pagesets {
        let _ = write!(
            o,
            "\n    cpu: {}\n              count: {}\n              high:  {}\n              batch: {}\
             \n  vm stats threshold: {}",
            pcp.cpu, pcp.count, pcp.high, pcp.batch, pcp.stat_threshold
        );
    }
    let _ = writeln!(
        o,
        "\n  node_unreclaimable:  {}\n  start_pfn:           {}",
        u32::from(node.kswapd_failures >= MAX_RECLAIM_RETRIES),
        zone.zone_start_pfn
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone(name: &str, present: u64) -> ZoneinfoZone {
        ZoneinfoZone {
            name: name.into(),
            present_pages: present,
            spanned_pages: present,
            managed_pages: present,
            lowmem_reserve: vec![0; 4],
            watermark_min: 32,
            watermark_low: 32,
            watermark_high: 32,
            pagesets: vec![PagesetSnapshot {
                cpu: 0,
                count: 3,
                high: 10,
                batch: 1,
                stat_threshold: 2,
            }],
            ..Default::default()
        }
    }

    #[test]
    fn unpopulated_zone_stops_after_protection() {
        let s = ZoneinfoSnapshot {
            hpage_pmd_nr: 512,
            nodes: vec![ZoneinfoNode {
                zones: vec![zone("Movable", 0)],
                ..Default::default()
            }],
            ..Default::default()
        };
        assert_eq!(
            format_zoneinfo(&s),
            "Node 0, zone  Movable\n  pages free     0\n        boost    0\n        min      32\
             \n        low      32\n        high     32\n        spanned  0\n        present  0\
             \n        managed  0\n        cma      0\n        protection: (0, 0, 0, 0)\n"
        );
    }

    /// amd64: NUMA balancing's node counters close the node's list; each populated zone's
    /// NUMA events follow its counters.
    #[test]
    fn amd64_numa_lines() {
        use super::super::{NodeStatItem, NumaStatItem};
        let mut node = ZoneinfoNode {
            zones: vec![zone("DMA", 100), zone("Device", 0)],
            ..Default::default()
        };
        node.zones[0].numa_events[NumaStatItem::NumaInterleaveHit] = 2;
        node.node_stats[NodeStatItem::PgpromoteSuccess] = 0;
        let amd64 = format_zoneinfo(&ZoneinfoSnapshot {
            config: VmstatConfig::X86_64,
            hpage_pmd_nr: 512,
            nodes: vec![node.clone()],
        });
        assert!(amd64.contains(
            "\n      nr_swapcached 0\n      pgpromote_success 0\n      pgpromote_candidate 0\n  pages free"
        ));
        assert!(amd64.contains(
            "\n      nr_free_cma  0\n      numa_hit     0\n      numa_miss    0\
             \n      numa_foreign 0\n      numa_interleave 2\n      numa_local   0\
             \n      numa_other   0\n  pagesets"
        ));
        assert_eq!(amd64.matches("numa_hit").count(), 1);
        let i386 = format_zoneinfo(&ZoneinfoSnapshot {
            hpage_pmd_nr: 512,
            nodes: vec![node],
            ..Default::default()
        });
        assert!(!i386.contains("numa") && !i386.contains("pgpromote"));
    }

    #[test]
    fn node_stats_only_in_first_populated_zone() {
        use super::super::NodeStatItem;
        let mut node = ZoneinfoNode {
            zones: vec![zone("DMA", 0), zone("Normal", 100), zone("HighMem", 100)],
            kswapd_failures: MAX_RECLAIM_RETRIES,
            ..Default::default()
        };
        node.node_stats[NodeStatItem::NrAnonThps] = 1024;
        node.zones[1].watermark_boost = 5;
        let text = format_zoneinfo(&ZoneinfoSnapshot {
            hpage_pmd_nr: 512,
            nodes: vec![node],
            ..Default::default()
        });
        assert_eq!(text.matches("per-node stats").count(), 1);
        let normal = text.find("zone   Normal").unwrap();
        assert!(text.find("per-node stats").unwrap() > normal);
        assert!(text.contains("\n      nr_anon_transparent_hugepages 2\n"));
        assert!(text.contains("\n      nr_mlock     0\n"));
        assert!(text.contains("\n        min      37\n"));
        assert!(text.contains("\n  vm stats threshold: 2\n  node_unreclaimable:  1\n"));
        assert_eq!(text.matches("  pagesets\n    cpu: 0\n").count(), 2);
    }
}
