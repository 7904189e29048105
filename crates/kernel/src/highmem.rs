//! Temporary kernel mappings of high memory: `kmap_local_page` / `kunmap_local`
//! (mm/highmem.c, arch/x86/include/asm/highmem.h).
//!
//! A highmem page has no permanent kernel address, so code that must touch one (zeroing a
//! freshly allocated page, reading a page table in high memory) maps it for a moment in one
//! of the CPU's KM_MAX_IDX fixmap slots. Slots are used as a stack per task: map pushes,
//! unmap pops and must name the top slot. Since 5.11 the flush happens on unmap (INVLPG of
//! that one page on the local CPU); a stale entry left by a missing flush would be served by
//! the simulated TLB, as real hardware would.
//!
//! The slot PTEs are one linear array in the fixmap page tables (`kmap_pte - idx`): the
//! boot allocates those page-table pages physically contiguous so this arithmetic holds.

use crate::pgtable::Geometry;
use crate::pgtable_types::PteVal;
use machine::{AccessError, Machine, PhysAddr, Pfn, VirtAddr, PAGE_SIZE};

/// A kernel-style report for misuse of kmap_local (the kernel would WARN or BUG).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KmapError {
    #[error("BUG: kmap_local: all {0} slots of CPU {1} in use")]
    SlotsExhausted(u64, usize),
    #[error("WARNING: kunmap_local({addr:#x}) on CPU {cpu}: expected the top slot {expected:#x}")]
    Unbalanced { addr: u64, expected: u64, cpu: usize },
    #[error("WARNING: kunmap_local({0:#x}) with no kmap_local mapping")]
    NothingMapped(u64),
    #[error("{0}")]
    Access(#[from] AccessError),
    #[error("{0}")]
    Bus(#[from] machine::BusError),
    #[error("{0}")]
    Cpu(#[from] machine::CpuError),
}

/// Where the kmap_local slots live and how they are encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct KmapLocalArea {
    pub geo: Geometry,
    pub fixaddr_top: u64,
    pub fix_kmap_begin: u64,
    pub km_max_idx: u64,
    /// Physical address of the PTE of FIX_KMAP_BEGIN (`kmap_pte`).
    pub kmap_pte: u64,
    /// `PAGE_KERNEL` as installed (`kmap_prot`).
    pub prot: PteVal,
}

impl KmapLocalArea {
    /// `__fix_to_virt(FIX_KMAP_BEGIN + idx)`.
    pub fn slot_vaddr(&self, idx: u64) -> u64 {
        self.fixaddr_top - (self.fix_kmap_begin + idx) * PAGE_SIZE
    }
    fn slot_pte(&self, idx: u64) -> PhysAddr {
        PhysAddr::new(self.kmap_pte - idx * self.geo.entry_size())
    }
}

/// Per-CPU state of kmap_local (the running task's `kmap_ctrl`), plus cost counters.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct KmapLocal {
    /// Slots in use per CPU, bottom to top: the pfn mapped in each.
    stacks: Vec<Vec<u64>>,
    pub maps: u64,
    pub unmaps: u64,
}

impl KmapLocal {
    pub fn new(ncpus: usize) -> Self {
        KmapLocal {
            stacks: vec![Vec::new(); ncpus],
            ..Default::default()
        }
    }

    /// Slots in use on `cpu`.
    pub fn depth(&self, cpu: usize) -> usize {
        self.stacks.get(cpu).map_or(0, Vec::len)
    }

    /// `kmap_local_pfn`: map a frame in the next slot of `cpu`; returns the virtual address.
    pub fn map(
        &mut self,
        area: &KmapLocalArea,
        m: &mut Machine,
        cpu: usize,
        pfn: Pfn,
    ) -> Result<VirtAddr, KmapError> {
        let stack = self
            .stacks
            .get_mut(cpu)
            .ok_or(KmapError::SlotsExhausted(0, cpu))?;
        let level = stack.len() as u64;
        if level >= area.km_max_idx {
            return Err(KmapError::SlotsExhausted(area.km_max_idx, cpu));
        }
        let idx = level + area.km_max_idx * cpu as u64;
        let pteval = (pfn.phys().as_u64() & area.geo.pfn_mask()) | area.prot;
        area.geo.write(&mut m.mem, area.slot_pte(idx), 0, pteval)?;
        stack.push(pfn.as_u64());
        self.maps += 1;
        Ok(VirtAddr::new(area.slot_vaddr(idx)))
    }

    /// `kunmap_local`: clear the top slot and flush it from this CPU's TLB.
    pub fn unmap(
        &mut self,
        area: &KmapLocalArea,
        m: &mut Machine,
        cpu: usize,
        va: VirtAddr,
    ) -> Result<(), KmapError> {
        let stack = self
            .stacks
            .get_mut(cpu)
            .ok_or(KmapError::NothingMapped(va.as_u64()))?;
        let level = match stack.len() {
            0 => return Err(KmapError::NothingMapped(va.as_u64())),
            n => n as u64 - 1,
        };
        let idx = level + area.km_max_idx * cpu as u64;
        let expected = area.slot_vaddr(idx);
        if va.as_u64() & !(PAGE_SIZE - 1) != expected {
            return Err(KmapError::Unbalanced {
                addr: va.as_u64(),
                expected,
                cpu,
            });
        }
        area.geo.write(&mut m.mem, area.slot_pte(idx), 0, 0)?;
        m.invlpg(cpu, VirtAddr::new(expected))?;
        stack.pop();
        self.unmaps += 1;
        Ok(())
    }
}
