//! Whole-guest memory capture from C: [`xvmi_domain_capture`] writes a running domain (Xen or
//! simulated) as the QEMU-ELF-style core of [`crate::capture`], which `xvmi_memory_open_snapshot`,
//! xenvmi's `Snapshot` and Volatility3 read.

use std::ffi::c_char;
use std::path::Path;

use super::domain::xvmi_domain;
#[cfg(doc)]
use super::domain::xvmi_domain_pause;
use super::error::*;
use super::handles::arg_handle;
use crate::capture::{capture_to_new_file, CaptureOptions, CaptureReport, Consistency};

/// [`xvmi_domain_capture`] flag: pause the domain around the capture (registers and memory of
/// one instant). Without it the guest runs on while it is read (see [`xvmi_capture_report`]).
pub const XVMI_CAPTURE_PAUSE: u32 = 1;
/// [`xvmi_domain_capture`] flag: replace `path` if it exists (otherwise an existing file is an
/// error and is left alone).
pub const XVMI_CAPTURE_REPLACE: u32 = 2;

/// [`xvmi_capture_report::consistency`]: the domain was paused around the capture.
pub const XVMI_CAPTURE_PAUSED: u32 = 0;
/// [`xvmi_capture_report::consistency`]: the guest ran while it was read, so structures that
/// span pages may disagree with each other and with the registers (taken at the start).
pub const XVMI_CAPTURE_LIVE: u32 = 1;

/// What a capture wrote ([`xvmi_domain_capture`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct xvmi_capture_report {
    /// [`XVMI_CAPTURE_PAUSED`] or [`XVMI_CAPTURE_LIVE`].
    pub consistency: u32,
    /// vCPUs whose registers the file holds.
    pub vcpus: u32,
    /// Bytes of guest memory written.
    pub bytes_written: u64,
    /// `PT_LOAD` segments written (one per contiguous readable range).
    pub segments: u64,
    /// Bytes of guest-physical space that could not be read: recorded as missing in the file,
    /// never written as zeros.
    pub missing_bytes: u64,
    /// Ranges that could not be read.
    pub missing_ranges: u64,
    /// Size of the file.
    pub file_bytes: u64,
    /// How long the domain was held paused, in nanoseconds (0 for a live capture).
    pub paused_ns: u64,
    /// How long the whole capture took, in nanoseconds.
    pub elapsed_ns: u64,
}

impl From<&CaptureReport> for xvmi_capture_report {
    fn from(r: &CaptureReport) -> Self {
        let ns = |d: std::time::Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        xvmi_capture_report {
            consistency: match r.consistency {
                Consistency::Paused => XVMI_CAPTURE_PAUSED,
                Consistency::Live => XVMI_CAPTURE_LIVE,
            },
            vcpus: r.vcpus,
            bytes_written: r.bytes_written,
            segments: r.segments as u64,
            missing_bytes: r.missing_bytes,
            missing_ranges: r.missing_ranges,
            file_bytes: r.file_bytes,
            paused_ns: r.paused_for.map_or(0, ns),
            elapsed_ns: ns(r.elapsed),
        }
    }
}

/// Write the whole memory of `domain`, with every vCPU's registers, to a new file `path` as a
/// QEMU-ELF-style core (`docs/capture.md`). The file is written as `PATH.partial` and renamed
/// when complete, so `path` never holds half a core; on failure nothing is left behind.
///
/// `flags`: [`XVMI_CAPTURE_PAUSE`] pauses the domain for the capture and resumes it after
/// (also when writing fails); this pause nests with [`xvmi_domain_pause`]'s and an event's,
/// and never undoes them. [`XVMI_CAPTURE_REPLACE`] replaces an existing `path`.
/// Called from an event callback, the vCPU that raised the event stays held by its event
/// throughout, so its registers in the file are those of the event.
///
/// On success `*report` (if `report` is not NULL) says what was written. Errors:
/// [`XVMI_ERR_INVALID_ARGUMENT`] for an unknown flag; [`XVMI_ERR_IO`] naming the file (it
/// exists without `XVMI_CAPTURE_REPLACE`, it is a directory, the disk is full);
/// [`XVMI_ERR_BACKEND`] if the domain cannot be paused or its registers read.
///
/// # Safety
/// `domain` is NULL or a live handle; `path` is a NUL-terminated string; `report` is NULL or
/// valid for a write.
#[no_mangle]
pub unsafe extern "C" fn xvmi_domain_capture(
    domain: *const xvmi_domain,
    path: *const c_char,
    flags: u32,
    report: *mut xvmi_capture_report,
) -> xvmi_result {
    boundary(|| {
        let d = arg_handle(domain, "domain")?;
        // SAFETY: `path` is NULL (refused by arg_str) or a NUL-terminated string, as this
        // function's `# Safety` requires.
        let path = unsafe { arg_str(path, "path") }?;
        let unknown = flags & !(XVMI_CAPTURE_PAUSE | XVMI_CAPTURE_REPLACE);
        if unknown != 0 {
            return Err(Fail::invalid(format!(
                "flags 0x{unknown:x} are not XVMI_CAPTURE_* values"
            )));
        }
        let backend = &d.shared.backend;
        let opts = CaptureOptions {
            pause: (flags & XVMI_CAPTURE_PAUSE != 0).then_some(backend as _),
            progress: None,
        };
        let r = capture_to_new_file(
            backend,
            Path::new(path),
            flags & XVMI_CAPTURE_REPLACE != 0,
            opts,
        );
        // Paused and resumed, or read while running: either way the guest may have run, so
        // memory handles on the domain drop their cached translations.
        d.shared.guest_ran();
        let r = r?;
        if !report.is_null() {
            // SAFETY: `report` is not NULL, and valid for a write by this function's contract.
            unsafe { report.write(xvmi_capture_report::from(&r)) };
        }
        Ok(())
    })
}
