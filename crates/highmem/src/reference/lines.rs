//! Single lines of the console log: the printk timestamp, the `Memory:`, `Built … zonelists`
//! and `percpu: Embedded` boot lines, the workload's `PROGRESS` lines, and `key=value` lists.
//!
//! These carry figures the model must reproduce (available and reserved memory, the
//! zonelist page estimate, the per-CPU unit size) that no /proc file repeats. A line that
//! does not parse yields `None`; the caller names the file and line in its error.

use serde::Serialize;
use std::collections::BTreeMap;

/// `Memory: %luK/%luK available (…)` from mem_init_print_info().
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MemoryLine {
    pub available_kb: u64,
    pub total_kb: u64,
    pub kernel_code_kb: u64,
    pub rwdata_kb: u64,
    pub rodata_kb: u64,
    pub init_kb: u64,
    pub bss_kb: u64,
    pub reserved_kb: u64,
    pub cma_reserved_kb: u64,
    pub highmem_kb: Option<u64>,
}

/// `Built %u zonelists, mobility grouping %s.  Total pages: %ld`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ZonelistsLine {
    pub zonelists: u32,
    pub mobility_grouping: bool,
    pub total_pages: u64,
}

/// `percpu: Embedded %zu pages/cpu s%zu r%zu d%zu u%zu`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PercpuLine {
    pub pages_per_cpu: u64,
    pub static_size: u64,
    pub reserved_size: u64,
    pub dyn_size: u64,
    pub unit_size: u64,
}

/// A `PROGRESS key=value …` line of the shm workload.
#[derive(Clone, Debug, Serialize)]
pub struct Progress {
    pub line: usize,
    pub fields: BTreeMap<String, String>,
}

impl Progress {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields.get(key).map(String::as_str)
    }
    /// An integer field (kB figures, counts; `VmPTE_child1=-1` before the first child).
    pub fn int(&self, key: &str) -> Option<i64> {
        self.get(key)?.parse().ok()
    }
}

/// The text after the first `[ seconds.micros]` printk timestamp of `line`.
pub fn strip_timestamp(line: &str) -> Option<&str> {
    let mut from = 0;
    while let Some(open) = line[from..].find('[') {
        let start = from + open;
        if let Some(rest) = timestamp_end(&line[start + 1..]) {
            return Some(rest.strip_prefix(' ').unwrap_or(rest));
        }
        from = start + 1;
    }
    None
}

/// After a `[`: spaces, digits, `.`, digits, `]`; returns what follows the `]`.
fn timestamp_end(s: &str) -> Option<&str> {
    let s = s.trim_start_matches(' ');
    let int = s.len() - s.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let s = s[int..].strip_prefix('.')?;
    let frac = s.len() - s.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    if int == 0 || frac == 0 {
        return None;
    }
    s[frac..].strip_prefix(']')
}

pub(super) fn key_values(s: &str) -> BTreeMap<String, String> {
    s.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn kb_value(s: &str) -> Option<u64> {
    s.trim().strip_suffix('K')?.parse().ok()
}

pub(super) fn parse_memory_line(l: &str) -> Option<MemoryLine> {
    let rest = l.strip_prefix("Memory: ")?;
    let (avail, rest) = rest.split_once('/')?;
    let (total, rest) = rest.split_once(" available (")?;
    let items = rest.strip_suffix(')')?;
    let mut by_label = BTreeMap::new();
    for item in items.split(", ") {
        let (value, label) = item.split_once(' ')?;
        by_label.insert(label, kb_value(value)?);
    }
    let get = |label: &str| by_label.get(label).copied();
    Some(MemoryLine {
        available_kb: kb_value(avail)?,
        total_kb: kb_value(total)?,
        kernel_code_kb: get("kernel code")?,
        rwdata_kb: get("rwdata")?,
        rodata_kb: get("rodata")?,
        init_kb: get("init")?,
        bss_kb: get("bss")?,
        reserved_kb: get("reserved")?,
        cma_reserved_kb: get("cma-reserved")?,
        highmem_kb: get("highmem"),
    })
}

pub(super) fn parse_zonelists_line(l: &str) -> Option<ZonelistsLine> {
    let rest = l.strip_prefix("Built ")?;
    let (zonelists, rest) = rest.split_once(" zonelists, mobility grouping ")?;
    let (grouping, rest) = rest.split_once(".  Total pages: ")?;
    Some(ZonelistsLine {
        zonelists: zonelists.parse().ok()?,
        mobility_grouping: match grouping {
            "on" => true,
            "off" => false,
            _ => return None,
        },
        total_pages: rest.trim().parse().ok()?,
    })
}

pub(super) fn parse_percpu_line(l: &str) -> Option<PercpuLine> {
    let rest = l.strip_prefix("percpu: Embedded ")?;
    let (pages, rest) = rest.split_once(" pages/cpu ")?;
    let mut fields = BTreeMap::new();
    for w in rest.split_whitespace() {
        let (tag, value) = w.split_at(1);
        fields.insert(tag, value.parse::<u64>().ok()?);
    }
    Some(PercpuLine {
        pages_per_cpu: pages.parse().ok()?,
        static_size: *fields.get("s")?,
        reserved_size: *fields.get("r")?,
        dyn_size: *fields.get("d")?,
        unit_size: *fields.get("u")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(strip_timestamp("[   12.345678] x [mem]"), Some("x [mem]"));
        assert_eq!(strip_timestamp("ok[    0.000000] Linux"), Some("Linux"));
        assert_eq!(strip_timestamp("[mem 0x0-0x1] reserved"), None);
    }
}
