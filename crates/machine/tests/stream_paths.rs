//! The fault stream's entry points against the CPU's own path: `translate_unmapped` (with
//! its quick not-present fault) and `translate_refault` (the quick miss that scans the set
//! without the noted slot), and `Cpu::invlpg_noted`, must leave exactly the state
//! `translate` and `invlpg` leave, whatever the page's state: absent PTE or PDE, a
//! directory entry whose A bit the walk must set, present with or without A/D, cached,
//! stale after an unmap without INVLPG, invalidated, dropped by a CR3 write, inside the
//! span of a large page, in full sets of the hardware geometry. Three identical machines
//! run the same seeded sequence, one through each entry point, and are compared after
//! every step (result, CR2, counters, the TLB's view of the page and its size, the
//! page-table entries in RAM) and at the end (the whole TLB, replacement state included).

mod common;

use common::{enable, machine_on, read, write, Tables, GEOMETRIES, KERNEL_RW};
use machine::machine::Machine;
use machine::mmu::Access;
use machine::paging::{Format, PageSize, PteFlags};
use machine::VirtAddr;

/// Pages the sequence works on: 2 MiB of user pages (their page tables exist, their
/// directory entries without A at first), so that sets of the 64-set array fill up.
const POOL: u64 = 512;
const USER: u64 = 0x0800_0000;
/// A region whose directory entry is never created: the walk stops at the PDE.
const NO_PDE: u64 = 0x4000_0000;
/// A large kernel page, so that the large-page span is not empty.
const LARGE: u64 = 0xc000_0000;

const ACCESSES: [Access; 4] = [
    Access::USER_READ,
    Access::USER_WRITE,
    Access::KERNEL_READ,
    Access::KERNEL_WRITE,
];

fn setup(geometry: machine::TlbGeometry, format: Format) -> (Machine, Tables, Vec<u64>) {
    let (mut m, mut t) = machine_on(geometry, format, 1);
    let ptes = (0..POOL)
        .map(|i| t.pte_addr(&mut m.mem, USER + i * 4096))
        .collect();
    let large = if format == Format::TwoLevel {
        PageSize::Size4M
    } else {
        PageSize::Size2M
    };
    t.map(&mut m.mem, LARGE, 0x40_0000, large, KERNEL_RW);
    enable(&mut m, 0, &t);
    // Make the large page's span non-empty.
    m.translate(0, VirtAddr::new(LARGE), Access::KERNEL_READ)
        .expect("large page");
    (m, t, ptes)
}

/// A small deterministic generator (xorshift64).
struct Rng(u64);

impl Rng {
    fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 16) % n
    }
}

fn same_state(a: &Machine, b: &Machine, ptes: &[u64], format: Format, va: u64, step: usize) {
    let (ca, cb) = (&a.cpus[0], &b.cpus[0]);
    assert_eq!(ca.counters(), cb.counters(), "counters, step {step}");
    assert_eq!(ca.regs(), cb.regs(), "registers, step {step}");
    let v = VirtAddr::new(va);
    assert_eq!(ca.tlb_lookup(v), cb.tlb_lookup(v), "TLB entry, step {step}");
    assert_eq!(ca.tlb().len(), cb.tlb().len(), "TLB size, step {step}");
    assert_eq!(ca.tlb().evictions(), cb.tlb().evictions(), "step {step}");
    for &at in ptes {
        assert_eq!(read(&a.mem, format, at), read(&b.mem, format, at), "PTE");
    }
}

/// A TLB's state as it prints, without the fast tags of the 4 KiB array's slots, which are
/// never read (the front table, whose tags stay, holds those) and which the quick miss into
/// a full set leaves as they were, where the full path's fill rewrites them.
fn tlb_state(s: &str) -> String {
    let Some(large) = s.find("}, Class {") else {
        return s.to_string();
    };
    let (small, rest) = s.split_at(large);
    let mut parts = small.split("tags: [");
    // The front table's tags, first, stay.
    let mut out = parts.next().unwrap_or_default().to_string();
    out.push_str("tags: [");
    out.push_str(parts.next().unwrap_or_default());
    for p in parts {
        out.push_str(p.split_once("], ").map_or(p, |(_, after)| after));
    }
    out + rest
}

#[test]
fn translate_unmapped_leaves_the_state_translate_leaves() {
    for geometry in GEOMETRIES {
        for format in [Format::Pae, Format::TwoLevel, Format::FourLevel] {
            let (mut a, mut t, ptes) = setup(geometry, format);
            let (mut b, _, _) = setup(geometry, format);
            let (mut c, _, _) = setup(geometry, format);
            // The pool's directory entry (it exists: no allocation), for its A bit.
            let levels = format.levels();
            let pde = t.entry_addr(&mut a.mem, USER, &levels[levels.len() - 2]);
            let watched: Vec<u64> = ptes.iter().copied().chain([pde]).collect();
            let mut rng = Rng(0x1234_5678_9abc_def1);
            let mut not_present = 0;
            let mut last_invlpg = USER;
            for step in 0..20_000 {
                let i = rng.next(POOL);
                let va = USER + i * 4096 + rng.next(4096);
                match rng.next(10) {
                    // Map (A and D in every combination, user or not, writable or not).
                    0..=2 => {
                        let mut f = PteFlags::PRESENT;
                        for (bit, flag) in [
                            (1, PteFlags::WRITABLE),
                            (2, PteFlags::USER),
                            (4, PteFlags::ACCESSED),
                            (8, PteFlags::DIRTY),
                        ] {
                            if rng.next(16) & bit != 0 {
                                f |= flag;
                            }
                        }
                        let raw = (0x80_0000 + i * 4096) | f.bits();
                        for m in [&mut a, &mut b, &mut c] {
                            write(&mut m.mem, format, ptes[i as usize], raw);
                        }
                    }
                    // Unmap without INVLPG: a cached entry goes stale.
                    3 => {
                        for m in [&mut a, &mut b, &mut c] {
                            write(&mut m.mem, format, ptes[i as usize], 0);
                        }
                    }
                    // INVLPG, half the time of the page of the last one (as a kmap slot's).
                    4 => {
                        if rng.next(2) == 0 {
                            last_invlpg = va;
                        }
                        let va = last_invlpg;
                        a.invlpg(0, VirtAddr::new(va)).expect("cpu");
                        for m in [&mut b, &mut c] {
                            m.cpus[0].invlpg_noted(VirtAddr::new(va));
                        }
                    }
                    5 if rng.next(20) == 0 => {
                        let cr3 = a.cpus[0].regs().cr3;
                        for m in [&mut a, &mut b, &mut c] {
                            m.write_cr3(0, cr3).expect("cr3");
                        }
                    }
                    _ => {
                        let va = match rng.next(20) {
                            0 => NO_PDE + rng.next(1 << 20),
                            1 => LARGE + rng.next(1 << 21),
                            // The page of the last INVLPG, refilled between two of them.
                            2..=4 => last_invlpg,
                            _ => va,
                        };
                        let access = ACCESSES[rng.next(4) as usize];
                        let v = VirtAddr::new(va);
                        let ra = a.translate(0, v, access);
                        let rb = b.translate_unmapped(0, v, access);
                        let rc = c.translate_refault(0, v, access);
                        assert_eq!(ra, rb, "result of {access:?} at {va:#x}, step {step}");
                        assert_eq!(ra, rc, "retry's {access:?} at {va:#x}, step {step}");
                        if let Some(f) = ra.err().and_then(|e| e.page_fault()) {
                            not_present += usize::from(f.error_code.bits() & 1 == 0);
                        }
                        same_state(&a, &b, &watched, format, va, step);
                        same_state(&a, &c, &watched, format, va, step);
                    }
                }
            }
            let tlb = |m: &Machine| tlb_state(&format!("{:?}", m.cpus[0].tlb()));
            assert_eq!(tlb(&a), tlb(&b), "{geometry:?} {format:?}: TLB");
            assert_eq!(tlb(&a), tlb(&c), "{geometry:?} {format:?}: TLB");
            assert!(not_present > 1000, "{geometry:?} {format:?}: {not_present}");
        }
    }
}
