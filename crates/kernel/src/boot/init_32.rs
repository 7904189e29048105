//! The final kernel page tables (arch/x86/mm/init.c, init_32.c).
//!
//! `init_mem_mapping` maps all of low memory at PAGE_OFFSET in swapper_pg_dir: the first
//! megabyte with 4 KiB pages, then the rest top-down in growing steps, each range split into
//! a 4 KiB head, large pages (2 MiB with PAE, 4 MiB without) and a 4 KiB tail.
//! `kernel_physical_mapping_init` writes every range twice — first with the early identity
//! attributes, then (after a full TLB flush) with the final protections — because Intel
//! advises against changing page size and attributes in one write. Page-table pages come
//! from `alloc_low_page`: the brk page-table buffer first, then memblock inside what is
//! already mapped. The same allocator serves the pkmap and fixmap page tables.
//! `native_pagetable_init` and `paging_init` (pkmap table, zones, mem_map) follow it in
//! setup_arch.

use super::brk::Brk;
use super::resources::SMP_CACHE_BYTES;
use super::BootError;
use crate::config::KernelConfig;
use crate::layout::Layout;
use crate::memblock::Memblock;
use crate::mmzone::PgData;
use crate::page_alloc::NodeConfig;
use crate::pagewalk::{Cursor, Walk};
use crate::pgtable::Geometry;
use crate::pgtable_types::{
    PteMasks, PteVal, _KERNPG_TABLE, _PAGE_PRESENT, _PAGE_PSE, PTE_IDENT_ATTR,
};
use crate::printk::{LogLevel, Printk};
use crate::tlbflush::TlbFlush;
use machine::{Machine, PhysAddr, PhysMem, PAGE_SIZE};

/// `INIT_PGT_BUF_SIZE`: pages of brk set aside for the first page tables.
pub const INIT_PGT_BUF_PAGES: u64 = 6;
/// ISA_END_ADDRESS: the first megabyte is mapped on its own, with 4 KiB pages.
pub const ISA_END_ADDRESS: u64 = 0x10_0000;

/// `alloc_low_page`: page-table pages during boot.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PgtBuf {
    pub start: u64,
    pub end: u64,
    pub top: u64,
    /// Pages that came from memblock once the buffer ran dry.
    pub from_memblock: u64,
    /// Lowest and highest mapped physical addresses (memblock fallback window).
    pub min_mapped: u64,
    pub max_mapped: u64,
}

impl PgtBuf {
    /// `early_alloc_pgt_buf`.
    pub fn new(brk: &mut Brk) -> Result<Self, BootError> {
        let start = brk.extend(INIT_PGT_BUF_PAGES * PAGE_SIZE, PAGE_SIZE)?;
        Ok(PgtBuf {
            start,
            end: start,
            top: start + INIT_PGT_BUF_PAGES * PAGE_SIZE,
            from_memblock: 0,
            min_mapped: 0,
            max_mapped: 0,
        })
    }

    /// One zeroed page-table page.
    pub fn alloc_low_page(
        &mut self,
        mem: &mut PhysMem,
        memblock: &mut Memblock,
    ) -> Result<u64, BootError> {
        let pa = if self.end + PAGE_SIZE <= self.top {
            let pa = self.end;
            self.end += PAGE_SIZE;
            pa
        } else {
            let pa = memblock
                .alloc_range(
                    PAGE_SIZE,
                    PAGE_SIZE,
                    self.min_mapped,
                    self.max_mapped,
                    "page tables",
                )
                .map_err(|_| BootError::Panic("alloc_low_pages: can not alloc memory".into()))?;
            self.from_memblock += 1;
            pa.as_u64()
        };
        mem.fill(PhysAddr::new(pa), PAGE_SIZE, 0)?;
        Ok(pa)
    }
}

/// A range to map and whether it may use large pages (`struct map_range`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapRange {
    pub start: u64,
    pub end: u64,
    pub large: bool,
}

/// `split_mem_range`: 4 KiB head up to a large-page boundary, large middle, 4 KiB tail.
pub fn split_mem_range(geo: Geometry, start: u64, end: u64, use_large: bool) -> Vec<MapRange> {
    let mut out = Vec::new();
    let big = geo.pmd_size();
    if !use_large {
        if start < end {
            out.push(MapRange {
                start,
                end,
                large: false,
            });
        }
        return out;
    }
    let head_end = start.div_ceil(big) * big;
    let head_end = head_end.min(end);
    if start < head_end {
        out.push(MapRange {
            start,
            end: head_end,
            large: false,
        });
    }
    let mid_end = (end / big) * big;
    if head_end < mid_end {
        out.push(MapRange {
            start: head_end,
            end: mid_end,
            large: true,
        });
    }
    let tail_start = mid_end.max(head_end);
    if tail_start < end {
        out.push(MapRange {
            start: tail_start,
            end,
            large: false,
        });
    }
    // Merge neighbours of the same kind, as the kernel does.
    out.dedup_by(|b, a| {
        if a.end == b.start && a.large == b.large {
            a.end = b.end;
            true
        } else {
            false
        }
    });
    out
}

/// The ranges `init_mem_mapping` maps, in the order it maps them (`memory_map_top_down`).
/// `top_free_2m` is where memblock found a free PMD-sized block near the top of low memory.
pub fn memory_map_top_down(
    geo: Geometry,
    map_start: u64,
    map_end: u64,
    real_end: u64,
) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut step = geo.pmd_size();
    let mut last_start = real_end;
    let mut mapped = 0u64;
    while last_start > map_start {
        let start = if last_start > step {
            ((last_start - 1) / step * step).max(map_start)
        } else {
            map_start
        };
        out.push((start, last_start));
        mapped += last_start - start;
        last_start = start;
        if mapped >= step {
            // get_new_step_size: grow by 2^(PMD_SHIFT - PAGE_SHIFT - 1).
            step <<= geo.pmd_shift() - 12 - 1;
        }
    }
    if real_end < map_end {
        out.push((real_end, map_end));
    }
    out
}

/// Direct-map page counters (`direct_pages_count`), shown as DirectMap4k / DirectMap2M|4M.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DirectPagesCount {
    pub pages_4k: u64,
    pub pages_large: u64,
}

/// Everything the page-table builder needs to know about the kernel.
#[derive(Clone, Copy, Debug)]
pub struct KernelMapCtx {
    pub geo: Geometry,
    pub masks: PteMasks,
    pub page_offset: u64,
    /// Physical address of swapper_pg_dir.
    pub pgd: u64,
    /// `__pa(_text)` and `__pa(__init_end)`: pages in this range stay executable.
    pub text_start: u64,
    pub init_end: u64,
    pub use_pse: bool,
}

impl KernelMapCtx {
    fn is_kernel_text(&self, va: u64) -> bool {
        va >= self.text_start + self.page_offset && va <= self.init_end + self.page_offset
    }

    /// `one_md_table_init`: the PMD page for a pgd slot (the pgd itself without PAE).
    fn pmd_table(
        &self,
        mem: &mut PhysMem,
        memblock: &mut Memblock,
        buf: &mut PgtBuf,
        va: u64,
    ) -> Result<u64, BootError> {
        if !self.geo.pae {
            return Ok(self.pgd);
        }
        let pgd = PhysAddr::new(self.pgd);
        let idx = self.geo.pgd_index(va);
        let e = self.geo.read(mem, pgd, idx)?;
        if e & _PAGE_PRESENT != 0 {
            return Ok(self.geo.entry_table(e).as_u64());
        }
        let page = buf.alloc_low_page(mem, memblock)?;
        // A PDPT entry may only carry P (and cache bits).
        self.geo.write(mem, pgd, idx, page | _PAGE_PRESENT)?;
        Ok(page)
    }

    /// `one_page_table_init`: the PTE page under a PMD entry, reusing an existing one.
    pub fn pte_table(
        &self,
        mem: &mut PhysMem,
        memblock: &mut Memblock,
        buf: &mut PgtBuf,
        va: u64,
    ) -> Result<u64, BootError> {
        let pmd = self.pmd_table(mem, memblock, buf, va)?;
        let idx = self.geo.pmd_slot(va);
        let e = self.geo.read(mem, PhysAddr::new(pmd), idx)?;
        if e & _PAGE_PRESENT != 0 && e & _PAGE_PSE == 0 {
            return Ok(self.geo.entry_table(e).as_u64());
        }
        let page = buf.alloc_low_page(mem, memblock)?;
        self.geo
            .write(mem, PhysAddr::new(pmd), idx, page | _KERNPG_TABLE)?;
        Ok(page)
    }

    /// `kernel_physical_mapping_init` for one range: two passes, counting pages.
    pub fn kernel_physical_mapping_init(
        &self,
        m: &mut Machine,
        memblock: &mut Memblock,
        buf: &mut PgtBuf,
        range: MapRange,
        count: &mut DirectPagesCount,
    ) -> Result<(), BootError> {
        let big = self.geo.pmd_size();
        for pass in 1..=2 {
            let mut pa = range.start;
            while pa < range.end {
                let va = pa + self.page_offset;
                if range.large && self.use_pse {
                    let base = pa & self.geo.pmd_mask();
                    let last = base + big - 1;
                    let exec =
                        self.is_kernel_text(va) || self.is_kernel_text(last + self.page_offset);
                    let prot = if pass == 1 {
                        PTE_IDENT_ATTR | _PAGE_PSE
                    } else if exec {
                        self.masks.page_kernel_large_exec()
                    } else {
                        self.masks.page_kernel_large()
                    };
                    let pmd = self.pmd_table(&mut m.mem, memblock, buf, va)?;
                    let idx = self.geo.pmd_slot(va);
                    self.geo
                        .write(&mut m.mem, PhysAddr::new(pmd), idx, base | prot)?;
                    if pass == 1 {
                        count.pages_large += 1;
                    }
                    pa = base + big;
                    continue;
                }
                let pte = self.pte_table(&mut m.mem, memblock, buf, va)?;
                let prot: PteVal = if pass == 1 {
                    PTE_IDENT_ATTR
                } else if self.is_kernel_text(va) {
                    self.masks.page_kernel_exec()
                } else {
                    self.masks.page_kernel()
                };
                self.geo.write(
                    &mut m.mem,
                    PhysAddr::new(pte),
                    self.geo.pte_index(va),
                    pa | prot,
                )?;
                if pass == 1 {
                    count.pages_4k += 1;
                }
                pa += PAGE_SIZE;
            }
            if pass == 1 {
                // __flush_tlb_all() between the passes.
                m.flush_all(0)?;
            }
        }
        Ok(())
    }

    /// `page_table_range_init`: make sure PTE pages exist for `[start, end)` (fixmap, pkmap).
    pub fn page_table_range_init(
        &self,
        mem: &mut PhysMem,
        memblock: &mut Memblock,
        buf: &mut PgtBuf,
        start: u64,
        end: u64,
    ) -> Result<Vec<u64>, BootError> {
        let mut pages = Vec::new();
        let mut va = start & self.geo.pmd_mask();
        while va < end {
            pages.push(self.pte_table(mem, memblock, buf, va)?);
            va += self.geo.pmd_size();
        }
        Ok(pages)
    }
}

/// `native_pagetable_init()`: head_32 mapped whole page tables' worth of RAM, which on a
/// small machine (or with `mem=`) reaches beyond `max_low_pfn`. Those PTEs are cleared so
/// the kernel does not keep writable, executable mappings of memory it does not own.
pub(super) fn native_pagetable_init(
    m: &mut Machine,
    ctx: &KernelMapCtx,
    log: &mut Printk,
    lowmem_end: u64,
    early_end: u64,
) -> Result<(), BootError> {
    let geo = ctx.geo;
    let cur = Cursor::new(geo, PhysAddr::new(ctx.pgd));
    let mut flush = TlbFlush::none();
    let mut pa_ = lowmem_end;
    while pa_ < early_end {
        let va = ctx.page_offset + pa_;
        let (pmd, pte) = match cur.walk(&m.mem, va)? {
            Walk::NoPmd { .. } | Walk::NoPte { .. } => break,
            Walk::Large { .. } => {
                return Err(BootError::Bug(format!(
                    "BUG: native_pagetable_init: large page above max_low_pfn at {va:#x}"
                )))
            }
            Walk::Pte { pmd, pte } => (pmd, pte),
        };
        if !pte.present() {
            break;
        }
        let (pmd_phys, pte_phys) = (pmd.phys(geo).as_u64(), pte.phys(geo).as_u64());
        log.log(
            LogLevel::Debug,
            format!(
                "clearing pte for ram above max_low_pfn: pfn: {:x} pmd: {:#010x} pmd phys: {:x} pte: {:#010x} pte phys: {:x}",
                pa_ >> 12,
                ctx.page_offset + pmd_phys,
                pmd_phys,
                ctx.page_offset + pte_phys,
                pte_phys
            ),
        );
        flush = flush.merge(cur.set(&mut m.mem, pte, va, 0)?);
        pa_ += PAGE_SIZE;
    }
    // paging_init() flushes the whole TLB of the boot CPU right after (__flush_tlb_all),
    // which covers the cleared range.
    let _covered = flush.defer();
    m.flush_all(0)?;
    Ok(())
}

/// What `paging_init()` leaves: the node with its zones, where mem_map went and the
/// pkmap page table.
pub(super) struct Paging {
    pub node: PgData,
    pub mem_map_phys: u64,
    pub pkmap_page_table: u64,
}

/// `paging_init()`: `permanent_kmaps_init` (the pkmap page table), `__flush_tlb_all`, then
/// `zone_sizes_init` → `free_area_init`.
#[allow(clippy::too_many_arguments)]
pub(super) fn paging_init(
    machine: &mut Machine,
    memblock: &mut Memblock,
    pgt_buf: &mut PgtBuf,
    log: &mut Printk,
    ctx: &KernelMapCtx,
    layout: &Layout,
    cfg: &KernelConfig,
    cpus: u32,
) -> Result<Paging, BootError> {
    let pkmap_base = layout.areas.pkmap_base;
    let pkmap_pages = ctx.page_table_range_init(
        &mut machine.mem,
        memblock,
        pgt_buf,
        pkmap_base,
        pkmap_base + layout.areas.last_pkmap * PAGE_SIZE,
    )?;
    let pkmap_page_table = pkmap_pages.first().copied().unwrap_or(0);
    machine.flush_all(0)?;
    let (node, mem_map_phys) = free_area_init(memblock, log, layout, cfg, cpus)?;
    Ok(Paging {
        node,
        mem_map_phys,
        pkmap_page_table,
    })
}

/// `free_area_init()`: the zones from memblock's memory, `alloc_node_mem_map` (the FLATMEM
/// array, in low memory) and one pageblock-flags bitmap per zone; its hole reports go to
/// the log.
fn free_area_init(
    memblock: &mut Memblock,
    log: &mut Printk,
    layout: &Layout,
    cfg: &KernelConfig,
    cpus: u32,
) -> Result<(PgData, u64), BootError> {
    let memory: Vec<(u64, u64)> = memblock
        .memory
        .iter()
        .filter_map(|r| {
            let s = r.base.div_ceil(PAGE_SIZE);
            let e = r.end() / PAGE_SIZE;
            (s < e).then_some((s, e))
        })
        .collect();
    let dma_end = crate::config::MAX_DMA_PFN.min(layout.max_low_pfn.as_u64());
    let node_cfg = NodeConfig {
        max_zone_pfn: [
            dma_end,
            layout.max_low_pfn.as_u64(),
            layout.max_pfn.as_u64(),
            0,
        ],
        memory,
        nr_cpus: cpus as usize,
        pageblock_order: if cfg.pae { 9 } else { 10 },
        // Built in: the pcp lists hold pageblock-order pages whatever the boot decides.
        thp: cfg.transparent_hugepage.is_some(),
        zone_model: crate::mmzone::ZoneModel::I386,
        dma_reserve: 0,
    };
    let mem_map_phys = memblock
        .alloc_range(
            layout.mem_map_bytes,
            SMP_CACHE_BYTES,
            0,
            u64::MAX,
            "mem_map",
        )
        .map_err(|e| BootError::Panic(format!("Failed to allocate memory map: {e}")))?
        .as_u64();
    let (mut node, node_msgs) =
        PgData::new(&node_cfg).map_err(|e| BootError::Bug(format!("BUG: free_area_init: {e}")))?;
    node.current_comm = "swapper/0".to_string();
    // free_area_init_core(): one pageblock-flags bitmap per zone.
    for z in &node.node_zones {
        if z.spanned_pages > 0 {
            memblock
                .alloc_range(
                    z.usemap_size().max(1),
                    SMP_CACHE_BYTES,
                    0,
                    u64::MAX,
                    "pageblock flags",
                )
                .map_err(|e| BootError::Panic(e.to_string()))?;
        }
    }
    // The zone-range lines came with the layout; keep free_area_init's hole reports.
    let after_initmem = node_msgs
        .iter()
        .position(|l| l.starts_with("Initmem setup node"))
        .map_or(0, |i| i + 1);
    for l in &node_msgs[after_initmem..] {
        log.info(l.clone());
    }
    Ok((node, mem_map_phys))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_head_middle_tail() {
        let g = Geometry::new(true);
        let r = split_mem_range(g, 0x100000, 0x36ffe000, true);
        assert_eq!(
            r,
            vec![
                MapRange {
                    start: 0x100000,
                    end: 0x200000,
                    large: false
                },
                MapRange {
                    start: 0x200000,
                    end: 0x36e00000,
                    large: true
                },
                MapRange {
                    start: 0x36e00000,
                    end: 0x36ffe000,
                    large: false
                },
            ]
        );
        let g2 = Geometry::new(false);
        let r2 = split_mem_range(g2, 0x100000, 0x36bfe000, true);
        assert_eq!(
            r2[0],
            MapRange {
                start: 0x100000,
                end: 0x400000,
                large: false
            }
        );
        assert_eq!(
            r2[2],
            MapRange {
                start: 0x36800000,
                end: 0x36bfe000,
                large: false
            }
        );
    }

    #[test]
    fn top_down_steps_cover_everything_once() {
        let g = Geometry::new(true);
        let ranges = memory_map_top_down(g, 0x100000, 0x36ffe000, 0x36e00000);
        let mut covered: Vec<(u64, u64)> = ranges.clone();
        covered.sort();
        let mut at = 0x100000;
        for (s, e) in covered {
            assert_eq!(s, at);
            at = e;
        }
        assert_eq!(at, 0x36ffe000);
        assert_eq!(ranges[0], (0x36c00000, 0x36e00000));
    }
}
