//! The mapping machinery together: random sequences of kmap / kunmap, kmap_local /
//! kunmap_local, vmalloc / vfree and kmalloc / kfree on both CPUs of a booted machine, with
//! every subsystem's invariant checker after each step (the buddy allocator's, pkmap's,
//! the vmalloc area's, SLUB's), and, once everything is released, every free list and
//! counter back to its boot value.

use kernel::config::KernelConfig;
use kernel::debug_vm::check_node;
use kernel::gfp::{GFP_HIGHUSER, GFP_KERNEL};
use kernel::sched::Blocking;
use kernel::slab::{check_slab, CacheId};
use kernel::{boot, BootOptions, Kernel};
use machine::{Pfn, VirtAddr};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Kmap(usize, usize),
    Kunmap(usize),
    KmapLocal(usize, usize),
    KunmapLocal(usize),
    Vmalloc(usize, u64),
    Vfree(usize),
    Kmalloc(usize, usize),
    Kfree(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..2usize, 0..64usize).prop_map(|(c, p)| Op::Kmap(c, p)),
        (0..64usize).prop_map(Op::Kunmap),
        (0..2usize, 0..64usize).prop_map(|(c, p)| Op::KmapLocal(c, p)),
        (0..2usize).prop_map(Op::KunmapLocal),
        (0..2usize, 1..40u64).prop_map(|(c, kb)| Op::Vmalloc(c, kb << 10)),
        (0..64usize).prop_map(Op::Vfree),
        (0..2usize, 1..9000usize).prop_map(|(c, s)| Op::Kmalloc(c, s)),
        (0..64usize).prop_map(Op::Kfree),
    ]
}

/// What the test holds: kmapped pages (cpu, pfn), kmap_local stacks per CPU, vmalloc
/// areas (cpu, addr) and kmalloc objects (cpu, va).
#[derive(Default)]
struct Held {
    kmaps: Vec<(usize, u64)>,
    locals: [Vec<VirtAddr>; 2],
    vmallocs: Vec<(usize, u64)>,
    objects: Vec<(usize, VirtAddr)>,
}

fn apply(k: &mut Kernel, pages: &[u64], h: &mut Held, op: &Op) -> Result<(), TestCaseError> {
    match *op {
        Op::Kmap(cpu, p) if h.kmaps.len() < 400 => {
            let pfn = pages[p % pages.len()];
            match k.kmap(cpu, Pfn::new(pfn)) {
                Ok(Blocking::Ready(_)) => h.kmaps.push((cpu, pfn)),
                Ok(Blocking::Sleep(_)) => return Err(TestCaseError::fail("pool full")),
                Err(e) => return Err(TestCaseError::fail(format!("kmap: {e}"))),
            }
        }
        Op::Kunmap(i) if !h.kmaps.is_empty() => {
            let (cpu, pfn) = h.kmaps.remove(i % h.kmaps.len());
            k.kunmap(cpu, Pfn::new(pfn)).map_err(fail)?;
        }
        Op::KmapLocal(cpu, p) if h.locals[cpu].len() < 8 => {
            let va = k
                .kmap_local_page(cpu, Pfn::new(pages[p % pages.len()]))
                .map_err(fail)?;
            h.locals[cpu].push(va);
        }
        Op::KunmapLocal(cpu) => {
            if let Some(va) = h.locals[cpu].pop() {
                k.kunmap_local(cpu, va).map_err(fail)?;
            }
        }
        Op::Vmalloc(cpu, size) => h.vmallocs.push((cpu, k.vmalloc(size, cpu).map_err(fail)?)),
        Op::Vfree(i) if !h.vmallocs.is_empty() => {
            let (_, a) = h.vmallocs.remove(i % h.vmallocs.len());
            // Freed from the other CPU than the one that allocated, sometimes.
            k.vfree(a, i % 2).map_err(fail)?;
        }
        Op::Kmalloc(cpu, size) => h
            .objects
            .push((cpu, k.kmalloc(size, GFP_KERNEL, cpu).map_err(fail)?)),
        Op::Kfree(i) if !h.objects.is_empty() => {
            let (cpu, va) = h.objects.remove(i % h.objects.len());
            k.kfree(va, cpu).map_err(fail)?;
        }
        _ => {}
    }
    Ok(())
}

fn fail(e: impl std::fmt::Display) -> TestCaseError {
    TestCaseError::fail(e.to_string())
}

fn check_all(k: &Kernel) -> Result<(), TestCaseError> {
    check_node(&k.node).map_err(|e| fail(e.join("; ")))?;
    let pk = k.pkmap_check();
    prop_assert!(pk.is_empty(), "pkmap: {pk:?}");
    k.check_vmalloc().map_err(fail)?;
    check_slab(k).map_err(fail)?;
    Ok(())
}

fn release_all(k: &mut Kernel, h: Held) -> Result<(), TestCaseError> {
    for (cpu, stack) in h.locals.into_iter().enumerate() {
        for va in stack.into_iter().rev() {
            k.kunmap_local(cpu, va).map_err(fail)?;
        }
    }
    for (cpu, pfn) in h.kmaps {
        k.kunmap(cpu, Pfn::new(pfn)).map_err(fail)?;
    }
    for (cpu, a) in h.vmallocs {
        k.vfree(a, cpu).map_err(fail)?;
    }
    for (cpu, va) in h.objects {
        k.kfree(va, cpu).map_err(fail)?;
    }
    k.kmap_flush_unused(0).map_err(fail)?;
    k.purge_vmap_area_lazy(0).map_err(fail)?;
    let ids: Vec<CacheId> = k.slab.caches_newest_first().map(|(id, _)| id).collect();
    for id in ids {
        k.kmem_cache_shrink(id, 0).map_err(fail)?;
    }
    k.node.drain_all_pages(None);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn the_mapping_machinery_keeps_its_invariants_and_gives_everything_back(
        pae in any::<bool>(),
        ops in prop::collection::vec(op(), 1..150),
    ) {
        let preset = if pae { "debian-686-pae" } else { "debian-686" };
        let mut opts = BootOptions::new(2 << 30, 2, KernelConfig::preset(preset).expect("preset"));
        opts.runtime_profile = false;
        let mut k = boot(&opts).expect("boot");
        k.node.debug_vm = true;
        let pages: Vec<u64> = (0..64)
            .map(|_| k.alloc_pages(GFP_HIGHUSER, 0, 0).expect("page").pfn.as_u64())
            .collect();
        k.node.drain_all_pages(None);
        let free0 = k.node.nr_free_pages();
        // The boot's own vmalloc areas (ACPI, HPET, zswap, n_tty …) stay.
        let (pte0, vmalloc0) = (k.vmap.kernel_pte_pages, k.vmap.nr_vmalloc_pages);
        let (maps0, unmaps0) = (k.kmap_local.maps, k.kmap_local.unmaps);
        let mut held = Held::default();
        for op in &ops {
            apply(&mut k, &pages, &mut held, op)?;
            check_all(&k)?;
        }
        release_all(&mut k, held)?;
        check_all(&k)?;
        // vmalloc keeps the kernel PTE pages it allocated, as the kernel does.
        prop_assert_eq!(k.node.nr_free_pages() + k.vmap.kernel_pte_pages - pte0, free0);
        prop_assert_eq!(k.kmap_local.maps - maps0, k.kmap_local.unmaps - unmaps0);
        prop_assert_eq!(k.kmap_local_depth(0) + k.kmap_local_depth(1), 0);
        prop_assert_eq!(k.vmap.nr_vmalloc_pages, vmalloc0);
        prop_assert!(k.hm.pkmap.count.iter().all(|&c| c == 0), "pkmap slots left");
    }
}
