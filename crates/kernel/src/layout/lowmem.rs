//! Where lowmem ends: `find_low_pfn_range()` of arch/x86/mm/init_32.c.
//!
//! If all RAM fits below `MAXMEM_PFN` it is all lowmem (`lowmem_pfn_init`), unless
//! `highmem=` asks for artificial high memory; otherwise lowmem stops at `MAXMEM_PFN` and
//! the rest becomes highmem (`highmem_pfn_init`), trimmed by `highmem=`, by a HIGHMEM4G
//! kernel's 4 GiB limit, or dropped entirely by a kernel without HIGHMEM. Each refusal
//! prints a warning, reproduced here word for word. The kernel's variables are 32-bit
//! (`unsigned long` pfns, `unsigned int highmem_pages`), and so is the arithmetic here.

use super::{KernMsg, LogLevel};
use crate::config::{KernelConfig, MAX_NONPAE_PFN};
use machine::PAGE_SHIFT;

const U32: u64 = 0xffff_ffff;
/// `highmem_pages` before any `highmem=`: the kernel's `-1`.
pub const HIGHMEM_PAGES_UNSET: u64 = U32;

/// `pages_to_mb()`.
pub fn pages_to_mb(pages: u64) -> u64 {
    pages >> (20 - PAGE_SHIFT)
}

/// Result of find_low_pfn_range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LowPfnRange {
    pub max_low_pfn: u64,
    /// `max_pfn`, possibly lowered.
    pub max_pfn: u64,
}

/// Split RAM into lowmem and highmem. `highmem_pages` is [`HIGHMEM_PAGES_UNSET`] or the
/// `highmem=` size in pages (truncated to 32 bits as the kernel stores it).
pub fn find_low_pfn_range(
    cfg: &KernelConfig,
    max_pfn: u64,
    maxmem: u64,
    highmem_pages: u64,
    msgs: &mut Vec<KernMsg>,
) -> LowPfnRange {
    let maxmem_pfn = maxmem >> PAGE_SHIFT;
    if max_pfn <= maxmem_pfn {
        lowmem_pfn_init(cfg, max_pfn, highmem_pages, msgs)
    } else {
        highmem_pfn_init(cfg, max_pfn, maxmem, highmem_pages, msgs)
    }
}

fn lowmem_pfn_init(
    cfg: &KernelConfig,
    max_pfn: u64,
    highmem_pages: u64,
    msgs: &mut Vec<KernMsg>,
) -> LowPfnRange {
    let mut max_low_pfn = max_pfn;
    let mut highmem_pages = if highmem_pages == HIGHMEM_PAGES_UNSET {
        0
    } else {
        highmem_pages
    };
    if cfg.has_highmem() {
        if highmem_pages >= max_pfn {
            msgs.push(KernMsg::new(
                LogLevel::Err,
                format!(
                    "highmem size ({}MB) is bigger than pages available ({}MB)!",
                    pages_to_mb(highmem_pages),
                    pages_to_mb(max_pfn)
                ),
            ));
            highmem_pages = 0;
        }
        if highmem_pages != 0 {
            if max_low_pfn - highmem_pages < (64 << 20) >> PAGE_SHIFT {
                msgs.push(KernMsg::new(
                    LogLevel::Err,
                    format!(
                        "highmem size ({}MB) results in <64MB lowmem, ignoring it!",
                        pages_to_mb(highmem_pages)
                    ),
                ));
                highmem_pages = 0;
            }
            max_low_pfn -= highmem_pages;
        }
    } else if highmem_pages != 0 {
        msgs.push(KernMsg::new(
            LogLevel::Err,
            "ignoring highmem size on non-highmem kernel!".to_string(),
        ));
    }
    LowPfnRange {
        max_low_pfn,
        max_pfn,
    }
}

fn highmem_pfn_init(
    cfg: &KernelConfig,
    max_pfn: u64,
    maxmem: u64,
    highmem_pages: u64,
    msgs: &mut Vec<KernMsg>,
) -> LowPfnRange {
    let maxmem_pfn = maxmem >> PAGE_SHIFT;
    let mut max_pfn = max_pfn;
    let max_low_pfn = maxmem_pfn;
    let highmem_pages = if highmem_pages == HIGHMEM_PAGES_UNSET {
        (max_pfn - maxmem_pfn) & U32
    } else {
        highmem_pages
    };
    // unsigned int + unsigned long: 32-bit sums.
    let wanted_end = (highmem_pages + maxmem_pfn) & U32;
    if wanted_end < max_pfn {
        max_pfn = wanted_end;
    }
    if wanted_end > max_pfn {
        msgs.push(KernMsg::new(
            LogLevel::Warning,
            format!(
                "only {}MB highmem pages available, ignoring highmem size of {}MB!",
                pages_to_mb(max_pfn - maxmem_pfn),
                pages_to_mb(highmem_pages)
            ),
        ));
    }
    if !cfg.has_highmem() {
        msgs.push(KernMsg::new(
            LogLevel::Warning,
            format!("Warning only {}MB will be used.", maxmem >> 20),
        ));
        let hint = if max_pfn > MAX_NONPAE_PFN {
            "Use a HIGHMEM64G enabled kernel."
        } else {
            "Use a HIGHMEM enabled kernel."
        };
        msgs.push(KernMsg::new(LogLevel::Warning, hint.to_string()));
        max_pfn = maxmem_pfn;
    } else if !cfg.pae && max_pfn > MAX_NONPAE_PFN {
        // HIGHMEM4G (the non-PAE HIGHMEM kernel).
        max_pfn = MAX_NONPAE_PFN;
        msgs.push(KernMsg::new(
            LogLevel::Warning,
            "Warning: only 4GB will be used. Use a HIGHMEM64G enabled kernel!".to_string(),
        ));
    }
    LowPfnRange {
        max_low_pfn,
        max_pfn,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Highmem;

    const MAXMEM: u64 = 0x36ff_e000;
    const MAXMEM_PFN: u64 = MAXMEM >> 12;

    fn run(preset: &str, max_pfn: u64, hp: u64) -> (LowPfnRange, Vec<String>) {
        let cfg = KernelConfig::preset(preset).unwrap();
        let mut m = Vec::new();
        let r = find_low_pfn_range(&cfg, max_pfn, MAXMEM, hp, &mut m);
        (r, m.into_iter().map(|m| m.text).collect())
    }

    #[test]
    fn small_machine_is_all_lowmem() {
        let (r, m) = run("debian-686-pae", 0x1ffe0, HIGHMEM_PAGES_UNSET);
        assert_eq!((r.max_low_pfn, r.max_pfn), (0x1ffe0, 0x1ffe0));
        assert!(m.is_empty());
    }

    #[test]
    fn artificial_highmem() {
        let (r, m) = run("debian-686-pae", 0x1ffe0, (128 << 20) >> 12);
        assert_eq!(r.max_low_pfn, 0x1ffe0 - 0x8000);
        assert!(m.is_empty());
        let (r, m) = run("debian-686-pae", 0x1ffe0, (500 << 20) >> 12);
        assert_eq!(r.max_low_pfn, 0x1ffe0);
        assert_eq!(
            m,
            ["highmem size (500MB) results in <64MB lowmem, ignoring it!"]
        );
        let (_, m) = run("debian-686-pae", 0x1ffe0, (1 << 30) >> 12);
        assert_eq!(
            m,
            ["highmem size (1024MB) is bigger than pages available (511MB)!"]
        );
    }

    #[test]
    fn highmem_option_trims_or_is_ignored() {
        let (r, m) = run("debian-686-pae", 0x14_0000, (512 << 20) >> 12);
        assert_eq!(
            (r.max_low_pfn, r.max_pfn),
            (MAXMEM_PFN, MAXMEM_PFN + 0x2_0000)
        );
        assert!(m.is_empty());
        let (r, m) = run("debian-686-pae", 0x14_0000, (8u64 << 30) >> 12);
        assert_eq!(r.max_pfn, 0x14_0000);
        assert_eq!(
            m,
            ["only 4240MB highmem pages available, ignoring highmem size of 8192MB!"]
        );
    }

    #[test]
    fn kernels_without_enough_highmem_support() {
        let (r, m) = run("debian-686", 0x20_0000, HIGHMEM_PAGES_UNSET);
        assert_eq!(r.max_pfn, MAX_NONPAE_PFN);
        assert_eq!(
            m,
            ["Warning: only 4GB will be used. Use a HIGHMEM64G enabled kernel!"]
        );
        let mut cfg = KernelConfig::preset("debian-686").unwrap();
        cfg.highmem = Highmem::NoHighmem;
        cfg.highpte = false;
        let mut msgs = Vec::new();
        let r = find_low_pfn_range(&cfg, 0x4_0000, MAXMEM, HIGHMEM_PAGES_UNSET, &mut msgs);
        assert_eq!((r.max_low_pfn, r.max_pfn), (MAXMEM_PFN, MAXMEM_PFN));
        let texts: Vec<_> = msgs.iter().map(|m| m.text.as_str()).collect();
        assert_eq!(
            texts,
            [
                "Warning only 879MB will be used.",
                "Use a HIGHMEM enabled kernel."
            ]
        );
        let mut msgs = Vec::new();
        find_low_pfn_range(&cfg, 0x1_0000, MAXMEM, 0x1000, &mut msgs);
        assert_eq!(msgs[0].text, "ignoring highmem size on non-highmem kernel!");
    }
}
