//! Result codes, the thread-local last error, the panic boundary and the argument checks every
//! exported function goes through.

use std::cell::RefCell;
use std::ffi::{c_char, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::error::Error;

/// What every call returns: [`XVMI_OK`] or one of the `XVMI_ERR_*` codes. A plain integer, not
/// an enum, so that a value a newer library returns is still a valid `xvmi_result` for an older
/// caller. The numbers are stable: new codes are only ever appended. On an error, the full
/// message (file names, addresses, errno) is available from [`xvmi_last_error`].
pub type xvmi_result = i32;

/// Success.
pub const XVMI_OK: xvmi_result = 0;
/// An argument has a value outside its documented range (an unknown enum value, a boolean
/// that is neither 0 nor 1, a misaligned pointer, a handle in the wrong state).
pub const XVMI_ERR_INVALID_ARGUMENT: xvmi_result = 1;
/// A required pointer argument is NULL.
pub const XVMI_ERR_NULL_POINTER: xvmi_result = 2;
/// An operating-system call on a file failed (the message names the file and the errno).
pub const XVMI_ERR_IO: xvmi_result = 3;
/// A memory image or profile file is malformed or truncated, or a string argument is not
/// UTF-8.
pub const XVMI_ERR_MALFORMED: xvmi_result = 4;
/// A guest address is not mapped or not backed (also: not canonical).
pub const XVMI_ERR_NOT_MAPPED: xvmi_result = 5;
/// Address arithmetic on guest values overflowed.
pub const XVMI_ERR_OVERFLOW: xvmi_result = 6;
/// The backend cannot do this (a snapshot has no events, a build without the `xen` feature
/// has no Xen, a simulated-domain call on a Xen domain), or an image is of a kind xenvmi does
/// not read (a Windows triage or header-only crash dump).
pub const XVMI_ERR_UNSUPPORTED: xvmi_result = 7;
/// A call into the hypervisor failed (the message names the call and the errno).
pub const XVMI_ERR_BACKEND: xvmi_result = 8;
/// A vCPU index is out of range.
pub const XVMI_ERR_NO_SUCH_VCPU: xvmi_result = 9;
/// The profile lacks a symbol the operation needs.
pub const XVMI_ERR_MISSING_SYMBOL: xvmi_result = 10;
/// The profile lacks a structure or field the operation needs.
pub const XVMI_ERR_MISSING_FIELD: xvmi_result = 11;
/// No kernel of the requested OS was found in guest memory.
pub const XVMI_ERR_OS_NOT_FOUND: xvmi_result = 12;
/// A walk over a guest list stopped early: a broken link, a cycle, or its entry limit.
pub const XVMI_ERR_WALK_ABORTED: xvmi_result = 13;
/// The event callback could not be honoured (it returned an invalid response, or the code
/// around it failed): its event was answered with a plain continue and the session was torn
/// down.
pub const XVMI_ERR_HANDLER: xvmi_result = 14;
/// A session journal exists for this target (another monitor, live or dead, owns it).
pub const XVMI_ERR_JOURNAL_IN_USE: xvmi_result = 15;
/// Guest data is inconsistent (a corrupt or hostile guest).
pub const XVMI_ERR_CORRUPT: xvmi_result = 16;
/// The thing looked up does not exist (no process with that CR3, no such symbol name).
pub const XVMI_ERR_NOT_FOUND: xvmi_result = 17;
/// The caller's buffer is too small; the needed length was written to the length output.
pub const XVMI_ERR_BUFFER_TOO_SMALL: xvmi_result = 18;
/// xenvmi panicked (a bug): the call was abandoned. Free the handles it was given; do not use
/// them otherwise.
pub const XVMI_ERR_PANIC: xvmi_result = 19;
/// Recovery refused a session journal: not a regular file of this user with mode 0600 in a
/// 0700 directory, or written for another domain or host boot (the message says which).
/// `XVMI_RECOVER_IGNORE_BINDING` overrides the domain and boot check only.
pub const XVMI_ERR_JOURNAL_REFUSED: xvmi_result = 20;
/// A handle argument is not a live handle of its type: freed already (a use after free or a
/// double free), never returned by this library, a handle of another type, or, for a free, a
/// handle that a call still running is using (freed from a walk's or an event's callback; it
/// was not freed).
pub const XVMI_ERR_INVALID_HANDLE: xvmi_result = 21;
/// Memory for the result could not be allocated (a copy of a caller's buffer, a read's
/// scratch buffer); nothing was changed.
pub const XVMI_ERR_NO_MEMORY: xvmi_result = 22;

/// Why a call failed: its code and its message.
#[derive(Debug)]
pub(crate) struct Fail {
    pub(crate) code: xvmi_result,
    pub(crate) message: String,
}

impl Fail {
    pub(crate) fn new(code: xvmi_result, message: impl Into<String>) -> Fail {
        Fail {
            code,
            message: message.into(),
        }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Fail {
        Fail::new(XVMI_ERR_INVALID_ARGUMENT, message)
    }
}

impl From<Error> for Fail {
    fn from(e: Error) -> Fail {
        Fail {
            code: result_code(&e),
            message: e.to_string(),
        }
    }
}

/// The C code of a Rust error.
pub(crate) fn result_code(e: &Error) -> xvmi_result {
    match e {
        Error::Io { .. } => XVMI_ERR_IO,
        Error::Malformed { .. } => XVMI_ERR_MALFORMED,
        Error::PhysicalUnmapped { .. }
        | Error::PageNotPresent { .. }
        | Error::NonCanonical { .. } => XVMI_ERR_NOT_MAPPED,
        Error::Overflow(_) => XVMI_ERR_OVERFLOW,
        Error::InHandler(_) | Error::Config { .. } => XVMI_ERR_INVALID_ARGUMENT,
        Error::Unsupported { .. } | Error::UnsupportedImage { .. } => XVMI_ERR_UNSUPPORTED,
        Error::Backend { .. } => XVMI_ERR_BACKEND,
        Error::NoSuchVcpu { .. } => XVMI_ERR_NO_SUCH_VCPU,
        Error::UnknownView { .. } => XVMI_ERR_NOT_FOUND,
        Error::ViewRefused { .. } => XVMI_ERR_INVALID_ARGUMENT,
        Error::MissingSymbol { .. } => XVMI_ERR_MISSING_SYMBOL,
        Error::MissingField { .. } => XVMI_ERR_MISSING_FIELD,
        Error::OsNotFound { .. } => XVMI_ERR_OS_NOT_FOUND,
        Error::WalkAborted { .. } => XVMI_ERR_WALK_ABORTED,
        Error::HandlerPanicked { .. } | Error::Handler(_) => XVMI_ERR_HANDLER,
        Error::JournalInUse { .. } => XVMI_ERR_JOURNAL_IN_USE,
        Error::Corrupt { .. } => XVMI_ERR_CORRUPT,
        Error::JournalRefused { .. } => XVMI_ERR_JOURNAL_REFUSED,
    }
}

thread_local! {
    static LAST_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Replace this thread's last error message.
pub(crate) fn set_last_error(message: String) {
    // `try_with`: during thread teardown the slot may be gone; the message is then dropped.
    let _ = LAST_ERROR.try_with(|m| {
        if let Ok(mut m) = m.try_borrow_mut() {
            *m = message;
        }
    });
}

/// Report a failure: store its message, return its code.
pub(crate) fn report(fail: Fail) -> xvmi_result {
    set_last_error(fail.message);
    fail.code
}

pub(crate) fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".into())
}

/// The panic boundary around every exported body: a panic becomes [`XVMI_ERR_PANIC`] (never
/// an unwind into C), a `Fail` becomes its code with its message stored as the last error.
pub(crate) fn boundary(f: impl FnOnce() -> Result<(), Fail>) -> xvmi_result {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => XVMI_OK,
        Ok(Err(fail)) => report(fail),
        Err(p) => report(Fail::new(
            XVMI_ERR_PANIC,
            format!(
                "xenvmi panicked: {} (a bug in xenvmi; free the handles this call was given)",
                panic_message(p.as_ref())
            ),
        )),
    }
}

fn null(name: &str) -> Fail {
    Fail::new(XVMI_ERR_NULL_POINTER, format!("`{name}` is NULL"))
}

pub(crate) fn check_ptr<T>(p: *const T, name: &str) -> Result<(), Fail> {
    if p.is_null() {
        return Err(null(name));
    }
    if !p.is_aligned() {
        return Err(Fail::invalid(format!(
            "`{name}` ({p:p}) is not aligned to {} bytes",
            std::mem::align_of::<T>()
        )));
    }
    Ok(())
}

/// Borrow what a C pointer argument points at.
///
/// # Safety
/// `p` is NULL or points at a live, initialised `T` that nothing mutates for `'a`.
pub(crate) unsafe fn arg_ref<'a, T>(p: *const T, name: &str) -> Result<&'a T, Fail> {
    check_ptr(p, name)?;
    // SAFETY: non-NULL and aligned (checked above); valid and unaliased by the caller's
    // contract.
    Ok(unsafe { &*p })
}

/// Check an output pointer (written with [`put`] once the call has succeeded).
pub(crate) fn arg_out<T>(p: *mut T, name: &str) -> Result<*mut T, Fail> {
    check_ptr(p, name)?;
    Ok(p)
}

/// Write an output.
///
/// # Safety
/// `p` was checked by [`arg_out`] and is valid for a write of `T` by the caller's contract.
pub(crate) unsafe fn put<T>(p: *mut T, v: T) {
    // SAFETY: non-NULL and aligned (arg_out); writable by contract. `write` does not read or
    // drop what was there (it may be uninitialised C memory).
    unsafe { p.write(v) }
}

/// A NUL-terminated UTF-8 string argument.
///
/// # Safety
/// `p` is NULL or points at a NUL-terminated string that stays unchanged for `'a`.
pub(crate) unsafe fn arg_str<'a>(p: *const c_char, name: &str) -> Result<&'a str, Fail> {
    if p.is_null() {
        return Err(null(name));
    }
    // SAFETY: non-NULL; NUL-terminated and live by contract.
    let c = unsafe { CStr::from_ptr(p) };
    c.to_str().map_err(|e| {
        Fail::new(
            XVMI_ERR_MALFORMED,
            format!("`{name}` is not valid UTF-8 ({e})"),
        )
    })
}

/// An optional string argument (NULL is `None`).
///
/// # Safety
/// As [`arg_str`].
pub(crate) unsafe fn arg_opt_str<'a>(
    p: *const c_char,
    name: &str,
) -> Result<Option<&'a str>, Fail> {
    if p.is_null() {
        Ok(None)
    } else {
        // SAFETY: `p` is NULL (refused by arg_str) or a NUL-terminated string, as this function's
        // `# Safety` requires.
        unsafe { arg_str(p, name) }.map(Some)
    }
}

fn check_len(len: usize, name: &str) -> Result<(), Fail> {
    if len > isize::MAX as usize {
        return Err(Fail::invalid(format!(
            "`{name}` length {len} is larger than any buffer can be"
        )));
    }
    Ok(())
}

/// A caller's output buffer, checked (non-NULL unless empty, a length that fits `isize`) but
/// not touched: it is written with [`OutBuf::write`] only once the result is known, so a
/// failing call leaves the caller's bytes as they were (`docs/ffi.md`: outputs are written
/// only on success).
pub(crate) struct OutBuf {
    p: *mut u8,
    len: usize,
}

impl OutBuf {
    /// Its length.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Copy `src` (exactly [`OutBuf::len`] bytes) into the caller's buffer.
    pub(crate) fn write(&self, src: &[u8]) {
        let n = src.len().min(self.len);
        if n == 0 {
            return;
        }
        // SAFETY: `p` is non-NULL and valid for `len` bytes of writes (checked by
        // `arg_buf_out`, promised by the caller); `src` is a Rust slice, so the two cannot
        // overlap with a live Rust borrow of the caller's memory (none is ever made).
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), self.p, n) };
    }
}

/// A caller's buffer for `len` bytes of output (NULL is accepted when `len` is 0).
///
/// # Safety
/// `p` is NULL or valid for `len` bytes of writes until the call returns.
pub(crate) unsafe fn arg_buf_out(p: *mut u8, len: usize, name: &str) -> Result<OutBuf, Fail> {
    check_len(len, name)?;
    if len != 0 && p.is_null() {
        return Err(null(name));
    }
    Ok(OutBuf { p, len })
}

/// A zeroed scratch buffer of `len` bytes, or an error if it cannot be allocated (a C caller
/// may ask for any length).
pub(crate) fn scratch(len: usize, name: &str) -> Result<Vec<u8>, Fail> {
    let mut v = Vec::new();
    v.try_reserve_exact(len).map_err(|_| {
        Fail::new(
            XVMI_ERR_NO_MEMORY,
            format!("`{name}`: {len} bytes cannot be allocated for the result"),
        )
    })?;
    v.resize(len, 0);
    Ok(v)
}

/// Bytes given by the caller. NULL is accepted when `len` is 0.
///
/// # Safety
/// `p` is NULL or valid for `len` bytes of reads, unchanged for `'a`.
pub(crate) unsafe fn arg_bytes<'a>(p: *const u8, len: usize, name: &str) -> Result<&'a [u8], Fail> {
    check_len(len, name)?;
    if len == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(null(name));
    }
    // SAFETY: non-NULL, `len` <= isize::MAX, readable for `len` bytes by contract.
    Ok(unsafe { std::slice::from_raw_parts(p, len) })
}

/// A C array of `count` `T`s. NULL is accepted when `count` is 0.
///
/// # Safety
/// `p` is NULL or valid for reads of `count` initialised `T`s, unchanged for `'a`.
pub(crate) unsafe fn arg_slice<'a, T>(
    p: *const T,
    count: usize,
    name: &str,
) -> Result<&'a [T], Fail> {
    if count == 0 {
        return Ok(&[]);
    }
    check_ptr(p, name)?;
    count
        .checked_mul(std::mem::size_of::<T>())
        .filter(|&n| n <= isize::MAX as usize)
        .ok_or_else(|| Fail::invalid(format!("`{name}` count {count} is too large")))?;
    // SAFETY: non-NULL, aligned, total size <= isize::MAX (checked); valid by contract.
    Ok(unsafe { std::slice::from_raw_parts(p, count) })
}

/// A C boolean argument: 0 or 1, anything else is refused (it is most likely uninitialised).
pub(crate) fn arg_bool(v: u8, name: &str) -> Result<bool, Fail> {
    match v {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(Fail::invalid(format!("`{name}` is {v}, expected 0 or 1"))),
    }
}

/// Copy `s` into a caller buffer as a NUL-terminated string: `XVMI_OK` when it fits (`len` >
/// `s.len()`), else [`XVMI_ERR_BUFFER_TOO_SMALL`] with the buffer untouched. `*out_len` (if
/// not NULL) receives `s.len()` (without the NUL) in both cases.
///
/// # Safety
/// `buf` is NULL or valid for `len` bytes of writes; `out_len` is NULL or valid for a write.
pub(crate) unsafe fn string_out(
    s: &str,
    buf: *mut c_char,
    len: usize,
    out_len: *mut usize,
    what: &str,
) -> Result<(), Fail> {
    let out_len = if out_len.is_null() {
        None
    } else {
        Some(arg_out(out_len, "out_len")?)
    };
    check_len(len, "len")?;
    if len > 0 && buf.is_null() {
        return Err(null("buf"));
    }
    if let Some(o) = out_len {
        // SAFETY: checked by arg_out; the length is written on success and on "too small",
        // as documented.
        unsafe { put(o, s.len()) };
    }
    if s.len() >= len {
        return Err(Fail::new(
            XVMI_ERR_BUFFER_TOO_SMALL,
            format!(
                "{what} is {} bytes and needs a buffer of {}; the buffer has {len}",
                s.len(),
                s.len() + 1,
            ),
        ));
    }
    // SAFETY: `buf` is non-NULL (len > s.len() >= 0) and valid for `len` > `s.len()` bytes
    // of writes by contract; the source is a Rust string that cannot overlap it. Raw copies:
    // no reference to possibly uninitialised caller memory is made.
    unsafe {
        std::ptr::copy_nonoverlapping(s.as_ptr(), buf.cast::<u8>(), s.len());
        buf.add(s.len()).write(0);
    }
    Ok(())
}

/// Copy `s` into a fixed C array, cut at a UTF-8 character boundary so that it always ends
/// with a NUL.
pub(crate) fn fixed_string<const N: usize>(s: &str) -> [c_char; N] {
    let mut out = [0 as c_char; N];
    let mut end = s.len().min(N.saturating_sub(1));
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    for (d, &b) in out.iter_mut().zip(&s.as_bytes()[..end]) {
        *d = b as c_char;
    }
    out
}

/// Copy this thread's last error message into `buf` as a NUL-terminated string.
///
/// Every call that fails stores its message (the full text of the error: file names,
/// addresses, errno) in a thread-local slot, readable here until the next failing call on the
/// same thread. Successful calls do not clear it. This function never changes it.
///
/// The message is cut at a UTF-8 character boundary to fit `len - 1` bytes and always
/// NUL-terminated when `len > 0`. `*out_len` (if `out_len` is not NULL) receives the length of
/// the whole message without the NUL, so a caller can retry with `out_len + 1` bytes.
///
/// Returns [`XVMI_OK`] when the whole message fit, [`XVMI_ERR_BUFFER_TOO_SMALL`] when it was
/// cut (the cut text is still written), [`XVMI_ERR_NULL_POINTER`] if `buf` is NULL and `len`
/// is not 0. An empty message means no call on this thread has failed yet.
///
/// # Safety
/// `buf` is NULL or valid for `len` bytes of writes; `out_len` is NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn xvmi_last_error(
    buf: *mut c_char,
    len: usize,
    out_len: *mut usize,
) -> xvmi_result {
    let r = catch_unwind(AssertUnwindSafe(|| {
        LAST_ERROR.with(|m| {
            let m = m.borrow();
            if !out_len.is_null() {
                if !out_len.is_aligned() {
                    return XVMI_ERR_INVALID_ARGUMENT;
                }
                // SAFETY: non-NULL, aligned, writable by contract.
                unsafe { out_len.write(m.len()) };
            }
            if len == 0 {
                return if m.is_empty() {
                    XVMI_OK
                } else {
                    XVMI_ERR_BUFFER_TOO_SMALL
                };
            }
            if buf.is_null() {
                return XVMI_ERR_NULL_POINTER;
            }
            let mut end = m.len().min(len - 1);
            while !m.is_char_boundary(end) {
                end -= 1;
            }
            // SAFETY: `buf` is non-NULL and valid for `len` > `end` bytes by contract; the
            // source is a Rust string that cannot overlap caller memory.
            unsafe {
                std::ptr::copy_nonoverlapping(m.as_ptr(), buf.cast::<u8>(), end);
                buf.add(end).write(0);
            }
            if end == m.len() {
                XVMI_OK
            } else {
                XVMI_ERR_BUFFER_TOO_SMALL
            }
        })
    }));
    r.unwrap_or(XVMI_ERR_PANIC)
}

macro_rules! names {
    ($($c:ident),* $(,)?) => {
        fn name_of(r: xvmi_result) -> &'static CStr {
            match r {
                $($c => {
                    const S: &CStr = match CStr::from_bytes_with_nul(concat!(stringify!($c), "\0").as_bytes()) {
                        Ok(s) => s,
                        Err(_) => panic!("result name"),
                    };
                    S
                })*
                _ => c"XVMI_ERR_UNKNOWN",
            }
        }
    };
}

names!(
    XVMI_OK,
    XVMI_ERR_INVALID_ARGUMENT,
    XVMI_ERR_NULL_POINTER,
    XVMI_ERR_IO,
    XVMI_ERR_MALFORMED,
    XVMI_ERR_NOT_MAPPED,
    XVMI_ERR_OVERFLOW,
    XVMI_ERR_UNSUPPORTED,
    XVMI_ERR_BACKEND,
    XVMI_ERR_NO_SUCH_VCPU,
    XVMI_ERR_MISSING_SYMBOL,
    XVMI_ERR_MISSING_FIELD,
    XVMI_ERR_OS_NOT_FOUND,
    XVMI_ERR_WALK_ABORTED,
    XVMI_ERR_HANDLER,
    XVMI_ERR_JOURNAL_IN_USE,
    XVMI_ERR_CORRUPT,
    XVMI_ERR_NOT_FOUND,
    XVMI_ERR_BUFFER_TOO_SMALL,
    XVMI_ERR_PANIC,
    XVMI_ERR_JOURNAL_REFUSED,
    XVMI_ERR_INVALID_HANDLE,
    XVMI_ERR_NO_MEMORY,
);

/// The name of a result code (`"XVMI_ERR_IO"`), `"XVMI_ERR_UNKNOWN"` for a number this library
/// does not know. The string is static: never free it.
#[no_mangle]
pub extern "C" fn xvmi_result_name(result: xvmi_result) -> *const c_char {
    name_of(result).as_ptr()
}

/// The major version of the C ABI this header describes (compile time; see
/// [`xvmi_version_number`] for the library's at run time).
pub const XVMI_VERSION_MAJOR: u32 = 0;
/// The minor version.
pub const XVMI_VERSION_MINOR: u32 = 1;
/// The patch version.
pub const XVMI_VERSION_PATCH: u32 = 0;

/// The loaded library's version as one number, `MAJOR * 10000 + MINOR * 100 + PATCH`, to
/// compare with the header's `XVMI_VERSION_*` (`xvmi_version_compatible()` in the header does).
#[no_mangle]
pub extern "C" fn xvmi_version_number() -> u32 {
    XVMI_VERSION_MAJOR * 10000 + XVMI_VERSION_MINOR * 100 + XVMI_VERSION_PATCH
}

/// The library version (`"0.1.0"`), a static string: never free it.
#[no_mangle]
pub extern "C" fn xvmi_version() -> *const c_char {
    const V: &CStr =
        match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
            Ok(s) => s,
            Err(_) => panic!("version"),
        };
    V.as_ptr()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_headers_version_is_the_crates() {
        let v = |s: &str| s.parse::<u32>().unwrap();
        assert_eq!(XVMI_VERSION_MAJOR, v(env!("CARGO_PKG_VERSION_MAJOR")));
        assert_eq!(XVMI_VERSION_MINOR, v(env!("CARGO_PKG_VERSION_MINOR")));
        assert_eq!(XVMI_VERSION_PATCH, v(env!("CARGO_PKG_VERSION_PATCH")));
    }

    fn last() -> String {
        LAST_ERROR.with(|m| m.borrow().clone())
    }

    #[test]
    fn a_panic_becomes_an_error_code_with_its_message() {
        let r = boundary(|| panic!("boom {}", 7));
        assert_eq!(r, XVMI_ERR_PANIC);
        assert!(last().contains("boom 7"), "{}", last());
    }

    #[test]
    fn errors_map_to_their_codes_and_messages() {
        let r = boundary(|| {
            Err(Error::io(
                "/nope/vmcore",
                std::io::Error::from_raw_os_error(2),
            ))?
        });
        assert_eq!(r, XVMI_ERR_IO);
        assert!(last().contains("/nope/vmcore"), "{}", last());
        assert_eq!(boundary(|| Ok(())), XVMI_OK);
        assert!(
            last().contains("/nope/vmcore"),
            "success keeps the last error"
        );
    }

    #[test]
    fn last_error_is_cut_at_a_character_boundary() {
        set_last_error("ab\u{e9}cd".into()); // é is 2 bytes
        let mut buf = [0x7f as c_char; 4];
        let mut n = 0usize;
        // SAFETY: a 4-byte buffer and a usize on the stack.
        let r = unsafe { xvmi_last_error(buf.as_mut_ptr(), buf.len(), &mut n) };
        assert_eq!(r, XVMI_ERR_BUFFER_TOO_SMALL);
        assert_eq!(n, 6);
        // "ab" + NUL: the 2-byte é does not fit in the third and fourth bytes with the NUL.
        assert_eq!(&buf[..3], &[b'a' as c_char, b'b' as c_char, 0]);
        let mut big = [0 as c_char; 16];
        // SAFETY: as above.
        let r = unsafe { xvmi_last_error(big.as_mut_ptr(), big.len(), std::ptr::null_mut()) };
        assert_eq!(r, XVMI_OK);
        assert_eq!(
            &big[..7],
            &"ab\u{e9}cd\0"
                .as_bytes()
                .iter()
                .map(|&b| b as c_char)
                .collect::<Vec<_>>()[..]
        );
    }

    #[test]
    fn names_are_static_and_cover_unknown_codes() {
        let n = |r| {
            // SAFETY: static NUL-terminated strings.
            unsafe { CStr::from_ptr(xvmi_result_name(r)) }
                .to_str()
                .unwrap()
                .to_owned()
        };
        assert_eq!(n(XVMI_ERR_IO), "XVMI_ERR_IO");
        assert_eq!(n(XVMI_OK), "XVMI_OK");
        assert_eq!(n(9999), "XVMI_ERR_UNKNOWN");
    }

    #[test]
    fn fixed_strings_are_cut_and_terminated() {
        let a: [c_char; 4] = fixed_string("ab\u{e9}");
        assert_eq!(a, [b'a' as c_char, b'b' as c_char, 0, 0]);
        let b: [c_char; 8] = fixed_string("init");
        assert_eq!(b[4], 0);
    }
}
