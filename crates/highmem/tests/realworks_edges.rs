//! `highmem shmwork` against real runs where the program or the kernel gives up
//! (`tests/realworks/edges/`, see its README): a segment size that wraps the program's
//! 32-bit `size_t`, `shmget` refused by the overcommit heuristic, `shmat` with no gap
//! large enough, and the OOM killer with nothing it may kill. The model must print the
//! program's own failure lines, and where the kernel panics, the same report.

mod common;

struct Capture {
    name: String,
    text: String,
    ram: String,
    /// `oracle.s`, `oracle.n`, `oracle.every` of the kernel command line.
    s: u64,
    n: u32,
    every: u32,
    norandmaps: bool,
}

fn captures() -> Vec<Capture> {
    common::captures_in("realworks/edges")
        .iter()
        .map(|p| parse(p))
        .collect()
}

fn parse(p: &std::path::Path) -> Capture {
    let text = std::fs::read_to_string(p).expect("capture");
    let head: Vec<&str> = text.lines().take(2).collect();
    let kv = |line: &str, key: &str| -> String {
        line.split(|c: char| c.is_whitespace() || c == '"')
            .find_map(|w| w.strip_prefix(key))
            .unwrap_or_else(|| panic!("{key} in {line}"))
            .to_string()
    };
    assert!(
        head[0].contains("kernel=vmlinuz-pae"),
        "a PAE run: {}",
        head[0]
    );
    Capture {
        name: kv(head[0], "name="),
        ram: kv(head[0], "ram="),
        s: kv(head[1], "oracle.s=").parse().expect("S"),
        n: kv(head[1], "oracle.n=").parse().expect("N"),
        every: kv(head[1], "oracle.every=").parse().expect("every"),
        norandmaps: head[1].contains(" norandmaps"),
        text,
    }
}

/// The model's run of a capture: exit code, stdout, stderr.
fn model(c: &Capture) -> (i32, String, String) {
    model_of(c.s, c.n, c.every, &c.ram)
}

/// `highmem shmwork S N r --every E --ram RAM --pae`: exit code, stdout, stderr.
fn model_of(s: u64, n: u32, every: u32, ram: &str) -> (i32, String, String) {
    let (s, n, every) = (format!("{s}M"), n.to_string(), every.to_string());
    let args = [
        "highmem", "shmwork", &s, &n, "r", "--every", &every, "--ram", ram, "--pae",
    ];
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = highmem::cli::run(args.iter().copied(), &mut out, &mut err);
    let st = |v: Vec<u8>| String::from_utf8(v).expect("utf-8");
    (code, st(out), st(err))
}

/// The program's lines of the real console (no kernel timestamps).
fn program_lines(text: &str) -> Vec<&str> {
    text.lines().filter(|l| l.starts_with("SHMWORK ")).collect()
}

/// A kernel log line's text without its `[ seconds]` stamp.
fn untimed(l: &str) -> &str {
    match l.strip_prefix('[') {
        Some(r) => r.split_once("] ").map_or(l, |x| x.1),
        None => l,
    }
}

#[test]
fn the_programs_failure_lines_match_the_real_runs() {
    let mut seen = 0;
    for c in captures().iter().filter(|c| !c.norandmaps) {
        let real = program_lines(&c.text);
        let failed = real.iter().any(|l| l.contains(" failed: "));
        if !failed {
            continue;
        }
        seen += 1;
        let (code, out, err) = model(c);
        assert_eq!(code, 1, "{}: {err}", c.name);
        let mine: Vec<&str> = out.lines().filter(|l| l.starts_with("SHMWORK ")).collect();
        assert_eq!(mine, real, "{}", c.name);
        // The overcommit refusal's warning, pid aside (the real run's has kernel threads).
        let warn = |text: &str| -> Vec<String> {
            text.lines()
                .map(untimed)
                .filter(|l| l.starts_with("__vm_enough_memory: "))
                .map(|l| l.split(", ").skip(1).collect::<Vec<_>>().join(", "))
                .collect()
        };
        let log = common::dump(&out, "dmesg").expect("the model's console");
        let real_log = common::dump(&c.text, "dmesg").expect("the real dmesg");
        assert_eq!(warn(log), warn(real_log), "{}", c.name);
    }
    assert!(seen >= 3, "captures with a failed call: {seen}");
}

/// Top-down placement puts the segment right below `[vvar]`, so the largest that attaches
/// is the gap down to the heap. `norandmaps` fixes that gap (the pair of captures: one
/// size attaches, a MiB more does not); with randomisation the heap's start moves up by
/// up to 32 MiB (`arch_randomize_brk`) and mmap_base down by up to 2^8 pages
/// (`mmap_rnd_bits` on i386), and the model's layout is one such draw.
#[test]
fn the_largest_segment_that_attaches_is_the_real_one_within_randomisation() {
    let pair: Vec<Capture> = captures().into_iter().filter(|c| c.norandmaps).collect();
    assert_eq!(pair.len(), 2);
    let fits = pair
        .iter()
        .find(|c| !c.text.contains("shmat failed"))
        .expect("attached");
    let fails = pair
        .iter()
        .find(|c| c.text.contains("shmat failed"))
        .expect("refused");
    assert_eq!(fails.s, fits.s + 1);
    let real_gap =
        common::heap_to_vvar(common::dump(&fits.text, "/maps").expect("the child's maps"));
    assert_eq!(real_gap >> 20, fits.s, "the real pair brackets the gap");
    let (code, out, err) = model_of(64, 1, fits.every, &fits.ram);
    assert_eq!(code, 0, "{err}");
    let model_gap = common::heap_to_vvar(common::dump(&out, "/maps").expect("the model's maps"));
    const BRK_RANDOM: u64 = 0x0200_0000;
    const MMAP_RANDOM: u64 = (1 << 8) * 4096;
    assert!(
        model_gap <= real_gap && model_gap + BRK_RANDOM + MMAP_RANDOM >= real_gap,
        "model gap {model_gap:#x}, real gap without randomisation {real_gap:#x}"
    );
}

/// The parent (oom_score_adj -1000) populating a segment the size of the machine's RAM:
/// the OOM killer finds no task it may kill (the report's task table has the parent
/// alone) and the kernel panics, with the same report header, about as many pages in.
#[test]
fn the_oom_panic_matches_the_real_run() {
    let c = captures()
        .into_iter()
        .find(|c| c.text.contains("no killable processes"))
        .expect("the panic capture");
    let (code, out, err) = model(&c);
    assert_eq!(code, 1);
    let real: Vec<&str> = c.text.lines().map(untimed).collect();
    let log = common::dump(&out, "dmesg").expect("the model's console");
    let mine: Vec<&str> = log.lines().collect();
    for wanted in [
        "Out of memory and no killable processes...",
        "Kernel panic - not syncing: System is deadlocked on memory",
        "Kernel Offset: disabled",
    ] {
        assert!(real.contains(&wanted) && mine.contains(&wanted), "{wanted}");
    }
    assert!(err.contains("Kernel panic - not syncing: System is deadlocked on memory"));
    let header = |v: &[&str]| {
        v.iter()
            .find(|l| l.contains(" invoked oom-killer: "))
            .map(|l| l.to_string())
            .expect("the report")
    };
    assert_eq!(header(&mine), header(&real));
    // The task table: the same tasks (the parent alone), its RSS within 1 %.
    let table = |v: &[&str]| -> Vec<(String, i64)> {
        let at = v
            .iter()
            .position(|l| l.starts_with("[  pid  ]"))
            .expect("task table");
        v[at + 1..]
            .iter()
            .take_while(|l| l.starts_with('['))
            .map(|l| {
                let f: Vec<&str> = l.trim_start_matches('[').split_whitespace().collect();
                (f[f.len() - 1].to_string(), f[5].parse().expect("rss"))
            })
            .collect()
    };
    let (tm, tr) = (table(&mine), table(&real));
    assert_eq!(
        tm.iter().map(|t| &t.0).collect::<Vec<_>>(),
        tr.iter().map(|t| &t.0).collect::<Vec<_>>()
    );
    let (rm, rr) = (tm[0].1, tr[0].1);
    assert!(
        (rm - rr).abs() * 100 <= rr,
        "rss at the OOM: model {rm}, real {rr}"
    );
    assert!(!mine
        .iter()
        .any(|l| l.starts_with("Out of memory: Killed process")));
}
