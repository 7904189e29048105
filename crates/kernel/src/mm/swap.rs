//! The LRU lists' bookkeeping of mm/swap.c: `folio_add_lru`, `folio_mark_accessed`,
//! `folio_activate`, the per-CPU folio batches and `lru_add_drain`.
//!
//! Every page a process uses goes on an LRU list of its node: shmem pages (a SysV segment,
//! the rootfs files, "/dev/zero") and anonymous pages are swap-backed, so they go on the
//! *anon* lists, and a new page starts on the inactive one. `mark_page_accessed` sets
//! PG_referenced the first time and moves a referenced page to the active list
//! (`pgactivate`). An unmap calls it for each file page its PTE shows young
//! (`zap_pte_range`), so the parent's `shmdt` leaves its segment referenced; GUP's
//! `FOLL_TOUCH` calls it for each page it returns. That is why /proc/meminfo's
//! `Inactive(anon)` holds a segment that children read, and `Active(anon)` one they
//! populate with MADV_POPULATE_READ, from the first child on; and why the children's exits
//! activate the binary pages they mapped.
//!
//! Pages do not reach the lists one at a time: each CPU gathers up to `PAGEVEC_SIZE` of
//! them in a batch (holding a reference on each) and moves the batch under one lock when it
//! is full or when something drains it (`lru_add_drain`: exit, munmap, truncation). So the
//! lists' counts lag the pages by up to a batch per CPU, as the real ones do.
//!
//! The lists themselves are kept as counts (the node's `nr_*_anon` and the zones'
//! `nr_zone_*_anon`) and the pages' PG_lru / PG_active / PG_referenced bits: nothing here
//! scans them (without swap the kernel never reclaims anonymous pages).

use crate::mmzone::PgData;
use crate::page::PageFlags;
use crate::page_alloc::FreeError;
use crate::vmstat::{NodeStatItem, VmEventItem, ZoneStatItem};
use machine::Pfn;

/// `PAGEVEC_SIZE` (folio_batch's capacity) in 6.1.
pub const PAGEVEC_SIZE: usize = 15;

/// A `struct folio_batch`: up to [`PAGEVEC_SIZE`] pages, each with a reference the batch
/// holds until it is moved.
#[derive(Clone, Debug, Default)]
pub struct FolioBatch {
    pfns: Vec<u64>,
}

impl FolioBatch {
    /// `folio_batch_add()`: whether room is left after adding.
    fn add(&mut self, pfn: u64) -> bool {
        self.pfns.push(pfn);
        self.pfns.len() < PAGEVEC_SIZE
    }

    pub fn len(&self) -> usize {
        self.pfns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pfns.is_empty()
    }

    pub fn contains(&self, pfn: u64) -> bool {
        self.pfns.contains(&pfn)
    }
}

/// `struct cpu_fbatches`: the batches of one CPU this model fills (6.1 also has
/// lru_deactivate_file, lru_deactivate and lru_lazyfree, which no modelled path uses).
#[derive(Clone, Debug, Default)]
pub struct CpuFbatches {
    pub lru_add: FolioBatch,
    pub activate: FolioBatch,
}

/// What `folio_batch_move_lru()` does to each page of a batch.
#[derive(Clone, Copy, PartialEq, Eq)]
enum MoveFn {
    /// `lru_add_fn`: onto the list its PG_active says.
    LruAdd,
    /// `folio_activate_fn`: from the inactive list to the active one.
    Activate,
}

impl PgData {
    /// `folio_add_lru()`: a new page (already swap-backed) joins this CPU's lru_add batch,
    /// which goes to the lists when full.
    pub(crate) fn folio_add_lru(&mut self, cpu: usize, pfn: Pfn) {
        let p = pfn.as_u64();
        let Some(page) = self.mem_map.try_pm(p) else {
            return;
        };
        page.set(PageFlags::SWAPBACKED);
        page.get();
        let Some(b) = self.lru_fbatches.get_mut(cpu) else {
            return;
        };
        if !b.lru_add.add(p) {
            self.folio_batch_move_lru(cpu, MoveFn::LruAdd);
        }
    }

    /// `folio_mark_accessed()`: referenced once, activated the second time — at once
    /// through this CPU's activate batch when the page is on a list, by setting PG_active
    /// when it is still in this CPU's lru_add batch.
    ///
    /// Inline: every page a child populates or unmaps comes through here, and all but the
    /// first marks only set (or find) PG_referenced on an active page.
    #[inline(always)]
    pub(crate) fn folio_mark_accessed(&mut self, cpu: usize, pfn: u64) {
        let Some(page) = self.mem_map.try_pm(pfn) else {
            return;
        };
        let f = page.flags;
        let stays = (PageFlags::ACTIVE | PageFlags::UNEVICTABLE).bits();
        if f & PageFlags::REFERENCED.bits() == 0 || f & stays != 0 {
            // Referenced now; a page already active (or unevictable) stays where it is.
            page.flags = f | PageFlags::REFERENCED.bits();
            return;
        }
        self.folio_activate_referenced(cpu, pfn);
    }

    /// The second mark of an inactive page: activated, its PG_referenced cleared.
    #[inline(never)]
    fn folio_activate_referenced(&mut self, cpu: usize, pfn: u64) {
        let on_lru = self
            .mem_map
            .try_pm(pfn)
            .is_some_and(|p| p.test(PageFlags::LRU));
        if on_lru {
            self.folio_activate(cpu, pfn);
        } else {
            self.__lru_cache_activate_folio(cpu, pfn);
        }
        if let Some(page) = self.mem_map.try_pm(pfn) {
            page.clear(PageFlags::REFERENCED);
        }
    }

    /// `folio_activate()`: queue a page on the inactive list for activation.
    fn folio_activate(&mut self, cpu: usize, pfn: u64) {
        if let Some(page) = self.mem_map.try_pm(pfn) {
            page.get();
        }
        let Some(b) = self.lru_fbatches.get_mut(cpu) else {
            return;
        };
        if !b.activate.add(pfn) {
            self.folio_batch_move_lru(cpu, MoveFn::Activate);
        }
    }

    /// `__lru_cache_activate_folio()`: a page not yet on a list is activated where it
    /// waits, if it waits in this CPU's lru_add batch.
    fn __lru_cache_activate_folio(&mut self, cpu: usize, pfn: u64) {
        let found = self
            .lru_fbatches
            .get(cpu)
            .is_some_and(|b| b.lru_add.contains(pfn));
        if found {
            if let Some(page) = self.mem_map.try_pm(pfn) {
                page.set(PageFlags::ACTIVE);
            }
        }
    }

    /// `lru_add_drain()` on `cpu` (`lru_add_drain_cpu`): both batches to the lists.
    pub fn lru_add_drain(&mut self, cpu: usize) {
        let Some(b) = self.lru_fbatches.get(cpu) else {
            return;
        };
        let (add, act) = (!b.lru_add.is_empty(), !b.activate.is_empty());
        if add {
            self.folio_batch_move_lru(cpu, MoveFn::LruAdd);
        }
        if act {
            self.folio_batch_move_lru(cpu, MoveFn::Activate);
        }
    }

    /// `lru_add_drain_all()`: every CPU's batches.
    pub fn lru_add_drain_all(&mut self) {
        for cpu in 0..self.lru_fbatches.len() {
            self.lru_add_drain(cpu);
        }
    }

    /// `folio_batch_move_lru()`: apply `f` to each page of the batch, then drop the
    /// batch's references (`folios_put`: a page whose last reference that was is freed).
    fn folio_batch_move_lru(&mut self, cpu: usize, f: MoveFn) {
        let Some(b) = self.lru_fbatches.get_mut(cpu) else {
            return;
        };
        let pfns = match f {
            MoveFn::LruAdd => std::mem::take(&mut b.lru_add.pfns),
            MoveFn::Activate => std::mem::take(&mut b.activate.pfns),
        };
        for &pfn in &pfns {
            match f {
                MoveFn::LruAdd => self.lru_add_fn(pfn),
                MoveFn::Activate => self.folio_activate_fn(pfn),
            }
        }
        for &pfn in &pfns {
            if let Err(e) = self.put_page_lru(Pfn::new(pfn), cpu) {
                self.kmsg.push(format!("BUG: {e}"));
            }
        }
        // Keep the batch's storage for the next round.
        if let Some(b) = self.lru_fbatches.get_mut(cpu) {
            let mut v = pfns;
            v.clear();
            match f {
                MoveFn::LruAdd => b.lru_add.pfns = v,
                MoveFn::Activate => b.activate.pfns = v,
            }
        }
    }

    /// `lru_add_fn()`: PG_lru set, the page counted on its list.
    fn lru_add_fn(&mut self, pfn: u64) {
        let Some(page) = self.mem_map.try_pm(pfn) else {
            return;
        };
        page.set(PageFlags::LRU);
        let (zone, active) = (page.zonenum(), page.test(PageFlags::ACTIVE));
        self.update_lru_size(zone, active, 1);
    }

    /// `folio_activate_fn()` (the batch having taken PG_lru off and put it back): an
    /// inactive page moves to the active list, one `pgactivate`.
    fn folio_activate_fn(&mut self, pfn: u64) {
        let Some(page) = self.mem_map.try_pm(pfn) else {
            return;
        };
        if !page.test(PageFlags::LRU) || page.test(PageFlags::ACTIVE) {
            return;
        }
        page.set(PageFlags::ACTIVE);
        let zone = page.zonenum();
        self.update_lru_size(zone, false, -1);
        self.update_lru_size(zone, true, 1);
        self.vm_events[VmEventItem::Pgactivate] += 1;
    }

    /// `update_lru_size()` of an anon list: the node's and the zone's counts.
    pub(crate) fn update_lru_size(&mut self, zone: crate::mmzone::ZoneType, active: bool, d: i64) {
        let (node, z) = if active {
            (NodeStatItem::NrActiveAnon, ZoneStatItem::NrZoneActiveAnon)
        } else {
            (
                NodeStatItem::NrInactiveAnon,
                ZoneStatItem::NrZoneInactiveAnon,
            )
        };
        self.vm_stat[node] += d;
        self.mod_zone_page_state(zone, z, d);
    }

    /// `__page_cache_release()` of a page whose last reference goes: off its list.
    fn page_cache_release(&mut self, pfn: u64) {
        let Some(page) = self.mem_map.try_pm(pfn) else {
            return;
        };
        if page.test(PageFlags::LRU) {
            let (zone, active) = (page.zonenum(), page.test(PageFlags::ACTIVE));
            page.clear(PageFlags::LRU | PageFlags::ACTIVE);
            self.update_lru_size(zone, active, -1);
        }
    }

    /// `put_page()` of an order-0 page that may be on an LRU list: the last reference
    /// takes it off its list and frees it.
    #[inline]
    pub(crate) fn put_page_lru(&mut self, pfn: Pfn, cpu: usize) -> Result<(), FreeError> {
        let on_lru_last = self
            .mem_map
            .try_pm(pfn.as_u64())
            .is_some_and(|p| p.count() == 1 && p.test(PageFlags::LRU));
        if on_lru_last {
            self.page_cache_release(pfn.as_u64());
        }
        self.__free_pages(pfn, 0, cpu)
    }
}
