//! The x86_64 zone numbering: DMA, DMA32, Normal, Movable, no high memory. The same buddy
//! allocator serves both architectures; what a zone number means (and which zone a GFP mask
//! reaches) comes from the node's `ZoneModel`. A small machine keeps the structure of a
//! pc with RAM above 4 GiB: DMA below 16 MiB, DMA32 up to the PCI hole, Normal above 4 GiB.

use kernel::debug_vm::check_node;
use kernel::gfp::{Gfp, __GFP_DMA32, GFP_HIGHUSER, GFP_HIGHUSER_MOVABLE, GFP_KERNEL};
use kernel::mmzone::{PgData, ZoneModel, ZoneType};
use kernel::page_alloc::NodeConfig;

const DMA_END: u64 = 4096;
const DMA32_END: u64 = 1 << 20;
/// RAM: 3 GiB below the hole (as QEMU's pc puts it), 64 MiB above 4 GiB.
const MEMORY: [(u64, u64); 3] = [(1, 0x9f), (0x100, 0xbffe0), (DMA32_END, DMA32_END + 0x4000)];

fn node64() -> (PgData, Vec<String>) {
    let end = MEMORY[2].1;
    let cfg = NodeConfig {
        max_zone_pfn: [DMA_END, DMA32_END, end, 0],
        memory: MEMORY.to_vec(),
        nr_cpus: 1,
        pageblock_order: 9,
        thp: true,
        zone_model: ZoneModel::X86_64,
        dma_reserve: 0,
    };
    let (mut pg, log) = PgData::new(&cfg).expect("node");
    pg.mem_init_free(&MEMORY, &[], end).expect("frees");
    pg.build_all_zonelists();
    pg.setup_per_cpu_pageset();
    pg.init_per_zone_wmark_min();
    (pg, log)
}

#[test]
fn zone_ranges_are_the_64_bit_kernels() {
    let (pg, log) = node64();
    let ranges: Vec<&str> = log.iter().map(String::as_str).take(6).collect();
    assert_eq!(
        ranges,
        [
            "Zone ranges:",
            "  DMA      [mem 0x0000000000001000-0x0000000000ffffff]",
            "  DMA32    [mem 0x0000000001000000-0x00000000ffffffff]",
            "  Normal   [mem 0x0000000100000000-0x0000000103ffffff]",
            "  Device   empty",
            "Movable zone start for each node",
        ]
    );
    let names: Vec<&str> = pg.zones().iter().map(|z| z.name).collect();
    assert_eq!(names, ["DMA", "DMA32", "Normal", "Movable", "Device"]);
    // Device (like Movable without kernelcore=) is empty; its protection entry repeats
    // Movable's, as setup_per_zone_lowmem_reserve sums no pages for it.
    let device = pg.zone(ZoneType::Device);
    assert_eq!((device.spanned_pages, device.managed_pages), (0, 0));
    let dma = pg.zone(ZoneType::Dma);
    assert_eq!(dma.lowmem_reserve[4], dma.lowmem_reserve[3]);
    assert!(dma.lowmem_reserve[4] > 0);
    assert_eq!(pg.totalhigh_pages, 0, "no page is high memory");
    assert!(ZoneType::ALL.iter().all(|&z| !pg.is_highmem(z)));
    let present: u64 = MEMORY.iter().map(|(s, e)| e - s).sum();
    assert_eq!(pg.totalram_pages, present, "every page freed is managed");
}

#[test]
fn masks_reach_the_zones_the_64_bit_table_names() {
    let (pg, _) = node64();
    // __GFP_HIGHMEM means ZONE_NORMAL without HIGHMEM; with __GFP_MOVABLE it means
    // ZONE_MOVABLE, which is empty here, so the zonelist starts at Normal anyway.
    assert_eq!(pg.zone_model.name(pg.gfp_zone(GFP_HIGHUSER)), "Normal");
    assert_eq!(
        pg.zone_model.name(pg.gfp_zone(GFP_HIGHUSER_MOVABLE)),
        "Movable"
    );
    assert_eq!(pg.zone_model.name(pg.gfp_zone(GFP_KERNEL)), "Normal");
    assert_eq!(
        pg.zone_model.name(pg.gfp_zone(GFP_KERNEL | __GFP_DMA32)),
        "DMA32"
    );
    assert_eq!(
        pg.zone_model.name(pg.gfp_zone(GFP_KERNEL | Gfp::DMA)),
        "DMA"
    );
    // i386 reads the same masks differently.
    let i386 = ZoneModel::I386;
    assert_eq!(i386.name(kernel::gfp::gfp_zone(GFP_HIGHUSER)), "HighMem");
    assert_eq!(
        i386.name(kernel::gfp::gfp_zone(GFP_KERNEL | __GFP_DMA32)),
        "Normal"
    );
}

#[test]
fn user_pages_fill_normal_then_fall_back_to_dma32() {
    let (mut pg, _) = node64();
    let normal = ZoneType::HighMem; // zone number 2: ZONE_NORMAL on x86_64
    let mut zones = Vec::new();
    let mut n = 0u64;
    while let Ok(p) = pg.alloc_pages(GFP_HIGHUSER_MOVABLE | Gfp::NOWARN, 0, 0) {
        if zones.last() != Some(&p.zone) {
            zones.push(p.zone);
        }
        n += 1;
        if p.zone == ZoneType::Dma {
            break;
        }
        if n > 300_000 {
            break;
        }
    }
    assert_eq!(
        zones[..2],
        [normal, ZoneType::Normal],
        "Normal first, then DMA32"
    );
    // Normal gives all but its watermark before the fallback.
    assert!(n > 0x4000 - 2048, "{n} pages before falling back");
    check_node(&pg).expect("the free lists and counters agree");
}

#[test]
fn dma32_allocations_never_take_normal_pages() {
    let (mut pg, _) = node64();
    for _ in 0..1000 {
        let p = pg
            .alloc_pages(GFP_KERNEL | __GFP_DMA32, 0, 0)
            .expect("page");
        assert!(p.pfn.as_u64() < DMA32_END, "{:#x}", p.pfn.as_u64());
        assert_eq!(pg.zone_model.name(p.zone), "DMA32");
    }
}
