//! Fault runs (`SlotSession::fault_run` / `run_faults`) against the steps they stand for.
//!
//! A reader streams through 512 user pages under one directory entry, with the TLB full
//! of other pages: each page's first touch faults, the kernel reads the page's none entry
//! through its kmap slot and writes the new one (each a slot step: map, access, unmap with
//! INVLPG), and the access is retried. One machine takes every step one by one through
//! `translate` and the slot's three steps; its twin takes the pages in fault runs, and
//! where a run stops (a page already mapped, a page in the slot's TLB set, a handler that
//! stops after its read, an entry the quick retry does not take), the rest of that page
//! through the session's generic steps. Both must end with the same counters, registers,
//! TLB (replacement state included) and page tables, with most pages taken in runs.

mod common;

use common::{enable, machine_on, read, write};
use machine::machine::Machine;
use machine::mmu::{Access, AccessError};
use machine::paging::{Format, PageSize, PteFlags};
use machine::{RunStop, SlotSession, TlbGeometry, VirtAddr};

/// The reader's pages, under one directory entry (2 MiB-aligned).
const USER: u64 = 0x0800_0000;
const POOL: u64 = 512;
/// Mapped pages read first, so that every TLB set is full.
const OTHER: u64 = 0x0c00_0000;
const OTHER_PAGES: u64 = 1024;
/// The kmap slot, and the frames the pages map.
const SLOT: u64 = 0xff80_0000;
const FRAMES: u64 = 0x80_0000;
const OTHER_FRAMES: u64 = 0xc0_0000;
/// The reader's leaf: present, user, accessed; and one the quick retry refuses (no A).
const LEAF: u64 = 0x25;
const LEAF_NO_A: u64 = 0x05;
const USER_R: PteFlags = PteFlags::PRESENT.union(PteFlags::USER);

/// What happens to page `i`: mapped before the reader comes, its handler stopping after
/// the read, its new entry without A.
fn premapped(i: u64) -> bool {
    i % 37 == 5
}
fn handler_stops(i: u64) -> bool {
    i % 53 == 7
}
fn leaf(i: u64) -> u64 {
    (FRAMES + i * 4096) | if i % 41 == 3 { LEAF_NO_A } else { LEAF }
}

struct Setup {
    m: Machine,
    /// The reader's PTE page, and where the slot's PTE sits.
    table: u64,
    slot_pte: u64,
}

fn setup(geometry: TlbGeometry, format: Format) -> Setup {
    let (mut m, mut t) = machine_on(geometry, format, 1);
    let table = t.pte_addr(&mut m.mem, USER) & !0xfff;
    for i in 0..OTHER_PAGES {
        let pa = OTHER_FRAMES + i * 4096;
        t.map(&mut m.mem, OTHER + i * 4096, pa, PageSize::Size4K, USER_R);
    }
    for i in (0..POOL).filter(|&i| premapped(i)) {
        write(&mut m.mem, format, table + i * entry(format), leaf(i));
    }
    let slot_pte = t.pte_addr(&mut m.mem, SLOT);
    enable(&mut m, 0, &t);
    // The walks set A in the directory entries; the TLB fills up.
    for i in 0..OTHER_PAGES {
        m.translate(0, VirtAddr::new(OTHER + i * 4096), Access::USER_READ)
            .expect("mapped");
    }
    m.translate(0, VirtAddr::new(USER + 5 * 4096), Access::USER_READ)
        .expect("premapped");
    // Invalid ways in some sets (the last pages read are still cached): the reader's
    // first fill there takes the invalid way, not a victim.
    for k in (OTHER_PAGES - 64..OTHER_PAGES).step_by(5) {
        m.invlpg(0, VirtAddr::new(OTHER + k * 4096))
            .expect("invlpg");
    }
    Setup { m, table, slot_pte }
}

fn entry(format: Format) -> u64 {
    u64::from(format.entry_size())
}

/// The slot's PTE while it maps the reader's PTE page (kernel, writable, A and D).
fn slot_map(table: u64) -> u64 {
    table | 0x63
}

/// A slot step one by one: the slot's PTE written, the access through it, the PTE
/// cleared, INVLPG.
fn three(m: &mut Machine, format: Format, s: (u64, u64), idx: u64, value: Option<u64>) -> u64 {
    three_on(&mut m.cpus[0], &mut m.mem, format, s.0, s.1, idx, value)
}

fn three_on(
    c: &mut machine::Cpu,
    mem: &mut machine::PhysMem,
    format: Format,
    slot_pte: u64,
    table: u64,
    idx: u64,
    value: Option<u64>,
) -> u64 {
    let size = format.entry_size();
    write(mem, format, slot_pte, slot_map(table));
    let v = VirtAddr::new(SLOT + idx * u64::from(size));
    let r = match value {
        None => c.read_virt_entry(mem, v, size),
        Some(x) => c.write_virt_entry(mem, v, size, x).map(|()| x),
    };
    write(mem, format, slot_pte, 0);
    c.invlpg_noted(v);
    r.expect("slot step")
}

/// The reader one step at a time, pages `from..to`: touch, and on its fault the read,
/// the write, the retry.
fn reader_by_steps(s: &mut Setup, format: Format, from: u64, to: u64) {
    let st = (s.slot_pte, s.table);
    for i in from..to {
        let va = VirtAddr::new(USER + i * 4096);
        match s.m.translate(0, va, Access::USER_READ) {
            Ok(_) => continue,
            Err(AccessError::PageFault(_)) => {}
            Err(e) => panic!("page {i}: {e}"),
        }
        assert_eq!(three(&mut s.m, format, st, i, None), 0);
        three(&mut s.m, format, st, i, Some(leaf(i)));
        s.m.translate(0, va, Access::USER_READ).expect("retry");
    }
}

/// A slot step of the session: as one step where it takes it, else one by one.
fn session_step<const F: u8>(
    sess: &mut SlotSession,
    format: Format,
    s: (u64, u64),
    idx: u64,
    value: Option<u64>,
) -> u64 {
    let (slot_pte, table) = s;
    let lin = SLOT + idx * entry(format);
    let done = match value {
        None => sess.read_invlpg::<F>(lin, slot_pte, slot_map(table), |_| true),
        Some(x) => sess
            .write_invlpg::<F>(lin, slot_pte, slot_map(table), x)
            .then_some(x),
    };
    done.unwrap_or_else(|| {
        let (c, mem) = sess.parts();
        three_on(c, mem, format, slot_pte, table, idx, value)
    })
}

/// Page `i` on the session from its first touch, as the kernel's generic path takes it.
fn page_on_session<const F: u8>(sess: &mut SlotSession, format: Format, s: (u64, u64), i: u64) {
    let va = VirtAddr::new(USER + i * 4096);
    match sess.translate_unmapped(va, Access::USER_READ) {
        Ok(_) => return,
        Err(AccessError::PageFault(_)) => {}
        Err(e) => panic!("page {i}: {e}"),
    }
    assert_eq!(session_step::<F>(sess, format, s, i, None), 0);
    session_step::<F>(sess, format, s, i, Some(leaf(i)));
    sess.translate_refault(va, Access::USER_READ)
        .expect("retry");
}

/// The reader in fault runs; returns the pages the runs took whole. `check` sees the CPU
/// each time the pages before `i` are done.
fn reader_in_runs<const F: u8>(
    s: &mut Setup,
    format: Format,
    mut check: impl FnMut(u64, &machine::Cpu),
) -> u64 {
    let st = (s.slot_pte, s.table);
    let mut sess = SlotSession::new(&mut s.m.cpus[0], &mut s.m.mem);
    let (end, size) = (USER + POOL * 4096, entry(format));
    let (mut i, mut in_runs) = (0, 0);
    while i < POOL {
        check(i, sess.cpu());
        let va = USER + i * 4096;
        let run = sess
            .again::<F>()
            .and_then(|t| sess.fault_run(t, va, end, Access::USER_READ));
        if let Some(run) = run {
            let r = sess.run_faults(&run, va, |steps, pf| {
                let idx = (pf.addr.as_u64() >> 12) & (POOL - 1);
                assert_eq!(steps.read(idx * size, |v| v & 1 == 0), Some(0));
                if handler_stops(idx) {
                    return Err(idx);
                }
                assert!(steps.write(idx * size, leaf(idx)));
                Ok(())
            });
            let done = (r.at - va) / 4096;
            in_runs += done;
            i += done;
            match r.stop {
                None => continue,
                Some(RunStop::Untouched) => {}
                Some(RunStop::Handler(_, idx)) => {
                    assert_eq!(idx, i);
                    session_step::<F>(&mut sess, format, st, i, Some(leaf(i)));
                    let va = VirtAddr::new(USER + i * 4096);
                    sess.translate_refault(va, Access::USER_READ)
                        .expect("retry");
                    i += 1;
                    continue;
                }
                Some(RunStop::Retry(pf)) => {
                    sess.translate_refault(pf.addr, Access::USER_READ)
                        .expect("retry");
                    i += 1;
                    continue;
                }
            }
        }
        page_on_session::<F>(&mut sess, format, st, i);
        i += 1;
    }
    check(POOL, sess.cpu());
    in_runs
}

/// The CPUs' registers, counters and TLBs (replacement state included) after `done` pages.
fn same_cpu(a: &machine::Cpu, b: &machine::Cpu, format: Format, done: u64) {
    assert_eq!(a.counters(), b.counters(), "{format:?}: counters at {done}");
    assert_eq!(a.regs(), b.regs(), "{format:?}: registers at {done}");
    let (ta, tb) = (format!("{:?}", a.tlb()), format!("{:?}", b.tlb()));
    assert!(ta == tb, "{format:?}: TLBs differ at {done}");
}

/// Both machines' page tables.
fn same_tables(a: &Setup, b: &Setup, format: Format) {
    for i in 0..POOL {
        let at = a.table + i * entry(format);
        assert_eq!(read(&a.m.mem, format, at), read(&b.m.mem, format, at));
    }
    assert_eq!(
        read(&a.m.mem, format, a.slot_pte),
        read(&b.m.mem, format, b.slot_pte)
    );
}

fn runs_in<const F: u8>(format: Format) {
    let mut a = setup(TlbGeometry::Core2, format);
    let mut b = setup(TlbGeometry::Core2, format);
    let (mut a_done, mut checks) = (0, 0);
    let in_runs = reader_in_runs::<F>(&mut b, format, |done, cpu| {
        reader_by_steps(&mut a, format, a_done, done);
        a_done = done;
        checks += 1;
        same_cpu(&a.m.cpus[0], cpu, format, done);
    });
    same_tables(&a, &b, format);
    assert!(checks > 20, "{format:?}: {checks} checks");
    // Apart from the stops, every page is a run's: each of the slot's TLB set (one in 64)
    // and each stop costs a run at most its page.
    assert!(
        in_runs > POOL * 3 / 4,
        "{format:?}: {in_runs} pages in runs"
    );
    assert!(in_runs < POOL, "{format:?}: the stops were not taken");
}

#[test]
fn a_run_leaves_the_state_of_its_steps() {
    runs_in::<{ Format::Pae as u8 }>(Format::Pae);
    runs_in::<{ Format::TwoLevel as u8 }>(Format::TwoLevel);
}

/// A run is refused where its tests do not hold, and a run made before the session
/// handed out the CPU is refused after.
fn refusals<const F: u8>(format: Format) {
    let st = |s: &Setup| (s.slot_pte, s.table);
    let end = USER + POOL * 4096;
    let read = Access::USER_READ;
    for geometry in [TlbGeometry::Core2, TlbGeometry::Unbounded] {
        let mut s = setup(geometry, format);
        let k = st(&s);
        let mut sess = SlotSession::new(&mut s.m.cpus[0], &mut s.m.mem);
        // The first step's walk sets A in the slot's directory entry; the second is
        // remembered.
        for _ in 0..2 {
            assert_eq!(session_step::<F>(&mut sess, format, k, 1, None), 0);
        }
        let t = sess.again::<F>().expect("a remembered step");
        let run = sess.fault_run(t, USER, end, read);
        // The unbounded geometry spills, which widens the span of large pages.
        assert_eq!(
            run.is_some(),
            geometry == TlbGeometry::Core2,
            "{geometry:?}"
        );
        if geometry == TlbGeometry::Unbounded {
            continue;
        }
        // Across two directory entries, unaligned, empty, a kernel access.
        let span = if format == Format::Pae {
            2 << 20
        } else {
            4 << 20
        };
        assert!(sess.fault_run(t, USER, USER + span + 4096, read).is_none());
        assert!(sess.fault_run(t, USER, USER + span, read).is_some());
        assert!(sess.fault_run(t, USER + 8, end, read).is_none());
        assert!(sess.fault_run(t, USER, USER, read).is_none());
        assert!(sess.fault_run(t, USER, end, Access::KERNEL_READ).is_none());
        // Pages whose PTE page is not the ticket's.
        assert!(sess.fault_run(t, OTHER, OTHER + 4096, read).is_none());
        // Handed out: the run and the ticket are refused.
        let run = run.expect("a run");
        let _ = sess.parts();
        assert!(sess.fault_run(t, USER, end, read).is_none());
        let r = sess.run_faults(&run, USER, |_, _| -> Result<(), ()> {
            panic!("no fault on a refused run")
        });
        assert!(matches!(r.stop, Some(RunStop::Untouched)) && r.at == USER);
    }
}

#[test]
fn a_run_is_refused_where_its_tests_fail() {
    refusals::<{ Format::Pae as u8 }>(Format::Pae);
    refusals::<{ Format::TwoLevel as u8 }>(Format::TwoLevel);
}
