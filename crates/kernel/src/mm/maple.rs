//! The nodes of an mm's VMA tree (6.1's `mm->mm_mt`, lib/maple_tree.c).
//!
//! Since 6.1 an address space keeps its VMAs in a maple tree, and the tree's nodes are
//! `maple_node` slab objects (256 bytes on both widths): a cost every process pays in low
//! memory beside its mm_struct and vm_area_structs, visible in `/proc/slabinfo` and in Slab.
//! The tree covers every address, `0..=ULONG_MAX`, as ranges: each VMA is one, and so is
//! each gap between VMAs (and before the first and after the last). A leaf
//! (`maple_range_64`) holds 16 ranges; an internal node of an allocation tree
//! (`maple_arange_64`) holds 10 children.
//!
//! The model keeps as many node objects as the tree needs at its densest:
//! `ceil(ranges / 16)` leaves, then a level of internal nodes per factor of 10. Up to 16
//! ranges (11 VMAs in a row with gaps between some: every process of the shm workload, as
//! the real runs' one `maple_node` a child shows) that is the real tree, a single leaf as
//! root. Above it the real tree's leaves are usually less full after splits, so the model
//! counts at least what the real tree holds, not more. The nodes a tree operation
//! preallocates and frees again (`mas_preallocate`, dup_mmap's `mas_expected_entries`)
//! and those its copy-on-write replaces are not kept: they are back in the cache before the
//! call returns (or after the RCU grace period).

use super::{MmError, ProcId, Vma};
use crate::gfp::{Gfp, GFP_KERNEL};
use crate::Kernel;

/// `MAPLE_RANGE64_SLOTS`: ranges in a leaf.
const LEAF_SLOTS: u64 = 16;
/// `MAPLE_ARANGE64_SLOTS`: children of an internal node of an allocation tree.
const ARANGE_SLOTS: u64 = 10;

/// The ranges of a tree over `0..=top` holding `vmas` (sorted, not overlapping): the VMAs
/// and the gaps around them.
pub fn tree_ranges(vmas: &[Vma], top: u64) -> u64 {
    let mut ranges = 0;
    let mut next = 0u64;
    for v in vmas {
        ranges += 1 + u64::from(v.start > next);
        next = v.end;
    }
    if vmas.is_empty() {
        return 0;
    }
    ranges + u64::from(next.wrapping_sub(1) < top)
}

/// The nodes of the densest tree of `ranges` ranges (none for an empty tree).
pub fn tree_nodes(ranges: u64) -> u64 {
    if ranges == 0 {
        return 0;
    }
    let mut level = ranges.div_ceil(LEAF_SLOTS);
    let mut nodes = level;
    while level > 1 {
        level = level.div_ceil(ARANGE_SLOTS);
        nodes += level;
    }
    nodes
}

impl Kernel {
    /// `ULONG_MAX` of the kernel: the last address the tree covers.
    fn ulong_max(&self) -> u64 {
        match self.config.arch {
            crate::config::Arch::I386 => u64::from(u32::MAX),
            crate::config::Arch::X86_64 => u64::MAX,
        }
    }

    /// Bring process `p`'s node objects to what its VMAs need, after a VMA was added,
    /// removed or resized.
    pub(crate) fn mt_sync(&mut self, cpu: usize, p: ProcId) -> Result<(), MmError> {
        let top = self.ulong_max();
        let mm = self.mm.procs[p.0].mm.as_ref().ok_or(MmError::NoProc)?;
        let want = tree_nodes(tree_ranges(&mm.vmas, top)) as usize;
        let have = mm.maple.len();
        let Some(id) = self.slab.find_cache("maple_node") else {
            return Ok(());
        };
        for _ in have..want {
            let va = self
                .kmem_cache_alloc(id, GFP_KERNEL | Gfp::ACCOUNT, cpu)
                .map_err(|_| MmError::Oom)?;
            if let Some(mm) = self.mm.procs[p.0].mm.as_mut() {
                mm.maple.push(va);
            }
        }
        for _ in want..have {
            let va = self.mm.procs[p.0].mm.as_mut().and_then(|m| m.maple.pop());
            if let Some(va) = va {
                self.free_objs(cpu, vec![(id, va)]);
            }
        }
        Ok(())
    }

    /// `mt_destroy()` at exit_mmap: every node back to the cache.
    pub(crate) fn mt_destroy(&mut self, cpu: usize, nodes: Vec<machine::VirtAddr>) {
        if let Some(id) = self.slab.find_cache("maple_node") {
            self.free_objs(cpu, nodes.into_iter().map(|va| (id, va)).collect());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm::VmaKind;

    fn vma(s: u64, e: u64) -> Vma {
        Vma::new(s, e, VmaKind::Anon, String::new())
    }

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
        assert_eq!(tree_nodes(r), 1);
    }

    #[test]
    fn bigger_trees_grow_levels() {
        assert_eq!(tree_nodes(17), 3);
        assert_eq!(tree_nodes(160), 11);
        assert_eq!(tree_nodes(161), 11 + 2 + 1);
    }
}
