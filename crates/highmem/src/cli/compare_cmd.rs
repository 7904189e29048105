//! `highmem compare SCENARIO --variants … --designs … --vmsplit …`: the scenario once per
//! combination of machine settings, the figures each run ends with side by side.
//!
//! Every run is the same scenario file with `[machine]` keys replaced, so a difference in
//! the table is the kernel build, design or split, nothing else.

use super::{write_json, CliError};
use crate::scenario::{self, RunOptions, RunSummary, Scenario};
use clap::Args;
use std::io::Write;
use std::path::Path;
use toml::Spanned;

/// Options of `highmem compare`.
#[derive(Args, Debug)]
pub struct CompareArgs {
    /// The scenario file (TOML).
    #[arg(value_name = "SCENARIO")]
    pub scenario: std::path::PathBuf,
    /// Build variants, comma-separated (nohighmem, 4GB, 4GB-highpte, 64GB, 64GB-highpte, x86_64).
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub variants: Vec<String>,
    /// Kernel designs, comma-separated (linux-6.1, highpte-2.5, pte-highmem-2.4).
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub designs: Vec<String>,
    /// User/kernel splits, comma-separated (3G, 3G_OPT, 2G, 2G_OPT, 1G).
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub vmsplit: Vec<String>,
    /// Seed of the runs' interleavings (default: the scenario's).
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Print the runs as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Read and parse a scenario file (checked when it runs).
pub(crate) fn load(path: &Path) -> Result<(String, String, Scenario), CliError> {
    let name = path.display().to_string();
    let src = std::fs::read_to_string(path).map_err(|e| CliError::Usage(format!("{name}: {e}")))?;
    let s = scenario::parse_str(&name, &src).map_err(|e| CliError::Usage(e.to_string()))?;
    Ok((name, src, s))
}

/// Set machine key `key` of `s` to `value` (`seed` goes to `opts`).
pub(crate) fn apply_param(
    s: &mut Scenario,
    opts: &mut RunOptions,
    key: &str,
    value: &str,
) -> Result<(), String> {
    let m = &mut s.machine;
    let text = || Some(Spanned::new(0..0, value.to_string()));
    let num = |what: &str| {
        value
            .parse::<u64>()
            .map_err(|_| format!("{key}={value}: {what} is a number"))
    };
    match key {
        "ram" => m.ram = text(),
        "variant" => m.variant = text(),
        "design" => m.design = text(),
        "pte_map" => m.pte_map = text(),
        "vmsplit" => m.vmsplit = text(),
        "kernel" => m.kernel = text(),
        "append" => m.append = value.to_string(),
        "cpus" => m.cpus = u32::try_from(num("cpus")?).map_err(|e| e.to_string())?,
        "pae" => {
            m.pae = value
                .parse()
                .map_err(|_| format!("pae={value}: true or false"))?
        }
        "seed" => opts.seed = Some(num("seed")?),
        _ => {
            return Err(format!(
                "unknown key `{key}`: one of ram, cpus, pae, kernel, variant, design, pte_map, vmsplit, append, seed"
            ))
        }
    }
    Ok(())
}

/// One run's settings and how it ended.
#[derive(serde::Serialize)]
struct Row {
    variant: String,
    design: String,
    vmsplit: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<RunSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// Run `highmem compare`.
pub fn run_compare(
    args: &CompareArgs,
    out: &mut impl Write,
    _err: &mut impl Write,
) -> Result<(), CliError> {
    let (name, src, base) = load(&args.scenario)?;
    let or_default = |v: &[String], d: Option<&Spanned<String>>, dflt: &str| -> Vec<String> {
        if v.is_empty() {
            vec![d.map_or(dflt.to_string(), |x| x.get_ref().clone())]
        } else {
            v.to_vec()
        }
    };
    let variants = or_default(&args.variants, base.machine.variant.as_ref(), "-");
    let designs = or_default(&args.designs, base.machine.design.as_ref(), "linux-6.1");
    let splits = or_default(&args.vmsplit, base.machine.vmsplit.as_ref(), "3G");
    // The 64-bit kernel has no split to choose: left alone unless asked for.
    let split_given = !args.vmsplit.is_empty() || base.machine.vmsplit.is_some();
    let mut rows = Vec::new();
    for v in &variants {
        for d in &designs {
            for sp in &splits {
                let mut s = base.clone();
                let mut opts = RunOptions {
                    seed: args.seed,
                    trace: None,
                };
                if v != "-" {
                    apply_param(&mut s, &mut opts, "variant", v).map_err(CliError::Usage)?;
                }
                apply_param(&mut s, &mut opts, "design", d).map_err(CliError::Usage)?;
                let no_split = v == "x86_64" && !split_given;
                if !no_split {
                    apply_param(&mut s, &mut opts, "vmsplit", sp).map_err(CliError::Usage)?;
                }
                let r = scenario::run_scenario_with(&name, &src, &s, &opts, &mut std::io::sink());
                let (result, error) = match r {
                    Ok(f) => (Some(f.summary), None),
                    Err(CliError::Io(e)) => return Err(CliError::Io(e)),
                    Err(e) => (None, Some(first_line(&e.to_string()))),
                };
                rows.push(Row {
                    variant: v.clone(),
                    design: d.clone(),
                    vmsplit: if no_split {
                        "-".to_string()
                    } else {
                        sp.clone()
                    },
                    result,
                    error,
                });
            }
        }
    }
    if args.json {
        return write_json(out, &rows);
    }
    writeln!(out, "# highmem compare {name}: {} runs", rows.len())?;
    writeln!(
        out,
        "{:<13} {:<16} {:<7} {:<10} {:>10} {:>10} {:>10} {:>10} {:>9} {:>9} {:>7} {:>6} {:>8}",
        "variant",
        "design",
        "vmsplit",
        "stopped",
        "MemFree",
        "LowFree",
        "HighFree",
        "PageTables",
        "faults",
        "pte_kmaps",
        "kmaps",
        "sleeps",
        "invlpg"
    )?;
    for r in &rows {
        match &r.result {
            Some(x) => writeln!(
                out,
                "{:<13} {:<16} {:<7} {:<10} {:>7} kB {:>7} kB {:>7} kB {:>7} kB {:>9} {:>9} {:>7} {:>6} {:>8}",
                r.variant, r.design, r.vmsplit, x.stopped, x.mem_free_kb, x.low_free_kb,
                x.high_free_kb, x.page_tables_kb, x.page_faults, x.pte_kmaps, x.kmaps,
                x.kmap_sleeps, x.invlpg
            )?,
            None => writeln!(
                out,
                "{:<13} {:<16} {:<7} not run: {}",
                r.variant,
                r.design,
                r.vmsplit,
                r.error.as_deref().unwrap_or("")
            )?,
        }
    }
    Ok(())
}

/// The first line of a (possibly multi-line, located) error.
pub(crate) fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").to_string()
}
