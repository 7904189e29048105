//! The real kernel's reference runs (`shared/reference/*.txt`), parsed.
//!
//! Each file is the serial console of one QEMU boot of Debian's Linux 6.1 i386 kernel: two
//! `ORACLE-*` header lines (the run, the exact QEMU command), the boot log, then files dumped
//! between `=====BEGIN <path>=====` and `=====END <path>=====` markers. Blocks nest in the
//! workload runs (the `shmwork` block holds later /proc dumps) and a path may be dumped more
//! than once, so every block is kept in file order. This module splits a file into those parts,
//! parses what the fidelity tests compare (zoneinfo, meminfo, buddyinfo, pagetypeinfo, vmstat,
//! the kinspect variables and page-table walk, a few boot-log lines, the workload's PROGRESS
//! lines) and turns the /proc dumps into `kernel::procfs` snapshots, so a test can format them
//! again and compare byte for byte. Every parse error names the file and line.
//!
//! One job per file: this one finds the runs and parses a run's header and boot log;
//! `sections` splits the dumps, one file per dump format parses it, `lines` holds the single
//! boot-log lines, `snapshot` converts dumps to `kernel::procfs` snapshots, and `constants`
//! reads the build constants gdb took from the debug images.

mod buddyinfo;
mod constants;
mod error;
mod kinspect;
mod lines;
mod meminfo;
mod pagetypeinfo;
mod sections;
mod slabinfo;
mod snapshot;
mod vmstat;
mod zoneinfo;

pub use buddyinfo::{Buddyinfo, BuddyinfoZone};
pub use constants::{constants_path, load_constants, parse_constants};
pub use error::ReferenceError;
pub use kinspect::{KcoreLoad, Kinspect, WalkLine, WalkMapping, WalkTable};
pub use lines::{strip_timestamp, MemoryLine, PercpuLine, Progress, ZonelistsLine};
pub use meminfo::{Meminfo, MeminfoEntry};
pub use pagetypeinfo::{PagetypeBlocks, PagetypeFree, Pagetypeinfo};
pub use sections::{capture_ram_mib, first_block, Section};
pub use slabinfo::{SlabinfoLine, SLABINFO_VERSION_LINE};
pub use vmstat::Vmstat;
pub use zoneinfo::{Pageset, Zoneinfo, ZoneinfoZone};

use buddyinfo::parse_buddyinfo;
use error::Src;
use kinspect::parse_kinspect;
use lines::{key_values, parse_memory_line, parse_percpu_line, parse_zonelists_line};
use meminfo::parse_meminfo;
use pagetypeinfo::parse_pagetypeinfo;
use sections::parse_sections;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use vmstat::parse_vmstat;
use zoneinfo::parse_zoneinfo;

/// The command line every run starts with; a run's own options follow it.
pub const BASE_APPEND: &str = "console=ttyS0,115200 nokaslr panic=-1";

/// The shared directory: `$HIGHMEM_SHARED`, else `shared/` beside the workspace.
pub fn shared_dir() -> PathBuf {
    match std::env::var_os("HIGHMEM_SHARED") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared")),
    }
}

/// `<shared>/reference`.
pub fn reference_dir() -> PathBuf {
    shared_dir().join("reference")
}

/// Every `reference/*.txt`, sorted by name.
pub fn list_runs() -> Result<Vec<PathBuf>, ReferenceError> {
    let dir = reference_dir();
    let io = |source| ReferenceError::Io {
        path: dir.clone(),
        source,
    };
    let mut runs = Vec::new();
    for entry in std::fs::read_dir(&dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path.is_file() && path.extension().is_some_and(|e| e == "txt") {
            runs.push(path);
        }
    }
    runs.sort();
    Ok(runs)
}

/// Which Debian kernel image booted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum KernelFlavor {
    /// `686-pae`: HIGHMEM64G, 3-level PAE paging.
    Pae,
    /// `686`: HIGHMEM4G, 2-level paging.
    NonPae,
    /// `amd64`: the 64-bit kernel (4-level paging, no high memory), in the captures of
    /// `crates/highmem/tests/realworks/` only.
    Amd64,
}

impl KernelFlavor {
    /// Both i386 images, PAE first (the reference's).
    pub const ALL: [KernelFlavor; 2] = [KernelFlavor::Pae, KernelFlavor::NonPae];

    pub fn is_pae(self) -> bool {
        self == KernelFlavor::Pae
    }
    /// The `kernel::config::KernelConfig` preset built like this image (for amd64, the
    /// `x86_64` variant's name).
    pub fn preset_name(self) -> &'static str {
        match self {
            KernelFlavor::Pae => "debian-686-pae",
            KernelFlavor::NonPae => "debian-686",
            KernelFlavor::Amd64 => "x86_64",
        }
    }
    /// The build's /proc/vmstat and /proc/zoneinfo entries.
    pub fn vmstat_config(self) -> kernel::procfs::VmstatConfig {
        match self {
            KernelFlavor::Pae | KernelFlavor::NonPae => kernel::procfs::VmstatConfig::I386,
            KernelFlavor::Amd64 => kernel::procfs::VmstatConfig::X86_64,
        }
    }
    /// `HPAGE_PMD_NR`: base pages per PMD-sized page (2 MiB with PAE, 4 MiB without).
    pub fn hpage_pmd_nr(self) -> u64 {
        match self {
            KernelFlavor::Pae | KernelFlavor::Amd64 => 512,
            KernelFlavor::NonPae => 1024,
        }
    }
}

/// One reference run, parsed.
#[derive(Clone, Debug, Serialize)]
pub struct RefRun {
    pub path: PathBuf,
    /// `ORACLE-RUN` fields.
    pub name: String,
    pub kernel: KernelFlavor,
    pub ram_mib: u64,
    pub smp: u32,
    /// Every `key=value` of the ORACLE-RUN line.
    pub run_fields: BTreeMap<String, String>,
    /// The QEMU command of ORACLE-QEMU.
    pub qemu_command: String,
    /// The whole `-append` string.
    pub append: String,
    /// The run's own options, after [`BASE_APPEND`] (kernel options and `oracle.*` ones).
    pub extra_options: Vec<String>,
    /// The console copy of the boot log up to init, timestamps stripped.
    pub boot_log: Vec<String>,
    pub sections: Vec<Section>,
    pub kinspect: Option<Kinspect>,
    /// Every dump of each file, in file order (the first is the one right after boot).
    pub meminfo: Vec<Meminfo>,
    pub zoneinfo: Vec<Zoneinfo>,
    pub buddyinfo: Vec<Buddyinfo>,
    pub pagetypeinfo: Vec<Pagetypeinfo>,
    pub vmstat: Vec<Vmstat>,
    pub memory_line: Option<MemoryLine>,
    pub zonelists: Option<ZonelistsLine>,
    pub percpu: Option<PercpuLine>,
    /// `ORACLE-WORK` fields of a workload run.
    pub work: Option<BTreeMap<String, String>>,
    pub progress: Vec<Progress>,
    /// `OOM-EVENT …` lines, verbatim.
    pub oom_events: Vec<String>,
}

impl RefRun {
    /// Reads and parses one reference file.
    pub fn load(path: impl AsRef<Path>) -> Result<RefRun, ReferenceError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ReferenceError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Parses the text of a reference file; `path` only names it in errors.
    pub fn parse(path: &Path, text: &str) -> Result<RefRun, ReferenceError> {
        let src = Src { path };
        let mut lines: Vec<&str> = text.split('\n').collect();
        if lines.last() == Some(&"") {
            lines.pop();
        }

        // ORACLE-RUN / ORACLE-QEMU
        let run_line = lines
            .first()
            .and_then(|l| l.strip_prefix("ORACLE-RUN "))
            .ok_or_else(|| src.err(1, "expected an ORACLE-RUN line"))?;
        let run_fields = key_values(run_line);
        let field = |k: &str| {
            run_fields
                .get(k)
                .ok_or_else(|| src.err(1, format!("ORACLE-RUN lacks {k}=")))
        };
        let name = field("name")?.clone();
        let kernel = match field("kernel")?.as_str() {
            "vmlinuz-pae" => KernelFlavor::Pae,
            "vmlinuz-nopae" => KernelFlavor::NonPae,
            "vmlinuz-amd64" => KernelFlavor::Amd64,
            other => return Err(src.err(1, format!("unknown kernel image {other:?}"))),
        };
        let ram = field("ram")?;
        let ram_mib = src.num(1, "ram", ram.strip_suffix('M').unwrap_or(ram))?;
        let smp = src.num(1, "smp", field("smp")?)?;

        let qemu_command = lines
            .get(1)
            .and_then(|l| l.strip_prefix("ORACLE-QEMU "))
            .ok_or_else(|| src.err(2, "expected an ORACLE-QEMU line"))?
            .to_string();
        let append = qemu_command
            .split_once("-append \"")
            .and_then(|(_, rest)| rest.split_once('"'))
            .map(|(a, _)| a.to_string())
            .ok_or_else(|| src.err(2, "ORACLE-QEMU has no -append \"…\""))?;
        let extra = append
            .strip_prefix(BASE_APPEND)
            .ok_or_else(|| src.err(2, format!("-append does not start with {BASE_APPEND:?}")))?;
        let extra_options = extra.split_whitespace().map(str::to_string).collect();

        let sections = parse_sections(src, &lines)?;

        // Console boot log: from the first timestamped line to the start of init.
        let mut boot_log = Vec::new();
        for line in &lines[2..] {
            if line.starts_with("ORACLE-INIT-START") || line.starts_with("=====BEGIN ") {
                break;
            }
            match strip_timestamp(line) {
                Some(msg) => boot_log.push(msg.to_string()),
                None if !boot_log.is_empty() => boot_log.push(line.to_string()),
                None => {}
            }
        }

        let mut run = RefRun {
            path: path.to_path_buf(),
            name,
            kernel,
            ram_mib,
            smp,
            run_fields,
            qemu_command,
            append,
            extra_options,
            boot_log,
            sections: Vec::new(),
            kinspect: None,
            meminfo: Vec::new(),
            zoneinfo: Vec::new(),
            buddyinfo: Vec::new(),
            pagetypeinfo: Vec::new(),
            vmstat: Vec::new(),
            memory_line: None,
            zonelists: None,
            percpu: None,
            work: None,
            progress: Vec::new(),
            oom_events: Vec::new(),
        };

        for s in &sections {
            match s.path.as_str() {
                "/proc/meminfo" => run.meminfo.push(parse_meminfo(src, s)?),
                "/proc/zoneinfo" => run.zoneinfo.push(parse_zoneinfo(src, s)?),
                "/proc/buddyinfo" => run.buddyinfo.push(parse_buddyinfo(src, s)?),
                "/proc/pagetypeinfo" => run.pagetypeinfo.push(parse_pagetypeinfo(src, s)?),
                "/proc/vmstat" => run.vmstat.push(parse_vmstat(src, s)?),
                "kinspect" if run.kinspect.is_none() => {
                    run.kinspect = Some(parse_kinspect(src, s)?)
                }
                _ => {}
            }
        }
        run.sections = sections;

        let boot_line = |prefix: &str| {
            run.boot_log
                .iter()
                .enumerate()
                .find(|(_, l)| l.starts_with(prefix))
                .map(|(i, l)| (i, l.clone()))
        };
        // Boot-log errors point at the console line: find it again for the message.
        let log_line = |needle: &str| {
            lines
                .iter()
                .position(|l| l.contains(needle))
                .map_or(0, |i| i + 1)
        };
        if let Some((_, l)) = boot_line("Memory: ") {
            run.memory_line = Some(
                parse_memory_line(&l)
                    .ok_or_else(|| src.err(log_line(&l), format!("bad Memory: line {l:?}")))?,
            );
        }
        if let Some((_, l)) = boot_line("Built ") {
            run.zonelists = Some(
                parse_zonelists_line(&l)
                    .ok_or_else(|| src.err(log_line(&l), format!("bad zonelists line {l:?}")))?,
            );
        }
        if let Some((_, l)) = boot_line("percpu: Embedded ") {
            run.percpu = Some(
                parse_percpu_line(&l)
                    .ok_or_else(|| src.err(log_line(&l), format!("bad percpu line {l:?}")))?,
            );
        }

        for (i, line) in lines.iter().enumerate() {
            if let Some(rest) = line.strip_prefix("ORACLE-WORK ") {
                run.work = Some(key_values(rest));
            } else if let Some(rest) = line.strip_prefix("PROGRESS ") {
                let mut fields = BTreeMap::new();
                for kv in rest.split_whitespace() {
                    let (k, v) = kv.split_once('=').ok_or_else(|| {
                        src.err(i + 1, format!("PROGRESS field without '=': {kv:?}"))
                    })?;
                    fields.insert(k.to_string(), v.to_string());
                }
                run.progress.push(Progress {
                    line: i + 1,
                    fields,
                });
            } else if line.starts_with("OOM-EVENT ") {
                run.oom_events.push(line.to_string());
            }
        }
        Ok(run)
    }

    /// The first block dumped under `path` (e.g. `/proc/meminfo`, `kinspect`, `dmesg`).
    pub fn section(&self, path: &str) -> Option<&str> {
        self.sections
            .iter()
            .find(|s| s.path == path)
            .map(|s| s.text.as_str())
    }

    /// Every block dumped under `path`, in file order.
    pub fn sections<'a>(&'a self, path: &'a str) -> impl Iterator<Item = &'a Section> + 'a {
        self.sections.iter().filter(move |s| s.path == path)
    }

    /// The block whose BEGIN marker is on line `begin_line` (each parsed dump records it).
    pub fn section_at(&self, begin_line: usize) -> Option<&Section> {
        self.sections.iter().find(|s| s.begin_line == begin_line)
    }

    /// The full kernel log of the `dmesg` block (it has the debug-level lines the console
    /// lacks), timestamps stripped.
    pub fn dmesg(&self) -> Vec<String> {
        self.section("dmesg")
            .map(|t| {
                t.lines()
                    .map(|l| strip_timestamp(l).unwrap_or(l).to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `Total pages:` of the zonelists boot line.
    pub fn total_pages(&self) -> Option<u64> {
        self.zonelists.as_ref().map(|z| z.total_pages)
    }

    /// The integers of the first block dumped under `path` (a /proc/sys file).
    pub fn sysctl_values(&self, path: &str) -> Result<Option<Vec<i64>>, ReferenceError> {
        let Some(s) = self.sections.iter().find(|s| s.path == path) else {
            return Ok(None);
        };
        let src = Src { path: &self.path };
        s.text
            .split_whitespace()
            .map(|v| src.num(s.begin_line + 1, path, v))
            .collect::<Result<Vec<i64>, _>>()
            .map(Some)
    }

    /// How many times /proc/sys/vm/lowmem_reserve_ratio was read before line `line`. In 6.1
    /// the handler of that file runs setup_per_zone_lowmem_reserve() on every access, reads
    /// included, so each read recomputes lowmem_reserve and totalreserve_pages from the
    /// managed pages of that moment: figures from different epochs need not agree.
    pub fn reserve_epoch(&self, line: usize) -> usize {
        self.sections
            .iter()
            .filter(|s| s.path == "/proc/sys/vm/lowmem_reserve_ratio" && s.begin_line < line)
            .count()
    }

    /// The zoneinfo dump nearest to line `line` of the file.
    pub fn nearest_zoneinfo(&self, line: usize) -> Option<&Zoneinfo> {
        self.zoneinfo
            .iter()
            .min_by_key(|z| z.begin_line.abs_diff(line))
    }

    fn src(&self) -> Src<'_> {
        Src { path: &self.path }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<RefRun, ReferenceError> {
        RefRun::parse(Path::new("t.txt"), text)
    }

    const HEAD: &str = "ORACLE-RUN name=t kernel=vmlinuz-pae ram=1024M smp=2 accel=tcg\n\
        ORACLE-QEMU qemu -m 1024 -append \"console=ttyS0,115200 nokaslr panic=-1 vmalloc=256M\"\n\
        junk[    0.000000] Linux version 6.1\n\
        [    0.010000] Memory: 10K/20K available (1K kernel code, 2K rwdata, 3K rodata, 4K init, 5K bss, 6K reserved, 0K cma-reserved, 7K highmem)\n\
        [    0.020000] Built 1 zonelists, mobility grouping on.  Total pages: 99\n\
        ORACLE-INIT-START\n";

    #[test]
    fn header_and_boot_log() {
        let run = parse(HEAD).unwrap();
        assert_eq!(
            (run.name.as_str(), run.kernel, run.ram_mib, run.smp),
            ("t", KernelFlavor::Pae, 1024, 2)
        );
        assert_eq!(run.extra_options, vec!["vmalloc=256M"]);
        assert_eq!(run.boot_log[0], "Linux version 6.1");
        assert_eq!(run.memory_line.as_ref().unwrap().highmem_kb, Some(7));
        assert_eq!(run.total_pages(), Some(99));
    }

    #[test]
    fn each_flavor_names_its_preset() {
        for f in KernelFlavor::ALL {
            let cfg = kernel::config::KernelConfig::preset(f.preset_name()).expect("preset");
            assert_eq!(cfg.pae, f.is_pae(), "{f:?}");
        }
        assert_ne!(
            KernelFlavor::Pae.preset_name(),
            KernelFlavor::NonPae.preset_name()
        );
    }

    #[test]
    fn nested_sections() {
        let text = format!("{HEAD}=====BEGIN a=====\nx\n=====BEGIN /proc/vmstat=====\nnr_free_pages 5\n=====END /proc/vmstat=====\n=====END a=====\n");
        let run = parse(&text).unwrap();
        assert_eq!(run.section("/proc/vmstat"), Some("nr_free_pages 5\n"));
        assert_eq!(
            run.sections
                .iter()
                .find(|s| s.path == "/proc/vmstat")
                .unwrap()
                .depth,
            1
        );
        assert!(run
            .section("a")
            .unwrap()
            .contains("=====END /proc/vmstat=====\n"));
        assert_eq!(run.vmstat[0].get("nr_free_pages"), Some(5));
    }

    #[test]
    fn errors_name_file_and_line() {
        let unclosed = format!("{HEAD}=====BEGIN /proc/meminfo=====\nMemTotal: 4 kB\n");
        let e = parse(&unclosed).unwrap_err().to_string();
        assert_eq!(e, "t.txt:7: /proc/meminfo is never closed");

        let bad = format!(
            "{HEAD}=====BEGIN /proc/meminfo=====\nMemTotal: many kB\n=====END /proc/meminfo=====\n"
        );
        let e = parse(&bad).unwrap_err().to_string();
        assert_eq!(e, "t.txt:8: bad MemTotal: \"many\"");

        let zone = format!(
            "{HEAD}=====BEGIN /proc/zoneinfo=====\n  pages free 3\n=====END /proc/zoneinfo=====\n"
        );
        assert!(parse(&zone)
            .unwrap_err()
            .to_string()
            .starts_with("t.txt:8: zoneinfo line before"));

        assert!(parse("hello\n")
            .unwrap_err()
            .to_string()
            .contains("t.txt:1: expected an ORACLE-RUN"));
    }
}
