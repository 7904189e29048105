//! Changing the attributes of kernel mappings (arch/x86/mm/pat/set_memory.c).
//!
//! After boot the kernel write-protects its text and read-only data and makes everything
//! else non-executable. The direct map uses large pages, so a range that covers only part
//! of one forces `split_large_page`: a new page-table page from the page allocator, one PTE
//! per 4 KiB carrying the large page's attributes, the PMD repointed, the TLB flushed. The
//! DirectMap4k / DirectMap2M (4M) counters in /proc/meminfo move by one large page each time,
//! which is why a booted kernel shows a few megabytes of 4k-mapped direct map. A request
//! that changes no entry changes nothing and flushes nothing (CPA_FLUSHTLB stays clear).
//!
//! On x86_64 a page can have three kernel mappings — the direct map, the image's high
//! mapping and a vmalloc or module-area address — and `cpa_process_alias` keeps them in
//! step: a change made through a vmalloc or high-map address is made on the direct-map
//! alias too, and one made through a vmalloc address on the high-map alias of an image
//! page, both without touching NX (the direct map stays NX). So `set_memory_ro` on the BPF
//! JIT's pack or on the kernel text splits the 2 MiB direct-map pages around them. Every
//! split counts in DirectMap4k / DirectMap2M, the high mapping's too: `__split_large_page`
//! counts whenever `virt_addr_valid(address)`, which kernel-image addresses are.

use crate::boot::{BootError, Kernel};
use crate::gfp::GFP_KERNEL;
use crate::pagewalk::Walk;
use crate::pgtable_types::{PteVal, _KERNPG_TABLE, _PAGE_GLOBAL, _PAGE_NX, _PAGE_PSE, _PAGE_RW};
use crate::tlbflush::TlbFlush;
use machine::PAGE_SIZE;

/// Large-page PAT bit (bit 12) and its 4 KiB position (bit 7), which CPA swaps on a split.
const _PAGE_PAT_LARGE: PteVal = 1 << 12;
const _PAGE_PAT: PteVal = 1 << 7;

impl Kernel {
    /// `split_large_page`: replace the large mapping around `va` by a PTE page.
    fn split_large_page(&mut self, va: u64) -> Result<(), BootError> {
        let geo = self.geo;
        let cur = self.kernel_cursor();
        let Walk::Large { pmd } = cur.walk(&self.machine.mem, va)? else {
            return Err(BootError::Bug(format!(
                "BUG: CPA: no large page at {va:#x}"
            )));
        };
        let page = self
            .node
            .alloc_pages(GFP_KERNEL, 0, 0)
            .map_err(|e| BootError::Panic(format!("CPA: cannot split a large page: {e}")))?;
        let pte_page = page.pfn.phys();
        let mut prot = pmd.val & !geo.large_pfn_mask() & !_PAGE_PSE;
        if prot & _PAGE_PAT_LARGE != 0 {
            prot = (prot & !_PAGE_PAT_LARGE) | _PAGE_PAT;
        }
        let base = pmd.val & geo.large_pfn_mask();
        for i in 0..geo.ptrs_per_pte() {
            geo.write(
                &mut self.machine.mem,
                pte_page,
                i,
                (base + i * PAGE_SIZE) | prot,
            )?;
        }
        let flush = cur.set(
            &mut self.machine.mem,
            pmd,
            va,
            pte_page.as_u64() | _KERNPG_TABLE,
        )?;
        self.direct_pages.pages_large -= 1;
        self.direct_pages.pages_4k += geo.ptrs_per_pte();
        // The old large translation must not survive anywhere.
        flush.flush_all_cpus(&mut self.machine, &mut self.tlb, 0)?;
        Ok(())
    }

    /// `change_page_attr_set_clr` on `npages` kernel pages from `va`: set and clear entry
    /// bits, splitting large pages that the range covers only in part, then (x86_64) the
    /// same change on the aliases. The TLBs are flushed only if an entry changed.
    pub fn change_page_attr(
        &mut self,
        va: u64,
        npages: u64,
        set: PteVal,
        clr: PteVal,
    ) -> Result<(), BootError> {
        self.change_page_attr_primary(va, npages, set, clr)?;
        if self.config.arch == crate::config::Arch::X86_64 {
            self.cpa_process_alias(va, npages, set & !_PAGE_NX, clr & !_PAGE_NX)?;
        }
        Ok(())
    }

    /// The physical page `va` maps through the kernel page tables, if any.
    fn kernel_pfn(&self, va: u64) -> Option<u64> {
        let cpu0 = &self.machine.cpus[0];
        let t = cpu0.probe_with_cr3(
            &self.machine.mem,
            self.swapper_pg_dir,
            machine::VirtAddr::new(va),
            machine::Access::KERNEL_READ,
        )?;
        t.ok().map(|t| t.phys.as_u64() >> 12)
    }

    /// `cpa_process_alias()` for `npages` from `va` (already changed), with NX left out of
    /// `set` / `clr`: the direct-map alias unless `va` is in the direct map, and the
    /// high-map alias of image pages unless `va` is in the image. Runs of contiguous pfns
    /// change in one request.
    fn cpa_process_alias(
        &mut self,
        va: u64,
        npages: u64,
        set: PteVal,
        clr: PteVal,
    ) -> Result<(), BootError> {
        let page_offset = self.layout.page_offset.as_u64();
        let mapped_end = page_offset + self.layout.max_pfn_mapped.as_u64() * PAGE_SIZE;
        let img = self.layout.image;
        let high = crate::x86_64::direct_map::START_KERNEL_MAP;
        let high_pfns = (img.text - high) >> 12..(img.end - high).div_ceil(2 << 20) * 512;
        let in_direct = (page_offset..mapped_end).contains(&va);
        let in_image = (img.text..img.end).contains(&va);
        let mut runs: Vec<(u64, u64)> = Vec::new();
        for i in 0..npages {
            let Some(pfn) = self.kernel_pfn(va + i * PAGE_SIZE) else {
                continue;
            };
            match runs.last_mut() {
                Some((start, n)) if *start + *n == pfn => *n += 1,
                _ => runs.push((pfn, 1)),
            }
        }
        for (pfn, n) in runs {
            if !in_direct && pfn < self.layout.max_pfn_mapped.as_u64() {
                self.change_page_attr_primary(page_offset + (pfn << 12), n, set, clr)?;
            }
            if !in_image && high_pfns.contains(&pfn) {
                let n = n.min(high_pfns.end - pfn);
                self.change_page_attr_primary(high + (pfn << 12), n, set, clr)?;
            }
        }
        Ok(())
    }

    /// `__change_page_attr_set_clr` on the primary mapping only.
    fn change_page_attr_primary(
        &mut self,
        va: u64,
        npages: u64,
        set: PteVal,
        clr: PteVal,
    ) -> Result<(), BootError> {
        let geo = self.geo;
        // canon_pgprot(): bits the CPU does not support are dropped (G needs PGE, which
        // __supported_pte_mask reflects in the kernel); nothing left means nothing to do.
        let mut supported = self.masks.supported;
        if !self.machine.cpus[0].features.pge {
            supported &= !_PAGE_GLOBAL;
        }
        let set = set & supported;
        let clr = clr & supported;
        if set == 0 && clr == 0 {
            return Ok(());
        }
        let cur = self.kernel_cursor();
        let end = va + npages * PAGE_SIZE;
        let mut a = va;
        let mut flush = TlbFlush::none();
        while a < end {
            match cur.walk(&self.machine.mem, a)? {
                Walk::NoPmd { .. } => {
                    return Err(BootError::Bug(format!("BUG: CPA: no PMD for {a:#x}")))
                }
                Walk::NoPte { .. } => {
                    return Err(BootError::Bug(format!("BUG: CPA: {a:#x} is not mapped")))
                }
                Walk::Large { pmd } => {
                    let lstart = a & geo.pmd_mask();
                    let lend = lstart + geo.pmd_size();
                    let new = (pmd.val | set) & !clr;
                    if new == pmd.val {
                        a = lend.min(end);
                        continue;
                    }
                    if a == lstart && end >= lend {
                        // The whole large page changes: keep it large.
                        flush = flush.merge(cur.set(&mut self.machine.mem, pmd, a, new)?);
                        a = lend;
                        continue;
                    }
                    self.split_large_page(a)?;
                    continue;
                }
                Walk::Pte { pte, .. } => {
                    let new = (pte.val | set) & !clr;
                    // A hole in a PTE page (RAM above max_low_pfn that head_32 once mapped
                    // and native_pagetable_init cleared) is skipped, as
                    // __cpa_process_fault does.
                    if pte.present() && new != pte.val {
                        flush = flush.merge(cur.set(&mut self.machine.mem, pte, a, new)?);
                    }
                    a += PAGE_SIZE;
                }
            }
        }
        // cpa_flush(): the model always flushes whole TLBs (flush_tlb_all).
        flush.flush_all_cpus(&mut self.machine, &mut self.tlb, 0)?;
        Ok(())
    }

    /// `set_memory_ro`.
    pub fn set_memory_ro(&mut self, va: u64, npages: u64) -> Result<(), BootError> {
        self.change_page_attr(va, npages, 0, _PAGE_RW)
    }

    /// `set_memory_rw`.
    pub fn set_memory_rw(&mut self, va: u64, npages: u64) -> Result<(), BootError> {
        self.change_page_attr(va, npages, _PAGE_RW, 0)
    }

    /// `set_memory_nx`.
    pub fn set_memory_nx(&mut self, va: u64, npages: u64) -> Result<(), BootError> {
        self.change_page_attr(va, npages, _PAGE_NX, 0)
    }

    /// `set_memory_x`: nothing to clear where NX does not exist (2-level, or no NX CPU).
    pub fn set_memory_x(&mut self, va: u64, npages: u64) -> Result<(), BootError> {
        self.change_page_attr(va, npages, 0, _PAGE_NX)
    }

    /// `set_memory_global`: mappings the TLB may keep across address-space switches.
    pub fn set_memory_global(&mut self, va: u64, npages: u64) -> Result<(), BootError> {
        self.change_page_attr(va, npages, _PAGE_GLOBAL, 0)
    }

    /// `set_memory_nonglobal`.
    pub fn set_memory_nonglobal(&mut self, va: u64, npages: u64) -> Result<(), BootError> {
        self.change_page_attr(va, npages, 0, _PAGE_GLOBAL)
    }

    /// `ptdump_walk_pgd_level_checkwx`: kernel pages that are writable and executable, from
    /// the same walk that dumps the page tables.
    pub fn count_wx_pages(&self) -> Result<u64, BootError> {
        Ok(self.ptdump()?.wx_pages())
    }
}
