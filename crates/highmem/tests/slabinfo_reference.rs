//! /proc/slabinfo against the real kernel: every cache the model creates (the kmalloc
//! families, the bootstrap caches, the named task and mm caches) has the real kernel's object
//! size, objects per slab and pages per slab on every reference boot — which checks SLUB's
//! `calculate_sizes` / `calculate_order` with the boot's CPU count — and the formatter prints
//! the real dumps' lines byte for byte.

mod common;

use highmem::reference::{list_runs, RefRun};
use kernel::procfs::{format_slabinfo_line, slabinfo::slabinfo, SLABINFO_HEADER};
use kernel::slab::{SlabInfo, BOOT_CACHE_NAMES};

#[test]
fn slabinfo_lines_round_trip() {
    for path in list_runs().expect("reference runs") {
        let run = RefRun::load(&path).expect("parse");
        for (dump, section) in run
            .slabinfo()
            .expect("slabinfo parses")
            .iter()
            .zip(run.sections("/proc/slabinfo"))
        {
            assert!(section.text.starts_with(SLABINFO_HEADER), "{}", run.name);
            let text: Vec<&str> = section.text.lines().skip(2).collect();
            assert_eq!(text.len(), dump.len());
            for (l, want) in dump.iter().zip(text) {
                let info = SlabInfo {
                    name: l.name.clone(),
                    active_objs: l.active_objs,
                    num_objs: l.num_objs,
                    objsize: l.objsize,
                    objperslab: l.objperslab,
                    pagesperslab: l.pagesperslab,
                    active_slabs: l.active_slabs,
                    num_slabs: l.num_slabs,
                };
                assert_eq!(
                    format_slabinfo_line(&info),
                    want,
                    "{} line {}",
                    run.name,
                    l.line
                );
            }
        }
    }
}

#[test]
fn cache_geometry_matches_the_real_kernel() {
    let mut checked = 0;
    for (run, k) in common::reference_boots() {
        let real = &run.slabinfo().expect("slabinfo parses")[0];
        let model = slabinfo(k);
        let mut kmalloc = 0;
        for m in &model {
            let r = real
                .iter()
                .find(|r| r.name == m.name)
                .unwrap_or_else(|| panic!("{}: {} is not in the real slabinfo", run.name, m.name));
            assert_eq!(
                (m.objsize, m.objperslab, m.pagesperslab),
                (r.objsize, r.objperslab, r.pagesperslab),
                "{} ({} CPUs): {}",
                run.name,
                run.smp,
                m.name
            );
            kmalloc += m.name.contains("kmalloc-") as usize;
            checked += 1;
        }
        assert_eq!(kmalloc, 4 * 13, "{}: kmalloc caches", run.name);
        for name in BOOT_CACHE_NAMES {
            let ours = k.slab.find_cache(name).expect("created");
            let listed = model.iter().any(|m| m.name == name);
            let real_listed = real.iter().any(|r| r.name == name);
            assert_eq!(
                listed, real_listed,
                "{}: {name} listed (else merged)",
                run.name
            );
            assert!(k.slab.cache(ours).is_some());
        }
    }
    assert!(checked >= 8 * 60, "only {checked} caches compared");
}

#[test]
fn fs_cache_merges_into_pid_as_on_the_real_kernel() {
    let (_, k) = &common::reference_boots()[0];
    assert_eq!(k.slab.find_cache("fs_cache"), k.slab.find_cache("pid"));
}
