//! The boot's own checks and reports: the kernel address translating through the MMU, the
//! WP test, the `Memory:` line, and `virt_to_kpte()` for the fixmap.

use super::init_32::KernelMapCtx;
use super::{pa, BootError};
use crate::config::KernelConfig;
use crate::layout::Layout;
use crate::mmzone::PgData;
use crate::pagewalk::{Cursor, Entry, Walk};
use crate::pgtable::Geometry;
use crate::printk::Printk;
use machine::{Access, Machine, PhysAddr, PhysMem, VirtAddr, PAGE_SIZE};

/// The boot checks its own mappings through the MMU, as a real kernel implicitly does by
/// running: if the kernel's address does not reach the right frame, stop with a BUG.
pub(super) fn check_kernel_mapping(
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
pub(super) fn kernel_pte_phys(
    mem: &PhysMem,
    geo: Geometry,
    pgd: u64,
    va: u64,
) -> Result<u64, BootError> {
    match Cursor::new(geo, PhysAddr::new(pgd)).walk(mem, va)? {
        Walk::Pte { pte, .. } => Ok(pte.phys(geo).as_u64()),
        Walk::NoPmd { .. } => Err(BootError::Bug(format!("BUG: no PMD for {va:#x}"))),
        Walk::NoPte { .. } | Walk::Large { .. } => {
            Err(BootError::Bug(format!("BUG: no page table for {va:#x}")))
        }
    }
}

/// `test_wp_bit()`: map the zero page read-only at FIX_WP_TEST and try to write it from
/// kernel mode. With CR0.WP the simulated MMU must refuse; if it does not, the kernel
/// panics ("Linux doesn't support CPUs with broken WP.").
pub(super) fn test_wp_bit(
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
    let zero_page = pa(cfg, cfg.image().swapper_pg_dir) + swapper_pg_dir_size(cfg);
    let cur = Cursor::new(ctx.geo, PhysAddr::new(ctx.pgd));
    let Walk::Pte { pte, .. } = cur.walk(&m.mem, va)? else {
        return Err(BootError::Bug(format!("BUG: no page table for {va:#x}")));
    };
    let ro = crate::pgtable_types::__PAGE_KERNEL_RO & ctx.masks.default_kernel;
    // The slot was empty: installing needs no flush.
    cur.set(&mut m.mem, pte, va, zero_page | ro)?
        .flush_local(m, 0)?;
    let res = m.write_virt(0, VirtAddr::new(va), &[0u8]);
    let mapped = Entry {
        val: zero_page | ro,
        ..pte
    };
    cur.set(&mut m.mem, mapped, va, 0)?.flush_local(m, 0)?;
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
pub(crate) fn swapper_pg_dir_size(cfg: &KernelConfig) -> u64 {
    if cfg.pae && cfg.page_table_isolation {
        2 * PAGE_SIZE
    } else {
        PAGE_SIZE
    }
}

/// `mem_init_print_info()`.
pub(super) fn memory_line(cfg: &KernelConfig, node: &PgData) -> String {
    let k = |pages: u64| pages * (PAGE_SIZE / 1024);
    let physpages: u64 = node.node_zones.iter().map(|z| z.present_pages).sum();
    let sizes = cfg.image().sizes();
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
