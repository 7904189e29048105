//! The kernel's page-table entry bits (arch/x86/include/asm/pgtable_types.h).
//!
//! The kernel writes raw entry values; the simulated MMU (in the `machine` crate) decodes
//! them with its own, independent definition of the hardware format. Keeping the two apart
//! is deliberate: a wrong bit here shows up as a fault or a wrong translation there, as it
//! would on real hardware.

pub type PteVal = u64;

pub const _PAGE_PRESENT: PteVal = 1 << 0;
pub const _PAGE_RW: PteVal = 1 << 1;
pub const _PAGE_USER: PteVal = 1 << 2;
pub const _PAGE_PWT: PteVal = 1 << 3;
pub const _PAGE_PCD: PteVal = 1 << 4;
pub const _PAGE_ACCESSED: PteVal = 1 << 5;
pub const _PAGE_DIRTY: PteVal = 1 << 6;
pub const _PAGE_PSE: PteVal = 1 << 7;
pub const _PAGE_GLOBAL: PteVal = 1 << 8;
pub const _PAGE_NX: PteVal = 1 << 63;

/// Early identity attributes used by head_32 and the first pass of the direct map.
pub const PTE_IDENT_ATTR: PteVal = 0x003;
pub const PDE_IDENT_ATTR: PteVal = 0x063;
pub const PGD_IDENT_ATTR: PteVal = 0x001;

/// `_KERNPG_TABLE`: how a kernel page-table page is linked into its parent.
pub const _KERNPG_TABLE: PteVal = _PAGE_PRESENT | _PAGE_RW | _PAGE_ACCESSED | _PAGE_DIRTY;
/// `_PAGE_TABLE`: the same for user page tables.
pub const _PAGE_TABLE: PteVal = _KERNPG_TABLE | _PAGE_USER;

/// `__PAGE_KERNEL_EXEC`, before masking.
pub const __PAGE_KERNEL_EXEC: PteVal =
    _PAGE_PRESENT | _PAGE_RW | _PAGE_DIRTY | _PAGE_ACCESSED | _PAGE_GLOBAL;
/// `__PAGE_KERNEL`.
pub const __PAGE_KERNEL: PteVal = __PAGE_KERNEL_EXEC | _PAGE_NX;
/// `__PAGE_KERNEL_RO`.
pub const __PAGE_KERNEL_RO: PteVal = __PAGE_KERNEL & !_PAGE_RW;
/// `__PAGE_KERNEL_NOCACHE`.
pub const __PAGE_KERNEL_NOCACHE: PteVal = __PAGE_KERNEL | _PAGE_PCD;

/// The masks the kernel ANDs into every kernel protection, decided at boot from the CPU
/// features (`__supported_pte_mask` / `__default_kernel_pte_mask`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PteMasks {
    pub supported: PteVal,
    pub default_kernel: PteVal,
}

impl PteMasks {
    /// NX survives only on PAE kernels on an NX CPU; G survives only with PGE and without PTI.
    pub fn new(pae: bool, cpu_nx: bool, cpu_pge: bool, pti: bool) -> Self {
        let mut supported = !0u64;
        if !(pae && cpu_nx) {
            supported &= !_PAGE_NX;
        }
        if !pae {
            supported &= 0xffff_ffff;
        }
        let mut default_kernel = supported;
        if !cpu_pge || pti {
            default_kernel &= !_PAGE_GLOBAL;
        }
        PteMasks {
            supported,
            default_kernel,
        }
    }

    /// `PAGE_KERNEL` as installed.
    pub fn page_kernel(&self) -> PteVal {
        __PAGE_KERNEL & self.default_kernel
    }
    /// `PAGE_KERNEL_EXEC` as installed.
    pub fn page_kernel_exec(&self) -> PteVal {
        __PAGE_KERNEL_EXEC & self.default_kernel
    }
    /// `PAGE_KERNEL_LARGE` (direct-map large pages).
    pub fn page_kernel_large(&self) -> PteVal {
        (__PAGE_KERNEL | _PAGE_PSE) & self.default_kernel
    }
    /// `PAGE_KERNEL_LARGE_EXEC`.
    pub fn page_kernel_large_exec(&self) -> PteVal {
        (__PAGE_KERNEL_EXEC | _PAGE_PSE) & self.default_kernel
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pti_drops_global_and_non_pae_drops_nx() {
        let pae_pti = PteMasks::new(true, true, true, true);
        assert_eq!(pae_pti.page_kernel() & _PAGE_GLOBAL, 0);
        assert_ne!(pae_pti.page_kernel() & _PAGE_NX, 0);
        let nopae = PteMasks::new(false, true, true, false);
        assert_eq!(nopae.page_kernel() & _PAGE_NX, 0);
        assert_ne!(nopae.page_kernel() & _PAGE_GLOBAL, 0);
        assert_eq!(pae_pti.default_kernel, !_PAGE_GLOBAL);
    }
}
