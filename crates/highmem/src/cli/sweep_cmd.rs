//! `highmem sweep SCENARIO --set key=v1,v2,… [--set …]`: the grid of runs, one JSON line
//! per run (its parameters and the figures it ended with).
//!
//! The grid is the product of the `--set` lists in the order given, the last key varying
//! fastest; run i is in shard K of N when i mod N = K - 1, so the N shards of an array job
//! (any batch scheduler's) together print exactly the lines of the whole sweep. `--jobs`
//! runs on local threads; lines come out in grid order whatever finished first.

use super::compare_cmd::{apply_param, first_line, load};
use super::CliError;
use crate::scenario::{self, RunOptions, Scenario};
use clap::Args;
use std::io::Write;

/// Options of `highmem sweep`.
#[derive(Args, Debug)]
pub struct SweepArgs {
    /// The scenario file (TOML).
    #[arg(value_name = "SCENARIO")]
    pub scenario: std::path::PathBuf,
    /// A machine key and its values: ram, cpus, pae, kernel, variant, design, vmsplit,
    /// append, seed (e.g. --set ram=1G,2G --set seed=1,2,3).
    #[arg(long = "set", value_name = "KEY=V1,V2,…", required = true)]
    pub set: Vec<String>,
    /// Run only shard K of N (1-based), e.g. 2/4.
    #[arg(long, value_name = "K/N")]
    pub shard: Option<String>,
    /// Local threads.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub jobs: usize,
    /// Output is JSON lines already; accepted so every command takes it.
    #[arg(long)]
    pub json: bool,
}

type Grid = Vec<Vec<(String, String)>>;

/// The grid: every combination of the `--set` values, last key fastest.
fn grid(sets: &[String]) -> Result<Grid, CliError> {
    let mut out: Grid = vec![Vec::new()];
    for s in sets {
        let (k, vs) = s
            .split_once('=')
            .ok_or_else(|| CliError::Usage(format!("--set {s}: expected KEY=V1,V2,…")))?;
        let vals: Vec<&str> = vs.split(',').filter(|v| !v.is_empty()).collect();
        if vals.is_empty() {
            return Err(CliError::Usage(format!("--set {s}: no values")));
        }
        out = out
            .into_iter()
            .flat_map(|p| {
                vals.iter().map(move |v| {
                    let mut q = p.clone();
                    q.push((k.to_string(), v.to_string()));
                    q
                })
            })
            .collect();
    }
    Ok(out)
}

/// `K/N` with 1 ≤ K ≤ N.
fn parse_shard(s: &str) -> Result<(usize, usize), CliError> {
    let bad = || CliError::Usage(format!("--shard {s}: expected K/N with 1 <= K <= N"));
    let (k, n) = s.split_once('/').ok_or_else(bad)?;
    let (k, n): (usize, usize) = (
        k.trim().parse().map_err(|_| bad())?,
        n.trim().parse().map_err(|_| bad())?,
    );
    if k == 0 || n == 0 || k > n {
        return Err(bad());
    }
    Ok((k, n))
}

/// One run of the grid as its JSON line.
fn run_one(
    name: &str,
    src: &str,
    base: &Scenario,
    i: usize,
    params: &[(String, String)],
) -> String {
    let mut s = base.clone();
    let mut opts = RunOptions::default();
    let mut p = serde_json::Map::new();
    let mut bad = None;
    for (k, v) in params {
        p.insert(k.clone(), serde_json::Value::String(v.clone()));
        if let Err(e) = apply_param(&mut s, &mut opts, k, v) {
            bad.get_or_insert(e);
        }
    }
    let mut line = serde_json::Map::new();
    line.insert("run".into(), i.into());
    line.insert("params".into(), serde_json::Value::Object(p));
    let r = match bad {
        Some(e) => Err(e),
        None => scenario::run_scenario_with(name, src, &s, &opts, &mut std::io::sink())
            .map_err(|e| first_line(&e.to_string())),
    };
    match r {
        Ok(f) => {
            line.insert("header".into(), f.header.into());
            line.insert(
                "result".into(),
                serde_json::to_value(&f.summary).unwrap_or_default(),
            );
        }
        Err(e) => {
            line.insert("error".into(), e.into());
        }
    }
    serde_json::Value::Object(line).to_string()
}

/// Run `highmem sweep`.
pub fn run_sweep(
    args: &SweepArgs,
    out: &mut impl Write,
    _err: &mut impl Write,
) -> Result<(), CliError> {
    let (name, src, base) = load(&args.scenario)?;
    let g = grid(&args.set)?;
    for (k, v) in g.first().into_iter().flatten() {
        apply_param(&mut base.clone(), &mut RunOptions::default(), k, v)
            .map_err(CliError::Usage)?;
    }
    let (k, n) = match &args.shard {
        Some(s) => parse_shard(s)?,
        None => (1, 1),
    };
    let mine: Vec<usize> = (0..g.len()).filter(|i| i % n == k - 1).collect();
    let jobs = args.jobs.clamp(1, 64);
    let mut lines: Vec<Option<String>> = vec![None; mine.len()];
    std::thread::scope(|sc| {
        let chunks: Vec<_> = (0..jobs)
            .map(|t| {
                let (g, mine, name, src, base) = (&g, &mine, &name, &src, &base);
                sc.spawn(move || {
                    (t..mine.len())
                        .step_by(jobs)
                        .map(|j| (j, run_one(name, src, base, mine[j], &g[mine[j]])))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for c in chunks {
            let done = c.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
            for (j, l) in done {
                lines[j] = Some(l);
            }
        }
    });
    for l in lines.into_iter().flatten() {
        writeln!(out, "{l}")?;
    }
    Ok(())
}
