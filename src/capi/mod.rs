//! The C ABI: the functions and types `include/xenvmi.h` declares, for C and C++ programs that
//! link `libxenvmi.a` or `libxenvmi.so`.
//!
//! This module tree is the only place with `#[no_mangle]` and, besides the Xen backend and the
//! snapshot mapping, the only one with `unsafe` (every block carries a `// SAFETY:` comment).
//! The conventions follow rustls-ffi; `docs/ffi.md` has them in full:
//!
//! - names are `xvmi_<type>_<verb>`, constants `XVMI_<GROUP>_<NAME>` (never `vmi_`, which
//!   LibVMI exports);
//! - every call returns an [`xvmi_result`] (a plain integer: [`XVMI_OK`] or an `XVMI_ERR_*`
//!   code) and runs inside a panic boundary; the message of the last failure on the calling
//!   thread is read with [`xvmi_last_error`];
//! - values from C are plain integers and are validated, never transmuted into Rust enums;
//! - outputs come last and are written only on success (two documented exceptions: the length
//!   of a string that did not fit, and the byte count of a partial virtual read);
//! - handles come from `_open`/`_discover` and go back through `_free`; `_free(NULL)` is a
//!   no-op; callbacks take `userdata` first;
//! - strings in are NUL-terminated UTF-8; strings out go to fixed arrays or caller buffers.
//!
//! The handles: [`xvmi_memory`] (a snapshot, an in-memory image or a live domain's memory),
//! [`xvmi_os`] (a kernel found in it), [`xvmi_domain`] (a Xen domain or the simulated one),
//! [`xvmi_session`] (monitors, views, hooks and the event loop on a domain); an event
//! callback may get an [`xvmi_context`], valid during that callback. [`xvmi_policy_set`]
//! (named policies with their remediations), [`xvmi_guard`] (a policy set guarding a domain,
//! alerts to a callback) and [`xvmi_manifest`] (a guest's desired state, to attest against).
#![allow(unsafe_code)]
#![allow(non_camel_case_types)]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

mod attest;
mod capture;
mod context;
mod domain;
mod error;
mod guard;
mod handles;
mod hooks;
mod memory;
mod os;
mod policy;
mod session;
mod trace;
mod types;

pub use attest::*;
pub use capture::*;
pub use context::*;
pub use domain::*;
pub use error::{
    xvmi_last_error, xvmi_result, xvmi_result_name, xvmi_version, xvmi_version_number,
    XVMI_ERR_BACKEND, XVMI_ERR_BUFFER_TOO_SMALL, XVMI_ERR_CORRUPT, XVMI_ERR_HANDLER,
    XVMI_ERR_INVALID_ARGUMENT, XVMI_ERR_INVALID_HANDLE, XVMI_ERR_IO, XVMI_ERR_JOURNAL_IN_USE,
    XVMI_ERR_JOURNAL_REFUSED, XVMI_ERR_MALFORMED, XVMI_ERR_MISSING_FIELD, XVMI_ERR_MISSING_SYMBOL,
    XVMI_ERR_NOT_FOUND, XVMI_ERR_NOT_MAPPED, XVMI_ERR_NO_MEMORY, XVMI_ERR_NO_SUCH_VCPU,
    XVMI_ERR_NULL_POINTER, XVMI_ERR_OS_NOT_FOUND, XVMI_ERR_OVERFLOW, XVMI_ERR_PANIC,
    XVMI_ERR_UNSUPPORTED, XVMI_ERR_WALK_ABORTED, XVMI_OK, XVMI_VERSION_MAJOR, XVMI_VERSION_MINOR,
    XVMI_VERSION_PATCH,
};
pub use guard::*;
pub use hooks::*;
pub use memory::*;
pub use os::*;
pub use policy::*;
pub use session::*;
pub use trace::*;
pub use types::*;
