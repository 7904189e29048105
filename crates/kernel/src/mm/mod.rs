//! User processes and their address spaces (Linux 6.1 `mm/`, `kernel/fork.c`, `ipc/shm.c`,
//! `mm/oom_kill.c` on i386): an `Mm` per process with its pgd built as `pgd_alloc` does, VMAs,
//! demand paging through the simulated MMU, SysV shared memory backed by shmem pages,
//! `fork`, `exit`, `get_user_pages` and the OOM killer.
//!
//! - `pgtable_user.rs`: pgd_alloc / pgd_free, `pte_alloc` (`__userpte_alloc_gfp`), the PTE
//!   page accessors per `KernelDesign` (`pte_offset_map` / typed `KM_PTE0` / 2.4's
//!   `pte_offset_atomic` and persistent `kmap`).
//! - `fault.rs`: user accesses on a CPU (TLB → walk → #PF error code) and `handle_mm_fault`;
//!   the RSS counters split per task (`inc_mm_counter_fast`, `check_sync_rss_stat`).
//! - `filemap.rs`: fault-around (`do_fault_around`, `filemap_map_pages`) for the VMAs whose
//!   ops have `map_pages`: the rootfs binary and shared anonymous memory.
//! - `process.rs`: exec of the small static binary (a rootfs file: its page cache is shmem),
//!   `fork` (`dup_mmap` / `copy_page_range`), `exit` (`exit_mmap`: zap, free page tables),
//!   the per-process kernel objects.
//! - `shm.rs`: `shmget` / `shmat` / `shmdt` / `IPC_RMID` over a shmem page cache.
//! - `gup.rs`: `get_user_pages` and `madvise(MADV_POPULATE_READ)`.
//! - `oom_kill.rs`: `out_of_memory`, `oom_badness`, the report.
//! - `mman.rs`: shared anonymous `mmap` (`shmem_zero_setup`: a "/dev/zero" shmem file).
//! - `maple.rs`: the VMA tree's nodes (`maple_node` objects) an mm holds.
//! - `rmap.rs`: file pages' map counts (`page_add_file_rmap`), meminfo's Mapped.
//! - `util.rs`: overcommit accounting (`vm_acct_memory`, Committed_AS).

pub mod fault;
pub mod fault_stream;
pub mod filemap;
pub mod gup;
pub mod kstack;
pub mod maple;
pub mod mman;
pub mod mmap;
pub mod oom_kill;
mod pgtable_4level;
pub mod pgtable_user;
pub mod populate_stream;
pub mod process;
pub mod rmap;
pub mod shm;
pub mod swap;
pub mod util;
pub mod vmscan;

use crate::sched::TaskId;
use crate::slab::CacheId;
use machine::{Pfn, VirtAddr};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

pub const PAGE_SIZE: u64 = 4096;
/// `fault_around_bytes`' default (`rounddown_pow_of_two(65536)`).
pub const FAULT_AROUND_BYTES: u64 = 65536;
/// Index of a process in [`MmState::procs`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ProcId(pub usize);

/// What backs a VMA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmaKind {
    /// A private mapping of the executable (`/bin/NAME`), file offset in pages. The file
    /// is on the initramfs rootfs (tmpfs): its pages are shmem pages, and its vm_ops
    /// (`shmem_vm_ops`) have `map_pages`, so read faults fault around.
    File { pgoff: u64 },
    /// Private anonymous memory (bss, heap, stack).
    Anon,
    /// A SysV shared-memory attach: segment index, its key.
    Shm { seg: usize },
    /// `[vvar]`: a special mapping (VM_PFNMAP), never touched by the workload.
    Special,
    /// `[vdso]`: a special mapping whose fault (`special_mapping_fault`) maps a page of the
    /// kernel's vDSO image; counted in RssFile.
    Vdso,
    /// A shared anonymous mapping: `file` indexes [`MmState::shmem_zero`] (the shmem file
    /// `shmem_zero_setup` gave it), `pgoff` is `vm_pgoff` in that file.
    ShmemZero { file: usize, pgoff: u64 },
}

/// `struct vm_area_struct`.
#[derive(Clone, Debug)]
pub struct Vma {
    pub start: u64,
    pub end: u64,
    pub read: bool,
    pub write: bool,
    pub exec: bool,
    pub shared: bool,
    pub kind: VmaKind,
    /// What /proc/PID/maps prints in the name column.
    pub name: String,
    /// `VM_GROWSDOWN` (the stack), for VmStk.
    pub stack: bool,
    /// The brk area, for VmData.
    pub heap: bool,
    /// `VM_ACCOUNT`: the VMA's pages are charged to Committed_AS (private writable).
    pub account: bool,
    /// `anon_vma` prepared (an anonymous page was faulted in): fork copies its PTEs.
    pub anon_vma: bool,
    /// The vm_area_struct object.
    pub obj: Option<VirtAddr>,
    /// The anon_vma + anon_vma_chain objects, once prepared.
    pub anon_objs: Vec<(CacheId, VirtAddr)>,
}

impl Vma {
    /// A readable VMA of `kind` over `[start, end)` named `name`, with every other
    /// property off (not writable, private, no stack / heap / accounting, no objects yet):
    /// the callers set what their mapping has.
    pub fn new(start: u64, end: u64, kind: VmaKind, name: String) -> Vma {
        Vma {
            start,
            end,
            read: true,
            write: false,
            exec: false,
            shared: false,
            kind,
            name,
            stack: false,
            heap: false,
            account: false,
            anon_vma: false,
            obj: None,
            anon_objs: Vec::new(),
        }
    }

    pub fn pages(&self) -> u64 {
        (self.end - self.start) / PAGE_SIZE
    }
}

/// `enum { MM_FILEPAGES, MM_ANONPAGES, MM_SWAPENTS, MM_SHMEMPAGES }` (swap left out):
/// the mm's counters, or a task's not yet synced part of them (`task->rss_stat`). Signed:
/// the mm's counter may dip below zero while a task still holds its increments.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rss {
    pub file: i64,
    pub anon: i64,
    pub shmem: i64,
}

impl Rss {
    /// `get_mm_rss()`: the three counters, each read as `get_mm_counter()` (never below 0).
    pub fn total(&self) -> u64 {
        Rss::pages(self.file) + Rss::pages(self.anon) + Rss::pages(self.shmem)
    }
    /// `get_mm_counter()`'s clamp: a counter below zero reads as 0.
    pub fn pages(v: i64) -> u64 {
        v.max(0) as u64
    }
    pub fn add(&mut self, o: Rss) {
        self.file += o.file;
        self.anon += o.anon;
        self.shmem += o.shmem;
    }
}

/// `task->rss_stat` under SPLIT_RSS_COUNTING (6.1 on 32-bit SMP builds): the faulting
/// task's RSS increments, added to the mm's counters every `TASK_RSS_EVENTS_THRESH` faults
/// (`check_sync_rss_stat`) and at exit (`sync_mm_rss`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RssStat {
    pub count: Rss,
    pub events: u32,
}

/// `struct mm_struct`.
#[derive(Clone, Debug)]
pub struct Mm {
    /// The pgd: 2^pgd_order lowmem pages.
    pub pgd: Pfn,
    pub pgd_order: u32,
    /// PAE: the preallocated PMD pages (4 with an unshared kernel PMD), then PTI's user PMD.
    pub pmds: Vec<Pfn>,
    /// 4-level paging (x86_64): the PUD and PMD pages, allocated on demand.
    pub upper: Upper4,
    pub vmas: Vec<Vma>,
    /// PTE pages by PMD-entry index (`va >> PMD_SHIFT`).
    pub pte_pages: PtePages,
    /// `mm->pgtables_bytes` / PAGE_SIZE.
    pub nr_ptes: u64,
    pub nr_pmds: u64,
    /// `mm_inc_nr_puds`: PUD pages (4-level only).
    pub nr_puds: u64,
    pub rss: Rss,
    pub hiwater_rss: u64,
    pub hiwater_vm: u64,
    pub brk_start: u64,
    pub brk: u64,
    /// The mm_struct object.
    pub obj: Option<VirtAddr>,
    /// The VMA tree's `maple_node` objects ([`maple`]).
    pub maple: Vec<VirtAddr>,
    /// The VMA the last lookup found (`find_vma`'s cache: what the old per-thread vmacache
    /// kept, and where 6.1's maple-tree walk lands for the next address of a sequential
    /// scan). Only a hint: a stale index is checked and ignored.
    pub mmap_cache: VmaHint,
}

/// [`Mm::mmap_cache`]: an index updated by lookups through `&Mm` (relaxed atomics, plain
/// loads and stores on x86, so a booted kernel stays `Sync` for tests that share one).
#[derive(Debug, Default)]
pub struct VmaHint(AtomicUsize);

impl VmaHint {
    #[inline(always)]
    fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
    #[inline(always)]
    fn set(&self, i: usize) {
        self.0.store(i, Ordering::Relaxed)
    }
}

impl Clone for VmaHint {
    fn clone(&self) -> Self {
        VmaHint(AtomicUsize::new(self.get()))
    }
}

impl Mm {
    pub fn total_vm(&self) -> u64 {
        self.vmas.iter().map(|v| v.pages()).sum()
    }
    /// The VMA containing `addr`: the cached one when it still does, else a search.
    #[inline]
    pub fn find_vma(&self, addr: u64) -> Option<usize> {
        let hint = self.mmap_cache.get();
        if let Some(v) = self.vmas.get(hint) {
            if v.start <= addr && addr < v.end {
                return Some(hint);
            }
        }
        self.find_vma_slow(addr)
    }
    #[inline(never)]
    fn find_vma_slow(&self, addr: u64) -> Option<usize> {
        let i = self
            .vmas
            .iter()
            .position(|v| v.start <= addr && addr < v.end)?;
        self.mmap_cache.set(i);
        Some(i)
    }
    /// `mm_pgtables_bytes` in kB (VmPTE): PTE, PMD and PUD pages.
    pub fn pgtables_kb(&self) -> u64 {
        (self.nr_ptes + self.nr_pmds + self.nr_puds) * 4
    }
    fn update_hiwater(&mut self) {
        self.hiwater_rss = self.hiwater_rss.max(self.rss.total());
        self.hiwater_vm = self.hiwater_vm.max(self.total_vm());
    }
}

/// A compat (32-bit) process's upper page tables under 4-level paging: pgd entry 0 holds
/// the PUD page, whose first four entries hold one PMD page per GiB of the 4 GiB address
/// space. `__pud_alloc` / `__pmd_alloc` fill them when a PTE page first needs a PMD entry.
#[derive(Clone, Debug, Default)]
pub struct Upper4 {
    pub pud: Option<Pfn>,
    pub pmds: [Option<Pfn>; 4],
}

/// The PTE pages of an mm by PMD-entry index: a direct table (the pfn + 1, 0 for none).
#[derive(Clone, Debug, Default)]
pub struct PtePages {
    slots: Vec<u64>,
    len: usize,
}

impl PtePages {
    #[inline]
    pub fn pfn(&self, key: u32) -> Option<Pfn> {
        match self.slots.get(key as usize) {
            Some(&v) if v != 0 => Some(Pfn::new(v - 1)),
            _ => None,
        }
    }
    pub fn insert(&mut self, key: u32, pfn: Pfn) {
        let k = key as usize;
        if self.slots.len() <= k {
            self.slots.resize(k + 1, 0);
        }
        if self.slots[k] == 0 {
            self.len += 1;
        }
        self.slots[k] = pfn.as_u64() + 1;
    }
    pub fn remove(&mut self, key: &u32) -> Option<Pfn> {
        let v = self.pfn(*key)?;
        self.slots[*key as usize] = 0;
        self.len -= 1;
        Some(v)
    }
    pub fn keys(&self) -> impl Iterator<Item = u32> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, v)| **v != 0)
            .map(|(i, _)| i as u32)
    }
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// `struct task_struct` as far as memory goes (the scheduler's task is `task`).
#[derive(Clone, Debug)]
pub struct Process {
    pub task: TaskId,
    pub pid: u32,
    pub ppid: u32,
    pub comm: String,
    pub mm: Option<Mm>,
    /// The kernel stack (order 1 on i386, vmalloc'd on x86_64).
    pub kstack: Option<kstack::KStack>,
    /// task_struct, signal, sighand, files, fs, cred, pid … objects.
    pub objs: Vec<(CacheId, VirtAddr)>,
    pub oom_score_adj: i32,
    /// The /proc/PID entries in the dcache (the directory first, named ""), each with its
    /// dentry and inode objects ([`crate::procfs::pid_lookup`]).
    pub proc_entries: Vec<crate::procfs::pid_lookup::ProcEntry>,
    pub min_flt: u64,
    pub maj_flt: u64,
    /// The RSS increments of this task's faults not yet in its mm's counters.
    pub rss_stat: RssStat,
    /// Killed (SIGKILL) and reaped of its memory.
    pub dead: bool,
    /// `SIGKILL` by the OOM killer.
    pub oom_killed: bool,
    /// Part of the boot's init for the OOM killer (`oom_unkillable_task()`: never picked,
    /// not in the report's task table): a stand-in that holds a share of the real init's
    /// memory (the shm workload's `sh`).
    pub init_part: bool,
}

/// A SysV shared-memory segment (`struct shmid_kernel` + its shmem inode's page cache).
#[derive(Clone, Debug)]
pub struct ShmSeg {
    pub key: u32,
    pub id: u32,
    pub size: u64,
    pub pages: Vec<Option<Pfn>>,
    pub nattch: u32,
    pub removed: bool,
    /// `SHM_NORESERVE` (`VM_NORESERVE` on the shmem file): not charged to Committed_AS.
    pub noreserve: bool,
    /// The shmem_inode_cache object and, on a kernel with per-inode LSM blobs (amd64), its
    /// lsm_inode_cache object.
    pub obj: Option<VirtAddr>,
    pub lsm_obj: Option<VirtAddr>,
    /// The page cache's xarray nodes (radix_tree_node objects), freed at eviction.
    pub xa_nodes: Vec<VirtAddr>,
}

/// One kill by the OOM killer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OomKill {
    pub pid: u32,
    pub comm: String,
    /// The process that ran out of memory.
    pub by_pid: u32,
}

/// Counters of the user page-table paths.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MmCounters {
    /// Mappings of a highmem PTE page made to reach it (kmap_atomic / typed / kmap).
    pub pte_kmaps: u64,
    /// Of which persistent kmaps (2.4 design).
    pub pte_pkmaps: u64,
    pub faults: u64,
    pub pte_pages_allocated: u64,
    pub pte_pages_freed: u64,
}

/// All user-space memory state of the kernel.
#[derive(Clone, Debug, Default)]
pub struct MmState {
    /// `userpte=nohigh`.
    pub userpte_nohigh: bool,
    /// Runs of user accesses take the fault stream (`fault_stream.rs`); off, every page
    /// goes through `user_access` (the differential tests compare the two).
    pub fault_stream: bool,
    pub procs: Vec<Process>,
    pub shm: Vec<ShmSeg>,
    /// The shmem files of shared anonymous mappings ("/dev/zero (deleted)"): `nattch`
    /// counts the VMAs holding the file, `id` is the inode number.
    pub shmem_zero: Vec<ShmSeg>,
    /// The last inode number given to such a file (the model's `get_next_ino`).
    pub shmem_next_ino: u32,
    /// Overcommit accounting (Committed_AS).
    pub acct: util::VmAcct,
    /// The page cache of the executable, by file page: the rootfs file's shmem pages,
    /// all of them from its first exec on (the initramfs was unpacked at boot).
    pub binary_pages: HashMap<u64, Pfn>,
    /// The binary's pages were taken from the boot's runtime profile (which holds the
    /// unpacked initramfs): dropping the cache gives them back instead of freeing them.
    pub binary_from_profile: bool,
    /// `fault_around_bytes` (debugfs; 65536 by default, as the reference runs print it).
    pub fault_around_bytes: u64,
    /// References to private anonymous pages (mapcount), by pfn.
    pub anon_refs: HashMap<u64, u32>,
    pub kills: Vec<OomKill>,
    /// The proc superblock's unused dentries and its shrinker's deferred count.
    pub proc_sb: crate::procfs::pid_lookup::ProcSb,
    pub counters: MmCounters,
    /// Pages the fault stream took whole in fault runs (`fault_stream.rs`): the model's own
    /// statistic, no kernel counter (the tests check that the runs are taken).
    pub fault_run_pages: u64,
    /// VMAP_STACK's per-CPU `cached_stacks`.
    pub stack_cache: kstack::StackCache,
}

impl MmState {
    pub fn new(userpte_nohigh: bool) -> Self {
        MmState {
            userpte_nohigh,
            fault_stream: true,
            fault_around_bytes: FAULT_AROUND_BYTES,
            ..Default::default()
        }
    }
    pub fn by_pid(&self, pid: u32) -> Option<ProcId> {
        self.procs.iter().position(|p| p.pid == pid).map(ProcId)
    }
    pub fn by_task(&self, t: TaskId) -> Option<ProcId> {
        self.procs.iter().position(|p| p.task == t).map(ProcId)
    }
    pub fn proc(&self, p: ProcId) -> &Process {
        &self.procs[p.0]
    }
}

/// Why a memory operation on a process failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MmError {
    /// `VM_FAULT_SIGSEGV`: no VMA or the access is not allowed.
    #[error("segfault at {0:#x}")]
    Segv(u64),
    /// `VM_FAULT_OOM` with the OOM killer unable to help; or the process was killed.
    #[error("out of memory")]
    Oom,
    /// The process was killed (by the OOM killer) while it ran.
    #[error("killed")]
    Killed,
    #[error("invalid argument")]
    Inval,
    #[error("no such process")]
    NoProc,
    /// The kernel panicked (the message `panic()` was given): the machine stops here.
    #[error("Kernel panic - not syncing: {0}")]
    Panic(String),
    /// A kernel BUG the model detected (kmap failure, bus error): the kernel would oops.
    #[error("BUG: {0}")]
    Bug(String),
}

impl MmError {
    /// What a system call failing with this error leaves a program's `strerror(errno)`
    /// saying (glibc's texts): ENOMEM, EINVAL, ESRCH, EFAULT.
    pub fn strerror(&self) -> &'static str {
        match self {
            MmError::Oom => "Cannot allocate memory",
            MmError::Inval => "Invalid argument",
            MmError::NoProc => "No such process",
            MmError::Segv(_) | MmError::Killed | MmError::Panic(_) | MmError::Bug(_) => {
                "Bad address"
            }
        }
    }
}
