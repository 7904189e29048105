//! vmalloc hot path for instruction counting: boot a machine, then perform exactly N
//! operations of one path, so that `(I(2N) - I(N)) / N` under `valgrind --tool=callgrind`
//! is the host instructions one operation costs (the boot cancels out).
//!
//! `cargo run --release -p kernel --example hotpaths_vmalloc -- vmalloc-64k N`
//!
//! `vmalloc-64k`: `vmalloc(64 KiB)` + `vfree` on a 1 GiB PAE machine with one CPU: 16
//! order-0 pages from the per-CPU lists, 16 PTEs written through the cursor, the area
//! found, unmapped and queued for the lazy purge, the pages freed; every ~480 operations
//! the purge flushes the TLB and returns the space (its cost is spread over the batch).

use kernel::config::KernelConfig;
use kernel::{boot, BootOptions};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(path), Some(n)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: hotpaths_vmalloc vmalloc-64k N");
        std::process::exit(2);
    };
    let Ok(n) = n.parse::<u64>() else {
        eprintln!("hotpaths_vmalloc: N must be a number, not {n:?}");
        std::process::exit(2);
    };
    if path != "vmalloc-64k" {
        eprintln!("hotpaths_vmalloc: unknown path {path:?} (one of: vmalloc-64k)");
        std::process::exit(2);
    }
    let cfg = KernelConfig::preset("debian-686-pae").expect("preset");
    let mut opts = BootOptions::new(1 << 30, 1, cfg);
    opts.runtime_profile = false;
    let mut k = boot(&opts).expect("boot");
    let mut check = 0u64;
    for _ in 0..n {
        let a = match k.vmalloc(64 << 10, 0) {
            Ok(a) => a,
            Err(e) => {
                eprintln!("hotpaths_vmalloc: {e}");
                std::process::exit(1);
            }
        };
        check = check.wrapping_add(a);
        if let Err(e) = k.vfree(a, 0) {
            eprintln!("hotpaths_vmalloc: {e}");
            std::process::exit(1);
        }
    }
    println!(
        "{path} x{n}: ok (check {check:#x}, purges {})",
        k.vmap.purges
    );
}
