//! SLUB's allocation and free paths (`mm/slub.c`): `slab_alloc_node` takes the next object
//! off this CPU's freelist and only drops into `___slab_alloc` when it is empty, which
//! refills from the CPU slab's own freelist (remote frees), then a node partial slab, then a
//! `new_slab`. A free to the CPU's slab pushes onto the CPU freelist; any other goes through
//! `__slab_free`, which moves a formerly full slab onto the partial list and discards an
//! empty one once the node holds `min_partial` partial slabs.
//!
//! Slab descriptors (`struct slab`) live in a Rust-side table; the head page carries PG_slab
//! and, in `mapping` (where the kernel keeps `slab->slab_cache`), the descriptor's index + 1,
//! so `virt_to_slab` is a mem_map lookup as in the kernel.

use core::num::NonZeroU32;

use machine::{Pfn, PhysAddr, PhysMem, VirtAddr, PAGE_SIZE};

use crate::gfp::{
    format_gfp_mode, Gfp, __GFP_DIRECT_RECLAIM, __GFP_DMA32, __GFP_HIGHMEM, __GFP_NOFAIL,
    __GFP_NOMEMALLOC, __GFP_NORETRY, __GFP_NOWARN, __GFP_RECLAIM, __GFP_ZERO,
};
use crate::kernel::{Kernel, KernelAllocError};
use crate::page::PageFlags;
use crate::vmstat::NodeStatItem;

use super::freeptr::{encode_n, load_n, swab_n, write_n};
use super::{slab_bug, CacheId, FreePtr, KmemCache, SlabError, SlabFlags, Slub};

/// `GFP_RECLAIM_MASK` (mm/internal.h): the bits a slab's page allocation keeps.
const GFP_RECLAIM_MASK: Gfp = __GFP_RECLAIM
    .union(Gfp::HIGH)
    .union(Gfp::IO)
    .union(Gfp::FS)
    .union(__GFP_NOWARN)
    .union(Gfp::RETRY_MAYFAIL)
    .union(__GFP_NOFAIL)
    .union(__GFP_NORETRY)
    .union(Gfp::MEMALLOC)
    .union(__GFP_NOMEMALLOC)
    .union(Gfp::ATOMIC);
/// `GFP_CONSTRAINT_MASK`.
const GFP_CONSTRAINT_MASK: Gfp = Gfp::HARDWALL.union(Gfp::THISNODE);

/// "No slab" in list links and CPU slots.
pub(crate) const NO_SLAB: u32 = u32::MAX;

/// `struct kmem_cache_cpu`: this CPU's lockless freelist and the (frozen) slab it drains.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct KmemCacheCpu {
    /// Virtual address of the next free object, 0 when empty.
    pub freelist: u64,
    pub slab: u32,
    /// The CPU slab's first object, `objects * size` and the object stride, so the free
    /// fast path can validate an object without the slab descriptor (the stride is
    /// non-zero by type, so its modulo needs no zero test).
    pub base: u64,
    pub span: u64,
    pub stride: NonZeroU32,
}

impl Default for KmemCacheCpu {
    fn default() -> Self {
        KmemCacheCpu {
            freelist: 0,
            slab: NO_SLAB,
            base: 0,
            span: 0,
            stride: NonZeroU32::MIN,
        }
    }
}

/// `struct kmem_cache_node`: the partial list and the slab counters slabinfo reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct KmemCacheNode {
    pub nr_partial: u32,
    head: u32,
    tail: u32,
    pub nr_slabs: u64,
    pub total_objects: u64,
}

impl Default for KmemCacheNode {
    fn default() -> Self {
        KmemCacheNode {
            nr_partial: 0,
            head: NO_SLAB,
            tail: NO_SLAB,
            nr_slabs: 0,
            total_objects: 0,
        }
    }
}

/// `struct slab` (the fields SLUB overlays on the head page), plus the allocated-object
/// bitmap slub_debug keeps to catch bad frees (maintained only while it is on).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Slab {
    pub cache: u32,
    pub pfn: u64,
    /// Virtual (direct-map) address of the first object.
    pub base: u64,
    pub order: u32,
    pub objects: u32,
    /// Objects not on `freelist` (for a frozen slab: all but the remote frees).
    pub inuse: u32,
    pub freelist: u64,
    pub frozen: bool,
    pub on_partial: bool,
    prev: u32,
    next: u32,
    live: Vec<u64>,
}

impl Slab {
    pub(crate) fn is_live(&self, idx: u32) -> bool {
        self.live[(idx / 64) as usize] & (1 << (idx % 64)) != 0
    }
    fn set_live(&mut self, idx: u32, on: bool) {
        let w = &mut self.live[(idx / 64) as usize];
        if on {
            *w |= 1 << (idx % 64);
        } else {
            *w &= !(1 << (idx % 64));
        }
    }
    /// Objects the slab's owner holds (the bitmap's population).
    pub fn live_count(&self) -> u32 {
        self.live.iter().map(|w| w.count_ones()).sum()
    }
}

/// Slab descriptors by index, with recycled slots.
#[derive(Clone, Debug, Default)]
pub(crate) struct SlabTable {
    pub slots: Vec<Option<Slab>>,
    free: Vec<u32>,
}

impl SlabTable {
    fn insert(&mut self, slab: Slab) -> u32 {
        if let Some(i) = self.free.pop() {
            self.slots[i as usize] = Some(slab);
            return i;
        }
        self.slots.push(Some(slab));
        self.slots.len() as u32 - 1
    }
    fn remove(&mut self, id: u32) -> Option<Slab> {
        let s = self.slots.get_mut(id as usize)?.take();
        if s.is_some() {
            self.free.push(id);
        }
        s
    }
    #[inline(always)]
    pub(crate) fn get_mut(&mut self, id: u32) -> Option<&mut Slab> {
        self.slots.get_mut(id as usize)?.as_mut()
    }
    pub(crate) fn get(&self, id: u32) -> Option<&Slab> {
        self.slots.get(id as usize)?.as_ref()
    }
}

/// One line of /proc/slabinfo (`struct slabinfo` plus the name).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SlabInfo {
    pub name: String,
    pub active_objs: u64,
    pub num_objs: u64,
    pub objsize: u32,
    pub objperslab: u32,
    pub pagesperslab: u32,
    pub active_slabs: u64,
    pub num_slabs: u64,
}

/// How SLUB reaches the free pointers: through the direct map at PAGE_OFFSET `po`, in the
/// architecture's format `fp`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SlabMem {
    pub po: u64,
    pub fp: FreePtr,
}

impl SlabMem {
    /// The physical address of the direct-map address `va` (`__pa()`).
    #[inline(always)]
    fn pa(self, va: u64) -> PhysAddr {
        PhysAddr::new(va.wrapping_sub(self.po))
    }
}

impl Slub {
    /// The direct map and free-pointer format of every slab.
    #[inline(always)]
    pub(crate) fn mem(&self) -> SlabMem {
        SlabMem {
            po: self.page_offset,
            fp: self.fp,
        }
    }
}

fn corrupt(s: &KmemCache, object: u64) -> SlabError {
    let mut r = slab_bug(&s.name, "Freepointer corrupt");
    r.push(format!("Object {object:#010x} is not in low memory"));
    SlabError::BadFree(r)
}

/// `get_freepointer()`: read and decode the free pointer of `object` through the direct map.
#[inline(always)]
fn get_freepointer(
    mem: &PhysMem,
    at: SlabMem,
    s: &KmemCache,
    object: u64,
) -> Result<u64, SlabError> {
    let addr = object.wrapping_add(u64::from(s.offset));
    let raw = at
        .fp
        .read(mem, at.pa(addr))
        .map_err(|_| corrupt(s, object))?;
    Ok(at.fp.encode(s.random, raw, addr))
}

/// `set_freepointer()`.
#[inline(always)]
fn set_freepointer(
    mem: &mut PhysMem,
    at: SlabMem,
    s: &KmemCache,
    object: u64,
    fp: u64,
) -> Result<(), SlabError> {
    let addr = object.wrapping_add(u64::from(s.offset));
    let enc = at.fp.encode(s.random, fp, addr);
    at.fp
        .write(mem, at.pa(addr), enc)
        .map_err(|_| corrupt(s, object))
}

/// The decoded free pointer of `object`, whose bytes are `obj`, for `N`-byte pointers at
/// `offset` (None if they do not fit the object).
#[inline(always)]
fn next_in_object<const N: usize>(
    obj: &[u8],
    offset: u32,
    random: u64,
    object: u64,
) -> Option<u64> {
    let at = offset as usize;
    let raw = load_n::<N>(obj.get(at..at + N)?)?;
    Some(encode_n::<N>(
        random,
        raw,
        object.wrapping_add(u64::from(offset)),
    ))
}

/// Zero an object through the direct map. A slab object is in RAM by construction, so
/// there is nothing to report if the fill missed.
#[inline(always)]
fn zero_object(mem: &mut PhysMem, pa: PhysAddr, len: u32) {
    let _ = mem.fill(pa, u64::from(len), 0);
}

/// Zero an object in place: the kmalloc sizes up to 256 bytes as fixed-size stores (no
/// call, no per-byte work), anything else through one `fill`.
#[inline(always)]
fn zero_bytes(d: &mut [u8]) {
    macro_rules! fixed {
        ($($n:literal)*) => {
            match d.len() {
                $($n => {
                    if let Ok(a) = <&mut [u8; $n]>::try_from(&mut *d) {
                        *a = [0; $n];
                    }
                })*
                _ => d.fill(0),
            }
        };
    }
    fixed!(8 16 32 64 96 128 192 256)
}

/// The index of `object` in `slab` (of objects `size` bytes apart), None unless it is
/// the start of one of the slab's objects.
#[inline(always)]
pub(crate) fn obj_index(slab: &Slab, size: u32, object: u64) -> Option<u32> {
    let off = object.wrapping_sub(slab.base);
    let idx = off / u64::from(size);
    (off.is_multiple_of(u64::from(size)) && idx < u64::from(slab.objects)).then_some(idx as u32)
}

/// Mark `object` of `slab` allocated (it came off a freelist).
#[inline(always)]
fn take_object(slab: &mut Slab, size: u32, object: u64) {
    let idx = object.wrapping_sub(slab.base) / u64::from(size);
    if idx < u64::from(slab.objects) {
        slab.set_live(idx as u32, true);
    }
}

impl Slub {
    /// The live cache `id`.
    #[inline(always)]
    pub(crate) fn cache_mut(&mut self, id: CacheId) -> Result<&mut KmemCache, SlabError> {
        match self.caches.get_mut(id.0 as usize) {
            Some(c) if !c.dead => Ok(c),
            _ => Err(SlabError::BadCache(format!("no live cache {id}"))),
        }
    }

    /// `add_partial()`.
    fn add_partial(&mut self, cache: u32, sid: u32, tail: bool) {
        let n = &mut self.caches[cache as usize].node;
        let (head, old_tail) = (n.head, n.tail);
        n.nr_partial += 1;
        if head == NO_SLAB {
            n.head = sid;
            n.tail = sid;
        } else if tail {
            n.tail = sid;
        } else {
            n.head = sid;
        }
        let (prev, next) = match (head == NO_SLAB, tail) {
            (true, _) => (NO_SLAB, NO_SLAB),
            (false, true) => (old_tail, NO_SLAB),
            (false, false) => (NO_SLAB, head),
        };
        if let Some(s) = self.slabs.get_mut(sid) {
            s.on_partial = true;
            s.prev = prev;
            s.next = next;
        }
        let neighbour = if tail { prev } else { next };
        if let Some(o) = self.slabs.get_mut(neighbour) {
            if tail {
                o.next = sid;
            } else {
                o.prev = sid;
            }
        }
    }

    /// `remove_partial()`.
    fn remove_partial(&mut self, sid: u32) {
        let Some(s) = self.slabs.get_mut(sid) else {
            return;
        };
        let (cache, prev, next) = (s.cache, s.prev, s.next);
        s.on_partial = false;
        s.prev = NO_SLAB;
        s.next = NO_SLAB;
        if let Some(p) = self.slabs.get_mut(prev) {
            p.next = next;
        }
        if let Some(nx) = self.slabs.get_mut(next) {
            nx.prev = prev;
        }
        let n = &mut self.caches[cache as usize].node;
        n.nr_partial -= 1;
        if n.head == sid {
            n.head = next;
        }
        if n.tail == sid {
            n.tail = prev;
        }
    }

    /// The partial slabs of `cache`, head first.
    pub(crate) fn partial_slabs(&self, cache: CacheId) -> Vec<u32> {
        let mut out = Vec::new();
        let Some(c) = self.caches.get(cache.0 as usize) else {
            return out;
        };
        let mut sid = c.node.head;
        while let Some(s) = self.slabs.get(sid) {
            out.push(sid);
            sid = s.next;
        }
        out
    }

    /// `get_slabinfo()` for one cache: free objects on CPU slabs count as active.
    pub fn slabinfo(&self, id: CacheId) -> Option<SlabInfo> {
        let c = self.cache(id)?;
        let nr_free: u64 = self
            .partial_slabs(id)
            .iter()
            .filter_map(|&sid| self.slabs.get(sid))
            .map(|s| u64::from(s.objects - s.inuse))
            .sum();
        Some(SlabInfo {
            name: c.name.clone(),
            active_objs: c.node.total_objects - nr_free,
            num_objs: c.node.total_objects,
            objsize: c.size,
            objperslab: c.oo.objects(),
            pagesperslab: 1 << c.oo.order(),
            active_slabs: c.node.nr_slabs,
            num_slabs: c.node.nr_slabs,
        })
    }
}

impl Kernel {
    fn slab_po(&self) -> u64 {
        self.slab.page_offset
    }

    /// `kmem_cache_alloc()`: one object of cache `id` on `cpu`.
    #[inline(always)]
    pub fn kmem_cache_alloc(
        &mut self,
        id: CacheId,
        gfp: Gfp,
        cpu: usize,
    ) -> Result<VirtAddr, SlabError> {
        self.slab_alloc_node(id, gfp, cpu).map(VirtAddr::new)
    }

    /// `slab_alloc_node()`: the lockless fast path — pop this CPU's freelist — then
    /// `slab_post_alloc_hook`'s zeroing; `___slab_alloc` when the freelist is empty.
    #[inline(always)]
    pub(crate) fn slab_alloc_node(
        &mut self,
        id: CacheId,
        gfp: Gfp,
        cpu: usize,
    ) -> Result<u64, SlabError> {
        match self.slab_alloc_in_page(id, gfp, cpu) {
            Some(object) => Ok(object),
            None => self.slab_alloc_node_generic(id, gfp, cpu),
        }
    }

    /// The fast path for an object that lies within one page (every object of an
    /// order-0 slab): one borrow of the frame serves the free-pointer read and the
    /// init_on_alloc zeroing. None, with nothing changed, for anything else — and for
    /// everything under slub_debug, whose bitmap the generic path keeps. The pointer width
    /// is tested once, for the decode, which runs at that width ([`next_in_object`]).
    #[inline(always)]
    pub(crate) fn slab_alloc_in_page(&mut self, id: CacheId, gfp: Gfp, cpu: usize) -> Option<u64> {
        let po = self.slab.page_offset;
        if self.slab.debug {
            return None;
        }
        // No `dead` test: a cache is marked dead only once it holds no slab, so none of
        // its CPU freelists has an object (the slow path rejects it).
        let s = self.slab.caches.get_mut(id.0 as usize)?;
        let c = s.cpu_slab.get_mut(cpu)?;
        let object = c.freelist;
        if object == 0 {
            return None;
        }
        let pa = object.wrapping_sub(po);
        let off = (pa & (PAGE_SIZE - 1)) as usize;
        let frame = self.machine.mem.frame_mut(Pfn::new(pa >> 12)).ok()?;
        // `off` is below a page and `size` a u32: the sum cannot overflow a usize.
        let obj = frame.get_mut(off..off + s.size as usize)?;
        c.freelist = if self.slab.fp.is_wide() {
            next_in_object::<8>(obj, s.offset, s.random, object)?
        } else {
            next_in_object::<4>(obj, s.offset, s.random, object)?
        };
        if s.init_always || (s.init_on_gfp_zero && gfp.contains(__GFP_ZERO)) {
            if let Some(d) = obj.get_mut(..s.object_size as usize) {
                zero_bytes(d);
            }
        }
        Some(object)
    }

    /// `slab_alloc_node()` for everything [`Self::slab_alloc_in_page`] leaves: objects
    /// crossing a page, an empty CPU freelist, a bad cache or CPU.
    #[inline(never)]
    fn slab_alloc_node_generic(
        &mut self,
        id: CacheId,
        gfp: Gfp,
        cpu: usize,
    ) -> Result<u64, SlabError> {
        let object = match self.cpu_freelist_pop(id, cpu) {
            Some((object, sid)) => {
                let size = self.slab.caches[id.0 as usize].size;
                if self.slab.debug {
                    if let Some(slab) = self.slab.slabs.get_mut(sid) {
                        take_object(slab, size, object);
                    }
                }
                object
            }
            None => self.slab_alloc_slow(id, gfp, cpu)?,
        };
        self.slab_post_alloc_hook(id, gfp, object);
        Ok(object)
    }

    /// Pop this CPU's freelist: the object and its slab. None when it is empty or its
    /// head unreadable, and for a dead cache or a CPU that is not online.
    fn cpu_freelist_pop(&mut self, id: CacheId, cpu: usize) -> Option<(u64, u32)> {
        let at = self.slab.mem();
        let s = self.slab.caches.get(id.0 as usize).filter(|s| !s.dead)?;
        let c = *s.cpu_slab.get(cpu)?;
        if c.freelist == 0 {
            return None;
        }
        let next = get_freepointer(&self.machine.mem, at, s, c.freelist).ok()?;
        self.slab.caches[id.0 as usize].cpu_slab[cpu].freelist = next;
        Some((c.freelist, c.slab))
    }

    /// The checks the fast path skips, then `___slab_alloc`.
    #[inline(never)]
    fn slab_alloc_slow(&mut self, id: CacheId, gfp: Gfp, cpu: usize) -> Result<u64, SlabError> {
        let s = self.slab.cache_mut(id)?;
        if cpu >= s.cpu_slab.len() {
            return Err(SlabError::BadCache(format!("CPU {cpu} is not online")));
        }
        self.___slab_alloc(id, gfp, cpu)
    }

    /// `slab_post_alloc_hook()`: zero the object as `slab_want_init_on_alloc()` decided.
    #[inline(always)]
    fn slab_post_alloc_hook(&mut self, id: CacheId, gfp: Gfp, object: u64) {
        let at = self.slab.mem();
        let Some(s) = self.slab.caches.get(id.0 as usize) else {
            return;
        };
        if s.init_always || (s.init_on_gfp_zero && gfp.contains(__GFP_ZERO)) {
            let pa = at.pa(object);
            zero_object(&mut self.machine.mem, pa, s.object_size);
        }
    }

    /// `___slab_alloc()`: the CPU freelist is empty. Take the CPU slab's remote frees, else
    /// a partial slab, else a new slab, and load its freelist onto the CPU.
    #[inline(never)]
    fn ___slab_alloc(&mut self, id: CacheId, gfp: Gfp, cpu: usize) -> Result<u64, SlabError> {
        let c = self.slab.caches[id.0 as usize].cpu_slab[cpu];
        if let Some(slab) = self.slab.slabs.get_mut(c.slab) {
            // get_freelist(): all objects go to the CPU; none left unfreezes the slab.
            let fl = core::mem::take(&mut slab.freelist);
            slab.inuse = slab.objects;
            if fl != 0 {
                return self.load_freelist(id, cpu, c.slab, fl);
            }
            slab.frozen = false;
            self.slab.caches[id.0 as usize].cpu_slab[cpu] = KmemCacheCpu::default();
        }
        let sid = match self.get_partial(id) {
            Some(sid) => sid,
            None => self.new_slab(id, gfp, cpu)?,
        };
        let slab = self
            .slab
            .slabs
            .get_mut(sid)
            .ok_or_else(|| SlabError::BadCache(format!("slab {sid} vanished")))?;
        let fl = core::mem::take(&mut slab.freelist);
        slab.inuse = slab.objects;
        slab.frozen = true;
        self.load_freelist(id, cpu, sid, fl)
    }

    /// `load_freelist`: the first object is returned, the rest becomes the CPU freelist.
    fn load_freelist(
        &mut self,
        id: CacheId,
        cpu: usize,
        sid: u32,
        fl: u64,
    ) -> Result<u64, SlabError> {
        let at = self.slab.mem();
        let (base, objects) = self
            .slab
            .slabs
            .get(sid)
            .map_or((0, 0), |sl| (sl.base, sl.objects));
        let s = &mut self.slab.caches[id.0 as usize];
        let next = get_freepointer(&self.machine.mem, at, s, fl)?;
        s.cpu_slab[cpu] = KmemCacheCpu {
            freelist: next,
            slab: sid,
            base,
            span: u64::from(objects * s.size),
            stride: NonZeroU32::new(s.size).unwrap_or(NonZeroU32::MIN),
        };
        let size = s.size;
        if self.slab.debug {
            if let Some(slab) = self.slab.slabs.get_mut(sid) {
                take_object(slab, size, fl);
            }
        }
        Ok(fl)
    }

    /// `get_partial()` / `acquire_slab()`: the first slab on the node partial list.
    fn get_partial(&mut self, id: CacheId) -> Option<u32> {
        let head = self.slab.caches[id.0 as usize].node.head;
        if head == NO_SLAB {
            return None;
        }
        self.slab.remove_partial(head);
        Some(head)
    }

    /// `new_slab()`: fix forbidden gfp bits, then `allocate_slab()`.
    fn new_slab(&mut self, id: CacheId, gfp: Gfp, cpu: usize) -> Result<u32, SlabError> {
        let bug = __GFP_DMA32 | __GFP_HIGHMEM;
        let mut flags = gfp;
        if flags.intersects(bug) {
            let fixed = flags - bug;
            self.log.warn(format!(
                "Unexpected gfp: {} . Fixing up to gfp: {} . Fix your code!",
                format_gfp_mode(flags),
                format_gfp_mode(fixed)
            ));
            flags = fixed;
        }
        self.allocate_slab(id, flags, cpu)
    }

    /// `allocate_slab()`: the preferred order without reclaim or warnings, then the minimum
    /// order with the caller's flags; then the freelist, PG_slab and the counters.
    fn allocate_slab(&mut self, id: CacheId, gfp: Gfp, cpu: usize) -> Result<u32, SlabError> {
        let s = &self.slab.caches[id.0 as usize];
        let flags = (gfp & (GFP_RECLAIM_MASK | GFP_CONSTRAINT_MASK)) | s.allocflags;
        let (oo, min) = (s.oo, s.min);
        let mut alloc_gfp = (flags | __GFP_NOWARN | __GFP_NORETRY) - __GFP_NOFAIL;
        if alloc_gfp.contains(__GFP_DIRECT_RECLAIM) && oo.order() > min.order() {
            alloc_gfp = (alloc_gfp | __GFP_NOMEMALLOC) - __GFP_RECLAIM;
        }
        let (pages, geo) = match self.alloc_pages(alloc_gfp, oo.order(), cpu) {
            Ok(p) => (p, oo),
            Err(_) => match self.alloc_pages(flags, min.order(), cpu) {
                Ok(p) => (p, min),
                Err(e) => return Err(self.slab_out_of_memory(id, flags, e)),
            },
        };
        let sid = self.init_slab(id, pages.pfn, geo.order(), geo.objects());
        self.shuffle_or_link_freelist(id, sid)?;
        Ok(sid)
    }

    /// The new slab's descriptor, PG_slab, and the node and vmstat counters.
    fn init_slab(&mut self, id: CacheId, pfn: Pfn, order: u32, objects: u32) -> u32 {
        let base = self.slab.page_offset + pfn.phys().as_u64();
        let slab = Slab {
            cache: id.0,
            pfn: pfn.as_u64(),
            base,
            order,
            objects,
            inuse: objects,
            freelist: 0,
            frozen: false,
            on_partial: false,
            prev: NO_SLAB,
            next: NO_SLAB,
            live: vec![0; objects.div_ceil(64) as usize],
        };
        let sid = self.slab.slabs.insert(slab);
        self.slab
            .set_pfn_slab(pfn.as_u64(), order, Some((sid, id.0)));
        if let Some(p) = self.node.mem_map.get_mut(pfn) {
            p.set(PageFlags::SLAB);
            p.mapping = sid + 1;
        }
        let s = &mut self.slab.caches[id.0 as usize];
        s.node.nr_slabs += 1;
        s.node.total_objects += u64::from(objects);
        let item = vmstat_item(s.flags);
        self.node.mod_node_page_state(item, 1 << order);
        sid
    }

    /// `shuffle_freelist()` (SLAB_FREELIST_RANDOM) or the address-order chain.
    fn shuffle_or_link_freelist(&mut self, id: CacheId, sid: u32) -> Result<(), SlabError> {
        let (base, objects) = match self.slab.slabs.get(sid) {
            Some(s) => (s.base, s.objects),
            None => return Ok(()),
        };
        let s = &self.slab.caches[id.0 as usize];
        let order: Vec<u64> = if objects < 2 || s.random_seq.is_empty() {
            (0..objects).map(|i| base + u64::from(i * s.size)).collect()
        } else {
            let limit = objects * s.size;
            let count = s.random_seq.len();
            let mut pos = self.slab.random_u32() as usize % count;
            let s = &self.slab.caches[id.0 as usize];
            let mut out = Vec::with_capacity(objects as usize);
            while out.len() < objects as usize {
                let off = s.random_seq[pos];
                pos = (pos + 1) % count;
                if off < limit {
                    out.push(base + u64::from(off));
                }
            }
            out
        };
        let at = self.slab.mem();
        let s = &self.slab.caches[id.0 as usize];
        for w in order.windows(2) {
            set_freepointer(&mut self.machine.mem, at, s, w[0], w[1])?;
        }
        if let Some(&last) = order.last() {
            set_freepointer(&mut self.machine.mem, at, s, last, 0)?;
        }
        if let Some(slab) = self.slab.slabs.get_mut(sid) {
            slab.freelist = order.first().copied().unwrap_or(0);
        }
        Ok(())
    }

    /// `slab_out_of_memory()` plus the page allocator's own report, logged and returned.
    fn slab_out_of_memory(&mut self, id: CacheId, gfp: Gfp, e: KernelAllocError) -> SlabError {
        let mut report = Vec::new();
        if let KernelAllocError::Alloc(f) = &e {
            report.extend(f.report.iter().cloned());
        } else {
            report.push(e.to_string());
        }
        if !gfp.contains(__GFP_NOWARN) {
            let s = &self.slab.caches[id.0 as usize];
            let free: u64 = self
                .slab
                .partial_slabs(id)
                .iter()
                .filter_map(|&sid| self.slab.slabs.get(sid))
                .map(|sl| u64::from(sl.objects - sl.inuse))
                .sum();
            report.push(format!(
                "SLUB: Unable to allocate memory on node -1, gfp={}",
                format_gfp_mode(gfp)
            ));
            report.push(format!(
                "  cache: {}, object size: {}, buffer size: {}, default order: {}, min order: {}",
                s.name,
                s.object_size,
                s.size,
                s.oo.order(),
                s.min.order()
            ));
            report.push(format!(
                "  node 0: slabs: {}, objs: {}, free: {}",
                s.node.nr_slabs, s.node.total_objects, free
            ));
        }
        for l in &report {
            self.log.warn(l.clone());
        }
        SlabError::NoMemory { report }
    }

    /// `kmem_cache_free()`: `cache_from_obj()`'s check (SLAB_FREELIST_HARDENED), then the free.
    pub fn kmem_cache_free(
        &mut self,
        id: CacheId,
        va: VirtAddr,
        cpu: usize,
    ) -> Result<(), SlabError> {
        let object = va.as_u64();
        let sid = self.virt_to_slab(object, cpu)?.ok_or_else(|| {
            SlabError::BadFree(vec![format!(
                "kmem_cache_free: object {object:#010x} is not a slab object"
            )])
        })?;
        let owner = self
            .slab
            .slabs
            .get(sid)
            .map(|s| s.cache)
            .unwrap_or(u32::MAX);
        if owner != id.0 {
            let name = |i: u32| self.slab.caches.get(i as usize).map(|c| c.name.clone());
            return Err(SlabError::BadFree(vec![
                format!("WARNING: CPU: {cpu} PID: 0 at mm/slab.h cache_from_obj"),
                format!(
                    "cache_from_obj: Wrong slab cache. {} but object is from {}",
                    name(id.0).unwrap_or_default(),
                    name(owner).unwrap_or_default()
                ),
            ]));
        }
        self.slab_free(sid, object, cpu)
    }

    /// `virt_to_slab()`: the slab of a direct-map address, None for a non-slab page. An
    /// address outside the direct map is the WARN of `__phys_addr` (CONFIG_DEBUG_VIRTUAL).
    #[inline(always)]
    pub(crate) fn virt_to_slab(&self, object: u64, cpu: usize) -> Result<Option<u32>, SlabError> {
        let po = self.slab_po();
        let pfn = object.wrapping_sub(po) >> 12;
        let page = match self.node.mem_map.get(Pfn::new(pfn)) {
            Some(p) if object >= po && pfn < self.slab.max_low_pfn => p,
            _ => return Err(non_linear(object, cpu)),
        };
        let head = match page.compound_head_pfn() {
            Some(h) => self.node.mem_map.get(Pfn::new(h)).unwrap_or(page),
            None => page,
        };
        if !head.test(PageFlags::SLAB) || head.mapping == 0 {
            return Ok(None);
        }
        Ok(Some(head.mapping - 1))
    }

    /// Turn slub_debug's consistency checks on or off. Turning them on rebuilds every
    /// slab's allocated-object bitmap from the freelists, so it is safe at any time.
    pub fn set_slub_debug(&mut self, on: bool) -> Result<(), SlabError> {
        if on && !self.slab.debug {
            for sid in 0..self.slab.slabs.slots.len() as u32 {
                let Some(live) = self.live_bitmap(sid)? else {
                    continue;
                };
                if let Some(slab) = self.slab.slabs.get_mut(sid) {
                    slab.live = live;
                }
            }
        }
        self.slab.debug = on;
        Ok(())
    }

    /// The allocated-object bitmap of slab `sid` as its freelists tell it: every object
    /// but those on the slab's own and its CPU's freelists. None for no slab.
    fn live_bitmap(&self, sid: u32) -> Result<Option<Vec<u64>>, SlabError> {
        let at = self.slab.mem();
        let Some(slab) = self.slab.slabs.get(sid) else {
            return Ok(None);
        };
        let s = &self.slab.caches[slab.cache as usize];
        let mut live = vec![0u64; slab.objects.div_ceil(64) as usize];
        for i in 0..slab.objects {
            live[(i / 64) as usize] |= 1 << (i % 64);
        }
        let cpu_fl = s
            .cpu_slab
            .iter()
            .filter(|c| c.slab == sid)
            .map(|c| c.freelist);
        for head in std::iter::once(slab.freelist).chain(cpu_fl) {
            let (mut it, mut n) = (head, 0);
            while it != 0 && n < slab.objects {
                let idx = it.wrapping_sub(slab.base) / u64::from(s.size);
                if let Some(w) = live.get_mut((idx / 64) as usize) {
                    *w &= !(1 << (idx % 64));
                }
                it = get_freepointer(&self.machine.mem, at, s, it)?;
                n += 1;
            }
        }
        Ok(Some(live))
    }

    /// `do_slab_free()`'s fast path: an object of this CPU's slab goes onto the CPU
    /// freelist. The slab comes from the pfn side table (the cache of what mem_map's
    /// PG_slab / `slab_cache` say), the bounds from the CPU slot. False (nothing changed)
    /// for anything else, which `slab_free` handles — and for everything under
    /// slub_debug, whose bitmap the slow path keeps. The pointer width is tested once, for
    /// the store, which runs at that width.
    #[inline(always)]
    pub(crate) fn slab_free_fast(&mut self, va: u64, cpu: usize) -> bool {
        let sl = &mut self.slab;
        let po = sl.page_offset;
        if sl.debug {
            return false;
        }
        // An address below PAGE_OFFSET (which wraps) or beyond the direct map lands past
        // the table's last lowmem pfn: its bounds check rejects both.
        let e = match sl.pfn_slab.get((va.wrapping_sub(po) >> 12) as usize) {
            Some(&e) if e != 0 => e,
            _ => return false,
        };
        let sid = (e as u32).wrapping_sub(1);
        let Some(s) = sl.caches.get_mut((e >> 32) as usize) else {
            return false;
        };
        let Some(c) = s.cpu_slab.get_mut(cpu) else {
            return false;
        };
        let off = va.wrapping_sub(c.base);
        // Below `span` (at most a slab's bytes), `off` fits a u32 for the stride test.
        // Last, the hardened free pointer's naive double-free check: `BUG_ON(object == fp)`.
        let inside = off < c.span && (off as u32) % c.stride == 0;
        if c.slab != sid || !inside || va == c.freelist {
            return false;
        }
        let addr = va.wrapping_add(u64::from(s.offset));
        let pa = PhysAddr::new(addr.wrapping_sub(po));
        // `set_freepointer()`; `ptr ^ s->random` is the same at either width.
        let key = c.freelist ^ s.random;
        let mem = &mut self.machine.mem;
        let stored = if sl.fp.is_wide() {
            write_n::<8>(mem, pa, key ^ swab_n::<8>(addr))
        } else {
            write_n::<4>(mem, pa, key ^ swab_n::<4>(addr))
        };
        if stored.is_err() {
            return false;
        }
        c.freelist = va;
        true
    }

    /// `slab_free()` → `do_slab_free()`: validate (the bitmap under slub_debug), then the CPU fast path
    /// or `__slab_free`.
    #[inline(always)]
    pub(crate) fn slab_free(&mut self, sid: u32, object: u64, cpu: usize) -> Result<(), SlabError> {
        let at = self.slab.mem();
        let slab = self.slab.slabs.get_mut(sid).ok_or_else(|| {
            SlabError::BadFree(vec![format!(
                "SLUB <none>: no slab for object {object:#010x}."
            )])
        })?;
        let s = &mut self.slab.caches[slab.cache as usize];
        let Some(idx) = obj_index(slab, s.size, object) else {
            let t = format!("Invalid object pointer {object:#010x}");
            return Err(SlabError::BadFree(slab_bug(&s.name, &t)));
        };
        let off = object - slab.base;
        let c = s.cpu_slab.get(cpu).copied().unwrap_or_default();
        let already_free = if self.slab.debug {
            !slab.is_live(idx)
        } else {
            object == slab.freelist || (c.slab == sid && object == c.freelist)
        };
        if already_free {
            let mut r = slab_bug(&s.name, "Object already free");
            r.push(format!("Object {object:#010x} @offset={off}"));
            return Err(SlabError::BadFree(r));
        }
        let Some(c) = s.cpu_slab.get(cpu).copied() else {
            return Err(SlabError::BadCache(format!("CPU {cpu} is not online")));
        };
        if self.slab.debug {
            slab.set_live(idx, false);
        }
        if c.slab == sid {
            set_freepointer(&mut self.machine.mem, at, s, object, c.freelist)?;
            s.cpu_slab[cpu].freelist = object;
            return Ok(());
        }
        self.__slab_free(sid, object, cpu)
    }

    /// `__slab_free()`: onto the slab's own freelist; a full slab becomes partial, an empty
    /// one is discarded when the node already keeps `min_partial` partial slabs.
    #[inline(never)]
    fn __slab_free(&mut self, sid: u32, object: u64, cpu: usize) -> Result<(), SlabError> {
        let at = self.slab.mem();
        let Some(slab) = self.slab.slabs.get_mut(sid) else {
            return Ok(());
        };
        let s = &self.slab.caches[slab.cache as usize];
        let prior = slab.freelist;
        set_freepointer(&mut self.machine.mem, at, s, object, prior)?;
        slab.freelist = object;
        slab.inuse -= 1;
        if slab.frozen {
            return Ok(());
        }
        let (cache, inuse, on_partial) = (slab.cache, slab.inuse, slab.on_partial);
        if inuse == 0 && s.node.nr_partial >= s.min_partial {
            if on_partial {
                self.slab.remove_partial(sid);
            }
            return self.discard_slab(sid, cpu);
        }
        if prior == 0 {
            self.slab.add_partial(cache, sid, true);
        }
        Ok(())
    }

    /// `discard_slab()` / `__free_slab()`: counters down, PG_slab off, pages back.
    fn discard_slab(&mut self, sid: u32, cpu: usize) -> Result<(), SlabError> {
        let Some(slab) = self.slab.slabs.remove(sid) else {
            return Ok(());
        };
        let s = &mut self.slab.caches[slab.cache as usize];
        s.node.nr_slabs -= 1;
        s.node.total_objects -= u64::from(slab.objects);
        let item = vmstat_item(s.flags);
        self.node.mod_node_page_state(item, -(1i64 << slab.order));
        let pfn = Pfn::new(slab.pfn);
        self.slab.set_pfn_slab(pfn.as_u64(), slab.order, None);
        if let Some(p) = self.node.mem_map.get_mut(pfn) {
            p.clear(PageFlags::SLAB);
            p.mapping = 0;
        }
        self.node
            .__free_pages(pfn, slab.order, cpu)
            .map_err(|e| SlabError::BadFree(vec![format!("BUG: Bad page state: {e}")]))
    }

    /// `deactivate_slab()`: give the CPU freelist back to its slab, then keep the slab as
    /// partial, discard it when empty (beyond `min_partial`), or let it go untracked as full.
    fn deactivate_slab(&mut self, id: CacheId, cpu: usize) -> Result<(), SlabError> {
        let at = self.slab.mem();
        let s = &mut self.slab.caches[id.0 as usize];
        let c = core::mem::take(&mut s.cpu_slab[cpu]);
        let Some(slab) = self.slab.slabs.get_mut(c.slab) else {
            return Ok(());
        };
        let remote = slab.freelist != 0;
        let (mut tail, mut n) = (0, 0);
        let mut it = c.freelist;
        while it != 0 && n < slab.objects {
            tail = it;
            n += 1;
            it = get_freepointer(&self.machine.mem, at, s, it)?;
        }
        if tail != 0 {
            set_freepointer(&mut self.machine.mem, at, s, tail, slab.freelist)?;
            slab.freelist = c.freelist;
            slab.inuse -= n;
        }
        slab.frozen = false;
        if slab.inuse == 0 && s.node.nr_partial >= s.min_partial {
            return self.discard_slab(c.slab, cpu);
        }
        if slab.freelist != 0 {
            self.slab.add_partial(id.0, c.slab, remote);
        }
        Ok(())
    }

    /// `kmem_cache_shrink()`: flush every CPU slab, then free every empty partial slab.
    pub fn kmem_cache_shrink(&mut self, id: CacheId, cpu: usize) -> Result<(), SlabError> {
        self.slab.cache_mut(id)?;
        for c in 0..self.slab.nr_cpus {
            self.deactivate_slab(id, c)?;
        }
        for sid in self.slab.partial_slabs(id) {
            if self.slab.slabs.get(sid).is_some_and(|s| s.inuse == 0) {
                self.slab.remove_partial(sid);
                self.discard_slab(sid, cpu)?;
            }
        }
        Ok(())
    }

    /// `kmem_cache_create()`.
    pub fn kmem_cache_create(&mut self, spec: &super::CacheSpec) -> Result<CacheId, SlabError> {
        self.slab.kmem_cache_create(spec)
    }

    /// `kmem_cache_destroy()`: the last reference shrinks the cache; objects still allocated
    /// leak it with the kernel's warning.
    pub fn kmem_cache_destroy(&mut self, id: CacheId, cpu: usize) -> Result<(), SlabError> {
        if !self.slab.kmem_cache_destroy_check(id)? {
            return Ok(());
        }
        self.kmem_cache_shrink(id, cpu)?;
        let s = &mut self.slab.caches[id.0 as usize];
        if s.node.nr_slabs != 0 {
            let msg = format!(
                "kmem_cache_destroy {}: Slab cache still has objects when called from {}",
                s.name, "kmem_cache_destroy"
            );
            self.log.warn(msg.clone());
            return Err(SlabError::Busy(msg));
        }
        s.dead = true;
        Ok(())
    }
}

/// The __phys_addr warning for an address outside the direct map.
fn non_linear(object: u64, cpu: usize) -> SlabError {
    SlabError::BadFree(vec![
        format!("WARNING: CPU: {cpu} PID: 0 at arch/x86/mm/physaddr.c __phys_addr"),
        format!("virt_to_phys used for non-linear address: {object:#010x} (kfree)"),
    ])
}

/// `cache_vmstat_idx()`.
pub(crate) fn vmstat_item(flags: SlabFlags) -> NodeStatItem {
    if flags.contains(SlabFlags::RECLAIM_ACCOUNT) {
        NodeStatItem::NrSlabReclaimableB
    } else {
        NodeStatItem::NrSlabUnreclaimableB
    }
}
