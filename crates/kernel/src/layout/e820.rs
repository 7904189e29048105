//! The kernel's own copy of the e820 table and the edits setup_arch makes to it
//! (arch/x86/kernel/e820.c): `mem=` removal, marking page 0 reserved, dropping the
//! 640 KiB – 1 MiB BIOS range, re-adding the kernel image if the map forgot it, and the
//! "sanitize" pass that sorts the table and resolves overlaps (higher type wins).
//!
//! Edits append or shrink entries in place, as the kernel does, and leave emptied entries
//! with size 0; only [`E820Table::update`] sorts and merges. The debug lines the kernel
//! prints for each edit are returned so the boot log can show them at KERN_DEBUG.

use machine::e820::{E820Entry, E820Map, E820Type};
use machine::{PhysAddr, PAGE_SHIFT};

/// `e820_table`: the kernel's working copy of the firmware map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct E820Table {
    entries: Vec<E820Entry>,
}

impl E820Table {
    /// A copy of the firmware's map (`e820__memory_setup`).
    pub fn from_firmware(map: &E820Map) -> E820Table {
        E820Table {
            entries: map.entries().to_vec(),
        }
    }

    /// The entries, including emptied ones before [`E820Table::update`].
    pub fn entries(&self) -> &[E820Entry] {
        &self.entries
    }

    /// Entries with a size, for printing and export.
    pub fn live_entries(&self) -> Vec<E820Entry> {
        self.entries
            .iter()
            .filter(|e| e.size > 0)
            .copied()
            .collect()
    }

    /// `e820__print_table(who)`: one line per entry.
    pub fn print(&self, who: &str) -> Vec<String> {
        self.entries.iter().map(|e| format!("{who}: {e}")).collect()
    }

    /// `e820__range_add`: append an entry (the table is not sorted until `update`).
    pub fn range_add(&mut self, start: u64, size: u64, kind: E820Type) {
        self.entries.push(E820Entry::new(start, size, kind));
    }

    /// `e820__range_update`: retype the `old` parts of `[start, start+size)` to `new`.
    /// Returns the kernel's debug line.
    pub fn range_update(&mut self, start: u64, size: u64, old: E820Type, new: E820Type) -> String {
        let size = size.min(u64::MAX - start);
        let end = start + size;
        let msg = format!(
            "e820: update [mem {:#010x}-{:#010x}] {} ==> {}",
            start,
            end.wrapping_sub(1),
            old,
            new
        );
        let mut added = Vec::new();
        for e in self.entries.iter_mut() {
            if e.kind != old || e.size == 0 {
                continue;
            }
            let (s, t) = (e.addr.as_u64(), e.end());
            if s >= start && t <= end {
                e.kind = new;
                continue;
            }
            if s < start && t > end {
                // The update punches a hole in the middle: three pieces.
                added.push(E820Entry::new(start, size, new));
                added.push(E820Entry::new(end, t - end, old));
                e.size = start - s;
                continue;
            }
            let (fs, fe) = (start.max(s), end.min(t));
            if fs >= fe {
                continue;
            }
            added.push(E820Entry::new(fs, fe - fs, new));
            e.size -= fe - fs;
            if s >= fs {
                e.addr = PhysAddr::new(fe);
            }
        }
        self.entries.extend(added);
        msg
    }

    /// `e820__range_remove`: make the table not cover `[start, start+size)`; with `only`,
    /// only entries of that type are cut. Returns the kernel's debug line.
    pub fn range_remove(&mut self, start: u64, size: u64, only: Option<E820Type>) -> String {
        let size = size.min(u64::MAX - start);
        let end = start + size;
        let msg = format!(
            "e820: remove [mem {:#010x}-{:#010x}] {}",
            start,
            end.wrapping_sub(1),
            only.map_or("", |t| t.kernel_name())
        );
        let mut added = Vec::new();
        for e in self.entries.iter_mut() {
            if e.size == 0 || only.is_some_and(|t| t != e.kind) {
                continue;
            }
            let (s, t) = (e.addr.as_u64(), e.end());
            if s >= start && t <= end {
                *e = E820Entry::new(0, 0, e.kind);
                continue;
            }
            if s < start && t > end {
                added.push(E820Entry::new(end, t - end, e.kind));
                e.size = start - s;
                continue;
            }
            let (fs, fe) = (start.max(s), end.min(t));
            if fs >= fe {
                continue;
            }
            e.size -= fe - fs;
            if s >= fs {
                e.addr = PhysAddr::new(fe);
            }
        }
        self.entries.extend(added);
        msg
    }

    /// `e820__update_table`: sort, drop empty entries, resolve overlaps in favour of the
    /// higher type number and merge neighbours of one type. Like the kernel, it refuses
    /// (returns false, table untouched) when fewer than two entries are present.
    pub fn update(&mut self) -> bool {
        if self.entries.len() < 2 {
            return false;
        }
        let live: Vec<&E820Entry> = self.entries.iter().filter(|e| e.size > 0).collect();
        let mut points: Vec<u64> = live
            .iter()
            .flat_map(|e| [e.addr.as_u64(), e.end()])
            .collect();
        points.sort_unstable();
        points.dedup();
        let mut out: Vec<E820Entry> = Vec::new();
        for w in points.windows(2) {
            let (a, b) = (w[0], w[1]);
            let kind = live
                .iter()
                .filter(|e| e.addr.as_u64() <= a && e.end() >= b)
                .map(|e| e.kind)
                .max_by_key(|k| k.code());
            let Some(kind) = kind else { continue };
            match out.last_mut() {
                Some(last) if last.kind == kind && last.end() == a => last.size += b - a,
                _ => out.push(E820Entry::new(a, b - a, kind)),
            }
        }
        self.entries = out;
        true
    }

    /// `e820__mapped_all`: is all of `[start, end)` covered by entries of `kind`?
    /// (Assumes a sorted table, as the kernel does.)
    pub fn mapped_all(&self, start: u64, end: u64, kind: E820Type) -> bool {
        let mut start = start;
        for e in &self.entries {
            if e.kind != kind || e.addr.as_u64() >= end || e.end() <= start {
                continue;
            }
            if e.addr.as_u64() <= start {
                start = e.end();
            }
            if start >= end {
                return true;
            }
        }
        false
    }

    /// `e820_end_pfn(limit_pfn, type)`: end of the highest `kind` entry below
    /// `limit_pfn`, capped at `max_arch_pfn`.
    pub fn end_pfn(&self, limit_pfn: u64, max_arch_pfn: u64, kind: E820Type) -> u64 {
        let mut last_pfn = 0;
        for e in &self.entries {
            if e.kind != kind {
                continue;
            }
            let start_pfn = e.addr.as_u64() >> PAGE_SHIFT;
            let end_pfn = e.end() >> PAGE_SHIFT;
            if start_pfn >= limit_pfn {
                continue;
            }
            if end_pfn > limit_pfn {
                last_pfn = limit_pfn;
                break;
            }
            last_pfn = last_pfn.max(end_pfn);
        }
        last_pfn.min(max_arch_pfn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qemu(ram: u64) -> E820Table {
        E820Table::from_firmware(&E820Map::qemu_pc(ram).unwrap())
    }

    #[test]
    fn trim_bios_range_on_qemu() {
        let mut t = qemu(4 << 30);
        let a = t.range_update(0, 4096, E820Type::Usable, E820Type::Reserved);
        let b = t.range_remove(0xa_0000, 0x6_0000, Some(E820Type::Usable));
        assert_eq!(
            a,
            "e820: update [mem 0x00000000-0x00000fff] usable ==> reserved"
        );
        assert_eq!(b, "e820: remove [mem 0x000a0000-0x000fffff] usable");
        assert!(t.update());
        assert_eq!(
            t.print("x")[..2],
            [
                "x: [mem 0x0000000000000000-0x0000000000000fff] reserved",
                "x: [mem 0x0000000000001000-0x000000000009fbff] usable",
            ]
        );
        assert_eq!(t.end_pfn(1 << 24, 1 << 24, E820Type::Usable), 0x14_0000);
        assert_eq!(t.end_pfn(1 << 20, 1 << 20, E820Type::Usable), 0xb_ffe0);
    }

    #[test]
    fn mem_limit_cuts_and_prints_like_the_kernel() {
        let mut t = qemu(4 << 30);
        let m = 2u64 << 30;
        let msg = t.range_remove(m, u64::MAX - m, Some(E820Type::Usable));
        assert_eq!(
            msg,
            "e820: remove [mem 0x80000000-0xfffffffffffffffe] usable"
        );
        assert!(t.update());
        let lines = t.print("user");
        assert_eq!(
            lines[3],
            "user: [mem 0x0000000000100000-0x000000007fffffff] usable"
        );
        assert_eq!(lines.len(), 6, "{lines:?}");
    }

    #[test]
    fn update_resolves_overlaps_by_type_number() {
        let mut t = E820Table {
            entries: vec![
                E820Entry::new(0, 0x10_0000, E820Type::Usable),
                E820Entry::new(0x8_0000, 0x1000, E820Type::Nvs),
                E820Entry::new(0x10_0000, 0x10_0000, E820Type::Usable),
            ],
        };
        assert!(t.update());
        let kinds: Vec<_> = t
            .entries()
            .iter()
            .map(|e| (e.addr.as_u64(), e.kind))
            .collect();
        assert_eq!(
            kinds,
            vec![
                (0, E820Type::Usable),
                (0x8_0000, E820Type::Nvs),
                (0x8_1000, E820Type::Usable),
            ]
        );
        assert_eq!(t.entries()[2].end(), 0x20_0000);
        let mut one = E820Table {
            entries: vec![E820Entry::new(0, 0x1000, E820Type::Usable)],
        };
        assert!(!one.update());
    }

    #[test]
    fn mapped_all_and_hole_punching() {
        let mut t = qemu(1 << 30);
        assert!(t.mapped_all(0x100_0000, 0x213_5000, E820Type::Usable));
        t.range_remove(0x180_0000, 0x1000, None);
        assert!(!t.mapped_all(0x100_0000, 0x213_5000, E820Type::Usable));
        t.range_update(0x200_0000, 0x1000, E820Type::Usable, E820Type::Unusable);
        assert!(t.update());
        let n = t
            .entries()
            .iter()
            .filter(|e| e.kind == E820Type::Unusable)
            .count();
        assert_eq!(n, 1);
    }
}
