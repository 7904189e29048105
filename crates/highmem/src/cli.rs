//! The `highmem` command line: subcommands parsed with clap, each a function that writes
//! to any `Write` and returns an exit code, so tests drive the whole command in-process.
//!
//! Exit codes: 0 success, 1 the simulated kernel would not boot (a panic or BUG it would
//! hit, reported in one line), 2 bad input (usage, sizes, presets). Errors are one line,
//! `highmem: error: …`; nothing on user input may panic.

mod boot_cmd;
mod compare_cmd;
mod driver_cmd;
mod layout_cmd;
mod machine_args;
mod shmwork_cmd;
mod size;
mod sweep_cmd;
mod trace_cmd;

pub(crate) use boot_cmd::apply_sysctl;
pub use boot_cmd::{boot_machine, run_boot, run_proc, BootArgs, BootOpts, ProcArgs};
pub use compare_cmd::{run_compare, CompareArgs};
pub use driver_cmd::{run_driver, DriverArgs};
pub use layout_cmd::{run_layout, LayoutArgs};
pub use machine_args::{MachineArgs, MachineSpec, TlbArg};
pub use shmwork_cmd::{run_shmwork, ShmworkArgs};
pub use size::parse_ram_size;
pub use sweep_cmd::{run_sweep, SweepArgs};
pub use trace_cmd::{run_trace, TraceArgs};

use clap::{CommandFactory, Parser, Subcommand};
use std::ffi::OsString;
use std::io::Write;

/// Exit code for success.
pub const EXIT_OK: i32 = 0;
/// Exit code when the modelled kernel would not boot.
pub const EXIT_NO_BOOT: i32 = 1;
/// Exit code for bad input.
pub const EXIT_USAGE: i32 = 2;

/// Executable model of 32-bit x86 Linux memory management with high memory.
#[derive(Parser, Debug)]
#[command(name = "highmem", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print the boot lines about memory and the virtual memory layout of a kernel on a QEMU
    /// pc machine (computed from the layout alone, without running the boot).
    Layout(LayoutArgs),
    /// Boot the simulated kernel and print its boot log.
    Boot(BootArgs),
    /// Boot the simulated kernel and print a /proc file in the kernel's format.
    Proc(ProcArgs),
    /// Run a scenario file: a machine and kernel-level steps (see docs/scenarios.md); without
    /// one, the main job: the database workload on seed 001's five kernel variants (a table
    /// and a plot).
    Run(RunArgs),
    /// Seed 000's video driver: build a DMA scatter-gather list of a vmalloc buffer four ways
    /// (pte_offset by hand, pte_offset_atomic, vmalloc_to_page, get_user_pages) on each kernel
    /// design and say which give the right pages.
    Driver(DriverArgs),
    /// Run the reference's SysV shm workload (shmwork.c) on the model: a parent populates a
    /// segment, N children attach it and touch every page; PROGRESS lines and /proc dumps.
    Shmwork(ShmworkArgs),
    /// Run a scenario once per combination of variants, designs and VMSPLITs and print
    /// the figures the runs end with side by side.
    Compare(CompareArgs),
    /// Run a scenario over a grid of machine settings: one JSON line per run; --shard K/N
    /// for array jobs, --jobs N for local threads.
    Sweep(SweepArgs),
    /// Run a scenario and print its kernel events in ftrace's text format (-e to select).
    Trace(TraceArgs),
}

/// Options of `highmem run`.
#[derive(clap::Args, Debug, Default, PartialEq, Eq)]
pub struct RunArgs {
    /// The scenario file (TOML), e.g. scenarios/buddy-split-merge.toml; without it, the
    /// main job.
    #[arg(value_name = "SCENARIO")]
    pub scenario: Option<std::path::PathBuf>,
    /// Seed of the run's interleavings (default: the scenario's `[machine] seed`).
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// The main job's options; `--json` also applies to a scenario run (header, output
    /// lines and the figures it ended with).
    #[command(flatten)]
    pub main_job: crate::mainjob::MainJobArgs,
}

/// Run `highmem run [SCENARIO]`.
fn run_run(args: &RunArgs, out: &mut impl Write, err: &mut impl Write) -> Result<(), CliError> {
    let Some(path) = &args.scenario else {
        return crate::mainjob::run_main_job(&args.main_job, out, err);
    };
    let json = args.main_job.json;
    let job_only = crate::mainjob::MainJobArgs {
        json: false,
        ..args.main_job.clone()
    };
    if job_only != crate::mainjob::MainJobArgs::default() {
        return Err(CliError::Usage(format!(
            "run {}: --ram, --segment, --backends, --variants, --jobs, --plot and \
             --timing are the main job's options (`highmem run` without a scenario); a \
             scenario file sets its own machine",
            path.display()
        )));
    }
    let name = path.display().to_string();
    let src = std::fs::read_to_string(path).map_err(|e| CliError::Usage(format!("{name}: {e}")))?;
    let scenario =
        crate::scenario::parse_str(&name, &src).map_err(|e| CliError::Usage(e.to_string()))?;
    let opts = crate::scenario::RunOptions {
        seed: args.seed,
        trace: None,
    };
    if !json {
        let _ = err;
        return crate::scenario::run_scenario_with(&name, &src, &scenario, &opts, out).map(|_| ());
    }
    let mut text = Vec::new();
    let f = crate::scenario::run_scenario_with(&name, &src, &scenario, &opts, &mut text)?;
    let text = String::from_utf8_lossy(&text);
    let v = serde_json::json!({
        "header": f.header,
        "scenario": name,
        "lines": text.lines().skip(1).collect::<Vec<_>>(),
        "result": f.summary,
    });
    write_json(out, &v)
}

/// Entry point of the binary: real arguments, stdout and stderr.
pub fn main() -> i32 {
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    {
        use std::io::IsTerminal;
        crate::mainjob::STDERR_IS_TERMINAL
            .store(stderr.is_terminal(), std::sync::atomic::Ordering::Relaxed);
    }
    // stderr stays unlocked: the main job's progress bar draws on it from other threads.
    run(std::env::args_os(), &mut stdout.lock(), &mut &stderr)
}

/// Run the command with `args` (including the program name) and return the exit code.
pub fn run<I, T>(args: I, out: &mut impl Write, err: &mut impl Write) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => return clap_error(e, subcommand_of(&args), out, err),
    };
    let result = match cli.command {
        Some(Command::Layout(args)) => run_layout(&args, out, err),
        Some(Command::Boot(args)) => run_boot(&args, out, err),
        Some(Command::Proc(args)) => run_proc(&args, out, err),
        Some(Command::Run(args)) => run_run(&args, out, err),
        Some(Command::Driver(args)) => run_driver(&args, out, err),
        Some(Command::Shmwork(args)) => run_shmwork(&args, out, err),
        Some(Command::Compare(args)) => run_compare(&args, out, err),
        Some(Command::Sweep(args)) => run_sweep(&args, out, err),
        Some(Command::Trace(args)) => run_trace(&args, out, err),
        // What `cargo run --release` runs: the main job.
        None => run_run(&RunArgs::default(), out, err),
    };
    match result {
        Ok(()) => EXIT_OK,
        // The reader went away (`highmem layout | head`): stop quietly, like coreutils.
        Err(CliError::Io(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => EXIT_OK,
        Err(e) => {
            // A closed pipe or full disk while reporting is not worth a second error.
            let _ = writeln!(err, "highmem: error: {e}");
            e.exit_code()
        }
    }
}

/// An error of a subcommand, with the exit code it deserves.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    NoBoot(String),
    #[error("writing output: {0}")]
    Io(#[from] std::io::Error),
}

impl CliError {
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Usage(_) => EXIT_USAGE,
            CliError::NoBoot(_) => EXIT_NO_BOOT,
            CliError::Io(_) => EXIT_NO_BOOT,
        }
    }
}

/// Write `value` as pretty JSON and a newline. Serialising first keeps a closed pipe an I/O
/// error of its own kind (`highmem layout --json | head -1` ends quietly).
pub(crate) fn write_json(
    out: &mut impl Write,
    value: &impl serde::Serialize,
) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| CliError::Usage(format!("cannot render JSON: {e}")))?;
    writeln!(out, "{text}")?;
    Ok(())
}

/// Help and version go to `out` with success; real parse errors are clap's whole message
/// (the missing argument's name, "a similar argument exists" tips, the usage line), which
/// already points to the subcommand's help.
fn clap_error(
    e: clap::Error,
    subcommand: Option<&str>,
    out: &mut impl Write,
    err: &mut impl Write,
) -> i32 {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = write!(out, "{}", e.render());
            EXIT_OK
        }
        _ => {
            let text = e.render().to_string();
            let text = text.strip_prefix("error: ").unwrap_or(&text);
            let _ = write!(
                err,
                "highmem: error: {}",
                point_to_subcommand_help(text, subcommand)
            );
            EXIT_USAGE
        }
    }
}

/// The subcommand the user named, if any (the first word that is not an option).
fn subcommand_of(args: &[OsString]) -> Option<&str> {
    args.iter()
        .skip(1)
        .filter_map(|a| a.to_str())
        .find(|a| !a.starts_with('-'))
        .filter(|a| Cli::command().find_subcommand(a).is_some())
}

/// clap ends its errors with "try '--help'": name the subcommand whose help that is.
fn point_to_subcommand_help(text: &str, subcommand: Option<&str>) -> String {
    match subcommand {
        Some(sub) => text.replace("try '--help'", &format!("try 'highmem {sub} --help'")),
        None => text.replace("try '--help'", "try 'highmem --help'"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_args(args: &[&str]) -> (i32, String, String) {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let code = run(args.iter().copied(), &mut out, &mut err);
        (
            code,
            String::from_utf8_lossy(&out).into_owned(),
            String::from_utf8_lossy(&err).into_owned(),
        )
    }

    #[test]
    fn help_goes_to_stdout() {
        let (code, out, _) = run_args(&["highmem", "--help"]);
        assert_eq!(code, EXIT_OK);
        assert!(out.contains("layout"));
    }

    #[test]
    fn unknown_flag_keeps_clap_tips_and_points_to_the_subcommand_help() {
        let (code, out, err) = run_args(&["highmem", "layout", "--pea"]);
        assert_eq!(code, EXIT_USAGE);
        assert!(out.is_empty());
        assert!(
            err.starts_with("highmem: error: unexpected argument '--pea'"),
            "{err}"
        );
        assert!(err.contains("a similar argument exists"), "{err}");
        assert!(err.contains("try 'highmem layout --help'"), "{err}");
        let (_, _, err) = run_args(&["highmem", "proc"]);
        assert!(err.contains("<FILE>"), "{err}");
        assert!(err.contains("try 'highmem proc --help'"), "{err}");
    }

    /// A reader that goes away after the first line (`| head -1`).
    struct ClosedAfter(usize);
    impl Write for ClosedAfter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if self.0 == 0 {
                return Err(std::io::ErrorKind::BrokenPipe.into());
            }
            let n = buf.len().min(self.0);
            self.0 -= n;
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_closed_pipe_ends_quietly_in_every_output_mode() {
        for args in [
            &["highmem", "layout", "--json"][..],
            &["highmem", "layout"],
            &["highmem", "boot", "--ram", "1G", "--json"],
        ] {
            let mut err = Vec::new();
            let code = run(args.iter().copied(), &mut ClosedAfter(2), &mut err);
            assert_eq!(code, EXIT_OK, "{args:?}");
            assert!(
                err.is_empty(),
                "{args:?}: {}",
                String::from_utf8_lossy(&err)
            );
        }
    }

    #[test]
    fn boot_and_proc_speak_json() {
        let (code, out, _) = run_args(&["highmem", "boot", "--ram", "1G", "--json", "--stats"]);
        assert_eq!(code, EXIT_OK);
        let v: serde_json::Value = serde_json::from_str(&out).expect("boot JSON");
        assert!(v["header"]
            .as_str()
            .is_some_and(|h| h.starts_with("# highmem: ")));
        assert!(v["log"].as_array().is_some_and(|l| !l.is_empty()));
        assert!(v["stats"].as_array().is_some());
        let (code, out, _) = run_args(&["highmem", "proc", "meminfo", "--ram", "1G", "--json"]);
        assert_eq!(code, EXIT_OK);
        let v: serde_json::Value = serde_json::from_str(&out).expect("proc JSON");
        assert_eq!(v["file"], "/proc/meminfo");
        assert!(v["data"].is_object(), "{v}");
    }

    #[test]
    fn proc_has_no_boot_only_flags() {
        for flag in ["--memblock", "--stats"] {
            let (code, _, err) = run_args(&["highmem", "proc", "meminfo", flag]);
            assert_eq!(code, EXIT_USAGE, "{flag}: {err}");
        }
    }

    #[test]
    fn every_run_starts_with_a_header() {
        let (code, out, _) = run_args(&["highmem", "layout", "--pae"]);
        assert_eq!(code, EXIT_OK);
        let first = out.lines().next().unwrap_or_default();
        assert_eq!(
            first,
            "# highmem: QEMU pc, 16 GiB RAM, 1 CPU; kernel debian-686-pae (6.1.0-50-686-pae, PAE, HIGHMEM64G); design linux-6.1, variant 64GB-highpte"
        );
    }

    #[test]
    fn the_non_pae_kernel_defaults_to_ram_it_can_reach() {
        let (code, out, err) = run_args(&["highmem", "layout"]);
        assert_eq!(code, EXIT_OK);
        assert!(out.starts_with("# highmem: QEMU pc, 3 GiB RAM"), "{out}");
        assert!(err.is_empty(), "{err}");
        let (code, _, err) = run_args(&["highmem", "layout", "--ram", "8G"]);
        assert_eq!(code, EXIT_OK);
        assert!(
            err.contains("MiB of RAM QEMU puts above 4 GiB are not used"),
            "{err}"
        );
    }

    #[test]
    fn no_subcommand_and_run_without_a_scenario_are_the_main_job() {
        // `highmem` alone dispatches to `highmem run` with no arguments.
        let cli = Cli::try_parse_from(["highmem"]).expect("parses");
        assert!(cli.command.is_none());
        let cli = Cli::try_parse_from(["highmem", "run"]).expect("parses");
        match cli.command {
            Some(Command::Run(args)) => assert_eq!(args, RunArgs::default()),
            other => panic!("{other:?}"),
        }
        let spec = crate::mainjob::MainJobArgs::default()
            .spec()
            .expect("default job");
        assert_eq!(
            (spec.ram_bytes, spec.segment_mib, spec.backends),
            (8 << 30, 512, 1000)
        );
        assert_eq!(spec.variants, crate::mainjob::SEED_VARIANTS);
    }

    #[test]
    fn the_pae_layout_defaults_to_16_gib() {
        let (code, out, _) = run_args(&["highmem", "layout", "--pae"]);
        assert_eq!(code, EXIT_OK);
        assert!(out.contains("BIOS-e820: [mem 0x0000000100000000-0x000000043fffffff] usable"));
        assert!(out.contains("virtual kernel memory layout:"));
    }
}
