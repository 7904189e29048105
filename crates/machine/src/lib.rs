//! The simulated 32-bit PC: everything below the kernel.
//!
//! This crate knows hardware only: physical memory and the BIOS e820 map, the page-table
//! entry formats the MMU understands (2-level 32-bit, PAE, 4-level x86-64), the MMU walk,
//! the per-CPU TLB and control registers. It has no idea what a zone or a kmap is; the
//! `kernel` crate builds those on top, touching memory only through this crate.

pub mod addr;
pub mod physmem;

pub use addr::{Pfn, PhysAddr, VirtAddr, PAGE_SHIFT, PAGE_SIZE};
#[cfg(any(test, feature = "monitor"))]
pub use physmem::Monitor;
pub use physmem::{BusError, BusErrorKind, PhysMem, RamBank};

// Firmware memory map (BIOS e820, as QEMU's pc machine builds it).
pub mod e820;

// Paging hardware.
pub mod cpu;
pub mod machine;
pub mod mmu;
pub mod paging;
pub mod slot;
pub mod tlb;

pub use self::machine::Machine;
pub use cpu::{Cpu, CpuCounters, CpuError, CpuFeatures, Cr0, Cr4, Efer, Registers};
pub use mmu::{
    Access, AccessError, AccessKind, PageFault, PagingMode, PfError, Privilege, Translation,
};
pub use paging::{Format, PageSize, PageTableEntry, PageTableLevel, PteFlags};
pub use slot::{Again, FaultRun, RunEnd, RunSteps, RunStop, SlotSession};
pub use tlb::{Tlb, TlbEntry, TlbGeometry};
