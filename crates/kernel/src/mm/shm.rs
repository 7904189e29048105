//! SysV shared memory (`ipc/shm.c`) over shmem's page cache (`mm/shmem.c`): segments are
//! unlinked shmem files whose pages are GFP_HIGHUSER_MOVABLE (the inode's mapping gfp),
//! counted in Shmem and Cached.

use super::{MmError, ProcId, ShmSeg, Vma, VmaKind, PAGE_SIZE};
use crate::Kernel;
use machine::Pfn;

/// The slab objects one `shmat` allocates besides its VMA: the file `alloc_file_clone`
/// makes (`filp`, with the LSM's `lsm_file_cache` blob) and `shm_file_data` (kmalloc-16).
const SHMAT_OBJECTS: [&str; 3] = ["filp", "lsm_file_cache", "kmalloc-16"];

impl Kernel {
    /// `shmget(IPC_PRIVATE, size, IPC_CREAT)`: a new segment; returns its id.
    pub fn shmget(&mut self, cpu: usize, size: u64) -> Result<u32, MmError> {
        self.shmget_flags(cpu, size, false)
    }

    /// `shmget(IPC_PRIVATE, size, IPC_CREAT | (noreserve ? SHM_NORESERVE : 0))`: the
    /// segment's shmem file is charged for its size (`shmem_acct_size`) unless SHM_NORESERVE.
    pub fn shmget_flags(&mut self, cpu: usize, size: u64, noreserve: bool) -> Result<u32, MmError> {
        // newseg(): SHMMIN (1 byte) to shm_ctlmax (SHMMAX).
        if size == 0 || size > self.shm_ctlmax() {
            return Err(MmError::Inval);
        }
        let pages = size.div_ceil(PAGE_SIZE) as usize;
        if !noreserve {
            self.security_vm_enough_memory(cpu, pages as u64)?;
        }
        let (obj, lsm_obj) = self.alloc_inode(cpu, "shmem_inode_cache");
        let id = self.mm.shm.len() as u32;
        self.mm.shm.push(ShmSeg {
            key: 0,
            id,
            size,
            pages: vec![None; pages],
            nattch: 0,
            removed: false,
            noreserve,
            obj,
            lsm_obj,
            xa_nodes: Vec::new(),
        });
        Ok(id)
    }

    /// `shm_ctlmax`: SHMMAX, `ULONG_MAX - 2^24` of the kernel's own `unsigned long` (a
    /// segment of 4080 MiB or more is refused on i386, not on x86_64).
    pub fn shm_ctlmax(&self) -> u64 {
        match self.config.arch {
            crate::config::Arch::I386 => u64::from(u32::MAX) - (1 << 24),
            crate::config::Arch::X86_64 => u64::MAX - (1 << 24),
        }
    }

    /// `shmat(id, NULL, rdonly ? SHM_RDONLY : 0)`: a shared VMA where `get_unmapped_area`
    /// puts it (right below the lowest mapping of the mmap area when the gap there holds
    /// it). Returns the address.
    pub fn shmat(&mut self, cpu: usize, p: ProcId, id: u32, rdonly: bool) -> Result<u64, MmError> {
        let seg = id as usize;
        let size = self
            .mm
            .shm
            .get(seg)
            .ok_or(MmError::Inval)?
            .size
            .div_ceil(PAGE_SIZE)
            * PAGE_SIZE;
        // do_shmat() → do_mmap() → get_unmapped_area(): ENOMEM where no gap fits.
        let start = self.get_unmapped_area(p, size)?;
        let name = format!("/SYSV{:08x} (deleted)", self.mm.shm[seg].key);
        let v = Vma {
            write: !rdonly,
            shared: true,
            ..Vma::new(start, start + size, VmaKind::Shm { seg }, name)
        };
        // mas_preallocate() in mmap_region(): the tree's nodes before anything changes.
        self.mt_preallocate_insert(cpu, p, (v.start, v.end))?;
        self.mm.shm[seg].nattch += 1;
        let mut v = v;
        v.obj = self
            .alloc_objs(cpu, &["vm_area_struct"])
            .first()
            .map(|x| x.1);
        // do_shmat(): the attach's own `struct file` (alloc_file_clone: a filp and its LSM
        // blob) and its `shm_file_data` (kzalloc, 16 bytes on i386), released with the VMA.
        v.anon_objs = self.alloc_objs(cpu, &SHMAT_OBJECTS);
        let mm = self.mm.procs[p.0].mm.as_mut().ok_or(MmError::NoProc)?;
        let at = mm.vmas.partition_point(|x| x.start < start);
        mm.vmas.insert(at, v);
        mm.update_hiwater();
        Ok(start)
    }

    /// `shmdt(addr)`: unmap the segment's VMA (zap, free the page tables it alone used,
    /// flush the TLB).
    pub fn shmdt(&mut self, cpu: usize, p: ProcId, addr: u64) -> Result<(), MmError> {
        let mm = self.mm.procs[p.0].mm.as_ref().ok_or(MmError::NoProc)?;
        let vi = mm
            .vmas
            .iter()
            .position(|v| v.start == addr && matches!(v.kind, VmaKind::Shm { .. }))
            .ok_or(MmError::Inval)?;
        let (s, e) = (mm.vmas[vi].start, mm.vmas[vi].end);
        self.zap_range(cpu, p, s, e)?;
        let mm = self.mm.procs[p.0].mm.as_mut().unwrap();
        let v = mm.vmas.remove(vi);
        let mut objs = v.anon_objs;
        if let (Some(o), Some(id)) = (v.obj, self.slab.find_cache("vm_area_struct")) {
            objs.push((id, o));
        }
        self.free_objs(cpu, objs);
        self.mt_sync(cpu, p);
        self.free_pgtables(cpu, p, s, e);
        // flush_tlb_range(): a CR3 reload on this CPU.
        let cr3 = self.machine.cpus[cpu].regs().cr3;
        let _ = self.machine.write_cr3(cpu, cr3);
        if let VmaKind::Shm { seg } = v.kind {
            self.shm_detach_seg(cpu, seg);
        }
        Ok(())
    }

    /// `shmctl(id, IPC_RMID)`: the segment goes once the last attach is gone.
    pub fn shm_rmid(&mut self, cpu: usize, id: u32) -> Result<(), MmError> {
        let seg = self.mm.shm.get_mut(id as usize).ok_or(MmError::Inval)?;
        seg.removed = true;
        if seg.nattch == 0 {
            self.shm_destroy(cpu, id as usize);
        }
        Ok(())
    }

    pub(crate) fn shm_detach_seg(&mut self, cpu: usize, seg: usize) {
        let s = &mut self.mm.shm[seg];
        s.nattch = s.nattch.saturating_sub(1);
        if s.nattch == 0 && s.removed {
            self.shm_destroy(cpu, seg);
        }
    }

    /// `shm_destroy()` → the shmem inode is evicted: its pages leave the page cache.
    fn shm_destroy(&mut self, cpu: usize, seg: usize) {
        self.shmem_evict(cpu, super::mman::ShmemFile::Sysv(seg));
    }

    /// `shmem_get_folio_gfp()` for `shm_fault`: the page-cache page by index (the page
    /// cache's xarray lookup), or a new one from [`Self::shmem_alloc_page`].
    #[inline]
    pub(crate) fn shmem_get_page(
        &mut self,
        cpu: usize,
        p: ProcId,
        seg: usize,
        pgoff: u64,
    ) -> Result<Pfn, MmError> {
        // The page cache's lookup by index, inline; a miss allocates out of line.
        if let Some(Some(pfn)) = self
            .mm
            .shm
            .get(seg)
            .and_then(|s| s.pages.get(pgoff as usize))
        {
            return Ok(*pfn);
        }
        self.shmem_file_get_page(cpu, p, super::mman::ShmemFile::Sysv(seg), pgoff)
    }
}
