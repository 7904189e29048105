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
use crate::VirtAddr;

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
    /// The remembered step's slot page, and the index bits that set a page apart from it.
    slot: u64,
    apart: u64,
    /// The remembered step's entry lets a write through.
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
        let tag = access.fast_tag()?;
        if t.gen != self.gen || !access.is_user() || lo >= hi || (lo | hi) & 0xfff != 0 {
            return None;
        }
        let (pde, dir, pae) = match l.format {
            PAE => self
                .cpu
                .run_dir::<PAE>(self.mem, lo)
                .map(|(e, d)| (e, d, true))?,
            TWO_LEVEL => self
                .cpu
                .run_dir::<TWO_LEVEL>(self.mem, lo)
                .map(|(e, d)| (e, d, false))?,
            _ => return None,
        };
        let shift = if pae { 21 } else { 22 };
        let table = if pae { pde & !0xfff } else { pde & 0xffff_f000 };
        if lo >> shift != (hi - 1) >> shift || table != t.base || table == dir {
            return None;
        }
        self.mem.table_page(table)?;
        let apart = self.cpu.run_tlb(lo, hi, l.page)?;
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
            slot: l.page,
            apart,
            write: t.write,
            gen: self.gen,
        })
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
        if run.gen != self.gen || from < run.lo || from & 0xfff != 0 {
            return RunEnd {
                at: from,
                steps: 0,
                stop: Some(RunStop::Untouched),
            };
        }
        if run.pae {
            self.run_in::<8, E>(run, from, handler)
        } else {
            self.run_in::<4, E>(run, from, handler)
        }
    }

    /// [`Self::run_faults`] with `S`-byte entries.
    #[inline(always)]
    fn run_in<const S: usize, E>(
        &mut self,
        run: &FaultRun,
        from: u64,
        mut handler: impl FnMut(&mut RunSteps, PageFault) -> Result<(), E>,
    ) -> RunEnd<E> {
        let cpu = &mut *self.cpu;
        let Some(page) = self.mem.table_page(run.table) else {
            return RunEnd {
                at: from,
                steps: 0,
                stop: Some(RunStop::Untouched),
            };
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
            if (run.slot ^ lin) >> 12 & run.apart == 0
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
        cpu.run_slot_steps(steps);
        RunEnd {
            at: lin,
            steps,
            stop,
        }
    }
}
