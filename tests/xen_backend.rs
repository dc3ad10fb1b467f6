//! The Xen backend on a machine without Xen (this project's CI): opening a domain must fail
//! with the device and errno, never crash or hang; and the ABI the ring code assumes must match
//! the installed Xen headers (checked through the bindgen output).
#![cfg(feature = "xen")]

use xenvmi::backend::xen::{sys, XenDomain};
use xenvmi::vmevent::abi;
use xenvmi::Error;

#[test]
fn opening_a_domain_without_xen_names_the_device_and_errno() {
    let have_xen = std::path::Path::new("/dev/xen/privcmd").exists()
        || std::path::Path::new("/proc/xen/privcmd").exists();
    if have_xen {
        eprintln!("this host runs Xen: the no-Xen error path cannot be observed here");
        return;
    }
    for domain in ["1", "guest1"] {
        let err = XenDomain::open(domain).unwrap_err();
        let msg = err.to_string();
        let Error::Backend {
            operation, reason, ..
        } = &err
        else {
            panic!("unexpected error: {msg}")
        };
        assert_eq!(operation, "xc_interface_open", "{msg}");
        assert!(
            reason.contains("errno 2") && reason.contains("/dev/xen/privcmd"),
            "{msg}"
        );
        assert!(reason.contains("not running Xen"), "{msg}");
    }
}

#[test]
fn ring_abi_matches_the_installed_headers() {
    assert_eq!(sys::VM_EVENT_INTERFACE_VERSION, abi::INTERFACE_VERSION);
    assert_eq!(std::mem::size_of::<sys::hvm_hw_cpu>(), 1032);
    assert_eq!(sys::XEN_DOMCTL_MONITOR_EVENT_SINGLESTEP, 2);
}
