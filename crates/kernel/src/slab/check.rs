//! SLUB's invariants, checked the way `validate_slab_cache` (slub_debug's validation) walks
//! every slab: the tests run this after each operation.

use std::collections::HashSet;

use machine::{Pfn, PhysAddr};

use crate::kernel::Kernel;
use crate::page::PageFlags;
use crate::vmstat::NodeStatItem;

use super::slub::{obj_index, vmstat_item, Slab, NO_SLAB};
use super::{CacheId, KmemCache};

/// Every slab's page, freelists, counters and list links against each other and against
/// the node's slab counters. The first inconsistency found, as text.
pub fn check_slab(k: &Kernel) -> Result<(), String> {
    let slub = &k.slab;
    let mut pages = [0u64; 2];
    let mut ranges = Vec::new();
    let mut per_cache = vec![(0u64, 0u64, 0u32); slub.caches.len()];
    for (sid, slab) in slub.slabs.slots.iter().enumerate() {
        let Some(slab) = slab else { continue };
        let sid = sid as u32;
        let s = slub
            .caches
            .get(slab.cache as usize)
            .filter(|c| !c.dead)
            .ok_or(format!("slab {sid} of a dead cache"))?;
        check_page(k, sid, slab)?;
        check_objects(k, s, sid, slab)?;
        let item = vmstat_item(s.flags);
        pages[(item == NodeStatItem::NrSlabReclaimableB) as usize] += 1 << slab.order;
        ranges.push((slab.pfn, slab.pfn + (1u64 << slab.order)));
        let pc = &mut per_cache[slab.cache as usize];
        pc.0 += 1;
        pc.1 += u64::from(slab.objects);
        pc.2 += slab.on_partial as u32;
    }
    ranges.sort_unstable();
    if ranges.windows(2).any(|w| w[0].1 > w[1].0) {
        return Err("two slabs share pages".into());
    }
    // The pfn side table names exactly the slabs' pages.
    let mut expect = vec![0u64; slub.pfn_slab.len()];
    for (sid, slab) in slub.slabs.slots.iter().enumerate() {
        let Some(slab) = slab else { continue };
        let v = (sid as u64 + 1) | (u64::from(slab.cache) << 32);
        for p in slab.pfn..slab.pfn + (1u64 << slab.order) {
            if let Some(e) = expect.get_mut(p as usize) {
                *e = v;
            }
        }
    }
    if let Some(p) = (0..expect.len()).find(|&p| expect[p] != slub.pfn_slab[p]) {
        return Err(format!(
            "pfn {p:#x}: side table says {:#x}, the slabs say {:#x}",
            slub.pfn_slab[p], expect[p]
        ));
    }
    for (i, c) in slub.caches.iter().enumerate() {
        check_cache(k, CacheId(i as u32), c, per_cache[i])?;
    }
    let large: u64 = slub.large.values().map(|o| 1u64 << o).sum();
    let unrecl = k.node.node_page_state(NodeStatItem::NrSlabUnreclaimableB);
    let recl = k.node.node_page_state(NodeStatItem::NrSlabReclaimableB);
    if unrecl != pages[0] + large || recl != pages[1] {
        return Err(format!(
            "slab counters {recl}/{unrecl} pages, slabs hold {}/{} (+{large} large)",
            pages[1], pages[0]
        ));
    }
    Ok(())
}

/// The head page is PG_slab and names the slab; the block is low memory.
fn check_page(k: &Kernel, sid: u32, slab: &Slab) -> Result<(), String> {
    let end = slab.pfn + (1 << slab.order);
    if end > k.slab.max_low_pfn {
        return Err(format!(
            "slab {sid} at pfn {:#x} is not low memory",
            slab.pfn
        ));
    }
    let page = k
        .node
        .mem_map
        .get(Pfn::new(slab.pfn))
        .ok_or(format!("slab {sid} has no struct page"))?;
    if !page.test(PageFlags::SLAB) || page.mapping != sid + 1 || page.refcount != 1 {
        return Err(format!(
            "slab {sid} head page {page:?} is not its PG_slab page"
        ));
    }
    Ok(())
}

/// Decode one free pointer straight from RAM, at the width and with the `swab` of the
/// kernel's architecture.
fn next_free(k: &Kernel, s: &KmemCache, object: u64) -> Result<u64, String> {
    let addr = object.wrapping_add(u64::from(s.offset));
    let pa = PhysAddr::new(addr.wrapping_sub(k.slab.page_offset));
    let raw = (k.slab.fp.read(&k.machine.mem, pa))
        .map_err(|e| format!("free pointer of {object:#x}: {e}"))?;
    Ok(k.slab.fp.encode(s.random, raw, addr))
}

/// Walk a freelist: each entry a distinct, free object of this slab.
fn walk(
    k: &Kernel,
    s: &KmemCache,
    slab: &Slab,
    head: u64,
    seen: &mut HashSet<u32>,
) -> Result<u32, String> {
    let mut n = 0;
    let mut it = head;
    while it != 0 {
        let Some(idx) = obj_index(slab, s.size, it) else {
            return Err(format!(
                "{}: freelist entry {it:#x} outside its slab",
                s.name
            ));
        };
        if !seen.insert(idx) || (k.slab.debug && slab.is_live(idx)) {
            return Err(format!("{}: object {it:#x} both free and in use", s.name));
        }
        n += 1;
        it = next_free(k, s, it)?;
    }
    Ok(n)
}

/// Objects on the slab's and (for a CPU slab) the CPU's freelist plus the allocated ones
/// make up the slab; `inuse` agrees.
fn check_objects(k: &Kernel, s: &KmemCache, sid: u32, slab: &Slab) -> Result<(), String> {
    let mut seen = HashSet::new();
    let remote = walk(k, s, slab, slab.freelist, &mut seen)?;
    let cpus: Vec<usize> = (0..s.cpu_slab.len())
        .filter(|&c| s.cpu_slab[c].slab == sid)
        .collect();
    if cpus.len() > 1 || slab.frozen != (cpus.len() == 1) {
        return Err(format!(
            "{}: slab {sid} frozen={} on {} CPUs",
            s.name,
            slab.frozen,
            cpus.len()
        ));
    }
    let local = match cpus.first() {
        Some(&c) => walk(k, s, slab, s.cpu_slab[c].freelist, &mut seen)?,
        None => 0,
    };
    // Without slub_debug there is no bitmap: the allocated objects are the rest.
    let live = if k.slab.debug {
        slab.live_count()
    } else {
        slab.objects.saturating_sub(remote + local)
    };
    if live + remote + local != slab.objects || slab.inuse != slab.objects - remote {
        return Err(format!(
            "{}: slab {sid}: {live} live + {remote} + {local} free of {} (inuse {})",
            s.name, slab.objects, slab.inuse
        ));
    }
    Ok(())
}

/// The node counters and the partial list of one cache.
fn check_cache(
    k: &Kernel,
    id: CacheId,
    c: &KmemCache,
    counted: (u64, u64, u32),
) -> Result<(), String> {
    if (c.node.nr_slabs, c.node.total_objects) != (counted.0, counted.1) {
        return Err(format!(
            "{}: node counts {:?}, slabs {:?}",
            c.name, c.node, counted
        ));
    }
    let list = k.slab.partial_slabs(id);
    if list.len() as u32 != c.node.nr_partial || counted.2 != c.node.nr_partial {
        return Err(format!(
            "{}: partial list {} vs nr_partial {}",
            c.name,
            list.len(),
            c.node.nr_partial
        ));
    }
    for sid in list {
        let s = k
            .slab
            .slabs
            .get(sid)
            .ok_or("partial list names a freed slab")?;
        if s.frozen || s.cache != id.0 || s.freelist == 0 {
            return Err(format!("{}: bad partial slab {sid}", c.name));
        }
    }
    if c.cpu_slab
        .iter()
        .any(|cs| cs.slab == NO_SLAB && cs.freelist != 0)
    {
        return Err(format!("{}: CPU freelist without a slab", c.name));
    }
    Ok(())
}
