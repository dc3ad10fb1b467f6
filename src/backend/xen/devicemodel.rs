//! The device model interface: libxendevicemodel's handle ([`DeviceModel`]), through which
//! events are injected into vCPUs.

use std::cell::Cell;
use std::ffi::c_void;
use std::ptr::NonNull;
use std::rc::Rc;

use super::lib::XenLibs;
use super::{check, errno_reason, fail, XenDomain};
use crate::addr::VcpuId;
use crate::backend::{EventInjection, Injection};
use crate::error::{Error, Result};

/// libxendevicemodel's handle (`xendevicemodel_open`), opened on first use (the first
/// injection) and closed on drop.
pub(super) struct DeviceModel {
    handle: Cell<Option<NonNull<c_void>>>,
    libs: Rc<XenLibs>,
}

impl DeviceModel {
    /// Nothing opened yet.
    pub(super) fn new(libs: Rc<XenLibs>) -> DeviceModel {
        DeviceModel {
            handle: Cell::new(None),
            libs,
        }
    }

    /// The handle, opened now if it is not yet.
    fn handle(&self) -> Result<NonNull<c_void>> {
        if let Some(h) = self.handle.get() {
            return Ok(h);
        }
        // SAFETY: NULL logger selects the library's default; flags 0. Closed in Drop.
        let h = unsafe { (self.libs.xendevicemodel_open)(std::ptr::null_mut(), 0) };
        let Some(h) = NonNull::new(h) else {
            return Err(fail(
                "xendevicemodel_open",
                errno_reason("opening /dev/xen/privcmd", ""),
            ));
        };
        self.handle.set(Some(h));
        Ok(h)
    }
}

impl Drop for DeviceModel {
    fn drop(&mut self) {
        if let Some(h) = self.handle.get() {
            // SAFETY: the handle came from xendevicemodel_open and is closed once, here.
            unsafe { (self.libs.xendevicemodel_close)(h.as_ptr()) };
        }
    }
}

impl EventInjection for XenDomain {
    fn inject(&self, vcpu: VcpuId, event: &Injection) -> Result<()> {
        let what = || format!("injecting vector {} into vCPU {vcpu}", event.vector);
        if vcpu.0 >= self.caps.vcpus {
            return Err(Error::NoSuchVcpu {
                vcpu,
                count: self.caps.vcpus,
            });
        }
        let dmod = self.dm.handle()?;
        // SAFETY: valid handle (opened above, open until DeviceModel drops); plain values. ~0
        // is "no error code" (XEN_DMOP_no_error_code is ~0: Xen pushes none).
        let rc = unsafe {
            (self.dm.libs.xendevicemodel_inject_event)(
                dmod.as_ptr(),
                self.domid as u16,
                vcpu.0 as i32,
                event.vector,
                event.kind.vmx_type(),
                event.error_code.unwrap_or(!0),
                event.insn_len,
                event.cr2,
            )
        };
        check(rc, what())
    }
}
