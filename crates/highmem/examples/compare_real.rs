//! Compare the model with real boots that are not in ../shared/reference: give it console
//! captures in the reference format (`ORACLE-RUN`/`ORACLE-QEMU` lines, the boot log, the
//! `=====BEGIN …=====` dumps) and it boots the model on the same machine, command line and
//! initramfs size, and prints every zone figure, watermark, pcp limit, min_free_kbytes and
//! LowFree/HighFree side by side, marking the differences.
//!
//! `cargo run --release -p highmem --example compare_real -- FILE...`

use highmem::reference::RefRun;
use kernel::config::KernelConfig;
use kernel::procfs::{live, ZoneStatItem};
use kernel::{boot, BootOptions};

fn ramdisk_size(run: &RefRun) -> Option<u64> {
    // "RAMDISK: [mem 0x37cd4000-0x37ffffff]"
    let l = run
        .boot_log
        .iter()
        .find(|l| l.starts_with("RAMDISK: [mem "))?;
    let r = l.trim_start_matches("RAMDISK: [mem ").trim_end_matches(']');
    let (a, b) = r.split_once('-')?;
    let a = u64::from_str_radix(a.trim_start_matches("0x"), 16).ok()?;
    let b = u64::from_str_radix(b.trim_start_matches("0x"), 16).ok()?;
    Some(b + 1 - a)
}

fn cmp(out: &mut Vec<String>, bad: &mut u32, what: &str, ours: i64, real: i64) {
    let mark = if ours == real { "" } else { "   <-- differs" };
    if ours != real {
        *bad += 1;
    }
    out.push(format!(
        "  {what:<34} model {ours:>10}  real {real:>10}{mark}"
    ));
}

fn compare(path: &str) -> Result<u32, String> {
    let run = RefRun::load(path).map_err(|e| e.to_string())?;
    let cfg = KernelConfig::preset(run.kernel.preset_name()).map_err(|e| e.to_string())?;
    let mut opts = BootOptions::new(run.ram_mib << 20, run.smp, cfg);
    opts.cmdline = run.append.clone();
    if let Some(size) = ramdisk_size(&run) {
        opts.initrd_size = size;
    }
    let k = boot(&opts).map_err(|e| e.to_string())?;
    let mut out = vec![format!("{} ({})", run.name, run.append.trim())];
    let mut bad = 0;
    let zi = run.zoneinfo.first().ok_or("no zoneinfo")?;
    for mz in &live::zoneinfo(&k).nodes[0].zones {
        let Some(rz) = zi.zone(&mz.name) else {
            out.push(format!("  zone {} missing in the real boot", mz.name));
            bad += 1;
            continue;
        };
        let n = &mz.name;
        cmp(
            &mut out,
            &mut bad,
            &format!("{n} spanned"),
            mz.spanned_pages as i64,
            rz.spanned as i64,
        );
        cmp(
            &mut out,
            &mut bad,
            &format!("{n} present"),
            mz.present_pages as i64,
            rz.present as i64,
        );
        let managed_diff = mz.managed_pages as i64 - rz.managed as i64;
        out.push(format!(
            "  {:<34} model {:>10}  real {:>10}  ({managed_diff:+})",
            format!("{n} managed"),
            mz.managed_pages,
            rz.managed
        ));
        cmp(
            &mut out,
            &mut bad,
            &format!("{n} min"),
            mz.min_wmark_pages() as i64,
            rz.min as i64,
        );
        cmp(
            &mut out,
            &mut bad,
            &format!("{n} low"),
            mz.low_wmark_pages() as i64,
            rz.low as i64,
        );
        cmp(
            &mut out,
            &mut bad,
            &format!("{n} high"),
            mz.high_wmark_pages() as i64,
            rz.high as i64,
        );
        let ours = format!("{:?}", mz.lowmem_reserve);
        let real = format!("{:?}", rz.protection);
        if ours != real {
            bad += 1;
            out.push(format!(
                "  {n} protection model {ours} real {real}   <-- differs"
            ));
        }
        if rz.populated() {
            let mp: Vec<(i32, i32)> = mz.pagesets.iter().map(|p| (p.high, p.batch)).collect();
            let rp: Vec<(i32, i32)> = rz.pagesets.iter().map(|p| (p.high, p.batch)).collect();
            if mp != rp {
                bad += 1;
                out.push(format!("  {n} pcp model {mp:?} real {rp:?}   <-- differs"));
            }
        }
    }
    let real_min_free = run
        .sysctl_values("/proc/sys/vm/min_free_kbytes")
        .ok()
        .flatten()
        .and_then(|v| v.first().copied())
        .unwrap_or(-1);
    cmp(
        &mut out,
        &mut bad,
        "min_free_kbytes",
        i64::from(k.node.sysctl.min_free_kbytes),
        real_min_free,
    );
    let mi = live::meminfo(&k);
    let free = mi.zone_stats[ZoneStatItem::NrFreePages] * 4;
    let high = mi.free_highpages * 4;
    let rm = run.meminfo.first().ok_or("no meminfo")?;
    for (label, ours) in [
        ("LowFree", free - high),
        ("HighFree", high),
        ("MemTotal", mi.totalram_pages * 4),
    ] {
        let real = rm.get(label).unwrap_or(0);
        let pct = if real > 0 {
            (ours as f64 - real as f64) / real as f64 * 100.0
        } else {
            0.0
        };
        out.push(format!(
            "  {label:<34} model {ours:>10}  real {real:>10}  ({pct:+.3}%)"
        ));
    }
    println!("{}", out.join("\n"));
    Ok(bad)
}

fn main() {
    let mut total = 0;
    for path in std::env::args().skip(1) {
        match compare(&path) {
            Ok(bad) => total += bad,
            Err(e) => {
                eprintln!("{path}: {e}");
                total += 1;
            }
        }
    }
    println!("{total} exact figures differ");
}
