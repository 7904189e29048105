//! /proc/zoneinfo dumps: per zone its watermarks, spans, `protection` (lowmem_reserve),
//! counters and per-CPU pagesets.
//!
//! zoneinfo prints the node's counters inside the node's first populated zone and omits the
//! counters and pagesets of empty zones, so the parser follows the file's sections (header,
//! per-node stats, zone, zone stats, pagesets) rather than assuming a fixed shape. The
//! derived sums (`totalreserve_pages`, Σ low watermarks) are computed the kernel's way.

use super::error::{ReferenceError, Src};
use super::sections::{node_zone_prefix, numbered, Section};
use serde::Serialize;

/// One CPU's pageset in a zoneinfo zone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Pageset {
    pub cpu: u32,
    pub count: i32,
    pub high: i32,
    pub batch: i32,
    /// `vm stats threshold` printed after this CPU (SMP kernels).
    pub stat_threshold: Option<i32>,
}

/// One zone of a /proc/zoneinfo dump.
#[derive(Clone, Debug, Serialize)]
pub struct ZoneinfoZone {
    /// 1-based line of the `Node N, zone NAME` header.
    pub line: usize,
    pub node: u32,
    pub name: String,
    /// The node counters, printed inside the node's first populated zone only.
    pub node_stats: Vec<(String, u64)>,
    pub free: u64,
    pub boost: u64,
    /// Watermarks as printed (boost included).
    pub min: u64,
    pub low: u64,
    pub high: u64,
    pub spanned: u64,
    pub present: u64,
    pub managed: u64,
    pub cma: u64,
    pub protection: Vec<i64>,
    /// Zone counters (populated zones only).
    pub stats: Vec<(String, u64)>,
    pub pagesets: Vec<Pageset>,
    pub node_unreclaimable: Option<bool>,
    pub start_pfn: Option<u64>,
}

impl ZoneinfoZone {
    /// A zone counter by name.
    pub fn stat(&self, name: &str) -> Option<u64> {
        self.stats.iter().find(|(n, _)| n == name).map(|&(_, v)| v)
    }
    /// A node counter by name (only in the node's first populated zone).
    pub fn node_stat(&self, name: &str) -> Option<u64> {
        self.node_stats
            .iter()
            .find(|(n, _)| n == name)
            .map(|&(_, v)| v)
    }
    pub fn populated(&self) -> bool {
        self.present != 0
    }
}

/// A /proc/zoneinfo dump.
#[derive(Clone, Debug, Serialize)]
pub struct Zoneinfo {
    pub begin_line: usize,
    pub zones: Vec<ZoneinfoZone>,
}

impl Zoneinfo {
    /// The first zone called `name`.
    pub fn zone(&self, name: &str) -> Option<&ZoneinfoZone> {
        self.zones.iter().find(|z| z.name == name)
    }
    /// Σ low watermarks over every zone, populated or not, as `si_mem_available` sums them.
    pub fn low_wmark_sum(&self) -> u64 {
        self.zones.iter().map(|z| z.low).sum()
    }
    /// What `calculate_totalreserve_pages()` derives from these zones: per zone, its largest
    /// lowmem_reserve plus its high watermark, capped at its managed pages.
    pub fn totalreserve_pages(&self) -> u64 {
        self.zones
            .iter()
            .map(|z| {
                let max_reserve = z.protection.iter().copied().max().unwrap_or(0).max(0) as u64;
                (max_reserve + z.high).min(z.managed)
            })
            .sum()
    }
}

pub(super) fn parse_zoneinfo(src: Src, s: &Section) -> Result<Zoneinfo, ReferenceError> {
    #[derive(PartialEq)]
    enum Mode {
        Header,
        NodeStats,
        Zone,
        ZoneStats,
        Pagesets,
    }
    let mut zones: Vec<ZoneinfoZone> = Vec::new();
    let mut mode = Mode::Header;
    for (n, line) in numbered(s) {
        if line.starts_with("Node ") {
            let (node, name) = node_zone_prefix(src, n, line)?;
            zones.push(ZoneinfoZone {
                line: n,
                node,
                name: name.trim().to_string(),
                node_stats: Vec::new(),
                free: 0,
                boost: 0,
                min: 0,
                low: 0,
                high: 0,
                spanned: 0,
                present: 0,
                managed: 0,
                cma: 0,
                protection: Vec::new(),
                stats: Vec::new(),
                pagesets: Vec::new(),
                node_unreclaimable: None,
                start_pfn: None,
            });
            mode = Mode::Header;
            continue;
        }
        let zone = zones
            .last_mut()
            .ok_or_else(|| src.err(n, "zoneinfo line before any 'Node' header"))?;
        let t = line.trim();
        let (key, value) = match t.rsplit_once(' ') {
            Some((k, v)) => (k.trim_end(), v),
            None => (t, ""),
        };
        match key {
            _ if t == "per-node stats" => mode = Mode::NodeStats,
            "pages free" => {
                zone.free = src.num(n, key, value)?;
                mode = Mode::Zone;
            }
            "boost" | "min" | "low" | "high" | "spanned" | "present" | "managed" | "cma"
                if mode == Mode::Zone =>
            {
                let v = src.num(n, key, value)?;
                match key {
                    "boost" => zone.boost = v,
                    "min" => zone.min = v,
                    "low" => zone.low = v,
                    "high" => zone.high = v,
                    "spanned" => zone.spanned = v,
                    "present" => zone.present = v,
                    "managed" => zone.managed = v,
                    _ => zone.cma = v,
                }
            }
            _ if t.starts_with("protection: (") => {
                let inner = t
                    .strip_prefix("protection: (")
                    .and_then(|r| r.strip_suffix(')'))
                    .ok_or_else(|| src.err(n, "bad protection line"))?;
                zone.protection = inner
                    .split(',')
                    .map(|v| src.num(n, "protection", v))
                    .collect::<Result<_, _>>()?;
                mode = Mode::ZoneStats;
            }
            _ if t == "pagesets" => mode = Mode::Pagesets,
            "cpu:" if mode == Mode::Pagesets => zone.pagesets.push(Pageset {
                cpu: src.num(n, "cpu", value)?,
                count: 0,
                high: 0,
                batch: 0,
                stat_threshold: None,
            }),
            "count:" | "high:" | "batch:" | "vm stats threshold:" if mode == Mode::Pagesets => {
                let p = zone
                    .pagesets
                    .last_mut()
                    .ok_or_else(|| src.err(n, format!("{key} before any cpu")))?;
                let v = src.num(n, key, value)?;
                match key {
                    "count:" => p.count = v,
                    "high:" => p.high = v,
                    "batch:" => p.batch = v,
                    _ => p.stat_threshold = Some(v),
                }
            }
            "node_unreclaimable:" => {
                zone.node_unreclaimable = Some(src.num::<u32>(n, key, value)? != 0)
            }
            "start_pfn:" => zone.start_pfn = Some(src.num(n, key, value)?),
            _ if mode == Mode::NodeStats && !key.contains(' ') => {
                zone.node_stats
                    .push((key.to_string(), src.num(n, key, value)?));
            }
            _ if mode == Mode::ZoneStats && !key.contains(' ') => {
                zone.stats.push((key.to_string(), src.num(n, key, value)?));
            }
            _ => return Err(src.err(n, format!("unexpected zoneinfo line {line:?}"))),
        }
    }
    Ok(Zoneinfo {
        begin_line: s.begin_line,
        zones,
    })
}
