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

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use xenvmi::backend::sim::SimDomain;
use xenvmi::backend::snapshot::Snapshot;
use xenvmi::event::hooks::Placement;
use xenvmi::event::session::{RunOptions, SessionBackend};
use xenvmi::mem::GuestMemory;
use xenvmi::os::linux::{Linux, ProfileSource};
use xenvmi::trace::{simulated_calls, Probe, TraceOptions, Tracing};

const USAGE: &str = "usage: trace (--domain NAME | --simulate [IMAGE]) [--procs] [--modules] [--syscalls[=LIST]] [--files] [--threads] [--pid PID]... [--comm NAME]... [--json] [--in-place] [--seconds N]";

struct Options {
    trace: TraceOptions,
    json: bool,
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
        trace: TraceOptions::default(),
        json: false,
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
                o.trace.threads = true;
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
                o.trace.filter = o.trace.filter.with_syscalls(list.split(','));
            }
            "--pid" => {
                let v = value("--pid", &mut args)?;
                let pid = v
                    .parse()
                    .map_err(|_| format!("--pid {v}: not a process id\n{USAGE}"))?;
                o.trace.filter = o.trace.filter.with_pids([pid]);
            }
            "--comm" => o.trace.filter = o.trace.filter.with_comms([value("--comm", &mut args)?]),
            "--json" => o.json = true,
            "--in-place" => o.trace.placement = Placement::InPlace,
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
    if !probes.is_empty() {
        probes.sort();
        probes.dedup();
        o.trace.probes = probes;
    }
    match (domain, simulate) {
        (Some(d), None) => on_xen(&d, &o),
        (None, Some(image)) => on_sim(image, &o),
        _ => Err(USAGE.into()),
    }
}

/// The tracer itself, the same for Xen and the simulated domain (`xenvmi::trace::Tracing`).
/// Returns the summary.
fn trace<B: SessionBackend>(
    backend: &B,
    linux: &Linux,
    o: &Options,
    until: Option<Instant>,
    opts: &RunOptions,
) -> Result<String, String> {
    let tracing = Tracing::start(backend, linux, &o.trace).map_err(|e| e.to_string())?;
    tracing
        .stop_handle()
        .stop_on_signals()
        .map_err(|e| e.to_string())?;
    for n in tracing.not_placed() {
        eprintln!("trace: no {} events: {}", n.probe.name(), n.reason);
    }
    let placed: Vec<&str> = tracing.placed().iter().map(|p| p.name()).collect();
    eprintln!("trace: tracing {}", placed.join(" "));
    let summary = tracing
        .run_to(
            opts,
            until,
            o.json,
            &mut std::io::stdout().lock(),
            |vcpu, e| eprintln!("trace: an event on vCPU {vcpu} could not be read: {e}"),
        )
        .map_err(|e| e.to_string())?;
    Ok(summary.to_string())
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
    sim.script(simulated_calls(&linux, &o.trace.probes));
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
