//! vmalloc against the real boots: VmallocTotal, the /proc/vmallocinfo format (every real
//! line parsed and printed back by the model's formatter), and the start of the real boot's
//! vmalloc area replayed through the model's ioremap / vmalloc: the same addresses, sizes,
//! alignment and lines.

mod common;

use common::reference_boots as boots;
use kernel::config::KernelConfig;
use kernel::gfp::GFP_KERNEL;
use kernel::procfs::live;
use kernel::procfs::vmallocinfo::{format_vmallocinfo, VmallocinfoArea, VmallocinfoSnapshot};
use kernel::vmalloc::{VM_ALLOC, VM_DMA_COHERENT, VM_IOREMAP, VM_MAP, VM_USERMAP};
use kernel::{boot, BootOptions};

fn hex(s: &str) -> u64 {
    u64::from_str_radix(s.trim_start_matches("0x"), 16).expect("hex")
}

/// One real vmallocinfo line as the model's snapshot entry.
fn parse_line(line: &str) -> Result<VmallocinfoArea, String> {
    let (range, rest) = line.split_once(' ').ok_or("no range")?;
    let (start, end) = range.split_once('-').ok_or("no dash")?;
    let (start, end) = (hex(start), hex(end));
    let mut toks = rest.split_whitespace();
    let size: u64 = toks.next().ok_or("no size")?.parse().map_err(|_| "size")?;
    let toks: Vec<&str> = toks.collect();
    if toks == ["vm_map_ram"] {
        return Ok(VmallocinfoArea::VmMapRam { start, end });
    }
    let (mut caller, mut nr_pages, mut phys_addr, mut flags, mut vpages) = (None, 0, 0, 0, false);
    for t in toks {
        match t {
            "ioremap" => flags |= VM_IOREMAP,
            "vmalloc" => flags |= VM_ALLOC,
            "vmap" => flags |= VM_MAP,
            "user" => flags |= VM_USERMAP,
            "dma-coherent" => flags |= VM_DMA_COHERENT,
            "vpages" => vpages = true,
            t if t.starts_with("pages=") => nr_pages = t[6..].parse().map_err(|_| "pages")?,
            t if t.starts_with("phys=") => phys_addr = hex(&t[5..]),
            t if caller.is_none() => caller = Some(t.to_string()),
            t => return Err(format!("unexpected token {t:?}")),
        }
    }
    if end - start != size {
        return Err(format!("size {size} vs range {:#x}", end - start));
    }
    Ok(VmallocinfoArea::Vm {
        addr: start,
        size,
        caller,
        nr_pages,
        phys_addr,
        flags,
        vpages,
    })
}

#[test]
fn vmalloc_total_matches_every_reference_boot() {
    for (run, k) in boots() {
        let model = live::meminfo(k).vmalloc_total_bytes >> 10;
        for m in &run.meminfo {
            assert_eq!(Some(model), m.get("VmallocTotal"), "{}", run.name);
        }
        let text = live::read(k, "meminfo").unwrap();
        let real = run.section("/proc/meminfo").unwrap();
        let line = |t: &str| {
            t.lines()
                .find(|l| l.starts_with("VmallocTotal:"))
                .map(str::to_string)
        };
        assert_eq!(line(&text), line(real), "{}", run.name);
        assert!(text.contains("VmallocChunk:          0 kB"));
    }
}

#[test]
fn the_vmallocinfo_format_reproduces_every_real_line() {
    let mut lines = 0;
    for (run, _) in boots() {
        for sec in run.sections("/proc/vmallocinfo") {
            let mut snap = VmallocinfoSnapshot {
                pae: run.kernel.is_pae(),
                ..Default::default()
            };
            for l in sec.text.lines() {
                if let Some(r) = l.strip_suffix(" unpurged vm_area") {
                    let (range, _) = r.split_once(' ').unwrap();
                    let (s, e) = range.split_once('-').unwrap();
                    snap.unpurged.push((hex(s), hex(e)));
                } else {
                    snap.areas
                        .push(parse_line(l).unwrap_or_else(|e| panic!("{}: {l}: {e}", run.name)));
                }
                lines += 1;
            }
            assert_eq!(
                format_vmallocinfo(&snap),
                sec.text.clone() + if sec.text.ends_with('\n') { "" } else { "\n" },
                "{}",
                run.name
            );
        }
    }
    assert!(lines > 50);
}

#[test]
fn the_boot_leaves_the_real_kernels_vmalloc_areas() {
    for (run, k) in boots() {
        let real = run.section("/proc/vmallocinfo").unwrap();
        assert_eq!(
            live::read(k, "vmallocinfo").unwrap().trim_end(),
            real.trim_end(),
            "{}",
            run.name
        );
        let used = |t: &str| {
            t.lines()
                .find(|l| l.starts_with("VmallocUsed:"))
                .map(str::to_string)
        };
        let real_meminfo = run.section("/proc/meminfo").unwrap();
        assert_eq!(
            used(&live::read(k, "meminfo").unwrap()),
            used(real_meminfo),
            "{}",
            run.name
        );
        k.check_vmalloc().unwrap();
    }
}

/// The two gaps the boot leaves by areas nobody has identified, read off every reference
/// boot: below the zswap scratches, beyond the self-test's scratches (2 × 33 pages per
/// CPU, guards included), one vmalloc of `UNIDENTIFIED_EARLY_PAGES` plus its guard; between
/// the last scratch and n_tty's buffer, `UNIDENTIFIED_LATE_PAGES` of address space.
#[test]
fn the_unidentified_boot_gaps_are_those_of_every_reference_boot() {
    use kernel::boot::vm_areas::{UNIDENTIFIED_EARLY_PAGES, UNIDENTIFIED_LATE_PAGES};
    for (run, _) in boots() {
        let areas: Vec<VmallocinfoArea> = run
            .section("/proc/vmallocinfo")
            .unwrap()
            .lines()
            .map(|l| parse_line(l).unwrap())
            .collect();
        let vm = |a: &VmallocinfoArea| match a {
            VmallocinfoArea::Vm {
                addr, size, caller, ..
            } => (*addr, *size, caller.clone().unwrap_or_default()),
            VmallocinfoArea::VmMapRam { start, end } => (*start, end - start, String::new()),
        };
        let first_scomp = areas
            .iter()
            .position(|a| vm(a).2.starts_with("crypto_scomp_init_tfm"))
            .unwrap();
        let last_scomp = areas
            .iter()
            .rposition(|a| vm(a).2.starts_with("crypto_scomp_init_tfm"))
            .unwrap();
        let (below_end, _, _) = {
            let (a, s, c) = vm(&areas[first_scomp - 1]);
            (a + s, s, c)
        };
        let early_gap = (vm(&areas[first_scomp]).0 - below_end) / 4096;
        let self_test = 2 * 33 * u64::from(run.smp);
        assert_eq!(
            early_gap,
            self_test + UNIDENTIFIED_EARLY_PAGES + 1,
            "{}",
            run.name
        );
        let (a, s, _) = vm(&areas[last_scomp]);
        let n_tty = vm(&areas[last_scomp + 1]);
        assert!(n_tty.2.starts_with("n_tty_open"), "{}", run.name);
        assert_eq!(
            (n_tty.0 - (a + s)) / 4096,
            UNIDENTIFIED_LATE_PAGES,
            "{}",
            run.name
        );
    }
}

#[test]
fn replaying_the_real_boots_first_areas_gives_the_same_addresses_and_lines() {
    for (run, _) in boots() {
        let real = run.section("/proc/vmallocinfo").unwrap();
        let cfg = KernelConfig::preset(run.kernel.preset_name()).unwrap();
        let mut opts = BootOptions::new(run.ram_mib << 20, run.smp, cfg);
        opts.cmdline = run.append.clone();
        opts.runtime_profile = false;
        let mut k = boot(&opts).unwrap();
        // Past the boot's own areas, the model's ioremap and vmalloc take the same places
        // as a fresh replay of the real list would: free every boot area, purge, replay.
        let boot_areas: Vec<u64> = k.vmap.busy.keys().copied().collect();
        for a in boot_areas {
            k.vfree(a, 0).unwrap();
        }
        k.purge_vmap_area_lazy(0).unwrap();
        // The contiguous prefix: ACPI/HPET ioremaps, the BPF vmalloc, memremap of the BIOS.
        let mut expect = String::new();
        let mut at = k.vmap.start();
        for l in real.lines() {
            let VmallocinfoArea::Vm {
                addr,
                size,
                caller,
                nr_pages,
                phys_addr,
                flags,
                ..
            } = parse_line(l).unwrap()
            else {
                break;
            };
            if addr != at {
                break;
            }
            let caller = caller.unwrap();
            let got = if flags & VM_IOREMAP != 0 {
                k.ioremap_caller(phys_addr, size - 4096, &caller, 0)
                    .unwrap()
            } else {
                k.vmalloc_caller(nr_pages * 4096, GFP_KERNEL, &caller, 0)
                    .unwrap()
            };
            assert_eq!(got, addr, "{}: {l}", run.name);
            expect.push_str(l);
            expect.push('\n');
            at = addr + size;
        }
        assert!(expect.lines().count() >= 6, "{}", run.name);
        assert_eq!(
            live::read(&k, "vmallocinfo").unwrap(),
            expect,
            "{}",
            run.name
        );
        k.check_vmalloc().unwrap();
    }
}
