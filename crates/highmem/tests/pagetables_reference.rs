//! The simulated kernel's page tables against the real kernel's, for every reference boot.
//!
//! Each reference run ends with a walk of the real swapper_pg_dir (the `kinspect` block).
//! The model boots the same machine and kernel and its own swapper_pg_dir, bytes in
//! simulated RAM, is walked by `kernel::ptdump` into the same shape. Compared here:
//! (a) the direct map, `[PAGE_OFFSET, high_memory)`: every merged range with its page size,
//! RW/USR/PWT/PCD/PAT/GLB/NX and physical target; (b) the pkmap page table at PKMAP_BASE
//! with nothing mapped; (c) PTE pages for the same PMD-sized slots of the CPU entry area
//! and the fixmap, and of the vmalloc area (the boot-time ioremaps and vmallocs). What
//! the model does not build is left out explicitly, each exclusion
//! stated where it is made. Nothing here restates a figure from the reference files.

mod common;

use common::reference_boots;
use highmem::reference::{Kinspect, RefRun, WalkMapping};
use kernel::ptdump::{PtDump, PtRange};
use kernel::Kernel;
use std::collections::BTreeSet;

/// What the model's memblock calls the real-mode trampoline's reservation.
const TRAMPOLINE: &str = "real-mode trampoline";

/// Every reference boot (not the workload runs) with the model booted alike, once for all
/// the tests here.
fn boots() -> impl Iterator<Item = (&'static RefRun, &'static Kinspect, &'static Kernel)> {
    reference_boots().iter().map(|(run, k)| {
        let ki = run
            .kinspect
            .as_ref()
            .unwrap_or_else(|| panic!("{}: no kinspect block", run.name));
        (run, ki, k)
    })
}

/// One merged range, as both walks describe it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Leaf {
    start: u64,
    end: u64,
    level: String,
    rw: bool,
    user: bool,
    pwt: bool,
    pcd: bool,
    pat: bool,
    global: bool,
    nx: bool,
    phys: u64,
    linear: bool,
}

impl std::fmt::Display for Leaf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let on = |b: bool, s: &'static str| if b { s } else { "-" };
        write!(
            f,
            "{:#010x}-{:#010x} {} {} {} {} {} {} {} {} phys {:#x} {}",
            self.start,
            self.end,
            self.level,
            if self.rw { "RW" } else { "ro" },
            on(self.user, "USR"),
            on(self.pwt, "PWT"),
            on(self.pcd, "PCD"),
            on(self.pat, "PAT"),
            on(self.global, "GLB"),
            if self.nx { "NX" } else { "x" },
            self.phys,
            if self.linear { "linear" } else { "scattered" }
        )
    }
}

/// The reference's flag columns, refusing any this comparison would not understand.
fn real_leaf(m: &WalkMapping) -> Result<Leaf, String> {
    const KNOWN: &[&str] = &["RW", "ro", "USR", "PWT", "PCD", "PAT", "GLB", "NX", "x"];
    if let Some(f) = m.flags.iter().find(|f| !KNOWN.contains(&f.as_str())) {
        return Err(format!("unknown flag {f:?} in the reference walk"));
    }
    Ok(Leaf {
        start: m.start,
        end: m.end,
        level: m.level.clone(),
        rw: m.has_flag("RW"),
        user: m.has_flag("USR"),
        pwt: m.has_flag("PWT"),
        pcd: m.has_flag("PCD"),
        pat: m.has_flag("PAT"),
        global: m.has_flag("GLB"),
        nx: m.has_flag("NX"),
        phys: m.phys,
        linear: m.linear,
    })
}

fn model_leaf(r: &PtRange) -> Leaf {
    Leaf {
        start: r.start,
        end: r.end,
        level: r.level.name().to_string(),
        rw: r.flags.rw,
        user: r.flags.user,
        pwt: r.flags.pwt,
        pcd: r.flags.pcd,
        pat: r.flags.pat,
        global: r.flags.global,
        nx: r.flags.nx,
        phys: r.phys,
        linear: r.linear,
    }
}

/// The parts of `leaves` inside `[lo, hi)`; a clipped linear range keeps its physical offset.
fn clip(leaves: impl IntoIterator<Item = Leaf>, lo: u64, hi: u64) -> Vec<Leaf> {
    leaves
        .into_iter()
        .filter(|l| l.end > lo && l.start < hi)
        .map(|mut l| {
            if l.start < lo {
                assert!(l.linear, "clipping a scattered range at {lo:#x}");
                l.phys += lo - l.start;
                l.start = lo;
            }
            l.end = l.end.min(hi);
            l
        })
        .collect()
}

/// Lines only one side has, in address order.
fn diff(model: &[Leaf], real: &[Leaf]) -> Vec<String> {
    let mut out: Vec<(u64, String)> = Vec::new();
    for m in model.iter().filter(|m| !real.contains(m)) {
        out.push((m.start, format!("  model only: {m}")));
    }
    for r in real.iter().filter(|r| !model.contains(r)) {
        out.push((r.start, format!("  real only:  {r}")));
    }
    out.sort();
    out.into_iter().map(|(_, s)| s).collect()
}

fn dump(k: &Kernel) -> PtDump {
    k.ptdump().expect("walk of the model's swapper_pg_dir")
}

#[test]
fn direct_map_matches_the_real_kernel() {
    let mut failures = Vec::new();
    for (run, ki, k) in boots() {
        let page_offset = k.config.page_offset();
        let high_memory = page_offset + k.layout.max_low_pfn.phys().as_u64();
        if ki.var("high_memory") != Some(high_memory) {
            failures.push(format!(
                "{}: high_memory {high_memory:#x} vs real {:?}",
                run.name,
                ki.var("high_memory")
            ));
            continue;
        }
        // Exclusion, only while the model places no real-mode trampoline (its boot does not
        // call reserve_real_mode): the real kernel copies the trampoline below 1 MiB and
        // write-protects it, so the first MiB would differ by construction. Once the model
        // has the trampoline, the first MiB is compared like everything else.
        let has_trampoline = k.memblock.reserved.iter().any(|r| r.name == TRAMPOLINE);
        let lo = if has_trampoline {
            page_offset
        } else {
            eprintln!(
                "{}: the model has no real-mode trampoline; first MiB not compared",
                run.name
            );
            page_offset + (1 << 20)
        };
        let real: Result<Vec<Leaf>, String> = ki.mappings().map(real_leaf).collect();
        let real = match real {
            Ok(r) => clip(r, lo, high_memory),
            Err(e) => {
                failures.push(format!("{}: {e}", run.name));
                continue;
            }
        };
        let model = clip(dump(k).ranges.iter().map(model_leaf), lo, high_memory);
        // Both walks must cover the whole direct map: no hole may hide a difference.
        for (side, leaves) in [("model", &model), ("real", &real)] {
            let mut at = lo;
            for l in leaves {
                if l.start != at {
                    failures.push(format!(
                        "{}: {side} direct map has a hole at {at:#x}",
                        run.name
                    ));
                }
                at = l.end;
            }
            if at != high_memory {
                failures.push(format!(
                    "{}: {side} direct map ends at {at:#x}, not high_memory {high_memory:#x}",
                    run.name
                ));
            }
        }
        if model != real {
            failures.push(format!(
                "{}: direct map differs:\n{}",
                run.name,
                diff(&model, &real).join("\n")
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn pae_top_level_entries_match() {
    let mut failures = Vec::new();
    for (run, ki, k) in boots().filter(|(_, _, k)| k.config.pae) {
        let real: Vec<(u32, u64)> = ki
            .walk
            .iter()
            .filter_map(|l| match l {
                highmem::reference::WalkLine::Pgd { index, entry } => Some((*index, *entry)),
                _ => None,
            })
            .collect();
        // Compared: which PDPT entries are present and the PMD page each points to. Not
        // compared: bit 5, which QEMU's page walker sets in the real PDPTE it walks
        // (the kernel writes only _PAGE_PRESENT there; the model's MMU leaves PDPTEs alone).
        let key = |e: u64| (e & 1, e & 0x000f_ffff_ffff_f000);
        let model: Vec<(u32, (u64, u64))> = dump(k).pgd.iter().map(|&(i, e)| (i, key(e))).collect();
        let real: Vec<(u32, (u64, u64))> = real.iter().map(|&(i, e)| (i, key(e))).collect();
        if model != real {
            failures.push(format!("{}: pgd {model:x?} vs real {real:x?}", run.name));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn pkmap_page_table_is_at_pkmap_base_and_empty() {
    let mut failures = Vec::new();
    for (run, ki, k) in boots() {
        let base = k.layout.areas.pkmap_base;
        let d = dump(k);
        let Some(real) = ki.tables().find(|t| {
            t.note
                .as_deref()
                .is_some_and(|n| n.contains("pkmap_page_table"))
        }) else {
            failures.push(format!("{}: reference has no pkmap_page_table", run.name));
            continue;
        };
        if real.va != base {
            failures.push(format!(
                "{}: PKMAP_BASE {base:#x} vs real {:#x}",
                run.name, real.va
            ));
        }
        match d.table_at(base) {
            None => failures.push(format!("{}: no page table at PKMAP_BASE", run.name)),
            Some(t) => {
                // Nothing kmapped after boot, on either side.
                if (t.present, t.entries) != (real.present, real.entries) || t.present != 0 {
                    failures.push(format!(
                        "{}: pkmap table {}/{} present vs real {}/{}",
                        run.name, t.present, t.entries, real.present, real.entries
                    ));
                }
                // The table the walk finds is the one the kernel keeps as pkmap_page_table.
                if t.phys != k.pkmap_page_table {
                    failures.push(format!(
                        "{}: walk finds {:#x}, pkmap_page_table is {:#x}",
                        run.name, t.phys, k.pkmap_page_table
                    ));
                }
            }
        }
        // Not compared: the page's physical address. The real kernel takes a few early page
        // tables from static BSS pages (bm_pte, initial_pg_fixmap) where the model takes
        // them from the brk buffer, so allocation order shifts later tables by a page.
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn fixmap_and_cpu_entry_area_tables_cover_the_same_slots() {
    let mut failures = Vec::new();
    for (run, ki, k) in boots() {
        let base = k.layout.areas.pkmap_base;
        let high_memory = k.config.page_offset() + k.layout.max_low_pfn.phys().as_u64();
        let d = dump(k);
        // The PMD-sized slots from PKMAP_BASE up (pkmap, LDT remap, CPU entry area, fixmap)
        // that have a PTE page: the same on both sides.
        let model: BTreeSet<u64> = d
            .tables
            .iter()
            .filter(|t| t.va > base)
            .map(|t| t.va)
            .collect();
        let real: BTreeSet<u64> = ki.tables().filter(|t| t.va > base).map(|t| t.va).collect();
        if model.is_empty() || model != real {
            failures.push(format!(
                "{}: CEA/fixmap PTE pages at {model:x?} vs real {real:x?}",
                run.name
            ));
        }
        // Not compared: what those pages map. The real CPU entry area holds the GDT, TSS
        // and entry stacks, and the fixmap the local and I/O APIC registers; the model maps
        // none of them, and its kmap_local slots are all released after boot, so its pages
        // must be empty.
        for t in d.tables.iter().filter(|t| t.va > base && t.present != 0) {
            failures.push(format!(
                "{}: model maps {} pages in the PTE page at {:#x}",
                run.name, t.present, t.va
            ));
        }
        // The vmalloc area: the boot's ioremaps and vmallocs (ACPI, HPET, BPF, SMBIOS,
        // scomp scratches, n_tty) take PTE pages in the same PMD-sized slots as the real
        // boot's.
        let in_vmalloc = |va: u64| va >= high_memory && va < base;
        let model: BTreeSet<u64> = d
            .tables
            .iter()
            .filter(|t| in_vmalloc(t.va))
            .map(|t| t.va)
            .collect();
        let real: BTreeSet<u64> = ki
            .tables()
            .filter(|t| in_vmalloc(t.va))
            .map(|t| t.va)
            .collect();
        if model.is_empty() || model != real {
            failures.push(format!(
                "{}: vmalloc-area PTE pages at {model:x?} vs real {real:x?}",
                run.name
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn no_writable_and_executable_kernel_pages() {
    // The real PAE boots' W+X check passed (`x86/mm: Checked W+X mappings: passed`), and
    // their walk agrees; the model's walk of all kernel addresses, trampoline and CPU entry
    // area included, must too. (Without PAE there is no NX and no check.)
    let mut failures = Vec::new();
    for (run, ki, k) in boots().filter(|(_, _, k)| k.config.pae) {
        let real_wx: u64 = ki
            .mappings()
            .filter(|m| m.has_flag("RW") && !m.has_flag("NX"))
            .map(|m| (m.end - m.start) / 4096)
            .sum();
        let wx = dump(k).wx_pages();
        if wx != real_wx {
            failures.push(format!("{}: {wx} W+X pages vs real {real_wx}", run.name));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
