//! `shmwork S N touch every` (`../shared/reference/kernel/shmwork.c`) on the model: a parent
//! creates a SysV segment of S MiB and populates it, then forks N children one after another;
//! each attaches the segment and touches every page (`r` read faults, `w` write faults,
//! `p` MADV_POPULATE_READ). The output has the program's lines and /proc dumps.

use crate::mm::{MmError, ProcId, PAGE_SIZE};
use crate::procfs;
use crate::Kernel;
use std::ops::ControlFlow;
use std::time::Instant;

/// How a child touches the segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Touch {
    Read,
    Write,
    Populate,
}

impl Touch {
    pub fn letter(self) -> char {
        match self {
            Touch::Read => 'r',
            Touch::Write => 'w',
            Touch::Populate => 'p',
        }
    }
    pub fn from_letter(c: char) -> Option<Touch> {
        match c {
            'r' => Some(Touch::Read),
            'w' => Some(Touch::Write),
            'p' => Some(Touch::Populate),
            _ => None,
        }
    }
}

/// The program's arguments.
#[derive(Clone, Debug)]
pub struct Params {
    pub size_mib: u64,
    pub n: u32,
    pub touch: Touch,
    pub every: u32,
    /// Print host wall-clock times instead of `t=0.0s`.
    pub timing: bool,
    /// Dump the /proc files as the real run does.
    pub dumps: bool,
    /// Run under this kernel design (`None`: the booted kernel's).
    pub design: Option<crate::design::KernelDesign>,
}

/// One PROGRESS / FINAL / AFTERKILL line's figures (kB, pages for the zone fields).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    pub tag: String,
    pub n: u32,
    pub fields: Vec<(String, i64)>,
}

impl Progress {
    pub fn get(&self, key: &str) -> Option<i64> {
        self.fields.iter().find(|(k, _)| k == key).map(|x| x.1)
    }
}

/// What a run did.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    pub lines: Vec<String>,
    pub progress: Vec<Progress>,
    pub children_done: u32,
    pub oom: bool,
    pub parent: Option<ProcId>,
    pub children: Vec<ProcId>,
    pub shmid: u32,
}

fn meminfo_field(text: &str, key: &str) -> i64 {
    for l in text.lines() {
        if let Some(rest) = l.strip_prefix(key) {
            if let Some(v) = rest.strip_prefix(':') {
                return v
                    .split_whitespace()
                    .next()
                    .and_then(|x| x.parse().ok())
                    .unwrap_or(-1);
            }
        }
    }
    -1
}

/// The program's `zone_free()`: free pages and pcp counts per zone from /proc/zoneinfo.
fn zone_fields(text: &str) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    let mut zone = String::new();
    let mut pcp: i64 = -1;
    for l in text.lines() {
        if let Some(rest) = l.strip_prefix("Node 0, zone") {
            if pcp >= 0 {
                out.push((format!("{zone}_pcp_pages"), pcp));
            }
            zone = rest.trim().to_string();
            pcp = 0;
            continue;
        }
        let t = l.trim_start();
        if let Some(v) = t.strip_prefix("pages free") {
            if let Ok(v) = v.trim().parse() {
                out.push((format!("{zone}_free_pages"), v));
            }
        }
        if let Some(v) = t.strip_prefix("count:") {
            if pcp >= 0 {
                pcp += v.trim().parse::<i64>().unwrap_or(0);
            }
        }
    }
    if pcp >= 0 {
        out.push((format!("{zone}_pcp_pages"), pcp));
    }
    out
}

struct Run<'a> {
    k: &'a mut Kernel,
    out: Outcome,
    t0: Instant,
    timing: bool,
    emit: &'a mut dyn FnMut(&str),
}

impl Run<'_> {
    fn line(&mut self, s: String) {
        (self.emit)(&s);
        self.out.lines.push(s);
    }
    fn t(&self) -> String {
        if self.timing {
            format!("{:.1}s", self.t0.elapsed().as_secs_f64())
        } else {
            "0.0s".to_string()
        }
    }
    fn progress(&mut self, tag: &str, n: u32, sample: Option<ProcId>) {
        let mi = procfs::live::read(self.k, "meminfo").unwrap_or_default();
        let zi = procfs::live::read(self.k, "zoneinfo").unwrap_or_default();
        let mut fields = Vec::new();
        for key in [
            "PageTables",
            "LowFree",
            "HighFree",
            "MemFree",
            "KernelStack",
            "Slab",
            "SUnreclaim",
            "Shmem",
            "Committed_AS",
        ] {
            fields.push((key.to_string(), meminfo_field(&mi, key)));
        }
        let vmpte = sample
            .and_then(|p| {
                self.k.mm.procs[p.0]
                    .mm
                    .as_ref()
                    .map(|m| m.pgtables_kb() as i64)
            })
            .unwrap_or(-1);
        fields.push(("VmPTE_child1".to_string(), vmpte));
        fields.extend(zone_fields(&zi));
        let body: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let s = format!("{tag} n={n} t={} {}", self.t(), body.join(" "));
        self.line(s);
        self.out.progress.push(Progress {
            tag: tag.to_string(),
            n,
            fields,
        });
    }
    fn dump(&mut self, name: &str, text: String) {
        self.line(format!("=====BEGIN {name}====="));
        for l in text.lines() {
            self.line(l.to_string());
        }
        self.line(format!("=====END {name}====="));
    }
}

/// A point of the run an observer of [`run_observed`] is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// The parent has populated the segment; no child yet (the first PROGRESS line).
    Populated,
    /// Child `n` attached and touched every page (`n` children are done).
    ChildDone(u32),
    /// The kernel stopped the run (OOM) or all N children are done: `n` children were done.
    /// Nothing has been killed or freed yet.
    Stopped(u32),
}

/// Run the program on a booted kernel. `emit` gets each output line as it is produced.
pub fn run(k: &mut Kernel, prm: &Params, emit: &mut dyn FnMut(&str)) -> Result<Outcome, MmError> {
    run_observed(k, prm, emit, &mut |_, _| ControlFlow::Continue(()))
}

/// [`run`], showing the kernel to `observe` after each child and at the stop point (for
/// plots and progress bars that read its counters as they go). `Break` ends the run there:
/// no more children, no dumps, no teardown (the caller drops or finishes the kernel).
pub fn run_observed(
    k: &mut Kernel,
    prm: &Params,
    emit: &mut dyn FnMut(&str),
    observe: &mut dyn FnMut(&Kernel, Event) -> ControlFlow<()>,
) -> Result<Outcome, MmError> {
    if let Some(d) = prm.design {
        k.hm.design = d;
    }
    let ncpus = k.machine.cpus.len();
    let size = prm.size_mib << 20;
    let pages = size / PAGE_SIZE;
    let every = if prm.every < 1 { 50 } else { prm.every };
    let mut r = Run {
        k,
        out: Outcome::default(),
        t0: Instant::now(),
        timing: prm.timing,
        emit,
    };
    r.line(format!(
        "SHMWORK S={}MiB N={} touch={} every={every} pages_per_child={pages}",
        prm.size_mib,
        prm.n,
        prm.touch.letter()
    ));
    let cpu0 = 0;
    // The boot's userspace: init (pid 1) and the shell that starts the program; their page
    // tables are in the real run's PageTables before the first child.
    if r.k.mm.procs.is_empty() {
        // The runtime profile's pages for them (stacks, page tables, anon) become theirs.
        r.k.release_boot_userspace(cpu0);
        let init = r.k.exec_process(cpu0, "init", 0)?;
        let ipid = r.k.mm.procs[init.0].pid;
        let sh = r.k.exec_process(cpu0, "sh", ipid)?;
        // Committed_AS: they now stand for the boot's userspace, and the program reads /proc.
        r.k.vm_boot_userspace_modelled(&[init, sh]);
    }
    let sh_pid = r.k.mm.procs.last().map_or(1, |p| p.pid);
    let parent = r.k.exec_process(cpu0, "shmwork", sh_pid)?;
    r.k.mm.procs[parent.0].oom_score_adj = -1000;
    r.out.parent = Some(parent);
    let id = r.k.shmget(cpu0, size)?;
    r.out.shmid = id;
    let addr = r.k.shmat(cpu0, parent, id, false)?;
    r.t0 = Instant::now();
    for i in 0..pages {
        r.k.user_access(cpu0, parent, addr + i * PAGE_SIZE, true)?;
    }
    r.k.shmdt(cpu0, parent, addr)?;
    r.line(format!("SHMWORK populated {pages} pages in {}", r.t()));
    r.t0 = Instant::now();
    r.progress("PROGRESS", 0, None);
    if observe(r.k, Event::Populated).is_break() {
        return Ok(r.out);
    }

    let mut done = 0u32;
    let mut oom = false;
    let mut pids: Vec<Option<ProcId>> = vec![None; prm.n as usize + 1];
    for i in 1..=prm.n {
        let kills_before = r.k.mm.kills.len();
        r.k.switch_to_process(cpu0, parent)?;
        let cpu = (i as usize) % ncpus;
        let child = match r.k.fork(cpu0, parent) {
            Ok(c) => c,
            Err(MmError::Oom) => {
                r.line(format!(
                    "OOM-EVENT fork failed at child {i}: Cannot allocate memory"
                ));
                oom = true;
                break;
            }
            Err(e) => return Err(e),
        };
        pids[i as usize] = Some(child);
        r.out.children.push(child);
        let res = child_run(r.k, cpu, child, id, size, prm.touch);
        // The parent's waitpid loop: children that died meanwhile.
        let killed: Vec<u32> = r.k.mm.kills[kills_before..].iter().map(|k| k.pid).collect();
        for pid in killed {
            let idx = pids
                .iter()
                .position(|p| p.is_some_and(|p| r.k.mm.procs[p.0].pid == pid));
            let idx_s = idx.map(|x| x as i64).unwrap_or(-1);
            r.line(format!(
                "OOM-EVENT child {idx_s} (pid {pid}) died: signal 9 while {done} children were done"
            ));
            if let Some(x) = idx {
                pids[x] = None;
            }
            oom = true;
        }
        match res {
            Ok(()) | Err(MmError::Killed) | Err(MmError::Oom) => {}
            Err(e) => return Err(e),
        }
        if oom {
            break;
        }
        done = i;
        if observe(r.k, Event::ChildDone(i)).is_break() {
            r.out.children_done = done;
            return Ok(r.out);
        }
        if i <= 5 || i == 10 || i == 20 || i % every == 0 || i == prm.n {
            r.progress("PROGRESS", i, pids[1]);
        }
    }
    r.k.switch_to_process(cpu0, parent)?;
    r.progress("FINAL", done, pids.get(1).copied().flatten());
    r.line(format!(
        "SHMWORK children_done={done} oom={} elapsed={}",
        u8::from(oom),
        r.t()
    ));
    r.out.children_done = done;
    r.out.oom = oom;
    if observe(r.k, Event::Stopped(done)).is_break() {
        return Ok(r.out);
    }
    if prm.dumps {
        if let Some(Some(c1)) = pids.get(1).copied() {
            let pid = r.k.mm.procs[c1.0].pid;
            let st = procfs::pid::status(r.k, c1);
            r.dump(&format!("/proc/{pid}/status"), st);
            let mp = procfs::pid::maps(r.k, c1);
            r.dump(&format!("/proc/{pid}/maps"), mp);
        }
        for f in [
            "meminfo",
            "zoneinfo",
            "buddyinfo",
            "pagetypeinfo",
            "slabinfo",
            "vmstat",
        ] {
            let text = procfs::live::read(r.k, f).unwrap_or_default();
            r.dump(&format!("/proc/{f}"), text);
        }
    }
    for c in pids.iter().flatten() {
        r.k.exit_process(cpu0, *c)?;
    }
    r.k.shm_rmid(cpu0, id)?;
    r.line("SHMWORK children killed, segment removed".to_string());
    r.k.switch_to_process(cpu0, parent)?;
    r.progress("AFTERKILL", 0, None);
    if prm.dumps {
        let text = procfs::live::read(r.k, "meminfo").unwrap_or_default();
        r.dump("/proc/meminfo", text);
        // The whole kernel log, as the real run's `dmesg` (boot, OOM reports), untimed.
        let log: String =
            r.k.log
                .lines()
                .iter()
                .map(|l| format!("{}\n", l.text))
                .collect();
        r.dump("dmesg", log);
    }
    Ok(r.out)
}

/// A child: attach (read-only unless `w`), touch every page, report done.
fn child_run(
    k: &mut Kernel,
    cpu: usize,
    child: ProcId,
    id: u32,
    size: u64,
    touch: Touch,
) -> Result<(), MmError> {
    k.switch_to_process(cpu, child)?;
    // Back from fork: the child writes its stack (COW) and runs its text.
    let stack = crate::mm::process::stack_end(k.task_size()) - PAGE_SIZE;
    k.user_access(cpu, child, stack, true)?;
    k.user_access(cpu, child, 0x0804_9000, false)?;
    let q = k.shmat(cpu, child, id, touch != Touch::Write)?;
    let pages = size / PAGE_SIZE;
    match touch {
        Touch::Populate => k.madvise_populate_read(cpu, child, q, size)?,
        Touch::Write | Touch::Read => {
            k.user_access_run(cpu, child, q, pages, touch == Touch::Write)?;
        }
    }
    Ok(())
}

/// Every process of the run exits (the parent too) and the segment is gone: what a test
/// checks for leaks afterwards.
pub fn finish(k: &mut Kernel, _out: &Outcome) -> Result<(), MmError> {
    for i in (0..k.mm.procs.len()).rev() {
        k.exit_process(0, ProcId(i))?;
    }
    for id in 0..k.mm.shm.len() {
        if !k.mm.shm[id].removed {
            k.shm_rmid(0, id as u32)?;
        }
    }
    k.drop_binary_cache(0);
    Ok(())
}
