//! `alloc_large_system_hash` for the boot-time hash tables (mm/page_alloc.c).
//!
//! The dentry and inode caches size their hash tables from low memory at boot: one bucket per
//! 2^scale bytes of `nr_kernel_pages`, rounded up to a power of two and capped at 1/16 of all
//! memory. They are memblock allocations, so they count in the `Memory:` line's reserved figure.

use machine::PAGE_SIZE;

/// `alloc_large_system_hash` sizing for an early hash (dentry: scale 13, inode: scale 14).
/// Returns (entries, order, bytes).
pub fn large_system_hash(
    nr_kernel_pages: u64,
    nr_all_pages: u64,
    bucketsize: u64,
    scale: u32,
) -> (u64, u32, u64) {
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
    let order = bytes
        .div_ceil(PAGE_SIZE)
        .next_power_of_two()
        .trailing_zeros();
    (1 << log2, order, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

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
