//! What a boot of a preset kernel uses besides memory management itself.
//!
//! Some of what the real kernel's boot consumes is not modelled mechanism by mechanism: the
//! per-CPU static data size is a build constant (printed as `percpu: Embedded … sNNN`), and
//! after `init` starts, drivers, slab caches, the unpacked initramfs and busybox hold pages.
//! Those are stated here as *named* quantities of the preset, each derived from the
//! reference boots (see ARCHITECTURE.md, "Where the boot's memory goes"), so no printed
//! figure is silently corrected: the boot allocates them through the page allocator like
//! any other user, and they appear in the log as a line of their own.

use crate::config::KernelConfig;

/// Boot-time quantities of a preset kernel that the model does not derive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct BootProfile {
    /// Static per-CPU data (`__per_cpu_end - __per_cpu_start`): the `s` of `percpu: Embedded`.
    pub percpu_static: u64,
    /// Low-memory pages (GFP_KERNEL) held after boot by drivers, slab and the init process.
    pub runtime_lowmem_pages: u64,
    /// User pages (GFP_HIGHUSER_MOVABLE: high memory where there is any, else Normal) held
    /// after boot: the unpacked initramfs in the page cache and the init process's memory.
    pub runtime_user_pages: u64,
}

/// `PERCPU_DYNAMIC_RESERVE` on 32-bit: room for dynamic per-CPU allocations.
pub const PERCPU_DYNAMIC_RESERVE: u64 = 28 << 10;

/// The initramfs size of the reference boots (their `RAMDISK:` lines: 0x32b7b0 bytes).
pub const DEFAULT_INITRD_SIZE: u64 = 0x32_b7b0;

impl BootProfile {
    /// The profile of a preset kernel; custom kernels get the 686-pae figures.
    pub fn for_config(cfg: &KernelConfig) -> BootProfile {
        if cfg.pae {
            BootProfile {
                percpu_static: 104_276,
                runtime_lowmem_pages: RUNTIME_LOWMEM_PAE,
                runtime_user_pages: RUNTIME_USER,
            }
        } else {
            BootProfile {
                percpu_static: 103_316,
                runtime_lowmem_pages: RUNTIME_LOWMEM_NOPAE,
                runtime_user_pages: RUNTIME_USER,
            }
        }
    }

    /// The per-CPU unit size: static + reserved (0) + dynamic reserve, page aligned.
    pub fn percpu_unit(&self) -> u64 {
        (self.percpu_static + PERCPU_DYNAMIC_RESERVE).div_ceil(4096) * 4096
    }
}

// Derived from the reference boots by `crates/highmem/tests/runtime_profile_derivation.rs`,
// which recomputes them: boot the model on each reference machine (one CPU, default
// command line) without this profile, then count the page allocations that bring its
// LowFree (GFP_KERNEL) and then its HighFree (GFP_HIGHUSER_MOVABLE) down to the real
// kernel's. The kernel's count is the same on every RAM size of one build (slab caches,
// driver allocations, kernel stacks, page tables of init); the user count (the initramfs
// in the page cache plus init's pages) moves by a per-CPU batch with the real kernel's
// timing, and the profile takes the median of the boots.
const RUNTIME_LOWMEM_PAE: u64 = 3019;
const RUNTIME_LOWMEM_NOPAE: u64 = 2896;
const RUNTIME_USER: u64 = 2472;
