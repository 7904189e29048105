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

use kernel::procfs::meminfo::DEFAULT_OVERCOMMIT_RATIO;
use kernel::procfs::{
    self as kp, HugetlbSnapshot, MeminfoSnapshot, NodeStatItem, PagesetSnapshot, VmEventItem,
    VmstatSnapshot, ZoneStatItem, MAX_NR_ZONES, MAX_ORDER, MAX_RECLAIM_RETRIES, MIGRATETYPE_NAMES,
    MIGRATE_TYPES,
};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

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

/// Why a reference file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}:{line}: {message}", path.display())]
    Parse {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

/// Which Debian kernel image booted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum KernelFlavor {
    /// `686-pae`: HIGHMEM64G, 3-level PAE paging.
    Pae,
    /// `686`: HIGHMEM4G, 2-level paging.
    NonPae,
}

impl KernelFlavor {
    pub fn is_pae(self) -> bool {
        self == KernelFlavor::Pae
    }
    /// `HPAGE_PMD_NR`: base pages per PMD-sized page (2 MiB with PAE, 4 MiB without).
    pub fn hpage_pmd_nr(self) -> u64 {
        match self {
            KernelFlavor::Pae => 512,
            KernelFlavor::NonPae => 1024,
        }
    }
}

/// One `=====BEGIN path=====` … `=====END path=====` block.
#[derive(Clone, Debug, Serialize)]
pub struct Section {
    pub path: String,
    /// 1-based line of the BEGIN marker; the text starts on the next line.
    pub begin_line: usize,
    /// Number of enclosing blocks.
    pub depth: usize,
    /// The lines between the markers, each with its newline: the file as it was read.
    pub text: String,
}

/// One `Label: value [kB]` line of /proc/meminfo.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MeminfoEntry {
    pub label: String,
    pub value: u64,
    /// The line ends in ` kB`.
    pub kb: bool,
}

/// A /proc/meminfo dump.
#[derive(Clone, Debug, Serialize)]
pub struct Meminfo {
    pub begin_line: usize,
    pub entries: Vec<MeminfoEntry>,
}

impl Meminfo {
    /// The value of `label` (without the colon): kB for most lines, a count for HugePages_*.
    pub fn get(&self, label: &str) -> Option<u64> {
        self.entries
            .iter()
            .find(|e| e.label == label)
            .map(|e| e.value)
    }
}

/// One CPU's pageset in a zoneinfo zone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Pageset {
    pub cpu: u32,
    pub count: i32,
    pub high: i32,
    pub batch: i32,
    /// `vm stats threshold` printed after this CPU (SMP kernels).
    pub stat_threshold: Option<i32>,
}

/// One zone of a /proc/zoneinfo dump.
#[derive(Clone, Debug, Serialize)]
pub struct ZoneinfoZone {
    /// 1-based line of the `Node N, zone NAME` header.
    pub line: usize,
    pub node: u32,
    pub name: String,
    /// The node counters, printed inside the node's first populated zone only.
    pub node_stats: Vec<(String, u64)>,
    pub free: u64,
    pub boost: u64,
    /// Watermarks as printed (boost included).
    pub min: u64,
    pub low: u64,
    pub high: u64,
    pub spanned: u64,
    pub present: u64,
    pub managed: u64,
    pub cma: u64,
    pub protection: Vec<i64>,
    /// Zone counters (populated zones only).
    pub stats: Vec<(String, u64)>,
    pub pagesets: Vec<Pageset>,
    pub node_unreclaimable: Option<bool>,
    pub start_pfn: Option<u64>,
}

impl ZoneinfoZone {
    /// A zone counter by name.
    pub fn stat(&self, name: &str) -> Option<u64> {
        self.stats.iter().find(|(n, _)| n == name).map(|&(_, v)| v)
    }
    /// A node counter by name (only in the node's first populated zone).
    pub fn node_stat(&self, name: &str) -> Option<u64> {
        self.node_stats
            .iter()
            .find(|(n, _)| n == name)
            .map(|&(_, v)| v)
    }
    pub fn populated(&self) -> bool {
        self.present != 0
    }
}

/// A /proc/zoneinfo dump.
#[derive(Clone, Debug, Serialize)]
pub struct Zoneinfo {
    pub begin_line: usize,
    pub zones: Vec<ZoneinfoZone>,
}

impl Zoneinfo {
    /// The first zone called `name`.
    pub fn zone(&self, name: &str) -> Option<&ZoneinfoZone> {
        self.zones.iter().find(|z| z.name == name)
    }
    /// Σ low watermarks over every zone, populated or not, as `si_mem_available` sums them.
    pub fn low_wmark_sum(&self) -> u64 {
        self.zones.iter().map(|z| z.low).sum()
    }
    /// What `calculate_totalreserve_pages()` derives from these zones: per zone, its largest
    /// lowmem_reserve plus its high watermark, capped at its managed pages.
    pub fn totalreserve_pages(&self) -> u64 {
        self.zones
            .iter()
            .map(|z| {
                let max_reserve = z.protection.iter().copied().max().unwrap_or(0).max(0) as u64;
                (max_reserve + z.high).min(z.managed)
            })
            .sum()
    }
}

/// One line of /proc/buddyinfo.
#[derive(Clone, Debug, Serialize)]
pub struct BuddyinfoZone {
    pub line: usize,
    pub node: u32,
    pub name: String,
    pub nr_free: Vec<u64>,
}

/// A /proc/buddyinfo dump.
#[derive(Clone, Debug, Serialize)]
pub struct Buddyinfo {
    pub begin_line: usize,
    pub zones: Vec<BuddyinfoZone>,
}

/// A `Node N, zone NAME, type TYPE counts…` line of /proc/pagetypeinfo.
#[derive(Clone, Debug, Serialize)]
pub struct PagetypeFree {
    pub line: usize,
    pub node: u32,
    pub zone: String,
    pub migratetype: String,
    /// Free-list lengths per order; a capped entry (`>100000`) holds the cap.
    pub counts: Vec<u64>,
    pub capped: Vec<bool>,
}

/// A `Node N, zone NAME counts…` line of the "Number of blocks type" table.
#[derive(Clone, Debug, Serialize)]
pub struct PagetypeBlocks {
    pub line: usize,
    pub node: u32,
    pub zone: String,
    pub counts: Vec<u64>,
}

/// A /proc/pagetypeinfo dump.
#[derive(Clone, Debug, Serialize)]
pub struct Pagetypeinfo {
    pub begin_line: usize,
    pub pageblock_order: u32,
    pub pages_per_block: u64,
    /// Migrate-type names of the block table header.
    pub block_types: Vec<String>,
    pub free: Vec<PagetypeFree>,
    pub blocks: Vec<PagetypeBlocks>,
}

/// A /proc/vmstat dump, in file order.
#[derive(Clone, Debug, Serialize)]
pub struct Vmstat {
    pub begin_line: usize,
    pub entries: Vec<(String, u64)>,
}

impl Vmstat {
    pub fn get(&self, name: &str) -> Option<u64> {
        self.entries
            .iter()
            .find(|(n, _)| n == name)
            .map(|&(_, v)| v)
    }
}

/// A `/proc/kcore` LOAD program header listed by kinspect.
#[derive(Clone, Debug, Serialize)]
pub struct KcoreLoad {
    pub start: u64,
    pub end: u64,
    pub paddr: u64,
}

/// A run of kernel virtual addresses mapped alike (`pt …`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WalkMapping {
    pub start: u64,
    pub end: u64,
    /// Level of the leaf entries: `pte`, `pmd` (PAE large page) or `pgd` (2-level large page).
    pub level: String,
    /// Flag columns as printed: `RW`/`ro`, `USR`, `PWT`, `PCD`, `PAT`/`PSE`, `GLB`, `NX`/`x`.
    pub flags: Vec<String>,
    /// Physical address of `start`.
    pub phys: u64,
    /// Physically contiguous (`linear`) or not (`scattered`).
    pub linear: bool,
}

impl WalkMapping {
    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }
}

/// A page-table page seen by the walk (`ptable …`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WalkTable {
    /// First virtual address the table maps.
    pub va: u64,
    pub phys: u64,
    pub present: u32,
    pub entries: u32,
    /// Text after `<==`, e.g. `pkmap_page_table (PKMAP_BASE)`.
    pub note: Option<String>,
}

/// One line of the swapper_pg_dir walk, in walk order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum WalkLine {
    /// A PAE top-level entry.
    Pgd {
        index: u32,
        entry: u64,
    },
    Map(WalkMapping),
    Table(WalkTable),
}

/// The `kinspect` block: kernel variables and the kernel page tables, read from /proc/kcore.
#[derive(Clone, Debug, Serialize)]
pub struct Kinspect {
    pub begin_line: usize,
    pub release: String,
    pub pae: bool,
    /// Kernel image symbols (runtime addresses).
    pub syms: BTreeMap<String, u64>,
    /// Kernel variables' values.
    pub vars: BTreeMap<String, u64>,
    /// Kernel variables' addresses.
    pub var_addrs: BTreeMap<String, u64>,
    pub kcore_loads: Vec<KcoreLoad>,
    pub walk: Vec<WalkLine>,
    /// Physical address of `pkmap_page_table`, from the walk's summary line.
    pub pkmap_page_table_phys: Option<u64>,
}

impl Kinspect {
    pub fn var(&self, name: &str) -> Option<u64> {
        self.vars.get(name).copied()
    }
    pub fn mappings(&self) -> impl Iterator<Item = &WalkMapping> {
        self.walk.iter().filter_map(|l| match l {
            WalkLine::Map(m) => Some(m),
            _ => None,
        })
    }
    pub fn tables(&self) -> impl Iterator<Item = &WalkTable> {
        self.walk.iter().filter_map(|l| match l {
            WalkLine::Table(t) => Some(t),
            _ => None,
        })
    }
}

/// `Memory: %luK/%luK available (…)` from mem_init_print_info().
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MemoryLine {
    pub available_kb: u64,
    pub total_kb: u64,
    pub kernel_code_kb: u64,
    pub rwdata_kb: u64,
    pub rodata_kb: u64,
    pub init_kb: u64,
    pub bss_kb: u64,
    pub reserved_kb: u64,
    pub cma_reserved_kb: u64,
    pub highmem_kb: Option<u64>,
}

/// `Built %u zonelists, mobility grouping %s.  Total pages: %ld`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ZonelistsLine {
    pub zonelists: u32,
    pub mobility_grouping: bool,
    pub total_pages: u64,
}

/// `percpu: Embedded %zu pages/cpu s%zu r%zu d%zu u%zu`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PercpuLine {
    pub pages_per_cpu: u64,
    pub static_size: u64,
    pub reserved_size: u64,
    pub dyn_size: u64,
    pub unit_size: u64,
}

/// A `PROGRESS key=value …` line of the shm workload.
#[derive(Clone, Debug, Serialize)]
pub struct Progress {
    pub line: usize,
    pub fields: BTreeMap<String, String>,
}

impl Progress {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields.get(key).map(String::as_str)
    }
    /// An integer field (kB figures, counts; `VmPTE_child1=-1` before the first child).
    pub fn int(&self, key: &str) -> Option<i64> {
        self.get(key)?.parse().ok()
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

/// Error builder bound to one file.
#[derive(Clone, Copy)]
struct Src<'a> {
    path: &'a Path,
}

impl Src<'_> {
    fn err(&self, line: usize, message: impl Into<String>) -> ReferenceError {
        ReferenceError::Parse {
            path: self.path.to_path_buf(),
            line,
            message: message.into(),
        }
    }

    fn num<T: std::str::FromStr>(
        &self,
        line: usize,
        what: &str,
        s: &str,
    ) -> Result<T, ReferenceError> {
        s.trim()
            .parse()
            .map_err(|_| self.err(line, format!("bad {what}: {s:?}")))
    }

    fn hex(&self, line: usize, what: &str, s: &str) -> Result<u64, ReferenceError> {
        let digits = s
            .trim()
            .strip_prefix("0x")
            .ok_or_else(|| self.err(line, format!("{what}: expected 0x…, got {s:?}")))?;
        u64::from_str_radix(digits, 16).map_err(|_| self.err(line, format!("bad {what}: {s:?}")))
    }
}

/// The text after the first `[ seconds.micros]` printk timestamp of `line`.
pub fn strip_timestamp(line: &str) -> Option<&str> {
    let mut from = 0;
    while let Some(open) = line[from..].find('[') {
        let start = from + open;
        if let Some(rest) = timestamp_end(&line[start + 1..]) {
            return Some(rest.strip_prefix(' ').unwrap_or(rest));
        }
        from = start + 1;
    }
    None
}

/// After a `[`: spaces, digits, `.`, digits, `]`; returns what follows the `]`.
fn timestamp_end(s: &str) -> Option<&str> {
    let s = s.trim_start_matches(' ');
    let int = s.len() - s.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let s = s[int..].strip_prefix('.')?;
    let frac = s.len() - s.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    if int == 0 || frac == 0 {
        return None;
    }
    s[frac..].strip_prefix(']')
}

fn key_values(s: &str) -> BTreeMap<String, String> {
    s.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
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

    /// zoneinfo dump `i` as the snapshot `kernel::procfs::format_zoneinfo` prints.
    pub fn zoneinfo_snapshot(&self, i: usize) -> Result<kp::ZoneinfoSnapshot, ReferenceError> {
        let src = self.src();
        let dump = self
            .zoneinfo
            .get(i)
            .ok_or_else(|| src.err(0, format!("no zoneinfo dump #{i}")))?;
        let hpage = self.kernel.hpage_pmd_nr();
        let mut nodes: Vec<kp::ZoneinfoNode> = Vec::new();
        for z in &dump.zones {
            if nodes.last().is_none_or(|n| n.node_id != z.node) {
                nodes.push(kp::ZoneinfoNode {
                    node_id: z.node,
                    ..Default::default()
                });
            }
            let Some(node) = nodes.last_mut() else {
                continue;
            };
            for (name, value) in &z.node_stats {
                let item = NodeStatItem::from_name(name)
                    .ok_or_else(|| src.err(z.line, format!("unknown node counter {name:?}")))?;
                node.node_stats[item] = if item.print_in_thp() {
                    value * hpage
                } else {
                    *value
                };
            }
            if z.node_unreclaimable == Some(true) {
                node.kswapd_failures = MAX_RECLAIM_RETRIES;
            }
            let base = |printed: u64, what: &str| {
                printed
                    .checked_sub(z.boost)
                    .ok_or_else(|| src.err(z.line, format!("{what} below boost")))
            };
            let lowmem_reserve: [i64; MAX_NR_ZONES] =
                z.protection.as_slice().try_into().map_err(|_| {
                    src.err(
                        z.line,
                        format!(
                            "protection has {} values, expected {MAX_NR_ZONES}",
                            z.protection.len()
                        ),
                    )
                })?;
            let mut zone = kp::ZoneinfoZone {
                name: z.name.clone(),
                watermark_min: base(z.min, "min")?,
                watermark_low: base(z.low, "low")?,
                watermark_high: base(z.high, "high")?,
                watermark_boost: z.boost,
                spanned_pages: z.spanned,
                present_pages: z.present,
                managed_pages: z.managed,
                cma_pages: z.cma,
                lowmem_reserve,
                zone_start_pfn: z.start_pfn.unwrap_or(0),
                ..Default::default()
            };
            for (name, value) in &z.stats {
                let item = ZoneStatItem::from_name(name)
                    .ok_or_else(|| src.err(z.line, format!("unknown zone counter {name:?}")))?;
                zone.vm_stat[item] = *value;
            }
            if z.populated() && zone.vm_stat[ZoneStatItem::NrFreePages] != z.free {
                return Err(src.err(z.line, "pages free differs from nr_free_pages"));
            }
            zone.vm_stat[ZoneStatItem::NrFreePages] = z.free;
            for p in &z.pagesets {
                let stat_threshold = p.stat_threshold.ok_or_else(|| {
                    src.err(z.line, format!("cpu {} has no vm stats threshold", p.cpu))
                })?;
                zone.pagesets.push(PagesetSnapshot {
                    cpu: p.cpu,
                    count: p.count,
                    high: p.high,
                    batch: p.batch,
                    stat_threshold,
                });
            }
            node.zones.push(zone);
        }
        Ok(kp::ZoneinfoSnapshot {
            hpage_pmd_nr: hpage,
            nodes,
        })
    }

    /// buddyinfo dump `i` as a snapshot.
    pub fn buddyinfo_snapshot(&self, i: usize) -> Result<kp::BuddyinfoSnapshot, ReferenceError> {
        let src = self.src();
        let dump = self
            .buddyinfo
            .get(i)
            .ok_or_else(|| src.err(0, format!("no buddyinfo dump #{i}")))?;
        let mut nodes: Vec<kp::BuddyinfoNode> = Vec::new();
        for z in &dump.zones {
            if nodes.last().is_none_or(|n| n.node_id != z.node) {
                nodes.push(kp::BuddyinfoNode {
                    node_id: z.node,
                    zones: Vec::new(),
                });
            }
            let nr_free = z.nr_free.as_slice().try_into().map_err(|_| {
                src.err(
                    z.line,
                    format!("{} orders, expected {MAX_ORDER}", z.nr_free.len()),
                )
            })?;
            if let Some(node) = nodes.last_mut() {
                node.zones.push(kp::BuddyinfoZone {
                    name: z.name.clone(),
                    populated: true,
                    nr_free,
                });
            }
        }
        Ok(kp::BuddyinfoSnapshot { nodes })
    }

    /// pagetypeinfo dump `i` as a snapshot.
    pub fn pagetypeinfo_snapshot(
        &self,
        i: usize,
    ) -> Result<kp::PagetypeinfoSnapshot, ReferenceError> {
        let src = self.src();
        let dump = self
            .pagetypeinfo
            .get(i)
            .ok_or_else(|| src.err(0, format!("no pagetypeinfo dump #{i}")))?;
        if dump.block_types != MIGRATETYPE_NAMES {
            return Err(src.err(
                dump.begin_line,
                format!("block table types {:?}", dump.block_types),
            ));
        }
        if dump.pages_per_block != 1u64 << dump.pageblock_order {
            return Err(src.err(dump.begin_line, "pages per block is not 1 << order"));
        }
        let mut nodes: Vec<kp::PagetypeinfoNode> = Vec::new();
        for f in &dump.free {
            if nodes.last().is_none_or(|n| n.node_id != f.node) {
                nodes.push(kp::PagetypeinfoNode {
                    node_id: f.node,
                    has_memory: true,
                    zones: Vec::new(),
                });
            }
            let Some(node) = nodes.last_mut() else {
                continue;
            };
            if node.zones.last().is_none_or(|z| z.name != f.zone) {
                node.zones.push(kp::PagetypeinfoZone {
                    name: f.zone.clone(),
                    populated: true,
                    ..Default::default()
                });
            }
            let Some(zone) = node.zones.last_mut() else {
                continue;
            };
            let mtype = MIGRATETYPE_NAMES
                .iter()
                .position(|m| *m == f.migratetype)
                .ok_or_else(|| {
                    src.err(f.line, format!("unknown migrate type {:?}", f.migratetype))
                })?;
            zone.free_count[mtype] = f.counts.as_slice().try_into().map_err(|_| {
                src.err(
                    f.line,
                    format!("{} orders, expected {MAX_ORDER}", f.counts.len()),
                )
            })?;
        }
        for b in &dump.blocks {
            let zone = nodes
                .iter_mut()
                .filter(|n| n.node_id == b.node)
                .flat_map(|n| n.zones.iter_mut())
                .find(|z| z.name == b.zone)
                .ok_or_else(|| {
                    src.err(
                        b.line,
                        format!("block counts for unlisted zone {:?}", b.zone),
                    )
                })?;
            zone.block_count = b.counts.as_slice().try_into().map_err(|_| {
                src.err(
                    b.line,
                    format!("{} types, expected {MIGRATE_TYPES}", b.counts.len()),
                )
            })?;
        }
        Ok(kp::PagetypeinfoSnapshot {
            pageblock_order: dump.pageblock_order,
            nodes,
        })
    }

    /// vmstat dump `i` as a snapshot.
    pub fn vmstat_snapshot(&self, i: usize) -> Result<VmstatSnapshot, ReferenceError> {
        let src = self.src();
        let dump = self
            .vmstat
            .get(i)
            .ok_or_else(|| src.err(0, format!("no vmstat dump #{i}")))?;
        let hpage = self.kernel.hpage_pmd_nr();
        let mut s = VmstatSnapshot {
            hpage_pmd_nr: hpage,
            ..Default::default()
        };
        for (k, (name, value)) in dump.entries.iter().enumerate() {
            let line = dump.begin_line + 1 + k;
            if let Some(item) = ZoneStatItem::from_name(name) {
                s.zone_stats[item] = *value;
            } else if let Some(item) = NodeStatItem::from_name(name) {
                s.node_stats[item] = if item.print_in_thp() {
                    value * hpage
                } else {
                    *value
                };
            } else if let Some(item) = VmEventItem::from_name(name) {
                let sectors = matches!(item, VmEventItem::Pgpgin | VmEventItem::Pgpgout);
                s.events[item] = if sectors { value * 2 } else { *value };
            } else {
                match name.as_str() {
                    "nr_dirty_threshold" => s.dirty_threshold = *value,
                    "nr_dirty_background_threshold" => s.dirty_background_threshold = *value,
                    "nr_unstable" if *value == 0 => {}
                    _ => return Err(src.err(line, format!("unknown vmstat counter {name:?}"))),
                }
            }
        }
        Ok(s)
    }

    /// meminfo dump `i` as a snapshot. The figures meminfo derives need more than meminfo:
    /// the low watermarks come from the nearest zoneinfo dump, the overcommit ratio from
    /// /proc/sys/vm/overcommit_ratio (the kernel default when not dumped), and
    /// `totalreserve_pages` from kinspect or, without it, from a zoneinfo dump by the kernel's
    /// formula — in both cases one taken in the same reserve epoch as the meminfo dump (see
    /// [`RefRun::reserve_epoch`]).
    pub fn meminfo_snapshot(&self, i: usize) -> Result<MeminfoSnapshot, ReferenceError> {
        let src = self.src();
        let dump = self
            .meminfo
            .get(i)
            .ok_or_else(|| src.err(0, format!("no meminfo dump #{i}")))?;
        let at = dump.begin_line;
        let zi = self
            .nearest_zoneinfo(at)
            .ok_or_else(|| src.err(at, "no zoneinfo dump to take watermarks from"))?;
        let kb = |label: &str| {
            dump.get(label)
                .ok_or_else(|| src.err(at, format!("meminfo lacks {label}")))
        };
        let pages = |label: &str| {
            let v = kb(label)?;
            if v % 4 != 0 {
                return Err(src.err(at, format!("{label} {v} kB is not whole pages")));
            }
            Ok(v / 4)
        };
        let pae = self.kernel.is_pae();
        let (large_label, large_kb) = if pae {
            ("DirectMap2M", 2048)
        } else {
            ("DirectMap4M", 4096)
        };
        let epoch = self.reserve_epoch(at);
        let kinspect_reserve = self
            .kinspect
            .as_ref()
            .filter(|k| self.reserve_epoch(k.begin_line) == epoch)
            .and_then(|k| k.var("totalreserve_pages"));
        let zoneinfo_reserve = self
            .zoneinfo
            .iter()
            .filter(|z| self.reserve_epoch(z.begin_line) == epoch)
            .min_by_key(|z| z.begin_line.abs_diff(at))
            .map(Zoneinfo::totalreserve_pages);
        let totalreserve_pages = kinspect_reserve.or(zoneinfo_reserve).ok_or_else(|| {
            src.err(
                at,
                "no kinspect or zoneinfo dump gives totalreserve_pages at this point",
            )
        })?;
        let overcommit_ratio = match self.sysctl_values("/proc/sys/vm/overcommit_ratio")? {
            Some(v) => v.first().copied().unwrap_or_default().max(0) as u64,
            None => DEFAULT_OVERCOMMIT_RATIO,
        };

        let mut s = MeminfoSnapshot {
            pae,
            totalram_pages: pages("MemTotal")?,
            totalhigh_pages: pages("HighTotal")?,
            free_highpages: pages("HighFree")?,
            totalreserve_pages,
            low_wmark_pages_sum: zi.low_wmark_sum(),
            buffer_pages: pages("Buffers")?,
            swapcache_pages: pages("SwapCached")?,
            total_swap_pages: pages("SwapTotal")?,
            free_swap_pages: pages("SwapFree")?,
            zswap_pool_total_size: kb("Zswap")? << 10,
            zswap_stored_pages: pages("Zswapped")?,
            committed_as_pages: pages("Committed_AS")?,
            overcommit_ratio,
            overcommit_kbytes: 0,
            vmalloc_total_bytes: kb("VmallocTotal")? << 10,
            vmalloc_nr_pages: pages("VmallocUsed")?,
            pcpu_nr_pages: pages("Percpu")?,
            num_poisoned_pages: pages("HardwareCorrupted")?,
            hugetlb: HugetlbSnapshot {
                nr_huge_pages: kb("HugePages_Total")?,
                free_huge_pages: kb("HugePages_Free")?,
                resv_huge_pages: kb("HugePages_Rsvd")?,
                surplus_huge_pages: kb("HugePages_Surp")?,
                huge_page_size_kb: kb("Hugepagesize")?,
            },
            direct_pages_4k: pages("DirectMap4k")?,
            direct_pages_large: kb(large_label)? / large_kb,
            ..Default::default()
        };
        s.zone_stats[ZoneStatItem::NrFreePages] = pages("MemFree")?;
        s.zone_stats[ZoneStatItem::NrMlock] = pages("Mlocked")?;
        s.zone_stats[ZoneStatItem::NrBounce] = pages("Bounce")?;
        use NodeStatItem as N;
        let node = &mut s.node_stats;
        node[N::NrFilePages] = pages("Cached")? + pages("SwapCached")? + pages("Buffers")?;
        node[N::NrActiveAnon] = pages("Active(anon)")?;
        node[N::NrInactiveAnon] = pages("Inactive(anon)")?;
        node[N::NrActiveFile] = pages("Active(file)")?;
        node[N::NrInactiveFile] = pages("Inactive(file)")?;
        node[N::NrUnevictable] = pages("Unevictable")?;
        node[N::NrFileDirty] = pages("Dirty")?;
        node[N::NrWriteback] = pages("Writeback")?;
        node[N::NrAnonMapped] = pages("AnonPages")?;
        node[N::NrFileMapped] = pages("Mapped")?;
        node[N::NrShmem] = pages("Shmem")?;
        node[N::NrSlabReclaimableB] = pages("SReclaimable")?;
        node[N::NrSlabUnreclaimableB] = pages("SUnreclaim")?;
        node[N::NrKernelMiscReclaimable] = pages("KReclaimable")?
            .checked_sub(pages("SReclaimable")?)
            .ok_or_else(|| src.err(at, "KReclaimable below SReclaimable"))?;
        node[N::NrKernelStackKb] = kb("KernelStack")?;
        node[N::NrPagetable] = pages("PageTables")?;
        node[N::NrSecondaryPagetable] = pages("SecPageTables")?;
        node[N::NrWritebackTemp] = pages("WritebackTmp")?;
        node[N::NrAnonThps] = pages("AnonHugePages")?;
        node[N::NrShmemThps] = pages("ShmemHugePages")?;
        node[N::NrShmemPmdmapped] = pages("ShmemPmdMapped")?;
        node[N::NrFileThps] = pages("FileHugePages")?;
        node[N::NrFilePmdmapped] = pages("FilePmdMapped")?;
        Ok(s)
    }
}

fn parse_sections(src: Src, lines: &[&str]) -> Result<Vec<Section>, ReferenceError> {
    let mut open: Vec<(String, usize)> = Vec::new();
    let mut done: Vec<Section> = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if let Some(path) = line
            .strip_prefix("=====BEGIN ")
            .and_then(|r| r.strip_suffix("====="))
        {
            open.push((path.to_string(), i));
        } else if let Some(path) = line
            .strip_prefix("=====END ")
            .and_then(|r| r.strip_suffix("====="))
        {
            let (begin_path, begin) = open
                .pop()
                .ok_or_else(|| src.err(i + 1, format!("END of {path} without BEGIN")))?;
            if begin_path != path {
                return Err(src.err(
                    i + 1,
                    format!("END of {path} closes {begin_path} (line {})", begin + 1),
                ));
            }
            let mut text = String::new();
            for l in &lines[begin + 1..i] {
                text.push_str(l);
                text.push('\n');
            }
            done.push(Section {
                path: begin_path,
                begin_line: begin + 1,
                depth: open.len(),
                text,
            });
        }
    }
    if let Some((path, begin)) = open.pop() {
        return Err(src.err(begin + 1, format!("{path} is never closed")));
    }
    done.sort_by_key(|s| s.begin_line);
    Ok(done)
}

/// The section's lines with their 1-based file line numbers.
fn numbered(s: &Section) -> impl Iterator<Item = (usize, &str)> {
    s.text
        .lines()
        .enumerate()
        .map(move |(i, l)| (s.begin_line + 1 + i, l))
}

fn parse_meminfo(src: Src, s: &Section) -> Result<Meminfo, ReferenceError> {
    let mut entries = Vec::new();
    for (n, line) in numbered(s) {
        let (label, rest) = line
            .split_once(':')
            .ok_or_else(|| src.err(n, "meminfo line without ':'"))?;
        let rest = rest.trim();
        let (value, kb) = match rest.strip_suffix(" kB") {
            Some(v) => (v, true),
            None => (rest, false),
        };
        entries.push(MeminfoEntry {
            label: label.to_string(),
            value: src.num(n, label, value)?,
            kb,
        });
    }
    Ok(Meminfo {
        begin_line: s.begin_line,
        entries,
    })
}

/// `Node N, zone NAME…`: the node number and what follows `zone`.
fn node_zone_prefix<'a>(
    src: Src,
    n: usize,
    line: &'a str,
) -> Result<(u32, &'a str), ReferenceError> {
    let rest = line
        .strip_prefix("Node ")
        .ok_or_else(|| src.err(n, "expected 'Node N, zone …'"))?;
    let (node, rest) = rest
        .split_once(',')
        .ok_or_else(|| src.err(n, "expected ',' after the node"))?;
    let rest = rest
        .trim_start()
        .strip_prefix("zone")
        .ok_or_else(|| src.err(n, "expected 'zone'"))?;
    Ok((src.num(n, "node", node)?, rest))
}

fn parse_zoneinfo(src: Src, s: &Section) -> Result<Zoneinfo, ReferenceError> {
    #[derive(PartialEq)]
    enum Mode {
        Header,
        NodeStats,
        Zone,
        ZoneStats,
        Pagesets,
    }
    let mut zones: Vec<ZoneinfoZone> = Vec::new();
    let mut mode = Mode::Header;
    for (n, line) in numbered(s) {
        if line.starts_with("Node ") {
            let (node, name) = node_zone_prefix(src, n, line)?;
            zones.push(ZoneinfoZone {
                line: n,
                node,
                name: name.trim().to_string(),
                node_stats: Vec::new(),
                free: 0,
                boost: 0,
                min: 0,
                low: 0,
                high: 0,
                spanned: 0,
                present: 0,
                managed: 0,
                cma: 0,
                protection: Vec::new(),
                stats: Vec::new(),
                pagesets: Vec::new(),
                node_unreclaimable: None,
                start_pfn: None,
            });
            mode = Mode::Header;
            continue;
        }
        let zone = zones
            .last_mut()
            .ok_or_else(|| src.err(n, "zoneinfo line before any 'Node' header"))?;
        let t = line.trim();
        let (key, value) = match t.rsplit_once(' ') {
            Some((k, v)) => (k.trim_end(), v),
            None => (t, ""),
        };
        match key {
            _ if t == "per-node stats" => mode = Mode::NodeStats,
            "pages free" => {
                zone.free = src.num(n, key, value)?;
                mode = Mode::Zone;
            }
            "boost" | "min" | "low" | "high" | "spanned" | "present" | "managed" | "cma"
                if mode == Mode::Zone =>
            {
                let v = src.num(n, key, value)?;
                match key {
                    "boost" => zone.boost = v,
                    "min" => zone.min = v,
                    "low" => zone.low = v,
                    "high" => zone.high = v,
                    "spanned" => zone.spanned = v,
                    "present" => zone.present = v,
                    "managed" => zone.managed = v,
                    _ => zone.cma = v,
                }
            }
            _ if t.starts_with("protection: (") => {
                let inner = t
                    .strip_prefix("protection: (")
                    .and_then(|r| r.strip_suffix(')'))
                    .ok_or_else(|| src.err(n, "bad protection line"))?;
                zone.protection = inner
                    .split(',')
                    .map(|v| src.num(n, "protection", v))
                    .collect::<Result<_, _>>()?;
                mode = Mode::ZoneStats;
            }
            _ if t == "pagesets" => mode = Mode::Pagesets,
            "cpu:" if mode == Mode::Pagesets => zone.pagesets.push(Pageset {
                cpu: src.num(n, "cpu", value)?,
                count: 0,
                high: 0,
                batch: 0,
                stat_threshold: None,
            }),
            "count:" | "high:" | "batch:" | "vm stats threshold:" if mode == Mode::Pagesets => {
                let p = zone
                    .pagesets
                    .last_mut()
                    .ok_or_else(|| src.err(n, format!("{key} before any cpu")))?;
                let v = src.num(n, key, value)?;
                match key {
                    "count:" => p.count = v,
                    "high:" => p.high = v,
                    "batch:" => p.batch = v,
                    _ => p.stat_threshold = Some(v),
                }
            }
            "node_unreclaimable:" => {
                zone.node_unreclaimable = Some(src.num::<u32>(n, key, value)? != 0)
            }
            "start_pfn:" => zone.start_pfn = Some(src.num(n, key, value)?),
            _ if mode == Mode::NodeStats && !key.contains(' ') => {
                zone.node_stats
                    .push((key.to_string(), src.num(n, key, value)?));
            }
            _ if mode == Mode::ZoneStats && !key.contains(' ') => {
                zone.stats.push((key.to_string(), src.num(n, key, value)?));
            }
            _ => return Err(src.err(n, format!("unexpected zoneinfo line {line:?}"))),
        }
    }
    Ok(Zoneinfo {
        begin_line: s.begin_line,
        zones,
    })
}

fn parse_buddyinfo(src: Src, s: &Section) -> Result<Buddyinfo, ReferenceError> {
    let mut zones = Vec::new();
    for (n, line) in numbered(s) {
        let (node, rest) = node_zone_prefix(src, n, line)?;
        let mut words = rest.split_whitespace();
        let name = words
            .next()
            .ok_or_else(|| src.err(n, "missing zone name"))?
            .to_string();
        let nr_free = words
            .map(|w| src.num(n, "free count", w))
            .collect::<Result<_, _>>()?;
        zones.push(BuddyinfoZone {
            line: n,
            node,
            name,
            nr_free,
        });
    }
    Ok(Buddyinfo {
        begin_line: s.begin_line,
        zones,
    })
}

fn parse_pagetypeinfo(src: Src, s: &Section) -> Result<Pagetypeinfo, ReferenceError> {
    let mut p = Pagetypeinfo {
        begin_line: s.begin_line,
        pageblock_order: 0,
        pages_per_block: 0,
        block_types: Vec::new(),
        free: Vec::new(),
        blocks: Vec::new(),
    };
    for (n, line) in numbered(s) {
        if line.trim().is_empty() || line.starts_with("Free pages count per migrate type at order")
        {
            continue;
        } else if let Some(v) = line.strip_prefix("Page block order:") {
            p.pageblock_order = src.num(n, "page block order", v)?;
        } else if let Some(v) = line.strip_prefix("Pages per block:") {
            p.pages_per_block = src.num(n, "pages per block", v)?;
        } else if let Some(v) = line.strip_prefix("Number of blocks type") {
            p.block_types = v.split_whitespace().map(str::to_string).collect();
        } else {
            let (node, rest) = node_zone_prefix(src, n, line)?;
            if let Some((zone, rest)) = rest.split_once(", type") {
                let mut words = rest.split_whitespace();
                let migratetype = words
                    .next()
                    .ok_or_else(|| src.err(n, "missing migrate type"))?
                    .to_string();
                let mut counts = Vec::new();
                let mut capped = Vec::new();
                for w in words {
                    let (cap, digits) = match w.strip_prefix('>') {
                        Some(d) => (true, d),
                        None => (false, w),
                    };
                    counts.push(src.num(n, "free count", digits)?);
                    capped.push(cap);
                }
                p.free.push(PagetypeFree {
                    line: n,
                    node,
                    zone: zone.trim().to_string(),
                    migratetype,
                    counts,
                    capped,
                });
            } else {
                let mut words = rest.split_whitespace();
                let zone = words
                    .next()
                    .ok_or_else(|| src.err(n, "missing zone name"))?
                    .to_string();
                let counts = words
                    .map(|w| src.num(n, "block count", w))
                    .collect::<Result<_, _>>()?;
                p.blocks.push(PagetypeBlocks {
                    line: n,
                    node,
                    zone,
                    counts,
                });
            }
        }
    }
    Ok(p)
}

fn parse_vmstat(src: Src, s: &Section) -> Result<Vmstat, ReferenceError> {
    let mut entries = Vec::new();
    for (n, line) in numbered(s) {
        let (name, value) = line
            .split_once(' ')
            .ok_or_else(|| src.err(n, "vmstat line without value"))?;
        entries.push((name.to_string(), src.num(n, name, value)?));
    }
    Ok(Vmstat {
        begin_line: s.begin_line,
        entries,
    })
}

/// `620K`, `14M`, `1G` → bytes.
fn parse_size(s: &str) -> Option<u64> {
    let (digits, shift) = match s.as_bytes().last()? {
        b'K' => (&s[..s.len() - 1], 10),
        b'M' => (&s[..s.len() - 1], 20),
        b'G' => (&s[..s.len() - 1], 30),
        _ => return None,
    };
    digits.parse::<u64>().ok().map(|v| v << shift)
}

fn parse_kinspect(src: Src, s: &Section) -> Result<Kinspect, ReferenceError> {
    let mut k = Kinspect {
        begin_line: s.begin_line,
        release: String::new(),
        pae: false,
        syms: BTreeMap::new(),
        vars: BTreeMap::new(),
        var_addrs: BTreeMap::new(),
        kcore_loads: Vec::new(),
        walk: Vec::new(),
        pkmap_page_table_phys: None,
    };
    for (n, line) in numbered(s) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.first().copied() {
            None => {}
            Some("#") | Some("derived") | Some("_text") => {}
            Some("kinspect") if words.get(1) == Some(&"done") => {}
            Some("kinspect") => {
                let kv = key_values(line);
                k.release = kv
                    .get("release")
                    .cloned()
                    .ok_or_else(|| src.err(n, "kinspect lacks release="))?;
                k.pae = kv.get("pae").map(String::as_str) == Some("1");
            }
            Some("kcore") if words.get(1) == Some(&"phdr") => {}
            Some("kcore") => {
                // kcore LOAD vaddr 0xSTART-0xEND size … paddr 0xP
                let range = words
                    .get(3)
                    .ok_or_else(|| src.err(n, "kcore line without range"))?;
                let (a, b) = range
                    .split_once('-')
                    .ok_or_else(|| src.err(n, "bad kcore range"))?;
                let paddr = words
                    .last()
                    .ok_or_else(|| src.err(n, "kcore line without paddr"))?;
                k.kcore_loads.push(KcoreLoad {
                    start: src.hex(n, "kcore start", a)?,
                    end: src.hex(n, "kcore end", b)?,
                    paddr: src.hex(n, "kcore paddr", paddr)?,
                });
            }
            Some("sym") => {
                let (name, addr) = match words.as_slice() {
                    [_, name, addr] => (name, addr),
                    _ => return Err(src.err(n, "expected 'sym NAME 0xADDR'")),
                };
                k.syms.insert(name.to_string(), src.hex(n, name, addr)?);
            }
            Some("var") => {
                // var NAME @0xADDR = VALUE [(DECIMAL)]
                let (name, addr, value) = match words.as_slice() {
                    [_, name, addr, "=", value, ..] => (*name, *addr, *value),
                    _ => return Err(src.err(n, "expected 'var NAME @0xADDR = VALUE'")),
                };
                let addr = src.hex(n, "variable address", addr.trim_start_matches('@'))?;
                let v = if value.starts_with("0x") {
                    src.hex(n, name, value)?
                } else {
                    src.num(n, name, value)?
                };
                if let Some(dec) = words.get(5) {
                    let dec: u64 =
                        src.num(n, name, dec.trim_start_matches('(').trim_end_matches(')'))?;
                    if dec != v {
                        return Err(src.err(n, format!("{name}: hex and decimal values differ")));
                    }
                }
                k.vars.insert(name.to_string(), v);
                k.var_addrs.insert(name.to_string(), addr);
            }
            Some(w) if w.starts_with("pgd[") => {
                let index = w
                    .strip_prefix("pgd[")
                    .and_then(|r| r.strip_suffix(']'))
                    .unwrap_or_default();
                let entry = words
                    .get(2)
                    .ok_or_else(|| src.err(n, "pgd line without entry"))?;
                k.walk.push(WalkLine::Pgd {
                    index: src.num(n, "pgd index", index)?,
                    entry: src.hex(n, "pgd entry", entry)?,
                });
            }
            Some("pt") => k
                .walk
                .push(WalkLine::Map(parse_walk_mapping(src, n, &words)?)),
            Some("ptable") => k
                .walk
                .push(WalkLine::Table(parse_walk_table(src, n, line)?)),
            Some("pkmap_page_table") => {
                // pkmap_page_table = 0xV (phys 0xP)
                let phys = words
                    .last()
                    .map(|w| w.trim_end_matches(')'))
                    .unwrap_or_default();
                k.pkmap_page_table_phys = Some(src.hex(n, "pkmap_page_table phys", phys)?);
            }
            Some(other) => return Err(src.err(n, format!("unknown kinspect line kind {other:?}"))),
        }
    }
    if k.release.is_empty() {
        return Err(src.err(s.begin_line, "kinspect block without its header line"));
    }
    Ok(k)
}

fn parse_walk_mapping(src: Src, n: usize, words: &[&str]) -> Result<WalkMapping, ReferenceError> {
    // pt 0xSTART-0xEND SIZE LEVEL FLAGS… phys 0xPHYS linear|scattered
    let bad = || {
        src.err(
            n,
            "expected 'pt START-END SIZE LEVEL FLAGS… phys ADDR KIND'",
        )
    };
    let (range, size, level) = match words {
        [_, range, size, level, ..] => (range, size, level),
        _ => return Err(bad()),
    };
    let phys_at = words.iter().position(|w| *w == "phys").ok_or_else(bad)?;
    let (a, b) = range.split_once('-').ok_or_else(bad)?;
    let start = src.hex(n, "range start", a)?;
    let end = src.hex(n, "range end", b)?;
    let printed = parse_size(size).ok_or_else(|| src.err(n, format!("bad size {size:?}")))?;
    if end.checked_sub(start) != Some(printed) {
        return Err(src.err(n, format!("size {size} does not match the range")));
    }
    let phys = src.hex(n, "phys", words.get(phys_at + 1).ok_or_else(bad)?)?;
    let linear = match words.get(phys_at + 2).copied() {
        Some("linear") => true,
        Some("scattered") => false,
        _ => return Err(bad()),
    };
    Ok(WalkMapping {
        start,
        end,
        level: level.to_string(),
        flags: words[4..phys_at].iter().map(|w| w.to_string()).collect(),
        phys,
        linear,
    })
}

fn parse_walk_table(src: Src, n: usize, line: &str) -> Result<WalkTable, ReferenceError> {
    // ptable va 0xVA: pte page phys 0xP, PRESENT/ENTRIES entries present[  <== NOTE]
    let bad = || {
        src.err(
            n,
            "expected 'ptable va VA: pte page phys P, N/M entries present'",
        )
    };
    let (body, note) = match line.split_once("<==") {
        Some((b, note)) => (b, Some(note.trim().to_string())),
        None => (line, None),
    };
    let rest = body.strip_prefix("ptable va ").ok_or_else(bad)?;
    let (va, rest) = rest.split_once(": pte page phys ").ok_or_else(bad)?;
    let (phys, rest) = rest.split_once(", ").ok_or_else(bad)?;
    let counts = rest
        .trim()
        .strip_suffix(" entries present")
        .ok_or_else(bad)?;
    let (present, entries) = counts.split_once('/').ok_or_else(bad)?;
    Ok(WalkTable {
        va: src.hex(n, "table va", va)?,
        phys: src.hex(n, "table phys", phys)?,
        present: src.num(n, "present entries", present)?,
        entries: src.num(n, "entries", entries)?,
        note,
    })
}

fn kb_value(s: &str) -> Option<u64> {
    s.trim().strip_suffix('K')?.parse().ok()
}

fn parse_memory_line(l: &str) -> Option<MemoryLine> {
    let rest = l.strip_prefix("Memory: ")?;
    let (avail, rest) = rest.split_once('/')?;
    let (total, rest) = rest.split_once(" available (")?;
    let items = rest.strip_suffix(')')?;
    let mut by_label = BTreeMap::new();
    for item in items.split(", ") {
        let (value, label) = item.split_once(' ')?;
        by_label.insert(label, kb_value(value)?);
    }
    let get = |label: &str| by_label.get(label).copied();
    Some(MemoryLine {
        available_kb: kb_value(avail)?,
        total_kb: kb_value(total)?,
        kernel_code_kb: get("kernel code")?,
        rwdata_kb: get("rwdata")?,
        rodata_kb: get("rodata")?,
        init_kb: get("init")?,
        bss_kb: get("bss")?,
        reserved_kb: get("reserved")?,
        cma_reserved_kb: get("cma-reserved")?,
        highmem_kb: get("highmem"),
    })
}

fn parse_zonelists_line(l: &str) -> Option<ZonelistsLine> {
    let rest = l.strip_prefix("Built ")?;
    let (zonelists, rest) = rest.split_once(" zonelists, mobility grouping ")?;
    let (grouping, rest) = rest.split_once(".  Total pages: ")?;
    Some(ZonelistsLine {
        zonelists: zonelists.parse().ok()?,
        mobility_grouping: match grouping {
            "on" => true,
            "off" => false,
            _ => return None,
        },
        total_pages: rest.trim().parse().ok()?,
    })
}

fn parse_percpu_line(l: &str) -> Option<PercpuLine> {
    let rest = l.strip_prefix("percpu: Embedded ")?;
    let (pages, rest) = rest.split_once(" pages/cpu ")?;
    let mut fields = BTreeMap::new();
    for w in rest.split_whitespace() {
        let (tag, value) = w.split_at(1);
        fields.insert(tag, value.parse::<u64>().ok()?);
    }
    Some(PercpuLine {
        pages_per_cpu: pages.parse().ok()?,
        static_size: *fields.get("s")?,
        reserved_size: *fields.get("r")?,
        dyn_size: *fields.get("d")?,
        unit_size: *fields.get("u")?,
    })
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
    fn timestamps() {
        assert_eq!(strip_timestamp("[   12.345678] x [mem]"), Some("x [mem]"));
        assert_eq!(strip_timestamp("ok[    0.000000] Linux"), Some("Linux"));
        assert_eq!(strip_timestamp("[mem 0x0-0x1] reserved"), None);
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

    #[test]
    fn walk_lines() {
        let src = Src {
            path: Path::new("t"),
        };
        let words: Vec<&str> =
            "pt 0xc0000000-0xc009b000    620K pte  RW   NX phys 0x000000000 linear"
                .split_whitespace()
                .collect();
        let m = parse_walk_mapping(src, 1, &words).unwrap();
        assert_eq!(
            (m.end - m.start, m.flags.clone(), m.linear),
            (620 << 10, vec!["RW".to_string(), "NX".to_string()], true)
        );
        let bad: Vec<&str> = "pt 0xc0000000-0xc009b000 4K pte RW phys 0x0 linear"
            .split_whitespace()
            .collect();
        assert!(parse_walk_mapping(src, 1, &bad).is_err());
        let t = parse_walk_table(src, 1, "ptable va 0xff000000: pte page phys 0x001f23000, 0/512 entries present  <== pkmap_page_table (PKMAP_BASE)").unwrap();
        assert_eq!(
            (t.va, t.phys, t.present, t.entries),
            (0xff00_0000, 0x1f2_3000, 0, 512)
        );
        assert_eq!(t.note.as_deref(), Some("pkmap_page_table (PKMAP_BASE)"));
    }
}
