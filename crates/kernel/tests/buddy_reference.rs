//! The node built from a real boot's zone limits and memory map must reproduce what that
//! boot printed and exposed: the zone and memory-range lines, the unavailable-range counts,
//! the "Built 1 zonelists ... Total pages" estimate, zone spans in /proc/zoneinfo, the
//! physical page count of the "Memory:" line, and the `%pGg` rendering of gfp masks.

use std::path::PathBuf;

use kernel::gfp::{format_gfp_mode, Gfp};
use kernel::mmzone::{PgData, ZoneType};
use kernel::page_alloc::NodeConfig;

fn shared_dir() -> PathBuf {
    match std::env::var_os("HIGHMEM_SHARED") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared")),
    }
}

fn reference_files() -> Vec<(String, String)> {
    let dir = shared_dir().join("reference");
    let mut out = Vec::new();
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".txt") && name != "README.md" {
            let text = std::fs::read_to_string(e.path()).expect("readable reference");
            out.push((name, text));
        }
    }
    out.sort();
    assert!(!out.is_empty(), "no reference boots in {}", dir.display());
    out
}

/// Console lines before the /proc dumps, without the printk timestamps.
fn boot_log(text: &str) -> Vec<String> {
    text.lines()
        .take_while(|l| !l.starts_with("=====BEGIN"))
        .filter_map(|l| {
            l.strip_prefix('[')
                .and_then(|r| r.split_once("] "))
                .map(|(_, m)| m.to_string())
        })
        .collect()
}

/// Contents of one dumped /proc file.
fn proc_file<'a>(text: &'a str, path: &str) -> Vec<&'a str> {
    let begin = format!("=====BEGIN {path}=====");
    let end = format!("=====END {path}=====");
    text.lines()
        .skip_while(|l| *l != begin)
        .skip(1)
        .take_while(|l| *l != end)
        .collect()
}

fn parse_mem(s: &str) -> Option<(u64, u64)> {
    let inner = s.split_once("[mem ")?.1.strip_suffix(']')?;
    let (a, b) = inner.split_once('-')?;
    let a = u64::from_str_radix(a.trim_start_matches("0x"), 16).ok()?;
    let b = u64::from_str_radix(b.trim_start_matches("0x"), 16).ok()?;
    Some((a >> 12, (b + 1) >> 12))
}

struct Boot {
    name: String,
    log: Vec<String>,
    cfg: NodeConfig,
    /// The kernel's lines from "Zone ranges:" to the last unavailable-range line.
    init_lines: Vec<String>,
    text: String,
}

fn parse_boot(name: String, text: String) -> Boot {
    let log = boot_log(&text);
    let start = log
        .iter()
        .position(|l| l == "Zone ranges:")
        .expect("Zone ranges line");
    let mut init_lines = Vec::new();
    for l in &log[start..] {
        let ours = l.starts_with("  ")
            || l.starts_with("Zone ranges")
            || l.starts_with("Movable zone")
            || l.starts_with("Early memory")
            || l.starts_with("Initmem setup")
            || l.starts_with("On node ");
        if !ours {
            break;
        }
        init_lines.push(l.clone());
    }
    let mut max_zone_pfn = [0u64; 4];
    let mut memory = Vec::new();
    let mut prev_end = 0;
    for l in &init_lines {
        let t = l.trim_start();
        for (i, z) in ["DMA ", "Normal ", "HighMem "].iter().enumerate() {
            if t.starts_with(z) && l.starts_with("  ") {
                prev_end = parse_mem(t).map_or(prev_end, |(_, e)| e);
                max_zone_pfn[i] = prev_end;
            }
        }
        if t.starts_with("node ") {
            memory.push(parse_mem(t).expect("node range"));
        }
    }
    let pbo = proc_file(&text, "/proc/pagetypeinfo")
        .iter()
        .find_map(|l| l.strip_prefix("Page block order: "))
        .and_then(|v| v.trim().parse().ok())
        .expect("pageblock order");
    let cfg = NodeConfig {
        max_zone_pfn,
        memory,
        nr_cpus: 1,
        pageblock_order: pbo,
        thp: true,
        zone_model: kernel::mmzone::ZoneModel::I386,
        dma_reserve: 0,
    };
    Boot {
        name,
        log,
        cfg,
        init_lines,
        text,
    }
}

#[test]
fn free_area_init_reproduces_the_boot_log_and_zone_spans() {
    for (name, text) in reference_files() {
        let b = parse_boot(name, text);
        let (mut pg, lines) = PgData::new(&b.cfg).unwrap_or_else(|e| panic!("{}: {e}", b.name));
        assert_eq!(lines, b.init_lines, "{}", b.name);

        let built = pg.build_all_zonelists();
        let kernel_built = b
            .log
            .iter()
            .find(|l| l.starts_with("Built 1 zonelists"))
            .expect("Built line");
        assert_eq!(&built, kernel_built, "{}", b.name);

        // mem_init, after the zonelists: set_highmem_pages_init() names every highmem zone, populated or not.
        let max_low = b.cfg.max_zone_pfn[1];
        let ours = pg.mem_init_free(&[], &[], max_low).expect("no frees");
        let theirs: Vec<String> = b
            .log
            .iter()
            .filter(|l| l.starts_with("Initializing "))
            .cloned()
            .collect();
        assert_eq!(ours, theirs, "{}", b.name);

        // "Memory: avail/physpages": physpages is the node's present pages.
        let mem = b
            .log
            .iter()
            .find(|l| l.starts_with("Memory: "))
            .expect("Memory line");
        let phys_kb: u64 = mem
            .split_once('/')
            .and_then(|(_, r)| r.split_once('K'))
            .and_then(|(n, _)| n.parse().ok())
            .expect("physpages");
        assert_eq!(pg.node_present_pages * 4, phys_kb, "{}", b.name);

        // Zone spans from /proc/zoneinfo.
        let zi = proc_file(&b.text, "/proc/zoneinfo");
        let mut zone: Option<ZoneType> = None;
        let mut checked = 0;
        for l in zi {
            if let Some(n) = l.strip_prefix("Node 0, zone ") {
                zone = ZoneType::ALL.into_iter().find(|z| z.name() == n.trim());
                continue;
            }
            let Some(z) = zone else { continue };
            let zone = pg.zone(z);
            let mut field = |key: &str, ours: u64| {
                if let Some(v) = l.trim_start().strip_prefix(key) {
                    let v: u64 = v.trim().parse().expect("number");
                    assert_eq!(ours, v, "{} {} {key}", b.name, zone.name);
                    checked += 1;
                }
            };
            field("spanned ", zone.spanned_pages);
            field("present ", zone.present_pages);
            field("start_pfn:", zone.zone_start_pfn);
        }
        assert!(
            checked >= 9,
            "{}: only {checked} zoneinfo fields checked",
            b.name
        );

        // Pageblocks per zone as /proc/pagetypeinfo counts them: the same number of blocks;
        // fresh from memmap_init every block is Movable except those starting in a hole,
        // so the boot's Unmovable count (holes plus what early allocations stole) is at
        // least ours.
        let pti = proc_file(&b.text, "/proc/pagetypeinfo");
        let counts_at = pti
            .iter()
            .position(|l| l.starts_with("Number of blocks type"))
            .expect("block counts");
        for l in &pti[counts_at + 1..] {
            let Some(rest) = l.strip_prefix("Node 0, zone ") else {
                break;
            };
            let mut it = rest.split_whitespace();
            let name = it.next().expect("zone name");
            let theirs: Vec<u64> = it.map(|v| v.parse().expect("count")).collect();
            let z = ZoneType::ALL
                .into_iter()
                .find(|z| z.name() == name)
                .expect("zone");
            let ours = pg.pageblock_counts(z);
            assert_eq!(
                ours.iter().sum::<u64>(),
                theirs.iter().sum::<u64>(),
                "{} {name}",
                b.name
            );
            assert!(
                ours[0] <= theirs[0],
                "{} {name}: {ours:?} vs {theirs:?}",
                b.name
            );
            assert_eq!(ours[3..], [0, 0], "{} {name}", b.name);
        }

        // The memmap covers the node rounded to MAX_ORDER_NR_PAGES, 40 bytes a page.
        let end = b.cfg.memory.last().map_or(0, |r| r.1);
        assert_eq!(
            pg.mem_map.byte_size(),
            end.div_ceil(1024) * 1024 * 40,
            "{}",
            b.name
        );
    }
}

#[test]
fn gfp_masks_render_like_the_kernel() {
    let mut seen = 0;
    for (name, text) in reference_files() {
        for l in text.lines() {
            for key in ["gfp_mask=", "mode:"] {
                let Some(rest) = l.split_once(key).map(|(_, r)| r) else {
                    continue;
                };
                let Some(end) = rest.find(')') else { continue };
                let shown = &rest[..=end];
                let Some((hex, _)) = shown.split_once('(') else {
                    continue;
                };
                let Ok(bits) = u32::from_str_radix(hex.trim_start_matches("0x"), 16) else {
                    continue;
                };
                assert_eq!(
                    format_gfp_mode(Gfp::from_bits_retain(bits)),
                    shown,
                    "{name}: {l}"
                );
                seen += 1;
            }
        }
    }
    assert!(seen > 0, "no gfp masks found in the reference boots");
}
