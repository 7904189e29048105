//! A deterministic executor: kernel tasks as scripts of kmap operations, interleaved on
//! the simulated CPUs by a seeded PRNG.
//!
//! Each step picks a CPU (by the PRNG among the CPUs with work) and either switches it to
//! a runnable task (its own runqueue first, else a task stolen from another CPU that may
//! migrate), preempts its task (when preemption is enabled and the design preempts), or
//! runs the task's next operation. An operation that would sleep leaves the task on a wait
//! queue and is run *again* when the task next runs: that retry is where the kernel path
//! resumes (see `Kernel::kmap_high`). When every live task is asleep the run stops with a
//! [`Deadlock`] report. The trace of a run is a pure function of the seed, the programs
//! and the booted kernel.

use super::rng::SplitMix64;
use super::{HeldMap, TaskId, TaskState};
use crate::design::KmType;
use crate::highmem::KmapError;
use crate::printk::LogLevel;
use crate::sched::Blocking;
use crate::Kernel;
use machine::{Pfn, VirtAddr};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// One operation of a task's script; pages are frame numbers, and the unmap / read
/// operations use the address the task last got for that frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Op {
    Kmap(u64),
    Kunmap(u64),
    KmapLocal(u64),
    KunmapLocal(u64),
    KmapAtomic(u64),
    KunmapAtomic(u64),
    KmapTyped(u64, KmType),
    KunmapTyped(u64, KmType),
    /// Read a u32 through the task's address for the frame (checked).
    Read(u64),
    /// `might_sleep(); schedule()` with the task still runnable (e.g. cond_resched, msleep).
    Sleep,
    /// An interrupt arrives on the task's CPU / returns.
    IrqEnter,
    IrqExit,
}

/// A task to run: its name, first CPU and script.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Program {
    pub comm: String,
    pub cpu: usize,
    pub ops: Vec<Op>,
}

/// How the executor chooses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ExecConfig {
    pub seed: u64,
    /// Chance per step (‰) that a preemptible running task is preempted when another task
    /// waits for its CPU.
    pub preempt_permille: u32,
    pub max_steps: u64,
}

impl ExecConfig {
    pub fn new(seed: u64) -> Self {
        ExecConfig {
            seed,
            preempt_permille: 250,
            max_steps: 1_000_000,
        }
    }
}

/// A task in a deadlock.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Blocked {
    pub pid: u32,
    pub comm: String,
    pub cpu: usize,
    pub waitqueue: &'static str,
    /// Mappings held: persistent kmaps (always counted) and kmap_local/atomic slots.
    pub nr_held: usize,
    /// Their details, where the debug bookkeeping keeps them (persistent kmaps only with
    /// DEBUG_KMAP_LOCAL's checker; local slots always).
    pub held: Vec<HeldMap>,
}

/// Every live task asleep: nobody can wake anybody.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Deadlock {
    pub seed: u64,
    pub step: u64,
    pub tasks: Vec<Blocked>,
}

impl std::fmt::Display for Deadlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "BUG: deadlock: all {} tasks blocked (seed {:#x}, step {})",
            self.tasks.len(),
            self.seed,
            self.step
        )?;
        for b in &self.tasks {
            write!(
                f,
                "  {}[{}] on CPU {} waits on {} holding {} mapping(s):",
                b.comm, b.pid, b.cpu, b.waitqueue, b.nr_held
            )?;
            for h in b.held.iter().take(6) {
                write!(f, " {:?} {:#x}->pfn {:#x};", h.kind, h.va, h.pfn)?;
            }
            if b.held.len() > 6 {
                write!(f, " … {} more", b.held.len() - 6)?;
            } else if b.held.len() < b.nr_held {
                write!(f, " (details with debug_kmap_local)")?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Outcome {
    /// Every task ran to its end (or was killed by an oops).
    Completed,
    Deadlock(Deadlock),
    StepLimit,
    /// The simulated hardware refused something (a model bug, not a kernel one).
    Failed(String),
}

/// The result of [`run`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RunResult {
    pub outcome: Outcome,
    pub steps: u64,
    /// One line per step.
    pub trace: String,
    pub tasks: Vec<TaskId>,
}

struct Script {
    task: TaskId,
    ops: Vec<Op>,
    pc: usize,
    vas: BTreeMap<u64, u64>,
}

/// Run `programs` as new tasks on `k` until they finish, deadlock or hit the step limit.
pub fn run(k: &mut Kernel, programs: &[Program], cfg: &ExecConfig) -> RunResult {
    run_checked(k, programs, cfg, &mut |_| Ok(()))
}

/// [`run`], calling `check` after every step; its first error stops the run
/// ([`Outcome::Failed`]).
pub fn run_checked(
    k: &mut Kernel,
    programs: &[Program],
    cfg: &ExecConfig,
    check: &mut dyn FnMut(&Kernel) -> Result<(), String>,
) -> RunResult {
    let mut rng = SplitMix64::new(cfg.seed);
    let ncpus = k.sched.cpus.len();
    let mut scripts: Vec<Script> = programs
        .iter()
        .map(|p| Script {
            task: k.sched.spawn(&p.comm, p.cpu.min(ncpus - 1)),
            ops: p.ops.clone(),
            pc: 0,
            vas: BTreeMap::new(),
        })
        .collect();
    let by_task: BTreeMap<TaskId, usize> = scripts
        .iter()
        .enumerate()
        .map(|(i, s)| (s.task, i))
        .collect();
    let tasks: Vec<TaskId> = scripts.iter().map(|s| s.task).collect();
    let mut trace = String::new();
    let mut steps = 0;
    let fail = |e: KmapError, trace: String, steps: u64, tasks: Vec<TaskId>| RunResult {
        outcome: Outcome::Failed(e.to_string()),
        steps,
        trace,
        tasks,
    };
    loop {
        if let Err(e) = check(k) {
            let _ = writeln!(trace, "{steps:>6} invariant: {e}");
            return RunResult {
                outcome: Outcome::Failed(e),
                steps,
                trace,
                tasks,
            };
        }
        if !tasks.iter().any(|&t| k.sched.task(t).alive()) {
            return RunResult {
                outcome: Outcome::Completed,
                steps,
                trace,
                tasks,
            };
        }
        if steps >= cfg.max_steps {
            return RunResult {
                outcome: Outcome::StepLimit,
                steps,
                trace,
                tasks,
            };
        }
        let cands: Vec<usize> = (0..ncpus).filter(|&c| has_work(k, c)).collect();
        if cands.is_empty() {
            let d = deadlock(k, &tasks, cfg.seed, steps);
            for line in d.to_string().lines() {
                k.log.log(LogLevel::Err, line.to_string());
            }
            let _ = writeln!(trace, "{steps:>6} deadlock");
            return RunResult {
                outcome: Outcome::Deadlock(d),
                steps,
                trace,
                tasks,
            };
        }
        let c = cands[rng.below(cands.len())];
        steps += 1;
        let cur = k.sched.current(c);
        let running = {
            let t = k.sched.task(cur);
            !t.is_idle && t.state == TaskState::Running
        };
        if !running {
            // Idle CPU: its own runqueue, else pull a task that may migrate.
            if !runnable_queued(k, c) {
                let mut pool = Vec::new();
                for o in 0..ncpus {
                    if o == c {
                        continue;
                    }
                    for (i, &t) in k.sched.cpus[o].rq.iter().enumerate() {
                        let task = k.sched.task(t);
                        if task.state == TaskState::Running && task.migration_disabled == 0 {
                            pool.push((o, i));
                        }
                    }
                }
                if pool.is_empty() {
                    continue;
                }
                let (o, i) = pool[rng.below(pool.len())];
                if let Some(t) = k.sched.cpus[o].rq.remove(i) {
                    k.sched.cpus[c].rq.push_back(t);
                    let _ = writeln!(trace, "{steps:>6} cpu{c} pulls {} from cpu{o}", name(k, t));
                }
            }
            match k.schedule(c) {
                Ok(next) => {
                    let _ = writeln!(trace, "{steps:>6} cpu{c} runs {}", name(k, next));
                }
                Err(e) => return fail(e, trace, steps, tasks),
            }
            continue;
        }
        let preemptible = k.hm.design.preemptible() && k.sched.preempt_count(c) == 0;
        if preemptible && runnable_queued(k, c) && rng.chance(cfg.preempt_permille) {
            let _ = writeln!(trace, "{steps:>6} cpu{c} preempts {}", name(k, cur));
            if let Err(e) = k.schedule(c) {
                return fail(e, trace, steps, tasks);
            }
            continue;
        }
        let Some(&si) = by_task.get(&cur) else {
            continue;
        };
        let s = &mut scripts[si];
        if s.pc >= s.ops.len() {
            k.exit_checks(c, cur);
            k.sched.task_mut(cur).state = TaskState::Dead;
            let _ = writeln!(trace, "{steps:>6} cpu{c} {} exits", name(k, cur));
            k.sched.cpus[c].preempt_count = 0;
            if let Err(e) = k.schedule(c) {
                return fail(e, trace, steps, tasks);
            }
            continue;
        }
        let op = s.ops[s.pc];
        let res = exec_op(k, c, op, &mut s.vas);
        let who = name(k, cur);
        match res {
            Ok(Blocking::Ready(text)) => {
                s.pc += 1;
                let _ = writeln!(trace, "{steps:>6} cpu{c} {who} {op:?}{text}");
                if op == Op::Sleep {
                    if let Err(e) = k.schedule(c) {
                        return fail(e, trace, steps, tasks);
                    }
                }
            }
            Ok(Blocking::Sleep(wq)) => {
                let _ = writeln!(
                    trace,
                    "{steps:>6} cpu{c} {who} {op:?} sleeps on {}",
                    k.sched.waitqueues[wq.0].name
                );
                if let Err(e) = k.schedule(c) {
                    return fail(e, trace, steps, tasks);
                }
            }
            Err(KmapError::Report(r)) => {
                // The oops kills the task; the CPU carries on.
                let first = r.to_string().lines().next().unwrap_or_default().to_string();
                let _ = writeln!(trace, "{steps:>6} cpu{c} {who} {op:?} oops: {first}");
                k.sched.task_mut(cur).state = TaskState::Oopsed;
                k.sched.cpus[c].preempt_count = 0;
                k.sched.cpus[c].hardirq = 0;
                if let Err(e) = k.schedule(c) {
                    return fail(e, trace, steps, tasks);
                }
            }
            Err(e) => return fail(e, trace, steps, tasks),
        }
    }
}

fn name(k: &Kernel, t: TaskId) -> String {
    let t = k.sched.task(t);
    format!("{}[{}]", t.comm, t.pid)
}

fn runnable_queued(k: &Kernel, c: usize) -> bool {
    k.sched.cpus[c]
        .rq
        .iter()
        .any(|&t| k.sched.task(t).state == TaskState::Running)
}

fn has_work(k: &Kernel, c: usize) -> bool {
    let cur = k.sched.task(k.sched.current(c));
    if !cur.is_idle && cur.state == TaskState::Running {
        return true;
    }
    if runnable_queued(k, c) {
        return true;
    }
    (0..k.sched.cpus.len()).any(|o| {
        o != c
            && k.sched.cpus[o].rq.iter().any(|&t| {
                let t = k.sched.task(t);
                t.state == TaskState::Running && t.migration_disabled == 0
            })
    })
}

fn deadlock(k: &Kernel, tasks: &[TaskId], seed: u64, step: u64) -> Deadlock {
    let blocked = tasks
        .iter()
        .map(|&id| (id, k.sched.task(id)))
        .filter_map(|(id, t)| match t.state {
            TaskState::Uninterruptible(wq) => Some(Blocked {
                pid: t.pid,
                comm: t.comm.clone(),
                cpu: t.cpu,
                waitqueue: k.sched.waitqueues[wq.0].name,
                nr_held: t.pkmaps as usize + k.local_mappings(id).len(),
                held: k.held_mappings(id),
            }),
            _ => None,
        })
        .collect();
    Deadlock {
        seed,
        step,
        tasks: blocked,
    }
}

/// Run one operation as `cpu`'s current task; the text after the op in the trace.
fn exec_op(
    k: &mut Kernel,
    cpu: usize,
    op: Op,
    vas: &mut BTreeMap<u64, u64>,
) -> Result<Blocking<String>, KmapError> {
    let va_of =
        |vas: &BTreeMap<u64, u64>, pfn: u64| VirtAddr::new(vas.get(&pfn).copied().unwrap_or(0));
    let done = |va: VirtAddr| Ok(Blocking::Ready(format!(" = {:#x}", va.as_u64())));
    match op {
        Op::Kmap(p) => match k.kmap(cpu, Pfn::new(p))? {
            Blocking::Ready(va) => {
                vas.insert(p, va.as_u64());
                done(va)
            }
            Blocking::Sleep(wq) => Ok(Blocking::Sleep(wq)),
        },
        Op::Kunmap(p) => k
            .kunmap(cpu, Pfn::new(p))
            .map(|_| Blocking::Ready(String::new())),
        Op::KmapLocal(p) => {
            let va = k.kmap_local_page(cpu, Pfn::new(p))?;
            vas.insert(p, va.as_u64());
            done(va)
        }
        Op::KunmapLocal(p) => k
            .kunmap_local(cpu, va_of(vas, p))
            .map(|_| Blocking::Ready(String::new())),
        Op::KmapAtomic(p) => {
            let va = k.kmap_atomic(cpu, Pfn::new(p))?;
            vas.insert(p, va.as_u64());
            done(va)
        }
        Op::KunmapAtomic(p) => k
            .kunmap_atomic(cpu, va_of(vas, p))
            .map(|_| Blocking::Ready(String::new())),
        Op::KmapTyped(p, t) => {
            let va = k.kmap_atomic_typed(cpu, Pfn::new(p), t)?;
            vas.insert(p, va.as_u64());
            done(va)
        }
        Op::KunmapTyped(p, t) => k
            .kunmap_atomic_typed(cpu, va_of(vas, p), t)
            .map(|_| Blocking::Ready(String::new())),
        Op::Read(p) => {
            let v = k.kmap_read_u32(cpu, va_of(vas, p))?;
            Ok(Blocking::Ready(format!(" = {v:#x}")))
        }
        Op::Sleep => {
            k.might_sleep(cpu, "schedule()");
            Ok(Blocking::Ready(String::new()))
        }
        Op::IrqEnter => {
            k.sched.irq_enter(cpu);
            Ok(Blocking::Ready(String::new()))
        }
        Op::IrqExit => {
            k.sched.irq_exit(cpu);
            Ok(Blocking::Ready(String::new()))
        }
    }
}
