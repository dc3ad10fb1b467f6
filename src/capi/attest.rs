//! Desired state from C (`xenvmi::attest`, `docs/attest.md`): a manifest loaded from a file
//! ([`xvmi_manifest_load`], strict: errors name the file and the field) or learned from a
//! guest ([`xvmi_manifest_learn`]), written out as JSON ([`xvmi_manifest_json`]), and a
//! guest attested against it ([`xvmi_manifest_attest`]): each deviation, unverified entry and
//! warning goes to a callback as JSON (the objects of `xenvmi attest enforce --json`).

use std::ffi::{c_char, c_void, CString};
use std::path::Path;

use super::error::*;
use super::handles::{arg_handle, register, unregister, Handle};
use super::memory::xvmi_memory;
use super::os::xvmi_os;
use crate::attest::{attest, observe, Learner, Manifest};
use crate::os::linux::Linux;
use crate::report;

/// A guest's desired state (`xenvmi::attest::Manifest`): its kernel build, executables and
/// modules. Immutable once made, so calls may use it from several threads at once; released
/// with [`xvmi_manifest_free`].
pub struct xvmi_manifest {
    manifest: Manifest,
}

impl Handle for xvmi_manifest {
    const KIND: &'static str = "xvmi_manifest";
}

fn new_manifest(manifest: Manifest, out: *mut *mut xvmi_manifest) {
    // SAFETY: `out` was checked by arg_out and is writable by the caller's contract.
    unsafe { put(out, register(Box::new(xvmi_manifest { manifest }))) };
}

/// Load the manifest at `path` (`docs/attest.md`): a regular file (a symbolic link, FIFO or
/// device is refused), at most 16 MiB, of format `xenvmi-attest-manifest` version 1, parsed
/// strictly.
///
/// # Errors
/// [`XVMI_ERR_IO`] naming the file; [`XVMI_ERR_MALFORMED`] naming the file and the field (not
/// JSON, another format or version, a missing, unknown or mistyped field, a bad hash, a
/// duplicate entry, too many entries).
///
/// # Safety
/// `path` is NULL or a NUL-terminated string; `out` is NULL or valid for a write. On success
/// `*out` is a new handle to release with [`xvmi_manifest_free`].
#[no_mangle]
pub unsafe extern "C" fn xvmi_manifest_load(
    path: *const c_char,
    out: *mut *mut xvmi_manifest,
) -> xvmi_result {
    boundary(|| {
        // SAFETY: `path` is NULL (refused by arg_str) or a NUL-terminated string, as this
        // function's `# Safety` requires.
        let path = unsafe { arg_str(path, "path") }?;
        let out = arg_out(out, "out")?;
        new_manifest(Manifest::load(Path::new(path))?, out);
        Ok(())
    })
}

/// Parse a manifest from `len` bytes at `data`, as [`xvmi_manifest_load`] does a file's;
/// `name` (NULL: `"manifest"`) names it in errors.
///
/// # Safety
/// `data` is valid for `len` bytes of reads (NULL when `len` is 0); `name` is NULL or a
/// NUL-terminated string; `out` is NULL or valid for a write. On success `*out` is a new
/// handle to release with [`xvmi_manifest_free`].
#[no_mangle]
pub unsafe extern "C" fn xvmi_manifest_parse(
    data: *const u8,
    len: usize,
    name: *const c_char,
    out: *mut *mut xvmi_manifest,
) -> xvmi_result {
    boundary(|| {
        // SAFETY: `data` is NULL (refused unless `len` is 0) or valid for `len` bytes, as
        // this function's `# Safety` requires.
        let data = unsafe { arg_bytes(data, len, "data") }?;
        // SAFETY: `name` is NULL or a NUL-terminated string, as this function's `# Safety`
        // requires.
        let name = unsafe { arg_opt_str(name, "name") }?.unwrap_or("manifest");
        let out = arg_out(out, "out")?;
        new_manifest(Manifest::parse(data, name)?, out);
        Ok(())
    })
}

fn linux_of(o: &xvmi_os) -> Result<&Linux, Fail> {
    o.os.linux().ok_or_else(|| {
        Fail::new(
            XVMI_ERR_UNSUPPORTED,
            "attestation is for Linux guests; `os` is a Windows kernel",
        )
    })
}

/// Learn a manifest from what the guest runs now (`Learner::from_observation`, as `xenvmi
/// attest learn` does): the kernel build, each user process's executable and first code
/// page, each module. `mem` is the guest's memory (a snapshot, or a paused domain for a
/// consistent view), `os` its Linux kernel.
///
/// # Safety
/// `mem` and `os` are NULL or live handles; `out` is NULL or valid for a write. On success
/// `*out` is a new handle to release with [`xvmi_manifest_free`].
#[no_mangle]
pub unsafe extern "C" fn xvmi_manifest_learn(
    mem: *const xvmi_memory,
    os: *const xvmi_os,
    out: *mut *mut xvmi_manifest,
) -> xvmi_result {
    boundary(|| {
        let m = arg_handle(mem, "mem")?;
        let o = arg_handle(os, "os")?;
        let out = arg_out(out, "out")?;
        let linux = linux_of(&o)?;
        let obs = observe(m.get(), linux);
        new_manifest(Learner::from_observation(&obs).manifest(), out);
        Ok(())
    })
}

/// Copy the manifest as JSON (the form [`xvmi_manifest_load`] reads: pretty-printed, keys
/// sorted, entries by path and name, a final newline) into `buf` (`len` bytes,
/// NUL-terminated). `*out_len` (if not NULL) receives its length, also on
/// [`XVMI_ERR_BUFFER_TOO_SMALL`] (call with `len` 0 to size a buffer).
///
/// # Safety
/// `manifest` is NULL or a live handle; `buf` is NULL or valid for `len` bytes of writes;
/// `out_len` is NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn xvmi_manifest_json(
    manifest: *const xvmi_manifest,
    buf: *mut c_char,
    len: usize,
    out_len: *mut usize,
) -> xvmi_result {
    boundary(|| {
        let m = arg_handle(manifest, "manifest")?;
        let mut text = serde_json::to_string_pretty(&m.manifest.to_json())
            .map_err(|e| Fail::new(XVMI_ERR_MALFORMED, format!("manifest as JSON: {e}")))?;
        text.push('\n');
        // SAFETY: the caller's contract: `buf` valid for `len` bytes, `out_len` for a write.
        unsafe { string_out(&text, buf, len, out_len, "the manifest") }
    })
}

/// [`xvmi_attest_callback`] `kind`: a deviation (`kind`, `subject`, `field`, `expected`,
/// `seen`, `vcpu`, `time`; `docs/attest.md`).
pub const XVMI_ATTEST_DEVIATION: u32 = 1;
/// [`xvmi_attest_callback`] `kind`: a manifest entry that could not be checked (`subject`,
/// `reason`): not a deviation, not a pass either.
pub const XVMI_ATTEST_UNVERIFIED: u32 = 2;
/// [`xvmi_attest_callback`] `kind`: an element of a walk that could not be read (a JSON
/// string).
pub const XVMI_ATTEST_WARNING: u32 = 3;

/// Called by [`xvmi_manifest_attest`] for each finding: `kind` is `XVMI_ATTEST_*`, `json`
/// the finding as JSON (NUL-terminated, valid only during the call). Must not unwind.
pub type xvmi_attest_callback =
    Option<unsafe extern "C" fn(userdata: *mut c_void, kind: u32, json: *const c_char)>;

/// The outcome of [`xvmi_manifest_attest`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct xvmi_attestation {
    /// 1 when nothing deviated (unverified entries may remain), else 0.
    pub attested: u32,
    /// Always zero.
    pub reserved: u32,
    /// Deviations found.
    pub deviations: u64,
    /// Entries that could not be checked.
    pub unverified: u64,
    /// User processes examined.
    pub processes_checked: u64,
    /// Modules examined.
    pub modules_checked: u64,
    /// Walk elements that could not be read.
    pub warnings: u64,
}

fn json_cstring(v: &serde_json::Value) -> Result<CString, Fail> {
    // serde_json escapes control characters, NUL included: the text has no interior NUL.
    CString::new(v.to_string())
        .map_err(|e| Fail::new(XVMI_ERR_MALFORMED, format!("a finding as JSON: {e}")))
}

/// Attest what the guest runs now against `manifest` (`xenvmi::attest::attest`, as `xenvmi
/// attest enforce` does): `mem` is the guest's memory (a snapshot, or a paused domain), `os`
/// its Linux kernel. Each finding goes to `callback` (NULL: none), kernel first, then
/// processes and modules in list order; the counts go to `*out` (NULL: not reported).
/// A deviation is a result, not an error: the call returns [`XVMI_OK`].
///
/// # Safety
/// `manifest`, `mem` and `os` are NULL or live handles; `callback` (if not NULL) does not
/// unwind; `out` is NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn xvmi_manifest_attest(
    manifest: *const xvmi_manifest,
    mem: *const xvmi_memory,
    os: *const xvmi_os,
    callback: xvmi_attest_callback,
    userdata: *mut c_void,
    out: *mut xvmi_attestation,
) -> xvmi_result {
    boundary(|| {
        let mf = arg_handle(manifest, "manifest")?;
        let m = arg_handle(mem, "mem")?;
        let o = arg_handle(os, "os")?;
        let out = if out.is_null() {
            None
        } else {
            Some(arg_out(out, "out")?)
        };
        let linux = linux_of(&o)?;
        let a = attest(&mf.manifest, &observe(m.get(), linux));
        if let Some(cb) = callback {
            let findings = a
                .deviations
                .iter()
                .map(|d| (XVMI_ATTEST_DEVIATION, report::deviation(d)))
                .chain(
                    a.unverified
                        .iter()
                        .map(|u| (XVMI_ATTEST_UNVERIFIED, report::unverified(u))),
                )
                .chain(
                    a.warnings
                        .iter()
                        .map(|w| (XVMI_ATTEST_WARNING, serde_json::Value::from(w.as_str()))),
                );
            for (kind, v) in findings {
                let json = json_cstring(&v)?;
                // SAFETY: a C function pointer from the caller (contract: it does not
                // unwind), with its userdata and a string that lives until it returns.
                unsafe { cb(userdata, kind, json.as_ptr()) };
            }
        }
        if let Some(out) = out {
            let n = |v: usize| v as u64;
            let r = xvmi_attestation {
                attested: u32::from(a.attested()),
                reserved: 0,
                deviations: n(a.deviations.len()),
                unverified: n(a.unverified.len()),
                processes_checked: n(a.processes_checked),
                modules_checked: n(a.modules_checked),
                warnings: n(a.warnings.len()),
            };
            // SAFETY: checked by arg_out.
            unsafe { put(out, r) };
        }
        Ok(())
    })
}

/// Release a manifest. `NULL` is a no-op.
///
/// # Safety
/// `manifest` is NULL or a pointer this library returned (freed or not: a freed one is
/// refused).
#[no_mangle]
pub unsafe extern "C" fn xvmi_manifest_free(manifest: *mut xvmi_manifest) -> xvmi_result {
    boundary(|| {
        drop(unregister(manifest, "manifest")?);
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn last_error() -> String {
        let mut buf = [0 as c_char; 1024];
        // SAFETY: a buffer of its length; no out_len.
        unsafe { crate::capi::xvmi_last_error(buf.as_mut_ptr(), buf.len(), std::ptr::null_mut()) };
        // SAFETY: xvmi_last_error NUL-terminates what it writes.
        unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }
            .to_string_lossy()
            .into_owned()
    }

    const HASH: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    fn text(extra_module_field: &str) -> String {
        format!(
            r#"{{"format":"xenvmi-attest-manifest","version":1,
               "kernel":{{"release":"6.1.0","banner":"Linux version 6.1.0","btf_sha256":"{HASH}"}},
               "executables":[{{"path":"/usr/bin/true","code_page":{{"file_offset":4096,"present":true,"sha256":"{HASH}"}}}}],
               "modules":[{{"name":"ext4","size":1000{extra_module_field}}}]}}"#
        )
    }

    fn parse(bytes: &[u8]) -> (xvmi_result, *mut xvmi_manifest) {
        let mut m = std::ptr::null_mut();
        let name = c"m.json";
        // SAFETY: `bytes` is valid for its length; a NUL-terminated name; a place for the
        // handle.
        let rc = unsafe { xvmi_manifest_parse(bytes.as_ptr(), bytes.len(), name.as_ptr(), &mut m) };
        (rc, m)
    }

    #[test]
    fn a_manifest_parses_and_round_trips_through_its_json() {
        let (rc, m) = parse(text("").as_bytes());
        assert_eq!(rc, XVMI_OK, "{}", last_error());
        let mut need = 0usize;
        // SAFETY: a live handle; no buffer with length 0; a place for the length.
        let rc = unsafe { xvmi_manifest_json(m, std::ptr::null_mut(), 0, &mut need) };
        assert_eq!(rc, XVMI_ERR_BUFFER_TOO_SMALL);
        let mut buf = vec![0 as c_char; need + 1];
        // SAFETY: a buffer of `need + 1` bytes.
        let rc =
            unsafe { xvmi_manifest_json(m, buf.as_mut_ptr(), buf.len(), std::ptr::null_mut()) };
        assert_eq!(rc, XVMI_OK);
        let json: Vec<u8> = buf[..need].iter().map(|&c| c as u8).collect();
        // What was written reads back as the same manifest.
        // SAFETY: a live handle.
        let first = unsafe { &*m }.manifest.clone();
        assert_eq!(Manifest::parse(&json, "again").unwrap(), first);
        assert_eq!(first.modules["ext4"].size, 1000);
        // SAFETY: a live handle freed once, then refused.
        unsafe {
            assert_eq!(xvmi_manifest_free(m), XVMI_OK);
            assert_eq!(xvmi_manifest_free(m), XVMI_ERR_INVALID_HANDLE);
            assert_eq!(xvmi_manifest_free(std::ptr::null_mut()), XVMI_OK);
        }
    }

    #[test]
    fn bad_manifests_and_pointers_are_refused_naming_the_field() {
        let (rc, m) = parse(text(r#","hash":"x""#).as_bytes());
        assert_eq!(rc, XVMI_ERR_MALFORMED);
        assert!(m.is_null());
        let e = last_error();
        assert!(e.contains("m.json") && e.contains("hash"), "{e}");
        let (rc, _) = parse(b"{\"format\":\"xenvmi-attest-manifest\"");
        assert_eq!(rc, XVMI_ERR_MALFORMED);
        assert!(last_error().contains("not valid JSON"), "{}", last_error());
        let (rc, _) = parse(text("").replace(HASH, "zz").as_bytes());
        assert_eq!(rc, XVMI_ERR_MALFORMED);
        assert!(last_error().contains("sha256"), "{}", last_error());

        let mut out = std::ptr::null_mut();
        // SAFETY: NULL pointers are refused before anything is read.
        unsafe {
            assert_eq!(
                xvmi_manifest_parse(std::ptr::null(), 4, std::ptr::null(), &mut out),
                XVMI_ERR_NULL_POINTER
            );
            assert!(last_error().contains("`data`"));
            assert_eq!(
                xvmi_manifest_load(std::ptr::null(), &mut out),
                XVMI_ERR_NULL_POINTER
            );
            assert!(last_error().contains("`path`"));
            assert_eq!(
                xvmi_manifest_learn(std::ptr::null(), std::ptr::null(), &mut out),
                XVMI_ERR_NULL_POINTER
            );
            assert!(last_error().contains("`mem`"));
            let mut a = xvmi_attestation::default();
            assert_eq!(
                xvmi_manifest_attest(
                    std::ptr::null(),
                    std::ptr::null(),
                    std::ptr::null(),
                    None,
                    std::ptr::null_mut(),
                    &mut a
                ),
                XVMI_ERR_NULL_POINTER
            );
            assert!(last_error().contains("`manifest`"));
        }
        assert!(out.is_null());
    }
}
