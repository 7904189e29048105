//! Freeing pages: `__free_pages`, the pcp and direct paths, and the boot-time frees.
//!
//! A freed block first loses its last reference; orders the pcp lists cache go to this CPU's
//! list (`free_unref_page`), larger ones straight to the buddy lists (`__free_pages_ok`).
//! Before that, `free_pages_prepare` strips allocation-time state and checks that nothing
//! still uses the pages; a page in a bad state is reported ("BUG: Bad page state") and leaked,
//! as the kernel does. Boot frees (`__free_pages_core`) also turn memmap-initialised pages
//! into managed ones and queue them at the tail of the free lists.

use machine::Pfn;

use crate::mmzone::{pcp_list_id, MigrateType, PgData, ZoneType, MAX_ORDER, MIGRATE_PCPTYPES};
use crate::page::{
    PageFlags, COMPOUND_TAIL, LINK_HEAD, LINK_NONE, PAGE_FLAGS_CHECK_AT_FREE,
    PAGE_FLAGS_CHECK_AT_PREP, PAGE_MAPPING_FLAGS,
};
use crate::vmstat::VmEventItem;

use super::buddy::ZoneMut;
use super::pcp::{nr_pcp_free, nr_pcp_high, pcp_allowed_order};
use super::Fpi;

/// `MEMCG_DATA_KMEM`: the page is charged as kernel memory.
const MEMCG_DATA_KMEM: u32 = 0x2;

/// Why a free request was refused. The kernel would corrupt itself on most of these; the
/// model refuses them instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FreeError {
    #[error("cpu {0} is not online")]
    BadCpu(usize),
    #[error("order {0} is not below MAX_ORDER")]
    BadOrder(u32),
    #[error("pfn {0:#x} has no struct page")]
    OutOfRange(Pfn),
    #[error("pfn {pfn:#x} is not aligned to order {order}")]
    Misaligned { pfn: Pfn, order: u32 },
    #[error("pfns {pfn:#x}+{order} are not inside one populated zone")]
    NotInZone { pfn: Pfn, order: u32 },
    #[error("pfn {0:#x} is already free (refcount 0 or on a free list)")]
    AlreadyFree(Pfn),
    #[error("pfn {0:#x} is a tail page of a compound page")]
    TailPage(Pfn),
    #[error("bad page state at pfn {pfn:#x}: {reason}")]
    BadPageState { pfn: Pfn, reason: &'static str },
}

impl ZoneMut<'_> {
    /// `page_expected_state()` / `page_bad_reason()`: `None` when the page may be freed or
    /// handed out.
    pub(crate) fn page_bad_reason(&self, pfn: u32, check_flags: u32) -> Option<&'static str> {
        let p = self.map.p(pfn);
        let mut reason = None;
        if p.mapcount != -1 {
            reason = Some("nonzero mapcount");
        }
        if p.mapping != 0 {
            reason = Some("non-NULL mapping");
        }
        if p.refcount != 0 {
            reason = Some("nonzero _refcount");
        }
        if p.flags & check_flags != 0 {
            reason = Some(if check_flags == PAGE_FLAGS_CHECK_AT_FREE {
                "PAGE_FLAGS_CHECK_AT_FREE flag(s) set"
            } else {
                "PAGE_FLAGS_CHECK_AT_PREP flag(s) set"
            });
        }
        if p.memcg_data != 0 {
            reason = Some("page still charged to cgroup");
        }
        reason
    }

    /// `bad_page()`: report, then clear the page type so the page cannot pass as free.
    pub(crate) fn bad_page(&mut self, pfn: u32, reason: &str) {
        self.kmsg.push(format!(
            "BUG: Bad page state in process {}  pfn:{:05x}",
            self.comm, pfn
        ));
        let p = self.map.p(pfn);
        self.kmsg.push(format!(
            "page:(ptrval) refcount:{} mapcount:{} mapping:{:08x} index:{:#x} pfn:{:#x}",
            p.refcount,
            p.mapcount.wrapping_add(1),
            p.mapping,
            p.index,
            pfn
        ));
        self.kmsg.push(format!("page dumped because: {reason}"));
        self.map.pm(pfn).mapcount_reset();
    }

    /// `free_page_is_bad()`: report and return the reason when the page is not clean.
    pub(crate) fn free_page_is_bad(&mut self, pfn: u32) -> Option<&'static str> {
        let r = self.page_bad_reason(pfn, PAGE_FLAGS_CHECK_AT_FREE)?;
        self.bad_page(pfn, r);
        Some(r)
    }

    /// `check_new_pages()`: true when some page of a block about to be handed out is in a
    /// bad state (hwpoisoned pages are dropped silently).
    pub(crate) fn check_new_page_bad(&mut self, pfn: u32, order: u32) -> bool {
        for p in pfn..pfn + (1 << order) {
            let check = PAGE_FLAGS_CHECK_AT_PREP | PageFlags::HWPOISON.bits();
            if let Some(reason) = self.page_bad_reason(p, check) {
                if self.map.p(p).test(PageFlags::HWPOISON) {
                    self.map.pm(p).mapcount_reset();
                } else {
                    self.bad_page(p, reason);
                }
                return true;
            }
        }
        false
    }

    /// `free_pages_prepare()`: undo compound and allocation state. Returns the reason the
    /// block must not be freed, if any.
    pub(crate) fn free_pages_prepare(
        &mut self,
        pfn: u32,
        order: u32,
        check_free: bool,
    ) -> Option<&'static str> {
        let head = self.map.p(pfn);
        if head.test(PageFlags::HWPOISON) && order == 0 {
            // Poisoned pages never return to the allocator.
            return Some("hwpoisoned page");
        }
        let mut bad = None;
        if order > 0 {
            let compound = head.is_compound();
            for p in pfn + 1..pfn + (1 << order) {
                if compound {
                    // free_tail_pages_check() without DEBUG_VM: just clear the tail state.
                    let t = self.map.pm(p);
                    t.mapping = 0;
                    t.clear_compound_head();
                }
                if let Some(r) = self.free_page_is_bad(p) {
                    bad = bad.or(Some(r));
                    continue;
                }
                self.map.pm(p).flags &= !PAGE_FLAGS_CHECK_AT_PREP;
            }
        }
        let pg = self.map.pm(pfn);
        if pg.mapping & PAGE_MAPPING_FLAGS != 0 {
            pg.mapping = 0;
        }
        if pg.memcg_data & MEMCG_DATA_KMEM != 0 {
            // __memcg_kmem_uncharge_page()
            pg.memcg_data = 0;
        }
        if check_free {
            if let Some(r) = self.free_page_is_bad(pfn) {
                bad = bad.or(Some(r));
            }
        }
        if bad.is_some() {
            return bad;
        }
        self.map.pm(pfn).flags &= !PAGE_FLAGS_CHECK_AT_PREP;
        None
    }

    /// `free_one_page()` (no isolated pageblocks in this model).
    pub(crate) fn free_one_page(&mut self, pfn: u32, order: u32, mt: MigrateType, fpi: Fpi) {
        let mt = if self.zone.nr_isolate_pageblock != 0 || mt == MigrateType::Isolate {
            self.get_pageblock_migratetype(pfn)
        } else {
            mt
        };
        self.__free_one_page(pfn, order, mt, fpi);
    }
}

impl PgData {
    /// Validate a block handed to a free function: inside `mem_map`, aligned, and inside
    /// the span of the populated zone its head page belongs to.
    fn check_free_block(&self, pfn: Pfn, order: u32) -> Result<(u32, ZoneType), FreeError> {
        if order as usize >= MAX_ORDER {
            return Err(FreeError::BadOrder(order));
        }
        let p = pfn.as_u64();
        if !self.mem_map.contains(pfn) || !self.mem_map.contains(Pfn::new(p + (1 << order) - 1)) {
            return Err(FreeError::OutOfRange(pfn));
        }
        if p & ((1 << order) - 1) != 0 {
            return Err(FreeError::Misaligned { pfn, order });
        }
        let z = self.mem_map[pfn].zonenum();
        let zone = self.zone(z);
        if !zone.is_populated() || !zone.spans_pfn(p) || !zone.spans_pfn(p + (1 << order) - 1) {
            return Err(FreeError::NotInZone { pfn, order });
        }
        Ok((p as u32, z))
    }

    /// `__free_pages()`: drop a reference to an allocation of `order`; free it when that was
    /// the last one. If someone else still holds the first page of a non-compound block, the
    /// rest of the block is freed now in halves (the kernel's speculative-reference rule).
    #[inline(always)]
    pub fn __free_pages(&mut self, pfn: Pfn, order: u32, cpu: usize) -> Result<(), FreeError> {
        if order == 0 && cpu < self.nr_cpus && self.free_order0_fast(pfn, cpu) {
            return Ok(());
        }
        self.__free_pages_general(pfn, order, cpu)
    }

    /// `__free_pages()` for every case the order-0 fast path leaves: validation and its
    /// errors, shared references, higher orders, bad pages.
    #[inline(never)]
    fn __free_pages_general(&mut self, pfn: Pfn, order: u32, cpu: usize) -> Result<(), FreeError> {
        if cpu >= self.nr_cpus {
            return Err(FreeError::BadCpu(cpu));
        }
        let (p, _) = self.check_free_block(pfn, order)?;
        let page = &self.mem_map[pfn];
        if page.is_tail() {
            return Err(FreeError::TailPage(pfn));
        }
        if page.is_buddy() || page.refcount <= 0 {
            return Err(FreeError::AlreadyFree(pfn));
        }
        let head = page.is_head();
        if self.mem_map[pfn].put_testzero() {
            self.free_the_page(p, order, cpu)
        } else if !head {
            let mut o = order;
            let mut result = Ok(());
            while o > 0 {
                o -= 1;
                let r = self.free_the_page(p + (1 << o), o, cpu);
                if result.is_ok() {
                    result = r;
                }
            }
            result
        } else {
            Ok(())
        }
    }

    /// The common case of `__free_pages()` for order 0, in one pass: the last reference to
    /// a clean page in a populated zone, whose pageblock is of a pcp type, goes to this
    /// CPU's list (`free_unref_page` → `free_unref_page_commit`). Anything else returns
    /// false with nothing changed, and the general path validates and reports.
    #[inline(always)]
    fn free_order0_fast(&mut self, pfn: Pfn, cpu: usize) -> bool {
        let p = pfn.as_u64();
        let PgData {
            mem_map,
            node_zones,
            vm_events,
            ..
        } = self;
        let Some(page) = mem_map.try_pm(p) else {
            return false;
        };
        let clean = page.refcount == 1
            && page.mapcount == -1
            && page.mapping == 0
            && page.memcg_data == 0
            && page.flags & PageFlags::HWPOISON.bits() == 0
            && page.lru_next & (LINK_HEAD | COMPOUND_TAIL) != COMPOUND_TAIL;
        let z = page.zonenum();
        let zone = &mut node_zones[z as usize];
        if !clean || !zone.is_populated() || !zone.spans_pfn(p) {
            return false;
        }
        let mt = zone.get_pageblock_migratetype(p);
        if mt as usize >= MIGRATE_PCPTYPES {
            return false;
        }
        page.refcount = 0;
        page.flags &= !PAGE_FLAGS_CHECK_AT_PREP;
        page.index = mt as u32;
        // free_unref_page_commit() for order 0.
        vm_events[VmEventItem::Pgfree] += 1;
        let flags = zone.flags;
        let pcp = &mut zone.per_cpu_pageset[cpu];
        let pindex = mt as usize;
        // list_add() onto the pcp list, the page's own links written through the
        // descriptor at hand, then the old first entry's (or the head's) back link.
        let id = pcp_list_id(cpu, pindex);
        let head = &mut pcp.lists[pindex];
        let first = head.next;
        page.lru_next = first;
        page.lru_prev = LINK_HEAD | id;
        head.next = p as u32;
        if first & LINK_HEAD != 0 {
            head.prev = p as u32;
        } else {
            mem_map.pm(first).lru_prev = p as u32;
        }
        pcp.count += 1;
        // nr_pcp_high() is `high` itself unless reclaim is active (then at most `high`), and
        // a high of 0 trims at any count: below `high` without reclaim, nothing to trim.
        if pcp.count >= pcp.high || flags.reclaim_active {
            self.free_pcp_trim(z, cpu, pindex);
        }
        // The kernel traces the free in free_pages_prepare(), before the list add; the
        // event only carries the pfn and the order, and the pcp trim emits none, so tracing
        // last records the same thing, with nothing else live across the (cold) recording
        // call for the hot path to spill.
        crate::trace::mm_page_free(cpu, p, 0);
        true
    }

    /// The end of `free_unref_page_commit()` when the list may have reached its high mark:
    /// give back a batch. Out of line, so the order-0 fast path keeps its registers.
    #[cold]
    #[inline(never)]
    fn free_pcp_trim(&mut self, z: ZoneType, cpu: usize, pindex: usize) {
        let mut zc = self.zone_ctx(z);
        let flags = zc.zone.flags;
        let pcp = &mut zc.zone.per_cpu_pageset[cpu];
        let high = nr_pcp_high(pcp, flags, false);
        if pcp.count >= high {
            let batch = pcp.batch;
            let n = nr_pcp_free(pcp, high, batch, false);
            zc.free_pcppages_bulk(n, cpu, pindex);
        }
    }

    /// `free_pages()` / `free_page()` by pfn (the kernel takes a lowmem virtual address).
    pub fn free_pages(&mut self, pfn: Pfn, order: u32, cpu: usize) -> Result<(), FreeError> {
        self.__free_pages(pfn, order, cpu)
    }

    /// `free_the_page()`: through the pcp lists when the order allows it.
    fn free_the_page(&mut self, pfn: u32, order: u32, cpu: usize) -> Result<(), FreeError> {
        crate::trace::mm_page_free(cpu, u64::from(pfn), order);
        if pcp_allowed_order(order, self.thp_enabled, self.pageblock_order) {
            self.free_unref_page(pfn, order, cpu)
        } else {
            self.__free_pages_ok(pfn, order, Fpi::NONE)
        }
    }

    /// What both free paths do first: `free_pages_prepare()` in the block's zone, a bad page
    /// refused as an error, then the block's pageblock migratetype.
    fn prepare_free(
        &mut self,
        pfn: u32,
        order: u32,
        check_free: bool,
    ) -> Result<(ZoneMut<'_>, MigrateType), FreeError> {
        let z = self.mem_map.p(pfn).zonenum();
        let mut zc = self.zone_ctx(z);
        if let Some(reason) = zc.free_pages_prepare(pfn, order, check_free) {
            return Err(FreeError::BadPageState {
                pfn: Pfn::new(pfn as u64),
                reason,
            });
        }
        let mt = zc.get_pageblock_migratetype(pfn);
        Ok((zc, mt))
    }

    /// `free_unref_page()`: to this CPU's pcp list (isolated pageblocks bypass it).
    fn free_unref_page(&mut self, pfn: u32, order: u32, cpu: usize) -> Result<(), FreeError> {
        let (mut zc, mt) = self.prepare_free(pfn, order, false)?;
        zc.map.pm(pfn).index = mt as u32;
        let mut pcp_mt = mt;
        if mt as usize >= MIGRATE_PCPTYPES {
            if mt == MigrateType::Isolate {
                zc.free_one_page(pfn, order, mt, Fpi::NONE);
                return Ok(());
            }
            // HighAtomic pages are cached on the movable list.
            pcp_mt = MigrateType::Movable;
        }
        zc.free_unref_page_commit(cpu, pfn, pcp_mt, order);
        Ok(())
    }

    /// `__free_pages_ok()`: straight to the buddy lists.
    fn __free_pages_ok(&mut self, pfn: u32, order: u32, fpi: Fpi) -> Result<(), FreeError> {
        let (mut zc, mt) = self.prepare_free(pfn, order, true)?;
        zc.free_one_page(pfn, order, mt, fpi);
        zc.events[VmEventItem::Pgfree] += 1 << order;
        Ok(())
    }

    /// `__free_pages_core()`: hand a boot-time range to the buddy allocator — clear
    /// PageReserved, drop the memmap reference, count the pages as managed, and queue the
    /// block at the tail of its free list. (`memblock_free_all` adds the pages to
    /// `totalram_pages` itself: see [`PgData::totalram_pages_add`].)
    pub fn __free_pages_core(&mut self, pfn: Pfn, order: u32) -> Result<(), FreeError> {
        let (p, z) = self.check_free_block(pfn, order)?;
        // VM_BUG_ON-style re-validation of every page (free_pages_prepare checks them too,
        // and reports what it finds as the kernel does).
        if self.debug_vm {
            for q in p..p + (1 << order) {
                let pg = self.mem_map.p(q);
                if pg.is_buddy() || pg.zonenum() != z {
                    return Err(FreeError::AlreadyFree(Pfn::new(q as u64)));
                }
            }
        }
        for q in p..p + (1 << order) {
            let pg = self.mem_map.pm(q);
            pg.clear(PageFlags::RESERVED);
            pg.set_count(0);
        }
        self.node_zones[z as usize].managed_pages += 1 << order;
        self.__free_pages_ok(p, order, Fpi::TO_TAIL)
    }

    /// `__free_reserved_page()`: clear PageReserved and free the page through `cpu`'s lists.
    fn __free_reserved_page(&mut self, pfn: Pfn, cpu: usize) -> Result<(), FreeError> {
        self.check_free_block(pfn, 0)?;
        let pg = &mut self.mem_map[pfn];
        if pg.is_buddy() {
            return Err(FreeError::AlreadyFree(pfn));
        }
        pg.clear(PageFlags::RESERVED);
        pg.set_count(1);
        self.__free_pages(pfn, 0, cpu)
    }

    /// `free_highmem_page()` (set_highmem_pages_init, on the boot CPU): free one highmem page
    /// and count it in managed, totalram and totalhigh.
    pub fn free_highmem_page(&mut self, pfn: Pfn) -> Result<(), FreeError> {
        self.__free_reserved_page(pfn, 0)?;
        let z = self.mem_map[pfn].zonenum();
        self.node_zones[z as usize].managed_pages += 1;
        self.totalram_pages += 1;
        self.totalhigh_pages += 1;
        Ok(())
    }

    /// Whether `z` is populated and its pageset on the boot CPU is an empty boot pageset
    /// (high 0, batch 1): a page freed through it is drained back to the buddy lists at once.
    pub(crate) fn boot_pageset_drains(&self, z: ZoneType) -> bool {
        let zone = self.zone(z);
        zone.is_populated()
            && zone
                .per_cpu_pageset
                .first()
                .is_some_and(|pcp| pcp.high == 0 && pcp.batch >= 1 && pcp.count == 0)
    }

    /// `free_highmem_page()` of every pfn of `[start, end)` in zone `z`, in ascending order,
    /// reaching the state the page-by-page frees reach (see ARCHITECTURE.md, "Boot frees"):
    /// each page goes through the boot pageset, which drains it at once, so the sequence
    /// is `__free_one_page(pfn, 0, mt, FPI_NONE)` for pfn = start, start + 1, ...; over an
    /// aligned block inside one pageblock that no earlier free touched, this ends exactly as
    /// one `__free_one_page(block, order, mt, FPI_NONE)` does. Pages that are not in the
    /// clean boot state take the page-by-page path, which reports them.
    pub(crate) fn free_highmem_range(
        &mut self,
        z: ZoneType,
        start: u64,
        end: u64,
    ) -> Result<(), FreeError> {
        let mut run = start;
        for pfn in start..end {
            if self.prepare_clean_boot_page(z, pfn) {
                continue;
            }
            self.free_boot_run(z, run, pfn);
            self.free_highmem_page(Pfn::new(pfn))?;
            run = pfn + 1;
        }
        self.free_boot_run(z, run, end);
        Ok(())
    }

    /// If `pfn` is in the state `memmap_init` / `reserve_bootmem_region` leave a page of `z`
    /// in, give it the state `free_highmem_page` leaves a page in before the buddy merge
    /// (no reference, no flags, its pageblock's type in `index`, on no list) and return true.
    #[inline(always)]
    fn prepare_clean_boot_page(&mut self, z: ZoneType, pfn: u64) -> bool {
        let zone = &self.node_zones[z as usize];
        let mt = zone.get_pageblock_migratetype(pfn);
        let Some(page) = self.mem_map.try_pm(pfn) else {
            return false;
        };
        let clean = page.mapcount == -1
            && page.mapping == 0
            && page.memcg_data == 0
            && page.private == 0
            && page.flags & PageFlags::HWPOISON.bits() == 0
            && page.lru_next & (LINK_HEAD | COMPOUND_TAIL) != COMPOUND_TAIL
            && page.zonenum() == z
            && (mt as usize) < MIGRATE_PCPTYPES;
        if clean {
            page.flags &= !PAGE_FLAGS_CHECK_AT_PREP;
            page.refcount = 0;
            page.index = mt as u32;
            page.lru_next = LINK_NONE;
            page.lru_prev = LINK_NONE;
        }
        clean
    }

    /// Free the prepared pages `[start, end)` (inside the populated zone `z`) as naturally
    /// aligned blocks no larger than a pageblock, in ascending order, with the accounting of as many
    /// `free_highmem_page` calls.
    fn free_boot_run(&mut self, z: ZoneType, start: u64, end: u64) {
        if start >= end {
            return;
        }
        let max_order = self.pageblock_order.min(MAX_ORDER as u32 - 1);
        let mut zc = self.zone_ctx(z);
        let mut pfn = start;
        while pfn < end {
            let mut order = (pfn.trailing_zeros()).min(max_order);
            while pfn + (1 << order) > end {
                order -= 1;
            }
            let mt = zc.get_pageblock_migratetype(pfn as u32);
            zc.__free_one_page(pfn as u32, order, mt, Fpi::NONE);
            pfn += 1 << order;
        }
        let n = end - start;
        zc.events[VmEventItem::Pgfree] += n;
        zc.zone.managed_pages += n;
        self.totalram_pages += n;
        self.totalhigh_pages += n;
    }

    /// `free_reserved_page()`: return a reserved page (init memory, initrd...) for good.
    pub fn free_reserved_page(&mut self, pfn: Pfn, cpu: usize) -> Result<(), FreeError> {
        self.__free_reserved_page(pfn, cpu)?;
        self.adjust_managed_page_count(pfn, 1);
        Ok(())
    }

    /// `free_reserved_area()` over pfns `[start, end)`; returns the pages freed and, when
    /// `name` is given, the kernel's "Freeing %s memory: %ldK" line.
    pub fn free_reserved_area(
        &mut self,
        start: Pfn,
        end: Pfn,
        cpu: usize,
        name: Option<&str>,
    ) -> Result<(u64, Option<String>), FreeError> {
        let mut pages = 0;
        for p in start.as_u64()..end.as_u64() {
            self.free_reserved_page(Pfn::new(p), cpu)?;
            pages += 1;
        }
        let msg = match name {
            Some(s) if pages != 0 => Some(format!("Freeing {s} memory: {}K", pages * 4)),
            _ => None,
        };
        Ok((pages, msg))
    }
}
