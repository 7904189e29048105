//! Check a parsed scenario against its machine before anything runs: the machine itself
//! (as the command-line options would be), then every step — CPUs, GFP names, orders,
//! sizes against what the machine and the kernel allow, sysctl and /proc names — and the
//! flow of names (freeing something no earlier step holds is an error, as is reusing a
//! name for another kind of object).

use super::error::{at, ScenarioError};
use super::parse::{Scenario, Step};
use crate::cli::{CliError, MachineArgs, MachineSpec};
use std::collections::BTreeMap;
use std::ops::Range;
use toml::Spanned;

/// The GFP masks a step may name.
pub const GFP_NAMES: &[&str] = &[
    "GFP_KERNEL",
    "GFP_USER",
    "GFP_HIGHUSER",
    "GFP_HIGHUSER_MOVABLE",
    "GFP_DMA",
    "GFP_ATOMIC",
    "GFP_NOWAIT",
];

/// The vm sysctls a step may write.
pub const SYSCTLS: &[&str] = &[
    "min_free_kbytes",
    "watermark_scale_factor",
    "watermark_boost_factor",
    "percpu_pagelist_high_fraction",
];

/// `MAX_ORDER - 1` of the i386 kernels.
const MAX_PAGE_ORDER: u32 = 10;
/// `KMALLOC_MAX_SIZE`: 2^(MAX_ORDER - 1) pages.
const KMALLOC_MAX_SIZE: u64 = 4 << 20;
/// Iterations a `repeat` may ask for.
const MAX_REPEAT: u32 = 1_000_000;

/// What a name holds, for the flow check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Pages,
    Kmalloc,
    Vmalloc,
    Kmap,
}

impl Kind {
    fn of(step: &Step) -> Option<(Kind, &str)> {
        match step {
            Step::AllocPages { name, .. } => Some((Kind::Pages, name)),
            Step::Kmalloc { name, .. } => Some((Kind::Kmalloc, name)),
            Step::Vmalloc { name, .. } => Some((Kind::Vmalloc, name)),
            Step::Kmap { name, .. } => Some((Kind::Kmap, name)),
            _ => None,
        }
    }
}

/// The machine as the command line would describe it.
pub fn machine_args(s: &Scenario) -> MachineArgs {
    let m = &s.machine;
    MachineArgs {
        ram: m.ram.as_ref().map(|r| r.get_ref().clone()),
        pae: m.pae,
        cpus: m.cpus,
        kernel: m.kernel.as_ref().map(|k| k.get_ref().clone()),
        append: m.append.clone(),
        design: m.design.as_ref().map(|d| d.get_ref().clone()),
        variant: m.variant.as_ref().map(|v| v.get_ref().clone()),
    }
}

struct Ctx<'a> {
    name: &'a str,
    src: &'a str,
    cpus: usize,
    ram: u64,
    vmalloc_bytes: u64,
    held: BTreeMap<String, Kind>,
}

impl Ctx<'_> {
    fn err(&self, span: Range<usize>, msg: &str, hint: &str) -> ScenarioError {
        at(self.name, self.src, span, msg, hint)
    }
}

/// Check the scenario; `name`/`src` locate errors.
pub fn check(name: &str, src: &str, s: &Scenario) -> Result<MachineSpec, ScenarioError> {
    // Point at the key the machine's error is most likely about.
    let m = &s.machine;
    let machine_span = [&m.variant, &m.design, &m.kernel, &m.ram]
        .into_iter()
        .flatten()
        .next()
        .map_or(0..0, |r| r.span());
    let spec = machine_args(s).resolve(&mut std::io::sink()).map_err(|e| {
        let msg = match e {
            CliError::Usage(m) | CliError::NoBoot(m) => m,
            CliError::Io(e) => e.to_string(),
        };
        at(
            name,
            src,
            machine_span.clone(),
            &msg,
            "fix the [machine] table",
        )
    })?;
    let layout = kernel::layout::setup_layout(&spec.e820, &spec.cfg, &spec.cmdline, spec.cpus)
        .map_err(|e| {
            at(
                name,
                src,
                machine_span,
                &e.to_string(),
                "this machine does not boot",
            )
        })?;
    for (k, v) in &s.machine.sysctl {
        if !SYSCTLS.contains(&k.as_str()) {
            let hint = format!("writable here: {}", SYSCTLS.join(", "));
            return Err(at(
                name,
                src,
                v.span(),
                &format!("unknown sysctl `{k}`"),
                &hint,
            ));
        }
    }
    let mut ctx = Ctx {
        name,
        src,
        cpus: spec.cpus as usize,
        ram: spec.ram,
        vmalloc_bytes: layout.vmalloc_end.as_u64() - layout.vmalloc_start.as_u64(),
        held: BTreeMap::new(),
    };
    check_steps(&mut ctx, &s.steps)?;
    for f in &s.report.proc {
        check_proc(&ctx, f.get_ref(), f.span())?;
    }
    Ok(spec)
}

fn check_steps(ctx: &mut Ctx, steps: &[Spanned<Step>]) -> Result<(), ScenarioError> {
    for step in steps {
        check_step(ctx, step.get_ref(), step.span())?;
    }
    Ok(())
}

fn check_step(ctx: &mut Ctx, step: &Step, span: Range<usize>) -> Result<(), ScenarioError> {
    match step {
        Step::AllocPages {
            order,
            count,
            gfp,
            cpu,
            ..
        } => {
            check_cpu(ctx, *cpu, &span)?;
            if !GFP_NAMES.contains(&gfp.as_str()) {
                let hint = format!("one of {}", GFP_NAMES.join(", "));
                return Err(ctx.err(span, &format!("unknown GFP mask `{gfp}`"), &hint));
            }
            if *order > MAX_PAGE_ORDER {
                return Err(ctx.err(
                    span,
                    &format!("order {order} is above MAX_ORDER - 1 ({MAX_PAGE_ORDER})"),
                    "the buddy allocator hands out blocks of 2^0 to 2^10 pages",
                ));
            }
            check_total(ctx, u64::from(*count) << (order + 12), &span)?;
        }
        Step::Kmalloc {
            size, count, cpu, ..
        } => {
            check_cpu(ctx, *cpu, &span)?;
            if size.0 == 0 || size.0 > KMALLOC_MAX_SIZE {
                return Err(ctx.err(
                    span,
                    &format!(
                        "kmalloc of {} bytes: the kernel takes 1 to {KMALLOC_MAX_SIZE}",
                        size.0
                    ),
                    "larger buffers are vmalloc's job",
                ));
            }
            check_total(ctx, size.0 * u64::from(*count), &span)?;
        }
        Step::Vmalloc { size, cpu, .. } => {
            check_cpu(ctx, *cpu, &span)?;
            if size.0 == 0 || size.0 > ctx.vmalloc_bytes {
                let hint = format!(
                    "the vmalloc area of this machine is {} MiB (vmalloc= changes it)",
                    ctx.vmalloc_bytes >> 20
                );
                return Err(ctx.err(
                    span,
                    &format!("vmalloc of {} bytes does not fit", size.0),
                    &hint,
                ));
            }
        }
        Step::Kmap { count, cpu, .. } => {
            check_cpu(ctx, *cpu, &span)?;
            check_total(ctx, u64::from(*count) << 12, &span)?;
        }
        Step::Free { name } => {
            if ctx.held.remove(name).is_none() {
                return Err(ctx.err(
                    span,
                    &format!("`{name}` holds nothing here"),
                    "free a name an earlier step allocated (and has not freed yet)",
                ));
            }
        }
        Step::Sysctl { name, .. } if !SYSCTLS.contains(&name.as_str()) => {
            let hint = format!("writable here: {}", SYSCTLS.join(", "));
            return Err(ctx.err(span, &format!("unknown sysctl `{name}`"), &hint));
        }
        Step::Sysctl { .. } => {}
        Step::Proc { file } => check_proc(ctx, file, span.clone())?,
        Step::Repeat { times, steps } => {
            if *times == 0 || *times > MAX_REPEAT {
                return Err(ctx.err(span, &format!("repeat {times} times"), "1 to 1000000 times"));
            }
            // Twice is enough to find a body that frees what only the first pass holds.
            for _ in 0..(*times).min(2) {
                for inner in steps {
                    check_step(ctx, inner, span.clone())?;
                }
            }
        }
    }
    if let Some((kind, name)) = Kind::of(step) {
        if let Some(old) = ctx.held.insert(name.to_string(), kind) {
            if old != kind {
                return Err(ctx.err(
                    span,
                    &format!("`{name}` already holds {old:?} objects"),
                    "use another name",
                ));
            }
        }
    }
    Ok(())
}

fn check_cpu(ctx: &Ctx, cpu: usize, span: &Range<usize>) -> Result<(), ScenarioError> {
    if cpu >= ctx.cpus {
        let msg = format!("cpu {cpu}: the machine has {} CPU(s)", ctx.cpus);
        return Err(ctx.err(span.clone(), &msg, "CPUs are numbered from 0"));
    }
    Ok(())
}

fn check_total(ctx: &Ctx, bytes: u64, span: &Range<usize>) -> Result<(), ScenarioError> {
    if bytes > ctx.ram {
        let msg = format!(
            "{} MiB asked for on a machine with {} MiB of RAM",
            bytes >> 20,
            ctx.ram >> 20
        );
        return Err(ctx.err(span.clone(), &msg, "the allocation could never succeed"));
    }
    Ok(())
}

fn check_proc(ctx: &Ctx, file: &str, span: Range<usize>) -> Result<(), ScenarioError> {
    let f = file.trim_start_matches("/proc/");
    if !kernel::procfs::live::PROC_FILES.contains(&f) {
        let hint = format!("one of {}", kernel::procfs::live::PROC_FILES.join(", "));
        return Err(ctx.err(span, &format!("the model has no /proc/{f}"), &hint));
    }
    Ok(())
}
