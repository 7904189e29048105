//! /proc/vmallocinfo (mm/vmalloc.c `s_show`, 6.1).
//!
//! One line per busy area in address order: `0x%pK-0x%pK %7ld` (start, end including the
//! guard page, size including it), then ` %pS` of the caller, ` pages=%d`, ` phys=%pa`, and
//! the flags ` ioremap`, ` vmalloc`, ` vmap`, ` user`, ` dma-coherent`, ` vpages`; areas
//! without a vm_struct print ` vm_map_ram`. After the last busy area every lazily freed
//! area prints `… unpurged vm_area`. Addresses print as a privileged reader sees them
//! (real values, 8 hex digits); `%pa` has 16 digits on PAE, 8 without. A NUMA kernel
//! (amd64's) ends an area that owns pages with its pages per node (`show_numa_info`:
//! ` N0=…`, one node here).

use std::fmt::Write;

/// One busy area.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub enum VmallocinfoArea {
    Vm {
        addr: u64,
        size: u64,
        caller: Option<String>,
        nr_pages: u64,
        phys_addr: u64,
        flags: u32,
        vpages: bool,
    },
    VmMapRam {
        start: u64,
        end: u64,
    },
}

/// What /proc/vmallocinfo prints.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct VmallocinfoSnapshot {
    /// phys_addr_t is 64-bit (PAE).
    pub pae: bool,
    /// CONFIG_NUMA (amd64): the ` N0=` counts.
    #[serde(skip)]
    pub numa: bool,
    pub areas: Vec<VmallocinfoArea>,
    /// Lazily freed ranges, lowest first.
    pub unpurged: Vec<(u64, u64)>,
}

/// The text of /proc/vmallocinfo.
pub fn format_vmallocinfo(s: &VmallocinfoSnapshot) -> String {
    use crate::vmalloc::{VM_ALLOC, VM_DMA_COHERENT, VM_IOREMAP, VM_MAP, VM_USERMAP};
    let mut o = String::new();
    for a in &s.areas {
        match a {
            VmallocinfoArea::VmMapRam { start, end } => {
                let _ = writeln!(o, "0x{start:08x}-0x{end:08x} {:7} vm_map_ram", end - start);
            }
            VmallocinfoArea::Vm {
                addr,
                size,
                caller,
                nr_pages,
                phys_addr,
                flags,
                vpages,
            } => {
                let _ = write!(o, "0x{addr:08x}-0x{:08x} {size:7}", addr + size);
                if let Some(c) = caller {
                    let _ = write!(o, " {c}");
                }
                if *nr_pages != 0 {
                    let _ = write!(o, " pages={nr_pages}");
                }
                if *phys_addr != 0 {
                    if s.pae {
                        let _ = write!(o, " phys=0x{phys_addr:016x}");
                    } else {
                        let _ = write!(o, " phys=0x{phys_addr:08x}");
                    }
                }
                for (bit, name) in [
                    (VM_IOREMAP, " ioremap"),
                    (VM_ALLOC, " vmalloc"),
                    (VM_MAP, " vmap"),
                    (VM_USERMAP, " user"),
                    (VM_DMA_COHERENT, " dma-coherent"),
                ] {
                    if flags & bit != 0 {
                        o.push_str(name);
                    }
                }
                if *vpages {
                    o.push_str(" vpages");
                }
                if s.numa && *nr_pages != 0 {
                    let _ = write!(o, " N0={nr_pages}");
                }
                o.push('\n');
            }
        }
    }
    if !s.areas.is_empty() {
        for (start, end) in &s.unpurged {
            let _ = writeln!(
                o,
                "0x{start:08x}-0x{end:08x} {:7} unpurged vm_area",
                end - start
            );
        }
    }
    o
}

/// The snapshot of a booted kernel.
pub fn vmallocinfo(k: &crate::Kernel) -> VmallocinfoSnapshot {
    let areas = k
        .vmap
        .busy
        .values()
        .map(|a| match &a.vm {
            None => VmallocinfoArea::VmMapRam {
                start: a.va_start,
                end: a.va_end,
            },
            Some(vm) => VmallocinfoArea::Vm {
                addr: vm.addr,
                size: vm.size,
                caller: Some(vm.caller.clone()),
                nr_pages: vm.nr_pages(),
                phys_addr: vm.phys_addr,
                flags: vm.flags,
                vpages: vm.pages_area.is_some(),
            },
        })
        .collect();
    VmallocinfoSnapshot {
        pae: k.config.pae,
        numa: k.config.arch == crate::config::Arch::X86_64,
        areas,
        unpurged: k.vmap.space.purge_blocks().collect(),
    }
}
