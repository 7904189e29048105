use super::*;
use crate::boot::{boot, BootOptions};
use crate::variant::Variant;

fn run(v: Variant, design: KernelDesign, mib: u64) -> DriverRun {
    let mut opts = BootOptions::new(mib << 20, 1, v.config());
    opts.runtime_profile = false;
    opts.design = design;
    let mut k = boot(&opts).expect("boot");
    let r = k.run_capture_driver(16, 0).expect("driver");
    k.check_vmalloc().unwrap();
    r
}

fn cell(r: &DriverRun, m: Method, b: Buffer) -> &Outcome {
    &r.rows
        .iter()
        .find(|row| row.method == m && row.buffer == b)
        .unwrap()
        .outcome
}

fn bad(o: &Outcome) -> bool {
    matches!(o, Outcome::WrongPage { .. } | Outcome::Fault { .. })
}

/// The outcome table design by design, as seed 000 and seed 001 describe it, on a machine
/// with high memory.
#[test]
fn outcome_table_matches_the_seeds() {
    use Buffer::*;
    use Method::*;
    // 2.4.18-SuSE: vmalloc's page tables in high memory → the hand walk reads garbage or
    // faults; pte_offset_atomic is the fix (for vmalloc_32 buffers: page_address of a
    // highmem data page is NULL); vmalloc_to_page and get_user_pages do not build.
    let r = run(Variant::Highmem4GHighpte, KernelDesign::PteHighmem24, 2048);
    assert!(r.buffers.iter().all(|b| b.pte_pages.iter().all(|p| p.1)));
    for b in Buffer::ALL {
        let o = cell(&r, HandWalk, b);
        assert!(bad(o), "{o:?}");
        let culprit = match o {
            Outcome::WrongPage { culprit, .. } | Outcome::Fault { culprit, .. } => culprit,
            _ => unreachable!(),
        };
        assert!(
            culprit.contains("pte_offset()") && culprit.contains("high memory"),
            "{culprit}"
        );
    }
    assert_eq!(cell(&r, PteOffsetAtomic, Vmalloc32), &Outcome::Right);
    match cell(&r, PteOffsetAtomic, Vmalloc) {
        Outcome::WrongPage { culprit, .. } => {
            assert!(culprit.contains("page_address"), "{culprit}")
        }
        o => panic!("{o:?}"),
    }
    for b in Buffer::ALL {
        assert!(matches!(
            cell(&r, VmallocToPage, b),
            Outcome::DoesNotBuild { .. }
        ));
    }
    assert!(matches!(
        cell(&r, GetUserPages, User),
        Outcome::DoesNotBuild { .. }
    ));
    // 2.5.5 and 6.1: kernel page tables in low memory; pte_offset and pte_offset_atomic do not
    // build (the hand walk, ported to pte_offset_kernel, would work); vmalloc_to_page is
    // right for vmalloc_32 and wrong for plain vmalloc's highmem pages.
    for d in [KernelDesign::Highpte25, KernelDesign::Linux61] {
        let r = run(Variant::Highmem4GHighpte, d, 2048);
        assert!(r.buffers.iter().all(|b| b.pte_pages.iter().all(|p| !p.1)));
        match cell(&r, HandWalk, Vmalloc32) {
            Outcome::DoesNotBuild {
                as_ported: Some(o), ..
            } => assert_eq!(**o, Outcome::Right),
            o => panic!("{o:?}"),
        }
        for b in Buffer::ALL {
            assert!(matches!(
                cell(&r, PteOffsetAtomic, b),
                Outcome::DoesNotBuild { .. }
            ));
        }
        // get_user_pages pins the pages the program wrote through its own page tables.
        assert_eq!(cell(&r, GetUserPages, User), &Outcome::Right);
        assert_eq!(cell(&r, VmallocToPage, Vmalloc32), &Outcome::Right);
        assert!(bad(cell(&r, VmallocToPage, Vmalloc)));
    }
}

/// Without high memory every version that builds is right, in every design.
#[test]
fn nohighmem_is_right_everywhere() {
    for d in KernelDesign::ALL {
        let r = run(Variant::NoHighmem, d, 2048);
        for row in &r.rows {
            assert!(!bad(&row.outcome), "{d:?} {row:?}");
        }
    }
}

/// PAE: the same picture for 64GB-highpte.
#[test]
fn pae_pte_highmem_hand_walk_breaks() {
    let r = run(Variant::Highmem64GHighpte, KernelDesign::PteHighmem24, 2048);
    assert!(bad(cell(&r, Method::HandWalk, Buffer::Vmalloc32)));
    assert_eq!(
        cell(&r, Method::PteOffsetAtomic, Buffer::Vmalloc32),
        &Outcome::Right
    );
}

/// On a loaded 16 GiB PAE machine the PTE page comes from above 4 GiB, where `__va()` wraps
/// into the direct map: the hand walk reads another lowmem page (garbage), not a fault.
#[test]
fn pte_highmem_hand_walk_reads_garbage_when_va_wraps_into_the_direct_map() {
    let mut opts = BootOptions::new(16 << 30, 1, Variant::Highmem64GHighpte.config());
    opts.runtime_profile = false;
    opts.design = KernelDesign::PteHighmem24;
    let mut k = boot(&opts).expect("boot");
    let taken = k.occupy_highmem(4500 << 20, 0);
    assert_eq!(taken, (4500 << 20) / PAGE_SIZE);
    let r = k.run_capture_driver(16, 0).expect("driver");
    let pte = r.buffers[0].pte_pages[0].0;
    let wrapped = (0xc000_0000 + (pte << 12)) & 0xffff_ffff;
    assert!(
        wrapped >= 0xc000_0000,
        "the PTE page {pte:#x} must wrap into the direct map"
    );
    match cell(&r, Method::HandWalk, Buffer::Vmalloc32) {
        Outcome::WrongPage { culprit, .. } => {
            assert!(culprit.contains("another page"), "{culprit}")
        }
        o => panic!("{o:?}"),
    }
    assert_eq!(
        cell(&r, Method::PteOffsetAtomic, Buffer::Vmalloc32),
        &Outcome::Right
    );
}

/// (d) pins with FOLL_PIN and unpins after the transfer: as many pins released as taken,
/// and once the program has exited every page it had is back in the allocator.
#[test]
fn get_user_pages_version_pins_and_releases() {
    use crate::vmstat::NodeStatItem as N;
    let mut opts = BootOptions::new(2048 << 20, 1, Variant::Highmem64GHighpte.config());
    opts.runtime_profile = false;
    let mut k = boot(&opts).expect("boot");
    let kb = |k: &crate::Kernel, label: &str| -> u64 {
        let mi = crate::procfs::live::read(k, "meminfo").unwrap_or_default();
        mi.lines()
            .find(|l| l.starts_with(label))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    k.node.drain_all_pages(None);
    let (free0, slab0) = (kb(&k, "MemFree:"), kb(&k, "Slab:"));
    assert_eq!(gup::pin_user_buffer(&mut k, 16), Outcome::Right);
    assert_eq!(k.node.vm_stat[N::NrFollPinAcquired], 16);
    assert_eq!(k.node.vm_stat[N::NrFollPinReleased], 16);
    // The executable's page cache goes as an unmount would; what SLUB keeps of the slabs it
    // grew is all that may stay.
    k.drop_binary_cache(0);
    k.node.drain_all_pages(None);
    let slab = kb(&k, "Slab:") - slab0;
    assert_eq!(
        kb(&k, "MemFree:") + slab,
        free0,
        "every pinned page came back"
    );
    assert_eq!(
        kb(&k, "Committed_AS:"),
        0,
        "the program's charge went with it"
    );
    crate::debug_vm::check_node(&k.node).expect("invariants");
}
