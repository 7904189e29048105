//! The brk area: a stretch of the kernel image's BSS that early boot code extends
//! (`extend_brk`) before any allocator exists. head_32 puts its provisional page tables
//! here and `early_alloc_pgt_buf` takes the first page-table buffer from it; `reserve_brk`
//! then hands the used part to memblock and the rest is freed with the image.

use super::BootError;
use machine::PAGE_SIZE;

/// Physical extent of the brk area and how much of it is used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Brk {
    /// `__pa(__brk_base)`.
    pub base: u64,
    /// `__pa(_brk_end)`: first unused byte.
    pub end: u64,
    /// `__pa(__brk_limit)`.
    pub limit: u64,
}

impl Brk {
    pub fn new(base: u64, limit: u64) -> Self {
        Brk {
            base,
            end: base,
            limit,
        }
    }

    /// `extend_brk(size, align)`; running out is a boot-time BUG in the kernel.
    pub fn extend(&mut self, size: u64, align: u64) -> Result<u64, BootError> {
        let start = (self.end + align - 1) & !(align - 1);
        if start + size > self.limit {
            return Err(BootError::Bug(format!(
                "BUG: brk area exhausted: need {size:#x} bytes at {start:#x}, limit {:#x}",
                self.limit
            )));
        }
        self.end = start + size;
        Ok(start)
    }

    /// Pages of brk in use.
    pub fn used_pages(&self) -> u64 {
        (self.end - self.base).div_ceil(PAGE_SIZE)
    }
}
