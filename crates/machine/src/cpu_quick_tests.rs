//! Property test: the quick miss, the retry's quick refill and the quick not-present fault
//! of 4-level paging ([`Cpu::quick_miss`], [`Cpu::quick_refill`] in `translate_refault`,
//! `Cpu::fault_absent` in `translate_unmapped`) and `invlpg_noted` against the full walk
//! and `invlpg`. Two CPUs with identical RAM run the same sequence of accesses, INVLPGs,
//! table edits and CR3 reloads: one through `translate` / `translate_unmapped` /
//! `translate_refault` and `invlpg` / `invlpg_noted` as the kernel calls them, the other with its quick misses replaced by [`Cpu::no_quick_miss`] and
//! only `translate`, so that every miss takes the full slow path. After every step the
//! results, the registers (CR2), the counters, the TLB (its whole state with the hardware
//! geometry, every generated page's entry with the debug one, whose spill map prints in
//! no fixed order) and all of RAM (the A/D bits) must agree.
//!
//! Tables are random entries in the hot slots of 15 table frames: pointers mostly to the
//! table frames, else to any frame (RAM, the hole between the two banks, past the last one),
//! P, A, W, U, D, G, PS and NX random (P and A biased on, so that walks go deep and the
//! quick path is taken), stray reserved bits, ignored high bits (62:52), large pages
//! aligned or not. Linear addresses come from the hot slots of every level, in both
//! halves, sometimes non-canonical; the hot slots put many pages in one TLB set, so the
//! hardware geometry evicts and the debug geometry spills.

use super::*;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

/// RAM: 4 MiB from 0 (two whole 2 MiB granules, so the quick not-present fault, which
/// reads only there, has somewhere to read), a hole, 16 KiB at 6 MiB (reads in the hole
/// are below the end of the last bank).
const LOW: u64 = 4 << 20;
const HIGH: (u64, u64) = (0x600, 4);
/// Frames entries point at besides the table frames: low RAM ...
const LOW_TARGETS: u64 = 24;
/// ... and the hole, the high bank, past its end.
const FAR_TARGETS: [u64; 6] = [0x500, 0x5ff, 0x600, 0x603, 0x604, 0x7000];
/// Table frames with random entries (CR3 is frame 1).
const TABLE_FRAMES: std::ops::Range<u64> = 1..16;
const HOT: [u64; 4] = [0, 1, 0x100, 0x1ff];
/// The sweep region: PML4 slot 0x1ff (the last hot slot) → frame 16 → 17 → the page
/// table in frame 18, all 512 PTEs random, mapping frames from [`SWEEP_DATA`].
const SWEEP: u64 = 0xffff_ff80_0000_0000;
const SWEEP_TABLES: [u64; 3] = [16, 17, 18];
const SWEEP_DATA: u64 = 0x100;
/// Hot slots in all: every one gets an entry.
const SLOTS: usize = (TABLE_FRAMES.end - TABLE_FRAMES.start) as usize * HOT.len();

#[derive(Clone, Copy, Debug)]
enum Op {
    /// (linear address index, access kind 0..6, entry point: [`translate_by`])
    Access(usize, u8, u8),
    /// (linear address index, through `invlpg_noted`)
    Invlpg(usize, bool),
    /// (table frame, hot slot, raw entry)
    Write(u64, usize, u64),
    Cr3,
    /// (first page, pages, access kind, entry point): a streaming run over the sweep
    /// region, as a process reading a segment (fills into full sets).
    Sweep(u64, u64, u8, u8),
}

#[derive(Clone, Debug)]
struct Case {
    /// Every hot slot of every table frame, frame by frame.
    entries: Vec<u64>,
    /// The sweep region's PTE flags (bits 11:0 and NX as bit 12), one per page.
    sweep: Vec<u16>,
    addrs: Vec<u64>,
    ops: Vec<Op>,
    pge: bool,
    wp: bool,
    nxe: bool,
    core2: bool,
}

/// What a run saw, to check that the generators reach the quick paths.
#[derive(Clone, Copy, Debug, Default)]
struct Seen {
    quick_fills: u64,
    quick_faults: u64,
    faults: u64,
    oks: u64,
    evictions: u64,
}

fn raw_entry() -> impl Strategy<Value = u64> {
    (
        prop_oneof![
            12 => TABLE_FRAMES,
            2 => 0..LOW_TARGETS,
            1 => prop::sample::select(&FAR_TARGETS[..]),
        ],
        any::<u16>(),
        0u8..16,
        0u8..40,
        prop::bool::weighted(0.97),
        prop::bool::weighted(0.8),
    )
        .prop_map(|(frame, low, big, extra, present, accessed)| {
            // W, U, PWT, PCD, D, PS, G and the software bits at random; P and A biased.
            let mut raw = (frame << 12) | u64::from(low & 0xfde);
            raw &= !(1 << 7);
            if big == 0 && low & 1 == 0 {
                // A large page, aligned to 2 MiB / 1 GiB or not.
                raw |= 1 << 7;
            }
            if present {
                raw |= 1;
            }
            if accessed {
                raw |= 1 << 5;
            }
            raw |= match extra {
                0 => 1 << 63,                   // NX
                1 => 1 << 45,                   // reserved (MAXPHYADDR 40)
                2 => 0x7ff << 52,               // ignored
                3 => 1 << 13,                   // reserved in a 2 MiB page
                4 => (1 << 63) | (0x155 << 52), // NX and ignored
                5 | 6 => u64::from(low) << 48,  // ignored bits 63:48 (NX too)
                _ => 0,
            };
            raw
        })
}

fn linear() -> impl Strategy<Value = u64> {
    (
        prop::sample::select(&HOT[..]),
        prop::sample::select(&HOT[..]),
        prop::sample::select(&HOT[..]),
        prop::sample::select(&HOT[..]),
        0u64..4096,
        0u8..32,
    )
        .prop_map(|(i0, i1, i2, i3, off, odd)| {
            let lin = (i0 << 39) | (i1 << 30) | (i2 << 21) | (i3 << 12) | off;
            let canonical = ((lin as i64) << 16 >> 16) as u64;
            if odd == 0 {
                canonical ^ (1 << 50)
            } else {
                canonical
            }
        })
}

fn op(naddrs: usize) -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => (0..naddrs, 0u8..6, 0u8..3).prop_map(|(i, k, e)| Op::Access(i, k, e)),
        4 => (0..naddrs, any::<bool>()).prop_map(|(i, n)| Op::Invlpg(i, n)),
        2 => (TABLE_FRAMES, 0..HOT.len(), raw_entry()).prop_map(|(f, s, r)| Op::Write(f, s, r)),
        1 => Just(Op::Cr3),
        1 => (0u64..512, 1u64..400, 0u8..4, 0u8..3)
            .prop_map(|(p, n, k, e)| Op::Sweep(p, n.min(512 - p), k, e)),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop::collection::vec(raw_entry(), SLOTS),
        prop::collection::vec(linear(), 6..32),
        any::<[bool; 4]>(),
        prop::collection::vec(sweep_pte(), 512),
    )
        .prop_flat_map(|(entries, addrs, [pge, wp, nxe, core2], sweep)| {
            let n = addrs.len();
            prop::collection::vec(op(n), 20..120).prop_map(move |ops| Case {
                entries: entries.clone(),
                sweep: sweep.clone(),
                addrs: addrs.clone(),
                ops,
                pge,
                wp,
                nxe,
                core2,
            })
        })
}

/// The flags of a PTE of the sweep region: mostly present and accessed, so that a sweep
/// takes the quick miss; the rest a not-present fault (the quick one) or an A/D update.
fn sweep_pte() -> impl Strategy<Value = u16> {
    (
        prop::bool::weighted(0.9),
        prop::bool::weighted(0.9),
        prop::bool::weighted(0.7),
        prop::bool::weighted(0.1),
        any::<u16>(),
    )
        .prop_map(|(p, a, d, nx, r)| {
            // W, U, PWT, PCD, G and the software bits at random.
            let mut f = r & 0xf1e;
            f |= u16::from(p) | u16::from(a) << 5 | u16::from(d) << 6 | u16::from(nx) << 12;
            f
        })
}

fn access(kind: u8) -> Access {
    [
        Access::KERNEL_READ,
        Access::KERNEL_WRITE,
        Access::USER_READ,
        Access::USER_WRITE,
        Access::KERNEL_EXEC,
        Access::USER_EXEC,
    ][kind as usize % 6]
}

fn entry_pa(frame: u64, slot: usize) -> PhysAddr {
    PhysAddr::new(frame * 4096 + HOT[slot] * 8)
}

/// A CPU in 4-level paging over tables at frame 1, and its RAM.
fn setup(case: &Case) -> (Cpu, PhysMem) {
    let mut mem = PhysMem::new(&[
        (PhysAddr::new(0), LOW),
        (PhysAddr::new(HIGH.0 * 4096), HIGH.1 * 4096),
    ])
    .expect("mmap");
    let slots = TABLE_FRAMES.flat_map(|f| (0..HOT.len()).map(move |s| (f, s)));
    for ((frame, slot), &raw) in slots.zip(&case.entries) {
        mem.write_u64(entry_pa(frame, slot), raw).expect("table");
    }
    let table = 0x67; // P, W, U, A, D
    let root_slot = HOT.len() - 1;
    mem.write_u64(entry_pa(1, root_slot), SWEEP_TABLES[0] << 12 | table)
        .expect("table");
    mem.write_u64(
        PhysAddr::new(SWEEP_TABLES[0] << 12),
        SWEEP_TABLES[1] << 12 | table,
    )
    .expect("table");
    mem.write_u64(
        PhysAddr::new(SWEEP_TABLES[1] << 12),
        SWEEP_TABLES[2] << 12 | table,
    )
    .expect("table");
    for (i, &f) in case.sweep.iter().enumerate() {
        let raw = (SWEEP_DATA + i as u64) << 12 | u64::from(f & 0xfff) | u64::from(f >> 12) << 63;
        mem.write_u64(PhysAddr::new(SWEEP_TABLES[2] << 12 | (i as u64) << 3), raw)
            .expect("table");
    }
    let geometry = if case.core2 {
        TlbGeometry::Core2
    } else {
        TlbGeometry::Unbounded
    };
    let mut cpu = Cpu::new(0, CpuFeatures::X86_64.with_tlb(geometry));
    let efer = if case.nxe {
        Efer::LME | Efer::NXE
    } else {
        Efer::LME
    };
    let cr4 = if case.pge {
        Cr4::PAE | Cr4::PGE
    } else {
        Cr4::PAE
    };
    let cr0 = if case.wp {
        Cr0::PE | Cr0::PG | Cr0::WP
    } else {
        Cr0::PE | Cr0::PG
    };
    cpu.write_efer(efer).expect("efer");
    cpu.write_cr4(&mem, cr4).expect("cr4");
    cpu.write_cr3(&mem, 0x1000).expect("cr3");
    cpu.write_cr0(&mem, cr0).expect("cr0");
    assert_eq!(cpu.paging_format(), Some(Format::FourLevel));
    (cpu, mem)
}

/// The TLB's whole state as it prints.
fn tlb_state(tlb: &Tlb) -> String {
    format!("{tlb:?}")
}

fn same(
    case: &Case,
    (a, ma): (&Cpu, &PhysMem),
    (b, mb): (&Cpu, &PhysMem),
    step: usize,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(a.regs(), b.regs(), "registers, step {}", step);
    prop_assert_eq!(a.counters(), b.counters(), "counters, step {}", step);
    prop_assert_eq!(a.tlb().len(), b.tlb().len(), "TLB size, step {}", step);
    prop_assert_eq!(a.tlb().global_len(), b.tlb().global_len(), "step {}", step);
    prop_assert_eq!(a.tlb().evictions(), b.tlb().evictions(), "step {}", step);
    for &lin in &case.addrs {
        prop_assert_eq!(
            a.tlb_lookup(VirtAddr::new(lin)),
            b.tlb_lookup(VirtAddr::new(lin)),
            "TLB entry of {:#x}, step {}",
            lin,
            step
        );
    }
    // The whole TLB (replacement included) at the end of the run, with the hardware
    // geometry (the debug one's spill map prints in no fixed order).
    if case.core2 && step + 1 == case.ops.len() {
        let (ta, tb) = (tlb_state(a.tlb()), tlb_state(b.tlb()));
        if ta != tb {
            let at = ta
                .bytes()
                .zip(tb.bytes())
                .position(|(x, y)| x != y)
                .unwrap_or(0);
            let from = at.saturating_sub(300);
            prop_assert!(
                false,
                "TLB differs at byte {}: quick …{}… full …{}…",
                at,
                &ta[from..(at + 100).min(ta.len())],
                &tb[from..(at + 100).min(tb.len())]
            );
        }
    }
    for f in (0..LOW_TARGETS).chain(HIGH.0..HIGH.0 + HIGH.1) {
        let f = crate::Pfn::new(f);
        prop_assert!(
            ma.frame(f).expect("RAM") == mb.frame(f).expect("RAM"),
            "RAM differs in frame {:?}, step {}",
            f,
            step
        );
    }
    Ok(())
}

/// `translate` (0), `translate_unmapped` (1) or `translate_refault` (2) on `cpu`: the
/// entry points the kernel calls.
fn translate_by(
    entry: u8,
    cpu: &mut Cpu,
    mem: &mut PhysMem,
    va: VirtAddr,
    acc: Access,
) -> Result<PhysAddr, AccessError> {
    match entry {
        0 => cpu.translate(mem, va, acc),
        1 => cpu.translate_unmapped(mem, va, acc),
        _ => cpu.translate_refault(mem, va, acc),
    }
}

/// Run `case` on both CPUs, comparing after every step.
fn run(case: &Case) -> Result<Seen, TestCaseError> {
    let (mut a, mut ma) = setup(case);
    let (mut b, mut mb) = setup(case);
    b.quick = [Cpu::no_quick_miss; 4];
    let mut seen = Seen::default();
    for (step, &op) in case.ops.iter().enumerate() {
        match op {
            Op::Access(i, kind, entry) => {
                let va = VirtAddr::new(case.addrs[i]);
                let acc = access(kind);
                let quick = a.quick_counts.misses;
                // The full path leaves its error here, the quick fault does not.
                a.walk_err = None;
                let ra = translate_by(entry, &mut a, &mut ma, va, acc);
                let rb = b.translate(&mut mb, va, acc);
                prop_assert_eq!(ra, rb, "{:?} at {:#x}, step {}", acc, va.as_u64(), step);
                seen.quick_fills += a.quick_counts.misses - quick;
                match ra {
                    Ok(_) => seen.oks += 1,
                    Err(AccessError::PageFault(_)) => {
                        seen.faults += 1;
                        if a.walk_err.is_none() {
                            seen.quick_faults += 1;
                        }
                    }
                    Err(_) => {}
                }
            }
            Op::Invlpg(i, noted) => {
                let va = VirtAddr::new(case.addrs[i]);
                if noted {
                    a.invlpg_noted(va);
                } else {
                    a.invlpg(va);
                }
                b.invlpg(va);
            }
            Op::Write(frame, slot, raw) => {
                for m in [&mut ma, &mut mb] {
                    m.write_u64(entry_pa(frame, slot), raw).expect("table");
                }
            }
            Op::Sweep(first, n, kind, entry) => {
                let acc = access(kind);
                for page in first..first + n {
                    let va = VirtAddr::new(SWEEP + page * 4096);
                    let quick = a.quick_counts.misses;
                    a.walk_err = None;
                    let ra = translate_by(entry, &mut a, &mut ma, va, acc);
                    let rb = b.translate(&mut mb, va, acc);
                    prop_assert_eq!(ra, rb, "{:?} at {:#x}, step {}", acc, va.as_u64(), step);
                    prop_assert_eq!(a.counters(), b.counters(), "counters, step {}", step);
                    prop_assert_eq!(a.tlb_lookup(va), b.tlb_lookup(va), "step {}", step);
                    seen.quick_fills += a.quick_counts.misses - quick;
                    seen.oks += u64::from(ra.is_ok());
                    if let Err(AccessError::PageFault(_)) = ra {
                        seen.faults += 1;
                        seen.quick_faults += u64::from(a.walk_err.is_none());
                    }
                }
            }
            Op::Cr3 => {
                a.write_cr3(&ma, 0x1000).expect("cr3");
                b.write_cr3(&mb, 0x1000).expect("cr3");
                b.quick = [Cpu::no_quick_miss; 4];
            }
        }
        same(case, (&a, &ma), (&b, &mb), step)?;
    }
    seen.evictions = a.counters().tlb_evictions;
    Ok(seen)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn four_level_quick_paths_match_the_full_walk(c in case()) {
        run(&c)?;
    }
}

/// The generators reach what the property is about: quick fills, quick not-present
/// faults, faults and translations of the full path, evictions.
#[test]
fn four_level_generators_reach_the_quick_paths() {
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]),
    );
    let strategy = case();
    let mut total = Seen::default();
    for _ in 0..200 {
        let c = strategy.new_tree(&mut runner).expect("case").current();
        let s = run(&c).expect("quick and full paths agree");
        total.quick_fills += s.quick_fills;
        total.quick_faults += s.quick_faults;
        total.faults += s.faults;
        total.oks += s.oks;
        total.evictions += s.evictions;
    }
    assert!(total.quick_fills > 5000, "{total:?}");
    assert!(total.quick_faults > 1000, "{total:?}");
    assert!(total.faults > 500, "{total:?}");
    assert!(total.oks > total.quick_fills, "{total:?}");
    assert!(total.evictions > 500, "{total:?}");
}
