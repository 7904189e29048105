//! The fault stream (`mm/fault_stream.rs`) against the generic path: the same shm workload
//! run with `mm.fault_stream` on and off, in every design and variant, both paging formats,
//! both TLB geometries, one and two CPUs, read / write / populate, must leave the same
//! machine and kernel: the program's output and /proc dumps, every counter, every task's
//! kmap stack and nesting counts, every CPU's registers, counters and TLB (its whole state
//! with the Core 2 geometry; every cached translation with the unbounded one, whose spill
//! store is a hash map) and every byte of RAM.

use kernel::design::KernelDesign;
use kernel::variant::Variant;
use kernel::workload::shmwork::{finish, run, Params, Touch};
use kernel::{boot, BootOptions, Kernel};
use machine::tlb::TlbGeometry;
use machine::{Pfn, VirtAddr};

/// One machine and workload.
#[derive(Clone, Debug)]
struct Case {
    design: KernelDesign,
    variant: Variant,
    cmdline: &'static str,
    tlb: TlbGeometry,
    cpus: u32,
    touch: Touch,
    seg_mib: u64,
    children: u32,
    ram_mib: u64,
}

fn booted(c: &Case, stream: bool) -> Kernel {
    let mut opts = BootOptions::new(c.ram_mib << 20, c.cpus, c.variant.config());
    opts.cmdline = c.cmdline.to_string();
    opts.design = c.design;
    let mut k = boot(&opts).expect("boot");
    for cpu in &mut k.machine.cpus {
        cpu.set_tlb_geometry(c.tlb);
    }
    k.mm.fault_stream = stream;
    k
}

/// Run the case; the kernel afterwards, with the program's output.
fn run_case(c: &Case, stream: bool) -> (Kernel, String) {
    let mut k = booted(c, stream);
    let prm = Params {
        size_mib: c.seg_mib,
        n: c.children,
        touch: c.touch,
        every: 2,
        timing: false,
        dumps: true,
        design: Some(c.design),
    };
    let mut out = String::new();
    let r = run(&mut k, &prm, &mut |l| {
        out.push_str(l);
        out.push('\n');
    });
    out.push_str(&format!("result: {r:?}\n"));
    (k, out)
}

/// Everything the kernel and the CPUs show, as text (hash maps sorted).
fn digest(k: &Kernel) -> Vec<(String, String)> {
    let mut d = Vec::new();
    let mut put = |what: &str, v: String| d.push((what.to_string(), v));
    for f in [
        "meminfo",
        "zoneinfo",
        "vmstat",
        "buddyinfo",
        "pagetypeinfo",
        "slabinfo",
        "vmallocinfo",
    ] {
        put(f, kernel::procfs::live::read(k, f).unwrap_or_default());
    }
    put("vm_events", format!("{:?}", k.node.vm_events));
    put("vm_stat", format!("{:?}", k.node.vm_stat));
    put("mm.counters", format!("{:?}", k.mm.counters));
    put("mm.procs", format!("{:?}", k.mm.procs));
    put("mm.shm", format!("{:?}", k.mm.shm));
    put("mm.shmem_zero", format!("{:?}", k.mm.shmem_zero));
    put("mm.kills", format!("{:?}", k.mm.kills));
    let mut refs: Vec<_> = k.mm.anon_refs.iter().collect();
    refs.sort();
    put("mm.anon_refs", format!("{refs:?}"));
    let mut bin: Vec<_> = k.mm.binary_pages.iter().map(|(a, b)| (*a, *b)).collect();
    bin.sort_by_key(|e| e.0);
    put("mm.binary_pages", format!("{bin:?}"));
    put("kmap_local", format!("{:?}", k.kmap_local));
    put("pkmap", format!("{:?}", k.hm.pkmap));
    put("hm.reports", format!("{:?}", k.hm.debug.reports));
    put("sched.tasks", format!("{:?}", k.sched.tasks));
    put("sched.counters", format!("{:?}", k.sched.counters));
    for (i, c) in k.sched.cpus.iter().enumerate() {
        put(
            &format!("sched.cpu{i}"),
            format!("{} {} {}", c.current.0, c.preempt_count, c.hardirq),
        );
    }
    put("log", format!("{:?}", k.log.lines()));
    let pages: Vec<String> = (0..k.node.mem_map.len() as u64)
        .map(|p| format!("{:?}", k.node.mem_map[Pfn::new(p)]))
        .collect();
    put("mem_map", pages.join(";"));
    for (i, cpu) in k.machine.cpus.iter().enumerate() {
        put(&format!("cpu{i}.regs"), format!("{:?}", cpu.regs()));
        put(&format!("cpu{i}.counters"), format!("{:?}", cpu.counters()));
        let tlb = cpu.tlb();
        put(
            &format!("cpu{i}.tlb"),
            format!("{} {} {}", tlb.len(), tlb.global_len(), tlb.evictions()),
        );
        if tlb.geometry() == TlbGeometry::Core2 {
            // No spill store: the whole TLB (ways, replacement state, front table).
            put(&format!("cpu{i}.tlb.state"), format!("{tlb:?}"));
        }
        // Every 4 KiB page of the 32-bit address space the TLB translates.
        let mut cached = String::new();
        for page in 0..(1u64 << 20) {
            if let Some(e) = cpu.tlb_lookup(VirtAddr::new(page << 12)) {
                cached.push_str(&format!("{page:x}:{e:?};"));
            }
        }
        put(&format!("cpu{i}.tlb.entries"), cached);
    }
    d
}

/// The first frame of RAM that differs, if any.
fn ram_differs(a: &Kernel, b: &Kernel) -> Option<u64> {
    let (ma, mb) = (a.machine.mem.monitor(), b.machine.mem.monitor());
    for bank in a.machine.mem.banks() {
        let first = bank.start.as_u64() >> 12;
        let last = (bank.start.as_u64() + bank.len) >> 12;
        for pfn in first..last {
            let fa = ma.frame(Pfn::new(pfn)).expect("RAM frame");
            let fb = mb.frame(Pfn::new(pfn)).expect("RAM frame");
            if fa != fb {
                return Some(pfn);
            }
        }
    }
    None
}

/// The comparison of case `c`: the program's output, and the pages the stream took in
/// fault runs.
fn compare(c: &Case) -> (String, u64) {
    let (mut on, out_on) = run_case(c, true);
    let (mut off, out_off) = run_case(c, false);
    assert_eq!(off.mm.fault_run_pages, 0, "{c:?}: runs without the stream");
    let runs = on.mm.fault_run_pages;
    assert_eq!(out_on, out_off, "{c:?}: the program's output");
    for (a, b) in digest(&on).into_iter().zip(digest(&off)) {
        assert!(a == b, "{c:?}: {} differs", a.0);
    }
    assert_eq!(
        ram_differs(&on, &off),
        None,
        "{c:?}: RAM differs at this pfn"
    );
    // And after every process exits.
    let r_on = finish(&mut on, &Default::default());
    let r_off = finish(&mut off, &Default::default());
    assert_eq!(format!("{r_on:?}"), format!("{r_off:?}"), "{c:?}: finish");
    for (a, b) in digest(&on).into_iter().zip(digest(&off)) {
        assert!(a == b, "{c:?}: after exit, {} differs", a.0);
    }
    assert_eq!(ram_differs(&on, &off), None, "{c:?}: RAM after exit");
    (out_on, runs)
}

fn case(design: KernelDesign, variant: Variant, touch: Touch) -> Case {
    Case {
        design,
        variant,
        cmdline: "",
        tlb: TlbGeometry::Core2,
        cpus: 1,
        touch,
        seg_mib: 16,
        children: 3,
        ram_mib: 1280,
    }
}

/// 6.1's highpte variants, where the stream maps every PTE page through kmap_atomic: every
/// touch, both geometries, one and two CPUs.
#[test]
fn highpte_61_every_touch_geometry_and_cpu_count() {
    for variant in [Variant::Highmem64GHighpte, Variant::Highmem4GHighpte] {
        for touch in [Touch::Read, Touch::Write, Touch::Populate] {
            for tlb in [TlbGeometry::Core2, TlbGeometry::Unbounded] {
                for cpus in [1, 2] {
                    let c = Case {
                        tlb,
                        cpus,
                        seg_mib: 32,
                        ..case(KernelDesign::Linux61, variant, touch)
                    };
                    // A reader or writer on the hardware TLB takes most pages in fault
                    // runs; populate has none, and the unbounded TLB spills.
                    let (_, runs) = compare(&c);
                    let pages = c.seg_mib << 8;
                    if touch != Touch::Populate && tlb == TlbGeometry::Core2 {
                        assert!(
                            runs > pages * u64::from(c.children) / 2,
                            "{c:?}: {runs} run pages"
                        );
                    } else {
                        assert_eq!(runs, 0, "{c:?}");
                    }
                }
            }
        }
    }
}

/// Every design and every variant it has (low-memory PTE pages, the direct map; the older
/// designs' typed maps fall back to the generic path), `userpte=nohigh`.
#[test]
fn every_design_and_variant() {
    let mut i = 0;
    for design in KernelDesign::ALL {
        for variant in Variant::ALL {
            if variant == Variant::X86_64 || variant.check_design(design).is_err() {
                continue;
            }
            let touch = [Touch::Read, Touch::Write, Touch::Populate][i % 3];
            let tlb = [TlbGeometry::Core2, TlbGeometry::Unbounded][i / 3 % 2];
            i += 1;
            let c = Case {
                tlb,
                cpus: 1 + (i % 2) as u32,
                ..case(design, variant, touch)
            };
            // Fault runs: a reader or writer on the hardware TLB whose PTE pages are in low
            // memory (the direct map) or reached through 6.1's kmap_atomic.
            let (_, runs) = compare(&c);
            let low = !variant.page_tables_in_highmem(design);
            let runs_expected = touch != Touch::Populate
                && tlb == TlbGeometry::Core2
                && (low || design == KernelDesign::Linux61);
            assert_eq!(runs > 0, runs_expected, "{c:?}: {runs} run pages");
            // And a reader on the hardware TLB in every pair, whatever the rotation gave.
            if !runs_expected && (low || design == KernelDesign::Linux61) {
                let c = Case {
                    tlb: TlbGeometry::Core2,
                    ..case(design, variant, Touch::Read)
                };
                let (_, runs) = compare(&c);
                assert!(runs > 0, "{c:?}");
            }
        }
    }
    for touch in [Touch::Read, Touch::Write] {
        let c = Case {
            cmdline: "userpte=nohigh",
            ..case(KernelDesign::Linux61, Variant::Highmem64GHighpte, touch)
        };
        // Low-memory PTE pages: fault runs through the direct map.
        let (_, runs) = compare(&c);
        assert!(runs > 0, "{c:?}");
    }
}

/// Runs of user accesses that end inside a PMD, and start again where the last one ended,
/// over a segment populated whole or in alternate chunks of 32 pages: a fault run must stop at the
/// end of the range it was given, and at the first page not in the page cache (its fault
/// goes on in the generic functions from the lookup). Every PTE-page kind: the direct map
/// (2-level and PAE), 6.1's kmap_atomic.
#[test]
fn runs_that_end_inside_a_pmd() {
    let variants = [
        Variant::NoHighmem,
        Variant::Highmem64G,
        Variant::Highmem64GHighpte,
    ];
    for (variant, chunk) in variants.into_iter().flat_map(|v| [(v, 32), (v, 64)]) {
        let c = case(KernelDesign::Linux61, variant, Touch::Read);
        let run = |stream: bool| {
            let mut k = booted(&c, stream);
            let p = k.exec_process(0, "prog", 1).expect("exec");
            let id = k.shmget(0, 8 << 20).expect("shmget");
            let addr = k.shmat(0, p, id, false).expect("shmat");
            // Chunks of `chunk` pages every 64: all of them when `chunk` is 64.
            for first in (0..2048).step_by(64) {
                k.user_access_run(0, p, addr + first * 4096, chunk, true)
                    .expect("populate");
            }
            let q = k.exec_process(0, "reader", 1).expect("exec");
            let at = k.shmat(0, q, id, false).expect("shmat");
            for (from, n) in [(0, 700), (700, 300), (1000, 5), (1005, 1043)] {
                k.user_access_run(0, q, at + from * 4096, n, false)
                    .expect("read");
            }
            k
        };
        let (on, off) = (run(true), run(false));
        for (a, b) in digest(&on).into_iter().zip(digest(&off)) {
            assert!(a == b, "{variant:?} {chunk}: {} differs", a.0);
        }
        assert_eq!(ram_differs(&on, &off), None, "{variant:?} {chunk}: RAM");
        // The reader's cached pages once its TLB sets are full (the writer's faults all
        // allocate: a fault that does drops the stream until the next fault).
        let runs = on.mm.fault_run_pages;
        assert!(runs > 700, "{variant:?} {chunk}: {runs} run pages");
    }
}

/// A run the OOM killer ends: low memory runs out of PTE pages (`userpte=nohigh`, and
/// `vmalloc=768M` leaves ~120 MiB of it) while a child reads: the PTE page allocation of
/// the generic path kills, the victim exits in the middle of a stream.
#[test]
fn oom_kill_in_the_middle_of_a_run() {
    let (out, _) = compare(&Case {
        cmdline: "userpte=nohigh vmalloc=768M",
        ram_mib: 1536,
        seg_mib: 256,
        children: 1000,
        ..case(
            KernelDesign::Linux61,
            Variant::Highmem64GHighpte,
            Touch::Read,
        )
    });
    assert!(
        out.contains("OOM-EVENT"),
        "the run did not end by OOM:\n{out}"
    );
}

/// Runs of user accesses whose faults leave the quick paths on the way: a segment nobody
/// populated (every fault misses the page cache and allocates, from the stream's batch
/// through its hand-off to the generic functions), writes over pages a read mapped and
/// over pages not mapped yet, and a pass over pages all mapped (no fault at all).
#[test]
fn runs_that_leave_the_quick_paths_on_the_way() {
    for variant in [Variant::Highmem64GHighpte, Variant::Highmem4GHighpte] {
        let c = case(KernelDesign::Linux61, variant, Touch::Read);
        let run = |stream: bool| {
            let mut k = booted(&c, stream);
            let p = k.exec_process(0, "prog", 1).expect("exec");
            let id = k.shmget(0, 4 << 20).expect("shmget");
            let addr = k.shmat(0, p, id, false).expect("shmat");
            k.user_access_run(0, p, addr, 512, false).expect("read");
            k.user_access_run(0, p, addr, 1024, true).expect("write");
            k.user_access_run(0, p, addr + (1 << 20), 768, false)
                .expect("read again");
            k
        };
        let (on, off) = (run(true), run(false));
        for (a, b) in digest(&on).into_iter().zip(digest(&off)) {
            assert!(a == b, "{variant:?}: {} differs", a.0);
        }
        assert_eq!(ram_differs(&on, &off), None, "{variant:?}: RAM differs");
        assert!(
            on.mm.counters.faults >= 1024,
            "{variant:?}: the run faulted"
        );
    }
}
