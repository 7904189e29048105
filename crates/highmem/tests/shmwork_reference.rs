//! `highmem shmwork` on the reference workloads' machine (8 GiB, PAE, 512 MiB segment)
//! against the real kernel's runs in ../shared/reference/work-*.txt: the child's VmPTE,
//! PageTables / LowFree / HighFree at every PROGRESS point, pgfault, and with
//! `userpte=nohigh` the number of children done when the OOM killer fires.

use highmem::reference::{reference_dir, RefRun};
use std::collections::BTreeMap;

fn cli(args: &[&str]) -> String {
    let mut argv = vec!["highmem"];
    argv.extend_from_slice(args);
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = highmem::cli::run(argv, &mut out, &mut err);
    assert_eq!(code, 0, "{}", String::from_utf8_lossy(&err));
    String::from_utf8(out).unwrap()
}

fn fields(line: &str) -> (String, BTreeMap<String, i64>) {
    let mut it = line.split_whitespace();
    let tag = it.next().unwrap().to_string();
    let f = it
        .filter_map(|kv| kv.split_once('='))
        .filter_map(|(k, v)| v.parse().ok().map(|v| (k.to_string(), v)))
        .collect();
    (tag, f)
}

fn progress(out: &str) -> Vec<BTreeMap<String, i64>> {
    out.lines()
        .filter(|l| l.starts_with("PROGRESS "))
        .map(|l| fields(l).1)
        .collect()
}

fn section<'a>(out: &'a str, name: &str) -> Vec<&'a str> {
    let begin = format!("=====BEGIN {name}=====");
    let end = format!("=====END {name}=====");
    out.lines()
        .skip_while(|l| *l != begin)
        .skip(1)
        .take_while(|l| *l != end)
        .collect()
}

fn within(what: &str, model: i64, real: i64, tol: f64) {
    let d = (model - real).abs() as f64 / (real.abs().max(1)) as f64;
    assert!(
        d <= tol,
        "{what}: model {model}, real {real} ({:.2} %)",
        d * 100.0
    );
}

fn check_progress(out: &str, real: &RefRun) {
    let model = progress(out);
    assert!(!real.progress.is_empty());
    for rp in &real.progress {
        let n = rp.int("n").unwrap();
        let Some(mp) = model.iter().find(|m| m["n"] == n) else {
            continue;
        };
        for key in ["PageTables", "LowFree", "HighFree"] {
            within(&format!("n={n} {key}"), mp[key], rp.int(key).unwrap(), 0.02);
        }
        let vmpte = rp.int("VmPTE_child1").unwrap();
        assert!(
            (mp["VmPTE_child1"] - vmpte).abs() <= 4,
            "n={n} VmPTE_child1"
        );
    }
}

#[test]
fn read_touches_50_children_match_the_real_run() {
    let real = RefRun::load(reference_dir().join("work-pae-8192M-S512-N50.txt")).unwrap();
    let out = cli(&[
        "shmwork", "--pae", "--ram", "8192M", "512", "50", "r", "--every", "10",
    ]);
    check_progress(&out, &real);
    assert_eq!(progress(&out).len(), real.progress.len());
    assert!(out.contains("SHMWORK children_done=50 oom=0"));
    // The child's /proc/PID/status and maps.
    let name = out
        .lines()
        .find(|l| l.starts_with("=====BEGIN /proc/") && l.ends_with("/status====="))
        .unwrap()
        .trim_start_matches("=====BEGIN ")
        .trim_end_matches("=====")
        .to_string();
    // The child's pid is the real one (REFERENCE_PROGRAM_PID: the pids the boot spent).
    let real_name = std::fs::read_to_string(&real.path)
        .unwrap()
        .lines()
        .find(|l| l.starts_with("=====BEGIN /proc/") && l.ends_with("/status====="))
        .map(|l| {
            l.trim_start_matches("=====BEGIN ")
                .trim_end_matches("=====")
                .to_string()
        })
        .unwrap();
    assert_eq!(name, real_name);
    let status = section(&out, &name);
    let real_status: Vec<&str> = real.section(&real_name).unwrap().lines().collect();
    for key in [
        "VmPTE:", "VmSize:", "VmData:", "VmStk:", "VmExe:", "VmLib:", "RssAnon:", "RssFile:",
    ] {
        let m = status.iter().find(|l| l.starts_with(key)).unwrap();
        let r = real_status.iter().find(|l| l.starts_with(key)).unwrap();
        assert_eq!(m, r, "{key}");
    }
    // RssShmem: the segment and the binary's pages on the rootfs the child maps (fault-around
    // windows, the PT_GNU_RELRO page fork copies), as the mm's counter shows them (the last
    // faults' counts still in the task: SPLIT_RSS_COUNTING). Within a page: the real
    // child's fault count moves by one with where ASLR put the stack.
    let kb = |lines: &[&str], key: &str| -> i64 {
        let l = lines.iter().find(|l| l.starts_with(key)).unwrap();
        l[key.len()..]
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let shmem = (kb(&status, "RssShmem:"), kb(&real_status, "RssShmem:"));
    assert!((shmem.0 - shmem.1).abs() <= 4, "RssShmem {shmem:?}");
    // Memory used per child (every zone's free and pcp pages, first child to last):
    // within a page a child.
    let zones = |p: &BTreeMap<String, i64>| -> i64 {
        ["DMA", "Normal", "HighMem"]
            .iter()
            .map(|z| p[&format!("{z}_free_pages")] + p[&format!("{z}_pcp_pages")])
            .sum::<i64>()
            * 4
    };
    let (mp, rp) = (progress(&out), progress_of(&real));
    let used = |v: &[BTreeMap<String, i64>]| zones(&v[1]) - zones(v.last().unwrap());
    let kids = rp.last().unwrap()["n"] - rp[1]["n"];
    let per_child = (used(&mp) - used(&rp)).abs() as f64 / kids as f64;
    assert!(
        per_child <= 4.0,
        "used by {kids} children: model {} kB, real {} kB",
        used(&mp),
        used(&rp)
    );
    let maps = section(&out, &name.replace("status", "maps"));
    let real_maps: Vec<&str> = real.section("/proc/97/maps").unwrap().lines().collect();
    assert_eq!(maps, real_maps);
    // pgfault: one fault per page per child plus the parent's populate, and the
    // program's own faults (within 0.1 %: the boot's userspace is not modelled).
    let vmstat = section(&out, "/proc/vmstat");
    let pgfault: i64 = vmstat
        .iter()
        .find_map(|l| l.strip_prefix("pgfault "))
        .unwrap()
        .parse()
        .unwrap();
    let real_pgfault = real.vmstat.last().unwrap().get("pgfault").unwrap() as i64;
    within("pgfault", pgfault, real_pgfault, 0.001);
    check_lru(&out, &real_text(&real));
}

/// The anon LRU lists after the children and after their kill, on the machine and
/// userspace of the reference: the segment the children read on the inactive list, the
/// binary pages their exits marked on the active one, and `pgactivate` (the boot's and the
/// exec's read of the binary's first page) exactly. Active(anon) within 8 pages (a real
/// child maps five binary pages more), Inactive(anon) less AnonPages within 16 (a batch
/// of 15 still to be counted).
fn check_lru(out: &str, real: &str) {
    let blocks = |text: &str, tag: &str| -> BTreeMap<String, i64> {
        let after = &text[text.find(&format!("\n{tag} ")).expect(tag)..];
        section(after, "/proc/meminfo")
            .iter()
            .filter_map(|l| {
                let (k, v) = l.split_once(':')?;
                Some((k.to_string(), v.split_whitespace().next()?.parse().ok()?))
            })
            .collect()
    };
    for tag in ["FINAL", "AFTERKILL"] {
        let (m, r) = (blocks(out, tag), blocks(real, tag));
        let act = (m["Active(anon)"], r["Active(anon)"]);
        assert!((act.0 - act.1).abs() <= 32, "{tag} Active(anon) {act:?}");
        let ina = |b: &BTreeMap<String, i64>| b["Inactive(anon)"] - b["AnonPages"];
        let ina = (ina(&m), ina(&r));
        assert!(
            (ina.0 - ina.1).abs() <= 64,
            "{tag} Inactive(anon) less AnonPages {ina:?}"
        );
    }
    let key = "pgactivate ";
    let pga = (
        last_value(out, "/proc/vmstat", key),
        last_value(real, "/proc/vmstat", key),
    );
    assert_eq!(pga.0, pga.1, "pgactivate");
}

/// The real run's PROGRESS lines as the model's are read.
fn real_text(real: &RefRun) -> String {
    std::fs::read_to_string(&real.path).unwrap()
}

/// The last value of `key` in the last `name` dump (a `key value` line: vmstat; or
/// `key: value`: zoneinfo's node lines).
fn last_value(text: &str, name: &str, key: &str) -> Option<i64> {
    let begin = format!("=====BEGIN {name}=====");
    let last = &text[text.rfind(&begin)? + begin.len()..];
    last.lines()
        .take_while(|l| !l.starts_with("=====END"))
        .filter_map(|l| l.trim().strip_prefix(key))
        .filter_map(|v| v.trim_start_matches(':').trim().parse().ok())
        .last()
}

/// kswapd as the real run shows it after the OOM kills: it spun to the 16th failure on
/// the imbalanced node (pageoutrun, the premature wakeups), the node is unreclaimable, and
/// every OOM report says so with no watermark boost left.
fn check_kswapd(out: &str, real: &str) {
    for key in [
        "pageoutrun ",
        "kswapd_high_wmark_hit_quickly ",
        "compact_daemon_wake ",
    ] {
        let m = last_value(out, "/proc/vmstat", key);
        assert_eq!(m, last_value(real, "/proc/vmstat", key), "{key}");
    }
    let key = "node_unreclaimable";
    let m = last_value(out, "/proc/zoneinfo", key);
    assert_eq!(m, last_value(real, "/proc/zoneinfo", key), "{key}");
    for text in [out, real] {
        assert!(text.contains("invoked oom-killer"));
        assert!(text.contains("all_unreclaimable? yes"));
        assert!(!text.contains("all_unreclaimable? no"));
        let boosts: Vec<&str> = text
            .split(" boost:")
            .skip(1)
            .filter(|s| !s.starts_with("0kB"))
            .collect();
        assert!(boosts.is_empty(), "a boosted zone in an OOM report");
    }
}

fn progress_of(real: &RefRun) -> Vec<BTreeMap<String, i64>> {
    let text = std::fs::read_to_string(&real.path).unwrap();
    progress(&text)
}

/// The reference's OOM run and the model's of the same command.
fn nohigh_runs() -> (RefRun, String) {
    let real =
        RefRun::load(reference_dir().join("work-pae-8192M-S512-N1000-userpte-nohigh.txt")).unwrap();
    let out = cli(&[
        "shmwork",
        "--pae",
        "--ram",
        "8192M",
        "--append",
        "userpte=nohigh",
        "512",
        "1000",
        "p",
        "--every",
        "50",
    ]);
    (real, out)
}

#[test]
fn userpte_nohigh_runs_out_of_lowmem_where_the_real_kernel_does() {
    let (real, out) = nohigh_runs();
    check_progress(&out, &real);
    check_kswapd(&out, &real_text(&real));
    // The first OOM report's Mem-Info: the segment mapped by 622 children is mapped:
    // once (131072 pages), plus the binaries (within 128 pages: the boot's userspace).
    let mapped = |text: &str| -> i64 {
        text.split(" mapped:")
            .skip(1)
            .find_map(|v| {
                let end = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
                v[..end].parse().ok()
            })
            .expect("an OOM report's mapped:")
    };
    let (m, r) = (mapped(&out), mapped(&real_text(&real)));
    assert!((m - r).abs() <= 128, "mapped: model {m} real {r}");
    // Its LRU lists: the populated segment active (GUP's FOLL_TOUCH), the children's
    // anonymous pages inactive; within a batch of 15 pages and the five binary pages.
    let report = |text: &str, key: &str| -> i64 {
        let v = &text[text
            .find(&format!("\n{key}:"))
            .or_else(|| text.find(&format!(" {key}:")))
            .expect(key)
            + key.len()
            + 2..];
        let end = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
        v[..end].parse().expect(key)
    };
    for (key, tol) in [("active_anon", 8), ("inactive_anon", 32)] {
        let (m, r) = (report(&out, key), report(&real_text(&real), key));
        assert!((m - r).abs() <= tol, "OOM report {key}: model {m} real {r}");
    }
    let done = |text: &str| -> i64 {
        let l = text
            .lines()
            .find(|l| l.starts_with("SHMWORK children_done="))
            .unwrap();
        fields(l).1["children_done"]
    };
    within(
        "children done at OOM",
        done(&out),
        done(&real_text(&real)),
        0.02,
    );
    assert!(out.contains("oom=1"));
    assert!(out.lines().any(|l| l.starts_with("OOM-EVENT child ")));
}

#[test]
fn bad_input_is_a_usage_error() {
    for args in [
        vec!["shmwork", "--pae", "--ram", "1G", "16", "2", "x"],
        vec!["shmwork", "--pae", "--ram", "1G", "0", "2"],
        vec!["shmwork", "--pae", "--ram", "1G", "1500K", "2"],
        vec!["shmwork", "--pae", "--ram", "1G", "lots", "2"],
    ] {
        let mut argv = vec!["highmem"];
        argv.extend_from_slice(&args);
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = highmem::cli::run(argv, &mut out, &mut err);
        assert_eq!(code, 2, "{args:?}: {}", String::from_utf8_lossy(&err));
        assert!(String::from_utf8_lossy(&err).starts_with("highmem: error: "));
    }
}

#[test]
fn a_small_run_prints_the_programs_lines() {
    let out = cli(&["shmwork", "--ram", "1G", "8", "3", "w", "--every", "2"]);
    let tags: Vec<&str> = out
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|t| ["SHMWORK", "PROGRESS", "FINAL", "AFTERKILL"].contains(t))
        .collect();
    assert_eq!(
        tags,
        [
            "SHMWORK",
            "SHMWORK",
            "PROGRESS",
            "PROGRESS",
            "PROGRESS",
            "PROGRESS",
            "FINAL",
            "SHMWORK",
            "SHMWORK",
            "AFTERKILL"
        ]
    );
    assert!(out.contains("t=0.0s"));
    assert!(out.contains(" rw-s 00000000 00:01 0 "));
    for f in [
        "meminfo",
        "zoneinfo",
        "buddyinfo",
        "pagetypeinfo",
        "slabinfo",
        "vmstat",
    ] {
        assert!(out.contains(&format!("=====BEGIN /proc/{f}=====")), "{f}");
    }
}

/// The children the OOM killer took, by their index in the program's loop: each kill's
/// "Out of memory: Killed process PID" line (the real console shows the log twice), the
/// pid turned into an index with an OOM-EVENT line's pair (children get consecutive pids).
fn oom_victims(text: &str) -> Vec<i64> {
    let ev = text
        .lines()
        .find_map(|l| l.strip_prefix("OOM-EVENT child "))
        .expect("an OOM-EVENT line");
    let (idx, rest) = ev.split_once(" (pid ").unwrap();
    let pid = rest.split(')').next().unwrap();
    let offset = pid.parse::<i64>().unwrap() - idx.parse::<i64>().unwrap();
    let mut v: Vec<i64> = text
        .lines()
        .filter_map(|l| l.split("Out of memory: Killed process ").nth(1))
        .map(|r| r.split(' ').next().unwrap().parse::<i64>().unwrap() - offset)
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// The reports `dump_header` printed (the real console shows the log twice: its lines
/// count once per timestamp; the model's log has none and shows once).
fn oom_reports(text: &str) -> usize {
    let (stamped, plain): (Vec<&str>, Vec<&str>) = text
        .lines()
        .filter(|l| l.contains(" invoked oom-killer: "))
        .partition(|l| l.starts_with('['));
    let mut stamped = stamped;
    stamped.sort_unstable();
    stamped.dedup();
    stamped.len() + plain.len()
}

/// Direct reclaim drains the per-CPU lists only after progress, and after the shrinker
/// took the children's /proc entries (one pass, before the first kill) it has none: so every victim's page tables stay in
/// the pcp lists, which the watermark check does not count, and the killer goes on until
/// the victims whose page tables came from DMA push that zone's buddy count over its
/// watermark. The same children die as in the real run, the same reports are printed
/// (rate limited), and FINAL shows the stranded pages.
#[test]
fn userpte_nohigh_oom_kills_the_real_victims_and_strands_their_page_tables() {
    let (real, out) = nohigh_runs();
    let real = real_text(&real);
    let victims = oom_victims(&out);
    assert!(victims.len() > 1, "{victims:?}");
    assert_eq!(victims, oom_victims(&real));
    assert_eq!(oom_reports(&out), oom_reports(&real));
    let key = "oom_kill ";
    let m = last_value(&out, "/proc/vmstat", key);
    assert_eq!(m, Some(victims.len() as i64));
    assert_eq!(m, last_value(&real, "/proc/vmstat", key));
    // The shrinker's pass over the children's /proc entries before the first kill: about
    // one object scanned per child (the storm's reclaims find little more).
    let key = "slabs_scanned ";
    let (m, r) = (
        last_value(&out, "/proc/vmstat", key),
        last_value(&real, "/proc/vmstat", key),
    );
    within("slabs_scanned", m.unwrap(), r.unwrap(), 0.05);
    let fin = |text: &str| {
        let l = text.lines().find(|l| l.starts_with("FINAL ")).unwrap();
        fields(l).1
    };
    let (mf, rf) = (fin(&out), fin(&real));
    for (key, tol) in [
        ("Normal_pcp_pages", 0.02),
        ("Normal_free_pages", 0.01),
        ("LowFree", 0.01),
        ("PageTables", 0.001),
        ("Slab", 0.01),
    ] {
        within(&format!("FINAL {key}"), mf[key], rf[key], tol);
    }
    // The first report's Normal zone: below its min watermark, its pcp list not drained.
    let first_normal = |text: &str| -> (i64, i64, i64) {
        let l = text
            .lines()
            .find(|l| l.contains("Normal free:"))
            .expect("Normal in an OOM report");
        let kb = |k: &str| -> i64 {
            let v = &l[l.find(&format!(" {k}:")).unwrap() + k.len() + 2..];
            v[..v.find("kB").unwrap()].parse().unwrap()
        };
        (kb("free"), kb("min"), kb("free_pcp"))
    };
    let (free, min, pcp) = first_normal(&out);
    let (rfree, rmin, rpcp) = first_normal(&real);
    assert!(
        free < min && rfree < rmin,
        "model {free}/{min}, real {rfree}/{rmin}"
    );
    assert!(pcp > 0 && rpcp > 0, "model pcp {pcp} kB, real {rpcp} kB");
}
