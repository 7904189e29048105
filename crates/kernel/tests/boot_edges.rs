//! Boots at the edges: tiny machines, kernel command-line options that move the layout.
//! Each must either boot cleanly — no BUG lines, a clean W+X check, highmem reachable
//! through kmap_local — or stop with the kernel's own error, never a panic.

use kernel::config::KernelConfig;
use kernel::gfp::{Gfp, GFP_HIGHUSER};
use kernel::printk::LogLevel;
use kernel::{boot, BootOptions, Kernel};

fn boot_with(mib: u64, pae: bool, cmdline: &str) -> Result<Kernel, kernel::BootError> {
    let preset = if pae { "debian-686-pae" } else { "debian-686" };
    let cfg = KernelConfig::preset(preset).expect("preset");
    let mut opts = BootOptions::new(mib << 20, 1, cfg);
    opts.cmdline = cmdline.to_string();
    boot(&opts)
}

/// The same boot without the runtime profile (which needs more than 34 MiB).
fn boot_bare(mib: u64, pae: bool, cmdline: &str) -> Result<Kernel, kernel::BootError> {
    let preset = if pae { "debian-686-pae" } else { "debian-686" };
    let cfg = KernelConfig::preset(preset).expect("preset");
    let mut opts = BootOptions::new(mib << 20, 1, cfg);
    opts.cmdline = cmdline.to_string();
    opts.runtime_profile = false;
    boot(&opts)
}

fn assert_clean(k: &Kernel, what: &str) {
    let errors: Vec<&str> = k
        .log
        .lines()
        .iter()
        .filter(|l| l.level <= LogLevel::Warning)
        .map(|l| l.text.as_str())
        .collect();
    assert!(errors.is_empty(), "{what}: {errors:?}");
    if k.config.pae {
        assert!(
            k.log
                .console()
                .any(|l| l == "x86/mm: Checked W+X mappings: passed, no W+X pages found."),
            "{what}: W+X check did not pass"
        );
    }
}

#[test]
fn small_machines_clear_the_early_mappings_above_low_memory() {
    // head_32 maps 36 MiB; with less RAM the surplus must be cleared again. (Without the
    // runtime profile: what a real userspace holds after boot does not fit in 34 MiB.)
    for (mib, pae) in [(34, true), (36, true), (40, false), (64, true)] {
        let k = boot_bare(mib, pae, "").unwrap_or_else(|e| panic!("{mib}M: {e}"));
        assert_clean(&k, &format!("{mib}M pae={pae}"));
    }
    let k = boot_bare(1024, true, "mem=34M").expect("mem=34M");
    assert_clean(&k, "mem=34M");
    assert!(k
        .log
        .lines()
        .iter()
        .any(|l| l.text.starts_with("clearing pte for ram above max_low_pfn")));
}

#[test]
fn reservetop_moves_the_fixmap_and_kmap_local_follows() {
    for arg in ["reservetop=1", "reservetop=4M", "reservetop=64M"] {
        let mut k = boot_with(2048, true, arg).unwrap_or_else(|e| panic!("{arg}: {e}"));
        assert_clean(&k, arg);
        assert!(
            k.kmap_area.fixaddr_top < 0xffff_f000,
            "{arg}: FIXADDR_TOP not moved"
        );
        let got = k
            .alloc_pages(GFP_HIGHUSER | Gfp::ZERO, 0, 0)
            .expect("zeroed highmem page");
        assert!(got.pfn.as_u64() >= k.layout.max_low_pfn.as_u64());
    }
}

#[test]
fn mem_nopentium_maps_low_memory_with_small_pages() {
    for pae in [true, false] {
        let k = boot_with(1024, pae, "mem=nopentium").expect("mem=nopentium boots");
        assert_clean(&k, "mem=nopentium");
        // Only the kernel's own protection splits would create large pages: none at all.
        assert_eq!(k.direct_pages.pages_large, 0);
        assert_eq!(
            k.direct_pages.pages_4k,
            k.layout.max_low_pfn.as_u64(),
            "every low page mapped once"
        );
    }
}

#[test]
fn an_initrd_that_does_not_fit_is_refused() {
    let cfg = KernelConfig::preset("debian-686-pae").expect("preset");
    let mut opts = BootOptions::new(1 << 30, 1, cfg);
    opts.initrd_size = 2 << 30;
    let e = boot(&opts).expect_err("QEMU refuses");
    assert!(e.to_string().contains("initrd is too large"), "{e}");
}
