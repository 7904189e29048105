//! Test helpers: a minimal page-table builder writing real entries into simulated RAM, and
//! a machine set up with paging on in a chosen format.

#![allow(dead_code)]

use machine::cpu::{CpuFeatures, Cr0, Cr4, Efer};
use machine::machine::Machine;
use machine::paging::{Format, PageSize, PageTableEntry, PageTableLevel, PteFlags};
use machine::{PhysAddr, PhysMem, TlbGeometry};

/// Flags for directory entries (Linux's `_PAGE_TABLE` minus A/D, so the CPU's A updates
/// are observable).
pub const TABLE: PteFlags = PteFlags::PRESENT
    .union(PteFlags::WRITABLE)
    .union(PteFlags::USER);
/// A present, writable kernel page.
pub const KERNEL_RW: PteFlags = PteFlags::PRESENT.union(PteFlags::WRITABLE);

/// Builds page tables in RAM from a bump allocator of frames.
pub struct Tables {
    pub format: Format,
    /// What CR3 should hold.
    pub root: u64,
    next_free: u64,
}

impl Tables {
    /// Tables whose root sits at `root` (a frame; with PAE, the PDPT at its start) and
    /// whose new tables come from frames at and above `free`. With PAE all four PDPTEs get
    /// a page directory up front, as Linux's `pgd_prepopulate_pmd` does.
    pub fn new(mem: &mut PhysMem, format: Format, root: u64, free: u64) -> Tables {
        let mut t = Tables {
            format,
            root,
            next_free: free,
        };
        if format == Format::Pae {
            for i in 0..4 {
                let pd = t.alloc(mem);
                let e =
                    PageTableEntry::new(format.top_level(), PhysAddr::new(pd), PteFlags::PRESENT)
                        .expect("pdpte");
                mem.write_u64(PhysAddr::new(root + 8 * i), e.raw())
                    .expect("ram");
            }
        }
        t
    }

    /// A zeroed frame.
    pub fn alloc(&mut self, mem: &mut PhysMem) -> u64 {
        let f = self.next_free;
        self.next_free += 0x1000;
        mem.fill(PhysAddr::new(f), 0x1000, 0)
            .expect("table frame in RAM");
        f
    }

    fn level_for(&self, size: PageSize) -> &'static PageTableLevel {
        self.format
            .levels()
            .iter()
            .find(|l| match size {
                PageSize::Size4K => l.is_pte_level(),
                _ => l.large_page() == Some(size),
            })
            .expect("format has the page size")
    }

    /// Physical address of the entry translating `va` at `level`, creating missing tables
    /// above it.
    pub fn entry_addr(&mut self, mem: &mut PhysMem, va: u64, level: &PageTableLevel) -> u64 {
        let mut table = self.root;
        for l in self.format.levels() {
            let at = table + l.entry_offset(va);
            if l.depth == level.depth {
                return at;
            }
            let raw = read(mem, self.format, at);
            let e = PageTableEntry::from_raw(raw);
            if !e.is_present() {
                let next = self.alloc(mem);
                let flags = if self.format == Format::Pae && l.depth == 0 {
                    PteFlags::PRESENT
                } else {
                    TABLE
                };
                let e = PageTableEntry::new(
                    self.format.level(l.depth as usize).expect("level"),
                    PhysAddr::new(next),
                    flags,
                )
                .expect("table entry");
                write(mem, self.format, at, e.raw());
                table = next;
            } else {
                table = e.table_addr(self.format).as_u64();
            }
        }
        unreachable!("level {level} is not in format {:?}", self.format)
    }

    /// Map `va` to `pa` with a page of `size`; returns the leaf entry's address.
    pub fn map(
        &mut self,
        mem: &mut PhysMem,
        va: u64,
        pa: u64,
        size: PageSize,
        flags: PteFlags,
    ) -> u64 {
        let level = self.level_for(size);
        let at = self.entry_addr(mem, va, level);
        let flags = if size == PageSize::Size4K {
            flags
        } else {
            flags | PteFlags::PSE
        };
        let e = PageTableEntry::new(level, PhysAddr::new(pa), flags).expect("leaf entry");
        write(mem, self.format, at, e.raw());
        at
    }

    /// The leaf-level (PTE) entry address for `va` of a 4 KiB mapping.
    pub fn pte_addr(&mut self, mem: &mut PhysMem, va: u64) -> u64 {
        let l = self.format.pte_level();
        self.entry_addr(mem, va, l)
    }

    /// The address of the directory entry (the level above the PTEs) that maps `va`.
    pub fn pde_addr(&mut self, mem: &mut PhysMem, va: u64) -> u64 {
        let levels = self.format.levels();
        self.entry_addr(mem, va, &levels[levels.len() - 2])
    }
}

/// Read a raw entry of `format` at `pa`.
pub fn read(mem: &PhysMem, format: Format, pa: u64) -> u64 {
    if format.entry_size() == 4 {
        u64::from(mem.read_u32(PhysAddr::new(pa)).expect("ram"))
    } else {
        mem.read_u64(PhysAddr::new(pa)).expect("ram")
    }
}

/// Write a raw entry of `format` at `pa`.
pub fn write(mem: &mut PhysMem, format: Format, pa: u64, raw: u64) {
    if format.entry_size() == 4 {
        mem.write_u32(PhysAddr::new(pa), raw as u32).expect("ram");
    } else {
        mem.write_u64(PhysAddr::new(pa), raw).expect("ram");
    }
}

/// A machine with 16 MiB of RAM and `ncpus` CPUs, plus tables rooted at 0x10_0000 with
/// new tables from 0x20_0000 (paging still off: call [`enable`]).
pub fn machine(format: Format, ncpus: usize) -> (Machine, Tables) {
    machine_on(TlbGeometry::default(), format, ncpus)
}

/// Both TLB geometries: the hardware one and the never-evicting debug one.
pub const GEOMETRIES: [TlbGeometry; 2] = [TlbGeometry::Core2, TlbGeometry::Unbounded];

/// As [`machine`], with CPUs whose TLB has geometry `tlb`.
pub fn machine_on(tlb: TlbGeometry, format: Format, ncpus: usize) -> (Machine, Tables) {
    let features = if format == Format::FourLevel {
        CpuFeatures::X86_64
    } else {
        CpuFeatures::QEMU32_PSE36_NX
    }
    .with_tlb(tlb);
    let mem = PhysMem::new(&[
        (PhysAddr::new(0), 16 << 20),
        (PhysAddr::new(0x1_0000_0000), 8 << 20),
    ])
    .expect("mmap");
    let mut m = Machine::with_features(mem, ncpus, features);
    let t = Tables::new(&mut m.mem, format, 0x10_0000, 0x20_0000);
    (m, t)
}

/// Turn paging on in `cpu` the way Linux's startup does: CR3, CR4 (PSE, PGE, PAE as the
/// format wants), EFER (NXE, LME for 4-level), then CR0 = PE|WP|PG.
pub fn enable(m: &mut Machine, cpu: usize, t: &Tables) {
    let mut cr4 = Cr4::PSE | Cr4::PGE;
    let mut efer = Efer::empty();
    if t.format != Format::TwoLevel {
        cr4 |= Cr4::PAE;
        efer |= Efer::NXE;
    }
    if t.format == Format::FourLevel {
        efer |= Efer::LME;
    }
    m.write_efer(cpu, efer).expect("efer");
    m.write_cr4(cpu, cr4).expect("cr4");
    m.write_cr3(cpu, t.root).expect("cr3");
    m.write_cr0(cpu, Cr0::PE | Cr0::WP | Cr0::PG).expect("cr0");
}
