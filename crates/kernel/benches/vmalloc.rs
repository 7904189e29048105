//! vmalloc throughput on a booted model: vmalloc(64 KiB) + vfree (the lazy purge included
//! at its natural rate), vmalloc_to_page over a mapped area, and vmap + vunmap of 16 pages.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use kernel::config::KernelConfig;
use kernel::gfp::GFP_HIGHUSER;
use kernel::{boot, BootOptions, Kernel};
use machine::{Pfn, PAGE_SIZE};

fn booted() -> Kernel {
    let cfg = KernelConfig::preset("debian-686-pae").expect("preset");
    let mut opts = BootOptions::new(1 << 30, 1, cfg);
    opts.runtime_profile = false;
    boot(&opts).expect("boot")
}

fn bench(c: &mut Criterion) {
    let mut k = booted();
    c.bench_function("vmalloc_64k_vfree", |b| {
        b.iter(|| {
            let a = k.vmalloc(64 << 10, 0).unwrap();
            k.vfree(black_box(a), 0).unwrap();
        })
    });
    let a = k.vmalloc(64 << 10, 0).unwrap();
    c.bench_function("vmalloc_to_page_16", |b| {
        b.iter(|| {
            let mut s = 0u64;
            for i in 0..16 {
                s += k.vmalloc_to_pfn(a + i * PAGE_SIZE, 0).unwrap().unwrap();
            }
            black_box(s)
        })
    });
    let pfns: Vec<Pfn> = (0..16)
        .map(|_| k.alloc_pages(GFP_HIGHUSER, 0, 0).unwrap().pfn)
        .collect();
    c.bench_function("vmap_vunmap_16", |b| {
        b.iter(|| {
            let v = k.vmap(&pfns, 0, 0).unwrap();
            k.vunmap(black_box(v), 0).unwrap();
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
