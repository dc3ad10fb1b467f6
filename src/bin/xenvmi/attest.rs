//! `attest learn` and `attest enforce`: a manifest of the guest's desired state written from
//! one look at an image or a paused domain, and that look checked against one
//! (`docs/attest.md`, `xenvmi::attest`).

use std::io::Write;
use std::path::Path;

use xenvmi::alert::{AlertSink, Sinks, Vm};
use xenvmi::attest::{self, Learner, Manifest, Subject};
use xenvmi::os::terminal_safe as safe;
use xenvmi::report;

use crate::guest::{self, Want};
use crate::Target;

/// Exit status when deviations were found.
pub const DEVIATED: u8 = 3;

fn observe(t: &Target) -> Result<(guest::Found, attest::Observation), String> {
    let mut f = guest::open(
        t,
        Want {
            attest: true,
            ..Want::default()
        },
    )?;
    let obs = f.observation.take().ok_or("the guest was not observed")?;
    Ok((f, obs))
}

fn target_name(f: &guest::Found) -> String {
    f.image
        .clone()
        .or_else(|| f.domain.as_ref().map(|d| format!("domain {d}")))
        .unwrap_or_default()
}

/// Learn the manifest from one look and write it to `out` (refused if it exists, unless
/// `force`): `out.partial`, then renamed.
pub fn learn(t: &Target, out: &Path, force: bool, json: bool) -> Result<u8, String> {
    if !force && std::fs::symlink_metadata(out).is_ok() {
        return Err(format!(
            "{}: exists; give --force to replace it",
            out.display()
        ));
    }
    let (f, obs) = observe(t)?;
    let learner = Learner::from_observation(&obs);
    let manifest = learner.manifest();
    let mut text = serde_json::to_string_pretty(&manifest.to_json())
        .map_err(|e| format!("{}: {e}", out.display()))?;
    text.push('\n');
    write_new(out, text.as_bytes()).map_err(|e| format!("{}: {e}", out.display()))?;
    if json {
        outln!(
            "{}",
            serde_json::json!({
                "manifest": out.display().to_string(),
                "target": target_name(&f),
                "executables": manifest.executables.len(),
                "modules": manifest.modules.len(),
                "kernel": manifest.kernel.release,
                "warnings": learner.warnings(),
            })
        );
    } else {
        outln!(
            "{}: learned from {}: kernel {}, {} executables, {} modules",
            safe(&out.display().to_string()),
            safe(&target_name(&f)),
            safe(&manifest.kernel.release),
            manifest.executables.len(),
            manifest.modules.len()
        );
    }
    for w in learner.warnings() {
        eprintln!("xenvmi: warning: {}", safe(w));
    }
    Ok(0)
}

/// Write `bytes` to `out` through `out.partial` (created anew, never through a link), then
/// rename: a failed write leaves nothing.
fn write_new(out: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut partial = out.as_os_str().to_owned();
    partial.push(".partial");
    let partial = std::path::PathBuf::from(partial);
    let _ = std::fs::remove_file(&partial);
    let r = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&partial)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()))
        .and_then(|()| std::fs::rename(&partial, out));
    if r.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    r
}

/// Check one look against the manifest at `manifest`; exit status [`DEVIATED`] when
/// anything deviates.
pub fn enforce(t: &Target, manifest_path: &Path, react: &React, json: bool) -> Result<u8, String> {
    // The manifest, the alert targets and the capture file first: a bad one is refused
    // before the guest is touched.
    let manifest = Manifest::load(manifest_path).map_err(|e| e.to_string())?;
    let mut sinks = react.sinks()?;
    if let Some(c) = &react.capture {
        if t.domain.is_none() {
            return Err(format!(
                "--capture {}: a capture is taken of a running domain; give --domain",
                c.display()
            ));
        }
        if std::fs::symlink_metadata(c).is_ok() {
            return Err(format!(
                "{}: exists; the capture is never overwritten",
                c.display()
            ));
        }
    }
    let (f, obs) = observe(t)?;
    let a = attest::attest(&manifest, &obs);
    if !a.deviations.is_empty() && (!sinks.is_empty() || react.capture.is_some()) {
        remediate(t, &a, react, &mut sinks);
    }
    if json {
        let mut j = report::attestation(&a);
        if let Some(o) = j.as_object_mut() {
            o.insert(
                "manifest".into(),
                manifest_path.display().to_string().into(),
            );
            o.insert("target".into(), target_name(&f).into());
        }
        outln!("{j}");
    } else {
        for d in &a.deviations {
            let who = match &d.subject {
                Subject::Process { pid, comm, exe, .. } => format!(
                    "process {pid} ({}) {}",
                    safe(comm),
                    safe(exe.as_deref().unwrap_or("?"))
                ),
                Subject::Module { name, base, .. } => format!("module {} at {base}", safe(name)),
                Subject::Kernel { release } => format!("kernel {}", safe(release)),
            };
            outln!(
                "DEVIATION {:<22} {who}: {} expected {}, seen {}",
                d.kind.name(),
                d.field,
                safe(d.expected.as_deref().unwrap_or("(not in the manifest)")),
                safe(&d.seen)
            );
        }
        for u in &a.unverified {
            let who = match &u.subject {
                Subject::Process { pid, comm, .. } => format!("process {pid} ({})", safe(comm)),
                Subject::Module { name, .. } => format!("module {}", safe(name)),
                Subject::Kernel { release } => format!("kernel {}", safe(release)),
            };
            outln!("unverified {who}: {}", safe(&u.reason));
        }
        outln!(
            "{}: {} against {}: {} deviations, {} unverified; {} processes, {} modules checked",
            safe(&target_name(&f)),
            if a.attested() { "attested" } else { "DEVIATES" },
            safe(&manifest_path.display().to_string()),
            a.deviations.len(),
            a.unverified.len(),
            a.processes_checked,
            a.modules_checked
        );
    }
    for w in &a.warnings {
        eprintln!("xenvmi: warning: {}", safe(w));
    }
    Ok(if a.attested() { 0 } else { DEVIATED })
}

/// What `attest enforce` does on deviation besides reporting: alerts to syslog, and a
/// capture of the domain.
#[derive(Default)]
pub struct React {
    /// Syslog targets (`udp://HOST:PORT`, `tcp://HOST:PORT`): one alert per deviation.
    pub syslog: Vec<String>,
    /// Capture the domain (paused) to this file when it deviates.
    pub capture: Option<std::path::PathBuf>,
}

impl React {
    /// The alert sinks, each resolved (and, on TCP, connected) now: an unreachable target is
    /// an error before anything is looked at.
    fn sinks(&self) -> Result<Sinks, String> {
        crate::sinks::syslog(&self.syslog)
    }
}

/// On deviation: capture the domain (paused, resumed on every path) if asked, then one alert
/// per deviation naming the capture and what was done.
fn remediate(t: &Target, a: &attest::Attestation, react: &React, sinks: &mut Sinks) {
    let mut vm = Vm::default();
    let (mut remediation, mut capture) = (Vec::new(), None);
    if let Some(domain) = &t.domain {
        vm.name = Some(domain.clone()).filter(|d| d.parse::<u32>().is_err());
        match capture_domain(domain, react.capture.as_deref(), &mut vm) {
            Ok(Some(path)) => {
                remediation.push("captured_paused".to_owned());
                capture = Some(path);
            }
            Ok(None) => {}
            Err(e) => {
                eprintln!("xenvmi: warning: {}", safe(&e));
                remediation.push("capture_failed".to_owned());
            }
        }
    }
    for d in &a.deviations {
        let mut alert = d.alert(vm.clone());
        alert.remediation = remediation.clone();
        alert.capture = capture.clone();
        if let Err(e) = sinks.send(&alert) {
            eprintln!(
                "xenvmi: warning: alert not delivered: {}",
                safe(&e.to_string())
            );
        }
    }
}

/// Capture `domain` paused to `out` (when given); fills in the domain id.
#[cfg(feature = "xen")]
fn capture_domain(domain: &str, out: Option<&Path>, vm: &mut Vm) -> Result<Option<String>, String> {
    use xenvmi::backend::VmControl;
    let dom = crate::xen::open(domain)?;
    vm.domid = Some(u32::from(dom.domid().0));
    let Some(out) = out else { return Ok(None) };
    let r = xenvmi::capture::capture_to_new_file(
        &dom,
        out,
        false,
        xenvmi::capture::CaptureOptions {
            pause: Some(&dom as &dyn VmControl),
            progress: None,
        },
    )
    .map_err(|e| format!("domain {domain}: capture to {}: {e}", out.display()))?;
    eprintln!(
        "xenvmi: captured domain {domain} (paused {:.0} ms) to {}",
        r.paused_for.map(|d| d.as_secs_f64() * 1e3).unwrap_or(0.0),
        out.display()
    );
    Ok(Some(out.display().to_string()))
}

#[cfg(not(feature = "xen"))]
fn capture_domain(
    domain: &str,
    _out: Option<&Path>,
    _vm: &mut Vm,
) -> Result<Option<String>, String> {
    Err(crate::xen::unavailable(domain))
}
