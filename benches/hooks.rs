//! The cost of one breakpoint hit in the hook manager, on the simulated domain (not Xen): the
//! `int3` request decoded, matched to its breakpoint, the handler called, and the step-over
//! answered (stealth: a per-vCPU switch to view 0 with single-step, then the single-step
//! event answered by switching back; in place: the answer that has Xen's emulator run the
//! original instruction). Each iteration runs 64 hits; the simulated domain's own work (raising
//! the requests, applying the answers: Xen's side) is inside the measured time, so the figure is
//! an upper bound for the consumer's share. Results: `docs/performance.md`.
//!
//! `cargo bench --bench hooks`

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use xenvmi::backend::sim::{GuestAction, SimDomain};
use xenvmi::backend::snapshot::Snapshot;
use xenvmi::event::hooks::{Hooks, Placement};
use xenvmi::event::session::{RunOptions, Session};
use xenvmi::event::Response;
use xenvmi::mem::GuestMemory;
use xenvmi::{Gpa, Registers, VcpuId};

const HITS: u64 = 64;

fn hits(c: &mut Criterion) {
    let mut g = c.benchmark_group("hooks");
    g.throughput(Throughput::Elements(HITS));
    for placement in [Placement::Stealth, Placement::InPlace] {
        let mem = Snapshot::from_bytes(vec![0x90u8; 1 << 20], None).unwrap();
        let regs = Registers {
            cr0: 0x8005_0033,
            cr3: 0x1000,
            cr4: 0x3006f0,
            ..Registers::default()
        };
        let sim = SimDomain::new(mem, &[regs, regs]);
        let gm = GuestMemory::new(&sim);
        let mut s = Session::new(&sim).unwrap();
        let mut hooks = Hooks::new(&mut s, placement).unwrap();
        let bp = Gpa(0x2345);
        hooks.add(&mut s, bp).unwrap();
        let opts = RunOptions {
            poll: Duration::ZERO,
            max_events: None,
            max_idle_polls: Some(1),
        };
        let script: Vec<GuestAction> = (0..HITS)
            .map(|i| GuestAction::Execute {
                vcpu: VcpuId((i % 2) as u32),
                gpa: bp,
            })
            .collect();
        let name = match placement {
            Placement::Stealth => "hit_stealth_64",
            Placement::InPlace => "hit_in_place_64",
        };
        let mut seen = 0u64;
        g.bench_function(name, |b| {
            b.iter(|| {
                sim.script(script.iter().cloned());
                let stats = hooks
                    .run(&mut s, &gm, &opts, |ctx| {
                        if ctx.hit().is_some() {
                            seen += 1;
                        }
                        Ok::<_, std::convert::Infallible>(Response::proceed())
                    })
                    .unwrap();
                black_box(stats)
            })
        });
        // The consumer's share alone (decode, match, handler, encode), as the loop measures it.
        sim.script(script.iter().cloned());
        let stats = hooks
            .run(&mut s, &gm, &opts, |_| {
                Ok::<_, std::convert::Infallible>(Response::proceed())
            })
            .unwrap();
        eprintln!(
            "{name}: {} events for {HITS} hits, consumer time per hit {:?}",
            stats.events,
            stats.processing / HITS as u32
        );
        s.teardown().unwrap();
        black_box(seen);
    }
    g.finish();
}

criterion_group!(benches, hits);
criterion_main!(benches);
