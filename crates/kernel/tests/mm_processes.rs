//! User processes on the model: every page and page table comes back when all processes
//! exit, in all three designs, with the debug checks silent; PTE pages in high memory are
//! reached only through the design's mappings; `get_user_pages`; the OOM killer.

use kernel::config::KernelConfig;
use kernel::design::KernelDesign;
use kernel::mm::MmError;
use kernel::vmstat::NodeStatItem as N;
use kernel::workload::shmwork::{finish, run, run_observed, Event, Params, Touch};
use kernel::{boot, BootOptions, Kernel};
use std::ops::ControlFlow;

fn booted(pae: bool, mib: u64, cpus: u32, cmdline: &str) -> Kernel {
    let preset = if pae { "debian-686-pae" } else { "debian-686" };
    let cfg = KernelConfig::preset(preset).expect("preset");
    let mut opts = BootOptions::new(mib << 20, cpus, cfg);
    opts.cmdline = cmdline.to_string();
    let mut k = boot(&opts).expect("boot");
    // The runtime profile's pages for the boot's processes go back (as shmwork's init and
    // sh take them over), so only the initramfs stays of the boot's userspace.
    k.release_boot_userspace(0);
    k.hm.debug.checker = true;
    k.hm.debug.debug_highmem = true;
    k
}

/// Free pages including the per-CPU lists, per zone.
fn free_pages(k: &Kernel) -> u64 {
    let mi = kernel::procfs::live::read(k, "meminfo").unwrap();
    mi.lines()
        .find(|l| l.starts_with("MemFree:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap()
        .parse()
        .unwrap()
}

fn slab_kb(k: &Kernel) -> u64 {
    let mi = kernel::procfs::live::read(k, "meminfo").unwrap();
    mi.lines()
        .find(|l| l.starts_with("Slab:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap()
        .parse()
        .unwrap()
}

/// Quiesce the per-CPU caches: the LRU batches (each holds a reference on its pages, so a
/// page a process allocated on another CPU than the one it exited on waits there), then the
/// pcp lists.
fn drain(k: &mut Kernel) {
    k.node.lru_add_drain_all();
    k.node.drain_all_pages(None);
}

fn params(touch: Touch, n: u32) -> Params {
    Params {
        size_mib: 16,
        n,
        touch,
        every: 2,
        timing: false,
        dumps: true,
        design: None,
    }
}

fn check_clean(k: &mut Kernel, before: u64, slab0: u64, what: &str) {
    drain(k);
    assert_eq!(
        k.node.vm_stat[N::NrPagetable],
        0,
        "{what}: page tables left"
    );
    let initramfs = k.profile.userspace.initramfs_pages as i64;
    assert_eq!(
        k.node.vm_stat[N::NrShmem],
        initramfs,
        "{what}: shmem pages left"
    );
    assert_eq!(
        k.node.vm_stat[N::NrAnonMapped],
        0,
        "{what}: anon pages left"
    );
    // The anon LRU lists hold the shmem pages left (the initramfs) and nothing else.
    assert_eq!(
        k.node.vm_stat[N::NrActiveAnon] + k.node.vm_stat[N::NrInactiveAnon],
        initramfs,
        "{what}: pages left on the LRU lists"
    );
    // Every file page the processes mapped is unmapped again: Mapped is the boot's own
    // (the profile's pages, marked mapped once).
    assert_eq!(
        k.node.vm_stat[N::NrFileMapped],
        k.profile.userspace.mapped as i64,
        "{what}: file pages still mapped"
    );
    // What SLUB keeps of the slabs it grew (partial slabs) is all that stays.
    let slab = slab_kb(k) - slab0;
    assert_eq!(
        free_pages(k) + slab,
        before,
        "{what}: MemFree differs after every exit"
    );
    kernel::debug_vm::check_node(&k.node).unwrap_or_else(|e| panic!("{what}: {e:?}"));
    assert!(
        k.hm.debug.reports.is_empty(),
        "{what}: {:#?}",
        k.hm.debug.reports
    );
    assert!(k.pkmap_check().is_empty(), "{what}");
    let bugs: Vec<_> = k
        .log
        .lines()
        .iter()
        .filter(|m| m.text.starts_with("BUG") || m.text.starts_with("WARNING"))
        .map(|m| m.text.clone())
        .collect();
    assert!(bugs.is_empty(), "{what}: {bugs:?}");
}

#[test]
fn every_page_comes_back_in_every_design() {
    for design in KernelDesign::ALL {
        for pae in [true, false] {
            for touch in [Touch::Read, Touch::Write, Touch::Populate] {
                let what = format!("{design:?} pae={pae} {touch:?}");
                let mut k = booted(pae, 1024, 2, "");
                k.hm.design = design;
                drain(&mut k);
                let before = free_pages(&k);
                let slab0 = slab_kb(&k);
                let out = run(&mut k, &params(touch, 3), &mut |_| {}).expect(&what);
                assert_eq!(out.children_done, 3, "{what}");
                assert!(!out.oom, "{what}");
                // 16 MiB: 8 PTE pages (PAE, 2 MiB each) for the segment; highmem PTE pages
                // went through a mapping.
                let highpte = k.userpte_alloc_gfp().contains(kernel::gfp::Gfp::HIGHMEM);
                if pae && highpte {
                    assert!(k.mm.counters.pte_kmaps > 0, "{what}");
                }
                finish(&mut k, &out).expect(&what);
                check_clean(&mut k, before, slab0, &what);
            }
        }
    }
}

/// The 64-bit kernel, its boot's processes released as in `booted`.
fn booted_x86_64(mib: u64, cpus: u32) -> Kernel {
    let cfg = kernel::variant::Variant::X86_64.config();
    let mut k = boot(&BootOptions::new(mib << 20, cpus, cfg)).expect("boot x86_64");
    k.release_boot_userspace(0);
    k.hm.debug.checker = true;
    k.hm.debug.debug_highmem = true;
    k
}

/// Kernel memory the 64-bit kernel keeps on purpose after its tasks exit: the vmalloc area's
/// page tables (never freed) and the per-CPU cached stacks (pages).
fn kept_64(k: &Kernel) -> u64 {
    let tables = k.vmap.kernel_pte_pages + k.vmap.kernel_pmd_pages;
    let stacks = k.mm.stack_cache.cached().count() as u64 * kernel::mm::kstack::THREAD_PAGES_64;
    (tables + stacks) * 4
}

#[test]
fn every_page_comes_back_on_x86_64() {
    for touch in [Touch::Read, Touch::Write, Touch::Populate] {
        let what = format!("x86_64 {touch:?}");
        let mut k = booted_x86_64(1024, 2);
        drain(&mut k);
        let before = free_pages(&k) + kept_64(&k);
        let slab0 = slab_kb(&k);
        let out = run(&mut k, &params(touch, 3), &mut |_| {}).expect(&what);
        assert_eq!(out.children_done, 3, "{what}");
        assert!(!out.oom, "{what}");
        // No high memory: no PTE page was ever kmapped.
        assert_eq!(k.mm.counters.pte_kmaps, 0, "{what}");
        finish(&mut k, &out).expect(&what);
        let kept = kept_64(&k);
        check_clean(&mut k, before - kept, slab0, &what);
    }
}

/// A compat child's page tables on 4-level paging: the PUD page is in VmPTE but not in
/// PageTables; a PMD page per GiB the child touches (text and heap in the first, the segment,
/// vDSO and stack in the last) is in both; its kernel stack is 16 KiB.
#[test]
fn x86_64_child_costs_what_the_kernel_counts() {
    let mut k = booted_x86_64(2048, 1);
    let out = run(&mut k, &params(Touch::Read, 2), &mut |_| {}).unwrap();
    let p = &out.progress;
    let vmpte = p[1].get("VmPTE_child1").unwrap();
    let d = p[2].get("PageTables").unwrap() - p[1].get("PageTables").unwrap();
    assert_eq!(vmpte - d, 4, "the PUD page: VmPTE only");
    // 2 PMD pages + PTE pages: text/data, heap, stack, 9 for the unaligned 16 MiB segment.
    assert_eq!(d, (2 + 3 + 9) * 4);
    assert_eq!(
        p[2].get("KernelStack").unwrap() - p[1].get("KernelStack").unwrap(),
        16
    );
    // The 4-level walk reaches each page: one fault per page, no fault-around for SysV shm.
    let pages = 16 * 256;
    assert!(k.mm.counters.faults >= 3 * pages && k.mm.counters.faults < 3 * pages + 100);
}

#[test]
fn child_costs_what_the_kernel_counts() {
    let mut k = booted(true, 2048, 1, "");
    let mut lines = Vec::new();
    let out = run(&mut k, &params(Touch::Read, 2), &mut |l| {
        lines.push(l.to_string())
    })
    .unwrap();
    let p = &out.progress;
    // PAE + PTI: 5 PMD pages + PTE pages: text/data, heap, stack, 9 for the unaligned
    // 16 MiB segment (its last one shared with [vvar]).
    assert_eq!(p[1].get("VmPTE_child1"), Some((5 + 3 + 9) * 4));
    let d = p[2].get("PageTables").unwrap() - p[1].get("PageTables").unwrap();
    assert_eq!(d, 17 * 4);
    assert_eq!(
        p[2].get("KernelStack").unwrap() - p[1].get("KernelStack").unwrap(),
        8
    );
    assert!(lines
        .iter()
        .any(|l| l.starts_with("=====BEGIN /proc/") && l.ends_with("/maps=====")));
    assert!(lines
        .iter()
        .any(|l| l.contains("r--s 00000000 00:01 0          /SYSV00000000 (deleted)")));
    // One fault per page: no fault-around for SysV shm.
    let pages = 16 * 256;
    assert!(k.mm.counters.faults >= 3 * pages && k.mm.counters.faults < 3 * pages + 100);
}

#[test]
fn get_user_pages_faults_in_and_returns_the_pages() {
    let mut k = booted(true, 2048, 1, "");
    let p = k.exec_process(0, "drv", 0).unwrap();
    let id = k.shmget(0, 1 << 20).unwrap();
    let addr = k.shmat(0, p, id, false).unwrap();
    let task = k.mm.procs[p.0].task;
    let pfns = k.get_user_pages(task, addr, 256, true).unwrap();
    assert_eq!(pfns.len(), 256);
    // Pinned again: the same pages, no new faults.
    let faults = k.mm.counters.faults;
    assert_eq!(k.get_user_pages(task, addr, 256, false).unwrap(), pfns);
    assert_eq!(k.mm.counters.faults, faults);
    assert!(pfns.iter().all(|p| k.page_high_mem(*p)));
    // Outside any VMA: a segfault.
    assert_eq!(
        k.get_user_pages(task, 0x1000, 1, false),
        Err(MmError::Segv(0x1000))
    );
    // Each call took a reference per page (FOLL_GET): the segment's pages outlive
    // IPC_RMID until put_page drops them. (The newest pages also have their LRU batch's
    // reference until it drains.)
    k.node.lru_add_drain_all();
    assert!(pfns.iter().all(|&q| k.page_ref_count(q) == 3));
    k.shmdt(0, p, addr).unwrap();
    k.shm_rmid(0, id).unwrap();
    k.exit_process(0, p).unwrap();
    assert_eq!(k.node.vm_stat[N::NrPagetable], 0);
    assert!(pfns.iter().all(|&q| k.page_ref_count(q) == 2));
    for &q in pfns.iter().chain(&pfns) {
        k.put_page(q, 0);
    }
    assert!(pfns
        .iter()
        .all(|&q| k.node.mem_map[q].is_buddy() || k.page_ref_count(q) == 0));
    kernel::debug_vm::check_node(&k.node).unwrap();
}

#[test]
fn lowmem_page_tables_run_out_and_the_oom_killer_picks_a_child() {
    // Scaled down: vmalloc=768M leaves ~120 MiB of lowmem; with userpte=nohigh each child's
    // 256 MiB attach costs 5 PMD + 3 + 129 PTE pages of it, plus its kernel stack and pgd.
    let mut k = booted(true, 1536, 1, "userpte=nohigh vmalloc=768M");
    drain(&mut k);
    let before = free_pages(&k);
    let slab0 = slab_kb(&k);
    let prm = Params {
        size_mib: 256,
        n: 1000,
        touch: Touch::Populate,
        every: 10,
        timing: false,
        dumps: false,
        design: None,
    };
    let mut lines = Vec::new();
    let out = run(&mut k, &prm, &mut |l| lines.push(l.to_string())).unwrap();
    assert!(out.oom, "{:?}", &lines[lines.len().saturating_sub(5)..]);
    // The expectation from zone figures: Normal's free pages at n=0 above its min
    // watermark, over what a child takes from low memory (LowFree's fall per child).
    let low = |p: &kernel::workload::shmwork::Progress| -> f64 {
        [
            "DMA_free_pages",
            "DMA_pcp_pages",
            "Normal_free_pages",
            "Normal_pcp_pages",
        ]
        .iter()
        .map(|f| p.get(f).unwrap())
        .sum::<i64>() as f64
    };
    let p0 = &out.progress[0];
    let pa = out.progress.iter().find(|p| p.n == 10).unwrap();
    let pb = out
        .progress
        .iter()
        .rev()
        .find(|p| p.tag == "PROGRESS")
        .unwrap();
    let per_child = (low(pa) - low(pb)) / (pb.n - pa.n) as f64;
    use kernel::mmzone::{WMark, ZoneType};
    let normal = k.node.zone(ZoneType::Normal);
    let dma = k.node.zone(ZoneType::Dma);
    let kept = normal.wmark_pages(WMark::Min) as f64
        + dma.wmark_pages(WMark::Min) as f64
        + dma.lowmem_reserve[ZoneType::Normal as usize] as f64;
    let expected = (low(p0) - kept) / per_child;
    let per_child_kb = per_child * 4.0;
    let done = out.children_done as f64;
    assert!(
        (done - expected).abs() / expected < 0.02,
        "children done {done}, expected {expected:.1} (per child {per_child_kb} kB)"
    );
    let log: Vec<&str> = k.log.lines().iter().map(|m| m.text.as_str()).collect();
    assert!(
        log.iter().any(|l| l.contains(
            "invoked oom-killer: gfp_mask=0x400dc0(GFP_KERNEL_ACCOUNT|__GFP_ZERO), order=0"
        )),
        "{:?}",
        &log[log.len().saturating_sub(10)..]
    );
    assert!(log
        .iter()
        .any(|l| l.starts_with("Out of memory: Killed process")));
    assert!(log.iter().any(|l| l.starts_with("Mem-Info:")));
    // The task table leaves out what the OOM killer may never pick: the global init.
    assert!(log.iter().any(|l| l.starts_with("[  pid  ]")));
    assert!(
        !log.iter().any(|l| l.starts_with("[      1]")),
        "init listed"
    );
    assert!(lines.iter().any(|l| l.starts_with("OOM-EVENT child ")));
    finish(&mut k, &out).unwrap();
    drain(&mut k);
    assert_eq!(k.node.vm_stat[N::NrPagetable], 0);
    assert_eq!(free_pages(&k) + slab_kb(&k) - slab0, before);
}

/// `do_shmat` allocates the attach's own `struct file` (filp and its LSM blob) and its
/// `shm_file_data` (kmalloc-16); the detach frees them with the VMA.
#[test]
fn shmat_allocates_its_file_and_shmdt_frees_it() {
    let mut k = booted(true, 1024, 1, "");
    let p = k.exec_process(0, "shmwork", 1).expect("exec");
    let id = k.shmget(0, 1 << 20).expect("shmget");
    let addr = k.shmat(0, p, id, false).expect("shmat");
    let mm = k.mm.procs[p.0].mm.as_ref().expect("mm");
    let vma = mm
        .vmas
        .iter()
        .find(|v| v.start == addr)
        .expect("the segment's VMA");
    let names: Vec<String> = vma
        .anon_objs
        .iter()
        .filter_map(|(c, _)| k.slab.cache(*c).map(|c| c.name.clone()))
        .collect();
    assert_eq!(names, ["filp", "lsm_file_cache", "kmalloc-16"]);
    k.shmdt(0, p, addr).expect("shmdt");
    // Attach and detach many times: nothing stays behind in the slab.
    let slab0 = slab_kb(&k);
    for _ in 0..500 {
        let a = k.shmat(0, p, id, true).expect("shmat");
        k.shmdt(0, p, a).expect("shmdt");
    }
    assert_eq!(slab_kb(&k), slab0, "shmat/shmdt leaked slab objects");
}

/// linux-6.1's `pte_offset_map` the 6.5 way (`PteMapApi::KmapLocal`): the highmem PTE page
/// is mapped in a kmap_local slot of the task with preemption and page faults left on, where
/// 6.1's kmap_atomic turns both off; the workload's figures do not change, and every page
/// still comes back.
#[test]
fn pte_offset_map_by_kmap_local_leaves_the_walker_preemptible() {
    use kernel::design::PteMapApi;
    use kernel::mm::pgtable_user::{PteMap, WalkLen};
    for api in [PteMapApi::KmapAtomic, PteMapApi::KmapLocal] {
        let mut k = booted(true, 2048, 1, "");
        k.hm.pte_map = api;
        drain(&mut k);
        let before = free_pages(&k);
        let slab0 = slab_kb(&k);
        let out = run(&mut k, &params(Touch::Read, 2), &mut |_| {}).expect("run");
        assert_eq!(out.children_done, 2);
        finish(&mut k, &out).expect("finish");
        check_clean(&mut k, before, slab0, &format!("{api:?}"));
        // A process's PTE page of a segment, mapped as its fault maps it.
        let p = k.exec_process(0, "walker", 0).expect("exec");
        let id = k.shmget(0, 4 << 20).expect("shmget");
        let addr = k.shmat(0, p, id, false).expect("shmat");
        k.switch_to_process(0, p).expect("switch");
        k.user_access(0, p, addr, true).expect("fault");
        let pfn = k.mm.procs[p.0]
            .mm
            .as_ref()
            .and_then(|mm| {
                mm.pte_pages
                    .keys()
                    .filter_map(|key| mm.pte_pages.pfn(key))
                    .find(|p| k.page_high_mem(*p))
            })
            .expect("a highmem PTE page");
        let t = k.sched.current(0);
        let m = k.pte_map(0, pfn, WalkLen::Short).expect("pte_offset_map");
        let (preempt, faults_off) = (
            k.sched.preempt_count(0),
            k.sched.tasks[t.0].pagefault_disabled,
        );
        match api {
            PteMapApi::KmapAtomic => {
                assert!(matches!(m, PteMap::Atomic(_)));
                assert_eq!((preempt, faults_off), (1, 1));
            }
            PteMapApi::KmapLocal => {
                assert!(matches!(m, PteMap::Local(_)));
                assert_eq!((preempt, faults_off), (0, 0));
            }
        }
        assert_eq!(k.kmap_local_depth(0), 1);
        k.pte_unmap(0, m).expect("pte_unmap");
        assert_eq!(k.kmap_local_depth(0), 0);
        assert_eq!(k.sched.preempt_count(0), 0);
    }
}

/// Direct reclaim's one shrinker with objects: the proc superblock's LRU holds each child's
/// unused `oom_score_adj` dentry. The deferred work builds up while the priority falls,
/// then one pass (at least as many objects as the LRU holds, fewer than twice) kills the
/// entries with their directories, and the emptied slabs are the reclaim's progress.
#[test]
fn direct_reclaim_prunes_the_childrens_proc_entries_in_one_pass() {
    let mut k = booted(true, 1024, 1, "");
    let prm = Params {
        dumps: false,
        ..params(Touch::Read, 200)
    };
    // Stopped when all are done, before the program kills them.
    let mut stop = |_: &Kernel, e: Event| match e {
        Event::Stopped(_) => ControlFlow::Break(()),
        _ => ControlFlow::Continue(()),
    };
    let out = run_observed(&mut k, &prm, &mut |_| {}, &mut stop).unwrap();
    let unused = k.mm.proc_sb.dentry_lru.len() as u64;
    assert!(unused >= 200, "{unused} unused /proc dentries");
    let scanned = |k: &Kernel| k.node.vm_events[kernel::vmstat::VmEventItem::SlabsScanned];
    let slab0 = slab_kb(&k);
    let reclaimed = k.try_to_free_pages(kernel::gfp::GFP_KERNEL, 0);
    assert!(k.mm.proc_sb.dentry_lru.is_empty());
    for &c in &out.children {
        assert!(k.mm.procs[c.0].proc_entries.is_empty(), "child {c:?}");
    }
    assert!(
        (unused..2 * unused).contains(&scanned(&k)),
        "{}",
        scanned(&k)
    );
    assert!(reclaimed > 0);
    assert_eq!(reclaimed * 4, slab0 - slab_kb(&k));
    // Nothing left to prune: no progress, no scan.
    let before = scanned(&k);
    assert_eq!(k.try_to_free_pages(kernel::gfp::GFP_KERNEL, 0), 0);
    assert_eq!(scanned(&k), before);
    finish(&mut k, &out).unwrap();
}
