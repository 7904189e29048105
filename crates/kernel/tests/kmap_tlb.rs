//! kmap_local slot reuse and the TLBs: the unmap flushes only the mapping CPU.

mod kmap_common;
use kernel::highmem::Check;
use kmap_common::{booted, highmem_pages, run_task};
use machine::Pfn;

#[test]
fn a_reused_slot_is_fresh_on_its_cpu_and_stale_on_another_that_touched_it() {
    let mut k = booted(true);
    let p = highmem_pages(&mut k, 2);
    for (i, &x) in p.iter().enumerate() {
        k.machine.mem.monitor_frame_mut(Pfn::new(x)).unwrap()[..4]
            .copy_from_slice(&(0xaa00 + i as u32).to_le_bytes());
    }
    run_task(&mut k, "mapper", 0);
    run_task(&mut k, "snooper", 1);
    let va = k.kmap_local_page(0, Pfn::new(p[0])).unwrap();
    assert_eq!(k.machine.read_virt_u32(0, va).unwrap(), 0xaa00);
    // CPU 1 touches CPU 0's slot (the fixmap is in every page table): it caches it too.
    assert_eq!(k.machine.read_virt_u32(1, va).unwrap(), 0xaa00);
    let inv1 = k.machine.cpus[1].counters().invlpg;
    k.kunmap_local(0, va).unwrap();
    assert!(
        k.machine.cpus[0].tlb_lookup(va).is_none(),
        "INVLPG on CPU 0"
    );
    assert!(
        k.machine.cpus[1].tlb_lookup(va).is_some(),
        "no IPI: CPU 1 keeps it"
    );
    assert_eq!(k.machine.cpus[1].counters().invlpg, inv1);
    // The slot is reused for another page: same address, new frame on CPU 0...
    let again = k.kmap_local_page(0, Pfn::new(p[1])).unwrap();
    assert_eq!(again, va);
    assert_eq!(k.machine.read_virt_u32(0, va).unwrap(), 0xaa01);
    // ... while CPU 1 still reads the old frame through its stale entry, which the
    // checker flags (the kernel does not flush other CPUs: the slot is CPU 0's).
    assert_eq!(k.machine.read_virt_u32(1, va).unwrap(), 0xaa00);
    let e = k.kmap_read_u32(1, va).unwrap_err();
    assert_eq!(e.check(), Some(Check::UseAfterKunmap));
    let text = e.to_string();
    assert!(text.contains("stale TLB entry on CPU 1"), "{text}");
    assert!(text.contains("snooper"), "{text}");
    k.kunmap_local(0, again).unwrap();
}

#[test]
fn context_switch_unmaps_and_restores_the_slots() {
    let mut k = booted(true);
    let p = highmem_pages(&mut k, 1);
    let a = run_task(&mut k, "a", 0);
    let va = k.kmap_local_page(0, Pfn::new(p[0])).unwrap();
    k.machine.read_virt_u32(0, va).unwrap();
    let b = k.sched.spawn("b", 0);
    k.context_switch(0, b).unwrap();
    // a's slot is gone while b runs: its PTE cleared and flushed.
    assert!(k.machine.read_virt_u32(0, va).is_err());
    assert_eq!(k.kmap_local_depth(0), 0, "b's own stack");
    k.context_switch(0, a).unwrap();
    assert_eq!(k.kmap_local_depth(0), 1);
    assert!(k.machine.read_virt_u32(0, va).is_ok(), "restored");
    k.kunmap_local(0, va).unwrap();
    assert!(k.hm.debug.reports.is_empty());
}
