//! Print a Linux guest's kernel log from a memory image, as `dmesg` does, with no profile.
//!
//! ```text
//! cargo run --release --example dmesg                  # the bundled Debian 6.1 snapshot
//! cargo run --release --example dmesg -- [--json] IMAGE
//! ```
//!
//! Each line is `[seconds.micros] text` (`--json`: one object per record with `seq`,
//! `ts_nsec`, `level`, `facility`, `caller` and `text`). Text from the guest is escaped before
//! it reaches the terminal.

mod common;

use std::path::PathBuf;
use std::process::ExitCode;

use xenvmi::backend::snapshot::Snapshot;
use xenvmi::mem::GuestMemory;
use xenvmi::os::linux::{Linux, ProfileSource};
use xenvmi::os::terminal_safe as safe;

const USAGE: &str = "usage: dmesg [--json] [IMAGE]";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dmesg: {}", safe(&e));
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let mut json = false;
    let mut image = None;
    for arg in std::env::args_os().skip(1) {
        match arg.to_string_lossy().as_ref() {
            "--json" => json = true,
            "-h" | "--help" => return Err(USAGE.into()),
            s if s.starts_with('-') => return Err(format!("unknown option {s}\n{USAGE}")),
            _ if image.is_none() => image = Some(PathBuf::from(arg)),
            _ => return Err(format!("more than one image given\n{USAGE}")),
        }
    }
    let image = common::image_path(image.as_deref())?;
    let snap =
        Snapshot::open(&image).map_err(|e| format!("cannot read {}: {e}", image.display()))?;
    let regs = snap.all_registers().to_vec();
    let mem = GuestMemory::new(snap);
    let linux = Linux::discover(&mem, &regs, ProfileSource::InGuest)
        .map_err(|e| format!("{}: {e}", image.display()))?;
    let log = linux
        .kernel_log(&mem)
        .map_err(|e| format!("{}: {e}", image.display()))?;
    for r in &log {
        if json {
            let j = serde_json::json!({
                "seq": r.seq, "ts_nsec": r.ts_nsec, "level": r.level,
                "facility": r.facility, "caller": r.caller.to_string(), "text": r.text,
            });
            println!("{j}");
        } else {
            println!(
                "[{:5}.{:06}] {}",
                r.ts_nsec / 1_000_000_000,
                r.ts_nsec % 1_000_000_000 / 1000,
                safe(&r.text)
            );
        }
    }
    Ok(())
}
