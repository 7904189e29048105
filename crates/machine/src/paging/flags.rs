//! The flag bits of a page-table entry, at their hardware positions.
//!
//! The same low twelve bits mean the same thing in every x86 format, which is why Linux can
//! share `_PAGE_*` names between 2-level and PAE kernels. Two bits are context dependent:
//! bit 7 is PS ("this directory entry maps a large page") in a directory entry but PAT in a
//! 4 KiB PTE, and bit 12 is PAT for a large page but an address bit everywhere else. NX is
//! bit 63 and so exists only in the 8-byte formats.

use bitflags::bitflags;

bitflags! {
    /// Entry flags (`_PAGE_*` in Linux). Stored as `u64` so NX (bit 63) fits.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct PteFlags: u64 {
        /// P: the entry is valid.
        const PRESENT = 1 << 0;
        /// R/W: writes allowed (for supervisor writes only when CR0.WP=1).
        const WRITABLE = 1 << 1;
        /// U/S: user-mode accesses allowed.
        const USER = 1 << 2;
        /// Page-level write-through.
        const PWT = 1 << 3;
        /// Page-level cache disable.
        const PCD = 1 << 4;
        /// Set by the CPU whenever the entry is used for a translation.
        const ACCESSED = 1 << 5;
        /// Set by the CPU on a write through a leaf entry.
        const DIRTY = 1 << 6;
        /// PS in a directory entry: the entry maps a 4 MiB / 2 MiB / 1 GiB page.
        const PSE = 1 << 7;
        /// PAT index bit of a 4 KiB PTE (same bit as [`PteFlags::PSE`]).
        const PAT = 1 << 7;
        /// G: the translation survives CR3 writes when CR4.PGE=1 (leaf entries only).
        const GLOBAL = 1 << 8;
        /// Software bit 1 (Linux: `_PAGE_SPECIAL`).
        const SOFTW1 = 1 << 9;
        /// Software bit 2 (Linux: `_PAGE_UFFD_WP`).
        const SOFTW2 = 1 << 10;
        /// Software bit 3 (Linux: `_PAGE_SOFT_DIRTY`).
        const SOFTW3 = 1 << 11;
        /// PAT index bit of a large-page directory entry (an address bit elsewhere).
        const PAT_LARGE = 1 << 12;
        /// XD/NX: instruction fetches fault (PAE and 4-level, with EFER.NXE).
        const NX = 1 << 63;
    }
}

impl PteFlags {
    /// The bits that are flags in every entry of every format: 11:0.
    pub const LOW_MASK: u64 = 0xfff;
}
