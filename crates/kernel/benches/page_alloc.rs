//! Page allocator throughput: order-0 traffic through the pcp lists, a mixed-order workload
//! over the buddy lists, and the same sequences on `buddy_system_allocator`'s
//! `FrameAllocator` as a yardstick (a plain buddy allocator without zones, watermarks,
//! migrate types or per-CPU lists), and the allocator's share of a 4 GiB boot.

use std::collections::VecDeque;

use buddy_system_allocator::FrameAllocator;
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use kernel::gfp::{Gfp, __GFP_BITS_MASK, GFP_HIGHUSER_MOVABLE, GFP_KERNEL};
use kernel::mmzone::PgData;
use kernel::page_alloc::NodeConfig;
use machine::Pfn;

const END_PFN: u64 = 262_144; // a 1 GiB PAE machine
const MAX_LOW_PFN: u64 = 225_278;

fn node() -> PgData {
    let memory = vec![(1, 159), (256, END_PFN)];
    let cfg = NodeConfig {
        max_zone_pfn: [4096, MAX_LOW_PFN, END_PFN, 0],
        memory: memory.clone(),
        nr_cpus: 2,
        pageblock_order: 9,
        thp: true,
        zone_model: kernel::mmzone::ZoneModel::I386,
        dma_reserve: 0,
    };
    let (mut pg, _) = PgData::new(&cfg).expect("node");
    pg.build_all_zonelists();
    pg.mem_init_free(&memory, &[], MAX_LOW_PFN).expect("boot");
    pg.setup_per_cpu_pageset();
    pg.init_per_zone_wmark_min();
    pg.gfp_allowed_mask = __GFP_BITS_MASK;
    pg
}

/// A fixed pseudo-random order sequence, mostly small orders like real traffic.
fn orders(n: usize) -> Vec<u32> {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            match x % 16 {
                0..=7 => 0,
                8..=10 => (x >> 8) as u32 % 4,
                11..=14 => 4 + (x >> 8) as u32 % 5,
                _ => 9 + (x >> 8) as u32 % 2,
            }
        })
        .collect()
}

fn frame_allocator() -> FrameAllocator<32> {
    let mut fa = FrameAllocator::<32>::new();
    fa.add_frame(1, 159);
    fa.add_frame(256, END_PFN as usize);
    fa
}

fn order0(c: &mut Criterion) {
    let mut g = c.benchmark_group("order0_alloc_free");
    let mut pg = node();
    g.bench_function("page_alloc_pcp", |b| {
        b.iter(|| {
            let a = pg.alloc_pages(black_box(GFP_KERNEL), 0, 0).expect("page");
            pg.__free_pages(a.pfn, 0, 0).expect("free");
        })
    });
    let mut pg = node();
    let mut held: Vec<Pfn> = Vec::with_capacity(256);
    g.bench_function("page_alloc_pcp_256_then_free", |b| {
        b.iter(|| {
            for _ in 0..256 {
                held.push(
                    pg.alloc_pages(black_box(GFP_HIGHUSER_MOVABLE), 0, 1)
                        .expect("page")
                        .pfn,
                );
            }
            for p in held.drain(..) {
                pg.__free_pages(p, 0, 1).expect("free");
            }
        })
    });
    // The hotpaths `pcp-order0` sequence: a ring of 16 live user pages, each iteration
    // allocates one and frees the oldest.
    let mut pg = node();
    let mut ring: Vec<Pfn> = (0..16)
        .map(|_| {
            pg.alloc_pages(GFP_HIGHUSER_MOVABLE, 0, 0)
                .expect("page")
                .pfn
        })
        .collect();
    let mut i = 0usize;
    g.bench_function("page_alloc_pcp_window16", |b| {
        b.iter(|| {
            let a = pg
                .alloc_pages(black_box(GFP_HIGHUSER_MOVABLE), 0, 0)
                .expect("page");
            let slot = &mut ring[i % 16];
            pg.__free_pages(*slot, 0, 0).expect("free");
            *slot = a.pfn;
            i += 1;
        })
    });
    let mut fa = frame_allocator();
    g.bench_function("frame_allocator", |b| {
        b.iter(|| {
            let f = fa.alloc(black_box(1)).expect("frame");
            fa.dealloc(f, 1);
        })
    });
    let mut fa = frame_allocator();
    let mut fring: Vec<usize> = (0..16).map(|_| fa.alloc(1).expect("frame")).collect();
    let mut j = 0usize;
    g.bench_function("frame_allocator_window16", |b| {
        b.iter(|| {
            let f = fa.alloc(black_box(1)).expect("frame");
            let slot = &mut fring[j % 16];
            fa.dealloc(*slot, 1);
            *slot = f;
            j += 1;
        })
    });
    let mut fa = frame_allocator();
    let mut held: Vec<usize> = Vec::with_capacity(256);
    g.bench_function("frame_allocator_256_then_free", |b| {
        b.iter(|| {
            for _ in 0..256 {
                held.push(fa.alloc(black_box(1)).expect("frame"));
            }
            for f in held.drain(..) {
                fa.dealloc(f, 1);
            }
        })
    });
    g.finish();
}

/// Steady state with a window of 64 live blocks: each step frees the oldest block and
/// allocates the next order of the sequence.
fn mixed(c: &mut Criterion) {
    let seq = orders(4096);
    let mut g = c.benchmark_group("mixed_orders_0_10");
    let mut pg = node();
    let mut live: VecDeque<(Pfn, u32)> = VecDeque::with_capacity(65);
    let gfps = [
        GFP_KERNEL,
        GFP_HIGHUSER_MOVABLE,
        Gfp::from_bits_retain(GFP_KERNEL.bits() | Gfp::RECLAIMABLE.bits()),
    ];
    let mut i = 0usize;
    g.bench_function("page_alloc", |b| {
        b.iter(|| {
            let order = seq[i % seq.len()];
            let gfp = gfps[i % gfps.len()];
            i += 1;
            if live.len() == 64 {
                if let Some((p, o)) = live.pop_front() {
                    pg.__free_pages(p, o, 0).expect("free");
                }
            }
            if let Ok(a) = pg.alloc_pages(gfp, order, 0) {
                live.push_back((a.pfn, order));
            }
        })
    });
    let mut fa = frame_allocator();
    let mut flive: VecDeque<(usize, usize)> = VecDeque::with_capacity(65);
    let mut j = 0usize;
    g.bench_function("frame_allocator", |b| {
        b.iter(|| {
            let count = 1usize << seq[j % seq.len()];
            j += 1;
            if flive.len() == 64 {
                if let Some((f, n)) = flive.pop_front() {
                    fa.dealloc(f, n);
                }
            }
            if let Some(f) = fa.alloc(count) {
                flive.push_back((f, count));
            }
        })
    });
    g.finish();
}

/// The allocator's share of a 4 GiB PAE boot: `free_area_init` (mem_map written once) and
/// `mem_init`'s frees (highmem as block frees, lowmem in blocks).
fn boot(c: &mut Criterion) {
    const END: u64 = 1 << 20;
    let mut g = c.benchmark_group("boot");
    g.sample_size(10);
    g.bench_function("free_area_init_and_mem_init_4g", |b| {
        b.iter(|| {
            let memory = vec![(1, 159), (256, END)];
            let cfg = NodeConfig {
                max_zone_pfn: [4096, MAX_LOW_PFN, END, 0],
                memory: memory.clone(),
                nr_cpus: 2,
                pageblock_order: 9,
                thp: true,
                zone_model: kernel::mmzone::ZoneModel::I386,
                dma_reserve: 0,
            };
            let (mut pg, _) = PgData::new(&cfg).expect("node");
            pg.build_all_zonelists();
            pg.mem_init_free(&memory, &[], MAX_LOW_PFN).expect("boot");
            black_box(pg.nr_free_pages())
        })
    });
    g.finish();
}

criterion_group!(benches, order0, mixed, boot);
criterion_main!(benches);
