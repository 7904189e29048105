//! Mapping high memory into the kernel (mm/highmem.c, include/linux/highmem*.h,
//! arch/x86/include/asm/highmem.h), one module per mechanism:
//!
//! - [`pkmap`]: persistent kmaps, `kmap()` / `kunmap()` over the pkmap window, with
//!   `pkmap_count`, the page_address hash, the wrap flush and sleeping on `pkmap_map_wait`;
//! - [`kmap_local`]: `kmap_local_page()` / `kmap_atomic()` of 6.1 on the per-task stack
//!   of per-CPU fixmap slots, unmapped at context switch and restored after;
//! - [`kmap_atomic`]: the slot-typed `kmap_atomic(page, KM_TYPE)` of the 2.4 / 2.5 designs;
//! - [`debug`]: the debug checks and their kernel-style reports, and a checked read;
//! - TLB flushes go through `crate::tlbflush`: `#[must_use]` tokens and the one cross-CPU
//!   shootdown shared with vmalloc and CPA.
//!
//! The kmap_local slot PTEs are one linear array in the fixmap page tables (`kmap_pte -
//! idx`): the boot allocates those page-table pages physically contiguous so this
//! arithmetic holds. All PTEs are bytes in simulated RAM and reach a CPU only through its
//! TLB and page walk, so a missing flush really serves a stale frame.

pub mod debug;
pub mod kmap_atomic;
pub mod kmap_local;
pub mod pkmap;

pub use debug::{Check, HighmemDebug, Report, Severity};
pub use pkmap::{Pkmap, PkmapCount, PkmapCounters};

use crate::config::KernelConfig;
use crate::design::KernelDesign;
use crate::layout::Layout;
use crate::pgtable::Geometry;
use crate::pgtable_types::PteVal;
use machine::physmem::PTE_WINDOW_BYTES;
use machine::{AccessError, PhysAddr, PhysMem, PAGE_SIZE};

/// Why a kmap call failed: a kernel report (the BUG that would oops), or the simulated
/// hardware refusing an access.
///
/// Every payload is boxed: the error is two words, so the hot paths' `Result`s come back
/// in registers instead of through memory (the errors themselves are rare).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KmapError {
    #[error("{0}")]
    Report(Box<Report>),
    #[error("{0}")]
    Access(#[source] Box<AccessError>),
    #[error("{0}")]
    Bus(#[source] Box<machine::BusError>),
    #[error("{0}")]
    Cpu(#[source] Box<machine::CpuError>),
}

impl From<AccessError> for KmapError {
    #[cold]
    fn from(e: AccessError) -> Self {
        KmapError::Access(Box::new(e))
    }
}

impl From<machine::BusError> for KmapError {
    #[cold]
    fn from(e: machine::BusError) -> Self {
        KmapError::Bus(Box::new(e))
    }
}

impl From<machine::CpuError> for KmapError {
    #[cold]
    fn from(e: machine::CpuError) -> Self {
        KmapError::Cpu(Box::new(e))
    }
}

impl KmapError {
    /// The report, when the error is one.
    pub fn report(&self) -> Option<&Report> {
        match self {
            KmapError::Report(r) => Some(r),
            _ => None,
        }
    }

    /// The check that fired, when the error is a report.
    pub fn check(&self) -> Option<Check> {
        self.report().map(|r| r.check)
    }
}

/// Where the kmap_local slots live and how they are encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct KmapLocalArea {
    pub geo: Geometry,
    pub fixaddr_top: u64,
    pub fix_kmap_begin: u64,
    pub km_max_idx: u64,
    /// Physical address of the PTE of FIX_KMAP_BEGIN (`kmap_pte`).
    pub kmap_pte: u64,
    /// `PAGE_KERNEL` as installed (`kmap_prot`).
    pub prot: PteVal,
}

impl KmapLocalArea {
    /// `__fix_to_virt(FIX_KMAP_BEGIN + idx)`.
    pub fn slot_vaddr(&self, idx: u64) -> u64 {
        self.fixaddr_top - (self.fix_kmap_begin + idx) * PAGE_SIZE
    }
    /// Physical address of the PTE of slot `idx` (`kmap_pte - idx`).
    pub fn slot_pte(&self, idx: u64) -> PhysAddr {
        PhysAddr::new(self.kmap_pte - idx * self.geo.entry_size())
    }
}

/// Counters of kmap_local / kmap_atomic (the stacks themselves live in the tasks).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct KmapLocal {
    pub maps: u64,
    pub unmaps: u64,
    /// Slots cleared and restored by context switches.
    pub sched_out: u64,
    pub sched_in: u64,
}

impl KmapLocal {
    pub fn new(_ncpus: usize) -> Self {
        KmapLocal::default()
    }
}

/// The highmem mapping state that is not per task: the design, the pkmap pool, the debug
/// options and reports, and where the kmap_local area lies.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Highmem {
    pub design: KernelDesign,
    /// linux-6.1's `pte_offset_map`: 6.1's kmap_atomic or 6.5's kmap_local.
    pub pte_map: crate::design::PteMapApi,
    pub pkmap: Pkmap,
    pub debug: HighmemDebug,
    /// `__fix_to_virt(FIX_KMAP_END)` and `__fix_to_virt(FIX_KMAP_BEGIN)`.
    pub kmap_lo: u64,
    pub kmap_hi: u64,
    /// KM_INCR: 2 with DEBUG_KMAP_LOCAL (odd slots used, even slots guard pages).
    pub km_incr: u64,
    /// The kmap_local area precomputed for the hot paths.
    #[serde(skip)]
    pub(crate) local: LocalFast,
    /// A trace session was started through this kernel and not finished: the highmem
    /// tracepoints' gate (see `crate::trace`).
    #[serde(skip)]
    pub(crate) tracing: bool,
}

use crate::sched::{KM_PTEVAL_SLOTS, NR_CPUS_MAX};

/// What `kmap_local_page` / `kunmap_local` need of [`KmapLocalArea`], precomputed at boot
/// so the hot paths are a few loads and one entry read/write in the slot PTE array.
///
/// The slot PTEs of every CPU lie in one run of the fixmap page tables, which the boot
/// pins as the physical memory's PTE window (`PhysMem::pin_pte_window`, checked once):
/// every path indexes it by slot with no range test. The inline ("quick") paths are built
/// for the kernels distributions ship, without DEBUG_KMAP_LOCAL's guard slots (KM_INCR 1):
/// PAE's (8-byte entries) first, then 2-level paging's behind it, each on only in the
/// kernel of its entry size, as chosen at boot. Guard slots, a failed pin, or tracing turn
/// both off through their limits alone (no test of their own on the inline paths), and
/// every call then takes the out-of-line path: the window with either entry size, or —
/// unpinned — the checked accessors.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LocalFast {
    /// Per CPU `c`: slot 0 of `c` (global slot `KM_MAX_IDX * c`), its address and PTE.
    pub cpu: [LocalCpu; NR_CPUS_MAX],
    /// Per CPU, the address of each slot (`slot0_va - i * PAGE_SIZE`; 32 bits, a 32-bit
    /// kernel's), indexed as `kmap_ctrl.pteval` is, so the inline push reads it with the
    /// index it stores with (and a scale of its own: no shared byte offset to build).
    pub slot_va: [u32; KM_PTEVAL_SLOTS * NR_CPUS_MAX],
    /// 8-byte entries (else 4).
    pub pae: bool,
    /// KM_INCR.
    pub km_incr: u64,
    /// A push to index `idx` is allowed while `idx < idx_max`: KM_MAX_IDX, and no more
    /// than `kmap_ctrl.pteval` holds.
    pub idx_max: u64,
    /// The quick paths' limits with 8-byte entries and with 4-byte ones: only the kernel's
    /// own are on, and not while tracing.
    pub quick8: Quick,
    pub quick4: Quick,
    /// `quick4.slot_adj - quick8.slot_adj` (wrapping): the inline pop tests the 2-level
    /// slot as the PAE one plus this.
    pub quick4_rel: u64,
    pub prot: PteVal,
    pub pfn_mask: PteVal,
    /// The slot PTEs are in the pinned PTE window (`window_j` is valid).
    pub pinned: bool,
    /// The quick paths fit this kernel: pinned, KM_INCR 1, the slots below 4 GiB (those of
    /// its entry size run unless tracing).
    pub inline: bool,
}

/// The limits of one entry size's quick paths (`kmap_local_quick`, and the inline part of
/// `kunmap_local_indexed`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Quick {
    /// The quick push runs while `kmap_ctrl.idx < push_limit`: `idx_max - 1` while it is
    /// on, else 0 (see [`Highmem::set_tracing`]).
    pub push_limit: u64,
    /// What the quick pop adds to `kmap_ctrl.idx` to get the top slot: `u64::MAX` (−1)
    /// while it is on; else [`SLOT_OFF`], so that no slot it computes (at least 2^62) is
    /// one an address gives (below 2^52).
    pub slot_adj: u64,
}

/// [`Quick::slot_adj`] while the quick paths are off.
pub(crate) const SLOT_OFF: u64 = 1 << 62;

impl Quick {
    const OFF: Quick = Quick {
        push_limit: 0,
        slot_adj: SLOT_OFF,
    };
}

/// One CPU's kmap_local slots: slot `i` is at `slot0_va - i * PAGE_SIZE`, its PTE at
/// `slot0_pte - i * entry size`, entry `window_j - i` of the pinned PTE window.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct LocalCpu {
    pub slot0_va: u64,
    pub slot0_pte: u64,
    /// The last byte of slot 0's page: `(slot0_end - va) >> PAGE_SHIFT` (wrapping) is the
    /// slot whose page holds `va` for an address of this CPU's slots, and for any other
    /// address a number that is no slot's (every result is below 2^52).
    pub slot0_end: u64,
    /// Slot 0's PTE as an entry index of the pinned PTE window.
    pub window_j: u64,
}

impl Default for LocalFast {
    fn default() -> Self {
        LocalFast {
            cpu: [LocalCpu::default(); NR_CPUS_MAX],
            slot_va: [0; KM_PTEVAL_SLOTS * NR_CPUS_MAX],
            pae: false,
            km_incr: 1,
            idx_max: 0,
            quick8: Quick::OFF,
            quick4: Quick::OFF,
            quick4_rel: 0,
            prot: 0,
            pfn_mask: 0,
            pinned: false,
            inline: false,
        }
    }
}

impl LocalFast {
    /// The precomputed area; pins the slot PTEs of `nr_cpus` CPUs as `mem`'s PTE window
    /// (the inline paths stay off if that fails).
    fn new(area: &KmapLocalArea, km_incr: u64, nr_cpus: usize, mem: &mut PhysMem) -> Self {
        let size = area.geo.entry_size();
        let slots = area.km_max_idx * nr_cpus as u64;
        // The slot PTEs run down from slot 0's (`kmap_pte - idx`); the window must hold
        // them all: it starts at the lowest or ends just past the highest, whichever is
        // RAM of the direct map throughout (the fixmap's tables may end lowmem).
        let lowest = area.slot_pte(slots.saturating_sub(1)).as_u64() & !7;
        let top = (area.kmap_pte + size + 7) & !7;
        let window = [lowest, top.saturating_sub(PTE_WINDOW_BYTES)]
            .into_iter()
            .filter(|_| top - lowest <= PTE_WINDOW_BYTES)
            .find_map(|b| mem.pin_pte_window(PhysAddr::new(b)).ok())
            .map(|b| b.as_u64());
        let mut cpu = [LocalCpu::default(); NR_CPUS_MAX];
        let mut slot_va = [0; KM_PTEVAL_SLOTS * NR_CPUS_MAX];
        for (c, l) in cpu.iter_mut().enumerate().take(nr_cpus) {
            let g = area.km_max_idx * c as u64;
            let slot0_va = area.slot_vaddr(g);
            let slot0_pte = area.slot_pte(g).as_u64();
            *l = LocalCpu {
                slot0_va,
                slot0_pte,
                slot0_end: slot0_va + (PAGE_SIZE - 1),
                window_j: window.map_or(0, |b| (slot0_pte - b) / size),
            };
            let table = &mut slot_va[c * KM_PTEVAL_SLOTS..(c + 1) * KM_PTEVAL_SLOTS];
            for (i, va) in table.iter_mut().enumerate() {
                *va = slot0_va.wrapping_sub(i as u64 * PAGE_SIZE) as u32;
            }
        }
        let idx_max = area.km_max_idx.min(crate::sched::KM_MAX_IDX_CAP as u64 + 1);
        let mut f = LocalFast {
            cpu,
            slot_va,
            pae: size == 8,
            km_incr,
            idx_max,
            prot: area.prot,
            pfn_mask: area.geo.pfn_mask(),
            pinned: window.is_some(),
            // (The slot address table holds 32-bit addresses: slot 0 of CPU 0 is the highest.)
            inline: window.is_some() && km_incr == 1 && area.slot_vaddr(0) <= u64::from(u32::MAX),
            ..LocalFast::default()
        };
        f.set_inline(f.inline);
        f
    }

    /// Turn the quick paths of the kernel's entry size on or off (off: every call takes
    /// the general path).
    fn set_inline(&mut self, on: bool) {
        let q = Quick {
            push_limit: self.idx_max.saturating_sub(1),
            slot_adj: u64::MAX,
        };
        self.quick8 = if on && self.pae { q } else { Quick::OFF };
        self.quick4 = if on && !self.pae { q } else { Quick::OFF };
        self.quick4_rel = self.quick4.slot_adj.wrapping_sub(self.quick8.slot_adj);
    }

    /// The limits of the quick paths with `S`-byte entries.
    #[inline(always)]
    pub fn quick<const S: usize>(&self) -> &Quick {
        if S == 8 {
            &self.quick8
        } else {
            &self.quick4
        }
    }

    /// The address of CPU `cpu`'s slot `s` (below KM_PTEVAL_SLOTS).
    #[inline(always)]
    pub fn slot_va(&self, cpu: usize, s: usize) -> u64 {
        u64::from(
            self.slot_va[(cpu & (NR_CPUS_MAX - 1)) * KM_PTEVAL_SLOTS + (s & (KM_PTEVAL_SLOTS - 1))],
        )
    }

    /// CPU `cpu`'s slots (`cpu` is below `nr_cpus`, at most [`NR_CPUS_MAX`]).
    #[inline(always)]
    pub fn cpu(&self, cpu: usize) -> &LocalCpu {
        &self.cpu[cpu & (NR_CPUS_MAX - 1)]
    }
}

impl Highmem {
    /// Turn the highmem tracepoints on or off. As the kernel patches a static key's jump,
    /// this patches the data the kmap_local inline paths test: while tracing, the push
    /// limit is 0 and the top slot `kunmap_local` computes is one no address gives, so
    /// every `kmap_local_page` and `kunmap_local` takes its out-of-line path — the one
    /// that emits the event — and the inline paths carry no tracepoint test at all.
    /// (Where they do not fit the kernel they stay off either way.)
    pub(crate) fn set_tracing(&mut self, on: bool) {
        self.tracing = on;
        let l = &mut self.local;
        l.set_inline(l.inline && !on);
    }

    /// The state at boot: `pkmap_page_table` at `pkmap_table` (physical), nothing mapped;
    /// the kmap_local slot PTEs pinned as `mem`'s PTE window.
    pub fn new(
        cfg: &KernelConfig,
        layout: &Layout,
        area: &KmapLocalArea,
        pkmap_table: u64,
        mem: &mut PhysMem,
    ) -> Self {
        let slots = area.km_max_idx * u64::from(cfg.nr_cpus);
        let km_incr = if cfg.debug_kmap_local { 2 } else { 1 };
        Highmem {
            design: KernelDesign::Linux61,
            pte_map: Default::default(),
            pkmap: Pkmap::new(
                layout.areas.pkmap_base,
                layout.areas.last_pkmap,
                pkmap_table,
            ),
            debug: HighmemDebug::for_config(cfg),
            kmap_lo: area.slot_vaddr(slots - 1),
            kmap_hi: area.slot_vaddr(0),
            km_incr,
            local: LocalFast::new(area, km_incr, cfg.nr_cpus as usize, mem),
            tracing: false,
        }
    }
}

impl Highmem {
    /// A kernel without high memory (the 64-bit one): every page is in the direct map, so
    /// `kmap()` and `kmap_local_page()` return `page_address()` and there is no pkmap pool
    /// and no kmap_local slot to map (the fixmap's KM_TYPE slots do not exist on x86_64).
    pub fn without_highmem(cfg: &KernelConfig) -> Self {
        Highmem {
            design: KernelDesign::Linux61,
            pte_map: Default::default(),
            pkmap: Pkmap::new(0, 0, 0),
            debug: HighmemDebug::for_config(cfg),
            kmap_lo: 0,
            kmap_hi: 0,
            km_incr: 1,
            // No slots: every quick path off, every push refused (`idx_max` 0).
            local: LocalFast::default(),
            tracing: false,
        }
    }
}

/// `PA_HASH_ORDER`: the page_address hash has 2^7 buckets.
pub const PA_HASH_ORDER: u32 = 7;
/// `GOLDEN_RATIO_32`, the multiplier of `hash_32()`.
const GOLDEN_RATIO_32: u32 = 0x61C8_8647;

/// `hash_ptr()` on a 32-bit kernel: `hash_32(ptr, bits)`.
pub fn hash_ptr(ptr: u32, bits: u32) -> usize {
    (ptr.wrapping_mul(GOLDEN_RATIO_32) >> (32 - bits)) as usize
}

/// One `struct page_address_map`: a highmem page and its kmap() address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PageAddressMap {
    pub pfn: u64,
    pub virtual_addr: u64,
}

/// "No entry" in the page_address hash's chains.
const PA_NONE: u32 = u32::MAX;

/// One entry of the hash's pool: a [`PageAddressMap`] and the next entry of its bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
struct PaEntry {
    map: PageAddressMap,
    next: u32,
}

/// `page_address_htable` (HASHED_PAGE_VIRTUAL): where page_address() finds the persistent
/// kmap of a highmem page. Only kmap() (through map_new_virtual / flush_all_zero_pkmaps)
/// records addresses here; kmap_local and kmap_atomic mappings are invisible to it.
///
/// As in the kernel, a fixed table of 2^PA_HASH_ORDER bucket heads with the entries
/// chained through a pool (`page_address_maps[]`): a lookup is one hash, one head load
/// and a chain walk that is one entry long in practice.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PageAddressHash {
    /// Bucket heads; a fixed array, so the bucket (below 2^PA_HASH_ORDER by construction)
    /// indexes it without a bounds check.
    #[serde(serialize_with = "serialize_heads")]
    heads: [u32; 1 << PA_HASH_ORDER],
    pool: Vec<PaEntry>,
    /// Pool entries not in use.
    free: Vec<u32>,
    len: usize,
    /// Kernel virtual address of mem_map[0], so the hash sees `struct page *` as the kernel does.
    mem_map_va: u32,
    sizeof_page: u32,
}

/// The bucket heads as a sequence (serde derives arrays only up to 32 entries).
fn serialize_heads<S: serde::Serializer>(
    heads: &[u32; 1 << PA_HASH_ORDER],
    s: S,
) -> Result<S::Ok, S::Error> {
    serde::Serialize::serialize(heads.as_slice(), s)
}

impl PageAddressHash {
    pub fn new(mem_map_va: u32, sizeof_page: u32) -> Self {
        PageAddressHash {
            heads: [PA_NONE; 1 << PA_HASH_ORDER],
            pool: Vec::new(),
            free: Vec::new(),
            len: 0,
            mem_map_va,
            sizeof_page,
        }
    }

    /// The bucket of a page: `hash_ptr(page, PA_HASH_ORDER)`.
    #[inline(always)]
    pub fn bucket_of(&self, pfn: u64) -> usize {
        let page_ptr = self
            .mem_map_va
            .wrapping_add((pfn as u32).wrapping_mul(self.sizeof_page));
        hash_ptr(page_ptr, PA_HASH_ORDER)
    }

    /// The kmap() address recorded for a highmem page, if any.
    #[inline(always)]
    pub fn lookup(&self, pfn: u64) -> Option<u64> {
        let mut i = self.heads[self.bucket_of(pfn)];
        while let Some(e) = self.pool.get(i as usize) {
            if e.map.pfn == pfn {
                return Some(e.map.virtual_addr);
            }
            i = e.next;
        }
        None
    }

    /// `set_page_address(page, virtual)`: record (Some) or forget (None) a kmap() address.
    pub fn set_page_address(&mut self, pfn: u64, virtual_addr: Option<u64>) {
        let b = self.bucket_of(pfn);
        // Unlink the page's entry, if any.
        let mut prev = PA_NONE;
        let mut i = self.heads[b];
        while let Some(e) = self.pool.get(i as usize).copied() {
            if e.map.pfn == pfn {
                match self.pool.get_mut(prev as usize) {
                    Some(p) => p.next = e.next,
                    None => self.heads[b] = e.next,
                }
                self.free.push(i);
                self.len -= 1;
                break;
            }
            prev = i;
            i = e.next;
        }
        if let Some(v) = virtual_addr {
            let e = PaEntry {
                map: PageAddressMap {
                    pfn,
                    virtual_addr: v,
                },
                next: self.heads[b],
            };
            let i = match self.free.pop() {
                Some(i) => {
                    self.pool[i as usize] = e;
                    i
                }
                None => {
                    self.pool.push(e);
                    self.pool.len() as u32 - 1
                }
            };
            self.heads[b] = i;
            self.len += 1;
        }
    }

    /// Entries recorded, all buckets.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_ptr_is_the_kernels_hash_32() {
        // hash_32(0, 7) is 0; consecutive struct pages land in different buckets.
        assert_eq!(hash_ptr(0, 7), 0);
        let h = PageAddressHash::new(0xf3ad_2000, 40);
        let a = h.bucket_of(0x40000);
        let b = h.bucket_of(0x40001);
        assert!(a < 128 && b < 128);
        assert_ne!(a, b);
        assert_eq!(
            a,
            ((0xf3ad_2000u32 + 0x40000 * 40).wrapping_mul(0x61C8_8647) >> 25) as usize
        );
    }

    #[test]
    fn set_and_clear_page_address() {
        let mut h = PageAddressHash::new(0xf3ad_2000, 40);
        assert_eq!(h.lookup(0x40000), None);
        h.set_page_address(0x40000, Some(0xff00_3000));
        assert_eq!(h.lookup(0x40000), Some(0xff00_3000));
        h.set_page_address(0x40000, Some(0xff00_4000));
        assert_eq!(h.len(), 1, "a page has at most one kmap address");
        h.set_page_address(0x40000, None);
        assert!(h.is_empty());
        assert_eq!(h.lookup(0x40000), None);
    }

    #[test]
    fn chains_in_one_bucket() {
        let mut h = PageAddressHash::new(0xf3ad_2000, 40);
        // Pages 2^25 / gcd apart share a bucket: find three that do.
        let b = h.bucket_of(0x40000);
        let same: Vec<u64> = (0x40000..0x80000u64)
            .filter(|&p| h.bucket_of(p) == b)
            .take(3)
            .collect();
        assert_eq!(same.len(), 3);
        for (i, &p) in same.iter().enumerate() {
            h.set_page_address(p, Some(0xff00_0000 + i as u64 * 0x1000));
        }
        for (i, &p) in same.iter().enumerate() {
            assert_eq!(h.lookup(p), Some(0xff00_0000 + i as u64 * 0x1000));
        }
        h.set_page_address(same[1], None);
        assert_eq!(h.lookup(same[1]), None);
        assert_eq!(h.lookup(same[0]), Some(0xff00_0000));
        assert_eq!(h.lookup(same[2]), Some(0xff00_2000));
        h.set_page_address(same[2], None);
        h.set_page_address(same[0], None);
        assert!(h.is_empty());
        h.set_page_address(same[1], Some(0xff00_5000));
        assert_eq!(h.lookup(same[1]), Some(0xff00_5000));
        assert_eq!(h.len(), 1);
    }
}
