//! Criterion benches for the OS-neutral discovery (`xenvmi::os::identify` / `discover`): what
//! telling the OS apart costs on the bundled Linux snapshot and on a synthetic Windows 11 guest
//! (laid out by the real 22000 ISF, `tests/support/windows_guest.rs`), and what it saves: the
//! Linux search a Windows image paid before, when the front end tried Linux first.
//! Results: `docs/performance.md`.
//!
//! `cargo bench --bench guest`

#[allow(dead_code)]
#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use support::windows_guest::{load_isf, WinGuest, WinSpec, PROFILES};
use xenvmi::mem::GuestMemory;
use xenvmi::os::linux::{Linux, ProfileSource};
use xenvmi::os::profile::Profile;
use xenvmi::os::windows::{Hints, Windows, WindowsProfile};
use xenvmi::os::{discover, identify, DiscoverOptions};

fn guest(c: &mut Criterion) {
    let mut grp = c.benchmark_group("guest");
    grp.sample_size(10).measurement_time(Duration::from_secs(5));

    // The bundled Linux snapshot (QEMU ELF core, 256 MiB, two vCPUs without MSRs).
    let (mem, regs) = support::linux::memory("linux-6.1");
    grp.bench_function("identify_linux_elf", |b| {
        b.iter(|| identify(&mem, &regs, &Hints::default(), &mut |_| {}).kind)
    });
    grp.bench_function("linux_discover_elf", |b| {
        b.iter(|| Linux::discover(&mem, &regs, ProfileSource::InGuest).unwrap())
    });
    grp.bench_function("os_discover_linux_elf", |b| {
        b.iter(|| discover(&mem, &regs, DiscoverOptions::default()).unwrap())
    });

    // A Windows 11 guest, with registers and as a raw image; the profile already loaded, so
    // that only the searches are measured.
    let (file, build) = PROFILES[2];
    let isf = Arc::new(load_isf(file));
    let symbols = isf.symbols().clone();
    let profile = || Profile {
        types: Box::new(Arc::clone(&isf)),
        symbols: symbols.clone(),
    };
    let options = || DiscoverOptions {
        windows: Some(WindowsProfile::Loaded(profile())),
        ..DiscoverOptions::default()
    };
    let g = WinGuest::build(&isf, WinSpec::typical(build));
    let wregs = g.registers();
    let raw = GuestMemory::new(g.snapshot());
    grp.bench_function("identify_windows_lstar", |b| {
        b.iter(|| identify(&raw, &wregs, &Hints::default(), &mut |_| {}).kind)
    });
    grp.bench_function("identify_windows_raw_low_stub", |b| {
        b.iter(|| identify(&raw, &[], &Hints::default(), &mut |_| {}).kind)
    });
    grp.bench_function("windows_discover_raw", |b| {
        b.iter(|| Windows::discover(&raw, &[], WindowsProfile::Loaded(profile())).unwrap())
    });
    grp.bench_function("os_discover_windows_raw", |b| {
        b.iter(|| discover(&raw, &[], options()).unwrap())
    });
    // Before: the Linux search a Windows raw image went through first, to fail.
    grp.bench_function("linux_discover_fails_on_windows_raw", |b| {
        b.iter(|| Linux::discover(&raw, &[], ProfileSource::InGuest).unwrap_err())
    });
    // No low stub: the banner search runs (and finds nothing) before the self-reference tells.
    let spec = WinSpec {
        low_stub: None,
        ..WinSpec::typical(build)
    };
    let selfref = GuestMemory::new(WinGuest::build(&isf, spec).snapshot());
    grp.bench_function("identify_windows_raw_self_ref", |b| {
        b.iter(|| identify(&selfref, &[], &Hints::default(), &mut |_| {}).kind)
    });
    grp.finish();
}

criterion_group!(benches, guest);
criterion_main!(benches);
