//! Version (d) of the capture driver: pin a user buffer and build the SG list from the
//! pinned pages (`page_to_phys`, no `page_address`, so highmem pages are fine). As a 6.1
//! driver does for DMA, it uses `pin_user_pages(FOLL_WRITE)` and, once the transfer is
//! over, `unpin_user_pages`: while pinned, each page carries GUP_PIN_COUNTING_BIAS and
//! `page_maybe_dma_pinned` says so; after the unpin and the program's exit every page is
//! back in the allocator.
//!
//! A small process is started (the static binary's mappings, `mm/`), its program fills its
//! heap buffer with a pattern through user-mode stores on its CPU (demand faults, through
//! the MMU), and the driver pins the buffer. The list is right when every pinned page holds
//! what the program wrote at that offset — read back the way a kernel reaches a page it
//! holds (the direct map, or a kmap_local slot in high memory) — which is what the device
//! would see after the DMA.

use super::Outcome;
use crate::kernel::Kernel;
use machine::{Pfn, VirtAddr, PAGE_SIZE};

/// Whether this tree can pin user pages.
pub const GET_USER_PAGES_AVAILABLE: bool = true;

/// The CPU the capture program runs on.
const CPU: usize = 0;

/// (d): pin a user buffer of `npages` pages and check the list.
pub fn pin_user_buffer(k: &mut Kernel, npages: u64) -> Outcome {
    match run(k, npages) {
        Ok(o) => o,
        Err(e) => Outcome::Fault {
            report: e.clone(),
            culprit: format!("get_user_pages: {e}"),
        },
    }
}

fn pattern(i: u64) -> u32 {
    0xd3a0_0000 | i as u32
}

fn run(k: &mut Kernel, npages: u64) -> Result<Outcome, String> {
    let p = k
        .exec_process(CPU, "capture", 1)
        .map_err(|e| e.to_string())?;
    let heap =
        k.mm.proc(p)
            .mm
            .as_ref()
            .and_then(|m| m.vmas.iter().find(|v| v.heap).map(|v| (v.start, v.end)))
            .ok_or("the capture program has no heap")?;
    let n = npages.min((heap.1 - heap.0) / PAGE_SIZE);
    // The program fills its buffer: a user-mode store per page (faults on first touch).
    for i in 0..n {
        let va = heap.0 + i * PAGE_SIZE;
        k.user_access(CPU, p, va, true).map_err(|e| e.to_string())?;
        k.machine
            .write_virt_as(
                CPU,
                VirtAddr::new(va),
                &pattern(i).to_le_bytes(),
                machine::Privilege::User,
            )
            .map_err(|e| e.to_string())?;
    }
    let task = k.mm.proc(p).task;
    let pfns = k
        .pin_user_pages(task, heap.0, n as usize, true)
        .map_err(|e| e.to_string())?;
    if let Some(&pfn) = pfns.iter().find(|&&pfn| !k.page_maybe_dma_pinned(pfn)) {
        return Err(format!(
            "pin_user_pages: pfn {:#x} is not pinned",
            pfn.as_u64()
        ));
    }
    let outcome = check(k, heap.0, &pfns)?;
    // The DMA is over: unpin_user_pages_dirty_lock() (the model has no dirty tracking).
    k.unpin_user_pages(&pfns, CPU).map_err(|e| e.to_string())?;
    k.exit_process(CPU, p).map_err(|e| e.to_string())?;
    Ok(outcome)
}

/// Every pinned page holds the program's pattern for its offset.
fn check(k: &mut Kernel, base: u64, pfns: &[Pfn]) -> Result<Outcome, String> {
    for (i, &pfn) in pfns.iter().enumerate() {
        let mut b = [0u8; 4];
        k.read_page_kmap(pfn, CPU, &mut b)
            .map_err(|e| e.to_string())?;
        let got = u32::from_le_bytes(b);
        if got != pattern(i as u64) {
            return Ok(Outcome::WrongPage {
                index: i,
                va: base + i as u64 * PAGE_SIZE,
                got: pfn.phys().as_u64(),
                want: 0,
                culprit: format!(
                    "get_user_pages: pfn {:#x} holds {got:#010x}, the program wrote {:#010x}",
                    pfn.as_u64(),
                    pattern(i as u64)
                ),
            });
        }
    }
    Ok(Outcome::Right)
}
