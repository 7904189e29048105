//! The amd64 boot from `mm_init` to userspace, on the [`Kernel`]: what it leaves in the
//! vmalloc area (`/proc/vmallocinfo`, `VmallocUsed`) and what it does to the attributes of
//! the kernel's mappings (the direct map's `DirectMap4k` / `DirectMap2M`), in start_kernel's
//! and the initcalls' order.
//!
//! Every `pages=` area of the amd64 research run's /proc/vmallocinfo
//! (`tests/realworks/research/amd64-8192M-S512-N0.txt`) comes from one mechanism here or
//! from the kernel stacks (`mm/kstack.rs`): the genalloc chunks of the MCE records' pool and
//! of the three atomic DMA pools, the network core's first BPF program and the 2 MiB pack
//! its JIT image goes into (`bpf_prog_pack_alloc`, in the module area), the percpu
//! allocator's second chunk's metadata (`pcpu_create_chunk`), the compressor's scratch
//! buffers and `n_tty_open`'s buffer (shared with i386, `boot/vm_areas.rs`). The 8 GiB
//! boot's sum is the real 7340 kB with the stack the per-CPU cache holds.
//!
//! The page attributes: `set_memory_ro` on the IDT, on the BPF pack and on the text and
//! rodata, `set_memory_nx` / `set_memory_rw` on what `free_init_pages` frees (the SMP
//! alternatives, the unused decrypted BSS, the init sections, the two alignment gaps) and
//! `set_memory_nx` on everything after the text. Each request that covers a 2 MiB page in
//! part splits it, in the high mapping and, through `cpa_process_alias`, in the direct map
//! (`set_memory.rs`): the IDT, the text's and rodata's ends and the BPF pack's pages split
//! direct-map pages; the IDT, the text's and rodata's ends, the init sections' two ends and
//! the decrypted BSS split high-map pages, which count too.
//!
//! Not modelled: the vmap of the IRQ stack and the percpu chunk's address space
//! (`pcpu_get_vm_areas`), which own no pages; the pages the percpu allocator populates in
//! its second chunk (counted in `Percpu:`, 12 kB on the real boot).

use super::direct_map::START_KERNEL_MAP;
use super::image::Image64;
use crate::boot::vm_areas::vm_err;
use crate::boot::BootError;
use crate::gfp::{__GFP_ZERO, GFP_KERNEL};
use crate::kernel::Kernel;
use crate::vmalloc::VM_FLUSH_RESET_PERMS;
use machine::{Pfn, PAGE_SIZE};

/// `MODULES_VADDR` (`__START_KERNEL_map` + KERNEL_IMAGE_SIZE, 1 GiB with
/// RANDOMIZE_BASE) and `MODULES_END`.
pub const MODULES_VADDR: u64 = 0xffff_ffff_c000_0000;
pub const MODULES_END: u64 = 0xffff_ffff_ff00_0000;
/// `BPF_PROG_PACK_SIZE`: `PMD_SIZE × num_possible_nodes()` (one node).
pub const BPF_PROG_PACK_SIZE: u64 = 2 << 20;
/// `PCPU_MIN_ALLOC_SIZE`: one bit of a chunk's allocation map per 4 bytes.
const PCPU_MIN_ALLOC_SIZE: u64 = 4;
/// `PCPU_BITMAP_BLOCK_SIZE` (a page) and `sizeof(struct pcpu_block_md)` (eight ints).
const PCPU_BITMAP_BLOCK_SIZE: u64 = PAGE_SIZE;
const PCPU_BLOCK_MD_SIZE: u64 = 32;
/// `sizeof(struct obj_cgroup *)`: memcg's per-object pointer in a chunk.
const OBJ_CGROUP_POINTER: u64 = 8;
/// `sizeof(struct gen_pool_chunk)` without its bitmap.
const GEN_POOL_CHUNK_SIZE: u64 = 56;
/// The MCE records' pool: `MCE_POOLSZ` (2 pages) in `ilog2(sizeof(struct mce_evt_llist))`
/// = 2^7-byte units.
const MCE_POOLSZ: u64 = 2 * PAGE_SIZE;
const MCE_POOL_ORDER: u32 = 7;

/// The amd64 build's callers of the areas only amd64 has.
const GEN_POOL_ADD_OWNER: &str = "gen_pool_add_owner+0x3a/0xc0";
const BPF_PROG_PACK_ALLOC: &str = "bpf_prog_pack_alloc+0x164/0x2d0";
const PCPU_CREATE_CHUNK: [&str; 4] = [
    "pcpu_create_chunk+0x4e/0x1b0",
    "pcpu_create_chunk+0x75/0x1b0",
    "pcpu_create_chunk+0x92/0x1b0",
    "pcpu_create_chunk+0x167/0x1b0",
];

/// The image's high-mapping address of a physical address in it (`__va_symbol`).
fn high(pa: u64) -> u64 {
    START_KERNEL_MAP + pa
}

fn pages(start: u64, end: u64) -> u64 {
    end.div_ceil(PAGE_SIZE) - start / PAGE_SIZE
}

/// `BITS_TO_LONGS(bits) * sizeof(unsigned long)`.
fn bitmap_bytes(bits: u64) -> u64 {
    bits.div_ceil(64) * 8
}

/// The sizes `pcpu_alloc_chunk` asks `pcpu_mem_zalloc` for, for a unit of `unit_size`
/// bytes: the allocation map, the boundary map (one bit more), the per-page block
/// metadata and memcg's `obj_cgroups` array (a pointer per allocation unit).
pub fn pcpu_chunk_metadata(unit_size: u64) -> [u64; 4] {
    let map_bits = unit_size / PCPU_MIN_ALLOC_SIZE;
    [
        bitmap_bytes(map_bits),
        bitmap_bytes(map_bits + 1),
        unit_size / PCPU_BITMAP_BLOCK_SIZE * PCPU_BLOCK_MD_SIZE,
        map_bits * OBJ_CGROUP_POINTER,
    ]
}

impl Kernel {
    /// The boot after `mm_init`, in order. `atomic_pools` are the atomic DMA pools'
    /// blocks (pfn, order) the 64-bit boot allocated.
    pub(super) fn late_boot_64(
        &mut self,
        img: &Image64,
        atomic_pools: &[(Pfn, u32)],
    ) -> Result<(), BootError> {
        self.acpi_early_init_and_hpet()?;
        // init_IRQ → idt_setup_apic_and_irq_gates: the IDT read-only.
        self.set_memory_ro(high(img.idt_table), 1)?;
        // arch_cpu_finalize_init: mcheck_cpu_init → the MCE records' pool, then
        // alternative_instructions frees the SMP alternatives (free_init_pages).
        self.gen_pool_add_owner(MCE_POOLSZ, MCE_POOL_ORDER)?;
        self.free_init_pages_attrs(img.smp_locks, img.smp_locks_end)?;
        // core_initcall(sock_init) → ptp_classifier_init: a classic BPF filter, JIT'ed.
        self.bpf_prog_alloc()?;
        self.bpf_prog_pack_alloc()?;
        // postcore_initcall(dma_atomic_pool_init): each pool's block into its genalloc pool.
        for &(_, order) in atomic_pools {
            self.gen_pool_add_owner(PAGE_SIZE << order, machine::PAGE_SHIFT)?;
        }
        self.acpi_init_and_smbios()?;
        self.pcpu_create_chunk()?;
        self.crypto_scomp_and_zswap()?;
        self.console_on_rootfs()?;
        self.free_initmem(img)?;
        self.mark_rodata_ro(img)
    }

    /// `gen_pool_add_owner()`: the chunk (its bitmap of `size >> min_alloc_order` bits
    /// included) is `vzalloc_node`'ed.
    fn gen_pool_add_owner(&mut self, size: u64, min_alloc_order: u32) -> Result<(), BootError> {
        let bytes = GEN_POOL_CHUNK_SIZE + bitmap_bytes(size >> min_alloc_order);
        self.vmalloc_caller(bytes, GFP_KERNEL | __GFP_ZERO, GEN_POOL_ADD_OWNER, 0)
            .map_err(vm_err)?;
        Ok(())
    }

    /// `alloc_new_pack()`: `module_alloc(BPF_PROG_PACK_SIZE)` in the module area, then
    /// `set_memory_ro` and `set_memory_x` on it, which make the pages' direct-map alias
    /// read-only too.
    fn bpf_prog_pack_alloc(&mut self) -> Result<(), BootError> {
        let prot = self.masks.page_kernel();
        let addr = self
            .__vmalloc_node_range(
                BPF_PROG_PACK_SIZE,
                PAGE_SIZE,
                MODULES_VADDR,
                MODULES_END,
                GFP_KERNEL,
                prot,
                VM_FLUSH_RESET_PERMS,
                BPF_PROG_PACK_ALLOC,
                0,
            )
            .map_err(vm_err)?;
        let n = BPF_PROG_PACK_SIZE / PAGE_SIZE;
        self.set_memory_ro(addr, n)?;
        self.set_memory_x(addr, n)
    }

    /// `pcpu_balance_workfn` → `pcpu_create_chunk`: the first chunk's free space ran low,
    /// so a second chunk of the same unit size gets its metadata; what is more than a
    /// page is vmalloc'ed (`pcpu_mem_zalloc`), the rest is slab.
    fn pcpu_create_chunk(&mut self) -> Result<(), BootError> {
        let unit = super::setup::PCPU_UNIT;
        for (bytes, caller) in pcpu_chunk_metadata(unit).into_iter().zip(PCPU_CREATE_CHUNK) {
            if bytes > PAGE_SIZE {
                self.vmalloc_caller(bytes, GFP_KERNEL | __GFP_ZERO, caller, 0)
                    .map_err(vm_err)?;
            }
        }
        Ok(())
    }

    /// `free_init_pages()`'s attribute change of the image range `[start, end)` before it
    /// is freed (the 64-bit boot freed the pages): non-executable, then writable.
    fn free_init_pages_attrs(&mut self, start: u64, end: u64) -> Result<(), BootError> {
        let n = pages(start, end);
        self.set_memory_nx(high(start), n)?;
        self.set_memory_rw(high(start), n)
    }

    /// `free_initmem()`: `mem_encrypt_free_decrypted_mem()`, then the init sections. Its
    /// first attribute change purges the lazily freed vmalloc areas (`vm_unmap_aliases`).
    fn free_initmem(&mut self, img: &Image64) -> Result<(), BootError> {
        self.purge_vmap_area_lazy(0)
            .map_err(|e| BootError::Bug(format!("BUG: {e}")))?;
        self.free_init_pages_attrs(img.decrypted, img.end)?;
        self.free_init_pages_attrs(img.init_begin, img.init_end)
    }

    /// `mark_rodata_ro()`: text through `__end_rodata_hpage_align` read-only, everything
    /// from the text's end to the 2 MiB-rounded end of the brk non-executable, then the
    /// text/rodata and rodata/data gaps freed.
    fn mark_rodata_ro(&mut self, img: &Image64) -> Result<(), BootError> {
        self.set_memory_ro(high(img.text), pages(img.text, img.sdata))?;
        let text_end = img.etext.div_ceil(PAGE_SIZE) * PAGE_SIZE;
        let hpage = 2 << 20;
        let brk_end = self.layout.image.end - START_KERNEL_MAP;
        let all_end = brk_end.div_ceil(hpage) * hpage;
        self.set_memory_nx(high(text_end), pages(text_end, all_end))?;
        self.free_init_pages_attrs(text_end, img.start_rodata)?;
        let rodata_end = img.end_rodata.div_ceil(PAGE_SIZE) * PAGE_SIZE;
        self.free_init_pages_attrs(rodata_end, img.sdata)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_2_mib_unit_needs_39_pages_of_maps_and_1024_of_obj_cgroups() {
        let [alloc, bound, md, objcg] = pcpu_chunk_metadata(2 << 20);
        let p = |b: u64| b.div_ceil(PAGE_SIZE);
        assert_eq!([p(alloc), p(bound), p(md), p(objcg)], [16, 17, 4, 1024]);
    }
}
