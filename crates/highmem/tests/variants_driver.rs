//! Issue 9: the kernel variants (seed 001's five plus x86_64), `--design` / `--variant`, and
//! the capture-driver scenario (seed 000), through the CLI and the kernel.

use kernel::design::KernelDesign;
use kernel::gfp::__GFP_HIGHMEM;
use kernel::mmzone::ZoneType;
use kernel::variant::Variant;
use kernel::{boot, BootOptions, Kernel};

fn run(args: &[&str]) -> (i32, String, String) {
    let mut out = Vec::new();
    let mut err = Vec::new();
    let mut all = vec!["highmem"];
    all.extend_from_slice(args);
    let code = highmem::cli::run(all, &mut out, &mut err);
    (
        code,
        String::from_utf8_lossy(&out).into_owned(),
        String::from_utf8_lossy(&err).into_owned(),
    )
}

fn boot_variant(v: Variant, design: KernelDesign, gib: u64) -> Kernel {
    let mut opts = BootOptions::new(gib << 30, 1, v.config());
    opts.runtime_profile = false;
    opts.design = design;
    boot(&opts).expect("boot")
}

const GIB_PFN: u64 = (1 << 30) >> 12;

#[test]
fn each_variant_boots_with_the_zones_its_config_implies() {
    // 8 GiB: QEMU puts 3 GiB below the PCI hole and 5 GiB above 4 GiB.
    let k = boot_variant(Variant::NoHighmem, KernelDesign::Linux61, 8);
    assert_eq!(k.node.zone(ZoneType::HighMem).spanned_pages, 0);
    assert!(k
        .log
        .console()
        .any(|l| l.starts_with("Warning only ") && l.ends_with("MB will be used.")));
    assert!(k.layout.max_low_pfn.as_u64() < GIB_PFN);
    for v in [Variant::Highmem4G, Variant::Highmem4GHighpte] {
        let k = boot_variant(v, KernelDesign::Linux61, 8);
        let hm = k.node.zone(ZoneType::HighMem);
        assert!(hm.spanned_pages > 0);
        // A 2-level kernel sees the first 4 GiB of the physical address space only.
        assert!(hm.zone_end_pfn() <= 4 * GIB_PFN, "{v}");
        assert!(!k.config.pae);
    }
    for v in [Variant::Highmem64G, Variant::Highmem64GHighpte] {
        let k = boot_variant(v, KernelDesign::Linux61, 8);
        assert_eq!(
            k.node.zone(ZoneType::HighMem).zone_end_pfn(),
            9 * GIB_PFN,
            "{v}"
        );
        assert!(k.config.pae);
    }
    let k64 = kernel::x86_64::boot_x86_64(8 << 30, 1).unwrap();
    let names: Vec<_> = k64.zones.iter().map(|z| z.name).collect();
    assert_eq!(names, ["DMA", "DMA32", "Normal"]);
    assert_eq!(k64.max_low_pfn, 9 * GIB_PFN);
}

#[test]
fn userpte_alloc_gfp_follows_highpte_and_design() {
    let k = boot_variant(Variant::Highmem64GHighpte, KernelDesign::Linux61, 2);
    assert!(kernel::variant::userpte_alloc_gfp(&k.config, k.design()).contains(__GFP_HIGHMEM));
    assert_eq!(k.design(), KernelDesign::Linux61);
    let k = boot_variant(Variant::Highmem64G, KernelDesign::Highpte25, 2);
    assert!(!kernel::variant::userpte_alloc_gfp(&k.config, k.design()).contains(__GFP_HIGHMEM));
    assert_eq!(k.design(), KernelDesign::Highpte25);
    // 2.4.18-SuSE: every HIGHMEM kernel puts page tables in high memory.
    let k = boot_variant(Variant::Highmem4GHighpte, KernelDesign::PteHighmem24, 2);
    assert!(kernel::variant::userpte_alloc_gfp(&k.config, k.design()).contains(__GFP_HIGHMEM));
}

#[test]
fn cli_variants_and_designs() {
    let (code, out, _) = run(&[
        "boot",
        "--variant",
        "4GB",
        "--design",
        "highpte-2.5",
        "--ram",
        "2G",
        "--no-runtime",
    ]);
    assert_eq!(code, 0);
    assert!(out.starts_with("# highmem: QEMU pc, 2 GiB RAM, 1 CPU; kernel debian-686 (6.1.0-50-686, 2-level paging, HIGHMEM4G); design highpte-2.5, variant 4GB"), "{out}");
    let (code, _, err) = run(&["boot", "--variant", "64GB", "--design", "pte-highmem-2.4"]);
    assert_eq!(code, 2);
    assert!(err.contains("no separate HIGHPTE switch"), "{err}");
    let (code, _, err) = run(&["boot", "--variant", "64GB", "--kernel", "debian-686"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = run(&["boot", "--design", "2.6"]);
    assert_eq!(code, 2);
    assert!(err.contains("unknown design"), "{err}");
    let (code, out, _) = run(&[
        "boot",
        "--variant",
        "nohighmem",
        "--ram",
        "4G",
        "--no-runtime",
    ]);
    assert_eq!(code, 0);
    assert!(out.contains("Warning only 879MB will be used."), "{out}");
    assert!(!out.contains("  HighMem  [mem"), "{out}");
    // linux-6.1's pte_offset_map the 6.5 way: named in the header; the 2002 designs refuse it.
    let (code, out, err) = run(&["boot", "--ram", "2G", "--pae", "--pte-map", "kmap_local"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.lines()
            .next()
            .is_some_and(|h| h.contains("(pte_offset_map by kmap_local, 6.5+)")),
        "{out}"
    );
    let (code, _, err) = run(&[
        "shmwork",
        "16",
        "1",
        "--ram",
        "2G",
        "--design",
        "highpte-2.5",
        "--pte-map",
        "kmap_local",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("maps PTE pages its own way"), "{err}");
    // The 64-bit kernel's /proc files.
    let (code, out, _) = run(&["proc", "buddyinfo", "--variant", "x86_64", "--ram", "8G"]);
    assert_eq!(code, 0);
    let zones: Vec<&str> = out
        .lines()
        .filter_map(|l| l.split_whitespace().nth(3))
        .collect();
    assert_eq!(zones, ["DMA", "DMA32", "Normal"], "{out}");
    // zoneinfo lists every zone number, ZONE_DEVICE's included.
    let (code, out, err) = run(&["proc", "zoneinfo", "--variant", "x86_64", "--ram", "8G"]);
    assert_eq!(code, 0, "{err}");
    let zones: Vec<&str> = out
        .lines()
        .filter_map(|l| l.strip_prefix("Node 0, zone"))
        .map(str::trim)
        .collect();
    assert_eq!(
        zones,
        ["DMA", "DMA32", "Normal", "Movable", "Device"],
        "{out}"
    );
    let (code, out, err) = run(&["proc", "sys/vm/lowmem_reserve_ratio", "--variant", "x86_64"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "256\t256\t32\t0\t0\n");
    // The whole kernel runs on x86_64: its meminfo has no HighTotal / LowTotal lines.
    let (code, out, err) = run(&["proc", "meminfo", "--variant", "x86_64", "--ram", "8G"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("MemTotal:        8132032 kB\n"), "{out}");
    assert!(
        !out.contains("HighTotal:") && out.contains("KernelStack:"),
        "{out}"
    );
    let (code, out, _) = run(&["boot", "--variant", "x86_64", "--ram", "8G"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("  DMA32    [mem 0x0000000001000000-0x00000000ffffffff]"),
        "{out}"
    );
    assert!(
        out.contains("  Normal   [mem 0x0000000100000000-0x000000023fffffff]"),
        "{out}"
    );
}

/// The driver table, design by design, as seeds 000 and 001 say: on 2.4.18-SuSE the hand
/// walk breaks (the vmalloc area's page tables are in high memory) and pte_offset_atomic is
/// the fix; on 2.5.5 and 6.1 the old API does not build and vmalloc_to_page is right for
/// vmalloc_32 buffers.
#[test]
fn driver_table_matches_the_seeds() {
    let (code, out, err) = run(&["driver", "--ram", "2G"]);
    assert_eq!(code, 0, "{err}");
    let row = |design: &str, version: &str| -> String {
        out.lines()
            .find(|l| l.starts_with(design) && l.contains(version))
            .unwrap_or_else(|| panic!("no row {design} {version} in\n{out}"))
            .to_string()
    };
    for d in ["linux-6.1", "highpte-2.5"] {
        let a = row(d, "(a) pte_offset by hand");
        assert_eq!(a.matches("does not build").count(), 2, "{a}");
        assert_eq!(row(d, "(b)").matches("does not build").count(), 2);
        let c = row(d, "(c)");
        assert!(c.contains("right pages") && c.contains("WRONG PAGE"), "{c}");
        assert!(row(d, "(d)").contains("right pages"), "{}", row(d, "(d)"));
    }
    let a = row("pte-highmem-2.4", "(a)");
    assert!(
        !a.contains("right pages") && !a.contains("does not build"),
        "{a}"
    );
    let b = row("pte-highmem-2.4", "(b)");
    assert!(b.contains("right pages"), "{b}");
    assert_eq!(
        row("pte-highmem-2.4", "(c)")
            .matches("does not build")
            .count(),
        2
    );
    assert!(row("pte-highmem-2.4", "(d)").contains("does not build"));
    // The debug checks name the culprit.
    assert!(
        out.contains("pte-highmem-2.4 (a) pte_offset by hand vmalloc_32:"),
        "{out}"
    );
    assert!(out.contains("pte_offset(): the PTE page of"), "{out}");
    assert!(
        out.contains("ported to pte_offset_kernel: right pages"),
        "{out}"
    );
    // One design only.
    let (code, out, _) = run(&["driver", "--ram", "2G", "--design", "linux-6.1"]);
    assert_eq!(code, 0);
    assert!(!out.contains("pte-highmem-2.4"), "{out}");
    // Without high memory nothing breaks.
    let (code, out, _) = run(&["driver", "--variant", "nohighmem", "--ram", "2G"]);
    assert_eq!(code, 0);
    assert!(
        !out.contains("WRONG PAGE") && !out.contains("FAULT"),
        "{out}"
    );
}

/// On the 64-bit kernel every page has a kernel address: vmalloc_to_page + page_address is
/// right for both buffers, the hand walk ported to 4-level pte_offset_kernel reads the right
/// PTE pages, and the 2002 designs do not have the variant.
#[test]
fn driver_on_x86_64_every_version_that_builds_is_right() {
    let (code, out, err) = run(&["driver", "--variant", "x86_64", "--ram", "2G"]);
    assert_eq!(code, 0, "{err}");
    let row = |version: &str| -> String {
        out.lines()
            .find(|l| l.starts_with("linux-6.1") && l.contains(version))
            .unwrap_or_else(|| panic!("no row {version} in\n{out}"))
            .to_string()
    };
    assert_eq!(row("(a)").matches("does not build").count(), 2);
    assert_eq!(row("(b)").matches("does not build").count(), 2);
    assert_eq!(row("(c)").matches("right pages").count(), 2, "{out}");
    assert!(row("(d)").contains("right pages"), "{out}");
    assert!(
        out.contains("ported to pte_offset_kernel: right pages"),
        "{out}"
    );
    assert!(
        !out.contains("WRONG PAGE") && !out.contains("FAULT"),
        "{out}"
    );
    for d in ["highpte-2.5", "pte-highmem-2.4"] {
        assert!(
            out.lines()
                .any(|l| l.starts_with(d) && l.contains("(variant not in this design)")),
            "{out}"
        );
    }
    assert!(
        out.contains("PTE pages pfn") && out.contains("(lowmem)"),
        "{out}"
    );
}

/// `highmem CMD… --variant x86_64 --ram RAM --append APPEND`.
fn run_x86_64(cmd: &[&str], ram: &str, append: &str) -> (i32, String, String) {
    let mut args = cmd.to_vec();
    args.extend(["--variant", "x86_64", "--ram", ram, "--append", append]);
    run(&args)
}

/// The 64-bit kernel's command line: `mem=` cuts its map as `parse_memopt` does; what it does
/// not have (the i386 options) is said, not silently ignored.
#[test]
fn x86_64_command_line() {
    let (code, _, err) = run_x86_64(&["proc", "meminfo"], "1G", "highmem=1M");
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("highmem= is an i386 option"), "{err}");
    // The RAM at and above physical 6 GiB is gone: QEMU puts 5 of the 8 GiB above 4 GiB, so
    // 3 GiB (MemTotal falls by that, less the struct pages it no longer needs)...
    let total = |append: &str| -> i64 {
        let (code, out, err) = run(&[
            "proc",
            "meminfo",
            "--variant",
            "x86_64",
            "--ram",
            "8G",
            "--append",
            append,
        ]);
        assert_eq!(code, 0, "{err}");
        out.split_whitespace()
            .nth(1)
            .and_then(|v| v.parse().ok())
            .expect("MemTotal")
    };
    let cut = total("") - total("mem=6G");
    assert!((3 << 20) - cut < 60 << 10 && cut <= 3 << 20, "{cut} kB");
    let (code, out, _) = run_x86_64(&["boot"], "8G", "mem=6G");
    assert_eq!(code, 0);
    assert!(out.contains("user-defined physical RAM map:"), "{out}");
    assert!(
        out.contains("user: [mem 0x0000000100000000-0x000000017fffffff] usable"),
        "{out}"
    );
    assert!(out.contains("last_pfn = 0x180000 "), "{out}");
    // ... and one below QEMU's initrd is refused with the reason.
    let (code, _, err) = run_x86_64(&["boot"], "8G", "mem=1G");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("relocate_initrd"), "{err}");
}
