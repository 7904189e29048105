//! `highmem driver`: seed 000's video-capture driver building a DMA scatter-gather list of a
//! vmalloc'ed buffer in the four ways the seed discusses, run on each kernel design (or the
//! one `--design` names) and compared with the pages the buffer really has.

use super::machine_args::MachineArgs;
use super::{write_json, CliError};
use clap::Args;
use kernel::design::KernelDesign;
use kernel::driver::{Buffer, DriverRun, Method, Outcome};
use kernel::{boot, BootError, BootOptions};
use std::io::Write;

/// Options of `highmem driver`.
#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct DriverArgs {
    #[command(flatten)]
    pub machine: MachineArgs,
    /// Pages of each capture buffer.
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub pages: u64,
    /// A loaded machine: user pages hold this much high memory (512M, 2G; a bare number is
    /// MiB) before the driver runs, so page tables allocated from high memory lie further up.
    #[arg(long, value_name = "SIZE")]
    pub highmem_used: Option<String>,
    /// Print the runs as JSON.
    #[arg(long)]
    pub json: bool,
}

/// One design's result: its run, or why the variant does not exist in it.
#[derive(serde::Serialize)]
struct DesignResult {
    design: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    run: Option<DriverRun>,
    #[serde(skip_serializing_if = "Option::is_none")]
    not_in_design: Option<String>,
    /// Pages of HighMem `--highmem-used` took before the driver ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    highmem_used_pages: Option<u64>,
}

/// Run `highmem driver`.
pub fn run_driver(
    args: &DriverArgs,
    out: &mut impl Write,
    err: &mut impl Write,
) -> Result<(), CliError> {
    if args.pages == 0 || args.pages > 4096 {
        return Err(CliError::Usage(format!(
            "--pages {}: the capture buffer takes 1 to 4096 pages",
            args.pages
        )));
    }
    let spec = args.machine.resolve(err)?;
    let designs: Vec<KernelDesign> = if spec.design_given {
        vec![spec.design]
    } else {
        KernelDesign::ALL.to_vec()
    };
    let mut header = spec.header();
    if !spec.design_given {
        header = header.replace(
            &format!("design {}", spec.design.name()),
            "designs linux-6.1, highpte-2.5, pte-highmem-2.4",
        );
    }
    let mut results = Vec::new();
    for d in designs {
        if let Err(e) = spec.variant.check_design(d) {
            results.push(DesignResult {
                design: d.name(),
                run: None,
                not_in_design: Some(e.to_string()),
                highmem_used_pages: None,
            });
            continue;
        }
        let mut opts =
            BootOptions::new(spec.ram, spec.cpus.min(spec.cfg.nr_cpus), spec.cfg.clone());
        opts.cmdline = args.machine.append.clone();
        opts.design = d;
        if d == KernelDesign::Linux61 {
            opts.pte_map = spec.pte_map;
        }
        opts.tlb = spec.tlb;
        let mut k = boot(&opts).map_err(|e| match e {
            BootError::Config(m) => CliError::Usage(m),
            other => CliError::NoBoot(format!("the kernel would not boot: {other}")),
        })?;
        let mut taken = None;
        if let Some(sz) = &args.highmem_used {
            let bytes = super::parse_ram_size(sz)
                .map_err(|e| CliError::Usage(format!("--highmem-used {sz}: {e}")))?;
            taken = Some(k.occupy_highmem(bytes, 0));
        }
        let run = k.run_capture_driver(args.pages, 0).map_err(|e| {
            CliError::NoBoot(format!("the driver could not allocate its buffer: {e}"))
        })?;
        results.push(DesignResult {
            design: d.name(),
            run: Some(run),
            not_in_design: None,
            highmem_used_pages: taken,
        });
    }
    if args.json {
        return write_json(out, &results);
    }
    writeln!(out, "{header}")?;
    writeln!(
        out,
        "capture buffers: {} pages each, vmalloc_32 and vmalloc; SG list entries are physical addresses (kvirt_to_pa)",
        args.pages
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "{:<16} {:<34} {:<16} vmalloc",
        "design", "version", "vmalloc_32"
    )?;
    for r in &results {
        let Some(run) = &r.run else {
            writeln!(out, "{:<16} (variant not in this design)", r.design)?;
            continue;
        };
        for m in Method::ALL {
            let cell = |b: Buffer| {
                run.rows
                    .iter()
                    .find(|row| row.method == m && row.buffer == b)
                    .map_or("", |row| row.outcome.short())
            };
            if m == Method::GetUserPages {
                writeln!(
                    out,
                    "{:<16} {:<34} {} (a pinned user buffer)",
                    r.design,
                    m.label(),
                    cell(Buffer::User)
                )?;
                continue;
            }
            writeln!(
                out,
                "{:<16} {:<34} {:<16} {}",
                r.design,
                m.label(),
                cell(Buffer::Vmalloc32),
                cell(Buffer::Vmalloc)
            )?;
        }
    }
    writeln!(out)?;
    writeln!(out, "where the buffers and their page tables are:")?;
    for r in &results {
        let Some(run) = &r.run else { continue };
        if let Some(n) = r.highmem_used_pages {
            writeln!(
                out,
                "  {:<16} {n} pages of HighMem held before the driver ran",
                r.design
            )?;
        }
        for b in &run.buffers {
            let ptes: Vec<String> = b
                .pte_pages
                .iter()
                .map(|(pfn, high)| {
                    format!(
                        "pfn {pfn:#x} ({})",
                        if *high { "HighMem" } else { "lowmem" }
                    )
                })
                .collect();
            writeln!(
                out,
                "  {:<16} {:<10} at {:#010x}: {} pages, {} in HighMem; PTE pages {}",
                r.design,
                b.buffer.name(),
                b.addr,
                b.pages,
                b.highmem_pages,
                ptes.join(", ")
            )?;
        }
    }
    writeln!(out)?;
    writeln!(out, "debug checks:")?;
    for r in &results {
        if let Some(why) = &r.not_in_design {
            writeln!(out, "  {}: {why}", r.design)?;
            continue;
        }
        let Some(run) = &r.run else { continue };
        for row in &run.rows {
            if row.outcome == Outcome::Right {
                continue;
            }
            writeln!(
                out,
                "  {} {} {}: {}",
                r.design,
                row.method.label(),
                row.buffer.name(),
                row.outcome.detail()
            )?;
        }
    }
    Ok(())
}
