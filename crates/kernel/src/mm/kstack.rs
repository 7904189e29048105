//! Kernel stacks (`alloc_thread_stack_node` / `free_thread_stack`, kernel/fork.c).
//!
//! i386: THREAD_SIZE 8 KiB, an order-1 block of THREADINFO_GFP pages from the buddy
//! allocator. x86_64 (CONFIG_VMAP_STACK): THREAD_SIZE 16 KiB, vmalloc'd at THREAD_ALIGN
//! with a guard page, from order-0 pages mapped in the vmalloc area (so a stack costs its
//! four pages plus, now and then, a vmalloc PTE page); an exiting task's stack first goes
//! to one of the CPU's two `cached_stacks` and the next fork on that CPU takes it from
//! there, zeroed, without a vmalloc. Either way NR_KERNEL_STACK_KB (meminfo KernelStack)
//! counts THREAD_SIZE for every live task.

use super::oom_kill::OomRatelimit;
use super::MmError;
use crate::config::Arch;
use crate::gfp::{Gfp, GFP_KERNEL};
use crate::vmstat::NodeStatItem;
use crate::Kernel;
use machine::{Pfn, VirtAddr, PAGE_SIZE};

/// THREAD_SIZE_ORDER on i386.
pub(crate) const THREAD_SIZE_ORDER: u32 = 1;
/// THREAD_SIZE (and THREAD_ALIGN) of the 64-bit kernel.
pub const THREAD_SIZE_64: u64 = 16 << 10;
/// The stack's vmalloc caller as the amd64 build prints it: `alloc_thread_stack_node`,
/// inlined through `dup_task_struct` and `copy_process` into `kernel_clone`.
const STACK_CALLER: &str = "kernel_clone+0xbf/0x430";
/// NR_CACHED_STACKS.
const NR_CACHED_STACKS: usize = 2;

/// A task's kernel stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KStack {
    /// An order-1 block (i386).
    Pages(Pfn),
    /// A vmalloc'd stack at this address (VMAP_STACK).
    Vmap(u64),
}

/// `cached_stacks`: per CPU, the stacks of exited tasks kept for the next fork.
#[derive(Clone, Debug, Default)]
pub struct StackCache {
    per_cpu: Vec<[Option<u64>; NR_CACHED_STACKS]>,
}

impl StackCache {
    fn slots(&mut self, cpu: usize) -> &mut [Option<u64>; NR_CACHED_STACKS] {
        if self.per_cpu.len() <= cpu {
            self.per_cpu.resize(cpu + 1, [None; NR_CACHED_STACKS]);
        }
        &mut self.per_cpu[cpu]
    }
    /// Every cached stack (they stay allocated: the invariant checker counts them).
    pub fn cached(&self) -> impl Iterator<Item = u64> + '_ {
        self.per_cpu.iter().flatten().flatten().copied()
    }
}

impl Kernel {
    /// THREAD_SIZE of this kernel, in KiB.
    pub fn thread_size_kb(&self) -> i64 {
        match self.config.arch {
            Arch::I386 => 4 << THREAD_SIZE_ORDER,
            Arch::X86_64 => (THREAD_SIZE_64 >> 10) as i64,
        }
    }

    /// `alloc_thread_stack_node()` plus `account_kernel_stack(+1)`. On i386 the order-1
    /// allocation goes through the slow path's OOM killer on behalf of `p`.
    pub(crate) fn alloc_thread_stack_node(
        &mut self,
        cpu: usize,
        p: Option<super::ProcId>,
    ) -> Result<KStack, MmError> {
        let ks = match self.config.arch {
            Arch::I386 => KStack::Pages(self.mm_alloc_pages(
                GFP_KERNEL | Gfp::ACCOUNT | Gfp::ZERO,
                THREAD_SIZE_ORDER,
                cpu,
                p,
            )?),
            Arch::X86_64 => KStack::Vmap(self.vmap_stack(cpu, p)?),
        };
        let kb = self.thread_size_kb();
        self.node
            .mod_node_page_state(NodeStatItem::NrKernelStackKb, kb);
        Ok(ks)
    }

    /// A cached stack of this CPU (zeroed), else `__vmalloc_node_range(THREAD_SIZE,
    /// THREAD_ALIGN, VMALLOC_START, VMALLOC_END, THREADINFO_GFP & ~__GFP_ACCOUNT, …)`. Its
    /// order-0 pages come from the allocator's slow path, which invokes the OOM killer
    /// rather than fail: when the pages are not there, the model kills a victim on behalf of
    /// `p` and tries again, as the kernel's allocation would have before returning.
    fn vmap_stack(&mut self, cpu: usize, p: Option<super::ProcId>) -> Result<u64, MmError> {
        let cached = self
            .mm
            .stack_cache
            .slots(cpu)
            .iter_mut()
            .find_map(Option::take);
        if let Some(addr) = cached {
            self.machine
                .fill_virt(cpu, VirtAddr::new(addr), THREAD_SIZE_64, 0)
                .map_err(|e| MmError::Bug(e.to_string()))?;
            return Ok(addr);
        }
        let (start, end) = (self.vmap.start(), self.vmap.end());
        let prot = self.masks.page_kernel();
        // What vm_area_alloc_pages asks the page allocator for.
        let page_gfp = GFP_KERNEL | Gfp::ZERO | Gfp::HIGHMEM | Gfp::NOWARN;
        let mut oom_rs = OomRatelimit::default();
        loop {
            let got = self.__vmalloc_node_range(
                THREAD_SIZE_64,
                THREAD_SIZE_64,
                start,
                end,
                GFP_KERNEL | Gfp::ZERO | Gfp::NOWARN,
                prot,
                0,
                STACK_CALLER,
                cpu,
            );
            if let Ok(addr) = got {
                return Ok(addr);
            }
            if !self.__alloc_pages_direct_reclaim(page_gfp, cpu) {
                self.__alloc_pages_may_oom(page_gfp, 0, cpu, p, &mut oom_rs)?;
            }
        }
    }

    /// `account_kernel_stack(-1)` and `free_thread_stack()`: the pages back to the buddy
    /// allocator, or a vmalloc'd stack into a free `cached_stacks` slot of this CPU (else
    /// vfree'd).
    pub(crate) fn free_thread_stack(&mut self, cpu: usize, ks: KStack) {
        let kb = self.thread_size_kb();
        self.node
            .mod_node_page_state(NodeStatItem::NrKernelStackKb, -kb);
        match ks {
            KStack::Pages(pfn) => self.mm_free_pages(pfn, THREAD_SIZE_ORDER, cpu),
            KStack::Vmap(addr) => {
                if let Some(slot) = self
                    .mm
                    .stack_cache
                    .slots(cpu)
                    .iter_mut()
                    .find(|s| s.is_none())
                {
                    *slot = Some(addr);
                    return;
                }
                if let Err(e) = self.vfree(addr, cpu) {
                    self.log
                        .log(crate::printk::LogLevel::Err, format!("BUG: {e}"));
                }
            }
        }
    }
}

/// Pages of a stack of `THREAD_SIZE_64` (for tests and reports).
pub const THREAD_PAGES_64: u64 = THREAD_SIZE_64 / PAGE_SIZE;
