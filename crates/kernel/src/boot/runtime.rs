//! The preset's runtime profile (profile.rs), held through the model's own mechanisms.
//!
//! After the initcalls, a real boot holds slab objects, kernel threads' stacks, the unpacked
//! initramfs and the memory of its first processes. Each goes here through the mechanism
//! that puts it in its /proc line: the objects through SLUB into their named caches (Slab,
//! SReclaimable / SUnreclaim, /proc/slabinfo), kmalloc_large blocks (SUnreclaim), order-1
//! `THREADINFO_GFP` stacks (KernelStack), the initramfs as shmem page cache on the anon LRU
//! lists (Shmem, Cached, Active(anon) / Inactive(anon), Mapped), and the processes' stacks,
//! pgds, page tables and anonymous pages (PageTables, AnonPages). The processes are held as
//! pages, not tasks: a workload that runs init and sh itself (shmwork) takes them over
//! ([`Kernel::release_boot_userspace`]). What the profile does not break down follows as
//! plain page allocations (the remainder), in the order the derivation test counts them.

use super::profile::KMALLOC_LARGE_ORDER;
use super::profile::{BOOT_SLAB_PER_CPU, KMALLOC_LARGE_BLOCKS_PER_CPU};
use super::BootError;
use crate::gfp::{Gfp, GFP_HIGHUSER_MOVABLE, GFP_KERNEL, GFP_PGTABLE_USER};
use crate::kernel::{Kernel, KernelAllocError};
use crate::mm::kstack::{KStack, THREAD_SIZE_ORDER};
use crate::page::PageFlags;
use crate::slab::{CacheId, SlabError};
use crate::vmstat::{NodeStatItem, VmEventItem, ZoneStatItem};
use machine::{Pfn, VirtAddr};

/// The pages the boot's userspace holds, kept so a workload's own init and sh can take over.
#[derive(Clone, Debug, Default)]
pub struct BootUserspaceHeld {
    /// Kernel stacks.
    pub stacks: Vec<KStack>,
    /// pgds (order 0, or 1 with PTI) and page-table pages (PMDs and PTEs).
    pub pgds: Vec<(Pfn, u32)>,
    pub pagetables: Vec<Pfn>,
    /// Anonymous pages (on the inactive list).
    pub anon: Vec<Pfn>,
    /// The unpacked initramfs's shmem pages, in file order: the rootfs binary's page cache
    /// comes from them (`rootfs_binary_cache`), already counted in Shmem and Cached.
    pub initramfs: Vec<Pfn>,
    /// The slab table's live objects, by cache, oldest first: among them are the boot
    /// processes' own (task_struct, mm_struct, VMAs …), which a workload's init and sh take
    /// over.
    pub slab: Vec<(CacheId, VirtAddr)>,
}

fn deadlocked(e: impl std::fmt::Display) -> BootError {
    BootError::Panic(format!(
        "System is deadlocked on memory\n{e}\n(the preset's runtime profile, what a real \
         boot holds after init starts, does not fit on this machine; boot without it: \
         --no-runtime)"
    ))
}

impl Kernel {
    /// Hold what userspace, slab, kernel threads and drivers hold after a real boot.
    pub fn apply_runtime_profile(&mut self) -> Result<(), BootError> {
        let before = self.available_low_high();
        self.hold_runtime_mechanisms()?;
        self.hold_runtime_remainder()?;
        let after = self.available_low_high();
        let kb = |item| self.node.node_page_state(item) * 4;
        let slab = kb(NodeStatItem::NrSlabReclaimableB) + kb(NodeStatItem::NrSlabUnreclaimableB);
        let p = &self.profile;
        self.log.info(format!(
            "highmem: runtime profile holds {}K kernel, {}K user (slab {slab}K, kernel stacks \
             {}K, initramfs {}K, init's anon {}K and page tables {}K, drivers {}K, more user \
             {}K)",
            (before.0 - after.0) * 4,
            (before.1 - after.1) * 4,
            self.node.node_page_state(NodeStatItem::NrKernelStackKb),
            kb(NodeStatItem::NrShmem),
            kb(NodeStatItem::NrAnonMapped),
            kb(NodeStatItem::NrPagetable),
            p.runtime_lowmem_pages * 4,
            p.runtime_user_pages * 4,
        ));
        Ok(())
    }

    /// Pages low and high memory can still hand out: free, or waiting on a per-CPU list.
    fn available_low_high(&self) -> (u64, u64) {
        let mut out = (0, 0);
        for z in &self.node.node_zones {
            let n = z.page_state(ZoneStatItem::NrFreePages) + z.pcp_count();
            if self.node.is_highmem(z.zone_idx) {
                out.1 += n;
            } else {
                out.0 += n;
            }
        }
        out
    }

    /// Everything of the profile that has a mechanism of its own: slab objects, kernel
    /// threads, the initramfs and the boot's processes (the remainder is not held).
    pub fn hold_runtime_mechanisms(&mut self) -> Result<(), BootError> {
        self.hold_boot_slab().map_err(deadlocked)?;
        let extra = self.extra_cpus();
        let kthreads = self.profile.kthreads + extra * self.profile.kthreads_per_cpu;
        for _ in 0..kthreads {
            // Kernel threads never exit: an i386 stack's pages join the profile's; a
            // vmalloc'd one stays in the vmalloc area.
            if let KStack::Pages(pfn) = self.alloc_thread_stack().map_err(deadlocked)? {
                self.runtime_pages.push((pfn, THREAD_SIZE_ORDER));
            }
        }
        self.hold_initramfs().map_err(deadlocked)?;
        self.hold_boot_userspace().map_err(deadlocked)?;
        for _ in 0..self.profile.cached_stacks {
            // A short-lived process's stack, which free_thread_stack keeps for the next
            // fork once the processes above have theirs.
            let ks = self.alloc_thread_stack().map_err(deadlocked)?;
            self.free_thread_stack(0, ks);
        }
        Ok(())
    }

    /// The remainder: kernel pages (drivers), then user pages.
    fn hold_runtime_remainder(&mut self) -> Result<(), BootError> {
        let (low, high) = (
            self.profile.runtime_lowmem_pages,
            self.profile.runtime_user_pages,
        );
        for (n, gfp) in [(low, GFP_KERNEL), (high, GFP_HIGHUSER_MOVABLE)] {
            for _ in 0..n {
                let got = self.alloc_pages(gfp, 0, 0).map_err(deadlocked)?;
                self.runtime_pages.push((got.pfn, 0));
            }
        }
        Ok(())
    }

    pub(crate) fn extra_cpus(&self) -> u64 {
        self.node.nr_cpus.saturating_sub(1) as u64
    }

    /// Every cache's boot objects, then the kmalloc_large blocks.
    fn hold_boot_slab(&mut self) -> Result<(), SlabError> {
        let extra = self.extra_cpus() as u32;
        let table = self.profile.slab;
        for row in table {
            let more = BOOT_SLAB_PER_CPU.iter().find(|m| m.cache == row.cache);
            let (objects, freed) = more.map_or((row.objects, row.freed), |m| {
                (row.objects + extra * m.objects, row.freed + extra * m.freed)
            });
            self.hold_cache_objects(row.cache, objects, freed)?;
        }
        if extra > 0 {
            for m in BOOT_SLAB_PER_CPU {
                if !table.iter().any(|r| r.cache == m.cache) {
                    self.hold_cache_objects(m.cache, extra * m.objects, extra * m.freed)?;
                }
            }
        }
        let blocks =
            self.profile.kmalloc_large_blocks + u64::from(extra) * KMALLOC_LARGE_BLOCKS_PER_CPU;
        for _ in 0..blocks {
            self.kmalloc_large(4096 << KMALLOC_LARGE_ORDER, GFP_KERNEL, 0)?;
        }
        Ok(())
    }

    /// `objects` allocations from the cache named `name`, then `freed` of them freed again.
    fn hold_cache_objects(
        &mut self,
        name: &str,
        objects: u32,
        freed: u32,
    ) -> Result<(), SlabError> {
        let id = self
            .slab
            .find_cache(name)
            .ok_or_else(|| SlabError::BadCache(format!("runtime profile: no slab cache {name}")))?;
        let mut objs = Vec::new();
        for _ in 0..objects {
            objs.push(self.kmem_cache_alloc(id, GFP_KERNEL, 0)?);
        }
        let per = self.slab.cache(id).map_or(1, |c| c.oo.objects()) as usize;
        let mut live = vec![true; objs.len()];
        for i in spread_frees(objs.len(), freed as usize, per) {
            self.kmem_cache_free(id, objs[i], 0)?;
            live[i] = false;
        }
        let kept = objs
            .into_iter()
            .zip(live)
            .filter(|x| x.1)
            .map(|x| (id, x.0));
        self.boot_userspace.slab.extend(kept);
        Ok(())
    }

    /// `alloc_thread_stack_node()` for a task the profile holds (no OOM killer at boot).
    fn alloc_thread_stack(&mut self) -> Result<KStack, KernelAllocError> {
        self.alloc_thread_stack_node(0, None)
            .map_err(|e| KernelAllocError::Oops(format!("kernel stack: {e}")))
    }

    /// The initramfs unpacked into rootfs (tmpfs): shmem page-cache pages, on the anon LRU
    /// lists as 6.1 keeps swap-backed pages; the pages read again are on the active list.
    fn hold_initramfs(&mut self) -> Result<(), KernelAllocError> {
        let u = self.profile.userspace;
        // The boot's processes map files other than the workload's binary (the first
        // files' pages): its own mappings later add to Mapped, as on the real machine.
        let binary = crate::mm::process::BINARY_FILE_PAGES;
        let first_mapped = if u.initramfs_pages >= binary + u.mapped {
            binary
        } else {
            0
        };
        let mapped = first_mapped..first_mapped + u.mapped;
        for i in 0..u.initramfs_pages {
            let got = self.alloc_pages(GFP_HIGHUSER_MOVABLE, 0, 0)?;
            self.runtime_pages.push((got.pfn, 0));
            self.boot_userspace.initramfs.push(got.pfn);
            self.node.mod_node_page_state(NodeStatItem::NrShmem, 1);
            self.node.mod_node_page_state(NodeStatItem::NrFilePages, 1);
            if mapped.contains(&i) {
                // Mapped by the boot's processes (page_add_file_rmap): a workload's own
                // mappings of it (the binary is the first of these files) count no more.
                self.node.page_add_file_rmap(got.pfn.as_u64());
            }
            // The files read again (the last ones unpacked: busybox's applets, the
            // scripts) are the active part; the workload's binary, the first file, is
            // not, until its processes exit (`zap_pte_range`'s mark_page_accessed).
            let active = i >= u.initramfs_pages.saturating_sub(u.initramfs_active);
            self.lru_hold(got.pfn, active);
            if !active {
                // The unpack's write() set PG_referenced (shmem_get_folio(SGP_WRITE)); the
                // activation of the others cleared it.
                self.node.mem_map[got.pfn].set(PageFlags::REFERENCED);
            }
        }
        self.node.vm_events[VmEventItem::Pgactivate] += u.pgactivate;
        self.node.vm_events[VmEventItem::Pgreuse] += u.pgreuse;
        Ok(())
    }

    /// A page the boot put on an anon LRU list (its batches drained long since): PG_lru,
    /// PG_active as given, counted on its list.
    fn lru_hold(&mut self, pfn: Pfn, active: bool) {
        let page = &mut self.node.mem_map[pfn];
        page.set(PageFlags::SWAPBACKED | PageFlags::LRU);
        if active {
            page.set(PageFlags::ACTIVE);
        }
        let zone = page.zonenum();
        self.node.update_lru_size(zone, active, 1);
    }

    /// init, sh and the /proc reader: a stack, a pgd and PAE's PMDs each, their PTE pages
    /// (`__userpte_alloc_gfp`) and anonymous pages.
    fn hold_boot_userspace(&mut self) -> Result<(), KernelAllocError> {
        let u = self.profile.userspace;
        let (pmds, pgd_order) = (self.nr_preallocated_pmds() as u64, self.pgd_order());
        let mut held = BootUserspaceHeld {
            initramfs: std::mem::take(&mut self.boot_userspace.initramfs),
            slab: std::mem::take(&mut self.boot_userspace.slab),
            ..Default::default()
        };
        for _ in 0..u.tasks {
            held.stacks.push(self.alloc_thread_stack()?);
            let pgd = self.alloc_pages(GFP_PGTABLE_USER, pgd_order, 0)?;
            held.pgds.push((pgd.pfn, pgd_order));
            for _ in 0..pmds {
                held.pagetables
                    .push(self.alloc_pagetable(GFP_PGTABLE_USER)?);
            }
        }
        let ptes = u.pagetables.saturating_sub(u.tasks * pmds);
        let gfp = self.userpte_alloc_gfp();
        for _ in 0..ptes {
            held.pagetables.push(self.alloc_pagetable(gfp)?);
        }
        for _ in 0..u.anon_pages {
            let got = self.alloc_pages(GFP_HIGHUSER_MOVABLE, 0, 0)?;
            self.node.mod_node_page_state(NodeStatItem::NrAnonMapped, 1);
            self.lru_hold(got.pfn, false);
            held.anon.push(got.pfn);
        }
        self.boot_userspace = held;
        Ok(())
    }

    fn alloc_pagetable(&mut self, gfp: Gfp) -> Result<Pfn, KernelAllocError> {
        let got = self.alloc_pages(gfp, 0, 0)?;
        self.node.mod_node_page_state(NodeStatItem::NrPagetable, 1);
        Ok(got.pfn)
    }

    /// A workload now runs the boot's processes itself: give back what the profile held
    /// for them (the initramfs stays).
    pub fn release_boot_userspace(&mut self, cpu: usize) {
        let mut held = std::mem::take(&mut self.boot_userspace);
        self.boot_userspace.initramfs = std::mem::take(&mut held.initramfs);
        self.release_boot_task_objects(cpu, &mut held.slab);
        for ks in held.stacks {
            self.free_thread_stack(cpu, ks);
        }
        for (pfn, order) in held.pgds {
            self.mm_free_pages(pfn, order, cpu);
        }
        for pfn in held.pagetables {
            self.node.mod_node_page_state(NodeStatItem::NrPagetable, -1);
            self.mm_free_pages(pfn, 0, cpu);
        }
        for pfn in held.anon {
            self.node
                .mod_node_page_state(NodeStatItem::NrAnonMapped, -1);
            // put_page(): off the inactive list, freed.
            self.mm_free_pages(pfn, 0, cpu);
        }
    }
}

impl Kernel {
    /// The slab objects the table holds for the boot's processes go back, so the workload's
    /// own init and sh (and the program, in the reader's place) take their room instead of
    /// adding slabs of their own. What one process holds is the stand-in's own footprint,
    /// measured on a scratch kernel of the same build ([`Self::stand_in_slab_footprint`]):
    /// that many of each cache's newest table objects, once per boot task.
    fn release_boot_task_objects(&mut self, cpu: usize, held: &mut Vec<(CacheId, VirtAddr)>) {
        let Some(footprint) = self.stand_in_slab_footprint() else {
            return;
        };
        let tasks = self.profile.userspace.tasks as usize;
        for (name, n) in footprint {
            let Some(id) = self.slab.find_cache(&name) else {
                continue;
            };
            let mut left = n * tasks;
            let mut i = held.len();
            while left > 0 && i > 0 {
                i -= 1;
                if held[i].0 == id {
                    let (_, va) = held.remove(i);
                    if let Err(e) = self.kmem_cache_free(id, va, cpu) {
                        self.log
                            .log(crate::printk::LogLevel::Err, format!("BUG: {e}"));
                    }
                    left -= 1;
                }
            }
        }
    }

    /// The slab objects, by cache name, that one exec'ed stand-in process holds: exec'ed on
    /// a scratch boot of this build (no runtime profile, 256 MiB), its objects counted.
    /// `None` when the scratch boot fails.
    fn stand_in_slab_footprint(&self) -> Option<Vec<(String, usize)>> {
        let mut opts = super::BootOptions::new(256 << 20, 1, self.config.clone());
        opts.runtime_profile = false;
        opts.initrd_size = 0;
        let mut k = super::boot(&opts).ok()?;
        let p = k.exec_process(0, "init", 0).ok()?;
        let mut counts = std::collections::BTreeMap::<String, usize>::new();
        for id in k.process_slab_objects(p) {
            if let Some(c) = k.slab.cache(id) {
                *counts.entry(c.name.clone()).or_default() += 1;
            }
        }
        Some(counts.into_iter().collect())
    }
}

/// Which of `objects` objects, allocated in order into slabs of `per`, to free so that
/// `freed` go back without emptying a slab: round robin over the slabs before the last one
/// (the CPU slab), or the newest objects when those cannot take them all.
fn spread_frees(objects: usize, freed: usize, per: usize) -> Vec<usize> {
    let per = per.max(1);
    let others = objects.div_ceil(per).saturating_sub(1);
    if freed == 0 {
        return Vec::new();
    }
    if others == 0 || freed > others * (per - 1) {
        return (objects.saturating_sub(freed)..objects).collect();
    }
    (0..freed)
        .map(|j| (j % others) * per + j / others)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::spread_frees;

    #[test]
    fn frees_spread_over_the_full_slabs() {
        let v = spread_frees(2560, 1311, 256);
        assert_eq!(v.len(), 1311);
        let mut per_slab = [0usize; 10];
        for i in &v {
            per_slab[i / 256] += 1;
        }
        assert_eq!(per_slab[9], 0);
        assert!(per_slab[..9].iter().all(|&n| (145..=146).contains(&n)));
    }
}
