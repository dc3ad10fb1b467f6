//! The cost of one traced system call, on the simulated domain (not Xen) over the real Linux
//! 6.1 snapshot: vCPU 0 enters `do_syscall_64` with a frame for `openat(AT_FDCWD, path,
//! O_CLOEXEC, 0)` (the path is the process's own argv[0] in its user memory); each hit is
//! decoded by `trace::LinuxTracer` into a `syscall` event: the task from the per-CPU area,
//! the six arguments from the frame, their names and types from the guest's
//! `syscalls_metadata`, the path read from user memory. Each iteration runs 64 calls.
//!
//! - `hit_only_64`: the same breakpoint with a handler that does nothing (the hook manager's
//!   share, which the simulated domain's own work is inside);
//! - `syscall_traced_64`: every call decoded into an event;
//! - `syscall_filtered_64`: a filter on `read` drops every call before anything is read.
//!
//! The tracer's share is the difference from `hit_only_64`. Results: `docs/performance.md`.
//!
//! `cargo bench --bench trace`

#[path = "../tests/support/fixture.rs"]
mod fixture;

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use xenvmi::backend::sim::{GuestAction, SimDomain};
use xenvmi::backend::snapshot::Snapshot;
use xenvmi::backend::{PhysicalMemoryWrite, VcpuStateWrite};
use xenvmi::event::hooks::{Hooks, Placement};
use xenvmi::event::session::{RunOptions, Session};
use xenvmi::event::Response;
use xenvmi::mem::GuestMemory;
use xenvmi::os::linux::{Linux, ProfileSource};
use xenvmi::trace::{LinuxTracer, Probe, TraceFilter, What};
use xenvmi::{Gpa, Gva, VcpuId};

const CALLS: u64 = 64;
/// A scratch page for the frame, reached through the kernel's direct map.
const FRAME: u64 = 0x10_1000;

fn syscalls(c: &mut Criterion) {
    let path = fixture::fixture_file("linux-6.1", "vmcore.elf").expect("unpack fixture");
    // Held in memory, as a live domain's mapped pages are (not read through a file's page
    // cache, whose locking and copies would be measured instead).
    let snap = Snapshot::from_bytes(std::fs::read(path).expect("read fixture"), None)
        .expect("open fixture");
    let regs = snap.all_registers().to_vec();
    let sim = SimDomain::new(snap, &regs);
    let mem = GuestMemory::new(&sim);
    let linux = Linux::discover(&mem, &regs, ProfileSource::InGuest).unwrap();
    // vCPU 0 (user mode in the dump) entering the kernel.
    let mut r = regs[0];
    r.cs_sel = 0x10;
    r.gs_base = regs[0].kernel_gs_base;
    let ks = linux.info().kernel_space;
    let task = linux.current_task(&mem, &r).unwrap();
    let mm = mem
        .read_u64(
            ks,
            task.object.checked_add(linux.offsets().task_mm).unwrap(),
        )
        .unwrap();
    let t = linux.types();
    let arg_start = mem
        .read_u64(ks, Gva(mm + t.require("mm_struct", "arg_start").unwrap()))
        .unwrap();
    let mut frame = vec![0u8; t.struct_size("pt_regs").unwrap() as usize];
    for (field, v) in [
        ("orig_ax", 257),
        ("di", (-100i64) as u64),
        ("si", arg_start),
        ("dx", 0o2000000),
    ] {
        let o = t.require("pt_regs", field).unwrap() as usize;
        frame[o..o + 8].copy_from_slice(&u64::to_le_bytes(v));
    }
    sim.write_physical(Gpa(FRAME), &frame).unwrap();
    r.rdi = linux.info().page_offset_base.0 + FRAME;
    r.rsi = 257;
    sim.set_registers(VcpuId(0), &r).unwrap();
    let k = linux.info();
    let entry = Gpa(k.text_pa.0 + (linux.symbol("do_syscall_64").unwrap().0 - k.text_va.0));
    let script: Vec<GuestAction> = (0..CALLS)
        .map(|_| GuestAction::Execute {
            vcpu: VcpuId(0),
            gpa: entry,
        })
        .collect();
    let opts = RunOptions {
        poll: Duration::ZERO,
        max_events: None,
        max_idle_polls: Some(1),
    };

    let mut g = c.benchmark_group("trace");
    g.throughput(Throughput::Elements(CALLS));
    for (name, filter, decode) in [
        ("hit_only_64", TraceFilter::new(), false),
        ("syscall_traced_64", TraceFilter::new(), true),
        (
            "syscall_filtered_64",
            TraceFilter::new().with_syscalls(["read"]),
            true,
        ),
    ] {
        let mut s = Session::new(&sim).unwrap();
        let mut hooks = Hooks::new(&mut s, Placement::Stealth).unwrap();
        let mut tracer =
            LinuxTracer::place(&mut hooks, &mut s, &mem, &linux, &[Probe::Syscall], filter)
                .unwrap();
        let mut events = 0u64;
        let mut run = |s: &mut Session<'_, SimDomain>| {
            sim.script(script.iter().cloned());
            hooks
                .run(s, &mem, &opts, |ctx| {
                    if decode {
                        if let Some(Ok(e)) = tracer.handle(&linux, ctx) {
                            assert!(matches!(e.what, What::Syscall { nr: 257, .. }));
                            events += 1;
                        }
                    }
                    Ok::<_, std::convert::Infallible>(Response::proceed())
                })
                .unwrap()
        };
        g.bench_function(name, |b| b.iter(|| black_box(run(&mut s))));
        let stats = run(&mut s);
        eprintln!(
            "{name}: consumer time per call {:?} ({} events decoded in all)",
            stats.processing / CALLS as u32,
            events
        );
        s.teardown().unwrap();
    }
    g.finish();
}

criterion_group!(benches, syscalls);
criterion_main!(benches);
