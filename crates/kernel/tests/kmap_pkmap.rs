//! Persistent kmaps on the booted model: pkmap_count, the PTEs in simulated RAM, the
//! page_address hash, the wrap flush, sleeping on pkmap_map_wait.

mod kmap_common;
use kernel::sched::{Blocking, TaskState, PKMAP_MAP_WAIT};
use kmap_common::{booted, highmem_pages, lowmem_page, run_task};
use machine::{Access, Pfn, VirtAddr, PAGE_SIZE};

fn ready(b: Blocking<VirtAddr>) -> VirtAddr {
    match b {
        Blocking::Ready(v) => v,
        Blocking::Sleep(_) => panic!("kmap slept"),
    }
}

#[test]
fn kmap_of_the_same_page_twice_reuses_the_address() {
    for pae in [true, false] {
        let mut k = booted(pae);
        assert_eq!(k.hm.pkmap.last, if pae { 512 } else { 1024 });
        let p = Pfn::new(highmem_pages(&mut k, 1)[0]);
        run_task(&mut k, "a", 0);
        let va = ready(k.kmap(0, p).unwrap());
        // The first kmap after boot takes slot 1: slot 0 is reached only by the wrap.
        assert_eq!(va.as_u64(), k.hm.pkmap.base + PAGE_SIZE);
        assert_eq!(k.page_address(p), Some(va));
        let pte = k
            .geo
            .read(&k.machine.mem, machine::PhysAddr::new(k.hm.pkmap.table), 1)
            .unwrap();
        assert_eq!(pte & k.geo.pfn_mask(), p.phys().as_u64(), "PTE in RAM");
        let again = ready(k.kmap(1, p).unwrap());
        assert_eq!(again, va);
        assert_eq!(k.hm.pkmap.count[1], 3, "two users: n + 1");
        assert_eq!(k.hm.pkmap.counters.new_mappings, 1);
        k.kunmap(0, p).unwrap();
        k.kunmap(1, p).unwrap();
        assert_eq!(k.hm.pkmap.count[1], 1, "mapped, unused, maybe cached");
        assert_eq!(k.page_address(p), Some(va), "lazy unmap keeps the address");
        // A later kmap finds it in the hash: same address, no new mapping, no TLB work.
        let flushes = k.machine.cpus[0].counters().invlpg;
        assert_eq!(ready(k.kmap(0, p).unwrap()), va);
        assert_eq!(k.hm.pkmap.counters.new_mappings, 1);
        assert_eq!(k.machine.cpus[0].counters().invlpg, flushes);
        k.kunmap(0, p).unwrap();
        assert!(k.pkmap_check().is_empty(), "{:?}", k.pkmap_check());
        assert!(k.hm.debug.reports.is_empty(), "{:?}", k.hm.debug.reports);
    }
}

#[test]
fn kmap_of_a_lowmem_page_is_its_direct_map_address() {
    let mut k = booted(true);
    let p = lowmem_page(&mut k);
    let va = ready(k.kmap(0, p).unwrap());
    assert_eq!(va.as_u64(), k.config.page_offset() + p.phys().as_u64());
    assert_eq!(k.hm.pkmap.counters.lowmem_kmaps, 1);
    assert_eq!(k.hm.pkmap.counters.new_mappings, 0);
    k.kunmap(0, p).unwrap();
}

#[test]
fn the_wrap_flushes_once_on_every_cpu() {
    let mut k = booted(true);
    let pages = highmem_pages(&mut k, 600);
    run_task(&mut k, "a", 0);
    // CPU 1 touches the first mapping, so it holds a TLB entry for slot 1.
    let first = ready(k.kmap(0, Pfn::new(pages[0])).unwrap());
    k.machine.read_virt_u32(1, first).unwrap();
    k.kunmap(0, Pfn::new(pages[0])).unwrap();
    let full: Vec<u64> = k
        .machine
        .cpus
        .iter()
        .map(|c| c.counters().full_flushes)
        .collect();
    // The shootdown counters are the kernel's (CPA and vmalloc flush through them too).
    let (per_cpu_before, ipis_before) = (k.tlb.per_cpu.clone(), k.tlb.ipis);
    for &p in &pages[1..511] {
        ready(k.kmap(0, Pfn::new(p)).unwrap());
        k.kunmap(0, Pfn::new(p)).unwrap();
    }
    assert_eq!(k.hm.pkmap.counters.wraps, 0);
    assert!(
        k.machine.cpus[1].tlb_lookup(first).is_some(),
        "stale until the wrap"
    );
    // The 512th new mapping wraps to slot 0: one flush of the window on each CPU.
    let va = ready(k.kmap(0, Pfn::new(pages[511])).unwrap());
    assert_eq!(va.as_u64(), k.hm.pkmap.base, "slot 0 after the flush");
    assert_eq!(k.hm.pkmap.counters.wraps, 1);
    assert_eq!(k.hm.pkmap.counters.global_flushes, 1);
    let per_cpu: Vec<u64> = k
        .tlb
        .per_cpu
        .iter()
        .zip(&per_cpu_before)
        .map(|(a, b)| a - b)
        .collect();
    assert_eq!(per_cpu, vec![1, 1]);
    assert_eq!(
        k.tlb.ipis - ipis_before,
        1,
        "CPU 1 interrupted, CPU 0 flushed itself"
    );
    let last = k.tlb.last().cloned().unwrap();
    assert_eq!(
        (last.initiator, last.interrupted.clone(), last.full),
        (0, vec![1], true)
    );
    for (c, before) in full.iter().enumerate() {
        assert_eq!(
            k.machine.cpus[c].counters().full_flushes,
            before + 1,
            "CPU {c}"
        );
    }
    assert!(k.machine.cpus[1].tlb_lookup(first).is_none());
    assert!(!k
        .machine
        .translate(1, first, Access::KERNEL_READ)
        .is_ok_and(|pa| pa.as_u64() / PAGE_SIZE == pages[0]));
    k.kunmap(0, Pfn::new(pages[511])).unwrap();
    // The rest go to slots 1.. again without another flush until the next wrap.
    for &p in &pages[512..] {
        ready(k.kmap(0, Pfn::new(p)).unwrap());
        k.kunmap(0, Pfn::new(p)).unwrap();
    }
    assert_eq!(k.hm.pkmap.counters.global_flushes, 1);
    assert!(k.pkmap_check().is_empty(), "{:?}", k.pkmap_check());
}

#[test]
fn a_full_pool_puts_kmap_to_sleep_until_a_kunmap_wakes_it() {
    let mut k = booted(true);
    let pages = highmem_pages(&mut k, 513);
    let a = run_task(&mut k, "a", 0);
    let b = run_task(&mut k, "b", 1);
    for &p in &pages[..512] {
        ready(k.kmap(1, Pfn::new(p)).unwrap());
    }
    assert_eq!(k.hm.pkmap.counters.in_use, 512);
    assert_eq!(k.hm.pkmap.counters.high_water, 512);
    // Task a on CPU 0 wants one more: every slot has a user, so it sleeps.
    let r = k.kmap(0, Pfn::new(pages[512])).unwrap();
    assert_eq!(r, Blocking::Sleep(PKMAP_MAP_WAIT));
    assert_eq!(
        k.sched.task(a).state,
        TaskState::Uninterruptible(PKMAP_MAP_WAIT)
    );
    assert_eq!(k.hm.pkmap.counters.sleeps, 1);
    assert!(k.sched.waitqueue_active(PKMAP_MAP_WAIT));
    // Still nothing free: the same call sleeps again.
    k.sched.task_mut(a).state = TaskState::Running;
    assert_eq!(
        k.kmap(0, Pfn::new(pages[512])).unwrap(),
        Blocking::Sleep(PKMAP_MAP_WAIT)
    );
    // b's kunmap brings a count to 1 and wakes the sleeper.
    k.kunmap(1, Pfn::new(pages[7])).unwrap();
    assert_eq!(k.sched.task(a).state, TaskState::Running);
    assert_eq!(k.hm.pkmap.counters.wakeups, 1);
    // The retry wraps, flushes the freed slot, and maps there.
    let shoot = k.tlb.count;
    let va = ready(k.kmap(0, Pfn::new(pages[512])).unwrap());
    assert_eq!(k.tlb.count, shoot + 1);
    assert_eq!(k.kmap_to_pfn(va), Some(pages[512]));
    assert!(!k.sched.waitqueue_active(PKMAP_MAP_WAIT), "removed itself");
    assert!(k.pkmap_check().is_empty(), "{:?}", k.pkmap_check());
    let _ = b;
}
