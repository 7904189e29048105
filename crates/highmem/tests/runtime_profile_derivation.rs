//! The preset's runtime profile (kernel/src/boot/profile.rs), derived again from the
//! reference files: what a real boot holds after init starts (drivers, slab, kernel stacks,
//! init's page tables; the initramfs in the page cache and init's own pages) is measured as
//! the number of page allocations that take the model's free memory, after a boot without
//! the profile, down to the real kernel's LowFree and HighFree.
//!
//! Counting allocations (not subtracting free figures) matters: an allocation through the
//! per-CPU lists first takes what the lists already hold and refills them a batch at a time,
//! so N allocations do not lower the zone's free count by exactly N pages.

use highmem::reference::{list_runs, RefRun};
use kernel::boot::profile::BootProfile;
use kernel::config::KernelConfig;
use kernel::gfp::{Gfp, GFP_HIGHUSER_MOVABLE, GFP_KERNEL};
use kernel::procfs::{live, ZoneStatItem};
use kernel::{boot, BootOptions, Kernel};

/// (LowFree, HighFree) in kB, as /proc/meminfo computes them.
fn low_high_free(k: &Kernel) -> (u64, u64) {
    let mi = live::meminfo(k);
    let free = mi.zone_stats[ZoneStatItem::NrFreePages] * 4;
    let high = mi.free_highpages * 4;
    (free - high, high)
}

/// Allocations of `gfp` until `free(k)` is at or below `target` kB.
fn allocations_to(k: &mut Kernel, gfp: Gfp, target: u64, free: fn(&Kernel) -> u64) -> u64 {
    let mut n = 0;
    while free(k) > target {
        k.alloc_pages(gfp, 0, 0).expect("allocation while deriving");
        n += 1;
    }
    n
}

/// (kernel pages, user pages) that bring a bare boot of `run`'s machine to its free memory.
fn derive(run: &RefRun) -> (u64, u64) {
    let cfg = KernelConfig::preset(run.kernel.preset_name()).expect("preset");
    let mut opts = BootOptions::new(run.ram_mib << 20, run.smp, cfg);
    opts.cmdline = run.append.clone();
    opts.runtime_profile = false;
    let mut k = boot(&opts).expect("boot");
    let rm = &run.meminfo[0];
    let (real_low, real_high) = (
        rm.get("LowFree").expect("LowFree"),
        rm.get("HighFree").expect("HighFree"),
    );
    let low = allocations_to(&mut k, GFP_KERNEL, real_low, |k| low_high_free(k).0);
    let high = allocations_to(&mut k, GFP_HIGHUSER_MOVABLE, real_high, |k| {
        low_high_free(k).1
    });
    (low, high)
}

/// The reference boots of one CPU with the default vmalloc reserve: the machines the
/// profile's constants describe. (Two CPUs hold more — per-CPU kthreads, stacks and lists —
/// and `vmalloc=` shrinks low memory and with it the hash tables sized from it; the
/// fidelity test in boot_reference.rs checks that those stay within its tolerance.)
fn plain_runs() -> Vec<RefRun> {
    list_runs()
        .expect("reference runs")
        .iter()
        .map(|p| RefRun::load(p).expect("parse reference"))
        .filter(|r| r.work.is_none() && !r.name.starts_with("work-"))
        .filter(|r| {
            r.smp == 1
                && kernel::cmdline::CmdLine::parse(&r.append).is_ok_and(|c| c.early.is_empty())
        })
        .collect()
}

#[test]
fn runtime_profile_is_what_the_reference_boots_hold() {
    let runs = plain_runs();
    assert!(runs.len() >= 6, "expected the plain reference boots");
    let mut users = Vec::new();
    let mut failures = Vec::new();
    for run in &runs {
        let (kernel_pages, user_pages) = derive(run);
        eprintln!("{}: kernel {kernel_pages} user {user_pages}", run.name);
        users.push(user_pages);
        let cfg = KernelConfig::preset(run.kernel.preset_name()).expect("preset");
        let p = BootProfile::for_config(&cfg);
        // The kernel's own use is the same on every RAM size of one build: exactly.
        if kernel_pages != p.runtime_lowmem_pages {
            failures.push(format!(
                "{}: {kernel_pages} kernel pages derived, the profile says {}",
                run.name, p.runtime_lowmem_pages
            ));
        }
    }
    // Userspace's pages are the same initramfs and init on every machine; what HighFree
    // shows of them moves by a per-CPU batch or two with the real kernel's timing, so the
    // profile takes the median.
    users.sort_unstable();
    let median = users[users.len() / 2];
    for run in &runs {
        let cfg = KernelConfig::preset(run.kernel.preset_name()).expect("preset");
        let p = BootProfile::for_config(&cfg);
        if p.runtime_user_pages != median {
            failures.push(format!(
                "{}: profile holds {} user pages, the reference boots' median is {median}",
                run.name, p.runtime_user_pages
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
