//! `recover`: undo what a killed monitor left on a domain, from its journal
//! (`Session::recover`, `docs/events.md`).

use std::path::Path;

#[cfg(feature = "xen")]
pub fn run(domain: &str, journal: Option<&Path>, json: bool) -> Result<(), String> {
    use xenvmi::backend::xen::XenDomain;
    use xenvmi::event::journal;
    use xenvmi::event::session::Session;
    let dom = crate::xen::open(domain)?;
    let path = journal
        .map(Path::to_path_buf)
        .unwrap_or_else(|| journal::default_path(&format!("xen-domain-{}", dom.domid().0)));
    let r =
        Session::<XenDomain>::recover(&dom, &path).map_err(|e| format!("domain {domain}: {e}"))?;
    let shown = path.display();
    if json {
        let out = match &r {
            Some(r) => serde_json::json!({
                "domain": domain, "journal": shown.to_string(), "recovered": true,
                "owner_pid": r.owner.pid, "changes": r.changes,
                "ring_was_enabled": r.ring_was_enabled, "vcpus_released": r.vcpus_released,
                "warnings": r.warnings,
            }),
            None => serde_json::json!({
                "domain": domain, "journal": shown.to_string(), "recovered": false,
            }),
        };
        outln!("{out}");
        return Ok(());
    }
    match r {
        Some(r) => {
            outln!(
                "domain {domain}: recovered from {shown} (monitor pid {}): {} changes undone, \
                 ring {}, {} vCPUs released",
                r.owner.pid,
                r.changes,
                if r.ring_was_enabled {
                    "was enabled and is disabled"
                } else {
                    "was off"
                },
                r.vcpus_released
            );
            for w in &r.warnings {
                outln!("  warning: {}", xenvmi::os::terminal_safe(w));
            }
        }
        None => outln!("domain {domain}: no journal at {shown}: nothing to recover"),
    }
    Ok(())
}

#[cfg(not(feature = "xen"))]
pub fn run(domain: &str, _journal: Option<&Path>, _json: bool) -> Result<(), String> {
    Err(crate::xen::unavailable(domain))
}
