//! The named caches of a 6.1 i386 boot that tasks and memory maps use, with the object size,
//! alignment and flags their creators pass (`fork_init`, `proc_caches_init`, `mm_cache_init`,
//! `pid_idr_init`, `anon_vma_init`, `cred_init`, `shmem_init`), in creation order — the order
//! matters, since a cache merges into the oldest compatible one (fs_cache into pid).
//!
//! Sizes are the structures' sizes on the reference kernels where the debug images give them
//! (task_struct: `sizeof` − the 4 KiB `fpregs_state` placeholder + the 512-byte FXSAVE area;
//! mm_struct: `sizeof` + one cpumask word; vm_area_struct), otherwise sizes that give the
//! reference's `/proc/slabinfo` geometry under the same flags.

use super::{SlabFlags, L1_CACHE_BYTES};

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

/// `kmem_cache_init()`'s two bootstrap caches.
pub(crate) fn bootstrap_specs() -> Vec<CacheSpec> {
    let hw = SlabFlags::HWCACHE_ALIGN;
    vec![
        CacheSpec::new("kmem_cache_node", 32, 32, hw).boot(),
        CacheSpec::new("kmem_cache", 160, 8, hw).boot(),
    ]
}

/// The named caches of the boot, oldest first, for the PAE or the non-PAE kernel.
pub fn boot_cache_specs(pae: bool) -> Vec<CacheSpec> {
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
