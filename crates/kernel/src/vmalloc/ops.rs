//! The vmalloc entry points on a booted kernel.

use super::*;
use crate::gfp::{format_gfp_mode, Gfp, __GFP_DMA32, __GFP_ZERO, GFP_KERNEL};
use crate::kernel::Kernel;
use crate::pagewalk::{KmapLocalPte, Walk, WalkError};
use crate::pgtable_types::{PteVal, _PAGE_NX, _PAGE_PCD};
use crate::printk::LogLevel;
use crate::tlbflush::{flush_tlb_kernel_range, TlbFlush};
use machine::{Access, AccessError, PhysAddr, VirtAddr};

/// Why a vmalloc-family call returned NULL (the kernel's messages are in the log).
#[derive(Debug, thiserror::Error)]
pub enum VmallocError {
    #[error("vmalloc: zero size")]
    ZeroSize,
    #[error("vmalloc: size {0} exceeds total pages")]
    TooBig(u64),
    #[error("vmap allocation for size {0} failed")]
    NoSpace(u64),
    #[error("vmalloc: out of memory")]
    NoMemory,
    #[error("vmalloc: cannot map pages: {0}")]
    Map(String),
    #[error("ioremap refused: {0}")]
    Ioremap(String),
    #[error("{0}")]
    Walk(#[from] WalkError),
    #[error("BUG: CPU: {0}")]
    Cpu(#[from] machine::CpuError),
}

const fn page_align(v: u64) -> u64 {
    (v + PAGE_SIZE - 1) & !(PAGE_SIZE - 1)
}

/// `get_count_order_long()`: ceil(log2(v)).
fn count_order(v: u64) -> u32 {
    if v <= 1 {
        0
    } else {
        64 - (v - 1).leading_zeros()
    }
}

impl Kernel {
    /// `%pa` of a phys_addr_t: 16 hex digits with PAE, 8 without.
    pub(crate) fn fmt_phys(&self, pa: u64) -> String {
        if self.config.pae {
            format!("0x{pa:016x}")
        } else {
            format!("0x{pa:08x}")
        }
    }

    /// `WARN(1, ...)`: the cut line, the message, the WARNING line (no stack to dump).
    fn vm_warn(&mut self, msg: String, func: &str, cpu: usize) {
        self.log
            .log(LogLevel::Warning, "------------[ cut here ]------------");
        self.log.log(LogLevel::Err, msg);
        self.log.log(
            LogLevel::Warning,
            format!("WARNING: CPU: {cpu} PID: 1 at mm/vmalloc.c {func}"),
        );
    }

    /// `warn_alloc(gfp, NULL, fmt...)`: header plus the memory summary, nothing with
    /// __GFP_NOWARN.
    fn vm_warn_alloc(&mut self, gfp: Gfp, what: String, cpu: usize) {
        if gfp.contains(Gfp::NOWARN) {
            return;
        }
        let header = format!(
            "{}: {what}, mode:{}, nodemask=(null),cpuset=/,mems_allowed=0",
            self.node.current_comm,
            format_gfp_mode(gfp)
        );
        self.log.log(LogLevel::Warning, header);
        let mem = self.node.show_mem(self.node.gfp_zone(gfp), cpu);
        for l in mem {
            self.log.log(LogLevel::Info, l);
        }
    }

    /// `alloc_vmap_area()`: find space, purging the lazy areas once before giving up.
    fn alloc_vmap_area(
        &mut self,
        size: u64,
        align: u64,
        vstart: u64,
        vend: u64,
        gfp: Gfp,
        cpu: usize,
    ) -> Result<u64, VmallocError> {
        let mut purged = false;
        loop {
            if let Some(a) = self.vmap.space.alloc(size, align, vstart, vend) {
                return Ok(a);
            }
            if !purged {
                self.purge_vmap_area_lazy(cpu)?;
                purged = true;
                continue;
            }
            // No vmap purge notifiers are registered in the model.
            if !gfp.contains(Gfp::NOWARN) {
                self.log.log(
                    LogLevel::Warning,
                    format!(
                        "vmap allocation for size {size} failed: use vmalloc=<size> to increase size"
                    ),
                );
            }
            return Err(VmallocError::NoSpace(size));
        }
    }

    /// `__get_vm_area_node()`: a vm_struct over a fresh vmap area (guard page included
    /// unless VM_NO_GUARD; ioremap aligned to its size's order, at most PMD_SHIFT).
    #[allow(clippy::too_many_arguments)]
    pub fn __get_vm_area_node(
        &mut self,
        size: u64,
        mut align: u64,
        flags: u32,
        start: u64,
        end: u64,
        gfp: Gfp,
        caller: &str,
        cpu: usize,
    ) -> Result<u64, VmallocError> {
        let mut size = page_align(size);
        if size == 0 {
            return Err(VmallocError::ZeroSize);
        }
        if flags & VM_IOREMAP != 0 {
            let order = count_order(size).clamp(12, self.geo.pmd_shift());
            align = 1 << order;
        }
        if flags & VM_NO_GUARD == 0 {
            size += PAGE_SIZE;
        }
        let align = align.max(1).next_power_of_two().max(PAGE_SIZE);
        let addr = self.alloc_vmap_area(size, align, start, end, gfp, cpu)?;
        self.vmap.busy.insert(
            addr,
            VmapArea {
                va_start: addr,
                va_end: addr + size,
                vm: Some(VmStruct {
                    addr,
                    size,
                    flags,
                    pages: Vec::new(),
                    phys_addr: 0,
                    caller: caller.to_string(),
                    pages_area: None,
                }),
            },
        );
        Ok(addr)
    }

    /// `get_vm_area_caller()` in [VMALLOC_START, VMALLOC_END).
    pub fn get_vm_area_caller(
        &mut self,
        size: u64,
        flags: u32,
        caller: &str,
        cpu: usize,
    ) -> Result<u64, VmallocError> {
        let (s, e) = (self.vmap.start(), self.vmap.end());
        self.__get_vm_area_node(size, 1, flags, s, e, GFP_KERNEL, caller, cpu)
    }

    /// `vmap_pages_range()`: one PTE per page from `addr` with `prot`; PTE pages from
    /// `pte_alloc_kernel`. Every slot must be empty (WARN + -EBUSY otherwise).
    pub fn vmap_pages_range(
        &mut self,
        addr: u64,
        pfns: &[Pfn],
        prot: PteVal,
        cpu: usize,
    ) -> Result<(), VmallocError> {
        let cur = self.kernel_cursor();
        let pfn_mask = self.geo.pfn_mask();
        for (i, pfn) in pfns.iter().enumerate() {
            let va = addr + i as u64 * PAGE_SIZE;
            let (pte, allocated) = self.pte_alloc_kernel(va, cpu)?;
            self.vmap.kernel_pte_pages += u64::from(allocated);
            if pte.present() {
                self.vm_warn(
                    format!("vmap_pte_range: PTE of {va:#010x} is not empty"),
                    "vmap_pte_range",
                    cpu,
                );
                return Err(VmallocError::Map(format!("{va:#x} already mapped")));
            }
            let val = (pfn.phys().as_u64() & pfn_mask) | prot;
            // set_pte_at on an empty slot: nothing a TLB could hold. A PTE page in high
            // memory (2.4.18-SuSE's vmalloc tables) is written through a kmap.
            if pte.table.pfn().as_u64() >= self.layout.max_low_pfn.as_u64() {
                cur.update_pte_mapped(self, &mut KmapLocalPte { cpu }, va, |_| val)?
                    .flush_local(&mut self.machine, cpu)?;
            } else {
                cur.set(&mut self.machine.mem, pte, va, val)
                    .map_err(WalkError::from)?
                    .flush_local(&mut self.machine, cpu)?;
            }
        }
        Ok(())
    }

    /// `vunmap_range_noflush()`: clear the PTEs of `[start, end)`; the returned token covers
    /// what was mapped.
    pub fn vunmap_range_noflush(
        &mut self,
        start: u64,
        end: u64,
        cpu: usize,
    ) -> Result<TlbFlush, VmallocError> {
        let cur = self.kernel_cursor();
        let mut flush = TlbFlush::none();
        let mut va = start;
        while va < end {
            // pmd_offset through the direct map (kernel PMDs are low memory); the PTE page
            // through a kmap when it is high memory (2.4.18-SuSE's vmalloc tables), as
            // `vunmap_pte_range` reaches it.
            let pmd = cur.pmd(&self.machine.mem, va).map_err(WalkError::from)?;
            match pmd {
                Ok(p) if p.present() && !p.is_large() => {
                    let t = if self.geo.entry_table(p.val).pfn().as_u64()
                        >= self.layout.max_low_pfn.as_u64()
                    {
                        cur.update_pte_mapped(self, &mut KmapLocalPte { cpu }, va, |_| 0)?
                    } else {
                        let pte = cur.walk(&self.machine.mem, va).map_err(WalkError::from)?;
                        match pte.pte() {
                            Some(pte) if pte.present() => cur
                                .set(&mut self.machine.mem, pte, va, 0)
                                .map_err(WalkError::from)?,
                            _ => TlbFlush::none(),
                        }
                    };
                    flush = flush.merge(t);
                    va += PAGE_SIZE;
                }
                Ok(p) if p.present() => va += PAGE_SIZE,
                _ => {
                    // Nothing below this PMD: skip to its end.
                    va = ((va & self.geo.pmd_mask()) + self.geo.pmd_size()).min(end);
                }
            }
        }
        Ok(flush)
    }

    /// `__vmalloc_node_range()`: the general vmalloc.
    #[allow(clippy::too_many_arguments)]
    pub fn __vmalloc_node_range(
        &mut self,
        size: u64,
        align: u64,
        start: u64,
        end: u64,
        gfp: Gfp,
        prot: PteVal,
        vm_flags: u32,
        caller: &str,
        cpu: usize,
    ) -> Result<u64, VmallocError> {
        let real_size = size;
        if size == 0 {
            // WARN_ON_ONCE(!size)
            return Err(VmallocError::ZeroSize);
        }
        let size = page_align(real_size);
        if size / PAGE_SIZE > self.node.totalram_pages {
            self.vm_warn_alloc(
                gfp,
                format!("vmalloc error: size {real_size}, exceeds total pages"),
                cpu,
            );
            return Err(VmallocError::TooBig(real_size));
        }
        let addr = match self.__get_vm_area_node(
            real_size,
            align,
            VM_ALLOC | VM_UNINITIALIZED | vm_flags,
            start,
            end,
            gfp,
            caller,
            cpu,
        ) {
            Ok(a) => a,
            Err(e) => {
                let retry = if gfp.contains(Gfp::NOFAIL) {
                    ". Retrying."
                } else {
                    ""
                };
                self.vm_warn_alloc(
                    gfp,
                    format!("vmalloc error: size {real_size}, vm_struct allocation failed{retry}"),
                    cpu,
                );
                return Err(e);
            }
        };
        self.__vmalloc_area_node(addr, gfp, prot, cpu)?;
        if let Some(vm) = self.vm_mut(addr) {
            vm.flags &= !VM_UNINITIALIZED;
        }
        Ok(addr)
    }

    fn vm_mut(&mut self, addr: u64) -> Option<&mut VmStruct> {
        self.vmap.busy.get_mut(&addr).and_then(|a| a.vm.as_mut())
    }

    /// `__vmalloc_area_node()`: the page array, the pages, the mapping.
    fn __vmalloc_area_node(
        &mut self,
        addr: u64,
        gfp: Gfp,
        prot: PteVal,
        cpu: usize,
    ) -> Result<(), VmallocError> {
        let (size, caller) = {
            let vm = self.vmap.find_vm_area(addr).expect("just allocated");
            (vm.area_size(), vm.caller.clone())
        };
        let nr_small_pages = size / PAGE_SIZE;
        let pointer = match self.config.arch {
            crate::config::Arch::I386 => PAGE_POINTER_SIZE,
            crate::config::Arch::X86_64 => PAGE_POINTER_SIZE_64,
        };
        let array_size = nr_small_pages * pointer;
        let nested_gfp =
            (gfp & crate::gfp::__GFP_RECLAIM.union(Gfp::IO).union(Gfp::FS)).union(__GFP_ZERO);
        let mut page_gfp = gfp | Gfp::NOWARN;
        if !gfp.intersects(Gfp::DMA | Gfp::DMA32) {
            page_gfp |= Gfp::HIGHMEM;
        }
        // The page array: kmalloc up to a page (slab, not modelled: see kvmalloc.rs),
        // a nested vmalloc beyond ("vpages").
        if array_size > PAGE_SIZE {
            let (s, e) = (self.vmap.start(), self.vmap.end());
            match self.__vmalloc_node_range(
                array_size,
                1,
                s,
                e,
                nested_gfp,
                self.masks.page_kernel(),
                0,
                &caller,
                cpu,
            ) {
                Ok(a) => self.vm_mut(addr).expect("busy").pages_area = Some(a),
                Err(e) => {
                    self.vm_warn_alloc(
                        page_gfp,
                        format!(
                            "vmalloc error: size {}, failed to allocated page array size {array_size}",
                            nr_small_pages * PAGE_SIZE
                        ),
                        cpu,
                    );
                    self.remove_vm_area_now(addr, cpu)?;
                    return Err(e);
                }
            }
        }
        // vm_area_alloc_pages(): order-0 pages one by one (the kernel's bulk path takes
        // them from the same per-CPU lists).
        let mut pages = Vec::with_capacity(nr_small_pages as usize);
        for _ in 0..nr_small_pages {
            match self.alloc_pages(page_gfp, 0, cpu) {
                Ok(p) => pages.push(p.pfn),
                Err(_) => break,
            }
        }
        let got = pages.len() as u64;
        self.vmap.nr_vmalloc_pages += got;
        self.vm_mut(addr).expect("busy").pages = pages.clone();
        if got != nr_small_pages {
            self.vm_warn_alloc(
                page_gfp,
                format!(
                    "vmalloc error: size {}, page order 0, failed to allocate pages",
                    got * PAGE_SIZE
                ),
                cpu,
            );
            self.__vunmap(addr, true, cpu)?;
            return Err(VmallocError::NoMemory);
        }
        if let Err(e) = self.vmap_pages_range(addr, &pages, prot, cpu) {
            self.vm_warn_alloc(
                page_gfp,
                format!(
                    "vmalloc error: size {}, failed to map pages",
                    got * PAGE_SIZE
                ),
                cpu,
            );
            self.__vunmap(addr, true, cpu)?;
            return Err(e);
        }
        Ok(())
    }

    /// `vmalloc(size)`: GFP_KERNEL pages, highmem first.
    pub fn vmalloc(&mut self, size: u64, cpu: usize) -> Result<u64, VmallocError> {
        self.vmalloc_caller(size, GFP_KERNEL, "vmalloc", cpu)
    }

    /// `vzalloc(size)`: zeroed.
    pub fn vzalloc(&mut self, size: u64, cpu: usize) -> Result<u64, VmallocError> {
        self.vmalloc_caller(size, GFP_KERNEL | __GFP_ZERO, "vzalloc", cpu)
    }

    /// `vmalloc_32(size)`: GFP_VMALLOC32 = GFP_DMA32 | GFP_KERNEL, which on i386 means
    /// ZONE_NORMAL (no __GFP_HIGHMEM is added when a DMA zone bit is set).
    pub fn vmalloc_32(&mut self, size: u64, cpu: usize) -> Result<u64, VmallocError> {
        self.vmalloc_caller(size, GFP_KERNEL | __GFP_DMA32, "vmalloc_32", cpu)
    }

    /// `__vmalloc_node(size, 1, gfp, NUMA_NO_NODE, caller)`.
    pub fn vmalloc_caller(
        &mut self,
        size: u64,
        gfp: Gfp,
        caller: &str,
        cpu: usize,
    ) -> Result<u64, VmallocError> {
        let (s, e) = (self.vmap.start(), self.vmap.end());
        let prot = self.masks.page_kernel();
        self.__vmalloc_node_range(size, 1, s, e, gfp, prot, 0, caller, cpu)
    }

    /// `vmap(pages, count, VM_MAP | flags, PAGE_KERNEL)`: map pages the caller owns.
    pub fn vmap(&mut self, pfns: &[Pfn], flags: u32, cpu: usize) -> Result<u64, VmallocError> {
        let count = pfns.len() as u64;
        if count == 0 {
            return Err(VmallocError::ZeroSize);
        }
        if count > self.node.totalram_pages {
            return Err(VmallocError::TooBig(count * PAGE_SIZE));
        }
        let addr = self.get_vm_area_caller(count * PAGE_SIZE, flags | VM_MAP, "vmap", cpu)?;
        // pgprot_nx(prot).
        let prot = self.masks.page_kernel() | (_PAGE_NX & self.masks.supported);
        self.vm_mut(addr).expect("busy").pages = pfns.to_vec();
        if let Err(e) = self.vmap_pages_range(addr, pfns, prot, cpu) {
            self.__vunmap(addr, false, cpu)?;
            return Err(e);
        }
        Ok(addr)
    }

    /// `vunmap(addr)`: release a vmap() mapping (the pages stay the caller's).
    pub fn vunmap(&mut self, addr: u64, cpu: usize) -> Result<(), VmallocError> {
        if addr == 0 {
            return Ok(());
        }
        self.__vunmap(addr, false, cpu)
    }

    /// `vfree(addr)`: release a vmalloc() area and its pages.
    pub fn vfree(&mut self, addr: u64, cpu: usize) -> Result<(), VmallocError> {
        if addr == 0 {
            return Ok(());
        }
        self.__vunmap(addr, true, cpu)
    }

    /// `__vunmap()`: warn about bad or unknown addresses; otherwise clear the PTEs, queue
    /// the area for the lazy purge and (for vfree) free its pages and page array.
    fn __vunmap(
        &mut self,
        addr: u64,
        deallocate_pages: bool,
        cpu: usize,
    ) -> Result<(), VmallocError> {
        if addr & (PAGE_SIZE - 1) != 0 {
            self.vm_warn(
                format!("Trying to vfree() bad address ({addr:08x})"),
                "__vunmap",
                cpu,
            );
            return Ok(());
        }
        let Some(vm) = self.vmap.find_vm_area(addr) else {
            self.vm_warn(
                format!("Trying to vfree() nonexistent vm area ({addr:08x})"),
                "__vunmap",
                cpu,
            );
            return Ok(());
        };
        let vm_addr = vm.addr;
        let vm = self.remove_vm_area_lazy(vm_addr, cpu)?;
        if deallocate_pages {
            if vm.flags & VM_ALLOC != 0 {
                for pfn in &vm.pages {
                    if let Err(e) = self.node.__free_pages(*pfn, 0, cpu) {
                        self.log.log(LogLevel::Err, format!("BUG: {e}"));
                    }
                }
                self.vmap.nr_vmalloc_pages -= vm.pages.len() as u64;
            }
            if let Some(pa) = vm.pages_area {
                self.__vunmap(pa, true, cpu)?;
            }
        }
        self.maybe_drain_vmap(cpu)
    }

    /// `remove_vm_area()` → `free_unmap_vmap_area()` without debug_pagealloc: PTEs cleared,
    /// no TLB flush, the range joins the purge set and `vmap_lazy_nr`.
    fn remove_vm_area_lazy(&mut self, addr: u64, cpu: usize) -> Result<VmStruct, VmallocError> {
        let _ = cpu;
        let area = self.vmap.busy.remove(&addr).expect("found above");
        let flush = self.vunmap_range_noflush(area.va_start, area.va_end, cpu)?;
        // The lazy purge flushes the whole batch later.
        let _deferred = flush.defer();
        self.vmap.space.add_lazy(area.va_start, area.va_end);
        self.vmap.vmap_lazy_nr += (area.va_end - area.va_start) / PAGE_SIZE;
        Ok(area.vm.expect("vm_struct"))
    }

    /// Undo a fresh area completely (failure paths before anything was mapped).
    fn remove_vm_area_now(&mut self, addr: u64, cpu: usize) -> Result<(), VmallocError> {
        self.remove_vm_area_lazy(addr, cpu)?;
        Ok(())
    }

    /// `free_vmap_area_noflush()`'s trigger: past `lazy_max_pages()` the drain work runs
    /// (synchronously in the model, where the kernel schedules it on a worker).
    fn maybe_drain_vmap(&mut self, cpu: usize) -> Result<(), VmallocError> {
        if self.vmap.vmap_lazy_nr > lazy_max_pages(self.machine.cpus.len()) {
            self.purge_vmap_area_lazy(cpu)?;
        }
        Ok(())
    }

    /// `purge_vmap_area_lazy()` / `__purge_vmap_area_lazy(ULONG_MAX, 0)`: one
    /// `flush_tlb_kernel_range` over every lazily freed area, then they become free space.
    /// Returns whether anything was purged.
    pub fn purge_vmap_area_lazy(&mut self, cpu: usize) -> Result<bool, VmallocError> {
        let list = self.vmap.space.take_purge();
        let (Some(first), Some(last)) = (list.first(), list.last()) else {
            return Ok(false);
        };
        let (start, end) = (first.0, last.1);
        flush_tlb_kernel_range(&mut self.machine, &mut self.tlb, cpu, start, end)?;
        for (s, e) in list {
            self.vmap.vmap_lazy_nr -= (e - s) / PAGE_SIZE;
            if !self.vmap.space.free(s, e) {
                return Err(VmallocError::Map(format!(
                    "BUG: purged area {s:#x}-{e:#x} overlaps free space"
                )));
            }
        }
        self.vmap.purges += 1;
        Ok(true)
    }

    /// x86 `ioremap(phys, size)` (uncached-minus): map a physical range that is not RAM the
    /// kernel owns (reserved pages and holes only) in the vmalloc area.
    pub fn ioremap(&mut self, phys: u64, size: u64, cpu: usize) -> Result<u64, VmallocError> {
        self.ioremap_caller(phys, size, "ioremap", cpu)
    }

    /// `__ioremap_caller()`.
    pub fn ioremap_caller(
        &mut self,
        phys: u64,
        size: u64,
        caller: &str,
        cpu: usize,
    ) -> Result<u64, VmallocError> {
        let last = phys.wrapping_add(size).wrapping_sub(1);
        if size == 0 || last < phys {
            return Err(VmallocError::Ioremap("empty or wrapping range".into()));
        }
        // phys_addr_valid(): below the CPU's 36 physical address bits (PAE's phys_addr_t;
        // without PAE the type itself stops at 4 GiB).
        if self.config.pae && last >> 36 != 0 {
            self.log.log(
                LogLevel::Warning,
                format!("ioremap: invalid physical address {phys:x}"),
            );
            return Err(VmallocError::Ioremap("invalid physical address".into()));
        }
        // __ioremap_check_ram: RAM the allocator manages must not be remapped.
        let first_pfn = phys >> 12;
        let last_pfn = last >> 12;
        // pfn_valid() on FLATMEM: below max_mapnr (max_pfn).
        let max_mapnr = self.layout.max_pfn.as_u64();
        // x86_64 walks only the System RAM resources (`walk_mem_res`): a hole's page is
        // never RAM, whatever the sparse memory map holds for it.
        let system_ram = |p: u64| {
            self.config.arch == crate::config::Arch::I386
                || self.layout.e820.iter().any(|e| {
                    e.kind == machine::e820::E820Type::Usable
                        && (e.addr.as_u64() >> 12..(e.addr.as_u64() + e.size) >> 12).contains(&p)
                })
        };
        let ram = (first_pfn..=last_pfn.min(max_mapnr.saturating_sub(1))).any(|p| {
            system_ram(p)
                && self
                    .node
                    .mem_map
                    .get(Pfn::new(p))
                    .is_some_and(|pg| !pg.is_reserved())
        });
        if ram {
            let msg = format!(
                "ioremap on RAM at {} - {}",
                self.fmt_phys(phys),
                self.fmt_phys(last)
            );
            self.vm_warn(msg.clone(), "__ioremap_caller", cpu);
            return Err(VmallocError::Ioremap(msg));
        }
        let offset = phys & (PAGE_SIZE - 1);
        let base = phys & !(PAGE_SIZE - 1);
        let size = page_align(last + 1) - base;
        let (s, e) = (self.vmap.start(), self.vmap.end());
        let addr = self.__get_vm_area_node(size, 1, VM_IOREMAP, s, e, GFP_KERNEL, caller, cpu)?;
        self.vm_mut(addr).expect("busy").phys_addr = base;
        let pfns: Vec<Pfn> = (0..size / PAGE_SIZE)
            .map(|i| PhysAddr::new(base + i * PAGE_SIZE).pfn())
            .collect();
        let prot = (crate::pgtable_types::__PAGE_KERNEL | _PAGE_PCD) & self.masks.default_kernel;
        if let Err(e) = self.vmap_pages_range(addr, &pfns, prot, cpu) {
            self.__vunmap(addr, false, cpu)?;
            return Err(e);
        }
        Ok(addr + offset)
    }

    /// x86 `iounmap(addr)`.
    pub fn iounmap(&mut self, addr: u64, cpu: usize) -> Result<(), VmallocError> {
        let addr = addr & !(PAGE_SIZE - 1);
        if !self.vmap.is_vmalloc_addr(addr) {
            return Ok(());
        }
        if self
            .vmap
            .find_vm_area(addr)
            .is_none_or(|vm| vm.flags & VM_IOREMAP == 0)
        {
            self.log
                .log(LogLevel::Err, format!("iounmap: bad address {addr:08x}"));
            return Ok(());
        }
        self.__vunmap(addr, false, cpu)
    }

    /// `vmalloc_to_page()`: walk init_mm to the page mapped at `addr` (the PTE page
    /// through `pte_offset_map`, a kmap_local slot when it is in high memory).
    pub fn vmalloc_to_page(&mut self, addr: u64, cpu: usize) -> Result<Option<Pfn>, VmallocError> {
        let cur = self.kernel_cursor();
        let w = cur.walk_mapped(self, &mut KmapLocalPte { cpu }, addr)?;
        Ok(match w {
            Walk::Large { pmd } => {
                let base = (pmd.val & self.geo.large_pfn_mask()) >> 12;
                Some(Pfn::new(base + ((addr & !self.geo.pmd_mask()) >> 12)))
            }
            Walk::Pte { pte, .. } if pte.present() => {
                Some(PhysAddr::new(pte.val & self.geo.pfn_mask()).pfn())
            }
            _ => None,
        })
    }

    /// `vmalloc_to_pfn()`.
    pub fn vmalloc_to_pfn(&mut self, addr: u64, cpu: usize) -> Result<Option<u64>, VmallocError> {
        Ok(self.vmalloc_to_page(addr, cpu)?.map(Pfn::as_u64))
    }

    /// Copy one page's contents the way the kernel reaches it: the direct map for low
    /// memory, a kmap_local slot for high memory.
    pub fn read_page_kmap(
        &mut self,
        pfn: Pfn,
        cpu: usize,
        buf: &mut [u8],
    ) -> Result<(), crate::highmem::KmapError> {
        if pfn.as_u64() < self.layout.max_low_pfn.as_u64() {
            let va = VirtAddr::new(self.config.page_offset() + pfn.phys().as_u64());
            self.machine.read_virt(cpu, va, buf)?;
            return Ok(());
        }
        let va = self.kmap_local_page(cpu, pfn)?;
        let r = self.machine.read_virt(cpu, va, buf);
        self.kunmap_local(cpu, va)?;
        r.map_err(Into::into)
    }

    /// The invariants of the vmalloc area, checked by the tests after every step: free,
    /// busy and lazily freed blocks tile [VMALLOC_START, VMALLOC_END) without overlap;
    /// every busy area's pages are mapped to what it owns (its page list, or its physical
    /// range for ioremap) and its guard page is not mapped; lazily freed ranges have no
    /// PTE; the counters match the areas.
    pub fn check_vmalloc(&self) -> Result<(), String> {
        let v = &self.vmap;
        let mut blocks: Vec<(u64, u64, &str)> = v
            .space
            .free_blocks()
            .map(|(s, e)| (s, e, "free"))
            .chain(v.space.purge_blocks().map(|(s, e)| (s, e, "lazy")))
            .chain(v.busy.values().map(|a| (a.va_start, a.va_end, "busy")))
            .collect();
        blocks.sort();
        let mut blocks = blocks.into_iter().peekable();
        for (start, end) in v.space.ranges() {
            let mut at = start;
            while let Some((s, e, kind)) = blocks.next_if(|b| b.0 < end) {
                if s != at {
                    return Err(format!(
                        "{kind} block {s:#x}-{e:#x} does not start where the previous ended ({at:#x})"
                    ));
                }
                at = e;
            }
            if at != end {
                return Err(format!("blocks end at {at:#x}, the range at {end:#x}"));
            }
        }
        if let Some((s, e, kind)) = blocks.next() {
            return Err(format!(
                "{kind} block {s:#x}-{e:#x} outside the vmap ranges"
            ));
        }
        // What the hardware would translate through swapper_pg_dir (a debugger's walk: the
        // PTE pages may be high memory, which the kernel itself reaches only by kmap).
        let (cpu0, mem, pgd) = (
            &self.machine.cpus[0],
            &self.machine.mem,
            self.swapper_pg_dir,
        );
        let mapped = |va: u64| -> Result<Option<u64>, String> {
            match cpu0.probe_with_cr3(mem, pgd, VirtAddr::new(va), Access::KERNEL_READ) {
                Some(Ok(t)) => Ok(Some(t.phys.as_u64() >> 12)),
                Some(Err(AccessError::PageFault(_))) => Ok(None),
                Some(Err(e)) => Err(e.to_string()),
                None => Err("paging is off".into()),
            }
        };
        let mut nr_vmalloc = 0;
        for a in v.busy.values() {
            let vm = a.vm.as_ref().ok_or("busy area without vm_struct")?;
            if vm.flags & VM_ALLOC != 0 {
                nr_vmalloc += vm.pages.len() as u64;
            }
            let n = vm.area_size() / PAGE_SIZE;
            for i in 0..n {
                let va = a.va_start + i * PAGE_SIZE;
                let want = if vm.flags & VM_IOREMAP != 0 {
                    (vm.phys_addr >> 12) + i
                } else {
                    vm.pages
                        .get(i as usize)
                        .ok_or(format!("{va:#x}: area has no page {i}"))?
                        .as_u64()
                };
                if mapped(va)? != Some(want) {
                    return Err(format!(
                        "{va:#x} maps {:?}, its area owns pfn {want:#x}",
                        mapped(va)?
                    ));
                }
            }
            if vm.flags & VM_NO_GUARD == 0 {
                let guard = a.va_end - PAGE_SIZE;
                if mapped(guard)?.is_some() {
                    return Err(format!("guard page {guard:#x} is mapped"));
                }
            }
        }
        let mut lazy = 0;
        for (s, e) in v.space.purge_blocks() {
            lazy += (e - s) / PAGE_SIZE;
            let mut va = s;
            while va < e {
                if mapped(va)?.is_some() {
                    return Err(format!("lazily freed {va:#x} still has a PTE"));
                }
                va += PAGE_SIZE;
            }
        }
        if lazy != v.vmap_lazy_nr {
            return Err(format!(
                "vmap_lazy_nr {} vs {lazy} pages waiting",
                v.vmap_lazy_nr
            ));
        }
        if nr_vmalloc != v.nr_vmalloc_pages {
            return Err(format!(
                "nr_vmalloc_pages {} vs {nr_vmalloc} in the areas",
                v.nr_vmalloc_pages
            ));
        }
        Ok(())
    }
}
