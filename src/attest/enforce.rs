//! Enforce: compare what the guest runs with the manifest. On a snapshot, [`attest`] over
//! one [`Observation`]; live, an [`Enforcer`] checks each process start and module load of
//! the tracer ([`crate::trace`]).

use std::time::SystemTime;

use super::deviation::{Deviation, DeviationKind, Subject, Unverified};
use super::manifest::{KernelBuild, Manifest};
use super::observe::{self, Observation, ProcessSeen};
use crate::addr::VcpuId;
use crate::backend::PhysicalMemory;
use crate::mem::GuestMemory;
use crate::os::linux::Linux;
use crate::os::Module;
use crate::trace::{TraceEvent, What};

/// The outcome of an attestation: deviations, and what could not be checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attestation {
    /// Every deviation found, kernel first, then processes and modules in list order.
    pub deviations: Vec<Deviation>,
    /// What could not be checked, and why.
    pub unverified: Vec<Unverified>,
    /// User processes examined.
    pub processes_checked: usize,
    /// Modules examined.
    pub modules_checked: usize,
    /// Elements of a walk that could not be read (the walk went on).
    pub warnings: Vec<String>,
}

impl Attestation {
    /// No deviation was found.
    pub fn attested(&self) -> bool {
        self.deviations.is_empty()
    }

    /// Add `other`'s findings to these.
    pub fn extend(&mut self, other: Attestation) {
        self.deviations.extend(other.deviations);
        self.unverified.extend(other.unverified);
        self.processes_checked += other.processes_checked;
        self.modules_checked += other.modules_checked;
        self.warnings.extend(other.warnings);
    }
}

/// Where a check's findings came from: a vCPU's event (live) or none (a snapshot), and when.
#[derive(Clone, Copy, Debug)]
struct Seen {
    vcpu: Option<VcpuId>,
    time: SystemTime,
}

/// Attest one observation of a guest against `manifest` (the one-shot attestation of a
/// snapshot, or of a paused domain).
pub fn attest(manifest: &Manifest, obs: &Observation) -> Attestation {
    let at = Seen {
        vcpu: None,
        time: SystemTime::now(),
    };
    let mut out = Attestation {
        warnings: obs.warnings.clone(),
        ..Attestation::default()
    };
    out.deviations
        .extend(kernel_deviations(manifest, &obs.kernel, at));
    for p in &obs.processes {
        out.extend(check_process(manifest, p, at));
    }
    for m in &obs.modules {
        out.extend(check_module(manifest, m, at));
    }
    out
}

/// The ways `seen` differs from the manifest's kernel build.
fn kernel_deviations(manifest: &Manifest, seen: &KernelBuild, at: Seen) -> Vec<Deviation> {
    let want = &manifest.kernel;
    let dev = |field, expected: String, seen_v: String| Deviation {
        kind: DeviationKind::KernelBuildChanged,
        subject: Subject::Kernel {
            release: seen.release.clone(),
        },
        field,
        expected: Some(expected),
        seen: seen_v,
        vcpu: at.vcpu,
        time: at.time,
    };
    let mut out = Vec::new();
    if want.banner != seen.banner {
        out.push(dev(
            "kernel.banner",
            want.banner.clone(),
            seen.banner.clone(),
        ));
    }
    if want.btf_sha256 != seen.btf_sha256 {
        let show = |h: Option<super::manifest::Sha256>| {
            h.map_or_else(
                || "none (no readable .BTF section)".to_owned(),
                |h| h.to_hex(),
            )
        };
        out.push(dev(
            "kernel.btf_sha256",
            show(want.btf_sha256),
            show(seen.btf_sha256),
        ));
    }
    out
}

fn check_process(manifest: &Manifest, p: &ProcessSeen, at: Seen) -> Attestation {
    let subject = Subject::Process {
        pid: p.process.pid,
        ppid: p.process.ppid,
        comm: p.process.name.clone(),
        exe: p.exe.as_ref().ok().cloned(),
    };
    let mut out = Attestation {
        processes_checked: 1,
        ..Attestation::default()
    };
    let exe = match &p.exe {
        Ok(exe) => exe,
        Err(why) => {
            out.unverified.push(Unverified {
                subject,
                reason: format!("executable path unreadable: {why}"),
            });
            return out;
        }
    };
    let Some(want) = manifest.executables.get(exe) else {
        out.deviations.push(Deviation {
            kind: DeviationKind::UnexpectedExecutable,
            subject,
            field: "path",
            expected: None,
            seen: exe.clone(),
            vcpu: at.vcpu,
            time: at.time,
        });
        return out;
    };
    let Some(want_page) = want.code_page else {
        return out;
    };
    let Some(want_hash) = want_page.sha256 else {
        out.unverified.push(Unverified {
            subject,
            reason: "the manifest has no hash of its code page (not present when learned)".into(),
        });
        return out;
    };
    let seen_page = match &p.code_page {
        Ok(Some(c)) => c,
        Ok(None) => {
            out.unverified.push(Unverified {
                subject,
                reason: "no executable mapping of its file in its memory map".into(),
            });
            return out;
        }
        Err(why) => {
            out.unverified.push(Unverified {
                subject,
                reason: format!("code page unreadable: {why}"),
            });
            return out;
        }
    };
    if seen_page.file_offset != want_page.file_offset {
        out.deviations.push(Deviation {
            kind: DeviationKind::CodeMismatch,
            subject,
            field: "code_page.file_offset",
            expected: Some(format!("{:#x}", want_page.file_offset)),
            seen: format!("{:#x}", seen_page.file_offset),
            vcpu: at.vcpu,
            time: at.time,
        });
        return out;
    }
    match seen_page.sha256 {
        None => out.unverified.push(Unverified {
            subject,
            reason: format!(
                "its code page (file offset {:#x}) is not present in memory",
                seen_page.file_offset
            ),
        }),
        Some(h) if h != want_hash => out.deviations.push(Deviation {
            kind: DeviationKind::CodeMismatch,
            subject,
            field: "code_page.sha256",
            expected: Some(want_hash.to_hex()),
            seen: h.to_hex(),
            vcpu: at.vcpu,
            time: at.time,
        }),
        Some(_) => {}
    }
    out
}

fn check_module(manifest: &Manifest, m: &Module, at: Seen) -> Attestation {
    let subject = Subject::Module {
        name: m.name.clone(),
        base: m.base,
        size: m.size,
    };
    let mut out = Attestation {
        modules_checked: 1,
        ..Attestation::default()
    };
    match manifest.modules.get(&m.name) {
        None => out.deviations.push(Deviation {
            kind: DeviationKind::UnexpectedModule,
            subject,
            field: "name",
            expected: None,
            seen: m.name.clone(),
            vcpu: at.vcpu,
            time: at.time,
        }),
        Some(want) if want.size != m.size => out.deviations.push(Deviation {
            kind: DeviationKind::ModuleMismatch,
            subject,
            field: "size",
            expected: Some(want.size.to_string()),
            seen: m.size.to_string(),
            vcpu: at.vcpu,
            time: at.time,
        }),
        Some(_) => {}
    }
    out
}

/// Live enforcement: each process start and module load the tracer reports is checked
/// against the manifest as it happens (`docs/attest.md` shows the loop).
#[derive(Clone, Debug)]
pub struct Enforcer {
    manifest: Manifest,
}

impl Enforcer {
    /// Enforce `manifest`.
    pub fn new(manifest: Manifest) -> Self {
        Enforcer { manifest }
    }

    /// The manifest enforced.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Check the running kernel's build (when monitoring starts).
    pub fn check_kernel<B: PhysicalMemory>(
        &self,
        mem: &GuestMemory<B>,
        linux: &Linux,
    ) -> Vec<Deviation> {
        let at = Seen {
            vcpu: None,
            time: SystemTime::now(),
        };
        kernel_deviations(&self.manifest, &observe::kernel_build(mem, linux), at)
    }

    /// Check one trace event: a `process_start` (its executable, and its code page when the
    /// manifest has a hash and the page is present), a `module_load` (its name and size).
    /// Other events find nothing. `mem` must show the guest as it is at the event (the
    /// guest paused at it, in the tracer's handler).
    pub fn check_event<B: PhysicalMemory>(
        &self,
        mem: &GuestMemory<B>,
        linux: &Linux,
        e: &TraceEvent,
    ) -> Attestation {
        let at = Seen {
            vcpu: Some(e.vcpu),
            time: e.time,
        };
        match &e.what {
            What::ProcessStart { ppid, exe, .. } => {
                let seen = started_process(mem, linux, &self.manifest, e.pid, *ppid, &e.comm, exe);
                check_process(&self.manifest, &seen, at)
            }
            What::ModuleLoad { module } => check_module(&self.manifest, module, at),
            _ => Attestation::default(),
        }
    }
}

/// A started process as [`check_process`] takes it. Its code page is read only when the
/// manifest has a hash to compare it with (it walks the task list to find the process).
fn started_process<B: PhysicalMemory>(
    mem: &GuestMemory<B>,
    linux: &Linux,
    manifest: &Manifest,
    pid: u64,
    ppid: u64,
    comm: &str,
    exe: &crate::trace::Part<String>,
) -> ProcessSeen {
    let hashed = exe
        .as_ref()
        .ok()
        .and_then(|x| manifest.executables.get(x))
        .and_then(|x| x.code_page)
        .is_some_and(|c| c.sha256.is_some());
    let found = if hashed {
        linux
            .processes(mem)
            .filter_map(|p| p.ok())
            .find(|p| p.pid == pid && p.tgid == pid)
    } else {
        None
    };
    let process = found.clone().unwrap_or(crate::os::Process {
        pid,
        tgid: pid,
        ppid,
        name: comm.to_owned(),
        kernel_thread: false,
        dtb: None,
        user_dtb: None,
        object: crate::addr::Gva(0),
    });
    let code_page = match (&found, exe) {
        (Some(p), Ok(x)) => observe::code_page(mem, linux, p, x).map_err(|e| e.to_string()),
        (None, _) if hashed => Err(format!("process {pid} not found in the task list")),
        _ => Ok(None),
    };
    ProcessSeen {
        process,
        exe: exe.clone(),
        code_page,
    }
}
