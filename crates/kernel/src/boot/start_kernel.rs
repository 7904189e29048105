//! `start_kernel()` after `setup_arch()`, up to the buddy allocator (init/main.c):
//! `setup_command_line`, `setup_per_cpu_areas` (percpu.rs), `build_all_zonelists` and the
//! command line, `vfs_caches_init_early`, `trap_init` → `setup_cpu_entry_areas`, and
//! `mm_init` → `mem_init` (swiotlb, memblock_free_all, the WP test, the `Memory:` line)
//! with the per-CPU pagesets replacing the boot pageset after it.

use super::setup_arch::Arch;
use super::{checks, hash, BootError};
use crate::cmdline::CmdLine;
use crate::config::KernelConfig;
use crate::highmem::KmapLocalArea;
use crate::kernel::ReservedReport;
use crate::layout::Layout;
use crate::printk::LogLevel;
use machine::PAGE_SIZE;

/// `build_all_zonelists()` and the `Kernel command line:` line with its warnings and
/// unknown parameters.
pub(super) fn build_all_zonelists(a: &mut Arch, cmdline: &CmdLine, raw: &str) {
    a.log.info(a.node.build_all_zonelists());
    a.log.info(format!("Kernel command line: {raw}"));
    for w in &cmdline.warnings {
        a.log.warn(w.clone());
    }
    if let Some(l) = cmdline.unknown_bootoptions_line() {
        a.log.log(LogLevel::Notice, l);
    }
}

/// `vfs_caches_init_early()`: the dentry and inode hash tables, sized from
/// `nr_kernel_pages`, from memblock.
pub(super) fn vfs_caches_init_early(a: &mut Arch) -> Result<(), BootError> {
    for (name, scale) in [("Dentry cache", 13u32), ("Inode-cache", 14u32)] {
        let (entries, order, bytes) =
            hash::large_system_hash(a.node.nr_kernel_pages, a.node.nr_all_pages, 4, scale);
        a.memblock
            .alloc_range(bytes, PAGE_SIZE, 0, u64::MAX, "early hash tables")
            .map_err(|e| BootError::Panic(format!("Failed to allocate {name} hash table: {e}")))?;
        a.log.info(format!(
            "{name} hash table entries: {entries} (order: {order}, {bytes} bytes, linear)"
        ));
    }
    Ok(())
}

/// `trap_init()` → `setup_cpu_entry_areas()`: page tables for the CPU entry area.
pub(super) fn trap_init(a: &mut Arch, layout: &Layout) -> Result<(), BootError> {
    let cea = layout.areas.cpu_entry_area_base;
    a.ctx.page_table_range_init(
        &mut a.machine.mem,
        &mut a.memblock,
        &mut a.pgt_buf,
        cea,
        cea + layout.areas.cpu_entry_area_map_size,
    )?;
    Ok(())
}

/// What `mm_init()` leaves for the rest of the boot.
pub(super) struct MmInit {
    /// memblock's reservations by name when the buddy allocator took over.
    pub reserved_at_mem_init: ReservedReport,
    /// The bounce buffer (base, size), printed by `pci_iommu_init` later.
    pub swiotlb: Option<(u64, u64)>,
}

/// `mm_init()`: `mem_init()`, then the real per-CPU pagesets replace the boot pageset.
pub(super) fn mm_init(
    a: &mut Arch,
    cfg: &KernelConfig,
    layout: &Layout,
    cpus: u32,
) -> Result<MmInit, BootError> {
    let swiotlb = pci_iommu_alloc(a, cfg, layout, cpus)?;
    let reserved_at_mem_init = a.memblock.reserved_by_name();
    memblock_free_all(a, layout)?;
    checks::test_wp_bit(&mut a.machine, cfg, layout, &a.ctx, &mut a.log)?;
    a.log.info(checks::memory_line(cfg, &a.node));
    a.node.setup_per_cpu_pageset();
    Ok(MmInit {
        reserved_at_mem_init,
        swiotlb,
    })
}

/// `pci_iommu_alloc()` → `pci_swiotlb_detect()`: swiotlb when RAM may reach beyond 32-bit
/// DMA. It reads max_possible_pfn (the e820 end of RAM after `mem=`), so `highmem=`
/// cutting max_pfn below 4 GiB does not spare the bounce buffer.
fn pci_iommu_alloc(
    a: &mut Arch,
    cfg: &KernelConfig,
    layout: &Layout,
    cpus: u32,
) -> Result<Option<(u64, u64)>, BootError> {
    if layout.max_possible_pfn.as_u64() <= crate::config::MAX_DMA32_PFN {
        return Ok(None);
    }
    // swiotlb_adjust_nareas(num_possible_cpus()): a power of two.
    a.log.info(format!(
        "software IO TLB: area num {}.",
        cpus.next_power_of_two()
    ));
    let size = 64 << 20;
    let base = a
        .memblock
        .alloc_range(size, PAGE_SIZE, 0, u64::MAX, "swiotlb")
        .map_err(|e| BootError::Panic(format!("Cannot allocate buffer: {e}")))?
        .as_u64();
    let slot_size = if cfg.pae { 16 } else { 12 };
    let slots = (size >> 11) * slot_size;
    a.memblock
        .alloc_range(
            slots.div_ceil(PAGE_SIZE) * PAGE_SIZE,
            PAGE_SIZE,
            0,
            u64::MAX,
            "swiotlb",
        )
        .map_err(|e| BootError::Panic(format!("Cannot allocate swiotlb slots: {e}")))?;
    Ok(Some((base, size)))
}

/// `memblock_free_all()` and `set_highmem_pages_init()`: every free page to the buddy
/// allocator, every reserved one marked so.
fn memblock_free_all(a: &mut Arch, layout: &Layout) -> Result<(), BootError> {
    let free = a.memblock.free_pfn_ranges();
    let reserved = a.memblock.reserved_pfn_ranges();
    let lines = a
        .node
        .mem_init_free(&free, &reserved, layout.max_low_pfn.as_u64())
        .map_err(|e| BootError::Bug(format!("BUG: mem_init: {e}")))?;
    for l in lines {
        a.log.info(l);
    }
    Ok(())
}

/// Where kmap_local's fixmap slots and their PTEs are (`__kmap_pte`).
pub(super) fn kmap_local_area(
    a: &Arch,
    cfg: &KernelConfig,
    layout: &Layout,
) -> Result<KmapLocalArea, BootError> {
    let fixmap = &layout.areas.fixmap;
    let geo = a.ctx.geo;
    let fix_kmap_begin = fixmap
        .index("FIX_KMAP_BEGIN")
        .ok_or_else(|| BootError::Bug("BUG: the fixmap has no FIX_KMAP_BEGIN".into()))?;
    let kmap_pte_va = fixmap.fix_to_virt(fix_kmap_begin);
    Ok(KmapLocalArea {
        geo,
        fixaddr_top: fixmap.fixaddr_top,
        fix_kmap_begin,
        km_max_idx: cfg.km_max_idx(),
        kmap_pte: checks::kernel_pte_phys(&a.machine.mem, geo, a.ctx.pgd, kmap_pte_va)?,
        prot: a.ctx.masks.page_kernel(),
    })
}
