//! `mmap` / `munmap` of private anonymous memory and `brk`: the calls a program uses to
//! grow and shrink its address space besides SysV shm.
//!
//! New areas are placed top-down below `mmap_base` (the lowest mapping above
//! TASK_UNMAPPED_BASE — 1 GiB on the 3G split —, the `[vvar]` page in the static binary's
//! layout), as the 6.1 x86 default layout does, in the
//! highest gap that fits. `munmap` may cut a VMA anywhere (`__split_vma`: the piece that
//! stays gets its own vm_area_struct), zaps the PTEs of what goes, frees PTE pages no VMA
//! needs any more (`free_pgtables`) and flushes the TLB. `brk` moves the end of the heap
//! VMA. Pages arrive only when touched (the fault path's `do_anonymous_page`).
//!
//! Overcommit accounting follows the VMAs (`util.rs`): a writable private mapping is
//! VM_ACCOUNT and charged when created, brk growth is charged, and whatever munmap or a brk
//! shrink removes of a VM_ACCOUNT area is uncharged. Shared mappings live in `mman.rs`; a
//! split of one moves the tail's file offset and takes a file reference.

use super::process::task_unmapped_base;
use super::{MmError, ProcId, Vma, VmaKind};
use crate::kernel::Kernel;
use machine::PAGE_SIZE;

/// The kind of a VMA piece that now starts at `new_start` (was `old_start`): a file
/// mapping's offset moves with it (`vm_pgoff`).
fn vma_kind_from(kind: &VmaKind, old_start: u64, new_start: u64) -> VmaKind {
    let delta = (new_start - old_start) / PAGE_SIZE;
    match *kind {
        VmaKind::ShmemZero { file, pgoff } => VmaKind::ShmemZero {
            file,
            pgoff: pgoff + delta,
        },
        VmaKind::File { pgoff } => VmaKind::File {
            pgoff: pgoff + delta,
        },
        k => k,
    }
}

fn page_align(len: u64) -> u64 {
    len.div_ceil(PAGE_SIZE) * PAGE_SIZE
}

impl Kernel {
    /// `get_unmapped_area()` for `len` bytes (`arch_get_unmapped_area_topdown`): the
    /// highest gap below mmap_base that fits; failing that, as x86 does before giving up,
    /// the lowest gap from TASK_UNMAPPED_BASE up to TASK_SIZE that fits (bottom-up, the
    /// stack's guard gap kept). ENOMEM when neither has room.
    pub fn get_unmapped_area(&self, p: ProcId, len: u64) -> Result<u64, MmError> {
        let mm = self.mm.procs[p.0].mm.as_ref().ok_or(MmError::NoProc)?;
        let task_size = self.task_size();
        let low = task_unmapped_base(task_size);
        // Where the top-down search starts looking: the first mapping of the mmap area.
        let base = mm
            .vmas
            .iter()
            .filter(|v| v.start >= low && !v.stack)
            .map(|v| v.start)
            .min()
            .unwrap_or(task_size);
        unmapped_area_topdown(&mm.vmas, len, PAGE_SIZE, base)
            .or_else(|| unmapped_area(&mm.vmas, len, low, task_size))
            .ok_or(MmError::Oom)
    }

    /// `mmap(NULL, len, PROT_READ|PROT_WRITE?, MAP_PRIVATE|MAP_ANONYMOUS)`.
    pub fn mmap_anon(
        &mut self,
        cpu: usize,
        p: ProcId,
        len: u64,
        write: bool,
    ) -> Result<u64, MmError> {
        let len = page_align(len);
        if len == 0 || len > self.task_size() {
            return Err(MmError::Inval);
        }
        let start = self.get_unmapped_area(p, len)?;
        // mmap_region(): a private writable mapping is VM_ACCOUNT, charged up front.
        if write {
            self.security_vm_enough_memory(cpu, len / PAGE_SIZE)?;
        }
        if let Err(e) =
            self.insert_anon_vma(cpu, p, start, start + len, write, String::new(), false)
        {
            if write {
                self.vm_unacct_memory(len / PAGE_SIZE);
            }
            return Err(e);
        }
        Ok(start)
    }

    #[allow(clippy::too_many_arguments)]
    fn insert_anon_vma(
        &mut self,
        cpu: usize,
        p: ProcId,
        start: u64,
        end: u64,
        write: bool,
        name: String,
        heap: bool,
    ) -> Result<(), MmError> {
        let v = Vma {
            write,
            heap,
            account: write,
            ..Vma::new(start, end, VmaKind::Anon, name)
        };
        self.add_vma(cpu, p, v)
    }

    /// `munmap(addr, len)`: private mappings may be cut anywhere; a SysV segment only as a
    /// whole (shmdt). Returns `Inval` for an unaligned address, as the kernel does.
    pub fn munmap(&mut self, cpu: usize, p: ProcId, addr: u64, len: u64) -> Result<(), MmError> {
        if !addr.is_multiple_of(PAGE_SIZE) || len == 0 {
            return Err(MmError::Inval);
        }
        let end = addr + page_align(len);
        let mm = self.mm.procs[p.0].mm.as_ref().ok_or(MmError::NoProc)?;
        let hit: Vec<(u64, u64, bool)> = mm
            .vmas
            .iter()
            .filter(|v| v.start < end && v.end > addr)
            .map(|v| (v.start, v.end, matches!(v.kind, VmaKind::Shm { .. })))
            .collect();
        for (s, e, shm) in hit {
            if shm {
                if s < addr || e > end {
                    return Err(MmError::Inval);
                }
                self.shmdt(cpu, p, s)?;
                continue;
            }
            self.unmap_part(cpu, p, s, addr.max(s), end.min(e))?;
        }
        self.flush_user_tlb(cpu);
        Ok(())
    }

    /// Remove [lo, hi) from the VMA starting at `vstart`: zap, split off what stays on either
    /// side, free the page tables nothing covers.
    fn unmap_part(
        &mut self,
        cpu: usize,
        p: ProcId,
        vstart: u64,
        lo: u64,
        hi: u64,
    ) -> Result<(), MmError> {
        // __split_vma()'s mas_preallocate(): a hole in the middle makes two VMAs of one,
        // and the tree's nodes for that come first (nothing changed if they fail).
        let bounds = self.vma_bounds(p)?;
        if let Some(&(s, e)) = bounds.iter().find(|b| b.0 == vstart) {
            if lo > s && hi < e {
                let mut after: Vec<(u64, u64)> =
                    bounds.iter().copied().filter(|b| b.0 != s).collect();
                after.extend([(s, lo), (hi, e)]);
                after.sort_unstable();
                self.mt_preallocate(cpu, p, &after)?;
            }
        }
        self.zap_range(cpu, p, lo, hi)?;
        let mm = self.mm.procs[p.0].mm.as_mut().ok_or(MmError::NoProc)?;
        let i = mm
            .vmas
            .iter()
            .position(|v| v.start == vstart)
            .ok_or(MmError::Inval)?;
        let old = mm.vmas[i].clone();
        // do_vmi_munmap(): what goes of a VM_ACCOUNT area is uncharged.
        let gone = (hi - lo) / PAGE_SIZE;
        if lo > old.start && hi < old.end {
            // __split_vma: the tail becomes a VMA of its own (a new vm_area_struct, and one
            // more reference to the file of a shared mapping).
            mm.vmas[i].end = lo;
            let mut tail = old.clone();
            tail.start = hi;
            tail.kind = vma_kind_from(&old.kind, old.start, hi);
            tail.obj = None;
            tail.anon_objs = Vec::new();
            if let VmaKind::ShmemZero { file, .. } = old.kind {
                self.shmem_zero_get(file);
            }
            self.add_vma(cpu, p, tail)?;
        } else if lo > old.start {
            mm.vmas[i].end = lo;
        } else if hi < old.end {
            mm.vmas[i].start = hi;
            mm.vmas[i].kind = vma_kind_from(&old.kind, old.start, hi);
        } else {
            let v = mm.vmas.remove(i);
            if let VmaKind::ShmemZero { file, .. } = v.kind {
                self.shmem_zero_put(cpu, file);
            }
            let mut objs = v.anon_objs;
            if let (Some(o), Some(id)) = (v.obj, self.slab.find_cache("vm_area_struct")) {
                objs.push((id, o));
            }
            self.free_objs(cpu, objs);
        }
        if old.account {
            self.vm_unacct_memory(gone);
        }
        self.mt_sync(cpu, p);
        self.free_pgtables(cpu, p, lo, hi);
        Ok(())
    }

    /// flush_tlb_range() of the process's own mappings: a CR3 reload on this CPU.
    fn flush_user_tlb(&mut self, cpu: usize) {
        let cr3 = self.machine.cpus[cpu].regs().cr3;
        let _ = self.machine.write_cr3(cpu, cr3);
    }

    /// `brk(new)`: move the end of the heap; returns the break in force afterwards (the old
    /// one when the request cannot be met, as the syscall does).
    pub fn brk(&mut self, cpu: usize, p: ProcId, new: u64) -> Result<u64, MmError> {
        let mm = self.mm.procs[p.0].mm.as_ref().ok_or(MmError::NoProc)?;
        let i = mm.vmas.iter().position(|v| v.heap).ok_or(MmError::Inval)?;
        let (start, old) = (mm.vmas[i].start, mm.vmas[i].end);
        let new_end = page_align(new.max(start + PAGE_SIZE));
        let next = mm.vmas.get(i + 1).map_or(self.task_size(), |v| v.start);
        if new_end > next {
            return Ok(old);
        }
        if new_end < old {
            self.vm_unacct_memory((old - new_end) / PAGE_SIZE);
            self.zap_range(cpu, p, new_end, old)?;
            if let Some(m) = self.mm.procs[p.0].mm.as_mut() {
                m.vmas[i].end = new_end;
            }
            self.free_pgtables(cpu, p, new_end, old);
            self.flush_user_tlb(cpu);
        } else if new_end > old {
            // do_brk_flags(): the growth is charged.
            if self
                .security_vm_enough_memory(cpu, (new_end - old) / PAGE_SIZE)
                .is_err()
            {
                return Ok(old);
            }
            if let Some(m) = self.mm.procs[p.0].mm.as_mut() {
                m.vmas[i].end = new_end;
                m.update_hiwater();
            }
        }
        // The heap may now touch the next VMA (one gap less in the tree) or leave it.
        self.mt_sync(cpu, p);
        Ok(new_end)
    }
}

/// `stack_guard_gap`: 256 pages kept free below a VM_GROWSDOWN VMA.
const STACK_GUARD_GAP: u64 = 256 * PAGE_SIZE;

/// `vm_start_gap()`: where the room below `v` ends (a stack keeps its guard gap).
fn vm_start_gap(v: &Vma) -> u64 {
    if v.stack {
        v.start.saturating_sub(STACK_GUARD_GAP)
    } else {
        v.start
    }
}

/// `vm_unmapped_area()` top-down: the highest `len` bytes of a gap between the (sorted)
/// `vmas` that lies in `[low, high)`.
fn unmapped_area_topdown(vmas: &[Vma], len: u64, low: u64, high: u64) -> Option<u64> {
    let mut gap_end = high;
    for v in vmas.iter().rev() {
        if v.end <= gap_end && gap_end.saturating_sub(v.end.max(low)) >= len {
            return Some(gap_end - len);
        }
        gap_end = gap_end.min(vm_start_gap(v));
        if gap_end <= low {
            return None;
        }
    }
    gap_end
        .checked_sub(len)
        .filter(|&a| a >= low && gap_end > low)
}

/// `vm_unmapped_area()` bottom-up: the lowest gap of `len` bytes between the (sorted)
/// `vmas` that lies in `[low, high)`.
fn unmapped_area(vmas: &[Vma], len: u64, low: u64, high: u64) -> Option<u64> {
    let mut gap_start = low;
    for v in vmas {
        let gap_end = vm_start_gap(v).min(high);
        if gap_end >= gap_start && gap_end - gap_start >= len {
            return Some(gap_start);
        }
        gap_start = gap_start.max(v.end);
    }
    (high.saturating_sub(gap_start) >= len).then_some(gap_start)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn vma(start: u64, end: u64) -> Vma {
        Vma::new(start, end, VmaKind::Anon, String::new())
    }

    /// A small static binary's layout: text and heap low, `[vvar]` under the stack.
    fn layout() -> Vec<Vma> {
        vec![
            vma(0x0804_8000, 0x0811_5000),
            vma(0x0960_2000, 0x0962_4000),
            vma(0xb7f3_d000, 0xb7f4_3000),
            Vma {
                stack: true,
                ..vma(0xbfad_c000, 0xbfaf_d000)
            },
        ]
    }

    #[test]
    fn top_down_takes_the_top_of_the_highest_gap_that_fits() {
        let v = layout();
        let base = 0xb7f3_d000;
        assert_eq!(
            unmapped_area_topdown(&v, 512 * MIB, PAGE_SIZE, base),
            Some(base - 512 * MIB)
        );
        // Exactly the gap between the heap and [vvar]; a page more must go lower, and the
        // only room lower (below the binary) is 128 MiB.
        let gap = base - 0x0962_4000;
        assert_eq!(
            unmapped_area_topdown(&v, gap, PAGE_SIZE, base),
            Some(0x0962_4000)
        );
        assert_eq!(
            unmapped_area_topdown(&v, gap + PAGE_SIZE, PAGE_SIZE, base),
            None
        );
        assert_eq!(
            unmapped_area_topdown(&v, 100 * MIB, PAGE_SIZE, 0x0962_4000 + 50 * MIB),
            Some(0x0804_8000 - 100 * MIB)
        );
    }

    #[test]
    fn bottom_up_takes_the_lowest_gap_and_keeps_the_stack_guard_gap() {
        let v = layout();
        let (low, high) = (0x4000_0000, 0xc000_0000);
        assert_eq!(unmapped_area(&v, MIB, low, high), Some(low));
        // Above [vdso] only the room below the stack's guard gap is left.
        let room = 0xbfad_c000 - STACK_GUARD_GAP - 0xb7f4_3000;
        let big = 0xb7f3_d000 - low + PAGE_SIZE;
        assert!(big > room);
        assert_eq!(unmapped_area(&v, big, low, high), None);
        assert_eq!(unmapped_area(&v, room + PAGE_SIZE, 0xb7f4_3000, high), None);
        assert_eq!(
            unmapped_area(&v, room, 0xb7f4_3000, high),
            Some(0xb7f4_3000)
        );
    }
}
