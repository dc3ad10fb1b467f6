//! Policy sets from C: [`xvmi_policy_set_parse`] takes the one-line specification of
//! [`PolicySet::parse`] (`"cr4=deny,pause,capture,resume; msr; kernel-text=allow"`),
//! [`xvmi_policy_set_new`] and [`xvmi_policy_set_add`] build one policy at a time. A set is a
//! description (each policy's name and remediation): every guard started with it
//! (`xvmi_guard_start`) gets policies of its own, so one set can start several guards.
//! Names and remediations are checked by the library's own parsers when they are given.

use std::ffi::c_char;
use std::sync::Mutex;

use super::error::*;
use super::handles::{arg_handle, register, unregister, Handle};
use crate::policy::{PolicyOptions, PolicySet, Remediation};

/// A set of named policies, each with its remediation (`xenvmi::policy::PolicySet`,
/// `docs/policies.md`). Made by [`xvmi_policy_set_parse`] or [`xvmi_policy_set_new`],
/// released with [`xvmi_policy_set_free`]. Each call locks it, so calls may come from several
/// threads; not freed while another call uses it.
pub struct xvmi_policy_set {
    /// (name, remediation) in order: what a fresh [`PolicySet`] is built from.
    entries: Mutex<Vec<(String, Remediation)>>,
}

impl Handle for xvmi_policy_set {
    const KIND: &'static str = "xvmi_policy_set";
}

/// A [`PolicySet`] with the policies of `entries` (default options besides the remediation).
pub(crate) fn build(entries: &[(String, Remediation)]) -> crate::Result<PolicySet> {
    let mut set = PolicySet::new();
    for (name, remediation) in entries {
        let opts = PolicyOptions {
            remediation: remediation.clone(),
            ..PolicyOptions::default()
        };
        set.add(name, &opts)?;
    }
    Ok(set)
}

impl xvmi_policy_set {
    /// The entries, for a guard to build its own [`PolicySet`] from.
    pub(crate) fn entries(&self) -> Vec<(String, Remediation)> {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Parse a one-line policy specification (`PolicySet::parse`, `docs/policies.md`): policies
/// separated by `;`, each `NAME` or `NAME=REMEDIATION`, where NAME is one of `cr0-wp`, `cr4`,
/// `msr`, `descriptor-tables`, `kernel-text`, `module-text`, `modprobe-path`, `core-pattern`,
/// `hidden-processes`, `hidden-modules` and REMEDIATION is `deny` or `allow` followed by any
/// of `,pause`, `,capture`, `,capture-live`, `,resume` (without one: `deny`).
///
/// # Errors
/// [`XVMI_ERR_INVALID_ARGUMENT`] naming the entry: an unknown or repeated policy name, a bad
/// remediation, or no policy at all; [`XVMI_ERR_NULL_POINTER`] naming `spec` or `out`;
/// [`XVMI_ERR_MALFORMED`] for a `spec` that is not UTF-8.
///
/// # Safety
/// `spec` is NULL or a NUL-terminated string; `out` is NULL or valid for a write. On success
/// `*out` is a new handle to release with [`xvmi_policy_set_free`].
#[no_mangle]
pub unsafe extern "C" fn xvmi_policy_set_parse(
    spec: *const c_char,
    out: *mut *mut xvmi_policy_set,
) -> xvmi_result {
    boundary(|| {
        // SAFETY: `spec` is NULL (refused by arg_str) or a NUL-terminated string, as this
        // function's `# Safety` requires.
        let spec = unsafe { arg_str(spec, "spec") }?;
        let out = arg_out(out, "out")?;
        let mut set = PolicySet::parse(spec, &PolicyOptions::default())?;
        let names: Vec<String> = set.names().into_iter().map(str::to_owned).collect();
        let entries = names
            .into_iter()
            .zip(set.policies_mut().iter().map(|p| p.remediation().clone()))
            .collect();
        let h = Box::new(xvmi_policy_set {
            entries: Mutex::new(entries),
        });
        // SAFETY: checked by arg_out.
        unsafe { put(out, register(h)) };
        Ok(())
    })
}

/// Make an empty policy set, to fill with [`xvmi_policy_set_add`]. A guard refuses an empty
/// set.
///
/// # Safety
/// `out` is NULL or valid for a write. On success `*out` is a new handle to release with
/// [`xvmi_policy_set_free`].
#[no_mangle]
pub unsafe extern "C" fn xvmi_policy_set_new(out: *mut *mut xvmi_policy_set) -> xvmi_result {
    boundary(|| {
        let out = arg_out(out, "out")?;
        let h = Box::new(xvmi_policy_set {
            entries: Mutex::new(Vec::new()),
        });
        // SAFETY: checked by arg_out.
        unsafe { put(out, register(h)) };
        Ok(())
    })
}

/// Add the policy `name` (as in [`xvmi_policy_set_parse`]) with `remediation`
/// (`"deny,pause,capture,resume"`; NULL: `"deny"`). On failure the set is unchanged.
///
/// # Errors
/// [`XVMI_ERR_INVALID_ARGUMENT`] naming the policy or the remediation: an unknown name, one
/// already in the set, a bad remediation.
///
/// # Safety
/// `set` is NULL or a live handle; `name` is NULL or a NUL-terminated string; `remediation`
/// is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn xvmi_policy_set_add(
    set: *const xvmi_policy_set,
    name: *const c_char,
    remediation: *const c_char,
) -> xvmi_result {
    boundary(|| {
        let s = arg_handle(set, "set")?;
        // SAFETY: `name` is NULL (refused by arg_str) or a NUL-terminated string, as this
        // function's `# Safety` requires.
        let name = unsafe { arg_str(name, "name") }?;
        // SAFETY: `remediation` is NULL or a NUL-terminated string, as this function's
        // `# Safety` requires.
        let remediation = unsafe { arg_opt_str(remediation, "remediation") }?;
        let remediation = match remediation {
            Some(r) => Remediation::parse(r)?,
            None => Remediation::deny(),
        };
        let mut entries = s.entries.lock().unwrap_or_else(|p| p.into_inner());
        let mut trial = entries.clone();
        trial.push((name.to_owned(), remediation));
        // The library decides what a valid set is (known names, no repeats).
        build(&trial)?;
        *entries = trial;
        Ok(())
    })
}

/// The number of policies in `set`, into `*out_count`.
///
/// # Safety
/// `set` is NULL or a live handle; `out_count` is NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn xvmi_policy_set_count(
    set: *const xvmi_policy_set,
    out_count: *mut usize,
) -> xvmi_result {
    boundary(|| {
        let s = arg_handle(set, "set")?;
        let out = arg_out(out_count, "out_count")?;
        let n = s.entries.lock().unwrap_or_else(|p| p.into_inner()).len();
        // SAFETY: checked by arg_out.
        unsafe { put(out, n) };
        Ok(())
    })
}

/// Release a policy set. `NULL` is a no-op. Guards started with it are not affected (each has
/// its own policies).
///
/// # Safety
/// `set` is NULL or a pointer this library returned (freed or not: a freed one is refused).
#[no_mangle]
pub unsafe extern "C" fn xvmi_policy_set_free(set: *mut xvmi_policy_set) -> xvmi_result {
    boundary(|| {
        drop(unregister(set, "set")?);
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;

    fn last_error() -> String {
        let mut buf = [0 as c_char; 512];
        // SAFETY: a buffer of its length; no out_len.
        unsafe { crate::capi::xvmi_last_error(buf.as_mut_ptr(), buf.len(), std::ptr::null_mut()) };
        // SAFETY: xvmi_last_error NUL-terminates what it writes.
        unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn a_specification_becomes_a_set_and_bad_ones_name_the_entry() {
        let spec = CString::new("cr4=deny,pause,resume; msr;kernel-text=allow").unwrap();
        let mut set = std::ptr::null_mut();
        // SAFETY: a NUL-terminated string and a place for the handle.
        let rc = unsafe { xvmi_policy_set_parse(spec.as_ptr(), &mut set) };
        assert_eq!(rc, XVMI_OK);
        let mut n = 0usize;
        // SAFETY: a live handle and a place for the count.
        assert_eq!(unsafe { xvmi_policy_set_count(set, &mut n) }, XVMI_OK);
        assert_eq!(n, 3);
        // SAFETY: a live handle.
        let entries = unsafe { &*set }.entries();
        let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(names, ["cr4", "msr", "kernel-text"]);
        assert_eq!(
            entries[0].1,
            Remediation::parse("deny,pause,resume").unwrap()
        );
        assert_eq!(entries[2].1, Remediation::allow());
        // SAFETY: a live handle, freed once.
        assert_eq!(unsafe { xvmi_policy_set_free(set) }, XVMI_OK);

        for (text, code, says) in [
            (
                "cr4;cr9",
                XVMI_ERR_INVALID_ARGUMENT,
                "policy \"cr9\": unknown policy",
            ),
            (
                "msr=maybe",
                XVMI_ERR_INVALID_ARGUMENT,
                "remediation \"maybe\"",
            ),
            (" ; ", XVMI_ERR_INVALID_ARGUMENT, "names no policy"),
        ] {
            let spec = CString::new(text).unwrap();
            let mut set = std::ptr::null_mut();
            // SAFETY: as above.
            let rc = unsafe { xvmi_policy_set_parse(spec.as_ptr(), &mut set) };
            assert_eq!(rc, code);
            assert!(set.is_null(), "no output on failure");
            assert!(last_error().contains(says), "{text}: {}", last_error());
        }
        // SAFETY: NULL pointers are refused before anything is read.
        let rc = unsafe { xvmi_policy_set_parse(std::ptr::null(), &mut set) };
        assert_eq!(rc, XVMI_ERR_NULL_POINTER);
        assert!(last_error().contains("`spec`"), "{}", last_error());
        // SAFETY: as above.
        let rc = unsafe { xvmi_policy_set_parse(spec.as_ptr(), std::ptr::null_mut()) };
        assert_eq!(rc, XVMI_ERR_NULL_POINTER);
        assert!(last_error().contains("`out`"), "{}", last_error());
        // SAFETY: NULL is a no-op.
        let rc = unsafe { xvmi_policy_set_free(std::ptr::null_mut()) };
        assert_eq!(rc, XVMI_OK);
    }

    #[test]
    fn the_builder_adds_valid_policies_only() {
        let mut set = std::ptr::null_mut();
        // SAFETY: a place for the handle.
        assert_eq!(unsafe { xvmi_policy_set_new(&mut set) }, XVMI_OK);
        let cr4 = CString::new("cr4").unwrap();
        let bad_name = CString::new("cr4;msr").unwrap();
        let capture = CString::new("deny,capture").unwrap();
        let resume = CString::new("deny,resume").unwrap();
        // SAFETY: a live handle and NUL-terminated strings (or NULL) in every call below.
        unsafe {
            assert_eq!(
                xvmi_policy_set_add(set, cr4.as_ptr(), std::ptr::null()),
                XVMI_OK
            );
            assert_eq!(
                xvmi_policy_set_add(set, cr4.as_ptr(), capture.as_ptr()),
                XVMI_ERR_INVALID_ARGUMENT
            );
            assert!(last_error().contains("policy \"cr4\": given twice"));
            assert_eq!(
                xvmi_policy_set_add(set, bad_name.as_ptr(), std::ptr::null()),
                XVMI_ERR_INVALID_ARGUMENT
            );
            assert!(last_error().contains("policy \"cr4;msr\": unknown policy"));
            let msr = CString::new("msr").unwrap();
            assert_eq!(
                xvmi_policy_set_add(set, msr.as_ptr(), resume.as_ptr()),
                XVMI_ERR_INVALID_ARGUMENT
            );
            assert!(last_error().contains("remediation \"deny,resume\""));
            assert_eq!(
                xvmi_policy_set_add(set, std::ptr::null(), std::ptr::null()),
                XVMI_ERR_NULL_POINTER
            );
            assert!(last_error().contains("`name`"));
            assert_eq!(
                xvmi_policy_set_add(set, msr.as_ptr(), capture.as_ptr()),
                XVMI_OK
            );
            let mut n = 0usize;
            assert_eq!(xvmi_policy_set_count(set, &mut n), XVMI_OK);
            assert_eq!(n, 2, "the refused additions left the set as it was");
            assert_eq!(xvmi_policy_set_free(set), XVMI_OK);
            assert_eq!(xvmi_policy_set_free(set), XVMI_ERR_INVALID_HANDLE);
        }
    }
}
