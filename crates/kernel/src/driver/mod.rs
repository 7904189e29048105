//! Seed 000's video-capture driver: it vmallocs a capture buffer and builds a DMA
//! scatter-gather list of the buffer's physical addresses, in the four ways the seed
//! discusses (`meye.c`'s `kvirt_to_pa`):
//!
//! - (a) [`Method::HandWalk`]: `pgd_offset_k` / `pmd_offset` / `pte_offset` / `pte_page` by
//!   hand, `pte_offset` being 2.4's `__va(pmd_val(*pmd) & PAGE_MASK) + index` — the PTE page
//!   is read through the direct map;
//! - (b) [`Method::PteOffsetAtomic`]: the 2.4.18-SuSE fix, `pte_offset_atomic()` (an atomic
//!   kmap, KM_USER0) … `pte_kunmap()`;
//! - (c) [`Method::VmallocToPage`]: `page_address(vmalloc_to_page(adr))`, valid only for
//!   `vmalloc_32` buffers (a highmem page has no `page_address`);
//! - (d) [`Method::GetUserPages`]: pin a user buffer with `get_user_pages` (see [`gup`]).
//!
//! Each version runs against the simulated memory: the hand walk really reads
//! `PAGE_OFFSET + phys` through the MMU (truncated to 32 bits as `__va` is), so where the
//! PTE page is in high memory it reads whatever that address maps — or faults. The outcome is
//! the comparison of the list with the pages the vmalloc area owns. Whether a version builds
//! at all is the design's API ([`api`]); which page tables are in high memory is decided by
//! the kernel's own allocation (`pte_alloc_kernel` with `variant::kernel_pte_gfp`).

pub mod gup;

use crate::design::{KernelDesign, KmType};
use crate::kernel::Kernel;
use machine::{Pfn, VirtAddr, PAGE_SIZE};

/// How the driver finds the physical pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Method {
    HandWalk,
    PteOffsetAtomic,
    VmallocToPage,
    GetUserPages,
}

impl Method {
    pub const ALL: [Method; 4] = [
        Method::HandWalk,
        Method::PteOffsetAtomic,
        Method::VmallocToPage,
        Method::GetUserPages,
    ];

    /// The label of the report's rows.
    pub fn label(self) -> &'static str {
        match self {
            Method::HandWalk => "(a) pte_offset by hand",
            Method::PteOffsetAtomic => "(b) pte_offset_atomic/pte_kunmap",
            Method::VmallocToPage => "(c) vmalloc_to_page+page_address",
            Method::GetUserPages => "(d) get_user_pages",
        }
    }
}

/// Whether the version compiles against `design`'s headers; the error says why not.
pub fn api(design: KernelDesign, m: Method) -> Result<(), &'static str> {
    use KernelDesign::*;
    match (m, design) {
        (Method::HandWalk, Highpte25 | Linux61) => Err(
            "pte_offset() was removed in 2.5.5 (pte_offset_map / pte_offset_kernel): unported code fails at compile time",
        ),
        (Method::PteOffsetAtomic, Highpte25 | Linux61) => {
            Err("pte_offset_atomic() / pte_kunmap() exist only in 2.4.18-SuSE's pte-highmem")
        }
        (Method::VmallocToPage, PteHighmem24) => {
            Err("2.4.18-SuSE does not export vmalloc_to_page() (it came with 2.4.19)")
        }
        (Method::GetUserPages, PteHighmem24) => {
            Err("get_user_pages() is not exported to modules in 2.4.18")
        }
        _ => Ok(()),
    }
}

/// The capture buffer's allocator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Buffer {
    Vmalloc32,
    Vmalloc,
    /// (d)'s buffer: user memory, pinned.
    User,
}

impl Buffer {
    pub const ALL: [Buffer; 2] = [Buffer::Vmalloc32, Buffer::Vmalloc];

    pub fn name(self) -> &'static str {
        match self {
            Buffer::Vmalloc32 => "vmalloc_32",
            Buffer::Vmalloc => "vmalloc",
            Buffer::User => "user buffer",
        }
    }
}

/// What the scatter-gather list came out as.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Outcome {
    /// Every entry is the physical address of the buffer's page.
    Right,
    /// An entry is not the buffer's page; `culprit` is the debug check that names why.
    WrongPage {
        index: usize,
        va: u64,
        got: u64,
        want: u64,
        culprit: String,
    },
    /// The driver oopsed.
    Fault { report: String, culprit: String },
    /// The API does not exist in this design. For the hand walk, `as_ported` is the outcome
    /// of the same walk with the design's `pte_offset_kernel` (direct-map read).
    DoesNotBuild {
        why: String,
        as_ported: Option<Box<Outcome>>,
    },
    /// The version cannot run in this tree yet (never a made-up result).
    NotAvailable { why: String },
}

impl Outcome {
    /// One word for the table.
    pub fn short(&self) -> &'static str {
        match self {
            Outcome::Right => "right pages",
            Outcome::WrongPage { .. } => "WRONG PAGE",
            Outcome::Fault { .. } => "FAULT",
            Outcome::DoesNotBuild { .. } => "does not build",
            Outcome::NotAvailable { .. } => "not available",
        }
    }

    /// The detail line (culprit, reason).
    pub fn detail(&self) -> String {
        match self {
            Outcome::Right => String::new(),
            Outcome::WrongPage {
                index,
                va,
                got,
                want,
                culprit,
            } => format!(
                "entry {index} ({va:#010x}) is {got:#x}, the page is at {want:#x}: {culprit}"
            ),
            Outcome::Fault { report, culprit } => format!("{report}: {culprit}"),
            Outcome::DoesNotBuild { why, as_ported } => match as_ported {
                Some(o) => format!("{why}; ported to pte_offset_kernel: {}", o.short()),
                None => why.clone(),
            },
            Outcome::NotAvailable { why } => why.clone(),
        }
    }
}

/// One cell of the report.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Row {
    pub method: Method,
    pub buffer: Buffer,
    pub outcome: Outcome,
}

/// Where each buffer's pages and page tables ended up (for the report).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct BufferInfo {
    pub buffer: Buffer,
    pub addr: u64,
    pub pages: usize,
    pub highmem_pages: usize,
    /// pfns of the PTE pages mapping the buffer, and whether each is in high memory.
    pub pte_pages: Vec<(u64, bool)>,
}

/// The whole run on one booted kernel.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct DriverRun {
    pub design: KernelDesign,
    pub buffers: Vec<BufferInfo>,
    pub rows: Vec<Row>,
}

/// Why the driver could not even allocate its buffer.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("{0}")]
    Vmalloc(#[from] crate::vmalloc::VmallocError),
    #[error("{0}")]
    Walk(#[from] crate::pagewalk::WalkError),
}

/// One SG entry as the driver computed it, with the first debug check it tripped.
struct Entry {
    phys: u64,
    culprit: Option<String>,
}

impl Kernel {
    /// An `unsigned long` of this kernel: 32 bits on i386, 64 on x86_64.
    fn long_mask(&self) -> u64 {
        match self.config.arch {
            crate::config::Arch::I386 => 0xffff_ffff,
            crate::config::Arch::X86_64 => u64::MAX,
        }
    }

    /// `__va(phys)` in the kernel's (32-bit on i386) arithmetic.
    fn va32(&self, phys: u64) -> u64 {
        self.config.page_offset().wrapping_add(phys) & self.long_mask()
    }

    /// `__pa(kaddr)` in the kernel's arithmetic.
    fn pa32(&self, kaddr: u64) -> u64 {
        kaddr.wrapping_sub(self.config.page_offset()) & self.long_mask()
    }

    /// `ret = page_address(pte_page(pte)) | (adr & ~PAGE_MASK); return __pa(ret)`, with the
    /// debug check for a page that has no kernel address.
    fn kvirt_from_pte(&self, pte: u64, adr: u64, what: &str) -> Entry {
        if pte & crate::pgtable_types::_PAGE_PRESENT == 0 {
            return Entry {
                phys: self.pa32(adr & (PAGE_SIZE - 1)),
                culprit: Some(format!(
                    "{what}: the PTE read for {adr:#010x} is {pte:#x}, not present"
                )),
            };
        }
        let pfn = Pfn::new((pte & self.geo.pfn_mask()) >> 12);
        self.kvirt_from_page(pfn, adr, what)
    }

    fn kvirt_from_page(&self, pfn: Pfn, adr: u64, what: &str) -> Entry {
        let off = adr & (PAGE_SIZE - 1);
        let valid = pfn.as_u64() < self.layout.max_pfn.as_u64();
        match self.page_address(pfn).filter(|_| valid) {
            Some(va) => Entry {
                phys: self.pa32(va.as_u64() | off),
                culprit: None,
            },
            None => Entry {
                phys: self.pa32(off),
                culprit: Some(if valid {
                    format!(
                        "page_address(pfn {:#x}) is NULL: a highmem page has no kernel address \
                         ({what} is valid only for vmalloc_32 buffers)",
                        pfn.as_u64()
                    )
                } else {
                    format!("{what}: pfn {:#x} is beyond max_pfn: not RAM", pfn.as_u64())
                }),
            },
        }
    }

    /// The PMD entry of `adr` (pgd_offset_k / pmd_offset: kernel PMDs are low memory).
    fn driver_pmd(&self, adr: u64) -> Result<Option<u64>, DriverError> {
        let cur = self.kernel_cursor();
        Ok(
            match cur
                .pmd(&self.machine.mem, adr)
                .map_err(crate::pagewalk::WalkError::from)?
            {
                Ok(p) if p.present() && !p.is_large() => Some(self.geo.entry_table(p.val).as_u64()),
                _ => None,
            },
        )
    }

    /// Read one PTE through a kernel virtual address (the MMU decides what it reaches).
    fn read_pte_virt(&mut self, cpu: usize, va: u64) -> Result<u64, machine::AccessError> {
        if self.geo.pae {
            self.machine.read_virt_u64(cpu, VirtAddr::new(va))
        } else {
            self.machine
                .read_virt_u32(cpu, VirtAddr::new(va))
                .map(u64::from)
        }
    }

    /// (a): `pte_offset(pmd, adr)` = `__va(pmd_val(*pmd) & PAGE_MASK) + pte_index(adr)`.
    fn sg_hand_walk(&mut self, cpu: usize, adr: u64) -> Result<Entry, Outcome> {
        let Some(table) = self.driver_pmd(adr).map_err(|e| fault(e.to_string(), ""))? else {
            return Ok(Entry {
                phys: self.pa32(0),
                culprit: Some(format!("pmd_none() for {adr:#010x}")),
            });
        };
        let va = self.va32(table) + self.geo.pte_index(adr) * self.geo.entry_size();
        let high_memory = self.layout.max_low_pfn.phys().as_u64();
        let culprit = (table >= high_memory).then(|| {
            let po = self.config.page_offset();
            let what = if va >= po && va < self.va32(high_memory) {
                format!(
                    "the direct-map address of pfn {:#x}, another page",
                    (va - po) >> 12
                )
            } else {
                format!(
                    "outside the direct map (it ends at high_memory {:#010x})",
                    self.va32(high_memory)
                )
            };
            format!(
                "pte_offset(): the PTE page of {adr:#010x} is pfn {:#x}, in high memory; __va() \
                 gives {va:#010x}, {what}: use pte_offset_atomic()/pte_kunmap() or \
                 vmalloc_to_page()",
                table >> 12
            )
        });
        match self.read_pte_virt(cpu, va) {
            Ok(pte) => {
                let mut e = self.kvirt_from_pte(pte, adr, "kvirt_to_pa");
                if culprit.is_some() {
                    e.culprit = culprit;
                }
                Ok(e)
            }
            Err(err) => Err(fault(
                format!("BUG: unable to handle page fault for address: {va:#010x} in kvirt_to_pa ({err})"),
                culprit.as_deref().unwrap_or(""),
            )),
        }
    }

    /// (b): `pte_offset_atomic(pmd, adr)` (kmap_atomic KM_USER0), read, `pte_kunmap()`.
    fn sg_pte_offset_atomic(&mut self, cpu: usize, adr: u64) -> Result<Entry, Outcome> {
        let Some(table) = self.driver_pmd(adr).map_err(|e| fault(e.to_string(), ""))? else {
            return Ok(Entry {
                phys: self.pa32(0),
                culprit: Some(format!("pmd_none() for {adr:#010x}")),
            });
        };
        let base = self
            .kmap_atomic_typed(cpu, Pfn::new(table >> 12), KmType::KM_USER0)
            .map_err(|e| fault(e.to_string(), "pte_offset_atomic"))?;
        let r = self.read_pte_virt(
            cpu,
            base.as_u64() + self.geo.pte_index(adr) * self.geo.entry_size(),
        );
        self.kunmap_atomic_typed(cpu, base, KmType::KM_USER0)
            .map_err(|e| fault(e.to_string(), "pte_kunmap"))?;
        let pte = r.map_err(|e| fault(format!("BUG: {e}"), "pte_offset_atomic"))?;
        Ok(self.kvirt_from_pte(pte, adr, "kvirt_to_pa"))
    }

    /// (c): `page_address(vmalloc_to_page(adr))`.
    fn sg_vmalloc_to_page(&mut self, cpu: usize, adr: u64) -> Result<Entry, Outcome> {
        match self.vmalloc_to_page(adr, cpu) {
            Ok(Some(pfn)) => Ok(self.kvirt_from_page(pfn, adr, "page_address(vmalloc_to_page())")),
            Ok(None) => Ok(Entry {
                phys: self.pa32(0),
                culprit: Some(format!("vmalloc_to_page({adr:#010x}) is NULL")),
            }),
            Err(e) => Err(fault(e.to_string(), "vmalloc_to_page")),
        }
    }

    /// Build the SG list of the buffer at `addr` with `m` and compare it with `want`.
    fn sg_outcome(&mut self, cpu: usize, m: Method, addr: u64, want: &[Pfn]) -> Outcome {
        for (i, pfn) in want.iter().enumerate() {
            let adr = addr + i as u64 * PAGE_SIZE;
            let e = match m {
                Method::HandWalk => self.sg_hand_walk(cpu, adr),
                Method::PteOffsetAtomic => self.sg_pte_offset_atomic(cpu, adr),
                Method::VmallocToPage => self.sg_vmalloc_to_page(cpu, adr),
                Method::GetUserPages => unreachable!("user buffers are not vmalloc areas"),
            };
            let e = match e {
                Ok(e) => e,
                Err(o) => return o,
            };
            let w = pfn.phys().as_u64();
            if e.phys != w {
                return Outcome::WrongPage {
                    index: i,
                    va: adr,
                    got: e.phys,
                    want: w,
                    culprit: e.culprit.unwrap_or_else(|| {
                        "the page table read through the direct map held another page's PTE"
                            .to_string()
                    }),
                };
            }
        }
        Outcome::Right
    }

    /// A loaded machine: take `bytes` of high memory, page by page, as unmovable highmem
    /// allocations (vmalloc-like: GFP_KERNEL | __GFP_HIGHMEM | __GFP_NOWARN) before the
    /// driver runs, so the PTE pages it gets come from further up. Returns the pages taken
    /// (they are kept, as the runtime profile's are).
    pub fn occupy_highmem(&mut self, bytes: u64, cpu: usize) -> u64 {
        let gfp = crate::gfp::GFP_KERNEL | crate::gfp::__GFP_HIGHMEM | crate::gfp::__GFP_NOWARN;
        let mut taken = 0;
        while taken * PAGE_SIZE < bytes {
            match self.node.alloc_pages(gfp, 0, cpu) {
                Ok(p) if self.page_high_mem(p.pfn) => {
                    self.runtime_pages.push((p.pfn, 0));
                    taken += 1;
                }
                Ok(p) => {
                    // HighMem is exhausted: give the lowmem page back and stop.
                    let _ = self.node.__free_pages(p.pfn, 0, cpu);
                    break;
                }
                Err(_) => break,
            }
        }
        taken
    }

    /// Run the capture driver: a `vmalloc_32` and a plain `vmalloc` buffer of `pages` pages,
    /// each version of the SG-list code on each (or why it does not build / run), then free.
    pub fn run_capture_driver(&mut self, pages: u64, cpu: usize) -> Result<DriverRun, DriverError> {
        let design = self.design();
        let mut bufs = Vec::new();
        for b in Buffer::ALL {
            let size = pages * PAGE_SIZE;
            let addr = match b {
                Buffer::Vmalloc32 => self.vmalloc_32(size, cpu)?,
                Buffer::Vmalloc => self.vmalloc(size, cpu)?,
                Buffer::User => unreachable!("not in Buffer::ALL"),
            };
            let want = self
                .vmap
                .find_vm_area(addr)
                .map(|vm| vm.pages.clone())
                .unwrap_or_default();
            bufs.push((b, addr, want));
        }
        let mut infos = Vec::new();
        let max_low = self.layout.max_low_pfn.as_u64();
        for (b, addr, want) in &bufs {
            let mut pte_pages: Vec<(u64, bool)> = Vec::new();
            for i in 0..want.len() as u64 {
                // pmd_offset only: the PMD says where the PTE page is (kernel PMDs are
                // low memory); the PTE page itself may be high memory.
                if let Some(table) = self.driver_pmd(addr + i * PAGE_SIZE)? {
                    let pfn = table >> 12;
                    if !pte_pages.iter().any(|p| p.0 == pfn) {
                        pte_pages.push((pfn, pfn >= max_low));
                    }
                }
            }
            infos.push(BufferInfo {
                buffer: *b,
                addr: *addr,
                pages: want.len(),
                highmem_pages: want.iter().filter(|p| p.as_u64() >= max_low).count(),
                pte_pages,
            });
        }
        let mut rows = Vec::new();
        for m in Method::ALL {
            if m == Method::GetUserPages {
                let outcome = match api(design, m) {
                    Err(why) => Outcome::DoesNotBuild {
                        why: why.to_string(),
                        as_ported: None,
                    },
                    Ok(()) => gup::pin_user_buffer(self, pages),
                };
                rows.push(Row {
                    method: m,
                    buffer: Buffer::User,
                    outcome,
                });
                continue;
            }
            for (b, addr, want) in &bufs {
                let outcome = match api(design, m) {
                    Err(why) => Outcome::DoesNotBuild {
                        why: why.to_string(),
                        // pte_offset_kernel is the same direct-map read as 2.4's pte_offset.
                        as_ported: (m == Method::HandWalk)
                            .then(|| Box::new(self.sg_outcome(cpu, Method::HandWalk, *addr, want))),
                    },
                    Ok(()) => self.sg_outcome(cpu, m, *addr, want),
                };
                rows.push(Row {
                    method: m,
                    buffer: *b,
                    outcome,
                });
            }
        }
        for (_, addr, _) in &bufs {
            self.vfree(*addr, cpu)?;
        }
        Ok(DriverRun {
            design,
            buffers: infos,
            rows,
        })
    }
}

fn fault(report: String, culprit: &str) -> Outcome {
    Outcome::Fault {
        report,
        culprit: culprit.to_string(),
    }
}

#[cfg(test)]
mod tests;
