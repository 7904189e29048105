//! The main job's progress bar: backends run over all variants, drawn on stderr only when
//! the binary's stderr is a terminal and only once the run has lasted a second (a short run
//! or a pipe gets nothing). Variants report from their threads; the bar is shared.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Set by the binary's `main` when its stderr is a terminal: in-process callers (tests)
/// write to buffers and never get a bar.
pub static STDERR_IS_TERMINAL: AtomicBool = AtomicBool::new(false);

/// How long a run goes before its bar appears.
const SHOW_AFTER: Duration = Duration::from_secs(1);

/// Backends done out of all the job could run.
pub struct Progress {
    bar: Option<ProgressBar>,
    start: Instant,
    shown: AtomicBool,
}

impl Progress {
    /// A bar over `total` backends, or none when stderr is not a terminal.
    pub fn new(total: u64) -> Progress {
        let bar = STDERR_IS_TERMINAL.load(Ordering::Relaxed).then(|| {
            let style = ProgressStyle::with_template(
                "main job [{elapsed_precise}] {wide_bar} {pos}/{len} backends, {eta} left",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden())
                .with_style(style)
        });
        Progress {
            bar,
            start: Instant::now(),
            shown: AtomicBool::new(false),
        }
    }

    /// A backend read its whole segment.
    pub fn child_done(&self) {
        self.advance(1);
    }

    /// A variant stopped with `not_run` backends of its share never started.
    pub fn variant_done(&self, not_run: u32) {
        self.advance(u64::from(not_run));
    }

    fn advance(&self, n: u64) {
        let Some(bar) = &self.bar else { return };
        bar.inc(n);
        if self.start.elapsed() >= SHOW_AFTER && !self.shown.swap(true, Ordering::Relaxed) {
            bar.set_draw_target(ProgressDrawTarget::stderr());
        }
    }

    /// Take the bar off the screen before the table is printed.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
