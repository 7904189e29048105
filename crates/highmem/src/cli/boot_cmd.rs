//! `highmem boot` and `highmem proc`: boot the simulated kernel and show its log or one of
//! its /proc files, in the kernel's own format.
//!
//! Writable vm sysctls (`--sysctl min_free_kbytes=65536`) are written after boot, as an
//! administrator would with `sysctl -w`: the kernel recomputes watermarks, the lowmem
//! reserve and the per-CPU list limits, so the /proc files show the effect.

use super::layout_cmd::no_boot;
use super::machine_args::{MachineArgs, MachineSpec};
use super::{parse_ram_size, CliError};
use clap::Args;
use kernel::procfs::live;
use kernel::{boot, BootError, BootOptions, Kernel};
use std::io::Write;

/// The options of a boot, shared by `highmem boot` and `highmem proc`.
#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct BootOpts {
    #[command(flatten)]
    pub machine: MachineArgs,
    /// Write a vm sysctl after boot: min_free_kbytes=N, watermark_scale_factor=N,
    /// watermark_boost_factor=N, percpu_pagelist_high_fraction=N,
    /// lowmem_reserve_ratio='256 32 0 0'. Repeatable.
    #[arg(long, value_name = "NAME=VALUE")]
    pub sysctl: Vec<String>,
    /// Size of the initramfs QEMU loads (-initrd): 3M, 3300K, 4 (a bare number is MiB); 0 for
    /// none. Default: the reference boots' initramfs (3 323 824 bytes).
    #[arg(long, value_name = "SIZE")]
    pub initrd: Option<String>,
    /// Leave out what drivers, slab and init hold after a real boot (the preset's runtime
    /// profile): the bare memory manager.
    #[arg(long)]
    pub no_runtime: bool,
}

/// Options of `highmem boot`.
#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct BootArgs {
    #[command(flatten)]
    pub boot: BootOpts,
    /// After the log, list memblock's reservations when the buddy allocator took over: where
    /// the `Memory:` line's "reserved" went.
    #[arg(long)]
    pub memblock: bool,
    /// After the log, the cost counters of the boot: per CPU, the MMU's page walks, TLB hits,
    /// misses and evictions, INVLPGs, CR3 reloads, full flushes and faults; and the kmap_local
    /// maps.
    #[arg(long)]
    pub stats: bool,
    /// Print the log (and what --memblock / --stats add) as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Options of `highmem proc`.
#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct ProcArgs {
    /// The file: meminfo, zoneinfo, buddyinfo, pagetypeinfo, vmstat, sys/vm/min_free_kbytes, …
    #[arg(value_name = "FILE")]
    pub file: String,
    #[command(flatten)]
    pub boot: BootOpts,
    /// Print the file's figures as JSON instead of the kernel's text.
    #[arg(long)]
    pub json: bool,
}

fn spec_is_i386(cfg: &kernel::config::KernelConfig) -> bool {
    cfg.arch == kernel::config::Arch::I386
}

/// Boot as the options say and apply the sysctls.
/// Returns the booted kernel and the run's one-line header.
pub fn boot_machine(args: &BootOpts, err: &mut impl Write) -> Result<(Kernel, String), CliError> {
    let spec = args.machine.resolve(err)?;
    let header = spec.header();
    let MachineSpec {
        ram,
        cpus,
        cfg,
        e820,
        cmdline,
        design,
        pte_map,
        tlb,
        ..
    } = spec;
    // Reject impossible machines with the layout's own words before booting (the 64-bit
    // kernel's boot says why itself).
    if spec_is_i386(&cfg) {
        kernel::layout::setup_layout(&e820, &cfg, &cmdline, cpus).map_err(no_boot)?;
    }
    let mut opts = BootOptions::new(ram, cpus.min(cfg.nr_cpus), cfg);
    opts.cmdline = args.machine.append.clone();
    opts.runtime_profile = !args.no_runtime;
    opts.design = design;
    opts.pte_map = pte_map;
    opts.tlb = tlb;
    if let Some(s) = &args.initrd {
        // Sizes read as --ram's: a bare number is MiB, suffixes K/M/G.
        opts.initrd_size = if s.trim() == "0" {
            0
        } else {
            parse_ram_size(s).map_err(|e| CliError::Usage(format!("--initrd {s}: {e}")))?
        };
    }
    let mut k = boot(&opts).map_err(|e| match e {
        // The machine itself cannot be built (QEMU would refuse to start).
        BootError::Config(m) => CliError::Usage(m),
        other => CliError::NoBoot(format!("the kernel would not boot: {other}")),
    })?;
    for s in &args.sysctl {
        apply_sysctl(&mut k, s)?;
    }
    Ok((k, header))
}

/// `sysctl -w vm.NAME=VALUE`.
pub(crate) fn apply_sysctl(k: &mut Kernel, spec: &str) -> Result<(), CliError> {
    let (name, value) = spec
        .split_once('=')
        .ok_or_else(|| CliError::Usage(format!("--sysctl {spec}: expected NAME=VALUE")))?;
    let name = name.trim().trim_start_matches("vm.");
    let nums: Result<Vec<i64>, _> = value.split_whitespace().map(str::parse::<i64>).collect();
    let nums = nums.map_err(|_| CliError::Usage(format!("--sysctl {spec}: not a number")))?;
    let one = || -> Result<i64, CliError> {
        match nums.as_slice() {
            [v] => Ok(*v),
            _ => Err(CliError::Usage(format!(
                "--sysctl {spec}: expected one value"
            ))),
        }
    };
    let n = &mut k.node;
    let r = match name {
        "min_free_kbytes" => n.sysctl_min_free_kbytes(one()?),
        "watermark_scale_factor" => n.sysctl_watermark_scale_factor(one()?),
        "watermark_boost_factor" => n.sysctl_watermark_boost_factor(one()?),
        "percpu_pagelist_high_fraction" => n.sysctl_percpu_pagelist_high_fraction(one()?),
        "lowmem_reserve_ratio" => n.sysctl_lowmem_reserve_ratio(&nums),
        other => {
            return Err(CliError::Usage(format!(
                "--sysctl {other}: writable here are min_free_kbytes, watermark_scale_factor, \
                 watermark_boost_factor, percpu_pagelist_high_fraction, lowmem_reserve_ratio"
            )))
        }
    };
    // The kernel answers a bad write with EINVAL: the value is refused, nothing changes.
    r.map_err(|e| CliError::Usage(format!("--sysctl {spec}: {e}")))
}

/// Run `highmem boot`: the simulated kernel's log.
pub fn run_boot(
    args: &BootArgs,
    out: &mut impl Write,
    err: &mut impl Write,
) -> Result<(), CliError> {
    let (k, header) = boot_machine(&args.boot, err)?;
    let log: Vec<&str> = k.log.console().collect();
    let memblock = args.memblock.then(|| memblock_lines(&k));
    let stats = args.stats.then(|| stats_lines(&k));
    if args.json {
        let report = BootReport {
            header: &header,
            log,
            memblock,
            stats,
        };
        return super::write_json(out, &report);
    }
    writeln!(out, "{header}")?;
    for line in &log {
        writeln!(out, "{line}")?;
    }
    for line in memblock.iter().chain(stats.iter()).flatten() {
        writeln!(out, "{line}")?;
    }
    Ok(())
}

/// What `highmem boot --json` prints.
#[derive(serde::Serialize)]
struct BootReport<'a> {
    header: &'a str,
    log: Vec<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    memblock: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stats: Option<Vec<String>>,
}

/// `--memblock`: memblock's reservations when the buddy allocator took over.
fn memblock_lines(k: &Kernel) -> Vec<String> {
    reserved_lines(&k.reserved_at_mem_init)
}

/// memblock's reservations by name, with their total.
fn reserved_lines(reserved: &[(&'static str, u64)]) -> Vec<String> {
    let mut lines = vec![
        "memblock reserved at mem_init (by address; the first MiB includes the BIOS hole):"
            .to_string(),
    ];
    let mut total = 0;
    for (name, bytes) in reserved {
        total += bytes;
        lines.push(format!(
            "  {:>10} bytes {:>8}K  {name}",
            bytes,
            bytes.div_ceil(1024)
        ));
    }
    lines.push(format!(
        "  {:>10} bytes {:>8}K  total",
        total,
        total.div_ceil(1024)
    ));
    lines
}

/// `--stats`: the boot's cost counters, per CPU, and the kmap_local maps.
fn stats_lines(k: &Kernel) -> Vec<String> {
    let mut lines = Vec::new();
    for cpu in &k.machine.cpus {
        let c = cpu.counters();
        lines.push(format!(
            "cpu{}: walks {} tlb_hits {} tlb_misses {} tlb_evictions {} invlpg {} cr3_reloads {} full_flushes {} page_faults {}",
            cpu.id,
            c.walks,
            c.tlb_hits,
            c.tlb_misses,
            c.tlb_evictions,
            c.invlpg,
            c.cr3_reloads,
            c.full_flushes,
            c.page_faults
        ));
    }
    lines.push(format!(
        "kmap_local: {} maps, {} unmaps",
        k.kmap_local.maps, k.kmap_local.unmaps
    ));
    lines
}

/// Run `highmem proc FILE`.
pub fn run_proc(
    args: &ProcArgs,
    out: &mut impl Write,
    err: &mut impl Write,
) -> Result<(), CliError> {
    let name = args.file.trim_start_matches("/proc/");
    if !live::PROC_FILES.contains(&name) {
        return Err(CliError::Usage(format!(
            "proc {}: the model has {}",
            args.file,
            live::PROC_FILES.join(", ")
        )));
    }
    let (k, header) = boot_machine(&args.boot, err)?;
    let text = live::read(&k, name)
        .ok_or_else(|| CliError::Usage(format!("proc {}: no such file", args.file)))?;
    if args.json {
        return super::write_json(out, &proc_json(&k, name, &header, &text));
    }
    // The file itself stays byte for byte the kernel's format; the header goes to stderr.
    writeln!(err, "{header}")?;
    write!(out, "{text}")?;
    Ok(())
}

/// `highmem proc FILE --json`: the file's parsed figures where the model has a structure
/// for them, else its lines.
fn proc_json(k: &Kernel, name: &str, header: &str, text: &str) -> serde_json::Value {
    use serde_json::json;
    let data = match name {
        "meminfo" => serde_json::to_value(live::meminfo(k)),
        "zoneinfo" => serde_json::to_value(live::zoneinfo(k)),
        "buddyinfo" => serde_json::to_value(live::buddyinfo(k)),
        "pagetypeinfo" => serde_json::to_value(live::pagetypeinfo(k)),
        "vmstat" => serde_json::to_value(live::vmstat(k)),
        _ => Ok(json!(text.lines().collect::<Vec<_>>())),
    }
    .unwrap_or_else(|_| json!(text.lines().collect::<Vec<_>>()));
    json!({ "header": header, "file": format!("/proc/{name}"), "data": data })
}
