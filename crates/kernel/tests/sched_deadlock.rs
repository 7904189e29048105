//! The deterministic scheduler: seed 001's "kmap() is deadlock land" found by a seed, the
//! same seed replaying byte for byte, kmap_local slots surviving context switches.

mod kmap_common;
use kernel::sched::exec::{run, ExecConfig, Op, Outcome, Program};
use kernel::sched::TaskState;
use kmap_common::{booted, highmem_pages};

/// Tasks that each kmap `per` distinct pages before unmapping any: together they want
/// more than the 512-slot pool.
fn hogs(pages: &[u64], tasks: usize, per: usize) -> Vec<Program> {
    (0..tasks)
        .map(|t| {
            let mine = &pages[t * per..(t + 1) * per];
            let mut ops: Vec<Op> = mine.iter().map(|&p| Op::Kmap(p)).collect();
            ops.extend(mine.iter().map(|&p| Op::Kunmap(p)));
            Program {
                comm: format!("hog{t}"),
                cpu: t % 2,
                ops,
            }
        })
        .collect()
}

#[test]
fn the_scheduler_finds_the_kmap_deadlock_for_some_seed() {
    let mut found = None;
    let mut completed = 0;
    for seed in 0..20u64 {
        let mut k = booted(true);
        let pages = highmem_pages(&mut k, 2 * 300);
        let r = run(&mut k, &hogs(&pages, 2, 300), &ExecConfig::new(seed));
        match r.outcome {
            Outcome::Deadlock(d) => {
                found.get_or_insert((seed, d, k.pkmap_check()));
            }
            Outcome::Completed => completed += 1,
            o => panic!("seed {seed}: {o:?}"),
        }
    }
    let (seed, d, check) = found.expect("no seed deadlocked");
    println!("seed {seed}:\n{d}");
    assert!(check.is_empty(), "{check:?}");
    assert_eq!(d.tasks.len(), 2);
    let held: usize = d.tasks.iter().map(|b| b.held.len()).sum();
    assert_eq!(held, 512, "every slot held, nobody can free one");
    for b in &d.tasks {
        assert_eq!(b.waitqueue, "pkmap_map_wait");
        assert!(b.held.len() < 300);
    }
    let text = d.to_string();
    assert!(
        text.starts_with("BUG: deadlock: all 2 tasks blocked"),
        "{text}"
    );
    assert!(text.contains("waits on pkmap_map_wait holding"), "{text}");
    println!("{completed} of 20 seeds completed");
}

#[test]
fn two_tasks_that_fit_never_deadlock() {
    for seed in 0..10u64 {
        let mut k = booted(true);
        let pages = highmem_pages(&mut k, 2 * 250);
        let r = run(&mut k, &hogs(&pages, 2, 250), &ExecConfig::new(seed));
        assert_eq!(r.outcome, Outcome::Completed, "seed {seed}");
        assert!(k.hm.debug.reports.is_empty());
        assert_eq!(k.hm.pkmap.counters.in_use, 0);
    }
}

#[test]
fn the_same_seed_replays_the_same_interleaving() {
    let trace = |seed: u64| {
        let mut k = booted(true);
        let pages = highmem_pages(&mut k, 600);
        let r = run(&mut k, &hogs(&pages, 2, 300), &ExecConfig::new(seed));
        (r.trace, format!("{:?}", r.outcome), k.log.lines().len())
    };
    let a = trace(7);
    let b = trace(7);
    assert_eq!(a, b, "byte-identical");
    assert!(a.0.len() > 1000);
    assert_ne!(a.0, trace(8).0, "another seed, another interleaving");
}

#[test]
fn kmap_local_slots_survive_preemption_and_context_switches() {
    let mut k = booted(true);
    let pages = highmem_pages(&mut k, 8);
    for (i, &p) in pages.iter().enumerate() {
        k.machine
            .mem
            .monitor_frame_mut(machine::Pfn::new(p))
            .unwrap()[..4]
            .copy_from_slice(&(0x1000 + i as u32).to_le_bytes());
    }
    // Four tasks on two CPUs, each nesting two local mappings and reading through them
    // between preemption points; every read is checked against the frame it mapped.
    let progs: Vec<Program> = (0..4)
        .map(|t| {
            let (a, b) = (pages[2 * t], pages[2 * t + 1]);
            let mut ops = vec![Op::KmapLocal(a), Op::Read(a), Op::KmapLocal(b)];
            for _ in 0..10 {
                ops.extend([Op::Read(a), Op::Read(b), Op::Sleep]);
            }
            ops.extend([Op::KunmapLocal(b), Op::KunmapLocal(a)]);
            Program {
                comm: format!("local{t}"),
                cpu: t % 2,
                ops,
            }
        })
        .collect();
    for seed in 0..20 {
        let r = run(&mut k, &progs, &ExecConfig::new(seed));
        assert_eq!(r.outcome, Outcome::Completed, "seed {seed}\n{}", r.trace);
        assert!(k.hm.debug.reports.is_empty(), "{:#?}", k.hm.debug.reports);
        for line in r.trace.lines().filter(|l| l.contains("Read(")) {
            let pfn: u64 = line
                .split("Read(")
                .nth(1)
                .and_then(|r| r.split(')').next())
                .and_then(|n| n.parse().ok())
                .unwrap();
            let i = pages.iter().position(|&p| p == pfn).unwrap();
            assert!(line.ends_with(&format!("= {:#x}", 0x1000 + i)), "{line}");
        }
    }
    assert!(k.kmap_local.sched_out > 0 && k.kmap_local.sched_in > 0);
    assert_eq!(k.kmap_local.sched_out, k.kmap_local.sched_in);
    for c in 0..2 {
        assert_eq!(k.sched.task(k.sched.current(c)).state, TaskState::Running);
    }
}
