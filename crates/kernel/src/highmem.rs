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
use machine::{AccessError, Machine, Pfn, PhysAddr, VirtAddr, PAGE_SIZE};

/// A kernel-style report for misuse of kmap_local (the kernel would WARN or BUG).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KmapError {
    #[error("BUG: kmap_local: all {0} slots of CPU {1} in use")]
    SlotsExhausted(u64, usize),
    #[error("WARNING: kunmap_local({addr:#x}) on CPU {cpu}: expected the top slot {expected:#x}")]
    Unbalanced {
        addr: u64,
        expected: u64,
        cpu: usize,
    },
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

/// `PA_HASH_ORDER`: the page_address hash has 2^7 buckets.
pub const PA_HASH_ORDER: u32 = 7;
/// `GOLDEN_RATIO_32`, the multiplier of `hash_32()`.
const GOLDEN_RATIO_32: u32 = 0x61C8_8647;

/// `hash_ptr()` on a 32-bit kernel: `hash_32(ptr, bits)`.
pub fn hash_ptr(ptr: u32, bits: u32) -> usize {
    (ptr.wrapping_mul(GOLDEN_RATIO_32) >> (32 - bits)) as usize
}

/// One `struct page_address_map`: a highmem page and its kmap() address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PageAddressMap {
    pub pfn: u64,
    pub virtual_addr: u64,
}

/// `page_address_htable` (HASHED_PAGE_VIRTUAL): where page_address() finds the persistent
/// kmap of a highmem page. Only kmap() (through map_new_virtual / flush_all_zero_pkmaps)
/// records addresses here; kmap_local and kmap_atomic mappings are invisible to it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PageAddressHash {
    buckets: Vec<Vec<PageAddressMap>>,
    /// Kernel virtual address of mem_map[0], so the hash sees `struct page *` as the kernel does.
    mem_map_va: u32,
    sizeof_page: u32,
}

impl PageAddressHash {
    pub fn new(mem_map_va: u32, sizeof_page: u32) -> Self {
        PageAddressHash {
            buckets: vec![Vec::new(); 1 << PA_HASH_ORDER],
            mem_map_va,
            sizeof_page,
        }
    }

    /// The bucket of a page: `hash_ptr(page, PA_HASH_ORDER)`.
    pub fn bucket_of(&self, pfn: u64) -> usize {
        let page_ptr = self
            .mem_map_va
            .wrapping_add((pfn as u32).wrapping_mul(self.sizeof_page));
        hash_ptr(page_ptr, PA_HASH_ORDER)
    }

    /// The kmap() address recorded for a highmem page, if any.
    pub fn lookup(&self, pfn: u64) -> Option<u64> {
        self.buckets[self.bucket_of(pfn)]
            .iter()
            .find(|m| m.pfn == pfn)
            .map(|m| m.virtual_addr)
    }

    /// `set_page_address(page, virtual)`: record (Some) or forget (None) a kmap() address.
    pub fn set_page_address(&mut self, pfn: u64, virtual_addr: Option<u64>) {
        let b = self.bucket_of(pfn);
        let bucket = &mut self.buckets[b];
        bucket.retain(|m| m.pfn != pfn);
        if let Some(v) = virtual_addr {
            bucket.push(PageAddressMap {
                pfn,
                virtual_addr: v,
            });
        }
    }

    /// Entries recorded, all buckets.
    pub fn len(&self) -> usize {
        self.buckets.iter().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_ptr_is_the_kernels_hash_32() {
        // hash_32(0, 7) is 0; consecutive struct pages land in different buckets.
        assert_eq!(hash_ptr(0, 7), 0);
        let h = PageAddressHash::new(0xf3ad_2000, 40);
        let a = h.bucket_of(0x40000);
        let b = h.bucket_of(0x40001);
        assert!(a < 128 && b < 128);
        assert_ne!(a, b);
        assert_eq!(
            a,
            ((0xf3ad_2000u32 + 0x40000 * 40).wrapping_mul(0x61C8_8647) >> 25) as usize
        );
    }

    #[test]
    fn set_and_clear_page_address() {
        let mut h = PageAddressHash::new(0xf3ad_2000, 40);
        assert_eq!(h.lookup(0x40000), None);
        h.set_page_address(0x40000, Some(0xff00_3000));
        assert_eq!(h.lookup(0x40000), Some(0xff00_3000));
        h.set_page_address(0x40000, Some(0xff00_4000));
        assert_eq!(h.len(), 1, "a page has at most one kmap address");
        h.set_page_address(0x40000, None);
        assert!(h.is_empty());
    }
}
