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
