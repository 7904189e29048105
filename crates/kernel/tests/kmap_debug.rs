//! The debug checks: each fires on code that commits the bug (a kernel-style report naming
//! the task, CPU and call; never a panic) and stays silent on correct code.

mod kmap_common;
use kernel::design::{KernelDesign, KmType::*};
use kernel::highmem::{Check, Severity};
use kernel::sched::exec::{run, ExecConfig, Op, Op::*, Outcome, Program};
use kernel::Kernel;
use kmap_common::{booted, highmem_pages, lowmem_page, run_task};
use machine::{Pfn, VirtAddr};

fn prog(comm: &str, cpu: usize, ops: Vec<Op>) -> Program {
    Program {
        comm: comm.into(),
        cpu,
        ops,
    }
}

/// Run one task's script; the checks that fired.
fn checks_of(k: &mut Kernel, ops: Vec<Op>) -> Vec<Check> {
    let r = run(k, &[prog("buggy", 0, ops)], &ExecConfig::new(1));
    assert!(
        matches!(r.outcome, Outcome::Completed),
        "{:?}\n{}",
        r.outcome,
        r.trace
    );
    k.hm.debug.reports.iter().map(|r| r.check).collect()
}

fn assert_names_task(k: &Kernel, check: Check, call: &str) {
    let r =
        k.hm.debug
            .reports
            .iter()
            .find(|r| r.check == check)
            .unwrap_or_else(|| panic!("no {check:?} report"));
    let text = r.to_string();
    assert!(
        text.contains("buggy") && text.contains(&format!("CPU: {}", r.cpu)),
        "{text}"
    );
    assert!(r.call.contains(call), "{text}");
    assert!(
        text.starts_with("BUG: ") || text.starts_with("WARNING: "),
        "{text}"
    );
    let log: Vec<&str> = k.log.lines().iter().map(|m| m.text.as_str()).collect();
    assert!(log.iter().any(|l| text.lines().next() == Some(l)), "logged");
}

#[test]
fn correct_code_is_silent_in_every_design() {
    for design in KernelDesign::ALL {
        let mut k = booted(true);
        k.hm.design = design;
        let p = highmem_pages(&mut k, 4);
        let low = lowmem_page(&mut k).as_u64();
        let mut a = vec![
            Kmap(p[0]),
            Read(p[0]),
            KmapLocal(p[1]),
            KmapLocal(low),
            Read(p[1]),
            KunmapLocal(low),
            KunmapLocal(p[1]),
            Kunmap(p[0]),
            Kmap(low),
            Kunmap(low),
            Sleep,
        ];
        let mut b = vec![
            Kmap(p[2]),
            Kmap(p[0]),
            Read(p[0]),
            Kunmap(p[0]),
            Kunmap(p[2]),
        ];
        if design == KernelDesign::Linux61 {
            a.extend([KmapAtomic(p[3]), Read(p[3]), KunmapAtomic(p[3])]);
        } else {
            a.extend([
                KmapTyped(p[3], KM_USER0),
                Read(p[3]),
                KunmapTyped(p[3], KM_USER0),
            ]);
            b.extend([KmapTyped(p[1], KM_USER1), KunmapTyped(p[1], KM_USER1)]);
        }
        for seed in 0..20 {
            let progs = [prog("a", 0, a.clone()), prog("b", 1, b.clone())];
            let r = run(&mut k, &progs, &ExecConfig::new(seed));
            assert_eq!(
                r.outcome,
                Outcome::Completed,
                "{design:?} seed {seed}\n{}",
                r.trace
            );
        }
        assert!(
            k.hm.debug.reports.is_empty(),
            "{design:?}: {:#?}",
            k.hm.debug.reports
        );
        assert!(k.pkmap_check().is_empty());
    }
}

#[test]
fn unmapping_out_of_order() {
    let mut k = booted(true);
    let p = highmem_pages(&mut k, 2);
    let c = checks_of(
        &mut k,
        vec![
            KmapLocal(p[0]),
            KmapLocal(p[1]),
            KunmapLocal(p[0]),
            KunmapLocal(p[1]),
        ],
    );
    assert_eq!(c[0], Check::OutOfOrderUnmap);
    assert_names_task(&k, Check::OutOfOrderUnmap, "kunmap_local(");
    assert_eq!(k.hm.debug.reports[0].severity, Severity::Warning);
}

#[test]
fn unmapping_what_is_not_mapped() {
    let mut k = booted(true);
    let p = highmem_pages(&mut k, 1);
    assert_eq!(
        checks_of(&mut k, vec![Kunmap(p[0])]),
        vec![Check::UnmapNotMapped]
    );
    assert_names_task(&k, Check::UnmapNotMapped, "kunmap(pfn");
    // kunmap twice: the second would take pkmap_count to 0 without a flush.
    let mut k = booted(true);
    let p = highmem_pages(&mut k, 1);
    let c = checks_of(&mut k, vec![Kmap(p[0]), Kunmap(p[0]), Kunmap(p[0])]);
    assert_eq!(c, vec![Check::UnmapNotMapped]);
    // kunmap_local with nothing on the stack.
    let mut k = booted(true);
    run_task(&mut k, "buggy", 0);
    let slot = VirtAddr::new(k.kmap_area.slot_vaddr(0));
    let e = k.kunmap_local(0, slot).unwrap_err();
    assert_eq!(e.check(), Some(Check::UnmapNotMapped));
    assert!(k.pkmap_check().is_empty());
}

#[test]
fn mapping_a_slot_that_is_not_empty() {
    let mut k = booted(true);
    let p = highmem_pages(&mut k, 2);
    run_task(&mut k, "buggy", 0);
    // Something wrote slot 0 of CPU 0 behind kmap_local's back.
    let pte = k.kmap_area.slot_pte(0);
    k.geo
        .write(&mut k.machine.mem, pte, 0, (p[1] << 12) | k.kmap_area.prot)
        .unwrap();
    let e = k.kmap_local_page(0, Pfn::new(p[0])).unwrap_err();
    assert_eq!(e.check(), Some(Check::SlotNotEmpty));
    assert_names_task(&k, Check::SlotNotEmpty, "kmap_local_page(");
    assert_eq!(k.kmap_local_depth(0), 0, "nothing pushed");
}

#[test]
fn sleeping_while_holding_an_atomic_kmap() {
    let mut k = booted(true);
    let p = highmem_pages(&mut k, 2);
    let c = checks_of(&mut k, vec![KmapAtomic(p[0]), Sleep, KunmapAtomic(p[0])]);
    assert!(
        c.iter().all(|&c| c == Check::SleepInAtomic) && c.len() == 2,
        "{c:?}"
    );
    let text = k.hm.debug.reports[0].to_string();
    assert!(
        text.starts_with("BUG: sleeping function called from invalid context"),
        "{text}"
    );
    assert!(k.hm.debug.reports[1]
        .to_string()
        .contains("scheduling while atomic: buggy/"));
    // kmap() may sleep: calling it under kmap_atomic is the same bug.
    let mut k = booted(true);
    let p = highmem_pages(&mut k, 2);
    let c = checks_of(
        &mut k,
        vec![
            KmapAtomic(p[0]),
            Kmap(p[1]),
            Kunmap(p[1]),
            KunmapAtomic(p[0]),
        ],
    );
    assert_eq!(c, vec![Check::SleepInAtomic]);
    assert_names_task(&k, Check::SleepInAtomic, "kmap(pfn");
    // Under kmap_local (no preempt_disable) sleeping is allowed.
    let mut k = booted(true);
    let p = highmem_pages(&mut k, 2);
    let c = checks_of(
        &mut k,
        vec![
            KmapLocal(p[0]),
            Sleep,
            Kmap(p[1]),
            Kunmap(p[1]),
            KunmapLocal(p[0]),
        ],
    );
    assert!(c.is_empty(), "{c:?}");
}

#[test]
fn kmap_in_interrupt_context() {
    let mut k = booted(true);
    let p = highmem_pages(&mut k, 1);
    let c = checks_of(&mut k, vec![IrqEnter, Kmap(p[0]), Kunmap(p[0]), IrqExit]);
    assert_eq!(c, vec![Check::KmapInInterrupt]);
    assert_names_task(&k, Check::KmapInInterrupt, "kmap(pfn");
    // 2.4 BUG()s: the task is killed, the run goes on.
    let mut k = booted(true);
    k.hm.design = KernelDesign::PteHighmem24;
    let p = highmem_pages(&mut k, 1);
    let r = run(
        &mut k,
        &[prog("buggy", 0, vec![IrqEnter, Kmap(p[0]), IrqExit])],
        &ExecConfig::new(3),
    );
    assert_eq!(r.outcome, Outcome::Completed);
    assert!(
        r.trace
            .contains("oops: BUG: kernel BUG at mm/highmem.c: kmap() in interrupt"),
        "{}",
        r.trace
    );
    // kmap_local is fine in an interrupt.
    let mut k = booted(true);
    let p = highmem_pages(&mut k, 1);
    assert!(checks_of(
        &mut k,
        vec![IrqEnter, KmapLocal(p[0]), KunmapLocal(p[0]), IrqExit]
    )
    .is_empty());
}

#[test]
fn a_mapping_still_held_at_exit() {
    let mut k = booted(true);
    let p = highmem_pages(&mut k, 2);
    let c = checks_of(&mut k, vec![Kmap(p[0]), KmapLocal(p[1])]);
    assert_eq!(c, vec![Check::HeldAtExit]);
    let text = k.hm.debug.reports[0].to_string();
    assert!(text.contains("exited holding 2 kmap(s)"), "{text}");
    assert!(text.contains("Pkmap") && text.contains("Local"), "{text}");
}

#[test]
fn too_many_nested_mappings() {
    let mut k = booted(true);
    let p = highmem_pages(&mut k, 16);
    let ops: Vec<Op> = p.iter().map(|&x| KmapLocal(x)).collect();
    let r = run(&mut k, &[prog("buggy", 0, ops)], &ExecConfig::new(0));
    assert_eq!(r.outcome, Outcome::Completed);
    let checks: Vec<Check> = k.hm.debug.reports.iter().map(|r| r.check).collect();
    assert_eq!(checks, vec![Check::TooManyNested], "the 16th push");
    // With DEBUG_KMAP_LOCAL: 16 mappings on odd slots, guard pages between.
    let mut cfg = kernel::config::KernelConfig::preset("debian-686-pae").unwrap();
    cfg.debug_kmap_local = true;
    let mut opts = kernel::BootOptions::new(2 << 30, 2, cfg);
    opts.runtime_profile = false;
    let mut k = kernel::boot(&opts).unwrap();
    k.hm.debug.enable_all();
    let p = highmem_pages(&mut k, 17);
    run_task(&mut k, "buggy", 0);
    let mut vas = Vec::new();
    for &x in &p[..16] {
        vas.push(k.kmap_local_page(0, Pfn::new(x)).unwrap());
    }
    assert_eq!(
        vas[0].as_u64(),
        k.kmap_area.slot_vaddr(1),
        "slot 0 is a guard"
    );
    assert_eq!(vas[0].as_u64() - vas[1].as_u64(), 2 * 4096);
    let guard = VirtAddr::new(k.kmap_area.slot_vaddr(2));
    assert!(
        k.machine.read_virt_u32(0, guard).is_err(),
        "guard page faults"
    );
    let e = k.kmap_local_page(0, Pfn::new(p[16])).unwrap_err();
    assert_eq!(e.check(), Some(Check::TooManyNested));
}

#[test]
fn two_users_of_one_typed_slot_on_one_cpu() {
    for design in [KernelDesign::Highpte25, KernelDesign::PteHighmem24] {
        // Process context holds KM_USER0; an interrupt on the same CPU takes KM_USER0 too.
        let ops = |p: &[u64]| {
            vec![
                KmapTyped(p[0], KM_USER0),
                IrqEnter,
                KmapTyped(p[1], KM_USER0),
                KunmapTyped(p[1], KM_USER0),
                IrqExit,
                Read(p[0]),
                KunmapTyped(p[0], KM_USER0),
            ]
        };
        let mut k = booted(true);
        k.hm.design = design;
        let p = highmem_pages(&mut k, 2);
        let c = checks_of(&mut k, ops(&p));
        assert_eq!(c[0], Check::TypedSlotInUse, "{design:?}: {c:?}");
        assert_names_task(&k, Check::TypedSlotInUse, "KM_USER0");
        // Without DEBUG_HIGHMEM nothing stops it: the first user then reads the irq's
        // page, which the model's checker flags.
        let mut k = booted(true);
        k.hm.design = design;
        k.hm.debug.debug_highmem = false;
        let p = highmem_pages(&mut k, 2);
        let c = checks_of(&mut k, ops(&p));
        assert_eq!(
            c,
            vec![Check::WrongFrame],
            "{design:?} {:#?}",
            k.hm.debug.reports
        );
        // And with the checker off too, the bug is silent.
        let mut k = booted(true);
        k.hm.design = design;
        k.hm.debug.debug_highmem = false;
        k.hm.debug.checker = false;
        let p = highmem_pages(&mut k, 2);
        assert!(checks_of(&mut k, ops(&p)).is_empty());
    }
    // A design without the slot: the kernel would not compile; the model reports it.
    let mut k = booted(true);
    k.hm.design = KernelDesign::PteHighmem24;
    let p = highmem_pages(&mut k, 1);
    run_task(&mut k, "buggy", 0);
    let e = k.kmap_atomic_typed(0, Pfn::new(p[0]), KM_PTE0).unwrap_err();
    assert_eq!(e.check(), Some(Check::NoSuchKmType));
}

#[test]
fn reading_through_a_kmap_address_after_kunmap() {
    // kmap_local: the unmap cleared the PTE and flushed this CPU, so the read faults.
    let mut k = booted(true);
    let p = highmem_pages(&mut k, 1);
    let r = run(
        &mut k,
        &[prog(
            "buggy",
            0,
            vec![KmapLocal(p[0]), KunmapLocal(p[0]), Read(p[0])],
        )],
        &ExecConfig::new(0),
    );
    assert!(
        r.trace
            .contains("oops: BUG: unable to handle page fault for address"),
        "{}",
        r.trace
    );
    assert_names_task(&k, Check::PageFault, "read *(");
    // kmap: the lazy unmap leaves the PTE, so the read "works" — and is flagged.
    let mut k = booted(true);
    let p = highmem_pages(&mut k, 1);
    let c = checks_of(&mut k, vec![Kmap(p[0]), Kunmap(p[0]), Read(p[0])]);
    assert_eq!(c, vec![Check::UseAfterKunmap]);
    // 2.4 typed slot without DEBUG_HIGHMEM: the PTE stays, the read is flagged.
    let mut k = booted(true);
    k.hm.design = KernelDesign::PteHighmem24;
    k.hm.debug.debug_highmem = false;
    let p = highmem_pages(&mut k, 1);
    let c = checks_of(
        &mut k,
        vec![
            KmapTyped(p[0], KM_BOUNCE_READ),
            KunmapTyped(p[0], KM_BOUNCE_READ),
            Read(p[0]),
        ],
    );
    assert_eq!(c, vec![Check::UseAfterKunmap]);
}
