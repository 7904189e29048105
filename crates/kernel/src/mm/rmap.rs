//! The map count of file pages (mm/rmap.c's `page_add_file_rmap` / `page_remove_rmap` for a
//! page that is not anonymous): shmem pages of a SysV segment, of the rootfs binary and of
//! "/dev/zero", and the vDSO's page.
//!
//! Such a page counts once in NR_FILE_MAPPED — /proc/meminfo's `Mapped:`, the OOM report's
//! `mapped:` — from its first mapping to its last, whatever the number of PTEs. Its struct
//! page's `_mapcount` (-1 when unmapped) keeps the count, as the kernel's does; so a segment
//! that a hundred children map is 512 MiB of Mapped once, not a hundred times, and none once
//! they are gone. (Anonymous pages keep their counts in `MmState::anon_refs`.)

use crate::mmzone::PgData;
use crate::vmstat::NodeStatItem;

impl PgData {
    /// `page_add_file_rmap()`: one more PTE maps the file page `pfn`.
    #[inline(always)]
    pub(crate) fn page_add_file_rmap(&mut self, pfn: u64) {
        if let Some(page) = self.mem_map.try_pm(pfn) {
            page.mapcount += 1;
            if page.mapcount == 0 {
                self.vm_stat[NodeStatItem::NrFileMapped] += 1;
            }
        }
    }

    /// `page_dup_file_rmap()` (fork's `copy_pte_range`): one more PTE of a page already
    /// mapped, which NR_FILE_MAPPED counts already.
    #[inline(always)]
    pub(crate) fn page_dup_file_rmap(&mut self, pfn: u64) {
        if let Some(page) = self.mem_map.try_pm(pfn) {
            page.mapcount += 1;
        }
    }

    /// `page_remove_rmap()` of a file page: one PTE fewer; the last one takes it out of
    /// NR_FILE_MAPPED.
    #[inline(always)]
    pub(crate) fn page_remove_file_rmap(&mut self, pfn: u64) {
        if let Some(page) = self.mem_map.try_pm(pfn) {
            page.mapcount -= 1;
            if page.mapcount == -1 {
                self.vm_stat[NodeStatItem::NrFileMapped] -= 1;
            }
        }
    }
}
