//! Check a parsed scenario against its machine before anything runs: the machine itself
//! (as the command-line options would be), then every step — CPUs, GFP names, orders,
//! sizes against what the machine and the kernel allow, sysctl and /proc names — and the
//! flow of names (freeing something no earlier step holds is an error, as is reusing a
//! name for another kind of object).

use super::error::{at, ScenarioError};
use super::parse::{Scenario, Step};
use crate::cli::{CliError, MachineArgs, MachineSpec};
use std::collections::{BTreeMap, BTreeSet};
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
        pte_map: m.pte_map.as_ref().map(|d| d.get_ref().clone()),
        variant: m.variant.as_ref().map(|v| v.get_ref().clone()),
        tlb: crate::cli::TlbArg::Core2,
    }
}

struct Ctx<'a> {
    name: &'a str,
    src: &'a str,
    cpus: usize,
    ram: u64,
    vmalloc_bytes: u64,
    /// TASK_SIZE (= PAGE_OFFSET of the split): no user mapping is larger.
    task_size: u64,
    held: BTreeMap<String, Kind>,
    /// Live processes by name.
    procs: BTreeSet<String>,
    /// Segments not yet removed, with their size.
    segs: BTreeMap<String, u64>,
    /// Mappings: owner process, size, whether a shm attachment.
    maps: BTreeMap<String, (String, u64, bool)>,
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
    let mut spec = spec;
    if let Some(v) = &s.machine.vmsplit {
        check_vmsplit(name, src, v, &mut spec)?;
    }
    if let Some(t) = &s.machine.tlb {
        spec.tlb = match t.get_ref().as_str() {
            "core2" => machine::TlbGeometry::Core2,
            "debug" => machine::TlbGeometry::Unbounded,
            other => {
                return Err(at(
                    name,
                    src,
                    t.span(),
                    &format!("unknown tlb `{other}`"),
                    "core2 (a real TLB, which evicts) or debug (never evicts)",
                ))
            }
        };
    }
    let (vmalloc_bytes, task_size) = if spec.cfg.arch == kernel::config::Arch::X86_64 {
        // The 64-bit kernel: its own boot says why a machine is too small; the vmalloc area
        // is the 4-level one and a 32-bit program gets IA32_PAGE_OFFSET.
        if let Some(v) = &s.machine.vmsplit {
            return Err(at(
                name,
                src,
                v.span(),
                "vmsplit is a 32-bit kernel's choice",
                "the x86_64 kernel's split is fixed (user space of a 32-bit program: 4 GiB)",
            ));
        }
        (
            kernel::x86_64::VMALLOC_END_64 - kernel::x86_64::VMALLOC_START_64,
            kernel::mm::process::IA32_PAGE_OFFSET,
        )
    } else {
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
        (
            layout.vmalloc_end.as_u64() - layout.vmalloc_start.as_u64(),
            spec.cfg.page_offset(),
        )
    };
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
        vmalloc_bytes,
        task_size,
        held: BTreeMap::new(),
        procs: BTreeSet::new(),
        segs: BTreeMap::new(),
        maps: BTreeMap::new(),
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
        _ => check_process_step(ctx, step, &span)?,
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

/// `vmsplit = "…"`: a known split the kernel's Kconfig allows.
fn check_vmsplit(
    name: &str,
    src: &str,
    v: &Spanned<String>,
    spec: &mut MachineSpec,
) -> Result<(), ScenarioError> {
    let Some(split) = vmsplit_by_name(v.get_ref()) else {
        return Err(at(
            name,
            src,
            v.span(),
            &format!("unknown vmsplit `{}`", v.get_ref()),
            "one of 3G, 3G_OPT, 2G, 2G_OPT, 1G (CONFIG_VMSPLIT_*)",
        ));
    };
    spec.cfg.vmsplit = split;
    if let Err(e) = spec.cfg.validate() {
        return Err(at(
            name,
            src,
            v.span(),
            &e.to_string(),
            "the PAE kernels take 3G, 2G or 1G",
        ));
    }
    Ok(())
}

/// `CONFIG_VMSPLIT_*` by the name a scenario gives it.
pub fn vmsplit_by_name(name: &str) -> Option<kernel::config::VmSplit> {
    use kernel::config::VmSplit;
    Some(match name {
        "3G" => VmSplit::Split3G,
        "3G_OPT" => VmSplit::Split3GOpt,
        "2G" => VmSplit::Split2G,
        "2G_OPT" => VmSplit::Split2GOpt,
        "1G" => VmSplit::Split1G,
        _ => return None,
    })
}

/// Most tasks `kmap_tasks` may start.
const MAX_KMAP_TASKS: u32 = 64;
/// Most children `shmwork` may fork (the reference's own limit is an int).
const MAX_CHILDREN: u32 = 100_000;

/// The user-process steps: processes, segments and mappings must exist when named.
fn check_process_step(
    ctx: &mut Ctx,
    step: &Step,
    span: &Range<usize>,
) -> Result<(), ScenarioError> {
    match step {
        Step::Spawn { name, cpu, .. } => {
            check_cpu(ctx, *cpu, span)?;
            new_proc(ctx, name, span)?;
        }
        Step::Fork { name, parent, cpu } => {
            check_cpu(ctx, *cpu, span)?;
            known_proc(ctx, parent, span)?;
            new_proc(ctx, name, span)?;
            // The child has the parent's mappings: `CHILD.MAPPING`.
            let inherited: Vec<(String, (String, u64, bool))> = ctx
                .maps
                .iter()
                .filter(|(_, m)| m.0 == *parent)
                .map(|(n, m)| (format!("{name}.{n}"), (name.clone(), m.1, m.2)))
                .collect();
            ctx.maps.extend(inherited);
        }
        Step::Exit { process, cpu } => {
            check_cpu(ctx, *cpu, span)?;
            known_proc(ctx, process, span)?;
            ctx.procs.remove(process);
            ctx.maps.retain(|_, m| m.0 != *process);
        }
        Step::Shmget { name, size, cpu } => {
            check_cpu(ctx, *cpu, span)?;
            if size.0 == 0 {
                return Err(ctx.err(span.clone(), "shmget of 0 bytes", "SHMMIN is 1 byte"));
            }
            check_total(ctx, size.0, span)?;
            if ctx.segs.insert(name.clone(), size.0).is_some() {
                return Err(ctx.err(
                    span.clone(),
                    &format!("segment `{name}` exists already"),
                    "use another name, or shm_rmid it first",
                ));
            }
        }
        Step::Shmat {
            name,
            process,
            segment,
            ..
        } => {
            known_proc(ctx, process, span)?;
            let Some(&size) = ctx.segs.get(segment) else {
                return Err(ctx.err(
                    span.clone(),
                    &format!("no segment `{segment}` here"),
                    "create it with an earlier `shmget` step (and do not shm_rmid it before)",
                ));
            };
            new_map(ctx, name, process, size, true, span)?;
        }
        Step::Shmdt { mapping } => {
            known_map(ctx, mapping, Some(true), span)?;
            ctx.maps.remove(mapping);
        }
        Step::ShmRmid { segment } if ctx.segs.remove(segment).is_none() => {
            return Err(ctx.err(
                span.clone(),
                &format!("no segment `{segment}` here"),
                "remove a segment an earlier `shmget` step created",
            ));
        }
        Step::Mmap {
            name,
            process,
            size,
            ..
        } => {
            known_proc(ctx, process, span)?;
            if size.0 == 0 || size.0 >= ctx.task_size {
                let msg = format!("mmap of {} bytes", size.0);
                let hint = format!(
                    "a mapping takes 1 byte to less than the {} MiB of user address space (TASK_SIZE)",
                    ctx.task_size >> 20
                );
                return Err(ctx.err(span.clone(), &msg, &hint));
            }
            new_map(ctx, name, process, size.0, false, span)?;
        }
        Step::Munmap { mapping } => {
            known_map(ctx, mapping, Some(false), span)?;
            ctx.maps.remove(mapping);
        }
        Step::Brk { process, size } => {
            known_proc(ctx, process, span)?;
            if size.0 >= ctx.task_size {
                let msg = format!("brk growth of {} bytes", size.0);
                let hint = format!("the heap lives below TASK_SIZE, {:#x}", ctx.task_size);
                return Err(ctx.err(span.clone(), &msg, &hint));
            }
        }
        Step::Touch { mapping, how, size } => {
            let len = known_map(ctx, mapping, None, span)?;
            if !["read", "write", "populate"].contains(&how.as_str()) {
                return Err(ctx.err(
                    span.clone(),
                    &format!("unknown touch `{how}`"),
                    "read, write or populate (MADV_POPULATE_READ)",
                ));
            }
            if size.is_some_and(|s| s.0 > len || s.0 == 0) {
                let msg = format!(
                    "touch of {} bytes of a {len}-byte mapping",
                    size.map_or(0, |s| s.0)
                );
                return Err(ctx.err(span.clone(), &msg, "touch at most the whole mapping"));
            }
        }
        Step::Shmwork {
            size,
            children,
            touch,
            ..
        } => {
            if size.0 < (1 << 20) || size.0 % (1 << 20) != 0 {
                return Err(ctx.err(
                    span.clone(),
                    &format!("shmwork segment of {} bytes", size.0),
                    "the workload takes a whole number of MiB",
                ));
            }
            check_total(ctx, size.0, span)?;
            if !["r", "w", "p"].contains(&touch.as_str()) {
                return Err(ctx.err(
                    span.clone(),
                    &format!("unknown touch `{touch}`"),
                    "r (read faults), w (write faults) or p (MADV_POPULATE_READ)",
                ));
            }
            if *children == 0 || *children > MAX_CHILDREN {
                return Err(ctx.err(
                    span.clone(),
                    &format!("{children} children"),
                    "1 to 100000 children",
                ));
            }
        }
        Step::KmapTasks { tasks, pages } => {
            if *tasks == 0 || *tasks > MAX_KMAP_TASKS || *pages == 0 {
                return Err(ctx.err(
                    span.clone(),
                    &format!("{tasks} tasks of {pages} kmaps"),
                    "1 to 64 tasks, each with at least one page",
                ));
            }
            check_total(ctx, (u64::from(*tasks) * u64::from(*pages)) << 12, span)?;
        }
        Step::Driver { pages } if *pages == 0 || *pages > 4096 => {
            return Err(ctx.err(
                span.clone(),
                &format!("driver buffers of {pages} pages"),
                "the capture buffer takes 1 to 4096 pages",
            ));
        }
        _ => {}
    }
    Ok(())
}

fn new_proc(ctx: &mut Ctx, name: &str, span: &Range<usize>) -> Result<(), ScenarioError> {
    if !ctx.procs.insert(name.to_string()) {
        return Err(ctx.err(
            span.clone(),
            &format!("process `{name}` exists already"),
            "give each live process its own name",
        ));
    }
    Ok(())
}

fn known_proc(ctx: &Ctx, name: &str, span: &Range<usize>) -> Result<(), ScenarioError> {
    if !ctx.procs.contains(name) {
        return Err(ctx.err(
            span.clone(),
            &format!("no process `{name}` here"),
            "spawn or fork it in an earlier step (and do not exit it before)",
        ));
    }
    Ok(())
}

fn new_map(
    ctx: &mut Ctx,
    name: &str,
    process: &str,
    size: u64,
    shm: bool,
    span: &Range<usize>,
) -> Result<(), ScenarioError> {
    if ctx.maps.contains_key(name) {
        return Err(ctx.err(
            span.clone(),
            &format!("mapping `{name}` exists already"),
            "give each mapping its own name",
        ));
    }
    ctx.maps
        .insert(name.to_string(), (process.to_string(), size, shm));
    Ok(())
}

/// The mapping's size; `shm` asks for an attachment (true) or an anonymous mapping (false).
fn known_map(
    ctx: &Ctx,
    name: &str,
    shm: Option<bool>,
    span: &Range<usize>,
) -> Result<u64, ScenarioError> {
    let Some((_, size, is_shm)) = ctx.maps.get(name) else {
        return Err(ctx.err(
            span.clone(),
            &format!("no mapping `{name}` here"),
            "name a mapping an earlier `shmat` or `mmap` step made (and nothing unmapped since)",
        ));
    };
    if let Some(want) = shm {
        if want != *is_shm {
            let (what, op) = if *is_shm {
                ("a shm attachment", "shmdt")
            } else {
                ("an anonymous mapping", "munmap")
            };
            let hint = format!("use `{op}` for it");
            return Err(ctx.err(span.clone(), &format!("`{name}` is {what}"), &hint));
        }
    }
    Ok(*size)
}
