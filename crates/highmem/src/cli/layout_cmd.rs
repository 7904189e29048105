//! `highmem layout`: boot a kernel preset on a QEMU `pc` machine and print what the kernel
//! says about memory — the e820 map, `last_pfn`, the HIGHMEM/LOWMEM split, zones and node
//! ranges, exactly as the console shows them (without timestamps) — followed by the
//! pre-5.7 "virtual kernel memory layout:" block. `--json` gives the same data as JSON.

use super::machine_args::{MachineArgs, MachineSpec};
use super::CliError;
use clap::Args;
use kernel::cmdline::CmdLine;
use kernel::config::KernelConfig;
use kernel::layout::{setup_layout, Layout, LayoutError};
use std::io::Write;

/// Options of `highmem layout`.
#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct LayoutArgs {
    #[command(flatten)]
    pub machine: MachineArgs,
    /// Print the layout as JSON.
    #[arg(long)]
    pub json: bool,
}

impl LayoutArgs {
    /// The default scenario's machine: 16 GiB with the PAE kernel.
    pub fn default_machine() -> LayoutArgs {
        LayoutArgs {
            machine: MachineArgs::default_machine(),
            json: false,
        }
    }
}

/// What `--json` prints.
#[derive(serde::Serialize)]
struct JsonReport<'a> {
    header: &'a str,
    ram_bytes: u64,
    cpus: u32,
    kernel: &'a KernelConfig,
    cmdline: &'a CmdLine,
    console: Vec<&'a str>,
    virtual_layout: Vec<String>,
    layout: &'a Layout,
}

/// Run `highmem layout`.
pub fn run_layout(
    args: &LayoutArgs,
    out: &mut impl Write,
    err: &mut impl Write,
) -> Result<(), CliError> {
    let spec = args.machine.resolve(err)?;
    if spec.variant == kernel::variant::Variant::X86_64 {
        return Err(CliError::Usage(
            "--variant x86_64: the layout command models the i386 layout only; \
             `highmem boot --variant x86_64` shows the 64-bit zones and direct map"
                .to_string(),
        ));
    }
    let header = spec.header();
    let MachineSpec {
        ram,
        cpus,
        cfg,
        cmdline,
        e820,
        ..
    } = spec;
    let layout = setup_layout(&e820, &cfg, &cmdline, cpus).map_err(no_boot)?;

    if args.json {
        let report = JsonReport {
            header: &header,
            ram_bytes: ram,
            cpus,
            kernel: &cfg,
            cmdline: &cmdline,
            console: layout.console_lines(),
            virtual_layout: layout.virtual_layout_lines(),
            layout: &layout,
        };
        super::write_json(out, &report)?;
    } else {
        writeln!(out, "{header}")?;
        for line in layout.console_lines() {
            writeln!(out, "{line}")?;
        }
        for line in layout.virtual_layout_lines() {
            writeln!(out, "{line}")?;
        }
    }
    Ok(())
}

/// A kernel that would not boot: say why, in the kernel's terms.
pub(super) fn no_boot(e: LayoutError) -> CliError {
    match e {
        LayoutError::Config(c) => CliError::Usage(c.to_string()),
        other => CliError::NoBoot(format!("the kernel would not boot: {other}")),
    }
}
