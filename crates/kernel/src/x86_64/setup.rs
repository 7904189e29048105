//! What the 64-bit boot takes from memblock before the buddy allocator exists, each under
//! the name of the kernel function that takes it: the first MiB (`reserve_real_mode`), the
//! image and the used brk, the initrd where QEMU put it, NODE_DATA, the sparse memory map
//! (`sparse_init`: 64-byte `struct page`s in 2 MiB vmemmap blocks, one per present 128 MiB
//! section, with their usemaps and the section roots), the per-CPU first chunk
//! (`pcpu_embed_first_chunk`), the dentry and inode hash tables and swiotlb. What the model
//! does not break down (ACPI, the real-mode trampoline, IRQ stacks, early ioremaps…) is one
//! named remainder, [`MEMBLOCK_UNMODELLED`], derived by a test from the real boots.

use super::image::Image64;
use super::{Boot64Error, MAX_DMA32_PFN};
use crate::boot::hash::large_system_hash;
use crate::memblock::Memblock;
use crate::printk::Printk;
use machine::PAGE_SIZE;

/// Bytes memblock hands out on a real amd64 boot that no mechanism here accounts for; the
/// test `the_64bit_memory_line_matches_the_real_boots` derives it from each real boot's
/// `Memory:` line and checks it is the same on every machine.
pub const MEMBLOCK_UNMODELLED: u64 = 36 << 10;
/// `roundup(sizeof(pg_data_t), PAGE_SIZE)` of the amd64 build ("NODE_DATA(0) allocated …").
pub const NODE_DATA_SIZE: u64 = 0x2b000;
/// `sizeof(struct page)` on x86_64 (the zone model's).
pub const STRUCT_PAGE_64: u64 = crate::mmzone::ZoneModel::X86_64.struct_page_size;
/// SECTION_SIZE_BITS on x86_64: 128 MiB sections (the zone model's).
pub const SECTION_PAGES: u64 = crate::mmzone::ZoneModel::X86_64.section_pages;
/// The first chunk's static, reserved and dynamic sizes (`percpu: Embedded … s217088 r8192
/// d28672`), from the build's per-CPU section.
pub const PCPU_STATIC: u64 = 217_088;
pub const PCPU_RESERVED: u64 = 8192;
pub const PCPU_DYNAMIC: u64 = 28_672;
/// `PERCPU_FIRST_CHUNK` unit: 2 MiB atoms (`u2097152`).
pub const PCPU_UNIT: u64 = 2 << 20;
/// swiotlb's default 64 MiB, and its per-slot bookkeeping (`struct io_tlb_slot`, 24 bytes).
pub const SWIOTLB_SIZE: u64 = 64 << 20;
const IO_TLB_SHIFT: u32 = 11;
const IO_TLB_SLOT_SIZE: u64 = 24;

/// The e820 usable ranges as memblock.memory sees them (page 0 trimmed), in bytes.
pub(super) fn memblock_memory(usable_pfns: &[(u64, u64)]) -> Memblock {
    let mut mb = Memblock::new();
    for &(s, e) in usable_pfns {
        mb.add(s * PAGE_SIZE, (e - s) * PAGE_SIZE);
    }
    mb
}

/// `early_reserve_memory()`, `reserve_brk()` (from `__brk_base` to the end of the page-table
/// buffer `brk`), the initrd and `reserve_real_mode()`.
pub(super) fn early_reserve(mb: &mut Memblock, img: &Image64, brk: (u64, u64), initrd: (u64, u64)) {
    mb.reserve(img.text, img.end - img.text, "kernel image");
    mb.reserve(img.end, brk.1 - img.end, "brk (early page tables)");
    if initrd.1 > 0 {
        mb.reserve(initrd.0, initrd.1.div_ceil(PAGE_SIZE) * PAGE_SIZE, "initrd");
    }
    mb.reserve(0, 1 << 20, "first MiB (real mode)");
}

/// `memblock_find_dma_reserve()`: the present pages below 16 MiB memblock holds.
pub(super) fn memblock_find_dma_reserve(mb: &Memblock, usable_pfns: &[(u64, u64)]) -> u64 {
    let dma = super::MAX_DMA_PFN;
    let present: u64 = usable_pfns
        .iter()
        .map(|&(s, e)| e.min(dma).saturating_sub(s))
        .sum();
    let free: u64 = mb
        .free_ranges(0, dma * PAGE_SIZE)
        .iter()
        .map(|&(s, e)| (e / PAGE_SIZE).saturating_sub(s.div_ceil(PAGE_SIZE)))
        .sum();
    present.saturating_sub(free)
}

/// Where QEMU's loader puts the initramfs for a kernel that may have it above 2 GiB
/// (`XLF_CAN_BE_LOADED_ABOVE_4G`): the top of RAM below 4 GiB minus 128 KiB of ACPI tables.
pub fn initrd_placement_64(ram: u64, size: u64) -> (u64, u64) {
    if size == 0 {
        return (0, 0);
    }
    let (below_4g, _) = machine::e820::qemu_pc_ram_split(ram);
    let max = below_4g.saturating_sub(0x2_0000);
    ((max.saturating_sub(size)) & !(PAGE_SIZE - 1), size)
}

fn oom(what: &str) -> impl FnOnce(crate::memblock::MemblockAllocError) -> Boot64Error + '_ {
    move |e| Boot64Error::Bug(format!("Kernel panic - not syncing: {what}: {e}"))
}

/// `alloc_node_data()`.
pub(super) fn node_data(mb: &mut Memblock, log: &mut Printk) -> Result<(), Boot64Error> {
    let pa = mb
        .alloc_range(NODE_DATA_SIZE, PAGE_SIZE, 0, u64::MAX, "NODE_DATA")
        .map_err(oom("Cannot allocate node data"))?
        .as_u64();
    log.info(format!(
        "NODE_DATA(0) allocated [mem {:#x}-{:#x}]",
        pa,
        pa + NODE_DATA_SIZE - 1
    ));
    Ok(())
}

/// `sparse_init()`: the section roots, one usemap per present section and the vmemmap —
/// `struct page`s of every present section in 2 MiB blocks — with its own page tables.
pub(super) fn sparse_init(
    mb: &mut Memblock,
    usable_pfns: &[(u64, u64)],
) -> Result<u64, Boot64Error> {
    let mut sections: Vec<u64> = usable_pfns
        .iter()
        .flat_map(|&(s, e)| (s / SECTION_PAGES)..e.div_ceil(SECTION_PAGES))
        .collect();
    sections.dedup();
    let n = sections.len() as u64;
    // SPARSEMEM_EXTREME: the root array (MAX_PHYSMEM_BITS 46), then one root page.
    let roots = (1u64 << (46 - 27)) / (PAGE_SIZE / 16) * 8;
    mb.alloc_range(roots, 64, 0, u64::MAX, "mem_section roots")
        .map_err(oom("sparse_init"))?;
    mb.alloc_range(PAGE_SIZE, PAGE_SIZE, 0, u64::MAX, "mem_section")
        .map_err(oom("sparse_init"))?;
    // mem_section_usage: the subsection map (8 bytes) and 4 bits per pageblock.
    let usage = 8 + (SECTION_PAGES >> 9) * 4 / 8;
    mb.alloc_range(usage * n, 64, 0, u64::MAX, "usemap")
        .map_err(oom("sparse_init"))?;
    let block = (SECTION_PAGES * STRUCT_PAGE_64).div_ceil(2 << 20) * (2 << 20);
    mb.alloc_range(block * n, 2 << 20, 0, u64::MAX, "vmemmap")
        .map_err(oom("sparse_init: vmemmap"))?;
    // The vmemmap's own tables: a PUD and one PMD page per GiB of struct pages.
    let pmds = (block * n).div_ceil(1 << 30);
    mb.alloc_range(
        (1 + pmds) * PAGE_SIZE,
        PAGE_SIZE,
        0,
        u64::MAX,
        "vmemmap page tables",
    )
    .map_err(oom("sparse_init"))?;
    Ok(n)
}

/// `pcpu_embed_first_chunk()`: a unit per CPU in 2 MiB atoms, the part beyond the first
/// chunk's size given back at once. Returns the pages kept per CPU.
pub(super) fn setup_per_cpu_areas(
    mb: &mut Memblock,
    log: &mut Printk,
    cpus: u32,
) -> Result<u64, Boot64Error> {
    let size = PCPU_STATIC + PCPU_RESERVED + PCPU_DYNAMIC;
    let pages = size / PAGE_SIZE;
    let base = mb
        .alloc_range(
            PCPU_UNIT * u64::from(cpus),
            PCPU_UNIT,
            0,
            u64::MAX,
            "percpu",
        )
        .map_err(oom("Failed to initialize percpu areas"))?
        .as_u64();
    for cpu in 0..u64::from(cpus) {
        let unit = base + cpu * PCPU_UNIT;
        mb.free(unit + size, PCPU_UNIT - size);
    }
    log.info(format!(
        "percpu: Embedded {pages} pages/cpu s{PCPU_STATIC} r{PCPU_RESERVED} d{PCPU_DYNAMIC} u{PCPU_UNIT}"
    ));
    Ok(pages)
}

/// `vfs_caches_init_early()`: the dentry and inode hash tables (8-byte buckets).
pub(super) fn hash_tables(
    mb: &mut Memblock,
    log: &mut Printk,
    nr_kernel_pages: u64,
    nr_all_pages: u64,
) -> Result<(), Boot64Error> {
    for (name, scale) in [("Dentry cache", 13u32), ("Inode-cache", 14u32)] {
        let (entries, order, bytes) = large_system_hash(nr_kernel_pages, nr_all_pages, 8, scale);
        mb.alloc_range(bytes, PAGE_SIZE, 0, u64::MAX, "early hash tables")
            .map_err(oom("Failed to allocate hash table"))?;
        log.info(format!(
            "{name} hash table entries: {entries} (order: {order}, {bytes} bytes, linear)"
        ));
    }
    Ok(())
}

/// `pci_swiotlb_detect()` → `swiotlb_init()`: 64 MiB below 4 GiB when RAM reaches above it,
/// and its slot array. Returns the buffer (base, size).
pub(super) fn swiotlb_init(
    mb: &mut Memblock,
    log: &mut Printk,
    max_pfn: u64,
    cpus: u32,
) -> Result<Option<(u64, u64)>, Boot64Error> {
    if max_pfn <= MAX_DMA32_PFN {
        return Ok(None);
    }
    log.info(format!(
        "software IO TLB: area num {}.",
        cpus.next_power_of_two()
    ));
    let base = mb
        .alloc_range(
            SWIOTLB_SIZE,
            PAGE_SIZE,
            0,
            MAX_DMA32_PFN * PAGE_SIZE,
            "swiotlb",
        )
        .map_err(oom("Cannot allocate buffer"))?
        .as_u64();
    let slots = (SWIOTLB_SIZE >> IO_TLB_SHIFT) * IO_TLB_SLOT_SIZE;
    mb.alloc_range(
        slots.div_ceil(PAGE_SIZE) * PAGE_SIZE,
        PAGE_SIZE,
        0,
        u64::MAX,
        "swiotlb",
    )
    .map_err(oom("Cannot allocate swiotlb slots"))?;
    Ok(Some((base, SWIOTLB_SIZE)))
}

/// What no mechanism here breaks down: one reservation of [`MEMBLOCK_UNMODELLED`] bytes.
pub(super) fn unmodelled(mb: &mut Memblock) -> Result<(), Boot64Error> {
    mb.alloc_range(
        MEMBLOCK_UNMODELLED,
        PAGE_SIZE,
        0,
        u64::MAX,
        "unmodelled early allocations",
    )
    .map_err(oom("memblock"))?;
    Ok(())
}
