//! /proc/vmstat (mm/vmstat.c `vmstat_start`/`vmstat_show`).
//!
//! One `name value` line per counter of `vmstat_text[]`: the global zone counters, the global
//! node counters (THP items in huge pages), the two dirty-writeback limits, then the event
//! counters summed over CPUs, with pgpgin/pgpgout turned from sectors into kB. A deprecated
//! `nr_unstable 0` closes the file so old readers still find it.

use super::{NodeStatItem, NodeStats, VmEventItem, VmEvents, ZoneStats};
use serde::Serialize;
use std::fmt::Write;

/// What /proc/vmstat reads.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct VmstatSnapshot {
    /// `HPAGE_PMD_NR`: 512 with PAE, 1024 without.
    pub hpage_pmd_nr: u64,
    /// `global_zone_page_state()` of every zone item.
    pub zone_stats: ZoneStats,
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
    for item in NodeStatItem::ALL {
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
        let shown = match item {
            VmEventItem::Pgpgin | VmEventItem::Pgpgout => value / 2,
            _ => value,
        };
        let _ = writeln!(o, "{} {}", item.name(), shown);
    }
    o.push_str("nr_unstable 0\n");
    out
}

#[cfg(test)]
mod tests {
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
    }
}
