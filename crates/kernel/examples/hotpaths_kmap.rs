//! kmap hot paths for instruction counting: boot, then perform exactly N operations of one
//! path, so that `(I(2N) - I(N)) / N` under `valgrind --tool=callgrind` is the host
//! instructions one operation costs (setup cancels out).
//!
//! `cargo run --release -p kernel --example hotpaths_kmap -- PATH N`
//! with PATH `kmap-local` (kmap_local_page + kunmap_local of a highmem page) or `kmap-hit`
//! (kmap + kunmap of a page that is already kmapped); a third argument `nocheck` runs
//! without the model's checker bookkeeping. See BENCHMARKS.md.

use kernel::config::KernelConfig;
use kernel::gfp::GFP_HIGHUSER;
use kernel::sched::Blocking;
use kernel::{boot, BootOptions};
use std::hint::black_box;

fn run(path: &str, n: u64, checker: bool) -> Result<u64, String> {
    let cfg = KernelConfig::preset("debian-686-pae").map_err(|e| e.to_string())?;
    let mut opts = BootOptions::new(2 << 30, 2, cfg);
    opts.runtime_profile = false;
    let mut k = boot(&opts).map_err(|e| e.to_string())?;
    let pfn = k
        .alloc_pages(GFP_HIGHUSER, 0, 0)
        .map_err(|e| e.to_string())?
        .pfn;
    k.hm.debug.checker = checker;
    let t = k.sched.spawn("bench", 0);
    k.context_switch(0, t).map_err(|e| e.to_string())?;
    let mut check = 0u64;
    match path {
        "kmap-local" => {
            for _ in 0..n {
                let va = k
                    .kmap_local_page(0, black_box(pfn))
                    .map_err(|e| e.to_string())?;
                check ^= va.as_u64();
                k.kunmap_local(0, va).map_err(|e| e.to_string())?;
            }
        }
        "kmap-hit" => {
            // One long-lived kmap keeps the page mapped; each op is a hash hit.
            let Ok(Blocking::Ready(_)) = k.kmap(0, pfn) else {
                return Err("first kmap".into());
            };
            for _ in 0..n {
                let Ok(Blocking::Ready(va)) = k.kmap(0, black_box(pfn)) else {
                    return Err("kmap".into());
                };
                check ^= va.as_u64();
                k.kunmap(0, black_box(pfn)).map_err(|e| e.to_string())?;
            }
        }
        _ => return Err(format!("unknown path {path:?} (kmap-local, kmap-hit)")),
    }
    Ok(check)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(path), Some(n)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: hotpaths_kmap PATH N   (PATH: kmap-local, kmap-hit)");
        std::process::exit(2);
    };
    let Ok(n) = n.parse::<u64>() else {
        eprintln!("hotpaths_kmap: N must be a number, not {n:?}");
        std::process::exit(2);
    };
    // A third argument `nocheck` turns the model's checker (held-mapping bookkeeping) off.
    let checker = args.get(3).map(String::as_str) != Some("nocheck");
    match run(path, n, checker) {
        Ok(check) => println!("{path} x{n}: ok (check {check:#x})"),
        Err(e) => {
            eprintln!("hotpaths_kmap: {e}");
            std::process::exit(1);
        }
    }
}
