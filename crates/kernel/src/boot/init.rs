//! `init_mem_mapping()` (arch/x86/mm/init.c): the direct map of low memory in
//! swapper_pg_dir, the fixmap's page tables, then CR3 switched from head_32's tables.
//!
//! The first MiB is mapped on its own, then memory top-down from below a free PMD-sized
//! block near the top of low memory, in growing steps, so page-table pages taken from
//! memblock always lie inside what is already mapped (`alloc_low_pages`' window).

use super::init_32::{self, DirectPagesCount, KernelMapCtx, PgtBuf, ISA_END_ADDRESS};
use super::{checks, pa, BootError};
use crate::config::KernelConfig;
use crate::layout::Layout;
use crate::memblock::Memblock;
use crate::pgtable::Geometry;
use crate::pgtable_types::PteMasks;
use machine::{Cr4, Machine, PhysAddr, PAGE_SIZE};

/// `init_mem_mapping()`: returns the page-table builder's context and the direct-map
/// page counts.
#[allow(clippy::too_many_arguments)]
pub(super) fn init_mem_mapping(
    machine: &mut Machine,
    memblock: &mut Memblock,
    pgt_buf: &mut PgtBuf,
    cfg: &KernelConfig,
    layout: &Layout,
    masks: PteMasks,
    mut cr4: Cr4,
    early_mapped_end: u64,
) -> Result<(KernelMapCtx, DirectPagesCount), BootError> {
    let geo = Geometry::new(cfg.pae);
    let image = cfg.image();
    let page_offset = cfg.page_offset();
    // probe_page_size_mask(): large pages and global pages where the CPU has them.
    let features = machine.cpus[0].features;
    if features.pse {
        cr4 |= Cr4::PSE;
    }
    if features.pge {
        cr4 |= Cr4::PGE;
    }
    machine.write_cr4(0, cr4)?;
    let swapper = pa(cfg, image.swapper_pg_dir);
    // clone_pgd_range(): the kernel part of initial_page_table goes into swapper_pg_dir.
    let initial_page_table = PhysAddr::new(pa(cfg, image.initial_page_table));
    for i in geo.pgd_index(page_offset)..geo.ptrs_per_pgd() {
        let e = geo.read(&machine.mem, initial_page_table, i)?;
        geo.write(&mut machine.mem, PhysAddr::new(swapper), i, e)?;
    }
    let ctx = KernelMapCtx {
        geo,
        masks,
        page_offset,
        pgd: swapper,
        text_start: pa(cfg, image.text),
        init_end: pa(cfg, image.init_end),
        use_pse: features.pse && layout.pse,
    };
    let lowmem_end = layout.max_low_pfn.phys().as_u64();
    let direct = map_low_memory(
        machine,
        memblock,
        pgt_buf,
        &ctx,
        lowmem_end,
        early_mapped_end,
    )?;
    // early_ioremap_page_table_range_init(): page tables for the whole fixmap, allocated in
    // ascending address order so the kmap_local PTEs form one array.
    let fixmap = &layout.areas.fixmap;
    let fix_lo = (layout.areas.fixaddr_tot_start + PAGE_SIZE) & geo.pmd_mask();
    let fix_hi = (fixmap.fixaddr_top + geo.pmd_size() - 1) & geo.pmd_mask();
    ctx.page_table_range_init(&mut machine.mem, memblock, pgt_buf, fix_lo, fix_hi)?;
    // load_cr3(swapper_pg_dir); __flush_tlb_all().
    machine.write_cr3(0, swapper)?;
    machine.flush_all(0)?;
    memblock.set_current_limit(lowmem_end);
    let text = (image.text, pa(cfg, image.text));
    checks::check_kernel_mapping(machine, text.0, text.1, "init_mem_mapping")?;
    let last = lowmem_end - PAGE_SIZE;
    checks::check_kernel_mapping(machine, page_offset + last, last, "init_mem_mapping")?;
    Ok((ctx, direct))
}

/// The direct map proper: the first MiB, then `memory_map_top_down`'s ranges, each
/// through `init_range_memory_mapping` (RAM only) and `kernel_physical_mapping_init`.
fn map_low_memory(
    machine: &mut Machine,
    memblock: &mut Memblock,
    pgt_buf: &mut PgtBuf,
    ctx: &KernelMapCtx,
    lowmem_end: u64,
    early_mapped_end: u64,
) -> Result<DirectPagesCount, BootError> {
    let geo = ctx.geo;
    // alloc_low_pages() falls back to memblock only inside what is already mapped.
    pgt_buf.min_mapped = 0;
    pgt_buf.max_mapped = early_mapped_end;
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
                ctx.kernel_physical_mapping_init(machine, memblock, pgt_buf, mr, &mut direct)?;
            }
            pgt_buf.max_mapped = pgt_buf.max_mapped.max(e);
        }
        if i >= top_down_from {
            pgt_buf.min_mapped = pgt_buf.min_mapped.min(start);
        }
    }
    Ok(direct)
}
