//! Entry points for a stream of accesses whose outcome the caller can predict (the
//! kernel's fault stream: a run of first touches of unmapped pages). They call the CPU's
//! own TLB and walk code and leave exactly the state [`Cpu::translate`] leaves; only the
//! host instructions differ.

use super::{Cpu, SlowAccess};
use crate::addr::{PhysAddr, VirtAddr};
use crate::machine::Machine;
use crate::mmu::{Access, AccessError};
use crate::paging::Format;
use crate::physmem::PhysMem;

impl Cpu {
    /// [`Cpu::translate`] of an access to a page the caller expects to be unmapped: the
    /// TLB's hit path, then straight to the full slow path. The quick miss would find the
    /// entry absent in its walk and return having changed nothing (it touches nothing
    /// until it fills), so skipping it leaves the same TLB, counters, CR2 and memory,
    /// whether the page turns out mapped or not.
    #[inline]
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
        }
        let a = SlowAccess::new(access);
        let r = match self.paging_format() {
            Some(Format::Pae) => self.slow_paged::<{ Format::Pae as u8 }>(mem, va, a),
            Some(Format::TwoLevel) => self.slow_paged::<{ Format::TwoLevel as u8 }>(mem, va, a),
            _ => (self.slow)(self, mem, va, a),
        };
        match r {
            Ok(pa) => Ok(PhysAddr::new(pa)),
            Err(failed) => Err(failed.error(&self.walk_err)),
        }
    }
}

impl Machine {
    /// [`Cpu::translate_unmapped`] on `cpu`.
    #[inline]
    pub fn translate_unmapped(
        &mut self,
        cpu: usize,
        va: VirtAddr,
        access: Access,
    ) -> Result<PhysAddr, AccessError> {
        let c = self.cpus.get_mut(cpu).ok_or(AccessError::NoSuchCpu(cpu))?;
        c.translate_unmapped(&mut self.mem, va, access)
    }
}
