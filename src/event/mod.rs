//! Events: the event loop over a backend's vm_event ring, journaled changes and their
//! teardown, owned altp2m views, and the hook manager.
//!
//! - [`session`]: [`Session`](session::Session) enables the ring, runs the event loop and tears
//!   down what it changed; [`journal`] keeps those changes on disk for recovery.
//! - [`view`]: an altp2m view that restores itself on drop.
//! - [`hooks`]: breakpoints by symbol or address over a session.
//! - [`pagein`]: bringing a paged-out user page in with an injected page fault.
//!
//! Each request is decoded once, at the ring, into an [`Event`], and answered with a
//! [`Response`]. Both, and the codec between them and the ring's bytes, are defined in
//! [`crate::vmevent::codec`], below the backends: the simulated domain uses the same codec to
//! produce requests and read responses.

pub mod hooks;
pub mod journal;
pub mod pagein;
pub mod session;
pub mod view;

/// Defined in [`crate::vmevent::codec`], with the codec that reads and writes it on the ring.
pub use crate::vmevent::codec::{Event, EventKind, Response};
