//! Tracepoints: the events `highmem trace` prints in ftrace's text format.
//!
//! The kernel's tracepoints are static keys — a no-op until someone enables them. The
//! model's are one relaxed load of a global count of live trace sessions and a branch
//! ([`emit`] is `#[inline(always)]`, the recording out of line): a run nobody traces pays
//! that and nothing else. A session records into its own thread's buffer, so parallel runs
//! (`highmem sweep --jobs`, the test harness) never see each other's events.
//!
//! The highmem tracepoints sit on the kmap hot paths, where even that global load costs:
//! the static lives in this crate, so a binary inlining the paths reaches it through the
//! GOT (two loads). Sessions are started and finished through the kernel
//! ([`crate::Kernel::trace_start`], [`crate::Kernel::trace_finish`]), which keeps its own
//! copy of "a session is live" next to the highmem state; those four events test that
//! byte of the kernel ([`emit_if`]) instead.
//!
//! Events carry what 6.1's `TP_printk` prints (`kmem:mm_page_alloc`, `kmem:mm_page_free`,
//! `kmem:kmalloc`, `kmem:kfree`, `exceptions:page_fault_user`, `tlb:tlb_flush`) plus four
//! the kernel has no tracepoint for, named in the same style (`highmem:kmap`,
//! `highmem:kunmap`, `highmem:kmap_local`, `highmem:kunmap_local`). The task an event ran
//! in is the CPU's current task, followed through `context_switch` ([`switch`]).

use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Live sessions, on any thread: the fast-path gate.
static SESSIONS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static RECORDER: RefCell<Option<Recorder>> = const { RefCell::new(None) };
}

/// `tlb_flush` reasons (`enum tlb_flush_reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlushReason {
    OnTaskSwitch = 0,
    RemoteShootdown = 1,
    LocalShootdown = 2,
    LocalMmShootdown = 3,
}

impl FlushReason {
    /// `TLB_FLUSH_REASON`'s strings.
    pub fn name(self) -> &'static str {
        match self {
            FlushReason::OnTaskSwitch => "flush on task switch",
            FlushReason::RemoteShootdown => "remote shootdown",
            FlushReason::LocalShootdown => "local shootdown",
            FlushReason::LocalMmShootdown => "local mm shootdown",
        }
    }
}

/// `TLB_FLUSH_ALL` as the event's `pages` field.
pub const TLB_FLUSH_ALL: i64 = -1;

/// One event and its fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    MmPageAlloc {
        pfn: u64,
        order: u32,
        migratetype: u32,
        gfp: u32,
    },
    MmPageFree {
        pfn: u64,
        order: u32,
    },
    Kmalloc {
        ptr: u64,
        bytes_req: u64,
        bytes_alloc: u64,
        gfp: u32,
    },
    Kfree {
        ptr: u64,
    },
    PageFaultUser {
        address: u64,
        error_code: u32,
    },
    TlbFlush {
        reason: FlushReason,
        pages: i64,
    },
    Kmap {
        pfn: u64,
        vaddr: u64,
    },
    Kunmap {
        pfn: u64,
        vaddr: u64,
    },
    KmapLocal {
        pfn: u64,
        vaddr: u64,
    },
    KunmapLocal {
        vaddr: u64,
    },
}

/// Every event: `system:name`, in the order `Event::index` numbers them.
pub const EVENTS: [&str; 10] = [
    "kmem:mm_page_alloc",
    "kmem:mm_page_free",
    "kmem:kmalloc",
    "kmem:kfree",
    "exceptions:page_fault_user",
    "tlb:tlb_flush",
    "highmem:kmap",
    "highmem:kunmap",
    "highmem:kmap_local",
    "highmem:kunmap_local",
];

impl Event {
    /// Position in [`EVENTS`].
    pub fn index(&self) -> usize {
        match self {
            Event::MmPageAlloc { .. } => 0,
            Event::MmPageFree { .. } => 1,
            Event::Kmalloc { .. } => 2,
            Event::Kfree { .. } => 3,
            Event::PageFaultUser { .. } => 4,
            Event::TlbFlush { .. } => 5,
            Event::Kmap { .. } => 6,
            Event::Kunmap { .. } => 7,
            Event::KmapLocal { .. } => 8,
            Event::KunmapLocal { .. } => 9,
        }
    }

    /// The event's name as the trace prints it (without the system).
    pub fn name(&self) -> &'static str {
        let full = EVENTS[self.index()];
        full.split_once(':').map_or(full, |(_, n)| n)
    }

    /// The fields as `TP_printk` prints them. Pointers print as `%px` would (the model has
    /// no pointer hashing: as with `no_hash_pointers`); `page=` is the `struct page *` of
    /// `mem_map` at `mem_map_va`, `sizeof_page` bytes apart; `call_site=%pS` of kmalloc and
    /// kfree prints `0x0` (the model has no return addresses).
    pub fn fields(&self, mem_map_va: u64, sizeof_page: u64) -> String {
        let page = |pfn: u64| (mem_map_va + pfn * sizeof_page) as u32;
        match *self {
            Event::MmPageAlloc {
                pfn,
                order,
                migratetype,
                gfp,
            } => format!(
                "page={:08x} pfn=0x{pfn:x} order={order} migratetype={migratetype} gfp_flags={}",
                page(pfn),
                gfp_names(gfp)
            ),
            Event::MmPageFree { pfn, order } => {
                format!("page={:08x} pfn=0x{pfn:x} order={order}", page(pfn))
            }
            Event::Kmalloc {
                ptr,
                bytes_req,
                bytes_alloc,
                gfp,
            } => format!(
                "call_site=0x0 ptr={ptr:08x} bytes_req={bytes_req} bytes_alloc={bytes_alloc} gfp_flags={} node=-1 accounted=false",
                gfp_names(gfp)
            ),
            Event::Kfree { ptr } => format!("call_site=0x0 ptr={ptr:08x}"),
            Event::PageFaultUser {
                address,
                error_code,
            } => format!("address=0x{address:x} ip=0x0 error_code=0x{error_code:x}"),
            Event::TlbFlush { reason, pages } => {
                format!("pages:{pages} reason:{} ({})", reason.name(), reason as u32)
            }
            Event::Kmap { pfn, vaddr } | Event::Kunmap { pfn, vaddr } => {
                format!("page={:08x} pfn=0x{pfn:x} vaddr={vaddr:08x}", page(pfn))
            }
            Event::KmapLocal { pfn, vaddr } => {
                format!("page={:08x} pfn=0x{pfn:x} vaddr={vaddr:08x}", page(pfn))
            }
            Event::KunmapLocal { vaddr } => format!("vaddr={vaddr:08x}"),
        }
    }
}

/// `show_gfp_flags()`: the names, or `none` for an empty mask.
fn gfp_names(gfp: u32) -> String {
    if gfp == 0 {
        return "none".to_string();
    }
    crate::gfp::format_gfp_names(crate::gfp::Gfp::from_bits_retain(gfp))
}

/// One recorded event: the CPU, the task current there (index into `Sched::tasks`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    pub cpu: usize,
    pub task: usize,
    pub event: Event,
}

struct Recorder {
    /// Bit i set: `EVENTS[i]` is enabled.
    mask: u32,
    current: Vec<usize>,
    records: Vec<Record>,
}

/// A trace session on this thread; events stop being recorded when it is finished or
/// dropped.
pub struct Session {
    live: bool,
}

impl Session {
    /// Start recording the events whose bit is set in `mask` (bit i: `EVENTS[i]`);
    /// `current[cpu]` is the task running on each CPU now. A session already live on this
    /// thread is replaced. Crate-private: a kernel starts it ([`crate::Kernel::trace_start`]),
    /// so its highmem gate is on whenever a session is.
    pub(crate) fn start(mask: u32, current: Vec<usize>) -> Session {
        RECORDER.with_borrow_mut(|r| {
            *r = Some(Recorder {
                mask,
                current,
                records: Vec::new(),
            })
        });
        SESSIONS.fetch_add(1, Ordering::Relaxed);
        Session { live: true }
    }

    /// Stop and take the events, in the order they happened.
    pub fn finish(mut self) -> Vec<Record> {
        self.end()
    }

    fn end(&mut self) -> Vec<Record> {
        if !std::mem::take(&mut self.live) {
            return Vec::new();
        }
        SESSIONS.fetch_sub(1, Ordering::Relaxed);
        RECORDER
            .with_borrow_mut(|r| r.take())
            .map(|r| r.records)
            .unwrap_or_default()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.end();
    }
}

/// A tracepoint: `event` is built and recorded only while a session is live.
#[inline(always)]
pub fn emit(cpu: usize, event: impl FnOnce() -> Event) {
    if SESSIONS.load(Ordering::Relaxed) != 0 {
        record(cpu, event());
    }
}

/// A tracepoint gated on the kernel's copy of "a session is live" (`on`, the kernel's
/// `hm.tracing`): `event` is built and recorded only when it is set and this thread's
/// session is live (a session dropped without [`crate::Kernel::trace_finish`] leaves the
/// copy set; the recorder then finds nothing to record into).
#[inline(always)]
pub fn emit_if(on: bool, cpu: usize, event: impl FnOnce() -> Event) {
    if on {
        record(cpu, event());
    }
}

/// `context_switch()` on `cpu` to task `next`: later events on that CPU are its.
#[inline(always)]
pub fn switch(cpu: usize, next: usize) {
    if SESSIONS.load(Ordering::Relaxed) != 0 {
        set_current(cpu, next);
    }
}

/// `trace_mm_page_alloc()`.
#[inline(always)]
pub fn mm_page_alloc(cpu: usize, pfn: u64, order: u32, migratetype: u32, gfp: u32) {
    emit(cpu, || Event::MmPageAlloc {
        pfn,
        order,
        migratetype,
        gfp,
    });
}

/// `trace_mm_page_free()`.
#[inline(always)]
pub fn mm_page_free(cpu: usize, pfn: u64, order: u32) {
    emit(cpu, || Event::MmPageFree { pfn, order });
}

/// `trace_kfree()`.
#[inline(always)]
pub fn kfree(cpu: usize, ptr: u64) {
    emit(cpu, || Event::Kfree { ptr });
}

/// `trace_page_fault_user()`.
#[inline(always)]
pub fn page_fault_user(cpu: usize, address: u64, error_code: u32) {
    emit(cpu, || Event::PageFaultUser {
        address,
        error_code,
    });
}

/// `trace_tlb_flush()`.
#[inline(always)]
pub fn tlb_flush(cpu: usize, reason: FlushReason, pages: i64) {
    emit(cpu, || Event::TlbFlush { reason, pages });
}

/// A kernel TLB flush of `pages` pages on `cpu` asked for by `initiator`: the flush
/// IPI's `remote shootdown` or the initiator's own `local shootdown`; past `ceiling` pages
/// the whole TLB goes (`pages:-1`).
#[inline(always)]
pub fn shootdown(initiator: usize, cpu: usize, pages: u64, ceiling: u64) {
    emit(cpu, || Event::TlbFlush {
        reason: if cpu == initiator {
            FlushReason::LocalShootdown
        } else {
            FlushReason::RemoteShootdown
        },
        pages: if pages > ceiling {
            TLB_FLUSH_ALL
        } else {
            pages as i64
        },
    });
}

/// A persistent kmap handed out (`highmem:kmap`).
#[inline(always)]
pub fn kmap(on: bool, cpu: usize, pfn: u64, vaddr: u64) {
    emit_if(on, cpu, || Event::Kmap { pfn, vaddr });
}

/// A persistent kmap given back (`highmem:kunmap`).
#[inline(always)]
pub fn kunmap(on: bool, cpu: usize, pfn: u64, vaddr: u64) {
    emit_if(on, cpu, || Event::Kunmap { pfn, vaddr });
}

/// A kmap_local slot pushed (`highmem:kmap_local`).
#[inline(always)]
pub fn kmap_local(on: bool, cpu: usize, pfn: u64, vaddr: u64) {
    emit_if(on, cpu, || Event::KmapLocal { pfn, vaddr });
}

/// A kmap_local slot popped (`highmem:kunmap_local`).
#[inline(always)]
pub fn kunmap_local(on: bool, cpu: usize, vaddr: u64) {
    emit_if(on, cpu, || Event::KunmapLocal { vaddr });
}

#[cold]
#[inline(never)]
fn record(cpu: usize, event: Event) {
    RECORDER.with_borrow_mut(|r| {
        if let Some(r) = r {
            if r.mask & (1 << event.index()) != 0 {
                let task = r.current.get(cpu).copied().unwrap_or(0);
                r.records.push(Record { cpu, task, event });
            }
        }
    });
}

#[cold]
#[inline(never)]
fn set_current(cpu: usize, next: usize) {
    RECORDER.with_borrow_mut(|r| {
        if let Some(r) = r {
            if r.current.len() <= cpu {
                r.current.resize(cpu + 1, 0);
            }
            r.current[cpu] = next;
        }
    });
}

impl crate::Kernel {
    /// Start a trace session of the events in `mask` (bit i: `EVENTS[i]`) on this thread,
    /// the CPUs' current tasks as they are now, and turn the highmem tracepoints on.
    pub fn trace_start(&mut self, mask: u32) -> Session {
        let current = (0..self.sched.cpus.len())
            .map(|c| self.sched.current(c).0)
            .collect();
        self.hm.set_tracing(true);
        Session::start(mask, current)
    }

    /// Finish `session`: the events, in the order they happened; the highmem
    /// tracepoints are off again.
    pub fn trace_finish(&mut self, session: Session) -> Vec<Record> {
        self.hm.set_tracing(false);
        session.finish()
    }

    /// `trace_kmalloc()`: `bytes_alloc` is what `ksize()` says the object holds.
    #[inline(always)]
    pub(crate) fn trace_kmalloc(
        &self,
        cpu: usize,
        va: machine::VirtAddr,
        req: usize,
        gfp: crate::gfp::Gfp,
    ) {
        emit(cpu, || Event::Kmalloc {
            ptr: va.as_u64(),
            bytes_req: req as u64,
            bytes_alloc: self.ksize(va, cpu).map_or(0, |n| n as u64),
            gfp: gfp.bits(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_records_only_its_events_and_only_while_live() {
        emit(0, || Event::Kfree { ptr: 1 });
        let s = Session::start(1 << 3, vec![5, 6]);
        emit(1, || Event::Kfree { ptr: 0xc000_1000 });
        emit(0, || Event::MmPageFree { pfn: 1, order: 0 });
        switch(1, 9);
        emit(1, || Event::Kfree { ptr: 0xc000_2000 });
        let r = s.finish();
        emit(0, || Event::Kfree { ptr: 2 });
        assert_eq!(r.len(), 2);
        assert_eq!((r[0].cpu, r[0].task), (1, 6));
        assert_eq!(r[1].task, 9);
        assert_eq!(r[0].event.fields(0, 40), "call_site=0x0 ptr=c0001000");
    }

    #[test]
    fn fields_read_as_tp_printk_prints_them() {
        let e = Event::MmPageAlloc {
            pfn: 0x3a,
            order: 0,
            migratetype: 1,
            gfp: crate::gfp::GFP_HIGHUSER_MOVABLE.bits(),
        };
        assert_eq!(
            e.fields(0xf000_0000, 40),
            "page=f0000910 pfn=0x3a order=0 migratetype=1 gfp_flags=GFP_HIGHUSER_MOVABLE"
        );
        let t = Event::TlbFlush {
            reason: FlushReason::LocalShootdown,
            pages: TLB_FLUSH_ALL,
        };
        assert_eq!(t.fields(0, 40), "pages:-1 reason:local shootdown (2)");
        assert_eq!(t.name(), "tlb_flush");
    }
}
