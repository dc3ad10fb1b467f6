//! Crash-safe detach on a live Xen domain: run a monitor that is interrupted in the middle of
//! an event stream, then check what it left behind.
//!
//! ```text
//! cargo build --release --features xen --example xen-detach
//! xen-detach DOMID run DATA_GFN [--panic-after N]   # until SIGINT/SIGTERM, or a handler panic
//! xen-detach DOMID check DATA_GFN LABEL             # guest running? views? access? attach?
//! xen-detach DOMID recover                          # undo what a SIGKILLed monitor left
//! ```
//!
//! `run` keeps its session journal in `$XENVMI_JOURNAL_DIR` (default `/run/xenvmi`), traps
//! CR3/CR4 writes, `wrmsr 0x174` and `int3` synchronously and write-protects `DATA_GFN` in an
//! altp2m view, so that at any moment a vCPU is likely paused on an event. SIGINT and SIGTERM
//! stop the loop and tear down; `--panic-after N` makes the handler panic on its Nth event;
//! SIGKILL leaves the journal for `recover`. Each step prints `DETACH ...` lines that the
//! real-Xen suite (`tests/xen-e2e`) checks.

mod common;

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use xenvmi::backend::xen::XenDomain;
use xenvmi::backend::{ControlRegister, EventChannel, MemAccess, PhysicalMemory, ViewControl};
use xenvmi::event::journal;
use xenvmi::event::session::{RunOptions, Session};
use xenvmi::event::{EventKind, Response};
use xenvmi::{Gfn, Gpa, ViewId};

const USAGE: &str = "usage: xen-detach DOMID run DATA_GFN [--panic-after N] | DOMID check DATA_GFN LABEL | DOMID recover";

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(2),
        Err(e) => {
            println!("DETACH error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn hex(s: &str) -> Result<u64, String> {
    u64::from_str_radix(s.trim_start_matches("0x"), 16).map_err(|e| format!("{s}: {e}"))
}

fn journal_path(dom: &XenDomain) -> std::path::PathBuf {
    journal::default_path(&format!("xen-domain-{}", dom.domid().0))
}

fn run() -> Result<bool, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let domain = args.first().ok_or(USAGE)?;
    let dom = XenDomain::open(domain).map_err(|e| e.to_string())?;
    match args.get(1).map(String::as_str) {
        Some("run") => {
            let gfn = hex(args.get(2).ok_or(USAGE)?)?;
            let panic_after = match (args.get(3).map(String::as_str), args.get(4)) {
                (Some("--panic-after"), Some(n)) => {
                    Some(n.parse::<u64>().map_err(|e| e.to_string())?)
                }
                (None, _) => None,
                _ => return Err(USAGE.into()),
            };
            monitor(&dom, gfn, panic_after)
        }
        Some("check") => {
            let gfn = hex(args.get(2).ok_or(USAGE)?)?;
            let label = args.get(3).ok_or(USAGE)?;
            check(&dom, gfn, label)
        }
        Some("recover") => {
            let path = journal_path(&dom);
            match Session::recover(&dom, &path) {
                Ok(Some(r)) => {
                    println!(
                        "DETACH recovered: journal of pid {} ({} changes), ring was enabled: {}, release responses {}, warnings {:?}",
                        r.owner.pid, r.changes, r.ring_was_enabled, r.vcpus_released, r.warnings
                    );
                    Ok(true)
                }
                Ok(None) => {
                    println!(
                        "DETACH recovered: nothing to recover ({} absent)",
                        path.display()
                    );
                    Ok(true)
                }
                Err(e) => Err(e.to_string()),
            }
        }
        _ => Err(USAGE.into()),
    }
}

fn monitor(dom: &XenDomain, data_gfn: u64, panic_after: Option<u64>) -> Result<bool, String> {
    let mut s = Session::new(dom).map_err(|e| e.to_string())?;
    let target = format!("xen:domain-{}", dom.domid().0);
    s.persist_journal(journal_path(dom), &target)
        .map_err(|e| e.to_string())?;
    let view = common::trap_tiny_guest(
        &mut s,
        &[ControlRegister::Cr3, ControlRegister::Cr4],
        data_gfn,
    )?;
    let stop = s.stop_handle();
    stop.stop_on_signals().map_err(|e| e.to_string())?;
    println!("DETACH monitoring pid {} view {view}", std::process::id());
    let mut n = 0u64;
    let result = s.run(
        &RunOptions {
            poll: Duration::from_millis(100),
            max_events: None,
            max_idle_polls: None,
        },
        |e| {
            n += 1;
            if n == 1000 {
                println!("DETACH armed: 1000 events answered");
                let _ = std::io::stdout().flush();
            }
            if panic_after == Some(n) {
                panic!("deliberate panic on event {n}");
            }
            match e.kind {
                EventKind::MemoryAccess { .. } => Response::emulate(),
                EventKind::SoftwareBreakpoint { insn_length, .. } => {
                    let mut regs = e.regs;
                    regs.rip += u64::from(insn_length.max(1));
                    Response::proceed().set_registers(regs)
                }
                _ => Response::proceed(),
            }
        },
    );
    let outcome = match &result {
        Ok(stats) => format!(
            "stopped (interrupted: {}) after {} events",
            stats.interrupted, stats.events
        ),
        Err(e) => format!("ended with error after {n} events: {e}"),
    };
    let torn = s.teardown();
    println!(
        "DETACH run {outcome}; teardown {}",
        match &torn {
            Ok(()) => "ok".to_string(),
            Err(e) => e.to_string(),
        }
    );
    Ok(torn.is_ok())
}

fn counter(dom: &XenDomain, gfn: u64) -> Result<u32, String> {
    let mut b = [0u8; 4];
    dom.read_physical(Gpa(gfn << 12), &mut b)
        .map_err(|e| e.to_string())?;
    Ok(u32::from_le_bytes(b))
}

/// What a monitor left behind, in one line.
fn check(dom: &XenDomain, data_gfn: u64, label: &str) -> Result<bool, String> {
    let c0 = counter(dom, data_gfn)?;
    std::thread::sleep(Duration::from_millis(500));
    let c1 = counter(dom, data_gfn)?;
    let views = dom.views().map_err(|e| e.to_string())?;
    let journal = if journal_path(dom).exists() {
        "present"
    } else {
        "absent"
    };
    // Attach as a new monitor would; Xen reads host-view access only while a ring is enabled.
    let (attach, access) = match dom.enable_ring() {
        Ok(()) => {
            let access = dom.mem_access(ViewId::HOST, Gfn(data_gfn));
            let _ = dom.close_ring();
            ("ok".to_string(), Some(access.map_err(|e| e.to_string())?))
        }
        Err(e) => (e.to_string(), None),
    };
    let running = c1 != c0;
    let rwx = access == Some(MemAccess::all());
    // Unknown without a ring (another monitor's ring is in the way).
    let access = match access {
        Some(a) => [
            (MemAccess::R, 'r'),
            (MemAccess::W, 'w'),
            (MemAccess::X, 'x'),
        ]
        .iter()
        .map(|&(bit, c)| if a.contains(bit) { c } else { '-' })
        .collect(),
        None => "unknown".to_string(),
    };
    println!(
        "DETACH check {label}: guest running={running} ({c0} -> {c1}) views={views:?} access={access} journal={journal} attach={attach}"
    );
    Ok(running && views.is_empty() && rwx && journal == "absent" && attach == "ok")
}
