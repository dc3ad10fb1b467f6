//! The cost of attestation on the real Linux 6.1 snapshot (held in memory): one observation
//! (`attest::observe`: the kernel build with the SHA-256 of its 4.3 MB BTF, every user
//! process's executable, memory map and first code page, every module), the observation
//! without the BTF hash, and the comparison of an observation with its manifest
//! (`attest::attest`). Results: `docs/performance.md`.
//!
//! `cargo bench --bench attest`

#[path = "../tests/support/fixture.rs"]
mod fixture;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use xenvmi::attest::{self, Learner};
use xenvmi::backend::snapshot::Snapshot;
use xenvmi::mem::GuestMemory;
use xenvmi::os::linux::{Linux, ProfileSource};

fn attestation(c: &mut Criterion) {
    let path = fixture::fixture_file("linux-6.1", "vmcore.elf").expect("unpack fixture");
    let snap = Snapshot::from_bytes(std::fs::read(path).expect("read fixture"), None)
        .expect("open fixture");
    let regs = snap.all_registers().to_vec();
    let mem = GuestMemory::new(snap);
    let linux = Linux::discover(&mem, &regs, ProfileSource::InGuest).unwrap();
    let obs = attest::observe(&mem, &linux);
    let manifest = Learner::from_observation(&obs).manifest();
    c.bench_function("observe", |b| {
        b.iter(|| {
            mem.flush_translations();
            black_box(attest::observe(&mem, &linux))
        })
    });
    c.bench_function("kernel_build", |b| {
        b.iter(|| black_box(attest::kernel_build(&mem, &linux)))
    });
    c.bench_function("attest_15_processes_9_modules", |b| {
        b.iter(|| black_box(attest::attest(&manifest, &obs)))
    });
}

criterion_group!(benches, attestation);
criterion_main!(benches);
