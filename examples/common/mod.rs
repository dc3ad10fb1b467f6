//! Shared by the examples: find the image to open (the bundled snapshot by default; `.zst`
//! images unpacked once into `target/xenvmi-fixtures/`).
#![allow(dead_code)]

#[path = "../../tests/support/fixture.rs"]
pub mod fixture;

#[allow(unused_imports)] // not every example opens an image
pub use fixture::image_path;

/// The message for `--domain` in a build without the Xen backend.
pub fn no_xen(domain: &str) -> String {
    format!(
        "cannot open Xen domain `{domain}`: this example was built without the Xen backend; rebuild with \
         `--features xen` (needs libxen-dev and libclang-dev), or use --simulate IMAGE to run the same code \
         on the simulated domain"
    )
}

/// Open a Xen domain, find its Linux kernel while it is paused, and enable its vm_event ring.
#[cfg(feature = "xen")]
pub fn attach_xen(
    domain: &str,
) -> Result<(xenvmi::backend::xen::XenDomain, xenvmi::os::linux::Linux), String> {
    use xenvmi::backend::xen::XenDomain;
    use xenvmi::os::linux::{Linux, ProfileSource};
    let dom = XenDomain::open(domain).map_err(|e| e.to_string())?;
    // Found while the domain holds still.
    let (linux, _) =
        Linux::discover_paused(&dom, ProfileSource::InGuest).map_err(|e| e.to_string())?;
    Ok((dom, linux))
}

/// The monitors and view the real-Xen suite's examples set on the tiny test guest: sync
/// writes to `registers`, `wrmsr 0x174`, `int3`, and `data_gfn` write-protected in a new
/// altp2m view that every vCPU is switched to. Returns the view.
pub fn trap_tiny_guest<B: xenvmi::event::session::SessionBackend>(
    s: &mut xenvmi::event::session::Session<'_, B>,
    registers: &[xenvmi::backend::ControlRegister],
    data_gfn: u64,
) -> Result<xenvmi::ViewId, String> {
    use xenvmi::backend::{MemAccess, Monitor};
    for &register in registers {
        s.monitor(Monitor::ControlRegister {
            register,
            sync: true,
            on_change_only: true,
            ignore_mask: 0,
        })
        .map_err(|e| e.to_string())?;
    }
    s.monitor(Monitor::Msr {
        index: 0x174,
        on_change_only: false,
    })
    .map_err(|e| e.to_string())?;
    s.monitor(Monitor::SoftwareBreakpoint)
        .map_err(|e| e.to_string())?;
    let view = s.create_view(MemAccess::all()).map_err(|e| e.to_string())?;
    s.set_mem_access(view, xenvmi::Gfn(data_gfn), MemAccess::R | MemAccess::X)
        .map_err(|e| e.to_string())?;
    s.switch_view(view).map_err(|e| e.to_string())?;
    Ok(view)
}
