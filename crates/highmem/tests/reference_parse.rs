//! The reference parser on the real runs: every file loads, and what it extracts agrees with
//! the other places of the same file that state the same fact (QEMU command vs ORACLE-RUN,
//! console log vs dmesg, kinspect vs zoneinfo, pagetypeinfo vs zone spans…).

use highmem::reference::{list_runs, shared_dir, KernelFlavor, RefRun, WalkLine, BASE_APPEND};

fn runs() -> Vec<RefRun> {
    let paths = list_runs().expect("reference directory");
    assert!(
        paths.len() >= 10,
        "expected the reference runs in {}",
        shared_dir().display()
    );
    paths
        .iter()
        .map(|p| RefRun::load(p).unwrap_or_else(|e| panic!("{e}")))
        .collect()
}

#[test]
fn header_fields_agree_with_the_qemu_command() {
    for run in runs() {
        let stem = run
            .path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        assert_eq!(run.name, stem);
        let words: Vec<&str> = run.qemu_command.split_whitespace().collect();
        let arg = |flag: &str| {
            words
                .iter()
                .position(|w| *w == flag)
                .and_then(|i| words.get(i + 1))
                .copied()
        };
        assert_eq!(
            arg("-m"),
            Some(run.ram_mib.to_string().as_str()),
            "{}",
            run.name
        );
        assert_eq!(
            arg("-smp"),
            Some(run.smp.to_string().as_str()),
            "{}",
            run.name
        );
        assert!(run.append.starts_with(BASE_APPEND));
        assert_eq!(
            run.section("/proc/cmdline"),
            Some(format!("{}\n", run.append).as_str())
        );
        let image = if run.kernel == KernelFlavor::Pae {
            "vmlinuz-pae"
        } else {
            "vmlinuz-nopae"
        };
        assert_eq!(arg("-kernel"), Some(image));
    }
}

#[test]
fn extra_options_and_workload_fields() {
    let runs = runs();
    let vmalloc = runs
        .iter()
        .find(|r| r.name.contains("vmalloc256M"))
        .expect("vmalloc run");
    assert_eq!(vmalloc.extra_options, vec!["vmalloc=256M"]);
    for run in runs.iter().filter(|r| r.name.starts_with("work-")) {
        let work = run.work.as_ref().expect("ORACLE-WORK line");
        let opt = |k: &str| {
            run.extra_options
                .iter()
                .find_map(|o| o.strip_prefix(&format!("oracle.{k}=")))
        };
        assert_eq!(opt("n"), work.get("n").map(String::as_str));
        assert_eq!(opt("touch"), work.get("touch").map(String::as_str));
        assert!(run.progress.len() >= 6, "{}", run.name);
        let mut last_n = -1;
        for p in &run.progress {
            let n = p.int("n").expect("n=");
            assert!(n > last_n, "{} line {}", run.name, p.line);
            last_n = n;
            // PROGRESS takes LowFree and HighFree from the same meminfo read as MemFree.
            assert_eq!(
                p.int("LowFree").zip(p.int("HighFree")).map(|(l, h)| l + h),
                p.int("MemFree")
            );
        }
        assert_eq!(
            run.oom_events.is_empty(),
            !run.name.contains("nohigh"),
            "{}",
            run.name
        );
    }
}

#[test]
fn console_boot_log_is_the_start_of_dmesg() {
    for run in runs() {
        assert!(
            run.boot_log[0].starts_with("Linux version 6.1.0"),
            "{}",
            run.name
        );
        let cmdline = format!("Kernel command line: {}", run.append);
        assert!(run.boot_log.contains(&cmdline), "{}", run.name);
        // The console shows every line of the log at its level; dmesg has the debug ones too
        // (unless the log buffer wrapped, as the OOM reports of the nohigh run make it do).
        let dmesg = run.dmesg();
        if !dmesg
            .first()
            .is_some_and(|l| l.starts_with("Linux version"))
        {
            assert!(
                run.name.contains("nohigh"),
                "{}: dmesg lost its start",
                run.name
            );
            continue;
        }
        let mut it = dmesg.iter();
        for line in &run.boot_log {
            assert!(
                it.any(|d| d == line),
                "{}: {line:?} not in dmesg order",
                run.name
            );
        }
    }
}

#[test]
fn boot_lines_agree_with_zoneinfo_and_meminfo() {
    for run in runs() {
        let zi = &run.zoneinfo[0];
        let present: u64 = zi.zones.iter().map(|z| z.present).sum();
        let mem = run.memory_line.as_ref().expect("Memory: line");
        // mem_init_print_info: the total is physpages, i.e. present pages.
        assert_eq!(mem.total_kb, present * 4, "{}", run.name);
        assert_eq!(
            mem.highmem_kb,
            run.meminfo[0].get("HighTotal"),
            "{}",
            run.name
        );
        let total = run.total_pages().expect("zonelists line");
        assert!(total > 0 && total < present, "{}", run.name);
        let percpu = run.percpu.as_ref().expect("percpu line");
        assert_eq!(
            percpu.unit_size,
            percpu.pages_per_cpu * 4096,
            "{}",
            run.name
        );
    }
}

#[test]
fn zone_spans_chain_and_match_kinspect() {
    for run in runs() {
        for zi in &run.zoneinfo {
            let populated: Vec<_> = zi.zones.iter().filter(|z| z.populated()).collect();
            for pair in populated.windows(2) {
                let end = pair[0].start_pfn.unwrap_or_default() + pair[0].spanned;
                assert_eq!(
                    Some(end),
                    pair[1].start_pfn,
                    "{} line {}",
                    run.name,
                    pair[1].line
                );
            }
            for z in &zi.zones {
                assert!(
                    z.spanned >= z.present && z.present >= z.managed,
                    "{} line {}",
                    run.name,
                    z.line
                );
                assert_eq!(z.protection.len(), 4);
            }
            if let Some(k) = &run.kinspect {
                let high = zi.zone("HighMem").expect("HighMem zone");
                assert_eq!(high.start_pfn, k.var("max_low_pfn"), "{}", run.name);
                assert_eq!(
                    high.start_pfn.map(|s| s + high.spanned),
                    k.var("max_pfn"),
                    "{}",
                    run.name
                );
            }
        }
    }
}

#[test]
fn pageblock_counts_cover_each_zone_span() {
    for run in runs() {
        let order = if run.kernel.is_pae() { 9 } else { 10 };
        for (zi, p) in run.zoneinfo.iter().zip(&run.pagetypeinfo) {
            assert_eq!(p.pageblock_order, order, "{}", run.name);
            for b in &p.blocks {
                let zone = zi.zone(&b.zone).expect("zone in zoneinfo");
                let blocks: u64 = b.counts.iter().sum();
                assert_eq!(
                    blocks,
                    zone.spanned.div_ceil(p.pages_per_block),
                    "{} line {}",
                    run.name,
                    b.line
                );
            }
        }
    }
}

#[test]
fn kinspect_variables_and_walk() {
    for run in runs() {
        let Some(k) = &run.kinspect else {
            assert!(run.name.starts_with("work-"), "{} lacks kinspect", run.name);
            continue;
        };
        assert_eq!(k.pae, run.kernel.is_pae(), "{}", run.name);
        assert_eq!(k.release.ends_with("-pae"), run.kernel.is_pae());
        let max_low_pfn = k.var("max_low_pfn").expect("max_low_pfn");
        assert_eq!(
            k.var("high_memory"),
            Some(0xC000_0000 + (max_low_pfn << 12)),
            "{}",
            run.name
        );
        assert_eq!(k.var("nr_cpu_ids"), Some(u64::from(run.smp)));
        assert!(k.syms.contains_key("swapper_pg_dir") && k.var_addrs.contains_key("mem_map"));
        // The direct map starts at PAGE_OFFSET, phys 0, and runs up to high_memory.
        let direct: Vec<_> = k
            .mappings()
            .filter(|m| m.end <= k.var("high_memory").unwrap_or(0))
            .collect();
        assert_eq!(
            direct.first().map(|m| (m.start, m.phys)),
            Some((0xC000_0000, 0))
        );
        assert_eq!(direct.last().map(|m| m.end), k.var("high_memory"));
        let pgds = k
            .walk
            .iter()
            .filter(|l| matches!(l, WalkLine::Pgd { .. }))
            .count();
        assert_eq!(pgds, if run.kernel.is_pae() { 4 } else { 0 });
        let pkmap = k.tables().find(|t| {
            t.note
                .as_deref()
                .is_some_and(|n| n.contains("pkmap_page_table"))
        });
        assert_eq!(
            pkmap.map(|t| t.phys),
            k.pkmap_page_table_phys,
            "{}",
            run.name
        );
        let entries = if run.kernel.is_pae() { 512 } else { 1024 };
        assert!(k
            .tables()
            .all(|t| t.entries == entries && t.present <= entries));
    }
}

#[test]
fn meminfo_and_vmstat_dumps_are_complete() {
    for run in runs() {
        assert!(run.meminfo.len() >= 2, "{}", run.name);
        for m in &run.meminfo {
            assert_eq!(m.entries.len(), 57, "{} line {}", run.name, m.begin_line);
            assert!(m
                .entries
                .iter()
                .filter(|e| !e.kb)
                .all(|e| e.label.starts_with("HugePages_")));
        }
        let large = if run.kernel.is_pae() {
            "DirectMap2M"
        } else {
            "DirectMap4M"
        };
        assert!(run.meminfo[0].get(large).is_some(), "{}", run.name);
        for v in &run.vmstat {
            assert_eq!(
                v.entries.last().map(|(n, _)| n.as_str()),
                Some("nr_unstable")
            );
        }
    }
}
