//! The real-mode trampoline (arch/x86/realmode/init.c): the code secondary CPUs start in
//! is copied below 1 MiB, then made read-only with its text executable — which is why the
//! real kernel's direct map shows two read-only pages, one of them executable, just below
//! the BIOS area.

use super::init_32::ISA_END_ADDRESS;
use super::BootError;
use crate::kernel::Kernel;
use crate::memblock::Memblock;
use crate::printk::Printk;
use machine::PAGE_SIZE;

/// The memblock name of the real-mode trampoline's reservation.
pub(crate) const REAL_MODE_TRAMPOLINE: &str = "real-mode trampoline";

/// The layout of `realmode.bin` in the reference kernels (arch/x86/realmode/rm/realmode.lds.S):
/// the header and rodata in the first page, the 16/32-bit text from the next page boundary
/// up to `pa_ro_end`, then `.data` from the next page boundary followed by `.bss`, whose
/// heap and stack (rm_heap, rm_stack: 4 KiB together, stack.S) make data+bss span two
/// pages. The text's size is the compiler's, a build fact like `_etext`: one page in both
/// Debian 6.1 builds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RealModeBlob {
    /// `PAGE_ALIGN(real_mode_blob_end - real_mode_blob)`, in pages.
    pub pages: u64,
    /// `text_start - base`, in pages.
    pub text_page: u64,
    /// `PAGE_ALIGN(ro_end) - base`, in pages.
    pub ro_pages: u64,
}

/// The trampoline blob of the Debian 6.1 686 and 686-pae builds.
pub(crate) const REAL_MODE_BLOB: RealModeBlob = RealModeBlob {
    pages: 4,
    text_page: 1,
    ro_pages: 2,
};

/// `reserve_real_mode()` (setup_arch, right after memblock learns the RAM): the trampoline
/// goes top-down into free memory below 1 MiB, then the whole first MiB is reserved because
/// BIOSes scribble on it.
pub(crate) fn reserve_real_mode(memblock: &mut Memblock, log: &mut Printk) {
    let size = REAL_MODE_BLOB.pages * PAGE_SIZE;
    if memblock
        .alloc_range(size, PAGE_SIZE, 0, ISA_END_ADDRESS, REAL_MODE_TRAMPOLINE)
        .is_err()
    {
        log.info("No sub-1M memory is available for the trampoline");
    }
    memblock.reserve(0, ISA_END_ADDRESS, "first 1 MiB (BIOS)");
}

impl Kernel {
    /// `init_real_mode()` → `set_real_mode_permissions()`: the whole blob non-executable, the
    /// header, rodata and text read-only, the text executable again. 6.1 panics when
    /// reserve_real_mode() found no room; a boot whose setup never reserved a trampoline
    /// (no reservation by that name) has none to protect.
    pub(super) fn init_real_mode(&mut self) -> Result<(), BootError> {
        let Some(base) = self
            .memblock
            .reserved
            .iter()
            .find(|r| r.name == REAL_MODE_TRAMPOLINE)
            .map(|r| r.base)
        else {
            return Ok(());
        };
        let va = self.config.page_offset() + base;
        let blob = REAL_MODE_BLOB;
        self.set_memory_nx(va, blob.pages)?;
        self.set_memory_ro(va, blob.ro_pages)?;
        self.set_memory_x(
            va + blob.text_page * PAGE_SIZE,
            blob.ro_pages - blob.text_page,
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trampoline_goes_to_the_top_of_free_memory_below_1m() {
        let mut mb = Memblock::new();
        mb.add(0x1000, 0x9e000);
        mb.add(0x10_0000, 0x100_0000);
        let mut log = Printk::new();
        reserve_real_mode(&mut mb, &mut log);
        let t = mb
            .reserved
            .iter()
            .find(|r| r.name == REAL_MODE_TRAMPOLINE)
            .unwrap();
        assert_eq!((t.base, t.end()), (0x9f000 - 4 * PAGE_SIZE, 0x9f000));
        assert!(mb.free_ranges(0, ISA_END_ADDRESS).is_empty());
        assert_eq!(log.lines().len(), 0);

        // Nothing free below 1 MiB: the kernel says so and still reserves the first MiB.
        let mut mb = Memblock::new();
        mb.add(0x1000, 0x2000);
        mb.add(0x10_0000, 0x100_0000);
        reserve_real_mode(&mut mb, &mut log);
        assert!(mb.reserved.iter().all(|r| r.name != REAL_MODE_TRAMPOLINE));
        assert!(mb.is_reserved(0x1000, 0x2000));
        assert_eq!(
            log.console().collect::<Vec<_>>(),
            ["No sub-1M memory is available for the trampoline"]
        );
    }

    #[test]
    fn trampoline_is_read_only_with_one_executable_text_page() {
        let mut k = crate::boot::test_boot(128, "debian-686-pae");
        let base = 0x9f000 - REAL_MODE_BLOB.pages * PAGE_SIZE;
        k.memblock.free(base, REAL_MODE_BLOB.pages * PAGE_SIZE);
        k.memblock
            .reserve(base, REAL_MODE_BLOB.pages * PAGE_SIZE, REAL_MODE_TRAMPOLINE);
        k.init_real_mode().unwrap();
        let po = k.config.page_offset();
        let d = k.ptdump().unwrap();
        let at = |va: u64| {
            *d.ranges
                .iter()
                .find(|r| r.start <= va && va < r.end)
                .unwrap()
        };
        let header = at(po + base);
        let text = at(po + base + PAGE_SIZE);
        let data = at(po + base + 2 * PAGE_SIZE);
        assert_eq!((header.flags.rw, header.flags.nx), (false, true));
        assert_eq!((text.flags.rw, text.flags.nx), (false, false));
        assert_eq!(
            (text.start, text.end),
            (po + base + PAGE_SIZE, po + base + 2 * PAGE_SIZE)
        );
        assert_eq!((data.flags.rw, data.flags.nx), (true, true));
        assert_eq!(k.count_wx_pages().unwrap(), 0);
    }
}
