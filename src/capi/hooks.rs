//! The hook manager on a session (`xenvmi::event::hooks`): breakpoints by guest-physical and
//! guest-virtual address and by kernel symbol, stealth (an altp2m execute view) or in place
//! (`int3` in the page). Placed before the loop runs here; from inside the callback through
//! its context (`xvmi_context_*`).

use std::ffi::c_char;

use super::context::{linux_of, put_id};
use super::domain::{Domain, DomainMemory};
use super::error::*;
use super::handles::arg_handle;
use super::os::xvmi_os;
use super::session::{changes, with_inner, xvmi_session, Inner};
use crate::addr::{Gpa, Gva, VcpuId};
use crate::backend::VcpuState;
use crate::event::hooks::{HookId, Hooks, Placement};
use crate::event::session::Session;
use crate::mem::{AddressSpace, GuestMemory};

/// [`xvmi_session_hooks_enable`]: shadow pages in an altp2m execute view (needs altp2m); hits
/// are stepped over per vCPU in view 0, so no other vCPU runs unhooked code.
pub const XVMI_PLACEMENT_STEALTH: u32 = 1;
/// `int3` written into the page in the host view; hits are answered by having Xen emulate
/// the original instruction (no altp2m needed; the guest can see the `int3`s).
pub const XVMI_PLACEMENT_IN_PLACE: u32 = 2;

/// The hook manager's counters (`xenvmi::event::hooks::HookStats`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct xvmi_hook_stats {
    /// Breakpoints placed now.
    pub breakpoints: u64,
    /// Breakpoint hits reported.
    pub hits: u64,
    /// Returns reported.
    pub returns: u64,
    /// Hits at a return address that matched no pending call (stack pointer or CR3).
    pub unmatched_returns: u64,
    /// Guest `int3`s handed back to the guest.
    pub reinjected: u64,
    /// Guest reads and writes of hooked pages performed for it.
    pub accesses: u64,
    /// Hooked pages copied again after the guest wrote them.
    pub refreshes: u64,
}

type Parts<'a> = (
    &'a mut Hooks,
    &'a mut Session<'static, Domain>,
    &'a GuestMemory<DomainMemory>,
);

/// The hooks, the session and the hooks' memory of a session that has hooks.
fn hooks_of(inner: &mut Inner) -> Result<Parts<'_>, Fail> {
    changes(inner)?;
    let Inner {
        hooks,
        session,
        mem,
        ..
    } = inner;
    let h = hooks.as_mut().ok_or_else(|| {
        Fail::invalid("the session has no hooks: call xvmi_session_hooks_enable first")
    })?;
    Ok((h, session, mem))
}

/// Turn the hook manager on: `placement` is [`XVMI_PLACEMENT_STEALTH`] (creates the execute
/// view and switches every vCPU into it) or [`XVMI_PLACEMENT_IN_PLACE`]. It turns on the
/// breakpoint and single-step monitors. Everything it changes is undone at teardown.
///
/// # Safety
/// `session` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn xvmi_session_hooks_enable(
    session: *const xvmi_session,
    placement: u32,
) -> xvmi_result {
    boundary(|| {
        let s = arg_handle(session, "session")?;
        let p = match placement {
            XVMI_PLACEMENT_STEALTH => Placement::Stealth,
            XVMI_PLACEMENT_IN_PLACE => Placement::InPlace,
            v => {
                return Err(Fail::invalid(format!(
                    "placement {v} is not XVMI_PLACEMENT_STEALTH (1) or XVMI_PLACEMENT_IN_PLACE (2)"
                )))
            }
        };
        with_inner(&s, |i| {
            if i.hooks.is_some() {
                return Err(Fail::invalid("the session's hooks are enabled already"));
            }
            let h = Hooks::new(changes(i)?, p)?;
            i.hooks = Some(h);
            Ok(())
        })
    })
}

/// Place a breakpoint at guest-physical `gpa` (the first byte of an instruction); its id goes
/// to `*out_id`.
///
/// # Safety
/// `session` is NULL or a live handle; `out_id` is valid for a write.
#[no_mangle]
pub unsafe extern "C" fn xvmi_session_hook_add(
    session: *const xvmi_session,
    gpa: u64,
    out_id: *mut u64,
) -> xvmi_result {
    boundary(|| {
        let s = arg_handle(session, "session")?;
        let out = arg_out(out_id, "out_id")?;
        let id = with_inner(&s, |i| {
            let (h, session, _) = hooks_of(i)?;
            Ok(h.add(session, Gpa(gpa))?)
        })?;
        put_id(out, id);
        Ok(())
    })
}

/// Place a breakpoint at guest-virtual `va` in the address space whose page-table root is
/// `cr3` (the paging mode is vCPU 0's), translated now.
///
/// # Safety
/// `session` is NULL or a live handle; `out_id` is valid for a write.
#[no_mangle]
pub unsafe extern "C" fn xvmi_session_hook_add_va(
    session: *const xvmi_session,
    cr3: u64,
    va: u64,
    out_id: *mut u64,
) -> xvmi_result {
    boundary(|| {
        let s = arg_handle(session, "session")?;
        let out = arg_out(out_id, "out_id")?;
        let id = with_inner(&s, |i| {
            let mode = i.domain.backend.registers(VcpuId(0))?.paging_mode();
            let (h, session, mem) = hooks_of(i)?;
            mem.guest_ran();
            let space = AddressSpace::from_cr3(cr3, mode);
            Ok(h.add_va(session, mem, space, Gva(va))?)
        })?;
        put_id(out, id);
        Ok(())
    })
}

/// Place a breakpoint at a kernel symbol of `os` (a Linux kernel handle of this guest):
/// `"name"` or `"name+offset"`. [`XVMI_ERR_MISSING_SYMBOL`] names a symbol the kernel does
/// not have.
///
/// # Safety
/// `session` and `os` are NULL or live handles; `spec` is a NUL-terminated string; `out_id`
/// is valid for a write.
#[no_mangle]
pub unsafe extern "C" fn xvmi_session_hook_add_symbol(
    session: *const xvmi_session,
    os: *const xvmi_os,
    spec: *const c_char,
    out_id: *mut u64,
) -> xvmi_result {
    boundary(|| {
        let s = arg_handle(session, "session")?;
        let os = arg_handle(os, "os")?;
        // SAFETY: `spec` is NUL-terminated (this function's contract).
        let spec = unsafe { arg_str(spec, "spec") }?;
        let out = arg_out(out_id, "out_id")?;
        let linux = linux_of(&os)?;
        let id = with_inner(&s, |i| {
            let (h, session, mem) = hooks_of(i)?;
            mem.guest_ran();
            Ok(h.add_symbol(session, mem, linux, spec)?)
        })?;
        put_id(out, id);
        Ok(())
    })
}

/// Remove breakpoint `id`. An unknown id is not an error (it may have been removed already).
///
/// # Safety
/// `session` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn xvmi_session_hook_remove(
    session: *const xvmi_session,
    id: u64,
) -> xvmi_result {
    boundary(|| {
        let s = arg_handle(session, "session")?;
        with_inner(&s, |i| {
            let (h, session, _) = hooks_of(i)?;
            Ok(h.remove(session, HookId(id))?)
        })
    })
}

/// The hook manager's counters.
///
/// # Safety
/// `session` is NULL or a live handle; `out` is valid for a write.
#[no_mangle]
pub unsafe extern "C" fn xvmi_session_hook_stats(
    session: *const xvmi_session,
    out: *mut xvmi_hook_stats,
) -> xvmi_result {
    boundary(|| {
        let s = arg_handle(session, "session")?;
        let out = arg_out(out, "out")?;
        let st = with_inner(&s, |i| {
            let (h, _, _) = hooks_of(i)?;
            let c = h.stats();
            Ok(xvmi_hook_stats {
                breakpoints: h.len() as u64,
                hits: c.hits,
                returns: c.returns,
                unmatched_returns: c.unmatched_returns,
                reinjected: c.reinjected,
                accesses: c.accesses,
                refreshes: c.refreshes,
            })
        })?;
        // SAFETY: checked by arg_out.
        unsafe { put(out, st) };
        Ok(())
    })
}
