//! Physical memory: the simulated RAM, up to 64 GiB, backed lazily by the host.
//!
//! The whole RAM of the machine is one anonymous host mapping reserved without swap
//! accounting, so a 64 GiB machine costs the host nothing until the simulated kernel touches
//! a page (the host kernel then supplies a zeroed page, just as RAM reads zero after reset
//! in our model). Guest physical addresses are translated to offsets in that mapping
//! through the list of RAM banks: QEMU's `pc` machine puts part of RAM below the PCI hole
//! and remaps the rest above 4 GiB, so physical addresses are not contiguous.

use crate::addr::{Pfn, PhysAddr, PAGE_SIZE};
use memmap2::{MmapMut, MmapOptions};

/// A contiguous range of physical RAM.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RamBank {
    pub start: PhysAddr,
    pub len: u64,
    /// Offset of `start` inside the host backing.
    offset: u64,
}

impl RamBank {
    pub fn end(&self) -> PhysAddr {
        self.start + self.len
    }
    fn contains(&self, pa: PhysAddr, len: u64) -> bool {
        pa >= self.start && pa.as_u64() + len <= self.end().as_u64()
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
    backing: MmapMut,
    banks: Vec<RamBank>,
}

impl std::fmt::Debug for PhysMem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PhysMem")
            .field("banks", &self.banks)
            .finish()
    }
}

impl PhysMem {
    /// Reserve host memory for the given banks (start, length), in ascending order.
    pub fn new(banks: &[(PhysAddr, u64)]) -> std::io::Result<Self> {
        let mut out = Vec::with_capacity(banks.len());
        let mut offset = 0u64;
        for &(start, len) in banks {
            out.push(RamBank { start, len, offset });
            offset += len;
        }
        // An empty mapping is not allowed; keep one page so a zero-RAM machine still builds.
        let total = offset.max(PAGE_SIZE);
        let backing = MmapOptions::new()
            .len(total as usize)
            .no_reserve_swap()
            .map_anon()?;
        Ok(PhysMem {
            backing,
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
        self.bank_for(pfn.phys(), PAGE_SIZE).is_some()
    }

    fn bank_for(&self, pa: PhysAddr, len: u64) -> Option<&RamBank> {
        // At most three banks on a pc machine: a linear scan beats a binary search.
        self.banks.iter().find(|b| b.contains(pa, len))
    }

    fn range(&self, pa: PhysAddr, len: u64) -> Result<std::ops::Range<usize>, BusError> {
        let bank = self.bank_for(pa, len).ok_or(BusError {
            addr: pa.as_u64(),
            len,
        })?;
        let off = (bank.offset + (pa - bank.start)) as usize;
        Ok(off..off + len as usize)
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

    pub fn read_u32(&self, pa: PhysAddr) -> Result<u32, BusError> {
        let mut b = [0u8; 4];
        self.read(pa, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    pub fn read_u64(&self, pa: PhysAddr) -> Result<u64, BusError> {
        let mut b = [0u8; 8];
        self.read(pa, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    pub fn write_u32(&mut self, pa: PhysAddr, v: u32) -> Result<(), BusError> {
        self.write(pa, &v.to_le_bytes())
    }

    pub fn write_u64(&mut self, pa: PhysAddr, v: u64) -> Result<(), BusError> {
        self.write(pa, &v.to_le_bytes())
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
}
