//! Entry points for a stream of accesses whose outcome the caller can predict (the
//! kernel's fault stream: a run of first touches of unmapped pages, each retried once its
//! fault is handled). They call the CPU's own TLB and walk code and leave exactly the
//! state [`Cpu::translate`] leaves; only the host instructions differ.

use super::{Cpu, SlowAccess};
use crate::addr::{PhysAddr, VirtAddr};
use crate::machine::Machine;
use crate::mmu::{Access, AccessError, PageFault, PfError};
use crate::paging::Format;
use crate::physmem::PhysMem;

impl Cpu {
    /// [`Cpu::translate`] of an access to a page the caller expects to be unmapped: the
    /// TLB's hit path, then straight to the full slow path. The quick miss would find the
    /// entry absent in its walk and return having changed nothing (it touches nothing
    /// until it fills), so skipping it leaves the same TLB, counters, CR2 and memory,
    /// whether the page turns out mapped or not.
    #[inline(always)]
    pub fn translate_unmapped(
        &mut self,
        mem: &mut PhysMem,
        va: VirtAddr,
        access: Access,
    ) -> Result<PhysAddr, AccessError> {
        if let Some(tag) = access.fast_tag() {
            if let Some(pa) = self.tlb.hit(va.as_u64(), tag) {
                self.counters.tlb_hits += 1;
                return Ok(PhysAddr::new(pa));
            }
            if let Some(fault) = self.fault_absent(mem, va.as_u64(), access) {
                return Err(AccessError::PageFault(fault));
            }
        }
        let a = SlowAccess::new(access);
        let r = match self.paging_format() {
            Some(Format::Pae) => self.slow_paged::<{ Format::Pae as u8 }>(mem, va, a),
            Some(Format::TwoLevel) => self.slow_paged::<{ Format::TwoLevel as u8 }>(mem, va, a),
            Some(Format::FourLevel) => self.slow_paged::<{ Format::FourLevel as u8 }>(mem, va, a),
            _ => (self.slow)(self, mem, va, a),
        };
        match r {
            Ok(pa) => Ok(PhysAddr::new(pa)),
            Err(failed) => Err(failed.error(&self.walk_err)),
        }
    }

    /// [`Cpu::translate`] of the retry of an access whose #PF the kernel has just handled:
    /// the TLB's hit path, then the quick miss that scans the page's set without first
    /// looking at the slot of the last INVLPG (`Cpu::quick_refill`: the fault dropped the
    /// page's entry, and the handler's last INVLPG was of its own kmap slot), then the full
    /// slow path. The same state as [`Cpu::translate`] leaves, whatever the TLB holds.
    #[inline(always)]
    pub fn translate_refault(
        &mut self,
        mem: &mut PhysMem,
        va: VirtAddr,
        access: Access,
    ) -> Result<PhysAddr, AccessError> {
        self.translate_via::<true>(mem, va, access)
    }

    /// The usual first touch: no TLB entry for the page, a walk that stops at a
    /// not-present PTE having written nothing ([`crate::mmu::PagingMode::walk_absent`]).
    /// The fault is raised as the full miss path raises it (a miss and a walk counted,
    /// CR2, the fault counted, the page's TLB invalidation) without building the walk's
    /// error; `None`, having changed nothing, for anything else. Inline in
    /// [`Self::translate_unmapped`]: a stream's first touch lands here every time.
    #[inline(always)]
    fn fault_absent(&mut self, mem: &PhysMem, lin: u64, access: Access) -> Option<PageFault> {
        if !self.paging {
            return None;
        }
        let mode = &self.mode;
        // Inside the span of large pages the entry may be cached there: the full path.
        if self.tlb.near_big(lin) {
            return None;
        }
        let absent = match mode.format() {
            Format::Pae => mode.walk_absent::<{ Format::Pae as u8 }>(mem, lin),
            Format::TwoLevel => mode.walk_absent::<{ Format::TwoLevel as u8 }>(mem, lin),
            Format::FourLevel => mode.walk_absent::<{ Format::FourLevel as u8 }>(mem, lin),
        };
        if !absent || !self.tlb.miss_absent(lin) {
            return None;
        }
        self.counters.tlb_misses += 1;
        self.counters.walks += 1;
        self.counters.page_faults += 1;
        self.regs.cr2 = lin;
        // The error code of a not-present fault: W/R and U/S only (no fetch gets here).
        let mut code = PfError::empty();
        if access.is_write() {
            code |= PfError::WRITE;
        }
        if access.is_user() {
            code |= PfError::USER;
        }
        Some(PageFault {
            addr: VirtAddr::new(lin),
            error_code: code,
        })
    }
}

impl Machine {
    /// [`Cpu::translate_unmapped`] on `cpu`.
    #[inline(always)]
    pub fn translate_unmapped(
        &mut self,
        cpu: usize,
        va: VirtAddr,
        access: Access,
    ) -> Result<PhysAddr, AccessError> {
        let c = self.cpus.get_mut(cpu).ok_or(AccessError::NoSuchCpu(cpu))?;
        c.translate_unmapped(&mut self.mem, va, access)
    }

    /// [`Cpu::translate_refault`] on `cpu`.
    #[inline(always)]
    pub fn translate_refault(
        &mut self,
        cpu: usize,
        va: VirtAddr,
        access: Access,
    ) -> Result<PhysAddr, AccessError> {
        let c = self.cpus.get_mut(cpu).ok_or(AccessError::NoSuchCpu(cpu))?;
        c.translate_refault(&mut self.mem, va, access)
    }
}

/// A CPU's part of a fault run ([`crate::slot::FaultRun`]).
impl Cpu {
    /// The directory entry of user address `lin` when paging is on in format `F` and the
    /// walk's directory part is the quick walk's ([`crate::mmu::PagingMode::run_dir`]),
    /// with the directory page it lies in.
    #[inline(always)]
    pub(crate) fn run_dir<const F: u8>(&self, mem: &PhysMem, lin: u64) -> Option<(u64, u64)> {
        if !self.paging || self.mode.format() as u8 != F {
            return None;
        }
        let pde = self.mode.run_dir::<F>(mem, lin)?;
        Some((pde, self.mode.slot_dir_page::<F>(lin)))
    }

    /// The #PF's state of a run's `n` first touches, the last at `lin`: a miss, a walk and
    /// a fault each, as [`Cpu::fault_absent`] counts them, and CR2.
    #[inline(always)]
    pub(crate) fn run_faults_raised(&mut self, n: u64, lin: u64) {
        if n == 0 {
            return;
        }
        self.counters.tlb_misses += n;
        self.counters.walks += n;
        self.counters.page_faults += n;
        self.regs.cr2 = lin;
    }

    /// `n` slot steps' counts ([`Cpu::slot_count`]).
    #[inline(always)]
    pub(crate) fn run_slot_steps(&mut self, n: u64) {
        self.quick_counts.misses += n;
        self.counters.invlpg += n;
    }

    /// A first touch of `lin` in a run ([`crate::tlb::Tlb::run_touch`]).
    #[inline(always)]
    pub(crate) fn run_touch(&mut self, lin: u64, tag: usize) -> bool {
        self.tlb.run_touch(lin, tag)
    }

    /// The retry of `lin` after its fault, whose walk reads the run's directory entry
    /// `pde` and the PTE `pte`: the quick walk's test of the PTE, then the fill of the set
    /// the first touch found full ([`crate::tlb::Tlb::run_fill`]). `false`, having changed
    /// nothing, where either refuses.
    #[inline(always)]
    pub(crate) fn run_refill(&mut self, pde: u64, pte: u64, lin: u64, tag: usize) -> bool {
        if !self.mode.quick_leaf(pte) {
            return false;
        }
        let (base, b) = crate::mmu::pack_leaf(self.mode.leaf_bits(), pde, pte);
        self.tlb.run_fill(lin, base, b, tag, &mut self.quick_counts)
    }

    /// See [`crate::tlb::Tlb::run_fits`] and [`crate::tlb::Tlb::run_apart_mask`].
    pub(crate) fn run_tlb(&self, lo: u64, hi: u64, slot: Option<u64>) -> Option<u64> {
        self.tlb
            .run_fits(lo, hi, slot)
            .then(|| self.tlb.run_apart_mask())
    }
}
