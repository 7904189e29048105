//! The preset's runtime profile (kernel/src/boot/profile.rs, profile_slab.rs), derived again
//! from the reference files. What a real boot holds after init starts is broken down into
//! what the model holds through a mechanism of its own — the slab objects of every cache
//! (/proc/slabinfo), kmalloc_large blocks (SUnreclaim beyond the caches), kernel threads'
//! stacks (KernelStack), the initramfs (Shmem, Active(anon)), the boot processes' pages
//! (AnonPages, PageTables, Mapped) — and a remainder, measured as the number of page
//! allocations that take the model's free memory, after a boot that holds all the rest, down
//! to the real kernel's LowFree and HighFree.
//!
//! Counting allocations (not subtracting free figures) matters: an allocation through the
//! per-CPU lists first takes what the lists already hold and refills them a batch at a time,
//! so N allocations do not lower the zone's free count by exactly N pages.

use highmem::reference::{list_runs, RefRun};
use kernel::boot::profile::{self as prof, BootProfile, BootSlab};
use kernel::config::KernelConfig;
use kernel::gfp::{Gfp, GFP_HIGHUSER_MOVABLE, GFP_KERNEL};
use kernel::procfs::{live, ZoneStatItem};
use kernel::slab::SlabFlags;
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

fn bare_boot(run: &RefRun) -> Kernel {
    let cfg = KernelConfig::preset(run.kernel.preset_name()).expect("preset");
    let mut opts = BootOptions::new(run.ram_mib << 20, run.smp, cfg);
    opts.cmdline = run.append.clone();
    opts.runtime_profile = false;
    boot(&opts).expect("boot")
}

/// (kernel pages, user pages) that bring a boot of `run`'s machine holding the profile's
/// mechanisms to its free memory.
fn derive_remainder(run: &RefRun) -> (u64, u64) {
    let mut k = bare_boot(run);
    k.hold_runtime_mechanisms().expect("mechanisms fit");
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

fn reference_boots() -> Vec<RefRun> {
    list_runs()
        .expect("reference runs")
        .iter()
        .map(|p| RefRun::load(p).expect("parse reference"))
        .filter(|r| r.work.is_none() && !r.name.starts_with("work-"))
        .collect()
}

/// The reference boots of one CPU with the default command line: the machines the
/// profile's one-CPU constants describe (`vmalloc=` shrinks low memory and with it the
/// hash tables sized from it).
fn plain(runs: &[RefRun]) -> Vec<&RefRun> {
    runs.iter()
        .filter(|r| {
            r.smp == 1
                && kernel::cmdline::CmdLine::parse(&r.append).is_ok_and(|c| c.early.is_empty())
        })
        .collect()
}

/// The two-CPU boot and the one-CPU boot of the same machine: what a further CPU adds.
fn cpu_pair(runs: &[RefRun]) -> (&RefRun, &RefRun) {
    let two = runs.iter().find(|r| r.smp == 2).expect("a two-CPU boot");
    let one = runs
        .iter()
        .find(|r| {
            r.smp == 1
                && r.ram_mib == two.ram_mib
                && r.kernel == two.kernel
                && r.append == two.append
        })
        .expect("its one-CPU twin");
    (two, one)
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

fn meminfo_pages(run: &RefRun, key: &str) -> u64 {
    run.meminfo[0].get(key).unwrap_or_else(|| panic!("{key}")) / 4
}

/// (num_objs, num_objs - active_objs) of every cache of `run`, oldest first.
fn slab_rows(run: &RefRun) -> Vec<(String, u64, u64)> {
    let dump = &run.slabinfo().expect("slabinfo")[0];
    dump.iter()
        .rev()
        .map(|l| (l.name.clone(), l.num_objs, l.num_objs - l.active_objs))
        .collect()
}

/// The median rows of `runs` (every cache that holds objects on the median).
fn slab_table(runs: &[&RefRun]) -> Vec<(String, u64, u64)> {
    let rows: Vec<_> = runs.iter().map(|r| slab_rows(r)).collect();
    let col = |name: &str, f: fn(&(String, u64, u64)) -> u64| -> u64 {
        median(
            rows.iter()
                .map(|rs| rs.iter().find(|r| r.0 == name).map_or(0, f))
                .collect(),
        )
    };
    rows[0]
        .iter()
        .map(|(name, _, _)| (name.clone(), col(name, |r| r.1), col(name, |r| r.2)))
        .filter(|r| r.1 > 0)
        .collect()
}

/// What the two-CPU boot holds beyond its one-CPU twin, per cache.
fn per_cpu_table(runs: &[RefRun]) -> Vec<(String, u64, u64)> {
    let (two, one) = cpu_pair(runs);
    let base = slab_rows(one);
    slab_rows(two)
        .into_iter()
        .filter_map(|(name, n, f)| {
            let (_, bn, bf) = base
                .iter()
                .find(|b| b.0 == name)
                .cloned()
                .unwrap_or_default();
            assert!(n >= bn && f >= bf, "{name}: two CPUs hold fewer objects");
            (n > bn || f > bf).then(|| (name, n - bn, f - bf))
        })
        .collect()
}

fn rust_table(rows: &[(String, u64, u64)]) -> String {
    rows.iter()
        .map(|(n, o, f)| format!("    s(\"{n}\", {o}, {f}),\n"))
        .collect()
}

fn as_rows(t: &[BootSlab]) -> Vec<(String, u64, u64)> {
    t.iter()
        .map(|r| {
            (
                r.cache.to_string(),
                u64::from(r.objects),
                u64::from(r.freed),
            )
        })
        .collect()
}

#[test]
fn slab_tables_are_the_reference_slabinfo() {
    let runs = reference_boots();
    let mut failures = Vec::new();
    for (pae, table) in [(true, prof::BOOT_SLAB_PAE), (false, prof::BOOT_SLAB_NOPAE)] {
        let ones: Vec<_> = plain(&runs)
            .into_iter()
            .filter(|r| r.kernel.is_pae() == pae)
            .collect();
        let derived = slab_table(&ones);
        if derived != as_rows(table) {
            failures.push(format!("pae={pae}:\n{}", rust_table(&derived)));
        }
    }
    let derived = per_cpu_table(&runs);
    if derived != as_rows(prof::BOOT_SLAB_PER_CPU) {
        failures.push(format!("per CPU:\n{}", rust_table(&derived)));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Unreclaimable slab pages beyond the caches' (kmalloc_large), from /proc/slabinfo and the
/// /proc/vmstat dumped right after it; the caches' reclaimability is the model's.
fn kmalloc_large_pages(run: &RefRun, k: &Kernel) -> u64 {
    let caches: u64 = run.slabinfo().expect("slabinfo")[0]
        .iter()
        .filter(|l| {
            let id = k.slab.find_cache(&l.name);
            let flags = id.and_then(|id| k.slab.cache(id)).map(|c| c.flags);
            !flags.is_some_and(|f| f.contains(SlabFlags::RECLAIM_ACCOUNT))
        })
        .map(|l| l.num_slabs * u64::from(l.pagesperslab))
        .sum();
    run.vmstat[0].get("nr_slab_unreclaimable").expect("vmstat") - caches
}

#[test]
fn kmalloc_large_kthreads_and_userspace_are_the_reference() {
    let runs = reference_boots();
    let ones = plain(&runs);
    let k = bare_boot(ones[0]);
    let block = 1u64 << prof::KMALLOC_LARGE_ORDER;
    let large = median(ones.iter().map(|r| kmalloc_large_pages(r, &k)).collect());
    let (two, one) = cpu_pair(&runs);
    let k2 = bare_boot(two);
    let large_cpu = kmalloc_large_pages(two, &k2) - kmalloc_large_pages(one, &k);
    let stacks = |r: &RefRun| meminfo_pages(r, "KernelStack") / 2;
    let kthreads = median(ones.iter().map(|r| stacks(r)).collect()) - prof::BOOT_USER_TASKS;
    let per_cpu = stacks(two) - stacks(one);
    let all = |key: &str| median(ones.iter().map(|r| meminfo_pages(r, key)).collect());
    let event = |key: &str| {
        median(
            ones.iter()
                .map(|r| r.vmstat[0].get(key).expect("vmstat event"))
                .collect(),
        )
    };
    let build = |pae: bool, key: &str| {
        let v = ones.iter().filter(|r| r.kernel.is_pae() == pae);
        median(v.map(|r| meminfo_pages(r, key)).collect())
    };
    let got = [
        ("KMALLOC_LARGE_BLOCKS", large / block),
        ("KMALLOC_LARGE_BLOCKS_PER_CPU", large_cpu / block),
        ("KTHREADS", kthreads),
        ("KTHREADS_PER_CPU", per_cpu),
        ("INITRAMFS_PAGES", all("Shmem")),
        ("INITRAMFS_ACTIVE_PAE", build(true, "Active(anon)")),
        ("INITRAMFS_ACTIVE_NOPAE", build(false, "Active(anon)")),
        ("BOOT_USER_MAPPED", all("Mapped")),
        ("BOOT_USER_ANON_PAE", build(true, "AnonPages")),
        ("BOOT_USER_ANON_NOPAE", build(false, "AnonPages")),
        ("BOOT_USER_PT_PAE", build(true, "PageTables")),
        ("BOOT_USER_PT_NOPAE", build(false, "PageTables")),
        ("BOOT_PGACTIVATE", event("pgactivate")),
        ("BOOT_PGREUSE", event("pgreuse")),
    ];
    let want = [
        prof::KMALLOC_LARGE_BLOCKS,
        prof::KMALLOC_LARGE_BLOCKS_PER_CPU,
        prof::KTHREADS,
        prof::KTHREADS_PER_CPU,
        prof::INITRAMFS_PAGES,
        prof::INITRAMFS_ACTIVE_PAE,
        prof::INITRAMFS_ACTIVE_NOPAE,
        prof::BOOT_USER_MAPPED,
        prof::BOOT_USER_ANON_PAE,
        prof::BOOT_USER_ANON_NOPAE,
        prof::BOOT_USER_PT_PAE,
        prof::BOOT_USER_PT_NOPAE,
        prof::BOOT_PGACTIVATE,
        prof::BOOT_PGREUSE,
    ];
    let bad: Vec<String> = got
        .iter()
        .zip(want)
        .filter(|((_, g), w)| g != w)
        .map(|((name, g), w)| format!("{name}: derived {g}, the profile says {w}"))
        .collect();
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    assert_eq!(
        large % block,
        0,
        "kmalloc_large pages {large} are not whole blocks"
    );
}

#[test]
fn runtime_remainder_is_what_the_reference_boots_hold() {
    let runs = reference_boots();
    let runs = plain(&runs);
    assert!(runs.len() >= 6, "expected the plain reference boots");
    let mut users = Vec::new();
    let mut failures = Vec::new();
    for run in &runs {
        let (kernel_pages, user_pages) = derive_remainder(run);
        eprintln!("{}: kernel {kernel_pages} user {user_pages}", run.name);
        let cfg = KernelConfig::preset(run.kernel.preset_name()).expect("preset");
        let p = BootProfile::for_config(&cfg);
        users.push((cfg.pae, user_pages));
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
    // profile takes the median of the boots.
    let median = median(users.iter().map(|u| u.1).collect());
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
