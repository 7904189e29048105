//! The vmalloc areas a real boot leaves behind (`/proc/vmallocinfo`, `VmallocUsed`).
//!
//! Every reference boot shows the same sequence, created at fixed points of the boot:
//! `acpi_os_map_iomem` ioremaps of two ACPI table ranges in QEMU's table blob (the
//! reserved 128 KiB at the top of RAM below 4 GiB), `hpet_enable`'s ioremap of the HPET,
//! a one-page `bpf_prog_alloc_no_stats` vmalloc (core_initcall: the network core's first
//! BPF program), an `acpi_os_map_iomem` of the HPET block again (ACPI's namespace), a
//! `memremap` of SeaBIOS's f-segment page holding the SMBIOS/MP entry points, then the
//! scomp scratch buffers (`crypto_scomp_init_tfm`: a 32-page source and destination per
//! possible CPU on the first scomp transform) and `n_tty_open`'s 3-page `n_tty_data` when
//! `console_on_rootfs` opens the console.
//!
//! Two gaps sit between them, left by areas freed lazily (their space returns only with
//! the purge `mark_rodata_ro` triggers, after n_tty_open): below the zswap pool's scratch
//! buffers, the scratches of a first transform (the crypto self-test of the compressor at
//! its registration; freed with it) plus a 3-page vmalloc not identified; between the
//! scratches and n_tty's buffer, 711 pages of address space freed before
//! `console_on_rootfs` (not identified; most likely the initramfs unpacking's buffers).
//! The unidentified ones are modelled as address space only (`get_vm_area` + `vfree`), so
//! no page they might have held touches the allocator; their sizes are read off every
//! reference boot by `crates/highmem/tests/vmalloc_reference.rs`.

use super::BootError;
use crate::gfp::GFP_KERNEL;
use crate::kernel::Kernel;
use crate::vmalloc::VM_ALLOC;
use machine::e820::E820Type;
use machine::PAGE_SIZE;

/// QEMU 7.2 pc's ACPI tables inside the blob: the range at +0x1000 (one page) is mapped
/// first, then the two pages from the blob's start (FACS and the DSDT, which crosses into
/// the second page).
const ACPI_FIRST_MAP: (u64, u64) = (0x1000, 1);
const ACPI_SECOND_MAP: (u64, u64) = (0, 2);
/// The HPET's register block on QEMU's pc machine (ACPI HPET table, one page).
pub const HPET_ADDRESS: u64 = 0xfed0_0000;
/// SeaBIOS's f-segment page with the SMBIOS and MP floating-pointer structures.
const SMBIOS_AREA: u64 = 0xf_5000;
/// `SCOMP_SCRATCH_SIZE`: each scomp scratch buffer (128 KiB).
const SCOMP_SCRATCH_SIZE: u64 = 128 << 10;
/// `sizeof(struct n_tty_data)` rounded to vmalloc's pages: 3 pages on i386 and amd64.
const N_TTY_DATA_PAGES: u64 = 3;
/// The unidentified 3-page vmalloc freed before the zswap pool (see the module doc).
pub const UNIDENTIFIED_EARLY_PAGES: u64 = 3;
/// The unidentified address space (guard pages included) freed before console_on_rootfs.
pub const UNIDENTIFIED_LATE_PAGES: u64 = 711;

/// The callers as each build's symbols print them (`%pS`: function+offset/size).
pub(crate) struct Callers {
    pub acpi_os_map_iomem: &'static str,
    pub hpet_enable: &'static str,
    pub memremap: &'static str,
    pub bpf_prog_alloc_no_stats: &'static str,
    /// `crypto_scomp_alloc_scratches()`'s source and destination vmallocs.
    pub scomp_scratches: [&'static str; 2],
    pub n_tty_open: &'static str,
}

/// The callers of this kernel's build: 686-pae, 686 or amd64 (the amd64 research run's
/// /proc/vmallocinfo).
pub(crate) fn callers(cfg: &crate::config::KernelConfig) -> Callers {
    let i386 = |acpi_os_map_iomem, hpet_enable, memremap| Callers {
        acpi_os_map_iomem,
        hpet_enable,
        memremap,
        bpf_prog_alloc_no_stats: "bpf_prog_alloc_no_stats+0x2b/0x1b0",
        scomp_scratches: [
            "crypto_scomp_init_tfm+0x65/0xb0",
            "crypto_scomp_init_tfm+0x78/0xb0",
        ],
        n_tty_open: "n_tty_open+0x16/0x90",
    };
    match cfg.arch {
        crate::config::Arch::X86_64 => Callers {
            acpi_os_map_iomem: "acpi_os_map_iomem+0x1b6/0x1d0",
            hpet_enable: "hpet_enable+0xef/0x46d",
            memremap: "memremap+0x159/0x210",
            bpf_prog_alloc_no_stats: "bpf_prog_alloc_no_stats+0x31/0x1e0",
            scomp_scratches: [
                "crypto_scomp_init_tfm+0x75/0xe0",
                "crypto_scomp_init_tfm+0x93/0xe0",
            ],
            n_tty_open: "n_tty_open+0x14/0xa0",
        },
        _ if cfg.pae => i386(
            "acpi_os_map_iomem+0x215/0x240",
            "hpet_enable+0xc7/0x3dc",
            "memremap+0xc4/0x1a0",
        ),
        _ => i386(
            "acpi_os_map_iomem+0x211/0x240",
            "hpet_enable+0xc5/0x3da",
            "memremap+0xa9/0x170",
        ),
    }
}

pub(crate) fn vm_err(e: crate::vmalloc::VmallocError) -> BootError {
    BootError::Bug(format!("BUG: boot-time vmalloc: {e}"))
}

impl Kernel {
    /// The list above is Linux 6.1's: the historical designs (`--design`), whose kernels
    /// had other boot-time users, start with an empty vmalloc area.
    pub(super) fn boot_vm_areas(&self) -> bool {
        self.hm.design == crate::design::KernelDesign::Linux61
    }

    /// QEMU's ACPI table blob: the reserved firmware e820 range at the top of RAM below
    /// 4 GiB (above the first MiB, below the BIOS flash alias).
    fn acpi_table_blob(&self) -> Option<u64> {
        self.layout
            .firmware_e820
            .iter()
            .filter(|e| e.kind == E820Type::Reserved)
            .map(|e| e.addr.as_u64())
            .find(|&a| (1 << 20..0xfffc_0000).contains(&a))
    }

    /// `acpi_early_init` (table maps) and `late_time_init` → `hpet_enable`, right after
    /// `mm_init`.
    pub(crate) fn acpi_early_init_and_hpet(&mut self) -> Result<(), BootError> {
        let c = callers(&self.config);
        if let Some(blob) = self.acpi_table_blob() {
            for (off, pages) in [ACPI_FIRST_MAP, ACPI_SECOND_MAP] {
                self.ioremap_caller(blob + off, pages * PAGE_SIZE, c.acpi_os_map_iomem, 0)
                    .map_err(vm_err)?;
            }
        }
        self.ioremap_caller(HPET_ADDRESS, PAGE_SIZE, c.hpet_enable, 0)
            .map_err(vm_err)?;
        Ok(())
    }

    /// core_initcall(sock_init) → the first BPF program's one-page image.
    pub(crate) fn bpf_prog_alloc(&mut self) -> Result<(), BootError> {
        let caller = callers(&self.config).bpf_prog_alloc_no_stats;
        self.vmalloc_caller(PAGE_SIZE, GFP_KERNEL, caller, 0)
            .map_err(vm_err)?;
        Ok(())
    }

    /// subsys_initcall(acpi_init): the namespace maps the HPET block; then the SMBIOS area
    /// is memremap'ed (cacheable; shown as an ioremap).
    pub(crate) fn acpi_init_and_smbios(&mut self) -> Result<(), BootError> {
        let c = callers(&self.config);
        self.ioremap_caller(HPET_ADDRESS, PAGE_SIZE, c.acpi_os_map_iomem, 0)
            .map_err(vm_err)?;
        self.ioremap_caller(SMBIOS_AREA, PAGE_SIZE, c.memremap, 0)
            .map_err(vm_err)?;
        Ok(())
    }

    /// `crypto_scomp_alloc_scratches()`: a source and a destination buffer per possible
    /// CPU. Returns their addresses.
    fn crypto_scomp_alloc_scratches(&mut self) -> Result<Vec<u64>, BootError> {
        let mut out = Vec::new();
        for _cpu in 0..self.node.nr_cpus {
            for caller in callers(&self.config).scomp_scratches {
                let a = self
                    .vmalloc_caller(SCOMP_SCRATCH_SIZE, GFP_KERNEL, caller, 0)
                    .map_err(vm_err)?;
                out.push(a);
            }
        }
        Ok(out)
    }

    /// The compressor's registration: an unidentified 3-page buffer (i386: the amd64
    /// dump shows no room for it) and the crypto self-test's transform, both freed
    /// (lazily); then late_initcall(zswap_init)'s pool allocates the scratches for good.
    pub(crate) fn crypto_scomp_and_zswap(&mut self) -> Result<(), BootError> {
        if self.config.arch == crate::config::Arch::I386 {
            let early = self
                .get_vm_area_caller(UNIDENTIFIED_EARLY_PAGES * PAGE_SIZE, VM_ALLOC, "boot", 0)
                .map_err(vm_err)?;
            self.vfree(early, 0).map_err(vm_err)?;
        }
        for a in self.crypto_scomp_alloc_scratches()? {
            self.vfree(a, 0).map_err(vm_err)?;
        }
        self.crypto_scomp_alloc_scratches()?;
        Ok(())
    }

    /// The address space freed before `console_on_rootfs` (guard page included in the
    /// count), then `n_tty_open`'s `n_tty_data`.
    pub(crate) fn console_on_rootfs(&mut self) -> Result<(), BootError> {
        let late = self
            .get_vm_area_caller(
                (UNIDENTIFIED_LATE_PAGES - 1) * PAGE_SIZE,
                VM_ALLOC,
                "boot",
                0,
            )
            .map_err(vm_err)?;
        self.vfree(late, 0).map_err(vm_err)?;
        let caller = callers(&self.config).n_tty_open;
        self.vmalloc_caller(N_TTY_DATA_PAGES * PAGE_SIZE, GFP_KERNEL, caller, 0)
            .map_err(vm_err)?;
        Ok(())
    }
}
