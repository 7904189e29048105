//! Physical memory: the simulated RAM, up to 64 GiB, backed lazily by the host.
//!
//! The whole physical address space of the machine, from 0 to the end of the highest RAM
//! bank, is one anonymous host mapping reserved without swap accounting, so a 64 GiB machine
//! costs the host nothing until the simulated kernel touches a page (the host kernel then
//! supplies a zeroed page, just as RAM reads zero after reset in our model). A physical
//! address is its own offset in that mapping: the page walk reads a table entry with one
//! load from `base + pa`, not a search of the bank list.
//!
//! QEMU's `pc` machine leaves holes (the legacy VGA window below 1 MiB, the PCI hole below
//! 4 GiB), which must answer with a bus error, never with zeroes. The test for them is a
//! table of 2 MiB granules, one byte each: a granule wholly inside one bank is
//! [`Granule::Ram`] and accesses inside it need nothing else; only accesses touching a
//! granule that is partly RAM (or crossing granules) scan the banks. The hole part of the
//! mapping is never touched, so it costs address space only (1 GiB of it for the PCI hole).
//! The page walk's table reads test first against the longest run of all-RAM granules
//! (one unsigned compare: where a booted kernel's page tables live, in low memory), and
//! use the granule table, out of line, only outside it. The CPU's quick miss, which takes
//! the full walk for any entry it cannot use as it is, reads with one compare against the
//! end of the last bank ([`PhysMem::read_walk`]): a hole reads as zero, a not-present
//! entry, so the full walk then reports its bus error.
//!
//! One run of page-table entries can be *pinned* ([`PhysMem::pin_pte_window`]): a fixed
//! 32 KiB window of the direct map, checked once, whose entries are then read and written
//! by index with no range test (kmap_local's slot PTEs, written twice per mapping). An
//! index is masked to the window, so no index can leave it.

use crate::addr::{Pfn, PhysAddr, PAGE_SIZE};
use memmap2::{MmapMut, MmapOptions};

/// log2 of the granule the hole test works in.
const GRANULE_SHIFT: u32 = 21;
const GRANULE: u64 = 1 << GRANULE_SHIFT;
/// The highest physical address span the host mapping may cover (MAXPHYADDR 40).
const MAX_SPAN: u64 = 1 << 40;
/// Bytes of the pinned PTE window ([`PhysMem::pin_pte_window`]): every kmap_local slot PTE
/// of a 64-CPU kernel with DEBUG_KMAP_LOCAL (33 slots × 64 CPUs × 8 bytes) fits, wherever
/// an 8-byte-aligned window starts below them.
pub const PTE_WINDOW_BYTES: u64 = 32 << 10;

/// What one 2 MiB granule of the physical address space holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Granule {
    /// No RAM at all.
    Hole = 0,
    /// Part RAM, part hole: accesses check the banks.
    Mixed = 1,
    /// RAM throughout.
    Ram = 2,
}

/// A contiguous range of physical RAM.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RamBank {
    pub start: PhysAddr,
    pub len: u64,
}

impl RamBank {
    pub fn end(&self) -> PhysAddr {
        self.start + self.len
    }
    fn contains(&self, pa: u64, len: u64) -> bool {
        pa >= self.start.as_u64() && pa.saturating_add(len) <= self.end().as_u64()
    }
}

/// A physical access that no RAM answers, or that kernel code made outside its direct map.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("physical access of {len} bytes at {addr:#x} {}", kind.describe())]
pub struct BusError {
    pub addr: u64,
    pub len: u64,
    pub kind: BusErrorKind,
}

/// Why a physical access failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BusErrorKind {
    /// No RAM at that address (a hole of the pc machine, or beyond the last bank).
    NoRam,
    /// RAM, but above the kernel's direct map: kernel code must map it (kmap, vmalloc) and
    /// reach it through a CPU.
    NotDirectMapped,
}

impl BusErrorKind {
    fn describe(self) -> &'static str {
        match self {
            BusErrorKind::NoRam => "does not hit RAM",
            BusErrorKind::NotDirectMapped => {
                "is above the kernel's direct map (high memory is reached only through a mapping)"
            }
        }
    }
}

/// The machine's RAM.
pub struct PhysMem {
    /// The physical address space from 0 to the end of the last bank; offset = address.
    backing: MmapMut,
    banks: Vec<RamBank>,
    /// One [`Granule`] per 2 MiB of `backing`.
    granules: Box<[Granule]>,
    /// The longest run of all-RAM granules, as (first byte, length), and the longest one
    /// outside it: the page walk's table reads inside either need one unsigned compare
    /// each instead of the granule table. Two, because a big PAE machine keeps its tables
    /// in both: the kernel's (and low user PTE pages) in the bank below 4 GiB, highmem
    /// PTE pages mostly in the longer bank above it.
    table_run: (u64, u64),
    table_run2: (u64, u64),
    /// The end of the last bank: below it the mapping reads RAM or, in a hole, zero
    /// ([`PhysMem::read_walk`]).
    span: u64,
    /// The granule table as kernel code sees RAM: [`Granule::Ram`] only below
    /// `window_end`, the granule holding it [`Granule::Mixed`] (see [`PhysMem::set_window_end`]).
    window_granules: Box<[Granule]>,
    /// The end of the kernel's direct map; the public accessors refuse anything above.
    window_end: u64,
    /// The longest all-RAM run inside the window: [`PhysMem::read_pte`] / `write_pte`'s one
    /// range test (the kernel's own tables are low memory even where the longest RAM run,
    /// `table_run`, is above 4 GiB).
    kernel_run: (u64, u64),
    /// Offset in `backing` of the pinned PTE window: [`PTE_WINDOW_BYTES`] of the direct map
    /// checked by [`PhysMem::pin_pte_window`], or — unpinned — the spare tail of the mapping
    /// past the last bank, which is no RAM.
    pte_window: usize,
    /// The window's first byte in `backing`, so an entry's address is one masked add.
    pte_window_ptr: WindowPtr,
}

/// A page of RAM that [`PhysMem::table_page`] found in the longest runs of all-RAM
/// granules, borrowed: its entries are loaded and stored with no range test (an offset is
/// taken inside the page, aligned to the entry).
pub(crate) struct TablePage<'m>(&'m mut [u8; PAGE_SIZE as usize]);

impl TablePage<'_> {
    /// The `N`-byte (4 or 8) little-endian entry at offset `off`.
    #[inline(always)]
    pub(crate) fn load<const N: usize>(&self, off: u64) -> u64 {
        let o = (off & 0xfff & !(N as u64 - 1)) as usize;
        match self.0[o..].first_chunk::<8>() {
            Some(b) if N == 8 => u64::from_le_bytes(*b),
            _ => match self.0[o..].first_chunk::<4>() {
                Some(b) => u64::from(u32::from_le_bytes(*b)),
                None => 0,
            },
        }
    }

    /// The store of `v` as an `N`-byte entry at offset `off`, as [`Self::load`].
    #[inline(always)]
    pub(crate) fn store<const N: usize>(&mut self, off: u64, v: u64) {
        let o = (off & 0xfff & !(N as u64 - 1)) as usize;
        if N == 8 {
            if let Some(b) = self.0[o..].first_chunk_mut::<8>() {
                *b = v.to_le_bytes();
            }
        } else if let Some(b) = self.0[o..].first_chunk_mut::<4>() {
            *b = (v as u32).to_le_bytes();
        }
    }
}

/// A pointer into the backing mapping of the [`PhysMem`] that holds it.
struct WindowPtr(*mut u8);

// SAFETY: the pointer is into the mapping its `PhysMem` owns (`MmapMut`, itself `Send` and
// `Sync`), and `PhysMem` writes through it only with `&mut self`: moving or sharing the
// `PhysMem` moves or shares the pointer with the mapping it points into.
unsafe impl Send for WindowPtr {}
// SAFETY: as above.
unsafe impl Sync for WindowPtr {}

impl std::fmt::Debug for PhysMem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PhysMem")
            .field("banks", &self.banks)
            .finish()
    }
}

fn invalid(msg: &'static str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, msg)
}

/// The granule table for `banks` over `span` bytes of physical address space.
fn granule_table(banks: &[RamBank], span: u64) -> Box<[Granule]> {
    let mut table = vec![Granule::Hole; span.div_ceil(GRANULE) as usize];
    for (i, g) in table.iter_mut().enumerate() {
        let start = i as u64 * GRANULE;
        let overlaps =
            |b: &&RamBank| b.start.as_u64() < start + GRANULE && b.end().as_u64() > start;
        if banks.iter().any(|b| b.contains(start, GRANULE)) {
            *g = Granule::Ram;
        } else if banks.iter().any(|b| overlaps(&b)) {
            *g = Granule::Mixed;
        }
    }
    table.into_boxed_slice()
}

/// The longest run of [`Granule::Ram`] in `table`, as (first byte, length in bytes).
fn longest_ram_run(table: &[Granule]) -> (u64, u64) {
    longest_ram_run_except(table, (0, 0))
}

/// The longest run of [`Granule::Ram`] in `table` that does not overlap `except` (bytes).
fn longest_ram_run_except(table: &[Granule], except: (u64, u64)) -> (u64, u64) {
    let (mut best, mut start) = ((0, 0), 0);
    for (i, g) in table.iter().enumerate() {
        let byte = i as u64 * GRANULE;
        if *g != Granule::Ram || byte.wrapping_sub(except.0) < except.1 {
            start = i + 1;
        } else if i + 1 - start > best.1 {
            best = (start, i + 1 - start);
        }
    }
    (best.0 as u64 * GRANULE, best.1 as u64 * GRANULE)
}

/// The little-endian entry of `S` (4 or 8) bytes at `p`.
///
/// # Safety
/// `p` and its `S` bytes are inside the backing mapping (unaligned is allowed).
#[inline(always)]
unsafe fn entry_read<const S: usize>(p: *const u8) -> u64 {
    // SAFETY: the caller's.
    unsafe {
        if S == 4 {
            u64::from(u32::from_le(p.cast::<u32>().read_unaligned()))
        } else {
            u64::from_le(p.cast::<u64>().read_unaligned())
        }
    }
}

/// Store the little-endian entry `v` of `S` (4 or 8) bytes at `p`.
///
/// # Safety
/// As [`entry_read`], and nothing else borrows those bytes.
#[inline(always)]
unsafe fn entry_write<const S: usize>(p: *mut u8, v: u64) {
    // SAFETY: the caller's.
    unsafe {
        if S == 4 {
            p.cast::<u32>().write_unaligned((v as u32).to_le());
        } else {
            p.cast::<u64>().write_unaligned(v.to_le());
        }
    }
}

impl PhysMem {
    /// Reserve host memory for the given banks (start, length), in ascending order and not
    /// overlapping, all below 1 TiB.
    pub fn new(banks: &[(PhysAddr, u64)]) -> std::io::Result<Self> {
        let mut out: Vec<RamBank> = Vec::with_capacity(banks.len());
        for &(start, len) in banks {
            if out.last().is_some_and(|b| b.end() > start) {
                return Err(invalid("RAM banks overlap or are not in ascending order"));
            }
            if start
                .as_u64()
                .checked_add(len)
                .is_none_or(|end| end > MAX_SPAN)
            {
                return Err(invalid("RAM bank beyond 1 TiB"));
            }
            out.push(RamBank { start, len });
        }
        let span = out.last().map_or(0, |b| b.end().as_u64());
        // A spare tail beyond the span (at least a page): an entry read that trusts its
        // caller's alignment (`read_table_u32`/`_u64`) cannot leave the mapping even if the
        // trust is misplaced, and the unpinned PTE window lies there. (This also keeps a
        // zero-RAM machine's mapping non-empty, which mmap requires.)
        let backing = MmapOptions::new()
            .len((span + PTE_WINDOW_BYTES.max(PAGE_SIZE)) as usize)
            .no_reserve_swap()
            .map_anon()?;
        let granules = granule_table(&out, span);
        let mut mem = PhysMem {
            backing,
            table_run: longest_ram_run(&granules),
            table_run2: longest_ram_run_except(&granules, longest_ram_run(&granules)),
            span,
            kernel_run: longest_ram_run(&granules),
            window_granules: granules.clone(),
            granules,
            banks: out,
            window_end: span,
            pte_window: span as usize,
            pte_window_ptr: WindowPtr(std::ptr::null_mut()),
        };
        mem.set_pte_window(span as usize);
        Ok(mem)
    }

    /// The RAM banks, ascending.
    pub fn banks(&self) -> &[RamBank] {
        &self.banks
    }

    /// Total bytes of RAM.
    pub fn size(&self) -> u64 {
        self.banks.iter().map(|b| b.len).sum()
    }

    /// Whether the whole frame is RAM.
    pub fn is_ram(&self, pfn: Pfn) -> bool {
        self.hw_range(pfn.phys(), PAGE_SIZE).is_ok()
    }

    /// Narrow what kernel code reaches through this object's public accessors to
    /// `[0, end)`: the kernel's direct map (`max_low_pfn`), declared once its layout is
    /// known. The window only shrinks; nothing reopens it. Above it, kernel code gets
    /// [`BusErrorKind::NotDirectMapped`] and must map the page (kmap, kmap_local, vmalloc)
    /// and go through a CPU, whose page walk and A/D updates are hardware and see all RAM.
    pub fn set_window_end(&mut self, end: PhysAddr) {
        let end = end.as_u64().min(self.window_end);
        self.window_end = end;
        for (i, g) in self.window_granules.iter_mut().enumerate() {
            let start = i as u64 * GRANULE;
            if start >= end {
                *g = Granule::Hole;
            } else if start + GRANULE > end && *g == Granule::Ram {
                *g = Granule::Mixed;
            }
        }
        self.kernel_run = longest_ram_run(&self.window_granules);
        let spare = self.spare_tail();
        if self.pte_window != spare && self.pte_window as u64 + PTE_WINDOW_BYTES > end {
            self.set_pte_window(spare);
        }
    }

    /// The mapping's tail past the last bank (no RAM): where the unpinned PTE window lies.
    fn spare_tail(&self) -> usize {
        self.banks.last().map_or(0, |b| b.end().as_u64() as usize)
    }

    /// Pin the PTE window at `pa` (rounded down to 8 bytes): [`PTE_WINDOW_BYTES`] that must
    /// all be RAM of the direct map, checked here once; the window then answers
    /// [`Self::pte_window_write`] and its siblings by entry index. Returns the window's
    /// first byte. If the direct map later shrinks below the window's end, the window is
    /// unpinned (its accesses then touch no RAM).
    pub fn pin_pte_window(&mut self, pa: PhysAddr) -> Result<PhysAddr, BusError> {
        let base = pa.as_u64() & !7;
        self.range(PhysAddr::new(base), PTE_WINDOW_BYTES)?;
        self.set_pte_window(base as usize);
        Ok(PhysAddr::new(base))
    }

    /// Place the PTE window at `off` of the backing (checked RAM, or the spare tail).
    fn set_pte_window(&mut self, off: usize) {
        self.pte_window = off;
        // `off` is inside the mapping: the checked window, or the spare tail past the span.
        self.pte_window_ptr = WindowPtr(self.backing.as_mut_ptr().wrapping_add(off));
    }

    /// Entry `j` of the pinned window, entries of `S` bytes: `j` is taken modulo the
    /// window's entries, so the pointer stays inside it.
    #[inline(always)]
    fn pte_window_ptr<const S: usize>(&self, j: u64) -> *mut u8 {
        let entries = PTE_WINDOW_BYTES as usize / S;
        // Counted in entries, not bytes, so the scale stays in the address.
        self.pte_window_ptr
            .0
            .cast::<[u8; S]>()
            .wrapping_add(j as usize & (entries - 1))
            .cast::<u8>()
    }

    /// Read entry `j` (of `S` = 4 or 8 bytes) of the pinned PTE window.
    #[inline(always)]
    pub fn pte_window_read<const S: usize>(&self, j: u64) -> u64 {
        // SAFETY: the pointer is inside the window (checked RAM of the mapping, or the
        // mapping's spare tail) with its S bytes.
        unsafe { entry_read::<S>(self.pte_window_ptr::<S>(j)) }
    }

    /// Write entry `j` (of `S` = 4 or 8 bytes) of the pinned PTE window.
    #[inline(always)]
    pub fn pte_window_write<const S: usize>(&mut self, j: u64, v: u64) {
        // SAFETY: as in `pte_window_read`; `&mut self` makes the write exclusive.
        unsafe { entry_write::<S>(self.pte_window_ptr::<S>(j), v) }
    }

    /// Install `v` in entry `j` (of `S` = 4 or 8 bytes) of the pinned PTE window if it is
    /// empty (`pte_none`): the old entry, 0 when `v` was written.
    #[inline(always)]
    pub fn pte_window_fill_if_none<const S: usize>(&mut self, j: u64, v: u64) -> u64 {
        let p = self.pte_window_ptr::<S>(j);
        // SAFETY: as in `pte_window_write`.
        unsafe {
            let old = entry_read::<S>(p);
            if old == 0 {
                entry_write::<S>(p, v);
            }
            old
        }
    }

    /// The end of the kernel's direct map (the whole span until the kernel narrows it).
    pub fn window_end(&self) -> PhysAddr {
        PhysAddr::new(self.window_end)
    }

    /// The offset of `[pa, pa + len)` in the backing when it lies inside one all-RAM
    /// granule of `table`: the one test the hot paths pay.
    #[inline(always)]
    fn fast_in(table: &[Granule], pa: u64, len: u64) -> Option<usize> {
        match table.get((pa >> GRANULE_SHIFT) as usize) {
            Some(Granule::Ram) if (pa & (GRANULE - 1)) + len <= GRANULE => Some(pa as usize),
            _ => None,
        }
    }

    /// Kernel view: inside the direct map.
    #[inline(always)]
    fn fast_offset(&self, pa: u64, len: u64) -> Option<usize> {
        Self::fast_in(&self.window_granules, pa, len)
    }

    /// The slow path: accesses crossing granules or touching a partly-RAM one; `limit` is
    /// the window for kernel accesses, the span for the hardware's.
    #[cold]
    #[inline(never)]
    fn bank_range(
        &self,
        pa: u64,
        len: u64,
        limit: u64,
    ) -> Result<std::ops::Range<usize>, BusError> {
        // At most three banks on a pc machine: a linear scan beats a binary search.
        let kind = match self.banks.iter().find(|b| b.contains(pa, len)) {
            Some(_) if pa.checked_add(len).is_some_and(|e| e <= limit) => {
                return Ok(pa as usize..(pa + len) as usize)
            }
            Some(_) => BusErrorKind::NotDirectMapped,
            None => BusErrorKind::NoRam,
        };
        Err(BusError {
            addr: pa,
            len,
            kind,
        })
    }

    #[inline]
    fn range(&self, pa: PhysAddr, len: u64) -> Result<std::ops::Range<usize>, BusError> {
        match self.fast_offset(pa.as_u64(), len) {
            Some(off) => Ok(off..off + len as usize),
            None => self.bank_range(pa.as_u64(), len, self.window_end),
        }
    }

    /// Hardware view (the CPU after translation, the page walk): all RAM.
    #[inline]
    fn hw_range(&self, pa: PhysAddr, len: u64) -> Result<std::ops::Range<usize>, BusError> {
        match Self::fast_in(&self.granules, pa.as_u64(), len) {
            Some(off) => Ok(off..off + len as usize),
            None => self.bank_range(pa.as_u64(), len, u64::MAX),
        }
    }

    /// Read bytes at a physical address of the direct map.
    pub fn read(&self, pa: PhysAddr, buf: &mut [u8]) -> Result<(), BusError> {
        let r = self.range(pa, buf.len() as u64)?;
        buf.copy_from_slice(&self.backing[r]);
        Ok(())
    }

    /// Write bytes at a physical address of the direct map.
    pub fn write(&mut self, pa: PhysAddr, buf: &[u8]) -> Result<(), BusError> {
        let r = self.range(pa, buf.len() as u64)?;
        self.backing[r].copy_from_slice(buf);
        Ok(())
    }

    /// The hardware's read (a CPU access after translation): any RAM.
    pub(crate) fn hw_read(&self, pa: PhysAddr, buf: &mut [u8]) -> Result<(), BusError> {
        let r = self.hw_range(pa, buf.len() as u64)?;
        buf.copy_from_slice(&self.backing[r]);
        Ok(())
    }

    /// The hardware's write (a CPU access after translation): any RAM.
    pub(crate) fn hw_write(&mut self, pa: PhysAddr, buf: &[u8]) -> Result<(), BusError> {
        let r = self.hw_range(pa, buf.len() as u64)?;
        self.backing[r].copy_from_slice(buf);
        Ok(())
    }

    /// The hardware's fill (`rep stosb` after translation): any RAM.
    pub(crate) fn hw_fill(&mut self, pa: PhysAddr, len: u64, byte: u8) -> Result<(), BusError> {
        let r = self.hw_range(pa, len)?;
        self.backing[r].fill(byte);
        Ok(())
    }

    /// Load `N` little-endian bytes at `off` of the backing.
    #[inline(always)]
    fn load<const N: usize>(&self, off: usize) -> u64 {
        // SAFETY: callers pass an `off` that their granule test vouches lies with its N bytes
        // in a granule wholly inside a bank, hence inside the mapping; unaligned reads are
        // allowed.
        let p = unsafe { self.backing.as_ptr().add(off) };
        // SAFETY: as above.
        unsafe {
            if N == 4 {
                u64::from(u32::from_le(p.cast::<u32>().read_unaligned()))
            } else {
                u64::from_le(p.cast::<u64>().read_unaligned())
            }
        }
    }

    /// Store `N` little-endian bytes at `off` of the backing.
    #[inline(always)]
    fn store<const N: usize>(&mut self, off: usize, v: u64) {
        // SAFETY: as in `load`; `&mut self` makes the write exclusive.
        let p = unsafe { self.backing.as_mut_ptr().add(off) };
        // SAFETY: as above.
        unsafe {
            if N == 4 {
                p.cast::<u32>().write_unaligned((v as u32).to_le())
            } else {
                p.cast::<u64>().write_unaligned(v.to_le())
            }
        }
    }

    /// Read a little-endian `u32` of the direct map: one host load inside an all-RAM
    /// granule.
    #[inline(always)]
    pub fn read_u32(&self, pa: PhysAddr) -> Result<u32, BusError> {
        match self.fast_offset(pa.as_u64(), 4) {
            Some(off) => Ok(self.load::<4>(off) as u32),
            None => self.read_slow(pa, 4).map(|v| v as u32),
        }
    }

    /// Read a little-endian `u64` of the direct map, as [`Self::read_u32`].
    #[inline(always)]
    pub fn read_u64(&self, pa: PhysAddr) -> Result<u64, BusError> {
        match self.fast_offset(pa.as_u64(), 8) {
            Some(off) => Ok(self.load::<8>(off)),
            None => self.read_slow(pa, 8),
        }
    }

    /// The hardware's `u64` load (the PDPTE-register load): any RAM.
    pub(crate) fn hw_read_u64(&self, pa: PhysAddr) -> Result<u64, BusError> {
        match Self::fast_in(&self.granules, pa.as_u64(), 8) {
            Some(off) => Ok(self.load::<8>(off)),
            None => {
                let mut b = [0u8; 8];
                self.hw_read(pa, &mut b)?;
                Ok(u64::from_le_bytes(b))
            }
        }
    }

    /// Read the naturally aligned 4-byte table entry at `pa & !3` of the direct map.
    #[inline(always)]
    pub fn read_entry_u32(&self, pa: PhysAddr) -> Result<u32, BusError> {
        self.read_u32(PhysAddr::new(pa.as_u64() & !3))
    }

    /// Read the naturally aligned 8-byte table entry at `pa & !7` of the direct map.
    #[inline(always)]
    pub fn read_entry_u64(&self, pa: PhysAddr) -> Result<u64, BusError> {
        self.read_u64(PhysAddr::new(pa.as_u64() & !7))
    }

    /// The page walk's entry read for a `pa` the caller knows is 4-byte aligned (the walk's
    /// table addresses are): hardware, any RAM. Memory-safe even if it is not aligned (the
    /// mapping extends a page past the last granule), only the value would be wrong.
    #[inline(always)]
    pub(crate) fn read_table_u32(&self, pa: u64) -> Result<u32, BusError> {
        debug_assert_eq!(pa & 3, 0);
        if self.in_table_runs(pa) {
            return Ok(self.load::<4>(pa as usize) as u32);
        }
        self.read_table_outside(pa, 4).map(|v| v as u32)
    }

    /// [`Self::read_table_u32`] for 8-byte entries.
    #[inline(always)]
    pub(crate) fn read_table_u64(&self, pa: u64) -> Result<u64, BusError> {
        debug_assert_eq!(pa & 7, 0);
        if self.in_table_runs(pa) {
            return Ok(self.load::<8>(pa as usize));
        }
        self.read_table_outside(pa, 8)
    }

    /// Whether `pa` is in one of the two longest runs of all-RAM granules (`table_run`,
    /// `table_run2`).
    #[inline(always)]
    fn in_table_runs(&self, pa: u64) -> bool {
        pa.wrapping_sub(self.table_run.0) < self.table_run.1
            || pa.wrapping_sub(self.table_run2.0) < self.table_run2.1
    }

    /// A table entry inside the two longest runs of all-RAM granules, or `None` elsewhere (the
    /// caller then takes a path that reads through the granule table and reports bus
    /// errors). `size` is 4 or 8; `pa` is aligned to it.
    #[inline(always)]
    pub(crate) fn read_run(&self, pa: u64, size: u8) -> Option<u64> {
        if !self.in_table_runs(pa) {
            return None;
        }
        // SAFETY: `pa` is inside a run of all-RAM granules, hence inside the mapping,
        // which extends at least a page past it; unaligned reads are allowed.
        let p = unsafe { self.backing.as_ptr().add(pa as usize) };
        // SAFETY: as above, for 4 or 8 bytes.
        Some(unsafe {
            if size == 4 {
                u64::from(u32::from_le(p.cast::<u32>().read_unaligned()))
            } else {
                u64::from_le(p.cast::<u64>().read_unaligned())
            }
        })
    }

    /// The page at `pa` (aligned) borrowed as a [`TablePage`], when it lies in one of the
    /// two longest runs of all-RAM granules, where the walk's quick reads
    /// ([`Self::read_run`]) and the hardware's ([`Self::hw_read_entry`]) both find it.
    #[inline]
    pub(crate) fn table_page(&mut self, pa: u64) -> Option<TablePage<'_>> {
        if pa & 0xfff != 0 || !self.in_table_runs(pa) {
            return None;
        }
        let r = self.hw_range(PhysAddr::new(pa), PAGE_SIZE).ok()?;
        <&mut [u8; PAGE_SIZE as usize]>::try_from(&mut self.backing[r])
            .ok()
            .map(TablePage)
    }

    /// The quick walk's entry read: the entry of `size` (4 or 8) bytes at `pa`, aligned to
    /// it, if `pa` is below the end of the last bank, else `None`. In a hole (the pc
    /// machine's, or the part of a granule no bank covers) it reads zero, a not-present
    /// entry, never a bus error: the mapping there is never written (every write goes
    /// through a bank or all-RAM-granule test), and the host supplies zeroes. So a caller
    /// that takes the full walk for every entry it cannot use as it is needs no other
    /// test: one compare instead of the two runs' range tests ([`Self::read_run`]).
    #[inline(always)]
    pub(crate) fn read_walk(&self, pa: u64, size: u8) -> Option<u64> {
        debug_assert_eq!(pa & (u64::from(size) - 1), 0, "unaligned table entry");
        if pa >= self.span {
            return None;
        }
        // SAFETY: `pa < span` and the mapping is `span` plus a page long, so the `size` (at
        // most 8) bytes at `pa` lie inside it whatever `pa`'s alignment; unaligned reads are
        // allowed.
        let p = unsafe { self.backing.as_ptr().add(pa as usize) };
        // SAFETY: as above, for 4 or 8 bytes.
        Some(unsafe {
            if size == 4 {
                u64::from(u32::from_le(p.cast::<u32>().read_unaligned()))
            } else {
                u64::from_le(p.cast::<u64>().read_unaligned())
            }
        })
    }

    /// Read the page-table entry of `size` (4 or 8) bytes at `pa`, which the caller aligns
    /// (as [`Self::read_entry_u64`], without the realignment), for the kernel's own edits: one
    /// range test and one load when `pa` is in the longest RAM run of the direct map (where
    /// boot-time tables are), the windowed granule table otherwise.
    #[inline(always)]
    pub fn read_pte(&self, pa: PhysAddr, size: u8) -> Result<u64, BusError> {
        let pa = pa.as_u64();
        debug_assert_eq!(pa & (u64::from(size) - 1), 0, "unaligned table entry");
        if pa.wrapping_sub(self.kernel_run.0) >= self.kernel_run.1 {
            return self.read_pte_outside(pa, size);
        }
        Ok(if size == 4 {
            self.load::<4>(pa as usize)
        } else {
            self.load::<8>(pa as usize)
        })
    }

    #[cold]
    #[inline(never)]
    fn read_pte_outside(&self, pa: u64, size: u8) -> Result<u64, BusError> {
        if size == 4 {
            self.read_entry_u32(PhysAddr::new(pa)).map(u64::from)
        } else {
            self.read_entry_u64(PhysAddr::new(pa))
        }
    }

    /// Write the naturally aligned page-table entry of `size` (4 or 8) bytes at `pa`, as
    /// [`Self::read_pte`] reads it.
    #[inline(always)]
    pub fn write_pte(&mut self, pa: PhysAddr, size: u8, v: u64) -> Result<(), BusError> {
        let pa = pa.as_u64();
        debug_assert_eq!(pa & (u64::from(size) - 1), 0, "unaligned table entry");
        if pa.wrapping_sub(self.kernel_run.0) >= self.kernel_run.1 {
            return self.write_pte_outside(pa, size, v);
        }
        // SAFETY: `pa` is inside the run of all-RAM granules, hence inside the mapping,
        // which extends at least a page past it; `&mut self` makes the write exclusive.
        unsafe {
            let p = self.backing.as_mut_ptr().add(pa as usize);
            if size == 4 {
                p.cast::<u32>().write_unaligned((v as u32).to_le());
            } else {
                p.cast::<u64>().write_unaligned(v.to_le());
            }
        }
        Ok(())
    }

    /// Install `v` in the page-table entry of `size` (4 or 8) bytes at `pa` if it is empty
    /// (`pte_none`), as [`Self::read_pte`] and [`Self::write_pte`] would, with one range test
    /// for both: the old entry, 0 when `v` was written. A slot mapping that must find its
    /// PTE free (kmap_local's `BUG_ON(!pte_none)`) is one call.
    #[inline(always)]
    pub fn fill_pte_if_none(&mut self, pa: PhysAddr, size: u8, v: u64) -> Result<u64, BusError> {
        let pa = pa.as_u64();
        debug_assert_eq!(pa & (u64::from(size) - 1), 0, "unaligned table entry");
        if pa.wrapping_sub(self.kernel_run.0) >= self.kernel_run.1 {
            return self.fill_pte_outside(pa, size, v);
        }
        let off = pa as usize;
        let old = if size == 4 {
            self.load::<4>(off)
        } else {
            self.load::<8>(off)
        };
        if old == 0 {
            if size == 4 {
                self.store::<4>(off, v);
            } else {
                self.store::<8>(off, v);
            }
        }
        Ok(old)
    }

    #[cold]
    #[inline(never)]
    fn fill_pte_outside(&mut self, pa: u64, size: u8, v: u64) -> Result<u64, BusError> {
        let old = self.read_pte_outside(pa, size)?;
        if old == 0 {
            self.write_pte_outside(pa, size, v)?;
        }
        Ok(old)
    }

    #[cold]
    #[inline(never)]
    fn write_pte_outside(&mut self, pa: u64, size: u8, v: u64) -> Result<(), BusError> {
        if size == 4 {
            self.write_u32(PhysAddr::new(pa), v as u32)
        } else {
            self.write_u64(PhysAddr::new(pa), v)
        }
    }

    /// A table read outside the longest RAM run: through the granule table.
    #[cold]
    #[inline(never)]
    fn read_table_outside(&self, pa: u64, len: usize) -> Result<u64, BusError> {
        match self.granules.get((pa >> GRANULE_SHIFT) as usize) {
            Some(Granule::Ram) if len == 4 => Ok(self.load::<4>(pa as usize)),
            Some(Granule::Ram) => Ok(self.load::<8>(pa as usize)),
            _ => {
                let mut b = [0u8; 8];
                self.hw_read(PhysAddr::new(pa & !(len as u64 - 1)), &mut b[..len])?;
                Ok(u64::from_le_bytes(b))
            }
        }
    }

    #[cold]
    #[inline(never)]
    fn read_slow(&self, pa: PhysAddr, len: usize) -> Result<u64, BusError> {
        let mut b = [0u8; 8];
        self.read(pa, &mut b[..len])?;
        Ok(u64::from_le_bytes(b))
    }

    /// Write a little-endian `u32` of the direct map.
    #[inline(always)]
    pub fn write_u32(&mut self, pa: PhysAddr, v: u32) -> Result<(), BusError> {
        match self.fast_offset(pa.as_u64(), 4) {
            Some(off) => {
                self.store::<4>(off, u64::from(v));
                Ok(())
            }
            None => self.write(pa, &v.to_le_bytes()),
        }
    }

    /// Write a little-endian `u64` of the direct map.
    #[inline(always)]
    pub fn write_u64(&mut self, pa: PhysAddr, v: u64) -> Result<(), BusError> {
        match self.fast_offset(pa.as_u64(), 8) {
            Some(off) => {
                self.store::<8>(off, v);
                Ok(())
            }
            None => self.write(pa, &v.to_le_bytes()),
        }
    }

    /// The hardware's load of an aligned entry (a CPU's `mov` after translation).
    #[inline(always)]
    pub(crate) fn hw_read_entry(&self, pa: u64, size: u8) -> Result<u64, BusError> {
        match (Self::fast_in(&self.granules, pa, u64::from(size)), size) {
            (Some(off), 4) => Ok(self.load::<4>(off)),
            (Some(off), _) => Ok(self.load::<8>(off)),
            (None, _) => {
                let mut b = [0u8; 8];
                self.hw_read(PhysAddr::new(pa), &mut b[..size as usize])?;
                Ok(u64::from_le_bytes(b))
            }
        }
    }

    /// The bytes from `pa` to the end of its frame, for the hardware (after translation).
    pub(crate) fn hw_page_rest(&self, pa: PhysAddr) -> Result<&[u8], BusError> {
        let r = self.hw_range(pa, PAGE_SIZE - (pa.as_u64() & (PAGE_SIZE - 1)))?;
        Ok(&self.backing[r])
    }

    /// [`Self::hw_page_rest`], writable.
    pub(crate) fn hw_page_rest_mut(&mut self, pa: PhysAddr) -> Result<&mut [u8], BusError> {
        let r = self.hw_range(pa, PAGE_SIZE - (pa.as_u64() & (PAGE_SIZE - 1)))?;
        Ok(&mut self.backing[r])
    }

    /// The page walk's A/D-bit update of an entry: hardware, any RAM.
    #[inline(always)]
    pub(crate) fn hw_write_entry(&mut self, pa: u64, size: u8, v: u64) -> Result<(), BusError> {
        match (Self::fast_in(&self.granules, pa, u64::from(size)), size) {
            (Some(off), 4) => self.store::<4>(off, v),
            (Some(off), _) => self.store::<8>(off, v),
            (None, 4) => return self.hw_write(PhysAddr::new(pa), &(v as u32).to_le_bytes()),
            (None, _) => return self.hw_write(PhysAddr::new(pa), &v.to_le_bytes()),
        }
        Ok(())
    }

    /// Fill `len` bytes of the direct map with `byte`.
    pub fn fill(&mut self, pa: PhysAddr, len: u64, byte: u8) -> Result<(), BusError> {
        let r = self.range(pa, len)?;
        self.backing[r].fill(byte);
        Ok(())
    }

    /// Borrow a whole frame of the direct map (for page-granular copies and checks).
    pub fn frame(&self, pfn: Pfn) -> Result<&[u8], BusError> {
        let r = self.range(pfn.phys(), PAGE_SIZE)?;
        Ok(&self.backing[r])
    }

    /// Borrow a whole frame of the direct map mutably (inlined: SLUB's fast path borrows
    /// one per object).
    #[inline]
    pub fn frame_mut(&mut self, pfn: Pfn) -> Result<&mut [u8], BusError> {
        let r = self.range(pfn.phys(), PAGE_SIZE)?;
        Ok(&mut self.backing[r])
    }

    /// The hardware debugger's view (QEMU monitor's `xp`): any RAM, for tests and dumps.
    /// Built only with the `monitor` feature, which only dev-dependencies enable, so kernel
    /// code that reached high memory through it would not build.
    #[cfg(any(test, feature = "monitor"))]
    pub fn monitor(&self) -> Monitor<'_> {
        Monitor(self)
    }

    /// The debugger's write to a whole frame anywhere in RAM (tests set up page contents
    /// with it); `monitor` feature only, as [`Self::monitor`].
    #[cfg(any(test, feature = "monitor"))]
    pub fn monitor_frame_mut(&mut self, pfn: Pfn) -> Result<&mut [u8], BusError> {
        let r = self.hw_range(pfn.phys(), PAGE_SIZE)?;
        Ok(&mut self.backing[r])
    }
}

/// Read-only physical access for tests and dumps: see [`PhysMem::monitor`].
#[cfg(any(test, feature = "monitor"))]
#[derive(Clone, Copy)]
pub struct Monitor<'a>(&'a PhysMem);

#[cfg(any(test, feature = "monitor"))]
impl Monitor<'_> {
    /// Bytes at any RAM address.
    pub fn read(&self, pa: PhysAddr, buf: &mut [u8]) -> Result<(), BusError> {
        self.0.hw_read(pa, buf)
    }

    /// A `u32` at any RAM address.
    pub fn read_u32(&self, pa: PhysAddr) -> Result<u32, BusError> {
        let mut b = [0u8; 4];
        self.read(pa, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    /// A `u64` at any RAM address.
    pub fn read_u64(&self, pa: PhysAddr) -> Result<u64, BusError> {
        self.0.hw_read_u64(pa)
    }

    /// A whole frame.
    pub fn frame(&self, pfn: Pfn) -> Result<&[u8], BusError> {
        let r = self.0.hw_range(pfn.phys(), PAGE_SIZE)?;
        Ok(&self.0.backing[r])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_banks() -> PhysMem {
        PhysMem::new(&[
            (PhysAddr::new(0), 0x10_0000),
            (PhysAddr::new(0x1_0000_0000), 0x10_0000),
        ])
        .expect("mmap")
    }

    /// The PTE window is checked once: it must be RAM of the direct map throughout; its
    /// entries are the bytes at their physical addresses, indices wrap inside it, and a
    /// direct map shrinking below it unpins it (its accesses then touch no RAM).
    #[test]
    fn the_pte_window_is_checked_once_and_never_leaves_itself() {
        let mut m = two_banks();
        m.set_window_end(PhysAddr::new(0x8_0000));
        let end = 0x8_0000 - PTE_WINDOW_BYTES;
        // Across the direct map's end, or in the hole above the first bank: refused.
        for pa in [end + 8, 0x10_0000 - 8, 0x1_0000_0000] {
            assert!(m.pin_pte_window(PhysAddr::new(pa)).is_err(), "{pa:#x}");
        }
        assert_eq!(
            m.pin_pte_window(PhysAddr::new(end + 5)),
            Ok(PhysAddr::new(end))
        );
        m.pte_window_write::<8>(1, 0x1234_5678_9abc_def0);
        assert_eq!(
            m.read_u64(PhysAddr::new(end + 8)),
            Ok(0x1234_5678_9abc_def0)
        );
        assert_eq!(m.pte_window_read::<4>(3), 0x1234_5678);
        // Entry indices wrap: one past the last 4-byte entry is the first, index -1 the last.
        let n4 = PTE_WINDOW_BYTES / 4;
        assert_eq!(m.pte_window_read::<4>(n4 + 2), 0x9abc_def0);
        assert_eq!(m.pte_window_fill_if_none::<4>(u64::MAX, 7), 0);
        assert_eq!(m.read_u32(PhysAddr::new(0x8_0000 - 4)), Ok(7));
        assert_eq!(
            m.pte_window_fill_if_none::<4>(n4 - 1, 9),
            7,
            "not none: kept"
        );
        assert_eq!(m.read_u32(PhysAddr::new(0x8_0000 - 4)), Ok(7));
        // The direct map shrinks below the window's end: unpinned, RAM untouched.
        m.set_window_end(PhysAddr::new(0x7_f000));
        m.pte_window_write::<8>(1, 0);
        assert_eq!(m.pte_window_read::<8>(1), 0);
        assert_eq!(
            m.monitor().read_u64(PhysAddr::new(end + 8)),
            Ok(0x1234_5678_9abc_def0)
        );
    }

    #[test]
    fn the_window_refuses_kernel_accesses_above_it_and_only_shrinks() {
        let mut m = PhysMem::new(&[(PhysAddr::new(0), 0x80_0000)]).expect("mmap");
        // 5 MiB: mid-granule, so the granule holding the end goes through the slow path.
        m.set_window_end(PhysAddr::new(0x50_0000));
        assert_eq!(m.window_end(), PhysAddr::new(0x50_0000));
        m.write_u32(PhysAddr::new(0x4f_fffc), 7).unwrap();
        for (pa, len) in [(0x50_0000u64, 4u64), (0x4f_fffe, 4), (0x60_0000, 4)] {
            let e = m
                .write(PhysAddr::new(pa), &vec![0; len as usize])
                .unwrap_err();
            assert_eq!(e.kind, BusErrorKind::NotDirectMapped, "{pa:#x}");
        }
        let e = m.read_u64(PhysAddr::new(0x7f_fff8)).unwrap_err();
        assert_eq!(e.kind, BusErrorKind::NotDirectMapped);
        assert!(m.frame(Pfn::new(0x500)).is_err());
        assert!(m.frame(Pfn::new(0x4ff)).is_ok());
        // A hole is still a hole, whatever the window.
        assert_eq!(
            m.read_u32(PhysAddr::new(0x90_0000)).unwrap_err().kind,
            BusErrorKind::NoRam
        );
        // The hardware (a CPU after translation, the page walk) reaches all RAM.
        m.hw_write(PhysAddr::new(0x60_0000), &[1, 2, 3, 4]).unwrap();
        assert_eq!(m.read_table_u32(0x60_0000).unwrap(), 0x0403_0201);
        assert_eq!(
            m.monitor().read_u32(PhysAddr::new(0x60_0000)).unwrap(),
            0x0403_0201
        );
        // Nothing reopens it.
        m.set_window_end(PhysAddr::new(0x80_0000));
        assert_eq!(m.window_end(), PhysAddr::new(0x50_0000));
        assert!(m.read_u32(PhysAddr::new(0x60_0000)).is_err());
        assert!(m.is_ram(Pfn::new(0x600)), "still RAM");
    }

    #[test]
    fn read_write_both_banks() {
        let mut m = two_banks();
        m.write_u64(PhysAddr::new(0x1000), 0x1122_3344_5566_7788)
            .unwrap();
        m.write_u32(PhysAddr::new(0x1_0000_0ff0), 0xdead_beef)
            .unwrap();
        assert_eq!(
            m.read_u64(PhysAddr::new(0x1000)).unwrap(),
            0x1122_3344_5566_7788
        );
        assert_eq!(
            m.read_u32(PhysAddr::new(0x1_0000_0ff0)).unwrap(),
            0xdead_beef
        );
        // the two banks do not alias
        assert_eq!(m.read_u32(PhysAddr::new(0xff0)).unwrap(), 0);
    }

    #[test]
    fn holes_are_bus_errors() {
        let mut m = two_banks();
        assert!(m.read_u32(PhysAddr::new(0x20_0000)).is_err());
        assert!(
            m.write_u32(PhysAddr::new(0xf_fffe), 1).is_err(),
            "straddles the end"
        );
        assert!(!m.is_ram(Pfn::new(0x200)));
        assert!(m.is_ram(Pfn::new(0x100000)));
    }

    #[test]
    fn untouched_memory_reads_zero() {
        let m = two_banks();
        assert!(m.frame(Pfn::new(5)).unwrap().iter().all(|&b| b == 0));
    }

    #[test]
    fn granules_follow_the_pc_holes() {
        // 639 KiB of base memory, RAM from 1 MiB to 3 GiB, then from 4 GiB.
        let m = PhysMem::new(&[
            (PhysAddr::new(0), 0x9fc00),
            (PhysAddr::new(0x10_0000), 0xbff0_0000),
            (PhysAddr::new(0x1_0000_0000), 0x40_0000),
        ])
        .expect("mmap");
        assert_eq!(m.granules[0], Granule::Mixed);
        assert_eq!(m.granules[1], Granule::Ram);
        assert_eq!(m.granules[0x600], Granule::Hole, "3 GiB: PCI hole");
        assert_eq!(m.granules[0x800], Granule::Ram);
        assert!(m.read_u64(PhysAddr::new(0x9fc00)).is_err(), "VGA window");
        assert!(m.read_u64(PhysAddr::new(0x9fbf8)).is_ok());
        assert!(m.read_u32(PhysAddr::new(0xc000_0000)).is_err());
        assert!(
            m.read_u32(PhysAddr::new(0x1_0040_0000)).is_err(),
            "past the end"
        );
        // an access crossing two RAM granules takes the bank path and works
        let mut b = [0u8; 16];
        m.read(PhysAddr::new(0x3f_fff8), &mut b)
            .expect("contiguous RAM");
    }

    #[test]
    fn overlapping_banks_are_refused() {
        let e = PhysMem::new(&[(PhysAddr::new(0), 0x2000), (PhysAddr::new(0x1000), 0x1000)]);
        assert!(e.is_err());
        assert!(PhysMem::new(&[(PhysAddr::new(1 << 41), 0x1000)]).is_err());
    }
}
