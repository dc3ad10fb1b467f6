//! Xen's tool libraries, loaded at run time by SONAME.
//!
//! Loading at run time (instead of linking) means a binary built with the `xen` feature still
//! starts, and reads snapshots, on a host without Xen; and it keeps the LGPL libraries
//! dynamically linked for closed-source users. libxenctrl's SONAME carries the Xen release
//! (`libxenctrl.so.4.17`); the releases whose vm_event interface is version 7 are tried in
//! order, and the hypervisor's own versions are checked after opening.

use std::ffi::{c_char, c_int, c_uint, c_void};

use libloading::Library;

use crate::error::{Error, Result};

/// Releases with vm_event interface 7 whose libxenctrl may be used (4.17 first: the build's).
const XENCTRL_SONAMES: &[&str] = &[
    "libxenctrl.so.4.17",
    "libxenctrl.so.4.18",
    "libxenctrl.so.4.19",
    "libxenctrl.so.4.20",
    "libxenctrl.so.4.21",
    "libxenctrl.so.4.22",
];

type P = *mut c_void;

/// Function pointers into the loaded libraries. Valid as long as the `Library`s live, which is
/// as long as this struct.
#[allow(missing_docs)]
pub struct XenLibs {
    pub xenctrl_soname: &'static str,
    pub xc_interface_open: unsafe extern "C" fn(P, P, c_uint) -> P,
    pub xc_interface_close: unsafe extern "C" fn(P) -> c_int,
    pub xc_version: unsafe extern "C" fn(P, c_int, P) -> c_int,
    pub xc_vm_event_get_version: unsafe extern "C" fn(P) -> c_int,
    pub xc_domain_getinfolist:
        unsafe extern "C" fn(P, u32, c_uint, *mut super::sys::xc_domaininfo_t) -> c_int,
    pub xc_domain_pause: unsafe extern "C" fn(P, u32) -> c_int,
    pub xc_domain_unpause: unsafe extern "C" fn(P, u32) -> c_int,
    pub xc_domain_maximum_gpfn: unsafe extern "C" fn(P, u32, *mut super::sys::xen_pfn_t) -> c_int,
    pub xc_domain_hvm_getcontext: unsafe extern "C" fn(P, u32, *mut u8, u32) -> c_int,
    pub xc_domain_hvm_setcontext: unsafe extern "C" fn(P, u32, *mut u8, u32) -> c_int,
    pub xc_domain_hvm_getcontext_partial: unsafe extern "C" fn(P, u32, u16, u16, P, u32) -> c_int,
    pub xc_domain_debug_control: unsafe extern "C" fn(P, u32, u32, u32) -> c_int,
    pub xc_domain_setmaxmem: unsafe extern "C" fn(P, u32, u64) -> c_int,
    pub xc_domain_populate_physmap_exact: unsafe extern "C" fn(
        P,
        u32,
        libc::c_ulong,
        c_uint,
        c_uint,
        *mut super::sys::xen_pfn_t,
    ) -> c_int,
    pub xc_domain_decrease_reservation_exact:
        unsafe extern "C" fn(P, u32, libc::c_ulong, c_uint, *mut super::sys::xen_pfn_t) -> c_int,
    pub xc_hvm_param_get: unsafe extern "C" fn(P, u32, u32, *mut u64) -> c_int,
    pub xc_monitor_enable: unsafe extern "C" fn(P, u32, *mut u32) -> P,
    pub xc_monitor_disable: unsafe extern "C" fn(P, u32) -> c_int,
    /// The generic domctl (exported by libxenctrl; stamps its own interface version).
    pub xc_domctl: unsafe extern "C" fn(P, *mut super::sys::xen_domctl) -> c_int,
    pub xc_monitor_get_capabilities: unsafe extern "C" fn(P, u32, *mut u32) -> c_int,
    pub xc_monitor_write_ctrlreg: unsafe extern "C" fn(P, u32, u16, bool, bool, u64, bool) -> c_int,
    pub xc_monitor_mov_to_msr: unsafe extern "C" fn(P, u32, u32, bool, bool) -> c_int,
    pub xc_monitor_singlestep: unsafe extern "C" fn(P, u32, bool) -> c_int,
    pub xc_monitor_software_breakpoint: unsafe extern "C" fn(P, u32, bool) -> c_int,
    pub xc_monitor_descriptor_access: unsafe extern "C" fn(P, u32, bool) -> c_int,
    pub xc_monitor_guest_request: unsafe extern "C" fn(P, u32, bool, bool, bool) -> c_int,
    pub xc_monitor_inguest_pagefault: unsafe extern "C" fn(P, u32, bool) -> c_int,
    pub xc_monitor_debug_exceptions: unsafe extern "C" fn(P, u32, bool, bool) -> c_int,
    pub xc_monitor_cpuid: unsafe extern "C" fn(P, u32, bool) -> c_int,
    pub xc_monitor_emul_unimplemented: unsafe extern "C" fn(P, u32, bool) -> c_int,
    pub xc_set_mem_access: unsafe extern "C" fn(P, u32, c_uint, u64, u32) -> c_int,
    pub xc_get_mem_access: unsafe extern "C" fn(P, u32, u64, *mut c_uint) -> c_int,
    pub xc_altp2m_set_domain_state: unsafe extern "C" fn(P, u32, bool) -> c_int,
    pub xc_altp2m_create_view: unsafe extern "C" fn(P, u32, c_uint, *mut u16) -> c_int,
    pub xc_altp2m_destroy_view: unsafe extern "C" fn(P, u32, u16) -> c_int,
    pub xc_altp2m_switch_to_view: unsafe extern "C" fn(P, u32, u16) -> c_int,
    pub xc_altp2m_set_mem_access:
        unsafe extern "C" fn(P, u32, u16, super::sys::xen_pfn_t, c_uint) -> c_int,
    pub xc_altp2m_get_mem_access:
        unsafe extern "C" fn(P, u32, u16, super::sys::xen_pfn_t, *mut c_uint) -> c_int,
    pub xc_altp2m_set_mem_access_multi:
        unsafe extern "C" fn(P, u32, u16, *mut u8, *mut u64, u32) -> c_int,
    pub xc_altp2m_set_suppress_ve:
        unsafe extern "C" fn(P, u32, u16, super::sys::xen_pfn_t, bool) -> c_int,
    pub xc_altp2m_set_visibility: unsafe extern "C" fn(P, u32, u16, bool) -> c_int,
    pub xc_altp2m_change_gfn:
        unsafe extern "C" fn(P, u32, u16, super::sys::xen_pfn_t, super::sys::xen_pfn_t) -> c_int,
    pub xenevtchn_open: unsafe extern "C" fn(P, c_uint) -> P,
    pub xenevtchn_close: unsafe extern "C" fn(P) -> c_int,
    pub xenevtchn_fd: unsafe extern "C" fn(P) -> c_int,
    pub xenevtchn_bind_interdomain: unsafe extern "C" fn(P, u32, u32) -> c_int,
    pub xenevtchn_unbind: unsafe extern "C" fn(P, u32) -> c_int,
    pub xenevtchn_pending: unsafe extern "C" fn(P) -> c_int,
    pub xenevtchn_unmask: unsafe extern "C" fn(P, u32) -> c_int,
    pub xenevtchn_notify: unsafe extern "C" fn(P, u32) -> c_int,
    pub xenforeignmemory_open: unsafe extern "C" fn(P, c_uint) -> P,
    pub xenforeignmemory_close: unsafe extern "C" fn(P) -> c_int,
    pub xenforeignmemory_map:
        unsafe extern "C" fn(P, u32, c_int, usize, *const super::sys::xen_pfn_t, *mut c_int) -> P,
    pub xenforeignmemory_unmap: unsafe extern "C" fn(P, P, usize) -> c_int,
    pub xendevicemodel_open: unsafe extern "C" fn(P, c_uint) -> P,
    pub xendevicemodel_close: unsafe extern "C" fn(P) -> c_int,
    /// (handle, domid, vcpu, vector, type, error_code, insn_len, extra = cr2 for #PF)
    pub xendevicemodel_inject_event:
        unsafe extern "C" fn(P, u16, c_int, u8, u8, u32, u8, u64) -> c_int,
    pub xs_open: Option<unsafe extern "C" fn(libc::c_ulong) -> P>,
    pub xs_close: Option<unsafe extern "C" fn(P)>,
    pub xs_read: Option<unsafe extern "C" fn(P, u32, *const c_char, *mut c_uint) -> P>,
    pub xs_directory:
        Option<unsafe extern "C" fn(P, u32, *const c_char, *mut c_uint) -> *mut *mut c_char>,
    _libs: Vec<Library>,
}

impl std::fmt::Debug for XenLibs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XenLibs")
            .field("xenctrl", &self.xenctrl_soname)
            .finish()
    }
}

fn open_first(names: &[&'static str], package: &str) -> Result<(Library, &'static str)> {
    let mut last = String::new();
    for n in names {
        // SAFETY: loading Xen's tool libraries runs their ELF constructors, which only
        // initialise library-internal state (they open no devices until a *_open call).
        match unsafe { Library::new(n) } {
            Ok(l) => return Ok((l, n)),
            Err(e) => last = e.to_string(),
        }
    }
    Err(Error::Backend {
        backend: "Xen",
        operation: format!("loading {}", names.join(" or ")),
        reason: format!(
            "{last}; install the Xen tools libraries (Debian: {package}) or run on a Xen dom0"
        ),
    })
}

macro_rules! load {
    ($lib:expr, $name:literal) => {{
        // SAFETY: the symbol is looked up by its C name and cast to the prototype of the 4.17
        // headers (xen-interface.md §2); the pointer stays valid while the Library is kept in
        // `_libs`.
        let s: libloading::Symbol<'_, _> = unsafe { $lib.get(concat!($name, "\0").as_bytes()) }
            .map_err(|e| Error::Backend {
                backend: "Xen",
                operation: format!("looking up {}", $name),
                reason: format!("{e}; the installed Xen libraries are older than 4.17"),
            })?;
        *s
    }};
}

macro_rules! load_opt {
    ($lib:expr, $name:literal) => {{
        // SAFETY: as in `load!`.
        unsafe { $lib.get(concat!($name, "\0").as_bytes()) }
            .ok()
            .map(|s: libloading::Symbol<'_, _>| *s)
    }};
}

impl XenLibs {
    /// Load libxenctrl, libxenevtchn, libxenforeignmemory, libxendevicemodel (required) and
    /// libxenstore
    /// (optional: only domain names need it).
    ///
    /// # Errors
    /// [`Error::Unsupported`] naming the library or symbol that could not be loaded.
    pub fn load() -> Result<XenLibs> {
        let (ctrl, soname) = open_first(XENCTRL_SONAMES, "libxenmisc4.17")?;
        let (evtchn, _) = open_first(&["libxenevtchn.so.1"], "libxenevtchn1")?;
        let (fmem, _) = open_first(&["libxenforeignmemory.so.1"], "libxenforeignmemory1")?;
        let (dmod, _) = open_first(&["libxendevicemodel.so.1"], "libxendevicemodel1")?;
        let store = open_first(&["libxenstore.so.4"], "libxenstore4")
            .ok()
            .map(|(l, _)| l);
        let libs = XenLibs {
            xenctrl_soname: soname,
            xc_interface_open: load!(ctrl, "xc_interface_open"),
            xc_interface_close: load!(ctrl, "xc_interface_close"),
            xc_version: load!(ctrl, "xc_version"),
            xc_vm_event_get_version: load!(ctrl, "xc_vm_event_get_version"),
            xc_domain_getinfolist: load!(ctrl, "xc_domain_getinfolist"),
            xc_domain_pause: load!(ctrl, "xc_domain_pause"),
            xc_domain_unpause: load!(ctrl, "xc_domain_unpause"),
            xc_domain_maximum_gpfn: load!(ctrl, "xc_domain_maximum_gpfn"),
            xc_domain_hvm_getcontext: load!(ctrl, "xc_domain_hvm_getcontext"),
            xc_domain_hvm_setcontext: load!(ctrl, "xc_domain_hvm_setcontext"),
            xc_domain_hvm_getcontext_partial: load!(ctrl, "xc_domain_hvm_getcontext_partial"),
            xc_domain_debug_control: load!(ctrl, "xc_domain_debug_control"),
            xc_domain_setmaxmem: load!(ctrl, "xc_domain_setmaxmem"),
            xc_domain_populate_physmap_exact: load!(ctrl, "xc_domain_populate_physmap_exact"),
            xc_domain_decrease_reservation_exact: load!(
                ctrl,
                "xc_domain_decrease_reservation_exact"
            ),
            xc_hvm_param_get: load!(ctrl, "xc_hvm_param_get"),
            xc_monitor_enable: load!(ctrl, "xc_monitor_enable"),
            xc_monitor_disable: load!(ctrl, "xc_monitor_disable"),
            xc_domctl: load!(ctrl, "xc_domctl"),
            xc_monitor_get_capabilities: load!(ctrl, "xc_monitor_get_capabilities"),
            xc_monitor_write_ctrlreg: load!(ctrl, "xc_monitor_write_ctrlreg"),
            xc_monitor_mov_to_msr: load!(ctrl, "xc_monitor_mov_to_msr"),
            xc_monitor_singlestep: load!(ctrl, "xc_monitor_singlestep"),
            xc_monitor_software_breakpoint: load!(ctrl, "xc_monitor_software_breakpoint"),
            xc_monitor_descriptor_access: load!(ctrl, "xc_monitor_descriptor_access"),
            xc_monitor_guest_request: load!(ctrl, "xc_monitor_guest_request"),
            xc_monitor_inguest_pagefault: load!(ctrl, "xc_monitor_inguest_pagefault"),
            xc_monitor_debug_exceptions: load!(ctrl, "xc_monitor_debug_exceptions"),
            xc_monitor_cpuid: load!(ctrl, "xc_monitor_cpuid"),
            xc_monitor_emul_unimplemented: load!(ctrl, "xc_monitor_emul_unimplemented"),
            xc_set_mem_access: load!(ctrl, "xc_set_mem_access"),
            xc_get_mem_access: load!(ctrl, "xc_get_mem_access"),
            xc_altp2m_set_domain_state: load!(ctrl, "xc_altp2m_set_domain_state"),
            xc_altp2m_create_view: load!(ctrl, "xc_altp2m_create_view"),
            xc_altp2m_destroy_view: load!(ctrl, "xc_altp2m_destroy_view"),
            xc_altp2m_switch_to_view: load!(ctrl, "xc_altp2m_switch_to_view"),
            xc_altp2m_set_mem_access: load!(ctrl, "xc_altp2m_set_mem_access"),
            xc_altp2m_get_mem_access: load!(ctrl, "xc_altp2m_get_mem_access"),
            xc_altp2m_set_mem_access_multi: load!(ctrl, "xc_altp2m_set_mem_access_multi"),
            xc_altp2m_change_gfn: load!(ctrl, "xc_altp2m_change_gfn"),
            xc_altp2m_set_suppress_ve: load!(ctrl, "xc_altp2m_set_suppress_ve"),
            xc_altp2m_set_visibility: load!(ctrl, "xc_altp2m_set_visibility"),
            xenevtchn_open: load!(evtchn, "xenevtchn_open"),
            xenevtchn_close: load!(evtchn, "xenevtchn_close"),
            xenevtchn_fd: load!(evtchn, "xenevtchn_fd"),
            xenevtchn_bind_interdomain: load!(evtchn, "xenevtchn_bind_interdomain"),
            xenevtchn_unbind: load!(evtchn, "xenevtchn_unbind"),
            xenevtchn_pending: load!(evtchn, "xenevtchn_pending"),
            xenevtchn_unmask: load!(evtchn, "xenevtchn_unmask"),
            xenevtchn_notify: load!(evtchn, "xenevtchn_notify"),
            xenforeignmemory_open: load!(fmem, "xenforeignmemory_open"),
            xenforeignmemory_close: load!(fmem, "xenforeignmemory_close"),
            xenforeignmemory_map: load!(fmem, "xenforeignmemory_map"),
            xenforeignmemory_unmap: load!(fmem, "xenforeignmemory_unmap"),
            xendevicemodel_open: load!(dmod, "xendevicemodel_open"),
            xendevicemodel_close: load!(dmod, "xendevicemodel_close"),
            xendevicemodel_inject_event: load!(dmod, "xendevicemodel_inject_event"),
            xs_open: store.as_ref().and_then(|s| load_opt!(s, "xs_open")),
            xs_close: store.as_ref().and_then(|s| load_opt!(s, "xs_close")),
            xs_read: store.as_ref().and_then(|s| load_opt!(s, "xs_read")),
            xs_directory: store.as_ref().and_then(|s| load_opt!(s, "xs_directory")),
            _libs: [Some(ctrl), Some(evtchn), Some(fmem), Some(dmod), store]
                .into_iter()
                .flatten()
                .collect(),
        };
        Ok(libs)
    }
}
