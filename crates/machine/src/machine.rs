//! The whole machine: RAM plus CPUs, and virtual-memory accessors that go through a CPU.
//!
//! Kernel code in the simulation touches memory the way real kernel code does: by virtual
//! address, on some CPU, through that CPU's TLB and page walk. A stale TLB entry therefore
//! really sends a write to the old frame, and a missing mapping really faults. The
//! accessors split at 4 KiB boundaries and allocate nothing. Scalar writes translate every
//! page they touch before storing anything, like one `mov`; bulk writes go page by page,
//! like `rep movsb`, so a fault leaves the pages before it written.

use crate::addr::{PhysAddr, VirtAddr, PAGE_SIZE};
use crate::cpu::{Cpu, CpuError, CpuFeatures, Cr0, Cr4, Efer};
use crate::mmu::{Access, AccessError, AccessKind, Privilege};
use crate::physmem::PhysMem;

/// RAM and CPUs.
#[derive(Debug)]
pub struct Machine {
    pub mem: PhysMem,
    pub cpus: Vec<Cpu>,
}

impl Machine {
    /// A machine with `ncpus` CPUs of the reference model (QEMU `qemu32,+pse36,+nx`).
    pub fn new(mem: PhysMem, ncpus: usize) -> Self {
        Machine::with_features(mem, ncpus, CpuFeatures::default())
    }

    /// A machine with `ncpus` CPUs of the given model.
    pub fn with_features(mem: PhysMem, ncpus: usize, features: CpuFeatures) -> Self {
        Machine {
            mem,
            cpus: (0..ncpus).map(|id| Cpu::new(id, features)).collect(),
        }
    }

    fn split(&mut self, cpu: usize) -> Result<(&mut Cpu, &mut PhysMem), AccessError> {
        let c = self.cpus.get_mut(cpu).ok_or(AccessError::NoSuchCpu(cpu))?;
        Ok((c, &mut self.mem))
    }

    fn cpu_and_mem(&mut self, cpu: usize) -> Result<(&mut Cpu, &PhysMem), CpuError> {
        let c = self.cpus.get_mut(cpu).ok_or(CpuError::NoSuchCpu(cpu))?;
        Ok((c, &self.mem))
    }

    /// Translate `va` on `cpu` for `access` (TLB, then walk). Inlined, as the CPU's hit
    /// path is, so that a caller's constant access folds into it.
    #[inline]
    pub fn translate(
        &mut self,
        cpu: usize,
        va: VirtAddr,
        access: Access,
    ) -> Result<PhysAddr, AccessError> {
        let (c, mem) = self.split(cpu)?;
        c.translate(mem, va, access)
    }

    /// Copy `buf.len()` bytes from virtual memory (supervisor access).
    pub fn read_virt(
        &mut self,
        cpu: usize,
        va: VirtAddr,
        buf: &mut [u8],
    ) -> Result<(), AccessError> {
        self.read_virt_as(cpu, va, buf, Privilege::Supervisor)
    }

    /// Copy `buf` into virtual memory (supervisor access).
    pub fn write_virt(&mut self, cpu: usize, va: VirtAddr, buf: &[u8]) -> Result<(), AccessError> {
        self.write_virt_as(cpu, va, buf, Privilege::Supervisor)
    }

    /// Copy from virtual memory with the given privilege.
    pub fn read_virt_as(
        &mut self,
        cpu: usize,
        va: VirtAddr,
        buf: &mut [u8],
        privilege: Privilege,
    ) -> Result<(), AccessError> {
        let (c, mem) = self.split(cpu)?;
        let access = Access::new(AccessKind::Read, privilege);
        let mut done = 0usize;
        while done < buf.len() {
            let at = va + done as u64;
            let chunk = chunk_len(at, buf.len() - done);
            let pa = c.translate(mem, at, access)?;
            mem.hw_read(pa, &mut buf[done..done + chunk])?;
            done += chunk;
        }
        Ok(())
    }

    /// Copy into virtual memory with the given privilege, page by page.
    pub fn write_virt_as(
        &mut self,
        cpu: usize,
        va: VirtAddr,
        buf: &[u8],
        privilege: Privilege,
    ) -> Result<(), AccessError> {
        let (c, mem) = self.split(cpu)?;
        let access = Access::new(AccessKind::Write, privilege);
        let mut done = 0usize;
        while done < buf.len() {
            let at = va + done as u64;
            let chunk = chunk_len(at, buf.len() - done);
            let pa = c.translate(mem, at, access)?;
            mem.hw_write(pa, &buf[done..done + chunk])?;
            done += chunk;
        }
        Ok(())
    }

    /// Set `len` bytes of virtual memory to `byte` (supervisor access), page by page.
    pub fn fill_virt(
        &mut self,
        cpu: usize,
        va: VirtAddr,
        len: u64,
        byte: u8,
    ) -> Result<(), AccessError> {
        let (c, mem) = self.split(cpu)?;
        let mut done = 0u64;
        while done < len {
            let at = va + done;
            let chunk = chunk_len(at, (len - done).min(PAGE_SIZE) as usize) as u64;
            let pa = c.translate(mem, at, Access::KERNEL_WRITE)?;
            mem.hw_fill(pa, chunk, byte)?;
            done += chunk;
        }
        Ok(())
    }

    /// One scalar store: every page it touches is translated before any byte is written.
    fn write_scalar(&mut self, cpu: usize, va: VirtAddr, bytes: &[u8]) -> Result<(), AccessError> {
        let (c, mem) = self.split(cpu)?;
        let first = chunk_len(va, bytes.len());
        let pa = c.translate(mem, va, Access::KERNEL_WRITE)?;
        if first == bytes.len() {
            return Ok(mem.hw_write(pa, bytes)?);
        }
        let pa2 = c.translate(mem, va + first as u64, Access::KERNEL_WRITE)?;
        mem.hw_write(pa, &bytes[..first])?;
        mem.hw_write(pa2, &bytes[first..])?;
        Ok(())
    }

    pub fn read_virt_u32(&mut self, cpu: usize, va: VirtAddr) -> Result<u32, AccessError> {
        let mut b = [0u8; 4];
        self.read_virt(cpu, va, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    pub fn read_virt_u64(&mut self, cpu: usize, va: VirtAddr) -> Result<u64, AccessError> {
        let mut b = [0u8; 8];
        self.read_virt(cpu, va, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    pub fn write_virt_u32(&mut self, cpu: usize, va: VirtAddr, v: u32) -> Result<(), AccessError> {
        self.write_scalar(cpu, va, &v.to_le_bytes())
    }

    pub fn write_virt_u64(&mut self, cpu: usize, va: VirtAddr, v: u64) -> Result<(), AccessError> {
        self.write_scalar(cpu, va, &v.to_le_bytes())
    }

    /// Load the naturally aligned `size`-byte (4 or 8) entry at `va` on `cpu`: one
    /// translation (TLB, walk on a miss) and one host load, as one `mov` (an aligned entry
    /// cannot cross a page).
    #[inline(always)]
    pub fn read_virt_entry(
        &mut self,
        cpu: usize,
        va: VirtAddr,
        size: u8,
    ) -> Result<u64, AccessError> {
        let (c, mem) = self.split(cpu)?;
        c.read_virt_entry(mem, va, size)
    }

    /// Store the naturally aligned `size`-byte entry at `va` on `cpu`, as
    /// [`Self::read_virt_entry`].
    #[inline(always)]
    pub fn write_virt_entry(
        &mut self,
        cpu: usize,
        va: VirtAddr,
        size: u8,
        v: u64,
    ) -> Result<(), AccessError> {
        let (c, mem) = self.split(cpu)?;
        c.write_virt_entry(mem, va, size, v)
    }

    /// Run `f` over the bytes from `va` to the end of its page, read through `cpu`'s
    /// translation of `va` (one TLB lookup or walk for the page, as a string instruction
    /// over one page would).
    pub fn with_virt_page<R>(
        &mut self,
        cpu: usize,
        va: VirtAddr,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<R, AccessError> {
        let (c, mem) = self.split(cpu)?;
        let pa = c.translate(mem, va, Access::KERNEL_READ)?;
        Ok(f(mem.hw_page_rest(pa)?))
    }

    /// Run `f` over the bytes from `va` to the end of its page, writable through `cpu`'s
    /// translation of `va` for a kernel write (the D bit set as the first store sets it).
    pub fn with_virt_page_mut<R>(
        &mut self,
        cpu: usize,
        va: VirtAddr,
        f: impl FnOnce(&mut [u8]) -> R,
    ) -> Result<R, AccessError> {
        let (c, mem) = self.split(cpu)?;
        let pa = c.translate(mem, va, Access::KERNEL_WRITE)?;
        Ok(f(mem.hw_page_rest_mut(pa)?))
    }

    /// MOV to CR0 on `cpu`.
    pub fn write_cr0(&mut self, cpu: usize, v: Cr0) -> Result<(), CpuError> {
        let (c, mem) = self.cpu_and_mem(cpu)?;
        c.write_cr0(mem, v)
    }

    /// MOV to CR3 on `cpu`.
    pub fn write_cr3(&mut self, cpu: usize, v: u64) -> Result<(), CpuError> {
        let (c, mem) = self.cpu_and_mem(cpu)?;
        c.write_cr3(mem, v)
    }

    /// MOV to CR4 on `cpu`.
    pub fn write_cr4(&mut self, cpu: usize, v: Cr4) -> Result<(), CpuError> {
        let (c, mem) = self.cpu_and_mem(cpu)?;
        c.write_cr4(mem, v)
    }

    /// WRMSR EFER on `cpu`.
    pub fn write_efer(&mut self, cpu: usize, v: Efer) -> Result<(), CpuError> {
        let (c, _) = self.cpu_and_mem(cpu)?;
        c.write_efer(v)
    }

    /// INVLPG on `cpu`.
    #[inline]
    pub fn invlpg(&mut self, cpu: usize, va: VirtAddr) -> Result<(), CpuError> {
        let (c, _) = self.cpu_and_mem(cpu)?;
        c.invlpg(va);
        Ok(())
    }

    /// [`Cpu::invlpg_noted`] on `cpu` (INVLPG of a kmap slot).
    #[inline]
    pub fn invlpg_noted(&mut self, cpu: usize, va: VirtAddr) -> Result<(), CpuError> {
        let (c, _) = self.cpu_and_mem(cpu)?;
        c.invlpg_noted(va);
        Ok(())
    }

    /// Global TLB flush on `cpu`.
    pub fn flush_all(&mut self, cpu: usize) -> Result<(), CpuError> {
        let (c, mem) = self.cpu_and_mem(cpu)?;
        c.flush_all(mem)
    }
}

/// Bytes from `va` to the end of its 4 KiB page, at most `left`.
fn chunk_len(va: VirtAddr, left: usize) -> usize {
    let to_end = (PAGE_SIZE - va.page_offset()) as usize;
    to_end.min(left)
}
