//! /proc/slabinfo in 6.1's format (`mm/slab_common.c`: `print_slabinfo_header`, `cache_show`).
//!
//! SLUB has no tunables or shared arrays, so those columns are always 0; `active_slabs`
//! equals `num_slabs`, and free objects on CPU slabs count as active (only the node partial
//! lists are scanned). Caches are listed newest first, merged aliases not at all.

use crate::kernel::Kernel;
use crate::slab::SlabInfo;

/// The two header lines.
pub const SLABINFO_HEADER: &str = "slabinfo - version: 2.1\n# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : tunables <limit> <batchcount> <sharedfactor> : slabdata <active_slabs> <num_slabs> <sharedavail>\n";

/// One cache's line, without the newline.
pub fn format_slabinfo_line(s: &SlabInfo) -> String {
    format!(
        "{:<17} {:>6} {:>6} {:>6} {:>4} {:>4} : tunables {:>4} {:>4} {:>4} : slabdata {:>6} {:>6} {:>6}",
        s.name,
        s.active_objs,
        s.num_objs,
        s.objsize,
        s.objperslab,
        s.pagesperslab,
        0,
        0,
        0,
        s.active_slabs,
        s.num_slabs,
        0
    )
}

/// The whole file.
pub fn format_slabinfo(lines: &[SlabInfo]) -> String {
    let mut out = String::from(SLABINFO_HEADER);
    for l in lines {
        out.push_str(&format_slabinfo_line(l));
        out.push('\n');
    }
    out
}

/// Every live cache of a booted kernel, newest first.
pub fn slabinfo(k: &Kernel) -> Vec<SlabInfo> {
    k.slab
        .caches_newest_first()
        .filter_map(|(id, _)| k.slab.slabinfo(id))
        .collect()
}
