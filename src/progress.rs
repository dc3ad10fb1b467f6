//! Progress of long work (a capture, a search of physical memory for the kernel), reported to
//! an observer the caller gives: the library never prints. [`ProgressMeter`] is the one
//! rendering of it for a terminal, which the command-line front ends use.

use std::time::Instant;

/// How far one stage of a piece of work has come, in bytes. Within a stage `done` never
/// decreases, and the stage's last report has `done == total`, whether the work went through
/// all of it or ended early (found what it looked for, ran out of budget, failed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// What is being done (`"capture"`, `"searching memory for the kernel banner"`).
    pub stage: &'static str,
    /// Bytes examined so far.
    pub done: u64,
    /// Bytes to examine in this stage.
    pub total: u64,
    /// Bytes written so far, for work that writes (a capture).
    pub written: Option<u64>,
}

/// A progress line for a terminal, at most five a second per stage: [`ProgressMeter::line`]
/// answers `Some` when it is time to show one (always for a stage's first and last report);
/// [`ProgressMeter::on_stderr`] shows it on standard error when that is a terminal, as the
/// command-line front ends do.
#[derive(Debug)]
pub struct ProgressMeter {
    start: Instant,
    stage: Option<&'static str>,
    stage_start: Instant,
    last: Option<f64>,
    terminal: bool,
    shown: bool,
    width: usize,
}

impl Default for ProgressMeter {
    fn default() -> Self {
        Self::new()
    }
}

impl ProgressMeter {
    /// Start timing now; lines go to standard error only if it is a terminal.
    pub fn new() -> Self {
        Self::with_terminal(std::io::IsTerminal::is_terminal(&std::io::stderr()))
    }

    /// Start timing now; `terminal` says whether [`ProgressMeter::on_stderr`] shows lines.
    pub fn with_terminal(terminal: bool) -> Self {
        let now = Instant::now();
        ProgressMeter {
            start: now,
            stage: None,
            stage_start: now,
            last: None,
            terminal,
            shown: false,
            width: 0,
        }
    }

    /// Show the line for `p` on standard error, over the previous one, if standard error is a
    /// terminal (never in a pipe or a log file).
    pub fn on_stderr(&mut self, p: Progress) {
        if !self.terminal {
            return;
        }
        if let Some(line) = self.line(p) {
            // Blank out what is left of a longer previous line.
            let pad = self.width.saturating_sub(line.chars().count());
            eprint!("\r{line}{:pad$}", "");
            self.width = line.chars().count();
            self.shown = true;
        }
    }

    /// End the progress display: a newline after the last line [`ProgressMeter::on_stderr`]
    /// showed, if it showed any.
    pub fn finish(&self) {
        if self.shown {
            eprintln!();
        }
    }

    /// The line to show for `p` (no newline; prefix `\r` to overwrite the previous one), or
    /// `None` when one of the same stage was shown less than 0.2 s ago.
    pub fn line(&mut self, p: Progress) -> Option<String> {
        let now = self.start.elapsed().as_secs_f64();
        if self.stage != Some(p.stage) {
            self.stage = Some(p.stage);
            self.stage_start = Instant::now();
            self.last = None;
        }
        if self.last.is_some_and(|l| now - l < 0.2) && p.done != p.total {
            return None;
        }
        self.last = Some(now);
        let s = self.stage_start.elapsed().as_secs_f64().max(1e-6);
        let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
        let pct = 100.0 * p.done as f64 / p.total.max(1) as f64;
        Some(match p.written {
            Some(w) => format!(
                "{}: {:>8.1} / {:.1} MiB examined ({pct:>3.0}%), {:.1} MiB written, {:.0} MiB/s",
                p.stage,
                mib(p.done),
                mib(p.total),
                mib(w),
                mib(w) / s
            ),
            None => format!(
                "{}: {:>8.1} / {:.1} MiB ({pct:>3.0}%), {:.0} MiB/s",
                p.stage,
                mib(p.done),
                mib(p.total),
                mib(p.done) / s
            ),
        })
    }
}

/// One stage of work reporting to an optional observer: [`Stage::advance`] as it goes, and
/// `done == total` once at the end, when the stage is dropped, however it ended.
pub(crate) struct Stage<'o> {
    observer: Option<&'o mut dyn FnMut(Progress)>,
    stage: &'static str,
    done: u64,
    total: u64,
}

impl<'o> Stage<'o> {
    /// A stage of `total` bytes; reports `done == 0` now.
    pub(crate) fn new(
        observer: Option<&'o mut dyn FnMut(Progress)>,
        stage: &'static str,
        total: u64,
    ) -> Self {
        let mut s = Stage {
            observer,
            stage,
            done: 0,
            total,
        };
        s.report();
        s
    }

    fn report(&mut self) {
        if let Some(f) = self.observer.as_mut() {
            f(Progress {
                stage: self.stage,
                done: self.done,
                total: self.total,
                written: None,
            });
        }
    }

    /// `n` more bytes done (never past the total).
    pub(crate) fn advance(&mut self, n: u64) {
        let done = self.done.saturating_add(n).min(self.total);
        if done != self.done {
            self.done = done;
            self.report();
        }
    }
}

impl Drop for Stage<'_> {
    fn drop(&mut self) {
        if self.done != self.total {
            self.done = self.total;
            self.report();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stage_is_monotonic_and_ends_at_its_total_however_it_ends() {
        let mut seen = Vec::new();
        {
            let mut obs = |p: Progress| seen.push((p.stage, p.done, p.total));
            let mut s = Stage::new(Some(&mut obs), "scan", 100);
            s.advance(30);
            s.advance(0); // nothing new: no report
            s.advance(200); // clamped to the total
            s.advance(5);
        }
        assert_eq!(
            seen,
            [("scan", 0, 100), ("scan", 30, 100), ("scan", 100, 100)]
        );
        seen.clear();
        {
            let mut obs = |p: Progress| seen.push((p.stage, p.done, p.total));
            let mut s = Stage::new(Some(&mut obs), "early", 64);
            s.advance(8);
            // Dropped here: the stage ended early (found, or failed).
        }
        assert_eq!(
            seen,
            [("early", 0, 64), ("early", 8, 64), ("early", 64, 64)]
        );
        // No observer: nothing to call.
        let mut s = Stage::new(None, "quiet", 10);
        s.advance(10);
    }

    #[test]
    fn the_meter_shows_each_stage_and_nothing_off_a_terminal() {
        let mut m = ProgressMeter::with_terminal(false);
        let p = |stage, done| Progress {
            stage,
            done,
            total: 4 << 20,
            written: None,
        };
        let first = m.line(p("banner", 0)).unwrap();
        assert!(
            first.starts_with("banner:      0.0 / 4.0 MiB (  0%)"),
            "{first}"
        );
        // Too soon after the last line of the same stage: not shown, unless it is the end.
        assert_eq!(m.line(p("banner", 1 << 20)), None);
        let end = m.line(p("banner", 4 << 20)).unwrap();
        assert!(end.contains("4.0 / 4.0 MiB (100%)"), "{end}");
        // A new stage is shown at once.
        assert!(m.line(p("kallsyms", 0)).unwrap().starts_with("kallsyms:"));
        let w = m
            .line(Progress {
                written: Some(3 << 20),
                ..p("capture", 4 << 20)
            })
            .unwrap();
        assert!(w.contains("MiB examined (100%), 3.0 MiB written"), "{w}");
        // Off a terminal, on_stderr shows nothing and finish prints no newline.
        m.on_stderr(p("banner", 4 << 20));
        assert!(!m.shown);
    }
}
