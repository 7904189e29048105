//! The kernel crate's layout model against the real kernels: the build constants read from
//! the debug images (`reference/kernel/constants-*.txt`) and the variables and page-table
//! walk the `kinspect` block of each reference boot read from the running kernel.
//!
//! It lives in the highmem crate, not beside the layout code, because reading the reference
//! files is `highmem::reference`'s job and the kernel crate cannot depend on it.

use highmem::reference::{list_runs, load_constants, KernelFlavor, RefRun};
use kernel::cmdline::CmdLine;
use kernel::config::KernelConfig;
use kernel::fixmap::Fixmap;
use kernel::layout::{setup_layout, Layout};
use machine::e820::E820Map;
use std::collections::BTreeMap;

fn constants(flavor: KernelFlavor) -> BTreeMap<String, u64> {
    load_constants(flavor).unwrap_or_else(|e| panic!("{e}"))
}

fn preset_for(flavor: KernelFlavor) -> KernelConfig {
    KernelConfig::preset(flavor.preset_name()).unwrap()
}

#[test]
fn fixmap_enum_matches_the_debug_images() {
    for flavor in KernelFlavor::ALL {
        let c = constants(flavor);
        let cfg = preset_for(flavor);
        let fixmap = Fixmap::new(&cfg, c["__FIXADDR_TOP"]);
        // Every enumerator the kernel has, we have, with the same value...
        let theirs: Vec<(&String, &u64)> = c
            .iter()
            .filter(|(k, _)| k.starts_with("(int)FIX_") || k.starts_with("(int)__end_of"))
            .collect();
        assert!(theirs.len() >= 15, "{flavor:?}: too few fixmap constants");
        for (k, v) in theirs {
            let name = k.trim_start_matches("(int)");
            assert_eq!(fixmap.index(name), Some(*v), "{flavor:?}: {name}");
        }
        // ...and no more.
        for (name, v) in &fixmap.indexes {
            assert_eq!(
                c.get(&format!("(int){name}")),
                Some(v),
                "{flavor:?}: extra {name}"
            );
        }
    }
}

#[test]
fn preset_constants_match_the_debug_images() {
    for flavor in KernelFlavor::ALL {
        let c = constants(flavor);
        let cfg = preset_for(flavor);
        let img = cfg.image();
        let syms = [
            ("&_text", img.text),
            ("&_etext", img.etext),
            ("&_sdata", img.sdata),
            ("&_edata", img.edata),
            ("&__init_begin", img.init_begin),
            ("&__init_end", img.init_end),
            ("&__bss_start", img.bss_start),
            ("&__bss_stop", img.bss_stop),
            ("&__brk_base", img.brk_base),
            ("&__brk_limit", img.brk_limit),
            ("&_end", img.end),
            ("&swapper_pg_dir", img.swapper_pg_dir),
            ("&initial_page_table", img.initial_page_table),
            ("&__start_rodata", img.start_rodata),
            ("&__end_rodata", img.end_rodata),
        ];
        for (k, v) in syms {
            assert_eq!(c[k], v, "{flavor:?}: {k}");
        }
        assert_eq!(c["__FIXADDR_TOP"], cfg.fixaddr_top, "{flavor:?}");
        assert_eq!(c["__VMALLOC_RESERVE"], cfg.vmalloc_reserve, "{flavor:?}");
        assert_eq!(
            c["sizeof(struct page)"], cfg.sizeof_struct_page,
            "{flavor:?}"
        );
        assert_eq!(
            c["sizeof(struct cpu_entry_area)"],
            cfg.sizeof_cpu_entry_area
        );
        assert_eq!(c["sizeof(pte_t)"], if cfg.pae { 8 } else { 4 });
        assert_eq!(
            c["sizeof(pkmap_count)/sizeof(pkmap_count[0])"],
            cfg.last_pkmap(),
            "{flavor:?}: LAST_PKMAP"
        );
    }
}

/// Every reference run, boots and workload runs alike.
fn runs() -> Vec<RefRun> {
    let runs: Vec<RefRun> = list_runs()
        .unwrap_or_else(|e| panic!("{e}"))
        .iter()
        .map(|p| RefRun::load(p).unwrap_or_else(|e| panic!("{e}")))
        .collect();
    assert!(runs.len() >= 8, "reference boots missing");
    runs
}

fn layout_of(run: &RefRun) -> Layout {
    let cfg = preset_for(run.kernel);
    let e820 = E820Map::qemu_pc(run.ram_mib << 20).unwrap();
    setup_layout(&e820, &cfg, &CmdLine::parse(&run.append).unwrap(), run.smp).unwrap()
}

#[test]
fn kernel_variables_match_kinspect() {
    let mut checked = 0;
    for run in runs() {
        let Some(k) = &run.kinspect else {
            continue;
        };
        let v = &k.vars;
        let l = layout_of(&run);
        let n = &run.name;
        assert_eq!(v["high_memory"], l.high_memory.as_u64(), "{n}");
        assert_eq!(v["max_low_pfn"], l.max_low_pfn.as_u64(), "{n}");
        assert_eq!(v["max_pfn"], l.max_pfn.as_u64(), "{n}");
        assert_eq!(v["max_possible_pfn"], l.max_pfn.as_u64(), "{n}");
        assert_eq!(v["max_pfn_mapped"], l.max_pfn_mapped.as_u64(), "{n}");
        assert_eq!(v["max_low_pfn_mapped"], l.max_pfn_mapped.as_u64(), "{n}");
        assert_eq!(v["highstart_pfn"], l.highstart_pfn.as_u64(), "{n}");
        assert_eq!(v["highend_pfn"], l.highend_pfn.as_u64(), "{n}");
        assert_eq!(v["max_mapnr"], l.max_mapnr.as_u64(), "{n}");
        assert_eq!(v["__VMALLOC_RESERVE"], l.areas.vmalloc_reserve, "{n}");
        assert_eq!(v["__FIXADDR_TOP"], l.areas.fixmap.fixaddr_top, "{n}");
        assert_eq!(v["nr_cpu_ids"], u64::from(l.nr_cpu_ids), "{n}");
        // The FLATMEM mem_map was allocated top-down right below the relocated initrd.
        let initrd = run
            .boot_log
            .iter()
            .find_map(|l| l.split("Allocated new RAMDISK: [mem ").nth(1))
            .and_then(|r| r.split('-').next()?.strip_prefix("0x"))
            .and_then(|h| u64::from_str_radix(h, 16).ok())
            .expect("RAMDISK line");
        let mem_map_phys = v["mem_map"] - l.page_offset.as_u64();
        assert_eq!(mem_map_phys + l.mem_map_bytes, initrd, "{n}: mem_map size");
        checked += 1;
    }
    assert!(checked >= 8, "only {checked} boots had a kinspect block");
}

#[test]
fn virtual_areas_match_the_page_table_walk() {
    let mut checked = 0;
    for run in runs() {
        let Some(k) = &run.kinspect else {
            continue;
        };
        let l = layout_of(&run);
        let n = &run.name;
        // kcore's vmalloc segment is VMALLOC_START..VMALLOC_END (it has no physical
        // address); its lowmem segment ends at high_memory.
        let load = |paddr: u64| {
            k.kcore_loads
                .iter()
                .find(|x| x.paddr == paddr)
                .map(|x| (x.start, x.end))
                .unwrap_or_else(|| panic!("{n}: no kcore LOAD for paddr {paddr:#x}"))
        };
        assert_eq!(
            load(0xffff_ffff),
            (l.vmalloc_start.as_u64(), l.vmalloc_end.as_u64()),
            "{n}: vmalloc"
        );
        assert_eq!(
            load(0),
            (l.page_offset.as_u64(), l.high_memory.as_u64()),
            "{n}: lowmem"
        );
        // The page table that pkmap_page_table points to maps PKMAP_BASE.
        let pkmap = k
            .tables()
            .find(|t| t.note.as_deref() == Some("pkmap_page_table (PKMAP_BASE)"))
            .map(|t| t.va)
            .unwrap_or_else(|| panic!("{n}: no pkmap page table"));
        assert_eq!(pkmap, l.areas.pkmap_base, "{n}: PKMAP_BASE");
        // Kernel mappings by start address.
        let pt: BTreeMap<u64, _> = k.mappings().map(|m| (m.start, m)).collect();
        // The CPU entry area: a read-only IDT page at the base, then each CPU's GDT page.
        let idt = pt
            .get(&l.areas.cpu_entry_area_base)
            .unwrap_or_else(|| panic!("{n}: no IDT"));
        assert!(idt.has_flag("ro"), "{n}: {idt:?}");
        let cfg = preset_for(run.kernel);
        for cpu in 0..l.nr_cpu_ids {
            let gdt = l.areas.cpu_entry_area(cpu, cfg.sizeof_cpu_entry_area);
            assert!(
                pt.contains_key(&gdt),
                "{n}: no CPU entry area for cpu {cpu} at {gdt:#x}"
            );
        }
        // The I/O APIC (its default base, IO_APIC_DEFAULT_PHYS_BASE) sits in its fixmap slot.
        let fixmap = &l.areas.fixmap;
        let ioapic = fixmap.fix_to_virt(fixmap.index("FIX_IO_APIC_BASE_0").unwrap());
        let m = pt
            .get(&ioapic)
            .unwrap_or_else(|| panic!("{n}: nothing at {ioapic:#x}"));
        assert_eq!(m.phys, 0xfec0_0000, "{n}: {m:?}");
        checked += 1;
    }
    assert!(checked >= 8, "only {checked} boots had a kinspect block");
}

#[test]
fn memory_line_sizes_come_from_the_image_symbols() {
    let mut checked = 0;
    for run in runs() {
        let cfg = preset_for(run.kernel);
        let m = run
            .memory_line
            .as_ref()
            .unwrap_or_else(|| panic!("{}: no Memory: line", run.name));
        let s = cfg.image().sizes();
        assert_eq!(m.kernel_code_kb, s.code >> 10, "{}", run.name);
        assert_eq!(m.rwdata_kb, s.rwdata >> 10, "{}", run.name);
        assert_eq!(m.rodata_kb, s.rodata >> 10, "{}", run.name);
        assert_eq!(m.init_kb, s.init >> 10, "{}", run.name);
        assert_eq!(m.bss_kb, s.bss >> 10, "{}", run.name);
        checked += 1;
    }
    assert!(checked >= 8);
}

#[test]
fn every_logged_line_is_in_the_real_dmesg_in_order() {
    let mut checked = 0;
    for run in runs() {
        let real = run.dmesg();
        if real.is_empty() {
            continue;
        }
        if !real.iter().any(|l| l == "BIOS-provided physical RAM map:") {
            // The ring buffer wrapped during a long workload run.
            continue;
        }
        let l = layout_of(&run);
        let ours = l.dmesg_lines();
        assert!(
            ours.iter().any(|x| x.starts_with("e820: update")),
            "{}",
            run.name
        );
        let mut at = 0;
        for line in ours {
            match real[at..].iter().position(|r| *r == line) {
                Some(i) => at += i + 1,
                None => panic!("{}: '{line}' not in the real dmesg (in order)", run.name),
            }
        }
        checked += 1;
    }
    assert!(checked >= 8, "only {checked} boots had a dmesg dump");
}
