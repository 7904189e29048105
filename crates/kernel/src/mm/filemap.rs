//! Read faults that fault around: `do_read_fault()` → `should_fault_around()` →
//! `do_fault_around()` → the VMA's `->map_pages()`, `filemap_map_pages()` (mm/memory.c,
//! mm/filemap.c).
//!
//! A read fault on a file VMA whose vm_ops have `map_pages` maps, besides the faulting
//! page, every page of a window of `fault_around_bytes` that is already in the file's page
//! cache and has no PTE yet: one fault (one pgfault) installs up to 16 PTEs. The window
//! starts at the fault address rounded down to `fault_around_bytes` (or at the VMA's start
//! when that is later) and is clipped to the VMA and to the PTE page. Pages not cached are
//! skipped; if the faulting page was one of them, the fault goes on to `->fault()`.
//!
//! Which VMAs fault around: the executable on the initramfs rootfs and shared anonymous
//! memory are shmem files (`shmem_vm_ops` has `filemap_map_pages`); a SysV segment's
//! `shm_vm_ops` has no `map_pages`, so a segment takes one fault per page.

use super::fault::RssKind;
use super::pgtable_user::{PteMap, WalkLen};
use super::{MmError, ProcId, VmaKind, PAGE_SIZE};
use crate::pgtable_types::_PAGE_PRESENT;
use crate::Kernel;
use machine::Pfn;

/// The pages `do_fault_around()` hands to `->map_pages()` for a read fault at `addr` in the
/// VMA `[vma_start, vma_end)`: `(address of the first page, number of pages)`. `bytes` is
/// `fault_around_bytes` (a power of two, as its debugfs setter keeps it), `pmd_size` what
/// one PTE page maps.
pub fn fault_around_window(
    addr: u64,
    vma_start: u64,
    vma_end: u64,
    bytes: u64,
    pmd_size: u64,
) -> (u64, u64) {
    let span = (bytes & !(PAGE_SIZE - 1)).max(PAGE_SIZE);
    let lo = (addr & !(span - 1)).max(vma_start);
    let pmd_end = (lo & !(pmd_size - 1)) + pmd_size;
    let hi = (lo + span).min(vma_end).min(pmd_end);
    (lo, (hi - lo) / PAGE_SIZE)
}

/// What `filemap_map_pages` needs of the VMA: where it starts, its file, the PTE bits
/// (`vma->vm_page_prot`: writable only for a shared writable mapping).
struct Window {
    start: u64,
    kind: VmaKind,
    bits: u64,
}

impl Kernel {
    /// `should_fault_around()`: the VMA's ops have `map_pages` and the window is more than
    /// one page.
    pub(super) fn should_fault_around(&self, kind: VmaKind) -> bool {
        let map_pages = matches!(kind, VmaKind::File { .. } | VmaKind::ShmemZero { .. });
        map_pages && self.mm.fault_around_bytes / PAGE_SIZE > 1
    }

    /// `do_fault_around()`: map the window's cached pages of VMA `vi` through one map of
    /// the PTE page `ptepfn`. Returns the faulting page when it was among them
    /// (`VM_FAULT_NOPAGE`: the fault is done), `None` when `->fault()` must still find it.
    #[inline(never)]
    pub(super) fn do_fault_around(
        &mut self,
        cpu: usize,
        p: ProcId,
        ptepfn: Pfn,
        vi: usize,
        va: u64,
    ) -> Result<Option<Pfn>, MmError> {
        let mm = self.mm.procs[p.0].mm.as_ref().ok_or(MmError::NoProc)?;
        let v = &mm.vmas[vi];
        let vma = Window {
            start: v.start,
            kind: v.kind,
            bits: self.user_pte_bits(v.write && v.shared, false, v.exec),
        };
        let pmd_size = 1u64 << self.pmd_shift();
        let bytes = self.mm.fault_around_bytes;
        let (lo, n) = fault_around_window(va, v.start, v.end, bytes, pmd_size);
        let m = self.pte_map(cpu, ptepfn, WalkLen::Short)?;
        let res = self.filemap_map_pages(cpu, p, m, &vma, (lo, n), va);
        self.pte_unmap(cpu, m)?;
        res
    }

    /// `filemap_map_pages()`: each of the `n` pages from `lo` that the page cache holds and
    /// whose PTE is none gets a PTE (`do_set_pte`: the VMA's protections, not dirty) and
    /// one more page in RssShmem (the files that have `map_pages` here are shmem files).
    fn filemap_map_pages(
        &mut self,
        cpu: usize,
        p: ProcId,
        m: PteMap,
        vma: &Window,
        (lo, n): (u64, u64),
        va: u64,
    ) -> Result<Option<Pfn>, MmError> {
        let mask = self.ptes_per_page() - 1;
        let bits = vma.bits;
        let mut faulted = None;
        for a in (0..n).map(|i| lo + i * PAGE_SIZE) {
            let Some(pfn) = self.page_cache_lookup(vma.kind, (a - vma.start) / PAGE_SIZE) else {
                continue;
            };
            let idx = (a >> 12) & mask;
            if self.pte_get(cpu, m, idx)? & _PAGE_PRESENT != 0 {
                continue;
            }
            self.pte_set(cpu, m, idx, pfn.phys().as_u64() | bits)?;
            self.node.page_add_file_rmap(pfn.as_u64());
            self.add_rss(p, RssKind::Shmem)?;
            if a == va & !(PAGE_SIZE - 1) {
                faulted = Some(pfn);
            }
        }
        Ok(faulted)
    }

    /// The page cache of the file behind a VMA that has `map_pages`, at page `vma_off` of
    /// the VMA (`vm_pgoff` added): `None` when the page is not cached.
    pub(super) fn page_cache_lookup(&self, kind: VmaKind, vma_off: u64) -> Option<Pfn> {
        match kind {
            VmaKind::File { pgoff } => self.mm.binary_pages.get(&(pgoff + vma_off)).copied(),
            VmaKind::ShmemZero { file, pgoff } => self
                .mm
                .shmem_zero
                .get(file)?
                .pages
                .get((pgoff + vma_off) as usize)
                .copied()
                .flatten(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fault_around_window;

    const PMD: u64 = 2 << 20;

    #[test]
    fn the_window_is_aligned_and_clipped_to_the_vma_and_the_pte_page() {
        // Inside a large VMA: the aligned 64 KiB around the address.
        assert_eq!(
            fault_around_window(0x0807_d590, 0x0804_9000, 0x080d_7000, 65536, PMD),
            (0x0807_0000, 16)
        );
        // The VMA starts inside the aligned window: 16 pages from the VMA's start.
        assert_eq!(
            fault_around_window(0x0804_9e80, 0x0804_9000, 0x080d_7000, 65536, PMD),
            (0x0804_9000, 16)
        );
        // The VMA ends inside it.
        assert_eq!(
            fault_around_window(0x080d_4590, 0x0804_9000, 0x080d_7000, 65536, PMD),
            (0x080d_0000, 7)
        );
        // A three-page VMA.
        assert_eq!(
            fault_around_window(0x0810_ee48, 0x0810_d000, 0x0811_0000, 65536, PMD),
            (0x0810_d000, 3)
        );
        // Clipped to the PTE page: the VMA goes on past the PMD boundary.
        assert_eq!(
            fault_around_window(0x081f_f000, 0x081f_e000, 0x0820_8000, 65536, PMD),
            (0x081f_e000, 2)
        );
        // 2-level: a PTE page maps 4 MiB, the same window.
        assert_eq!(
            fault_around_window(0x0807_d590, 0x0804_9000, 0x080d_7000, 65536, 4 << 20),
            (0x0807_0000, 16)
        );
        // fault_around_bytes of one page: just the faulting page.
        assert_eq!(
            fault_around_window(0x0807_d590, 0x0804_9000, 0x080d_7000, 4096, PMD),
            (0x0807_d000, 1)
        );
    }
}
