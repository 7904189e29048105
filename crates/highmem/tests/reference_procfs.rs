//! Round trips of the real kernel's /proc dumps through `kernel::procfs`.
//!
//! Every dump of every reference run is parsed into the snapshot the simulated kernel would
//! fill, formatted again, and compared with the original text byte for byte. The figures that
//! meminfo and zoneinfo derive (MemAvailable, LowTotal/LowFree, CommitLimit, Cached, the
//! watermark boost, the vmstat thresholds) are not copied from the dump but recomputed from
//! the underlying counters, so a match checks the kernel's formulas as well as the format.

use highmem::reference::{list_runs, RefRun};
use kernel::procfs::{
    calculate_normal_threshold, format_buddyinfo, format_dointvec, format_meminfo,
    format_pagetypeinfo, format_vmstat, format_zoneinfo, HugetlbSnapshot, VmSysctlSnapshot,
};

fn runs() -> Vec<RefRun> {
    let paths = list_runs().expect("reference directory");
    assert!(!paths.is_empty(), "no reference runs found");
    paths
        .iter()
        .map(|p| RefRun::load(p).unwrap_or_else(|e| panic!("{e}")))
        .collect()
}

/// Panics with the differing lines when `got` is not `want`.
fn assert_same(run: &RefRun, what: &str, begin_line: usize, got: &str, want: &str) {
    if got == want {
        return;
    }
    let mut diff = String::new();
    let (g, w): (Vec<&str>, Vec<&str>) = (got.lines().collect(), want.lines().collect());
    for i in 0..g.len().max(w.len()) {
        let (gl, wl) = (
            g.get(i).copied().unwrap_or("<none>"),
            w.get(i).copied().unwrap_or("<none>"),
        );
        if gl != wl {
            diff.push_str(&format!(
                "  line {}: got {gl:?}\n          want {wl:?}\n",
                i + 1
            ));
        }
    }
    if diff.is_empty() {
        diff.push_str("  (line endings differ)\n");
    }
    panic!(
        "{} {what} dump at line {begin_line} differs:\n{diff}",
        run.path.display()
    );
}

fn dump_text(run: &RefRun, begin_line: usize) -> &str {
    &run.section_at(begin_line).expect("dump has a section").text
}

#[test]
fn zoneinfo_round_trips() {
    let mut dumps = 0;
    for run in runs() {
        for (i, dump) in run.zoneinfo.iter().enumerate() {
            let snap = run.zoneinfo_snapshot(i).unwrap_or_else(|e| panic!("{e}"));
            let text = format_zoneinfo(&snap);
            assert_same(
                &run,
                "zoneinfo",
                dump.begin_line,
                &text,
                dump_text(&run, dump.begin_line),
            );
            dumps += 1;
        }
    }
    assert!(dumps >= 10);
}

#[test]
fn buddyinfo_round_trips() {
    for run in runs() {
        for (i, dump) in run.buddyinfo.iter().enumerate() {
            let text =
                format_buddyinfo(&run.buddyinfo_snapshot(i).unwrap_or_else(|e| panic!("{e}")));
            assert_same(
                &run,
                "buddyinfo",
                dump.begin_line,
                &text,
                dump_text(&run, dump.begin_line),
            );
        }
    }
}

#[test]
fn pagetypeinfo_round_trips() {
    for run in runs() {
        for (i, dump) in run.pagetypeinfo.iter().enumerate() {
            let snap = run
                .pagetypeinfo_snapshot(i)
                .unwrap_or_else(|e| panic!("{e}"));
            let text = format_pagetypeinfo(&snap);
            assert_same(
                &run,
                "pagetypeinfo",
                dump.begin_line,
                &text,
                dump_text(&run, dump.begin_line),
            );
        }
    }
}

#[test]
fn vmstat_round_trips() {
    for run in runs() {
        for (i, dump) in run.vmstat.iter().enumerate() {
            let text = format_vmstat(&run.vmstat_snapshot(i).unwrap_or_else(|e| panic!("{e}")));
            assert_same(
                &run,
                "vmstat",
                dump.begin_line,
                &text,
                dump_text(&run, dump.begin_line),
            );
        }
    }
}

/// MemAvailable, LowTotal, LowFree, Cached, Slab, KReclaimable, Active/Inactive, CommitLimit
/// and Hugetlb are recomputed; totalreserve_pages comes from kinspect where the run has it.
#[test]
fn meminfo_round_trips_with_derived_lines() {
    let mut dumps = 0;
    for run in runs() {
        for (i, dump) in run.meminfo.iter().enumerate() {
            let snap = run.meminfo_snapshot(i).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                snap.hugetlb,
                HugetlbSnapshot::default_hstate(run.kernel.is_pae())
            );
            let text = format_meminfo(&snap);
            assert_same(
                &run,
                "meminfo",
                dump.begin_line,
                &text,
                dump_text(&run, dump.begin_line),
            );
            dumps += 1;
        }
    }
    assert!(dumps >= 20);
}

/// `vm stats threshold` is calculate_normal_threshold(managed, online CPUs) in every
/// populated zone of every dump (no dump was taken while kswapd had lowered it).
#[test]
fn vm_stats_threshold_from_managed_pages_and_cpus() {
    let mut checked = 0;
    for run in runs() {
        for dump in &run.zoneinfo {
            for zone in dump.zones.iter().filter(|z| z.populated()) {
                assert_eq!(
                    zone.pagesets.len(),
                    run.smp as usize,
                    "{}: one pageset per CPU",
                    run.name
                );
                let want = calculate_normal_threshold(zone.managed, run.smp);
                for p in &zone.pagesets {
                    assert_eq!(
                        p.stat_threshold,
                        Some(want),
                        "{} line {} cpu {}",
                        run.name,
                        zone.line,
                        p.cpu
                    );
                    checked += 1;
                }
            }
        }
    }
    assert!(checked >= 30);
}

/// setup_per_zone_lowmem_reserve() of 6.1, from the zones' managed pages: zone i reserves
/// (Σ managed of zones i+1..=j) / ratio[i] against allocations whose highest zone is j.
fn lowmem_reserve(managed: &[u64], ratio: &[i64]) -> Vec<Vec<i64>> {
    let n = managed.len();
    let mut reserve = vec![vec![0i64; n]; n];
    for i in 0..n.saturating_sub(1) {
        let r = ratio.get(i).copied().unwrap_or(0);
        let mut upper = 0u64;
        for j in i + 1..n {
            upper += managed[j];
            reserve[i][j] = if r == 0 || managed[i] == 0 {
                0
            } else {
                (upper / r as u64) as i64
            };
        }
    }
    reserve
}

/// calculate_totalreserve_pages() over zones given as (managed, high watermark, reserves).
fn totalreserve(zones: &[(u64, u64, Vec<i64>)]) -> u64 {
    zones
        .iter()
        .map(|(managed, high, res)| {
            (res.iter().copied().max().unwrap_or(0).max(0) as u64 + high).min(*managed)
        })
        .sum()
}

/// Reading /proc/sys/vm/lowmem_reserve_ratio recomputes lowmem_reserve in 6.1, so zoneinfo
/// dumps taken after such a read show setup_per_zone_lowmem_reserve() of the current managed
/// pages, and kinspect's totalreserve_pages (read after it) is calculate_totalreserve_pages()
/// of those reserves. Dumps before the first read may show reserves of earlier managed
/// counts (the boot computes them before the last init memory is freed).
#[test]
fn lowmem_reserve_and_totalreserve_follow_the_kernel_formulas() {
    let mut checked_reserves = 0;
    for run in runs() {
        let ratio = run
            .sysctl_values("/proc/sys/vm/lowmem_reserve_ratio")
            .unwrap()
            .expect("ratio dumped");
        for zi in &run.zoneinfo {
            let managed: Vec<u64> = zi.zones.iter().map(|z| z.managed).collect();
            let recomputed = lowmem_reserve(&managed, &ratio);
            if run.reserve_epoch(zi.begin_line) > 0 {
                for (z, want) in zi.zones.iter().zip(&recomputed) {
                    assert_eq!(&z.protection, want, "{} zone line {}", run.name, z.line);
                    checked_reserves += 1;
                }
            }
            if let Some(k) = run
                .kinspect
                .as_ref()
                .filter(|k| run.reserve_epoch(k.begin_line) > 0)
            {
                let zones: Vec<_> = zi
                    .zones
                    .iter()
                    .zip(recomputed)
                    .map(|(z, r)| (z.managed, z.high, r))
                    .collect();
                assert_eq!(
                    k.var("totalreserve_pages"),
                    Some(totalreserve(&zones)),
                    "{}",
                    run.name
                );
            }
        }
    }
    assert!(
        checked_reserves >= 8,
        "the workload runs dump zoneinfo after reading the ratios"
    );
}

/// meminfo totals are the kernel's totalram/totalhigh, zoneinfo's managed pages add up to
/// totalram, and min_free_kbytes is the variable's value.
#[test]
fn totals_match_kinspect() {
    for run in runs() {
        let Some(k) = &run.kinspect else { continue };
        let zi = &run.zoneinfo[0];
        let managed: u64 = zi.zones.iter().map(|z| z.managed).sum();
        assert_eq!(k.var("_totalram_pages"), Some(managed), "{}", run.name);
        let mi = &run.meminfo[0];
        assert_eq!(
            mi.get("MemTotal"),
            k.var("_totalram_pages").map(|p| p * 4),
            "{}",
            run.name
        );
        assert_eq!(
            mi.get("HighTotal"),
            k.var("_totalhigh_pages").map(|p| p * 4),
            "{}",
            run.name
        );
        assert_eq!(
            run.sysctl_values("/proc/sys/vm/min_free_kbytes").unwrap(),
            k.var("min_free_kbytes").map(|v| vec![v as i64]),
            "{}",
            run.name
        );
    }
}

/// Every /proc/sys/vm file prints as proc_dointvec does; runs that dump them all match
/// `VmSysctlSnapshot::files()`.
#[test]
fn sysctl_files_round_trip() {
    let mut full = 0;
    for run in runs() {
        for s in run
            .sections
            .iter()
            .filter(|s| s.path.starts_with("/proc/sys/vm/"))
        {
            let values = run.sysctl_values(&s.path).unwrap().unwrap();
            assert_eq!(format_dointvec(&values), s.text, "{} {}", run.name, s.path);
        }
        let one = |name: &str| -> Option<i64> {
            run.sysctl_values(&format!("/proc/sys/vm/{name}"))
                .unwrap()
                .and_then(|v| v.first().copied())
        };
        let Some(ratio) = run
            .sysctl_values("/proc/sys/vm/lowmem_reserve_ratio")
            .unwrap()
        else {
            continue;
        };
        let (Some(stat_interval), Some(min_free)) = (one("stat_interval"), one("min_free_kbytes"))
        else {
            continue;
        };
        let int = |name: &str| {
            one(name)
                .map(|v| v as i32)
                .unwrap_or_else(|| panic!("{} lacks {name}", run.name))
        };
        let snap = VmSysctlSnapshot {
            min_free_kbytes: min_free as i32,
            lowmem_reserve_ratio: ratio.iter().map(|&r| r as i32).collect(),
            watermark_scale_factor: int("watermark_scale_factor"),
            watermark_boost_factor: int("watermark_boost_factor"),
            percpu_pagelist_high_fraction: int("percpu_pagelist_high_fraction"),
            overcommit_memory: int("overcommit_memory"),
            overcommit_ratio: int("overcommit_ratio"),
            admin_reserve_kbytes: int("admin_reserve_kbytes") as u64,
            user_reserve_kbytes: int("user_reserve_kbytes") as u64,
            extfrag_threshold: int("extfrag_threshold"),
            stat_interval_secs: stat_interval as i32,
        };
        for (path, text) in snap.files() {
            assert_eq!(
                run.section(path),
                Some(text.as_str()),
                "{} {path}",
                run.name
            );
        }
        full += 1;
    }
    assert!(full >= 8);
}
