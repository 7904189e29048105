//! Random kmalloc / kfree / kmem_cache sequences on a booted kernel, with SLUB's invariants
//! checked after every step: objects never overlap (each is filled with its own pattern,
//! checked when freed — a freelist write into a live object would break it), slab pages
//! match the node's slab counters, and freeing everything then shrinking the caches gives
//! back every page.
//!
//! **The 64-bit SLUB.** Until the x86_64 kernel (`kernel::x86_64`) runs processes, SLUB's
//! 64-bit form is exercised here on a booted i386 kernel whose SLUB is replaced, before any
//! slab exists, by the one a 64-bit kernel builds ([`booted_slub64`]: `Slub::boot_direct_map`
//! for `Arch::X86_64`): 8-byte free pointers hardened with `swab64` and a 64-bit
//! `s->random`, objects at PAGE_OFFSET 0xffff888000000000 + their physical address. SLUB
//! reaches slab memory by physical address only, so the i386 machine's RAM serves; the same
//! sequences and invariants run on it, and the tests below read the free pointers in RAM.

use kernel::config::{Arch, KernelConfig};
use kernel::gfp::{Gfp, __GFP_ACCOUNT, __GFP_DMA, __GFP_RECLAIMABLE, __GFP_ZERO, GFP_KERNEL};
use kernel::slab::{
    check_slab, CacheId, CacheSpec, FreePtr, SlabError, SlabFlags, Slub, BOOT_CACHE_NAMES,
};
use kernel::vmstat::NodeStatItem;
use kernel::x86_64::PAGE_OFFSET_64;
use kernel::{boot, BootOptions, Kernel};
use machine::{PhysAddr, VirtAddr};
use proptest::prelude::*;

const CPUS: u32 = 2;

fn booted(pae: bool, ram_mib: u64) -> Kernel {
    let preset = if pae { "debian-686-pae" } else { "debian-686" };
    let cfg = KernelConfig::preset(preset).expect("preset");
    let mut opts = BootOptions::new(ram_mib << 20, CPUS, cfg);
    opts.runtime_profile = false;
    boot(&opts).expect("boot")
}

/// A booted i386 kernel (PAE) whose SLUB is the 64-bit kernel's: see the module doc.
fn booted_slub64(ram_mib: u64) -> Kernel {
    let mut k = booted(true, ram_mib);
    assert_eq!(k.slab.pages_held(), 0, "no slab yet: SLUB can be replaced");
    let mut cfg = k.config.clone();
    cfg.arch = Arch::X86_64;
    let max_low_pfn = k.layout.max_low_pfn.as_u64();
    let init_on_alloc = k.node.init_on_alloc;
    k.slab = Slub::boot_direct_map(CPUS as usize, &cfg, max_low_pfn, init_on_alloc);
    assert_eq!(k.slab.page_offset, PAGE_OFFSET_64);
    assert_eq!(k.slab.fp, FreePtr::X86_64);
    k
}

/// The physical address of a direct-map address (`__pa`), with SLUB's PAGE_OFFSET.
fn pa(k: &Kernel, va: VirtAddr) -> PhysAddr {
    PhysAddr::new(va.as_u64() - k.slab.page_offset)
}

/// Fill an object with a pattern derived from its tag.
fn stamp(k: &mut Kernel, va: VirtAddr, len: usize, tag: u8) {
    if len == 0 {
        return;
    }
    let buf = vec![tag; len];
    let at = pa(k, va);
    k.machine.mem.write(at, &buf).expect("object in RAM");
}

fn holds(k: &Kernel, va: VirtAddr, len: usize, tag: u8) -> bool {
    if len == 0 {
        return true;
    }
    let mut buf = vec![0; len];
    k.machine
        .mem
        .read(pa(k, va), &mut buf)
        .expect("object in RAM");
    buf.iter().all(|&b| b == tag)
}

#[derive(Clone, Debug)]
enum Op {
    Kmalloc {
        size: usize,
        ty: u8,
        zero: bool,
        cpu: usize,
    },
    CacheAlloc {
        cache: usize,
        cpu: usize,
    },
    Free {
        pick: usize,
        cpu: usize,
    },
    Shrink {
        cache: usize,
        cpu: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let size = prop_oneof![
        6 => 0usize..=256,
        3 => 257usize..=8192,
        1 => 8193usize..=40_000,
    ];
    prop_oneof![
        5 => (size, 0u8..4, any::<bool>(), 0..CPUS as usize)
            .prop_map(|(size, ty, zero, cpu)| Op::Kmalloc { size, ty, zero, cpu }),
        2 => (0..BOOT_CACHE_NAMES.len(), 0..CPUS as usize)
            .prop_map(|(cache, cpu)| Op::CacheAlloc { cache, cpu }),
        6 => (any::<usize>(), 0..CPUS as usize).prop_map(|(pick, cpu)| Op::Free { pick, cpu }),
        1 => (0..BOOT_CACHE_NAMES.len(), 0..CPUS as usize)
            .prop_map(|(cache, cpu)| Op::Shrink { cache, cpu }),
    ]
}

fn gfp_of(ty: u8, zero: bool) -> Gfp {
    let t = match ty {
        0 => Gfp::empty(),
        1 => __GFP_ACCOUNT,
        2 => __GFP_RECLAIMABLE,
        _ => __GFP_DMA,
    };
    GFP_KERNEL | t | if zero { __GFP_ZERO } else { Gfp::empty() }
}

/// A live object: address, usable length, pattern, and the cache for kmem_cache_free.
type Live = (VirtAddr, usize, u8, Option<CacheId>);

fn usable(k: &Kernel, va: VirtAddr, size: usize) -> usize {
    if va.as_u64() == 16 {
        return 0;
    }
    size.min(k.ksize(va, 0).expect("ksize"))
}

fn apply(k: &mut Kernel, op: &Op, live: &mut Vec<Live>, tag: &mut u8) {
    *tag = tag.wrapping_add(1).max(1);
    match *op {
        Op::Kmalloc {
            size,
            ty,
            zero,
            cpu,
        } => {
            let va = k.kmalloc(size, gfp_of(ty, zero), cpu).expect("kmalloc");
            let len = usable(k, va, size);
            assert!(holds(k, va, len, 0), "init_on_alloc: object not zeroed");
            stamp(k, va, len, *tag);
            live.push((va, len, *tag, None));
        }
        Op::CacheAlloc { cache, cpu } => {
            let id = k.slab.find_cache(BOOT_CACHE_NAMES[cache]).expect("cache");
            let va = k.kmem_cache_alloc(id, GFP_KERNEL, cpu).expect("alloc");
            let len = k.slab.cache(id).expect("live").object_size as usize;
            stamp(k, va, len, *tag);
            live.push((va, len, *tag, Some(id)));
        }
        Op::Free { pick, cpu } if !live.is_empty() => {
            let (va, len, t, cache) = live.swap_remove(pick % live.len());
            assert!(holds(k, va, len, t), "object at {va:?} was overwritten");
            match cache {
                Some(id) => k.kmem_cache_free(id, va, cpu).expect("free"),
                None => k.kfree(va, cpu).expect("kfree"),
            }
        }
        Op::Free { .. } => {}
        Op::Shrink { cache, cpu } => {
            let id = k.slab.find_cache(BOOT_CACHE_NAMES[cache]).expect("cache");
            k.kmem_cache_shrink(id, cpu).expect("shrink");
        }
    }
}

/// No two live objects overlap.
fn disjoint(live: &[Live]) -> bool {
    let mut v: Vec<(u64, u64)> = live
        .iter()
        .filter(|l| l.1 > 0)
        .map(|l| (l.0.as_u64(), l.0.as_u64() + l.1 as u64))
        .collect();
    v.sort_unstable();
    v.windows(2).all(|w| w[0].1 <= w[1].0)
}

fn shrink_all(k: &mut Kernel) {
    let ids: Vec<CacheId> = k.slab.caches_newest_first().map(|(id, _)| id).collect();
    for id in ids {
        k.kmem_cache_shrink(id, 0).expect("shrink");
    }
    k.node.drain_all_pages(None);
}

fn slab_pages(k: &Kernel) -> (u64, u64) {
    (
        k.node.node_page_state(NodeStatItem::NrSlabReclaimableB),
        k.node.node_page_state(NodeStatItem::NrSlabUnreclaimableB),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn random_sequences_keep_slub_consistent(
        pae in any::<bool>(),
        ops in proptest::collection::vec(op(), 1..300),
    ) {
        run_sequence(booted(pae, 256), &ops)?;
    }

    #[test]
    fn random_sequences_keep_the_64_bit_slub_consistent(
        ops in proptest::collection::vec(op(), 1..300),
    ) {
        run_sequence(booted_slub64(256), &ops)?;
    }
}

/// Apply `ops` with the invariants checked after each, then free everything and shrink:
/// every slab page goes back.
fn run_sequence(mut k: Kernel, ops: &[Op]) -> Result<(), TestCaseError> {
    k.node.drain_all_pages(None);
    let free0 = k.node.nr_free_pages();
    let slab0 = slab_pages(&k);
    let (mut live, mut tag) = (Vec::new(), 0u8);
    for op in ops {
        apply(&mut k, op, &mut live, &mut tag);
        prop_assert!(check_slab(&k).is_ok(), "{op:?}: {:?}", check_slab(&k));
        prop_assert!(disjoint(&live), "{op:?}: objects overlap");
    }
    while let Some((va, len, t, cache)) = live.pop() {
        prop_assert!(holds(&k, va, len, t));
        match cache {
            Some(id) => k.kmem_cache_free(id, va, 1).expect("free"),
            None => k.kfree(va, 1).expect("kfree"),
        }
    }
    shrink_all(&mut k);
    prop_assert!(check_slab(&k).is_ok(), "{:?}", check_slab(&k));
    prop_assert_eq!(slab_pages(&k), slab0);
    prop_assert_eq!(k.node.nr_free_pages(), free0);
    Ok(())
}

#[test]
fn meminfo_slab_lines_follow_the_slab_pages() {
    let mut k = booted(true, 256);
    let before = kernel::procfs::live::read(&k, "meminfo").expect("meminfo");
    assert!(
        before.contains("\nSlab:                  0 kB\n"),
        "{before}"
    );
    let mut objs = Vec::new();
    for _ in 0..100 {
        objs.push(
            k.kmalloc(1000, GFP_KERNEL | __GFP_RECLAIMABLE, 0)
                .expect("kmalloc"),
        );
    }
    let a = k.kmalloc(20_000, GFP_KERNEL, 0).expect("large");
    let (recl, unrecl) = slab_pages(&k);
    assert_eq!(
        unrecl, 8,
        "kmalloc_large of 20000 bytes takes an order-3 block"
    );
    assert!(recl >= 100 / 8 * 2, "kmalloc-rcl-1k slabs");
    let m = kernel::procfs::live::read(&k, "meminfo").expect("meminfo");
    let kb = |name: &str| -> Option<u64> {
        let l = m.lines().find(|l| l.starts_with(name))?;
        l.split_whitespace().nth(1)?.parse().ok()
    };
    assert_eq!(kb("Slab:"), Some((recl + unrecl) * 4));
    assert_eq!(kb("SReclaimable:"), Some(recl * 4));
    assert_eq!(kb("SUnreclaim:"), Some(unrecl * 4));
    let vm = kernel::procfs::live::read(&k, "vmstat").expect("vmstat");
    assert!(vm.contains(&format!("\nnr_slab_reclaimable {recl}\n")));
    let si = kernel::procfs::live::read(&k, "slabinfo").expect("slabinfo");
    let rcl = si
        .lines()
        .find(|l| l.starts_with("kmalloc-rcl-1k "))
        .expect("line");
    // 100 objects in 7 slabs of 16 (2 CPUs); the CPU slab's free objects count as active.
    assert!(rcl.contains("   112    112   1024   16    4 "), "{rcl}");
    assert!(rcl.ends_with("slabdata      7      7      0"), "{rcl}");
    k.kfree(a, 0).expect("kfree");
    for o in objs {
        k.kfree(o, 0).expect("kfree");
    }
    check_slab(&k).expect("consistent");
}

#[test]
fn bad_frees_are_kernel_reports_not_panics() {
    let mut k = booted(false, 256);
    let a = k.kmalloc(64, GFP_KERNEL, 0).expect("kmalloc");
    let b = k.kmalloc(64, GFP_KERNEL, 0).expect("kmalloc");
    k.kfree(a, 0).expect("first free");
    let text = |e: SlabError| e.to_string();
    let e = text(k.kfree(a, 0).expect_err("double free"));
    assert!(
        e.contains("BUG kmalloc-64 (Not tainted): Object already free"),
        "{e}"
    );
    let e = text(
        k.kfree(VirtAddr::new(b.as_u64() + 8), 0)
            .expect_err("interior"),
    );
    assert!(e.contains("Invalid object pointer"), "{e}");
    let e = text(
        k.kfree(VirtAddr::new(0x1000_0000), 0)
            .expect_err("user address"),
    );
    assert!(
        e.contains("virt_to_phys used for non-linear address"),
        "{e}"
    );
    let page = k.alloc_pages(GFP_KERNEL, 0, 0).expect("page");
    let va = VirtAddr::new(k.config.page_offset() + page.pfn.phys().as_u64());
    let e = text(k.kfree(va, 0).expect_err("not kmalloc"));
    assert!(e.contains("free_large_kmalloc"), "{e}");
    let pid = k.slab.find_cache("pid").expect("pid");
    let e = text(k.kmem_cache_free(pid, b, 0).expect_err("wrong cache"));
    assert!(
        e.contains("Wrong slab cache. pid but object is from kmalloc-64"),
        "{e}"
    );
    k.kfree(b, 0).expect("b is still fine");
    assert_eq!(k.kfree(VirtAddr::new(0), 0), Ok(()));
    assert_eq!(k.kfree(VirtAddr::new(16), 0), Ok(()));
    check_slab(&k).expect("consistent after refused frees");
}

#[test]
fn named_caches_create_merge_and_destroy() {
    let mut k = booted(true, 256);
    // Reclaimable: no boot cache of this size and flags to merge into.
    let flags = SlabFlags::HWCACHE_ALIGN | SlabFlags::RECLAIM_ACCOUNT;
    let spec = CacheSpec::new("test_obj", 100, 0, flags);
    let id = k.kmem_cache_create(&spec).expect("create");
    let c = k.slab.cache(id).expect("live");
    assert_eq!((c.size, c.oo.objects(), c.oo.order()), (128, 32, 0));
    // Same geometry and flags: merged, so a second create is an alias.
    let alias = k
        .kmem_cache_create(&CacheSpec::new("test_obj2", 128, 0, flags))
        .expect("alias");
    assert_eq!(alias, id);
    let o = k.kmem_cache_alloc(id, GFP_KERNEL, 1).expect("alloc");
    k.kmem_cache_destroy(id, 0)
        .expect("drops the alias reference");
    let e = k.kmem_cache_destroy(id, 0).expect_err("objects left");
    assert!(
        e.to_string().contains("Slab cache still has objects"),
        "{e}"
    );
    k.kmem_cache_free(id, o, 1).expect("free");
    check_slab(&k).expect("consistent");
    let bad = CacheSpec::new("tiny", 2, 0, SlabFlags::empty());
    assert!(k.kmem_cache_create(&bad).is_err());
}

#[test]
fn allocation_failure_reports_through_the_page_allocator() {
    let mut k = booted(true, 64);
    let mut held = Vec::new();
    let err = loop {
        match k.kmalloc(4 << 20, GFP_KERNEL, 0) {
            Ok(va) => held.push(va),
            Err(e) => break e,
        }
    };
    assert!(!held.is_empty());
    match err {
        SlabError::NoMemory { .. } => {}
        other => panic!("expected NoMemory, got {other}"),
    }
    for va in held {
        k.kfree(va, 0).expect("kfree");
    }
    check_slab(&k).expect("consistent");
}

/// The raw `N`-byte free pointer stored in the free `object` of cache `id`.
fn raw_free_pointer(k: &Kernel, id: CacheId, object: VirtAddr) -> (u64, u64) {
    let offset = u64::from(k.slab.cache(id).expect("live").offset);
    let addr = object.as_u64() + offset;
    let at = pa(k, VirtAddr::new(addr));
    let mut b = [0u8; 8];
    let n = k.slab.fp.size() as usize;
    k.machine.mem.read(at, &mut b[..n]).expect("RAM");
    (u64::from_le_bytes(b), addr)
}

/// The bytes of `len` at `va`.
fn bytes(k: &Kernel, va: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0; len];
    k.machine
        .mem
        .read(pa(k, VirtAddr::new(va)), &mut buf)
        .expect("RAM");
    buf
}

#[test]
fn free_pointers_in_ram_are_the_architectures_width_and_swab() {
    for wide in [false, true] {
        let mut k = if wide {
            booted_slub64(256)
        } else {
            booted(true, 256)
        };
        let id = k.slab.find_cache("kmalloc-64").expect("cache");
        let random = k.slab.cache(id).expect("live").random;
        // get_random_long(): 64 bits on x86_64, 32 on i386.
        assert_eq!(random > u64::from(u32::MAX), wide, "{random:#x}");
        let a = k.kmalloc(64, GFP_KERNEL, 0).expect("a");
        let b = k.kmalloc(64, GFP_KERNEL, 0).expect("b");
        assert_eq!(a.as_u64() >= PAGE_OFFSET_64, wide, "{a:?}");
        stamp(&mut k, a, 64, 0xaa);
        stamp(&mut k, b, 64, 0xaa);
        k.kfree(a, 0).expect("a");
        k.kfree(b, 0).expect("b");
        // b is the CPU freelist's head and points at a, as `ptr ^ random ^ swab(addr)`.
        let (raw, addr) = raw_free_pointer(&k, id, b);
        let swab = if wide {
            addr.swap_bytes()
        } else {
            u64::from((addr as u32).swap_bytes())
        };
        assert_eq!(raw ^ random ^ swab, a.as_u64(), "wide {wide}");
        // Exactly the pointer's bytes were written: the rest of the object is intact.
        let n = k.slab.fp.size() as usize;
        assert!(bytes(&k, addr + n as u64, 8).iter().all(|&x| x == 0xaa));
        assert!(bytes(&k, addr - 8, 8).iter().all(|&x| x == 0xaa));
        // LIFO: the next allocations decode the chain back.
        assert_eq!(k.kmalloc(64, GFP_KERNEL, 0).expect("b again"), b);
        assert_eq!(k.kmalloc(64, GFP_KERNEL, 0).expect("a again"), a);
        check_slab(&k).expect("consistent");
    }
}

/// A permutation of `0..n` far from allocation order.
fn scrambled(n: usize) -> Vec<usize> {
    (0..n).map(|i| (i * 7919 + 13) % n).collect()
}

/// Fill a cache with three slabs and more on two CPUs, free everything in a scrambled
/// order (remote frees included; kfree's fast path and kmem_cache_free's path in turn),
/// allocate as many again, free again and shrink.
fn scrambled_traffic(k: &mut Kernel, name: &str) {
    let id = k.slab.find_cache(name).expect(name);
    let c = k.slab.cache(id).expect("live");
    let (len, n) = (c.object_size as usize, 3 * c.oo.objects() as usize + 5);
    let po = k.slab.page_offset;
    let mut objs = Vec::new();
    for i in 0..n {
        let va = k.kmem_cache_alloc(id, GFP_KERNEL, i % 2).expect("alloc");
        assert!(va.as_u64() >= po, "{name}: {va:?} below PAGE_OFFSET");
        stamp(k, va, len, (i % 251) as u8 + 1);
        objs.push(va);
    }
    check_slab(k).expect("consistent after the allocations");
    for (j, &i) in scrambled(n).iter().enumerate() {
        let tag = (i % 251) as u8 + 1;
        assert!(
            holds(k, objs[i], len, tag),
            "{name}: object {i} overwritten"
        );
        let cpu = (j / 3) % 2;
        if j % 2 == 0 {
            k.kfree(objs[i], cpu).expect("kfree");
        } else {
            k.kmem_cache_free(id, objs[i], cpu).expect("free");
        }
        if j % 7 == 0 {
            check_slab(k).expect("consistent while freeing");
        }
    }
    check_slab(k).expect("consistent after the frees");
    objs.clear();
    for i in 0..n {
        let va = k.kmem_cache_alloc(id, GFP_KERNEL, i % 2).expect("realloc");
        stamp(k, va, len, (i % 251) as u8 + 1);
        objs.push(va);
    }
    let mut sorted: Vec<u64> = objs.iter().map(|v| v.as_u64()).collect();
    sorted.sort_unstable();
    assert!(
        sorted.windows(2).all(|w| w[1] - w[0] >= len as u64),
        "{name}: overlap"
    );
    check_slab(k).expect("consistent after reallocating");
    for &i in scrambled(n).iter().rev() {
        assert!(holds(k, objs[i], len, (i % 251) as u8 + 1), "{name}: {i}");
        k.kmem_cache_free(id, objs[i], i % 2).expect("free again");
    }
    for cpu in 0..CPUS as usize {
        k.kmem_cache_shrink(id, cpu).expect("shrink");
    }
    check_slab(k).expect("consistent after shrinking");
}

#[test]
fn the_64_bit_slub_carries_scrambled_traffic() {
    let mut k = booted_slub64(256);
    k.node.drain_all_pages(None);
    let free0 = k.node.nr_free_pages();
    // kmalloc-8 holds nothing but its 8-byte free pointer (offset 0); radix_tree_node has
    // a constructor and UDP is SLAB_TYPESAFE_BY_RCU, so theirs lies past the object.
    let names = [
        "kmalloc-8",
        "kmalloc-16",
        "kmalloc-96",
        "kmalloc-192",
        "kmalloc-1k",
        "kmalloc-8k",
        "radix_tree_node",
        "UDP",
        "vm_area_struct",
    ];
    for name in names {
        let id = k.slab.find_cache(name).expect(name);
        let (offset, size) = k.slab.cache(id).map(|c| (c.offset, c.size)).expect("live");
        assert!(
            offset.is_multiple_of(8) && offset + 8 <= size,
            "{name}: {offset}/{size}"
        );
        assert!(
            name != "kmalloc-8" || offset == 0,
            "kmalloc-8's pointer at {offset}"
        );
        scrambled_traffic(&mut k, name);
    }
    shrink_all(&mut k);
    assert_eq!(slab_pages(&k), (0, 0));
    assert_eq!(k.node.nr_free_pages(), free0);
}

#[test]
fn the_64_bit_slub_refuses_bad_frees_and_serves_large_kmallocs() {
    let mut k = booted_slub64(256);
    let a = k.kmalloc(64, GFP_KERNEL, 0).expect("a");
    let b = k.kmalloc(64, GFP_KERNEL, 0).expect("b");
    k.set_slub_debug(true).expect("debug on");
    k.kfree(a, 0).expect("a");
    k.kfree(b, 0).expect("b");
    let e = k.kfree(a, 0).expect_err("double free").to_string();
    assert!(e.contains("Object already free"), "{e}");
    k.set_slub_debug(false).expect("debug off");
    let c = k.kmalloc(64, GFP_KERNEL, 0).expect("c");
    let e = k
        .kfree(VirtAddr::new(c.as_u64() + 8), 0)
        .expect_err("interior");
    assert!(e.to_string().contains("Invalid object pointer"), "{e}");
    // The i386 direct map is below the 64-bit PAGE_OFFSET: not a linear address here.
    let e = k
        .kfree(VirtAddr::new(0xc000_1000), 0)
        .expect_err("i386 address");
    assert!(e.to_string().contains("non-linear address"), "{e}");
    let big = k.kmalloc(20_000, GFP_KERNEL, 0).expect("large");
    assert!(big.as_u64() >= PAGE_OFFSET_64);
    assert_eq!(k.ksize(big, 0), Ok(32 << 10));
    assert_eq!(k.ksize(c, 0), Ok(64));
    k.kfree(big, 0).expect("large free");
    k.kfree(c, 0).expect("c");
    check_slab(&k).expect("consistent");
}
