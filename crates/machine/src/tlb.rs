//! The translation lookaside buffer of one CPU.
//!
//! The TLB is why page-table edits need flushes: once a translation is cached, the CPU keeps
//! using it whatever software later writes into the tables, until INVLPG, a CR3 write (for
//! non-global entries) or a CR4.PGE toggle (for all) throws it away. Not-present
//! translations are never cached (x86 does not), so making an entry present needs no flush.
//!
//! # Geometry
//!
//! Like the hardware, the TLB is a few fixed set-associative arrays, one per page-size
//! class (4 KiB; 2 MiB or 4 MiB, whichever the paging format maps; 1 GiB), indexed by the
//! low bits of the page number at that size, four ways per set. A lookup is an index, a tag
//! compare and a validity compare. [`TlbGeometry`] picks the sizes:
//!
//! - [`TlbGeometry::Core2`], the default hardware model: the second-level data TLB (DTLB1)
//!   of the Intel Core microarchitecture (Core 2 Duo "Merom"/"Conroe", Xeon 5100
//!   "Woodcrest", 2006), the PAE-server CPU of the 686-pae kernels: 256 entries for 4 KiB
//!   pages, 4-way (64 sets), and 32 entries for large pages, 4-way (8 sets). Source: Intel
//!   64 and IA-32 Architectures Optimization Reference Manual, "Intel Core
//!   Microarchitecture" (DTLB0/DTLB1 table), and the CPUID leaf 2 descriptors that CPU
//!   returns (0xB4: "Data TLB1: 4 KByte pages, 4-way set associative, 256 entries"; 0x05:
//!   "Data TLB1: 4 MByte pages, 4-way set associative, 32 entries"), Intel SDM vol. 2A,
//!   CPUID, table 3-12. The small DTLB0 and the ITLB are not modelled: every access goes
//!   through this one TLB. Core 2 has no 1 GiB pages; the 4-level comparison CPU gets the
//!   4 entries, 4-way, of Sandy Bridge's 1 GiB DTLB.
//! - [`TlbGeometry::Unbounded`], the debug geometry: never evicts. A real TLB may hide a
//!   missing flush by evicting the entry first, never the other way round, so this one
//!   catches every missing flush. It is larger arrays plus an unbounded spill store that
//!   receives what a full set pushes out; spilled entries come back into the arrays when
//!   used.
//!
//! Replacement in a full set is pseudo-random from a seed (xorshift), so a run is
//! deterministic; evictions are counted.
//!
//! # Flushes without sweeping
//!
//! Every entry carries a stamp and is valid while its stamp is at least the TLB's
//! threshold, `epoch << 32 | cr3_count`. A non-global entry is stamped with the threshold
//! of its fill, a global one with `epoch << 32 | u32::MAX`. A CR3 write adds one to the
//! threshold, so every non-global entry goes at once while globals stay; a full flush
//! starts a new epoch, so everything goes. Neither touches the arrays.
//!
//! # Rights and generation in the tag
//!
//! The fast path never looks at an entry's rights bit by bit. The large-page arrays keep,
//! as in QEMU's softmmu TLB, one tag per kind of access (supervisor or user, read or
//! write), `page | generation` if that access may use the entry without a walk under the
//! current CR0.WP (a write also needs the entry dirty), else a value no access looks for.
//! The front table of 4 KiB entries (below) keeps one tag, `page | generation | deny`,
//! with one deny bit per kind of access. The *generation* (bits 4-11, 255 values) changes
//! at every CR3 write, full flush and CR0.WP change, so a tag of the current generation
//! implies a valid entry, because any event that could invalidate an entry or change its
//! rights also changes the generation. Both kinds of tags come from tables indexed by the
//! entry's W, U and D bits, one per CR0.WP.
//!
//! The converse does not hold: a global entry survives a CR3 write but its tags carry the
//! old generation. The slow path finds such entries by their page and stamp and retags
//! them, so the next access hits inline again. (Instruction fetches, refused rights and
//! clean-entry writes also take the slow path, which looks at the full entry.) Once every
//! 255 generations every tag is reset, so an old tag never meets a reused generation.
//!
//! # The front table
//!
//! The tags of 4 KiB entries live in a direct-mapped front table of 256 entries indexed
//! by the low bits of the page number (a tag and an addend, in two arrays), in front of the
//! set-associative arrays, so that a 4 KiB hit is one XOR and one test against a constant
//! (`(tag ^ (page | generation)) & !(other deny bits) == 0`) whatever way its entry sits
//! in. It is a pure cache of the 4 KiB array: a fill or a retag writes the page's front
//! entry, INVLPG clears it (one store), an eviction or a spill clears the victim's, and a
//! new generation makes all of them stale at once. A front-table miss falls back to the
//! large-page array (out of line) and then to the slow path, which finds the entry in its
//! set and puts it back in front. The architectural model (geometry, evictions, stamps)
//! is the arrays'.
//!
//! # The miss path
//!
//! The usual miss (no entry for the page, present and accessed tables in RAM, rights that
//! let the access through) is [`Tlb::miss_quick`]: the CPU's side-effect-free walk, then
//! the slot. INVLPG leaves the page in its invalidated slot and notes that slot's address
//! ([`Tlb::invalidated`]); the refill that usually follows (kunmap's INVLPG, then the next
//! access through the same slot) checks that the noted slot holds its page (a set holds a
//! page at most once, valid or not, so that slot is the page's) and fills it, three slot
//! stores and two front-table stores, without looking at the set; the next INVLPG of that
//! page (kunmap's) looks there first too ([`Tlb::invalidate_noted`]). Otherwise one scan of
//! the set by page address, out of line ([`Tlb::quick_scan`]), or, for the retry of a
//! faulting access (whose page the note is not about), inline in the CPU's refill without
//! the look at the note ([`Tlb::scan_fill`]). A kernel access through a kmap slot between
//! its map and its unmap's INVLPG refills the noted slot and empties it again: the CPU's
//! slot step writes only what those two leave ([`Tlb::slot_refills`],
//! [`Tlb::slot_refill_flush`]). A supervisor read needs no
//! rights test (every entry allows it), so the quick miss is one copy per fast tag.
//! Anything else starts again on the full slow path: the
//! lookup remembers the page's way, the walk (with its A/D updates and faults) returns a
//! packed leaf (page base, size, rights and G/D bits in their page-table positions) that
//! goes straight into that way, or the first invalid one, or a victim. The large-page and
//! 1 GiB arrays and the unbounded geometry's spill are probed only once something has
//! been put there since the last full flush (one flag byte for the three), and the two
//! arrays only for a linear address inside the span their pages were filled in since
//! then: a 32-bit kernel's direct map is its only large mapping, so the user and kmap
//! pages of a fault (below and above it) never probe them.

use crate::addr::PhysAddr;
use crate::mmu::{bits, Access, Perms, Translation, Walked};
use crate::paging::{Format, PageSize};
use std::collections::HashMap;

#[path = "tlb_run.rs"]
mod run;

/// Ways per set, in every class and geometry.
const WAYS: usize = 4;
/// Page-size classes: 4 KiB, large (2 MiB or 4 MiB), 1 GiB.
const CLASSES: usize = 3;
/// A fast-path tag no access ever looks for: all ones, so no page matches it (and in the
/// front table every access is denied).
const NO_TAG: u64 = u64::MAX;
/// The tag of an empty front-table entry: generation 0, which no access looks for (the
/// current generation is at least [`GEN_STEP`]), so the hit test misses it whatever the
/// page; zero rather than [`NO_TAG`], so that the hit test right after INVLPG is an OR
/// and a test, with no constant to XOR.
const FRONT_EMPTY: u64 = 0;
/// The `page` of an empty slot (pages are aligned, so no page equals it).
const NO_PAGE: u64 = 1;
/// Fast-path generations are multiples of this from [`GEN_STEP`] to [`GEN_MAX`], in bits
/// 4-11 of the tags (bits 0-3 of a front-table tag deny accesses, see [`FastTable`]).
const GEN_STEP: u64 = 0x10;
const GEN_MAX: u64 = 0xff0;
/// The deny bits of a front-table tag.
const DENY_BITS: u64 = 0xf;
/// The low half of the threshold counts CR3 writes; global entries use its maximum.
const LOCAL_MASK: u64 = 0xffff_ffff;
/// [`Tlb::extra`]: the large-page array may hold entries.
const LARGE: u8 = 1;
/// [`Tlb::extra`]: the 1 GiB array may hold entries.
const HUGE: u8 = 2;
/// [`Tlb::extra`]: the spill maps may hold entries (unbounded geometry).
const SPILL: u8 = 4;
/// Entries of the direct-mapped front table of 4 KiB translations (a power of two).
const FAST: usize = 256;
/// The most sets of any class in any geometry (a power of two): every class's array has
/// this many, so that a set index masked by it needs no bounds check; a geometry with
/// fewer sets leaves the rest empty and never indexes them.
const MAX_SETS: usize = 1024;
/// Seed of the replacement choice unless one is given.
const DEFAULT_SEED: u64 = 0x2545_f491_4f6c_dd1d;

/// How a CPU's TLB is built: see the [module documentation](self).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, serde::Serialize)]
pub enum TlbGeometry {
    /// Intel Core 2 DTLB1: 64 sets x 4 ways of 4 KiB pages, 8 x 4 of large pages.
    Core2,
    /// Never evicts: the debug geometry that catches every missing flush.
    #[default]
    Unbounded,
}

impl TlbGeometry {
    /// Sets per class (4 KiB, large, 1 GiB); each set has four ways.
    pub const fn sets(self) -> [usize; CLASSES] {
        match self {
            TlbGeometry::Core2 => [64, 8, 1],
            TlbGeometry::Unbounded => [1024, 64, 1],
        }
    }

    /// Whether a full set loses an entry (false: it spills and is kept).
    pub const fn evicts(self) -> bool {
        matches!(self, TlbGeometry::Core2)
    }

    /// Entries the arrays hold per class.
    pub const fn capacity(self) -> [usize; CLASSES] {
        let s = self.sets();
        [s[0] * WAYS, s[1] * WAYS, s[2] * WAYS]
    }
}

/// A cached translation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TlbEntry {
    /// First byte of the page frame (of the large page for large mappings).
    pub page_base: PhysAddr,
    pub size: PageSize,
    /// Effective rights as the walk found them.
    pub perms: Perms,
    /// Survives CR3 writes.
    pub global: bool,
    /// The leaf's D bit was set when cached: writes need no new walk.
    pub dirty: bool,
}

impl TlbEntry {
    /// The physical address for a linear address inside this entry's page.
    pub const fn phys(&self, linear: u64) -> PhysAddr {
        PhysAddr::new(self.page_base.as_u64() + (linear & (self.size.bytes() - 1)))
    }

    /// The packed rights and leaf bits.
    const fn bits(&self) -> u64 {
        let g = if self.global { bits::G } else { 0 };
        let d = if self.dirty { bits::D } else { 0 };
        self.perms.bits() | g | d
    }
}

impl From<Translation> for TlbEntry {
    fn from(t: Translation) -> Self {
        TlbEntry {
            page_base: t.page_base,
            size: t.size,
            perms: t.perms,
            global: t.global,
            dirty: t.dirty,
        }
    }
}

impl Access {
    /// Which fast-path tag checks this access: 0 supervisor read, 1 supervisor write,
    /// 2 user read, 3 user write; `None` for fetches, which always take the slow path.
    #[inline(always)]
    pub const fn fast_tag(self) -> Option<usize> {
        match self.kind {
            crate::mmu::AccessKind::Execute => None,
            _ => Some(self.is_write() as usize | (self.is_user() as usize) << 1),
        }
    }
}

/// The packed bits the fast tags depend on: W, U, D.
const TAG_INDEX: u64 = bits::W | bits::U | bits::D;
/// Rows of a [`TagMasks`] table: every value of `bits & TAG_INDEX`.
const TAG_ROWS: usize = TAG_INDEX as usize + 1;

/// Per `bits & TAG_INDEX`: for each fast access, 0 if it may use the entry without a
/// walk, else [`NO_TAG`]. A table, so that a fill ORs four masks instead of testing bits.
type TagMasks = [[u64; 4]; TAG_ROWS];

/// The [`TagMasks`] for CR0.WP clear and set.
static TAG_MASKS: [TagMasks; 2] = [tag_mask_table(false), tag_mask_table(true)];

/// Per `bits & TAG_INDEX`: the deny bits of a front-table tag ([`FastTable`]).
type DenyBits = [u64; TAG_ROWS];

/// The [`DenyBits`] for CR0.WP clear and set.
static DENY: [DenyBits; 2] = [deny_table(false), deny_table(true)];

// A supervisor read (fast tag 0) may use every entry: the quick miss of that access does
// not test the deny bits.
const _: () = {
    let mut i = 0;
    while i < TAG_ROWS {
        assert!(DENY[0][i] & 1 == 0 && DENY[1][i] & 1 == 0);
        i += 1;
    }
};

const fn deny_table(wp: bool) -> DenyBits {
    let masks = tag_mask_table(wp);
    let mut t = [0; TAG_ROWS];
    let mut i = 0;
    while i < TAG_ROWS {
        let mut deny = 0;
        let mut k = 0;
        while k < 4 {
            if masks[i][k] != 0 {
                deny |= 1 << k;
            }
            k += 1;
        }
        t[i] = deny;
        i += 1;
    }
    t
}

const fn tag_mask_table(wp: bool) -> TagMasks {
    let mut t = [[0; 4]; TAG_ROWS];
    let mut i = 0;
    while i < TAG_ROWS {
        let b = i as u64;
        let (w, u, d) = (b & bits::W != 0, b & bits::U != 0, b & bits::D != 0);
        let ok = [true, d && (w || !wp), u, u && w && d];
        let mut k = 0;
        while k < 4 {
            t[i][k] = if ok[k] { 0 } else { NO_TAG };
            k += 1;
        }
        i += 1;
    }
    t
}

/// The masks of `masks` for packed bits `b`.
#[inline(always)]
fn tag_masks(b: u64, masks: &'static TagMasks) -> &'static [u64; 4] {
    &masks[(b & TAG_INDEX) as usize]
}

/// The four fast-path tags of an entry with packed bits `b`: `want` (its page ORed with
/// the current generation) where that access may use it without a walk, else [`NO_TAG`].
#[inline(always)]
fn tags(b: u64, want: u64, masks: &'static TagMasks) -> [u64; 4] {
    tag_masks(b, masks).map(|m| want | m)
}

/// Bytes of a [`Slot`].
const SLOT_BYTES: usize = std::mem::size_of::<Slot>();

/// One way of one set: a cache line.
#[derive(Clone, Copy, Debug)]
#[repr(C, align(64))]
struct Slot {
    /// Per fast access: `page | generation` if that access may use the entry, else
    /// [`NO_TAG`]. A match implies the entry is valid (see [`Tlb::gen`]).
    tags: [u64; 4],
    /// Physical minus linear address, for any address in the page.
    addend: u64,
    /// Linear address of the page (aligned to the class's size), or [`NO_PAGE`].
    page: u64,
    /// Valid while at least [`Tlb::threshold`].
    stamp: u64,
    /// Packed rights and leaf bits ([`bits`]).
    bits: u64,
}

/// One entry of the front table: the tag and addend of a valid 4 KiB entry of the arrays,
/// indexed directly by the page number's low bits, so a hit is one test whatever way the
/// entry sits in. The tag is `page | generation | deny`, where deny bit `k` is set if the
/// access with fast tag `k` may not use the entry without a walk (rights, CR0.WP, D for a
/// write): a hit is `(tag ^ (page | generation)) & !(DENY_BITS & !(1 << k)) == 0`, one
/// XOR and one test against a constant. A pure cache of the 4 KiB array: whatever drops or
/// changes an array entry (INVLPG, eviction, spill, a new fill, a new generation) drops or
/// rewrites it.
///
/// Stored as two arrays, the tags and the addends, both indexed by the page number's low
/// bits: `(lin >> 12) % FAST`, which the compiler sees is in range for both (no bounds
/// check, no `unsafe`), whose ×8 scale the addressing mode does itself, and which INVLPG
/// takes from the page number it computes for the set anyway.
#[derive(Clone, Debug)]
#[repr(C, align(16))]
struct FastTable {
    tags: [u64; FAST],
    addends: [u64; FAST],
}

impl FastTable {
    /// Every entry misses every access.
    const EMPTY: FastTable = FastTable {
        tags: [FRONT_EMPTY; FAST],
        addends: [FRONT_EMPTY; FAST],
    };

    /// The index of `lin`'s entry.
    #[inline(always)]
    const fn index(lin: u64) -> usize {
        ((lin >> 12) & (FAST as u64 - 1)) as usize
    }

    /// Tag and addend of `lin`'s entry.
    #[inline(always)]
    fn get(&self, lin: u64) -> (u64, u64) {
        let i = Self::index(lin);
        (self.tags[i], self.addends[i])
    }

    #[inline(always)]
    fn set(&mut self, lin: u64, tag: u64, addend: u64) {
        let i = Self::index(lin);
        self.tags[i] = tag;
        self.addends[i] = addend;
    }

    /// Make `lin`'s entry match no access.
    #[inline(always)]
    fn clear(&mut self, lin: u64) {
        self.tags[Self::index(lin)] = FRONT_EMPTY;
    }

    /// Drop `page`'s entry if it is that page's.
    #[inline(always)]
    fn drop_page(&mut self, page: u64) {
        let i = Self::index(page);
        if self.tags[i] & !0xfff == page {
            self.tags[i] = FRONT_EMPTY;
        }
    }
}

const EMPTY: Slot = Slot {
    tags: [NO_TAG; 4],
    addend: 0,
    page: NO_PAGE,
    stamp: 0,
    bits: 0,
};

/// The mask of a set index, `sets - 1`, for every set count of a geometry: an enum, so
/// that the compiler knows a masked index is below [`MAX_SETS`] (no bounds check, no
/// `unsafe`) with no second mask on the miss path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
enum SetMask {
    Sets1 = 0,
    Sets8 = 7,
    Sets64 = 63,
    Sets1024 = 1023,
}

const _: () = assert!(SetMask::Sets1024 as usize == MAX_SETS - 1);

impl SetMask {
    fn of(sets: usize) -> SetMask {
        match sets {
            1 => SetMask::Sets1,
            8 => SetMask::Sets8,
            64 => SetMask::Sets64,
            1024 => SetMask::Sets1024,
            _ => panic!("{sets} sets: not a set count of any geometry"),
        }
    }
}

/// The sets of one class: [`MAX_SETS`] of them, of which the geometry uses the first.
type Sets = [[Slot; WAYS]; MAX_SETS];

/// The array of one page-size class.
struct Class {
    /// The sets, of which the first `sets` are used.
    slots: Box<Sets>,
    /// Sets in use.
    sets: usize,
    /// `sets - 1`, the mask of a set index.
    set_mask: SetMask,
    /// log2 of the page size the class holds now.
    shift: u32,
}

/// A slot as the 4 KiB array's state prints it: without its fast tags, which nothing reads
/// there (the front table holds those), and which the quick miss leaves as they were where
/// the full path's fill rewrites them — so that two arrays in the same state print the same.
struct SmallSlot<'a>(&'a Slot);

impl std::fmt::Debug for SmallSlot<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.0;
        f.debug_struct("Slot")
            .field("addend", &s.addend)
            .field("page", &s.page)
            .field("stamp", &s.stamp)
            .field("bits", &s.bits)
            .finish()
    }
}

impl std::fmt::Debug for Class {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("Class");
        if self.shift == 12 {
            let sets: Vec<Vec<SmallSlot>> = self
                .slots
                .iter()
                .map(|set| set.iter().map(SmallSlot).collect())
                .collect();
            d.field("slots", &sets);
        } else {
            d.field("slots", &self.slots);
        }
        d.field("sets", &self.sets)
            .field("set_mask", &self.set_mask)
            .field("shift", &self.shift)
            .finish()
    }
}

impl Class {
    fn new(sets: usize, shift: u32) -> Self {
        let slots = vec![[EMPTY; WAYS]; MAX_SETS].into_boxed_slice();
        Class {
            slots: slots.try_into().expect("MAX_SETS sets"),
            sets,
            set_mask: SetMask::of(sets),
            shift,
        }
    }

    /// The linear address of the page containing `lin`.
    #[inline(always)]
    fn page(&self, lin: u64) -> u64 {
        lin & !((1u64 << self.shift) - 1)
    }

    /// The slot whose address is `addr` (a number only, never dereferenced): its index
    /// from the first, masked into the array, so that any `addr` gives some slot.
    #[inline(always)]
    fn slot_at(&mut self, addr: u64) -> &mut Slot {
        let first = self.slots.as_ptr() as u64;
        let i = (addr.wrapping_sub(first) as usize / SLOT_BYTES) & (MAX_SETS * WAYS - 1);
        &mut self.slots.as_flattened_mut()[i]
    }

    /// The set of the page number `pfn` (of this class's page size).
    #[inline(always)]
    fn set_at(&self, pfn: u64) -> &[Slot; WAYS] {
        &self.slots[pfn as usize & self.set_mask as usize]
    }

    #[inline(always)]
    fn set(&self, lin: u64) -> &[Slot; WAYS] {
        self.set_at(lin >> self.shift)
    }

    #[inline(always)]
    fn set_mut_at(&mut self, pfn: u64) -> &mut [Slot; WAYS] {
        &mut self.slots[pfn as usize & self.set_mask as usize]
    }

    #[inline(always)]
    fn set_mut(&mut self, lin: u64) -> &mut [Slot; WAYS] {
        self.set_mut_at(lin >> self.shift)
    }

    /// The slots of the sets in use.
    fn used(&self) -> impl Iterator<Item = &Slot> {
        self.slots[..self.sets].iter().flatten()
    }

    fn used_mut(&mut self) -> impl Iterator<Item = &mut Slot> {
        self.slots[..self.sets].iter_mut().flatten()
    }

    fn size(&self) -> PageSize {
        PageSize::from_shift(self.shift as u8).unwrap_or(PageSize::Size4K)
    }
}

const fn class_of(size: PageSize) -> usize {
    match size {
        PageSize::Size4K => 0,
        PageSize::Size2M | PageSize::Size4M => 1,
        PageSize::Size1G => 2,
    }
}

/// The replacement choice's next pseudo-random number (xorshift64 of `seed`, high half).
#[inline(always)]
fn xorshift(seed: &mut u64) -> usize {
    let mut x = *seed;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *seed = x;
    (x >> 32) as usize
}

/// The quick miss's fill of slot `s`, which already holds `lin`'s page (the caller writes
/// it into a slot that held another), and of the front table: the entry at `base` with
/// packed bits `b`, deny bits `deny` and `stamp`, tagged with generation `gen`. Returns the
/// physical address.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn quick_put(
    s: &mut Slot,
    fast: &mut FastTable,
    gen: u64,
    stamp: u64,
    lin: u64,
    base: u64,
    b: u64,
    deny: u64,
) -> u64 {
    let page = lin & !0xfff;
    let addend = base.wrapping_sub(page);
    debug_assert_eq!(s.page, page);
    s.addend = addend;
    s.stamp = stamp;
    s.bits = b;
    fast.set(page, page | gen | deny, addend);
    lin.wrapping_add(addend)
}

/// [`Tlb::miss_quick`]'s outcome.
pub(crate) enum Refill {
    /// Filled (the physical address), or `None`: nothing changed, the full slow path.
    Done(Option<u64>),
    /// The walk found these entries, but the page's slot is not the last INVLPG's:
    /// [`Tlb::quick_scan`] with them.
    Scan { pde: u64, pte: u64 },
}

/// What the quick miss counts for the CPU ([`Tlb::miss_quick`]): its misses, each also a
/// walk, and its evictions, which the CPU adds to its own counters when it reports them.
/// One pointer for both, and one increment per miss.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct QuickCounts {
    pub(crate) misses: u64,
    pub(crate) evictions: u64,
}

/// Spilled entries of the unbounded geometry, by (class, page address).
type Spill = HashMap<(usize, u64), TlbEntry>;

/// One CPU's TLB.
pub struct Tlb {
    /// The front table of 4 KiB translations (see [`FastTable`]), inline so that its address
    /// is the TLB's own.
    fast: FastTable,
    classes: [Class; CLASSES],
    /// Fast-path generation, 1..=[`GEN_MAX`], in the low bits of every tag. It changes
    /// whenever the fast tags may have become wrong (CR3 write, flush, CR0.WP change), so
    /// a tag matches only entries tagged since: those are valid. A valid entry with an
    /// older tag (a global one after a CR3 write) is found by the slow path and retagged.
    gen: u64,
    /// `epoch << 32 | cr3_count`: stamps below it are invalid.
    threshold: u64,
    /// The stamp of a global entry filled now, `threshold | LOCAL_MASK` (kept with the
    /// threshold, so that a fill picks one of two words instead of building it).
    global_stamp: u64,
    /// The address of the 4 KiB slot the last INVLPG found its page in (a number, never
    /// dereferenced): where the miss that usually follows looks first ([`Class::slot_at`]).
    /// A hint, checked where it is used, so nothing else maintains it.
    invalidated: u64,
    /// The tag masks of the CR0.WP the tags are computed for ...
    masks: &'static TagMasks,
    /// ... and the deny bits of the front table, a copy rather than a reference, so that
    /// the miss path's rights test is one load from the TLB, not two.
    deny: DenyBits,
    /// What may hold entries besides the 4 KiB array ([`LARGE`], [`HUGE`], [`SPILL`]),
    /// since the last full flush: only those are probed. One byte, so the miss path and
    /// INVLPG test all three at once.
    extra: u8,
    /// The linear addresses of every page filled into the large and 1 GiB arrays since
    /// the last full flush lie in `big_lo..=big_lo + big_span` (`u64::MAX..=u64::MAX`
    /// when none was), and the span is the whole address space once the spill holds
    /// entries: outside it neither those arrays nor the spill need a probe. A filter only:
    /// a wider span costs probes, never a wrong answer.
    big_lo: u64,
    big_span: u64,
    geometry: TlbGeometry,
    /// xorshift64 state of the replacement choice.
    seed: u64,
    /// Unbounded geometry: what full sets pushed out, non-global and global.
    spill_local: Spill,
    spill_global: Spill,
    evictions: u64,
}

impl Default for Tlb {
    fn default() -> Self {
        Tlb::new()
    }
}

/// Everything but [`Tlb::invalidated`], a host address and a hint only, and the 4 KiB
/// slots' unread fast tags ([`SmallSlot`]): two TLBs in the same state print the same.
impl std::fmt::Debug for Tlb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tlb")
            .field("fast", &self.fast)
            .field("classes", &self.classes)
            .field("gen", &self.gen)
            .field("threshold", &self.threshold)
            .field("global_stamp", &self.global_stamp)
            .field("masks", &self.masks)
            .field("deny", &self.deny)
            .field("extra", &self.extra)
            .field("big_lo", &self.big_lo)
            .field("big_span", &self.big_span)
            .field("geometry", &self.geometry)
            .field("seed", &self.seed)
            .field("spill_local", &self.spill_local)
            .field("spill_global", &self.spill_global)
            .field("evictions", &self.evictions)
            .finish()
    }
}

impl Tlb {
    /// An empty TLB of the default (unbounded) geometry.
    pub fn new() -> Self {
        Tlb::with_geometry(TlbGeometry::default(), DEFAULT_SEED)
    }

    /// An empty TLB of `geometry`, replacing by a xorshift sequence from `seed`.
    pub fn with_geometry(geometry: TlbGeometry, seed: u64) -> Self {
        let [s4k, slarge, s1g] = geometry.sets();
        Tlb {
            fast: FastTable::EMPTY,
            classes: [
                Class::new(s4k, 12),
                Class::new(slarge, 21),
                Class::new(s1g, 30),
            ],
            gen: GEN_STEP,
            threshold: 1 << 32,
            global_stamp: (1 << 32) | LOCAL_MASK,
            invalidated: 0,
            masks: &TAG_MASKS[1],
            deny: DENY[1],
            extra: 0,
            big_lo: u64::MAX,
            big_span: 0,
            geometry,
            seed: seed | 1,
            spill_local: Spill::default(),
            spill_global: Spill::default(),
            evictions: 0,
        }
    }

    pub fn geometry(&self) -> TlbGeometry {
        self.geometry
    }

    /// Entries lost to capacity since the TLB was built.
    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    /// The hit path: the physical address for `lin` if an entry tagged for the current
    /// generation lets the access with fast tag `tag` (see [`Access::fast_tag`]) through
    /// without a walk. One compare per way probed.
    #[inline(always)]
    pub fn hit(&self, lin: u64, tag: usize) -> Option<u64> {
        if let Some(pa) = self.front_hit(lin, tag) {
            return Some(pa);
        }
        if !self.near_big(lin) {
            return None;
        }
        self.hit_large(lin, tag)
    }

    /// The hit path's front-table part: the only one outside the span of large pages.
    #[inline(always)]
    fn front_hit(&self, lin: u64, tag: usize) -> Option<u64> {
        let tag = tag & 3;
        let want = (lin & !0xfff) | self.gen;
        // Both loads first: the addend's address is the tag's, with no second address
        // computation after the branch.
        let (t, addend) = self.fast.get(lin);
        ((t ^ want) & !(DENY_BITS & !(1 << tag)) == 0).then(|| lin.wrapping_add(addend))
    }

    /// Put the 4 KiB entry of `page` with packed bits `b` and `addend` in the front table.
    #[inline(always)]
    fn set_fast(&mut self, page: u64, b: u64, addend: u64) {
        let tag = page | self.gen | self.deny[(b & TAG_INDEX) as usize];
        self.fast.set(page, tag, addend);
    }

    /// Drop the front-table entry of `page` if it is that page's.
    #[inline(always)]
    fn drop_fast(&mut self, page: u64) {
        self.fast.drop_page(page);
    }

    /// The hit path's large-page part (the front table missed), out of line so that the
    /// 4 KiB hit keeps its own short tail.
    #[inline(never)]
    fn hit_large(&self, lin: u64, tag: usize) -> Option<u64> {
        let large = &self.classes[1];
        let want = large.page(lin) | self.gen;
        for s in large.set(lin) {
            if s.tags[tag] == want {
                return Some(lin.wrapping_add(s.addend));
            }
        }
        None
    }

    /// Whether class `c` may hold entries.
    #[inline(always)]
    fn in_use(&self, c: usize) -> bool {
        match c {
            0 => true,
            1 => self.extra & LARGE != 0,
            _ => self.extra & HUGE != 0,
        }
    }

    #[inline(always)]
    fn has_spill(&self) -> bool {
        self.extra & SPILL != 0
    }

    /// Whether `lin` is in the span of the large and 1 GiB pages filled since the last
    /// full flush (see [`Tlb::big_lo`]).
    #[inline(always)]
    pub(crate) fn near_big(&self, lin: u64) -> bool {
        lin.wrapping_sub(self.big_lo) <= self.big_span
    }

    /// Whether an entry for `lin` may be anywhere but the 4 KiB array: something was put
    /// there since the last full flush (the flag byte first: one test when nothing was)
    /// and `lin` is in the span (everything once the spill holds entries, see
    /// [`Tlb::big_lo`]).
    #[inline(always)]
    fn maybe_extra(&self, lin: u64) -> bool {
        self.extra != 0 && self.near_big(lin)
    }

    /// Widen the span of large and 1 GiB pages to the page at `page` of `1 << shift` bytes.
    #[inline(always)]
    fn widen_big(&mut self, page: u64, shift: u32) {
        let last = page | ((1u64 << shift) - 1);
        // An empty span is the only one of length 0 (a page is at least 2 MiB here).
        if self.big_span == 0 {
            (self.big_lo, self.big_span) = (page, last - page);
        } else {
            let lo = self.big_lo.min(page);
            let hi = (self.big_lo + self.big_span).max(last);
            (self.big_lo, self.big_span) = (lo, hi - lo);
        }
    }

    /// The valid array slot covering `linear`, as (class, way).
    #[inline(always)]
    fn locate(&self, linear: u64) -> Option<(usize, usize)> {
        (0..CLASSES).filter(|&c| self.in_use(c)).find_map(|c| {
            let class = &self.classes[c];
            let page = class.page(linear);
            let way = class
                .set(linear)
                .iter()
                .position(|s| s.page == page && s.stamp >= self.threshold)?;
            Some((c, way))
        })
    }

    fn entry_of(&self, c: usize, s: &Slot) -> TlbEntry {
        let b = s.bits;
        TlbEntry {
            page_base: PhysAddr::new(s.page.wrapping_add(s.addend)),
            size: self.classes[c].size(),
            perms: Perms::from_bits(b),
            global: b & bits::G != 0,
            dirty: b & bits::D != 0,
        }
    }

    #[cold]
    fn lookup_spill(&self, linear: u64) -> Option<(usize, u64, TlbEntry)> {
        (0..CLASSES).find_map(|c| {
            let key = (c, self.classes[c].page(linear));
            let e = self.spill_local.get(&key).or(self.spill_global.get(&key))?;
            Some((c, key.1, *e))
        })
    }

    /// The cached translation covering `linear`, if any (no side effects).
    pub fn lookup(&self, linear: u64) -> Option<TlbEntry> {
        if let Some((c, way)) = self.locate(linear) {
            return Some(self.entry_of(c, &self.classes[c].set(linear)[way]));
        }
        if self.has_spill() {
            self.lookup_spill(linear).map(|(_, _, e)| e)
        } else {
            None
        }
    }

    /// As [`Self::lookup`], for the slow path of a CPU access: the entry is retagged for
    /// the current generation, and a spilled entry comes back into its set. `probed` is
    /// ignored (kept for callers of the earlier interface).
    pub fn find(&mut self, linear: u64, probed: bool) -> Option<TlbEntry> {
        let _ = probed;
        self.find_packed(linear).ok()?;
        self.lookup(linear)
    }

    /// The slow path's lookup: packed bits and addend of the valid entry covering
    /// `linear`, retagged so that the next access of this kind hits inline. Without one,
    /// the way of the 4 KiB set that holds the page invalid, or `WAYS` (see
    /// [`Self::fill_hinted`]).
    #[inline(always)]
    pub(crate) fn find_packed(&mut self, linear: u64) -> Result<(u64, u64), usize> {
        let threshold = self.threshold;
        let page = linear & !0xfff;
        let set = self.classes[0].set_mut_at(linear >> 12);
        // A set holds a page at most once (see `fill`), valid or not.
        let way = set.iter().position(|s| s.page == page);
        if let Some(w) = way {
            let s = &mut set[w & (WAYS - 1)];
            if s.stamp >= threshold {
                let found = (s.bits, s.addend);
                self.set_fast(page, found.0, found.1);
                return Ok(found);
            }
        }
        if self.maybe_extra(linear) {
            if let Some(found) = self.find_large(linear) {
                return Ok(found);
            }
        }
        Err(way.unwrap_or(WAYS))
    }

    /// [`Self::find_packed`] in the large and 1 GiB classes and the spill.
    #[inline(never)]
    fn find_large(&mut self, linear: u64) -> Option<(u64, u64)> {
        if let Some((c, way)) = self.locate(linear) {
            let (gen, masks) = (self.gen, self.masks);
            let class = &mut self.classes[c];
            let page = class.page(linear);
            let s = &mut class.set_mut(linear)[way];
            s.tags = tags(s.bits, page | gen, masks);
            return Some((s.bits, s.addend));
        }
        if self.has_spill() {
            return self.unspill(linear);
        }
        None
    }

    #[cold]
    #[inline(never)]
    fn unspill(&mut self, linear: u64) -> Option<(u64, u64)> {
        let (c, page, e) = self.lookup_spill(linear)?;
        self.spill_local.remove(&(c, page));
        self.spill_global.remove(&(c, page));
        self.insert(linear, e);
        Some((e.bits(), e.page_base.as_u64().wrapping_sub(page)))
    }

    /// The usual miss, for the CPU's quick path: no entry for the page anywhere (no spill,
    /// and `lin` outside the span of the large and 1 GiB pages: the caller has tested
    /// [`Self::near_big`], which the hit path computes anyway), a `walk` without side
    /// effects that succeeds, and rights (and D for a write) that let the access with fast
    /// tag `K` use the new entry. Then the entry goes into the page's invalidated way
    /// (here if the last INVLPG was of this page, else [`Refill::Scan`]: the caller then
    /// calls [`Self::quick_scan`]) and into the front table, and the physical address comes
    /// back. `None` changes nothing: the caller takes the full slow path.
    #[inline(always)]
    pub(crate) fn miss_quick<const K: usize>(
        &mut self,
        lin: u64,
        walk: impl FnOnce() -> Option<(u64, u64)>,
        pack: impl FnOnce(u64, u64) -> (u64, u64),
        counts: &mut QuickCounts,
    ) -> Refill {
        debug_assert!(
            !self.near_big(lin),
            "the quick miss outside the large-page span only"
        );
        // The walk first: only the page and the TLB are live across it; then the slot,
        // with only the two entries; then what the entry and its front tag hold.
        let Some((pde, pte)) = walk() else {
            return Refill::Done(None);
        };
        let (page, threshold) = (lin & !0xfff, self.threshold);
        // The slot of the last INVLPG first: if it holds the page, it is the page's (a set
        // holds a page at most once, valid or not, and only in the page's set).
        let noted = self.classes[0].slot_at(self.invalidated);
        if noted.page != page {
            return Refill::Scan { pde, pte };
        }
        if noted.stamp >= threshold {
            return Refill::Done(None);
        }
        let (base, b) = pack(pde, pte);
        // A supervisor read is never denied (see `DENY`).
        let deny = self.deny[(b & TAG_INDEX) as usize];
        if K != 0 && deny >> (K & 3) & 1 != 0 {
            return Refill::Done(None);
        }
        // `Self::stamp`, on the fields (the slot borrows the 4 KiB class).
        let stamp = if b & bits::G != 0 {
            self.global_stamp
        } else {
            threshold
        };
        counts.misses += 1;
        Refill::Done(Some(quick_put(
            noted,
            &mut self.fast,
            self.gen,
            stamp,
            lin,
            base,
            b,
            deny,
        )))
    }

    /// [`Self::miss_quick`] when the last INVLPG was not of this page: one scan of the 4 KiB
    /// set, out of line (and called by the CPU, so that the usual refill neither keeps nor
    /// passes what only this one needs).
    #[inline(never)]
    pub(crate) fn quick_scan<const K: usize>(
        &mut self,
        lin: u64,
        pde: u64,
        pte: u64,
        pack: impl FnOnce(u64, u64) -> (u64, u64),
        counts: &mut QuickCounts,
    ) -> Option<u64> {
        self.scan_fill::<K>(lin, pde, pte, pack, counts)
    }

    /// The fill of [`Self::quick_scan`], inline in the CPU's quick refill of a retry (which
    /// does not look at the noted slot): the page's way (valid: `None`, the full path;
    /// invalid: refilled), else the first invalid way, else a victim ([`Self::quick_evict`]).
    /// The usual case, a streaming reader's full set without the page, is one pass of two
    /// tests per way.
    #[inline(always)]
    pub(crate) fn scan_fill<const K: usize>(
        &mut self,
        lin: u64,
        pde: u64,
        pte: u64,
        pack: impl FnOnce(u64, u64) -> (u64, u64),
        counts: &mut QuickCounts,
    ) -> Option<u64> {
        let (page, threshold) = (lin & !0xfff, self.threshold);
        let set = self.classes[0].set_mut_at(lin >> 12);
        let absent = set.iter().all(|s| s.page != page);
        if absent && set.iter().all(|s| s.stamp >= threshold) {
            let (base, b) = pack(pde, pte);
            let deny = self.deny[(b & TAG_INDEX) as usize];
            if K != 0 && deny >> (K & 3) & 1 != 0 {
                return None;
            }
            return Some(self.quick_evict(lin, base, b, deny, counts));
        }
        // A set holds a page at most once (see `fill`), valid or not; else, not full, it
        // has an invalid way. The slot is kept by reference, so the fill does not derive
        // its address from the way again.
        let way = match set.iter().position(|s| s.page == page) {
            Some(way) if set[way & (WAYS - 1)].stamp >= threshold => return None,
            Some(way) => way,
            None => set.iter().position(|s| s.stamp < threshold)?,
        };
        let s = &mut set[way & (WAYS - 1)];
        let (base, b) = pack(pde, pte);
        let deny = self.deny[(b & TAG_INDEX) as usize];
        if K != 0 && deny >> (K & 3) & 1 != 0 {
            return None;
        }
        // `Self::stamp`, on the fields (the slot borrows the 4 KiB class).
        let stamp = if b & bits::G != 0 {
            self.global_stamp
        } else {
            threshold
        };
        counts.misses += 1;
        s.page = page;
        Some(quick_put(
            s,
            &mut self.fast,
            self.gen,
            stamp,
            lin,
            base,
            b,
            deny,
        ))
    }

    /// [`Self::miss_quick`] into a full set (a streaming access pattern's usual miss): the
    /// entry replaces the victim [`Self::evict_into`] would choose, and the physical
    /// address comes back. The hardware geometry loses the victim, counted in the TLB's
    /// and in `evictions` (the CPU's counter); the slot's fast tags are not rewritten,
    /// since those of a 4 KiB slot are never read (the front table holds them). Inline
    /// in the scan, its one caller: the retry of a streaming reader lands here every time.
    #[inline(always)]
    fn quick_evict(
        &mut self,
        lin: u64,
        base: u64,
        b: u64,
        deny: u64,
        counts: &mut QuickCounts,
    ) -> u64 {
        counts.misses += 1;
        if !self.geometry.evicts() {
            return self.quick_spill(lin, base, b, deny);
        }
        self.evict_4k(lin, base, b, deny, counts)
    }

    /// [`Self::quick_evict`] of a geometry that evicts: the victim is lost.
    #[inline(always)]
    fn evict_4k(
        &mut self,
        lin: u64,
        base: u64,
        b: u64,
        deny: u64,
        counts: &mut QuickCounts,
    ) -> u64 {
        let page = lin & !0xfff;
        let addend = base.wrapping_sub(page);
        let stamp = self.stamp(b & bits::G != 0);
        let way = xorshift(&mut self.seed) % WAYS;
        let s = &mut self.classes[0].set_mut_at(lin >> 12)[way];
        let old = s.page;
        s.addend = addend;
        s.page = page;
        s.stamp = stamp;
        s.bits = b;
        // The victim's front entry first: it may be the new page's too.
        self.fast.drop_page(old);
        self.fast.set(page, page | self.gen | deny, addend);
        self.evictions += 1;
        counts.evictions += 1;
        lin.wrapping_add(addend)
    }

    /// [`Self::quick_evict`] of the unbounded geometry: the victim goes to the spill.
    #[cold]
    #[inline(never)]
    fn quick_spill(&mut self, lin: u64, base: u64, b: u64, deny: u64) -> u64 {
        let page = lin & !0xfff;
        let addend = base.wrapping_sub(page);
        let slot = Slot {
            tags: tags(b, page | self.gen, self.masks),
            addend,
            page,
            stamp: self.stamp(b & bits::G != 0),
            bits: b,
        };
        self.fast.set(page, page | self.gen | deny, addend);
        let lost = self.evict_into(0, lin, slot);
        debug_assert!(!lost, "the unbounded geometry spills");
        lin.wrapping_add(addend)
    }

    /// The slot stamp a new entry gets.
    #[inline(always)]
    fn stamp(&self, global: bool) -> u64 {
        if global {
            self.global_stamp
        } else {
            self.threshold
        }
    }

    fn next_victim(&mut self) -> usize {
        xorshift(&mut self.seed) % WAYS
    }

    /// Cache a translation for the page containing `linear`. Returns whether an entry was
    /// evicted (lost) to make room.
    pub fn insert(&mut self, linear: u64, entry: TlbEntry) -> bool {
        self.fill(linear, entry.page_base.as_u64(), entry.size, entry.bits())
    }

    /// The miss path's insert: [`Self::fill`], knowing from [`Self::find_packed`] (nothing
    /// changed the TLB in between) where the page is in its 4 KiB set: way `hint`, or
    /// nowhere (`hint == WAYS`). `hint > WAYS` knows nothing.
    #[inline(always)]
    pub(crate) fn fill_hinted(&mut self, linear: u64, w: Walked, hint: usize) -> bool {
        if hint > WAYS {
            return self.fill(linear, w.base, w.size, w.bits);
        }
        if w.size != PageSize::Size4K {
            return self.fill(linear, w.base, w.size, w.bits);
        }
        // `find_packed` found no valid entry for the page, in the spill either: nothing
        // to drop. The way: the page's stale one, else the first invalid one.
        let page = linear & !0xfff;
        let threshold = self.threshold;
        let stamp = self.stamp(w.bits & bits::G != 0);
        let set = self.classes[0].set_mut_at(linear >> 12);
        let way = if hint < WAYS {
            hint
        } else {
            match set.iter().position(|s| s.stamp < threshold) {
                Some(way) => way,
                None => return self.fill(linear, w.base, w.size, w.bits),
            }
        };
        let s = &mut set[way & (WAYS - 1)];
        let addend = w.base.wrapping_sub(page);
        s.addend = addend;
        s.page = page;
        s.stamp = stamp;
        s.bits = w.bits;
        self.set_fast(page, w.bits, addend);
        false
    }

    /// Cache what a walk found for the page containing `linear`.
    /// Returns whether an entry was evicted (lost) to make room.
    #[inline(never)]
    pub(crate) fn fill(&mut self, linear: u64, base: u64, size: PageSize, b: u64) -> bool {
        let c = class_of(size);
        debug_assert_eq!(
            self.classes[c].shift,
            u32::from(size.shift()),
            "TLB mode not set"
        );
        let page = self.classes[c].page(linear);
        if self.has_spill() {
            self.spill_local.remove(&(c, page));
            self.spill_global.remove(&(c, page));
        }
        if c != 0 {
            let shift = self.classes[c].shift;
            self.widen_big(page, shift);
        }
        self.extra |= [0, LARGE, HUGE][c];
        let slot = Slot {
            tags: tags(b, page | self.gen, self.masks),
            addend: base.wrapping_sub(page),
            page,
            stamp: self.stamp(b & bits::G != 0),
            bits: b,
        };
        let threshold = self.threshold;
        let set = self.classes[c].set_mut(linear);
        // The way already caching the page (valid or not: a set holds a page at most
        // once), else the first invalid one.
        let mut free = WAYS;
        for (way, s) in set.iter().enumerate() {
            if s.page == page {
                free = way;
                break;
            }
            if free == WAYS && s.stamp < threshold {
                free = way;
            }
        }
        if c == 0 {
            self.set_fast(page, b, slot.addend);
        }
        let set = self.classes[c].set_mut(linear);
        if free < WAYS {
            set[free] = slot;
            false
        } else {
            self.evict_into(c, linear, slot)
        }
    }

    /// Put `slot` in place of a pseudo-randomly chosen way of a full set: the old entry
    /// is lost (hardware geometry, returns true) or spilled (unbounded geometry).
    #[cold]
    #[inline(never)]
    fn evict_into(&mut self, c: usize, linear: u64, slot: Slot) -> bool {
        let way = self.next_victim();
        let old = std::mem::replace(&mut self.classes[c].set_mut(linear)[way], slot);
        if c == 0 {
            self.drop_fast(old.page);
        }
        if self.geometry.evicts() {
            self.evictions += 1;
            return true;
        }
        let e = self.entry_of(c, &old);
        self.extra |= SPILL;
        (self.big_lo, self.big_span) = (0, u64::MAX);
        let spill = if e.global {
            &mut self.spill_global
        } else {
            &mut self.spill_local
        };
        spill.insert((c, old.page), e);
        false
    }

    /// Drop every entry covering `linear`, global or not, of any page size (INVLPG).
    /// Returns how many entries went.
    #[inline(always)]
    pub fn invalidate_page(&mut self, linear: u64) -> usize {
        // The other classes first, so that the front-table store is the last word of
        // INVLPG: an inlined access that follows knows its entry is empty and tests the
        // hit without loading it.
        let mut dropped = 0;
        if self.maybe_extra(linear) {
            dropped += self.invalidate_large(linear);
        }
        let threshold = self.threshold;
        let page = linear & !0xfff;
        // A set holds a page at most once (see `fill`).
        let set = self.classes[0].set_mut_at(linear >> 12);
        if let Some(s) = set.iter_mut().find(|s| s.page == page) {
            dropped += usize::from(s.stamp >= threshold);
            // Invalid, and out of the front table (below); the slot keeps its page, and
            // its address is noted, so the miss that usually follows refills it without a
            // scan.
            s.stamp = 0;
            self.invalidated = s as *const Slot as u64;
        }
        self.fast.clear(page);
        dropped
    }

    /// [`Self::invalidate_page`] of a page whose entry is most likely in the slot the last
    /// INVLPG noted (a kmap slot's: INVLPG at each unmap, the quick miss's refill of the
    /// noted slot at the next access through it): that slot first, which if it holds the
    /// page is the page's (a set holds a page at most once, and only in the page's set);
    /// else, or when the page may be cached outside the 4 KiB array, the whole
    /// [`Self::invalidate_page`]. The same entries go either way, and the note stays.
    #[inline(always)]
    pub fn invalidate_noted(&mut self, linear: u64) -> usize {
        let page = linear & !0xfff;
        let (threshold, extra) = (self.threshold, self.maybe_extra(linear));
        let noted = self.classes[0].slot_at(self.invalidated);
        if noted.page != page || extra {
            return self.invalidate_page(linear);
        }
        let dropped = usize::from(noted.stamp >= threshold);
        noted.stamp = 0;
        self.fast.clear(page);
        dropped
    }

    /// A kmap slot's refill and its INVLPG as one step ([`crate::SlotSession::read_invlpg`]):
    /// whether the miss of an access with fast tag `K` to `lin`, whose walk packs to bits
    /// `b`, refills the slot the last INVLPG noted, exactly as [`Self::miss_quick`] would:
    /// that slot holds the page, invalid (so no other entry caches it: a set holds a page
    /// at most once), no large page or spill may cover `lin`, and the new entry lets the
    /// access through. Nothing changes.
    #[inline(always)]
    pub(crate) fn slot_refills<const K: usize>(&mut self, lin: u64, b: u64) -> bool {
        if self.near_big(lin) {
            return false;
        }
        let threshold = self.threshold;
        let deny = self.deny[(b & TAG_INDEX) as usize];
        let noted = self.classes[0].slot_at(self.invalidated);
        noted.page == lin & !0xfff
            && noted.stamp < threshold
            && (K == 0 || deny >> (K & 3) & 1 == 0)
    }

    /// Whether an entry with packed bits `b` lets an access of fast tag `K` through
    /// without a walk (a supervisor read always).
    #[inline(always)]
    pub(crate) fn allows<const K: usize>(&self, b: u64) -> bool {
        K == 0 || self.deny[(b & TAG_INDEX) as usize] >> (K & 3) & 1 == 0
    }

    /// What the refill [`Self::slot_refills`] allowed and the INVLPG right after it leave
    /// ([`quick_put`], then [`Self::invalidate_noted`]): the noted slot keeps the entry's
    /// addend and bits, invalid, and the page's front entry its addend, empty. The note
    /// stays.
    #[inline(always)]
    pub(crate) fn slot_refill_flush(&mut self, lin: u64, base: u64, b: u64) {
        let page = lin & !0xfff;
        let addend = base.wrapping_sub(page);
        let s = self.classes[0].slot_at(self.invalidated);
        debug_assert_eq!(s.page, page);
        s.addend = addend;
        s.bits = b;
        s.stamp = 0;
        self.fast.set(page, FRONT_EMPTY, addend);
    }

    /// Whether a translation of `lin` (no CR3 write, no flush) has left what a remembered
    /// slot step ([`crate::SlotSession`]) on the slot page `slot` depends on in the TLB:
    /// `lin`'s page has another set and another front entry than the slot's (its fill,
    /// eviction or spill stays in its own set or class), and the span of large pages,
    /// which that fill may have widened, does not reach the slot (the step's refill would
    /// then take the full path: [`Self::slot_refills`]).
    #[inline(always)]
    pub(crate) fn slot_apart(&self, slot: u64, lin: u64) -> bool {
        // Both masks are low bits: pages differing under the smaller one differ under
        // both.
        let both = self.classes[0].set_mask as u64 & (FAST as u64 - 1);
        (slot ^ lin) >> 12 & both != 0 && !self.near_big(slot)
    }

    /// A miss whose walk faults on a not-present entry, for the CPU's quick fault: `false`
    /// (changing nothing) if a valid 4 KiB entry caches the page, which the full slow path
    /// must then see; else the page's invalidation that a page fault makes
    /// ([`Self::invalidate_page`], whose large-page part the caller has ruled out with
    /// [`Self::near_big`]) and `true`.
    #[inline(always)]
    pub(crate) fn miss_absent(&mut self, linear: u64) -> bool {
        debug_assert!(!self.near_big(linear), "outside the large-page span only");
        let threshold = self.threshold;
        let page = linear & !0xfff;
        let set = self.classes[0].set_mut_at(linear >> 12);
        // A set holds a page at most once (see `fill`).
        if let Some(s) = set.iter_mut().find(|s| s.page == page) {
            if s.stamp >= threshold {
                return false;
            }
            s.stamp = 0;
        }
        self.fast.clear(page);
        true
    }

    /// [`Self::invalidate_page`] in the large and 1 GiB classes and the spill.
    #[inline(never)]
    fn invalidate_large(&mut self, linear: u64) -> usize {
        let mut dropped = 0;
        for c in 1..CLASSES {
            if !self.in_use(c) {
                continue;
            }
            let threshold = self.threshold;
            let class = &mut self.classes[c];
            let page = class.page(linear);
            if let Some(s) = class.set_mut(linear).iter_mut().find(|s| s.page == page) {
                dropped += usize::from(s.stamp >= threshold);
                *s = EMPTY;
            }
        }
        if self.has_spill() {
            dropped += self.invalidate_spilled(linear);
        }
        dropped
    }

    #[cold]
    fn invalidate_spilled(&mut self, linear: u64) -> usize {
        let mut dropped = 0;
        for c in 0..CLASSES {
            let key = (c, self.classes[c].page(linear));
            for spill in [&mut self.spill_local, &mut self.spill_global] {
                dropped += usize::from(spill.remove(&key).is_some());
            }
        }
        dropped
    }

    /// A new fast-path generation: every tag stops matching until the slow path retags
    /// its entry. Once every [`GEN_MAX`] changes the tags are reset, so an old tag can
    /// never match a reused generation.
    #[inline]
    fn next_gen(&mut self) {
        if self.gen == GEN_MAX {
            self.reset_tags();
        } else {
            self.gen += GEN_STEP;
        }
    }

    #[cold]
    #[inline(never)]
    fn reset_tags(&mut self) {
        self.gen = GEN_STEP;
        self.fast = FastTable::EMPTY;
        for class in &mut self.classes {
            for s in class.used_mut() {
                s.tags = [NO_TAG; 4];
            }
        }
    }

    /// Drop every non-global entry (CR3 write): O(1), the arrays are not walked.
    pub fn flush_non_global(&mut self) {
        self.threshold += 1;
        if self.threshold & LOCAL_MASK == LOCAL_MASK {
            self.renumber(true);
        }
        self.global_stamp = self.threshold | LOCAL_MASK;
        self.next_gen();
        if !self.spill_local.is_empty() {
            self.spill_local.clear();
        }
    }

    /// Drop everything (CR4.PGE toggle, paging mode change): O(1) as well.
    pub fn flush_all(&mut self) {
        self.threshold = ((self.threshold >> 32) + 1) << 32;
        if self.threshold >> 32 == LOCAL_MASK {
            self.renumber(false);
        }
        self.global_stamp = self.threshold | LOCAL_MASK;
        self.next_gen();
        self.extra = 0;
        (self.big_lo, self.big_span) = (u64::MAX, 0);
        self.spill_local.clear();
        self.spill_global.clear();
    }

    /// Start counting from epoch 1 again (once every 2^32 CR3 writes or full flushes),
    /// keeping the valid global entries if `keep_global`.
    #[cold]
    fn renumber(&mut self, keep_global: bool) {
        let old = self.threshold;
        self.threshold = 1 << 32;
        let global_stamp = self.threshold | LOCAL_MASK;
        for class in &mut self.classes {
            for s in class.used_mut() {
                let global = s.bits & bits::G != 0;
                let keep = keep_global && global && s.stamp >= (old & !LOCAL_MASK);
                s.stamp = if keep { global_stamp } else { 0 };
            }
        }
    }

    /// Follow the control registers: the large-page class holds 4 MiB pages in 2-level
    /// paging and 2 MiB pages otherwise, and the write tags depend on CR0.WP. Called by the
    /// CPU after every control-register write.
    pub fn set_mode(&mut self, format: Option<Format>, wp: bool) {
        let shift = u32::from(match format {
            Some(Format::TwoLevel) => PageSize::Size4M.shift(),
            _ => PageSize::Size2M.shift(),
        });
        if self.classes[1].shift != shift {
            // Only a mode change gets here, and the CPU flushes on those anyway.
            self.classes[1].used_mut().for_each(|s| *s = EMPTY);
            self.spill_local.retain(|k, _| k.0 != 1);
            self.spill_global.retain(|k, _| k.0 != 1);
            self.classes[1].shift = shift;
        }
        let masks = &TAG_MASKS[usize::from(wp)];
        if !std::ptr::eq(masks, self.masks) {
            // The write tags change: let the slow path retag every entry.
            self.masks = masks;
            self.deny = DENY[usize::from(wp)];
            self.next_gen();
        }
    }

    fn valid_slots(&self) -> impl Iterator<Item = &Slot> {
        self.classes
            .iter()
            .flat_map(Class::used)
            .filter(|s| s.page != NO_PAGE && s.stamp >= self.threshold)
    }

    /// Number of cached translations (walks the arrays: for tests and reports).
    pub fn len(&self) -> usize {
        self.valid_slots().count() + self.spill_local.len() + self.spill_global.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of cached global translations.
    pub fn global_len(&self) -> usize {
        self.valid_slots().filter(|s| s.bits & bits::G != 0).count() + self.spill_global.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GEOMETRIES: [TlbGeometry; 2] = [TlbGeometry::Core2, TlbGeometry::Unbounded];

    fn entry(base: u64, size: PageSize, global: bool) -> TlbEntry {
        TlbEntry {
            page_base: PhysAddr::new(base),
            size,
            perms: Perms::ALL,
            global,
            dirty: false,
        }
    }

    fn tlb(g: TlbGeometry, format: Format) -> Tlb {
        let mut t = Tlb::with_geometry(g, 1);
        t.set_mode(Some(format), true);
        t
    }

    #[test]
    fn lookup_by_page_size() {
        for g in GEOMETRIES {
            let mut t = tlb(g, Format::TwoLevel);
            t.insert(0xc040_1234, entry(0x40_0000, PageSize::Size4M, true));
            t.insert(0x0804_8123, entry(0x12_3000, PageSize::Size4K, false));
            let e = t.lookup(0xc07f_ffff).unwrap();
            assert_eq!(e.phys(0xc07f_ffff), PhysAddr::new(0x7f_ffff));
            assert_eq!(t.hit(0xc07f_ffff, 0), Some(0x7f_ffff));
            assert!(t.lookup(0xc080_0000).is_none());
            assert_eq!(t.hit(0x0804_8fff, 0), Some(0x12_3fff));
            assert_eq!(t.hit(0x0804_8fff, 1), None, "clean: a write walks");
            assert!(t.lookup(0x0804_9000).is_none());
        }
    }

    #[test]
    fn invalidation() {
        for g in GEOMETRIES {
            let mut t = tlb(g, Format::TwoLevel);
            t.insert(0xc040_0000, entry(0x40_0000, PageSize::Size4M, true));
            t.insert(0x1000, entry(0x5000, PageSize::Size4K, false));
            t.insert(0x2000, entry(0x6000, PageSize::Size4K, true));
            assert_eq!((t.len(), t.global_len()), (3, 2));
            t.flush_non_global();
            assert_eq!(t.len(), 2);
            assert!(t.lookup(0x1000).is_none());
            // INVLPG anywhere inside the large page drops the whole entry
            assert_eq!(t.invalidate_page(0xc07f_f000), 1);
            assert!(t.lookup(0xc040_0000).is_none());
            assert_eq!(t.invalidate_page(0xc07f_f000), 0);
            t.flush_all();
            assert!(t.is_empty());
        }
    }

    #[test]
    fn reinserting_with_other_globalness_keeps_one_entry() {
        for g in GEOMETRIES {
            let mut t = tlb(g, Format::Pae);
            t.insert(0xc000_0000, entry(0x1000, PageSize::Size4K, true));
            t.insert(0xc000_0000, entry(0x2000, PageSize::Size4K, false));
            assert_eq!(t.len(), 1);
            assert_eq!(t.global_len(), 0);
            assert_eq!(
                t.lookup(0xc000_0123).map(|e| e.page_base.as_u64()),
                Some(0x2000)
            );
            t.flush_non_global();
            assert!(t.is_empty());
        }
    }

    #[test]
    fn a_full_set_evicts_on_core2_and_spills_on_unbounded() {
        // Five pages 64 pages apart share a set of the 64-set 4 KiB array.
        let pages: Vec<u64> = (0..5).map(|i| 0x1000_0000 + i * 64 * 4096).collect();
        for g in GEOMETRIES {
            let mut t = tlb(g, Format::Pae);
            let lost: usize = pages
                .iter()
                .map(|&p| usize::from(t.insert(p, entry(p, PageSize::Size4K, false))))
                .sum();
            let kept = pages.iter().filter(|&&p| t.lookup(p).is_some()).count();
            match g {
                TlbGeometry::Core2 => assert_eq!((lost, kept, t.evictions()), (1, 4, 1)),
                TlbGeometry::Unbounded => assert_eq!((lost, kept, t.evictions()), (0, 5, 0)),
            }
        }
        // Spilled entries obey flushes like the others.
        let mut t = Tlb::with_geometry(TlbGeometry::Unbounded, 1);
        t.set_mode(Some(Format::Pae), true);
        for i in 0..6u64 {
            let p = i * 1024 * 4096;
            t.insert(p, entry(p, PageSize::Size4K, i % 2 == 0));
        }
        assert_eq!((t.len(), t.global_len()), (6, 3));
        t.flush_non_global();
        assert_eq!((t.len(), t.global_len()), (3, 3));
        assert_eq!(t.invalidate_page(4 * 1024 * 4096), 1);
        assert!(t.find(0, false).is_some(), "a spilled entry comes back");
        t.flush_all();
        assert!(t.is_empty());
    }

    #[test]
    fn cr3_counter_wrap_keeps_globals() {
        let mut t = tlb(TlbGeometry::Core2, Format::Pae);
        t.insert(0xc000_0000, entry(0x1000, PageSize::Size4K, true));
        t.insert(0x0800_0000, entry(0x2000, PageSize::Size4K, false));
        t.threshold |= LOCAL_MASK - 1;
        t.flush_non_global();
        assert_eq!(t.threshold, 1 << 32, "renumbered");
        assert_eq!((t.len(), t.global_len()), (1, 1));
        t.insert(0x0800_0000, entry(0x2000, PageSize::Size4K, false));
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn write_tags_follow_cr0_wp() {
        let mut t = tlb(TlbGeometry::Core2, Format::Pae);
        let ro = TlbEntry {
            perms: Perms {
                writable: false,
                ..Perms::ALL
            },
            dirty: true,
            ..entry(0x5000, PageSize::Size4K, false)
        };
        t.insert(0x3000, ro);
        assert_eq!(t.hit(0x3000, 1), None);
        t.set_mode(Some(Format::Pae), false);
        assert_eq!(t.hit(0x3000, 0), None, "a new generation: retag first");
        assert!(t.find(0x3000, false).is_some(), "the slow path retags");
        assert_eq!(t.hit(0x3000, 1), Some(0x5000), "WP=0: supervisor may write");
        assert_eq!(t.hit(0x3000, 3), None, "never the user");
    }
}
