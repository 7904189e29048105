//! Random vmalloc / vzalloc / vmalloc_32 / vfree / vmap / vunmap / purge sequences on the
//! booted model, with the vmalloc invariants checked after every step (blocks tile the
//! area, guard pages unmapped, every PTE points to a page its area owns, lazily freed
//! ranges have no PTE, counters match). With everything freed and purged, the free pages
//! (plus the kernel PTE pages the area keeps) and the counters are back at their boot values.

use kernel::config::KernelConfig;
use kernel::gfp::GFP_HIGHUSER;
use kernel::{boot, BootOptions, Kernel};
use machine::{Pfn, VirtAddr, PAGE_SIZE};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Vmalloc(u64),
    Vzalloc(u64),
    Vmalloc32(u64),
    Vfree(usize),
    Vmap(u64),
    Vunmap(usize),
    Touch(usize, usize),
    Purge,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1u64..3 * PAGE_SIZE * 16).prop_map(Op::Vmalloc),
        1 => (1u64..PAGE_SIZE * 8).prop_map(Op::Vzalloc),
        1 => (1u64..PAGE_SIZE * 8).prop_map(Op::Vmalloc32),
        3 => any::<usize>().prop_map(Op::Vfree),
        1 => (1u64..12).prop_map(Op::Vmap),
        1 => any::<usize>().prop_map(Op::Vunmap),
        2 => (any::<usize>(), 0usize..2).prop_map(|(i, c)| Op::Touch(i, c)),
        1 => Just(Op::Purge),
    ]
}

fn booted(pae: bool) -> Kernel {
    let preset = if pae { "debian-686-pae" } else { "debian-686" };
    let cfg = KernelConfig::preset(preset).expect("preset");
    let mut opts = BootOptions::new(1 << 30, 2, cfg);
    opts.runtime_profile = false;
    boot(&opts).expect("boot")
}

fn run(pae: bool, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut k = booted(pae);
    k.node.drain_all_pages(None);
    let free0 = k.node.nr_free_pages();
    let space0 = k.vmap.space.free_bytes();
    // The boot's own areas (ACPI, HPET, zswap, n_tty …) stay.
    let (pte0, vmalloc0, busy0) = (
        k.vmap.kernel_pte_pages,
        k.vmap.nr_vmalloc_pages,
        k.vmap.busy.len(),
    );
    let mut vm: Vec<(u64, u64)> = Vec::new(); // (addr, bytes)
    let mut maps: Vec<(u64, Vec<Pfn>)> = Vec::new();
    for op in ops {
        match op {
            Op::Vmalloc(sz) | Op::Vzalloc(sz) | Op::Vmalloc32(sz) => {
                let r = match op {
                    Op::Vmalloc(_) => k.vmalloc(sz, 0),
                    Op::Vzalloc(_) => k.vzalloc(sz, 1),
                    _ => k.vmalloc_32(sz, 0),
                };
                let a = r.map_err(|e| TestCaseError::fail(e.to_string()))?;
                if matches!(op, Op::Vzalloc(_)) {
                    let mut buf = vec![1u8; sz as usize];
                    k.machine.read_virt(0, VirtAddr::new(a), &mut buf).unwrap();
                    prop_assert!(buf.iter().all(|&b| b == 0));
                }
                let owned = &k.vmap.find_vm_area(a).unwrap().pages;
                for (i, p) in owned.clone().iter().enumerate() {
                    prop_assert_eq!(
                        k.vmalloc_to_page(a + i as u64 * PAGE_SIZE, 1).unwrap(),
                        Some(*p)
                    );
                }
                vm.push((a, sz));
            }
            Op::Vfree(i) if !vm.is_empty() => {
                let (a, _) = vm.swap_remove(i % vm.len());
                k.vfree(a, i % 2).unwrap();
                prop_assert_eq!(k.vmalloc_to_page(a, 0).unwrap(), None);
            }
            Op::Vmap(n) => {
                let pfns: Vec<Pfn> = (0..n)
                    .map(|_| k.alloc_pages(GFP_HIGHUSER, 0, 0).unwrap().pfn)
                    .collect();
                let a = k.vmap(&pfns, 0, 1).unwrap();
                maps.push((a, pfns));
            }
            Op::Vunmap(i) if !maps.is_empty() => {
                let (a, pfns) = maps.swap_remove(i % maps.len());
                k.vunmap(a, 0).unwrap();
                for p in pfns {
                    k.node.__free_pages(p, 0, 0).unwrap();
                }
            }
            Op::Touch(i, cpu) if !vm.is_empty() => {
                // Write through the vmalloc address, read back through kmap of the page.
                let (a, sz) = vm[i % vm.len()];
                let off = (i as u64 * 977) % sz;
                k.machine
                    .write_virt(cpu, VirtAddr::new(a + off), &[0x5a])
                    .unwrap();
                let pfn = k.vmalloc_to_page(a + off, cpu).unwrap().unwrap();
                let mut page = vec![0u8; PAGE_SIZE as usize];
                k.read_page_kmap(pfn, 1 - cpu, &mut page).unwrap();
                prop_assert_eq!(page[(off % PAGE_SIZE) as usize], 0x5a);
            }
            Op::Purge => {
                k.purge_vmap_area_lazy(0).unwrap();
            }
            _ => {}
        }
        if let Err(e) = k.check_vmalloc() {
            return Err(TestCaseError::fail(e));
        }
        prop_assert!(k.vmap.vmap_lazy_nr <= kernel::vmalloc::lazy_max_pages(2));
    }
    for (a, _) in vm {
        k.vfree(a, 0).unwrap();
    }
    for (a, pfns) in maps {
        k.vunmap(a, 1).unwrap();
        for p in pfns {
            k.node.__free_pages(p, 0, 0).unwrap();
        }
    }
    k.purge_vmap_area_lazy(0).unwrap();
    k.check_vmalloc().map_err(TestCaseError::fail)?;
    k.node.drain_all_pages(None);
    prop_assert_eq!(k.vmap.nr_vmalloc_pages, vmalloc0);
    prop_assert_eq!(k.vmap.vmap_lazy_nr, 0);
    prop_assert_eq!(k.vmap.busy.len(), busy0);
    prop_assert_eq!(k.vmap.space.free_bytes(), space0);
    prop_assert_eq!(
        k.node.nr_free_pages() + k.vmap.kernel_pte_pages - pte0,
        free0
    );
    prop_assert_eq!(k.kmap_local_depth(0) + k.kmap_local_depth(1), 0);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_vmalloc_sequences_keep_invariants_and_restore_boot_state(
        pae in any::<bool>(),
        ops in prop::collection::vec(op(), 1..80),
    ) {
        run(pae, ops)?;
    }
}
