//! Events as JSON objects (one per line in the `trace` example's `--json` output; the C
//! ABI hands the same text to its callback): `type`, `time` (seconds since the Unix epoch,
//! host clock), `vcpu`, `pid`, `tid`, `comm`, then the fields of the event's kind
//! (docs/tracing.md lists them).

use serde_json::{json, Map, Value};

use super::{Part, TraceEvent, What};
use crate::os::linux::syscalls::ArgValue;

fn part<T: serde::Serialize>(o: &mut Map<String, Value>, key: &str, p: &Part<T>) {
    match p {
        Ok(v) => {
            o.insert(key.to_owned(), json!(v));
        }
        Err(why) => {
            o.insert(key.to_owned(), Value::Null);
            let u = o
                .entry("unreadable")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Some(u) = u.as_object_mut() {
                u.insert(key.to_owned(), json!(why));
            }
        }
    }
}

fn arg_value(v: &ArgValue) -> Value {
    match v {
        ArgValue::Int(i) => json!(i),
        ArgValue::Uint(u) => json!(u),
        ArgValue::Pointer(p) => json!(format!("{p:#x}")),
        ArgValue::Str(s) => json!(s),
        ArgValue::Unreadable { addr, reason } => {
            json!({ "pointer": format!("{addr:#x}"), "unreadable": reason })
        }
    }
}

impl TraceEvent {
    /// The event as a JSON object (see the module docs).
    pub fn to_json(&self) -> Value {
        let time = self
            .time
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let mut o = Map::new();
        o.insert("type".into(), json!(self.type_name()));
        o.insert("time".into(), json!((time * 1e6).round() / 1e6));
        o.insert("vcpu".into(), json!(self.vcpu.0));
        o.insert("pid".into(), json!(self.pid));
        o.insert("tid".into(), json!(self.tid));
        o.insert("comm".into(), json!(self.comm));
        match &self.what {
            What::ProcessStart { ppid, exe, argv } => {
                o.insert("ppid".into(), json!(ppid));
                part(&mut o, "exe", exe);
                part(&mut o, "argv", argv);
            }
            What::ProcessExit { code } | What::ThreadExit { code } => {
                o.insert("code".into(), json!(code.0));
                o.insert("status".into(), json!(code.status()));
                o.insert("signal".into(), json!(code.signal()));
            }
            What::ModuleLoad { module } | What::ModuleUnload { module } => {
                o.insert("name".into(), json!(module.name));
                o.insert("base".into(), json!(format!("{:#x}", module.base.0)));
                o.insert("size".into(), json!(module.size));
            }
            What::Syscall {
                nr,
                info,
                raw,
                args,
            } => {
                o.insert("nr".into(), json!(nr));
                o.insert("name".into(), json!(info.as_ref().map(|i| &i.name)));
                let mut a = Map::new();
                if let Some(info) = info {
                    for (decl, v) in info.args.iter().zip(args) {
                        a.insert(decl.name.clone(), arg_value(v));
                    }
                }
                o.insert("args".into(), Value::Object(a));
                o.insert(
                    "raw".into(),
                    json!(raw.iter().map(|r| format!("{r:#x}")).collect::<Vec<_>>()),
                );
            }
            What::FileOpen {
                dfd,
                path,
                flags,
                mode,
                result,
                unfollowed,
            } => {
                o.insert("dfd".into(), json!(dfd));
                part(&mut o, "path", path);
                o.insert("flags".into(), json!(format!("{flags:#o}")));
                o.insert("mode".into(), json!(format!("{mode:#o}")));
                match result {
                    Some(r) if *r >= 0 => {
                        o.insert("fd".into(), json!(r));
                    }
                    Some(r) => {
                        o.insert("errno".into(), json!(-r));
                    }
                    None => {}
                }
                if let Some(u) = unfollowed {
                    o.insert("unfollowed".into(), json!(u));
                }
            }
        }
        Value::Object(o)
    }
}
