//! Desired state: a manifest of what a guest should run (its kernel build, its programs,
//! its modules), learned from observation and enforced against it (`docs/attest.md`).
//!
//! - [`Manifest`]: the JSON document, versioned, parsed strictly ([`Manifest::load`] names
//!   the file and the field in every error).
//! - [`observe`]: what a Linux guest runs at one instant ([`Observation`]): the kernel build
//!   (banner, SHA-256 of its BTF), each user process's executable and the SHA-256 of its
//!   first code page read through the process's own page tables (a page not present is
//!   recorded as such, never hashed as zeros), each module's name and size.
//! - [`Learner`]: a manifest from one observation (a snapshot) or from an observation and
//!   the tracer's process-start and module-load events over a period (live).
//! - [`attest`]: a snapshot's one-shot [`Attestation`]; [`Enforcer`]: the live check of each
//!   trace event. Both report [`Deviation`]s: what deviated, who (process or module), which
//!   field, the value expected and the value seen; what could not be checked is
//!   [`Unverified`], not silently passed.
#![forbid(unsafe_code)]

mod deviation;
mod enforce;
mod learn;
mod manifest;
mod observe;

pub use deviation::{Deviation, DeviationKind, Subject, Unverified};
pub use enforce::{attest, Attestation, Enforcer};
pub use learn::Learner;
pub use manifest::{
    CodePage, Executable, ExpectedModule, KernelBuild, Manifest, Sha256, FORMAT, MAX_EXECUTABLES,
    MAX_MANIFEST_BYTES, MAX_MODULES, MAX_MODULE_NAME, MAX_PATH, VERSION,
};
pub use observe::{code_page, kernel_build, observe, process_seen, Observation, ProcessSeen};
