//! Criterion benchmarks of the simulated MMU, TLB and physical memory.
//!
//! Every simulated memory access of the kernel model goes through `Cpu::translate`, so the
//! cost of a TLB hit, of a miss plus page walk, and of the flushes that cause misses
//! decides how fast the whole simulation runs. The `translate` and `copy_4k` groups use the
//! hardware TLB geometry (Core 2); the flush group keeps the default never-evicting one, so
//! that thousands of global entries really stay cached across the CR3 writes it times. The page tables are real entries in
//! simulated RAM (see `support`), in both 32-bit formats: 2-level (two 4-byte reads per
//! walk) and PAE (PDPTE registers, then two 8-byte reads). The physical-memory benches show
//! what a 64 GiB machine costs the host: reserving it is one mmap, and each frame costs a
//! host page fault the first time it is touched.
//!
//! Settings are kept short (1 s warm-up, 2 s measurement) so `cargo bench -p machine`
//! finishes in about a minute; pass criterion flags after `--` for longer runs.

mod support;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use machine::e820::E820Map;
use machine::mmu::Access;
use machine::paging::Format;
use machine::{PhysAddr, PhysMem, TlbGeometry, VirtAddr, PAGE_SIZE};
use std::hint::black_box;
use std::time::{Duration, Instant};
use support::{Fixture, KERNEL_BASE, KERNEL_GLOBAL, KERNEL_PAGE, USER_BASE, USER_PAGE};

const FORMATS: [(Format, &str); 2] = [(Format::TwoLevel, "2level"), (Format::Pae, "pae")];
const GIB: u64 = 1 << 30;

/// A fixture with one kernel page at [`KERNEL_BASE`] mapped to the format's data frame, on
/// a CPU with the hardware (Core 2) TLB geometry.
fn one_page(format: Format) -> Fixture {
    let mut f = Fixture::new(format);
    f.m.cpus[0].set_tlb_geometry(TlbGeometry::Core2);
    let pa = f.data_frame();
    f.map_4k(KERNEL_BASE, pa, KERNEL_PAGE);
    f
}

/// Make sure the benches measure what they claim: a translation is cached after a walk,
/// and both INVLPG and a CR3 write of a non-global page force the next access to walk.
fn check_miss_paths(f: &mut Fixture, va: VirtAddr) {
    let walks = |f: &Fixture| f.m.cpus[0].counters().walks;
    let root = f.root();
    let w0 = walks(f);
    f.m.translate(0, va, Access::KERNEL_READ).expect("mapped");
    f.m.translate(0, va, Access::KERNEL_READ).expect("mapped");
    assert_eq!(walks(f), w0 + 1, "second access hits the TLB");
    f.m.invlpg(0, va).expect("cpu 0");
    f.m.translate(0, va, Access::KERNEL_READ).expect("mapped");
    assert_eq!(walks(f), w0 + 2, "INVLPG forces a walk");
    f.m.write_cr3(0, root).expect("cr3");
    let pa = f.m.translate(0, va, Access::KERNEL_READ).expect("mapped");
    assert_eq!(walks(f), w0 + 3, "CR3 write forces a walk");
    assert_eq!(pa.as_u64(), f.data_frame() + va.page_offset());
}

fn translate(c: &mut Criterion) {
    let mut g = c.benchmark_group("translate");
    let va = VirtAddr::new(KERNEL_BASE + 0x123);
    for (format, name) in FORMATS {
        let mut f = one_page(format);
        check_miss_paths(&mut f, va);
        f.m.translate(0, va, Access::KERNEL_READ).expect("mapped");
        g.bench_function(BenchmarkId::new("tlb_hit", name), |b| {
            b.iter(|| f.m.translate(0, black_box(va), Access::KERNEL_READ))
        });

        // The walk alone, as the MMU does it on a miss (A/D already set: reads only).
        let mode = *f.m.cpus[0].paging_mode().expect("paging on");
        g.bench_function(BenchmarkId::new("walk_only", name), |b| {
            b.iter(|| mode.walk(&mut f.m.mem, black_box(va), Access::KERNEL_READ))
        });

        g.bench_function(BenchmarkId::new("miss_after_invlpg", name), |b| {
            b.iter(|| {
                f.m.invlpg(0, va).expect("cpu 0");
                f.m.translate(0, black_box(va), Access::KERNEL_READ)
            })
        });

        let root = f.root();
        g.bench_function(BenchmarkId::new("miss_after_cr3_reload", name), |b| {
            b.iter(|| {
                f.m.write_cr3(0, root).expect("cr3");
                f.m.translate(0, black_box(va), Access::KERNEL_READ)
            })
        });
    }
    g.finish();
}

fn copy(c: &mut Criterion) {
    let mut g = c.benchmark_group("copy_4k");
    g.throughput(Throughput::Bytes(PAGE_SIZE));
    let va = VirtAddr::new(KERNEL_BASE);
    for (format, name) in FORMATS {
        let mut f = one_page(format);
        let mut buf = vec![0x5au8; PAGE_SIZE as usize];
        f.m.write_virt(0, va, &buf).expect("mapped");
        g.bench_function(BenchmarkId::new("read_virt", name), |b| {
            b.iter(|| f.m.read_virt(0, black_box(va), black_box(&mut buf)))
        });
        g.bench_function(BenchmarkId::new("write_virt", name), |b| {
            b.iter(|| f.m.write_virt(0, black_box(va), black_box(&buf)))
        });
    }
    g.finish();
}

/// Entries the flush benches put in the TLB before each timed flush.
const INVLPG_BATCH: u64 = 512;
/// Non-global (user) entries present at each CR3 write.
const USER_ENTRIES: u64 = 64;

fn flushes(c: &mut Criterion) {
    let mut g = c.benchmark_group("tlb_flush");
    // Each timed flush needs several times its cost in untimed TLB refills, so this group
    // gets shorter timings to keep the whole run near a minute.
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(1));

    // INVLPG of a cached page: fill the TLB (untimed), then time the INVLPGs.
    let mut f = Fixture::new(Format::Pae);
    f.map_range(KERNEL_BASE, support::DATA_BASE, INVLPG_BATCH, KERNEL_PAGE);
    g.bench_function("invlpg_cached_pae", |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let n = left.min(INVLPG_BATCH);
                for i in 0..n {
                    let va = VirtAddr::new(KERNEL_BASE + i * PAGE_SIZE);
                    f.m.translate(0, va, Access::KERNEL_READ).expect("mapped");
                }
                let start = Instant::now();
                for i in 0..n {
                    f.m.invlpg(0, black_box(VirtAddr::new(KERNEL_BASE + i * PAGE_SIZE)))
                        .expect("cpu 0");
                }
                spent += start.elapsed();
                left -= n;
            }
            spent
        })
    });

    // CR3 write with N global kernel entries cached, plus USER_ENTRIES user entries that
    // the write drops (refilled untimed before each write).
    for globals in [0u64, 512, 8192] {
        let mut f = Fixture::new(Format::Pae);
        f.map_range(KERNEL_BASE, support::DATA_BASE, globals, KERNEL_GLOBAL);
        f.map_range(USER_BASE, support::DATA_BASE, USER_ENTRIES, USER_PAGE);
        for i in 0..globals {
            let va = VirtAddr::new(KERNEL_BASE + i * PAGE_SIZE);
            f.m.translate(0, va, Access::KERNEL_READ).expect("mapped");
        }
        let root = f.root();
        g.bench_function(BenchmarkId::new("cr3_reload_pae_globals", globals), |b| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    for i in 0..USER_ENTRIES {
                        let va = VirtAddr::new(USER_BASE + i * PAGE_SIZE);
                        f.m.translate(0, va, Access::KERNEL_READ).expect("mapped");
                    }
                    let start = Instant::now();
                    f.m.write_cr3(0, black_box(root)).expect("cr3");
                    spent += start.elapsed();
                }
                assert_eq!(f.m.cpus[0].tlb().len() as u64, globals, "globals survive");
                spent
            })
        });
    }
    g.finish();
}

fn physmem(c: &mut Criterion) {
    let mut g = c.benchmark_group("physmem");
    let banks = E820Map::qemu_pc(64 * GIB)
        .expect("64 GiB is a valid pc machine")
        .ram_banks();

    // Reserving 64 GiB (and releasing it when dropped): address space only.
    g.bench_function("new_64g_qemu_pc", |b| {
        b.iter(|| PhysMem::new(black_box(&banks)).expect("reserve"))
    });

    // First write to a frame: a host page fault supplying a zeroed page. Scattered frames
    // are 1 GiB + 4 KiB apart above 4 GiB (each also needs new host page-table pages),
    // sequential ones adjacent. The RAM is re-reserved (untimed) every TOUCH_BATCH frames so
    // every touch is a first touch and the bench's own RSS stays small.
    const TOUCH_BATCH: u64 = 4096;
    // Frames in the first 60 GiB above 4 GiB (RAM there is 61 GiB on a 64 GiB pc).
    const HIGH_FRAMES: u64 = 60 * GIB / PAGE_SIZE;
    let high = banks.last().expect("banks").0.as_u64();
    for (name, stride) in [
        ("first_touch_scattered", GIB / PAGE_SIZE + 1),
        ("first_touch_sequential", 1),
    ] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let n = left.min(TOUCH_BATCH);
                    let mut mem = PhysMem::new(&banks).expect("reserve");
                    let start = Instant::now();
                    for i in 0..n {
                        let frame = (i * stride) % HIGH_FRAMES;
                        mem.write_u64(PhysAddr::new(high + frame * PAGE_SIZE), i)
                            .expect("ram");
                    }
                    spent += start.elapsed();
                    drop(black_box(mem));
                    left -= n;
                }
                spent
            })
        });
    }

    // The same write to a frame already backed by the host.
    let mut mem = PhysMem::new(&banks).expect("reserve");
    let pa = PhysAddr::new(high);
    mem.write_u64(pa, 1).expect("ram");
    g.bench_function("resident_write_u64", |b| {
        b.iter(|| mem.write_u64(black_box(pa), black_box(2)))
    });
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        // The default 100 000 bootstrap resamples cost about a second per bench on a busy
        // 2-core host; 10 000 give the same point estimates with slightly coarser intervals.
        .nresamples(10_000)
}

criterion_group! {
    name = benches;
    config = config();
    targets = translate, copy, flushes, physmem
}
criterion_main!(benches);
