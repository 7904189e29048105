//! `highmem boot` and `highmem proc`, driven in-process through `highmem::cli::run`.
//!
//! The /proc files the CLI prints are read back with the parser the fidelity tests use on
//! real dumps (`highmem::reference`): each file is wrapped in the `=====BEGIN …=====` markers
//! of a reference run, parsed, turned into a snapshot and formatted again, so the output has
//! to be the kernel's format to the byte. The files are then checked against each other with
//! the identities the kernel itself guarantees (meminfo totals are zone sums, buddyinfo is
//! the free lists zoneinfo counts, pagetypeinfo splits buddyinfo by migrate type), and the
//! sysctls against the v6.1 formulas of the fact sheet (§4.4–4.6), computed here from the
//! printed managed pages rather than taken from the model.

use highmem::cli::parse_ram_size;
use highmem::reference::{RefRun, Zoneinfo, ZoneinfoZone, BASE_APPEND};
use kernel::procfs::{
    format_buddyinfo, format_meminfo, format_pagetypeinfo, format_vmstat, format_zoneinfo,
};
use std::path::Path;

/// The /proc files every machine is checked on.
const PROC_FILES: [&str; 5] = ["meminfo", "zoneinfo", "buddyinfo", "pagetypeinfo", "vmstat"];

/// A PAE machine with high memory above 4 GiB and two CPUs.
const PAE: &[&str] = &["--ram", "4G", "--pae", "--cpus", "2"];
/// A non-PAE machine with high memory below 4 GiB.
const NOPAE: &[&str] = &["--ram", "2G"];

/// `sizeof(struct page)` of both reference kernels (FLATMEM, MEMCG).
const STRUCT_PAGE_BYTES: u64 = 40;

/// Run `highmem ARGS…`: exit code, stdout, stderr.
fn highmem(args: &[&str]) -> (i32, String, String) {
    let mut out = Vec::new();
    let mut err = Vec::new();
    let argv = std::iter::once("highmem").chain(args.iter().copied());
    let code = highmem::cli::run(argv, &mut out, &mut err);
    (
        code,
        String::from_utf8(out).expect("utf-8 stdout"),
        String::from_utf8(err).expect("utf-8 stderr"),
    )
}

/// Run a command that must succeed quietly; its stdout.
fn ok(args: &[&str]) -> String {
    let (code, out, err) = highmem(args);
    assert_eq!(code, 0, "{args:?} failed: {err}");
    // `proc` names its machine on stderr, so stdout stays the kernel's file byte for byte.
    assert!(
        err.lines().all(|l| l.starts_with("# highmem: QEMU pc, ")),
        "{args:?} wrote to stderr: {err}"
    );
    assert!(!out.is_empty(), "{args:?} printed nothing");
    out
}

/// `a` followed by `b`.
fn with<'a>(a: &[&'a str], b: &[&'a str]) -> Vec<&'a str> {
    a.iter().chain(b).copied().collect()
}

/// `highmem proc FILE MACHINE…`.
fn proc(file: &str, machine: &[&str]) -> String {
    ok(&with(&["proc", file], machine))
}

/// `highmem boot MACHINE…`, one line per element.
fn boot_log(machine: &[&str]) -> Vec<String> {
    ok(&with(&["boot"], machine))
        .lines()
        .map(str::to_string)
        .collect()
}

/// The value of `--flag` in `machine`.
fn flag<'a>(machine: &[&'a str], name: &str) -> Option<&'a str> {
    machine
        .iter()
        .position(|a| *a == name)
        .and_then(|i| machine.get(i + 1).copied())
}

fn cpus(machine: &[&str]) -> u64 {
    flag(machine, "--cpus").map_or(1, |c| c.parse().expect("--cpus N"))
}

/// What one machine prints: the boot log and each /proc file, and all of it parsed back as
/// a reference run.
struct Dumps {
    log: Vec<String>,
    text: Vec<(&'static str, String)>,
    run: RefRun,
}

impl Dumps {
    fn file(&self, name: &str) -> &str {
        self.text
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| t.as_str())
            .unwrap_or_else(|| panic!("no {name}"))
    }
}

/// Boot `machine` once per file and parse everything the way a real dump is parsed.
fn dumps(machine: &[&str]) -> Dumps {
    dumps_of(machine, &PROC_FILES)
}

/// [`dumps`] of some of the files only (each one is a boot).
fn dumps_of(machine: &[&str], files: &[&'static str]) -> Dumps {
    let log = boot_log(machine);
    let text: Vec<(&'static str, String)> = files.iter().map(|&f| (f, proc(f, machine))).collect();
    let run = parse_as_reference(machine, &log, &text);
    Dumps { log, text, run }
}

/// Wrap the output in a reference run's frame: the ORACLE header, the console with
/// timestamps, then each file between BEGIN/END markers.
fn parse_as_reference(machine: &[&str], log: &[String], files: &[(&str, String)]) -> RefRun {
    let pae = machine.contains(&"--pae");
    let ram = parse_ram_size(flag(machine, "--ram").unwrap_or("16G")).expect("--ram");
    let mut text = format!(
        "ORACLE-RUN name=cli kernel={} ram={}M smp={}\n\
         ORACLE-QEMU qemu-system-x86_64 -M pc -m {} -append \"{BASE_APPEND} \"\n",
        if pae { "vmlinuz-pae" } else { "vmlinuz-nopae" },
        ram >> 20,
        cpus(machine),
        ram >> 20,
    );
    for line in log {
        text.push_str(&format!("[    0.000000] {line}\n"));
    }
    for (name, body) in files {
        assert!(body.ends_with('\n'), "{name} does not end with a newline");
        text.push_str(&format!(
            "=====BEGIN /proc/{name}=====\n{body}=====END /proc/{name}=====\n"
        ));
    }
    RefRun::parse(Path::new("cli-output.txt"), &text).unwrap_or_else(|e| panic!("{e}"))
}

fn zoneinfo(text: &str, machine: &[&str]) -> Zoneinfo {
    let run = parse_as_reference(machine, &[], &[("zoneinfo", text.to_string())]);
    run.zoneinfo[0].clone()
}

fn zone<'a>(zi: &'a Zoneinfo, name: &str) -> &'a ZoneinfoZone {
    zi.zone(name).unwrap_or_else(|| panic!("no zone {name}"))
}

/// On i386 with high memory, `is_highmem_idx()`: HighMem, and Movable (carved from HighMem).
fn is_highmem(name: &str) -> bool {
    name == "HighMem" || name == "Movable"
}

fn rounddown_pow_of_two(n: u64) -> u64 {
    1 << (63 - n.leading_zeros())
}

/// `zone_batchsize()` as `zone_set_pageset_high_and_batch()` uses it (never below 1).
fn zone_batchsize(managed: u64) -> u64 {
    let b = ((managed >> 10).min(256) / 4).max(1);
    (rounddown_pow_of_two(b + b / 2) - 1).max(1)
}

/// `zone_highsize()`: `total_pages` split over the node's CPUs, at least 4 batches.
fn zone_highsize(total_pages: u64, cpus: u64, batch: u64) -> u64 {
    (total_pages / cpus).max(4 * batch)
}

/// `__setup_per_zone_wmarks()` from the printed managed pages: (min, low, high) per zone.
fn expected_watermarks(zi: &Zoneinfo, min_free_kbytes: u64, scale: u64) -> Vec<(u64, u64, u64)> {
    let pages_min = min_free_kbytes / 4;
    let lowmem: u64 = zi
        .zones
        .iter()
        .filter(|z| !is_highmem(&z.name))
        .map(|z| z.managed)
        .sum();
    zi.zones
        .iter()
        .map(|z| {
            let tmp = pages_min * z.managed / lowmem;
            let min = if is_highmem(&z.name) {
                (z.managed / 1024).clamp(32, 128)
            } else {
                tmp
            };
            let delta = (tmp / 4).max(z.managed * scale / 10000);
            (min, min + delta, min + 2 * delta)
        })
        .collect()
}

fn marks(zi: &Zoneinfo) -> Vec<(u64, u64, u64)> {
    zi.zones.iter().map(|z| (z.min, z.low, z.high)).collect()
}

/// Every populated zone's pagesets: one per CPU with the given high and batch.
fn assert_pagesets(zi: &Zoneinfo, cpus: u64, want: impl Fn(&ZoneinfoZone) -> (u64, u64)) {
    for z in zi.zones.iter().filter(|z| z.populated()) {
        assert_eq!(z.pagesets.len() as u64, cpus, "zone {}", z.name);
        let (high, batch) = want(z);
        for p in &z.pagesets {
            assert_eq!(
                (p.high as u64, p.batch as u64),
                (high, batch),
                "zone {} cpu {} high/batch (managed {})",
                z.name,
                p.cpu,
                z.managed
            );
        }
    }
}

fn meminfo_kb(d: &Dumps, label: &str) -> u64 {
    d.run.meminfo[0]
        .get(label)
        .unwrap_or_else(|| panic!("meminfo lacks {label}"))
}

fn sum_zones(zi: &Zoneinfo, pick: impl Fn(&ZoneinfoZone) -> Option<u64>) -> u64 {
    zi.zones.iter().filter_map(pick).sum()
}

/// 1. The files parse back, format again to the same bytes, and agree with each other.
fn check_proc_files(machine: &[&str]) {
    let d = dumps(machine);
    let run = &d.run;
    assert_eq!(run.meminfo.len(), 1);
    assert_eq!(run.zoneinfo.len(), 1);
    assert_eq!(run.buddyinfo.len(), 1);
    assert_eq!(run.pagetypeinfo.len(), 1);
    assert_eq!(run.vmstat.len(), 1);

    // Round trips through the reference snapshots (meminfo's derived lines — MemAvailable,
    // CommitLimit, LowTotal… — are recomputed there from zoneinfo's watermarks and reserve).
    let again = [
        (
            "zoneinfo",
            run.zoneinfo_snapshot(0).map(|s| format_zoneinfo(&s)),
        ),
        (
            "buddyinfo",
            run.buddyinfo_snapshot(0).map(|s| format_buddyinfo(&s)),
        ),
        (
            "pagetypeinfo",
            run.pagetypeinfo_snapshot(0)
                .map(|s| format_pagetypeinfo(&s)),
        ),
        ("vmstat", run.vmstat_snapshot(0).map(|s| format_vmstat(&s))),
        (
            "meminfo",
            run.meminfo_snapshot(0).map(|s| format_meminfo(&s)),
        ),
    ];
    for (name, text) in again {
        let text = text.unwrap_or_else(|e| panic!("{machine:?} {name}: {e}"));
        assert_eq!(
            text,
            d.file(name),
            "{machine:?}: {name} does not round-trip"
        );
    }

    let zi = &run.zoneinfo[0];
    let names: Vec<&str> = zi.zones.iter().map(|z| z.name.as_str()).collect();
    assert_eq!(names, ["DMA", "Normal", "HighMem", "Movable"]);
    let highmem = zone(zi, "HighMem");
    assert!(highmem.managed > 0, "{machine:?} has no high memory");

    // meminfo is the sum of the zones.
    let kb = |l: &str| meminfo_kb(&d, l);
    assert_eq!(kb("MemTotal"), 4 * sum_zones(zi, |z| Some(z.managed)));
    assert_eq!(kb("MemFree"), 4 * sum_zones(zi, |z| Some(z.free)));
    let high = |z: &ZoneinfoZone| is_highmem(&z.name);
    assert_eq!(
        kb("HighTotal"),
        4 * sum_zones(zi, |z| high(z).then_some(z.managed))
    );
    assert_eq!(
        kb("HighFree"),
        4 * sum_zones(zi, |z| high(z).then_some(z.free))
    );
    assert_eq!(kb("LowTotal"), kb("MemTotal") - kb("HighTotal"));
    assert_eq!(kb("LowFree"), kb("MemFree") - kb("HighFree"));

    // vmstat: zone counters are sums over the zones, node counters those of zoneinfo.
    let vm = &run.vmstat[0];
    let first_populated = zi.zones.iter().find(|z| z.populated()).expect("a zone");
    assert!(!first_populated.node_stats.is_empty());
    for (name, value) in &first_populated.node_stats {
        assert_eq!(vm.get(name), Some(*value), "vmstat {name}");
    }
    for (name, _) in &first_populated.stats {
        let sum = sum_zones(zi, |z| z.stat(name));
        assert_eq!(vm.get(name), Some(sum), "vmstat {name}");
    }

    // buddyinfo lists the populated zones; their free blocks are zoneinfo's free pages
    // exactly (pages on the per-CPU lists are in neither).
    let bi = &run.buddyinfo[0];
    let populated: Vec<&ZoneinfoZone> = zi.zones.iter().filter(|z| z.populated()).collect();
    assert_eq!(
        bi.zones.iter().map(|z| z.name.as_str()).collect::<Vec<_>>(),
        populated
            .iter()
            .map(|z| z.name.as_str())
            .collect::<Vec<_>>()
    );
    let mut pcp_pages = 0;
    for (b, z) in bi.zones.iter().zip(&populated) {
        assert_eq!(b.nr_free.len(), 11, "orders 0..10");
        let pages: u64 = b.nr_free.iter().enumerate().map(|(o, n)| n << o).sum();
        assert_eq!(pages, z.free, "zone {}: buddyinfo vs pages free", z.name);
        let pcp: u64 = z.pagesets.iter().map(|p| p.count as u64).sum();
        assert!(z.free + pcp <= z.managed, "zone {}", z.name);
        pcp_pages += pcp;
    }
    assert!(pcp_pages > 0, "no page on any per-CPU list after boot");

    // pagetypeinfo splits each buddyinfo count by migrate type; the block table covers the
    // zone in pageblock steps from zone_start_pfn.
    let pt = &run.pagetypeinfo[0];
    let order = if machine.contains(&"--pae") { 9 } else { 10 };
    assert_eq!(pt.pageblock_order, order);
    assert_eq!(pt.pages_per_block, 1 << order);
    for (b, z) in bi.zones.iter().zip(&populated) {
        let rows: Vec<_> = pt.free.iter().filter(|f| f.zone == z.name).collect();
        assert_eq!(rows.len(), pt.block_types.len(), "zone {}", z.name);
        for (o, &n) in b.nr_free.iter().enumerate() {
            let by_type: u64 = rows.iter().map(|r| r.counts[o]).sum();
            assert_eq!(by_type, n, "zone {} order {o}", z.name);
        }
        let blocks = pt
            .blocks
            .iter()
            .find(|r| r.zone == z.name)
            .unwrap_or_else(|| panic!("no block counts for {}", z.name));
        assert_eq!(
            blocks.counts.iter().sum::<u64>(),
            z.spanned.div_ceil(pt.pages_per_block),
            "zone {} pageblocks",
            z.name
        );
    }
}

#[test]
fn proc_files_parse_back_and_agree_pae() {
    check_proc_files(PAE);
}

#[test]
fn proc_files_parse_back_and_agree_nopae() {
    check_proc_files(NOPAE);
}

/// `/proc/sys/vm/NAME` of `machine` with `sysctls` written, as a number list.
fn sys_vm(name: &str, machine: &[&str]) -> Vec<u64> {
    proc(&format!("sys/vm/{name}"), machine)
        .split_whitespace()
        .map(|v| v.parse().expect("a number"))
        .collect()
}

#[test]
fn min_free_kbytes_sets_every_watermark_and_pcp_high() {
    for machine in [PAE, NOPAE] {
        let set = with(machine, &["--sysctl", "min_free_kbytes=65536"]);
        assert_eq!(proc("sys/vm/min_free_kbytes", &set), "65536\n");
        let zi = zoneinfo(&proc("zoneinfo", &set), &set);
        let before = zoneinfo(&proc("zoneinfo", machine), machine);
        assert_eq!(
            marks(&zi),
            expected_watermarks(&zi, 65536, 10),
            "{machine:?}"
        );
        for (z, b) in zi.zones.iter().zip(&before.zones) {
            assert_eq!(z.boost, 0);
            if !is_highmem(&z.name) {
                assert!(
                    z.min > b.min,
                    "{machine:?} {}: min {} ≤ {}",
                    z.name,
                    z.min,
                    b.min
                );
            }
            if z.managed > 0 {
                assert!(z.low > b.low && z.high > b.high, "{machine:?} {}", z.name);
            }
        }
        // setup_per_zone_wmarks() ends with zone_pcp_update(): high follows the new low.
        let n = cpus(machine);
        assert_pagesets(&zi, n, |z| {
            let batch = zone_batchsize(z.managed);
            (zone_highsize(z.low, n, batch), batch)
        });
    }
}

#[test]
fn watermark_scale_factor_widens_the_gaps() {
    let machine = PAE;
    let set = with(machine, &["--sysctl", "watermark_scale_factor=200"]);
    assert_eq!(sys_vm("watermark_scale_factor", &set), [200]);
    // The write keeps min_free_kbytes (khugepaged's value after boot).
    let min_free = sys_vm("min_free_kbytes", machine)[0];
    assert_eq!(sys_vm("min_free_kbytes", &set), [min_free]);
    let zi = zoneinfo(&proc("zoneinfo", &set), &set);
    let before = zoneinfo(&proc("zoneinfo", machine), machine);
    assert_eq!(marks(&zi), expected_watermarks(&zi, min_free, 200));
    for (z, b) in zi
        .zones
        .iter()
        .zip(&before.zones)
        .filter(|(z, _)| z.managed > 0)
    {
        assert!(z.low - z.min > b.low - b.min, "zone {}: low-min", z.name);
        assert!(z.high - z.low > b.high - b.low, "zone {}: high-low", z.name);
    }
}

#[test]
fn lowmem_reserve_ratio_sets_protection() {
    let machine = NOPAE;
    let set = with(machine, &["--sysctl", "lowmem_reserve_ratio=1 1 0 0"]);
    assert_eq!(proc("sys/vm/lowmem_reserve_ratio", &set), "1\t1\t0\t0\n");
    let d = dumps_of(&set, &["meminfo", "zoneinfo"]);
    let zi = &d.run.zoneinfo[0];
    let m: Vec<i64> = zi.zones.iter().map(|z| z.managed as i64).collect();
    // Zone i keeps back Σ managed(i+1..=j) / ratio[i] from requests whose highest zone is j.
    let ratio = [1, 1, 0, 0];
    for (i, z) in zi.zones.iter().enumerate() {
        let want: Vec<i64> = (0..4)
            .map(|j| {
                if j <= i || i == 3 || ratio[i] == 0 || m[i] == 0 {
                    0
                } else {
                    m[i + 1..=j].iter().sum::<i64>() / ratio[i]
                }
            })
            .collect();
        assert_eq!(z.protection, want, "zone {}", z.name);
    }
    // The reserve is in totalreserve_pages: MemAvailable, recomputed from this zoneinfo by
    // the meminfo round trip, must still match.
    let again = d.run.meminfo_snapshot(0).map(|s| format_meminfo(&s));
    assert_eq!(again.unwrap_or_else(|e| panic!("{e}")), d.file("meminfo"));
    let before = dumps_of(machine, &["meminfo"]);
    assert!(
        meminfo_kb(&d, "MemAvailable") < meminfo_kb(&before, "MemAvailable"),
        "a larger reserve must lower MemAvailable"
    );
}

#[test]
fn percpu_pagelist_high_fraction_sizes_pcp_from_managed() {
    let machine = PAE;
    let set = with(machine, &["--sysctl", "percpu_pagelist_high_fraction=8"]);
    assert_eq!(sys_vm("percpu_pagelist_high_fraction", &set), [8]);
    let zi = zoneinfo(&proc("zoneinfo", &set), &set);
    let before = zoneinfo(&proc("zoneinfo", machine), machine);
    let n = cpus(machine);
    assert_pagesets(&zi, n, |z| {
        let batch = zone_batchsize(z.managed);
        (zone_highsize(z.managed / 8, n, batch), batch)
    });
    for name in ["Normal", "HighMem"] {
        assert_ne!(
            zone(&zi, name).pagesets[0].high,
            zone(&before, name).pagesets[0].high,
            "{name}"
        );
    }
    // Watermarks are not touched.
    assert_eq!(marks(&zi), marks(&before));
}

#[test]
fn same_command_same_bytes() {
    let machine = PAE;
    let cmd = with(&["boot"], machine);
    assert_eq!(ok(&cmd), ok(&cmd), "boot log");
    for file in PROC_FILES
        .iter()
        .copied()
        .chain(["sys/vm/min_free_kbytes", "sys/vm/lowmem_reserve_ratio"])
    {
        assert_eq!(proc(file, machine), proc(file, machine), "{file}");
    }
}

/// Exit code `code`, nothing on stdout, one `highmem: error:` line naming `words`.
fn assert_error(args: &[&str], code: i32, words: &str) {
    let (c, out, err) = highmem(args);
    assert_eq!(c, code, "{args:?}: {err}");
    assert!(out.is_empty(), "{args:?} printed {out}");
    assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
    assert!(err.starts_with("highmem: error: "), "{args:?}: {err}");
    assert!(err.contains(words), "{args:?}: {err:?} lacks {words:?}");
}

#[test]
fn bad_input_is_one_line_with_the_right_code() {
    assert_error(&["proc", "interrupts", "--ram", "256M"], 2, "interrupts");
    assert_error(
        &["proc", "sys/vm/nosuch", "--ram", "256M"],
        2,
        "sys/vm/nosuch",
    );
    let cases: &[(&[&str], i32, &str)] = &[
        (&["--sysctl", "foo=1"], 2, "foo"),
        (
            &["--sysctl", "min_free_kbytes=abc"],
            2,
            "min_free_kbytes=abc",
        ),
        (&["--sysctl", "min_free_kbytes=-5"], 2, "min_free_kbytes=-5"),
        (&["--sysctl", "min_free_kbytes"], 2, "NAME=VALUE"),
        (
            &["--sysctl", "watermark_scale_factor=0"],
            2,
            "watermark_scale_factor",
        ),
        (&["--sysctl", "watermark_scale_factor=3001"], 2, "3001"),
        (
            &["--sysctl", "percpu_pagelist_high_fraction=7"],
            2,
            "fraction=7",
        ),
        (&["--ram", "0"], 2, "--ram"),
        (&["--ram", "65G", "--pae"], 2, "at most 64 GiB"),
        (&["--kernel", "nope"], 2, "nope"),
        (&["--initrd", "xyz"], 2, "--initrd xyz"),
        (&["--cpus", "0"], 2, "--cpus 0"),
        // The image does not fit: the kernel would not boot.
        (&["--ram", "32M", "--pae"], 1, "would not boot"),
    ];
    for &(args, code, words) in cases {
        let machine = if args.contains(&"--ram") {
            args.to_vec()
        } else {
            with(args, &["--ram", "256M"])
        };
        assert_error(&with(&["boot"], &machine), code, words);
        assert_error(&with(&["proc", "meminfo"], &machine), code, words);
    }
}

/// Index of the first log line starting with `prefix`.
fn line_index(log: &[String], prefix: &str) -> usize {
    log.iter()
        .position(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no boot line starting {prefix:?}"))
}

/// `Freeing … memory: NK` lines: (what, K).
fn freeing_lines(log: &[String]) -> Vec<(String, u64)> {
    log.iter()
        .filter_map(|l| {
            let rest = l.strip_prefix("Freeing ")?;
            let (what, k) = rest.rsplit_once(" memory: ")?;
            Some((what.to_string(), k.strip_suffix('K')?.parse().ok()?))
        })
        .collect()
}

#[test]
fn boot_log_in_kernel_order_and_consistent_with_proc() {
    for machine in [PAE, NOPAE] {
        let d = dumps_of(machine, &["meminfo", "zoneinfo"]);
        let log = &d.log;
        let order = [
            "Linux version ",
            "BIOS-provided physical RAM map:",
            "last_pfn = ",
            "RAMDISK: ",
            "Zone ranges:",
            "Initmem setup node 0",
            "percpu: Embedded ",
            "Built 1 zonelists",
            "Kernel command line:",
            "Dentry cache hash table",
            "Memory: ",
            "Freeing SMP alternatives memory",
            "Freeing initrd memory",
            "Freeing unused kernel image (initmem) memory",
        ];
        let at: Vec<usize> = order.iter().map(|p| line_index(log, p)).collect();
        for (w, p) in at.windows(2).zip(order.windows(2)) {
            assert!(w[0] < w[1], "{machine:?}: {:?} before {:?}", p[1], p[0]);
        }
        let freeing = freeing_lines(log);
        assert_eq!(
            freeing.last().map(|(w, _)| w.as_str()),
            Some("unused kernel image (initmem)"),
            "{machine:?}"
        );

        // mem_init_print_info(): physpages are the present pages, highmem the managed
        // high memory; every page freed after it went to totalram.
        let zi = &d.run.zoneinfo[0];
        let mem = d.run.memory_line.as_ref().expect("Memory: line");
        assert_eq!(mem.total_kb, 4 * sum_zones(zi, |z| Some(z.present)));
        assert_eq!(mem.highmem_kb, Some(meminfo_kb(&d, "HighTotal")));
        let freed: u64 = freeing.iter().map(|(_, k)| k).sum();
        assert_eq!(
            mem.total_kb - mem.reserved_kb + freed,
            meminfo_kb(&d, "MemTotal"),
            "{machine:?}: totalram at mem_init plus the Freeing lines"
        );
        // build_all_zonelists() counts free_area_init_core()'s estimate of managed pages:
        // present minus the zone's share of mem_map in low memory, present in high memory.
        let estimate = sum_zones(zi, |z| {
            let memmap = (z.spanned * STRUCT_PAGE_BYTES).div_ceil(4096);
            Some(if is_highmem(&z.name) {
                z.present
            } else {
                z.present.saturating_sub(memmap)
            })
        });
        let zl = d.run.zonelists.as_ref().expect("zonelists line");
        assert_eq!(zl.total_pages, estimate, "{machine:?}: Total pages");
        assert!(zl.mobility_grouping);
    }
}

/// `highmem: runtime profile holds NK kernel, MK user …`: (N, M).
fn runtime_held(log: &[String]) -> Option<(u64, u64)> {
    let l = log
        .iter()
        .find_map(|l| l.strip_prefix("highmem: runtime profile holds "))?;
    let mut k = l
        .split(", ")
        .map(|p| p.split('K').next().and_then(|n| n.parse::<u64>().ok()));
    Some((k.next()??, k.next()??))
}

#[test]
fn no_runtime_leaves_more_free_memory() {
    let machine = PAE;
    let bare_args = with(machine, &["--no-runtime"]);
    let full = dumps_of(machine, &["meminfo", "zoneinfo"]);
    let bare = dumps_of(&bare_args, &["meminfo", "zoneinfo"]);
    let (held_low, held_high) = runtime_held(&full.log).expect("runtime profile line");
    assert!(held_low > 0 && held_high > 0);
    assert_eq!(
        runtime_held(&bare.log),
        None,
        "--no-runtime still holds memory"
    );
    let kb = |d: &Dumps, l: &str| meminfo_kb(d, l);
    assert_eq!(kb(&full, "MemTotal"), kb(&bare, "MemTotal"));
    assert!(kb(&bare, "MemFree") > kb(&full, "MemFree"));
    // What is not free is held by the profile or waits on a per-CPU list.
    let pcp = |d: &Dumps, highmem: bool| -> u64 {
        4 * sum_zones(&d.run.zoneinfo[0], |z| {
            (is_highmem(&z.name) == highmem)
                .then(|| z.pagesets.iter().map(|p| p.count as u64).sum())
        })
    };
    assert_eq!(
        kb(&bare, "LowFree") + pcp(&bare, false),
        kb(&full, "LowFree") + pcp(&full, false) + held_low,
        "low memory"
    );
    assert_eq!(
        kb(&bare, "HighFree") + pcp(&bare, true),
        kb(&full, "HighFree") + pcp(&full, true) + held_high,
        "high memory"
    );
}

/// `[mem 0xA-0xB]` ranges of a line, in order.
fn mem_ranges(line: &str) -> Vec<(u64, u64)> {
    line.split("[mem ")
        .skip(1)
        .filter_map(|r| {
            let (a, b) = r.split_once(']')?.0.split_once('-')?;
            let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok();
            Some((hex(a)?, hex(b)?))
        })
        .collect()
}

#[test]
fn initrd_zero_boots_without_ramdisk() {
    let machine = PAE;
    let none = with(machine, &["--initrd", "0"]);
    let log = boot_log(&none);
    assert!(
        !log.iter()
            .any(|l| l.contains("RAMDISK") || l.contains("initrd")),
        "{log:#?}"
    );
    assert_eq!(
        freeing_lines(&log)
            .iter()
            .map(|(w, _)| w.as_str())
            .collect::<Vec<_>>(),
        ["SMP alternatives", "unused kernel image (initmem)"]
    );
    // The initrd's pages end in totalram either way.
    let mem_total = |m: &[&str]| meminfo_kb(&dumps_of(m, &["meminfo"]), "MemTotal");
    assert_eq!(mem_total(&none), mem_total(machine));
}

#[test]
fn initrd_above_low_memory_is_moved_down() {
    for machine in [
        &["--ram", "1G", "--pae"][..],
        &["--ram", "1G"],
        &["--ram", "1G", "--pae", "--initrd", "8M"],
    ] {
        let log = boot_log(machine);
        let ramdisk = mem_ranges(&log[line_index(&log, "RAMDISK: ")]);
        let alloc = mem_ranges(&log[line_index(&log, "Allocated new RAMDISK: ")]);
        let moved = mem_ranges(&log[line_index(&log, "Move RAMDISK from ")]);
        let low_ram = &log[line_index(&log, "  low ram: ")];
        let low_end =
            u64::from_str_radix(low_ram.rsplit(' ').next().expect("low ram end"), 16).expect("hex");
        let [(from_a, from_b), (to_a, to_b)] = moved[..] else {
            panic!("{machine:?}: Move RAMDISK line {moved:?}");
        };
        assert_eq!(ramdisk[0].0, from_a, "{machine:?}");
        assert!(
            ramdisk[0].1 >= low_end,
            "{machine:?}: initrd was in low memory"
        );
        assert_eq!(alloc, [(to_a, to_b)], "{machine:?}");
        assert_eq!(from_b - from_a, to_b - to_a, "{machine:?}: size changed");
        assert!(to_b < low_end && to_a % 4096 == 0, "{machine:?}: {to_a:#x}");
        let size = to_b - to_a + 1;
        if let Some(s) = flag(machine, "--initrd") {
            assert_eq!(size, parse_ram_size(s).expect("size"));
        }
        let freed = freeing_lines(&log)
            .into_iter()
            .find(|(w, _)| w == "initrd")
            .map(|(_, k)| k);
        assert_eq!(freed, Some(size.div_ceil(4096) * 4), "{machine:?}");
    }
}

// ---- Behaviour of the real 6.1 kernel and QEMU that the model lacks --------------------

/// vmstat_start() fills nr_dirty_threshold / nr_dirty_background_threshold from
/// global_dirty_limits(): dirtyable memory is the free pages above totalreserve_pages plus
/// the file LRU, minus what high memory contributes (vm_highmem_is_dirtyable = 0), plus 1;
/// the limits are vm_dirty_ratio 20 % and dirty_background_ratio 10 % of it, in the
/// kernel's per-PAGE_SIZE fixed point.
#[test]
fn vmstat_dirty_thresholds_are_global_dirty_limits() {
    for machine in [PAE, NOPAE] {
        let d = dumps_of(machine, &["zoneinfo", "vmstat"]);
        let zi = &d.run.zoneinfo[0];
        let vm = &d.run.vmstat[0];
        let get = |n: &str| vm.get(n).unwrap_or_else(|| panic!("vmstat lacks {n}"));
        let free = get("nr_free_pages");
        let mut x = free - free.min(zi.totalreserve_pages());
        x += get("nr_inactive_file") + get("nr_active_file");
        let high: u64 = sum_zones(zi, |z| {
            (is_highmem(&z.name) && z.populated()).then(|| {
                z.free - z.free.min(z.high)
                    + z.stat("nr_zone_inactive_file").unwrap_or(0)
                    + z.stat("nr_zone_active_file").unwrap_or(0)
            })
        });
        let available = x - high.min(x) + 1;
        let (ratio, bg_ratio) = (20 * 4096 / 100, 10 * 4096 / 100);
        let thresh = ratio * available / 4096;
        let mut bg = bg_ratio * available / 4096;
        if bg >= thresh {
            bg = thresh / 2;
        }
        assert_eq!(
            (
                get("nr_dirty_threshold"),
                get("nr_dirty_background_threshold")
            ),
            (thresh, bg),
            "{machine:?}"
        );
    }
}

/// In 6.1 reserve_initrd() has no size check any more (removed in 5.10); relocate_initrd()
/// panics when memblock has no room below max_pfn_mapped.
#[test]
fn initrd_that_cannot_be_moved_panics_as_6_1_does() {
    assert_error(
        &["boot", "--ram", "2G", "--initrd", "1000M"],
        1,
        "Kernel panic - not syncing: Cannot find place for new RAMDISK of size 1048576000",
    );
}

/// QEMU refuses to start when the initrd does not fit below its initrd_max (x86_load_linux:
/// "qemu: initrd is too large, cannot support."): the machine cannot exist, so it is bad
/// input rather than a boot without an initrd.
#[test]
fn initrd_qemu_cannot_load_is_refused() {
    assert_error(&["boot", "--ram", "1G", "--initrd", "2G"], 2, "initrd");
}

/// `boot --stats`: every highmem page the boot zeroed went through one kmap_local map/unmap
/// pair, each unmap's INVLPG forced exactly one new walk, and the only fault is the WP test.
#[test]
fn boot_stats_show_what_kmap_local_cost() {
    let out = ok(&["boot", "--ram", "2G", "--pae", "--cpus", "2", "--stats"]);
    let field = |line: &str, name: &str| -> u64 {
        let mut it = line.split_whitespace();
        while let Some(w) = it.next() {
            if w == name {
                return it
                    .next()
                    .and_then(|v| v.trim_end_matches(',').parse().ok())
                    .expect(name);
            }
        }
        panic!("{name} missing in {line:?}");
    };
    let cpu0 = out
        .lines()
        .find(|l| l.starts_with("cpu0:"))
        .expect("cpu0 line");
    assert!(
        out.lines().any(|l| l.starts_with("cpu1:")),
        "one line per CPU"
    );
    let kmap = out
        .lines()
        .find(|l| l.starts_with("kmap_local:"))
        .expect("kmap line");
    let maps: u64 = kmap
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("maps");
    let unmaps: u64 = kmap
        .split_whitespace()
        .nth(3)
        .and_then(|v| v.parse().ok())
        .expect("unmaps");
    assert!(
        maps > 0,
        "init_on_alloc zeroes highmem pages through kmap_local"
    );
    assert_eq!(maps, unmaps, "balanced");
    assert_eq!(field(cpu0, "page_faults"), 1, "the WP test's write fault");
    assert_eq!(
        field(cpu0, "tlb_evictions"),
        0,
        "the default (debug) TLB geometry never evicts"
    );
    assert!(
        field(cpu0, "invlpg") >= unmaps,
        "an INVLPG per kunmap_local"
    );
    assert!(
        field(cpu0, "walks") >= maps,
        "each fresh slot mapping is walked"
    );
}

#[test]
fn every_listed_proc_file_is_printed() {
    for file in kernel::procfs::live::PROC_FILES {
        let (code, out, err) = highmem(&["proc", file, "--ram", "1G", "--pae"]);
        assert_eq!(code, 0, "{file}: {err}");
        if *file != "vmallocinfo" {
            assert!(!out.is_empty(), "{file} printed nothing");
        }
    }
}

#[test]
fn tlb_geometry_is_a_machine_option() {
    // The geometry is the CPU's, invisible to a boot's /proc: both boot to the same bytes.
    let core2 = ok(&["proc", "meminfo", "--ram", "1G"]);
    let debug = ok(&["proc", "meminfo", "--ram", "1G", "--tlb", "debug"]);
    assert_eq!(core2, debug);
    let (code, _, err) = highmem(&["proc", "meminfo", "--ram", "1G", "--tlb", "huge"]);
    assert_ne!(code, 0);
    assert!(err.contains("core2") && err.contains("debug"), "{err}");
}
