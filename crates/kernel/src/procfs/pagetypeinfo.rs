//! /proc/pagetypeinfo (mm/vmstat.c `pagetypeinfo_show`).
//!
//! Per node with memory: the pageblock size, then the free-list lengths of every populated
//! zone split by migrate type and order, then how many pageblocks carry each migrate type.
//! The kernel walks each free list under the zone lock, so it stops counting at 100000 and
//! prints `>100000`; the snapshot carries true lengths and the cap is applied here.

use super::{MAX_ORDER, MIGRATETYPE_NAMES, MIGRATE_TYPES};
use serde::Serialize;
use std::fmt::Write;

/// Free-list walks stop at this many entries.
pub const FREE_LIST_COUNT_CAP: u64 = 100_000;

/// One zone's free lists and pageblock types.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PagetypeinfoZone {
    pub name: String,
    /// Unpopulated zones are skipped by the file.
    pub populated: bool,
    /// Length of `free_area[order].free_list[migratetype]`, indexed `[migratetype][order]`.
    pub free_count: [[u64; MAX_ORDER]; MIGRATE_TYPES],
    /// Pageblocks of the zone whose migrate type is each of `MIGRATETYPE_NAMES`.
    pub block_count: [u64; MIGRATE_TYPES],
}

/// One online node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PagetypeinfoNode {
    pub node_id: u32,
    /// `node_state(nid, N_MEMORY)`: memoryless nodes print nothing.
    pub has_memory: bool,
    pub zones: Vec<PagetypeinfoZone>,
}

/// The whole of /proc/pagetypeinfo.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PagetypeinfoSnapshot {
    /// `pageblock_order`: 9 with PAE (2 MiB huge pages), 10 without.
    pub pageblock_order: u32,
    pub nodes: Vec<PagetypeinfoNode>,
}

/// The text of /proc/pagetypeinfo.
pub fn format_pagetypeinfo(s: &PagetypeinfoSnapshot) -> String {
    let mut out = String::new();
    let o = &mut out;
    for node in s.nodes.iter().filter(|n| n.has_memory) {
        let zones = || node.zones.iter().filter(|z| z.populated);
        let _ = writeln!(o, "Page block order: {}", s.pageblock_order);
        let _ = writeln!(o, "Pages per block:  {}", 1u64 << s.pageblock_order);
        o.push('\n');

        // pagetypeinfo_showfree
        let _ = write!(o, "{:<43} ", "Free pages count per migrate type at order");
        for order in 0..MAX_ORDER {
            let _ = write!(o, "{order:>6} ");
        }
        o.push('\n');
        for zone in zones() {
            for (mtype, counts) in zone.free_count.iter().enumerate() {
                let _ = write!(
                    o,
                    "Node {:>4}, zone {:>8}, type {:>12} ",
                    node.node_id, zone.name, MIGRATETYPE_NAMES[mtype]
                );
                for &count in counts {
                    if count >= FREE_LIST_COUNT_CAP {
                        let _ = write!(o, ">{FREE_LIST_COUNT_CAP:>6} ");
                    } else {
                        let _ = write!(o, "{count:>6} ");
                    }
                }
                o.push('\n');
            }
        }

        // pagetypeinfo_showblockcount
        let _ = write!(o, "\n{:<23}", "Number of blocks type ");
        for name in MIGRATETYPE_NAMES {
            let _ = write!(o, "{name:>12} ");
        }
        o.push('\n');
        for zone in zones() {
            let _ = write!(o, "Node {}, zone {:>8} ", node.node_id, zone.name);
            for count in zone.block_count {
                let _ = write!(o, "{count:>12} ");
            }
            o.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_widths_and_cap() {
        let mut zone = PagetypeinfoZone {
            name: "HighMem".into(),
            populated: true,
            ..Default::default()
        };
        zone.free_count[1][0] = 250_000;
        zone.block_count[1] = 1606;
        let s = PagetypeinfoSnapshot {
            pageblock_order: 9,
            nodes: vec![PagetypeinfoNode {
                node_id: 0,
                has_memory: true,
                zones: vec![zone],
            }],
        };
        let text = format_pagetypeinfo(&s);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "Page block order: 9");
        assert_eq!(lines[1], "Pages per block:  512");
        assert!(lines[3].starts_with("Free pages count per migrate type at order       0      1 "));
        assert!(lines[5].starts_with("Node    0, zone  HighMem, type      Movable >100000      0 "));
        assert_eq!(lines[10], "Number of blocks type     Unmovable      Movable  Reclaimable   HighAtomic      Isolate ");
        assert_eq!(lines[11], "Node 0, zone  HighMem            0         1606            0            0            0 ");
    }

    #[test]
    fn memoryless_node_prints_nothing() {
        let s = PagetypeinfoSnapshot {
            pageblock_order: 10,
            nodes: vec![PagetypeinfoNode {
                node_id: 1,
                has_memory: false,
                zones: vec![],
            }],
        };
        assert_eq!(format_pagetypeinfo(&s), "");
    }
}
