//! Property tests for memblock: whatever sequence of reservations, frees and allocations
//! the boot makes, the reserved list stays sorted and disjoint, an allocation lands inside
//! RAM, inside its window, aligned, and on bytes nobody else holds, and free + reserved
//! RAM always adds up to all RAM.

use kernel::memblock::{Memblock, ACCESSIBLE};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Reserve(u64, u64),
    Free(u64, u64),
    Alloc {
        size: u64,
        align_shift: u32,
        start: u64,
        end: Option<u64>,
    },
    Limit(u64),
}

const SPAN: u64 = 64 << 20;

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..SPAN, 1..(1u64 << 22)).prop_map(|(b, s)| Op::Reserve(b, s)),
        (0..SPAN, 1..(1u64 << 22)).prop_map(|(b, s)| Op::Free(b, s)),
        (
            1..(1u64 << 21),
            0u32..22,
            0..SPAN,
            proptest::option::of(0..SPAN)
        )
            .prop_map(|(size, align_shift, start, end)| Op::Alloc {
                size,
                align_shift,
                start,
                end
            }),
        (0..SPAN).prop_map(Op::Limit),
    ]
}

fn ram() -> Memblock {
    let mut m = Memblock::new();
    m.add(0x1000, 0x9e000);
    m.add(0x10_0000, (48 << 20) - 0x10_0000);
    m.add(56 << 20, 8 << 20);
    m
}

fn total(list: &[(u64, u64)]) -> u64 {
    list.iter().map(|(s, e)| e - s).sum()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn memblock_invariants_hold(ops in proptest::collection::vec(op(), 1..60)) {
        let mut m = ram();
        let ram_bytes: u64 = m.memory.iter().map(|r| r.size).sum();
        for op in ops {
            match op {
                Op::Reserve(b, s) => m.reserve(b, s, "r"),
                Op::Free(b, s) => m.free(b, s),
                Op::Limit(l) => m.set_current_limit(l),
                Op::Alloc { size, align_shift, start, end } => {
                    let align = 1u64 << align_shift;
                    let end = end.unwrap_or(ACCESSIBLE);
                    let free_before = m.free_ranges(0, u64::MAX);
                    if let Ok(pa) = m.alloc_range(size, align, start, end, "a") {
                        let a = pa.as_u64();
                        let limit = if end == ACCESSIBLE { m.current_limit } else { end };
                        prop_assert!(a >= start && a + size <= limit, "outside its window");
                        prop_assert_eq!(a % align, 0);
                        prop_assert!(m.is_memory(a, size), "not RAM");
                        prop_assert!(
                            free_before.iter().any(|&(s, e)| s <= a && a + size <= e),
                            "took bytes that were not free"
                        );
                        // Top-down: no free, fitting, aligned candidate lies above it.
                        for &(s, e) in &free_before {
                            let hi = e.min(limit);
                            if hi < size { continue; }
                            let cand = (hi - size) & !(align - 1);
                            if cand >= s.max(start) {
                                prop_assert!(cand <= a, "a higher block at {cand:#x} was free");
                            }
                        }
                    }
                }
            }
            // Reserved: sorted, disjoint, non-empty.
            for w in m.reserved.windows(2) {
                prop_assert!(w[0].end() <= w[1].base, "overlap or unsorted: {:?}", w);
            }
            prop_assert!(m.reserved.iter().all(|r| r.size > 0));
            // Free + reserved-inside-RAM = RAM.
            let free = total(&m.free_ranges(0, u64::MAX));
            let reserved_in_ram: u64 = m
                .memory
                .iter()
                .map(|r| {
                    m.reserved
                        .iter()
                        .map(|x| x.end().min(r.end()).saturating_sub(x.base.max(r.base)))
                        .sum::<u64>()
                })
                .sum();
            prop_assert_eq!(free + reserved_in_ram, ram_bytes);
        }
    }
}
