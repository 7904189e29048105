//! The 64-bit model's vmalloc area and kernel page attributes against the amd64 research
//! run (`tests/realworks/research/amd64-8192M-S512-N0.txt`: its /proc/meminfo,
//! /proc/vmallocinfo and the page-table walk of the kernel half, dumped right before the
//! workload; see the README there).
//!
//! - /proc/vmallocinfo: the same areas — caller (`%pS`), size, `pages=`, kind, `phys=`
//!   and NUMA count — as a multiset, and the same callers in the same address order
//!   (consecutive areas of one function taken together: the stacks interleave with the rest
//!   on the real boot, which the model's profile creates after it), but for the two areas
//!   that own no pages and the model does not create;
//! - the 2 MiB pages the boot split to 4 KiB: in the image's high mapping and in the direct
//!   map's image range block by block, and how many of the rest of the direct map (the BPF
//!   pack's pages, wherever the allocator found them).

use highmem::reference::first_block;
use kernel::pagewalk::Walk;
use kernel::variant::Variant;
use kernel::{boot, BootOptions, Kernel};
use std::collections::BTreeSet;
use std::path::PathBuf;

/// Real areas the model does not create, by caller: the vmap of the IRQ stack (pages of
/// the per-CPU area) and the percpu chunk's address space (`pcpu_get_vm_areas`, whose
/// pages the percpu allocator populates itself): neither has `pages=`.
const NOT_MODELLED: &[&str] = &["irq_init_percpu_irqstack+", "pcpu_get_vm_areas+"];

const PAGE_OFFSET: u64 = 0xffff_8880_0000_0000;
const START_KERNEL_MAP: u64 = 0xffff_ffff_8000_0000;
const MODULES_VADDR: u64 = 0xffff_ffff_c000_0000;
const PMD_SIZE: u64 = 2 << 20;

fn research() -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/realworks/research/amd64-8192M-S512-N0.txt");
    std::fs::read_to_string(p).expect("research capture")
}

fn ram_mib(text: &str) -> u64 {
    highmem::reference::capture_ram_mib(text).expect("ORACLE-RUN ram=…M")
}

fn booted(ram_mib: u64) -> Kernel {
    let o = BootOptions::new(ram_mib << 20, 1, Variant::X86_64.config());
    boot(&o).expect("x86_64 boots with its profile")
}

/// A vmallocinfo line without its addresses: caller, size and the rest.
fn area(line: &str) -> String {
    let mut w = line.split_whitespace();
    w.next();
    w.collect::<Vec<_>>().join(" ")
}

/// The function of a `%pS` caller.
fn function(caller: &str) -> &str {
    caller.split('+').next().unwrap_or(caller)
}

/// The lines' callers' functions in order, consecutive repeats and the stacks left out.
fn order(lines: &[String]) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    for l in lines {
        let f = function(l.split_whitespace().nth(2).unwrap_or("")).to_string();
        if f != "kernel_clone" && v.last() != Some(&f) {
            v.push(f);
        }
    }
    v
}

#[test]
fn the_64bit_vmallocinfo_is_the_research_runs() {
    let text = research();
    let real: Vec<String> = first_block(&text, "/proc/vmallocinfo")
        .into_iter()
        .map(str::to_string)
        .collect();
    for c in NOT_MODELLED {
        assert!(real.iter().any(|l| l.contains(c)), "the dump has {c}");
    }
    let real: Vec<String> = real
        .into_iter()
        .filter(|l| !NOT_MODELLED.iter().any(|c| l.contains(c)))
        .collect();
    let k = booted(ram_mib(&text));
    let model: Vec<String> = kernel::procfs::vmallocinfo::format_vmallocinfo(
        &kernel::procfs::vmallocinfo::vmallocinfo(&k),
    )
    .lines()
    .map(str::to_string)
    .collect();
    let sorted = |v: &[String]| {
        let mut v: Vec<String> = v.iter().map(|l| area(l)).collect();
        v.sort();
        v
    };
    assert_eq!(sorted(&model), sorted(&real), "the areas");
    assert_eq!(order(&model), order(&real), "the callers by address");
    // VmallocUsed is the sum of pages=.
    let pages: u64 = real
        .iter()
        .filter_map(|l| l.split_whitespace().find_map(|w| w.strip_prefix("pages=")))
        .map(|n| n.parse::<u64>().expect("pages="))
        .sum();
    let used = first_block(&text, "/proc/meminfo")
        .iter()
        .find_map(|l| l.strip_prefix("VmallocUsed:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .expect("VmallocUsed");
    assert_eq!(pages * 4, used);
    assert_eq!(k.vmap.nr_vmalloc_pages, pages);
}

/// The 2 MiB-aligned blocks that the walk's 4 KiB ranges inside `[start, end)` touch.
fn real_split_blocks(text: &str, start: u64, end: u64) -> BTreeSet<u64> {
    let mut blocks = BTreeSet::new();
    for l in first_block(text, "ptwalk") {
        let w: Vec<&str> = l.split_whitespace().collect();
        let Some((a, b)) = w.first().and_then(|r| r.split_once('-')) else {
            continue;
        };
        if w.get(2) != Some(&"pte") {
            continue;
        }
        let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok();
        let (Some(a), Some(b)) = (hex(a), hex(b)) else {
            continue;
        };
        if a < start || b > end {
            continue;
        }
        let mut blk = a & !(PMD_SIZE - 1);
        while blk < b {
            blocks.insert(blk);
            blk += PMD_SIZE;
        }
    }
    blocks
}

/// The model's 2 MiB blocks of `[start, end)` mapped by a PTE page.
fn model_split_blocks(k: &Kernel, start: u64, end: u64) -> BTreeSet<u64> {
    let cur = k.kernel_cursor();
    (start / PMD_SIZE..end.div_ceil(PMD_SIZE))
        .map(|i| i * PMD_SIZE)
        .filter(|&va| matches!(cur.walk(&k.machine.mem, va), Ok(Walk::Pte { .. })))
        .collect()
}

#[test]
fn the_64bit_boot_splits_the_research_runs_2m_pages() {
    let text = research();
    let k = booted(ram_mib(&text));
    let image = k.layout.image;
    let high_end = image.end.div_ceil(PMD_SIZE) * PMD_SIZE;
    assert_eq!(
        model_split_blocks(&k, image.text, high_end),
        real_split_blocks(&text, START_KERNEL_MAP, MODULES_VADDR),
        "the high mapping's split blocks"
    );
    let direct = |pa: u64| PAGE_OFFSET + pa;
    let (img_start, img_end) = (
        direct(image.text - START_KERNEL_MAP),
        direct(high_end - START_KERNEL_MAP),
    );
    let real_direct = real_split_blocks(&text, PAGE_OFFSET, direct(1 << 40));
    let real_image: BTreeSet<u64> = real_direct.range(img_start..img_end).copied().collect();
    assert_eq!(
        model_split_blocks(&k, img_start, img_end),
        real_image,
        "the direct map's split blocks over the image"
    );
    // All of the direct map: the first 2 MiB, RAM's end below 4 GiB, the image's and the
    // BPF pack's blocks — the last where the page allocator found the pack's pages.
    let max = k.layout.max_pfn.as_u64() << 12;
    let model_direct = model_split_blocks(&k, PAGE_OFFSET, direct(max));
    assert_eq!(model_direct.len(), real_direct.len(), "{model_direct:x?}");
}
