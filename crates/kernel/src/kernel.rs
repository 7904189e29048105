//! A booted kernel on its machine, and the kernel services built on several subsystems.
//!
//! [`Kernel`] is what `boot()` returns: the machine (RAM, CPUs, TLBs), the layout, memblock,
//! the node with its zones and mem_map, the log and the mapping state. Its methods are the
//! kernel entry points that need more than one subsystem: allocating pages that must be
//! zeroed (the allocator hands out frames; zeroing a highmem frame needs a kmap_local slot
//! and the MMU), `page_address()` and `PageHighMem()`.

use crate::boot::init_32::DirectPagesCount;
use crate::boot::profile::BootProfile;
use crate::config::KernelConfig;
use crate::gfp::Gfp;
use crate::highmem::{KmapLocal, KmapLocalArea, PageAddressHash};
use crate::layout::Layout;
use crate::memblock::Memblock;
use crate::mmzone::PgData;
use crate::page_alloc::{AllocFailure, AllocatedPages};
use crate::pgtable::Geometry;
use crate::pgtable_types::PteMasks;
use crate::printk::{LogLevel, Printk};
use machine::{Machine, Pfn, VirtAddr, PAGE_SIZE};

/// Named memblock reservations at mem_init time, for the report.
pub type ReservedReport = Vec<(&'static str, u64)>;

/// A booted kernel on its machine.
#[derive(Debug)]
pub struct Kernel {
    pub config: KernelConfig,
    pub layout: Layout,
    pub machine: Machine,
    pub memblock: Memblock,
    pub node: PgData,
    pub log: Printk,
    pub geo: Geometry,
    pub masks: PteMasks,
    pub profile: BootProfile,
    /// Physical address of swapper_pg_dir.
    pub swapper_pg_dir: u64,
    /// Physical address of the pkmap page table.
    pub pkmap_page_table: u64,
    /// Physical address of mem_map (the struct pages themselves live in `node.mem_map`).
    pub mem_map_phys: u64,
    pub direct_pages: DirectPagesCount,
    pub kmap_area: KmapLocalArea,
    pub kmap_local: KmapLocal,
    /// `page_address_htable`: kmap() addresses of highmem pages.
    pub page_address_htable: PageAddressHash,
    /// pkmap pool, kernel design, highmem debug checks.
    pub hm: crate::highmem::Highmem,
    /// CPUs' current tasks, tasks, wait queues.
    pub sched: crate::sched::Sched,
    /// memblock.reserved by name when the buddy allocator took over.
    pub reserved_at_mem_init: ReservedReport,
    /// Pages held by the runtime profile (lowmem, highmem), freed by nobody.
    pub runtime_pages: Vec<(Pfn, u32)>,
    /// What the runtime profile holds for the boot's processes (init, sh, the /proc reader)
    /// until a workload runs its own (`release_boot_userspace`).
    pub boot_userspace: crate::boot::BootUserspaceHeld,
    /// Pages of per-CPU areas (meminfo `Percpu`).
    pub percpu_pages: u64,
    /// `sysctl_admin_reserve_kbytes` / `sysctl_user_reserve_kbytes` (set by subsys initcalls).
    pub admin_reserve_kbytes: u64,
    pub user_reserve_kbytes: u64,
    /// Transparent hugepages as the boot left them (enabled mode, khugepaged running).
    pub thp: crate::thp::ThpState,
    /// Cross-CPU TLB flushes (tlbflush.rs).
    pub tlb: crate::tlbflush::TlbShootdowns,
    /// The vmalloc area: vmap areas, lazy purge, counters (vmalloc/).
    pub vmap: crate::vmalloc::Vmap,
    /// The SLUB allocator: kmem caches, slabs, kmalloc.
    pub slab: crate::slab::Slub,
    /// User processes, address spaces, SysV shm (`mm/`).
    pub mm: crate::mm::MmState,
    /// `max_threads` as `fork_init()` set it from the RAM then (`set_max_threads`); half of
    /// it is every task's RLIMIT_SIGPENDING (/proc/PID/status `SigQ`).
    pub max_threads: u64,
}

/// Why `Kernel::alloc_pages` returned no pages.
#[derive(Clone, Debug, thiserror::Error)]
pub enum KernelAllocError {
    /// The page allocator said no (with the kernel's report, unless __GFP_NOWARN).
    #[error("{0}")]
    Alloc(#[from] AllocFailure),
    /// The pages could not be initialised: the kernel would oops.
    #[error("{0}")]
    Oops(String),
}

/// `MIN_THREADS` and `MAX_THREADS` (FUTEX_TID_MASK) of kernel/fork.c.
const MIN_THREADS: u64 = 20;
const MAX_THREADS: u64 = 0x3fff_ffff;

impl Kernel {
    /// `fork_init()` → `set_max_threads()`: as many threads as would take an eighth of
    /// the RAM the allocator manages at that point of the boot with their kernel stacks.
    pub fn fork_init(&mut self, totalram_pages: u64) {
        let thread_size = self.thread_size_kb() as u64 * 1024;
        let threads = totalram_pages * PAGE_SIZE / (thread_size * 8);
        self.max_threads = threads.clamp(MIN_THREADS, MAX_THREADS);
    }

    /// Allocate 2^order pages on `cpu`, zeroing them when asked (`__GFP_ZERO`, init_on_alloc):
    /// lowmem through the direct map, highmem through a kmap_local slot and the MMU.
    pub fn alloc_pages(
        &mut self,
        gfp: Gfp,
        order: u32,
        cpu: usize,
    ) -> Result<AllocatedPages, KernelAllocError> {
        let got = self.node.alloc_pages(gfp, order, cpu)?;
        self.init_allocated(got, cpu)
    }

    /// The zeroing half of [`Self::alloc_pages`] for pages the allocator handed out.
    pub fn init_allocated(
        &mut self,
        got: AllocatedPages,
        cpu: usize,
    ) -> Result<AllocatedPages, KernelAllocError> {
        let order = got.order;
        if got.init {
            for i in 0..(1u64 << order) {
                let pfn = Pfn::new(got.pfn.as_u64() + i);
                if let Err(e) = self.clear_highpage(pfn, cpu) {
                    // The kernel would oops here; give the pages back and report it.
                    let report = format!("BUG: clear_highpage({:#x}) failed: {e}", pfn.as_u64());
                    self.log.log(LogLevel::Err, report.clone());
                    if let Err(f) = self.node.__free_pages(got.pfn, order, cpu) {
                        self.log.log(LogLevel::Err, format!("BUG: {f}"));
                    }
                    return Err(KernelAllocError::Oops(report));
                }
            }
        }
        Ok(got)
    }

    /// `page_address()`: the kernel virtual address of a page — the direct map for low
    /// memory, the kmap() address recorded in the hash for high memory, or None for a highmem
    /// page that is not kmapped (kmap_local mappings are not recorded, as in the kernel).
    pub fn page_address(&self, pfn: Pfn) -> Option<VirtAddr> {
        if pfn.as_u64() < self.layout.max_low_pfn.as_u64() {
            return Some(VirtAddr::new(
                self.config.page_offset() + pfn.phys().as_u64(),
            ));
        }
        self.page_address_htable
            .lookup(pfn.as_u64())
            .map(VirtAddr::new)
    }

    /// `PageHighMem()`: from the page's zone, as the kernel has no PG_highmem.
    pub fn page_high_mem(&self, pfn: Pfn) -> bool {
        self.node
            .mem_map
            .get(pfn)
            .is_some_and(|p| self.node.is_highmem(p.zonenum()))
    }

    /// `clear_highpage()`: zero one page the way the kernel can reach it.
    pub fn clear_highpage(
        &mut self,
        pfn: Pfn,
        cpu: usize,
    ) -> Result<(), crate::highmem::KmapError> {
        if pfn.as_u64() < self.layout.max_low_pfn.as_u64() {
            // Low memory: through the direct map.
            let va = VirtAddr::new(self.config.page_offset() + pfn.phys().as_u64());
            self.machine.fill_virt(cpu, va, PAGE_SIZE, 0)?;
            return Ok(());
        }
        let va = self.kmap_local_page(cpu, pfn)?;
        let r = self.machine.fill_virt(cpu, va, PAGE_SIZE, 0);
        self.kunmap_local(cpu, va)?;
        r.map_err(Into::into)
    }
}
