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
//! use the granule table, out of line, only outside it.

use crate::addr::{Pfn, PhysAddr, PAGE_SIZE};
use memmap2::{MmapMut, MmapOptions};

/// log2 of the granule the hole test works in.
const GRANULE_SHIFT: u32 = 21;
const GRANULE: u64 = 1 << GRANULE_SHIFT;
/// The highest physical address span the host mapping may cover (MAXPHYADDR 40).
const MAX_SPAN: u64 = 1 << 40;

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

/// A physical access that no RAM answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("physical access of {len} bytes at {addr:#x} does not hit RAM")]
pub struct BusError {
    pub addr: u64,
    pub len: u64,
}

/// The machine's RAM.
pub struct PhysMem {
    /// The physical address space from 0 to the end of the last bank; offset = address.
    backing: MmapMut,
    banks: Vec<RamBank>,
    /// One [`Granule`] per 2 MiB of `backing`.
    granules: Box<[Granule]>,
    /// The longest run of all-RAM granules, as (first byte, length): the page walk's
    /// table reads inside it need one unsigned compare instead of the granule table
    /// (where a booted kernel keeps its page tables: low memory).
    table_run: (u64, u64),
}

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
    let (mut best, mut start) = ((0, 0), 0);
    for (i, g) in table.iter().enumerate() {
        if *g != Granule::Ram {
            start = i + 1;
        } else if i + 1 - start > best.1 {
            best = (start, i + 1 - start);
        }
    }
    (best.0 as u64 * GRANULE, best.1 as u64 * GRANULE)
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
        // One page beyond the span: an entry read that trusts its caller's alignment
        // (`read_table_u32`/`_u64`) cannot leave the mapping even if the trust is misplaced.
        // (This also keeps a zero-RAM machine's mapping non-empty, which mmap requires.)
        let backing = MmapOptions::new()
            .len((span + PAGE_SIZE) as usize)
            .no_reserve_swap()
            .map_anon()?;
        let granules = granule_table(&out, span);
        Ok(PhysMem {
            backing,
            table_run: longest_ram_run(&granules),
            granules,
            banks: out,
        })
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
        self.range(pfn.phys(), PAGE_SIZE).is_ok()
    }

    /// The offset of `[pa, pa + len)` in the backing when it lies inside one all-RAM
    /// granule: the one test the hot paths pay.
    #[inline(always)]
    fn fast_offset(&self, pa: u64, len: u64) -> Option<usize> {
        match self.granules.get((pa >> GRANULE_SHIFT) as usize) {
            Some(Granule::Ram) if (pa & (GRANULE - 1)) + len <= GRANULE => Some(pa as usize),
            _ => None,
        }
    }

    /// The slow path: accesses crossing granules or touching a partly-RAM one.
    #[cold]
    #[inline(never)]
    fn bank_range(&self, pa: u64, len: u64) -> Result<std::ops::Range<usize>, BusError> {
        // At most three banks on a pc machine: a linear scan beats a binary search.
        match self.banks.iter().find(|b| b.contains(pa, len)) {
            Some(_) => Ok(pa as usize..(pa + len) as usize),
            None => Err(BusError { addr: pa, len }),
        }
    }

    #[inline]
    fn range(&self, pa: PhysAddr, len: u64) -> Result<std::ops::Range<usize>, BusError> {
        match self.fast_offset(pa.as_u64(), len) {
            Some(off) => Ok(off..off + len as usize),
            None => self.bank_range(pa.as_u64(), len),
        }
    }

    /// Read bytes at a physical address.
    pub fn read(&self, pa: PhysAddr, buf: &mut [u8]) -> Result<(), BusError> {
        let r = self.range(pa, buf.len() as u64)?;
        buf.copy_from_slice(&self.backing[r]);
        Ok(())
    }

    /// Write bytes at a physical address.
    pub fn write(&mut self, pa: PhysAddr, buf: &[u8]) -> Result<(), BusError> {
        let r = self.range(pa, buf.len() as u64)?;
        self.backing[r].copy_from_slice(buf);
        Ok(())
    }

    /// Read a little-endian `u32` (a 2-level table entry): one host load when the address
    /// is in an all-RAM granule.
    #[inline(always)]
    pub fn read_u32(&self, pa: PhysAddr) -> Result<u32, BusError> {
        match self.fast_offset(pa.as_u64(), 4) {
            // SAFETY: `fast_offset` vouches that off..off+4 lies in a granule wholly inside a
            // bank, hence inside the mapping; unaligned reads are allowed.
            Some(off) => Ok(u32::from_le(unsafe {
                self.backing
                    .as_ptr()
                    .add(off)
                    .cast::<u32>()
                    .read_unaligned()
            })),
            None => self.read_slow(pa, 4).map(|v| v as u32),
        }
    }

    /// Read a little-endian `u64` (a PAE or 4-level table entry), as [`Self::read_u32`].
    #[inline(always)]
    pub fn read_u64(&self, pa: PhysAddr) -> Result<u64, BusError> {
        match self.fast_offset(pa.as_u64(), 8) {
            // SAFETY: as in `read_u32`, for 8 bytes.
            Some(off) => Ok(u64::from_le(unsafe {
                self.backing
                    .as_ptr()
                    .add(off)
                    .cast::<u64>()
                    .read_unaligned()
            })),
            None => self.read_slow(pa, 8),
        }
    }

    /// Read the naturally aligned 4-byte table entry at `pa & !3`: the walk's read, which
    /// needs no test for an access crossing a granule.
    #[inline(always)]
    pub fn read_entry_u32(&self, pa: PhysAddr) -> Result<u32, BusError> {
        let pa = pa.as_u64() & !3;
        match self.granules.get((pa >> GRANULE_SHIFT) as usize) {
            // SAFETY: an aligned 4-byte access cannot leave its granule, which is wholly
            // inside a bank, hence inside the mapping.
            Some(Granule::Ram) => Ok(u32::from_le(unsafe {
                self.backing.as_ptr().add(pa as usize).cast::<u32>().read()
            })),
            _ => self.read_slow(PhysAddr::new(pa), 4).map(|v| v as u32),
        }
    }

    /// Read the naturally aligned 8-byte table entry at `pa & !7`, as
    /// [`Self::read_entry_u32`].
    #[inline(always)]
    pub fn read_entry_u64(&self, pa: PhysAddr) -> Result<u64, BusError> {
        let pa = pa.as_u64() & !7;
        match self.granules.get((pa >> GRANULE_SHIFT) as usize) {
            // SAFETY: as in `read_entry_u32`, for 8 aligned bytes.
            Some(Granule::Ram) => Ok(u64::from_le(unsafe {
                self.backing.as_ptr().add(pa as usize).cast::<u64>().read()
            })),
            _ => self.read_slow(PhysAddr::new(pa), 8),
        }
    }

    /// [`Self::read_entry_u32`] for a `pa` the caller knows is 4-byte aligned (the walk's
    /// table addresses are): no realignment. Memory-safe even if it is not (the mapping
    /// extends a page past the last granule), only the value would be wrong.
    #[inline(always)]
    pub(crate) fn read_table_u32(&self, pa: u64) -> Result<u32, BusError> {
        debug_assert_eq!(pa & 3, 0);
        if pa.wrapping_sub(self.table_run.0) < self.table_run.1 {
            // SAFETY: `pa` is inside the run of all-RAM granules, hence inside the mapping,
            // which extends at least a page past it; unaligned reads are allowed.
            return Ok(u32::from_le(unsafe {
                self.backing
                    .as_ptr()
                    .add(pa as usize)
                    .cast::<u32>()
                    .read_unaligned()
            }));
        }
        self.read_table_outside(pa, 4).map(|v| v as u32)
    }

    /// [`Self::read_entry_u64`] for a `pa` the caller knows is 8-byte aligned, as
    /// [`Self::read_table_u32`].
    #[inline(always)]
    pub(crate) fn read_table_u64(&self, pa: u64) -> Result<u64, BusError> {
        debug_assert_eq!(pa & 7, 0);
        if pa.wrapping_sub(self.table_run.0) < self.table_run.1 {
            // SAFETY: as in `read_table_u32`, for 8 bytes.
            return Ok(u64::from_le(unsafe {
                self.backing
                    .as_ptr()
                    .add(pa as usize)
                    .cast::<u64>()
                    .read_unaligned()
            }));
        }
        self.read_table_outside(pa, 8)
    }

    /// A table entry inside the longest run of all-RAM granules, or `None` elsewhere (the
    /// caller then takes a path that reads through the granule table and reports bus
    /// errors). `size` is 4 or 8; `pa` is aligned to it.
    #[inline(always)]
    pub(crate) fn read_run(&self, pa: u64, size: u8) -> Option<u64> {
        if pa.wrapping_sub(self.table_run.0) >= self.table_run.1 {
            return None;
        }
        // SAFETY: `pa` is inside the run of all-RAM granules, hence inside the mapping,
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

    /// Read the page-table entry of `size` (4 or 8) bytes at `pa`, which the caller aligns
    /// (as [`Self::read_entry_u64`], without the realignment), for the kernel's own edits: one range test and one
    /// load when `pa` is in the longest run of RAM (where boot-time tables are), the
    /// granule table otherwise.
    #[inline(always)]
    pub fn read_pte(&self, pa: PhysAddr, size: u8) -> Result<u64, BusError> {
        let pa = pa.as_u64();
        debug_assert_eq!(pa & (u64::from(size) - 1), 0, "unaligned table entry");
        match self.read_run(pa, size) {
            Some(v) => Ok(v),
            None => self.read_pte_outside(pa, size),
        }
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
        if pa.wrapping_sub(self.table_run.0) >= self.table_run.1 {
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
            // SAFETY: the granule is wholly inside a bank, hence `pa` inside the mapping,
            // which extends at least a page past it; unaligned reads are allowed.
            Some(Granule::Ram) => Ok(u64::from_le(unsafe {
                let p = self.backing.as_ptr().add(pa as usize);
                if len == 4 {
                    u64::from(p.cast::<u32>().read_unaligned())
                } else {
                    p.cast::<u64>().read_unaligned()
                }
            })),
            _ => self.read_slow(PhysAddr::new(pa & !(len as u64 - 1)), len),
        }
    }

    #[cold]
    #[inline(never)]
    fn read_slow(&self, pa: PhysAddr, len: usize) -> Result<u64, BusError> {
        let mut b = [0u8; 8];
        self.read(pa, &mut b[..len])?;
        Ok(u64::from_le_bytes(b))
    }

    #[inline(always)]
    pub fn write_u32(&mut self, pa: PhysAddr, v: u32) -> Result<(), BusError> {
        match self.fast_offset(pa.as_u64(), 4) {
            // SAFETY: as in `read_u32`; `&mut self` makes the write exclusive.
            Some(off) => unsafe {
                let p = self.backing.as_mut_ptr().add(off).cast::<u32>();
                p.write_unaligned(v.to_le());
                Ok(())
            },
            None => self.write(pa, &v.to_le_bytes()),
        }
    }

    #[inline(always)]
    pub fn write_u64(&mut self, pa: PhysAddr, v: u64) -> Result<(), BusError> {
        match self.fast_offset(pa.as_u64(), 8) {
            // SAFETY: as in `write_u32`, for 8 bytes.
            Some(off) => unsafe {
                let p = self.backing.as_mut_ptr().add(off).cast::<u64>();
                p.write_unaligned(v.to_le());
                Ok(())
            },
            None => self.write(pa, &v.to_le_bytes()),
        }
    }

    /// Fill `len` bytes with `byte`.
    pub fn fill(&mut self, pa: PhysAddr, len: u64, byte: u8) -> Result<(), BusError> {
        let r = self.range(pa, len)?;
        self.backing[r].fill(byte);
        Ok(())
    }

    /// Borrow a whole frame (for page-granular copies and checks).
    pub fn frame(&self, pfn: Pfn) -> Result<&[u8], BusError> {
        let r = self.range(pfn.phys(), PAGE_SIZE)?;
        Ok(&self.backing[r])
    }

    /// Borrow a whole frame mutably.
    pub fn frame_mut(&mut self, pfn: Pfn) -> Result<&mut [u8], BusError> {
        let r = self.range(pfn.phys(), PAGE_SIZE)?;
        Ok(&mut self.backing[r])
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
