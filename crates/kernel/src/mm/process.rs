//! Processes: exec of a small static i386 binary, `fork` (`copy_process`, `dup_mmap`,
//! `copy_page_range`), `exit` (`exit_mmap`: `unmap_vmas`, `free_pgtables`, `pgd_free`).

use super::pgtable_user::{access_bug, bus_bug, PteMap, WalkLen};
use super::{Mm, MmError, ProcId, Process, Rss, Vma, VmaKind, PAGE_SIZE};
use crate::gfp::{Gfp, GFP_KERNEL};
use crate::mmzone::PgData;
use crate::pgtable_types::{_PAGE_ACCESSED, _PAGE_PRESENT, _PAGE_RW};
use crate::slab::CacheId;
use crate::vmstat::NodeStatItem;
use crate::Kernel;
use machine::{Pfn, VirtAddr};
use std::collections::HashMap;

/// The objects `copy_process` takes from the named caches for a new task.
const TASK_CACHES: &[&str] = &[
    "task_struct",
    "signal_cache",
    "sighand_cache",
    "files_cache",
    "fs_cache",
    "cred_jar",
    "pid",
];

/// `IA32_PAGE_OFFSET`: TASK_SIZE of a 32-bit task on the 64-bit kernel (the last page below
/// 4 GiB stays unmapped).
pub const IA32_PAGE_OFFSET: u64 = 0xffff_e000;

/// TASK_SIZE of the split the reference process ran on (VMSPLIT_3G).
const REFERENCE_TASK_SIZE: u64 = 0xc000_0000;

/// The end of the reference process's `[stack]` VMA. STACK_TOP is TASK_SIZE and ASLR moved
/// the stack a random distance below it; on another split the model keeps that distance.
const REFERENCE_STACK_END: u64 = 0xbfaf_d000;

/// The reference's `[vvar]`: the first mapping under mmap_base, which `mmap_base()` puts
/// below TASK_SIZE by the stack gap (at least 128 MiB) and a random offset; on another split
/// the model keeps its distance below TASK_SIZE, as it does for the stack.
const REFERENCE_VVAR: u64 = 0xb7f3_d000;

/// An address of the reference's layout above TASK_UNMAPPED_BASE moved to the split whose
/// TASK_SIZE is `task_size` (the ELF binary, its data and heap stay where the binary says).
fn below_task_size(reference_va: u64, task_size: u64) -> u64 {
    task_size - (REFERENCE_TASK_SIZE - reference_va)
}

/// The end of the stack VMA of a freshly exec'ed process on a split with `task_size`.
pub fn stack_end(task_size: u64) -> u64 {
    below_task_size(REFERENCE_STACK_END, task_size)
}

/// Where the mmap area's first mapping (`[vvar]`) starts on a split with `task_size`; new
/// mappings go below it (top-down layout).
pub fn mmap_area_top(task_size: u64) -> u64 {
    below_task_size(REFERENCE_VVAR, task_size)
}

/// Where `[vdso]` starts on a split with `task_size` (right above `[vvar]`'s four pages).
pub fn vdso_start(task_size: u64) -> u64 {
    below_task_size(0xb7f4_1000, task_size)
}

/// `TASK_UNMAPPED_BASE` = PAGE_ALIGN(TASK_SIZE / 3): the legacy (bottom-up) mmap start. The
/// top-down area never reaches below it in the model's small processes, so a mapping at or
/// above it belongs to the mmap area and one below it to the binary and its heap.
pub fn task_unmapped_base(task_size: u64) -> u64 {
    (task_size / 3).div_ceil(PAGE_SIZE) * PAGE_SIZE
}

/// The address space of the binary at exec (the reference's /proc/PID/maps of `shmwork`),
/// with the stack and the vDSO placed below `task_size` as on the reference's split.
pub fn binary_layout(name: &str, task_size: u64) -> Vec<Vma> {
    let file = format!("/bin/{name}");
    let v = |start: u64, end: u64, prot: &str, kind: VmaKind, nm: &str| Vma {
        read: prot.as_bytes()[0] == b'r',
        write: prot.as_bytes()[1] == b'w',
        exec: prot.as_bytes()[2] == b'x',
        stack: nm == "[stack]",
        heap: nm == "[heap]",
        // Private writable: VM_ACCOUNT (the loader's data and bss, brk, the stack).
        account: prot.as_bytes()[1] == b'w',
        ..Vma::new(start, end, kind, nm.to_string())
    };
    let mut vmas = vec![
        v(
            0x0804_8000,
            0x0804_9000,
            "r--",
            VmaKind::File { pgoff: 0 },
            &file,
        ),
        v(
            0x0804_9000,
            0x080d_7000,
            "r-x",
            VmaKind::File { pgoff: 1 },
            &file,
        ),
        v(
            0x080d_7000,
            0x0810_d000,
            "r--",
            VmaKind::File { pgoff: 0x8f },
            &file,
        ),
        // PT_GNU_RELRO: mapped writable with the data; made read-only by the program's
        // start-up (`protect_relro`).
        v(
            0x0810_d000,
            0x0811_0000,
            "rw-",
            VmaKind::File { pgoff: 0xc4 },
            &file,
        ),
        v(
            0x0811_0000,
            0x0811_2000,
            "rw-",
            VmaKind::File { pgoff: 0xc7 },
            &file,
        ),
        v(0x0811_2000, 0x0811_5000, "rw-", VmaKind::Anon, ""),
        v(0x0960_2000, 0x0962_4000, "rw-", VmaKind::Anon, "[heap]"),
    ];
    let top = |va| below_task_size(va, task_size);
    vmas.extend([
        v(
            top(0xb7f3_d000),
            top(0xb7f4_1000),
            "r--",
            VmaKind::Special,
            "[vvar]",
        ),
        v(
            vdso_start(task_size),
            top(0xb7f4_3000),
            "r-x",
            VmaKind::Vdso,
            "[vdso]",
        ),
        v(
            top(0xbfad_c000),
            stack_end(task_size),
            "rw-",
            VmaKind::Anon,
            "[stack]",
        ),
    ]);
    vmas
}

/// Where the binary's PT_GNU_RELRO area starts (its own VMA in the model, as after
/// `mprotect` split it from the data).
pub const RELRO_START: u64 = 0x0810_d000;

/// The size of the executable's file on the rootfs: the reference's `/bin/shmwork`
/// (`gcc -m32 -static -O2`, Debian 12's gcc 12.2 and glibc 2.36), 894 764 bytes. Its
/// pages are in the page cache from boot on: the initramfs was unpacked into the tmpfs.
pub const BINARY_FILE_PAGES: u64 = 894_764u64.div_ceil(PAGE_SIZE);

/// The pages a freshly exec'ed process touches before it forks: (address, write).
pub fn startup_touches(task_size: u64) -> Vec<(u64, bool)> {
    let mut t = vec![(0x0804_9000, false)];
    t.extend([0x0811_0000u64, 0x0811_1000].map(|a| (a, true)));
    t.extend([0x0811_2000u64, 0x0811_3000, 0x0811_4000].map(|a| (a, true)));
    t.extend([0x0960_2000u64, 0x0960_3000].map(|a| (a, true)));
    t.extend((1..=5u64).map(|i| (stack_end(task_size) - i * PAGE_SIZE, true)));
    t
}

/// A little-endian page-table entry of `ES` bytes at byte `o` of `f`.
#[inline(always)]
fn entry<const ES: usize>(f: &[u8], o: usize) -> u64 {
    let mut b = [0u8; 8];
    b[..ES].copy_from_slice(&f[o..o + ES]);
    u64::from_le_bytes(b)
}

/// What a `zap_pte_range` dropped: the RSS, and the anon pages whose last mapping went.
#[derive(Default)]
struct Zap {
    counts: Rss,
    freed: Vec<u64>,
    /// The CPU the zap runs on (whose LRU batches `mark_page_accessed` fills).
    cpu: usize,
}

/// The RSS counter (`mm_counter()`) of the pages a VMA maps.
#[derive(Clone, Copy, PartialEq, Eq)]
enum PageClass {
    /// A SysV segment: shmem pages only.
    Shm,
    /// A shmem file mapped (the rootfs binary, "/dev/zero"): shmem, or anon where COW
    /// copied a page.
    ShmemFile,
    /// Anonymous memory (anon pages) or a special mapping (the vDSO: a file page).
    Other,
}

impl PageClass {
    fn of(kind: VmaKind) -> PageClass {
        match kind {
            VmaKind::Shm { .. } => PageClass::Shm,
            VmaKind::File { .. } | VmaKind::ShmemZero { .. } => PageClass::ShmemFile,
            VmaKind::Anon | VmaKind::Special | VmaKind::Vdso => PageClass::Other,
        }
    }

    /// Count the page `pfn` in `counts`: `Some(true)` for an anon page (its mapping count is
    /// in `anon_refs`), else shmem or file as the VMA says.
    fn count(self, pfn: u64, anon_refs: &HashMap<u64, u32>, counts: &mut Rss) -> bool {
        if self != PageClass::Shm && anon_refs.contains_key(&pfn) {
            counts.anon += 1;
            return true;
        }
        match self {
            PageClass::Other => counts.file += 1,
            _ => counts.shmem += 1,
        }
        false
    }
}

impl Zap {
    /// Clear the present entries of `ptes` (`ES`-byte entries for the pages from `addr`),
    /// counting each page as the VMA it is in says; an anon page loses one mapping, and is
    /// freed with its last.
    fn entries<const ES: usize>(
        &mut self,
        ptes: &mut [u8],
        addr: u64,
        mm: &Mm,
        anon_refs: &mut HashMap<u64, u32>,
        node: &mut PgData,
    ) {
        // The VMA of the current address, looked up again only when the walk leaves it.
        let (mut vma_end, mut class) = (0u64, PageClass::Other);
        // Entries as `[u8; ES]`: the load and the clear are one fixed-size move each.
        let (ptes, _) = ptes.as_chunks_mut::<ES>();
        for (i, e) in ptes.iter_mut().enumerate() {
            let mut b = [0u8; 8];
            b[..ES].copy_from_slice(e);
            let v = u64::from_le_bytes(b);
            if v & _PAGE_PRESENT == 0 {
                continue;
            }
            *e = [0; ES];
            let a = addr + i as u64 * PAGE_SIZE;
            if a >= vma_end {
                (vma_end, class) = match mm.find_vma(a) {
                    Some(vi) => (mm.vmas[vi].end, PageClass::of(mm.vmas[vi].kind)),
                    None => (a + PAGE_SIZE, PageClass::Other),
                };
            }
            let pfn = (v & 0x000f_ffff_ffff_f000 & !crate::pgtable_types::_PAGE_NX) >> 12;
            if class != PageClass::Shm && class.count(pfn, anon_refs, &mut self.counts) {
                self.unmap_anon(pfn, anon_refs);
                continue;
            }
            if class == PageClass::Shm {
                self.counts.shmem += 1;
            }
            // A file page: a young PTE marks it accessed (no VMA here is VM_SEQ_READ).
            if v & _PAGE_ACCESSED != 0 {
                node.folio_mark_accessed(self.cpu, pfn);
            }
            node.page_remove_file_rmap(pfn);
        }
    }

    /// One mapping of the anon page `pfn` less; the last one frees it.
    fn unmap_anon(&mut self, pfn: u64, anon_refs: &mut HashMap<u64, u32>) {
        if let Some(r) = anon_refs.get_mut(&pfn) {
            *r -= 1;
            if *r == 0 {
                anon_refs.remove(&pfn);
                self.freed.push(pfn);
            }
        }
    }
}

impl Kernel {
    /// `TASK_SIZE` of the model's (32-bit) processes: user space ends where the kernel's
    /// PAGE_OFFSET begins on i386; a compat task on x86_64 gets `IA32_PAGE_OFFSET`.
    pub fn task_size(&self) -> u64 {
        match self.config.arch {
            crate::config::Arch::I386 => self.config.page_offset(),
            crate::config::Arch::X86_64 => IA32_PAGE_OFFSET,
        }
    }

    /// Objects from the named caches (a cache the preset lacks is skipped).
    pub(crate) fn alloc_objs(&mut self, cpu: usize, names: &[&str]) -> Vec<(CacheId, VirtAddr)> {
        let mut out = Vec::new();
        for n in names {
            if let Some(id) = self.slab.find_cache(n) {
                if let Ok(va) = self.kmem_cache_alloc(id, GFP_KERNEL | Gfp::ACCOUNT, cpu) {
                    out.push((id, va));
                }
            }
        }
        out
    }

    pub(crate) fn free_objs(&mut self, cpu: usize, objs: Vec<(CacheId, VirtAddr)>) {
        for (id, va) in objs {
            if let Err(e) = self.kmem_cache_free(id, va, cpu) {
                self.log
                    .log(crate::printk::LogLevel::Err, format!("BUG: {e:?}"));
            }
        }
    }

    /// `copy_process()`'s memory: a task, its kernel stack and objects, a new mm (pgd_alloc).
    fn new_process(
        &mut self,
        cpu: usize,
        comm: &str,
        ppid: u32,
        parent: Option<ProcId>,
    ) -> Result<ProcId, MmError> {
        let kstack = self.alloc_thread_stack_node(cpu, parent)?;
        let mut objs = self.alloc_objs(cpu, TASK_CACHES);
        let mm_obj = self.alloc_objs(cpu, &["mm_struct"]);
        let (pgd, pgd_order, pmds) = match self.pgd_alloc(cpu, parent) {
            Ok(x) => x,
            Err(e) => {
                objs.extend(mm_obj);
                self.free_objs(cpu, objs);
                self.free_thread_stack(cpu, kstack);
                return Err(e);
            }
        };
        let nr_pmds = pmds.len() as u64;
        let task = self.sched.spawn(comm, cpu);
        let pid = self.sched.tasks[task.0].pid;
        let mm = Mm {
            pgd,
            pgd_order,
            pmds,
            upper: Default::default(),
            vmas: Vec::new(),
            pte_pages: Default::default(),
            nr_ptes: 0,
            nr_pmds,
            nr_puds: 0,
            rss: Rss::default(),
            hiwater_rss: 0,
            hiwater_vm: 0,
            brk_start: 0x0960_2000,
            brk: 0x0962_4000,
            obj: mm_obj.first().map(|x| x.1),
            maple: Vec::new(),
            mmap_cache: Default::default(),
        };
        objs.extend(mm_obj);
        self.mm.procs.push(Process {
            task,
            pid,
            ppid,
            comm: comm.to_string(),
            mm: Some(mm),
            kstack: Some(kstack),
            objs,
            // copy_signal(): the child starts with its parent's.
            oom_score_adj: parent.map_or(0, |q| self.mm.procs[q.0].oom_score_adj),
            proc_entries: Vec::new(),
            min_flt: 0,
            maj_flt: 0,
            rss_stat: Default::default(),
            dead: false,
            oom_killed: false,
            init_part: false,
        });
        Ok(ProcId(self.mm.procs.len() - 1))
    }

    pub(crate) fn add_vma(&mut self, cpu: usize, p: ProcId, mut v: Vma) -> Result<(), MmError> {
        // mas_preallocate(): the tree's nodes first; nothing has changed if they fail.
        self.mt_preallocate_insert(cpu, p, (v.start, v.end))?;
        v.obj = self
            .alloc_objs(cpu, &["vm_area_struct"])
            .first()
            .map(|x| x.1);
        let mm = self.mm.procs[p.0].mm.as_mut().ok_or(MmError::NoProc)?;
        let at = mm.vmas.partition_point(|x| x.start < v.start);
        mm.vmas.insert(at, v);
        mm.update_hiwater();
        Ok(())
    }

    /// exec of the small static binary `name` by a new process: its mappings, then the
    /// pages its start-up touches (demand faults through the MMU).
    pub fn exec_process(&mut self, cpu: usize, name: &str, ppid: u32) -> Result<ProcId, MmError> {
        let touches = startup_touches(self.task_size());
        self.exec_program(cpu, name, ppid, &touches)
    }

    /// exec of the binary as `name`, whose start-up makes the user accesses `touches`
    /// (address, write) in order before it makes its PT_GNU_RELRO area read-only.
    pub fn exec_program(
        &mut self,
        cpu: usize,
        name: &str,
        ppid: u32,
        touches: &[(u64, bool)],
    ) -> Result<ProcId, MmError> {
        self.rootfs_binary_cache(cpu)?;
        // prepare_binprm(): kernel_read() of the file's first bytes, a read from offset 0
        // of page 0 — shmem_file_read_iter() marks that page accessed.
        if let Some(&page0) = self.mm.binary_pages.get(&0) {
            self.node.folio_mark_accessed(cpu, page0.as_u64());
        }
        let p = self.new_process(cpu, name, ppid, None)?;
        for v in binary_layout(name, self.task_size()) {
            // elf_map / vm_brk_flags / the stack: each VM_ACCOUNT area is charged.
            if v.account {
                self.vm_acct_memory(v.pages());
            }
            self.add_vma(cpu, p, v)?;
        }
        self.switch_to_process(cpu, p)?;
        for &(va, w) in touches {
            self.user_access(cpu, p, va, w)?;
        }
        self.protect_relro(cpu, p)?;
        Ok(p)
    }

    /// The caches of every slab object process `p` holds: its task's (task_struct, signal,
    /// files …), its /proc entries', its mm_struct, VMAs, anon_vmas and maple nodes.
    pub fn process_slab_objects(&self, p: ProcId) -> Vec<CacheId> {
        let proc = &self.mm.procs[p.0];
        let mut v: Vec<CacheId> = proc
            .objs
            .iter()
            .chain(proc.proc_entries.iter().flat_map(|e| &e.objs))
            .map(|o| o.0)
            .collect();
        if let Some(mm) = &proc.mm {
            let cache = |name: &str| self.slab.find_cache(name);
            if let (Some(_), Some(id)) = (mm.obj, cache("mm_struct")) {
                v.push(id);
            }
            if let Some(id) = cache("maple_node") {
                v.extend(mm.maple.iter().map(|_| id));
            }
            if let Some(id) = cache("vm_area_struct") {
                v.extend(mm.vmas.iter().filter(|x| x.obj.is_some()).map(|_| id));
            }
            v.extend(mm.vmas.iter().flat_map(|x| x.anon_objs.iter().map(|o| o.0)));
        }
        v
    }

    /// Static glibc's `_dl_protect_relro`: `mprotect(PROT_READ)` of the PT_GNU_RELRO area
    /// (`change_protection`: present PTEs lose their write bit, one INVLPG each). The
    /// VMA keeps its VM_ACCOUNT charge.
    fn protect_relro(&mut self, cpu: usize, p: ProcId) -> Result<(), MmError> {
        let shift = self.pmd_shift();
        let mm = self.mm.procs[p.0].mm.as_mut().ok_or(MmError::NoProc)?;
        let Some(vi) = mm.find_vma(RELRO_START) else {
            return Ok(());
        };
        mm.vmas[vi].write = false;
        let (start, end) = (mm.vmas[vi].start, mm.vmas[vi].end);
        let Some(ptepfn) = mm.pte_pages.pfn((start >> shift) as u32) else {
            return Ok(());
        };
        let mask = self.ptes_per_page() - 1;
        let m = self.pte_map(cpu, ptepfn, WalkLen::Short)?;
        for a in (start..end).step_by(PAGE_SIZE as usize) {
            let v = self.pte_get(cpu, m, (a >> 12) & mask)?;
            if v & _PAGE_PRESENT != 0 && v & _PAGE_RW != 0 {
                self.pte_set(cpu, m, (a >> 12) & mask, v & !_PAGE_RW)?;
                let _ = self.machine.invlpg(cpu, VirtAddr::new(a));
            }
        }
        self.pte_unmap(cpu, m)
    }

    /// The executable's file on the rootfs: all its pages in the page cache (the
    /// initramfs was unpacked into the tmpfs at boot), Shmem and Cached. They are pages the
    /// boot's runtime profile already holds as "the unpacked initramfs" when there is one
    /// (so nothing is allocated twice), else new pages.
    fn rootfs_binary_cache(&mut self, cpu: usize) -> Result<(), MmError> {
        if !self.mm.binary_pages.is_empty() {
            return Ok(());
        }
        // With the runtime profile the binary is one of the initramfs files the boot
        // unpacked: its pages are already in the page cache (and in Shmem and Cached).
        let initramfs = &self.boot_userspace.initramfs;
        let held: Vec<Pfn> = match initramfs.get(..BINARY_FILE_PAGES as usize) {
            Some(r) => r.to_vec(),
            None => Vec::new(),
        };
        self.mm.binary_from_profile = !held.is_empty();
        for fpg in 0..BINARY_FILE_PAGES {
            let pfn = match held.get(fpg as usize) {
                Some(&f) => f,
                None => {
                    let pfn = self.mm_alloc_pages(super::mman::SHMEM_FOLIO_GFP, 0, cpu, None)?;
                    self.node.vm_stat[NodeStatItem::NrShmem] += 1;
                    self.node.vm_stat[NodeStatItem::NrFilePages] += 1;
                    // Unpacked by write(): shmem_get_folio(SGP_WRITE) sets PG_referenced.
                    self.node.mem_map[pfn].set(crate::page::PageFlags::REFERENCED);
                    self.node.folio_add_lru(cpu, pfn);
                    pfn
                }
            };
            self.mm.binary_pages.insert(fpg, pfn);
        }
        Ok(())
    }

    /// `fork()`: `copy_process` + `dup_mmap`: VMAs inherited; `copy_page_range` only for
    /// VMAs with an anon_vma (shared and untouched file mappings are refaulted instead);
    /// private pages are write-protected in both for COW.
    pub fn fork(&mut self, cpu: usize, parent: ProcId) -> Result<ProcId, MmError> {
        let ppid = self.mm.procs[parent.0].pid;
        let comm = self.mm.procs[parent.0].comm.clone();
        let child = self.new_process(cpu, &comm, ppid, Some(parent))?;
        let vmas = self.mm.procs[parent.0]
            .mm
            .as_ref()
            .ok_or(MmError::NoProc)?
            .vmas
            .clone();
        // dup_mmap(): the child's VM_ACCOUNT VMAs are charged in one go.
        let charge: u64 = vmas.iter().filter(|v| v.account).map(|v| v.pages()).sum();
        if let Err(e) = self.security_vm_enough_memory(cpu, charge) {
            self.exit_process(cpu, child)?;
            return Err(e);
        }
        if let Err(e) = self.dup_mmap(cpu, parent, child, vmas) {
            // copy_process() fails: the half-built child is torn down (bad_fork_cleanup_mm).
            self.exit_process(cpu, child)?;
            return Err(e);
        }
        // flush_tlb_mm(parent): write-protected PTEs.
        let _ = self.machine.flush_all(cpu);
        Ok(child)
    }

    /// `dup_mmap()`'s VMA loop: each VMA (and its file's reference) into the child, and the
    /// page tables of the ones with an anon_vma copied.
    fn dup_mmap(
        &mut self,
        cpu: usize,
        parent: ProcId,
        child: ProcId,
        vmas: Vec<Vma>,
    ) -> Result<(), MmError> {
        for mut v in vmas {
            let copy = v.anon_vma && !v.shared;
            v.obj = None;
            v.anon_objs = Vec::new();
            v.anon_vma = false;
            let had = copy;
            self.add_vma(cpu, child, v.clone())?;
            match v.kind {
                VmaKind::Shm { seg } => self.mm.shm[seg].nattch += 1,
                VmaKind::ShmemZero { file, .. } => self.shmem_zero_get(file),
                _ => {}
            }
            if had {
                // anon_vma_fork(): a chain to the parent's anon_vma and a new anon_vma.
                let vi = self.mm.procs[child.0]
                    .mm
                    .as_ref()
                    .unwrap()
                    .find_vma(v.start)
                    .unwrap();
                let objs = self.alloc_objs(cpu, &["anon_vma_chain", "anon_vma", "anon_vma_chain"]);
                let mm = self.mm.procs[child.0].mm.as_mut().unwrap();
                mm.vmas[vi].anon_vma = true;
                mm.vmas[vi].anon_objs = objs;
                let class = PageClass::of(v.kind);
                self.copy_page_range(cpu, parent, child, (v.start, v.end), class)?;
            }
        }
        Ok(())
    }

    fn copy_page_range(
        &mut self,
        cpu: usize,
        src: ProcId,
        dst: ProcId,
        (start, end): (u64, u64),
        class: PageClass,
    ) -> Result<(), MmError> {
        let shift = self.pmd_shift();
        let per = self.ptes_per_page();
        let mut addr = start;
        while addr < end {
            let next = ((addr >> shift) + 1) << shift;
            let stop = next.min(end);
            let key = (addr >> shift) as u32;
            let spfn = self.mm.procs[src.0].mm.as_ref().unwrap().pte_pages.pfn(key);
            if let Some(spfn) = spfn {
                let dpfn = self.pte_alloc(cpu, dst, addr)?;
                // copy_pte_range(): dst through pte_alloc_map_lock, src through the nested map.
                let dm = self.pte_map(cpu, dpfn, WalkLen::Long)?;
                let sm = self.pte_map(cpu, spfn, WalkLen::Nested)?;
                let mut a = addr;
                let mut counts = Rss::default();
                while a < stop {
                    let idx = (a >> 12) & (per - 1);
                    let v = self.pte_get(cpu, sm, idx)?;
                    if v & _PAGE_PRESENT != 0 {
                        let pfn =
                            (v & 0x000f_ffff_ffff_f000 & !crate::pgtable_types::_PAGE_NX) >> 12;
                        let wp = v & !_PAGE_RW;
                        if v & _PAGE_RW != 0 {
                            self.pte_set(cpu, sm, idx, wp)?;
                        }
                        self.pte_set(cpu, dm, idx, wp)?;
                        if class.count(pfn, &self.mm.anon_refs, &mut counts) {
                            *self.mm.anon_refs.entry(pfn).or_insert(0) += 1;
                        } else {
                            self.node.page_dup_file_rmap(pfn);
                        }
                    }
                    a += PAGE_SIZE;
                }
                self.pte_unmap(cpu, sm)?;
                self.pte_unmap(cpu, dm)?;
                // add_mm_rss_vec() on the child's mm.
                let mm = self.mm.procs[dst.0].mm.as_mut().unwrap();
                mm.rss.add(counts);
                mm.update_hiwater();
            }
            addr = next;
        }
        Ok(())
    }

    /// `unmap_page_range()` over [start, end): each PTE page's part goes through
    /// [`Self::zap_pte_range`].
    pub(crate) fn zap_range(
        &mut self,
        cpu: usize,
        p: ProcId,
        start: u64,
        end: u64,
    ) -> Result<(), MmError> {
        let shift = self.pmd_shift();
        // unmap_region() / exit_mmap() begin with lru_add_drain(), and tlb_finish_mmu()'s
        // free_pages_and_swap_cache() drains again what the zap's mark_page_accessed queued.
        self.node.lru_add_drain(cpu);
        let mut addr = start;
        while addr < end {
            let next = ((addr >> shift) + 1) << shift;
            let key = (addr >> shift) as u32;
            let mm = self.mm.procs[p.0].mm.as_ref().ok_or(MmError::NoProc)?;
            if let Some(ptepfn) = mm.pte_pages.pfn(key) {
                self.zap_pte_range(cpu, p, ptepfn, addr, next.min(end))?;
            }
            addr = next;
        }
        self.node.lru_add_drain(cpu);
        Ok(())
    }

    /// `zap_pte_range()`: drop the mappings of [addr, end) in one PTE page (anon pages are
    /// freed on their last unmap), the page mapped once for the whole walk.
    ///
    /// The entries are read and cleared through the map as the kernel's loads and stores
    /// are; the model translates the map's address once per direction (the first load, the
    /// first store) and then uses the frame that translation gave, since nothing else
    /// touches the TLB in between: the TLB ends in the same state with the same misses,
    /// only its hit counter sees two accesses instead of one per entry.
    fn zap_pte_range(
        &mut self,
        cpu: usize,
        p: ProcId,
        ptepfn: Pfn,
        addr: u64,
        end: u64,
    ) -> Result<(), MmError> {
        let pae = self.geo.pae;
        let es: u64 = if pae { 8 } else { 4 };
        let first = (addr >> 12) & (self.ptes_per_page() - 1);
        let n = (end - addr).div_ceil(PAGE_SIZE);
        let m = self.pte_map(cpu, ptepfn, WalkLen::Long)?;
        let res = self.zap_ptes(cpu, p, m, first * es, n, addr);
        self.pte_unmap(cpu, m)?;
        let (counts, freed) = res?;
        for pfn in freed {
            self.node.vm_stat[NodeStatItem::NrAnonMapped] -= 1;
            self.mm_free_pages(Pfn::new(pfn), 0, cpu);
        }
        // add_mm_rss_vec(): straight into the mm's counters (not the task's).
        let mm = self.mm.procs[p.0].mm.as_mut().ok_or(MmError::NoProc)?;
        mm.rss.anon -= counts.anon;
        mm.rss.file -= counts.file;
        mm.rss.shmem -= counts.shmem;
        Ok(())
    }

    /// The entries of [`Self::zap_pte_range`]: `n` of them from byte `off` of the PTE page
    /// mapped by `m`, for the pages from `addr`. Returns the RSS to drop and the anon pages
    /// whose last mapping went.
    fn zap_ptes(
        &mut self,
        cpu: usize,
        p: ProcId,
        m: PteMap,
        off: u64,
        n: u64,
        addr: u64,
    ) -> Result<(Rss, Vec<u64>), MmError> {
        let pae = self.geo.pae;
        let es = if pae { 8 } else { 4 };
        let mut z = Zap {
            cpu,
            ..Zap::default()
        };
        let n = n as usize;
        // The first load through the map: find the first present entry.
        let first_present = |bytes: &[u8]| {
            (0..n).find(|&i| {
                let e = if pae {
                    entry::<8>(bytes, i * 8)
                } else {
                    entry::<4>(bytes, i * 4)
                };
                e & _PAGE_PRESENT != 0
            })
        };
        let Some(j) = self.pte_page_read(cpu, m, off, first_present)? else {
            return Ok((z.counts, z.freed));
        };
        // The stores through the map, from the first present entry.
        let mm = self.mm.procs[p.0].mm.as_ref().ok_or(MmError::NoProc)?;
        let anon_refs = &mut self.mm.anon_refs;
        let node = &mut self.node;
        let a = addr + j as u64 * PAGE_SIZE;
        let len = (n - j) * es;
        let mut clear = |bytes: &mut [u8]| {
            if pae {
                z.entries::<8>(&mut bytes[..len], a, mm, anon_refs, node);
            } else {
                z.entries::<4>(&mut bytes[..len], a, mm, anon_refs, node);
            }
        };
        let at = off + (j * es) as u64;
        match m {
            PteMap::Direct(pa) => {
                let frame = self.machine.mem.frame_mut(pa.pfn()).map_err(bus_bug)?;
                clear(&mut frame[at as usize..]);
            }
            PteMap::Atomic(va)
            | PteMap::Local(va)
            | PteMap::Typed(va, _)
            | PteMap::Persistent(va, _) => self
                .machine
                .with_virt_page_mut(cpu, va + at, clear)
                .map_err(access_bug)?,
        }
        Ok((z.counts, z.freed))
    }

    /// `free_pgd_range()` for [start, end): PTE pages whose whole PMD range no VMA still
    /// covers are unhooked and freed (`pte_free_tlb`, `mm_dec_nr_ptes`).
    pub(crate) fn free_pgtables(&mut self, cpu: usize, p: ProcId, start: u64, end: u64) {
        let shift = self.pmd_shift();
        let first = (start >> shift) as u32;
        let last = ((end - 1) >> shift) as u32;
        let keys: Vec<u32> = {
            let mm = self.mm.procs[p.0].mm.as_ref().unwrap();
            mm.pte_pages
                .keys()
                .filter(|k| *k >= first && *k <= last)
                .filter(|k| {
                    let lo = (*k as u64) << shift;
                    let hi = lo + (1u64 << shift);
                    !mm.vmas.iter().any(|v| v.start < hi && v.end > lo)
                })
                .collect()
        };
        for k in keys {
            let va = (k as u64) << shift;
            if let Some(e) = self.user_pmd_entry(p, va) {
                let _ = if self.geo.pae {
                    self.machine.mem.write_u64(e, 0)
                } else {
                    self.machine.mem.write_u32(e, 0)
                };
            }
            let mm = self.mm.procs[p.0].mm.as_mut().unwrap();
            let pfn = mm.pte_pages.remove(&k).unwrap();
            mm.nr_ptes -= 1;
            self.node.vm_stat[NodeStatItem::NrPagetable] -= 1;
            self.mm.counters.pte_pages_freed += 1;
            self.mm_free_pages(pfn, 0, cpu);
        }
    }

    /// `exit_mmap()`: unmap every VMA, free the page tables and the pgd.
    pub fn exit_mmap(&mut self, cpu: usize, p: ProcId) -> Result<(), MmError> {
        let Some(mm) = self.mm.procs[p.0].mm.as_ref() else {
            return Ok(());
        };
        let pgd = mm.pgd;
        // The CPU must not keep walking a freed pgd: load swapper_pg_dir if it is live.
        for c in 0..self.machine.cpus.len() {
            if self.machine.cpus[c].regs().cr3 & !0xfff == pgd.phys().as_u64() {
                let _ = self.machine.write_cr3(c, self.swapper_pg_dir);
            }
        }
        let ranges: Vec<(u64, u64)> = mm.vmas.iter().map(|v| (v.start, v.end)).collect();
        for (s, e) in &ranges {
            self.zap_range(cpu, p, *s, *e)?;
        }
        let mm = self.mm.procs[p.0].mm.as_mut().unwrap();
        let accounted = mm.accounted_pages();
        let vmas = std::mem::take(&mut mm.vmas);
        self.vm_unacct_memory(accounted);
        for v in vmas {
            match v.kind {
                VmaKind::Shm { seg } => self.shm_detach_seg(cpu, seg),
                VmaKind::ShmemZero { file, .. } => self.shmem_zero_put(cpu, file),
                _ => {}
            }
            let mut objs = v.anon_objs;
            if let (Some(o), Some(id)) = (v.obj, self.slab.find_cache("vm_area_struct")) {
                objs.push((id, o));
            }
            self.free_objs(cpu, objs);
        }
        self.free_pgtables(cpu, p, 0, self.task_size());
        let mut mm = self.mm.procs[p.0].mm.take().unwrap();
        self.mt_destroy(cpu, std::mem::take(&mut mm.maple));
        self.free_upper4(cpu, &mm.upper);
        self.pgd_free(cpu, mm.pgd, mm.pgd_order, &mm.pmds);
        Ok(())
    }

    /// Drop the executable's page cache (as an unmount of the filesystem would): pages
    /// of the runtime profile stay with it, others are freed.
    pub fn drop_binary_cache(&mut self, cpu: usize) {
        // truncate_inode_pages(): this CPU's LRU batches first.
        self.node.lru_add_drain(cpu);
        let mut pages: Vec<Pfn> = self.mm.binary_pages.drain().map(|x| x.1).collect();
        pages.sort_unstable();
        for pfn in pages {
            if !self.mm.binary_from_profile {
                self.node.vm_stat[NodeStatItem::NrShmem] -= 1;
                self.node.vm_stat[NodeStatItem::NrFilePages] -= 1;
                self.mm_free_pages(pfn, 0, cpu);
            }
        }
        self.mm.binary_from_profile = false;
    }

    /// `do_exit()`: the address space, the kernel stack and the task's objects go back.
    pub fn exit_process(&mut self, cpu: usize, p: ProcId) -> Result<(), MmError> {
        if self.mm.procs[p.0].dead {
            return Ok(());
        }
        self.sync_mm_rss(p);
        self.exit_mmap(cpu, p)?;
        if let Some(ks) = self.mm.procs[p.0].kstack.take() {
            self.free_thread_stack(cpu, ks);
        }
        let objs = std::mem::take(&mut self.mm.procs[p.0].objs);
        self.free_objs(cpu, objs);
        self.proc_flush_pid(cpu, p);
        self.mm.procs[p.0].dead = true;
        let t = self.mm.procs[p.0].task;
        let cur = self.sched.current(cpu);
        if cur == t {
            // Back to the idle task of this CPU.
            let idle = self.sched.cpus[cpu].idle;
            let _ = self.context_switch(cpu, idle);
        }
        self.sched.tasks[t.0].state = crate::sched::TaskState::Dead;
        for c in &mut self.sched.cpus {
            c.rq.retain(|x| *x != t);
        }
        Ok(())
    }
}
