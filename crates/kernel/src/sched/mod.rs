//! CPUs, tasks, wait queues and a deterministic scheduler (kernel/sched/, include/linux/wait.h).
//!
//! Each simulated CPU of the machine has a current task and the live preempt count
//! (x86 keeps `__preempt_count` per CPU; the model saves it in the task while the task is
//! switched out). Everything else that belongs to a task lives in its [`Task`]: the
//! kmap_local stack (`kmap_ctrl`), the pagefault-disable and migrate-disable counts, and —
//! for the debug checks — the kmaps it holds. Every CPU has an idle task (`swapper/N`) that
//! is current when nothing else runs; the boot's own work (zeroing pages, …) runs as that
//! task.
//!
//! Kernel paths that may sleep do not block a host thread: they put the task on a
//! [`WaitQueue`], mark it uninterruptible and return [`Blocking::Sleep`]; whoever runs the
//! task calls the path again once it is woken (see [`exec`] and ARCHITECTURE.md).

pub mod exec;
pub mod rng;
mod switch;

use std::collections::VecDeque;

/// Index of a task in [`Sched::tasks`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct TaskId(pub usize);

/// Index of a wait queue in [`Sched::waitqueues`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub struct WaitQueueId(pub usize);

/// `pkmap_map_wait`, the one wait queue of kmap() on x86 (colour 0).
pub const PKMAP_MAP_WAIT: WaitQueueId = WaitQueueId(0);

/// The result of a kernel path that may sleep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Blocking<T> {
    /// Done.
    Ready(T),
    /// The task went to sleep on this wait queue (TASK_UNINTERRUPTIBLE); run the same
    /// call again once it has been woken.
    Sleep(WaitQueueId),
}

/// `__state` of a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum TaskState {
    /// TASK_RUNNING: on a CPU or on a runqueue.
    Running,
    /// TASK_UNINTERRUPTIBLE, on a wait queue.
    Uninterruptible(WaitQueueId),
    /// Exited normally.
    Dead,
    /// Killed by an oops (a BUG in a kernel path); its mappings stay as they were.
    Oopsed,
}

/// How a task holds a mapping (for the debug checks and deadlock reports).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum MapKind {
    Pkmap,
    Local,
    Atomic,
    Typed(crate::design::KmType),
}

/// One mapping a task holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct HeldMap {
    pub kind: MapKind,
    pub va: u64,
    pub pfn: u64,
    pub cpu: usize,
}

/// Most kmap_local slots a task can hold (KM_MAX_IDX with DEBUG_KMAP_LOCAL).
pub const KM_MAX_IDX_CAP: usize = 33;

/// Entries of `kmap_ctrl.pteval`: KM_MAX_IDX_CAP rounded up to a power of two, so the
/// hot paths index it with a mask (their index is below KM_MAX_IDX_CAP) instead of a
/// bounds check.
pub const KM_PTEVAL_SLOTS: usize = 64;
const _: () = assert!(KM_PTEVAL_SLOTS.is_power_of_two() && KM_PTEVAL_SLOTS >= KM_MAX_IDX_CAP);

/// `struct kmap_ctrl`: the task's kmap_local stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct KmapCtrl {
    /// Slots pushed (`idx`), counting the guard slots of DEBUG_KMAP_LOCAL.
    pub idx: u64,
    /// PTE value of each slot, restored when the task is switched back in (the first
    /// KM_MAX_IDX_CAP are used).
    #[serde(skip)]
    pub pteval: [u64; KM_PTEVAL_SLOTS],
}

impl KmapCtrl {
    /// `pteval[slot]`, for a slot below KM_MAX_IDX_CAP (masked: no bounds check).
    #[inline(always)]
    pub fn pteval_mut(&mut self, slot: u64) -> &mut u64 {
        &mut self.pteval[slot as usize & (KM_PTEVAL_SLOTS - 1)]
    }
}

impl Default for KmapCtrl {
    fn default() -> Self {
        KmapCtrl {
            idx: 0,
            pteval: [0; KM_PTEVAL_SLOTS],
        }
    }
}

/// A kernel task (`struct task_struct`, the parts the model needs).
#[derive(Clone, Debug, serde::Serialize)]
pub struct Task {
    pub pid: u32,
    pub comm: String,
    pub state: TaskState,
    /// `task_cpu()`: where it runs or last ran.
    pub cpu: usize,
    pub is_idle: bool,
    pub kmap_ctrl: KmapCtrl,
    /// Saved preempt count while switched out.
    pub preempt_count: u32,
    /// `current->pagefault_disabled`.
    pub pagefault_disabled: u32,
    /// `current->migration_disabled`.
    pub migration_disabled: u32,
    /// The wait queue the task was added to and has not yet removed itself from.
    pub on_wq: Option<WaitQueueId>,
    /// Mappings held (debug bookkeeping, DEBUG_KMAP_LOCAL's checker).
    pub held: Vec<HeldMap>,
    /// Persistent kmaps this task holds, counted whatever the debug options (kmap +1, the
    /// task's kunmap −1): what a deadlock report says a task holds when `held` is not kept.
    pub pkmaps: u32,
}

impl Task {
    fn new(pid: u32, comm: String, cpu: usize, is_idle: bool) -> Self {
        Task {
            pid,
            comm,
            state: TaskState::Running,
            cpu,
            is_idle,
            kmap_ctrl: KmapCtrl::default(),
            preempt_count: 0,
            pagefault_disabled: 0,
            migration_disabled: 0,
            on_wq: None,
            held: Vec::new(),
            pkmaps: 0,
        }
    }

    pub fn alive(&self) -> bool {
        matches!(
            self.state,
            TaskState::Running | TaskState::Uninterruptible(_)
        )
    }
}

/// A wait queue head.
#[derive(Clone, Debug, serde::Serialize)]
pub struct WaitQueue {
    pub name: &'static str,
    pub waiters: VecDeque<TaskId>,
}

/// Per-CPU scheduler state.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CpuRq {
    pub current: TaskId,
    pub idle: TaskId,
    /// Runnable tasks waiting for this CPU, FIFO.
    pub rq: VecDeque<TaskId>,
    /// Live preempt count of the running task (x86 `__preempt_count`), without hardirq.
    pub preempt_count: u32,
    /// Hardirq nesting (`HARDIRQ_OFFSET` units of preempt_count).
    pub hardirq: u32,
    pub switches: u64,
}

/// Counters of the scheduler.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SchedCounters {
    pub context_switches: u64,
    pub wakeups: u64,
    pub sleeps: u64,
}

/// All tasks, CPUs and wait queues.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Sched {
    pub tasks: Vec<Task>,
    pub cpus: Vec<CpuRq>,
    pub waitqueues: Vec<WaitQueue>,
    pub counters: SchedCounters,
    next_pid: u32,
    /// `cpus[c].current` of every CPU as a plain index, in a fixed table the hot paths
    /// (kmap_local, kmap) read without going through `cpus`; kept by
    /// `context_switch`, the one place `current` changes. Entries past the last CPU hold
    /// `usize::MAX`, which no task has.
    #[serde(skip)]
    current_idx: [usize; NR_CPUS_MAX],
}

/// The size of per-CPU tables indexed with a mask: CONFIG_NR_CPUS is at most 64 on 32-bit
/// x86 (`KernelConfig::validate`).
pub const NR_CPUS_MAX: usize = 64;

impl Sched {
    /// One idle task per CPU, current everywhere; the `pkmap_map_wait` queue.
    pub fn new(ncpus: usize) -> Self {
        let tasks: Vec<Task> = (0..ncpus)
            .map(|c| Task::new(0, format!("swapper/{c}"), c, true))
            .collect();
        let cpus = (0..ncpus)
            .map(|c| CpuRq {
                current: TaskId(c),
                idle: TaskId(c),
                rq: VecDeque::new(),
                preempt_count: 0,
                hardirq: 0,
                switches: 0,
            })
            .collect();
        Sched {
            tasks,
            cpus,
            waitqueues: vec![WaitQueue {
                name: "pkmap_map_wait",
                waiters: VecDeque::new(),
            }],
            counters: SchedCounters::default(),
            next_pid: 1,
            current_idx: std::array::from_fn(|c| if c < ncpus { c } else { usize::MAX }),
        }
    }

    /// Index in `tasks` of `cpu`'s current task, `usize::MAX` (no task) for a CPU the
    /// machine does not have.
    #[inline(always)]
    pub(crate) fn current_idx(&self, cpu: usize) -> usize {
        self.current_idx.get(cpu).copied().unwrap_or(usize::MAX)
    }

    /// Make `next` current on `cpu` (`context_switch` only).
    #[inline]
    fn set_current(&mut self, cpu: usize, next: TaskId) {
        self.cpus[cpu].current = next;
        self.current_idx[cpu & (NR_CPUS_MAX - 1)] = next.0;
    }

    /// A new kernel thread, runnable on `cpu`'s runqueue.
    pub fn spawn(&mut self, comm: &str, cpu: usize) -> TaskId {
        let id = TaskId(self.tasks.len());
        let pid = self.next_pid;
        self.next_pid += 1;
        self.tasks
            .push(Task::new(pid, comm.to_string(), cpu, false));
        self.cpus[cpu].rq.push_back(id);
        id
    }

    /// The next task gets pid `next` at the earliest: the pids a real boot has spent on
    /// threads and helpers the model does not run as tasks.
    pub fn skip_pids_to(&mut self, next: u32) {
        self.next_pid = self.next_pid.max(next);
    }

    /// A new wait queue.
    pub fn new_waitqueue(&mut self, name: &'static str) -> WaitQueueId {
        self.waitqueues.push(WaitQueue {
            name,
            waiters: VecDeque::new(),
        });
        WaitQueueId(self.waitqueues.len() - 1)
    }

    /// `current` on `cpu`.
    #[inline]
    pub fn current(&self, cpu: usize) -> TaskId {
        self.cpus[cpu].current
    }

    pub fn task(&self, t: TaskId) -> &Task {
        &self.tasks[t.0]
    }

    pub fn task_mut(&mut self, t: TaskId) -> &mut Task {
        &mut self.tasks[t.0]
    }

    /// `in_interrupt()` on `cpu` (hardirq only: the model has no softirqs).
    #[inline]
    pub fn in_interrupt(&self, cpu: usize) -> bool {
        self.cpus[cpu].hardirq > 0
    }

    /// `preempt_count()` as the kernel reads it (hardirq bits included).
    #[inline]
    pub fn preempt_count(&self, cpu: usize) -> u32 {
        let c = &self.cpus[cpu];
        c.preempt_count + (c.hardirq << 16)
    }

    /// `irq_enter()`: an interrupt handler starts on `cpu`, in the current task's context.
    pub fn irq_enter(&mut self, cpu: usize) {
        self.cpus[cpu].hardirq += 1;
    }

    /// `irq_exit()`.
    pub fn irq_exit(&mut self, cpu: usize) {
        let c = &mut self.cpus[cpu];
        c.hardirq = c.hardirq.saturating_sub(1);
    }

    /// `preempt_disable()` on `cpu`.
    #[inline]
    pub fn preempt_disable(&mut self, cpu: usize) {
        self.cpus[cpu].preempt_count += 1;
    }

    /// `preempt_enable()` on `cpu` (the model preempts only at its scheduling points).
    #[inline]
    pub fn preempt_enable(&mut self, cpu: usize) {
        let c = &mut self.cpus[cpu];
        c.preempt_count = c.preempt_count.saturating_sub(1);
    }

    /// `add_wait_queue()` + `__set_current_state(TASK_UNINTERRUPTIBLE)` for `cpu`'s current.
    pub fn prepare_to_wait(&mut self, cpu: usize, wq: WaitQueueId) {
        let t = self.current(cpu);
        let task = &mut self.tasks[t.0];
        task.state = TaskState::Uninterruptible(wq);
        if task.on_wq != Some(wq) {
            task.on_wq = Some(wq);
            self.waitqueues[wq.0].waiters.push_back(t);
        }
        self.counters.sleeps += 1;
    }

    /// `remove_wait_queue()` for `cpu`'s current, after it ran again.
    #[inline]
    pub fn finish_wait(&mut self, cpu: usize) {
        let t = self.current(cpu);
        if let Some(wq) = self.tasks[t.0].on_wq.take() {
            self.waitqueues[wq.0].waiters.retain(|&w| w != t);
        }
    }

    /// `waitqueue_active()`.
    #[inline]
    pub fn waitqueue_active(&self, wq: WaitQueueId) -> bool {
        !self.waitqueues[wq.0].waiters.is_empty()
    }

    /// `wake_up()`: every sleeping waiter becomes runnable on its CPU's runqueue. Waiters
    /// stay on the queue until they run and remove themselves, as with DECLARE_WAITQUEUE.
    pub fn wake_up(&mut self, wq: WaitQueueId) -> usize {
        let mut woken = 0;
        for i in 0..self.waitqueues[wq.0].waiters.len() {
            let t = self.waitqueues[wq.0].waiters[i];
            let task = &mut self.tasks[t.0];
            if task.state == TaskState::Uninterruptible(wq) {
                task.state = TaskState::Running;
                let cpu = task.cpu;
                if self.cpus[cpu].current != t {
                    self.cpus[cpu].rq.push_back(t);
                }
                woken += 1;
            }
        }
        self.counters.wakeups += woken as u64;
        woken
    }

    /// Tasks (not idle) still alive.
    pub fn live_tasks(&self) -> impl Iterator<Item = (TaskId, &Task)> {
        self.tasks
            .iter()
            .enumerate()
            .filter(|(_, t)| !t.is_idle && t.alive())
            .map(|(i, t)| (TaskId(i), t))
    }
}
