//! The i386 fixmap: compile-time virtual addresses at the top of the address space.
//!
//! `enum fixed_addresses` (arch/x86/include/asm/fixmap.h) numbers one-page slots downward
//! from `FIXADDR_TOP`; which slots exist depends on Kconfig, so the enum is rebuilt here
//! from a [`KernelConfig`]. The slots that matter for high memory are the kmap_local ones:
//! `KM_MAX_IDX` per possible CPU, `FIX_KMAP_BEGIN..=FIX_KMAP_END`. After the permanent
//! slots come the 512 boot-time early_ioremap slots, pushed up if needed so that they sit
//! in a single page table, then `FIX_WP_TEST`. The size of the whole enum decides where the
//! CPU entry area, the LDT remap, the pkmap window and thus `VMALLOC_END` and `MAXMEM` go.

use crate::config::KernelConfig;
use machine::PAGE_SIZE;

/// `NR_FIX_BTMAPS * FIX_BTMAPS_SLOTS`: early_ioremap slots.
pub const TOTAL_FIX_BTMAPS: u64 = 64 * 8;
/// `MAX_IO_APICS` on 32-bit.
pub const MAX_IO_APICS: u64 = 64;

/// The fixmap enum of one kernel build, with `FIXADDR_TOP`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Fixmap {
    /// `FIXADDR_TOP` (`__FIXADDR_TOP`, moved down by `reservetop=`).
    pub fixaddr_top: u64,
    /// Every enumerator with its value, in enum order, spelled as in the kernel.
    pub indexes: Vec<(&'static str, u64)>,
    pub fix_kmap_begin: u64,
    pub fix_kmap_end: u64,
    pub end_of_permanent_fixed_addresses: u64,
    pub fix_btmap_end: u64,
    pub fix_btmap_begin: u64,
    pub fix_wp_test: u64,
    pub end_of_fixed_addresses: u64,
    /// `KM_MAX_IDX` of this build.
    pub km_max_idx: u64,
}

impl Fixmap {
    /// Build the enum for `cfg`, with the fixmap ending at `fixaddr_top`.
    pub fn new(cfg: &KernelConfig, fixaddr_top: u64) -> Fixmap {
        let mut indexes: Vec<(&'static str, u64)> = Vec::new();
        let mut next = 0u64;
        let mut push = |name: &'static str, idx: &mut u64| {
            indexes.push((name, *idx));
            *idx += 1;
        };
        push("FIX_HOLE", &mut next);
        push("FIX_DBGP_BASE", &mut next);
        push("FIX_EARLYCON_MEM_BASE", &mut next);
        if cfg.provide_ohci1394_dma_init {
            push("FIX_OHCI1394_BASE", &mut next);
        }
        if cfg.x86_local_apic {
            push("FIX_APIC_BASE", &mut next);
        }
        if cfg.x86_io_apic {
            let base = next;
            push("FIX_IO_APIC_BASE_0", &mut next);
            next = base + MAX_IO_APICS - 1;
            push("FIX_IO_APIC_BASE_END", &mut next);
        }
        // X86_32 always selects KMAP_LOCAL.
        let km_max_idx = cfg.km_max_idx();
        let fix_kmap_begin = next;
        push("FIX_KMAP_BEGIN", &mut next);
        next = fix_kmap_begin + km_max_idx * u64::from(cfg.nr_cpus) - 1;
        let fix_kmap_end = next;
        push("FIX_KMAP_END", &mut next);
        if cfg.pci_mmconfig {
            push("FIX_PCIE_MCFG", &mut next);
        }
        if cfg.paravirt_xxl {
            push("FIX_PARAVIRT_BOOTMAP", &mut next);
        }
        if cfg.acpi_apei_ghes {
            push("FIX_APEI_GHES_IRQ", &mut next);
            push("FIX_APEI_GHES_NMI", &mut next);
        }
        let perm_end = next;
        push("__end_of_permanent_fixed_addresses", &mut next);

        // The boot-time block must not straddle a page-table boundary; if it would, it
        // starts at the next TOTAL_FIX_BTMAPS boundary instead.
        let ptrs = cfg.ptrs_per_pte();
        let last = perm_end + TOTAL_FIX_BTMAPS - 1;
        let fix_btmap_end = if (perm_end ^ last) & !(ptrs - 1) != 0 {
            perm_end + TOTAL_FIX_BTMAPS - (perm_end & (TOTAL_FIX_BTMAPS - 1))
        } else {
            perm_end
        };
        next = fix_btmap_end;
        push("FIX_BTMAP_END", &mut next);
        next = fix_btmap_end + TOTAL_FIX_BTMAPS - 1;
        let fix_btmap_begin = next;
        push("FIX_BTMAP_BEGIN", &mut next);
        let fix_wp_test = next;
        push("FIX_WP_TEST", &mut next);
        if cfg.intel_txt {
            push("FIX_TBOOT_BASE", &mut next);
        }
        let end_of_fixed_addresses = next;
        push("__end_of_fixed_addresses", &mut next);

        Fixmap {
            fixaddr_top,
            indexes,
            fix_kmap_begin,
            fix_kmap_end,
            end_of_permanent_fixed_addresses: perm_end,
            fix_btmap_end,
            fix_btmap_begin,
            fix_wp_test,
            end_of_fixed_addresses,
            km_max_idx,
        }
    }

    /// The value of an enumerator by its kernel name.
    pub fn index(&self, name: &str) -> Option<u64> {
        self.indexes
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
    }

    /// `__fix_to_virt(idx)`: slot 0 is the highest page; the fixmap grows down.
    pub fn fix_to_virt(&self, idx: u64) -> u64 {
        self.fixaddr_top.wrapping_sub(idx * PAGE_SIZE) & 0xffff_ffff
    }

    /// `FIXADDR_START`: bottom of the permanent slots.
    pub fn fixaddr_start(&self) -> u64 {
        self.fixaddr_top
            .wrapping_sub(self.end_of_permanent_fixed_addresses * PAGE_SIZE)
            & 0xffff_ffff
    }

    /// `FIXADDR_TOT_START`: bottom of the whole fixmap, boot-time slots included.
    pub fn fixaddr_tot_start(&self) -> u64 {
        self.fixaddr_top
            .wrapping_sub(self.end_of_fixed_addresses * PAGE_SIZE)
            & 0xffff_ffff
    }

    /// Address of kmap_local slot `idx` (0-based stack depth) on `cpu`
    /// (`kmap_local_calc_idx`: the CPU's block of KM_MAX_IDX slots).
    pub fn kmap_local_vaddr(&self, cpu: u32, idx: u64) -> Option<u64> {
        let slot = self.fix_kmap_begin + idx + self.km_max_idx * u64::from(cpu);
        (idx < self.km_max_idx && slot <= self.fix_kmap_end).then(|| self.fix_to_virt(slot))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{KernelConfig, DEFAULT_FIXADDR_TOP};

    fn with_cpus(preset: &str, cpus: u32) -> Fixmap {
        let mut cfg = KernelConfig::preset(preset).unwrap();
        cfg.nr_cpus = cpus;
        Fixmap::new(&cfg, DEFAULT_FIXADDR_TOP)
    }

    #[test]
    fn eight_cpus_no_ghes_matches_the_worked_example() {
        // Fact sheet §1.4: APIC, IO-APIC, MMCONFIG, no GHES, NR_CPUS=8.
        for (preset, btmap_end, end) in [("debian-686", 197, 710), ("debian-686-pae", 512, 1025)] {
            let mut cfg = KernelConfig::preset(preset).unwrap();
            cfg.nr_cpus = 8;
            cfg.acpi_apei_ghes = false;
            let f = Fixmap::new(&cfg, DEFAULT_FIXADDR_TOP);
            assert_eq!((f.fix_kmap_begin, f.fix_kmap_end), (68, 195));
            assert_eq!(f.end_of_permanent_fixed_addresses, 197);
            assert_eq!(f.fix_btmap_end, btmap_end);
            assert_eq!(f.end_of_fixed_addresses, end);
            assert_eq!(f.fixaddr_start(), 0xfff3_a000);
            assert_eq!(f.kmap_local_vaddr(0, 0), Some(0xfffb_b000));
        }
    }

    #[test]
    fn kmap_slots_per_cpu() {
        let f = with_cpus("debian-686-pae", 2);
        assert_eq!(
            f.kmap_local_vaddr(1, 0),
            Some(f.fix_to_virt(f.fix_kmap_begin + 16))
        );
        assert_eq!(f.kmap_local_vaddr(0, 16), None);
        assert_eq!(
            f.kmap_local_vaddr(1, 15),
            Some(f.fix_to_virt(f.fix_kmap_end))
        );
        assert_eq!(f.kmap_local_vaddr(2, 0), None);
    }

    #[test]
    fn optional_slots() {
        let mut cfg = KernelConfig::preset("debian-686").unwrap();
        cfg.debug_kmap_local = true;
        cfg.intel_txt = true;
        cfg.paravirt_xxl = true;
        cfg.provide_ohci1394_dma_init = true;
        let f = Fixmap::new(&cfg, DEFAULT_FIXADDR_TOP);
        assert_eq!(f.index("FIX_OHCI1394_BASE"), Some(3));
        assert_eq!(f.fix_kmap_begin, 69);
        assert_eq!(f.fix_kmap_end, 69 + 33 * 32 - 1);
        assert_eq!(f.index("FIX_TBOOT_BASE"), Some(f.fix_wp_test + 1));
        assert_eq!(f.end_of_fixed_addresses, f.fix_wp_test + 2);
        // 1129 permanent slots: the boot block 1129..=1640 already sits in one table.
        assert_eq!(f.end_of_permanent_fixed_addresses, 1129);
        assert_eq!(f.fix_btmap_end, 1129);
    }
}
