//! The vmalloc hot path: `vmalloc(64 KiB)` + `vfree` on a 1 GiB PAE machine with one CPU
//! and no runtime profile: 16 order-0 pages from the per-CPU lists, 16 PTEs written
//! through the cursor, the area found, unmapped and queued for the lazy purge, the pages
//! freed; every ~480 operations the purge flushes the TLB and returns the space (its cost
//! is spread over the batch).

use kernel::config::KernelConfig;
use kernel::{boot, BootOptions};

/// Run `n` operations of `path`; returns a value derived from the results so the
/// optimiser cannot drop the work.
pub fn run(path: &str, n: u64) -> Result<u64, String> {
    match path {
        "vmalloc-64k" => vmalloc_64k(n),
        _ => Err(format!("{path}: not a vmalloc path")),
    }
}

fn vmalloc_64k(n: u64) -> Result<u64, String> {
    let cfg = KernelConfig::preset("debian-686-pae").map_err(|e| e.to_string())?;
    let mut opts = BootOptions::new(1 << 30, 1, cfg);
    opts.runtime_profile = false;
    let mut k = boot(&opts).map_err(|e| e.to_string())?;
    let mut check = 0u64;
    for _ in 0..n {
        let a = k.vmalloc(64 << 10, 0).map_err(|e| e.to_string())?;
        check = check.wrapping_add(a);
        k.vfree(a, 0).map_err(|e| e.to_string())?;
    }
    Ok(check.wrapping_add(k.vmap.purges))
}
