//! /proc/buddyinfo (mm/vmstat.c `frag_show_print`).
//!
//! One line per populated zone: the number of free blocks (`free_area[order].nr_free`, all
//! migrate types together) at each order. It counts blocks, not pages: an order-10 entry of 3
//! is 3 × 1024 free pages.

use super::MAX_ORDER;
use serde::Serialize;
use std::fmt::Write;

/// One zone's free-block counts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct BuddyinfoZone {
    pub name: String,
    /// Unpopulated zones are skipped by the file.
    pub populated: bool,
    /// `free_area[order].nr_free` for orders 0..MAX_ORDER.
    pub nr_free: [u64; MAX_ORDER],
}

/// One online node and its zones.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct BuddyinfoNode {
    pub node_id: u32,
    pub zones: Vec<BuddyinfoZone>,
}

/// The whole of /proc/buddyinfo.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct BuddyinfoSnapshot {
    pub nodes: Vec<BuddyinfoNode>,
}

/// The text of /proc/buddyinfo.
pub fn format_buddyinfo(s: &BuddyinfoSnapshot) -> String {
    let mut out = String::new();
    for node in &s.nodes {
        for zone in node.zones.iter().filter(|z| z.populated) {
            let _ = write!(out, "Node {}, zone {:>8} ", node.node_id, zone.name);
            for nr_free in zone.nr_free {
                let _ = write!(out, "{nr_free:>6} ");
            }
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn populated_zones_only() {
        let mut nr_free = [0; MAX_ORDER];
        nr_free[10] = 178;
        let s = BuddyinfoSnapshot {
            nodes: vec![BuddyinfoNode {
                node_id: 0,
                zones: vec![
                    BuddyinfoZone {
                        name: "Normal".into(),
                        populated: true,
                        nr_free,
                    },
                    BuddyinfoZone {
                        name: "Movable".into(),
                        populated: false,
                        nr_free,
                    },
                ],
            }],
        };
        assert_eq!(
            format_buddyinfo(&s),
            "Node 0, zone   Normal      0      0      0      0      0      0      0      0      0      0    178 \n"
        );
    }
}
