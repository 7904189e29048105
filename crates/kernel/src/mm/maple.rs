//! The nodes of an mm's VMA tree (6.1's `mm->mm_mt`, lib/maple_tree.c).
//!
//! Since 6.1 an address space keeps its VMAs in a maple tree, and the tree's nodes are
//! `maple_node` slab objects (256 bytes on both widths): a cost every process pays in low
//! memory beside its mm_struct and vm_area_structs, visible in `/proc/slabinfo` and in Slab.
//! The tree covers every address, `0..=ULONG_MAX`, as ranges: each VMA is one, and so is
//! each gap between VMAs (and before the first and after the last). A leaf
//! (`maple_range_64`) holds 16 ranges on a 64-bit kernel and 32 on a 32-bit one; an
//! internal node of an allocation tree (`maple_arange_64`) 10 or 21 children.
//!
//! The model keeps as many node objects as the tree needs at its densest: full leaves, then
//! a level of internal nodes at a time. Every process of the shm workload has 11 VMAs and 16
//! ranges, one leaf as the root on both widths, as the real N0/N100 pairs show (0.8 a child,
//! a slab's phase from 1). Above a leaf the real tree's leaves are usually less full after
//! splits, so the model counts at least what the real tree holds, not more. A change that
//! needs more nodes allocates them first (`mas_preallocate`), so a failure leaves the VMAs
//! as they were; the nodes a tree operation preallocates and frees again, and those its
//! copy-on-write replaces, are back in the cache before the call returns (or after the RCU
//! grace period), and are not kept.

use super::{MmError, ProcId};
use crate::config::Arch;
use crate::gfp::{Gfp, GFP_KERNEL};
use crate::Kernel;
use machine::VirtAddr;

/// `MAPLE_RANGE64_SLOTS` (ranges in a leaf) and `MAPLE_ARANGE64_SLOTS` (children of an
/// internal node of an allocation tree): 16 and 10 on a 64-bit kernel, 32 and 21 on a 32-bit
/// one (the node is 256 bytes either way; 32-bit pivots and slots take half the room).
pub const fn node_slots(arch: Arch) -> (u64, u64) {
    match arch {
        Arch::X86_64 => (16, 10),
        Arch::I386 => (32, 21),
    }
}

/// The ranges of a tree over `0..=top` holding VMAs with these bounds (sorted, not
/// overlapping): the VMAs and the gaps around them.
pub fn tree_ranges(bounds: &[(u64, u64)], top: u64) -> u64 {
    let mut ranges = 0;
    let mut next = 0u64;
    for &(start, end) in bounds {
        ranges += 1 + u64::from(start > next);
        next = end;
    }
    if bounds.is_empty() {
        return 0;
    }
    ranges + u64::from(next.wrapping_sub(1) < top)
}

/// The nodes of the densest tree of `ranges` ranges (none for an empty tree), with
/// [`node_slots`].
pub fn tree_nodes(ranges: u64, (leaf, arange): (u64, u64)) -> u64 {
    if ranges == 0 {
        return 0;
    }
    let mut level = ranges.div_ceil(leaf);
    let mut nodes = level;
    while level > 1 {
        level = level.div_ceil(arange);
        nodes += level;
    }
    nodes
}

impl Kernel {
    /// `ULONG_MAX` of the kernel: the last address the tree covers.
    fn ulong_max(&self) -> u64 {
        match self.config.arch {
            Arch::I386 => u64::from(u32::MAX),
            Arch::X86_64 => u64::MAX,
        }
    }

    /// The nodes a tree of VMAs with these bounds holds.
    fn mt_nodes(&self, bounds: &[(u64, u64)]) -> usize {
        let ranges = tree_ranges(bounds, self.ulong_max());
        tree_nodes(ranges, node_slots(self.config.arch)) as usize
    }

    /// Process `p`'s VMA bounds, in order.
    pub(crate) fn vma_bounds(&self, p: ProcId) -> Result<Vec<(u64, u64)>, MmError> {
        let mm = self.mm.procs[p.0].mm.as_ref().ok_or(MmError::NoProc)?;
        Ok(mm.vmas.iter().map(|v| (v.start, v.end)).collect())
    }

    /// `mas_preallocate()`: the nodes the tree will need once its VMAs have the bounds
    /// `after`, allocated before the VMAs change. `Oom` (and none kept) where one fails.
    pub(crate) fn mt_preallocate(
        &mut self,
        cpu: usize,
        p: ProcId,
        after: &[(u64, u64)],
    ) -> Result<(), MmError> {
        let want = self.mt_nodes(after);
        let have = self.mm.procs[p.0].mm.as_ref().map_or(0, |m| m.maple.len());
        let Some(id) = self.slab.find_cache("maple_node") else {
            return Ok(());
        };
        let mut got = Vec::new();
        for _ in have..want {
            match self.kmem_cache_alloc(id, GFP_KERNEL | Gfp::ACCOUNT, cpu) {
                Ok(va) => got.push(va),
                Err(_) => {
                    self.free_objs(cpu, got.into_iter().map(|va| (id, va)).collect());
                    return Err(MmError::Oom);
                }
            }
        }
        if let Some(mm) = self.mm.procs[p.0].mm.as_mut() {
            mm.maple.extend(got);
        }
        Ok(())
    }

    /// [`Self::mt_preallocate`] for one more VMA over `[start, end)`.
    pub(crate) fn mt_preallocate_insert(
        &mut self,
        cpu: usize,
        p: ProcId,
        (start, end): (u64, u64),
    ) -> Result<(), MmError> {
        let mut after = self.vma_bounds(p)?;
        let at = after.partition_point(|b| b.0 < start);
        after.insert(at, (start, end));
        self.mt_preallocate(cpu, p, &after)
    }

    /// After a VMA went or shrank: the nodes the tree no longer needs go back to the cache
    /// (a trim that opens a new gap takes one more where the cache has it).
    pub(crate) fn mt_sync(&mut self, cpu: usize, p: ProcId) {
        let Ok(bounds) = self.vma_bounds(p) else {
            return;
        };
        if self.mt_preallocate(cpu, p, &bounds).is_err() {
            return;
        }
        let want = self.mt_nodes(&bounds);
        let extra: Vec<VirtAddr> = match self.mm.procs[p.0].mm.as_mut() {
            Some(mm) if mm.maple.len() > want => mm.maple.split_off(want),
            _ => return,
        };
        self.mt_destroy(cpu, extra);
    }

    /// `mt_destroy()` at exit_mmap: every node back to the cache.
    pub(crate) fn mt_destroy(&mut self, cpu: usize, nodes: Vec<VirtAddr>) {
        if let Some(id) = self.slab.find_cache("maple_node") {
            self.free_objs(cpu, nodes.into_iter().map(|va| (id, va)).collect());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vma(s: u64, e: u64) -> (u64, u64) {
        (s, e)
    }

    const I386: (u64, u64) = node_slots(Arch::I386);
    const X86_64: (u64, u64) = node_slots(Arch::X86_64);

    #[test]
    fn ranges_count_the_gaps() {
        let top = u64::from(u32::MAX);
        assert_eq!(tree_ranges(&[], top), 0);
        // One VMA in the middle: gap, VMA, gap.
        assert_eq!(tree_ranges(&[vma(0x1000, 0x2000)], top), 3);
        // From 0 and adjacent: no gap before and between.
        assert_eq!(tree_ranges(&[vma(0, 0x1000), vma(0x1000, 0x2000)], top), 3);
        // Up to the top: no gap after.
        assert_eq!(tree_ranges(&[vma(0x1000, top + 1)], top), 2);
    }

    #[test]
    fn the_workloads_child_is_one_leaf() {
        // The reference child's maps: six binary VMAs in a row, heap, the segment, vvar and
        // vdso in a row, stack.
        let v = [
            vma(0x0804_8000, 0x0804_9000),
            vma(0x0804_9000, 0x080d_7000),
            vma(0x080d_7000, 0x0810_d000),
            vma(0x0810_d000, 0x0811_0000),
            vma(0x0811_0000, 0x0811_2000),
            vma(0x0811_2000, 0x0811_5000),
            vma(0x0960_2000, 0x0962_4000),
            vma(0x97f3_d000, 0xb7f3_d000),
            vma(0xb7f3_d000, 0xb7f4_1000),
            vma(0xb7f4_1000, 0xb7f4_3000),
            vma(0xbfad_c000, 0xbfaf_d000),
        ];
        let r = tree_ranges(&v, u64::from(u32::MAX));
        assert_eq!(r, 16);
        assert_eq!(tree_nodes(r, I386), 1);
        assert_eq!(tree_nodes(r, X86_64), 1);
    }

    #[test]
    fn bigger_trees_grow_levels() {
        // 64-bit: 16-range leaves, 10 children a node.
        assert_eq!(tree_nodes(17, X86_64), 3);
        assert_eq!(tree_nodes(160, X86_64), 11);
        assert_eq!(tree_nodes(161, X86_64), 11 + 2 + 1);
        // 32-bit: 32-range leaves, 21 children a node.
        assert_eq!(tree_nodes(32, I386), 1);
        assert_eq!(tree_nodes(33, I386), 3);
        assert_eq!(tree_nodes(32 * 21 + 1, I386), 22 + 2 + 1);
    }
}
