//! /proc files in Linux 6.1's exact text.
//!
//! Each file has a plain snapshot struct and a formatter. The snapshot holds what the kernel
//! itself keeps — counters in pages, base watermarks apart from the boost, raw event counts,
//! `kswapd_failures` rather than a flag — and the formatter performs the arithmetic the kernel
//! performs at read time (`show_val_kb`, LowTotal, `si_mem_available`, `vm_commit_limit`, THP
//! counters shown in huge pages, the `>100000` cap of pagetypeinfo…). Keeping the text apart
//! from live kernel state lets one formatter serve both the simulated kernel and the
//! round-trip tests against the real kernel's dumps, so a byte-exact match there proves the
//! format and a match here proves the numbers.
//!
//! The configuration is the one of the reference kernels (Debian 6.1 686/686-pae): SMP, no
//! NUMA, ZSWAP, MEMORY_FAILURE, THP, HUGETLB, MEMORY_ISOLATION, no CMA, no shadow call stack.

pub mod buddyinfo;
pub mod live;
pub mod meminfo;
pub mod pagetypeinfo;
pub mod stat_threshold;
pub mod sysctl;
pub mod vmstat;
pub mod vmstat_text;
pub mod zoneinfo;

pub use buddyinfo::{format_buddyinfo, BuddyinfoNode, BuddyinfoSnapshot, BuddyinfoZone};
pub use meminfo::{
    format_meminfo, si_mem_available, vm_commit_limit, HugetlbSnapshot, MeminfoSnapshot,
};
pub use pagetypeinfo::{
    format_pagetypeinfo, PagetypeinfoNode, PagetypeinfoSnapshot, PagetypeinfoZone,
};
pub use stat_threshold::{calculate_normal_threshold, calculate_pressure_threshold, fls};
pub use sysctl::{format_dointvec, VmSysctlSnapshot};
pub use vmstat::{format_vmstat, VmstatSnapshot};
pub use vmstat_text::{NodeStatItem, NodeStats, VmEventItem, VmEvents, ZoneStatItem, ZoneStats};
pub use zoneinfo::{
    format_zoneinfo, PagesetSnapshot, ZoneinfoNode, ZoneinfoSnapshot, ZoneinfoZone,
    MAX_RECLAIM_RETRIES,
};

/// Zones per node on i386 (`__MAX_NR_ZONES`: DMA, Normal, HighMem, Movable).
pub const MAX_NR_ZONES: usize = 4;

/// Buddy orders 0..=10 (`MAX_ORDER` is exclusive in 6.1).
pub const MAX_ORDER: usize = 11;

/// Migrate types of this configuration (MEMORY_ISOLATION, no CMA).
pub const MIGRATE_TYPES: usize = 5;

/// `migratetype_names[]`, in enum order.
pub const MIGRATETYPE_NAMES: [&str; MIGRATE_TYPES] = [
    "Unmovable",
    "Movable",
    "Reclaimable",
    "HighAtomic",
    "Isolate",
];

/// `zone_names[]`, in zone-index order.
pub const ZONE_NAMES: [&str; MAX_NR_ZONES] = ["DMA", "Normal", "HighMem", "Movable"];

/// `PAGE_SHIFT - 10`: pages to kB.
const KB_SHIFT: u32 = 2;
