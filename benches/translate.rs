//! Criterion benches on the real Linux 6.1 fixture: address translation (uncached walk and
//! cache hit), virtual reads, and the whole Linux walk. Results: `docs/performance.md`.
//!
//! `cargo bench --bench translate`

#[path = "../tests/support/fixture.rs"]
mod fixture;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use xenvmi::backend::snapshot::Snapshot;
use xenvmi::mem::GuestMemory;
use xenvmi::os::linux::{Linux, ProfileSource};
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
