//! The page-table cursor against the MMU: the same leaf for every kernel address, a PTE
//! page in high memory reached through a kmap_local slot, and flush tokens that leave a
//! stale translation in place until they are flushed through the one shootdown path.

use kernel::config::KernelConfig;
use kernel::gfp::{GFP_HIGHUSER, GFP_KERNEL};
use kernel::pagewalk::{Cursor, KmapLocalPte, PteMapper, Walk};
use kernel::pgtable_types::_KERNPG_TABLE;
use kernel::{boot, BootOptions, Kernel};
use machine::{Access, VirtAddr, PAGE_SIZE};

fn booted(pae: bool) -> Kernel {
    let preset = if pae { "debian-686-pae" } else { "debian-686" };
    let cfg = KernelConfig::preset(preset).expect("preset");
    let mut opts = BootOptions::new(2 << 30, 2, cfg);
    opts.runtime_profile = false;
    boot(&opts).expect("boot")
}

#[test]
fn the_cursor_and_the_mmu_agree_on_every_sampled_kernel_address() {
    for pae in [true, false] {
        let mut k = booted(pae);
        let a = k.vmalloc(3 * PAGE_SIZE, 0).unwrap();
        let cur = k.kernel_cursor();
        let mut va = k.config.page_offset();
        let mut checked = 0;
        while va < 0xffff_f000 {
            let w = cur.walk(&k.machine.mem, va).unwrap();
            let want = w.leaf().map(|l| {
                if l.is_large() {
                    (l.val & k.geo.large_pfn_mask()) + (va & !k.geo.pmd_mask())
                } else {
                    (l.val & k.geo.pfn_mask()) + (va & (PAGE_SIZE - 1))
                }
            });
            let got = k
                .machine
                .translate(0, VirtAddr::new(va), Access::KERNEL_READ)
                .ok()
                .map(|p| p.as_u64());
            assert_eq!(got, want, "pae={pae} va={va:#x}");
            checked += 1;
            va += 0x3_1000 + (va & 0x7000);
        }
        for i in 0..4 {
            let v = a + i * PAGE_SIZE;
            let w = cur.walk(&k.machine.mem, v).unwrap();
            assert_eq!(w.leaf().is_some(), i < 3, "guard page unmapped");
        }
        assert!(checked > 1000);
    }
}

#[test]
fn a_highmem_pte_page_is_reached_through_kmap_local() {
    let mut k = booted(true);
    // An empty PMD slot near the end of the vmalloc area.
    let va = (k.vmap.end() - k.geo.pmd_size()) & k.geo.pmd_mask();
    let cur = k.kernel_cursor();
    let Walk::NoPte { pmd } = cur.walk(&k.machine.mem, va).unwrap() else {
        panic!("expected an empty PMD at {va:#x}");
    };
    // A zeroed highmem page becomes its PTE page (as a HIGHPTE user table would be).
    let pte_page = k
        .alloc_pages(GFP_HIGHUSER | kernel::gfp::__GFP_ZERO, 0, 0)
        .unwrap()
        .pfn;
    assert!(pte_page.as_u64() >= k.layout.max_low_pfn.as_u64());
    cur.set(
        &mut k.machine.mem,
        pmd,
        va,
        pte_page.phys().as_u64() | _KERNPG_TABLE,
    )
    .unwrap()
    .flush_local(&mut k.machine, 0)
    .unwrap();
    let target = k.alloc_pages(GFP_KERNEL, 0, 0).unwrap().pfn;
    let prot = k.masks.page_kernel();
    // The kernel's direct-map-only mapper refuses a highmem table.
    let mut direct = k.direct_map_mapper();
    assert!(direct.map_pte(&mut k, pte_page).is_err());
    let maps = k.kmap_local.maps;
    let mut mapper = KmapLocalPte { cpu: 1 };
    let tok = cur
        .update_pte_mapped(&mut k, &mut mapper, va + 5 * PAGE_SIZE, |_| {
            target.phys().as_u64() | prot
        })
        .unwrap();
    assert!(tok.is_empty(), "the slot was empty");
    tok.flush_local(&mut k.machine, 1).unwrap();
    let w = cur
        .walk_mapped(&mut k, &mut mapper, va + 5 * PAGE_SIZE)
        .unwrap();
    assert_eq!(w.pte().unwrap().table, pte_page.phys());
    assert_eq!(k.kmap_local.maps, maps + 2, "one slot per access");
    assert_eq!(k.kmap_local_depth(1), 0, "released again");
    // The MMU reads the highmem PTE page physically, like the hardware does.
    let pa = k
        .machine
        .translate(
            0,
            VirtAddr::new(va + 5 * PAGE_SIZE + 12),
            Access::KERNEL_WRITE,
        )
        .unwrap();
    assert_eq!(pa.as_u64(), target.phys().as_u64() + 12);
    assert_eq!(
        k.vmalloc_to_page(va + 5 * PAGE_SIZE, 0).unwrap(),
        Some(target)
    );
}

#[test]
fn a_flush_token_leaves_the_stale_entry_until_flushed_on_every_cpu() {
    let mut k = booted(true);
    let a = k.vmalloc(PAGE_SIZE, 0).unwrap();
    let old = k.vmalloc_to_page(a, 0).unwrap().unwrap();
    for cpu in 0..2 {
        k.machine.read_virt_u32(cpu, VirtAddr::new(a)).unwrap();
    }
    let new = k.alloc_pages(GFP_KERNEL, 0, 0).unwrap().pfn;
    let cur: Cursor = k.kernel_cursor();
    let pte = cur.walk(&k.machine.mem, a).unwrap().pte().unwrap();
    let val = new.phys().as_u64() | k.masks.page_kernel();
    let tok = cur.set(&mut k.machine.mem, pte, a, val).unwrap();
    assert_eq!((tok.start(), tok.end()), (a, a + PAGE_SIZE));
    for cpu in 0..2 {
        let e = k.machine.cpus[cpu].tlb_lookup(VirtAddr::new(a)).unwrap();
        assert_eq!(e.page_base, old.phys(), "stale until flushed");
    }
    tok.flush_kernel_range(&mut k.machine, &mut k.tlb, 0)
        .unwrap();
    let s = k.tlb.last().unwrap();
    assert!(!s.full, "one page: INVLPG, not a full flush");
    assert_eq!((s.initiator, s.interrupted.clone()), (0, vec![1]));
    for cpu in 0..2 {
        assert!(k.machine.cpus[cpu].tlb_lookup(VirtAddr::new(a)).is_none());
        let pa = k
            .machine
            .translate(cpu, VirtAddr::new(a), Access::KERNEL_READ)
            .unwrap();
        assert_eq!(pa, new.phys());
    }
}
