//! kmap_local on the booted model: high memory is reached only through a fixmap slot, the
//! slot's PTE is written in simulated RAM, and the unmap's INVLPG is what keeps the TLB honest.

use kernel::config::KernelConfig;
use kernel::gfp::{Gfp, GFP_HIGHUSER};
use kernel::highmem::Check;
use kernel::{boot, BootOptions, Kernel};
use machine::{Access, Pfn, TlbGeometry, VirtAddr};

fn booted(pae: bool) -> Kernel {
    let preset = if pae { "debian-686-pae" } else { "debian-686" };
    let cfg = KernelConfig::preset(preset).expect("preset");
    let mut opts = BootOptions::new(2 << 30, 2, cfg);
    opts.runtime_profile = false;
    let mut k = boot(&opts).expect("boot");
    k.hm.debug.enable_all();
    k
}

fn highmem_page(k: &mut Kernel) -> Pfn {
    let got = k.alloc_pages(GFP_HIGHUSER, 0, 0).expect("highmem page");
    assert!(
        got.pfn.as_u64() >= k.layout.max_low_pfn.as_u64(),
        "GFP_HIGHUSER took lowmem"
    );
    got.pfn
}

#[test]
fn zeroing_a_highmem_page_goes_through_a_kmap_local_slot() {
    let tlbs = [TlbGeometry::Core2, TlbGeometry::Unbounded];
    for (pae, tlb) in [true, false].into_iter().flat_map(|p| tlbs.map(|t| (p, t))) {
        let mut k = booted(pae);
        for cpu in &mut k.machine.cpus {
            cpu.set_tlb_geometry(tlb);
        }
        let pfn = highmem_page(&mut k);
        // Dirty the frame, free it, and ask for a zeroed page: the same frame comes back
        // from the per-CPU list and must be cleared through a temporary mapping.
        k.machine
            .mem
            .monitor_frame_mut(pfn)
            .expect("frame")
            .fill(0xa5);
        k.node.__free_pages(pfn, 0, 0).expect("free");
        let maps_before = k.kmap_local.maps;
        let invlpg_before = k.machine.cpus[0].counters().invlpg;
        let got = k
            .alloc_pages(GFP_HIGHUSER | Gfp::ZERO, 0, 0)
            .expect("alloc");
        assert_eq!(got.pfn, pfn, "LIFO per-CPU list");
        assert!(k
            .machine
            .mem
            .monitor()
            .frame(pfn)
            .expect("frame")
            .iter()
            .all(|&b| b == 0));
        assert_eq!(k.kmap_local.maps, maps_before + 1);
        assert_eq!(k.machine.cpus[0].counters().invlpg, invlpg_before + 1);
        assert_eq!(k.kmap_local_depth(0), 0, "slot released");
    }
}

#[test]
fn a_slot_is_a_real_mapping_and_unmap_removes_it() {
    let mut k = booted(true);
    let pfn = highmem_page(&mut k);
    let area = k.kmap_area;
    let va = k.kmap_local_page(1, pfn).expect("map");
    assert_eq!(
        va.as_u64(),
        area.slot_vaddr(area.km_max_idx),
        "CPU 1's first slot"
    );
    k.machine
        .write_virt_u32(1, va, 0xdead_beef)
        .expect("write through the slot");
    assert_eq!(
        u32::from_le_bytes(
            k.machine.mem.monitor().frame(pfn).expect("frame")[..4]
                .try_into()
                .expect("4")
        ),
        0xdead_beef
    );
    k.kunmap_local(1, va).expect("unmap");
    let fault = k
        .machine
        .translate(1, va, Access::KERNEL_READ)
        .expect_err("unmapped");
    assert!(fault.page_fault().is_some());
}

#[test]
fn a_missing_flush_leaves_the_old_frame_visible() {
    // What kunmap_local's INVLPG prevents: clear the PTE behind the kernel's back and the
    // TLB still translates the slot to the old frame.
    let mut k = booted(true);
    let a = highmem_page(&mut k);
    let area = k.kmap_area;
    let va = k.kmap_local_page(0, a).expect("map");
    k.machine.read_virt_u32(0, va).expect("fill the TLB");
    let pte = area.kmap_pte;
    k.machine
        .mem
        .write_u64(machine::PhysAddr::new(pte), 0)
        .expect("clear PTE");
    let stale = k
        .machine
        .translate(0, va, Access::KERNEL_READ)
        .expect("still cached");
    assert_eq!(stale.pfn(), a);
    k.machine.invlpg(0, va).expect("invlpg");
    assert!(k.machine.translate(0, va, Access::KERNEL_READ).is_err());
}

#[test]
fn unbalanced_and_exhausted_slots_are_reported_not_panics() {
    let mut k = booted(true);
    let area = k.kmap_area;
    let pfn = highmem_page(&mut k);
    let first = k.kmap_local_page(0, pfn).expect("map");
    let _second = k.kmap_local_page(0, pfn).expect("map");
    // Unmapping out of order is the kernel's WARN_ON_ONCE; it then clears the top slot.
    k.kunmap_local(0, first).expect("a warning, not an oops");
    let last = k.hm.debug.reports.last().expect("reported");
    assert_eq!(last.check, Check::OutOfOrderUnmap);
    assert!(
        last.to_string().starts_with("WARNING: CPU: 0 PID: 0"),
        "{last}"
    );
    assert_eq!(k.kmap_local_depth(0), 1);
    // 15 nested mappings fit (KM_MAX_IDX 16, the push BUGs at idx 16).
    for _ in 1..area.km_max_idx - 1 {
        k.kmap_local_page(0, pfn).expect("map");
    }
    let e = k.kmap_local_page(0, pfn).expect_err("full");
    assert_eq!(e.check(), Some(Check::TooManyNested), "{e}");
    assert!(
        e.to_string().starts_with("BUG: kernel BUG at mm/highmem.c"),
        "{e}"
    );
    let e = k
        .kunmap_local(1, VirtAddr::new(area.slot_vaddr(area.km_max_idx)))
        .expect_err("nothing mapped on CPU 1");
    assert_eq!(e.check(), Some(Check::UnmapNotMapped), "{e}");
}

#[test]
fn page_address_is_the_direct_map_or_the_kmap_hash() {
    let mut k = booted(true);
    let low = k
        .alloc_pages(kernel::gfp::GFP_KERNEL, 0, 0)
        .expect("lowmem")
        .pfn;
    assert!(!k.page_high_mem(low));
    assert_eq!(
        k.page_address(low).map(|v| v.as_u64()),
        Some(k.config.page_offset() + low.phys().as_u64())
    );
    let high = highmem_page(&mut k);
    assert!(k.page_high_mem(high));
    assert_eq!(k.page_address(high), None, "not kmapped");
    // A kmap_local mapping is not recorded in the hash.
    let va = k.kmap_local_page(0, high).expect("map");
    assert_eq!(k.page_address(high), None);
    k.kunmap_local(0, va).expect("unmap");
}
