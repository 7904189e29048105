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
//! The amd64 build's /proc/vmstat and /proc/zoneinfo differ in their entries (its zones'
//! names, NUMA's counters): the snapshots of those two carry the build's
//! [`VmstatConfig`].

pub mod buddyinfo;
pub mod live;
pub mod meminfo;
pub mod pagetypeinfo;
pub mod pid;
pub mod pid_lookup;
pub mod slabinfo;
pub mod sysctl;
pub mod vmallocinfo;
pub mod vmstat;
pub mod zoneinfo;

pub use buddyinfo::{format_buddyinfo, BuddyinfoNode, BuddyinfoSnapshot, BuddyinfoZone};
pub use meminfo::{
    format_meminfo, si_mem_available, vm_commit_limit, HugetlbSnapshot, MeminfoSnapshot,
};
pub use pagetypeinfo::{
    format_pagetypeinfo, PagetypeinfoNode, PagetypeinfoSnapshot, PagetypeinfoZone,
};
pub use slabinfo::{format_slabinfo, format_slabinfo_line, SLABINFO_HEADER};
pub use sysctl::{format_dointvec, VmSysctlSnapshot};
pub use vmstat::{format_vmstat, VmstatSnapshot};
pub use zoneinfo::{
    format_zoneinfo, PagesetSnapshot, ZoneinfoNode, ZoneinfoSnapshot, ZoneinfoZone,
};

// The kernel's own definitions, re-exported for the users of the snapshots.
pub use crate::mmzone::{
    MAX_NR_ZONES, MAX_ORDER, MAX_ZONE_NUMBERS, MIGRATETYPE_NAMES, MIGRATE_TYPES, ZONE_NAMES,
};
pub use crate::page_alloc::MAX_RECLAIM_RETRIES;
pub use crate::vmstat::{
    calculate_normal_threshold, calculate_pressure_threshold, fls, NodeStatItem, NodeStats,
    NumaStatItem, NumaStats, VmEventItem, VmEvents, VmstatConfig, ZoneStatItem, ZoneStats,
};

/// `PAGE_SHIFT - 10`: pages to kB.
const KB_SHIFT: u32 = 2;
