//! The rule "the kernel reaches high memory only through a mapping", held by construction:
//! once booted, the kernel's physical accessor (`PhysMem`'s public API, the direct map)
//! refuses every byte above `max_low_pfn`; the same frame is reachable through a kmap_local
//! slot and a CPU. Both paging formats, with and without high memory.

use kernel::config::KernelConfig;
use kernel::gfp::{GFP_HIGHUSER, GFP_KERNEL};
use kernel::{boot, BootOptions};
use machine::{BusErrorKind, PhysAddr};

#[test]
fn above_max_low_pfn_only_a_mapping_reaches_ram() {
    for (preset, ram) in [
        ("debian-686-pae", 2u64 << 30),
        ("debian-686", 2 << 30),
        ("debian-686-pae", 512 << 20),
    ] {
        let cfg = KernelConfig::preset(preset).expect("preset");
        let mut opts = BootOptions::new(ram, 1, cfg);
        opts.runtime_profile = false;
        let mut k = boot(&opts).expect("boot");
        let end = k.layout.max_low_pfn.phys();
        assert_eq!(k.machine.mem.window_end(), end, "{preset} {ram}");
        // The last lowmem page is reachable; the first byte above it is not.
        let last = PhysAddr::new(end.as_u64() - 4);
        k.machine.mem.write_u32(last, 0x1234).expect("lowmem");
        let above = k.machine.mem.read_u32(end);
        if k.layout.max_pfn.as_u64() > k.layout.max_low_pfn.as_u64() {
            assert_eq!(above.unwrap_err().kind, BusErrorKind::NotDirectMapped);
            let page = k.alloc_pages(GFP_HIGHUSER, 0, 0).expect("highmem page");
            assert!(page.pfn.as_u64() >= k.layout.max_low_pfn.as_u64());
            let pa = page.pfn.phys();
            assert_eq!(
                k.machine.mem.write_u32(pa, 1).unwrap_err().kind,
                BusErrorKind::NotDirectMapped
            );
            assert!(k.machine.mem.frame(page.pfn).is_err());
            // Through a kmap_local slot and CPU 0 it works, and lands in that frame.
            let va = k.kmap_local_page(0, page.pfn).expect("kmap_local");
            k.machine
                .write_virt_u32(0, va, 0xfeed)
                .expect("write via slot");
            k.kunmap_local(0, va).expect("kunmap_local");
            assert_eq!(k.machine.mem.monitor().read_u32(pa).unwrap(), 0xfeed);
        } else {
            assert!(above.is_err(), "no RAM above a machine without high memory");
        }
        // Lowmem allocations are reachable directly, as through the direct map.
        let low = k.alloc_pages(GFP_KERNEL, 0, 0).expect("lowmem page");
        k.machine
            .mem
            .write_u32(low.pfn.phys(), 5)
            .expect("direct map");
    }
}
