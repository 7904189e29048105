//! The shm workload paths: boot 8 GiB PAE, create and populate a 512 MiB SysV segment, then
//! run N children one after another that each attach it and touch every page, so that
//! `(I(2) - I(1)) / 131072` under `valgrind --tool=callgrind` is the host instructions one
//! page of one child costs, its share of the child's exit included (boot, populate and
//! process setup cancel out).
//!
//! `shm-populate`: MADV_POPULATE_READ (get_user_pages → handle_mm_fault per page);
//! `shm-read`: a user read per page (TLB miss, walk, #PF, handle_mm_fault with the PTE page
//! mapped through kmap_atomic, retry).
//!
//! An optional third argument names the kernel design (`highpte-2.5`, `pte-highmem-2.4`):
//! the same workload with that design's way of mapping the highmem PTE page; `x86_64` runs it
//! on the 64-bit kernel (8 GiB, 4-level tables, every PTE page in the direct map).

/// Which kernel runs the workload.
#[derive(Clone, Copy, Debug)]
pub enum ShmKernel {
    /// The 8 GiB PAE kernel (`64GB-highpte`) under this design.
    Design(KernelDesign),
    /// The 64-bit kernel.
    X86_64,
}

use kernel::config::KernelConfig;
use kernel::design::KernelDesign;
use kernel::workload::shmwork::{run as shmwork, Params, Touch};
use kernel::{boot, BootOptions};

/// Run the workload with `n` children; returns the fault count as the check value.
pub fn run(path: &str, n: u64, kd: ShmKernel) -> Result<u64, String> {
    let touch = match path {
        "shm-populate" => Touch::Populate,
        "shm-read" => Touch::Read,
        _ => return Err(format!("{path}: not an shm path")),
    };
    let n = u32::try_from(n).map_err(|_| format!("{path}: too many children ({n})"))?;
    let cfg = match kd {
        ShmKernel::Design(_) => {
            KernelConfig::preset("debian-686-pae").map_err(|e| e.to_string())?
        }
        ShmKernel::X86_64 => kernel::variant::Variant::X86_64.config(),
    };
    let mut opts = BootOptions::new(8 << 30, 1, cfg);
    if let ShmKernel::Design(design) = kd {
        opts.design = design;
    }
    let mut k = boot(&opts).map_err(|e| e.to_string())?;
    // The hardware runs' TLB: Core 2's DTLB1.
    for c in &mut k.machine.cpus {
        c.set_tlb_geometry(machine::tlb::TlbGeometry::Core2);
    }
    let prm = Params {
        size_mib: 512,
        n,
        touch,
        every: 1 << 30,
        timing: false,
        dumps: false,
        design: None,
    };
    let out = shmwork(&mut k, &prm, &mut |_| {}).map_err(|e| e.to_string())?;
    if out.children_done != n {
        return Err(format!(
            "{path}: {} of {n} children done",
            out.children_done
        ));
    }
    Ok(k.mm.counters.faults)
}
