//! /proc/pagetypeinfo dumps: free-list lengths per zone, migrate type and order, then the
//! number of pageblocks of each migrate type per zone.
//!
//! The kernel caps each free-list count it prints (`>100000`); the cap is kept as the value
//! and flagged, so comparisons can tell a real count from a capped one.

use super::error::{ReferenceError, Src};
use super::sections::{node_zone_prefix, numbered, Section};
use serde::Serialize;

/// A `Node N, zone NAME, type TYPE counts…` line of /proc/pagetypeinfo.
#[derive(Clone, Debug, Serialize)]
pub struct PagetypeFree {
    pub line: usize,
    pub node: u32,
    pub zone: String,
    pub migratetype: String,
    /// Free-list lengths per order; a capped entry (`>100000`) holds the cap.
    pub counts: Vec<u64>,
    pub capped: Vec<bool>,
}

/// A `Node N, zone NAME counts…` line of the "Number of blocks type" table.
#[derive(Clone, Debug, Serialize)]
pub struct PagetypeBlocks {
    pub line: usize,
    pub node: u32,
    pub zone: String,
    pub counts: Vec<u64>,
}

/// A /proc/pagetypeinfo dump.
#[derive(Clone, Debug, Serialize)]
pub struct Pagetypeinfo {
    pub begin_line: usize,
    pub pageblock_order: u32,
    pub pages_per_block: u64,
    /// Migrate-type names of the block table header.
    pub block_types: Vec<String>,
    pub free: Vec<PagetypeFree>,
    pub blocks: Vec<PagetypeBlocks>,
}

pub(super) fn parse_pagetypeinfo(src: Src, s: &Section) -> Result<Pagetypeinfo, ReferenceError> {
    let mut p = Pagetypeinfo {
        begin_line: s.begin_line,
        pageblock_order: 0,
        pages_per_block: 0,
        block_types: Vec::new(),
        free: Vec::new(),
        blocks: Vec::new(),
    };
    for (n, line) in numbered(s) {
        if line.trim().is_empty() || line.starts_with("Free pages count per migrate type at order")
        {
            continue;
        } else if let Some(v) = line.strip_prefix("Page block order:") {
            p.pageblock_order = src.num(n, "page block order", v)?;
        } else if let Some(v) = line.strip_prefix("Pages per block:") {
            p.pages_per_block = src.num(n, "pages per block", v)?;
        } else if let Some(v) = line.strip_prefix("Number of blocks type") {
            p.block_types = v.split_whitespace().map(str::to_string).collect();
        } else {
            let (node, rest) = node_zone_prefix(src, n, line)?;
            if let Some((zone, rest)) = rest.split_once(", type") {
                let mut words = rest.split_whitespace();
                let migratetype = words
                    .next()
                    .ok_or_else(|| src.err(n, "missing migrate type"))?
                    .to_string();
                let mut counts = Vec::new();
                let mut capped = Vec::new();
                for w in words {
                    let (cap, digits) = match w.strip_prefix('>') {
                        Some(d) => (true, d),
                        None => (false, w),
                    };
                    counts.push(src.num(n, "free count", digits)?);
                    capped.push(cap);
                }
                p.free.push(PagetypeFree {
                    line: n,
                    node,
                    zone: zone.trim().to_string(),
                    migratetype,
                    counts,
                    capped,
                });
            } else {
                let mut words = rest.split_whitespace();
                let zone = words
                    .next()
                    .ok_or_else(|| src.err(n, "missing zone name"))?
                    .to_string();
                let counts = words
                    .map(|w| src.num(n, "block count", w))
                    .collect::<Result<_, _>>()?;
                p.blocks.push(PagetypeBlocks {
                    line: n,
                    node,
                    zone,
                    counts,
                });
            }
        }
    }
    Ok(p)
}
