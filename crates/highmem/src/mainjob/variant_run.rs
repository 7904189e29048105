//! One variant of the main job: boot its kernel on the machine, run the workload through
//! `shmwork::run_observed`, and read the kernel's own figures after each backend (the plot's
//! points) and at the stop point (the table's row). Nothing is computed on the side: the
//! memory figures are /proc/meminfo's lines, `pgfault` is /proc/vmstat's, the other counts
//! are the model's counters.

use super::{JobSpec, Progress};
use crate::cli::{boot_machine, BootOpts, CliError};
use kernel::procfs::live;
use kernel::variant::Variant;
use kernel::workload::shmwork::{run_observed, Event, Params, Touch};
use kernel::Kernel;
use std::ops::ControlFlow;

/// Where the plot's lines pass: the figures after `backends` backends (0: the segment
/// populated, no backend yet), in kB as /proc/meminfo prints them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Sample {
    pub backends: u32,
    pub page_tables_kb: u64,
    pub low_free_kb: u64,
    pub high_free_kb: u64,
}

/// Why a variant stopped, in the kernel's words.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stop {
    /// The table's short form: the kill (`Out of memory: Killed process 718 (shmwork)`),
    /// the failed allocation, or the job's own limit.
    pub summary: String,
    /// The kernel's lines that stopped it: the allocation that invoked the OOM killer and
    /// its first kill, or the allocation failure report; empty at the job's limit.
    pub kernel: Vec<String>,
    /// The program's own `OOM-EVENT` lines (a fork that failed, the children it lost).
    pub program: Vec<String>,
}

/// One row of the table: a variant at its stop point.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Row {
    pub variant: String,
    pub kernel: String,
    /// Backends that attached and read every page before the kernel stopped the job.
    pub backends: u32,
    pub stop: Stop,
    /// /proc/meminfo's PageTables, LowFree and HighFree at the stop point, kB.
    pub page_tables_kb: u64,
    pub low_free_kb: u64,
    pub high_free_kb: u64,
    /// /proc/vmstat's `pgfault`.
    pub pgfault: u64,
    /// Mappings of a highmem PTE page made to reach it (kmap_atomic / typed / kmap).
    pub pte_kmaps: u64,
    /// INVLPGs executed, all CPUs.
    pub invlpg: u64,
    /// Wraps of the pkmap pool that flushed its window on every CPU (flush_all_zero_pkmaps).
    pub global_flushes: u64,
    /// kmap() calls that slept on pkmap_map_wait, the pool being full.
    pub kmap_sleeps: u64,
    /// /proc/vmstat's `oom_kill`: the backends the OOM killer took (one or several, until
    /// the allocation that ran out got its pages).
    pub oom_kills: u64,
}

/// What one variant's run produced.
pub struct VariantRun {
    pub row: Row,
    pub samples: Vec<Sample>,
    /// What the boot said on stderr (e.g. RAM the kernel cannot reach).
    pub notes: Vec<u8>,
    /// Host seconds (shown only under --timing).
    pub secs: f64,
}

/// The boot options of `variant` on the job's machine.
fn boot_opts(spec: &JobSpec, variant: Variant) -> BootOpts {
    BootOpts {
        machine: spec.machine(variant),
        sysctl: Vec::new(),
        initrd: None,
        no_runtime: false,
    }
}

/// The value of `key` in a /proc file of `key: value` or `key value` lines.
fn proc_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(key)?;
        let rest = rest.strip_prefix(':').unwrap_or(rest);
        if !rest.starts_with(' ') {
            return None;
        }
        rest.split_whitespace().next()?.parse().ok()
    })
}

fn sample(k: &Kernel, backends: u32) -> Sample {
    let mi = live::read(k, "meminfo").unwrap_or_default();
    let kb = |key| proc_value(&mi, key).unwrap_or(0);
    Sample {
        backends,
        page_tables_kb: kb("PageTables"),
        // A kernel without CONFIG_HIGHMEM prints no Low/High lines: all of it is low.
        low_free_kb: proc_value(&mi, "LowFree").unwrap_or_else(|| kb("MemFree")),
        high_free_kb: kb("HighFree"),
    }
}

/// The kernel's lines that stopped the run (the boot prints none of these).
fn stop_lines(k: &Kernel) -> Vec<String> {
    let log = k.log.lines();
    let first = |pat: &str| {
        log.iter()
            .find(|m| m.text.contains(pat))
            .map(|m| m.text.clone())
    };
    let oom = [
        first(" invoked oom-killer: "),
        first("Out of memory: Killed process "),
    ];
    if oom.iter().any(Option::is_some) {
        return oom.into_iter().flatten().collect();
    }
    first(": page allocation failure: ").into_iter().collect()
}

/// The table's short form of the stop.
fn summary(kernel: &[String], program: &[String], backends: u32, limit: u32) -> String {
    if let Some(kill) = kernel.iter().find(|l| l.starts_with("Out of memory:")) {
        // The kill without its memory figures (the full line is in `kernel`).
        return kill.split(" total-vm:").next().unwrap_or(kill).to_string();
    }
    if let Some(l) = kernel.first() {
        return l.clone();
    }
    if let Some(l) = program.first() {
        return l.trim_start_matches("OOM-EVENT ").to_string();
    }
    if backends >= limit {
        return format!("none: all {limit} backends run");
    }
    "stopped without a reason from the kernel".to_string()
}

/// The row of `variant`, read from the kernel where it stopped with `n` backends; the
/// program's lines and the summary are added by [`finish_row`].
fn stop_row(k: &Kernel, variant: Variant, n: u32) -> Row {
    let s = sample(k, n);
    let vmstat = live::read(k, "vmstat").unwrap_or_default();
    let pkmap = &k.hm.pkmap.counters;
    Row {
        variant: variant.name().to_string(),
        kernel: k.config.name.clone(),
        backends: n,
        stop: Stop {
            kernel: stop_lines(k),
            ..Stop::default()
        },
        page_tables_kb: s.page_tables_kb,
        low_free_kb: s.low_free_kb,
        high_free_kb: s.high_free_kb,
        pgfault: proc_value(&vmstat, "pgfault").unwrap_or(0),
        pte_kmaps: k.mm.counters.pte_kmaps,
        invlpg: k.machine.cpus.iter().map(|c| c.counters().invlpg).sum(),
        global_flushes: pkmap.global_flushes,
        kmap_sleeps: pkmap.sleeps,
        oom_kills: proc_value(&vmstat, "oom_kill").unwrap_or(0),
    }
}

fn finish_row(mut row: Row, program: Vec<String>, limit: u32) -> Row {
    row.stop.summary = summary(&row.stop.kernel, &program, row.backends, limit);
    row.stop.program = program;
    row
}

/// Boot `variant` and run the job on it until its kernel stops it or all backends run.
pub fn run_variant(
    spec: &JobSpec,
    variant: Variant,
    progress: &Progress,
) -> Result<VariantRun, CliError> {
    let t0 = std::time::Instant::now();
    let mut notes = Vec::new();
    let (mut k, _header) = boot_machine(&boot_opts(spec, variant), &mut notes)?;
    let prm = Params {
        size_mib: spec.segment_mib,
        n: spec.backends,
        touch: Touch::Read,
        every: spec.backends.max(1),
        timing: false,
        dumps: false,
        design: None,
    };
    let mut samples = Vec::with_capacity(spec.backends as usize + 1);
    let mut program = Vec::new();
    let mut emit = |l: &str| {
        if l.starts_with("OOM-EVENT ") {
            program.push(l.to_string());
        }
    };
    let mut stopped = None;
    let mut observe = |k: &Kernel, ev: Event| match ev {
        Event::Populated => {
            samples.push(sample(k, 0));
            ControlFlow::Continue(())
        }
        Event::ChildDone(n) => {
            samples.push(sample(k, n));
            progress.child_done();
            ControlFlow::Continue(())
        }
        Event::Stopped(n) => {
            // The run's own lines are all out by now; the kernel is read as it stands,
            // before anything is killed or freed.
            stopped = Some(stop_row(k, variant, n));
            ControlFlow::Break(())
        }
    };
    run_observed(&mut k, &prm, &mut emit, &mut observe)
        .map_err(|e| CliError::NoBoot(format!("main job, variant {variant}: {e}")))?;
    let row = stopped.ok_or_else(|| {
        CliError::NoBoot(format!("main job, variant {variant}: the run ended early"))
    })?;
    progress.variant_done(spec.backends.saturating_sub(row.backends));
    let row = finish_row(row, program, spec.backends);
    Ok(VariantRun {
        row,
        samples,
        notes,
        secs: t0.elapsed().as_secs_f64(),
    })
}
