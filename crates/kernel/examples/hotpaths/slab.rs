//! The kmalloc hot path: on a booted 1 GiB PAE machine, `kmalloc(64, GFP_KERNEL)` then
//! `kfree` of the object on CPU 0 — SLUB's lockless fast path both ways (CPU freelist pop,
//! init_on_alloc zeroing, free pointer push). The warm-up allocation that brings in the
//! CPU slab is part of the setup, which the `(I(2N) - I(N)) / N` difference cancels.
//!
//! `kmalloc-64-x86_64` is the same on the 64-bit kernel's SLUB (8-byte free pointers with
//! `swab64`, PAGE_OFFSET 0xffff888000000000), swapped into the booted i386 kernel before any
//! slab exists, as `tests/slab_props.rs` does until the x86_64 kernel runs processes.

use kernel::config::{Arch, KernelConfig};
use kernel::gfp::GFP_KERNEL;
use kernel::slab::Slub;
use kernel::{boot, BootOptions, Kernel};

/// Run `n` operations of `path`; returns a value derived from the results so the
/// optimiser cannot drop the work.
pub fn run(path: &str, n: u64) -> Result<u64, String> {
    match path {
        "kmalloc-64" => kmalloc_64(n),
        "kmalloc-64-x86_64" => kmalloc_64_x86_64(n),
        _ => Err(format!("{path}: not a slab path")),
    }
}

fn kmalloc_64(n: u64) -> Result<u64, String> {
    let cfg = KernelConfig::preset("debian-686-pae").map_err(|e| e.to_string())?;
    let mut k = boot(&BootOptions::new(1 << 30, 1, cfg)).map_err(|e| e.to_string())?;
    kmalloc_kfree_64(&mut k, n)
}

/// `kmalloc-64` on the 64-bit kernel's SLUB. The kernel boots without its runtime profile,
/// whose slabs the swapped-in SLUB would not know.
fn kmalloc_64_x86_64(n: u64) -> Result<u64, String> {
    let mut cfg = KernelConfig::preset("debian-686-pae").map_err(|e| e.to_string())?;
    let mut opts = BootOptions::new(1 << 30, 1, cfg.clone());
    opts.runtime_profile = false;
    let mut k = boot(&opts).map_err(|e| e.to_string())?;
    cfg.arch = Arch::X86_64;
    let max_low_pfn = k.layout.max_low_pfn.as_u64();
    k.slab = Slub::boot_direct_map(1, &cfg, max_low_pfn, k.node.init_on_alloc);
    kmalloc_kfree_64(&mut k, n)
}

/// One warm-up pair, then `n` kmalloc(64) + kfree pairs; the addresses' sum keeps the loop.
#[inline(always)]
fn kmalloc_kfree_64(k: &mut Kernel, n: u64) -> Result<u64, String> {
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
