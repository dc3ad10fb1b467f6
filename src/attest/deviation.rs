//! A deviation from the manifest: what deviated, who (the process or module), which field,
//! the value expected and the value seen. Everything an alert needs to name it.

use std::time::SystemTime;

use crate::addr::{Gva, VcpuId};

/// What kind of deviation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DeviationKind {
    /// A process runs an executable the manifest does not list.
    UnexpectedExecutable,
    /// A process runs a listed executable whose first code page differs from the manifest's
    /// (its hash, or its offset in the file).
    CodeMismatch,
    /// A module the manifest does not list is loaded.
    UnexpectedModule,
    /// A listed module is loaded with another size.
    ModuleMismatch,
    /// The kernel is another build (banner or BTF).
    KernelBuildChanged,
}

impl DeviationKind {
    /// The name in JSON and messages (`unexpected_executable`, ...).
    pub fn name(self) -> &'static str {
        match self {
            DeviationKind::UnexpectedExecutable => "unexpected_executable",
            DeviationKind::CodeMismatch => "code_mismatch",
            DeviationKind::UnexpectedModule => "unexpected_module",
            DeviationKind::ModuleMismatch => "module_mismatch",
            DeviationKind::KernelBuildChanged => "kernel_build_changed",
        }
    }
}

/// Who deviated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Subject {
    /// A process.
    Process {
        /// Its process id (`tgid`).
        pid: u64,
        /// Its parent's process id.
        ppid: u64,
        /// Its name (`comm`).
        comm: String,
        /// Its executable's path; `None` when it could not be read.
        exe: Option<String>,
    },
    /// A kernel module.
    Module {
        /// Its name.
        name: String,
        /// Base of its core mapping.
        base: Gva,
        /// Its size.
        size: u64,
    },
    /// The kernel itself.
    Kernel {
        /// Its release (`uname -r`) as seen.
        release: String,
    },
}

/// One deviation from the manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deviation {
    /// What kind.
    pub kind: DeviationKind,
    /// Who.
    pub subject: Subject,
    /// The manifest field that differs (`path`, `code_page.sha256`, `code_page.file_offset`,
    /// `name`, `size`, `kernel.banner`, `kernel.btf_sha256`).
    pub field: &'static str,
    /// The manifest's value (`None`: the manifest has no entry).
    pub expected: Option<String>,
    /// The value seen in the guest.
    pub seen: String,
    /// The vCPU of the event that showed it (live); `None` on a snapshot.
    pub vcpu: Option<VcpuId>,
    /// When it was seen (host time: a snapshot's examination, or the event's decoding).
    pub time: SystemTime,
}

/// A manifest entry that could not be checked: the guest did not show enough (a code page
/// not present in memory, an executable path that could not be read). Not a deviation; it
/// is reported so that nothing unchecked passes unnoticed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unverified {
    /// Who.
    pub subject: Subject,
    /// Why it could not be checked.
    pub reason: String,
}
