//! Boot decisions the kernel takes from one particular quantity, at one particular moment,
//! checked on machines unlike the reference boots. Each expectation is computed here from
//! the kernel's own rule and the model's own figures, never copied from a boot.
//!
//! - `hugepage_init()` (a subsys initcall) switches THP off when `totalram_pages()` is below
//!   512 MiB; khugepaged then never raises `min_free_kbytes`, which keeps the value of
//!   `init_per_zone_wmark_min()`: `int_sqrt(lowmem_kbytes * 16)`.
//! - `pci_swiotlb_detect()` reads `max_possible_pfn`, the e820 end of RAM after `mem=` but
//!   before `highmem=` cuts `max_pfn`.
//! - User pages are `GFP_HIGHUSER_MOVABLE`: with no HighMem zone they land in Normal.

use kernel::config::KernelConfig;
use kernel::mmzone::ZoneType;
use kernel::thp::{ThpEnabled, THP_MIN_TOTALRAM_PAGES};
use kernel::{boot, BootOptions, Kernel};

fn boot_with(mib: u64, pae: bool, cmdline: &str, runtime: bool) -> Kernel {
    let preset = if pae { "debian-686-pae" } else { "debian-686" };
    let cfg = KernelConfig::preset(preset).expect("preset");
    let mut opts = BootOptions::new(mib << 20, 1, cfg);
    opts.cmdline = cmdline.to_string();
    opts.runtime_profile = runtime;
    boot(&opts).unwrap_or_else(|e| panic!("{mib} MiB {cmdline}: {e}"))
}

/// Pages a `Freeing <what> memory: NK` line of the log gave back.
fn freed_pages(k: &Kernel, what: &str) -> u64 {
    let prefix = format!("Freeing {what} memory: ");
    k.log
        .console()
        .filter_map(|l| l.strip_prefix(prefix.as_str()))
        .filter_map(|r| r.strip_suffix('K').and_then(|n| n.parse::<u64>().ok()))
        .sum::<u64>()
        / 4
}

/// Pages that became managed after the initcalls of mm ran (rootfs and late initcalls).
fn freed_after_subsys_initcalls(k: &Kernel) -> u64 {
    freed_pages(k, "initrd") + freed_pages(k, "unused kernel image (initmem)")
}

fn lowmem_managed(k: &Kernel) -> u64 {
    [ZoneType::Dma, ZoneType::Normal]
        .iter()
        .map(|&z| k.node.zone(z).managed_pages)
        .sum()
}

fn floor_sqrt(x: u64) -> u64 {
    let mut r = (x as f64).sqrt() as u64;
    while r * r > x {
        r -= 1;
    }
    while (r + 1) * (r + 1) <= x {
        r += 1;
    }
    r
}

#[test]
fn small_machines_keep_the_boot_time_min_free_kbytes() {
    for (mib, pae) in [
        (256, true),
        (256, false),
        (384, true),
        (512, true),
        (512, false),
    ] {
        let k = boot_with(mib, pae, "", false);
        let totalram_at_initcall = k.node.totalram_pages - freed_after_subsys_initcalls(&k);
        assert!(
            totalram_at_initcall < THP_MIN_TOTALRAM_PAGES,
            "{mib} MiB: {totalram_at_initcall} pages at hugepage_init"
        );
        assert_eq!(k.thp.enabled, ThpEnabled::Never, "{mib} MiB");
        assert!(!k.thp.khugepaged, "{mib} MiB");
        // init_per_zone_wmark_min ran before the initrd and initmem were freed, with no
        // watermark set yet, so nr_free_buffer_pages() was the low zones' managed pages.
        let lowmem_kbytes = (lowmem_managed(&k) - freed_after_subsys_initcalls(&k)) * 4;
        let expect = floor_sqrt(lowmem_kbytes * 16).clamp(128, 262_144);
        assert_eq!(
            k.node.sysctl.min_free_kbytes as u64, expect,
            "{mib} MiB pae={pae}"
        );
        // The watermarks follow: min of the low zones adds up to min_free_kbytes / 4 (the
        // proportional split rounds each zone down).
        let mins: u64 = [ZoneType::Dma, ZoneType::Normal]
            .iter()
            .map(|&z| k.node.zone(z).min_wmark_pages())
            .sum();
        assert!(
            mins <= expect / 4 && mins + 2 >= expect / 4,
            "{mib} MiB: min {mins}"
        );
    }
}

#[test]
fn machines_past_512_mib_of_totalram_get_khugepaged() {
    for (mib, pae) in [(640, true), (640, false), (1024, true), (2048, false)] {
        let k = boot_with(mib, pae, "", false);
        let totalram_at_initcall = k.node.totalram_pages - freed_after_subsys_initcalls(&k);
        assert!(totalram_at_initcall >= THP_MIN_TOTALRAM_PAGES, "{mib} MiB");
        assert!(k.thp.khugepaged, "{mib} MiB");
        assert_eq!(k.thp.enabled.sysfs_line(), "[always] madvise never");
        // set_recommended_min_free_kbytes(): 2 + 3*3 pageblocks per low zone, at most 5%
        // of lowmem; far above the square-root rule on these machines.
        let lowmem_kbytes = (lowmem_managed(&k) - freed_after_subsys_initcalls(&k)) * 4;
        let sqrt_rule = floor_sqrt(lowmem_kbytes * 16);
        let pageblock = k.node.pageblock_nr_pages();
        let wanted = pageblock * 2 * (2 + 9) * 4;
        let min_free = k.node.sysctl.min_free_kbytes as u64;
        assert!(min_free > sqrt_rule, "{mib} MiB: {min_free} vs {sqrt_rule}");
        assert!(
            min_free <= wanted && min_free <= lowmem_kbytes / 20,
            "{mib} MiB"
        );
    }
    // transparent_hugepage=never keeps khugepaged from starting, and the boot value.
    let k = boot_with(1024, true, "transparent_hugepage=never", false);
    assert!(!k.thp.khugepaged);
    let lowmem_kbytes = (lowmem_managed(&k) - freed_after_subsys_initcalls(&k)) * 4;
    assert_eq!(
        k.node.sysctl.min_free_kbytes as u64,
        floor_sqrt(lowmem_kbytes * 16)
    );
    // A value the kernel cannot parse is reported and ignored.
    let k = boot_with(1024, true, "transparent_hugepage=sometimes", false);
    assert!(k.thp.khugepaged);
    assert!(k
        .log
        .console()
        .any(|l| l == "transparent_hugepage= cannot parse, ignored"));
}

fn swiotlb_pages(k: &Kernel) -> u64 {
    k.reserved_at_mem_init
        .iter()
        .filter(|(n, _)| *n == "swiotlb")
        .map(|(_, b)| b / 4096)
        .sum()
}

#[test]
fn swiotlb_follows_max_possible_pfn_not_max_pfn() {
    const DMA32_END_PFN: u64 = 1 << 20;
    // highmem=0 leaves no high memory but the e820 map still reaches past 4 GiB.
    let k = boot_with(4096, true, "highmem=0", false);
    assert!(k.layout.max_pfn.as_u64() <= DMA32_END_PFN);
    assert!(k.layout.max_possible_pfn.as_u64() > DMA32_END_PFN);
    assert_eq!(k.node.totalhigh_pages, 0);
    // 64 MiB of bounce buffer plus one 16-byte io_tlb_slot per 2 KiB slot.
    let slots = ((64u64 << 20) >> 11) * 16 / 4096;
    assert_eq!(swiotlb_pages(&k), (64 << 20) / 4096 + slots);
    assert!(k
        .log
        .console()
        .any(|l| l.starts_with("software IO TLB: mapped")));
    // mem= trims the e820 map first: nothing past 4 GiB, no swiotlb.
    let k = boot_with(4096, true, "mem=2G", false);
    assert!(k.layout.max_possible_pfn.as_u64() <= DMA32_END_PFN);
    assert_eq!(swiotlb_pages(&k), 0);
    // highmem= on an 8 GiB machine: max_pfn cut below 4 GiB, swiotlb still there.
    let k = boot_with(8192, true, "highmem=512M", false);
    assert!(k.layout.max_pfn.as_u64() <= DMA32_END_PFN);
    assert!(swiotlb_pages(&k) > 0);
    // The non-PAE kernel cannot see past 4 GiB at all.
    let k = boot_with(8192, false, "", false);
    assert!(k.layout.max_possible_pfn.as_u64() <= DMA32_END_PFN);
    assert_eq!(swiotlb_pages(&k), 0);
}

#[test]
fn without_highmem_user_pages_land_in_normal() {
    for (mib, pae, cmdline) in [(512, true, ""), (768, false, ""), (4096, true, "highmem=0")] {
        let k = boot_with(mib, pae, cmdline, true);
        assert_eq!(k.node.totalhigh_pages, 0, "{mib} MiB {cmdline}");
        let bare = boot_with(mib, pae, cmdline, false);
        let normal = k.node.zone(ZoneType::Normal);
        for (pfn, _) in &k.runtime_pages {
            assert!(normal.spans_pfn(pfn.as_u64()), "{mib} MiB: pfn {pfn:?}");
        }
        // Every held page — the profile's own pages, slab pages, kmalloc_large blocks, the
        // boot processes' pages — left what low memory had free, in the buddy lists or
        // waiting on a per-CPU list.
        let u = &k.boot_userspace;
        let held = k.runtime_pages.iter().map(|p| 1u64 << p.1).sum::<u64>()
            + k.slab.pages_held()
            + 2 * u.stacks.len() as u64
            + u.pgds.iter().map(|p| 1u64 << p.1).sum::<u64>()
            + (u.pagetables.len() + u.anon.len()) as u64;
        let available = |k: &Kernel| -> u64 {
            let pcp: u64 = k.node.node_zones.iter().map(|z| z.pcp_count()).sum();
            k.node.nr_free_pages() + pcp
        };
        assert_eq!(
            available(&bare) - available(&k),
            held,
            "{mib} MiB {cmdline}"
        );
    }
}
