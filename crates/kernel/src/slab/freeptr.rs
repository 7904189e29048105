//! The free pointer SLUB keeps inside each free object (`mm/slub.c`: `freelist_ptr`,
//! `get_freepointer`, `set_freepointer`), at the width of the kernel's `void *`: 4 bytes on
//! i386, 8 on x86_64. With SLAB_FREELIST_HARDENED the stored value is
//! `ptr ^ s->random ^ swab(ptr_addr)`, where `swab` is the architecture's `swab32` / `swab64`
//! of the address the pointer is stored at (`unsigned long`).
//!
//! The width is a run-time property of the booted kernel ([`FreePtr`], from
//! `KernelConfig::arch`), but the hot paths test it once per operation and then run a copy
//! compiled for that width (the `*_n::<N>` helpers, `N` = 4 or 8), so the pointer's load,
//! store and `swab` cost what they would in a kernel built for one architecture.

use machine::{BusError, PhysAddr, PhysMem};

use crate::config::Arch;

/// `sizeof(void *)` and `swab()` of one architecture, as SLUB's free pointers use them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FreePtr {
    wide: bool,
}

impl FreePtr {
    /// i386: 4-byte pointers, `swab32`.
    pub const I386: FreePtr = FreePtr { wide: false };
    /// x86_64: 8-byte pointers, `swab64`.
    pub const X86_64: FreePtr = FreePtr { wide: true };

    /// The free pointer of a kernel built for `arch`.
    pub const fn of(arch: Arch) -> FreePtr {
        match arch {
            Arch::I386 => FreePtr::I386,
            Arch::X86_64 => FreePtr::X86_64,
        }
    }

    /// `sizeof(void *)`.
    #[inline(always)]
    pub const fn size(self) -> u32 {
        if self.wide {
            8
        } else {
            4
        }
    }

    /// Whether pointers are 8 bytes.
    #[inline(always)]
    pub const fn is_wide(self) -> bool {
        self.wide
    }

    /// `swab((unsigned long)addr)`: `swab32` of the low half on i386, `swab64` on x86_64.
    #[inline(always)]
    pub const fn swab(self, addr: u64) -> u64 {
        if self.wide {
            swab_n::<8>(addr)
        } else {
            swab_n::<4>(addr)
        }
    }

    /// `freelist_ptr()`: encode a pointer stored at `addr` (and, being an XOR, decode it).
    /// On i386 everything is 32 bits wide.
    #[inline(always)]
    pub const fn encode(self, random: u64, ptr: u64, addr: u64) -> u64 {
        if self.wide {
            encode_n::<8>(random, ptr, addr)
        } else {
            encode_n::<4>(random, ptr, addr)
        }
    }

    /// The raw pointer at the start of `bytes` (little-endian), None if they are too few.
    #[inline(always)]
    pub fn load(self, bytes: &[u8]) -> Option<u64> {
        if self.wide {
            load_n::<8>(bytes.get(..8)?)
        } else {
            load_n::<4>(bytes.get(..4)?)
        }
    }

    /// Read the raw pointer at physical address `pa`.
    #[inline(always)]
    pub fn read(self, mem: &PhysMem, pa: PhysAddr) -> Result<u64, BusError> {
        if self.wide {
            mem.read_u64(pa)
        } else {
            mem.read_u32(pa).map(u64::from)
        }
    }

    /// Write the raw pointer `v` at physical address `pa` (its low 4 bytes on i386).
    #[inline(always)]
    pub fn write(self, mem: &mut PhysMem, pa: PhysAddr, v: u64) -> Result<(), BusError> {
        if self.wide {
            write_n::<8>(mem, pa, v)
        } else {
            write_n::<4>(mem, pa, v)
        }
    }
}

/// `swab()` of `N`-byte `unsigned long`s: `swab32` of the low half, or `swab64`.
#[inline(always)]
pub(crate) const fn swab_n<const N: usize>(addr: u64) -> u64 {
    if N == 8 {
        addr.swap_bytes()
    } else {
        (addr as u32).swap_bytes() as u64
    }
}

/// `freelist_ptr()` for `N`-byte pointers (`unsigned long` and `swab` of that width).
#[inline(always)]
pub(crate) const fn encode_n<const N: usize>(random: u64, ptr: u64, addr: u64) -> u64 {
    if N == 8 {
        ptr ^ random ^ addr.swap_bytes()
    } else {
        (ptr as u32 ^ random as u32 ^ (addr as u32).swap_bytes()) as u64
    }
}

/// An `N`-byte little-endian pointer from exactly `N` bytes (None for another length).
#[inline(always)]
pub(crate) fn load_n<const N: usize>(bytes: &[u8]) -> Option<u64> {
    if N == 8 {
        Some(u64::from_le_bytes(bytes.try_into().ok()?))
    } else {
        Some(u64::from(u32::from_le_bytes(bytes.try_into().ok()?)))
    }
}

/// Write the `N`-byte pointer `v` at physical address `pa`.
#[inline(always)]
pub(crate) fn write_n<const N: usize>(
    mem: &mut PhysMem,
    pa: PhysAddr,
    v: u64,
) -> Result<(), BusError> {
    if N == 8 {
        mem.write_u64(pa, v)
    } else {
        mem.write_u32(pa, v as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_follow_the_architecture() {
        assert_eq!(FreePtr::of(Arch::I386).size(), 4);
        assert_eq!(FreePtr::of(Arch::X86_64).size(), 8);
        assert!(!FreePtr::I386.is_wide());
        assert!(FreePtr::X86_64.is_wide());
    }

    #[test]
    fn swab_is_swab32_on_i386_and_swab64_on_x86_64() {
        let a = 0xc123_4568u64;
        assert_eq!(
            FreePtr::I386.swab(a),
            u64::from(0xc123_4568u32.swap_bytes())
        );
        assert_eq!(FreePtr::I386.swab(a), 0x6845_23c1);
        let b = 0xffff_8880_0123_4568u64;
        assert_eq!(FreePtr::X86_64.swab(b), 0x6845_2301_8088_ffff);
        // i386 sees only the low 32 bits of an address, as its `unsigned long` does.
        assert_eq!(FreePtr::I386.swab(b), 0x6845_2301);
    }

    #[test]
    fn encode_matches_the_kernels_formula_and_round_trips() {
        let (random, ptr, addr) = (0x1bad_b002u64, 0xc765_4320u64, 0xc123_4568u64);
        let enc = FreePtr::I386.encode(random, ptr, addr);
        let want = 0xc765_4320u32 ^ 0x1bad_b002 ^ 0xc123_4568u32.swap_bytes();
        assert_eq!(enc, u64::from(want));
        assert_eq!(FreePtr::I386.encode(random, enc, addr), ptr);
        let (random, ptr, addr) = (
            0x0123_4567_89ab_cdefu64,
            0xffff_8881_0000_0040u64,
            0xffff_8881_0000_0020u64,
        );
        let enc = FreePtr::X86_64.encode(random, ptr, addr);
        assert_eq!(enc, ptr ^ random ^ addr.swap_bytes());
        assert_eq!(enc, 0xdedc_cde6_0823_3250);
        assert_eq!(FreePtr::X86_64.encode(random, enc, addr), ptr);
        // NULL (end of list) encodes to the key, not to 0.
        assert_ne!(FreePtr::X86_64.encode(random, 0, addr), 0);
    }

    #[test]
    fn load_reads_the_pointer_width_little_endian() {
        let bytes = [0x20, 0x00, 0x00, 0x01, 0x81, 0x88, 0xff, 0xff, 0xaa];
        assert_eq!(FreePtr::I386.load(&bytes), Some(0x0100_0020));
        assert_eq!(FreePtr::X86_64.load(&bytes), Some(0xffff_8881_0100_0020));
        assert_eq!(FreePtr::X86_64.load(&bytes[..7]), None);
        assert_eq!(FreePtr::I386.load(&bytes[..4]), Some(0x0100_0020));
        assert_eq!(FreePtr::I386.load(&bytes[..3]), None);
    }

    #[test]
    fn ram_access_writes_only_the_pointer_width() {
        let mut mem = PhysMem::new(&[(PhysAddr::new(0), 0x10_0000)]).expect("ram");
        let pa = PhysAddr::new(0x1000);
        mem.write_u64(pa, u64::MAX).expect("fill");
        FreePtr::I386
            .write(&mut mem, pa, 0xffff_8881_1234_5678)
            .expect("i386");
        assert_eq!(mem.read_u64(pa), Ok(0xffff_ffff_1234_5678));
        assert_eq!(FreePtr::I386.read(&mem, pa), Ok(0x1234_5678));
        FreePtr::X86_64
            .write(&mut mem, pa, 0xffff_8881_1234_5678)
            .expect("x86_64");
        assert_eq!(FreePtr::X86_64.read(&mem, pa), Ok(0xffff_8881_1234_5678));
    }
}
