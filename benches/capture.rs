//! How long a paused capture holds a 1 GiB guest (`xenvmi::capture`), on the simulated domain:
//! 1 GiB of guest memory (the real Linux 6.1 snapshot's 256 MiB, four times, as a raw image held
//! in memory, the way a live domain's mapped pages are), two vCPUs, paused from before its
//! registers are read until the last byte is written, then resumed.
//!
//! - `sink`: the core written to a sink that discards it: the cost of reading the guest and
//!   laying out the file, the floor of any capture;
//! - `file`: the core written to a file under `target/` (the page cache; `sync_all` at the end
//!   is outside the pause, as in `capture_to_file`).
//!
//! Each is run 5 times; the median and the range of the pause are printed. Results:
//! `docs/performance.md`. `cargo bench --bench capture`

#[path = "../tests/support/fixture.rs"]
mod fixture;

use std::io::{Seek, SeekFrom, Write};
use std::time::Duration;

use xenvmi::backend::sim::SimDomain;
use xenvmi::backend::snapshot::{Format, Snapshot};
use xenvmi::backend::PhysicalMemory;
use xenvmi::capture::{capture, CaptureOptions};
use xenvmi::Gpa;

const GIB: usize = 1 << 30;
const RUNS: usize = 5;

/// Discards what is written; seeks anywhere.
struct Sink(u64);

impl Write for Sink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0 += b.len() as u64;
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Seek for Sink {
    fn seek(&mut self, _: SeekFrom) -> std::io::Result<u64> {
        Ok(0)
    }
}

fn report(name: &str, mut v: Vec<Duration>) {
    v.sort();
    println!(
        "capture 1 GiB ({name}): paused {:.3} s median ({:.3}-{:.3} s), {:.0} MiB/s, {RUNS} runs",
        v[RUNS / 2].as_secs_f64(),
        v[0].as_secs_f64(),
        v[RUNS - 1].as_secs_f64(),
        1024.0 / v[RUNS / 2].as_secs_f64()
    );
}

fn main() {
    // `cargo test --benches` runs benches once with `--bench` absent: keep that quick.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let src = Snapshot::open(fixture::fixture_file("linux-6.1", "vmcore.elf").expect("fixture"))
        .expect("open fixture");
    let mut image = vec![0u8; GIB];
    let mut filled = 0;
    'fill: loop {
        for r in src.physical_ranges() {
            let mut at = r.start;
            while at < r.end {
                let n = ((r.end - at) as usize).min(1 << 20).min(GIB - filled);
                if n == 0 {
                    break 'fill;
                }
                src.read_physical(Gpa(at), &mut image[filled..filled + n])
                    .expect("read fixture");
                filled += n;
                at += n as u64;
            }
        }
    }
    let regs = src.all_registers().to_vec();
    let sim = SimDomain::new(
        Snapshot::from_bytes(image, Some(Format::Raw)).expect("raw image"),
        &regs,
    );
    let opts = || CaptureOptions {
        pause: Some(&sim),
        progress: None,
    };
    let mut sink = Vec::new();
    for _ in 0..RUNS {
        let r = capture(&sim, Sink(0), opts()).expect("capture");
        sink.push(r.paused_for.expect("paused"));
    }
    report("sink", sink);
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-capture.elf");
    let mut file = Vec::new();
    for _ in 0..RUNS {
        let f = std::fs::File::create(&path).expect("create");
        let r = capture(&sim, &f, opts()).expect("capture");
        file.push(r.paused_for.expect("paused"));
        f.sync_all().expect("sync");
    }
    std::fs::remove_file(&path).ok();
    report("file", file);
    assert_eq!(sim.state().pause_count(), 0);
}
