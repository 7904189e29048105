//! /proc/meminfo (fs/proc/meminfo.c, mm/hugetlb.c, arch/x86/mm/pat/set_memory.c).
//!
//! The file is a fixed list of `label value kB` lines. Most values are counters converted
//! from pages; a few are computed at read time from other figures, and those computations
//! live here because they are what the file means: LowTotal/LowFree (HIGHMEM), Cached,
//! MemAvailable (`si_mem_available`), CommitLimit (`vm_commit_limit`), Hugetlb, and the
//! direct-map lines, whose large-page label is DirectMap2M with PAE and DirectMap4M without.

use super::{NodeStatItem as N, NodeStats, ZoneStatItem as Z, ZoneStats, KB_SHIFT};
use serde::Serialize;
use std::fmt::Write;

/// Default `vm.overcommit_ratio` (`sysctl_overcommit_ratio`).
pub const DEFAULT_OVERCOMMIT_RATIO: u64 = 50;

/// The default huge-page pool (`default_hstate`); i386 has only this one size.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct HugetlbSnapshot {
    pub nr_huge_pages: u64,
    pub free_huge_pages: u64,
    pub resv_huge_pages: u64,
    pub surplus_huge_pages: u64,
    /// `huge_page_size(h) / SZ_1K`: 2048 with PAE (2 MiB PMDs), 4096 without (4 MiB PDEs).
    pub huge_page_size_kb: u64,
}

impl HugetlbSnapshot {
    /// An empty default pool: x86 huge pages are PMD-sized (`HPAGE_SHIFT = PMD_SHIFT`), 2 MiB
    /// with PAE and 4 MiB with 2-level paging.
    pub fn default_hstate(pae: bool) -> Self {
        let pmd_shift: u32 = if pae { 21 } else { 22 };
        HugetlbSnapshot {
            huge_page_size_kb: 1 << (pmd_shift - 10),
            ..Default::default()
        }
    }

    /// `hugetlb_total_pages()`: base pages held by the pool.
    pub fn total_pages(&self) -> u64 {
        self.nr_huge_pages * (self.huge_page_size_kb >> KB_SHIFT)
    }
}

/// What /proc/meminfo reads, in the kernel's own units (pages unless the name says otherwise).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MeminfoSnapshot {
    /// PAE kernel: the large direct-map pages are 2 MiB (`DirectMap2M`), else 4 MiB.
    pub pae: bool,
    /// A kernel built without CONFIG_HIGHMEM: no HighTotal/HighFree/LowTotal/LowFree lines.
    pub no_highmem: bool,
    /// `totalram_pages()`: managed pages of all zones.
    pub totalram_pages: u64,
    /// `totalhigh_pages()`: managed pages of highmem zones.
    pub totalhigh_pages: u64,
    /// `nr_free_highpages()`: NR_FREE_PAGES summed over populated highmem zones.
    pub free_highpages: u64,
    /// Global zone counters (`global_zone_page_state`): NR_FREE_PAGES, NR_MLOCK, NR_BOUNCE.
    pub zone_stats: ZoneStats,
    /// Global node counters (`global_node_page_state`), THP items in base pages.
    pub node_stats: NodeStats,
    /// `totalreserve_pages`, kept by calculate_totalreserve_pages().
    pub totalreserve_pages: u64,
    /// Σ `low_wmark_pages(zone)` over every zone (`for_each_zone`, populated or not).
    pub low_wmark_pages_sum: u64,
    /// `nr_blockdev_pages()`.
    pub buffer_pages: u64,
    /// `total_swapcache_pages()`.
    pub swapcache_pages: u64,
    /// `total_swap_pages` and `get_nr_swap_pages()`.
    pub total_swap_pages: u64,
    pub free_swap_pages: u64,
    /// `zswap_pool_total_size`, in bytes.
    pub zswap_pool_total_size: u64,
    /// `zswap_stored_pages`.
    pub zswap_stored_pages: u64,
    /// `vm_memory_committed()`.
    pub committed_as_pages: u64,
    /// `sysctl_overcommit_ratio` and `sysctl_overcommit_kbytes` (0 = use the ratio).
    pub overcommit_ratio: u64,
    pub overcommit_kbytes: u64,
    /// `VMALLOC_END - VMALLOC_START`, in bytes.
    pub vmalloc_total_bytes: u64,
    /// `vmalloc_nr_pages()`.
    pub vmalloc_nr_pages: u64,
    /// `pcpu_nr_pages()`.
    pub pcpu_nr_pages: u64,
    /// `num_poisoned_pages`.
    pub num_poisoned_pages: u64,
    pub hugetlb: HugetlbSnapshot,
    /// `direct_pages_count[PG_LEVEL_4K]` and `[PG_LEVEL_2M]` (the 4 MiB level without PAE).
    pub direct_pages_4k: u64,
    pub direct_pages_large: u64,
}

/// `si_mem_available()`: free pages above the reserves, plus the part of the file LRU and of
/// reclaimable kernel memory that reclaim could give back (each keeps at least half of itself
/// or the low watermarks), never negative.
pub fn si_mem_available(s: &MeminfoSnapshot) -> u64 {
    let wmark_low = s.low_wmark_pages_sum as i64;
    let mut available = s.zone_stats[Z::NrFreePages] as i64 - s.totalreserve_pages as i64;

    let pagecache = (s.node_stats[N::NrActiveFile] + s.node_stats[N::NrInactiveFile]) as i64;
    available += pagecache - (pagecache / 2).min(wmark_low);

    let reclaimable =
        (s.node_stats[N::NrSlabReclaimableB] + s.node_stats[N::NrKernelMiscReclaimable]) as i64;
    available += reclaimable - (reclaimable / 2).min(wmark_low);

    available.max(0) as u64
}

/// `vm_commit_limit()`: the overcommit ratio of RAM outside the huge-page pool (or the
/// absolute `overcommit_kbytes`), plus swap. The product is `unsigned long` arithmetic.
pub fn vm_commit_limit(s: &MeminfoSnapshot) -> u64 {
    let allowed = if s.overcommit_kbytes != 0 {
        s.overcommit_kbytes >> KB_SHIFT
    } else {
        let ram = s.totalram_pages.wrapping_sub(s.hugetlb.total_pages()) as u32;
        u64::from(ram.wrapping_mul(s.overcommit_ratio as u32) / 100)
    };
    allowed + s.total_swap_pages
}

/// `show_val_kb()`: 16-character label, pages as kB right-aligned in 8 columns.
fn show_val_kb(out: &mut String, label: &str, pages: u64) {
    let _ = writeln!(out, "{label:<16}{:>8} kB", pages << KB_SHIFT);
}

/// Lines printed with their own `%8lu kB` format (values already in kB).
fn show_kb(out: &mut String, label: &str, kb: u64) {
    let _ = writeln!(out, "{label:<16}{kb:>8} kB");
}

/// The text of /proc/meminfo.
pub fn format_meminfo(s: &MeminfoSnapshot) -> String {
    let node = &s.node_stats;
    let zone = &s.zone_stats;
    let freeram = zone[Z::NrFreePages];
    let cached = (node[N::NrFilePages] as i64 - s.swapcache_pages as i64 - s.buffer_pages as i64)
        .max(0) as u64;
    let sreclaimable = node[N::NrSlabReclaimableB];
    let sunreclaim = node[N::NrSlabUnreclaimableB];

    let mut out = String::with_capacity(2048);
    let o = &mut out;
    show_val_kb(o, "MemTotal:", s.totalram_pages);
    show_val_kb(o, "MemFree:", freeram);
    show_val_kb(o, "MemAvailable:", si_mem_available(s));
    show_val_kb(o, "Buffers:", s.buffer_pages);
    show_val_kb(o, "Cached:", cached);
    show_val_kb(o, "SwapCached:", s.swapcache_pages);
    show_val_kb(o, "Active:", node[N::NrActiveAnon] + node[N::NrActiveFile]);
    show_val_kb(
        o,
        "Inactive:",
        node[N::NrInactiveAnon] + node[N::NrInactiveFile],
    );
    show_val_kb(o, "Active(anon):", node[N::NrActiveAnon]);
    show_val_kb(o, "Inactive(anon):", node[N::NrInactiveAnon]);
    show_val_kb(o, "Active(file):", node[N::NrActiveFile]);
    show_val_kb(o, "Inactive(file):", node[N::NrInactiveFile]);
    show_val_kb(o, "Unevictable:", node[N::NrUnevictable]);
    show_val_kb(o, "Mlocked:", zone[Z::NrMlock]);
    if !s.no_highmem {
        show_val_kb(o, "HighTotal:", s.totalhigh_pages);
        show_val_kb(o, "HighFree:", s.free_highpages);
        show_val_kb(
            o,
            "LowTotal:",
            s.totalram_pages.wrapping_sub(s.totalhigh_pages),
        );
        show_val_kb(o, "LowFree:", freeram.wrapping_sub(s.free_highpages));
    }
    show_val_kb(o, "SwapTotal:", s.total_swap_pages);
    show_val_kb(o, "SwapFree:", s.free_swap_pages);
    show_kb(o, "Zswap:", s.zswap_pool_total_size >> 10);
    show_kb(o, "Zswapped:", s.zswap_stored_pages << KB_SHIFT);
    show_val_kb(o, "Dirty:", node[N::NrFileDirty]);
    show_val_kb(o, "Writeback:", node[N::NrWriteback]);
    show_val_kb(o, "AnonPages:", node[N::NrAnonMapped]);
    show_val_kb(o, "Mapped:", node[N::NrFileMapped]);
    show_val_kb(o, "Shmem:", node[N::NrShmem]);
    show_val_kb(
        o,
        "KReclaimable:",
        sreclaimable + node[N::NrKernelMiscReclaimable],
    );
    show_val_kb(o, "Slab:", sreclaimable + sunreclaim);
    show_val_kb(o, "SReclaimable:", sreclaimable);
    show_val_kb(o, "SUnreclaim:", sunreclaim);
    show_kb(o, "KernelStack:", node[N::NrKernelStackKb]);
    show_val_kb(o, "PageTables:", node[N::NrPagetable]);
    show_val_kb(o, "SecPageTables:", node[N::NrSecondaryPagetable]);
    show_val_kb(o, "NFS_Unstable:", 0);
    show_val_kb(o, "Bounce:", zone[Z::NrBounce]);
    show_val_kb(o, "WritebackTmp:", node[N::NrWritebackTemp]);
    show_val_kb(o, "CommitLimit:", vm_commit_limit(s));
    show_val_kb(o, "Committed_AS:", s.committed_as_pages);
    show_kb(o, "VmallocTotal:", s.vmalloc_total_bytes >> 10);
    show_val_kb(o, "VmallocUsed:", s.vmalloc_nr_pages);
    show_val_kb(o, "VmallocChunk:", 0);
    show_val_kb(o, "Percpu:", s.pcpu_nr_pages);
    let _ = writeln!(
        o,
        "HardwareCorrupted: {:>5} kB",
        s.num_poisoned_pages << KB_SHIFT
    );
    show_val_kb(o, "AnonHugePages:", node[N::NrAnonThps]);
    show_val_kb(o, "ShmemHugePages:", node[N::NrShmemThps]);
    show_val_kb(o, "ShmemPmdMapped:", node[N::NrShmemPmdmapped]);
    show_val_kb(o, "FileHugePages:", node[N::NrFileThps]);
    show_val_kb(o, "FilePmdMapped:", node[N::NrFilePmdmapped]);

    // hugetlb_report_meminfo()
    let h = &s.hugetlb;
    let _ = writeln!(o, "HugePages_Total:   {:>5}", h.nr_huge_pages);
    let _ = writeln!(o, "HugePages_Free:    {:>5}", h.free_huge_pages);
    let _ = writeln!(o, "HugePages_Rsvd:    {:>5}", h.resv_huge_pages);
    let _ = writeln!(o, "HugePages_Surp:    {:>5}", h.surplus_huge_pages);
    show_kb(o, "Hugepagesize:", h.huge_page_size_kb);
    show_kb(o, "Hugetlb:", h.huge_page_size_kb * h.nr_huge_pages);

    // arch_report_meminfo()
    show_kb(o, "DirectMap4k:", s.direct_pages_4k << 2);
    if s.pae {
        show_kb(o, "DirectMap2M:", s.direct_pages_large << 11);
    } else {
        show_kb(o, "DirectMap4M:", s.direct_pages_large << 12);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> MeminfoSnapshot {
        let mut s = MeminfoSnapshot {
            pae: true,
            no_highmem: false,
            totalram_pages: 1000,
            totalhigh_pages: 600,
            free_highpages: 500,
            totalreserve_pages: 100,
            low_wmark_pages_sum: 10,
            overcommit_ratio: DEFAULT_OVERCOMMIT_RATIO,
            hugetlb: HugetlbSnapshot {
                huge_page_size_kb: 2048,
                ..Default::default()
            },
            ..Default::default()
        };
        s.zone_stats[Z::NrFreePages] = 800;
        s
    }

    fn line<'a>(text: &'a str, label: &str) -> &'a str {
        text.lines().find(|l| l.starts_with(label)).unwrap()
    }

    #[test]
    fn derived_lines() {
        let text = format_meminfo(&sample());
        assert_eq!(line(&text, "LowTotal:"), "LowTotal:           1600 kB");
        assert_eq!(line(&text, "LowFree:"), "LowFree:            1200 kB");
        assert_eq!(line(&text, "MemAvailable:"), "MemAvailable:       2800 kB");
        assert_eq!(line(&text, "CommitLimit:"), "CommitLimit:        2000 kB");
        assert_eq!(
            line(&text, "HardwareCorrupted:"),
            "HardwareCorrupted:     0 kB"
        );
        assert_eq!(line(&text, "HugePages_Total:"), "HugePages_Total:       0");
        assert_eq!(text.lines().count(), 57);
        assert!(text.ends_with("DirectMap2M:           0 kB\n"));
    }

    #[test]
    fn non_pae_direct_map_label() {
        let mut s = sample();
        s.pae = false;
        s.hugetlb = HugetlbSnapshot::default_hstate(false);
        s.direct_pages_large = 3;
        let text = format_meminfo(&s);
        assert!(text.ends_with("DirectMap4M:       12288 kB\n"));
        assert!(text.contains("\nHugepagesize:       4096 kB\n"));
    }

    #[test]
    fn mem_available_caps_and_floors() {
        let mut s = sample();
        s.node_stats[N::NrInactiveFile] = 100;
        s.node_stats[N::NrSlabReclaimableB] = 7;
        // pagecache keeps min(50, 10) = 10; reclaimable keeps min(3, 10) = 3.
        assert_eq!(si_mem_available(&s), 800 - 100 + 90 + 4);
        s.totalreserve_pages = 5000;
        assert_eq!(si_mem_available(&s), 0);
    }

    #[test]
    fn commit_limit_excludes_hugetlb_and_honours_kbytes() {
        let mut s = sample();
        s.hugetlb.nr_huge_pages = 1; // 512 base pages
        s.total_swap_pages = 7;
        assert_eq!(vm_commit_limit(&s), (1000 - 512) / 2 + 7);
        s.overcommit_kbytes = 4000;
        assert_eq!(vm_commit_limit(&s), 1000 + 7);
    }
}
