//! Every CONFIG_VMSPLIT_* boots on every RAM size with the real kernel's layout: the image
//! loaded at CONFIG_PHYSICAL_START and linked at PAGE_OFFSET + that, lowmem ending at the
//! VMALLOC_RESERVE-constrained MAXMEM, the fixmap/pkmap top unchanged; user processes live
//! below the split's TASK_SIZE and give everything back when they exit.

use kernel::config::{KernelConfig, VmSplit};
use kernel::printk::LogLevel;
use kernel::vmstat::NodeStatItem as N;
use kernel::{boot, BootOptions, Kernel};
use machine::e820::{E820Map, E820Type};
use machine::{Access, VirtAddr};

const MIB: u64 = 1 << 20;
const PAGE: u64 = 4096;
/// CONFIG_PHYSICAL_START of the Debian builds (16 MiB).
const PHYSICAL_START: u64 = 16 * MIB;
/// `__VMALLOC_RESERVE` at boot without `vmalloc=`.
const VMALLOC_RESERVE: u64 = 128 * MIB;

fn config(pae: bool, split: VmSplit) -> KernelConfig {
    let mut cfg =
        KernelConfig::preset(if pae { "debian-686-pae" } else { "debian-686" }).expect("preset");
    cfg.vmsplit = split;
    cfg
}

fn booted(pae: bool, split: VmSplit, ram: u64) -> Kernel {
    let opts = BootOptions::new(ram, 1, config(pae, split));
    boot(&opts).unwrap_or_else(|e| panic!("{split:?} pae={pae} {}M: {e}", ram >> 20))
}

/// PKMAP_BASE of the real 6.1 Debian kernels (NR_CPUS 32): `VMALLOC_END` + 2 pages. The
/// 3G reference boots' lowmem ends 128 MiB + 2 pages below it (879 / 875 MB LOWMEM).
fn real_pkmap_base(pae: bool) -> u64 {
    if pae {
        0xff00_0000
    } else {
        0xfec0_0000
    }
}

/// `max_low_pfn` as init_32.c computes it: MAXMEM = VMALLOC_END - PAGE_OFFSET -
/// __VMALLOC_RESERVE; all of RAM when it fits (lowmem_pfn_init), else MAXMEM_PFN
/// (highmem_pfn_init). `max_pfn` is the e820 end of RAM (below 4 GiB without PAE).
fn kernels_max_low_pfn(pae: bool, split: VmSplit, ram: u64) -> (u64, u64) {
    let e820 = E820Map::qemu_pc(ram).expect("e820");
    // e820__end_of_ram_pfn: usable RAM below MAX_ARCH_PFN (4 GiB without PAE).
    let limit = if pae { 1 << 24 } else { 1 << 20 };
    let max_pfn = e820
        .entries()
        .iter()
        .filter(|e| e.kind == E820Type::Usable && e.addr.as_u64() / PAGE < limit)
        .map(|e| (e.end() / PAGE).min(limit))
        .max()
        .expect("RAM");
    let vmalloc_end = real_pkmap_base(pae) - 2 * PAGE;
    let maxmem = vmalloc_end - split.page_offset() - VMALLOC_RESERVE;
    (max_pfn, max_pfn.min(maxmem / PAGE))
}

fn splits(pae: bool) -> Vec<VmSplit> {
    [
        VmSplit::Split3G,
        VmSplit::Split3GOpt,
        VmSplit::Split2G,
        VmSplit::Split2GOpt,
        VmSplit::Split1G,
    ]
    .into_iter()
    .filter(|s| !pae || s.allowed_with_pae())
    .collect()
}

fn check_boot(pae: bool, split: VmSplit, ram: u64) {
    let what = format!("{split:?} pae={pae} {}M", ram >> 20);
    let mut k = booted(pae, split, ram);
    let l = &k.layout;
    let page_offset = split.page_offset();
    assert_eq!(l.page_offset.as_u64(), page_offset, "{what}");
    // The top of the address space does not depend on the split.
    assert_eq!(l.areas.pkmap_base, real_pkmap_base(pae), "{what}");
    let (max_pfn, max_low_pfn) = kernels_max_low_pfn(pae, split, ram);
    assert_eq!(l.max_low_pfn.as_u64(), max_low_pfn, "{what}: max_low_pfn");
    assert_eq!(l.max_pfn.as_u64(), max_pfn, "{what}: max_pfn");
    // high_memory and VMALLOC_START follow lowmem's end.
    let high_memory = page_offset + max_low_pfn * PAGE;
    assert_eq!(l.high_memory.as_u64(), high_memory, "{what}");
    let vmalloc_start = high_memory + 8 * MIB;
    assert_eq!(l.vmalloc_start.as_u64(), vmalloc_start, "{what}");
    assert_eq!(l.vmalloc_end.as_u64(), real_pkmap_base(pae) - 2 * PAGE);
    // The zones: Normal ends at max_low_pfn, HighMem exists exactly when RAM is left above.
    let zone = |n: &str| *l.zones.iter().find(|z| z.name == n).expect(n);
    assert_eq!(zone("Normal").end.as_u64(), max_low_pfn, "{what}");
    assert_eq!(!zone("HighMem").is_empty(), max_pfn > max_low_pfn, "{what}");
    let console: Vec<&str> = k.log.console().collect();
    let normal_line = format!(
        "  Normal   [mem 0x0000000001000000-{:#018x}]",
        max_low_pfn * PAGE - 1
    );
    assert!(
        console.contains(&normal_line.as_str()),
        "{what}: {normal_line}"
    );
    if max_pfn > max_low_pfn {
        let high = format!("{}MB HIGHMEM available.", (max_pfn - max_low_pfn) >> 8);
        assert!(console.contains(&high.as_str()), "{what}: {high}");
    } else {
        assert!(console.contains(&"  HighMem  empty"), "{what}");
    }
    let low = format!("{}MB LOWMEM available.", max_low_pfn >> 8);
    assert!(console.contains(&low.as_str()), "{what}: {low}");
    // The pre-5.7 layout block the model prints: lowmem from PAGE_OFFSET, the image linked
    // at PAGE_OFFSET + CONFIG_PHYSICAL_START.
    let block = l.virtual_layout_lines();
    let lowmem = format!("    lowmem  : 0x{page_offset:08x} - 0x{high_memory:08x}");
    assert!(
        block.iter().any(|x| x.starts_with(&lowmem)),
        "{what}: {block:?}"
    );
    let text = format!("      .text : 0x{:08x} - ", page_offset + PHYSICAL_START);
    assert!(
        block.iter().any(|x| x.starts_with(&text)),
        "{what}: {block:?}"
    );
    // Nothing went wrong.
    let bad: Vec<&str> = k
        .log
        .lines()
        .iter()
        .filter(|m| m.level <= LogLevel::Warning)
        .map(|m| m.text.as_str())
        .collect();
    assert!(bad.is_empty(), "{what}: {bad:?}");
    // The image is loaded at CONFIG_PHYSICAL_START and its text reachable through the MMU
    // at the split's link address; so is the last lowmem page through the direct map.
    let cfg = k.config.clone();
    assert_eq!(cfg.phys_start(), PHYSICAL_START);
    assert_eq!(cfg.image().text, page_offset + PHYSICAL_START, "{what}");
    let text = k
        .machine
        .translate(0, VirtAddr::new(cfg.image().text), Access::KERNEL_READ)
        .unwrap_or_else(|e| panic!("{what}: _text: {e:?}"));
    assert_eq!(text.as_u64(), PHYSICAL_START, "{what}");
    let last_low = (max_low_pfn - 1) * PAGE;
    let pa = k
        .machine
        .translate(
            0,
            VirtAddr::new(page_offset + last_low),
            Access::KERNEL_READ,
        )
        .unwrap_or_else(|e| panic!("{what}: last lowmem page: {e:?}"));
    assert_eq!(pa.as_u64(), last_low, "{what}");
    // Nothing of the direct map below PAGE_OFFSET: user space is empty in swapper.
    assert!(
        k.machine
            .translate(0, VirtAddr::new(page_offset - PAGE), Access::KERNEL_READ)
            .is_err(),
        "{what}: mapped below PAGE_OFFSET"
    );
}

#[test]
fn every_split_boots_without_pae() {
    for split in splits(false) {
        for mib in [512, 1024, 2048, 4096] {
            check_boot(false, split, mib * MIB);
        }
    }
}

#[test]
fn every_split_boots_with_pae() {
    for split in splits(true) {
        for mib in [512, 1024, 2048, 4096, 8192] {
            check_boot(true, split, mib * MIB);
        }
    }
}

fn meminfo_kb(k: &Kernel, field: &str) -> u64 {
    let mi = kernel::procfs::live::read(k, "meminfo").expect("meminfo");
    mi.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{field}"))
}

/// A process attaches a segment, its forked child too; both touch it; all exit.
fn shm_workload(pae: bool, split: VmSplit) {
    let what = format!("{split:?} pae={pae}");
    let mut k = booted(pae, split, 2048 * MIB);
    // Its processes stand for the boot's: the profile's pages for those go back.
    k.release_boot_userspace(0);
    k.hm.debug.checker = true;
    k.hm.debug.debug_highmem = true;
    k.node.drain_all_pages(None);
    let before = meminfo_kb(&k, "MemFree:");
    let slab0 = meminfo_kb(&k, "Slab:");
    // The boot's initramfs is shmem too.
    let shmem0 = meminfo_kb(&k, "Shmem:");
    let task_size = k.task_size();
    assert_eq!(task_size, split.page_offset(), "{what}");

    let p = k.exec_process(0, "shmwork", 1).expect("exec");
    let vmas = &k.mm.procs[p.0].mm.as_ref().expect("mm").vmas;
    assert!(vmas.iter().all(|v| v.end <= task_size), "{what}: {vmas:?}");
    let stack = vmas.iter().find(|v| v.stack).expect("stack");
    assert!(
        task_size - stack.end < 16 * MIB,
        "{what}: stack far below TASK_SIZE"
    );
    let size = 8 * MIB;
    let id = k.shmget(0, size).expect("shmget");
    let addr = k.shmat(0, p, id, false).expect("shmat");
    assert!(
        addr + size <= task_size - 128 * MIB,
        "{what}: {addr:#x} above mmap_base"
    );
    assert!(
        addr > task_size / 3,
        "{what}: {addr:#x} below TASK_UNMAPPED_BASE"
    );
    for off in (0..size).step_by(PAGE as usize) {
        k.user_access(0, p, addr + off, true).expect("write");
    }
    let child = k.fork(0, p).expect("fork");
    k.switch_to_process(0, child).expect("switch");
    let caddr = k.shmat(0, child, id, true).expect("child shmat");
    for off in (0..size).step_by(PAGE as usize) {
        k.user_access(0, child, caddr + off, false).expect("read");
    }
    // The segment only: the binary's file on the rootfs is one of the boot's initramfs
    // files, already in the page cache (Shmem) before the exec.
    assert_eq!(meminfo_kb(&k, "Shmem:") - shmem0, size >> 10, "{what}");
    k.shm_rmid(0, id).expect("rmid");
    k.exit_process(0, child).expect("child exit");
    k.exit_process(0, p).expect("exit");
    // The binary's page cache goes as an unmounted initramfs file would.
    k.drop_binary_cache(0);

    k.node.drain_all_pages(None);
    assert_eq!(
        k.node.vm_stat[N::NrPagetable],
        0,
        "{what}: page tables left"
    );
    let initramfs = k.profile.userspace.initramfs_pages as i64;
    assert_eq!(k.node.vm_stat[N::NrShmem], initramfs, "{what}: shmem left");
    assert_eq!(k.node.vm_stat[N::NrAnonMapped], 0, "{what}: anon left");
    let slab = meminfo_kb(&k, "Slab:") - slab0;
    assert_eq!(
        meminfo_kb(&k, "MemFree:") + slab,
        before,
        "{what}: not all freed"
    );
    kernel::debug_vm::check_node(&k.node).unwrap_or_else(|e| panic!("{what}: {e:?}"));
    assert!(
        k.hm.debug.reports.is_empty(),
        "{what}: {:#?}",
        k.hm.debug.reports
    );
    let bugs: Vec<&str> = k
        .log
        .lines()
        .iter()
        .filter(|m| m.text.starts_with("BUG") || m.text.starts_with("WARNING"))
        .map(|m| m.text.as_str())
        .collect();
    assert!(bugs.is_empty(), "{what}: {bugs:?}");
}

#[test]
fn shm_processes_on_the_1g_split() {
    shm_workload(true, VmSplit::Split1G);
    shm_workload(false, VmSplit::Split1G);
}

#[test]
fn shm_processes_on_the_2g_splits() {
    shm_workload(true, VmSplit::Split2G);
    shm_workload(false, VmSplit::Split2G);
    shm_workload(false, VmSplit::Split2GOpt);
}
