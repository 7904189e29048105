//! The boot's highmem frees: the block frees the allocator does by default reach exactly
//! the state the kernel's page-by-page path (`free_highmem_page` through the boot pageset,
//! kept behind `debug_vm`) reaches — every `struct page`, every free list in order, every
//! counter — on machines with holes, reserved pages, both pageblock orders and pages that
//! are not in the clean boot state.

use kernel::debug_vm::check_node;
use kernel::mmzone::{MigrateType, PgData, ZoneType, MAX_ORDER};
use kernel::page_alloc::NodeConfig;
use machine::Pfn;
use proptest::prelude::*;

/// A node `[1, end)` with lowmem below `max_low` and the given free / reserved ranges.
fn node(end: u64, max_low: u64, pageblock_order: u32, debug_vm: bool) -> PgData {
    let cfg = NodeConfig {
        max_zone_pfn: [4096.min(max_low), max_low, end, 0],
        memory: vec![(1, 159), (256, end)],
        nr_cpus: 2,
        pageblock_order,
        thp: true,
        zone_model: kernel::mmzone::ZoneModel::I386,
        dma_reserve: 0,
    };
    let (mut pg, _) = PgData::new(&cfg).expect("node");
    pg.debug_vm = debug_vm;
    pg.build_all_zonelists();
    pg
}

/// Everything the boot frees decide: descriptors, list order, counters.
fn snapshot(pg: &PgData) -> String {
    let mut out = String::new();
    for p in pg.mem_map.start_pfn()..pg.mem_map.end_pfn() {
        out += &format!("{p}:{:?}\n", pg.mem_map[Pfn::new(p)]);
    }
    for z in ZoneType::ALL {
        let zone = pg.zone(z);
        for o in 0..MAX_ORDER {
            for mt in MigrateType::ALL {
                let id = kernel::mmzone::free_list_id(o as u32, mt);
                let list: Vec<u32> = pg.mem_map.list_iter(zone, id, usize::MAX).collect();
                out += &format!("{z:?} {o} {mt:?} {list:?}\n");
            }
            out += &format!("nr_free {}\n", zone.free_area[o].nr_free);
        }
        out += &format!(
            "{:?} managed {} pcp {}\n",
            zone.vm_stat,
            zone.managed_pages,
            zone.pcp_count()
        );
    }
    out += &format!(
        "{:?} {} {} {:?}\n",
        pg.vm_events, pg.totalram_pages, pg.totalhigh_pages, pg.kmsg
    );
    out
}

/// Boot `[1, end)` both ways with `reserved` ranges (and the free ranges around them), after
/// `dirty` has been applied to the fresh node; the two must agree and be consistent.
fn both_ways(
    end: u64,
    max_low: u64,
    pageblock_order: u32,
    reserved: &[(u64, u64)],
    dirty: &dyn Fn(&mut PgData),
) {
    let mut free = Vec::new();
    for &(s, e) in &[(1u64, 159u64), (256, end)] {
        let mut s = s;
        for &(rs, re) in reserved {
            if rs >= e || re <= s {
                continue;
            }
            if rs > s {
                free.push((s, rs));
            }
            s = s.max(re);
        }
        if s < e {
            free.push((s, e));
        }
    }
    let mut snaps = Vec::new();
    for debug_vm in [true, false] {
        let mut pg = node(end, max_low, pageblock_order, debug_vm);
        dirty(&mut pg);
        let r = pg.mem_init_free(&free, reserved, max_low);
        assert!(r.is_ok(), "{r:?}");
        if pg.kmsg.is_empty() {
            check_node(&pg).expect("consistent");
        }
        snaps.push(snapshot(&pg));
    }
    assert!(snaps[0] == snaps[1], "page-by-page and block frees differ");
}

#[test]
fn block_frees_match_page_by_page_pae() {
    both_ways(
        40_000,
        7001,
        9,
        &[(4096, 4300), (5000, 5003), (12_000, 12_001)],
        &|_| {},
    );
}

#[test]
fn block_frees_match_page_by_page_2level() {
    both_ways(
        50_000,
        9000,
        10,
        &[(4096, 4500), (20_001, 20_077), (33_000, 33_700)],
        &|_| {},
    );
}

#[test]
fn unclean_pages_take_the_page_by_page_path() {
    both_ways(30_000, 7001, 9, &[(4096, 4300)], &|pg| {
        // A page still charged to a cgroup is reported and leaked; one with a stale
        // `private` and one with a mapping take the slow path too.
        pg.mem_map[Pfn::new(20_005)].memcg_data = 0x10;
        pg.mem_map[Pfn::new(20_300)].private = 3;
        pg.mem_map[Pfn::new(25_000)].mapping = 0x1000;
    });
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn block_frees_match_page_by_page_random(
        end in 12_000u64..30_000,
        pbo in prop_oneof![Just(9u32), Just(10u32)],
        holes in prop::collection::vec((7001u64..30_000, 1u64..700), 0..6),
    ) {
        let mut reserved: Vec<(u64, u64)> = holes
            .iter()
            .map(|&(s, n)| (s.min(end - 1), (s + n).min(end)))
            .collect();
        reserved.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::new();
        for (s, e) in reserved {
            match merged.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        both_ways(end, 7001, pbo, &merged, &|_| {});
    }
}
