//! The translation lookaside buffer of one CPU.
//!
//! The TLB is why page-table edits need flushes: once a translation is cached, the CPU keeps
//! using it whatever software later writes into the tables, until INVLPG, a CR3 write (for
//! non-global entries) or a CR4.PGE toggle (for all) throws it away. This TLB never evicts
//! on its own, so every missing flush in the simulated kernel stays observable — a real
//! TLB may hide one by evicting the entry first, never the other way round.
//!
//! Entries are kept per page size in hash maps keyed by the linear page number at that
//! size, so a lookup is at most one probe per size the format can map. Global and
//! non-global entries live in separate maps, so a CR3 write costs what it drops, not what
//! the TLB holds. A large page is
//! one entry covering the whole large page, as INVLPG of any address inside it drops it.
//! Not-present translations are never cached (x86 does not), so making an entry present
//! needs no flush.

use crate::addr::PhysAddr;
use crate::mmu::{Perms, Translation};
use crate::paging::PageSize;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A cached translation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TlbEntry {
    /// First byte of the page frame (of the large page for large mappings).
    pub page_base: PhysAddr,
    pub size: PageSize,
    /// Effective rights as the walk found them.
    pub perms: Perms,
    /// Survives CR3 writes.
    pub global: bool,
    /// The leaf's D bit was set when cached: writes need no new walk.
    pub dirty: bool,
}

impl TlbEntry {
    /// The physical address for a linear address inside this entry's page.
    pub const fn phys(&self, linear: u64) -> PhysAddr {
        PhysAddr::new(self.page_base.as_u64() + (linear & (self.size.bytes() - 1)))
    }
}

impl From<Translation> for TlbEntry {
    fn from(t: Translation) -> Self {
        TlbEntry {
            page_base: t.page_base,
            size: t.size,
            perms: t.perms,
            global: t.global,
            dirty: t.dirty,
        }
    }
}

/// Multiplicative hash for page numbers (the std SipHash is far slower than needed here).
#[derive(Default, Clone, Copy)]
struct PageNumberHasher(u64);

impl Hasher for PageNumberHasher {
    fn finish(&self) -> u64 {
        self.0.rotate_left(26)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0xf135_7aea_2e62_a9c5);
    }
}

type PageMap = HashMap<u64, TlbEntry, BuildHasherDefault<PageNumberHasher>>;

/// Page sizes in lookup order (small pages are by far the most numerous).
const SIZES: [PageSize; 4] = [
    PageSize::Size4K,
    PageSize::Size2M,
    PageSize::Size4M,
    PageSize::Size1G,
];

const fn class(size: PageSize) -> usize {
    match size {
        PageSize::Size4K => 0,
        PageSize::Size2M => 1,
        PageSize::Size4M => 2,
        PageSize::Size1G => 3,
    }
}

/// One CPU's TLB.
#[derive(Debug, Default)]
pub struct Tlb {
    /// Non-global entries, per page size.
    local: [PageMap; 4],
    /// Global entries (G set and CR4.PGE on), per page size.
    global: [PageMap; 4],
}

impl Tlb {
    pub fn new() -> Self {
        Tlb::default()
    }

    fn probe(maps: &[PageMap; 4], linear: u64) -> Option<TlbEntry> {
        SIZES.iter().zip(maps).find_map(|(size, map)| {
            if map.is_empty() {
                None
            } else {
                map.get(&(linear >> size.shift())).copied()
            }
        })
    }

    /// The cached translation covering `linear`, if any.
    pub fn lookup(&self, linear: u64) -> Option<TlbEntry> {
        Self::probe(&self.local, linear).or_else(|| Self::probe(&self.global, linear))
    }

    /// Cache a translation for the page containing `linear`.
    pub fn insert(&mut self, linear: u64, entry: TlbEntry) {
        let c = class(entry.size);
        let key = linear >> entry.size.shift();
        let (to, other) = if entry.global {
            (&mut self.global, &mut self.local)
        } else {
            (&mut self.local, &mut self.global)
        };
        other[c].remove(&key);
        to[c].insert(key, entry);
    }

    /// Drop every entry covering `linear`, global or not, of any page size (INVLPG).
    /// Returns how many entries went.
    pub fn invalidate_page(&mut self, linear: u64) -> usize {
        let mut dropped = 0;
        for maps in [&mut self.local, &mut self.global] {
            for (size, map) in SIZES.iter().zip(maps.iter_mut()) {
                if !map.is_empty() && map.remove(&(linear >> size.shift())).is_some() {
                    dropped += 1;
                }
            }
        }
        dropped
    }

    /// Drop every non-global entry (CR3 write).
    pub fn flush_non_global(&mut self) {
        for map in &mut self.local {
            map.clear();
        }
    }

    /// Drop everything (CR4.PGE toggle, paging mode change).
    pub fn flush_all(&mut self) {
        for map in self.local.iter_mut().chain(self.global.iter_mut()) {
            map.clear();
        }
    }

    /// Number of cached translations.
    pub fn len(&self) -> usize {
        self.local
            .iter()
            .chain(&self.global)
            .map(HashMap::len)
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.local.iter().chain(&self.global).all(HashMap::is_empty)
    }

    /// Number of cached global translations.
    pub fn global_len(&self) -> usize {
        self.global.iter().map(HashMap::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(base: u64, size: PageSize, global: bool) -> TlbEntry {
        TlbEntry {
            page_base: PhysAddr::new(base),
            size,
            perms: Perms::ALL,
            global,
            dirty: false,
        }
    }

    #[test]
    fn lookup_by_page_size() {
        let mut t = Tlb::new();
        t.insert(0xc040_1234, entry(0x40_0000, PageSize::Size4M, true));
        t.insert(0x0804_8123, entry(0x12_3000, PageSize::Size4K, false));
        let e = t.lookup(0xc07f_ffff).unwrap();
        assert_eq!(e.phys(0xc07f_ffff), PhysAddr::new(0x7f_ffff));
        assert!(t.lookup(0xc080_0000).is_none());
        assert_eq!(
            t.lookup(0x0804_8fff).unwrap().phys(0x0804_8fff),
            PhysAddr::new(0x12_3fff)
        );
        assert!(t.lookup(0x0804_9000).is_none());
    }

    #[test]
    fn invalidation() {
        let mut t = Tlb::new();
        t.insert(0xc040_0000, entry(0x40_0000, PageSize::Size4M, true));
        t.insert(0x1000, entry(0x5000, PageSize::Size4K, false));
        t.insert(0x2000, entry(0x6000, PageSize::Size4K, true));
        assert_eq!((t.len(), t.global_len()), (3, 2));
        t.flush_non_global();
        assert_eq!(t.len(), 2);
        assert!(t.lookup(0x1000).is_none());
        // INVLPG anywhere inside the large page drops the whole entry
        assert_eq!(t.invalidate_page(0xc07f_f000), 1);
        assert!(t.lookup(0xc040_0000).is_none());
        assert_eq!(t.invalidate_page(0xc07f_f000), 0);
        t.flush_all();
        assert!(t.is_empty());
    }

    #[test]
    fn reinserting_with_other_globalness_keeps_one_entry() {
        let mut t = Tlb::new();
        t.insert(0xc000_0000, entry(0x1000, PageSize::Size4K, true));
        t.insert(0xc000_0000, entry(0x2000, PageSize::Size4K, false));
        assert_eq!(t.len(), 1);
        assert_eq!(t.global_len(), 0);
        assert_eq!(
            t.lookup(0xc000_0123).map(|e| e.page_base.as_u64()),
            Some(0x2000)
        );
        t.flush_non_global();
        assert!(t.is_empty());
    }
}
