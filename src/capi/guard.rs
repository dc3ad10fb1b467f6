//! A policy guard from C: [`xvmi_guard_start`] runs a policy set ([`xvmi_policy_set`]) over a
//! domain as `xenvmi::policy::Guard` does (its own event session: monitors, write protection,
//! each event answered by the policies), and delivers each alert, in the schema of
//! `docs/alerts.md`, as one JSON object to a C callback and optionally to a JSON-lines file
//! and a syslog server. [`xvmi_guard_run`] is the event loop (as `xvmi_session_run`),
//! [`xvmi_guard_stop`] stops it from another thread or a signal handler,
//! [`xvmi_guard_teardown`] and [`xvmi_guard_free`] restore everything.

use std::ffi::{c_char, c_void, CString};
use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, TryLockError};
use std::time::Duration;

use super::domain::{xvmi_domain, Domain, DomainShared};
use super::error::*;
use super::handles::{arg_handle, register, unregister, Handle};
use super::os::{xvmi_os, Os};
use super::policy::{build, xvmi_policy_set};
use super::session::{xvmi_run_options, xvmi_run_stats};
use crate::alert::syslog::Syslog;
use crate::alert::{Alert, Callback, JsonLines, Sinks, Vm};
use crate::event::session::{RunOptions, StopHandle};
use crate::os::linux::Linux;
use crate::policy::{Guard, GuardOptions, GuardStats, ViewMode};

/// [`xvmi_guard_options::view`]: write protection in an altp2m view of the guard's own,
/// switched in on every vCPU (the default).
pub const XVMI_GUARD_VIEW_OWN: u32 = 0;
/// [`xvmi_guard_options::view`]: write protection in the host p2m (view 0): no altp2m needed.
pub const XVMI_GUARD_VIEW_HOST: u32 = 1;

/// How a guard runs. Zero-initialise it and set what you need: all zero is an altp2m view of
/// its own, a run until stopped, no capture directory and no sink besides the callback.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct xvmi_guard_options {
    /// [`XVMI_GUARD_VIEW_OWN`] or [`XVMI_GUARD_VIEW_HOST`].
    pub view: u32,
    /// Always zero.
    pub reserved: u32,
    /// When each [`xvmi_guard_run`] returns (as for `xvmi_session_run`).
    pub run: xvmi_run_options,
    /// The VM's name as alerts give it (`vm.name`); NULL: none. The UUID is the domain's.
    pub vm_name: *const c_char,
    /// An existing directory for the captures of remediations that capture; NULL: none
    /// (a policy set with such a remediation is then refused).
    pub capture_dir: *const c_char,
    /// Also send each alert as syslog RFC 5424 with CEF to `udp://HOST:PORT` or
    /// `tcp://HOST:PORT`; NULL: no.
    pub syslog: *const c_char,
    /// Also append each alert as one JSON line to this file (created mode 0600 if missing;
    /// a symbolic link, FIFO or anything but a regular file is refused); NULL: no.
    pub json_lines: *const c_char,
}

/// Called with each alert: `alert_json` is one JSON object in the schema of `docs/alerts.md`
/// (NUL-terminated, valid only during the call). Called on the thread running
/// [`xvmi_guard_run`], before the event's vCPU resumes. It may call [`xvmi_guard_stop`] and
/// read guest memory through memory handles; other calls on its own guard are refused
/// ([`XVMI_ERR_INVALID_ARGUMENT`] / [`XVMI_ERR_INVALID_HANDLE`]). It must not unwind.
pub type xvmi_alert_callback =
    Option<unsafe extern "C" fn(userdata: *mut c_void, alert_json: *const c_char)>;

/// What a guard saw and did, over all its runs so far.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct xvmi_guard_stats {
    /// The event loop's statistics (`interrupted`: the last run ended on a stop request).
    pub run: xvmi_run_stats,
    /// Alerts raised.
    pub alerts: u64,
    /// Events refused.
    pub denied: u64,
    /// Writes to protected memory judged legitimate (the kernel's own text patching).
    pub legitimate_writes: u64,
    /// Alerts a sink failed to take (the callback never fails; a file or syslog may).
    pub undelivered: u64,
    /// Captures written (their paths are in the alerts' `capture`).
    pub captures: u64,
    /// Captures that failed.
    pub capture_failures: u64,
    /// The longest a paused capture held the guest, in nanoseconds.
    pub longest_capture_pause_ns: u64,
    /// 1 when a remediation keeps the domain paused (the run ended because of it): resume it
    /// with [`xvmi_guard_resume_domain`], or tear the guard down.
    pub domain_paused: u32,
    /// Write-protected frames.
    pub protected_pages: u32,
}

fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn stats_to_c(s: &GuardStats, protected_pages: usize) -> xvmi_guard_stats {
    xvmi_guard_stats {
        run: xvmi_run_stats {
            events: s.run.events,
            bad_requests: s.run.bad_requests,
            processing_ns: ns(s.run.processing),
            slowest_ns: ns(s.run.slowest),
            interrupted: s.run.interrupted,
        },
        alerts: s.alerts,
        denied: s.denied,
        legitimate_writes: s.legitimate_writes,
        undelivered: s.undelivered,
        captures: s.captures.len() as u64,
        capture_failures: s.capture_failures,
        longest_capture_pause_ns: s.longest_capture_pause.map_or(0, ns),
        domain_paused: u32::from(s.domain_paused),
        protected_pages: u32::try_from(protected_pages).unwrap_or(u32::MAX),
    }
}

struct Inner {
    /// Borrows `domain`'s backend and `os`'s kernel. Declared first so that it is dropped
    /// (torn down) before them. `None` once torn down.
    guard: Option<Guard<'static, Domain>>,
    /// Held, never read: the guard borrows the kernel inside it.
    _os: Arc<Os>,
    domain: Arc<DomainShared>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The guard first (its teardown uses the backend), then the domain is free for
        // another session. After xvmi_guard_teardown that was done already (and another
        // session may be open on the domain by now).
        if let Some(g) = self.guard.take() {
            drop(g);
            self.domain.guest_ran();
            self.domain.session_open.store(false, Ordering::SeqCst);
        }
    }
}

/// A policy set running over a domain (`xenvmi::policy::Guard`, `docs/policies.md`): its
/// event session, write protection and alert sinks. It keeps its domain and kernel alive.
pub struct xvmi_guard {
    /// Shared with other threads and signal handlers (xvmi_guard_stop).
    stop: StopHandle,
    /// One call at a time: a second (another thread, the alert callback) is refused.
    inner: Mutex<Inner>,
}

impl Handle for xvmi_guard {
    const KIND: &'static str = "xvmi_guard";
}

/// Exclusive use of a guard's inside for one call.
fn with_guard<R>(g: &xvmi_guard, f: impl FnOnce(&mut Inner) -> Result<R, Fail>) -> Result<R, Fail> {
    let mut inner =
        match g.inner.try_lock() {
            Ok(i) => i,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => return Err(Fail::invalid(
                "the guard is in use by another call (xvmi_guard_run is running: from its alert \
                 callback or another thread, only xvmi_guard_stop may be called)",
            )),
        };
    f(&mut inner)
}

/// The alert sinks: the callback, a JSON-lines file, a syslog server.
///
/// # Safety
/// `callback` does not unwind; `userdata` is what it expects.
unsafe fn sinks(
    callback: xvmi_alert_callback,
    userdata: *mut c_void,
    json_lines: Option<&str>,
    syslog: Option<&str>,
) -> Result<Sinks, Fail> {
    let mut sinks = Sinks::new();
    if let Some(cb) = callback {
        sinks.push(Box::new(Callback(move |a: &Alert| {
            // serde_json escapes every control character, NUL included: no interior NUL.
            let json = CString::new(a.to_json().to_string()).map_err(|e| crate::Error::Config {
                what: "alert".into(),
                reason: format!("its JSON holds a NUL byte: {e}"),
            })?;
            // SAFETY: a C function pointer from the caller (contract: it does not unwind),
            // with its userdata and a string that lives until it returns.
            unsafe { cb(userdata, json.as_ptr()) };
            Ok(())
        })));
    }
    if let Some(path) = json_lines {
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            // O_NONBLOCK: a FIFO without a reader is refused (ENXIO) instead of blocking.
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| Fail::from(crate::Error::io(path, e)))?;
        let meta = file
            .metadata()
            .map_err(|e| Fail::from(crate::Error::io(path, e)))?;
        if !meta.is_file() {
            return Err(Fail::new(
                XVMI_ERR_IO,
                format!("{path}: the JSON-lines alert file is not a regular file"),
            ));
        }
        sinks.push(Box::new(JsonLines::new(file, path)));
    }
    if let Some(target) = syslog {
        sinks.push(Box::new(Syslog::connect(target)?));
    }
    if sinks.is_empty() {
        return Err(Fail::new(
            XVMI_ERR_NULL_POINTER,
            "`callback` is NULL and the options name no other alert sink (json_lines, syslog): \
             alerts would go nowhere",
        ));
    }
    Ok(sinks)
}

/// Start guarding `domain` with the policies of `policies`, whose kernel is `os` (a Linux
/// kernel handle of this guest, `xvmi_os_linux_discover` on a memory handle of the domain):
/// every policy is planned (symbols resolved, guest memory read) and the sinks opened before
/// anything in the guest changes; then an event session is opened on the domain (one at a
/// time: no `xvmi_session` may be open on it) and the monitors and write protection set up.
/// On any failure nothing stays changed. Events are handled by [`xvmi_guard_run`].
///
/// `options` NULL: all defaults. Alerts go to `callback` (with `userdata`), and to the sinks
/// `options` names; at least one is needed.
///
/// # Errors
/// [`XVMI_ERR_INVALID_ARGUMENT`]: an empty set, a bad `options.view` or `reserved`, a
/// remediation that captures without `capture_dir` (or one that is not a directory), a
/// syslog target that does not parse or answer, a session already open on the domain;
/// [`XVMI_ERR_UNSUPPORTED`] for a Windows `os`; [`XVMI_ERR_MISSING_SYMBOL`] naming what a
/// policy needs from the kernel; [`XVMI_ERR_IO`] naming the JSON-lines file;
/// [`XVMI_ERR_BACKEND`] from the hypervisor.
///
/// # Safety
/// `domain`, `os` and `policies` are NULL or live handles; `options` is NULL or points at an
/// initialised [`xvmi_guard_options`] whose strings are NULL or NUL-terminated; `callback`
/// (if not NULL) does not unwind; `out` is valid for a write. On success `*out` is a new
/// handle to release with [`xvmi_guard_free`].
#[no_mangle]
pub unsafe extern "C" fn xvmi_guard_start(
    domain: *const xvmi_domain,
    os: *const xvmi_os,
    policies: *const xvmi_policy_set,
    options: *const xvmi_guard_options,
    callback: xvmi_alert_callback,
    userdata: *mut c_void,
    out: *mut *mut xvmi_guard,
) -> xvmi_result {
    boundary(|| {
        let d = arg_handle(domain, "domain")?;
        let o = arg_handle(os, "os")?;
        let p = arg_handle(policies, "policies")?;
        let out = arg_out(out, "out")?;
        let opts = if options.is_null() {
            None
        } else {
            // SAFETY: non-NULL, and an initialised xvmi_guard_options by the contract.
            Some(*unsafe { arg_ref(options, "options") }?)
        };
        let text = |p: *const c_char, name: &str| -> Result<Option<String>, Fail> {
            // SAFETY: each string of `options` is NULL or NUL-terminated (the contract).
            Ok(unsafe { arg_opt_str(p, name) }?.map(str::to_owned))
        };
        let (view, run, vm_name, capture_dir, syslog, json_lines) = match &opts {
            None => (
                XVMI_GUARD_VIEW_OWN,
                xvmi_run_options::default(),
                None,
                None,
                None,
                None,
            ),
            Some(o) => {
                if o.reserved != 0 {
                    return Err(Fail::invalid(format!(
                        "`options.reserved` is {:#x}: it must be 0",
                        o.reserved
                    )));
                }
                (
                    o.view,
                    o.run,
                    text(o.vm_name, "options.vm_name")?,
                    text(o.capture_dir, "options.capture_dir")?,
                    text(o.syslog, "options.syslog")?,
                    text(o.json_lines, "options.json_lines")?,
                )
            }
        };
        let view = match view {
            XVMI_GUARD_VIEW_OWN => ViewMode::Own,
            XVMI_GUARD_VIEW_HOST => ViewMode::Host,
            v => {
                return Err(Fail::invalid(format!(
                    "`options.view` is {v}: not XVMI_GUARD_VIEW_OWN (0) or XVMI_GUARD_VIEW_HOST (1)"
                )))
            }
        };
        let shared = Arc::clone(&d.shared);
        let kernel = Arc::clone(&o.os);
        // SAFETY: the kernel lives inside `kernel`'s Arc allocation, which does not move and
        // is kept by `Inner::_os` until after the guard is dropped (`Inner`'s drop drops the
        // guard first); `Os` is never mutated (shared read-only by every handle holding it).
        let Some(linux) = (unsafe { &*Arc::as_ptr(&kernel) }).linux() else {
            return Err(Fail::new(
                XVMI_ERR_UNSUPPORTED,
                "the policies guard Linux kernels; `os` is a Windows kernel",
            ));
        };
        let linux: &'static Linux = linux;
        if shared.session_open.load(Ordering::SeqCst) {
            return Err(busy_domain());
        }
        let set = build(&p.entries())?;
        // SAFETY: `callback` does not unwind (the contract); `userdata` is the caller's.
        let sink = unsafe { sinks(callback, userdata, json_lines.as_deref(), syslog.as_deref()) }?;
        let gopts = GuardOptions {
            view,
            run: RunOptions {
                poll: Duration::from_millis(if run.poll_ms == 0 {
                    100
                } else {
                    u64::from(run.poll_ms)
                }),
                max_events: (run.max_events != 0).then_some(run.max_events),
                max_idle_polls: (run.max_idle_polls != 0).then_some(run.max_idle_polls),
            },
            vm: Vm {
                name: vm_name,
                ..Vm::default()
            },
            capture_dir: capture_dir.map(Into::into),
            ..GuardOptions::default()
        };
        if shared
            .session_open
            .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            return Err(busy_domain());
        }
        // SAFETY: the backend lives inside the Arc's allocation, which does not move and is
        // kept alive by `Inner::domain` for as long as the guard exists: `Inner`'s drop drops
        // the guard before its fields `_os` and `domain` are dropped. Nothing takes a `&mut`
        // to the backend.
        let backend: &'static Domain = unsafe { &*std::ptr::addr_of!(shared.backend) };
        let guard = match Guard::new(backend, linux, set, Box::new(sink), gopts) {
            Ok(g) => g,
            Err(e) => {
                shared.guest_ran();
                shared.session_open.store(false, Ordering::SeqCst);
                return Err(e.into());
            }
        };
        let h = Box::new(xvmi_guard {
            stop: guard.stop_handle(),
            inner: Mutex::new(Inner {
                guard: Some(guard),
                _os: kernel,
                domain: shared,
            }),
        });
        // SAFETY: checked by arg_out.
        unsafe { put(out, register(h)) };
        Ok(())
    })
}

/// Answer events with the policies until the run options of [`xvmi_guard_start`] say to
/// return, [`xvmi_guard_stop`] is called, a remediation keeps the domain paused
/// (`domain_paused` in the statistics; like a stop, this is final), or an error. Every event is answered. `*out_stats`
/// (if not NULL) receives the statistics so far, on success.
///
/// # Errors
/// [`XVMI_ERR_INVALID_ARGUMENT`] after teardown; the event loop's errors
/// ([`XVMI_ERR_BACKEND`], [`XVMI_ERR_HANDLER`]): the guard's session is then torn down and
/// every pause it took released.
///
/// # Safety
/// `guard` is NULL or a live handle; `out_stats` is NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn xvmi_guard_run(
    guard: *const xvmi_guard,
    out_stats: *mut xvmi_guard_stats,
) -> xvmi_result {
    boundary(|| {
        let g = arg_handle(guard, "guard")?;
        let out = if out_stats.is_null() {
            None
        } else {
            Some(arg_out(out_stats, "out_stats")?)
        };
        let st = with_guard(&g, |i| {
            let guard = i.guard.as_mut().ok_or_else(torn_down)?;
            let r = guard.run();
            i.domain.guest_ran();
            let s = r?;
            Ok(stats_to_c(&s, guard.protected_pages()))
        })?;
        if let Some(o) = out {
            // SAFETY: checked by arg_out.
            unsafe { put(o, st) };
        }
        Ok(())
    })
}

fn busy_domain() -> Fail {
    Fail::invalid("a session or guard is already open on this domain (free it first)")
}

fn torn_down() -> Fail {
    Fail::invalid("the guard was torn down: free it and start a new one")
}

/// Ask [`xvmi_guard_run`] to return after answering the events it has taken. Thread-safe and
/// async-signal-safe (one atomic store); callable from the alert callback. It does not set
/// the last error. The stop is final for the guard.
///
/// # Safety
/// `guard` is NULL or a live handle that is not being freed.
#[no_mangle]
pub unsafe extern "C" fn xvmi_guard_stop(guard: *const xvmi_guard) -> xvmi_result {
    if guard.is_null() {
        return XVMI_ERR_NULL_POINTER;
    }
    if !guard.is_aligned() {
        return XVMI_ERR_INVALID_ARGUMENT;
    }
    catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: live handle (contract); only the `stop` field is referenced, never
        // `inner`, which another thread may hold. StopHandle is Sync.
        let stop = unsafe { &*std::ptr::addr_of!((*guard).stop) };
        stop.stop();
        XVMI_OK
    }))
    .unwrap_or(XVMI_ERR_PANIC)
}

/// Make SIGINT and SIGTERM stop the guard (as [`xvmi_guard_stop`]) instead of killing the
/// process, so it is torn down. Undone when the guard is freed.
///
/// # Safety
/// `guard` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn xvmi_guard_stop_on_signals(guard: *const xvmi_guard) -> xvmi_result {
    boundary(|| {
        let g = arg_handle(guard, "guard")?;
        g.stop.stop_on_signals()?;
        Ok(())
    })
}

/// Resume a domain a remediation left paused (a `pause` without a `resume`). Such a
/// remediation also ended monitoring (`policy::Step::Pause`): later runs return at once, so
/// tear the guard down next ([`xvmi_guard_teardown`] resumes the domain too).
///
/// # Safety
/// `guard` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn xvmi_guard_resume_domain(guard: *const xvmi_guard) -> xvmi_result {
    boundary(|| {
        let g = arg_handle(guard, "guard")?;
        with_guard(&g, |i| {
            let guard = i.guard.as_mut().ok_or_else(torn_down)?;
            let r = guard.resume_domain();
            i.domain.guest_ran();
            Ok(r?)
        })
    })
}

/// Undo everything the guard changed (monitors, write protection, its view; every event
/// still waiting answered; `docs/events.md`) and resume any pause a remediation holds. Every
/// step is attempted; the first error is returned. Idempotent; afterwards only
/// [`xvmi_guard_free`] is useful, and the domain may get a new session or guard.
///
/// # Safety
/// `guard` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn xvmi_guard_teardown(guard: *const xvmi_guard) -> xvmi_result {
    boundary(|| {
        let g = arg_handle(guard, "guard")?;
        with_guard(&g, |i| {
            let Some(guard) = i.guard.take() else {
                return Ok(());
            };
            let r = guard.teardown();
            i.domain.guest_ran();
            i.domain.session_open.store(false, Ordering::SeqCst);
            Ok(r?)
        })
    })
}

/// Release a guard, tearing it down first if that has not been done (call
/// [`xvmi_guard_teardown`] first to get a teardown error). `NULL` is a no-op. Refused with
/// [`XVMI_ERR_INVALID_HANDLE`] (nothing freed) for a handle that is not live or that a call
/// is using (freed from its own alert callback).
///
/// # Safety
/// `guard` is NULL or a pointer this library returned (freed or not: a freed one is refused);
/// no call on another thread (`xvmi_guard_stop` included) uses it meanwhile or will.
#[no_mangle]
pub unsafe extern "C" fn xvmi_guard_free(guard: *mut xvmi_guard) -> xvmi_result {
    boundary(|| {
        drop(unregister(guard, "guard")?);
        Ok(())
    })
}
