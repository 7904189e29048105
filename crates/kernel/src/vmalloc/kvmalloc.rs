//! `kvmalloc_node()` / `kvfree()` (mm/util.c, 6.1): physically contiguous first, vmalloc as
//! the fallback.
//!
//! The contiguous attempt is kmalloc's: up to `KMALLOC_MAX_CACHE_SIZE` an object of the
//! kmalloc cache of that size (SLUB), above it `kmalloc_large_node`'s compound pages
//! straight from the page allocator.

use super::ops::VmallocError;
use crate::gfp::{gfpflags_allow_blocking, Gfp, __GFP_ZERO, GFP_KERNEL};
use crate::kernel::Kernel;
use crate::printk::LogLevel;
use machine::{Pfn, PAGE_SIZE};

/// `KMALLOC_MAX_CACHE_SIZE` with SLUB: `1 << (PAGE_SHIFT + 1)`.
pub const KMALLOC_MAX_CACHE_SIZE: u64 = 2 * PAGE_SIZE;

/// `INT_MAX`: kvmalloc refuses larger requests.
const INT_MAX: u64 = i32::MAX as u64;

/// What kvmalloc handed out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvAlloc {
    /// An object of a kmalloc cache (sizes up to `KMALLOC_MAX_CACHE_SIZE`).
    Slab { addr: u64 },
    /// Contiguous low memory from kmalloc_large (its direct-map address and pages).
    Kmalloc { addr: u64, pfn: Pfn, order: u32 },
    /// A vmalloc area.
    Vmalloc { addr: u64 },
}

impl KvAlloc {
    pub fn addr(&self) -> u64 {
        match *self {
            KvAlloc::Slab { addr } | KvAlloc::Kmalloc { addr, .. } | KvAlloc::Vmalloc { addr } => {
                addr
            }
        }
    }
    pub fn is_vmalloc(&self) -> bool {
        matches!(self, KvAlloc::Vmalloc { .. })
    }
}

/// `get_order(size)`.
fn get_order(size: u64) -> u32 {
    let pages = size.div_ceil(PAGE_SIZE).max(1);
    64 - (pages - 1).leading_zeros()
}

impl Kernel {
    /// `kmalloc_node(size, flags)` for `size <= KMALLOC_MAX_CACHE_SIZE`: an object of the
    /// kmalloc cache of that size; `None` where SLUB cannot get a slab.
    fn kvmalloc_kmalloc_slab(&mut self, size: u64, gfp: Gfp, cpu: usize) -> Option<KvAlloc> {
        let va = self.kmalloc(size as usize, gfp, cpu).ok()?;
        Some(KvAlloc::Slab { addr: va.as_u64() })
    }

    /// `kmalloc_large_node()`: compound pages of `get_order(size)`, never highmem.
    fn kmalloc_large_node(&mut self, size: u64, gfp: Gfp, cpu: usize) -> Option<KvAlloc> {
        let order = get_order(size);
        match self.alloc_pages(gfp | Gfp::COMP, order, cpu) {
            Ok(p) => Some(KvAlloc::Kmalloc {
                addr: self.config.page_offset() + p.pfn.phys().as_u64(),
                pfn: p.pfn,
                order,
            }),
            Err(crate::kernel::KernelAllocError::Alloc(f)) => {
                for l in f.report {
                    self.log.log(LogLevel::Warning, l);
                }
                None
            }
            Err(_) => None,
        }
    }

    /// `kvmalloc_node(size, flags, NUMA_NO_NODE)`.
    pub fn kvmalloc_node(
        &mut self,
        size: u64,
        flags: Gfp,
        cpu: usize,
    ) -> Result<KvAlloc, VmallocError> {
        let mut kmalloc_flags = flags;
        if size > PAGE_SIZE {
            // No OOM killer and no warning for the contiguous attempt: there is a fallback.
            kmalloc_flags |= Gfp::NOWARN;
            if !kmalloc_flags.contains(Gfp::RETRY_MAYFAIL) {
                kmalloc_flags |= Gfp::NORETRY;
            }
            kmalloc_flags &= !Gfp::NOFAIL;
        }
        let got = if size > KMALLOC_MAX_CACHE_SIZE {
            self.kmalloc_large_node(size, kmalloc_flags, cpu)
        } else {
            self.kvmalloc_kmalloc_slab(size, kmalloc_flags, cpu)
        };
        if let Some(a) = got {
            return Ok(a);
        }
        if size <= PAGE_SIZE {
            return Err(VmallocError::NoMemory);
        }
        if !gfpflags_allow_blocking(flags) {
            return Err(VmallocError::NoMemory);
        }
        if size > INT_MAX {
            return Err(VmallocError::TooBig(size));
        }
        let (s, e) = (self.vmap.start(), self.vmap.end());
        let prot = self.masks.page_kernel();
        let addr = self.__vmalloc_node_range(
            size,
            1,
            s,
            e,
            flags,
            prot,
            super::VM_ALLOW_HUGE_VMAP,
            "kvmalloc_node",
            cpu,
        )?;
        Ok(KvAlloc::Vmalloc { addr })
    }

    /// `kvmalloc(size, GFP_KERNEL)`.
    pub fn kvmalloc(&mut self, size: u64, cpu: usize) -> Result<KvAlloc, VmallocError> {
        self.kvmalloc_node(size, GFP_KERNEL, cpu)
    }

    /// `kvzalloc(size, GFP_KERNEL)`.
    pub fn kvzalloc(&mut self, size: u64, cpu: usize) -> Result<KvAlloc, VmallocError> {
        self.kvmalloc_node(size, GFP_KERNEL | __GFP_ZERO, cpu)
    }

    /// `kvfree()`: vfree for vmalloc addresses, kfree (the pages) otherwise.
    pub fn kvfree(&mut self, a: KvAlloc, cpu: usize) -> Result<(), VmallocError> {
        match a {
            KvAlloc::Vmalloc { addr } => self.vfree(addr, cpu),
            KvAlloc::Slab { addr } => {
                if let Err(e) = self.kfree(machine::VirtAddr::new(addr), cpu) {
                    self.log.log(LogLevel::Err, format!("BUG: {e:?}"));
                }
                Ok(())
            }
            KvAlloc::Kmalloc { pfn, order, .. } => {
                if let Err(e) = self.node.__free_pages(pfn, order, cpu) {
                    self.log.log(LogLevel::Err, format!("BUG: {e}"));
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders() {
        assert_eq!(get_order(1), 0);
        assert_eq!(get_order(4096), 0);
        assert_eq!(get_order(4097), 1);
        assert_eq!(get_order(8 << 20), 11);
    }
}
