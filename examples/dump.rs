//! Capture a guest's whole memory and every vCPU's registers as an ELF core that xenvmi's
//! `Snapshot` and Volatility3 read (`xenvmi::capture`).
//!
//! ```text
//! cargo run --release --features xen --example dump -- --domain NAME [--pause] OUT [--json] [--force]
//! cargo run --release --example dump -- --simulate [IMAGE] [--pause] OUT [--json] [--force]
//! cargo run --release --example dump -- IMAGE OUT [--json] [--force]
//! ```
//!
//! - `--domain NAME`: a running Xen domain. With `--pause` it is paused from before its
//!   registers are read until the last byte is written (consistent; the summary says for how
//!   long). Without, the guest runs on while it is read (live): registers are those of the
//!   start, and structures that span pages may disagree with each other.
//! - `--simulate [IMAGE]`: the same code on xenvmi's simulated domain over a snapshot (the
//!   bundled Linux 6.1 one by default).
//! - `IMAGE`: rewrite a snapshot (raw, LiME, QEMU ELF, Windows crash dump) as an ELF core.
//!
//! Memory that cannot be read is left out of the file and listed, never written as zeros. The
//! core is written to `OUT.partial` and renamed to `OUT` when complete; a failed capture
//! leaves nothing behind. An existing `OUT` is kept unless `--force` is given. Progress goes to
//! stderr when it is a terminal. Exit status: 0 written, 1 error (one line on stderr naming the
//! file or domain).

mod common;

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use xenvmi::backend::snapshot::Snapshot;
use xenvmi::backend::{PhysicalMemory, VcpuState, VmControl};
use xenvmi::capture::{capture_to_new_file, CaptureOptions, ProgressMeter};
use xenvmi::report;

const USAGE: &str = "usage: dump (--domain NAME [--pause] | --simulate [IMAGE] [--pause] | IMAGE) OUT [--json] [--force]";

struct Options {
    out: PathBuf,
    pause: bool,
    json: bool,
    force: bool,
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dump: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let mut domain = None;
    let mut simulate = false;
    let mut paths = Vec::new();
    let mut pause = false;
    let mut json = false;
    let mut force = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--domain" => {
                domain = Some(
                    args.next()
                        .ok_or_else(|| format!("--domain needs a name\n{USAGE}"))?,
                )
            }
            "--simulate" => simulate = true,
            "--pause" => pause = true,
            "--json" => json = true,
            "--force" => force = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            s if s.starts_with('-') => return Err(format!("unknown argument `{s}`\n{USAGE}")),
            s => paths.push(PathBuf::from(s)),
        }
    }
    let Some(out) = paths.pop() else {
        return Err(format!("no output file given\n{USAGE}"));
    };
    let o = Options {
        out,
        pause,
        json,
        force,
    };
    match (domain, simulate, paths.as_slice()) {
        (Some(d), false, []) => on_xen(&d, &o),
        (None, true, [] | [_]) => {
            let image = common::image_path(paths.first().map(PathBuf::as_path))?;
            let snap = open(&image)?;
            let regs = snap.all_registers().to_vec();
            if regs.is_empty() {
                return Err(format!(
                    "{}: the image has no vCPU registers to run the simulated domain with",
                    image.display()
                ));
            }
            let sim = xenvmi::backend::sim::SimDomain::new(snap, &regs);
            dump(&sim, o.pause.then_some(&sim as &dyn VmControl), &o)
        }
        (None, false, [image]) => {
            if o.pause {
                return Err(format!(
                    "--pause: {} is a snapshot, nothing runs in it",
                    image.display()
                ));
            }
            let image = common::image_path(Some(image))?;
            dump(&open(&image)?, None, &o)
        }
        _ => Err(USAGE.into()),
    }
}

fn open(image: &Path) -> Result<Snapshot, String> {
    Snapshot::open(image).map_err(|e| e.to_string())
}

#[cfg(feature = "xen")]
fn on_xen(domain: &str, o: &Options) -> Result<(), String> {
    let dom = xenvmi::backend::xen::XenDomain::open(domain).map_err(|e| e.to_string())?;
    dump(&dom, o.pause.then_some(&dom as &dyn VmControl), o)
        .map_err(|e| format!("domain {domain}: {e}"))
}

#[cfg(not(feature = "xen"))]
fn on_xen(domain: &str, _o: &Options) -> Result<(), String> {
    Err(common::no_xen(domain))
}

/// Write the core to `OUT.partial`, rename it to `OUT`, print the summary.
fn dump<B: PhysicalMemory + VcpuState + ?Sized>(
    b: &B,
    pause: Option<&dyn VmControl>,
    o: &Options,
) -> Result<(), String> {
    let mut meter = ProgressMeter::new();
    let r = capture_to_new_file(
        b,
        &o.out,
        o.force,
        CaptureOptions {
            pause,
            progress: Some(&mut |p| meter.on_stderr(p)),
        },
    );
    meter.finish();
    let r = r.map_err(|e| match e {
        xenvmi::Error::Io { path, source } if source.kind() == ErrorKind::AlreadyExists => {
            format!("{}: exists; give --force to replace it", path.display())
        }
        e => e.to_string(),
    })?;
    if o.json {
        println!("{}", report::capture(&r, &o.out));
    } else {
        println!("{}", report::capture_text(&r, &o.out));
    }
    Ok(())
}
