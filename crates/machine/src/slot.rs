//! The kmap slot step, held: a kernel's run of accesses through one kmap slot.
//!
//! A 32-bit kernel reads and writes a highmem page table through a kmap slot: map (the
//! slot's PTE written), the access (a TLB miss, since the last unmap's INVLPG took the
//! slot's entry: walk, refill), unmap (the PTE cleared, INVLPG). [`SlotSession::read_invlpg`]
//! takes such a group as one step where its end state is the usual one. A fault maps the
//! same PTE page through the same slot several times in a row (`follow_page`, the fault's
//! read and `set_pte_at`, `follow_page` again), and each time the walk finds the same
//! directory entry and the TLB the same invalid slot: nothing between two steps can
//! change them, when nothing else touches the CPU or RAM in between.
//!
//! [`SlotSession`] makes that hold by construction: it borrows the CPU and RAM for as long
//! as it lives, so only its own steps run, and any other use of either goes through
//! [`SlotSession::parts`], which forgets what the last step found. A step with the same
//! slot page, PTE address and value as the last one then needs neither the walk nor the
//! TLB's test, and writes nothing the last one did not already leave (the slot's entry and
//! front-table addend hold the same values): only the access and its counts. A step that
//! could change the walk — a write into the directory page or the slot's PTE page — is
//! never remembered, and an access to the slot's own PTE through the slot (which sees the
//! PTE the map wrote, and whose write the unmap clears) is not a slot step.
//!
//! A user access on the session ([`SlotSession::translate_unmapped`],
//! [`SlotSession::translate_refault`]: the first touch of a page and its retry after the
//! fault) keeps what the last step found when it cannot have changed it: its walk writes
//! only the user's own entries, so what is left to check is the TLB, and an access whose
//! page has another set and front entry than the slot's left the slot's as it was
//! (`Tlb::slot_apart`), unless it widened the span of large pages over the slot (the step
//! then no longer applies). It may move the INVLPG note (a fault's invalidation of the
//! user's page), a hint only: the next step's three steps would not find the slot there
//! and scan for it, and leave the same state.
//!
//! A caller that repeats the remembered step itself (the same slot, the same page: a kernel
//! reading entry after entry of one PTE page) holds an [`Again`] ticket for it, and
//! [`SlotSession::read_again`] / [`SlotSession::write_again`] take the repeat without the
//! comparisons: the session numbers what it remembers, and a ticket is good only while the
//! step it was issued for is still the remembered one.

use crate::mmu::{Access, AccessError};
use crate::paging::Format;
use crate::{Cpu, PhysAddr, PhysMem, VirtAddr};
use std::sync::atomic::{AtomicU64, Ordering};

#[path = "fault_run.rs"]
mod fault_run;
pub use fault_run::{FaultRun, RunEnd, RunSteps, RunStop};

/// Sessions started so far, in the high half of each one's first number: a ticket of one
/// session never matches another's.
static SESSIONS: AtomicU64 = AtomicU64::new(0);

/// What the last step of a session found, for the next one with the same slot page, PTE
/// address, PTE value and paging format.
#[derive(Clone, Copy, Debug)]
struct LastStep {
    page: u64,
    pte_pa: u64,
    pte: u64,
    format: u8,
    /// The entry's page base and packed bits.
    base: u64,
    bits: u64,
}

/// A repeat of a session's remembered step ([`SlotSession::again`]): the entry's page
/// base, its size, and whether the entry lets a write through (a kernel read it always
/// does). Only a session makes one,
/// and only the session that made it, while it remembers that step, takes it.
#[derive(Clone, Copy, Debug)]
pub struct Again {
    gen: u64,
    base: u64,
    size: u8,
    write: bool,
}

/// A CPU and its RAM, borrowed for a run of slot steps ([module docs](self)).
pub struct SlotSession<'a> {
    cpu: &'a mut Cpu,
    mem: &'a mut PhysMem,
    last: Option<LastStep>,
    /// The number of what the session remembers: it changes whenever `last` does, so that
    /// an [`Again`] ticket issued for one step is refused after.
    gen: u64,
}

impl<'a> SlotSession<'a> {
    pub fn new(cpu: &'a mut Cpu, mem: &'a mut PhysMem) -> Self {
        SlotSession {
            cpu,
            mem,
            last: None,
            gen: SESSIONS.fetch_add(1 << 32, Ordering::Relaxed),
        }
    }

    /// RAM, to read.
    #[inline(always)]
    pub fn mem(&self) -> &PhysMem {
        self.mem
    }

    /// The CPU, to read (its registers, counters and TLB: reading changes nothing the
    /// session remembers).
    #[inline(always)]
    pub fn cpu(&self) -> &Cpu {
        self.cpu
    }

    /// The CPU and RAM for anything else: what the last step found is forgotten.
    #[inline(always)]
    pub fn parts(&mut self) -> (&mut Cpu, &mut PhysMem) {
        self.forget();
        (&mut *self.cpu, &mut *self.mem)
    }

    #[inline(always)]
    fn forget(&mut self) {
        self.last = None;
        self.gen = self.gen.wrapping_add(1);
    }

    /// [`Cpu::translate_unmapped`] on the session (a user access: see the [module
    /// docs](self)).
    #[inline(always)]
    pub fn translate_unmapped(
        &mut self,
        va: VirtAddr,
        access: Access,
    ) -> Result<PhysAddr, AccessError> {
        self.user_access(va, |c, mem| c.translate_unmapped(mem, va, access))
    }

    /// [`Cpu::translate_refault`] on the session (see [`Self::translate_unmapped`]).
    #[inline(always)]
    pub fn translate_refault(
        &mut self,
        va: VirtAddr,
        access: Access,
    ) -> Result<PhysAddr, AccessError> {
        self.user_access(va, |c, mem| c.translate_refault(mem, va, access))
    }

    /// The translation `f` of `va` on the CPU and RAM; then the last step forgotten unless
    /// the access cannot have changed what it found.
    #[inline(always)]
    fn user_access<R>(&mut self, va: VirtAddr, f: impl FnOnce(&mut Cpu, &mut PhysMem) -> R) -> R {
        let r = f(self.cpu, self.mem);
        if let Some(l) = self.last {
            if !self.cpu.slot_apart(l.page, va.as_u64()) {
                self.forget();
            }
        }
        r
    }

    /// Whether `t` is for the step the session remembers.
    #[inline(always)]
    pub fn remembers(&self, t: Again) -> bool {
        t.gen == self.gen
    }

    /// A ticket for repeating the last step, when the session remembers it: a step with the
    /// same slot page, PTE address, PTE value and format (any entry of the page), taken by
    /// [`Self::read_again`] or [`Self::write_again`].
    #[inline(always)]
    pub fn again<const F: u8>(&self) -> Option<Again> {
        let l = self.last.filter(|l| l.format == F)?;
        Some(Again {
            gen: self.gen,
            base: l.base,
            size: Cpu::slot_entry_size::<F>(),
            write: self.cpu.slot_allows::<1>(l.bits),
        })
    }

    /// [`Self::read_invlpg`] of the entry at offset `off` in the page of the step `t` was
    /// issued for, `size` bytes: `None`, having changed nothing, where `t` is not for the
    /// remembered step, the size is not the step's, the load fails or `keep` refuses.
    #[inline(always)]
    pub fn read_again(
        &mut self,
        t: Again,
        off: u64,
        size: u8,
        keep: impl FnOnce(u64) -> bool,
    ) -> Option<u64> {
        debug_assert!(off < 0x1000, "an offset in the slot's page");
        if t.gen != self.gen || size != t.size {
            return None;
        }
        let pa = (t.base | (off & 0xfff)) & !(u64::from(size) - 1);
        let v = self.mem.hw_read_entry(pa, size).ok()?;
        if !keep(v) {
            return None;
        }
        self.cpu.slot_count();
        Some(v)
    }

    /// [`Self::read_again`] for the write of `v`: `false`, having changed nothing, where
    /// the repeat does not apply.
    #[inline(always)]
    pub fn write_again(&mut self, t: Again, off: u64, size: u8, v: u64) -> bool {
        debug_assert!(off < 0x1000, "an offset in the slot's page");
        if t.gen != self.gen || size != t.size || !t.write {
            return false;
        }
        let pa = (t.base | (off & 0xfff)) & !(u64::from(size) - 1);
        if self.mem.hw_write_entry(pa, size, v).is_err() {
            return false;
        }
        self.cpu.slot_count();
        true
    }

    /// A kernel read of the page-table entry (format `F`'s size) at `lin` through a kmap
    /// slot that the kernel mapped just before and unmaps just after (`kmap_atomic`, the
    /// read, `kunmap_atomic` with its INVLPG), as one step: the translation
    /// [`Cpu::translate`] makes (the usual miss of a slot, whose entry the last unmap's
    /// INVLPG took: the walk, the refill of the noted slot), the load, and
    /// [`Cpu::invlpg_noted`], leaving the TLB, RAM and the counters exactly as the three
    /// do. `pte_pa` and `pte` are where the slot's PTE sits and what it holds between the
    /// map and the unmap (the kernel's stores of it change nothing the CPU caches). `None`,
    /// having changed nothing, where the step does not apply (paging is not in format `F`,
    /// the walk or the TLB is not the usual one, the load fails) or `keep` refuses the
    /// entry read: the caller then takes the three steps.
    #[inline(always)]
    pub fn read_invlpg<const F: u8>(
        &mut self,
        lin: u64,
        pte_pa: u64,
        pte: u64,
        keep: impl FnOnce(u64) -> bool,
    ) -> Option<u64> {
        let (base, b, again) = self.walked::<F, 0>(lin, pte_pa, pte)?;
        let size = Cpu::slot_entry_size::<F>();
        let pa = (base | (lin & 0xfff)) & !(u64::from(size) - 1);
        // The slot's own PTE read through the slot holds `pte`, not what RAM holds now.
        if pa == pte_pa {
            return None;
        }
        let v = self.mem.hw_read_entry(pa, size).ok()?;
        if !keep(v) {
            return None;
        }
        self.done::<F>(again, lin, pte_pa, pte, base, b);
        Some(v)
    }

    /// [`Self::read_invlpg`] for a kernel write of `v`: `false`, having changed nothing,
    /// where the step does not apply.
    #[inline(always)]
    pub fn write_invlpg<const F: u8>(&mut self, lin: u64, pte_pa: u64, pte: u64, v: u64) -> bool {
        let Some((base, b, again)) = self.walked::<F, 1>(lin, pte_pa, pte) else {
            return false;
        };
        let size = Cpu::slot_entry_size::<F>();
        let pa = (base | (lin & 0xfff)) & !(u64::from(size) - 1);
        // A write of the slot's own PTE through the slot is undone by the unmap's clear.
        if pa == pte_pa || self.mem.hw_write_entry(pa, size, v).is_err() {
            return false;
        }
        self.done::<F>(again, lin, pte_pa, pte, base, b);
        true
    }

    /// The entry's page base and packed bits for an access of fast tag `K`, and whether
    /// they are the last step's: from that step when its slot page, PTE and format are
    /// these, else from the CPU's walk and TLB test.
    #[inline(always)]
    fn walked<const F: u8, const K: usize>(
        &mut self,
        lin: u64,
        pte_pa: u64,
        pte: u64,
    ) -> Option<(u64, u64, bool)> {
        if let Some(l) = self.last {
            if l.page == lin & !0xfff && l.pte_pa == pte_pa && l.pte == pte && l.format == F {
                return self
                    .cpu
                    .slot_allows::<K>(l.bits)
                    .then_some((l.base, l.bits, true));
            }
        }
        let (base, b) = self.cpu.slot_walk::<F, K>(self.mem, lin, pte_pa, pte)?;
        Some((base, b, false))
    }

    /// A step's end: the counts, and (a new walk) the TLB's refill and INVLPG, remembered
    /// unless the entry's page is the directory's or the slot PTE's (a write there could
    /// change the next walk).
    #[inline(always)]
    fn done<const F: u8>(
        &mut self,
        again: bool,
        lin: u64,
        pte_pa: u64,
        pte: u64,
        base: u64,
        b: u64,
    ) {
        if again {
            self.cpu.slot_count();
            return;
        }
        self.cpu.slot_flush(lin, base, b);
        // Under 4-level paging the walk reads three directory pages, of which only the
        // root is known here: such a step is not remembered (no 64-bit kernel kmaps).
        let aliased = F == Format::FourLevel as u8
            || base == self.cpu.slot_dir_page::<F>(lin)
            || base == pte_pa & !0xfff;
        self.gen = self.gen.wrapping_add(1);
        self.last = (!aliased).then_some(LastStep {
            page: lin & !0xfff,
            pte_pa,
            pte,
            format: F,
            base,
            bits: b,
        });
    }
}
