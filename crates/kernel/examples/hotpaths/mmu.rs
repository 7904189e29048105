//! The MMU paths: TLB hit, page walks, INVLPG + miss + walk + fill.
//!
//! A bare one-CPU machine with page tables built in its own RAM (a booted kernel maps its
//! low memory with large pages, and these paths are about 4 KiB leaves): `PAGES` kernel
//! pages scattered over a 2 MiB window at 0xc0000000, leaves with A and D set (a walk only
//! reads), mapped to frames above 4 GiB with PAE, at 16 MiB with 2-level paging. The CPU has
//! the hardware TLB geometry (Core 2), and the pages fit in it (at most two per set), so
//! every `tlb-hit` operation hits and successive operations touch different entries.

use machine::cpu::{Cr0, Cr4, Efer};
use machine::paging::{Format, PageTableEntry, PteFlags};
use machine::{Access, Cpu, Machine, PhysAddr, PhysMem, TlbGeometry, VirtAddr};

/// Pages the operations cycle over (a power of two).
const PAGES: u64 = 128;
const KERNEL_BASE: u64 = 0xc000_0000;
const ROOT: u64 = 0x10_0000;
const TABLES: u64 = 0x20_0000;
const LOW_DATA: u64 = 0x100_0000;
const HIGH_DATA: u64 = 0x1_0000_0000;
const DIR: PteFlags = PteFlags::PRESENT
    .union(PteFlags::WRITABLE)
    .union(PteFlags::USER)
    .union(PteFlags::ACCESSED);
const LEAF: PteFlags = PteFlags::PRESENT
    .union(PteFlags::WRITABLE)
    .union(PteFlags::ACCESSED)
    .union(PteFlags::DIRTY)
    .union(PteFlags::GLOBAL);

/// Run `n` operations of `path`; returns a value derived from the results so the
/// optimiser cannot drop the work.
pub fn run(path: &str, n: u64) -> Result<u64, String> {
    let (format, op) = match path {
        "tlb-hit" => (Format::Pae, Op::Hit),
        "tlb-hit-2level" => (Format::TwoLevel, Op::Hit),
        "walk-pae" => (Format::Pae, Op::Walk),
        "walk-2level" => (Format::TwoLevel, Op::Walk),
        "invlpg-walk" => (Format::Pae, Op::InvlpgWalk),
        "invlpg-walk-2level" => (Format::TwoLevel, Op::InvlpgWalk),
        "mmu-loop" => (Format::Pae, Op::Loop),
        _ => return Err(format!("{path}: not an MMU path")),
    };
    let mut m = machine(format)?;
    let pages: [u64; PAGES as usize] = pages().try_into().map_err(|_| "page list".to_string())?;
    for &va in &pages {
        m.translate(0, VirtAddr::new(va), Access::KERNEL_READ)
            .map_err(|e| e.to_string())?;
    }
    let Machine { mem, cpus } = &mut m;
    let cpu = cpus.first_mut().ok_or("no CPU")?;
    let check = match op {
        Op::Hit => hits(cpu, mem, &pages, n),
        Op::Walk => walks(cpu, mem, &pages, n),
        Op::InvlpgWalk => invlpg_walks(cpu, mem, &pages, n),
        Op::Loop => Ok(each(&pages, n, std::hint::black_box)),
    }?;
    let c = cpu.counters();
    eprintln!(
        "{path}: walks {} tlb_hits {} tlb_misses {} evictions {}",
        c.walks, c.tlb_hits, c.tlb_misses, c.tlb_evictions
    );
    Ok(check)
}

enum Op {
    Hit,
    Walk,
    InvlpgWalk,
    /// The loop alone (address selection and the check value): what the others include
    /// besides their operation.
    Loop,
}

/// Apply `op` to `n` addresses cycling over `pages`, summing the results: the loop every
/// path shares (`mmu-loop` measures it alone, with a sum as its operation).
#[inline(always)]
fn each(pages: &[u64; PAGES as usize], n: u64, mut op: impl FnMut(u64) -> u64) -> u64 {
    let mut acc = 0u64;
    let mut left = n;
    while left > 0 {
        let k = left.min(PAGES);
        for &va in &pages[..k as usize] {
            acc = acc.wrapping_add(op(va));
        }
        left -= k;
    }
    acc
}

/// The linear addresses the operations cycle over: pages of the 2 MiB window in a
/// scattered order, a fixed offset inside each.
fn pages() -> Vec<u64> {
    (0..PAGES)
        .map(|i| KERNEL_BASE + ((i * 37) % 512) * 4096 + 0x40)
        .collect()
}

type Pages = [u64; PAGES as usize];

/// The first error of a run, kept out of the loop so that the loop carries no `Result`.
fn first_err(err: &mut Option<String>, e: impl ToString) -> u64 {
    err.get_or_insert_with(|| e.to_string());
    0
}

fn hits(cpu: &mut Cpu, mem: &mut PhysMem, pages: &Pages, n: u64) -> Result<u64, String> {
    let mut err = None;
    let acc = each(pages, n, |va| {
        match cpu.translate(mem, VirtAddr::new(va), Access::KERNEL_READ) {
            Ok(pa) => pa.as_u64(),
            Err(e) => first_err(&mut err, e),
        }
    });
    if let Some(e) = err {
        return Err(e);
    }
    if cpu.counters().walks != PAGES {
        return Err("tlb-hit: a translation missed the TLB".into());
    }
    Ok(acc)
}

fn walks(cpu: &mut Cpu, mem: &mut PhysMem, pages: &Pages, n: u64) -> Result<u64, String> {
    let mode = *cpu.paging_mode().ok_or("paging is off")?;
    let mut err = None;
    let acc = each(pages, n, |lin| {
        match mode.walk_linear(mem, lin, Access::KERNEL_READ) {
            Ok(t) => t.phys.as_u64(),
            Err(e) => first_err(&mut err, e),
        }
    });
    match err {
        Some(e) => Err(e),
        None => Ok(acc),
    }
}

fn invlpg_walks(cpu: &mut Cpu, mem: &mut PhysMem, pages: &Pages, n: u64) -> Result<u64, String> {
    let mut err = None;
    let acc = each(pages, n, |va| {
        let va = VirtAddr::new(va);
        cpu.invlpg(va);
        match cpu.translate(mem, va, Access::KERNEL_READ) {
            Ok(pa) => pa.as_u64(),
            Err(e) => first_err(&mut err, e),
        }
    });
    if let Some(e) = err {
        return Err(e);
    }
    if cpu.counters().walks != PAGES + n {
        return Err("invlpg-walk: a translation did not walk".into());
    }
    Ok(acc)
}

/// 64 MiB of low RAM and 16 MiB above 4 GiB, CPU 0 paging in `format` with a Core 2 TLB
/// and the pages of [`pages`] mapped.
fn machine(format: Format) -> Result<Machine, String> {
    let mem = PhysMem::new(&[
        (PhysAddr::new(0), 64 << 20),
        (PhysAddr::new(HIGH_DATA), 16 << 20),
    ])
    .map_err(|e| e.to_string())?;
    let mut m = Machine::new(mem, 1);
    m.cpus[0].set_tlb_geometry(TlbGeometry::Core2);
    let mut t = Tables {
        format,
        next: TABLES,
    };
    if format == Format::Pae {
        for i in 0..4 {
            let pd = t.alloc(&mut m.mem)?;
            m.mem
                .write_u64(PhysAddr::new(ROOT + 8 * i), pd | 1)
                .map_err(|e| e.to_string())?;
        }
    }
    let data = if format == Format::Pae {
        HIGH_DATA
    } else {
        LOW_DATA
    };
    for (i, va) in pages().into_iter().enumerate() {
        t.map_4k(&mut m.mem, va & !0xfff, data + i as u64 * 4096)?;
    }
    let (cr4, efer) = match format {
        Format::TwoLevel => (Cr4::PSE | Cr4::PGE, Efer::empty()),
        _ => (Cr4::PSE | Cr4::PGE | Cr4::PAE, Efer::NXE),
    };
    let e = |e: machine::CpuError| e.to_string();
    m.write_efer(0, efer).map_err(e)?;
    m.write_cr4(0, cr4).map_err(e)?;
    m.write_cr3(0, ROOT).map_err(e)?;
    m.write_cr0(0, Cr0::PE | Cr0::WP | Cr0::PG).map_err(e)?;
    Ok(m)
}

/// A bump allocator of zeroed table frames.
struct Tables {
    format: Format,
    next: u64,
}

impl Tables {
    fn alloc(&mut self, mem: &mut PhysMem) -> Result<u64, String> {
        let t = self.next;
        self.next += 0x1000;
        mem.fill(PhysAddr::new(t), 0x1000, 0)
            .map_err(|e| e.to_string())?;
        Ok(t)
    }

    fn read(&self, mem: &PhysMem, pa: u64) -> Result<u64, String> {
        let pa = PhysAddr::new(pa);
        let r = if self.format.entry_size() == 4 {
            mem.read_u32(pa).map(u64::from)
        } else {
            mem.read_u64(pa)
        };
        r.map_err(|e| e.to_string())
    }

    fn write(&self, mem: &mut PhysMem, pa: u64, raw: u64) -> Result<(), String> {
        let pa = PhysAddr::new(pa);
        let r = if self.format.entry_size() == 4 {
            mem.write_u32(pa, raw as u32)
        } else {
            mem.write_u64(pa, raw)
        };
        r.map_err(|e| e.to_string())
    }

    /// Map the 4 KiB page at `va` to `pa`, creating missing tables (not the PDPT).
    fn map_4k(&mut self, mem: &mut PhysMem, va: u64, pa: u64) -> Result<(), String> {
        let levels = self.format.levels();
        let mut table = ROOT;
        for level in &levels[..levels.len() - 1] {
            let at = table + level.entry_offset(va);
            let e = PageTableEntry::from_raw(self.read(mem, at)?);
            table = if e.is_present() {
                e.table_addr(self.format).as_u64()
            } else {
                let next = self.alloc(mem)?;
                let e = PageTableEntry::new(level, PhysAddr::new(next), DIR)
                    .map_err(|e| e.to_string())?;
                self.write(mem, at, e.raw())?;
                next
            };
        }
        let pte = self.format.pte_level();
        let e = PageTableEntry::new(pte, PhysAddr::new(pa), LEAF).map_err(|e| e.to_string())?;
        self.write(mem, table + pte.entry_offset(va), e.raw())
    }
}
