//! `/proc/PID/status` (fs/proc/array.c, task_mem() of fs/proc/task_mmu.c) and
//! `/proc/PID/maps` (show_map_vma) in 6.1's format.

use crate::mm::{ProcId, Rss, VmaKind};
use crate::Kernel;

/// `/proc/PID/status` of process `p` (sleeping in pause(), as the workload's children are).
pub fn status(k: &Kernel, p: ProcId) -> String {
    let pr = &k.mm.procs[p.0];
    let mut o = String::new();
    let mut l = |s: String| {
        o.push_str(&s);
        o.push('\n');
    };
    l(format!("Name:\t{}", pr.comm));
    l("Umask:\t0022".into());
    l("State:\tS (sleeping)".into());
    l(format!("Tgid:\t{}", pr.pid));
    l("Ngid:\t0".into());
    l(format!("Pid:\t{}", pr.pid));
    l(format!("PPid:\t{}", pr.ppid));
    l("TracerPid:\t0".into());
    l("Uid:\t0\t0\t0\t0".into());
    l("Gid:\t0\t0\t0\t0".into());
    // NR_OPEN_DEFAULT: BITS_PER_LONG file descriptors in the initial fdtable.
    l(format!("FDSize:\t{}", long_bits(k)));
    l("Groups:\t ".into());
    l(format!("NStgid:\t{}", pr.pid));
    l(format!("NSpid:\t{}", pr.pid));
    l("NSpgid:\t0".into());
    l("NSsid:\t0".into());
    if let Some(mm) = &pr.mm {
        let kb = |pages: u64| format!("{:8} kB", pages * 4);
        let total = mm.total_vm();
        let data: u64 = mm
            .vmas
            .iter()
            .filter(|v| v.write && !v.shared && !v.stack)
            .map(|v| v.pages())
            .sum();
        let stk: u64 = mm.vmas.iter().filter(|v| v.stack).map(|v| v.pages()).sum();
        let exe: u64 = mm
            .vmas
            .iter()
            .filter(|v| v.exec && !v.write && matches!(v.kind, VmaKind::File { .. }))
            .map(|v| v.pages())
            .sum();
        // VmLib: executable mappings that are not the binary (the vDSO).
        let lib: u64 = mm
            .vmas
            .iter()
            .filter(|v| v.exec && matches!(v.kind, VmaKind::Special | VmaKind::Vdso))
            .map(|v| v.pages())
            .sum();
        l(format!("VmPeak:\t{}", kb(mm.hiwater_vm.max(total))));
        l(format!("VmSize:\t{}", kb(total)));
        l(format!("VmLck:\t{}", kb(0)));
        l(format!("VmPin:\t{}", kb(0)));
        l(format!(
            "VmHWM:\t{}",
            kb(mm.hiwater_rss.max(mm.rss.total()))
        ));
        l(format!("VmRSS:\t{}", kb(mm.rss.total())));
        l(format!("RssAnon:\t{}", kb(Rss::pages(mm.rss.anon))));
        l(format!("RssFile:\t{}", kb(Rss::pages(mm.rss.file))));
        l(format!("RssShmem:\t{}", kb(Rss::pages(mm.rss.shmem))));
        l(format!("VmData:\t{}", kb(data)));
        l(format!("VmStk:\t{}", kb(stk)));
        l(format!("VmExe:\t{}", kb(exe)));
        l(format!("VmLib:\t{}", kb(lib)));
        l(format!("VmPTE:\t{:8} kB", mm.pgtables_kb()));
        l(format!("VmSwap:\t{}", kb(0)));
        l(format!("HugetlbPages:\t{}", kb(0)));
        l("CoreDumping:\t0".into());
        l("THP_enabled:\t1".into());
    }
    l("Threads:\t1".into());
    // RLIMIT_SIGPENDING: fork_init gives init max_threads / 2, every task inherits it.
    l(format!("SigQ:\t0/{}", k.max_threads / 2));
    for s in ["SigPnd", "ShdPnd", "SigBlk", "SigIgn", "SigCgt"] {
        l(format!("{s}:\t0000000000000000"));
    }
    l("CapInh:\t0000000000000000".into());
    for s in ["CapPrm", "CapEff", "CapBnd"] {
        l(format!("{s}:\t000001ffffffffff"));
    }
    l("CapAmb:\t0000000000000000".into());
    l("NoNewPrivs:\t0".into());
    l("Seccomp:\t0".into());
    l("Seccomp_filters:\t0".into());
    // The CPU's: QEMU's qemu32 (family 6, an Intel model) has the bug; qemu64 (AMD family
    // 15, on the no-SSB list) has not. The reference machines run the one of their kernel.
    l(format!(
        "Speculation_Store_Bypass:\t{}",
        if is_64bit(k) {
            "not vulnerable"
        } else {
            "vulnerable"
        }
    ));
    l("SpeculationIndirectBranch:\talways enabled".into());
    let ncpu = k.machine.cpus.len();
    let mask = (1u64 << ncpu.min(63)) - 1;
    l(format!("Cpus_allowed:\t{mask:x}"));
    l(format!(
        "Cpus_allowed_list:\t{}",
        if ncpu == 1 {
            "0".to_string()
        } else {
            format!("0-{}", ncpu - 1)
        }
    ));
    l(format!("Mems_allowed:\t{}", mems_allowed(k)));
    l("Mems_allowed_list:\t0".into());
    l("voluntary_ctxt_switches:\t1".into());
    l("nonvoluntary_ctxt_switches:\t0".into());
    o
}

/// `/proc/PID/maps`.
pub fn maps(k: &Kernel, p: ProcId) -> String {
    let mut o = String::new();
    let Some(mm) = &k.mm.procs[p.0].mm else {
        return o;
    };
    for v in &mm.vmas {
        let prot = format!(
            "{}{}{}{}",
            if v.read { 'r' } else { '-' },
            if v.write { 'w' } else { '-' },
            if v.exec { 'x' } else { '-' },
            if v.shared { 's' } else { 'p' }
        );
        let (off, dev, ino) = match &v.kind {
            VmaKind::File { pgoff } => (pgoff * 4096, "00:02", 8u64),
            VmaKind::Shm { seg } => (0, "00:01", k.mm.shm[*seg].id as u64),
            VmaKind::ShmemZero { file, pgoff } => (
                pgoff * 4096,
                "00:01",
                k.mm.shmem_zero.get(*file).map_or(0, |s| s.id as u64),
            ),
            _ => (0, "00:00", 0),
        };
        let head = format!(
            "{:08x}-{:08x} {} {:08x} {} {}",
            v.start, v.end, prot, off, dev, ino
        );
        if v.name.is_empty() {
            o.push_str(&format!("{head} \n"));
        } else {
            // show_map_vma pads to 25 + sizeof(void *) * 6 - 1 columns (the kernel's pointer
            // size, also for a compat task).
            let width = 25 + long_bits(k) / 8 * 6 - 1;
            o.push_str(&format!("{:<width$} {}\n", format!("{head} "), v.name));
        }
    }
    o
}

fn is_64bit(k: &Kernel) -> bool {
    k.config.arch == crate::config::Arch::X86_64
}

/// BITS_PER_LONG of the kernel.
fn long_bits(k: &Kernel) -> usize {
    if is_64bit(k) {
        64
    } else {
        32
    }
}

/// `%*pb` of node 0 in a nodemask of MAX_NUMNODES bits: 1 on the i386 kernels (no NUMA),
/// 1024 on amd64 (NODES_SHIFT 10: 32 comma-separated 32-bit words).
fn mems_allowed(k: &Kernel) -> String {
    if !is_64bit(k) {
        return "1".to_string();
    }
    let mut words = vec!["00000000"; 31];
    words.push("00000001");
    words.join(",")
}
