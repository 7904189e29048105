//! The `x86_64` variant: a 64-bit kernel on the same QEMU pc machine, modelled only as far
//! as high memory is concerned — there is none.
//!
//! What is modelled (6.1 `arch/x86/mm/init.c` `zone_sizes_init`, `arch/x86/mm/init_64.c`,
//! `mm/page_alloc.c`):
//! - `max_pfn` = the end of the last usable e820 range, and `max_low_pfn = max_pfn`: every
//!   page is in the direct map, so `PageHighMem()` is always false and `kmap()` /
//!   `kmap_local_page()` are `page_address()`;
//! - the zones: ZONE_DMA below 16 MiB (MAX_DMA_PFN), ZONE_DMA32 below 4 GiB (MAX_DMA32_PFN),
//!   ZONE_NORMAL above, each clipped to `max_low_pfn`, printed as the kernel's "Zone ranges:"
//!   block (with `Device empty`, CONFIG_ZONE_DEVICE as in Debian's amd64 kernel), and their
//!   spanned / present pages;
//! - the direct map at PAGE_OFFSET 0xffff888000000000 (4-level paging, no KASLR): 4-level
//!   tables in simulated RAM, 1 GiB / 2 MiB / 4 KiB pages as alignment allows, over the usable
//!   e820 ranges; long mode switched on (EFER.LME, CR4.PAE, CR0.PG) on a CPU with long mode,
//!   and the last page of RAM read back through the MMU;
//! - page tables never need a kmap: [`Kernel64::pte_page_address`] is the direct map for any
//!   page.
//!
//! What is not: the kernel image mapping at __START_KERNEL_map, memblock and its
//! reservations, the buddy allocator, SLUB, vmalloc, per-CPU areas, the fixmap, /proc, the
//! compat (32-bit) syscall layer. The page-table pages come from a bump pool at 48 MiB rather
//! than from `alloc_low_pages`. A 32-bit program under this kernel runs in compat mode with a
//! 4 GiB user address space and its page tables are ordinary lowmem pages: nothing of this is
//! simulated beyond the statement.

use crate::printk::{LogLevel, Printk};
use machine::e820::{E820Map, E820Type};
use machine::{CpuFeatures, Cr0, Cr4, Efer, Machine, PhysAddr, PhysMem, VirtAddr, PAGE_SIZE};

/// `__PAGE_OFFSET_BASE_L4`.
pub const PAGE_OFFSET_64: u64 = 0xffff_8880_0000_0000;
/// `MAX_DMA_PFN` (16 MiB).
pub const MAX_DMA_PFN: u64 = (16 << 20) >> 12;
/// `MAX_DMA32_PFN` (4 GiB).
pub const MAX_DMA32_PFN: u64 = (1 << 32) >> 12;
/// Where the model takes its page-table pages (see the module doc).
const PGT_POOL: u64 = 48 << 20;
/// The smallest machine the 64-bit model boots.
pub const MIN_RAM_64: u64 = 64 << 20;

/// One zone of the 64-bit kernel.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Zone64 {
    pub name: &'static str,
    pub start_pfn: u64,
    pub end_pfn: u64,
    pub spanned: u64,
    pub present: u64,
}

/// The booted 64-bit model.
#[derive(Debug)]
pub struct Kernel64 {
    pub machine: Machine,
    pub log: Printk,
    pub max_pfn: u64,
    pub max_low_pfn: u64,
    pub zones: Vec<Zone64>,
    pub pml4: u64,
    /// Page-table pages used by the direct map.
    pub pgt_pages: u64,
}

/// Why the 64-bit model did not boot.
#[derive(Debug, thiserror::Error)]
pub enum Boot64Error {
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Bug(String),
}

fn bug(e: impl std::fmt::Display) -> Boot64Error {
    Boot64Error::Bug(format!("BUG: {e}"))
}

const P: u64 = 1;
const RW: u64 = 2;
const PS: u64 = 0x80;
const G: u64 = 0x100;
const NX: u64 = 1 << 63;
const TABLE: u64 = 0x63; // _KERNPG_TABLE: P|RW|A|D

struct Pool {
    next: u64,
    used: u64,
}

impl Pool {
    fn alloc(&mut self, mem: &mut PhysMem) -> Result<u64, Boot64Error> {
        let pa = self.next;
        self.next += PAGE_SIZE;
        self.used += 1;
        for i in 0..512 {
            mem.write_u64(PhysAddr::new(pa + i * 8), 0).map_err(bug)?;
        }
        Ok(pa)
    }
}

/// The entry of `table[idx]`, allocating the next-level table if empty.
fn next_table(
    mem: &mut PhysMem,
    pool: &mut Pool,
    table: u64,
    idx: u64,
) -> Result<u64, Boot64Error> {
    let at = PhysAddr::new(table + idx * 8);
    let e = mem.read_u64(at).map_err(bug)?;
    if e & P != 0 {
        return Ok(e & 0x000f_ffff_ffff_f000);
    }
    let t = pool.alloc(mem)?;
    mem.write_u64(at, t | TABLE).map_err(bug)?;
    Ok(t)
}

/// Map `[start, end)` of physical memory at PAGE_OFFSET with the largest pages alignment
/// allows (kernel_physical_mapping_init with 1 GiB and 2 MiB pages).
fn map_range(
    mem: &mut PhysMem,
    pool: &mut Pool,
    pml4: u64,
    start: u64,
    end: u64,
) -> Result<(), Boot64Error> {
    let prot = P | RW | G | NX | 0x60; // __PAGE_KERNEL (A|D)
    let mut pa = start;
    while pa < end {
        let va = PAGE_OFFSET_64 + pa;
        let i4 = (va >> 39) & 511;
        let i3 = (va >> 30) & 511;
        let i2 = (va >> 21) & 511;
        let i1 = (va >> 12) & 511;
        let pdpt = next_table(mem, pool, pml4, i4)?;
        if pa.is_multiple_of(1 << 30) && end - pa >= 1 << 30 {
            mem.write_u64(PhysAddr::new(pdpt + i3 * 8), pa | prot | PS)
                .map_err(bug)?;
            pa += 1 << 30;
            continue;
        }
        let pd = next_table(mem, pool, pdpt, i3)?;
        if pa.is_multiple_of(2 << 20) && end - pa >= 2 << 20 {
            mem.write_u64(PhysAddr::new(pd + i2 * 8), pa | prot | PS)
                .map_err(bug)?;
            pa += 2 << 20;
            continue;
        }
        let pt = next_table(mem, pool, pd, i2)?;
        mem.write_u64(PhysAddr::new(pt + i1 * 8), pa | prot)
            .map_err(bug)?;
        pa += PAGE_SIZE;
    }
    Ok(())
}

fn fmt_range(start_pfn: u64, end_pfn: u64) -> String {
    format!(
        "[mem {:#018x}-{:#018x}]",
        start_pfn << 12,
        (end_pfn << 12) - 1
    )
}

/// Boot the 64-bit model on a QEMU pc with `ram` bytes and `cpus` CPUs.
pub fn boot_x86_64(ram: u64, cpus: u32) -> Result<Kernel64, Boot64Error> {
    if ram < MIN_RAM_64 {
        return Err(Boot64Error::Config(format!(
            "the x86_64 model needs at least {} MiB of RAM",
            MIN_RAM_64 >> 20
        )));
    }
    let e820 = E820Map::qemu_pc(ram).map_err(|e| Boot64Error::Config(e.to_string()))?;
    let usable: Vec<(u64, u64)> = e820
        .entries()
        .iter()
        .filter(|e| e.kind == E820Type::Usable)
        .map(|e| {
            // setup_arch's trim of the first page: e820 page 0 becomes reserved.
            let s = e.addr.as_u64().div_ceil(PAGE_SIZE).max(1);
            let end = (e.addr.as_u64() + e.size) / PAGE_SIZE;
            (s, end)
        })
        .filter(|(s, e)| s < e)
        .collect();
    let max_pfn = usable.iter().map(|r| r.1).max().unwrap_or(0);
    let max_low_pfn = max_pfn;
    let mem = PhysMem::new(&e820.ram_banks())
        .map_err(|e| Boot64Error::Config(format!("cannot reserve host memory for the RAM: {e}")))?;
    let mut machine = Machine::with_features(mem, cpus.max(1) as usize, CpuFeatures::X86_64);
    // The 64-bit direct map covers all of RAM: the window ends at max_pfn.
    machine.mem.set_window_end(PhysAddr::new(max_low_pfn << 12));
    let mut log = Printk::new();
    log.info("Linux version 6.1.0-50-amd64 (highmem simulation of x86_64)");
    for e in e820.entries() {
        log.info(format!(
            "BIOS-e820: [mem {:#018x}-{:#018x}] {}",
            e.addr.as_u64(),
            e.addr.as_u64() + e.size - 1,
            match e.kind {
                E820Type::Usable => "usable",
                E820Type::Reserved => "reserved",
                E820Type::Acpi => "ACPI data",
                E820Type::Nvs => "ACPI NVS",
                _ => "unusable",
            }
        ));
    }
    log.info(format!(
        "last_pfn = {max_pfn:#x} max_arch_pfn = 0x400000000"
    ));
    // The direct map.
    let mut pool = Pool {
        next: PGT_POOL,
        used: 0,
    };
    let pml4 = pool.alloc(&mut machine.mem)?;
    for &(s, e) in &usable {
        map_range(&mut machine.mem, &mut pool, pml4, s << 12, e << 12)?;
    }
    // Long mode: PAE + PGE, EFER.LME|NXE, CR3, paging on.
    machine
        .write_cr4(0, Cr4::PAE | Cr4::PGE | Cr4::PSE)
        .map_err(bug)?;
    machine.write_efer(0, Efer::LME | Efer::NXE).map_err(bug)?;
    machine.write_cr3(0, pml4).map_err(bug)?;
    machine
        .write_cr0(
            0,
            Cr0::PE | Cr0::MP | Cr0::ET | Cr0::NE | Cr0::WP | Cr0::AM | Cr0::PG,
        )
        .map_err(bug)?;
    // Every page of RAM is reachable through the direct map: check the last one.
    let last = (max_pfn - 1) << 12;
    machine
        .mem
        .write_u64(PhysAddr::new(last), 0x6836_345f_3634)
        .map_err(bug)?;
    let got = machine
        .read_virt_u64(0, VirtAddr::new(PAGE_OFFSET_64 + last))
        .map_err(bug)?;
    if got != 0x6836_345f_3634 {
        return Err(Boot64Error::Bug(format!(
            "BUG: direct map of {last:#x} reads {got:#x}"
        )));
    }
    // zone_sizes_init.
    let limits = [
        ("DMA", 1u64.min(max_low_pfn), MAX_DMA_PFN.min(max_low_pfn)),
        (
            "DMA32",
            MAX_DMA_PFN.min(max_low_pfn),
            MAX_DMA32_PFN.min(max_low_pfn),
        ),
        ("Normal", MAX_DMA32_PFN.min(max_low_pfn), max_low_pfn),
    ];
    log.info("Zone ranges:");
    let mut zones = Vec::new();
    for (name, lo, hi) in limits {
        // The DMA zone starts at the first usable page (pfn 1 on a pc).
        let lo = if name == "DMA" {
            usable.first().map_or(lo, |r| r.0.max(lo))
        } else {
            lo
        };
        if lo >= hi {
            log.info(format!("  {name:<8} empty"));
            continue;
        }
        log.info(format!("  {name:<8} {}", fmt_range(lo, hi)));
        let present = usable
            .iter()
            .map(|&(s, e)| e.min(hi).saturating_sub(s.max(lo)))
            .sum();
        zones.push(Zone64 {
            name,
            start_pfn: lo,
            end_pfn: hi,
            spanned: hi - lo,
            present,
        });
    }
    log.info("  Device   empty");
    log.info("Movable zone start for each node");
    log.info("Early memory node ranges");
    for &(s, e) in &usable {
        log.info(format!("  node   0: {}", fmt_range(s, e)));
    }
    log.info(format!(
        "Initmem setup node 0 {}",
        fmt_range(usable.first().map_or(0, |r| r.0), max_pfn)
    ));
    log.log(
        LogLevel::Info,
        format!(
            "direct map: {} MiB at {PAGE_OFFSET_64:#x}, {} page-table pages; no HighMem, kmap() is page_address()",
            (max_pfn << 12) >> 20,
            pool.used
        ),
    );
    Ok(Kernel64 {
        machine,
        log,
        max_pfn,
        max_low_pfn,
        zones,
        pml4,
        pgt_pages: pool.used,
    })
}

impl Kernel64 {
    /// `page_address()` — and `kmap()`, `kmap_local_page()`: always the direct map.
    pub fn page_address(&self, pfn: u64) -> Option<u64> {
        (pfn < self.max_low_pfn).then(|| PAGE_OFFSET_64 + (pfn << 12))
    }

    /// `PageHighMem()`: never.
    pub fn page_high_mem(&self, _pfn: u64) -> bool {
        false
    }

    /// Where a page-table page is read: the direct map, whatever page it is (no
    /// pte_offset_map kmap on 64-bit).
    pub fn pte_page_address(&self, pfn: u64) -> Option<u64> {
        self.page_address(pfn)
    }

    /// Read a u64 at a kernel virtual address through the MMU.
    pub fn read_virt_u64(&mut self, va: u64) -> Result<u64, machine::AccessError> {
        self.machine.read_virt_u64(0, VirtAddr::new(va))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zones_of_8g() {
        let k = boot_x86_64(8 << 30, 1).unwrap();
        let names: Vec<_> = k.zones.iter().map(|z| z.name).collect();
        assert_eq!(names, ["DMA", "DMA32", "Normal"]);
        assert_eq!(k.zones[1].end_pfn, MAX_DMA32_PFN);
        assert_eq!(k.zones[2].start_pfn, MAX_DMA32_PFN);
        // QEMU puts 3 GiB below the 1 GiB PCI hole and 5 GiB above 4 GiB.
        assert_eq!(k.max_pfn, (8u64 << 30 >> 12) + (1 << 18));
        let total: u64 = k.zones.iter().map(|z| z.present).sum();
        assert!(total > (8u64 << 30 >> 12) - 1024, "{total}");
        assert!(k.log.console().any(|l| l == "  Device   empty"));
    }

    #[test]
    fn small_machine_has_no_normal_zone_and_every_page_is_mapped() {
        let mut k = boot_x86_64(2 << 30, 1).unwrap();
        assert_eq!(k.zones.len(), 2);
        assert!(k.log.console().any(|l| l == "  Normal   empty"));
        for pfn in [1, 0x1000, k.max_pfn - 1] {
            let va = k.page_address(pfn).unwrap();
            k.read_virt_u64(va).unwrap();
            assert!(!k.page_high_mem(pfn));
        }
    }
}
