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

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use xenvmi::backend::snapshot::Snapshot;
use xenvmi::backend::{PhysicalMemory, VcpuState, VmControl};
use xenvmi::capture::{capture_to_file, CaptureOptions, CaptureReport, Progress};

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
    if o.out.is_dir() {
        return Err(format!(
            "{}: is a directory, not an output file",
            o.out.display()
        ));
    }
    if o.out.exists() && !o.force {
        return Err(format!(
            "{}: exists; give --force to replace it",
            o.out.display()
        ));
    }
    let mut partial = o.out.clone().into_os_string();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let terminal = std::io::stderr().is_terminal();
    let t0 = Instant::now();
    let mut last = 0.0f64;
    let mut progress = |p: Progress| {
        let s = t0.elapsed().as_secs_f64();
        if terminal && (s - last >= 0.2 || p.done == p.total) {
            last = s;
            eprint!(
                "\r{:>8.1} / {:.1} MiB examined ({:>3.0}%), {:.1} MiB written, {:.0} MiB/s   ",
                mib(p.done),
                mib(p.total),
                100.0 * p.done as f64 / p.total.max(1) as f64,
                mib(p.written),
                mib(p.written) / s.max(1e-6)
            );
        }
    };
    let r = capture_to_file(
        b,
        &partial,
        CaptureOptions {
            pause,
            progress: Some(&mut progress),
        },
    );
    if terminal {
        eprintln!();
    }
    let r = match r {
        Ok(r) => r,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e.to_string());
        }
    };
    std::fs::rename(&partial, &o.out).map_err(|e| {
        let _ = std::fs::remove_file(&partial);
        format!("{}: {e}", o.out.display())
    })?;
    summary(&r, o);
    Ok(())
}

fn mib(b: u64) -> f64 {
    b as f64 / (1u64 << 20) as f64
}

fn summary(r: &CaptureReport, o: &Options) {
    if o.json {
        let v = serde_json::json!({
            "out": o.out.display().to_string(),
            "consistency": r.consistency.as_str(),
            "vcpus": r.vcpus,
            "bytes_written": r.bytes_written,
            "segments": r.segments,
            "missing_bytes": r.missing_bytes,
            "missing_ranges": r.missing_ranges,
            "missing": r.missing.iter().map(|m| [m.start, m.end]).collect::<Vec<_>>(),
            "file_bytes": r.file_bytes,
            "paused_ms": r.paused_for.map(|d| d.as_secs_f64() * 1e3),
            "elapsed_ms": r.elapsed.as_secs_f64() * 1e3,
            "throughput_mib_s": mib(r.bytes_written) / r.elapsed.as_secs_f64().max(1e-9),
        });
        println!("{v}");
        return;
    }
    println!(
        "{}: {:.1} MiB of guest memory in {} ranges, {} vCPUs, {} ({:.2} s, {:.0} MiB/s)",
        o.out.display(),
        mib(r.bytes_written),
        r.segments,
        r.vcpus,
        match r.paused_for {
            Some(d) => format!("paused for {:.3} s", d.as_secs_f64()),
            None => "live: the guest was not paused".into(),
        },
        r.elapsed.as_secs_f64(),
        mib(r.bytes_written) / r.elapsed.as_secs_f64().max(1e-9),
    );
    if r.missing_ranges > 0 {
        println!(
            "missing (unreadable, not in the file): {:.1} MiB in {} ranges{}",
            mib(r.missing_bytes),
            r.missing_ranges,
            r.missing
                .iter()
                .take(8)
                .map(|m| format!(" {:#x}-{:#x}", m.start, m.end))
                .collect::<String>()
        );
    }
}
