//! The main job on a machine scaled down so it runs in seconds, keeping the structure of the
//! full one: low memory small enough (`highmem=` moves most of 512 MiB to high memory) that
//! the PTE pages of the backends exhaust it. Expectations come from the zone figures of a
//! booted kernel and the per-backend cost the run itself shows, not from constants.

use highmem::cli::run;
use highmem::mainjob::{run_variants, MainJobArgs, Sample, VariantRun};

const RAM: &str = "512M";
const APPEND: &str = "highmem=440M";
const SEGMENT_MIB: u64 = 16;

fn run_cli(args: &[&str]) -> (i32, String, String) {
    let mut out = Vec::new();
    let mut err = Vec::new();
    let code = run(args.iter().copied(), &mut out, &mut err);
    (
        code,
        String::from_utf8_lossy(&out).into_owned(),
        String::from_utf8_lossy(&err).into_owned(),
    )
}

/// The zones' figures after boot: (name, free pages, min watermark, protection row).
fn zones(variant: &str) -> Vec<(String, u64, u64, Vec<u64>)> {
    let (code, text, err) = run_cli(&[
        "highmem",
        "proc",
        "zoneinfo",
        "--ram",
        RAM,
        "--append",
        APPEND,
        "--variant",
        variant,
    ]);
    assert_eq!(code, 0, "{err}");
    let mut out: Vec<(String, u64, u64, Vec<u64>)> = Vec::new();
    for l in text.lines() {
        if let Some(name) = l.strip_prefix("Node 0, zone") {
            out.push((name.trim().to_string(), 0, 0, Vec::new()));
            continue;
        }
        let Some(z) = out.last_mut() else { continue };
        let t = l.trim();
        let num = |s: &str| s.trim().parse::<u64>().unwrap_or(0);
        if let Some(v) = t.strip_prefix("pages free") {
            z.1 = num(v);
        } else if let Some(v) = t.strip_prefix("min ") {
            z.2 = num(v);
        } else if let Some(v) = t.strip_prefix("protection:") {
            z.3 = v
                .trim_matches(|c| c == ' ' || c == '(' || c == ')')
                .split(',')
                .map(num)
                .collect();
        }
    }
    out
}

/// Low memory a GFP_KERNEL allocation can never take, kB: in each low zone, its min
/// watermark plus what it keeps back from allocations that could use the Normal zone.
fn lowmem_floor_kb(variant: &str) -> u64 {
    let zones = zones(variant);
    let normal = zones
        .iter()
        .position(|z| z.0 == "Normal")
        .expect("Normal zone");
    zones[..=normal]
        .iter()
        .map(|(_, _, min, prot)| (min + prot.get(normal).copied().unwrap_or(0)) * 4)
        .sum()
}

fn spec(variants: &str, backends: u32) -> highmem::mainjob::JobSpec {
    MainJobArgs {
        ram: Some(RAM.into()),
        append: Some(APPEND.into()),
        segment: Some(SEGMENT_MIB.to_string()),
        backends: Some(backends),
        variants: Some(variants.into()),
        ..MainJobArgs::default()
    }
    .spec()
    .expect("valid job")
}

/// Per backend, what the first `n` backends cost (kB): figure(0) - figure(n), over n.
fn per_backend(samples: &[Sample], n: usize, f: fn(&Sample) -> u64) -> f64 {
    (f(&samples[0]) as f64 - f(&samples[n]) as f64) / n as f64
}

fn within(actual: f64, expected: f64, frac: f64) -> bool {
    (actual - expected).abs() <= expected.abs() * frac
}

/// Backends the low memory holds at `cost` kB each, from the zone figures.
fn lowmem_capacity(r: &VariantRun, cost: f64) -> f64 {
    let floor = lowmem_floor_kb(&r.row.variant) as f64;
    (r.samples[0].low_free_kb as f64 - floor) / cost
}

/// Backends the OOM killer took before the run stopped, as many as the program noticed
/// (`OOM-EVENT child` lines; a failed fork ends the run before it looks).
fn killed(row: &highmem::mainjob::Row) -> u64 {
    let seen = row
        .stop
        .program
        .iter()
        .filter(|l| l.starts_with("OOM-EVENT child"))
        .count() as u64;
    assert!(row.oom_kills >= seen.max(1), "{row:?}");
    row.oom_kills
}

#[test]
fn page_tables_in_low_memory_stop_where_low_memory_runs_out_highpte_holds_more() {
    let runs: Vec<VariantRun> = run_variants(&spec("64GB,64GB-highpte", 3000))
        .into_iter()
        .map(|r| r.expect("variant runs"))
        .collect();
    let (low, high) = (&runs[0], &runs[1]);
    let pte_kb_per_backend = (SEGMENT_MIB << 20) / (2 << 20) * 4; // a PAE PTE page maps 2 MiB

    for r in &runs {
        let row = &r.row;
        // The kernel stopped it, in its own words, before the job's limit.
        assert!(row.backends < 3000, "{row:?}");
        assert!(
            row.stop
                .summary
                .starts_with("Out of memory: Killed process "),
            "{row:?}"
        );
        assert!(row.stop.kernel[0].contains(" invoked oom-killer: gfp_mask="));
        // One plot point per backend, from the populated segment on.
        assert_eq!(r.samples.len() as u32, row.backends + 1);
        // PageTables grows by the same amount per backend all along; at the stop, the
        // backends the OOM killer took (one or several, until the allocation got its
        // pages) have given theirs back.
        let pt = per_backend(&r.samples, 20, |s| s.page_tables_kb).abs();
        let alive = row.backends as f64 - killed(row) as f64;
        let expected = r.samples[0].page_tables_kb as f64 + pt * alive;
        assert!(
            within(row.page_tables_kb as f64, expected, 0.01),
            "{}: PageTables {} vs {expected}",
            row.variant,
            row.page_tables_kb
        );
        // It stopped where its low memory ran out: the backends the free low memory holds
        // at the per-backend cost of the first 20, above the zones' reserves (order-1
        // allocations may fail a little earlier, on fragmentation).
        let cost = per_backend(&r.samples, 20, |s| s.low_free_kb);
        let capacity = lowmem_capacity(r, cost);
        assert!(
            within(row.backends as f64, capacity, 0.08),
            "{}: {} backends, low memory holds {capacity:.0}",
            row.variant,
            row.backends
        );
        // Every page of the segment faulted once in each backend.
        let pages = (SEGMENT_MIB << 20) / 4096;
        assert!(row.pgfault >= u64::from(row.backends) * pages, "{row:?}");
    }

    // 64GB: the PTE pages are low memory; high memory holds the segment and the backends'
    // own user pages (what they and the parent copy on write: about 6 pages a backend, as the
    // real run with userpte=nohigh loses ~24 kB of HighFree a child).
    let cost_low = per_backend(&low.samples, 20, |s| s.low_free_kb);
    assert!(cost_low >= pte_kb_per_backend as f64, "{cost_low}");
    let high_used = low.samples[0].high_free_kb as f64 - low.row.high_free_kb as f64;
    let high_per_backend = high_used / (f64::from(low.row.backends) - killed(&low.row) as f64);
    assert!(
        (5.0 * 4.0..=8.0 * 4.0).contains(&high_per_backend),
        "64GB: {high_per_backend:.1} kB of high memory a backend"
    );
    assert_eq!(low.row.pte_kmaps, 0, "lowmem PTE pages need no kmap");

    // 64GB-highpte: the PTE pages come from high memory, low memory pays the rest only,
    // so it holds as many more backends as its per-backend low-memory cost is smaller.
    let cost_high = per_backend(&high.samples, 20, |s| s.low_free_kb);
    assert!(cost_low - cost_high >= pte_kb_per_backend as f64 * 0.9);
    let ratio = high.row.backends as f64 / low.row.backends as f64;
    assert!(ratio > 1.5, "{ratio}");
    // What moved out of low memory went to high memory, backend after backend.
    let high_cost = |r: &VariantRun| per_backend(&r.samples, 20, |s| s.high_free_kb);
    let moved = high_cost(high) - high_cost(low);
    assert!(
        within(moved, cost_low - cost_high, 0.1),
        "HighFree: {moved} kB more per backend, LowFree {} kB less",
        cost_low - cost_high
    );
    let high_used = (high.samples[0].high_free_kb - high.row.high_free_kb) as f64;
    // ... at the same rate all along (per-CPU lists make the first few backends noisy:
    // the rate is the first half's).
    // The OOM victims' pages went to the per-CPU lists, which HighFree does not count and
    // nothing drained (reclaim made no progress): at most what they held is missing.
    let half = high.row.backends as usize / 2;
    let rate = per_backend(&high.samples, half, |s| s.high_free_kb);
    let alive = f64::from(high.row.backends) - killed(&high.row) as f64;
    let (least, most) = (rate * alive, rate * f64::from(high.row.backends));
    assert!(
        high_used >= least * 0.97 && high_used <= most * 1.03,
        "HighFree fell {high_used} kB, {least}..{most} at the first half's rate"
    );
    // Each fault maps the highmem PTE page (kmap_atomic), and each unmap is an INVLPG.
    assert!(high.row.pte_kmaps >= high.row.pgfault / 2, "{:?}", high.row);
    assert!(high.row.invlpg >= high.row.pte_kmaps, "{:?}", high.row);
    assert_eq!((high.row.global_flushes, high.row.kmap_sleeps), (0, 0));
}

/// The 64-bit kernel has no low memory to run out of: page tables, kernel stacks, slab and
/// the children's pages come from one pool, so on the same machine it holds backends until
/// RAM is full, several times more than 64GB (page tables in the ~70 MiB of low memory).
#[test]
fn x86_64_holds_until_ram_is_full() {
    let runs: Vec<VariantRun> = run_variants(&spec("64GB,x86_64", 20000))
        .into_iter()
        .map(|r| r.expect("variant runs"))
        .collect();
    let (low, x64) = (&runs[0], &runs[1]);
    let row = &x64.row;
    assert!(row.backends < 20000, "{row:?}");
    assert!(
        row.stop
            .summary
            .starts_with("Out of memory: Killed process "),
        "{row:?}"
    );
    // No HighMem zone: MemFree is all there is, and no PTE page needed a kmap.
    assert_eq!(x64.samples[0].high_free_kb, 0);
    assert_eq!(row.pte_kmaps, 0);
    // It stopped where RAM ran out: the backends its free memory holds above the zones'
    // reserves at the cost of the first 200 (the floor of the allocations' highest zone,
    // Normal, is every zone's on x86_64). Not the first 20: the boot's runtime profile
    // leaves the per-CPU lists nearly drained (its remainder takes from them, as its
    // allocations come after the late frees), and refilling them in batches makes the
    // first backends look ~8 % dearer than the rest.
    let cost = per_backend(&x64.samples, 200, |s| s.low_free_kb);
    let capacity = lowmem_capacity(x64, cost);
    assert!(
        within(row.backends as f64, capacity, 0.05),
        "x86_64: {} backends, RAM holds {capacity:.0}",
        row.backends
    );
    // Four-level tables: per backend a PTE page per 2 MiB of segment, and the PMD pages.
    let pt = per_backend(&x64.samples, 20, |s| s.page_tables_kb).abs();
    let pte_kb = (SEGMENT_MIB << 20) / (2 << 20) * 4;
    assert!(pt >= pte_kb as f64 && pt <= (pte_kb + 6 * 4) as f64, "{pt}");
    let ratio = row.backends as f64 / low.row.backends as f64;
    assert!(
        ratio > 3.0,
        "x86_64 {} vs 64GB {}",
        row.backends,
        low.row.backends
    );
}

fn small_job(extra: &[&str]) -> Vec<String> {
    let mut args = vec![
        "highmem",
        "run",
        "--ram",
        RAM,
        "--append",
        APPEND,
        "--backends",
        "12",
    ];
    if !extra.contains(&"--segment") {
        args.extend_from_slice(&["--segment", "4"]);
    }
    args.extend_from_slice(extra);
    args.iter().map(|s| s.to_string()).collect()
}

#[test]
fn the_table_names_five_variants_in_order_and_the_output_is_the_same_every_run() {
    let dir = std::env::temp_dir().join(format!("highmem-mainjob-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let prefix = dir.join("plot");
    let prefix = prefix.to_str().expect("utf-8 path");
    let args = small_job(&["--plot", prefix]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, first, err) = run_cli(&args);
    assert_eq!(code, 0, "{err}");
    let png1 = std::fs::read(format!("{prefix}.png")).expect("PNG written");
    let svg1 = std::fs::read(format!("{prefix}.svg")).expect("SVG written");
    let (_, second, _) = run_cli(&args);
    assert_eq!(first, second, "same bytes every run");
    assert_eq!(png1, std::fs::read(format!("{prefix}.png")).expect("PNG"));
    assert_eq!(svg1, std::fs::read(format!("{prefix}.svg")).expect("SVG"));
    assert!(png1.starts_with(b"\x89PNG\r\n\x1a\n"));
    assert!(String::from_utf8_lossy(&svg1).contains("<svg"));

    let lines: Vec<&str> = first.lines().collect();
    assert!(
        lines[0].starts_with("# highmem: QEMU pc, 512 MiB RAM, 1 CPU; kernel debian-686 "),
        "{}",
        lines[0]
    );
    assert!(lines[0].contains("design linux-6.1"));
    let table: Vec<&str> = lines
        .iter()
        .skip_while(|l| !l.starts_with("variant "))
        .take(6)
        .copied()
        .collect();
    let names: Vec<&str> = table[1..]
        .iter()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(
        names,
        ["nohighmem", "4GB", "4GB-highpte", "64GB", "64GB-highpte"]
    );
    for row in &table[1..] {
        assert!(row.ends_with("none: all 12 backends run"), "{row}");
    }
    assert!(first.contains(&format!("wrote {prefix}.svg, {prefix}.png")));
    assert!(
        !first.contains("host time"),
        "no host times without --timing"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn json_has_the_table() {
    let args = small_job(&["--json", "--no-plot", "--variants", "4GB,64GB-highpte"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, out, err) = run_cli(&args);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    let rows = v["variants"].as_array().expect("rows");
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["variant"], "4GB");
    assert_eq!(rows[1]["variant"], "64GB-highpte");
    for r in rows {
        assert_eq!(r["backends"], 12);
        assert!(r["pgfault"].as_u64().is_some_and(|n| n >= 12 * 1024));
        assert!(r["low_free_kb"].as_u64().is_some_and(|n| n > 0));
    }
    // 2-level 4GB keeps PTE pages in low memory; 64GB-highpte maps its highmem ones.
    assert_eq!(rows[0]["pte_kmaps"], 0);
    assert!(rows[1]["pte_kmaps"].as_u64().is_some_and(|n| n > 0));
    assert!(v["header"][0]
        .as_str()
        .is_some_and(|h| h.starts_with("# highmem: ")));
    assert_eq!(v["files"], serde_json::json!([]));
}

#[test]
fn bad_options_are_usage_errors() {
    for (extra, what) in [
        (&["--variants", "128GB"][..], "unknown variant"),
        (&["--segment", "1500K"], "--segment 1500K"),
        (&["--jobs", "0"], "--jobs 0"),
    ] {
        let args = small_job(extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, out, err) = run_cli(&args);
        assert_eq!(code, 2, "{extra:?}: {err}");
        assert!(out.is_empty(), "{extra:?}");
        assert!(err.contains(what), "{extra:?}: {err}");
    }
    let (code, _, err) = run_cli(&[
        "highmem",
        "run",
        "scenarios/buddy-split-merge.toml",
        "--backends",
        "3",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("main job's options"), "{err}");
}
