//! vmalloc on the booted model: pages from the right zones, the PTEs walked back with
//! vmalloc_to_page, data written through the MMU and read back through the direct map or a
//! kmap_local slot, guard pages that fault, the kernel's warnings, kvmalloc's fallback,
//! ioremap and /proc/vmallocinfo.

use kernel::config::KernelConfig;
use kernel::procfs::live;
use kernel::vmalloc::{KvAlloc, VM_ALLOC, VM_IOREMAP};
use kernel::{boot, BootOptions, Kernel};
use machine::{Access, Pfn, VirtAddr, PAGE_SIZE};

fn booted(pae: bool, mib: u64, cpus: u32) -> Kernel {
    let preset = if pae { "debian-686-pae" } else { "debian-686" };
    let cfg = KernelConfig::preset(preset).expect("preset");
    let mut opts = BootOptions::new(mib << 20, cpus, cfg);
    opts.runtime_profile = false;
    let mut k = boot(&opts).expect("boot");
    // These tests read exact addresses and counts from an empty vmalloc area: the boot's
    // own areas (ACPI, HPET, zswap, n_tty …; vmalloc_reference.rs checks them) go first.
    let areas: Vec<u64> = k.vmap.busy.keys().copied().collect();
    for a in areas {
        k.vfree(a, 0).expect("vfree");
    }
    k.purge_vmap_area_lazy(0).expect("purge");
    k.vmap.purges = 0;
    k
}

fn is_high(k: &Kernel, pfn: Pfn) -> bool {
    pfn.as_u64() >= k.layout.max_low_pfn.as_u64()
}

#[test]
fn vmalloc_to_page_returns_exactly_the_allocated_pages_and_data_reads_back() {
    for pae in [true, false] {
        let mut k = booted(pae, 2048, 2);
        let size = 37 * PAGE_SIZE + 123;
        let addr = k.vmalloc(size, 0).expect("vmalloc");
        assert!(k.vmap.is_vmalloc_addr(addr));
        assert_eq!(addr, k.vmap.start(), "first area at VMALLOC_START");
        let pages = k.vmap.find_vm_area(addr).unwrap().pages.clone();
        assert_eq!(pages.len(), 38);
        // GFP_KERNEL | __GFP_HIGHMEM: highmem first on a 2 GiB machine.
        assert!(pages.iter().all(|&p| is_high(&k, p)), "pae={pae}");
        for (i, &p) in pages.iter().enumerate() {
            let va = addr + i as u64 * PAGE_SIZE;
            assert_eq!(k.vmalloc_to_page(va + 7, 1).unwrap(), Some(p));
            assert_eq!(k.vmalloc_to_pfn(va, 0).unwrap(), Some(p.as_u64()));
        }
        // Write through the vmalloc address on CPU 1, read each page through a kmap.
        let data: Vec<u8> = (0..size).map(|i| (i * 7 + 3) as u8).collect();
        k.machine.write_virt(1, VirtAddr::new(addr), &data).unwrap();
        for (i, &p) in pages.iter().enumerate() {
            let mut buf = vec![0u8; PAGE_SIZE as usize];
            k.read_page_kmap(p, 0, &mut buf).unwrap();
            let lo = i * PAGE_SIZE as usize;
            let hi = (lo + PAGE_SIZE as usize).min(data.len());
            assert_eq!(&buf[..hi - lo], &data[lo..hi], "page {i}");
        }
        assert_eq!(k.kmap_local_depth(0), 0);
        // The guard page faults on a supervisor access.
        let guard = addr + 38 * PAGE_SIZE;
        assert_eq!(k.vmalloc_to_page(guard, 0).unwrap(), None);
        let e = k
            .machine
            .translate(0, VirtAddr::new(guard), Access::KERNEL_READ)
            .unwrap_err();
        assert!(e.page_fault().is_some(), "{e}");
        let e = k
            .machine
            .write_virt(0, VirtAddr::new(guard - 2), &[1, 2, 3, 4]);
        assert!(e.unwrap_err().page_fault().is_some());
        assert_eq!(live::meminfo(&k).vmalloc_nr_pages, 38);
        k.check_vmalloc().unwrap();
        k.vfree(addr, 0).unwrap();
        assert_eq!(k.vmap.nr_vmalloc_pages, 0);
        k.check_vmalloc().unwrap();
    }
}

#[test]
fn vmalloc_32_and_vzalloc() {
    let mut k = booted(true, 2048, 1);
    let a = k.vmalloc_32(8 * PAGE_SIZE, 0).unwrap();
    let pages = k.vmap.find_vm_area(a).unwrap().pages.clone();
    assert!(
        pages.iter().all(|&p| !is_high(&k, p)),
        "vmalloc_32 is lowmem"
    );
    // Dirty the pages, free them (they return to the pcp lists), vzalloc gets them zeroed.
    k.machine
        .write_virt(0, VirtAddr::new(a), &vec![0xa5; 8 * PAGE_SIZE as usize])
        .unwrap();
    let b = k.vmalloc(8 * PAGE_SIZE, 0).unwrap();
    let hp = k.vmap.find_vm_area(b).unwrap().pages.clone();
    for &p in &hp {
        k.machine.mem.monitor_frame_mut(p).unwrap().fill(0x5a);
    }
    k.vfree(b, 0).unwrap();
    let z = k.vzalloc(8 * PAGE_SIZE, 0).unwrap();
    let zp = k.vmap.find_vm_area(z).unwrap().pages.clone();
    assert!(zp.iter().any(|p| hp.contains(p)), "recycled pages");
    let mut buf = vec![0xffu8; 8 * PAGE_SIZE as usize];
    k.machine.read_virt(0, VirtAddr::new(z), &mut buf).unwrap();
    assert!(buf.iter().all(|&b| b == 0));
    k.check_vmalloc().unwrap();
}

#[test]
fn vfree_of_a_bad_address_warns_as_6_1() {
    let mut k = booted(false, 1024, 1);
    let bogus = k.vmap.start() + 0x40_0000;
    k.vfree(bogus, 0).unwrap();
    let want = format!("Trying to vfree() nonexistent vm area ({bogus:08x})");
    assert!(k.log.lines().iter().any(|m| m.text == want), "{want}");
    k.vfree(bogus + 3, 0).unwrap();
    let want = format!("Trying to vfree() bad address ({:08x})", bogus + 3);
    assert!(k.log.lines().iter().any(|m| m.text == want));
    k.check_vmalloc().unwrap();
}

#[test]
fn running_out_of_vmalloc_space_prints_the_hint() {
    let mut k = booted(true, 1024, 1);
    let total = k.vmap.end() - k.vmap.start();
    // More than the area: refused by alloc_vmap_area.
    let e = k.vmap(&[Pfn::new(0x100); 1], 0, 0).unwrap();
    k.vunmap(e, 0).unwrap();
    let big = total;
    assert!(k.vmalloc(big, 0).is_err());
    let want = format!(
        "vmap allocation for size {} failed: use vmalloc=<size> to increase size",
        big + PAGE_SIZE
    );
    assert!(k.log.lines().iter().any(|m| m.text == want), "{want}");
    assert!(k.log.lines().iter().any(|m| m.text.contains(&format!(
        "vmalloc error: size {big}, vm_struct allocation failed, mode:0xcc0(GFP_KERNEL)"
    ))));
    k.check_vmalloc().unwrap();
}

#[test]
fn vmap_maps_callers_pages_and_vunmap_leaves_them() {
    let mut k = booted(true, 2048, 1);
    let pfns: Vec<Pfn> = (0..5)
        .map(|_| k.alloc_pages(kernel::gfp::GFP_HIGHUSER, 0, 0).unwrap().pfn)
        .collect();
    let free_before = k.node.nr_free_pages();
    let a = k.vmap(&pfns, 0, 0).unwrap();
    for (i, p) in pfns.iter().enumerate() {
        assert_eq!(
            k.vmalloc_to_page(a + i as u64 * PAGE_SIZE, 0).unwrap(),
            Some(*p)
        );
    }
    k.machine
        .write_virt_u32(0, VirtAddr::new(a + 4 * PAGE_SIZE), 0xdead_beef)
        .unwrap();
    let mut b = [0u8; 4];
    k.read_page_kmap(pfns[4], 0, &mut b).unwrap();
    assert_eq!(u32::from_le_bytes(b), 0xdead_beef);
    assert_eq!(k.vmap.nr_vmalloc_pages, 0, "vmap pages are not VmallocUsed");
    k.check_vmalloc().unwrap();
    k.vunmap(a, 0).unwrap();
    assert_eq!(k.node.nr_free_pages(), free_before, "vunmap frees no page");
    assert_eq!(k.vmalloc_to_page(a, 0).unwrap(), None);
    k.check_vmalloc().unwrap();
}

#[test]
fn ioremap_of_reserved_ranges_and_refusal_of_ram() {
    let mut k = booted(true, 1024, 1);
    // The HPET block: not RAM.
    let v = k.ioremap(0xfed0_0000, 0x400, 0).unwrap();
    let vm = k.vmap.find_vm_area(v).unwrap().clone();
    assert_eq!(vm.flags & VM_IOREMAP, VM_IOREMAP);
    assert_eq!(vm.size, 2 * PAGE_SIZE);
    assert_eq!(k.vmalloc_to_pfn(v, 0).unwrap(), Some(0xfed00));
    // An unaligned range keeps its offset and spans two pages; ioremap aligns to its order.
    let w = k.ioremap(0xbffe_0800, 0x1000, 0).unwrap();
    assert_eq!(w & 0xfff, 0x800);
    assert_eq!(k.vmap.find_vm_area(w).unwrap().size, 3 * PAGE_SIZE);
    assert_eq!((w & !0xfff) % (2 * PAGE_SIZE), 0, "aligned to 8 KiB");
    // Managed RAM is refused with the kernel's warning.
    assert!(k.ioremap(0x0100_0000 + (64 << 20), PAGE_SIZE, 0).is_err());
    assert!(k
        .log
        .lines()
        .iter()
        .any(|m| m.text == "ioremap on RAM at 0x0000000005000000 - 0x0000000005000fff"));
    let text = live::read(&k, "vmallocinfo").unwrap();
    let first = text.lines().next().unwrap();
    assert_eq!(
        first,
        format!(
            "0x{v:08x}-0x{:08x}    8192 ioremap phys=0x00000000fed00000 ioremap",
            v + 8192
        )
    );
    k.check_vmalloc().unwrap();
    k.iounmap(v, 0).unwrap();
    k.iounmap(w, 0).unwrap();
    k.check_vmalloc().unwrap();
}

#[test]
fn vmallocinfo_lines_and_unpurged_areas() {
    let mut k = booted(false, 1024, 1);
    let a = k
        .vmalloc_caller(
            3 * PAGE_SIZE,
            kernel::gfp::GFP_KERNEL,
            "n_tty_open+0x16/0x90",
            0,
        )
        .unwrap();
    let b = k.vmalloc(PAGE_SIZE, 0).unwrap();
    k.vfree(a, 0).unwrap();
    let text = live::read(&k, "vmallocinfo").unwrap();
    assert_eq!(
        text,
        format!(
            "0x{b:08x}-0x{:08x}    8192 vmalloc pages=1 vmalloc\n0x{a:08x}-0x{:08x}   16384 unpurged vm_area\n",
            b + 8192,
            a + 16384
        )
    );
    assert!(k.vmap.find_vm_area(b).unwrap().flags & VM_ALLOC != 0);
    // A page array of more than a page lives in a nested vmalloc area ("vpages").
    let big = k.vmalloc(1100 * PAGE_SIZE, 0).unwrap();
    let text = live::read(&k, "vmallocinfo").unwrap();
    assert!(
        text.lines()
            .any(|l| l.starts_with(&format!("0x{big:08x}"))
                && l.ends_with(" pages=1100 vmalloc vpages")),
        "{text}"
    );
    assert_eq!(k.vmap.nr_vmalloc_pages, 1 + 1100 + 2);
    let mi = kernel::procfs::format_meminfo(&live::meminfo(&k));
    assert!(
        mi.contains(&format!("VmallocUsed:    {:8} kB\n", (1 + 1100 + 2) * 4)),
        "{mi}"
    );
    assert!(mi.contains("VmallocChunk:          0 kB\n"));
    k.vfree(big, 0).unwrap();
    assert_eq!(k.vmap.nr_vmalloc_pages, 1);
    k.check_vmalloc().unwrap();
}

#[test]
fn kvmalloc_prefers_contiguous_pages_and_falls_back_to_vmalloc() {
    let mut k = booted(true, 2048, 1);
    k.node.drain_all_pages(None);
    let free0 = k.node.nr_free_pages();
    let pte0 = k.vmap.kernel_pte_pages;
    // Above KMALLOC_MAX_CACHE_SIZE: kmalloc_large's compound pages, lowmem.
    let a = k.kvmalloc(64 << 10, 0).unwrap();
    match a {
        KvAlloc::Kmalloc { addr, pfn, order } => {
            assert_eq!(order, 4);
            assert_eq!(addr, k.config.page_offset() + pfn.phys().as_u64());
            assert!(!is_high(&k, pfn));
        }
        other => panic!("{other:?}"),
    }
    // Past MAX_ORDER: the contiguous attempt fails quietly, vmalloc takes over.
    let b = k.kvzalloc(8 << 20, 0).unwrap();
    assert!(b.is_vmalloc());
    assert!(k.vmap.is_vmalloc_addr(b.addr()));
    assert!(!k
        .log
        .lines()
        .iter()
        .any(|m| m.text.contains("page allocation failure")));
    let mut buf = vec![1u8; 4096];
    k.machine
        .read_virt(0, VirtAddr::new(b.addr() + (4 << 20)), &mut buf)
        .unwrap();
    assert!(buf.iter().all(|&x| x == 0));
    k.kvfree(a, 0).unwrap();
    k.kvfree(b, 0).unwrap();
    k.purge_vmap_area_lazy(0).unwrap();
    k.node.drain_all_pages(None);
    // Everything back except the kernel PTE pages the vmalloc area keeps.
    assert_eq!(
        k.node.nr_free_pages() + k.vmap.kernel_pte_pages - pte0,
        free0
    );
}

#[test]
fn kvmalloc_of_a_small_size_is_an_object_of_the_kmalloc_cache() {
    let mut k = booted(true, 2048, 1);
    let a = k.kvmalloc(1000, 0).unwrap();
    let KvAlloc::Slab { addr } = a else {
        panic!("{a:?}")
    };
    // kmalloc-1k's object in the direct map, not pages of its own.
    assert_eq!(k.ksize(VirtAddr::new(addr), 0).unwrap(), 1024);
    assert!(!k.vmap.is_vmalloc_addr(addr));
    k.kvfree(a, 0).unwrap();
    // Back on the CPU's freelist: the next object of that cache is the same one.
    let b = k.kvmalloc(1000, 0).unwrap();
    assert_eq!(b, KvAlloc::Slab { addr });
    k.kvfree(b, 0).unwrap();
    assert!(!k.log.lines().iter().any(|m| m.text.starts_with("BUG")));
}
