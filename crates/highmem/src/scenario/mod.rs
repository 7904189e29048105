//! Scenario files: a machine and an ordered list of kernel-level steps, in TOML.
//!
//! A scenario is checked whole before anything runs — the file's syntax and keys
//! (`parse.rs`), then the machine and every step against it (`check.rs`: sizes, GFP
//! names, CPUs, /proc files, and the flow of names: a step may only free what an earlier
//! step allocated) — so a mistake is reported with file, line, column and a hint, and
//! nothing is lost to a half-finished run. `run.rs` then boots the machine and executes the
//! steps on it, printing what each did in the kernel's own words. The format is documented
//! in `docs/scenarios.md`.

mod check;
mod error;
mod parse;
mod run;
mod user;

pub use error::ScenarioError;
pub use parse::{parse as parse_str, MachineSection, Scenario, Size, Step};
pub use run::{run_scenario, run_scenario_with, Finished, RunOptions, RunSummary};

/// Read and check a scenario file.
pub fn load(path: &std::path::Path) -> Result<Scenario, ScenarioError> {
    let src = std::fs::read_to_string(path).map_err(|e| ScenarioError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    let name = path.display().to_string();
    let scenario = parse::parse(&name, &src)?;
    check::check(&name, &src, &scenario)?;
    Ok(scenario)
}
