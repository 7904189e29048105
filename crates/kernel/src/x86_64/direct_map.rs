//! `init_mem_mapping()` on x86_64: the direct map of every usable range at PAGE_OFFSET, in
//! 4-level tables, with 2 MiB pages where a range covers an aligned 2 MiB (1 GiB pages only
//! on a CPU with `pdpe1gb`; QEMU's `qemu64` has none, hence the real runs' `DirectMap2M`)
//! and 4 KiB pages at the ragged ends, top-down in growing steps (`memory_map_top_down`).
//! The direct map's PUD and its first GiB's PMD are `head_64.S`'s static `level3_ident_pgt`
//! / `level2_ident_pgt` in the image (Debian builds XEN_PV / PVH); the other tables come
//! from the brk's `INIT_PGT_BUF_SIZE` buffer — except for a range that holds the brk itself
//! (`can_use_brk_pgt`), whose tables memblock hands out from what is mapped already, at the
//! top of RAM: which is why NODE_DATA ends three pages below the top on a machine with
//! RAM above 4 GiB and right under the initrd on a 2 GiB one.

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
/// `direct_gbpages`: QEMU's `qemu64` CPU has no `pdpe1gb`, so Debian's kernel maps with
/// 2 MiB pages at most (the real runs' meminfo has no `DirectMap1G`).
const GBPAGES: bool = false;
/// `INIT_PGT_BUF_SIZE` on x86_64: `INIT_PGD_PAGE_COUNT` pages of the brk for the first page
/// tables — `INIT_PGD_PAGE_TABLES` (4 with CONFIG_X86_5LEVEL) times 4 with
/// CONFIG_RANDOMIZE_MEMORY, Debian's settings whether or not `nokaslr` is given.
pub const INIT_PGT_BUF_PAGES: u64 = 16;

/// Where page-table pages come from while the direct map is built.
pub(super) struct PgtAlloc<'a> {
    pub memblock: &'a mut Memblock,
    /// The brk buffer: next free page and its end.
    pub brk: (u64, u64),
    /// Pages taken from memblock (the brk ran out, or the range being mapped holds it).
    pub from_memblock: u64,
    /// All table pages (brk and memblock).
    pub pages: u64,
    /// `can_use_brk_pgt` for the range being mapped.
    pub can_use_brk: bool,
    /// `[min_pfn_mapped, max_pfn_mapped)` in bytes: where memblock may hand out tables.
    pub mapped: (u64, u64),
}

/// `head_64.S`'s tables for the direct map: `init_top_pgt[L4_PAGE_OFFSET]` points to
/// `level3_ident_pgt`, whose first entry points to `level2_ident_pgt` (pages of the image's
/// data at `pud` and `pmd`).
pub(super) fn head_64_tables(
    mem: &mut PhysMem,
    pml4: u64,
    pud: u64,
    pmd: u64,
) -> Result<(), Boot64Error> {
    for t in [pml4, pud, pmd] {
        for i in 0..512 {
            mem.write_u64(PhysAddr::new(t + i * 8), 0).map_err(bug)?;
        }
    }
    let l4 = (PAGE_OFFSET_64 >> 39) & 511;
    mem.write_u64(PhysAddr::new(pml4 + l4 * 8), pud | TABLE)
        .map_err(bug)?;
    mem.write_u64(PhysAddr::new(pud), pmd | TABLE).map_err(bug)
}

/// `__START_KERNEL_map`: the image's high mapping starts here (PGD 511, PUD 510).
pub const START_KERNEL_MAP: u64 = 0xffff_ffff_8000_0000;
/// `__PAGE_KERNEL_LARGE_EXEC` with A|D: head_64.S maps the image executable and writable.
const PAGE_KERNEL_LARGE_EXEC: u64 = P | RW | G | 0x60 | PS;

/// The image's high mapping as `head_64.S` builds it and `cleanup_highmap()` trims it:
/// `init_top_pgt[511]` → `level3_kernel_pgt`, whose entry 510 is `level2_kernel_pgt` (2 MiB
/// pages from `_text` to `roundup(_brk_end, PMD_SIZE)`) and entry 511 `level2_fixmap_pgt`
/// (the module area and the fixmap; empty here). The three are pages of the image's data,
/// after the direct map's static tables.
pub(super) fn kernel_high_map(
    mem: &mut PhysMem,
    pml4: u64,
    img: &super::image::Image64,
    brk_end: u64,
) -> Result<(), Boot64Error> {
    let [pud, pmd, fixmap] = [3, 4, 5].map(|i| pml4 + i * PAGE_SIZE);
    for t in [pud, pmd, fixmap] {
        for i in 0..512 {
            mem.write_u64(PhysAddr::new(t + i * 8), 0).map_err(bug)?;
        }
    }
    let idx = |va: u64, shift: u32| (va >> shift) & 511;
    let w = |mem: &mut PhysMem, at: u64, v: u64| mem.write_u64(PhysAddr::new(at), v).map_err(bug);
    w(mem, pml4 + idx(START_KERNEL_MAP, 39) * 8, pud | TABLE)?;
    w(mem, pud + idx(START_KERNEL_MAP, 30) * 8, pmd | TABLE)?;
    w(mem, pud + 511 * 8, fixmap | TABLE)?;
    let end = brk_end.div_ceil(2 << 20) * (2 << 20);
    let mut pa = img.text & !((2 << 20) - 1);
    while pa < end {
        w(
            mem,
            pmd + idx(START_KERNEL_MAP + pa, 21) * 8,
            pa | PAGE_KERNEL_LARGE_EXEC,
        )?;
        pa += 2 << 20;
    }
    Ok(())
}

impl PgtAlloc<'_> {
    /// `alloc_low_pages(1)`: zeroed.
    fn alloc(&mut self, mem: &mut PhysMem) -> Result<u64, Boot64Error> {
        let pa = if self.can_use_brk && self.brk.0 < self.brk.1 {
            let pa = self.brk.0;
            self.brk.0 += PAGE_SIZE;
            pa
        } else {
            self.from_memblock += 1;
            self.memblock
                .alloc_range(
                    PAGE_SIZE,
                    PAGE_SIZE,
                    self.mapped.0,
                    self.mapped.1,
                    "direct map page tables",
                )
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

/// `init_memory_mapping` over every usable range inside `[start, end)`, each with its own
/// `can_use_brk_pgt`: the brk's pages may not map a range that holds the brk itself.
/// Returns the bytes mapped.
fn init_range_memory_mapping(
    mem: &mut PhysMem,
    pgt: &mut PgtAlloc,
    pml4: u64,
    usable: &[(u64, u64)],
    (start, end): (u64, u64),
    count: &mut DirectMapPages,
) -> Result<u64, Boot64Error> {
    let mut mapped = 0;
    for &(s, e) in usable {
        let (s, e) = ((s * PAGE_SIZE).max(start), (e * PAGE_SIZE).min(end));
        if s >= e {
            continue;
        }
        pgt.can_use_brk = s.max(pgt.brk.0) >= e.min(pgt.brk.1);
        map_range(mem, pgt, pml4, (s, e), GBPAGES, count)?;
        pgt.mapped.1 = pgt.mapped.1.max(e);
        mapped += e - s;
    }
    Ok(mapped)
}

/// `memory_map_top_down(map_start, map_end)`: from the top of the highest free 2 MiB
/// block down, in steps that grow by 2^8 once as much is mapped as one step covers, so
/// that the tables of each step fit in what is mapped already; then the rest above.
pub(super) fn memory_map_top_down(
    mem: &mut PhysMem,
    pgt: &mut PgtAlloc,
    pml4: u64,
    usable: &[(u64, u64)],
    (map_start, map_end): (u64, u64),
    count: &mut DirectMapPages,
) -> Result<(), Boot64Error> {
    const PMD_SIZE: u64 = 2 << 20;
    let probe = pgt
        .memblock
        .alloc_range(PMD_SIZE, PMD_SIZE, map_start, map_end, "probe")
        .map_err(|e| Boot64Error::Bug(format!("BUG: memory_map_top_down: {e}")))?
        .as_u64();
    pgt.memblock.free(probe, PMD_SIZE);
    let real_end = probe + PMD_SIZE;
    let (mut step, mut last_start, mut mapped) = (PMD_SIZE, real_end, 0);
    pgt.mapped = (real_end, real_end);
    while last_start > map_start {
        let start = if last_start > step {
            ((last_start - 1) & !(step - 1)).max(map_start)
        } else {
            map_start
        };
        mapped += init_range_memory_mapping(mem, pgt, pml4, usable, (start, last_start), count)?;
        last_start = start;
        pgt.mapped.0 = last_start;
        if mapped >= step {
            step <<= 21 - 12 - 1;
        }
    }
    if real_end < map_end {
        init_range_memory_mapping(mem, pgt, pml4, usable, (real_end, map_end), count)?;
    }
    Ok(())
}

/// `init_memory_mapping(0, ISA_END_ADDRESS)`: the first MiB, holes included, from the brk.
pub(super) fn map_isa(
    mem: &mut PhysMem,
    pgt: &mut PgtAlloc,
    pml4: u64,
    count: &mut DirectMapPages,
) -> Result<(), Boot64Error> {
    pgt.can_use_brk = true;
    map_range(mem, pgt, pml4, (0, 1 << 20), GBPAGES, count)
}
