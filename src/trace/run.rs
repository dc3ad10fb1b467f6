//! A whole trace of a live guest: a [`Session`], a [`Hooks`] manager and a [`LinuxTracer`]
//! placed on it, run until stopped, then torn down. The `trace` example and `xenvmi trace` are
//! front ends over [`Tracing`]; they only parse options and print events.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::time::Instant;

use super::{LinuxTracer, NotPlaced, Probe, TraceEvent, TraceFilter, What};
use crate::addr::{Gpa, VcpuId};
use crate::backend::sim::GuestAction;
use crate::error::{Error, Result};
use crate::event::hooks::{Hooks, Placement};
use crate::event::session::{RunOptions, Session, SessionBackend, StopHandle};
use crate::event::Response;
use crate::mem::GuestMemory;
use crate::os::linux::Linux;

/// What to trace, and how.
#[derive(Clone, Debug)]
pub struct TraceOptions {
    /// The probes to place (each at most once).
    pub probes: Vec<Probe>,
    /// Report thread exits too (a process's end is always reported with [`Probe::Exit`]).
    pub threads: bool,
    /// Which events to keep, decided before anything is read from the guest.
    pub filter: TraceFilter,
    /// Where the breakpoints go.
    pub placement: Placement,
}

impl Default for TraceOptions {
    /// Process starts and ends, module loads and unloads; no filter; stealth placement.
    fn default() -> Self {
        TraceOptions {
            probes: vec![
                Probe::ProcessStart,
                Probe::Exit,
                Probe::ModuleLoad,
                Probe::ModuleUnload,
            ],
            threads: false,
            filter: TraceFilter::new(),
            placement: Placement::Stealth,
        }
    }
}

/// What a finished trace saw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TraceSummary {
    /// Events reported, by type name (`process_start`, ...).
    pub counts: BTreeMap<&'static str, u64>,
    /// Hits the filter dropped before decoding.
    pub filtered: u64,
    /// Hits whose event could not be read.
    pub unreadable: u64,
    /// Breakpoint hits.
    pub hits: u64,
    /// Guest events answered (hits, steps, accesses to hooked pages, ...).
    pub guest_events: u64,
}

impl TraceSummary {
    /// Events reported in all.
    pub fn events(&self) -> u64 {
        self.counts.values().sum()
    }
}

impl fmt::Display for TraceSummary {
    /// `N events (process_start 2, ...); F filtered out; U unreadable; H hits in G guest
    /// events; teardown done` (a summary exists only once the teardown succeeded).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let per: Vec<String> = self
            .counts
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        write!(
            f,
            "{} events ({}); {} filtered out; {} unreadable; {} hits in {} guest events; teardown done",
            self.events(),
            if per.is_empty() {
                "none".to_owned()
            } else {
                per.join(", ")
            },
            self.filtered,
            self.unreadable,
            self.hits,
            self.guest_events
        )
    }
}

/// A trace placed on a guest and ready to run. Dropped without [`Tracing::run`], the
/// session tears down (breakpoints, views and monitors removed).
pub struct Tracing<'a, B: SessionBackend> {
    linux: &'a Linux,
    mem: GuestMemory<&'a B>,
    hooks: Hooks,
    tracer: LinuxTracer,
    threads: bool,
    // Last: dropped after the hooks and the tracer, tearing everything down.
    session: Session<'a, B>,
}

impl<'a, B: SessionBackend> Tracing<'a, B> {
    /// Open a session on `backend`, start a hook manager with `o.placement` and place
    /// `o.probes` on `linux`'s functions. A probe whose function the kernel lacks is not
    /// placed ([`Tracing::not_placed`] says why); the others are.
    ///
    /// # Errors
    /// The session's, the hook manager's and [`LinuxTracer::place`]'s errors, and when no
    /// probe at all could be placed, the first probe's reason (e.g. [`Error::MissingSymbol`]);
    /// everything done so far is torn down.
    pub fn start(backend: &'a B, linux: &'a Linux, o: &TraceOptions) -> Result<Self> {
        let mem = GuestMemory::new(backend);
        let mut session = Session::new(backend)?;
        let mut hooks = Hooks::new(&mut session, o.placement)?;
        let mut probes = o.probes.clone();
        probes.sort();
        probes.dedup();
        let mut tracer = LinuxTracer::place(
            &mut hooks,
            &mut session,
            &mem,
            linux,
            &probes,
            o.filter.clone(),
        )?;
        if !tracer.probes().any(|p| p.2) {
            // Nothing to trace: the first probe's reason (the session tears down on return).
            if let Some(n) = tracer.take_not_placed().into_iter().next() {
                return Err(n.reason);
            }
            return Err(Error::Malformed {
                format: "trace options",
                what: "probes".into(),
                reason: "no probe was given".into(),
            });
        }
        Ok(Tracing {
            linux,
            mem,
            hooks,
            tracer,
            threads: o.threads,
            session,
        })
    }

    /// The probes that could not be placed, with why.
    pub fn not_placed(&self) -> &[NotPlaced] {
        self.tracer.not_placed()
    }

    /// The probes that were placed and report events, in order.
    pub fn placed(&self) -> Vec<Probe> {
        let mut p: Vec<Probe> = self.tracer.probes().filter(|p| p.2).map(|p| p.1).collect();
        p.dedup();
        p
    }

    /// A handle that stops [`Tracing::run`] from anywhere (a signal handler through
    /// [`StopHandle::stop_on_signals`], another thread, a timer).
    pub fn stop_handle(&self) -> StopHandle {
        self.session.stop_handle()
    }

    /// Run until stopped: by the [`StopHandle`], by `on_event` answering `false` (e.g. its
    /// output was closed), at `until`, or as `opts` says. Each event goes to `on_event`,
    /// each hit whose event could not be read to `on_unreadable` with the error. Every guest
    /// event is answered; then the session is torn down.
    ///
    /// # Errors
    /// The event loop's and the teardown's errors (the teardown is tried in any case).
    pub fn run(
        mut self,
        opts: &RunOptions,
        until: Option<Instant>,
        mut on_event: impl FnMut(&TraceEvent) -> bool,
        mut on_unreadable: impl FnMut(VcpuId, &Error),
    ) -> Result<TraceSummary> {
        let mut summary = TraceSummary::default();
        let stop = self.session.stop_handle();
        let (linux, threads, tracer) = (self.linux, self.threads, &mut self.tracer);
        let stats = self.hooks.run(&mut self.session, &self.mem, opts, |ctx| {
            if until.is_some_and(|t| Instant::now() >= t) {
                stop.stop();
            }
            match tracer.handle(linux, ctx) {
                Some(Ok(e)) if matches!(e.what, What::ThreadExit { .. }) && !threads => {}
                Some(Ok(e)) => {
                    *summary.counts.entry(e.type_name()).or_default() += 1;
                    if !on_event(&e) {
                        stop.stop();
                    }
                }
                Some(Err(e)) => {
                    summary.unreadable += 1;
                    on_unreadable(ctx.event().vcpu, &e);
                }
                None => {}
            }
            Ok::<_, std::convert::Infallible>(Response::proceed())
        });
        summary.hits = self.hooks.stats().hits;
        summary.filtered = self.tracer.filtered();
        let teardown = self.session.teardown();
        summary.guest_events = stats?.events;
        teardown?;
        Ok(summary)
    }
}

impl<B: SessionBackend> Tracing<'_, B> {
    /// Run as [`Tracing::run`], writing each event as one line to `out`: a JSON object with
    /// `json` (`docs/tracing.md`), [`TraceEvent::to_text`] otherwise. Each line is flushed; the
    /// trace stops, cleanly, when `out` cannot be written (a closed pipe).
    ///
    /// # Errors
    /// As [`Tracing::run`].
    pub fn run_to(
        self,
        opts: &RunOptions,
        until: Option<Instant>,
        json: bool,
        out: &mut dyn Write,
        on_unreadable: impl FnMut(VcpuId, &Error),
    ) -> Result<TraceSummary> {
        self.run(
            opts,
            until,
            |e| {
                let line = if json {
                    e.to_json().to_string()
                } else {
                    e.to_text()
                };
                writeln!(out, "{line}").and_then(|_| out.flush()).is_ok()
            },
            on_unreadable,
        )
    }
}

/// A script for the simulated domain (not Xen) that makes a trace of `probes` see one event
/// each: vCPU 0 executes the first instruction of each probe's kernel function (the first of
/// [`Probe::symbols`] the kernel has), with the registers it has. What the event then says
/// depends on those registers (the `trace` example and `xenvmi trace --simulate` use the
/// snapshot's own).
pub fn simulated_calls(linux: &Linux, probes: &[Probe]) -> Vec<GuestAction> {
    let k = linux.info();
    probes
        .iter()
        .filter_map(|p| p.symbols().iter().find_map(|s| linux.symbol(s)))
        .map(|va| GuestAction::Execute {
            vcpu: VcpuId(0),
            gpa: Gpa(k.text_pa.0.wrapping_add(va.0.wrapping_sub(k.text_va.0))),
        })
        .collect()
}
