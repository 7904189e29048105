//! `kmap_local_page()` / `kunmap_local()` and 6.1's `kmap_atomic()` / `kunmap_atomic()`
//! (mm/highmem.c `__kmap_local_pfn_prot`, `kunmap_local_indexed`,
//! `__kmap_local_sched_out` / `_in`).
//!
//! The stack is the task's (`current->kmap_ctrl`), the slots are the CPU's: slot `i` of a
//! task on CPU `c` is fixmap index `FIX_KMAP_BEGIN + i + KM_MAX_IDX * c`. Mapping writes
//! the PTE (the slot must be empty) and needs no flush; unmapping clears it and INVLPGs on
//! this CPU only. A local mapping disables migration (the task may be preempted, and its
//! slots are cleared when it is switched out and rewritten when it comes back); an atomic
//! one also disables preemption and page faults.

use super::{Check, Highmem, KmapError, KmapLocal, LocalFast, Severity};
use crate::sched::{CpuRq, HeldMap, MapKind, Sched, Task, TaskId, KM_PTEVAL_SLOTS};
use crate::tlbflush::TlbFlush;
use crate::Kernel;
use machine::mmu::{Access, AccessError, PageFault};
use machine::paging::Format;
use machine::{
    Again, BusError, Cpu, CpuError, FaultRun, Machine, Pfn, PhysAddr, PhysMem, RunEnd, RunSteps,
    SlotSession, VirtAddr, PAGE_SHIFT, PAGE_SIZE,
};

#[cold]
#[inline(never)]
fn bus_error(e: BusError) -> KmapError {
    KmapError::from(e)
}

#[cold]
#[inline(never)]
fn cpu_error(e: CpuError) -> KmapError {
    KmapError::from(e)
}

/// The pops of every `kunmap_local` once its slot PTE is cleared and flushed: the slot's
/// saved PTE value, the stack index, migration (every push raised `migration_disabled`,
/// so with a slot on the stack it is at least one) and the `unmaps` counter.
#[inline(always)]
fn pop_slot(task: &mut Task, counters: &mut KmapLocal, km_incr: u64, slot: u64) {
    *task.kmap_ctrl.pteval_mut(slot) = 0;
    task.kmap_ctrl.idx -= km_incr;
    task.migration_disabled = task.migration_disabled.wrapping_sub(1);
    counters.unmaps += 1;
}

/// The quick pop of `kunmap_local_indexed`, built for the kernels the boot chose it for
/// (KM_INCR 1), PAE first, then 2-level paging: when `va` lies in the top slot's page, its
/// PTE is cleared as an entry of the pinned PTE window and the task's stack popped (the
/// caller counts the unmap and flushes); `false`, having changed nothing, for anything
/// else: an address outside the top slot's page (lowmem or user addresses, nothing
/// mapped, another slot), any other kernel, or tracing.
#[inline(always)]
fn quick_pop(task: &mut Task, f: &LocalFast, mem: &mut PhysMem, cpu: usize, va: VirtAddr) -> bool {
    let pc = f.cpu(cpu);
    // `va` must lie in the top slot's page. Counted down from slot 0's last byte, the
    // page of `va` is a number below 2^52, which is the top slot exactly for an address
    // in the top slot's page (any other address, above slot 0's page included, wraps to
    // another number).
    let page = pc.slot0_end.wrapping_sub(va.as_u64()) >> PAGE_SHIFT;
    // The top slot, `idx - 1`: with nothing mapped, or where the quick pop is off
    // (`slot_adj` is then 2^62), a number no address gives.
    let mut slot = task.kmap_ctrl.idx.wrapping_add(f.quick8.slot_adj);
    if page == slot {
        mem.pte_window_write::<8>(pc.window_j.wrapping_sub(slot), 0);
    } else {
        // The 2-level kernel's: its adjustment is relative to PAE's (the same slot when
        // on), so that the test needs only the PAE slot.
        slot = slot.wrapping_add(f.quick4_rel);
        if page != slot {
            return false;
        }
        mem.pte_window_write::<4>(pc.window_j.wrapping_sub(slot), 0);
    }
    // The new `idx` is the slot (stored first: the slot's register is then free for the
    // `pteval` index).
    task.kmap_ctrl.idx = slot;
    *task.kmap_ctrl.pteval_mut(slot) = 0;
    task.migration_disabled = task.migration_disabled.wrapping_sub(1);
    true
}

/// What the quick `kmap_atomic` / `kunmap_atomic` of one CPU touch, borrowed once for any
/// number of maps and unmaps: the CPU's runqueue (the preempt count) and current task, the
/// precomputed kmap_local area, the machine's CPU (INVLPG, and the accesses through the
/// slots, [`AtomicKmap::cpu`]) and RAM (the slot PTEs, in the pinned window), and the
/// kmap_local counters. Each map and unmap is the whole of the kernel's function on the
/// quick path, or changes nothing (the caller then takes the out-of-line path).
pub(crate) struct AtomicKmap<'a> {
    cpu: usize,
    rq: &'a mut CpuRq,
    task: &'a mut Task,
    f: &'a LocalFast,
    /// The machine's CPU and RAM, held for the slot steps ([`SlotSession`]).
    m: SlotSession<'a>,
    counts: &'a mut KmapLocal,
    /// The last slot step's page and what [`Self::cycle_slot`] found for it (the slot's
    /// address, its PTE's, the PTE), while nothing but slot steps ran on this borrow: the
    /// stack, the quick limits and the slot's PTE are then as that step found them.
    last: Option<(u64, u64, u64, u64)>,
    /// The last slot step's page and the session's ticket for repeating it, where the
    /// session remembers it: a step of the same page is then the session's repeat alone
    /// (the slot's saved PTE was cleared by that step and nothing has pushed since).
    again: Option<(u64, Again)>,
}

impl<'a> AtomicKmap<'a> {
    /// `cpu`'s, or `None` for a CPU with no task.
    #[inline(always)]
    pub(crate) fn new(
        sched: &'a mut Sched,
        hm: &'a Highmem,
        machine: &'a mut Machine,
        counts: &'a mut KmapLocal,
        cpu: usize,
    ) -> Option<Self> {
        let t = sched.current_idx(cpu);
        let rq = sched.cpus.get_mut(cpu)?;
        let task = sched.tasks.get_mut(t)?;
        let mcpu = machine.cpus.get_mut(cpu)?;
        Some(AtomicKmap {
            cpu,
            rq,
            task,
            f: &hm.local,
            m: SlotSession::new(mcpu, &mut machine.mem),
            counts,
            last: None,
            again: None,
        })
    }

    /// `kmap_atomic()` of the highmem page `pfn` by the quick push of either entry size
    /// (PAE's first): `None`, having changed nothing, where it does not apply or would
    /// BUG.
    #[inline(always)]
    pub(crate) fn map(&mut self, pfn: Pfn) -> Option<VirtAddr> {
        self.map_quick::<8>(pfn)
            .or_else(|| self.map_quick::<4>(pfn))
    }

    /// [`Kernel::kmap_local_quick`]'s push with `S`-byte entries, `preempt_disable` and
    /// `pagefault_disable`.
    #[inline(always)]
    fn map_quick<const S: usize>(&mut self, pfn: Pfn) -> Option<VirtAddr> {
        let f = self.f;
        let slot = self.task.kmap_ctrl.idx;
        if slot >= f.quick::<S>().push_limit {
            return None;
        }
        let pteval = (pfn.phys().as_u64() & f.pfn_mask) | f.prot;
        let s = (slot & (KM_PTEVAL_SLOTS as u64 - 1)) as usize;
        let j = f.cpu(self.cpu).window_j.wrapping_sub(slot);
        self.forget();
        if self.m.parts().1.pte_window_fill_if_none::<S>(j, pteval) != 0 {
            return None;
        }
        self.rq.preempt_count += 1;
        let task = &mut *self.task;
        task.pagefault_disabled += 1;
        task.migration_disabled += 1;
        task.kmap_ctrl.idx += 1;
        task.kmap_ctrl.pteval[s] = pteval;
        self.counts.maps += 1;
        Some(VirtAddr::new(f.slot_va(self.cpu, s)))
    }

    /// `kunmap_atomic()` of `va` by the quick pop ([`quick_pop`]), `pagefault_enable`,
    /// `preempt_enable`, and the INVLPG: `false`, having changed nothing, for anything
    /// but the top slot on the quick path.
    #[inline(always)]
    pub(crate) fn unmap(&mut self, va: VirtAddr) -> bool {
        self.forget();
        let (c, mem) = self.m.parts();
        if !quick_pop(self.task, self.f, mem, self.cpu, va) {
            return false;
        }
        self.task.pagefault_disabled = self.task.pagefault_disabled.saturating_sub(1);
        self.rq.preempt_count = self.rq.preempt_count.saturating_sub(1);
        self.counts.unmaps += 1;
        // INVLPG (the slot's entry is usually where the last one left its note).
        c.invlpg_noted(va);
        true
    }

    /// `kmap_atomic(pfn)`, the read of the `size`-byte entry at `off` through the slot and
    /// `kunmap_atomic`, as one step where the quick paths take all three and `keep` lets
    /// the unmap follow the read at once: the entry read. The slot's PTE is none before
    /// and after (the map's check), the task's stack, preempt, pagefault and migration
    /// counts end where they started, the kmap counters count one map and one unmap, and
    /// the CPU's translation, load and INVLPG leave what the three leave
    /// ([`SlotSession::read_invlpg`]: it walks the tables with the slot's PTE holding the
    /// page; a step that repeats the borrow's last one with another entry of the same page
    /// needs no walk). `None`, having changed nothing, where the step does not apply (an entry
    /// size other than the kernel's included): the caller then takes the three.
    #[inline(always)]
    pub(crate) fn read_cycle(
        &mut self,
        pfn: Pfn,
        off: u64,
        size: u8,
        keep: impl FnOnce(u64) -> bool,
    ) -> Option<u64> {
        if let Some((p, t)) = self.again {
            if p == pfn.as_u64() && self.m.remembers(t) {
                let v = self.m.read_again(t, off, size, keep)?;
                self.count_cycle();
                return Some(v);
            }
        }
        if self.f.pae {
            self.read_cycle_in::<8, { Format::Pae as u8 }>(pfn, off, size, keep)
        } else {
            self.read_cycle_in::<4, { Format::TwoLevel as u8 }>(pfn, off, size, keep)
        }
    }

    /// [`Self::read_cycle`] for the write of `v`: `false`, having changed nothing, where
    /// the step does not apply.
    #[inline(always)]
    pub(crate) fn write_cycle(&mut self, pfn: Pfn, off: u64, size: u8, v: u64) -> bool {
        if let Some((p, t)) = self.again {
            if p == pfn.as_u64() && self.m.remembers(t) {
                let done = self.m.write_again(t, off, size, v);
                if done {
                    self.count_cycle();
                }
                return done;
            }
        }
        if self.f.pae {
            self.write_cycle_in::<8, { Format::Pae as u8 }>(pfn, off, size, v)
        } else {
            self.write_cycle_in::<4, { Format::TwoLevel as u8 }>(pfn, off, size, v)
        }
    }

    /// [`Self::read_cycle`] with `S`-byte entries, paging format `F`.
    #[inline(always)]
    fn read_cycle_in<const S: usize, const F: u8>(
        &mut self,
        pfn: Pfn,
        off: u64,
        size: u8,
        keep: impl FnOnce(u64) -> bool,
    ) -> Option<u64> {
        let (lin, pte_pa, pte) = self.cycle_slot::<S>(pfn, off, size)?;
        let v = self.m.read_invlpg::<F>(lin, pte_pa, pte, keep)?;
        self.cycle_done::<F>(pfn, lin, pte_pa, pte);
        Some(v)
    }

    /// [`Self::write_cycle`] with `S`-byte entries, paging format `F`.
    #[inline(always)]
    fn write_cycle_in<const S: usize, const F: u8>(
        &mut self,
        pfn: Pfn,
        off: u64,
        size: u8,
        v: u64,
    ) -> bool {
        let Some((lin, pte_pa, pte)) = self.cycle_slot::<S>(pfn, off, size) else {
            return false;
        };
        let done = self.m.write_invlpg::<F>(lin, pte_pa, pte, v);
        if done {
            self.cycle_done::<F>(pfn, lin, pte_pa, pte);
        }
        done
    }

    /// The slot the quick push of `S`-byte entries would take for `pfn`, where it applies
    /// and the slot's PTE is none: the address of the entry at `off` in it (`size` bytes,
    /// which must be `S`), where the slot's PTE is, and the PTE the push would write.
    /// The last step's when it was of `pfn` (see [`Self::last`]).
    #[inline(always)]
    fn cycle_slot<const S: usize>(&self, pfn: Pfn, off: u64, size: u8) -> Option<(u64, u64, u64)> {
        match self.last {
            Some((p, lin, pte_pa, pte)) if p == pfn.as_u64() && usize::from(size) == S => {
                Some((lin + off, pte_pa, pte))
            }
            _ => self.cycle_slot_new::<S>(pfn, off, size),
        }
    }

    /// [`Self::cycle_slot`] from the task's stack and the slot's PTE.
    #[inline(always)]
    fn cycle_slot_new<const S: usize>(
        &self,
        pfn: Pfn,
        off: u64,
        size: u8,
    ) -> Option<(u64, u64, u64)> {
        let f = self.f;
        let slot = self.task.kmap_ctrl.idx;
        let pc = f.cpu(self.cpu);
        if usize::from(size) != S
            || slot >= f.quick::<S>().push_limit
            || self
                .m
                .mem()
                .pte_window_read::<S>(pc.window_j.wrapping_sub(slot))
                != 0
        {
            return None;
        }
        let pteval = (pfn.phys().as_u64() & f.pfn_mask) | f.prot;
        let s = (slot & (KM_PTEVAL_SLOTS as u64 - 1)) as usize;
        let pte_pa = pc.slot0_pte - slot * S as u64;
        Some((f.slot_va(self.cpu, s) + off, pte_pa, pteval))
    }

    /// What a slot step leaves of its push and pop: the slot's saved PTE cleared, one map
    /// and one unmap counted.
    #[inline(always)]
    fn cycle_done<const F: u8>(&mut self, pfn: Pfn, lin: u64, pte_pa: u64, pte: u64) {
        let s = (self.task.kmap_ctrl.idx & (KM_PTEVAL_SLOTS as u64 - 1)) as usize;
        debug_assert_eq!(self.f.slot_va(self.cpu, s), lin & !(PAGE_SIZE - 1));
        self.task.kmap_ctrl.pteval[s] = 0;
        self.count_cycle();
        self.last = Some((pfn.as_u64(), lin & !(PAGE_SIZE - 1), pte_pa, pte));
        self.again = self.m.again::<F>().map(|t| (pfn.as_u64(), t));
    }

    /// A slot step's kmap counts: one map, one unmap.
    #[inline(always)]
    fn count_cycle(&mut self) {
        self.counts.maps += 1;
        self.counts.unmaps += 1;
    }

    /// Forget the last slot step (the stack or the slot's PTE may change).
    #[inline(always)]
    fn forget(&mut self) {
        self.last = None;
        self.again = None;
    }

    /// A fault run of user accesses `access` over the pages `[lo, hi)` whose PTE page is
    /// `pfn` ([`SlotSession::fault_run`]), where the borrow's last slot step was of `pfn`
    /// and the session still remembers it: the run's slot steps are that step's repeats.
    #[inline(always)]
    pub(crate) fn fault_run(
        &mut self,
        pfn: Pfn,
        lo: u64,
        hi: u64,
        access: Access,
    ) -> Option<FaultRun> {
        let (p, t) = self.again?;
        if p != pfn.as_u64() {
            return None;
        }
        self.m.fault_run(t, lo, hi, access)
    }

    /// The pages of `run` from `from` on ([`SlotSession::run_faults`]), each slot step of
    /// `handler` a `kmap_atomic` / `kunmap_atomic` cycle of the remembered step: one map
    /// and one unmap counted, the stack, the slot's PTE and the task's counts where they
    /// were.
    #[inline(always)]
    pub(crate) fn run_faults<E>(
        &mut self,
        run: &FaultRun,
        from: u64,
        handler: impl FnMut(&mut RunSteps, PageFault) -> Result<(), E>,
    ) -> RunEnd<E> {
        let end = self.m.run_faults(run, from, handler);
        self.counts.maps += end.steps;
        self.counts.unmaps += end.steps;
        end
    }

    /// A user access by the borrow's CPU ([`SlotSession::translate_unmapped`]): the last
    /// slot step stays (the stack and the slot's PTE are the kernel's, which a user access
    /// does not touch), and so does the ticket to repeat it, which the session takes only
    /// while it still remembers that step.
    #[inline(always)]
    pub(crate) fn translate_unmapped(
        &mut self,
        va: VirtAddr,
        access: Access,
    ) -> Result<PhysAddr, AccessError> {
        self.m.translate_unmapped(va, access)
    }

    /// The retry of a user access ([`SlotSession::translate_refault`]), as
    /// [`Self::translate_unmapped`].
    #[inline(always)]
    pub(crate) fn translate_refault(
        &mut self,
        va: VirtAddr,
        access: Access,
    ) -> Result<PhysAddr, AccessError> {
        self.m.translate_refault(va, access)
    }

    /// The machine's CPU and RAM, for the accesses through a slot.
    #[inline(always)]
    pub(crate) fn cpu(&mut self) -> (&mut Cpu, &mut PhysMem) {
        self.forget();
        self.m.parts()
    }
}

#[cold]
#[inline(never)]
fn no_such_cpu(cpu: usize) -> KmapError {
    KmapError::from(CpuError::NoSuchCpu(cpu))
}

impl Kernel {
    /// Depth of `cpu`'s current task's kmap_local stack (`kmap_ctrl.idx`).
    pub fn kmap_local_depth(&self, cpu: usize) -> u64 {
        self.sched.task(self.sched.current(cpu)).kmap_ctrl.idx
    }

    /// Whether `va` lies in the kmap_local fixmap area.
    #[inline]
    pub fn in_kmap_local_area(&self, va: u64) -> bool {
        let a = va & !(PAGE_SIZE - 1);
        a >= self.hm.kmap_lo && a <= self.hm.kmap_hi
    }

    /// `kmap_local_page()` by `cpu`'s current task.
    #[inline]
    pub fn kmap_local_page(&mut self, cpu: usize, pfn: Pfn) -> Result<VirtAddr, KmapError> {
        if pfn.as_u64() < self.layout.max_low_pfn.as_u64() {
            return Ok(VirtAddr::new(
                self.config.page_offset() + pfn.phys().as_u64(),
            ));
        }
        self.kmap_local_pfn(cpu, pfn)
    }

    /// `__kmap_local_pfn_prot()`: migrate_disable, push a slot, write its PTE. The
    /// mapping is recorded only in the task's `kmap_ctrl` (the checker reads it there).
    /// Inline: the quick pushes ([`Self::kmap_local_quick`]), PAE's first, the 2-level
    /// kernel's in its failure branch; anything else out of line.
    #[inline]
    fn kmap_local_pfn(&mut self, cpu: usize, pfn: Pfn) -> Result<VirtAddr, KmapError> {
        self.kmap_local_quick::<8>(cpu, pfn, |k, cpu, pfn| {
            k.kmap_local_quick::<4>(cpu, pfn, Self::kmap_local_pfn_slow)
        })
    }

    /// The quick push, built for the kernels the boot chose it for (KM_INCR 1: the slot is
    /// the old `idx`) with `S`-byte entries. The slot PTE is read (6.1's
    /// `BUG_ON(!pte_none)`) and written as an entry of the pinned PTE window, from this
    /// CPU's slot 0 precomputed at boot; a full slot is the BUG, built out of line.
    /// `other` (nothing done yet) for the rest: a CPU with no task, too many nested
    /// mappings, any other kernel, or tracing (the push limit is then 0).
    #[inline(always)]
    fn kmap_local_quick<const S: usize>(
        &mut self,
        cpu: usize,
        pfn: Pfn,
        other: impl FnOnce(&mut Self, usize, Pfn) -> Result<VirtAddr, KmapError>,
    ) -> Result<VirtAddr, KmapError> {
        let t = self.sched.current_idx(cpu);
        // One borrow of the task for the whole call (the error paths end it early).
        let Some(task) = self.sched.tasks.get_mut(t) else {
            return other(self, cpu, pfn);
        };
        let f = &self.hm.local;
        let slot = task.kmap_ctrl.idx;
        if slot >= f.quick::<S>().push_limit {
            return other(self, cpu, pfn);
        }
        let pc = f.cpu(cpu);
        let pteval = (pfn.phys().as_u64() & f.pfn_mask) | f.prot;
        // The slot is below the push limit, so below KM_PTEVAL_SLOTS: one index (masked,
        // with no bounds check) for its address and its saved PTE.
        let s = (slot & (KM_PTEVAL_SLOTS as u64 - 1)) as usize;
        let j = pc.window_j.wrapping_sub(slot);
        let old = self.machine.mem.pte_window_fill_if_none::<S>(j, pteval);
        if old != 0 {
            return Err(self.slot_not_empty(cpu, pfn, slot, old));
        }
        task.migration_disabled += 1;
        task.kmap_ctrl.idx += 1;
        task.kmap_ctrl.pteval[s] = pteval;
        self.kmap_local.maps += 1;
        Ok(VirtAddr::new(self.hm.local.slot_va(cpu, s)))
    }

    /// [`Self::kmap_local_pfn`] past its quick pushes: too many nested mappings, a kernel
    /// the quick paths are not built for (DEBUG_KMAP_LOCAL's guard slots), the tracepoints
    /// on, or a CPU with no task. The slot PTE goes through the pinned window (either entry
    /// size), or — unpinned — `PhysMem`'s checked entry accessors.
    #[inline(never)]
    fn kmap_local_pfn_slow(&mut self, cpu: usize, pfn: Pfn) -> Result<VirtAddr, KmapError> {
        let t = self.sched.current_idx(cpu);
        let Some(task) = self.sched.tasks.get_mut(t) else {
            return Err(no_such_cpu(cpu));
        };
        let f = &self.hm.local;
        let idx = task.kmap_ctrl.idx + f.km_incr;
        if idx >= f.idx_max {
            return Err(self.too_many_nested(cpu, pfn));
        }
        let slot = idx - 1;
        let pc = f.cpu(cpu);
        let pteval = (pfn.phys().as_u64() & f.pfn_mask) | f.prot;
        let va = pc.slot0_va - slot * PAGE_SIZE;
        let mem = &mut self.machine.mem;
        let old = if f.pinned {
            let j = pc.window_j.wrapping_sub(slot);
            if f.pae {
                mem.pte_window_fill_if_none::<8>(j, pteval)
            } else {
                mem.pte_window_fill_if_none::<4>(j, pteval)
            }
        } else {
            let size: u8 = if f.pae { 8 } else { 4 };
            let pa = PhysAddr::new(pc.slot0_pte - slot * u64::from(size));
            mem.fill_pte_if_none(pa, size, pteval).map_err(bus_error)?
        };
        if old != 0 {
            return Err(self.slot_not_empty(cpu, pfn, slot, old));
        }
        task.migration_disabled += 1;
        task.kmap_ctrl.idx = idx;
        *task.kmap_ctrl.pteval_mut(slot) = pteval;
        self.kmap_local.maps += 1;
        crate::trace::kmap_local(self.hm.tracing, cpu, pfn.as_u64(), va);
        Ok(VirtAddr::new(va))
    }

    #[cold]
    #[inline(never)]
    fn too_many_nested(&mut self, cpu: usize, pfn: Pfn) -> KmapError {
        let max = self.kmap_area.km_max_idx;
        self.hm_bug(
            Check::TooManyNested,
            cpu,
            format!(
                "kernel BUG at mm/highmem.c: kmap_local_idx_push: more than {} nested kmap_local mappings (KM_MAX_IDX {max})",
                (max - 1) / self.hm.km_incr
            ),
            &format!("kmap_local_page(pfn {:#x})", pfn.as_u64()),
        )
    }

    #[cold]
    #[inline(never)]
    fn slot_not_empty(&mut self, cpu: usize, pfn: Pfn, slot: u64, old: u64) -> KmapError {
        let gidx = slot + self.kmap_area.km_max_idx * cpu as u64;
        self.hm_bug(
            Check::SlotNotEmpty,
            cpu,
            format!(
                "kernel BUG at mm/highmem.c: __kmap_local_pfn_prot: slot {slot} of CPU {cpu} ({:#x}) already maps PTE {old:#x}",
                self.kmap_area.slot_vaddr(gidx)
            ),
            &format!("kmap_local_page(pfn {:#x})", pfn.as_u64()),
        )
    }

    /// `kunmap_local()` by `cpu`'s current task.
    #[inline]
    pub fn kunmap_local(&mut self, cpu: usize, va: VirtAddr) -> Result<(), KmapError> {
        self.kunmap_local_indexed(cpu, va)
    }

    /// `kunmap_local_indexed()`: addresses outside the area (lowmem) need nothing; else
    /// the top slot is cleared and flushed on this CPU — with a WARNING first when `va` is
    /// not the top slot (the kernel then clears the top slot all the same).
    ///
    /// Inline: the quick pop of the top slot, built for the kernels the boot chose it for
    /// (KM_INCR 1), PAE first, then 2-level paging; its PTE is cleared as an entry of the
    /// pinned PTE window, then INVLPG. Anything else goes out of line: an address outside
    /// the top slot's page (lowmem or user addresses, nothing mapped, another slot), a CPU
    /// with no task, any other kernel, or tracing.
    #[inline]
    fn kunmap_local_indexed(&mut self, cpu: usize, va: VirtAddr) -> Result<(), KmapError> {
        let t = self.sched.current_idx(cpu);
        let Some(task) = self.sched.tasks.get_mut(t) else {
            return self.kunmap_local_other(cpu, va);
        };
        if !quick_pop(task, &self.hm.local, &mut self.machine.mem, cpu, va) {
            return self.kunmap_local_other(cpu, va);
        }
        self.kmap_local.unmaps += 1;
        // The local flush of one page: INVLPG on this CPU (after the pops, which nothing
        // between them observes: the task's registers are free for the TLB's probe), where
        // the slot's entry usually is the one the last INVLPG noted.
        if let Err(e) = self.machine.invlpg_noted(cpu, va) {
            return Err(cpu_error(e));
        }
        Ok(())
    }

    /// `kunmap_local_indexed()` for everything but the quick pops: addresses outside the
    /// area (lowmem) need nothing; else the top slot is cleared (through the pinned window,
    /// or — unpinned — `PhysMem`'s checked entry accessors) and flushed on this CPU — with
    /// a WARNING first when `va` is not the top slot (the kernel then clears the top slot
    /// all the same).
    #[inline(never)]
    fn kunmap_local_other(&mut self, cpu: usize, va: VirtAddr) -> Result<(), KmapError> {
        let addr = va.as_u64() & !(PAGE_SIZE - 1);
        if !self.in_kmap_local_area(addr) {
            return self.kunmap_outside_area(cpu, va);
        }
        let t = self.sched.current_idx(cpu);
        let Some(task) = self.sched.tasks.get(t) else {
            return Err(no_such_cpu(cpu));
        };
        let idx = task.kmap_ctrl.idx;
        if idx == 0 {
            return Err(self.nothing_to_unmap(cpu, va));
        }
        let slot = idx - 1;
        let expected = self.hm.local.cpu(cpu).slot0_va - slot * PAGE_SIZE;
        if addr != expected {
            self.out_of_order(cpu, va, expected);
        }
        crate::trace::kunmap_local(self.hm.tracing, cpu, expected);
        let f = &self.hm.local;
        let pc = f.cpu(cpu);
        let mem = &mut self.machine.mem;
        if f.pinned {
            let j = pc.window_j.wrapping_sub(slot);
            if f.pae {
                mem.pte_window_write::<8>(j, 0);
            } else {
                mem.pte_window_write::<4>(j, 0);
            }
        } else {
            let size: u8 = if f.pae { 8 } else { 4 };
            let pa = PhysAddr::new(pc.slot0_pte - slot * u64::from(size));
            mem.write_pte(pa, size, 0).map_err(bus_error)?;
        }
        self.machine
            .invlpg(cpu, VirtAddr::new(expected))
            .map_err(cpu_error)?;
        let km_incr = f.km_incr;
        pop_slot(
            &mut self.sched.tasks[t],
            &mut self.kmap_local,
            km_incr,
            slot,
        );
        Ok(())
    }

    /// `kunmap_local` of an address outside the kmap_local area: a lowmem (direct-map)
    /// address needs nothing; a user address is the kernel's WARNING.
    #[inline(never)]
    fn kunmap_outside_area(&mut self, cpu: usize, va: VirtAddr) -> Result<(), KmapError> {
        if va.as_u64() < self.config.page_offset() {
            self.user_address_unmap(cpu, va);
        }
        Ok(())
    }

    #[cold]
    fn user_address_unmap(&mut self, cpu: usize, va: VirtAddr) {
        self.hm_report(
            Severity::Warning,
            Check::UnmapNotMapped,
            cpu,
            format!("kunmap_local_indexed: {:#x} is a user address", va.as_u64()),
            &format!("kunmap_local({:#x})", va.as_u64()),
        );
    }

    #[cold]
    fn nothing_to_unmap(&mut self, cpu: usize, va: VirtAddr) -> KmapError {
        self.hm_bug(
            Check::UnmapNotMapped,
            cpu,
            format!(
                "kernel BUG at mm/highmem.c: kmap_local_idx_pop: {:#x} unmapped with no kmap_local mapping held",
                va.as_u64()
            ),
            &format!("kunmap_local({:#x})", va.as_u64()),
        )
    }

    #[cold]
    fn out_of_order(&mut self, cpu: usize, va: VirtAddr, expected: u64) {
        self.hm_report(
            Severity::Warning,
            Check::OutOfOrderUnmap,
            cpu,
            format!(
                "kunmap_local_indexed: {:#x} is not the top slot {expected:#x} (mappings must be released in reverse order)",
                va.as_u64() & !(PAGE_SIZE - 1)
            ),
            &format!("kunmap_local({:#x})", va.as_u64()),
        );
    }

    /// The kmap_local mappings `t` holds, from its `kmap_ctrl` (slot addresses on the CPU
    /// it runs or last ran on).
    pub fn local_mappings(&self, t: TaskId) -> Vec<HeldMap> {
        let task = self.sched.task(t);
        let max = self.kmap_area.km_max_idx;
        (0..task.kmap_ctrl.idx)
            .filter_map(|i| {
                let v = *task.kmap_ctrl.pteval.get(i as usize)?;
                (v != 0).then(|| HeldMap {
                    kind: MapKind::Local,
                    va: self.kmap_area.slot_vaddr(i + max * task.cpu as u64),
                    pfn: (v & self.geo.pfn_mask()) / PAGE_SIZE,
                    cpu: task.cpu,
                })
            })
            .collect()
    }

    /// 6.1 `kmap_atomic()`: preemption and page faults off, then the kmap_local path.
    /// Inline: a highmem page by the quick push of either entry size ([`AtomicKmap`]);
    /// anything else out of line.
    #[inline(always)]
    pub fn kmap_atomic(&mut self, cpu: usize, pfn: Pfn) -> Result<VirtAddr, KmapError> {
        if pfn.as_u64() >= self.layout.max_low_pfn.as_u64() {
            if let Some(va) = self.atomic_kmap(cpu).and_then(|mut a| a.map(pfn)) {
                return Ok(va);
            }
        }
        self.kmap_atomic_slow(cpu, pfn)
    }

    /// The quick `kmap_atomic` / `kunmap_atomic` of `cpu` ([`AtomicKmap`]), `None` for a
    /// CPU with no task.
    #[inline(always)]
    pub(crate) fn atomic_kmap(&mut self, cpu: usize) -> Option<AtomicKmap<'_>> {
        AtomicKmap::new(
            &mut self.sched,
            &self.hm,
            &mut self.machine,
            &mut self.kmap_local,
            cpu,
        )
    }

    /// [`Self::kmap_atomic`] past its quick pushes.
    #[inline(never)]
    pub(crate) fn kmap_atomic_slow(&mut self, cpu: usize, pfn: Pfn) -> Result<VirtAddr, KmapError> {
        self.sched.preempt_disable(cpu);
        let t = self.sched.current(cpu);
        self.sched.tasks[t.0].pagefault_disabled += 1;
        if pfn.as_u64() < self.layout.max_low_pfn.as_u64() {
            return Ok(VirtAddr::new(
                self.config.page_offset() + pfn.phys().as_u64(),
            ));
        }
        let r = self.kmap_local_pfn(cpu, pfn);
        if r.is_err() {
            self.sched.tasks[t.0].pagefault_disabled -= 1;
            self.sched.preempt_enable(cpu);
        }
        r
    }

    /// 6.1 `kunmap_atomic()`. Inline: the quick pop ([`AtomicKmap`]); anything else out
    /// of line.
    #[inline(always)]
    pub fn kunmap_atomic(&mut self, cpu: usize, va: VirtAddr) -> Result<(), KmapError> {
        if self.atomic_kmap(cpu).is_some_and(|mut a| a.unmap(va)) {
            return Ok(());
        }
        self.kunmap_atomic_slow(cpu, va)
    }

    /// [`Self::kunmap_atomic`] past its quick pop.
    #[inline(never)]
    pub(crate) fn kunmap_atomic_slow(&mut self, cpu: usize, va: VirtAddr) -> Result<(), KmapError> {
        let r = self.kunmap_local_indexed(cpu, va);
        let t = self.sched.current(cpu);
        let task = &mut self.sched.tasks[t.0];
        task.pagefault_disabled = task.pagefault_disabled.saturating_sub(1);
        self.sched.preempt_enable(cpu);
        r
    }

    /// `__kmap_local_sched_out()`: clear every live slot of `t` on `cpu` (INVLPG each).
    pub(crate) fn kmap_local_sched_out(&mut self, cpu: usize, t: TaskId) -> Result<(), KmapError> {
        let max = self.kmap_area.km_max_idx;
        let guards = self.hm.km_incr == 2;
        let ctrl = self.sched.tasks[t.0].kmap_ctrl;
        for i in 0..ctrl.idx {
            if guards && i & 1 == 0 {
                continue;
            }
            if ctrl.pteval[i as usize] == 0 {
                continue;
            }
            let gidx = i + max * cpu as u64;
            let area = &self.kmap_area;
            area.geo
                .write(&mut self.machine.mem, area.slot_pte(gidx), 0, 0)?;
            TlbFlush::page(area.slot_vaddr(gidx)).flush_local(&mut self.machine, cpu)?;
            self.kmap_local.sched_out += 1;
        }
        Ok(())
    }

    /// `__kmap_local_sched_in()`: write `t`'s slots back from `kmap_ctrl.pteval` (they were
    /// cleared and flushed at sched-out, so no flush is needed).
    pub(crate) fn kmap_local_sched_in(&mut self, cpu: usize, t: TaskId) -> Result<(), KmapError> {
        let max = self.kmap_area.km_max_idx;
        let guards = self.hm.km_incr == 2;
        let ctrl = self.sched.tasks[t.0].kmap_ctrl;
        for i in 0..ctrl.idx {
            if guards && i & 1 == 0 {
                continue;
            }
            let v = ctrl.pteval[i as usize];
            if v == 0 {
                continue;
            }
            let gidx = i + max * cpu as u64;
            let area = &self.kmap_area;
            area.geo
                .write(&mut self.machine.mem, area.slot_pte(gidx), 0, v)?;
            self.kmap_local.sched_in += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::KernelConfig;
    use crate::gfp::GFP_HIGHUSER;
    use crate::highmem::Check;
    use crate::trace::{Event, Record};
    use crate::{boot, BootOptions, Kernel};
    use machine::VirtAddr;

    fn booted(preset: &str) -> Kernel {
        let cfg = KernelConfig::preset(preset).expect("preset");
        let mut opts = BootOptions::new(2 << 30, 2, cfg);
        opts.runtime_profile = false;
        boot(&opts).expect("boot")
    }

    /// Every booted kernel pins its slot PTEs as the PTE window, whatever the entry size,
    /// CPU count and guard slots: the inline paths run, and what they write is the PTE the
    /// checked accessors (and the MMU) see at the slot's physical address.
    #[test]
    fn the_inline_paths_write_the_slot_ptes_through_the_pinned_window() {
        for preset in ["debian-686-pae", "debian-686"] {
            for (nr_cpus, debug) in [(1, false), (32, false), (64, true)] {
                let mut cfg = KernelConfig::preset(preset).expect("preset");
                cfg.nr_cpus = nr_cpus;
                cfg.debug_kmap_local = debug;
                let mut opts = BootOptions::new(2 << 30, 2, cfg);
                opts.runtime_profile = false;
                let mut k = boot(&opts).expect("boot");
                let what = format!("{preset}, NR_CPUS {nr_cpus}, guards {debug}");
                assert!(
                    k.hm.local.pinned,
                    "{what}: window not pinned (kmap_pte {:#x}, banks {:x?}, window end {:#x})",
                    k.kmap_area.kmap_pte,
                    k.machine.mem.banks(),
                    k.machine.mem.window_end().as_u64()
                );
                let pfn = k.alloc_pages(GFP_HIGHUSER, 0, 0).expect("page").pfn;
                let size = k.kmap_area.geo.entry_size();
                let maps = k.kmap_local.maps;
                for cpu in 0..k.sched.cpus.len() {
                    let va = k.kmap_local_page(cpu, pfn).expect("map");
                    assert_eq!(
                        k.kmap_local.maps,
                        maps + 1 + cpu as u64,
                        "{what}: inline map"
                    );
                    let slot = k.kmap_local_depth(cpu) - 1;
                    let gidx = slot + k.kmap_area.km_max_idx * cpu as u64;
                    assert_eq!(va.as_u64(), k.kmap_area.slot_vaddr(gidx), "{what}");
                    let pte = k.kmap_area.slot_pte(gidx);
                    let got = k.machine.mem.read_pte(pte, size as u8).expect("pte");
                    assert_eq!(got & k.geo.pfn_mask(), pfn.phys().as_u64(), "{what}");
                    assert_eq!(got, k.hm.local.prot | pfn.phys().as_u64(), "{what}");
                    let mut b = [0u8; 4];
                    k.machine
                        .read_virt(cpu, va, &mut b)
                        .expect("read through the slot");
                    k.kunmap_local(cpu, va).expect("unmap");
                    assert_eq!(k.machine.mem.read_pte(pte, size as u8), Ok(0), "{what}");
                    assert_eq!(k.kmap_local_depth(cpu), 0, "{what}");
                }
            }
        }
    }

    /// The inline `kunmap_local` takes exactly the top slot's page, at any offset: with
    /// nothing mapped, slot 0's page and the page above it (the previous CPU's last slot)
    /// are the BUG; with one slot mapped, the page above it is an out-of-order unmap (the
    /// WARNING, then the top slot cleared), and an address whose low 32 bits are the top
    /// slot's but not its high bits is no kmap_local address at all. The same with either
    /// entry size (the 2-level test follows the PAE one).
    #[test]
    fn the_inline_unmap_takes_only_the_top_slots_page() {
        for preset in ["debian-686-pae", "debian-686"] {
            let mut k = booted(preset);
            // The quick paths of the kernel's entry size are on, the other's off.
            let l = &k.hm.local;
            assert!(l.inline, "{preset}");
            let pae = preset == "debian-686-pae";
            assert_eq!(
                (l.quick8.push_limit != 0, l.quick4.push_limit != 0),
                (pae, !pae)
            );
            let pfn = k.alloc_pages(GFP_HIGHUSER, 0, 0).expect("page").pfn;
            let cpu = 1;
            let slot0 = k.hm.local.cpu(cpu).slot0_va;
            let page = machine::PAGE_SIZE;
            for va in [slot0, slot0 + page, slot0 + 0x123] {
                let e = k
                    .kunmap_local(cpu, VirtAddr::new(va))
                    .expect_err("nothing mapped");
                assert_eq!(e.check(), Some(Check::UnmapNotMapped), "{preset} {va:#x}");
                assert_eq!(k.kmap_local_depth(cpu), 0);
            }
            let unmaps = k.kmap_local.unmaps;
            let a = k.kmap_local_page(cpu, pfn).expect("map");
            assert_eq!(a.as_u64(), slot0, "{preset}");
            let far = VirtAddr::new(slot0 + (1 << 32));
            k.kunmap_local(cpu, far).expect("not a kmap_local address");
            assert_eq!(k.kmap_local_depth(cpu), 1, "{preset}: nothing popped");
            let reports = k.hm.debug.reports.len();
            k.kunmap_local(cpu, VirtAddr::new(slot0 + page))
                .expect("a warning");
            assert_eq!(k.hm.debug.reports.len(), reports + 1, "{preset}");
            assert_eq!(
                k.hm.debug.reports.last().map(|r| r.check),
                Some(Check::OutOfOrderUnmap)
            );
            assert_eq!(k.kmap_local_depth(cpu), 0, "{preset}: top slot cleared");
            // Any offset in the top slot's page is that slot.
            let b = k.kmap_local_page(cpu, pfn).expect("map");
            k.kunmap_local(cpu, VirtAddr::new(b.as_u64() + 0xfff))
                .expect("unmap");
            assert_eq!(k.kmap_local_depth(cpu), 0);
            assert_eq!(k.hm.debug.reports.len(), reports + 1, "{preset}: no report");
            assert_eq!(k.kmap_local.unmaps, unmaps + 2, "{preset}");
        }
    }

    fn local_events(r: &[Record]) -> Vec<Event> {
        r.iter()
            .map(|r| r.event)
            .filter(|e| matches!(e, Event::KmapLocal { .. } | Event::KunmapLocal { .. }))
            .collect()
    }

    /// While a session is live every kmap_local push and pop takes the out-of-line path
    /// and is traced, nested or out of order; once it is finished the inline paths are
    /// back, untraced, and the limit and checks hold both ways.
    #[test]
    fn kmap_local_events_are_traced_exactly_while_a_session_is_live() {
        for preset in ["debian-686-pae", "debian-686"] {
            let mut k = booted(preset);
            let pfn = k.alloc_pages(GFP_HIGHUSER, 0, 0).expect("page").pfn;
            let before = (k.kmap_local.maps, k.kmap_local.unmaps);
            let s = k.trace_start(u32::MAX);
            let a = k.kmap_local_page(0, pfn).expect("map");
            let b = k.kmap_local_page(0, pfn).expect("map");
            k.kunmap_local(0, b).expect("unmap");
            // Out of order: the WARNING, then the top slot (a) is cleared all the same.
            let c = k.kmap_local_page(0, pfn).expect("map");
            k.kunmap_local(0, a).expect("a warning");
            assert_eq!(
                k.hm.debug.reports.last().map(|r| r.check),
                Some(Check::OutOfOrderUnmap)
            );
            k.kunmap_local(0, c).expect("unmap");
            let traced = local_events(&k.trace_finish(s));
            let p = pfn.as_u64();
            let (va, vb) = (a.as_u64(), b.as_u64());
            assert_eq!(
                traced,
                [
                    Event::KmapLocal { pfn: p, vaddr: va },
                    Event::KmapLocal { pfn: p, vaddr: vb },
                    Event::KunmapLocal { vaddr: vb },
                    Event::KmapLocal { pfn: p, vaddr: vb },
                    Event::KunmapLocal { vaddr: vb },
                    Event::KunmapLocal { vaddr: va },
                ],
                "{preset}"
            );
            assert_eq!(c, b, "{preset}: slot reused");
            let counts = (k.kmap_local.maps, k.kmap_local.unmaps);
            assert_eq!(counts, (before.0 + 3, before.1 + 3), "{preset}");
            // Off again: the inline paths, nothing recorded, the limit unchanged.
            let s = k.trace_start(0);
            let quiet = k.trace_finish(s);
            assert!(quiet.is_empty());
            let d = k.kmap_local_page(0, pfn).expect("map");
            assert_eq!(d, a, "{preset}: first slot again");
            k.kunmap_local(0, d).expect("unmap");
            assert_eq!(k.kmap_local_depth(0), 0);
            for on in [false, true] {
                let s = on.then(|| k.trace_start(u32::MAX));
                let mut held: Vec<VirtAddr> = Vec::new();
                let e = loop {
                    match k.kmap_local_page(0, pfn) {
                        Ok(v) => held.push(v),
                        Err(e) => break e,
                    }
                };
                assert_eq!(
                    e.check(),
                    Some(Check::TooManyNested),
                    "{preset} tracing {on}"
                );
                assert_eq!(held.len() as u64, k.hm.local.idx_max - 1);
                for v in held.into_iter().rev() {
                    k.kunmap_local(0, v).expect("unmap");
                }
                if let Some(s) = s {
                    let n = local_events(&k.trace_finish(s)).len() as u64;
                    assert_eq!(n, 2 * (k.hm.local.idx_max - 1));
                }
            }
        }
    }
}
