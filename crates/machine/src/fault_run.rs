//! A fault run: a user's first touches of a run of pages under one directory entry, each
//! followed by its #PF's handler and the retry, on a slot session.
//!
//! A reader streaming through a mapped segment takes, page after page, the same three
//! steps: the first touch misses the TLB, walks to a none PTE and faults; the kernel maps
//! the PTE page through its kmap slot, reads the entry, maps it again and writes it (the
//! slot steps the session repeats, [`super::SlotSession::read_again`]); the retry misses,
//! walks to the new PTE and fills the TLB. Under one directory entry most of what those
//! steps test is the same for every page: the walk's directory entry, where the PTE page
//! lies in RAM, the span of large pages, the slot's remembered step. A [`FaultRun`]
//! tests them once, and [`super::SlotSession::run_faults`] then takes each page with only
//! what differs from page to page: the PTE, the page's TLB set, the slot's set apart from
//! it. Each page leaves the TLB, RAM, CR2 and the counters exactly as
//! [`crate::Cpu::translate_unmapped`], the handler's slot steps and
//! [`crate::Cpu::translate_refault`] leave them; a page where any of that does not hold
//! stops the run, before its first touch or at the step that did not apply, for the
//! caller's generic steps.
//!
//! By construction: the run borrows the session, and the handler sees only
//! [`RunSteps`], the repeats of the remembered slot step on the run's PTE page, which
//! touch nothing the run relies on (RAM of that page and the counts). A run is refused
//! once the session has forgotten the step it was made with: after anything else used
//! the CPU or RAM ([`super::SlotSession::parts`]), a step that is not that step's repeat,
//! or a user access in the slot's TLB set. What the session keeps across (the step's
//! repeats, user accesses apart from the slot) leaves what the run tested as it was: a user
//! fill there is a 4 KiB entry or a large one, which cannot cover the run's directory
//! entry, since that entry points to a table.

use super::{Again, SlotSession};
use crate::mmu::{Access, PageFault, PfError};
use crate::paging::Format;
use crate::physmem::TablePage;
use crate::{Cpu, Machine, PhysMem, VirtAddr};

const P: u64 = 1;
const PAE: u8 = Format::Pae as u8;
const TWO_LEVEL: u8 = Format::TwoLevel as u8;

/// What the pages of a fault run have in common, tested once
/// ([`SlotSession::fault_run`]).
#[derive(Clone, Copy, Debug)]
pub struct FaultRun {
    /// The pages covered, `[lo, hi)`, under one directory entry.
    lo: u64,
    hi: u64,
    /// That directory entry, and the PTE page it points to (the slot step's page).
    pde: u64,
    table: u64,
    /// PAE (8-byte entries), else 2-level.
    pae: bool,
    /// The access's fast tag and its #PF error code.
    tag: usize,
    code: PfError,
    /// The PTE page is reached through a kmap slot (a session's run), else through the
    /// kernel's direct map.
    slot: bool,
    /// The remembered step's slot page, and the index bits that set a page apart from it.
    slot_page: u64,
    apart: u64,
    /// The handler may write the PTE page (the slot's entry lets a write through).
    write: bool,
    /// The session's number when the run was made: the run holds while it is unchanged.
    gen: u64,
}

impl FaultRun {
    /// The end of the pages covered.
    pub fn end(&self) -> u64 {
        self.hi
    }
}

/// Where a run stopped, at the page it returns.
#[derive(Debug)]
pub enum RunStop<E> {
    /// Nothing done to the page: the caller takes it from its first touch.
    Untouched,
    /// The page's first touch raised this #PF, and the handler stopped with `E`.
    Handler(PageFault, E),
    /// The page's #PF was handled; the caller takes its retry.
    Retry(PageFault),
}

/// How a run ended ([`SlotSession::run_faults`]).
#[derive(Debug)]
pub struct RunEnd<E> {
    /// The run's end, or the page the stop is about.
    pub at: u64,
    /// The slot steps the handler took.
    pub steps: u64,
    /// Why it stopped before its end.
    pub stop: Option<RunStop<E>>,
}

/// The slot steps a run's handler may take: repeats of the session's remembered step, a
/// read or a write of an entry of the run's PTE page through the kmap slot (map, access,
/// unmap with its INVLPG), as [`SlotSession::read_again`] and
/// [`SlotSession::write_again`] take them.
pub struct RunSteps<'r> {
    page: TablePage<'r>,
    pae: bool,
    write: bool,
    /// Steps taken (each counted by the CPU as a miss and an INVLPG when the run ends).
    steps: u64,
}

impl RunSteps<'_> {
    /// The `size`-byte entry at offset `off` of the PTE page, unless `keep` refuses it or
    /// `size` is not the run's entry size: `None`, having changed nothing.
    #[inline(always)]
    pub fn read(&mut self, off: u64, size: u8, keep: impl FnOnce(u64) -> bool) -> Option<u64> {
        if size != self.size() {
            return None;
        }
        let v = if self.pae {
            self.page.load::<8>(off)
        } else {
            self.page.load::<4>(off)
        };
        if !keep(v) {
            return None;
        }
        self.steps += 1;
        Some(v)
    }

    /// The write of `v` as a `size`-byte entry at offset `off`: `false`, having changed
    /// nothing, where the slot's entry does not let a write through or `size` is not the
    /// run's entry size.
    #[inline(always)]
    pub fn write(&mut self, off: u64, size: u8, v: u64) -> bool {
        if !self.write || size != self.size() {
            return false;
        }
        if self.pae {
            self.page.store::<8>(off, v);
        } else {
            self.page.store::<4>(off, v);
        }
        self.steps += 1;
        true
    }

    /// The run's entry size.
    #[inline(always)]
    fn size(&self) -> u8 {
        if self.pae {
            8
        } else {
            4
        }
    }
}

impl SlotSession<'_> {
    /// A run of user accesses `access` over the pages `[lo, hi)` whose PTE page is the one
    /// the remembered step `t` maps: `None` where the run's tests do not hold (paging
    /// format, directory entry, RAM, large pages, the geometry, `t` no longer remembered).
    pub fn fault_run(&mut self, t: Again, lo: u64, hi: u64, access: Access) -> Option<FaultRun> {
        let l = self.last?;
        if t.gen != self.gen {
            return None;
        }
        let slot = Some((l.page, t.write));
        let mut run = make_run(self.cpu, self.mem, l.format, lo, hi, access, t.base, slot)?;
        run.gen = self.gen;
        Some(run)
    }

    /// The pages of `run` from `from` (page-aligned, inside the run) on: each one's first
    /// touch, `handler` for its #PF (the slot steps it takes through [`RunSteps`]), and its
    /// retry.
    #[inline(always)]
    pub fn run_faults<E>(
        &mut self,
        run: &FaultRun,
        from: u64,
        handler: impl FnMut(&mut RunSteps, PageFault) -> Result<(), E>,
    ) -> RunEnd<E> {
        if run.gen != self.gen || !run.slot {
            return untouched(from);
        }
        run_on(self.cpu, self.mem, run, from, handler)
    }
}

impl Machine {
    /// A fault run of user accesses `access` by `cpu` over the pages `[lo, hi)`, whose PTE
    /// page at `table` the kernel reaches through its direct map (a low-memory PTE page: the
    /// handler's reads and writes are the kernel's plain loads and stores, which touch no
    /// CPU state), from `lo` on as [`SlotSession::run_faults`] takes them. Stops before
    /// `lo` where the run's tests do not hold ([`SlotSession::fault_run`]) or `table` is not
    /// in the direct map.
    #[inline(always)]
    pub fn direct_fault_run<E>(
        &mut self,
        cpu: usize,
        lo: u64,
        hi: u64,
        access: Access,
        table: u64,
        handler: impl FnMut(&mut RunSteps, PageFault) -> Result<(), E>,
    ) -> RunEnd<E> {
        let (Some(c), mem) = (self.cpus.get_mut(cpu), &mut self.mem) else {
            return untouched(lo);
        };
        let format = match c.paging_format() {
            Some(Format::Pae) => PAE,
            Some(Format::TwoLevel) => TWO_LEVEL,
            _ => return untouched(lo),
        };
        if table.saturating_add(0x1000) > mem.window_end().as_u64() {
            return untouched(lo);
        }
        match make_run(c, mem, format, lo, hi, access, table, None) {
            Some(run) => run_on(c, mem, &run, lo, handler),
            None => untouched(lo),
        }
    }
}

/// A run's end before its page `at`, with nothing done.
fn untouched<E>(at: u64) -> RunEnd<E> {
    RunEnd {
        at,
        steps: 0,
        stop: Some(RunStop::Untouched),
    }
}

/// The tests of a run ([`SlotSession::fault_run`]) in paging format `format`, whose PTE
/// page must be `table`; `slot`: the remembered slot step's page and whether its entry lets
/// a write through, or `None` for a PTE page in the kernel's direct map.
#[allow(clippy::too_many_arguments)]
fn make_run(
    cpu: &Cpu,
    mem: &mut PhysMem,
    format: u8,
    lo: u64,
    hi: u64,
    access: Access,
    table: u64,
    slot: Option<(u64, bool)>,
) -> Option<FaultRun> {
    let tag = access.fast_tag()?;
    if !access.is_user() || lo >= hi || (lo | hi) & 0xfff != 0 {
        return None;
    }
    let (pde, dir, pae) = match format {
        PAE => cpu.run_dir::<PAE>(mem, lo).map(|(e, d)| (e, d, true))?,
        TWO_LEVEL => cpu
            .run_dir::<TWO_LEVEL>(mem, lo)
            .map(|(e, d)| (e, d, false))?,
        _ => return None,
    };
    let shift = if pae { 21 } else { 22 };
    let pt = if pae { pde & !0xfff } else { pde & 0xffff_f000 };
    if lo >> shift != (hi - 1) >> shift || pt != table || pt == dir {
        return None;
    }
    mem.table_page(table)?;
    let apart = cpu.run_tlb(lo, hi, slot.map(|s| s.0))?;
    let mut code = PfError::USER;
    if access.is_write() {
        code |= PfError::WRITE;
    }
    Some(FaultRun {
        lo,
        hi,
        pde,
        table,
        pae,
        tag,
        code,
        slot: slot.is_some(),
        slot_page: slot.map_or(0, |s| s.0),
        apart,
        write: slot.is_none_or(|s| s.1),
        gen: 0,
    })
}

/// [`SlotSession::run_faults`] on `cpu` and `mem`, from `from` on.
#[inline(always)]
fn run_on<E>(
    cpu: &mut Cpu,
    mem: &mut PhysMem,
    run: &FaultRun,
    from: u64,
    handler: impl FnMut(&mut RunSteps, PageFault) -> Result<(), E>,
) -> RunEnd<E> {
    if from < run.lo || from & 0xfff != 0 {
        return untouched(from);
    }
    if run.pae {
        run_in::<8, E>(cpu, mem, run, from, handler)
    } else {
        run_in::<4, E>(cpu, mem, run, from, handler)
    }
}

/// [`run_on`] with `S`-byte entries.
#[inline(always)]
fn run_in<const S: usize, E>(
    cpu: &mut Cpu,
    mem: &mut PhysMem,
    run: &FaultRun,
    from: u64,
    mut handler: impl FnMut(&mut RunSteps, PageFault) -> Result<(), E>,
) -> RunEnd<E> {
    let Some(page) = mem.table_page(run.table) else {
        return untouched(from);
    };
    let mut st = RunSteps {
        page,
        pae: run.pae,
        write: run.write,
        steps: 0,
    };
    let (mut lin, mut touched) = (from, 0);
    let mut stop = None;
    while lin < run.hi {
        let off = ((lin >> 12) * S as u64) & 0xfff;
        // The first touch: the slot's set and front entry apart, a none PTE, a full set.
        if (run.slot && (run.slot_page ^ lin) >> 12 & run.apart == 0)
            || st.page.load::<S>(off) & P != 0
            || !cpu.run_touch(lin, run.tag)
        {
            stop = Some(RunStop::Untouched);
            break;
        }
        touched += 1;
        let pf = PageFault {
            addr: VirtAddr::new(lin),
            error_code: run.code,
        };
        if let Err(e) = handler(&mut st, pf) {
            stop = Some(RunStop::Handler(pf, e));
            break;
        }
        // The retry: the same directory entry, the PTE the handler wrote.
        let pte = st.page.load::<S>(off);
        if !cpu.run_refill(run.pde, pte, lin, run.tag) {
            stop = Some(RunStop::Retry(pf));
            break;
        }
        lin += 0x1000;
    }
    let steps = st.steps;
    // The pages touched are the first `touched` from `from`: CR2 holds the last one.
    cpu.run_faults_raised(touched, from + touched.saturating_sub(1) * 0x1000);
    if run.slot {
        // Through the direct map the handler's loads and stores are no slot steps.
        cpu.run_slot_steps(steps);
    }
    RunEnd {
        at: lin,
        steps,
        stop,
    }
}
