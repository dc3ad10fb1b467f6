//! Semantic events (`trace::LinuxTracer`) on the simulated domain (not Xen) over the real Linux
//! 6.1 snapshot, both placements. vCPU 0 runs the kernel's own functions with the arguments
//! the kernel would pass them: one of its real modules, the task its vCPU runs, a system-call
//! frame and an `open_how`. Each hit must become the event that names what the guest itself
//! reported: its module list, the process on that vCPU with the argv of its
//! `/proc/PID/cmdline`, system call numbers as the x86-64 ABI fixes them.

mod support;

use std::time::Duration;

use support::fixture::{fixture_file, ground_truth};
use xenvmi::backend::sim::{GuestAction, SimDomain};
use xenvmi::backend::snapshot::Snapshot;
use xenvmi::backend::{PhysicalMemoryWrite, VcpuState, VcpuStateWrite};
use xenvmi::event::hooks::{Hooks, Placement};
use xenvmi::event::session::{RunOptions, Session};
use xenvmi::event::Response;
use xenvmi::mem::GuestMemory;
use xenvmi::os::linux::syscalls::ArgValue;
use xenvmi::os::linux::{Linux, ProfileSource};
use xenvmi::regs::Registers;
use xenvmi::trace::{ExitCode, LinuxTracer, Probe, TraceEvent, TraceFilter, What};
use xenvmi::{Error, Gpa, VcpuId};

const RUN: RunOptions = RunOptions {
    poll: Duration::ZERO,
    max_events: None,
    max_idle_polls: Some(1),
};

/// Scratch guest-physical pages (low memory the dump's kernel does not use for these
/// tests' purposes), reached through the kernel's direct map.
const RET_SLOT: u64 = 0x10_0000;
const FRAME: u64 = 0x10_1000;
const HOW: u64 = 0x10_2000;

struct Guest {
    sim: SimDomain,
    linux: Linux,
    /// vCPU 0's registers as on a kernel entry from the process it runs.
    kernel_regs: Registers,
    /// The guest's own report about that process.
    pid: u64,
    ppid: u64,
    comm: String,
    argv: Vec<String>,
}

fn guest() -> Guest {
    let snap = Snapshot::open(fixture_file("linux-6.1", "vmcore.elf").unwrap()).unwrap();
    let regs = snap.all_registers().to_vec();
    let sim = SimDomain::new(snap, &regs);
    let linux = Linux::discover(&GuestMemory::new(&sim), &regs, ProfileSource::InGuest).unwrap();
    // vCPU 0 is in user mode in the dump (the guest's report: pid 106, vmi_busy_loop).
    // Entering the kernel: CPL 0, and swapgs makes the kernel's per-CPU base GS.base.
    let gt = ground_truth("linux-6.1");
    let owner = &gt["vcpu_owners"][0];
    let truth = gt["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["pid"] == owner["pid"])
        .unwrap();
    let mut r = regs[0];
    r.cs_sel = 0x10;
    r.gs_base = regs[0].kernel_gs_base;
    Guest {
        linux,
        kernel_regs: r,
        pid: owner["pid"].as_u64().unwrap(),
        ppid: truth["ppid"].as_u64().unwrap(),
        comm: owner["comm"].as_str().unwrap().to_owned(),
        argv: truth["cmdline"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_owned())
            .collect(),
        sim,
    }
}

impl Guest {
    fn text(&self, name: &str) -> Gpa {
        let k = self.linux.info();
        Gpa(k.text_pa.0 + (self.linux.symbol(name).unwrap().0 - k.text_va.0))
    }

    fn direct_map(&self, gpa: u64) -> u64 {
        self.linux.info().page_offset_base.0 + gpa
    }

    /// Where the process keeps its arguments (`mm->arg_start`): a user string the
    /// guest's own `/proc/PID/cmdline` showed (argv[0]).
    fn arg_start(&self) -> u64 {
        let mem = GuestMemory::new(&self.sim);
        let l = &self.linux;
        let task = l.current_task(&mem, &self.kernel_regs).unwrap();
        let ks = l.info().kernel_space;
        let mm = mem
            .read_u64(ks, task.object.checked_add(l.offsets().task_mm).unwrap())
            .unwrap();
        let off = l.types().require("mm_struct", "arg_start").unwrap();
        mem.read_u64(ks, xenvmi::Gva(mm + off)).unwrap()
    }

    /// Run `func` once on vCPU 0 with `set` applied to its kernel-entry registers; a
    /// `ret` to `then` follows when given (with `rax` the return value).
    fn call(
        &self,
        hooks: &mut Hooks,
        s: &mut Session<'_, SimDomain>,
        tracer: &mut LinuxTracer,
        func: &str,
        set: impl FnOnce(&mut Registers),
        ret: Option<u64>,
    ) -> Vec<Result<TraceEvent, Error>> {
        let mem = GuestMemory::new(&self.sim);
        let mut r = self.kernel_regs;
        set(&mut r);
        let ret_va = self.linux.symbol("schedule").unwrap().0 + 0x10;
        let k = self.linux.info();
        let ret_gpa = Gpa(k.text_pa.0 + (ret_va - k.text_va.0));
        self.sim
            .write_physical(Gpa(RET_SLOT), &ret_va.to_le_bytes())
            .unwrap();
        r.rsp = self.direct_map(RET_SLOT);
        self.sim.set_registers(VcpuId(0), &r).unwrap();
        self.sim.script([GuestAction::Execute {
            vcpu: VcpuId(0),
            gpa: self.text(func),
        }]);
        let mut events = Vec::new();
        let sim = &self.sim;
        hooks
            .run(s, &mem, &RUN, |ctx| {
                let returning = matches!(
                    ctx.hit(),
                    Some(xenvmi::event::hooks::Hit::Breakpoint { .. })
                );
                if let Some(e) = tracer.handle(&self.linux, ctx) {
                    events.push(e);
                }
                if let (true, Some(rax)) = (returning, ret) {
                    // The function returns: `ret` pops the slot, rax holds the result.
                    let mut r = sim.registers(VcpuId(0)).unwrap();
                    r.rsp += 8;
                    r.rax = rax;
                    sim.set_registers(VcpuId(0), &r).unwrap();
                    sim.script([GuestAction::Execute {
                        vcpu: VcpuId(0),
                        gpa: ret_gpa,
                    }]);
                }
                Ok::<_, Error>(Response::proceed())
            })
            .unwrap();
        events
    }

    fn assert_clean(&self) {
        let st = self.sim.state();
        assert!(st.paused_vcpus().is_empty());
        assert!(st.monitors().is_empty());
        assert!(st.extra_views().is_empty());
        assert!(st.extra_frames().is_empty());
    }
}

fn ok(events: Vec<Result<TraceEvent, Error>>) -> Vec<TraceEvent> {
    events.into_iter().map(|e| e.unwrap()).collect()
}

#[test]
fn process_module_and_exit_events_name_what_the_kernel_names() {
    for placement in [Placement::Stealth, Placement::InPlace] {
        let g = guest();
        let mem = GuestMemory::new(&g.sim);
        let module = g.linux.modules(&mem).next().unwrap().unwrap();
        let task = g.linux.current_task(&mem, &g.kernel_regs).unwrap();
        let mut all = Vec::new();
        {
            let mut s = Session::new(&g.sim).unwrap();
            let mut hooks = Hooks::new(&mut s, placement).unwrap();
            let mut t = LinuxTracer::place(
                &mut hooks,
                &mut s,
                &mem,
                &g.linux,
                &[
                    Probe::ModuleLoad,
                    Probe::ModuleUnload,
                    Probe::Exit,
                    Probe::ProcessStart,
                ],
                TraceFilter::new(),
            )
            .unwrap();
            assert!(t.not_placed().is_empty());
            assert_eq!(t.probes().count(), 4);
            let m = module.object.0;
            let o = task.object.0;
            all.extend(g.call(
                &mut hooks,
                &mut s,
                &mut t,
                "do_init_module",
                |r| r.rdi = m,
                None,
            ));
            all.extend(g.call(
                &mut hooks,
                &mut s,
                &mut t,
                "free_module",
                |r| r.rdi = m,
                None,
            ));
            all.extend(g.call(&mut hooks, &mut s, &mut t, "finalize_exec", |_| {}, None));
            // taskstats_exit(tsk, group_dead): another thread of the group lives on, then
            // the last one goes. The code is the task's `exit_code` (0: it is running).
            for dead in [0, 1] {
                all.extend(g.call(
                    &mut hooks,
                    &mut s,
                    &mut t,
                    "taskstats_exit",
                    |r| {
                        r.rdi = o;
                        r.rsi = dead;
                    },
                    None,
                ));
            }
            s.teardown().unwrap();
        }
        let what: Vec<What> = ok(all)
            .into_iter()
            .map(|e| {
                assert_eq!(
                    (e.pid, e.tid, e.comm.as_str()),
                    (g.pid, g.pid, g.comm.as_str())
                );
                assert_eq!(e.vcpu, VcpuId(0));
                e.what
            })
            .collect();
        // A script (`/bin/sh /bin/vmi_busy_loop`): the program is the shell, which in these
        // busybox-static guests is /bin/busybox (fixtures/README.md).
        assert_eq!(
            what,
            [
                What::ModuleLoad {
                    module: module.clone()
                },
                What::ModuleUnload {
                    module: module.clone()
                },
                What::ProcessStart {
                    ppid: g.ppid,
                    exe: Ok("/bin/busybox".to_owned()),
                    argv: Ok(g.argv.clone()),
                },
                What::ThreadExit { code: ExitCode(0) },
                What::ProcessExit { code: ExitCode(0) },
            ],
            "{placement:?}"
        );
        // The module is one the guest reported, under its own name.
        let gt = ground_truth("linux-6.1");
        assert!(gt["modules"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["name"].as_str() == Some(module.name.as_str())));
        g.assert_clean();
    }
}

/// A system-call frame (`struct pt_regs`) for `openat(AT_FDCWD, argv[0], O_RDONLY|O_CLOEXEC,
/// 0)`, written where the tests' `do_syscall_64` finds it.
fn openat_frame(g: &Guest) -> u64 {
    let t = g.linux.types();
    let size = t.struct_size("pt_regs").unwrap() as usize;
    let mut frame = vec![0u8; size];
    let mut put = |field: &str, v: u64| {
        let o = t.require("pt_regs", field).unwrap() as usize;
        frame[o..o + 8].copy_from_slice(&v.to_le_bytes());
    };
    put("orig_ax", 257);
    put("di", (-100i64) as u64);
    put("si", g.arg_start());
    put("dx", 0o2000000);
    put("r10", 0);
    g.sim.write_physical(Gpa(FRAME), &frame).unwrap();
    g.direct_map(FRAME)
}

#[test]
fn system_calls_are_decoded_from_the_guests_own_metadata() {
    // do_syscall_64(struct pt_regs *regs, int nr), as 6.1's arch/x86/entry/common.c
    // declares it: the tracer finds both by name in the guest's BTF.
    let g = guest();
    let params: Vec<(String, String)> = g
        .linux
        .types()
        .function_params("do_syscall_64")
        .unwrap()
        .into_iter()
        .map(|p| (p.type_name, p.name))
        .collect();
    assert_eq!(
        params,
        [
            ("struct pt_regs *".to_owned(), "regs".to_owned()),
            ("int".to_owned(), "nr".to_owned())
        ]
    );
    for placement in [Placement::Stealth, Placement::InPlace] {
        let g = guest();
        let mem = GuestMemory::new(&g.sim);
        let frame = openat_frame(&g);
        let events;
        {
            let mut s = Session::new(&g.sim).unwrap();
            let mut hooks = Hooks::new(&mut s, placement).unwrap();
            let mut t = LinuxTracer::place(
                &mut hooks,
                &mut s,
                &mem,
                &g.linux,
                &[Probe::Syscall],
                TraceFilter::new(),
            )
            .unwrap();
            events = ok(g.call(
                &mut hooks,
                &mut s,
                &mut t,
                "do_syscall_64",
                |r| {
                    r.rdi = frame;
                    r.rsi = 257;
                },
                None,
            ));
            s.teardown().unwrap();
        }
        assert_eq!(events.len(), 1, "{placement:?}");
        let e = &events[0];
        assert_eq!((e.pid, e.comm.as_str()), (g.pid, g.comm.as_str()));
        let What::Syscall {
            nr,
            info,
            args,
            raw,
        } = &e.what
        else {
            panic!("{e:?}")
        };
        assert_eq!(*nr, 257);
        let info = info.as_ref().unwrap();
        assert_eq!(info.name, "openat");
        let names: Vec<&str> = info.args.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["dfd", "filename", "flags", "mode"]);
        assert_eq!(
            args,
            &[
                ArgValue::Int(-100),
                ArgValue::Str(g.argv[0].clone()),
                ArgValue::Int(0o2000000),
                ArgValue::Uint(0)
            ]
        );
        assert_eq!(raw[0], (-100i64) as u64);
        // The JSON form users see.
        let j = e.to_json();
        assert_eq!(j["type"], "syscall");
        assert_eq!(j["name"], "openat");
        assert_eq!(j["args"]["filename"], g.argv[0].as_str());
        assert_eq!(j["pid"], g.pid);
        g.assert_clean();
    }
}

#[test]
fn the_filter_drops_hits_before_they_are_decoded() {
    let g = guest();
    let mem = GuestMemory::new(&g.sim);
    let frame = openat_frame(&g);
    let cases: [(TraceFilter, bool); 6] = [
        (TraceFilter::new().with_syscalls(["read", "execve"]), false),
        (TraceFilter::new().with_syscalls(["openat"]), true),
        (TraceFilter::new().with_pids([g.pid + 1]), false),
        (TraceFilter::new().with_pids([g.pid]), true),
        (TraceFilter::new().with_comms(["cron"]), false),
        (
            TraceFilter::new()
                .with_comms([g.comm.as_str()])
                .with_syscalls(["openat"]),
            true,
        ),
    ];
    for (filter, passes) in cases {
        let mut s = Session::new(&g.sim).unwrap();
        let mut hooks = Hooks::new(&mut s, Placement::Stealth).unwrap();
        let by_process = filter.by_process();
        let mut t = LinuxTracer::place(
            &mut hooks,
            &mut s,
            &mem,
            &g.linux,
            &[Probe::Syscall],
            filter.clone(),
        )
        .unwrap();
        // A filter on processes keeps the exit probe too (unreported).
        assert_eq!(
            t.probes().count(),
            1 + usize::from(by_process),
            "{filter:?}"
        );
        let events = g.call(
            &mut hooks,
            &mut s,
            &mut t,
            "do_syscall_64",
            |r| {
                r.rdi = frame;
                r.rsi = 257;
            },
            None,
        );
        assert_eq!(events.len(), usize::from(passes), "{filter:?}");
        assert_eq!(t.filtered(), u64::from(!passes), "{filter:?}");
        s.teardown().unwrap();
        g.assert_clean();
    }
    // A name the guest's table does not have is refused, by name.
    let mut s = Session::new(&g.sim).unwrap();
    let mut hooks = Hooks::new(&mut s, Placement::Stealth).unwrap();
    let e = LinuxTracer::place(
        &mut hooks,
        &mut s,
        &mem,
        &g.linux,
        &[Probe::Syscall],
        TraceFilter::new().with_syscalls(["no_such_call"]),
    )
    .unwrap_err();
    assert!(e.to_string().contains("sys_no_such_call"), "{e}");
    s.teardown().unwrap();
}

#[test]
fn file_opens_report_their_path_flags_and_result_at_return() {
    for placement in [Placement::Stealth, Placement::InPlace] {
        let g = guest();
        let mem = GuestMemory::new(&g.sim);
        // struct open_how { u64 flags; u64 mode; u64 resolve; }: O_WRONLY|O_CREAT, 0644.
        let t = g.linux.types();
        let mut how = [0u8; 24];
        let fo = t.require("open_how", "flags").unwrap() as usize;
        let mo = t.require("open_how", "mode").unwrap() as usize;
        how[fo..fo + 8].copy_from_slice(&0o101u64.to_le_bytes());
        how[mo..mo + 8].copy_from_slice(&0o644u64.to_le_bytes());
        g.sim.write_physical(Gpa(HOW), &how).unwrap();
        let filename = g.arg_start();
        let mut events = Vec::new();
        {
            let mut s = Session::new(&g.sim).unwrap();
            let mut hooks = Hooks::new(&mut s, placement).unwrap();
            let mut t = LinuxTracer::place(
                &mut hooks,
                &mut s,
                &mem,
                &g.linux,
                &[Probe::FileOpen],
                TraceFilter::new(),
            )
            .unwrap();
            for result in [3u64, (-2i64) as u64] {
                events.extend(ok(g.call(
                    &mut hooks,
                    &mut s,
                    &mut t,
                    "do_sys_openat2",
                    |r| {
                        r.rdi = (-100i64) as u64;
                        r.rsi = filename;
                        r.rdx = g.direct_map(HOW);
                    },
                    Some(result),
                )));
            }
            s.teardown().unwrap();
        }
        let what: Vec<What> = events.into_iter().map(|e| e.what).collect();
        let open = |result| What::FileOpen {
            dfd: -100,
            path: Ok(g.argv[0].clone()),
            flags: 0o101,
            mode: 0o644,
            result: Some(result),
            unfollowed: None,
        };
        assert_eq!(what, [open(3), open(-2)], "{placement:?}");
        g.assert_clean();
    }
}
