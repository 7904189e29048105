//! /proc/meminfo dumps: `Label: value [kB]` lines, kept in file order.
//!
//! The labels are kept as printed (`Active(anon)`, `HugePages_Total`), so a test can look
//! a figure up by the name the real file uses; whether a line had the ` kB` unit is kept
//! too, since meminfo's format differs per line.

use super::error::{ReferenceError, Src};
use super::sections::{numbered, Section};
use serde::Serialize;

/// One `Label: value [kB]` line of /proc/meminfo.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MeminfoEntry {
    pub label: String,
    pub value: u64,
    /// The line ends in ` kB`.
    pub kb: bool,
}

/// A /proc/meminfo dump.
#[derive(Clone, Debug, Serialize)]
pub struct Meminfo {
    pub begin_line: usize,
    pub entries: Vec<MeminfoEntry>,
}

impl Meminfo {
    /// The value of `label` (without the colon): kB for most lines, a count for HugePages_*.
    pub fn get(&self, label: &str) -> Option<u64> {
        self.entries
            .iter()
            .find(|e| e.label == label)
            .map(|e| e.value)
    }
}

pub(super) fn parse_meminfo(src: Src, s: &Section) -> Result<Meminfo, ReferenceError> {
    let mut entries = Vec::new();
    for (n, line) in numbered(s) {
        let (label, rest) = line
            .split_once(':')
            .ok_or_else(|| src.err(n, "meminfo line without ':'"))?;
        let rest = rest.trim();
        let (value, kb) = match rest.strip_suffix(" kB") {
            Some(v) => (v, true),
            None => (rest, false),
        };
        entries.push(MeminfoEntry {
            label: label.to_string(),
            value: src.num(n, label, value)?,
            kb,
        });
    }
    Ok(Meminfo {
        begin_line: s.begin_line,
        entries,
    })
}
