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
mod checks;
mod dmi;
pub mod hash;
pub mod head_32;
pub mod init_32;
mod initrd;
mod late;
pub mod profile;
mod pti;
mod realmode;
mod resources;

use crate::cmdline::CmdLine;
use crate::config::KernelConfig;
use crate::highmem::{KmapLocal, KmapLocalArea, PageAddressHash};
use crate::layout::setup_layout;
use crate::memblock::Memblock;
use crate::mmzone::PgData;
use crate::page_alloc::NodeConfig;
use crate::pagewalk::{Cursor, Walk};
use crate::pgtable::Geometry;
use crate::pgtable_types::PteMasks;
use crate::printk::{LogLevel, Printk};
use crate::tlbflush::TlbFlush;
use brk::Brk;
use init_32::{DirectPagesCount, KernelMapCtx, PgtBuf, ISA_END_ADDRESS};
use machine::e820::E820Map;
use machine::{BusError, Cr0, Cr4, Efer, Machine, PhysAddr, PhysMem, PAGE_SIZE};
use profile::BootProfile;

pub use crate::kernel::{Kernel, KernelAllocError, ReservedReport};
pub(crate) use checks::swapper_pg_dir_size;

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
    /// Which kernel design the highmem paths follow (`--design`); `Kernel::design()`.
    pub design: crate::design::KernelDesign,
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
            design: crate::design::KernelDesign::Linux61,
        }
    }
}

pub(crate) fn pa(cfg: &KernelConfig, va: u64) -> u64 {
    va - cfg.page_offset()
}

/// Boot the kernel on a fresh machine.
pub fn boot(opts: &BootOptions) -> Result<Kernel, BootError> {
    let cfg = opts.kernel.clone();
    crate::variant::Variant::of_config(&cfg)
        .check_design(opts.design)
        .map_err(|e| BootError::Config(e.to_string()))?;
    // The kernel brings up at most NR_CPUS of the machine's CPUs.
    let cpus = opts.cpus.min(cfg.nr_cpus).max(1);
    let cmdline = CmdLine::parse(&opts.cmdline).map_err(|e| BootError::Config(e.to_string()))?;
    let e820 = E820Map::qemu_pc(opts.ram).map_err(|e| BootError::Config(e.to_string()))?;
    let layout =
        setup_layout(&e820, &cfg, &cmdline, cpus).map_err(|e| BootError::Config(e.to_string()))?;
    let mem = PhysMem::new(&e820.ram_banks())
        .map_err(|e| BootError::Config(format!("cannot reserve host memory for the RAM: {e}")))?;
    let mut machine = Machine::new(mem, opts.cpus as usize);
    let geo = Geometry::new(cfg.pae);
    let features = machine.cpus[0].features;
    let masks = PteMasks::new(cfg.pae, features.nx, features.pge, cfg.page_table_isolation);
    let profile = BootProfile::for_config(&cfg);
    let page_offset = cfg.page_offset();
    let image = cfg.image();

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
    // Paging is on: from here the kernel reaches physical memory only through its direct
    // map, which will end at max_low_pfn (the model declares the final extent at once; the
    // early code touches nothing above the kernel image and brk meanwhile). Above it, RAM is
    // reachable only through a kmap, kmap_local or vmalloc mapping and a CPU.
    machine.mem.set_window_end(layout.max_low_pfn.phys());
    checks::check_kernel_mapping(&mut machine, image.text, pa(&cfg, image.text), "head_32")?;

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
    // dmi_setup(): the SMBIOS identification, saved into the brk.
    for l in dmi::dmi_setup(&mut brk, opts.ram)? {
        log.info(l);
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
    let (initrd_start, initrd_size) = initrd::initrd_placement(opts.ram, opts.initrd_size)?;
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
    // reserve_real_mode(): the trampoline below 1 MiB, then all of the first MiB.
    realmode::reserve_real_mode(&mut memblock, &mut log);
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
    // alloc_low_pages() falls back to memblock only inside what is already mapped.
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
    let top_down_from = ranges.len();
    ranges.extend(init_32::memory_map_top_down(
        geo,
        ISA_END_ADDRESS,
        lowmem_end,
        real_end,
    ));
    for (i, &(start, end)) in ranges.iter().enumerate() {
        if i == top_down_from {
            // memory_map_top_down() restarts the window: nothing above real_end yet.
            pgt_buf.min_mapped = real_end;
            pgt_buf.max_mapped = 0;
        }
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
            pgt_buf.max_mapped = pgt_buf.max_mapped.max(e);
        }
        if i >= top_down_from {
            pgt_buf.min_mapped = pgt_buf.min_mapped.min(start);
        }
    }
    // early_ioremap_page_table_range_init(): page tables for the whole fixmap, allocated in
    // ascending address order so the kmap_local PTEs form one array.
    let fixmap = &layout.areas.fixmap;
    let fix_lo = (layout.areas.fixaddr_tot_start + PAGE_SIZE) & geo.pmd_mask();
    let fix_hi = (fixmap.fixaddr_top + geo.pmd_size() - 1) & geo.pmd_mask();
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
    checks::check_kernel_mapping(
        &mut machine,
        image.text,
        pa(&cfg, image.text),
        "init_mem_mapping",
    )?;
    checks::check_kernel_mapping(
        &mut machine,
        page_offset + lowmem_end - PAGE_SIZE,
        lowmem_end - PAGE_SIZE,
        "init_mem_mapping",
    )?;

    // ---- reserve_initrd: move it into low memory if it is not there ------------------------
    if initrd_size > 0 {
        initrd::reserve_initrd(
            &mut memblock,
            &mut log,
            initrd_start,
            initrd_size,
            lowmem_end,
        )?;
    }
    // initmem_init's lines (… HIGHMEM / LOWMEM available, zone ranges, node ranges).
    log.extend(layout_msgs[split..].iter().cloned());

    // ---- native_pagetable_init: head_32 may have mapped RAM beyond low memory ------------
    native_pagetable_init(&mut machine, &ctx, &mut log, lowmem_end, early.mapped_end)?;

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
        nr_cpus: cpus as usize,
        pageblock_order: if cfg.pae { 9 } else { 10 },
        // Built in: the pcp lists hold pageblock-order pages whatever the boot decides.
        thp: cfg.transparent_hugepage.is_some(),
    };
    // alloc_node_mem_map(): the FLATMEM array, from memblock, in low memory.
    let mem_map_phys = memblock
        .alloc_range(
            layout.mem_map_bytes,
            resources::SMP_CACHE_BYTES,
            0,
            u64::MAX,
            "mem_map",
        )
        .map_err(|e| BootError::Panic(format!("Failed to allocate memory map: {e}")))?
        .as_u64();
    let (mut node, node_msgs) =
        PgData::new(&node_cfg).map_err(|e| BootError::Bug(format!("BUG: free_area_init: {e}")))?;
    node.current_comm = "swapper/0".to_string();
    // free_area_init_core(): one pageblock-flags bitmap per zone.
    for z in &node.node_zones {
        if z.spanned_pages > 0 {
            memblock
                .alloc_range(
                    z.usemap_size().max(1),
                    resources::SMP_CACHE_BYTES,
                    0,
                    u64::MAX,
                    "pageblock flags",
                )
                .map_err(|e| BootError::Panic(e.to_string()))?;
        }
    }
    // acpi_boot_init, io_apic_init_mappings, e820__reserve_resources.
    resources::reserve_resources(
        &mut memblock,
        cfg.pae,
        layout.e820.len() as u64,
        layout.firmware_e820.len() as u64,
    )?;
    // start_kernel: setup_command_line(), then the per-CPU areas.
    resources::setup_command_line(&mut memblock, &opts.cmdline)?;
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
        cfg.nr_cpus, cpus, cpus
    ));
    // pcpu_build_alloc_info() takes a page for the allocation info and
    // pcpu_embed_first_chunk() a page for its `areas` array; both are freed once the first
    // chunk is set up, leaving a two-page hole above the units that later early
    // allocations (the CPU entry area's page tables) fill.
    let mut scratch = Vec::new();
    for what in ["pcpu alloc info", "pcpu areas array"] {
        let p = memblock
            .alloc_range(PAGE_SIZE, PAGE_SIZE, 0, u64::MAX, what)
            .map_err(|e| BootError::Panic(format!("Failed to initialize percpu areas: {e}")))?;
        scratch.push(p.as_u64());
    }
    memblock
        .alloc_range(
            unit * u64::from(cpus),
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
    let percpu_pages = unit / PAGE_SIZE * u64::from(cpus);
    // pcpu_setup_first_chunk(): group/unit maps, slot lists, the first chunk with its
    // allocation and boundary bitmaps (one bit per 4 bytes) and per-page block metadata.
    // pcpu_alloc_first_chunk() maps only the dynamic part: from the page holding the end
    // of the static data to the end of the unit.
    let dyn_size = unit - profile.percpu_static;
    let start_offset = profile.percpu_static % PAGE_SIZE;
    let region_size = (start_offset + dyn_size).div_ceil(PAGE_SIZE) * PAGE_SIZE;
    let region_bits = region_size / 4;
    let ncpu = u64::from(cpus);
    // pcpu_nr_slots: the unit size's slot, then the sidelined, free and to-depopulate
    // slots; one list_head each.
    let unit_slot = (64 - unit.leading_zeros() as u64)
        .saturating_sub(5 - 2)
        .max(1);
    let nr_slots = unit_slot + 4;
    for size in [
        4,
        4,
        4 * ncpu,
        4 * ncpu,
        8 * nr_slots,
        96,
        region_bits.div_ceil(32) * 4,
        (region_bits + 1).div_ceil(32) * 4,
        (region_size / PAGE_SIZE) * 28,
    ] {
        memblock
            .alloc_range(
                size,
                resources::SMP_CACHE_BYTES,
                0,
                u64::MAX,
                "per-CPU metadata",
            )
            .map_err(|e| BootError::Panic(format!("Failed to allocate percpu metadata: {e}")))?;
    }
    for p in scratch {
        memblock.free(p, PAGE_SIZE);
    }

    // ---- build_all_zonelists, command line, early hashes ----------------------------------
    log.info(node.build_all_zonelists());
    log.info(format!("Kernel command line: {}", opts.cmdline));
    for w in &cmdline.warnings {
        log.warn(w.clone());
    }
    if let Some(l) = cmdline.unknown_bootoptions_line() {
        log.log(LogLevel::Notice, l);
    }
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
    // pci_iommu_alloc() → pci_swiotlb_detect(): swiotlb when RAM may reach beyond 32-bit
    // DMA. It reads max_possible_pfn (the e820 end of RAM after `mem=`), so `highmem=`
    // cutting max_pfn below 4 GiB does not spare the bounce buffer.
    let mut swiotlb = None;
    if layout.max_possible_pfn.as_u64() > crate::config::MAX_DMA32_PFN {
        // swiotlb_adjust_nareas(num_possible_cpus()): a power of two.
        log.info(format!(
            "software IO TLB: area num {}.",
            cpus.next_power_of_two()
        ));
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
    checks::test_wp_bit(&mut machine, &cfg, &layout, &ctx, &mut log)?;
    log.info(checks::memory_line(&cfg, &node));
    // start_kernel, after mm_init: the real per-CPU pagesets replace the boot pageset.
    node.setup_per_cpu_pageset();

    let fix_kmap_begin = fixmap
        .index("FIX_KMAP_BEGIN")
        .ok_or_else(|| BootError::Bug("BUG: the fixmap has no FIX_KMAP_BEGIN".into()))?;
    let kmap_pte_va = fixmap.fix_to_virt(fix_kmap_begin);
    let kmap_area = KmapLocalArea {
        geo,
        fixaddr_top: fixmap.fixaddr_top,
        fix_kmap_begin,
        km_max_idx: cfg.km_max_idx(),
        kmap_pte: checks::kernel_pte_phys(&machine.mem, geo, swapper, kmap_pte_va)?,
        prot: masks.page_kernel(),
    };

    let mut hm = crate::highmem::Highmem::new(&cfg, &layout, &kmap_area, pkmap_page_table);
    hm.design = opts.design;
    let cfg_sizeof_page = cfg.sizeof_struct_page as u32;
    let cfg_thp = cfg.transparent_hugepage;
    let vmap =
        crate::vmalloc::Vmap::new(layout.vmalloc_start.as_u64(), layout.vmalloc_end.as_u64());
    let slab = crate::slab::Slub::boot(cpus as usize, &cfg, &layout, node.init_on_alloc);
    let mut k = Kernel {
        kmap_local: KmapLocal::new(cpus as usize),
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
        hm,
        sched: crate::sched::Sched::new(cpus as usize),
        page_address_htable: PageAddressHash::new(
            (mem_map_phys + page_offset) as u32,
            cfg_sizeof_page,
        ),
        reserved_at_mem_init,
        runtime_pages: Vec::new(),
        percpu_pages,
        admin_reserve_kbytes: 0,
        user_reserve_kbytes: 0,
        thp: crate::thp::ThpState::from_cmdline(
            cfg_thp.unwrap_or(crate::thp::ThpEnabled::Never),
            &cmdline,
        ),
        tlb: Default::default(),
        vmap,
        slab,
        mm: crate::mm::MmState::new(cmdline.userpte_nohigh()),
    };
    k.late_boot(swiotlb)?;
    if opts.runtime_profile {
        k.apply_runtime_profile()?;
        k.vm_acct_boot_userspace();
    }
    Ok(k)
}

/// `native_pagetable_init()`: head_32 mapped whole page tables' worth of RAM, which on a
/// small machine (or with `mem=`) reaches beyond `max_low_pfn`. Those PTEs are cleared so
/// the kernel does not keep writable, executable mappings of memory it does not own.
fn native_pagetable_init(
    m: &mut Machine,
    ctx: &KernelMapCtx,
    log: &mut Printk,
    lowmem_end: u64,
    early_end: u64,
) -> Result<(), BootError> {
    let geo = ctx.geo;
    let cur = Cursor::new(geo, PhysAddr::new(ctx.pgd));
    let mut flush = TlbFlush::none();
    let mut pa_ = lowmem_end;
    while pa_ < early_end {
        let va = ctx.page_offset + pa_;
        let (pmd, pte) = match cur.walk(&m.mem, va)? {
            Walk::NoPmd { .. } | Walk::NoPte { .. } => break,
            Walk::Large { .. } => {
                return Err(BootError::Bug(format!(
                    "BUG: native_pagetable_init: large page above max_low_pfn at {va:#x}"
                )))
            }
            Walk::Pte { pmd, pte } => (pmd, pte),
        };
        if !pte.present() {
            break;
        }
        let (pmd_phys, pte_phys) = (pmd.phys(geo).as_u64(), pte.phys(geo).as_u64());
        log.log(
            LogLevel::Debug,
            format!(
                "clearing pte for ram above max_low_pfn: pfn: {:x} pmd: {:#010x} pmd phys: {:x} pte: {:#010x} pte phys: {:x}",
                pa_ >> 12,
                ctx.page_offset + pmd_phys,
                pmd_phys,
                ctx.page_offset + pte_phys,
                pte_phys
            ),
        );
        flush = flush.merge(cur.set(&mut m.mem, pte, va, 0)?);
        pa_ += PAGE_SIZE;
    }
    // paging_init() flushes the whole TLB of the boot CPU right after (__flush_tlb_all),
    // which covers the cleared range.
    let _covered = flush.defer();
    m.flush_all(0)?;
    Ok(())
}

/// A booted kernel for unit tests: the preset on `mib` MiB, one CPU, no runtime profile.
#[cfg(test)]
pub(crate) fn test_boot(mib: u64, preset: &str) -> Kernel {
    let cfg = KernelConfig::preset(preset).expect("preset");
    let mut opts = BootOptions::new(mib << 20, 1, cfg);
    opts.runtime_profile = false;
    boot(&opts).expect("boot")
}
