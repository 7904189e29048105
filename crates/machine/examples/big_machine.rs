//! What a 64 GiB simulated machine costs the host.
//!
//! `PhysMem` reserves the whole RAM as one lazily backed anonymous mapping, so building the
//! biggest machine highmem models should take address space but almost no resident memory;
//! only frames the simulation actually touches become host pages. This example checks that
//! on the running host: it builds the RAM of QEMU's `pc` machine with `-m 64G` (banks from
//! the e820 map) and a one-CPU `Machine`, then writes to scattered frames, printing wall
//! time and the process's resident size, host page-table size and virtual size after
//! each step (refusing frame counts that could exhaust the host). It prints figures
//! only; it asserts nothing about them, since they depend on the host.
//!
//! Run: `cargo run --release -p machine --example big_machine [-- FRAMES]` (default 1000).

use machine::e820::E820Map;
use machine::{Machine, PhysAddr, PhysMem, PAGE_SIZE};
use std::error::Error;
use std::io::{self, Write};
use std::time::Instant;

const GIB: u64 = 1 << 30;
const DEFAULT_FRAMES: u64 = 1000;

/// Resident size, virtual size and host page-table size of this process in KiB, from
/// /proc/self/status (Linux hosts; `None` elsewhere).
#[derive(Clone, Copy)]
struct Usage {
    rss_kib: Option<u64>,
    vsz_kib: Option<u64>,
    pte_kib: Option<u64>,
}

fn usage() -> Usage {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status.lines().find_map(|l| {
            let rest = l.strip_prefix(name)?.strip_prefix(':')?;
            rest.trim().strip_suffix("kB")?.trim().parse().ok()
        })
    };
    Usage {
        rss_kib: field("VmRSS"),
        vsz_kib: field("VmSize"),
        pte_kib: field("VmPTE"),
    }
}

fn kib(v: Option<u64>) -> String {
    v.map_or_else(|| "n/a".to_string(), |k| format!("{k} KiB"))
}

fn report(out: &mut impl Write, step: &str, secs: f64, u: Usage, base: Usage) -> io::Result<()> {
    let delta = match (u.rss_kib, base.rss_kib) {
        (Some(now), Some(then)) => format!("{:+} KiB", now as i64 - then as i64),
        _ => "n/a".to_string(),
    };
    writeln!(
        out,
        "{step:<30} {:>9.3} ms  VmRSS {:>10} ({delta:>11} vs start)  VmPTE {:>8}  VmSize {:>13}",
        secs * 1e3,
        kib(u.rss_kib),
        kib(u.pte_kib),
        kib(u.vsz_kib),
    )
}

/// MemAvailable of the host in KiB, from /proc/meminfo.
fn host_available_kib() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    info.lines().find_map(|l| {
        let rest = l.strip_prefix("MemAvailable:")?;
        rest.trim().strip_suffix("kB")?.trim().parse().ok()
    })
}

/// The physical address `offset` bytes into RAM, counting only RAM (banks in order).
fn ram_offset_to_phys(mem: &PhysMem, mut offset: u64) -> Option<PhysAddr> {
    for bank in mem.banks() {
        if offset < bank.len {
            return Some(bank.start + offset);
        }
        offset -= bank.len;
    }
    None
}

fn main() -> Result<(), Box<dyn Error>> {
    let asked: u64 = match std::env::args().nth(1) {
        Some(a) => a
            .parse()
            .map_err(|e| format!("frame count {a:?} is not a number: {e}"))?,
        None => DEFAULT_FRAMES,
    };

    let mut out = io::stdout().lock();
    let map = E820Map::qemu_pc(64 * GIB)?;
    let banks = map.ram_banks();
    writeln!(out, "QEMU pc, -m 64G: {} RAM banks", banks.len())?;
    for (start, len) in &banks {
        let size = if len % (1 << 20) == 0 {
            format!("{} MiB", len >> 20)
        } else {
            format!("{} KiB", len >> 10)
        };
        let (first, last) = (start.as_u64(), start.as_u64() + len - 1);
        writeln!(out, "  {first:#013x}-{last:#013x} ({size})")?;
    }

    let start = usage();
    report(&mut out, "start", 0.0, start, start)?;

    let t = Instant::now();
    let mem = PhysMem::new(&banks)?;
    let secs = t.elapsed().as_secs_f64();
    report(&mut out, "PhysMem::new (64 GiB)", secs, usage(), start)?;

    let t = Instant::now();
    let mut m = Machine::new(mem, 1);
    let secs = t.elapsed().as_secs_f64();
    report(&mut out, "Machine::new (1 CPU)", secs, usage(), start)?;

    // Spread the frames evenly over all of RAM, below and above 4 GiB.
    let ram = m.mem.size();
    let frames = asked.min(ram / PAGE_SIZE);
    // Each scattered frame can cost the host a data page plus a page-table page; refuse to
    // push the host towards its OOM killer.
    let worst_kib = frames.saturating_mul((2 * PAGE_SIZE) >> 10);
    if let Some(avail) = host_available_kib() {
        if worst_kib > avail / 2 {
            return Err(format!(
                "touching {frames} frames may take {} MiB of host memory, more than half of \
                 the {} MiB available; ask for fewer frames",
                worst_kib >> 10,
                avail >> 10
            )
            .into());
        }
    }
    let step = (ram / frames.max(1)) & !(PAGE_SIZE - 1);
    let t = Instant::now();
    let mut touched = 0u64;
    for i in 0..frames {
        let Some(pa) = ram_offset_to_phys(&m.mem, i * step) else {
            break;
        };
        m.mem.write_u64(pa, i)?;
        touched += 1;
    }
    let secs = t.elapsed().as_secs_f64();
    let after = usage();
    let step_name = format!("touch {touched} scattered frames");
    report(&mut out, &step_name, secs, after, start)?;

    // Read them back, so the figures above are for frames that really hold data.
    for i in 0..touched {
        let pa = ram_offset_to_phys(&m.mem, i * step).ok_or("frame vanished")?;
        if m.mem.read_u64(pa)? != i {
            return Err(format!("frame at {pa:#x} lost its contents").into());
        }
    }
    if touched > 0 {
        let per = |now: Option<u64>, then: Option<u64>| match (now, then) {
            (Some(a), Some(b)) => format!("{:.1} KiB", (a as f64 - b as f64) / touched as f64),
            _ => "n/a".to_string(),
        };
        writeln!(
            out,
            "per touched frame: {:.2} us, {} of RSS, {} of host page tables (frame: {} KiB)",
            secs * 1e6 / touched as f64,
            per(after.rss_kib, start.rss_kib),
            per(after.pte_kib, start.pte_kib),
            PAGE_SIZE >> 10,
        )?;
    }
    Ok(())
}
