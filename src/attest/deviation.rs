//! A deviation from the manifest: what deviated, who (the process or module), which field,
//! the value expected and the value seen. Everything an alert needs to name it.

use std::time::SystemTime;

use crate::addr::{Gva, VcpuId};
use crate::alert::{Actor, Alert, Attempt, Response, Vm};

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

impl DeviationKind {
    /// Severity on CEF's scale (0–10) of an alert for this kind: another kernel build is the
    /// gravest, then changed code, then something unlisted running.
    pub fn severity(self) -> u8 {
        match self {
            DeviationKind::KernelBuildChanged => 9,
            DeviationKind::CodeMismatch => 8,
            DeviationKind::UnexpectedModule | DeviationKind::ModuleMismatch => 7,
            DeviationKind::UnexpectedExecutable => 6,
        }
    }
}

impl Deviation {
    /// The deviation as an alert of the documented schema (`docs/alerts.md`): `what` is the
    /// kind (`unexpected_executable`, ...), `policy` is `attest`, the response `reported`
    /// (an attestation refuses nothing), `target` the manifest field, and `detail` says
    /// what was expected and seen. `remediation` and `capture` are left for the caller, which
    /// carries them out.
    pub fn alert(&self, vm: Vm) -> Alert {
        let (actor, who) = match &self.subject {
            Subject::Process { pid, comm, .. } => (
                Actor::Process {
                    pid: *pid,
                    comm: comm.clone(),
                },
                None,
            ),
            Subject::Module { name, .. } => (Actor::Kernel, Some(format!("module {name}"))),
            Subject::Kernel { release } => (Actor::Kernel, Some(format!("kernel {release}"))),
        };
        let expected = match &self.expected {
            Some(e) => format!("expected {e}"),
            None => "not in the manifest".to_owned(),
        };
        let detail = match who {
            Some(who) => format!("{who}: {} {}: {expected}", self.field, self.seen),
            None => format!("{} {}: {expected}", self.field, self.seen),
        };
        let time = self
            .time
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        Alert {
            time,
            vm,
            vcpu: self.vcpu.map(|v| v.0),
            actor,
            what: self.kind.name().to_owned(),
            policy: "attest".to_owned(),
            severity: self.kind.severity(),
            attempt: Attempt {
                target: Some(self.field.to_owned()),
                ..Attempt::default()
            },
            response: Response::Reported,
            remediation: Vec::new(),
            capture: None,
            detail: Some(detail),
        }
    }
}
