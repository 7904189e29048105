//! Dumping the kernel page tables (arch/x86/mm/dump_pagetables.c, mm/ptdump.c).
//!
//! The real kernel walks swapper_pg_dir and folds neighbouring leaf entries with the same
//! level and attributes into one line: that is /sys/kernel/debug/page_tables/kernel, and the
//! same walk counts W+X pages at the end of boot. Here the walk reads the model's own tables
//! as bytes in simulated RAM (physically, as a debugger reading /proc/kcore would: no TLB,
//! no accessed bits), so what it reports is exactly what the simulated MMU would use. Its
//! result has the shape of the reference boots' `kinspect` walk (merged ranges with page
//! size, RW/USR/PWT/PCD/PAT/GLB/NX and physical target, plus every PTE page with its
//! present-entry count), which is how the model's tables are checked against the real ones.

use crate::boot::{BootError, Kernel};
use crate::pgtable::Geometry;
use crate::pgtable_types::{
    PteVal, _PAGE_GLOBAL, _PAGE_NX, _PAGE_PCD, _PAGE_PRESENT, _PAGE_PSE, _PAGE_PWT, _PAGE_RW,
    _PAGE_USER,
};
use core::fmt;
use machine::{BusError, PhysAddr, PhysMem, PAGE_SIZE};

/// The PAT bit of a 4 KiB entry (bit 7) and of a large-page entry (bit 12).
const _PAGE_PAT: PteVal = 1 << 7;
const _PAGE_PAT_LARGE: PteVal = 1 << 12;

/// The top of the 32-bit virtual address space.
const VA_END: u64 = 1 << 32;

/// The level whose entry is the leaf of a mapping, as the dump names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum PtLevel {
    /// A 4 KiB page in a PTE page.
    Pte,
    /// A PAE PMD entry mapping 2 MiB.
    Pmd,
    /// A 2-level PGD entry mapping 4 MiB (the PMD is folded into the PGD).
    Pgd,
}

impl PtLevel {
    /// The name the dump prints.
    pub fn name(self) -> &'static str {
        match self {
            PtLevel::Pte => "pte",
            PtLevel::Pmd => "pmd",
            PtLevel::Pgd => "pgd",
        }
    }

    /// Whether this is a large page.
    pub fn is_large(self) -> bool {
        self != PtLevel::Pte
    }
}

/// The attributes the dump tells apart (`note_page`'s flag columns).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize)]
pub struct PtFlags {
    pub rw: bool,
    pub user: bool,
    pub pwt: bool,
    pub pcd: bool,
    pub pat: bool,
    pub global: bool,
    pub nx: bool,
}

impl PtFlags {
    /// The attributes of a present leaf entry at `level`.
    pub fn from_entry(val: PteVal, level: PtLevel) -> Self {
        let pat = if level.is_large() {
            _PAGE_PAT_LARGE
        } else {
            _PAGE_PAT
        };
        PtFlags {
            rw: val & _PAGE_RW != 0,
            user: val & _PAGE_USER != 0,
            pwt: val & _PAGE_PWT != 0,
            pcd: val & _PAGE_PCD != 0,
            pat: val & pat != 0,
            global: val & _PAGE_GLOBAL != 0,
            nx: val & _PAGE_NX != 0,
        }
    }
}

/// A run of virtual addresses mapped by leaves of one level with the same attributes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PtRange {
    pub start: u64,
    pub end: u64,
    pub level: PtLevel,
    pub flags: PtFlags,
    /// Physical address `start` maps to.
    pub phys: u64,
    /// Whether the whole run maps physically contiguous memory.
    pub linear: bool,
}

/// A PTE page met by the walk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PtTable {
    /// First virtual address the page maps (PMD-aligned).
    pub va: u64,
    /// Its physical address.
    pub phys: u64,
    /// Present entries.
    pub present: u32,
    /// Entries per page (512 with PAE, 1024 without).
    pub entries: u32,
}

/// The result of a walk: the PAE top-level entries, the merged mappings in address order,
/// and the PTE pages in address order.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct PtDump {
    /// PAE only: every PDPT entry (index, value), present or not.
    pub pgd: Vec<(u32, PteVal)>,
    pub ranges: Vec<PtRange>,
    pub tables: Vec<PtTable>,
}

impl PtDump {
    /// The PTE page that maps `va`, if the walk met one.
    pub fn table_at(&self, va: u64) -> Option<&PtTable> {
        self.tables.iter().find(|t| t.va == va)
    }

    /// Pages that are writable and executable (`ptdump_walk_pgd_level_checkwx`).
    pub fn wx_pages(&self) -> u64 {
        self.ranges
            .iter()
            .filter(|r| r.flags.rw && !r.flags.nx)
            .map(|r| (r.end - r.start) / PAGE_SIZE)
            .sum()
    }
}

/// `620K`, `14M`, `1G`: the largest unit that divides the size.
fn size_str(bytes: u64) -> String {
    if bytes.is_multiple_of(1 << 30) {
        format!("{}G", bytes >> 30)
    } else if bytes.is_multiple_of(1 << 20) {
        format!("{}M", bytes >> 20)
    } else {
        format!("{}K", bytes >> 10)
    }
}

impl fmt::Display for PtRange {
    /// One line in the format of the reference walk: `pt START-END SIZE LEVEL FLAGS phys P KIND`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fl = self.flags;
        let col = |on: bool, s: &'static str| if on { s } else { "" };
        write!(
            f,
            "pt {:#010x}-{:#010x} {:>7} {:<4} {:<3} {:<3} {:<3} {:<3} {:<3} {:<3} {:<2} phys {:#011x} {}",
            self.start,
            self.end,
            size_str(self.end - self.start),
            self.level.name(),
            if fl.rw { "RW" } else { "ro" },
            col(fl.user, "USR"),
            col(fl.pwt, "PWT"),
            col(fl.pcd, "PCD"),
            col(fl.pat, "PAT"),
            col(fl.global, "GLB"),
            if fl.nx { "NX" } else { "x" },
            self.phys,
            if self.linear { "linear" } else { "scattered" }
        )
    }
}

impl fmt::Display for PtTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ptable va {:#010x}: pte page phys {:#011x}, {}/{} entries present",
            self.va, self.phys, self.present, self.entries
        )
    }
}

impl fmt::Display for PtDump {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in &self.pgd {
            writeln!(f, "pgd[{i}] = {e:#018x}")?;
        }
        for r in &self.ranges {
            writeln!(f, "{r}")?;
        }
        for t in &self.tables {
            writeln!(f, "{t}")?;
        }
        Ok(())
    }
}

/// Folds leaves into ranges (`note_page`).
struct Folder {
    out: Vec<PtRange>,
    /// Physical address the current range's next page would have if it stays linear.
    next_phys: u64,
}

impl Folder {
    fn leaf(&mut self, va: u64, size: u64, level: PtLevel, flags: PtFlags, phys: u64) {
        if let Some(cur) = self.out.last_mut() {
            if cur.end == va && cur.level == level && cur.flags == flags {
                cur.end = va + size;
                cur.linear &= phys == self.next_phys;
                self.next_phys = phys + size;
                return;
            }
        }
        self.out.push(PtRange {
            start: va,
            end: va + size,
            level,
            flags,
            phys,
            linear: true,
        });
        self.next_phys = phys + size;
    }
}

/// Walk the kernel page tables rooted at `pgd` (physical) over `[start, end)`.
pub fn ptdump_walk_pgd(
    mem: &PhysMem,
    geo: Geometry,
    pgd: u64,
    start: u64,
    end: u64,
) -> Result<PtDump, BusError> {
    let pgd = PhysAddr::new(pgd);
    let end = end.min(VA_END);
    let mut dump = PtDump::default();
    let mut fold = Folder {
        out: Vec::new(),
        next_phys: 0,
    };
    if geo.pae {
        for i in 0..geo.ptrs_per_pgd() {
            dump.pgd.push((i as u32, geo.read(mem, pgd, i)?));
        }
    }
    let pmd_size = geo.pmd_size();
    let mut va = start & geo.pmd_mask();
    while va < end {
        // The PMD entry (the PGD entry itself without PAE) that maps `va`.
        let (table, idx) = if geo.pae {
            let e = geo.read(mem, pgd, geo.pgd_index(va))?;
            if e & _PAGE_PRESENT == 0 {
                va = (va | ((1 << geo.pgdir_shift()) - 1)) + 1;
                continue;
            }
            (geo.entry_table(e), geo.pmd_index(va))
        } else {
            (pgd, geo.pgd_index(va))
        };
        let pmd = geo.read(mem, table, idx)?;
        if pmd & _PAGE_PRESENT == 0 {
            va += pmd_size;
            continue;
        }
        if pmd & _PAGE_PSE != 0 {
            let level = if geo.pae { PtLevel::Pmd } else { PtLevel::Pgd };
            let flags = PtFlags::from_entry(pmd, level);
            fold.leaf(va, pmd_size, level, flags, pmd & geo.large_pfn_mask());
            va += pmd_size;
            continue;
        }
        let pte_page = geo.entry_table(pmd);
        let mut present = 0;
        for i in 0..geo.ptrs_per_pte() {
            let pte = geo.read(mem, pte_page, i)?;
            if pte & _PAGE_PRESENT == 0 {
                continue;
            }
            present += 1;
            let pva = va + i * PAGE_SIZE;
            if pva >= start && pva < end {
                let flags = PtFlags::from_entry(pte, PtLevel::Pte);
                fold.leaf(pva, PAGE_SIZE, PtLevel::Pte, flags, pte & geo.pfn_mask());
            }
        }
        dump.tables.push(PtTable {
            va,
            phys: pte_page.as_u64(),
            present,
            entries: geo.ptrs_per_pte() as u32,
        });
        va += pmd_size;
    }
    dump.ranges = fold.out;
    Ok(dump)
}

impl Kernel {
    /// The kernel half of swapper_pg_dir, from PAGE_OFFSET to the top of the address space
    /// (`ptdump_walk_pgd_level(NULL, &init_mm)` restricted to kernel addresses).
    pub fn ptdump(&self) -> Result<PtDump, BootError> {
        Ok(ptdump_walk_pgd(
            &self.machine.mem,
            self.geo,
            self.swapper_pg_dir,
            self.config.page_offset(),
            VA_END,
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pgtable_types::_KERNPG_TABLE;

    const KERNEL: PteVal = _PAGE_PRESENT | _PAGE_RW | _PAGE_GLOBAL;

    fn mem() -> PhysMem {
        PhysMem::new(&[(PhysAddr::new(0), 1 << 20)]).unwrap()
    }

    /// 2-level: a 4 MiB page, then a PTE page with a linear run, a read-only page, a hole
    /// and two scattered pages.
    #[test]
    fn two_level_merges_by_level_flags_and_contiguity() {
        let g = Geometry::new(false);
        let mut m = mem();
        let (pgd, pt) = (PhysAddr::new(0x1000), PhysAddr::new(0x2000));
        g.write(&mut m, pgd, 768, 0x0040_0000 | KERNEL | _PAGE_PSE)
            .unwrap();
        g.write(&mut m, pgd, 769, pt.as_u64() | _KERNPG_TABLE)
            .unwrap();
        for i in 0..3 {
            g.write(&mut m, pt, i, (0x80_0000 + i * PAGE_SIZE) | KERNEL)
                .unwrap();
        }
        g.write(&mut m, pt, 3, 0x80_3000 | _PAGE_PRESENT | _PAGE_GLOBAL)
            .unwrap();
        g.write(&mut m, pt, 5, 0x90_0000 | KERNEL).unwrap();
        g.write(&mut m, pt, 6, 0x70_0000 | KERNEL).unwrap();
        let d = ptdump_walk_pgd(&m, g, pgd.as_u64(), 0xc000_0000, VA_END).unwrap();
        assert!(d.pgd.is_empty());
        let got: Vec<(u64, u64, PtLevel, bool, bool, u64)> = d
            .ranges
            .iter()
            .map(|r| (r.start, r.end, r.level, r.flags.rw, r.linear, r.phys))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    0xc000_0000,
                    0xc040_0000,
                    PtLevel::Pgd,
                    true,
                    true,
                    0x40_0000
                ),
                (
                    0xc040_0000,
                    0xc040_3000,
                    PtLevel::Pte,
                    true,
                    true,
                    0x80_0000
                ),
                (
                    0xc040_3000,
                    0xc040_4000,
                    PtLevel::Pte,
                    false,
                    true,
                    0x80_3000
                ),
                (
                    0xc040_5000,
                    0xc040_7000,
                    PtLevel::Pte,
                    true,
                    false,
                    0x90_0000
                ),
            ]
        );
        assert!(d.ranges.iter().all(|r| r.flags.global && !r.flags.nx));
        assert_eq!(
            d.tables,
            vec![PtTable {
                va: 0xc040_0000,
                phys: 0x2000,
                present: 6,
                entries: 1024
            }]
        );
        // Every present page is writable and executable except the read-only one.
        assert_eq!(d.wx_pages(), 1024 + 5);
    }

    /// PAE: the PDPT is listed, NX and the large-page PAT bit are read from their own bits,
    /// and a PTE page with nothing present is still reported.
    #[test]
    fn pae_levels_nx_pat_and_empty_tables() {
        let g = Geometry::new(true);
        let mut m = mem();
        let (pdpt, pmd, pt) = (
            PhysAddr::new(0x1000),
            PhysAddr::new(0x2000),
            PhysAddr::new(0x3000),
        );
        g.write(&mut m, pdpt, 3, pmd.as_u64() | _PAGE_PRESENT)
            .unwrap();
        g.write(
            &mut m,
            pmd,
            0,
            0x20_0000 | KERNEL | _PAGE_PSE | _PAGE_NX | _PAGE_PAT_LARGE,
        )
        .unwrap();
        g.write(&mut m, pmd, 1, 0x40_0000 | KERNEL | _PAGE_PSE)
            .unwrap();
        g.write(&mut m, pmd, 511, pt.as_u64() | _KERNPG_TABLE)
            .unwrap();
        let d = ptdump_walk_pgd(&m, g, pdpt.as_u64(), 0xc000_0000, VA_END).unwrap();
        assert_eq!(d.pgd.len(), 4);
        assert_eq!(d.pgd[3], (3, pmd.as_u64() | _PAGE_PRESENT));
        assert_eq!(d.ranges.len(), 2);
        let (a, b) = (d.ranges[0], d.ranges[1]);
        assert_eq!(
            (a.level, a.flags.nx, a.flags.pat),
            (PtLevel::Pmd, true, true)
        );
        assert_eq!(
            (b.start, b.flags.nx, b.flags.pat),
            (0xc020_0000, false, false)
        );
        assert_eq!(a.phys, 0x20_0000);
        assert_eq!(d.table_at(0xffe0_0000).map(|t| t.present), Some(0));
        assert_eq!(d.wx_pages(), 512);
        assert_eq!(
            a.to_string().split_whitespace().collect::<Vec<_>>(),
            [
                "pt",
                "0xc0000000-0xc0200000",
                "2M",
                "pmd",
                "RW",
                "PAT",
                "GLB",
                "NX",
                "phys",
                "0x000200000",
                "linear"
            ]
        );
    }

    #[test]
    fn walk_is_clipped_to_the_range() {
        let g = Geometry::new(false);
        let mut m = mem();
        let (pgd, pt) = (PhysAddr::new(0x1000), PhysAddr::new(0x2000));
        g.write(&mut m, pgd, 768, pt.as_u64() | _KERNPG_TABLE)
            .unwrap();
        for i in 0..8 {
            g.write(&mut m, pt, i, (i * PAGE_SIZE) | KERNEL).unwrap();
        }
        let d = ptdump_walk_pgd(&m, g, pgd.as_u64(), 0xc000_2000, 0xc000_5000).unwrap();
        assert_eq!(d.ranges.len(), 1);
        assert_eq!(
            (d.ranges[0].start, d.ranges[0].end),
            (0xc000_2000, 0xc000_5000)
        );
        assert_eq!(d.ranges[0].phys, 0x2000);
        assert_eq!(d.tables[0].present, 8);
    }

    #[test]
    fn sizes_print_in_the_largest_unit() {
        assert_eq!(size_str(620 << 10), "620K");
        assert_eq!(size_str(14 << 20), "14M");
        assert_eq!(size_str(1 << 30), "1G");
        assert_eq!(size_str(2040 << 10), "2040K");
    }
}
