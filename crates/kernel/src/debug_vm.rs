//! Consistency checks of the page allocator's state (the spirit of CONFIG_DEBUG_VM).
//!
//! `check_node` walks every free list and pcp list of every zone and the whole `mem_map`, and
//! reports every violation it finds: pages claimed twice, lists whose links disagree, counters
//! (`nr_free`, NR_FREE_PAGES, pcp `count`, the highatomic reserve) that do not match what the
//! lists hold, free blocks that are misaligned, cross a zone or contain reserved or referenced
//! pages, buddy pairs below pageblock order left unmerged, and buddy heads on no list. Tests
//! run it after every operation; it is O(pages) and meant for small nodes.

use crate::mmzone::{
    free_list_id, pcp_list_id, MigrateType, PgData, Zone, ZoneStatItem, MAX_ORDER, MIGRATE_PCPTYPES,
};
use crate::page::{MemMap, PageFlags, LINK_HEAD, LINK_NONE};
use crate::page_alloc::{order_to_pindex, pindex_to_order};

/// Problems listed before the rest are summarised.
const MAX_REPORTED: usize = 64;

/// Check the whole node. `Ok` when consistent, else every problem found.
pub fn check_node(pg: &PgData) -> Result<(), Vec<String>> {
    let mut errs = Vec::new();
    for &z in pg.zone_types() {
        check_zone(pg, pg.zone(z), &mut errs);
    }
    check_mem_map_outside_zones(pg, &mut errs);
    check_lru_counts(pg, &mut errs);
    if errs.is_empty() {
        return Ok(());
    }
    if errs.len() > MAX_REPORTED {
        let more = errs.len() - MAX_REPORTED;
        errs.truncate(MAX_REPORTED);
        errs.push(format!("... and {more} more"));
    }
    Err(errs)
}

/// The anon LRU lists' counts (`mm/swap.rs`): each zone's `nr_zone_{in,}active_anon` is
/// the number of its pages with PG_lru (and PG_active, or not), and the node's are their
/// sums; no free page is on a list (a page leaked by a bad-page report, with no reference
/// left, is on none).
fn check_lru_counts(pg: &PgData, errs: &mut Vec<String>) {
    use crate::vmstat::{NodeStatItem as N, ZoneStatItem as Z};
    let (lru, active) = (PageFlags::LRU.bits(), PageFlags::ACTIVE.bits());
    let (mut node_act, mut node_ina) = (0i64, 0i64);
    for &z in pg.zone_types() {
        let zone = pg.zone(z);
        let (mut act, mut ina) = (0i64, 0i64);
        for pfn in zone.zone_start_pfn..zone.zone_start_pfn + zone.spanned_pages {
            let Some(p) = pg.mem_map.get(machine::Pfn::new(pfn)) else {
                continue;
            };
            if p.flags & lru == 0 || p.zonenum() != z {
                continue;
            }
            if p.is_buddy() {
                errs.push(format!(
                    "{}: free pfn {pfn:#x} is on an LRU list",
                    zone.name
                ));
            }
            if p.refcount <= 0 {
                // A page a bad-page report leaked keeps the flags it was freed with.
                continue;
            }
            if p.flags & active != 0 {
                act += 1;
            } else {
                ina += 1;
            }
        }
        let want = (
            zone.page_state(Z::NrZoneActiveAnon) as i64,
            zone.page_state(Z::NrZoneInactiveAnon) as i64,
        );
        if (act, ina) != want {
            errs.push(format!(
                "{}: LRU pages active/inactive {act}/{ina}, counted {}/{}",
                zone.name, want.0, want.1
            ));
        }
        (node_act, node_ina) = (node_act + act, node_ina + ina);
    }
    let want = (pg.vm_stat[N::NrActiveAnon], pg.vm_stat[N::NrInactiveAnon]);
    if (node_act, node_ina) != want {
        errs.push(format!(
            "node: LRU pages active/inactive {node_act}/{node_ina}, counted {}/{}",
            want.0, want.1
        ));
    }
}

/// Walk list `id`, checking prev/next agreement; returns the pfns on it.
fn walk_list(map: &MemMap, zone: &Zone, id: u32, what: &str, errs: &mut Vec<String>) -> Vec<u32> {
    let head = LINK_HEAD | id;
    let mut out = Vec::new();
    let mut prev = head;
    let mut cur = crate::page::ListHeads::list_head(zone, id).next;
    let limit = map.len() + 1;
    while cur != head {
        if cur == LINK_NONE || cur & LINK_HEAD != 0 {
            errs.push(format!(
                "{}: {what}: link {cur:#x} after {prev:#x} is not a page",
                zone.name
            ));
            return out;
        }
        if (cur as u64) < map.start_pfn() || cur as u64 >= map.end_pfn() {
            errs.push(format!(
                "{}: {what}: pfn {cur:#x} outside mem_map",
                zone.name
            ));
            return out;
        }
        let p = map.p(cur);
        if p.lru_prev != prev {
            errs.push(format!(
                "{}: {what}: pfn {cur:#x} has prev {:#x}, expected {prev:#x}",
                zone.name, p.lru_prev
            ));
        }
        out.push(cur);
        if out.len() > limit {
            errs.push(format!(
                "{}: {what}: list does not return to its head",
                zone.name
            ));
            return out;
        }
        prev = cur;
        cur = p.lru_next;
    }
    if crate::page::ListHeads::list_head(zone, id).prev != prev {
        errs.push(format!(
            "{}: {what}: head's last entry is not the list's last",
            zone.name
        ));
    }
    out
}

fn check_zone(pg: &PgData, zone: &Zone, errs: &mut Vec<String>) {
    let map = &pg.mem_map;
    let name = zone.name;
    let start = zone.zone_start_pfn;
    let end = zone.zone_end_pfn();
    let span = zone.spanned_pages as usize;
    // 0 = not free, 1 = in a buddy block, 2 = on a pcp list.
    let mut state = vec![0u8; span];
    let pbo = zone.pageblock_order;
    let mut claim = |pfn: u32, n: u64, kind: u8, errs: &mut Vec<String>| {
        for q in pfn as u64..pfn as u64 + n {
            let i = (q - start) as usize;
            if state[i] != 0 {
                errs.push(format!("{name}: pfn {q:#x} is in two free blocks or lists"));
            }
            state[i] = kind;
        }
    };

    let mut free_pages: i64 = 0;
    for order in 0..MAX_ORDER as u32 {
        let mut blocks = 0u64;
        for mt in MigrateType::ALL {
            let what = format!("free_area[{order}].free_list[{}]", mt.name());
            for pfn in walk_list(map, zone, free_list_id(order, mt), &what, errs) {
                blocks += 1;
                let n = 1u64 << order;
                let p = pfn as u64;
                if p & (n - 1) != 0 {
                    errs.push(format!(
                        "{name}: {what}: pfn {p:#x} not aligned to its order"
                    ));
                }
                if p < start || p + n > end {
                    errs.push(format!(
                        "{name}: {what}: block {p:#x}+{n} outside zone [{start:#x}, {end:#x})"
                    ));
                    continue;
                }
                let head = map.p(pfn);
                if !head.is_buddy() || head.buddy_order() != order {
                    errs.push(format!(
                        "{name}: {what}: head {p:#x} buddy={} order={}",
                        head.is_buddy(),
                        head.buddy_order()
                    ));
                }
                for q in pfn..pfn + n as u32 {
                    let pq = map.p(q);
                    if pq.zonenum() != zone.zone_idx {
                        errs.push(format!(
                            "{name}: free pfn {q:#x} belongs to zone {:?}",
                            pq.zonenum()
                        ));
                    }
                    if pq.is_reserved() || pq.refcount != 0 {
                        errs.push(format!(
                            "{name}: free pfn {q:#x} reserved={} refcount={}",
                            pq.is_reserved(),
                            pq.refcount
                        ));
                    }
                    if q != pfn && (pq.is_buddy() || pq.mapcount != -1) {
                        errs.push(format!(
                            "{name}: tail pfn {q:#x} of free block {p:#x} has page_type {:#x}",
                            pq.page_type()
                        ));
                    }
                }
                claim(pfn, n, 1, errs);
                if mt != MigrateType::Isolate {
                    free_pages += n as i64;
                }
            }
        }
        if blocks != zone.free_area[order as usize].nr_free {
            errs.push(format!(
                "{name}: free_area[{order}].nr_free = {} but the lists hold {blocks}",
                zone.free_area[order as usize].nr_free
            ));
        }
    }
    let nr_free = zone.vm_stat[ZoneStatItem::NrFreePages];
    if nr_free != free_pages {
        errs.push(format!(
            "{name}: NR_FREE_PAGES = {nr_free} but the buddy lists hold {free_pages}"
        ));
    }

    for (cpu, pcp) in zone.per_cpu_pageset.iter().enumerate() {
        let mut count = 0i64;
        for pindex in 0..pg.nr_pcp_lists() {
            let order = pindex_to_order(pindex, pbo);
            let what = format!("cpu {cpu} pcp list {pindex}");
            for pfn in walk_list(map, zone, pcp_list_id(cpu, pindex), &what, errs) {
                let n = 1u64 << order;
                let p = pfn as u64;
                count += n as i64;
                if p & (n - 1) != 0 || p < start || p + n > end {
                    errs.push(format!("{name}: {what}: block {p:#x}+{n} misplaced"));
                    continue;
                }
                let page = map.p(pfn);
                if page.is_buddy() || page.refcount != 0 || page.is_reserved() {
                    errs.push(format!(
                        "{name}: {what}: pfn {p:#x} is not a clean pcp page"
                    ));
                }
                let mt = MigrateType::from_index(page.index as usize);
                let list_mt = if mt as usize >= MIGRATE_PCPTYPES {
                    MigrateType::Movable
                } else {
                    mt
                };
                if page.index as usize >= crate::mmzone::MIGRATE_TYPES
                    || order_to_pindex(list_mt, order) != pindex
                {
                    errs.push(format!(
                        "{name}: {what}: pfn {p:#x} has pcp migratetype {}",
                        page.index
                    ));
                }
                claim(pfn, n, 2, errs);
            }
        }
        if count != pcp.count as i64 {
            errs.push(format!(
                "{name}: cpu {cpu} pcp count {} but lists hold {count}",
                pcp.count
            ));
        }
    }

    let nr_blocks_highatomic = zone
        .pageblock_flags
        .iter()
        .filter(|&&mt| mt == MigrateType::HighAtomic)
        .count() as u64;
    if zone.nr_reserved_highatomic != nr_blocks_highatomic << pbo {
        errs.push(format!(
            "{name}: nr_reserved_highatomic {} but {nr_blocks_highatomic} HighAtomic pageblocks",
            zone.nr_reserved_highatomic
        ));
    }

    // Every pfn: no stray buddy heads, and below pageblock order no two free buddies.
    for (i, &st) in state.iter().enumerate() {
        let pfn = start + i as u64;
        let page = map.p(pfn as u32);
        if st == 0 && page.is_buddy() {
            errs.push(format!(
                "{name}: pfn {pfn:#x} is PageBuddy but on no free list"
            ));
        }
        if st != 1 || !page.is_buddy() || page.zonenum() != zone.zone_idx {
            continue;
        }
        let order = page.buddy_order();
        if order >= pbo {
            continue;
        }
        let buddy = pfn ^ (1 << order);
        if buddy < start || buddy >= end || buddy < pfn {
            continue;
        }
        let b = map.p(buddy as u32);
        if state[(buddy - start) as usize] == 1
            && b.is_buddy()
            && b.buddy_order() == order
            && b.zonenum() == zone.zone_idx
        {
            errs.push(format!(
                "{name}: free buddies {pfn:#x} and {buddy:#x} of order {order} not merged"
            ));
        }
    }
}

/// Pages outside every zone's span must not look free.
fn check_mem_map_outside_zones(pg: &PgData, errs: &mut Vec<String>) {
    let map = &pg.mem_map;
    for pfn in map.start_pfn()..map.end_pfn() {
        if pg.node_zones.iter().any(|z| z.spans_pfn(pfn)) {
            continue;
        }
        let p = map.p(pfn as u32);
        if p.is_buddy() {
            errs.push(format!("pfn {pfn:#x} outside all zones is PageBuddy"));
        }
    }
}
