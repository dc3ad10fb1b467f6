//! Semantic events (`trace::LinuxTracer`) on the simulated domain (not Xen) over the real Linux
//! 6.1 snapshot, both placements: the guest runs `do_init_module` and `free_module` with one of
//! its real modules as the argument, and `do_exit` in the task its vCPU runs; each hit becomes
//! the event naming that module (as the kernel's own module list has it) and that task (as
//! the guest's own report names the process on that vCPU); `finalize_exec` there gives the
//! process's start event with the argv its `/proc/PID/cmdline` showed.

mod support;

use std::time::Duration;

use support::fixture::{fixture_file, ground_truth};
use xenvmi::backend::sim::{GuestAction, SimDomain};
use xenvmi::backend::snapshot::Snapshot;
use xenvmi::backend::{VcpuState, VcpuStateWrite};
use xenvmi::event::hooks::{Hooks, Placement};
use xenvmi::event::session::{RunOptions, Session};
use xenvmi::event::Response;
use xenvmi::mem::GuestMemory;
use xenvmi::os::linux::{Linux, ProfileSource};
use xenvmi::trace::{LinuxTracer, Probe, TraceEvent};
use xenvmi::{Error, Gpa, VcpuId};

const RUN: RunOptions = RunOptions {
    poll: Duration::ZERO,
    max_events: None,
    max_idle_polls: Some(1),
};

#[test]
fn module_and_exit_events_name_what_the_kernel_names() {
    for placement in [Placement::Stealth, Placement::InPlace] {
        let snap = Snapshot::open(fixture_file("linux-6.1", "vmcore.elf").unwrap()).unwrap();
        let regs = snap.all_registers().to_vec();
        let sim = SimDomain::new(snap, &regs);
        let mem = GuestMemory::new(&sim);
        let linux = Linux::discover(&mem, &regs, ProfileSource::InGuest).unwrap();
        let module = linux.modules(&mem).next().unwrap().unwrap();
        let k = linux.info();
        let gpa = |name: &str| Gpa(k.text_pa.0 + (linux.symbol(name).unwrap().0 - k.text_va.0));
        // vCPU 0 is in user mode in the dump (the guest's report: pid 106, vmi_busy_loop).
        // Entering the kernel for these calls: CPL 0, and swapgs makes the kernel's per-CPU
        // base GS.base.
        let owner = &ground_truth("linux-6.1")["vcpu_owners"][0];
        let mut r = regs[0];
        r.cs_sel = 0x10;
        r.gs_base = regs[0].kernel_gs_base;
        // What the guest itself reported about that process (its /proc).
        let gt61 = ground_truth("linux-6.1");
        let truth = gt61["processes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["pid"] == owner["pid"])
            .unwrap()
            .clone();
        let argv: Vec<String> = truth["cmdline"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_owned())
            .collect();
        // A script (`/bin/sh /bin/vmi_busy_loop`): the program is the shell, which in these
        // busybox-static guests is /bin/busybox (fixtures/README.md).
        let exe = "/bin/busybox".to_owned();
        let mut events = Vec::new();
        {
            let mut s = Session::new(&sim).unwrap();
            let mut hooks = Hooks::new(&mut s, placement).unwrap();
            let tracer = LinuxTracer::place(
                &mut hooks,
                &mut s,
                &mem,
                &linux,
                &[
                    Probe::ModuleLoad,
                    Probe::ModuleUnload,
                    Probe::ThreadExit,
                    Probe::ProcessStart,
                ],
            )
            .unwrap();
            assert_eq!(tracer.probes().len(), 4);
            for (func, arg) in [
                ("do_init_module", module.object.0),
                ("free_module", module.object.0),
                ("finalize_exec", 0),
                ("do_exit", 0x100),
            ] {
                r.rdi = arg;
                sim.set_registers(VcpuId(0), &r).unwrap();
                sim.script([GuestAction::Execute {
                    vcpu: VcpuId(0),
                    gpa: gpa(func),
                }]);
                hooks
                    .run(&mut s, &mem, &RUN, |ctx| {
                        if let Some(hit) = ctx.hit() {
                            let ev = ctx.event().clone();
                            if let Some(e) = tracer.decode(&linux, ctx.memory(), hit, &ev) {
                                events.push(e?);
                            }
                        }
                        Ok::<_, Error>(Response::proceed())
                    })
                    .unwrap();
            }
            s.teardown().unwrap();
        }
        assert_eq!(sim.registers(VcpuId(0)).unwrap().rdi, 0x100);
        assert_eq!(
            events,
            [
                TraceEvent::ModuleLoad {
                    vcpu: VcpuId(0),
                    module: module.clone()
                },
                TraceEvent::ModuleUnload {
                    vcpu: VcpuId(0),
                    module: module.clone()
                },
                TraceEvent::ProcessStart {
                    vcpu: VcpuId(0),
                    pid: owner["pid"].as_u64().unwrap(),
                    ppid: truth["ppid"].as_u64().unwrap(),
                    name: owner["comm"].as_str().unwrap().to_owned(),
                    exe: Ok(exe.clone()),
                    argv: Ok(argv.clone()),
                },
                TraceEvent::ThreadExit {
                    vcpu: VcpuId(0),
                    tid: owner["pid"].as_u64().unwrap(),
                    pid: owner["pid"].as_u64().unwrap(),
                    name: owner["comm"].as_str().unwrap().to_owned(),
                    code: 0x100,
                },
            ],
            "{placement:?}"
        );
        // The module is one the guest reported, under its own name.
        let gt = ground_truth("linux-6.1");
        assert!(
            gt["modules"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m["name"].as_str() == Some(module.name.as_str())),
            "{}",
            module.name
        );
    }
}
