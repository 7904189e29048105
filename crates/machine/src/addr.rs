//! Typed addresses: physical addresses, virtual addresses and page frame numbers.
//!
//! A 32-bit kernel juggles three kinds of numbers that all look like integers: physical
//! addresses (36 bits wide with PAE), virtual addresses (32 bits, or 48 on x86-64) and page
//! frame numbers. Mixing them up is the classic highmem bug (`__va()` of a highmem address),
//! so each gets its own newtype, as in the `x86_64` crate.

use core::fmt;
use core::ops::{Add, Sub};

/// Size of a base page: 4 KiB everywhere on x86.
pub const PAGE_SIZE: u64 = 4096;
/// log2 of [`PAGE_SIZE`].
pub const PAGE_SHIFT: u32 = 12;

/// A physical address (up to 52 bits architecturally; 36 bits used with PAE).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, serde::Serialize)]
pub struct PhysAddr(u64);

/// A virtual (linear) address. The 32-bit formats only look at the low 32 bits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, serde::Serialize)]
pub struct VirtAddr(u64);

/// A page frame number: a physical address shifted right by [`PAGE_SHIFT`].
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, serde::Serialize)]
pub struct Pfn(u64);

impl PhysAddr {
    pub const fn new(addr: u64) -> Self {
        PhysAddr(addr)
    }
    pub const fn as_u64(self) -> u64 {
        self.0
    }
    /// The frame containing this address.
    pub const fn pfn(self) -> Pfn {
        Pfn(self.0 >> PAGE_SHIFT)
    }
    /// Offset inside the 4 KiB page.
    pub const fn page_offset(self) -> u64 {
        self.0 & (PAGE_SIZE - 1)
    }
    pub const fn align_down(self, align: u64) -> Self {
        PhysAddr(self.0 & !(align - 1))
    }
    pub const fn align_up(self, align: u64) -> Self {
        PhysAddr((self.0 + align - 1) & !(align - 1))
    }
    pub const fn is_aligned(self, align: u64) -> bool {
        self.0 & (align - 1) == 0
    }
}

impl VirtAddr {
    pub const fn new(addr: u64) -> Self {
        VirtAddr(addr)
    }
    pub const fn as_u64(self) -> u64 {
        self.0
    }
    /// The low 32 bits, as a 32-bit CPU sees the address.
    pub const fn as_u32(self) -> u32 {
        self.0 as u32
    }
    pub const fn page_offset(self) -> u64 {
        self.0 & (PAGE_SIZE - 1)
    }
    /// Virtual page number.
    pub const fn vpn(self) -> u64 {
        self.0 >> PAGE_SHIFT
    }
    pub const fn align_down(self, align: u64) -> Self {
        VirtAddr(self.0 & !(align - 1))
    }
    pub const fn align_up(self, align: u64) -> Self {
        VirtAddr((self.0 + align - 1) & !(align - 1))
    }
    pub const fn is_aligned(self, align: u64) -> bool {
        self.0 & (align - 1) == 0
    }
}

impl Pfn {
    pub const fn new(pfn: u64) -> Self {
        Pfn(pfn)
    }
    pub const fn as_u64(self) -> u64 {
        self.0
    }
    /// Index into arrays such as mem_map.
    pub const fn as_usize(self) -> usize {
        self.0 as usize
    }
    /// First byte of the frame.
    pub const fn phys(self) -> PhysAddr {
        PhysAddr(self.0 << PAGE_SHIFT)
    }
    /// `PFN_UP`: the first frame at or above `addr`.
    pub const fn up(addr: PhysAddr) -> Pfn {
        Pfn((addr.0 + PAGE_SIZE - 1) >> PAGE_SHIFT)
    }
    /// `PFN_DOWN`: the frame containing `addr`.
    pub const fn down(addr: PhysAddr) -> Pfn {
        Pfn(addr.0 >> PAGE_SHIFT)
    }
}

macro_rules! arith {
    ($t:ident) => {
        impl Add<u64> for $t {
            type Output = $t;
            fn add(self, rhs: u64) -> $t {
                $t(self.0 + rhs)
            }
        }
        impl Sub<u64> for $t {
            type Output = $t;
            fn sub(self, rhs: u64) -> $t {
                $t(self.0 - rhs)
            }
        }
        impl Sub<$t> for $t {
            type Output = u64;
            fn sub(self, rhs: $t) -> u64 {
                self.0 - rhs.0
            }
        }
        impl fmt::LowerHex for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::LowerHex::fmt(&self.0, f)
            }
        }
    };
}
arith!(PhysAddr);
arith!(VirtAddr);
arith!(Pfn);

impl fmt::Debug for PhysAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PhysAddr({:#x})", self.0)
    }
}
impl fmt::Debug for VirtAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VirtAddr({:#x})", self.0)
    }
}
impl fmt::Debug for Pfn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pfn({:#x})", self.0)
    }
}
impl fmt::Display for PhysAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}
impl fmt::Display for VirtAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}
impl fmt::Display for Pfn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pfn_round_trip() {
        let a = PhysAddr::new(0x1_2345_6789);
        assert_eq!(a.pfn(), Pfn::new(0x123456));
        assert_eq!(a.pfn().phys(), PhysAddr::new(0x1_2345_6000));
        assert_eq!(Pfn::up(a), Pfn::new(0x123457));
        assert_eq!(Pfn::down(a), Pfn::new(0x123456));
        assert_eq!(a.page_offset(), 0x789);
    }

    #[test]
    fn alignment() {
        let v = VirtAddr::new(0xc000_1234);
        assert_eq!(v.align_down(PAGE_SIZE), VirtAddr::new(0xc000_1000));
        assert_eq!(v.align_up(PAGE_SIZE), VirtAddr::new(0xc000_2000));
        assert!(!v.is_aligned(PAGE_SIZE));
        assert_eq!(v.vpn(), 0xc0001);
    }
}
