//! GFP ("get free pages") flags (`include/linux/gfp_types.h`, `gfp.h`, `mm/internal.h`).
//!
//! A gfp mask says three things about an allocation: which zones may satisfy it (the low four
//! bits, mapped through `GFP_ZONE_TABLE`), what mobility class the pages belong to (MOVABLE /
//! RECLAIMABLE, which selects the free lists), and how hard the allocator may try (reclaim,
//! reserves, warnings). This module holds the v6.1 bit values, the composite masks, the
//! derived zone and migratetype, the `ALLOC_*` flags of the slow path, and the kernel's `%pGg`
//! rendering used in allocation-failure reports.

use core::fmt::Write as _;

use bitflags::bitflags;

use crate::mmzone::{MigrateType, WMark, ZoneType};

bitflags! {
    /// A gfp mask (`gfp_t`). Bit values of v6.1 (`___GFP_*`); the KASAN and LOCKDEP bits are 0
    /// in the reference configuration.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct Gfp: u32 {
        const DMA = 0x01;
        const HIGHMEM = 0x02;
        const DMA32 = 0x04;
        const MOVABLE = 0x08;
        const RECLAIMABLE = 0x10;
        const HIGH = 0x20;
        const IO = 0x40;
        const FS = 0x80;
        const ZERO = 0x100;
        const ATOMIC = 0x200;
        const DIRECT_RECLAIM = 0x400;
        const KSWAPD_RECLAIM = 0x800;
        const WRITE = 0x1000;
        const NOWARN = 0x2000;
        const RETRY_MAYFAIL = 0x4000;
        const NOFAIL = 0x8000;
        const NORETRY = 0x10000;
        const MEMALLOC = 0x20000;
        const COMP = 0x40000;
        const NOMEMALLOC = 0x80000;
        const HARDWALL = 0x100000;
        const THISNODE = 0x200000;
        const ACCOUNT = 0x400000;
        const ZEROTAGS = 0x800000;
    }
}

pub const __GFP_DMA: Gfp = Gfp::DMA;
pub const __GFP_HIGHMEM: Gfp = Gfp::HIGHMEM;
pub const __GFP_DMA32: Gfp = Gfp::DMA32;
pub const __GFP_MOVABLE: Gfp = Gfp::MOVABLE;
pub const __GFP_RECLAIMABLE: Gfp = Gfp::RECLAIMABLE;
pub const __GFP_HIGH: Gfp = Gfp::HIGH;
pub const __GFP_IO: Gfp = Gfp::IO;
pub const __GFP_FS: Gfp = Gfp::FS;
pub const __GFP_ZERO: Gfp = Gfp::ZERO;
pub const __GFP_ATOMIC: Gfp = Gfp::ATOMIC;
pub const __GFP_DIRECT_RECLAIM: Gfp = Gfp::DIRECT_RECLAIM;
pub const __GFP_KSWAPD_RECLAIM: Gfp = Gfp::KSWAPD_RECLAIM;
pub const __GFP_WRITE: Gfp = Gfp::WRITE;
pub const __GFP_NOWARN: Gfp = Gfp::NOWARN;
pub const __GFP_RETRY_MAYFAIL: Gfp = Gfp::RETRY_MAYFAIL;
pub const __GFP_NOFAIL: Gfp = Gfp::NOFAIL;
pub const __GFP_NORETRY: Gfp = Gfp::NORETRY;
pub const __GFP_MEMALLOC: Gfp = Gfp::MEMALLOC;
pub const __GFP_COMP: Gfp = Gfp::COMP;
pub const __GFP_NOMEMALLOC: Gfp = Gfp::NOMEMALLOC;
pub const __GFP_HARDWALL: Gfp = Gfp::HARDWALL;
pub const __GFP_THISNODE: Gfp = Gfp::THISNODE;
pub const __GFP_ACCOUNT: Gfp = Gfp::ACCOUNT;
pub const __GFP_ZEROTAGS: Gfp = Gfp::ZEROTAGS;

const fn or(a: Gfp, b: Gfp) -> Gfp {
    Gfp::from_bits_retain(a.bits() | b.bits())
}

/// `__GFP_RECLAIM`.
pub const __GFP_RECLAIM: Gfp = or(Gfp::DIRECT_RECLAIM, Gfp::KSWAPD_RECLAIM);
/// `GFP_ATOMIC`.
pub const GFP_ATOMIC: Gfp = or(or(Gfp::HIGH, Gfp::ATOMIC), Gfp::KSWAPD_RECLAIM);
/// `GFP_KERNEL`.
pub const GFP_KERNEL: Gfp = or(or(__GFP_RECLAIM, Gfp::IO), Gfp::FS);
/// `GFP_KERNEL_ACCOUNT`.
pub const GFP_KERNEL_ACCOUNT: Gfp = or(GFP_KERNEL, Gfp::ACCOUNT);
/// `GFP_NOWAIT`.
pub const GFP_NOWAIT: Gfp = Gfp::KSWAPD_RECLAIM;
/// `GFP_NOIO`.
pub const GFP_NOIO: Gfp = __GFP_RECLAIM;
/// `GFP_NOFS`.
pub const GFP_NOFS: Gfp = or(__GFP_RECLAIM, Gfp::IO);
/// `GFP_USER`.
pub const GFP_USER: Gfp = or(GFP_KERNEL, Gfp::HARDWALL);
/// `GFP_DMA`.
pub const GFP_DMA: Gfp = Gfp::DMA;
/// `GFP_DMA32`.
pub const GFP_DMA32: Gfp = Gfp::DMA32;
/// `GFP_HIGHUSER`.
pub const GFP_HIGHUSER: Gfp = or(GFP_USER, Gfp::HIGHMEM);
/// `GFP_HIGHUSER_MOVABLE` (the KASAN skip bits are 0 here).
pub const GFP_HIGHUSER_MOVABLE: Gfp = or(GFP_HIGHUSER, Gfp::MOVABLE);
/// `GFP_TRANSHUGE_LIGHT`.
pub const GFP_TRANSHUGE_LIGHT: Gfp = Gfp::from_bits_retain(
    (GFP_HIGHUSER_MOVABLE.bits() | Gfp::COMP.bits() | Gfp::NOMEMALLOC.bits() | Gfp::NOWARN.bits())
        & !__GFP_RECLAIM.bits(),
);
/// `GFP_TRANSHUGE`.
pub const GFP_TRANSHUGE: Gfp = or(GFP_TRANSHUGE_LIGHT, Gfp::DIRECT_RECLAIM);
/// `GFP_PGTABLE_KERNEL` (asm-generic/pgalloc.h).
pub const GFP_PGTABLE_KERNEL: Gfp = or(GFP_KERNEL, Gfp::ZERO);
/// `GFP_PGTABLE_USER`.
pub const GFP_PGTABLE_USER: Gfp = or(GFP_PGTABLE_KERNEL, Gfp::ACCOUNT);
/// `GFP_ZONEMASK`.
pub const GFP_ZONEMASK: Gfp = Gfp::from_bits_retain(
    Gfp::DMA.bits() | Gfp::HIGHMEM.bits() | Gfp::DMA32.bits() | Gfp::MOVABLE.bits(),
);
/// `GFP_MOVABLE_MASK`.
pub const GFP_MOVABLE_MASK: Gfp = or(Gfp::RECLAIMABLE, Gfp::MOVABLE);
/// `GFP_MOVABLE_SHIFT`.
pub const GFP_MOVABLE_SHIFT: u32 = 3;
/// `__GFP_BITS_SHIFT` (no LOCKDEP).
pub const __GFP_BITS_SHIFT: u32 = 27;
/// `__GFP_BITS_MASK`: what `gfp_allowed_mask` becomes once interrupts are enabled.
pub const __GFP_BITS_MASK: Gfp = Gfp::from_bits_retain((1 << __GFP_BITS_SHIFT) - 1);
/// `GFP_BOOT_MASK`: early boot allocations may not reclaim or do I/O.
pub const GFP_BOOT_MASK: Gfp = Gfp::from_bits_retain(
    __GFP_BITS_MASK.bits() & !(__GFP_RECLAIM.bits() | Gfp::IO.bits() | Gfp::FS.bits()),
);

/// `GFP_ZONES_SHIFT` (= ZONES_SHIFT, 2 on i386).
const GFP_ZONES_SHIFT: u32 = 2;

const fn zt(bits: u32, zone: ZoneType) -> u32 {
    (zone as u32) << (bits * GFP_ZONES_SHIFT)
}

/// `GFP_ZONE_TABLE` for i386: OPT_ZONE_DMA = DMA, OPT_ZONE_HIGHMEM = HighMem, and
/// OPT_ZONE_DMA32 = Normal because there is no ZONE_DMA32 on 32-bit.
pub(crate) const GFP_ZONE_TABLE: u32 = zt(0x0, ZoneType::Normal)
    | zt(0x1, ZoneType::Dma)
    | zt(0x2, ZoneType::HighMem)
    | zt(0x4, ZoneType::Normal)
    | zt(0x8, ZoneType::Normal)
    | zt(0x9, ZoneType::Dma)
    | zt(0xa, ZoneType::Movable)
    | zt(0xc, ZoneType::Normal);

/// `GFP_ZONE_TABLE` for x86_64, in the model's zone numbers ([`crate::mmzone::ZoneModel`]):
/// OPT_ZONE_HIGHMEM is ZONE_NORMAL (number 2), OPT_ZONE_DMA32 is ZONE_DMA32 (number 1).
pub(crate) const GFP_ZONE_TABLE_64: u32 = zt(0x0, ZoneType::HighMem)
    | zt(0x1, ZoneType::Dma)
    | zt(0x2, ZoneType::HighMem)
    | zt(0x4, ZoneType::Normal)
    | zt(0x8, ZoneType::HighMem)
    | zt(0x9, ZoneType::Dma)
    | zt(0xa, ZoneType::Movable)
    | zt(0xc, ZoneType::Normal);

/// `GFP_ZONE_BAD`: zone-bit combinations that make no sense.
const GFP_ZONE_BAD: u32 = (1 << 0x3)
    | (1 << 0x5)
    | (1 << 0x6)
    | (1 << 0x7)
    | (1 << 0xb)
    | (1 << 0xd)
    | (1 << 0xe)
    | (1 << 0xf);

/// `gfp_zone()` of i386: the highest zone the mask may use. Bad combinations read whatever the table
/// holds for them (DMA), as on a kernel without DEBUG_VM.
pub fn gfp_zone(gfp: Gfp) -> ZoneType {
    gfp_zone_in(GFP_ZONE_TABLE, gfp)
}

/// `gfp_zone()` with a given `GFP_ZONE_TABLE` (the node's architecture).
#[inline(always)]
pub fn gfp_zone_in(table: u32, gfp: Gfp) -> ZoneType {
    let bit = gfp.bits() & GFP_ZONEMASK.bits();
    ZoneType::from_index(((table >> (bit * GFP_ZONES_SHIFT)) & 3) as usize)
}

/// True when the zone bits form a combination `GFP_ZONE_BAD` rejects (a VM_BUG_ON with
/// DEBUG_VM).
pub fn gfp_zone_is_bad(gfp: Gfp) -> bool {
    let bit = gfp.bits() & GFP_ZONEMASK.bits();
    (GFP_ZONE_BAD >> bit) & 1 == 1
}

/// `gfp_migratetype()`: MOVABLE and RECLAIMABLE select the free lists; both at once read as
/// 3 (HighAtomic), exactly as the kernel's shift does (it only warns under DEBUG_VM).
pub fn gfp_migratetype(gfp: Gfp, page_group_by_mobility_disabled: bool) -> MigrateType {
    if page_group_by_mobility_disabled {
        return MigrateType::Unmovable;
    }
    MigrateType::from_index(((gfp.bits() & GFP_MOVABLE_MASK.bits()) >> GFP_MOVABLE_SHIFT) as usize)
}

/// `gfpflags_allow_blocking()`.
pub fn gfpflags_allow_blocking(gfp: Gfp) -> bool {
    gfp.contains(Gfp::DIRECT_RECLAIM)
}

bitflags! {
    /// `ALLOC_*` flags (`mm/internal.h`, 6.1.y after the reserve-access rework that split
    /// ALLOC_HARDER into NON_BLOCK / MIN_RESERVE / HIGHATOMIC). The low two bits select the
    /// watermark; `ALLOC_WMARK_MIN` is their zero value. ALLOC_NOFRAGMENT is 0 without
    /// ZONE_DMA32 and therefore absent.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct AllocFlags: u32 {
        const WMARK_LOW = 0x1;
        const WMARK_HIGH = 0x2;
        const NO_WATERMARKS = 0x4;
        const OOM = 0x8;
        const NON_BLOCK = 0x10;
        const MIN_RESERVE = 0x20;
        const CPUSET = 0x40;
        const CMA = 0x80;
        const HIGHATOMIC = 0x200;
        const KSWAPD = 0x800;
    }
}

/// `ALLOC_WMARK_MIN`.
pub const ALLOC_WMARK_MIN: AllocFlags = AllocFlags::empty();
/// `ALLOC_WMARK_MASK`.
pub const ALLOC_WMARK_MASK: u32 = 0x3;
/// `ALLOC_RESERVES`: flags that allow dipping below the min watermark.
pub const ALLOC_RESERVES: AllocFlags = AllocFlags::from_bits_retain(
    AllocFlags::NON_BLOCK.bits()
        | AllocFlags::MIN_RESERVE.bits()
        | AllocFlags::HIGHATOMIC.bits()
        | AllocFlags::OOM.bits(),
);

impl AllocFlags {
    /// The watermark the flags select (`alloc_flags & ALLOC_WMARK_MASK`).
    pub fn wmark(self) -> WMark {
        match self.bits() & ALLOC_WMARK_MASK {
            0 => WMark::Min,
            1 => WMark::Low,
            2 => WMark::High,
            _ => WMark::Promo,
        }
    }
    /// Replace the watermark selection.
    pub fn with_wmark(self, w: WMark) -> AllocFlags {
        AllocFlags::from_bits_retain((self.bits() & !ALLOC_WMARK_MASK) | w as u32)
    }
}

/// `gfp_to_alloc_flags()` of the slow path. A realtime caller would also get MIN_RESERVE;
/// the model has no scheduling classes.
pub fn gfp_to_alloc_flags(gfp: Gfp, order: u32) -> AllocFlags {
    let mut f = ALLOC_WMARK_MIN | AllocFlags::CPUSET;
    // __GFP_HIGH is ALLOC_MIN_RESERVE and __GFP_KSWAPD_RECLAIM is ALLOC_KSWAPD, bit for bit.
    if gfp.contains(Gfp::HIGH) {
        f |= AllocFlags::MIN_RESERVE;
    }
    if gfp.contains(Gfp::KSWAPD_RECLAIM) {
        f |= AllocFlags::KSWAPD;
    }
    if !gfp.contains(Gfp::DIRECT_RECLAIM) {
        if !gfp.contains(Gfp::NOMEMALLOC) {
            f |= AllocFlags::NON_BLOCK;
            if order > 0 {
                f |= AllocFlags::HIGHATOMIC;
            }
        }
        if f.contains(AllocFlags::MIN_RESERVE) {
            f.remove(AllocFlags::CPUSET);
        }
    }
    f
}

/// `__gfp_pfmemalloc_flags()` for a task that is neither PF_MEMALLOC nor an OOM victim.
pub fn gfp_pfmemalloc_flags(gfp: Gfp) -> AllocFlags {
    if gfp.contains(Gfp::NOMEMALLOC) {
        return AllocFlags::empty();
    }
    if gfp.contains(Gfp::MEMALLOC) {
        return AllocFlags::NO_WATERMARKS;
    }
    AllocFlags::empty()
}

/// `__def_gfpflag_names` of v6.1 (include/trace/events/mmflags.h): composite names first,
/// so the longest match wins, then the single bits.
const GFPFLAG_NAMES: &[(Gfp, &str)] = &[
    (GFP_TRANSHUGE, "GFP_TRANSHUGE"),
    (GFP_TRANSHUGE_LIGHT, "GFP_TRANSHUGE_LIGHT"),
    (GFP_HIGHUSER_MOVABLE, "GFP_HIGHUSER_MOVABLE"),
    (GFP_HIGHUSER, "GFP_HIGHUSER"),
    (GFP_USER, "GFP_USER"),
    (GFP_KERNEL_ACCOUNT, "GFP_KERNEL_ACCOUNT"),
    (GFP_KERNEL, "GFP_KERNEL"),
    (GFP_NOFS, "GFP_NOFS"),
    (GFP_ATOMIC, "GFP_ATOMIC"),
    (GFP_NOIO, "GFP_NOIO"),
    (GFP_NOWAIT, "GFP_NOWAIT"),
    (GFP_DMA, "GFP_DMA"),
    (__GFP_HIGHMEM, "__GFP_HIGHMEM"),
    (GFP_DMA32, "GFP_DMA32"),
    (__GFP_HIGH, "__GFP_HIGH"),
    (__GFP_ATOMIC, "__GFP_ATOMIC"),
    (__GFP_IO, "__GFP_IO"),
    (__GFP_FS, "__GFP_FS"),
    (__GFP_NOWARN, "__GFP_NOWARN"),
    (__GFP_RETRY_MAYFAIL, "__GFP_RETRY_MAYFAIL"),
    (__GFP_NOFAIL, "__GFP_NOFAIL"),
    (__GFP_NORETRY, "__GFP_NORETRY"),
    (__GFP_COMP, "__GFP_COMP"),
    (__GFP_ZERO, "__GFP_ZERO"),
    (__GFP_NOMEMALLOC, "__GFP_NOMEMALLOC"),
    (__GFP_MEMALLOC, "__GFP_MEMALLOC"),
    (__GFP_HARDWALL, "__GFP_HARDWALL"),
    (__GFP_THISNODE, "__GFP_THISNODE"),
    (__GFP_RECLAIMABLE, "__GFP_RECLAIMABLE"),
    (__GFP_MOVABLE, "__GFP_MOVABLE"),
    (__GFP_ACCOUNT, "__GFP_ACCOUNT"),
    (__GFP_WRITE, "__GFP_WRITE"),
    (__GFP_RECLAIM, "__GFP_RECLAIM"),
    (__GFP_DIRECT_RECLAIM, "__GFP_DIRECT_RECLAIM"),
    (__GFP_KSWAPD_RECLAIM, "__GFP_KSWAPD_RECLAIM"),
    (__GFP_ZEROTAGS, "__GFP_ZEROTAGS"),
];

/// `%pGg`: the names of a mask as `format_flags()` prints them — each table entry whose bits
/// are all present, in table order, separated by `|`, then any leftover bits as `0x..`.
pub fn format_gfp_names(gfp: Gfp) -> String {
    let mut flags = gfp.bits();
    let mut out = String::new();
    for (mask, name) in GFPFLAG_NAMES {
        if flags == 0 {
            break;
        }
        let m = mask.bits();
        if flags & m != m {
            continue;
        }
        out.push_str(name);
        flags &= !m;
        if flags != 0 {
            out.push('|');
        }
    }
    if flags != 0 {
        let _ = write!(out, "{flags:#x}");
    }
    out
}

/// `"%#x(%pGg)"` as the allocation-failure and OOM reports print a mask.
pub fn format_gfp_mode(gfp: Gfp) -> String {
    // C's %#x prints a zero without the 0x prefix.
    let hex = if gfp.bits() == 0 {
        String::from("0")
    } else {
        format!("{:#x}", gfp.bits())
    };
    format!("{hex}({})", format_gfp_names(gfp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn composite_values_match_v6_1() {
        assert_eq!(GFP_KERNEL.bits(), 0xcc0);
        assert_eq!(GFP_ATOMIC.bits(), 0xa20);
        assert_eq!(GFP_USER.bits(), 0x100cc0);
        assert_eq!(GFP_HIGHUSER_MOVABLE.bits(), 0x100cca);
        assert_eq!(GFP_TRANSHUGE_LIGHT.bits(), 0x1c20ca);
        assert_eq!(GFP_TRANSHUGE.bits(), 0x1c24ca);
        assert_eq!(GFP_NOWAIT.bits(), 0x800);
        // __userpte_alloc_gfp of a HIGHPTE kernel.
        assert_eq!((GFP_PGTABLE_USER | __GFP_HIGHMEM).bits(), 0x400dc2);
        assert_eq!(GFP_BOOT_MASK.bits(), 0x7ff_f33f);
    }

    #[test]
    fn pgg_rendering_follows_the_flag_table() {
        assert_eq!(
            format_gfp_mode(GFP_PGTABLE_USER | __GFP_HIGHMEM),
            "0x400dc2(GFP_KERNEL_ACCOUNT|__GFP_HIGHMEM|__GFP_ZERO)"
        );
        assert_eq!(
            format_gfp_mode(GFP_PGTABLE_USER),
            "0x400dc0(GFP_KERNEL_ACCOUNT|__GFP_ZERO)"
        );
        assert_eq!(format_gfp_names(GFP_ATOMIC), "GFP_ATOMIC");
        assert_eq!(
            format_gfp_names(GFP_HIGHUSER_MOVABLE | __GFP_ZERO),
            "GFP_HIGHUSER_MOVABLE|__GFP_ZERO"
        );
        assert_eq!(
            format_gfp_names(GFP_KERNEL | __GFP_NOWARN | __GFP_COMP),
            "GFP_KERNEL|__GFP_NOWARN|__GFP_COMP"
        );
        assert_eq!(format_gfp_names(GFP_DMA | GFP_KERNEL), "GFP_KERNEL|GFP_DMA");
        assert_eq!(
            format_gfp_names(__GFP_DIRECT_RECLAIM),
            "__GFP_DIRECT_RECLAIM"
        );
        assert_eq!(
            format_gfp_names(Gfp::from_bits_retain(0x1000000)),
            "0x1000000"
        );
        assert_eq!(
            format_gfp_names(Gfp::from_bits_retain(GFP_KERNEL.bits() | 0x1000000)),
            "GFP_KERNEL|0x1000000"
        );
        assert_eq!(format_gfp_mode(Gfp::empty()), "0()");
    }

    #[test]
    fn zone_table_for_i386() {
        assert_eq!(gfp_zone(GFP_KERNEL), ZoneType::Normal);
        assert_eq!(gfp_zone(GFP_DMA), ZoneType::Dma);
        assert_eq!(gfp_zone(GFP_HIGHUSER), ZoneType::HighMem);
        assert_eq!(gfp_zone(GFP_HIGHUSER_MOVABLE), ZoneType::Movable);
        assert_eq!(gfp_zone(GFP_DMA32), ZoneType::Normal);
        assert_eq!(gfp_zone(__GFP_MOVABLE), ZoneType::Normal);
        assert_eq!(gfp_zone(__GFP_MOVABLE | __GFP_DMA), ZoneType::Dma);
        assert_eq!(gfp_zone(__GFP_MOVABLE | __GFP_DMA32), ZoneType::Normal);
        assert!(gfp_zone_is_bad(__GFP_DMA | __GFP_HIGHMEM));
        assert!(!gfp_zone_is_bad(GFP_HIGHUSER_MOVABLE));
    }

    #[test]
    fn migratetype_from_mobility_bits() {
        assert_eq!(gfp_migratetype(GFP_KERNEL, false), MigrateType::Unmovable);
        assert_eq!(
            gfp_migratetype(GFP_HIGHUSER_MOVABLE, false),
            MigrateType::Movable
        );
        assert_eq!(
            gfp_migratetype(GFP_KERNEL | __GFP_RECLAIMABLE, false),
            MigrateType::Reclaimable
        );
        assert_eq!(
            gfp_migratetype(GFP_HIGHUSER_MOVABLE, true),
            MigrateType::Unmovable
        );
    }

    #[test]
    fn alloc_flags_of_the_slow_path() {
        let k = gfp_to_alloc_flags(GFP_KERNEL, 0);
        assert_eq!(k, AllocFlags::CPUSET | AllocFlags::KSWAPD);
        assert_eq!(k.wmark(), WMark::Min);
        let a = gfp_to_alloc_flags(GFP_ATOMIC, 0);
        assert_eq!(
            a,
            AllocFlags::MIN_RESERVE | AllocFlags::KSWAPD | AllocFlags::NON_BLOCK
        );
        let a2 = gfp_to_alloc_flags(GFP_ATOMIC, 2);
        assert!(a2.contains(AllocFlags::HIGHATOMIC));
        let nw = gfp_to_alloc_flags(GFP_NOWAIT | __GFP_NOMEMALLOC, 1);
        assert_eq!(nw, AllocFlags::CPUSET | AllocFlags::KSWAPD);
        assert_eq!(
            gfp_pfmemalloc_flags(GFP_KERNEL | __GFP_MEMALLOC),
            AllocFlags::NO_WATERMARKS
        );
        assert_eq!(
            AllocFlags::empty().with_wmark(WMark::Low).wmark(),
            WMark::Low
        );
    }
}
