//! Random kmap / kunmap / kmap_local / kunmap_local sequences across tasks and CPUs, with
//! the invariants checked after every scheduler step, and everything back to its boot
//! state once released.

mod kmap_common;
use kernel::sched::exec::{run_checked, ExecConfig, Op, Outcome, Program};
use kernel::Kernel;
use kmap_common::{booted, highmem_pages, lowmem_page};
use proptest::prelude::*;

/// Turn choice bytes into a balanced script: kmaps of shared pages (released in any
/// order), a LIFO stack of kmap_local mappings of the task's own pages, checked reads.
fn script(choices: &[u8], shared: &[u64], own: &[u64]) -> Vec<Op> {
    let mut ops = Vec::new();
    let mut kmapped: Vec<u64> = Vec::new();
    let mut stack: Vec<u64> = Vec::new();
    for (i, &c) in choices.iter().enumerate() {
        let pick = (c as usize / 8) ^ i;
        match c % 8 {
            0 | 1 => {
                let p = shared[pick % shared.len()];
                ops.push(Op::Kmap(p));
                kmapped.push(p);
            }
            2 if !kmapped.is_empty() => {
                let p = kmapped.remove(pick % kmapped.len());
                ops.push(Op::Kunmap(p));
            }
            3 | 4 if stack.len() < own.len() => {
                let p = own[stack.len()];
                ops.push(Op::KmapLocal(p));
                stack.push(p);
            }
            5 if !stack.is_empty() => ops.push(Op::KunmapLocal(stack.pop().unwrap())),
            6 => {
                if let Some(&p) = stack.last().or(kmapped.last()) {
                    ops.push(Op::Read(p));
                }
            }
            7 => ops.push(Op::Sleep),
            _ => {}
        }
    }
    ops.extend(stack.iter().rev().map(|&p| Op::KunmapLocal(p)));
    ops.extend(kmapped.iter().map(|&p| Op::Kunmap(p)));
    ops
}

/// kmap_local slots: a running task's slots hold its PTEs, nothing else is mapped.
fn local_slots_consistent(k: &Kernel) -> Result<(), String> {
    let area = k.kmap_area;
    for cpu in 0..k.sched.cpus.len() {
        let t = k.sched.task(k.sched.current(cpu));
        for i in 0..area.km_max_idx {
            let gidx = i + area.km_max_idx * cpu as u64;
            let pte = area
                .geo
                .read(&k.machine.mem, area.slot_pte(gidx), 0)
                .map_err(|e| e.to_string())?;
            let want = if i < t.kmap_ctrl.idx {
                t.kmap_ctrl.pteval[i as usize]
            } else {
                0
            };
            if pte != want {
                return Err(format!(
                    "CPU {cpu} slot {i}: PTE {pte:#x}, task {} wants {want:#x}",
                    t.comm
                ));
            }
        }
    }
    Ok(())
}

fn invariants(k: &Kernel) -> Result<(), String> {
    let bad = k.pkmap_check();
    if !bad.is_empty() {
        return Err(bad.join("; "));
    }
    local_slots_consistent(k)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn random_kmap_sequences_keep_the_invariants(
        seed in any::<u64>(),
        pae in any::<bool>(),
        start_nr in 0usize..1024,
        tasks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..60), 1..5),
    ) {
        let mut k = booted(pae);
        let boot_counters = (k.hm.pkmap.counters.clone(), k.page_address_htable.len());
        // Start the scan anywhere so the wrap (flush_all_zero_pkmaps) happens mid-run.
        k.hm.pkmap.last_pkmap_nr = start_nr % k.hm.pkmap.last;
        let mut shared = highmem_pages(&mut k, 24);
        shared.push(lowmem_page(&mut k).as_u64());
        let progs: Vec<Program> = tasks
            .iter()
            .enumerate()
            .map(|(t, choices)| {
                let own = highmem_pages(&mut k, 6);
                Program { comm: format!("t{t}"), cpu: t % 2, ops: script(choices, &shared, &own) }
            })
            .collect();
        let r = run_checked(&mut k, &progs, &ExecConfig::new(seed), &mut invariants);
        prop_assert_eq!(&r.outcome, &Outcome::Completed, "{}", r.trace);
        prop_assert!(k.hm.debug.reports.is_empty(), "{:#?}", k.hm.debug.reports);
        // Everything released: no users, no slot, no sleeper, no raised count.
        prop_assert_eq!(k.hm.pkmap.counters.in_use, 0);
        prop_assert!(!k.sched.waitqueue_active(kernel::sched::PKMAP_MAP_WAIT));
        for t in &k.sched.tasks {
            prop_assert!(t.held.is_empty() && t.kmap_ctrl.idx == 0 && t.migration_disabled == 0);
            prop_assert_eq!(t.pagefault_disabled, 0);
        }
        for c in &k.sched.cpus {
            prop_assert_eq!((c.preempt_count, c.hardirq), (0, 0));
        }
        // kmap_flush_unused() drops the lazily kept mappings: back to the boot state.
        k.kmap_flush_unused(0).unwrap();
        prop_assert!(k.hm.pkmap.count.iter().all(|&c| c == 0));
        prop_assert_eq!(k.page_address_htable.len(), boot_counters.1);
        prop_assert_eq!(k.kmap_local.maps - k.kmap_local.unmaps, 0);
        prop_assert!(invariants(&k).is_ok());
        let c = &k.hm.pkmap.counters;
        prop_assert_eq!(c.kmaps, c.kunmaps);
        prop_assert_eq!(c.in_use, boot_counters.0.in_use);
    }
}
