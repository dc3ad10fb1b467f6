//! Breakpoints on kernel functions of a live Linux guest, found by symbol with no profile,
//! through xenvmi's hook manager: count the hits of each, hand the guest's own `int3`s back to
//! it, and keep hooked pages current when the guest patches them.
//!
//! ```text
//! cargo run --release --example hook-trace -- --simulate [IMAGE] [SYMBOL ...]
//! cargo run --release --features xen --example hook-trace -- --domain NAME [--in-place] \
//!     [--seconds N] [--near SYMBOL] [--returns SYMBOL]... SYMBOL ...
//! ```
//!
//! - stealth placement by default (shadow pages in an altp2m view); `--in-place` writes the
//!   `int3`s into the guest's pages instead (no altp2m needed; not hidden from the guest);
//! - `--near SYMBOL` also hooks another function on SYMBOL's page (so that a guest patching
//!   SYMBOL, e.g. with a kprobe, writes a hooked page);
//! - a symbol the kernel lacks is reported by name and the others are hooked;
//! - it stops after `--seconds` (default: on SIGINT/SIGTERM), tears everything down and prints
//!   one summary line (`hook-trace: ...`).
//!
//! With `--simulate` the guest is xenvmi's simulated domain (not Xen) over a snapshot: each
//! hooked function is executed a few times, and a guest `int3` once.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use xenvmi::backend::sim::{GuestAction, SimDomain};
use xenvmi::backend::snapshot::Snapshot;
use xenvmi::backend::PhysicalMemoryWrite;
use xenvmi::event::hooks::{Hit, HookId, Hooks, Placement};
use xenvmi::event::session::{RunOptions, Session, SessionBackend};
use xenvmi::event::Response;
use xenvmi::mem::GuestMemory;
use xenvmi::os::linux::{Linux, ProfileSource};
use xenvmi::{Gpa, VcpuId};

const USAGE: &str = "usage: hook-trace (--domain NAME | --simulate [IMAGE]) [--in-place] [--seconds N] [--near SYMBOL] [--returns SYMBOL]... [SYMBOL ...]";
/// Hooked when no symbol is named: a syscall entry, the scheduler, the module loader.
const DEFAULT_SYMBOLS: &[&str] = &[
    "do_syscall_64",
    "schedule",
    "pick_next_task_fair",
    "load_module",
    "__x64_sys_getppid",
];

struct Options {
    placement: Placement,
    seconds: Option<u64>,
    near: Option<String>,
    /// Functions whose returns are reported too (each also hooked at its entry).
    returns: Vec<String>,
    symbols: Vec<String>,
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hook-trace: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let mut simulate: Option<Option<PathBuf>> = None;
    let mut domain = None;
    let mut o = Options {
        placement: Placement::Stealth,
        seconds: None,
        near: None,
        returns: Vec::new(),
        symbols: Vec::new(),
    };
    while let Some(a) = args.next() {
        match a.as_str() {
            "--simulate" => {
                simulate = Some(None);
                // An image path may follow (a symbol name is not a file: `foo.isra.0`).
                if let Some(p) = args.next() {
                    if std::path::Path::new(&p).is_file() {
                        simulate = Some(Some(PathBuf::from(p)));
                    } else {
                        o.symbols.push(p);
                    }
                }
            }
            "--domain" => domain = Some(args.next().ok_or(USAGE)?),
            "--in-place" => o.placement = Placement::InPlace,
            "--seconds" => o.seconds = Some(args.next().and_then(|n| n.parse().ok()).ok_or(USAGE)?),
            "--near" => o.near = Some(args.next().ok_or(USAGE)?),
            "--returns" => o.returns.push(args.next().ok_or(USAGE)?),
            _ if !a.starts_with('-') => o.symbols.push(a),
            _ => return Err(USAGE.into()),
        }
    }
    if o.symbols.is_empty() {
        o.symbols = DEFAULT_SYMBOLS.iter().map(|s| s.to_string()).collect();
    }
    match (domain, simulate) {
        (Some(d), None) => on_xen(&d, &o),
        (None, Some(image)) => on_sim(image, &o),
        _ => Err(USAGE.into()),
    }
}

/// Another function on the page of `symbol`, for `--near`.
fn neighbour(linux: &Linux, symbol: &str) -> Result<String, String> {
    let va = linux.require_symbol(symbol).map_err(|e| e.to_string())?.0;
    let page = va & !0xfff;
    let slide = linux.slide();
    linux
        .symbols()
        .iter()
        .filter(|&(name, addr, kind)| {
            let run = addr.wrapping_add(slide);
            matches!(kind, b'T' | b't') && name != symbol && run & !0xfff == page && run != va
        })
        .map(|(name, _, _)| name.to_string())
        .next()
        .ok_or_else(|| format!("no other function on the page of {symbol}"))
}

/// The monitor itself, the same for Xen and the simulated domain.
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
    let mut names: BTreeMap<HookId, String> = BTreeMap::new();
    let mut wanted = o.symbols.clone();
    wanted.extend(o.returns.iter().filter(|r| !o.symbols.contains(r)).cloned());
    if let Some(n) = &o.near {
        match neighbour(linux, n) {
            Ok(other) => {
                eprintln!("hook-trace: {other} shares the page of {n}");
                wanted.push(other);
            }
            Err(e) => eprintln!("hook-trace: --near {n}: {e}"),
        }
    }
    for s in &wanted {
        match hooks.add_symbol(&mut session, &mem, linux, s) {
            Ok(id) => {
                names.insert(id, s.clone());
            }
            // The other event kinds go on without it.
            Err(e) => eprintln!("hook-trace: not hooking {s}: {e}"),
        }
    }
    if names.is_empty() {
        return Err("none of the functions could be hooked".into());
    }
    let placement = match o.placement {
        Placement::Stealth => "stealth",
        Placement::InPlace => "in place",
    };
    eprintln!(
        "hook-trace: {} breakpoints placed ({placement}): {}",
        names.len(),
        names.values().cloned().collect::<Vec<_>>().join(" ")
    );
    let mut hits: BTreeMap<HookId, u64> = BTreeMap::new();
    // Return hooks: armed at each entry hit of a `--returns` function, counted per function.
    let with_return: Vec<HookId> = names
        .iter()
        .filter(|(_, n)| o.returns.contains(n))
        .map(|(&id, _)| id)
        .collect();
    let mut returns: BTreeMap<HookId, u64> = BTreeMap::new();
    let mut return_hook_errors = 0u64;
    let stop = session.stop_handle();
    let t0 = Instant::now();
    let stats = hooks
        .run(&mut session, &mem, opts, |ctx| {
            if until.is_some_and(|t| Instant::now() >= t) {
                stop.stop();
            }
            match ctx.hit() {
                Some(Hit::Breakpoint { id, .. }) => {
                    *hits.entry(id).or_default() += 1;
                    if with_return.contains(&id) && ctx.return_hook(id.0).is_err() {
                        // The stack or the return address not mapped, or too many pending.
                        return_hook_errors += 1;
                    }
                }
                Some(Hit::Return { entry, .. }) => *returns.entry(entry).or_default() += 1,
                None => {}
            }
            Ok::<_, std::convert::Infallible>(Response::proceed())
        })
        .map_err(|e| e.to_string())?;
    let hs = hooks.stats();
    session.teardown().map_err(|e| e.to_string())?;
    let per: Vec<String> = names
        .iter()
        .map(|(id, n)| format!("{n} {}", hits.get(id).copied().unwrap_or(0)))
        .collect();
    let mut summary = format!(
        "{placement}, {} breakpoints, {:.1} s: {} hits ({}); guest int3s handed back {}; pages \
         refreshed after guest writes {}; guest reads/writes of hooked pages {}; events {} mean {:?}",
        names.len(),
        t0.elapsed().as_secs_f64(),
        hs.hits,
        per.join(", "),
        hs.reinjected,
        hs.refreshes,
        hs.accesses,
        stats.events,
        stats.mean()
    );
    if !with_return.is_empty() {
        let per: Vec<String> = with_return
            .iter()
            .map(|id| format!("{} {}", names[id], returns.get(id).copied().unwrap_or(0)))
            .collect();
        summary.push_str(&format!(
            "; returns {} ({}); unmatched returns {}; return hooks not armed {}",
            hs.returns,
            per.join(", "),
            hs.unmatched_returns,
            return_hook_errors
        ));
    }
    Ok(summary)
}

fn on_sim(image: Option<PathBuf>, o: &Options) -> Result<(), String> {
    let path = common::image_path(image.as_deref())?;
    let snap = Snapshot::open(&path).map_err(|e| e.to_string())?;
    let regs = snap.all_registers().to_vec();
    let sim = SimDomain::new(snap, &regs);
    let linux = Linux::discover(&GuestMemory::new(&sim), &regs, ProfileSource::InGuest)
        .map_err(|e| e.to_string())?;
    println!(
        "hook-trace on the simulated domain (not Xen) — Linux {}",
        linux.info().release
    );
    // The script: each function that exists runs three times on vCPU 0, and a guest int3 of
    // its own (a byte the guest wrote) runs once.
    let k = linux.info();
    let mut script = Vec::new();
    for _ in 0..3 {
        for s in &o.symbols {
            if let Some(va) = linux.symbol(s) {
                let gpa = Gpa(k.text_pa.0 + va.0.wrapping_sub(k.text_va.0));
                script.push(GuestAction::Execute {
                    vcpu: VcpuId(0),
                    gpa,
                });
            }
        }
    }
    let guest_int3 = Gpa(0x10_0000);
    sim.write_physical(guest_int3, &[0xcc])
        .map_err(|e| e.to_string())?;
    script.push(GuestAction::Execute {
        vcpu: VcpuId(0),
        gpa: guest_int3,
    });
    sim.script(script);
    // The simulated guest has nothing left to do once its script ran.
    let opts = RunOptions {
        poll: std::time::Duration::ZERO,
        max_events: None,
        max_idle_polls: Some(1),
    };
    let summary = trace(&sim, &linux, o, None, &opts)?;
    println!("hook-trace: {summary}");
    let st = sim.state();
    println!(
        "teardown done: {} vCPU(s) paused, {} monitor(s), {} view(s), {} frame(s) left; the guest took {} #BP",
        st.paused_vcpus().len(),
        st.monitors().len(),
        st.extra_views().len(),
        st.extra_frames().len(),
        st.delivered().len()
    );
    Ok(())
}

#[cfg(feature = "xen")]
fn on_xen(domain: &str, o: &Options) -> Result<(), String> {
    let (dom, linux) = common::attach_xen(domain)?;
    println!(
        "hook-trace on Xen domain {} — Linux {} (Ctrl-C to stop)",
        dom.domid(),
        linux.info().release
    );
    let until = o
        .seconds
        .map(|s| Instant::now() + std::time::Duration::from_secs(s));
    let summary = trace(&dom, &linux, o, until, &RunOptions::default())?;
    println!("hook-trace: {summary}");
    Ok(())
}

#[cfg(not(feature = "xen"))]
fn on_xen(domain: &str, _o: &Options) -> Result<(), String> {
    Err(common::no_xen(domain))
}
