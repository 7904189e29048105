//! The page-table cursor: one descent pgd → pmd → pte for every kernel walk.
//!
//! Linux writes `pgd_offset_k → p4d_offset → pud_offset → pmd_offset → pte_offset_kernel`
//! in each user of the kernel page tables; the p4d and pud levels are folded on i386, and
//! without PAE the pmd is folded into the pgd too. [`Cursor`] does that descent once, over
//! the existing [`Geometry`] (2-level and PAE), reading the entries in simulated RAM:
//!
//! - [`Cursor::walk`] stops at the first empty level, a large page or the PTE slot and
//!   returns a [`Walk`] naming every entry on the way (table, index, value), so callers can
//!   rewrite the entry they stopped at;
//! - [`Cursor::set`] writes one entry and returns a `#[must_use]` [`TlbFlush`] for the range
//!   the old entry translated (nothing when it was not present);
//! - `Kernel::pte_alloc_kernel` installs a missing PTE page from low memory
//!   (GFP_PGTABLE_KERNEL, as `__pte_alloc_kernel` does) — kernel PTE pages are never
//!   highmem;
//! - PTE pages that live in high memory (user page tables with HIGHPTE, next issue) are
//!   reached through a [`PteMapper`]: [`Cursor::walk_mapped`] asks it for a mapping of the
//!   PTE page (`pte_offset_map`), reads through the MMU, and releases it (`pte_unmap`).
//!   [`DirectMap`] maps nothing (kernel tables); [`KmapLocalPte`] uses kmap_local slots.
//!
//! Lowmem tables are read with physical accesses at `__pa(table)`: the kernel reaches them
//! through its direct map, which is an identity offset the simulator does not need to
//! translate.

use crate::boot::BootError;
use crate::highmem::KmapError;
use crate::kernel::{Kernel, KernelAllocError};
use crate::pgtable::Geometry;
use crate::pgtable_types::{PteVal, _KERNPG_TABLE, _PAGE_PRESENT, _PAGE_PSE};
use crate::tlbflush::TlbFlush;
use machine::{AccessError, BusError, Machine, Pfn, PhysAddr, PhysMem, VirtAddr, PAGE_SIZE};

/// Why a walk could not complete.
#[derive(Debug, thiserror::Error)]
pub enum WalkError {
    #[error("bus error: {0}")]
    Bus(#[from] BusError),
    #[error("{0}")]
    Access(#[from] AccessError),
    #[error("{0}")]
    Kmap(#[from] KmapError),
    #[error("{0}")]
    Alloc(#[from] KernelAllocError),
    /// The kernel would BUG.
    #[error("{0}")]
    Bug(String),
}

impl From<WalkError> for BootError {
    fn from(e: WalkError) -> Self {
        match e {
            WalkError::Bus(b) => BootError::Bus(b),
            other => BootError::Bug(other.to_string()),
        }
    }
}

/// The level an entry belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Level {
    /// The PAE page-directory-pointer entry (pgd on PAE; folded into the pmd without PAE),
    /// or the PML4 entry of 4-level paging.
    Pgd,
    /// The 4-level format's page-directory-pointer entry (folded on i386).
    Pud,
    /// The page-directory entry: pmd with PAE, pgd without.
    Pmd,
    Pte,
}

/// One entry of one table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Entry {
    pub level: Level,
    /// Physical address of the table (for a mapped PTE page: its frame).
    pub table: PhysAddr,
    pub idx: u64,
    pub val: PteVal,
}

impl Entry {
    pub fn present(&self) -> bool {
        self.val & _PAGE_PRESENT != 0
    }
    /// A large-page leaf at PMD level.
    pub fn is_large(&self) -> bool {
        self.level == Level::Pmd && self.val & _PAGE_PSE != 0
    }
    /// Physical address of the entry itself.
    pub fn phys(&self, geo: Geometry) -> PhysAddr {
        self.table + self.idx * geo.entry_size()
    }
}

/// Where a descent stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Walk {
    /// PAE: the pgd entry is empty, there is no PMD table.
    NoPmd { pgd: Entry },
    /// The PMD entry is empty: no PTE page.
    NoPte { pmd: Entry },
    /// The PMD entry maps a large page.
    Large { pmd: Entry },
    /// The PTE slot, present or not.
    Pte { pmd: Entry, pte: Entry },
}

impl Walk {
    /// The PMD entry, if the walk reached that level.
    pub fn pmd(&self) -> Option<Entry> {
        match *self {
            Walk::NoPmd { .. } => None,
            Walk::NoPte { pmd } | Walk::Large { pmd } | Walk::Pte { pmd, .. } => Some(pmd),
        }
    }
    /// The PTE slot, if there is a PTE page.
    pub fn pte(&self) -> Option<Entry> {
        match *self {
            Walk::Pte { pte, .. } => Some(pte),
            _ => None,
        }
    }
    /// The present leaf (PTE or large PMD) translating the address.
    pub fn leaf(&self) -> Option<Entry> {
        match *self {
            Walk::Large { pmd } => Some(pmd),
            Walk::Pte { pte, .. } if pte.present() => Some(pte),
            _ => None,
        }
    }
}

/// A descent over one page directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub geo: Geometry,
    pub pgd: PhysAddr,
}

impl Cursor {
    pub const fn new(geo: Geometry, pgd: PhysAddr) -> Self {
        Cursor { geo, pgd }
    }

    fn read(
        &self,
        mem: &PhysMem,
        level: Level,
        table: PhysAddr,
        idx: u64,
    ) -> Result<Entry, BusError> {
        Ok(Entry {
            level,
            table,
            idx,
            val: self.geo.read(mem, table, idx)?,
        })
    }

    /// `pmd_offset(pud_offset(p4d_offset(pgd_offset_k(va))))`: the PMD entry of `va`, or
    /// the empty PAE pgd entry when there is no PMD table.
    pub fn pmd(&self, mem: &PhysMem, va: u64) -> Result<Result<Entry, Entry>, BusError> {
        let geo = self.geo;
        if !geo.pae {
            return Ok(Ok(self.read(
                mem,
                Level::Pmd,
                self.pgd,
                geo.pgd_index(va),
            )?));
        }
        let mut upper = self.read(mem, Level::Pgd, self.pgd, geo.pgd_index(va))?;
        if !upper.present() {
            return Ok(Err(upper));
        }
        if geo.long {
            let pud_table = geo.entry_table(upper.val);
            upper = self.read(mem, Level::Pud, pud_table, geo.pud_index(va))?;
            if !upper.present() {
                return Ok(Err(upper));
            }
        }
        Ok(Ok(self.read(
            mem,
            Level::Pmd,
            geo.entry_table(upper.val),
            geo.pmd_index(va),
        )?))
    }

    /// The descent for `va` with PTE pages read through the direct map (kernel tables).
    pub fn walk(&self, mem: &PhysMem, va: u64) -> Result<Walk, BusError> {
        let pmd = match self.pmd(mem, va)? {
            Ok(p) => p,
            Err(pgd) => return Ok(Walk::NoPmd { pgd }),
        };
        if !pmd.present() {
            return Ok(Walk::NoPte { pmd });
        }
        if pmd.is_large() {
            return Ok(Walk::Large { pmd });
        }
        let pte = self.read(
            mem,
            Level::Pte,
            self.geo.entry_table(pmd.val),
            self.geo.pte_index(va),
        )?;
        Ok(Walk::Pte { pmd, pte })
    }

    /// The descent for `va` with the PTE page reached through `mapper`
    /// (`pte_offset_map` … `pte_unmap`).
    pub fn walk_mapped<M: PteMapper>(
        &self,
        k: &mut Kernel,
        mapper: &mut M,
        va: u64,
    ) -> Result<Walk, WalkError> {
        let pmd = match self.pmd(&k.machine.mem, va)? {
            Ok(p) => p,
            Err(pgd) => return Ok(Walk::NoPmd { pgd }),
        };
        if !pmd.present() {
            return Ok(Walk::NoPte { pmd });
        }
        if pmd.is_large() {
            return Ok(Walk::Large { pmd });
        }
        let table = self.geo.entry_table(pmd.val);
        let idx = self.geo.pte_index(va);
        let t = mapper.map_pte(k, table.pfn())?;
        let val = self.read_table(&mut k.machine, t, idx);
        mapper.unmap_pte(k, t)?;
        Ok(Walk::Pte {
            pmd,
            pte: Entry {
                level: Level::Pte,
                table,
                idx,
                val: val?,
            },
        })
    }

    /// Rewrite the PTE of `va` in a PTE page reached through `mapper` (`set_pte_at` on a
    /// mapped page table); returns the flush for the old translation.
    pub fn update_pte_mapped<M: PteMapper>(
        &self,
        k: &mut Kernel,
        mapper: &mut M,
        va: u64,
        f: impl FnOnce(PteVal) -> PteVal,
    ) -> Result<TlbFlush, WalkError> {
        let pmd = match self.pmd(&k.machine.mem, va)? {
            Ok(p) if p.present() && !p.is_large() => p,
            _ => return Err(WalkError::Bug(format!("BUG: no PTE page for {va:#x}"))),
        };
        let table = self.geo.entry_table(pmd.val);
        let idx = self.geo.pte_index(va);
        // One mapping for the read and the write, as pte_offset_map … pte_unmap.
        let t = mapper.map_pte(k, table.pfn())?;
        let m = &mut k.machine;
        let r = self.read_table(m, t, idx).and_then(|old| {
            self.write_table(m, t, idx, f(old))?;
            Ok(old)
        });
        mapper.unmap_pte(k, t)?;
        let old = Entry {
            level: Level::Pte,
            table,
            idx,
            val: r?,
        };
        Ok(flush_for(old, va & !(PAGE_SIZE - 1), PAGE_SIZE))
    }

    fn read_table(&self, m: &mut Machine, t: TableRef, idx: u64) -> Result<PteVal, WalkError> {
        match t {
            TableRef::Phys(p) => Ok(self.geo.read(&m.mem, p, idx)?),
            TableRef::Mapped { va, cpu } => {
                let at = va + idx * self.geo.entry_size();
                Ok(if self.geo.pae {
                    m.read_virt_u64(cpu, at)?
                } else {
                    u64::from(m.read_virt_u32(cpu, at)?)
                })
            }
        }
    }

    fn write_table(
        &self,
        m: &mut Machine,
        t: TableRef,
        idx: u64,
        val: PteVal,
    ) -> Result<(), WalkError> {
        match t {
            TableRef::Phys(p) => Ok(self.geo.write(&mut m.mem, p, idx, val)?),
            TableRef::Mapped { va, cpu } => {
                let at = va + idx * self.geo.entry_size();
                if self.geo.pae {
                    m.write_virt_u64(cpu, at, val)?;
                } else {
                    m.write_virt_u32(cpu, at, val as u32)?;
                }
                Ok(())
            }
        }
    }

    /// Write `val` into `e` (a lowmem table) for the address `va` it translates; the token
    /// covers what the old entry mapped (a page for a PTE, the PMD span for a PMD entry).
    pub fn set(
        &self,
        mem: &mut PhysMem,
        e: Entry,
        va: u64,
        val: PteVal,
    ) -> Result<TlbFlush, BusError> {
        self.geo.write(mem, e.table, e.idx, val)?;
        let span = match e.level {
            Level::Pte => PAGE_SIZE,
            Level::Pmd => self.geo.pmd_size(),
            Level::Pud => 1 << Geometry::PUD_SHIFT,
            Level::Pgd => 1 << self.geo.pgdir_shift(),
        };
        Ok(flush_for(e, va & !(span - 1), span))
    }
}

/// The flush a rewrite of `old` needs: nothing if it was not present.
fn flush_for(old: Entry, start: u64, span: u64) -> TlbFlush {
    if old.present() {
        TlbFlush::range(start, start + span)
    } else {
        TlbFlush::none()
    }
}

/// How a PTE page is reached for reading and writing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableRef {
    /// Through the direct map: physical accesses at the table's address.
    Phys(PhysAddr),
    /// Through a temporary mapping at `va` on `cpu`: accesses go through the MMU.
    Mapped { va: VirtAddr, cpu: usize },
}

/// Maps page-table pages the kernel cannot reach through its direct map. It gets the whole
/// kernel: a mapping belongs to the current task of a CPU (its kmap_local stack).
pub trait PteMapper {
    /// `pte_offset_map`'s mapping of the PTE page `pfn`.
    fn map_pte(&mut self, k: &mut Kernel, pfn: Pfn) -> Result<TableRef, WalkError>;
    /// `pte_unmap`.
    fn unmap_pte(&mut self, k: &mut Kernel, t: TableRef) -> Result<(), WalkError>;
}

/// Page tables in low memory only (the kernel's own): no mapping needed; a highmem PTE page
/// is a BUG.
#[derive(Clone, Copy, Debug)]
pub struct DirectMap {
    pub max_low_pfn: u64,
}

impl PteMapper for DirectMap {
    fn map_pte(&mut self, _k: &mut Kernel, pfn: Pfn) -> Result<TableRef, WalkError> {
        if pfn.as_u64() >= self.max_low_pfn {
            return Err(WalkError::Bug(format!(
                "BUG: page table at pfn {:#x} is in high memory and not mapped",
                pfn.as_u64()
            )));
        }
        Ok(TableRef::Phys(pfn.phys()))
    }
    fn unmap_pte(&mut self, _k: &mut Kernel, _t: TableRef) -> Result<(), WalkError> {
        Ok(())
    }
}

/// HIGHPTE: highmem PTE pages mapped in a kmap_local slot by `cpu`'s current task (what
/// `pte_offset_map` does through kmap_atomic in 6.1); lowmem ones through the direct map.
#[derive(Clone, Copy, Debug)]
pub struct KmapLocalPte {
    pub cpu: usize,
}

impl PteMapper for KmapLocalPte {
    fn map_pte(&mut self, k: &mut Kernel, pfn: Pfn) -> Result<TableRef, WalkError> {
        if pfn.as_u64() < k.layout.max_low_pfn.as_u64() {
            return Ok(TableRef::Phys(pfn.phys()));
        }
        let va = k.kmap_local_page(self.cpu, pfn)?;
        Ok(TableRef::Mapped { va, cpu: self.cpu })
    }
    fn unmap_pte(&mut self, k: &mut Kernel, t: TableRef) -> Result<(), WalkError> {
        if let TableRef::Mapped { va, cpu } = t {
            k.kunmap_local(cpu, va)?;
        }
        Ok(())
    }
}

impl Kernel {
    /// The cursor over swapper_pg_dir.
    pub fn kernel_cursor(&self) -> Cursor {
        Cursor::new(self.geo, PhysAddr::new(self.swapper_pg_dir))
    }

    /// The mapper for kernel page tables (always low memory).
    pub fn direct_map_mapper(&self) -> DirectMap {
        DirectMap {
            max_low_pfn: self.layout.max_low_pfn.as_u64(),
        }
    }

    /// `pte_alloc_kernel(pmd, va)`: the PTE slot of `va`, installing a zeroed low-memory PTE
    /// page (GFP_PGTABLE_KERNEL) under an empty PMD entry. Without PAE the new page-directory
    /// entry would be synced to every pgd (`arch_sync_kernel_mappings`); the model has only
    /// swapper_pg_dir. Kernel PTE pages are not counted in NR_PAGETABLE and never freed.
    /// Returns the slot and whether a PTE page was allocated.
    pub fn pte_alloc_kernel(&mut self, va: u64, cpu: usize) -> Result<(Entry, bool), WalkError> {
        let cur = self.kernel_cursor();
        // A high-memory PTE page (2.4.18-SuSE's vmalloc tables) is read through a kmap.
        match cur.walk_mapped(self, &mut KmapLocalPte { cpu }, va)? {
            Walk::Pte { pte, .. } => Ok((pte, false)),
            Walk::NoPmd { pgd } if pgd.level == Level::Pud => {
                // 4-level: `pmd_alloc` under a PUD of the vmalloc area (preallocated at
                // boot), then the PTE page under the new PMD.
                self.pmd_alloc_kernel(pgd, va, cpu)?;
                self.pte_alloc_kernel(va, cpu)
            }
            Walk::NoPmd { .. } => Err(WalkError::Bug(format!(
                "BUG: no kernel PMD table for {va:#x}"
            ))),
            Walk::Large { .. } => Err(WalkError::Bug(format!(
                "BUG: pte_alloc_kernel: {va:#x} is inside a large page"
            ))),
            Walk::NoPte { pmd } => {
                // 2.4.18-SuSE takes the vmalloc area's PTE pages from high memory too.
                let in_vmalloc = self.vmap.is_vmalloc_addr(va);
                let gfp = crate::variant::kernel_pte_gfp(self.hm.design, &self.config, in_vmalloc);
                let page = self.alloc_pages(gfp, 0, cpu)?;
                // pmd_populate_kernel: the entry was empty, nothing to flush.
                cur.set(
                    &mut self.machine.mem,
                    pmd,
                    va,
                    page.pfn.phys().as_u64() | _KERNPG_TABLE,
                )?
                .flush_local(&mut self.machine, cpu)
                .map_err(|e| WalkError::Bug(format!("BUG: CPU: {e}")))?;
                let pte = Entry {
                    level: Level::Pte,
                    table: page.pfn.phys(),
                    idx: self.geo.pte_index(va),
                    val: 0,
                };
                Ok((pte, true))
            }
        }
    }
}

impl Kernel {
    /// `__pmd_alloc` for a kernel address (4-level): a zeroed PMD page (GFP_PGTABLE_KERNEL)
    /// into the empty PUD entry `pud`. Kernel PMD pages are never freed and not counted.
    fn pmd_alloc_kernel(&mut self, pud: Entry, va: u64, cpu: usize) -> Result<(), WalkError> {
        let gfp = crate::gfp::GFP_PGTABLE_KERNEL;
        let page = self.alloc_pages(gfp, 0, cpu)?;
        self.vmap.kernel_pmd_pages += 1;
        self.kernel_cursor()
            .set(
                &mut self.machine.mem,
                pud,
                va,
                page.pfn.phys().as_u64() | _KERNPG_TABLE,
            )?
            .flush_local(&mut self.machine, cpu)
            .map_err(|e| WalkError::Bug(format!("BUG: CPU: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walk_reaches_the_direct_map_on_both_formats() {
        for preset in ["debian-686", "debian-686-pae"] {
            let k = crate::boot::test_boot(128, preset);
            let cur = k.kernel_cursor();
            let va = k.config.page_offset() + 0x10_0000;
            let w = cur.walk(&k.machine.mem, va).unwrap();
            let leaf = w.leaf().expect("direct map is mapped");
            let pa = if leaf.is_large() {
                (leaf.val & k.geo.large_pfn_mask()) + (va & !k.geo.pmd_mask())
            } else {
                (leaf.val & k.geo.pfn_mask()) + (va & (PAGE_SIZE - 1))
            };
            assert_eq!(pa, 0x10_0000, "{preset}");
        }
    }
}
