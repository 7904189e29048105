//! Property test: the data-driven MMU (through a CPU, TLB included, on both TLB geometries)
//! agrees with a plain, hand-written reference walk for 2-level and PAE paging on randomly built tables —
//! translations, page sizes, global bits, fault error codes, bus errors, the PDPTE #GP, and
//! the Accessed/Dirty bits left in RAM.
//!
//! The reference below spells every mask out literally for a CPU with 36 physical address
//! bits, PSE-36 and PAT (QEMU `qemu32,+pse36,+nx`); it shares no code with the crate's
//! walker. Tables are random words in 16 frames of RAM: entries point at any frame
//! (including tables themselves, and frames 16–19 which are not RAM), carry random flags,
//! large pages, NX and stray reserved bits.

use machine::cpu::{CpuError, CpuFeatures, Cr0, Cr4, Efer};
use machine::machine::Machine;
use machine::mmu::{Access, AccessError, AccessKind, Privilege};
use machine::paging::PageSize;
use machine::TlbGeometry;
use machine::{Pfn, PhysAddr, PhysMem, VirtAddr};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

const FRAMES: u64 = 16;
const ROOT: u64 = 0x1000;
/// Table frames that receive random entries.
const TABLE_FRAMES: std::ops::Range<u64> = 1..12;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fmt {
    TwoLevel,
    Pae,
}

/// Entry slots that get random contents in every table frame, and from which linear
/// addresses are built, so that walks actually go somewhere.
fn hot_slots(fmt: Fmt) -> &'static [u64] {
    match fmt {
        Fmt::TwoLevel => &[0, 1, 0x155, 0x300, 0x3ff],
        Fmt::Pae => &[0, 1, 0x55, 0x1ff],
    }
}

#[derive(Clone, Copy, Debug)]
struct RefAccess {
    write: bool,
    fetch: bool,
    user: bool,
}

#[derive(Clone, Debug)]
struct Case {
    fmt: Fmt,
    /// PAE: offset of the PDPT inside the root frame (32-byte aligned).
    pdpt_off: u64,
    pdptes: [u64; 4],
    /// (physical address of the entry, raw value); 4-byte entries use the low half.
    entries: Vec<(u64, u64)>,
    pse: bool,
    pge: bool,
    wp: bool,
    nxe: bool,
    accesses: Vec<(u64, RefAccess)>,
}

/// The result of running a case: the outcome of every access and the final RAM, or `None`
/// when loading the PDPTE registers raised #GP.
type Run = Option<(Vec<Outcome>, Vec<u8>)>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Ok {
        phys: u64,
        large: bool,
        global: bool,
    },
    Fault(u32),
    Bus,
}

// ---------------------------------------------------------------------------------------
// The reference: plain RAM and two hand-written walks.

struct RefMem(Vec<u8>);

impl RefMem {
    fn r32(&self, pa: u64) -> Option<u32> {
        let i = usize::try_from(pa).ok()?;
        let b = self.0.get(i..i + 4)?;
        Some(u32::from_le_bytes(b.try_into().ok()?))
    }
    fn r64(&self, pa: u64) -> Option<u64> {
        let i = usize::try_from(pa).ok()?;
        let b = self.0.get(i..i + 8)?;
        Some(u64::from_le_bytes(b.try_into().ok()?))
    }
    fn w32(&mut self, pa: u64, v: u32) {
        let i = pa as usize;
        self.0[i..i + 4].copy_from_slice(&v.to_le_bytes());
    }
    fn w64(&mut self, pa: u64, v: u64) {
        let i = pa as usize;
        self.0[i..i + 8].copy_from_slice(&v.to_le_bytes());
    }
}

struct RefCpu {
    cr3: u64,
    pdptes: [u64; 4],
    pse: bool,
    pge: bool,
    wp: bool,
    nxe: bool,
}

fn error_code(c: &RefCpu, pae: bool, a: RefAccess, p: bool, rsvd: bool) -> u32 {
    let mut e = 0;
    if p {
        e |= 1;
    }
    if a.write {
        e |= 2;
    }
    if a.user {
        e |= 4;
    }
    if rsvd {
        e |= 8;
    }
    if a.fetch && pae && c.nxe {
        e |= 16;
    }
    e
}

fn allowed(c: &RefCpu, a: RefAccess, rw: bool, us: bool, nx: bool) -> bool {
    if a.user && !us {
        return false;
    }
    if a.write && !rw && (a.user || c.wp) {
        return false;
    }
    !(a.fetch && nx)
}

fn ref_two_level(mem: &mut RefMem, c: &RefCpu, va: u64, a: RefAccess) -> Outcome {
    let fault = |p, r| Outcome::Fault(error_code(c, false, a, p, r));
    let pde_at = (c.cr3 & 0xffff_f000) + ((va >> 22) << 2);
    let Some(pde) = mem.r32(pde_at) else {
        return Outcome::Bus;
    };
    if pde & 1 == 0 {
        return fault(false, false);
    }
    if c.pse && pde & 0x80 != 0 {
        // 4 MiB page; MAXPHYADDR 36: bits 16:13 are physical 35:32, bits 21:17 reserved
        if pde & 0x003e_0000 != 0 {
            return fault(true, true);
        }
        if !allowed(c, a, pde & 2 != 0, pde & 4 != 0, false) {
            return fault(true, false);
        }
        mem.w32(pde_at, pde | 0x20 | if a.write { 0x40 } else { 0 });
        let phys = u64::from(pde & 0xffc0_0000) | (u64::from((pde >> 13) & 0xf) << 32);
        return Outcome::Ok {
            phys: phys | (va & 0x3f_ffff),
            large: true,
            global: c.pge && pde & 0x100 != 0,
        };
    }
    mem.w32(pde_at, pde | 0x20);
    let pte_at = u64::from(pde & 0xffff_f000) + (((va >> 12) & 0x3ff) << 2);
    let Some(pte) = mem.r32(pte_at) else {
        return Outcome::Bus;
    };
    if pte & 1 == 0 {
        return fault(false, false);
    }
    if !allowed(c, a, pde & pte & 2 != 0, pde & pte & 4 != 0, false) {
        return fault(true, false);
    }
    mem.w32(pte_at, pte | 0x20 | if a.write { 0x40 } else { 0 });
    Outcome::Ok {
        phys: u64::from(pte & 0xffff_f000) | (va & 0xfff),
        large: false,
        global: c.pge && pte & 0x100 != 0,
    }
}

fn ref_pae(mem: &mut RefMem, c: &RefCpu, va: u64, a: RefAccess) -> Outcome {
    let fault = |p, r| Outcome::Fault(error_code(c, true, a, p, r));
    let rsvd = 0x7fff_fff0_0000_0000u64 | if c.nxe { 0 } else { 1 << 63 };
    let nx_of = |e: u64| c.nxe && e >> 63 != 0;
    let pdpte = c.pdptes[((va >> 30) & 3) as usize];
    if pdpte & 1 == 0 {
        return fault(false, false);
    }
    let pde_at = (pdpte & 0xf_ffff_f000) + (((va >> 21) & 0x1ff) << 3);
    let Some(pde) = mem.r64(pde_at) else {
        return Outcome::Bus;
    };
    if pde & 1 == 0 {
        return fault(false, false);
    }
    if pde & 0x80 != 0 {
        // 2 MiB page: bits 20:13 reserved
        if pde & (rsvd | 0x1f_e000) != 0 {
            return fault(true, true);
        }
        if !allowed(c, a, pde & 2 != 0, pde & 4 != 0, nx_of(pde)) {
            return fault(true, false);
        }
        mem.w64(pde_at, pde | 0x20 | if a.write { 0x40 } else { 0 });
        return Outcome::Ok {
            phys: (pde & 0xf_ffe0_0000) | (va & 0x1f_ffff),
            large: true,
            global: c.pge && pde & 0x100 != 0,
        };
    }
    if pde & rsvd != 0 {
        return fault(true, true);
    }
    mem.w64(pde_at, pde | 0x20);
    let pte_at = (pde & 0xf_ffff_f000) + (((va >> 12) & 0x1ff) << 3);
    let Some(pte) = mem.r64(pte_at) else {
        return Outcome::Bus;
    };
    if pte & 1 == 0 {
        return fault(false, false);
    }
    if pte & rsvd != 0 {
        return fault(true, true);
    }
    if !allowed(
        c,
        a,
        pde & pte & 2 != 0,
        pde & pte & 4 != 0,
        nx_of(pde) || nx_of(pte),
    ) {
        return fault(true, false);
    }
    mem.w64(pte_at, pte | 0x20 | if a.write { 0x40 } else { 0 });
    Outcome::Ok {
        phys: (pte & 0xf_ffff_f000) | (va & 0xfff),
        large: false,
        global: c.pge && pte & 0x100 != 0,
    }
}

/// Run the reference over a case: `None` if loading the PDPTEs raises #GP, else the
/// outcome of every access and the final RAM.
fn reference(case: &Case) -> Run {
    let mut mem = RefMem(vec![0; (FRAMES * 4096) as usize]);
    setup_ref(case, &mut mem);
    let cr3 = ROOT + case.pdpt_off;
    let mut pdptes = [0u64; 4];
    if case.fmt == Fmt::Pae {
        for (i, p) in pdptes.iter_mut().enumerate() {
            *p = mem.r64((cr3 & 0xffff_ffe0) + 8 * i as u64)?;
            let reserved = 0b110 | 0x1e0 | 0xffff_fff0_0000_0000;
            if *p & 1 != 0 && *p & reserved != 0 {
                return None;
            }
        }
    }
    let cpu = RefCpu {
        cr3,
        pdptes,
        pse: case.pse,
        pge: case.pge,
        wp: case.wp,
        nxe: case.nxe,
    };
    let outcomes = case
        .accesses
        .iter()
        .map(|&(va, a)| match case.fmt {
            Fmt::TwoLevel => ref_two_level(&mut mem, &cpu, va, a),
            Fmt::Pae => ref_pae(&mut mem, &cpu, va, a),
        })
        .collect();
    Some((outcomes, mem.0))
}

fn setup_ref(case: &Case, mem: &mut RefMem) {
    for &(at, raw) in &case.entries {
        match case.fmt {
            Fmt::TwoLevel => mem.w32(at, raw as u32),
            Fmt::Pae => mem.w64(at, raw),
        }
    }
    if case.fmt == Fmt::Pae {
        for (i, &p) in case.pdptes.iter().enumerate() {
            mem.w64(ROOT + case.pdpt_off + 8 * i as u64, p);
        }
    }
}

// ---------------------------------------------------------------------------------------
// The model: a Machine, set up through its control registers.

fn model(case: &Case, tlb: TlbGeometry) -> Result<Run, TestCaseError> {
    let mem = PhysMem::new(&[(PhysAddr::new(0), FRAMES * 4096)])
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let mut m = Machine::with_features(mem, 1, CpuFeatures::default().with_tlb(tlb));
    // Build the same RAM image.
    let mut image = RefMem(vec![0; (FRAMES * 4096) as usize]);
    setup_ref(case, &mut image);
    m.mem
        .write(PhysAddr::new(0), &image.0)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;

    let mut cr4 = Cr4::empty();
    if case.pse {
        cr4 |= Cr4::PSE;
    }
    if case.pge {
        cr4 |= Cr4::PGE;
    }
    if case.fmt == Fmt::Pae {
        cr4 |= Cr4::PAE;
    }
    let mut cr0 = Cr0::PE | Cr0::PG;
    if case.wp {
        cr0 |= Cr0::WP;
    }
    let efer = if case.nxe { Efer::NXE } else { Efer::empty() };
    let setup = m
        .write_efer(0, efer)
        .and_then(|_| m.write_cr3(0, ROOT + case.pdpt_off))
        .and_then(|_| m.write_cr4(0, cr4))
        .and_then(|_| m.write_cr0(0, cr0));
    match setup {
        Ok(()) => {}
        Err(CpuError::GeneralProtection(_)) => return Ok(None),
        Err(e) => return Err(TestCaseError::fail(format!("setup: {e}"))),
    }

    let mut outcomes = Vec::new();
    for &(va, a) in &case.accesses {
        let access = Access::new(
            if a.write {
                AccessKind::Write
            } else if a.fetch {
                AccessKind::Execute
            } else {
                AccessKind::Read
            },
            if a.user {
                Privilege::User
            } else {
                Privilege::Supervisor
            },
        );
        let va = VirtAddr::new(va);
        // A side-effect-free probe first: it must not change RAM.
        let before = snapshot(&m.mem)?;
        let _ = m.cpus[0].probe(&m.mem, va, access);
        prop_assert_eq!(&before, &snapshot(&m.mem)?, "probe changed RAM");

        let o = match m.translate(0, va, access) {
            Ok(pa) => {
                // the translation is in the TLB now: its size and G say what the walk found
                let Some(e) = m.cpus[0].tlb_lookup(va) else {
                    return Err(TestCaseError::fail("translation not cached"));
                };
                Outcome::Ok {
                    phys: pa.as_u64(),
                    large: e.size != PageSize::Size4K,
                    global: e.global,
                }
            }
            Err(AccessError::PageFault(f)) => {
                prop_assert_eq!(f.addr, va);
                Outcome::Fault(f.error_code.bits())
            }
            Err(AccessError::Bus(_)) => Outcome::Bus,
            Err(e) => return Err(TestCaseError::fail(format!("unexpected {e}"))),
        };
        outcomes.push(o);
    }
    Ok(Some((outcomes, snapshot(&m.mem)?)))
}

fn snapshot(mem: &PhysMem) -> Result<Vec<u8>, TestCaseError> {
    let mut out = Vec::with_capacity((FRAMES * 4096) as usize);
    for f in 0..FRAMES {
        let frame = mem
            .frame(Pfn::new(f))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        out.extend_from_slice(frame);
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Strategies.

/// A random entry: mostly pointers to frames (some past the end of RAM), some large
/// pages, some noise; flags random with P biased on; sometimes NX or a stray high bit.
fn raw_entry(fmt: Fmt) -> impl Strategy<Value = u64> {
    (
        0u8..8,
        target_frame(),
        any::<u16>(),
        any::<u64>(),
        prop::bool::weighted(0.85),
        prop::bool::weighted(0.1),
        prop::option::weighted(0.1, 13u32..64),
    )
        .prop_map(move |(kind, frame, low, big, present, nx, stray)| {
            let low = u64::from(low & 0xfff) | u64::from(present);
            let raw = match (fmt, kind) {
                (_, 0..=4) => (frame << 12) | low,
                (Fmt::TwoLevel, 5 | 6) => {
                    // 4 MiB page with PSE-36 bits (some beyond MAXPHYADDR)
                    ((big & 0x3ff) << 22) | (((big >> 10) & 0xf) << 13) | low | 0x80
                }
                (Fmt::Pae, 5 | 6) => ((big & 0x7fff) << 21) | low | 0x80,
                _ => big | u64::from(present),
            };
            let raw = match fmt {
                Fmt::TwoLevel => raw & 0xffff_ffff,
                Fmt::Pae => raw | if nx { 1 << 63 } else { 0 },
            };
            match stray {
                Some(bit) if fmt == Fmt::Pae || bit < 32 => raw | (1 << bit),
                _ => raw,
            }
        })
}

/// A frame for an entry to point at: mostly the populated table frames, sometimes frame 0,
/// an empty frame, or a frame past the end of RAM.
fn target_frame() -> impl Strategy<Value = u64> {
    prop_oneof![
        8 => TABLE_FRAMES,
        1 => 0u64..1,
        1 => TABLE_FRAMES.end..FRAMES + 4,
    ]
}

fn pdpte() -> impl Strategy<Value = u64> {
    prop_oneof![
        1 => any::<u64>().prop_map(|r| r & !1),
        8 => (target_frame(), 0u64..4).prop_map(|(f, c)| (f << 12) | (c << 3) | 1),
        1 => (1u64..12, prop::sample::select(vec![1u32, 2, 5, 6, 7, 8, 36, 50, 63]))
            .prop_map(|(f, bit)| (f << 12) | 1 | (1 << bit)),
    ]
}

fn access(fmt: Fmt) -> impl Strategy<Value = (u64, RefAccess)> {
    let slots = hot_slots(fmt);
    (
        prop::sample::select(slots),
        prop::sample::select(slots),
        0u64..4,
        0u64..4096,
        0u8..3,
        any::<bool>(),
    )
        .prop_map(move |(top, mid, pdpt, off, kind, user)| {
            let va = match fmt {
                Fmt::TwoLevel => ((top & 0x3ff) << 22) | ((mid & 0x3ff) << 12) | off,
                Fmt::Pae => (pdpt << 30) | ((top & 0x1ff) << 21) | ((mid & 0x1ff) << 12) | off,
            };
            let a = RefAccess {
                write: kind == 1,
                fetch: kind == 2,
                user,
            };
            (va, a)
        })
}

fn case(fmt: Fmt) -> impl Strategy<Value = Case> {
    let slots = hot_slots(fmt);
    let n = (TABLE_FRAMES.end - TABLE_FRAMES.start) as usize * slots.len();
    let stride = if fmt == Fmt::TwoLevel { 4 } else { 8 };
    (
        prop::collection::vec(prop::option::weighted(0.8, raw_entry(fmt)), n),
        prop::array::uniform4(pdpte()),
        0u64..128,
        any::<[bool; 4]>(),
        prop::collection::vec(access(fmt), 1..24),
    )
        .prop_map(move |(raws, pdptes, off, [pse, pge, wp, nxe], accesses)| {
            let mut entries = Vec::new();
            for (i, raw) in raws.into_iter().enumerate() {
                let Some(raw) = raw else { continue };
                let frame = TABLE_FRAMES.start + (i / slots.len()) as u64;
                let slot = slots[i % slots.len()];
                entries.push(((frame << 12) + slot * stride, raw));
            }
            Case {
                fmt,
                pdpt_off: off * 32,
                pdptes,
                entries,
                pse,
                pge,
                wp,
                nxe,
                accesses,
            }
        })
}

fn check(case: &Case) -> Result<(), TestCaseError> {
    let expected = reference(case);
    for tlb in [TlbGeometry::Core2, TlbGeometry::Unbounded] {
        check_against(&expected, &model(case, tlb)?)?;
    }
    Ok(())
}

fn check_against(expected: &Run, got: &Run) -> Result<(), TestCaseError> {
    match (expected, got) {
        (None, None) => Ok(()),
        (Some((eo, emem)), Some((go, gmem))) => {
            prop_assert_eq!(eo, go, "outcomes differ");
            if emem != gmem {
                let at = emem.iter().zip(gmem).position(|(a, b)| a != b).unwrap_or(0);
                return Err(TestCaseError::fail(format!(
                    "RAM differs first at {at:#x}: reference {:02x?} model {:02x?}",
                    &emem[at & !7..(at & !7) + 8],
                    &gmem[at & !7..(at & !7) + 8]
                )));
            }
            Ok(())
        }
        _ => Err(TestCaseError::fail(format!(
            "PDPTE #GP: reference {} model {}",
            expected.is_none(),
            got.is_none()
        ))),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn two_level_walk_matches_reference(c in case(Fmt::TwoLevel)) {
        check(&c)?;
    }

    #[test]
    fn pae_walk_matches_reference(c in case(Fmt::Pae)) {
        check(&c)?;
    }
}

/// The generators must exercise every kind of outcome, or the property above proves
/// little: sample cases deterministically and count what the reference says.
#[test]
fn generators_reach_every_outcome() {
    for fmt in [Fmt::TwoLevel, Fmt::Pae] {
        let config = Config {
            failure_persistence: None,
            ..Config::default()
        };
        let mut runner =
            TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha));
        let strategy = case(fmt);
        let (mut ok, mut large, mut global, mut not_present, mut prot, mut rsvd, mut bus) =
            (0, 0, 0, 0, 0, 0, 0);
        let mut gp = 0;
        for _ in 0..400 {
            let Ok(tree) = strategy.new_tree(&mut runner) else {
                panic!("strategy failed")
            };
            let c = tree.current();
            let Some((outcomes, _)) = reference(&c) else {
                gp += 1;
                continue;
            };
            for o in &outcomes {
                match *o {
                    Outcome::Ok {
                        large: l,
                        global: g,
                        ..
                    } => {
                        ok += 1;
                        large += usize::from(l);
                        global += usize::from(g);
                    }
                    Outcome::Fault(e) if e & 8 != 0 => rsvd += 1,
                    Outcome::Fault(e) if e & 1 != 0 => prot += 1,
                    Outcome::Fault(_) => not_present += 1,
                    Outcome::Bus => bus += 1,
                }
            }
        }
        let counts = [ok - large, large, global, not_present, prot, rsvd, bus];
        eprintln!("{fmt:?}: 4k/large/global/not-present/prot/rsvd/bus {counts:?}, #GP {gp}");
        assert!(counts.iter().all(|&n| n >= 20), "{fmt:?}: {counts:?}");
        if fmt == Fmt::Pae {
            assert!(gp >= 5, "PAE: only {gp} PDPTE #GP cases");
        }
    }
}
