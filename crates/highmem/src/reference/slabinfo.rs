//! /proc/slabinfo dumps (version 2.1): the two header lines, then one line per cache with
//! its object geometry and slab counts. SLUB prints zeros for the SLAB-only tunables.

use super::error::{ReferenceError, Src};
use super::sections::{numbered, Section};
use super::RefRun;
use serde::Serialize;

/// The header line every 6.1 slabinfo starts with.
pub const SLABINFO_VERSION_LINE: &str = "slabinfo - version: 2.1";

/// One cache line of /proc/slabinfo.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SlabinfoLine {
    pub line: usize,
    pub name: String,
    pub active_objs: u64,
    pub num_objs: u64,
    pub objsize: u32,
    pub objperslab: u32,
    pub pagesperslab: u32,
    pub active_slabs: u64,
    pub num_slabs: u64,
}

/// Parses one /proc/slabinfo section.
pub(super) fn parse_slabinfo(src: Src, s: &Section) -> Result<Vec<SlabinfoLine>, ReferenceError> {
    let mut out = Vec::new();
    let mut lines = numbered(s);
    match lines.next() {
        Some((_, SLABINFO_VERSION_LINE)) => {}
        Some((n, l)) => return Err(src.err(n, format!("not a slabinfo 2.1 header: {l:?}"))),
        None => return Err(src.err(s.begin_line, "empty slabinfo")),
    }
    for (n, line) in lines {
        if line.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        // name 5 numbers : tunables 3 : slabdata 3
        if f.len() != 16 || f[6] != ":" || f[7] != "tunables" || f[11] != ":" || f[12] != "slabdata"
        {
            return Err(src.err(n, format!("bad slabinfo line: {line:?}")));
        }
        out.push(SlabinfoLine {
            line: n,
            name: f[0].to_string(),
            active_objs: src.num(n, "active_objs", f[1])?,
            num_objs: src.num(n, "num_objs", f[2])?,
            objsize: src.num(n, "objsize", f[3])?,
            objperslab: src.num(n, "objperslab", f[4])?,
            pagesperslab: src.num(n, "pagesperslab", f[5])?,
            active_slabs: src.num(n, "active_slabs", f[13])?,
            num_slabs: src.num(n, "num_slabs", f[14])?,
        });
    }
    Ok(out)
}

impl RefRun {
    /// Every /proc/slabinfo dump of the run, in file order.
    pub fn slabinfo(&self) -> Result<Vec<Vec<SlabinfoLine>>, ReferenceError> {
        let src = Src { path: &self.path };
        self.sections("/proc/slabinfo")
            .map(|s| parse_slabinfo(src, s))
            .collect()
    }
}
