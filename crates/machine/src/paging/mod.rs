//! Page-table entry formats, described as data.
//!
//! The MMU of a 32-bit PC understands two table formats — classic 2-level paging with 4-byte
//! entries and PAE's 3-level paging with 8-byte entries — and an x86-64 CPU adds 4-level
//! paging, kept here for comparison. Rather than baking one format's constants into the
//! walker, each format is a [`LEVELS`](Format::levels) table: entries per table, the
//! linear-address bits that index it, the entry size and whether an entry there may map a
//! page. One walker ([`crate::mmu`]) and one encoder ([`PageTableEntry`]) then serve all three.
//! Which bits the CPU insists on being zero lives in [`reserved`], because that depends on the
//! CPU model (MAXPHYADDR, PSE-36, NX) as well as on the format.

mod entry;
mod flags;
mod level;
pub mod reserved;

pub use entry::{EntryError, PageTableEntry};
pub use flags::PteFlags;
pub use level::{Format, Leaf, PageSize, PageTableLevel};
