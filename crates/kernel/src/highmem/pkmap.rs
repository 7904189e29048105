//! Persistent kmaps: `kmap()` / `kunmap()` (6.1 mm/highmem.c, `kmap_high`,
//! `map_new_virtual`, `flush_all_zero_pkmaps`, `kunmap_high`).
//!
//! `pkmap_count[nr]`: 0 = slot unmapped and flushed from every TLB (usable); 1 = mapped,
//! no user, possibly still cached (not reusable until the next wrap's flush); n + 1 = n
//! users. `kunmap` only counts down: the PTE stays until the scan for a free slot wraps
//! to 0, when every slot at 1 is cleared and the whole window is flushed on every CPU
//! once. When a full scan finds no slot at 0, the caller sleeps on `pkmap_map_wait` until
//! a `kunmap` brings some count down to 1.

use super::{Check, KmapError};
use crate::sched::{Blocking, MapKind, PKMAP_MAP_WAIT};
use crate::tlbflush::{flush_tlb_kernel_range, TlbFlush};
use crate::Kernel;
use machine::{Pfn, PhysAddr, VirtAddr, PAGE_SIZE};

/// Counters of the pkmap pool.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct PkmapCounters {
    /// kmap() calls that returned a pkmap address.
    pub kmaps: u64,
    /// kmap() of lowmem pages (direct map, no slot).
    pub lowmem_kmaps: u64,
    pub kunmaps: u64,
    /// New mappings made by map_new_virtual.
    pub new_mappings: u64,
    /// Slots with users now (count >= 2), and the most ever.
    pub in_use: u64,
    pub high_water: u64,
    /// Times the scan wrapped to slot 0 (each runs flush_all_zero_pkmaps).
    pub wraps: u64,
    /// Wraps that cleared something and flushed the window on every CPU.
    pub global_flushes: u64,
    /// Times a kmap() went to sleep on pkmap_map_wait, and wake_up calls by kunmap.
    pub sleeps: u64,
    pub wakeups: u64,
}

/// LAST_PKMAP's largest value (non-PAE): the size of [`PkmapCount`]'s table.
pub const LAST_PKMAP_MAX: usize = 1024;

/// `pkmap_count[LAST_PKMAP]`: a slice of LAST_PKMAP counts (what `Deref` shows), kept in a
/// table of [`LAST_PKMAP_MAX`] so the hot paths index it with a mask — their slot numbers
/// come from the page_address hash, below LAST_PKMAP by construction — and no bounds
/// check. The entries past LAST_PKMAP stay 0.
#[derive(Clone, Debug)]
pub struct PkmapCount {
    slots: [u32; LAST_PKMAP_MAX],
    len: usize,
}

impl PkmapCount {
    fn new(last: usize) -> Self {
        PkmapCount {
            slots: [0; LAST_PKMAP_MAX],
            len: last.min(LAST_PKMAP_MAX),
        }
    }

    /// The count of slot `nr`, a slot number below LAST_PKMAP (masked, unchecked).
    #[inline(always)]
    fn slot_mut(&mut self, nr: usize) -> &mut u32 {
        &mut self.slots[nr & (LAST_PKMAP_MAX - 1)]
    }
}

impl std::ops::Deref for PkmapCount {
    type Target = [u32];
    fn deref(&self) -> &[u32] {
        &self.slots[..self.len]
    }
}

impl std::ops::DerefMut for PkmapCount {
    fn deref_mut(&mut self) -> &mut [u32] {
        &mut self.slots[..self.len]
    }
}

impl serde::Serialize for PkmapCount {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serde::Serialize::serialize(&**self, s)
    }
}

/// The pkmap pool.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Pkmap {
    /// PKMAP_BASE.
    pub base: u64,
    /// LAST_PKMAP (512 PAE, 1024 non-PAE).
    pub last: usize,
    /// Physical address of `pkmap_page_table`.
    pub table: u64,
    /// `pkmap_count[LAST_PKMAP]`.
    pub count: PkmapCount,
    /// `last_pkmap_nr`.
    pub last_pkmap_nr: usize,
    pub counters: PkmapCounters,
}

impl Pkmap {
    pub fn new(base: u64, last: u64, table: u64) -> Self {
        Pkmap {
            base,
            last: last as usize,
            table,
            count: PkmapCount::new(last as usize),
            last_pkmap_nr: 0,
            counters: PkmapCounters::default(),
        }
    }

    /// PKMAP_ADDR(nr).
    #[inline]
    pub fn addr(&self, nr: usize) -> u64 {
        self.base + nr as u64 * PAGE_SIZE
    }
}

impl Kernel {
    /// PKMAP_NR(va), if `va` is in the pkmap window.
    #[inline]
    pub fn pkmap_nr(&self, va: u64) -> Option<usize> {
        let p = &self.hm.pkmap;
        let nr = va.wrapping_sub(p.base) / PAGE_SIZE;
        (va >= p.base && (nr as usize) < p.last).then_some(nr as usize)
    }

    /// Physical address of the PTE of pkmap slot `nr`.
    #[inline]
    fn pkmap_pte(&self, nr: usize) -> PhysAddr {
        PhysAddr::new(self.hm.pkmap.table + nr as u64 * self.geo.entry_size())
    }

    /// `kmap()` by `cpu`'s current task: the direct-map address of a lowmem page, or a
    /// persistent mapping of a highmem page — possibly after sleeping
    /// ([`Blocking::Sleep`]: call again once woken; the retry resumes where
    /// `map_new_virtual` does after `schedule()`).
    #[inline]
    pub fn kmap(&mut self, cpu: usize, pfn: Pfn) -> Result<Blocking<VirtAddr>, KmapError> {
        if let Some(va) = self.kmap_hit(cpu, pfn) {
            return Ok(Blocking::Ready(VirtAddr::new(va)));
        }
        self.kmap_slow(cpu, pfn)
    }

    /// The common case of `kmap()`: a highmem page that is already kmapped, by a task that
    /// may sleep and is on no wait queue — `kmap_high`'s hash hit and `pkmap_count` bump.
    /// None (nothing changed) for everything else.
    #[inline(always)]
    fn kmap_hit(&mut self, cpu: usize, pfn: Pfn) -> Option<u64> {
        let rq = self.sched.cpus.get(cpu)?;
        if (rq.preempt_count | rq.hardirq) != 0 || pfn.as_u64() < self.layout.max_low_pfn.as_u64() {
            return None;
        }
        let task = self.sched.tasks.get_mut(rq.current.0)?;
        if task.on_wq.is_some() {
            return None;
        }
        let va = self.page_address_htable.lookup(pfn.as_u64())?;
        let pk = &mut self.hm.pkmap;
        let nr = (va.wrapping_sub(pk.base) / PAGE_SIZE) as usize;
        let c = pk.count.slot_mut(nr);
        *c += 1;
        if *c == 2 {
            pk.counters.in_use += 1;
            pk.counters.high_water = pk.counters.high_water.max(pk.counters.in_use);
        }
        pk.counters.kmaps += 1;
        crate::trace::kmap(self.hm.tracing, cpu, pfn.as_u64(), va);
        task.pkmaps += 1;
        if self.hm.debug.checker {
            task.held.push(crate::sched::HeldMap {
                kind: MapKind::Pkmap,
                va,
                pfn: pfn.as_u64(),
                cpu,
            });
        }
        Some(va)
    }

    /// Every `kmap()` [`Self::kmap_hit`] does not serve.
    #[inline(never)]
    fn kmap_slow(&mut self, cpu: usize, pfn: Pfn) -> Result<Blocking<VirtAddr>, KmapError> {
        if self.sched.preempt_count(cpu) != 0 {
            self.kmap_atomic_context(cpu, pfn)?;
        }
        if pfn.as_u64() < self.layout.max_low_pfn.as_u64() {
            self.hm.pkmap.counters.lowmem_kmaps += 1;
            return Ok(Blocking::Ready(VirtAddr::new(
                self.config.page_offset() + pfn.phys().as_u64(),
            )));
        }
        self.kmap_high(cpu, pfn)
    }

    /// kmap() called where it must not sleep: might_sleep's splat (6.1), or the BUG of the
    /// 2.4 / 2.5 designs in interrupt context.
    #[cold]
    fn kmap_atomic_context(&mut self, cpu: usize, pfn: Pfn) -> Result<(), KmapError> {
        let call = format!("kmap(pfn {:#x})", pfn.as_u64());
        if self.sched.in_interrupt(cpu) && self.hm.design != crate::design::KernelDesign::Linux61 {
            return Err(self.hm_bug(
                Check::KmapInInterrupt,
                cpu,
                "kernel BUG at mm/highmem.c: kmap() in interrupt context".into(),
                &call,
            ));
        }
        self.might_sleep(cpu, &call);
        Ok(())
    }

    /// `kmap_high()`.
    pub fn kmap_high(&mut self, cpu: usize, pfn: Pfn) -> Result<Blocking<VirtAddr>, KmapError> {
        // Back from schedule() in map_new_virtual: remove_wait_queue, then start over
        // under the lock — which is what the kernel's "page mapped meanwhile? else goto
        // start" amounts to.
        self.sched.finish_wait(cpu);
        let va = match self.page_address_htable.lookup(pfn.as_u64()) {
            Some(v) => v,
            None => match self.map_new_virtual(cpu, pfn)? {
                Blocking::Ready(v) => v,
                Blocking::Sleep(wq) => return Ok(Blocking::Sleep(wq)),
            },
        };
        let nr = ((va - self.hm.pkmap.base) / PAGE_SIZE) as usize;
        let pk = &mut self.hm.pkmap;
        pk.count[nr] += 1;
        if pk.count[nr] == 2 {
            pk.counters.in_use += 1;
            pk.counters.high_water = pk.counters.high_water.max(pk.counters.in_use);
        }
        pk.counters.kmaps += 1;
        crate::trace::kmap(self.hm.tracing, cpu, pfn.as_u64(), va);
        let cur = self.sched.current(cpu);
        self.sched.tasks[cur.0].pkmaps += 1;
        self.hold(cpu, MapKind::Pkmap, va, pfn.as_u64());
        Ok(Blocking::Ready(VirtAddr::new(va)))
    }

    /// `map_new_virtual()`: scan from `last_pkmap_nr` for a slot at 0, flushing on the
    /// wrap; with none after a whole scan, sleep on `pkmap_map_wait`.
    fn map_new_virtual(&mut self, cpu: usize, pfn: Pfn) -> Result<Blocking<u64>, KmapError> {
        let last = self.hm.pkmap.last;
        let mut count = last;
        let nr = loop {
            let nr = (self.hm.pkmap.last_pkmap_nr + 1) & (last - 1);
            self.hm.pkmap.last_pkmap_nr = nr;
            if nr == 0 {
                self.flush_all_zero_pkmaps(cpu)?;
                count = last;
            }
            if self.hm.pkmap.count[nr] == 0 {
                break nr;
            }
            count -= 1;
            if count > 0 {
                continue;
            }
            // No free slot: sleep until a kunmap frees one.
            self.sched.prepare_to_wait(cpu, PKMAP_MAP_WAIT);
            self.hm.pkmap.counters.sleeps += 1;
            return Ok(Blocking::Sleep(PKMAP_MAP_WAIT));
        };
        let va = self.hm.pkmap.addr(nr);
        let pte = (pfn.phys().as_u64() & self.geo.pfn_mask()) | self.kmap_area.prot;
        // The slot was at 0: no TLB holds it, so installing needs no flush.
        let pte_pa = self.pkmap_pte(nr);
        self.geo.write(&mut self.machine.mem, pte_pa, 0, pte)?;
        self.hm.pkmap.count[nr] = 1;
        self.hm.pkmap.counters.new_mappings += 1;
        self.page_address_htable
            .set_page_address(pfn.as_u64(), Some(va));
        Ok(Blocking::Ready(va))
    }

    /// `flush_all_zero_pkmaps()`: clear every slot at 1 and, if any was, flush the whole
    /// window once on every CPU.
    pub fn flush_all_zero_pkmaps(&mut self, cpu: usize) -> Result<(), KmapError> {
        self.hm.pkmap.counters.wraps += 1;
        let mut pending: Option<TlbFlush> = None;
        for i in 0..self.hm.pkmap.last {
            if self.hm.pkmap.count[i] != 1 {
                continue;
            }
            self.hm.pkmap.count[i] = 0;
            let pte_pa = self.pkmap_pte(i);
            let pte = self.geo.read(&self.machine.mem, pte_pa, 0)?;
            if pte & 1 == 0 {
                return Err(self.hm_bug(
                    Check::PkmapCount,
                    cpu,
                    format!("kernel BUG at mm/highmem.c: pkmap slot {i} at count 1 has no PTE"),
                    "flush_all_zero_pkmaps()",
                ));
            }
            let pfn = (pte & self.geo.pfn_mask()) / PAGE_SIZE;
            self.geo.write(&mut self.machine.mem, pte_pa, 0, 0)?;
            self.page_address_htable.set_page_address(pfn, None);
            let t = TlbFlush::page(self.hm.pkmap.addr(i));
            pending = Some(match pending {
                Some(p) => p.merge(t),
                None => t,
            });
        }
        if let Some(p) = pending {
            // flush_tlb_kernel_range(PKMAP_ADDR(0), PKMAP_ADDR(LAST_PKMAP)).
            let whole = TlbFlush::page(self.hm.pkmap.base)
                .merge(TlbFlush::page(self.hm.pkmap.addr(self.hm.pkmap.last - 1)));
            let (start, end) = p.merge(whole).defer();
            flush_tlb_kernel_range(&mut self.machine, &mut self.tlb, cpu, start, end)?;
            self.hm.pkmap.counters.global_flushes += 1;
        }
        Ok(())
    }

    /// `kmap_flush_unused()`.
    pub fn kmap_flush_unused(&mut self, cpu: usize) -> Result<(), KmapError> {
        self.flush_all_zero_pkmaps(cpu)
    }

    /// `kunmap()` by `cpu`'s current task. Lowmem pages: nothing. Highmem: one user less;
    /// the PTE stays (lazy unmap) and sleepers are woken when the count drops to 1.
    #[inline]
    pub fn kunmap(&mut self, cpu: usize, pfn: Pfn) -> Result<(), KmapError> {
        if pfn.as_u64() < self.layout.max_low_pfn.as_u64() {
            return Ok(());
        }
        if self.kunmap_hit(cpu, pfn) {
            return Ok(());
        }
        self.kunmap_high(cpu, pfn)
    }

    /// The common case of `kunmap_high()`: the page keeps another user (its count stays at
    /// 2 or more, so nobody is woken). False (nothing changed) for everything else.
    #[inline(always)]
    fn kunmap_hit(&mut self, cpu: usize, pfn: Pfn) -> bool {
        let Some(va) = self.page_address_htable.lookup(pfn.as_u64()) else {
            return false;
        };
        let pk = &mut self.hm.pkmap;
        let nr = (va.wrapping_sub(pk.base) / PAGE_SIZE) as usize;
        let c = pk.count.slot_mut(nr);
        if *c <= 2 {
            return false;
        }
        *c -= 1;
        pk.counters.kunmaps += 1;
        crate::trace::kunmap(self.hm.tracing, cpu, pfn.as_u64(), va);
        self.release_pkmap(cpu, va);
        true
    }

    /// `kunmap_high()`.
    pub fn kunmap_high(&mut self, cpu: usize, pfn: Pfn) -> Result<(), KmapError> {
        let Some(va) = self.page_address_htable.lookup(pfn.as_u64()) else {
            return Err(self.hm_bug(
                Check::UnmapNotMapped,
                cpu,
                format!(
                    "kernel BUG at mm/highmem.c: kunmap_high: pfn {:#x} is not kmapped",
                    pfn.as_u64()
                ),
                &format!("kunmap(pfn {:#x})", pfn.as_u64()),
            ));
        };
        let nr = ((va - self.hm.pkmap.base) / PAGE_SIZE) as usize;
        let pk = &mut self.hm.pkmap;
        if pk.count[nr] <= 1 {
            // The count would reach 0 without a flush: the kernel BUG()s (with kmap_lock
            // held). The model leaves the count as it was and reports.
            return Err(self.hm_bug(
                Check::UnmapNotMapped,
                cpu,
                format!(
                    "kernel BUG at mm/highmem.c: kunmap_high: pfn {:#x} at {va:#x} has no kmap user (pkmap_count 1)",
                    pfn.as_u64()
                ),
                &format!("kunmap(pfn {:#x})", pfn.as_u64()),
            ));
        }
        pk.count[nr] -= 1;
        pk.counters.kunmaps += 1;
        crate::trace::kunmap(self.hm.tracing, cpu, pfn.as_u64(), va);
        let mut need_wakeup = false;
        if pk.count[nr] == 1 {
            pk.counters.in_use -= 1;
            need_wakeup = self.sched.waitqueue_active(PKMAP_MAP_WAIT);
        }
        self.release_pkmap(cpu, va);
        if need_wakeup {
            self.hm.pkmap.counters.wakeups += 1;
            self.sched.wake_up(PKMAP_MAP_WAIT);
        }
        Ok(())
    }

    /// Debug bookkeeping: the current task gives up one kmap of `va`; a kunmap by another
    /// task than the one that mapped (legal) takes it from that task.
    #[inline(always)]
    fn release_pkmap(&mut self, cpu: usize, va: u64) {
        let t = self.sched.current_idx(cpu);
        let task = &mut self.sched.tasks[t];
        task.pkmaps = task.pkmaps.saturating_sub(1);
        if !self.hm.debug.checker {
            return;
        }
        let held = &mut task.held;
        if held
            .last()
            .is_some_and(|h| h.kind == MapKind::Pkmap && h.va == va)
        {
            held.pop();
            return;
        }
        self.release_pkmap_search(cpu, va);
    }

    /// [`Self::release_pkmap`] when the mapping is not the current task's latest.
    #[inline(never)]
    fn release_pkmap_search(&mut self, cpu: usize, va: u64) {
        let cur = self.sched.current(cpu);
        let held = &mut self.sched.tasks[cur.0].held;
        if let Some(i) = held
            .iter()
            .rposition(|h| h.kind == MapKind::Pkmap && h.va == va)
        {
            held.remove(i);
            return;
        }
        for t in &mut self.sched.tasks {
            if let Some(i) = t
                .held
                .iter()
                .rposition(|h| h.kind == MapKind::Pkmap && h.va == va)
            {
                t.held.remove(i);
                return;
            }
        }
    }

    /// `kmap_to_page()` for a pkmap address: the frame its PTE maps.
    pub fn kmap_to_pfn(&self, va: VirtAddr) -> Option<u64> {
        let nr = self.pkmap_nr(va.as_u64())?;
        let pte = self
            .geo
            .read(&self.machine.mem, self.pkmap_pte(nr), 0)
            .ok()?;
        (pte & 1 != 0).then(|| (pte & self.geo.pfn_mask()) / PAGE_SIZE)
    }

    /// Check that pkmap_count, the PTEs in RAM and the page_address hash agree; the
    /// problems found (empty when consistent).
    pub fn pkmap_check(&self) -> Vec<String> {
        let mut bad = Vec::new();
        let pk = &self.hm.pkmap;
        let mut in_use = 0;
        let mut mapped = 0;
        for nr in 0..pk.last {
            let pte = self
                .geo
                .read(&self.machine.mem, self.pkmap_pte(nr), 0)
                .unwrap_or(u64::MAX);
            let c = pk.count[nr];
            if c >= 2 {
                in_use += 1;
            }
            if c == 0 {
                if pte != 0 {
                    bad.push(format!("slot {nr}: count 0 but PTE {pte:#x}"));
                }
                continue;
            }
            mapped += 1;
            if pte & 1 == 0 {
                bad.push(format!("slot {nr}: count {c} but no PTE"));
                continue;
            }
            let pfn = (pte & self.geo.pfn_mask()) / PAGE_SIZE;
            if self.page_address_htable.lookup(pfn) != Some(pk.addr(nr)) {
                bad.push(format!(
                    "slot {nr}: PTE maps pfn {pfn:#x} but page_address says {:?}",
                    self.page_address_htable.lookup(pfn)
                ));
            }
        }
        if self.page_address_htable.len() != mapped {
            bad.push(format!(
                "page_address hash has {} entries, {mapped} slots are mapped",
                self.page_address_htable.len()
            ));
        }
        if pk.counters.in_use != in_use {
            bad.push(format!(
                "in_use counter {} but {in_use} slots have users",
                pk.counters.in_use
            ));
        }
        bad
    }
}
