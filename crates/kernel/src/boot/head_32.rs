//! head_32: the provisional page tables built before paging is on (arch/x86/kernel/head32.c).
//!
//! The CPU starts with paging off, so the kernel, linked at PAGE_OFFSET + 16 MiB, cannot run
//! its own addresses yet. `mk_early_pgtbl_32` fills page-table pages in the brk area with
//! identity PTEs from physical 0 upward and links each one twice: at the identity slot (so
//! the instruction after `mov cr0` still runs) and at the PAGE_OFFSET slot (where the kernel
//! lives). It maps whole PTE pages until it has covered the image plus room for the page
//! tables of all of low memory (`PAGE_TABLE_SIZE(LOWMEM_PAGES)`).

use super::brk::Brk;
use super::{checks, pa, BootError};
use crate::config::KernelConfig;
use crate::layout::Layout;
use crate::pgtable::Geometry;
use crate::pgtable_types::{PDE_IDENT_ATTR, PGD_IDENT_ATTR, PTE_IDENT_ATTR};
use machine::{Cr0, Cr4, Efer, Machine, PhysAddr, PhysMem, PAGE_SIZE};

/// What `startup_32` hands to `setup_arch`: the brk with the early tables in it, the
/// tables themselves and the CR4 bits set so far.
pub struct Head32 {
    pub brk: Brk,
    pub early: EarlyPageTables,
    pub cr4: Cr4,
}

/// `startup_32` up to the jump to `i386_start_kernel`: the early tables in the brk, then
/// CR4.PAE (and EFER.NXE), CR3 and CR0.PG on the boot CPU; the kernel's own address must
/// then translate through the MMU.
pub fn startup_32(
    machine: &mut Machine,
    cfg: &KernelConfig,
    layout: &Layout,
) -> Result<Head32, BootError> {
    let image = cfg.image();
    let geo = Geometry::new(cfg.pae);
    let mut brk = Brk::new(pa(cfg, image.brk_base), pa(cfg, image.brk_limit));
    let initial_page_table = pa(cfg, image.initial_page_table);
    let early = mk_early_pgtbl_32(
        &mut machine.mem,
        geo,
        &mut brk,
        cfg.page_offset(),
        initial_page_table,
        pa(cfg, image.bss_start),
        pa(cfg, image.end),
    )?;
    let expected_early = crate::layout::initial_mapped_pfn(cfg) * PAGE_SIZE;
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
        if machine.cpus[0].features.nx {
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
    checks::check_kernel_mapping(machine, image.text, pa(cfg, image.text), "head_32")?;
    Ok(Head32 { brk, early, cr4 })
}

/// What head_32 leaves behind.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct EarlyPageTables {
    /// The PTE pages, in the order they were filled.
    pub pte_pages: Vec<u64>,
    /// First physical byte not mapped (`max_pfn_mapped << PAGE_SHIFT`).
    pub mapped_end: u64,
}

/// `PAGE_TABLE_SIZE(pages)`: page-table pages needed to map `pages` with 4 KiB PTEs.
pub fn page_table_size(geo: Geometry, pages: u64) -> u64 {
    if geo.pae {
        pages / geo.ptrs_per_pte() + 4
    } else {
        pages / geo.ptrs_per_pte()
    }
}

/// Build the provisional tables. `initial_page_table` is the 2-level page directory or the
/// PAE PDPT; `initial_pg_pmd` the static PMD page(s) of a PAE build; `image_end` is
/// `__pa(_end)`.
pub fn mk_early_pgtbl_32(
    mem: &mut PhysMem,
    geo: Geometry,
    brk: &mut Brk,
    page_offset: u64,
    initial_page_table: u64,
    initial_pg_pmd: u64,
    image_end: u64,
) -> Result<EarlyPageTables, BootError> {
    let lowmem_pages = ((1u64 << 32) - page_offset) / PAGE_SIZE;
    let limit = image_end + page_table_size(geo, lowmem_pages) * PAGE_SIZE;
    let kernel_slot = page_offset >> geo.pmd_shift();
    let mut pte_pages = Vec::new();
    let mut phys = 0u64;
    let mut slot = 0u64;
    while phys < limit {
        let pte_page = brk.extend(PAGE_SIZE, PAGE_SIZE)?;
        for i in 0..geo.ptrs_per_pte() {
            geo.write(mem, PhysAddr::new(pte_page), i, phys | PTE_IDENT_ATTR)?;
            phys += PAGE_SIZE;
        }
        let pde = pte_page | PDE_IDENT_ATTR;
        if geo.pae {
            // All PMD entries live in initial_pg_pmd; the PDPT points both the identity GB
            // and the kernel GB at it (KPMDS = 1 for the 3G split).
            let pmds = PhysAddr::new(initial_pg_pmd);
            geo.write(mem, pmds, slot, pde)?;
        } else {
            let pgd = PhysAddr::new(initial_page_table);
            geo.write(mem, pgd, slot, pde)?;
            geo.write(mem, pgd, slot + kernel_slot, pde)?;
        }
        pte_pages.push(pte_page);
        slot += 1;
    }
    if geo.pae {
        let kpmds = ((1u64 << 32) - page_offset) >> 30;
        let pdpt = PhysAddr::new(initial_page_table);
        let first_kernel = geo.pgd_index(page_offset);
        geo.write(mem, pdpt, 0, initial_pg_pmd | PGD_IDENT_ATTR)?;
        for k in 0..kpmds.min(4) {
            let pmd_page = initial_pg_pmd + k * PAGE_SIZE;
            geo.write(mem, pdpt, first_kernel + k, pmd_page | PGD_IDENT_ATTR)?;
        }
    }
    Ok(EarlyPageTables {
        pte_pages,
        mapped_end: phys,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_image_plus_table_room_in_whole_pte_pages() {
        let mut mem = PhysMem::new(&[(PhysAddr::new(0), 64 << 20)]).unwrap();
        let geo = Geometry::new(true);
        let mut brk = Brk::new(0x1f0b000, 0x2135000);
        let t = mk_early_pgtbl_32(
            &mut mem,
            geo,
            &mut brk,
            0xc000_0000,
            0x1c56000,
            0x1e94000,
            0x2135000,
        )
        .unwrap();
        // _end + 516 pages, rounded up to 2 MiB.
        assert_eq!(t.mapped_end, 0x2400000);
        assert_eq!(t.pte_pages.len(), 18);
        assert_eq!(brk.end, 0x1f0b000 + 18 * 4096);
        // PDPT[0] and PDPT[3] both point at the PMD page.
        assert_eq!(
            geo.read(&mem, PhysAddr::new(0x1c56000), 0).unwrap(),
            0x1e94001
        );
        assert_eq!(
            geo.read(&mem, PhysAddr::new(0x1c56000), 3).unwrap(),
            0x1e94001
        );
        let pte = geo.read(&mem, PhysAddr::new(t.pte_pages[1]), 3).unwrap();
        assert_eq!(pte, 0x203003);
    }

    #[test]
    fn two_level_links_each_pte_page_twice() {
        let mut mem = PhysMem::new(&[(PhysAddr::new(0), 64 << 20)]).unwrap();
        let geo = Geometry::new(false);
        let mut brk = Brk::new(0x1eee000, 0x2100000);
        let t = mk_early_pgtbl_32(
            &mut mem,
            geo,
            &mut brk,
            0xc000_0000,
            0x1c00000,
            0,
            0x2100000,
        )
        .unwrap();
        assert_eq!(t.mapped_end, 0x2400000);
        let pd = PhysAddr::new(0x1c00000);
        for (i, p) in t.pte_pages.iter().enumerate() {
            let i = i as u64;
            assert_eq!(geo.read(&mem, pd, i).unwrap(), p | 0x63);
            assert_eq!(geo.read(&mem, pd, 768 + i).unwrap(), p | 0x63);
        }
    }
}
