//! What a lookup in `/proc/PID` leaves behind (fs/proc/base.c): dentries and inodes.
//!
//! The first open of `/proc/self/oom_score_adj` or `/proc/PID/status` instantiates the
//! task's directory (`proc_pid_lookup` → `proc_pid_instantiate`) and then the entry
//! (`proc_pident_lookup`), each a `dentry` and a `proc_inode_cache` inode. They stay in the
//! dcache while the task lives (`pid_delete_dentry` only lets them go once it is dead) and
//! `proc_flush_pid` drops them when the task is reaped. So a program that opens a /proc
//! file of a process makes that process hold two more objects per entry in low memory:
//! shmwork's children each open their own `oom_score_adj`, its parent reads its first
//! child's `status` at every PROGRESS line, and the real runs' Slab grows by these two
//! pairs a child.

use crate::mm::{MmError, ProcId};
use crate::Kernel;
use machine::VirtAddr;

/// The directory itself, in [`crate::mm::Process::proc_entries`].
const PID_DIR: &str = "";

impl Kernel {
    /// The path walk of an open of `/proc/PID/entry` (or `/proc/self/entry` by the process
    /// itself) for process `p`: the directory's and the entry's dentry and inode, made the
    /// first time. `Oom` where an allocation fails, as the open would return ENOMEM.
    pub fn proc_pid_lookup(
        &mut self,
        cpu: usize,
        p: ProcId,
        entry: &'static str,
    ) -> Result<(), MmError> {
        for name in [PID_DIR, entry] {
            let pr = self.mm.procs.get(p.0).ok_or(MmError::NoProc)?;
            if pr.dead {
                return Err(MmError::NoProc);
            }
            if pr.proc_entries.contains(&name) {
                continue;
            }
            // d_alloc_parallel() first, then the instantiate's new_inode().
            let mut objs = self.alloc_objs(cpu, &["dentry"]);
            let (inode, lsm) = self.alloc_inode(cpu, "proc_inode_cache");
            if objs.is_empty() || inode.is_none() {
                self.free_objs(cpu, objs);
                self.free_inode(cpu, "proc_inode_cache", inode, lsm);
                return Err(MmError::Oom);
            }
            for (c, o) in [("proc_inode_cache", inode), ("lsm_inode_cache", lsm)] {
                if let (Some(id), Some(o)) = (self.slab.find_cache(c), o) {
                    objs.push((id, o));
                }
            }
            let pr = &mut self.mm.procs[p.0];
            pr.proc_entries.push(name);
            pr.proc_objs.extend(objs);
        }
        Ok(())
    }

    /// `write(open("/proc/self/oom_score_adj"), value)` by process `p`.
    pub fn proc_write_oom_score_adj(
        &mut self,
        cpu: usize,
        p: ProcId,
        value: i32,
    ) -> Result<(), MmError> {
        if !(-1000..=1000).contains(&value) {
            return Err(MmError::Inval);
        }
        self.proc_pid_lookup(cpu, p, "oom_score_adj")?;
        self.mm.procs[p.0].oom_score_adj = value;
        Ok(())
    }

    /// `proc_flush_pid()` at release: the task's /proc dentries and inodes go.
    pub(crate) fn proc_flush_pid(&mut self, cpu: usize, p: ProcId) {
        let pr = &mut self.mm.procs[p.0];
        pr.proc_entries.clear();
        let objs = std::mem::take(&mut pr.proc_objs);
        self.free_objs(cpu, objs);
    }
}

impl Kernel {
    /// `alloc_inode()`: the filesystem's inode object (`cache`), and `security_inode_alloc`'s
    /// blob where the LSMs keep one per inode (the amd64 kernel's `lsm_inode_cache`; the i386
    /// kernels have none).
    pub(crate) fn alloc_inode(
        &mut self,
        cpu: usize,
        cache: &str,
    ) -> (Option<VirtAddr>, Option<VirtAddr>) {
        let inode = self.alloc_objs(cpu, &[cache]).first().map(|x| x.1);
        let lsm = inode.and_then(|_| {
            self.alloc_objs(cpu, &["lsm_inode_cache"])
                .first()
                .map(|x| x.1)
        });
        (inode, lsm)
    }

    /// The inode objects of [`Self::alloc_inode`] back to their caches.
    pub(crate) fn free_inode(
        &mut self,
        cpu: usize,
        cache: &str,
        inode: Option<VirtAddr>,
        lsm: Option<VirtAddr>,
    ) {
        let mut objs = Vec::new();
        for (c, o) in [(cache, inode), ("lsm_inode_cache", lsm)] {
            if let (Some(id), Some(o)) = (self.slab.find_cache(c), o) {
                objs.push((id, o));
            }
        }
        self.free_objs(cpu, objs);
    }
}
