//! Direct reclaim (`mm/vmscan.c`) as far as it can get anything back in this model.
//!
//! Without swap the anonymous and shmem pages on the LRU lists cannot go, and there are no
//! file pages; what remains is `shrink_slab`, and of the shrinkers only the proc
//! superblock's has objects the model tracks: the unused /proc/PID dentries and their inodes
//! ([`crate::procfs::pid_lookup`]). `do_try_to_free_pages` raises the priority from
//! `DEF_PRIORITY` down to 0 and calls the shrinker at each step, until
//! `SWAP_CLUSTER_MAX` pages came back. The shrinker scans little at low pressure: a share
//! `freeable >> priority` of its objects (times 4 / `seeks`), plus a part of what earlier calls
//! deferred, and only once that reaches its batch or all it holds; so the first direct
//! reclaim under real pressure prunes the children's unused entries (and with them their
//! directories) in one pass at a low priority value.
//!
//! What reclaim made back counts as progress: here the slab pages freed when the last
//! objects of a slab go (`reclaim_state->reclaimed_slab`). Progress is what lets
//! `__alloc_pages_direct_reclaim` drain the per-CPU lists; with none, the allocator goes on
//! to the OOM killer. The kernel frees dentries and inodes after an RCU grace period, so
//! whether their slab pages are credited to the reclaiming task depends on whose context
//! runs the RCU callbacks; the model frees them at once and credits the reclaimer, and
//! kswapd (which finds nothing to do on this model's nodes) shrinks nothing.

use crate::gfp::Gfp;
use crate::mmzone::NodeStatItem;
use crate::vmstat::VmEventItem;
use crate::Kernel;

/// `DEF_PRIORITY`: reclaim scans 1/2^priority of what it could.
pub const DEF_PRIORITY: u32 = 12;
/// `SWAP_CLUSTER_MAX`: direct reclaim's target (`sc->nr_to_reclaim`).
pub const SWAP_CLUSTER_MAX: u64 = 32;
/// `DEFAULT_SEEKS`: the cost of recreating a dentry or inode.
const DEFAULT_SEEKS: i64 = 2;
/// A superblock shrinker's batch (`alloc_super`: `s_shrink.batch`).
const SB_SHRINK_BATCH: i64 = 1024;

impl Kernel {
    /// `try_to_free_pages()` → `do_try_to_free_pages()` for an allocation with `gfp`: the
    /// pages reclaimed (here: slab pages the shrinker freed).
    pub fn try_to_free_pages(&mut self, gfp: Gfp, cpu: usize) -> u64 {
        let zone = self.node.gfp_zone(gfp);
        self.node.vm_events.count_allocstall(zone);
        let mut nr_reclaimed = 0;
        for priority in (0..=DEF_PRIORITY).rev() {
            // shrink_node(): nothing on the LRU lists can go; then shrink_slab().
            nr_reclaimed += self.shrink_slab(cpu, priority);
            if nr_reclaimed >= SWAP_CLUSTER_MAX {
                break;
            }
        }
        nr_reclaimed
    }

    /// `shrink_slab()` with the slab pages its frees gave back (`reclaimed_slab`).
    fn shrink_slab(&mut self, cpu: usize, priority: u32) -> u64 {
        let slab_pages = |k: &Kernel| {
            k.node.node_page_state(NodeStatItem::NrSlabReclaimableB)
                + k.node.node_page_state(NodeStatItem::NrSlabUnreclaimableB)
        };
        let before = slab_pages(self);
        self.do_shrink_slab(cpu, priority);
        before.saturating_sub(slab_pages(self))
    }

    /// `do_shrink_slab()` on the proc superblock's shrinker: scan `freeable >> priority`
    /// (× 4 / seeks) plus the deferred work scaled by the priority, capped at twice what it
    /// holds, in batches while a whole batch or everything is due; what was not done is
    /// deferred to the next call.
    fn do_shrink_slab(&mut self, cpu: usize, priority: u32) {
        let freeable = self.proc_super_cache_count() as i64;
        if freeable == 0 {
            return;
        }
        let nr = std::mem::take(&mut self.mm.proc_sb.nr_deferred);
        let delta = (freeable >> priority) * 4 / DEFAULT_SEEKS;
        let mut total_scan = ((nr >> priority) + delta).min(2 * freeable);
        let mut scanned = 0;
        while total_scan >= SB_SHRINK_BATCH || total_scan >= freeable {
            let nr_to_scan = SB_SHRINK_BATCH.min(total_scan);
            self.proc_super_cache_scan(cpu, nr_to_scan as u64);
            self.node.vm_events[VmEventItem::SlabsScanned] += nr_to_scan as u64;
            total_scan -= nr_to_scan;
            scanned += nr_to_scan;
        }
        let next_deferred = (nr + delta - scanned).clamp(0, 2 * freeable);
        self.mm.proc_sb.nr_deferred += next_deferred;
    }
}
