//! kswapd and kcompactd on a node with nothing to reclaim: a steal's watermark boost is
//! taken back by one run (one failure, kcompactd asked for pageblock order); low memory
//! running out makes kswapd spin to MAX_RECLAIM_RETRIES failures, after which the node is
//! hopeless and kswapd is not woken again.

use kernel::gfp::*;
use kernel::mmzone::{PgData, ZoneType};
use kernel::page_alloc::NodeConfig;
use kernel::vmstat::VmEventItem;

/// DMA, a Normal zone of ~16k pages and a HighMem zone of 70k pages, one CPU, kswapd and
/// kcompactd started.
fn boot() -> PgData {
    let cfg = NodeConfig {
        max_zone_pfn: [4096, 20_000, 90_000, 0],
        memory: vec![(1, 159), (256, 90_000)],
        nr_cpus: 1,
        pageblock_order: 9,
        thp: true,
        zone_model: kernel::mmzone::ZoneModel::I386,
        dma_reserve: 0,
    };
    let (mut pg, _) = PgData::new(&cfg).expect("node");
    pg.build_all_zonelists();
    pg.mem_init_free(&[(1, 159), (256, 90_000)], &[], 20_000)
        .expect("boot");
    pg.setup_per_cpu_pageset();
    pg.init_per_zone_wmark_min();
    pg.gfp_allowed_mask = __GFP_BITS_MASK;
    pg.reclaimd.running = true;
    pg
}

fn events(pg: &PgData) -> [u64; 3] {
    [
        pg.vm_events[VmEventItem::Pageoutrun],
        pg.vm_events[VmEventItem::KswapdHighWmarkHitQuickly],
        pg.vm_events[VmEventItem::KcompactdWake],
    ]
}

#[test]
fn a_boosted_zone_gets_its_boost_back_from_one_kswapd_run() {
    let mut pg = boot();
    let z = pg.zone_mut_ref(ZoneType::Normal);
    z.watermark_boost = 512;
    z.flags.boosted_watermark = true;
    pg.alloc_pages(GFP_KERNEL, 0, 0).expect("page");
    assert_eq!(pg.zone(ZoneType::Normal).watermark_boost, 0);
    // Boosted reclaim found nothing: one failure; the node is balanced, so kswapd sleeps,
    // and kcompactd was asked for pageblock order.
    assert_eq!(pg.kswapd_failures, 1);
    assert_eq!(events(&pg), [1, 0, 1]);
}

#[test]
fn before_kswapd_starts_a_boost_stays() {
    let mut pg = boot();
    pg.reclaimd.running = false;
    let z = pg.zone_mut_ref(ZoneType::Normal);
    z.watermark_boost = 512;
    z.flags.boosted_watermark = true;
    pg.alloc_pages(GFP_KERNEL, 0, 0).expect("page");
    assert_eq!(pg.zone(ZoneType::Normal).watermark_boost, 512);
    assert_eq!((pg.kswapd_failures, events(&pg)), (0, [0, 0, 0]));
}

#[test]
fn low_memory_running_out_makes_the_node_hopeless() {
    let mut pg = boot();
    let mut held = Vec::new();
    while let Ok(a) = pg.alloc_pages(GFP_KERNEL | Gfp::NORETRY, 0, 0) {
        held.push(a.pfn);
    }
    // Every run on the imbalanced node failed; kswapd went round again until the 16th.
    assert_eq!(pg.kswapd_failures, 16);
    assert_eq!(events(&pg), [16, 15, 0]);
    // Hopeless: memory coming back does not wake it again, nor does running out again.
    for pfn in held.drain(..).take(64) {
        pg.__free_pages(pfn, 0, 0).expect("free");
    }
    while pg.alloc_pages(GFP_KERNEL | Gfp::NORETRY, 0, 0).is_ok() {}
    assert_eq!(events(&pg), [16, 15, 0]);
}
