//! The "virtual kernel memory layout:" block x86-32 `mem_init()` printed until Linux 5.6.
//!
//! 6.1 no longer prints it (it gave away addresses), but it is the clearest one-screen view
//! of where fixmap, the CPU entry area, pkmap, vmalloc and lowmem sit, so the model prints
//! it in the old format from the values of the 6.1 layout.

use super::Layout;

/// The block's lines, in the pre-5.7 format (`%4ld kB` / `%4ld MB` sizes).
pub fn virtual_layout_lines(layout: &Layout) -> Vec<String> {
    let kb = |name: &str, a: u64, b: u64| {
        format!(
            "{name} : 0x{a:08x} - 0x{b:08x}   ({:4} kB)",
            (b.wrapping_sub(a) & 0xffff_ffff) >> 10
        )
    };
    let mb = |name: &str, a: u64, b: u64| {
        format!(
            "{name} : 0x{a:08x} - 0x{b:08x}   ({:4} MB)",
            (b.wrapping_sub(a) & 0xffff_ffff) >> 20
        )
    };
    let v = &layout.areas;
    let img = &layout.image;
    let mut out = vec!["virtual kernel memory layout:".to_string()];
    out.push(kb("    fixmap ", v.fixaddr_start, v.fixmap.fixaddr_top));
    out.push(kb(
        "  cpu_entry",
        v.cpu_entry_area_base,
        v.cpu_entry_area_base + v.cpu_entry_area_map_size,
    ));
    if layout.has_highmem {
        out.push(kb("    pkmap  ", v.pkmap_base, v.pkmap_end()));
    }
    out.push(mb(
        "    vmalloc",
        layout.vmalloc_start.as_u64(),
        v.vmalloc_end,
    ));
    out.push(mb(
        "    lowmem ",
        layout.page_offset.as_u64(),
        layout.high_memory.as_u64(),
    ));
    out.push(kb("      .init", img.init_begin, img.init_end));
    out.push(kb("      .data", img.etext, img.edata));
    out.push(kb("      .text", img.text, img.etext));
    out
}
