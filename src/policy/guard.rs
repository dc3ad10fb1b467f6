//! Running a [`PolicySet`] in one event session: plan every policy, set up the monitors and
//! write protection, answer each event with the policies' decisions, report alerts to a sink,
//! and carry out each violating policy's remediation.
//!
//! Set-up is all or nothing: every policy is planned (reading the guest, resolving symbols)
//! and the capture directory checked before the session changes anything; a failure while
//! monitors and access rights are being set up tears the session down again. Teardown is the
//! session's (`docs/events.md`), so monitors, access rights and views are restored on every
//! path, and a pause taken by a remediation is released by [`Guard::resume_domain`], by
//! [`Guard::teardown`], when the loop ends with an error, or when the guard is dropped.
//!
//! Per event, every policy decides ([`Policy::decide`]). The answer:
//!
//! | event | a policy that denies found a violation | otherwise |
//! |---|---|---|
//! | CR or MSR write | `DENY` (the write never happens) | proceed |
//! | write to a protected frame | emulate with the write discarded | emulate (the write happens, the frame stays protected) |
//! | anything else (descriptor load) | proceed (cannot be refused: reported) | proceed |
//!
//! Then one alert per violation goes to the sink, after the violating policies'
//! remediation steps ran (pause, capture, resume; each step once per event). A capture that
//! fails is reported in the alert (`"capture_failed"`) and counted; the protection goes on.
//! A sink that fails is counted ([`GuardStats::undelivered`]); the protection goes on.
//!
//! Protection that changes while monitoring runs ([`Policy::refresh`](super::Policy::refresh):
//! modules load and unload) is refreshed at most once per
//! [`GuardOptions::refresh_interval`]: [`Guard::run`] runs the session in slices that end at
//! the first wait without events, and refreshes between slices when the interval has passed,
//! so an idle guest waits at most the interval plus one [`RunOptions::poll`]; under a steady
//! stream of events the refresh happens inside the event handler instead, before the event is
//! decided. A policy that finds its protection out of date while deciding
//! ([`Policy::refresh_requested`](super::Policy::refresh_requested)) is refreshed before the
//! event's vCPU resumes. Changes go through the session (so teardown undoes them); a frame is
//! protected while at least one policy wants it, and its access is restored
//! ([`Session::restore_mem_access`]) when the last one releases it. A refresh that fails (a
//! backend error setting access) ends the run with the error and tears the session down:
//! nothing stays half applied.

use std::collections::{BTreeSet, HashMap};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::{Decision, Guest, PlanChange, PolicySet, Step, Verdict};
use crate::addr::{Gfn, Gva, ViewId};
use crate::alert::{Actor, Alert, AlertSink, Response as Given, Vm};
use crate::backend::{MemAccess, Monitor, PhysicalMemory, VmControl};
use crate::capture::{capture_to_new_file, CaptureOptions};
use crate::error::{Error, Result};
use crate::event::session::{RunOptions, RunStats, Session, SessionBackend, StopHandle};
use crate::event::{EventKind, Response};
use crate::mem::GuestMemory;
use crate::os::linux::{Cr3Owner, Cr3Resolver, Linux};
use crate::policy::CaptureMode;
use crate::regs::Registers;

/// Where write protection is applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ViewMode {
    /// In an altp2m view of the guard's own, switched in on every vCPU.
    Own,
    /// In the host p2m (view 0): no altp2m needed.
    Host,
}

/// How a [`Guard`] runs.
#[derive(Clone, Debug)]
pub struct GuardOptions {
    /// Where write protection goes.
    pub view: ViewMode,
    /// The event loop's options.
    pub run: RunOptions,
    /// The VM, as alerts name it (its UUID is the backend's `domain_uuid` when not given).
    pub vm: Vm,
    /// Where captures are written (required when a policy's remediation captures; must be
    /// an existing directory).
    pub capture_dir: Option<PathBuf>,
    /// How often, at most, policies whose protection follows the guest
    /// ([`Policy::refresh`](super::Policy::refresh)) are refreshed (1 s by default; see the
    /// module documentation for the latency).
    pub refresh_interval: Duration,
}

impl Default for GuardOptions {
    fn default() -> Self {
        GuardOptions {
            view: ViewMode::Own,
            run: RunOptions::default(),
            vm: Vm::default(),
            capture_dir: None,
            refresh_interval: Duration::from_secs(1),
        }
    }
}

/// What a [`Guard::run`] saw and did.
#[derive(Clone, Debug, Default)]
pub struct GuardStats {
    /// The event loop's statistics.
    pub run: RunStats,
    /// Alerts raised.
    pub alerts: u64,
    /// Events refused.
    pub denied: u64,
    /// Writes to protected memory judged legitimate (the kernel's own patching).
    pub legitimate_writes: u64,
    /// Alerts a sink failed to take.
    pub undelivered: u64,
    /// Captures written.
    pub captures: Vec<PathBuf>,
    /// Captures that failed.
    pub capture_failures: u64,
    /// The longest a paused capture held the guest.
    pub longest_capture_pause: Option<Duration>,
    /// The domain is paused by a remediation (the loop ended because of it).
    pub domain_paused: bool,
    /// Policy refreshes done ([`Policy::refresh`](super::Policy::refresh), each policy once
    /// per refresh).
    pub refreshes: u64,
    /// Frames newly protected by refreshes.
    pub frames_protected: u64,
    /// Frames whose protection refreshes lifted.
    pub frames_released: u64,
}

/// A policy set running over one session (see the module documentation).
pub struct Guard<'b, B: SessionBackend + VmControl> {
    backend: &'b B,
    linux: &'b Linux,
    mem: GuestMemory<&'b dyn PhysicalMemory>,
    baseline: Vec<Registers>,
    session: Session<'b, B>,
    set: PolicySet,
    sink: Box<dyn AlertSink + 'b>,
    opts: GuardOptions,
    view: Option<ViewId>,
    frames: Frames,
    last_refresh: Instant,
    /// A run or refresh failed and the session was torn down: nothing more may change.
    ended: bool,
    held_pauses: u32,
    resolver: Cr3Resolver,
    stats: GuardStats,
}

impl<B: SessionBackend + VmControl> std::fmt::Debug for Guard<'_, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard")
            .field("policies", &self.set)
            .field("view", &self.view)
            .field("protected", &self.frames.counts.len())
            .finish()
    }
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn check_capture_dir(dir: Option<&Path>, set: &mut PolicySet) -> Result<()> {
    let needs = set
        .policies_mut()
        .iter()
        .find(|p| p.remediation().captures())
        .map(|p| p.name().to_owned());
    match (needs, dir) {
        (Some(p), None) => Err(Error::Config {
            what: format!("policy {p:?}"),
            reason: "its remediation captures memory but no capture directory was given".into(),
        }),
        (Some(_), Some(d)) if !d.is_dir() => Err(Error::Config {
            what: format!("capture directory {}", d.display()),
            reason: "not an existing directory".into(),
        }),
        _ => Ok(()),
    }
}

impl<'b, B: SessionBackend + VmControl> Guard<'b, B> {
    /// Plan every policy of `set`, then open a session on `backend` and set up monitors and
    /// write protection. Alerts go to `sink` (connect network sinks before: an unreachable
    /// one is then an error before anything here runs).
    ///
    /// # Errors
    /// [`Error::Config`] for an empty set or a capture directory that is missing or not
    /// given; a policy's planning error (a missing symbol); backend errors while setting up
    /// (the session is then torn down: nothing stays half configured).
    pub fn new(
        backend: &'b B,
        linux: &'b Linux,
        mut set: PolicySet,
        sink: Box<dyn AlertSink + 'b>,
        opts: GuardOptions,
    ) -> Result<Self> {
        if set.is_empty() {
            return Err(Error::Config {
                what: "policy set".into(),
                reason: "no policies".into(),
            });
        }
        check_capture_dir(opts.capture_dir.as_deref(), &mut set)?;
        let mut opts = opts;
        if opts.vm.uuid.is_none() {
            opts.vm.uuid = backend.domain_uuid().ok();
        }
        let baseline = (0..backend.vcpu_count())
            .map(|v| backend.registers(crate::VcpuId(v)))
            .collect::<Result<Vec<_>>>()?;
        let mem = GuestMemory::new(backend as &dyn PhysicalMemory);
        let mut monitors: Vec<Monitor> = Vec::new();
        let mut frames = Frames::default();
        {
            let guest = Guest {
                linux,
                mem: &mem,
                baseline: &baseline,
            };
            for p in set.policies_mut() {
                let plan = p.plan(&guest)?;
                for m in plan.monitors {
                    if !monitors.contains(&m) {
                        monitors.push(m);
                    }
                }
                let wanted: BTreeSet<u64> = plan.write_protect.iter().map(|g| g.0).collect();
                for &g in &wanted {
                    *frames.counts.entry(g).or_default() += 1;
                }
                frames.wanted.push(wanted);
            }
        }
        let protect: BTreeSet<u64> = frames.counts.keys().copied().collect();
        let mut session = Session::new(backend)?;
        let mut view = None;
        if !protect.is_empty() {
            let v = open_view(&mut session, opts.view)?;
            for &g in &protect {
                session.set_mem_access(v, Gfn(g), MemAccess::R | MemAccess::X)?;
            }
            if v != ViewId::HOST {
                session.switch_view(v)?;
            }
            view = Some(v);
        }
        for m in monitors {
            session.monitor(m)?;
        }
        Ok(Guard {
            backend,
            linux,
            mem,
            baseline,
            session,
            set,
            sink,
            opts,
            view,
            frames,
            last_refresh: Instant::now(),
            ended: false,
            held_pauses: 0,
            resolver: Cr3Resolver::new(),
            stats: GuardStats::default(),
        })
    }

    /// The view write protection is in (`None` when no policy protects memory).
    pub fn view(&self) -> Option<ViewId> {
        self.view
    }

    /// How many frames are write-protected.
    pub fn protected_pages(&self) -> usize {
        self.frames.counts.len()
    }

    /// Whether frame `gfn` is write-protected now.
    pub fn is_protected(&self, gfn: Gfn) -> bool {
        self.frames.counts.contains_key(&gfn.0)
    }

    /// Refresh every policy now ([`Policy::refresh`](super::Policy::refresh)) and apply
    /// what changed, whatever the interval.
    ///
    /// # Errors
    /// A policy's refresh error or panic, or a backend error applying the change; the
    /// session is then torn down and any pause taken by a remediation released.
    pub fn refresh(&mut self) -> Result<()> {
        self.check_not_ended()?;
        self.mem.guest_ran();
        let guest = Guest {
            linux: self.linux,
            mem: &self.mem,
            baseline: &self.baseline,
        };
        let r = refresh_policies(
            &mut self.set,
            &guest,
            &mut self.session,
            self.opts.view,
            &mut self.view,
            &mut self.frames,
            &mut self.stats,
            false,
        );
        self.last_refresh = Instant::now();
        if let Err(e) = r {
            self.ended = true;
            let _ = self.session.teardown();
            let _ = self.release_pauses();
            return Err(e);
        }
        Ok(())
    }

    fn check_not_ended(&self) -> Result<()> {
        if self.ended {
            return Err(Error::Config {
                what: "guard".into(),
                reason: "an earlier run or refresh failed and tore the session down; make a new \
                         guard"
                    .into(),
            });
        }
        Ok(())
    }

    /// The policies' names.
    pub fn policy_names(&self) -> Vec<&str> {
        self.set.names()
    }

    /// The session's stop handle (for signals or another thread).
    pub fn stop_handle(&self) -> StopHandle {
        self.session.stop_handle()
    }

    /// Run until the run options, the stop handle, or a remediation that keeps the domain
    /// paused ends the loop. Statistics accumulate over calls.
    ///
    /// # Errors
    /// As [`Session::run_with`], or a failed refresh ([`Guard::refresh`]); the session is then
    /// torn down and any pause taken by a remediation released, and later calls of `run` or
    /// `refresh` are refused ([`Error::Config`]).
    pub fn run(&mut self) -> Result<GuardStats> {
        self.check_not_ended()?;
        let user = self.opts.run;
        let mut events = 0u64;
        let mut idle = 0u32;
        loop {
            if self.last_refresh.elapsed() >= self.opts.refresh_interval {
                self.refresh()?;
            }
            // A slice ends at its first wait without events, so that refreshes come between
            // slices when the guest is idle.
            let slice = RunOptions {
                poll: user.poll,
                max_events: user.max_events.map(|m| m.saturating_sub(events)),
                max_idle_polls: Some(1),
            };
            let run = self.run_slice(&slice)?;
            events += run.events;
            if run.interrupted
                || self.stats.domain_paused
                || user.max_events.is_some_and(|m| events >= m)
            {
                return Ok(self.stats.clone());
            }
            idle = if run.events > 0 {
                1
            } else {
                idle.saturating_add(1)
            };
            if user.max_idle_polls.is_some_and(|m| idle >= m) {
                return Ok(self.stats.clone());
            }
        }
    }

    /// One slice of [`Guard::run`].
    fn run_slice(&mut self, slice: &RunOptions) -> Result<RunStats> {
        let Guard {
            backend,
            linux,
            mem,
            baseline,
            session,
            set,
            sink,
            opts,
            held_pauses,
            resolver,
            stats,
            view,
            frames,
            last_refresh,
            ..
        } = self;
        let mode = opts.view;
        let interval = opts.refresh_interval;
        let backend: &'b B = backend;
        let linux: &'b Linux = linux;
        let r = session.run_with(slice, |ctx| {
            // The guest ran: its page tables may have changed, its p2m has not (the backend's
            // frame mappings stay; on Xen, dropping them would unmap up to 1,024 frames per
            // event).
            mem.guest_ran();
            let event = ctx.event();
            let guest = Guest {
                linux,
                mem,
                baseline,
            };
            // A guest that never lets a slice end still gets its periodic refresh.
            if last_refresh.elapsed() >= interval {
                *last_refresh = Instant::now();
                refresh_policies(set, &guest, ctx.session(), mode, view, frames, stats, false)?;
            }
            let mut findings = Vec::new();
            let mut legitimate = false;
            for (i, p) in set.policies_mut().iter_mut().enumerate() {
                match p.decide(&guest, event) {
                    Decision::NotMine => {}
                    Decision::Legitimate => legitimate = true,
                    Decision::Violation(f) => findings.push((i, f)),
                }
            }
            if set.policies_mut().iter().any(|p| p.refresh_requested()) {
                refresh_policies(set, &guest, ctx.session(), mode, view, frames, stats, true)?;
            }
            let policies = set.policies_mut();
            let denies = |i: usize, deniable: bool| {
                deniable && policies[i].remediation().verdict == Verdict::Deny
            };
            let deny = findings.iter().any(|(i, f)| denies(*i, f.deniable));
            let memory = matches!(event.kind, EventKind::MemoryAccess { .. });
            if memory && legitimate && findings.is_empty() {
                stats.legitimate_writes += 1;
            }
            let response = match (&event.kind, deny) {
                (EventKind::ControlRegister { .. } | EventKind::Msr { .. }, true) => {
                    Response::deny()
                }
                (EventKind::MemoryAccess { .. }, true) => Response::emulate_nowrite(),
                (EventKind::MemoryAccess { .. }, false) => Response::emulate(),
                _ => Response::proceed(),
            };
            if findings.is_empty() {
                return Ok::<_, Error>(response);
            }
            if deny {
                stats.denied += 1;
            }
            // Each violating policy's steps, each step once, in order of first appearance.
            let mut steps: Vec<Step> = Vec::new();
            for (i, _) in &findings {
                for s in &policies[*i].remediation().steps {
                    if !steps.contains(s) {
                        steps.push(*s);
                    }
                }
            }
            let mut done = Vec::new();
            let mut capture = None;
            for s in steps {
                match s {
                    Step::Pause => {
                        backend.pause()?;
                        *held_pauses += 1;
                        done.push("paused".to_owned());
                    }
                    Step::Capture(mode) => {
                        let dir = opts.capture_dir.as_deref().unwrap_or(Path::new("."));
                        let name = format!(
                            "xenvmi-{}-{}-{}.core",
                            opts.vm.name.as_deref().unwrap_or("guest"),
                            SystemTime::now()
                                .duration_since(UNIX_EPOCH)
                                .map_or(0, |d| d.as_micros()),
                            findings[0].1.what
                        );
                        let path = dir.join(name.replace('/', "_"));
                        let pause: Option<&dyn VmControl> = match mode {
                            CaptureMode::Paused => Some(backend),
                            CaptureMode::Live => None,
                        };
                        let co = CaptureOptions {
                            pause,
                            progress: None,
                        };
                        match capture_to_new_file(backend, &path, false, co) {
                            Ok(rep) => {
                                if let Some(p) = rep.paused_for {
                                    let l = stats.longest_capture_pause.get_or_insert(p);
                                    *l = (*l).max(p);
                                }
                                done.push(format!("captured_{}", rep.consistency.as_str()));
                                capture = Some(path.display().to_string());
                                stats.captures.push(path);
                            }
                            Err(_) => {
                                stats.capture_failures += 1;
                                done.push("capture_failed".into());
                            }
                        }
                    }
                    Step::Resume => {
                        if *held_pauses > 0 {
                            backend.resume()?;
                            *held_pauses -= 1;
                            done.push("resumed".into());
                        }
                    }
                }
            }
            // Who did it: the task running on the vCPU (the kernel's per-CPU current task),
            // exact for kernel threads, which run on the last process's page tables, and for
            // a page-table root the kernel has freed and given to a new process since the
            // last task-list walk. The CR3's owner only when the per-CPU task can't be read.
            let actor = match linux.current_thread(mem, &event.regs) {
                Ok(t) if t.pid == 0 => Actor::Kernel,
                Ok(t) => Actor::Process {
                    pid: t.pid,
                    comm: t.name,
                },
                Err(_) => match resolver.resolve(linux, mem, event.regs.cr3) {
                    Cr3Owner::Process(p) => Actor::Process {
                        pid: p.pid,
                        comm: p.name,
                    },
                    Cr3Owner::Kernel => Actor::Kernel,
                    Cr3Owner::Unknown => Actor::Unknown,
                },
            };
            for (i, f) in findings {
                let mut attempt = f.attempt;
                if attempt.rip_symbol.is_none() {
                    attempt.rip_symbol = linux
                        .symbolize(mem, Gva(attempt.rip))
                        .map(|s| s.to_string());
                }
                let response = if !f.deniable {
                    Given::Reported
                } else if deny {
                    Given::Denied
                } else {
                    Given::Allowed
                };
                let alert = Alert {
                    time: now(),
                    vm: opts.vm.clone(),
                    vcpu: Some(event.vcpu.0),
                    actor: actor.clone(),
                    what: f.what,
                    policy: policies[i].name().to_owned(),
                    severity: f.severity,
                    attempt,
                    response,
                    remediation: done.clone(),
                    capture: capture.clone(),
                    detail: None,
                };
                stats.alerts += 1;
                if sink.send(&alert).is_err() {
                    stats.undelivered += 1;
                }
            }
            if *held_pauses > 0 {
                stats.domain_paused = true;
                ctx.stop();
            }
            Ok(response)
        });
        match r {
            Ok(run) => {
                let s = &mut self.stats;
                s.run.events += run.events;
                s.run.bad_requests += run.bad_requests;
                s.run.processing += run.processing;
                s.run.slowest = s.run.slowest.max(run.slowest);
                s.run.interrupted = run.interrupted;
                Ok(run)
            }
            Err(e) => {
                self.ended = true;
                let _ = self.session.teardown();
                let _ = self.release_pauses();
                Err(e)
            }
        }
    }

    fn release_pauses(&mut self) -> Result<()> {
        let mut first = None;
        while self.held_pauses > 0 {
            self.held_pauses -= 1;
            if let Err(e) = self.backend.resume() {
                first.get_or_insert(e);
            }
        }
        self.stats.domain_paused = false;
        first.map_or(Ok(()), Err)
    }

    /// Resume a domain a remediation left paused.
    ///
    /// # Errors
    /// The backend's resume failed.
    pub fn resume_domain(&mut self) -> Result<()> {
        self.release_pauses()
    }

    /// Tear the session down (monitors, protections, views restored; see
    /// `docs/events.md`) and release any pause a remediation holds.
    ///
    /// # Errors
    /// The first error of either; both are attempted.
    pub fn teardown(mut self) -> Result<()> {
        let a = self.session.teardown();
        let b = self.release_pauses();
        a.and(b)
    }
}

/// The frames each policy wants protected, and how many policies want each.
#[derive(Debug, Default)]
struct Frames {
    /// Per policy, in set order.
    wanted: Vec<BTreeSet<u64>>,
    /// Per protected frame: how many policies want it (never 0).
    counts: HashMap<u64, u32>,
}

/// The view the guard protects frames in: the host view, or a new one of its own (not yet
/// switched to).
fn open_view<B: SessionBackend>(session: &mut Session<'_, B>, mode: ViewMode) -> Result<ViewId> {
    match mode {
        ViewMode::Host => Ok(ViewId::HOST),
        ViewMode::Own => session.create_view(MemAccess::all()),
    }
}

/// Refresh the policies (only those that asked, with `only_requested`) and apply their
/// changes through `session`.
#[allow(clippy::too_many_arguments)]
fn refresh_policies<B: SessionBackend>(
    set: &mut PolicySet,
    guest: &Guest<'_>,
    session: &mut Session<'_, B>,
    mode: ViewMode,
    view: &mut Option<ViewId>,
    frames: &mut Frames,
    stats: &mut GuardStats,
    only_requested: bool,
) -> Result<()> {
    for (i, p) in set.policies_mut().iter_mut().enumerate() {
        if only_requested && !p.refresh_requested() {
            continue;
        }
        let change = catch_unwind(AssertUnwindSafe(|| p.refresh(guest))).map_err(|e| {
            Error::HandlerPanicked {
                message: format!(
                    "policy {:?} refresh: {}",
                    p.name(),
                    crate::event::session::panic_message(e.as_ref())
                ),
            }
        })??;
        stats.refreshes += 1;
        apply_change(session, mode, view, frames, i, &change, stats)?;
    }
    Ok(())
}

/// Apply one policy's change: protect a frame when its first policy wants it, restore it when
/// its last policy releases it.
fn apply_change<B: SessionBackend>(
    session: &mut Session<'_, B>,
    mode: ViewMode,
    view: &mut Option<ViewId>,
    frames: &mut Frames,
    policy: usize,
    change: &PlanChange,
    stats: &mut GuardStats,
) -> Result<()> {
    let Some(wanted) = frames.wanted.get_mut(policy) else {
        return Ok(());
    };
    for g in &change.protect {
        if wanted.contains(&g.0) {
            continue;
        }
        if !frames.counts.contains_key(&g.0) {
            let v = match *view {
                Some(v) => v,
                None => {
                    let v = open_view(session, mode)?;
                    if v != ViewId::HOST {
                        session.switch_view(v)?;
                    }
                    *view = Some(v);
                    v
                }
            };
            session.set_mem_access(v, *g, MemAccess::R | MemAccess::X)?;
            stats.frames_protected += 1;
        }
        wanted.insert(g.0);
        *frames.counts.entry(g.0).or_default() += 1;
    }
    for g in &change.release {
        if !wanted.contains(&g.0) {
            continue;
        }
        match frames.counts.get(&g.0).copied() {
            Some(n) if n > 1 => {
                frames.counts.insert(g.0, n - 1);
            }
            _ => {
                if let Some(v) = *view {
                    session.restore_mem_access(v, *g)?;
                }
                frames.counts.remove(&g.0);
                stats.frames_released += 1;
            }
        }
        wanted.remove(&g.0);
    }
    Ok(())
}

impl<B: SessionBackend + VmControl> Drop for Guard<'_, B> {
    fn drop(&mut self) {
        let _ = self.session.teardown();
        let _ = self.release_pauses();
    }
}
