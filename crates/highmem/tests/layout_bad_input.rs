//! `highmem layout` on bad or extreme input: one-line errors with the right exit code,
//! the kernel's own warnings where the kernel would boot anyway, and no panics.

fn run(args: &[&str]) -> (i32, String, String) {
    let mut out = Vec::new();
    let mut err = Vec::new();
    let mut argv = vec!["highmem", "layout"];
    argv.extend_from_slice(args);
    let code = highmem::cli::run(argv, &mut out, &mut err);
    (
        code,
        String::from_utf8(out).expect("utf-8 stdout"),
        String::from_utf8(err).expect("utf-8 stderr"),
    )
}

/// Exit code `code`, nothing on stdout, one `highmem: error:` on stderr — a single line
/// for the model's own errors; clap's usage errors keep its tips and end by pointing to
/// `highmem layout --help`.
fn assert_error(args: &[&str], code: i32, words: &str) {
    let (c, out, err) = run(args);
    assert_eq!(c, code, "{args:?}: {err}");
    assert!(out.is_empty(), "{args:?} printed {out}");
    assert_eq!(err.matches("highmem: error:").count(), 1, "{args:?}: {err}");
    assert!(
        err.lines().count() == 1 || err.contains("try 'highmem layout --help'"),
        "{args:?}: {err}"
    );
    assert!(err.starts_with("highmem: error: "), "{err}");
    assert!(err.contains(words), "{args:?}: {err}");
}

#[test]
fn impossible_machines_are_usage_errors() {
    assert_error(&["--ram", "0"], 2, "too small");
    assert_error(&["--ram", "65G", "--pae"], 2, "at most 64 GiB");
    assert_error(&["--ram", "12Q"], 2, "invalid size '12Q'");
    assert_error(&["--ram", "4G", "--cpus", "0"], 2, "--cpus 0");
    assert_error(&["--ram", "4G", "--cpus", "many"], 2, "many");
    assert_error(
        &["--kernel", "vanilla"],
        2,
        "valid: debian-686, debian-686-pae",
    );
    assert_error(&["--kernel", "debian-686", "--pae"], 2, "without PAE");
    assert_error(&["--append", "console=\"ttyS0"], 2, "unterminated quote");
}

#[test]
fn kernels_that_would_not_boot() {
    // MAXMEM would wrap below zero.
    assert_error(
        &["--ram", "4G", "--pae", "--append", "vmalloc=3G"],
        1,
        "MAXMEM wraps",
    );
    // __VMALLOC_RESERVE == VMALLOC_OFFSET: no vmalloc space at all.
    assert_error(
        &["--ram", "4G", "--pae", "--append", "vmalloc=0"],
        1,
        "BUG_ON(VMALLOC_START >= VMALLOC_END)",
    );
    // The image is loaded at 16 MiB and ends above 32 MiB.
    assert_error(&["--ram", "32M", "--pae"], 1, "not backed by RAM");
    // reservetop pushes the fixmap below PAGE_OFFSET.
    assert_error(
        &["--ram", "1G", "--append", "reservetop=1G"],
        1,
        "MAXMEM wraps",
    );
}

#[test]
fn non_pae_kernel_ignores_ram_above_4g() {
    // The e820 scan stops at MAX_ARCH_PFN (4 GiB) and phys_addr_t is 32-bit, so the
    // real kernel boots quietly with the RAM below the PCI hole (see nopae-8192M.txt).
    let (code, out, err) = run(&["--ram", "8G"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("last_pfn = 0xbffe0 max_arch_pfn = 0x100000\n"));
    assert!(out.contains("  HighMem  [mem 0x0000000036bfe000-0x00000000bffdffff]\n"));
    assert!(!out.contains("  node   0: [mem 0x0000000100000000"));
}

#[test]
fn kernel_warnings_are_printed_and_the_boot_goes_on() {
    let (code, out, _) = run(&["--ram", "1G", "--pae", "--append", "highmem=900M"]);
    assert_eq!(code, 0);
    assert!(out.contains("\nonly 143MB highmem pages available, ignoring highmem size of 900MB!\n"));
    let (code, out, err) = run(&["--ram", "4G", "--pae", "--append", "mem=abc userpte"]);
    assert_eq!(code, 0);
    assert!(out.contains("\nMalformed early option 'mem'\n"));
    assert!(out.contains("\nMalformed early option 'userpte'\n"));
    assert!(
        out.contains("\nuser-defined physical RAM map:\n"),
        "mem= marks the map user-defined"
    );
    assert!(err.contains("highmem: note: mem=abc"), "{err}");
    let (code, out, _) = run(&["--ram", "512M", "--pae", "--append", "highmem=128M"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("\n128MB HIGHMEM available.\n383MB LOWMEM available.\n"),
        "{out}"
    );
}

#[test]
fn sixty_four_gib_pae_machine() {
    let (code, out, err) = run(&["--ram", "64G", "--pae"]);
    assert_eq!(code, 0, "{err}");
    // QEMU puts 3 GiB below the hole and 61 GiB above 4 GiB: RAM ends at 65 GiB, and the
    // kernel stops at MAX_ARCH_PFN (64 GiB).
    assert!(out.contains("BIOS-e820: [mem 0x0000000100000000-0x000000103fffffff] usable\n"));
    assert!(out.contains("last_pfn = 0x1000000 max_arch_pfn = 0x1000000\n"));
    assert!(out.contains("  HighMem  [mem 0x0000000036ffe000-0x0000000fffffffff]\n"));
    assert!(out.contains("64656MB HIGHMEM available.\n879MB LOWMEM available.\n"));
}

#[test]
fn nothing_panics() {
    let rams = [
        "1M", "2M", "33M", "34M", "64M", "100M", "512M", "896M", "3583M", "3584M", "3G", "4G",
        "4095M", "16G", "63G", "64G", "1.5G", "7T",
    ];
    let appends = [
        "",
        "mem=1",
        "mem=20M",
        "mem=3G",
        "highmem=1",
        "highmem=64G",
        "vmalloc=1",
        "vmalloc=800M",
        "vmalloc=16E",
        "reservetop=0",
        "reservetop=4G",
        "reservetop=64M",
        "mem=nopentium memmap=1G@1G",
        "-- mem=1M",
    ];
    for ram in rams {
        for append in appends {
            for pae in [false, true] {
                let mut args = vec!["--ram", ram, "--append", append];
                if pae {
                    args.push("--pae");
                }
                let (code, out, err) = run(&args);
                assert!(matches!(code, 0..=2), "{args:?}");
                if code == 0 {
                    assert!(out.contains("Initmem setup node 0"), "{args:?}: {out}");
                } else {
                    let errors = err.lines().filter(|l| l.starts_with("highmem: error: "));
                    assert_eq!(errors.count(), 1, "{args:?}: {err}");
                    assert!(err.lines().all(|l| l.starts_with("highmem: ")), "{err}");
                }
            }
        }
    }
}
