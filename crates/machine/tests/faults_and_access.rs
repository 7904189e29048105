//! Page-fault error codes, bus errors, linear-address limits and the virtual accessors.

mod common;

use common::{enable, machine, machine_on, read, write, GEOMETRIES, KERNEL_RW};
use machine::cpu::{CpuError, Cr4, Efer};
use machine::mmu::{Access, AccessError, PfError, Privilege};
use machine::paging::{Format, PageSize, PteFlags};
use machine::{PhysAddr, VirtAddr};

fn va(x: u64) -> VirtAddr {
    VirtAddr::new(x)
}

fn code(m: &mut machine::machine::Machine, v: u64, access: Access) -> u32 {
    let e = m.translate(0, va(v), access).expect_err("should fault");
    let f = e.page_fault().expect("a page fault");
    assert_eq!(f.addr, va(v));
    assert_eq!(m.cpus[0].regs().cr2, v, "CR2 holds the faulting address");
    f.error_code.bits()
}

#[test]
fn pae_error_codes() {
    let (mut m, mut t) = machine(Format::Pae, 1);
    let kdata = 0xc000_0000; // kernel RW NX
    let kro = 0xc000_1000; // kernel RO
    let udata = 0x0800_0000; // user RW NX
    let uro = 0x0800_1000; // user RO, executable
    let absent = 0x0800_2000;
    t.map(
        &mut m.mem,
        kdata,
        0x30_0000,
        PageSize::Size4K,
        KERNEL_RW | PteFlags::NX,
    );
    t.map(
        &mut m.mem,
        kro,
        0x30_1000,
        PageSize::Size4K,
        PteFlags::PRESENT,
    );
    let u = PteFlags::PRESENT | PteFlags::USER;
    t.map(
        &mut m.mem,
        udata,
        0x30_2000,
        PageSize::Size4K,
        u | PteFlags::WRITABLE | PteFlags::NX,
    );
    t.map(&mut m.mem, uro, 0x30_3000, PageSize::Size4K, u);
    enable(&mut m, 0, &t);

    assert_eq!(
        code(&mut m, kdata, Access::KERNEL_EXEC),
        0b1_0001,
        "NX: P|I/D"
    );
    assert_eq!(
        code(&mut m, udata, Access::USER_EXEC),
        0b1_0101,
        "NX user: P|U|I/D"
    );
    assert_eq!(code(&mut m, kdata, Access::USER_READ), 0b0_0101, "U/S: P|U");
    assert_eq!(code(&mut m, kro, Access::USER_WRITE), 0b0_0111, "P|W|U");
    assert_eq!(
        code(&mut m, uro, Access::USER_WRITE),
        0b0_0111,
        "RO user page"
    );
    assert_eq!(code(&mut m, kro, Access::KERNEL_WRITE), 0b0_0011, "WP=1");
    assert_eq!(
        code(&mut m, absent, Access::USER_WRITE),
        0b0_0110,
        "not present: W|U"
    );
    assert_eq!(
        code(&mut m, absent, Access::USER_EXEC),
        0b1_0100,
        "not present fetch"
    );
    assert!(m.translate(0, va(uro), Access::USER_EXEC).is_ok());
    assert!(
        m.translate(0, va(udata), Access::KERNEL_READ).is_ok(),
        "no SMAP"
    );
    assert!(
        m.translate(0, va(uro), Access::KERNEL_EXEC).is_ok(),
        "no SMEP"
    );

    // NX set while EFER.NXE is clear is a reserved bit.
    m.write_efer(0, Efer::empty()).unwrap();
    m.invlpg(0, va(kdata)).unwrap();
    assert_eq!(code(&mut m, kdata, Access::KERNEL_READ), 0b0_1001, "P|RSVD");
    // and without NXE fetches report no I/D bit
    assert_eq!(code(&mut m, absent, Access::USER_EXEC), 0b0_0100);
    // NX in a directory entry covers everything below it
    m.write_efer(0, Efer::NXE).unwrap();
    let pde = t.entry_addr(&mut m.mem, uro, &Format::Pae.levels()[1]);
    let raw = read(&m.mem, Format::Pae, pde);
    write(&mut m.mem, Format::Pae, pde, raw | PteFlags::NX.bits());
    m.invlpg(0, va(uro)).unwrap();
    assert_eq!(code(&mut m, uro, Access::USER_EXEC), 0b1_0101);
    assert_eq!(m.cpus[0].counters().page_faults, 11);
}

#[test]
fn two_level_error_codes_and_rights_combination() {
    let (mut m, mut t) = machine(Format::TwoLevel, 1);
    let v = 0x0804_8000;
    t.map(
        &mut m.mem,
        v,
        0x30_0000,
        PageSize::Size4K,
        KERNEL_RW | PteFlags::USER,
    );
    enable(&mut m, 0, &t);
    assert!(m.translate(0, va(v), Access::USER_WRITE).is_ok());
    // no NX in 2-level paging: fetch works, and faulting fetches carry no I/D bit
    assert!(m.translate(0, va(v), Access::USER_EXEC).is_ok());
    assert_eq!(code(&mut m, v + 0x1000, Access::USER_EXEC), 0b0_0100);
    // clearing U/S or R/W in the PDE restricts the PTE's page
    let pde = t.entry_addr(&mut m.mem, v, Format::TwoLevel.top_level());
    let raw = read(&m.mem, Format::TwoLevel, pde);
    write(
        &mut m.mem,
        Format::TwoLevel,
        pde,
        raw & !PteFlags::WRITABLE.bits(),
    );
    m.invlpg(0, va(v)).unwrap();
    assert_eq!(code(&mut m, v, Access::USER_WRITE), 0b111);
    write(
        &mut m.mem,
        Format::TwoLevel,
        pde,
        raw & !PteFlags::USER.bits(),
    );
    m.invlpg(0, va(v)).unwrap();
    assert_eq!(code(&mut m, v, Access::USER_READ), 0b101);
    assert!(m.translate(0, va(v), Access::KERNEL_WRITE).is_ok());
}

#[test]
fn pse_is_ignored_without_cr4_pse() {
    let (mut m, mut t) = machine(Format::TwoLevel, 1);
    // A PDE with PS whose address bits also name a page table at 0x40_0000.
    t.map(
        &mut m.mem,
        0xc000_0000,
        0x40_0000,
        PageSize::Size4M,
        KERNEL_RW,
    );
    m.mem
        .write_u32(PhysAddr::new(0x40_0000 + 4), 0x70_0000 | 0x3)
        .unwrap();
    enable(&mut m, 0, &t);
    assert_eq!(
        m.translate(0, va(0xc000_1000), Access::KERNEL_READ)
            .unwrap(),
        PhysAddr::new(0x40_1000)
    );
    let cr4 = m.cpus[0].regs().cr4;
    m.write_cr4(0, cr4 - Cr4::PSE).unwrap();
    m.invlpg(0, va(0xc000_1000)).unwrap();
    assert_eq!(
        m.translate(0, va(0xc000_1000), Access::KERNEL_READ)
            .unwrap(),
        PhysAddr::new(0x70_0000),
        "PS ignored: the PDE points to a page table"
    );
}

#[test]
fn pse36_reaches_above_4g_and_checks_reserved_bits() {
    let (mut m, mut t) = machine(Format::TwoLevel, 1);
    let pde = t.map(
        &mut m.mem,
        0xc040_0000,
        0x1_0040_0000,
        PageSize::Size4M,
        KERNEL_RW,
    );
    enable(&mut m, 0, &t);
    m.write_virt_u32(0, va(0xc040_0010), 0xfeed).unwrap();
    assert_eq!(
        m.mem.read_u32(PhysAddr::new(0x1_0040_0010)).unwrap(),
        0xfeed
    );
    // bit 21 and (with 36 physical bits) bits 20:17 are reserved in a 4 MiB PDE
    for bit in [21, 17] {
        let raw = read(&m.mem, Format::TwoLevel, pde);
        write(&mut m.mem, Format::TwoLevel, pde, raw | (1 << bit));
        m.invlpg(0, va(0xc040_0000)).unwrap();
        assert_eq!(
            code(&mut m, 0xc040_0000, Access::KERNEL_READ),
            0b1001,
            "bit {bit}"
        );
        write(&mut m.mem, Format::TwoLevel, pde, raw);
    }
}

#[test]
fn walks_into_holes_are_bus_errors() {
    let (mut m, mut t) = machine(Format::Pae, 1);
    // a leaf pointing at non-RAM: the walk succeeds, the access does not
    t.map(
        &mut m.mem,
        0xc000_0000,
        0xfee0_0000,
        PageSize::Size4K,
        KERNEL_RW,
    );
    // a directory entry pointing at non-RAM: the walk itself fails
    let pde = t.entry_addr(&mut m.mem, 0xc020_0000, &Format::Pae.levels()[1]);
    write(&mut m.mem, Format::Pae, pde, 0x2_0000_0000 | 0x7);
    enable(&mut m, 0, &t);
    assert_eq!(
        m.translate(0, va(0xc000_0000), Access::KERNEL_READ)
            .unwrap(),
        PhysAddr::new(0xfee0_0000)
    );
    assert!(matches!(
        m.read_virt_u32(0, va(0xc000_0000)),
        Err(AccessError::Bus(_))
    ));
    assert!(matches!(
        m.read_virt_u32(0, va(0xc020_0000)),
        Err(AccessError::Bus(_))
    ));
    assert!(m.cpus[0].tlb_lookup(va(0xc020_0000)).is_none());
}

/// Tables in a hole *inside* the RAM span (the machine's 16 MiB..4 GiB gap), which the
/// host mapping covers and reads as zeroes: the walk must still give a bus error (the
/// quick miss reads such an entry as not present and leaves it to the full walk), for a
/// directory entry pointing into the hole and, with PAE, a PDPTE whose page directory is
/// there; nothing is cached and nothing counts as a page fault.
#[test]
fn walks_into_holes_inside_the_span_are_bus_errors() {
    const HOLE: u64 = 0x2000_0000;
    for g in GEOMETRIES {
        for format in [Format::Pae, Format::TwoLevel] {
            let (mut m, mut t) = machine_on(g, format, 1);
            let pde = t.pde_addr(&mut m.mem, 0xc020_0000);
            write(&mut m.mem, format, pde, HOLE | 0x67);
            if format == Format::Pae {
                // The last PDPTE (0xc0000000-0xffffffff) keeps its directory; the third
                // (0x80000000-0xbfffffff) gets one in the hole.
                m.mem
                    .write_u64(PhysAddr::new(t.root + 16), (HOLE + 0x1000) | 1)
                    .expect("ram");
            }
            enable(&mut m, 0, &t);
            let mut lins = vec![0xc020_0000, 0xc020_1000];
            if format == Format::Pae {
                lins.push(0x8000_0000);
            }
            for lin in lins {
                for access in [Access::KERNEL_READ, Access::KERNEL_WRITE, Access::USER_READ] {
                    let r = m.translate(0, va(lin), access);
                    assert!(
                        matches!(r, Err(AccessError::Bus(_))),
                        "{g:?} {format:?} {lin:#x} {access:?}: {r:?}"
                    );
                }
                assert!(m.cpus[0].tlb_lookup(va(lin)).is_none());
            }
            assert_eq!(m.cpus[0].counters().page_faults, 0);
        }
    }
}

#[test]
fn linear_address_limits_and_bad_cpus() {
    let (mut m, t) = machine(Format::Pae, 1);
    enable(&mut m, 0, &t);
    assert!(matches!(
        m.translate(0, va(1 << 32), Access::KERNEL_READ),
        Err(AccessError::NonCanonical(_))
    ));
    assert!(matches!(
        m.read_virt_u32(3, va(0)),
        Err(AccessError::NoSuchCpu(3))
    ));
    assert!(matches!(m.write_cr3(3, 0), Err(CpuError::NoSuchCpu(3))));
    // a u32 at the very top of the address space runs off the end
    let r = m.read_virt_u32(0, va(0xffff_fffe));
    assert!(r.is_err());
}

#[test]
fn accessors_cross_pages() {
    let (mut m, mut t) = machine(Format::Pae, 1);
    let v = 0xc000_0000;
    // three virtually contiguous pages on scattered frames; the fourth is unmapped
    for (i, frame) in [0x50_0000u64, 0x30_0000, 0x70_0000].iter().enumerate() {
        t.map(
            &mut m.mem,
            v + 0x1000 * i as u64,
            *frame,
            PageSize::Size4K,
            KERNEL_RW,
        );
    }
    enable(&mut m, 0, &t);

    m.write_virt_u64(0, va(v + 0xffc), 0x1122_3344_5566_7788)
        .unwrap();
    assert_eq!(
        m.mem.read_u32(PhysAddr::new(0x50_0ffc)).unwrap(),
        0x5566_7788
    );
    assert_eq!(
        m.mem.read_u32(PhysAddr::new(0x30_0000)).unwrap(),
        0x1122_3344
    );
    assert_eq!(
        m.read_virt_u64(0, va(v + 0xffc)).unwrap(),
        0x1122_3344_5566_7788
    );

    let data: Vec<u8> = (0..0x2000u32).map(|i| (i % 251) as u8).collect();
    m.write_virt(0, va(v + 0x800), &data).unwrap();
    let mut back = vec![0u8; data.len()];
    m.read_virt(0, va(v + 0x800), &mut back).unwrap();
    assert_eq!(back, data);

    // A scalar store straddling into the unmapped page faults before writing anything.
    let before = m.mem.read_u32(PhysAddr::new(0x70_0ffc)).unwrap();
    let e = m.write_virt_u64(0, va(v + 0x2ffc), u64::MAX).unwrap_err();
    assert_eq!(e.page_fault().unwrap().addr, va(v + 0x3000));
    assert_eq!(e.page_fault().unwrap().error_code, PfError::WRITE);
    assert_eq!(m.mem.read_u32(PhysAddr::new(0x70_0ffc)).unwrap(), before);
    // A bulk copy writes up to the fault.
    assert!(m.write_virt(0, va(v + 0x2ffc), &[0xee; 8]).is_err());
    assert_eq!(
        m.mem.read_u32(PhysAddr::new(0x70_0ffc)).unwrap(),
        0xeeee_eeee
    );

    m.fill_virt(0, va(v + 0x10), 0x1ff0, 0xab).unwrap();
    assert_eq!(m.read_virt_u32(0, va(v + 0x1ffc)).unwrap(), 0xabab_abab);
    let mut user = [0u8; 4];
    let e = m
        .read_virt_as(0, va(v), &mut user, Privilege::User)
        .unwrap_err();
    assert_eq!(
        e.page_fault().unwrap().error_code,
        PfError::PROT | PfError::USER
    );
}

#[test]
fn four_level_for_comparison() {
    let (mut m, mut t) = machine(Format::FourLevel, 1);
    let k = 0xffff_8880_0000_0000u64;
    t.map(
        &mut m.mem,
        k,
        0x40_0000,
        PageSize::Size2M,
        KERNEL_RW | PteFlags::GLOBAL,
    );
    t.map(&mut m.mem, k + (1 << 30), 0, PageSize::Size1G, KERNEL_RW);
    t.map(
        &mut m.mem,
        0x40_1000,
        0x30_0000,
        PageSize::Size4K,
        KERNEL_RW | PteFlags::USER,
    );
    enable(&mut m, 0, &t);
    assert_eq!(m.cpus[0].paging_format(), Some(Format::FourLevel));
    assert_eq!(
        m.translate(0, va(k + 0x1_2345), Access::KERNEL_READ)
            .unwrap(),
        PhysAddr::new(0x41_2345)
    );
    assert_eq!(
        m.translate(0, va(k + (1 << 30) + 0xab_cdef), Access::KERNEL_WRITE)
            .unwrap(),
        PhysAddr::new(0xab_cdef)
    );
    assert_eq!(
        m.translate(0, va(0x40_1234), Access::USER_WRITE).unwrap(),
        PhysAddr::new(0x30_0234)
    );
    assert!(matches!(
        m.translate(0, va(0x0000_8000_0000_0000), Access::KERNEL_READ),
        Err(AccessError::NonCanonical(_))
    ));
    // PS in a PML4 entry is reserved
    let pml4e = t.entry_addr(&mut m.mem, 0x40_1000, Format::FourLevel.top_level());
    let raw = read(&m.mem, Format::FourLevel, pml4e);
    write(
        &mut m.mem,
        Format::FourLevel,
        pml4e,
        raw | PteFlags::PSE.bits(),
    );
    m.invlpg(0, va(0x40_1000)).unwrap();
    assert_eq!(code(&mut m, 0x40_1000, Access::USER_READ), 0b1101);
}
