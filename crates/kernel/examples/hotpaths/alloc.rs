//! The allocator paths: order-0 alloc + free through the pcp lists of a booted 1 GiB PAE
//! machine, and the same sequence on the `buddy_system_allocator` crate as a yardstick.
//!
//! Both keep a ring of [`WINDOW`] live pages: each operation allocates one page and frees
//! the oldest live one, so the pcp list turns over instead of handing back the same page.
//! The ring is filled during setup, which the `(I(2N) - I(N)) / N` difference cancels.

use buddy_system_allocator::FrameAllocator;
use kernel::config::KernelConfig;
use kernel::gfp::GFP_HIGHUSER_MOVABLE;
use kernel::{boot, BootOptions};
use machine::Pfn;

/// Live pages kept by both sequences.
const WINDOW: usize = 16;

/// Run `n` operations of `path`; returns a value derived from the results so the
/// optimiser cannot drop the work.
pub fn run(path: &str, n: u64) -> Result<u64, String> {
    match path {
        "pcp-order0" => pcp_order0(n),
        "buddy-yardstick" => buddy_yardstick(n),
        _ => Err(format!("{path}: not an allocator path")),
    }
}

fn pcp_order0(n: u64) -> Result<u64, String> {
    let cfg = KernelConfig::preset("debian-686-pae").map_err(|e| e.to_string())?;
    let mut k = boot(&BootOptions::new(1 << 30, 1, cfg)).map_err(|e| e.to_string())?;
    let pg = &mut k.node;
    let mut ring = [Pfn::new(0); WINDOW];
    for slot in &mut ring {
        *slot = pg
            .alloc_pages(GFP_HIGHUSER_MOVABLE, 0, 0)
            .map_err(|e| e.to_string())?
            .pfn;
    }
    let mut check = 0u64;
    let mut left = n;
    while left > 0 {
        let k = left.min(WINDOW as u64);
        for slot in &mut ring[..k as usize] {
            let a = pg
                .alloc_pages(GFP_HIGHUSER_MOVABLE, 0, 0)
                .map_err(|e| e.to_string())?;
            pg.__free_pages(*slot, 0, 0).map_err(|e| e.to_string())?;
            *slot = a.pfn;
            check = check.wrapping_add(a.pfn.as_u64());
        }
        left -= k;
    }
    Ok(check)
}

fn buddy_yardstick(n: u64) -> Result<u64, String> {
    // The same pfn ranges a 1 GiB PAE machine frees at boot (below and above the BIOS hole).
    let mut fa = FrameAllocator::<32>::new();
    fa.add_frame(1, 159);
    fa.add_frame(256, 262_144);
    let mut ring = [0usize; WINDOW];
    for slot in &mut ring {
        *slot = fa.alloc(1).ok_or("frame allocator: out of frames")?;
    }
    let mut check = 0u64;
    let mut left = n;
    while left > 0 {
        let k = left.min(WINDOW as u64);
        for slot in &mut ring[..k as usize] {
            let f = fa.alloc(1).ok_or("frame allocator: out of frames")?;
            fa.dealloc(*slot, 1);
            *slot = f;
            check = check.wrapping_add(f as u64);
        }
        left -= k;
    }
    Ok(check)
}
