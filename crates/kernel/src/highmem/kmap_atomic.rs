//! The slot-typed `kmap_atomic(page, type)` / `kunmap_atomic(kvaddr, type)` of the 2002
//! designs (2.4 include/asm-i386/highmem.h, highpte-2.5.5).
//!
//! Every caller names its slot: `idx = type + KM_TYPE_NR * cpu` in the fixmap's kmap
//! area. Mapping writes the PTE and INVLPGs at *map* time (the slot's previous user may
//! still be cached); unmapping does nothing unless DEBUG_HIGHMEM, which checks the address
//! and clears + flushes the slot. Two users of one type on one CPU (process context and an
//! interrupt, or a task preempted / put to sleep while holding it) silently share the slot:
//! with DEBUG_HIGHMEM the second map finds the PTE not empty and BUGs; without it the first
//! user's next access reads the second user's page, which [`Kernel::kmap_read_u32`] flags.
//! highpte-2.5 (CONFIG_PREEMPT) disables preemption while a slot is held and, with
//! DEBUG_HIGHMEM, puts an unmapped fence slot before every type.

use super::{Check, KmapError};
use crate::design::{KernelDesign, KmType};
use crate::sched::MapKind;
use crate::tlbflush::TlbFlush;
use crate::Kernel;
use machine::{Pfn, VirtAddr, PAGE_SIZE};

impl Kernel {
    /// Fixmap kmap index of `t`'s slot on `cpu` in the selected design. `call` describes
    /// the caller for a report, built only when there is one (the maps are hot paths).
    fn typed_slot(
        &mut self,
        cpu: usize,
        t: KmType,
        call: impl FnOnce() -> String,
    ) -> Result<u64, KmapError> {
        let d = self.hm.design;
        let Some(i) = d.km_index(t) else {
            return Err(self.hm_bug(
                Check::NoSuchKmType,
                cpu,
                format!("{t:?} is not a km_type of the {} design", d.name()),
                &call(),
            ));
        };
        let nr = d.km_type_nr();
        Ok(
            if self.hm.debug.debug_highmem && d == KernelDesign::Highpte25 {
                // __KM_FENCE_n before every type.
                2 * i + 1 + 2 * nr * cpu as u64
            } else {
                i + nr * cpu as u64
            },
        )
    }

    /// `kmap_atomic(page, type)` of the 2.4 / 2.5 designs, by `cpu`'s current task.
    pub fn kmap_atomic_typed(
        &mut self,
        cpu: usize,
        pfn: Pfn,
        t: KmType,
    ) -> Result<VirtAddr, KmapError> {
        let call = || format!("kmap_atomic(pfn {:#x}, {t:?})", pfn.as_u64());
        let idx = self.typed_slot(cpu, t, call)?;
        let preempt = self.hm.design.typed_atomic_disables_preemption();
        if preempt {
            self.sched.preempt_disable(cpu);
        }
        if pfn.as_u64() < self.layout.max_low_pfn.as_u64() {
            return Ok(VirtAddr::new(
                self.config.page_offset() + pfn.phys().as_u64(),
            ));
        }
        let va = self.kmap_area.slot_vaddr(idx);
        let pte_pa = self.kmap_area.slot_pte(idx);
        if self.hm.debug.debug_highmem {
            let old = self.kmap_area.geo.read(&self.machine.mem, pte_pa, 0)?;
            if old != 0 {
                if preempt {
                    self.sched.preempt_enable(cpu);
                }
                let old_pfn = (old & self.geo.pfn_mask()) / PAGE_SIZE;
                return Err(self.hm_bug(
                    Check::TypedSlotInUse,
                    cpu,
                    format!(
                        "kernel BUG at arch/i386/mm/highmem.c: kmap_atomic: {t:?} slot of CPU {cpu} ({va:#x}) still maps pfn {old_pfn:#x}: two users of one km_type"
                    ),
                    &call(),
                ));
            }
        }
        let pteval = (pfn.phys().as_u64() & self.geo.pfn_mask()) | self.kmap_area.prot;
        self.kmap_area
            .geo
            .write(&mut self.machine.mem, pte_pa, 0, pteval)?;
        // __flush_tlb_one(vaddr): the slot's previous user may still be cached here.
        TlbFlush::page(va).flush_local(&mut self.machine, cpu)?;
        self.kmap_local.maps += 1;
        self.hold(cpu, MapKind::Typed(t), va, pfn.as_u64());
        Ok(VirtAddr::new(va))
    }

    /// `kunmap_atomic(kvaddr, type)` of the 2.4 / 2.5 designs.
    pub fn kunmap_atomic_typed(
        &mut self,
        cpu: usize,
        va: VirtAddr,
        t: KmType,
    ) -> Result<(), KmapError> {
        let call = || format!("kunmap_atomic({:#x}, {t:?})", va.as_u64());
        let idx = self.typed_slot(cpu, t, call)?;
        let preempt = self.hm.design.typed_atomic_disables_preemption();
        let addr = va.as_u64() & !(PAGE_SIZE - 1);
        if !self.in_kmap_local_area(addr) {
            // A lowmem page: nothing was mapped.
            if preempt {
                self.sched.preempt_enable(cpu);
            }
            return Ok(());
        }
        let slot_va = self.kmap_area.slot_vaddr(idx);
        if self.hm.debug.debug_highmem {
            if addr != slot_va {
                return Err(self.hm_bug(
                    Check::OutOfOrderUnmap,
                    cpu,
                    format!(
                        "kernel BUG at arch/i386/mm/highmem.c: kunmap_atomic: {addr:#x} is not the {t:?} slot {slot_va:#x} of CPU {cpu}"
                    ),
                    &call(),
                ));
            }
            // Force other mappings to oops if they try to access this one.
            let pte_pa = self.kmap_area.slot_pte(idx);
            self.kmap_area
                .geo
                .write(&mut self.machine.mem, pte_pa, 0, 0)?;
            TlbFlush::page(slot_va).flush_local(&mut self.machine, cpu)?;
        }
        // Without DEBUG_HIGHMEM the PTE stays: the next map of the slot overwrites and
        // flushes it.
        self.kmap_local.unmaps += 1;
        self.release(cpu, MapKind::Typed(t), slot_va);
        if preempt {
            self.sched.preempt_enable(cpu);
        }
        Ok(())
    }
}
