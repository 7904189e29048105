//! vmalloc, vmap and ioremap in VMALLOC_START..VMALLOC_END (mm/vmalloc.c, mm/util.c,
//! arch/x86/mm/ioremap.c).
//!
//! - `area.rs`: the address-space allocator (free / lazily freed blocks, lowest fit);
//! - `ops.rs`: the kernel entry points — `vmalloc`, `vzalloc`, `vmalloc_32`,
//!   `__vmalloc_node_range`, `vmap` / `vunmap`, `ioremap` / `iounmap`, `vfree`, the lazy
//!   purge, `vmalloc_to_page` / `vmalloc_to_pfn`, and the invariant check the tests run;
//! - `kvmalloc.rs`: `kvmalloc` / `kvzalloc` / `kvfree` with the kmalloc attempt first.
//!
//! Page tables are changed with the cursor of `pagewalk.rs`; PTE pages come from
//! `pte_alloc_kernel` (low memory). vfree clears the PTEs at once but leaves the TLBs alone:
//! the area waits in the purge set until more than `lazy_max_pages()` pages are waiting,
//! then one `flush_tlb_kernel_range` over all of them (an IPI to every other CPU) precedes
//! their return to the free space.

pub mod area;
pub mod kvmalloc;
mod ops;

pub use area::VmapSpace;
pub use kvmalloc::{KvAlloc, KMALLOC_MAX_CACHE_SIZE};
pub use ops::VmallocError;

use machine::{Pfn, PAGE_SIZE};
use std::collections::BTreeMap;

/// `vm_struct.flags` (include/linux/vmalloc.h, 6.1).
pub const VM_IOREMAP: u32 = 0x0000_0001;
pub const VM_ALLOC: u32 = 0x0000_0002;
pub const VM_MAP: u32 = 0x0000_0004;
pub const VM_USERMAP: u32 = 0x0000_0008;
pub const VM_DMA_COHERENT: u32 = 0x0000_0010;
pub const VM_UNINITIALIZED: u32 = 0x0000_0020;
pub const VM_NO_GUARD: u32 = 0x0000_0040;
pub const VM_KASAN: u32 = 0x0000_0080;
pub const VM_FLUSH_RESET_PERMS: u32 = 0x0000_0100;
pub const VM_MAP_PUT_PAGES: u32 = 0x0000_0200;
pub const VM_ALLOW_HUGE_VMAP: u32 = 0x0000_0400;

/// `sizeof(struct page *)` on i386: the vm_struct page array's entry size.
pub const PAGE_POINTER_SIZE: u64 = 4;
/// `sizeof(struct page *)` on x86_64.
pub const PAGE_POINTER_SIZE_64: u64 = 8;

/// `lazy_max_pages()`: `fls(num_online_cpus()) × 32 MiB` of pages.
pub fn lazy_max_pages(online_cpus: usize) -> u64 {
    let log = usize::BITS - online_cpus.leading_zeros();
    u64::from(log) * ((32 << 20) / PAGE_SIZE)
}

/// `struct vm_struct`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct VmStruct {
    pub addr: u64,
    /// Bytes, including the guard page.
    pub size: u64,
    pub flags: u32,
    /// The pages mapped in order (owned by the area for VM_ALLOC; the caller's for VM_MAP).
    pub pages: Vec<Pfn>,
    /// ioremap: the physical start.
    pub phys_addr: u64,
    /// `%pS` of the caller, as the model names it.
    pub caller: String,
    /// The page array was too big for kmalloc and lives in this nested vmalloc area
    /// (vmallocinfo's `vpages`).
    pub pages_area: Option<u64>,
}

impl VmStruct {
    /// `get_vm_area_size()`: without the guard page.
    pub fn area_size(&self) -> u64 {
        if self.flags & VM_NO_GUARD != 0 {
            self.size
        } else {
            self.size - PAGE_SIZE
        }
    }
    /// `vm_struct.nr_pages`: only areas that own their pages count them.
    pub fn nr_pages(&self) -> u64 {
        if self.flags & (VM_ALLOC | VM_MAP_PUT_PAGES) != 0 {
            self.pages.len() as u64
        } else {
            0
        }
    }
}

/// `struct vmap_area` of the busy tree.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct VmapArea {
    pub va_start: u64,
    pub va_end: u64,
    /// None for vm_map_ram areas (the model creates none).
    pub vm: Option<VmStruct>,
}

/// The vmalloc state of a booted kernel.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Vmap {
    pub space: VmapSpace,
    /// Busy areas by start address.
    pub busy: BTreeMap<u64, VmapArea>,
    /// `vmap_lazy_nr`: pages of lazily freed areas (guard pages included).
    pub vmap_lazy_nr: u64,
    /// `nr_vmalloc_pages` (meminfo VmallocUsed).
    pub nr_vmalloc_pages: u64,
    /// Kernel PTE pages allocated for the vmalloc area (never freed).
    pub kernel_pte_pages: u64,
    /// Kernel PMD pages allocated under the vmalloc area's PUDs (4-level only; never freed).
    pub kernel_pmd_pages: u64,
    /// Purges that flushed something.
    pub purges: u64,
}

impl Vmap {
    pub fn new(start: u64, end: u64) -> Self {
        Vmap {
            space: VmapSpace::new(start, end),
            ..Default::default()
        }
    }

    /// VMALLOC_START.
    pub fn start(&self) -> u64 {
        self.space.start
    }
    /// VMALLOC_END.
    pub fn end(&self) -> u64 {
        self.space.end
    }

    /// `is_vmalloc_addr()`.
    pub fn is_vmalloc_addr(&self, addr: u64) -> bool {
        addr >= self.start() && addr < self.end()
    }

    /// `find_vmap_area()`: the busy area containing `addr`.
    pub fn find_vmap_area(&self, addr: u64) -> Option<&VmapArea> {
        self.busy
            .range(..=addr)
            .next_back()
            .map(|(_, a)| a)
            .filter(|a| addr < a.va_end)
    }

    /// `find_vm_area()`.
    pub fn find_vm_area(&self, addr: u64) -> Option<&VmStruct> {
        self.find_vmap_area(addr).and_then(|a| a.vm.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lazy_max_pages_as_6_1() {
        assert_eq!(lazy_max_pages(1), 8192);
        assert_eq!(lazy_max_pages(2), 16384);
        assert_eq!(lazy_max_pages(3), 16384);
        assert_eq!(lazy_max_pages(4), 24576);
        assert_eq!(lazy_max_pages(8), 32768);
    }
}
