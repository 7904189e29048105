//! The `x86_64` variant: a 64-bit kernel on the same QEMU pc machine (Debian's
//! 6.1.0-50-amd64), modelled as far as the boot's memory goes.
//!
//! What is modelled (6.1 `arch/x86/kernel/setup.c`, `arch/x86/mm/init.c`, `init_64.c`,
//! `mm/sparse.c`, `mm/percpu.c`, `mm/page_alloc.c`):
//! - `max_pfn` = the end of the last usable e820 range and `max_low_pfn = max_pfn`: every
//!   page is in the direct map, so `PageHighMem()` is always false and `kmap()` /
//!   `kmap_local_page()` are `page_address()`;
//! - memblock and what the boot takes from it ([`setup`]): the first MiB, the image
//!   ([`image`]) and the brk, the initrd, NODE_DATA, the vmemmap (64-byte `struct page`s),
//!   the per-CPU first chunk, the hash tables, swiotlb, and one named remainder;
//! - the direct map at PAGE_OFFSET 0xffff888000000000 (4-level paging, no KASLR) in tables
//!   in simulated RAM ([`direct_map`]); long mode switched on and the last page of RAM read
//!   back through the MMU;
//! - the zones DMA / DMA32 / Normal, and the empty Movable and Device, on the same buddy
//!   allocator as i386 (the node's [`crate::mmzone::ZoneModel`] says what the zone numbers
//!   mean), `memblock_free_all`,
//!   the `Memory:` line with DEFERRED_STRUCT_PAGE_INIT's count of what is free at that
//!   moment, the late frees of the image, the initrd and the per-CPU pagesets.
//!
//! SLUB, vmalloc, /proc and processes run on the [`crate::Kernel`] this boot becomes
//! ([`kernel`]), which then does the rest of the boot's vmalloc areas and page-attribute
//! changes ([`late`]). The fixmap is not modelled.
//! Deliberate difference: the deferred `struct page`s are freed with the rest in
//! `memblock_free_all` (the `Memory:` line counts them out as the kernel does), so the free
//! lists' order differs from a real boot's, not their contents. Their pageblocks get the types
//! 6.1's deferral leaves (`page_alloc/deferred.rs`): Unmovable where memblock holds a block's
//! first page above `first_deferred_pfn`, as under the vmemmap.

pub(crate) mod direct_map;
pub mod image;
pub mod kernel;
pub mod late;
pub mod setup;

pub use direct_map::DirectMapPages;

use crate::memblock::Memblock;
use crate::mmzone::{PgData, ZoneModel};
use crate::page_alloc::NodeConfig;
use crate::printk::{LogLevel, Printk};
use image::Image64;
use machine::e820::{E820Map, E820Type};
use machine::{CpuFeatures, Cr0, Cr4, Efer, Machine, PhysAddr, PhysMem, VirtAddr, PAGE_SIZE};

/// `__PAGE_OFFSET_BASE_L4`.
pub const PAGE_OFFSET_64: u64 = 0xffff_8880_0000_0000;
/// `MAX_DMA_PFN` (16 MiB).
pub const MAX_DMA_PFN: u64 = (16 << 20) >> 12;
/// `MAX_DMA32_PFN` (4 GiB).
pub const MAX_DMA32_PFN: u64 = (1 << 32) >> 12;
/// Below this the model does not try; above it, whether the image and the initrd fit
/// decides (72 MiB is the smallest machine that boots with the reference's initrd).
pub const MIN_RAM_64: u64 = 64 << 20;

/// One zone of the 64-bit kernel.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Zone64 {
    pub name: &'static str,
    pub start_pfn: u64,
    pub end_pfn: u64,
    pub spanned: u64,
    pub present: u64,
}

/// The booted 64-bit model.
#[derive(Debug)]
pub struct Kernel64 {
    pub machine: Machine,
    pub log: Printk,
    pub max_pfn: u64,
    pub max_low_pfn: u64,
    pub zones: Vec<Zone64>,
    pub pml4: u64,
    /// Page-table pages used by the direct map.
    pub pgt_pages: u64,
    /// The direct map's pages by size (meminfo's DirectMap lines).
    pub direct: DirectMapPages,
    /// The node: zones, `struct page`s, the buddy allocator.
    pub node: PgData,
    /// memblock as the buddy allocator found it.
    pub memblock: Memblock,
    /// Pages of the per-CPU first chunk, per CPU.
    pub percpu_pages: u64,
    pub image: Image64,
    /// The vmalloc area's preallocated PUD pages.
    pub vmalloc_puds: Vec<machine::Pfn>,
    /// The three atomic DMA pools' blocks (pfn, order).
    pub atomic_pools: Vec<(machine::Pfn, u32)>,
    /// `totalram_pages()` when `fork_init` runs: after `mem_init`, before the late frees.
    pub totalram_at_fork_init: u64,
    /// `_brk_end`: the used brk (DMI's strings and the page-table buffer) ends here.
    pub brk_end: u64,
}

/// Why the 64-bit model did not boot.
#[derive(Debug, thiserror::Error)]
pub enum Boot64Error {
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Bug(String),
}

fn bug(e: impl std::fmt::Display) -> Boot64Error {
    Boot64Error::Bug(format!("BUG: {e}"))
}

/// Boot the 64-bit model on a QEMU pc with `ram` bytes, `cpus` CPUs and the reference's
/// initramfs.
pub fn boot_x86_64(ram: u64, cpus: u32) -> Result<Kernel64, Boot64Error> {
    boot_x86_64_with(ram, cpus, crate::boot::profile::DEFAULT_INITRD_SIZE)
}

/// The usable e820 ranges as pfns, page 0 trimmed (`e820__memblock_setup` after setup_arch's
/// trim of the first page).
fn usable_pfns(entries: &[machine::e820::E820Entry]) -> Vec<(u64, u64)> {
    entries
        .iter()
        .filter(|e| e.kind == E820Type::Usable)
        .map(|e| {
            let s = e.addr.as_u64().div_ceil(PAGE_SIZE).max(1);
            (s, (e.addr.as_u64() + e.size) / PAGE_SIZE)
        })
        .filter(|(s, e)| s < e)
        .collect()
}

fn log_e820(log: &mut Printk, e820: &E820Map) {
    log.info("BIOS-provided physical RAM map:");
    for e in e820.entries() {
        log.info(format!(
            "BIOS-e820: [mem {:#018x}-{:#018x}] {}",
            e.addr.as_u64(),
            e.addr.as_u64() + e.size - 1,
            match e.kind {
                E820Type::Usable => "usable",
                E820Type::Reserved => "reserved",
                E820Type::Acpi => "ACPI data",
                E820Type::Nvs => "ACPI NVS",
                _ => "unusable",
            }
        ));
    }
}

/// Boot with an initramfs of `initrd_size` bytes (0: none): the machine, `setup_arch`'s
/// memblock and direct map, the zones, `mm_init`, and the rest of the boot's frees.
pub fn boot_x86_64_with(ram: u64, cpus: u32, initrd_size: u64) -> Result<Kernel64, Boot64Error> {
    boot_x86_64_mem(ram, cpus, initrd_size, None)
}

/// The log lines of a user-defined e820 map, with their levels.
type UserMap = Vec<(LogLevel, String)>;

/// `mem=SIZE` on the 64-bit kernel (`parse_memopt`): the RAM at and above SIZE leaves the
/// e820 table, which is then user-defined (printed again as "user:"). Returns the kernel's
/// lines and the table's usable ranges as pfns.
fn mem_limit(
    e820: &E820Map,
    limit: u64,
    initrd: (u64, u64),
) -> Result<(UserMap, Vec<(u64, u64)>), Boot64Error> {
    let mut t = crate::layout::E820Table::from_firmware(e820);
    let removed = t.range_remove(limit, u64::MAX - limit, Some(E820Type::Usable));
    t.update();
    let usable = usable_pfns(&t.live_entries());
    if initrd.1 > 0 && initrd.0 + initrd.1 > limit {
        return Err(Boot64Error::Config(format!(
            "mem={}M leaves QEMU's initrd at {:#x} above the kernel's RAM: the kernel would \
             move it (relocate_initrd), which the x86_64 model does not; raise mem= or use \
             --initrd 0",
            limit >> 20,
            initrd.0
        )));
    }
    let mut lines = vec![(LogLevel::Debug, removed)];
    lines.push((LogLevel::Info, "user-defined physical RAM map:".to_string()));
    lines.extend(t.print("user").into_iter().map(|l| (LogLevel::Info, l)));
    Ok((lines, usable))
}

/// [`boot_x86_64_with`] with `mem=` (`Some(bytes)`) applied.
pub fn boot_x86_64_mem(
    ram: u64,
    cpus: u32,
    initrd_size: u64,
    mem: Option<u64>,
) -> Result<Kernel64, Boot64Error> {
    if ram < MIN_RAM_64 {
        return Err(Boot64Error::Config(format!(
            "the x86_64 model needs at least {} MiB of RAM",
            MIN_RAM_64 >> 20
        )));
    }
    let cpus = cpus.max(1);
    let e820 = E820Map::qemu_pc(ram).map_err(|e| Boot64Error::Config(e.to_string()))?;
    let initrd = setup::initrd_placement_64(ram, initrd_size);
    let (user_map, usable) = match mem {
        Some(limit) => mem_limit(&e820, limit, initrd)?,
        None => (Vec::new(), usable_pfns(e820.entries())),
    };
    let max_pfn = usable.iter().map(|r| r.1).max().unwrap_or(0);
    let mem = PhysMem::new(&e820.ram_banks())
        .map_err(|e| Boot64Error::Config(format!("cannot reserve host memory for the RAM: {e}")))?;
    let mut machine = Machine::with_features(mem, cpus as usize, CpuFeatures::X86_64);
    // The 64-bit direct map covers all of RAM: the window ends at max_pfn.
    machine.mem.set_window_end(PhysAddr::new(max_pfn << 12));
    let mut log = Printk::new();
    log.info("Linux version 6.1.0-50-amd64 (highmem simulation of x86_64)");
    log_e820(&mut log, &e820);
    log.info("NX (Execute Disable) protection: active");
    for (level, l) in user_map {
        log.log(level, l);
    }
    log.info(format!(
        "last_pfn = {max_pfn:#x} max_arch_pfn = 0x400000000"
    ));
    let img = Image64::debian();
    let brk = early_alloc_pgt_buf(&img, ram)?;
    let (mut mb, pml4, pgt_pages, direct) =
        setup_arch(&mut machine, &mut log, &img, brk, initrd, &usable)?;
    let EarlyNode {
        mut node,
        percpu_pages,
        swiotlb,
    } = zones_and_early_tables(&mut mb, &mut log, &usable, cpus)?;
    let vmalloc_puds = mem_init(&mut node, &mb, &mut log, max_pfn)?;
    node.setup_per_cpu_pageset();
    let totalram_at_fork_init = node.totalram_pages;
    let atomic_pools = late_boot(&mut node, &mut log, &img, initrd, swiotlb)?;
    Ok(Kernel64 {
        machine,
        log,
        max_pfn,
        max_low_pfn: max_pfn,
        zones: zones_of(&node),
        pml4,
        pgt_pages,
        direct,
        node,
        memblock: mb,
        percpu_pages,
        image: img,
        vmalloc_puds,
        atomic_pools,
        totalram_at_fork_init,
        brk_end: brk.1,
    })
}

/// `setup_arch()` up to `initmem_init`: memblock with the image, the brk up to the end of
/// the page-table buffer `brk`, the initrd and the first MiB reserved, the direct map (checked through the MMU), NODE_DATA. Returns memblock, the
/// PML4, the table pages the direct map used and its page sizes.
fn setup_arch(
    machine: &mut Machine,
    log: &mut Printk,
    img: &Image64,
    brk: (u64, u64),
    initrd: (u64, u64),
    usable: &[(u64, u64)],
) -> Result<(Memblock, u64, u64, DirectMapPages), Boot64Error> {
    image_fits(usable, brk.1)?;
    initrd_fits(initrd, brk.1)?;
    let mut mb = setup::memblock_memory(usable);
    setup::early_reserve(&mut mb, img, brk, initrd);
    if initrd.1 > 0 {
        let end = (initrd.0 + initrd.1).div_ceil(PAGE_SIZE) * PAGE_SIZE;
        log.info(format!(
            "RAMDISK: [mem {:#010x}-{:#010x}]",
            initrd.0,
            end - 1
        ));
    }
    let (pml4, pgt_pages, direct) = init_mem_mapping(machine, &mut mb, img, brk, usable)?;
    direct_map::kernel_high_map(&mut machine.mem, pml4, img, brk.1)?;
    let max_pfn = usable.iter().map(|r| r.1).max().unwrap_or(0);
    check_direct_map(machine, max_pfn)?;
    setup::node_data(&mut mb, log)?;
    Ok((mb, pml4, pgt_pages, direct))
}

/// `__brk_limit − __brk_base` of the amd64 image (`_end` 0xffffffff84430000, `__brk_base`
/// 0xffffffff84400000).
pub const BRK_SIZE: u64 = 48 * PAGE_SIZE;

/// `dmi_setup()`, then `early_alloc_pgt_buf()`: the DMI strings take the brk's first bytes
/// (`dmi_alloc` is `extend_brk`), so the page-table buffer starts on the brk's second page.
/// Returns the buffer (start, end); the brk's used part ends with it.
fn early_alloc_pgt_buf(img: &Image64, ram: u64) -> Result<(u64, u64), Boot64Error> {
    let mut brk = crate::boot::brk::Brk::new(img.end, img.end + BRK_SIZE);
    crate::boot::dmi::dmi_setup(&mut brk, ram).map_err(bug)?;
    let size = direct_map::INIT_PGT_BUF_PAGES * PAGE_SIZE;
    let start = brk.extend(size, PAGE_SIZE).map_err(bug)?;
    Ok((start, start + size))
}

/// What the boot has when the zones exist: the node, the per-CPU first chunk's pages per
/// CPU, swiotlb's buffer (base, size).
struct EarlyNode {
    node: PgData,
    percpu_pages: u64,
    swiotlb: Option<(u64, u64)>,
}

/// `initmem_init` → `zone_sizes_init` (the zones and their log lines), `sparse_init`, the
/// per-CPU areas, the zonelists, the hash tables and swiotlb, in the kernel's order.
fn zones_and_early_tables(
    mb: &mut Memblock,
    log: &mut Printk,
    usable: &[(u64, u64)],
    cpus: u32,
) -> Result<EarlyNode, Boot64Error> {
    let max_pfn = usable.iter().map(|r| r.1).max().unwrap_or(0);
    let node_cfg = NodeConfig {
        max_zone_pfn: [
            MAX_DMA_PFN.min(max_pfn),
            MAX_DMA32_PFN.min(max_pfn),
            max_pfn,
            0,
        ],
        memory: usable.to_vec(),
        nr_cpus: cpus as usize,
        pageblock_order: 9,
        thp: true,
        zone_model: ZoneModel::X86_64,
        dma_reserve: setup::memblock_find_dma_reserve(mb, usable),
    };
    let (mut node, lines) = PgData::new(&node_cfg)
        .map_err(|e| Boot64Error::Bug(format!("BUG: free_area_init: {e}")))?;
    for l in lines {
        log.info(l);
    }
    setup::sparse_init(mb, usable)?;
    let percpu_pages = setup::setup_per_cpu_areas(mb, log, cpus)?;
    log.info(node.build_all_zonelists());
    setup::hash_tables(mb, log, node.nr_kernel_pages, node.nr_all_pages)?;
    let swiotlb = setup::swiotlb_init(mb, log, max_pfn, cpus)?;
    setup::unmodelled(mb)?;
    Ok(EarlyNode {
        node,
        percpu_pages,
        swiotlb,
    })
}

/// QEMU loads the initrd at the top of low RAM; on a machine that small the kernel would
/// decompress over it.
fn initrd_fits(initrd: (u64, u64), image_end: u64) -> Result<(), Boot64Error> {
    if initrd.1 == 0 || initrd.0 >= image_end {
        return Ok(());
    }
    Err(Boot64Error::Config(format!(
        "QEMU would load the {} KiB initrd at {:#x}, inside the kernel image (which ends at \
         {:#x}): the machine needs more RAM below 4 GiB",
        initrd.1.div_ceil(1024),
        initrd.0,
        image_end
    )))
}

/// The image (and its brk) must lie in RAM: the loader puts it at 16 MiB whatever the size
/// of the machine.
fn image_fits(usable: &[(u64, u64)], end: u64) -> Result<(), Boot64Error> {
    let start = image::PHYSICAL_START;
    if usable
        .iter()
        .any(|&(s, e)| s * PAGE_SIZE <= start && end <= e * PAGE_SIZE)
    {
        return Ok(());
    }
    Err(Boot64Error::Config(format!(
        "the amd64 kernel's image and brk occupy [{start:#x}, {end:#x}), {} MiB from 16 MiB: \
         this machine's RAM does not hold them",
        (end - start).div_ceil(1 << 20)
    )))
}

/// `init_mem_mapping()`: the first MiB, then every usable range above it; then long mode.
/// Returns the PML4, the table pages used and the page sizes of the map.
fn init_mem_mapping(
    machine: &mut Machine,
    mb: &mut Memblock,
    img: &Image64,
    brk: (u64, u64),
    usable: &[(u64, u64)],
) -> Result<(u64, u64, DirectMapPages), Boot64Error> {
    // init_top_pgt, level3_ident_pgt and level2_ident_pgt live in the image's data.
    let pml4 = img.sdata;
    let (pud, pmd) = (pml4 + PAGE_SIZE, pml4 + 2 * PAGE_SIZE);
    direct_map::head_64_tables(&mut machine.mem, pml4, pud, pmd)?;
    let mut pgt = direct_map::PgtAlloc {
        memblock: mb,
        brk,
        from_memblock: 0,
        pages: 0,
        can_use_brk: true,
        mapped: (0, 1 << 20),
    };
    let mut count = DirectMapPages::default();
    let mem = &mut machine.mem;
    direct_map::map_isa(mem, &mut pgt, pml4, &mut count)?;
    let end = usable.iter().map(|r| r.1).max().unwrap_or(0) * PAGE_SIZE;
    direct_map::memory_map_top_down(mem, &mut pgt, pml4, usable, (1 << 20, end), &mut count)?;
    let pages = pgt.pages;
    // Long mode: PAE + PGE, EFER.LME|NXE, CR3, paging on.
    machine
        .write_cr4(0, Cr4::PAE | Cr4::PGE | Cr4::PSE)
        .map_err(bug)?;
    machine.write_efer(0, Efer::LME | Efer::NXE).map_err(bug)?;
    machine.write_cr3(0, pml4).map_err(bug)?;
    machine
        .write_cr0(
            0,
            Cr0::PE | Cr0::MP | Cr0::ET | Cr0::NE | Cr0::WP | Cr0::AM | Cr0::PG,
        )
        .map_err(bug)?;
    Ok((pml4, pages, count))
}

/// Every page of RAM is reachable through the direct map: write the last one, read it back
/// through the MMU.
fn check_direct_map(machine: &mut Machine, max_pfn: u64) -> Result<(), Boot64Error> {
    let last = (max_pfn - 1) << 12;
    let magic = 0x6836_345f_3634;
    machine
        .mem
        .write_u64(PhysAddr::new(last), magic)
        .map_err(bug)?;
    let got = machine
        .read_virt_u64(0, VirtAddr::new(PAGE_OFFSET_64 + last))
        .map_err(bug)?;
    if got != magic {
        return Err(Boot64Error::Bug(format!(
            "BUG: direct map of {last:#x} reads {got:#x}"
        )));
    }
    machine.mem.write_u64(PhysAddr::new(last), 0).map_err(bug)
}

/// `mem_init()` → `memblock_free_all()`, then `mem_init_print_info()`.
fn mem_init(
    node: &mut PgData,
    mb: &Memblock,
    log: &mut Printk,
    max_pfn: u64,
) -> Result<Vec<machine::Pfn>, Boot64Error> {
    let free = mb.free_pfn_ranges();
    let reserved = mb.reserved_pfn_ranges();
    node.mem_init_free(&free, &reserved, max_pfn)
        .map_err(|e| Boot64Error::Bug(format!("BUG: mem_init: {e}")))?;
    let vmalloc_puds = preallocate_vmalloc_pages(node)?;
    let deferred = node.first_deferred_pfn.map_or(0, |first| {
        free.iter()
            .map(|&(s, e)| e.saturating_sub(s.max(first)))
            .sum()
    });
    log.info(memory_line(node, deferred));
    Ok(vmalloc_puds)
}

/// `VMALLOC_START` / `VMALLOC_END` with 4-level paging (32 TiB).
pub const VMALLOC_START_64: u64 = 0xffff_c900_0000_0000;
pub const VMALLOC_END_64: u64 = 0xffff_e8ff_ffff_ffff;

/// `preallocate_vmalloc_pages()`: with 4-level paging the PUD page under every PGD entry of
/// the vmalloc area, so that no pgd ever needs syncing (GFP_PGTABLE_KERNEL, from the buddy
/// allocator right after `memblock_free_all`).
fn preallocate_vmalloc_pages(node: &mut PgData) -> Result<Vec<machine::Pfn>, Boot64Error> {
    let pgdir = 1u64 << 39;
    let n = (VMALLOC_END_64 - VMALLOC_START_64).div_ceil(pgdir);
    (0..n)
        .map(|_| {
            node.alloc_pages(crate::gfp::GFP_PGTABLE_KERNEL, 0, 0)
                .map(|p| p.pfn)
                .map_err(|e| {
                    Boot64Error::Bug(format!(
                        "Failed to pre-allocate pud pages for vmalloc area: {e}"
                    ))
                })
        })
        .collect()
}

/// `mem_init_print_info()` on x86_64: what is free right now (the deferred pages are not,
/// yet) of the present pages, and the image's sizes.
fn memory_line(node: &PgData, deferred: u64) -> String {
    let k = |pages: u64| pages * (PAGE_SIZE / 1024);
    let physpages: u64 = node.node_zones.iter().map(|z| z.present_pages).sum();
    let [code, rwdata, rodata, init, bss] = Image64::debian().sizes();
    format!(
        "Memory: {}K/{}K available ({}K kernel code, {}K rwdata, {}K rodata, {}K init, {}K bss, {}K reserved, 0K cma-reserved)",
        k(node.nr_free_pages() - deferred),
        k(physpages),
        code >> 10,
        rwdata >> 10,
        rodata >> 10,
        init >> 10,
        bss >> 10,
        k(physpages - node.totalram_pages),
    )
}

/// From `mm_init` to init: the watermarks, swiotlb's line, and what is freed on the way
/// (the SMP alternatives, the initrd, the decrypted section's tail, the init sections and
/// the gaps the 2 MiB alignments left), in the kernel's order.
fn late_boot(
    node: &mut PgData,
    log: &mut Printk,
    img: &Image64,
    initrd: (u64, u64),
    swiotlb: Option<(u64, u64)>,
) -> Result<Vec<(machine::Pfn, u32)>, Boot64Error> {
    let [smp, decrypted, initmem, gap1, gap2] = img.late_frees();
    free_area(node, log, smp)?;
    for l in node.init_per_zone_wmark_min() {
        log.info(l);
    }
    let pools = dma_atomic_pool_init(node, log)?;
    // subsys_initcall(hugepage_init): with THP built in (Debian: madvise) and 512 MiB of
    // RAM, khugepaged starts and raises min_free_kbytes for fragmentation avoidance.
    if node.totalram_pages >= crate::thp::THP_MIN_TOTALRAM_PAGES {
        if let Some(m) = node.set_recommended_min_free_kbytes() {
            log.info(m);
        }
    }
    if let Some((base, size)) = swiotlb {
        log.info(format!(
            "software IO TLB: mapped [mem {:#018x}-{:#018x}] ({}MB)",
            base,
            base + size,
            size >> 20
        ));
    }
    if initrd.1 > 0 {
        let end = (initrd.0 + initrd.1).div_ceil(PAGE_SIZE) * PAGE_SIZE;
        free_area(node, log, (initrd.0, end, "initrd"))?;
    }
    free_area(node, log, decrypted)?;
    free_area(node, log, initmem)?;
    log.info(format!(
        "Write protecting the kernel read-only data: {}k",
        img.rodata_protected_kb()
    ));
    free_area(node, log, gap1)?;
    free_area(node, log, gap2)?;
    Ok(pools)
}

/// postcore_initcall(`dma_atomic_pool_init`): a pool for atomic DMA allocations from each
/// of ZONE_NORMAL's, ZONE_DMA's and ZONE_DMA32's masks, each one block of 128 KiB per GiB of
/// RAM rounded up to an order (at most MAX_ORDER − 1). Returns the blocks, held for good.
fn dma_atomic_pool_init(
    node: &mut PgData,
    log: &mut Printk,
) -> Result<Vec<(machine::Pfn, u32)>, Boot64Error> {
    use crate::gfp::{Gfp, GFP_KERNEL};
    let max_order = crate::mmzone::MAX_ORDER as u64;
    let pages = (node.totalram_pages / ((1 << 30) / (128 << 10))).min(1 << (max_order - 1));
    let size = (pages * PAGE_SIZE).max(128 << 10);
    let order = size
        .div_ceil(PAGE_SIZE)
        .next_power_of_two()
        .trailing_zeros();
    let order = order.min(max_order as u32 - 1);
    let mut held = Vec::new();
    for (gfp, name) in [
        (GFP_KERNEL, "GFP_KERNEL"),
        (GFP_KERNEL | Gfp::DMA, "GFP_KERNEL|GFP_DMA"),
        (GFP_KERNEL | Gfp::DMA32, "GFP_KERNEL|GFP_DMA32"),
    ] {
        let got = node
            .alloc_pages(gfp | Gfp::NOWARN, order, 0)
            .map_err(|e| Boot64Error::Bug(format!("DMA: failed to allocate {name} pool: {e}")))?;
        held.push((got.pfn, order));
        log.info(format!(
            "DMA: preallocated {} KiB {name} pool for atomic allocations",
            (PAGE_SIZE << order) >> 10
        ));
    }
    Ok(held)
}

/// `free_reserved_area()` over physical `[start, end)` with its "Freeing … memory" line.
fn free_area(
    node: &mut PgData,
    log: &mut Printk,
    (start, end, what): (u64, u64, &str),
) -> Result<(), Boot64Error> {
    let (_, msg) = node
        .free_reserved_area(
            machine::Pfn::new(start / PAGE_SIZE),
            machine::Pfn::new(end / PAGE_SIZE),
            0,
            Some(what),
        )
        .map_err(|e| Boot64Error::Bug(format!("BUG: {e}")))?;
    if let Some(m) = msg {
        log.info(m);
    }
    Ok(())
}

/// The populated zones' spans, for the log's checks.
fn zones_of(node: &PgData) -> Vec<Zone64> {
    node.node_zones
        .iter()
        .filter(|z| z.spanned_pages > 0)
        .map(|z| Zone64 {
            name: z.name,
            start_pfn: z.zone_start_pfn,
            end_pfn: z.zone_end_pfn(),
            spanned: z.spanned_pages,
            present: z.present_pages,
        })
        .collect()
}

impl Kernel64 {
    /// `page_address()` — and `kmap()`, `kmap_local_page()`: always the direct map.
    pub fn page_address(&self, pfn: u64) -> Option<u64> {
        (pfn < self.max_low_pfn).then(|| PAGE_OFFSET_64 + (pfn << 12))
    }

    /// `PageHighMem()`: never.
    pub fn page_high_mem(&self, _pfn: u64) -> bool {
        false
    }

    /// Where a page-table page is read: the direct map, whatever page it is (no
    /// pte_offset_map kmap on 64-bit).
    pub fn pte_page_address(&self, pfn: u64) -> Option<u64> {
        self.page_address(pfn)
    }

    /// Read a u64 at a kernel virtual address through the MMU.
    pub fn read_virt_u64(&mut self, va: u64) -> Result<u64, machine::AccessError> {
        self.machine.read_virt_u64(0, VirtAddr::new(va))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zones_of_8g() {
        let k = boot_x86_64(8 << 30, 1).unwrap();
        let names: Vec<_> = k.zones.iter().map(|z| z.name).collect();
        assert_eq!(names, ["DMA", "DMA32", "Normal"]);
        assert_eq!(k.zones[1].end_pfn, MAX_DMA32_PFN);
        assert_eq!(k.zones[2].start_pfn, MAX_DMA32_PFN);
        // QEMU puts 3 GiB below the 1 GiB PCI hole and 5 GiB above 4 GiB.
        assert_eq!(k.max_pfn, (8u64 << 30 >> 12) + (1 << 18));
        let total: u64 = k.zones.iter().map(|z| z.present).sum();
        assert!(total > (8u64 << 30 >> 12) - 1024, "{total}");
        assert!(k.log.console().any(|l| l == "  Device   empty"));
    }

    #[test]
    fn machines_too_small_for_the_image_or_the_initrd_say_why() {
        for (mib, why) in [(64, "image and brk"), (69, "initrd")] {
            match boot_x86_64(mib << 20, 1) {
                Err(Boot64Error::Config(m)) => assert!(m.contains(why), "{mib} MiB: {m}"),
                other => panic!("{mib} MiB: {other:?}"),
            }
        }
        let k = boot_x86_64(72 << 20, 1).expect("72 MiB holds image and initrd");
        assert!(k.log.console().any(|l| l.starts_with("Memory: ")));
    }

    #[test]
    fn small_machine_has_no_normal_zone_and_every_page_is_mapped() {
        let mut k = boot_x86_64(2 << 30, 1).unwrap();
        assert_eq!(k.zones.len(), 2);
        assert!(k.log.console().any(|l| l == "  Normal   empty"));
        for pfn in [1, 0x1000, k.max_pfn - 1] {
            let va = k.page_address(pfn).unwrap();
            k.read_virt_u64(va).unwrap();
            assert!(!k.page_high_mem(pfn));
        }
    }
}
