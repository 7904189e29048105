//! What the boot holds after init starts, line by line, against every reference boot: the
//! runtime profile (kernel/src/boot/runtime.rs) puts slab objects, kernel stacks, the
//! initramfs and init's pages where the real kernel's /proc/meminfo shows them, and the
//! slab caches' objects and slabs where its /proc/slabinfo shows them.

mod common;

use std::collections::BTreeMap;

use highmem::reference::RefRun;
use kernel::procfs::meminfo::format_meminfo;
use kernel::procfs::{live, slabinfo::slabinfo};
use kernel::Kernel;

/// Every `Name: N kB` line of a meminfo text.
fn parse(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            Some((k.to_string(), v.split_whitespace().next()?.parse().ok()?))
        })
        .collect()
}

/// (line, allowed difference in kB, allowed difference in % of the real value): the larger
/// of the two applies. What is left over comes from the reference's own spread (the profile
/// is one table per build, the real boots differ by a few objects and pages; AnonPages is
/// 80–84 kB on the 1 GiB boots, 44–48 on the others), from the moment of the dump (slabinfo,
/// which the slab table reads, is dumped after meminfo: 5 reclaimable pages more), and from
/// the two-CPU boot's page tables (176 kB, which the one-CPU profile does not scale).
const LINES: [(&str, u64, f64); 11] = [
    ("Cached", 0, 0.0),
    ("Shmem", 0, 0.0),
    ("Active(anon)", 4, 0.0),
    ("Inactive(anon)", 16, 0.0),
    ("AnonPages", 40, 0.0),
    ("Mapped", 12, 0.0),
    ("Slab", 0, 0.6),
    ("SReclaimable", 0, 0.5),
    ("SUnreclaim", 0, 1.0),
    ("KernelStack", 0, 0.0),
    ("PageTables", 60, 0.0),
];

fn compare(run: &RefRun, k: &Kernel) -> Vec<String> {
    let ours = parse(&format_meminfo(&live::meminfo(k)));
    let real = &run.meminfo[0];
    let mut bad = Vec::new();
    for (line, kb, pct) in LINES {
        let (o, r) = (ours[line], real.get(line).expect("line"));
        let allowed = kb.max((r as f64 * pct / 100.0) as u64);
        if o.abs_diff(r) > allowed {
            bad.push(format!(
                "{}: {line} {o} kB, real {r} kB (±{allowed})",
                run.name
            ));
        }
    }
    bad
}

#[test]
fn runtime_lines_match_every_reference_boot() {
    let mut bad = Vec::new();
    for (run, k) in common::reference_boots() {
        bad.extend(compare(run, k));
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn slab_caches_hold_the_reference_objects_and_slabs() {
    let mut bad = Vec::new();
    let mut checked = 0;
    for (run, k) in common::reference_boots() {
        let real = &run.slabinfo().expect("slabinfo")[0];
        let model = slabinfo(k);
        let (mut ours_pages, mut real_pages) = (0, 0);
        for r in real {
            let m = model.iter().find(|m| m.name == r.name);
            let (objs, active, slabs) =
                m.map_or((0, 0, 0), |m| (m.num_objs, m.active_objs, m.num_slabs));
            ours_pages += slabs * u64::from(r.pagesperslab);
            real_pages += r.num_slabs * u64::from(r.pagesperslab);
            // One table per build: the boots of other RAM sizes differ by a few objects
            // (sysfs nodes, inodes, dentries) and at most a few slabs.
            let allowed = (r.num_slabs / 20).max(1);
            if slabs.abs_diff(r.num_slabs) > allowed {
                bad.push(format!(
                    "{}: {} {objs}/{active} objects in {slabs} slabs, real {}/{} in {}",
                    run.name, r.name, r.num_objs, r.active_objs, r.num_slabs
                ));
            }
            checked += 1;
        }
        if ours_pages.abs_diff(real_pages) * 100 > real_pages {
            bad.push(format!(
                "{}: {ours_pages} slab pages, real {real_pages}",
                run.name
            ));
        }
    }
    assert!(checked > 8 * 100, "only {checked} caches compared");
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}
