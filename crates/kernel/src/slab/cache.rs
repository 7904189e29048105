//! `struct kmem_cache` and how SLUB sizes it: `calculate_alignment`, `calculate_sizes`,
//! `calculate_order` / `calc_slab_order`, `oo_make`, and cache creation with merging.
//!
//! The order search trades waste against slab size: starting from `slub_min_objects`
//! objects (4 × (fls(nr_cpus) + 1)), it takes the smallest order up to `slub_max_order`
//! whose leftover is at most 1/16 of the slab, then 1/8, then 1/4, then asks for one object
//! fewer. The result is packed with the object count into `oo` (`oo_make`); `min` is the
//! smallest order that holds one object, the fallback when the preferred order fails.

use crate::gfp::{Gfp, __GFP_COMP, __GFP_DMA, __GFP_RECLAIMABLE};
use crate::mmzone::MAX_ORDER;
use crate::vmstat::fls;

use super::slub::{KmemCacheCpu, KmemCacheNode};
use super::{
    CacheId, CacheSpec, SlabError, SlabFlags, Slub, ARCH_SLAB_MINALIGN, CACHE_LINE_SIZE,
    MAX_OBJS_PER_PAGE, MAX_PARTIAL, MIN_PARTIAL, SLUB_MAX_ORDER,
};

const PAGE_SIZE: u32 = 4096;
/// `cache_line_size()` of the amd64 captures' CPU (qemu64: CLFLUSH line 64 bytes): the
/// amd64 slabinfo's bio-256 (264 bytes with its free pointer) has a 320-byte stride.
pub const CACHE_LINE_SIZE_64: u32 = 64;
const PAGE_SHIFT: u32 = 12;

/// `struct kmem_cache_order_objects`: order in the high 16 bits, objects in the low ones.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Oo(pub u32);

impl Oo {
    /// `oo_make()`.
    pub fn make(order: u32, size: u32) -> Oo {
        Oo((order << 16) + order_objects(order, size))
    }
    /// `oo_order()`.
    pub fn order(self) -> u32 {
        self.0 >> 16
    }
    /// `oo_objects()`.
    pub fn objects(self) -> u32 {
        self.0 & 0xffff
    }
}

/// `order_objects()`: objects of `size` bytes in a slab of `order`.
fn order_objects(order: u32, size: u32) -> u32 {
    (PAGE_SIZE << order) / size
}

/// `get_order()`.
fn get_order(size: u32) -> u32 {
    if size <= PAGE_SIZE {
        return 0;
    }
    32 - ((size - 1) >> PAGE_SHIFT).leading_zeros()
}

/// `calculate_alignment()`: hardware-cache alignment halves while two objects still fit a
/// line; never below ARCH_SLAB_MINALIGN; always a multiple of the pointer size `ptr_size`.
/// The line is `cache_line_size()`: the i386 model's [`CACHE_LINE_SIZE`], and on x86_64
/// (8-byte pointers) [`CACHE_LINE_SIZE_64`].
pub fn calculate_alignment(flags: SlabFlags, align: u32, size: u32, ptr_size: u32) -> u32 {
    let mut align = align;
    if flags.contains(SlabFlags::HWCACHE_ALIGN) {
        let mut ralign = if ptr_size == 8 {
            CACHE_LINE_SIZE_64
        } else {
            CACHE_LINE_SIZE
        };
        while size <= ralign / 2 {
            ralign /= 2;
        }
        align = align.max(ralign);
    }
    align.max(ARCH_SLAB_MINALIGN).next_multiple_of(ptr_size)
}

/// `calc_slab_order()`: the smallest order from the one holding `min_objects` up to
/// `max_order` whose leftover is at most 1/`fract_leftover` of the slab (max_order + 1 if
/// none).
pub fn calc_slab_order(size: u32, min_objects: u32, max_order: u32, fract_leftover: u32) -> u32 {
    if order_objects(0, size) > MAX_OBJS_PER_PAGE {
        return get_order(size * MAX_OBJS_PER_PAGE) - 1;
    }
    let mut order = get_order(min_objects * size);
    while order <= max_order {
        let slab_size = PAGE_SIZE << order;
        if slab_size % size <= slab_size / fract_leftover {
            break;
        }
        order += 1;
    }
    order
}

/// `calculate_order()` with `slub_min_objects` from the CPU count (`num_present_cpus()`,
/// or `nr_cpu_ids` when that is 1). None for objects no order can hold.
pub fn calculate_order(size: u32, nr_cpus: usize) -> Option<u32> {
    let min_objects = 4 * (fls(nr_cpus as u32) + 1);
    let mut min_objects = min_objects.min(order_objects(SLUB_MAX_ORDER, size));
    while min_objects > 1 {
        let mut fraction = 16;
        while fraction >= 4 {
            let order = calc_slab_order(size, min_objects, SLUB_MAX_ORDER, fraction);
            if order <= SLUB_MAX_ORDER {
                return Some(order);
            }
            fraction /= 2;
        }
        min_objects -= 1;
    }
    let order = calc_slab_order(size, 1, SLUB_MAX_ORDER, 1);
    if order <= SLUB_MAX_ORDER {
        return Some(order);
    }
    let order = calc_slab_order(size, 1, MAX_ORDER as u32, 1);
    (order < MAX_ORDER as u32).then_some(order)
}

/// `struct kmem_cache`.
#[derive(Clone, Debug)]
pub struct KmemCache {
    pub name: String,
    /// Names of the caches merged into this one (`__kmem_cache_alias`).
    pub aliases: Vec<String>,
    /// The size the creator asked for.
    pub object_size: u32,
    /// The object's stride in the slab (metadata and alignment included): slabinfo's objsize.
    pub size: u32,
    pub align: u32,
    /// Offset of the free pointer inside a free object.
    pub offset: u32,
    pub flags: SlabFlags,
    pub ctor: bool,
    pub useroffset: u32,
    pub usersize: u32,
    /// Preferred and fallback slab geometry.
    pub oo: Oo,
    pub min: Oo,
    /// Gfp bits every slab allocation of this cache adds (`__GFP_COMP`, `GFP_DMA`, …).
    pub allocflags: Gfp,
    /// Empty slabs kept on the node partial list before they are freed.
    pub min_partial: u32,
    /// `s->random`: the freelist pointer obfuscation key (SLAB_FREELIST_HARDENED), an
    /// `unsigned long`.
    pub random: u64,
    /// `s->random_seq`: byte offsets of objects in SLAB_FREELIST_RANDOM order (a boxed
    /// slice: fixed once made, and 8 bytes smaller than a Vec, which keeps the descriptor
    /// at the 184 bytes the hot paths index by).
    pub(crate) random_seq: Box<[u32]>,
    /// Creators sharing the cache; -1 for caches that must never be merged (kmalloc).
    pub refcount: i32,
    pub dead: bool,
    /// `slab_want_init_on_alloc()`, decided once: zero every object (init_on_alloc), or
    /// only for __GFP_ZERO; constructed caches never.
    pub(crate) init_always: bool,
    pub(crate) init_on_gfp_zero: bool,
    pub(crate) cpu_slab: Vec<KmemCacheCpu>,
    pub(crate) node: KmemCacheNode,
}

impl KmemCache {
    /// `slab_unmergeable()`.
    fn unmergeable(&self) -> bool {
        self.dead
            || self.flags.intersects(SlabFlags::NEVER_MERGE)
            || self.ctor
            || self.usersize != 0
            || self.refcount < 0
    }

    /// Gfp bits for the cache's slabs (`s->allocflags`).
    fn compute_allocflags(flags: SlabFlags, order: u32) -> Gfp {
        let mut g = Gfp::empty();
        if order != 0 {
            g |= __GFP_COMP;
        }
        if flags.contains(SlabFlags::CACHE_DMA) {
            g |= __GFP_DMA;
        }
        if flags.contains(SlabFlags::RECLAIM_ACCOUNT) {
            g |= __GFP_RECLAIMABLE;
        }
        g
    }
}

/// `calculate_sizes()` without debug metadata: (inuse, offset, size) of an object whose
/// free pointer is `ptr_size` bytes.
fn object_layout(spec: &CacheSpec, align: u32, ptr_size: u32) -> (u32, u32, u32) {
    let mut size = spec.size.next_multiple_of(ptr_size);
    let inuse = size;
    let offset = if spec.flags.contains(SlabFlags::TYPESAFE_BY_RCU) || spec.ctor {
        // The free pointer may not overlay an object that is alive during RCU or whose
        // constructed state must survive free: it goes after the object.
        let off = size;
        size += ptr_size;
        off
    } else {
        // In the middle of the object, away from the edges that overflows corrupt.
        (spec.size / 2) / ptr_size * ptr_size
    };
    (inuse, offset, size.next_multiple_of(align))
}

impl Slub {
    /// `kmem_cache_create_usercopy()`: merge into a compatible cache when allowed, else
    /// create a new one (`kmem_cache_open`). Creates no slabs.
    pub fn kmem_cache_create(&mut self, spec: &CacheSpec) -> Result<CacheId, SlabError> {
        let ptr_size = self.fp.size();
        if spec.name.is_empty() || spec.size < ptr_size || spec.size > (1 << 30) {
            return Err(SlabError::BadCache(format!(
                "kmem_cache_create({}) integrity check failed",
                spec.name
            )));
        }
        if spec.usersize != 0 && spec.useroffset + spec.usersize > spec.size {
            return Err(SlabError::BadCache(format!(
                "WARNING: kmem_cache_create_usercopy({}): usercopy region outside object",
                spec.name
            )));
        }
        if spec.usersize == 0 {
            if let Some(id) = self.find_mergeable(spec) {
                let c = &mut self.caches[id.0 as usize];
                c.refcount += 1;
                c.object_size = c.object_size.max(spec.size);
                c.aliases.push(spec.name.clone());
                return Ok(id);
            }
        }
        let align = calculate_alignment(spec.flags, spec.align, spec.size, ptr_size);
        let cache = self.kmem_cache_open(spec, align)?;
        self.caches.push(cache);
        Ok(CacheId(self.caches.len() as u32 - 1))
    }

    /// `find_mergeable()`: the oldest live cache this one can share.
    fn find_mergeable(&self, spec: &CacheSpec) -> Option<CacheId> {
        if spec.ctor || spec.flags.intersects(SlabFlags::NEVER_MERGE) {
            return None;
        }
        let ptr_size = self.fp.size();
        let size = spec.size.next_multiple_of(ptr_size);
        let align = calculate_alignment(spec.flags, spec.align, size, ptr_size);
        let size = size.next_multiple_of(align);
        let same = spec.flags & SlabFlags::MERGE_SAME;
        self.caches
            .iter()
            .position(|s| {
                !s.unmergeable()
                    && size <= s.size
                    && s.flags & SlabFlags::MERGE_SAME == same
                    && s.size & !(align - 1) == s.size
                    && s.size - size < ptr_size
            })
            .map(|i| CacheId(i as u32))
    }

    /// `kmem_cache_open()`: sizes, order, partial limits, the random sequence.
    fn kmem_cache_open(&mut self, spec: &CacheSpec, align: u32) -> Result<KmemCache, SlabError> {
        let (_inuse, offset, size) = object_layout(spec, align, self.fp.size());
        let order = calculate_order(size, self.nr_cpus).ok_or_else(|| {
            SlabError::BadCache(format!(
                "kmem_cache_create({}) failed with error -38",
                spec.name
            ))
        })?;
        let oo = Oo::make(order, size);
        let min_partial = ((31 - size.leading_zeros()) / 2).clamp(MIN_PARTIAL, MAX_PARTIAL);
        let random = self.random_long();
        let random_seq = self.cache_random_seq(oo.objects(), size);
        Ok(KmemCache {
            name: spec.name.clone(),
            aliases: Vec::new(),
            object_size: spec.size,
            size,
            align,
            offset,
            flags: spec.flags,
            ctor: spec.ctor,
            useroffset: spec.useroffset,
            usersize: spec.usersize,
            oo,
            min: Oo::make(get_order(size), size),
            allocflags: KmemCache::compute_allocflags(spec.flags, order),
            min_partial,
            random,
            random_seq,
            refcount: if spec.kmalloc { -1 } else { 1 },
            dead: false,
            init_always: self.init_on_alloc
                && !spec.ctor
                && !spec
                    .flags
                    .intersects(SlabFlags::TYPESAFE_BY_RCU | SlabFlags::POISON),
            init_on_gfp_zero: !spec.ctor,
            cpu_slab: vec![KmemCacheCpu::default(); self.nr_cpus],
            node: KmemCacheNode::default(),
        })
    }

    /// `init_cache_random_seq()` / `freelist_randomize()`: a Fisher-Yates permutation of the
    /// object indices, stored as byte offsets.
    fn cache_random_seq(&mut self, count: u32, size: u32) -> Box<[u32]> {
        if count < 2 {
            return Box::default();
        }
        let mut list: Vec<u32> = (0..count).collect();
        for i in (1..count as usize).rev() {
            let r = self.random_u32() as usize % (i + 1);
            list.swap(i, r);
        }
        list.iter().map(|&i| i * size).collect()
    }

    /// `kmem_cache_destroy()`: drop one reference; the last one empties the cache and
    /// retires it. A cache that still has objects is leaked with the kernel's warning.
    pub fn kmem_cache_destroy_check(&mut self, id: CacheId) -> Result<bool, SlabError> {
        let c = self
            .caches
            .get_mut(id.0 as usize)
            .filter(|c| !c.dead)
            .ok_or_else(|| SlabError::BadCache(format!("kmem_cache_destroy: no cache {id}")))?;
        if c.refcount < 0 {
            return Err(SlabError::BadCache(format!(
                "kmem_cache_destroy {}: boot cache cannot be destroyed",
                c.name
            )));
        }
        c.refcount -= 1;
        Ok(c.refcount == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_grows_with_the_cpu_count() {
        // slub_min_objects: 8 on one CPU, 12 on two (reference slabinfo figures).
        assert_eq!(calculate_order(512, 1), Some(0));
        assert_eq!(calculate_order(512, 2), Some(1));
        assert_eq!(calculate_order(3008, 1), Some(3));
        assert_eq!(calculate_order(8192, 2), Some(3));
        assert_eq!(calculate_order(8, 1), Some(0));
        assert_eq!(Oo::make(3, 3008).objects(), 10);
    }

    #[test]
    fn hwcache_alignment_halves_for_small_objects() {
        assert_eq!(calculate_alignment(SlabFlags::HWCACHE_ALIGN, 0, 60, 4), 32);
        assert_eq!(calculate_alignment(SlabFlags::HWCACHE_ALIGN, 0, 12, 4), 16);
        assert_eq!(calculate_alignment(SlabFlags::empty(), 4, 76, 4), 8);
        // An odd alignment rounds up to the pointer size.
        assert_eq!(calculate_alignment(SlabFlags::empty(), 12, 76, 4), 12);
        assert_eq!(calculate_alignment(SlabFlags::empty(), 12, 76, 8), 16);
    }

    #[test]
    fn the_free_pointer_fits_its_width() {
        let kmalloc = |size| CacheSpec::new("k", size, size, SlabFlags::KMALLOC);
        // (inuse, offset, size): mid-object, aligned down to the pointer size.
        assert_eq!(object_layout(&kmalloc(8), 8, 4), (8, 4, 8));
        assert_eq!(object_layout(&kmalloc(8), 8, 8), (8, 0, 8));
        assert_eq!(object_layout(&kmalloc(96), 8, 8), (96, 48, 96));
        let odd = CacheSpec::new("odd", 20, 0, SlabFlags::empty());
        assert_eq!(object_layout(&odd, 8, 4), (20, 8, 24));
        assert_eq!(object_layout(&odd, 8, 8), (24, 8, 24));
        // With a constructor the pointer goes after the object, one pointer wide.
        let ctor = CacheSpec::new("ctor", 20, 0, SlabFlags::empty()).with_ctor();
        assert_eq!(object_layout(&ctor, 8, 4), (20, 20, 24));
        assert_eq!(object_layout(&ctor, 8, 8), (24, 24, 32));
    }
}
