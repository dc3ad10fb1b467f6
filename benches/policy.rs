//! The cost of one event answered by a policy guard, on the simulated domain (not Xen) over
//! the real Linux 6.1 dump: every policy of `PolicySet::all` loaded, 64 events per iteration
//! of one kind each:
//!
//! - `cr4_benign_64`: CR4 writes that leave the pinned bits alone (decided, proceed);
//! - `text_poke_64`: the kernel's own text patching (a write to a protected text frame from
//!   `memcpy` whose return address is in `__text_poke`: the allow-list symbolizes `rip` and
//!   reads `[rsp]` through the page tables; emulated, no alert);
//! - `text_attack_64`: a write to kernel text from outside the kernel (refused, one alert each
//!   to a sink that discards it: the CR3 → process lookup and the symbolization included).
//!
//! And `refresh`: one `Guard::refresh` of every policy (in effect, `module-text` walking the
//! module list and translating each live module's text pages, with nothing to change), what the
//! guard does once per `GuardOptions::refresh_interval`.
//!
//! The simulated domain's own work (raising the requests, applying the answers) is inside the
//! measured time.
//!
//! `module_cross_view`: one check of the `hidden-modules` policy on the same dump (the
//! `modules` list and `module_kset`'s kobjects walked, 9 modules; the modules region's 10 vmap
//! areas walked): `first_check` with nothing cached (the one area no module accounts for, a
//! 2 MiB BPF pack, searched for a `struct module`), `cached` with the policy's warm
//! `AreaScanCache` (what each later check costs), beside `modules_list`, the list walk alone.
//! Results: `docs/performance.md`.
//!
//! `cargo bench --bench policy`

#[path = "../tests/support/fixture.rs"]
mod fixture;

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use xenvmi::alert::Callback;
use xenvmi::backend::sim::{GuestAction, SimDomain};
use xenvmi::backend::snapshot::Snapshot;
use xenvmi::backend::{ControlRegister, PhysicalMemoryWrite, VcpuState, VcpuStateWrite};
use xenvmi::event::session::RunOptions;
use xenvmi::mem::{AddressSpace, GuestMemory};
use xenvmi::os::linux::{Linux, ProfileSource};
use xenvmi::policy::{Guard, GuardOptions, PolicyOptions, PolicySet};
use xenvmi::{Gpa, Gva, VcpuId};

const EVENTS: u64 = 64;

fn events(c: &mut Criterion) {
    let path = fixture::fixture_file("linux-6.1", "vmcore.elf").expect("fixture");
    let snap = Snapshot::open(path).expect("open fixture");
    let mut regs = snap.all_registers().to_vec();
    for r in &mut regs {
        r.cr4 |= 0x30_0800; // SMEP, SMAP, UMIP
    }
    let sim = SimDomain::new(snap, &regs);
    let linux =
        Linux::discover(&GuestMemory::new(&sim), &regs, ProfileSource::InGuest).expect("kernel");
    let sym = |n: &str| linux.symbol(n).expect("symbol").0;
    let k = linux.info();
    let text = Gpa(k.text_pa.0 + (sym("__x64_sys_getpid") + 16 - k.text_va.0));
    // vCPU 1 runs the kernel: make it memcpy called from __text_poke.
    let mut r1 = sim.registers(VcpuId(1)).expect("vCPU 1");
    let space = AddressSpace::from_cr3(r1.cr3, k.paging);
    let slot = GuestMemory::new(&sim)
        .translate_mapped(space, Gva(r1.rsp))
        .expect("stack");
    sim.write_physical(slot, &(sym("__text_poke") + 0x1a2).to_le_bytes())
        .expect("stack write");
    r1.rip = sym("memcpy") + 3;
    sim.set_registers(VcpuId(1), &r1).expect("registers");
    let set = PolicySet::all(&PolicyOptions::default()).expect("policies");
    let opts = GuardOptions {
        run: RunOptions {
            poll: Duration::ZERO,
            max_events: None,
            max_idle_polls: Some(1),
        },
        ..GuardOptions::default()
    };
    let sink = Box::new(Callback(|_: &_| Ok(())));
    let mut guard = Guard::new(&sim, &linux, set, sink, opts).expect("guard");
    let cr4 = regs[0].cr4;
    let scripts: [(&str, Vec<GuestAction>); 3] = [
        (
            "cr4_benign_64",
            (0..EVENTS)
                .map(|i| GuestAction::WriteCr {
                    vcpu: VcpuId(0),
                    register: ControlRegister::Cr4,
                    value: cr4 ^ ((i % 2 + 1) << 7),
                })
                .collect(),
        ),
        (
            "text_poke_64",
            (0..EVENTS)
                .map(|i| GuestAction::Write {
                    vcpu: VcpuId(1),
                    gpa: text,
                    bytes: vec![0x66, 0x90 + (i % 2) as u8],
                })
                .collect(),
        ),
        (
            "text_attack_64",
            (0..EVENTS)
                .map(|_| GuestAction::Write {
                    vcpu: VcpuId(0),
                    gpa: text,
                    bytes: vec![0xcc],
                })
                .collect(),
        ),
    ];
    let mut g = c.benchmark_group("policy");
    g.throughput(Throughput::Elements(EVENTS));
    // (A filter on the command line may leave these unrun: then there is nothing to check.)
    let mut ran = false;
    for (name, script) in scripts {
        g.bench_function(name, |b| {
            ran = true;
            b.iter(|| {
                sim.script(script.iter().cloned());
                let s = guard.run().expect("run");
                assert!(!s.domain_paused);
            })
        });
    }
    g.throughput(Throughput::Elements(1));
    g.bench_function("refresh", |b| b.iter(|| guard.refresh().expect("refresh")));
    g.finish();
    let stats = guard.run().expect("run");
    assert!(!ran || (stats.legitimate_writes > 0 && stats.alerts > 0));
    guard.teardown().expect("teardown");
}

fn cross_view(c: &mut Criterion) {
    let path = fixture::fixture_file("linux-6.1", "vmcore.elf").expect("fixture");
    let snap = Snapshot::open(path).expect("open fixture");
    let regs = snap.all_registers().to_vec();
    let mem = GuestMemory::new(snap);
    let linux = Linux::discover(&mem, &regs, ProfileSource::InGuest).expect("kernel");
    let mut g = c.benchmark_group("hidden_modules");
    g.bench_function("module_cross_view/first_check", |b| {
        b.iter(|| linux.module_cross_view(&mem).expect("cross-view"))
    });
    let mut cache = xenvmi::os::linux::AreaScanCache::new();
    linux
        .module_cross_view_with(&mem, &mut cache)
        .expect("cross-view");
    g.bench_function("module_cross_view/cached", |b| {
        b.iter(|| {
            linux
                .module_cross_view_with(&mem, &mut cache)
                .expect("cross-view")
        })
    });
    g.bench_function("modules_list", |b| b.iter(|| linux.modules(&mem).count()));
    g.finish();
}

criterion_group!(benches, events, cross_view);
criterion_main!(benches);
