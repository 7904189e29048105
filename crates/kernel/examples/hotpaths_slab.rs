//! The kmalloc hot path for instruction counting: on a booted 1 GiB PAE machine, N times
//! `kmalloc(64, GFP_KERNEL)` then `kfree` of the object on CPU 0 — SLUB's lockless fast
//! path both ways (CPU freelist pop, init_on_alloc zeroing, free pointer push). Under
//! `valgrind --tool=callgrind`, `(I(2N) - I(N)) / N` is the cost of one pair; setup cancels.
//!
//! `cargo run --release -p kernel --example hotpaths_slab -- N`

use kernel::config::KernelConfig;
use kernel::gfp::GFP_KERNEL;
use kernel::{boot, BootOptions};

fn run(n: u64) -> Result<u64, String> {
    let cfg = KernelConfig::preset("debian-686-pae").map_err(|e| e.to_string())?;
    let mut k = boot(&BootOptions::new(1 << 30, 1, cfg)).map_err(|e| e.to_string())?;
    // Warm up: the first kmalloc brings in a CPU slab.
    let first = k.kmalloc(64, GFP_KERNEL, 0).map_err(|e| e.to_string())?;
    k.kfree(first, 0).map_err(|e| e.to_string())?;
    let mut check = 0u64;
    for _ in 0..n {
        let va = k.kmalloc(64, GFP_KERNEL, 0).map_err(|e| e.to_string())?;
        check = check.wrapping_add(va.as_u64());
        k.kfree(va, 0).map_err(|e| e.to_string())?;
    }
    Ok(check)
}

fn main() {
    let n = std::env::args().nth(1).and_then(|a| a.parse::<u64>().ok());
    let Some(n) = n else {
        eprintln!("usage: hotpaths_slab N");
        std::process::exit(2);
    };
    match run(n) {
        Ok(check) => println!("kmalloc64-kfree x{n}: ok (check {check:#x})"),
        Err(e) => {
            eprintln!("hotpaths_slab: {e}");
            std::process::exit(1);
        }
    }
}
