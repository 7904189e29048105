//! The anon LRU lists as the shm workload moves them (mm/swap.c): new pages wait in a
//! per-CPU batch of 15 before they are counted; GUP with FOLL_TOUCH marks a page accessed
//! (the second time activates it, one `pgactivate` each); read faults do not; an exit marks
//! the file pages its young PTEs mapped; the last reference takes a page off its list. And
//! the lists' counts always equal the pages carrying PG_lru, node and zones alike.

use kernel::config::KernelConfig;
use kernel::mm::ProcId;
use kernel::mmzone::ZoneType;
use kernel::page::PageFlags;
use kernel::vmstat::{NodeStatItem as N, VmEventItem, ZoneStatItem as Z};
use kernel::{boot, BootOptions, Kernel};

const CPU: usize = 0;
const SEG_PAGES: u64 = 1024;

fn booted(fault_stream: bool) -> Kernel {
    let cfg = KernelConfig::preset("debian-686-pae").expect("preset");
    let opts = BootOptions::new(2 << 30, 1, cfg);
    let mut k = boot(&opts).expect("boot");
    k.mm.fault_stream = fault_stream;
    k
}

fn lists(k: &Kernel) -> (i64, i64) {
    (
        k.node.vm_stat[N::NrActiveAnon],
        k.node.vm_stat[N::NrInactiveAnon],
    )
}

fn pgactivate(k: &Kernel) -> u64 {
    k.node.vm_events[VmEventItem::Pgactivate]
}

/// Every page with PG_lru counted once, on the list its PG_active says; the zones' counts
/// add up to the node's.
fn check_lists(k: &Kernel) {
    let (mut active, mut inactive) = (0i64, 0i64);
    for pfn in k.node.mem_map.start_pfn()..k.node.mem_map.end_pfn() {
        let Some(page) = k.node.mem_map.get(machine::Pfn::new(pfn)) else {
            continue;
        };
        if page.test(PageFlags::LRU) {
            if page.test(PageFlags::ACTIVE) {
                active += 1;
            } else {
                inactive += 1;
            }
        }
    }
    assert_eq!(
        lists(k),
        (active, inactive),
        "the lists are the PG_lru pages"
    );
    let zones = |item| -> i64 {
        ZoneType::ALL
            .iter()
            .map(|&z| k.node.node_zones[z as usize].page_state(item) as i64)
            .sum()
    };
    assert_eq!(zones(Z::NrZoneActiveAnon), active);
    assert_eq!(zones(Z::NrZoneInactiveAnon), inactive);
}

/// A process that attaches segment `id` read-only and touches every page, by read faults or
/// by MADV_POPULATE_READ.
fn child(k: &mut Kernel, parent: ProcId, id: u32, populate: bool) -> ProcId {
    let c = k.fork(CPU, parent).expect("fork");
    k.switch_to_process(CPU, c).expect("switch");
    let a = k.shmat(CPU, c, id, true).expect("shmat");
    if populate {
        k.madvise_populate_read(CPU, c, a, SEG_PAGES << 12)
            .expect("populate");
    } else {
        k.user_access_run(CPU, c, a, SEG_PAGES, false)
            .expect("read");
    }
    c
}

/// The parent, its segment written once (the pages join the inactive list).
fn parent_with_segment(k: &mut Kernel) -> (ProcId, u32) {
    let p = k.exec_process(CPU, "shmwork", 1).expect("exec");
    k.switch_to_process(CPU, p).expect("switch");
    let id = k.shmget(CPU, SEG_PAGES << 12).expect("shmget");
    let a = k.shmat(CPU, p, id, false).expect("shmat");
    k.user_access_run(CPU, p, a, SEG_PAGES, true)
        .expect("write");
    k.shmdt(CPU, p, a).expect("shmdt");
    (p, id)
}

#[test]
fn new_pages_wait_in_a_batch_of_fifteen() {
    let mut k = booted(false);
    let p = k.exec_process(CPU, "prog", 1).expect("exec");
    k.switch_to_process(CPU, p).expect("switch");
    k.node.lru_add_drain(CPU);
    let a = k.mmap_anon(CPU, p, 15 << 12, true).expect("mmap");
    let (_, inactive0) = lists(&k);
    for i in 0..14 {
        k.user_access(CPU, p, a + (i << 12), true).expect("write");
    }
    assert_eq!(lists(&k).1, inactive0, "14 pages still in the batch");
    assert_eq!(k.node.lru_fbatches[CPU].lru_add.len(), 14);
    k.user_access(CPU, p, a + (14 << 12), true).expect("write");
    assert_eq!(lists(&k).1, inactive0 + 15, "the 15th moves the batch");
    assert!(k.node.lru_fbatches[CPU].lru_add.is_empty());
    check_lists(&k);
}

/// Whether every page of segment `id` is inactive with PG_referenced.
fn segment_referenced(k: &Kernel, id: u32) -> bool {
    k.mm.shm[id as usize].pages.iter().flatten().all(|&pfn| {
        let page = &k.node.mem_map[pfn];
        page.test(PageFlags::REFERENCED) && !page.test(PageFlags::ACTIVE)
    })
}

#[test]
fn the_parents_unmap_references_and_a_populate_activates() {
    for stream in [false, true] {
        let mut k = booted(stream);
        let (p, id) = parent_with_segment(&mut k);
        // shmdt's zap_pte_range marked every page of the young PTEs accessed: referenced.
        assert!(segment_referenced(&k, id), "stream={stream}");
        let (act0, ina0, pga0) = (lists(&k).0, lists(&k).1, pgactivate(&k));
        // Readers: no mark_page_accessed on a shmem read fault.
        let r = child(&mut k, p, id, false);
        assert_eq!(
            lists(&k).0,
            act0,
            "stream={stream}: reading activates nothing"
        );
        assert_eq!(pgactivate(&k), pga0);
        // GUP's FOLL_TOUCH marks them again: active, one pgactivate each (the batch
        // drained by faultin_vma_page_range).
        let c1 = child(&mut k, p, id, true);
        assert_eq!(pgactivate(&k), pga0 + SEG_PAGES, "stream={stream}");
        let (act, ina) = lists(&k);
        assert_eq!(
            act - act0,
            SEG_PAGES as i64,
            "stream={stream}: segment active"
        );
        assert!(ina < ina0, "stream={stream}: off the inactive list");
        // Active pages stay where they are.
        let c2 = child(&mut k, p, id, true);
        assert_eq!(pgactivate(&k), pga0 + SEG_PAGES, "stream={stream}");
        check_lists(&k);
        for c in [r, c1, c2] {
            k.exit_process(CPU, c).expect("exit");
        }
        k.shm_rmid(CPU, id).expect("rmid");
        k.exit_process(CPU, p).expect("exit");
        assert!(
            lists(&k).0 < act,
            "stream={stream}: freed pages leave the list"
        );
        check_lists(&k);
    }
}

#[test]
fn a_readers_exit_activates_the_segment() {
    let mut k = booted(true);
    let (p, id) = parent_with_segment(&mut k);
    let r = child(&mut k, p, id, false);
    let pga0 = pgactivate(&k);
    assert!(
        segment_referenced(&k, id),
        "read faults leave the pages as they were"
    );
    // zap_pte_range marks each young file page: referenced by the parent's shmdt, the
    // segment goes to the active list with the reader's exit.
    k.exit_process(CPU, r).expect("exit");
    assert!(pgactivate(&k) - pga0 >= SEG_PAGES, "the exit activates");
    check_lists(&k);
    k.shm_rmid(CPU, id).expect("rmid");
    k.exit_process(CPU, p).expect("exit");
    check_lists(&k);
}

/// One step of a random life of processes around one segment.
#[derive(Clone, Copy, Debug)]
enum Step {
    /// A child of the parent attaches the segment and reads or populates it.
    Child(bool),
    /// A process writes `n` pages of a new private mapping (anonymous pages).
    Anon(usize, u8),
    /// A process exits.
    Exit(usize),
    /// A CPU's batches drain.
    Drain,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        any::<bool>().prop_map(Step::Child),
        (any::<usize>(), 1u8..40).prop_map(|(p, n)| Step::Anon(p, n)),
        any::<usize>().prop_map(Step::Exit),
        Just(Step::Drain),
    ]
}

use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Whatever processes do, the lists count exactly the pages with PG_lru (node and zones),
    /// and once every process has exited, the segment is gone and the batches drained, they
    /// hold the boot's pages again and no anonymous page of the processes is left.
    #[test]
    fn the_lists_always_count_the_lru_pages(steps in proptest::collection::vec(step(), 1..24)) {
        let mut k = booted(true);
        k.node.lru_add_drain_all();
        let (lists0, anon0) = (lists(&k), k.node.vm_stat[N::NrAnonMapped]);
        let (p, id) = parent_with_segment(&mut k);
        let mut alive = vec![p];
        for s in steps {
            match s {
                Step::Child(populate) => alive.push(child(&mut k, p, id, populate)),
                Step::Anon(i, n) => {
                    let q = alive[i % alive.len()];
                    k.switch_to_process(CPU, q).expect("switch");
                    let a = k.mmap_anon(CPU, q, u64::from(n) << 12, true).expect("mmap");
                    k.user_access_run(CPU, q, a, u64::from(n), true).expect("write");
                }
                Step::Exit(i) if alive.len() > 1 => {
                    let q = alive.remove(1 + i % (alive.len() - 1));
                    k.exit_process(CPU, q).expect("exit");
                }
                Step::Exit(_) => {}
                Step::Drain => k.node.lru_add_drain(CPU),
            }
            check_lists(&k);
        }
        for q in alive.into_iter().rev() {
            k.exit_process(CPU, q).expect("exit");
        }
        k.shm_rmid(CPU, id).expect("rmid");
        k.node.lru_add_drain_all();
        check_lists(&k);
        prop_assert_eq!(lists(&k).0 + lists(&k).1, lists0.0 + lists0.1);
        prop_assert_eq!(k.node.vm_stat[N::NrAnonMapped], anon0);
    }
}
