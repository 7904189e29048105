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

use crate::{Cpu, PhysMem};

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

/// A CPU and its RAM, borrowed for a run of slot steps ([module docs](self)).
pub struct SlotSession<'a> {
    cpu: &'a mut Cpu,
    mem: &'a mut PhysMem,
    last: Option<LastStep>,
}

impl<'a> SlotSession<'a> {
    pub fn new(cpu: &'a mut Cpu, mem: &'a mut PhysMem) -> Self {
        SlotSession {
            cpu,
            mem,
            last: None,
        }
    }

    /// RAM, to read.
    #[inline(always)]
    pub fn mem(&self) -> &PhysMem {
        self.mem
    }

    /// The CPU and RAM for anything else: what the last step found is forgotten.
    #[inline(always)]
    pub fn parts(&mut self) -> (&mut Cpu, &mut PhysMem) {
        self.last = None;
        (&mut *self.cpu, &mut *self.mem)
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
        let aliased = base == self.cpu.slot_dir_page::<F>(lin) || base == pte_pa & !0xfff;
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
