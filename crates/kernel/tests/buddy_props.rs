//! Random allocation / free sequences against the buddy allocator, checking the allocator's
//! invariants after every operation and that freeing everything restores the boot state.

use std::collections::BTreeMap;

use kernel::debug_vm::check_node;
use kernel::gfp::*;
use kernel::mmzone::{MigrateType, PgData, ZoneStatItem, ZoneType, MAX_ORDER};
use kernel::page_alloc::{AllocFailureKind, AllocatedPages, NodeConfig};
use proptest::prelude::*;

const NR_CPUS: usize = 3;
const MAX_LOW_PFN: u64 = 7001;

/// A small i386-like node: DMA below pfn 4096 with the BIOS holes, an unaligned Normal/HighMem
/// boundary, and a hole inside HighMem.
fn boot() -> PgData {
    let memory = vec![(1, 159), (256, 11_000), (11_500, 14_000)];
    let cfg = NodeConfig {
        max_zone_pfn: [4096, MAX_LOW_PFN, 14_000, 0],
        memory: memory.clone(),
        nr_cpus: NR_CPUS,
        pageblock_order: 9,
        thp: true,
        zone_model: kernel::mmzone::ZoneModel::I386,
        dma_reserve: 0,
    };
    let (mut pg, _log) = PgData::new(&cfg).expect("node");
    pg.debug_vm = true;
    pg.build_all_zonelists();
    // "Kernel image" and a few boot allocations.
    let reserved = vec![(4096, 4300), (5000, 5003), (12_000, 12_001)];
    let mut free = Vec::new();
    for &(s, e) in &memory {
        let mut s = s;
        for &(rs, re) in &reserved {
            if rs >= e || re <= s {
                continue;
            }
            if rs > s {
                free.push((s, rs));
            }
            s = s.max(re);
        }
        if s < e {
            free.push((s, e));
        }
    }
    pg.mem_init_free(&free, &reserved, MAX_LOW_PFN)
        .expect("boot frees");
    pg.setup_per_cpu_pageset();
    pg.init_per_zone_wmark_min();
    pg.set_recommended_min_free_kbytes();
    pg.gfp_allowed_mask = __GFP_BITS_MASK;
    pg.current_comm = String::from("proptest");
    pg
}

const GFPS: &[Gfp] = &[
    GFP_KERNEL,
    GFP_ATOMIC,
    GFP_NOWAIT,
    GFP_USER,
    GFP_HIGHUSER,
    GFP_HIGHUSER_MOVABLE,
    Gfp::from_bits_retain(GFP_KERNEL.bits() | Gfp::DMA.bits()),
    Gfp::from_bits_retain(GFP_KERNEL.bits() | Gfp::RECLAIMABLE.bits()),
    Gfp::from_bits_retain(GFP_KERNEL.bits() | Gfp::COMP.bits()),
    GFP_TRANSHUGE_LIGHT,
    Gfp::from_bits_retain(GFP_KERNEL.bits() | Gfp::NOWARN.bits() | Gfp::NORETRY.bits()),
    Gfp::from_bits_retain(GFP_ATOMIC.bits() | Gfp::NOWARN.bits()),
    Gfp::from_bits_retain(GFP_HIGHUSER_MOVABLE.bits() | Gfp::ZERO.bits()),
];

const MOVABLE_GFPS: &[Gfp] = &[
    GFP_HIGHUSER_MOVABLE,
    Gfp::from_bits_retain(GFP_USER.bits() | Gfp::MOVABLE.bits()),
];

#[derive(Clone, Debug)]
enum Op {
    Alloc {
        gfp: usize,
        order: u32,
        cpu: usize,
    },
    Free {
        idx: usize,
        cpu: usize,
    },
    /// Take an extra reference, then drop the caller's (the speculative-reference path).
    GetPut {
        idx: usize,
        cpu: usize,
    },
    Drain {
        cpu: usize,
    },
    DrainAll,
    Sysctl {
        which: u8,
        value: u16,
    },
}

fn order() -> impl Strategy<Value = u32> {
    prop_oneof![6 => 0u32..=3, 2 => 4u32..=8, 1 => 9u32..=10]
}

/// `frees` weighs frees against 10 allocations: low values drive the node out of memory.
fn op(gfps: usize, frees: u32, with_extras: bool) -> impl Strategy<Value = Op> {
    let alloc =
        (0..gfps, order(), 0..NR_CPUS).prop_map(|(gfp, order, cpu)| Op::Alloc { gfp, order, cpu });
    let free = (any::<usize>(), 0..NR_CPUS).prop_map(|(idx, cpu)| Op::Free { idx, cpu });
    let getput = (any::<usize>(), 0..NR_CPUS).prop_map(|(idx, cpu)| Op::GetPut { idx, cpu });
    let drain = (0..NR_CPUS).prop_map(|cpu| Op::Drain { cpu });
    let sysctl = (0u8..3, any::<u16>()).prop_map(|(which, value)| Op::Sysctl { which, value });
    if with_extras {
        prop_oneof![10 => alloc, frees => free, 1 => getput, 1 => drain, 1 => Just(Op::DrainAll), 1 => sysctl].boxed()
    } else {
        prop_oneof![10 => alloc, frees => free, 1 => drain].boxed()
    }
}

/// Free blocks by (pfn, order) and their list.
fn free_blocks(pg: &PgData) -> BTreeMap<(u64, usize), MigrateType> {
    let mut out = BTreeMap::new();
    for z in ZoneType::ALL {
        let zone = pg.zone(z);
        for order in 0..MAX_ORDER {
            for mt in MigrateType::ALL {
                let id = kernel::mmzone::free_list_id(order as u32, mt);
                for pfn in pg.mem_map.list_iter(zone, id, usize::MAX) {
                    out.insert((pfn as u64, order), mt);
                }
            }
        }
    }
    out
}

struct Live {
    a: AllocatedPages,
    /// Order still owned by the test (drops to 0 after a speculative reference).
    order: u32,
}

/// Free, pcp and allocated pages add up to the managed pages of every zone.
fn conservation(pg: &PgData, live: &[Live]) -> Result<(), String> {
    for z in ZoneType::ALL {
        let zone = pg.zone(z);
        let allocated: u64 = live
            .iter()
            .filter(|l| l.a.zone == z)
            .map(|l| 1u64 << l.order)
            .sum();
        let total = zone.page_state(ZoneStatItem::NrFreePages) + zone.pcp_count() + allocated;
        if total != zone.managed_pages {
            return Err(format!(
                "{}: free+pcp+allocated = {total}, managed = {}",
                zone.name, zone.managed_pages
            ));
        }
    }
    Ok(())
}

fn run(ops: Vec<Op>, gfps: &[Gfp]) -> Result<(), TestCaseError> {
    let mut pg = boot();
    check_node(&pg).map_err(|e| TestCaseError::fail(format!("boot: {e:?}")))?;
    let boot_blocks = free_blocks(&pg);
    let boot_types: Vec<_> = ZoneType::ALL
        .iter()
        .map(|&z| pg.zone(z).pageblock_flags.clone())
        .collect();
    let boot_free: Vec<_> = ZoneType::ALL
        .iter()
        .map(|&z| pg.zone(z).page_state(ZoneStatItem::NrFreePages))
        .collect();
    let mut live: Vec<Live> = Vec::new();
    let mut ever_highatomic = false;

    for (step, op) in ops.iter().enumerate() {
        match *op {
            Op::Alloc { gfp, order, cpu } => {
                let gfp = gfps[gfp % gfps.len()];
                match pg.alloc_pages(gfp, order, cpu) {
                    Ok(a) => {
                        prop_assert_eq!(a.pfn.as_u64() % (1 << order), 0);
                        prop_assert!(a.zone <= gfp_zone(gfp));
                        prop_assert_eq!(pg.mem_map[a.pfn].refcount, 1);
                        prop_assert_eq!(pg.mem_map[a.pfn].zonenum(), a.zone);
                        prop_assert!(a.init, "init_on_alloc is on");
                        live.push(Live { a, order });
                    }
                    Err(f) => {
                        prop_assert!(matches!(
                            f.kind,
                            AllocFailureKind::NoMemory | AllocFailureKind::WouldOom
                        ));
                        if f.kind == AllocFailureKind::NoMemory && !gfp.contains(Gfp::NOWARN) {
                            let head = format!(
                                "proptest: page allocation failure: order:{order}, mode:0x"
                            );
                            prop_assert!(f.report[0].starts_with(&head), "{:?}", f.report);
                            prop_assert!(f.report.iter().any(|l| l == "Mem-Info:"));
                        } else {
                            prop_assert!(f.report.is_empty());
                        }
                    }
                }
            }
            Op::Free { idx, cpu } => {
                if !live.is_empty() {
                    let l = live.swap_remove(idx % live.len());
                    pg.__free_pages(l.a.pfn, l.order, cpu)
                        .map_err(|e| TestCaseError::fail(e.to_string()))?;
                }
            }
            Op::GetPut { idx, cpu } => {
                if !live.is_empty() {
                    let i = idx % live.len();
                    let pfn = live[i].a.pfn;
                    pg.mem_map[pfn].get();
                    pg.__free_pages(pfn, live[i].order, cpu)
                        .map_err(|e| TestCaseError::fail(e.to_string()))?;
                    if !pg.mem_map[pfn].is_head() {
                        // The upper parts went back; the reference holder owns page 0 only.
                        live[i].order = 0;
                    }
                }
            }
            Op::Drain { cpu } => pg.drain_local_pages(None, cpu),
            Op::DrainAll => pg.drain_all_pages(None),
            Op::Sysctl { which, value } => {
                let r = match which {
                    0 => pg.sysctl_min_free_kbytes(128 + (value as i64 % 4000)),
                    1 => pg.sysctl_watermark_scale_factor(1 + (value as i64 % 3000)),
                    _ => pg.sysctl_percpu_pagelist_high_fraction(if value % 2 == 0 {
                        0
                    } else {
                        8 + value as i64 % 100
                    }),
                };
                prop_assert!(r.is_ok());
            }
        }
        if let Err(e) = check_node(&pg) {
            return Err(TestCaseError::fail(format!(
                "after step {step} {op:?}: {e:?}"
            )));
        }
        conservation(&pg, &live)
            .map_err(|e| TestCaseError::fail(format!("after step {step} {op:?}: {e}")))?;
        ever_highatomic |= pg.node_zones.iter().any(|z| z.nr_reserved_highatomic != 0);
    }

    // Free everything and empty the pcp lists.
    for l in live.drain(..) {
        pg.__free_pages(l.a.pfn, l.order, 0)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
    }
    pg.drain_all_pages(None);
    check_node(&pg).map_err(|e| TestCaseError::fail(format!("final: {e:?}")))?;
    for (i, &z) in ZoneType::ALL.iter().enumerate() {
        prop_assert_eq!(pg.zone(z).pcp_count(), 0);
        prop_assert_eq!(
            pg.zone(z).page_state(ZoneStatItem::NrFreePages),
            boot_free[i]
        );
    }
    prop_assert!(pg.kmsg.is_empty(), "{:?}", pg.kmsg);
    let end_blocks = free_blocks(&pg);
    if !ever_highatomic {
        // Merging is order-independent: the same free pages give the same blocks.
        let a: Vec<_> = boot_blocks.keys().collect();
        let b: Vec<_> = end_blocks.keys().collect();
        prop_assert_eq!(a, b);
        let types_unchanged = ZoneType::ALL
            .iter()
            .enumerate()
            .all(|(i, &z)| pg.zone(z).pageblock_flags == boot_types[i]);
        if types_unchanged {
            prop_assert_eq!(&boot_blocks, &end_blocks);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_ops_keep_invariants_and_restore_the_boot_blocks(ops in prop::collection::vec(op(GFPS.len(), 7, true), 1..160)) {
        run(ops, GFPS)?;
    }

    /// Mostly allocations: the zones run dry, so the slow path, the reserves, highatomic
    /// pageblocks and allocation-failure reports all get exercised.
    #[test]
    fn memory_pressure_keeps_invariants(ops in prop::collection::vec(op(GFPS.len(), 2, true), 100..300)) {
        run(ops, GFPS)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

    /// Movable requests on a node with plenty of movable memory never steal, so after freeing
    /// everything the free lists are exactly the boot lists, per order and migrate type.
    #[test]
    fn movable_only_restores_every_free_list(ops in prop::collection::vec(op(MOVABLE_GFPS.len(), 6, false), 1..60)) {
        let ops: Vec<Op> = ops
            .into_iter()
            .map(|o| match o {
                Op::Alloc { gfp, order, cpu } => Op::Alloc { gfp, order: order.min(6), cpu },
                o => o,
            })
            .collect();
        let mut pg = boot();
        let boot_blocks = free_blocks(&pg);
        let mut live = Vec::new();
        for op in &ops {
            match *op {
                Op::Alloc { gfp, order, cpu } => {
                    if let Ok(a) = pg.alloc_pages(MOVABLE_GFPS[gfp % MOVABLE_GFPS.len()], order, cpu) {
                        live.push(a);
                    }
                }
                Op::Free { idx, cpu } if !live.is_empty() => {
                    let a = live.swap_remove(idx % live.len());
                    prop_assert!(pg.__free_pages(a.pfn, a.order, cpu).is_ok());
                }
                Op::Drain { cpu } => pg.drain_local_pages(None, cpu),
                _ => {}
            }
            prop_assert!(check_node(&pg).is_ok());
        }
        for a in live.drain(..) {
            prop_assert!(pg.__free_pages(a.pfn, a.order, 0).is_ok());
        }
        pg.drain_all_pages(None);
        prop_assert_eq!(&free_blocks(&pg), &boot_blocks);
    }
}

#[test]
fn boot_state_is_consistent_and_fully_merged() {
    let pg = boot();
    check_node(&pg).expect("consistent");
    // Everything freed at boot is free and accounted as managed.
    for z in ZoneType::ALL {
        let zone = pg.zone(z);
        assert_eq!(
            zone.page_state(ZoneStatItem::NrFreePages),
            zone.managed_pages,
            "{}",
            zone.name
        );
        assert_eq!(zone.pcp_count(), 0);
    }
    assert_eq!(
        pg.totalram_pages,
        pg.node_zones.iter().map(|z| z.managed_pages).sum::<u64>()
    );
    assert_eq!(pg.totalhigh_pages, pg.zone(ZoneType::HighMem).managed_pages);
    // The Normal zone has 4096..7001 minus reserved: its largest blocks are order 10.
    let blocks = free_blocks(&pg);
    assert!(blocks.contains_key(&(5120, 10)));
}
