//! Events as one line of text for a terminal (the `trace` example's and `xenvmi trace`'s
//! default output): `vcpu V pid P tid T COMM: what happened`. Guest-controlled strings (names,
//! paths, arguments) go through [`terminal_safe`], so a guest cannot send escape sequences to
//! the reader's terminal.

use super::{Part, TraceEvent, What};
use crate::os::linux::syscalls::ArgValue;
use crate::os::terminal_safe;

fn or_why(p: &Part<String>) -> String {
    match p {
        Ok(s) => terminal_safe(s).into_owned(),
        Err(why) => format!("<unreadable: {why}>"),
    }
}

fn arg(v: &ArgValue) -> String {
    match v {
        ArgValue::Int(x) => x.to_string(),
        ArgValue::Uint(x) => x.to_string(),
        ArgValue::Pointer(p) => format!("{p:#x}"),
        ArgValue::Str(s) => format!("\"{}\"", terminal_safe(s)),
        ArgValue::Unreadable { addr, .. } => format!("{addr:#x}<unreadable>"),
    }
}

impl TraceEvent {
    /// The event as one line of text (no newline).
    pub fn to_text(&self) -> String {
        let who = format!(
            "vcpu {} pid {} tid {} {}",
            self.vcpu.0,
            self.pid,
            self.tid,
            terminal_safe(&self.comm)
        );
        let what = match &self.what {
            What::ProcessStart { ppid, exe, argv } => format!(
                "started {} (parent {ppid}) argv {}",
                or_why(exe),
                match argv {
                    Ok(a) => format!(
                        "[{}]",
                        a.iter()
                            .map(|s| format!("\"{}\"", terminal_safe(s)))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    Err(why) => format!("<unreadable: {why}>"),
                }
            ),
            What::ProcessExit { code } | What::ThreadExit { code } => {
                let who = if matches!(self.what, What::ProcessExit { .. }) {
                    "process"
                } else {
                    "thread"
                };
                match (code.status(), code.signal()) {
                    (Some(s), _) => format!("{who} exited with status {s}"),
                    (_, Some(sig)) => format!("{who} killed by signal {sig}"),
                    _ => format!("{who} exited ({:#x})", code.0),
                }
            }
            What::ModuleLoad { module } | What::ModuleUnload { module } => format!(
                "{} module {} at {:#x} ({} bytes)",
                if matches!(self.what, What::ModuleLoad { .. }) {
                    "loads"
                } else {
                    "unloads"
                },
                terminal_safe(&module.name),
                module.base.0,
                module.size
            ),
            What::Syscall { nr, info, args, .. } => match info {
                Some(i) => format!(
                    "{}({})",
                    i.name,
                    i.args
                        .iter()
                        .zip(args)
                        .map(|(d, v)| format!("{}={}", d.name, arg(v)))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                None => format!("syscall {nr}"),
            },
            What::FileOpen {
                path,
                flags,
                result,
                ..
            } => format!(
                "opens {} flags {flags:#o} -> {}",
                or_why(path),
                match result {
                    Some(r) if *r >= 0 => format!("fd {r}"),
                    Some(r) => format!("errno {}", -r),
                    None => "?".to_owned(),
                }
            ),
        };
        format!("{who}: {what}")
    }
}
