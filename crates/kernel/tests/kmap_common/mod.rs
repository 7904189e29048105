//! Shared setup of the kmap / sched tests.
#![allow(dead_code)]

use kernel::config::KernelConfig;
use kernel::gfp::{GFP_HIGHUSER, GFP_KERNEL};
use kernel::{boot, BootOptions, Kernel};
use machine::Pfn;

/// A 2 GiB, 2-CPU machine booted with Debian's 686 (PAE) or 686 kernel, with every
/// highmem debug check on (DEBUG_HIGHMEM, the checker, DEBUG_ATOMIC_SLEEP).
pub fn booted(pae: bool) -> Kernel {
    let preset = if pae { "debian-686-pae" } else { "debian-686" };
    let cfg = KernelConfig::preset(preset).expect("preset");
    let mut opts = BootOptions::new(2 << 30, 2, cfg);
    opts.runtime_profile = false;
    let mut k = boot(&opts).expect("boot");
    k.hm.debug.enable_all();
    k
}

/// `n` highmem frames.
pub fn highmem_pages(k: &mut Kernel, n: usize) -> Vec<u64> {
    (0..n)
        .map(|_| {
            let p = k.alloc_pages(GFP_HIGHUSER, 0, 0).expect("highmem page").pfn;
            assert!(p.as_u64() >= k.layout.max_low_pfn.as_u64());
            p.as_u64()
        })
        .collect()
}

/// One lowmem frame.
pub fn lowmem_page(k: &mut Kernel) -> Pfn {
    k.alloc_pages(GFP_KERNEL, 0, 0).expect("lowmem page").pfn
}

/// Make a fresh task current on `cpu`.
pub fn run_task(k: &mut Kernel, comm: &str, cpu: usize) -> kernel::sched::TaskId {
    let t = k.sched.spawn(comm, cpu);
    k.schedule(cpu).expect("switch");
    assert_eq!(k.sched.current(cpu), t);
    t
}
