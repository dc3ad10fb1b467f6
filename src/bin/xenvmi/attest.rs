//! `attest learn` and `attest enforce`: a manifest of the guest's desired state written from
//! one look at an image or a paused domain, and that look checked against one
//! (`docs/attest.md`, `xenvmi::attest`).

use std::io::Write;
use std::path::Path;

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
pub fn enforce(t: &Target, manifest_path: &Path, json: bool) -> Result<u8, String> {
    // The manifest first: a bad one is refused before the guest is touched.
    let manifest = Manifest::load(manifest_path).map_err(|e| e.to_string())?;
    let (f, obs) = observe(t)?;
    let a = attest::attest(&manifest, &obs);
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
