//! The alert sinks the subcommands share: `--syslog URL` (repeatable), each resolved and, on
//! TCP, connected when it is made, so an unreachable collector is an error naming the flag
//! and the target before anything is monitored (`docs/alerts.md`).

use xenvmi::alert::syslog::Syslog;
use xenvmi::alert::Sinks;

/// One syslog sink per target, in order; the first that cannot be made is the error.
pub fn syslog(targets: &[String]) -> Result<Sinks, String> {
    let mut sinks = Sinks::new();
    for t in targets {
        let s = Syslog::connect(t).map_err(|e| format!("--syslog {t}: {e}"))?;
        sinks.push(Box::new(s));
    }
    Ok(sinks)
}
