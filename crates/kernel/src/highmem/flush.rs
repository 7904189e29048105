//! TLB flushes of the highmem paths, made hard to forget.
//!
//! Every PTE change here that could leave a translation cached returns a [`FlushToken`]
//! marked `#[must_use]`: dropping it without saying how it is flushed is a compiler
//! warning (and `-D warnings` makes it an error). The token is spent by a local INVLPG, by
//! the one cross-CPU function [`tlb_shootdown`], or by [`FlushToken::deferred`] where the
//! kernel deliberately leaves the entry (pkmap's lazy unmap, which the wrap flush covers).

use machine::{CpuError, Machine, VirtAddr, PAGE_SIZE};

/// `tlb_single_page_flush_ceiling`: above this many pages a range flush is a full flush.
pub const TLB_SINGLE_PAGE_FLUSH_CEILING: u64 = 33;

/// A range of kernel virtual addresses whose PTEs changed and whose TLB entries may be
/// stale on some CPU.
#[must_use = "a PTE changed: flush the TLB (local, tlb_shootdown) or call deferred()"]
#[derive(Debug, PartialEq, Eq)]
pub struct FlushToken {
    start: u64,
    end: u64,
}

impl FlushToken {
    /// One page at `va`.
    pub fn page(va: u64) -> Self {
        let start = va & !(PAGE_SIZE - 1);
        FlushToken {
            start,
            end: start + PAGE_SIZE,
        }
    }

    /// The union of two pending ranges.
    pub fn merge(self, other: FlushToken) -> Self {
        FlushToken {
            start: self.start.min(other.start),
            end: self.end.max(other.end),
        }
    }

    /// `flush_tlb_one_kernel()`: INVLPG on `cpu` only.
    #[inline]
    pub fn local(self, m: &mut Machine, cpu: usize) -> Result<(), CpuError> {
        let mut va = self.start;
        while va < self.end {
            m.invlpg(cpu, VirtAddr::new(va))?;
            va += PAGE_SIZE;
        }
        Ok(())
    }

    /// The kernel leaves this entry in the TLBs on purpose (documented at the call).
    pub fn deferred(self) {}

    pub fn range(&self) -> (u64, u64) {
        (self.start, self.end)
    }
}

/// What one shootdown did.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Shootdown {
    pub initiator: usize,
    /// CPUs interrupted by an IPI (every target but the initiator).
    pub interrupted: Vec<usize>,
    /// Full flush (range above the ceiling) or INVLPG per page.
    pub full: bool,
}

/// Counters of [`tlb_shootdown`].
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ShootdownStats {
    pub shootdowns: u64,
    pub ipis: u64,
    /// Per CPU: flushes done on behalf of a shootdown (full or per-page, one per event).
    pub per_cpu: Vec<u64>,
    pub last: Option<Shootdown>,
}

/// `flush_tlb_kernel_range()`: the only cross-CPU flush of the model's highmem code.
/// Every online CPU flushes the token's range (the initiator directly, the others through
/// an IPI, which is counted): a full flush above 33 pages, INVLPG per page otherwise.
pub fn tlb_shootdown(
    m: &mut Machine,
    stats: &mut ShootdownStats,
    initiator: usize,
    token: FlushToken,
) -> Result<Shootdown, CpuError> {
    let ncpus = m.cpus.len();
    if stats.per_cpu.len() < ncpus {
        stats.per_cpu.resize(ncpus, 0);
    }
    let pages = (token.end - token.start) / PAGE_SIZE;
    let full = pages > TLB_SINGLE_PAGE_FLUSH_CEILING;
    let mut interrupted = Vec::new();
    for cpu in 0..ncpus {
        if cpu != initiator {
            interrupted.push(cpu);
            stats.ipis += 1;
        }
        if full {
            m.flush_all(cpu)?;
        } else {
            let mut va = token.start;
            while va < token.end {
                m.invlpg(cpu, VirtAddr::new(va))?;
                va += PAGE_SIZE;
            }
        }
        stats.per_cpu[cpu] += 1;
    }
    stats.shootdowns += 1;
    let s = Shootdown {
        initiator,
        interrupted,
        full,
    };
    stats.last = Some(s.clone());
    Ok(s)
}
