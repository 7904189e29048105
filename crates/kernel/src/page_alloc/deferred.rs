//! CONFIG_DEFERRED_STRUCT_PAGE_INIT (6.1, 64-bit builds; on in Debian's amd64 kernel) and
//! the pageblock types it leaves.
//!
//! `memmap_init_range` stops, in the zone that ends the node, one section past its start
//! (`defer_init`): from `first_deferred_pfn` on, no descriptor is initialised at boot and no
//! pageblock is marked Movable, so those pageblocks keep the zero-filled usemap's 0,
//! MIGRATE_UNMOVABLE. `memblock_free_all` skips those pfns. `reserve_bootmem_region`
//! initialises the reserved ones (`init_reserved_page`, which sets no migratetype), and
//! `page_alloc_init_late` → `deferred_init_memmap` the free ones: `deferred_free_pages` cuts
//! memblock's free ranges at pageblock boundaries and `deferred_free_range` marks a pageblock
//! Movable when the piece it frees starts at the block's first pfn. A pageblock whose first
//! page memblock still holds stays Unmovable for good: the vmemmap above all (64 bytes of
//! `struct page` per page, top-down at the top of RAM: 64 pageblocks on 8 GiB), and anything
//! freed into such a block later (the initrd on a 2 GiB machine) goes to the Unmovable free
//! lists. Later kernels mark them Movable in `init_reserved_page` ("memblock: uniformly
//! initialize all reserved pages to MIGRATE_MOVABLE"); 6.1 does not, and the real amd64
//! boots' /proc/pagetypeinfo shows it.
//!
//! The model initialises every descriptor in `memmap_init` and frees the deferred pages with
//! the rest in `memblock_free_all` (ARCHITECTURE.md, the 64-bit kernel): only the pageblock
//! marks follow the deferral, set before the frees so that each page goes to the free list of
//! the type 6.1 gives its block.

use crate::mmzone::{MigrateType, PgData};

impl PgData {
    /// `defer_init()`: in the zone that ends the node, the first section-aligned pfn after
    /// one section's worth of the zone's memory has been initialised. `None` when that zone
    /// is smaller (nothing is deferred).
    pub(super) fn defer_init_pfn(&self) -> Option<u64> {
        let section = self.zone_model.section_pages;
        let end = self.node_end_pfn();
        let zone = self
            .node_zones
            .iter()
            .find(|z| z.spanned_pages > 0 && z.zone_end_pfn() == end)?;
        let mut seen = 0u64;
        for &(s, e) in &self.memory {
            let (s, e) = (s.max(zone.zone_start_pfn), e.min(end));
            if s >= e {
                continue;
            }
            // The first pfn p in [s, e) with seen + (p - s) + 1 > section, aligned.
            let need = (section + 1).saturating_sub(seen + 1);
            let p = (s + need).div_ceil(section) * section;
            if p < e {
                return Some(p);
            }
            seen += e - s;
        }
        None
    }

    /// `deferred_init_memmap()`'s marks: every pageblock at or above `first_deferred_pfn`
    /// whose first pfn lies in one of memblock's `free` ranges (`[start, end)` pfns) becomes
    /// Movable, as `deferred_free_range` marks it; the others keep their Unmovable.
    pub(super) fn deferred_free_marks(&mut self, free: &[(u64, u64)]) {
        let Some(first) = self.first_deferred_pfn else {
            return;
        };
        let Some(z) = self.node_zones.iter().position(|z| z.spans_pfn(first)) else {
            return;
        };
        let nr = self.pageblock_nr_pages();
        let end = self.node_end_pfn();
        for &(s, e) in free {
            let e = e.min(end);
            let mut pfn = s.max(first).next_multiple_of(nr);
            while pfn < e {
                self.node_zones[z].store_pageblock_migratetype(pfn, MigrateType::Movable);
                pfn += nr;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mmzone::{ZoneModel, ZoneType, MAX_ORDER};
    use crate::page_alloc::NodeConfig;

    /// 512 MiB: DMA and a DMA32 that ends the node, so its memory past the first section
    /// (from pfn 0x10000) is deferred.
    const END: u64 = 0x20000;
    /// Reserved: a pageblock below the deferred point, the top 4 MiB (as the vmemmap sits),
    /// a block's first 256 pages, and 256 pages in the middle of another block.
    const RESERVED: [(u64, u64); 4] = [
        (0x8000, 0x8200),
        (0x1f000, END),
        (0x18000, 0x18100),
        (0x14100, 0x14200),
    ];

    fn free_ranges() -> Vec<(u64, u64)> {
        let mut r = RESERVED.to_vec();
        r.sort();
        let mut free = vec![(1, 0x9f)];
        let mut start = 0x100;
        for (s, e) in r {
            free.push((start, s));
            start = e;
        }
        free.retain(|&(s, e)| s < e);
        free
    }

    fn booted(model: ZoneModel) -> PgData {
        let cfg = NodeConfig {
            max_zone_pfn: [0x1000, END, END, 0],
            memory: vec![(1, 0x9f), (0x100, END)],
            nr_cpus: 1,
            pageblock_order: 9,
            thp: true,
            zone_model: model,
            dma_reserve: 0,
        };
        let (mut pg, _) = PgData::new(&cfg).expect("node");
        pg.mem_init_free(&free_ranges(), &RESERVED, END)
            .expect("frees");
        pg
    }

    fn free_pages_of(pg: &PgData, z: ZoneType, mt: MigrateType) -> u64 {
        let zone = pg.zone(z);
        (0..MAX_ORDER)
            .map(|o| zone.free_list_len(&pg.mem_map, o, mt) << o)
            .sum()
    }

    #[test]
    fn reserved_pageblocks_above_the_deferred_point_stay_unmovable() {
        let pg = booted(ZoneModel::X86_64);
        assert_eq!(pg.first_deferred_pfn, Some(0x10000));
        // Zone number 1: DMA32 on x86_64.
        let dma32 = pg.zone(ZoneType::Normal);
        let mt = |pfn| dma32.get_pageblock_migratetype(pfn);
        // Below the deferred point memmap_init marked every block, reserved or not.
        assert_eq!(mt(0x8000), MigrateType::Movable);
        // Above it only a block whose first page is freed is marked.
        for pfn in (0x1f000..END).step_by(512).chain([0x18000]) {
            assert_eq!(mt(pfn), MigrateType::Unmovable, "block {pfn:#x}");
        }
        assert_eq!(mt(0x14000), MigrateType::Movable);
        assert_eq!(mt(0x10000), MigrateType::Movable);
        assert_eq!(pg.pageblock_counts(ZoneType::Normal)[0], 9);
        // The free half of the block whose head is reserved is on the Unmovable lists.
        assert_eq!(
            free_pages_of(&pg, ZoneType::Normal, MigrateType::Unmovable),
            256
        );
    }

    #[test]
    fn without_deferred_init_every_block_is_movable_and_the_frees_are_the_same() {
        let (deferred, flat) = (booted(ZoneModel::X86_64), booted(ZoneModel::I386));
        assert_eq!(flat.first_deferred_pfn, None);
        assert_eq!(flat.pageblock_counts(ZoneType::Normal)[0], 0);
        assert_eq!(deferred.nr_free_pages(), flat.nr_free_pages());
        assert_eq!(deferred.totalram_pages, flat.totalram_pages);
    }
}
