//! The event loop, and the journal that lets teardown undo everything.
//!
//! A [`Session`] borrows a backend that has a vm_event ring. Every change it makes to the guest
//! (monitors, access rights, views, remapped frames, single-step) goes through it and is
//! recorded. Teardown — explicit, on drop, after a handler panic, after an interrupt, after a
//! backend error — runs in the order Xen's reference consumer documents:
//!
//! 1. disable the monitors (newest first), so no new events arrive;
//! 2. turn single-stepping off on every vCPU — before touching views, because a pending
//!    `FAST_SINGLESTEP` would otherwise switch its vCPU back into a view after step 3 (found by
//!    the fault-injection test);
//! 3. restore access rights and remapped frames, switch every vCPU back to view 0;
//! 4. answer every request still taken or waiting on the ring with a safe response (version 7,
//!    `VCPU_PAUSED`, nothing else) and notify, so every paused vCPU resumes;
//! 5. reset single-step and views once more (responses published before teardown but applied
//!    only by step 4's notify can toggle them; also found by fault injection), then destroy the
//!    views this session created and release the frames it allocated;
//! 6. disable the ring.
//!
//! Each step is attempted even if an earlier one failed; the first error is returned.
//!
//! SIGKILL runs none of this. For that case the journal can also be kept on disk
//! ([`Session::persist_journal`]); the next monitor undoes what it lists with
//! [`Session::recover`], which also releases the vCPUs the dead one left paused (see
//! [`journal`] and `docs/events.md`).

use std::collections::HashSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::journal::{self, Change, Owner};
use crate::addr::{Gfn, Gpa, VcpuId, ViewId};
use crate::backend::{
    EventChannel, EventControl, EventInjection, MemAccess, Monitor, PhysicalMemoryWrite, VcpuState,
    ViewControl,
};
use crate::error::{Error, Result};
use crate::vmevent::abi::{ENTRY_SIZE, RING_SLOTS};
use crate::vmevent::codec::{
    decode_request, encode_release, encode_response, encode_safe_response, Event, Response,
};
use crate::vmevent::ring::BackRing;

/// How long teardown waits, after answering everything, for a vCPU that the answers let go of
/// to raise its next event (it waited for a ring slot).
const DRAIN_WAIT: Duration = Duration::from_millis(5);
/// The longest a stop (from another thread or a signal) waits for [`Session::run`] to see it.
pub const STOP_LATENCY: Duration = Duration::from_millis(10);
/// How often teardown tries to disable a ring that Xen reports busy, answering it in between.
const CLOSE_TRIES: u32 = 64;

/// What a backend needs for a session.
pub trait SessionBackend:
    EventChannel + EventControl + EventInjection + ViewControl + VcpuState + PhysicalMemoryWrite
{
}
impl<T> SessionBackend for T where
    T: EventChannel + EventControl + EventInjection + ViewControl + VcpuState + PhysicalMemoryWrite
{
}

/// A flag that stops [`Session::run`] at the next poll (set it from a signal handler or
/// another thread).
#[derive(Clone, Debug, Default)]
pub struct StopHandle(Arc<StopInner>);

#[derive(Debug, Default)]
struct StopInner {
    flag: Arc<AtomicBool>,
    /// The signal actions [`StopHandle::stop_on_signals`] registered, removed when the session
    /// ends (or the last handle is dropped).
    signals: Mutex<Vec<signal_hook::SigId>>,
}

impl Drop for StopInner {
    fn drop(&mut self) {
        release_signals(&self.signals);
    }
}

/// Handles whose signal actions are registered, and the flag that, once none is, lets SIGINT
/// and SIGTERM take their default action (terminate) again: signal-hook keeps its handler
/// installed after the last action is removed, and would otherwise ignore both signals for the
/// rest of the process.
struct SignalUsers {
    active: usize,
    default_action: Option<Arc<AtomicBool>>,
}

static SIGNAL_USERS: Mutex<SignalUsers> = Mutex::new(SignalUsers {
    active: 0,
    default_action: None,
});

const STOP_SIGNALS: [i32; 2] = [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM];

fn release_signals(signals: &Mutex<Vec<signal_hook::SigId>>) {
    let ids: Vec<signal_hook::SigId> = match signals.lock() {
        Ok(mut v) => std::mem::take(&mut *v),
        Err(p) => std::mem::take(&mut *p.into_inner()),
    };
    if ids.is_empty() {
        return;
    }
    for id in ids {
        signal_hook::low_level::unregister(id);
    }
    let mut users = SIGNAL_USERS.lock().unwrap_or_else(|p| p.into_inner());
    users.active = users.active.saturating_sub(1);
    if users.active == 0 {
        if let Some(d) = &users.default_action {
            d.store(true, Ordering::SeqCst);
        }
    }
}

impl StopHandle {
    /// Ask the loop to stop.
    pub fn stop(&self) {
        self.0.flag.store(true, Ordering::SeqCst);
    }

    /// Whether a stop was asked for.
    pub fn is_stopped(&self) -> bool {
        self.0.flag.load(Ordering::SeqCst)
    }

    /// Make SIGINT and SIGTERM set this flag (instead of killing the process), so the loop
    /// returns and the session is torn down. Only while the session lives: when it is dropped
    /// (or the last clone of this handle is), the actions are removed, and once no session
    /// asks for signals any more, SIGINT and SIGTERM terminate the process again (their
    /// default action; a handler the application installed itself still runs first).
    ///
    /// # Errors
    /// [`Error::Io`] if the handlers cannot be installed.
    pub fn stop_on_signals(&self) -> Result<()> {
        let mut users = SIGNAL_USERS.lock().unwrap_or_else(|p| p.into_inner());
        if users.default_action.is_none() {
            let d = Arc::new(AtomicBool::new(false));
            for sig in STOP_SIGNALS {
                signal_hook::flag::register_conditional_default(sig, Arc::clone(&d))
                    .map_err(|e| Error::io("signal handler", e))?;
            }
            users.default_action = Some(d);
        }
        let mut ids = self.0.signals.lock().unwrap_or_else(|p| p.into_inner());
        let first = ids.is_empty();
        for sig in STOP_SIGNALS {
            ids.push(
                signal_hook::flag::register(sig, Arc::clone(&self.0.flag))
                    .map_err(|e| Error::io("signal handler", e))?,
            );
        }
        if first {
            users.active += 1;
        }
        if let Some(d) = &users.default_action {
            d.store(false, Ordering::SeqCst);
        }
        Ok(())
    }

    /// Remove the signal actions [`StopHandle::stop_on_signals`] registered (the session
    /// ended).
    fn release_signals(&self) {
        release_signals(&self.0.signals);
    }
}

/// What a [`Session::run_with`] handler gets for one event: the event, and the session, so
/// that the handler can change monitors, access rights, views, frames and single-stepping
/// before the event's vCPU resumes.
pub struct EventContext<'s, 'b, B: SessionBackend> {
    session: &'s mut Session<'b, B>,
    event: &'s Event,
}

impl<'s, 'b, B: SessionBackend> EventContext<'s, 'b, B> {
    /// The event being handled.
    pub fn event(&self) -> &'s Event {
        self.event
    }

    /// The session, to make changes through (recorded and undone at teardown like any other).
    pub fn session(&mut self) -> &mut Session<'b, B> {
        self.session
    }

    /// The backend (guest memory, registers).
    pub fn backend(&self) -> &'b B {
        self.session.backend
    }

    /// End the loop after this batch of events is answered.
    pub fn stop(&self) {
        self.session.stop.stop();
    }
}

/// When [`Session::run`] returns.
#[derive(Clone, Copy, Debug)]
pub struct RunOptions {
    /// How long one wait for the event channel may take.
    pub poll: Duration,
    /// Return after this many events.
    pub max_events: Option<u64>,
    /// Return after this many consecutive waits that brought no event (the timeout hook).
    pub max_idle_polls: Option<u32>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            poll: Duration::from_millis(100),
            max_events: None,
            max_idle_polls: None,
        }
    }
}

/// Why [`Session::run`] returned, and what the events cost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunStats {
    /// Events answered.
    pub events: u64,
    /// Requests with a wrong interface version (answered safely).
    pub bad_requests: u64,
    /// Total time from taking a request to queueing its response.
    pub processing: Duration,
    /// The slowest single event.
    pub slowest: Duration,
    /// The loop stopped because of the [`StopHandle`].
    pub interrupted: bool,
}

impl RunStats {
    /// Mean processing cost per event.
    pub fn mean(&self) -> Duration {
        if self.events == 0 {
            Duration::ZERO
        } else {
            self.processing / self.events as u32
        }
    }
}

/// Options for [`Session::recover_with`]. Each one overrides one check, and only that one; no
/// option makes recovery read a journal that is not a regular file of this user with mode
/// 0600 in a directory with mode 0700 (change the file if you have checked it yourself).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecoverOptions {
    /// Recover although the journal's owner looks alive (its pid cannot be checked from here).
    pub force: bool,
    /// Recover although the journal was written for another domain identity
    /// ([`EventChannel::domain_uuid`]) or in another boot of this host, or is a format-1
    /// journal that records neither. For an operator who has read the journal
    /// ([`journal::inspect`]) and knows it describes this domain: recovery releases the frames,
    /// destroys the views and disables the ring that the journal names, whatever they are now.
    pub ignore_binding: bool,
}

/// What [`Session::recover`] found and did.
#[derive(Clone, Debug)]
pub struct Recovery {
    /// The monitor that did not tear down.
    pub owner: Owner,
    /// Changes listed in its journal (all undone).
    pub changes: usize,
    /// Whether its ring was still enabled (and was disabled).
    pub ring_was_enabled: bool,
    /// Release responses sent, one per vCPU.
    pub vcpus_released: u32,
    /// Changes that could not be undone (typically: the dead monitor had undone them already,
    /// e.g. destroyed a view, before it was killed).
    pub warnings: Vec<String>,
}

/// An event-handling session on a backend (see the module docs).
pub struct Session<'b, B: SessionBackend> {
    backend: &'b B,
    ring: BackRing,
    journal: Vec<Change>,
    /// The changes in `journal` that are recorded once however often they are made (see
    /// [`once_key`]): a hook manager or a page-in that sets the same access or single-step
    /// again and again does not grow the journal.
    recorded_once: HashSet<Change>,
    /// A request taken from the ring and not yet answered.
    in_flight: Option<[u8; ENTRY_SIZE]>,
    /// A `run_with` handler is running (it may not tear down or re-enter the loop).
    in_handler: bool,
    stop: StopHandle,
    /// The view [`Session::switch_view`] last switched every vCPU to (view 0 until then and
    /// after teardown). Responses that switch a single vCPU do not change it.
    active_view: ViewId,
    torn_down: bool,
    /// The journal on disk, if [`Session::persist_journal`] was called.
    file: Option<journal::Writer>,
}

impl<B: SessionBackend> std::fmt::Debug for Session<'_, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("journal", &self.journal)
            .field("torn_down", &self.torn_down)
            .finish()
    }
}

/// The text of a caught panic's payload (a `&str` or `String` message, or a placeholder).
pub(crate) fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".into())
}

impl<'b, B: SessionBackend> Session<'b, B> {
    /// Open a session on the backend: enable its vm_event ring (Xen: `xc_monitor_enable` and
    /// its event channel) and attach to it. Teardown disables the ring again.
    ///
    /// # Errors
    /// Backend error; on Xen EBUSY means another monitor's ring is enabled (or a killed one's:
    /// see [`Session::recover`]).
    pub fn new(backend: &'b B) -> Result<Self> {
        backend.enable_ring()?;
        Ok(Self::attach(backend))
    }

    /// A session on a ring that is already enabled.
    fn attach(backend: &'b B) -> Self {
        Session {
            backend,
            ring: BackRing::attach(backend.ring()),
            journal: Vec::new(),
            recorded_once: HashSet::new(),
            in_flight: None,
            in_handler: false,
            stop: StopHandle::default(),
            active_view: ViewId::HOST,
            torn_down: false,
            file: None,
        }
    }

    /// The backend.
    pub fn backend(&self) -> &'b B {
        self.backend
    }

    /// A handle that stops [`Session::run`].
    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// Keep the journal in a file as well (see [`journal`]), so that if this
    /// process is killed without a chance to tear down (SIGKILL, the OOM killer), the next
    /// monitor can undo what it left with [`Session::recover`]. Call it before the first change;
    /// changes made so far are written too. `target` names the monitored domain in the file
    /// (e.g. `xen:domain-3`). A clean teardown removes the file.
    ///
    /// # Errors
    /// [`Error::JournalInUse`] if the file exists (another monitor, live or dead, owns it),
    /// [`Error::Io`].
    pub fn persist_journal(
        &mut self,
        path: impl AsRef<std::path::Path>,
        target: &str,
    ) -> Result<()> {
        let owner = Owner::current(target, &self.backend.domain_uuid()?)?;
        let w = journal::Writer::create(path.as_ref(), &owner, &self.journal)?;
        self.file = Some(w);
        Ok(())
    }

    /// Append a change to the file before it is made (undoing a change that did not happen
    /// is harmless: it restores what is already there).
    fn write_ahead(&mut self, c: Change) -> Result<()> {
        if once_key(c).is_some_and(|k| self.recorded_once.contains(&k)) {
            return Ok(());
        }
        match &mut self.file {
            Some(w) => w.append(c),
            None => Ok(()),
        }
    }

    /// Record a change whose value the backend chose (a view id, a frame number): in memory
    /// first, so teardown undoes it even if the file write fails.
    fn record(&mut self, c: Change) -> Result<()> {
        self.push(c);
        self.write_ahead(c)
    }

    /// Add a change to the in-memory journal (once, for the kinds [`once_key`] names).
    fn push(&mut self, c: Change) {
        if let Some(k) = once_key(c) {
            if !self.recorded_once.insert(k) {
                return;
            }
        }
        self.journal.push(c);
    }

    /// Enable a monitor (disabled again at teardown).
    ///
    /// # Errors
    /// Backend error.
    pub fn monitor(&mut self, m: Monitor) -> Result<()> {
        self.write_ahead(Change::Monitor(m))?;
        self.backend.set_monitor(m, true)?;
        self.push(Change::Monitor(m));
        Ok(())
    }

    /// Create an altp2m view (destroyed at teardown).
    ///
    /// # Errors
    /// Backend error.
    pub fn create_view(&mut self, default_access: MemAccess) -> Result<ViewId> {
        let v = self.backend.create_view(default_access)?;
        self.record(Change::View(v))?;
        Ok(v)
    }

    /// The views this session created and has not destroyed, oldest first.
    pub fn views(&self) -> Vec<ViewId> {
        self.journal
            .iter()
            .filter_map(|c| match c {
                Change::View(v) => Some(*v),
                _ => None,
            })
            .collect()
    }

    /// The view [`Session::switch_view`] last switched every vCPU to (view 0 before any
    /// switch and after teardown). A response that switches one vCPU does not change it.
    pub fn active_view(&self) -> ViewId {
        self.active_view
    }

    /// Destroy a view this session created ([`Session::create_view`]) before teardown. The
    /// view takes its access rights, remapped frames, #VE and visibility settings with it, so
    /// they leave the journal too: teardown neither undoes them nor destroys the view again
    /// (a later view that the backend gives the same id is journaled afresh). Frames from
    /// [`Session::alloc_frame`] that the view showed stay the session's, released at
    /// teardown.
    ///
    /// The view the vCPUs were switched to with [`Session::switch_view`] is refused: switch
    /// to view 0 (or another view) first. A vCPU that a response moved into the view alone
    /// makes the backend refuse (Xen: EBUSY), and nothing changes.
    ///
    /// A journal kept on disk ([`Session::persist_journal`]) is append-only and keeps the
    /// destroyed view's lines: a recovery after a crash tries to undo them again and lists
    /// what no longer exists in [`Recovery::warnings`].
    ///
    /// # Errors
    /// [`Error::ViewRefused`] for view 0 and the active view, [`Error::UnknownView`] for a
    /// view this session did not create or destroyed already, a backend error (nothing
    /// changed then).
    pub fn destroy_view(&mut self, view: ViewId) -> Result<()> {
        if view == ViewId::HOST {
            return Err(Error::ViewRefused {
                view,
                reason: "it is the host view (view 0), which always exists",
            });
        }
        if !self.journal.contains(&Change::View(view)) {
            return Err(Error::UnknownView { view });
        }
        if self.active_view == view {
            return Err(Error::ViewRefused {
                view,
                reason: "the vCPUs were switched to it (Session::switch_view): switch them to \
                         view 0 first",
            });
        }
        self.backend.destroy_view(view)?;
        self.journal.retain(|&c| !names_view(c, view));
        self.recorded_once.retain(|&c| !names_view(c, view));
        Ok(())
    }

    /// Set the access of a frame in a view (restored at teardown).
    ///
    /// # Errors
    /// Backend error.
    pub fn set_mem_access(&mut self, view: ViewId, gfn: Gfn, access: MemAccess) -> Result<()> {
        let old = self.backend.mem_access(view, gfn)?;
        self.write_ahead(Change::Access { view, gfn, old })?;
        self.backend.set_mem_access(view, gfn, access)?;
        self.push(Change::Access { view, gfn, old });
        Ok(())
    }

    /// Undo, now, this session's access changes to a frame in a view: the frame gets back the
    /// access it had before the session's first [`Session::set_mem_access`] on it, and leaves
    /// the journal (a later change is journaled afresh). Returns whether the session had
    /// changed it. A journal kept on disk is append-only and keeps the line: a recovery after
    /// a crash restores that same access again, which is harmless.
    ///
    /// # Errors
    /// Backend error (the journal keeps the change then, and teardown retries it).
    pub fn restore_mem_access(&mut self, view: ViewId, gfn: Gfn) -> Result<bool> {
        let Some(old) = self.journal.iter().find_map(|c| match *c {
            Change::Access {
                view: v,
                gfn: g,
                old,
            } if v == view && g == gfn => Some(old),
            _ => None,
        }) else {
            return Ok(false);
        };
        self.backend.set_mem_access(view, gfn, old)?;
        let is_it = |c: &Change| matches!(*c, Change::Access { view: v, gfn: g, .. } if v == view && g == gfn);
        self.journal.retain(|c| !is_it(c));
        self.recorded_once.retain(|c| !is_it(c));
        Ok(true)
    }

    /// Switch every vCPU to a view (back to view 0 at teardown).
    ///
    /// # Errors
    /// Backend error.
    pub fn switch_view(&mut self, view: ViewId) -> Result<()> {
        self.write_ahead(Change::Switched)?;
        self.backend.switch_view(view)?;
        self.push(Change::Switched);
        self.active_view = view;
        Ok(())
    }

    /// Make `gfn` in `view` show `target`'s frame (undone at teardown).
    ///
    /// # Errors
    /// Backend error.
    pub fn change_gfn(&mut self, view: ViewId, gfn: Gfn, target: Gfn) -> Result<()> {
        self.write_ahead(Change::Remap { view, gfn })?;
        self.backend.change_gfn(view, gfn, Some(target))?;
        self.push(Change::Remap { view, gfn });
        Ok(())
    }

    /// Deliver violations on `gfn` in `view` to the guest as #VE (`suppress = false`) or keep
    /// them as events (restored to suppressed at teardown).
    ///
    /// # Errors
    /// Backend error.
    pub fn set_suppress_ve(&mut self, view: ViewId, gfn: Gfn, suppress: bool) -> Result<()> {
        self.write_ahead(Change::SuppressVe { view, gfn })?;
        self.backend.set_suppress_ve(view, gfn, suppress)?;
        self.push(Change::SuppressVe { view, gfn });
        Ok(())
    }

    /// Show or hide a view from the guest's VMFUNC (visible again at teardown).
    ///
    /// # Errors
    /// Backend error.
    pub fn set_view_visibility(&mut self, view: ViewId, visible: bool) -> Result<()> {
        self.write_ahead(Change::Visibility(view))?;
        self.backend.set_view_visibility(view, visible)?;
        self.push(Change::Visibility(view));
        Ok(())
    }

    /// Allocate an extra frame for a shadow page (released at teardown, after the views that
    /// may show it are gone).
    ///
    /// # Errors
    /// Backend error.
    pub fn alloc_frame(&mut self) -> Result<Gfn> {
        let g = self.backend.alloc_frame()?;
        self.record(Change::Frame(g))?;
        Ok(g)
    }

    /// Write one byte of guest memory (an in-place breakpoint); the old byte is written back
    /// at teardown, or by [`Session::recover`] after a crash, unless the guest has written
    /// that byte itself since. Returns the old byte.
    ///
    /// # Errors
    /// Backend error (the address is not backed).
    pub fn poke(&mut self, gpa: Gpa, byte: u8) -> Result<u8> {
        let mut old = [0u8; 1];
        self.backend.read_physical(gpa, &mut old)?;
        let change = Change::Poke {
            gpa,
            old: old[0],
            new: byte,
        };
        self.write_ahead(change)?;
        self.backend.write_physical(gpa, &[byte])?;
        self.push(change);
        Ok(old[0])
    }

    /// Turn single-stepping of a vCPU on (off at teardown).
    ///
    /// # Errors
    /// Backend error.
    pub fn singlestep(&mut self, vcpu: VcpuId, enable: bool) -> Result<()> {
        self.write_ahead(Change::Singlestep(vcpu))?;
        self.backend.set_vcpu_singlestep(vcpu, enable)?;
        self.push(Change::Singlestep(vcpu));
        Ok(())
    }

    /// Answer every request on the ring with `handler`. Returns when `opts` says so or the stop
    /// handle is set. A panicking handler's event is answered safely, the session is torn
    /// down, and [`Error::HandlerPanicked`] is returned. The same loop as
    /// [`Session::run_with`], for handlers that only look at the event and cannot fail.
    ///
    /// # Errors
    /// Backend errors (the session is torn down on drop), [`Error::HandlerPanicked`].
    pub fn run(
        &mut self,
        opts: &RunOptions,
        mut handler: impl FnMut(&Event) -> Response,
    ) -> Result<RunStats> {
        self.run_with(opts, |ctx| {
            Ok::<_, std::convert::Infallible>(handler(ctx.event()))
        })
    }

    /// Answer every request on the ring with `handler`, which gets an [`EventContext`]: the
    /// event, and this session to make changes through (monitors, access rights, views,
    /// frames, single-step), applied before the event's vCPU resumes. Returns when `opts` says
    /// so or the stop handle is set.
    ///
    /// A handler that returns an error or panics: its event gets the safe answer (the vCPU
    /// resumes, nothing changed), the rest of the batch is still answered, the session is torn
    /// down, and [`Error::Handler`] (with the handler's error as its source) or
    /// [`Error::HandlerPanicked`] is returned.
    ///
    /// # Errors
    /// Backend errors (the session is torn down on drop), [`Error::Handler`],
    /// [`Error::HandlerPanicked`].
    pub fn run_with<E>(
        &mut self,
        opts: &RunOptions,
        mut handler: impl FnMut(&mut EventContext<'_, 'b, B>) -> std::result::Result<Response, E>,
    ) -> Result<RunStats>
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        if self.in_handler {
            return Err(Error::InHandler("Session::run"));
        }
        let mut stats = RunStats::default();
        let mut idle = 0u32;
        let mut req = [0u8; ENTRY_SIZE];
        let mut out = [0u8; ENTRY_SIZE];
        let backend = self.backend;
        loop {
            if self.stop.is_stopped() {
                stats.interrupted = true;
                return Ok(stats);
            }
            if opts.max_events.is_some_and(|m| stats.events >= m) {
                return Ok(stats);
            }
            let signalled = self.wait_for_events(opts.poll)?;
            let page = backend.ring();
            let mut answered = 0;
            let mut failed: Option<Error> = None;
            while self.ring.get_request(page, &mut req) {
                self.in_flight = Some(req);
                let t0 = Instant::now();
                match decode_request(&req) {
                    Ok(ev) => {
                        self.in_handler = true;
                        let outcome = catch_unwind(AssertUnwindSafe(|| {
                            handler(&mut EventContext {
                                session: &mut *self,
                                event: &ev,
                            })
                        }));
                        self.in_handler = false;
                        match outcome {
                            Ok(Ok(rsp)) => {
                                // The event is queued before the answer unpauses the vCPU. If
                                // Xen refuses it, the vCPU is still answered as the handler said
                                // and the loop ends with the error (teardown turns the monitors
                                // off, so a guest int3 then reaches the guest by itself).
                                if let Some(inj) = rsp.injection() {
                                    if let Err(e) = backend.inject(ev.vcpu, inj) {
                                        failed.get_or_insert(e);
                                    }
                                }
                                encode_response(&req, &ev, &rsp, &mut out)
                            }
                            Ok(Err(e)) => {
                                encode_safe_response(&req, &mut out);
                                failed.get_or_insert(Error::Handler(Box::new(e)));
                            }
                            Err(p) => {
                                encode_safe_response(&req, &mut out);
                                failed.get_or_insert(Error::HandlerPanicked {
                                    message: panic_message(p.as_ref()),
                                });
                            }
                        }
                    }
                    Err(_) => {
                        stats.bad_requests += 1;
                        encode_safe_response(&req, &mut out);
                    }
                }
                // A response slot always exists for a request taken.
                let _ = self.ring.put_response(page, &out);
                self.in_flight = None;
                let dt = t0.elapsed();
                stats.processing += dt;
                stats.slowest = stats.slowest.max(dt);
                stats.events += 1;
                answered += 1;
                if failed.is_some() || opts.max_events.is_some_and(|m| stats.events >= m) {
                    break;
                }
            }
            if answered > 0 {
                self.ring.push_responses(page);
                backend.notify()?;
                idle = 0;
            } else if !signalled {
                idle += 1;
                if opts.max_idle_polls.is_some_and(|m| idle >= m) {
                    return Ok(stats);
                }
            }
            if let Some(e) = failed {
                self.teardown()?;
                return Err(e);
            }
        }
    }

    /// Wait for the event channel at most `poll`, in slices of at most [`STOP_LATENCY`], so that
    /// a stop from another thread or a signal ends the wait within that time.
    fn wait_for_events(&self, poll: Duration) -> Result<bool> {
        let start = Instant::now();
        loop {
            let left = poll.saturating_sub(start.elapsed());
            if self.backend.wait(left.min(STOP_LATENCY))? {
                return Ok(true);
            }
            if left <= STOP_LATENCY || self.stop.is_stopped() {
                return Ok(false);
            }
        }
    }

    /// Undo everything and answer everything (see the module docs). Idempotent.
    ///
    /// # Errors
    /// The first backend error; every step is still attempted.
    pub fn teardown(&mut self) -> Result<()> {
        if self.in_handler {
            return Err(Error::InHandler("Session::teardown"));
        }
        if self.torn_down {
            return Ok(());
        }
        self.torn_down = true;
        let mut errors = self.undo();
        if errors.is_empty() {
            match self.file.take() {
                Some(w) => w.remove(),
                None => Ok(()),
            }
        } else {
            // Keep the file: the next monitor's recovery retries what failed here.
            Err(errors.swap_remove(0))
        }
    }

    /// Teardown's steps; every error, in order.
    fn undo(&mut self) -> Vec<Error> {
        let b = self.backend;
        let mut errors = Vec::new();
        let mut note = |r: Result<()>| {
            if let Err(e) = r {
                errors.push(e);
            }
        };
        let journal = std::mem::take(&mut self.journal);
        self.recorded_once.clear();
        // 1. monitors
        for c in journal.iter().rev() {
            if let Change::Monitor(m) = c {
                note(b.set_monitor(*m, false));
            }
        }
        // 2. single-step off everywhere: this also cancels a pending FAST_SINGLESTEP, which
        //    would otherwise move its vCPU back into a view after step 3.
        for v in 0..b.vcpu_count() {
            note(b.set_vcpu_singlestep(VcpuId(v), false));
        }
        // 3. access, remaps, back to view 0
        let mut views_used = false;
        for c in journal.iter().rev() {
            match *c {
                Change::Access { view, gfn, old } => note(b.set_mem_access(view, gfn, old)),
                Change::Remap { view, gfn } => note(b.change_gfn(view, gfn, None)),
                Change::SuppressVe { view, gfn } => note(b.set_suppress_ve(view, gfn, true)),
                Change::Visibility(view) => note(b.set_view_visibility(view, true)),
                Change::Poke { gpa, old, new } => note(unpoke(b, gpa, old, new)),
                Change::Switched | Change::View(_) => views_used = true,
                _ => {}
            }
        }
        if views_used {
            note(b.switch_view(ViewId::HOST));
        }
        // 4. answer everything (the in-flight request first), notify
        note(self.answer_all());
        // 5. responses published before teardown but applied only by that notify (e.g. after a
        //    failed notify) may still carry TOGGLE_SINGLESTEP or ALTERNATE_P2M: reset both
        //    again, then destroy the views, once no vCPU can be in them.
        for v in 0..b.vcpu_count() {
            note(b.set_vcpu_singlestep(VcpuId(v), false));
        }
        if views_used {
            note(b.switch_view(ViewId::HOST));
        }
        for c in journal.iter().rev() {
            if let Change::View(v) = c {
                note(b.destroy_view(*v));
            }
        }
        for c in journal.iter().rev() {
            if let Change::Frame(g) = c {
                note(b.free_frame(*g));
            }
        }
        self.active_view = ViewId::HOST;
        // 6. the ring
        note(self.close_ring());
        errors
    }

    /// Disable the ring. Xen refuses (EBUSY) while a vCPU waits for a ring slot; such a vCPU
    /// gets its slot once the ring is answered, and then raises its event: so answer, let the
    /// guest run, and try again, at most [`CLOSE_TRIES`] times. The last error is returned if
    /// the ring stays busy.
    fn close_ring(&mut self) -> Result<()> {
        let mut tries = 0;
        loop {
            tries += 1;
            match self.backend.close_ring() {
                Ok(()) => return Ok(()),
                Err(e) if tries >= CLOSE_TRIES => return Err(e),
                Err(_) => {
                    // An error here is the answer to a ring that is failing anyway; the
                    // close_ring error says what is wrong.
                    let _ = self.answer_all();
                }
            }
        }
    }

    /// Undo what a monitor that was killed before its teardown left in the domain, from the
    /// journal it kept with [`Session::persist_journal`]. `Ok(None)` if there is no journal at
    /// `path` (nothing to recover). Call it before attaching a new session.
    ///
    /// In order: disable the dead monitor's ring ([`EventChannel::abandon_ring`]); on a fresh
    /// ring (Xen changes host-view access rights only while a monitor ring is enabled), undo
    /// its changes as [`Session::teardown`] does — monitors and single-step off, access rights,
    /// remaps, #VE and visibility restored, every vCPU to view 0, events raised meanwhile
    /// answered, views destroyed, frames released; then release the vCPUs it left paused. Xen
    /// keeps a vCPU paused on an unanswered sync event even after the ring is gone, and the
    /// only way to resume it is a `VCPU_PAUSED` response, so recovery enables one more fresh
    /// ring, sends one release response per vCPU ([`encode_release`]; vCPUs that are not
    /// paused ignore it), notifies and disables that ring. The write each paused vCPU was
    /// waiting on is dropped by Xen (as if denied). The journal is removed once the vCPUs are
    /// released.
    ///
    /// The journal is trusted only if it is a regular file of this process's user with mode
    /// 0600, in a directory of that user with mode 0700 (never through a symbolic link, never
    /// blocking on a FIFO), at most [`journal::MAX_JOURNAL_BYTES`] long, and written in this
    /// boot of the host for this domain ([`EventChannel::domain_uuid`]).
    ///
    /// # Errors
    /// [`Error::JournalRefused`] for a journal that fails those checks (the message says which,
    /// nothing is changed), [`Error::JournalInUse`] if the journal's owner is still running (or
    /// is this process), [`Error::Malformed`] for a file that is not a journal, a backend error that kept the
    /// ring from being disabled or the vCPUs from being released (every step is still
    /// attempted; the journal is kept for another try). Changes that cannot be undone are
    /// reported in [`Recovery::warnings`].
    pub fn recover(backend: &'b B, path: impl AsRef<std::path::Path>) -> Result<Option<Recovery>> {
        Self::recover_with(backend, path, &RecoverOptions::default())
    }

    /// [`Session::recover`] with options: `force` recovers even when the journal's owner looks
    /// alive, for journals whose process id cannot be checked from here (written in another
    /// PID namespace, such as another container, or by a process whose id was reused). The
    /// caller must know that no monitor is attached: recovering under a live one takes its
    /// ring away and undoes its changes. `ignore_binding` recovers from a journal written for
    /// another domain identity or host boot (see [`RecoverOptions`]).
    ///
    /// # Errors
    /// As [`Session::recover`] (never [`Error::JournalInUse`] with `force`; never
    /// [`Error::JournalRefused`] for the domain or boot with `ignore_binding`).
    pub fn recover_with(
        backend: &'b B,
        path: impl AsRef<std::path::Path>,
        opts: &RecoverOptions,
    ) -> Result<Option<Recovery>> {
        let path = path.as_ref();
        match std::fs::symlink_metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(path, e)),
            Ok(_) => {}
        }
        let (owner, changes) = journal::read(path)?;
        if !opts.ignore_binding {
            if let Some(why) = owner.mismatch(&backend.domain_uuid()?, &journal::boot_id()?) {
                return Err(Error::JournalRefused {
                    path: path.to_path_buf(),
                    reason: format!(
                        "{why}; nothing was changed (RecoverOptions::ignore_binding overrides \
                         this after you have checked the journal)"
                    ),
                });
            }
        }
        if !opts.force && (owner.pid == std::process::id() || owner.is_alive()) {
            return Err(Error::JournalInUse {
                path: path.to_path_buf(),
                pid: owner.pid,
                alive: true,
            });
        }
        let b = backend;
        // Failures to undo a change are kept as warnings (the dead monitor may have undone
        // part of it before it died); failures to disable its ring or to release the vCPUs
        // are errors.
        let ring_was_enabled = b.abandon_ring()?;
        // Undo the changes as a teardown does, on a fresh ring: Xen changes host-view access
        // only while a monitor ring is enabled (ENODEV otherwise), and events that running
        // vCPUs raise until the monitors are off get answered.
        let mut s = Session::new(b)?;
        s.journal = changes.clone();
        s.torn_down = true;
        let warnings: Vec<String> = s.undo().iter().map(|e| e.to_string()).collect();
        drop(s);
        // Release vCPUs paused on the dead ring: nothing can raise an event now (monitors,
        // single-step and restrictions are gone), so the fresh ring carries only these.
        let mut released = 0u32;
        let mut critical = None;
        let release = (|| -> Result<()> {
            b.enable_ring()?;
            let page = b.ring();
            let mut ring = BackRing::attach(page);
            let mut out = [0u8; ENTRY_SIZE];
            let mut in_batch = 0;
            for v in 0..b.vcpu_count() {
                encode_release(VcpuId(v), &mut out);
                ring.put_unsolicited(page, &out);
                released += 1;
                in_batch += 1;
                if in_batch == RING_SLOTS || v + 1 == b.vcpu_count() {
                    b.notify()?;
                    in_batch = 0;
                }
            }
            // Disabling fails (EBUSY) while a vCPU waits for a slot: answer and retry.
            let mut tries = 0;
            loop {
                tries += 1;
                match b.close_ring() {
                    Ok(()) => break Ok(()),
                    Err(e) if tries >= CLOSE_TRIES => break Err(e),
                    Err(_) => {
                        let mut req = [0u8; ENTRY_SIZE];
                        while ring.get_request(page, &mut req) {
                            encode_safe_response(&req, &mut out);
                            let _ = ring.put_response(page, &out);
                        }
                        ring.push_responses(page);
                        b.notify()?;
                        b.wait(DRAIN_WAIT)?;
                    }
                }
            }
        })();
        if let Err(e) = release {
            let _ = b.close_ring();
            critical = Some(e);
        }
        if let Some(e) = critical {
            return Err(e);
        }
        std::fs::remove_file(path).map_err(|e| Error::io(path, e))?;
        Ok(Some(Recovery {
            owner,
            changes: changes.len(),
            ring_was_enabled,
            vcpus_released: released,
            warnings,
        }))
    }

    /// Answer the in-flight request and everything waiting, with safe responses, and notify.
    /// Repeats while answering releases more requests (vCPUs retrying), within a bound.
    fn answer_all(&mut self) -> Result<()> {
        let page = self.backend.ring();
        let mut out = [0u8; ENTRY_SIZE];
        let mut req = [0u8; ENTRY_SIZE];
        for _round in 0..64 {
            let mut n = 0;
            if let Some(r) = self.in_flight.take() {
                encode_safe_response(&r, &mut out);
                let _ = self.ring.put_response(page, &out);
                n += 1;
            }
            while self.ring.get_request(page, &mut req) {
                encode_safe_response(&req, &mut out);
                let _ = self.ring.put_response(page, &out);
                n += 1;
            }
            self.ring.push_responses(page);
            // Teardown must not give up on a transient failure (EINTR, EAGAIN): retry.
            let mut tries = 0;
            while let Err(e) = self.backend.notify() {
                tries += 1;
                if tries >= 3 {
                    return Err(e);
                }
            }
            if n == 0 {
                // Let the guest run once more: it may raise nothing now that monitors are off,
                // but a vCPU that waited for a slot on a full ring is woken by that notify and
                // queues its event a moment later. Wait that moment.
                if !self.backend.wait(DRAIN_WAIT).unwrap_or(false) {
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}

/// The key under which a change is recorded only once, for changes whose undo does not depend
/// on how many times they were made: a monitor or single-step turned off, a remap or #VE
/// setting reset, the views switched back; and access rights, whose first recorded old value
/// is the one teardown restores (later ones only record what xenvmi itself set). `None` for
/// changes that must each be undone (views, frames, pokes).
fn once_key(c: Change) -> Option<Change> {
    match c {
        Change::Access { view, gfn, .. } => Some(Change::Access {
            view,
            gfn,
            old: MemAccess::all(),
        }),
        Change::Monitor(_)
        | Change::Remap { .. }
        | Change::SuppressVe { .. }
        | Change::Visibility(_)
        | Change::Switched
        | Change::Singlestep(_) => Some(c),
        Change::View(_) | Change::Frame(_) | Change::Poke { .. } => None,
    }
}

/// Whether a change is to one view's state (its existence, access rights, remaps, #VE,
/// visibility), which goes when the view is destroyed.
fn names_view(c: Change, view: ViewId) -> bool {
    match c {
        Change::View(v) | Change::Visibility(v) => v == view,
        Change::Access { view: v, .. }
        | Change::Remap { view: v, .. }
        | Change::SuppressVe { view: v, .. } => v == view,
        Change::Monitor(_)
        | Change::Frame(_)
        | Change::Switched
        | Change::Singlestep(_)
        | Change::Poke { .. } => false,
    }
}

/// Undo one [`Change::Poke`]: write `old` back if the byte still holds what was written; if
/// the guest has changed it since, its own byte stays.
fn unpoke<B: SessionBackend>(b: &B, gpa: Gpa, old: u8, new: u8) -> Result<()> {
    let mut now = [0u8; 1];
    b.read_physical(gpa, &mut now)?;
    if now[0] == new {
        b.write_physical(gpa, &[old])?;
    }
    Ok(())
}

impl<B: SessionBackend> Drop for Session<'_, B> {
    fn drop(&mut self) {
        if let Err(e) = self.teardown() {
            eprintln!("xenvmi: teardown after drop failed: {e}");
        }
        // The session is over: SIGINT and SIGTERM must not keep setting its flag.
        self.stop.release_signals();
    }
}
