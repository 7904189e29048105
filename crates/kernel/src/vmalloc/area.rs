//! The vmap address-space allocator (`alloc_vmap_area`, `merge_or_add_vmap_area`).
//!
//! 6.1 keeps free space in an augmented red-black tree (`free_vmap_area_root`, each node
//! knowing the largest free block below it) and lazily freed areas in a second tree
//! (`purge_vmap_area_root`). Both merge neighbours on insertion. The model keeps the same
//! two sets as ordered maps of merged `[start, end)` blocks; an allocation takes the
//! lowest-address block where the aligned start fits (`find_vmap_lowest_match`) and splits
//! it (the left/right/both/none fits of `adjust_va_to_fit_type`).
//!
//! Deliberate difference: the kernel prunes subtrees by `size + align - 1` when
//! `align > PAGE_SIZE`, so it can pass over a block that fits only because its start is
//! already aligned; the model always returns the lowest fitting block.

use std::collections::BTreeMap;

/// Free and lazily freed vmap space.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct VmapSpace {
    /// VMALLOC_START and VMALLOC_END.
    pub start: u64,
    pub end: u64,
    /// Free blocks, start → end, never adjacent (merged).
    free: BTreeMap<u64, u64>,
    /// Lazily freed blocks waiting for the purge, merged likewise.
    purge: BTreeMap<u64, u64>,
    /// Ranges outside [start, end) that callers of `__vmalloc_node_range` name (x86_64's
    /// module area, where `module_alloc` puts the BPF JIT's pack).
    #[serde(skip)]
    extra: Vec<(u64, u64)>,
}

/// Add `[start, end)` to a set of merged blocks; false if it overlaps one.
fn merge_or_add(map: &mut BTreeMap<u64, u64>, mut start: u64, mut end: u64) -> bool {
    if let Some((&ps, &pe)) = map.range(..=start).next_back() {
        if pe > start {
            return false;
        }
        if pe == start {
            map.remove(&ps);
            start = ps;
        }
    }
    if let Some((&ns, &ne)) = map.range(start..).next() {
        if ns < end {
            return false;
        }
        if ns == end {
            map.remove(&ns);
            end = ne;
        }
    }
    map.insert(start, end);
    true
}

const fn align_up(v: u64, align: u64) -> u64 {
    (v + align - 1) & !(align - 1)
}

impl VmapSpace {
    /// The whole `[start, end)` free.
    pub fn new(start: u64, end: u64) -> Self {
        let mut free = BTreeMap::new();
        if end > start {
            free.insert(start, end);
        }
        VmapSpace {
            start,
            end,
            free,
            purge: BTreeMap::new(),
            extra: Vec::new(),
        }
    }

    /// Make `[start, end)` (disjoint from the rest) free space too: the kernel's vmap tree
    /// covers the whole address space, so `module_alloc`'s range is allocated from the same
    /// tree and listed in /proc/vmallocinfo with the rest.
    pub fn add_range(&mut self, start: u64, end: u64) {
        if end > start && merge_or_add(&mut self.free, start, end) {
            self.extra.push((start, end));
        }
    }

    /// `[start, end)` and every added range, lowest first: what free, lazily freed and
    /// busy blocks tile.
    pub fn ranges(&self) -> Vec<(u64, u64)> {
        let mut v = vec![(self.start, self.end)];
        v.extend(self.extra.iter().copied());
        v.sort_unstable();
        v
    }

    /// `__alloc_vmap_area`: `size` bytes aligned to `align` within `[vstart, vend)`, from
    /// the lowest free block that holds them.
    pub fn alloc(&mut self, size: u64, align: u64, vstart: u64, vend: u64) -> Option<u64> {
        debug_assert!(align.is_power_of_two() && size > 0);
        let first = self
            .free
            .range(..=vstart)
            .next_back()
            .map_or(vstart, |(&s, _)| s);
        let (bs, be, nva) = self.free.range(first..).find_map(|(&s, &e)| {
            let nva = align_up(s.max(vstart), align);
            (nva + size <= e && nva + size <= vend).then_some((s, e, nva))
        })?;
        self.free.remove(&bs);
        if nva > bs {
            self.free.insert(bs, nva);
        }
        if be > nva + size {
            self.free.insert(nva + size, be);
        }
        Some(nva)
    }

    /// Return `[start, end)` to the free space (merging); false if it was already free.
    pub fn free(&mut self, start: u64, end: u64) -> bool {
        merge_or_add(&mut self.free, start, end)
    }

    /// `free_vmap_area_noflush`'s insertion into the purge tree.
    pub fn add_lazy(&mut self, start: u64, end: u64) -> bool {
        merge_or_add(&mut self.purge, start, end)
    }

    /// Take every lazily freed block (the purge list), lowest first.
    pub fn take_purge(&mut self) -> Vec<(u64, u64)> {
        std::mem::take(&mut self.purge).into_iter().collect()
    }

    /// Free blocks, lowest first.
    pub fn free_blocks(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.free.iter().map(|(&s, &e)| (s, e))
    }

    /// Lazily freed blocks, lowest first.
    pub fn purge_blocks(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.purge.iter().map(|(&s, &e)| (s, e))
    }

    /// Bytes free (not counting lazily freed space).
    pub fn free_bytes(&self) -> u64 {
        self.free.iter().map(|(s, e)| e - s).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowest_fit_split_and_merge() {
        let mut s = VmapSpace::new(0x1000_0000, 0x1010_0000);
        let a = s.alloc(0x2000, 0x1000, s.start, s.end).unwrap();
        let b = s.alloc(0x3000, 0x1000, s.start, s.end).unwrap();
        assert_eq!((a, b), (0x1000_0000, 0x1000_2000));
        assert!(s.free(a, a + 0x2000));
        assert!(!s.free(a, a + 0x1000), "double free refused");
        // The hole at the bottom is reused first.
        assert_eq!(s.alloc(0x1000, 0x1000, s.start, s.end), Some(a));
        // Aligned: skips to the next 64 KiB boundary.
        let c = s.alloc(0x1000, 0x1_0000, s.start, s.end).unwrap();
        assert_eq!(c, 0x1001_0000);
        s.free(c, c + 0x1000);
        s.free(a, a + 0x1000);
        s.free(b, b + 0x3000);
        assert_eq!(s.free_blocks().collect::<Vec<_>>(), [(s.start, s.end)]);
        assert!(s.alloc(0x20_0000, 0x1000, s.start, s.end).is_none());
    }

    #[test]
    fn purge_blocks_merge() {
        let mut s = VmapSpace::new(0, 0x10_0000);
        s.add_lazy(0x1000, 0x2000);
        s.add_lazy(0x2000, 0x4000);
        s.add_lazy(0x8000, 0x9000);
        assert_eq!(s.take_purge(), [(0x1000, 0x4000), (0x8000, 0x9000)]);
        assert_eq!(s.purge_blocks().count(), 0);
    }
}
