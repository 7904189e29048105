//! Version (d) of the capture driver: pin a user buffer with `get_user_pages` and build the
//! SG list from the pinned pages (`page_to_phys`, no `page_address`, so highmem pages are
//! fine).
//!
//! User processes, their page tables and the fault path are built in another branch, which
//! provides `Kernel::get_user_pages(task, addr, npages, write) -> Result<Vec<Pfn>, _>`. Until
//! that is merged this tree has no user address space to pin, so (d) reports itself as not
//! available; nothing is simulated in its place. At the merge, [`pin_user_buffer`] becomes:
//! create a task, map and touch `npages` of anonymous memory, call
//! `get_user_pages(task, addr, npages, true)`, compare the pfns with the ones the task's page
//! tables map, and unpin.

use super::Outcome;
use crate::kernel::Kernel;

/// Whether this tree can pin user pages.
pub const GET_USER_PAGES_AVAILABLE: bool = false;

/// (d): pin a user buffer of `npages` pages and check the list.
pub fn pin_user_buffer(_k: &mut Kernel, npages: u64) -> Outcome {
    Outcome::NotAvailable {
        why: format!(
            "get_user_pages(task, addr, {npages}, write) needs user processes, which this \
             tree does not have yet (they come with the mm branch); (d) was not run"
        ),
    }
}
