//! The page walk: linear address to physical address, as the MMU does it.
//!
//! One walker serves every format by following the format's LEVELS table from CR3 down
//! to a leaf, reading each entry from simulated RAM. At every level it checks P, then the
//! reserved bits, then folds R/W, U/S and NX into the effective rights (Intel combines them
//! across levels: a page is writable only if every level says so). Access rights are
//! checked once the leaf is reached, and a failure comes back as a [`PageFault`] carrying
//! the linear address (CR2) and the architectural error code, never as a panic.
//!
//! Accessed and Dirty bits are written back to RAM at once, like the hardware's locked
//! read-modify-write: A on each directory entry the walk passes through (even when a lower
//! level then faults, as QEMU — the reference machine — does), A on the leaf and D on the
//! leaf for a write only once the access is known to be allowed. PAE's PDPTEs are not read
//! here at all: they come from the PDPTE registers loaded when CR3 was written.

use crate::addr::{PhysAddr, VirtAddr};
use crate::paging::reserved::{reserved_bits, ReservedCtx};
use crate::paging::{Format, Leaf, PageSize, PageTableEntry, PteFlags};
use crate::physmem::{BusError, PhysMem};
use bitflags::bitflags;

/// What the access does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AccessKind {
    Read,
    Write,
    /// Instruction fetch.
    Execute,
}

/// Who does it: CPL 0 (supervisor) or CPL 3 (user).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Privilege {
    Supervisor,
    User,
}

/// One memory access to translate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Access {
    pub kind: AccessKind,
    pub privilege: Privilege,
}

impl Access {
    pub const KERNEL_READ: Access = Access::new(AccessKind::Read, Privilege::Supervisor);
    pub const KERNEL_WRITE: Access = Access::new(AccessKind::Write, Privilege::Supervisor);
    pub const KERNEL_EXEC: Access = Access::new(AccessKind::Execute, Privilege::Supervisor);
    pub const USER_READ: Access = Access::new(AccessKind::Read, Privilege::User);
    pub const USER_WRITE: Access = Access::new(AccessKind::Write, Privilege::User);
    pub const USER_EXEC: Access = Access::new(AccessKind::Execute, Privilege::User);

    pub const fn new(kind: AccessKind, privilege: Privilege) -> Self {
        Access { kind, privilege }
    }
    pub const fn is_write(self) -> bool {
        matches!(self.kind, AccessKind::Write)
    }
    pub const fn is_fetch(self) -> bool {
        matches!(self.kind, AccessKind::Execute)
    }
    pub const fn is_user(self) -> bool {
        matches!(self.privilege, Privilege::User)
    }
}

bitflags! {
    /// The page-fault error code pushed by the CPU (Linux: `enum x86_pf_error_code`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct PfError: u32 {
        /// P: 0 = the page was not present, 1 = protection (or reserved-bit) violation.
        const PROT = 1 << 0;
        /// W/R: the access was a write.
        const WRITE = 1 << 1;
        /// U/S: the access came from user mode.
        const USER = 1 << 2;
        /// RSVD: a reserved bit was set in a paging-structure entry.
        const RSVD = 1 << 3;
        /// I/D: the access was an instruction fetch (reported only with PAE paging + NXE).
        const INSTR = 1 << 4;
    }
}

/// A page fault (#PF): the faulting linear address (what CR2 receives) and the error code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[error("page fault at {addr:#x}, error code {:#x}", error_code.bits())]
pub struct PageFault {
    pub addr: VirtAddr,
    pub error_code: PfError,
}

/// Why an access through the MMU did not complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    #[error(transparent)]
    PageFault(PageFault),
    /// The walk or the access itself hit physical addresses with no RAM behind them.
    #[error(transparent)]
    Bus(BusError),
    /// Not a linear address in the current mode: above 4 GiB with 32-bit paging (or none),
    /// non-canonical with 4-level paging (#GP on real hardware).
    #[error("{0:#x} is not a valid linear address in the current paging mode")]
    NonCanonical(VirtAddr),
    /// The machine has no CPU with this index.
    #[error("no CPU {0}")]
    NoSuchCpu(usize),
}

impl From<BusError> for AccessError {
    fn from(e: BusError) -> Self {
        AccessError::Bus(e)
    }
}

impl From<PageFault> for AccessError {
    fn from(f: PageFault) -> Self {
        AccessError::PageFault(f)
    }
}

impl AccessError {
    /// The page fault, if this is one.
    pub fn page_fault(&self) -> Option<PageFault> {
        match self {
            AccessError::PageFault(f) => Some(*f),
            _ => None,
        }
    }
}

/// Effective access rights of a translation, combined over every level of the walk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Perms {
    /// R/W was set at every level.
    pub writable: bool,
    /// U/S was set at every level.
    pub user: bool,
    /// NX was set at some level (meaningful only while NX is active).
    pub nx: bool,
}

/// Packed rights and leaf bits, one word with each bit where the page-table entry has it:
/// what the walk hands the TLB (a few ANDs and ORs of the entries) and what the TLB keeps
/// per entry (see [`Walked`]).
pub(crate) mod bits {
    use crate::paging::PteFlags;
    /// R/W at every level.
    pub const W: u64 = PteFlags::WRITABLE.bits();
    /// U/S at every level.
    pub const U: u64 = PteFlags::USER.bits();
    /// NX at some level.
    pub const NX: u64 = PteFlags::NX.bits();
    /// G on the leaf with CR4.PGE.
    pub const G: u64 = PteFlags::GLOBAL.bits();
    /// D on the leaf (after the walk's own update).
    pub const D: u64 = PteFlags::DIRTY.bits();
}

/// [`Perms::allows`] on packed bits: the same rules, no bools to build.
#[inline(always)]
pub(crate) const fn allows_bits(b: u64, access: Access, cr0_wp: bool, nx_active: bool) -> bool {
    if access.is_user() && b & bits::U == 0 {
        return false;
    }
    match access.kind {
        AccessKind::Read => true,
        AccessKind::Write => b & bits::W != 0 || (!access.is_user() && !cr0_wp),
        AccessKind::Execute => !(nx_active && b & bits::NX != 0),
    }
}

impl Perms {
    /// The rights of packed bits.
    pub(crate) const fn from_bits(b: u64) -> Perms {
        Perms {
            writable: b & bits::W != 0,
            user: b & bits::U != 0,
            nx: b & bits::NX != 0,
        }
    }

    /// The packed bits of these rights.
    pub(crate) const fn bits(self) -> u64 {
        let w = if self.writable { bits::W } else { 0 };
        let u = if self.user { bits::U } else { 0 };
        let nx = if self.nx { bits::NX } else { 0 };
        w | u | nx
    }

    /// What a walk starts from before any entry has restricted it.
    pub const ALL: Perms = Perms {
        writable: true,
        user: true,
        nx: false,
    };

    /// Whether `access` is allowed (Intel rules without SMEP/SMAP/PKEYs): user accesses need
    /// U/S; user writes need R/W; supervisor writes need R/W only with CR0.WP; fetches need
    /// NX clear when NX is active. Supervisor reads of user pages are always allowed.
    pub const fn allows(self, access: Access, cr0_wp: bool, nx_active: bool) -> bool {
        if access.is_user() && !self.user {
            return false;
        }
        match access.kind {
            AccessKind::Read => true,
            AccessKind::Write => self.writable || (!access.is_user() && !cr0_wp),
            AccessKind::Execute => !(nx_active && self.nx),
        }
    }
}

/// A completed translation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Translation {
    /// The physical address the linear address maps to.
    pub phys: PhysAddr,
    /// First byte of the (possibly large) page.
    pub page_base: PhysAddr,
    pub size: PageSize,
    pub perms: Perms,
    /// The leaf has G set and CR4.PGE is on: the translation survives CR3 writes.
    pub global: bool,
    /// The leaf's D bit is set (after this walk's own update).
    pub dirty: bool,
}

/// A completed walk in the form the TLB stores: the page base, its size and the packed
/// rights and leaf bits ([`bits`]). The CPU's miss path fills the TLB straight from this;
/// [`Translation`] is built from it only for callers that ask for one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Walked {
    /// The physical address of the linear address walked.
    pub phys: u64,
    /// First byte of the (possibly large) page.
    pub base: u64,
    pub size: PageSize,
    pub bits: u64,
}

impl Walked {
    #[inline(always)]
    fn translation(self) -> Translation {
        Translation {
            phys: PhysAddr::new(self.phys),
            page_base: PhysAddr::new(self.base),
            size: self.size,
            perms: Perms::from_bits(self.bits),
            global: self.bits & bits::G != 0,
            dirty: self.bits & bits::D != 0,
        }
    }
}

/// A walk failed; the error is in the slot the walk was given. Only [`bus`] and
/// `PagingMode::fail` make one (the field is private to this module), and both fill the
/// slot first.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Failed(());

/// Where a walk leaves its error: written only on failure (`None` until then), so the
/// walk's helpers return a small `Result` and the hot path stores nothing.
pub(crate) type ErrSlot = Option<AccessError>;

impl Failed {
    /// Leave `e` in `slot` and return the token that says so.
    #[inline(always)]
    pub(crate) fn put(slot: &mut ErrSlot, e: AccessError) -> Failed {
        *slot = Some(e);
        Failed(())
    }

    /// The error the failing walk left in `slot`, the slot it was given.
    #[inline(always)]
    pub(crate) fn error(self, slot: &ErrSlot) -> AccessError {
        match *slot {
            Some(e) => e,
            // A `Failed` exists only after `bus` or `PagingMode::fail` wrote the slot of
            // the walk that returned it (see above).
            None => unreachable!("a failed walk left no error"),
        }
    }
}

/// Record a bus error in `err`.
#[cold]
#[inline(never)]
fn bus(err: &mut ErrSlot, e: BusError) -> Failed {
    *err = Some(AccessError::Bus(e));
    Failed(())
}

/// Run a walk with an error slot of its own.
#[inline(always)]
fn with_slot(
    walk: impl FnOnce(&mut ErrSlot) -> Result<Walked, Failed>,
) -> Result<Walked, AccessError> {
    let mut err = None;
    walk(&mut err).map_err(|failed| failed.error(&err))
}

/// The CPU state a walk depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalkParams {
    pub format: Format,
    /// CR3 (with PAE, only bits 31:5 locate the PDPT, which the walk does not read).
    pub cr3: u64,
    /// PDPTE registers (PAE only).
    pub pdptes: [u64; 4],
    /// CR4.PSE: honour PS in 2-level PDEs.
    pub cr4_pse: bool,
    /// CR4.PGE: honour G.
    pub cr4_pge: bool,
    /// CR0.WP: supervisor writes respect R/W.
    pub cr0_wp: bool,
    /// MAXPHYADDR, EFER.NXE and the CPU features that decide reserved bits.
    pub reserved: ReservedCtx,
}

impl WalkParams {
    /// NX is enforced: PAE or 4-level paging with EFER.NXE.
    pub const fn nx_active(&self) -> bool {
        self.format.has_nx_bit() && self.reserved.nxe
    }

    /// Physical address of the top-level table.
    pub const fn root(&self) -> PhysAddr {
        match self.format {
            Format::TwoLevel => PhysAddr::new(self.cr3 & 0xffff_f000),
            Format::Pae => PhysAddr::new(self.cr3 & 0xffff_ffe0),
            Format::FourLevel => PhysAddr::new(self.cr3 & 0x000f_ffff_ffff_f000),
        }
    }

    /// The page fault `access` at `va` raises, given the cause bits.
    pub fn fault(&self, va: VirtAddr, access: Access, cause: PfError) -> PageFault {
        let mut code = cause;
        if access.is_write() {
            code |= PfError::WRITE;
        }
        if access.is_user() {
            code |= PfError::USER;
        }
        if access.is_fetch() && self.nx_active() {
            code |= PfError::INSTR;
        }
        PageFault {
            addr: va,
            error_code: code,
        }
    }
}

/// Check that `va` is a linear address `format` can translate and return it as an integer.
pub fn linear(format: Option<Format>, va: VirtAddr) -> Result<u64, AccessError> {
    let raw = va.as_u64();
    let ok = match format {
        None | Some(Format::TwoLevel) | Some(Format::Pae) => raw <= u64::from(u32::MAX),
        // canonical: bits 63:47 all equal
        Some(Format::FourLevel) => {
            let top = (raw as i64) >> 47;
            top == 0 || top == -1
        }
    };
    if ok {
        Ok(raw)
    } else {
        Err(AccessError::NonCanonical(va))
    }
}

/// What a walk needs, computed once when CR0, CR3, CR4 or EFER change rather than at every
/// walk: the reserved-bit masks of every level, where PAE's page directories are, and
/// whether NX, WP, PSE and PGE are in force.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PagingMode {
    /// The registers the masks were computed from.
    pub params: WalkParams,
    /// 2-level and 4-level: the top-level table.
    root: u64,
    /// PAE: the page directory each PDPTE register points to, [`NO_TABLE`] if not present.
    pae_dirs: [u64; 4],
    /// Reserved bits of a PDPTE.
    pdpte_rsvd: u64,
    /// Reserved bits of a directory entry used as a table pointer (and of a PTE), per depth.
    rsvd_table: [u64; 4],
    /// Reserved bits of a large-page entry, per depth.
    rsvd_large: [u64; 4],
    /// PAE: the PDE bits whose value, XOR [`P`] | [`A`], must be zero for the walk to go
    /// straight on to the PTE (present, accessed, no PS, no reserved bit): one test for
    /// the usual directory entry, the individual ones only when it fails.
    pae_pde_fast: u64,
    /// [`Self::walk_quick`]: the directory-entry bits whose value, XOR [`P`] | [`A`], must
    /// be zero (PAE: as `pae_pde_fast`; 2-level: P, A, PS) ...
    quick_dir: u64,
    /// ... and the PTE bits (P, A and the reserved bits the full walk checks).
    quick_pte: u64,
    /// 4-level: as `quick_dir`, for the PML4E, the PDPTE and the PDE (P, A, PS and each
    /// level's reserved bits).
    quick_4dir: [u64; 3],
    /// 2-level: PS in a PDE maps a 4 MiB page (CR4.PSE).
    pse: bool,
    /// The leaf bits a TLB entry keeps: D, and G if CR4.PGE honours it.
    leaf_bits: u64,
    nx_active: bool,
    wp: bool,
}

/// [`PagingMode::pack_quick`] with the mode's [`PagingMode::leaf_bits`] given: a number
/// to carry instead of the mode.
#[inline(always)]
pub(crate) fn pack_leaf(leaf_bits: u64, pde: u64, pte: u64) -> (u64, u64) {
    // 2-level entries have no NX bit, so the OR adds nothing there.
    let rights = (pde & pte & W_U) | ((pde | pte) & bits::NX);
    (pte & ADDR_64, rights | (pte & leaf_bits))
}

/// A PAE directory slot whose PDPTE register is not present: page-aligned and beyond any
/// RAM, so that the quick walk's read of an entry there (at most 0xff8 further, without
/// wrapping) fails its one range test without a test of its own.
const NO_TABLE: u64 = !0xfff;
/// A PAE directory slot whose PDPTE register has reserved bits set (the CR3 load refuses
/// those, but [`WalkParams`] can be built by hand); beyond any RAM as well.
const RSVD_TABLE: u64 = NO_TABLE - 0x1000;
const P: u64 = PteFlags::PRESENT.bits();
const W_U: u64 = PteFlags::WRITABLE.bits() | PteFlags::USER.bits();
/// Address bits 51:12 of an 8-byte entry.
const ADDR_64: u64 = 0x000f_ffff_ffff_f000;

impl PagingMode {
    /// Precompute the walk for the registers in `p`.
    pub fn new(p: &WalkParams) -> Self {
        let levels = p.format.levels();
        let mut rsvd_table = [0; 4];
        let mut rsvd_large = [0; 4];
        for l in levels {
            rsvd_table[l.depth as usize] = reserved_bits(l, false, &p.reserved);
            rsvd_large[l.depth as usize] = reserved_bits(l, true, &p.reserved);
        }
        let pdpte_rsvd = reserved_bits(Format::Pae.top_level(), false, &p.reserved);
        PagingMode {
            params: *p,
            root: p.root().as_u64(),
            pae_dirs: Self::pae_dirs(&p.pdptes, pdpte_rsvd),
            pdpte_rsvd,
            pae_pde_fast: rsvd_table[1] | P | A | PS,
            quick_dir: match p.format {
                Format::TwoLevel => P | A | PS,
                _ => rsvd_table[1] | P | A | PS,
            },
            quick_pte: match p.format {
                Format::TwoLevel => P | A,
                Format::Pae => rsvd_table[2] | P | A,
                Format::FourLevel => rsvd_table[3] | P | A,
            },
            quick_4dir: [0, 1, 2].map(|d| rsvd_table[d] | P | A | PS),
            rsvd_table,
            rsvd_large,
            pse: p.cr4_pse || !p.format.large_pages_need_cr4_pse(),
            leaf_bits: if p.cr4_pge { G | D } else { D },
            nx_active: p.nx_active(),
            wp: p.cr0_wp,
        }
    }

    fn pae_dirs(pdptes: &[u64; 4], rsvd: u64) -> [u64; 4] {
        pdptes.map(|e| {
            if e & P == 0 {
                NO_TABLE
            } else if e & rsvd != 0 {
                RSVD_TABLE
            } else {
                PageTableEntry::from_raw(e).table_addr(Format::Pae).as_u64()
            }
        })
    }

    /// Follow a CR3 write (and, with PAE, the PDPTE registers it loaded): nothing else in
    /// the mode depends on CR3.
    pub fn set_cr3(&mut self, cr3: u64, pdptes: [u64; 4]) {
        self.params.cr3 = cr3;
        self.params.pdptes = pdptes;
        self.root = self.params.root().as_u64();
        self.pae_dirs = Self::pae_dirs(&pdptes, self.pdpte_rsvd);
    }

    pub const fn format(&self) -> Format {
        self.params.format
    }

    /// CR0.WP is set: supervisor writes honour R/W.
    pub const fn wp(&self) -> bool {
        self.wp
    }

    /// NX is enforced (PAE or 4-level paging with EFER.NXE).
    pub const fn nx_active(&self) -> bool {
        self.nx_active
    }

    #[cold]
    #[inline(never)]
    fn fault(&self, lin: u64, access: Access, cause: PfError) -> AccessError {
        AccessError::PageFault(self.params.fault(VirtAddr::new(lin), access, cause))
    }

    /// Record the page fault `access` at `lin` raises in `err`. The walk's helpers return
    /// `Result<_, Failed>` and leave the error in the caller's slot, so that their results
    /// stay small and merge in registers.
    /// [`Self::fail`] for a not-present entry.
    #[cold]
    #[inline(never)]
    fn fail_not_present(&self, err: &mut ErrSlot, lin: u64, access: Access) -> Failed {
        self.fail(err, lin, access, PfError::empty())
    }

    /// [`Self::fail`] for a reserved bit: a call site of its own, so the walk's fault
    /// paths do not merge into one that needs the cause computed in advance.
    #[cold]
    #[inline(never)]
    fn fail_rsvd(&self, err: &mut ErrSlot, lin: u64, access: Access) -> Failed {
        self.fail(err, lin, access, PfError::PROT | PfError::RSVD)
    }

    #[cold]
    #[inline(never)]
    fn fail(&self, err: &mut ErrSlot, lin: u64, access: Access, cause: PfError) -> Failed {
        *err = Some(self.fault(lin, access, cause));
        Failed(())
    }

    /// The leaf: check the combined rights, set A (and D for a write), pack the result.
    /// `rights` is the AND of every level's entry (R/W, U/S), `nx` the OR (bit 63).
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn leaf<M: WalkMem>(
        &self,
        err: &mut ErrSlot,
        mem: &mut M,
        lin: u64,
        access: Access,
        at: (u64, u8),
        raw: u64,
        (rights, nx): (u64, u64),
        (size, base): (PageSize, u64),
    ) -> Result<Walked, Failed> {
        let rights = (rights & W_U) | (nx & bits::NX);
        if !allows_bits(rights, access, self.wp, self.nx_active) {
            return Err(self.fail(err, lin, access, PfError::PROT));
        }
        // A (and D for a write) already set: nothing to write back, the usual case.
        let mut leaf = raw;
        if raw & A == 0 || (access.is_write() && raw & D == 0) {
            leaf = raw | if access.is_write() { A | D } else { A };
            mem.update_entry(at.0, at.1, leaf)
                .map_err(|e| bus(err, e))?;
        }
        Ok(Walked {
            phys: base + (lin & (size.bytes() - 1)),
            base,
            size,
            bits: rights | (leaf & self.leaf_bits),
        })
    }

    /// Read a present, reserved-bit-free entry, or fault.
    #[inline(always)]
    fn entry<M: WalkMem>(
        &self,
        err: &mut ErrSlot,
        mem: &M,
        lin: u64,
        access: Access,
        at: u64,
        size: u8,
    ) -> Result<u64, Failed> {
        let raw = mem.read_entry(at, size).map_err(|e| bus(err, e))?;
        if raw & P == 0 {
            return Err(self.fail_not_present(err, lin, access));
        }
        Ok(raw)
    }

    #[inline(always)]
    fn check_rsvd(
        &self,
        err: &mut ErrSlot,
        raw: u64,
        mask: u64,
        lin: u64,
        access: Access,
    ) -> Result<(), Failed> {
        if raw & mask != 0 {
            return Err(self.fail_rsvd(err, lin, access));
        }
        Ok(())
    }

    /// Set A on a directory entry the walk passes through.
    #[inline(always)]
    fn touch_dir<M: WalkMem>(mem: &mut M, at: u64, size: u8, raw: u64) -> Result<(), BusError> {
        if raw & A == 0 {
            mem.update_entry(at, size, raw | A)?;
        }
        Ok(())
    }

    /// PAE: PDPTE register, then the PDE and the PTE in RAM.
    #[inline(always)]
    fn walk_pae<M: WalkMem>(
        &self,
        err: &mut ErrSlot,
        mem: &mut M,
        lin: u64,
        a: Access,
    ) -> Result<Walked, Failed> {
        let dir = self.pae_dirs[(lin >> 30) as usize & 3];
        if dir >= RSVD_TABLE {
            let cause = if dir == NO_TABLE {
                PfError::empty()
            } else {
                PfError::PROT | PfError::RSVD
            };
            return Err(self.fail(err, lin, a, cause));
        }
        let pde_at = dir + ((lin >> 18) & 0xff8);
        let pde = mem.read_entry(pde_at, 8).map_err(|e| bus(err, e))?;
        if (pde ^ (P | A)) & self.pae_pde_fast != 0 {
            return self.walk_pae_pde(err, mem, lin, a, pde_at, pde);
        }
        self.walk_pae_pte(err, mem, lin, a, pde)
    }

    /// [`Self::walk_pae`] for a PDE that is not a present, accessed, reserved-bit-free
    /// table pointer: each test in the architectural order.
    #[inline(never)]
    fn walk_pae_pde<M: WalkMem>(
        &self,
        err: &mut ErrSlot,
        mem: &mut M,
        lin: u64,
        a: Access,
        pde_at: u64,
        pde: u64,
    ) -> Result<Walked, Failed> {
        if pde & P == 0 {
            return Err(self.fail_not_present(err, lin, a));
        }
        if pde & PS != 0 {
            self.check_rsvd(err, pde, self.rsvd_large[1], lin, a)?;
            let base = pde & ADDR_64 & !(PageSize::Size2M.bytes() - 1);
            return self.leaf(
                err,
                mem,
                lin,
                a,
                (pde_at, 8),
                pde,
                (pde, pde),
                (PageSize::Size2M, base),
            );
        }
        self.check_rsvd(err, pde, self.rsvd_table[1], lin, a)?;
        Self::touch_dir(mem, pde_at, 8, pde).map_err(|e| bus(err, e))?;
        self.walk_pae_pte(err, mem, lin, a, pde)
    }

    /// [`Self::walk_pae`] from a PDE pointing to a page table: the PTE.
    #[inline(always)]
    fn walk_pae_pte<M: WalkMem>(
        &self,
        err: &mut ErrSlot,
        mem: &mut M,
        lin: u64,
        a: Access,
        pde: u64,
    ) -> Result<Walked, Failed> {
        let pte_at = (pde & ADDR_64) + ((lin >> 9) & 0xff8);
        let pte = self.entry(err, mem, lin, a, pte_at, 8)?;
        self.check_rsvd(err, pte, self.rsvd_table[2], lin, a)?;
        let rights = (pde & pte & W_U, pde | pte);
        self.leaf(
            err,
            mem,
            lin,
            a,
            (pte_at, 8),
            pte,
            rights,
            (PageSize::Size4K, pte & ADDR_64),
        )
    }

    /// 2-level: the PDE and the PTE, 4 bytes each.
    #[inline(always)]
    fn walk_2level<M: WalkMem>(
        &self,
        err: &mut ErrSlot,
        mem: &mut M,
        lin: u64,
        a: Access,
    ) -> Result<Walked, Failed> {
        let pde_at = self.root + ((lin >> 20) & 0xffc);
        let pde = self.entry(err, mem, lin, a, pde_at, 4)?;
        if pde & PS != 0 && self.pse {
            self.check_rsvd(err, pde, self.rsvd_large[0], lin, a)?;
            let pgd = Format::TwoLevel.top_level();
            let base = PageTableEntry::from_raw(pde).large_addr(pgd).as_u64();
            return self.leaf(
                err,
                mem,
                lin,
                a,
                (pde_at, 4),
                pde,
                (pde, 0),
                (PageSize::Size4M, base),
            );
        }
        Self::touch_dir(mem, pde_at, 4, pde).map_err(|e| bus(err, e))?;
        let pte_at = (pde & 0xffff_f000) + ((lin >> 10) & 0xffc);
        let pte = self.entry(err, mem, lin, a, pte_at, 4)?;
        let rights = (pde & pte & W_U, 0);
        self.leaf(
            err,
            mem,
            lin,
            a,
            (pte_at, 4),
            pte,
            rights,
            (PageSize::Size4K, pte & 0xffff_f000),
        )
    }

    /// 4-level (x86-64, for comparison): the format's LEVELS table, top down.
    fn walk_4level<M: WalkMem>(
        &self,
        err: &mut ErrSlot,
        mem: &mut M,
        lin: u64,
        a: Access,
    ) -> Result<Walked, Failed> {
        let mut table = self.root;
        let (mut rights, mut nx) = (W_U, 0);
        for level in Format::FourLevel.levels() {
            let at = table + level.entry_offset(lin);
            let raw = self.entry(err, mem, lin, a, at, 8)?;
            let d = level.depth as usize;
            let large = matches!(level.leaf, Leaf::WithPs) && raw & PS != 0;
            let mask = if large {
                self.rsvd_large[d]
            } else {
                self.rsvd_table[d]
            };
            self.check_rsvd(err, raw, mask, lin, a)?;
            rights &= raw;
            nx |= raw;
            if large || level.is_pte_level() {
                let size = level
                    .large_page()
                    .filter(|_| large)
                    .unwrap_or(PageSize::Size4K);
                let base = raw & ADDR_64 & !(size.bytes() - 1);
                return self.leaf(err, mem, lin, a, (at, 8), raw, (rights, nx), (size, base));
            }
            Self::touch_dir(mem, at, 8, raw).map_err(|e| bus(err, e))?;
            table = raw & ADDR_64;
        }
        // Every format's last level is a PTE level, so the loop always returns.
        Err(self.fail(err, lin, a, PfError::empty()))
    }

    #[inline(always)]
    fn walk_in<M: WalkMem>(
        &self,
        err: &mut ErrSlot,
        mem: &mut M,
        lin: u64,
        a: Access,
    ) -> Result<Walked, Failed> {
        match self.params.format {
            Format::Pae => self.walk_pae(err, mem, lin, a),
            Format::TwoLevel => self.walk_2level(err, mem, lin, a),
            Format::FourLevel => self.walk_4level(err, mem, lin, a),
        }
    }

    /// Walk the page tables for `access` at the linear address `lin` (already checked to
    /// be valid in this mode), setting Accessed/Dirty bits in RAM.
    #[inline]
    pub fn walk_linear(
        &self,
        mem: &mut PhysMem,
        lin: u64,
        access: Access,
    ) -> Result<Translation, AccessError> {
        with_slot(|err| self.walk_in(err, mem, lin, access)).map(Walked::translation)
    }

    /// [`Self::walk_linear`] in the TLB's form for a format known at compile time
    /// (`F` is a [`Format`] as u8): the CPU's miss path, one copy per format.
    #[inline(always)]
    pub(crate) fn walk_packed_as<const F: u8>(
        &self,
        err: &mut ErrSlot,
        mem: &mut PhysMem,
        lin: u64,
        access: Access,
    ) -> Result<Walked, Failed> {
        if F == Format::Pae as u8 {
            self.walk_pae(err, mem, lin, access)
        } else if F == Format::TwoLevel as u8 {
            self.walk_2level(err, mem, lin, access)
        } else {
            self.walk_4level(err, mem, lin, access)
        }
    }

    /// 4-level: the PML4E, the PDPTE and the PDE of canonical `lin`, each read by `read`
    /// and each a present, accessed, reserved-bit-free table pointer (no PS), as the full
    /// walk passes them without writing anything; then the PTE as `read` gives it (not
    /// tested). Returns the directory levels' rights in one word, W and U ANDed and NX
    /// ORed (what [`pack_leaf`] takes as the directory entry), and the PTE; `None` for
    /// anything else, which the full walk handles with its faults and updates.
    #[inline(always)]
    fn walk_4level_dirs(&self, lin: u64, read: impl Fn(u64) -> Option<u64>) -> Option<(u64, u64)> {
        self.walk_4level_with(lin, &read, |pa, _| read(pa))
    }

    /// [`Self::walk_4level_dirs`] with the PTE read by `leaf` (its address and size).
    #[inline(always)]
    fn walk_4level_with(
        &self,
        lin: u64,
        read: impl Fn(u64) -> Option<u64>,
        leaf: impl FnOnce(u64, u8) -> Option<u64>,
    ) -> Option<(u64, u64)> {
        // A non-canonical address: the full path refuses it.
        if ((lin as i64) << 16 >> 16) as u64 != lin {
            return None;
        }
        let [q0, q1, q2] = self.quick_4dir;
        let e0 = read(self.root + ((lin >> 36) & 0xff8))?;
        if (e0 ^ (P | A)) & q0 != 0 {
            return None;
        }
        // Bits 62:52 are ignored (not reserved) in 4-level entries: the address is masked.
        let e1 = read((e0 & ADDR_64) + ((lin >> 27) & 0xff8))?;
        if (e1 ^ (P | A)) & q1 != 0 {
            return None;
        }
        let e2 = read((e1 & ADDR_64) + ((lin >> 18) & 0xff8))?;
        if (e2 ^ (P | A)) & q2 != 0 {
            return None;
        }
        let pte = leaf((e2 & ADDR_64) + ((lin >> 9) & 0xff8), 8)?;
        let dir = (e0 & e1 & e2 & W_U) | ((e0 | e1 | e2) & bits::NX);
        Some((dir, pte))
    }

    /// The usual TLB miss, without side effects: a 4 KiB leaf reached through present,
    /// accessed, reserved-bit-free entries in RAM, leaf accessed. Returns the directory
    /// entry (4-level: the directory levels' rights in one word, see
    /// [`Self::walk_4level_dirs`]) and the PTE, for [`Self::pack_quick`], or `None` for
    /// anything else (large page, not present, A to set, reserved bit, a table beyond the
    /// last bank, a linear address the format does not translate), which the full walk
    /// handles with its faults and updates. The caller still checks the rights (and D for
    /// a write) before using the result.
    #[inline(always)]
    pub(crate) fn walk_quick<const F: u8>(&self, mem: &PhysMem, lin: u64) -> Option<(u64, u64)> {
        self.walk_quick_with::<F>(mem, lin, |pa, size| mem.read_walk(pa, size))
    }

    /// [`Self::walk_quick`] of a kmap slot's address `lin` while its PTE, which the
    /// kernel keeps at `pte_pa`, holds `pte`: the directory entries from RAM, the PTE by
    /// value where the walk reads it from `pte_pa`, and `None` where the walk would read
    /// it anywhere else (the tables do not map the slot through that PTE).
    #[inline(always)]
    pub(crate) fn walk_slot<const F: u8>(
        &self,
        mem: &PhysMem,
        lin: u64,
        pte_pa: u64,
        pte: u64,
    ) -> Option<(u64, u64)> {
        self.walk_quick_with::<F>(mem, lin, |pa, _| (pa == pte_pa).then_some(pte))
    }

    /// The page of the directory [`Self::walk_slot`] reads `lin`'s entry from (the PAE
    /// directory of its PDPTE, the 2-level root): where a store could change that walk.
    #[inline(always)]
    pub(crate) fn slot_dir_page<const F: u8>(&self, lin: u64) -> u64 {
        let dir = if F == Format::Pae as u8 {
            self.pae_dirs[((lin >> 30) & 3) as usize]
        } else {
            self.root
        };
        dir & !0xfff
    }

    /// [`Self::walk_quick`] with the PTE read by `leaf` (its address and size).
    #[inline(always)]
    fn walk_quick_with<const F: u8>(
        &self,
        mem: &PhysMem,
        lin: u64,
        leaf: impl FnOnce(u64, u8) -> Option<u64>,
    ) -> Option<(u64, u64)> {
        let (pde, pte) = if F == Format::Pae as u8 {
            // A linear address above 4 GiB has no PDPTE slot: the full path refuses it.
            // A directory slot without a usable PDPTE is beyond any RAM (`NO_TABLE`,
            // `RSVD_TABLE`): the read refuses it.
            let dir = *self.pae_dirs.get((lin >> 30) as usize)?;
            let pde = mem.read_walk(dir + ((lin >> 18) & 0xff8), 8)?;
            if (pde ^ (P | A)) & self.quick_dir != 0 {
                return None;
            }
            // Bits 62:52 are reserved (tested just above), so only XD can lie above the
            // address: with it set, the table address is beyond any RAM and the read
            // refuses it (the full walk handles such a rare entry). So a sign-extended
            // 32-bit mask does, rather than a 64-bit constant in a register.
            let pte = leaf((pde & !0xfff) + ((lin >> 9) & 0xff8), 8)?;
            (pde, pte)
        } else if F == Format::TwoLevel as u8 {
            if lin >> 32 != 0 {
                return None;
            }
            let pde = mem.read_walk(self.root + ((lin >> 20) & 0xffc), 4)?;
            if (pde ^ (P | A)) & self.quick_dir != 0 {
                return None;
            }
            let pte = leaf((pde & 0xffff_f000) + ((lin >> 10) & 0xffc), 4)?;
            (pde, pte)
        } else {
            self.walk_4level_with(lin, |pa| mem.read_walk(pa, 8), leaf)?
        };
        if (pte ^ (P | A)) & self.quick_pte != 0 {
            return None;
        }
        Some((pde, pte))
    }

    /// The page base and the packed bits ([`bits`]) of what [`Self::walk_quick`] found: a
    /// separate step, so that the caller can look for the TLB slot with only the two
    /// entries live.
    #[inline(always)]
    pub(crate) fn pack_quick(&self, pde: u64, pte: u64) -> (u64, u64) {
        pack_leaf(self.leaf_bits, pde, pte)
    }

    /// The leaf bits a TLB entry keeps in this mode (D, and G if CR4.PGE honours it).
    #[inline(always)]
    pub(crate) const fn leaf_bits(&self) -> u64 {
        self.leaf_bits
    }

    /// Whether the full walk of `lin` would stop at a not-present PTE having written
    /// nothing: the directory entries as [`Self::walk_quick`] takes them (present,
    /// accessed, no large page, no reserved bit), all in the longest RAM runs (a hole
    /// must give the full walk's bus error, not a not-present PTE), then a PTE
    /// without P, whose other bits the walk never looks at. Without side effects; `false`
    /// for anything else, which the full walk then handles.
    #[inline(always)]
    pub(crate) fn walk_absent<const F: u8>(&self, mem: &PhysMem, lin: u64) -> bool {
        let pte = if F == Format::FourLevel as u8 {
            self.walk_4level_dirs(lin, |pa| mem.read_run(pa, 8))
                .map(|(_, pte)| pte)
        } else {
            self.run_dir::<F>(mem, lin).and_then(|pde| {
                mem.read_run(Self::pte_addr::<F>(pde, lin), Self::entry_size::<F>())
            })
        };
        matches!(pte, Some(pte) if pte & P == 0)
    }

    /// The directory entry the walk of `lin` reads, in format `F` (PAE or 2-level), when it
    /// is the quick walk's kind (in the longest RAM runs, present, accessed, no large page,
    /// no reserved bit), else `None`: what [`Self::walk_absent`] and a fault run
    /// ([`crate::slot::FaultRun`]) read before the PTE.
    #[inline(always)]
    pub(crate) fn run_dir<const F: u8>(&self, mem: &PhysMem, lin: u64) -> Option<u64> {
        let pde = if F == Format::Pae as u8 {
            let dir = *self.pae_dirs.get((lin >> 30) as usize)?;
            if dir >= RSVD_TABLE {
                return None;
            }
            mem.read_run(dir + ((lin >> 18) & 0xff8), 8)?
        } else if F == Format::TwoLevel as u8 {
            if lin >> 32 != 0 {
                return None;
            }
            mem.read_run(self.root + ((lin >> 20) & 0xffc), 4)?
        } else {
            return None;
        };
        ((pde ^ (P | A)) & self.quick_dir == 0).then_some(pde)
    }

    /// The address of `lin`'s PTE in the table the directory entry `pde` (format `F`, PAE
    /// or 2-level) points to. With PAE only XD can lie above the address (the directory
    /// tests refuse reserved bits): with it set, the address is beyond any RAM, and every
    /// read refuses it.
    #[inline(always)]
    pub(crate) const fn pte_addr<const F: u8>(pde: u64, lin: u64) -> u64 {
        if F == Format::Pae as u8 {
            (pde & !0xfff) + ((lin >> 9) & 0xff8)
        } else {
            (pde & 0xffff_f000) + ((lin >> 10) & 0xffc)
        }
    }

    /// The entry size of format `F`: 8 bytes, 4 for 2-level paging.
    #[inline(always)]
    pub(crate) const fn entry_size<const F: u8>() -> u8 {
        if F == Format::TwoLevel as u8 {
            4
        } else {
            8
        }
    }

    /// Whether the quick walk takes the PTE `pte` as it is (present, accessed, no reserved
    /// bit; see [`Self::walk_quick`]).
    #[inline(always)]
    pub(crate) const fn quick_leaf(&self, pte: u64) -> bool {
        (pte ^ (P | A)) & self.quick_pte == 0
    }

    /// Walk the page tables for `access` at `va`, setting Accessed/Dirty bits in RAM.
    pub fn walk(
        &self,
        mem: &mut PhysMem,
        va: VirtAddr,
        access: Access,
    ) -> Result<Translation, AccessError> {
        let lin = linear(Some(self.params.format), va)?;
        with_slot(|err| self.walk_in(err, mem, lin, access)).map(Walked::translation)
    }

    /// Walk without changing anything (a debugger's view: no A/D updates).
    pub fn peek(
        &self,
        mem: &PhysMem,
        va: VirtAddr,
        access: Access,
    ) -> Result<Translation, AccessError> {
        let lin = linear(Some(self.params.format), va)?;
        with_slot(|err| self.walk_in(err, &mut NoUpdates(mem), lin, access))
            .map(Walked::translation)
    }
}

/// Memory as the walker sees it: entries are read, and A/D updates written back at once
/// (hardware does a locked read-modify-write per entry, so a later level of the same walk
/// sees an earlier level's update when tables alias).
trait WalkMem {
    fn read_entry(&self, pa: u64, size: u8) -> Result<u64, BusError>;
    fn update_entry(&mut self, pa: u64, size: u8, raw: u64) -> Result<(), BusError>;
}

impl WalkMem for PhysMem {
    #[inline(always)]
    fn read_entry(&self, pa: u64, size: u8) -> Result<u64, BusError> {
        // Entries are naturally aligned (tables are, and indices scale by the size).
        if size == 4 {
            self.read_table_u32(pa).map(u64::from)
        } else {
            self.read_table_u64(pa)
        }
    }
    #[inline(always)]
    fn update_entry(&mut self, pa: u64, size: u8, raw: u64) -> Result<(), BusError> {
        self.hw_write_entry(pa, size, raw)
    }
}

/// Read-only view for [`peek`]: updates are dropped.
struct NoUpdates<'a>(&'a PhysMem);

impl WalkMem for NoUpdates<'_> {
    fn read_entry(&self, pa: u64, size: u8) -> Result<u64, BusError> {
        self.0.read_entry(pa, size)
    }
    fn update_entry(&mut self, _: u64, _: u8, _: u64) -> Result<(), BusError> {
        Ok(())
    }
}

const A: u64 = PteFlags::ACCESSED.bits();
const D: u64 = PteFlags::DIRTY.bits();
const G: u64 = PteFlags::GLOBAL.bits();
const PS: u64 = PteFlags::PSE.bits();

/// Walk the page tables for `access` at `va`, setting Accessed/Dirty bits in RAM. Computes
/// the [`PagingMode`] first: a CPU keeps one and calls [`PagingMode::walk`] instead.
pub fn walk(
    p: &WalkParams,
    mem: &mut PhysMem,
    va: VirtAddr,
    access: Access,
) -> Result<Translation, AccessError> {
    PagingMode::new(p).walk(mem, va, access)
}

/// Walk the page tables without changing anything (a debugger's view: no A/D updates).
pub fn peek(
    p: &WalkParams,
    mem: &PhysMem,
    va: VirtAddr,
    access: Access,
) -> Result<Translation, AccessError> {
    PagingMode::new(p).peek(mem, va, access)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(format: Format) -> WalkParams {
        WalkParams {
            format,
            cr3: 0x1000,
            pdptes: [0; 4],
            cr4_pse: true,
            cr4_pge: true,
            cr0_wp: true,
            reserved: ReservedCtx {
                phys_bits: 36,
                nxe: true,
                pse36: true,
                pat: true,
                page1gb: true,
            },
        }
    }

    fn ram() -> PhysMem {
        PhysMem::new(&[(PhysAddr::new(0), 0x10_0000)]).expect("mmap")
    }

    #[test]
    fn rights_combine_like_intel() {
        let ro_kernel = Perms {
            writable: false,
            user: false,
            nx: true,
        };
        assert!(ro_kernel.allows(Access::KERNEL_READ, true, true));
        assert!(!ro_kernel.allows(Access::KERNEL_WRITE, true, true));
        assert!(ro_kernel.allows(Access::KERNEL_WRITE, false, true), "WP=0");
        assert!(!ro_kernel.allows(Access::USER_READ, false, true));
        assert!(!ro_kernel.allows(Access::KERNEL_EXEC, true, true));
        assert!(
            ro_kernel.allows(Access::KERNEL_EXEC, true, false),
            "NX inactive"
        );
        let ro_user = Perms {
            user: true,
            ..ro_kernel
        };
        assert!(
            !ro_user.allows(Access::USER_WRITE, false, true),
            "WP is for CPL0"
        );
    }

    #[test]
    fn error_codes() {
        let p = params(Format::Pae);
        let va = VirtAddr::new(0x1234);
        let f = p.fault(va, Access::USER_EXEC, PfError::PROT);
        assert_eq!(f.error_code.bits(), 0b10101);
        let p2 = params(Format::TwoLevel);
        let f = p2.fault(va, Access::USER_EXEC, PfError::PROT);
        assert_eq!(f.error_code.bits(), 0b00101, "no I/D without PAE");
        let f = p.fault(va, Access::KERNEL_WRITE, PfError::empty());
        assert_eq!(f.error_code.bits(), 0b00010);
    }

    #[test]
    fn two_level_4k_walk_sets_a_and_d() {
        let mut mem = ram();
        let p = params(Format::TwoLevel);
        // pgd[0x300] -> PT at 0x2000; pte[0x5] -> frame 0x7000
        mem.write_u32(PhysAddr::new(0x1000 + 0x300 * 4), 0x2000 | 0x7)
            .unwrap();
        mem.write_u32(PhysAddr::new(0x2000 + 5 * 4), 0x7000 | 0x3)
            .unwrap();
        let va = VirtAddr::new(0xc000_5abc);
        let t = walk(&p, &mut mem, va, Access::KERNEL_READ).unwrap();
        assert_eq!(t.phys, PhysAddr::new(0x7abc));
        assert_eq!(t.size, PageSize::Size4K);
        assert!(!t.dirty);
        assert_eq!(mem.read_u32(PhysAddr::new(0x1c00)).unwrap(), 0x2027);
        assert_eq!(mem.read_u32(PhysAddr::new(0x2014)).unwrap(), 0x7023);
        walk(&p, &mut mem, va, Access::KERNEL_WRITE).unwrap();
        assert_eq!(mem.read_u32(PhysAddr::new(0x2014)).unwrap(), 0x7063);
        // peek changes nothing
        mem.write_u32(PhysAddr::new(0x2014), 0x7003).unwrap();
        peek(&p, &mem, va, Access::KERNEL_WRITE).unwrap();
        assert_eq!(mem.read_u32(PhysAddr::new(0x2014)).unwrap(), 0x7003);
    }

    #[test]
    fn pse_needs_cr4_pse() {
        let mut mem = ram();
        let mut p = params(Format::TwoLevel);
        // a 4 MiB PDE whose low bits also look like a page-table address (0x0)
        mem.write_u32(PhysAddr::new(0x1000), 0x0040_0083).unwrap();
        let t = walk(&p, &mut mem, VirtAddr::new(0x12_3456), Access::KERNEL_READ).unwrap();
        assert_eq!(t.phys, PhysAddr::new(0x52_3456));
        assert_eq!(t.size, PageSize::Size4M);
        p.cr4_pse = false;
        // now it points to a page table at 0x400000, beyond RAM
        let e = walk(&p, &mut mem, VirtAddr::new(0x12_3456), Access::KERNEL_READ);
        assert!(matches!(e, Err(AccessError::Bus(_))), "{e:?}");
    }

    #[test]
    fn pae_reserved_bits_fault_with_rsvd() {
        let mut mem = ram();
        let mut p = params(Format::Pae);
        p.pdptes[0] = 0x2000 | 1;
        mem.write_u64(PhysAddr::new(0x2000), 0x3000 | 0x3).unwrap();
        mem.write_u64(PhysAddr::new(0x3000), (1 << 63) | 0x4000 | 0x3)
            .unwrap();
        let va = VirtAddr::new(0x10);
        assert!(walk(&p, &mut mem, va, Access::KERNEL_READ).is_ok());
        let f = walk(&p, &mut mem, va, Access::KERNEL_EXEC).unwrap_err();
        assert_eq!(
            f.page_fault().unwrap().error_code,
            PfError::PROT | PfError::INSTR
        );
        p.reserved.nxe = false;
        let f = walk(&p, &mut mem, va, Access::KERNEL_READ).unwrap_err();
        assert_eq!(
            f.page_fault().unwrap().error_code,
            PfError::PROT | PfError::RSVD
        );
    }

    #[test]
    fn linear_address_checks() {
        assert!(linear(Some(Format::Pae), VirtAddr::new(0xffff_ffff)).is_ok());
        assert!(linear(Some(Format::Pae), VirtAddr::new(0x1_0000_0000)).is_err());
        assert!(linear(
            Some(Format::FourLevel),
            VirtAddr::new(0xffff_8000_0000_0000)
        )
        .is_ok());
        assert!(linear(
            Some(Format::FourLevel),
            VirtAddr::new(0x0000_8000_0000_0000)
        )
        .is_err());
    }
}
