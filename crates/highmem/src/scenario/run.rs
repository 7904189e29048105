//! Run a checked scenario: boot its machine, execute the steps in order and print, for each,
//! what it did and what the kernel logged meanwhile, then the report's /proc files.
//!
//! A failing allocation is what the kernel does — a report, and the run goes on; a task
//! that would sleep forever (a full PKMAP window with nobody to kunmap) stops the run
//! cleanly with the kernel's view of it.

use super::check::check;
use super::parse::{Scenario, Step};
use super::user::UserMap;
use crate::cli::apply_sysctl;
use crate::cli::{CliError, MachineSpec};
use kernel::gfp::{self, Gfp};
use kernel::mm::ProcId;
use kernel::procfs::live;
use kernel::sched::Blocking;
use kernel::Kernel;
use kernel::{boot, BootError, BootOptions};
use machine::{Pfn, VirtAddr};
use std::collections::BTreeMap;
use std::io::Write;

/// What a name holds at run time.
enum Held {
    Pages(Vec<(Pfn, u32, usize)>),
    Kmalloc(Vec<(VirtAddr, usize)>),
    Vmalloc(Vec<(u64, usize)>),
    Kmap(Vec<(Pfn, usize)>),
}

pub(super) struct Run<'a, W: Write> {
    pub(super) k: Kernel,
    pub(super) out: &'a mut W,
    held: BTreeMap<String, Held>,
    step_no: u64,
    /// Processes, segments (shmid) and mappings by the names the steps give them.
    pub(super) procs: BTreeMap<String, ProcId>,
    pub(super) segs: BTreeMap<String, u32>,
    pub(super) maps: BTreeMap<String, UserMap>,
    /// The seed of the interleavings.
    pub(super) seed: u64,
    /// Why the run stopped early, in the kernel's words.
    pub(super) stopped: Option<String>,
    /// A shmwork step's children done and whether the OOM killer ended it.
    pub(super) shmwork_done: Option<(u32, bool)>,
    /// Lines a step produced, printed under its `[n]` line.
    pub(super) pending: Vec<String>,
}

/// What a run is asked for beyond its file.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Overrides `[machine] seed`.
    pub seed: Option<u64>,
    /// Record these events (bit i: `kernel::trace::EVENTS[i]`) from the first step on.
    pub trace: Option<u32>,
}

/// The figures a run ends with: a row of `highmem compare`, a line of `highmem sweep`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RunSummary {
    /// Why the run stopped early ("deadlock", "OOM"), or "completed".
    pub stopped: String,
    /// Children a shmwork step got through.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub children_done: Option<u32>,
    pub mem_free_kb: i64,
    pub low_free_kb: i64,
    pub high_free_kb: i64,
    pub page_tables_kb: i64,
    pub slab_kb: i64,
    /// vmstat pgfault.
    pub page_faults: u64,
    /// Mappings of highmem PTE pages made by the user page-table paths.
    pub pte_kmaps: u64,
    pub kmaps: u64,
    pub kmap_sleeps: u64,
    pub pkmap_global_flushes: u64,
    /// INVLPGs on all CPUs.
    pub invlpg: u64,
}

/// A finished run: the kernel as it ended, its figures and the events recorded.
pub struct Finished {
    pub k: Kernel,
    pub summary: RunSummary,
    pub events: Vec<kernel::trace::Record>,
    /// The header line (machine, kernel, design, variant).
    pub header: String,
}

/// Check, boot and run `scenario` (read from `name` with text `src`).
pub fn run_scenario(
    name: &str,
    src: &str,
    scenario: &Scenario,
    out: &mut impl Write,
    _err: &mut impl Write,
) -> Result<(), CliError> {
    run_scenario_with(name, src, scenario, &RunOptions::default(), out).map(|_| ())
}

/// [`run_scenario`] with options; the run's text goes to `out`.
pub fn run_scenario_with(
    name: &str,
    src: &str,
    scenario: &Scenario,
    opts: &RunOptions,
    out: &mut impl Write,
) -> Result<Finished, CliError> {
    let spec = check(name, src, scenario).map_err(|e| CliError::Usage(e.to_string()))?;
    let (mut k, header) = boot_spec(spec, scenario)?;
    writeln!(out, "{header}")?;
    writeln!(out, "# scenario {name}: {}", scenario.description)?;
    let seed = opts.seed.unwrap_or(scenario.machine.seed);
    if seed != 0 || opts.seed.is_some() {
        writeln!(out, "# seed {seed}")?;
    }
    let session = opts.trace.map(|mask| k.trace_start(mask));
    let mut run = Run {
        k,
        out,
        held: BTreeMap::new(),
        step_no: 0,
        procs: BTreeMap::new(),
        segs: BTreeMap::new(),
        maps: BTreeMap::new(),
        seed,
        stopped: None,
        shmwork_done: None,
        pending: Vec::new(),
    };
    let stopped = run.steps(&scenario.steps)?;
    let events = session.map(|s| run.k.trace_finish(s)).unwrap_or_default();
    if !stopped {
        for f in &scenario.report.proc {
            run.proc(f.get_ref())?;
        }
    }
    let summary = summary(&run.k, run.stopped.clone(), run.shmwork_done);
    Ok(Finished {
        k: run.k,
        summary,
        events,
        header,
    })
}

/// Boot the checked machine (with the scenario's vmsplit, sysctls and runtime profile).
fn boot_spec(spec: MachineSpec, s: &Scenario) -> Result<(Kernel, String), CliError> {
    let mut header = spec.header();
    if let Some(v) = &s.machine.vmsplit {
        header.push_str(&format!(", VMSPLIT_{}", v.get_ref()));
    }
    let mut opts = BootOptions::new(spec.ram, spec.cpus.min(spec.cfg.nr_cpus), spec.cfg);
    opts.cmdline = s.machine.append.clone();
    opts.runtime_profile = s.machine.runtime;
    opts.design = spec.design;
    opts.pte_map = spec.pte_map;
    opts.tlb = spec.tlb;
    let mut k = boot(&opts).map_err(|e| match e {
        BootError::Config(m) => CliError::Usage(m),
        other => CliError::NoBoot(format!("the kernel would not boot: {other}")),
    })?;
    for (name, v) in &s.machine.sysctl {
        apply_sysctl(&mut k, &format!("{name}={}", v.get_ref()))?;
    }
    Ok((k, header))
}

/// A meminfo field in kB (-1 when missing).
fn meminfo_kb(text: &str, key: &str) -> i64 {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(-1)
}

fn summary(k: &Kernel, stopped: Option<String>, shmwork: Option<(u32, bool)>) -> RunSummary {
    let mi = live::read(k, "meminfo").unwrap_or_default();
    let stopped = stopped
        .or_else(|| shmwork.filter(|s| s.1).map(|_| "OOM".to_string()))
        .unwrap_or_else(|| "completed".to_string());
    let pk = &k.hm.pkmap.counters;
    RunSummary {
        stopped,
        children_done: shmwork.map(|s| s.0),
        mem_free_kb: meminfo_kb(&mi, "MemFree"),
        low_free_kb: meminfo_kb(&mi, "LowFree"),
        high_free_kb: meminfo_kb(&mi, "HighFree"),
        page_tables_kb: meminfo_kb(&mi, "PageTables"),
        slab_kb: meminfo_kb(&mi, "Slab"),
        page_faults: k.node.vm_events[kernel::vmstat::VmEventItem::Pgfault],
        pte_kmaps: k.mm.counters.pte_kmaps,
        kmaps: pk.kmaps,
        kmap_sleeps: pk.sleeps,
        pkmap_global_flushes: pk.global_flushes,
        invlpg: k.machine.cpus.iter().map(|c| c.counters().invlpg).sum(),
    }
}

impl<W: Write> Run<'_, W> {
    /// Run `steps`; true when the run had to stop.
    fn steps(&mut self, steps: &[toml::Spanned<Step>]) -> Result<bool, CliError> {
        for s in steps {
            if self.step(s.get_ref())? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn step(&mut self, step: &Step) -> Result<bool, CliError> {
        if let Step::Repeat { times, steps } = step {
            for _ in 0..*times {
                for inner in steps {
                    if self.step(inner)? {
                        return Ok(true);
                    }
                }
            }
            return Ok(false);
        }
        self.step_no += 1;
        if let Step::Proc { file } = step {
            let f = file.trim_start_matches("/proc/");
            writeln!(self.out, "[{}] cat /proc/{f}", self.step_no)?;
            return self.proc(f).map(|()| false);
        }
        let log_at = self.k.log.lines().len();
        let (what, stop) = self.exec(step)?;
        writeln!(self.out, "[{}] {what}", self.step_no)?;
        for l in std::mem::take(&mut self.pending) {
            writeln!(self.out, "    {l}")?;
        }
        let new: Vec<String> = self.k.log.lines()[log_at..]
            .iter()
            .map(|l| l.text.clone())
            .collect();
        for l in new {
            writeln!(self.out, "    {l}")?;
        }
        Ok(stop)
    }

    fn exec(&mut self, step: &Step) -> Result<(String, bool), CliError> {
        Ok(match step {
            Step::AllocPages {
                name,
                order,
                count,
                gfp,
                cpu,
            } => (self.alloc_pages(name, *order, *count, gfp, *cpu), false),
            Step::Kmalloc {
                name,
                size,
                count,
                cpu,
            } => (self.kmalloc(name, size.0 as usize, *count, *cpu), false),
            Step::Vmalloc {
                name,
                size,
                lowmem,
                cpu,
            } => (self.vmalloc(name, size.0, *lowmem, *cpu), false),
            Step::Kmap { name, count, cpu } => self.kmap(name, *count, *cpu),
            Step::Free { name } => (self.free(name), false),
            Step::Sysctl { name, value } => {
                apply_sysctl(&mut self.k, &format!("{name}={value}"))?;
                (format!("sysctl vm.{name}={value}"), false)
            }
            Step::Proc { .. } | Step::Repeat { .. } => (String::new(), false),
            _ => self.user_step(step)?,
        })
    }

    fn alloc_pages(&mut self, name: &str, order: u32, count: u32, gfp: &str, cpu: usize) -> String {
        let mask = gfp_by_name(gfp);
        let mut got = Vec::new();
        let mut failed = 0;
        for _ in 0..count {
            match self.k.alloc_pages(mask, order, cpu) {
                Ok(p) => got.push((p.pfn, order, cpu)),
                Err(e) => {
                    failed += 1;
                    self.k.log.info(e.to_string());
                }
            }
        }
        let zones = zone_summary(&self.k, got.iter().map(|g| g.0));
        let n = got.len();
        push(&mut self.held, name, Held::Pages(got));
        format!(
            "{name}: alloc_pages({gfp}, order {order}) x{count} on cpu{cpu}: {n} blocks{zones}{}",
            failed_note(failed)
        )
    }

    fn kmalloc(&mut self, name: &str, size: usize, count: u32, cpu: usize) -> String {
        let mut got = Vec::new();
        let mut failed = 0;
        for _ in 0..count {
            match self.k.kmalloc(size, gfp::GFP_KERNEL, cpu) {
                Ok(va) => got.push((va, cpu)),
                Err(e) => {
                    failed += 1;
                    self.k.log.info(e.to_string());
                }
            }
        }
        let n = got.len();
        push(&mut self.held, name, Held::Kmalloc(got));
        format!(
            "{name}: kmalloc({size}, GFP_KERNEL) x{count} on cpu{cpu}: {n} objects{}",
            failed_note(failed)
        )
    }

    fn vmalloc(&mut self, name: &str, size: u64, lowmem: bool, cpu: usize) -> String {
        let call = if lowmem { "vmalloc_32" } else { "vmalloc" };
        let r = if lowmem {
            self.k.vmalloc_32(size, cpu)
        } else {
            self.k.vmalloc(size, cpu)
        };
        match r {
            Ok(a) => {
                push(&mut self.held, name, Held::Vmalloc(vec![(a, cpu)]));
                format!("{name}: {call}({size}) on cpu{cpu}: {a:#010x}")
            }
            Err(e) => {
                self.k.log.info(e.to_string());
                push(&mut self.held, name, Held::Vmalloc(Vec::new()));
                format!("{name}: {call}({size}) on cpu{cpu}: failed")
            }
        }
    }

    /// kmap `count` highmem pages; a full window with nobody to kunmap stops the run.
    fn kmap(&mut self, name: &str, count: u32, cpu: usize) -> (String, bool) {
        let mut got = Vec::new();
        for i in 0..count {
            let pfn = match self.k.alloc_pages(gfp::GFP_HIGHUSER, 0, cpu) {
                Ok(p) => p.pfn,
                Err(e) => {
                    self.k.log.info(e.to_string());
                    break;
                }
            };
            match self.k.kmap(cpu, pfn) {
                Ok(Blocking::Ready(_)) => got.push((pfn, cpu)),
                Ok(Blocking::Sleep(_)) => {
                    let n = got.len();
                    push(&mut self.held, name, Held::Kmap(got));
                    let msg = format!("{name}: kmap() x{count} on cpu{cpu}: {n} mapped, then mapping {} of {count} sleeps on pkmap_map_wait: every PKMAP slot is in use and no other task will kunmap — the task would sleep forever; run stopped", i + 1);
                    return (msg, true);
                }
                Err(e) => {
                    self.k.log.info(e.to_string());
                    break;
                }
            }
        }
        let n = got.len();
        push(&mut self.held, name, Held::Kmap(got));
        (
            format!("{name}: kmap() x{count} on cpu{cpu}: {n} mapped"),
            false,
        )
    }

    fn free(&mut self, name: &str) -> String {
        let Some(h) = self.held.remove(name) else {
            return format!("free {name}: nothing held");
        };
        let (n, what) = match h {
            Held::Pages(v) => {
                for (pfn, order, cpu) in &v {
                    {
                        let e = self.k.node.__free_pages(*pfn, *order, *cpu).err();
                        log_err(&mut self.k, e);
                    }
                }
                (v.len(), "blocks freed")
            }
            Held::Kmalloc(v) => {
                for (va, cpu) in &v {
                    {
                        let e = self.k.kfree(*va, *cpu).err();
                        log_err(&mut self.k, e);
                    }
                }
                (v.len(), "objects kfree()d")
            }
            Held::Vmalloc(v) => {
                for (a, cpu) in &v {
                    {
                        let e = self.k.vfree(*a, *cpu).err();
                        log_err(&mut self.k, e);
                    }
                }
                (v.len(), "areas vfree()d")
            }
            Held::Kmap(v) => {
                for (pfn, cpu) in &v {
                    {
                        let e = self.k.kunmap(*cpu, *pfn).err();
                        log_err(&mut self.k, e);
                    }
                    {
                        let e = self.k.node.__free_pages(*pfn, 0, *cpu).err();
                        log_err(&mut self.k, e);
                    }
                }
                (v.len(), "pages kunmap()ped and freed")
            }
        };
        format!("free {name}: {n} {what}")
    }

    fn proc(&mut self, file: &str) -> Result<(), CliError> {
        let f = file.trim_start_matches("/proc/");
        let text = live::read(&self.k, f).unwrap_or_default();
        writeln!(self.out, "=====BEGIN /proc/{f}=====")?;
        write!(self.out, "{text}")?;
        writeln!(self.out, "=====END /proc/{f}=====")?;
        Ok(())
    }
}

fn push(held: &mut BTreeMap<String, Held>, name: &str, new: Held) {
    match (held.get_mut(name), new) {
        (Some(Held::Pages(v)), Held::Pages(n)) => v.extend(n),
        (Some(Held::Kmalloc(v)), Held::Kmalloc(n)) => v.extend(n),
        (Some(Held::Vmalloc(v)), Held::Vmalloc(n)) => v.extend(n),
        (Some(Held::Kmap(v)), Held::Kmap(n)) => v.extend(n),
        (_, n) => {
            held.insert(name.to_string(), n);
        }
    }
}

fn log_err(k: &mut Kernel, e: Option<impl std::fmt::Display>) {
    if let Some(e) = e {
        k.log.info(e.to_string());
    }
}

fn failed_note(failed: u32) -> String {
    if failed == 0 {
        String::new()
    } else {
        format!(", {failed} failed")
    }
}

/// ", in Normal 3, HighMem 7": where the blocks came from.
fn zone_summary(k: &Kernel, pfns: impl Iterator<Item = Pfn>) -> String {
    let mut by_zone: BTreeMap<usize, (String, u64)> = BTreeMap::new();
    for pfn in pfns {
        if let Some((i, z)) = k
            .node
            .node_zones
            .iter()
            .enumerate()
            .find(|(_, z)| z.spans_pfn(pfn.as_u64()))
        {
            by_zone
                .entry(i)
                .or_insert_with(|| (z.name.to_string(), 0))
                .1 += 1;
        }
    }
    let parts: Vec<String> = by_zone.values().map(|(n, c)| format!("{n} {c}")).collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!(", from {}", parts.join(", "))
    }
}

/// The GFP mask a step names (checked before the run).
fn gfp_by_name(name: &str) -> Gfp {
    match name {
        "GFP_USER" => gfp::GFP_USER,
        "GFP_HIGHUSER" => gfp::GFP_HIGHUSER,
        "GFP_HIGHUSER_MOVABLE" => gfp::GFP_HIGHUSER_MOVABLE,
        "GFP_DMA" => gfp::GFP_DMA,
        "GFP_ATOMIC" => gfp::GFP_ATOMIC,
        "GFP_NOWAIT" => gfp::GFP_NOWAIT,
        _ => gfp::GFP_KERNEL,
    }
}
