//! The highmem debug checks and their kernel-style reports (DEBUG_HIGHMEM,
//! DEBUG_KMAP_LOCAL, DEBUG_ATOMIC_SLEEP's `might_sleep`), plus a checked read through a
//! kmap address.
//!
//! A report is data ([`Report`]) and lines in the kernel log. A `BUG:` that the kernel
//! answers with an oops aborts the call ([`KmapError::Report`]); a `WARNING:` (and the
//! might_sleep splat, which only prints) is recorded and the call goes on, as in the
//! kernel. Nothing here panics.

use super::KmapError;
use crate::printk::LogLevel;
use crate::sched::{MapKind, TaskId};
use crate::Kernel;
use machine::{Access, VirtAddr, PAGE_SIZE};

/// What went wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Check {
    /// kunmap_local / kunmap_atomic of an address that is not the top of the stack.
    OutOfOrderUnmap,
    /// kunmap of a page (or address) that has no mapping.
    UnmapNotMapped,
    /// A slot about to be mapped already holds a PTE.
    SlotNotEmpty,
    /// might_sleep / schedule with preemption disabled (an atomic kmap held).
    SleepInAtomic,
    /// kmap() in interrupt context.
    KmapInInterrupt,
    /// A task exits with mappings (or a raised preempt count) still held.
    HeldAtExit,
    /// More nested kmap_local mappings than KM_MAX_IDX allows.
    TooManyNested,
    /// A typed atomic slot mapped while another user holds it on the same CPU.
    TypedSlotInUse,
    /// A read through a kmap address the task no longer (or never) held.
    UseAfterKunmap,
    /// A read through a kmap address reached a different frame than the task mapped.
    WrongFrame,
    /// A kernel access faulted (the oops of a read after kunmap).
    PageFault,
    /// A km_type the selected design does not have (the real kernel would not compile).
    NoSuchKmType,
    /// pkmap_count dropped to zero without a flush (kunmap_high's BUG).
    PkmapCount,
}

/// `BUG:` or `WARNING:`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Severity {
    Bug,
    Warning,
}

/// One kernel-style report.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Report {
    pub severity: Severity,
    pub check: Check,
    /// The message after `BUG: ` (or the WARNING's text).
    pub what: String,
    pub cpu: usize,
    pub pid: u32,
    pub comm: String,
    /// The call that committed it, e.g. `kunmap_local(0xfffba000)`.
    pub call: String,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.severity {
            Severity::Bug => writeln!(f, "BUG: {}", self.what)?,
            Severity::Warning => {
                writeln!(
                    f,
                    "WARNING: CPU: {} PID: {} at {}",
                    self.cpu, self.pid, self.call
                )?;
                writeln!(f, "{}", self.what)?;
            }
        }
        writeln!(
            f,
            "CPU: {} PID: {} Comm: {} (highmem model)",
            self.cpu, self.pid, self.comm
        )?;
        write!(f, "Call Trace:\n {}", self.call)
    }
}

/// Debug options and what they found.
///
/// Debian's 686 and 686-pae 6.1 builds set none of DEBUG_HIGHMEM, DEBUG_KMAP_LOCAL and
/// DEBUG_ATOMIC_SLEEP, so a booted kernel starts with every check off and its kmap paths
/// pay for none of them ([`HighmemDebug::for_config`]); tests of the checks turn them on
/// with [`HighmemDebug::enable_all`], as `debug_vm` is turned on for the allocator.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct HighmemDebug {
    /// CONFIG_DEBUG_HIGHMEM: the kernel's own checks of typed slots (PTE empty at map,
    /// address at unmap, cleared at unmap) and highpte-2.5's fence slots.
    pub debug_highmem: bool,
    /// The model's held-mapping checker: which task holds which mapping, exit checks,
    /// checked reads through kmap addresses. It goes with CONFIG_DEBUG_KMAP_LOCAL, the
    /// option that adds kmap error checking (its guard slots are how the kernel catches a
    /// use after unmap, which the checker reports directly).
    pub checker: bool,
    /// CONFIG_DEBUG_ATOMIC_SLEEP: might_sleep() splats.
    pub atomic_sleep: bool,
    /// Every report, in order.
    pub reports: Vec<Report>,
}

impl HighmemDebug {
    /// The checks a kernel build has: the checker with DEBUG_KMAP_LOCAL; the presets have
    /// no DEBUG_HIGHMEM or DEBUG_ATOMIC_SLEEP.
    pub fn for_config(cfg: &crate::config::KernelConfig) -> Self {
        HighmemDebug {
            checker: cfg.debug_kmap_local,
            ..HighmemDebug::default()
        }
    }

    /// Every check on (a debug build, for the tests that exercise the checks). Turn it on
    /// before any mapping is made: the checker only knows mappings made while it runs.
    pub fn enable_all(&mut self) {
        self.debug_highmem = true;
        self.checker = true;
        self.atomic_sleep = true;
    }
}

impl Kernel {
    /// Record a report against `cpu`'s current task and log it; returns it.
    pub(crate) fn hm_report(
        &mut self,
        severity: Severity,
        check: Check,
        cpu: usize,
        what: String,
        call: &str,
    ) -> Report {
        let t = self.sched.task(self.sched.current(cpu));
        let r = Report {
            severity,
            check,
            what,
            cpu,
            pid: t.pid,
            comm: t.comm.clone(),
            call: call.to_string(),
        };
        let level = match severity {
            Severity::Bug => LogLevel::Err,
            Severity::Warning => LogLevel::Warning,
        };
        for line in r.to_string().lines() {
            self.log.log(level, line.to_string());
        }
        self.hm.debug.reports.push(r.clone());
        r
    }

    /// A BUG that aborts the call.
    pub(crate) fn hm_bug(
        &mut self,
        check: Check,
        cpu: usize,
        what: String,
        call: &str,
    ) -> KmapError {
        KmapError::Report(Box::new(self.hm_report(
            Severity::Bug,
            check,
            cpu,
            what,
            call,
        )))
    }

    /// `might_sleep()`: a splat when the caller is atomic or in an interrupt.
    pub(crate) fn might_sleep(&mut self, cpu: usize, call: &str) {
        if !self.hm.debug.atomic_sleep {
            return;
        }
        let pc = self.sched.preempt_count(cpu);
        if pc == 0 {
            return;
        }
        let t = self.sched.task(self.sched.current(cpu));
        if t.is_idle {
            return;
        }
        let check = if self.sched.in_interrupt(cpu) {
            Check::KmapInInterrupt
        } else {
            Check::SleepInAtomic
        };
        let what = format!(
            "sleeping function called from invalid context at include/linux/highmem-internal.h\n\
             in_atomic(): 1, irqs_disabled(): {}, non_block: 0, pid: {}, name: {}\n\
             preempt_count: {:x}, expected: 0",
            u8::from(self.sched.in_interrupt(cpu)),
            t.pid,
            t.comm,
            pc
        );
        self.hm_report(Severity::Bug, check, cpu, what, call);
    }

    /// Record that `cpu`'s current task now holds a mapping (the checker).
    #[inline]
    pub(crate) fn hold(&mut self, cpu: usize, kind: MapKind, va: u64, pfn: u64) {
        if self.hm.debug.checker {
            let t = self.sched.current(cpu);
            self.sched.tasks[t.0]
                .held
                .push(crate::sched::HeldMap { kind, va, pfn, cpu });
        }
    }

    /// Forget the most recent matching mapping of `cpu`'s current task.
    #[inline]
    pub(crate) fn release(&mut self, cpu: usize, kind: MapKind, va: u64) {
        if self.hm.debug.checker {
            let t = self.sched.current(cpu);
            let held = &mut self.sched.tasks[t.0].held;
            if held.last().is_some_and(|h| h.kind == kind && h.va == va) {
                held.pop();
            } else if let Some(i) = held.iter().rposition(|h| h.kind == kind && h.va == va) {
                held.remove(i);
            }
        }
    }

    /// A kernel read of the u32 at `va` on `cpu`, by the current task, through whatever
    /// the TLB and page tables say now — checked against the mappings the task holds.
    /// A fault is the oops it would be; a successful read through an address the task does
    /// not hold, or reaching another frame than the task mapped, is flagged (the frame
    /// came from a stale TLB entry or a slot someone else overwrote).
    pub fn kmap_read_u32(&mut self, cpu: usize, va: VirtAddr) -> Result<u32, KmapError> {
        let call = format!("read *({:#x})", va.as_u64());
        let pa = match self.machine.translate(cpu, va, Access::KERNEL_READ) {
            Ok(pa) => pa,
            Err(e) => {
                let what = format!(
                    "unable to handle page fault for address: {:08x}\n\
                     #PF: supervisor read access in kernel mode\n\
                     #PF: error_code(0x0000) - not-present page ({e})",
                    va.as_u64()
                );
                return Err(self.hm_bug(Check::PageFault, cpu, what, &call));
            }
        };
        // The load itself, through the translation just made (a TLB hit).
        let value = self.machine.read_virt_u32(cpu, va)?;
        if !self.hm.debug.checker {
            return Ok(value);
        }
        let page = va.as_u64() & !(PAGE_SIZE - 1);
        let got = pa.as_u64() / PAGE_SIZE;
        // What a fresh walk says now: if it differs, the TLB served a stale entry.
        let walked = self.machine.cpus[cpu]
            .probe(&self.machine.mem, va, Access::KERNEL_READ)
            .and_then(Result::ok)
            .map(|t| t.phys.as_u64() / PAGE_SIZE);
        let stale = walked != Some(got);
        let cur = self.sched.current(cpu);
        let held = self.sched.tasks[cur.0]
            .held
            .iter()
            .rev()
            .find(|h| h.va & !(PAGE_SIZE - 1) == page)
            .copied()
            .or_else(|| {
                self.local_mappings(cur)
                    .into_iter()
                    .find(|h| h.va == page && h.cpu == cpu)
            });
        let shared_pkmap = self
            .pkmap_nr(page)
            .is_some_and(|nr| self.hm.pkmap.count[nr] >= 2);
        let lowmem = page >= self.config.page_offset()
            && page < self.config.page_offset() + self.layout.max_low_pfn.as_u64() * PAGE_SIZE;
        let tlb_note = if stale {
            format!(
                " (stale TLB entry on CPU {cpu}: page tables now say {})",
                walked.map_or("not present".to_string(), |p| format!("pfn {p:#x}"))
            )
        } else {
            String::new()
        };
        match held {
            Some(h) if h.pfn != got => {
                let what = format!(
                    "KMAP: read through {:#x} reached pfn {got:#x}, but the task mapped pfn {:#x}{tlb_note}",
                    va.as_u64(),
                    h.pfn
                );
                Err(self.hm_bug(Check::WrongFrame, cpu, what, &call))
            }
            Some(_) => Ok(value),
            None if lowmem || shared_pkmap => Ok(value),
            None => {
                let what = format!(
                    "KMAP: read through {:#x} after kunmap: reached pfn {got:#x}{tlb_note}",
                    va.as_u64()
                );
                Err(self.hm_bug(Check::UseAfterKunmap, cpu, what, &call))
            }
        }
    }

    /// Every mapping `t` holds: persistent and typed ones from its bookkeeping, local and
    /// atomic ones from its `kmap_ctrl`.
    pub fn held_mappings(&self, t: TaskId) -> Vec<crate::sched::HeldMap> {
        let mut v = self.sched.task(t).held.clone();
        v.extend(self.local_mappings(t));
        v
    }

    /// Exit checks for `t`: mappings or a preempt count still held.
    pub(crate) fn exit_checks(&mut self, cpu: usize, t: TaskId) {
        let pc = self.sched.cpus[cpu].preempt_count;
        let all = self.held_mappings(t);
        let task = &self.sched.tasks[t.0];
        if all.is_empty() && task.kmap_ctrl.idx == 0 && pc == 0 {
            return;
        }
        let list: Vec<String> = all
            .iter()
            .map(|h| format!("{:?} {:#x}->pfn {:#x}", h.kind, h.va, h.pfn))
            .collect();
        let what = format!(
            "task {}/{} exited holding {} kmap(s) [{}], kmap_local idx {}, preempt_count {}",
            task.comm,
            task.pid,
            all.len(),
            list.join(", "),
            task.kmap_ctrl.idx,
            pc
        );
        self.hm_report(Severity::Warning, Check::HeldAtExit, cpu, what, "do_exit()");
    }
}
