//! The OOM killer (`mm/oom_kill.c`): `out_of_memory`, `oom_badness`, `select_bad_process`,
//! the report (`dump_header`: the "invoked oom-killer" line, Mem-Info, the task table) and
//! the kill; the victim's memory is freed as it exits. The report (`dump_header`) is rate
//! limited, the kill's "Out of memory: Killed process" line is not.

use super::{OomKill, ProcId};
use crate::gfp::{format_gfp_mode, Gfp};
use crate::printk::LogLevel;
use crate::Kernel;

/// What `out_of_memory()` panics with when no task can be killed.
pub const SYSTEM_DEADLOCKED: &str = "System is deadlocked on memory";

/// `DEFAULT_RATELIMIT_BURST`.
const DEFAULT_RATELIMIT_BURST: u32 = 10;

/// `oom_kill_process()`'s `oom_rs`: `DEFAULT_RATELIMIT_BURST` reports per
/// `DEFAULT_RATELIMIT_INTERVAL` (5 s). The model has no clock: the kills one allocation
/// needs count as one interval (the reference run's 13 took 2.5 s, and it printed 10).
#[derive(Clone, Copy, Debug, Default)]
pub struct OomRatelimit {
    printed: u32,
}

impl OomRatelimit {
    /// `__ratelimit()`: may this report be printed?
    pub fn __ratelimit(&mut self) -> bool {
        self.printed += 1;
        self.printed <= DEFAULT_RATELIMIT_BURST
    }
}

impl Kernel {
    /// `oom_badness()`: rss + page-table pages (+ swap entries, none here), adjusted by
    /// oom_score_adj; None for unkillable tasks (adj -1000, no mm, already dying).
    pub fn oom_badness(&self, p: ProcId, totalpages: u64) -> Option<i64> {
        let pr = &self.mm.procs[p.0];
        if pr.dead || pr.oom_score_adj == -1000 || pr.oom_unkillable() {
            return None;
        }
        let mm = pr.mm.as_ref()?;
        let points = (mm.rss.total() + mm.pgtables_kb() / 4) as i64;
        let adj = pr.oom_score_adj as i64 * totalpages as i64 / 1000;
        Some(points + adj)
    }

    /// `out_of_memory()`: pick the worst task (the last of equals, as the scan replaces on
    /// ties), report, kill it and free its memory. False when nothing could be killed: the
    /// kernel then panics ([`SYSTEM_DEADLOCKED`], logged; the caller stops the run).
    pub fn out_of_memory(
        &mut self,
        gfp: Gfp,
        order: u32,
        cpu: usize,
        current: Option<ProcId>,
        oom_rs: &mut OomRatelimit,
    ) -> bool {
        let Some(victim) = self.select_bad_process() else {
            let mut lines = self.dump_header(gfp, order, cpu, current);
            lines.push("Out of memory and no killable processes...".to_string());
            for l in lines {
                self.log.log(LogLevel::Warning, l);
            }
            // An allocation at the system level cannot go on from here: panic(), whose
            // notifiers print the kernel offset (nokaslr) before panic=-1 reboots at once.
            for l in [
                format!("Kernel panic - not syncing: {SYSTEM_DEADLOCKED}"),
                "Kernel Offset: disabled".to_string(),
            ] {
                self.log.log(LogLevel::Emerg, l);
            }
            return false;
        };
        // oom_kill_process(): the report only if the rate limit allows.
        let mut lines = Vec::new();
        if oom_rs.__ratelimit() {
            lines = self.dump_header(gfp, order, cpu, current);
        }
        self.oom_kill_process(cpu, victim, current, lines)
    }

    /// `select_bad_process()`: the task with the highest `oom_badness`, the later of equals.
    fn select_bad_process(&self) -> Option<ProcId> {
        let totalpages = self.node.totalram_pages;
        let mut chosen: Option<(ProcId, i64)> = None;
        for i in 0..self.mm.procs.len() {
            if let Some(pts) = self.oom_badness(ProcId(i), totalpages) {
                if chosen.is_none_or(|(_, c)| pts >= c) {
                    chosen = Some((ProcId(i), pts));
                }
            }
        }
        chosen.map(|c| c.0)
    }

    /// `dump_header()` without the victim's summary: the "invoked oom-killer" line,
    /// `__show_mem(.., gfp_zone(gfp))` ("Mem-Info:" and the zones the request could use: DMA
    /// and Normal for a page table under userpte=nohigh) and the task table (`dump_tasks`).
    fn dump_header(
        &self,
        gfp: Gfp,
        order: u32,
        cpu: usize,
        current: Option<ProcId>,
    ) -> Vec<String> {
        let (comm, adj) = match current {
            Some(c) => {
                let p = &self.mm.procs[c.0];
                (p.comm.clone(), p.oom_score_adj)
            }
            None => ("kworker".to_string(), 0),
        };
        let mut lines = vec![format!(
            "{comm} invoked oom-killer: gfp_mask={}, order={order}, oom_score_adj={adj}",
            format_gfp_mode(gfp)
        )];
        lines.extend(self.node.show_mem(self.node.gfp_zone(gfp), cpu));
        lines.push("Tasks state (memory values in pages):".to_string());
        lines.push(
            "[  pid  ]   uid  tgid total_vm      rss pgtables_bytes swapents oom_score_adj name"
                .to_string(),
        );
        for p in &self.mm.procs {
            // dump_task() skips what oom_unkillable_task() says.
            if p.dead || p.oom_unkillable() {
                continue;
            }
            if let Some(mm) = &p.mm {
                lines.push(format!(
                    "[{:7}] {:5} {:5} {:8} {:8} {:8} {:8}         {:5} {}",
                    p.pid,
                    0,
                    p.pid,
                    mm.total_vm(),
                    mm.rss.total(),
                    mm.pgtables_kb() * 1024,
                    0,
                    p.oom_score_adj,
                    p.comm
                ));
            }
        }
        lines
    }

    /// `oom_kill_process()` after the report (`header`, empty when rate limited; it ends
    /// with `dump_oom_summary`'s line): the kill's line, `OOM_KILL`, and the victim's exit.
    fn oom_kill_process(
        &mut self,
        cpu: usize,
        victim: ProcId,
        current: Option<ProcId>,
        mut lines: Vec<String>,
    ) -> bool {
        let v = &self.mm.procs[victim.0];
        let Some(mm) = v.mm.as_ref() else {
            return false;
        };
        if !lines.is_empty() {
            lines.push(format!(
                "oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=/,mems_allowed=0,global_oom,task_memcg=/,task={},pid={},uid=0",
                v.comm, v.pid
            ));
        }
        lines.push(format!(
            "Out of memory: Killed process {} ({}) total-vm:{}kB, anon-rss:{}kB, file-rss:{}kB, shmem-rss:{}kB, UID:0 pgtables:{}kB oom_score_adj:{}",
            v.pid,
            v.comm,
            mm.total_vm() * 4,
            mm.rss.anon * 4,
            mm.rss.file * 4,
            mm.rss.shmem * 4,
            mm.pgtables_kb(),
            v.oom_score_adj
        ));
        let kill = OomKill {
            pid: v.pid,
            comm: v.comm.clone(),
            by_pid: current.map_or(0, |c| self.mm.procs[c.0].pid),
        };
        for l in lines {
            self.log.log(LogLevel::Warning, l);
        }
        self.mm.kills.push(kill);
        // __oom_kill_process(): count_vm_event(OOM_KILL).
        self.node.vm_events[crate::vmstat::VmEventItem::OomKill] += 1;
        self.mm.procs[victim.0].oom_killed = true;
        // SIGKILL: the victim exits (its memory, page tables and stack go back).
        if let Err(e) = self.exit_process(cpu, victim) {
            self.log
                .log(LogLevel::Err, format!("BUG: exit after OOM kill: {e}"));
        }
        // The allocating task runs again on this CPU.
        if let Some(c) = current {
            if c != victim && !self.mm.procs[c.0].dead {
                let _ = self.switch_to_process(cpu, c);
            }
        }
        true
    }
}
