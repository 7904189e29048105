//! The /proc/sys/vm files the reference dumps (kernel/sysctl.c `proc_dointvec` and friends).
//!
//! A sysctl file shows its integer (or integer vector) in decimal, vector elements separated
//! by tabs, with a final newline: `256\t32\t0\t0\n` for lowmem_reserve_ratio.

use serde::Serialize;

/// `proc_dointvec`/`proc_doulongvec_minmax` output for a read of the whole file.
pub fn format_dointvec(values: &[i64]) -> String {
    let mut out = values
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join("\t");
    out.push('\n');
    out
}

/// The vm sysctls, as the kernel variables hold them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct VmSysctlSnapshot {
    pub min_free_kbytes: i32,
    /// `sysctl_lowmem_reserve_ratio[MAX_NR_ZONES]` (4 entries on i386, 5 on x86_64).
    pub lowmem_reserve_ratio: Vec<i32>,
    pub watermark_scale_factor: i32,
    pub watermark_boost_factor: i32,
    pub percpu_pagelist_high_fraction: i32,
    pub overcommit_memory: i32,
    pub overcommit_ratio: i32,
    pub admin_reserve_kbytes: u64,
    pub user_reserve_kbytes: u64,
    pub extfrag_threshold: i32,
    /// `sysctl_stat_interval` converted from jiffies, as `proc_dointvec_jiffies` shows it.
    pub stat_interval_secs: i32,
}

impl VmSysctlSnapshot {
    /// Every file as `(path, contents)`, in the reference's dump order.
    pub fn files(&self) -> Vec<(&'static str, String)> {
        let one = |v: i64| format_dointvec(&[v]);
        let ratios: Vec<i64> = self
            .lowmem_reserve_ratio
            .iter()
            .map(|&r| i64::from(r))
            .collect();
        vec![
            (
                "/proc/sys/vm/min_free_kbytes",
                one(self.min_free_kbytes.into()),
            ),
            (
                "/proc/sys/vm/lowmem_reserve_ratio",
                format_dointvec(&ratios),
            ),
            (
                "/proc/sys/vm/watermark_scale_factor",
                one(self.watermark_scale_factor.into()),
            ),
            (
                "/proc/sys/vm/watermark_boost_factor",
                one(self.watermark_boost_factor.into()),
            ),
            (
                "/proc/sys/vm/percpu_pagelist_high_fraction",
                one(self.percpu_pagelist_high_fraction.into()),
            ),
            (
                "/proc/sys/vm/overcommit_memory",
                one(self.overcommit_memory.into()),
            ),
            (
                "/proc/sys/vm/overcommit_ratio",
                one(self.overcommit_ratio.into()),
            ),
            (
                "/proc/sys/vm/admin_reserve_kbytes",
                one(self.admin_reserve_kbytes as i64),
            ),
            (
                "/proc/sys/vm/user_reserve_kbytes",
                one(self.user_reserve_kbytes as i64),
            ),
            (
                "/proc/sys/vm/extfrag_threshold",
                one(self.extfrag_threshold.into()),
            ),
            (
                "/proc/sys/vm/stat_interval",
                one(self.stat_interval_secs.into()),
            ),
        ]
    }

    /// The contents of one file, by its /proc path.
    pub fn read(&self, path: &str) -> Option<String> {
        self.files()
            .into_iter()
            .find(|(p, _)| *p == path)
            .map(|(_, text)| text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vector_is_tab_separated() {
        let s = VmSysctlSnapshot {
            lowmem_reserve_ratio: vec![256, 32, 0, 0],
            ..Default::default()
        };
        assert_eq!(
            s.read("/proc/sys/vm/lowmem_reserve_ratio").unwrap(),
            "256\t32\t0\t0\n"
        );
        assert_eq!(s.read("/proc/sys/vm/min_free_kbytes").unwrap(), "0\n");
        assert_eq!(s.read("/proc/sys/vm/nonexistent"), None);
        assert_eq!(format_dointvec(&[-1]), "-1\n");
    }
}
