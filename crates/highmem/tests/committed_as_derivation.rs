//! Committed_AS's base for the boot's unmodelled userspace (kernel/src/mm/util.rs), derived
//! again from the reference files, and the workload's figures checked against the real run.
//!
//! Every reference boot's first meminfo dump shows the same Committed_AS: the small init,
//! busybox's shell and the program that dumps /proc. The work runs show what stays when
//! that program is gone and shmwork runs instead: at `PROGRESS n=0` the segment (charged at
//! shmget) plus shmwork itself plus the boot's init and shell; after the kill, the same
//! without the segment. What shmwork commits is not read from the reference but computed by
//! the model (its VM_ACCOUNT VMAs), so the base is what is left: init and the shell.
//! Everything after that — each child's charge at fork — must come out of the mechanism.

use highmem::reference::{list_runs, RefRun};
use kernel::config::KernelConfig;
use kernel::mm::util::{BOOT_USERSPACE_COMMITTED_KB, PROC_READER_COMMITTED_KB};
use kernel::workload::shmwork::{run, Params, Touch};
use kernel::{boot, BootOptions, Kernel};

fn runs() -> Vec<RefRun> {
    list_runs()
        .expect("reference runs")
        .iter()
        .map(|p| RefRun::load(p).expect("parse reference"))
        .collect()
}

fn boot_like(run: &RefRun) -> Kernel {
    let cfg = KernelConfig::preset(run.kernel.preset_name()).expect("preset");
    let mut opts = BootOptions::new(run.ram_mib << 20, run.smp, cfg);
    opts.cmdline = run.append.clone();
    boot(&opts).expect("boot")
}

fn committed_kb(k: &Kernel) -> u64 {
    let mi = kernel::procfs::live::read(k, "meminfo").expect("meminfo");
    mi.lines()
        .find(|l| l.starts_with("Committed_AS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .expect("Committed_AS")
}

/// What the model charges for one process of the workload's static binary (kB).
fn program_kb(run: &RefRun) -> u64 {
    let mut k = boot_like(run);
    let before = k.mm.acct.committed;
    k.exec_process(0, "shmwork", 1).expect("exec");
    (k.mm.acct.committed - before) as u64 * 4
}

fn work_s_mib(run: &RefRun) -> u64 {
    let w = run.work.as_ref().expect("ORACLE-WORK");
    w.get("s")
        .and_then(|s| s.trim_end_matches("MiB").parse().ok())
        .expect("segment size")
}

#[test]
fn boot_userspace_base_is_what_the_reference_leaves_to_init_and_the_shell() {
    let all = runs();
    let work: Vec<&RefRun> = all.iter().filter(|r| r.work.is_some()).collect();
    assert!(work.len() >= 2, "expected the work runs");
    for r in &work {
        let prog = program_kb(r);
        assert_eq!(prog, 300, "{}: the binary's VM_ACCOUNT VMAs", r.name);
        let seg = work_s_mib(r) * 1024;
        let n0 = r
            .progress
            .iter()
            .find(|p| p.int("n") == Some(0))
            .and_then(|p| p.int("Committed_AS"))
            .expect("PROGRESS n=0") as u64;
        assert_eq!(
            n0 - seg - prog,
            BOOT_USERSPACE_COMMITTED_KB,
            "{}: n=0",
            r.name
        );
        let after = r.meminfo.last().and_then(|m| m.get("Committed_AS"));
        assert_eq!(
            after.map(|a| a - prog),
            Some(BOOT_USERSPACE_COMMITTED_KB),
            "{}: after the kill",
            r.name
        );
    }
    // The reader of the boot dumps: the same in every reference boot, work runs included.
    for r in &all {
        let first = r.meminfo[0].get("Committed_AS").expect("Committed_AS");
        assert_eq!(
            first - BOOT_USERSPACE_COMMITTED_KB,
            PROC_READER_COMMITTED_KB,
            "{}",
            r.name
        );
    }
}

#[test]
fn model_boot_shows_the_reference_committed_as() {
    for r in runs()
        .iter()
        .filter(|r| r.work.is_none() && r.ram_mib <= 4096)
    {
        let k = boot_like(r);
        assert_eq!(
            Some(committed_kb(&k)),
            r.meminfo[0].get("Committed_AS"),
            "{}",
            r.name
        );
    }
}

/// The first children of each work run, on the model: Committed_AS at every PROGRESS line
/// is the real kernel's to the kB (the segment at shmget, 300 kB per fork).
#[test]
fn workload_committed_as_matches_the_real_runs() {
    for r in runs().iter().filter(|r| r.work.is_some()) {
        let mut k = boot_like(r);
        let prm = Params {
            size_mib: work_s_mib(r),
            n: 5,
            touch: Touch::Read,
            every: 1,
            timing: false,
            dumps: false,
            design: None,
        };
        let mut model = Vec::new();
        run(&mut k, &prm, &mut |l: &str| {
            if l.starts_with("PROGRESS ") {
                let f = |key: &str| {
                    l.split_whitespace()
                        .find_map(|w| w.strip_prefix(key))
                        .and_then(|v| v.parse::<i64>().ok())
                };
                model.push((f("n="), f("Committed_AS=")));
            }
        })
        .expect("shmwork");
        assert_eq!(model.len(), 6, "{}", r.name);
        for (n, c) in model {
            let real = r
                .progress
                .iter()
                .find(|p| p.int("n") == n)
                .and_then(|p| p.int("Committed_AS"));
            assert_eq!(c, real, "{}: n={n:?}", r.name);
        }
    }
}
