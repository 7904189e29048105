//! Kernel build configuration: the Kconfig choices and build constants that shape memory.
//!
//! A 32-bit kernel's memory layout is fixed at build time by a handful of choices (PAE,
//! HIGHMEM4G/64G, the user/kernel split, NR_CPUS, the options that add fixmap slots) and
//! by numbers the compiler decides (`sizeof(struct cpu_entry_area)`, where the linker put
//! `_end`). [`KernelConfig`] holds both, so layout code computes everything else from it
//! with the kernel's own formulas. The presets are the two Debian 6.1 kernels the
//! reference boots ran: their Kconfig values and build constants (from the debug images,
//! see `reference/kernel/constants-*.txt`) are stated here as data, as a `.config` would.

use core::fmt;
use machine::PAGE_SIZE;

/// Which instruction set the kernel is built for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Arch {
    /// 32-bit x86: the subject of this model.
    I386,
    /// 64-bit x86: no high memory at all (the lecture's "an end to high memory?").
    X86_64,
}

/// CONFIG_NOHIGHMEM / CONFIG_HIGHMEM4G / CONFIG_HIGHMEM64G.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Highmem {
    NoHighmem,
    Highmem4G,
    Highmem64G,
}

/// The user/kernel split (CONFIG_VMSPLIT_*), which sets PAGE_OFFSET.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum VmSplit {
    /// 3G/1G, PAGE_OFFSET 0xC0000000 (default).
    Split3G,
    /// 3G/1G "optimized for 1 GiB of RAM", PAGE_OFFSET 0xB0000000 (not with PAE).
    Split3GOpt,
    /// 2G/2G, PAGE_OFFSET 0x80000000.
    Split2G,
    /// 2G/2G optimized, PAGE_OFFSET 0x78000000 (not with PAE).
    Split2GOpt,
    /// 1G/3G, PAGE_OFFSET 0x40000000.
    Split1G,
}

impl VmSplit {
    /// CONFIG_PAGE_OFFSET for this split.
    pub const fn page_offset(self) -> u64 {
        match self {
            VmSplit::Split3G => 0xc000_0000,
            VmSplit::Split3GOpt => 0xb000_0000,
            VmSplit::Split2G => 0x8000_0000,
            VmSplit::Split2GOpt => 0x7800_0000,
            VmSplit::Split1G => 0x4000_0000,
        }
    }

    /// Kconfig makes the *_OPT splits depend on !X86_PAE.
    pub const fn allowed_with_pae(self) -> bool {
        !matches!(self, VmSplit::Split3GOpt | VmSplit::Split2GOpt)
    }
}

/// Addresses of the kernel image's symbols (System.map): virtual link addresses from
/// [`KernelConfig::image`], physical load addresses in [`KernelConfig::image_phys`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct KernelImage {
    pub text: u64,
    pub etext: u64,
    pub start_rodata: u64,
    pub end_rodata: u64,
    pub sdata: u64,
    pub edata: u64,
    pub init_begin: u64,
    pub init_end: u64,
    pub bss_start: u64,
    pub bss_stop: u64,
    pub brk_base: u64,
    pub brk_limit: u64,
    pub end: u64,
    pub swapper_pg_dir: u64,
    pub initial_page_table: u64,
}

/// The section sizes of the boot line `Memory: …K/…K available (…K kernel code, …K rwdata,
/// …K rodata, …K init, …K bss, …)` (mem_init_print_info), in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ImageSizes {
    pub code: u64,
    pub rwdata: u64,
    pub rodata: u64,
    pub init: u64,
    pub bss: u64,
}

impl KernelImage {
    /// Every symbol moved by `f` (physical ↔ virtual).
    pub fn map(self, f: impl Fn(u64) -> u64) -> KernelImage {
        KernelImage {
            text: f(self.text),
            etext: f(self.etext),
            start_rodata: f(self.start_rodata),
            end_rodata: f(self.end_rodata),
            sdata: f(self.sdata),
            edata: f(self.edata),
            init_begin: f(self.init_begin),
            init_end: f(self.init_end),
            bss_start: f(self.bss_start),
            bss_stop: f(self.bss_stop),
            brk_base: f(self.brk_base),
            brk_limit: f(self.brk_limit),
            end: f(self.end),
            swapper_pg_dir: f(self.swapper_pg_dir),
            initial_page_table: f(self.initial_page_table),
        }
    }

    /// Section sizes as mem_init_print_info computes them. On x86 `_stext` is `_text`, and
    /// the sections do not nest, so none of the kernel's overlap corrections apply.
    pub fn sizes(&self) -> ImageSizes {
        ImageSizes {
            code: self.etext - self.text,
            rwdata: self.edata - self.sdata,
            rodata: self.end_rodata - self.start_rodata,
            init: self.init_end - self.init_begin,
            bss: self.bss_stop - self.bss_start,
        }
    }
}

/// Everything about the kernel build that the memory model depends on.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct KernelConfig {
    /// Preset name (`debian-686-pae`) or a free label.
    pub name: String,
    /// `uname -r` of the kernel this describes.
    pub release: String,
    pub arch: Arch,
    /// CONFIG_X86_PAE: 3-level page tables, 64-bit PTEs, 36-bit physical addresses.
    pub pae: bool,
    pub highmem: Highmem,
    pub vmsplit: VmSplit,
    /// CONFIG_NR_CPUS: sizes the kmap_local fixmap slots and the CPU entry area.
    pub nr_cpus: u32,
    /// CONFIG_HIGHPTE: user page tables may live in high memory.
    pub highpte: bool,
    /// CONFIG_PAGE_TABLE_ISOLATION.
    pub page_table_isolation: bool,
    /// CONFIG_DEBUG_KMAP_LOCAL: guard slots between kmap_local entries (KM_MAX_IDX 33).
    pub debug_kmap_local: bool,
    // Options that add fixmap slots.
    pub x86_local_apic: bool,
    pub x86_io_apic: bool,
    pub provide_ohci1394_dma_init: bool,
    pub pci_mmconfig: bool,
    pub paravirt_xxl: bool,
    pub acpi_apei_ghes: bool,
    pub intel_txt: bool,
    /// CONFIG_FLATMEM (one mem_map array) rather than SPARSEMEM.
    pub flatmem: bool,
    /// CONFIG_TRANSPARENT_HUGEPAGE with its default mode (`_ALWAYS` / `_MADVISE`), or `None`
    /// when THP is not built in. Whether THP ends up enabled is decided at boot (thp.rs).
    pub transparent_hugepage: Option<crate::thp::ThpEnabled>,
    /// Boot default of `__VMALLOC_RESERVE` (128 MiB).
    pub vmalloc_reserve: u64,
    /// Boot default of `__FIXADDR_TOP`.
    pub fixaddr_top: u64,
    /// sizeof(struct cpu_entry_area).
    pub sizeof_cpu_entry_area: u64,
    /// sizeof(struct page).
    pub sizeof_struct_page: u64,
    /// The image as the boot loader places it: each symbol's physical address (`__pa`).
    /// It starts at CONFIG_PHYSICAL_START (16 MiB, a multiple of CONFIG_PHYSICAL_ALIGN)
    /// whatever the split; the link addresses follow PAGE_OFFSET ([`Self::image`]).
    pub image_phys: KernelImage,
}

/// A configuration Kconfig would refuse, or an unknown preset.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("unknown kernel preset `{name}` (valid: {})", PRESET_NAMES.join(", "))]
    UnknownPreset { name: String },
    #[error("invalid kernel configuration: {0}")]
    Invalid(String),
}

/// Names accepted by [`KernelConfig::preset`].
pub const PRESET_NAMES: &[&str] = &["debian-686", "debian-686-pae"];

/// `VMALLOC_OFFSET`: the gap between the end of lowmem and VMALLOC_START.
pub const VMALLOC_OFFSET: u64 = 8 << 20;
/// Default `__VMALLOC_RESERVE`.
pub const DEFAULT_VMALLOC_RESERVE: u64 = 128 << 20;
/// Default `__FIXADDR_TOP`: one unused page below 4 GiB.
pub const DEFAULT_FIXADDR_TOP: u64 = 0xffff_f000;
/// `MAX_NONPAE_PFN`: the first pfn a 2-level page table cannot reach (4 GiB).
pub const MAX_NONPAE_PFN: u64 = 1 << 20;
/// `MAX_DMA_PFN`: end of ZONE_DMA (16 MiB).
pub const MAX_DMA_PFN: u64 = (16 << 20) / PAGE_SIZE;

/// `MAX_DMA32_PFN`: the first pfn a 32-bit DMA master cannot reach (4 GiB).
pub const MAX_DMA32_PFN: u64 = (1 << 32) / PAGE_SIZE;
/// `MAX_ORDER_NR_PAGES` in 6.1 (MAX_ORDER 11).
pub const MAX_ORDER_NR_PAGES: u64 = 1 << 10;

impl KernelConfig {
    /// A preset by name; the error lists the valid names.
    pub fn preset(name: &str) -> Result<KernelConfig, ConfigError> {
        match name {
            "debian-686" => Ok(debian_686()),
            "debian-686-pae" => Ok(debian_686_pae()),
            _ => Err(ConfigError::UnknownPreset {
                name: name.to_string(),
            }),
        }
    }

    /// Check the Kconfig dependencies this model relies on.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError::Invalid(m.to_string()));
        if self.arch == Arch::X86_64 {
            if self.highmem != Highmem::NoHighmem || self.highpte {
                return bad("x86_64 has no high memory");
            }
            return Ok(());
        }
        match (self.highmem, self.pae) {
            (Highmem::Highmem64G, false) => return bad("HIGHMEM64G selects X86_PAE"),
            (Highmem::Highmem4G, true) => return bad("X86_PAE cannot be combined with HIGHMEM4G"),
            _ => {}
        }
        if self.pae && !self.vmsplit.allowed_with_pae() {
            return bad("VMSPLIT_3G_OPT and VMSPLIT_2G_OPT depend on !X86_PAE");
        }
        if self.highpte && self.highmem == Highmem::NoHighmem {
            return bad("HIGHPTE depends on HIGHMEM");
        }
        if self.x86_io_apic && !self.x86_local_apic {
            return bad("X86_IO_APIC depends on X86_LOCAL_APIC");
        }
        if !(1..=64).contains(&self.nr_cpus) {
            return bad("NR_CPUS must be between 1 and 64 on 32-bit x86");
        }
        if self.sizeof_struct_page == 0 || self.sizeof_cpu_entry_area == 0 {
            return bad("structure sizes must be non-zero");
        }
        let image = &self.image_phys;
        let ordered = [
            image.text,
            image.etext,
            image.start_rodata,
            image.end_rodata,
            image.sdata,
            image.edata,
            image.init_begin,
            image.init_end,
            image.bss_start,
            image.bss_stop,
            image.brk_base,
            image.brk_limit,
            image.end,
        ];
        if ordered.windows(2).any(|w| w[0] > w[1]) {
            return bad("kernel image symbols must be ordered");
        }
        if self.page_offset() + image.end > 1 << 32 {
            return bad("the kernel image must be linked below 4 GiB");
        }
        Ok(())
    }

    /// CONFIG_HIGHMEM.
    pub fn has_highmem(&self) -> bool {
        self.highmem != Highmem::NoHighmem
    }

    /// `__PAGE_OFFSET`: the split's on i386, the 4-level direct map's base on x86_64.
    pub fn page_offset(&self) -> u64 {
        match self.arch {
            Arch::I386 => self.vmsplit.page_offset(),
            Arch::X86_64 => crate::x86_64::PAGE_OFFSET_64,
        }
    }

    /// Entries per page-table page: 512 with PAE, 1024 without.
    pub fn ptrs_per_pte(&self) -> u64 {
        if self.pae {
            512
        } else {
            1024
        }
    }

    /// Bytes one PMD entry maps: 2 MiB with PAE, 4 MiB without (PMD folded into PGD).
    pub fn pmd_size(&self) -> u64 {
        self.ptrs_per_pte() * PAGE_SIZE
    }

    /// Entries of the top-level table: 4 with PAE, 1024 without.
    pub fn ptrs_per_pgd(&self) -> u64 {
        if self.pae {
            4
        } else {
            1024
        }
    }

    /// Entries per PMD page: 512 with PAE, 1 (folded) without.
    pub fn ptrs_per_pmd(&self) -> u64 {
        if self.pae {
            512
        } else {
            1
        }
    }

    /// `LAST_PKMAP`: persistent kmap slots, one page table's worth.
    pub fn last_pkmap(&self) -> u64 {
        self.ptrs_per_pte()
    }

    /// `KM_MAX_IDX`: kmap_local slots per CPU.
    pub fn km_max_idx(&self) -> u64 {
        if self.debug_kmap_local {
            33
        } else {
            16
        }
    }

    /// `MAX_ARCH_PFN`: the e820 scan stops here (36-bit with PAE, 32-bit without).
    pub fn max_arch_pfn(&self) -> u64 {
        if self.pae {
            1 << 24
        } else {
            1 << 20
        }
    }

    /// Width of `phys_addr_t` / `resource_size_t` in bits: e820 ranges ending above it
    /// never reach memblock.
    pub fn phys_addr_bits(&self) -> u32 {
        if self.pae {
            64
        } else {
            32
        }
    }

    /// Physical load address of the image (`__pa(_text)`, CONFIG_PHYSICAL_START).
    pub fn phys_start(&self) -> u64 {
        self.image_phys.text
    }

    /// The image's link addresses for this split: vmlinux.lds links `_text` at
    /// `__START_KERNEL` = `__PAGE_OFFSET + LOAD_PHYSICAL_ADDR`, so every symbol is
    /// PAGE_OFFSET plus its physical address (`__pa(x) = x - PAGE_OFFSET` for the image
    /// as for the direct map).
    pub fn image(&self) -> KernelImage {
        let page_offset = self.page_offset();
        self.image_phys.map(|pa| pa + page_offset)
    }

    /// `sizeof(struct cpu_entry_area)` rounded up to pages.
    pub fn cpu_entry_area_pages(&self) -> u64 {
        self.sizeof_cpu_entry_area.div_ceil(PAGE_SIZE)
    }
}

impl fmt::Display for KernelConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hm = match self.highmem {
            Highmem::NoHighmem => "NOHIGHMEM",
            Highmem::Highmem4G => "HIGHMEM4G",
            Highmem::Highmem64G => "HIGHMEM64G",
        };
        write!(
            f,
            "{} ({}, {}{}, NR_CPUS={}, PAGE_OFFSET={:#x})",
            self.name,
            self.release,
            hm,
            if self.pae { "+PAE" } else { "" },
            self.nr_cpus,
            self.page_offset()
        )
    }
}

/// The options the two Debian 686 flavours share (config-6.1.0-50-686*).
/// PAGE_OFFSET the Debian kernels were linked for (VMSPLIT_3G): their System.map minus this
/// is where each symbol is loaded. A rebuild with another split keeps the physical layout
/// (the sections do not depend on PAGE_OFFSET) and moves the link addresses.
const DEBIAN_PAGE_OFFSET: u64 = 0xc000_0000;

fn debian_common(name: &str, release: &str, system_map: KernelImage) -> KernelConfig {
    KernelConfig {
        name: name.to_string(),
        release: release.to_string(),
        arch: Arch::I386,
        pae: false,
        highmem: Highmem::Highmem4G,
        vmsplit: VmSplit::Split3G,
        nr_cpus: 32,
        highpte: true,
        page_table_isolation: false,
        debug_kmap_local: false,
        x86_local_apic: true,
        x86_io_apic: true,
        provide_ohci1394_dma_init: false,
        pci_mmconfig: true,
        paravirt_xxl: false,
        acpi_apei_ghes: true,
        intel_txt: false,
        flatmem: true,
        transparent_hugepage: Some(crate::thp::ThpEnabled::Always),
        vmalloc_reserve: DEFAULT_VMALLOC_RESERVE,
        fixaddr_top: DEFAULT_FIXADDR_TOP,
        sizeof_cpu_entry_area: 176_128,
        sizeof_struct_page: 40,
        image_phys: system_map.map(|va| va - DEBIAN_PAGE_OFFSET),
    }
}

/// Debian's `linux-image-6.1.0-50-686` (HIGHMEM4G, 2-level paging).
fn debian_686() -> KernelConfig {
    debian_common(
        "debian-686",
        "6.1.0-50-686",
        KernelImage {
            text: 0xc100_0000,
            etext: 0xc191_bc80,
            start_rodata: 0xc191_c000,
            end_rodata: 0xc1c3_9000,
            sdata: 0xc1c3_9000,
            edata: 0xc1d7_0bc0,
            init_begin: 0xc1d8_6000,
            init_end: 0xc1e6_a000,
            bss_start: 0xc1e7_2000,
            bss_stop: 0xc1ee_6000,
            brk_base: 0xc1ee_6000,
            brk_limit: 0xc200_c000,
            end: 0xc200_c000,
            swapper_pg_dir: 0xc1e7_4000,
            initial_page_table: 0xc1e7_2000,
        },
    )
}

/// Debian's `linux-image-6.1.0-50-686-pae` (HIGHMEM64G, PAE, PTI).
fn debian_686_pae() -> KernelConfig {
    KernelConfig {
        pae: true,
        highmem: Highmem::Highmem64G,
        page_table_isolation: true,
        ..debian_common(
            "debian-686-pae",
            "6.1.0-50-686-pae",
            KernelImage {
                text: 0xc100_0000,
                etext: 0xc193_3f00,
                start_rodata: 0xc193_4000,
                end_rodata: 0xc1c5_1000,
                sdata: 0xc1c5_2000,
                edata: 0xc1d8_e680,
                init_begin: 0xc1da_4000,
                init_end: 0xc1e8_c000,
                bss_start: 0xc1e9_4000,
                bss_stop: 0xc1f0_b000,
                brk_base: 0xc1f0_b000,
                brk_limit: 0xc213_5000,
                end: 0xc213_5000,
                swapper_pg_dir: 0xc1e9_8000,
                initial_page_table: 0xc1c5_6000,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_valid() {
        for name in PRESET_NAMES {
            let c = KernelConfig::preset(name).unwrap();
            assert_eq!(c.name, *name);
            c.validate().unwrap();
        }
    }

    #[test]
    fn unknown_preset_lists_names() {
        let e = KernelConfig::preset("vanilla").unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown kernel preset `vanilla` (valid: debian-686, debian-686-pae)"
        );
    }

    #[test]
    fn kconfig_dependencies() {
        let mut c = KernelConfig::preset("debian-686-pae").unwrap();
        c.vmsplit = VmSplit::Split2GOpt;
        assert!(c.validate().is_err());
        c.vmsplit = VmSplit::Split2G;
        c.validate().unwrap();
        c.highmem = Highmem::Highmem4G;
        assert!(c.validate().is_err());
        let mut c = KernelConfig::preset("debian-686").unwrap();
        c.highmem = Highmem::NoHighmem;
        assert!(c.validate().is_err(), "HIGHPTE without HIGHMEM");
        c.highpte = false;
        c.validate().unwrap();
        c.nr_cpus = 0;
        assert!(c.validate().is_err());
    }

    #[test]
    fn derived_constants() {
        let pae = KernelConfig::preset("debian-686-pae").unwrap();
        assert_eq!(pae.pmd_size(), 2 << 20);
        assert_eq!(pae.last_pkmap(), 512);
        assert_eq!(pae.max_arch_pfn(), 0x100_0000);
        assert_eq!(pae.phys_start(), 0x100_0000);
        assert_eq!(pae.cpu_entry_area_pages(), 43);
        let np = KernelConfig::preset("debian-686").unwrap();
        assert_eq!(np.pmd_size(), 4 << 20);
        assert_eq!(np.last_pkmap(), 1024);
        assert_eq!(np.max_arch_pfn(), 0x10_0000);
    }
}
