//! kmalloc on SLUB (`mm/slab_common.c`, `include/linux/slab.h`): a table of caches by size
//! class and type, filled at boot by `create_kmalloc_caches()`.
//!
//! Sizes up to 192 bytes map through `size_index` (8, 16, 32, 64, 96, 128, 192), larger
//! ones to the next power of two up to `KMALLOC_MAX_CACHE_SIZE` (two pages on SLUB); beyond
//! that `kmalloc_large` takes compound pages straight from the page allocator, accounted as
//! unreclaimable slab. The type comes from the gfp mask: `__GFP_DMA` → `dma-kmalloc-*`,
//! `__GFP_RECLAIMABLE` → `kmalloc-rcl-*`, `__GFP_ACCOUNT` → `kmalloc-cg-*` (MEMCG_KMEM).

use machine::{Pfn, VirtAddr};

use crate::gfp::{Gfp, __GFP_ACCOUNT, __GFP_COMP, __GFP_DMA, __GFP_RECLAIMABLE, __GFP_ZERO};
use crate::kernel::{Kernel, KernelAllocError};
use crate::mmzone::MAX_ORDER;
use crate::vmstat::NodeStatItem;

use super::{CacheId, CacheSpec, SlabError, SlabFlags, Slub};

/// `KMALLOC_SHIFT_LOW`: the smallest class is 8 bytes (`KMALLOC_MIN_SIZE`).
pub const KMALLOC_SHIFT_LOW: u32 = 3;
/// `KMALLOC_SHIFT_HIGH` = PAGE_SHIFT + 1 on SLUB.
pub const KMALLOC_SHIFT_HIGH: u32 = 13;
/// `KMALLOC_MAX_CACHE_SIZE`.
pub const KMALLOC_MAX_CACHE_SIZE: u32 = 1 << KMALLOC_SHIFT_HIGH;
/// `ZERO_SIZE_PTR`: what kmalloc(0) returns; kfree accepts it.
pub const ZERO_SIZE_PTR: u64 = 16;

/// `enum kmalloc_cache_type` with ZONE_DMA and MEMCG_KMEM.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KmallocType {
    Normal = 0,
    Cgroup = 1,
    Reclaim = 2,
    Dma = 3,
}

impl KmallocType {
    pub const ALL: [KmallocType; 4] = [
        KmallocType::Normal,
        KmallocType::Cgroup,
        KmallocType::Reclaim,
        KmallocType::Dma,
    ];
    fn prefix(self) -> &'static str {
        match self {
            KmallocType::Normal => "kmalloc-",
            KmallocType::Cgroup => "kmalloc-cg-",
            KmallocType::Reclaim => "kmalloc-rcl-",
            KmallocType::Dma => "dma-kmalloc-",
        }
    }
    /// `new_kmalloc_cache()`'s extra flags.
    fn flags(self) -> SlabFlags {
        match self {
            KmallocType::Normal => SlabFlags::empty(),
            KmallocType::Cgroup => SlabFlags::ACCOUNT,
            KmallocType::Reclaim => SlabFlags::RECLAIM_ACCOUNT,
            KmallocType::Dma => SlabFlags::CACHE_DMA,
        }
    }
}

/// `kmalloc_type()`.
#[inline(always)]
pub fn kmalloc_type(gfp: Gfp) -> KmallocType {
    if !gfp.intersects(__GFP_RECLAIMABLE | __GFP_DMA | __GFP_ACCOUNT) {
        KmallocType::Normal
    } else if gfp.contains(__GFP_DMA) {
        KmallocType::Dma
    } else if gfp.contains(__GFP_RECLAIMABLE) {
        KmallocType::Reclaim
    } else {
        KmallocType::Cgroup
    }
}

/// `size_index[]`: the class of sizes 1..=192 by `(size - 1) / 8` (1 = 96, 2 = 192).
const SIZE_INDEX: [u8; 24] = [
    3, 4, 5, 5, 6, 6, 6, 6, 1, 1, 1, 1, 7, 7, 7, 7, 2, 2, 2, 2, 2, 2, 2, 2,
];

/// `kmalloc_slab()`'s index: None for sizes kmalloc_large serves (and for 0).
#[inline(always)]
pub fn kmalloc_index(size: u32) -> Option<u32> {
    match size {
        0 => None,
        1..=192 => Some(SIZE_INDEX[((size - 1) / 8) as usize] as u32),
        193..=KMALLOC_MAX_CACHE_SIZE => Some(32 - (size - 1).leading_zeros()),
        _ => None,
    }
}

/// `kmalloc_info[i].size` and the name suffix.
fn kmalloc_info(idx: u32) -> (u32, String) {
    match idx {
        1 => (96, "96".into()),
        2 => (192, "192".into()),
        i if i >= 10 => (1 << i, format!("{}k", 1 << (i - 10))),
        i => (1 << i, format!("{}", 1 << i)),
    }
}

impl Slub {
    /// `create_kmalloc_caches()`: every type, classes in size order with 96 after 64 and
    /// 192 after 128.
    pub(crate) fn create_kmalloc_caches(&mut self) {
        for ty in KmallocType::ALL {
            for i in KMALLOC_SHIFT_LOW..=KMALLOC_SHIFT_HIGH {
                self.new_kmalloc_cache(i, ty);
                if i == 6 {
                    self.new_kmalloc_cache(1, ty);
                }
                if i == 7 {
                    self.new_kmalloc_cache(2, ty);
                }
            }
        }
    }

    /// `new_kmalloc_cache()` → `create_kmalloc_cache()`: power-of-two sizes are aligned to
    /// themselves; the whole object is a usercopy region.
    fn new_kmalloc_cache(&mut self, idx: u32, ty: KmallocType) {
        let (size, suffix) = kmalloc_info(idx);
        let align = if size.is_power_of_two() { size } else { 8 };
        let spec = CacheSpec::new(
            &format!("{}{suffix}", ty.prefix()),
            size,
            align,
            SlabFlags::KMALLOC | ty.flags(),
        )
        .with_usercopy(0, size)
        .boot();
        if let Ok(id) = self.kmem_cache_create(&spec) {
            self.kmalloc_caches[ty as usize][idx as usize] = Some(id);
        }
    }

    /// The kmalloc cache serving `size` bytes with `gfp`, None above KMALLOC_MAX_CACHE_SIZE.
    #[inline(always)]
    pub fn kmalloc_slab(&self, size: u32, gfp: Gfp) -> Option<CacheId> {
        let idx = kmalloc_index(size)?;
        self.kmalloc_caches[kmalloc_type(gfp) as usize][idx as usize]
    }
}

impl Kernel {
    /// `kmalloc()`: a kmalloc cache object, or pages for sizes above 8 KiB. `kmalloc(0)`
    /// returns ZERO_SIZE_PTR. The inlined part is SLUB's lockless fast path; everything
    /// else is out of line.
    #[inline(always)]
    pub fn kmalloc(&mut self, size: usize, gfp: Gfp, cpu: usize) -> Result<VirtAddr, SlabError> {
        let size32 = u32::try_from(size).unwrap_or(u32::MAX);
        if let Some(id) = self.slab.kmalloc_slab(size32, gfp) {
            if let Some(object) = self.slab_alloc_in_page(id, gfp, cpu) {
                let va = VirtAddr::new(object);
                self.trace_kmalloc(cpu, va, size, gfp);
                return Ok(va);
            }
        }
        self.kmalloc_slow(size, gfp, cpu)
    }

    /// Every `kmalloc()` the fast path does not serve: size 0, an empty CPU freelist,
    /// objects crossing a page, slub_debug, large sizes.
    #[inline(never)]
    fn kmalloc_slow(&mut self, size: usize, gfp: Gfp, cpu: usize) -> Result<VirtAddr, SlabError> {
        let size32 = u32::try_from(size).unwrap_or(u32::MAX);
        if size32 == 0 {
            return Ok(VirtAddr::new(ZERO_SIZE_PTR));
        }
        let r = match self.slab.kmalloc_slab(size32, gfp) {
            Some(id) => self.kmem_cache_alloc(id, gfp, cpu),
            None => self.kmalloc_large(size, gfp, cpu),
        };
        r.inspect(|va| self.trace_kmalloc(cpu, *va, size, gfp))
    }

    /// `kzalloc()`.
    pub fn kzalloc(&mut self, size: usize, gfp: Gfp, cpu: usize) -> Result<VirtAddr, SlabError> {
        self.kmalloc(size, gfp | __GFP_ZERO, cpu)
    }

    /// `kmalloc_large()`: compound pages from the page allocator, counted as slab.
    pub fn kmalloc_large(
        &mut self,
        size: usize,
        gfp: Gfp,
        cpu: usize,
    ) -> Result<VirtAddr, SlabError> {
        let order = size
            .max(1)
            .div_ceil(4096)
            .next_power_of_two()
            .trailing_zeros();
        let flags = (gfp - (Gfp::HIGHMEM | Gfp::DMA32)) | __GFP_COMP;
        if order >= MAX_ORDER as u32 {
            let msg = format!("WARNING: kmalloc_large: order {order} is not below MAX_ORDER");
            self.log.warn(msg.clone());
            return Err(SlabError::NoMemory { report: vec![msg] });
        }
        let pages = match self.alloc_pages(flags, order, cpu) {
            Ok(p) => p,
            Err(e) => return Err(self.log_alloc_failure(e)),
        };
        self.slab.large.insert(pages.pfn.as_u64(), order);
        self.node
            .mod_node_page_state(NodeStatItem::NrSlabUnreclaimableB, 1 << order);
        let va = self.slab.page_offset + pages.pfn.phys().as_u64();
        Ok(VirtAddr::new(va))
    }

    fn log_alloc_failure(&mut self, e: KernelAllocError) -> SlabError {
        let report = match e {
            KernelAllocError::Alloc(f) => f.report,
            KernelAllocError::Oops(s) => vec![s],
        };
        for l in &report {
            self.log.warn(l.clone());
        }
        SlabError::NoMemory { report }
    }

    /// `kfree()`: NULL and ZERO_SIZE_PTR are no-ops; a slab object goes back to its cache,
    /// anything else must be a kmalloc_large allocation.
    #[inline(always)]
    pub fn kfree(&mut self, va: VirtAddr, cpu: usize) -> Result<(), SlabError> {
        crate::trace::kfree(cpu, va.as_u64());
        // NULL and ZERO_SIZE_PTR are below PAGE_OFFSET: the fast path rejects them.
        if self.slab_free_fast(va.as_u64(), cpu) {
            return Ok(());
        }
        self.kfree_slow(va, cpu)
    }

    /// Every kfree the fast path leaves: NULL and ZERO_SIZE_PTR, other slabs, bad
    /// pointers, large allocations.
    #[inline(never)]
    fn kfree_slow(&mut self, va: VirtAddr, cpu: usize) -> Result<(), SlabError> {
        let object = va.as_u64();
        if object <= ZERO_SIZE_PTR {
            return Ok(());
        }
        match self.virt_to_slab(object, cpu)? {
            Some(sid) => self.slab_free(sid, object, cpu),
            None => self.free_large_kmalloc(object, cpu),
        }
    }

    /// `free_large_kmalloc()`: only pages kmalloc_large handed out; anything else is the
    /// kernel's WARN (which would go on to free a page it does not own; the model refuses).
    fn free_large_kmalloc(&mut self, object: u64, cpu: usize) -> Result<(), SlabError> {
        let pfn = object.wrapping_sub(self.slab.page_offset) >> 12;
        let head = self
            .node
            .mem_map
            .get(Pfn::new(pfn))
            .and_then(|p| p.compound_head_pfn())
            .unwrap_or(pfn);
        let Some(order) = self.slab.large.remove(&head) else {
            return Err(SlabError::BadFree(vec![
                format!("WARNING: CPU: {cpu} PID: 0 at mm/slab_common.c free_large_kmalloc"),
                format!("object pointer: {object:#010x}"),
            ]));
        };
        self.node
            .mod_node_page_state(NodeStatItem::NrSlabUnreclaimableB, -(1i64 << order));
        self.node
            .__free_pages(Pfn::new(head), order, cpu)
            .map_err(|e| SlabError::BadFree(vec![format!("BUG: Bad page state: {e}")]))
    }

    /// `ksize()`: the usable size of a kmalloc'ed object (its cache's object size, or the
    /// pages of a large allocation).
    pub fn ksize(&self, va: VirtAddr, cpu: usize) -> Result<usize, SlabError> {
        let object = va.as_u64();
        if object <= ZERO_SIZE_PTR {
            return Ok(0);
        }
        if let Some(sid) = self.virt_to_slab(object, cpu)? {
            let cache = self.slab.slabs.get(sid).map(|s| s.cache as usize);
            return Ok(cache.map_or(0, |c| self.slab.caches[c].object_size as usize));
        }
        let pfn = object.wrapping_sub(self.slab.page_offset) >> 12;
        Ok(self.slab.large.get(&pfn).map_or(0, |o| 4096usize << o))
    }
}
