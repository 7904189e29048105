//! Criterion benches of the kmap hot paths (see BENCHMARKS.md for instruction counts).

use criterion::{criterion_group, criterion_main, Criterion};
use kernel::config::KernelConfig;
use kernel::gfp::GFP_HIGHUSER;
use kernel::sched::Blocking;
use kernel::{boot, BootOptions, Kernel};
use std::hint::black_box;

fn booted() -> (Kernel, machine::Pfn) {
    let cfg = KernelConfig::preset("debian-686-pae").expect("preset");
    let mut opts = BootOptions::new(2 << 30, 2, cfg);
    opts.runtime_profile = false;
    let mut k = boot(&opts).expect("boot");
    let pfn = k.alloc_pages(GFP_HIGHUSER, 0, 0).expect("page").pfn;
    let t = k.sched.spawn("bench", 0);
    k.context_switch(0, t).expect("switch");
    (k, pfn)
}

fn kmap_paths(c: &mut Criterion) {
    let (mut k, pfn) = booted();
    c.bench_function("kmap_local_page+kunmap_local", |b| {
        b.iter(|| {
            let va = k.kmap_local_page(0, black_box(pfn)).expect("map");
            k.kunmap_local(0, va).expect("unmap");
        })
    });
    let (mut k, pfn) = booted();
    assert!(matches!(k.kmap(0, pfn), Ok(Blocking::Ready(_))));
    c.bench_function("kmap+kunmap (hit)", |b| {
        b.iter(|| {
            let r = k.kmap(0, black_box(pfn)).expect("kmap");
            black_box(r);
            k.kunmap(0, pfn).expect("kunmap");
        })
    });
}

criterion_group!(benches, kmap_paths);
criterion_main!(benches);
