//! The kmap paths: `kmap_local_page` + `kunmap_local` of a highmem page, and `kmap` +
//! `kunmap` of a page that is already kmapped (a `page_address` hash hit).
//!
//! A 2 GiB PAE machine (`debian-686-pae`, 2 CPUs, no runtime profile) with one highmem
//! page, the operations run by a spawned task on CPU 0. By default the kernel is built as
//! Debian builds it (no CONFIG_DEBUG_KMAP_LOCAL: no held-mapping bookkeeping); the `check`
//! argument turns the model's checker on. `kmap-local-2level` is `kmap-local` on the 2-level
//! `debian-686` kernel (4-byte PTEs), the same machine otherwise.

use kernel::config::KernelConfig;
use kernel::gfp::GFP_HIGHUSER;
use kernel::sched::Blocking;
use kernel::{boot, BootOptions};
use std::hint::black_box;

/// Run `n` operations of `path`; returns a value derived from the results so the
/// optimiser cannot drop the work.
pub fn run(path: &str, n: u64, checker: bool) -> Result<u64, String> {
    let preset = if path == "kmap-local-2level" {
        "debian-686"
    } else {
        "debian-686-pae"
    };
    let cfg = KernelConfig::preset(preset).map_err(|e| e.to_string())?;
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
        "kmap-local" | "kmap-local-2level" => {
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
                // One opaque pfn per iteration, as a caller kmaps and kunmaps one page.
                let p = black_box(pfn);
                let Ok(Blocking::Ready(va)) = k.kmap(0, p) else {
                    return Err("kmap".into());
                };
                check ^= va.as_u64();
                k.kunmap(0, p).map_err(|e| e.to_string())?;
            }
        }
        _ => return Err(format!("{path}: not a kmap path")),
    }
    Ok(check)
}
