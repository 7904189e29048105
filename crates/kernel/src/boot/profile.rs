//! What a boot of a preset kernel uses besides memory management itself.
//!
//! The per-CPU static data size is a build constant (printed as `percpu: Embedded … sNNN`),
//! and after `init` starts, slab caches, kernel threads, the unpacked initramfs, init and
//! drivers hold pages. Those are stated here as *named* quantities of the preset, each
//! derived from the reference boots by a test (see ARCHITECTURE.md, "The runtime profile"),
//! and `boot/runtime.rs` allocates each through the model's own mechanism, so it lands in its
//! /proc line: the slab objects in their caches (Slab), the kernel threads' stacks
//! (KernelStack), the initramfs as shmem page cache (Shmem, Cached, the anon LRU lists),
//! init's anonymous pages and page tables (AnonPages, PageTables). What is left — drivers'
//! pages and the like — stays a named remainder of plain page allocations.

use crate::config::{Arch, KernelConfig};

pub use super::profile_slab::{
    BootSlab, BOOT_SLAB_NOPAE, BOOT_SLAB_PAE, BOOT_SLAB_PER_CPU, BOOT_SLAB_X86_64,
    KMALLOC_LARGE_BLOCKS, KMALLOC_LARGE_BLOCKS_PER_CPU, KMALLOC_LARGE_ORDER,
};

/// Boot-time quantities of a preset kernel that the model does not derive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct BootProfile {
    /// Static per-CPU data (`__per_cpu_end - __per_cpu_start`): the `s` of `percpu: Embedded`.
    pub percpu_static: u64,
    /// Objects each slab cache holds after a one-CPU boot (`boot/profile_slab.rs`).
    #[serde(skip)]
    pub slab: &'static [BootSlab],
    /// kmalloc_large blocks (`1 << KMALLOC_LARGE_ORDER` pages) after a one-CPU boot.
    #[serde(skip)]
    pub kmalloc_large_blocks: u64,
    /// Kernel threads after a one-CPU boot, and how many more each further CPU brings.
    pub kthreads: u64,
    pub kthreads_per_cpu: u64,
    /// Stacks of exited tasks the CPU's `cached_stacks` hold (VMAP_STACK only): vmalloc'd,
    /// in VmallocUsed, not in KernelStack.
    #[serde(skip)]
    pub cached_stacks: u64,
    /// The boot's userspace: the initramfs, init, the shell and the /proc reader.
    pub userspace: BootUserspace,
    /// Low-memory pages (GFP_KERNEL) held after boot that the profile does not break down:
    /// drivers' buffers and the like.
    pub runtime_lowmem_pages: u64,
    /// User pages (GFP_HIGHUSER_MOVABLE: high memory where there is any, else Normal) held
    /// after boot beyond the initramfs and init's own pages.
    pub runtime_user_pages: u64,
}

/// What the boot's userspace holds when the reference dumps /proc: the unpacked initramfs
/// (a tmpfs: shmem page cache) and the processes init, sh and the /proc reader.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct BootUserspace {
    /// The processes (each an 8 KiB kernel stack, a pgd and page tables).
    pub tasks: u64,
    /// Shmem pages of the initramfs (meminfo Shmem).
    pub initramfs_pages: u64,
    /// Of those, the pages read again after the unpack wrote them (busybox, the scripts):
    /// `mark_page_accessed` moved them to the active list (meminfo Active(anon)).
    pub initramfs_active: u64,
    /// Of those, the pages the processes map (meminfo Mapped).
    pub mapped: u64,
    /// Anonymous pages of the processes (meminfo AnonPages), on the inactive list as 6.1
    /// puts new anonymous pages.
    pub anon_pages: u64,
    /// Page-table pages of the processes, PAE's preallocated PMDs included (PageTables).
    pub pagetables: u64,
    /// `pgactivate` events of the boot: the initramfs pages that went to the active list
    /// from it (the rest were activated while still in a per-CPU batch, uncounted).
    pub pgactivate: u64,
    /// `pgreuse` events of the boot: write faults on anonymous pages no other mapping
    /// shared any more (`wp_page_reuse`) in init and its children.
    pub pgreuse: u64,
}

/// `PERCPU_DYNAMIC_RESERVE` on 32-bit: room for dynamic per-CPU allocations.
pub const PERCPU_DYNAMIC_RESERVE: u64 = 28 << 10;

/// The initramfs size of the reference boots (their `RAMDISK:` lines: 0x32b7b0 bytes).
pub const DEFAULT_INITRD_SIZE: u64 = 0x32_b7b0;

impl BootProfile {
    /// The profile of a preset kernel; custom kernels get the 686-pae figures.
    pub fn for_config(cfg: &KernelConfig) -> BootProfile {
        let userspace = |active, anon_pages, pagetables| BootUserspace {
            tasks: BOOT_USER_TASKS,
            initramfs_pages: INITRAMFS_PAGES,
            initramfs_active: active,
            mapped: BOOT_USER_MAPPED,
            anon_pages,
            pagetables,
            pgactivate: BOOT_PGACTIVATE,
            pgreuse: BOOT_PGREUSE,
        };
        if cfg.arch == Arch::X86_64 {
            return BootProfile::x86_64();
        }
        if cfg.pae {
            BootProfile {
                percpu_static: 104_276,
                slab: BOOT_SLAB_PAE,
                kmalloc_large_blocks: KMALLOC_LARGE_BLOCKS,
                kthreads: KTHREADS,
                kthreads_per_cpu: KTHREADS_PER_CPU,
                cached_stacks: 0,
                userspace: userspace(INITRAMFS_ACTIVE_PAE, BOOT_USER_ANON_PAE, BOOT_USER_PT_PAE),
                runtime_lowmem_pages: RUNTIME_LOWMEM_PAE,
                runtime_user_pages: RUNTIME_USER,
            }
        } else {
            BootProfile {
                percpu_static: 103_316,
                slab: BOOT_SLAB_NOPAE,
                kmalloc_large_blocks: KMALLOC_LARGE_BLOCKS,
                kthreads: KTHREADS,
                kthreads_per_cpu: KTHREADS_PER_CPU,
                cached_stacks: 0,
                userspace: userspace(
                    INITRAMFS_ACTIVE_NOPAE,
                    BOOT_USER_ANON_NOPAE,
                    BOOT_USER_PT_NOPAE,
                ),
                runtime_lowmem_pages: RUNTIME_LOWMEM_NOPAE,
                runtime_user_pages: RUNTIME_USER,
            }
        }
    }

    /// The amd64 kernel's profile (Debian's 6.1.0-50-amd64 on the amd64 captures of
    /// `crates/highmem/tests/realworks/`): its own per-CPU static size, kernel threads,
    /// kmalloc_large pages, compat page tables, slab objects and remainder; and the
    /// reference's userspace (initramfs, anonymous pages), which the model keeps on
    /// every variant. amd64 has no high memory, so the remainder is one figure: every page
    /// MemFree does not account for (GFP_KERNEL), no separate user count.
    pub fn x86_64() -> BootProfile {
        BootProfile {
            percpu_static: crate::x86_64::setup::PCPU_STATIC,
            slab: BOOT_SLAB_X86_64,
            kmalloc_large_blocks: KMALLOC_LARGE_BLOCKS_X86_64,
            kthreads: KTHREADS_X86_64,
            kthreads_per_cpu: KTHREADS_PER_CPU,
            cached_stacks: BOOT_CACHED_STACKS_X86_64,
            userspace: BootUserspace {
                tasks: BOOT_USER_TASKS,
                initramfs_pages: INITRAMFS_PAGES,
                initramfs_active: INITRAMFS_ACTIVE_PAE,
                mapped: BOOT_USER_MAPPED,
                anon_pages: BOOT_USER_ANON_PAE,
                pagetables: BOOT_USER_PT_X86_64,
                pgactivate: BOOT_PGACTIVATE,
                pgreuse: BOOT_PGREUSE,
            },
            runtime_lowmem_pages: RUNTIME_LOWMEM_X86_64,
            runtime_user_pages: 0,
        }
    }

    /// The per-CPU unit size: static + reserved (0) + dynamic reserve, page aligned.
    pub fn percpu_unit(&self) -> u64 {
        (self.percpu_static + PERCPU_DYNAMIC_RESERVE).div_ceil(4096) * 4096
    }
}

/// The processes of the boot's userspace when /proc is dumped: init, the shell, the reader.
pub const BOOT_USER_TASKS: u64 = 3;

// Derived from the reference boots by `crates/highmem/tests/runtime_profile_derivation.rs`,
// which recomputes every one of them and fails if they disagree.
//
// Kernel threads: KernelStack / 8 KiB of the one-CPU boots, less the boot's user tasks; each
// further CPU adds its per-CPU threads (and its idle task's stack), from the two-CPU boot.
pub const KTHREADS: u64 = 42;
pub const KTHREADS_PER_CPU: u64 = 8;
// The initramfs in tmpfs (Shmem), the part of it on the active list (Active(anon)), what
// the processes map (Mapped), their anonymous pages (AnonPages) and page tables
// (PageTables): medians of the one-CPU boots' first /proc/meminfo.
pub const INITRAMFS_PAGES: u64 = 2372;
pub const INITRAMFS_ACTIVE_PAE: u64 = 633;
pub const INITRAMFS_ACTIVE_NOPAE: u64 = 634;
pub const BOOT_USER_MAPPED: u64 = 380;
pub const BOOT_USER_ANON_PAE: u64 = 12;
pub const BOOT_USER_ANON_NOPAE: u64 = 12;
pub const BOOT_USER_PT_PAE: u64 = 29;
pub const BOOT_USER_PT_NOPAE: u64 = 5;
// The boot's `pgactivate` and `pgreuse` (/proc/vmstat): medians of the one-CPU boots.
pub const BOOT_PGACTIVATE: u64 = 356;
pub const BOOT_PGREUSE: u64 = 236;
// The remainder: boot the model on each reference machine (one CPU, default command line)
// without the profile, hold everything above through its mechanism, then count the page
// allocations that bring its LowFree (GFP_KERNEL) and then its HighFree
// (GFP_HIGHUSER_MOVABLE) down to the real kernel's. The kernel's count is the same on every
// RAM size of one build (drivers); the user count moves by a per-CPU batch with the real
// kernel's timing, and the profile takes the median of the boots.
const RUNTIME_LOWMEM_PAE: u64 = 477;
const RUNTIME_LOWMEM_NOPAE: u64 = 428;
const RUNTIME_USER: u64 = 74;

// The amd64 kernel, derived from the amd64 captures (`tests/realworks/work-x86_64-*.txt`)
// by the same test.
//
// Kernel threads: the boot's KernelStack / 16 KiB (VMAP_STACK's THREAD_SIZE), less the
// boot's user tasks (736 kB on every capture: 46 stacks).
pub const KTHREADS_X86_64: u64 = 43;
// The stacks in the CPU's cached_stacks: the amd64 research run's /proc/vmallocinfo lists
// one `kernel_clone` stack more than its KernelStack counts live tasks (47 and 46, with
// the reader): the last short-lived process's, which the reader's fork did not need.
pub const BOOT_CACHED_STACKS_X86_64: u64 = 1;
// kmalloc_large: the captures' `nr_slab_unreclaimable` (the /proc/vmstat dumped right
// after /proc/slabinfo) less the unreclaimable caches' slab pages, in whole blocks.
pub const KMALLOC_LARGE_BLOCKS_X86_64: u64 = 76;
// The compat processes' page tables: median of the captures' boot PageTables (PUD, PMD
// and PTE pages; the pgd is not counted).
pub const BOOT_USER_PT_X86_64: u64 = 17;
// The remainder: boot the model on each capture's machine without the profile (the boot
// itself already holds its vmalloc areas — the BPF pack, the percpu chunk's metadata, the
// genalloc chunks, the compressor's scratches, n_tty's buffer, 1647 pages with their page
// tables — and the page-table pages of the direct-map and high-map splits), hold the
// mechanisms above with the capture's own userspace (its Shmem, Active(anon), Mapped,
// AnonPages), then count the GFP_KERNEL allocations that bring MemFree down to the
// capture's boot MemFree plus its pcp lists' pages (zoneinfo `count:`); the median of the
// three (576, 755, 1435 pages on 2, 4, 8 GiB:
// the 8 GiB boot holds 2.7 MiB more than the median, not broken down).
const RUNTIME_LOWMEM_X86_64: u64 = 755;
