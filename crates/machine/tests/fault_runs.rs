//! Fault runs (`SlotSession::fault_run` / `run_faults`) against the steps they stand for.
//!
//! A reader streams through 512 user pages under one directory entry, with the TLB full
//! of other pages: each page's first touch faults, the kernel reads the page's none entry
//! through its kmap slot and writes the new one (each a slot step: map, access, unmap with
//! INVLPG), and the access is retried. One machine takes every step one by one through
//! `translate` and the slot's three steps; its twin takes the pages in fault runs, and
//! where a run stops (a page already mapped, a stale TLB entry over a none PTE, a page in
//! the slot's TLB set, a handler that stops after its read or whose write the slot's clean
//! entry refuses, a new entry the quick retry does not take or whose rights refuse the
//! access), the rest of that page through the session's generic steps. Reads and writes,
//! PAE and 2-level. At every stop both machines must have the same counters, registers and
//! TLB (replacement state included); at the end the same page tables and the same retry
//! outcomes, with most pages taken in runs.

mod common;

use common::{enable, machine_on, read, write};
use machine::machine::Machine;
use machine::mmu::{Access, AccessError, PfError};
use machine::paging::{Format, PageSize, PteFlags};
use machine::{RunSteps, RunStop, SlotSession, TlbGeometry, VirtAddr};
use proptest::prelude::*;

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
/// What happens to each page of the pool, a bit per page: mapped before the reader comes,
/// cached in the TLB over a none PTE (unmapped without INVLPG), its handler stopping after
/// the read, its new entry without A (the quick retry refuses it: the walk sets A), its new
/// entry without the right the access needs (a reader's without U: the retry faults; a
/// writer's clean: the walk sets D).
#[derive(Clone, Copy, Debug)]
struct Pattern {
    premapped: [u64; 8],
    stale: [u64; 8],
    stops: [u64; 8],
    no_a: [u64; 8],
    no_right: [u64; 8],
}

impl Pattern {
    /// Every few pages, each at its own period.
    fn sparse() -> Pattern {
        let every = |n: u64, k: u64| {
            let mut m = [0u64; 8];
            for i in (0..POOL).filter(|i| i % n == k) {
                m[(i / 64) as usize] |= 1 << (i % 64);
            }
            m
        };
        Pattern {
            premapped: every(37, 5),
            stale: every(29, 11),
            stops: every(53, 7),
            no_a: every(41, 3),
            no_right: every(43, 9),
        }
    }
}

fn bit(m: &[u64; 8], i: u64) -> bool {
    m[(i / 64 % 8) as usize] >> (i % 64) & 1 != 0
}

const USER_R: PteFlags = PteFlags::PRESENT.union(PteFlags::USER);

/// One comparison: the paging format, the reader's access, the slot's PTE flags (the
/// kernel's are dirty: a write through the slot is then a step; with a clean entry the walk
/// must set D, so a write is not).
#[derive(Clone, Copy, Debug)]
struct Case {
    format: Format,
    access: Access,
    slot_flags: u64,
    pat: Pattern,
}

impl Case {
    /// A case of the random tests: a reader or writer, PAE or 2-level, the kernel's slot
    /// entry.
    fn drawn(pat: Pattern, write: bool, pae: bool) -> Case {
        Case {
            format: if pae { Format::Pae } else { Format::TwoLevel },
            access: if write {
                Access::USER_WRITE
            } else {
                Access::USER_READ
            },
            slot_flags: 0x63,
            pat,
        }
    }

    fn write(&self) -> bool {
        self.access.is_write()
    }

    fn premapped(&self, i: u64) -> bool {
        bit(&self.pat.premapped, i)
    }

    fn stale(&self, i: u64) -> bool {
        bit(&self.pat.stale, i) && !self.premapped(i)
    }

    fn stops(&self, i: u64) -> bool {
        bit(&self.pat.stops, i)
    }

    /// The new entry of page `i`: present, user, accessed (writable and dirty for a
    /// writer), but for the pattern's pages without A or without the access's right.
    fn leaf(&self, i: u64) -> u64 {
        let no_a = bit(&self.pat.no_a, i);
        let no_right = bit(&self.pat.no_right, i);
        let bits = match (self.write(), no_a, no_right) {
            (false, true, _) => 0x05,
            (false, _, true) => 0x21,
            (false, _, _) => 0x25,
            (true, true, _) => 0x47,
            (true, _, true) => 0x27,
            (true, _, _) => 0x67,
        };
        (FRAMES + i * 4096) | bits
    }
}

struct Setup {
    m: Machine,
    /// The reader's PTE page, and where the slot's PTE sits and what it holds mapped.
    table: u64,
    slot_pte: u64,
    slot_map: u64,
}

impl Setup {
    fn slot(&self) -> (u64, u64, u64) {
        (self.slot_pte, self.table, self.slot_map)
    }
}

fn setup(geometry: TlbGeometry, c: Case) -> Setup {
    let format = c.format;
    let (mut m, mut t) = machine_on(geometry, format, 1);
    let table = t.pte_addr(&mut m.mem, USER) & !0xfff;
    for i in 0..OTHER_PAGES {
        let pa = OTHER_FRAMES + i * 4096;
        t.map(&mut m.mem, OTHER + i * 4096, pa, PageSize::Size4K, USER_R);
    }
    let pte = |i: u64| table + i * entry(format);
    for i in (0..POOL).filter(|&i| c.premapped(i) || c.stale(i)) {
        write(&mut m.mem, format, pte(i), (FRAMES + i * 4096) | 0x67);
    }
    let slot_pte = t.pte_addr(&mut m.mem, SLOT);
    enable(&mut m, 0, &t);
    // The walks set A in the directory entries; the TLB fills up.
    for i in 0..OTHER_PAGES {
        m.translate(0, VirtAddr::new(OTHER + i * 4096), Access::USER_READ)
            .expect("mapped");
    }
    // Stale entries: cached, then unmapped without INVLPG.
    for i in (0..POOL).filter(|&i| c.stale(i)) {
        m.translate(0, VirtAddr::new(USER + i * 4096), c.access)
            .expect("mapped");
        write(&mut m.mem, format, pte(i), 0);
    }
    // Invalid ways in some sets (the last pages read are still cached): the reader's
    // first fill there takes the invalid way, not a victim.
    for k in (OTHER_PAGES - 64..OTHER_PAGES).step_by(5) {
        m.invlpg(0, VirtAddr::new(OTHER + k * 4096))
            .expect("invlpg");
    }
    Setup {
        m,
        table,
        slot_pte,
        slot_map: table | c.slot_flags,
    }
}

fn entry(format: Format) -> u64 {
    u64::from(format.entry_size())
}

/// A slot step one by one on `c` and `mem`: the slot's PTE written, the access through it,
/// the PTE cleared, INVLPG.
fn three(
    c: &mut machine::Cpu,
    mem: &mut machine::PhysMem,
    format: Format,
    slot: (u64, u64, u64),
    idx: u64,
    value: Option<u64>,
) -> u64 {
    let (slot_pte, _, slot_map) = slot;
    let size = format.entry_size();
    write(mem, format, slot_pte, slot_map);
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
/// the write, the retry (whose outcome goes to `retries`).
fn reader_by_steps(s: &mut Setup, c: Case, from: u64, to: u64, retries: &mut Vec<(u64, bool)>) {
    let slot = s.slot();
    for i in from..to {
        let va = VirtAddr::new(USER + i * 4096);
        match s.m.translate(0, va, c.access) {
            Ok(_) => continue,
            Err(AccessError::PageFault(_)) => {}
            Err(e) => panic!("page {i}: {e}"),
        }
        let (cpu, mem) = (&mut s.m.cpus[0], &mut s.m.mem);
        assert_eq!(three(cpu, mem, c.format, slot, i, None), 0);
        three(cpu, mem, c.format, slot, i, Some(c.leaf(i)));
        retries.push((i, s.m.translate(0, va, c.access).is_ok()));
    }
}

/// A slot step of the session: as one step where it takes it, else one by one.
fn session_step<const F: u8>(
    sess: &mut SlotSession,
    format: Format,
    slot: (u64, u64, u64),
    idx: u64,
    value: Option<u64>,
) -> u64 {
    let (slot_pte, _, slot_map) = slot;
    let lin = SLOT + idx * entry(format);
    let done = match value {
        None => sess.read_invlpg::<F>(lin, slot_pte, slot_map, |_| true),
        Some(x) => sess
            .write_invlpg::<F>(lin, slot_pte, slot_map, x)
            .then_some(x),
    };
    done.unwrap_or_else(|| {
        let (cpu, mem) = sess.parts();
        three(cpu, mem, format, slot, idx, value)
    })
}

/// Page `i` on the session from its first touch, as the kernel's generic path takes it.
fn page_on_session<const F: u8>(
    sess: &mut SlotSession,
    c: Case,
    slot: (u64, u64, u64),
    i: u64,
    retries: &mut Vec<(u64, bool)>,
) {
    let va = VirtAddr::new(USER + i * 4096);
    match sess.translate_unmapped(va, c.access) {
        Ok(_) => return,
        Err(AccessError::PageFault(_)) => {}
        Err(e) => panic!("page {i}: {e}"),
    }
    assert_eq!(session_step::<F>(sess, c.format, slot, i, None), 0);
    session_step::<F>(sess, c.format, slot, i, Some(c.leaf(i)));
    retries.push((i, sess.translate_refault(va, c.access).is_ok()));
}

/// What the runs took: pages whole, and faults whose write through the slot the run
/// refused.
#[derive(Default)]
struct Took {
    pages: u64,
    refused_writes: u64,
}

/// The reader in fault runs. `check` sees the CPU each time the pages before `i` are done.
fn reader_in_runs<const F: u8>(
    s: &mut Setup,
    c: Case,
    retries: &mut Vec<(u64, bool)>,
    mut check: impl FnMut(u64, &machine::Cpu),
) -> Took {
    let slot = s.slot();
    let mut sess = SlotSession::new(&mut s.m.cpus[0], &mut s.m.mem);
    let (end, size) = (USER + POOL * 4096, c.format.entry_size());
    let (mut i, mut took) = (0, Took::default());
    let code = if c.write() {
        PfError::USER | PfError::WRITE
    } else {
        PfError::USER
    };
    while i < POOL {
        check(i, sess.cpu());
        let va = USER + i * 4096;
        let run = sess
            .again::<F>()
            .and_then(|t| sess.fault_run(t, va, end, c.access));
        if let Some(run) = run {
            let r = sess.run_faults(&run, va, |steps, pf| {
                // A not-present user fault, W/R as the access.
                assert_eq!(pf.error_code, code, "{c:?}");
                let idx = (pf.addr.as_u64() >> 12) & (POOL - 1);
                let off = idx * u64::from(size);
                assert_eq!(steps.read(off, size, |v| v & 1 == 0), Some(0));
                // The wrong size is refused.
                assert_eq!(steps.read(off, 12 - size, |_| true), None);
                if c.stops(idx) {
                    return Err(idx);
                }
                if !steps.write(off, size, c.leaf(idx)) {
                    took.refused_writes += 1;
                    return Err(idx);
                }
                Ok(())
            });
            let done = (r.at - va) / 4096;
            // A page the run took whole was retried through the quick fill.
            retries.extend((i..i + done).map(|k| (k, true)));
            took.pages += done;
            i += done;
            let va = VirtAddr::new(USER + i * 4096);
            match r.stop {
                None => continue,
                Some(RunStop::Untouched) => {}
                Some(RunStop::Handler(pf, idx)) => {
                    assert_eq!((idx, pf.addr), (i, va));
                    session_step::<F>(&mut sess, c.format, slot, i, Some(c.leaf(i)));
                    retries.push((i, sess.translate_refault(va, c.access).is_ok()));
                    i += 1;
                    continue;
                }
                Some(RunStop::Retry(pf)) => {
                    assert_eq!(pf.addr, va);
                    retries.push((i, sess.translate_refault(va, c.access).is_ok()));
                    i += 1;
                    continue;
                }
            }
        }
        page_on_session::<F>(&mut sess, c, slot, i, retries);
        i += 1;
    }
    check(POOL, sess.cpu());
    took
}

/// The CPUs' registers, counters and TLBs (replacement state included) after `done` pages.
fn same_cpu(a: &machine::Cpu, b: &machine::Cpu, c: Case, done: u64) {
    assert_eq!(a.counters(), b.counters(), "{c:?}: counters at {done}");
    assert_eq!(a.regs(), b.regs(), "{c:?}: registers at {done}");
    let (ta, tb) = (format!("{:?}", a.tlb()), format!("{:?}", b.tlb()));
    assert!(ta == tb, "{c:?}: TLBs differ at {done}");
}

/// Both machines' page tables.
fn same_tables(a: &Setup, b: &Setup, c: Case) {
    for i in 0..POOL {
        let at = a.table + i * entry(c.format);
        let (va, vb) = (read(&a.m.mem, c.format, at), read(&b.m.mem, c.format, at));
        assert_eq!(va, vb, "{c:?}: page {i}'s entry");
    }
    assert_eq!(
        read(&a.m.mem, c.format, a.slot_pte),
        read(&b.m.mem, c.format, b.slot_pte)
    );
}

/// The comparison of `c`; what the runs took, and the retries' outcomes.
fn runs_in<const F: u8>(c: Case) -> (Took, Vec<(u64, bool)>) {
    let mut a = setup(TlbGeometry::Core2, c);
    let mut b = setup(TlbGeometry::Core2, c);
    let (mut a_done, mut checks) = (0, 0);
    let (mut ra, mut rb) = (Vec::new(), Vec::new());
    let took = reader_in_runs::<F>(&mut b, c, &mut rb, |done, cpu| {
        reader_by_steps(&mut a, c, a_done, done, &mut ra);
        a_done = done;
        checks += 1;
        same_cpu(&a.m.cpus[0], cpu, c, done);
    });
    same_tables(&a, &b, c);
    assert_eq!(ra, rb, "{c:?}: the retries' outcomes");
    assert!(checks > 1, "{c:?}: {checks} checks");
    (took, ra)
}

/// [`runs_in`] in the case's paging format.
fn runs(c: Case) -> (Took, Vec<(u64, bool)>) {
    if c.format == Format::Pae {
        runs_in::<{ Format::Pae as u8 }>(c)
    } else {
        runs_in::<{ Format::TwoLevel as u8 }>(c)
    }
}

#[test]
fn a_run_leaves_the_state_of_its_steps() {
    for access in [Access::USER_READ, Access::USER_WRITE] {
        for format in [Format::Pae, Format::TwoLevel] {
            let c = Case {
                format,
                access,
                slot_flags: 0x63,
                pat: Pattern::sparse(),
            };
            let (took, retries) = runs(c);
            // Apart from the stops, every page is a run's (each of the slot's TLB set, one
            // in 64, and each stop costs a run at most its page).
            assert!(took.pages > POOL * 3 / 4, "{c:?}: {} pages", took.pages);
            assert!(took.pages < POOL, "{c:?}: the stops were not taken");
            assert_eq!(took.refused_writes, 0, "{c:?}");
            // A reader's entries without U make its retry fault; a writer's clean ones do not.
            let faulted = retries.iter().any(|r| !r.1);
            assert_eq!(faulted, !c.write(), "{c:?}: a retry faulted");
        }
    }
}

/// A bitmap of the pool with about one page in `2^k` set.
fn sparse_bits(k: usize) -> impl Strategy<Value = [u64; 8]> {
    proptest::array::uniform8(proptest::collection::vec(any::<u64>(), k))
        .prop_map(|w| w.map(|v| v.into_iter().fold(u64::MAX, |a, b| a & b)))
}

fn patterns() -> impl Strategy<Value = Pattern> {
    (
        sparse_bits(4),
        sparse_bits(4),
        sparse_bits(3),
        sparse_bits(4),
        sparse_bits(4),
    )
        .prop_map(|(premapped, stale, stops, no_a, no_right)| Pattern {
            premapped,
            stale,
            stops,
            no_a,
            no_right,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    /// Random pools: stops anywhere, next to each other, at a run's first or last page.
    #[test]
    fn a_run_leaves_the_state_of_its_steps_on_any_pool(
        pat in patterns(),
        write in any::<bool>(),
        pae in any::<bool>(),
    ) {
        let c = Case::drawn(pat, write, pae);
        let (took, _) = runs(c);
        prop_assert_eq!(took.refused_writes, 0);
    }
}

/// A run is refused where its tests do not hold, and a run made before the session
/// handed out the CPU is refused after.
fn refusals<const F: u8>(format: Format) {
    let end = USER + POOL * 4096;
    let read = Access::USER_READ;
    let c = Case {
        format,
        access: read,
        slot_flags: 0x63,
        pat: Pattern::sparse(),
    };
    for geometry in [TlbGeometry::Core2, TlbGeometry::Unbounded] {
        let mut s = setup(geometry, c);
        let slot = s.slot();
        let mut sess = SlotSession::new(&mut s.m.cpus[0], &mut s.m.mem);
        // The first step's walk sets A in the slot's directory entry; the second is
        // remembered.
        for _ in 0..2 {
            assert_eq!(session_step::<F>(&mut sess, format, slot, 1, None), 0);
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
        let run = run.expect("a run");
        let no_fault = |_: &mut RunSteps, _| -> Result<(), ()> { panic!("no fault here") };
        // A start before the run's pages, or not on a page.
        for from in [USER - 4096, USER + 8] {
            let r = sess.run_faults(&run, from, no_fault);
            assert!(matches!(r.stop, Some(RunStop::Untouched)) && r.at == from);
        }
        // Handed out: the run and the ticket are refused.
        let _ = sess.parts();
        assert!(sess.fault_run(t, USER, end, read).is_none());
        let r = sess.run_faults(&run, USER, no_fault);
        assert!(matches!(r.stop, Some(RunStop::Untouched)) && r.at == USER);
    }
}

#[test]
fn a_run_is_refused_where_its_tests_fail() {
    refusals::<{ Format::Pae as u8 }>(Format::Pae);
    refusals::<{ Format::TwoLevel as u8 }>(Format::TwoLevel);
}

/// A slot entry that is clean: a read through the slot is a step the session remembers,
/// but a write would need the walk to set D, so a run's handler may not write through it.
fn clean_slot<const F: u8>(format: Format) {
    let c = Case {
        format,
        access: Access::USER_READ,
        slot_flags: 0x23,
        pat: Pattern::sparse(),
    };
    let mut s = setup(TlbGeometry::Core2, c);
    let (slot, table) = (s.slot(), s.table);
    let mut sess = SlotSession::new(&mut s.m.cpus[0], &mut s.m.mem);
    for _ in 0..2 {
        assert_eq!(session_step::<F>(&mut sess, format, slot, 1, None), 0);
    }
    let t = sess.again::<F>().expect("a remembered read");
    let run = sess
        .fault_run(t, USER, USER + POOL * 4096, c.access)
        .expect("a run");
    let size = format.entry_size();
    // Page 1 (page 0 shares the slot's TLB set).
    let from = USER + 4096;
    let r = sess.run_faults(&run, from, |steps, pf| {
        let off = (pf.addr.as_u64() >> 12 & (POOL - 1)) * u64::from(size);
        assert_eq!(steps.read(off, size, |_| true), Some(0));
        match steps.write(off, size, c.leaf(0)) {
            true => Ok(()),
            false => Err(()),
        }
    });
    assert!(matches!(r.stop, Some(RunStop::Handler(_, ()))) && r.at == from);
    assert_eq!(r.steps, 1, "the read only");
    let entry = table + u64::from(size);
    assert_eq!(read(sess.mem(), format, entry), 0, "nothing written");
}

#[test]
fn a_clean_slot_entry_refuses_the_runs_writes() {
    clean_slot::<{ Format::Pae as u8 }>(Format::Pae);
    clean_slot::<{ Format::TwoLevel as u8 }>(Format::TwoLevel);
}

/// The reader through the kernel's direct map (a low-memory PTE page): each fault's read
/// and write of the entry are plain loads and stores, no slot steps.
fn direct_by_steps(s: &mut Setup, c: Case, from: u64, to: u64, retries: &mut Vec<(u64, bool)>) {
    let size = entry(c.format);
    for i in from..to {
        let va = VirtAddr::new(USER + i * 4096);
        match s.m.translate(0, va, c.access) {
            Ok(_) => continue,
            Err(AccessError::PageFault(_)) => {}
            Err(e) => panic!("page {i}: {e}"),
        }
        assert_eq!(read(&s.m.mem, c.format, s.table + i * size), 0);
        write(&mut s.m.mem, c.format, s.table + i * size, c.leaf(i));
        retries.push((i, s.m.translate(0, va, c.access).is_ok()));
    }
}

/// The same reader in direct fault runs (`Machine::direct_fault_run`), a stopped page's
/// rest one step at a time; `check` sees the CPU each time the pages before `i` are done.
fn direct_in_runs(
    s: &mut Setup,
    c: Case,
    retries: &mut Vec<(u64, bool)>,
    mut check: impl FnMut(u64, &machine::Cpu),
) -> u64 {
    let (end, size) = (USER + POOL * 4096, c.format.entry_size());
    let (mut i, mut in_runs) = (0, 0);
    while i < POOL {
        check(i, &s.m.cpus[0]);
        let va = USER + i * 4096;
        let r =
            s.m.direct_fault_run(0, va, end, c.access, s.table, |steps, pf| {
                let idx = (pf.addr.as_u64() >> 12) & (POOL - 1);
                let off = idx * u64::from(size);
                assert_eq!(steps.read(off, size, |v| v & 1 == 0), Some(0));
                if c.stops(idx) {
                    return Err(idx);
                }
                assert!(steps.write(off, size, c.leaf(idx)));
                Ok(())
            });
        let done = (r.at - va) / 4096;
        retries.extend((i..i + done).map(|k| (k, true)));
        in_runs += done;
        i += done;
        let va = VirtAddr::new(USER + i * 4096);
        match r.stop {
            None => continue,
            Some(RunStop::Untouched) => direct_by_steps(s, c, i, i + 1, retries),
            Some(RunStop::Handler(_, idx)) => {
                assert_eq!(idx, i);
                write(
                    &mut s.m.mem,
                    c.format,
                    s.table + i * u64::from(size),
                    c.leaf(i),
                );
                retries.push((i, s.m.translate(0, va, c.access).is_ok()));
            }
            Some(RunStop::Retry(_)) => {
                retries.push((i, s.m.translate(0, va, c.access).is_ok()));
            }
        }
        i += 1;
    }
    check(POOL, &s.m.cpus[0]);
    in_runs
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    /// Direct runs on random pools (and the fixed one, first), reads and writes, PAE and
    /// 2-level: the same CPU at every stop, the same page tables and retries.
    #[test]
    fn a_direct_run_leaves_the_state_of_its_steps(
        pat in patterns(),
        write in any::<bool>(),
        pae in any::<bool>(),
        fixed in any::<bool>(),
    ) {
        let c = Case::drawn(if fixed { Pattern::sparse() } else { pat }, write, pae);
        let mut a = setup(TlbGeometry::Core2, c);
        let mut b = setup(TlbGeometry::Core2, c);
        let (mut a_done, mut ra, mut rb) = (0, Vec::new(), Vec::new());
        let in_runs = direct_in_runs(&mut b, c, &mut rb, |done, cpu| {
            direct_by_steps(&mut a, c, a_done, done, &mut ra);
            a_done = done;
            same_cpu(&a.m.cpus[0], cpu, c, done);
        });
        same_tables(&a, &b, c);
        prop_assert_eq!(ra, rb);
        // No slot: the slot's TLB set stops no run.
        if fixed {
            prop_assert!(in_runs > POOL * 3 / 4, "{} pages in runs", in_runs);
        }
    }
}

/// A direct run is refused for a PTE page outside the kernel's direct map.
#[test]
fn a_direct_run_needs_the_direct_map() {
    let c = Case {
        format: Format::Pae,
        access: Access::USER_READ,
        slot_flags: 0x63,
        pat: Pattern::sparse(),
    };
    let mut s = setup(TlbGeometry::Core2, c);
    let end = USER + POOL * 4096;
    let no_fault = |_: &mut RunSteps, _| -> Result<(), ()> { panic!("no fault here") };
    s.m.mem.set_window_end(machine::PhysAddr::new(s.table));
    let r =
        s.m.direct_fault_run(0, USER + 4096, end, c.access, s.table, no_fault);
    assert!(matches!(r.stop, Some(RunStop::Untouched)) && r.at == USER + 4096);
    // Another PTE page than the directory's.
    s.m.mem.set_window_end(machine::PhysAddr::new(16 << 20));
    let r =
        s.m.direct_fault_run(0, USER + 4096, end, c.access, s.table + 4096, no_fault);
    assert!(matches!(r.stop, Some(RunStop::Untouched)) && r.at == USER + 4096);
}
