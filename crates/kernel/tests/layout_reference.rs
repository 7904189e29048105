//! The layout model against the real kernels: the build constants read from the debug
//! images (`reference/kernel/constants-*.txt`) and the variables and page-table walk the
//! `kinspect` block of each reference boot read from the running kernel.

use kernel::cmdline::CmdLine;
use kernel::config::KernelConfig;
use kernel::fixmap::Fixmap;
use kernel::layout::{setup_layout, Layout};
use machine::e820::E820Map;
use std::collections::HashMap;
use std::path::PathBuf;

fn shared() -> PathBuf {
    std::env::var_os("HIGHMEM_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared")))
}

fn read(path: PathBuf) -> String {
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn parse_num(s: &str) -> Option<u64> {
    let s = s.trim();
    match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

/// `name = value` lines of a constants file, values that are numbers.
fn constants(flavour: &str) -> HashMap<String, u64> {
    read(shared().join(format!("reference/kernel/constants-{flavour}.txt")))
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(" = ")?;
            Some((k.trim().to_string(), parse_num(v)?))
        })
        .collect()
}

fn preset_for(flavour: &str) -> KernelConfig {
    let name = if flavour == "pae" {
        "debian-686-pae"
    } else {
        "debian-686"
    };
    KernelConfig::preset(name).unwrap()
}

#[test]
fn fixmap_enum_matches_the_debug_images() {
    for flavour in ["pae", "nopae"] {
        let c = constants(flavour);
        let cfg = preset_for(flavour);
        let fixmap = Fixmap::new(&cfg, c["__FIXADDR_TOP"]);
        // Every enumerator the kernel has, we have, with the same value...
        let theirs: Vec<(&String, &u64)> = c
            .iter()
            .filter(|(k, _)| k.starts_with("(int)FIX_") || k.starts_with("(int)__end_of"))
            .collect();
        assert!(theirs.len() >= 15, "{flavour}: too few fixmap constants");
        for (k, v) in theirs {
            let name = k.trim_start_matches("(int)");
            assert_eq!(fixmap.index(name), Some(*v), "{flavour}: {name}");
        }
        // ...and no more.
        for (name, v) in &fixmap.indexes {
            assert_eq!(
                c.get(&format!("(int){name}")),
                Some(v),
                "{flavour}: extra {name}"
            );
        }
    }
}

#[test]
fn preset_constants_match_the_debug_images() {
    for flavour in ["pae", "nopae"] {
        let c = constants(flavour);
        let cfg = preset_for(flavour);
        let img = cfg.image;
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
            assert_eq!(c[k], v, "{flavour}: {k}");
        }
        assert_eq!(c["__FIXADDR_TOP"], cfg.fixaddr_top, "{flavour}");
        assert_eq!(c["__VMALLOC_RESERVE"], cfg.vmalloc_reserve, "{flavour}");
        assert_eq!(
            c["sizeof(struct page)"], cfg.sizeof_struct_page,
            "{flavour}"
        );
        assert_eq!(
            c["sizeof(struct cpu_entry_area)"],
            cfg.sizeof_cpu_entry_area
        );
        assert_eq!(c["sizeof(pte_t)"], if cfg.pae { 8 } else { 4 });
        assert_eq!(
            c["sizeof(pkmap_count)/sizeof(pkmap_count[0])"],
            cfg.last_pkmap(),
            "{flavour}: LAST_PKMAP"
        );
    }
}

/// One reference boot: its inputs and its console/kinspect text.
struct Boot {
    name: String,
    ram: u64,
    smp: u32,
    pae: bool,
    append: String,
    text: String,
}

fn boots() -> Vec<Boot> {
    let dir = shared().join("reference");
    let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .collect();
    names.sort();
    let boots: Vec<Boot> = names
        .into_iter()
        .map(|p| {
            let text = read(p.clone());
            let run = text
                .lines()
                .find(|l| l.starts_with("ORACLE-RUN "))
                .expect("ORACLE-RUN");
            let field = |k: &str| {
                run.split_whitespace()
                    .find_map(|w| w.strip_prefix(&format!("{k}=")).map(str::to_string))
                    .unwrap_or_else(|| panic!("{}: no {k}=", p.display()))
            };
            let ram_mib: u64 = field("ram").trim_end_matches('M').parse().unwrap();
            let qemu = text
                .lines()
                .find(|l| l.starts_with("ORACLE-QEMU "))
                .expect("ORACLE-QEMU");
            let append = qemu
                .split("-append \"")
                .nth(1)
                .unwrap()
                .trim_end_matches('"')
                .to_string();
            Boot {
                name: p.file_name().unwrap().to_string_lossy().into_owned(),
                ram: ram_mib << 20,
                smp: field("smp").parse().unwrap(),
                pae: field("kernel") == "vmlinuz-pae",
                append,
                text,
            }
        })
        .collect();
    assert!(
        boots.len() >= 8,
        "reference boots missing in {}",
        dir.display()
    );
    boots
}

fn layout_of(b: &Boot) -> Layout {
    let cfg = preset_for(if b.pae { "pae" } else { "nopae" });
    let e820 = E820Map::qemu_pc(b.ram).unwrap();
    setup_layout(&e820, &cfg, &CmdLine::parse(&b.append).unwrap(), b.smp).unwrap()
}

/// `var NAME @ADDR = VALUE (...)` lines of the kinspect block.
fn kinspect_vars(text: &str) -> HashMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("var ")?;
            let mut it = rest.split_whitespace();
            let name = it.next()?;
            let value = rest.split(" = ").nth(1)?.split_whitespace().next()?;
            Some((name.to_string(), parse_num(value)?))
        })
        .collect()
}

#[test]
fn kernel_variables_match_kinspect() {
    let mut checked = 0;
    for b in boots() {
        let v = kinspect_vars(&b.text);
        if v.is_empty() {
            continue;
        }
        let l = layout_of(&b);
        let n = &b.name;
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
        let initrd = b
            .text
            .lines()
            .find_map(|l| l.split("Allocated new RAMDISK: [mem ").nth(1))
            .and_then(|r| parse_num(r.split('-').next()?))
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
    for b in boots() {
        if !b.text.contains("=====BEGIN kinspect=====") {
            continue;
        }
        let l = layout_of(&b);
        let n = &b.name;
        let lines: Vec<&str> = b.text.lines().collect();
        // kcore's vmalloc segment is VMALLOC_START..VMALLOC_END; its lowmem segment ends
        // at high_memory.
        let load = |paddr: &str| {
            lines
                .iter()
                .find(|x| x.starts_with("kcore LOAD") && x.ends_with(paddr))
                .and_then(|x| x.split_whitespace().nth(3))
                .and_then(|r| r.split_once('-'))
                .map(|(a, b)| (parse_num(a).unwrap(), parse_num(b).unwrap()))
                .unwrap_or_else(|| panic!("{n}: no kcore LOAD for {paddr}"))
        };
        assert_eq!(
            load("paddr 0xffffffff"),
            (l.vmalloc_start.as_u64(), l.vmalloc_end.as_u64()),
            "{n}: vmalloc"
        );
        assert_eq!(
            load("paddr 0x00000000"),
            (l.page_offset.as_u64(), l.high_memory.as_u64()),
            "{n}: lowmem"
        );
        // The page table that pkmap_page_table points to maps PKMAP_BASE.
        let pkmap = lines
            .iter()
            .find(|x| x.contains("<== pkmap_page_table (PKMAP_BASE)"))
            .and_then(|x| x.split_whitespace().nth(2))
            .and_then(|va| parse_num(va.trim_end_matches(':')))
            .unwrap_or_else(|| panic!("{n}: no pkmap page table"));
        assert_eq!(pkmap, l.areas.pkmap_base, "{n}: PKMAP_BASE");
        // Kernel mappings by start address: "pt START-END SIZE pte FLAGS... phys PHYS".
        let pt: HashMap<u64, &str> = lines
            .iter()
            .filter_map(|x| {
                let r = x.strip_prefix("pt ")?;
                Some((parse_num(r.split('-').next()?)?, *x))
            })
            .collect();
        // The CPU entry area: a read-only IDT page at the base, then each CPU's GDT page.
        let idt = pt
            .get(&l.areas.cpu_entry_area_base)
            .unwrap_or_else(|| panic!("{n}: no IDT"));
        assert!(idt.contains(" ro "), "{n}: {idt}");
        let cfg = preset_for(if b.pae { "pae" } else { "nopae" });
        for cpu in 0..l.nr_cpu_ids {
            let gdt = l.areas.cpu_entry_area(cpu, cfg.sizeof_cpu_entry_area);
            assert!(
                pt.contains_key(&gdt),
                "{n}: no CPU entry area for cpu {cpu} at {gdt:#x}"
            );
        }
        // The I/O APIC sits in its fixmap slot.
        let fixmap = &l.areas.fixmap;
        let ioapic = fixmap.fix_to_virt(fixmap.index("FIX_IO_APIC_BASE_0").unwrap());
        let m = pt
            .get(&ioapic)
            .unwrap_or_else(|| panic!("{n}: nothing at {ioapic:#x}"));
        assert!(m.contains("phys 0x0fec00000"), "{n}: {m}");
        checked += 1;
    }
    assert!(checked >= 8, "only {checked} boots had a kinspect block");
}

#[test]
fn memory_line_sizes_come_from_the_image_symbols() {
    let mut checked = 0;
    for b in boots() {
        let cfg = preset_for(if b.pae { "pae" } else { "nopae" });
        let line = b
            .text
            .lines()
            .find(|l| l.contains("] Memory: "))
            .unwrap_or_else(|| panic!("{}: no Memory: line", b.name));
        let field = |what: &str| -> u64 {
            let before = line.split(&format!("K {what}")).next().unwrap();
            before.rsplit([' ', '(']).next().unwrap().parse().unwrap()
        };
        let s = cfg.image.sizes();
        assert_eq!(field("kernel code"), s.code >> 10, "{}", b.name);
        assert_eq!(field("rwdata"), s.rwdata >> 10, "{}", b.name);
        assert_eq!(field("rodata"), s.rodata >> 10, "{}", b.name);
        assert_eq!(field("init"), s.init >> 10, "{}", b.name);
        assert_eq!(field("bss"), s.bss >> 10, "{}", b.name);
        checked += 1;
    }
    assert!(checked >= 8);
}

#[test]
fn every_logged_line_is_in_the_real_dmesg_in_order() {
    let mut checked = 0;
    for b in boots() {
        let Some(dmesg) = b
            .text
            .split("=====BEGIN dmesg=====")
            .nth(1)
            .and_then(|d| d.split("=====END dmesg=====").next())
        else {
            continue;
        };
        let real: Vec<&str> = dmesg
            .lines()
            .filter_map(|l| l.split_once("] ").map(|(_, t)| t))
            .collect();
        if !real.contains(&"BIOS-provided physical RAM map:") {
            // The ring buffer wrapped during a long workload run.
            continue;
        }
        let l = layout_of(&b);
        let ours = l.dmesg_lines();
        assert!(
            ours.iter().any(|x| x.starts_with("e820: update")),
            "{}",
            b.name
        );
        let mut at = 0;
        for line in ours {
            match real[at..].iter().position(|r| *r == line) {
                Some(i) => at += i + 1,
                None => panic!("{}: '{line}' not in the real dmesg (in order)", b.name),
            }
        }
        checked += 1;
    }
    assert!(checked >= 8, "only {checked} boots had a dmesg dump");
}
