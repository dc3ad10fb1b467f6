//! # xenvmi
//!
//! Agentless virtual machine introspection for Xen guests, in Rust with a C ABI.
//!
//! The crate is built in layers, each depending only on the ones below it:
//!
//! | layer | module | what |
//! |---|---|---|
//! | reports | [`report`] | JSON of what the OS and capture layers found, one schema for every front end (`docs/cli.md`) |
//! | tracing | [`trace`] | semantic events from hooks: process start, module load/unload, thread exit |
//! | events | [`event`] | the event loop and its teardown, journal, owned views, hooks |
//! | capture | [`capture`] | the whole guest (memory and every vCPU's registers) as an ELF core, paused or live |
//! | OS | [`os`] | Linux and Windows kernels: KASLR, processes, modules (drivers, DLLs), CR3 → process; PE images |
//! | memory | [`mem`] | x86-64 page walks (4/5-level, large pages), translation cache, virtual reads |
//! | backend | [`backend`] | capability traits; snapshots (raw, QEMU ELF, LiME, Windows crash dump); the simulated domain; Xen (feature `xen`) |
//! | wire format | [`vmevent`] | vm_event v7: offsets, the shared ring, the request/response codec (`Event`, `Response`) |
//! | basics | [`addr`], [`error`], [`regs`] | typed addresses, the error type, vCPU registers |
//! | C ABI | [`capi`] | `include/xenvmi.h`: handles, result codes, callbacks for C and C++ (`docs/ffi.md`) |
//!
//! Guest memory is attacker-controlled: every walk is bounded, every read checked, and no
//! input makes the library panic or loop forever (see `docs/security.md`).
//!
//! ```no_run
//! use xenvmi::backend::snapshot::Snapshot;
//! use xenvmi::mem::GuestMemory;
//! use xenvmi::os::linux::{Linux, ProfileSource};
//!
//! let snap = Snapshot::open("vmcore.elf")?;
//! let regs = snap.all_registers().to_vec(); // vCPU registers, if the image has them
//! let mem = GuestMemory::new(snap);
//! let linux = Linux::discover(&mem, &regs, ProfileSource::InGuest)?;
//! for task in linux.processes(&mem) {
//!     let task = task?;
//!     println!("{:>6} {}", task.pid, task.name);
//! }
//! # Ok::<(), xenvmi::Error>(())
//! ```
#![deny(missing_docs)]
#![deny(unsafe_code)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod addr;
pub mod alert;
pub mod attest;
pub mod backend;
pub(crate) mod bytes;
pub(crate) mod cachedir;
pub mod capi;
pub mod capture;
pub mod error;
pub mod event;
pub(crate) mod file;
pub(crate) mod inthash;
pub mod mem;
pub mod os;
pub mod policy;
pub mod progress;
pub mod regs;
pub mod report;
pub mod trace;
pub mod vmevent;

pub use addr::{DomId, Gfn, Gpa, Gva, VcpuId, ViewId};
pub use error::{Error, Result};
pub use regs::Registers;
