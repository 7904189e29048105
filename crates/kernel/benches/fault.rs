//! Criterion benches of a user page fault in each kernel design (issue 9): a child reads
//! every page of an attached SysV segment the parent populated, so each read is a TLB miss,
//! a walk that finds no PTE, a #PF, the design's fault path (its own way of mapping the
//! highmem PTE page: 6.1's kmap_atomic, 2.5's KM_PTE0, 2.4's pte_offset_atomic) and the
//! retried access; and the same on the 64-bit kernel (`x86_64`: a 4-level walk, the PTE page
//! in the direct map). Only the read loops are timed (`iter_custom`), not fork, attach or
//! exit; the time reported is per fault. Instruction counts: `hotpaths shm-read` (BENCHMARKS.md).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kernel::design::KernelDesign;
use kernel::mm::ProcId;
use kernel::variant::Variant;
use kernel::{boot, BootOptions, Kernel};
use std::time::{Duration, Instant};

/// The segment: 16 MiB, 4096 pages (eight PTE pages with PAE).
const SEG: u64 = 16 << 20;
const PAGES: u64 = SEG >> 12;

/// A 2 GiB machine of `variant` on `design` with a parent that attached and wrote every
/// page of the segment (so the children's faults find the page cache full).
fn booted(variant: Variant, design: KernelDesign) -> (Kernel, ProcId, u32) {
    let mut opts = BootOptions::new(2 << 30, 1, variant.config());
    opts.runtime_profile = false;
    opts.design = design;
    let mut k = boot(&opts).expect("boot");
    let init = k.exec_process(0, "init", 0).expect("init");
    let ipid = k.mm.procs[init.0].pid;
    let parent = k.exec_process(0, "bench", ipid).expect("parent");
    let id = k.shmget(0, SEG).expect("shmget");
    k.switch_to_process(0, parent).expect("switch");
    let addr = k.shmat(0, parent, id, false).expect("shmat");
    k.user_access_run(0, parent, addr, PAGES, true)
        .expect("populate");
    k.shmdt(0, parent, addr).expect("shmdt");
    (k, parent, id)
}

/// `iters` read faults, in children of `PAGES` faults at most; only the reads are timed.
fn read_faults(k: &mut Kernel, parent: ProcId, id: u32, iters: u64) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(PAGES);
        k.switch_to_process(0, parent).expect("parent");
        let child = k.fork(0, parent).expect("fork");
        k.switch_to_process(0, child).expect("child");
        let addr = k.shmat(0, child, id, true).expect("shmat");
        let (faults, kmaps) = (k.mm.counters.faults, k.mm.counters.pte_kmaps);
        let t = Instant::now();
        k.user_access_run(0, child, addr, n, false).expect("reads");
        total += t.elapsed();
        // Every read faulted, and every fault mapped its highmem PTE page (twice in 6.1);
        // the 64-bit kernel maps none.
        assert_eq!(k.mm.counters.faults - faults, n, "one fault per page");
        let highpte = k.userpte_alloc_gfp().contains(kernel::gfp::Gfp::HIGHMEM);
        assert_eq!(
            k.mm.counters.pte_kmaps - kmaps >= n,
            highpte,
            "PTE pages reached by a map"
        );
        k.exit_process(0, child).expect("exit");
        left -= n;
    }
    total
}

fn user_fault(c: &mut Criterion) {
    let mut g = c.benchmark_group("user_read_fault");
    g.throughput(Throughput::Elements(1));
    for design in KernelDesign::ALL {
        let (mut k, parent, id) = booted(Variant::Highmem64GHighpte, design);
        g.bench_function(design.name(), |b| {
            b.iter_custom(|iters| read_faults(&mut k, parent, id, iters))
        });
    }
    let (mut k, parent, id) = booted(Variant::X86_64, KernelDesign::Linux61);
    g.bench_function("x86_64", |b| {
        b.iter_custom(|iters| read_faults(&mut k, parent, id, iters))
    });
    g.finish();
}

criterion_group!(benches, user_fault);
criterion_main!(benches);
