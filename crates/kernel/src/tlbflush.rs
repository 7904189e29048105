//! Kernel TLB flushing (arch/x86/mm/tlb.c): flush tokens and the one shootdown path.
//!
//! Every change the page-table cursor makes to a kernel entry that was present returns a
//! [`TlbFlush`] for the virtual range it covered. The token is `#[must_use]`: dropping it
//! unflushed is a compiler warning, as with the `x86_64` crate's `MapperFlush`. The holder
//! flushes it on one CPU ([`TlbFlush::flush_local`], INVLPG per page like
//! `flush_tlb_one_kernel`), on every CPU ([`TlbFlush::flush_kernel_range`],
//! `flush_tlb_kernel_range`), or hands the responsibility on explicitly with
//! [`TlbFlush::defer`] (vunmap's lazy purge, which batches many ranges into one flush).
//!
//! Flushing across CPUs goes through [`flush_tlb_kernel_range`] / [`flush_tlb_all`] only:
//! they run the flush on every online CPU (the initiator locally, the others by IPI, as
//! `on_each_cpu()` does) and record in [`TlbShootdowns`] which CPUs were interrupted.

use machine::{CpuError, Machine, VirtAddr, PAGE_SIZE};
use std::collections::VecDeque;

/// `tlb_single_page_flush_ceiling`: ranges of more pages than this are flushed whole.
pub const TLB_SINGLE_PAGE_FLUSH_CEILING: u64 = 33;

/// How many shootdowns [`TlbShootdowns`] keeps for inspection.
pub const SHOOTDOWN_HISTORY: usize = 64;

/// A kernel virtual range whose old translations may still sit in TLBs.
///
/// Forgetting it is a warning (an error under `deny(unused_must_use)`):
///
/// ```compile_fail
/// #![deny(unused_must_use)]
/// fn forget() {
///     kernel::tlbflush::TlbFlush::page(0xf780_0000);
/// }
/// ```
#[must_use = "a changed kernel entry may still be cached in a TLB: flush the token or defer() it"]
#[derive(Debug, PartialEq, Eq)]
pub struct TlbFlush {
    start: u64,
    end: u64,
}

impl TlbFlush {
    /// Nothing to flush (an entry went from not-present to present: x86 caches no
    /// not-present translations).
    pub const fn none() -> Self {
        TlbFlush { start: 0, end: 0 }
    }
    /// The range `[start, end)`.
    pub const fn range(start: u64, end: u64) -> Self {
        if end <= start {
            TlbFlush::none()
        } else {
            TlbFlush { start, end }
        }
    }
    /// One page.
    pub const fn page(va: u64) -> Self {
        let s = va & !(PAGE_SIZE - 1);
        TlbFlush::range(s, s + PAGE_SIZE)
    }
    pub const fn is_empty(&self) -> bool {
        self.start == self.end
    }
    pub const fn start(&self) -> u64 {
        self.start
    }
    pub const fn end(&self) -> u64 {
        self.end
    }
    /// The smallest range covering both tokens.
    pub fn merge(self, other: TlbFlush) -> TlbFlush {
        match (self.is_empty(), other.is_empty()) {
            (true, _) => other,
            (_, true) => self,
            _ => TlbFlush::range(self.start.min(other.start), self.end.max(other.end)),
        }
    }
    /// The caller takes over the flush (lazy vunmap: the range is purged in a batch later).
    /// Returns the range so it can be recorded.
    pub fn defer(self) -> (u64, u64) {
        (self.start, self.end)
    }
    /// Flush on one CPU only (`__flush_tlb_one_kernel` per page, or a full flush past the
    /// ceiling): for mappings no other CPU can have used, e.g. during early boot.
    pub fn flush_local(self, m: &mut Machine, cpu: usize) -> Result<(), CpuError> {
        if self.is_empty() {
            return Ok(());
        }
        crate::trace::shootdown(cpu, cpu, self.pages(), TLB_SINGLE_PAGE_FLUSH_CEILING);
        if self.pages() > TLB_SINGLE_PAGE_FLUSH_CEILING {
            return m.flush_all(cpu);
        }
        let mut a = self.start;
        while a < self.end {
            m.invlpg(cpu, VirtAddr::new(a))?;
            a += PAGE_SIZE;
        }
        Ok(())
    }
    /// `flush_tlb_kernel_range()` on every CPU.
    pub fn flush_kernel_range(
        self,
        m: &mut Machine,
        sd: &mut TlbShootdowns,
        initiator: usize,
    ) -> Result<(), CpuError> {
        if self.is_empty() {
            return Ok(());
        }
        flush_tlb_kernel_range(m, sd, initiator, self.start, self.end)
    }
    /// `flush_tlb_all()` if anything changed (CPA's flush of a large change).
    pub fn flush_all_cpus(
        self,
        m: &mut Machine,
        sd: &mut TlbShootdowns,
        initiator: usize,
    ) -> Result<(), CpuError> {
        if self.is_empty() {
            return Ok(());
        }
        flush_tlb_all(m, sd, initiator)
    }
    fn pages(&self) -> u64 {
        (self.end - self.start).div_ceil(PAGE_SIZE)
    }
}

/// One cross-CPU flush.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Shootdown {
    /// The CPU that asked (it flushes itself without an interrupt).
    pub initiator: usize,
    /// The range, or None for `flush_tlb_all`.
    pub range: Option<(u64, u64)>,
    /// Whether every CPU flushed its whole TLB (range past the ceiling, or flush_tlb_all).
    pub full: bool,
    /// The CPUs interrupted by a flush IPI.
    pub interrupted: Vec<usize>,
}

/// Cross-CPU flush accounting.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct TlbShootdowns {
    /// Shootdowns so far.
    pub count: u64,
    /// Of which full flushes.
    pub full: u64,
    /// IPIs sent (CPUs interrupted, summed).
    pub ipis: u64,
    /// Per CPU: flushes done as part of a shootdown (the initiator's own included).
    pub per_cpu: Vec<u64>,
    /// The most recent shootdowns, oldest first.
    pub recent: VecDeque<Shootdown>,
}

impl TlbShootdowns {
    fn record(&mut self, s: Shootdown) {
        self.count += 1;
        self.full += u64::from(s.full);
        self.ipis += s.interrupted.len() as u64;
        for &cpu in s.interrupted.iter().chain(std::iter::once(&s.initiator)) {
            if self.per_cpu.len() <= cpu {
                self.per_cpu.resize(cpu + 1, 0);
            }
            self.per_cpu[cpu] += 1;
        }
        if self.recent.len() == SHOOTDOWN_HISTORY {
            self.recent.pop_front();
        }
        self.recent.push_back(s);
    }
    /// The last shootdown.
    pub fn last(&self) -> Option<&Shootdown> {
        self.recent.back()
    }
}

/// `on_each_cpu(func)`: the initiator runs it locally, every other CPU gets an IPI.
fn on_each_cpu(
    m: &mut Machine,
    initiator: usize,
    mut func: impl FnMut(&mut Machine, usize) -> Result<(), CpuError>,
) -> Result<Vec<usize>, CpuError> {
    func(m, initiator)?;
    let mut interrupted = Vec::new();
    for cpu in 0..m.cpus.len() {
        if cpu != initiator {
            func(m, cpu)?;
            interrupted.push(cpu);
        }
    }
    Ok(interrupted)
}

/// `flush_tlb_kernel_range(start, end)`: more than `tlb_single_page_flush_ceiling` pages →
/// `do_flush_tlb_all` on each CPU, else `flush_tlb_one_kernel` of every page on each CPU.
pub fn flush_tlb_kernel_range(
    m: &mut Machine,
    sd: &mut TlbShootdowns,
    initiator: usize,
    start: u64,
    end: u64,
) -> Result<(), CpuError> {
    let full = (end - start) > TLB_SINGLE_PAGE_FLUSH_CEILING * PAGE_SIZE;
    let interrupted = on_each_cpu(m, initiator, |m, cpu| {
        crate::trace::shootdown(
            initiator,
            cpu,
            (end - start).div_ceil(PAGE_SIZE),
            TLB_SINGLE_PAGE_FLUSH_CEILING,
        );
        if full {
            return m.flush_all(cpu);
        }
        let mut a = start & !(PAGE_SIZE - 1);
        while a < end {
            m.invlpg(cpu, VirtAddr::new(a))?;
            a += PAGE_SIZE;
        }
        Ok(())
    })?;
    sd.record(Shootdown {
        initiator,
        range: Some((start, end)),
        full,
        interrupted,
    });
    Ok(())
}

/// `flush_tlb_all()`: a full flush (globals included) on every CPU.
pub fn flush_tlb_all(
    m: &mut Machine,
    sd: &mut TlbShootdowns,
    initiator: usize,
) -> Result<(), CpuError> {
    let interrupted = on_each_cpu(m, initiator, |m, cpu| {
        crate::trace::shootdown(initiator, cpu, u64::MAX, 0);
        m.flush_all(cpu)
    })?;
    sd.record(Shootdown {
        initiator,
        range: None,
        full: true,
        interrupted,
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_and_empty() {
        let a = TlbFlush::page(0x1234);
        assert_eq!((a.start(), a.end()), (0x1000, 0x2000));
        let b = TlbFlush::range(0x5000, 0x6000);
        let m = a.merge(b);
        assert_eq!(m.defer(), (0x1000, 0x6000));
        assert!(TlbFlush::none().merge(TlbFlush::none()).is_empty());
        assert!(TlbFlush::range(5, 5).is_empty());
    }
}
