//! Bench fixtures: a one-CPU machine with paging on and page tables built in its own RAM.
//!
//! The benches time the simulator, so the tables must be real entries in simulated RAM that
//! the MMU walks, not shortcuts. The layout is the simplest one that still uses every level
//! of a format: a bump allocator hands out zeroed table frames, directory entries are
//! Linux's `_PAGE_TABLE`, and leaves are `_PAGE_KERNEL`-like with Accessed and Dirty already
//! set, so a walk reads entries but never has to write one back (the steady state of a
//! kernel mapping). Paging is switched on the way Linux's startup does it: EFER, CR4, CR3,
//! then CR0.

#![allow(dead_code)]

use machine::cpu::{Cr0, Cr4, Efer};
use machine::paging::{Format, PageTableEntry, PteFlags};
use machine::{Machine, PhysAddr, PhysMem};

/// Where kernel-style mappings start (`PAGE_OFFSET` of a 3G/1G split).
pub const KERNEL_BASE: u64 = 0xc000_0000;
/// Where user-style (non-global) mappings start.
pub const USER_BASE: u64 = 0x0800_0000;
/// First frame the fixtures map data to (16 MiB, above the table pool).
pub const DATA_BASE: u64 = 0x0100_0000;
/// A frame above 4 GiB, reachable only through PAE entries.
pub const HIGH_FRAME: u64 = 0x1_0000_0000;

/// The top-level table (with PAE, the PDPT at its start).
const ROOT: u64 = 0x10_0000;
/// Table frames come from here up to [`DATA_BASE`].
const TABLE_POOL: u64 = 0x20_0000;
const LOW_RAM: u64 = 128 << 20;
const HIGH_RAM: u64 = 16 << 20;

/// `_PAGE_TABLE`: present, writable, user (the leaf decides the real rights).
const TABLE: PteFlags = PteFlags::PRESENT
    .union(PteFlags::WRITABLE)
    .union(PteFlags::USER)
    .union(PteFlags::ACCESSED);
/// A kernel data page with A and D set.
pub const KERNEL_PAGE: PteFlags = PteFlags::PRESENT
    .union(PteFlags::WRITABLE)
    .union(PteFlags::ACCESSED)
    .union(PteFlags::DIRTY);
/// The same, global (survives CR3 writes with CR4.PGE).
pub const KERNEL_GLOBAL: PteFlags = KERNEL_PAGE.union(PteFlags::GLOBAL);
/// A user data page with A and D set (not global).
pub const USER_PAGE: PteFlags = KERNEL_PAGE.union(PteFlags::USER);

/// A machine whose CPU 0 pages in `format`, plus the allocator that built its tables.
pub struct Fixture {
    pub m: Machine,
    pub format: Format,
    next_table: u64,
}

impl Fixture {
    /// 128 MiB of low RAM and 16 MiB above 4 GiB, CPU 0 paging in `format` (2-level or
    /// PAE) with nothing mapped yet.
    pub fn new(format: Format) -> Fixture {
        assert!(
            format != Format::FourLevel,
            "the fixtures model a 32-bit CPU"
        );
        let mem = PhysMem::new(&[
            (PhysAddr::new(0), LOW_RAM),
            (PhysAddr::new(HIGH_FRAME), HIGH_RAM),
        ])
        .expect("reserve host memory");
        let mut f = Fixture {
            m: Machine::new(mem, 1),
            format,
            next_table: TABLE_POOL,
        };
        f.zero_frame(ROOT);
        if format == Format::Pae {
            // As pgd_prepopulate_pmd: all four PDPTEs point at a page directory up front,
            // because the CPU loads them into registers at CR3-write time.
            for i in 0..4 {
                let pd = f.alloc_table();
                let e =
                    PageTableEntry::new(format.top_level(), PhysAddr::new(pd), PteFlags::PRESENT)
                        .expect("pdpte");
                f.m.mem
                    .write_u64(PhysAddr::new(ROOT + 8 * i), e.raw())
                    .expect("ram");
            }
        }
        let (cr4, efer) = match format {
            Format::TwoLevel => (Cr4::PSE | Cr4::PGE, Efer::empty()),
            _ => (Cr4::PSE | Cr4::PGE | Cr4::PAE, Efer::NXE),
        };
        f.m.write_efer(0, efer).expect("efer");
        f.m.write_cr4(0, cr4).expect("cr4");
        f.m.write_cr3(0, ROOT).expect("cr3");
        f.m.write_cr0(0, Cr0::PE | Cr0::WP | Cr0::PG).expect("cr0");
        f
    }

    /// What CR3 holds.
    pub fn root(&self) -> u64 {
        ROOT
    }

    /// A data frame for this format: above 4 GiB with PAE (highmem's reason to exist),
    /// low RAM otherwise (a 2-level PTE holds only 32 address bits).
    pub fn data_frame(&self) -> u64 {
        match self.format {
            Format::TwoLevel => DATA_BASE,
            _ => HIGH_FRAME,
        }
    }

    fn zero_frame(&mut self, pa: u64) {
        self.m.mem.fill(PhysAddr::new(pa), 0x1000, 0).expect("ram");
    }

    fn alloc_table(&mut self) -> u64 {
        let t = self.next_table;
        assert!(t < DATA_BASE, "table pool exhausted");
        self.next_table += 0x1000;
        self.zero_frame(t);
        t
    }

    fn read_entry(&self, pa: u64) -> u64 {
        if self.format.entry_size() == 4 {
            u64::from(self.m.mem.read_u32(PhysAddr::new(pa)).expect("ram"))
        } else {
            self.m.mem.read_u64(PhysAddr::new(pa)).expect("ram")
        }
    }

    fn write_entry(&mut self, pa: u64, raw: u64) {
        let at = PhysAddr::new(pa);
        if self.format.entry_size() == 4 {
            let raw = u32::try_from(raw).expect("4-byte entry");
            self.m.mem.write_u32(at, raw).expect("ram");
        } else {
            self.m.mem.write_u64(at, raw).expect("ram");
        }
    }

    /// Map the 4 KiB page at `va` to the frame at `pa`, creating missing tables.
    pub fn map_4k(&mut self, va: u64, pa: u64, flags: PteFlags) {
        let levels = self.format.levels();
        let mut table = ROOT;
        for level in &levels[..levels.len() - 1] {
            let at = table + level.entry_offset(va);
            let e = PageTableEntry::from_raw(self.read_entry(at));
            table = if e.is_present() {
                e.table_addr(self.format).as_u64()
            } else {
                let next = self.alloc_table();
                let e = PageTableEntry::new(level, PhysAddr::new(next), TABLE).expect("pde");
                self.write_entry(at, e.raw());
                next
            };
        }
        let pte_level = self.format.pte_level();
        let e = PageTableEntry::new(pte_level, PhysAddr::new(pa), flags).expect("pte");
        self.write_entry(table + pte_level.entry_offset(va), e.raw());
    }

    /// Map `pages` consecutive pages from `va` to consecutive frames from `pa`.
    pub fn map_range(&mut self, va: u64, pa: u64, pages: u64, flags: PteFlags) {
        for i in 0..pages {
            self.map_4k(va + i * 0x1000, pa + i * 0x1000, flags);
        }
    }
}
