//! The per-CPU vmstat thresholds (mm/vmstat.c), shown as `vm stats threshold` in zoneinfo.
//!
//! Zone counters are updated in per-CPU deltas that are folded into the zone only when they
//! exceed a threshold, so reads are cheap but approximate. The normal threshold grows with
//! the logarithm of the CPU count and of the zone size (in 128 MiB units), capped at 125;
//! while kswapd runs, a smaller pressure threshold keeps the total drift below the gap between
//! the min and low watermarks.

/// Thresholds never exceed this (the per-CPU deltas are `s8`).
pub const MAX_STAT_THRESHOLD: i32 = 125;

/// `fls()`: 1-based index of the most significant set bit, 0 for 0.
pub const fn fls(x: u32) -> u32 {
    u32::BITS - x.leading_zeros()
}

/// `calculate_normal_threshold()`: `2 * fls(cpus) * (1 + fls(managed >> 15))`, at most 125.
pub fn calculate_normal_threshold(managed_pages: u64, num_online_cpus: u32) -> i32 {
    // Zone size in 128 MiB units: managed >> (27 - PAGE_SHIFT), an int in the kernel.
    let mem = (managed_pages >> (27 - machine::PAGE_SHIFT)) as u32;
    let threshold = 2 * fls(num_online_cpus) * (1 + fls(mem));
    (threshold.min(MAX_STAT_THRESHOLD as u32)) as i32
}

/// `calculate_pressure_threshold()`: the low−min watermark gap shared among the online CPUs,
/// at least 1 and at most 125.
pub fn calculate_pressure_threshold(
    low_wmark_pages: u64,
    min_wmark_pages: u64,
    num_online_cpus: u32,
) -> i32 {
    let distance = low_wmark_pages.saturating_sub(min_wmark_pages);
    let per_cpu = distance / u64::from(num_online_cpus.max(1));
    per_cpu.clamp(1, MAX_STAT_THRESHOLD as u64) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fls_matches_kernel_definition() {
        assert_eq!(fls(0), 0);
        assert_eq!(fls(1), 1);
        assert_eq!(fls(2), 2);
        assert_eq!(fls(3), 2);
        assert_eq!(fls(0x8000_0000), 32);
    }

    /// Rows of the sample table in the comment above calculate_normal_threshold() (zone size
    /// taken from its `fls(mem)+1` column where the size column disagrees).
    #[test]
    fn sample_table() {
        const MIB128: u64 = 32768; // pages
        let rows: [(i32, u32, u64); 10] = [
            (8, 1, 7 * MIB128 + 1),   // 0.9-1 GB, 1 CPU
            (16, 2, 7 * MIB128 + 1),  // 0.9-1 GB, 2 CPUs
            (20, 2, 8 * MIB128 + 1),  // 1-2 GB
            (24, 2, 16 * MIB128 + 1), // 2-4 GB
            (28, 2, 32 * MIB128 + 1), // 4-8 GB
            (4, 2, MIB128 - 1),       // <128M
            (30, 4, 8 * MIB128 + 1),  // fls(mem)+1 = 5, 4 CPUs
            (10, 16, MIB128 - 1),     // <128M, 16 CPUs
            (70, 64, 8 * MIB128 + 1),
            (125, 1024, 64 * MIB128 + 1),
        ];
        for (want, cpus, managed) in rows {
            assert_eq!(
                calculate_normal_threshold(managed, cpus),
                want,
                "{cpus} cpus {managed}"
            );
        }
    }

    #[test]
    fn pressure_threshold_bounds() {
        assert_eq!(calculate_pressure_threshold(100, 100, 1), 1);
        assert_eq!(calculate_pressure_threshold(1100, 100, 4), 125);
        assert_eq!(calculate_pressure_threshold(300, 100, 4), 50);
    }
}
