//! `schedule()` and `context_switch()` on the simulated CPUs.

use super::{TaskId, TaskState};
use crate::highmem::debug::{Check, Severity};
use crate::highmem::KmapError;
use crate::Kernel;

impl Kernel {
    /// `context_switch()` on `cpu` to `next`: `prepare_task_switch` unmaps the outgoing
    /// task's kmap_local slots, `finish_task_switch` maps the incoming task's again.
    pub fn context_switch(&mut self, cpu: usize, next: TaskId) -> Result<(), KmapError> {
        let prev = self.sched.current(cpu);
        if prev == next {
            return Ok(());
        }
        if self.sched.tasks[prev.0].kmap_ctrl.idx != 0 {
            self.kmap_local_sched_out(cpu, prev)?;
        }
        let live = self.sched.cpus[cpu].preempt_count;
        self.sched.tasks[prev.0].preempt_count = live;
        self.sched.set_current(cpu, next);
        crate::trace::switch(cpu, next.0);
        self.sched.cpus[cpu].switches += 1;
        self.sched.counters.context_switches += 1;
        let t = &mut self.sched.tasks[next.0];
        t.cpu = cpu;
        self.sched.cpus[cpu].preempt_count = t.preempt_count;
        if t.kmap_ctrl.idx != 0 {
            self.kmap_local_sched_in(cpu, next)?;
        }
        Ok(())
    }

    /// `schedule()` on `cpu`: the current task gives up the CPU (it is asleep, exiting, or
    /// yielding) and the next runnable task of this CPU's runqueue, or the idle task, runs.
    /// Scheduling with a raised preempt count is "scheduling while atomic".
    pub fn schedule(&mut self, cpu: usize) -> Result<TaskId, KmapError> {
        let prev = self.sched.current(cpu);
        if self.sched.preempt_count(cpu) != 0 && !self.sched.tasks[prev.0].is_idle {
            let t = &self.sched.tasks[prev.0];
            let what = format!(
                "scheduling while atomic: {}/{}/0x{:08x}",
                t.comm,
                t.pid,
                self.sched.preempt_count(cpu)
            );
            self.hm_report(Severity::Bug, Check::SleepInAtomic, cpu, what, "schedule()");
        }
        let prev_task = &self.sched.tasks[prev.0];
        if prev_task.state == TaskState::Running && !prev_task.is_idle {
            self.sched.cpus[cpu].rq.push_back(prev);
        }
        let next = loop {
            match self.sched.cpus[cpu].rq.pop_front() {
                // A task can be queued twice (woken, then preempted); skip the dead.
                Some(t) if self.sched.tasks[t.0].state == TaskState::Running => break t,
                Some(_) => continue,
                None => break self.sched.cpus[cpu].idle,
            }
        };
        self.context_switch(cpu, next)?;
        Ok(next)
    }
}
