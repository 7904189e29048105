//! Allocator scenarios: pcp batching and LIFO reuse, zone fallback and the lowmem reserve,
//! the highatomic reserve, compound pages, bad pages, refused frees and failure reports.

use kernel::debug_vm::check_node;
use kernel::gfp::*;
use kernel::mmzone::{MigrateType, PgData, ZoneStatItem, ZoneType};
use kernel::page::PageFlags;
use kernel::page_alloc::{AllocFailureKind, FreeError, NodeConfig};
use kernel::vmstat::VmEventItem;
use machine::Pfn;

const MAX_LOW_PFN: u64 = 20_000;

/// DMA, a Normal zone of ~16k pages and a HighMem zone of 70k pages, one or two CPUs.
fn boot(nr_cpus: usize) -> PgData {
    let memory = vec![(1, 159), (256, 90_000)];
    let cfg = NodeConfig {
        max_zone_pfn: [4096, MAX_LOW_PFN, 90_000, 0],
        memory: memory.clone(),
        nr_cpus,
        pageblock_order: 9,
        thp: true,
        zone_model: kernel::mmzone::ZoneModel::I386,
        dma_reserve: 0,
    };
    let (mut pg, _) = PgData::new(&cfg).expect("node");
    pg.debug_vm = true;
    pg.build_all_zonelists();
    let reserved = [(4096u64, 4500u64)];
    let free = [(1, 159), (256, 4096), (4500, 90_000)];
    pg.mem_init_free(&free, &reserved, MAX_LOW_PFN)
        .expect("boot");
    pg.setup_per_cpu_pageset();
    pg.init_per_zone_wmark_min();
    pg.set_recommended_min_free_kbytes();
    pg.gfp_allowed_mask = __GFP_BITS_MASK;
    pg.current_comm = String::from("tester");
    check_node(&pg).expect("boot state");
    pg
}

fn free_pages(pg: &PgData, z: ZoneType) -> u64 {
    pg.zone(z).page_state(ZoneStatItem::NrFreePages)
}

#[test]
fn order0_comes_from_a_batch_refill_in_ascending_order_and_is_reused_lifo() {
    let mut pg = boot(1);
    let batch = pg.zone(ZoneType::HighMem).per_cpu_pageset[0].batch;
    assert_eq!(batch, 15);
    let first = pg.alloc_pages(GFP_HIGHUSER_MOVABLE, 0, 0).expect("page");
    assert_eq!(first.zone, ZoneType::HighMem);
    assert_eq!(
        pg.zone(ZoneType::HighMem).per_cpu_pageset[0].count,
        batch - 1
    );
    // The refill split one block lower-half first and queued the pages at the tail.
    for i in 1..batch as u64 {
        let a = pg.alloc_pages(GFP_HIGHUSER_MOVABLE, 0, 0).expect("page");
        assert_eq!(a.pfn.as_u64(), first.pfn.as_u64() + i);
    }
    assert_eq!(pg.zone(ZoneType::HighMem).per_cpu_pageset[0].count, 0);
    let next = pg.alloc_pages(GFP_HIGHUSER_MOVABLE, 0, 0).expect("page");
    assert_eq!(next.pfn.as_u64(), first.pfn.as_u64() + batch as u64);
    // Frees go to the head of the pcp list: the last freed page comes back first.
    pg.__free_pages(Pfn::new(first.pfn.as_u64() + 3), 0, 0)
        .expect("free");
    pg.__free_pages(Pfn::new(first.pfn.as_u64() + 5), 0, 0)
        .expect("free");
    assert_eq!(
        pg.alloc_pages(GFP_HIGHUSER_MOVABLE, 0, 0)
            .expect("page")
            .pfn
            .as_u64(),
        first.pfn.as_u64() + 5
    );
    assert_eq!(pg.vm_events[VmEventItem::PgallocHigh], batch as u64 + 2);
    check_node(&pg).expect("consistent");
}

#[test]
fn pcp_lists_are_trimmed_at_high_and_drained_on_demand() {
    let mut pg = boot(2);
    let high = pg.zone(ZoneType::HighMem).per_cpu_pageset[1].high;
    let mut pages = Vec::new();
    for _ in 0..(high as usize + 200) {
        pages.push(pg.alloc_pages(GFP_HIGHUSER_MOVABLE, 0, 1).expect("page"));
    }
    for a in &pages {
        pg.__free_pages(a.pfn, 0, 1).expect("free");
        assert!(pg.zone(ZoneType::HighMem).per_cpu_pageset[1].count < high);
    }
    assert!(pg.zone(ZoneType::HighMem).per_cpu_pageset[1].count > 0);
    assert_eq!(pg.zone(ZoneType::HighMem).per_cpu_pageset[0].count, 0);
    pg.drain_all_pages(None);
    assert_eq!(pg.zone(ZoneType::HighMem).pcp_count(), 0);
    assert_eq!(
        free_pages(&pg, ZoneType::HighMem),
        pg.zone(ZoneType::HighMem).managed_pages
    );
    check_node(&pg).expect("consistent");
}

#[test]
fn zones_follow_the_gfp_mask() {
    let mut pg = boot(1);
    assert_eq!(
        pg.alloc_pages(GFP_KERNEL, 0, 0).expect("k").zone,
        ZoneType::Normal
    );
    assert_eq!(
        pg.alloc_pages(GFP_HIGHUSER, 3, 0).expect("h").zone,
        ZoneType::HighMem
    );
    assert_eq!(
        pg.alloc_pages(GFP_KERNEL | GFP_DMA, 0, 0).expect("d").zone,
        ZoneType::Dma
    );
    assert_eq!(
        pg.alloc_pages(GFP_KERNEL | __GFP_HIGHMEM, 10, 0)
            .expect("h10")
            .zone,
        ZoneType::HighMem
    );
    // __get_free_pages never returns highmem.
    assert_eq!(
        pg.__get_free_pages(GFP_HIGHUSER, 0, 0).expect("l").zone,
        ZoneType::Normal
    );
    let z = pg.get_zeroed_page(GFP_KERNEL, 0).expect("z");
    assert!(z.init && z.gfp.contains(Gfp::ZERO));
    pg.init_on_alloc = false;
    assert!(!pg.alloc_pages(GFP_KERNEL, 0, 0).expect("k").init);
    assert!(
        pg.alloc_pages(GFP_KERNEL | __GFP_ZERO, 0, 0)
            .expect("k")
            .init
    );
    check_node(&pg).expect("consistent");
}

#[test]
fn user_pages_spill_into_lowmem_but_not_past_the_lowmem_reserve() {
    let mut pg = boot(1);
    let reserve_normal =
        pg.zone(ZoneType::Normal).lowmem_reserve[ZoneType::Movable as usize] as u64;
    let reserve_dma = pg.zone(ZoneType::Dma).lowmem_reserve[ZoneType::Movable as usize] as u64;
    assert_eq!(
        reserve_normal,
        pg.zone(ZoneType::HighMem).managed_pages / 32
    );
    let mut n = 0u64;
    let failure = loop {
        match pg.alloc_pages(GFP_HIGHUSER_MOVABLE | __GFP_RETRY_MAYFAIL, 0, 0) {
            Ok(_) => n += 1,
            Err(f) => break f,
        }
    };
    assert!(
        n > pg.zone(ZoneType::HighMem).managed_pages,
        "lowmem was used once highmem ran out"
    );
    assert!(free_pages(&pg, ZoneType::Normal) > reserve_normal);
    assert!(free_pages(&pg, ZoneType::Dma) > reserve_dma);
    assert!(free_pages(&pg, ZoneType::HighMem) <= pg.zone(ZoneType::HighMem).min_wmark_pages());
    // A kernel allocation still finds lowmem: the reserve was for exactly that.
    assert_eq!(
        pg.alloc_pages(GFP_KERNEL, 0, 0).expect("kernel").zone,
        ZoneType::Normal
    );

    assert_eq!(failure.kind, AllocFailureKind::NoMemory);
    let r = &failure.report;
    assert_eq!(
        r[0],
        "tester: page allocation failure: order:0, mode:0x104cca(GFP_HIGHUSER_MOVABLE|__GFP_RETRY_MAYFAIL), \
         nodemask=(null),cpuset=/,mems_allowed=0"
    );
    assert_eq!(r[1], "Mem-Info:");
    assert!(r[2].starts_with("active_anon:0 inactive_anon:0 isolated_anon:0"));
    let zone_line = |name: &str| {
        r.iter()
            .find(|l| l.starts_with(&format!("{name} free:")))
            .cloned()
    };
    let normal = zone_line("Normal").expect("Normal line");
    let nf = failure_free(&normal);
    let buddy_line = r
        .iter()
        .find(|l| l.starts_with("Normal: "))
        .expect("order line");
    assert!(buddy_line.ends_with(&format!("= {nf}kB")), "{buddy_line}");
    assert!(
        zone_line("HighMem").is_some(),
        "HighMem is below gfp_zone(GFP_HIGHUSER_MOVABLE)"
    );
    assert!(r.iter().any(|l| l.starts_with("lowmem_reserve[]: 0 ")));
    assert!(r.iter().any(|l| l.ends_with("hugepages_size=2048kB")));
    let ram = r
        .iter()
        .find(|l| l.ends_with(" pages RAM"))
        .expect("RAM line");
    assert_eq!(ram, &format!("{} pages RAM", pg.node_present_pages));
    assert_eq!(r.last().map(String::as_str), Some("0 pages hwpoisoned"));
    check_node(&pg).expect("consistent");
}

fn failure_free(line: &str) -> u64 {
    line.split_once(" free:")
        .and_then(|(_, r)| r.split_once("kB"))
        .and_then(|(n, _)| n.parse().ok())
        .expect("free:NkB")
}

#[test]
fn dma_failures_report_only_the_dma_zone_and_nowarn_is_silent() {
    let mut pg = boot(1);
    let f = loop {
        if let Err(f) = pg.alloc_pages(GFP_NOWAIT | GFP_DMA, 0, 0) {
            break f;
        }
    };
    assert_eq!(f.kind, AllocFailureKind::NoMemory);
    assert!(
        f.report[0].contains("mode:0x801(GFP_NOWAIT|GFP_DMA)"),
        "{}",
        f.report[0]
    );
    assert!(f.report.iter().any(|l| l.starts_with("DMA free:")));
    assert!(!f.report.iter().any(|l| l.starts_with("Normal free:")));
    let quiet = pg
        .alloc_pages(GFP_NOWAIT | GFP_DMA | __GFP_NOWARN, 0, 0)
        .expect_err("still empty");
    assert!(quiet.report.is_empty());
    // GFP_KERNEL would invoke the OOM killer instead of reporting a failure.
    let k = loop {
        if let Err(f) = pg.alloc_pages(GFP_KERNEL | GFP_DMA, 0, 0) {
            break f;
        }
    };
    assert_eq!(
        k.kind,
        AllocFailureKind::NoMemory,
        "DMA-only requests never OOM-kill"
    );
    check_node(&pg).expect("consistent");
}

#[test]
fn a_high_order_atomic_allocation_under_pressure_reserves_a_pageblock() {
    let mut pg = boot(1);
    let mut held = Vec::new();
    // Drive Normal and DMA below their low watermarks (the fast path's limit).
    loop {
        let low_ok = |z: ZoneType| {
            let zone = pg.zone(z);
            zone.zone_watermark_ok(
                0,
                zone.low_wmark_pages(),
                ZoneType::Normal,
                Default::default(),
            )
        };
        if !low_ok(ZoneType::Normal) && !low_ok(ZoneType::Dma) {
            break;
        }
        held.push(pg.alloc_pages(GFP_KERNEL, 0, 0).expect("page"));
    }
    let a = pg
        .alloc_pages(GFP_ATOMIC, 2, 0)
        .expect("atomic order 2 from the reserves");
    let zone = pg.zone(a.zone);
    assert_eq!(zone.nr_reserved_highatomic, pg.pageblock_nr_pages());
    assert_eq!(
        zone.get_pageblock_migratetype(a.pfn.as_u64()),
        MigrateType::HighAtomic
    );
    check_node(&pg).expect("consistent");
    pg.__free_pages(a.pfn, 2, 0).expect("free");
    for h in held {
        pg.__free_pages(h.pfn, 0, 0).expect("free");
    }
    pg.drain_all_pages(None);
    check_node(&pg).expect("consistent");
}

#[test]
fn compound_pages_are_set_up_and_torn_down() {
    let mut pg = boot(1);
    let a = pg
        .alloc_pages(GFP_KERNEL | __GFP_COMP, 3, 0)
        .expect("compound");
    let p = a.pfn.as_u64();
    assert!(pg.mem_map[a.pfn].is_head());
    for t in p + 1..p + 8 {
        assert_eq!(pg.mem_map[Pfn::new(t)].compound_head_pfn(), Some(p));
    }
    assert_eq!(
        pg.mem_map[Pfn::new(p + 1)].lru_prev >> 8,
        3,
        "compound_order"
    );
    assert!(matches!(
        pg.__free_pages(Pfn::new(p + 1), 0, 0),
        Err(FreeError::TailPage(_))
    ));
    pg.__free_pages(a.pfn, 3, 0).expect("free");
    for t in p..p + 8 {
        assert!(!pg.mem_map[Pfn::new(t)].is_compound());
    }
    check_node(&pg).expect("consistent");
}

#[test]
fn a_second_reference_keeps_the_first_page_and_frees_the_rest() {
    let mut pg = boot(1);
    let a = pg.alloc_pages(GFP_KERNEL, 2, 0).expect("order 2");
    pg.mem_map[a.pfn].get();
    let before = free_pages(&pg, a.zone) + pg.zone(a.zone).pcp_count();
    pg.__free_pages(a.pfn, 2, 0).expect("put");
    assert_eq!(
        free_pages(&pg, a.zone) + pg.zone(a.zone).pcp_count(),
        before + 3
    );
    assert_eq!(pg.mem_map[a.pfn].refcount, 1);
    pg.__free_pages(a.pfn, 0, 0).expect("last reference");
    check_node(&pg).expect("consistent");
}

#[test]
fn bad_pages_are_reported_and_leaked() {
    let mut pg = boot(1);
    let a = pg.alloc_pages(GFP_KERNEL, 1, 0).expect("order 1");
    pg.mem_map[Pfn::new(a.pfn.as_u64() + 1)].set(PageFlags::LRU);
    let e = pg.__free_pages(a.pfn, 1, 0).expect_err("bad tail page");
    assert!(matches!(
        e,
        FreeError::BadPageState {
            reason: "PAGE_FLAGS_CHECK_AT_FREE flag(s) set",
            ..
        }
    ));
    let bug = format!(
        "BUG: Bad page state in process tester  pfn:{:05x}",
        a.pfn.as_u64() + 1
    );
    assert!(pg.kmsg.contains(&bug), "{:?}", pg.kmsg);

    // An order-0 page is only checked when the pcp list gives it back to the buddy lists.
    pg.take_kmsg();
    let b = pg.alloc_pages(GFP_KERNEL, 0, 0).expect("order 0");
    pg.mem_map[b.pfn].mapping = 0x1000;
    let held = |pg: &PgData| free_pages(pg, b.zone) + pg.zone(b.zone).pcp_count();
    let before = held(&pg);
    pg.__free_pages(b.pfn, 0, 0)
        .expect("queued on the pcp list");
    assert_eq!(held(&pg), before + 1);
    pg.drain_all_pages(None);
    assert!(pg
        .kmsg
        .iter()
        .any(|l| l == "page dumped because: non-NULL mapping"));
    assert_eq!(held(&pg), before, "the page was leaked, not freed");
    assert!(!pg.mem_map[b.pfn].is_buddy());
    check_node(&pg).expect("the leaked page is simply not free");
}

#[test]
fn invalid_frees_and_requests_are_refused() {
    let mut pg = boot(1);
    let a = pg.alloc_pages(GFP_KERNEL, 2, 0).expect("page");
    assert_eq!(pg.__free_pages(a.pfn, 2, 7), Err(FreeError::BadCpu(7)));
    assert_eq!(pg.__free_pages(a.pfn, 11, 0), Err(FreeError::BadOrder(11)));
    assert!(matches!(
        pg.__free_pages(Pfn::new(a.pfn.as_u64() + 1), 2, 0),
        Err(FreeError::Misaligned { .. })
    ));
    assert!(matches!(
        pg.__free_pages(Pfn::new(1 << 24), 0, 0),
        Err(FreeError::OutOfRange(_))
    ));
    pg.__free_pages(a.pfn, 2, 0).expect("free");
    assert_eq!(
        pg.__free_pages(a.pfn, 2, 0),
        Err(FreeError::AlreadyFree(a.pfn))
    );
    assert_eq!(
        pg.alloc_pages(GFP_KERNEL, 11, 0).expect_err("order").kind,
        AllocFailureKind::BadOrder
    );
    assert_eq!(
        pg.alloc_pages(GFP_KERNEL, 0, 3).expect_err("cpu").kind,
        AllocFailureKind::BadCpu
    );
    check_node(&pg).expect("consistent");
}
