//! The scenario format as Rust types (serde over TOML): unknown keys and wrong types are
//! refused with the position the TOML parser reports.

use super::error::{at, ScenarioError};
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use toml::Spanned;

/// A parsed scenario.
#[derive(Debug, Deserialize)]
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
#[derive(Debug, Default, Deserialize)]
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
    /// Build variant: nohighmem, 4GB, 4GB-highpte, 64GB, 64GB-highpte, x86_64.
    pub variant: Option<Spanned<String>>,
    /// vm sysctls written after boot, as `sysctl -w` would.
    #[serde(default)]
    pub sysctl: BTreeMap<String, Spanned<i64>>,
    /// Replay what a real userspace holds after boot (the preset's runtime profile).
    #[serde(default = "yes")]
    pub runtime: bool,
}

fn one() -> u32 {
    1
}
fn yes() -> bool {
    true
}

/// `[report]`: /proc files printed after the last step.
#[derive(Debug, Default, Deserialize)]
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
#[derive(Debug, Deserialize)]
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
    /// Run the inner steps `times` times.
    Repeat {
        times: u32,
        /// The body (`[[step.step]]`); errors inside it point at the `repeat` step.
        #[serde(rename = "step")]
        steps: Vec<Step>,
    },
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
        "`op` is one of: alloc_pages, kmalloc, vmalloc, kmap, free, sysctl, proc, repeat"
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
