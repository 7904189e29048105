//! The kernel command line, as far as memory layout cares: `mem=`, `highmem=`, `vmalloc=`,
//! `reservetop=`, `userpte=`.
//!
//! The real kernel reads these as *early* parameters, before any allocator exists; each
//! handler either accepts its value or makes the kernel print `Malformed early option
//! '<name>'` and carry on. Sizes go through `memparse()`, which is forgiving: a number in
//! C notation (decimal, `0x…` hex, `0…` octal), an optional K/M/G/T/P/E suffix, and
//! anything after that is silently ignored (`vmalloc=abc` means 0 bytes). This module
//! keeps those semantics, so the model boots the way the kernel would, and records the
//! kernel's warnings for the boot log instead of failing. Every word, known or not, is
//! kept in order.

use core::fmt;

/// `mem=` in either of its forms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum MemOpt {
    /// `mem=SIZE`: forget RAM at and above SIZE.
    Limit(u64),
    /// `mem=nopentium`: do not use 4 MiB (PSE) pages for the direct map.
    NoPentium,
    /// `mem=` with a size of 0 (or no number): the kernel marks the map user-defined,
    /// removes nothing and prints `Malformed early option 'mem'`.
    Zero,
}

/// `userpte=`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum UserPte {
    /// `userpte=nohigh`: user page tables come from low memory (drop `__GFP_HIGHMEM`).
    NoHigh,
}

/// One early parameter the layout code acts on, in command-line order (order matters:
/// `mem=` twice removes twice, `reservetop=` moves the fixmap for what follows).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum EarlyParam {
    Mem(MemOpt),
    /// `highmem=SIZE`, in bytes as memparse returned them.
    Highmem(u64),
    /// `vmalloc=SIZE`, in bytes.
    Vmalloc(u64),
    /// `reservetop=SIZE`, in bytes.
    Reservetop(u64),
    UserPte(UserPte),
    /// A handler rejected its value: the kernel prints `Malformed early option '<name>'`.
    Malformed(&'static str),
}

/// A command line that cannot even be split into words.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CmdLineError {
    #[error("kernel command line has an unterminated quote")]
    UnterminatedQuote,
}

/// A parsed kernel command line.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct CmdLine {
    /// Every word, as split by the kernel (quotes removed).
    pub words: Vec<String>,
    /// The early parameters that matter for memory, in order.
    pub early: Vec<EarlyParam>,
    /// Words this model does not act on (`console=…`, `nokaslr`, init's arguments…).
    pub unknown: Vec<String>,
    /// `transparent_hugepage=` (a `__setup` parameter, read after the early ones).
    pub transparent_hugepage: Option<crate::thp::ThpEnabled>,
    /// Warnings the kernel prints about parameters it could not parse.
    pub warnings: Vec<String>,
    /// Words of the kernel's part that no kernel parameter claims and that are not module
    /// parameters (`name.param`): `unknown_bootoption()` hands them to init, and
    /// `print_unknown_bootoptions()` names them in the log.
    pub unknown_bootoptions: Vec<String>,
    /// Notes for the user about lenient parsing (`vmalloc=25OM` read as 25 bytes); these are
    /// not kernel messages.
    pub notes: Vec<String>,
}

impl CmdLine {
    /// Split and interpret a command line like QEMU's `-append`.
    pub fn parse(line: &str) -> Result<CmdLine, CmdLineError> {
        let mut cmd = CmdLine::default();
        let mut in_kernel_args = true;
        for word in split_words(line)? {
            if word == "--" {
                // Everything after "--" belongs to init.
                in_kernel_args = false;
            } else if in_kernel_args {
                cmd.interpret(&word);
            } else {
                cmd.unknown.push(word.clone());
            }
            cmd.words.push(word);
        }
        Ok(cmd)
    }

    fn interpret(&mut self, word: &str) {
        let (name, val) = match word.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (word, None),
        };
        // The kernel compares parameter names treating '-' and '_' alike.
        let key = name.replace('-', "_");
        let param = match key.as_str() {
            "mem" => self.size_param(val, "mem", |v| match v {
                0 => EarlyParam::Mem(MemOpt::Zero),
                n => EarlyParam::Mem(MemOpt::Limit(n)),
            }),
            "highmem" => self.size_param(val, "highmem", EarlyParam::Highmem),
            "vmalloc" => self.size_param(val, "vmalloc", EarlyParam::Vmalloc),
            "reservetop" => self.size_param(val, "reservetop", EarlyParam::Reservetop),
            "userpte" => match val {
                Some("nohigh") => EarlyParam::UserPte(UserPte::NoHigh),
                _ => EarlyParam::Malformed("userpte"),
            },
            "transparent_hugepage" => {
                use crate::thp::ThpEnabled;
                match val {
                    Some("always") => self.transparent_hugepage = Some(ThpEnabled::Always),
                    Some("madvise") => self.transparent_hugepage = Some(ThpEnabled::Madvise),
                    Some("never") => self.transparent_hugepage = Some(ThpEnabled::Never),
                    _ => self
                        .warnings
                        .push("transparent_hugepage= cannot parse, ignored".to_string()),
                }
                return;
            }
            "memmap" | "kernelcore" | "movablecore" | "crashkernel" => {
                self.notes.push(format!(
                    "{name}=: affects memory but is not modelled; ignored"
                ));
                self.unknown.push(word.to_string());
                return;
            }
            _ => {
                self.unknown.push(word.to_string());
                if !is_known_param(&key) && !key.contains('.') {
                    self.unknown_bootoptions.push(word.to_string());
                }
                return;
            }
        };
        self.early.push(param);
    }

    /// A size-valued early parameter (a missing value makes the handler fail).
    fn size_param(
        &mut self,
        val: Option<&str>,
        name: &'static str,
        make: impl Fn(u64) -> EarlyParam,
    ) -> EarlyParam {
        let Some(v) = val else {
            return EarlyParam::Malformed(name);
        };
        if name == "mem" && v == "nopentium" {
            return EarlyParam::Mem(MemOpt::NoPentium);
        }
        let (size, rest) = memparse(v);
        if !rest.is_empty() {
            self.notes.push(format!(
                "{name}={v}: the kernel reads this as {size} bytes and ignores '{rest}'"
            ));
        }
        make(size)
    }

    /// The last `vmalloc=` size, if any (the kernel keeps the last one).
    pub fn vmalloc(&self) -> Option<u64> {
        self.early.iter().rev().find_map(|p| match p {
            EarlyParam::Vmalloc(v) => Some(*v),
            _ => None,
        })
    }

    /// The last `highmem=` size, if any.
    pub fn highmem(&self) -> Option<u64> {
        self.early.iter().rev().find_map(|p| match p {
            EarlyParam::Highmem(v) => Some(*v),
            _ => None,
        })
    }

    /// True when `userpte=nohigh` was given.
    pub fn userpte_nohigh(&self) -> bool {
        self.early.contains(&EarlyParam::UserPte(UserPte::NoHigh))
    }

    /// `print_unknown_bootoptions()`: the line the kernel logs (KERN_NOTICE) after parsing
    /// the command line, if any parameter was unknown — those without a value first (init's
    /// argv), then those with one (init's environment).
    pub fn unknown_bootoptions_line(&self) -> Option<String> {
        if self.unknown_bootoptions.is_empty() {
            return None;
        }
        let (argv, envp): (Vec<&String>, Vec<&String>) = self
            .unknown_bootoptions
            .iter()
            .partition(|w| !w.contains('='));
        let all: Vec<&str> = argv.into_iter().chain(envp).map(String::as_str).collect();
        Some(format!(
            "Unknown kernel command line parameters \"{}\", will be passed to user space.",
            all.join(" ")
        ))
    }

    /// True when `mem=nopentium` was given (no PSE for the direct map).
    pub fn mem_nopentium(&self) -> bool {
        self.early.contains(&EarlyParam::Mem(MemOpt::NoPentium))
    }
}

impl fmt::Display for CmdLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.words.join(" "))
    }
}

/// Split like the kernel's `next_arg`: whitespace separates words, double quotes group.
/// Parameters the 6.1 i386 kernel claims (`__setup`, `early_param`, `core_param`) that a
/// user of this model is likely to pass; anything else is reported as the kernel reports
/// unknown parameters. (The kernel knows several hundred; this list holds the common ones
/// and those about memory, CPUs, consoles and the root file system. Note that `nokaslr`
/// is not among them on i386: the real boots report it as unknown.)
const KNOWN_PARAMS: &[&str] = &[
    "acpi",
    "apic",
    "audit",
    "cgroup_disable",
    "cgroup_enable",
    "clearcpuid",
    "clocksource",
    "cma",
    "console",
    "consoleblank",
    "crashkernel",
    "debug",
    "default_hugepagesz",
    "earlycon",
    "earlyprintk",
    "efi",
    "elevator",
    "hibernate",
    "highmem",
    "hpet",
    "hugepages",
    "hugepagesz",
    "ignore_loglevel",
    "init",
    "init_on_alloc",
    "init_on_free",
    "initcall_debug",
    "initrd",
    "iommu",
    "isolcpus",
    "kernelcore",
    "lapic",
    "log_buf_len",
    "loglevel",
    "maxcpus",
    "mem",
    "memblock",
    "memmap",
    "memtest",
    "mitigations",
    "movablecore",
    "nmi_watchdog",
    "noapic",
    "noexec",
    "nohz",
    "noinitrd",
    "nolapic",
    "nopat",
    "nopti",
    "noresume",
    "nosmp",
    "nosmap",
    "nosmep",
    "nowatchdog",
    "nr_cpus",
    "numa_balancing",
    "page_owner",
    "page_poison",
    "panic",
    "possible_cpus",
    "pti",
    "quiet",
    "ramdisk_size",
    "rdinit",
    "reboot",
    "reservetop",
    "resume",
    "ro",
    "root",
    "rootdelay",
    "rootflags",
    "rootfstype",
    "rootwait",
    "rw",
    "security",
    "selinux",
    "slub_debug",
    "slub_max_order",
    "slub_min_objects",
    "slub_min_order",
    "softlockup_panic",
    "spectre_v2",
    "swiotlb",
    "sysrq_always_enabled",
    "threadirqs",
    "transparent_hugepage",
    "tsc",
    "userpte",
    "vmalloc",
];

fn is_known_param(key: &str) -> bool {
    KNOWN_PARAMS.contains(&key)
}

fn split_words(line: &str) -> Result<Vec<String>, CmdLineError> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_quote = false;
    let mut has_word = false;
    for c in line.chars() {
        match c {
            '"' => {
                in_quote = !in_quote;
                has_word = true;
            }
            c if c.is_whitespace() && !in_quote => {
                if has_word {
                    words.push(std::mem::take(&mut cur));
                    has_word = false;
                }
            }
            c => {
                cur.push(c);
                has_word = true;
            }
        }
    }
    if in_quote {
        return Err(CmdLineError::UnterminatedQuote);
    }
    if has_word {
        words.push(cur);
    }
    Ok(words)
}

/// The kernel's `memparse()`: a C-notation number with an optional binary suffix.
/// Returns the value (wrapping like the kernel's 64-bit arithmetic) and the unparsed rest.
pub fn memparse(s: &str) -> (u64, &str) {
    let (mut value, rest) = simple_strtoull(s);
    let mut rest = rest;
    let shift = match rest.chars().next().map(|c| c.to_ascii_uppercase()) {
        Some('K') => 10,
        Some('M') => 20,
        Some('G') => 30,
        Some('T') => 40,
        Some('P') => 50,
        Some('E') => 60,
        _ => 0,
    };
    if shift > 0 {
        // Bits shifted out are lost, as in the kernel's unsigned long long.
        value <<= shift;
        rest = &rest[1..];
    }
    (value, rest)
}

/// `simple_strtoull(s, &end, 0)`: base from the prefix, digits until the first non-digit.
fn simple_strtoull(s: &str) -> (u64, &str) {
    let bytes = s.as_bytes();
    let (base, mut i) = if bytes.len() >= 2
        && bytes[0] == b'0'
        && (bytes[1] | 0x20) == b'x'
        && bytes.get(2).is_some_and(|b| b.is_ascii_hexdigit())
    {
        (16, 2)
    } else if bytes.first() == Some(&b'0') {
        (8, 0)
    } else {
        (10, 0)
    };
    let mut value: u64 = 0;
    while let Some(d) = bytes.get(i).and_then(|b| (*b as char).to_digit(base)) {
        value = value.wrapping_mul(base as u64).wrapping_add(d as u64);
        i += 1;
    }
    (value, &s[i..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memparse_suffixes_and_bases() {
        assert_eq!(memparse("256M"), (256 << 20, ""));
        assert_eq!(memparse("2g"), (2 << 30, ""));
        assert_eq!(memparse("1T"), (1 << 40, ""));
        assert_eq!(memparse("512k"), (512 << 10, ""));
        assert_eq!(memparse("0x1000"), (0x1000, ""));
        assert_eq!(memparse("010"), (8, ""));
        assert_eq!(memparse("4096"), (4096, ""));
        assert_eq!(memparse("25OM"), (25, "OM"));
        assert_eq!(memparse("abc"), (0, "abc"));
        assert_eq!(memparse(""), (0, ""));
        assert_eq!(memparse("0x"), (0, "x"));
        // Shifts wrap in 64 bits, like the kernel's.
        assert_eq!(memparse("16E"), (0, ""));
    }

    #[test]
    fn parses_memory_options_in_order() {
        let c = CmdLine::parse("console=ttyS0,115200 nokaslr mem=2G highmem=512M vmalloc=256M")
            .unwrap();
        assert_eq!(
            c.early,
            vec![
                EarlyParam::Mem(MemOpt::Limit(2 << 30)),
                EarlyParam::Highmem(512 << 20),
                EarlyParam::Vmalloc(256 << 20),
            ]
        );
        assert_eq!(c.unknown, vec!["console=ttyS0,115200", "nokaslr"]);
        assert_eq!(c.vmalloc(), Some(256 << 20));
        assert_eq!(c.highmem(), Some(512 << 20));
        assert!(c.notes.is_empty());
    }

    #[test]
    fn malformed_options_are_kernel_warnings_not_errors() {
        let c =
            CmdLine::parse("mem=0 userpte=foo vmalloc reservetop= mem=nopentium userpte=nohigh")
                .unwrap();
        assert_eq!(
            c.early,
            vec![
                EarlyParam::Mem(MemOpt::Zero),
                EarlyParam::Malformed("userpte"),
                EarlyParam::Malformed("vmalloc"),
                EarlyParam::Reservetop(0),
                EarlyParam::Mem(MemOpt::NoPentium),
                EarlyParam::UserPte(UserPte::NoHigh),
            ]
        );
        assert!(c.userpte_nohigh());
        assert!(c.mem_nopentium());
    }

    #[test]
    fn lenient_values_leave_a_note() {
        let c = CmdLine::parse("vmalloc=25OM").unwrap();
        assert_eq!(c.vmalloc(), Some(25));
        assert_eq!(c.notes.len(), 1);
    }

    #[test]
    fn quotes_and_double_dash() {
        let c = CmdLine::parse("a=\"x y\"  -- mem=1G").unwrap();
        assert_eq!(c.words, vec!["a=x y", "--", "mem=1G"]);
        assert!(c.early.is_empty());
        assert_eq!(c.unknown, vec!["a=x y", "mem=1G"]);
        assert_eq!(
            CmdLine::parse("a=\"x"),
            Err(CmdLineError::UnterminatedQuote)
        );
        assert_eq!(CmdLine::parse("").unwrap(), CmdLine::default());
    }

    #[test]
    fn unmodelled_memory_options_leave_a_note() {
        let c = CmdLine::parse("memmap=1G$2G kernelcore=1G").unwrap();
        assert!(c.early.is_empty());
        assert_eq!(c.notes.len(), 2);
        assert_eq!(c.unknown.len(), 2);
    }

    #[test]
    fn dash_and_underscore_match() {
        let c = CmdLine::parse("user-pte=nohigh").unwrap();
        assert_eq!(c.unknown, vec!["user-pte=nohigh"]);
        assert_eq!(
            c.unknown_bootoptions_line().as_deref(),
            Some("Unknown kernel command line parameters \"user-pte=nohigh\", will be passed to user space.")
        );
        let c =
            CmdLine::parse("console=ttyS0,115200 garbage=1 nokaslr panic=-1 ipv6.disable=1 -- x")
                .unwrap();
        assert_eq!(
            c.unknown_bootoptions_line().as_deref(),
            Some("Unknown kernel command line parameters \"nokaslr garbage=1\", will be passed to user space.")
        );
        let c = CmdLine::parse("vmalloc=1G").unwrap();
        assert_eq!(c.vmalloc(), Some(1 << 30));
    }
}
