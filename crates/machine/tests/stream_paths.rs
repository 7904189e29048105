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
//!
//! The kernel's slot step (`Cpu::slot_read_invlpg` / `slot_write_invlpg`: a kmap slot's
//! map, access and unmap with its INVLPG as one step) is compared the same way with the
//! three steps taken one by one, between user accesses that evict, CR3 writes, INVLPGs
//! that move the note, a slot left stale, directory entries without A, and slot PTEs
//! without A, D or W or pointing past RAM.

mod common;

use common::{enable, machine_on, read, write, Tables, GEOMETRIES, KERNEL_RW};
use machine::machine::Machine;
use machine::mmu::Access;
use machine::paging::{Format, PageSize, PteFlags};
use machine::{Again, Cpu, PhysMem, SlotSession, TlbGeometry, VirtAddr};

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

#[test]
fn translate_unmapped_leaves_the_state_translate_leaves() {
    for geometry in GEOMETRIES {
        for format in [Format::Pae, Format::TwoLevel, Format::FourLevel] {
            let (mut a, mut t, ptes) = setup(geometry, format);
            let (mut b, _, _) = setup(geometry, format);
            let (mut c, _, _) = setup(geometry, format);
            // The pool's directory entry (it exists: no allocation), for its A bit.
            let pde = t.pde_addr(&mut a.mem, USER);
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
            let tlb = |m: &Machine| format!("{:?}", m.cpus[0].tlb());
            assert_eq!(tlb(&a), tlb(&b), "{geometry:?} {format:?}: TLB");
            assert_eq!(tlb(&a), tlb(&c), "{geometry:?} {format:?}: TLB");
            assert!(not_present > 1000, "{geometry:?} {format:?}: {not_present}");
        }
    }
}

/// Kernel pages used as kmap slots (as the fixmap's, in one table), and the frames their
/// PTEs map: RAM, and the hole past 16 MiB (the access's bus error).
const SLOTS: [u64; 3] = [0xff80_0000, 0xff80_1000, 0xff80_2000];
const SLOT_TARGETS: [u64; 3] = [0x80_0000, 0x90_0000, 0x2000_0000];

/// One slot step on `c` and `mem`, taken one by one as the kernel's `kmap_atomic`, access
/// and `kunmap_atomic` are: the slot's PTE written, the access through it, the PTE
/// cleared, INVLPG; with `flush` false the INVLPG is left out (a kernel bug: the entry
/// goes stale).
#[allow(clippy::too_many_arguments)]
fn slot_steps(
    c: &mut Cpu,
    mem: &mut PhysMem,
    format: Format,
    pte_pa: u64,
    pte: u64,
    lin: u64,
    value: Option<u64>,
    flush: bool,
) -> Result<u64, machine::AccessError> {
    let size = format.entry_size();
    write(mem, format, pte_pa, pte);
    let v = VirtAddr::new(lin);
    let r = match value {
        None => c.read_virt_entry(mem, v, size),
        Some(x) => c.write_virt_entry(mem, v, size, x).map(|()| x),
    };
    write(mem, format, pte_pa, 0);
    if flush {
        c.invlpg_noted(v);
    }
    r
}

/// A ticket of a session ([`SlotSession::again`]) and the slot page, PTE address and PTE
/// of the step it was issued for: what a kernel keeps to repeat the step.
type Held = Option<((u64, u64, u64), Again)>;

/// [`slot_steps`] as one step of session `m` where it takes it (the slot's PTE none
/// before, as the kernel's quick map requires), else one by one; and whether it did.
/// A step of the page, PTE address and PTE of `held`'s is first tried as its ticket's
/// repeat, as the kernel does (which keeps the ticket even after the session forgot the
/// step: the session must refuse it then).
#[allow(clippy::too_many_arguments)]
fn slot_step<const F: u8>(
    m: &mut SlotSession,
    held: &mut Held,
    format: Format,
    pte_pa: u64,
    pte: u64,
    lin: u64,
    value: Option<u64>,
    keep_odd: bool,
) -> (Result<u64, machine::AccessError>, bool) {
    let key = (lin & !0xfff, pte_pa, pte);
    let keep = |v: u64| keep_odd || v & 1 == 0;
    let size = format.entry_size();
    if let Some((k, t)) = *held {
        if k == key {
            let done = match value {
                None => m.read_again(t, lin & 0xfff, size, keep),
                Some(x) => m.write_again(t, lin & 0xfff, size, x).then_some(x),
            };
            if let Some(v) = done {
                return (Ok(v), true);
            }
        }
    }
    if read(m.mem(), format, pte_pa) == 0 {
        let done = match value {
            None => m.read_invlpg::<F>(lin, pte_pa, pte, keep),
            Some(x) => m.write_invlpg::<F>(lin, pte_pa, pte, x).then_some(x),
        };
        if let Some(v) = done {
            *held = m.again::<F>().map(|t| (key, t));
            return (Ok(v), true);
        }
    }
    let (c, mem) = m.parts();
    (
        slot_steps(c, mem, format, pte_pa, pte, lin, value, true),
        false,
    )
}

fn slot_steps_as_one<const F: u8>(geometry: machine::TlbGeometry, format: Format) {
    let (mut a, mut t, ptes) = setup(geometry, format);
    let (mut b, mut tb, _) = setup(geometry, format);
    let slot_ptes: Vec<u64> = SLOTS.iter().map(|&s| t.pte_addr(&mut a.mem, s)).collect();
    for (&s, &at) in SLOTS.iter().zip(&slot_ptes) {
        // The same tables in b (the builder is deterministic).
        assert_eq!(tb.pte_addr(&mut b.mem, s), at);
    }
    let slot_pde = t.pde_addr(&mut a.mem, SLOTS[0]);
    assert_eq!(tb.pde_addr(&mut b.mem, SLOTS[0]), slot_pde);
    let mut watched: Vec<u64> = ptes
        .iter()
        .copied()
        .chain(slot_ptes.iter().copied())
        .collect();
    watched.push(slot_pde);
    let mut rng = Rng(0x5eed_0f51_07c0_ffee);
    let (mut joined, mut steps, mut k) = (0, 0, 0);
    for step in 0..20_000 {
        // Mostly the slot of the last step, as a kernel's nested-map depth usually is.
        if rng.next(4) == 0 {
            k = rng.next(SLOTS.len() as u64) as usize;
        }
        let lin = SLOTS[k] + rng.next(4096 / 8) * 8;
        match rng.next(12) {
            // A user access in a slot's set (64 sets: page numbers equal mod 64), which
            // may evict the noted slot, or anywhere in the pool.
            0..=2 => {
                let i = if rng.next(2) == 0 {
                    rng.next(8) * 64
                } else {
                    rng.next(POOL)
                };
                let va = VirtAddr::new(USER + i * 4096);
                let access = ACCESSES[rng.next(4) as usize];
                for m in [&mut a, &mut b] {
                    write(
                        &mut m.mem,
                        format,
                        ptes[i as usize],
                        (0x80_0000 + i * 4096) | 0x67,
                    );
                }
                assert_eq!(a.translate(0, va, access), b.translate(0, va, access));
            }
            // The slot directory entry loses A (the walk must set it again), a CR3
            // write, an INVLPG of another page (the note moves), a slot left stale.
            3 => {
                let raw = read(&a.mem, format, slot_pde) & !(1 << 5);
                for m in [&mut a, &mut b] {
                    write(&mut m.mem, format, slot_pde, raw);
                }
            }
            4 => {
                let cr3 = a.cpus[0].regs().cr3;
                for m in [&mut a, &mut b] {
                    m.write_cr3(0, cr3).expect("cr3");
                }
            }
            5 => {
                let va = VirtAddr::new(USER + rng.next(POOL) * 4096);
                for m in [&mut a, &mut b] {
                    m.invlpg_noted(0, va).expect("cpu");
                }
            }
            6 if rng.next(4) == 0 => {
                let pte = SLOT_TARGETS[0] | 0x63;
                let (ca, ma) = (&mut a.cpus[0], &mut a.mem);
                let ra = slot_steps(ca, ma, format, slot_ptes[k], pte, lin, None, false);
                let (cb, mb) = (&mut b.cpus[0], &mut b.mem);
                let rb = slot_steps(cb, mb, format, slot_ptes[k], pte, lin, None, false);
                assert_eq!(ra, rb);
            }
            // A burst of slot steps, as a fault's (one session on b): kernel PTE bits with
            // A, D and W mostly set, mostly the same PTE and page, now and then a write
            // into the slot's own directory or PTE page (the next walk may change).
            _ => {
                let target = match rng.next(16) {
                    0 => SLOT_TARGETS[2],
                    1..=8 => SLOT_TARGETS[0],
                    _ => SLOT_TARGETS[1],
                };
                let mut pte = (target + rng.next(16) * 4096) | 0x63;
                for bit in [0x2, 0x20, 0x40] {
                    if rng.next(16) == 0 {
                        pte &= !bit;
                    }
                }
                let mut session = SlotSession::new(&mut b.cpus[0], &mut b.mem);
                let mut held = None;
                let mut through_tables = false;
                for _ in 0..=rng.next(4) {
                    let mut lin = SLOTS[k] + rng.next(4096 / 8) * 8;
                    // Reads only once the directory or PTE page is mapped.
                    let mut value =
                        (!through_tables && rng.next(2) == 0).then(|| rng.next(1 << 30));
                    if rng.next(8) == 0 {
                        pte = (pte & 0xfff) | (rng.next(16) * 4096 + target);
                    }
                    // The directory or the PTE page through the slot, its entry for the
                    // slot written (A toggled) and, for the rest of the burst, mapped.
                    if rng.next(12) == 0 {
                        let at = if rng.next(2) == 0 {
                            slot_pde
                        } else {
                            slot_ptes[k]
                        };
                        pte = (at & !0xfff) | 0x63;
                        through_tables = true;
                        lin = SLOTS[k] + (at & 0xff8);
                        value = Some(read(&a.mem, format, at) ^ 0x20);
                    }
                    // A user access between two steps (a fault's first touch or its
                    // retry), in a slot's set now and then: the session keeps the last
                    // step where the access cannot have changed it.
                    if rng.next(3) == 0 {
                        let i = if rng.next(2) == 0 {
                            rng.next(8) * 64 + (SLOTS[k] >> 12 & 63)
                        } else {
                            rng.next(POOL)
                        };
                        let va = VirtAddr::new(USER + i * 4096);
                        let access = ACCESSES[rng.next(4) as usize];
                        let ra = a.translate(0, va, access);
                        let rb = if rng.next(2) == 0 {
                            session.translate_unmapped(va, access)
                        } else {
                            session.translate_refault(va, access)
                        };
                        assert_eq!(ra, rb, "{format:?} step {step}: user access");
                    }
                    let keep_odd = rng.next(4) != 0;
                    let (ca, ma) = (&mut a.cpus[0], &mut a.mem);
                    let ra = slot_steps(ca, ma, format, slot_ptes[k], pte, lin, value, true);
                    let (rb, one) = slot_step::<F>(
                        &mut session,
                        &mut held,
                        format,
                        slot_ptes[k],
                        pte,
                        lin,
                        value,
                        keep_odd,
                    );
                    assert_eq!(ra, rb, "{format:?} step {step}");
                    steps += 1;
                    joined += usize::from(one);
                }
                same_state(&a, &b, &watched, format, lin, step);
            }
        }
    }
    // The whole TLB, invalid slots and front-table addends included (a terse message:
    // the state prints as megabytes).
    let tlb = |m: &Machine| format!("{:?}", m.cpus[0].tlb());
    assert!(
        tlb(&a) == tlb(&b),
        "{geometry:?} {format:?}: the TLBs differ"
    );
    for &base in &SLOT_TARGETS[..2] {
        for i in 0..16 {
            let pfn = machine::Pfn::new((base >> 12) + i);
            assert_eq!(
                a.mem.frame(pfn).ok(),
                b.mem.frame(pfn).ok(),
                "frame {pfn:?}"
            );
        }
    }
    // The one step is the usual case, the fallbacks are exercised.
    assert!(
        joined > steps / 3 && joined < steps,
        "{geometry:?} {format:?}: {joined} of {steps}"
    );
}

#[test]
fn a_slot_step_as_one_leaves_the_state_of_its_steps() {
    for geometry in GEOMETRIES {
        slot_steps_as_one::<{ Format::Pae as u8 }>(geometry, Format::Pae);
        slot_steps_as_one::<{ Format::TwoLevel as u8 }>(geometry, Format::TwoLevel);
    }
}

/// A session's [`Again`] ticket repeats the step it was issued for, and only while the
/// session remembers that step: after [`SlotSession::parts`], after another step, after a
/// step it does not remember (through the slot's own PTE page), and for another entry size
/// or an access the entry does not let through, the session refuses it and changes nothing.
fn tickets_refused_once_forgotten<const F: u8>(format: Format) {
    let (mut m, mut t, _) = setup(GEOMETRIES[0], format);
    let pte_pa = t.pte_addr(&mut m.mem, SLOTS[0]);
    let size = format.entry_size();
    write(&mut m.mem, format, SLOT_TARGETS[0] + 8, 0x1234);
    let (ro, rw) = (SLOT_TARGETS[0] | 0x61, SLOT_TARGETS[0] | 0x63);
    // Three steps first: the walk sets A in the directory, the INVLPG notes the slot.
    let (c, mem) = (&mut m.cpus[0], &mut m.mem);
    assert_eq!(
        slot_steps(c, mem, format, pte_pa, rw, SLOTS[0], None, true),
        Ok(0)
    );
    let before = m.cpus[0].counters();
    let mut s = SlotSession::new(&mut m.cpus[0], &mut m.mem);
    let first = s.read_invlpg::<F>(SLOTS[0], pte_pa, rw, |_| true);
    assert_eq!(first, Some(0));
    let ticket = s.again::<F>().expect("a remembered step");
    assert_eq!(s.read_again(ticket, 8, size, |_| true), Some(0x1234));
    assert!(s.write_again(ticket, 16, size, 0x5678));
    assert_eq!(s.read_again(ticket, 16, size, |_| true), Some(0x5678));
    assert_eq!(s.read_again(ticket, 16, size, |_| false), None);
    let other = if size == 8 { 4 } else { 8 };
    assert_eq!(s.read_again(ticket, 8, other, |_| true), None);
    // Forgotten: the CPU and RAM handed out.
    let _ = s.parts();
    assert_eq!(s.read_again(ticket, 8, size, |_| true), None);
    assert!(!s.write_again(ticket, 8, size, 1));
    // Another step (read-only entry: a write repeat is refused).
    assert!(s.read_invlpg::<F>(SLOTS[0], pte_pa, ro, |_| true).is_some());
    let ro_ticket = s.again::<F>().expect("a remembered step");
    assert!(!s.write_again(ro_ticket, 8, size, 1));
    assert_eq!(s.read_again(ticket, 8, size, |_| true), None);
    assert_eq!(s.read_again(ro_ticket, 8, size, |_| true), Some(0x1234));
    // A step through the slot's own PTE page is not remembered, and ends the last one's.
    let own = (pte_pa & !0xfff) | 0x63;
    let off = pte_pa & 0xfff;
    let at = SLOTS[0] + if off == 0 { 8 } else { off - 8 };
    assert!(s.read_invlpg::<F>(at, pte_pa, own, |_| true).is_some());
    assert!(s.again::<F>().is_none());
    assert_eq!(s.read_again(ro_ticket, 8, size, |_| true), None);
    // Every step counted its miss and INVLPG, the refused ones nothing: 3 walks, 4 repeats.
    let after = m.cpus[0].counters();
    assert_eq!(after.tlb_misses - before.tlb_misses, 3 + 4);
    assert_eq!(after.invlpg - before.invlpg, 3 + 4);
    assert_eq!(read(&m.mem, format, SLOT_TARGETS[0] + 16), 0x5678);
    assert_eq!(read(&m.mem, format, pte_pa), 0);
}

#[test]
fn a_ticket_is_refused_once_its_step_is_forgotten() {
    tickets_refused_once_forgotten::<{ Format::Pae as u8 }>(Format::Pae);
    tickets_refused_once_forgotten::<{ Format::TwoLevel as u8 }>(Format::TwoLevel);
}

/// The PTE slot steps write to the slot's page, a kernel read-write mapping.
const RW: u64 = SLOT_TARGETS[0] | 0x63;

/// Two machines built alike ([`setup`]), the slot's PTE page in place on both (at
/// `pte_pa`), and one slot step taken one by one on each: the walk has set A in the
/// directories and the INVLPG noted the slot, as on a running kernel.
struct Twins {
    a: Machine,
    b: Machine,
    t: Tables,
    ptes: Vec<u64>,
    pte_pa: u64,
}

fn twins(geometry: TlbGeometry, format: Format) -> Twins {
    let (mut a, mut t, ptes) = setup(geometry, format);
    let (mut b, mut tb, _) = setup(geometry, format);
    let pte_pa = t.pte_addr(&mut a.mem, SLOTS[0]);
    assert_eq!(tb.pte_addr(&mut b.mem, SLOTS[0]), pte_pa);
    for m in [&mut a, &mut b] {
        assert_eq!(three(m, format, pte_pa, RW, SLOTS[0], None), Ok(0));
    }
    Twins {
        a,
        b,
        t,
        ptes,
        pte_pa,
    }
}

/// [`slot_steps`] on CPU 0 of `m`, flushed.
fn three(
    m: &mut Machine,
    format: Format,
    pte_pa: u64,
    pte: u64,
    lin: u64,
    value: Option<u64>,
) -> Result<u64, machine::AccessError> {
    slot_steps(
        &mut m.cpus[0],
        &mut m.mem,
        format,
        pte_pa,
        pte,
        lin,
        value,
        true,
    )
}

/// A slot step, a user access to pool page `i` (mapped), and the same step again: on `a`
/// one by one, on `b` in a session (the user access on it, the second step through the
/// first's ticket where the session still holds it); whether it did, after checking that
/// both machines end in the same state, TLB included.
fn step_user_step<const F: u8>(geometry: TlbGeometry, format: Format, i: u64) -> bool {
    let Twins {
        mut a,
        mut b,
        ptes,
        pte_pa,
        ..
    } = twins(geometry, format);
    let va = VirtAddr::new(USER + i * 4096);
    for m in [&mut a, &mut b] {
        write(&mut m.mem, format, ptes[i as usize], 0x80_0000 | 0x67);
    }
    assert_eq!(three(&mut a, format, pte_pa, RW, SLOTS[0], None), Ok(0));
    let ra = a.translate(0, va, Access::USER_READ);
    assert_eq!(three(&mut a, format, pte_pa, RW, SLOTS[0] + 8, None), Ok(0));
    let mut s = SlotSession::new(&mut b.cpus[0], &mut b.mem);
    assert_eq!(s.read_invlpg::<F>(SLOTS[0], pte_pa, RW, |_| true), Some(0));
    let ticket = s.again::<F>().expect("a remembered step");
    assert_eq!(s.translate_unmapped(va, Access::USER_READ), ra);
    let kept = s.remembers(ticket);
    let v = match s.read_again(ticket, 8, format.entry_size(), |_| true) {
        Some(v) => Ok(v),
        None => {
            let (c, mem) = s.parts();
            slot_steps(c, mem, format, pte_pa, RW, SLOTS[0] + 8, None, true)
        }
    };
    assert_eq!(v, Ok(0));
    same_state(&a, &b, &ptes, format, va.as_u64(), 0);
    let tlb = |m: &Machine| format!("{:?}", m.cpus[0].tlb());
    assert!(
        tlb(&a) == tlb(&b),
        "{geometry:?} {format:?} page {i}: TLBs differ"
    );
    kept
}

/// The session keeps its last step across a user access only where the access cannot
/// have changed it: not for a page in the slot's TLB set (Core 2: 64 sets) or with its
/// front-table entry (256 entries; the unbounded TLB's 1 024 sets make that a page of
/// another set); for a page apart from both, it does.
#[test]
fn a_user_access_keeps_the_step_only_apart_from_the_slot() {
    let slot = SLOTS[0] >> 12;
    let user = USER >> 12;
    // Pool pages with the slot's set on Core 2, with its front entry only on the
    // unbounded TLB, and apart from both.
    let same_set = (slot.wrapping_sub(user) & 63) + 64;
    let same_front = (slot.wrapping_sub(user) & 255) + 256;
    let apart = same_set + 1;
    for (geometry, i, keeps) in [
        (TlbGeometry::Core2, same_set, false),
        (TlbGeometry::Core2, apart, true),
        (TlbGeometry::Unbounded, same_front, false),
        (TlbGeometry::Unbounded, apart, true),
    ] {
        let p = step_user_step::<{ Format::Pae as u8 }>(geometry, Format::Pae, i);
        assert_eq!(p, keeps, "{geometry:?} PAE page {i}");
        let t = step_user_step::<{ Format::TwoLevel as u8 }>(geometry, Format::TwoLevel, i);
        assert_eq!(t, keeps, "{geometry:?} 2-level page {i}");
    }
}

/// A ticket belongs to the session that issued it: a later session on the same CPU, even
/// one that has handed out the CPU once, refuses it. Between the two sessions the slot's
/// directory entry loses A: the three steps' walk sets it again, which a repeat through the
/// old ticket would not.
fn ticket_of_an_ended_session<const F: u8>(format: Format) {
    let Twins {
        mut a,
        mut b,
        mut t,
        pte_pa,
        ..
    } = twins(GEOMETRIES[0], format);
    let slot_pde = t.pde_addr(&mut a.mem, SLOTS[0]);
    assert_eq!(three(&mut a, format, pte_pa, RW, SLOTS[0], None), Ok(0));
    let ticket = {
        let mut s = SlotSession::new(&mut b.cpus[0], &mut b.mem);
        assert_eq!(s.read_invlpg::<F>(SLOTS[0], pte_pa, RW, |_| true), Some(0));
        s.again::<F>().expect("a remembered step")
    };
    for m in [&mut a, &mut b] {
        let raw = read(&m.mem, format, slot_pde) & !(1 << 5);
        write(&mut m.mem, format, slot_pde, raw);
    }
    let ra = three(&mut a, format, pte_pa, RW, SLOTS[0] + 8, None);
    let mut s = SlotSession::new(&mut b.cpus[0], &mut b.mem);
    let _ = s.parts();
    let rb = match s.read_again(ticket, 8, format.entry_size(), |_| true) {
        Some(v) => Ok(v),
        None => {
            let (c, mem) = s.parts();
            slot_steps(c, mem, format, pte_pa, RW, SLOTS[0] + 8, None, true)
        }
    };
    assert_eq!(ra, rb);
    assert_eq!(
        read(&a.mem, format, slot_pde),
        read(&b.mem, format, slot_pde),
        "{format:?}: the slot's directory entry (A set by the walk)"
    );
    same_state(&a, &b, &[slot_pde], format, SLOTS[0], 0);
}

#[test]
fn a_ticket_of_an_ended_session_is_refused() {
    ticket_of_an_ended_session::<{ Format::Pae as u8 }>(Format::Pae);
    ticket_of_an_ended_session::<{ Format::TwoLevel as u8 }>(Format::TwoLevel);
}

/// Under 4-level paging the slot's walk reads three directory pages: a step through the
/// slot into its page directory is not remembered, so that after the slot's PDE is made
/// not present through the slot the next step faults as the three steps do.
#[test]
fn a_four_level_step_into_the_slot_directory_is_not_remembered() {
    const F: u8 = Format::FourLevel as u8;
    let format = Format::FourLevel;
    let Twins {
        mut a,
        mut b,
        mut t,
        pte_pa,
        ..
    } = twins(GEOMETRIES[0], format);
    let slot_pde = t.pde_addr(&mut a.mem, SLOTS[0]);
    let pd = (slot_pde & !0xfff) | 0x63;
    let lin = SLOTS[0] + (slot_pde & 0xff8);
    let pde = read(&a.mem, format, slot_pde);
    let mut s = SlotSession::new(&mut b.cpus[0], &mut b.mem);
    let mut held = None;
    // Read the slot's PDE through the slot, then clear its P through the slot, then read.
    for value in [None, Some(pde & !1), None] {
        let ra = three(&mut a, format, pte_pa, pd, lin, value);
        let (rb, _) = slot_step::<F>(&mut s, &mut held, format, pte_pa, pd, lin, value, true);
        assert_eq!(ra, rb, "4-level: a step after the slot's PDE went");
    }
}

/// A user access that widens the span of large pages over the slot (a kernel large page
/// above it) leaves the slot's set alone but takes the step off its quick refill: the
/// session forgets the step, and the three steps that follow leave the same CPU, counters
/// split between the quick and the full path included.
fn large_page_over_the_slot<const F: u8>(geometry: TlbGeometry, format: Format) {
    let Twins {
        mut a,
        mut b,
        mut t,
        pte_pa,
        ..
    } = twins(geometry, format);
    let big = if format == Format::TwoLevel {
        (0xffc0_0000, PageSize::Size4M)
    } else {
        (0xffe0_0000, PageSize::Size2M)
    };
    // The same tables in both (the builder is deterministic): map in a with `t`, copy
    // the directory entry it wrote to b.
    t.map(&mut a.mem, big.0, 0x40_0000, big.1, KERNEL_RW);
    let big_pde = t.pde_addr(&mut a.mem, big.0);
    let raw = read(&a.mem, format, big_pde);
    write(&mut b.mem, format, big_pde, raw);
    assert_eq!(three(&mut a, format, pte_pa, RW, SLOTS[0], None), Ok(0));
    let va = VirtAddr::new(big.0 + 0x1000);
    let ra = a.translate(0, va, Access::KERNEL_READ);
    let wa = three(&mut a, format, pte_pa, RW, SLOTS[0] + 8, Some(5));
    let mut s = SlotSession::new(&mut b.cpus[0], &mut b.mem);
    assert_eq!(s.read_invlpg::<F>(SLOTS[0], pte_pa, RW, |_| true), Some(0));
    let ticket = s.again::<F>().expect("a remembered step");
    assert_eq!(s.translate_unmapped(va, Access::KERNEL_READ), ra);
    assert!(
        !s.remembers(ticket),
        "{geometry:?} {format:?}: the span reaches the slot"
    );
    assert!(!s.write_again(ticket, 8, format.entry_size(), 5));
    let wb = match s.write_invlpg::<F>(SLOTS[0] + 8, pte_pa, RW, 5) {
        true => Ok(5),
        false => {
            let (c, mem) = s.parts();
            slot_steps(c, mem, format, pte_pa, RW, SLOTS[0] + 8, Some(5), true)
        }
    };
    assert_eq!(wa, wb);
    same_state(&a, &b, &[SLOT_TARGETS[0] + 8], format, SLOTS[0], 0);
    let cpu = |m: &Machine| format!("{:?}", m.cpus[0]);
    assert!(
        cpu(&a) == cpu(&b),
        "{geometry:?} {format:?}: the CPUs differ"
    );
}

#[test]
fn a_large_page_over_the_slot_ends_the_step() {
    for geometry in GEOMETRIES {
        large_page_over_the_slot::<{ Format::Pae as u8 }>(geometry, Format::Pae);
        large_page_over_the_slot::<{ Format::TwoLevel as u8 }>(geometry, Format::TwoLevel);
    }
}
