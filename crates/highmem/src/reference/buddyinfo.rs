//! /proc/buddyinfo dumps: one line per populated zone, the free_area counts per order.

use super::error::{ReferenceError, Src};
use super::sections::{node_zone_prefix, numbered, Section};
use serde::Serialize;

/// One line of /proc/buddyinfo.
#[derive(Clone, Debug, Serialize)]
pub struct BuddyinfoZone {
    pub line: usize,
    pub node: u32,
    pub name: String,
    pub nr_free: Vec<u64>,
}

/// A /proc/buddyinfo dump.
#[derive(Clone, Debug, Serialize)]
pub struct Buddyinfo {
    pub begin_line: usize,
    pub zones: Vec<BuddyinfoZone>,
}

pub(super) fn parse_buddyinfo(src: Src, s: &Section) -> Result<Buddyinfo, ReferenceError> {
    let mut zones = Vec::new();
    for (n, line) in numbered(s) {
        let (node, rest) = node_zone_prefix(src, n, line)?;
        let mut words = rest.split_whitespace();
        let name = words
            .next()
            .ok_or_else(|| src.err(n, "missing zone name"))?
            .to_string();
        let nr_free = words
            .map(|w| src.num(n, "free count", w))
            .collect::<Result<_, _>>()?;
        zones.push(BuddyinfoZone {
            line: n,
            node,
            name,
            nr_free,
        });
    }
    Ok(Buddyinfo {
        begin_line: s.begin_line,
        zones,
    })
}
