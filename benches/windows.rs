//! Criterion benches for Windows guests: PE export iteration on a real file (Wine 8.0's
//! ntoskrnl.exe, downloaded by `scripts/setup.sh`), and kernel discovery and the walks on a
//! synthetic guest laid out by the real Windows 11 22000 ISF (`tests/support/windows_guest.rs`),
//! the drivers' export tables read as symbols and one address resolved from them,
//! and the profile itself: that ISF parsed, against its profile cache entry read and checked.
//! Results: `docs/performance.md`.
//!
//! `cargo bench --bench windows`

#[allow(dead_code)]
#[path = "../tests/support/mod.rs"]
mod support;

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use support::windows_guest::{load_isf, WinGuest, WinSpec, PROFILES};
use xenvmi::mem::GuestMemory;
use xenvmi::os::pe::{FileImage, Pe};
use xenvmi::os::profile::Profile;
use xenvmi::os::windows::{crashing_processor, DriverSymbols, Windows, WindowsProfile};
use xenvmi::os::GuestOs;
use xenvmi::Gva;

fn pe(c: &mut Criterion) {
    let path = support::fixture::repo_root().join("target/xenvmi-fixtures/wine/ntoskrnl.exe");
    let Ok(bytes) = std::fs::read(&path) else {
        eprintln!(
            "{} missing: run scripts/setup.sh; PE bench skipped",
            path.display()
        );
        return;
    };
    let mut g = c.benchmark_group("pe");
    g.bench_function("parse_headers_ntoskrnl_exe", |b| {
        b.iter(|| Pe::parse(FileImage::new(black_box(&bytes), "ntoskrnl.exe")).unwrap())
    });
    let pe = Pe::parse(FileImage::new(&bytes, "ntoskrnl.exe")).unwrap();
    g.bench_function("iterate_1656_exports_ntoskrnl_exe", |b| {
        b.iter(|| pe.exports().unwrap().filter(|e| e.is_ok()).count())
    });
    g.finish();
}

fn windows(c: &mut Criterion) {
    let (file, build) = PROFILES[2];
    let isf = Arc::new(load_isf(file));
    let symbols = isf.symbols().clone();
    let profile = || Profile {
        types: Box::new(Arc::clone(&isf)),
        symbols: symbols.clone(),
    };
    let g = WinGuest::build(&isf, WinSpec::typical(build));
    let regs = g.registers();
    let mut no_hints = regs.clone();
    for r in &mut no_hints {
        r.msr_lstar = 0;
        r.rip = 0x7ff6_0000_1000;
        r.cs_sel = 0x33;
    }
    let mem = GuestMemory::new(g.snapshot());
    let mut grp = c.benchmark_group("windows");
    grp.bench_function("discover_from_msr_lstar", |b| {
        b.iter(|| Windows::discover(&mem, &regs, WindowsProfile::Loaded(profile())).unwrap())
    });
    grp.bench_function("discover_by_region_scan", |b| {
        b.iter(|| Windows::discover(&mem, &no_hints, WindowsProfile::Loaded(profile())).unwrap())
    });
    let w = Windows::discover(&mem, &regs, WindowsProfile::Loaded(profile())).unwrap();
    grp.bench_function("walk_6_processes_5_drivers_17_dlls", |b| {
        b.iter(|| {
            mem.flush_translations();
            let procs: Vec<_> = w.processes(&mem).filter_map(Result::ok).collect();
            let drivers = w.modules(&mem).count();
            let dlls: usize = procs
                .iter()
                .map(|p| w.process_modules(&mem, p).count())
                .sum();
            (procs.len(), drivers, dlls)
        })
    });
    // Driver symbols: the export tables of 4 drivers (3 with images) read once, then one
    // address inside a driver resolved from the kept table (the hot-path cost).
    let gx = WinGuest::build(&isf, WinSpec::with_driver_exports(build));
    let regsx = gx.registers();
    let acpi = gx
        .spec
        .drivers
        .iter()
        .find(|d| d.name == "ACPI.sys")
        .unwrap()
        .base;
    let memx = GuestMemory::new(gx.snapshot());
    let wx = Windows::discover(&memx, &regsx, WindowsProfile::Loaded(profile())).unwrap();
    grp.bench_function("driver_symbols_read_4_drivers", |b| {
        b.iter(|| {
            memx.flush_translations();
            DriverSymbols::read(&wx, &memx).export_count()
        })
    });
    wx.driver_symbols(&memx);
    grp.bench_function("driver_symbol_at_cached", |b| {
        b.iter(|| GuestOs::symbol_at(&wx, black_box(Gva(acpi + 0x8024))).map(|s| s.offset))
    });
    // Every processor from KiProcessorBlock (8 processors), then the crash-dump match.
    let g8 = WinGuest::build(&isf, WinSpec::with_cpus(build, 8));
    let regs8 = g8.registers();
    let context = g8.crash_context(7);
    let mem8 = GuestMemory::new(g8.snapshot());
    let w8 = Windows::discover(&mem8, &regs8, WindowsProfile::Loaded(profile())).unwrap();
    grp.bench_function("processors_8_cpus_and_crashing_match", |b| {
        b.iter(|| {
            mem8.flush_translations();
            let cpus = w8.processors(&mem8).unwrap();
            crashing_processor(&cpus, black_box(&context)).index()
        })
    });
    // Images without registers (raw, LiME): the root from the low stub, from the
    // self-referencing entry, and 64 MiB of zeros refused after every method.
    let g = WinGuest::build(&isf, WinSpec::typical(build));
    let raw = GuestMemory::new(g.snapshot());
    grp.bench_function("discover_raw_from_low_stub", |b| {
        b.iter(|| Windows::discover(&raw, &[], WindowsProfile::Loaded(profile())).unwrap())
    });
    let spec = WinSpec {
        low_stub: None,
        ..WinSpec::typical(build)
    };
    let raw_selfref = GuestMemory::new(WinGuest::build(&isf, spec).snapshot());
    grp.bench_function("discover_raw_from_self_ref_entry", |b| {
        b.iter(|| Windows::discover(&raw_selfref, &[], WindowsProfile::Loaded(profile())).unwrap())
    });
    let zeros = GuestMemory::new(
        xenvmi::backend::snapshot::Snapshot::from_bytes(
            vec![0u8; 64 << 20],
            Some(xenvmi::backend::snapshot::Format::Raw),
        )
        .unwrap(),
    );
    grp.bench_function("refuse_64_mib_without_windows", |b| {
        b.iter(|| Windows::discover(&zeros, &[], WindowsProfile::Loaded(profile())).unwrap_err())
    });
    grp.finish();
}

/// The profile: the Windows 11 22000 ISF read, xz-decoded and parsed (what a cold run pays),
/// against its profile cache entry read from a cache directory, validated and checked (what a
/// warm run pays instead), each through `Windows::discover_cached` on the synthetic guest.
fn profile(c: &mut Criterion) {
    use xenvmi::os::profile::cache::ProfileCache;
    use xenvmi::os::windows::Hints;
    let (file, build) = PROFILES[2];
    let g = WinGuest::build(&load_isf(file), WinSpec::typical(build));
    let regs = g.registers();
    let mem = GuestMemory::new(g.snapshot());
    let isfs = support::windows_guest::isf_dir();
    let dir = std::env::temp_dir().join(format!("xenvmi-bench-profile-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let discover = |cache: &ProfileCache| {
        Windows::discover_cached(
            &mem,
            &regs,
            WindowsProfile::Directory(isfs.clone()),
            &Hints::default(),
            cache,
        )
        .unwrap()
    };
    discover(&ProfileCache::with_dir(&dir)); // writes the entry
    let mut grp = c.benchmark_group("windows_profile");
    grp.sample_size(10);
    grp.bench_function("discover_parsing_the_isf", |b| {
        b.iter(|| discover(&ProfileCache::in_memory()))
    });
    grp.bench_function("discover_from_the_cache_entry", |b| {
        b.iter(|| {
            let cache = ProfileCache::with_dir(&dir);
            let w = discover(&cache);
            assert_eq!(cache.stats().disk_hits, 1);
            w
        })
    });
    grp.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, pe, windows, profile);
criterion_main!(benches);
