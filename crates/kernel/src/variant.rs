//! The kernel variants of the 2.5.5 highpte announcement (seed 001: "nohighmem 4GB
//! 4GB-highpte 64GB 64GB-highpte"), plus a 64-bit kernel, as builds derived from the two
//! Debian 6.1 presets, and which of them each [`KernelDesign`] has.
//!
//! | variant        | base preset      | CONFIG_…                         | paging  |
//! |----------------|------------------|----------------------------------|---------|
//! | `nohighmem`    | debian-686       | NOHIGHMEM                        | 2-level |
//! | `4GB`          | debian-686       | HIGHMEM4G, HIGHPTE off           | 2-level |
//! | `4GB-highpte`  | debian-686       | HIGHMEM4G + HIGHPTE (the preset) | 2-level |
//! | `64GB`         | debian-686-pae   | HIGHMEM64G (PAE), HIGHPTE off    | PAE     |
//! | `64GB-highpte` | debian-686-pae   | HIGHMEM64G + HIGHPTE (the preset)| PAE     |
//! | `x86_64`       | (amd64)          | 64-bit, no HIGHMEM               | 4-level |
//!
//! 2.4.18-SuSE's pte-highmem ties highmem page tables to CONFIG_HIGHMEM (seed 001: "Andrea's
//! latest patch ties highmem-ptes to CONFIG_HIGHMEM"): a highmem kernel of that design always
//! has its page tables in high memory, so `4GB` and `64GB` (highmem without highmem page
//! tables) do not exist there; nor does any 64-bit kernel in the two 2002 i386 designs.

use crate::config::{Arch, Highmem, KernelConfig};
use crate::design::KernelDesign;
use crate::gfp::{Gfp, __GFP_HIGHMEM, GFP_PGTABLE_USER};
use core::fmt;

/// One kernel build variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Variant {
    NoHighmem,
    Highmem4G,
    Highmem4GHighpte,
    Highmem64G,
    Highmem64GHighpte,
    X86_64,
}

/// A variant the chosen design does not have, or an unknown name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VariantError {
    #[error(
        "unknown variant `{0}` (valid: nohighmem, 4GB, 4GB-highpte, 64GB, 64GB-highpte, x86_64)"
    )]
    Unknown(String),
    #[error("variant {variant} does not exist in design {design}: {why}")]
    NotInDesign {
        variant: &'static str,
        design: &'static str,
        why: &'static str,
    },
}

impl Variant {
    /// Seed 001's five, then the 64-bit kernel.
    pub const ALL: [Variant; 6] = [
        Variant::NoHighmem,
        Variant::Highmem4G,
        Variant::Highmem4GHighpte,
        Variant::Highmem64G,
        Variant::Highmem64GHighpte,
        Variant::X86_64,
    ];

    /// The name seed 001 uses (and the CLI takes).
    pub fn name(self) -> &'static str {
        match self {
            Variant::NoHighmem => "nohighmem",
            Variant::Highmem4G => "4GB",
            Variant::Highmem4GHighpte => "4GB-highpte",
            Variant::Highmem64G => "64GB",
            Variant::Highmem64GHighpte => "64GB-highpte",
            Variant::X86_64 => "x86_64",
        }
    }

    /// Parse a CLI name (case-insensitive: `4gb-highpte` works too).
    pub fn from_name(s: &str) -> Result<Variant, VariantError> {
        Variant::ALL
            .into_iter()
            .find(|v| v.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| VariantError::Unknown(s.to_string()))
    }

    /// The variant a preset already is.
    pub fn of_config(cfg: &KernelConfig) -> Variant {
        match (cfg.arch, cfg.highmem, cfg.highpte) {
            (Arch::X86_64, _, _) => Variant::X86_64,
            (_, Highmem::NoHighmem, _) => Variant::NoHighmem,
            (_, Highmem::Highmem4G, false) => Variant::Highmem4G,
            (_, Highmem::Highmem4G, true) => Variant::Highmem4GHighpte,
            (_, Highmem::Highmem64G, false) => Variant::Highmem64G,
            (_, Highmem::Highmem64G, true) => Variant::Highmem64GHighpte,
        }
    }

    /// Whether the variant needs PAE (the debian-686-pae base).
    pub fn pae(self) -> bool {
        matches!(
            self,
            Variant::Highmem64G | Variant::Highmem64GHighpte | Variant::X86_64
        )
    }

    /// CONFIG_HIGHPTE.
    pub fn highpte(self) -> bool {
        matches!(self, Variant::Highmem4GHighpte | Variant::Highmem64GHighpte)
    }

    /// The kernel build: the Debian preset of the same paging mode with the highmem choice
    /// changed (a NOHIGHMEM kernel also loses HIGHPTE, which depends on HIGHMEM).
    pub fn config(self) -> KernelConfig {
        let base = if self.pae() {
            "debian-686-pae"
        } else {
            "debian-686"
        };
        let mut c = KernelConfig::preset(base).expect("the Debian presets exist");
        c.highpte = self.highpte();
        match self {
            Variant::NoHighmem => c.highmem = Highmem::NoHighmem,
            Variant::Highmem4G | Variant::Highmem4GHighpte => c.highmem = Highmem::Highmem4G,
            Variant::Highmem64G | Variant::Highmem64GHighpte => c.highmem = Highmem::Highmem64G,
            Variant::X86_64 => {
                c.arch = Arch::X86_64;
                c.highmem = Highmem::NoHighmem;
                c.page_table_isolation = true;
                c.name = "x86_64".to_string();
                c.release = "6.1.0-50-amd64".to_string();
            }
        }
        c
    }

    /// Whether `design` has this variant; the error says why not.
    pub fn check_design(self, design: KernelDesign) -> Result<(), VariantError> {
        let no = |why| {
            Err(VariantError::NotInDesign {
                variant: self.name(),
                design: design.name(),
                why,
            })
        };
        match (design, self) {
            (KernelDesign::PteHighmem24, Variant::Highmem4G | Variant::Highmem64G) => no(
                "2.4.18-SuSE's pte-highmem ties highmem page tables to CONFIG_HIGHMEM, there is \
                 no separate HIGHPTE switch (a highmem kernel always has highmem page tables: \
                 use 4GB-highpte or 64GB-highpte)",
            ),
            (KernelDesign::PteHighmem24 | KernelDesign::Highpte25, Variant::X86_64) => no(
                "the 2002 designs are i386 highmem designs; a 64-bit kernel has no high memory \
                 (use --design linux-6.1)",
            ),
            _ => Ok(()),
        }
    }

    /// Whether a kernel of this variant puts page tables in high memory at all (user ones
    /// with HIGHPTE; in 2.4.18-SuSE every highmem kernel, kernel page tables included).
    pub fn page_tables_in_highmem(self, design: KernelDesign) -> bool {
        match design {
            KernelDesign::PteHighmem24 => !matches!(self, Variant::NoHighmem | Variant::X86_64),
            _ => self.highpte(),
        }
    }
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `__userpte_alloc_gfp` (arch/x86/mm/pgtable.c): GFP_PGTABLE_USER, plus __GFP_HIGHMEM when
/// the kernel puts user PTE pages in high memory (CONFIG_HIGHPTE in 2.5.5 and 6.1; every
/// HIGHMEM kernel in 2.4.18-SuSE). `userpte=nohigh` would remove it.
pub fn userpte_alloc_gfp(cfg: &KernelConfig, design: KernelDesign) -> Gfp {
    let high = match design {
        KernelDesign::PteHighmem24 => cfg.has_highmem(),
        _ => cfg.highpte,
    };
    if high && cfg.arch == Arch::I386 {
        GFP_PGTABLE_USER | __GFP_HIGHMEM
    } else {
        GFP_PGTABLE_USER
    }
}

/// The gfp of a kernel PTE page for `va` (`pte_alloc_one_kernel`): always low memory in 2.5.5
/// and 6.1 ("we do not put kernel-VM ptes into highmem", seed 001); in 2.4.18-SuSE the
/// vmalloc area's PTE pages come from high memory too (seed 000).
pub fn kernel_pte_gfp(design: KernelDesign, cfg: &KernelConfig, in_vmalloc_area: bool) -> Gfp {
    let g = crate::gfp::GFP_PGTABLE_KERNEL;
    if design == KernelDesign::PteHighmem24 && cfg.has_highmem() && in_vmalloc_area {
        g | __GFP_HIGHMEM
    } else {
        g
    }
}

impl crate::Kernel {
    /// The kernel design this kernel was booted with.
    pub fn design(&self) -> KernelDesign {
        self.hm.design
    }

    /// The build variant this kernel is (from its configuration).
    pub fn variant(&self) -> Variant {
        Variant::of_config(&self.config)
    }

    // `Kernel::userpte_alloc_gfp()` (with `userpte=nohigh`) belongs to the mm branch's
    // pgtable_user.rs; [`userpte_alloc_gfp`] is the build's part of it, per design.
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_are_valid_and_round_trip() {
        for v in Variant::ALL {
            let c = v.config();
            c.validate().unwrap();
            assert_eq!(Variant::of_config(&c), v);
            assert_eq!(Variant::from_name(v.name()).unwrap(), v);
        }
        assert!(Variant::from_name("8GB").is_err());
    }

    #[test]
    fn designs_reject_what_they_do_not_have() {
        let e = Variant::Highmem4G
            .check_design(KernelDesign::PteHighmem24)
            .unwrap_err();
        assert!(e.to_string().contains("no separate HIGHPTE switch"), "{e}");
        Variant::Highmem4GHighpte
            .check_design(KernelDesign::PteHighmem24)
            .unwrap();
        for v in Variant::ALL {
            v.check_design(KernelDesign::Linux61).unwrap();
            if v != Variant::X86_64 {
                v.check_design(KernelDesign::Highpte25).unwrap();
            }
        }
    }

    #[test]
    fn userpte_gfp() {
        let d = KernelDesign::Linux61;
        let hi = userpte_alloc_gfp(&Variant::Highmem64GHighpte.config(), d);
        let lo = userpte_alloc_gfp(&Variant::Highmem64G.config(), d);
        assert!(hi.contains(__GFP_HIGHMEM));
        assert!(!lo.contains(__GFP_HIGHMEM));
        assert!(!userpte_alloc_gfp(&Variant::NoHighmem.config(), d).contains(__GFP_HIGHMEM));
        assert!(!userpte_alloc_gfp(&Variant::X86_64.config(), d).contains(__GFP_HIGHMEM));
    }
}
