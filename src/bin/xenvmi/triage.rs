//! A Windows triage dump given as IMAGE: no memory to walk, but a record of the crash
//! (`xenvmi::backend::snapshot::TriageDump`, docs/windows.md). `info` reports it, `modules`
//! lists its drivers, `ps` says where the crashing process is reported.

use std::path::{Path, PathBuf};

use xenvmi::backend::snapshot::TriageDump;
use xenvmi::os::windows::triage::crashing_process;
use xenvmi::os::windows::WindowsProfile;
use xenvmi::report;

use crate::Target;

/// The image, when the target is a triage dump file.
pub fn image(t: &Target) -> Option<PathBuf> {
    if t.domain.is_some() {
        return None;
    }
    let image = crate::fixture::image_path(t.image.as_deref()).ok()?;
    TriageDump::sniff(&image).then_some(image)
}

fn open(t: &Target, image: &Path) -> Result<TriageDump, String> {
    if t.btf.is_some() {
        return Err(format!(
            "{}: a Windows triage dump: --btf and --symbols are for Linux guests; a Windows profile is given with --profile",
            image.display()
        ));
    }
    TriageDump::open(image).map_err(|e| e.to_string())
}

/// The whole report: header, bug check, the crashing process (with the profile from
/// `--profile` or the default place), the drivers.
pub fn info(t: &Target, image: &Path, json: bool) -> Result<(), String> {
    let dump = open(t, image)?;
    let profile = t
        .profile
        .as_deref()
        .map(WindowsProfile::from_path)
        .or_else(|| xenvmi::os::default_windows_profiles().map(WindowsProfile::Directory));
    let reading = match &profile {
        Some(p) => crashing_process(&dump, p).map_err(|e| e.to_string()),
        None => Err("no Windows profile (give one with --profile, or put it in the default place) to read the process copy with".to_owned()),
    };
    let reading = reading.as_ref().map_err(|e| e.as_str());
    let name = image.display().to_string();
    if json {
        let out = serde_json::json!({
            "image": name,
            "format": "Windows triage dump",
            "os": "windows",
            "triage": report::windows_triage(&dump, reading),
        });
        outln!("{out}");
    } else {
        crate::OUT
            .with_borrow_mut(|o| o.push_str(&report::windows_triage_text(&name, &dump, reading)));
    }
    warn(&dump);
    Ok(())
}

/// The driver list.
pub fn modules(t: &Target, image: &Path, json: bool, cross_view: bool) -> Result<(), String> {
    if cross_view {
        return Err(format!(
            "{}: a Windows triage dump: --cross-view compares a Linux kernel's records and needs its memory",
            image.display()
        ));
    }
    let dump = open(t, image)?;
    if json {
        let out = serde_json::json!({
            "image": image.display().to_string(),
            "format": "Windows triage dump",
            "os": "windows",
            "drivers": report::windows_triage_drivers(&dump),
        });
        outln!("{out}");
    } else {
        crate::OUT.with_borrow_mut(|o| o.push_str(&report::windows_triage_drivers_text(&dump)));
    }
    warn(&dump);
    Ok(())
}

/// What `ps` says of a triage dump.
pub fn no_processes(image: &Path) -> String {
    format!(
        "{}: a Windows triage dump holds no process list, only the crashing process: `xenvmi info {}` reports it (with its drivers)",
        image.display(),
        image.display()
    )
}

fn warn(dump: &TriageDump) {
    for e in dump.drivers.iter().filter_map(|d| d.as_ref().err()) {
        eprintln!(
            "xenvmi: warning: {}: {}",
            dump.what,
            xenvmi::os::terminal_safe(e)
        );
    }
    if dump.drivers_truncated {
        eprintln!(
            "xenvmi: warning: {}: DriverCount is more than {}: the list was cut",
            dump.what,
            xenvmi::backend::snapshot::MAX_TRIAGE_DRIVERS
        );
    }
}
