//! Semantic events (`xenvmi::trace`) through the C ABI: [`xvmi_session_trace_enable`] places
//! the probes on a session with hooks; in a callback of `xvmi_session_run_context`,
//! [`xvmi_context_trace_event`] says whether the hit is an event and fills an
//! [`xvmi_trace_event`], and [`xvmi_context_trace_string`] copies its strings (executable
//! or path, argv, a system call's string arguments, the whole event as JSON) into the
//! caller's buffer. The probes' breakpoints are the session's: they are removed at teardown.

use std::ffi::c_char;
use std::sync::Arc;

use super::context::current_trace;
use super::error::*;
use super::handles::arg_handle;
use super::os::{xvmi_os, Os};
use super::session::{changes, with_inner, xvmi_session};
use crate::os::linux::syscalls::ArgValue;
use crate::trace::{LinuxTracer, Probe, TraceEvent, TraceFilter, What};

/// Probe: process starts ([`XVMI_TRACE_PROCESS_START`]).
pub const XVMI_PROBE_PROCESS_START: u32 = 1 << 0;
/// Probe: process and thread exits ([`XVMI_TRACE_PROCESS_EXIT`], [`XVMI_TRACE_THREAD_EXIT`]).
pub const XVMI_PROBE_EXIT: u32 = 1 << 1;
/// Probe: module loads.
pub const XVMI_PROBE_MODULE_LOAD: u32 = 1 << 2;
/// Probe: module unloads.
pub const XVMI_PROBE_MODULE_UNLOAD: u32 = 1 << 3;
/// Probe: system calls (64-bit entry).
pub const XVMI_PROBE_SYSCALL: u32 = 1 << 4;
/// Probe: file opens, with their result.
pub const XVMI_PROBE_FILE_OPEN: u32 = 1 << 5;

const PROBES: [(u32, Probe); 6] = [
    (XVMI_PROBE_PROCESS_START, Probe::ProcessStart),
    (XVMI_PROBE_EXIT, Probe::Exit),
    (XVMI_PROBE_MODULE_LOAD, Probe::ModuleLoad),
    (XVMI_PROBE_MODULE_UNLOAD, Probe::ModuleUnload),
    (XVMI_PROBE_SYSCALL, Probe::Syscall),
    (XVMI_PROBE_FILE_OPEN, Probe::FileOpen),
];

/// [`xvmi_trace_event::type_`]: a process started a program (`ppid`, `argc`; strings: the
/// executable and argv).
pub const XVMI_TRACE_PROCESS_START: u32 = 1;
/// A process ended (`code`).
pub const XVMI_TRACE_PROCESS_EXIT: u32 = 2;
/// A thread exited, its process goes on (`code`).
pub const XVMI_TRACE_THREAD_EXIT: u32 = 3;
/// A module is loaded (`name`, `base`, `size`).
pub const XVMI_TRACE_MODULE_LOAD: u32 = 4;
/// A module is unloaded (`name`, `base`, `size`).
pub const XVMI_TRACE_MODULE_UNLOAD: u32 = 5;
/// A system call (`nr`, `name`, `args`, `argc`; strings: its string arguments).
pub const XVMI_TRACE_SYSCALL: u32 = 6;
/// A file open (`dfd`, `flags`, `mode`, `has_result`, `result`; strings: the path).
pub const XVMI_TRACE_FILE_OPEN: u32 = 7;

/// [`xvmi_context_trace_string`]: the executable (process start) or the path (file open).
pub const XVMI_TRACE_STRING_PATH: u32 = 1;
/// Argument `index` of a process start's argv.
pub const XVMI_TRACE_STRING_ARGV: u32 = 2;
/// Argument `index` of a system call, when it is a string read from the caller's memory.
pub const XVMI_TRACE_STRING_SYSCALL_ARG: u32 = 3;
/// The whole event as one JSON object (what `trace --json` prints).
pub const XVMI_TRACE_STRING_JSON: u32 = 4;

/// One semantic event (`xenvmi::trace::TraceEvent`); the fields that do not apply to its
/// type are zero.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct xvmi_trace_event {
    /// `XVMI_TRACE_*`.
    pub type_: u32,
    /// The vCPU.
    pub vcpu: u32,
    /// The process (`tgid`).
    pub pid: u64,
    /// The thread.
    pub tid: u64,
    /// The thread's name (`comm`), NUL-terminated.
    pub comm: [c_char; 16],
    /// Process start: the parent's process id.
    pub ppid: u64,
    /// Exits: the exit code as the kernel keeps it (`status << 8`, or a signal number).
    pub code: i64,
    /// Module events: the module's name; system calls: the call's name (empty when the
    /// kernel's metadata does not describe the number). NUL-terminated.
    pub name: [c_char; 64],
    /// Module events: base and size.
    pub base: u64,
    /// Module events: size in bytes.
    pub size: u64,
    /// System calls: the number.
    pub nr: u64,
    /// System calls: the six argument registers.
    pub args: [u64; 6],
    /// Process start: the number of argv strings; system calls: the number of declared
    /// arguments.
    pub argc: u32,
    /// File open: 1 when `result` holds the call's result.
    pub has_result: u32,
    /// File open: the new descriptor, or the negated errno.
    pub result: i64,
    /// File open: the directory descriptor (`-100` is `AT_FDCWD`).
    pub dfd: i64,
    /// File open: the `O_*` flags.
    pub flags: u64,
    /// File open: the creation mode.
    pub mode: u64,
    /// 1 when a string of the event could not be read from the guest (the JSON form says
    /// why, under `unreadable`).
    pub unreadable: u32,
    /// Always zero.
    pub reserved: u32,
}

/// The tracer of a session, with the kernel it decodes with.
pub(crate) struct Tracing {
    pub(crate) tracer: LinuxTracer,
    pub(crate) os: Arc<Os>,
}

/// A filter for [`xvmi_session_trace_enable`] (`xenvmi::trace::TraceFilter`): each list with
/// a count of 0 lets everything through.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct xvmi_trace_filter {
    /// Process ids to keep.
    pub pids: *const u64,
    /// Their count.
    pub pid_count: usize,
    /// Process names (`comm`) to keep, NUL-terminated strings.
    pub comms: *const *const c_char,
    /// Their count.
    pub comm_count: usize,
    /// System call names to keep (`"openat"`), NUL-terminated strings.
    pub syscalls: *const *const c_char,
    /// Their count.
    pub syscall_count: usize,
}

/// # Safety
/// `f`'s arrays are valid for their counts; each string is NUL-terminated.
unsafe fn filter_from_c(f: &xvmi_trace_filter) -> Result<TraceFilter, Fail> {
    // SAFETY: the caller's contract: `pids` is valid for `pid_count` reads.
    let pids = unsafe { arg_slice(f.pids, f.pid_count, "filter.pids") }?;
    let strings = |p: *const *const c_char, n: usize, name: &str| -> Result<Vec<String>, Fail> {
        // SAFETY: the caller's contract: `p` is valid for `n` pointer reads.
        let ptrs = unsafe { arg_slice(p, n, name) }?;
        ptrs.iter()
            // SAFETY: the caller's contract: each pointer is a NUL-terminated string.
            .map(|&s| unsafe { arg_str(s, name) }.map(str::to_owned))
            .collect()
    };
    Ok(TraceFilter::new()
        .with_pids(pids.iter().copied())
        .with_comms(strings(f.comms, f.comm_count, "filter.comms")?)
        .with_syscalls(strings(f.syscalls, f.syscall_count, "filter.syscalls")?))
}

/// Place the probes in `probes` (`XVMI_PROBE_*` bits) on a session whose hooks are enabled,
/// decoding with `os` (a Linux kernel handle of this guest), with `filter` (NULL: none). A
/// probe the kernel has no function for is not placed: its bit is set in `*out_not_placed`
/// (NULL: not reported), the others are placed. Events reach a callback of
/// `xvmi_session_run_context` through [`xvmi_context_trace_event`].
///
/// # Errors
/// `XVMI_ERR_MISSING_SYMBOL` for a filter naming a system call the guest has not;
/// `XVMI_ERR_INVALID_ARGUMENT` for unknown bits, no hooks, or tracing enabled already.
///
/// # Safety
/// `session` and `os` are NULL or live handles; `filter` is NULL or points at an initialised
/// [`xvmi_trace_filter`] whose arrays are valid for their counts; `out_not_placed` is NULL or
/// valid for a write.
#[no_mangle]
pub unsafe extern "C" fn xvmi_session_trace_enable(
    session: *const xvmi_session,
    os: *const xvmi_os,
    probes: u32,
    filter: *const xvmi_trace_filter,
    out_not_placed: *mut u32,
) -> xvmi_result {
    boundary(|| {
        let s = arg_handle(session, "session")?;
        let o = arg_handle(os, "os")?;
        let all = PROBES.iter().fold(0, |m, p| m | p.0);
        if probes & !all != 0 || probes == 0 {
            return Err(Fail::invalid(format!(
                "probes {probes:#x}: not a non-empty set of XVMI_PROBE_* bits ({all:#x})"
            )));
        }
        let filter = if filter.is_null() {
            TraceFilter::new()
        } else {
            // SAFETY: the caller's contract: an initialised filter with valid arrays.
            unsafe { filter_from_c(arg_ref(filter, "filter")?) }?
        };
        let out = if out_not_placed.is_null() {
            None
        } else {
            Some(arg_out(out_not_placed, "out_not_placed")?)
        };
        let Some(linux) = o.os.linux() else {
            return Err(Fail::new(
                XVMI_ERR_UNSUPPORTED,
                "tracing needs a Linux kernel handle (Windows events are not traced yet)",
            ));
        };
        let list: Vec<Probe> = PROBES
            .iter()
            .filter(|p| probes & p.0 != 0)
            .map(|p| p.1)
            .collect();
        let not_placed = with_inner(&s, |i| {
            if i.tracing.is_some() {
                return Err(Fail::invalid("the session traces already"));
            }
            changes(i)?;
            let super::session::Inner {
                hooks,
                session,
                mem,
                tracing,
                ..
            } = i;
            let hooks = hooks.as_mut().ok_or_else(|| {
                Fail::invalid("the session has no hooks: call xvmi_session_hooks_enable first")
            })?;
            let tracer = LinuxTracer::place(hooks, session, mem, linux, &list, filter)?;
            let mask = tracer.not_placed().iter().fold(0, |m, n| {
                m | PROBES.iter().find(|p| p.1 == n.probe).map_or(0, |p| p.0)
            });
            *tracing = Some(Tracing {
                tracer,
                os: Arc::clone(&o.os),
            });
            Ok(mask)
        })?;
        if let Some(out) = out {
            // SAFETY: checked by arg_out.
            unsafe { put(out, not_placed) };
        }
        Ok(())
    })
}

/// The C form of an event.
pub(crate) fn event_to_c(e: &TraceEvent) -> xvmi_trace_event {
    let mut c = xvmi_trace_event {
        type_: 0,
        vcpu: e.vcpu.0,
        pid: e.pid,
        tid: e.tid,
        comm: fixed_string(&e.comm),
        ppid: 0,
        code: 0,
        name: [0; 64],
        base: 0,
        size: 0,
        nr: 0,
        args: [0; 6],
        argc: 0,
        has_result: 0,
        result: 0,
        dfd: 0,
        flags: 0,
        mode: 0,
        unreadable: 0,
        reserved: 0,
    };
    match &e.what {
        What::ProcessStart { ppid, exe, argv } => {
            c.type_ = XVMI_TRACE_PROCESS_START;
            c.ppid = *ppid;
            c.argc = argv
                .as_ref()
                .map_or(0, |a| a.len().min(u32::MAX as usize) as u32);
            c.unreadable = u32::from(exe.is_err() || argv.is_err());
        }
        What::ProcessExit { code } | What::ThreadExit { code } => {
            c.type_ = if matches!(e.what, What::ProcessExit { .. }) {
                XVMI_TRACE_PROCESS_EXIT
            } else {
                XVMI_TRACE_THREAD_EXIT
            };
            c.code = code.0;
        }
        What::ModuleLoad { module } | What::ModuleUnload { module } => {
            c.type_ = if matches!(e.what, What::ModuleLoad { .. }) {
                XVMI_TRACE_MODULE_LOAD
            } else {
                XVMI_TRACE_MODULE_UNLOAD
            };
            c.name = fixed_string(&module.name);
            c.base = module.base.0;
            c.size = module.size;
        }
        What::Syscall {
            nr,
            info,
            raw,
            args,
        } => {
            c.type_ = XVMI_TRACE_SYSCALL;
            c.nr = *nr;
            c.args = *raw;
            if let Some(i) = info {
                c.name = fixed_string(&i.name);
                c.argc = i.args.len() as u32;
            }
            c.unreadable = u32::from(
                args.iter()
                    .any(|a| matches!(a, ArgValue::Unreadable { .. })),
            );
        }
        What::FileOpen {
            dfd,
            path,
            flags,
            mode,
            result,
            ..
        } => {
            c.type_ = XVMI_TRACE_FILE_OPEN;
            c.dfd = *dfd;
            c.flags = *flags;
            c.mode = *mode;
            c.has_result = u32::from(result.is_some());
            c.result = result.unwrap_or(0);
            c.unreadable = u32::from(path.is_err());
        }
    }
    c
}

/// The current callback's event, or why there is none.
fn event_of<'a>(ctx: *mut super::context::xvmi_context) -> Result<&'a TraceEvent, Fail> {
    match current_trace(ctx)? {
        Some(Ok(e)) => Ok(e),
        Some(Err(why)) => Err(Fail::new(
            XVMI_ERR_NOT_MAPPED,
            format!("the hit is a traced event that could not be read: {why}"),
        )),
        None => Err(Fail::new(
            XVMI_ERR_NOT_FOUND,
            "the current event is not a traced event (not a probe's hit, filtered out, or a \
             file open's entry, whose event comes at its return)",
        )),
    }
}

/// Whether the current hit is a traced event: `XVMI_OK` with `*out` filled, or
/// `XVMI_ERR_NOT_FOUND` (not an event: another breakpoint, a filtered hit, a file open's
/// entry), or the error that kept the event from being read (its message says which field).
///
/// # Safety
/// `ctx` is the context of the running callback; `out` is valid for a write.
#[no_mangle]
pub unsafe extern "C" fn xvmi_context_trace_event(
    ctx: *mut super::context::xvmi_context,
    out: *mut xvmi_trace_event,
) -> xvmi_result {
    boundary(|| {
        let out = arg_out(out, "out")?;
        let e = event_of(ctx)?;
        // SAFETY: checked by arg_out.
        unsafe { put(out, event_to_c(e)) };
        Ok(())
    })
}

/// Copy one string of the current event into `buf` (`len` bytes, NUL-terminated):
/// `which` is `XVMI_TRACE_STRING_*`, `index` the argument's position for `_ARGV` and
/// `_SYSCALL_ARG` (0 otherwise). `*out_len` (if not NULL) receives the string's length.
///
/// # Errors
/// `XVMI_ERR_NOT_FOUND` when the event has no such string; `XVMI_ERR_NOT_MAPPED` when it
/// could not be read from the guest (the message says why); `XVMI_ERR_BUFFER_TOO_SMALL`.
///
/// # Safety
/// `ctx` is the context of the running callback; `buf` is NULL or valid for `len` bytes of
/// writes; `out_len` is NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn xvmi_context_trace_string(
    ctx: *mut super::context::xvmi_context,
    which: u32,
    index: u32,
    buf: *mut c_char,
    len: usize,
    out_len: *mut usize,
) -> xvmi_result {
    boundary(|| {
        let e = event_of(ctx)?;
        let none = || {
            Fail::new(
                XVMI_ERR_NOT_FOUND,
                format!("the event has no string {which}/{index}"),
            )
        };
        let unread = |why: &str| Fail::new(XVMI_ERR_NOT_MAPPED, format!("not readable: {why}"));
        let json;
        let s: &str = match (which, &e.what) {
            (XVMI_TRACE_STRING_JSON, _) => {
                json = e.to_json().to_string();
                &json
            }
            (XVMI_TRACE_STRING_PATH, What::ProcessStart { exe: p, .. })
            | (XVMI_TRACE_STRING_PATH, What::FileOpen { path: p, .. }) => {
                p.as_deref().map_err(|w| unread(w))?
            }
            (XVMI_TRACE_STRING_ARGV, What::ProcessStart { argv, .. }) => argv
                .as_ref()
                .map_err(|w| unread(w))?
                .get(index as usize)
                .ok_or_else(none)?,
            (XVMI_TRACE_STRING_SYSCALL_ARG, What::Syscall { args, .. }) => {
                match args.get(index as usize) {
                    Some(ArgValue::Str(s)) => s,
                    Some(ArgValue::Unreadable { reason, .. }) => return Err(unread(reason)),
                    _ => return Err(none()),
                }
            }
            (1..=4, _) => return Err(none()),
            _ => {
                return Err(Fail::invalid(format!(
                    "which {which} is not an XVMI_TRACE_STRING_* value"
                )))
            }
        };
        // SAFETY: the caller's contract: `buf` valid for `len` bytes, `out_len` for a write.
        unsafe { string_out(s, buf, len, out_len, "the string") }
    })
}
