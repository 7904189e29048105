//! The TLB's part of a fault run ([`crate::slot::FaultRun`]): the first touch of a page
//! whose set is full of other valid pages, and the retry's fill of that same set after
//! the fault, with nothing in between that could change the set. That is a streaming
//! reader's every page once the TLB has filled up, and the two steps then need neither
//! the quick miss's walk of the set for the page's way nor its tests for an invalid one.

use super::{QuickCounts, Tlb, FAST, TAG_INDEX};

impl Tlb {
    /// Whether a run over the 4 KiB pages of `[lo, hi)` (`lo < hi`) with the remembered
    /// slot step of slot page `slot` (none for a PTE page in the direct map) stays where the
    /// run's steps apply: a geometry that
    /// evicts (the unbounded one spills, which widens the span of large pages to
    /// everything), and neither the pages nor the slot in the span of large pages (their
    /// entries can then only be in the 4 KiB array, and a run's fills, all 4 KiB, never
    /// widen it).
    pub(crate) fn run_fits(&self, lo: u64, hi: u64, slot: Option<u64>) -> bool {
        let big_hi = self.big_lo.saturating_add(self.big_span);
        self.geometry.evicts()
            && slot.is_none_or(|s| !self.near_big(s))
            && (hi - 1 < self.big_lo || lo > big_hi)
    }

    /// The index bits that set a page's set and front entry apart from another's (both
    /// masks are low bits of the page number): a page that differs from the slot's in
    /// them leaves the slot's set and front entry as they were.
    pub(crate) fn run_apart_mask(&self) -> u64 {
        self.classes[0].set_mask as u64 & (FAST as u64 - 1)
    }

    /// A first touch of `lin` in a run, with fast tag `tag`: `false`, having changed
    /// nothing, unless the front table misses and the page's set holds four valid entries
    /// of other pages; then the page's invalidation that its #PF makes (its front entry
    /// cleared, as [`Tlb::miss_absent`] clears it) and `true`.
    #[inline(always)]
    pub(crate) fn run_touch(&mut self, lin: u64, tag: usize) -> bool {
        // Outside the span of large pages (`run_fits`), only the front table can hit.
        if self.front_hit(lin, tag).is_some() {
            return false;
        }
        let (page, threshold) = (lin & !0xfff, self.threshold);
        let set = self.classes[0].set_at(lin >> 12);
        if !set.iter().all(|s| s.page != page && s.stamp >= threshold) {
            return false;
        }
        self.fast.clear(page);
        true
    }

    /// The retry's fill of `lin` after [`Self::run_touch`] found its set full (nothing has
    /// touched the set since): the entry at `base` with packed bits `b` replaces the
    /// victim, as [`Tlb::scan_fill`] replaces it in a full set. `false`, having changed
    /// nothing, where the entry refuses an access of fast tag `tag` (the full path then
    /// takes the retry).
    #[inline(always)]
    pub(crate) fn run_fill(
        &mut self,
        lin: u64,
        base: u64,
        b: u64,
        tag: usize,
        counts: &mut QuickCounts,
    ) -> bool {
        let deny = self.deny[(b & TAG_INDEX) as usize];
        if tag != 0 && deny >> (tag & 3) & 1 != 0 {
            return false;
        }
        // A run's geometry evicts (`run_fits`).
        counts.misses += 1;
        self.evict_4k(lin, base, b, deny, counts);
        true
    }
}
