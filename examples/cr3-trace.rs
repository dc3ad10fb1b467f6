//! Print every CR3 switch of a Linux or Windows guest with the process it switches to.
//!
//! ```text
//! cargo run --release --example cr3-trace -- --simulate              # bundled Linux 6.1 snapshot
//! cargo run --release --example cr3-trace -- --simulate IMAGE --rounds 5
//! cargo run --release --example cr3-trace -- --simulate WINDOWS-IMAGE --profile fixtures/windows-isf
//! cargo run --release --features xen --example cr3-trace -- --domain NAME   # on Xen (dom0, root)
//! ```
//!
//! With `--simulate`, the guest is xenvmi's **simulated domain** (not Xen): it holds the
//! snapshot's memory and vCPUs and switches CR3 through the page tables of the guest's real
//! processes, raising real vm_event requests on a real ring. The monitor code below is the same
//! code that runs on Xen: a CR3 monitor, the event loop, and the OS-neutral layer
//! (`xenvmi::os::discover`, `GuestOs`, `Cr3Resolver`) resolving each new CR3 to its process.
//! The OS is told apart by itself; a Windows guest's profile is `--profile` (a file or a
//! symbol-store or ISF directory) or the default place (`$XENVMI_WINDOWS_PROFILES`). On Xen,
//! the guest is Linux.

mod common;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use xenvmi::backend::sim::{GuestAction, SimDomain};
use xenvmi::backend::snapshot::Snapshot;
use xenvmi::backend::PhysicalMemory;
use xenvmi::backend::{ControlRegister, Monitor};
use xenvmi::event::session::{RunOptions, Session, SessionBackend};
use xenvmi::event::{EventKind, Response};
use xenvmi::mem::GuestMemory;
use xenvmi::os::windows::WindowsProfile;
use xenvmi::os::{Cr3Owner, Cr3Resolver, DiscoverOptions, GuestOs};
use xenvmi::VcpuId;

const USAGE: &str =
    "usage: cr3-trace (--domain NAME | --simulate [IMAGE] [--profile WINDOWS-PROFILE]) [--rounds N]";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cr3-trace: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let mut simulate: Option<Option<PathBuf>> = None;
    let mut domain = None;
    let mut rounds = 3usize;
    let mut profile: Option<PathBuf> = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--simulate" => simulate = Some(None),
            "--domain" => domain = Some(args.next().ok_or(USAGE)?),
            "--rounds" => rounds = args.next().and_then(|n| n.parse().ok()).ok_or(USAGE)?,
            "--profile" => profile = Some(args.next().ok_or(USAGE)?.into()),
            _ if !a.starts_with('-') && matches!(simulate, Some(None)) => {
                simulate = Some(Some(PathBuf::from(a)))
            }
            _ => return Err(USAGE.into()),
        }
    }
    if let Some(d) = domain {
        return on_xen(&d);
    }
    let Some(image) = simulate else {
        return Err(USAGE.into());
    };
    let image = common::image_path(image.as_deref())?;
    let snap = Snapshot::open(&image).map_err(|e| format!("{}: {e}", image.display()))?;
    let regs = snap.all_registers().to_vec();
    if regs.is_empty() {
        return Err(format!(
            "{}: the image records no vCPUs to simulate",
            image.display()
        ));
    }
    let sim = SimDomain::new(snap, &regs);
    let mem = GuestMemory::new(&sim);
    let options = DiscoverOptions {
        windows: profile.map(|p| {
            if p.is_dir() {
                WindowsProfile::Directory(p)
            } else {
                WindowsProfile::Isf(p)
            }
        }),
        ..DiscoverOptions::default()
    };
    let guest = xenvmi::os::discover(&mem, &regs, options)
        .map_err(|e| format!("{}: {e}", image.display()))?;
    let procs: Vec<_> = guest
        .processes(&mem)
        .filter_map(Result::ok)
        .filter(|p| p.dtb.is_some())
        .collect();
    let kernel_cr3 = GuestOs::kernel_space(&guest).root.0;

    // The simulated guest: each vCPU switches through every user process's page tables, and
    // now and then to the kernel's (an idle CPU).
    let mut script = Vec::new();
    for r in 0..rounds {
        for (i, p) in procs.iter().enumerate() {
            let vcpu = VcpuId(((i + r) % regs.len()) as u32);
            let dtb = p.dtb.map(|d| d.0).unwrap_or(kernel_cr3);
            script.push(GuestAction::WriteCr {
                vcpu,
                register: ControlRegister::Cr3,
                value: dtb,
            });
            if i % 5 == 4 {
                script.push(GuestAction::WriteCr {
                    vcpu,
                    register: ControlRegister::Cr3,
                    value: kernel_cr3,
                });
            }
        }
    }
    sim.script(script);
    println!(
        "cr3-trace on a SIMULATED domain (not Xen) over {} — {} {}, {} vCPUs, {} processes with page tables",
        image.display(),
        guest.kind(),
        guest.os_info().release,
        regs.len(),
        procs.len()
    );
    let opts = RunOptions {
        poll: Duration::from_millis(100),
        max_events: None,
        max_idle_polls: Some(1),
    };
    let (events, walks) = trace(&sim, &guest, &opts)?;
    let st = sim.state();
    println!(
        "{events}; process list walked {walks} time(s); teardown done: {} vCPU(s) paused, {} monitor(s) left",
        st.paused_vcpus().len(),
        st.monitors().len()
    );
    Ok(())
}

/// The monitor itself, the same for Xen and the simulated domain: a CR3 monitor, the event
/// loop, each new CR3 resolved to its process, whatever the OS.
fn trace<B: SessionBackend + PhysicalMemory, O: GuestOs>(
    backend: &B,
    os: &O,
    opts: &RunOptions,
) -> Result<(String, u64), String> {
    let mem = GuestMemory::new(backend);
    let mut resolver = Cr3Resolver::new();
    let mut session = Session::new(backend).map_err(|e| e.to_string())?;
    session
        .monitor(Monitor::ControlRegister {
            register: ControlRegister::Cr3,
            sync: true,
            on_change_only: true,
            ignore_mask: 0,
        })
        .map_err(|e| e.to_string())?;
    session
        .stop_handle()
        .stop_on_signals()
        .map_err(|e| e.to_string())?;
    let stats = session
        .run(opts, |e| {
            if let EventKind::ControlRegister { old, new, .. } = e.kind {
                let who = match resolver.resolve(os, &mem, new) {
                    Cr3Owner::Process(p) => format!("pid {:>5}  {}", p.pid, p.name),
                    Cr3Owner::Kernel => "kernel page tables (idle / kernel thread)".into(),
                    Cr3Owner::Unknown => "unknown address space".into(),
                };
                println!("vCPU {}  CR3 {old:#11x} -> {new:#11x}  {who}", e.vcpu);
            }
            Response::proceed()
        })
        .map_err(|e| e.to_string())?;
    session.teardown().map_err(|e| e.to_string())?;
    Ok((
        format!(
            "{} CR3 switches, {:.0?} per event (decode + resolve + print + respond)",
            stats.events,
            stats.mean()
        ),
        resolver.walks(),
    ))
}

#[cfg(feature = "xen")]
fn on_xen(domain: &str) -> Result<(), String> {
    let (dom, linux) = common::attach_xen(domain)?;
    println!(
        "cr3-trace on Xen domain {} — Linux {} (Ctrl-C to stop)",
        dom.domid(),
        linux.info().release
    );
    let (summary, walks) = trace(&dom, &linux, &RunOptions::default())?;
    println!("{summary}; process list walked {walks} time(s)");
    Ok(())
}

#[cfg(not(feature = "xen"))]
fn on_xen(domain: &str) -> Result<(), String> {
    Err(common::no_xen(domain))
}
