//! The 64-bit kernel past its page allocator: the booted [`Kernel64`] becomes a [`Kernel`],
//! so processes, SLUB, vmalloc, /proc and the workloads run on it as on i386.
//!
//! What the 64-bit kernel does not have is made absent, not faked: no high memory
//! (`max_low_pfn = max_pfn`, `Highmem::without_highmem`: no pkmap pool, no kmap_local slot),
//! no 32-bit layout areas. Its page tables are 4-level ([`Geometry::long_mode`]): the kernel
//! cursor descends pgd → pud → pmd → pte, vmalloc allocates PMD pages under the PUD pages
//! `preallocate_vmalloc_pages` installed, and user processes (32-bit programs in compat
//! mode) get a PUD page and PMD pages on demand (`mm/pgtable_user.rs`).

use super::direct_map::START_KERNEL_MAP;
use super::{boot_x86_64_mem, Boot64Error, Kernel64, VMALLOC_END_64, VMALLOC_START_64};
use crate::boot::profile::BootProfile;
use crate::boot::{BootError, BootOptions};
use crate::cmdline::CmdLine;
use crate::config::{Arch, KernelConfig};
use crate::highmem::{Highmem, KmapLocal, KmapLocalArea, PageAddressHash};
use crate::layout::{Layout, VirtualAreas, ZoneSpan};
use crate::pgtable::Geometry;
use crate::pgtable_types::{PteMasks, _KERNPG_TABLE};
use crate::Kernel;
use machine::e820::E820Map;
use machine::{Pfn, PhysAddr, VirtAddr, PAGE_SIZE};

fn config_err(e: impl std::fmt::Display) -> BootError {
    BootError::Config(e.to_string())
}

impl From<Boot64Error> for BootError {
    fn from(e: Boot64Error) -> Self {
        match e {
            Boot64Error::Config(m) => BootError::Config(m),
            Boot64Error::Bug(m) => BootError::Bug(m),
        }
    }
}

/// Boot the 64-bit kernel of `opts` (an `Arch::X86_64` config) to a [`Kernel`]: the 64-bit
/// boot, then the subsystems `mm_init` sets up, then the runtime profile.
pub fn boot_kernel(opts: &BootOptions) -> Result<Kernel, BootError> {
    let cfg = opts.kernel.clone();
    if cfg.arch != Arch::X86_64 {
        return Err(BootError::Config(format!(
            "{} is not a 64-bit kernel",
            cfg.name
        )));
    }
    let cmdline = CmdLine::parse(&opts.cmdline).map_err(config_err)?;
    let cpus = opts.cpus.min(cfg.nr_cpus).max(1);
    let e820 = E820Map::qemu_pc(opts.ram).map_err(config_err)?;
    let k64 = boot_x86_64_mem(opts.ram, cpus, opts.initrd_size, mem_limit(&cmdline))?;
    let totalram_at_fork_init = k64.totalram_at_fork_init;
    let (img, pools) = (k64.image, k64.atomic_pools.clone());
    let mut k = k64.into_kernel(cfg, &cmdline, &e820, opts.tlb)?;
    k.late_boot_64(&img, &pools)?;
    // module_init(kswapd_init) (kcompactd_init before it): the threads run from here on.
    k.node.reclaimd.running = true;
    k.fork_init(totalram_at_fork_init);
    if opts.runtime_profile {
        k.apply_runtime_profile()?;
        k.vm_acct_boot_userspace();
    }
    Ok(k)
}

/// `mem=SIZE` of the command line (each one cuts the map: the smallest wins).
fn mem_limit(cmdline: &CmdLine) -> Option<u64> {
    use crate::cmdline::{EarlyParam, MemOpt};
    cmdline
        .early
        .iter()
        .filter_map(|p| match p {
            EarlyParam::Mem(MemOpt::Limit(bytes)) => Some(*bytes),
            _ => None,
        })
        .min()
}

impl Kernel64 {
    /// The rest of `mm_init()` and the state every later subsystem reads: SLUB on the direct
    /// map, vmalloc's address space (with its PUD pages installed in the pgd), the
    /// scheduler, the (empty) highmem state; every CPU in long mode on `init_top_pgt`.
    pub fn into_kernel(
        mut self,
        config: KernelConfig,
        cmdline: &CmdLine,
        e820: &E820Map,
        tlb: machine::TlbGeometry,
    ) -> Result<Kernel, BootError> {
        let geo = Geometry::long_mode();
        // kernel_init_freeable: the scheduler is up, allocations may block (and reclaim).
        self.node.gfp_allowed_mask = crate::gfp::__GFP_BITS_MASK;
        install_vmalloc_puds(&mut self.machine.mem, self.pml4, &self.vmalloc_puds)?;
        all_cpus_long_mode(&mut self.machine, tlb)?;
        let layout = layout_64(&config, &self, e820);
        let cpus = self.node.nr_cpus;
        let slab = crate::slab::Slub::boot_direct_map(
            cpus,
            &config,
            self.max_low_pfn,
            self.node.init_on_alloc,
        );
        let thp = crate::thp::ThpState::from_cmdline(
            config
                .transparent_hugepage
                .unwrap_or(crate::thp::ThpEnabled::Never),
            cmdline,
        );
        let reserved_at_mem_init = self.memblock.reserved_by_name();
        let mut runtime_pages = Vec::new();
        runtime_pages.extend(self.atomic_pools.iter().copied());
        Ok(Kernel {
            kmap_local: KmapLocal::new(cpus),
            hm: Highmem::without_highmem(&config),
            kmap_area: no_kmap_area(geo),
            page_address_htable: PageAddressHash::new(0, 64),
            profile: BootProfile::for_config(&config),
            masks: PteMasks::new(true, true, true, config.page_table_isolation),
            geo,
            layout,
            machine: self.machine,
            memblock: self.memblock,
            node: self.node,
            log: self.log,
            swapper_pg_dir: self.pml4,
            pkmap_page_table: 0,
            mem_map_phys: 0,
            direct_pages: crate::boot::init_32::DirectPagesCount {
                pages_4k: self.direct.k4,
                pages_large: self.direct.m2,
            },
            sched: crate::sched::Sched::new(cpus),
            reserved_at_mem_init,
            runtime_pages,
            boot_userspace: Default::default(),
            percpu_pages: self.percpu_pages,
            admin_reserve_kbytes: 0,
            user_reserve_kbytes: 0,
            thp,
            tlb: Default::default(),
            vmap: vmap_64(),
            slab,
            mm: crate::mm::MmState::new(cmdline.userpte_nohigh()),
            max_threads: 0,
            config,
        })
    }
}

/// The vmap space: the vmalloc area and the module area, where `module_alloc` allocates.
fn vmap_64() -> crate::vmalloc::Vmap {
    let mut v = crate::vmalloc::Vmap::new(VMALLOC_START_64, VMALLOC_END_64);
    v.space
        .add_range(super::late::MODULES_VADDR, super::late::MODULES_END);
    v
}

/// `p4d_populate` of the vmalloc area's PUD pages into `init_top_pgt` (what
/// `preallocate_vmalloc_pages` does with the pages it allocates).
fn install_vmalloc_puds(
    mem: &mut machine::PhysMem,
    pml4: u64,
    puds: &[Pfn],
) -> Result<(), BootError> {
    let geo = Geometry::long_mode();
    let first = geo.pgd_index(VMALLOC_START_64);
    for (i, pud) in puds.iter().enumerate() {
        geo.write(
            mem,
            PhysAddr::new(pml4),
            first + i as u64,
            pud.phys().as_u64() | _KERNPG_TABLE,
        )?;
    }
    Ok(())
}

/// The secondary CPUs come up in long mode on the same page tables as the boot CPU, with
/// the TLB geometry of the run.
fn all_cpus_long_mode(
    m: &mut machine::Machine,
    tlb: machine::TlbGeometry,
) -> Result<(), BootError> {
    let r = *m.cpus[0].regs();
    for c in 0..m.cpus.len() {
        m.cpus[c].set_tlb_geometry(tlb);
        if c == 0 {
            continue;
        }
        m.write_cr4(c, r.cr4)?;
        m.write_efer(c, r.efer)?;
        m.write_cr3(c, r.cr3)?;
        m.write_cr0(c, r.cr0)?;
    }
    Ok(())
}

/// No kmap_local slots (KM_MAX_IDX 0): `kmap_local_page` never needs one.
fn no_kmap_area(geo: Geometry) -> KmapLocalArea {
    KmapLocalArea {
        geo,
        fixaddr_top: 0,
        fix_kmap_begin: 0,
        km_max_idx: 0,
        kmap_pte: 0,
        prot: 0,
    }
}

/// What the 64-bit boot decided, in the fields the rest of the kernel reads: every pfn is
/// low memory, the vmalloc area is the 64-bit one, and the 32-bit virtual areas are empty.
fn layout_64(cfg: &KernelConfig, k: &Kernel64, e820: &E820Map) -> Layout {
    let max_pfn = Pfn::new(k.max_pfn);
    let zones = k
        .zones
        .iter()
        .map(|z| ZoneSpan {
            name: z.name,
            start: Pfn::new(z.start_pfn),
            end: Pfn::new(z.end_pfn),
        })
        .collect();
    Layout {
        kernel: cfg.name.clone(),
        pae: true,
        has_highmem: false,
        nr_cpu_ids: k.node.nr_cpus as u32,
        firmware_e820: e820.entries().to_vec(),
        e820: e820.entries().to_vec(),
        userdef: false,
        page_offset: VirtAddr::new(super::PAGE_OFFSET_64),
        areas: VirtualAreas::absent(),
        maxmem: k.max_pfn * PAGE_SIZE,
        maxmem_pfn: max_pfn,
        max_arch_pfn: Pfn::new(1 << 40),
        max_possible_pfn: max_pfn,
        max_pfn,
        max_low_pfn: max_pfn,
        highstart_pfn: max_pfn,
        highend_pfn: max_pfn,
        max_pfn_mapped: max_pfn,
        max_mapnr: max_pfn,
        high_memory: VirtAddr::new(super::PAGE_OFFSET_64 + k.max_pfn * PAGE_SIZE),
        vmalloc_start: VirtAddr::new(VMALLOC_START_64),
        vmalloc_end: VirtAddr::new(VMALLOC_END_64),
        memblock_memory: Vec::new(),
        node_ranges: Vec::new(),
        node_start_pfn: Pfn::new(k.node.node_start_pfn),
        node_end_pfn: Pfn::new(k.node.node_end_pfn()),
        zones,
        mem_map_bytes: 0,
        kmap_local: vec![Vec::new(); k.node.nr_cpus],
        pse: true,
        userpte_nohigh: false,
        image: image_symbols(&k.image, k.pml4, k.brk_end),
        messages: Vec::new(),
    }
}

/// The image's symbols at their link addresses (the used brk ends the image;
/// `init_top_pgt` is the kernel's pgd).
fn image_symbols(
    img: &super::image::Image64,
    pml4: u64,
    brk_end: u64,
) -> crate::config::KernelImage {
    crate::config::KernelImage {
        text: img.text,
        etext: img.etext,
        start_rodata: img.start_rodata,
        end_rodata: img.end_rodata,
        sdata: img.sdata,
        edata: img.edata,
        init_begin: img.init_begin,
        init_end: img.init_end,
        bss_start: img.bss_start,
        bss_stop: img.end,
        brk_base: img.end,
        brk_limit: brk_end,
        end: brk_end,
        swapper_pg_dir: pml4,
        initial_page_table: pml4,
    }
    .map(|pa| pa + START_KERNEL_MAP)
}
