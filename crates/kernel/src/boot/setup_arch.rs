//! `setup_arch()` on i386, as far as memory goes (arch/x86/kernel/setup.c).
//!
//! The firmware map and the layout's boot lines, `dmi_setup` into the brk, memblock and its
//! early reservations, `init_mem_mapping` (the direct map), `reserve_initrd`, `initmem_init`'s
//! lines, `native_pagetable_init` → `paging_init` (zones and mem_map), and the small resource
//! allocations after it. What it leaves behind (`Arch`) is what `start_kernel` goes on with.

use super::brk::Brk;
use super::head_32::Head32;
use super::init_32::{self, DirectPagesCount, KernelMapCtx, PgtBuf, ISA_END_ADDRESS};
use super::{dmi, init, initrd, pa, realmode, resources, BootError, BootOptions};
use crate::config::KernelConfig;
use crate::layout::Layout;
use crate::memblock::Memblock;
use crate::mmzone::PgData;
use crate::pgtable_types::PteMasks;
use crate::printk::{KernMsg, LogLevel, Printk};
use machine::{Machine, PAGE_SIZE};

/// The kernel's state when `setup_arch()` returns to `start_kernel()`.
pub(super) struct Arch {
    pub machine: Machine,
    pub memblock: Memblock,
    pub log: Printk,
    /// `alloc_low_pages`' buffer; the CPU-entry-area tables still come from it.
    pub pgt_buf: PgtBuf,
    pub ctx: KernelMapCtx,
    pub direct: DirectPagesCount,
    pub node: PgData,
    pub pkmap_page_table: u64,
    pub mem_map_phys: u64,
}

/// The layout's boot lines in the three places `setup_arch` prints them: the e820 map,
/// then (after NX and DMI) up to the initrd, then `initmem_init`'s.
struct LayoutLog<'a> {
    e820: &'a [KernMsg],
    max_pfn: &'a [KernMsg],
    initmem: &'a [KernMsg],
}

impl<'a> LayoutLog<'a> {
    fn split(layout: &'a Layout) -> Self {
        let msgs = &layout.messages;
        let split = msgs
            .iter()
            .position(|m| {
                m.text.ends_with("MB HIGHMEM available.")
                    || m.text.ends_with("MB LOWMEM available.")
            })
            .unwrap_or(msgs.len());
        let last_e820 = msgs[..split]
            .iter()
            .rposition(|m| m.text.starts_with("BIOS-e820:"))
            .map_or(0, |i| i + 1);
        LayoutLog {
            e820: &msgs[..last_e820],
            max_pfn: &msgs[last_e820..split],
            initmem: &msgs[split..],
        }
    }
}

/// `setup_arch()`: from the firmware map to the zones, in the kernel's order.
pub(super) fn setup_arch(
    mut machine: Machine,
    mut log: Printk,
    head: Head32,
    cfg: &KernelConfig,
    layout: &Layout,
    opts: &BootOptions,
    cpus: u32,
) -> Result<Arch, BootError> {
    let Head32 {
        mut brk,
        early,
        cr4,
    } = head;
    let features = machine.cpus[0].features;
    let masks = PteMasks::new(cfg.pae, features.nx, features.pge, cfg.page_table_isolation);
    let lines = LayoutLog::split(layout);
    log.extend(lines.e820.iter().cloned());
    print_nx(&mut log, cfg, features.nx);
    // dmi_setup(): the SMBIOS identification, saved into the brk.
    for l in dmi::dmi_setup(&mut brk, opts.ram)? {
        log.info(l);
    }
    log.extend(lines.max_pfn.iter().cloned());
    let mut pgt_buf = PgtBuf::new(&mut brk)?;
    let (mut memblock, initrd) = early_reserve_memory(cfg, layout, &brk, opts, &mut log)?;
    let (ctx, direct) = init::init_mem_mapping(
        &mut machine,
        &mut memblock,
        &mut pgt_buf,
        cfg,
        layout,
        masks,
        cr4,
        early.mapped_end,
    )?;
    let lowmem_end = layout.max_low_pfn.phys().as_u64();
    // reserve_initrd: move it into low memory if it is not there.
    if let Some((start, size)) = initrd {
        initrd::reserve_initrd(&mut memblock, &mut log, start, size, lowmem_end)?;
    }
    // initmem_init's lines (… HIGHMEM / LOWMEM available, zone ranges, node ranges).
    log.extend(lines.initmem.iter().cloned());
    // x86_init.paging.pagetable_init = native_pagetable_init, which ends in paging_init.
    init_32::native_pagetable_init(&mut machine, &ctx, &mut log, lowmem_end, early.mapped_end)?;
    let paging = init_32::paging_init(
        &mut machine,
        &mut memblock,
        &mut pgt_buf,
        &mut log,
        &ctx,
        layout,
        cfg,
        cpus,
    )?;
    // acpi_boot_init, io_apic_init_mappings, e820__reserve_resources.
    resources::reserve_resources(
        &mut memblock,
        cfg.pae,
        layout.e820.len() as u64,
        layout.firmware_e820.len() as u64,
    )?;
    Ok(Arch {
        machine,
        memblock,
        log,
        pgt_buf,
        ctx,
        direct,
        node: paging.node,
        pkmap_page_table: paging.pkmap_page_table,
        mem_map_phys: paging.mem_map_phys,
    })
}

/// `x86_configure_nx` / `x86_report_nx`.
fn print_nx(log: &mut Printk, cfg: &KernelConfig, nx: bool) {
    if cfg.pae && nx {
        log.info("NX (Execute Disable) protection: active");
    } else if !cfg.pae {
        log.log(
            LogLevel::Notice,
            "Notice: NX (Execute Disable) protection cannot be enabled: non-PAE kernel!",
        );
    }
}

/// memblock from the e820 map, with the kernel image, the brk, the initrd and the first MiB
/// reserved (`early_reserve_memory`, `e820__memblock_setup`, `reserve_real_mode`). Returns
/// the initrd's (start, size) when there is one.
fn early_reserve_memory(
    cfg: &KernelConfig,
    layout: &Layout,
    brk: &Brk,
    opts: &BootOptions,
    log: &mut Printk,
) -> Result<(Memblock, Option<(u64, u64)>), BootError> {
    let image = cfg.image();
    let mut memblock = Memblock::new();
    memblock.reserve(
        pa(cfg, image.text),
        image.bss_stop - image.text,
        "kernel image",
    );
    memblock.reserve(brk.base, brk.end - brk.base, "brk (early page tables)");
    let (initrd_start, initrd_size) = initrd::initrd_placement(opts.ram, opts.initrd_size)?;
    if initrd_size > 0 {
        memblock.reserve(
            initrd_start,
            initrd_size.div_ceil(PAGE_SIZE) * PAGE_SIZE,
            "initrd",
        );
    }
    for r in &layout.memblock_memory {
        memblock.add(r.base, r.size);
    }
    // reserve_real_mode(): the trampoline below 1 MiB, then all of the first MiB.
    realmode::reserve_real_mode(&mut memblock, log);
    memblock.set_current_limit(ISA_END_ADDRESS);
    let initrd = (initrd_size > 0).then_some((initrd_start, initrd_size));
    Ok((memblock, initrd))
}
