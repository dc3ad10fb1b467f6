//! Guard a Linux kernel from outside (the AppDefense / HVI use case): write-protect kernel text
//! through an altp2m view, deny clearing CR4.SMEP/SMAP and rewriting MSR_LSTAR, and print one
//! JSON line per alert. A thin example over the policy library (`xenvmi::policy`,
//! `docs/policies.md`): three of its policies in one guard, alerts as JSON lines
//! (`docs/alerts.md`); the kernel's own text patching (`text_poke`) goes through.
//!
//! ```text
//! cargo run --release --example kernel-guard -- --simulate          # scripted attack, bundled snapshot
//! cargo run --release --example kernel-guard -- --simulate IMAGE
//! cargo run --release --features xen --example kernel-guard -- --domain NAME   # on Xen (dom0, root)
//! ```
//!
//! With `--simulate` the guest is xenvmi's **simulated domain** (not Xen) over the snapshot's
//! memory. A scripted rootkit clears SMEP/SMAP, points LSTAR at its own code and patches kernel
//! text, between benign actions (`xenvmi::policy::simulate`, which `xenvmi guard --simulate`
//! runs too); the guard must deny each write, alert, and leave the guest's state as it was. The
//! exit status says whether it did.
//!
//! Since it moved onto the policy library (same flags, same stderr lines, alerts still one JSON
//! object per line with `time`, `vcpu`, `what`, `rip`, `process`, `action` and `old`/`new` or
//! `gpa`):
//! - alerts carry the rest of the schema too (`schema`, `vm`, `policy`, `severity`, `target`,
//!   `rip_symbol`, `gva`, `symbol`, `remediation`, `capture`);
//! - writes to kernel text from the kernel's own patching (`__text_poke`, `memcpy` returning
//!   into it: kprobes, jump labels) are emulated and go through, instead of being discarded
//!   (which made the kernel BUG in `text_poke`);
//! - an LSTAR write of the value that vCPU had at start, or of `entry_SYSCALL_64`, is allowed;
//! - `--text-pages 0` protects nothing and so creates no view (it printed an empty view).

mod common;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use xenvmi::alert::{JsonLines, Vm};
use xenvmi::backend::sim::SimDomain;
use xenvmi::backend::snapshot::Snapshot;
use xenvmi::backend::VmControl;
use xenvmi::event::session::{RunOptions, SessionBackend};
use xenvmi::mem::GuestMemory;
use xenvmi::os::linux::{Linux, ProfileSource};
use xenvmi::policy::simulate::{simulated_registers, ScriptedAttack};
use xenvmi::policy::{
    ControlRegisterPolicy, Guard, GuardOptions, MsrPolicy, Policy, PolicySet, Remediation,
    ViewMode, WriteProtectPolicy, MSR_LSTAR,
};
use xenvmi::regs::Cr4;

const USAGE: &str =
    "usage: kernel-guard (--domain NAME | --simulate [IMAGE]) [--no-text | --text-pages N] [--host-view]";

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(2),
        Err(e) => {
            eprintln!("kernel-guard: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<bool, String> {
    let mut args = std::env::args().skip(1);
    let mut simulate: Option<Option<PathBuf>> = None;
    let mut domain = None;
    // How many kernel text pages to write-protect (all, by default).
    let mut text = Some(u64::MAX);
    // Write-protect in the host p2m (view 0) instead of an altp2m view.
    let mut host_view = false;
    while let Some(a) = args.next() {
        match a.as_str() {
            // Only the CR4 and MSR_LSTAR monitors, no write-protected kernel text.
            "--no-text" => text = None,
            "--host-view" => host_view = true,
            // Only the first N pages of kernel text (0: an altp2m view with no restriction).
            "--text-pages" => text = Some(args.next().and_then(|n| n.parse().ok()).ok_or(USAGE)?),
            "--simulate" => simulate = Some(None),
            "--domain" => domain = Some(args.next().ok_or(USAGE)?),
            _ if !a.starts_with('-') && matches!(simulate, Some(None)) => {
                simulate = Some(Some(PathBuf::from(a)))
            }
            _ => return Err(USAGE.into()),
        }
    }
    if let Some(d) = domain {
        return on_xen(&d, Protect { text, host_view });
    }
    let Some(image) = simulate else {
        return Err(USAGE.into());
    };
    let image = common::image_path(image.as_deref())?;
    let snap = Snapshot::open(&image).map_err(|e| format!("{}: {e}", image.display()))?;
    if snap.all_registers().is_empty() {
        return Err(format!(
            "{}: the image records no vCPUs to simulate",
            image.display()
        ));
    }
    // Modern x86 CPUs run Linux with SMEP and SMAP on; the snapshot's emulated CPU lacked them.
    let regs = simulated_registers(snap.all_registers());
    let sim = SimDomain::new(snap, &regs);
    let linux = Linux::discover(&GuestMemory::new(&sim), &regs, ProfileSource::InGuest)
        .map_err(|e| e.to_string())?;
    // The scripted guest (`xenvmi::policy::simulate`): benign work around a rootkit's three
    // moves. It runs when the guard's event loop waits for events.
    let attack = ScriptedAttack::prepare(&sim, &linux).map_err(|e| e.to_string())?;
    sim.script(attack.actions());
    eprintln!(
        "kernel-guard on a SIMULATED domain (not Xen): Linux {}",
        linux.info().release
    );
    let opts = RunOptions {
        poll: Duration::from_millis(100),
        max_events: None,
        max_idle_polls: Some(1),
    };
    let vm = Vm {
        name: Some("simulated".into()),
        ..Vm::default()
    };
    let (alerts, events) = guard(&sim, &linux, &opts, Protect { text, host_view }, vm)?;

    // Was the guest's state kept?
    let outcome = attack.outcome(&sim);
    eprintln!("{alerts} alerts, {events}; {outcome}");
    Ok(alerts == 3
        && outcome.smep_smap_kept
        && outcome.lstar_kept
        && outcome.text_kept
        && outcome.released_cleanly)
}

/// What the guard write-protects besides the CR4 and MSR_LSTAR monitors.
#[derive(Clone, Copy, Debug)]
struct Protect {
    /// Kernel text pages to write-protect (`None`: none; `Some(u64::MAX)`: all).
    text: Option<u64>,
    /// Do it in the host p2m (view 0) rather than in an altp2m view of its own.
    host_view: bool,
}

/// kernel-guard's three protections from the policy library (`docs/policies.md`), each
/// denying: CR4.SMEP/SMAP (reported as `cr4_smep_smap_clear` whichever is cleared), MSR_LSTAR,
/// and kernel text (no read-only data), the kernel's own text patching allowed.
fn policies(protect: Protect) -> Result<PolicySet, String> {
    let deny = Remediation::deny;
    let mut set = PolicySet::new();
    let mut add = |p: Box<dyn Policy>| set.push(p).map_err(|e| e.to_string());
    add(Box::new(
        ControlRegisterPolicy::cr4(Cr4::SMEP | Cr4::SMAP, deny())
            .reporting_as("cr4_smep_smap_clear"),
    ))?;
    add(Box::new(MsrPolicy::only(&[MSR_LSTAR], deny())))?;
    if let Some(n) = protect.text {
        let pages = (n != u64::MAX).then_some(n);
        add(Box::new(WriteProtectPolicy::kernel_text(
            pages,
            false,
            deny(),
        )))?;
    }
    Ok(set)
}

/// The guard itself, the same for Xen and the simulated domain. Returns (alerts, event summary).
fn guard<B: SessionBackend + VmControl>(
    backend: &B,
    linux: &Linux,
    opts: &RunOptions,
    protect: Protect,
    vm: Vm,
) -> Result<(u64, String), String> {
    let sink = JsonLines::new(std::io::stdout(), "stdout");
    let gopts = GuardOptions {
        view: if protect.host_view {
            ViewMode::Host
        } else {
            ViewMode::Own
        },
        run: *opts,
        vm,
        ..GuardOptions::default()
    };
    let mut guard = Guard::new(backend, linux, policies(protect)?, Box::new(sink), gopts)
        .map_err(|e| e.to_string())?;
    guard
        .stop_handle()
        .stop_on_signals()
        .map_err(|e| e.to_string())?;
    match guard.view() {
        Some(v) => eprintln!(
            "guarding: {} kernel text pages write-protected in view {v}, CR4 and MSR_LSTAR monitored",
            guard.protected_pages()
        ),
        None => eprintln!("guarding: CR4 and MSR_LSTAR monitored (kernel text not protected)"),
    }
    let stats = guard.run().map_err(|e| e.to_string())?;
    let (req_prod, req_event, rsp_prod, rsp_event) = backend.ring().indices();
    eprintln!(
        "ring at the end: req_prod {req_prod} req_event {req_event} rsp_prod {rsp_prod} rsp_event {rsp_event}"
    );
    guard.teardown().map_err(|e| e.to_string())?;
    Ok((
        stats.alerts,
        format!(
            "{} events ({:.0?} mean)",
            stats.run.events,
            stats.run.mean()
        ),
    ))
}

#[cfg(feature = "xen")]
fn on_xen(domain: &str, protect: Protect) -> Result<bool, String> {
    let (dom, linux) = common::attach_xen(domain)?;
    eprintln!(
        "kernel-guard on Xen domain {}: Linux {} (Ctrl-C to stop)",
        dom.domid(),
        linux.info().release
    );
    let vm = Vm {
        name: Some(domain.to_owned()).filter(|d| d.parse::<u32>().is_err()),
        uuid: None,
        domid: Some(u32::from(dom.domid().0)),
    };
    let (alerts, events) = guard(&dom, &linux, &RunOptions::default(), protect, vm)?;
    eprintln!("{alerts} alerts, {events}; views, access rights and monitors restored");
    Ok(true)
}

#[cfg(not(feature = "xen"))]
fn on_xen(domain: &str, _protect: Protect) -> Result<bool, String> {
    Err(common::no_xen(domain))
}
