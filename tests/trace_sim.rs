//! Semantic events (`trace::LinuxTracer`) on the simulated domain (not Xen) over the real Linux
//! 6.1 snapshot, both placements. vCPU 0 runs the kernel's own functions with the arguments
//! the kernel would pass them: one of its real modules, the task its vCPU runs, a system-call
//! frame and an `open_how`. Each hit must become the event that names what the guest itself
//! reported: its module list, the process on that vCPU with the argv of its
//! `/proc/PID/cmdline`, system call numbers as the x86-64 ABI fixes them.

mod support;

use support::fixture::{fixture_file, ground_truth};
use support::traced::{guest, Guest, FRAME, HOW, RUN};
use xenvmi::backend::sim::{GuestAction, SimDomain};
use xenvmi::backend::snapshot::Snapshot;
use xenvmi::backend::{PhysicalMemoryWrite, VcpuStateWrite};
use xenvmi::event::hooks::{Hooks, Placement};
use xenvmi::event::session::Session;
use xenvmi::event::Response;
use xenvmi::mem::GuestMemory;
use xenvmi::os::linux::syscalls::ArgValue;
use xenvmi::os::linux::{Linux, ProfileSource};
use xenvmi::regs::Registers;
use xenvmi::trace::{ExitCode, LinuxTracer, Probe, TraceEvent, TraceFilter, What};
use xenvmi::{Error, Gpa, VcpuId};

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

/// A kernel without `finalize_exec` and `taskstats_exit`: its kallsyms, from the guest's own
/// `/proc/kallsyms`, with those two lines taken out.
fn guest_lacking(missing: &[&str]) -> (SimDomain, Linux, Registers) {
    let kallsyms = fixture_file("linux-6.1", "kallsyms").unwrap();
    let text = std::fs::read_to_string(&kallsyms).unwrap();
    let kept: String = text
        .lines()
        .filter(|l| {
            !missing
                .iter()
                .any(|m| l.split_whitespace().nth(2) == Some(m))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let dir = std::env::temp_dir().join(format!("xenvmi-trace-missing-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let symbols = dir.join("kallsyms");
    std::fs::write(&symbols, kept).unwrap();
    let snap = Snapshot::open(fixture_file("linux-6.1", "vmcore.elf").unwrap()).unwrap();
    let regs = snap.all_registers().to_vec();
    let sim = SimDomain::new(snap, &regs);
    let linux = Linux::discover(
        &GuestMemory::new(&sim),
        &regs,
        ProfileSource::Files {
            btf: fixture_file("linux-6.1", "btf-vmlinux").unwrap(),
            symbols,
        },
    )
    .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let mut r = regs[0];
    r.cs_sel = 0x10;
    r.gs_base = regs[0].kernel_gs_base;
    (sim, linux, r)
}

#[test]
fn a_kernel_without_a_function_loses_that_event_kind_alone() {
    let (sim, linux, r) = guest_lacking(&["finalize_exec", "taskstats_exit"]);
    assert!(linux.symbol("finalize_exec").is_none());
    let mem = GuestMemory::new(&sim);
    let mut s = Session::new(&sim).unwrap();
    let mut hooks = Hooks::new(&mut s, Placement::Stealth).unwrap();
    let mut t = LinuxTracer::place(
        &mut hooks,
        &mut s,
        &mem,
        &linux,
        &[Probe::ProcessStart, Probe::Exit, Probe::ModuleLoad],
        TraceFilter::new(),
    )
    .unwrap();
    // The start probe is refused by the function's name; the others are placed, the exit
    // on do_exit, its fallback.
    let np = t.not_placed();
    assert_eq!(np.len(), 1);
    assert_eq!(np[0].probe, Probe::ProcessStart);
    let msg = np[0].reason.to_string();
    assert!(
        msg.contains("finalize_exec") && msg.contains("process_start events are not traced"),
        "{msg}"
    );
    let placed: Vec<Probe> = t.probes().map(|p| p.1).collect();
    assert_eq!(placed, [Probe::Exit, Probe::ModuleLoad]);
    // do_exit(code) on the vCPU running pid 106, a process with one thread (its
    // signal->live is 1): its process ends, with the code in rdi.
    let k = linux.info();
    let gpa = Gpa(k.text_pa.0 + (linux.symbol("do_exit").unwrap().0 - k.text_va.0));
    let mut regs = r;
    regs.rdi = 0x700;
    sim.set_registers(VcpuId(0), &regs).unwrap();
    sim.script([GuestAction::Execute {
        vcpu: VcpuId(0),
        gpa,
    }]);
    let mut events = Vec::new();
    hooks
        .run(&mut s, &mem, &RUN, |ctx| {
            if let Some(e) = t.handle(&linux, ctx) {
                events.push(e.unwrap());
            }
            Ok::<_, Error>(Response::proceed())
        })
        .unwrap();
    s.teardown().unwrap();
    let gt = ground_truth("linux-6.1");
    let owner = &gt["vcpu_owners"][0];
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].pid, owner["pid"].as_u64().unwrap());
    assert_eq!(
        events[0].what,
        What::ProcessExit {
            code: ExitCode(0x700)
        }
    );
    assert_eq!(ExitCode(0x700).status(), Some(7));
}
