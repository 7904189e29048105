//! `highmem layout`: boot a kernel preset on a QEMU `pc` machine and print what the kernel
//! says about memory — the e820 map, `last_pfn`, the HIGHMEM/LOWMEM split, zones and node
//! ranges, exactly as the console shows them (without timestamps) — followed by the
//! pre-5.7 "virtual kernel memory layout:" block. `--json` gives the same data as JSON.

use super::{parse_ram_size, CliError};
use clap::Args;
use kernel::cmdline::CmdLine;
use kernel::config::KernelConfig;
use kernel::layout::{setup_layout, Layout, LayoutError};
use machine::e820::E820Map;
use std::io::Write;

/// QEMU's `pc` machine takes at most this many CPUs.
const QEMU_PC_MAX_CPUS: u32 = 255;

/// Options of `highmem layout`.
#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct LayoutArgs {
    /// RAM size, as QEMU's -m: 512M, 4G, 4096 (a bare number is MiB).
    #[arg(long, value_name = "SIZE", default_value = "16G")]
    pub ram: String,
    /// Boot the PAE kernel (default preset debian-686-pae instead of debian-686).
    #[arg(long)]
    pub pae: bool,
    /// Number of CPUs (QEMU -smp).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub cpus: u32,
    /// Kernel preset: debian-686, debian-686-pae.
    #[arg(long, value_name = "PRESET")]
    pub kernel: Option<String>,
    /// Extra kernel command line, as QEMU's -append ('mem=2G highmem=512M vmalloc=256M').
    #[arg(
        long,
        value_name = "CMDLINE",
        default_value = "",
        allow_hyphen_values = true
    )]
    pub append: String,
    /// Print the layout as JSON.
    #[arg(long)]
    pub json: bool,
}

impl LayoutArgs {
    /// The default scenario's machine: 16 GiB with the PAE kernel.
    pub fn default_machine() -> LayoutArgs {
        LayoutArgs {
            ram: "16G".to_string(),
            pae: true,
            cpus: 1,
            kernel: None,
            append: String::new(),
            json: false,
        }
    }
}

/// What `--json` prints.
#[derive(serde::Serialize)]
struct JsonReport<'a> {
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
    let ram = parse_ram_size(&args.ram).map_err(|e| CliError::Usage(format!("--ram: {e}")))?;
    let e820 =
        E820Map::qemu_pc(ram).map_err(|e| CliError::Usage(format!("--ram {}: {e}", args.ram)))?;
    if args.cpus == 0 || args.cpus > QEMU_PC_MAX_CPUS {
        return Err(CliError::Usage(format!(
            "--cpus {}: the pc machine takes 1 to {QEMU_PC_MAX_CPUS} CPUs",
            args.cpus
        )));
    }
    let preset = match &args.kernel {
        Some(name) => name.as_str(),
        None if args.pae => "debian-686-pae",
        None => "debian-686",
    };
    let cfg = KernelConfig::preset(preset).map_err(|e| CliError::Usage(e.to_string()))?;
    if args.pae && !cfg.pae {
        return Err(CliError::Usage(format!(
            "--pae conflicts with --kernel {preset}, which is built without PAE"
        )));
    }
    let cmdline =
        CmdLine::parse(&args.append).map_err(|e| CliError::Usage(format!("--append: {e}")))?;
    for note in &cmdline.notes {
        writeln!(err, "highmem: note: {note}")?;
    }
    if args.cpus > cfg.nr_cpus {
        writeln!(
            err,
            "highmem: note: kernel {} has NR_CPUS={}: it brings up only {} of {} CPUs",
            cfg.name, cfg.nr_cpus, cfg.nr_cpus, args.cpus
        )?;
    }
    let layout = setup_layout(&e820, &cfg, &cmdline, args.cpus).map_err(no_boot)?;

    if args.json {
        let report = JsonReport {
            ram_bytes: ram,
            cpus: args.cpus,
            kernel: &cfg,
            cmdline: &cmdline,
            console: layout.console_lines(),
            virtual_layout: layout.virtual_layout_lines(),
            layout: &layout,
        };
        serde_json::to_writer_pretty(&mut *out, &report)
            .map_err(|e| CliError::Io(std::io::Error::other(e)))?;
        writeln!(out)?;
    } else {
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
fn no_boot(e: LayoutError) -> CliError {
    match e {
        LayoutError::Config(c) => CliError::Usage(c.to_string()),
        other => CliError::NoBoot(format!("the kernel would not boot: {other}")),
    }
}
