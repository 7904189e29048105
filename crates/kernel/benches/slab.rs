//! SLUB throughput on a booted 1 GiB PAE machine: kmalloc(64) + kfree on one CPU (the
//! lockless fast path both ways), a ring of 64 live objects of mixed sizes (CPU slab
//! turnover, partial lists, new slabs), and kmem_cache_alloc/free of task_struct (order-3
//! slabs).

use std::collections::VecDeque;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use kernel::config::KernelConfig;
use kernel::gfp::GFP_KERNEL;
use kernel::{boot, BootOptions, Kernel};

fn booted() -> Kernel {
    let cfg = KernelConfig::preset("debian-686-pae").expect("preset");
    boot(&BootOptions::new(1 << 30, 1, cfg)).expect("boot")
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("slab");
    let mut k = booted();
    g.bench_function("kmalloc64_kfree", |b| {
        b.iter(|| {
            let va = k.kmalloc(black_box(64), GFP_KERNEL, 0).expect("kmalloc");
            k.kfree(va, 0).expect("kfree");
        })
    });
    let mut ring = VecDeque::new();
    let mut x: u32 = 0x9e37_79b9;
    g.bench_function("mixed_sizes_window64", |b| {
        b.iter(|| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let size = 8 + (x as usize % 2048);
            ring.push_back(k.kmalloc(size, GFP_KERNEL, 0).expect("kmalloc"));
            if ring.len() > 64 {
                let va = ring.pop_front().expect("live");
                k.kfree(va, 0).expect("kfree");
            }
        })
    });
    let task = k.slab.find_cache("task_struct").expect("task_struct");
    g.bench_function("task_struct_alloc_free", |b| {
        b.iter(|| {
            let va = k.kmem_cache_alloc(task, GFP_KERNEL, 0).expect("alloc");
            k.kmem_cache_free(task, va, 0).expect("free");
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
