//! Event sessions: monitors, views, the event loop with a C callback, stop and teardown.

use std::cell::UnsafeCell;
use std::ffi::{c_char, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::context::{with_context, xvmi_context};
use super::domain::{
    control_register, register_id, xvmi_domain, xvmi_injection, Domain, DomainMemory, DomainShared,
};
use super::error::*;
use super::handles::{arg_handle, register, unregister, Handle};
use super::types::xvmi_registers;
use crate::addr::{Gfn, VcpuId, ViewId};
use crate::backend::{MemAccess, Monitor};
use crate::error::Error;
use crate::event::hooks::Hooks;
use crate::event::session::{RunOptions, RunStats, Session, StopHandle};
use crate::event::{Event, EventKind, Response};
use crate::mem::GuestMemory;
use crate::regs::Registers;

/// An event session on a domain: the monitors, views and access changes made through it, and
/// the event loop. Everything it changed is undone by [`xvmi_session_teardown`] (or
/// [`xvmi_session_free`], or after a failing callback), and every event it took is answered.
/// It keeps its domain alive.
pub struct xvmi_session {
    /// Shared with other threads and signal handlers (xvmi_session_stop).
    stop: StopHandle,
    /// Set while a call holds `inner`: a second call (another thread, or the event callback
    /// calling back into its own session) is refused instead of aliasing it.
    busy: AtomicBool,
    inner: UnsafeCell<Inner>,
}

pub(super) struct Inner {
    /// Borrows `domain`'s backend. Declared first so that it is dropped (torn down) first.
    pub(super) session: Session<'static, Domain>,
    /// The hook manager, once `xvmi_session_hooks_enable` made one (its changes are the
    /// session's, undone at teardown).
    pub(super) hooks: Option<Hooks>,
    /// The domain's memory as the hook manager reads it (translations flushed at each event).
    pub(super) mem: GuestMemory<DomainMemory>,
    /// The tracer, once `xvmi_session_trace_enable` placed one (its breakpoints are the
    /// hook manager's).
    pub(super) tracing: Option<super::trace::Tracing>,
    pub(super) domain: Arc<DomainShared>,
    pub(super) torn_down: bool,
}

/// Exclusive use of a session's inside for one call.
pub(super) fn with_inner<R>(
    s: &xvmi_session,
    f: impl FnOnce(&mut Inner) -> Result<R, Fail>,
) -> Result<R, Fail> {
    if s.busy.swap(true, Ordering::SeqCst) {
        return Err(Fail::invalid(
            "the session is in use by another call (xvmi_session_run is running: from its callback, \
             answer through the response; from another thread, only xvmi_session_stop may be called)",
        ));
    }
    struct Release<'a>(&'a AtomicBool);
    impl Drop for Release<'_> {
        fn drop(&mut self) {
            self.0.store(false, Ordering::SeqCst);
        }
    }
    let _release = Release(&s.busy);
    // SAFETY: `busy` was false and is now true until `_release` drops: no other call has or
    // can get a reference into `inner` meanwhile (xvmi_session_stop touches only `stop`).
    let inner = unsafe { &mut *s.inner.get() };
    f(inner)
}

pub(super) fn changes(inner: &mut Inner) -> Result<&mut Session<'static, Domain>, Fail> {
    if inner.torn_down {
        return Err(Fail::invalid(
            "the session was torn down: free it and open a new one",
        ));
    }
    Ok(&mut inner.session)
}

/// Open an event session on a domain (enabling its vm_event ring). One session at a time per
/// domain. On Xen, [`XVMI_ERR_BACKEND`] with EBUSY means another monitor is attached, or one
/// died without tearing down (see `xvmi_domain_recover`).
///
/// # Safety
/// `domain` is NULL or a live handle; `out` is valid for a write. On success `*out` is a new
/// handle to release with [`xvmi_session_free`].
#[no_mangle]
pub unsafe extern "C" fn xvmi_session_open(
    domain: *const xvmi_domain,
    out: *mut *mut xvmi_session,
) -> xvmi_result {
    boundary(|| {
        let d = arg_handle(domain, "domain")?;
        let out = arg_out(out, "out")?;
        let shared = Arc::clone(&d.shared);
        if shared
            .session_open
            .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            return Err(Fail::invalid(
                "a session is already open on this domain (free it first)",
            ));
        }
        // SAFETY: the backend lives inside the Arc's allocation, which does not move and is
        // kept alive by `Inner::domain` for as long as the session exists: the session is
        // dropped before `domain` (field order, and explicitly in xvmi_session_free). Nothing
        // takes a `&mut` to the backend.
        let backend: &'static Domain = unsafe { &*std::ptr::addr_of!(shared.backend) };
        let session = match Session::new(backend) {
            Ok(s) => s,
            Err(e) => {
                shared.session_open.store(false, Ordering::SeqCst);
                return Err(e.into());
            }
        };
        let h = Box::new(xvmi_session {
            stop: session.stop_handle(),
            busy: AtomicBool::new(false),
            inner: UnsafeCell::new(Inner {
                session,
                hooks: None,
                tracing: None,
                mem: GuestMemory::new(DomainMemory(Arc::clone(&shared))),
                domain: shared,
                torn_down: false,
            }),
        });
        // SAFETY: checked by arg_out.
        unsafe { put(out, register(h)) };
        Ok(())
    })
}

/// Release a session: tear it down first if that has not been done (a teardown error is then
/// printed to stderr; call [`xvmi_session_teardown`] first to get it as a result). `NULL` is
/// a no-op. Called on a session that is in use (from its own event callback), or on one
/// already freed, it frees nothing and returns [`XVMI_ERR_INVALID_HANDLE`].
///
/// # Safety
/// `session` is NULL or a pointer this library returned (freed or not: a freed one is
/// refused); no call on another thread (`xvmi_session_stop` included) uses it meanwhile or
/// will.
#[no_mangle]
pub unsafe extern "C" fn xvmi_session_free(session: *mut xvmi_session) -> xvmi_result {
    boundary(|| {
        // Refused while a call uses it (its own event callback: freeing would pull the session
        // from under the running loop).
        let Some(h) = unregister(session, "session")? else {
            return Ok(());
        };
        let Inner {
            session, domain, ..
        } = h.inner.into_inner();
        drop(session); // tears down if needed, while the backend is alive
        domain.guest_ran();
        domain.session_open.store(false, Ordering::SeqCst);
        drop(domain);
        Ok(())
    })
}

/// Keep the session's journal in a file too (`path`; `target` names the domain in it, e.g.
/// `"xen:domain-3"`), so that if this process is killed without tearing down, the next
/// monitor can undo what it left with
/// `xvmi_domain_recover`. Call it before the first
/// change. A clean teardown removes the file. [`XVMI_ERR_JOURNAL_IN_USE`] if it exists.
///
/// # Safety
/// `session` is NULL or a live handle; `path` and `target` are NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn xvmi_session_persist_journal(
    session: *const xvmi_session,
    path: *const c_char,
    target: *const c_char,
) -> xvmi_result {
    boundary(|| {
        let s = arg_handle(session, "session")?;
        // SAFETY: `path` is NULL (refused by arg_str) or a NUL-terminated string, as this
        // function's `# Safety` requires.
        let path = unsafe { arg_str(path, "path") }?;
        // SAFETY: `target` is NULL (refused by arg_str) or a NUL-terminated string, as this
        // function's `# Safety` requires.
        let target = unsafe { arg_str(target, "target") }?;
        with_inner(&s, |i| Ok(changes(i)?.persist_journal(path, target)?))
    })
}

/// [`xvmi_monitor::kind`]: writes to a control register (`control_register`, `sync`,
/// `on_change_only`, `ignore_mask`).
pub const XVMI_MONITOR_CONTROL_REGISTER: u32 = 1;
/// `wrmsr` to MSR `msr_index` (`on_change_only`).
pub const XVMI_MONITOR_MSR: u32 = 2;
/// Single-stepping (MTF) of vCPUs that have it on.
pub const XVMI_MONITOR_SINGLESTEP: u32 = 3;
/// `int3` in the guest.
pub const XVMI_MONITOR_SOFTWARE_BREAKPOINT: u32 = 4;
/// Debug exceptions (#DB) (`sync`).
pub const XVMI_MONITOR_DEBUG_EXCEPTION: u32 = 5;
/// `cpuid`.
pub const XVMI_MONITOR_CPUID: u32 = 6;
/// Loads and stores of descriptor-table registers (LGDT, SIDT, ...).
pub const XVMI_MONITOR_DESCRIPTOR_ACCESS: u32 = 7;
/// Hypercalls from the guest asking for the monitor (`sync`).
pub const XVMI_MONITOR_GUEST_REQUEST: u32 = 8;
/// Instructions Xen's emulator does not implement.
pub const XVMI_MONITOR_EMUL_UNIMPLEMENTED: u32 = 9;
/// Page faults inside the guest.
pub const XVMI_MONITOR_INGUEST_PAGEFAULT: u32 = 10;

/// A guest action to trap (`xenvmi::backend::Monitor`). Zero-initialise it, set `kind`, and
/// the fields that kind uses; the others are ignored. Booleans are 0 or 1.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct xvmi_monitor {
    /// `XVMI_MONITOR_*`.
    pub kind: u32,
    /// `XVMI_REGISTER_*` (for `XVMI_MONITOR_CONTROL_REGISTER`).
    pub control_register: u32,
    /// The MSR (for `XVMI_MONITOR_MSR`; e.g. 0xc0000082 for `MSR_LSTAR`).
    pub msr_index: u32,
    /// Pause the vCPU until the event is answered (needed to DENY a write).
    pub sync: u8,
    /// Report only writes that change the value.
    pub on_change_only: u8,
    /// Always zero.
    pub reserved: u16,
    /// Bits whose changes are not reported (control registers).
    pub ignore_mask: u64,
}

fn monitor_from_c(m: &xvmi_monitor) -> Result<Monitor, Fail> {
    Ok(match m.kind {
        XVMI_MONITOR_CONTROL_REGISTER => Monitor::ControlRegister {
            register: control_register(m.control_register, "monitor.control_register")?,
            sync: arg_bool(m.sync, "monitor.sync")?,
            on_change_only: arg_bool(m.on_change_only, "monitor.on_change_only")?,
            ignore_mask: m.ignore_mask,
        },
        XVMI_MONITOR_MSR => Monitor::Msr {
            index: m.msr_index,
            on_change_only: arg_bool(m.on_change_only, "monitor.on_change_only")?,
        },
        XVMI_MONITOR_SINGLESTEP => Monitor::SingleStep,
        XVMI_MONITOR_SOFTWARE_BREAKPOINT => Monitor::SoftwareBreakpoint,
        XVMI_MONITOR_DEBUG_EXCEPTION => Monitor::DebugException {
            sync: arg_bool(m.sync, "monitor.sync")?,
        },
        XVMI_MONITOR_CPUID => Monitor::Cpuid,
        XVMI_MONITOR_DESCRIPTOR_ACCESS => Monitor::DescriptorAccess,
        XVMI_MONITOR_GUEST_REQUEST => Monitor::GuestRequest {
            sync: arg_bool(m.sync, "monitor.sync")?,
        },
        XVMI_MONITOR_EMUL_UNIMPLEMENTED => Monitor::EmulUnimplemented,
        XVMI_MONITOR_INGUEST_PAGEFAULT => Monitor::InguestPagefault,
        k => {
            return Err(Fail::invalid(format!(
                "`monitor.kind` is {k}: not an XVMI_MONITOR_* value (1..=10)"
            )))
        }
    })
}

/// Enable a monitor (disabled again at teardown).
///
/// # Safety
/// `session` is NULL or a live handle; `monitor` is NULL or points at an initialised
/// [`xvmi_monitor`].
#[no_mangle]
pub unsafe extern "C" fn xvmi_session_monitor(
    session: *const xvmi_session,
    monitor: *const xvmi_monitor,
) -> xvmi_result {
    boundary(|| {
        let s = arg_handle(session, "session")?;
        // SAFETY: `monitor` is non-NULL here and points at an initialised value, as this function's
        // `# Safety` requires.
        let m = monitor_from_c(unsafe { arg_ref(monitor, "monitor") }?)?;
        with_inner(&s, |i| Ok(changes(i)?.monitor(m)?))
    })
}

/// Memory access bit: reads allowed.
pub const XVMI_ACCESS_R: u32 = 1;
/// Memory access bit: writes allowed.
pub const XVMI_ACCESS_W: u32 = 2;
/// Memory access bit: instruction fetches allowed.
pub const XVMI_ACCESS_X: u32 = 4;

pub(crate) fn parse_access(v: u32, name: &str) -> Result<MemAccess, Fail> {
    if v > 7 {
        return Err(Fail::invalid(format!(
            "`{name}` is {v:#x}: only XVMI_ACCESS_R|W|X (bits 0..2) exist"
        )));
    }
    Ok(MemAccess::from_bits_truncate(v as u8))
}

fn access_bits(a: MemAccess) -> u32 {
    a.bits() as u32
}

/// Create an altp2m view whose frames have `default_access` (`XVMI_ACCESS_*` bits); its id
/// goes to `*out_view`. Destroyed at teardown, or before with [`xvmi_session_destroy_view`].
///
/// # Safety
/// `session` is NULL or a live handle; `out_view` is valid for a write.
#[no_mangle]
pub unsafe extern "C" fn xvmi_session_create_view(
    session: *const xvmi_session,
    default_access: u32,
    out_view: *mut u16,
) -> xvmi_result {
    boundary(|| {
        let s = arg_handle(session, "session")?;
        let a = parse_access(default_access, "default_access")?;
        let out = arg_out(out_view, "out_view")?;
        let v = with_inner(&s, |i| Ok(changes(i)?.create_view(a)?))?;
        // SAFETY: checked by arg_out.
        unsafe { put(out, v.0) };
        Ok(())
    })
}

/// Destroy `view`, an altp2m view this session created ([`xvmi_session_create_view`]),
/// before teardown. Its access rights, remapped frames, #VE and visibility settings go with
/// it: teardown does not restore them or destroy the view again, and a view created later
/// with the same id is the new view's. Frames from [`xvmi_session_alloc_frame`] it showed
/// stay the session's until teardown.
///
/// Refused, with nothing changed:
/// - view 0 (the host view, which always exists) and the hook manager's execute view:
///   [`XVMI_ERR_INVALID_ARGUMENT`];
/// - the view [`xvmi_session_switch_view`] last switched the vCPUs to:
///   [`XVMI_ERR_INVALID_ARGUMENT`]; switch them to view 0 first;
/// - a view this session did not create, or destroyed already: [`XVMI_ERR_NOT_FOUND`];
/// - a view a vCPU still uses because a response switched it there
///   (`XVMI_RESPONSE_SWITCH_VIEW`): the backend's refusal, [`XVMI_ERR_BACKEND`] with EBUSY
///   (Xen's, and the simulated domain's);
/// - a session torn down, or busy (called from its own event callback):
///   [`XVMI_ERR_INVALID_ARGUMENT`].
///
/// With a journal on disk (`xvmi_session_persist_journal`, append-only), the destroyed view's
/// lines stay in it: a recovery after a crash counts them in `xvmi_recovery::warnings`.
///
/// # Safety
/// `session` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn xvmi_session_destroy_view(
    session: *const xvmi_session,
    view: u16,
) -> xvmi_result {
    boundary(|| {
        let s = arg_handle(session, "session")?;
        with_inner(&s, |i| {
            let hook_view = i.hooks.as_ref().map(|h| h.view());
            let session = changes(i)?;
            if view == 0 {
                return Err(Fail::invalid(
                    "`view` is 0, the host view, which always exists and cannot be destroyed",
                ));
            }
            if hook_view == Some(ViewId(view)) {
                return Err(Fail::invalid(format!(
                    "`view` {view} is the hook manager's execute view (xvmi_session_hooks_enable): \
                     it is destroyed at teardown"
                )));
            }
            Ok(session.destroy_view(ViewId(view))?)
        })
    })
}

/// Set the access rights (`XVMI_ACCESS_*` bits) of frame `gfn` in `view` (0 is the host
/// view). Restored at teardown.
///
/// # Safety
/// `session` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn xvmi_session_set_mem_access(
    session: *const xvmi_session,
    view: u16,
    gfn: u64,
    access: u32,
) -> xvmi_result {
    boundary(|| {
        let s = arg_handle(session, "session")?;
        let a = parse_access(access, "access")?;
        with_inner(&s, |i| {
            Ok(changes(i)?.set_mem_access(ViewId(view), Gfn(gfn), a)?)
        })
    })
}

/// Switch every vCPU to `view` (back to view 0 at teardown).
///
/// # Safety
/// `session` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn xvmi_session_switch_view(
    session: *const xvmi_session,
    view: u16,
) -> xvmi_result {
    boundary(|| {
        let s = arg_handle(session, "session")?;
        with_inner(&s, |i| Ok(changes(i)?.switch_view(ViewId(view))?))
    })
}

/// Make frame `gfn` in `view` show the frame that backs `target_gfn` (undone at teardown):
/// the building block of shadow pages and stealth breakpoints.
///
/// # Safety
/// `session` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn xvmi_session_change_gfn(
    session: *const xvmi_session,
    view: u16,
    gfn: u64,
    target_gfn: u64,
) -> xvmi_result {
    boundary(|| {
        let s = arg_handle(session, "session")?;
        with_inner(&s, |i| {
            Ok(changes(i)?.change_gfn(ViewId(view), Gfn(gfn), Gfn(target_gfn))?)
        })
    })
}

/// Give the domain one more zero-filled frame, above its RAM, for a shadow page; its number
/// goes to `*out_gfn`. Released at teardown.
///
/// # Safety
/// `session` is NULL or a live handle; `out_gfn` is valid for a write.
#[no_mangle]
pub unsafe extern "C" fn xvmi_session_alloc_frame(
    session: *const xvmi_session,
    out_gfn: *mut u64,
) -> xvmi_result {
    boundary(|| {
        let s = arg_handle(session, "session")?;
        let out = arg_out(out_gfn, "out_gfn")?;
        let g = with_inner(&s, |i| Ok(changes(i)?.alloc_frame()?))?;
        // SAFETY: checked by arg_out.
        unsafe { put(out, g.0) };
        Ok(())
    })
}

/// Turn single-stepping (MTF) of vCPU `vcpu` on (`enable` 1) or off (0). Off at teardown.
///
/// # Safety
/// `session` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn xvmi_session_singlestep(
    session: *const xvmi_session,
    vcpu: u32,
    enable: u8,
) -> xvmi_result {
    boundary(|| {
        let s = arg_handle(session, "session")?;
        let on = arg_bool(enable, "enable")?;
        with_inner(&s, |i| Ok(changes(i)?.singlestep(VcpuId(vcpu), on)?))
    })
}

/// [`xvmi_event::kind`]: a write to a control register (`data.control_register`).
pub const XVMI_EVENT_CONTROL_REGISTER: u32 = 1;
/// `wrmsr` (`data.msr`).
pub const XVMI_EVENT_MSR: u32 = 2;
/// An access the frame's rights in the current view forbid (`data.memory_access`).
pub const XVMI_EVENT_MEMORY_ACCESS: u32 = 3;
/// `int3` (`data.software_breakpoint`).
pub const XVMI_EVENT_SOFTWARE_BREAKPOINT: u32 = 4;
/// One single-step completed (`data.singlestep`).
pub const XVMI_EVENT_SINGLESTEP: u32 = 5;
/// A debug exception (`data.debug_exception`).
pub const XVMI_EVENT_DEBUG_EXCEPTION: u32 = 6;
/// `cpuid` (`data.cpuid`).
pub const XVMI_EVENT_CPUID: u32 = 7;
/// LGDT/SGDT/LIDT/SIDT/LLDT/SLDT/LTR/STR (`data.descriptor_access`).
pub const XVMI_EVENT_DESCRIPTOR_ACCESS: u32 = 8;
/// A hypercall from the guest asking for the monitor (no data).
pub const XVMI_EVENT_GUEST_REQUEST: u32 = 9;
/// An instruction Xen's emulator does not implement (no data).
pub const XVMI_EVENT_EMUL_UNIMPLEMENTED: u32 = 10;
/// An interrupt (`data.interrupt`).
pub const XVMI_EVENT_INTERRUPT: u32 = 11;
/// A VM exit (`data.vmexit`).
pub const XVMI_EVENT_VMEXIT: u32 = 12;
/// An I/O instruction (`data.io_instruction`; Xen 4.18+).
pub const XVMI_EVENT_IO_INSTRUCTION: u32 = 13;
/// A reason xenvmi does not decode (`data.unknown`); it is still answered.
pub const XVMI_EVENT_UNKNOWN: u32 = 14;

/// Payload of `XVMI_EVENT_CONTROL_REGISTER`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct xvmi_event_control_register {
    /// `XVMI_REGISTER_*` (not `register`, a C keyword).
    pub register_id: u32,
    /// Always zero.
    pub reserved: u32,
    /// Value before.
    pub old_value: u64,
    /// Value being written (not yet in effect on a sync monitor).
    pub new_value: u64,
}

/// Payload of `XVMI_EVENT_MSR`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct xvmi_event_msr {
    /// MSR index.
    pub index: u64,
    /// Value before.
    pub old_value: u64,
    /// Value being written.
    pub new_value: u64,
}

/// Payload of `XVMI_EVENT_MEMORY_ACCESS`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct xvmi_event_memory_access {
    /// The frame.
    pub gfn: u64,
    /// Offset inside the frame.
    pub offset: u64,
    /// The linear address, when `has_gla`.
    pub gla: u64,
    /// The access that faulted (`XVMI_ACCESS_*` bits).
    pub access: u32,
    /// Whether `gla` is known.
    pub has_gla: bool,
    /// The fault happened while the CPU walked guest page tables.
    pub in_page_table_walk: bool,
}

/// Payload of `XVMI_EVENT_SOFTWARE_BREAKPOINT` and `XVMI_EVENT_DEBUG_EXCEPTION`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct xvmi_event_breakpoint {
    /// Frame of the instruction.
    pub gfn: u64,
    /// Pending debug exceptions (DR6 bits; debug exceptions only).
    pub pending_dbg: u64,
    /// Instruction length.
    pub insn_length: u32,
    /// Event type for re-injection (`XEN_DMOP_EVENT_*`).
    pub trap_type: u8,
}

/// Payload of `XVMI_EVENT_SINGLESTEP`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct xvmi_event_singlestep {
    /// Frame of the next instruction.
    pub gfn: u64,
}

/// Payload of `XVMI_EVENT_CPUID`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct xvmi_event_cpuid {
    /// Leaf (EAX).
    pub leaf: u32,
    /// Sub-leaf (ECX).
    pub subleaf: u32,
    /// Instruction length.
    pub insn_length: u32,
}

/// Payload of `XVMI_EVENT_DESCRIPTOR_ACCESS`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct xvmi_event_descriptor_access {
    /// VMX exit qualification.
    pub exit_qualification: u64,
    /// VMX instruction information.
    pub instr_info: u32,
    /// 1 IDTR, 2 GDTR, 3 LDTR, 4 TR.
    pub descriptor: u8,
    /// A load (write to the register) rather than a store.
    pub is_write: bool,
}

/// Payload of `XVMI_EVENT_INTERRUPT`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct xvmi_event_interrupt {
    /// CR2 (page faults).
    pub cr2: u64,
    /// Vector.
    pub vector: u32,
    /// Type.
    pub kind: u32,
    /// Error code.
    pub error_code: u32,
}

/// Payload of `XVMI_EVENT_VMEXIT`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct xvmi_event_vmexit {
    /// Exit reason.
    pub reason: u64,
    /// Exit qualification.
    pub qualification: u64,
}

/// Payload of `XVMI_EVENT_IO_INSTRUCTION`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct xvmi_event_io_instruction {
    /// Access size.
    pub bytes: u32,
    /// Port.
    pub port: u16,
    /// `in` rather than `out`.
    pub is_in: bool,
    /// A string instruction.
    pub is_string: bool,
}

/// Payload of `XVMI_EVENT_UNKNOWN`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct xvmi_event_unknown {
    /// Xen's raw reason number.
    pub reason: u32,
}

/// The payload of an event; [`xvmi_event::kind`] says which member is valid.
#[repr(C)]
#[derive(Clone, Copy)]
#[allow(missing_docs)] // each member is named after its XVMI_EVENT_* kind
pub union xvmi_event_data {
    pub control_register: xvmi_event_control_register,
    pub msr: xvmi_event_msr,
    pub memory_access: xvmi_event_memory_access,
    pub software_breakpoint: xvmi_event_breakpoint,
    pub singlestep: xvmi_event_singlestep,
    pub debug_exception: xvmi_event_breakpoint,
    pub cpuid: xvmi_event_cpuid,
    pub descriptor_access: xvmi_event_descriptor_access,
    pub interrupt: xvmi_event_interrupt,
    pub vmexit: xvmi_event_vmexit,
    pub io_instruction: xvmi_event_io_instruction,
    pub unknown: xvmi_event_unknown,
    /// Sizes the union (and zero-fills it before a member is written).
    pub raw: [u64; 4],
}

/// One event, decoded (`xenvmi::event::Event`). Valid only during the callback.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct xvmi_event {
    /// `XVMI_EVENT_*`.
    pub kind: u32,
    /// The vCPU it happened on.
    pub vcpu: u32,
    /// The altp2m view it happened in, when `has_view`.
    pub view: u16,
    /// Whether Xen said which view.
    pub has_view: bool,
    /// The vCPU is paused until the event is answered (a sync event).
    pub paused: bool,
    /// Always zero.
    pub reserved: u32,
    /// The payload of `kind`.
    pub data: xvmi_event_data,
    /// The vCPU's registers at the event.
    pub regs: xvmi_registers,
}

fn event_to_c(e: &Event) -> xvmi_event {
    let mut data = xvmi_event_data { raw: [0; 4] };
    let kind = match e.kind {
        EventKind::ControlRegister { register, old, new } => {
            data.control_register = xvmi_event_control_register {
                register_id: register_id(register),
                reserved: 0,
                old_value: old,
                new_value: new,
            };
            XVMI_EVENT_CONTROL_REGISTER
        }
        EventKind::Msr { index, old, new } => {
            data.msr = xvmi_event_msr {
                index,
                old_value: old,
                new_value: new,
            };
            XVMI_EVENT_MSR
        }
        EventKind::MemoryAccess {
            gfn,
            offset,
            gla,
            access,
            in_page_table_walk,
        } => {
            data.memory_access = xvmi_event_memory_access {
                gfn: gfn.0,
                offset,
                gla: gla.map(|g| g.0).unwrap_or(0),
                access: access_bits(access),
                has_gla: gla.is_some(),
                in_page_table_walk,
            };
            XVMI_EVENT_MEMORY_ACCESS
        }
        EventKind::SoftwareBreakpoint {
            gfn,
            insn_length,
            trap_type,
        } => {
            data.software_breakpoint = xvmi_event_breakpoint {
                gfn: gfn.0,
                pending_dbg: 0,
                insn_length,
                trap_type,
            };
            XVMI_EVENT_SOFTWARE_BREAKPOINT
        }
        EventKind::SingleStep { gfn } => {
            data.singlestep = xvmi_event_singlestep { gfn: gfn.0 };
            XVMI_EVENT_SINGLESTEP
        }
        EventKind::DebugException {
            gfn,
            pending_dbg,
            insn_length,
            trap_type,
        } => {
            data.debug_exception = xvmi_event_breakpoint {
                gfn: gfn.0,
                pending_dbg,
                insn_length,
                trap_type,
            };
            XVMI_EVENT_DEBUG_EXCEPTION
        }
        EventKind::Cpuid {
            leaf,
            subleaf,
            insn_length,
        } => {
            data.cpuid = xvmi_event_cpuid {
                leaf,
                subleaf,
                insn_length,
            };
            XVMI_EVENT_CPUID
        }
        EventKind::DescriptorAccess {
            descriptor,
            is_write,
            instr_info,
            exit_qualification,
        } => {
            data.descriptor_access = xvmi_event_descriptor_access {
                exit_qualification,
                instr_info,
                descriptor,
                is_write,
            };
            XVMI_EVENT_DESCRIPTOR_ACCESS
        }
        EventKind::GuestRequest => XVMI_EVENT_GUEST_REQUEST,
        EventKind::EmulUnimplemented => XVMI_EVENT_EMUL_UNIMPLEMENTED,
        EventKind::Interrupt {
            vector,
            kind,
            error_code,
            cr2,
        } => {
            data.interrupt = xvmi_event_interrupt {
                cr2,
                vector,
                kind,
                error_code,
            };
            XVMI_EVENT_INTERRUPT
        }
        EventKind::VmExit {
            reason,
            qualification,
        } => {
            data.vmexit = xvmi_event_vmexit {
                reason,
                qualification,
            };
            XVMI_EVENT_VMEXIT
        }
        EventKind::IoInstruction {
            bytes,
            port,
            is_in,
            is_string,
        } => {
            data.io_instruction = xvmi_event_io_instruction {
                bytes,
                port,
                is_in,
                is_string,
            };
            XVMI_EVENT_IO_INSTRUCTION
        }
        EventKind::Unknown { reason } => {
            data.unknown = xvmi_event_unknown { reason };
            XVMI_EVENT_UNKNOWN
        }
    };
    xvmi_event {
        kind,
        vcpu: e.vcpu.0,
        view: e.view.map(|v| v.0).unwrap_or(0),
        has_view: e.view.is_some(),
        paused: e.paused,
        reserved: 0,
        data,
        regs: xvmi_registers::from(&e.regs),
    }
}

/// [`xvmi_response::action`]: let the guest continue (the default).
pub const XVMI_ACTION_CONTINUE: u32 = 0;
/// Cancel the pending control-register or MSR write (sync monitors only).
pub const XVMI_ACTION_DENY: u32 = 1;
/// Emulate the faulting instruction without lifting the restriction.
pub const XVMI_ACTION_EMULATE: u32 = 2;
/// Emulate with its writes discarded.
pub const XVMI_ACTION_EMULATE_NOWRITE: u32 = 3;

/// [`xvmi_response::flags`] bit: apply `regs` (general-purpose registers, rflags, rip).
pub const XVMI_RESPONSE_SET_REGISTERS: u32 = 1;
/// Flip single-stepping (MTF) of this vCPU.
pub const XVMI_RESPONSE_TOGGLE_SINGLESTEP: u32 = 2;
/// Resume this vCPU in view `view`.
pub const XVMI_RESPONSE_SWITCH_VIEW: u32 = 4;
/// Step one instruction, then switch this vCPU to `fast_singlestep_view` (inside Xen).
pub const XVMI_RESPONSE_FAST_SINGLESTEP: u32 = 8;
/// Deliver `inject` (an exception or interrupt) to this vCPU as it resumes: queued before the
/// answer unpauses it (`xendevicemodel_inject_event` on Xen).
pub const XVMI_RESPONSE_INJECT: u32 = 16;
const RESPONSE_FLAGS: u32 = XVMI_RESPONSE_SET_REGISTERS
    | XVMI_RESPONSE_TOGGLE_SINGLESTEP
    | XVMI_RESPONSE_SWITCH_VIEW
    | XVMI_RESPONSE_FAST_SINGLESTEP
    | XVMI_RESPONSE_INJECT;

/// How to answer an event (`xenvmi::event::Response`). Before the callback runs it holds
/// `XVMI_ACTION_CONTINUE`, no flags and the event's registers in `regs`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct xvmi_response {
    /// `XVMI_ACTION_*`.
    pub action: u32,
    /// `XVMI_RESPONSE_*` bits.
    pub flags: u32,
    /// The view for `XVMI_RESPONSE_SWITCH_VIEW`.
    pub view: u16,
    /// The view for `XVMI_RESPONSE_FAST_SINGLESTEP`.
    pub fast_singlestep_view: u16,
    /// Ignored.
    pub reserved: u32,
    /// The registers for `XVMI_RESPONSE_SET_REGISTERS`.
    pub regs: xvmi_registers,
    /// The event for `XVMI_RESPONSE_INJECT`.
    pub inject: xvmi_injection,
}

fn response_from_c(r: &xvmi_response) -> Result<Response, String> {
    let mut rsp = match r.action {
        XVMI_ACTION_CONTINUE => Response::proceed(),
        XVMI_ACTION_DENY => Response::deny(),
        XVMI_ACTION_EMULATE => Response::emulate(),
        XVMI_ACTION_EMULATE_NOWRITE => Response::emulate_nowrite(),
        a => return Err(format!("action {a} is not an XVMI_ACTION_* value (0..=3)")),
    };
    if r.flags & !RESPONSE_FLAGS != 0 {
        return Err(format!(
            "flags {:#x} has bits that are not XVMI_RESPONSE_* ({:#x})",
            r.flags,
            r.flags & !RESPONSE_FLAGS
        ));
    }
    if r.flags & XVMI_RESPONSE_SET_REGISTERS != 0 {
        rsp = rsp.set_registers(Registers::from(&r.regs));
    }
    if r.flags & XVMI_RESPONSE_TOGGLE_SINGLESTEP != 0 {
        rsp = rsp.toggle_singlestep();
    }
    if r.flags & XVMI_RESPONSE_SWITCH_VIEW != 0 {
        rsp = rsp.switch_view(ViewId(r.view));
    }
    if r.flags & XVMI_RESPONSE_FAST_SINGLESTEP != 0 {
        rsp = rsp.fast_singlestep(ViewId(r.fast_singlestep_view));
    }
    if r.flags & XVMI_RESPONSE_INJECT != 0 {
        rsp = rsp.inject(r.inject.to_rust().map_err(|f| f.message)?);
    }
    Ok(rsp)
}

/// [`xvmi_event_callback`] return value: keep running.
pub const XVMI_RUN_CONTINUE: i32 = 0;
/// [`xvmi_event_callback`] return value: stop the loop, as [`xvmi_session_stop`] does (any
/// value other than 0 does it). This event is still answered with the callback's response.
pub const XVMI_RUN_STOP: i32 = 1;

/// Called for each event: read `event`, fill `response` (pre-set to continue), return
/// [`XVMI_RUN_CONTINUE`] or [`XVMI_RUN_STOP`]. Both pointers are valid only during the call.
/// It may read guest memory through memory handles (on the same domain, too); it must not
/// call functions of its own session (they return `XVMI_ERR_INVALID_ARGUMENT`) and must not
/// unwind (no C++ exception, no `longjmp` out of it).
pub type xvmi_event_callback = Option<
    unsafe extern "C" fn(
        userdata: *mut c_void,
        event: *const xvmi_event,
        response: *mut xvmi_response,
    ) -> i32,
>;

/// When [`xvmi_session_run`] returns. Zero-initialised, it runs until stopped.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct xvmi_run_options {
    /// Longest single wait for the event channel, in milliseconds (0: 100 ms).
    pub poll_ms: u32,
    /// Return after this many consecutive waits that brought no event (0: never). The
    /// timeout hook: with `poll_ms`, an idle timeout of about `poll_ms * max_idle_polls`.
    pub max_idle_polls: u32,
    /// Return after this many events (0: no limit).
    pub max_events: u64,
}

/// What a run did.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct xvmi_run_stats {
    /// Events answered.
    pub events: u64,
    /// Requests with a wrong interface version (answered safely, not given to the callback).
    pub bad_requests: u64,
    /// Total time from taking a request to queueing its response, in nanoseconds.
    pub processing_ns: u64,
    /// The slowest single event, in nanoseconds.
    pub slowest_ns: u64,
    /// The loop ended because of a stop request (`xvmi_session_stop`, a signal, or a
    /// callback returning `XVMI_RUN_STOP`).
    pub interrupted: bool,
}

/// Called for each event by [`xvmi_session_run_context`]: as [`xvmi_event_callback`], with
/// `ctx`, the event's context: what the hit was ([`xvmi_context_hit`](super::xvmi_context_hit)),
/// and changes to make before the vCPU resumes (`xvmi_context_*`). `ctx` is valid only during
/// the call.
pub type xvmi_context_callback = Option<
    unsafe extern "C" fn(
        userdata: *mut c_void,
        ctx: *mut xvmi_context,
        event: *const xvmi_event,
        response: *mut xvmi_response,
    ) -> i32,
>;

/// Answer events with `callback` until `options` say to return (NULL: until stopped), the
/// session is stopped, or an error. Every event taken from the ring is answered:
///
/// - with the callback's response when it is valid;
/// - if the callback fills in an invalid response (an unknown action or flag bits), that
///   event is answered with a plain continue, the session is torn down (which answers every
///   event still waiting) and the call returns [`XVMI_ERR_HANDLER`] naming the bad value;
/// - if xenvmi itself fails around the callback (a panic), the same, with [`XVMI_ERR_HANDLER`].
///
/// With hooks ([`xvmi_session_hooks_enable`](super::xvmi_session_hooks_enable)), the hook
/// manager answers what is its business (breakpoint hits are stepped over, the guest's own
/// `int3`s are handed back to it); the callback sees each hit as its
/// `XVMI_EVENT_SOFTWARE_BREAKPOINT` event (its response is not used) and every other event
/// as usual. [`xvmi_session_run_context`] also tells which breakpoint was hit.
///
/// Other errors (the event channel failing: [`XVMI_ERR_BACKEND`]) leave the session as it
/// is: tear it down or free it. A stopped session stays stopped: later runs return at once
/// with `interrupted` set. `*out_stats` (if not NULL) is written on success.
///
/// # Safety
/// `session` is NULL or a live handle; `callback` is a function that does not unwind;
/// `options` is NULL or points at an initialised [`xvmi_run_options`]; `out_stats` is NULL
/// or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn xvmi_session_run(
    session: *const xvmi_session,
    callback: xvmi_event_callback,
    userdata: *mut c_void,
    options: *const xvmi_run_options,
    out_stats: *mut xvmi_run_stats,
) -> xvmi_result {
    boundary(|| {
        let cb = callback.ok_or_else(|| Fail::new(XVMI_ERR_NULL_POINTER, "`callback` is NULL"))?;
        // SAFETY: `run` dereferences `options` and `out_stats` only after checking them for
        // NULL and alignment, and calls `cb` with `userdata` as the caller asked; this
        // function's contract (initialised `options`, writable `out_stats`, a callback that
        // does not unwind) is exactly `run`'s.
        unsafe { run(session, Callback::Plain(cb), userdata, options, out_stats) }
    })
}

/// As [`xvmi_session_run`], with a callback that gets the event's context: the hit (with
/// hooks), and breakpoints, return hooks, access rights and single-step to change before the
/// vCPU resumes (`xvmi_context_*`).
///
/// # Safety
/// As [`xvmi_session_run`].
#[no_mangle]
pub unsafe extern "C" fn xvmi_session_run_context(
    session: *const xvmi_session,
    callback: xvmi_context_callback,
    userdata: *mut c_void,
    options: *const xvmi_run_options,
    out_stats: *mut xvmi_run_stats,
) -> xvmi_result {
    boundary(|| {
        let cb = callback.ok_or_else(|| Fail::new(XVMI_ERR_NULL_POINTER, "`callback` is NULL"))?;
        // SAFETY: as in `xvmi_session_run`: this function's contract is `run`'s, which checks
        // `options` and `out_stats` before dereferencing them.
        unsafe { run(session, Callback::Context(cb), userdata, options, out_stats) }
    })
}

#[derive(Clone, Copy)]
enum Callback {
    Plain(unsafe extern "C" fn(*mut c_void, *const xvmi_event, *mut xvmi_response) -> i32),
    Context(
        unsafe extern "C" fn(
            *mut c_void,
            *mut xvmi_context,
            *const xvmi_event,
            *mut xvmi_response,
        ) -> i32,
    ),
}

/// A response the callback filled in that is not valid (its message names the bad value).
#[derive(Debug)]
struct InvalidResponse(String);

impl std::fmt::Display for InvalidResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InvalidResponse {}

/// One event through the C callback.
fn call(
    (cb, userdata): (Callback, *mut c_void),
    ops: &mut dyn super::context::ContextOps,
    ev: &Event,
    traced: Option<&Result<crate::trace::TraceEvent, String>>,
    stop: &StopHandle,
    shared: &DomainShared,
    invalid: &mut Option<String>,
) -> Result<Response, InvalidResponse> {
    shared.guest_ran();
    let cev = event_to_c(ev);
    let mut rsp = xvmi_response {
        regs: cev.regs,
        ..Default::default()
    };
    let verdict = match cb {
        // SAFETY: a C function pointer from the caller (contract: it does not unwind); both
        // pointers are to locals that live until it returns.
        Callback::Plain(f) => unsafe { f(userdata, &cev, &mut rsp) },
        Callback::Context(f) => with_context(ops, traced, |ctx| {
            // SAFETY: as above; `ctx` is accepted by the xvmi_context_* calls only until
            // `with_context` returns.
            unsafe { f(userdata, ctx, &cev, &mut rsp) }
        }),
    };
    if verdict != XVMI_RUN_CONTINUE {
        stop.stop();
    }
    response_from_c(&rsp).map_err(|why| {
        let msg = format!("event on vCPU {}: {why}", ev.vcpu);
        *invalid = Some(msg.clone());
        InvalidResponse(msg)
    })
}

/// # Safety
/// As [`xvmi_session_run`].
unsafe fn run(
    session: *const xvmi_session,
    cb: Callback,
    userdata: *mut c_void,
    options: *const xvmi_run_options,
    out_stats: *mut xvmi_run_stats,
) -> Result<(), Fail> {
    let s = arg_handle(session, "session")?;
    let o = if options.is_null() {
        xvmi_run_options::default()
    } else {
        // SAFETY: `options` is non-NULL here and, by the contract of the xvmi_session_run*
        // entry points that call this, points at an initialised xvmi_run_options.
        *unsafe { arg_ref(options, "options") }?
    };
    let out_stats = if out_stats.is_null() {
        None
    } else {
        Some(arg_out(out_stats, "out_stats")?)
    };
    let opts = RunOptions {
        poll: Duration::from_millis(if o.poll_ms == 0 {
            100
        } else {
            o.poll_ms as u64
        }),
        max_events: (o.max_events != 0).then_some(o.max_events),
        max_idle_polls: (o.max_idle_polls != 0).then_some(o.max_idle_polls),
    };
    let stop = s.stop.clone();
    let stats = with_inner(&s, |inner| {
        if inner.torn_down {
            return Err(Fail::invalid(
                "the session was torn down: free it and open a new one",
            ));
        }
        let shared = Arc::clone(&inner.domain);
        let mut invalid: Option<String> = None;
        let Inner {
            hooks,
            session,
            mem,
            tracing,
            ..
        } = &mut *inner;
        let r: Result<RunStats, Error> = match hooks {
            Some(hooks) => hooks.run(session, mem, &opts, |hc| {
                // The tracer sees every hit (a file open's entry arms its return), whatever
                // the callback then asks for.
                let traced = tracing
                    .as_mut()
                    .and_then(|t| t.os.linux().and_then(|l| t.tracer.handle(l, hc)));
                let traced = traced.map(|r| r.map_err(|e| e.to_string()));
                let ev = hc.event();
                call(
                    (cb, userdata),
                    hc,
                    ev,
                    traced.as_ref(),
                    &stop,
                    &shared,
                    &mut invalid,
                )
            }),
            None => session.run_with(&opts, |ctx| {
                let ev = ctx.event();
                call((cb, userdata), ctx, ev, None, &stop, &shared, &mut invalid)
            }),
        };
        shared.guest_ran();
        match r {
            Ok(st) => Ok(st),
            Err(e) => {
                if matches!(e, Error::HandlerPanicked { .. } | Error::Handler(_)) {
                    // The loop answered the event safely and tore the session down.
                    inner.torn_down = true;
                    inner.hooks = None;
                    inner.tracing = None;
                }
                if let Some(why) = invalid {
                    return Err(Fail::new(
                        XVMI_ERR_HANDLER,
                        format!(
                            "the event callback returned an invalid response ({why}); the event \
                             was answered with a plain continue and the session torn down"
                        ),
                    ));
                }
                Err(e.into())
            }
        }
    })?;
    if let Some(o) = out_stats {
        let st = xvmi_run_stats {
            events: stats.events,
            bad_requests: stats.bad_requests,
            processing_ns: stats.processing.as_nanos().min(u64::MAX as u128) as u64,
            slowest_ns: stats.slowest.as_nanos().min(u64::MAX as u128) as u64,
            interrupted: stats.interrupted,
        };
        // SAFETY: checked by arg_out.
        unsafe { put(o, st) };
    }
    Ok(())
}

/// Ask the event loop to stop: [`xvmi_session_run`] returns after answering the events it
/// has taken. Thread-safe and async-signal-safe (one atomic store): callable from another
/// thread or a signal handler while `xvmi_session_run` runs. It does not set the last error.
/// The stop is final for the session.
///
/// # Safety
/// `session` is NULL or a live handle that is not being freed.
#[no_mangle]
pub unsafe extern "C" fn xvmi_session_stop(session: *const xvmi_session) -> xvmi_result {
    if session.is_null() {
        return XVMI_ERR_NULL_POINTER;
    }
    if !session.is_aligned() {
        return XVMI_ERR_INVALID_ARGUMENT;
    }
    catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: live handle (contract); only the `stop` field is referenced, never `inner`,
        // which another thread may be using through its UnsafeCell. StopHandle is Sync.
        let stop = unsafe { &*std::ptr::addr_of!((*session).stop) };
        stop.stop();
        XVMI_OK
    }))
    .unwrap_or(XVMI_ERR_PANIC)
}

/// Make SIGINT and SIGTERM stop the event loop (as [`xvmi_session_stop`]) instead of killing
/// the process, so the session is torn down. The handlers are removed when the session is
/// freed (SIGINT and SIGTERM then terminate the process again).
///
/// # Safety
/// `session` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn xvmi_session_stop_on_signals(session: *const xvmi_session) -> xvmi_result {
    boundary(|| {
        let s = arg_handle(session, "session")?;
        s.stop.stop_on_signals()?;
        Ok(())
    })
}

/// Undo everything the session changed and answer every event still waiting, in the order
/// `docs/events.md` gives (monitors off, single-step off, access and views restored, events
/// answered, views destroyed, ring disabled). Idempotent. Every step is attempted; the first
/// error is returned. The session can only be freed afterwards.
///
/// # Safety
/// `session` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn xvmi_session_teardown(session: *const xvmi_session) -> xvmi_result {
    boundary(|| {
        let s = arg_handle(session, "session")?;
        with_inner(&s, |i| {
            i.torn_down = true;
            i.hooks = None;
            i.tracing = None;
            let r = i.session.teardown();
            i.domain.guest_ran();
            Ok(r?)
        })
    })
}

impl Handle for xvmi_session {
    const KIND: &'static str = "xvmi_session";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_from_c_are_validated() {
        let mut r = xvmi_response::default();
        assert_eq!(response_from_c(&r).unwrap(), Response::proceed());
        r.action = XVMI_ACTION_DENY;
        assert_eq!(response_from_c(&r).unwrap(), Response::deny());
        r.action = 4;
        assert!(response_from_c(&r).unwrap_err().contains("action 4"));
        r.action = XVMI_ACTION_CONTINUE;
        r.flags = 32;
        assert!(response_from_c(&r).is_err());
        r.flags = XVMI_RESPONSE_SWITCH_VIEW | XVMI_RESPONSE_TOGGLE_SINGLESTEP;
        r.view = 3;
        assert_eq!(
            response_from_c(&r).unwrap(),
            Response::proceed()
                .toggle_singlestep()
                .switch_view(ViewId(3))
        );
    }

    #[test]
    fn injections_in_responses_are_validated() {
        let mut r = xvmi_response {
            flags: XVMI_RESPONSE_INJECT,
            ..Default::default()
        };
        r.inject.vector = 14;
        r.inject.type_ = crate::capi::XVMI_INJECT_HARDWARE_EXCEPTION;
        r.inject.has_error_code = 1;
        r.inject.error_code = 6;
        r.inject.cr2 = 0x7000;
        let rsp = response_from_c(&r).unwrap();
        assert_eq!(
            rsp.injection(),
            Some(&crate::backend::Injection::page_fault(0x7000, 6))
        );
        r.inject.type_ = 1; // reserved in VMX
        assert!(response_from_c(&r)
            .unwrap_err()
            .contains("injection type 1"));
        r.inject.type_ = crate::capi::XVMI_INJECT_SOFTWARE_EXCEPTION;
        r.inject.has_error_code = 2;
        assert!(response_from_c(&r).unwrap_err().contains("has_error_code"));
        // Without the flag the field is ignored.
        r.flags = 0;
        assert_eq!(response_from_c(&r).unwrap(), Response::proceed());
    }

    #[test]
    fn monitors_from_c_are_validated() {
        let mut m = xvmi_monitor::default();
        assert!(monitor_from_c(&m).is_err(), "kind 0 is not a monitor");
        m.kind = XVMI_MONITOR_CONTROL_REGISTER;
        m.control_register = crate::capi::XVMI_REGISTER_CR4;
        m.sync = 1;
        assert!(matches!(
            monitor_from_c(&m).unwrap(),
            Monitor::ControlRegister { sync: true, .. }
        ));
        m.sync = 2;
        assert!(monitor_from_c(&m).is_err());
        m.sync = 1;
        m.control_register = 9;
        assert!(monitor_from_c(&m).is_err());
    }
}
