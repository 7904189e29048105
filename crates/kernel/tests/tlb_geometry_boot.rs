//! The kernel boots CPUs with the hardware TLB geometry (Core 2's set-associative DTLB,
//! which evicts) unless asked for the never-evicting debug one, and on a kernel whose
//! flushes are all correct the geometry changes nothing the kernel can see: the same
//! faults, the same /proc, only the TLB's own counters differ.

use kernel::config::KernelConfig;
use kernel::workload::shmwork::{run, Params, Touch};
use kernel::{boot, BootOptions, Kernel};
use machine::TlbGeometry;

fn booted(tlb: Option<TlbGeometry>) -> Kernel {
    let cfg = KernelConfig::preset("debian-686-pae").expect("preset");
    let mut opts = BootOptions::new(2 << 30, 1, cfg);
    opts.runtime_profile = false;
    if let Some(g) = tlb {
        opts.tlb = g;
    }
    boot(&opts).expect("boot")
}

/// Two children reading every page of a 16 MiB segment (4096 pages: far more than the
/// 256 entries of the hardware TLB).
fn workload(k: &mut Kernel) {
    let prm = Params {
        size_mib: 16,
        n: 2,
        touch: Touch::Read,
        every: 1 << 30,
        timing: false,
        dumps: false,
        design: None,
    };
    let out = run(k, &prm, &mut |_| {}).expect("shmwork");
    assert_eq!(out.children_done, 2);
}

#[test]
fn the_default_is_the_hardware_geometry() {
    let k = booted(None);
    for c in &k.machine.cpus {
        assert_eq!(c.tlb().geometry(), TlbGeometry::Core2);
    }
    let k = booted(Some(TlbGeometry::Unbounded));
    assert_eq!(k.machine.cpus[0].tlb().geometry(), TlbGeometry::Unbounded);
}

#[test]
fn the_geometry_changes_only_the_tlbs_own_counters() {
    let mut hw = booted(None);
    let mut dbg = booted(Some(TlbGeometry::Unbounded));
    workload(&mut hw);
    workload(&mut dbg);
    let (h, d) = (
        hw.machine.cpus[0].counters(),
        dbg.machine.cpus[0].counters(),
    );
    assert!(h.tlb_evictions > 0, "a 256-entry TLB must evict");
    assert_eq!(d.tlb_evictions, 0, "the debug TLB never evicts");
    assert_eq!(hw.mm.counters.faults, dbg.mm.counters.faults);
    for f in ["meminfo", "vmstat", "zoneinfo"] {
        let a = kernel::procfs::live::read(&hw, f).expect("proc");
        let b = kernel::procfs::live::read(&dbg, f).expect("proc");
        assert_eq!(a, b, "/proc/{f} depends on the TLB geometry");
    }
}
