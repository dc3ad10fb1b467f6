//! The context an event callback of [`xvmi_session_run_context`](super::xvmi_session_run_context)
//! gets: what the hit was, and changes to make before the event's vCPU resumes (breakpoints
//! placed and removed, return hooks, access rights, single-step). The C face of
//! `EventContext` and `HookContext`.
//!
//! A context pointer is valid only during the callback it was given to. Each call checks that
//! it is the context of the callback running on this thread right now, so a pointer kept and
//! used later is refused with [`XVMI_ERR_INVALID_HANDLE`] instead of being dereferenced.

use std::cell::Cell;
use std::ffi::c_char;

use super::domain::{Domain, DomainMemory};
use super::error::*;
use super::handles::arg_handle;
use super::os::xvmi_os;
use super::session::parse_access;
use crate::addr::{Gfn, Gpa, Gva, VcpuId, ViewId};
use crate::event::hooks::{Hit, HookContext, HookId};
use crate::event::session::{EventContext, Session};
use crate::os::linux::Linux;
use crate::trace::TraceEvent;

/// The context of one event callback (opaque). Valid only during that callback.
pub struct xvmi_context {
    _opaque: [u8; 0],
}

/// [`xvmi_hit::kind`]: the event is not a hit of the session's hooks.
pub const XVMI_HIT_NONE: u32 = 0;
/// A breakpoint was executed (`id`, `gpa`).
pub const XVMI_HIT_BREAKPOINT: u32 = 1;
/// A call whose entry armed a return hook returned (`id` is the entry's breakpoint, `tag`
/// the value given to [`xvmi_context_return_hook`], `gpa` the return address's).
pub const XVMI_HIT_RETURN: u32 = 2;

/// What a hit was (`xenvmi::event::hooks::Hit`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct xvmi_hit {
    /// `XVMI_HIT_*`.
    pub kind: u32,
    /// Always zero.
    pub reserved: u32,
    /// The breakpoint (for a return: the breakpoint whose hit armed it).
    pub id: u64,
    /// Guest-physical address of the instruction hit.
    pub gpa: u64,
    /// For a return: the tag given when it was armed.
    pub tag: u64,
}

impl From<Option<Hit>> for xvmi_hit {
    fn from(h: Option<Hit>) -> Self {
        match h {
            None => xvmi_hit::default(),
            Some(Hit::Breakpoint { id, gpa }) => xvmi_hit {
                kind: XVMI_HIT_BREAKPOINT,
                id: id.0,
                gpa: gpa.0,
                ..Default::default()
            },
            Some(Hit::Return { entry, tag, gpa }) => xvmi_hit {
                kind: XVMI_HIT_RETURN,
                id: entry.0,
                gpa: gpa.0,
                tag,
                reserved: 0,
            },
        }
    }
}

/// What a callback can do through its context; implemented by the plain loop's
/// `EventContext` (no hooks) and the hook manager's `HookContext`.
pub(crate) trait ContextOps {
    fn hit(&self) -> Option<Hit>;
    fn session(&mut self) -> &mut Session<'static, Domain>;
    fn add(&mut self, gpa: Gpa) -> Result<HookId, Fail>;
    fn add_va(&mut self, va: Gva) -> Result<HookId, Fail>;
    fn add_symbol(&mut self, linux: &Linux, spec: &str) -> Result<HookId, Fail>;
    fn remove(&mut self, id: HookId) -> Result<(), Fail>;
    fn return_hook(&mut self, tag: u64) -> Result<Gpa, Fail>;
    fn stop(&self);
}

fn no_hooks() -> Fail {
    Fail::invalid(
        "the session has no hooks: call xvmi_session_hooks_enable before running the session",
    )
}

impl ContextOps for EventContext<'_, 'static, Domain> {
    fn hit(&self) -> Option<Hit> {
        None
    }
    fn session(&mut self) -> &mut Session<'static, Domain> {
        EventContext::session(self)
    }
    fn add(&mut self, _: Gpa) -> Result<HookId, Fail> {
        Err(no_hooks())
    }
    fn add_va(&mut self, _: Gva) -> Result<HookId, Fail> {
        Err(no_hooks())
    }
    fn add_symbol(&mut self, _: &Linux, _: &str) -> Result<HookId, Fail> {
        Err(no_hooks())
    }
    fn remove(&mut self, _: HookId) -> Result<(), Fail> {
        Err(no_hooks())
    }
    fn return_hook(&mut self, _: u64) -> Result<Gpa, Fail> {
        Err(no_hooks())
    }
    fn stop(&self) {
        EventContext::stop(self)
    }
}

impl ContextOps for HookContext<'_, '_, 'static, Domain, DomainMemory> {
    fn hit(&self) -> Option<Hit> {
        HookContext::hit(self)
    }
    fn session(&mut self) -> &mut Session<'static, Domain> {
        HookContext::session(self)
    }
    fn add(&mut self, gpa: Gpa) -> Result<HookId, Fail> {
        Ok(HookContext::add(self, gpa)?)
    }
    fn add_va(&mut self, va: Gva) -> Result<HookId, Fail> {
        Ok(HookContext::add_va(self, va)?)
    }
    fn add_symbol(&mut self, linux: &Linux, spec: &str) -> Result<HookId, Fail> {
        Ok(HookContext::add_symbol(self, linux, spec)?)
    }
    fn remove(&mut self, id: HookId) -> Result<(), Fail> {
        Ok(HookContext::remove(self, id)?)
    }
    fn return_hook(&mut self, tag: u64) -> Result<Gpa, Fail> {
        Ok(HookContext::return_hook(self, tag)?)
    }
    fn stop(&self) {
        HookContext::stop(self)
    }
}

/// The callback's context, behind the opaque pointer C gets.
struct Slot<'a> {
    ops: &'a mut dyn ContextOps,
    /// The traced event this hit is (`xvmi_context_trace_event`), if it is one.
    trace: Option<&'a Result<TraceEvent, String>>,
}

thread_local! {
    /// The context of the callback running on this thread (0: none).
    static CURRENT: Cell<usize> = const { Cell::new(0) };
}

/// Call `f` with a context pointer for `ops`, valid (and accepted by the `xvmi_context_*`
/// calls) only until `f` returns.
pub(crate) fn with_context<R>(
    ops: &mut dyn ContextOps,
    trace: Option<&Result<TraceEvent, String>>,
    f: impl FnOnce(*mut xvmi_context) -> R,
) -> R {
    let mut slot = Slot { ops, trace };
    let p = std::ptr::addr_of_mut!(slot).cast::<xvmi_context>();
    struct Restore(usize);
    impl Drop for Restore {
        fn drop(&mut self) {
            CURRENT.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(CURRENT.with(|c| c.replace(p as usize)));
    f(p)
}

/// The context behind `ctx`, if it is the current callback's.
fn current<'a>(ctx: *mut xvmi_context) -> Result<&'a mut dyn ContextOps, Fail> {
    Ok(&mut *slot(ctx)?.ops)
}

/// The traced event of the current callback's hit, if it is one.
pub(crate) fn current_trace<'a>(
    ctx: *mut xvmi_context,
) -> Result<Option<&'a Result<TraceEvent, String>>, Fail> {
    Ok(slot(ctx)?.trace)
}

/// The slot behind `ctx`, if it is the current callback's.
fn slot<'a>(ctx: *mut xvmi_context) -> Result<&'a mut Slot<'a>, Fail> {
    check_ptr(ctx, "ctx")?;
    if CURRENT.with(|c| c.get()) != ctx as usize {
        return Err(Fail::new(
            XVMI_ERR_INVALID_HANDLE,
            "`ctx` is not the context of the event callback running on this thread (a context is \
             valid only during its callback)",
        ));
    }
    // SAFETY: `ctx` is the address of the `Slot` that `with_context` put in CURRENT and that
    // lives on its stack until `f` returns, when CURRENT is restored; so it is alive now. The
    // callback is running inside `f` on this thread, and `with_context`'s caller does not
    // touch `ops` until `f` returns, so this is the only reference in use.
    Ok(unsafe { &mut *ctx.cast::<Slot<'a>>() })
}

/// Write a breakpoint id to an out-parameter.
pub(super) fn put_id(out: *mut u64, id: HookId) {
    // SAFETY: every caller checked `out` with arg_out.
    unsafe { put(out, id.0) };
}

/// What the current event was for the session's hooks: `out->kind` is [`XVMI_HIT_NONE`] for an
/// event that is not a hit.
///
/// # Safety
/// `ctx` is the context of the running callback; `out` is valid for a write.
#[no_mangle]
pub unsafe extern "C" fn xvmi_context_hit(
    ctx: *mut xvmi_context,
    out: *mut xvmi_hit,
) -> xvmi_result {
    boundary(|| {
        let c = current(ctx)?;
        let out = arg_out(out, "out")?;
        // SAFETY: checked by arg_out.
        unsafe { put(out, xvmi_hit::from(c.hit())) };
        Ok(())
    })
}

/// Place a breakpoint at guest-physical `gpa` (live before the vCPU resumes); its id goes to
/// `*out_id`.
///
/// # Safety
/// `ctx` is the context of the running callback; `out_id` is valid for a write.
#[no_mangle]
pub unsafe extern "C" fn xvmi_context_hook_add(
    ctx: *mut xvmi_context,
    gpa: u64,
    out_id: *mut u64,
) -> xvmi_result {
    boundary(|| {
        let c = current(ctx)?;
        let out = arg_out(out_id, "out_id")?;
        put_id(out, c.add(Gpa(gpa))?);
        Ok(())
    })
}

/// Place a breakpoint at guest-virtual `va`, translated in the event's address space (its
/// CR3).
///
/// # Safety
/// `ctx` is the context of the running callback; `out_id` is valid for a write.
#[no_mangle]
pub unsafe extern "C" fn xvmi_context_hook_add_va(
    ctx: *mut xvmi_context,
    va: u64,
    out_id: *mut u64,
) -> xvmi_result {
    boundary(|| {
        let c = current(ctx)?;
        let out = arg_out(out_id, "out_id")?;
        put_id(out, c.add_va(Gva(va))?);
        Ok(())
    })
}

/// The Linux kernel of an OS handle, for symbol breakpoints.
pub(crate) fn linux_of(os: &xvmi_os) -> Result<&Linux, Fail> {
    os.os.linux().ok_or_else(|| {
        Fail::new(
            XVMI_ERR_UNSUPPORTED,
            "breakpoints by symbol name need a Linux kernel handle; on Windows, place them by \
             virtual address",
        )
    })
}

/// Place a breakpoint at a kernel symbol of `os` (a Linux kernel handle of this guest):
/// `"name"` or `"name+offset"` (`"do_sys_openat2+0x4"`).
///
/// # Safety
/// `ctx` is the context of the running callback; `os` is NULL or a live handle; `spec` is a
/// NUL-terminated string; `out_id` is valid for a write.
#[no_mangle]
pub unsafe extern "C" fn xvmi_context_hook_add_symbol(
    ctx: *mut xvmi_context,
    os: *const xvmi_os,
    spec: *const c_char,
    out_id: *mut u64,
) -> xvmi_result {
    boundary(|| {
        let c = current(ctx)?;
        let os = arg_handle(os, "os")?;
        // SAFETY: `spec` is NUL-terminated (this function's contract).
        let spec = unsafe { arg_str(spec, "spec") }?;
        let out = arg_out(out_id, "out_id")?;
        let linux = linux_of(&os)?;
        put_id(out, c.add_symbol(linux, spec)?);
        Ok(())
    })
}

/// Remove breakpoint `id` (before the vCPU resumes). An unknown id is not an error.
///
/// # Safety
/// `ctx` is the context of the running callback.
#[no_mangle]
pub unsafe extern "C" fn xvmi_context_hook_remove(ctx: *mut xvmi_context, id: u64) -> xvmi_result {
    boundary(|| {
        let c = current(ctx)?;
        c.remove(HookId(id))?;
        Ok(())
    })
}

/// On a breakpoint hit at a function's first instruction: report this call's return as an
/// [`XVMI_HIT_RETURN`] hit with `tag`, matched to this call by stack pointer and CR3. The
/// return address's guest-physical address goes to `*out_gpa` (may be NULL).
///
/// # Safety
/// `ctx` is the context of the running callback; `out_gpa` is NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn xvmi_context_return_hook(
    ctx: *mut xvmi_context,
    tag: u64,
    out_gpa: *mut u64,
) -> xvmi_result {
    boundary(|| {
        let c = current(ctx)?;
        let out = if out_gpa.is_null() {
            None
        } else {
            Some(arg_out(out_gpa, "out_gpa")?)
        };
        let g = c.return_hook(tag)?;
        if let Some(o) = out {
            // SAFETY: checked by arg_out.
            unsafe { put(o, g.0) };
        }
        Ok(())
    })
}

/// Set the access rights (`XVMI_ACCESS_*`) of frame `gfn` in `view`, before the vCPU resumes
/// (restored at teardown).
///
/// # Safety
/// `ctx` is the context of the running callback.
#[no_mangle]
pub unsafe extern "C" fn xvmi_context_set_mem_access(
    ctx: *mut xvmi_context,
    view: u16,
    gfn: u64,
    access: u32,
) -> xvmi_result {
    boundary(|| {
        let c = current(ctx)?;
        let a = parse_access(access, "access")?;
        c.session().set_mem_access(ViewId(view), Gfn(gfn), a)?;
        Ok(())
    })
}

/// Turn single-stepping of vCPU `vcpu` on (`enable` 1) or off (0), before the event's vCPU
/// resumes (off at teardown).
///
/// # Safety
/// `ctx` is the context of the running callback.
#[no_mangle]
pub unsafe extern "C" fn xvmi_context_singlestep(
    ctx: *mut xvmi_context,
    vcpu: u32,
    enable: u8,
) -> xvmi_result {
    boundary(|| {
        let c = current(ctx)?;
        let on = arg_bool(enable, "enable")?;
        c.session().singlestep(VcpuId(vcpu), on)?;
        Ok(())
    })
}

/// End the loop after the events taken are answered (as returning [`XVMI_RUN_STOP`](super::XVMI_RUN_STOP)).
///
/// # Safety
/// `ctx` is the context of the running callback.
#[no_mangle]
pub unsafe extern "C" fn xvmi_context_stop(ctx: *mut xvmi_context) -> xvmi_result {
    boundary(|| {
        current(ctx)?.stop();
        Ok(())
    })
}
