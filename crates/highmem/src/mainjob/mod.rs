//! The main job (`highmem run` without a scenario, what `cargo run --release` runs): the
//! seeds' database workload on the reference runs' machine — 8 GiB, one CPU, a 512 MiB SysV
//! segment created and populated by the parent, then up to 1000 backends started one after
//! another, each attaching the segment and reading every page — on seed 001's five kernel
//! variants under the default design. Each variant runs until its kernel stops it (the OOM
//! killer, an allocation failure) or all backends run; one table compares them and a plot
//! shows low memory, high memory and page tables as the backends come.
//!
//! The variants are independent kernels, so they run on their own threads (as many as the
//! host has cores); the output is printed in seed 001's order once all are done, so it is
//! the same bytes on every run. Host times appear only under `--timing`.

mod plot;
mod progress;
mod table;
mod variant_run;

pub use progress::STDERR_IS_TERMINAL;
pub use variant_run::{Row, Sample, Stop, VariantRun};

use crate::cli::{parse_ram_size, CliError, MachineArgs};
use clap::Args;
use kernel::variant::Variant;
use progress::Progress;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Seed 001's five variants, in its order.
pub const SEED_VARIANTS: [Variant; 5] = [
    Variant::NoHighmem,
    Variant::Highmem4G,
    Variant::Highmem4GHighpte,
    Variant::Highmem64G,
    Variant::Highmem64GHighpte,
];

/// Options of the main job (all optional: without them it is the reference machine).
#[derive(Args, Debug, Clone, Default, PartialEq, Eq)]
pub struct MainJobArgs {
    /// RAM of the machine, as QEMU's -m [default: 8G, the reference runs' machine].
    #[arg(long, value_name = "SIZE")]
    pub ram: Option<String>,
    /// Extra kernel command line for every variant ('highmem=384M', 'userpte=nohigh').
    #[arg(long, value_name = "CMDLINE", allow_hyphen_values = true)]
    pub append: Option<String>,
    /// Size of the shared segment; a bare number is MiB [default: 512].
    #[arg(long, value_name = "SIZE")]
    pub segment: Option<String>,
    /// Most backends to start in each variant [default: 1000].
    #[arg(long, value_name = "N")]
    pub backends: Option<u32>,
    /// Variants to run, comma-separated [default: nohighmem,4GB,4GB-highpte,64GB,64GB-highpte].
    #[arg(long, value_name = "LIST")]
    pub variants: Option<String>,
    /// Variants run at once [default: the host's cores].
    #[arg(long, value_name = "N")]
    pub jobs: Option<usize>,
    /// Where the plot goes: PREFIX.svg and PREFIX.png [default: highmem-mainjob].
    #[arg(long, value_name = "PREFIX")]
    pub plot: Option<PathBuf>,
    /// Write no plot.
    #[arg(long)]
    pub no_plot: bool,
    /// Print the table as JSON.
    #[arg(long)]
    pub json: bool,
    /// Add the host's wall-clock times (per variant and in all).
    #[arg(long)]
    pub timing: bool,
}

/// The job, checked.
#[derive(Clone, Debug)]
pub struct JobSpec {
    pub ram: String,
    pub ram_bytes: u64,
    pub append: String,
    pub segment_mib: u64,
    pub backends: u32,
    pub variants: Vec<Variant>,
    pub jobs: usize,
}

impl MainJobArgs {
    /// Check the options; defaults are the reference machine and workload.
    pub fn spec(&self) -> Result<JobSpec, CliError> {
        let ram = self.ram.clone().unwrap_or_else(|| "8G".to_string());
        let ram_bytes =
            parse_ram_size(&ram).map_err(|e| CliError::Usage(format!("--ram {ram}: {e}")))?;
        let segment = self.segment.clone().unwrap_or_else(|| "512".to_string());
        let seg = parse_ram_size(&segment)
            .map_err(|e| CliError::Usage(format!("--segment {segment}: {e}")))?;
        if seg < (1 << 20) || seg % (1 << 20) != 0 {
            return Err(CliError::Usage(format!(
                "--segment {segment}: a whole number of MiB is needed"
            )));
        }
        let variants = match &self.variants {
            None => SEED_VARIANTS.to_vec(),
            Some(list) => parse_variants(list)?,
        };
        let jobs = match self.jobs {
            Some(0) => return Err(CliError::Usage("--jobs 0: at least one is needed".into())),
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(1, usize::from),
        };
        Ok(JobSpec {
            ram,
            ram_bytes,
            append: self.append.clone().unwrap_or_default(),
            segment_mib: seg >> 20,
            backends: self.backends.unwrap_or(1000),
            variants,
            jobs,
        })
    }
}

fn parse_variants(list: &str) -> Result<Vec<Variant>, CliError> {
    let mut out = Vec::new();
    for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let v =
            Variant::from_name(name).map_err(|e| CliError::Usage(format!("--variants: {e}")))?;
        if !out.contains(&v) {
            out.push(v);
        }
    }
    if out.is_empty() {
        return Err(CliError::Usage("--variants: no variant named".to_string()));
    }
    Ok(out)
}

/// Run every variant, `spec.jobs` at a time; results in `spec.variants`' order. The
/// variants that run longest (page tables in high memory hold the most backends) are
/// started first, so the last thread to finish has the shortest tail.
fn run_all(spec: &JobSpec, progress: &Progress) -> Vec<Result<VariantRun, CliError>> {
    let n = spec.variants.len();
    let order: Vec<usize> = (0..n).rev().collect();
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<VariantRun, CliError>>>> =
        Mutex::new((0..n).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..spec.jobs.min(n) {
            s.spawn(|| {
                while let Some(&i) = order.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let r = variant_run::run_variant(spec, spec.variants[i], progress);
                    if let Ok(mut all) = results.lock() {
                        all[i] = Some(r);
                    }
                }
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_default()
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(CliError::NoBoot("a variant's thread died".into()))))
        .collect()
}

/// Run every variant of `spec` (no progress bar): rows and plot points, in `spec`'s order.
pub fn run_variants(spec: &JobSpec) -> Vec<Result<VariantRun, CliError>> {
    run_all(spec, &Progress::new(0))
}

impl JobSpec {
    /// The machine of `variant` in this job: the job's RAM and command line, one CPU, the
    /// hardware TLB.
    fn machine(&self, variant: Variant) -> MachineArgs {
        MachineArgs {
            ram: Some(self.ram.clone()),
            pae: false,
            cpus: 1,
            kernel: None,
            append: self.append.clone(),
            design: None,
            pte_map: None,
            variant: Some(variant.name().to_string()),
            tlb: crate::cli::TlbArg::Core2,
        }
    }
}

/// The header: the machine, the kernels, the design, then what the job does.
fn header(spec: &JobSpec) -> Result<Vec<String>, CliError> {
    let mut kernels: Vec<(String, Vec<&str>)> = Vec::new();
    for v in &spec.variants {
        let args = spec.machine(*v);
        // The boots report their own notes; these would be the same.
        let m = args.resolve(&mut std::io::sink())?;
        let k = format!("{} ({})", m.cfg.name, m.cfg.release);
        match kernels.iter_mut().find(|(name, _)| *name == k) {
            Some((_, vs)) => vs.push(v.name()),
            None => kernels.push((k, vec![v.name()])),
        }
    }
    let kernels: Vec<String> = kernels
        .iter()
        .map(|(k, vs)| format!("{k} as {}", vs.join(", ")))
        .collect();
    let append = if spec.append.is_empty() {
        String::new()
    } else {
        format!(", command line '{}'", spec.append)
    };
    Ok(vec![
        format!(
            "# highmem: QEMU pc, {} RAM, 1 CPU; kernel {}; design linux-6.1{append}",
            human_size(spec.ram_bytes),
            kernels.join("; kernel ")
        ),
        format!(
            "# main job (shmwork {s} {n} r): the parent creates and populates a {s} MiB SysV \
             segment, then up to {n} backends start one after another, each attaching it and \
             reading every page, until the kernel stops them",
            s = spec.segment_mib,
            n = spec.backends
        ),
    ])
}

/// 8 GiB, 1536 MiB: whole GiB when it divides.
fn human_size(bytes: u64) -> String {
    if bytes.is_multiple_of(1 << 30) {
        format!("{} GiB", bytes >> 30)
    } else {
        format!("{} MiB", bytes >> 20)
    }
}

/// Run the main job and print its header, table, stop reasons and the files it wrote.
pub fn run_main_job(
    args: &MainJobArgs,
    out: &mut impl Write,
    err: &mut impl Write,
) -> Result<(), CliError> {
    let spec = args.spec()?;
    let header = header(&spec)?;
    let t0 = std::time::Instant::now();
    let progress = Progress::new(u64::from(spec.backends) * spec.variants.len() as u64);
    let results = run_all(&spec, &progress);
    progress.finish();
    let mut runs = Vec::with_capacity(results.len());
    let mut notes: Vec<String> = Vec::new();
    for r in results {
        let run = r?;
        // The three non-PAE variants note the same unreachable RAM: say it once.
        for l in String::from_utf8_lossy(&run.notes).lines() {
            if !notes.iter().any(|n| n == l) {
                notes.push(l.to_string());
            }
        }
        runs.push(run);
    }
    for n in &notes {
        writeln!(err, "{n}")?;
    }
    let files = if args.no_plot {
        Vec::new()
    } else {
        let prefix = args
            .plot
            .clone()
            .unwrap_or_else(|| PathBuf::from("highmem-mainjob"));
        let lines: Vec<plot::Line> = runs
            .iter()
            .map(|r| plot::Line {
                variant: &r.row.variant,
                // Seed 001's variants by position; the 64-bit kernel after them.
                colour: SEED_VARIANTS
                    .iter()
                    .position(|v| v.name() == r.row.variant)
                    .unwrap_or(SEED_VARIANTS.len()),
                samples: &r.samples,
            })
            .collect();
        let title = format!(
            "{} MiB shared segment, backends reading all of it: {} RAM, linux-6.1",
            spec.segment_mib,
            human_size(spec.ram_bytes)
        );
        plot::write_plots(&prefix, &title, &lines).map_err(CliError::Usage)?
    };
    let timing = args.timing.then(|| table::Timing {
        total: t0.elapsed().as_secs_f64(),
        per_variant: runs.iter().map(|r| r.secs).collect(),
    });
    let rows: Vec<&Row> = runs.iter().map(|r| &r.row).collect();
    if args.json {
        return crate::cli::write_json(out, &table::json(&header, &rows, &files, timing.as_ref()));
    }
    table::write_text(out, &header, &rows, &files, timing.as_ref())
}
