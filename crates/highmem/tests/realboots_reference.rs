//! Fidelity on machines the public reference does not cover: the real boots in
//! `tests/realboots/` (256 MiB to 32 GiB, `highmem=0`, `highmem=512M`, `mem=2G`,
//! `vmalloc=512M`; see its README). Everything the kernel computes at boot is compared;
//! free memory after boot is not, since those boots ran a different userspace.
//!
//! Two layers: the model's own figures (which carry the one-page memblock residue of
//! ARCHITECTURE.md), and the kernel's formulas fed with the real kernel's managed pages and
//! min_free_kbytes, which must reproduce every watermark, reserve and pcp limit exactly.

mod zonecmp;

mod common;

use highmem::reference::RefRun;
use kernel::config::KernelConfig;
use kernel::mmzone::ZoneType;
use kernel::procfs::live;
use kernel::{boot, BootOptions, Kernel};
use std::path::PathBuf;

fn realboot_files() -> Vec<PathBuf> {
    let v = common::captures_in("realboots");
    assert!(v.len() >= 16, "expected the real boots in tests/realboots");
    v
}

fn boot_like(run: &RefRun) -> Kernel {
    let cfg = KernelConfig::preset(run.kernel.preset_name()).expect("preset");
    let mut opts = BootOptions::new(run.ram_mib << 20, run.smp, cfg);
    opts.cmdline = run.append.clone();
    boot(&opts).unwrap_or_else(|e| panic!("{}: {e}", run.name))
}

fn section<'a>(run: &'a RefRun, path: &str) -> Option<&'a str> {
    run.sections
        .iter()
        .find(|s| s.path == path)
        .map(|s| s.text.trim())
}

/// Managed pages may differ by one page of memblock packing on some small machines
/// (ARCHITECTURE.md, deliberate differences).
const MANAGED_RESIDUE: u64 = 1;

/// /proc/vmallocinfo without the addresses (these captures print `0x(ptrval)`): sizes,
/// callers, pages and phys of the boot's areas, in address order, and VmallocUsed.
fn check_vmalloc(run: &RefRun, k: &Kernel, failures: &mut Vec<String>) {
    let Some(real) = section(run, "/proc/vmallocinfo") else {
        return;
    };
    let strip = |t: &str| -> Vec<String> {
        t.lines()
            .map(|l| l.split_once(' ').map_or(l, |(_, r)| r).trim().to_string())
            .collect()
    };
    let model = live::read(k, "vmallocinfo").unwrap_or_default();
    if strip(&model) != strip(real) {
        failures.push(format!("{}: vmallocinfo\n{model}vs real\n{real}", run.name));
    }
    let used = |t: &str| {
        t.lines()
            .find(|l| l.starts_with("VmallocUsed:"))
            .map(str::to_string)
    };
    let meminfo = live::read(k, "meminfo").unwrap_or_default();
    if let Some(real_mi) = section(run, "/proc/meminfo") {
        if used(&meminfo) != used(real_mi) {
            failures.push(format!(
                "{}: {:?} vs real {:?}",
                run.name,
                used(&meminfo),
                used(real_mi)
            ));
        }
    }
}

fn check_model(run: &RefRun, k: &Kernel, failures: &mut Vec<String>) {
    check_vmalloc(run, k, failures);
    let zi = &run.zoneinfo[0];
    for mz in &live::zoneinfo(k).nodes[0].zones {
        let Some(rz) = zi.zone(&mz.name) else {
            failures.push(format!(
                "{}: no zone {} in the real boot",
                run.name, mz.name
            ));
            continue;
        };
        let tag = format!("{} {}", run.name, mz.name);
        if (mz.spanned_pages, mz.present_pages) != (rz.spanned, rz.present) {
            failures.push(format!("{tag}: spanned/present differ"));
        }
        if mz.managed_pages.abs_diff(rz.managed) > MANAGED_RESIDUE {
            failures.push(format!(
                "{tag}: managed {} vs {}",
                mz.managed_pages, rz.managed
            ));
        }
        // With managed pages this close, the model's own watermarks, reserves and pcp
        // limits come out as the real kernel's.
        failures.extend(zonecmp::watermarks(&tag, mz, rz));
        failures.extend(zonecmp::pcp(&tag, mz, rz));
    }
    let real_min_free = run
        .sysctl_values("/proc/sys/vm/min_free_kbytes")
        .expect("parse")
        .and_then(|v| v.first().copied());
    if real_min_free != Some(i64::from(k.node.sysctl.min_free_kbytes)) {
        failures.push(format!(
            "{}: min_free_kbytes {} vs {real_min_free:?}",
            run.name, k.node.sysctl.min_free_kbytes
        ));
    }
    if section(run, "/sys/kernel/mm/transparent_hugepage/enabled")
        != Some(k.thp.enabled.sysfs_line())
    {
        failures.push(format!("{}: THP {:?}", run.name, k.thp.enabled));
    }
    // Boot lines decided from pfn limits and memory sizes: verbatim.
    for prefix in [
        "software IO TLB:",
        "Dentry cache hash",
        "Inode-cache hash",
        "Built 1 zonelists",
        "percpu: Embedded",
        "Freeing initrd memory",
    ] {
        let real: Vec<&str> = run
            .boot_log
            .iter()
            .map(String::as_str)
            .filter(|l| l.starts_with(prefix))
            .collect();
        let ours: Vec<&str> = k.log.console().filter(|l| l.starts_with(prefix)).collect();
        if ours != real {
            failures.push(format!(
                "{}: {prefix}\n  model {ours:?}\n  real  {real:?}",
                run.name
            ));
        }
    }
}

/// Pages a `Freeing <what> memory: NK` line of the real log gave back to Normal.
fn real_freed_pages(run: &RefRun, what: &str) -> u64 {
    let prefix = format!("Freeing {what} memory: ");
    run.boot_log
        .iter()
        .filter_map(|l| l.strip_prefix(prefix.as_str()))
        .filter_map(|r| r.strip_suffix('K').and_then(|n| n.parse::<u64>().ok()))
        .sum::<u64>()
        / 4
}

/// The kernel's formulas on the real managed pages and min_free_kbytes. The watermarks
/// were last set at hugepage_init (or init_per_zone_wmark_min without THP), before the
/// initrd and the init sections went back to Normal, so those pages are taken out again.
fn check_formulas(run: &RefRun, k: &mut Kernel, failures: &mut Vec<String>) {
    let zi = &run.zoneinfo[0];
    let later =
        real_freed_pages(run, "initrd") + real_freed_pages(run, "unused kernel image (initmem)");
    for z in ZoneType::ALL {
        if let Some(rz) = zi.zone(z.name()) {
            let freed_later = if z == ZoneType::Normal { later } else { 0 };
            k.node.zone_mut_ref(z).managed_pages = rz.managed - freed_later;
        }
    }
    if let Ok(Some(v)) = run.sysctl_values("/proc/sys/vm/min_free_kbytes") {
        k.node.sysctl.min_free_kbytes = v[0] as i32;
    }
    k.node.setup_per_zone_wmarks();
    k.node.setup_per_zone_lowmem_reserve();
    for mz in &live::zoneinfo(k).nodes[0].zones {
        let Some(rz) = zi.zone(&mz.name) else {
            continue;
        };
        let tag = format!("{} {} (real managed)", run.name, mz.name);
        failures.extend(zonecmp::watermarks(&tag, mz, rz));
        failures.extend(zonecmp::pcp(&tag, mz, rz));
    }
}

#[test]
fn boot_decisions_match_real_boots_beyond_the_reference() {
    let mut failures = Vec::new();
    for path in realboot_files() {
        let run = RefRun::load(&path).expect("parse real boot");
        let mut k = boot_like(&run);
        check_model(&run, &k, &mut failures);
        check_formulas(&run, &mut k, &mut failures);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
