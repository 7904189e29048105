//! /proc/vmstat dumps: `name value` lines, kept in file order so a test can compare the
//! order of the counters as well as their values.

use super::error::{ReferenceError, Src};
use super::sections::{numbered, Section};
use serde::Serialize;

/// A /proc/vmstat dump, in file order.
#[derive(Clone, Debug, Serialize)]
pub struct Vmstat {
    pub begin_line: usize,
    pub entries: Vec<(String, u64)>,
}

impl Vmstat {
    pub fn get(&self, name: &str) -> Option<u64> {
        self.entries
            .iter()
            .find(|(n, _)| n == name)
            .map(|&(_, v)| v)
    }
}

pub(super) fn parse_vmstat(src: Src, s: &Section) -> Result<Vmstat, ReferenceError> {
    let mut entries = Vec::new();
    for (n, line) in numbered(s) {
        let (name, value) = line
            .split_once(' ')
            .ok_or_else(|| src.err(n, "vmstat line without value"))?;
        entries.push((name.to_string(), src.num(n, name, value)?));
    }
    Ok(Vmstat {
        begin_line: s.begin_line,
        entries,
    })
}
