//! Opening a Xen domain: root first, then the library's `XenDomain::open`; in a build without
//! the Xen backend, the one-line error that says so.

/// The message for `--domain` in a build without the Xen backend.
#[cfg(not(feature = "xen"))]
pub fn unavailable(domain: &str) -> String {
    format!(
        "cannot open Xen domain `{domain}`: xenvmi was built without the Xen backend; rebuild \
         with `--features cli,xen` (needs libxen-dev and libclang-dev), or give a memory image"
    )
}

/// Open `domain` (name or id) after checking that this process is root.
#[cfg(feature = "xen")]
pub fn open(domain: &str) -> Result<xenvmi::backend::xen::XenDomain, String> {
    require_root(domain)?;
    // Checked here because libxencall prints its own line to stderr when the device is absent.
    if !["/dev/xen/privcmd", "/proc/xen/privcmd"]
        .iter()
        .any(|p| std::path::Path::new(p).exists())
    {
        return Err(format!(
            "domain {domain}: this host is not running Xen, or this is not dom0 (no \
             /dev/xen/privcmd or /proc/xen/privcmd)"
        ));
    }
    xenvmi::backend::xen::XenDomain::open(domain).map_err(|e| format!("domain {domain}: {e}"))
}

/// Xen's control interface (`/dev/xen/privcmd` in dom0) is root's: say so rather than let a
/// library call fail with a bare errno.
#[cfg(feature = "xen")]
fn require_root(domain: &str) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    // `/proc/self` belongs to the process's effective user.
    let uid = std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .map_err(|e| format!("domain {domain}: cannot tell who runs xenvmi (/proc/self: {e})"))?;
    if uid != 0 {
        return Err(format!(
            "domain {domain}: xenvmi must run as root to open a Xen domain (it uses dom0's \
             /dev/xen/privcmd); this is uid {uid}"
        ));
    }
    Ok(())
}
