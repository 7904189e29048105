//! The boot of the simulated kernel, in the order Linux 6.1 i386 does it.
//!
//! `boot()` replays `start_kernel()` as far as memory management goes, one function per
//! phase of the kernel's own: `head_32::startup_32` (provisional page tables, paging on in
//! the simulated CPU), `setup_arch::setup_arch` (the firmware map and layout, memblock and
//! its reservations, `init_mem_mapping`'s direct map with CR3 switched to it, the relocated
//! initrd, `native_pagetable_init` → `paging_init`: pkmap, zones and mem_map),
//! `percpu::setup_per_cpu_areas`, then `start_kernel.rs`: zonelists, the early hash tables,
//! `trap_init`, and `mm_init` → `mem_init` (swiotlb, every free page to the buddy
//! allocator). The initcalls that change free memory or the kernel page tables (late.rs:
//! the SMP alternatives, the initrd and the init sections freed, khugepaged raising
//! min_free_kbytes, mark_rodata_ro) follow in initcall order, so /proc after `boot()`
//! matches /proc after a real boot.
//!
//! From the moment paging is on, the kernel's own virtual addresses translate through the
//! simulated MMU; `boot()` checks that they do, so a wrong page-table entry stops the boot
//! with a kernel-style error rather than going unnoticed.

pub mod brk;
mod checks;
pub(crate) mod dmi;
pub mod hash;
pub mod head_32;
mod init;
pub mod init_32;
mod initrd;
mod late;
mod percpu;
pub mod profile;
mod profile_slab;
mod runtime;
pub use runtime::BootUserspaceHeld;
mod pti;
mod realmode;
mod resources;
mod setup_arch;
mod start_kernel;
pub mod vm_areas;

use crate::cmdline::CmdLine;
use crate::config::KernelConfig;
use crate::highmem::{KmapLocal, KmapLocalArea, PageAddressHash};
use crate::layout::setup_layout;
use crate::printk::Printk;
use machine::e820::E820Map;
use machine::{BusError, Machine, PhysMem};
use profile::BootProfile;

pub use crate::kernel::{Kernel, KernelAllocError, ReservedReport};
pub(crate) use checks::swapper_pg_dir_size;

/// Why the simulated boot stopped.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BootError {
    /// The machine or kernel configuration cannot boot (a clear user error).
    #[error("{0}")]
    Config(String),
    /// The kernel would panic here.
    #[error("Kernel panic - not syncing: {0}")]
    Panic(String),
    /// A kernel BUG.
    #[error("{0}")]
    Bug(String),
    /// A physical access outside RAM (a simulator-level bug made visible).
    #[error("bus error: {0}")]
    Bus(#[from] BusError),
}

impl From<machine::CpuError> for BootError {
    fn from(e: machine::CpuError) -> Self {
        BootError::Bug(format!("BUG: CPU: {e}"))
    }
}

/// What to boot: the machine and the kernel.
#[derive(Clone, Debug)]
pub struct BootOptions {
    /// RAM in bytes (QEMU `-m`).
    pub ram: u64,
    /// CPUs (QEMU `-smp`).
    pub cpus: u32,
    pub kernel: KernelConfig,
    /// The kernel command line as given (QEMU `-append`).
    pub cmdline: String,
    /// Size of the initramfs QEMU loads (`-initrd`), 0 for none.
    pub initrd_size: u64,
    /// Replay what userspace and drivers hold after boot (the preset's runtime profile).
    pub runtime_profile: bool,
    /// Which kernel design the highmem paths follow (`--design`); `Kernel::design()`.
    pub design: crate::design::KernelDesign,
    /// linux-6.1's `pte_offset_map`: 6.1's kmap_atomic or 6.5's kmap_local (`--pte-map`).
    pub pte_map: crate::design::PteMapApi,
    /// The CPUs' TLB geometry: the hardware one of the PAE-server era by default (a real
    /// TLB evicts), `TlbGeometry::Unbounded` to catch every missing flush (`--tlb debug`).
    pub tlb: machine::TlbGeometry,
}

impl BootOptions {
    /// The reference machine: QEMU pc, the given RAM and kernel, the reference initramfs.
    pub fn new(ram: u64, cpus: u32, kernel: KernelConfig) -> Self {
        BootOptions {
            ram,
            cpus,
            kernel,
            cmdline: String::new(),
            initrd_size: profile::DEFAULT_INITRD_SIZE,
            runtime_profile: true,
            design: crate::design::KernelDesign::Linux61,
            pte_map: Default::default(),
            tlb: machine::TlbGeometry::Core2,
        }
    }
}

pub(crate) fn pa(cfg: &KernelConfig, va: u64) -> u64 {
    va - cfg.page_offset()
}

/// Boot the kernel on a fresh machine, in `start_kernel()`'s order: head_32, setup_arch,
/// the per-CPU areas, zonelists and early hashes, trap_init, mm_init (the buddy allocator
/// takes over), then the initcalls (`late_boot`) and the preset's runtime profile.
pub fn boot(opts: &BootOptions) -> Result<Kernel, BootError> {
    if opts.pte_map != crate::design::PteMapApi::KmapAtomic
        && opts.design != crate::design::KernelDesign::Linux61
    {
        return Err(BootError::Config(format!(
            "pte_offset_map through {} is Linux 6.5's; design {} maps PTE pages its own way",
            opts.pte_map.name(),
            opts.design.name()
        )));
    }
    if opts.kernel.arch == crate::config::Arch::X86_64 {
        // The 64-bit kernel has its own boot (`x86_64/`).
        return crate::x86_64::kernel::boot_kernel(opts);
    }
    let cfg = opts.kernel.clone();
    crate::variant::Variant::of_config(&cfg)
        .check_design(opts.design)
        .map_err(|e| BootError::Config(e.to_string()))?;
    // The kernel brings up at most NR_CPUS of the machine's CPUs.
    let cpus = opts.cpus.min(cfg.nr_cpus).max(1);
    let cmdline = CmdLine::parse(&opts.cmdline).map_err(|e| BootError::Config(e.to_string()))?;
    let e820 = E820Map::qemu_pc(opts.ram).map_err(|e| BootError::Config(e.to_string()))?;
    let layout =
        setup_layout(&e820, &cfg, &cmdline, cpus).map_err(|e| BootError::Config(e.to_string()))?;
    let mem = PhysMem::new(&e820.ram_banks())
        .map_err(|e| BootError::Config(format!("cannot reserve host memory for the RAM: {e}")))?;
    let features = machine::CpuFeatures::default().with_tlb(opts.tlb);
    let mut machine = Machine::with_features(mem, opts.cpus as usize, features);
    let profile = BootProfile::for_config(&cfg);

    let mut log = Printk::new();
    log.info(format!(
        "Linux version {} (highmem simulation of {})",
        cfg.release, cfg.name
    ));
    let head = head_32::startup_32(&mut machine, &cfg, &layout)?;
    let mut a = setup_arch::setup_arch(machine, log, head, &cfg, &layout, opts, cpus)?;
    resources::setup_command_line(&mut a.memblock, &opts.cmdline)?;
    let percpu_pages =
        percpu::setup_per_cpu_areas(&mut a.memblock, &mut a.log, &cfg, &profile, cpus)?;
    start_kernel::build_all_zonelists(&mut a, &cmdline, &opts.cmdline);
    start_kernel::vfs_caches_init_early(&mut a)?;
    start_kernel::trap_init(&mut a, &layout)?;
    let mm = start_kernel::mm_init(&mut a, &cfg, &layout, cpus)?;
    let kmap_area = start_kernel::kmap_local_area(&a, &cfg, &layout)?;

    let early = EarlyState {
        arch: a,
        kmap_area,
        percpu_pages,
        reserved_at_mem_init: mm.reserved_at_mem_init,
    };
    let mut k = Kernel::after_mm_init(early, cfg, layout, profile, &cmdline, opts.design);
    k.hm.pte_map = opts.pte_map;
    k.fork_init(k.node.totalram_pages);
    k.late_boot(mm.swiotlb)?;
    if opts.runtime_profile {
        k.apply_runtime_profile()?;
        k.vm_acct_boot_userspace();
    }
    Ok(k)
}

/// What the boot has built when the buddy allocator takes over.
struct EarlyState {
    arch: setup_arch::Arch,
    kmap_area: KmapLocalArea,
    percpu_pages: u64,
    reserved_at_mem_init: ReservedReport,
}

impl Kernel {
    /// The kernel's state after `mm_init()`: the early state plus the subsystems set up
    /// empty (highmem's pkmap, the scheduler, vmalloc's address space, SLUB's caches).
    fn after_mm_init(
        early: EarlyState,
        config: KernelConfig,
        layout: crate::layout::Layout,
        profile: BootProfile,
        cmdline: &CmdLine,
        design: crate::design::KernelDesign,
    ) -> Kernel {
        let EarlyState {
            arch: mut a,
            kmap_area,
            percpu_pages,
            reserved_at_mem_init,
        } = early;
        let cpus = a.node.nr_cpus;
        let mut hm = crate::highmem::Highmem::new(
            &config,
            &layout,
            &kmap_area,
            a.pkmap_page_table,
            &mut a.machine.mem,
        );
        hm.design = design;
        let vmap =
            crate::vmalloc::Vmap::new(layout.vmalloc_start.as_u64(), layout.vmalloc_end.as_u64());
        let slab = crate::slab::Slub::boot(cpus, &config, &layout, a.node.init_on_alloc);
        let page_address_htable = PageAddressHash::new(
            (a.mem_map_phys + config.page_offset()) as u32,
            config.sizeof_struct_page as u32,
        );
        let thp = crate::thp::ThpState::from_cmdline(
            config
                .transparent_hugepage
                .unwrap_or(crate::thp::ThpEnabled::Never),
            cmdline,
        );
        Kernel {
            kmap_local: KmapLocal::new(cpus),
            config,
            layout,
            machine: a.machine,
            memblock: a.memblock,
            node: a.node,
            log: a.log,
            geo: a.ctx.geo,
            masks: a.ctx.masks,
            profile,
            swapper_pg_dir: a.ctx.pgd,
            pkmap_page_table: a.pkmap_page_table,
            mem_map_phys: a.mem_map_phys,
            direct_pages: a.direct,
            kmap_area,
            hm,
            sched: crate::sched::Sched::new(cpus),
            page_address_htable,
            reserved_at_mem_init,
            runtime_pages: Vec::new(),
            boot_userspace: Default::default(),
            percpu_pages,
            admin_reserve_kbytes: 0,
            user_reserve_kbytes: 0,
            thp,
            tlb: Default::default(),
            vmap,
            slab,
            mm: crate::mm::MmState::new(cmdline.userpte_nohigh()),
            max_threads: 0,
        }
    }
}

/// A booted kernel for unit tests: the preset on `mib` MiB, one CPU, no runtime profile.
#[cfg(test)]
pub(crate) fn test_boot(mib: u64, preset: &str) -> Kernel {
    let cfg = KernelConfig::preset(preset).expect("preset");
    let mut opts = BootOptions::new(mib << 20, 1, cfg);
    opts.runtime_profile = false;
    boot(&opts).expect("boot")
}
