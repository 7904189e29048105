//! The user-process steps of a scenario: processes (exec, fork, exit), SysV segments,
//! mappings (shmat, mmap, brk) and touches through the simulated MMU, the reference
//! workload (`shmwork`) and seed 001's kmap tasks under the seeded scheduler.
//!
//! A failure the kernel survives (an OOM kill, a failed fork, a deadlock report) is
//! printed and the run goes on; only a BUG the model detects stops it.

use super::parse::Step;
use super::run::Run;
use crate::cli::CliError;
use kernel::driver::Outcome as DriverOutcome;
use kernel::mm::{MmError, ProcId, PAGE_SIZE};
use kernel::sched::exec::{run as exec_run, ExecConfig, Op, Outcome, Program};
use kernel::workload::shmwork::{self, Params, Touch};
use std::io::Write;

/// A mapping a step made: its process, address, length and kind.
#[derive(Clone, Copy, Debug)]
pub(super) struct UserMap {
    pub proc: ProcId,
    pub addr: u64,
    pub len: u64,
    pub shm: bool,
}

impl<W: Write> Run<'_, W> {
    /// Run a user-process step; the line saying what it did, and whether the run stops.
    pub(super) fn user_step(&mut self, step: &Step) -> Result<(String, bool), CliError> {
        let r = match step {
            Step::Spawn { name, comm, cpu } => self.spawn(name, comm, *cpu),
            Step::Fork { name, parent, cpu } => self.fork(name, parent, *cpu),
            Step::Exit { process, cpu } => self.exit(process, *cpu),
            Step::Shmget { name, size, cpu } => self.shmget(name, size.0, *cpu),
            Step::Shmat {
                name,
                process,
                segment,
                readonly,
            } => self.shmat(name, process, segment, *readonly),
            Step::Shmdt { mapping } => self.unmap(mapping),
            Step::ShmRmid { segment } => self.shm_rmid(segment),
            Step::Mmap {
                name,
                process,
                size,
                write,
            } => self.mmap(name, process, size.0, *write),
            Step::Munmap { mapping } => self.unmap(mapping),
            Step::Brk { process, size } => self.brk(process, size.0),
            Step::Touch { mapping, how, size } => self.touch(mapping, how, size.map(|s| s.0)),
            Step::Shmwork {
                size,
                children,
                touch,
                every,
            } => {
                return self
                    .shmwork(size.0, *children, touch, *every)
                    .map(|s| (s, false))
            }
            Step::KmapTasks { tasks, pages } => return self.kmap_tasks(*tasks, *pages),
            Step::Driver { pages } => return self.driver(*pages).map(|s| (s, false)),
            _ => Ok(String::new()),
        };
        match r {
            Ok(s) => Ok((s, false)),
            Err(MmError::Bug(b)) => Err(CliError::NoBoot(format!("BUG: {b}"))),
            Err(e) => Ok((format!("{}: {e}", step_op(step)), false)),
        }
    }

    fn proc_id(&self, name: &str) -> Result<ProcId, MmError> {
        self.procs.get(name).copied().ok_or(MmError::NoProc)
    }

    fn pid(&self, p: ProcId) -> u32 {
        self.k.mm.procs[p.0].pid
    }

    fn spawn(&mut self, name: &str, comm: &str, cpu: usize) -> Result<String, MmError> {
        let p = self.k.exec_process(cpu, comm, 1)?;
        self.procs.insert(name.to_string(), p);
        let flt = self.k.mm.procs[p.0].min_flt;
        Ok(format!(
            "spawn {name}: /bin/{comm} as pid {} on cpu{cpu}, {flt} page faults",
            self.pid(p)
        ))
    }

    fn fork(&mut self, name: &str, parent: &str, cpu: usize) -> Result<String, MmError> {
        let pp = self.proc_id(parent)?;
        self.k.switch_to_process(cpu, pp)?;
        let c = self.k.fork(cpu, pp)?;
        self.procs.insert(name.to_string(), c);
        // The parent's mappings are the child's too, at the same addresses.
        let inherited: Vec<(String, UserMap)> = self
            .maps
            .iter()
            .filter(|(_, m)| m.proc == pp)
            .map(|(n, m)| (format!("{name}.{n}"), UserMap { proc: c, ..*m }))
            .collect();
        self.maps.extend(inherited);
        Ok(format!(
            "fork {parent} (pid {}) -> {name} (pid {}) on cpu{cpu}",
            self.pid(pp),
            self.pid(c)
        ))
    }

    fn exit(&mut self, process: &str, cpu: usize) -> Result<String, MmError> {
        let p = self.proc_id(process)?;
        self.k.exit_process(cpu, p)?;
        self.procs.remove(process);
        self.maps.retain(|_, m| m.proc != p);
        Ok(format!("exit {process} (pid {})", self.pid(p)))
    }

    fn shmget(&mut self, name: &str, size: u64, cpu: usize) -> Result<String, MmError> {
        let id = self.k.shmget(cpu, size)?;
        self.segs.insert(name.to_string(), id);
        Ok(format!("shmget {name}: {size} bytes, shmid {id}"))
    }

    fn shmat(
        &mut self,
        name: &str,
        process: &str,
        segment: &str,
        readonly: bool,
    ) -> Result<String, MmError> {
        let p = self.proc_id(process)?;
        let id = *self.segs.get(segment).ok_or(MmError::Inval)?;
        let cpu = self.k.sched.tasks[self.k.mm.procs[p.0].task.0].cpu;
        let addr = self.k.shmat(cpu, p, id, readonly)?;
        let len = self.k.mm.shm[id as usize].size;
        self.maps.insert(
            name.to_string(),
            UserMap {
                proc: p,
                addr,
                len,
                shm: true,
            },
        );
        let ro = if readonly { ", SHM_RDONLY" } else { "" };
        Ok(format!(
            "shmat {segment} by {process}{ro}: {name} at {addr:#010x}"
        ))
    }

    fn shm_rmid(&mut self, segment: &str) -> Result<String, MmError> {
        let id = self.segs.remove(segment).ok_or(MmError::Inval)?;
        self.k.shm_rmid(0, id)?;
        let n = self.k.mm.shm[id as usize].nattch;
        Ok(format!("shmctl {segment} IPC_RMID: {n} attached"))
    }

    fn mmap(
        &mut self,
        name: &str,
        process: &str,
        size: u64,
        write: bool,
    ) -> Result<String, MmError> {
        let p = self.proc_id(process)?;
        let cpu = self.k.sched.tasks[self.k.mm.procs[p.0].task.0].cpu;
        let addr = self.k.mmap_anon(cpu, p, size, write)?;
        let len = size.div_ceil(PAGE_SIZE) * PAGE_SIZE;
        let map = UserMap {
            proc: p,
            addr,
            len,
            shm: false,
        };
        self.maps.insert(name.to_string(), map);
        Ok(format!(
            "mmap {name} by {process}: {len} bytes at {addr:#010x}"
        ))
    }

    /// `shmdt` or `munmap` of a whole mapping.
    fn unmap(&mut self, mapping: &str) -> Result<String, MmError> {
        let m = self.maps.remove(mapping).ok_or(MmError::Inval)?;
        let cpu = self.k.sched.tasks[self.k.mm.procs[m.proc.0].task.0].cpu;
        if m.shm {
            self.k.shmdt(cpu, m.proc, m.addr)?;
            Ok(format!("shmdt {mapping}"))
        } else {
            self.k.munmap(cpu, m.proc, m.addr, m.len)?;
            Ok(format!("munmap {mapping}: {} bytes", m.len))
        }
    }

    fn brk(&mut self, process: &str, size: u64) -> Result<String, MmError> {
        let p = self.proc_id(process)?;
        let cpu = self.k.sched.tasks[self.k.mm.procs[p.0].task.0].cpu;
        let old = self.k.mm.procs[p.0]
            .mm
            .as_ref()
            .and_then(|m| m.vmas.iter().find(|v| v.heap))
            .map_or(0, |v| v.end);
        let got = self.k.brk(cpu, p, old + size)?;
        Ok(format!("brk {process}: {old:#010x} -> {got:#010x}"))
    }

    fn touch(&mut self, mapping: &str, how: &str, size: Option<u64>) -> Result<String, MmError> {
        let m = *self.maps.get(mapping).ok_or(MmError::Inval)?;
        let cpu = self.k.sched.tasks[self.k.mm.procs[m.proc.0].task.0].cpu;
        let len = size.unwrap_or(m.len).min(m.len);
        let pages = len.div_ceil(PAGE_SIZE);
        self.k.switch_to_process(cpu, m.proc)?;
        let before = self.k.mm.counters.faults;
        if how == "populate" {
            self.k.madvise_populate_read(cpu, m.proc, m.addr, len)?;
        } else {
            for i in 0..pages {
                self.k
                    .user_access(cpu, m.proc, m.addr + i * PAGE_SIZE, how == "write")?;
            }
        }
        let faults = self.k.mm.counters.faults - before;
        Ok(format!(
            "touch {mapping} ({how}): {pages} pages, {faults} page faults"
        ))
    }

    fn shmwork(&mut self, size: u64, n: u32, touch: &str, every: u32) -> Result<String, CliError> {
        let prm = Params {
            size_mib: size >> 20,
            n,
            touch: Touch::from_letter(touch.chars().next().unwrap_or('r')).unwrap_or(Touch::Read),
            every,
            timing: false,
            dumps: false,
            design: None,
        };
        let mut lines = Vec::new();
        let r = shmwork::run(&mut self.k, &prm, &mut |l| lines.push(l.to_string()));
        self.pending.extend(lines);
        let o = r.map_err(|e| CliError::NoBoot(format!("shmwork: {e}")))?;
        self.shmwork_done = Some((o.children_done, o.oom));
        if o.status != 0 {
            // The program's own failure line (shmget or shmat refused), then exit(1).
            let why = o
                .lines
                .last()
                .map_or("", |l| l.trim_start_matches("SHMWORK "));
            return Ok(format!(
                "shmwork {}MiB x{n} ({touch}): {why}, exit status {}",
                size >> 20,
                o.status
            ));
        }
        Ok(format!(
            "shmwork {}MiB x{n} ({touch}): {} children done{}",
            size >> 20,
            o.children_done,
            if o.oom { ", stopped by OOM" } else { "" }
        ))
    }

    /// Seed 001's kmap hogs: each task kmaps its pages, then kunmaps them.
    fn kmap_tasks(&mut self, tasks: u32, pages: u32) -> Result<(String, bool), CliError> {
        let ncpus = self.k.sched.cpus.len();
        let mut progs = Vec::new();
        for t in 0..tasks {
            let mut mine = Vec::new();
            for _ in 0..pages {
                match self.k.alloc_pages(kernel::gfp::GFP_HIGHUSER, 0, 0) {
                    Ok(p) => mine.push(p.pfn.as_u64()),
                    Err(e) => {
                        self.k.log.info(e.to_string());
                        break;
                    }
                }
            }
            let mut ops: Vec<Op> = mine.iter().map(|&p| Op::Kmap(p)).collect();
            ops.extend(mine.iter().map(|&p| Op::Kunmap(p)));
            progs.push(Program {
                comm: format!("kmap{t}"),
                cpu: t as usize % ncpus,
                ops,
            });
        }
        let r = exec_run(&mut self.k, &progs, &ExecConfig::new(self.seed));
        let what = format!(
            "kmap_tasks: {tasks} tasks x {pages} kmaps, seed {}, {} scheduler steps",
            self.seed, r.steps
        );
        Ok(match r.outcome {
            Outcome::Completed => (format!("{what}: completed"), false),
            Outcome::Deadlock(_) => {
                self.stopped = Some("deadlock".to_string());
                (
                    format!("{what}: deadlock (every task asleep on pkmap_map_wait); run stopped"),
                    true,
                )
            }
            Outcome::StepLimit => (format!("{what}: step limit reached"), false),
            Outcome::Failed(e) => return Err(CliError::NoBoot(format!("kmap_tasks: {e}"))),
        })
    }
}

impl<W: Write> Run<'_, W> {
    /// Seed 000's driver on this kernel: one line per way and buffer.
    fn driver(&mut self, pages: u64) -> Result<String, CliError> {
        let run = self.k.run_capture_driver(pages, 0).map_err(|e| {
            CliError::NoBoot(format!("the driver could not allocate its buffer: {e}"))
        })?;
        for row in &run.rows {
            self.pending.push(format!(
                "{:<34} {:<10} {}",
                row.method.label(),
                row.buffer.name(),
                row.outcome.short()
            ));
        }
        for row in run
            .rows
            .iter()
            .filter(|r| r.outcome != DriverOutcome::Right)
        {
            self.pending.push(format!(
                "{} {}: {}",
                row.method.label(),
                row.buffer.name(),
                row.outcome.detail()
            ));
        }
        let right = run
            .rows
            .iter()
            .filter(|r| r.outcome == DriverOutcome::Right)
            .count();
        Ok(format!(
            "driver: {pages}-page capture buffers, {right} of {} SG lists right",
            run.rows.len()
        ))
    }
}

fn step_op(step: &Step) -> &'static str {
    match step {
        Step::Spawn { .. } => "spawn",
        Step::Fork { .. } => "fork",
        Step::Exit { .. } => "exit",
        Step::Shmget { .. } => "shmget",
        Step::Shmat { .. } => "shmat",
        Step::Shmdt { .. } => "shmdt",
        Step::ShmRmid { .. } => "shm_rmid",
        Step::Mmap { .. } => "mmap",
        Step::Munmap { .. } => "munmap",
        Step::Brk { .. } => "brk",
        Step::Touch { .. } => "touch",
        _ => "step",
    }
}
