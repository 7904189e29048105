//! mmap / munmap of private anonymous memory and brk: areas placed top-down below
//! mmap_base, pages only when touched (through the MMU's faults), a munmap in the middle
//! splitting the VMA and freeing what it covered (pages, and the PTE pages nothing else
//! needs), brk growing and shrinking the heap; everything back when the process exits.

use kernel::config::KernelConfig;
use kernel::mm::{MmError, ProcId};
use kernel::vmstat::NodeStatItem as N;
use kernel::{boot, BootOptions, Kernel};

const CPU: usize = 0;

fn booted(pae: bool) -> Kernel {
    let preset = if pae { "debian-686-pae" } else { "debian-686" };
    let mut opts = BootOptions::new(2 << 30, 1, KernelConfig::preset(preset).expect("preset"));
    opts.runtime_profile = false;
    boot(&opts).expect("boot")
}

fn meminfo_kb(k: &Kernel, label: &str) -> u64 {
    let mi = kernel::procfs::live::read(k, "meminfo").unwrap_or_default();
    mi.lines()
        .find(|l| l.starts_with(label))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// The process's anon pages: its mm's counter with the task's pending increments.
fn rss_anon(k: &Kernel, p: ProcId) -> i64 {
    k.rss_after_sync(p).anon
}

fn vma_count(k: &Kernel, p: ProcId) -> usize {
    k.mm.proc(p).mm.as_ref().map_or(0, |m| m.vmas.len())
}

fn vma_start(k: &Kernel, p: ProcId, pick: impl Fn(&kernel::mm::Vma) -> bool) -> (u64, u64) {
    let v =
        k.mm.proc(p)
            .mm
            .as_ref()
            .unwrap()
            .vmas
            .iter()
            .find(|v| pick(v))
            .unwrap();
    (v.start, v.end)
}

fn touch(k: &mut Kernel, p: ProcId, start: u64, pages: u64) {
    for i in 0..pages {
        k.user_access(CPU, p, start + i * 4096, true)
            .expect("touch");
    }
}

#[test]
fn mmap_munmap_and_brk_give_everything_back() {
    for pae in [true, false] {
        let mut k = booted(pae);
        k.node.drain_all_pages(None);
        let (free0, slab0) = (meminfo_kb(&k, "MemFree:"), meminfo_kb(&k, "Slab:"));
        let p = k.exec_process(CPU, "prog", 1).expect("exec");
        let vmas0 = vma_count(&k, p);
        // 8 MiB, top-down right below [vvar] (the static binary's mmap_base).
        let a = k.mmap_anon(CPU, p, 8 << 20, true).expect("mmap");
        let vvar = vma_start(&k, p, |v| v.name == "[vvar]").0;
        assert_eq!(
            a + (8 << 20),
            vvar,
            "pae={pae}: placed right below mmap_base"
        );
        let b = k.mmap_anon(CPU, p, 4096, false).expect("mmap");
        assert_eq!(b + 4096, a, "the next one below it");
        let rss0 = rss_anon(&k, p);
        touch(&mut k, p, a, 2048);
        assert_eq!(rss_anon(&k, p), rss0 + 2048, "pages only when touched");
        // A read-only mapping refuses a write: SIGSEGV, not a page.
        assert!(matches!(
            k.user_access(CPU, p, b, true),
            Err(MmError::Segv(_))
        ));
        // munmap of the middle 4 MiB: the VMA splits in two; 1024 pages and the hole's
        // PTE pages go.
        let ptes_before = k.node.vm_stat[N::NrPagetable];
        k.munmap(CPU, p, a + (2 << 20), 4 << 20).expect("munmap");
        assert_eq!(
            vma_count(&k, p),
            vmas0 + 3,
            "pae={pae}: split in two, plus the small one"
        );
        assert_eq!(rss_anon(&k, p), rss0 + 1024);
        // free_pgtables: exactly the PTE pages whose whole PMD range lies in the hole (none
        // when the hole straddles 4 MiB boundaries without covering one, as without PAE).
        let shift = if pae { 21 } else { 22 };
        let (lo, hi) = (a + (2 << 20), a + (6 << 20));
        let whole = (hi >> shift).saturating_sub(lo.div_ceil(1 << shift)) as i64;
        assert_eq!(
            ptes_before - k.node.vm_stat[N::NrPagetable],
            whole,
            "pae={pae}"
        );
        assert!(matches!(
            k.user_access(CPU, p, a + (3 << 20), false),
            Err(MmError::Segv(_))
        ));
        // brk: grow by 1 MiB, touch it, shrink back.
        let heap_end = vma_start(&k, p, |v| v.heap).1;
        assert_eq!(
            k.brk(CPU, p, heap_end + (1 << 20)).expect("brk"),
            heap_end + (1 << 20)
        );
        touch(&mut k, p, heap_end, 256);
        assert_eq!(k.brk(CPU, p, heap_end).expect("brk"), heap_end);
        assert!(matches!(
            k.user_access(CPU, p, heap_end + 4096, false),
            Err(MmError::Segv(_))
        ));
        // A break that would run into another mapping is refused: the break stays.
        assert_eq!(k.brk(CPU, p, b + 4096).expect("brk"), heap_end);
        // An unaligned munmap is EINVAL.
        assert!(matches!(k.munmap(CPU, p, a + 1, 4096), Err(MmError::Inval)));
        k.exit_process(CPU, p).expect("exit");
        k.drop_binary_cache(CPU);
        k.node.drain_all_pages(None);
        assert_eq!(
            k.node.vm_stat[N::NrPagetable],
            0,
            "pae={pae}: page tables left"
        );
        assert_eq!(
            k.node.vm_stat[N::NrAnonMapped],
            0,
            "pae={pae}: anon pages left"
        );
        // What SLUB keeps of the slabs it grew is all that stays.
        let slab = meminfo_kb(&k, "Slab:") - slab0;
        assert_eq!(
            meminfo_kb(&k, "MemFree:") + slab,
            free0,
            "pae={pae}: MemFree after exit"
        );
        kernel::debug_vm::check_node(&k.node).unwrap_or_else(|e| panic!("{e:?}"));
    }
}
