//! What a lookup in `/proc/PID` leaves behind (fs/proc/base.c): dentries and inodes, and
//! how reclaim takes them back (fs/dcache.c, fs/super.c).
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
//!
//! Once the file is closed the entry's dentry is unused: `retain_dentry` puts it at the
//! tail of the superblock's LRU (or marks it referenced when it is there already), while
//! the directory stays pinned by its child. Direct reclaim's `shrink_slab` calls the
//! superblock's shrinker (`super_cache_count` / `super_cache_scan`), whose
//! `prune_dcache_sb` walks the LRU from its head: a referenced dentry gets a second chance
//! at the tail, the others are killed with their inodes (proc's inodes are deleted at their
//! last iput, never on the inode LRU), and a directory whose last child went dies with it
//! (`shrink_dentry_list` puts it on the same dispose list). This is how the real OOM run's
//! direct reclaim gave back the children's /proc objects (proc_inode_cache from ~1290
//! objects to 71 in its slabinfo), in one pass of about as many objects as there were
//! children (its `slabs_scanned`).

use std::collections::VecDeque;

use crate::mm::{MmError, ProcId};
use crate::slab::CacheId;
use crate::Kernel;
use machine::VirtAddr;

/// The directory itself, in [`crate::mm::Process::proc_entries`].
const PID_DIR: &str = "";

/// One /proc/PID dentry in the dcache with the objects it holds (dentry, inode, LSM blob).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcEntry {
    pub name: &'static str,
    pub objs: Vec<(CacheId, VirtAddr)>,
}

/// An unused dentry on the superblock's LRU (`DCACHE_LRU_LIST`), `referenced` being
/// `DCACHE_REFERENCED`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LruDentry {
    pub proc: ProcId,
    pub name: &'static str,
    pub referenced: bool,
}

/// The proc superblock as far as reclaim sees it: `s_dentry_lru` and the shrinker's
/// `nr_deferred` (one node).
#[derive(Clone, Debug, Default)]
pub struct ProcSb {
    pub dentry_lru: VecDeque<LruDentry>,
    pub nr_deferred: i64,
}

impl ProcSb {
    fn position(&self, proc: ProcId, name: &str) -> Option<usize> {
        self.dentry_lru
            .iter()
            .position(|d| d.proc == proc && d.name == name)
    }

    /// `retain_dentry()` at the last dput of a dentry the dcache keeps.
    fn dput_unused(&mut self, proc: ProcId, name: &'static str) {
        match self.position(proc, name) {
            Some(i) => self.dentry_lru[i].referenced = true,
            None => self.dentry_lru.push_back(LruDentry {
                proc,
                name,
                referenced: false,
            }),
        }
    }

    /// A dentry in use again leaves the LRU (the kernel removes it lazily, at the next
    /// walk that meets it).
    fn d_lru_del(&mut self, proc: ProcId, name: &str) {
        if let Some(i) = self.position(proc, name) {
            self.dentry_lru.remove(i);
        }
    }
}

impl Kernel {
    /// The path walk of an open of `/proc/PID/entry` (or `/proc/self/entry` by the process
    /// itself) for process `p`, and the close: the directory's and the entry's dentry and
    /// inode, made the first time; the entry is unused afterwards. `Oom` where an
    /// allocation fails, as the open would return ENOMEM.
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
            if pr.proc_entries.iter().any(|e| e.name == name) {
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
            self.mm.procs[p.0]
                .proc_entries
                .push(ProcEntry { name, objs });
        }
        // The entry pins its directory; the close leaves the entry unused.
        self.mm.proc_sb.d_lru_del(p, PID_DIR);
        self.mm.proc_sb.dput_unused(p, entry);
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
        self.mm.proc_sb.dentry_lru.retain(|d| d.proc != p);
        let entries = std::mem::take(&mut self.mm.procs[p.0].proc_entries);
        for e in entries {
            self.free_objs(cpu, e.objs);
        }
    }

    /// `super_cache_count()` of the proc superblock: its unused dentries (its inodes never
    /// wait on the inode LRU; `vfs_cache_pressure` is 100).
    pub(crate) fn proc_super_cache_count(&self) -> u64 {
        self.mm.proc_sb.dentry_lru.len() as u64
    }

    /// `super_cache_scan()`: the share of `nr_to_scan` for the dentries (`mult_frac` over
    /// dentries + inodes + 1), pruned; the inode share finds an empty inode LRU. The number
    /// of dentries isolated.
    pub(crate) fn proc_super_cache_scan(&mut self, cpu: usize, nr_to_scan: u64) -> u64 {
        let dentries = self.proc_super_cache_count();
        let total_objects = dentries + 1;
        let share = nr_to_scan * dentries / total_objects;
        self.prune_dcache_sb(cpu, share + 1)
    }

    /// `prune_dcache_sb()`: walk `nr_to_walk` dentries from the LRU's head
    /// (`dentry_lru_isolate`: a referenced one loses the flag and goes to the tail), then
    /// kill the isolated ones (`shrink_dentry_list`). The number isolated.
    fn prune_dcache_sb(&mut self, cpu: usize, mut nr_to_walk: u64) -> u64 {
        let mut dispose = Vec::new();
        while nr_to_walk > 0 {
            let Some(mut d) = self.mm.proc_sb.dentry_lru.pop_front() else {
                break;
            };
            nr_to_walk -= 1;
            if d.referenced {
                d.referenced = false;
                self.mm.proc_sb.dentry_lru.push_back(d);
            } else {
                dispose.push(d);
            }
        }
        for d in &dispose {
            self.dentry_kill(cpu, d.proc, d.name);
        }
        dispose.len() as u64
    }

    /// `__dentry_kill()` of an unused /proc/PID dentry: its dentry and inode are freed. The
    /// reference it held on its directory goes too (`__dput_to_list`): a directory left
    /// without children is unused and joins the same dispose list, so it dies in the same
    /// pass without waiting on the LRU.
    fn dentry_kill(&mut self, cpu: usize, p: ProcId, name: &'static str) {
        let entries = &mut self.mm.procs[p.0].proc_entries;
        let Some(i) = entries.iter().position(|e| e.name == name) else {
            return;
        };
        let e = entries.remove(i);
        let orphan_dir = name != PID_DIR && entries.iter().all(|e| e.name == PID_DIR);
        self.free_objs(cpu, e.objs);
        if orphan_dir {
            self.mm.proc_sb.d_lru_del(p, PID_DIR);
            self.dentry_kill(cpu, p, PID_DIR);
        }
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
