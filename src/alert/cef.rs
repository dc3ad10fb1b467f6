//! An alert as an ArcSight Common Event Format (CEF) record: the payload of the syslog sink,
//! and what QRadar, ArcSight and NetWitness parse without glue.
//!
//! `CEF:0|xenvmi|xenvmi|VERSION|WHAT|NAME|SEVERITY|EXTENSION`. In the header, `\` and `|` are
//! escaped with a backslash; in extension values `\` and `=` are, and line breaks become `\n`
//! and `\r` (the CEF specification's rules). The extension keys used, and which alert field
//! each carries, are listed in `docs/alerts.md`.

use super::{Actor, Alert, SCHEMA_VERSION};
use crate::report::hex;

/// CEF's `Device Vendor` and `Device Product`.
pub const PRODUCT: &str = "xenvmi";

/// Escape a header field: `\` → `\\`, `|` → `\|` (line breaks, not allowed there, become a
/// space).
pub fn escape_header(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => o.push_str("\\\\"),
            '|' => o.push_str("\\|"),
            '\n' | '\r' => o.push(' '),
            c => o.push(c),
        }
    }
    o
}

/// Escape an extension value: `\` → `\\`, `=` → `\=`, LF → `\n`, CR → `\r`.
pub fn escape_value(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => o.push_str("\\\\"),
            '=' => o.push_str("\\="),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            c => o.push(c),
        }
    }
    o
}

/// A human name for an alert kind (`"cr4_smep_smap_clear"` → `"cr4 smep smap clear"`).
fn name(what: &str) -> String {
    what.replace('_', " ")
}

/// The alert as one CEF record (no trailing newline).
pub fn format(alert: &Alert) -> String {
    let mut ext: Vec<(&str, String)> = Vec::new();
    ext.push(("rt", format!("{}", (alert.time.max(0.0) * 1000.0) as u64)));
    ext.push(("act", alert.response.as_str().into()));
    ext.push(("cs1Label", "policy".into()));
    ext.push(("cs1", alert.policy.clone()));
    if let Some(n) = &alert.vm.name {
        ext.push(("dvchost", n.clone()));
    }
    if let Some(u) = &alert.vm.uuid {
        ext.push(("deviceExternalId", u.clone()));
    }
    if let Some(d) = alert.vm.domid {
        ext.push(("cn1Label", "domid".into()));
        ext.push(("cn1", d.to_string()));
    }
    if let Some(v) = alert.vcpu {
        ext.push(("cn2Label", "vcpu".into()));
        ext.push(("cn2", v.to_string()));
    }
    match &alert.actor {
        Actor::Process { pid, comm } => {
            ext.push(("spid", pid.to_string()));
            ext.push(("sproc", comm.clone()));
        }
        Actor::Kernel => ext.push(("sproc", "kernel".into())),
        Actor::Unknown => {}
    }
    let a = &alert.attempt;
    if let Some(t) = &a.target {
        ext.push(("cat", t.clone()));
    }
    if let Some(v) = a.old {
        ext.push(("cs2Label", "old".into()));
        ext.push(("cs2", hex(v)));
    }
    if let Some(v) = a.new {
        ext.push(("cs3Label", "new".into()));
        ext.push(("cs3", hex(v)));
    }
    if let Some(v) = a.address {
        ext.push(("cs4Label", "gpa".into()));
        ext.push(("cs4", hex(v)));
    }
    if let Some(v) = a.virtual_address {
        ext.push(("flexString2Label", "gva".into()));
        ext.push(("flexString2", hex(v)));
    }
    if let Some(s) = &a.symbol {
        ext.push(("cs5Label", "symbol".into()));
        ext.push(("cs5", s.clone()));
    }
    ext.push(("flexString1Label", "rip".into()));
    ext.push((
        "flexString1",
        match &a.rip_symbol {
            Some(s) => format!("{} {s}", hex(a.rip)),
            None => hex(a.rip),
        },
    ));
    ext.push(("cs6Label", "schema".into()));
    ext.push(("cs6", SCHEMA_VERSION.to_string()));
    if !alert.remediation.is_empty() {
        ext.push(("outcome", alert.remediation.join(",")));
    }
    if let Some(c) = &alert.capture {
        ext.push(("filePath", c.clone()));
    }
    if let Some(d) = &alert.detail {
        ext.push(("reason", d.clone()));
    }
    ext.push(("msg", alert.summary()));
    let ext: Vec<String> = ext
        .into_iter()
        .map(|(k, v)| format!("{k}={}", escape_value(&v)))
        .collect();
    format!(
        "CEF:0|{PRODUCT}|{PRODUCT}|{}|{}|{}|{}|{}",
        escape_header(env!("CARGO_PKG_VERSION")),
        escape_header(&alert.what),
        escape_header(&name(&alert.what)),
        alert.severity.min(10),
        ext.join(" ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_follows_the_cef_rules() {
        // The CEF specification's own examples: "detected a \| in message",
        // "This is a \= sign", "\\".
        assert_eq!(escape_header("a|b\\c"), "a\\|b\\\\c");
        assert_eq!(escape_value("x=1\\2\nz\r"), "x\\=1\\\\2\\nz\\r");
        assert_eq!(escape_value("a|b"), "a|b");
    }
}
