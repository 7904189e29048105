//! From the e820 table to memblock's memory list and the zone boundaries.
//!
//! `e820__memblock_setup` hands every usable range to memblock — except ranges whose end
//! does not fit `phys_addr_t`, which is 32 bits on a non-PAE kernel: that is why a 2-level
//! kernel never sees RAM above 4 GiB — and then trims partial pages. The zone limits come
//! from `zone_sizes_init` (DMA below 16 MiB, Normal up to `max_low_pfn`, HighMem up to
//! `max_pfn`), and `free_area_init` turns them into contiguous spans starting at the
//! lowest memblock pfn. Both are printed in the boot log exactly as here.

use crate::config::{KernelConfig, MAX_DMA_PFN};
use machine::e820::E820Type;
use machine::{Pfn, PAGE_SHIFT, PAGE_SIZE};

use super::e820::E820Table;

/// One memblock.memory region, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct MemRegion {
    pub base: u64,
    pub size: u64,
}

impl MemRegion {
    pub fn end(&self) -> u64 {
        self.base + self.size
    }
}

/// `e820__memblock_setup` followed by `memblock_trim_memory(PAGE_SIZE)`.
pub fn memblock_memory(table: &E820Table, cfg: &KernelConfig) -> Vec<MemRegion> {
    let limit = if cfg.phys_addr_bits() >= 64 {
        u64::MAX
    } else {
        (1u64 << cfg.phys_addr_bits()) - 1
    };
    let mut ranges: Vec<(u64, u64)> = table
        .entries()
        .iter()
        .filter(|e| e.kind == E820Type::Usable && e.size > 0 && e.end() <= limit)
        .map(|e| (e.addr.as_u64(), e.end()))
        .collect();
    // memblock_add keeps regions sorted and merges overlapping or touching ones.
    ranges.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::new();
    for (s, t) in ranges {
        match merged.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(t),
            _ => merged.push((s, t)),
        }
    }
    merged
        .into_iter()
        .filter_map(|(s, t)| {
            let start = s.div_ceil(PAGE_SIZE) * PAGE_SIZE;
            let end = t / PAGE_SIZE * PAGE_SIZE;
            (start < end).then_some(MemRegion {
                base: start,
                size: end - start,
            })
        })
        .collect()
}

/// `for_each_mem_pfn_range`: the pfn ranges of the regions (start rounded up, end down).
pub fn node_pfn_ranges(memory: &[MemRegion]) -> Vec<(Pfn, Pfn)> {
    memory
        .iter()
        .filter_map(|r| {
            let start = r.base.div_ceil(PAGE_SIZE);
            let end = r.end() >> PAGE_SHIFT;
            (start < end).then_some((Pfn::new(start), Pfn::new(end)))
        })
        .collect()
}

/// One zone's possible pfn span (`arch_zone_lowest/highest_possible_pfn`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ZoneSpan {
    pub name: &'static str,
    pub start: Pfn,
    pub end: Pfn,
}

impl ZoneSpan {
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// The boot-log line: `  %-8s [mem %#018Lx-%#018Lx]` or `empty`.
    pub fn log_line(&self) -> String {
        if self.is_empty() {
            format!("  {:<8} empty", self.name)
        } else {
            format!(
                "  {:<8} [mem {:#018x}-{:#018x}]",
                self.name,
                self.start.as_u64() << PAGE_SHIFT,
                (self.end.as_u64() << PAGE_SHIFT) - 1
            )
        }
    }
}

/// `zone_sizes_init` + the span computation of `free_area_init` (ZONE_MOVABLE, which only
/// `kernelcore=`/`movablecore=` create, is not listed, as the kernel skips it too).
pub fn zone_spans(
    cfg: &KernelConfig,
    lowest_pfn: u64,
    max_low_pfn: u64,
    max_pfn: u64,
) -> Vec<ZoneSpan> {
    let mut limits = vec![
        ("DMA", MAX_DMA_PFN.min(max_low_pfn)),
        ("Normal", max_low_pfn),
    ];
    if cfg.has_highmem() {
        limits.push(("HighMem", max_pfn));
    }
    let mut start = lowest_pfn;
    limits
        .into_iter()
        .map(|(name, limit)| {
            let end = limit.max(start);
            let span = ZoneSpan {
                name,
                start: Pfn::new(start),
                end: Pfn::new(end),
            };
            start = end;
            span
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use machine::e820::E820Map;

    fn trimmed(ram: u64) -> E820Table {
        let mut t = E820Table::from_firmware(&E820Map::qemu_pc(ram).unwrap());
        t.range_update(0, 4096, E820Type::Usable, E820Type::Reserved);
        t.range_remove(0xa_0000, 0x6_0000, Some(E820Type::Usable));
        t.update();
        t
    }

    #[test]
    fn non_pae_memblock_stops_below_4g() {
        let np = KernelConfig::preset("debian-686").unwrap();
        let pae = KernelConfig::preset("debian-686-pae").unwrap();
        let t = trimmed(8 << 30);
        let a = node_pfn_ranges(&memblock_memory(&t, &np));
        let b = node_pfn_ranges(&memblock_memory(&t, &pae));
        assert_eq!(a.len(), 2);
        assert_eq!(b.len(), 3);
        assert_eq!(a[0], (Pfn::new(1), Pfn::new(0x9f)));
        assert_eq!(b[2], (Pfn::new(0x10_0000), Pfn::new(0x24_0000)));
    }

    #[test]
    fn zones_and_empty_highmem() {
        let cfg = KernelConfig::preset("debian-686-pae").unwrap();
        let z = zone_spans(&cfg, 1, 0x1ffe0, 0x1ffe0);
        assert_eq!(
            z[0].log_line(),
            "  DMA      [mem 0x0000000000001000-0x0000000000ffffff]"
        );
        assert_eq!(
            z[1].log_line(),
            "  Normal   [mem 0x0000000001000000-0x000000001ffdffff]"
        );
        assert_eq!(z[2].log_line(), "  HighMem  empty");
        // Less than 16 MiB of lowmem leaves Normal empty.
        let z = zone_spans(&cfg, 1, 0xe00, 0x2000);
        assert_eq!(z[1].log_line(), "  Normal   empty");
        assert_eq!(z[2].start, Pfn::new(0xe00));
    }
}
