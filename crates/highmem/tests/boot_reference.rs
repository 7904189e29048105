//! Fidelity of the simulated boot against the real Linux 6.1 boots in ../shared/reference:
//! every boot (not the workload runs) is replayed on the model with the same RAM, CPUs,
//! kernel and command line, and the figures are compared field by field. Nothing here
//! restates a number from the reference files: both sides are read or computed.

mod common;
mod zonecmp;

use common::reference_boots as boots;
use kernel::procfs::live;

fn within(a: u64, b: u64, pct: f64) -> bool {
    let (a, b) = (a as f64, b as f64);
    (a - b).abs() <= b.abs() * pct / 100.0
}

/// The model reserves exactly one page more than the real kernel at mem_init (the static
/// BSS page tables and per-CPU metadata packing, ARCHITECTURE.md): managed pages and every
/// total derived from them may be one page (4 kB) apart, never more.
const RESIDUE_PAGES: u64 = 1;

fn within_pages(ours: u64, real: u64, pages: u64) -> bool {
    ours.abs_diff(real) <= pages
}

#[test]
fn zones_pcp_and_totals_match_the_real_kernel() {
    let mut failures = Vec::new();
    for (run, k) in boots() {
        let zi = &run.zoneinfo[0];
        let model = live::zoneinfo(k);
        for mz in &model.nodes[0].zones {
            let Some(rz) = zi.zone(&mz.name) else {
                failures.push(format!(
                    "{}: zone {} missing in reference",
                    run.name, mz.name
                ));
                continue;
            };
            let tag = format!("{} {}", run.name, mz.name);
            if mz.spanned_pages != rz.spanned || mz.present_pages != rz.present {
                failures.push(format!(
                    "{tag}: spanned/present {}/{} vs real {}/{}",
                    mz.spanned_pages, mz.present_pages, rz.spanned, rz.present
                ));
            }
            if !within_pages(mz.managed_pages, rz.managed, RESIDUE_PAGES) {
                failures.push(format!(
                    "{tag}: managed {} vs real {}",
                    mz.managed_pages, rz.managed
                ));
            }
            failures.extend(zonecmp::pcp(&tag, mz, rz));
        }
        let mi = live::meminfo(k);
        let rm = &run.meminfo[0];
        let kb = |p: u64| p * 4;
        for (label, ours) in [
            ("MemTotal", kb(mi.totalram_pages)),
            ("HighTotal", kb(mi.totalhigh_pages)),
            ("LowTotal", kb(mi.totalram_pages - mi.totalhigh_pages)),
        ] {
            let real = rm.get(label).expect("meminfo label");
            if !within_pages(ours, real, 4 * RESIDUE_PAGES) {
                failures.push(format!("{} {label} {ours} vs real {real}", run.name));
            }
        }
        // The direct map's page sizes, after the kernel split the large pages its text,
        // rodata and IDT protections cut through.
        let large = if k.config.pae {
            "DirectMap2M"
        } else {
            "DirectMap4M"
        };
        let large_kb = if k.config.pae { 2048 } else { 4096 };
        for (label, ours) in [
            ("DirectMap4k", kb(mi.direct_pages_4k)),
            (large, mi.direct_pages_large * large_kb),
        ] {
            if rm.get(label) != Some(ours) {
                failures.push(format!(
                    "{} {label} {ours} vs real {:?}",
                    run.name,
                    rm.get(label)
                ));
            }
        }
        // LowFree/HighFree include the preset's runtime profile, one constant per kernel build
        // derived from the one-CPU boots (runtime_profile_derivation.rs); what this checks is
        // that the model's own consumption — mem_map, swiotlb, hashes, per-CPU areas, pcp
        // lists — scales with RAM size, CPU count and vmalloc= as the real kernel's does, so
        // one constant fits every boot. The one-CPU boots land within a pcp batch; two CPUs
        // and vmalloc=256M hold a little more or less (per-CPU kthreads, runtime hashes sized
        // from low memory), under 0.2%.
        let free = kb(mi.zone_stats[kernel::procfs::ZoneStatItem::NrFreePages]);
        let high_free = kb(mi.free_highpages);
        for (label, ours) in [("LowFree", free - high_free), ("HighFree", high_free)] {
            let real = rm.get(label).expect("meminfo label");
            eprintln!("{} {label} model {ours} real {real}", run.name);
            if !within(ours, real, 0.2) {
                failures.push(format!(
                    "{} {label} {ours} vs real {real} (more than 0.2% apart)",
                    run.name
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn boot_log_lines_match_the_real_kernel() {
    // Lines the model prints that the real console prints too, compared verbatim.
    const PREFIXES: &[&str] = &[
        "RAMDISK:",
        "Allocated new RAMDISK:",
        "Move RAMDISK",
        "On node 0, zone",
        "Initializing ",
        "setup_percpu:",
        "percpu: Embedded",
        "Built 1 zonelists",
        "Unknown kernel command line parameters",
        "Dentry cache hash",
        "Inode-cache hash",
        "software IO TLB: area",
        "Checking if this processor honours the WP bit",
        "Freeing SMP alternatives",
        "Freeing initrd memory",
        "Freeing unused kernel image",
        "Write protecting kernel text",
        "NX-protecting the kernel data",
        "Kernel/User page tables isolation",
    ];
    // The W+X check of the kernel page tables: the real PAE kernel prints it a second time
    // for PTI's user page tables, which the model does not build; compare the first only.
    const FIRST_ONLY: &str = "x86/mm: Checked W+X mappings";
    let mut failures = Vec::new();
    for (run, k) in boots() {
        for &p in PREFIXES.iter().chain([&FIRST_ONLY]) {
            let mut ours: Vec<&str> = k.log.console().filter(|l| l.starts_with(p)).collect();
            let mut real: Vec<&str> = run
                .boot_log
                .iter()
                .map(String::as_str)
                .filter(|l| l.starts_with(p))
                .collect();
            if p == FIRST_ONLY {
                ours.truncate(1);
                real.truncate(1);
            }
            if ours != real {
                failures.push(format!(
                    "{}: {p}\n  model {ours:?}\n  real  {real:?}",
                    run.name
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn memory_line_matches_within_the_one_page_residue() {
    let mut failures = Vec::new();
    for (run, k) in boots() {
        let real = run.memory_line.clone().expect("Memory: line");
        let line = k
            .log
            .console()
            .find(|l| l.starts_with("Memory:"))
            .expect("model Memory: line");
        let nums: Vec<u64> = line
            .split(|c: char| !c.is_ascii_digit())
            .filter(|s| !s.is_empty())
            .filter_map(|s| s.parse().ok())
            .collect();
        // available, total, code, rwdata, rodata, init, bss, reserved, cma, highmem
        let exact = [
            (nums[1], real.total_kb, "total"),
            (nums[2], real.kernel_code_kb, "code"),
            (nums[3], real.rwdata_kb, "rwdata"),
            (nums[4], real.rodata_kb, "rodata"),
            (nums[5], real.init_kb, "init"),
            (nums[6], real.bss_kb, "bss"),
            (nums[9], real.highmem_kb.unwrap_or(0), "highmem"),
        ];
        for (ours, theirs, what) in exact {
            if ours != theirs {
                failures.push(format!(
                    "{} Memory {what}: {ours} vs real {theirs}",
                    run.name
                ));
            }
        }
        if !within_pages(nums[0], real.available_kb, 4 * RESIDUE_PAGES)
            || !within_pages(nums[7], real.reserved_kb, 4 * RESIDUE_PAGES)
        {
            failures.push(format!(
                "{}: {line}\n  real available {} reserved {}",
                run.name, real.available_kb, real.reserved_kb
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn watermarks_and_protection_match_the_real_kernel() {
    // The model computes min_free_kbytes (init_per_zone_wmark_min, then khugepaged's
    // recommendation), the watermarks and the lowmem reserve from its own managed pages at
    // the moments the kernel does; with managed pages equal at those moments, every figure
    // must come out exactly as the real kernel printed it.
    let mut failures = Vec::new();
    for (run, k) in boots() {
        let zi = &run.zoneinfo[0];
        let model = live::zoneinfo(k);
        for mz in &model.nodes[0].zones {
            let Some(rz) = zi.zone(&mz.name) else {
                continue;
            };
            failures.extend(zonecmp::watermarks(
                &format!("{} {}", run.name, mz.name),
                mz,
                rz,
            ));
        }
        let real_min_free = run
            .sysctl_values("/proc/sys/vm/min_free_kbytes")
            .expect("parse")
            .and_then(|v| v.first().copied());
        let ours = i64::from(k.node.sysctl.min_free_kbytes);
        if real_min_free != Some(ours) {
            failures.push(format!(
                "{} min_free_kbytes model {ours} real {real_min_free:?}",
                run.name
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
