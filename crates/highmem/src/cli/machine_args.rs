//! The machine and kernel options every subcommand takes (RAM, CPUs, kernel preset, kernel
//! command line, sysctls), checked once so each subcommand gets a valid machine or a
//! one-line error.

use super::{parse_ram_size, CliError};
use clap::Args;
use kernel::cmdline::CmdLine;
use kernel::config::KernelConfig;
use kernel::design::KernelDesign;
use kernel::variant::Variant;
use machine::e820::E820Map;
use std::io::Write;

/// QEMU's `pc` machine takes at most this many CPUs.
const QEMU_PC_MAX_CPUS: u32 = 255;

/// The simulated machine and the kernel booted on it.
#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct MachineArgs {
    /// RAM size, as QEMU's -m: 512M, 4G, 4096 (a bare number is MiB). Default: 16G for the
    /// PAE kernel, 3G for the non-PAE one (all of it below 4 GiB, where that kernel can reach).
    #[arg(long, value_name = "SIZE")]
    pub ram: Option<String>,
    /// Boot the PAE kernel (default preset debian-686-pae instead of debian-686).
    #[arg(long)]
    pub pae: bool,
    /// Number of CPUs (QEMU -smp).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub cpus: u32,
    /// Kernel preset: debian-686, debian-686-pae.
    #[arg(long, value_name = "PRESET")]
    pub kernel: Option<String>,
    /// Extra kernel command line, as QEMU's -append ('mem=2G highmem=512M vmalloc=256M').
    #[arg(
        long,
        value_name = "CMDLINE",
        default_value = "",
        allow_hyphen_values = true
    )]
    pub append: String,
    /// Kernel design of the highmem paths: linux-6.1 (default), highpte-2.5, pte-highmem-2.4.
    #[arg(long, value_name = "DESIGN")]
    pub design: Option<String>,
    /// How linux-6.1's pte_offset_map maps a highmem PTE page: kmap_atomic (6.1, default)
    /// or kmap_local (6.5+: the walker stays preemptible).
    #[arg(long, value_name = "API")]
    pub pte_map: Option<String>,
    /// Kernel build variant (seed 001's list, plus a 64-bit kernel): nohighmem, 4GB,
    /// 4GB-highpte, 64GB, 64GB-highpte, x86_64. Derived from the Debian presets; replaces
    /// --kernel / --pae.
    #[arg(long, value_name = "VARIANT")]
    pub variant: Option<String>,
    /// TLB of the CPUs: core2 (Intel Core 2's data TLB, 256 entries for 4 KiB pages and 32 for
    /// large ones, 4-way: a real TLB, which evicts) or debug (never evicts, so every missing
    /// flush shows as a stale translation).
    #[arg(long, value_name = "GEOMETRY", value_enum, default_value_t = TlbArg::Core2)]
    pub tlb: TlbArg,
}

/// `--tlb`: the CPUs' TLB geometry.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlbArg {
    /// Intel Core 2's DTLB (the PAE-server era): set-associative, evicts.
    #[default]
    Core2,
    /// Never evicts: the debug geometry that catches every missing flush.
    Debug,
}

impl TlbArg {
    /// The machine's geometry.
    pub fn geometry(self) -> machine::TlbGeometry {
        match self {
            TlbArg::Core2 => machine::TlbGeometry::Core2,
            TlbArg::Debug => machine::TlbGeometry::Unbounded,
        }
    }
}

/// RAM above what the kernel's page tables can address (non-PAE: 4 GiB).
fn unreachable_ram(e820: &E820Map, cfg: &KernelConfig) -> u64 {
    if cfg.pae {
        return 0;
    }
    e820.ram_banks()
        .iter()
        .map(|&(start, len)| {
            let (s, e) = (start.as_u64(), start.as_u64() + len);
            e.saturating_sub(s.max(1 << 32))
        })
        .sum()
}

/// A checked machine.
pub struct MachineSpec {
    pub ram: u64,
    pub cpus: u32,
    pub cfg: KernelConfig,
    pub cmdline: CmdLine,
    pub e820: E820Map,
    /// The design (`--design`, default linux-6.1) and whether it was given.
    pub design: KernelDesign,
    pub design_given: bool,
    /// linux-6.1's `pte_offset_map` (`--pte-map`).
    pub pte_map: kernel::design::PteMapApi,
    /// The build variant (`--variant`, or the one the preset is).
    pub variant: Variant,
    /// The CPUs' TLB geometry (`--tlb`).
    pub tlb: machine::TlbGeometry,
}

impl MachineSpec {
    /// The one-line header every run starts with: the machine, the kernel and its design.
    pub fn header(&self) -> String {
        let mode = if self.cfg.arch == kernel::config::Arch::X86_64 {
            "4-level paging"
        } else if self.cfg.pae {
            "PAE"
        } else {
            "2-level paging"
        };
        let cpus = if self.cpus == 1 { "CPU" } else { "CPUs" };
        let extra = self.cmdline.to_string();
        let append = if extra.is_empty() {
            String::new()
        } else {
            format!(", command line '{extra}'")
        };
        let highmem = match self.cfg.highmem {
            kernel::config::Highmem::NoHighmem => "NOHIGHMEM",
            kernel::config::Highmem::Highmem4G => "HIGHMEM4G",
            kernel::config::Highmem::Highmem64G => "HIGHMEM64G",
        };
        format!(
            "# highmem: QEMU pc, {} RAM, {} {cpus}; kernel {} ({}, {mode}, {highmem}); design {}{}, variant {}{append}",
            human_size(self.ram),
            self.cpus,
            self.cfg.name,
            self.cfg.release,
            self.design.name(),
            match self.pte_map {
                kernel::design::PteMapApi::KmapAtomic => "",
                kernel::design::PteMapApi::KmapLocal => " (pte_offset_map by kmap_local, 6.5+)",
            },
            self.variant,
        )
    }
}

/// 16 GiB, 512 MiB, 1536 MiB: whole GiB when it divides.
fn human_size(bytes: u64) -> String {
    if bytes.is_multiple_of(1 << 30) {
        format!("{} GiB", bytes >> 30)
    } else {
        format!("{} MiB", bytes >> 20)
    }
}

impl MachineArgs {
    /// `--variant x86_64` was given (the 64-bit model, which has its own boot).
    pub fn is_x86_64(&self) -> bool {
        self.variant.as_deref().is_some_and(|v| {
            kernel::variant::Variant::from_name(v).ok() == Some(kernel::variant::Variant::X86_64)
        })
    }

    /// The default scenario's machine: 16 GiB with the PAE kernel.
    pub fn default_machine() -> MachineArgs {
        MachineArgs {
            ram: Some("16G".to_string()),
            pae: true,
            cpus: 1,
            kernel: None,
            append: String::new(),
            design: None,
            pte_map: None,
            variant: None,
            tlb: TlbArg::Core2,
        }
    }

    /// `--pte-map`: only linux-6.1 has the choice (the 2002 designs map PTE pages their own
    /// way).
    fn pte_map_api(&self, design: KernelDesign) -> Result<kernel::design::PteMapApi, CliError> {
        use kernel::design::PteMapApi;
        let Some(name) = &self.pte_map else {
            return Ok(PteMapApi::KmapAtomic);
        };
        let api = PteMapApi::from_name(name).ok_or_else(|| {
            CliError::Usage(format!(
                "--pte-map {name}: unknown (valid: kmap_atomic, 6.1's; kmap_local, 6.5's)"
            ))
        })?;
        if api == PteMapApi::KmapLocal && design != KernelDesign::Linux61 {
            return Err(CliError::Usage(format!(
                "--pte-map {name}: design {} maps PTE pages its own way (the choice is linux-6.1's)",
                design.name()
            )));
        }
        Ok(api)
    }

    /// Check the options; notes about what the kernel will ignore go to `err`.
    pub fn resolve(&self, err: &mut impl Write) -> Result<MachineSpec, CliError> {
        if self.cpus == 0 || self.cpus > QEMU_PC_MAX_CPUS {
            return Err(CliError::Usage(format!(
                "--cpus {}: the pc machine takes 1 to {QEMU_PC_MAX_CPUS} CPUs",
                self.cpus
            )));
        }
        let preset = match &self.kernel {
            Some(name) => name.as_str(),
            None if self.pae => "debian-686-pae",
            None => "debian-686",
        };
        let design = match &self.design {
            None => KernelDesign::Linux61,
            Some(d) => KernelDesign::from_name(d.trim()).ok_or_else(|| {
                CliError::Usage(format!(
                    "--design {d}: unknown design (valid: linux-6.1, highpte-2.5, pte-highmem-2.4)"
                ))
            })?,
        };
        let pte_map = self.pte_map_api(design)?;
        let cfg = match &self.variant {
            Some(v) => {
                let v = Variant::from_name(v).map_err(|e| CliError::Usage(e.to_string()))?;
                if let Some(k) = &self.kernel {
                    return Err(CliError::Usage(format!(
                        "--variant {v} conflicts with --kernel {k}: the variant is its own build"
                    )));
                }
                if self.pae && !v.pae() {
                    return Err(CliError::Usage(format!(
                        "--pae conflicts with --variant {v}, which is built without PAE"
                    )));
                }
                v.config()
            }
            None => KernelConfig::preset(preset).map_err(|e| CliError::Usage(e.to_string()))?,
        };
        let variant = Variant::of_config(&cfg);
        if self.design.is_some() {
            variant
                .check_design(design)
                .map_err(|e| CliError::Usage(e.to_string()))?;
        }
        if self.pae && !cfg.pae {
            return Err(CliError::Usage(format!(
                "--pae conflicts with --kernel {preset}, which is built without PAE"
            )));
        }
        let ram_arg = self
            .ram
            .clone()
            .unwrap_or_else(|| if cfg.pae { "16G" } else { "3G" }.to_string());
        let ram = parse_ram_size(&ram_arg).map_err(|e| CliError::Usage(format!("--ram: {e}")))?;
        let e820 =
            E820Map::qemu_pc(ram).map_err(|e| CliError::Usage(format!("--ram {ram_arg}: {e}")))?;
        let unreachable = unreachable_ram(&e820, &cfg);
        if unreachable > 0 {
            writeln!(
                err,
                "highmem: note: kernel {} has no PAE and reaches physical memory below 4 GiB only: \
                 the {} MiB of RAM QEMU puts above 4 GiB are not used (boot with --pae to use them)",
                cfg.name,
                unreachable >> 20
            )?;
        }
        let cmdline =
            CmdLine::parse(&self.append).map_err(|e| CliError::Usage(format!("--append: {e}")))?;
        for note in &cmdline.notes {
            writeln!(err, "highmem: note: {note}")?;
        }
        if cfg.arch == kernel::config::Arch::X86_64 {
            x86_64_cmdline_notes(&cmdline, err)?;
        }
        if self.cpus > cfg.nr_cpus {
            writeln!(
                err,
                "highmem: note: kernel {} has NR_CPUS={}: it brings up only {} of {} CPUs",
                cfg.name, cfg.nr_cpus, cfg.nr_cpus, self.cpus
            )?;
        }
        Ok(MachineSpec {
            ram,
            cpus: self.cpus,
            cfg,
            cmdline,
            e820,
            design,
            design_given: self.design.is_some(),
            pte_map,
            variant,
            tlb: self.tlb.geometry(),
        })
    }
}

/// The early parameters the 64-bit model does not act on, said so rather than ignored:
/// `highmem=`, `vmalloc=`, `reservetop=` and `userpte=` are i386 options (the amd64 kernel
/// hands them to init), as is `mem=nopentium`; `mem=SIZE` is applied.
fn x86_64_cmdline_notes(cmdline: &CmdLine, err: &mut impl Write) -> Result<(), CliError> {
    use kernel::cmdline::EarlyParam;
    for p in &cmdline.early {
        let what = match p {
            EarlyParam::Mem(kernel::cmdline::MemOpt::Limit(_)) => continue,
            EarlyParam::Mem(_) => {
                "mem=nopentium is x86_32's: the 64-bit kernel warns and ignores it"
            }
            EarlyParam::Highmem(_) => {
                "highmem= is an i386 option: the 64-bit kernel has no high memory"
            }
            EarlyParam::Vmalloc(_) | EarlyParam::Reservetop(_) => {
                "vmalloc= / reservetop= size the i386 kernel's address space: not on x86_64"
            }
            EarlyParam::UserPte(_) => {
                "userpte= is i386's HIGHPTE switch: x86_64 page tables are all lowmem"
            }
            EarlyParam::Malformed(_) => continue,
        };
        writeln!(err, "highmem: note: {what}")?;
    }
    Ok(())
}
