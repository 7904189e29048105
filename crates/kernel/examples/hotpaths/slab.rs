//! The kmalloc hot path: on a booted 1 GiB PAE machine, `kmalloc(64, GFP_KERNEL)` then
//! `kfree` of the object on CPU 0 — SLUB's lockless fast path both ways (CPU freelist pop,
//! init_on_alloc zeroing, free pointer push). The warm-up allocation that brings in the
//! CPU slab is part of the setup, which the `(I(2N) - I(N)) / N` difference cancels.

use kernel::config::KernelConfig;
use kernel::gfp::GFP_KERNEL;
use kernel::{boot, BootOptions};

/// Run `n` operations of `path`; returns a value derived from the results so the
/// optimiser cannot drop the work.
pub fn run(path: &str, n: u64) -> Result<u64, String> {
    match path {
        "kmalloc-64" => kmalloc_64(n),
        _ => Err(format!("{path}: not a slab path")),
    }
}

fn kmalloc_64(n: u64) -> Result<u64, String> {
    let cfg = KernelConfig::preset("debian-686-pae").map_err(|e| e.to_string())?;
    let mut k = boot(&BootOptions::new(1 << 30, 1, cfg)).map_err(|e| e.to_string())?;
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
