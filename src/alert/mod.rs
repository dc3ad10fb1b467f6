//! Alerts: what a protection saw and did, in one versioned schema ([`SCHEMA_VERSION`],
//! `docs/alerts.md`), delivered to sinks ([`AlertSink`]): JSON lines to any writer
//! ([`JsonLines`]), syslog RFC 5424 with a CEF payload over UDP or TCP ([`syslog::Syslog`]),
//! or a callback ([`Callback`]).
//!
//! An alert names the VM, the vCPU, the process running there, what was attempted (old and
//! new value, or the written address and its symbol, and the writer's code address), the
//! response given and the policy that decided. Strings read from the guest (a process name,
//! a symbol) are kept as they are; each encoder escapes them for its format.

pub mod cef;
pub mod sink;
pub mod syslog;
mod time;

use serde_json::{json, Map, Value};

pub use sink::{AlertSink, Callback, JsonLines, Sinks};
pub use time::rfc3339;

use crate::report::hex;

/// The version of the alert schema (`"schema"` in the JSON, `cs6` in CEF). Raised when a
/// field changes meaning or disappears; new optional fields do not raise it.
pub const SCHEMA_VERSION: u32 = 1;

/// The virtual machine an alert is about, as far as it is known.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Vm {
    /// The domain's name (`xl list`).
    pub name: Option<String>,
    /// The domain's UUID.
    pub uuid: Option<String>,
    /// The domain id.
    pub domid: Option<u32>,
}

/// Who was running on the vCPU: the kernel's current task
/// ([`Linux::current_thread`](crate::os::linux::Linux::current_thread)), or, when that cannot
/// be read, the owner of its CR3 ([`Cr3Resolver`](crate::os::linux::Cr3Resolver)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Actor {
    /// A process.
    Process {
        /// Its pid.
        pid: u64,
        /// Its `comm`.
        comm: String,
    },
    /// The kernel's own page tables (a kernel thread or the idle task).
    Kernel,
    /// No process had this address space when the task list was last walked.
    Unknown,
}

/// What was attempted. Every field is optional: a register write has `old` and `new`, a
/// memory write has `address` (guest-physical) and usually `symbol`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attempt {
    /// The register, MSR or table involved (`"cr4"`, `"msr_lstar"`, `"idt"`).
    pub target: Option<String>,
    /// The value before.
    pub old: Option<u64>,
    /// The value asked for.
    pub new: Option<u64>,
    /// The guest-physical address written.
    pub address: Option<u64>,
    /// The kernel virtual address that `address` is (where the policy knows it).
    pub virtual_address: Option<u64>,
    /// `address` as `symbol+offset`.
    pub symbol: Option<String>,
    /// The writer's instruction pointer.
    pub rip: u64,
    /// `rip` as `symbol+offset` (in-guest kallsyms), where it resolves.
    pub rip_symbol: Option<String>,
}

/// What was done about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Response {
    /// The write was refused (DENY, or emulated with the write discarded).
    Denied,
    /// The write was let through and reported.
    Allowed,
    /// Nothing could be refused (e.g. a descriptor-table load, a cross-view finding): reported.
    Reported,
}

impl Response {
    /// `"denied"`, `"allowed"` or `"reported"` (`"action"` in the JSON, `act` in CEF).
    pub fn as_str(self) -> &'static str {
        match self {
            Response::Denied => "denied",
            Response::Allowed => "allowed",
            Response::Reported => "reported",
        }
    }
}

/// One alert (see the module documentation and `docs/alerts.md`).
#[derive(Clone, Debug, PartialEq)]
pub struct Alert {
    /// Seconds since the Unix epoch.
    pub time: f64,
    /// The VM.
    pub vm: Vm,
    /// The vCPU the event happened on (`None` for findings that are not an event).
    pub vcpu: Option<u32>,
    /// Who ran there.
    pub actor: Actor,
    /// What happened, a stable identifier (`"cr4_smep_smap_clear"`, `"kernel_text_write"`).
    pub what: String,
    /// The policy that decided (its name in [`crate::policy`]).
    pub policy: String,
    /// Severity on CEF's scale, 0 (lowest) to 10.
    pub severity: u8,
    /// What was attempted.
    pub attempt: Attempt,
    /// The response given.
    pub response: Response,
    /// Further remediation carried out, in order (`"paused"`, `"captured"`, `"resumed"`).
    pub remediation: Vec<String>,
    /// The memory capture written for this alert, if any.
    pub capture: Option<String>,
    /// What deviated, in words, for findings that are not a register or memory write (an
    /// attestation's `path /bin/xv-gamma: not in the manifest`); `None` for the policies'
    /// alerts.
    pub detail: Option<String>,
}

impl Alert {
    /// The alert as one JSON object (the schema of `docs/alerts.md`). Addresses and values
    /// are `"0x…"` strings, because JSON numbers lose precision above 2^53.
    pub fn to_json(&self) -> Value {
        let mut o = Map::new();
        o.insert("schema".into(), json!(SCHEMA_VERSION));
        o.insert("time".into(), json!(self.time));
        o.insert(
            "vm".into(),
            json!({"name": self.vm.name, "uuid": self.vm.uuid, "domid": self.vm.domid}),
        );
        o.insert("vcpu".into(), json!(self.vcpu));
        o.insert("what".into(), json!(self.what));
        o.insert("policy".into(), json!(self.policy));
        o.insert("severity".into(), json!(self.severity));
        o.insert("rip".into(), json!(hex(self.attempt.rip)));
        o.insert("rip_symbol".into(), json!(self.attempt.rip_symbol));
        o.insert(
            "process".into(),
            match &self.actor {
                Actor::Process { pid, comm } => json!({"pid": pid, "comm": comm}),
                Actor::Kernel => json!("kernel"),
                Actor::Unknown => Value::Null,
            },
        );
        o.insert("action".into(), json!(self.response.as_str()));
        let a = &self.attempt;
        let opt_hex = |v: Option<u64>| v.map(hex);
        if let Some(t) = &a.target {
            o.insert("target".into(), json!(t));
        }
        if a.old.is_some() || a.new.is_some() {
            o.insert("old".into(), json!(opt_hex(a.old)));
            o.insert("new".into(), json!(opt_hex(a.new)));
        }
        if let Some(gpa) = a.address {
            o.insert("gpa".into(), json!(hex(gpa)));
            o.insert("gva".into(), json!(opt_hex(a.virtual_address)));
            o.insert("symbol".into(), json!(a.symbol));
        } else if let Some(va) = a.virtual_address {
            // A kernel object that is not a write target (a hidden module's `struct module`).
            o.insert("gva".into(), json!(hex(va)));
        }
        o.insert("remediation".into(), json!(self.remediation));
        o.insert("capture".into(), json!(self.capture));
        if let Some(d) = &self.detail {
            o.insert("detail".into(), json!(d));
        }
        Value::Object(o)
    }

    /// A one-line summary for people (CEF `msg`): `"cr4 0x370678 -> 0x70678 by insmod (pid
    /// 812): denied"`.
    pub fn summary(&self) -> String {
        let a = &self.attempt;
        let what = match (&a.target, a.old, a.new, a.address) {
            _ if self.detail.is_some() => self.detail.clone().unwrap_or_default(),
            (t, Some(old), Some(new), _) => format!(
                "{} {old:#x} -> {new:#x}",
                t.as_deref().unwrap_or(&self.what)
            ),
            (_, _, _, Some(gpa)) => match &a.symbol {
                Some(s) => format!("write to {gpa:#x} ({s})"),
                None => format!("write to {gpa:#x}"),
            },
            (t, ..) => t.clone().unwrap_or_else(|| self.what.clone()),
        };
        let who = match &self.actor {
            Actor::Process { pid, comm } => format!("{comm} (pid {pid})"),
            Actor::Kernel => "the kernel".into(),
            Actor::Unknown => "an unknown process".into(),
        };
        format!("{what} by {who}: {}", self.response.as_str())
    }
}
