//! Which kernel design the highmem mapping code follows.
//!
//! The model runs Linux 6.1's mm, but the two 2002 designs the seed documents argue about
//! differ exactly where high memory is mapped: which atomic kmap interface exists and what
//! its slots are. [`KernelDesign`] selects between them (the CLI's `--design` will take
//! it); [`KmType`] is the union of the slot names of every design, and
//! [`KernelDesign::km_types`] gives each design's own `enum km_type` in declaration order
//! (a slot's index is its position).

/// A kernel design for the highmem mapping paths.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize)]
pub enum KernelDesign {
    /// Linux 6.1: `kmap_local_page` / `kmap_atomic` on a per-task stack of fixmap slots,
    /// flushed (INVLPG) on unmap.
    #[default]
    Linux61,
    /// The 2.5.5 "simpler highpte" design (Ingo Molnar / Arjan van de Ven, Feb 2002): ptes
    /// only through atomic kmaps (`pte_offset_map` with KM_PTE0/KM_PTE1), typed slots,
    /// preemption disabled while a slot is held, fence slots with DEBUG_HIGHMEM.
    Highpte25,
    /// 2.4.18-SuSE pte-highmem (Andrea Arcangeli): typed slots of the 2.4.18 `km_type`, no
    /// kernel preemption; page tables reached through persistent kmaps and
    /// `pte_offset_atomic()`.
    PteHighmem24,
}

/// How the linux-6.1 design's `pte_offset_map` / `pte_unmap` reach a highmem PTE page.
///
/// 6.1 (x86 `pgtable_32.h`) maps it with `kmap_atomic`: preemption and page faults are off
/// while the PTE page is mapped. From 6.5 (`__pte_offset_map`), `kmap_local_page`: only
/// migration is off, so the walking task may be preempted with the map held (its slots are
/// saved and restored with it at the context switch) and may take page faults.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize)]
pub enum PteMapApi {
    /// 6.1: `kmap_atomic` / `kunmap_atomic`.
    #[default]
    KmapAtomic,
    /// 6.5+: `kmap_local_page` / `kunmap_local`.
    KmapLocal,
}

impl PteMapApi {
    /// The name the CLI and scenarios use (`--pte-map`).
    pub fn name(self) -> &'static str {
        match self {
            PteMapApi::KmapAtomic => "kmap_atomic",
            PteMapApi::KmapLocal => "kmap_local",
        }
    }
    pub fn from_name(s: &str) -> Option<PteMapApi> {
        match s.trim() {
            "kmap_atomic" | "atomic" | "6.1" => Some(PteMapApi::KmapAtomic),
            "kmap_local" | "local" | "6.5" => Some(PteMapApi::KmapLocal),
            _ => None,
        }
    }
}

/// A slot type of the historical `kmap_atomic(page, type)`.
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum KmType {
    KM_BOUNCE_READ,
    KM_SKB_DATA,
    KM_SKB_DATA_SOFTIRQ,
    KM_USER0,
    KM_USER1,
    KM_BIO_IRQ,
    KM_PTE0,
    KM_PTE1,
    KM_IRQ0,
    KM_IRQ1,
}

/// 2.4.18 mainline `include/asm-i386/kmap_types.h` (the "-" side of the 2002-03-21
/// highpte backport diff).
const KM_TYPES_24: &[KmType] = &[
    KmType::KM_BOUNCE_READ,
    KmType::KM_SKB_DATA,
    KmType::KM_SKB_DATA_SOFTIRQ,
    KmType::KM_USER0,
    KmType::KM_USER1,
];

/// highpte-2.5.5: the 2.4.18 list plus KM_BIO_IRQ, KM_PTE0, KM_PTE1.
const KM_TYPES_25: &[KmType] = &[
    KmType::KM_BOUNCE_READ,
    KmType::KM_SKB_DATA,
    KmType::KM_SKB_DATA_SOFTIRQ,
    KmType::KM_USER0,
    KmType::KM_USER1,
    KmType::KM_BIO_IRQ,
    KmType::KM_PTE0,
    KmType::KM_PTE1,
];

impl KernelDesign {
    pub const ALL: [KernelDesign; 3] = [
        KernelDesign::Linux61,
        KernelDesign::Highpte25,
        KernelDesign::PteHighmem24,
    ];

    /// The design's `enum km_type`, in order; empty for Linux 6.1 (no typed slots).
    pub fn km_types(self) -> &'static [KmType] {
        match self {
            KernelDesign::Linux61 => &[],
            KernelDesign::Highpte25 => KM_TYPES_25,
            KernelDesign::PteHighmem24 => KM_TYPES_24,
        }
    }

    /// `KM_TYPE_NR`.
    pub fn km_type_nr(self) -> u64 {
        self.km_types().len() as u64
    }

    /// The index of `t` in the design's enum, or None when the design has no such slot
    /// (the real kernel would not compile).
    pub fn km_index(self, t: KmType) -> Option<u64> {
        self.km_types()
            .iter()
            .position(|&x| x == t)
            .map(|i| i as u64)
    }

    /// Whether the design has kernel preemption (2.4 has none).
    pub fn preemptible(self) -> bool {
        !matches!(self, KernelDesign::PteHighmem24)
    }

    /// Whether the typed `kmap_atomic` raises the preempt count (2.5 with CONFIG_PREEMPT).
    pub fn typed_atomic_disables_preemption(self) -> bool {
        matches!(self, KernelDesign::Highpte25)
    }

    /// Short name for the CLI and reports.
    pub fn name(self) -> &'static str {
        match self {
            KernelDesign::Linux61 => "linux-6.1",
            KernelDesign::Highpte25 => "highpte-2.5",
            KernelDesign::PteHighmem24 => "pte-highmem-2.4",
        }
    }

    /// Parse a CLI name.
    pub fn from_name(s: &str) -> Option<KernelDesign> {
        KernelDesign::ALL.into_iter().find(|d| d.name() == s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_lists() {
        assert_eq!(KernelDesign::PteHighmem24.km_type_nr(), 5);
        assert_eq!(KernelDesign::Highpte25.km_type_nr(), 8);
        assert_eq!(KernelDesign::Highpte25.km_index(KmType::KM_PTE1), Some(7));
        assert_eq!(KernelDesign::PteHighmem24.km_index(KmType::KM_PTE0), None);
        assert_eq!(KernelDesign::Linux61.km_index(KmType::KM_USER0), None);
        for d in KernelDesign::ALL {
            assert_eq!(KernelDesign::from_name(d.name()), Some(d));
        }
    }
}
