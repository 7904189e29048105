//! The `highmem` command line: subcommands parsed with clap, each a function that writes
//! to any `Write` and returns an exit code, so tests drive the whole command in-process.
//!
//! Exit codes: 0 success, 1 the simulated kernel would not boot (a panic or BUG it would
//! hit, reported in one line), 2 bad input (usage, sizes, presets). Errors are one line,
//! `highmem: error: …`; nothing on user input may panic.

mod boot_cmd;
mod layout_cmd;
mod machine_args;
mod size;

pub use boot_cmd::{boot_machine, run_boot, run_proc, BootArgs, ProcArgs};
pub use layout_cmd::{run_layout, LayoutArgs};
pub use machine_args::{MachineArgs, MachineSpec};
pub use size::parse_ram_size;

use clap::{Parser, Subcommand};
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
}

/// Entry point of the binary: real arguments, stdout and stderr.
pub fn main() -> i32 {
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    run(std::env::args_os(), &mut stdout.lock(), &mut stderr.lock())
}

/// Run the command with `args` (including the program name) and return the exit code.
pub fn run<I, T>(args: I, out: &mut impl Write, err: &mut impl Write) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => return clap_error(e, out, err),
    };
    let result = match cli.command {
        Some(Command::Layout(args)) => run_layout(&args, out, err),
        Some(Command::Boot(args)) => run_boot(&args, out, err),
        Some(Command::Proc(args)) => run_proc(&args, out, err),
        // The default scenario's machine: 16 GiB, PAE.
        None => run_layout(&LayoutArgs::default_machine(), out, err),
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

/// Help and version go to `out` with success; real parse errors become one line.
fn clap_error(e: clap::Error, out: &mut impl Write, err: &mut impl Write) -> i32 {
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
            let first = text
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("invalid arguments");
            let msg = first.strip_prefix("error: ").unwrap_or(first);
            let _ = writeln!(err, "highmem: error: {msg} (see 'highmem --help')");
            EXIT_USAGE
        }
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
    fn unknown_flag_is_one_line() {
        let (code, out, err) = run_args(&["highmem", "layout", "--bogus"]);
        assert_eq!(code, EXIT_USAGE);
        assert!(out.is_empty());
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("highmem: error: "));
    }

    #[test]
    fn no_subcommand_is_the_default_machine() {
        let (code, out, _) = run_args(&["highmem"]);
        assert_eq!(code, EXIT_OK);
        assert!(out.contains("BIOS-e820: [mem 0x0000000100000000-0x000000043fffffff] usable"));
        assert!(out.contains("virtual kernel memory layout:"));
    }
}
