//! Criterion benches on the real Linux 6.1 fixture: address translation (uncached walk and
//! cache hit), virtual reads, the whole Linux walk, discovery through the kernel-build cache
//! (a build in memory, a build from the cache directory) and one process monitoring 20 guests
//! of one build. Results: `docs/performance.md`.
//!
//! `cargo bench --bench translate`

#[path = "../tests/support/fixture.rs"]
mod fixture;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use xenvmi::backend::snapshot::Snapshot;
use xenvmi::mem::GuestMemory;
use xenvmi::os::linux::{BuildCache, Linux, ProfileSource, Scope};
use xenvmi::Gva;

fn setup() -> (GuestMemory<Snapshot>, Vec<xenvmi::Registers>) {
    let path = fixture::fixture_file("linux-6.1", "vmcore.elf").expect("unpack fixture");
    let snap = Snapshot::open(path).expect("open fixture");
    let regs = snap.all_registers().to_vec();
    (GuestMemory::new(snap), regs)
}

fn translation(c: &mut Criterion) {
    let (mem, regs) = setup();
    let linux = Linux::discover(&mem, &regs, ProfileSource::InGuest).expect("discover");
    let ks = linux.info().kernel_space;
    // A 4 KiB-mapped direct-map address (a task_struct) and a 2 MiB-mapped kernel-image one.
    let task = linux
        .processes(&mem)
        .nth(10)
        .expect("task")
        .expect("task ok")
        .object;
    let init_task = linux.symbol("init_task").expect("init_task");
    let mut g = c.benchmark_group("translate");
    g.bench_function("uncached_4level_walk_task_struct", |b| {
        b.iter(|| mem.walk(ks, black_box(task)).unwrap())
    });
    g.bench_function("uncached_4level_walk_kernel_image", |b| {
        b.iter(|| mem.walk(ks, black_box(init_task)).unwrap())
    });
    mem.translate(ks, task).unwrap();
    g.bench_function("cached_translate", |b| {
        b.iter(|| mem.translate(ks, black_box(task)).unwrap())
    });
    g.bench_function("read_u64_cached", |b| {
        b.iter(|| mem.read_u64(ks, black_box(Gva(task.0 + 8))).unwrap())
    });
    g.finish();
}

fn linux_walk(c: &mut Criterion) {
    let (mem, regs) = setup();
    let mut g = c.benchmark_group("linux");
    g.sample_size(20);
    g.bench_function("discover_in_guest", |b| {
        b.iter(|| Linux::discover(&mem, &regs, ProfileSource::InGuest).unwrap())
    });
    // Another guest of a build already in memory: checked against the guest, then shared.
    let shared = BuildCache::in_memory();
    Linux::discover_cached(&mem, &regs, &shared, Scope::Full).unwrap();
    g.bench_function("discover_cached_in_memory", |b| {
        b.iter(|| Linux::discover_cached(&mem, &regs, &shared, Scope::Full).unwrap())
    });
    // A new run with a warm cache directory: the build file read, validated and checked.
    let dir = std::env::temp_dir().join(format!("xenvmi-bench-cache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    Linux::discover_cached(&mem, &regs, &BuildCache::with_dir(&dir), Scope::Walks).unwrap();
    g.bench_function("discover_cached_from_directory", |b| {
        b.iter(|| {
            let cache = BuildCache::with_dir(&dir);
            let l = Linux::discover_cached(&mem, &regs, &cache, Scope::Walks).unwrap();
            assert_eq!(cache.stats().disk_hits, 1);
            l
        })
    });
    let _ = std::fs::remove_dir_all(&dir);
    // One monitor, 20 guests of one build (the fixture opened as 20 snapshots): the build is
    // discovered once and shared; the other 19 are checked against it.
    let guests: Vec<_> = (0..20).map(|_| setup()).collect();
    g.bench_function("twenty_guests_one_build", |b| {
        b.iter(|| {
            let cache = BuildCache::in_memory();
            let all: Vec<Linux> = guests
                .iter()
                .map(|(m, r)| Linux::discover_cached(m, r, &cache, Scope::Full).unwrap())
                .collect();
            let s = cache.stats();
            assert_eq!((s.discoveries, s.memory_hits), (1, 19));
            all
        })
    });
    let linux = Linux::discover(&mem, &regs, ProfileSource::InGuest).unwrap();
    g.bench_function("walk_tasks_modules_owners", |b| {
        b.iter(|| {
            mem.flush_translations();
            let procs: Vec<_> = linux.processes(&mem).filter_map(Result::ok).collect();
            let mods = linux.modules(&mem).filter_map(Result::ok).count();
            let owners = regs
                .iter()
                .filter(|r| linux.owner_of_cr3(&procs, r.cr3).is_some())
                .count();
            (procs.len(), mods, owners)
        })
    });
    g.finish();
}

criterion_group!(benches, translation, linux_walk);
criterion_main!(benches);
