//! The /proc formatters on a whole synthetic machine: a node with the four i386 zones and two
//! CPUs (the figures of the fact sheet's illustrative example, not of a real boot). Checks the
//! line structure the kernel's seq_file code produces and that snapshots serialize to JSON.

use kernel::procfs::meminfo::DEFAULT_OVERCOMMIT_RATIO;
use kernel::procfs::{
    calculate_normal_threshold, format_buddyinfo, format_meminfo, format_pagetypeinfo,
    format_vmstat, format_zoneinfo, BuddyinfoNode, BuddyinfoSnapshot, BuddyinfoZone,
    HugetlbSnapshot, MeminfoSnapshot, NodeStatItem, PagesetSnapshot, PagetypeinfoNode,
    PagetypeinfoSnapshot, PagetypeinfoZone, VmstatSnapshot, ZoneStatItem, ZoneinfoNode,
    ZoneinfoSnapshot, ZoneinfoZone, MAX_ORDER, ZONE_NAMES,
};

const CPUS: u32 = 2;

/// (managed, spanned, start_pfn, min, low, high, protection) of one zone.
type ZoneFigures = (u64, u64, u64, u64, u64, u64, [i64; 4]);

const ZONES: [ZoneFigures; 4] = [
    (3840, 4095, 1, 16, 20, 24, [0, 843, 3914, 3914]),
    (216000, 221182, 4096, 920, 1150, 1380, [0, 0, 24562, 24562]),
    (786000, 786000, 225278, 128, 965, 1802, [0, 0, 0, 0]),
    (0, 0, 0, 32, 32, 32, [0, 0, 0, 0]),
];

fn zoneinfo() -> ZoneinfoSnapshot {
    let zones = ZONES
        .iter()
        .zip(ZONE_NAMES)
        .map(
            |(&(managed, spanned, start, min, low, high, protection), name)| {
                let mut z = ZoneinfoZone {
                    name: name.into(),
                    watermark_min: min,
                    watermark_low: low,
                    watermark_high: high,
                    spanned_pages: spanned,
                    present_pages: managed,
                    managed_pages: managed,
                    lowmem_reserve: protection.to_vec(),
                    zone_start_pfn: start,
                    ..Default::default()
                };
                z.vm_stat[ZoneStatItem::NrFreePages] = managed / 2;
                z.pagesets = (0..CPUS)
                    .map(|cpu| PagesetSnapshot {
                        cpu,
                        count: 7,
                        high: (low / u64::from(CPUS)) as i32,
                        batch: 63,
                        stat_threshold: calculate_normal_threshold(managed, CPUS),
                    })
                    .collect();
                z
            },
        )
        .collect();
    ZoneinfoSnapshot {
        hpage_pmd_nr: 512,
        nodes: vec![ZoneinfoNode {
            node_id: 0,
            zones,
            ..Default::default()
        }],
        ..Default::default()
    }
}

#[test]
fn zoneinfo_structure() {
    let text = format_zoneinfo(&zoneinfo());
    for name in ZONE_NAMES {
        assert_eq!(
            text.matches(&format!("Node 0, zone {name:>8}\n")).count(),
            1
        );
    }
    assert!(text.starts_with("Node 0, zone      DMA\n  per-node stats\n      nr_inactive_anon 0\n"));
    assert_eq!(text.matches("per-node stats").count(), 1);
    assert_eq!(text.matches("\n    cpu: ").count(), 3 * CPUS as usize);
    assert_eq!(
        text.matches("vm stats threshold: 4\n").count(),
        CPUS as usize
    );
    assert_eq!(
        text.matches("vm stats threshold: 16\n").count(),
        CPUS as usize
    );
    assert_eq!(
        text.matches("vm stats threshold: 24\n").count(),
        CPUS as usize
    );
    assert_eq!(text.matches("  start_pfn:           ").count(), 3);
    assert!(text.contains("        protection: (0, 843, 3914, 3914)\n      nr_free_pages 1920\n"));
    assert!(text.ends_with("        protection: (0, 0, 0, 0)\n"));
}

/// Labels of fs/proc/meminfo.c, hugetlb_report_meminfo and arch_report_meminfo for this
/// configuration, in order.
const MEMINFO_LABELS: [&str; 57] = [
    "MemTotal",
    "MemFree",
    "MemAvailable",
    "Buffers",
    "Cached",
    "SwapCached",
    "Active",
    "Inactive",
    "Active(anon)",
    "Inactive(anon)",
    "Active(file)",
    "Inactive(file)",
    "Unevictable",
    "Mlocked",
    "HighTotal",
    "HighFree",
    "LowTotal",
    "LowFree",
    "SwapTotal",
    "SwapFree",
    "Zswap",
    "Zswapped",
    "Dirty",
    "Writeback",
    "AnonPages",
    "Mapped",
    "Shmem",
    "KReclaimable",
    "Slab",
    "SReclaimable",
    "SUnreclaim",
    "KernelStack",
    "PageTables",
    "SecPageTables",
    "NFS_Unstable",
    "Bounce",
    "WritebackTmp",
    "CommitLimit",
    "Committed_AS",
    "VmallocTotal",
    "VmallocUsed",
    "VmallocChunk",
    "Percpu",
    "HardwareCorrupted",
    "AnonHugePages",
    "ShmemHugePages",
    "ShmemPmdMapped",
    "FileHugePages",
    "FilePmdMapped",
    "HugePages_Total",
    "HugePages_Free",
    "HugePages_Rsvd",
    "HugePages_Surp",
    "Hugepagesize",
    "Hugetlb",
    "DirectMap4k",
    "DirectMap4M",
];

#[test]
fn meminfo_labels_and_derived_values_from_zoneinfo() {
    let zi = zoneinfo();
    let zones = &zi.nodes[0].zones;
    let managed: u64 = zones.iter().map(|z| z.managed_pages).sum();
    let free: u64 = zones
        .iter()
        .map(|z| z.vm_stat[ZoneStatItem::NrFreePages])
        .sum();
    let mut s = MeminfoSnapshot {
        pae: false,
        no_highmem: false,
        totalram_pages: managed,
        totalhigh_pages: zones[2].managed_pages,
        free_highpages: zones[2].vm_stat[ZoneStatItem::NrFreePages],
        low_wmark_pages_sum: zones.iter().map(ZoneinfoZone::low_wmark_pages).sum(),
        totalreserve_pages: 30000,
        overcommit_ratio: DEFAULT_OVERCOMMIT_RATIO,
        vmalloc_total_bytes: 128 << 20,
        hugetlb: HugetlbSnapshot {
            huge_page_size_kb: 4096,
            ..Default::default()
        },
        direct_pages_4k: 1000,
        direct_pages_large: 200,
        ..Default::default()
    };
    s.zone_stats[ZoneStatItem::NrFreePages] = free;
    s.node_stats[NodeStatItem::NrKernelStackKb] = 360;
    let text = format_meminfo(&s);
    let labels: Vec<&str> = text
        .lines()
        .map(|l| l.split(':').next().unwrap_or_default())
        .collect();
    assert_eq!(labels, MEMINFO_LABELS);
    for line in text.lines().filter(|l| !l.starts_with("HugePages_")) {
        assert!(line.ends_with(" kB"), "{line}");
    }
    let value = |label: &str| -> u64 {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("{label}:")))
            .unwrap_or_default();
        line.split_whitespace()
            .nth(1)
            .and_then(|v| v.parse().ok())
            .unwrap_or(u64::MAX)
    };
    assert_eq!(value("LowTotal"), (managed - zones[2].managed_pages) * 4);
    assert_eq!(
        value("LowFree"),
        (zones[0].managed_pages + zones[1].managed_pages) / 2 * 4
    );
    assert_eq!(value("MemAvailable"), (free - 30000) * 4);
    assert_eq!(value("CommitLimit"), managed / 2 * 4);
    assert_eq!(value("KernelStack"), 360);
    assert_eq!(value("VmallocTotal"), 131072);
    assert_eq!(value("DirectMap4M"), 200 * 4096);
}

#[test]
fn buddyinfo_and_pagetypeinfo_list_populated_zones() {
    let zi = zoneinfo();
    let mut nr_free = [0; MAX_ORDER];
    nr_free[MAX_ORDER - 1] = 1;
    let buddy = BuddyinfoSnapshot {
        nodes: vec![BuddyinfoNode {
            node_id: 0,
            zones: zi.nodes[0]
                .zones
                .iter()
                .map(|z| BuddyinfoZone {
                    name: z.name.clone(),
                    populated: z.populated(),
                    nr_free,
                })
                .collect(),
        }],
    };
    let text = format_buddyinfo(&buddy);
    assert_eq!(text.lines().count(), 3);
    assert!(text
        .lines()
        .all(|l| l.len() == "Node 0, zone      DMA ".len() + 7 * MAX_ORDER));

    let pt = PagetypeinfoSnapshot {
        pageblock_order: 10,
        nodes: vec![PagetypeinfoNode {
            node_id: 0,
            has_memory: true,
            zones: zi.nodes[0]
                .zones
                .iter()
                .map(|z| PagetypeinfoZone {
                    name: z.name.clone(),
                    populated: z.populated(),
                    ..Default::default()
                })
                .collect(),
        }],
    };
    let text = format_pagetypeinfo(&pt);
    // 2 header lines, blank, order header, 5 types × 3 zones, blank, block header, 3 zones.
    assert_eq!(text.lines().count(), 4 + 15 + 2 + 3);
    assert!(text.contains("Pages per block:  1024\n"));
    assert!(!text.contains("Movable,"));
}

#[test]
fn vmstat_lists_every_counter_once() {
    let text = format_vmstat(&VmstatSnapshot {
        hpage_pmd_nr: 1024,
        ..Default::default()
    });
    let names: Vec<&str> = text
        .lines()
        .map(|l| l.split(' ').next().unwrap_or_default())
        .collect();
    let mut unique = names.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), names.len());
    assert_eq!(
        names.iter().position(|n| *n == "nr_inactive_anon"),
        Some(11)
    );
    assert_eq!(names.last(), Some(&"nr_unstable"));
}

#[test]
fn snapshots_serialize_to_json() {
    let json = serde_json::to_value(zoneinfo()).expect("serializable");
    let dma = &json["nodes"][0]["zones"][0];
    assert_eq!(dma["name"], "DMA");
    assert_eq!(dma["vm_stat"]["nr_free_pages"], 1920);
    assert_eq!(dma["pagesets"][1]["stat_threshold"], 4);
}
