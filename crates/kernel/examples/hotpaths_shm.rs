//! Hot paths of the shm workload for instruction counting: boot 8 GiB PAE, create and
//! populate a 512 MiB SysV segment, then run N children that each attach it and touch every
//! page, so that `(I(2) - I(1)) / 131072` under `valgrind --tool=callgrind` is the host
//! instructions one page of one child costs (boot, populate and process setup cancel out).
//!
//! `cargo run --release -p kernel --example hotpaths_shm -- PATH N`
//! with PATH `shm-populate` (MADV_POPULATE_READ: get_user_pages → handle_mm_fault per page)
//! or `shm-read` (a user read per page: TLB miss, walk, #PF, handle_mm_fault with the PTE
//! page mapped through kmap_atomic, retry). See BENCHMARKS.md.

use kernel::config::KernelConfig;
use kernel::workload::shmwork::{run, Params, Touch};
use kernel::{boot, BootOptions};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(path), Some(n)) = (args.get(1), args.get(2).and_then(|n| n.parse::<u32>().ok()))
    else {
        eprintln!("usage: hotpaths_shm PATH N   (PATH: shm-populate, shm-read)");
        std::process::exit(2);
    };
    let touch = match path.as_str() {
        "shm-populate" => Touch::Populate,
        "shm-read" => Touch::Read,
        _ => {
            eprintln!("unknown path {path:?} (shm-populate, shm-read)");
            std::process::exit(2);
        }
    };
    let cfg = KernelConfig::preset("debian-686-pae").expect("preset");
    let opts = BootOptions::new(8 << 30, 1, cfg);
    let mut k = boot(&opts).expect("boot");
    // The hardware runs' TLB: Core 2's DTLB1.
    for c in &mut k.machine.cpus {
        c.set_tlb_geometry(machine::tlb::TlbGeometry::Core2);
    }
    let prm = Params {
        size_mib: 512,
        n,
        touch,
        every: 1 << 30,
        timing: false,
        dumps: false,
        design: None,
    };
    let out = run(&mut k, &prm, &mut |_| {}).expect("shmwork");
    println!(
        "children {} faults {}",
        out.children_done, k.mm.counters.faults
    );
}
