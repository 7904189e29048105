//! /proc/vmstat (mm/vmstat.c `vmstat_start`/`vmstat_show`).
//!
//! One `name value` line per counter of `vmstat_text[]`: the global zone counters, with
//! CONFIG_NUMA the zones' NUMA events summed, the global node counters (THP items in huge
//! pages), the two dirty-writeback limits, then the event counters summed over CPUs, with
//! pgpgin/pgpgout turned from sectors into kB. A deprecated `nr_unstable 0` closes the file
//! so old readers still find it. Which entries exist, and the names of the zone-indexed
//! events, are the build's ([`VmstatConfig`]).

use super::{NodeStats, NumaStats, VmEventItem, VmEvents, VmstatConfig, ZoneStats};
use serde::Serialize;
use std::fmt::Write;

/// What /proc/vmstat reads.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct VmstatSnapshot {
    /// The build's entries.
    pub config: VmstatConfig,
    /// `HPAGE_PMD_NR`: 512 with PAE, 1024 without.
    pub hpage_pmd_nr: u64,
    /// `global_zone_page_state()` of every zone item.
    pub zone_stats: ZoneStats,
    /// `global_numa_event_state()`: every zone's NUMA events summed (CONFIG_NUMA).
    pub numa_events: NumaStats,
    /// `global_node_page_state_pages()` of every node item (THP items in base pages).
    pub node_stats: NodeStats,
    /// `global_dirty_limits()`: NR_DIRTY_THRESHOLD and NR_DIRTY_BG_THRESHOLD, in pages.
    pub dirty_threshold: u64,
    pub dirty_background_threshold: u64,
    /// `all_vm_events()`: event counters summed over online CPUs (pgpgin/pgpgout in sectors).
    pub events: VmEvents,
}

/// The text of /proc/vmstat.
pub fn format_vmstat(s: &VmstatSnapshot) -> String {
    let mut out = String::with_capacity(4096);
    let o = &mut out;
    for (item, value) in s.zone_stats.iter() {
        let _ = writeln!(o, "{} {}", item.name(), value);
    }
    if s.config.numa {
        for (item, value) in s.numa_events.iter() {
            let _ = writeln!(o, "{} {}", item.name(), value);
        }
    }
    for item in s.config.node_items() {
        let _ = writeln!(
            o,
            "{} {}",
            item.name(),
            s.node_stats.printed(item, s.hpage_pmd_nr)
        );
    }
    let _ = writeln!(o, "nr_dirty_threshold {}", s.dirty_threshold);
    let _ = writeln!(
        o,
        "nr_dirty_background_threshold {}",
        s.dirty_background_threshold
    );
    for (item, value) in s.events.iter() {
        let Some(name) = s.config.event_name(item) else {
            continue;
        };
        let shown = match item {
            VmEventItem::Pgpgin | VmEventItem::Pgpgout => value / 2,
            _ => value,
        };
        let _ = writeln!(o, "{name} {shown}");
    }
    o.push_str("nr_unstable 0\n");
    out
}

#[cfg(test)]
mod tests {
    use super::super::{NodeStatItem, NumaStatItem};
    use super::*;

    #[test]
    fn sectors_become_kb_and_file_ends_with_nr_unstable() {
        let mut s = VmstatSnapshot {
            hpage_pmd_nr: 1024,
            ..Default::default()
        };
        s.events[VmEventItem::Pgpgin] = 9;
        s.node_stats[NodeStatItem::NrFileThps] = 2048;
        let text = format_vmstat(&s);
        assert!(text.contains("\npgpgin 4\n"));
        assert!(text.contains("\nnr_file_hugepages 2\n"));
        assert!(text.starts_with("nr_free_pages 0\n"));
        assert!(text.ends_with("direct_map_level3_splits 0\nnr_unstable 0\n"));
        assert!(!text.contains("numa") && !text.contains("pgalloc_device"));
        assert!(text.contains("\npgalloc_high 0\n"));
    }

    /// The amd64 build: NUMA events after the zone counters, NUMA balancing's node counters
    /// last among the node's, the zone-indexed events named by DMA32's zones.
    #[test]
    fn amd64_layout() {
        let mut s = VmstatSnapshot {
            config: VmstatConfig::X86_64,
            hpage_pmd_nr: 512,
            ..Default::default()
        };
        s.numa_events[NumaStatItem::NumaHit] = 7;
        s.events[VmEventItem::PgallocNormal] = 3;
        s.node_stats[NodeStatItem::PgpromoteCandidate] = 1;
        let text = format_vmstat(&s);
        assert!(text.contains("\nnr_free_cma 0\nnuma_hit 7\nnuma_miss 0\n"));
        assert!(text.contains("\nnuma_other 0\nnr_inactive_anon 0\n"));
        assert!(text.contains(
            "\nnr_swapcached 0\npgpromote_success 0\npgpromote_candidate 1\nnr_dirty_threshold"
        ));
        assert!(text.contains("\npgalloc_dma 0\npgalloc_dma32 3\npgalloc_normal 0\n"));
        assert!(text.contains("\npgskip_movable 0\npgskip_device 0\npgfree"));
        assert!(text.contains("\nthp_scan_exceed_share_pte 0\nthp_split_pud 0\n"));
        assert!(!text.contains("_high "));
    }
}
