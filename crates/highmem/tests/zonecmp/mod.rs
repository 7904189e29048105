//! Zone-by-zone comparison of the model's /proc/zoneinfo with a real kernel's, shared by the
//! fidelity tests: watermarks with the lowmem reserve, and the per-CPU list limits.

use highmem::reference::ZoneinfoZone;
use kernel::procfs::ZoneinfoZone as ZoneSnapshot;

/// min/low/high and protection, or a line saying how they differ.
pub fn watermarks(tag: &str, mz: &ZoneSnapshot, rz: &ZoneinfoZone) -> Option<String> {
    let ours = (
        mz.min_wmark_pages(),
        mz.low_wmark_pages(),
        mz.high_wmark_pages(),
        mz.lowmem_reserve.to_vec(),
    );
    let real = (rz.min, rz.low, rz.high, rz.protection.clone());
    (ours != real).then(|| format!("{tag}: watermarks/protection model {ours:?} real {real:?}"))
}

/// (high, batch) of every CPU's pageset, or a line saying how they differ.
pub fn pcp(tag: &str, mz: &ZoneSnapshot, rz: &ZoneinfoZone) -> Option<String> {
    let ours: Vec<(i32, i32)> = mz.pagesets.iter().map(|p| (p.high, p.batch)).collect();
    let real: Vec<(i32, i32)> = rz.pagesets.iter().map(|p| (p.high, p.batch)).collect();
    (rz.populated() && ours != real).then(|| format!("{tag}: pcp model {ours:?} real {real:?}"))
}
