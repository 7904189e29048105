//! The boot-time memory layout of an i386 Linux 6.1 kernel on a given machine.
//!
//! [`setup_layout`] replays the part of `setup_arch()` that decides where memory goes, in
//! the kernel's order: copy the firmware e820 map, apply the early command-line options,
//! re-add the kernel image if needed, trim the BIOS range, find `max_pfn`, place the fixed
//! virtual areas (fixmap, CPU entry area, LDT, pkmap) to get `VMALLOC_END` and `MAXMEM`,
//! split RAM into lowmem and highmem, build memblock's memory list, map lowmem, and
//! compute the zone spans. Along the way it collects the lines the kernel prints, with
//! their log levels, so a caller can show the boot log as the console or `dmesg` would.
//!
//! What the kernel would only warn about becomes a warning line; what would stop the boot
//! (a panic, a BUG, an image that cannot be loaded or mapped) is a [`LayoutError`].

mod areas;
mod e820;
mod lowmem;
mod report;
mod zones;

pub use areas::VirtualAreas;
pub use e820::E820Table;
pub use lowmem::{pages_to_mb, HIGHMEM_PAGES_UNSET};
pub use report::virtual_layout_lines;
pub use zones::{MemRegion, ZoneSpan};

use crate::cmdline::{CmdLine, EarlyParam, MemOpt};
use crate::config::{
    Arch, ConfigError, KernelConfig, KernelImage, MAX_ORDER_NR_PAGES, VMALLOC_OFFSET,
};
use machine::e820::{E820Entry, E820Map, E820Type};
use machine::{Pfn, VirtAddr, PAGE_SHIFT, PAGE_SIZE};

const U32: u64 = 0xffff_ffff;
/// `ISA_END_ADDRESS`: the first MiB, always mapped and always reserved.
const ISA_END_ADDRESS: u64 = 0x10_0000;
/// The legacy BIOS range trim_bios_range removes from RAM.
const BIOS_BEGIN: u64 = 0xa_0000;
const BIOS_END: u64 = 0x10_0000;

pub use crate::printk::{KernMsg, LogLevel};

/// Why the kernel would not boot on this machine.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Unsupported(String),
    #[error("the machine needs at least one CPU")]
    NoCpu,
    #[error(
        "kernel image [mem {start:#010x}-{end:#010x}] is not backed by RAM: the boot loader cannot load it"
    )]
    ImageNotInRam { start: u64, end: u64 },
    #[error("__VMALLOC_RESERVE {reserve:#x} does not fit between PAGE_OFFSET {page_offset:#x} and VMALLOC_END {vmalloc_end:#x}: MAXMEM wraps and lowmem would be mapped over the fixmap")]
    NoRoomForLowmem {
        reserve: u64,
        page_offset: u64,
        vmalloc_end: u64,
    },
    #[error("lowmem ends at {lowmem_end:#x}, below the end of the kernel image at {image_end:#x}: the kernel cannot map itself")]
    ImageNotInLowmem { lowmem_end: u64, image_end: u64 },
    #[error("Kernel panic - not syncing: {0}")]
    Panic(String),
    #[error("kernel BUG at arch/x86/mm/init_32.c: BUG_ON({0})")]
    Bug(&'static str),
}

/// Everything the kernel decided about memory at boot.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Layout {
    /// Preset / configuration name.
    pub kernel: String,
    pub pae: bool,
    pub has_highmem: bool,
    /// CPUs the kernel brings up (`nr_cpu_ids`: the machine's, at most NR_CPUS).
    pub nr_cpu_ids: u32,
    /// The firmware's map, as printed under "BIOS-provided physical RAM map:".
    pub firmware_e820: Vec<E820Entry>,
    /// The kernel's `e820_table` after `mem=`, the image check and trim_bios_range.
    pub e820: Vec<E820Entry>,
    /// A `mem=` made the map user-defined (it is printed again as "user:").
    pub userdef: bool,
    pub page_offset: VirtAddr,
    pub areas: VirtualAreas,
    pub maxmem: u64,
    pub maxmem_pfn: Pfn,
    pub max_arch_pfn: Pfn,
    /// `max_possible_pfn`: the end of RAM in the e820 map after `mem=`, set by setup_arch
    /// *before* `highmem=` and the non-PAE / no-HIGHMEM limits cut `max_pfn`. Decisions about
    /// devices that may address all of RAM (swiotlb) read this, not `max_pfn`.
    pub max_possible_pfn: Pfn,
    pub max_pfn: Pfn,
    pub max_low_pfn: Pfn,
    pub highstart_pfn: Pfn,
    pub highend_pfn: Pfn,
    /// End of the direct map actually built (`max_pfn_mapped`).
    pub max_pfn_mapped: Pfn,
    /// FLATMEM `max_mapnr`.
    pub max_mapnr: Pfn,
    pub high_memory: VirtAddr,
    pub vmalloc_start: VirtAddr,
    pub vmalloc_end: VirtAddr,
    /// memblock.memory after e820__memblock_setup.
    pub memblock_memory: Vec<MemRegion>,
    /// "Early memory node ranges": pfn ranges of node 0.
    pub node_ranges: Vec<(Pfn, Pfn)>,
    /// Node 0 span from memblock (the "Initmem setup node 0" line).
    pub node_start_pfn: Pfn,
    pub node_end_pfn: Pfn,
    /// DMA, Normal and (with HIGHMEM) HighMem spans.
    pub zones: Vec<ZoneSpan>,
    /// Bytes of the FLATMEM mem_map array (node span rounded to MAX_ORDER blocks).
    pub mem_map_bytes: u64,
    /// kmap_local slot addresses, `[cpu][idx]`, for each CPU brought up.
    pub kmap_local: Vec<Vec<VirtAddr>>,
    /// PSE (4 MiB / 2 MiB pages) usable for the direct map (`mem=nopentium` clears it).
    pub pse: bool,
    /// `userpte=nohigh`: user page tables come from lowmem.
    pub userpte_nohigh: bool,
    pub image: KernelImage,
    /// The boot log lines, in order.
    pub messages: Vec<KernMsg>,
}

impl Layout {
    /// The lines a serial console shows (no KERN_DEBUG).
    pub fn console_lines(&self) -> Vec<&str> {
        self.messages
            .iter()
            .filter(|m| m.level.on_console())
            .map(|m| m.text.as_str())
            .collect()
    }

    /// Every line, as `dmesg` shows them.
    pub fn dmesg_lines(&self) -> Vec<&str> {
        self.messages.iter().map(|m| m.text.as_str()).collect()
    }

    /// The pre-5.7 "virtual kernel memory layout:" block.
    pub fn virtual_layout_lines(&self) -> Vec<String> {
        report::virtual_layout_lines(self)
    }

    /// Is `pfn` in high memory (not covered by the direct map)?
    pub fn is_highmem(&self, pfn: Pfn) -> bool {
        pfn >= self.max_low_pfn
    }
}

/// Replay setup_arch's memory decisions for `cfg` on a machine with firmware map `e820`
/// and `cpus` CPUs, booted with `cmdline`.
pub fn setup_layout(
    e820: &E820Map,
    cfg: &KernelConfig,
    cmdline: &CmdLine,
    cpus: u32,
) -> Result<Layout, LayoutError> {
    cfg.validate()?;
    if cfg.arch != Arch::I386 {
        return Err(LayoutError::Unsupported(format!(
            "kernel {}: only the i386 layout is modelled",
            cfg.name
        )));
    }
    if cpus == 0 {
        return Err(LayoutError::NoCpu);
    }
    let mut msgs: Vec<KernMsg> = Vec::new();
    let info =
        |msgs: &mut Vec<KernMsg>, text: String| msgs.push(KernMsg::new(LogLevel::Info, text));
    let debug =
        |msgs: &mut Vec<KernMsg>, text: String| msgs.push(KernMsg::new(LogLevel::Debug, text));

    // The boot loader put the image at its physical load address: RAM must be there.
    let image = cfg.image();
    let page_offset = cfg.page_offset();
    let (img_start, img_end) = (image.text - page_offset, image.end - page_offset);
    let backed = e820
        .ram_banks()
        .iter()
        .any(|(s, len)| s.as_u64() <= img_start && img_end <= s.as_u64() + len);
    if !backed {
        return Err(LayoutError::ImageNotInRam {
            start: img_start,
            end: img_end - 1,
        });
    }

    // e820__memory_setup.
    let mut table = E820Table::from_firmware(e820);
    info(&mut msgs, "BIOS-provided physical RAM map:".to_string());
    for line in table.print("BIOS-e820") {
        info(&mut msgs, line);
    }

    // parse_early_param.
    let mut userdef = false;
    let mut pse = true;
    let mut userpte_nohigh = false;
    let mut highmem_pages = HIGHMEM_PAGES_UNSET;
    let mut vmalloc_reserve = cfg.vmalloc_reserve;
    let mut fixaddr_top = cfg.fixaddr_top;
    for p in &cmdline.early {
        match *p {
            EarlyParam::Mem(MemOpt::NoPentium) => pse = false,
            EarlyParam::Mem(MemOpt::Zero) => {
                userdef = true;
                msgs.push(KernMsg::new(
                    LogLevel::Warning,
                    "Malformed early option 'mem'".to_string(),
                ));
            }
            EarlyParam::Mem(MemOpt::Limit(size)) => {
                userdef = true;
                let line = table.range_remove(size, u64::MAX - size, Some(E820Type::Usable));
                debug(&mut msgs, line);
            }
            EarlyParam::Highmem(bytes) => highmem_pages = (bytes >> PAGE_SHIFT) & U32,
            EarlyParam::Vmalloc(bytes) => {
                // unsigned int __VMALLOC_RESERVE = size + VMALLOC_OFFSET.
                vmalloc_reserve = bytes.wrapping_add(VMALLOC_OFFSET) & U32;
            }
            EarlyParam::Reservetop(bytes) => {
                // reserve_top_address(): unsigned long arithmetic.
                let minus = bytes.wrapping_neg() & U32;
                fixaddr_top = (minus & !(cfg.pmd_size() - 1)).wrapping_sub(PAGE_SIZE) & U32;
                info(
                    &mut msgs,
                    format!(
                        "Reserving virtual address space above 0x{:08x} (rounded to 0x{:08x})",
                        minus,
                        (fixaddr_top + PAGE_SIZE) & U32
                    ),
                );
            }
            EarlyParam::UserPte(_) => userpte_nohigh = true,
            EarlyParam::Malformed(name) => msgs.push(KernMsg::new(
                LogLevel::Warning,
                format!("Malformed early option '{name}'"),
            )),
        }
    }
    // e820__finish_early_params.
    if userdef {
        if !table.update() {
            return Err(LayoutError::Panic(
                "Invalid user supplied memory map".to_string(),
            ));
        }
        info(&mut msgs, "user-defined physical RAM map:".to_string());
        for line in table.print("user") {
            info(&mut msgs, line);
        }
    }

    // e820_add_kernel_range: the image must be RAM in the kernel's table.
    if !table.mapped_all(img_start, img_end, E820Type::Usable) {
        msgs.push(KernMsg::new(
            LogLevel::Warning,
            ".text .data .bss are not marked as E820_TYPE_RAM!".to_string(),
        ));
        debug(
            &mut msgs,
            table.range_remove(img_start, img_end - img_start, None),
        );
        table.range_add(img_start, img_end - img_start, E820Type::Usable);
    }

    // trim_bios_range.
    let line = table.range_update(0, PAGE_SIZE, E820Type::Usable, E820Type::Reserved);
    debug(&mut msgs, line);
    let line = table.range_remove(BIOS_BEGIN, BIOS_END - BIOS_BEGIN, Some(E820Type::Usable));
    debug(&mut msgs, line);
    table.update();

    // max_pfn = e820__end_of_ram_pfn().
    let max_arch_pfn = cfg.max_arch_pfn();
    let max_pfn = table.end_pfn(max_arch_pfn, max_arch_pfn, E820Type::Usable);
    info(
        &mut msgs,
        format!("last_pfn = {max_pfn:#x} max_arch_pfn = {max_arch_pfn:#x}"),
    );

    // The fixed virtual areas and MAXMEM.
    let areas = VirtualAreas::new(cfg, fixaddr_top, vmalloc_reserve);
    let Some(maxmem) = areas.maxmem else {
        return Err(LayoutError::NoRoomForLowmem {
            reserve: vmalloc_reserve,
            page_offset,
            vmalloc_end: areas.vmalloc_end,
        });
    };

    // max_possible_pfn = max_pfn, before find_low_pfn_range trims max_pfn.
    let max_possible_pfn = max_pfn;

    // find_low_pfn_range.
    let low = lowmem::find_low_pfn_range(cfg, max_pfn, maxmem, highmem_pages, &mut msgs);
    let (max_pfn, max_low_pfn) = (low.max_pfn, low.max_low_pfn);

    // head_32.S mapped the image plus room for the lowmem page tables.
    debug(
        &mut msgs,
        format!(
            "initial memory mapped: [mem 0x00000000-{:#010x}]",
            (initial_mapped_pfn(cfg) << PAGE_SHIFT) - 1
        ),
    );

    // e820__memblock_setup and init_mem_mapping.
    let memblock_memory = zones::memblock_memory(&table, cfg);
    let lowmem_end = max_low_pfn << PAGE_SHIFT;
    let max_pfn_mapped = memblock_memory
        .iter()
        .filter(|r| r.base < lowmem_end && r.end() > ISA_END_ADDRESS)
        .map(|r| r.end().min(lowmem_end) >> PAGE_SHIFT)
        .max()
        .unwrap_or(ISA_END_ADDRESS >> PAGE_SHIFT);
    if img_end > max_pfn_mapped << PAGE_SHIFT {
        return Err(LayoutError::ImageNotInLowmem {
            lowmem_end: max_pfn_mapped << PAGE_SHIFT,
            image_end: img_end,
        });
    }

    // initmem_init.
    let (highstart_pfn, highend_pfn) = if max_pfn > max_low_pfn {
        (max_low_pfn, max_pfn)
    } else {
        (max_pfn, max_pfn)
    };
    let high_memory = if cfg.has_highmem() {
        msgs.push(KernMsg::new(
            LogLevel::Notice,
            format!(
                "{}MB HIGHMEM available.",
                pages_to_mb(highend_pfn - highstart_pfn)
            ),
        ));
        (page_offset + (highstart_pfn << PAGE_SHIFT)) & U32
    } else {
        (page_offset + (max_low_pfn << PAGE_SHIFT)) & U32
    };
    let max_mapnr = if cfg.has_highmem() {
        highend_pfn
    } else {
        max_low_pfn
    };
    msgs.push(KernMsg::new(
        LogLevel::Notice,
        format!("{}MB LOWMEM available.", pages_to_mb(max_low_pfn)),
    ));
    info(
        &mut msgs,
        format!(
            "  mapped low ram: 0 - {:08x}",
            (max_pfn_mapped << PAGE_SHIFT) & U32
        ),
    );
    info(
        &mut msgs,
        format!("  low ram: 0 - {:08x}", (max_low_pfn << PAGE_SHIFT) & U32),
    );

    // zone_sizes_init / free_area_init.
    let node_ranges = zones::node_pfn_ranges(&memblock_memory);
    let node_start_pfn = node_ranges.first().map_or(0, |r| r.0.as_u64());
    let node_end_pfn = node_ranges.iter().map(|r| r.1.as_u64()).max().unwrap_or(0);
    let zone_spans = zones::zone_spans(cfg, node_start_pfn, max_low_pfn, max_pfn);
    info(&mut msgs, "Zone ranges:".to_string());
    for z in &zone_spans {
        info(&mut msgs, z.log_line());
    }
    info(&mut msgs, "Movable zone start for each node".to_string());
    info(&mut msgs, "Early memory node ranges".to_string());
    for (s, e) in &node_ranges {
        info(
            &mut msgs,
            format!(
                "  node {:>3}: [mem {:#018x}-{:#018x}]",
                0,
                s.as_u64() << PAGE_SHIFT,
                (e.as_u64() << PAGE_SHIFT) - 1
            ),
        );
    }
    if node_start_pfn != node_end_pfn {
        info(
            &mut msgs,
            format!(
                "Initmem setup node 0 [mem {:#018x}-{:#018x}]",
                node_start_pfn << PAGE_SHIFT,
                (node_end_pfn << PAGE_SHIFT) - 1
            ),
        );
    } else {
        info(&mut msgs, "Initmem setup node 0 as memoryless".to_string());
    }

    // alloc_node_mem_map (FLATMEM): the node's span, in MAX_ORDER blocks, from lowmem.
    let zones_end = zone_spans.last().map_or(node_start_pfn, |z| z.end.as_u64());
    let pgdat_end = node_end_pfn.min(zones_end).max(node_start_pfn);
    let map_start = node_start_pfn & !(MAX_ORDER_NR_PAGES - 1);
    let map_end = pgdat_end.div_ceil(MAX_ORDER_NR_PAGES) * MAX_ORDER_NR_PAGES;
    let mem_map_bytes = (map_end - map_start) * cfg.sizeof_struct_page;
    // Lowmem memblock can hand out at most: RAM below max_low_pfn, less the first MiB
    // (reserved whole in 6.1) and the kernel image.
    let lowmem_ram: u64 = memblock_memory
        .iter()
        .map(|r| {
            r.end()
                .min(lowmem_end)
                .saturating_sub(r.base.max(ISA_END_ADDRESS))
        })
        .sum();
    let lowmem_free_bound = lowmem_ram.saturating_sub(img_end - img_start);
    if cfg.flatmem && mem_map_bytes > lowmem_free_bound {
        return Err(LayoutError::Panic(format!(
            "Failed to allocate {mem_map_bytes} bytes for node 0 memory map"
        )));
    }

    // mem_init's sanity checks.
    let vmalloc_start = (high_memory + VMALLOC_OFFSET) & U32;
    if cfg.has_highmem() {
        if areas.pkmap_end() > areas.fixaddr_start {
            return Err(LayoutError::Bug(
                "PKMAP_BASE + LAST_PKMAP*PAGE_SIZE > FIXADDR_START",
            ));
        }
        if areas.vmalloc_end > areas.pkmap_base {
            return Err(LayoutError::Bug("VMALLOC_END > PKMAP_BASE"));
        }
    }
    if vmalloc_start >= areas.vmalloc_end {
        return Err(LayoutError::Bug("VMALLOC_START >= VMALLOC_END"));
    }

    let nr_cpu_ids = cpus.min(cfg.nr_cpus);
    let kmap_local = (0..nr_cpu_ids)
        .map(|cpu| {
            (0..areas.fixmap.km_max_idx)
                .filter_map(|i| areas.fixmap.kmap_local_vaddr(cpu, i))
                .map(VirtAddr::new)
                .collect()
        })
        .collect();

    Ok(Layout {
        kernel: cfg.name.clone(),
        pae: cfg.pae,
        has_highmem: cfg.has_highmem(),
        nr_cpu_ids,
        firmware_e820: e820.entries().to_vec(),
        e820: table.live_entries(),
        userdef,
        page_offset: VirtAddr::new(page_offset),
        maxmem,
        maxmem_pfn: Pfn::new(maxmem >> PAGE_SHIFT),
        max_arch_pfn: Pfn::new(max_arch_pfn),
        max_possible_pfn: Pfn::new(max_possible_pfn),
        max_pfn: Pfn::new(max_pfn),
        max_low_pfn: Pfn::new(max_low_pfn),
        highstart_pfn: Pfn::new(highstart_pfn),
        highend_pfn: Pfn::new(highend_pfn),
        max_pfn_mapped: Pfn::new(max_pfn_mapped),
        max_mapnr: Pfn::new(max_mapnr),
        high_memory: VirtAddr::new(high_memory),
        vmalloc_start: VirtAddr::new(vmalloc_start),
        vmalloc_end: VirtAddr::new(areas.vmalloc_end),
        areas,
        memblock_memory,
        node_ranges,
        node_start_pfn: Pfn::new(node_start_pfn),
        node_end_pfn: Pfn::new(node_end_pfn),
        zones: zone_spans,
        mem_map_bytes,
        kmap_local,
        pse,
        userpte_nohigh,
        image,
        messages: msgs,
    })
}

/// The pfn head_32.S's provisional tables map up to: the image, then enough for the page
/// tables of all possible lowmem, in whole page tables.
pub fn initial_mapped_pfn(cfg: &KernelConfig) -> u64 {
    let lowmem_pages = ((1u64 << 32) - cfg.page_offset()) >> PAGE_SHIFT;
    let table_pages = if cfg.pae {
        lowmem_pages / cfg.ptrs_per_pmd() + cfg.ptrs_per_pgd()
    } else {
        lowmem_pages / cfg.ptrs_per_pgd()
    };
    let limit = cfg.image_phys.end + table_pages * PAGE_SIZE;
    let chunk = cfg.pmd_size();
    (limit.div_ceil(chunk) * chunk) >> PAGE_SHIFT
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boot(ram: u64, preset: &str, cmd: &str) -> Result<Layout, LayoutError> {
        let cfg = KernelConfig::preset(preset).unwrap();
        let e820 = E820Map::qemu_pc(ram).unwrap();
        setup_layout(&e820, &cfg, &CmdLine::parse(cmd).unwrap(), 1)
    }

    #[test]
    fn pae_4g_matches_the_reference_numbers() {
        let l = boot(4 << 30, "debian-686-pae", "").unwrap();
        assert_eq!(l.max_pfn, Pfn::new(0x14_0000));
        assert_eq!(l.max_low_pfn, Pfn::new(0x3_6ffe));
        assert_eq!(l.high_memory, VirtAddr::new(0xf6ff_e000));
        assert_eq!(l.vmalloc_start, VirtAddr::new(0xf77f_e000));
        assert_eq!(l.areas.pkmap_base, 0xff00_0000);
        assert_eq!(l.mem_map_bytes, 0x14_0000 * 40);
        let console = l.console_lines();
        assert!(console.contains(&"4240MB HIGHMEM available."));
        assert!(console.contains(&"879MB LOWMEM available."));
        assert!(!console.iter().any(|l| l.starts_with("e820:")));
        assert!(l
            .dmesg_lines()
            .contains(&"initial memory mapped: [mem 0x00000000-0x023fffff]"));
    }

    #[test]
    fn mem_option_prints_the_user_map() {
        let l = boot(4 << 30, "debian-686-pae", "mem=512M").unwrap();
        let console = l.console_lines();
        assert!(console.contains(&"user-defined physical RAM map:"));
        assert!(console.contains(&"user: [mem 0x0000000000100000-0x000000001fffffff] usable"));
        assert_eq!(l.max_pfn, Pfn::new(0x2_0000));
        assert_eq!(l.zones[2].log_line(), "  HighMem  empty");
    }

    #[test]
    fn reservetop_moves_everything_down() {
        let l = boot(1 << 30, "debian-686-pae", "reservetop=64M").unwrap();
        assert_eq!(l.areas.fixmap.fixaddr_top, 0xfbff_f000);
        assert!(l
            .console_lines()
            .contains(&"Reserving virtual address space above 0xfc000000 (rounded to 0xfc000000)"));
        assert!(l.max_low_pfn < Pfn::new(0x3_6ffe));
    }

    #[test]
    fn fatal_configurations() {
        assert!(matches!(
            boot(1 << 30, "debian-686-pae", "vmalloc=1G"),
            Err(LayoutError::NoRoomForLowmem { .. })
        ));
        assert_eq!(
            boot(4 << 30, "debian-686-pae", "vmalloc=0"),
            Err(LayoutError::Bug("VMALLOC_START >= VMALLOC_END"))
        );
        assert!(matches!(
            boot(32 << 20, "debian-686-pae", ""),
            Err(LayoutError::ImageNotInRam { .. })
        ));
        assert!(matches!(
            boot(4 << 30, "debian-686-pae", "vmalloc=990M"),
            Err(LayoutError::ImageNotInLowmem { .. })
        ));
    }

    #[test]
    fn initial_mapping_is_36_mib_for_both_presets() {
        for p in ["debian-686", "debian-686-pae"] {
            let cfg = KernelConfig::preset(p).unwrap();
            assert_eq!(initial_mapped_pfn(&cfg), 0x2400);
        }
    }
}
