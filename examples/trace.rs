//! Follow what a live Linux guest does, from outside: programs started (with their argv) and
//! ended, modules loaded and unloaded, system calls with their arguments, files opened with
//! their result (`xenvmi::trace`). No agent in the guest and no profile: kernel functions are
//! found by the guest's own kallsyms, their arguments by its BTF, system calls by its
//! `syscalls_metadata`.
//!
//! ```text
//! cargo run --release --features xen --example trace -- --domain NAME [--procs] [--modules] \
//!     [--syscalls[=LIST]] [--files] [--threads] [--pid PID]... [--comm NAME]... [--json] \
//!     [--in-place] [--seconds N]
//! cargo run --release --example trace -- --simulate [IMAGE] [same options]
//! ```
//!
//! - the default is `--procs --modules`; `--procs` is process starts and exits, `--threads`
//!   adds thread exits; `--syscalls=openat,execve` traces only those calls (names as the
//!   guest's table has them, checked against it);
//! - `--pid` and `--comm` keep only those processes (repeatable; applied before anything is
//!   read from the guest);
//! - `--json` prints one JSON object per line with `type` (`process_start`, `process_exit`,
//!   `thread_exit`, `module_load`, `module_unload`, `syscall`, `file_open`), `time`, `vcpu`,
//!   `pid`, `tid`, `comm` and the event's fields (docs/tracing.md); otherwise one line each;
//! - a kernel without a function an event kind needs gets a message naming the function,
//!   and the other kinds go on;
//! - stealth placement by default (breakpoints on shadow pages in an altp2m view);
//!   `--in-place` writes them into the guest's pages;
//! - it stops on SIGINT/SIGTERM (or after `--seconds`), removes every breakpoint, view and
//!   monitor, and prints one summary line on stderr (`trace: ...`).
//!
//! With `--simulate` the guest is xenvmi's simulated domain (not Xen) over a snapshot: vCPU 0
//! runs each traced function once with the registers it had in the snapshot.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use xenvmi::backend::sim::{GuestAction, SimDomain};
use xenvmi::backend::snapshot::Snapshot;
use xenvmi::event::hooks::{Hooks, Placement};
use xenvmi::event::session::{RunOptions, Session, SessionBackend};
use xenvmi::event::Response;
use xenvmi::mem::GuestMemory;
use xenvmi::os::linux::syscalls::ArgValue;
use xenvmi::os::linux::{Linux, ProfileSource};
use xenvmi::os::terminal_safe;
use xenvmi::trace::{LinuxTracer, Probe, TraceEvent, TraceFilter, What};
use xenvmi::{Gpa, VcpuId};

const USAGE: &str = "usage: trace (--domain NAME | --simulate [IMAGE]) [--procs] [--modules] [--syscalls[=LIST]] [--files] [--threads] [--pid PID]... [--comm NAME]... [--json] [--in-place] [--seconds N]";

struct Options {
    probes: Vec<Probe>,
    threads: bool,
    filter: TraceFilter,
    json: bool,
    placement: Placement,
    seconds: Option<u64>,
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("trace: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let mut simulate: Option<Option<PathBuf>> = None;
    let mut domain = None;
    let mut probes = Vec::new();
    let mut o = Options {
        probes: Vec::new(),
        threads: false,
        filter: TraceFilter::new(),
        json: false,
        placement: Placement::Stealth,
        seconds: None,
    };
    let value = |flag: &str, args: &mut std::iter::Skip<std::env::Args>| {
        args.next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))
    };
    while let Some(a) = args.next() {
        match a.as_str() {
            "--domain" => domain = Some(value("--domain", &mut args)?),
            "--simulate" => simulate = Some(None),
            "--procs" => probes.extend([Probe::ProcessStart, Probe::Exit]),
            "--threads" => {
                o.threads = true;
                probes.push(Probe::Exit);
            }
            "--modules" => probes.extend([Probe::ModuleLoad, Probe::ModuleUnload]),
            "--files" => probes.push(Probe::FileOpen),
            "--syscalls" => probes.push(Probe::Syscall),
            s if s.starts_with("--syscalls=") => {
                probes.push(Probe::Syscall);
                let list = &s["--syscalls=".len()..];
                if list.is_empty() {
                    return Err(format!("--syscalls= needs a list of names\n{USAGE}"));
                }
                o.filter = o.filter.with_syscalls(list.split(','));
            }
            "--pid" => {
                let v = value("--pid", &mut args)?;
                let pid = v
                    .parse()
                    .map_err(|_| format!("--pid {v}: not a process id\n{USAGE}"))?;
                o.filter = o.filter.with_pids([pid]);
            }
            "--comm" => o.filter = o.filter.with_comms([value("--comm", &mut args)?]),
            "--json" => o.json = true,
            "--in-place" => o.placement = Placement::InPlace,
            "--seconds" => {
                let v = value("--seconds", &mut args)?;
                o.seconds = Some(
                    v.parse()
                        .map_err(|_| format!("--seconds {v}: not a number\n{USAGE}"))?,
                );
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            s if !s.starts_with('-') && simulate == Some(None) => {
                simulate = Some(Some(PathBuf::from(s)))
            }
            other => return Err(format!("unknown argument `{other}`\n{USAGE}")),
        }
    }
    if probes.is_empty() {
        probes = vec![
            Probe::ProcessStart,
            Probe::Exit,
            Probe::ModuleLoad,
            Probe::ModuleUnload,
        ];
    }
    probes.sort();
    probes.dedup();
    o.probes = probes;
    match (domain, simulate) {
        (Some(d), None) => on_xen(&d, &o),
        (None, Some(image)) => on_sim(image, &o),
        _ => Err(USAGE.into()),
    }
}

/// One event as a line of text.
fn text(e: &TraceEvent) -> String {
    let who = format!(
        "vcpu {} pid {} tid {} {}",
        e.vcpu.0,
        e.pid,
        e.tid,
        terminal_safe(&e.comm)
    );
    let or_why = |p: &Result<String, String>| match p {
        Ok(s) => terminal_safe(s).into_owned(),
        Err(why) => format!("<unreadable: {why}>"),
    };
    let what = match &e.what {
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
            let who = if matches!(e.what, What::ProcessExit { .. }) {
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
            if matches!(e.what, What::ModuleLoad { .. }) {
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
                    .map(|(d, v)| format!(
                        "{}={}",
                        d.name,
                        match v {
                            ArgValue::Int(x) => x.to_string(),
                            ArgValue::Uint(x) => x.to_string(),
                            ArgValue::Pointer(p) => format!("{p:#x}"),
                            ArgValue::Str(s) => format!("\"{}\"", terminal_safe(s)),
                            ArgValue::Unreadable { addr, .. } => format!("{addr:#x}<unreadable>"),
                        }
                    ))
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

/// The tracer itself, the same for Xen and the simulated domain. Returns the summary.
fn trace<B: SessionBackend>(
    backend: &B,
    linux: &Linux,
    o: &Options,
    until: Option<Instant>,
    opts: &RunOptions,
) -> Result<String, String> {
    let mem = GuestMemory::new(backend);
    let mut session = Session::new(backend).map_err(|e| e.to_string())?;
    session
        .stop_handle()
        .stop_on_signals()
        .map_err(|e| e.to_string())?;
    let mut hooks = Hooks::new(&mut session, o.placement).map_err(|e| e.to_string())?;
    let mut tracer = LinuxTracer::place(
        &mut hooks,
        &mut session,
        &mem,
        linux,
        &o.probes,
        o.filter.clone(),
    )
    .map_err(|e| e.to_string())?;
    for n in tracer.not_placed() {
        eprintln!("trace: no {} events: {}", n.probe.name(), n.reason);
    }
    let placed: Vec<&str> = tracer
        .probes()
        .filter(|p| p.2)
        .map(|p| p.1.name())
        .collect();
    if placed.is_empty() {
        return Err("none of the event kinds could be traced".into());
    }
    eprintln!("trace: tracing {}", placed.join(" "));
    let mut counts: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut errors = 0u64;
    let stop = session.stop_handle();
    let stdout = std::io::stdout();
    let stats = hooks
        .run(&mut session, &mem, opts, |ctx| {
            if until.is_some_and(|t| Instant::now() >= t) {
                stop.stop();
            }
            match tracer.handle(linux, ctx) {
                Some(Ok(e)) if matches!(e.what, What::ThreadExit { .. }) && !o.threads => {}
                Some(Ok(e)) => {
                    *counts.entry(e.type_name()).or_default() += 1;
                    use std::io::Write;
                    let line = if o.json {
                        e.to_json().to_string()
                    } else {
                        text(&e)
                    };
                    let mut out = stdout.lock();
                    // A closed pipe ends the trace, cleanly.
                    if writeln!(out, "{line}").and_then(|_| out.flush()).is_err() {
                        stop.stop();
                    }
                }
                Some(Err(e)) => {
                    errors += 1;
                    eprintln!(
                        "trace: an event on vCPU {} could not be read: {e}",
                        ctx.event().vcpu
                    );
                }
                None => {}
            }
            Ok::<_, std::convert::Infallible>(Response::proceed())
        })
        .map_err(|e| e.to_string());
    let hs = hooks.stats();
    let teardown = session.teardown().map_err(|e| e.to_string());
    let stats = stats?;
    teardown?;
    let per: Vec<String> = counts.iter().map(|(k, v)| format!("{k} {v}")).collect();
    Ok(format!(
        "{} events ({}); {} filtered out; {} unreadable; {} hits in {} guest events; teardown done",
        counts.values().sum::<u64>(),
        if per.is_empty() {
            "none".to_owned()
        } else {
            per.join(", ")
        },
        tracer.filtered(),
        errors,
        hs.hits,
        stats.events
    ))
}

fn on_sim(image: Option<PathBuf>, o: &Options) -> Result<(), String> {
    let path = common::image_path(image.as_deref())?;
    let snap = Snapshot::open(&path).map_err(|e| e.to_string())?;
    let regs = snap.all_registers().to_vec();
    let sim = SimDomain::new(snap, &regs);
    let linux = Linux::discover(&GuestMemory::new(&sim), &regs, ProfileSource::InGuest)
        .map_err(|e| e.to_string())?;
    eprintln!(
        "trace on the simulated domain (not Xen) — Linux {}",
        linux.info().release
    );
    let k = linux.info();
    let script: Vec<GuestAction> = o
        .probes
        .iter()
        .filter_map(|p| p.symbols().iter().find_map(|s| linux.symbol(s)))
        .map(|va| GuestAction::Execute {
            vcpu: VcpuId(0),
            gpa: Gpa(k.text_pa.0 + va.0.wrapping_sub(k.text_va.0)),
        })
        .collect();
    sim.script(script);
    let opts = RunOptions {
        poll: std::time::Duration::ZERO,
        max_events: None,
        max_idle_polls: Some(1),
    };
    let summary = trace(&sim, &linux, o, None, &opts)?;
    eprintln!("trace: {summary}");
    let st = sim.state();
    eprintln!(
        "trace: left behind: {} vCPU(s) paused, {} monitor(s), {} view(s), {} frame(s)",
        st.paused_vcpus().len(),
        st.monitors().len(),
        st.extra_views().len(),
        st.extra_frames().len(),
    );
    Ok(())
}

#[cfg(feature = "xen")]
fn on_xen(domain: &str, o: &Options) -> Result<(), String> {
    let (dom, linux) = common::attach_xen(domain)?;
    eprintln!(
        "trace on Xen domain {} — Linux {} (Ctrl-C to stop)",
        dom.domid(),
        linux.info().release
    );
    let until = o
        .seconds
        .map(|s| Instant::now() + std::time::Duration::from_secs(s));
    let summary = trace(&dom, &linux, o, until, &RunOptions::default())?;
    eprintln!("trace: {summary}");
    Ok(())
}

#[cfg(not(feature = "xen"))]
fn on_xen(domain: &str, _o: &Options) -> Result<(), String> {
    Err(common::no_xen(domain))
}
