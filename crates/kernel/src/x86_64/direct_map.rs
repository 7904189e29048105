//! `init_mem_mapping()` on x86_64: the direct map of every usable range at PAGE_OFFSET, in
//! 4-level tables, with 2 MiB pages where a range covers an aligned 2 MiB (1 GiB pages only
//! on a CPU with `pdpe1gb`; QEMU's `qemu64` has none, hence the real runs' `DirectMap2M`)
//! and 4 KiB pages at the ragged ends. The first tables come from the brk's
//! `INIT_PGT_BUF_SIZE` buffer inside the image; the rest from memblock, top-down.

use super::{bug, Boot64Error, PAGE_OFFSET_64};
use crate::memblock::Memblock;
use machine::{PhysAddr, PhysMem, PAGE_SIZE};

const P: u64 = 1;
const RW: u64 = 2;
const PS: u64 = 0x80;
const G: u64 = 0x100;
const NX: u64 = 1 << 63;
/// `_KERNPG_TABLE`: P|RW|A|D.
const TABLE: u64 = 0x63;
/// `__PAGE_KERNEL` with A|D.
const PAGE_KERNEL: u64 = P | RW | G | NX | 0x60;
/// `INIT_PGT_BUF_SIZE` on x86_64: six pages of the brk for the first page tables.
pub const INIT_PGT_BUF_PAGES: u64 = 6;

/// Where page-table pages come from while the direct map is built.
pub(super) struct PgtAlloc<'a> {
    pub memblock: &'a mut Memblock,
    /// The brk buffer: next free page and its end.
    pub brk: (u64, u64),
    /// Pages taken from memblock after the brk ran out.
    pub from_memblock: u64,
    /// All table pages (brk and memblock).
    pub pages: u64,
}

impl PgtAlloc<'_> {
    /// `alloc_low_pages(1)`: zeroed.
    fn alloc(&mut self, mem: &mut PhysMem) -> Result<u64, Boot64Error> {
        let pa = if self.brk.0 < self.brk.1 {
            let pa = self.brk.0;
            self.brk.0 += PAGE_SIZE;
            pa
        } else {
            self.from_memblock += 1;
            self.memblock
                .alloc_range(PAGE_SIZE, PAGE_SIZE, 0, u64::MAX, "direct map page tables")
                .map_err(|e| Boot64Error::Bug(format!("BUG: alloc_low_pages: {e}")))?
                .as_u64()
        };
        self.pages += 1;
        for i in 0..512 {
            mem.write_u64(PhysAddr::new(pa + i * 8), 0).map_err(bug)?;
        }
        Ok(pa)
    }

    /// The table under `table[idx]`, allocated if the entry is empty.
    fn next_table(&mut self, mem: &mut PhysMem, table: u64, idx: u64) -> Result<u64, Boot64Error> {
        let at = PhysAddr::new(table + idx * 8);
        let e = mem.read_u64(at).map_err(bug)?;
        if e & P != 0 {
            return Ok(e & 0x000f_ffff_ffff_f000);
        }
        let t = self.alloc(mem)?;
        mem.write_u64(at, t | TABLE).map_err(bug)?;
        Ok(t)
    }
}

/// What the direct map is made of (meminfo's `DirectMap4k` / `2M` / `1G`, in pages of each).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DirectMapPages {
    pub k4: u64,
    pub m2: u64,
    pub g1: u64,
}

/// Map `[start, end)` at PAGE_OFFSET with the largest pages alignment allows
/// (`kernel_physical_mapping_init`).
pub(super) fn map_range(
    mem: &mut PhysMem,
    pgt: &mut PgtAlloc,
    pml4: u64,
    (start, end): (u64, u64),
    gbpages: bool,
    count: &mut DirectMapPages,
) -> Result<(), Boot64Error> {
    let mut pa = start;
    while pa < end {
        let va = PAGE_OFFSET_64 + pa;
        let idx = |shift: u32| (va >> shift) & 511;
        let pud = pgt.next_table(mem, pml4, idx(39))?;
        if gbpages && pa.is_multiple_of(1 << 30) && end - pa >= 1 << 30 {
            let at = PhysAddr::new(pud + idx(30) * 8);
            mem.write_u64(at, pa | PAGE_KERNEL | PS).map_err(bug)?;
            count.g1 += 1;
            pa += 1 << 30;
            continue;
        }
        let pmd = pgt.next_table(mem, pud, idx(30))?;
        if pa.is_multiple_of(2 << 20) && end - pa >= 2 << 20 {
            let at = PhysAddr::new(pmd + idx(21) * 8);
            mem.write_u64(at, pa | PAGE_KERNEL | PS).map_err(bug)?;
            count.m2 += 1;
            pa += 2 << 20;
            continue;
        }
        let pt = pgt.next_table(mem, pmd, idx(21))?;
        let at = PhysAddr::new(pt + idx(12) * 8);
        mem.write_u64(at, pa | PAGE_KERNEL).map_err(bug)?;
        count.k4 += 1;
        pa += PAGE_SIZE;
    }
    Ok(())
}
