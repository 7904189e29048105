//! memblock: the boot-time memory allocator (mm/memblock.c).
//!
//! Before the buddy allocator exists the kernel needs memory for its page tables, mem_map,
//! per-CPU areas and hash tables. memblock keeps two sorted range lists: `memory` (RAM the
//! firmware reported) and `reserved` (what is in use). An allocation is the highest free
//! range below `current_limit` (x86-32 allocates top-down), which is why mem_map and the
//! relocated initrd sit just below the end of low memory in every real boot. When the page
//! allocator comes up, every `memory` range not `reserved` is handed to the buddy lists.
//!
//! Each reservation carries a name (what it is for), so the boot can report where low
//! memory went: the figures behind `Memory: …K reserved`.

use machine::{PhysAddr, PAGE_SIZE};

/// `MEMBLOCK_ALLOC_ACCESSIBLE`: an allocation end meaning "up to the current limit".
pub const ACCESSIBLE: u64 = u64::MAX;

/// One range of physical memory.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Region {
    pub base: u64,
    pub size: u64,
    /// What the range is (reserved ranges only; RAM ranges say "System RAM").
    pub name: &'static str,
}

impl Region {
    pub fn end(&self) -> u64 {
        self.base + self.size
    }
}

/// memblock allocation failure: the boot cannot go on (the kernel panics).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "memblock: failed to allocate {size:#x} bytes align={align:#x} below {limit:#x} for {name}"
)]
pub struct MemblockAllocError {
    pub size: u64,
    pub align: u64,
    pub limit: u64,
    pub name: &'static str,
}

/// The two range lists plus the allocation limit.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Memblock {
    pub memory: Vec<Region>,
    pub reserved: Vec<Region>,
    /// Allocations stay below this address (`memblock_set_current_limit`).
    pub current_limit: u64,
}

/// Insert `[base, base+size)` into a sorted, non-overlapping list, merging with touching
/// neighbours of the same name; parts already covered are left as they are.
fn insert_range(list: &mut Vec<Region>, base: u64, size: u64, name: &'static str) {
    if size == 0 {
        return;
    }
    let end = base + size;
    // Collect the gaps of [base, end) not already covered.
    let mut gaps = Vec::new();
    let mut cursor = base;
    for r in list.iter() {
        if r.end() <= cursor {
            continue;
        }
        if r.base >= end {
            break;
        }
        if r.base > cursor {
            gaps.push((cursor, r.base));
        }
        cursor = cursor.max(r.end());
        if cursor >= end {
            break;
        }
    }
    if cursor < end {
        gaps.push((cursor, end));
    }
    for (b, e) in gaps {
        let idx = list.partition_point(|r| r.base < b);
        list.insert(
            idx,
            Region {
                base: b,
                size: e - b,
                name,
            },
        );
    }
    // Merge touching neighbours with the same name.
    let mut i = 0;
    while i + 1 < list.len() {
        if list[i].end() == list[i + 1].base && list[i].name == list[i + 1].name {
            list[i].size += list[i + 1].size;
            list.remove(i + 1);
        } else {
            i += 1;
        }
    }
}

/// Remove `[base, base+size)` from a sorted list, splitting ranges as needed.
fn remove_range(list: &mut Vec<Region>, base: u64, size: u64) {
    let end = base + size;
    let mut out = Vec::with_capacity(list.len() + 1);
    for r in list.drain(..) {
        if r.end() <= base || r.base >= end {
            out.push(r);
            continue;
        }
        if r.base < base {
            out.push(Region {
                base: r.base,
                size: base - r.base,
                name: r.name,
            });
        }
        if r.end() > end {
            out.push(Region {
                base: end,
                size: r.end() - end,
                name: r.name,
            });
        }
    }
    *list = out;
}

impl Memblock {
    pub fn new() -> Self {
        Memblock {
            current_limit: u64::MAX,
            ..Default::default()
        }
    }

    /// `memblock_add`: register RAM.
    pub fn add(&mut self, base: u64, size: u64) {
        insert_range(&mut self.memory, base, size, "System RAM");
    }

    /// `memblock_remove`: forget RAM (used by `mem=` and the highmem cut).
    pub fn remove(&mut self, base: u64, size: u64) {
        remove_range(&mut self.memory, base, size);
        remove_range(&mut self.reserved, base, size);
    }

    /// `memblock_reserve`.
    pub fn reserve(&mut self, base: u64, size: u64, name: &'static str) {
        insert_range(&mut self.reserved, base, size, name);
    }

    /// `memblock_phys_free`: give a reserved range back.
    pub fn free(&mut self, base: u64, size: u64) {
        remove_range(&mut self.reserved, base, size);
    }

    pub fn set_current_limit(&mut self, limit: u64) {
        self.current_limit = limit;
    }

    /// Whether any byte of the range is reserved.
    pub fn is_reserved(&self, base: u64, size: u64) -> bool {
        let end = base + size;
        self.reserved.iter().any(|r| r.base < end && r.end() > base)
    }

    /// Whether every byte of the range is RAM.
    pub fn is_memory(&self, base: u64, size: u64) -> bool {
        let end = base + size;
        self.memory.iter().any(|r| r.base <= base && r.end() >= end)
    }

    /// Free ranges (memory minus reserved), ascending, clipped to `[start, end)`.
    pub fn free_ranges(&self, start: u64, end: u64) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        for m in &self.memory {
            let mut lo = m.base.max(start);
            let hi = m.end().min(end);
            if lo >= hi {
                continue;
            }
            for r in &self.reserved {
                if r.end() <= lo {
                    continue;
                }
                if r.base >= hi {
                    break;
                }
                if r.base > lo {
                    out.push((lo, r.base));
                }
                lo = lo.max(r.end());
                if lo >= hi {
                    break;
                }
            }
            if lo < hi {
                out.push((lo, hi));
            }
        }
        out
    }

    /// What `memblock_free_all` hands the buddy allocator: the whole pages of every free
    /// range, as `[start, end)` pfns.
    pub fn free_pfn_ranges(&self) -> Vec<(u64, u64)> {
        self.free_ranges(0, u64::MAX)
            .into_iter()
            .filter_map(|(s, e)| {
                let (s, e) = (s.div_ceil(PAGE_SIZE), e / PAGE_SIZE);
                (s < e).then_some((s, e))
            })
            .collect()
    }

    /// Every page a reservation touches, as `[start, end)` pfns (`memmap_init_reserved_pages`).
    pub fn reserved_pfn_ranges(&self) -> Vec<(u64, u64)> {
        self.reserved
            .iter()
            .map(|r| (r.base / PAGE_SIZE, r.end().div_ceil(PAGE_SIZE)))
            .collect()
    }

    /// `memblock_phys_alloc_range` top-down: the highest `size` bytes aligned to `align`
    /// inside `[start, end)` that are free; reserved under `name`. `end` = [`ACCESSIBLE`]
    /// means "below the current limit" (`MEMBLOCK_ALLOC_ACCESSIBLE`); an explicit end is
    /// honoured as given, as in 6.1.
    pub fn alloc_range(
        &mut self,
        size: u64,
        align: u64,
        start: u64,
        end: u64,
        name: &'static str,
    ) -> Result<PhysAddr, MemblockAllocError> {
        let limit = if end == ACCESSIBLE {
            self.current_limit
        } else {
            end
        };
        let align = align.max(1);
        let size = size.max(1);
        let found = self
            .free_ranges(start, limit)
            .into_iter()
            .rev()
            .find_map(|(lo, hi)| {
                let cand = hi.checked_sub(size)? & !(align - 1);
                (cand >= lo).then_some(cand)
            });
        match found {
            Some(base) => {
                self.reserve(base, size, name);
                Ok(PhysAddr::new(base))
            }
            None => Err(MemblockAllocError {
                size,
                align,
                limit,
                name,
            }),
        }
    }

    /// `memblock_alloc`: page-aligned, anywhere below the current limit.
    pub fn alloc(&mut self, size: u64, name: &'static str) -> Result<PhysAddr, MemblockAllocError> {
        self.alloc_range(size, PAGE_SIZE, 0, ACCESSIBLE, name)
    }

    /// Bytes reserved under each name, in order of first appearance.
    pub fn reserved_by_name(&self) -> Vec<(&'static str, u64)> {
        let mut out: Vec<(&'static str, u64)> = Vec::new();
        for r in &self.reserved {
            match out.iter_mut().find(|(n, _)| *n == r.name) {
                Some((_, s)) => *s += r.size,
                None => out.push((r.name, r.size)),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mb() -> Memblock {
        let mut m = Memblock::new();
        m.add(0x1000, 0x9e000);
        m.add(0x100000, 0x3ff00000);
        m
    }

    #[test]
    fn allocations_go_top_down_below_the_limit() {
        let mut m = mb();
        m.set_current_limit(0x3000_0000);
        let a = m.alloc(0x2000, "a").unwrap();
        assert_eq!(a.as_u64(), 0x3000_0000 - 0x2000);
        let b = m.alloc(0x1000, "b").unwrap();
        assert_eq!(b.as_u64(), 0x3000_0000 - 0x3000);
        assert!(m.is_reserved(0x2fff_e000, 0x1000));
    }

    #[test]
    fn reserved_ranges_are_skipped_and_alignment_kept() {
        let mut m = mb();
        m.set_current_limit(0x400000);
        m.reserve(0x300000, 0x100000, "kernel");
        // 2 MiB aligned below the reservation would be 0x0, which is not RAM.
        assert!(m
            .alloc_range(0x200000, 0x200000, 0, u64::MAX, "big")
            .is_err());
        let a = m
            .alloc_range(0x100000, 0x100000, 0, u64::MAX, "1M")
            .unwrap();
        assert_eq!(a.as_u64(), 0x200000);
    }

    #[test]
    fn free_ranges_subtract_reservations() {
        let mut m = mb();
        m.reserve(0, 0x100000, "first 1M");
        m.reserve(0x200000, 0x1000, "x");
        let f = m.free_ranges(0, 0x400000);
        assert_eq!(f, vec![(0x100000, 0x200000), (0x201000, 0x400000)]);
        m.free(0x200000, 0x1000);
        assert_eq!(m.free_ranges(0, 0x400000), vec![(0x100000, 0x400000)]);
    }

    #[test]
    fn overlapping_reservations_do_not_double_count() {
        let mut m = mb();
        m.reserve(0x100000, 0x2000, "a");
        m.reserve(0x101000, 0x2000, "b");
        let total: u64 = m.reserved.iter().map(|r| r.size).sum();
        assert_eq!(total, 0x3000);
    }

    #[test]
    fn explicit_end_ignores_the_current_limit() {
        let mut m = mb();
        m.set_current_limit(0x100000);
        // memblock_alloc stays below the limit: the top of the RAM below 1 MiB.
        assert_eq!(
            m.alloc(0x2000, "limited").unwrap().as_u64(),
            0x9f000 - 0x2000
        );
        let a = m
            .alloc_range(0x200000, 0x200000, 0x100000, 0x3000_0000, "explicit")
            .unwrap();
        assert_eq!(a.as_u64(), 0x3000_0000 - 0x200000);
    }

    #[test]
    fn failure_is_an_error_not_a_panic() {
        let mut m = mb();
        m.set_current_limit(0x100000);
        assert!(m.alloc(0x200000, "too big").is_err());
    }
}
