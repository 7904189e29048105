//! Reserved bits: what the CPU insists is zero in a present entry.
//!
//! A present entry with a reserved bit set does not translate: the walk stops with a page
//! fault whose RSVD bit is set (or, for PAE's PDPTEs, the CR3 write itself raises #GP).
//! Which bits are reserved depends on the CPU as much as on the format — MAXPHYADDR decides
//! where the address field ends, PSE-36 how many high bits a 4 MiB page can carry, EFER.NXE
//! whether bit 63 is NX or reserved — so the rules take a [`ReservedCtx`].
//! 2-level paging checks almost nothing: only a 4 MiB PDE (with CR4.PSE) has reserved bits.

use super::level::{Format, PageTableLevel};

/// Bit 7, PS.
const PS: u64 = 1 << 7;
/// Bit 12, PAT of a large page (reserved without PAT support).
const PAT_LARGE: u64 = 1 << 12;
/// Bit 63, XD/NX (reserved unless EFER.NXE).
const NX: u64 = 1 << 63;

/// The CPU facts the reserved-bit rules depend on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReservedCtx {
    /// MAXPHYADDR: physical-address width of the CPU (36 on a PAE-era 32-bit CPU).
    pub phys_bits: u8,
    /// EFER.NXE: bit 63 of 8-byte entries is NX rather than reserved.
    pub nxe: bool,
    /// The CPU has PSE-36 (4 MiB pages above 4 GiB in 2-level paging).
    pub pse36: bool,
    /// The CPU has PAT (bit 12 of a large-page entry is PAT, not reserved).
    pub pat: bool,
    /// The CPU has 1 GiB pages (4-level PDPTE with PS).
    pub page1gb: bool,
}

/// Mask of bits `lo..=hi`.
const fn bits(hi: u32, lo: u32) -> u64 {
    if hi < lo {
        return 0;
    }
    let top = if hi >= 63 {
        u64::MAX
    } else {
        (1u64 << (hi + 1)) - 1
    };
    top & !((1u64 << lo) - 1)
}

/// Bits that must be zero in a present entry at `level`. `large` says whether the walker is
/// using the entry as a large-page mapping (PS set and, in 2-level paging, CR4.PSE).
pub fn reserved_bits(level: &PageTableLevel, large: bool, ctx: &ReservedCtx) -> u64 {
    let m = u32::from(ctx.phys_bits).min(52);
    let no_pat = if ctx.pat { 0 } else { PAT_LARGE };
    let no_nx = if ctx.nxe { 0 } else { NX };
    match level.format {
        Format::TwoLevel => {
            if !large {
                return 0;
            }
            // Bits 21:13 of a 4 MiB PDE: PSE-36 uses the low (M-32) of them for physical
            // bits M-1:32; bit 21 and whatever is left over are reserved.
            let m = if ctx.pse36 { m.min(40) } else { 32 };
            let used = bits(12 + (m.max(32) - 32), 13);
            (bits(21, 13) & !used) | no_pat
        }
        Format::Pae => {
            if level.depth == 0 {
                // PDPTE: only P, PWT, PCD and the address; bit 63 is reserved too.
                return bits(2, 1) | bits(8, 5) | bits(63, m);
            }
            let mut r = bits(62, m) | no_nx;
            if large {
                r |= bits(20, 13) | no_pat;
            }
            r
        }
        Format::FourLevel => {
            let mut r = bits(51, m) | no_nx;
            match (level.depth, large) {
                (0, _) => r |= PS,
                (1, true) if !ctx.page1gb => r |= PS,
                (1, true) => r |= bits(29, 13) | no_pat,
                (2, true) => r |= bits(20, 13) | no_pat,
                _ => {}
            }
            r
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const QEMU32: ReservedCtx = ReservedCtx {
        phys_bits: 36,
        nxe: true,
        pse36: true,
        pat: true,
        page1gb: false,
    };

    #[test]
    fn bit_ranges() {
        assert_eq!(bits(2, 1), 0b110);
        assert_eq!(bits(8, 5), 0x1e0);
        assert_eq!(bits(63, 36), 0xffff_fff0_0000_0000);
        assert_eq!(bits(62, 36), 0x7fff_fff0_0000_0000);
        assert_eq!(bits(12, 13), 0);
    }

    #[test]
    fn two_level_only_checks_4m_pages() {
        let [pgd, pte] = Format::TwoLevel.levels() else {
            panic!("2-level has two levels")
        };
        assert_eq!(reserved_bits(pgd, false, &QEMU32), 0);
        assert_eq!(reserved_bits(pte, false, &QEMU32), 0);
        // MAXPHYADDR 36: bits 16:13 are physical 35:32, bits 21:17 reserved
        assert_eq!(reserved_bits(pgd, true, &QEMU32), 0x003e_0000);
        let wide = ReservedCtx {
            phys_bits: 40,
            ..QEMU32
        };
        assert_eq!(reserved_bits(pgd, true, &wide), 1 << 21);
        let no36 = ReservedCtx {
            pse36: false,
            ..QEMU32
        };
        assert_eq!(reserved_bits(pgd, true, &no36), 0x003f_e000);
    }

    #[test]
    fn pae_masks() {
        let [pdpt, pmd, pte] = Format::Pae.levels() else {
            panic!("PAE has three levels")
        };
        assert_eq!(
            reserved_bits(pdpt, false, &QEMU32),
            0xffff_fff0_0000_01e6,
            "PDPTE: 2:1, 8:5, 63:36"
        );
        assert_eq!(reserved_bits(pte, false, &QEMU32), 0x7fff_fff0_0000_0000);
        let no_nx = ReservedCtx {
            nxe: false,
            ..QEMU32
        };
        assert_eq!(reserved_bits(pte, false, &no_nx), 0xffff_fff0_0000_0000);
        assert_eq!(
            reserved_bits(pmd, true, &QEMU32),
            0x7fff_fff0_0000_0000 | 0x001f_e000
        );
    }

    #[test]
    fn four_level_masks() {
        let [pml4, pud, pmd, _] = Format::FourLevel.levels() else {
            panic!("4-level has four levels")
        };
        let cpu = ReservedCtx {
            phys_bits: 40,
            page1gb: true,
            ..QEMU32
        };
        assert_eq!(reserved_bits(pml4, false, &cpu), bits(51, 40) | PS);
        assert_eq!(reserved_bits(pud, true, &cpu), bits(51, 40) | bits(29, 13));
        assert_eq!(reserved_bits(pmd, true, &cpu), bits(51, 40) | bits(20, 13));
        let no1g = ReservedCtx {
            page1gb: false,
            ..cpu
        };
        assert_ne!(reserved_bits(pud, true, &no1g) & PS, 0);
    }
}
