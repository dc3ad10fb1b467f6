//! The Xen backend (feature `xen`): a live HVM domain through libxenctrl, libxenevtchn,
//! libxenforeignmemory and libxendevicemodel (loaded at run time, see [`lib`]).
//!
//! [`XenDomain::open`] checks, before anything else, that the hypervisor speaks vm_event
//! interface 7, then runs a capability preflight on the domain (HVM, HAP, altp2m mode,
//! monitor capabilities, single-step support) and reports every missing piece as an actionable
//! error. Without Xen, opening fails with the device and errno that failed.
//!
//! A [`XenDomain`] is composed of one owning type per library handle, each closed by its own
//! `Drop`:
//!
//! | type | file | owns | on drop |
//! |---|---|---|---|
//! | `XcInterface` | `control.rs` | libxenctrl's `xc_interface` (shared by the others through `Rc`) | closed, last |
//! | `MonitorRing` | `monitor.rs` | the vm_event ring pages and the bound event channel | ring disabled, event channel unbound and closed, pages unmapped |
//! | `ForeignMemory` | `foreign.rs` | libxenforeignmemory's handle and its cache of mapped frames | mappings unmapped, handle closed |
//! | `DeviceModel` | `devicemodel.rs` | libxendevicemodel's handle, opened on the first injection | closed |
//!
//! altp2m (`altp2m.rs`) has no handle of its own: its calls go through the control interface,
//! and the views belong to the domain (their owner, `event::View` or a session's journal,
//! destroys them).
//!
//! Besides the C ABI, this is the only module that uses `unsafe`; every block carries a
//! `// SAFETY:` comment.
#![allow(unsafe_code)]

mod altp2m;
mod control;
mod devicemodel;
mod foreign;
pub mod lib;
mod monitor;
pub mod sys;

use std::ffi::{c_void, CStr, CString};
use std::rc::Rc;

use crate::addr::DomId;
use crate::error::{Error, Result};
use crate::vmevent::abi::INTERFACE_VERSION;
pub use altp2m::MAX_VIEWS;
use control::XcInterface;
use devicemodel::DeviceModel;
use foreign::ForeignMemory;
use lib::XenLibs;
use monitor::MonitorRing;

const NAME: &str = "Xen domain";

/// What the domain and hypervisor can do, from the preflight.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// `xc_version`: (major, minor).
    pub xen_version: (u32, u32),
    /// The hypervisor's vm_event interface version.
    pub vm_event_version: u32,
    /// HVM guest.
    pub hvm: bool,
    /// Hardware-assisted paging (EPT): needed for vm_event.
    pub hap: bool,
    /// `HVM_PARAM_ALTP2M` (0 disabled, 1 mixed, 2 external, 3 limited).
    pub altp2m_mode: u64,
    /// `xc_monitor_get_capabilities` bitmap (1 << `XEN_DOMCTL_MONITOR_EVENT_*`).
    pub monitor: u32,
    /// Number of vCPUs.
    pub vcpus: u32,
    /// The domain's UUID (`xc_domain_getinfolist`'s handle; `xl list -v` shows it).
    pub uuid: [u8; 16],
}

impl Capabilities {
    /// Whether single-step events are supported (the CPU has the monitor trap flag).
    pub fn singlestep(&self) -> bool {
        self.monitor & (1 << sys::XEN_DOMCTL_MONITOR_EVENT_SINGLESTEP) != 0
    }
}

/// A live Xen HVM domain.
pub struct XenDomain {
    // Fields drop in declaration order, which is the teardown order: the ring is disabled (and
    // its pages unmapped) before foreign mappings go, and the control interface, which the
    // ring needs to disable itself, is closed last.
    monitor: MonitorRing,
    fmem: ForeignMemory,
    dm: DeviceModel,
    xc: Rc<XcInterface>,
    domid: u32,
    caps: Capabilities,
}

impl std::fmt::Debug for XenDomain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XenDomain")
            .field("domid", &self.domid)
            .field("caps", &self.caps)
            .finish()
    }
}

fn errno_reason(what: &str, hint: &str) -> String {
    let e = std::io::Error::last_os_error();
    let code = e.raw_os_error().unwrap_or(0);
    let text = e.to_string();
    let e = text.split(" (os error").next().unwrap_or(&text);
    if hint.is_empty() {
        format!("{e} (errno {code}) {what}")
    } else {
        format!("{e} (errno {code}) {what}; {hint}")
    }
}

fn fail(operation: impl Into<String>, reason: String) -> Error {
    Error::Backend {
        backend: "Xen",
        operation: operation.into(),
        reason,
    }
}

/// `Ok` for a non-negative libxenctrl return code, else the errno as a backend error.
fn check(rc: i32, op: impl Into<String>) -> Result<()> {
    if rc < 0 {
        Err(fail(op, errno_reason("", "")))
    } else {
        Ok(())
    }
}

impl XenDomain {
    /// Open a domain by id (`"3"`) or name (`"guest1"`), after checking the hypervisor's
    /// vm_event interface version and running the capability preflight.
    ///
    /// # Errors
    /// [`Error::Backend`] naming the library, device and errno that failed, or the missing
    /// capability and how to enable it.
    pub fn open(domain: &str) -> Result<XenDomain> {
        let libs = Rc::new(XenLibs::load()?);
        let xc = Rc::new(XcInterface::open(Rc::clone(&libs))?);
        let fmem = ForeignMemory::open(Rc::clone(&libs))?;
        let mut caps = Capabilities {
            xen_version: (0, 0),
            vm_event_version: 0,
            hvm: false,
            hap: false,
            altp2m_mode: 0,
            monitor: 0,
            vcpus: 0,
            uuid: [0; 16],
        };
        // Versions first: a mismatched ring format would strand vCPUs.
        // SAFETY: valid handle; XENVER_version takes a NULL argument and returns (major<<16)|minor.
        let ver = unsafe {
            (libs.xc_version)(
                xc.as_ptr(),
                sys::XENVER_version as i32,
                std::ptr::null_mut(),
            )
        };
        // SAFETY: valid handle.
        let vmev = unsafe { (libs.xc_vm_event_get_version)(xc.as_ptr()) };
        caps.xen_version = ((ver as u32) >> 16, ver as u32 & 0xffff);
        caps.vm_event_version = vmev.max(0) as u32;
        if vmev != INTERFACE_VERSION as i32 {
            return Err(fail(
                "checking versions",
                format!(
                    "Xen {}.{} speaks vm_event interface {vmev}, xenvmi speaks {INTERFACE_VERSION} (Xen 4.15-4.22); \
                     using libxenctrl {}",
                    caps.xen_version.0, caps.xen_version.1, libs.xenctrl_soname
                ),
            ));
        }
        let domid = resolve_domain(&libs, domain)?;
        preflight(&xc, domid, &mut caps)?;
        Ok(XenDomain {
            monitor: MonitorRing::new(Rc::clone(&xc), domid),
            fmem,
            dm: DeviceModel::new(libs),
            xc,
            domid,
            caps,
        })
    }

    /// The domain id.
    pub fn domid(&self) -> DomId {
        DomId(self.domid as u16)
    }

    /// What the preflight found.
    pub fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    /// The loaded libraries.
    fn libs(&self) -> &XenLibs {
        self.xc.libs()
    }

    /// libxenctrl's handle, open for as long as `self` (see [`XcInterface`]).
    fn xch(&self) -> *mut c_void {
        self.xc.as_ptr()
    }
}

/// The id of `domain`: the id itself, or a name looked up in xenstore.
fn resolve_domain(libs: &XenLibs, domain: &str) -> Result<u32> {
    if let Ok(id) = domain.parse::<u32>() {
        return Ok(id);
    }
    let (Some(open), Some(close), Some(read), Some(dir)) =
        (libs.xs_open, libs.xs_close, libs.xs_read, libs.xs_directory)
    else {
        return Err(fail(
            format!("looking up domain `{domain}`"),
            "libxenstore.so.4 is not available: give the domain id instead".into(),
        ));
    };
    // SAFETY: flags 0 opens the default xenstore connection; closed below.
    let h = unsafe { open(0) };
    if h.is_null() {
        return Err(fail(
            format!("looking up domain `{domain}`"),
            errno_reason("connecting to xenstored", "is xenstored running?"),
        ));
    }
    let mut found = None;
    let mut n: u32 = 0;
    let root = CString::new("/local/domain").unwrap_or_default();
    // SAFETY: valid handle, NUL-terminated path, out-parameter for the count; the returned
    // array (one allocation) is freed with libc::free below.
    let ids = unsafe { dir(h, 0, root.as_ptr(), &mut n) };
    if !ids.is_null() {
        for i in 0..n.min(65536) as usize {
            // SAFETY: `ids` has `n` valid C-string pointers (xs_directory contract).
            let id = unsafe { CStr::from_ptr(*ids.add(i)) }
                .to_string_lossy()
                .into_owned();
            let Ok(path) = CString::new(format!("/local/domain/{id}/name")) else {
                continue;
            };
            let mut len: u32 = 0;
            // SAFETY: valid handle and path; the result is malloc'ed and freed below.
            let v = unsafe { read(h, 0, path.as_ptr(), &mut len) };
            if v.is_null() {
                continue;
            }
            // SAFETY: xs_read returns `len` bytes (plus a NUL) at `v`.
            let name = unsafe { std::slice::from_raw_parts(v as *const u8, len as usize) }.to_vec();
            // SAFETY: allocated by libxenstore with malloc.
            unsafe { libc::free(v) };
            if name == domain.as_bytes() {
                found = id.parse().ok();
                break;
            }
        }
        // SAFETY: one malloc'ed block holds the array and the strings.
        unsafe { libc::free(ids as *mut c_void) };
    }
    // SAFETY: valid handle, not used afterwards.
    unsafe { close(h) };
    found.ok_or_else(|| {
        fail(
            format!("looking up domain `{domain}`"),
            "no domain of that name in xenstore (`xl list`)".into(),
        )
    })
}

/// Check that domain `domid` exists and can be introspected, and record what it can do in
/// `caps`.
fn preflight(xc: &XcInterface, domid: u32, caps: &mut Capabilities) -> Result<()> {
    let mut info = sys::xc_domaininfo_t::default();
    // SAFETY: valid handle; one record written to `info`.
    let n = unsafe { (xc.libs().xc_domain_getinfolist)(xc.as_ptr(), domid, 1, &mut info) };
    if n != 1 || info.domain as u32 != domid {
        return Err(fail(
            format!("opening domain {}", domid),
            "no such domain (`xl list` shows the ids)".into(),
        ));
    }
    caps.hvm = info.flags & sys::XEN_DOMINF_hvm_guest != 0;
    caps.hap = info.flags & sys::XEN_DOMINF_hap != 0;
    caps.vcpus = info.max_vcpu_id + 1;
    caps.uuid = info.handle;
    if !caps.hvm {
        return Err(fail(
            format!("opening domain {}", domid),
            "it is a PV guest; vm_event introspection needs an HVM or PVH guest".into(),
        ));
    }
    if !caps.hap {
        return Err(fail(
            format!("opening domain {}", domid),
            "hardware-assisted paging (EPT) is off for it; vm_event needs HAP: set hap=1 in its xl config on an Intel VT-x host".into(),
        ));
    }
    let mut mode = 0u64;
    // SAFETY: valid handle, out-parameter.
    if unsafe { (xc.libs().xc_hvm_param_get)(xc.as_ptr(), domid, sys::HVM_PARAM_ALTP2M, &mut mode) }
        == 0
    {
        caps.altp2m_mode = mode;
    }
    let mut monitor = 0u32;
    // SAFETY: valid handle, out-parameter.
    if unsafe { (xc.libs().xc_monitor_get_capabilities)(xc.as_ptr(), domid, &mut monitor) } != 0 {
        return Err(fail("xc_monitor_get_capabilities", errno_reason("", "")));
    }
    caps.monitor = monitor;
    Ok(())
}
