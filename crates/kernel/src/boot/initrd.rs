//! The initramfs: where QEMU loads it, and `reserve_initrd()` / `relocate_initrd()`, which
//! move it into low memory when the loader put it where the kernel cannot map it.

use super::BootError;
use crate::memblock::Memblock;
use crate::printk::Printk;
use machine::PAGE_SIZE;

/// Where QEMU's loader puts the initramfs: at the top of RAM below 4 GiB (minus the 128 KiB
/// of ACPI tables), capped by the kernel header's `initrd_addr_max` (2 GiB - 1), page
/// aligned. Returns (start, size); QEMU refuses to start when the initrd does not fit.
pub(super) fn initrd_placement(ram: u64, size: u64) -> Result<(u64, u64), BootError> {
    if size == 0 {
        return Ok((0, 0));
    }
    let (below_4g, _) = machine::e820::qemu_pc_ram_split(ram);
    let initrd_max = (below_4g.saturating_sub(0x2_0000).saturating_sub(1)).min(0x7fff_ffff);
    if size >= initrd_max {
        return Err(BootError::Config(format!(
            "qemu: initrd is too large, cannot support ({size} bytes, at most {initrd_max} below \
             the top of low RAM)"
        )));
    }
    Ok(((initrd_max - size) & !(PAGE_SIZE - 1), size))
}

/// `reserve_initrd()`: print where the loader put it and, if it ends above low memory, move
/// it top-down into `[0, lowmem_end)` and drop the old reservation. Returns its final start.
pub(super) fn reserve_initrd(
    memblock: &mut Memblock,
    log: &mut Printk,
    start: u64,
    size: u64,
    lowmem_end: u64,
) -> Result<u64, BootError> {
    let end_aligned = (start + size).div_ceil(PAGE_SIZE) * PAGE_SIZE;
    log.info(format!(
        "RAMDISK: [mem {:#010x}-{:#010x}]",
        start,
        end_aligned - 1
    ));
    if end_aligned <= lowmem_end {
        return Ok(start);
    }
    let area = size.div_ceil(PAGE_SIZE) * PAGE_SIZE;
    let new = memblock
        .alloc_range(area, PAGE_SIZE, 0, lowmem_end, "initrd")
        .map_err(|_| BootError::Panic(format!("Cannot find place for new RAMDISK of size {size}")))?
        .as_u64();
    log.info(format!(
        "Allocated new RAMDISK: [mem {:#010x}-{:#010x}]",
        new,
        new + size - 1
    ));
    log.info(format!(
        "Move RAMDISK from [mem {:#010x}-{:#010x}] to [mem {:#010x}-{:#010x}]",
        start,
        start + size - 1,
        new,
        new + size - 1
    ));
    memblock.free(start, end_aligned - start);
    memblock.reserve(new, area, "initrd");
    Ok(new)
}
