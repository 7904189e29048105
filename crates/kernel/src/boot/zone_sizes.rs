//! Zone sizing at boot (`free_area_init`, `calculate_node_totalpages`, `free_area_init_core`).
//!
//! Each zone spans from the previous zone's end (the first from the lowest RAM pfn) to its
//! `max_zone_pfn`; `present` subtracts the holes memblock knows about. Before any page is
//! freed the kernel guesses `managed` as present minus the zone's own mem_map (low zones
//! only: highmem's mem_map lives in low memory), and the zonelist message's "Total pages"
//! is the sum of those guesses — which is why it differs from the final MemTotal.

use machine::PAGE_SIZE;

/// Sizes of one zone as free_area_init computes them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ZoneSize {
    pub start_pfn: u64,
    pub spanned: u64,
    pub present: u64,
    /// free_area_init_core's estimate of managed pages ("freesize").
    pub managed_estimate: u64,
}

impl ZoneSize {
    pub fn end_pfn(&self) -> u64 {
        self.start_pfn + self.spanned
    }
}

/// `calc_memmap_size` for FLATMEM: pages of mem_map a zone of `spanned` pages needs.
pub fn calc_memmap_pages(spanned: u64, sizeof_page: u64) -> u64 {
    (spanned * sizeof_page).div_ceil(PAGE_SIZE)
}

/// Pages of `[start, end)` covered by the RAM ranges.
fn present_in(ranges: &[(u64, u64)], start: u64, end: u64) -> u64 {
    ranges
        .iter()
        .map(|&(s, e)| {
            let lo = s.max(start);
            let hi = e.min(end);
            hi.saturating_sub(lo)
        })
        .sum()
}

/// Compute zone sizes. `ram` are memblock's memory ranges in pfns (ascending), `max_zone_pfn`
/// the upper bound of each zone (DMA, Normal, HighMem, Movable).
pub fn zone_sizes(
    ram: &[(u64, u64)],
    max_zone_pfn: [u64; 4],
    highmem_zones: [bool; 4],
    sizeof_page: u64,
) -> [ZoneSize; 4] {
    let mut out = [ZoneSize::default(); 4];
    let mut start = ram.first().map(|r| r.0).unwrap_or(0);
    for (i, z) in out.iter_mut().enumerate() {
        let end = max_zone_pfn[i].max(start);
        let (zs, ze) = if i == 3 {
            // ZONE_MOVABLE stays empty without kernelcore=/movablecore=.
            (0, 0)
        } else {
            (start, end)
        };
        let spanned = ze - zs;
        let present = present_in(ram, zs, ze);
        let mut freesize = present;
        if !highmem_zones[i] {
            let memmap = calc_memmap_pages(spanned, sizeof_page);
            if freesize >= memmap {
                freesize -= memmap;
            }
        }
        *z = ZoneSize {
            start_pfn: if spanned == 0 { 0 } else { zs },
            spanned,
            present,
            managed_estimate: freesize,
        };
        if i != 3 {
            start = end;
        }
    }
    out
}

/// The `On node 0, zone X: N pages in unavailable ranges` counts, in the order memmap_init
/// prints them: (zone index, pages).
pub fn unavailable_ranges(ram: &[(u64, u64)], zones: &[ZoneSize; 4]) -> Vec<(usize, u64)> {
    let mut out = Vec::new();
    let mut hole = 0u64;
    let mut last_zone = 0usize;
    for &(s, e) in ram {
        for (j, z) in zones.iter().enumerate() {
            if z.present == 0 {
                continue;
            }
            let lo = s.clamp(z.start_pfn, z.end_pfn());
            let hi = e.clamp(z.start_pfn, z.end_pfn());
            last_zone = j;
            if lo >= hi {
                continue;
            }
            if hole < lo {
                out.push((j, lo - hole));
            }
            hole = hi;
        }
    }
    // FLATMEM: whatever follows the last range up to the node end is a hole too.
    let node_end = zones.iter().map(|z| z.end_pfn()).max().unwrap_or(0);
    if hole < node_end {
        out.push((last_zone, node_end - hole));
    }
    out
}

/// `alloc_large_system_hash` sizing for an early hash (dentry: scale 13, inode: scale 14).
/// Returns (entries, order, bytes).
pub fn large_system_hash(nr_kernel_pages: u64, nr_all_pages: u64, bucketsize: u64, scale: u32) -> (u64, u32, u64) {
    let mut n = nr_kernel_pages.div_ceil(256) * 256; // round to 1 MiB of pages
    if scale > 12 {
        n >>= scale - 12;
    } else {
        n <<= 12 - scale;
    }
    if n * bucketsize < PAGE_SIZE {
        n = PAGE_SIZE / bucketsize;
    }
    n = n.next_power_of_two();
    let max = ((nr_all_pages * PAGE_SIZE) >> 4) / bucketsize;
    let max = max.min(0x8000_0000);
    if n > max {
        n = max;
    }
    let log2 = 63 - n.max(1).leading_zeros();
    let bytes = bucketsize << log2;
    let order = bytes.div_ceil(PAGE_SIZE).next_power_of_two().trailing_zeros();
    (1 << log2, order, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    // A 4 GiB pc machine: RAM at [1,0x9f), [0x100,0xbffe0), [0x100000,0x140000).
    fn ram() -> Vec<(u64, u64)> {
        vec![(1, 0x9f), (0x100, 0xbffe0), (0x100000, 0x140000)]
    }

    #[test]
    fn spanned_present_and_estimate() {
        let z = zone_sizes(&ram(), [0x1000, 0x36ffe, 0x140000, 0], [false, false, true, true], 40);
        assert_eq!(z[0].start_pfn, 1);
        assert_eq!(z[0].spanned, 0x1000 - 1);
        assert_eq!(z[0].present, 0x9f - 1 + 0x1000 - 0x100);
        assert_eq!(z[0].managed_estimate, z[0].present - calc_memmap_pages(0xfff, 40));
        assert_eq!(z[2].managed_estimate, z[2].present);
        assert_eq!(z[3].spanned, 0);
    }

    #[test]
    fn holes_are_reported_per_zone() {
        let z = zone_sizes(&ram(), [0x1000, 0x36ffe, 0x140000, 0], [false, false, true, true], 40);
        let u = unavailable_ranges(&ram(), &z);
        assert_eq!(u, vec![(0, 1), (0, 0x100 - 0x9f), (2, 0x100000 - 0xbffe0)]);
    }

    #[test]
    fn hash_sizes() {
        // 1 bucket per 8 KiB of low memory, rounded up to a power of two.
        let (n, order, bytes) = large_system_hash(222_980, 1_046_246, 4, 13);
        assert_eq!(n, 131_072);
        assert_eq!(bytes, 524_288);
        assert_eq!(order, 7);
        let (n, order, _) = large_system_hash(222_980, 1_046_246, 4, 14);
        assert_eq!((n, order), (65_536, 6));
    }
}
