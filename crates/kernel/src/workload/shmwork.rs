//! `shmwork S N touch every` (`../shared/reference/kernel/shmwork.c`) on the model: a parent
//! creates a SysV segment of S MiB and populates it, then forks N children one after another;
//! each attaches the segment and touches every page (`r` read faults, `w` write faults,
//! `p` MADV_POPULATE_READ). The output has the program's lines and /proc dumps.

use crate::mm::process::{stack_end, vdso_start};
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
    /// The program's exit status: 0, or 1 where `shmget` or `shmat` failed.
    pub status: i32,
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

/// The program's own pages. Traced on the real binary (the reference's `/bin/shmwork`,
/// same bytes: every first touch of a page by the parent before its first fork, by a
/// child from fork's return to its shmat, and every store of the parent between two
/// forks), as (address, write) in the order they happen. Reads of the binary's read-only
/// pages fault around (`mm/filemap.rs`), so only the first touch of each window faults;
/// a write to a page shared since fork is a COW fault. The heap starts at the brk base,
/// the stack's pages are counted down from its top.
struct Program {
    heap: u64,
    stack_top: u64,
    vdso: u64,
}

impl Program {
    fn new(task_size: u64) -> Program {
        Program {
            heap: 0x0960_2000,
            stack_top: stack_end(task_size),
            vdso: vdso_start(task_size),
        }
    }

    /// Page `n` of the stack, counting from its top (1: argv, envp and auxv; 2: main's
    /// frame; 3: the deeper frames of printf and the /proc readers).
    fn stack(&self, n: u64) -> u64 {
        self.stack_top - n * PAGE_SIZE
    }

    /// The parent from exec to its first fork: start-up (`_dl_aux_init`, IRELATIVE
    /// relocations through the ELF header's `__rel_iplt_start`, the ifunc resolvers,
    /// `__libc_setup_tls`'s TCB in the first heap page, `_dl_protect_relro` after), then
    /// main: the segment, the n=0 PROGRESS line (stdout's buffer, fopen's FILEs). Nine
    /// anonymous pages plus three of stack (the reference's child inherits 12: RssAnon 48 kB).
    fn parent_start(&self) -> Vec<(u64, bool)> {
        vec![
            (0x0804_9e80, false),       // _start
            (self.stack(1), true),      // its pushes
            (0x0811_3fcc, true),        // environ (.bss)
            (0x0810_fd18, true),        // __libc_stack_end (PT_GNU_RELRO, still writable)
            (0x0808_3cf0, false),       // _dl_aux_init
            (0x0811_4058, true),        // _dl_auxv (.bss)
            (0x0811_097c, true),        // _dl_pagesize (.data)
            (0x080d_b8a5, false),       // .rodata
            (0x0810_ee48, false),       // tunable_list (PT_GNU_RELRO), read …
            (0x0810_efd0, true),        // … and written: COW of the file page
            (0x0811_1310, true),        // __x86_shared_non_temporal_threshold
            (0x0804_817c, false),       // __rel_iplt_start (the ELF header's page)
            (0x0806_fe20, false),       // strchr_ifunc
            (0x080c_4fa0, false),       // strspn_ifunc
            (0x080b_1d80, false),       // strncasecmp_l
            (0x0807_0040, false),       // strcspn_ifunc
            (self.heap + 0x350, true),  // __libc_setup_tls: TCB and static TLS
            (self.vdso, false),         // the first syscall: __kernel_vsyscall
            (0x0809_22c0, false),       // __ctype_init
            (0x080a_fb10, false),       // __pthread_tunables_init
            (self.stack(2), true),      // main's frame
            (0x0805_134c, false),       // __x86.get_pc_thunk.cx
            (0x080f_1194, false),       // .rodata
            (self.stack(3), true),      // printf's frames
            (0x080d_4590, false),       // __register_frame_info_bases
            (self.heap + 0x1bcc, true), // malloc: stdout's buffer, pids
            (0x080e_f3a1, false),       // _itoa_lower_digits
            (self.heap + 0x211c, true), // malloc: fopen's FILE
        ]
    }

    /// A child from fork's return to its shmat (then the segment; its last write and
    /// pause() touch nothing new): the kernel's store of the tid (CLONE_CHILD_SETTID, in
    /// the TCB), the return through the vDSO, `_Fork`'s child side (`__fork_generation`,
    /// the loader's locks re-initialised), main's `set_oom_adj` and `shmat`.
    fn child_start(&self) -> Vec<(u64, bool)> {
        vec![
            (self.heap + 0x3e8, true), // schedule_tail: put_user(tid, set_child_tid)
            (self.vdso, false),        // back from clone in __kernel_vsyscall
            (self.stack(2), true),     // _Fork's and main's frames
            (0x0807_d5bf, false),      // _Fork
            (0x0811_43c4, true),       // __fork_generation (.bss)
            (0x0811_0958, true),       // _dl_load_lock (.data)
            (0x0804_9ec0, false),      // main, set_oom_adj
            (0x080d_7008, false),      // "/proc/self/oom_score_adj" (open's getname)
            (0x0808_18c0, false),      // shmat
        ]
    }

    /// The parent's stores right after a fork: `pids[i]` (heap page 1) and the poll loop's
    /// frame.
    fn parent_after_fork(&self) -> Vec<(u64, bool)> {
        vec![(self.heap + 0x1d28, true), (self.stack(2), true)]
    }

    /// The parent's stores for a PROGRESS line: errno and the TCB (heap page 0), the FILE
    /// fopen takes (heap page 2), the deeper frames of progress() and zone_free().
    fn parent_progress(&self) -> Vec<(u64, bool)> {
        vec![
            (self.heap + 0x3e0, true),
            (self.heap + 0x211c, true),
            (self.stack(3), true),
        ]
    }

    /// The parent's `fflush(stdout)` at the top of each iteration: the FILE
    /// `_IO_2_1_stdout_` (.data) and its lock `_IO_stdfile_1_lock` (.bss).
    fn parent_loop_top(&self) -> Vec<(u64, bool)> {
        vec![(0x0811_020c, true), (0x0811_1a9c, true)]
    }
}

/// The user accesses `touches` of process `p`, running on `cpu`.
fn touch(k: &mut Kernel, cpu: usize, p: ProcId, touches: &[(u64, bool)]) -> Result<(), MmError> {
    k.switch_to_process(cpu, p)?;
    for &(va, write) in touches {
        k.user_access(cpu, p, va, write)?;
    }
    Ok(())
}

struct Run<'a> {
    k: &'a mut Kernel,
    out: Outcome,
    t0: Instant,
    timing: bool,
    dumps: bool,
    emit: &'a mut dyn FnMut(&str),
}

impl Run<'_> {
    fn line(&mut self, s: String) {
        (self.emit)(&s);
        self.out.lines.push(s);
    }
    /// The program's `return 1` after a failed call (`what`: the line it prints): it
    /// exits, and the console ends with the kernel log.
    fn program_failed(
        &mut self,
        cpu: usize,
        parent: ProcId,
        what: &str,
    ) -> Result<Outcome, MmError> {
        self.line(format!("SHMWORK {what}"));
        self.out.status = 1;
        self.k.exit_process(cpu, parent)?;
        self.dump_dmesg();
        Ok(std::mem::take(&mut self.out))
    }

    /// The whole kernel log, as the real run's `dmesg` (boot, OOM reports), untimed.
    fn dump_dmesg(&mut self) {
        if !self.dumps {
            return;
        }
        let log: String = self
            .k
            .log
            .lines()
            .iter()
            .map(|l| format!("{}\n", l.text))
            .collect();
        self.dump("dmesg", log);
    }

    fn t(&self) -> String {
        if self.timing {
            format!("{:.1}s", self.t0.elapsed().as_secs_f64())
        } else {
            "0.0s".to_string()
        }
    }
    fn progress(&mut self, tag: &str, n: u32, sample: Option<ProcId>) {
        // vmpte(sample) opens /proc/PID/status; gcc evaluates printf's arguments right to
        // left, so before the meminfo reads.
        if let Some(p) = sample {
            let _ = self.k.proc_pid_lookup(0, p, "status");
        }
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

/// The pid of the program in the reference's runs on one CPU (its first child's
/// `/proc/97/status`): the boot had spent the pids before it on kernel threads and the
/// init's helpers, which the model does not run as tasks. Checked against the reference by
/// `tests/shmwork_reference.rs`.
pub const REFERENCE_PROGRAM_PID: u32 = 96;

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
    let mut r = Run {
        k,
        out: Outcome::default(),
        t0: Instant::now(),
        timing: prm.timing,
        dumps: prm.dumps,
        emit,
    };
    match run_body(&mut r, prm, observe) {
        Err(MmError::Panic(m)) => {
            // The console up to the panic (the machine stops there).
            r.dump_dmesg();
            Err(MmError::Panic(m))
        }
        res => res,
    }
}

/// [`run_observed`] from the first line on.
fn run_body(
    r: &mut Run,
    prm: &Params,
    observe: &mut dyn FnMut(&Kernel, Event) -> ControlFlow<()>,
) -> Result<Outcome, MmError> {
    let ncpus = r.k.machine.cpus.len();
    // `(size_t)smib << 20` in a 32-bit program (the x86_64 variant runs the same i386
    // binary): the size wraps at 4 GiB, and shmget sees what is left.
    let size = (prm.size_mib << 20) & u64::from(u32::MAX);
    let pages = size / PAGE_SIZE;
    let every = if prm.every < 1 { 50 } else { prm.every };
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
        // The pids the reference's boot had spent on kernel threads and its init's helpers
        // before the program, whose pid is REFERENCE_PROGRAM_PID on one CPU; each further
        // CPU's kernel threads take theirs before it too.
        let extra = r.k.extra_cpus() * r.k.profile.kthreads_per_cpu;
        let program_pid = REFERENCE_PROGRAM_PID + u32::try_from(extra).unwrap_or(0);
        r.k.sched.skip_pids_to(program_pid - 1);
        let sh = r.k.exec_process(cpu0, "sh", ipid)?;
        // The real run has no such process (its OOM reports list only shmwork): the
        // stand-in's share is the real init's, which the OOM killer never picks or lists.
        r.k.mm.procs[sh.0].init_part = true;
        // Committed_AS: they now stand for the boot's userspace, and the program reads /proc.
        r.k.vm_boot_userspace_modelled(&[init, sh]);
        // The reference's init dumps /proc/sys/vm/lowmem_reserve_ratio before it starts
        // the program, and that read recomputes the zones' reserves.
        r.k.node.sysctl_read_lowmem_reserve_ratio();
    }
    let sh_pid = r.k.mm.procs.last().map_or(1, |p| p.pid);
    let prog = Program::new(r.k.task_size());
    let parent =
        r.k.exec_program(cpu0, "shmwork", sh_pid, &prog.parent_start())?;
    // set_oom_adj("-1000"): the parent's /proc/self/oom_score_adj.
    r.k.proc_write_oom_score_adj(cpu0, parent, -1000)?;
    r.out.parent = Some(parent);
    let id = match r.k.shmget(cpu0, size) {
        Ok(id) => id,
        Err(e) => {
            return r.program_failed(cpu0, parent, &format!("shmget failed: {}", e.strerror()))
        }
    };
    r.out.shmid = id;
    let addr = match r.k.shmat(cpu0, parent, id, false) {
        Ok(a) => a,
        Err(e) => {
            return r.program_failed(cpu0, parent, &format!("shmat failed: {}", e.strerror()))
        }
    };
    r.t0 = Instant::now();
    for i in 0..pages {
        r.k.user_access(cpu0, parent, addr + i * PAGE_SIZE, true)?;
    }
    r.k.shmdt(cpu0, parent, addr)?;
    r.line(format!("SHMWORK populated {pages} pages in {}", r.t()));
    r.t0 = Instant::now();
    r.progress("PROGRESS", 0, None);
    if observe(r.k, Event::Populated).is_break() {
        return Ok(std::mem::take(&mut r.out));
    }

    let mut done = 0u32;
    let mut oom = false;
    let mut pids: Vec<Option<ProcId>> = vec![None; prm.n as usize + 1];
    for i in 1..=prm.n {
        let kills_before = r.k.mm.kills.len();
        touch(r.k, cpu0, parent, &prog.parent_loop_top())?;
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
        touch(r.k, cpu0, parent, &prog.parent_after_fork())?;
        let res = child_run(r.k, cpu, child, &prog, (id, size), prm.touch);
        // The parent's waitpid loop: children that died meanwhile. waitpid(-1) returns the
        // oldest zombie first (the children list is in fork order). The real parent reaps
        // one per 1 s poll timeout, so how many lines a storm of kills leaves depends on how
        // long it lasts; the model has no clock and reports them all.
        let mut killed: Vec<(Option<usize>, u32)> = r.k.mm.kills[kills_before..]
            .iter()
            .map(|k| {
                let idx = pids
                    .iter()
                    .position(|p| p.is_some_and(|p| r.k.mm.procs[p.0].pid == k.pid));
                (idx, k.pid)
            })
            .collect();
        killed.sort_unstable();
        for (idx, pid) in killed {
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
            return Ok(std::mem::take(&mut r.out));
        }
        if i <= 5 || i == 10 || i == 20 || i % every == 0 || i == prm.n {
            touch(r.k, cpu0, parent, &prog.parent_progress())?;
            r.progress("PROGRESS", i, pids[1]);
        }
    }
    touch(r.k, cpu0, parent, &prog.parent_progress())?;
    r.progress("FINAL", done, pids.get(1).copied().flatten());
    r.line(format!(
        "SHMWORK children_done={done} oom={} elapsed={}",
        u8::from(oom),
        r.t()
    ));
    r.out.children_done = done;
    r.out.oom = oom;
    if observe(r.k, Event::Stopped(done)).is_break() {
        return Ok(std::mem::take(&mut r.out));
    }
    if prm.dumps {
        if let Some(Some(c1)) = pids.get(1).copied() {
            let pid = r.k.mm.procs[c1.0].pid;
            r.k.proc_pid_lookup(cpu0, c1, "status")?;
            let st = procfs::pid::status(r.k, c1);
            r.dump(&format!("/proc/{pid}/status"), st);
            r.k.proc_pid_lookup(cpu0, c1, "maps")?;
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
        r.dump_dmesg();
    }
    Ok(std::mem::take(&mut r.out))
}

/// A child: its own pages (fork's return, main), attach segment `id` of `size` bytes
/// (read-only unless `w`), touch every page of it, report done.
fn child_run(
    k: &mut Kernel,
    cpu: usize,
    child: ProcId,
    prog: &Program,
    (id, size): (u32, u64),
    touch_mode: Touch,
) -> Result<(), MmError> {
    touch(k, cpu, child, &prog.child_start())?;
    k.proc_write_oom_score_adj(cpu, child, 0)?;
    let q = k.shmat(cpu, child, id, touch_mode != Touch::Write)?;
    let pages = size / PAGE_SIZE;
    match touch_mode {
        Touch::Populate => k.madvise_populate_read(cpu, child, q, size)?,
        Touch::Write | Touch::Read => {
            k.user_access_run(cpu, child, q, pages, touch_mode == Touch::Write)?;
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
