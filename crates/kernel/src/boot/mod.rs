//! The boot of the simulated kernel, in the order Linux 6.1 i386 does it.
//!
//! `boot()` replays `setup_arch()` and `start_kernel()` as far as memory management goes:
//! the firmware map and layout, head_32's provisional page tables and paging switched on
//! in the simulated CPU, memblock and its reservations, the direct map in swapper_pg_dir
//! (CR3 switched to it), the relocated initrd, zones and mem_map, per-CPU areas, the early
//! hash tables, swiotlb, and finally `mem_init()` handing every free page to the buddy
//! allocator. The later events of a boot that change free memory (freeing the SMP
//! alternatives, the initrd and the init sections, khugepaged raising min_free_kbytes) are
//! replayed too, so /proc after `boot()` matches /proc after a real boot.
//!
//! From the moment paging is on, the kernel's own virtual addresses translate through the
//! simulated MMU; `boot()` checks that they do, so a wrong page-table entry stops the boot
//! with a kernel-style error rather than going unnoticed.

pub mod brk;
pub mod hash;
pub mod head_32;
pub mod init_32;
pub mod profile;

use crate::cmdline::CmdLine;
use crate::config::KernelConfig;
use crate::gfp::{Gfp, GFP_HIGHUSER_MOVABLE, GFP_KERNEL};
use crate::highmem::{KmapLocal, KmapLocalArea, PageAddressHash};
use crate::layout::{setup_layout, Layout};
use crate::memblock::Memblock;
use crate::mmzone::PgData;
use crate::page_alloc::NodeConfig;
use crate::pgtable::Geometry;
use crate::pgtable_types::{PteMasks, _PAGE_PRESENT};
use crate::printk::{KernMsg, LogLevel, Printk};
use brk::Brk;
use init_32::{DirectPagesCount, KernelMapCtx, PgtBuf, ISA_END_ADDRESS};
use machine::e820::E820Map;
use machine::{
    Access, BusError, Cr0, Cr4, Efer, Machine, Pfn, PhysAddr, PhysMem, VirtAddr, PAGE_SIZE,
};
use profile::BootProfile;

/// Why the simulated boot stopped.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BootError {
    /// The machine or kernel configuration cannot boot (a clear user error).
    #[error("{0}")]
    Config(String),
    /// The kernel would panic here.
    #[error("Kernel panic - not syncing: {0}")]
    Panic(String),
    /// A kernel BUG.
    #[error("{0}")]
    Bug(String),
    /// A physical access outside RAM (a simulator-level bug made visible).
    #[error("bus error: {0}")]
    Bus(#[from] BusError),
}

impl From<machine::CpuError> for BootError {
    fn from(e: machine::CpuError) -> Self {
        BootError::Bug(format!("BUG: CPU: {e}"))
    }
}

/// What to boot: the machine and the kernel.
#[derive(Clone, Debug)]
pub struct BootOptions {
    /// RAM in bytes (QEMU `-m`).
    pub ram: u64,
    /// CPUs (QEMU `-smp`).
    pub cpus: u32,
    pub kernel: KernelConfig,
    /// The kernel command line as given (QEMU `-append`).
    pub cmdline: String,
    /// Size of the initramfs QEMU loads (`-initrd`), 0 for none.
    pub initrd_size: u64,
    /// Replay what userspace and drivers hold after boot (the preset's runtime profile).
    pub runtime_profile: bool,
}

impl BootOptions {
    /// The reference machine: QEMU pc, the given RAM and kernel, the reference initramfs.
    pub fn new(ram: u64, cpus: u32, kernel: KernelConfig) -> Self {
        BootOptions {
            ram,
            cpus,
            kernel,
            cmdline: String::new(),
            initrd_size: profile::DEFAULT_INITRD_SIZE,
            runtime_profile: true,
        }
    }
}

/// Named memblock reservations at mem_init time, for the report.
pub type ReservedReport = Vec<(&'static str, u64)>;

/// A booted kernel on its machine.
#[derive(Debug)]
pub struct Kernel {
    pub config: KernelConfig,
    pub layout: Layout,
    pub machine: Machine,
    pub memblock: Memblock,
    pub node: PgData,
    pub log: Printk,
    pub geo: Geometry,
    pub masks: PteMasks,
    pub profile: BootProfile,
    /// Physical address of swapper_pg_dir.
    pub swapper_pg_dir: u64,
    /// Physical address of the pkmap page table.
    pub pkmap_page_table: u64,
    /// Physical address of mem_map (the struct pages themselves live in `node.mem_map`).
    pub mem_map_phys: u64,
    pub direct_pages: DirectPagesCount,
    pub kmap_area: KmapLocalArea,
    pub kmap_local: KmapLocal,
    /// `page_address_htable`: kmap() addresses of highmem pages.
    pub page_address_htable: PageAddressHash,
    /// memblock.reserved by name when the buddy allocator took over.
    pub reserved_at_mem_init: ReservedReport,
    /// Pages held by the runtime profile (lowmem, highmem), freed by nobody.
    pub runtime_pages: Vec<(Pfn, u32)>,
    /// Pages of per-CPU areas (meminfo `Percpu`).
    pub percpu_pages: u64,
    /// `sysctl_admin_reserve_kbytes` / `sysctl_user_reserve_kbytes` (set by subsys initcalls).
    pub admin_reserve_kbytes: u64,
    pub user_reserve_kbytes: u64,
}

fn pa(cfg: &KernelConfig, va: u64) -> u64 {
    va - cfg.page_offset()
}

/// Boot the kernel on a fresh machine.
pub fn boot(opts: &BootOptions) -> Result<Kernel, BootError> {
    let cfg = opts.kernel.clone();
    let cmdline = CmdLine::parse(&opts.cmdline).map_err(|e| BootError::Config(e.to_string()))?;
    let e820 = E820Map::qemu_pc(opts.ram).map_err(|e| BootError::Config(e.to_string()))?;
    let layout = setup_layout(&e820, &cfg, &cmdline, opts.cpus)
        .map_err(|e| BootError::Config(e.to_string()))?;
    let mem = PhysMem::new(&e820.ram_banks())
        .map_err(|e| BootError::Config(format!("cannot reserve host memory for the RAM: {e}")))?;
    let mut machine = Machine::new(mem, opts.cpus as usize);
    let geo = Geometry::new(cfg.pae);
    let features = machine.cpus[0].features;
    let masks = PteMasks::new(cfg.pae, features.nx, features.pge, cfg.page_table_isolation);
    let profile = BootProfile::for_config(&cfg);
    let page_offset = cfg.page_offset();
    let image = cfg.image;

    let mut log = Printk::new();
    log.info(format!(
        "Linux version {} (highmem simulation of {})",
        cfg.release, cfg.name
    ));

    // ---- head_32: provisional page tables, paging on --------------------------------------
    let mut brk = Brk::new(pa(&cfg, image.brk_base), pa(&cfg, image.brk_limit));
    let initial_page_table = pa(&cfg, image.initial_page_table);
    let initial_pg_pmd = pa(&cfg, image.bss_start);
    let early = head_32::mk_early_pgtbl_32(
        &mut machine.mem,
        geo,
        &mut brk,
        page_offset,
        initial_page_table,
        initial_pg_pmd,
        pa(&cfg, image.end),
    )?;
    let expected_early = crate::layout::initial_mapped_pfn(&cfg) * PAGE_SIZE;
    if early.mapped_end != expected_early {
        return Err(BootError::Bug(format!(
            "BUG: head_32 mapped up to {:#x}, the layout expected {:#x}",
            early.mapped_end, expected_early
        )));
    }
    let mut cr4 = Cr4::empty();
    if cfg.pae {
        cr4 |= Cr4::PAE;
        machine.write_cr4(0, cr4)?;
        if features.nx {
            machine.write_efer(0, Efer::NXE)?;
        }
    }
    machine.write_cr3(0, initial_page_table)?;
    let cr0 = Cr0::PE | Cr0::MP | Cr0::ET | Cr0::NE | Cr0::WP | Cr0::AM | Cr0::PG;
    machine.write_cr0(0, cr0)?;
    check_kernel_mapping(&mut machine, image.text, pa(&cfg, image.text), "head_32")?;

    // setup_arch's early log: e820, NX, last_pfn … up to the initrd.
    let layout_msgs = layout.messages.clone();
    let split = layout_msgs
        .iter()
        .position(|m| {
            m.text.ends_with("MB HIGHMEM available.") || m.text.ends_with("MB LOWMEM available.")
        })
        .unwrap_or(layout_msgs.len());
    let last_e820 = layout_msgs[..split]
        .iter()
        .rposition(|m| m.text.starts_with("BIOS-e820:"))
        .map_or(0, |i| i + 1);
    log.extend(layout_msgs[..last_e820].iter().cloned());
    if cfg.pae && features.nx {
        log.info("NX (Execute Disable) protection: active");
    } else if !cfg.pae {
        log.log(
            LogLevel::Notice,
            "Notice: NX (Execute Disable) protection cannot be enabled: non-PAE kernel!",
        );
    }
    log.extend(layout_msgs[last_e820..split].iter().cloned());

    // ---- memblock ---------------------------------------------------------------------------
    let mut memblock = Memblock::new();
    let pgt_buf_first = PgtBuf::new(&mut brk)?;
    let mut pgt_buf = pgt_buf_first;
    memblock.reserve(
        pa(&cfg, image.text),
        image.bss_stop - image.text,
        "kernel image",
    );
    memblock.reserve(brk.base, brk.end - brk.base, "brk (early page tables)");
    let (initrd_start, initrd_size) = initrd_placement(opts.ram, opts.initrd_size)?;
    if initrd_size > 0 {
        memblock.reserve(
            initrd_start,
            (initrd_size).div_ceil(PAGE_SIZE) * PAGE_SIZE,
            "initrd",
        );
    }
    for r in &layout.memblock_memory {
        memblock.add(r.base, r.size);
    }
    // reserve_real_mode(): the trampoline and everything else below 1 MiB stays reserved.
    memblock.reserve(
        0,
        ISA_END_ADDRESS,
        "first 1 MiB (BIOS, real-mode trampoline)",
    );
    memblock.set_current_limit(ISA_END_ADDRESS);

    // ---- init_mem_mapping: the direct map in swapper_pg_dir ----------------------------------
    if features.pse {
        cr4 |= Cr4::PSE;
    }
    if features.pge {
        cr4 |= Cr4::PGE;
    }
    machine.write_cr4(0, cr4)?;
    let swapper = pa(&cfg, image.swapper_pg_dir);
    // clone_pgd_range(): the kernel part of initial_page_table goes into swapper_pg_dir.
    let boundary = geo.pgd_index(page_offset);
    for i in boundary..geo.ptrs_per_pgd() {
        let e = geo.read(&machine.mem, PhysAddr::new(initial_page_table), i)?;
        geo.write(&mut machine.mem, PhysAddr::new(swapper), i, e)?;
    }
    let ctx = KernelMapCtx {
        geo,
        masks,
        page_offset,
        pgd: swapper,
        text_start: pa(&cfg, image.text),
        init_end: pa(&cfg, image.init_end),
        use_pse: features.pse && layout.pse,
    };
    let lowmem_end = layout.max_low_pfn.phys().as_u64();
    pgt_buf.min_mapped = 0;
    pgt_buf.max_mapped = early.mapped_end;
    let mut direct = DirectPagesCount::default();
    let mut ranges = vec![(0, ISA_END_ADDRESS)];
    // memory_map_top_down: start below a free PMD-sized block near the top of low memory.
    let real_end = match memblock.alloc_range(
        geo.pmd_size(),
        geo.pmd_size(),
        ISA_END_ADDRESS,
        lowmem_end,
        "probe",
    ) {
        Ok(p) => {
            memblock.free(p.as_u64(), geo.pmd_size());
            p.as_u64() + geo.pmd_size()
        }
        Err(_) => lowmem_end,
    };
    ranges.extend(init_32::memory_map_top_down(
        geo,
        ISA_END_ADDRESS,
        lowmem_end,
        real_end,
    ));
    for (i, &(start, end)) in ranges.iter().enumerate() {
        // init_range_memory_mapping: only RAM inside the range (the first MiB is mapped whole).
        let pieces: Vec<(u64, u64)> = if i == 0 {
            vec![(start, end)]
        } else {
            memblock
                .memory
                .iter()
                .filter_map(|r| {
                    let s = r.base.max(start);
                    let e = r.end().min(end);
                    (s < e).then_some((s, e))
                })
                .collect()
        };
        for (s, e) in pieces {
            let use_large = i != 0 && ctx.use_pse;
            for mr in init_32::split_mem_range(geo, s, e, use_large) {
                ctx.kernel_physical_mapping_init(
                    &mut machine,
                    &mut memblock,
                    &mut pgt_buf,
                    mr,
                    &mut direct,
                )?;
            }
            pgt_buf.min_mapped = pgt_buf.min_mapped.min(s);
            pgt_buf.max_mapped = pgt_buf.max_mapped.max(e);
        }
    }
    // early_ioremap_page_table_range_init(): page tables for the whole fixmap, allocated in
    // ascending address order so the kmap_local PTEs form one array.
    let fixmap = &layout.areas.fixmap;
    let fix_lo = (layout.areas.fixaddr_tot_start + PAGE_SIZE) & geo.pmd_mask();
    let fix_hi = (cfg.fixaddr_top + geo.pmd_size() - 1) & geo.pmd_mask();
    ctx.page_table_range_init(
        &mut machine.mem,
        &mut memblock,
        &mut pgt_buf,
        fix_lo,
        fix_hi,
    )?;
    // load_cr3(swapper_pg_dir); __flush_tlb_all().
    machine.write_cr3(0, swapper)?;
    machine.flush_all(0)?;
    memblock.set_current_limit(lowmem_end);
    check_kernel_mapping(
        &mut machine,
        image.text,
        pa(&cfg, image.text),
        "init_mem_mapping",
    )?;
    check_kernel_mapping(
        &mut machine,
        page_offset + lowmem_end - PAGE_SIZE,
        lowmem_end - PAGE_SIZE,
        "init_mem_mapping",
    )?;

    // ---- reserve_initrd: move it into low memory if it is not there ------------------------
    if initrd_size > 0 {
        let end_aligned = (initrd_start + initrd_size).div_ceil(PAGE_SIZE) * PAGE_SIZE;
        log.info(format!(
            "RAMDISK: [mem {:#010x}-{:#010x}]",
            initrd_start,
            end_aligned - 1
        ));
        if end_aligned > lowmem_end {
            let area = initrd_size.div_ceil(PAGE_SIZE) * PAGE_SIZE;
            let new = memblock
                .alloc_range(area, PAGE_SIZE, 0, lowmem_end, "initrd")
                .map_err(|_| {
                    BootError::Panic(format!(
                        "Cannot find place for new RAMDISK of size {initrd_size}"
                    ))
                })?
                .as_u64();
            log.info(format!(
                "Allocated new RAMDISK: [mem {:#010x}-{:#010x}]",
                new,
                new + initrd_size - 1
            ));
            log.info(format!(
                "Move RAMDISK from [mem {:#010x}-{:#010x}] to [mem {:#010x}-{:#010x}]",
                initrd_start,
                initrd_start + initrd_size - 1,
                new,
                new + initrd_size - 1
            ));
            memblock.free(initrd_start, end_aligned - initrd_start);
            memblock.reserve(new, area, "initrd");
        }
    }
    // initmem_init's lines (… HIGHMEM / LOWMEM available, zone ranges, node ranges).
    log.extend(layout_msgs[split..].iter().cloned());

    // ---- paging_init: pkmap page table, zones and mem_map --------------------------------
    let pkmap_base = layout.areas.pkmap_base;
    let pkmap_pages = ctx.page_table_range_init(
        &mut machine.mem,
        &mut memblock,
        &mut pgt_buf,
        pkmap_base,
        pkmap_base + layout.areas.last_pkmap * PAGE_SIZE,
    )?;
    let pkmap_page_table = pkmap_pages.first().copied().unwrap_or(0);
    machine.flush_all(0)?;

    let memory: Vec<(u64, u64)> = memblock
        .memory
        .iter()
        .filter_map(|r| {
            let s = r.base.div_ceil(PAGE_SIZE);
            let e = r.end() / PAGE_SIZE;
            (s < e).then_some((s, e))
        })
        .collect();
    let dma_end = crate::config::MAX_DMA_PFN.min(layout.max_low_pfn.as_u64());
    let node_cfg = NodeConfig {
        max_zone_pfn: [
            dma_end,
            layout.max_low_pfn.as_u64(),
            layout.max_pfn.as_u64(),
            0,
        ],
        memory,
        nr_cpus: opts.cpus as usize,
        pageblock_order: if cfg.pae { 9 } else { 10 },
        thp: true,
    };
    // alloc_node_mem_map(): the FLATMEM array, from memblock, in low memory.
    let mem_map_phys = memblock
        .alloc_range(layout.mem_map_bytes, 32, 0, u64::MAX, "mem_map")
        .map_err(|e| BootError::Panic(format!("Failed to allocate memory map: {e}")))?
        .as_u64();
    let (mut node, node_msgs) =
        PgData::new(&node_cfg).map_err(|e| BootError::Config(format!("free_area_init: {e}")))?;
    node.current_comm = "swapper/0".to_string();
    // free_area_init_core(): one pageblock-flags bitmap per zone.
    for z in &node.node_zones {
        if z.spanned_pages > 0 {
            memblock
                .alloc_range(z.usemap_size().max(1), 32, 0, u64::MAX, "pageblock flags")
                .map_err(|e| BootError::Panic(e.to_string()))?;
        }
    }
    // The zone-range lines came with the layout; keep free_area_init's hole reports.
    let after_initmem = node_msgs
        .iter()
        .position(|l| l.starts_with("Initmem setup node"))
        .map_or(0, |i| i + 1);
    for l in &node_msgs[after_initmem..] {
        log.info(l.clone());
    }

    // ---- setup_per_cpu_areas: the embedded first chunk ------------------------------------
    let unit = profile.percpu_unit();
    log.info(format!(
        "setup_percpu: NR_CPUS:{} nr_cpumask_bits:{} nr_cpu_ids:{} nr_node_ids:1",
        cfg.nr_cpus, opts.cpus, opts.cpus
    ));
    memblock
        .alloc_range(
            unit * opts.cpus as u64,
            PAGE_SIZE,
            0,
            u64::MAX,
            "per-CPU areas",
        )
        .map_err(|e| BootError::Panic(format!("Failed to initialize percpu areas: {e}")))?;
    log.info(format!(
        "percpu: Embedded {} pages/cpu s{} r0 d{} u{}",
        unit / PAGE_SIZE,
        profile.percpu_static,
        unit - profile.percpu_static,
        unit
    ));
    let percpu_pages = unit / PAGE_SIZE * opts.cpus as u64;
    // pcpu_setup_first_chunk(): group/unit maps, slot lists, the first chunk with its
    // allocation and boundary bitmaps (one bit per 4 bytes) and per-page block metadata.
    let region_bits = unit / 4;
    let ncpu = u64::from(opts.cpus);
    for size in [
        4,
        4,
        4 * ncpu,
        4 * ncpu,
        8 * 15,
        96,
        region_bits.div_ceil(32) * 4,
        (region_bits + 1).div_ceil(32) * 4,
        (unit / PAGE_SIZE) * 28,
    ] {
        memblock
            .alloc_range(size, 32, 0, u64::MAX, "per-CPU metadata")
            .map_err(|e| BootError::Panic(format!("Failed to allocate percpu metadata: {e}")))?;
    }

    // ---- build_all_zonelists, command line, early hashes ----------------------------------
    log.info(node.build_all_zonelists());
    log.info(format!("Kernel command line: {}", opts.cmdline));
    for (name, scale) in [("Dentry cache", 13u32), ("Inode-cache", 14u32)] {
        let (entries, order, bytes) =
            hash::large_system_hash(node.nr_kernel_pages, node.nr_all_pages, 4, scale);
        memblock
            .alloc_range(bytes, PAGE_SIZE, 0, u64::MAX, "early hash tables")
            .map_err(|e| BootError::Panic(format!("Failed to allocate {name} hash table: {e}")))?;
        log.info(format!(
            "{name} hash table entries: {entries} (order: {order}, {bytes} bytes, linear)"
        ));
    }

    // ---- trap_init → setup_cpu_entry_areas(): page tables for the CPU entry area ----------
    let cea = layout.areas.cpu_entry_area_base;
    ctx.page_table_range_init(
        &mut machine.mem,
        &mut memblock,
        &mut pgt_buf,
        cea,
        cea + layout.areas.cpu_entry_area_map_size,
    )?;

    // ---- mem_init ----------------------------------------------------------------------
    // pci_iommu_alloc(): swiotlb when memory reaches beyond 32-bit DMA.
    let mut swiotlb = None;
    if layout.max_pfn.as_u64() > (1 << 20) {
        log.info(format!("software IO TLB: area num {}.", opts.cpus));
        let size = 64 << 20;
        let base = memblock
            .alloc_range(size, PAGE_SIZE, 0, u64::MAX, "swiotlb")
            .map_err(|e| BootError::Panic(format!("Cannot allocate buffer: {e}")))?
            .as_u64();
        let slot_size = if cfg.pae { 16 } else { 12 };
        let slots = (size >> 11) * slot_size;
        memblock
            .alloc_range(
                slots.div_ceil(PAGE_SIZE) * PAGE_SIZE,
                PAGE_SIZE,
                0,
                u64::MAX,
                "swiotlb",
            )
            .map_err(|e| BootError::Panic(format!("Cannot allocate swiotlb slots: {e}")))?;
        swiotlb = Some((base, size));
    }
    let reserved_at_mem_init = memblock.reserved_by_name();
    let free: Vec<(u64, u64)> = memblock
        .free_ranges(0, u64::MAX)
        .into_iter()
        .filter_map(|(s, e)| {
            let (s, e) = (s.div_ceil(PAGE_SIZE), e / PAGE_SIZE);
            (s < e).then_some((s, e))
        })
        .collect();
    let reserved: Vec<(u64, u64)> = memblock
        .reserved
        .iter()
        .map(|r| (r.base / PAGE_SIZE, r.end().div_ceil(PAGE_SIZE)))
        .collect();
    let lines = node
        .mem_init_free(&free, &reserved, layout.max_low_pfn.as_u64())
        .map_err(|e| BootError::Bug(format!("BUG: mem_init: {e}")))?;
    for l in lines {
        log.info(l);
    }
    test_wp_bit(&mut machine, &cfg, &layout, &ctx, &mut log)?;
    log.info(memory_line(&cfg, &node));
    // start_kernel, after mm_init: the real per-CPU pagesets replace the boot pageset.
    node.setup_per_cpu_pageset();

    let kmap_pte_va = fixmap.fix_to_virt(fixmap.index("FIX_KMAP_BEGIN").unwrap_or(0));
    let kmap_area = KmapLocalArea {
        geo,
        fixaddr_top: cfg.fixaddr_top,
        fix_kmap_begin: fixmap.index("FIX_KMAP_BEGIN").unwrap_or(0),
        km_max_idx: cfg.km_max_idx(),
        kmap_pte: kernel_pte_phys(&machine.mem, geo, swapper, kmap_pte_va)?,
        prot: masks.page_kernel(),
    };

    let cfg_sizeof_page = cfg.sizeof_struct_page as u32;
    let mut k = Kernel {
        kmap_local: KmapLocal::new(opts.cpus as usize),
        config: cfg,
        layout,
        machine,
        memblock,
        node,
        log,
        geo,
        masks,
        profile,
        swapper_pg_dir: swapper,
        pkmap_page_table,
        mem_map_phys,
        direct_pages: direct,
        kmap_area,
        page_address_htable: PageAddressHash::new(
            (mem_map_phys + page_offset) as u32,
            cfg_sizeof_page,
        ),
        reserved_at_mem_init,
        runtime_pages: Vec::new(),
        percpu_pages,
        admin_reserve_kbytes: 0,
        user_reserve_kbytes: 0,
    };
    k.late_boot(swiotlb)?;
    if opts.runtime_profile {
        k.apply_runtime_profile()?;
    }
    Ok(k)
}

/// Where QEMU's loader puts the initramfs: at the top of RAM below 4 GiB (minus the 128 KiB
/// of ACPI tables), capped by the kernel header's `initrd_addr_max` (2 GiB - 1), page
/// aligned. Returns (start, size); QEMU refuses to start when the initrd does not fit.
fn initrd_placement(ram: u64, size: u64) -> Result<(u64, u64), BootError> {
    if size == 0 {
        return Ok((0, 0));
    }
    let (below_4g, _) = machine::e820::qemu_pc_ram_split(ram);
    let initrd_max = (below_4g.saturating_sub(0x2_0000).saturating_sub(1)).min(0x7fff_ffff);
    if size >= initrd_max {
        return Err(BootError::Config(format!(
            "qemu: initrd is too large, cannot support ({size} bytes, at most {initrd_max} below \
             the top of low RAM)"
        )));
    }
    Ok(((initrd_max - size) & !(PAGE_SIZE - 1), size))
}

/// The boot checks its own mappings through the MMU, as a real kernel implicitly does by
/// running: if the kernel's address does not reach the right frame, stop with a BUG.
fn check_kernel_mapping(
    m: &mut Machine,
    va: u64,
    expect_pa: u64,
    who: &str,
) -> Result<(), BootError> {
    match m.translate(0, VirtAddr::new(va), Access::KERNEL_READ) {
        Ok(p) if p.as_u64() == expect_pa => Ok(()),
        Ok(p) => Err(BootError::Bug(format!(
            "BUG: {who}: {va:#x} maps to {:#x}, expected {expect_pa:#x}",
            p.as_u64()
        ))),
        Err(e) => Err(BootError::Bug(format!(
            "BUG: unable to handle page fault for address: {va:#010x} ({who}: {e})"
        ))),
    }
}

/// `virt_to_kpte()` for a fixmap/pkmap address: the physical address of its PTE.
fn kernel_pte_phys(mem: &PhysMem, geo: Geometry, pgd: u64, va: u64) -> Result<u64, BootError> {
    let pgd_e = geo.read(mem, PhysAddr::new(pgd), geo.pgd_index(va))?;
    let pmd_table = if geo.pae {
        if pgd_e & _PAGE_PRESENT == 0 {
            return Err(BootError::Bug(format!("BUG: no PMD for {va:#x}")));
        }
        geo.entry_table(pgd_e).as_u64()
    } else {
        pgd
    };
    let pmd_idx = if geo.pae {
        geo.pmd_index(va)
    } else {
        geo.pgd_index(va)
    };
    let pmd_e = geo.read(mem, PhysAddr::new(pmd_table), pmd_idx)?;
    if pmd_e & _PAGE_PRESENT == 0 {
        return Err(BootError::Bug(format!("BUG: no page table for {va:#x}")));
    }
    Ok(geo.entry_table(pmd_e).as_u64() + geo.pte_index(va) * geo.entry_size())
}

/// `test_wp_bit()`: map the zero page read-only at FIX_WP_TEST and try to write it from
/// kernel mode. With CR0.WP the simulated MMU must refuse; if it does not, the kernel
/// panics ("Linux doesn't support CPUs with broken WP.").
fn test_wp_bit(
    m: &mut Machine,
    cfg: &KernelConfig,
    layout: &Layout,
    ctx: &KernelMapCtx,
    log: &mut Printk,
) -> Result<(), BootError> {
    let fixmap = &layout.areas.fixmap;
    let Some(idx) = fixmap.index("FIX_WP_TEST") else {
        return Ok(());
    };
    let va = fixmap.fix_to_virt(idx);
    let zero_page = pa(cfg, cfg.image.swapper_pg_dir) + swapper_pg_dir_size(cfg);
    let pte = kernel_pte_phys(&m.mem, ctx.geo, ctx.pgd, va)?;
    let ro = crate::pgtable_types::__PAGE_KERNEL_RO & ctx.masks.default_kernel;
    ctx.geo
        .write(&mut m.mem, PhysAddr::new(pte), 0, zero_page | ro)?;
    let res = m.write_virt(0, VirtAddr::new(va), &[0u8]);
    ctx.geo.write(&mut m.mem, PhysAddr::new(pte), 0, 0)?;
    m.invlpg(0, VirtAddr::new(va))?;
    match res {
        Err(e) if e.page_fault().is_some() => {
            log.info("Checking if this processor honours the WP bit even in supervisor mode...Ok.");
            Ok(())
        }
        _ => Err(BootError::Panic(
            "Linux doesn't support CPUs with broken WP.".into(),
        )),
    }
}

/// `sizeof(swapper_pg_dir)`: two pages with PAE + PTI (PGD_ALLOCATION_ORDER 1), else one.
/// `empty_zero_page` follows it in the BSS, and `idt_table` follows that.
fn swapper_pg_dir_size(cfg: &KernelConfig) -> u64 {
    if cfg.pae && cfg.page_table_isolation {
        2 * PAGE_SIZE
    } else {
        PAGE_SIZE
    }
}

/// `mem_init_print_info()`.
fn memory_line(cfg: &KernelConfig, node: &PgData) -> String {
    let k = |pages: u64| pages * (PAGE_SIZE / 1024);
    let physpages: u64 = node.node_zones.iter().map(|z| z.present_pages).sum();
    let sizes = cfg.image.sizes();
    format!(
        "Memory: {}K/{}K available ({}K kernel code, {}K rwdata, {}K rodata, {}K init, {}K bss, {}K reserved, 0K cma-reserved, {}K highmem)",
        k(node.nr_free_pages()),
        k(physpages),
        sizes.code >> 10,
        sizes.rwdata >> 10,
        sizes.rodata >> 10,
        sizes.init >> 10,
        sizes.bss >> 10,
        k(physpages - node.totalram_pages),
        k(node.totalhigh_pages)
    )
}

impl Kernel {
    /// What happens between mem_init and userspace that changes free memory, in order.
    fn late_boot(&mut self, swiotlb: Option<(u64, u64)>) -> Result<(), BootError> {
        let cfg = self.config.clone();
        let img = cfg.image;
        let bug = |e: crate::page_alloc::FreeError| BootError::Bug(format!("BUG: {e}"));
        // kernel_init_freeable(): from here allocations may sleep and do I/O.
        self.node.gfp_allowed_mask = crate::gfp::__GFP_BITS_MASK;
        // alternative_instructions(): the SMP lock prefixes between __init_end and the BSS.
        let (_, msg) = self
            .node
            .free_reserved_area(
                Pfn::new(pa(&cfg, img.init_end) / PAGE_SIZE),
                Pfn::new(pa(&cfg, img.bss_start) / PAGE_SIZE),
                0,
                Some("SMP alternatives"),
            )
            .map_err(bug)?;
        self.log
            .extend(msg.map(|m| KernMsg::new(LogLevel::Info, m)));
        // core_initcall(init_per_zone_wmark_min).
        for l in self.node.init_per_zone_wmark_min() {
            self.log.info(l);
        }
        // subsys_initcall(init_user_reserve / init_admin_reserve): 1/32 of free memory,
        // capped at 128 MiB and 8 MiB.
        let free_kb = self.node.nr_free_pages() * (PAGE_SIZE / 1024);
        self.user_reserve_kbytes = (free_kb / 32).min(1 << 17);
        self.admin_reserve_kbytes = (free_kb / 32).min(1 << 13);
        // subsys_initcall(hugepage_init) starts khugepaged → set_recommended_min_free_kbytes(),
        // before the initrd and the init sections are freed.
        if let Some(m) = self.node.set_recommended_min_free_kbytes() {
            self.log.info(m);
        }
        // rootfs_initcall(pci_iommu_init) → swiotlb_print_info().
        if let Some((base, size)) = swiotlb {
            self.log.info(format!(
                "software IO TLB: mapped [mem {:#018x}-{:#018x}] ({}MB)",
                base,
                base + size,
                size >> 20
            ));
        }
        // rootfs_initcall(populate_rootfs) → free_initrd_mem().
        if let Some(r) = self
            .memblock
            .reserved
            .iter()
            .find(|r| r.name == "initrd")
            .cloned()
        {
            let (_, msg) = self
                .node
                .free_reserved_area(
                    Pfn::new(r.base / PAGE_SIZE),
                    Pfn::new(r.end() / PAGE_SIZE),
                    0,
                    Some("initrd"),
                )
                .map_err(bug)?;
            self.log
                .extend(msg.map(|m| KernMsg::new(LogLevel::Info, m)));
        }
        // free_initmem().
        let (_, msg) = self
            .node
            .free_reserved_area(
                Pfn::new(pa(&cfg, img.init_begin) / PAGE_SIZE),
                Pfn::new(pa(&cfg, img.init_end) / PAGE_SIZE),
                0,
                Some("unused kernel image (initmem)"),
            )
            .map_err(bug)?;
        self.log
            .extend(msg.map(|m| KernMsg::new(LogLevel::Info, m)));
        // mark_readonly(): write-protect text and rodata, then make everything after the
        // text non-executable (mark_nxdata_nx), then check no mapping is writable+executable.
        let idt_va = img.swapper_pg_dir + swapper_pg_dir_size(&cfg) + PAGE_SIZE;
        self.set_memory_ro(idt_va, 1)?;
        let start = img.text & !(PAGE_SIZE - 1);
        let size = img.end_rodata - start;
        self.set_memory_ro(start, size / PAGE_SIZE)?;
        self.log.info(format!(
            "Write protecting kernel text and read-only data: {}k",
            size >> 10
        ));
        let hpage = self.geo.pmd_size();
        let nx_start = img.etext.div_ceil(PAGE_SIZE) * PAGE_SIZE;
        let nx_end = (img.init_end + hpage) & !(hpage - 1);
        if self.masks.supported & crate::pgtable_types::_PAGE_NX != 0 {
            self.log.info(format!(
                "NX-protecting the kernel data: {}k",
                (nx_end - nx_start) >> 10
            ));
            self.set_memory_nx(nx_start, (nx_end - nx_start) / PAGE_SIZE)?;
            let wx = self.count_wx_pages()?;
            if wx == 0 {
                self.log
                    .info("x86/mm: Checked W+X mappings: passed, no W+X pages found.");
            } else {
                self.log.warn(format!(
                    "x86/mm: Checked W+X mappings: FAILED, {wx} W+X pages found."
                ));
            }
        }
        for l in self.node.take_kmsg() {
            self.log.log(LogLevel::Err, l);
        }
        // Secondary CPUs come up on swapper_pg_dir with the boot CPU's control registers.
        let regs = *self.machine.cpus[0].regs();
        for cpu in 1..self.machine.cpus.len() {
            self.machine.write_cr4(cpu, regs.cr4)?;
            self.machine.write_efer(cpu, regs.efer)?;
            self.machine.write_cr3(cpu, self.swapper_pg_dir)?;
            self.machine.write_cr0(cpu, regs.cr0)?;
        }
        Ok(())
    }

    /// Allocate 2^order pages on `cpu`, zeroing them when asked (`__GFP_ZERO`, init_on_alloc):
    /// lowmem through the direct map, highmem through a kmap_local slot and the MMU.
    pub fn alloc_pages(
        &mut self,
        gfp: Gfp,
        order: u32,
        cpu: usize,
    ) -> Result<crate::page_alloc::AllocatedPages, crate::page_alloc::AllocFailure> {
        let got = self.node.alloc_pages(gfp, order, cpu)?;
        if got.init {
            for i in 0..(1u64 << order) {
                let pfn = Pfn::new(got.pfn.as_u64() + i);
                if let Err(e) = self.clear_highpage(pfn, cpu) {
                    self.log.log(
                        LogLevel::Err,
                        format!("BUG: clear_highpage({:#x}): {e}", pfn.as_u64()),
                    );
                }
            }
        }
        Ok(got)
    }

    /// `page_address()`: the kernel virtual address of a page — the direct map for low
    /// memory, the kmap() address recorded in the hash for high memory, or None for a highmem
    /// page that is not kmapped (kmap_local mappings are not recorded, as in the kernel).
    pub fn page_address(&self, pfn: Pfn) -> Option<VirtAddr> {
        if pfn.as_u64() < self.layout.max_low_pfn.as_u64() {
            return Some(VirtAddr::new(
                self.config.page_offset() + pfn.phys().as_u64(),
            ));
        }
        self.page_address_htable
            .lookup(pfn.as_u64())
            .map(VirtAddr::new)
    }

    /// `PageHighMem()`: from the page's zone, as the kernel has no PG_highmem.
    pub fn page_high_mem(&self, pfn: Pfn) -> bool {
        self.node
            .mem_map
            .get(pfn)
            .is_some_and(|p| self.node.is_highmem(p.zonenum()))
    }

    /// `clear_highpage()`: zero one page the way the kernel can reach it.
    pub fn clear_highpage(
        &mut self,
        pfn: Pfn,
        cpu: usize,
    ) -> Result<(), crate::highmem::KmapError> {
        if pfn.as_u64() < self.layout.max_low_pfn.as_u64() {
            // Low memory: through the direct map.
            let va = VirtAddr::new(self.config.page_offset() + pfn.phys().as_u64());
            self.machine.fill_virt(cpu, va, PAGE_SIZE, 0)?;
            return Ok(());
        }
        let va = self
            .kmap_local
            .map(&self.kmap_area, &mut self.machine, cpu, pfn)?;
        let r = self.machine.fill_virt(cpu, va, PAGE_SIZE, 0);
        self.kmap_local
            .unmap(&self.kmap_area, &mut self.machine, cpu, va)?;
        r.map_err(Into::into)
    }

    /// Replay what userspace and drivers hold after a real boot (the preset's runtime profile).
    pub fn apply_runtime_profile(&mut self) -> Result<(), BootError> {
        let low = self.profile.runtime_lowmem_pages;
        let high = if self.node.totalhigh_pages > 0 {
            self.profile.runtime_highmem_pages
        } else {
            0
        };
        for (n, gfp) in [(low, GFP_KERNEL), (high, GFP_HIGHUSER_MOVABLE)] {
            for _ in 0..n {
                let got = self.alloc_pages(gfp, 0, 0).map_err(|e| {
                    BootError::Panic(format!(
                        "Out of memory replaying the boot's runtime use: {e}"
                    ))
                })?;
                self.runtime_pages.push((got.pfn, 0));
            }
        }
        if low + high > 0 {
            self.log.info(format!(
                "highmem: runtime profile holds {}K lowmem, {}K highmem (drivers, slab, initramfs, init)",
                low * 4,
                high * 4
            ));
        }
        Ok(())
    }
}
