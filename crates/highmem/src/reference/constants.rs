//! The build constants of the two debug images (`reference/kernel/constants-*.txt`).
//!
//! gdb printed them from each image's debug info as `EXPRESSION = VALUE`: structure sizes,
//! enumerators (zones, migrate types, the fixmap), image symbols and a few variables' initial
//! values. The layout and config presets are checked against them, so they are parsed here,
//! once, beside the runs. Only values that are a single number are kept: arrays (`{256, 32,
//! 0, 0}`), negative values and gdb's `<error: …>` answers are left out.

use super::{shared_dir, KernelFlavor, ReferenceError};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// `<shared>/reference/kernel/constants-{pae,nopae}.txt`.
pub fn constants_path(flavor: KernelFlavor) -> PathBuf {
    let tag = match flavor {
        KernelFlavor::Pae => "pae",
        KernelFlavor::NonPae => "nopae",
        KernelFlavor::Amd64 => "amd64",
    };
    shared_dir().join(format!("reference/kernel/constants-{tag}.txt"))
}

/// Reads and parses the constants of one image.
pub fn load_constants(flavor: KernelFlavor) -> Result<BTreeMap<String, u64>, ReferenceError> {
    let path = constants_path(flavor);
    let text = std::fs::read_to_string(&path).map_err(|source| ReferenceError::Io {
        path: path.clone(),
        source,
    })?;
    Ok(parse_constants(&text))
}

/// `EXPRESSION = VALUE` lines → expression (trimmed) to value, for values that are a decimal
/// or `0x` hexadecimal number.
pub fn parse_constants(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(" = ")?;
            Some((k.trim().to_string(), parse_number(v)?))
        })
        .collect()
}

fn parse_number(s: &str) -> Option<u64> {
    let s = s.trim();
    match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_kept_the_rest_left_out() {
        let c = parse_constants(
            "sizeof(struct page)                  = 40\n\
             (int)FIX_HOLE = 0\n\
             __FIXADDR_TOP = 0xfffff000\n\
             sysctl_lowmem_reserve_ratio = {256, 32, 0, 0}\n\
             user_min_free_kbytes = -1\n\
             (int)MIGRATE_CMA = <error: No symbol \"MIGRATE_CMA\" in current context.>\n\
             # no value here\n",
        );
        assert_eq!(c.get("sizeof(struct page)"), Some(&40));
        assert_eq!(c.get("(int)FIX_HOLE"), Some(&0));
        assert_eq!(c.get("__FIXADDR_TOP"), Some(&0xffff_f000));
        assert_eq!(c.len(), 3, "{c:?}");
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_number(" 0x1f "), Some(31));
        assert_eq!(parse_number("17"), Some(17));
        assert_eq!(parse_number("0x"), None);
        assert_eq!(parse_number("-1"), None);
        assert_eq!(parse_number("0xfffffffffffffffff"), None);
    }

    #[test]
    fn each_image_has_its_file() {
        let pae = constants_path(KernelFlavor::Pae);
        let nopae = constants_path(KernelFlavor::NonPae);
        assert!(pae.ends_with("reference/kernel/constants-pae.txt"));
        assert!(nopae.ends_with("reference/kernel/constants-nopae.txt"));
    }
}
