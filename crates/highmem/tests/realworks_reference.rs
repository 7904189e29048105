//! `highmem shmwork` against real runs of the shm workload the public reference does not
//! cover (`tests/realworks/`, see its README): other RAM sizes, segment sizes, touch modes,
//! the non-PAE kernel and `highmem=0`, and the same workload on Debian's 64-bit kernel.
//!
//! The per-child figures are compared at the tolerances: PageTables within 2 %, the
//! child's VmPTE within one PTE page, pgfault within 0.2 %, the per-child moves of LowFree /
//! HighFree, the memory each child uses within 2 kB, and the child's /proc/PID/status
//! (layout, RssFile and RssShmem exactly, RssAnon within a page). Absolute free memory is
//! compared only within the userspace difference (these runs' initramfs holds less than the
//! reference's, whose userspace the model replays), and that tolerance is measured from the
//! two runs' own Shmem / Slab figures, not assumed. The x86_64 captures check the same
//! workload on the 64-bit model (compat children, 4-level page tables, vmalloc'd stacks) and
//! what it boots: the zones, the `Memory:` line, the hash tables and per-CPU chunk, the late
//! frees, MemTotal, and the zones of the first /proc/zoneinfo (all five zone numbers) with
//! lowmem_reserve_ratio.

mod common;
use common::{cli, is_64bit_run, machine_args, model_args};
use highmem::reference::{first_block, strip_timestamp, Progress, RefRun};
use std::collections::BTreeMap;
use std::path::PathBuf;

fn captures() -> Vec<PathBuf> {
    common::captures_in("realworks")
}

/// The `kernel=` of a capture's ORACLE-RUN line.
fn kernel_image(text: &str) -> &str {
    text.lines()
        .next()
        .and_then(|l| {
            l.split_whitespace()
                .find_map(|kv| kv.strip_prefix("kernel="))
        })
        .expect("ORACLE-RUN kernel=")
}

fn captures_of(is_64: bool) -> Vec<(PathBuf, String)> {
    let v: Vec<(PathBuf, String)> = captures()
        .into_iter()
        .map(|p| {
            let t = std::fs::read_to_string(&p).expect("capture");
            (p, t)
        })
        .filter(|(_, t)| (kernel_image(t) == "vmlinuz-amd64") == is_64)
        .collect();
    assert!(!v.is_empty(), "no captures (64-bit: {is_64})");
    v
}

/// The model's lines of one tag (PROGRESS, FINAL, AFTERKILL) as the parser reads the real ones.
fn model_lines(out: &str, tag: &str) -> Vec<Progress> {
    let prefix = format!("{tag} ");
    out.lines()
        .enumerate()
        .filter_map(|(i, l)| {
            let rest = l.strip_prefix(&prefix)?;
            let fields = rest
                .split_whitespace()
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            Some(Progress {
                line: i + 1,
                fields,
            })
        })
        .collect()
}

fn int(p: &Progress, key: &str) -> i64 {
    p.int(key)
        .unwrap_or_else(|| panic!("line {}: no {key}", p.line))
}

/// The first `/proc/<pid>/status` block (the first child's, dumped by shmwork).
fn child_status(text: &str) -> Vec<&str> {
    let name = text
        .lines()
        .find(|l| l.starts_with("=====BEGIN /proc/") && l.ends_with("/status====="))
        .expect("a /proc/PID/status block")
        .trim_start_matches("=====BEGIN ")
        .trim_end_matches("=====");
    first_block(text, name)
}

fn pgfault(lines: &[&str]) -> i64 {
    vmstat_value(lines, "pgfault")
}

/// A counter of a /proc/vmstat dump.
fn vmstat_value(lines: &[&str], key: &str) -> i64 {
    lines
        .iter()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{key} in /proc/vmstat"))
}

fn rel(model: i64, real: i64) -> f64 {
    (model - real).abs() as f64 / real.abs().max(1) as f64
}

/// Free memory of some zones, pages on the per-cpu lists included (the free counts leave
/// those out, so LowFree alone moves in steps of pcp batches), in kB.
fn zone_kb(p: &Progress, zones: &[&str]) -> i64 {
    zones
        .iter()
        .map(|z| {
            p.int(&format!("{z}_free_pages")).unwrap_or(0)
                + p.int(&format!("{z}_pcp_pages")).unwrap_or(0)
        })
        .sum::<i64>()
        * 4
}

const LOWMEM: &[&str] = &["DMA", "Normal"];
const HIGHMEM: &[&str] = &["HighMem"];
const ALL_ZONES: &[&str] = &["DMA", "Normal", "HighMem"];
/// The 64-bit kernel's zones (no high memory).
const ZONES_64: &[&str] = &["DMA", "DMA32", "Normal"];

/// The userspace difference (README): how much more memory this session's init leaves free
/// than the reference's, whose userspace the model replays. Measured on the one machine both
/// ran, the reference's own workload (8 GiB PAE, S=512, N=50), before the first child.
fn userspace_difference() -> i64 {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/realworks");
    let here = RefRun::load(dir.join("work-pae-8192M-S512-N50.txt")).expect("repeat");
    let refd =
        RefRun::load(highmem::reference::reference_dir().join("work-pae-8192M-S512-N50.txt"))
            .expect("reference run");
    zone_kb(&here.progress[0], ALL_ZONES) - zone_kb(&refd.progress[0], ALL_ZONES)
}

/// A `/proc/meminfo` field (kB) of the first meminfo block of a text.
fn meminfo_kb(text: &str, key: &str) -> i64 {
    first_block(text, "/proc/meminfo")
        .iter()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in /proc/meminfo"))
}

/// Every `/proc/meminfo` block of a text, in order, as key → kB.
fn meminfo_blocks(text: &str) -> Vec<BTreeMap<String, i64>> {
    let mut blocks = Vec::new();
    let mut cur: Option<BTreeMap<String, i64>> = None;
    for l in text.lines() {
        match l {
            "=====BEGIN /proc/meminfo=====" => cur = Some(BTreeMap::new()),
            "=====END /proc/meminfo=====" => blocks.extend(cur.take()),
            _ => {
                let Some(m) = cur.as_mut() else { continue };
                if let Some((k, v)) = l.split_once(':') {
                    if let Some(v) = v.split_whitespace().next().and_then(|v| v.parse().ok()) {
                        m.insert(k.to_string(), v);
                    }
                }
            }
        }
    }
    blocks
}

/// 2 MiB direct-map pages the real boot of a machine (RAM in MiB) splits and the model
/// does not: on the 2 GiB capture one more than on the 4 and 8 GiB ones, most likely the
/// BPF JIT pack's 512 pages spread over three 2 MiB blocks rather than two (where the page
/// allocator finds them; no page-table walk of that machine says which).
const UNMODELLED_SPLITS: &[(u64, i64)] = &[(2048, 1)];

/// VmallocUsed, DirectMap4k and DirectMap2M of the model's /proc/meminfo dumps (FINAL with
/// the children alive, AFTERKILL) against the capture's same dumps (its last ones), exactly:
/// the vmalloc'd stacks (and the per-CPU cache's) on top of the boot's areas, and the
/// direct map's splits.
fn check_vmalloc_and_direct_map(
    ram_mib: u64,
    out: &str,
    text: &str,
    fail: &mut impl FnMut(String),
) {
    let model = meminfo_blocks(out);
    let real = meminfo_blocks(text);
    assert!(
        !model.is_empty() && real.len() >= model.len(),
        "meminfo dumps"
    );
    let splits = UNMODELLED_SPLITS
        .iter()
        .find(|(ram, _)| *ram == ram_mib)
        .map_or(0, |(_, n)| *n);
    for (i, (m, r)) in model
        .iter()
        .zip(&real[real.len() - model.len()..])
        .enumerate()
    {
        let want = [
            ("VmallocUsed", r["VmallocUsed"]),
            ("DirectMap4k", r["DirectMap4k"] - 2048 * splits),
            ("DirectMap2M", r["DirectMap2M"] + 2048 * splits),
        ];
        for (key, want) in want {
            if m[key] != want {
                fail(format!(
                    "meminfo dump {i} (of the last {}): {key} model {} real {} ({splits} \
                     unmodelled splits)",
                    model.len(),
                    m[key],
                    r[key]
                ));
            }
        }
    }
}

/// meminfo's Mapped with the children alive (FINAL) and after they are killed (AFTERKILL),
/// the capture's last two dumps: the segment's pages count once however many children map
/// them, and go when the last one does. Within 512 kB: the rest is the boot's userspace
/// (the profile's fitted Mapped) and the program's binary.
fn check_mapped(out: &str, text: &str, fail: &mut impl FnMut(String)) {
    let (model, real) = (meminfo_blocks(out), meminfo_blocks(text));
    let last = |v: &[BTreeMap<String, i64>]| v[v.len().saturating_sub(2)..].to_vec();
    for (tag, (m, r)) in ["FINAL", "AFTERKILL"]
        .iter()
        .zip(last(&model).iter().zip(&last(&real)))
    {
        if (m["Mapped"] - r["Mapped"]).abs() > 512 {
            fail(format!(
                "{tag} Mapped model {} kB real {} kB",
                m["Mapped"], r["Mapped"]
            ));
        }
    }
}

/// The anon LRU lists (mm/swap.c) as the workload moves them. The segment's pages join
/// the inactive list; children that populate with MADV_POPULATE_READ activate them (GUP's
/// FOLL_TOUCH: `pgactivate`), children that read or write do not; the children's exits
/// activate the binary pages they mapped. The boots' own lists differ (these captures'
/// initramfs is not the reference's, whose userspace the model replays), so each side is
/// compared as moves from its own boot: the model's `proc` dumps, the capture's first
/// meminfo; for pgactivate, on each side the smallest count of its runs of the captures
/// (`pgactivate_base`: runs whose children do not populate activate only what the start
/// of the program does, the exec's read of the binary's first page). The children's
/// anonymous pages are a known difference of their own (ARCHITECTURE.md), so Inactive(anon)
/// is compared less AnonPages.
fn check_lru(
    run: &RefRun,
    out: &str,
    text: &str,
    (real_base, model_base): (i64, i64),
    fail: &mut impl FnMut(String),
) {
    let mut args = vec!["proc".to_string(), "meminfo".to_string()];
    args.extend(machine_args(run));
    let boot_meminfo = cli(&args);
    let boot = |key: &str| {
        boot_meminfo
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse::<i64>().ok())
            .unwrap_or_else(|| panic!("no {key} in the model's boot meminfo"))
    };
    let (model, real) = (meminfo_blocks(out), meminfo_blocks(text));
    let inactive = |m: &BTreeMap<String, i64>| m["Inactive(anon)"] - m["AnonPages"];
    let (mb_inactive, rb_inactive) = (
        boot("Inactive(anon)") - boot("AnonPages"),
        inactive(&real[0]),
    );
    let last = |v: &[BTreeMap<String, i64>]| v[v.len().saturating_sub(2)..].to_vec();
    // Tolerances: a per-CPU batch and what the real init activates on its own (up to 12
    // pages before the dump); at AFTERKILL, the five binary pages more that a real child
    // maps (20 pages in all).
    for ((tag, tol), (m, r)) in [("FINAL", 64), ("AFTERKILL", 80)]
        .iter()
        .zip(last(&model).iter().zip(&last(&real)))
    {
        let act = (
            m["Active(anon)"] - boot("Active(anon)"),
            r["Active(anon)"] - real[0]["Active(anon)"],
        );
        if (act.0 - act.1).abs() > *tol {
            fail(format!(
                "{tag} Active(anon) moved {} kB in the model, {} kB in the real run",
                act.0, act.1
            ));
        }
        let ina = (inactive(m) - mb_inactive, inactive(r) - rb_inactive);
        if (ina.0 - ina.1).abs() > 80 {
            fail(format!(
                "{tag} Inactive(anon) less AnonPages moved {} kB in the model, {} kB in the real run",
                ina.0, ina.1
            ));
        }
    }
    let act = (pgactivate(out) - model_base, pgactivate(text) - real_base);
    if act.0 != act.1 {
        fail(format!(
            "pgactivate moved {} in the model, {} in the real run",
            act.0, act.1
        ));
    }
}

/// One capture against the model; every mismatch goes into `failures`.
fn check_run(
    (path, text, out): (&std::path::Path, &str, &str),
    (userspace, pgactivate_bases): (i64, (i64, i64)),
    failures: &mut Vec<String>,
) {
    let run = RefRun::parse(path, text).expect("capture parses");
    let all_zones = if is_64bit_run(&run) {
        ZONES_64
    } else {
        ALL_ZONES
    };
    let out = out.to_string();
    let name = &run.name;
    let mut fail = |m: String| failures.push(format!("{name}: {m}"));
    check_mapped(&out, text, &mut fail);
    check_lru(&run, &out, text, pgactivate_bases, &mut fail);

    // Same PROGRESS points, children all done.
    let model = model_lines(&out, "PROGRESS");
    let ns = |v: &[Progress]| v.iter().map(|p| int(p, "n")).collect::<Vec<_>>();
    if ns(&model) != ns(&run.progress) {
        fail(format!(
            "PROGRESS points {:?} vs real {:?}",
            ns(&model),
            ns(&run.progress)
        ));
        return;
    }
    assert!(run.oom_events.is_empty(), "{name}: the real run hit OOM");

    // MemTotal: managed pages, within the one-page memblock residue (ARCHITECTURE.md).
    let total = (meminfo_kb(&out, "MemTotal"), meminfo_kb(text, "MemTotal"));
    if (total.0 - total.1).abs() > 4 {
        fail(format!("MemTotal model {} real {}", total.0, total.1));
    }

    if is_64bit_run(&run) {
        check_vmalloc_and_direct_map(run.ram_mib, &out, text, &mut fail);
    }

    for (m, r) in model
        .iter()
        .zip(&run.progress)
        .filter(|(_, r)| int(r, "n") > 0)
    {
        let n = int(r, "n");
        let pt = (int(m, "PageTables"), int(r, "PageTables"));
        if rel(pt.0, pt.1) > 0.02 {
            fail(format!("n={n} PageTables model {} real {}", pt.0, pt.1));
        }
        let pte = (int(m, "VmPTE_child1"), int(r, "VmPTE_child1"));
        if (pte.0 - pte.1).abs() > 4 {
            fail(format!("n={n} VmPTE_child1 model {} real {}", pte.0, pte.1));
        }
    }
    // Memory in use (MemTotal less free and pcp pages), once the userspace difference is
    // taken off the model's: within 2 % at every point.
    for (m, r) in model.iter().zip(&run.progress) {
        let used_m = total.0 - zone_kb(m, all_zones) - userspace;
        let used_r = total.1 - zone_kb(r, all_zones);
        if rel(used_m, used_r) > 0.02 {
            fail(format!(
                "n={} used memory model {used_m} (userspace difference {userspace} kB taken off) \
                 real {used_r}",
                int(r, "n")
            ));
        }
    }

    // Per-child costs, from the first child to the last: page tables, kernel stacks and the
    // commit charge exactly; lowmem within 2 % or a page per child when the children's own
    // pages go to highmem (what is left in lowmem is the kernel's per-process objects).
    let (m1, r1) = (&model[1], &run.progress[1]);
    let (ml, rl) = (model.last().unwrap(), run.progress.last().unwrap());
    let kids = int(rl, "n") - int(r1, "n");
    for key in ["PageTables", "KernelStack", "Committed_AS"] {
        let grow = |a: &Progress, b: &Progress| int(b, key) - int(a, key);
        if grow(m1, ml) != grow(r1, rl) {
            fail(format!(
                "{key} for {kids} children: model {} real {}",
                grow(m1, ml),
                grow(r1, rl)
            ));
        }
    }
    let used = |a: &Progress, b: &Progress, zones: &[&str]| zone_kb(a, zones) - zone_kb(b, zones);
    if used(r1, rl, HIGHMEM) > 0 {
        let (md, rd) = (used(m1, ml, LOWMEM), used(r1, rl, LOWMEM));
        if (md - rd).abs() > (rd.abs() / 50).max(4 * kids) {
            fail(format!(
                "lowmem used by {kids} children: model {md} kB, real {rd} kB"
            ));
        }
    }

    // Memory used per child, every zone's free and pcp pages: page tables, kernel stack,
    // slab, and the pages the child and the parent copy on write (the program's own
    // pages). Within 1 kB a child on i386 (README); within 4 kB on x86_64, whose children
    // copy about a page more on write than modelled and whose per-task caches grow by
    // 32 KiB slabs of 5 to 28 objects (README, "What the model matches").
    let (md, rd) = (used(m1, ml, all_zones), used(r1, rl, all_zones));
    // (A run whose PROGRESS points span a single child is allowed its one page: the
    // per-child bound is meant for spans of tens of children.)
    let per_child = (md - rd).abs() as f64 / kids as f64;
    let tolerance = if is_64bit_run(&run) { 4.0 } else { 1.0 };
    if per_child > tolerance && (md - rd).abs() > 4 {
        fail(format!(
            "memory used by {kids} children: model {md} kB, real {rd} kB"
        ));
    }

    // pgfault (the last vmstat dump), within 0.2 % (the boot's own userspace is not
    // modelled fault by fault).
    let (mvm, rvm) = (
        first_block(&out, "/proc/vmstat"),
        first_block(text, "/proc/vmstat"),
    );
    let (mv, rv) = (pgfault(&mvm), pgfault(&rvm));
    if rel(mv, rv) > 0.002 {
        fail(format!("pgfault model {mv} real {rv}"));
    }
    // kswapd's runs and kcompactd's wakeups (a steal's boost taken back), exactly.
    for key in [
        "pageoutrun",
        "kswapd_high_wmark_hit_quickly",
        "compact_daemon_wake",
        "oom_kill",
    ] {
        let (m, r) = (vmstat_value(&mvm, key), vmstat_value(&rvm, key));
        if m != r {
            fail(format!("{key} model {m} real {r}"));
        }
    }

    // The first child's /proc/PID/status: its address space and page tables.
    let (ms, rs) = (child_status(&out), child_status(text));
    for key in [
        "VmPeak:",
        "VmSize:",
        "VmPTE:",
        "VmData:",
        "VmStk:",
        "VmExe:",
        "VmLib:",
        "RssFile:",
        "RssShmem:",
    ] {
        let m = ms.iter().find(|l| l.starts_with(key));
        let r = rs.iter().find(|l| l.starts_with(key));
        if m.is_none() || m != r {
            fail(format!("status {key} model {m:?} real {r:?}"));
        }
    }
    // RssAnon: the stack pages the parent had touched when it forked depend on where ASLR
    // put the stack's top (two or three): within a page.
    let anon = (status_kb(&ms, "RssAnon:"), status_kb(&rs, "RssAnon:"));
    if (anon.0 - anon.1).abs() > 4 {
        fail(format!("status RssAnon model {} real {}", anon.0, anon.1));
    }
}

/// A `kB` figure of a /proc/PID/status block.
fn status_kb(lines: &[&str], key: &str) -> i64 {
    lines
        .iter()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in the status"))
}

/// The `pgactivate` of a run's /proc/vmstat dump (the one after FINAL).
fn pgactivate(text: &str) -> i64 {
    vmstat_value(&first_block(text, "/proc/vmstat"), "pgactivate")
}

/// Every capture of one kernel width against the model.
fn check_runs(is_64: bool) {
    let userspace = userspace_difference();
    let runs = captures_of(is_64);
    let outs: Vec<String> = runs
        .iter()
        .map(|(p, t)| cli(&model_args(&RefRun::parse(p, t).expect("capture parses"))))
        .collect();
    let base = |texts: &mut dyn Iterator<Item = &str>| texts.map(pgactivate).min().expect("runs");
    let bases = (
        base(&mut runs.iter().map(|(_, t)| t.as_str())),
        base(&mut outs.iter().map(String::as_str)),
    );
    let mut failures = Vec::new();
    for ((path, text), out) in runs.iter().zip(&outs) {
        check_run((path, text, out), (userspace, bases), &mut failures);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_32bit_workloads_match_the_real_runs() {
    check_runs(false);
}

/// The same workload on the 64-bit kernel: 32-bit children in compat mode with 4-level page
/// tables (VmPTE counts the PUD page, PageTables does not), 16 KiB vmalloc'd stacks.
#[test]
fn the_64bit_workloads_match_the_real_runs() {
    check_runs(true);
}

/// The repeat of the reference's own run differs from it by the userspace alone: the same
/// page tables, kernel stacks and commit charge at every point, and free memory off by the
/// difference measured before the first child, give or take a page per child.
#[test]
fn the_repeat_of_the_reference_run_differs_only_by_the_userspace() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/realworks");
    let here = RefRun::load(dir.join("work-pae-8192M-S512-N50.txt")).expect("repeat");
    let refd =
        RefRun::load(highmem::reference::reference_dir().join("work-pae-8192M-S512-N50.txt"))
            .expect("reference run");
    let userspace = userspace_difference();
    assert!(userspace > 0, "this init leaves more memory free");
    assert_eq!(here.progress.len(), refd.progress.len());
    for (a, b) in here.progress.iter().zip(&refd.progress) {
        let n = int(a, "n");
        for key in ["PageTables", "VmPTE_child1", "KernelStack"] {
            assert_eq!(int(a, key), int(b, key), "n={n} {key}");
        }
        let commit =
            |p: &Progress, first: &Progress| int(p, "Committed_AS") - int(first, "Committed_AS");
        assert_eq!(
            commit(a, &here.progress[0]),
            commit(b, &refd.progress[0]),
            "n={n} Committed_AS growth"
        );
        let d = zone_kb(a, ALL_ZONES) - zone_kb(b, ALL_ZONES);
        assert!(
            (d - userspace).abs() <= 4 * n,
            "n={n}: free differs by {d} kB"
        );
    }
}

/// The booted 64-bit model's /proc/meminfo against each capture's boot dump: VmallocUsed
/// (the boot's vmalloc areas, the stacks and the cached one) exactly, and the direct map's
/// page sizes but for the splits `UNMODELLED_SPLITS` names.
#[test]
fn the_64bit_boots_vmalloc_and_direct_map_match_the_real_runs() {
    let mut failures = Vec::new();
    for (path, text) in captures_of(true) {
        let ram = ram_mib(&text);
        let args = [
            "proc",
            "meminfo",
            "--variant",
            "x86_64",
            "--ram",
            &format!("{ram}M"),
        ];
        let out = cli(&args.map(String::from));
        let name = path.display().to_string();
        let mut fail = |m: String| failures.push(format!("{name}: boot {m}"));
        // The first dump of each: the model's only one, the capture's boot dump.
        let first = |t: &str| {
            format!(
                "=====BEGIN /proc/meminfo=====\n{}\n=====END /proc/meminfo=====",
                t
            )
        };
        let real_boot = first(&first_block(&text, "/proc/meminfo").join("\n"));
        check_vmalloc_and_direct_map(ram, &first(&out), &real_boot, &mut fail);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The boot log's lines from `first` up to (not including) the first one starting with `stop`.
fn log_block(lines: &[String], first: &str, stop: &str) -> Vec<String> {
    lines
        .iter()
        .skip_while(|l| l.as_str() != first)
        .take_while(|l| l.as_str() == first || !l.starts_with(stop))
        .cloned()
        .collect()
}

/// `spanned` and `present` of each zone of the first /proc/zoneinfo dump.
fn zoneinfo_spans(text: &str) -> BTreeMap<String, (u64, u64)> {
    let mut v = BTreeMap::new();
    let mut zone = None;
    for l in first_block(text, "/proc/zoneinfo") {
        if let Some(z) = l.strip_prefix("Node 0, zone") {
            zone = Some(z.trim().to_string());
            continue;
        }
        let mut w = l.split_whitespace();
        let (Some(key), Some(val)) = (w.next(), w.next()) else {
            continue;
        };
        let Some(z) = &zone else { continue };
        let val: u64 = match val.parse() {
            Ok(x) => x,
            Err(_) => continue,
        };
        let e = v.entry(z.clone()).or_insert((0, 0));
        match key {
            "spanned" => e.0 = val,
            "present" => e.1 = val,
            _ => {}
        }
    }
    v
}

#[test]
fn the_64bit_kernels_zones_match_the_real_runs() {
    for (_, text) in captures_of(true) {
        let ram_mib = ram_mib(&text);
        let k = kernel::x86_64::boot_x86_64(ram_mib << 20, 1).expect("64-bit model boots");
        // The console copy of the boot log, up to init.
        let real_log: Vec<String> = text
            .lines()
            .take_while(|l| !l.starts_with("ORACLE-INIT-START"))
            .filter_map(strip_timestamp)
            .map(str::to_string)
            .collect();
        let model_log: Vec<String> = k.log.console().map(str::to_string).collect();
        for first in ["Zone ranges:", "Early memory node ranges"] {
            let stop = if first == "Zone ranges:" {
                "Movable"
            } else {
                "Initmem"
            };
            assert_eq!(
                log_block(&model_log, first, stop),
                log_block(&real_log, first, stop),
                "{ram_mib} MiB: {first}"
            );
        }
        let real = zoneinfo_spans(&text);
        for z in &k.zones {
            let r = real.get(z.name).copied().unwrap_or((0, 0));
            assert_eq!((z.spanned, z.present), r, "{ram_mib} MiB zone {}", z.name);
        }
        for (name, &(spanned, _)) in &real {
            let modelled = k.zones.iter().any(|z| z.name == name.as_str());
            assert!(
                modelled || spanned == 0,
                "{ram_mib} MiB: zone {name} missing"
            );
        }
        // No highmem: the real kernel has no HighMem zone and prints no LowFree / HighFree.
        assert!(!real.contains_key("HighMem"));
        assert!(text.contains(" LowFree=-1 HighFree=-1 "));
    }
}

/// The RAM of a capture's machine (its ORACLE-RUN line's `ram=…M`), in MiB.
fn ram_mib(text: &str) -> u64 {
    highmem::reference::capture_ram_mib(text).expect("ORACLE-RUN ram=…M")
}

/// The `NNNK` before `word` in a `Memory:` line.
fn memory_field(line: &str, word: &str) -> u64 {
    let i = line
        .find(word)
        .unwrap_or_else(|| panic!("{word} in {line}"));
    let head = line[..i].trim_end();
    let num = head
        .rsplit([' ', '(', '/'])
        .next()
        .and_then(|w| w.strip_suffix('K'))
        .unwrap_or_else(|| panic!("{word} in {line}"));
    num.parse().expect("a number of KiB")
}

/// The first meminfo value of `key` (kB) in a capture.
fn first_meminfo(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{key} in the capture"))
}

#[test]
fn the_64bit_memory_line_matches_the_real_boots() {
    use kernel::x86_64::setup::MEMBLOCK_UNMODELLED;
    for (path, text) in captures_of(true) {
        let ram_mib = ram_mib(&text);
        let k = kernel::x86_64::boot_x86_64(ram_mib << 20, 1).expect("64-bit model boots");
        let model: Vec<&str> = k.log.console().collect();
        let real: Vec<&str> = text
            .lines()
            .take_while(|l| !l.starts_with("ORACLE-INIT-START"))
            .filter_map(strip_timestamp)
            .collect();
        let find = |log: &[&str], p: &str| -> String {
            log.iter()
                .find(|l| l.starts_with(p))
                .map(|l| l.to_string())
                .unwrap_or_else(|| panic!("{}: no `{p}` line", path.display()))
        };
        // Lines the mechanisms decide alone: exact.
        for p in [
            "Built 1 zonelists",
            "Dentry cache hash table",
            "Inode-cache hash table",
            "percpu: Embedded",
            "RAMDISK:",
            "Freeing SMP alternatives",
            "Freeing initrd memory",
            "Freeing unused decrypted",
            "Freeing unused kernel image (initmem)",
            "Write protecting the kernel read-only data",
            "Freeing unused kernel image (text/rodata gap)",
            "Freeing unused kernel image (rodata/data gap)",
        ] {
            assert_eq!(find(&model, p), find(&real, p), "{ram_mib} MiB");
        }
        if ram_mib > 4096 - 1024 {
            let p = "software IO TLB: mapped";
            assert_eq!(find(&model, p), find(&real, p), "{ram_mib} MiB");
        }
        let pools = |log: &[&str]| -> Vec<String> {
            log.iter()
                .filter(|l| l.starts_with("DMA: preallocated"))
                .map(|l| l.to_string())
                .collect()
        };
        assert_eq!(
            pools(&model),
            pools(&real),
            "{ram_mib} MiB: atomic DMA pools"
        );
        assert_eq!(pools(&model).len(), 3);
        let (m, r) = (find(&model, "Memory:"), find(&real, "Memory:"));
        for w in [
            "kernel code",
            "rwdata",
            "rodata",
            "init,",
            "bss",
            "available",
        ] {
            if w == "available" {
                // The total of present pages (after the slash).
                let tot = |l: &str| {
                    l.split('/')
                        .nth(1)
                        .map(|t| t.split('K').next().unwrap_or("").to_string())
                };
                assert_eq!(tot(&m), tot(&r), "{ram_mib} MiB present pages");
            } else {
                assert_eq!(
                    memory_field(&m, w),
                    memory_field(&r, w),
                    "{ram_mib} MiB {w}"
                );
            }
        }
        // What memblock holds: the mechanisms plus the one named remainder; and where
        // NODE_DATA lands, below the direct map's memblock tables (the ranges that hold
        // the brk cannot take their tables from it).
        let (mres, rres) = (memory_field(&m, "reserved"), memory_field(&r, "reserved"));
        assert_eq!(
            mres,
            rres,
            "{ram_mib} MiB: reserved {mres}K, real {rres}K (remainder {}K)",
            MEMBLOCK_UNMODELLED >> 10
        );
        let node_data = |log: &[&str]| -> u64 {
            let l = find(log, "NODE_DATA(0) allocated");
            let end = l
                .rsplit('-')
                .next()
                .and_then(|e| e.strip_suffix(']'))
                .unwrap_or("");
            u64::from_str_radix(end.trim_start_matches("0x"), 16).expect("NODE_DATA end")
        };
        assert_eq!(
            node_data(&model),
            node_data(&real),
            "{ram_mib} MiB: NODE_DATA"
        );
        // Free at that moment (the deferred struct pages not yet).
        let avail = |l: &str| -> i64 {
            l.strip_prefix("Memory: ")
                .and_then(|t| t.split('K').next())
                .and_then(|n| n.parse().ok())
                .expect("Memory: NNNK")
        };
        assert_eq!(avail(&m), avail(&r), "{ram_mib} MiB available");
        // Where the reservations fall: each zone's managed pages, and the watermarks the boot
        // sets from them (min_free_kbytes raised by khugepaged's start).
        let real_zones = first_zoneinfo_fields(&text);
        let nr_zones = k.node.zone_model.nr_zones;
        for z in k.node.zones().iter().filter(|z| z.present_pages > 0) {
            let r = real_zones
                .get(z.name)
                .unwrap_or_else(|| panic!("{ram_mib} MiB: zone {}", z.name));
            let m = [
                z.managed_pages,
                z.watermark[0],
                z.watermark[1],
                z.watermark[2],
            ];
            assert_eq!(
                m,
                r[..4],
                "{ram_mib} MiB zone {}: managed, min, low, high",
                z.name
            );
            let prot: Vec<u64> = z.lowmem_reserve[..nr_zones]
                .iter()
                .map(|&v| v.max(0) as u64)
                .collect();
            assert_eq!(prot, r[4..], "{ram_mib} MiB zone {}: protection", z.name);
        }
        // The free blocks of DMA and DMA32 after the boot: init's and the drivers' pages
        // come from Normal first, so where there is a Normal zone the real run's first
        // buddyinfo still shows the boot's split of the two low zones, atomic pools included.
        if k.node
            .node_zones
            .iter()
            .any(|z| z.name == "Normal" && z.present_pages > 0)
        {
            let text_model =
                kernel::procfs::live::read_node(&k.node, "buddyinfo").expect("buddyinfo");
            let real_buddy = text
                .split("=====BEGIN /proc/buddyinfo=====")
                .nth(1)
                .and_then(|t| t.split("=====END").next())
                .expect("a buddyinfo dump");
            for zone in ["zone      DMA ", "zone    DMA32 "] {
                let line = |t: &str| t.lines().find(|l| l.contains(zone)).map(str::to_string);
                assert_eq!(
                    line(&text_model),
                    line(real_buddy),
                    "{ram_mib} MiB buddyinfo {zone}"
                );
            }
        }
        // MemTotal after the late frees.
        let total = k.node.totalram_pages * 4;
        let real_total = first_meminfo(&text, "MemTotal:");
        assert_eq!(
            total, real_total,
            "{ram_mib} MiB: MemTotal {total} kB, real {real_total} kB"
        );
    }
}

/// Per zone of a capture's first /proc/zoneinfo: managed, min, low, high, and the five
/// entries of `protection` (DMA, DMA32, Normal, Movable, Device).
fn first_zoneinfo_fields(text: &str) -> BTreeMap<String, [u64; 9]> {
    let mut out = BTreeMap::new();
    let mut zone = None;
    let mut fields = [0u64; 9];
    let body = text
        .split("=====BEGIN /proc/zoneinfo=====")
        .nth(1)
        .and_then(|t| t.split("=====END").next())
        .expect("a /proc/zoneinfo dump");
    for l in body.lines() {
        let w: Vec<&str> = l.split_whitespace().collect();
        match w.as_slice() {
            ["Node", _, "zone", name] => {
                if let Some(z) = zone.replace(name.to_string()) {
                    out.insert(z, fields);
                }
                fields = [0; 9];
            }
            ["managed", v] => fields[0] = v.parse().expect("managed"),
            ["protection:", rest @ ..] => {
                let p: Vec<u64> = rest
                    .iter()
                    .map(|v| {
                        v.trim_matches(|c| "(),".contains(c))
                            .parse()
                            .expect("protection")
                    })
                    .collect();
                fields[4..9].copy_from_slice(&p);
            }
            ["min", v] => fields[1] = v.parse().expect("min"),
            ["low", v] => fields[2] = v.parse().expect("low"),
            ["high", v] => fields[3] = v.parse().expect("high"),
            _ => {}
        }
    }
    if let Some(z) = zone {
        out.insert(z, fields);
    }
    out
}

/// One zone of a /proc/zoneinfo text: its name, the figures zoneinfo_show_print prints for
/// every zone (free, boost, min, low, high, spanned, present, managed, cma, protection), what
/// a populated zone adds (each CPU's pcp high and batch, start_pfn), and how many lines
/// follow `protection` (none for an unpopulated zone).
#[derive(Debug, PartialEq, Eq)]
struct ZoneinfoBlock {
    name: String,
    fields: BTreeMap<String, String>,
    pcp: Vec<(String, String)>,
    lines_after_protection: usize,
}

/// The zoneinfo keys the 64-bit check reads: every zone's, then a populated zone's.
const ZONE_KEYS: [&str; 9] = [
    "boost",
    "min",
    "low",
    "high",
    "spanned",
    "present",
    "managed",
    "cma",
    "protection:",
];
const POPULATED_ZONE_KEYS: [&str; 2] = ["start_pfn:", "node_unreclaimable:"];

fn zoneinfo_blocks<'a>(lines: impl IntoIterator<Item = &'a str>) -> Vec<ZoneinfoBlock> {
    let mut out: Vec<ZoneinfoBlock> = Vec::new();
    let mut after_protection = false;
    for l in lines {
        if let Some(name) = l.strip_prefix("Node 0, zone") {
            out.push(ZoneinfoBlock {
                name: name.trim().to_string(),
                fields: BTreeMap::new(),
                pcp: Vec::new(),
                lines_after_protection: 0,
            });
            after_protection = false;
            continue;
        }
        let z = out.last_mut().expect("a zone line first");
        if after_protection {
            z.lines_after_protection += 1;
        }
        if let Some(v) = l.strip_prefix("  pages free") {
            z.fields.insert("pages free".into(), v.trim().to_string());
            continue;
        }
        let t = l.trim_start();
        let Some((key, value)) = t.split_once(char::is_whitespace) else {
            continue;
        };
        let value = value.trim().to_string();
        match key {
            "high:" => z.pcp.push((value, String::new())),
            "batch:" => z.pcp.last_mut().expect("high before batch").1 = value,
            k if ZONE_KEYS.contains(&k) || POPULATED_ZONE_KEYS.contains(&k) => {
                after_protection |= k == "protection:";
                z.fields.insert(k.to_string(), value);
            }
            _ => {}
        }
    }
    out
}

/// The model's /proc/zoneinfo of the 64-bit boot lists the zones of the real kernel's first
/// dump in its order (DMA, DMA32, Normal, Movable, Device), with the same spans, managed
/// pages, watermarks, five-entry protection, start pfns and pcp limits; the empty zones stop
/// after `protection` as the real ones do. Of the populated zones' free pages only DMA's is
/// compared: the real dump comes after init and the drivers, whose pages come from DMA32 or
/// Normal. /proc/sys/vm/lowmem_reserve_ratio is the capture's text.
#[test]
fn the_64bit_zoneinfo_and_lowmem_reserve_ratio_match_the_real_boots() {
    for (path, text) in captures_of(true) {
        let ram_mib = ram_mib(&text);
        let k = kernel::x86_64::boot_x86_64(ram_mib << 20, 1).expect("64-bit model boots");
        let model_text = kernel::procfs::live::read_node(&k.node, "zoneinfo").expect("zoneinfo");
        let model = zoneinfo_blocks(model_text.lines());
        let real = zoneinfo_blocks(first_block(&text, "/proc/zoneinfo"));
        let names = |v: &[ZoneinfoBlock]| v.iter().map(|z| z.name.clone()).collect::<Vec<_>>();
        assert_eq!(
            names(&model),
            names(&real),
            "{}: zones of /proc/zoneinfo",
            path.display()
        );
        assert_eq!(real.len(), 5, "{}: five zone numbers", path.display());
        for (m, r) in model.iter().zip(&real) {
            let populated = r.fields.get("present").is_some_and(|p| p != "0");
            let tag = format!("{ram_mib} MiB zone {}", r.name);
            let mut keys: Vec<&str> = ZONE_KEYS.to_vec();
            if populated {
                keys.extend(POPULATED_ZONE_KEYS);
                if r.name == "DMA" {
                    keys.push("pages free");
                }
                assert_eq!(m.pcp, r.pcp, "{tag}: pcp high and batch");
                assert!(
                    m.lines_after_protection > 0,
                    "{tag}: populated in the model"
                );
            } else {
                keys.push("pages free");
                assert_eq!(
                    r.lines_after_protection, 0,
                    "{tag}: the capture's empty zone"
                );
                assert_eq!(m.lines_after_protection, 0, "{tag}: stops after protection");
            }
            for key in keys {
                let (mv, rv) = (m.fields.get(key), r.fields.get(key));
                assert!(rv.is_some(), "{tag}: no {key} in the capture");
                assert_eq!(mv, rv, "{tag}: {key}");
            }
            let protection = r.fields["protection:"].split(',').count();
            assert_eq!(protection, 5, "{tag}: protection has one entry per zone");
        }
        let ratio = first_block(&text, "/proc/sys/vm/lowmem_reserve_ratio").join("\n") + "\n";
        assert_eq!(
            kernel::procfs::live::read_node(&k.node, "sys/vm/lowmem_reserve_ratio"),
            Some(ratio),
            "{ram_mib} MiB: lowmem_reserve_ratio"
        );
    }
}

/// The x86_64 captures of `tests/realworks/` and `pairs/`.
fn captures_64_with_pairs() -> Vec<(PathBuf, String)> {
    let pairs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/realworks/pairs");
    let mut v = captures_of(true);
    for e in std::fs::read_dir(pairs).expect("tests/realworks/pairs") {
        let p = e.expect("dir entry").path();
        let t = std::fs::read_to_string(&p).expect("capture");
        if p.extension().is_some_and(|e| e == "txt") && kernel_image(&t) == "vmlinuz-amd64" {
            v.push((p, t));
        }
    }
    v
}

/// The "Number of blocks type" rows of a /proc/pagetypeinfo dump: zone → pageblocks by
/// migratetype (Unmovable, Movable, Reclaimable, HighAtomic, Isolate).
fn pageblock_types<'a>(lines: impl IntoIterator<Item = &'a str>) -> BTreeMap<String, Vec<i64>> {
    lines
        .into_iter()
        .skip_while(|l| !l.starts_with("Number of blocks type"))
        .skip(1)
        .filter_map(|l| {
            let rest = l.strip_prefix("Node 0, zone")?;
            let mut w = rest.split_whitespace();
            let zone = w.next()?.to_string();
            Some((zone, w.map(|n| n.parse().expect("a count")).collect()))
        })
        .collect()
}

/// Unmovable pageblocks of Normal the real boot of a machine (RAM in MiB) has beyond the
/// model's: one (4 GiB) or two (8 GiB) more order-10 steals, each of two pageblocks. The
/// real kernel makes much of its boot's unmovable allocations before
/// `page_alloc_init_late`, from the first section of Normal, where every block is Movable,
/// and steals; the free tail of the Unmovable per-CPU chunk block above the deferred point
/// is not free yet. The model's runtime profile is allocated after all frees, so that tail
/// serves part of it first. The capture's Unmovable free lists show it: the tail's order-7
/// and order-8 blocks still free, and a whole free order-9 block left by a steal.
const UNMODELLED_EARLY_STEALS: &[(u64, i64)] = &[(4096, 2), (8192, 4)];

/// DEFERRED_STRUCT_PAGE_INIT's pageblock types: the first /proc/pagetypeinfo's block counts
/// of every zone, after the runtime profile, against each capture's first dump (the boot's)
/// — exactly, but for the early steals above, which move pageblocks of Normal from Movable
/// to Unmovable. Without the deferral's Unmovable blocks (the vmemmap above all) the model
/// had 17, 36 and 73 fewer (2, 4 and 8 GiB).
#[test]
fn the_64bit_pageblock_types_match_the_real_boots() {
    let mut models: BTreeMap<u64, BTreeMap<String, Vec<i64>>> = BTreeMap::new();
    let mut failures = Vec::new();
    for (path, text) in captures_64_with_pairs() {
        let ram = ram_mib(&text);
        let model = models.entry(ram).or_insert_with(|| {
            let args = ["proc", "pagetypeinfo", "--variant", "x86_64", "--ram"];
            let mut args: Vec<String> = args.map(String::from).to_vec();
            args.push(format!("{ram}M"));
            pageblock_types(cli(&args).lines())
        });
        let mut real = pageblock_types(first_block(&text, "/proc/pagetypeinfo"));
        assert!(!real.is_empty(), "{}: no block counts", path.display());
        let steals = UNMODELLED_EARLY_STEALS
            .iter()
            .find(|(r, _)| *r == ram)
            .map_or(0, |(_, n)| *n);
        if let Some(normal) = real.get_mut("Normal") {
            normal[0] -= steals;
            normal[1] += steals;
        }
        if *model != real {
            failures.push(format!(
                "{}: model {model:?}, real less {steals} early steals {real:?}",
                path.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Active objects and objects per slab of each cache of a /proc/slabinfo dump.
fn slab_objects(lines: &[&str]) -> BTreeMap<String, (i64, i64)> {
    lines
        .iter()
        .filter(|l| !l.starts_with('#') && !l.starts_with("slabinfo"))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let n = |i: usize| f.get(i)?.parse::<i64>().ok();
            Some((f.first()?.to_string(), (n(1)?, n(4)?)))
        })
        .collect()
}

/// The caches a child takes objects from: its task (fork), its mm and VMAs, the attach, and
/// the /proc entries opened for it (on x86_64 with their inodes' LSM blobs).
const CHILD_CACHES: &[&str] = &[
    "lsm_inode_cache",
    "task_struct",
    "signal_cache",
    "sighand_cache",
    "files_cache",
    "cred_jar",
    "pid",
    "mm_struct",
    "vm_area_struct",
    "anon_vma",
    "anon_vma_chain",
    "maple_node",
    "dentry",
    "proc_inode_cache",
];

/// From no child to 100 on the same machine and boot (`tests/realworks/pairs/`): each
/// per-process cache grows by as many objects in the model as in the real kernel, within two
/// slabs of it (SLUB's active count moves a slab at a time, at both ends).
#[test]
fn the_slab_objects_of_100_children_match_the_real_pairs() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/realworks");
    let pairs = [
        (
            "pairs/work-pae-8192M-S128-N0-highmem0.txt",
            "pairs/work-pae-8192M-S128-N100-highmem0.txt",
        ),
        (
            "pairs/work-x86_64-8192M-S512-N0.txt",
            "pairs/work-x86_64-8192M-S512-N100.txt",
        ),
    ];
    let mut failures = Vec::new();
    for (n0, n100) in pairs {
        let growth = |text: &str, out: &str| {
            let (a, b) = (
                slab_objects(&first_block(text, "/proc/slabinfo")),
                slab_objects(&first_block(out, "/proc/slabinfo")),
            );
            (a, b)
        };
        let texts = [n0, n100].map(|f| std::fs::read_to_string(dir.join(f)).expect("capture"));
        let outs = [n0, n100].map(|f| {
            let text = std::fs::read_to_string(dir.join(f)).expect("capture");
            let run = RefRun::parse(&dir.join(f), &text).expect("capture parses");
            cli(&model_args(&run))
        });
        let (r0, r100) = growth(&texts[0], &texts[1]);
        let (m0, m100) = growth(&outs[0], &outs[1]);
        for &cache in CHILD_CACHES {
            let d = |a: &BTreeMap<String, (i64, i64)>, b: &BTreeMap<String, (i64, i64)>| {
                b.get(cache).map_or(0, |x| x.0) - a.get(cache).map_or(0, |x| x.0)
            };
            let (m, r) = (d(&m0, &m100), d(&r0, &r100));
            let per_slab = m100.get(cache).map_or(1, |x| x.1);
            if (m - r).abs() > 2 * per_slab {
                failures.push(format!(
                    "{n100}: {cache} grew by {m} objects in the model, {r} in the real kernel \
                     ({per_slab} a slab)"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
