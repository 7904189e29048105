//! Shared by the fidelity tests: every reference boot (not the workload runs) with the model
//! booted on the same RAM, CPUs, kernel and command line — booted once per test binary —
//! and the command run in-process. Each test binary uses part of it.
#![allow(dead_code)]

use highmem::reference::{list_runs, RefRun};
use kernel::config::KernelConfig;
use kernel::{boot, BootOptions, Kernel};
use std::sync::OnceLock;

/// The reference boots and the model's boots of the same machines.
pub fn reference_boots() -> &'static [(RefRun, Kernel)] {
    static BOOTS: OnceLock<Vec<(RefRun, Kernel)>> = OnceLock::new();
    BOOTS.get_or_init(|| {
        let mut out = Vec::new();
        for path in list_runs().expect("reference runs") {
            let run = RefRun::load(&path).expect("parse reference");
            if run.work.is_some() || run.name.starts_with("work-") {
                continue;
            }
            let cfg = KernelConfig::preset(run.kernel.preset_name()).expect("preset");
            let mut opts = BootOptions::new(run.ram_mib << 20, run.smp, cfg);
            opts.cmdline = run.append.clone();
            let k = boot(&opts).unwrap_or_else(|e| panic!("{}: boot failed: {e}", run.name));
            out.push((run, k));
        }
        assert!(
            out.len() >= 8,
            "expected the reference boots, found {}",
            out.len()
        );
        out
    })
}

/// `highmem ARGS…` run in-process: its standard output (the command must succeed).
pub fn cli(args: &[String]) -> String {
    let mut argv = vec!["highmem".to_string()];
    argv.extend_from_slice(args);
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = highmem::cli::run(argv, &mut out, &mut err);
    assert_eq!(code, 0, "{args:?}: {}", String::from_utf8_lossy(&err));
    String::from_utf8(out).expect("utf-8 output")
}

/// Whether a capture ran Debian's amd64 kernel.
pub fn is_64bit_run(run: &RefRun) -> bool {
    run.kernel == highmem::reference::KernelFlavor::Amd64
}

/// `highmem shmwork` with the capture's machine, kernel options and workload.
pub fn model_args(run: &RefRun) -> Vec<String> {
    let work = run.work.as_ref().expect("ORACLE-WORK line");
    let size = work["s"].strip_suffix("MiB").expect("s=…MiB").to_string();
    let mut a = vec!["shmwork".to_string()];
    a.extend(machine_args(run));
    a.extend([size, work["n"].clone(), work["touch"].clone()]);
    a.extend(["--every".into(), work["every"].clone()]);
    a
}

/// The capture's machine and kernel options, as the model's command line takes them.
pub fn machine_args(run: &RefRun) -> Vec<String> {
    let mut a = Vec::new();
    if run.kernel.is_pae() {
        a.push("--pae".into());
    }
    if is_64bit_run(run) {
        a.extend(["--variant".into(), "x86_64".into()]);
    }
    a.extend(["--ram".into(), format!("{}M", run.ram_mib)]);
    let append: Vec<&str> = run
        .extra_options
        .iter()
        .map(String::as_str)
        .filter(|o| !o.starts_with("oracle."))
        .collect();
    if !append.is_empty() {
        a.extend(["--append".into(), append.join(" ")]);
    }
    a
}

/// The `.txt` captures in `tests/SUB` (this crate's own recorded real runs), sorted.
pub fn captures_in(sub: &str) -> Vec<std::path::PathBuf> {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(sub);
    let mut v: Vec<std::path::PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{dir:?}: {e}"))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    v.sort();
    v
}

/// The dump of the file whose path ends with `suffix` (`/maps`, `dmesg`) in a run's
/// output or a capture, between its `=====BEGIN …=====` and `=====END …=====` markers.
pub fn dump<'a>(out: &'a str, suffix: &str) -> Option<&'a str> {
    let begin = out
        .lines()
        .find(|l| l.starts_with("=====BEGIN ") && l.ends_with(&format!("{suffix}=====")))?;
    let body = &out[out.find(begin)? + begin.len() + 1..];
    Some(&body[..body.find("=====END")?])
}

/// The room in a `/proc/PID/maps` dump between the end of `[heap]` (its last VMA) and the
/// start of `[vvar]`: where a top-down `shmat` puts the segment.
pub fn heap_to_vvar(maps: &str) -> u64 {
    let range = |name: &str| -> (u64, u64) {
        let l = maps
            .lines()
            .rfind(|l| l.trim_end().ends_with(name))
            .unwrap_or_else(|| panic!("{name} in\n{maps}"));
        let r = l.split_whitespace().next().expect("range");
        let (a, b) = r.split_once('-').expect("a-b");
        let h = |x: &str| u64::from_str_radix(x, 16).expect("hex");
        (h(a), h(b))
    };
    range("[vvar]").0 - range("[heap]").1
}
