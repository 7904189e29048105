//! The Mem-Info block of the model's allocation-failure report has the shape of the real
//! kernel's: the reference shm workload run that exhausts low memory (`userpte=nohigh`)
//! printed one through the OOM killer (show_mem is the same code either way). Numbers
//! differ — the machine states differ — so every line is compared with its digits and
//! migrate-type letters blanked out, in order.

use highmem::reference::{list_runs, strip_timestamp};
use kernel::config::KernelConfig;
use kernel::gfp::{Gfp, GFP_KERNEL};
use kernel::{boot, BootOptions};

/// Digits become `#`; the `(UME)` migrate-type sets (printed only for non-empty orders) and
/// the yes/no of `all_unreclaimable?` are state, not format, and are dropped.
fn shape(line: &str) -> String {
    let mut out = String::new();
    let mut in_digits = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            if !in_digits {
                out.push('#');
            }
            in_digits = true;
            continue;
        }
        in_digits = false;
        if c == '(' && chars.peek().is_some_and(|n| n.is_ascii_uppercase()) {
            for n in chars.by_ref() {
                if n == ')' {
                    break;
                }
            }
            // Drop the space before the set too.
            if out.ends_with(' ') {
                out.pop();
            }
            continue;
        }
        out.push(c);
    }
    out.replace("all_unreclaimable? yes", "all_unreclaimable? #")
        .replace("all_unreclaimable? no", "all_unreclaimable? #")
}

/// The first Mem-Info block of the run, up to the "pages hwpoisoned" line.
fn real_mem_info() -> Vec<String> {
    let path = list_runs()
        .expect("runs")
        .into_iter()
        .find(|p| p.to_string_lossy().contains("userpte-nohigh"))
        .expect("the userpte=nohigh workload run");
    let text = std::fs::read_to_string(path).expect("read");
    let lines: Vec<String> = text
        .lines()
        .filter_map(strip_timestamp)
        .map(str::to_string)
        .skip_while(|l| l != "Mem-Info:")
        .collect();
    let end = lines
        .iter()
        .position(|l| l.ends_with("pages hwpoisoned"))
        .expect("end of Mem-Info");
    lines[..=end].to_vec()
}

#[test]
fn mem_info_block_has_the_real_kernels_shape() {
    let real = real_mem_info();
    let cfg = KernelConfig::preset("debian-686-pae").expect("preset");
    let mut k = boot(&BootOptions::new(8 << 30, 1, cfg)).expect("boot");
    // Exhaust low memory with kernel allocations that may fail (and so warn, not OOM).
    let failure = loop {
        match k.alloc_pages(GFP_KERNEL | Gfp::RETRY_MAYFAIL, 0, 0) {
            Ok(_) => continue,
            Err(kernel::KernelAllocError::Alloc(f)) => break f,
            Err(e) => panic!("{e}"),
        }
    };
    let report = &failure.report;
    assert!(
        report[0].contains("page allocation failure: order:0, mode:0x")
            && report[0].contains("(GFP_KERNEL|__GFP_RETRY_MAYFAIL)"),
        "{}",
        report[0]
    );
    let start = report
        .iter()
        .position(|l| l == "Mem-Info:")
        .expect("Mem-Info");
    let model: Vec<String> = report[start..].iter().map(|l| shape(l)).collect();
    let real: Vec<String> = real.iter().map(|l| shape(l)).collect();
    let n = real.len().min(model.len());
    let mut diffs = Vec::new();
    for i in 0..real.len().max(model.len()) {
        let (m, r) = (model.get(i), real.get(i));
        if m != r {
            diffs.push(format!("line {i}:\n  model {m:?}\n  real  {r:?}"));
        }
    }
    assert!(n > 15, "a full block on both sides");
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}
