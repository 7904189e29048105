//! `trace`, `sweep` and determinism: the trace read back by a parser of ftrace's text
//! format and checked against the kernel's own counters; the shards of a sweep together
//! are the whole sweep; the same scenario and seed give the same bytes.

use std::collections::BTreeMap;
use std::path::PathBuf;

fn scenario(stem: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(format!("../../scenarios/{stem}.toml"))
        .display()
        .to_string()
}

fn run(args: &[&str]) -> String {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = highmem::cli::run(args.iter().copied(), &mut out, &mut err);
    assert_eq!(code, 0, "{args:?}: {}", String::from_utf8_lossy(&err));
    String::from_utf8(out).expect("utf-8")
}

/// One event line of an ftrace text trace.
#[derive(Debug)]
struct Ev {
    task: String,
    pid: u32,
    cpu: usize,
    ts: f64,
    name: String,
    fields: BTreeMap<String, String>,
}

/// Parse the `trace` file format: `#` comment lines, then
/// `TASK-PID [CPU] FLAGS TIMESTAMP: EVENT: FIELDS`, fields as `key=value` or `key:value`.
fn parse_ftrace(text: &str) -> (BTreeMap<String, String>, Vec<Ev>) {
    let mut header = BTreeMap::new();
    let mut evs = Vec::new();
    for line in text.lines() {
        if let Some(c) = line.strip_prefix('#') {
            if let Some(t) = c.trim().strip_prefix("tracer: ") {
                header.insert("tracer".to_string(), t.to_string());
            }
            if let Some(p) = c.split("#P:").nth(1) {
                header.insert("cpus".to_string(), p.trim().to_string());
            }
            continue;
        }
        let (left, rest) = line.split_once(" [").expect("[CPU]");
        let (task, pid) = left.trim().rsplit_once('-').expect("TASK-PID");
        let (cpu, rest) = rest.split_once("] ").expect("CPU]");
        let mut parts = rest.trim_start().splitn(2, ' ');
        let flags = parts.next().expect("flags");
        assert_eq!(flags.len(), 5, "{line}");
        let rest = parts.next().expect("timestamp").trim_start();
        let (ts, rest) = rest.split_once(": ").expect("TIMESTAMP:");
        let (name, fields) = rest.split_once(": ").expect("EVENT:");
        let mut f = BTreeMap::new();
        let mut key = String::new();
        // Values may hold spaces (`reason:local shootdown (2)`): a token without a
        // separator continues the previous value.
        for tok in fields.split(' ') {
            let sep = tok.find(['=', ':']);
            match sep {
                Some(i) if !tok[..i].is_empty() && !tok[..i].contains('(') => {
                    key = tok[..i].to_string();
                    f.insert(key.clone(), tok[i + 1..].to_string());
                }
                _ => {
                    let v = f.entry(key.clone()).or_default();
                    v.push(' ');
                    v.push_str(tok);
                }
            }
        }
        evs.push(Ev {
            task: task.to_string(),
            pid: pid.parse().expect("pid"),
            cpu: cpu.trim().parse().expect("cpu"),
            ts: ts.trim().parse().expect("timestamp"),
            name: name.to_string(),
            fields: f,
        });
    }
    (header, evs)
}

fn count(evs: &[Ev], name: &str) -> u64 {
    evs.iter().filter(|e| e.name == name).count() as u64
}

fn summary(stem: &str) -> serde_json::Value {
    let out = run(&["highmem", "run", &scenario(stem), "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("run JSON");
    v["result"].clone()
}

#[test]
fn the_trace_parses_back_and_agrees_with_the_kernel_counters() {
    let text = run(&["highmem", "trace", &scenario("user-processes")]);
    let (header, evs) = parse_ftrace(&text);
    assert_eq!(header["tracer"], "nop");
    assert_eq!(header["cpus"], "1");
    assert!(
        evs.windows(2).all(|w| w[0].ts < w[1].ts),
        "timestamps increase"
    );
    assert!(evs.iter().all(|e| e.cpu == 0));
    let s = summary("user-processes");
    // Every fault of this scenario comes from a user access (populate found its PTEs).
    assert_eq!(
        count(&evs, "page_fault_user"),
        s["page_faults"].as_u64().unwrap()
    );
    let f = evs.iter().find(|e| e.name == "page_fault_user").unwrap();
    assert!(f.fields["address"].starts_with("0x"));
    assert!(f.fields.contains_key("error_code"));
    assert_eq!((f.task.as_str(), f.pid), ("sh", 1));
    let a = evs.iter().find(|e| e.name == "mm_page_alloc").unwrap();
    for k in ["page", "pfn", "order", "migratetype", "gfp_flags"] {
        assert!(a.fields.contains_key(k), "{k}: {a:?}");
    }
    let t = evs.iter().find(|e| e.name == "tlb_flush").unwrap();
    assert_eq!(t.fields["reason"], "flush on task switch (0)");

    // kmaps: one event per kmap() the pkmap counters count; -e keeps only that event.
    let text = run(&[
        "highmem",
        "trace",
        &scenario("kmap-pool-exhaustion"),
        "-e",
        "highmem:kmap",
    ]);
    let (_, evs) = parse_ftrace(&text);
    assert!(evs.iter().all(|e| e.name == "kmap"));
    let s = summary("kmap-pool-exhaustion");
    assert_eq!(evs.len() as u64, s["kmaps"].as_u64().unwrap());
    assert_eq!(evs.len(), 512);
}

#[test]
fn two_shards_give_exactly_the_lines_of_the_whole_sweep() {
    let f = scenario("kmap-deadlock");
    let sweep = |extra: &[&str]| {
        let mut a = vec![
            "highmem",
            "sweep",
            f.as_str(),
            "--set",
            "seed=0,1,2,3,4",
            "--set",
            "cpus=2,3",
        ];
        a.extend_from_slice(extra);
        run(&a)
    };
    let whole = sweep(&[]);
    assert_eq!(whole.lines().count(), 10);
    let one = sweep(&["--shard", "1/2"]);
    let two = sweep(&["--shard", "2/2"]);
    let mut joined: Vec<&str> = one.lines().chain(two.lines()).collect();
    let mut all: Vec<&str> = whole.lines().collect();
    joined.sort();
    all.sort();
    assert_eq!(joined, all);
    assert_eq!(sweep(&["--jobs", "2"]), whole, "threads keep grid order");
    for l in whole.lines() {
        let v: serde_json::Value = serde_json::from_str(l).expect("JSON line");
        assert!(v["result"]["stopped"].is_string(), "{l}");
    }
}

#[test]
fn same_scenario_and_seed_same_bytes() {
    let f = scenario("kmap-deadlock");
    for args in [
        vec!["highmem", "run", f.as_str(), "--seed", "3"],
        vec!["highmem", "run", f.as_str(), "--seed", "3", "--json"],
        vec![
            "highmem",
            "trace",
            f.as_str(),
            "--seed",
            "3",
            "-e",
            "highmem",
        ],
    ] {
        assert_eq!(run(&args), run(&args), "{args:?}");
    }
    let runs: Vec<String> = (0..6)
        .map(|s| run(&["highmem", "run", f.as_str(), "--seed", &s.to_string()]))
        .collect();
    assert!(
        runs.iter().any(|r| r.contains("deadlock")),
        "no seed deadlocked"
    );
    assert!(
        runs.windows(2).any(|w| w[0] != w[1]),
        "seeds change the interleaving"
    );
}
