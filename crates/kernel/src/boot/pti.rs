//! Page-table isolation's effect on the kernel page tables (arch/x86/mm/pti.c, 32-bit PAE).
//!
//! With PTI the direct map is built without the global bit; once the kernel's mappings are
//! final PTI puts the bit back on the kernel image up to the end of rodata (the part it also
//! maps into the user page tables), and the rest of the kernel stays non-global so a CR3
//! switch flushes it. The user page tables themselves are not built (a documented difference).

use super::BootError;
use crate::kernel::Kernel;
use crate::pagewalk::Walk;
use crate::pgtable_types::_PAGE_GLOBAL;
use machine::PAGE_SIZE;

/// Which level `pti_clone_pgtable` shares with the user page tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PtiClone {
    Pmd,
    Pte,
}

impl Kernel {
    /// `pti_init()` on 32-bit: share the CPU entry area's PMDs with the user page tables and
    /// take the global bit off the whole kernel image (it was built without one already,
    /// as `__default_kernel_pte_mask` lacks it under PTI, so this changes nothing here).
    /// `pti_clone_entry_text()` is not replayed: the model has no `__entry_text_start`; the
    /// entry text lies inside the kernel text, whose PMDs pti_finalize() makes global anyway.
    /// The user page tables themselves are not built (a documented difference).
    pub(super) fn pti_init(&mut self) -> Result<(), BootError> {
        if !self.config.page_table_isolation {
            return Ok(());
        }
        self.log.info("Kernel/User page tables isolation: enabled");
        let cea = self.layout.areas.cpu_entry_area_base;
        let cea_pages = u64::from(self.config.nr_cpus) * self.config.cpu_entry_area_pages();
        self.pti_clone_pgtable(cea, cea + cea_pages * PAGE_SIZE, PtiClone::Pmd)?;
        let img = self.config.image();
        let hpage = self.geo.pmd_size();
        let start = img.text & !(PAGE_SIZE - 1);
        let end = img.end.div_ceil(hpage) * hpage;
        self.set_memory_nonglobal(start, (end - start) / PAGE_SIZE)
    }

    /// `pti_finalize()` → `pti_clone_kernel_text()`: the kernel image from `_text` to
    /// `__end_rodata_aligned` (the page after rodata on 32-bit) is cloned at PTE level into
    /// the user tables and made global, then `set_memory_global()` covers the text proper.
    /// `pti_kernel_image_global_ok()` holds for these kernels: 32-bit has no PCID, `pti=`
    /// is left at auto, the CPU is not a K8 and RANDSTRUCT is off.
    pub(super) fn pti_finalize(&mut self) -> Result<(), BootError> {
        if !self.config.page_table_isolation {
            return Ok(());
        }
        let img = self.config.image();
        let start = img.text & !(PAGE_SIZE - 1);
        let end_clone = img.end_rodata.div_ceil(PAGE_SIZE) * PAGE_SIZE;
        let end_global = img.etext.div_ceil(PAGE_SIZE) * PAGE_SIZE;
        self.pti_clone_pgtable(start, end_clone, PtiClone::Pte)?;
        self.set_memory_global(start, (end_global - start) / PAGE_SIZE)
    }

    /// The kernel-side effect of `pti_clone_pgtable()`: every present leaf it shares with
    /// the user tables becomes global in swapper_pg_dir too (with PGE), a large page whole;
    /// at PMD level a PMD pointing to a PTE page is shared (and marked) as it is.
    fn pti_clone_pgtable(
        &mut self,
        start: u64,
        end: u64,
        level: PtiClone,
    ) -> Result<(), BootError> {
        if !self.machine.cpus[0].features.pge {
            return Ok(());
        }
        let geo = self.geo;
        let hpage = geo.pmd_size();
        let cur = self.kernel_cursor();
        let mut addr = start;
        while addr < end {
            let next_pmd = (addr & geo.pmd_mask()) + hpage;
            match cur.walk(&self.machine.mem, addr)? {
                Walk::NoPmd { .. } => {
                    return Err(BootError::Bug(format!("BUG: CPA: no PMD for {addr:#x}")))
                }
                Walk::NoPte { .. } => addr = next_pmd,
                Walk::Large { pmd } | Walk::Pte { pmd, .. } if level == PtiClone::Pmd => {
                    // Adding the global bit loosens nothing a TLB may hold: no flush.
                    let _ = cur
                        .set(&mut self.machine.mem, pmd, addr, pmd.val | _PAGE_GLOBAL)?
                        .defer();
                    addr = next_pmd;
                }
                Walk::Large { pmd } => {
                    let _ = cur
                        .set(&mut self.machine.mem, pmd, addr, pmd.val | _PAGE_GLOBAL)?
                        .defer();
                    addr = next_pmd;
                }
                Walk::Pte { pte, .. } => {
                    if pte.present() {
                        let _ = cur
                            .set(&mut self.machine.mem, pte, addr, pte.val | _PAGE_GLOBAL)?
                            .defer();
                    }
                    addr += PAGE_SIZE;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ptdump::PtLevel;

    #[test]
    fn pti_leaves_only_text_and_rodata_global() {
        let k = crate::boot::test_boot(128, "debian-686-pae");
        let img = k.config.image();
        let po = k.config.page_offset();
        let high_memory = po + k.layout.max_low_pfn.phys().as_u64();
        let d = k.ptdump().unwrap();
        let global: Vec<(u64, u64)> = d
            .ranges
            .iter()
            .filter(|r| r.flags.global && r.start < high_memory)
            .fold(Vec::new(), |mut v: Vec<(u64, u64)>, r| {
                match v.last_mut() {
                    Some(last) if last.1 == r.start => last.1 = r.end,
                    _ => v.push((r.start, r.end)),
                }
                v
            });
        assert_eq!(
            global,
            [(img.text, img.end_rodata.div_ceil(PAGE_SIZE) * PAGE_SIZE)]
        );
        // The text's large pages stay large: PTI marks them whole.
        assert!(d
            .ranges
            .iter()
            .any(|r| r.start == img.text && r.level == PtLevel::Pmd && r.flags.global));
        assert!(k
            .log
            .console()
            .any(|l| l == "Kernel/User page tables isolation: enabled"));
    }

    #[test]
    fn without_pti_the_whole_direct_map_is_global() {
        let k = crate::boot::test_boot(128, "debian-686");
        let po = k.config.page_offset();
        let high_memory = po + k.layout.max_low_pfn.phys().as_u64();
        let d = k.ptdump().unwrap();
        assert!(d
            .ranges
            .iter()
            .filter(|r| r.start < high_memory)
            .all(|r| r.flags.global));
        assert!(!k.log.console().any(|l| l.contains("isolation")));
    }
}
