//! Transparent hugepages: what the build decides and what the boot decides.
//!
//! Two different things hide behind "THP is on". `CONFIG_TRANSPARENT_HUGEPAGE` is a build
//! option: it lets the per-CPU lists hold pageblock-order pages and puts the THP fields in
//! the Mem-Info report, on every machine the kernel boots on. Whether THP is *enabled* is
//! decided at run time: the build's default (`TRANSPARENT_HUGEPAGE_ALWAYS` on Debian), the
//! `transparent_hugepage=` boot parameter, and `hugepage_init()` (a subsys initcall), which
//! switches THP off on machines with less than 512 MiB of `totalram_pages()`. Only when it
//! stays enabled does khugepaged start, and only then does
//! `set_recommended_min_free_kbytes()` raise `min_free_kbytes` — so a 256 MiB machine keeps
//! the value `init_per_zone_wmark_min()` computed, and its watermarks and per-CPU `high`
//! limits with it.

use crate::cmdline::CmdLine;
use machine::PAGE_SIZE;

/// `transparent_hugepage_flags` as `/sys/kernel/mm/transparent_hugepage/enabled` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum ThpEnabled {
    Always,
    Madvise,
    Never,
}

impl ThpEnabled {
    /// The sysfs line, the current choice in brackets.
    pub fn sysfs_line(self) -> &'static str {
        match self {
            ThpEnabled::Always => "[always] madvise never",
            ThpEnabled::Madvise => "always [madvise] never",
            ThpEnabled::Never => "always madvise [never]",
        }
    }
}

/// Below this many pages of `totalram_pages()` hugepage_init() disables THP (512 MiB).
pub const THP_MIN_TOTALRAM_PAGES: u64 = (512 << 20) / PAGE_SIZE;

/// The run-time THP state of a booted kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ThpState {
    pub enabled: ThpEnabled,
    /// khugepaged was started (and so raised min_free_kbytes).
    pub khugepaged: bool,
}

impl ThpState {
    /// The state before hugepage_init(): the build's default, or `transparent_hugepage=`.
    pub fn from_cmdline(build_default: ThpEnabled, cmdline: &CmdLine) -> ThpState {
        ThpState {
            enabled: cmdline.transparent_hugepage.unwrap_or(build_default),
            khugepaged: false,
        }
    }

    /// `hugepage_init()`: small machines lose THP (whatever the command line said);
    /// otherwise `start_stop_khugepaged()` starts khugepaged when THP is always or madvise.
    /// Returns whether khugepaged started, i.e. whether `set_recommended_min_free_kbytes()`
    /// runs now.
    pub fn hugepage_init(&mut self, totalram_pages: u64) -> bool {
        if totalram_pages < THP_MIN_TOTALRAM_PAGES {
            self.enabled = ThpEnabled::Never;
            return false;
        }
        self.khugepaged = self.enabled != ThpEnabled::Never;
        self.khugepaged
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(line: &str) -> ThpState {
        let cmd = CmdLine::parse(line).expect("cmdline");
        ThpState::from_cmdline(ThpEnabled::Always, &cmd)
    }

    #[test]
    fn small_machines_lose_thp_whatever_the_command_line() {
        let mut s = state("transparent_hugepage=always");
        assert!(!s.hugepage_init(THP_MIN_TOTALRAM_PAGES - 1));
        assert_eq!(s.enabled, ThpEnabled::Never);
        assert!(!s.khugepaged);
    }

    #[test]
    fn khugepaged_starts_unless_never() {
        let mut s = state("");
        assert!(s.hugepage_init(THP_MIN_TOTALRAM_PAGES));
        assert_eq!(s.enabled.sysfs_line(), "[always] madvise never");
        let mut s = state("transparent_hugepage=madvise");
        assert!(s.hugepage_init(THP_MIN_TOTALRAM_PAGES));
        let mut s = state("transparent_hugepage=never");
        assert!(!s.hugepage_init(1 << 30));
        assert_eq!(s.enabled.sysfs_line(), "always madvise [never]");
    }
}
