//! `highmem layout` against the real boots in `reference/`: for each boot, run the command
//! with the same RAM, CPUs, kernel and extra command line, and compare its boot lines with
//! the console lines the real kernel printed up to init (timestamps stripped; the dmesg dump
//! that repeats the log later in the file is not used).

use highmem::reference::{list_runs, KernelFlavor, RefRun};

fn run(args: &[&str]) -> (i32, String, String) {
    let mut out = Vec::new();
    let mut err = Vec::new();
    let mut argv = vec!["highmem"];
    argv.extend_from_slice(args);
    let code = highmem::cli::run(argv, &mut out, &mut err);
    (
        code,
        String::from_utf8(out).expect("utf-8 stdout"),
        String::from_utf8(err).expect("utf-8 stderr"),
    )
}

/// Lines of the memory-layout part of the boot log that the model must reproduce.
fn is_layout_line(l: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "BIOS-provided physical RAM map:",
        "BIOS-e820: ",
        "user-defined physical RAM map:",
        "user: ",
        "last_pfn = ",
        "  mapped low ram: ",
        "  low ram: ",
        "Zone ranges:",
        "  DMA ",
        "  Normal ",
        "  HighMem ",
        "Movable zone start for each node",
        "Early memory node ranges",
        "  node ",
        "Initmem setup node ",
        "Malformed early option",
        "Reserving virtual address space above",
        "highmem size",
        "only ",
        "Warning",
        "Use a HIGHMEM",
        "ignoring highmem size",
        ".text .data .bss",
    ];
    PREFIXES.iter().any(|p| l.starts_with(p))
        || l.ends_with("MB HIGHMEM available.")
        || l.ends_with("MB LOWMEM available.")
}

/// A reference boot: the `highmem layout` arguments that replay it and its console log up
/// to init, timestamps stripped.
struct Boot {
    name: String,
    args: Vec<String>,
    console: Vec<String>,
}

fn boots() -> Vec<Boot> {
    let boots: Vec<Boot> = list_runs()
        .unwrap_or_else(|e| panic!("{e}"))
        .iter()
        .map(|p| {
            let run = RefRun::load(p).unwrap_or_else(|e| panic!("{e}"));
            let mut args = vec![
                "layout".to_string(),
                "--ram".to_string(),
                format!("{}M", run.ram_mib),
                "--cpus".to_string(),
                run.smp.to_string(),
                "--append".to_string(),
                run.append.clone(),
            ];
            if run.kernel == KernelFlavor::Pae {
                args.push("--pae".to_string());
            }
            Boot {
                name: run.name,
                args,
                console: run.boot_log,
            }
        })
        .collect();
    assert!(boots.len() >= 8, "reference boots missing");
    boots
}

#[test]
fn boot_lines_match_every_reference_boot() {
    for b in boots() {
        let args: Vec<&str> = b.args.iter().map(String::as_str).collect();
        let (code, out, err) = run(&args);
        assert_eq!(code, 0, "{}: {err}", b.name);
        // The first line is highmem's own header, naming the machine.
        assert!(out.starts_with("# highmem: QEMU pc, "), "{}", b.name);
        let ours: Vec<&str> = out
            .lines()
            .skip(1)
            .take_while(|l| *l != "virtual kernel memory layout:")
            .collect();
        let theirs: Vec<&str> = b
            .console
            .iter()
            .map(String::as_str)
            .filter(|l| is_layout_line(l))
            .collect();
        assert!(theirs.len() >= 20, "{}: reference lines not found", b.name);
        let ours_filtered: Vec<&str> = ours.iter().copied().filter(|l| is_layout_line(l)).collect();
        assert_eq!(ours_filtered, theirs, "{}", b.name);
        // Nothing we print is absent from the real console, and the order is the same.
        let mut at = 0;
        for line in &ours {
            match b.console[at..].iter().position(|c| c == line) {
                Some(i) => at += i + 1,
                None => panic!("{}: '{line}' is not in the real console (in order)", b.name),
            }
        }
    }
}

#[test]
fn virtual_layout_block_is_consistent_with_the_boot_lines() {
    let (code, out, _) = run(&["layout", "--ram", "4096M", "--pae"]);
    assert_eq!(code, 0);
    let block: Vec<&str> = out
        .lines()
        .skip_while(|l| *l != "virtual kernel memory layout:")
        .collect();
    assert_eq!(block.len(), 9, "{out}");
    assert_eq!(
        block[3],
        "    pkmap   : 0xff000000 - 0xff200000   (2048 kB)"
    );
    assert_eq!(
        block[4],
        "    vmalloc : 0xf77fe000 - 0xfeffe000   ( 120 MB)"
    );
    assert_eq!(
        block[5],
        "    lowmem  : 0xc0000000 - 0xf6ffe000   ( 879 MB)"
    );
    // Non-PAE, no HIGHMEM line missing: pkmap is still there (HIGHMEM4G).
    let (_, out, _) = run(&["layout", "--ram", "1G"]);
    assert!(
        out.contains("    pkmap   : 0xfec00000 - 0xff000000   (4096 kB)"),
        "{out}"
    );
}

#[test]
fn json_carries_the_same_layout() {
    let (code, out, _) = run(&["layout", "--ram", "8G", "--pae", "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).expect("valid JSON");
    assert_eq!(v["layout"]["max_pfn"], 0x24_0000);
    assert_eq!(v["layout"]["max_low_pfn"], 0x3_6ffe);
    assert_eq!(v["ram_bytes"], 8u64 << 30);
    let console = v["console"].as_array().unwrap();
    assert!(console.iter().any(|l| l == "8336MB HIGHMEM available."));
}
