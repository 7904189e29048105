//! TLB and control-register behaviour as the SDM describes it: stale translations until
//! INVLPG, global entries across CR3 writes, PGE toggles, PDPTE registers, spurious faults
//! and the D-bit re-walk. Every test runs on both TLB geometries (the Core 2 arrays and the
//! never-evicting debug TLB); the last ones pin where they differ: capacity.

mod common;

use common::{enable, machine_on, read, write, GEOMETRIES, KERNEL_RW};
use machine::cpu::{Cr0, Cr4};
use machine::mmu::Access;
use machine::paging::{Format, PageSize, PteFlags};
use machine::TlbGeometry;
use machine::{PhysAddr, VirtAddr};

const FORMATS: [Format; 2] = [Format::TwoLevel, Format::Pae];

fn va(x: u64) -> VirtAddr {
    VirtAddr::new(x)
}

#[test]
fn missing_invlpg_leaves_a_stale_translation() {
    GEOMETRIES
        .into_iter()
        .for_each(missing_invlpg_leaves_a_stale_translation_on);
}

fn missing_invlpg_leaves_a_stale_translation_on(g: TlbGeometry) {
    for format in FORMATS {
        let (mut m, mut t) = machine_on(g, format, 1);
        let v = 0xc000_5000;
        let pte = t.map(&mut m.mem, v, 0x30_0000, PageSize::Size4K, KERNEL_RW);
        m.mem
            .write_u32(PhysAddr::new(0x30_0000), 0xaaaa_aaaa)
            .unwrap();
        m.mem
            .write_u32(PhysAddr::new(0x31_0000), 0xbbbb_bbbb)
            .unwrap();
        enable(&mut m, 0, &t);
        assert_eq!(m.read_virt_u32(0, va(v)).unwrap(), 0xaaaa_aaaa);
        // A write caches the translation as dirty (a write through a clean entry would
        // walk again to set D and so pick up a changed PTE).
        m.write_virt_u32(0, va(v), 0xaaaa_0000).unwrap();

        // Repoint the PTE without a flush: the CPU keeps the old frame.
        let old = read(&m.mem, format, pte);
        write(&mut m.mem, format, pte, (old & 0xfff) | 0x31_0000);
        assert_eq!(
            m.read_virt_u32(0, va(v)).unwrap(),
            0xaaaa_0000,
            "{format:?}"
        );
        m.write_virt_u32(0, va(v), 0x1234_5678).unwrap();
        assert_eq!(
            m.mem.read_u32(PhysAddr::new(0x30_0000)).unwrap(),
            0x1234_5678,
            "the stale write lands in the old frame"
        );
        assert_eq!(
            m.mem.read_u32(PhysAddr::new(0x31_0000)).unwrap(),
            0xbbbb_bbbb
        );
        let probe = m.cpus[0]
            .probe(&m.mem, va(v), Access::KERNEL_READ)
            .unwrap()
            .unwrap();
        assert_eq!(
            probe.phys,
            PhysAddr::new(0x31_0000),
            "memory says otherwise"
        );

        m.invlpg(0, va(v + 0x123)).unwrap();
        assert_eq!(m.read_virt_u32(0, va(v)).unwrap(), 0xbbbb_bbbb);
        assert_eq!(m.cpus[0].counters().invlpg, 1);

        // Unmapping without a flush: still readable through the TLB.
        write(&mut m.mem, format, pte, 0);
        assert!(m.read_virt_u32(0, va(v)).is_ok());
        m.invlpg(0, va(v)).unwrap();
        let f = m.read_virt_u32(0, va(v)).unwrap_err().page_fault().unwrap();
        assert_eq!(f.error_code.bits(), 0, "not present, supervisor read");
    }
}

#[test]
fn invlpg_is_per_cpu() {
    GEOMETRIES.into_iter().for_each(invlpg_is_per_cpu_on);
}

fn invlpg_is_per_cpu_on(g: TlbGeometry) {
    let (mut m, mut t) = machine_on(g, Format::Pae, 2);
    let v = 0xc010_0000;
    let pte = t.map(&mut m.mem, v, 0x30_0000, PageSize::Size4K, KERNEL_RW);
    enable(&mut m, 0, &t);
    enable(&mut m, 1, &t);
    m.read_virt_u32(0, va(v)).unwrap();
    m.read_virt_u32(1, va(v)).unwrap();
    write(&mut m.mem, Format::Pae, pte, 0x31_0000 | 0x3);
    m.invlpg(0, va(v)).unwrap();
    assert_eq!(
        m.translate(0, va(v), Access::KERNEL_READ).unwrap(),
        PhysAddr::new(0x31_0000)
    );
    assert_eq!(
        m.translate(1, va(v), Access::KERNEL_READ).unwrap(),
        PhysAddr::new(0x30_0000),
        "the other CPU needs its own flush (an IPI in Linux)"
    );
}

#[test]
fn global_entries_survive_cr3_reload_but_not_a_pge_toggle() {
    GEOMETRIES
        .into_iter()
        .for_each(global_entries_survive_cr3_reload_but_not_a_pge_toggle_on);
}

fn global_entries_survive_cr3_reload_but_not_a_pge_toggle_on(g: TlbGeometry) {
    for format in FORMATS {
        let (mut m, mut t) = machine_on(g, format, 1);
        let kv = 0xc000_1000;
        let uv = 0x0804_8000;
        let kpte = t.map(
            &mut m.mem,
            kv,
            0x30_0000,
            PageSize::Size4K,
            KERNEL_RW | PteFlags::GLOBAL,
        );
        let upte = t.map(
            &mut m.mem,
            uv,
            0x30_1000,
            PageSize::Size4K,
            KERNEL_RW | PteFlags::USER,
        );
        enable(&mut m, 0, &t);
        m.read_virt_u32(0, va(kv)).unwrap();
        m.read_virt_u32(0, va(uv)).unwrap();
        assert_eq!(m.cpus[0].tlb().global_len(), 1);

        write(&mut m.mem, format, kpte, 0x40_0000 | 0x103);
        write(&mut m.mem, format, upte, 0x40_1000 | 0x7);
        m.write_cr3(0, t.root).unwrap();
        let k = |m: &mut machine::machine::Machine| {
            m.translate(0, va(kv), Access::KERNEL_READ).unwrap()
        };
        let u = |m: &mut machine::machine::Machine| {
            m.translate(0, va(uv), Access::KERNEL_READ).unwrap()
        };
        assert_eq!(
            k(&mut m),
            PhysAddr::new(0x30_0000),
            "{format:?}: global kept"
        );
        assert_eq!(
            u(&mut m),
            PhysAddr::new(0x40_1000),
            "{format:?}: non-global dropped"
        );

        // Toggle CR4.PGE as native_flush_tlb_global does.
        let before = m.cpus[0].counters();
        let cr4 = m.cpus[0].regs().cr4;
        m.write_cr4(0, cr4 - Cr4::PGE).unwrap();
        m.write_cr4(0, cr4).unwrap();
        assert_eq!(
            k(&mut m),
            PhysAddr::new(0x40_0000),
            "{format:?}: toggle drops globals"
        );
        let after = m.cpus[0].counters();
        assert_eq!(
            after.full_flushes - before.full_flushes,
            2,
            "each CR4 write flushes"
        );
        assert_eq!(after.cr3_reloads, 2, "enable + the explicit reload");

        // flush_all does the same in one step.
        write(&mut m.mem, format, kpte, 0x50_0000 | 0x103);
        m.write_cr3(0, t.root).unwrap();
        assert_eq!(k(&mut m), PhysAddr::new(0x40_0000));
        m.flush_all(0).unwrap();
        assert_eq!(k(&mut m), PhysAddr::new(0x50_0000));
    }
}

#[test]
fn g_bit_without_cr4_pge_is_not_global() {
    GEOMETRIES
        .into_iter()
        .for_each(g_bit_without_cr4_pge_is_not_global_on);
}

fn g_bit_without_cr4_pge_is_not_global_on(g: TlbGeometry) {
    let (mut m, mut t) = machine_on(g, Format::TwoLevel, 1);
    let kv = 0xc000_1000;
    let kpte = t.map(
        &mut m.mem,
        kv,
        0x30_0000,
        PageSize::Size4K,
        KERNEL_RW | PteFlags::GLOBAL,
    );
    enable(&mut m, 0, &t);
    let cr4 = m.cpus[0].regs().cr4;
    m.write_cr4(0, cr4 - Cr4::PGE).unwrap();
    m.read_virt_u32(0, va(kv)).unwrap();
    assert_eq!(m.cpus[0].tlb().global_len(), 0);
    write(&mut m.mem, Format::TwoLevel, kpte, 0x31_0000 | 0x103);
    m.write_cr3(0, t.root).unwrap();
    assert_eq!(
        m.translate(0, va(kv), Access::KERNEL_READ).unwrap(),
        PhysAddr::new(0x31_0000)
    );
}

#[test]
fn invlpg_drops_a_whole_large_page() {
    GEOMETRIES
        .into_iter()
        .for_each(invlpg_drops_a_whole_large_page_on);
}

fn invlpg_drops_a_whole_large_page_on(g: TlbGeometry) {
    for (format, size) in [
        (Format::TwoLevel, PageSize::Size4M),
        (Format::Pae, PageSize::Size2M),
    ] {
        let (mut m, mut t) = machine_on(g, format, 1);
        let base = 0xc000_0000;
        let pde = t.map(
            &mut m.mem,
            base,
            0x40_0000,
            size,
            KERNEL_RW | PteFlags::GLOBAL,
        );
        enable(&mut m, 0, &t);
        let inside = base + size.bytes() - 8;
        assert_eq!(
            m.translate(0, va(inside), Access::KERNEL_READ).unwrap(),
            PhysAddr::new(0x40_0000 + size.bytes() - 8)
        );
        assert_eq!(
            m.cpus[0].tlb().len(),
            1,
            "one entry for the whole large page"
        );
        let old = read(&m.mem, format, pde);
        write(&mut m.mem, format, pde, (old & 0xfff) | 0x80_0000);
        m.write_cr3(0, t.root).unwrap();
        assert_eq!(
            m.translate(0, va(base), Access::KERNEL_READ).unwrap(),
            PhysAddr::new(0x40_0000),
            "{format:?}: global large page survives CR3"
        );
        // INVLPG of any address inside drops the whole large-page entry.
        m.invlpg(0, va(base + 0x1234)).unwrap();
        assert_eq!(
            m.translate(0, va(inside), Access::KERNEL_READ).unwrap(),
            PhysAddr::new(0x80_0000 + size.bytes() - 8)
        );
    }
}

#[test]
fn pdpte_changes_need_a_cr3_reload() {
    GEOMETRIES
        .into_iter()
        .for_each(pdpte_changes_need_a_cr3_reload_on);
}

fn pdpte_changes_need_a_cr3_reload_on(g: TlbGeometry) {
    let (mut m, mut t) = machine_on(g, Format::Pae, 1);
    let v = 0x4000_3000; // PDPT slot 1
    t.map(&mut m.mem, v, 0x30_0000, PageSize::Size4K, KERNEL_RW);
    enable(&mut m, 0, &t);
    assert_eq!(
        m.translate(0, va(v), Access::KERNEL_READ).unwrap(),
        PhysAddr::new(0x30_0000)
    );

    // Point PDPTE 1 at a new page directory mapping v elsewhere.
    let pd = t.alloc(&mut m.mem);
    let pt = t.alloc(&mut m.mem);
    m.mem.write_u64(PhysAddr::new(pd), pt | 0x7).unwrap();
    m.mem
        .write_u64(PhysAddr::new(pt + 3 * 8), 0x60_0000 | 0x3)
        .unwrap();
    let slot = PhysAddr::new(t.root + 8);
    let old_pdpte = m.mem.read_u64(slot).unwrap();
    m.mem.write_u64(slot, pd | 1).unwrap();

    // Neither INVLPG nor a TLB miss reads the PDPT again.
    m.invlpg(0, va(v)).unwrap();
    assert_eq!(
        m.translate(0, va(v), Access::KERNEL_READ).unwrap(),
        PhysAddr::new(0x30_0000)
    );
    assert_eq!(m.cpus[0].regs().pdptes[1], old_pdpte);
    m.write_cr3(0, t.root).unwrap();
    assert_eq!(
        m.translate(0, va(v), Access::KERNEL_READ).unwrap(),
        PhysAddr::new(0x60_0000)
    );

    // Clearing the PDPTE only bites after the next CR3 load, and then faults not-present.
    m.mem.write_u64(slot, 0).unwrap();
    m.invlpg(0, va(v)).unwrap();
    assert!(m.translate(0, va(v), Access::KERNEL_READ).is_ok());
    m.write_cr3(0, t.root).unwrap();
    let f = m
        .translate(0, va(v), Access::KERNEL_READ)
        .unwrap_err()
        .page_fault()
        .unwrap();
    assert_eq!(f.error_code.bits(), 0);

    // The CR4.PGE toggle of flush_all also reloads them.
    m.mem.write_u64(slot, pd | 1).unwrap();
    m.flush_all(0).unwrap();
    assert_eq!(
        m.translate(0, va(v), Access::KERNEL_READ).unwrap(),
        PhysAddr::new(0x60_0000)
    );
    // and the PDPT in RAM never gets an A bit
    assert_eq!(m.mem.read_u64(slot).unwrap(), pd | 1);
}

#[test]
fn accessed_and_dirty_bits_land_in_ram() {
    GEOMETRIES
        .into_iter()
        .for_each(accessed_and_dirty_bits_land_in_ram_on);
}

fn accessed_and_dirty_bits_land_in_ram_on(g: TlbGeometry) {
    for format in FORMATS {
        let (mut m, mut t) = machine_on(g, format, 1);
        let v = 0xc000_7000;
        let pte = t.map(&mut m.mem, v, 0x30_0000, PageSize::Size4K, KERNEL_RW);
        let pde = t.pde_addr(&mut m.mem, v);
        enable(&mut m, 0, &t);
        let a = PteFlags::ACCESSED.bits();
        let d = PteFlags::DIRTY.bits();
        assert_eq!(read(&m.mem, format, pte) & (a | d), 0);
        m.read_virt_u32(0, va(v)).unwrap();
        assert_eq!(
            read(&m.mem, format, pte) & (a | d),
            a,
            "{format:?}: read sets A only"
        );
        assert_eq!(
            read(&m.mem, format, pde) & (a | d),
            a,
            "{format:?}: directory gets A"
        );
        m.write_virt_u32(0, va(v), 1).unwrap();
        assert_eq!(
            read(&m.mem, format, pte) & (a | d),
            a | d,
            "{format:?}: write sets D"
        );
        assert_eq!(
            read(&m.mem, format, pde) & d,
            0,
            "{format:?}: never D on a directory"
        );

        // Large pages get D on the PDE.
        let big = t.map(
            &mut m.mem,
            0xd000_0000,
            0x80_0000,
            if format == Format::Pae {
                PageSize::Size2M
            } else {
                PageSize::Size4M
            },
            KERNEL_RW,
        );
        m.write_virt_u32(0, va(0xd000_0010), 1).unwrap();
        assert_eq!(read(&m.mem, format, big) & (a | d), a | d);
    }
}

#[test]
fn write_through_a_clean_tlb_entry_walks_again() {
    GEOMETRIES
        .into_iter()
        .for_each(write_through_a_clean_tlb_entry_walks_again_on);
}

fn write_through_a_clean_tlb_entry_walks_again_on(g: TlbGeometry) {
    for format in FORMATS {
        let (mut m, mut t) = machine_on(g, format, 1);
        let v = 0xc000_9000;
        let pte = t.map(&mut m.mem, v, 0x30_0000, PageSize::Size4K, KERNEL_RW);
        enable(&mut m, 0, &t);
        m.read_virt_u32(0, va(v)).unwrap();
        assert_eq!(m.cpus[0].counters().walks, 1);
        m.read_virt_u32(0, va(v)).unwrap();
        assert_eq!(m.cpus[0].counters().walks, 1, "read hit");
        m.write_virt_u32(0, va(v), 7).unwrap();
        assert_eq!(m.cpus[0].counters().walks, 2, "{format:?}: D needs a walk");
        m.write_virt_u32(0, va(v), 8).unwrap();
        assert_eq!(m.cpus[0].counters().walks, 2, "dirty entry: plain hit");
        let c = m.cpus[0].counters();
        assert_eq!((c.tlb_hits, c.tlb_misses), (3, 1));

        // A clean cached entry whose PTE became read-only meanwhile: the re-walk sees it.
        let v2 = 0xc000_a000;
        let pte2 = t.map(&mut m.mem, v2, 0x30_1000, PageSize::Size4K, KERNEL_RW);
        m.read_virt_u32(0, va(v2)).unwrap();
        let raw = read(&m.mem, format, pte2);
        write(&mut m.mem, format, pte2, raw & !PteFlags::WRITABLE.bits());
        let f = m
            .write_virt_u32(0, va(v2), 1)
            .unwrap_err()
            .page_fault()
            .unwrap();
        assert_eq!(f.error_code.bits(), 0b011, "{format:?}");
        // but the dirty entry of the first page keeps writing after the same change
        let raw = read(&m.mem, format, pte);
        write(&mut m.mem, format, pte, raw & !PteFlags::WRITABLE.bits());
        assert!(
            m.write_virt_u32(0, va(v), 9).is_ok(),
            "{format:?}: stale rights used"
        );
    }
}

#[test]
fn stale_rights_give_a_spurious_fault_once() {
    GEOMETRIES
        .into_iter()
        .for_each(stale_rights_give_a_spurious_fault_once_on);
}

fn stale_rights_give_a_spurious_fault_once_on(g: TlbGeometry) {
    let (mut m, mut t) = machine_on(g, Format::Pae, 1);
    let v = 0xc000_b000;
    let pte = t.map(
        &mut m.mem,
        v,
        0x30_0000,
        PageSize::Size4K,
        PteFlags::PRESENT,
    );
    enable(&mut m, 0, &t);
    m.read_virt_u32(0, va(v)).unwrap();
    // Upgrade to writable without a flush (Linux does this and handles the spurious fault).
    let raw = read(&m.mem, Format::Pae, pte);
    write(
        &mut m.mem,
        Format::Pae,
        pte,
        raw | PteFlags::WRITABLE.bits(),
    );
    let f = m
        .write_virt_u32(0, va(v), 1)
        .unwrap_err()
        .page_fault()
        .unwrap();
    assert_eq!(f.error_code.bits(), 0b011);
    assert_eq!(m.cpus[0].regs().cr2, v);
    assert!(
        m.cpus[0].tlb_lookup(va(v)).is_none(),
        "the fault dropped the entry"
    );
    m.write_virt_u32(0, va(v), 1).unwrap();
    assert_eq!(m.cpus[0].counters().page_faults, 1);
}

#[test]
fn cr0_wp_governs_supervisor_writes_only() {
    GEOMETRIES
        .into_iter()
        .for_each(cr0_wp_governs_supervisor_writes_only_on);
}

fn cr0_wp_governs_supervisor_writes_only_on(g: TlbGeometry) {
    for format in FORMATS {
        let (mut m, mut t) = machine_on(g, format, 1);
        let kv = 0xc000_c000;
        let uv = 0x0040_0000;
        let kpte = t.map(
            &mut m.mem,
            kv,
            0x30_0000,
            PageSize::Size4K,
            PteFlags::PRESENT,
        );
        t.map(
            &mut m.mem,
            uv,
            0x30_1000,
            PageSize::Size4K,
            PteFlags::PRESENT | PteFlags::USER,
        );
        enable(&mut m, 0, &t);
        let f = m
            .write_virt_u32(0, va(kv), 1)
            .unwrap_err()
            .page_fault()
            .unwrap();
        assert_eq!(
            f.error_code.bits(),
            0b011,
            "WP=1: supervisor write to RO faults"
        );

        let cr0 = m.cpus[0].regs().cr0;
        m.write_cr0(0, cr0 - Cr0::WP).unwrap();
        m.write_virt_u32(0, va(kv), 0x55).unwrap();
        assert_eq!(m.mem.read_u32(PhysAddr::new(0x30_0000)).unwrap(), 0x55);
        assert_ne!(
            read(&m.mem, format, kpte) & PteFlags::DIRTY.bits(),
            0,
            "D set even so"
        );
        // supervisor write to a read-only user page is allowed too
        m.write_virt_u32(0, va(uv), 1).unwrap();
        // user writes fault whatever WP says
        let mut b = [0u8; 4];
        let e = m.write_virt_as(0, va(uv), &b, machine::mmu::Privilege::User);
        assert_eq!(
            e.unwrap_err().page_fault().unwrap().error_code.bits(),
            0b111
        );
        m.read_virt_as(0, va(uv), &mut b, machine::mmu::Privilege::User)
            .unwrap();
        assert_eq!(u32::from_le_bytes(b), 1);

        // The rights cached while WP=0 are checked against WP at access time.
        m.write_cr0(0, cr0).unwrap();
        let f = m
            .write_virt_u32(0, va(kv), 1)
            .unwrap_err()
            .page_fault()
            .unwrap();
        assert_eq!(f.error_code.bits(), 0b011);
    }
}

#[test]
fn cr3_switch_changes_address_space() {
    GEOMETRIES
        .into_iter()
        .for_each(cr3_switch_changes_address_space_on);
}

fn cr3_switch_changes_address_space_on(g: TlbGeometry) {
    let (mut m, mut t) = machine_on(g, Format::TwoLevel, 1);
    let uv = 0x0804_8000;
    t.map(
        &mut m.mem,
        uv,
        0x30_0000,
        PageSize::Size4K,
        KERNEL_RW | PteFlags::USER,
    );
    let mut t2 = common::Tables::new(&mut m.mem, Format::TwoLevel, 0x18_0000, 0x90_0000);
    t2.map(
        &mut m.mem,
        uv,
        0x31_0000,
        PageSize::Size4K,
        KERNEL_RW | PteFlags::USER,
    );
    enable(&mut m, 0, &t);
    assert_eq!(
        m.translate(0, va(uv), Access::USER_READ).unwrap(),
        PhysAddr::new(0x30_0000)
    );
    m.write_cr3(0, t2.root).unwrap();
    assert_eq!(
        m.translate(0, va(uv), Access::USER_READ).unwrap(),
        PhysAddr::new(0x31_0000)
    );
    assert!(m.cpus[0].tlb().len() == 1);
}

/// Five kernel pages 256 KiB apart: the same set of the Core 2 TLB's 64-set 4 KiB array.
fn same_set_pages() -> [u64; 5] {
    std::array::from_fn(|i| 0xc000_0000 + i as u64 * 64 * 4096)
}

#[test]
fn capacity_eviction_hides_a_missing_flush_on_hardware_only() {
    for g in GEOMETRIES {
        let (mut m, mut t) = machine_on(g, Format::Pae, 1);
        let ptes: Vec<u64> = same_set_pages()
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let pa = 0x30_0000 + i as u64 * 0x1000;
                t.map(&mut m.mem, v, pa, PageSize::Size4K, KERNEL_RW)
            })
            .collect();
        enable(&mut m, 0, &t);
        for v in same_set_pages() {
            m.translate(0, va(v), Access::KERNEL_READ).unwrap();
        }
        // Repoint every PTE without a flush.
        for (i, &pte) in ptes.iter().enumerate() {
            write(
                &mut m.mem,
                Format::Pae,
                pte,
                (0x40_0000 + i as u64 * 0x1000) | 0x3,
            );
        }
        let fresh = same_set_pages()
            .iter()
            .filter(|&&v| {
                let pa = m.translate(0, va(v), Access::KERNEL_READ).unwrap();
                pa.as_u64() >= 0x40_0000
            })
            .count();
        let evictions = m.cpus[0].counters().tlb_evictions;
        match g {
            TlbGeometry::Core2 => {
                assert!(fresh >= 1, "a 4-way set cannot hold five pages");
                assert!(evictions >= 1);
            }
            TlbGeometry::Unbounded => {
                assert_eq!((fresh, evictions), (0, 0), "every stale entry is kept");
            }
        }
    }
}

#[test]
fn cr3_write_drops_every_non_global_entry_and_no_global_one() {
    for g in GEOMETRIES {
        let (mut m, mut t) = machine_on(g, Format::Pae, 1);
        let user: Vec<u64> = (0..100).map(|i| 0x0804_8000 + i * 0x1000).collect();
        let kernel: Vec<u64> = (0..20).map(|i| 0xc000_0000 + i * 0x1000).collect();
        for (i, &v) in user.iter().enumerate() {
            let flags = KERNEL_RW | PteFlags::USER;
            t.map(
                &mut m.mem,
                v,
                0x30_0000 + i as u64 * 0x1000,
                PageSize::Size4K,
                flags,
            );
        }
        for (i, &v) in kernel.iter().enumerate() {
            let flags = KERNEL_RW | PteFlags::GLOBAL;
            t.map(
                &mut m.mem,
                v,
                0x40_0000 + i as u64 * 0x1000,
                PageSize::Size4K,
                flags,
            );
        }
        enable(&mut m, 0, &t);
        for &v in user.iter().chain(&kernel) {
            m.translate(0, va(v), Access::KERNEL_READ).unwrap();
        }
        let tlb = m.cpus[0].tlb();
        assert_eq!(
            (tlb.len(), tlb.global_len()),
            (120, 20),
            "{g:?}: all cached"
        );
        m.write_cr3(0, t.root).unwrap();
        let tlb = m.cpus[0].tlb();
        assert_eq!((tlb.len(), tlb.global_len()), (20, 20), "{g:?}");
        let walks = m.cpus[0].counters().walks;
        for &v in &kernel {
            m.translate(0, va(v), Access::KERNEL_READ).unwrap();
        }
        assert_eq!(
            m.cpus[0].counters().walks,
            walks,
            "{g:?}: globals still hit"
        );
        m.translate(0, va(user[0]), Access::KERNEL_READ).unwrap();
        assert_eq!(
            m.cpus[0].counters().walks,
            walks + 1,
            "{g:?}: user entries gone"
        );
    }
}

#[test]
fn invlpg_then_refill_counts_and_updates_like_a_walk() {
    GEOMETRIES
        .into_iter()
        .for_each(invlpg_then_refill_counts_and_updates_like_a_walk_on);
}

/// The refill after INVLPG takes the quick miss path when it can (tables present and
/// accessed, rights allow) and the full one otherwise: the counters and the A/D bits in
/// RAM must not tell the two apart.
fn invlpg_then_refill_counts_and_updates_like_a_walk_on(g: TlbGeometry) {
    for format in FORMATS {
        let (mut m, mut t) = machine_on(g, format, 1);
        let v = 0xc000_9000;
        let pte = t.map(&mut m.mem, v, 0x30_0000, PageSize::Size4K, KERNEL_RW);
        enable(&mut m, 0, &t);
        let a = PteFlags::ACCESSED.bits();
        let d = PteFlags::DIRTY.bits();
        m.read_virt_u32(0, va(v)).unwrap();
        let before = m.cpus[0].counters();
        // A set, D clear: a read refills without writing anything.
        m.invlpg(0, va(v)).unwrap();
        m.read_virt_u32(0, va(v)).unwrap();
        m.read_virt_u32(0, va(v)).unwrap();
        let c = m.cpus[0].counters();
        assert_eq!(
            (c.walks, c.tlb_misses, c.tlb_hits),
            (before.walks + 1, before.tlb_misses + 1, before.tlb_hits + 1),
            "{g:?} {format:?}"
        );
        assert_eq!(read(&m.mem, format, pte) & (a | d), a);
        // A write after INVLPG must still set D.
        m.invlpg(0, va(v)).unwrap();
        m.write_virt_u32(0, va(v), 7).unwrap();
        assert_eq!(read(&m.mem, format, pte) & (a | d), a | d, "{format:?}");
        assert_eq!(m.cpus[0].counters().walks, c.walks + 1);
        // A user access to the supervisor page faults (protection, user, read).
        m.invlpg(0, va(v)).unwrap();
        let f = m
            .translate(0, va(v), Access::USER_READ)
            .unwrap_err()
            .page_fault()
            .unwrap();
        assert_eq!(f.error_code.bits(), 0b101, "{format:?}");
        assert_eq!(
            m.mem.read_u32(PhysAddr::new(0x30_0000)).unwrap(),
            7,
            "the write went to the frame"
        );
    }
}

/// A full 4 KiB set on the usual miss path (tables in RAM, A bits set): each access
/// counts one miss and one walk, the hardware geometry loses the entries it evicts and
/// counts them, the debug one spills and counts none.
#[test]
fn misses_into_a_full_set_are_counted_on_both_geometries() {
    for g in GEOMETRIES {
        for format in FORMATS {
            let (mut m, mut t) = machine_on(g, format, 1);
            let stride = g.sets()[0] as u64 * 4096;
            let pages: Vec<u64> = (0..6).map(|i| 0xc000_0000 + i * stride).collect();
            for (i, &v) in pages.iter().enumerate() {
                t.map(
                    &mut m.mem,
                    v,
                    0x30_0000 + i as u64 * 0x1000,
                    PageSize::Size4K,
                    KERNEL_RW | PteFlags::ACCESSED,
                );
            }
            enable(&mut m, 0, &t);
            // A first pass sets the directory entries' A bits (a walk that must write
            // takes the full path); then a full flush, and the same pass again.
            for &v in &pages {
                m.translate(0, va(v), Access::KERNEL_READ).unwrap();
            }
            let cr4 = m.cpus[0].regs().cr4;
            m.write_cr4(0, cr4 - Cr4::PGE).unwrap();
            m.write_cr4(0, cr4).unwrap();
            m.cpus[0].reset_counters();
            for (i, &v) in pages.iter().enumerate() {
                let pa = m.translate(0, va(v), Access::KERNEL_READ).unwrap();
                assert_eq!(pa.as_u64(), 0x30_0000 + i as u64 * 0x1000);
            }
            let c = m.cpus[0].counters();
            let lost = match g {
                TlbGeometry::Core2 => 2,
                TlbGeometry::Unbounded => 0,
            };
            assert_eq!(
                (c.walks, c.tlb_misses, c.tlb_hits, c.tlb_evictions),
                (6, 6, 0, lost),
                "{g:?} {format:?}"
            );
            assert_eq!(m.cpus[0].tlb().len(), 6 - lost as usize, "{g:?} {format:?}");
        }
    }
}
