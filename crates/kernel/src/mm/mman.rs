//! Shared anonymous memory: `mmap(MAP_SHARED|MAP_ANONYMOUS)`.
//!
//! 6.1 gives such a VMA a file: `shmem_zero_setup` creates an unlinked shmem file named
//! "dev/zero" (`shmem_kernel_file_setup`, charged to Committed_AS for its size by
//! `shmem_acct_size`), so the mapping behaves exactly like a SysV segment: its pages are
//! shmem page-cache pages (GFP_HIGHUSER_MOVABLE, Shmem in meminfo) found by `shmem_fault`,
//! fork shares them (`copy_page_range` skips shared VMAs, the child refaults), and
//! /proc/PID/maps shows "/dev/zero (deleted)" with an `s`. Each VMA holds a reference to
//! the file (`get_file` at fork and at `__split_vma`); the last `fput` evicts the inode,
//! whose pages leave the page cache and are freed once nothing else holds them.
//!
//! The same page-cache helpers serve SysV segments (`shm.rs`): a [`ShmemFile`] names either.

use super::{MmError, ProcId, ShmSeg, Vma, VmaKind, PAGE_SIZE};
use crate::gfp::{Gfp, __GFP_COMP, GFP_HIGHUSER_MOVABLE};

/// `shmem_alloc_folio()`'s allocation: the mapping's GFP_HIGHUSER_MOVABLE, to which
/// `folio_alloc()` adds __GFP_COMP (an order-0 folio is no compound page, but the flag is
/// in what an OOM report or a tracepoint shows: `gfp_mask=0x140cca`).
pub(crate) const SHMEM_FOLIO_GFP: Gfp = GFP_HIGHUSER_MOVABLE.union(__GFP_COMP);
use crate::vmstat::NodeStatItem;
use crate::Kernel;
use machine::Pfn;

/// A shmem file: a SysV segment or the file behind a shared anonymous mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShmemFile {
    Sysv(usize),
    Zero(usize),
}

/// The name /proc/PID/maps prints for a shared anonymous mapping (`d_path` of the unlinked
/// "dev/zero" file on the internal shm mount).
pub const SHMEM_ZERO_NAME: &str = "/dev/zero (deleted)";

/// XA_CHUNK_SHIFT: an xarray node has 64 slots.
const XA_CHUNK_SHIFT: u32 = 6;

/// The xarray nodes the page cache of `seg` gains when `pgoff` (not yet present) is
/// stored: one per level whose 64-slot range holds no page yet, below the root's level
/// (a file of up to 64 pages needs one node, up to 4096 two levels, and so on).
fn xa_nodes_needed(seg: &ShmSeg, pgoff: u64) -> usize {
    let npages = seg.pages.len() as u64;
    let mut n = 0;
    let mut shift = XA_CHUNK_SHIFT;
    loop {
        let span = 1u64 << shift;
        let start = pgoff / span * span;
        let end = (start + span).min(npages);
        let empty = (start..end).all(|i| seg.pages[i as usize].is_none());
        if empty {
            n += 1;
        }
        if span >= npages || !empty {
            break n;
        }
        shift += XA_CHUNK_SHIFT;
    }
}

impl Kernel {
    fn shmem_file_mut(&mut self, f: ShmemFile) -> Option<&mut ShmSeg> {
        match f {
            ShmemFile::Sysv(i) => self.mm.shm.get_mut(i),
            ShmemFile::Zero(i) => self.mm.shmem_zero.get_mut(i),
        }
    }

    /// `shmem_get_folio_gfp()`: the page-cache page at `pgoff`, or a new one
    /// (GFP_HIGHUSER_MOVABLE, zeroed) added to the cache (Shmem, Cached).
    pub(crate) fn shmem_file_get_page(
        &mut self,
        cpu: usize,
        p: ProcId,
        f: ShmemFile,
        pgoff: u64,
    ) -> Result<Pfn, MmError> {
        let seg = self.shmem_file_mut(f).ok_or(MmError::Inval)?;
        match seg.pages.get(pgoff as usize) {
            Some(Some(pfn)) => return Ok(*pfn),
            Some(None) => {}
            None => return Err(MmError::Inval),
        }
        let pfn = self.mm_alloc_pages(SHMEM_FOLIO_GFP, 0, cpu, Some(p))?;
        if !self.node.init_on_alloc {
            self.clear_highpage(pfn, cpu)
                .map_err(|e| MmError::Bug(e.to_string()))?;
        }
        self.node.vm_stat[NodeStatItem::NrShmem] += 1;
        self.node.vm_stat[NodeStatItem::NrFilePages] += 1;
        let new_nodes = self
            .shmem_file_mut(f)
            .map_or(0, |s| xa_nodes_needed(s, pgoff));
        let nodes = self.alloc_objs(cpu, &vec!["radix_tree_node"; new_nodes]);
        if let Some(seg) = self.shmem_file_mut(f) {
            seg.xa_nodes.extend(nodes.iter().map(|x| x.1));
            if let Some(slot) = seg.pages.get_mut(pgoff as usize) {
                *slot = Some(pfn);
            }
        }
        self.node.folio_add_lru(cpu, pfn);
        Ok(pfn)
    }

    /// `shmem_evict_inode()`: the pages leave the page cache (`put_page`: freed unless a
    /// GUP reference still holds them), the size is uncharged (`shmem_unacct_size`), the
    /// inode object goes back to its cache.
    pub(crate) fn shmem_evict(&mut self, cpu: usize, f: ShmemFile) {
        let Some(seg) = self.shmem_file_mut(f) else {
            return;
        };
        let pages = std::mem::take(&mut seg.pages);
        let charged = (!seg.noreserve).then(|| seg.size.div_ceil(PAGE_SIZE));
        let (obj, lsm_obj) = (seg.obj.take(), seg.lsm_obj.take());
        let xa = std::mem::take(&mut seg.xa_nodes);
        // truncate_inode_pages(): its folio_batch_release() drains this CPU's batches
        // first, so the pages they hold go back now.
        self.node.lru_add_drain(cpu);
        for pfn in pages.into_iter().flatten() {
            self.node.vm_stat[NodeStatItem::NrShmem] -= 1;
            self.node.vm_stat[NodeStatItem::NrFilePages] -= 1;
            self.mm_free_pages(pfn, 0, cpu);
        }
        // The xarray's emptied nodes go through call_rcu (`xa_node_free`): freed after the
        // grace period, behind the pages. A slab page they empty is freed then — on x86_64
        // an order-1 one, whose free drains a pcp list the pages filled (`free_high`).
        if let Some(id) = self.slab.find_cache("radix_tree_node") {
            self.free_objs(cpu, xa.into_iter().map(|o| (id, o)).collect());
        }
        if let Some(n) = charged {
            self.vm_unacct_memory(n);
        }
        self.free_inode(cpu, "shmem_inode_cache", obj, lsm_obj);
    }

    /// `shmem_kernel_file_setup("dev/zero", size, flags)`: a new unlinked shmem file,
    /// charged for its size.
    fn shmem_zero_file(&mut self, cpu: usize, size: u64) -> Result<usize, MmError> {
        self.security_vm_enough_memory(cpu, size / PAGE_SIZE)?;
        let (obj, lsm_obj) = self.alloc_inode(cpu, "shmem_inode_cache");
        self.mm.shmem_next_ino += 1;
        self.mm.shmem_zero.push(ShmSeg {
            key: 0,
            id: self.mm.shmem_next_ino,
            size,
            pages: vec![None; (size / PAGE_SIZE) as usize],
            nattch: 1,
            removed: true,
            noreserve: false,
            obj,
            lsm_obj,
            xa_nodes: Vec::new(),
        });
        Ok(self.mm.shmem_zero.len() - 1)
    }

    /// `get_file()`: one more VMA holds the file (fork, a VMA split).
    pub(crate) fn shmem_zero_get(&mut self, file: usize) {
        if let Some(s) = self.mm.shmem_zero.get_mut(file) {
            s.nattch += 1;
        }
    }

    /// `fput()` of a VMA's file: the last one evicts the inode.
    pub(crate) fn shmem_zero_put(&mut self, cpu: usize, file: usize) {
        let Some(s) = self.mm.shmem_zero.get_mut(file) else {
            return;
        };
        s.nattch = s.nattch.saturating_sub(1);
        if s.nattch == 0 {
            self.shmem_evict(cpu, ShmemFile::Zero(file));
        }
    }

    /// `mmap(NULL, len, PROT_READ|PROT_WRITE?, MAP_SHARED|MAP_ANONYMOUS)`: a shared VMA
    /// placed as any mapping (top-down below mmap_base) backed by a new "/dev/zero" file.
    pub fn mmap_shared_anon(
        &mut self,
        cpu: usize,
        p: ProcId,
        len: u64,
        write: bool,
    ) -> Result<u64, MmError> {
        let len = len.div_ceil(PAGE_SIZE) * PAGE_SIZE;
        if len == 0 || len > self.task_size() {
            return Err(MmError::Inval);
        }
        let start = self.get_unmapped_area(p, len)?;
        let file = self.shmem_zero_file(cpu, len)?;
        let kind = VmaKind::ShmemZero { file, pgoff: 0 };
        let v = Vma {
            write,
            shared: true,
            ..Vma::new(start, start + len, kind, SHMEM_ZERO_NAME.to_string())
        };
        if let Err(e) = self.add_vma(cpu, p, v) {
            self.shmem_zero_put(cpu, file);
            return Err(e);
        }
        Ok(start)
    }
}
