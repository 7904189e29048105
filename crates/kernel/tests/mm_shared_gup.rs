//! The missing pieces of user address spaces: shared anonymous mappings (a "/dev/zero"
//! shmem file shared across fork, seen through the simulated MMU), GUP references and pins
//! (a pinned page outlives its mapping), and Committed_AS charged and uncharged by the
//! mechanisms 6.1 uses — with every page back in the allocator at the end.

use kernel::config::KernelConfig;
use kernel::mm::gup::GUP_PIN_COUNTING_BIAS;
use kernel::mm::ProcId;
use kernel::vmstat::NodeStatItem as N;
use kernel::{boot, BootOptions, Kernel};
use machine::{Privilege, VirtAddr};

const CPU: usize = 0;

fn booted(pae: bool) -> Kernel {
    let preset = if pae { "debian-686-pae" } else { "debian-686" };
    let mut opts = BootOptions::new(2 << 30, 1, KernelConfig::preset(preset).expect("preset"));
    opts.runtime_profile = false;
    let mut k = boot(&opts).expect("boot");
    k.hm.debug.checker = true;
    k
}

fn meminfo_kb(k: &Kernel, label: &str) -> u64 {
    let mi = kernel::procfs::live::read(k, "meminfo").unwrap_or_default();
    mi.lines()
        .find(|l| l.starts_with(label))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// A user-mode store of `val` at `va` by process `p` (faults on first touch).
fn store(k: &mut Kernel, p: ProcId, va: u64, val: u32) {
    k.switch_to_process(CPU, p).expect("switch");
    k.user_access(CPU, p, va, true).expect("write fault");
    k.machine
        .write_virt_as(CPU, VirtAddr::new(va), &val.to_le_bytes(), Privilege::User)
        .expect("user store");
}

/// A user-mode load at `va` by process `p`.
fn load(k: &mut Kernel, p: ProcId, va: u64) -> u32 {
    k.switch_to_process(CPU, p).expect("switch");
    k.user_access(CPU, p, va, false).expect("read fault");
    let mut b = [0u8; 4];
    k.machine
        .read_virt_as(CPU, VirtAddr::new(va), &mut b, Privilege::User)
        .expect("user load");
    u32::from_le_bytes(b)
}

/// Free memory plus what SLUB kept of the slabs it grew (kB), after draining the lists.
fn free_with_slab(k: &mut Kernel, slab0: u64) -> u64 {
    k.node.drain_all_pages(None);
    meminfo_kb(k, "MemFree:") + (meminfo_kb(k, "Slab:") - slab0)
}

fn committed_pages(k: &Kernel) -> u64 {
    meminfo_kb(k, "Committed_AS:") / 4
}

#[test]
fn shared_anonymous_memory_is_shared_across_fork_and_freed_by_the_last_unmap() {
    for pae in [true, false] {
        let mut k = booted(pae);
        k.node.drain_all_pages(None);
        let (free0, slab0) = (meminfo_kb(&k, "MemFree:"), meminfo_kb(&k, "Slab:"));
        let p = k.exec_process(CPU, "prog", 1).expect("exec");
        let shmem0 = meminfo_kb(&k, "Shmem:");
        let rss0 = k.rss_after_sync(p);
        let a = k.mmap_shared_anon(CPU, p, 64 << 12, true).expect("mmap");
        assert_eq!(meminfo_kb(&k, "Shmem:"), shmem0, "pages only when touched");
        for i in 0..32u64 {
            store(&mut k, p, a + i * 4096, 0x5a00_0000 | i as u32);
        }
        assert_eq!(
            meminfo_kb(&k, "Shmem:"),
            shmem0 + 32 * 4,
            "shmem page cache"
        );
        let rss = k.rss_after_sync(p);
        assert_eq!(rss.shmem - rss0.shmem, 32, "pae={pae}: RssShmem");
        let c = k.fork(CPU, p).expect("fork");
        // The child sees the parent's writes (its own faults find the page cache) …
        for i in 0..32u64 {
            assert_eq!(load(&mut k, c, a + i * 4096), 0x5a00_0000 | i as u32);
        }
        // … and the parent sees the child's, on pages neither had touched too.
        store(&mut k, c, a + 5 * 4096, 0xc0de_0005);
        store(&mut k, c, a + 40 * 4096, 0xc0de_0040);
        assert_eq!(load(&mut k, p, a + 5 * 4096), 0xc0de_0005);
        assert_eq!(load(&mut k, p, a + 40 * 4096), 0xc0de_0040);
        assert_eq!(meminfo_kb(&k, "Shmem:"), shmem0 + 33 * 4, "one page cache");
        // /proc/PID/maps: the shmem file, shared, on the internal mount.
        let maps = kernel::procfs::pid::maps(&k, c);
        let line = maps
            .lines()
            .find(|l| l.ends_with("/dev/zero (deleted)"))
            .expect("a /dev/zero line");
        let f: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(f[0], format!("{:08x}-{:08x}", a, a + (64 << 12)));
        assert_eq!((f[1], f[2], f[3]), ("rw-s", "00000000", "00:01"));
        assert_eq!(
            line.find("/dev/zero"),
            Some(49),
            "show_map_vma's padding (32-bit: column 49)"
        );
        // munmap the middle in the parent: the tail keeps its file offset.
        k.munmap(CPU, p, a + 16 * 4096, 8 * 4096).expect("munmap");
        let maps = kernel::procfs::pid::maps(&k, p);
        assert!(
            maps.lines()
                .any(|l| l.starts_with(&format!("{:08x}-", a + 24 * 4096))
                    && l.contains(" 00018000 00:01 ")),
            "{maps}"
        );
        assert_eq!(load(&mut k, p, a + 40 * 4096), 0xc0de_0040);
        // The child exits: the parent's VMAs still hold the file.
        k.exit_process(CPU, c).expect("exit");
        assert_eq!(meminfo_kb(&k, "Shmem:"), shmem0 + 33 * 4);
        k.munmap(CPU, p, a, 64 * 4096).expect("munmap");
        assert_eq!(
            meminfo_kb(&k, "Shmem:"),
            shmem0,
            "the last unmap evicts the file"
        );
        k.exit_process(CPU, p).expect("exit");
        k.drop_binary_cache(CPU);
        assert_eq!(k.node.vm_stat[N::NrPagetable], 0);
        assert_eq!(k.node.vm_stat[N::NrShmem], 0);
        assert_eq!(
            free_with_slab(&mut k, slab0),
            free0,
            "pae={pae}: pages back"
        );
        assert_eq!(committed_pages(&k), 0);
        kernel::debug_vm::check_node(&k.node).expect("invariants");
    }
}

#[test]
fn gup_references_and_pins_keep_an_unmapped_page() {
    let mut k = booted(true);
    k.node.drain_all_pages(None);
    let (free0, slab0) = (meminfo_kb(&k, "MemFree:"), meminfo_kb(&k, "Slab:"));
    let p = k.exec_process(CPU, "prog", 1).expect("exec");
    let task = k.mm.proc(p).task;
    let a = k.mmap_anon(CPU, p, 4 << 12, true).expect("mmap");
    store(&mut k, p, a, 0xfeed_0001);
    let pfn = k.get_user_pages(task, a, 1, true).expect("gup")[0];
    assert_eq!(
        k.page_ref_count(pfn),
        3,
        "the mapping's reference + FOLL_GET + the CPU's lru_add batch"
    );
    k.node.lru_add_drain(CPU);
    assert_eq!(
        k.page_ref_count(pfn),
        2,
        "the mapping's reference + FOLL_GET"
    );
    assert!(!k.page_maybe_dma_pinned(pfn));
    let pinned = k.pin_user_pages(task, a, 4, true).expect("pin");
    assert_eq!(pinned[0], pfn);
    // The three pages the pin faulted in wait in the lru_add batch (its reference) first.
    k.node.lru_add_drain(CPU);
    assert_eq!(k.page_ref_count(pfn), 2 + GUP_PIN_COUNTING_BIAS);
    assert_eq!(k.page_ref_count(pinned[3]), 1 + GUP_PIN_COUNTING_BIAS);
    assert!(pinned.iter().all(|&q| k.page_maybe_dma_pinned(q)));
    assert_eq!(k.node.vm_stat[N::NrFollPinAcquired], 4);
    k.put_page(pfn, CPU);
    assert_eq!(k.page_ref_count(pfn), 1 + GUP_PIN_COUNTING_BIAS);
    // munmap while pinned: unmapped and uncounted, but the page stays with its data.
    let anon = k.node.vm_stat[N::NrAnonMapped];
    k.munmap(CPU, p, a, 4 << 12).expect("munmap");
    assert_eq!(k.node.vm_stat[N::NrAnonMapped], anon - 4);
    assert_eq!(k.page_ref_count(pfn), GUP_PIN_COUNTING_BIAS);
    assert!(!k.node.mem_map[pfn].is_buddy());
    let mut b = [0u8; 4];
    k.read_page_kmap(pfn, CPU, &mut b).expect("kmap read");
    assert_eq!(
        u32::from_le_bytes(b),
        0xfeed_0001,
        "the DMA target still holds it"
    );
    // The process exits too; the pins are the last references.
    k.exit_process(CPU, p).expect("exit");
    k.drop_binary_cache(CPU);
    assert!(
        free_with_slab(&mut k, slab0) < free0,
        "pinned pages still held"
    );
    k.unpin_user_pages(&pinned, CPU).expect("unpin");
    assert_eq!(k.node.vm_stat[N::NrFollPinReleased], 4);
    assert!(k.unpin_user_page(pfn, CPU).is_err(), "not pinned any more");
    assert_eq!(free_with_slab(&mut k, slab0), free0, "every page back");
    kernel::debug_vm::check_node(&k.node).expect("invariants");
}

#[test]
fn committed_as_follows_the_accountable_mappings() {
    let mut k = booted(true);
    assert_eq!(
        committed_pages(&k),
        0,
        "no userspace without the runtime profile"
    );
    let p = k.exec_process(CPU, "prog", 1).expect("exec");
    // The static binary: data 2 + RELRO 3 + bss 3 + heap 34 + stack 33 pages (the
    // reference's 300 kB per child).
    assert_eq!(committed_pages(&k), 75);
    let a = k.mmap_anon(CPU, p, 2048 << 12, true).expect("mmap rw");
    assert_eq!(committed_pages(&k), 75 + 2048);
    let r = k.mmap_anon(CPU, p, 16 << 12, false).expect("mmap ro");
    assert_eq!(
        committed_pages(&k),
        75 + 2048,
        "read-only private: not accountable"
    );
    k.munmap(CPU, p, a + (100 << 12), 48 << 12)
        .expect("munmap middle");
    assert_eq!(committed_pages(&k), 75 + 2000);
    k.munmap(CPU, p, r, 16 << 12).expect("munmap ro");
    assert_eq!(committed_pages(&k), 75 + 2000);
    let brk =
        k.mm.proc(p)
            .mm
            .as_ref()
            .unwrap()
            .vmas
            .iter()
            .find(|v| v.heap)
            .unwrap()
            .end;
    assert_eq!(
        k.brk(CPU, p, brk + (10 << 12)).expect("brk"),
        brk + (10 << 12)
    );
    assert_eq!(committed_pages(&k), 75 + 2010);
    k.brk(CPU, p, brk + (4 << 12)).expect("brk shrink");
    assert_eq!(committed_pages(&k), 75 + 2004);
    // Shared anonymous: the file is charged for its size, whatever the protection.
    let s = k
        .mmap_shared_anon(CPU, p, 100 << 12, false)
        .expect("shared");
    assert_eq!(committed_pages(&k), 75 + 2004 + 100);
    // SysV: shmem_acct_size unless SHM_NORESERVE.
    let id = k.shmget(CPU, 300 << 12).expect("shmget");
    let nr = k
        .shmget_flags(CPU, 50 << 12, true)
        .expect("shmget noreserve");
    assert_eq!(committed_pages(&k), 75 + 2004 + 100 + 300);
    // fork: the child's VM_ACCOUNT VMAs once more; the shared file is not charged again.
    let c = k.fork(CPU, p).expect("fork");
    assert_eq!(committed_pages(&k), 2 * (75 + 2004) + 100 + 300);
    k.exit_process(CPU, c).expect("exit child");
    assert_eq!(committed_pages(&k), 75 + 2004 + 100 + 300);
    k.munmap(CPU, p, s, 100 << 12).expect("munmap shared");
    assert_eq!(committed_pages(&k), 75 + 2004 + 300);
    k.shm_rmid(CPU, id).expect("rmid");
    k.shm_rmid(CPU, nr).expect("rmid");
    assert_eq!(committed_pages(&k), 75 + 2004);
    // OVERCOMMIT_GUESS: a single request larger than RAM is refused and not charged.
    assert!(k.mmap_anon(CPU, p, 3 << 30, true).is_err());
    assert_eq!(committed_pages(&k), 75 + 2004);
    k.exit_process(CPU, p).expect("exit");
    assert_eq!(committed_pages(&k), 0);
    assert_eq!(k.mm.acct.committed, 0);
}

/// Fork shares the private pages copy-on-write: the first writer gets a copy
/// (`wp_page_copy`), and the other, whose page nobody else maps any more, writes in place
/// (`wp_page_reuse`, one `pgreuse`).
#[test]
fn after_a_cow_copy_the_other_side_reuses_its_page() {
    let mut k = booted(true);
    let p = k.exec_process(CPU, "prog", 1).expect("exec");
    let a = k.mmap_anon(CPU, p, 1 << 12, true).expect("mmap");
    store(&mut k, p, a, 1);
    let c = k.fork(CPU, p).expect("fork");
    let reuse = |k: &Kernel| k.node.vm_events[kernel::vmstat::VmEventItem::Pgreuse];
    let (anon0, reuse0) = (k.node.vm_stat[N::NrAnonMapped], reuse(&k));
    store(&mut k, p, a, 2);
    assert_eq!(
        k.node.vm_stat[N::NrAnonMapped],
        anon0 + 1,
        "the parent's copy"
    );
    assert_eq!(reuse(&k), reuse0);
    store(&mut k, c, a, 3);
    assert_eq!(k.node.vm_stat[N::NrAnonMapped], anon0 + 1, "no second copy");
    assert_eq!(reuse(&k), reuse0 + 1, "the child's page is its own again");
    k.exit_process(CPU, c).expect("exit");
    k.exit_process(CPU, p).expect("exit");
}
