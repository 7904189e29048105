//! The SLUB allocator of Linux 6.1 (`mm/slub.c`, `mm/slab_common.c`, `include/linux/slab.h`).
//!
//! Small kernel objects come from *caches* (`kmem_cache`) of equal-sized objects. A cache
//! carves *slabs* — compound PG_slab blocks of 2^order low-memory pages from the buddy
//! allocator — into objects. Each CPU allocates from its own slab (`kmem_cache_cpu`: a
//! lockless freelist and the slab it belongs to); a node keeps the partially used slabs
//! (`kmem_cache_node`); full slabs are not tracked at all, exactly as SLUB does without
//! debugging. The slab order and objects per slab come from SLUB's own `calculate_order`,
//! whose `slub_min_objects` grows with the number of CPUs, so a 2-CPU machine gets bigger
//! slabs than a 1-CPU one, as the reference kernels' `/proc/slabinfo` shows.
//!
//! Files, under the kernel's names:
//! - `cache`: `kmem_cache` with `calculate_alignment`, `calculate_sizes`, `calculate_order`,
//!   `oo_make`, cache merging (`find_mergeable`), `kmem_cache_create` / `_destroy`.
//! - `slub`: `slab_alloc_node`, `___slab_alloc`, `new_slab` / `allocate_slab` (with the
//!   shuffled freelist of SLAB_FREELIST_RANDOM), `deactivate_slab`, `__slab_free`,
//!   `discard_slab`, `kmem_cache_shrink`.
//! - `kmalloc`: the kmalloc caches of each type (`kmalloc-*`, `kmalloc-cg-*`,
//!   `kmalloc-rcl-*`, `dma-kmalloc-*`), `kmalloc` / `kzalloc` / `kfree`, `kmalloc_large`.
//! - `caches`: the named caches the kernel creates at boot for tasks and memory maps.
//! - `freeptr`: the free pointer's width and hardened encoding per architecture.
//!
//! **Where the freelists live.** Free objects are chained through a pointer stored *inside
//! each free object* in simulated RAM, at the cache's `offset` (the middle of the object, or
//! just past it for caches with a constructor or RCU freeing), encoded as
//! SLAB_FREELIST_HARDENED does (`ptr ^ s->random ^ swab(&ptr)`). Addresses are `u64`
//! throughout; the pointer's width (4 bytes and `swab32` on i386, 8 and `swab64` on
//! x86_64) and the direct map's PAGE_OFFSET come from the kernel's configuration
//! ([`FreePtr`]). That keeps the model's
//! memory image the kernel's: a use-after-free write corrupts the next allocation as it
//! would on the real machine, and the Rust side holds O(slabs), not O(objects), state. The
//! kernel reaches slab memory through the direct map, i.e. by physical address (slab pages
//! are always low memory). Bad frees: interior pointers, wrong caches and non-slab
//! addresses are always refused; a double free is caught by the hardened free pointer's
//! naive check (the object is the freelist head) and, with slub_debug on
//! ([`crate::Kernel::set_slub_debug`]), by a per-slab bitmap of allocated objects, reported
//! with SLUB's debug text as an error instead of silently corrupting the freelist. kfree's
//! fast path finds the slab through a lowmem pfn → slab side table kept with PG_slab.
//!
//! **Deliberate differences.** No per-CPU partial lists (SLUB_CPU_PARTIAL): a slab freed
//! into from full goes straight to the node partial list, as SLUB does for caches without
//! CPU partials. The random numbers (freelist order, `s->random`) come from a seeded
//! generator, so runs are reproducible. Caches are created without allocating their own
//! descriptors from `kmem_cache` (their metadata is Rust-side), so boot consumes no pages.

mod cache;
mod caches;
mod check;
mod freeptr;
mod kmalloc;
mod slub;

use std::fmt;

use bitflags::bitflags;

pub use cache::{calc_slab_order, calculate_alignment, calculate_order, KmemCache, Oo};
pub use caches::{
    boot_cache_specs, boot_cache_specs_for, boot_cache_specs_x86_64, CacheSpec, BOOT_CACHE_NAMES,
};
pub use check::check_slab;
pub use freeptr::FreePtr;
pub use kmalloc::{
    kmalloc_index, kmalloc_type, KmallocType, KMALLOC_MAX_CACHE_SIZE, KMALLOC_SHIFT_HIGH,
    KMALLOC_SHIFT_LOW, ZERO_SIZE_PTR,
};
pub use slub::SlabInfo;

bitflags! {
    /// `slab_flags_t` bits of v6.1 (`include/linux/slab.h`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct SlabFlags: u32 {
        const CONSISTENCY_CHECKS = 0x0000_0100;
        const RED_ZONE = 0x0000_0400;
        const POISON = 0x0000_0800;
        const KMALLOC = 0x0000_1000;
        const HWCACHE_ALIGN = 0x0000_2000;
        const CACHE_DMA = 0x0000_4000;
        const CACHE_DMA32 = 0x0000_8000;
        const STORE_USER = 0x0001_0000;
        const RECLAIM_ACCOUNT = 0x0002_0000;
        const PANIC = 0x0004_0000;
        const TYPESAFE_BY_RCU = 0x0008_0000;
        const MEM_SPREAD = 0x0010_0000;
        const TRACE = 0x0020_0000;
        const DEBUG_OBJECTS = 0x0040_0000;
        const NOLEAKTRACE = 0x0080_0000;
        const FAILSLAB = 0x0200_0000;
        const ACCOUNT = 0x0400_0000;
    }
}

impl SlabFlags {
    /// `SLAB_NEVER_MERGE`: caches with these flags are never merged.
    pub const NEVER_MERGE: SlabFlags = SlabFlags::RED_ZONE
        .union(SlabFlags::POISON)
        .union(SlabFlags::STORE_USER)
        .union(SlabFlags::TRACE)
        .union(SlabFlags::TYPESAFE_BY_RCU)
        .union(SlabFlags::NOLEAKTRACE)
        .union(SlabFlags::FAILSLAB);
    /// `SLAB_MERGE_SAME`: merged caches must agree on these.
    pub const MERGE_SAME: SlabFlags = SlabFlags::RECLAIM_ACCOUNT
        .union(SlabFlags::CACHE_DMA)
        .union(SlabFlags::CACHE_DMA32)
        .union(SlabFlags::ACCOUNT);
}

/// `cache_line_size()`: `boot_cpu_data.x86_cache_alignment`. The reference CPU (QEMU's
/// qemu32) has no CLFLUSH, so the 32-bit default of 32 bytes stays (signal_cache's 736-byte
/// objects show it).
pub const CACHE_LINE_SIZE: u32 = 32;
/// `L1_CACHE_BYTES` (X86_L1_CACHE_SHIFT 6 on 686), the alignment fork_init gives task_struct.
pub const L1_CACHE_BYTES: u32 = 64;
/// `ARCH_SLAB_MINALIGN` = `__alignof__(unsigned long long)` = 8 with i386 GCC.
pub const ARCH_SLAB_MINALIGN: u32 = 8;
/// `ARCH_KMALLOC_MINALIGN`.
pub const ARCH_KMALLOC_MINALIGN: u32 = 8;
/// `slub_max_order` = `PAGE_ALLOC_COSTLY_ORDER`.
pub const SLUB_MAX_ORDER: u32 = 3;
/// `MAX_OBJS_PER_PAGE`: `slab->objects` is a 15-bit field.
pub const MAX_OBJS_PER_PAGE: u32 = 32767;
/// `MIN_PARTIAL` / `MAX_PARTIAL`: bounds of `s->min_partial`.
pub const MIN_PARTIAL: u32 = 5;
pub const MAX_PARTIAL: u32 = 10;

/// A cache, as `struct kmem_cache *` (an index into the kernel's cache table).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CacheId(pub u32);

/// Why a slab operation failed, with the kernel's text.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SlabError {
    /// No memory: the page allocator's report and SLUB's `slab_out_of_memory` lines (empty
    /// with __GFP_NOWARN), also written to the kernel log.
    #[error("{}", .report.first().map(String::as_str).unwrap_or("SLUB: Unable to allocate memory"))]
    NoMemory { report: Vec<String> },
    /// A free the kernel would BUG or WARN on (bad pointer, double free, wrong cache).
    #[error("{}", .0.join("\n"))]
    BadFree(Vec<String>),
    /// `kmem_cache_create` refused the parameters, or a cache id that names no live cache.
    #[error("{0}")]
    BadCache(String),
    /// `kmem_cache_destroy` of a cache that still has objects (the kernel WARNs and leaks it).
    #[error("{0}")]
    Busy(String),
}

/// SLUB's debug banner around a report (`slab_bug()`), as the kernel prints it.
pub(crate) fn slab_bug(cache: &str, text: &str) -> Vec<String> {
    vec![
        "=".repeat(77),
        format!("BUG {cache} (Not tainted): {text}"),
        "-".repeat(77),
    ]
}

/// The slab allocator's state: every cache ever created (destroyed ones stay as dead
/// entries so ids stay valid), the slab descriptors, and the kmalloc cache table.
#[derive(Clone, Debug)]
pub struct Slub {
    pub(crate) caches: Vec<KmemCache>,
    pub(crate) slabs: slub::SlabTable,
    /// `kmalloc_large` allocations: head pfn → order.
    pub(crate) large: std::collections::BTreeMap<u64, u32>,
    /// `kmalloc_caches[type][index]`.
    pub(crate) kmalloc_caches: [[Option<CacheId>; KMALLOC_SHIFT_HIGH as usize + 1]; 4],
    /// `num_present_cpus()` / `nr_cpu_ids` at boot.
    pub nr_cpus: usize,
    /// `init_on_alloc` (INIT_ON_ALLOC_DEFAULT_ON): objects are zeroed when allocated.
    pub init_on_alloc: bool,
    /// `PAGE_OFFSET` and `max_low_pfn`: the direct map every slab lives in.
    pub page_offset: u64,
    pub max_low_pfn: u64,
    /// `sizeof(void *)` and `swab()` of the architecture: every cache's free pointer.
    pub fp: FreePtr,
    /// Seeded generator standing in for `get_random_*()`.
    rng: u64,
    /// slub_debug's consistency checks (`F`): an allocated-object bitmap per slab that
    /// catches every double and invalid free. Off (as on a production kernel) the free
    /// path has the hardened free pointer's naive check only. Switch with
    /// [`crate::Kernel::set_slub_debug`].
    pub(crate) debug: bool,
    /// Lowmem pfn → `(slab index + 1) | cache << 32` of the slab it belongs to, 0 for
    /// none: what mem_map's PG_slab and `slab->slab_cache` say, as one load for kfree's
    /// fast path.
    pub(crate) pfn_slab: Vec<u64>,
}

impl Slub {
    /// `kmem_cache_init()` for the kernel `cfg` on the direct map of `layout`: see
    /// [`Slub::boot_direct_map`].
    pub fn boot(
        nr_cpus: usize,
        cfg: &crate::config::KernelConfig,
        layout: &crate::layout::Layout,
        init_on_alloc: bool,
    ) -> Slub {
        let max_low_pfn = layout.max_low_pfn.as_u64();
        Slub::boot_direct_map(nr_cpus, cfg, max_low_pfn, init_on_alloc)
    }

    /// `kmem_cache_init()`: the bootstrap caches, then `create_kmalloc_caches()`, then the
    /// named caches of the boot in their creation order. Slabs live in the direct map below
    /// `max_low_pfn`, at the PAGE_OFFSET of `cfg`'s architecture, with its free pointers.
    pub fn boot_direct_map(
        nr_cpus: usize,
        cfg: &crate::config::KernelConfig,
        max_low_pfn: u64,
        init_on_alloc: bool,
    ) -> Slub {
        let mut s = Slub {
            caches: Vec::new(),
            slabs: slub::SlabTable::default(),
            large: std::collections::BTreeMap::new(),
            kmalloc_caches: [[None; KMALLOC_SHIFT_HIGH as usize + 1]; 4],
            nr_cpus: nr_cpus.max(1),
            init_on_alloc,
            page_offset: direct_map_offset(cfg),
            max_low_pfn,
            fp: FreePtr::of(cfg.arch),
            rng: 0x5eed_51ab_c0ff_ee01,
            debug: false,
            pfn_slab: vec![0; max_low_pfn as usize],
        };
        for spec in caches::bootstrap_specs(cfg.arch) {
            s.create_boot(&spec);
        }
        s.create_kmalloc_caches();
        for spec in boot_cache_specs_for(cfg.arch, cfg.pae) {
            s.create_boot(&spec);
        }
        s
    }

    fn create_boot(&mut self, spec: &CacheSpec) {
        // The boot specs are valid by construction; a failure would be a bug in the table.
        if let Err(e) = self.kmem_cache_create(spec) {
            debug_assert!(false, "boot cache {}: {e}", spec.name);
        }
    }

    /// Record (Some((slab, cache))) or forget the slab of the `1 << order` pages at `pfn`.
    pub(crate) fn set_pfn_slab(&mut self, pfn: u64, order: u32, slab: Option<(u32, u32)>) {
        let v = slab.map_or(0, |(sid, cache)| {
            u64::from(sid + 1) | (u64::from(cache) << 32)
        });
        let (start, end) = (pfn as usize, (pfn as usize).saturating_add(1 << order));
        let end = end.min(self.pfn_slab.len());
        if let Some(t) = self.pfn_slab.get_mut(start..end) {
            t.fill(v);
        }
    }

    /// Whether slub_debug's consistency checks are on.
    pub fn debug(&self) -> bool {
        self.debug
    }

    /// `get_random_u32()` (a xorshift generator).
    pub(crate) fn random_u32(&mut self) -> u32 {
        (self.random_step() >> 16) as u32
    }

    /// `get_random_long()`: an `unsigned long`, 32 bits on i386 (the same draw as
    /// `get_random_u32`), 64 on x86_64.
    pub(crate) fn random_long(&mut self) -> u64 {
        if self.fp.is_wide() {
            self.random_step()
        } else {
            u64::from(self.random_u32())
        }
    }

    /// One step of the xorshift generator behind both.
    fn random_step(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }

    /// The cache `id`, if it names a live one.
    pub fn cache(&self, id: CacheId) -> Option<&KmemCache> {
        self.caches.get(id.0 as usize).filter(|c| !c.dead)
    }

    /// A live cache (or merged alias) by name.
    pub fn find_cache(&self, name: &str) -> Option<CacheId> {
        self.caches
            .iter()
            .position(|c| !c.dead && (c.name == name || c.aliases.iter().any(|a| a == name)))
            .map(|i| CacheId(i as u32))
    }

    /// Pages the allocator holds: every cache's slabs and the kmalloc_large blocks.
    pub fn pages_held(&self) -> u64 {
        let slabs: u64 = self
            .caches
            .iter()
            .map(|c| c.node.nr_slabs << c.oo.order())
            .sum();
        slabs + self.large.values().map(|o| 1u64 << o).sum::<u64>()
    }

    /// Live caches, newest first (the order of `slab_caches` that /proc/slabinfo prints).
    pub fn caches_newest_first(&self) -> impl Iterator<Item = (CacheId, &KmemCache)> {
        self.caches
            .iter()
            .enumerate()
            .rev()
            .filter(|(_, c)| !c.dead)
            .map(|(i, c)| (CacheId(i as u32), c))
    }
}

/// `PAGE_OFFSET` of the kernel `cfg`: the user/kernel split's on i386, the 4-level direct
/// map's base on x86_64.
fn direct_map_offset(cfg: &crate::config::KernelConfig) -> u64 {
    match cfg.arch {
        crate::config::Arch::I386 => cfg.page_offset(),
        crate::config::Arch::X86_64 => crate::x86_64::PAGE_OFFSET_64,
    }
}

impl fmt::Display for CacheId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cache#{}", self.0)
    }
}

#[cfg(test)]
mod debug_tests {
    use crate::config::KernelConfig;
    use crate::gfp::GFP_KERNEL;
    use crate::{boot, BootOptions, Kernel};
    use machine::VirtAddr;

    fn booted() -> Kernel {
        let cfg = KernelConfig::preset("debian-686-pae").expect("preset");
        let mut opts = BootOptions::new(256 << 20, 1, cfg);
        opts.runtime_profile = false;
        boot(&opts).expect("boot")
    }

    #[test]
    fn slub_debug_catches_a_double_free_behind_the_freelist_head() {
        let mut k = booted();
        let a = k.kmalloc(64, GFP_KERNEL, 0).expect("a");
        let b = k.kmalloc(64, GFP_KERNEL, 0).expect("b");
        // Switched on with objects out: the bitmap is rebuilt from the freelists.
        k.set_slub_debug(true).expect("debug on");
        assert!(k.slab.debug());
        super::check::check_slab(&k).expect("consistent");
        k.kfree(a, 0).expect("a");
        k.kfree(b, 0).expect("b");
        // `a` is behind `b` on the CPU freelist: only the bitmap sees it.
        let e = k.kfree(a, 0).expect_err("double free").to_string();
        assert!(e.contains("Object already free"), "{e}");
        super::check::check_slab(&k).expect("consistent");
        k.set_slub_debug(false).expect("debug off");
        // Without slub_debug, the naive check still refuses the freelist head.
        let c = k.kmalloc(64, GFP_KERNEL, 0).expect("c");
        k.kfree(c, 0).expect("c");
        let e = k.kfree(c, 0).expect_err("double free").to_string();
        assert!(e.contains("Object already free"), "{e}");
        assert!(k.kfree(VirtAddr::new(c.as_u64() + 8), 0).is_err());
        super::check::check_slab(&k).expect("consistent");
    }
}
