//! The named caches of a 6.1 i386 boot — those tasks and memory maps use (`fork_init`,
//! `proc_caches_init`, `mm_cache_init`, `pid_idr_init`, `anon_vma_init`, `cred_init`,
//! `shmem_init`) and every other one the reference boots fill (VFS, sysfs, procfs, block,
//! networking) — with the object size, alignment and flags their creators pass, in creation
//! order: the order matters, since a cache merges into the oldest compatible one (fs_cache
//! into pid; on PAE the sgpool caches into task_group and the biovec caches).
//!
//! Sizes are the structures' sizes on the reference kernels where the debug images give them
//! (task_struct: `sizeof` − the 4 KiB `fpregs_state` placeholder + the 512-byte FXSAVE area;
//! mm_struct: `sizeof` + one cpumask word; vm_area_struct), otherwise sizes that give the
//! reference's `/proc/slabinfo` geometry under the same flags.

use super::{SlabFlags, L1_CACHE_BYTES};
use crate::config::Arch;

/// What a `kmem_cache_create_usercopy()` call passes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheSpec {
    pub name: String,
    pub size: u32,
    pub align: u32,
    pub flags: SlabFlags,
    /// The cache has a constructor (the model runs none; it moves the free pointer out of the
    /// object and forbids merging, as in the kernel).
    pub ctor: bool,
    pub useroffset: u32,
    pub usersize: u32,
    /// Created by `create_boot_cache` / `create_kmalloc_cache`: never merged or destroyed.
    pub(crate) kmalloc: bool,
}

impl CacheSpec {
    /// `kmem_cache_create(name, size, align, flags, ctor)`.
    pub fn new(name: &str, size: u32, align: u32, flags: SlabFlags) -> CacheSpec {
        CacheSpec {
            name: name.to_string(),
            size,
            align,
            flags,
            ctor: false,
            useroffset: 0,
            usersize: 0,
            kmalloc: false,
        }
    }
    /// With a constructor.
    pub fn with_ctor(mut self) -> CacheSpec {
        self.ctor = true;
        self
    }
    /// With a usercopy region (`kmem_cache_create_usercopy`).
    pub fn with_usercopy(mut self, useroffset: u32, usersize: u32) -> CacheSpec {
        self.useroffset = useroffset;
        self.usersize = usersize;
        self
    }
    pub(crate) fn boot(mut self) -> CacheSpec {
        self.kmalloc = true;
        self
    }
}

/// The names [`boot_cache_specs`] creates, oldest first (fs_cache merges into pid).
pub const BOOT_CACHE_NAMES: [&str; 12] = [
    "mm_struct",
    "pid",
    "anon_vma",
    "anon_vma_chain",
    "cred_jar",
    "task_struct",
    "sighand_cache",
    "signal_cache",
    "files_cache",
    "fs_cache",
    "vm_area_struct",
    "shmem_inode_cache",
];

/// `kmem_cache_init()`'s two bootstrap caches of the architecture (amd64: see
/// [`boot_cache_specs_x86_64`] for where its sizes come from).
pub(crate) fn bootstrap_specs(arch: Arch) -> Vec<CacheSpec> {
    let hw = SlabFlags::HWCACHE_ALIGN;
    match arch {
        Arch::I386 => vec![
            CacheSpec::new("kmem_cache_node", 32, 32, hw).boot(),
            CacheSpec::new("kmem_cache", 160, 8, hw).boot(),
        ],
        Arch::X86_64 => vec![
            CacheSpec::new("kmem_cache_node", 64, 64, hw).boot(),
            CacheSpec::new("kmem_cache", 256, 8, hw).boot(),
        ],
    }
}

/// The named caches of the boot of a kernel of `arch` (`pae` chooses between the two i386
/// builds): [`boot_cache_specs`] or [`boot_cache_specs_x86_64`].
pub fn boot_cache_specs_for(arch: Arch, pae: bool) -> Vec<CacheSpec> {
    match arch {
        Arch::I386 => boot_cache_specs(pae),
        Arch::X86_64 => boot_cache_specs_x86_64(),
    }
}

/// The named caches of the boot, oldest first, for the PAE or the non-PAE kernel: the task and
/// mm caches above ([`task_cache_specs`]) among the others a 6.1 boot creates and fills
/// (`vmalloc_init`, `sched_init`, `radix_tree_init`, tracing, ACPI, `vfs_caches_init`,
/// sysfs, shmem, procfs, the block layer, networking), in the order `/proc/slabinfo` lists
/// them (newest first) on the reference boots. Only caches that hold objects after a
/// reference boot are created (see `boot::profile_slab`).
pub fn boot_cache_specs(pae: bool) -> Vec<CacheSpec> {
    // mm_struct first, shmem_inode_cache last: the rest come between ACPI and the VFS.
    let mut task = task_cache_specs(pae);
    let shmem = task.split_off(task.len() - 1);
    let fork = task.split_off(1);
    let mut out = early_fs_specs();
    let later = out.split_off(1);
    out.extend(task);
    out.extend(later);
    out.extend(fork);
    out.extend(vfs_specs());
    out.extend(shmem);
    out.extend(late_specs(pae));
    out
}

/// From `vmalloc_init` to ACPI: what is created before `fork_init`'s caches (mm_struct
/// comes second, after vmap_area).
fn early_fs_specs() -> Vec<CacheSpec> {
    use SlabFlags as F;
    vec![
        CacheSpec::new("vmap_area", 32, 0, F::PANIC),
        CacheSpec::new("task_group", 384, 0, F::empty()),
        CacheSpec::new("radix_tree_node", 296, 0, F::PANIC | F::RECLAIM_ACCOUNT).with_ctor(),
        CacheSpec::new("maple_node", 256, 256, F::PANIC),
        CacheSpec::new("ftrace_event_field", 40, 0, F::PANIC),
        CacheSpec::new("trace_event_file", 56, 0, F::PANIC),
        CacheSpec::new("perf_event", 848, 0, F::PANIC),
        CacheSpec::new("Acpi-State", 48, 0, F::empty()),
    ]
}

/// `nsproxy_cache_init`, keys, the LSM blobs, `vfs_caches_init` (names, dentry, inode, filp,
/// mounts, sysfs), up to `shmem_init`.
fn vfs_specs() -> Vec<CacheSpec> {
    use SlabFlags as F;
    let fs = F::RECLAIM_ACCOUNT | F::PANIC | F::MEM_SPREAD | F::ACCOUNT;
    let hw = F::HWCACHE_ALIGN;
    vec![
        CacheSpec::new("nsproxy", 40, 0, F::PANIC | F::ACCOUNT),
        CacheSpec::new("key_jar", 160, 0, hw | F::PANIC),
        CacheSpec::new("lsm_file_cache", 16, 0, F::PANIC),
        CacheSpec::new("names_cache", 4096, 0, hw | F::PANIC).with_usercopy(0, 4096),
        CacheSpec::new("dentry", 128, 4, fs).with_usercopy(84, 40),
        CacheSpec::new("inode_cache", 408, 0, fs).with_ctor(),
        CacheSpec::new("filp", 160, 0, hw | F::PANIC | F::ACCOUNT),
        CacheSpec::new("mnt_cache", 192, 0, hw | F::PANIC | F::ACCOUNT),
        CacheSpec::new("kernfs_node_cache", 80, 0, F::PANIC),
    ]
}

/// After shmem: block devices, signals, procfs, locks, networking, the bio slabs, the SCSI
/// scatterlist pools, hugetlbfs, the protocols, mqueue.
fn late_specs(pae: bool) -> Vec<CacheSpec> {
    use SlabFlags as F;
    let hw = F::HWCACHE_ALIGN;
    let fs = F::RECLAIM_ACCOUNT | F::MEM_SPREAD | F::ACCOUNT;
    let bio = hw | F::TYPESAFE_BY_RCU;
    vec![
        CacheSpec::new("bdev_cache", 984, 0, hw | fs | F::PANIC).with_ctor(),
        CacheSpec::new("sigqueue", 48, 0, F::PANIC | F::ACCOUNT),
        CacheSpec::new("seq_file", 72, 0, F::ACCOUNT | F::PANIC),
        CacheSpec::new("proc_inode_cache", 448, 0, fs | F::PANIC).with_ctor(),
        CacheSpec::new("pde_opener", 24, 0, F::ACCOUNT | F::PANIC),
        CacheSpec::new("proc_dir_entry", 128, 0, F::PANIC).with_usercopy(96, 32),
        CacheSpec::new("file_lock_cache", 128, 0, F::PANIC),
        CacheSpec::new("skbuff_head_cache", 192, 0, hw | F::PANIC).with_usercopy(80, 48),
        CacheSpec::new("sock_inode_cache", 600, 0, hw | fs).with_ctor(),
        CacheSpec::new("biovec-16", 192, 0, hw | F::PANIC),
        CacheSpec::new("biovec-64", 768, 0, hw | F::PANIC),
        CacheSpec::new("biovec-128", 1536, 0, hw | F::PANIC),
        CacheSpec::new("biovec-max", 3072, 0, hw | F::PANIC),
        CacheSpec::new("bio-144", 144, 8, bio),
        sg_pool(16, pae),
        sg_pool(32, pae),
        sg_pool(64, pae),
        sg_pool(128, pae),
        CacheSpec::new("bio-188", 188, 8, bio),
        CacheSpec::new("hugetlbfs_inode_cache", 416, 0, F::ACCOUNT).with_ctor(),
        CacheSpec::new("UDP", 880, 0, hw | F::ACCOUNT | F::TYPESAFE_BY_RCU),
        CacheSpec::new("RAW", 768, 0, hw | F::ACCOUNT).with_usercopy(736, 4),
        CacheSpec::new("mqueue_inode_cache", 632, 0, hw | F::ACCOUNT).with_ctor(),
        CacheSpec::new("bio-208", 208, 8, bio),
        CacheSpec::new("bio-96", 96, 8, bio),
        CacheSpec::new("RAWv6", 896, 0, hw | F::ACCOUNT).with_usercopy(864, 4),
    ]
}

/// `sg_pool_init`: a pool of `nents` scatterlist entries (24 bytes with PAE's 64-bit
/// dma_addr_t, else 20). With PAE they merge into task_group and the biovec caches.
fn sg_pool(nents: u32, pae: bool) -> CacheSpec {
    let entry = if pae { 24 } else { 20 };
    let name = format!("sgpool-{nents}");
    CacheSpec::new(&name, nents * entry, 0, SlabFlags::HWCACHE_ALIGN)
}

/// The caches tasks and memory maps use, oldest first (fs_cache merges into pid).
fn task_cache_specs(pae: bool) -> Vec<CacheSpec> {
    use SlabFlags as F;
    let acct = F::PANIC | F::ACCOUNT;
    let hw_acct = F::HWCACHE_ALIGN | acct;
    // arch_task_struct_size: the FXSAVE area (512 bytes) replaces the 4 KiB placeholder.
    let task_size: u32 = if pae { 6592 } else { 6528 } - 4096 + 512;
    let vma_size = if pae { 76 } else { 72 };
    vec![
        CacheSpec::new("mm_struct", 560 + 4, 0, hw_acct).with_usercopy(296, 192),
        CacheSpec::new("pid", 60, 0, hw_acct),
        CacheSpec::new("anon_vma", 52, 0, F::TYPESAFE_BY_RCU | acct).with_ctor(),
        CacheSpec::new("anon_vma_chain", 32, 4, acct),
        CacheSpec::new("cred_jar", 128, 0, hw_acct),
        CacheSpec::new("task_struct", task_size, L1_CACHE_BYTES, acct)
            .with_usercopy(task_size - 512, 512),
        CacheSpec::new("sighand_cache", 1300, 0, hw_acct | F::TYPESAFE_BY_RCU).with_ctor(),
        CacheSpec::new("signal_cache", 736, 0, hw_acct),
        CacheSpec::new("files_cache", 256, 0, hw_acct),
        CacheSpec::new("fs_cache", 36, 0, hw_acct),
        CacheSpec::new("vm_area_struct", vma_size, 4, acct),
        CacheSpec::new("shmem_inode_cache", 484, 0, acct).with_ctor(),
    ]
}

/// The named caches of the amd64 boot (Debian's 6.1.0-50-amd64), oldest first: the same
/// creators as [`boot_cache_specs`], in the same order, with 64-bit objects.
///
/// Where the sizes come from: the amd64 captures' `/proc/slabinfo`
/// (`crates/highmem/tests/realworks/work-x86_64-*.txt`; there is no amd64 debug image to
/// read the structures from). Each size is the capture's `objsize` (`s->size`), less the
/// 8-byte free pointer where SLUB keeps it outside the object (a constructor or
/// SLAB_TYPESAFE_BY_RCU); any object size that rounds to the same stride gives the same
/// slab, so `objsize`, `objperslab` and `pagesperslab` come out as printed (the
/// slabinfo test checks every cache both have). Alignments are the creators' on 64 bits:
/// `__alignof__` of a pointer-holding structure is 8 (4 on i386); maple_node keeps its
/// 256 and task_struct L1_CACHE_BYTES.
///
/// What the amd64 slabinfo does not list was merged into an older cache, as
/// `find_mergeable` does with these sizes: fs_cache (56 bytes, cache-line aligned to 64,
/// SLAB_ACCOUNT) into anon_vma_chain; key_jar (224 → 256) and biovec-16 (16 × the 16-byte
/// bio_vec) into maple_node; UDP (not SLAB_TYPESAFE_BY_RCU on amd64, where it would have
/// kept its own cache; 1152 with HWCACHE_ALIGN | SLAB_ACCOUNT) into signal_cache;
/// sgpool-16/32/64/128 (the 32-byte scatterlist) into skbuff_fclone_cache and the
/// biovec-64/128/max caches. The block layer's bio slabs are named by size: amd64's
/// `struct bio` makes them bio-192 and bio-256 (i386: bio-96, -144, -188, -208).
///
/// amd64 also fills caches that on i386 hold nothing or merge away: NUMA's numa_policy and
/// shared_policy_node, ACPI's Acpi-Operand, the LSM inode blobs (lsm_inode_cache),
/// skbuff_ext_cache, dmaengine's unmap pools (40-byte header + 128 / 256 dma_addr_t) and
/// dax_cache; they are created here in the order the amd64 slabinfo lists them.
pub fn boot_cache_specs_x86_64() -> Vec<CacheSpec> {
    use SlabFlags as F;
    let acct = F::PANIC | F::ACCOUNT;
    let hw = F::HWCACHE_ALIGN;
    let hw_acct = hw | acct;
    let vfs = F::RECLAIM_ACCOUNT | F::PANIC | F::MEM_SPREAD | F::ACCOUNT;
    let fs = F::RECLAIM_ACCOUNT | F::MEM_SPREAD | F::ACCOUNT;
    let bio = hw | F::TYPESAFE_BY_RCU;
    let task_size = 6208;
    let sg = |nents: u32| {
        let name = format!("sgpool-{nents}");
        CacheSpec::new(&name, nents * 32, 0, hw)
    };
    vec![
        CacheSpec::new("vmap_area", 64, 0, F::PANIC),
        CacheSpec::new("mm_struct", 1152, 0, hw_acct).with_usercopy(360, 416),
        CacheSpec::new("task_group", 640, 0, F::empty()),
        CacheSpec::new("radix_tree_node", 576, 0, F::PANIC | F::RECLAIM_ACCOUNT).with_ctor(),
        CacheSpec::new("maple_node", 256, 256, F::PANIC),
        CacheSpec::new("ftrace_event_field", 56, 0, F::PANIC),
        CacheSpec::new("trace_event_file", 96, 0, F::PANIC),
        CacheSpec::new("perf_event", 1248, 0, F::PANIC),
        CacheSpec::new("numa_policy", 272, 0, F::PANIC),
        CacheSpec::new("shared_policy_node", 48, 0, F::PANIC),
        CacheSpec::new("Acpi-State", 80, 0, F::empty()),
        CacheSpec::new("Acpi-Operand", 72, 0, F::empty()),
        CacheSpec::new("pid", 128, 0, hw_acct),
        CacheSpec::new("anon_vma", 96, 0, F::TYPESAFE_BY_RCU | acct).with_ctor(),
        CacheSpec::new("anon_vma_chain", 64, 8, acct),
        CacheSpec::new("cred_jar", 192, 0, hw_acct),
        CacheSpec::new("task_struct", task_size, L1_CACHE_BYTES, acct)
            .with_usercopy(task_size - 512, 512),
        CacheSpec::new("sighand_cache", 2088, 0, hw_acct | F::TYPESAFE_BY_RCU).with_ctor(),
        CacheSpec::new("signal_cache", 1152, 0, hw_acct),
        CacheSpec::new("files_cache", 704, 0, hw_acct),
        CacheSpec::new("fs_cache", 56, 0, hw_acct),
        CacheSpec::new("vm_area_struct", 152, 8, acct),
        CacheSpec::new("nsproxy", 72, 0, F::PANIC | F::ACCOUNT),
        CacheSpec::new("key_jar", 224, 0, hw | F::PANIC),
        CacheSpec::new("lsm_file_cache", 24, 0, F::PANIC),
        CacheSpec::new("lsm_inode_cache", 32, 0, F::PANIC),
        CacheSpec::new("names_cache", 4096, 0, hw | F::PANIC).with_usercopy(0, 4096),
        CacheSpec::new("dentry", 192, 8, vfs).with_usercopy(56, 32),
        CacheSpec::new("inode_cache", 632, 0, vfs).with_ctor(),
        CacheSpec::new("filp", 256, 0, hw | F::PANIC | F::ACCOUNT),
        CacheSpec::new("mnt_cache", 320, 0, hw | F::PANIC | F::ACCOUNT),
        CacheSpec::new("kernfs_node_cache", 128, 0, F::PANIC),
        CacheSpec::new("shmem_inode_cache", 776, 0, acct).with_ctor(),
        CacheSpec::new("bdev_cache", 1592, 0, hw | fs | F::PANIC).with_ctor(),
        CacheSpec::new("sigqueue", 80, 0, F::PANIC | F::ACCOUNT),
        CacheSpec::new("seq_file", 120, 0, F::ACCOUNT | F::PANIC),
        CacheSpec::new("proc_inode_cache", 704, 0, fs | F::PANIC).with_ctor(),
        CacheSpec::new("pde_opener", 40, 0, F::ACCOUNT | F::PANIC),
        CacheSpec::new("proc_dir_entry", 192, 0, F::PANIC).with_usercopy(160, 32),
        CacheSpec::new("file_lock_cache", 216, 0, F::PANIC),
        CacheSpec::new("skbuff_head_cache", 256, 0, hw | F::PANIC).with_usercopy(40, 48),
        CacheSpec::new("skbuff_fclone_cache", 512, 0, hw | F::PANIC),
        CacheSpec::new("skbuff_ext_cache", 192, 0, hw | F::PANIC),
        CacheSpec::new("sock_inode_cache", 824, 0, hw | fs).with_ctor(),
        CacheSpec::new("dmaengine-unmap-128", 40 + 128 * 8, 0, hw),
        CacheSpec::new("dmaengine-unmap-256", 40 + 256 * 8, 0, hw),
        CacheSpec::new("biovec-16", 256, 0, hw | F::PANIC),
        CacheSpec::new("biovec-64", 1024, 0, hw | F::PANIC),
        CacheSpec::new("biovec-128", 2048, 0, hw | F::PANIC),
        CacheSpec::new("biovec-max", 4096, 0, hw | F::PANIC),
        CacheSpec::new("bio-192", 192, 8, bio),
        sg(16),
        sg(32),
        sg(64),
        sg(128),
        CacheSpec::new("dax_cache", 824, 0, hw | fs).with_ctor(),
        CacheSpec::new("bio-256", 256, 8, bio),
        CacheSpec::new("hugetlbfs_inode_cache", 656, 0, F::ACCOUNT).with_ctor(),
        CacheSpec::new("UDP", 1152, 0, hw | F::ACCOUNT),
        CacheSpec::new("RAW", 1024, 0, hw | F::ACCOUNT).with_usercopy(976, 8),
        CacheSpec::new("mqueue_inode_cache", 952, 0, hw | F::ACCOUNT).with_ctor(),
        CacheSpec::new("RAWv6", 1216, 0, hw | F::ACCOUNT).with_usercopy(1168, 8),
    ]
}
