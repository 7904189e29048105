//! `struct page` and the FLATMEM `mem_map`.
//!
//! Every page frame has a 40-byte descriptor (the i386 layout with MEMCG and SLUB's 8-byte
//! alignment), and a FLATMEM kernel keeps all of them in one array, `mem_map`, that the boot
//! allocates from low memory. The buddy allocator keeps its whole state in those descriptors:
//! a free block's head carries the Buddy page type and its order in `private`, and the free
//! lists are threaded through the `lru` words. We keep the same layout, with page frame numbers
//! instead of pointers in the list words, so the size the boot must reserve for `mem_map` is
//! the real one and list operations stay O(1) with no allocation.

use core::ops::{Index, IndexMut};

use bitflags::bitflags;
use machine::Pfn;

use crate::mmzone::{is_highmem_idx, ZoneType, MAX_ORDER_NR_PAGES};

bitflags! {
    /// `enum pageflags` bits as laid out in v6.1 for this configuration (MMU, X86_PAT so
    /// PG_uncached exists, MEMORY_FAILURE so PG_hwpoison exists, 32-bit so no PG_arch_2).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct PageFlags: u32 {
        const LOCKED = 1 << 0;
        const REFERENCED = 1 << 1;
        const UPTODATE = 1 << 2;
        const DIRTY = 1 << 3;
        const LRU = 1 << 4;
        const ACTIVE = 1 << 5;
        const WORKINGSET = 1 << 6;
        const WAITERS = 1 << 7;
        const ERROR = 1 << 8;
        const SLAB = 1 << 9;
        const OWNER_PRIV_1 = 1 << 10;
        const ARCH_1 = 1 << 11;
        const RESERVED = 1 << 12;
        const PRIVATE = 1 << 13;
        const PRIVATE_2 = 1 << 14;
        const WRITEBACK = 1 << 15;
        const HEAD = 1 << 16;
        const MAPPEDTODISK = 1 << 17;
        const RECLAIM = 1 << 18;
        const SWAPBACKED = 1 << 19;
        const UNEVICTABLE = 1 << 20;
        const MLOCKED = 1 << 21;
        const UNCACHED = 1 << 22;
        const HWPOISON = 1 << 23;
    }
}

impl PageFlags {
    /// PG_reported shares PG_uptodate's bit (free pages only).
    pub const REPORTED: PageFlags = PageFlags::UPTODATE;
    /// PG_swapcache / PG_checked / PG_pinned share PG_owner_priv_1.
    pub const SWAPCACHE: PageFlags = PageFlags::OWNER_PRIV_1;
    /// PG_readahead and PG_isolated share PG_reclaim.
    pub const READAHEAD: PageFlags = PageFlags::RECLAIM;
    /// PG_anon_exclusive shares PG_mappedtodisk.
    pub const ANON_EXCLUSIVE: PageFlags = PageFlags::MAPPEDTODISK;
}

/// `__NR_PAGEFLAGS`: bits 0..23 hold page flags.
pub const NR_PAGEFLAGS: u32 = 24;
/// `ZONES_PGSHIFT`: FLATMEM, no NUMA, so the 2-bit zone number sits at the very top.
pub const ZONES_PGSHIFT: u32 = 30;
/// `ZONES_MASK`.
pub const ZONES_MASK: u32 = 0x3;
/// `LRU_GEN_MASK` (LRU_GEN: 3 bits below the zone).
pub const LRU_GEN_MASK: u32 = 0x7 << 27;
/// `LRU_REFS_MASK` (2 bits below the generation).
pub const LRU_REFS_MASK: u32 = 0x3 << 25;
/// `PAGEFLAGS_MASK`.
pub const PAGEFLAGS_MASK: u32 = (1 << NR_PAGEFLAGS) - 1;
/// Flags that must be clear when a page is freed (`PAGE_FLAGS_CHECK_AT_FREE`).
pub const PAGE_FLAGS_CHECK_AT_FREE: u32 = PageFlags::LRU.bits()
    | PageFlags::LOCKED.bits()
    | PageFlags::PRIVATE.bits()
    | PageFlags::PRIVATE_2.bits()
    | PageFlags::WRITEBACK.bits()
    | PageFlags::RESERVED.bits()
    | PageFlags::SLAB.bits()
    | PageFlags::ACTIVE.bits()
    | PageFlags::UNEVICTABLE.bits()
    | PageFlags::MLOCKED.bits()
    | LRU_GEN_MASK;
/// Flags cleared when a page enters the allocator (`PAGE_FLAGS_CHECK_AT_PREP`).
pub const PAGE_FLAGS_CHECK_AT_PREP: u32 =
    (PAGEFLAGS_MASK & !PageFlags::HWPOISON.bits()) | LRU_GEN_MASK | LRU_REFS_MASK;

/// `PAGE_TYPE_BASE`: a page type is "set" when its bit is *cleared* from this base.
pub const PAGE_TYPE_BASE: u32 = 0xf000_0000;
/// `PG_buddy`.
pub const PG_BUDDY: u32 = 0x0000_0080;
/// `PG_offline`.
pub const PG_OFFLINE: u32 = 0x0000_0100;
/// `PG_table`.
pub const PG_TABLE: u32 = 0x0000_0200;
/// `PG_guard`.
pub const PG_GUARD: u32 = 0x0000_0400;

/// `PAGE_MAPPING_ANON` / `PAGE_MAPPING_MOVABLE` low bits of `mapping`.
pub const PAGE_MAPPING_ANON: u32 = 0x1;
pub const PAGE_MAPPING_MOVABLE: u32 = 0x2;
pub const PAGE_MAPPING_FLAGS: u32 = PAGE_MAPPING_ANON | PAGE_MAPPING_MOVABLE;
/// `TAIL_MAPPING` poison stored in tail pages' `mapping` (no POISON_POINTER_DELTA on 32-bit).
pub const TAIL_MAPPING: u32 = 0x400;
/// `COMPOUND_PAGE_DTOR`.
pub const COMPOUND_PAGE_DTOR: u8 = 1;

/// List word value meaning "on no list" (the kernel writes LIST_POISON there).
pub const LINK_NONE: u32 = u32::MAX;
/// Set in a list word that designates a list head rather than a page frame.
pub const LINK_HEAD: u32 = 1 << 31;
/// Set (with [`LINK_HEAD`] clear) in `compound_head` of a tail page: the kernel uses bit 0 of
/// an aligned pointer, we use a bit no pfn reaches (pfns stay below 2^30).
pub const COMPOUND_TAIL: u32 = 1 << 30;
/// Upper bound (exclusive) on pfns the list encoding supports.
pub const MAX_LINK_PFN: u64 = 1 << 30;

/// The 32-bit `struct page`: 40 bytes with MEMCG and 8-byte alignment.
///
/// The five words after `flags` are the kernel's big union; only the page-allocator view is
/// named here (`lru`/`buddy_list`/`pcp_list`, `mapping`, `index`, `private`). Other owners of a
/// page (page tables, slab) reuse the same words.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Page {
    /// Page flags in bits 0..23, zone number in bits 31..30.
    pub flags: u32,
    /// `lru.next` (pfn, or a list head): also `compound_head` on tail pages.
    pub lru_next: u32,
    /// `lru.prev`: also `compound_dtor`/`compound_order` on the first tail page.
    pub lru_prev: u32,
    pub mapping: u32,
    /// `index`: for pages on a pcp list, their migratetype (`set_pcppage_migratetype`).
    pub index: u32,
    /// `private`: for a free block's head page, its order.
    pub private: u32,
    /// `_mapcount`, also `page_type` (see [`PAGE_TYPE_BASE`]).
    pub mapcount: i32,
    pub refcount: i32,
    pub memcg_data: u32,
    _pad: u32,
}

impl Page {
    /// `page_zonenum()`.
    pub fn zonenum(&self) -> ZoneType {
        ZoneType::from_index(((self.flags >> ZONES_PGSHIFT) & ZONES_MASK) as usize)
    }
    /// `set_page_zone()`.
    pub fn set_zone(&mut self, zone: ZoneType) {
        self.flags = (self.flags & !(ZONES_MASK << ZONES_PGSHIFT))
            | ((zone as u32 & ZONES_MASK) << ZONES_PGSHIFT);
    }
    pub fn page_flags(&self) -> PageFlags {
        PageFlags::from_bits_truncate(self.flags)
    }
    pub fn test(&self, f: PageFlags) -> bool {
        self.flags & f.bits() == f.bits()
    }
    pub fn set(&mut self, f: PageFlags) {
        self.flags |= f.bits();
    }
    pub fn clear(&mut self, f: PageFlags) {
        self.flags &= !f.bits();
    }
    /// `PageReserved()`.
    pub fn is_reserved(&self) -> bool {
        self.test(PageFlags::RESERVED)
    }
    /// `PageHead()`.
    pub fn is_head(&self) -> bool {
        self.test(PageFlags::HEAD)
    }
    /// `PageTail()`: the tail marker in `compound_head`.
    pub fn is_tail(&self) -> bool {
        self.lru_next & (LINK_HEAD | COMPOUND_TAIL) == COMPOUND_TAIL
    }
    /// `PageCompound()`.
    pub fn is_compound(&self) -> bool {
        self.is_head() || self.is_tail()
    }
    /// Head pfn of a tail page (`compound_head()`).
    pub fn compound_head_pfn(&self) -> Option<u64> {
        self.is_tail()
            .then_some((self.lru_next & !COMPOUND_TAIL) as u64)
    }
    /// `set_compound_head()`.
    pub fn set_compound_head(&mut self, head_pfn: u32) {
        self.lru_next = head_pfn | COMPOUND_TAIL;
    }
    /// `clear_compound_head()`.
    pub fn clear_compound_head(&mut self) {
        self.lru_next = LINK_NONE;
    }
    /// `page_type` view of `_mapcount`.
    pub fn page_type(&self) -> u32 {
        self.mapcount as u32
    }
    fn has_type(&self, bit: u32) -> bool {
        self.page_type() & (PAGE_TYPE_BASE | bit) == PAGE_TYPE_BASE
    }
    fn set_type(&mut self, bit: u32) {
        self.mapcount = (self.page_type() & !bit) as i32;
    }
    fn clear_type(&mut self, bit: u32) {
        self.mapcount = (self.page_type() | bit) as i32;
    }
    /// `PageBuddy()`.
    pub fn is_buddy(&self) -> bool {
        self.has_type(PG_BUDDY)
    }
    /// `__SetPageBuddy()`.
    pub fn set_buddy(&mut self) {
        self.set_type(PG_BUDDY);
    }
    /// `__ClearPageBuddy()`.
    pub fn clear_buddy(&mut self) {
        self.clear_type(PG_BUDDY);
    }
    /// `PageTable()`.
    pub fn is_table(&self) -> bool {
        self.has_type(PG_TABLE)
    }
    /// `__SetPageTable()`.
    pub fn set_table(&mut self) {
        self.set_type(PG_TABLE);
    }
    /// `__ClearPageTable()`.
    pub fn clear_table(&mut self) {
        self.clear_type(PG_TABLE);
    }
    /// `PageOffline()`.
    pub fn is_offline(&self) -> bool {
        self.has_type(PG_OFFLINE)
    }
    /// `PageGuard()`.
    pub fn is_guard(&self) -> bool {
        self.has_type(PG_GUARD)
    }
    /// `page_mapcount_reset()`.
    pub fn mapcount_reset(&mut self) {
        self.mapcount = -1;
    }
    /// `buddy_order()`.
    pub fn buddy_order(&self) -> u32 {
        self.private
    }
    /// `set_page_private()`.
    pub fn set_private(&mut self, v: u32) {
        self.private = v;
    }
    /// `set_buddy_order()`: record the order and mark the head PageBuddy.
    pub fn set_buddy_order(&mut self, order: u32) {
        self.private = order;
        self.set_buddy();
    }
    /// `page_count()`.
    pub fn count(&self) -> i32 {
        self.refcount
    }
    /// `set_page_count()`.
    pub fn set_count(&mut self, v: i32) {
        self.refcount = v;
    }
    /// `put_page_testzero()`: drop a reference, true when it was the last.
    pub fn put_testzero(&mut self) -> bool {
        self.refcount -= 1;
        self.refcount == 0
    }
    /// `get_page()`.
    pub fn get(&mut self) {
        self.refcount += 1;
    }
    /// `__PageMovable()`: a non-LRU movable page (mapping tagged MOVABLE, not ANON).
    pub fn is_movable_mapping(&self) -> bool {
        self.mapping & PAGE_MAPPING_FLAGS == PAGE_MAPPING_MOVABLE
    }
    /// `PageHighMem()`: there is no flag, the zone decides (Movable counts as highmem when it
    /// is carved from HighMem).
    pub fn is_highmem(&self, movable_zone: ZoneType) -> bool {
        is_highmem_idx(self.zonenum(), movable_zone)
    }
    /// `__init_single_page()`: a fresh descriptor in `zone`, referenced once, on no list.
    pub fn init_single(&mut self, zone: ZoneType) {
        *self = Page::default();
        self.set_zone(zone);
        self.refcount = 1;
        self.mapcount_reset();
        self.lru_next = LINK_NONE;
        self.lru_prev = LINK_NONE;
    }
}

/// The head of an intrusive circular list threaded through the pages' `lru` words.
///
/// `next` is the first entry and `prev` the last; an empty head points at itself
/// (`LINK_HEAD | id`), exactly like the kernel's `struct list_head`, so `list_del` needs no
/// knowledge of which list a page is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListHead {
    pub next: u32,
    pub prev: u32,
}

impl ListHead {
    /// `INIT_LIST_HEAD` for the head known to its owner as `id`.
    pub const fn new(id: u32) -> Self {
        ListHead {
            next: LINK_HEAD | id,
            prev: LINK_HEAD | id,
        }
    }
    pub fn is_empty(&self) -> bool {
        self.next & LINK_HEAD != 0
    }
    /// First page on the list.
    pub fn first(&self) -> Option<u32> {
        (self.next & LINK_HEAD == 0).then_some(self.next)
    }
    /// Last page on the list.
    pub fn last(&self) -> Option<u32> {
        (self.prev & LINK_HEAD == 0).then_some(self.prev)
    }
}

/// An owner of list heads, addressed by small ids (a zone owns its free lists and pcp lists).
pub trait ListHeads {
    fn list_head(&self, id: u32) -> &ListHead;
    fn list_head_mut(&mut self, id: u32) -> &mut ListHead;
}

/// The storage of `mem_map`: an anonymous host mapping advised to use transparent huge
/// pages, so a 64 GiB machine's 640 MiB array costs a few hundred host page faults instead
/// of 160,000, and is zero-filled by the host (a zeroed `struct page` is what memblock hands
/// out), so `memmap_init` writes each descriptor exactly once. Tiny maps, and hosts that
/// refuse the mapping, use a `Vec`.
struct PageArray {
    /// The first descriptor, in `map` or in `vec`, whichever holds them: computed once so
    /// that indexing is one bounds check and one address computation, not a match.
    ptr: core::ptr::NonNull<Page>,
    len: usize,
    /// Owners of the storage (never resized or moved out of while `ptr` points into them).
    _map: Option<memmap2::MmapMut>,
    _vec: Vec<Page>,
}

// SAFETY: `ptr` points into storage this value owns exclusively (`_map` or `_vec`), so
// moving it to another thread or sharing `&PageArray` is as safe as for a `Vec<Page>`.
unsafe impl Send for PageArray {}
// SAFETY: as above; `&PageArray` only hands out `&[Page]`.
unsafe impl Sync for PageArray {}

/// Maps smaller than this use a `Vec` (a huge page would be mostly empty).
const PAGE_ARRAY_MMAP_MIN: usize = 1 << 20;

impl PageArray {
    fn zeroed(len: usize) -> Self {
        let bytes = len * core::mem::size_of::<Page>();
        if bytes >= PAGE_ARRAY_MMAP_MIN {
            if let Ok(mut map) = memmap2::MmapOptions::new().len(bytes).map_anon() {
                // Only a hint: without THP the mapping still works with 4 KiB pages.
                let _ = map.advise(memmap2::Advice::HugePage);
                let ptr = core::ptr::NonNull::new(map.as_mut_ptr().cast::<Page>())
                    .expect("a mapping is never at address 0");
                return PageArray {
                    ptr,
                    len,
                    _map: Some(map),
                    _vec: Vec::new(),
                };
            }
        }
        let mut vec = vec![Page::default(); len];
        let ptr = core::ptr::NonNull::new(vec.as_mut_ptr()).expect("Vec pointers are non-null");
        PageArray {
            ptr,
            len,
            _map: None,
            _vec: vec,
        }
    }
}

impl core::ops::Deref for PageArray {
    type Target = [Page];
    #[inline(always)]
    fn deref(&self) -> &[Page] {
        // SAFETY: `ptr` is the start of `len` initialised descriptors owned by `self` (the
        // mapping is page-aligned, `len * size_of::<Page>()` bytes long, and `Page` is
        // `repr(C)` plain integers without padding, so every byte pattern, the host's zero
        // fill included, is a valid `Page`; or the Vec's buffer, which is never resized).
        unsafe { core::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl core::ops::DerefMut for PageArray {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut [Page] {
        // SAFETY: as in `deref`, and `&mut self` makes the borrow unique.
        unsafe { core::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Clone for PageArray {
    fn clone(&self) -> Self {
        let mut copy = PageArray::zeroed(self.len);
        copy.copy_from_slice(self);
        copy
    }
}

impl core::fmt::Debug for PageArray {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "PageArray({} pages)", self.len)
    }
}

/// The FLATMEM `mem_map`: one descriptor per pfn from the node start rounded down to
/// `MAX_ORDER_NR_PAGES` to the node end rounded up (`alloc_node_mem_map`), so the buddy of
/// any block of any order always has a descriptor.
#[derive(Clone, Debug)]
pub struct MemMap {
    start_pfn: u64,
    pages: PageArray,
}

impl MemMap {
    /// The pfn span `alloc_node_mem_map` covers for a node `[start, end)`.
    pub fn span(node_start_pfn: u64, node_end_pfn: u64) -> (u64, u64) {
        let n = MAX_ORDER_NR_PAGES;
        let start = node_start_pfn & !(n - 1);
        let end = node_end_pfn.div_ceil(n) * n;
        (start, end.max(start))
    }

    /// Bytes of low memory the boot must reserve for a node's `mem_map`.
    pub fn bytes_for(node_start_pfn: u64, node_end_pfn: u64) -> u64 {
        let (s, e) = Self::span(node_start_pfn, node_end_pfn);
        (e - s) * core::mem::size_of::<Page>() as u64
    }

    /// A zero-filled map (as memblock hands it out) for a node `[start, end)`.
    pub fn new(node_start_pfn: u64, node_end_pfn: u64) -> Self {
        let (s, e) = Self::span(node_start_pfn, node_end_pfn);
        MemMap {
            start_pfn: s,
            pages: PageArray::zeroed((e - s) as usize),
        }
    }

    pub fn start_pfn(&self) -> u64 {
        self.start_pfn
    }
    pub fn end_pfn(&self) -> u64 {
        self.start_pfn + self.pages.len() as u64
    }
    pub fn len(&self) -> usize {
        self.pages.len()
    }
    pub fn is_empty(&self) -> bool {
        self.pages.is_empty()
    }
    /// Write `value` into the descriptors of pfns `[start, end)` (clipped to the map).
    pub(crate) fn fill(&mut self, start: u64, end: u64, value: Page) {
        let s = start.clamp(self.start_pfn, self.end_pfn()) - self.start_pfn;
        let e = end.clamp(self.start_pfn, self.end_pfn()) - self.start_pfn;
        self.pages[s as usize..e as usize].fill(value);
    }
    /// Size in bytes, i.e. what the real kernel allocates for this array.
    pub fn byte_size(&self) -> u64 {
        self.pages.len() as u64 * core::mem::size_of::<Page>() as u64
    }
    pub fn contains(&self, pfn: Pfn) -> bool {
        pfn.as_u64() >= self.start_pfn && pfn.as_u64() < self.end_pfn()
    }
    pub fn get(&self, pfn: Pfn) -> Option<&Page> {
        let i = pfn.as_u64().checked_sub(self.start_pfn)?;
        self.pages.get(usize::try_from(i).ok()?)
    }
    pub fn get_mut(&mut self, pfn: Pfn) -> Option<&mut Page> {
        let i = pfn.as_u64().checked_sub(self.start_pfn)?;
        self.pages.get_mut(usize::try_from(i).ok()?)
    }

    /// Descriptor of `pfn` for update, or `None` outside the map (one bounds check).
    #[inline(always)]
    pub(crate) fn try_pm(&mut self, pfn: u64) -> Option<&mut Page> {
        self.pages
            .get_mut(usize::try_from(pfn.wrapping_sub(self.start_pfn)).ok()?)
    }

    /// Descriptor of a pfn known to be inside the map (internal fast path).
    #[inline(always)]
    pub(crate) fn p(&self, pfn: u32) -> &Page {
        &self.pages[(pfn as usize).wrapping_sub(self.start_pfn as usize)]
    }
    #[inline(always)]
    pub(crate) fn pm(&mut self, pfn: u32) -> &mut Page {
        &mut self.pages[(pfn as usize).wrapping_sub(self.start_pfn as usize)]
    }

    #[inline]
    fn set_next(&mut self, heads: &mut impl ListHeads, link: u32, val: u32) {
        if link & LINK_HEAD != 0 {
            heads.list_head_mut(link & !LINK_HEAD).next = val;
        } else {
            self.pm(link).lru_next = val;
        }
    }
    #[inline]
    fn set_prev(&mut self, heads: &mut impl ListHeads, link: u32, val: u32) {
        if link & LINK_HEAD != 0 {
            heads.list_head_mut(link & !LINK_HEAD).prev = val;
        } else {
            self.pm(link).lru_prev = val;
        }
    }

    /// `list_add()` on a head the caller holds (`id` names it): two stores into the
    /// neighbours, no id decoding.
    #[inline(always)]
    pub fn list_add_at(&mut self, head: &mut ListHead, id: u32, pfn: u32) {
        let first = head.next;
        if first & LINK_HEAD != 0 {
            head.prev = pfn;
        } else {
            self.pm(first).lru_prev = pfn;
        }
        let pg = self.pm(pfn);
        pg.lru_next = first;
        pg.lru_prev = LINK_HEAD | id;
        head.next = pfn;
    }

    /// `list_add_tail()` on a head the caller holds.
    #[inline(always)]
    pub fn list_add_tail_at(&mut self, head: &mut ListHead, id: u32, pfn: u32) {
        let last = head.prev;
        if last & LINK_HEAD != 0 {
            head.next = pfn;
        } else {
            self.pm(last).lru_next = pfn;
        }
        let pg = self.pm(pfn);
        pg.lru_next = LINK_HEAD | id;
        pg.lru_prev = last;
        head.prev = pfn;
    }

    /// `list_first_entry()` + `list_del()` on a head the caller holds.
    #[inline(always)]
    pub fn list_pop_first(&mut self, head: &mut ListHead, id: u32) -> Option<u32> {
        self.list_pop_first_with(head, id, |_| {})
    }

    /// [`Self::list_pop_first`], then `prep` on the popped page's descriptor while it is
    /// at hand (the allocator's fast path: one lookup of the page instead of two).
    #[inline(always)]
    pub(crate) fn list_pop_first_with(
        &mut self,
        head: &mut ListHead,
        id: u32,
        prep: impl FnOnce(&mut Page),
    ) -> Option<u32> {
        let pfn = head.first()?;
        let pg = self.pm(pfn);
        let next = pg.lru_next;
        pg.lru_next = LINK_NONE;
        pg.lru_prev = LINK_NONE;
        prep(pg);
        head.next = next;
        if next & LINK_HEAD != 0 {
            head.prev = LINK_HEAD | id;
        } else {
            self.pm(next).lru_prev = LINK_HEAD | id;
        }
        Some(pfn)
    }

    /// `list_last_entry()` + `list_del()` on a head the caller holds.
    #[inline(always)]
    pub fn list_pop_last(&mut self, head: &mut ListHead, id: u32) -> Option<u32> {
        let pfn = head.last()?;
        let pg = self.pm(pfn);
        let prev = pg.lru_prev;
        pg.lru_next = LINK_NONE;
        pg.lru_prev = LINK_NONE;
        head.prev = prev;
        if prev & LINK_HEAD != 0 {
            head.next = LINK_HEAD | id;
        } else {
            self.pm(prev).lru_next = LINK_HEAD | id;
        }
        Some(pfn)
    }

    /// `list_add()`: insert `pfn` at the front of list `id`.
    #[inline]
    pub fn list_add(&mut self, heads: &mut impl ListHeads, id: u32, pfn: u32) {
        self.list_add_at(heads.list_head_mut(id), id, pfn);
    }

    /// `list_add_tail()`: insert `pfn` at the back of list `id`.
    #[inline]
    pub fn list_add_tail(&mut self, heads: &mut impl ListHeads, id: u32, pfn: u32) {
        self.list_add_tail_at(heads.list_head_mut(id), id, pfn);
    }

    /// `list_del()`: unlink `pfn` from whatever list it is on (a neighbour that is a list
    /// head is found by decoding its id).
    #[inline]
    pub fn list_del(&mut self, heads: &mut impl ListHeads, pfn: u32) {
        let (n, p) = {
            let pg = self.p(pfn);
            (pg.lru_next, pg.lru_prev)
        };
        self.set_next(heads, p, n);
        self.set_prev(heads, n, p);
        let pg = self.pm(pfn);
        pg.lru_next = LINK_NONE;
        pg.lru_prev = LINK_NONE;
    }

    /// `list_move_tail()`.
    pub fn list_move_tail(&mut self, heads: &mut impl ListHeads, id: u32, pfn: u32) {
        self.list_del(heads, pfn);
        self.list_add_tail(heads, id, pfn);
    }

    /// Walk list `id` front to back. Stops after `limit` entries so a corrupted (cyclic) list
    /// cannot hang a caller; `debug_vm` uses the limit to report such corruption.
    pub fn list_iter<'a, H: ListHeads>(
        &'a self,
        heads: &'a H,
        id: u32,
        limit: usize,
    ) -> impl Iterator<Item = u32> + 'a {
        let mut cur = heads.list_head(id).next;
        let mut left = limit;
        core::iter::from_fn(move || {
            if cur & LINK_HEAD != 0 || cur == LINK_NONE || left == 0 {
                return None;
            }
            if cur as u64 >= self.end_pfn() || (cur as u64) < self.start_pfn {
                return None;
            }
            left -= 1;
            let here = cur;
            cur = self.p(here).lru_next;
            Some(here)
        })
    }
}

impl Index<Pfn> for MemMap {
    type Output = Page;
    fn index(&self, pfn: Pfn) -> &Page {
        &self.pages[(pfn.as_u64() - self.start_pfn) as usize]
    }
}

impl IndexMut<Pfn> for MemMap {
    fn index_mut(&mut self, pfn: Pfn) -> &mut Page {
        &mut self.pages[(pfn.as_u64() - self.start_pfn) as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn struct_page_is_40_bytes() {
        assert_eq!(core::mem::size_of::<Page>(), 40);
    }

    #[test]
    fn zone_lives_in_the_top_two_bits() {
        let mut p = Page::default();
        p.init_single(ZoneType::HighMem);
        assert_eq!(p.flags >> 30, 2);
        assert_eq!(p.zonenum(), ZoneType::HighMem);
        p.set(PageFlags::RESERVED);
        assert_eq!(p.flags, (2 << 30) | (1 << 12));
        assert!(p.is_highmem(ZoneType::HighMem));
        p.set_zone(ZoneType::Normal);
        assert!(!p.is_highmem(ZoneType::HighMem));
        assert!(p.is_reserved());
    }

    #[test]
    fn page_types_are_cleared_bits() {
        let mut p = Page::default();
        p.init_single(ZoneType::Normal);
        assert!(!p.is_buddy());
        p.set_buddy_order(3);
        assert_eq!(p.page_type(), 0xffff_ff7f);
        assert!(p.is_buddy() && !p.is_table());
        p.clear_buddy();
        assert_eq!(p.mapcount, -1);
        p.set_table();
        assert_eq!(p.page_type(), 0xffff_fdff);
        assert!(p.is_table() && !p.is_buddy());
        // A zeroed (never initialised) descriptor has no type.
        assert!(!Page::default().is_buddy());
    }

    struct Heads(Vec<ListHead>);
    impl ListHeads for Heads {
        fn list_head(&self, id: u32) -> &ListHead {
            &self.0[id as usize]
        }
        fn list_head_mut(&mut self, id: u32) -> &mut ListHead {
            &mut self.0[id as usize]
        }
    }

    #[test]
    fn lists_add_head_tail_delete_move() {
        let mut m = MemMap::new(1000, 1010);
        assert_eq!(m.start_pfn(), 0);
        assert_eq!(m.len(), 1024);
        assert_eq!(m.byte_size(), 40 * 1024);
        let mut h = Heads(vec![ListHead::new(0), ListHead::new(1)]);
        m.list_add(&mut h, 0, 5);
        m.list_add(&mut h, 0, 6);
        m.list_add_tail(&mut h, 0, 7);
        assert_eq!(m.list_iter(&h, 0, 100).collect::<Vec<_>>(), vec![6, 5, 7]);
        m.list_del(&mut h, 5);
        assert_eq!(m.list_iter(&h, 0, 100).collect::<Vec<_>>(), vec![6, 7]);
        m.list_move_tail(&mut h, 1, 6);
        assert_eq!(m.list_iter(&h, 0, 100).collect::<Vec<_>>(), vec![7]);
        assert_eq!(h.0[1].first(), Some(6));
        assert_eq!(h.0[1].last(), Some(6));
        m.list_del(&mut h, 7);
        assert!(h.0[0].is_empty());
        assert_eq!(h.0[0], ListHead::new(0));
        assert_eq!(m.p(7).lru_next, LINK_NONE);
    }

    #[test]
    fn mem_map_span_is_max_order_aligned() {
        assert_eq!(MemMap::span(1, 1_310_720), (0, 1_310_720));
        assert_eq!(MemMap::span(1, 225_278), (0, 225_280));
        assert_eq!(MemMap::bytes_for(1, 1025), 2048 * 40);
    }
}
