//! The `kinspect` block: what a helper read from the running kernel through /proc/kcore.
//!
//! It lists the kcore LOAD segments (vmalloc area, lowmem direct map), the image symbols, the
//! values of the kernel variables the layout depends on (`high_memory`, `max_low_pfn`,
//! `totalreserve_pages`…) and a walk of swapper_pg_dir merged into runs of alike mappings.
//! The model's layout and page tables are checked against these, so every line kind is
//! parsed strictly: an unknown one is an error rather than silently skipped.

use super::error::{ReferenceError, Src};
use super::lines::key_values;
use super::sections::{numbered, Section};
use serde::Serialize;
use std::collections::BTreeMap;

/// A `/proc/kcore` LOAD program header listed by kinspect.
#[derive(Clone, Debug, Serialize)]
pub struct KcoreLoad {
    pub start: u64,
    pub end: u64,
    pub paddr: u64,
}

/// A run of kernel virtual addresses mapped alike (`pt …`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WalkMapping {
    pub start: u64,
    pub end: u64,
    /// Level of the leaf entries: `pte`, `pmd` (PAE large page) or `pgd` (2-level large page).
    pub level: String,
    /// Flag columns as printed: `RW`/`ro`, `USR`, `PWT`, `PCD`, `PAT`/`PSE`, `GLB`, `NX`/`x`.
    pub flags: Vec<String>,
    /// Physical address of `start`.
    pub phys: u64,
    /// Physically contiguous (`linear`) or not (`scattered`).
    pub linear: bool,
}

impl WalkMapping {
    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }
}

/// A page-table page seen by the walk (`ptable …`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WalkTable {
    /// First virtual address the table maps.
    pub va: u64,
    pub phys: u64,
    pub present: u32,
    pub entries: u32,
    /// Text after `<==`, e.g. `pkmap_page_table (PKMAP_BASE)`.
    pub note: Option<String>,
}

/// One line of the swapper_pg_dir walk, in walk order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum WalkLine {
    /// A PAE top-level entry.
    Pgd {
        index: u32,
        entry: u64,
    },
    Map(WalkMapping),
    Table(WalkTable),
}

/// The `kinspect` block: kernel variables and the kernel page tables, read from /proc/kcore.
#[derive(Clone, Debug, Serialize)]
pub struct Kinspect {
    pub begin_line: usize,
    pub release: String,
    pub pae: bool,
    /// Kernel image symbols (runtime addresses).
    pub syms: BTreeMap<String, u64>,
    /// Kernel variables' values.
    pub vars: BTreeMap<String, u64>,
    /// Kernel variables' addresses.
    pub var_addrs: BTreeMap<String, u64>,
    pub kcore_loads: Vec<KcoreLoad>,
    pub walk: Vec<WalkLine>,
    /// Physical address of `pkmap_page_table`, from the walk's summary line.
    pub pkmap_page_table_phys: Option<u64>,
}

impl Kinspect {
    pub fn var(&self, name: &str) -> Option<u64> {
        self.vars.get(name).copied()
    }
    pub fn mappings(&self) -> impl Iterator<Item = &WalkMapping> {
        self.walk.iter().filter_map(|l| match l {
            WalkLine::Map(m) => Some(m),
            _ => None,
        })
    }
    pub fn tables(&self) -> impl Iterator<Item = &WalkTable> {
        self.walk.iter().filter_map(|l| match l {
            WalkLine::Table(t) => Some(t),
            _ => None,
        })
    }
}

/// `620K`, `14M`, `1G` → bytes.
fn parse_size(s: &str) -> Option<u64> {
    let (digits, shift) = match s.as_bytes().last()? {
        b'K' => (&s[..s.len() - 1], 10),
        b'M' => (&s[..s.len() - 1], 20),
        b'G' => (&s[..s.len() - 1], 30),
        _ => return None,
    };
    digits.parse::<u64>().ok().map(|v| v << shift)
}

pub(super) fn parse_kinspect(src: Src, s: &Section) -> Result<Kinspect, ReferenceError> {
    let mut k = Kinspect {
        begin_line: s.begin_line,
        release: String::new(),
        pae: false,
        syms: BTreeMap::new(),
        vars: BTreeMap::new(),
        var_addrs: BTreeMap::new(),
        kcore_loads: Vec::new(),
        walk: Vec::new(),
        pkmap_page_table_phys: None,
    };
    for (n, line) in numbered(s) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.first().copied() {
            None => {}
            Some("#") | Some("derived") | Some("_text") => {}
            Some("kinspect") if words.get(1) == Some(&"done") => {}
            Some("kinspect") => {
                let kv = key_values(line);
                k.release = kv
                    .get("release")
                    .cloned()
                    .ok_or_else(|| src.err(n, "kinspect lacks release="))?;
                k.pae = kv.get("pae").map(String::as_str) == Some("1");
            }
            Some("kcore") if words.get(1) == Some(&"phdr") => {}
            Some("kcore") => {
                // kcore LOAD vaddr 0xSTART-0xEND size … paddr 0xP
                let range = words
                    .get(3)
                    .ok_or_else(|| src.err(n, "kcore line without range"))?;
                let (a, b) = range
                    .split_once('-')
                    .ok_or_else(|| src.err(n, "bad kcore range"))?;
                let paddr = words
                    .last()
                    .ok_or_else(|| src.err(n, "kcore line without paddr"))?;
                k.kcore_loads.push(KcoreLoad {
                    start: src.hex(n, "kcore start", a)?,
                    end: src.hex(n, "kcore end", b)?,
                    paddr: src.hex(n, "kcore paddr", paddr)?,
                });
            }
            Some("sym") => {
                let (name, addr) = match words.as_slice() {
                    [_, name, addr] => (name, addr),
                    _ => return Err(src.err(n, "expected 'sym NAME 0xADDR'")),
                };
                k.syms.insert(name.to_string(), src.hex(n, name, addr)?);
            }
            Some("var") => {
                // var NAME @0xADDR = VALUE [(DECIMAL)]
                let (name, addr, value) = match words.as_slice() {
                    [_, name, addr, "=", value, ..] => (*name, *addr, *value),
                    _ => return Err(src.err(n, "expected 'var NAME @0xADDR = VALUE'")),
                };
                let addr = src.hex(n, "variable address", addr.trim_start_matches('@'))?;
                let v = if value.starts_with("0x") {
                    src.hex(n, name, value)?
                } else {
                    src.num(n, name, value)?
                };
                if let Some(dec) = words.get(5) {
                    let dec: u64 =
                        src.num(n, name, dec.trim_start_matches('(').trim_end_matches(')'))?;
                    if dec != v {
                        return Err(src.err(n, format!("{name}: hex and decimal values differ")));
                    }
                }
                k.vars.insert(name.to_string(), v);
                k.var_addrs.insert(name.to_string(), addr);
            }
            Some(w) if w.starts_with("pgd[") => {
                let index = w
                    .strip_prefix("pgd[")
                    .and_then(|r| r.strip_suffix(']'))
                    .unwrap_or_default();
                let entry = words
                    .get(2)
                    .ok_or_else(|| src.err(n, "pgd line without entry"))?;
                k.walk.push(WalkLine::Pgd {
                    index: src.num(n, "pgd index", index)?,
                    entry: src.hex(n, "pgd entry", entry)?,
                });
            }
            Some("pt") => k
                .walk
                .push(WalkLine::Map(parse_walk_mapping(src, n, &words)?)),
            Some("ptable") => k
                .walk
                .push(WalkLine::Table(parse_walk_table(src, n, line)?)),
            Some("pkmap_page_table") => {
                // pkmap_page_table = 0xV (phys 0xP)
                let phys = words
                    .last()
                    .map(|w| w.trim_end_matches(')'))
                    .unwrap_or_default();
                k.pkmap_page_table_phys = Some(src.hex(n, "pkmap_page_table phys", phys)?);
            }
            Some(other) => return Err(src.err(n, format!("unknown kinspect line kind {other:?}"))),
        }
    }
    if k.release.is_empty() {
        return Err(src.err(s.begin_line, "kinspect block without its header line"));
    }
    Ok(k)
}

fn parse_walk_mapping(src: Src, n: usize, words: &[&str]) -> Result<WalkMapping, ReferenceError> {
    // pt 0xSTART-0xEND SIZE LEVEL FLAGS… phys 0xPHYS linear|scattered
    let bad = || {
        src.err(
            n,
            "expected 'pt START-END SIZE LEVEL FLAGS… phys ADDR KIND'",
        )
    };
    let (range, size, level) = match words {
        [_, range, size, level, ..] => (range, size, level),
        _ => return Err(bad()),
    };
    let phys_at = words.iter().position(|w| *w == "phys").ok_or_else(bad)?;
    let (a, b) = range.split_once('-').ok_or_else(bad)?;
    let start = src.hex(n, "range start", a)?;
    let end = src.hex(n, "range end", b)?;
    let printed = parse_size(size).ok_or_else(|| src.err(n, format!("bad size {size:?}")))?;
    if end.checked_sub(start) != Some(printed) {
        return Err(src.err(n, format!("size {size} does not match the range")));
    }
    let phys = src.hex(n, "phys", words.get(phys_at + 1).ok_or_else(bad)?)?;
    let linear = match words.get(phys_at + 2).copied() {
        Some("linear") => true,
        Some("scattered") => false,
        _ => return Err(bad()),
    };
    Ok(WalkMapping {
        start,
        end,
        level: level.to_string(),
        flags: words[4..phys_at].iter().map(|w| w.to_string()).collect(),
        phys,
        linear,
    })
}

fn parse_walk_table(src: Src, n: usize, line: &str) -> Result<WalkTable, ReferenceError> {
    // ptable va 0xVA: pte page phys 0xP, PRESENT/ENTRIES entries present[  <== NOTE]
    let bad = || {
        src.err(
            n,
            "expected 'ptable va VA: pte page phys P, N/M entries present'",
        )
    };
    let (body, note) = match line.split_once("<==") {
        Some((b, note)) => (b, Some(note.trim().to_string())),
        None => (line, None),
    };
    let rest = body.strip_prefix("ptable va ").ok_or_else(bad)?;
    let (va, rest) = rest.split_once(": pte page phys ").ok_or_else(bad)?;
    let (phys, rest) = rest.split_once(", ").ok_or_else(bad)?;
    let counts = rest
        .trim()
        .strip_suffix(" entries present")
        .ok_or_else(bad)?;
    let (present, entries) = counts.split_once('/').ok_or_else(bad)?;
    Ok(WalkTable {
        va: src.hex(n, "table va", va)?,
        phys: src.hex(n, "table phys", phys)?,
        present: src.num(n, "present entries", present)?,
        entries: src.num(n, "entries", entries)?,
        note,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn walk_lines() {
        let src = Src {
            path: Path::new("t"),
        };
        let words: Vec<&str> =
            "pt 0xc0000000-0xc009b000    620K pte  RW   NX phys 0x000000000 linear"
                .split_whitespace()
                .collect();
        let m = parse_walk_mapping(src, 1, &words).unwrap();
        assert_eq!(
            (m.end - m.start, m.flags.clone(), m.linear),
            (620 << 10, vec!["RW".to_string(), "NX".to_string()], true)
        );
        let bad: Vec<&str> = "pt 0xc0000000-0xc009b000 4K pte RW phys 0x0 linear"
            .split_whitespace()
            .collect();
        assert!(parse_walk_mapping(src, 1, &bad).is_err());
        let t = parse_walk_table(src, 1, "ptable va 0xff000000: pte page phys 0x001f23000, 0/512 entries present  <== pkmap_page_table (PKMAP_BASE)").unwrap();
        assert_eq!(
            (t.va, t.phys, t.present, t.entries),
            (0xff00_0000, 0x1f2_3000, 0, 512)
        );
        assert_eq!(t.note.as_deref(), Some("pkmap_page_table (PKMAP_BASE)"));
    }
}
