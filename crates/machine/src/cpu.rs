//! One CPU: control registers, PDPTE registers, TLB and event counters.
//!
//! The control registers decide how the MMU reads the tables (CR0.PG, CR4.PAE, EFER.LME
//! pick the format; CR4.PSE, CR4.PGE, CR0.WP and EFER.NXE tune it), and writing them is
//! what invalidates cached translations, so register writes and TLB maintenance live
//! together here with the SDM's rules: a CR3 write drops non-global translations and, with
//! PAE, reloads the four PDPTE registers (#GP if one has reserved bits); changing CR4.PGE
//! or the paging mode drops everything; INVLPG drops one page. Every access goes
//! [`Cpu::translate`] → TLB → (on a miss) the page walk of [`crate::mmu`].
//!
//! The hit path is kept apart from everything else: [`Cpu::translate`] is an inlined tag
//! compare in the TLB, and the rest (rights refused by the cached entry, the D-bit re-walk,
//! misses, faults, paging off) is the out-of-line slow path. What the walk needs from the
//! registers (reserved-bit masks, NX, WP, PDPTE registers) is recomputed into a
//! [`PagingMode`] whenever CR0, CR3, CR4 or EFER is written, not at every walk.

use crate::addr::{PhysAddr, VirtAddr};
use crate::mmu::{
    self, Access, AccessError, AccessKind, PagingMode, Privilege, Translation, WalkParams,
};
use crate::paging::reserved::{reserved_bits, ReservedCtx};
use crate::paging::Format;
use crate::physmem::{BusError, PhysMem};
use crate::tlb::{QuickCounts, Refill, Tlb, TlbEntry, TlbGeometry};
use bitflags::bitflags;

#[path = "stream.rs"]
mod stream;

#[cfg(test)]
#[path = "cpu_quick_tests.rs"]
mod quick_tests;

bitflags! {
    /// CR0.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct Cr0: u32 {
        /// Protection enable.
        const PE = 1 << 0;
        const MP = 1 << 1;
        const EM = 1 << 2;
        const TS = 1 << 3;
        /// Extension type (hard-wired to 1 since the i486).
        const ET = 1 << 4;
        const NE = 1 << 5;
        /// Write protect: supervisor writes honour R/W.
        const WP = 1 << 16;
        const AM = 1 << 18;
        /// Not write-through.
        const NW = 1 << 29;
        /// Cache disable.
        const CD = 1 << 30;
        /// Paging.
        const PG = 1 << 31;
    }
}

bitflags! {
    /// CR4 (the bits a 32-bit CPU of the PAE era has).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct Cr4: u32 {
        const VME = 1 << 0;
        const PVI = 1 << 1;
        const TSD = 1 << 2;
        const DE = 1 << 3;
        /// 4 MiB pages in 2-level paging.
        const PSE = 1 << 4;
        /// PAE paging (and a prerequisite of 4-level paging).
        const PAE = 1 << 5;
        const MCE = 1 << 6;
        /// Global pages.
        const PGE = 1 << 7;
        const PCE = 1 << 8;
        const OSFXSR = 1 << 9;
        const OSXMMEXCPT = 1 << 10;
    }
}

bitflags! {
    /// IA32_EFER (MSR 0xC000_0080).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct Efer: u64 {
        const SCE = 1 << 0;
        /// Long mode enable.
        const LME = 1 << 8;
        /// Long mode active (read-only, set by the CPU when paging turns on with LME).
        const LMA = 1 << 10;
        /// Execute-disable (NX) enable.
        const NXE = 1 << 11;
    }
}

/// What the CPU model supports (CPUID).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub struct CpuFeatures {
    pub pse: bool,
    pub pse36: bool,
    pub pae: bool,
    pub pge: bool,
    pub pat: bool,
    /// XD/NX (EFER.NXE may be set).
    pub nx: bool,
    /// Long mode (EFER.LME may be set).
    pub lm: bool,
    /// 1 GiB pages in 4-level paging.
    pub page1gb: bool,
    /// MAXPHYADDR.
    pub phys_bits: u8,
    /// The TLB's geometry (CPUID leaf 2 on a real CPU).
    pub tlb: TlbGeometry,
}

impl CpuFeatures {
    /// QEMU's `-cpu qemu32,+pse36,+nx`, the CPU of the reference boots: PSE, PSE-36, PAE,
    /// PGE, PAT, NX; no long mode; 36 physical address bits.
    pub const QEMU32_PSE36_NX: CpuFeatures = CpuFeatures {
        pse: true,
        pse36: true,
        pae: true,
        pge: true,
        pat: true,
        nx: true,
        lm: false,
        page1gb: false,
        phys_bits: 36,
        tlb: TlbGeometry::Unbounded,
    };

    /// A generic x86-64 CPU with 1 GiB pages and 40 physical bits, for 4-level comparisons.
    pub const X86_64: CpuFeatures = CpuFeatures {
        pse: true,
        pse36: true,
        pae: true,
        pge: true,
        pat: true,
        nx: true,
        lm: true,
        page1gb: true,
        phys_bits: 40,
        tlb: TlbGeometry::Unbounded,
    };

    /// The same CPU with a TLB of `tlb` geometry.
    pub const fn with_tlb(self, tlb: TlbGeometry) -> Self {
        CpuFeatures { tlb, ..self }
    }
}

impl Default for CpuFeatures {
    fn default() -> Self {
        CpuFeatures::QEMU32_PSE36_NX
    }
}

/// The architectural registers that matter to paging.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Registers {
    pub cr0: Cr0,
    /// Linear address of the last page fault.
    pub cr2: u64,
    pub cr3: u64,
    pub cr4: Cr4,
    pub efer: Efer,
    /// PAE's internal PDPTE registers, loaded from the PDPT when CR3 is written.
    pub pdptes: [u64; 4],
}

impl Registers {
    /// State after reset: CR0 = 0x6000_0010 (CD, NW, ET), everything else zero.
    pub const RESET: Registers = Registers {
        cr0: Cr0::from_bits_retain(0x6000_0010),
        cr2: 0,
        cr3: 0,
        cr4: Cr4::empty(),
        efer: Efer::empty(),
        pdptes: [0; 4],
    };
}

/// Paging-relevant events on one CPU.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct CpuCounters {
    /// Page walks (TLB misses, plus re-walks to set D on a write through a clean entry).
    pub walks: u64,
    pub tlb_hits: u64,
    pub tlb_misses: u64,
    pub invlpg: u64,
    /// CR3 writes (each drops the non-global translations).
    pub cr3_reloads: u64,
    /// Flushes of the whole TLB including global entries.
    pub full_flushes: u64,
    pub page_faults: u64,
    /// TLB entries lost to capacity (always 0 with the unbounded geometry).
    pub tlb_evictions: u64,
}

/// A control-register write the CPU refuses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CpuError {
    /// #GP(0): the value is invalid for the register or the current mode.
    #[error("general protection fault: {0}")]
    GeneralProtection(&'static str),
    /// Loading the PDPTE registers read memory that is not RAM.
    #[error(transparent)]
    Bus(BusError),
    #[error("no CPU {0}")]
    NoSuchCpu(usize),
}

/// One processor.
#[derive(Debug)]
pub struct Cpu {
    pub id: usize,
    pub features: CpuFeatures,
    regs: Registers,
    tlb: Tlb,
    /// The counters, except the quick misses' ...
    counters: CpuCounters,
    /// ... and the quick misses' (each one a TLB miss and a walk: one increment instead of
    /// two), which [`Self::counters`] adds in.
    quick_counts: QuickCounts,
    /// What the walk needs from the registers, meaningful while `paging` (else that of
    /// 2-level paging with the current registers): not an `Option`, so that the quick miss,
    /// installed only while paging is on, reads it without a test.
    mode: PagingMode,
    /// CR0.PG: `mode` is the current one.
    paging: bool,
    /// Where the miss path's walk leaves its error (overwritten by each failing walk).
    walk_err: mmu::ErrSlot,
    /// The slow path of [`Self::translate`] for the current paging format, chosen at each
    /// control-register write so that a miss does not dispatch on the format again.
    slow: SlowPath,
    /// The quick miss tried before `slow` (see [`QuickPath`]), chosen with it, one per
    /// fast tag ([`Access::fast_tag`]): a fetch has none and goes straight to `slow`.
    quick: [QuickPath; 4],
    /// The same without the look at the last INVLPG's slot, for the retry of a faulting
    /// access ([`Self::translate_refault`]).
    refill: [QuickPath; 4],
}

/// [`Cpu::translate`]'s slow path for one paging format (or paging off): the physical
/// address, or the error left in [`Cpu::walk_err`] (so the result fits in registers).
type SlowPath = fn(&mut Cpu, &mut PhysMem, VirtAddr, SlowAccess) -> Result<u64, mmu::Failed>;

/// [`Cpu::translate`]'s first try after a TLB miss of an access of one fast tag (one copy
/// per tag, so the rights test is specialised): the usual miss, with nothing to update and
/// nothing to report, filled without touching anything else; `None` (changing nothing)
/// sends the access to the [`SlowPath`]. The caller keeps its arguments for that call, so
/// the quick path has every register to itself.
type QuickPath = fn(&mut Cpu, &PhysMem, u64) -> Option<u64>;

/// The access as [`SlowPath`] gets it: one register, which the inlined caller knows as a
/// constant. Bits 8-9 are the [`AccessKind`], bit 16 user mode.
#[derive(Clone, Copy, Debug)]
struct SlowAccess(u32);

impl SlowAccess {
    #[inline(always)]
    const fn new(access: Access) -> Self {
        SlowAccess((access.kind as u32) << 8 | (access.is_user() as u32) << 16)
    }

    #[inline(always)]
    const fn access(self) -> Access {
        let kind = match (self.0 >> 8) & 3 {
            0 => AccessKind::Read,
            1 => AccessKind::Write,
            _ => AccessKind::Execute,
        };
        let privilege = if self.0 >> 16 & 1 != 0 {
            Privilege::User
        } else {
            Privilege::Supervisor
        };
        Access::new(kind, privilege)
    }
}

/// The format CR0/CR4/EFER select, or `None` with paging off.
fn paging_format(cr0: Cr0, cr4: Cr4, efer: Efer) -> Option<Format> {
    if !cr0.contains(Cr0::PG) {
        None
    } else if !cr4.contains(Cr4::PAE) {
        Some(Format::TwoLevel)
    } else if efer.contains(Efer::LMA) {
        Some(Format::FourLevel)
    } else {
        Some(Format::Pae)
    }
}

/// The reserved-bit context of a CPU with `features` and `efer`.
fn reserved_ctx(features: &CpuFeatures, efer: Efer) -> ReservedCtx {
    ReservedCtx {
        phys_bits: features.phys_bits,
        nxe: efer.contains(Efer::NXE),
        pse36: features.pse36,
        pat: features.pat,
        page1gb: features.page1gb,
    }
}

/// What the walk of `format` needs from `regs` on a CPU with `features`.
fn walk_params(regs: &Registers, features: &CpuFeatures, format: Format) -> WalkParams {
    WalkParams {
        format,
        cr3: regs.cr3,
        pdptes: regs.pdptes,
        cr4_pse: regs.cr4.contains(Cr4::PSE),
        cr4_pge: regs.cr4.contains(Cr4::PGE),
        cr0_wp: regs.cr0.contains(Cr0::WP),
        reserved: reserved_ctx(features, regs.efer),
    }
}

impl Cpu {
    /// A CPU in its reset state: paging off, empty TLB.
    pub fn new(id: usize, features: CpuFeatures) -> Self {
        Cpu {
            id,
            features,
            regs: Registers::RESET,
            tlb: Tlb::with_geometry(features.tlb, Self::tlb_seed(id)),
            counters: CpuCounters::default(),
            quick_counts: QuickCounts::default(),
            mode: PagingMode::new(&walk_params(&Registers::RESET, &features, Format::TwoLevel)),
            paging: false,
            walk_err: None,
            slow: Self::slow_path(None),
            quick: Self::quick_path(None),
            refill: Self::refill_path(None),
        }
    }

    /// Each CPU's TLB replaces with its own (fixed) pseudo-random sequence.
    fn tlb_seed(id: usize) -> u64 {
        0x9e37_79b9_7f4a_7c15u64.wrapping_mul(id as u64 + 1)
    }

    /// Replace the TLB with an empty one of `geometry` (as if flushed).
    pub fn set_tlb_geometry(&mut self, geometry: TlbGeometry) {
        self.features.tlb = geometry;
        self.tlb = Tlb::with_geometry(geometry, Self::tlb_seed(self.id));
        self.refresh_mode();
    }

    /// Recompute the [`PagingMode`] after a register write and tell the TLB.
    fn refresh_mode(&mut self) {
        let format = paging_format(self.regs.cr0, self.regs.cr4, self.regs.efer);
        self.paging = format.is_some();
        self.mode = PagingMode::new(&self.walk_params_for(format.unwrap_or(Format::TwoLevel)));
        self.slow = Self::slow_path(format);
        self.quick = Self::quick_path(format);
        self.refill = Self::refill_path(format);
        self.tlb.set_mode(format, self.regs.cr0.contains(Cr0::WP));
    }

    pub fn regs(&self) -> &Registers {
        &self.regs
    }

    pub fn tlb(&self) -> &Tlb {
        &self.tlb
    }

    pub fn counters(&self) -> CpuCounters {
        let q = self.quick_counts;
        CpuCounters {
            walks: self.counters.walks + q.misses,
            tlb_misses: self.counters.tlb_misses + q.misses,
            tlb_evictions: self.counters.tlb_evictions + q.evictions,
            ..self.counters
        }
    }

    pub fn reset_counters(&mut self) {
        self.counters = CpuCounters::default();
        self.quick_counts = QuickCounts::default();
    }

    /// The paging format in use, `None` with paging off.
    pub fn paging_format(&self) -> Option<Format> {
        self.paging_mode().map(PagingMode::format)
    }

    /// The precomputed walk of the current registers, `None` with paging off.
    pub fn paging_mode(&self) -> Option<&PagingMode> {
        self.paging.then_some(&self.mode)
    }

    fn reserved_ctx(&self, efer: Efer) -> ReservedCtx {
        reserved_ctx(&self.features, efer)
    }

    /// What the page walker needs, `None` with paging off.
    pub fn walk_params(&self) -> Option<WalkParams> {
        self.paging_mode().map(|m| m.params)
    }

    /// Read the four PDPTEs at `cr3` as the PDPTE-register load does: #GP if a present one
    /// has a reserved bit set.
    fn load_pdptes(&self, mem: &PhysMem, cr3: u64, efer: Efer) -> Result<[u64; 4], CpuError> {
        let base = cr3 & 0xffff_ffe0;
        let rsvd = reserved_bits(Format::Pae.top_level(), false, &self.reserved_ctx(efer));
        let mut out = [0u64; 4];
        for (i, slot) in out.iter_mut().enumerate() {
            let e = mem
                .hw_read_u64(PhysAddr::new(base + 8 * i as u64))
                .map_err(CpuError::Bus)?;
            if e & 1 != 0 && e & rsvd != 0 {
                return Err(CpuError::GeneralProtection("PDPTE with reserved bits set"));
            }
            *slot = e;
        }
        Ok(out)
    }

    fn full_flush(&mut self) {
        self.tlb.flush_all();
        self.counters.full_flushes += 1;
    }

    /// MOV to CR0. Bits CR0 does not have are ignored; ET reads as 1.
    pub fn write_cr0(&mut self, mem: &PhysMem, value: Cr0) -> Result<(), CpuError> {
        let new = Cr0::from_bits_truncate(value.bits()) | Cr0::ET;
        let old = self.regs.cr0;
        if new.contains(Cr0::PG) && !new.contains(Cr0::PE) {
            return Err(CpuError::GeneralProtection("CR0.PG without CR0.PE"));
        }
        if new.contains(Cr0::NW) && !new.contains(Cr0::CD) {
            return Err(CpuError::GeneralProtection("CR0.NW without CR0.CD"));
        }
        let pg_on = new.contains(Cr0::PG) && !old.contains(Cr0::PG);
        let pg_off = !new.contains(Cr0::PG) && old.contains(Cr0::PG);
        let mut efer = self.regs.efer;
        if pg_on && efer.contains(Efer::LME) {
            if !self.regs.cr4.contains(Cr4::PAE) {
                return Err(CpuError::GeneralProtection("long mode needs CR4.PAE"));
            }
            efer |= Efer::LMA;
        }
        if pg_off {
            efer.remove(Efer::LMA);
        }
        let format = paging_format(new, self.regs.cr4, efer);
        let changed = (old ^ new) & (Cr0::CD | Cr0::NW | Cr0::PG);
        let pdptes = if format == Some(Format::Pae) && !changed.is_empty() {
            self.load_pdptes(mem, self.regs.cr3, efer)?
        } else {
            self.regs.pdptes
        };
        self.regs.cr0 = new;
        self.regs.efer = efer;
        self.regs.pdptes = pdptes;
        if pg_on || pg_off {
            self.full_flush();
        }
        self.refresh_mode();
        Ok(())
    }

    /// MOV to CR3: with PAE paging, load the PDPTE registers from the new PDPT; drop all
    /// non-global translations.
    pub fn write_cr3(&mut self, mem: &PhysMem, value: u64) -> Result<(), CpuError> {
        match self.paging_format() {
            Some(Format::FourLevel) => {
                if value >> self.features.phys_bits != 0 {
                    return Err(CpuError::GeneralProtection("CR3 reserved bits"));
                }
            }
            _ => {
                if value > u64::from(u32::MAX) {
                    return Err(CpuError::GeneralProtection(
                        "CR3 is 32 bits wide outside long mode",
                    ));
                }
            }
        }
        if self.paging_format() == Some(Format::Pae) {
            self.regs.pdptes = self.load_pdptes(mem, value, self.regs.efer)?;
        }
        self.regs.cr3 = value;
        self.tlb.flush_non_global();
        self.counters.cr3_reloads += 1;
        self.mode.set_cr3(value, self.regs.pdptes);
        Ok(())
    }

    /// MOV to CR4. Setting a feature the CPU lacks is #GP. Changing PGE or PAE drops every
    /// translation; with PAE paging, changing PAE, PGE or PSE reloads the PDPTE registers.
    pub fn write_cr4(&mut self, mem: &PhysMem, value: Cr4) -> Result<(), CpuError> {
        if value.bits() & !Cr4::all().bits() != 0 {
            return Err(CpuError::GeneralProtection("unknown CR4 bit"));
        }
        let unsupported = [
            (Cr4::PSE, self.features.pse),
            (Cr4::PAE, self.features.pae),
            (Cr4::PGE, self.features.pge),
        ];
        if unsupported
            .iter()
            .any(|&(bit, has)| value.contains(bit) && !has)
        {
            return Err(CpuError::GeneralProtection(
                "CR4 feature the CPU does not have",
            ));
        }
        if self.regs.efer.contains(Efer::LMA) && !value.contains(Cr4::PAE) {
            return Err(CpuError::GeneralProtection("clearing CR4.PAE in long mode"));
        }
        let old = self.regs.cr4;
        let changed = old ^ value;
        let format = paging_format(self.regs.cr0, value, self.regs.efer);
        let pdptes =
            if format == Some(Format::Pae) && changed.intersects(Cr4::PAE | Cr4::PGE | Cr4::PSE) {
                self.load_pdptes(mem, self.regs.cr3, self.regs.efer)?
            } else {
                self.regs.pdptes
            };
        self.regs.cr4 = value;
        self.regs.pdptes = pdptes;
        if changed.intersects(Cr4::PGE | Cr4::PAE) {
            self.full_flush();
        }
        self.refresh_mode();
        Ok(())
    }

    /// WRMSR IA32_EFER. LMA is read-only; LME can change only with paging off.
    pub fn write_efer(&mut self, value: Efer) -> Result<(), CpuError> {
        if value.bits() & !Efer::all().bits() != 0 {
            return Err(CpuError::GeneralProtection("unknown EFER bit"));
        }
        if value.contains(Efer::NXE) && !self.features.nx {
            return Err(CpuError::GeneralProtection("EFER.NXE without NX support"));
        }
        if value.contains(Efer::LME) && !self.features.lm {
            return Err(CpuError::GeneralProtection("EFER.LME without long mode"));
        }
        let old = self.regs.efer;
        if (old ^ value).contains(Efer::LME) && self.regs.cr0.contains(Cr0::PG) {
            return Err(CpuError::GeneralProtection(
                "EFER.LME change with paging on",
            ));
        }
        // The TLB keeps the raw NX of each translation and applies NXE at access time, so
        // toggling NXE needs no flush.
        self.regs.efer = (value - Efer::LMA) | (old & Efer::LMA);
        self.refresh_mode();
        Ok(())
    }

    /// INVLPG: drop the translation of the page containing `va`, global or not, of
    /// whatever page size.
    #[inline(always)]
    pub fn invlpg(&mut self, va: VirtAddr) {
        self.tlb.invalidate_page(va.as_u64());
        self.counters.invlpg += 1;
    }

    /// [`Self::invlpg`] of a page whose entry is most likely where the last INVLPG left
    /// its note (a kmap slot's, flushed at every unmap and refilled in between:
    /// [`Tlb::invalidate_noted`]): the same TLB and counters.
    #[inline(always)]
    pub fn invlpg_noted(&mut self, va: VirtAddr) {
        self.tlb.invalidate_noted(va.as_u64());
        self.counters.invlpg += 1;
    }

    // The slot step's parts ([`crate::slot`]): the walk and the TLB's test, the end state
    // of the refill and its INVLPG, the counts.

    /// The entry size of a slot step's access: a page-table entry of format `F`.
    pub(crate) const fn slot_entry_size<const F: u8>() -> u8 {
        if F == Format::TwoLevel as u8 {
            4
        } else {
            8
        }
    }

    /// The walk and the TLB test of a slot step for an access of fast tag `K`: the entry's
    /// page base and packed bits, where the quick miss would refill the noted slot.
    #[inline(always)]
    pub(crate) fn slot_walk<const F: u8, const K: usize>(
        &mut self,
        mem: &PhysMem,
        lin: u64,
        pte_pa: u64,
        pte: u64,
    ) -> Option<(u64, u64)> {
        if !self.paging || self.mode.params.format as u8 != F {
            return None;
        }
        let (pde, pte) = self.mode.walk_slot::<F>(mem, lin, pte_pa, pte)?;
        let (base, b) = self.mode.pack_quick(pde, pte);
        self.tlb.slot_refills::<K>(lin, b).then_some((base, b))
    }

    /// The TLB and counters after a slot step's refill and INVLPG.
    #[inline(always)]
    pub(crate) fn slot_flush(&mut self, lin: u64, base: u64, b: u64) {
        self.tlb.slot_refill_flush(lin, base, b);
        self.slot_count();
    }

    /// A slot step's counts: its miss (a walk) and its INVLPG.
    #[inline(always)]
    pub(crate) fn slot_count(&mut self) {
        self.quick_counts.misses += 1;
        self.counters.invlpg += 1;
    }

    /// See [`Tlb::slot_apart`].
    #[inline(always)]
    pub(crate) fn slot_apart(&self, slot: u64, lin: u64) -> bool {
        self.tlb.slot_apart(slot, lin)
    }

    /// Whether an entry with packed bits `b` lets an access of fast tag `K` through (see
    /// [`Tlb::slot_refills`]).
    #[inline(always)]
    pub(crate) fn slot_allows<const K: usize>(&self, b: u64) -> bool {
        self.tlb.allows::<K>(b)
    }

    /// The page of the directory a slot step's walk of `lin` reads (see
    /// [`PagingMode::slot_dir_page`]).
    #[inline(always)]
    pub(crate) fn slot_dir_page<const F: u8>(&self, lin: u64) -> u64 {
        self.mode.slot_dir_page::<F>(lin)
    }

    /// Drop every translation including global ones: what Linux's `__flush_tlb_all` gets
    /// from toggling CR4.PGE. With PAE paging those CR4 writes also reload the PDPTE
    /// registers, so this does too.
    pub fn flush_all(&mut self, mem: &PhysMem) -> Result<(), CpuError> {
        if self.paging_format() == Some(Format::Pae) {
            self.regs.pdptes = self.load_pdptes(mem, self.regs.cr3, self.regs.efer)?;
        }
        self.full_flush();
        self.refresh_mode();
        Ok(())
    }

    /// The TLB's translation for `va`, if it holds one (no walk, no side effects).
    pub fn tlb_lookup(&self, va: VirtAddr) -> Option<TlbEntry> {
        self.tlb.lookup(va.as_u64())
    }

    /// What a fresh walk of the tables in memory would give now, ignoring the TLB and
    /// changing nothing (no A/D updates). `None` with paging off.
    pub fn probe(
        &self,
        mem: &PhysMem,
        va: VirtAddr,
        access: Access,
    ) -> Option<Result<Translation, AccessError>> {
        Some(self.paging_mode()?.peek(mem, va, access))
    }

    /// The debugger's walk of `va` as this CPU would walk it with CR3 = `cr3` (PDPTEs
    /// loaded from there under PAE): no TLB, no A/D updates, no counters. `None` with
    /// paging off or a PDPT that does not load.
    pub fn probe_with_cr3(
        &self,
        mem: &PhysMem,
        cr3: u64,
        va: VirtAddr,
        access: Access,
    ) -> Option<Result<Translation, AccessError>> {
        let format = self.paging_format()?;
        let mut p = self.walk_params_for(format);
        p.cr3 = cr3;
        if format == Format::Pae {
            p.pdptes = self.load_pdptes(mem, cr3, self.regs.efer).ok()?;
        }
        Some(mmu::peek(&p, mem, va, access))
    }

    /// Translate `va` for `access`: TLB first, page walk on a miss. A page fault sets CR2
    /// and drops any TLB entry for the page (as the SDM specifies), so retrying after
    /// fixing the tables walks afresh.
    ///
    /// This is the hit path, inlined into callers: a tag compare in the TLB. Everything
    /// else is the quick miss, then the slow path, of the current format
    /// (`Self::quick_path`, `Self::slow_path`).
    #[inline(always)]
    pub fn translate(
        &mut self,
        mem: &mut PhysMem,
        va: VirtAddr,
        access: Access,
    ) -> Result<PhysAddr, AccessError> {
        self.translate_via::<false>(mem, va, access)
    }

    /// [`Self::translate`] with the quick misses of `quick`, or (`REFILL`) of `refill`.
    #[inline(always)]
    fn translate_via<const REFILL: bool>(
        &mut self,
        mem: &mut PhysMem,
        va: VirtAddr,
        access: Access,
    ) -> Result<PhysAddr, AccessError> {
        let tag = access.fast_tag();
        if let Some(tag) = tag {
            if let Some(pa) = self.tlb.hit(va.as_u64(), tag) {
                self.counters.tlb_hits += 1;
                return Ok(PhysAddr::new(pa));
            }
        }
        // Cold, so that the hit is the straight-line path of the inlined callers.
        std::hint::cold_path();
        let slow_access = SlowAccess::new(access);
        // Inside the span of the large pages (where the hit path has just probed them, and
        // everything once the spill holds entries) the page may be cached elsewhere than
        // the 4 KiB array: the slow path's lookup finds it. The test is the hit path's own,
        // which the compiler reuses. A fetch has no quick miss (no fast tag).
        if let Some(tag) = tag {
            if !self.tlb.near_big(va.as_u64()) {
                let quick = if REFILL {
                    self.refill[tag & 3]
                } else {
                    self.quick[tag & 3]
                };
                if let Some(pa) = quick(self, mem, va.as_u64()) {
                    return Ok(PhysAddr::new(pa));
                }
            }
        }
        match (self.slow)(self, mem, va, slow_access) {
            Ok(pa) => Ok(PhysAddr::new(pa)),
            Err(failed) => Err(failed.error(&self.walk_err)),
        }
    }

    /// Load the naturally aligned `size`-byte (4 or 8) entry at `va`, a kernel read: one
    /// translation (TLB, walk on a miss) and one host load (an aligned entry cannot cross
    /// a page).
    #[inline(always)]
    pub fn read_virt_entry(
        &mut self,
        mem: &mut PhysMem,
        va: VirtAddr,
        size: u8,
    ) -> Result<u64, AccessError> {
        let pa = self.translate(mem, va, Access::KERNEL_READ)?;
        Ok(mem.hw_read_entry(pa.as_u64() & !(u64::from(size) - 1), size)?)
    }

    /// Store the naturally aligned `size`-byte entry at `va`, a kernel write, as
    /// [`Self::read_virt_entry`].
    #[inline(always)]
    pub fn write_virt_entry(
        &mut self,
        mem: &mut PhysMem,
        va: VirtAddr,
        size: u8,
        v: u64,
    ) -> Result<(), AccessError> {
        let pa = self.translate(mem, va, Access::KERNEL_WRITE)?;
        Ok(mem.hw_write_entry(pa.as_u64() & !(u64::from(size) - 1), size, v)?)
    }

    /// The slow paths' result in their register-sized form.
    #[inline(always)]
    fn slow_result(&mut self, r: Result<PhysAddr, AccessError>) -> Result<u64, mmu::Failed> {
        match r {
            Ok(pa) => Ok(pa.as_u64()),
            Err(e) => Err(self.slow_failed(e)),
        }
    }

    #[cold]
    #[inline(never)]
    fn slow_failed(&mut self, e: AccessError) -> mmu::Failed {
        mmu::Failed::put(&mut self.walk_err, e)
    }

    /// The slow path for `format`: the TLB did not let the access through (paging off, a
    /// bad linear address, a miss, rights the cached entry refuses, a write through a
    /// clean entry, a fetch). One copy of the miss path per format, so that the walk's
    /// result goes straight into the fill, chosen once per control-register write.
    fn slow_path(format: Option<Format>) -> SlowPath {
        match format {
            None => Self::slow_unpaged,
            Some(Format::Pae) => Self::slow_paged::<{ Format::Pae as u8 }>,
            Some(Format::TwoLevel) => Self::slow_paged::<{ Format::TwoLevel as u8 }>,
            Some(Format::FourLevel) => Self::slow_paged::<{ Format::FourLevel as u8 }>,
        }
    }

    /// The quick misses for `format`, per fast tag: every paging format has them, paging
    /// off goes straight to the slow path.
    fn quick_path(format: Option<Format>) -> [QuickPath; 4] {
        const PAE: u8 = Format::Pae as u8;
        const TWO: u8 = Format::TwoLevel as u8;
        const FOUR: u8 = Format::FourLevel as u8;
        match format {
            Some(Format::Pae) => [
                Self::quick_miss::<PAE, 0>,
                Self::quick_miss::<PAE, 1>,
                Self::quick_miss::<PAE, 2>,
                Self::quick_miss::<PAE, 3>,
            ],
            Some(Format::TwoLevel) => [
                Self::quick_miss::<TWO, 0>,
                Self::quick_miss::<TWO, 1>,
                Self::quick_miss::<TWO, 2>,
                Self::quick_miss::<TWO, 3>,
            ],
            Some(Format::FourLevel) => [
                Self::quick_miss::<FOUR, 0>,
                Self::quick_miss::<FOUR, 1>,
                Self::quick_miss::<FOUR, 2>,
                Self::quick_miss::<FOUR, 3>,
            ],
            None => [Self::no_quick_miss; 4],
        }
    }

    /// The quick refills for `format`, per fast tag, as [`Self::quick_path`].
    fn refill_path(format: Option<Format>) -> [QuickPath; 4] {
        const PAE: u8 = Format::Pae as u8;
        const TWO: u8 = Format::TwoLevel as u8;
        const FOUR: u8 = Format::FourLevel as u8;
        match format {
            Some(Format::Pae) => [
                Self::quick_refill::<PAE, 0>,
                Self::quick_refill::<PAE, 1>,
                Self::quick_refill::<PAE, 2>,
                Self::quick_refill::<PAE, 3>,
            ],
            Some(Format::TwoLevel) => [
                Self::quick_refill::<TWO, 0>,
                Self::quick_refill::<TWO, 1>,
                Self::quick_refill::<TWO, 2>,
                Self::quick_refill::<TWO, 3>,
            ],
            Some(Format::FourLevel) => [
                Self::quick_refill::<FOUR, 0>,
                Self::quick_refill::<FOUR, 1>,
                Self::quick_refill::<FOUR, 2>,
                Self::quick_refill::<FOUR, 3>,
            ],
            None => [Self::no_quick_miss; 4],
        }
    }

    fn no_quick_miss(&mut self, _mem: &PhysMem, _lin: u64) -> Option<u64> {
        None
    }

    #[inline(never)]
    fn slow_unpaged(
        &mut self,
        _mem: &mut PhysMem,
        va: VirtAddr,
        _access: SlowAccess,
    ) -> Result<u64, mmu::Failed> {
        let r = mmu::linear(None, va).map(PhysAddr::new);
        self.slow_result(r)
    }

    /// The quick miss of paging format `F` for an access of fast tag `K`: the usual
    /// miss with nothing to update and nothing to report (`Tlb::miss_quick` with
    /// `PagingMode::walk_quick`), which touches nothing until it fills; `None` for
    /// anything else, which [`Self::slow_paged`] then starts again. No calls and no
    /// arguments to keep for a fallback, so the values of the walk and the fill fit in the
    /// scratch registers. Installed only while paging is on, so `mode` is current.
    #[inline(never)]
    fn quick_miss<const F: u8, const K: usize>(&mut self, mem: &PhysMem, lin: u64) -> Option<u64> {
        let mode = &self.mode;
        // The walk refuses linear addresses the format does not translate (above 4 GiB,
        // non-canonical).
        let walk = || mode.walk_quick::<F>(mem, lin);
        let pack = |pde, pte| mode.pack_quick(pde, pte);
        match self
            .tlb
            .miss_quick::<K>(lin, walk, pack, &mut self.quick_counts)
        {
            Refill::Done(pa) => pa,
            Refill::Scan { pde, pte } => {
                // The leaf bits by value: nothing of the mode to keep for this call.
                let leaf_bits = mode.leaf_bits();
                let pack = move |pde, pte| mmu::pack_leaf(leaf_bits, pde, pte);
                self.tlb
                    .quick_scan::<K>(lin, pde, pte, pack, &mut self.quick_counts)
            }
        }
    }

    /// [`Self::quick_miss`] for the retry of an access that faulted: the page is usually
    /// not in its set at all (the fault invalidated it, and the handler's last INVLPG was
    /// of its own kmap slot), so the set is scanned without a look at the noted slot, and
    /// the walk, the scan and the fill or eviction are one function
    /// ([`Tlb::scan_fill`]). The same fills, victims and counts as the quick miss.
    #[inline(never)]
    fn quick_refill<const F: u8, const K: usize>(
        &mut self,
        mem: &PhysMem,
        lin: u64,
    ) -> Option<u64> {
        let mode = &self.mode;
        let (pde, pte) = mode.walk_quick::<F>(mem, lin)?;
        let leaf_bits = mode.leaf_bits();
        let pack = move |pde, pte| mmu::pack_leaf(leaf_bits, pde, pte);
        self.tlb
            .scan_fill::<K>(lin, pde, pte, pack, &mut self.quick_counts)
    }

    /// The slow path of one paging format, one copy per format (chosen at CR0/CR4/EFER
    /// writes), so a miss does not dispatch on the format.
    #[inline(never)]
    fn slow_paged<const F: u8>(
        &mut self,
        mem: &mut PhysMem,
        va: VirtAddr,
        access: SlowAccess,
    ) -> Result<u64, mmu::Failed> {
        let r = self.miss::<F>(mem, va, access.access());
        self.slow_result(r)
    }

    /// The slow path with paging on in format `F`: the TLB's own lookup (entries the fast
    /// tags do not let through), then the walk and the fill.
    #[inline(always)]
    fn miss<const F: u8>(
        &mut self,
        mem: &mut PhysMem,
        va: VirtAddr,
        access: Access,
    ) -> Result<PhysAddr, AccessError> {
        if !self.paging {
            return mmu::linear(None, va).map(PhysAddr::new);
        }
        let mode = &self.mode;
        let lin = va.as_u64();
        let valid = if F == Format::FourLevel as u8 {
            let top = (lin as i64) >> 47;
            top == 0 || top == -1
        } else {
            lin >> 32 == 0
        };
        if !valid {
            return Err(AccessError::NonCanonical(va));
        }
        let hint = match self.tlb.find_packed(lin) {
            Ok((bits, addend)) => {
                self.counters.tlb_hits += 1;
                if !mmu::allows_bits(bits, access, mode.wp(), mode.nx_active()) {
                    // The cached rights refuse: fault without consulting memory, even if
                    // the tables now allow it (a "spurious" fault Linux knows how to
                    // handle).
                    let fault = mode.params.fault(va, access, mmu::PfError::PROT);
                    return Err(self.fault(lin, fault));
                }
                if !access.is_write() || bits & mmu::bits::D != 0 {
                    return Ok(PhysAddr::new(lin.wrapping_add(addend)));
                }
                // A write through a clean entry: the CPU walks again to set D (and the
                // fill finds the entry's way itself).
                usize::MAX
            }
            Err(hint) => {
                self.counters.tlb_misses += 1;
                hint
            }
        };
        self.counters.walks += 1;
        match mode.walk_packed_as::<F>(&mut self.walk_err, mem, lin, access) {
            Ok(w) => {
                if self.tlb.fill_hinted(lin, w, hint) {
                    self.counters.tlb_evictions += 1;
                }
                Ok(PhysAddr::new(w.phys))
            }
            Err(failed) => Err(self.walk_error(lin, failed.error(&self.walk_err))),
        }
    }

    #[cold]
    #[inline(never)]
    fn walk_error(&mut self, lin: u64, e: AccessError) -> AccessError {
        match e {
            AccessError::PageFault(f) => self.fault(lin, f),
            e => e,
        }
    }

    fn walk_params_for(&self, format: Format) -> WalkParams {
        walk_params(&self.regs, &self.features, format)
    }

    #[cold]
    fn fault(&mut self, lin: u64, fault: mmu::PageFault) -> AccessError {
        self.regs.cr2 = fault.addr.as_u64();
        self.counters.page_faults += 1;
        self.tlb.invalidate_page(lin);
        AccessError::PageFault(fault)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ram() -> PhysMem {
        PhysMem::new(&[(PhysAddr::new(0), 0x10_0000)]).expect("mmap")
    }

    #[test]
    fn reset_state_has_paging_off() {
        let mut mem = ram();
        let mut cpu = Cpu::new(0, CpuFeatures::default());
        assert_eq!(cpu.paging_format(), None);
        let pa = cpu
            .translate(&mut mem, VirtAddr::new(0x1234), Access::KERNEL_WRITE)
            .unwrap();
        assert_eq!(pa, PhysAddr::new(0x1234));
        assert!(cpu
            .translate(&mut mem, VirtAddr::new(1 << 32), Access::KERNEL_READ)
            .is_err());
    }

    #[test]
    fn mode_selection_and_gp() {
        let mem = ram();
        let mut cpu = Cpu::new(0, CpuFeatures::default());
        assert!(matches!(
            cpu.write_cr0(&mem, Cr0::PG),
            Err(CpuError::GeneralProtection(_))
        ));
        cpu.write_cr0(&mem, Cr0::PE | Cr0::PG).unwrap();
        assert_eq!(cpu.paging_format(), Some(Format::TwoLevel));
        // qemu32 has no long mode
        assert!(cpu.write_efer(Efer::LME).is_err());
        cpu.write_efer(Efer::NXE).unwrap();
        // the PDPT at CR3=0 is all zero: not present, so loading is fine
        cpu.write_cr4(&mem, Cr4::PAE).unwrap();
        assert_eq!(cpu.paging_format(), Some(Format::Pae));

        let mut cpu64 = Cpu::new(1, CpuFeatures::X86_64);
        cpu64.write_efer(Efer::LME | Efer::NXE).unwrap();
        assert!(
            cpu64.write_cr0(&mem, Cr0::PE | Cr0::PG).is_err(),
            "LME without PAE"
        );
        cpu64.write_cr4(&mem, Cr4::PAE).unwrap();
        cpu64.write_cr0(&mem, Cr0::PE | Cr0::PG).unwrap();
        assert_eq!(cpu64.paging_format(), Some(Format::FourLevel));
        assert!(cpu64.regs().efer.contains(Efer::LMA));
        assert!(
            cpu64.write_efer(Efer::NXE).is_err(),
            "LME change with PG on"
        );
        assert!(
            cpu64.write_cr4(&mem, Cr4::empty()).is_err(),
            "PAE off in long mode"
        );
    }

    #[test]
    fn cr3_in_pae_checks_pdptes() {
        let mut mem = ram();
        let mut cpu = Cpu::new(0, CpuFeatures::default());
        cpu.write_cr4(&mem, Cr4::PAE).unwrap();
        cpu.write_cr0(&mem, Cr0::PE | Cr0::PG).unwrap();
        // _PAGE_TABLE (P|RW|US|A|D) in a PDPTE: RW and US are reserved there
        mem.write_u64(PhysAddr::new(0x2020), 0x3000 | 0x67).unwrap();
        let before = cpu.regs().cr3;
        assert!(matches!(
            cpu.write_cr3(&mem, 0x2020),
            Err(CpuError::GeneralProtection(_))
        ));
        assert_eq!(
            cpu.regs().cr3,
            before,
            "a refused CR3 write changes nothing"
        );
        mem.write_u64(PhysAddr::new(0x2020), 0x3000 | 0x1).unwrap();
        cpu.write_cr3(&mem, 0x2020).unwrap();
        assert_eq!(cpu.regs().pdptes[0], 0x3001);
        // a reserved-bit PDPTE that is not present is fine
        mem.write_u64(PhysAddr::new(0x2028), 0xffff_0000_0000_0000)
            .unwrap();
        cpu.write_cr3(&mem, 0x2020).unwrap();
        // the PDPT must be RAM
        assert!(matches!(
            cpu.write_cr3(&mem, 0xfff0_0000),
            Err(CpuError::Bus(_))
        ));
    }
}
