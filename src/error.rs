//! The one error type of the crate.
//!
//! Every variant carries what a user needs to act: the file, the address, the structure or the
//! limit involved. Guest data is never trusted, so many of these describe a guest that is corrupt
//! or hostile rather than a bug in the caller.

use std::path::PathBuf;

use crate::addr::{Gpa, Gva, VcpuId, ViewId};

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in xenvmi.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system call on a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error (with its errno).
        #[source]
        source: std::io::Error,
    },

    /// A memory image or profile file is not in the format it claims to be, or is truncated.
    #[error("{format} {what} is malformed: {reason}")]
    Malformed {
        /// The format being parsed (e.g. "QEMU ELF core", "BTF", "ISF").
        format: &'static str,
        /// What was being parsed (a file name, "header", "program header 3").
        what: String,
        /// Why it was rejected.
        reason: String,
    },

    /// A memory image is well formed but of a kind xenvmi does not read: a Windows triage or
    /// header-only crash dump, say. Unlike [`Error::Malformed`], nothing is wrong with the
    /// file; the reason names the kind (`unsupported DumpType 4 (triage (minidump)): ...`).
    #[error("{format} {what}: {reason}")]
    UnsupportedImage {
        /// The format being parsed ("Windows crash dump").
        format: &'static str,
        /// The file (or other input) involved.
        what: String,
        /// What kind it is and what xenvmi would need instead.
        reason: String,
    },

    /// A guest-physical range is not backed by the image or the domain.
    #[error("guest-physical range {gpa}+{len:#x} is not backed by {backend} (highest backed address {max})")]
    PhysicalUnmapped {
        /// Start of the range that was requested.
        gpa: Gpa,
        /// Its length in bytes.
        len: usize,
        /// The backend that was asked.
        backend: &'static str,
        /// The highest backed guest-physical address, for orientation.
        max: Gpa,
    },

    /// A virtual address is not mapped in the address space used to read it.
    #[error("virtual address {va} is not mapped in address space {root} (no present entry at page-table level {level}, entry {entry:#x})")]
    PageNotPresent {
        /// The address that was translated.
        va: Gva,
        /// The page-table root (CR3 without flag bits) used.
        root: Gpa,
        /// The paging level (5..=1, 1 being the page table) whose entry was not present.
        level: u8,
        /// The raw entry found there.
        entry: u64,
    },

    /// A virtual address is not canonical for the paging mode in use.
    #[error("virtual address {va} is not canonical for {bits}-bit virtual addresses")]
    NonCanonical {
        /// The address.
        va: Gva,
        /// Virtual-address width of the paging mode (48 or 57).
        bits: u32,
    },

    /// Address arithmetic on guest-controlled values overflowed.
    #[error("address arithmetic overflowed while computing {0}")]
    Overflow(&'static str),

    /// The backend cannot do what was asked (a snapshot cannot pause, a core without notes has no
    /// registers, ...).
    #[error("the {backend} backend does not support {capability}")]
    Unsupported {
        /// The backend's name.
        backend: &'static str,
        /// What was asked of it.
        capability: &'static str,
    },

    /// A session method was called from inside its own event handler where that cannot work
    /// (tearing down or running the loop again): the handler should ask the loop to stop.
    #[error("{0} cannot be called from inside the session's event handler; call EventContext::stop instead")]
    InHandler(&'static str),

    /// A call into a hypervisor backend failed (or its libraries could not be loaded).
    #[error("{backend}: {operation}: {reason}")]
    Backend {
        /// The backend ("Xen").
        backend: &'static str,
        /// What was attempted (`xc_interface_open`, "loading libxenctrl.so.4.17", ...).
        operation: String,
        /// Why it failed: errno and its meaning, and what to do about it.
        reason: String,
    },

    /// A vCPU index is out of range.
    #[error("vCPU {vcpu} does not exist ({count} vCPUs)")]
    NoSuchVcpu {
        /// The requested vCPU.
        vcpu: VcpuId,
        /// How many there are.
        count: u32,
    },

    /// An altp2m view a session was asked to act on that it did not create, or has destroyed
    /// already ([`Session::destroy_view`](crate::event::session::Session::destroy_view)).
    #[error("altp2m view {view} was not created by this session, or was destroyed already")]
    UnknownView {
        /// The view asked for.
        view: ViewId,
    },

    /// A session refused to destroy an altp2m view: view 0 (the host view, which always
    /// exists), or the view its vCPUs were last switched to. Nothing was changed.
    #[error("altp2m view {view} cannot be destroyed: {reason}")]
    ViewRefused {
        /// The view asked for.
        view: ViewId,
        /// Why, and what to do instead.
        reason: &'static str,
    },

    /// A profile (ISF, BTF, symbol file) lacks a symbol the walk needs.
    #[error("symbol `{symbol}` is not in the {source_name} symbol table{hint}")]
    MissingSymbol {
        /// The missing symbol.
        symbol: String,
        /// Where symbols were taken from.
        source_name: String,
        /// Extra advice (empty or starting with "; ").
        hint: String,
    },

    /// A profile lacks a structure or a field the walk needs.
    #[error("type information from {source_name} has no `{type_name}.{field}`{hint}")]
    MissingField {
        /// The structure.
        type_name: String,
        /// The field (empty when the structure itself is missing).
        field: String,
        /// Where types were taken from.
        source_name: String,
        /// Extra advice (empty or starting with "; ").
        hint: String,
    },

    /// The guest's operating system could not be identified or located in memory.
    #[error("could not find a {os} kernel in {image}: {reason}")]
    OsNotFound {
        /// The OS that was looked for.
        os: &'static str,
        /// The image or domain searched.
        image: String,
        /// What was tried and failed.
        reason: String,
    },

    /// A walk over a guest data structure exceeded its bound or looped.
    #[error("walk of {what} stopped at {addr}: {reason}")]
    WalkAborted {
        /// The structure walked (e.g. "task list").
        what: &'static str,
        /// Where the walk was when it stopped.
        addr: Gva,
        /// Cycle, step limit, or corrupt link.
        reason: String,
    },

    /// An event handler panicked. Its event was answered (the vCPU resumed) and the session
    /// was torn down before this error was returned.
    #[error(
        "the event handler panicked ({message}); the event was answered and the session torn down"
    )]
    HandlerPanicked {
        /// The panic message.
        message: String,
    },

    /// An event handler returned an error. Its event was answered safely (the vCPU resumed
    /// with nothing changed) and the session was torn down before this error was returned;
    /// the handler's own error is the source (`downcast_ref` gets it back).
    #[error("the event handler failed ({0}); the event was answered and the session torn down")]
    Handler(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),

    /// A session journal already exists for this target: another monitor is attached, or one
    /// died without tearing down.
    #[error(
        "session journal {path} belongs to process {pid}, which {}",
        if *alive { "is still running: stop it first" } else { "is gone without tearing down: run recovery (Session::recover, or the example's --recover) before attaching" }
    )]
    JournalInUse {
        /// The journal file.
        path: PathBuf,
        /// The process that wrote it.
        pid: u32,
        /// Whether that process is still running.
        alive: bool,
    },

    /// Recovery refused a session journal: it is not a file this process may trust (its type,
    /// owner, mode or directory), or it was written for another domain or another boot of the
    /// host. `RecoverOptions::ignore_binding` overrides the second kind only.
    #[error("session journal {path} refused: {reason}")]
    JournalRefused {
        /// The journal file.
        path: PathBuf,
        /// Why.
        reason: String,
    },

    /// A configuration given to the library is wrong or cannot be carried out (an unknown
    /// policy name, an option out of range, an alert target that cannot be reached). Raised
    /// before anything is changed in the guest.
    #[error("{what}: {reason}")]
    Config {
        /// What was being configured (`policy "cr9"`, `syslog target "tcp://..."`).
        what: String,
        /// What is wrong with it.
        reason: String,
    },

    /// Guest data that was read is inconsistent (a corrupt or hostile guest).
    #[error("corrupt guest data in {what} at {addr}: {reason}")]
    Corrupt {
        /// What was being decoded.
        what: &'static str,
        /// Where.
        addr: Gva,
        /// What is wrong with it.
        reason: String,
    },
}

impl Error {
    /// Build an [`Error::Io`].
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// Build an [`Error::Malformed`].
    pub fn malformed(
        format: &'static str,
        what: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Error::Malformed {
            format,
            what: what.into(),
            reason: reason.into(),
        }
    }

    /// Whether the error says that an address is simply not mapped or not backed (a normal
    /// outcome for guest memory, as opposed to corrupt data or an unsupported operation).
    pub fn is_not_mapped(&self) -> bool {
        matches!(
            self,
            Error::PageNotPresent { .. }
                | Error::PhysicalUnmapped { .. }
                | Error::NonCanonical { .. }
        )
    }
}
