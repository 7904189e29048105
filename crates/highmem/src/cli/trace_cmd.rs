//! `highmem trace SCENARIO [-e EVENT]…`: the scenario's kernel events in ftrace's text
//! format, as `cat /sys/kernel/tracing/trace` prints them after `trace-cmd start -e …`.
//!
//! Tracing starts after boot, with the first step. Timestamps are simulated: event n of
//! the run is at n microseconds, so the same scenario and seed print the same bytes. The
//! flags column is `.....` (the model keeps no irq or preempt state per event). Event
//! names and fields are documented in `kernel::trace` and docs/scenarios.md.

use super::compare_cmd::load;
use super::{write_json, CliError};
use crate::scenario::{self, RunOptions};
use clap::Args;
use kernel::trace::{Record, EVENTS};
use kernel::Kernel;
use std::io::Write;

/// Options of `highmem trace`.
#[derive(Args, Debug)]
pub struct TraceArgs {
    /// The scenario file (TOML).
    #[arg(value_name = "SCENARIO")]
    pub scenario: std::path::PathBuf,
    /// Enable an event, as trace-cmd's -e: `kmem:mm_page_alloc`, `mm_page_alloc`, or a
    /// whole system (`kmem`, `highmem`); repeatable. Default: every event.
    #[arg(short = 'e', long = "event", value_name = "EVENT")]
    pub events: Vec<String>,
    /// Seed of the run's interleavings (default: the scenario's).
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Print the events as JSON.
    #[arg(long)]
    pub json: bool,
}

/// The event mask `-e` selects (bit i: `EVENTS[i]`).
fn event_mask(sel: &[String]) -> Result<u32, CliError> {
    if sel.is_empty() {
        return Ok((1 << EVENTS.len()) - 1);
    }
    let mut mask = 0;
    for e in sel {
        let e = e.trim_end_matches(":*");
        let hits: u32 = EVENTS
            .iter()
            .enumerate()
            .filter(|(_, full)| {
                let (sys, name) = full.split_once(':').unwrap_or(("", full));
                **full == e || name == e || sys == e
            })
            .map(|(i, _)| 1 << i)
            .sum();
        if hits == 0 {
            return Err(CliError::Usage(format!(
                "-e {e}: no such event; the model has {}",
                EVENTS.join(", ")
            )));
        }
        mask |= hits;
    }
    Ok(mask)
}

/// `TASK-PID` of the task an event ran in (`<idle>-0` for the idle tasks).
fn task_of(k: &Kernel, r: &Record) -> (String, u32) {
    match k.sched.tasks.get(r.task) {
        Some(t) if !t.is_idle => (t.comm.clone(), t.pid),
        _ => ("<idle>".to_string(), 0),
    }
}

/// One event as the trace file prints it.
#[derive(serde::Serialize)]
struct Line {
    task: String,
    pid: u32,
    cpu: usize,
    timestamp: String,
    event: &'static str,
    fields: String,
}

/// Run `highmem trace`.
pub fn run_trace(
    args: &TraceArgs,
    out: &mut impl Write,
    _err: &mut impl Write,
) -> Result<(), CliError> {
    let mask = event_mask(&args.events)?;
    let (name, src, s) = load(&args.scenario)?;
    let opts = RunOptions {
        seed: args.seed,
        trace: Some(mask),
    };
    let f = scenario::run_scenario_with(&name, &src, &s, &opts, &mut std::io::sink())?;
    let mem_map_va = f.k.mem_map_phys + f.k.config.page_offset();
    let sizeof_page = f.k.config.sizeof_struct_page;
    let lines: Vec<Line> = f
        .events
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let (task, pid) = task_of(&f.k, r);
            let us = i as u64 + 1;
            Line {
                task,
                pid,
                cpu: r.cpu,
                timestamp: format!("{}.{:06}", us / 1_000_000, us % 1_000_000),
                event: EVENTS[r.event.index()],
                fields: r.event.fields(mem_map_va, sizeof_page),
            }
        })
        .collect();
    if args.json {
        return write_json(out, &lines);
    }
    let n = lines.len();
    let cpus = f.k.sched.cpus.len();
    write!(
        out,
        "# tracer: nop\n#\n# entries-in-buffer/entries-written: {n}/{n}   #P:{cpus}\n#\n\
#                                _-----=> irqs-off/BH-disabled\n\
#                               / _----=> need-resched\n\
#                              | / _---=> hardirq/softirq\n\
#                              || / _--=> preempt-depth\n\
#                              ||| / _-=> migrate-disable\n\
#                              |||| /     delay\n\
#           TASK-PID     CPU#  |||||  TIMESTAMP  FUNCTION\n\
#              | |         |   |||||     |         |\n"
    )?;
    for l in &lines {
        let name = l.event.split_once(':').map_or(l.event, |x| x.1);
        writeln!(
            out,
            "{:>16}-{:<7} [{:03}] ..... {:>12}: {name}: {}",
            l.task, l.pid, l.cpu, l.timestamp, l.fields
        )?;
    }
    Ok(())
}
