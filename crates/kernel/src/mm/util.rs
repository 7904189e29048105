//! Overcommit accounting (`mm/util.c`, `mm/mmap.c`): `vm_committed_as`, the Committed_AS of
//! /proc/meminfo.
//!
//! What is charged, as 6.1 charges it: every `VM_ACCOUNT` VMA (private writable mappings:
//! the binary's data, bss, brk, the stack, `mmap(MAP_PRIVATE)` with PROT_WRITE) for its
//! whole size, when it is created or grows and again in the child at fork (`dup_mmap`);
//! shmem files for their size (`shmem_acct_size`: SysV segments unless SHM_NORESERVE, and
//! the "/dev/zero" file of a shared anonymous mapping) until the inode is evicted.
//! `__vm_enough_memory` under the default OVERCOMMIT_GUESS charges first, then refuses a
//! single request larger than RAM + swap.
//!
//! `vm_committed_as` is a per-CPU counter (`percpu_counter_add_batch` with
//! `vm_committed_as_batch`), but since 5.8 meminfo reads it with
//! `percpu_counter_sum_positive`: the batching never shows, so the model keeps the sum.
//!
//! The boot's own userspace (the reference's small init, busybox's shell, the program that
//! dumps /proc) is not modelled as processes; what it commits is the named base below,
//! derived from the reference by `crates/highmem/tests/committed_as_derivation.rs`.

use super::{Mm, MmError, ProcId, PAGE_SIZE};
use crate::Kernel;

/// Committed_AS (kB) of the boot's userspace that stays: init and the shell that starts
/// the program. The reference work run: Committed_AS at `PROGRESS n=0` minus the SysV
/// segment minus what the workload's own program commits (and the same at `AFTERKILL`).
pub const BOOT_USERSPACE_COMMITTED_KB: u64 = 9796;

/// Committed_AS (kB) of the program that reads /proc after boot: the reference boots'
/// first meminfo dump is [`BOOT_USERSPACE_COMMITTED_KB`] plus this.
pub const PROC_READER_COMMITTED_KB: u64 = 308;

/// `vm_committed_as` and the unmodelled boot userspace's share.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VmAcct {
    /// `percpu_counter_sum(&vm_committed_as)` of the modelled processes and files (pages).
    pub committed: i64,
    /// Pages committed by the boot's userspace that no modelled process stands for.
    pub boot_userspace: u64,
}

impl Mm {
    /// The pages of this mm's `VM_ACCOUNT` VMAs (what `dup_mmap` charges for a child and
    /// `exit_mmap` gives back).
    pub fn accounted_pages(&self) -> u64 {
        self.vmas
            .iter()
            .filter(|v| v.account)
            .map(|v| v.pages())
            .sum()
    }
}

impl Kernel {
    /// `vm_acct_memory(pages)`.
    pub fn vm_acct_memory(&mut self, pages: u64) {
        self.mm.acct.committed += pages as i64;
    }

    /// `vm_unacct_memory(pages)`.
    pub fn vm_unacct_memory(&mut self, pages: u64) {
        self.mm.acct.committed -= pages as i64;
    }

    /// `__vm_enough_memory()` under OVERCOMMIT_GUESS for the task current on `cpu`: charge,
    /// then refuse (uncharge, and warn as the kernel does) a request larger than all of RAM
    /// and swap (there is no swap).
    pub fn security_vm_enough_memory(&mut self, cpu: usize, pages: u64) -> Result<(), MmError> {
        self.vm_acct_memory(pages);
        if pages > self.node.totalram_pages {
            self.vm_unacct_memory(pages);
            let current = self.sched.cpus.get(cpu).map(|c| c.current);
            if let Some(p) = self.mm.procs.iter().find(|p| Some(p.task) == current) {
                let l = format!(
                    "__vm_enough_memory: pid: {}, comm: {}, no enough memory for the allocation",
                    p.pid, p.comm
                );
                self.log.log(crate::printk::LogLevel::Warning, l);
            }
            return Err(MmError::Oom);
        }
        Ok(())
    }

    /// `vm_memory_committed()` plus the boot userspace's base: Committed_AS in pages.
    pub fn vm_memory_committed(&self) -> u64 {
        self.mm.acct.committed.max(0) as u64 + self.mm.acct.boot_userspace
    }

    /// After a boot with the runtime profile: the boot's userspace (with the program that
    /// reads /proc) has committed its share.
    pub fn vm_acct_boot_userspace(&mut self) {
        self.mm.acct.boot_userspace =
            (BOOT_USERSPACE_COMMITTED_KB + PROC_READER_COMMITTED_KB) * 1024 / PAGE_SIZE;
    }

    /// A workload replaces the boot's userspace with modelled processes: `standins` (init,
    /// the shell) are accounted by the mechanism now, so their share leaves the base, and
    /// the workload's own program reads /proc from now on, so the reader's share leaves too.
    pub fn vm_boot_userspace_modelled(&mut self, standins: &[ProcId]) {
        if self.mm.acct.boot_userspace == 0 {
            return;
        }
        let modelled: u64 = standins
            .iter()
            .filter_map(|p| self.mm.procs.get(p.0).and_then(|x| x.mm.as_ref()))
            .map(Mm::accounted_pages)
            .sum();
        let base = BOOT_USERSPACE_COMMITTED_KB * 1024 / PAGE_SIZE;
        self.mm.acct.boot_userspace = base.saturating_sub(modelled);
    }
}
