//! vfree's lazy TLB purge: the PTEs go at once, the TLB entries stay until one batched
//! flush on every CPU once more than lazy_max_pages() pages wait.

use kernel::config::KernelConfig;
use kernel::vmalloc::lazy_max_pages;
use kernel::{boot, BootOptions, Kernel};
use machine::{Access, VirtAddr, PAGE_SIZE};

fn booted(cpus: u32) -> Kernel {
    let cfg = KernelConfig::preset("debian-686-pae").expect("preset");
    let mut opts = BootOptions::new(2 << 30, cpus, cfg);
    opts.runtime_profile = false;
    boot(&opts).expect("boot")
}

#[test]
fn a_cpu_keeps_a_freed_translation_until_the_batch_flush() {
    let mut k = booted(2);
    assert_eq!(lazy_max_pages(2), 16384);
    let a = k.vmalloc(4 * PAGE_SIZE, 0).unwrap();
    let page = k.vmalloc_to_page(a, 0).unwrap().unwrap();
    k.machine
        .write_virt_u32(1, VirtAddr::new(a), 0x1234_5678)
        .unwrap();
    let shootdowns = k.tlb.count;
    k.vfree(a, 0).unwrap();
    // Page tables cleared immediately, nothing flushed.
    assert_eq!(k.vmalloc_to_page(a, 0).unwrap(), None);
    assert_eq!(k.tlb.count, shootdowns);
    assert_eq!(k.vmap.vmap_lazy_nr, 5);
    // CPU 1 cached the translation and still reaches the (now free) frame through it;
    // CPU 0 never did and faults.
    let hit = k.machine.cpus[1]
        .tlb_lookup(VirtAddr::new(a))
        .expect("stale entry");
    assert_eq!(hit.page_base, page.phys());
    assert_eq!(
        k.machine.read_virt_u32(1, VirtAddr::new(a)).unwrap(),
        0x1234_5678
    );
    assert!(k
        .machine
        .translate(0, VirtAddr::new(a), Access::KERNEL_READ)
        .unwrap_err()
        .page_fault()
        .is_some());
    // Fill the purge list past lazy_max_pages with 16 MiB areas.
    let mut freed = 5;
    while freed <= lazy_max_pages(2) {
        let b = k.vmalloc(16 << 20, 1).unwrap();
        k.vfree(b, 1).unwrap();
        freed += 4097;
        if freed <= lazy_max_pages(2) {
            assert_eq!(k.tlb.count, shootdowns, "no flush below the threshold");
        }
        k.check_vmalloc().unwrap();
    }
    // Exactly one shootdown: a full flush (the range is far past 33 pages), initiated by
    // CPU 1, interrupting CPU 0.
    assert_eq!(k.tlb.count, shootdowns + 1);
    let s = k.tlb.last().unwrap();
    assert!(s.full);
    assert_eq!(s.initiator, 1);
    assert_eq!(s.interrupted, vec![0]);
    assert_eq!(s.range.unwrap().0, a);
    assert_eq!(k.vmap.vmap_lazy_nr, 0);
    assert!(k.machine.cpus[1].tlb_lookup(VirtAddr::new(a)).is_none());
    assert!(k
        .machine
        .translate(1, VirtAddr::new(a), Access::KERNEL_READ)
        .unwrap_err()
        .page_fault()
        .is_some());
    k.check_vmalloc().unwrap();
}

#[test]
fn allocation_failure_purges_once_and_retries() {
    let mut k = booted(4);
    assert_eq!(lazy_max_pages(4), 24576);
    let a = k.vmalloc(90 << 20, 0).unwrap();
    k.vfree(a, 0).unwrap();
    assert!(k.vmap.vmap_lazy_nr > 0);
    let before = k.tlb.count;
    // Only ~30 MiB are free without the purge.
    let b = k.vmalloc(90 << 20, 2).unwrap();
    assert_eq!(b, a, "the purged space is reused from the bottom");
    assert_eq!(k.tlb.count, before + 1);
    let s = k.tlb.last().unwrap();
    assert_eq!(s.interrupted, vec![0, 1, 3]);
    assert!(!k
        .log
        .lines()
        .iter()
        .any(|m| m.text.contains("vmap allocation")));
    k.check_vmalloc().unwrap();
}
