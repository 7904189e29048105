//! The zoned buddy allocator of Linux 6.1 (`mm/page_alloc.c`), as the 6.1.y stable kernels
//! of the reference boots run it.
//!
//! Free memory lives in per-zone buddy lists, one per order (0..=10) and migrate type, with
//! all bookkeeping inside the page descriptors. Small allocations go through per-CPU lists
//! that are refilled and drained in batches. An allocation walks the zonelist from the highest
//! zone its gfp mask allows, checks each zone against a watermark plus the lowmem reserve, and
//! takes pages from the pcp list or the buddy lists, falling back to other migrate types by
//! stealing pageblocks. Each mechanism has its own file, under the kernel's function names:
//!
//! - `init`: building the node (`free_area_init`, `memmap_init`), boot frees, zonelists.
//! - `deferred`: DEFERRED_STRUCT_PAGE_INIT's `first_deferred_pfn` and the pageblock types
//!   it leaves (64-bit).
//! - `buddy`: `__rmqueue_smallest`, `expand`, `__free_one_page`, `move_freepages_block`.
//! - `fallback`: `__rmqueue_fallback`, stealing, watermark boost, the highatomic reserve.
//! - `pcp`: per-CPU lists, `rmqueue_bulk`, `free_pcppages_bulk`, batch/high sizing, drains.
//! - `watermark`: `__zone_watermark_ok`, `min_free_kbytes`, watermarks, lowmem reserve,
//!   sysctls.
//! - `alloc` / `free`: the public entry points, the zonelist walk and the slow path.
//! - `report`: `warn_alloc` and `show_free_areas` text.
//!
//! The allocator never touches page contents: zeroing (`__GFP_ZERO`, `init_on_alloc`) is the
//! caller's job, because a highmem page can only be written through a temporary mapping.

mod alloc;
mod buddy;
mod deferred;
mod fallback;
mod free;
mod init;
mod kswapd;
mod pcp;
mod report;
mod watermark;

pub use alloc::{AllocFailure, AllocFailureKind, AllocatedPages};
pub use free::FreeError;
pub use init::{InitError, NodeConfig};
pub use kswapd::Reclaimd;
pub use pcp::{nr_pcp_free, order_to_pindex, pcp_allowed_order, pindex_to_order, zone_batchsize};
pub use watermark::{int_sqrt, SysctlError, MIN_PERCPU_PAGELIST_HIGH_FRACTION};

/// Free Page Internal flags (`fpi_t`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fpi(u32);

impl Fpi {
    /// `FPI_NONE`.
    pub const NONE: Fpi = Fpi(0);
    /// `FPI_SKIP_REPORT_NOTIFY` (page reporting is not modelled; kept for the call sites).
    pub const SKIP_REPORT_NOTIFY: Fpi = Fpi(1 << 0);
    /// `FPI_TO_TAIL`: put the (merged) block at the tail of its free list.
    pub const TO_TAIL: Fpi = Fpi(1 << 1);

    pub fn contains(self, other: Fpi) -> bool {
        self.0 & other.0 == other.0
    }
}

impl core::ops::BitOr for Fpi {
    type Output = Fpi;
    fn bitor(self, rhs: Fpi) -> Fpi {
        Fpi(self.0 | rhs.0)
    }
}

/// A node over the single memory range `memory` with PAE's pageblock order and THP, as the
/// unit tests build it.
#[cfg(test)]
pub(crate) fn test_node(
    max_zone_pfn: [u64; crate::mmzone::MAX_NR_ZONES],
    memory: (u64, u64),
    nr_cpus: usize,
) -> crate::mmzone::PgData {
    let cfg = NodeConfig {
        max_zone_pfn,
        memory: vec![memory],
        nr_cpus,
        pageblock_order: 9,
        thp: true,
        zone_model: crate::mmzone::ZoneModel::I386,
        dma_reserve: 0,
    };
    crate::mmzone::PgData::new(&cfg).expect("node").0
}

/// `CONFIG_PCP_BATCH_SCALE_MAX` of the reference config.
pub const PCP_BATCH_SCALE_MAX: i16 = 5;
/// `MAX_RECLAIM_RETRIES`: the slow path gives up after this many rounds without progress,
/// and kswapd on a node after this many failed runs (zoneinfo's `node_unreclaimable`).
pub const MAX_RECLAIM_RETRIES: u32 = 16;
