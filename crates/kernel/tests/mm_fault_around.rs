//! Fault-around (`do_read_fault` → `do_fault_around` → `filemap_map_pages`) through the
//! simulated MMU: one read fault maps the cached pages of its window (aligned, clipped to
//! the VMA and the PTE page), skips pages not in the page cache, and counts one pgfault;
//! a SysV segment (no `map_pages`) takes a fault per page. And SPLIT_RSS_COUNTING: the
//! mm's counters see a task's faults on every 66th fault.

use kernel::config::KernelConfig;
use kernel::mm::{ProcId, PAGE_SIZE};
use kernel::vmstat::{NodeStatItem as N, VmEventItem};
use kernel::{boot, BootOptions, Kernel};
use machine::{Access, VirtAddr};

const CPU: usize = 0;
/// The binary's text VMA and the file page its first page is.
const TEXT: (u64, u64) = (0x0804_9000, 0x080d_7000);
const TEXT_PGOFF: u64 = 1;

fn booted(pae: bool) -> Kernel {
    let preset = if pae { "debian-686-pae" } else { "debian-686" };
    let mut opts = BootOptions::new(1 << 30, 1, KernelConfig::preset(preset).expect("preset"));
    opts.runtime_profile = false;
    let mut k = boot(&opts).expect("boot");
    k.hm.debug.checker = true;
    k
}

fn pgfault(k: &Kernel) -> u64 {
    k.node.vm_events[VmEventItem::Pgfault]
}

/// Whether `va` is mapped for a user read in the current address space (a TLB lookup and
/// walk, no fault handled).
fn mapped(k: &mut Kernel, va: u64) -> bool {
    k.machine
        .translate(CPU, VirtAddr::new(va), Access::USER_READ)
        .is_ok()
}

/// The pages of `[lo, hi)` that are mapped.
fn mapped_pages(k: &mut Kernel, lo: u64, hi: u64) -> Vec<u64> {
    (lo..hi)
        .step_by(PAGE_SIZE as usize)
        .filter(|&a| mapped(k, a))
        .collect()
}

fn pages(lo: u64, n: u64) -> Vec<u64> {
    (0..n).map(|i| lo + i * PAGE_SIZE).collect()
}

/// A read of `va` by `p`: the pgfaults it took and the RssShmem pages it added.
fn read(k: &mut Kernel, p: ProcId, va: u64) -> (u64, i64) {
    let (f0, r0) = (pgfault(k), k.rss_after_sync(p).shmem);
    k.switch_to_process(CPU, p).expect("switch");
    k.user_access(CPU, p, va, false).expect("read");
    (pgfault(k) - f0, k.rss_after_sync(p).shmem - r0)
}

#[test]
fn a_read_fault_maps_its_window_of_cached_pages() {
    for pae in [true, false] {
        let mut k = booted(pae);
        let p = k.exec_program(CPU, "prog", 1, &[]).expect("exec");
        let text_file_page = |va: u64| TEXT_PGOFF + (va - TEXT.0) / PAGE_SIZE;

        // Inside the text: the aligned 64 KiB around the address, one fault.
        assert_eq!(read(&mut k, p, 0x0807_d590), (1, 16), "pae={pae}");
        assert_eq!(
            mapped_pages(&mut k, 0x0806_f000, 0x0808_1000),
            pages(0x0807_0000, 16)
        );
        assert_eq!(read(&mut k, p, 0x0807_0123), (0, 0), "inside the window");
        // The VMA starts inside the aligned window: 16 pages from its start, not the
        // header page below (another VMA).
        assert_eq!(read(&mut k, p, 0x0804_9e80), (1, 16));
        assert_eq!(
            mapped_pages(&mut k, 0x0804_8000, 0x0805_a000),
            pages(TEXT.0, 16)
        );
        // The VMA ends inside it.
        assert_eq!(read(&mut k, p, 0x080d_4590), (1, 7));
        assert!(!mapped(&mut k, TEXT.1), "the rodata VMA is not mapped");

        // Pages the page cache does not hold are skipped.
        let gone: Vec<(u64, machine::Pfn)> = [0x080b_2000u64, 0x080b_3000]
            .iter()
            .map(|&va| {
                let fpg = text_file_page(va);
                (fpg, k.mm.binary_pages.remove(&fpg).expect("cached"))
            })
            .collect();
        assert_eq!(read(&mut k, p, 0x080b_1d80), (1, 14));
        let got = mapped_pages(&mut k, 0x080b_0000, 0x080c_0000);
        assert_eq!(got.len(), 14);
        assert!(!got.contains(&0x080b_2000) && !got.contains(&0x080b_3000));
        k.mm.binary_pages.extend(gone);

        k.exit_process(CPU, p).expect("exit");
        k.drop_binary_cache(CPU);
        assert_eq!(k.node.vm_stat[N::NrShmem], 0);
        assert_eq!(k.node.vm_stat[N::NrPagetable], 0);
    }
}

#[test]
fn shmem_files_fault_around_sysv_segments_do_not() {
    let mut k = booted(true);
    let p = k.exec_program(CPU, "prog", 1, &[]).expect("exec");
    // A shared anonymous mapping ("/dev/zero", shmem_vm_ops): pages 3 and 5 cached by
    // the parent's writes.
    let a = k
        .mmap_shared_anon(CPU, p, 32 * PAGE_SIZE, true)
        .expect("mmap");
    // A 64 KiB-aligned window inside the mapping.
    let w = (a + 0xffff) & !0xffff;
    for i in [3, 5] {
        k.user_access(CPU, p, w + i * PAGE_SIZE, true)
            .expect("write");
    }
    let c = k.fork(CPU, p).expect("fork");
    // The child's read of page 4, not cached: fault-around maps 3 and 5, then ->fault()
    // adds 4 to the page cache and maps it. One fault.
    assert_eq!(read(&mut k, c, w + 4 * PAGE_SIZE), (1, 3));
    assert_eq!(
        mapped_pages(&mut k, a, a + 32 * PAGE_SIZE),
        pages(w + 3 * PAGE_SIZE, 3)
    );

    // A SysV segment (shm_vm_ops: no map_pages): the parent populates it, the child's
    // reads fault once a page.
    let id = k.shmget(CPU, 16 * PAGE_SIZE).expect("shmget");
    let q = k.shmat(CPU, p, id, false).expect("shmat");
    k.switch_to_process(CPU, p).expect("switch");
    for i in 0..16 {
        k.user_access(CPU, p, q + i * PAGE_SIZE, true)
            .expect("populate");
    }
    let cq = k.shmat(CPU, c, id, true).expect("child shmat");
    for i in 0..16 {
        assert_eq!(read(&mut k, c, cq + i * PAGE_SIZE), (1, 1), "page {i}");
    }
    for x in [c, p] {
        k.exit_process(CPU, x).expect("exit");
    }
    k.shm_rmid(CPU, id).expect("rmid");
    k.drop_binary_cache(CPU);
    assert_eq!(k.node.vm_stat[N::NrShmem], 0);
}

#[test]
fn the_mm_sees_a_tasks_faults_on_every_66th() {
    let mut k = booted(true);
    let p = k.exec_program(CPU, "prog", 1, &[]).expect("exec");
    let c = k.fork(CPU, p).expect("fork");
    let inherited = k.mm.proc(c).mm.as_ref().unwrap().rss;
    let id = k.shmget(CPU, 200 * PAGE_SIZE).expect("shmget");
    let q = k.shmat(CPU, c, id, false).expect("shmat");
    k.switch_to_process(CPU, c).expect("switch");
    let synced = |k: &Kernel| k.mm.proc(c).mm.as_ref().unwrap().rss.shmem - inherited.shmem;
    // Faults 1..65 stay in the task; the 66th adds them (not its own) to the mm; the 132nd
    // faults 66..131, the 198th 132..197.
    for (fault, seen) in [(65, 0), (66, 65), (131, 65), (132, 131), (200, 197)] {
        let done = k.rss_after_sync(c).shmem - inherited.shmem;
        k.user_access_run(
            CPU,
            c,
            q + done as u64 * PAGE_SIZE,
            fault - done as u64,
            false,
        )
        .expect("reads");
        assert_eq!(synced(&k), seen, "after {fault} faults");
        assert_eq!(k.rss_after_sync(c).shmem - inherited.shmem, fault as i64);
    }
    let status = kernel::procfs::pid::status(&k, c);
    let shmem_line = status.lines().find(|l| l.starts_with("RssShmem:")).unwrap();
    assert_eq!(
        shmem_line,
        format!("RssShmem:\t{:8} kB", (inherited.shmem + 197) * 4)
    );
    for x in [c, p] {
        k.exit_process(CPU, x).expect("exit");
    }
    k.shm_rmid(CPU, id).expect("rmid");
    k.drop_binary_cache(CPU);
    kernel::debug_vm::check_node(&k.node).expect("invariants");
}
