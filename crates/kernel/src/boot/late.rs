//! The end of the boot: what happens between `mem_init()` and userspace that changes
//! memory or the kernel page tables, in initcall order (init/main.c, the initcalls of mm/,
//! arch/x86/mm/init*.c, arch/x86/mm/pti.c, arch/x86/realmode/init.c). The preset's
//! runtime profile follows (runtime.rs).
//! The real-mode trampoline's protections (realmode.rs) and page-table isolation (pti.rs)
//! are called from here at their places in that order.

use super::{pa, swapper_pg_dir_size, BootError};
use crate::kernel::Kernel;
use crate::printk::{KernMsg, LogLevel};
use machine::{Pfn, PAGE_SIZE};

impl Kernel {
    /// What happens between mem_init and userspace that changes free memory or the kernel
    /// page tables, in order.
    pub(super) fn late_boot(&mut self, swiotlb: Option<(u64, u64)>) -> Result<(), BootError> {
        // mm_init(), right after mem_init(): pti_init().
        self.pti_init()?;
        if self.boot_vm_areas() {
            self.acpi_early_init_and_hpet()?;
        }
        // kernel_init_freeable(): from here allocations may sleep and do I/O.
        self.node.gfp_allowed_mask = crate::gfp::__GFP_BITS_MASK;
        self.alternative_instructions()?;
        // do_pre_smp_initcalls(): early_initcall(do_init_real_mode).
        self.init_real_mode()?;
        // core_initcall(init_per_zone_wmark_min).
        for l in self.node.init_per_zone_wmark_min() {
            self.log.info(l);
        }
        if self.boot_vm_areas() {
            self.bpf_prog_alloc()?;
        }
        self.init_user_admin_reserve();
        self.hugepage_init();
        if self.boot_vm_areas() {
            self.acpi_init_and_smbios()?;
        }
        // rootfs_initcall(pci_iommu_init) → swiotlb_print_info().
        if let Some((base, size)) = swiotlb {
            self.log.info(format!(
                "software IO TLB: mapped [mem {:#018x}-{:#018x}] ({}MB)",
                base,
                base + size,
                size >> 20
            ));
        }
        self.free_initrd_mem()?;
        // subsys_initcall(kcompactd_init), module_init(kswapd_init): the threads start.
        self.node.reclaimd.running = true;
        // device_initcall: the compressor registers (self-test); late_initcall(zswap_init).
        if self.boot_vm_areas() {
            self.crypto_scomp_and_zswap()?;
        }
        // The end of kernel_init_freeable().
        if self.boot_vm_areas() {
            self.console_on_rootfs()?;
        }
        // kernel_init(): free_initmem(), then mark_readonly().
        let img = self.config.image();
        self.free_image_range(
            img.init_begin,
            img.init_end,
            "unused kernel image (initmem)",
        )?;
        self.mark_readonly()?;
        // The kernel mappings are final: pti_finalize().
        self.pti_finalize()?;
        for l in self.node.take_kmsg() {
            self.log.log(LogLevel::Err, l);
        }
        self.bring_up_secondary_cpus()
    }

    /// `free_reserved_area` over a range of the kernel image (virtual addresses), its line
    /// to the log.
    fn free_image_range(&mut self, start: u64, end: u64, what: &str) -> Result<(), BootError> {
        let cfg = &self.config;
        let (start, end) = (pa(cfg, start) / PAGE_SIZE, pa(cfg, end) / PAGE_SIZE);
        let (_, msg) = self
            .node
            .free_reserved_area(Pfn::new(start), Pfn::new(end), 0, Some(what))
            .map_err(|e| BootError::Bug(format!("BUG: {e}")))?;
        self.log
            .extend(msg.map(|m| KernMsg::new(LogLevel::Info, m)));
        Ok(())
    }

    /// `alternative_instructions()`: on one CPU or many, the SMP lock prefixes between
    /// __init_end and the BSS are freed once patched.
    fn alternative_instructions(&mut self) -> Result<(), BootError> {
        let img = self.config.image();
        self.free_image_range(img.init_end, img.bss_start, "SMP alternatives")
    }

    /// subsys_initcall(init_user_reserve / init_admin_reserve): 1/32 of free memory,
    /// capped at 128 MiB and 8 MiB.
    fn init_user_admin_reserve(&mut self) {
        let free_kb = self.node.nr_free_pages() * (PAGE_SIZE / 1024);
        self.user_reserve_kbytes = (free_kb / 32).min(1 << 17);
        self.admin_reserve_kbytes = (free_kb / 32).min(1 << 13);
    }

    /// subsys_initcall(hugepage_init): below 512 MiB of totalram THP is switched off;
    /// otherwise khugepaged starts → set_recommended_min_free_kbytes(), before the initrd
    /// and the init sections are freed. Without THP built in there is no such initcall.
    fn hugepage_init(&mut self) {
        if self.config.transparent_hugepage.is_some()
            && self.thp.hugepage_init(self.node.totalram_pages)
        {
            if let Some(m) = self.node.set_recommended_min_free_kbytes() {
                self.log.info(m);
            }
        }
    }

    /// rootfs_initcall(populate_rootfs) → `free_initrd_mem()`.
    fn free_initrd_mem(&mut self) -> Result<(), BootError> {
        let Some(r) = self
            .memblock
            .reserved
            .iter()
            .find(|r| r.name == "initrd")
            .cloned()
        else {
            return Ok(());
        };
        let (_, msg) = self
            .node
            .free_reserved_area(
                Pfn::new(r.base / PAGE_SIZE),
                Pfn::new(r.end() / PAGE_SIZE),
                0,
                Some("initrd"),
            )
            .map_err(|e| BootError::Bug(format!("BUG: {e}")))?;
        self.log
            .extend(msg.map(|m| KernMsg::new(LogLevel::Info, m)));
        Ok(())
    }

    /// `mark_readonly()`: write-protect text and rodata, then make everything after the
    /// text non-executable (`mark_nxdata_nx`), then check no mapping is writable+executable.
    fn mark_readonly(&mut self) -> Result<(), BootError> {
        // free_init_pages() → vm_unmap_aliases(): the lazily freed vmalloc areas are purged.
        self.purge_vmap_area_lazy(0)
            .map_err(|e| BootError::Bug(format!("BUG: {e}")))?;
        let cfg = self.config.clone();
        let img = cfg.image();
        let idt_va = img.swapper_pg_dir + swapper_pg_dir_size(&cfg) + PAGE_SIZE;
        self.set_memory_ro(idt_va, 1)?;
        let start = img.text & !(PAGE_SIZE - 1);
        let size = img.end_rodata - start;
        self.set_memory_ro(start, size / PAGE_SIZE)?;
        self.log.info(format!(
            "Write protecting kernel text and read-only data: {}k",
            size >> 10
        ));
        let hpage = self.geo.pmd_size();
        let nx_start = img.etext.div_ceil(PAGE_SIZE) * PAGE_SIZE;
        let nx_end = (img.init_end + hpage) & !(hpage - 1);
        if self.masks.supported & crate::pgtable_types::_PAGE_NX == 0 {
            return Ok(());
        }
        self.log.info(format!(
            "NX-protecting the kernel data: {}k",
            (nx_end - nx_start) >> 10
        ));
        self.set_memory_nx(nx_start, (nx_end - nx_start) / PAGE_SIZE)?;
        let wx = self.count_wx_pages()?;
        if wx == 0 {
            self.log
                .info("x86/mm: Checked W+X mappings: passed, no W+X pages found.");
        } else {
            self.log.warn(format!(
                "x86/mm: Checked W+X mappings: FAILED, {wx} W+X pages found."
            ));
        }
        Ok(())
    }

    /// Secondary CPUs come up on swapper_pg_dir with the boot CPU's control registers.
    fn bring_up_secondary_cpus(&mut self) -> Result<(), BootError> {
        let regs = *self.machine.cpus[0].regs();
        for cpu in 1..self.node.nr_cpus {
            self.machine.write_cr4(cpu, regs.cr4)?;
            self.machine.write_efer(cpu, regs.efer)?;
            self.machine.write_cr3(cpu, self.swapper_pg_dir)?;
            self.machine.write_cr0(cpu, regs.cr0)?;
        }
        Ok(())
    }
}
