//! The top of the kernel's virtual address space (pgtable_32_areas.h), computed downward
//! from `FIXADDR_TOP`: fixmap, CPU entry area, LDT remap, pkmap window, then `VMALLOC_END`
//! and `MAXMEM`, the most lowmem the direct map can hold.
//!
//! All of this is `unsigned long` arithmetic on a 32-bit machine: a huge `vmalloc=` or
//! `reservetop=` makes the kernel's sums wrap. The values here wrap the same way, and
//! [`VirtualAreas::maxmem`] is `None` when the kernel's MAXMEM would have wrapped below
//! zero — a kernel that cannot map any lowmem.

use crate::config::KernelConfig;
use crate::fixmap::Fixmap;
use machine::PAGE_SIZE;

const U32: u64 = 0xffff_ffff;

/// The fixed virtual areas above vmalloc.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct VirtualAreas {
    pub fixmap: Fixmap,
    pub fixaddr_start: u64,
    pub fixaddr_tot_start: u64,
    /// `CPU_ENTRY_AREA_BASE`: the read-only IDT page, then one area per possible CPU.
    pub cpu_entry_area_base: u64,
    /// `CPU_ENTRY_AREA_MAP_SIZE`: the IDT page plus NR_CPUS areas.
    pub cpu_entry_area_map_size: u64,
    pub ldt_base_addr: u64,
    pub ldt_end_addr: u64,
    pub pkmap_base: u64,
    pub last_pkmap: u64,
    pub vmalloc_end: u64,
    /// `__VMALLOC_RESERVE` in force.
    pub vmalloc_reserve: u64,
    /// `MAXMEM = VMALLOC_END - PAGE_OFFSET - __VMALLOC_RESERVE`, if it does not wrap.
    pub maxmem: Option<u64>,
}

impl VirtualAreas {
    /// The areas for `cfg` with the boot-time `__FIXADDR_TOP` and `__VMALLOC_RESERVE`.
    pub fn new(cfg: &KernelConfig, fixaddr_top: u64, vmalloc_reserve: u64) -> VirtualAreas {
        let fixmap = Fixmap::new(cfg, fixaddr_top);
        let pmd_mask = !(cfg.pmd_size() - 1) & U32;
        let fixaddr_start = fixmap.fixaddr_start() & U32;
        let fixaddr_tot_start = fixmap.fixaddr_tot_start() & U32;
        let cea_pages = u64::from(cfg.nr_cpus) * cfg.cpu_entry_area_pages();
        // The +1 page is the read-only IDT at the base.
        let cpu_entry_area_base =
            fixaddr_tot_start.wrapping_sub(PAGE_SIZE * (cea_pages + 1)) & pmd_mask;
        let cpu_entry_area_map_size =
            PAGE_SIZE + u64::from(cfg.nr_cpus) * cfg.sizeof_cpu_entry_area;
        let ldt_base_addr = cpu_entry_area_base.wrapping_sub(PAGE_SIZE) & pmd_mask;
        let ldt_end_addr = (ldt_base_addr + cfg.pmd_size()) & U32;
        let pkmap_base = ldt_base_addr.wrapping_sub(PAGE_SIZE) & pmd_mask;
        let vmalloc_end = if cfg.has_highmem() {
            pkmap_base.wrapping_sub(2 * PAGE_SIZE) & U32
        } else {
            ldt_base_addr.wrapping_sub(2 * PAGE_SIZE) & U32
        };
        let maxmem = vmalloc_end
            .checked_sub(cfg.page_offset())
            .and_then(|room| room.checked_sub(vmalloc_reserve));
        VirtualAreas {
            fixmap,
            fixaddr_start,
            fixaddr_tot_start,
            cpu_entry_area_base,
            cpu_entry_area_map_size,
            ldt_base_addr,
            ldt_end_addr,
            pkmap_base,
            last_pkmap: cfg.last_pkmap(),
            vmalloc_end,
            vmalloc_reserve,
            maxmem,
        }
    }

    /// None of the 32-bit kernel's areas: the layout of a 64-bit kernel, whose fixmap,
    /// CPU entry area and LDT remap live far above its direct map and are not modelled,
    /// and which has no pkmap window (`last_pkmap` 0) and no `__VMALLOC_RESERVE` arithmetic.
    pub fn absent() -> VirtualAreas {
        VirtualAreas {
            fixmap: Fixmap {
                fixaddr_top: 0,
                indexes: Vec::new(),
                fix_kmap_begin: 0,
                fix_kmap_end: 0,
                end_of_permanent_fixed_addresses: 0,
                fix_btmap_end: 0,
                fix_btmap_begin: 0,
                fix_wp_test: 0,
                end_of_fixed_addresses: 0,
                km_max_idx: 0,
            },
            fixaddr_start: 0,
            fixaddr_tot_start: 0,
            cpu_entry_area_base: 0,
            cpu_entry_area_map_size: 0,
            ldt_base_addr: 0,
            ldt_end_addr: 0,
            pkmap_base: 0,
            last_pkmap: 0,
            vmalloc_end: 0,
            vmalloc_reserve: 0,
            maxmem: None,
        }
    }

    /// Start of the per-CPU part of the CPU entry area for `cpu`.
    pub fn cpu_entry_area(&self, cpu: u32, sizeof_cpu_entry_area: u64) -> u64 {
        self.cpu_entry_area_base + PAGE_SIZE + u64::from(cpu) * sizeof_cpu_entry_area
    }

    /// One past the last pkmap page.
    pub fn pkmap_end(&self) -> u64 {
        self.pkmap_base + self.last_pkmap * PAGE_SIZE
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{VmSplit, DEFAULT_FIXADDR_TOP, DEFAULT_VMALLOC_RESERVE};

    fn areas(preset: &str, cpus: u32, ghes: bool, split: VmSplit) -> VirtualAreas {
        let mut cfg = KernelConfig::preset(preset).unwrap();
        cfg.nr_cpus = cpus;
        cfg.acpi_apei_ghes = ghes;
        cfg.vmsplit = split;
        VirtualAreas::new(&cfg, DEFAULT_FIXADDR_TOP, DEFAULT_VMALLOC_RESERVE)
    }

    #[test]
    fn worked_examples_nr_cpus_8() {
        let np = areas("debian-686", 8, false, VmSplit::Split3G);
        assert_eq!(np.fixaddr_tot_start, 0xffd3_9000);
        assert_eq!(np.cpu_entry_area_base, 0xff80_0000);
        assert_eq!(
            np.cpu_entry_area_base + np.cpu_entry_area_map_size,
            0xff95_9000
        );
        assert_eq!(
            (np.ldt_base_addr, np.ldt_end_addr),
            (0xff40_0000, 0xff80_0000)
        );
        assert_eq!(np.pkmap_base, 0xff00_0000);
        assert_eq!(np.vmalloc_end, 0xfeff_e000);
        assert_eq!(np.maxmem, Some(0x36ff_e000));
        let pae = areas("debian-686-pae", 8, false, VmSplit::Split3G);
        assert_eq!(pae.fixaddr_tot_start, 0xffbf_e000);
        assert_eq!(pae.cpu_entry_area_base, 0xffa0_0000);
        assert_eq!(pae.ldt_base_addr, 0xff80_0000);
        assert_eq!(
            (pae.pkmap_base, pae.pkmap_end()),
            (0xff60_0000, 0xff80_0000)
        );
        assert_eq!(pae.maxmem, Some(0x375f_e000));
    }

    #[test]
    fn other_splits() {
        assert_eq!(
            areas("debian-686", 8, false, VmSplit::Split3GOpt).maxmem,
            Some(0x46ff_e000)
        );
        assert_eq!(
            areas("debian-686-pae", 8, false, VmSplit::Split1G).maxmem,
            Some(0xb75f_e000)
        );
        // NR_CPUS=32 without GHES, non-PAE: pkmap at 0xfec00000.
        assert_eq!(
            areas("debian-686", 32, false, VmSplit::Split3G).pkmap_base,
            0xfec0_0000
        );
    }

    #[test]
    fn huge_reserve_wraps_to_none() {
        let cfg = KernelConfig::preset("debian-686-pae").unwrap();
        let a = VirtualAreas::new(&cfg, DEFAULT_FIXADDR_TOP, (3 << 30) + (8 << 20));
        assert_eq!(a.maxmem, None);
    }
}
