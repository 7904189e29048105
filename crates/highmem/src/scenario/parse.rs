//! The scenario format as Rust types (serde over TOML): unknown keys and wrong types are
//! refused with the position the TOML parser reports.

use super::error::{at, ScenarioError};
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use toml::Spanned;

/// A parsed scenario.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// One line saying what the scenario shows (printed under the header).
    #[serde(default)]
    pub description: String,
    pub machine: MachineSection,
    /// The steps, in order (`[[step]]` tables).
    #[serde(default, rename = "step")]
    pub steps: Vec<Spanned<Step>>,
    #[serde(default)]
    pub report: Report,
}

/// `[machine]`: what `--ram`, `--pae`, `--cpus`, `--kernel`, `--append`, `--sysctl` say on
/// the command line.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MachineSection {
    pub ram: Option<Spanned<String>>,
    #[serde(default)]
    pub pae: bool,
    #[serde(default = "one")]
    pub cpus: u32,
    pub kernel: Option<Spanned<String>>,
    #[serde(default)]
    pub append: String,
    /// Kernel design: linux-6.1 (default), highpte-2.5, pte-highmem-2.4.
    pub design: Option<Spanned<String>>,
    /// linux-6.1's pte_offset_map: "kmap_atomic" (6.1, default) or "kmap_local" (6.5+).
    pub pte_map: Option<Spanned<String>>,
    /// Build variant: nohighmem, 4GB, 4GB-highpte, 64GB, 64GB-highpte, x86_64.
    pub variant: Option<Spanned<String>>,
    /// vm sysctls written after boot, as `sysctl -w` would.
    #[serde(default)]
    pub sysctl: BTreeMap<String, Spanned<i64>>,
    /// Replay what a real userspace holds after boot (the preset's runtime profile).
    #[serde(default = "yes")]
    pub runtime: bool,
    /// The seed of every interleaving the run makes (`--seed` overrides it).
    #[serde(default)]
    pub seed: u64,
    /// CONFIG_VMSPLIT_*: "3G" (default), "3G_OPT", "2G", "2G_OPT", "1G".
    pub vmsplit: Option<Spanned<String>>,
    /// The CPUs' TLB: "core2" (default, evicts) or "debug" (never evicts).
    pub tlb: Option<Spanned<String>>,
}

fn one() -> u32 {
    1
}
fn yes() -> bool {
    true
}

/// `[report]`: /proc files printed after the last step.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    #[serde(default)]
    pub proc: Vec<Spanned<String>>,
}

/// A size in bytes: an integer, or a string with a K/M/G suffix ("64K").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Size(pub u64);

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(i64),
            Text(String),
        }
        let bad = |s: &str| serde::de::Error::custom(s.to_string());
        match Raw::deserialize(d)? {
            Raw::Int(n) if n < 0 => Err(bad("a size cannot be negative")),
            Raw::Int(n) => Ok(Size(n as u64)),
            Raw::Text(t) => parse_size(&t).map(Size).ok_or_else(|| {
                bad(&format!(
                    "invalid size `{t}`: a number of bytes, or with K, M or G"
                ))
            }),
        }
    }
}

fn parse_size(t: &str) -> Option<u64> {
    let t = t.trim();
    let (num, shift) = match t.chars().last()? {
        'K' | 'k' => (&t[..t.len() - 1], 10),
        'M' | 'm' => (&t[..t.len() - 1], 20),
        'G' | 'g' => (&t[..t.len() - 1], 30),
        _ => (t, 0),
    };
    num.trim().parse::<u64>().ok()?.checked_mul(1 << shift)
}

/// One step. `name` labels what a step holds, so a later step can free it.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Step {
    /// `alloc_pages(gfp, order)`, `count` times.
    AllocPages {
        name: String,
        #[serde(default)]
        order: u32,
        #[serde(default = "one")]
        count: u32,
        #[serde(default = "gfp_kernel")]
        gfp: String,
        #[serde(default)]
        cpu: usize,
    },
    /// `kmalloc(size, GFP_KERNEL)`, `count` times.
    Kmalloc {
        name: String,
        size: Size,
        #[serde(default = "one")]
        count: u32,
        #[serde(default)]
        cpu: usize,
    },
    /// `vmalloc(size)` (or `vmalloc_32` with `lowmem = true`).
    Vmalloc {
        name: String,
        size: Size,
        #[serde(default)]
        lowmem: bool,
        #[serde(default)]
        cpu: usize,
    },
    /// `count` highmem pages, each `kmap()`ed (persistent kmaps, the PKMAP window).
    Kmap {
        name: String,
        #[serde(default = "one")]
        count: u32,
        #[serde(default)]
        cpu: usize,
    },
    /// Give back everything `name` holds (free_pages, kfree, vfree or kunmap + free).
    Free { name: String },
    /// Write a vm sysctl now.
    Sysctl { name: String, value: i64 },
    /// Print a /proc file now.
    Proc { file: String },
    /// exec a new process of the small static binary `/bin/COMM` (its start-up faults
    /// included); later steps call it `name`.
    Spawn {
        name: String,
        #[serde(default = "default_comm")]
        comm: String,
        #[serde(default)]
        cpu: usize,
    },
    /// `fork()` of process `parent`: the child is called `name`.
    Fork {
        name: String,
        parent: String,
        #[serde(default)]
        cpu: usize,
    },
    /// `exit()` of a process: its address space, kernel stack and objects go back.
    Exit {
        process: String,
        #[serde(default)]
        cpu: usize,
    },
    /// `shmget(IPC_PRIVATE, size)`: a SysV segment called `name`.
    Shmget {
        name: String,
        size: Size,
        #[serde(default)]
        cpu: usize,
    },
    /// `shmat()` of `segment` by `process` (read-only with `readonly = true`); the
    /// attachment is the mapping `name`.
    Shmat {
        name: String,
        process: String,
        segment: String,
        #[serde(default)]
        readonly: bool,
    },
    /// `shmdt()` of the attachment `mapping`.
    Shmdt { mapping: String },
    /// `shmctl(IPC_RMID)`: the segment goes once the last process detaches.
    ShmRmid { segment: String },
    /// `mmap(NULL, size, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS)` by `process`
    /// (read-only with `write = false`); the mapping is `name`.
    Mmap {
        name: String,
        process: String,
        size: Size,
        #[serde(default = "yes")]
        write: bool,
    },
    /// `munmap()` of the whole mapping.
    Munmap { mapping: String },
    /// `brk(brk + size)`: grow the heap of `process` by `size`.
    Brk { process: String, size: Size },
    /// Touch every page of `mapping` (or its first `size` bytes): `read` and `write` fault
    /// through the MMU, `populate` is `madvise(MADV_POPULATE_READ)`.
    Touch {
        mapping: String,
        #[serde(default = "read")]
        how: String,
        size: Option<Size>,
    },
    /// The reference workload (`shmwork S N touch`): a parent creates and populates a
    /// segment of `size`, `children` forked one after another attach it and touch every
    /// page, until the OOM killer or fork failure stops them.
    Shmwork {
        size: Size,
        children: u32,
        #[serde(default = "read_letter")]
        touch: String,
        #[serde(default = "fifty")]
        every: u32,
    },
    /// Seed 001's "kmap() is deadlock land": `tasks` kernel tasks (CPUs taken in turn) each
    /// kmap `pages` distinct highmem pages before kunmapping any, interleaved by the run's
    /// seed; all of them asleep on pkmap_map_wait is the deadlock report.
    KmapTasks { tasks: u32, pages: u32 },
    /// Seed 000's video driver: a DMA scatter-gather list of `pages`-page capture buffers
    /// built the four ways (pte_offset by hand, pte_offset_atomic, vmalloc_to_page,
    /// get_user_pages) under the machine's design, each checked against the real pages.
    Driver {
        #[serde(default = "sixteen")]
        pages: u64,
    },
    /// Run the inner steps `times` times.
    Repeat {
        times: u32,
        /// The body (`[[step.step]]`); errors inside it point at the `repeat` step.
        #[serde(rename = "step")]
        steps: Vec<Step>,
    },
}

fn default_comm() -> String {
    "sh".to_string()
}
fn read() -> String {
    "read".to_string()
}
fn read_letter() -> String {
    "r".to_string()
}
fn sixteen() -> u64 {
    16
}
fn fifty() -> u32 {
    50
}

fn gfp_kernel() -> String {
    "GFP_KERNEL".to_string()
}

/// Parse `src` (file `name`).
pub fn parse(name: &str, src: &str) -> Result<Scenario, ScenarioError> {
    toml::from_str::<Scenario>(src).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        let msg = e.message().trim().to_string();
        at(name, src, span, &msg, hint_for(&msg))
    })
}

/// A hint for the common mistakes.
fn hint_for(msg: &str) -> &'static str {
    if msg.contains("unknown variant") {
        "`op` is one of: alloc_pages, kmalloc, vmalloc, kmap, free, sysctl, proc, spawn, fork, exit, shmget, shmat, shmdt, shm_rmid, mmap, munmap, brk, touch, shmwork, kmap_tasks, driver, repeat"
    } else if msg.contains("unknown field") {
        "see docs/scenarios.md for the keys each table takes"
    } else if msg.contains("missing field") {
        "this step needs that key"
    } else if msg.contains("invalid type") || msg.contains("size") {
        "sizes are numbers of bytes or strings like \"64K\"; counts are integers"
    } else {
        "check the TOML syntax: tables are [machine] and [report], steps are [[step]] tables"
    }
}
