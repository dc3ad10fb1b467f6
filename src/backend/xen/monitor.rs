//! The monitor side of vm_event: the ring page that `xc_monitor_enable` maps and its event
//! channel ([`MonitorRing`]), and the monitors and single-step switches configured for it.

use std::cell::{Cell, RefCell};
use std::ffi::c_void;
use std::ptr::NonNull;
use std::rc::Rc;
use std::time::Duration;

use super::control::XcInterface;
use super::lib::XenLibs;
use super::{check, errno_reason, fail, sys, XenDomain};
use crate::addr::{VcpuId, PAGE_SIZE};
use crate::backend::{ControlRegister, EventChannel, EventControl, Monitor};
use crate::error::Result;
use crate::vmevent::ring::RingPage;

/// A ring page mapped into this process by `xc_monitor_enable`; unmapped on drop.
struct RingMapping(NonNull<c_void>);

impl Drop for RingMapping {
    fn drop(&mut self) {
        // SAFETY: the page was mapped by xc_monitor_enable (the caller unmaps it). No
        // `&RingPage` into it outlives this value: `MonitorRing::page` borrows from the
        // MonitorRing that holds it until it drops, and a failed enable drops it before handing
        // any out.
        unsafe { libc::munmap(self.0.as_ptr(), PAGE_SIZE as usize) };
    }
}

/// A libxenevtchn handle (`xenevtchn_open`) and, once bound, its local port. On drop the port
/// is unbound and the handle closed.
struct Evtchn {
    handle: NonNull<c_void>,
    port: Option<u32>,
    libs: Rc<XenLibs>,
}

impl Evtchn {
    fn as_ptr(&self) -> *mut c_void {
        self.handle.as_ptr()
    }
}

impl Drop for Evtchn {
    fn drop(&mut self) {
        // SAFETY: the handle came from xenevtchn_open and the port from binding it; both are
        // released once, here, port first.
        unsafe {
            if let Some(port) = self.port {
                (self.libs.xenevtchn_unbind)(self.as_ptr(), port);
            }
            (self.libs.xenevtchn_close)(self.as_ptr());
        }
    }
}

/// The ring this handle enabled.
struct Enabled {
    page: RingMapping,
    /// `None` once the ring was disabled (the page stays mapped: see [`MonitorRing`]).
    evtchn: Option<Evtchn>,
}

/// The vm_event ring of one domain, once enabled, and its event channel.
///
/// On drop the ring is disabled (`xc_monitor_disable`) if it is still enabled, then its event
/// channel is unbound and closed, then the ring pages are unmapped. Pages of rings disabled
/// earlier stay mapped until then too, because a `&RingPage` handed out by [`MonitorRing::page`]
/// may still be alive.
pub(super) struct MonitorRing {
    enabled: RefCell<Option<Enabled>>,
    /// Ring pages of closed rings: kept mapped until drop.
    retired: RefCell<Vec<RingMapping>>,
    /// Stands in for the ring until events are enabled (never read by Xen).
    idle: Box<RingPage>,
    /// `XEN_DOMCTL_MONITOR_OP_CONTROL_REGISTERS` was sent for the current ring (Xen clears it
    /// when the ring is disabled).
    registers_held: Cell<bool>,
    domid: u32,
    xc: Rc<XcInterface>,
}

impl MonitorRing {
    /// No ring yet: [`MonitorRing::enable`] maps one.
    pub(super) fn new(xc: Rc<XcInterface>, domid: u32) -> MonitorRing {
        MonitorRing {
            enabled: RefCell::new(None),
            retired: RefCell::new(Vec::new()),
            idle: RingPage::boxed(),
            registers_held: Cell::new(false),
            domid,
            xc,
        }
    }

    /// The ring page (a blank stand-in before the first ring is enabled).
    pub(super) fn page(&self) -> &RingPage {
        let mapped = self.enabled.borrow().as_ref().map(|e| e.page.0);
        match mapped {
            // SAFETY: mapped until this MonitorRing drops (a closed ring's page moves to
            // `retired`, it is not unmapped), page-aligned, 4096 bytes; RingPage is
            // repr(C, align(4096)) and accessed only through atomics.
            Some(p) => unsafe { &*(p.as_ptr() as *const RingPage) },
            None => &self.idle,
        }
    }

    /// Wait for the event channel, at most `timeout`.
    pub(super) fn wait(&self, timeout: Duration) -> Result<bool> {
        let l = self.xc.libs();
        let enabled = self.enabled.borrow();
        let Some(e) = enabled.as_ref().and_then(|e| e.evtchn.as_ref()) else {
            return Err(fail(
                "waiting for events",
                "events are not enabled (no session is open) or the ring was closed".into(),
            ));
        };
        // SAFETY: valid event-channel handle.
        let fd = unsafe { (l.xenevtchn_fd)(e.as_ptr()) };
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN | libc::POLLERR,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let rc = unsafe {
            libc::poll(
                &mut pfd,
                1,
                timeout.as_millis().min(i32::MAX as u128) as i32,
            )
        };
        if rc < 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                return Ok(false);
            }
            return Err(fail("poll on /dev/xen/evtchn", errno_reason("", "")));
        }
        if rc == 0 {
            return Ok(false);
        }
        // SAFETY: valid handle; poll said a port is pending, so this does not block.
        let port = unsafe { (l.xenevtchn_pending)(e.as_ptr()) };
        if port < 0 {
            return Err(fail("xenevtchn_pending", errno_reason("", "")));
        }
        // SAFETY: valid handle and port.
        let rc = unsafe { (l.xenevtchn_unmask)(e.as_ptr(), port as u32) };
        check(rc, "xenevtchn_unmask")?;
        Ok(true)
    }

    /// Signal the event channel (nothing if no ring is enabled).
    pub(super) fn notify(&self) -> Result<()> {
        let enabled = self.enabled.borrow();
        let Some(e) = enabled.as_ref().and_then(|e| e.evtchn.as_ref()) else {
            return Ok(());
        };
        let Some(port) = e.port else { return Ok(()) };
        // SAFETY: valid handle and bound port.
        let rc = unsafe { (self.xc.libs().xenevtchn_notify)(e.as_ptr(), port) };
        check(rc, "xenevtchn_notify")
    }

    /// Disable this handle's ring, then unbind and close its event channel. The page stays
    /// mapped until drop.
    pub(super) fn close(&self) -> Result<()> {
        let mut enabled = self.enabled.borrow_mut();
        let Some(e) = enabled.as_mut() else {
            return Ok(());
        };
        if e.evtchn.is_none() {
            return Ok(()); // already closed (teardown, then drop)
        }
        // SAFETY: valid handle. Xen answers EBUSY while a vCPU waits for a ring slot: the ring
        // and its event channel then stay as they are, so the caller can drain and retry.
        if unsafe { (self.xc.libs().xc_monitor_disable)(self.xc.as_ptr(), self.domid) } < 0 {
            return Err(fail(
                "xc_monitor_disable",
                errno_reason(
                    "",
                    "a vCPU may be waiting for a ring slot: answer the ring and try again",
                ),
            ));
        }
        // Unbinds and closes the event channel; the ring page stays mapped (unmapped in Drop)
        // so `page()` never dangles.
        e.evtchn = None;
        self.registers_held.set(false);
        Ok(())
    }

    /// `xc_monitor_enable` and binding its event channel. EBUSY means another monitor is (or
    /// was) attached.
    pub(super) fn enable(&self) -> Result<()> {
        {
            let mut enabled = self.enabled.borrow_mut();
            match enabled.as_ref() {
                Some(e) if e.evtchn.is_some() => return Ok(()),
                // Closed by an earlier session's teardown: enable a fresh ring.
                Some(_) => {
                    if let Some(old) = enabled.take() {
                        self.retired.borrow_mut().push(old.page);
                    }
                }
                None => {}
            }
        }
        let (l, xch, domid) = (self.xc.libs(), self.xc.as_ptr(), self.domid);
        let mut port = 0u32;
        // SAFETY: valid handle; returns the mapped ring page or NULL.
        let ring = unsafe { (l.xc_monitor_enable)(xch, domid, &mut port) };
        let Some(ring) = NonNull::new(ring) else {
            let busy = std::io::Error::last_os_error().raw_os_error() == Some(libc::EBUSY);
            return Err(fail(
                "xc_monitor_enable",
                errno_reason(
                    "",
                    if busy {
                        "another monitor is attached, or a previous one exited without xc_monitor_disable"
                    } else {
                        ""
                    },
                ),
            ));
        };
        let page = RingMapping(ring);
        // SAFETY: NULL logger, flags 0. The handle is closed by Evtchn's Drop.
        let evtchn = unsafe { (l.xenevtchn_open)(std::ptr::null_mut(), 0) };
        let Some(handle) = NonNull::new(evtchn) else {
            // SAFETY: valid handle, ring enabled above.
            unsafe { (l.xc_monitor_disable)(xch, domid) };
            return Err(fail(
                "xenevtchn_open",
                errno_reason("opening /dev/xen/evtchn", ""),
            ));
        };
        let mut evtchn = Evtchn {
            handle,
            port: None,
            libs: self.xc.shared_libs(),
        };
        // SAFETY: valid event-channel handle, remote port from xc_monitor_enable.
        let local = unsafe { (l.xenevtchn_bind_interdomain)(evtchn.as_ptr(), domid, port) };
        if local < 0 {
            // Undone in reverse order: the event channel is closed, then the ring disabled.
            drop(evtchn);
            // SAFETY: valid handle, ring enabled above.
            unsafe { (l.xc_monitor_disable)(xch, domid) };
            return Err(fail("xenevtchn_bind_interdomain", errno_reason("", "")));
        }
        evtchn.port = Some(local as u32);
        // SAFETY: the ring page is page-aligned, 4096 bytes, and mapped until this MonitorRing
        // drops; RingPage is repr(C, align(4096)) and accessed only through atomics.
        let ring_page = unsafe { &*(page.0.as_ptr() as *const RingPage) };
        ring_page.init();
        *self.enabled.borrow_mut() = Some(Enabled {
            page,
            evtchn: Some(evtchn),
        });
        Ok(())
    }

    /// Disable a ring that another consumer, now gone, left enabled.
    pub(super) fn abandon(&self) -> Result<bool> {
        if matches!(&*self.enabled.borrow(), Some(e) if e.evtchn.is_some()) {
            return Err(fail(
                "abandoning the vm_event ring",
                "this handle's own ring is enabled: close it with a teardown instead".into(),
            ));
        }
        // SAFETY: valid handle; disables whatever ring the domain has.
        let rc = unsafe { (self.xc.libs().xc_monitor_disable)(self.xc.as_ptr(), self.domid) };
        self.registers_held.set(false);
        if rc == 0 {
            return Ok(true);
        }
        // Xen answers EINVAL when no monitor ring is enabled.
        if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL) {
            return Ok(false);
        }
        Err(fail("xc_monitor_disable", errno_reason("", "")))
    }
}

impl Drop for MonitorRing {
    fn drop(&mut self) {
        // Disable the ring before anything it uses goes away; the fields then close the event
        // channel (if disabling failed, it is still bound) and unmap the pages.
        let _ = self.close();
    }
}

impl EventControl for XenDomain {
    fn set_monitor(&self, m: Monitor, on: bool) -> Result<()> {
        // Since Xen 4.15 a control-register or MSR write reported to a monitor is only held
        // back for the monitor's answer (so that DENY can cancel it) once the domain's
        // "control register values" option is on; without it Xen makes the write at once and
        // DENY does nothing. Found on real Xen with a Linux guest: the rootkit module read
        // back the value it wrote after the guard had answered DENY.
        if on
            && matches!(
                m,
                Monitor::ControlRegister { sync: true, .. } | Monitor::Msr { .. }
            )
            && !self.monitor.registers_held.get()
        {
            self.hold_register_writes()?;
            self.monitor.registers_held.set(true);
        }
        if on && m == Monitor::SingleStep && !self.caps.singlestep() {
            return Err(fail(
                "enabling single-step events",
                "the CPU lacks the monitor trap flag (Xen reports no SINGLESTEP capability for this domain)".into(),
            ));
        }
        let (x, d, l) = (self.xch(), self.domid, self.libs());
        // SAFETY: every arm calls a libxenctrl monitor function with the valid handle, the
        // domain id and plain value arguments; none retains a pointer.
        let rc = unsafe {
            match m {
                Monitor::ControlRegister {
                    register,
                    sync,
                    on_change_only,
                    ignore_mask,
                } => {
                    let idx = match register {
                        ControlRegister::Cr0 => 0,
                        ControlRegister::Cr3 => 1,
                        ControlRegister::Cr4 => 2,
                        ControlRegister::Xcr0 => 3,
                    };
                    (l.xc_monitor_write_ctrlreg)(x, d, idx, on, sync, ignore_mask, on_change_only)
                }
                Monitor::Msr {
                    index,
                    on_change_only,
                } => (l.xc_monitor_mov_to_msr)(x, d, index, on, on_change_only),
                Monitor::SingleStep => (l.xc_monitor_singlestep)(x, d, on),
                Monitor::SoftwareBreakpoint => (l.xc_monitor_software_breakpoint)(x, d, on),
                Monitor::DebugException { sync } => (l.xc_monitor_debug_exceptions)(x, d, on, sync),
                Monitor::Cpuid => (l.xc_monitor_cpuid)(x, d, on),
                Monitor::DescriptorAccess => (l.xc_monitor_descriptor_access)(x, d, on),
                Monitor::GuestRequest { sync } => {
                    (l.xc_monitor_guest_request)(x, d, on, sync, false)
                }
                Monitor::EmulUnimplemented => (l.xc_monitor_emul_unimplemented)(x, d, on),
                // NB: this call takes "disable".
                Monitor::InguestPagefault => (l.xc_monitor_inguest_pagefault)(x, d, !on),
            }
        };
        // Xen answers EEXIST when the monitor is already in the requested state. For "off"
        // that is the goal (disabling a ring clears every monitor: seen after a recovery).
        if rc < 0 && !on && std::io::Error::last_os_error().raw_os_error() == Some(libc::EEXIST) {
            return Ok(());
        }
        check(
            rc,
            format!(
                "{} monitor {m:?}",
                if on { "enabling" } else { "disabling" }
            ),
        )
    }

    fn set_vcpu_singlestep(&self, vcpu: VcpuId, on: bool) -> Result<()> {
        let op = if on {
            sys::XEN_DOMCTL_DEBUG_OP_SINGLE_STEP_ON
        } else {
            sys::XEN_DOMCTL_DEBUG_OP_SINGLE_STEP_OFF
        };
        // SAFETY: valid handle; plain values.
        let rc =
            unsafe { (self.libs().xc_domain_debug_control)(self.xch(), self.domid, op, vcpu.0) };
        check(
            rc,
            format!(
                "single-step {} on vCPU {vcpu}",
                if on { "on" } else { "off" }
            ),
        )
    }
}

impl EventChannel for XenDomain {
    fn ring(&self) -> &RingPage {
        self.monitor.page()
    }

    fn wait(&self, timeout: Duration) -> Result<bool> {
        self.monitor.wait(timeout)
    }

    fn notify(&self) -> Result<()> {
        self.monitor.notify()
    }

    fn close_ring(&self) -> Result<()> {
        self.monitor.close()
    }

    /// `xc_monitor_enable` and binding its event channel. EBUSY means another monitor is (or
    /// was) attached.
    fn enable_ring(&self) -> Result<()> {
        self.monitor.enable()
    }

    fn domain_uuid(&self) -> Result<String> {
        let u = self.caps.uuid;
        let hex = |r: std::ops::Range<usize>| -> String {
            u[r].iter().map(|b| format!("{b:02x}")).collect()
        };
        Ok(format!(
            "{}-{}-{}-{}-{}",
            hex(0..4),
            hex(4..6),
            hex(6..8),
            hex(8..10),
            hex(10..16)
        ))
    }

    fn abandon_ring(&self) -> Result<bool> {
        self.monitor.abandon()
    }
}

impl XenDomain {
    /// Turn on `XEN_DOMCTL_MONITOR_OP_CONTROL_REGISTERS` (libxenctrl has no wrapper for it:
    /// the generic `xc_domctl`, which stamps the library's own domctl interface version). Xen
    /// only ever turns it off again when the monitor ring is disabled, which is teardown's last
    /// step, after every vCPU has resumed (turning it off under a paused vCPU can crash the
    /// guest, says `domctl.h`).
    fn hold_register_writes(&self) -> Result<()> {
        let mut dc = sys::xen_domctl {
            cmd: sys::XEN_DOMCTL_monitor_op,
            domain: self.domid as sys::domid_t,
            ..Default::default()
        };
        dc.u.monitor_op = sys::xen_domctl_monitor_op {
            op: sys::XEN_DOMCTL_MONITOR_OP_CONTROL_REGISTERS,
            ..Default::default()
        };
        // SAFETY: valid handle; `dc` is a complete xen_domctl that libxenctrl bounces to Xen.
        let rc = unsafe { (self.libs().xc_domctl)(self.xch(), &mut dc) };
        check(
            rc,
            "enabling control-register write control (XEN_DOMCTL_MONITOR_OP_CONTROL_REGISTERS)",
        )
    }
}
