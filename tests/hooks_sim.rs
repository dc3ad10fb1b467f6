//! The hook manager on the simulated domain (not Xen) over the real Linux 6.1 snapshot: real
//! kernel functions found by symbol and by virtual address through the guest's own page tables,
//! both placements, two vCPUs on one breakpoint, breakpoints added and removed from the
//! handler, the guest writing a hooked page, return hooks, the guest's own `int3`, and
//! teardown after a failing handler.

mod support;

use std::time::Duration;

use support::fixture::fixture_file;
use xenvmi::backend::sim::{GuestAction, Outcome, SimDomain};
use xenvmi::backend::snapshot::Snapshot;
use xenvmi::backend::{Injection, PhysicalMemory, PhysicalMemoryWrite, VcpuState, VcpuStateWrite};
use xenvmi::event::hooks::{Hit, HookId, Hooks, Placement};
use xenvmi::event::session::{RunOptions, Session};
use xenvmi::event::{EventKind, Response};
use xenvmi::mem::GuestMemory;
use xenvmi::os::linux::{Linux, ProfileSource};
use xenvmi::{Error, Gpa, Gva, VcpuId};

const RUN: RunOptions = RunOptions {
    poll: Duration::ZERO,
    max_events: None,
    max_idle_polls: Some(1),
};

struct Guest {
    sim: SimDomain,
    linux: Linux,
}

fn guest() -> Guest {
    let snap = Snapshot::open(fixture_file("linux-6.1", "vmcore.elf").unwrap()).unwrap();
    let mut regs = snap.all_registers().to_vec();
    // Two vCPUs with the kernel's registers (the fixture has one).
    regs.push(regs[0]);
    let sim = SimDomain::new(snap, &regs);
    let linux = Linux::discover(&GuestMemory::new(&sim), &regs, ProfileSource::InGuest).unwrap();
    Guest { sim, linux }
}

impl Guest {
    /// The guest-physical address of a kernel text symbol (kernel text is linearly mapped).
    fn text_gpa(&self, name: &str) -> Gpa {
        let k = self.linux.info();
        let va = self.linux.symbol(name).unwrap().0;
        Gpa(k.text_pa.0 + (va - k.text_va.0))
    }
    fn byte(&self, gpa: Gpa) -> u8 {
        let mut b = [0u8; 1];
        self.sim.read_physical(gpa, &mut b).unwrap();
        b[0]
    }
    fn bytes16(&self, gpa: Gpa) -> [u8; 16] {
        let mut b = [0u8; 16];
        self.sim.read_physical(gpa, &mut b).unwrap();
        b
    }
    fn exec(&self, v: u32, gpa: Gpa) -> GuestAction {
        GuestAction::Execute {
            vcpu: VcpuId(v),
            gpa,
        }
    }
    fn assert_clean(&self) {
        let st = self.sim.state();
        assert!(
            st.paused_vcpus().is_empty(),
            "paused {:?}",
            st.paused_vcpus()
        );
        assert!(st.extra_views().is_empty() && st.restrictions() == 0);
        assert!(st.extra_frames().is_empty() && st.monitors().is_empty());
        assert!(st.vcpus_not_clean().is_empty() && !st.ring_enabled());
        assert!(st.injections_pending().is_empty());
    }
}

#[test]
fn breakpoints_by_symbol_and_va_hit_on_two_vcpus_at_once_in_both_placements() {
    for placement in [Placement::Stealth, Placement::InPlace] {
        let g = guest();
        let getpid = g.text_gpa("__x64_sys_getpid");
        let schedule = g.text_gpa("schedule");
        let original = g.bytes16(getpid);
        assert_ne!(original[0], 0xcc);
        let mem = GuestMemory::new(&g.sim);
        let mut hits = Vec::new();
        let mut int3_in_memory = Vec::new();
        {
            let mut s = Session::new(&g.sim).unwrap();
            let mut hooks = Hooks::new(&mut s, placement).unwrap();
            let by_symbol = hooks
                .add_symbol(&mut s, &mem, &g.linux, "__x64_sys_getpid")
                .unwrap();
            let va = g.linux.symbol("schedule").unwrap();
            let by_va = hooks
                .add_va(&mut s, &mem, g.linux.info().kernel_space, va)
                .unwrap();
            assert_eq!(hooks.address(by_symbol), Some(getpid));
            assert_eq!(hooks.address(by_va), Some(schedule));
            // Both vCPUs execute getpid back to back: the second hits while the first is still
            // paused on its own hit. Then one reads the breakpoint's bytes, one runs schedule.
            g.sim.script([
                g.exec(0, getpid),
                g.exec(1, getpid),
                GuestAction::Read {
                    vcpu: VcpuId(1),
                    gpa: getpid,
                },
                g.exec(0, schedule),
            ]);
            let stats = hooks
                .run(&mut s, &mem, &RUN, |ctx| {
                    if let Some(hit) = ctx.hit() {
                        hits.push((ctx.event().vcpu, hit));
                        int3_in_memory.push(g.byte(getpid) == 0xcc);
                    }
                    Ok::<_, Error>(Response::proceed())
                })
                .unwrap();
            assert!(stats.events >= 3);
            let st = g.sim.state();
            match placement {
                Placement::Stealth => {
                    // Guest memory never held an int3; the read saw the original byte.
                    assert!(int3_in_memory.iter().all(|&b| !b));
                    let read = st.outcomes().iter().find_map(|o| match o {
                        Outcome::Read(GuestAction::Read { .. }, byte) => Some(*byte),
                        _ => None,
                    });
                    assert_eq!(read, Some(original[0]));
                }
                Placement::InPlace => {
                    // The int3 stayed in memory through both hits (no window for the other
                    // vCPU); each hit ran the original instruction from the answer's bytes.
                    assert!(int3_in_memory.iter().all(|&b| b));
                    let emulated: Vec<[u8; 16]> = st
                        .outcomes()
                        .iter()
                        .filter_map(|o| match o {
                            Outcome::EmulatedInstruction(
                                GuestAction::Execute { gpa, .. },
                                insn,
                            ) if *gpa == getpid => Some(*insn),
                            _ => None,
                        })
                        .collect();
                    assert_eq!(emulated, vec![original, original]);
                }
            }
            drop(st);
            assert_eq!(hooks.stats().hits, 3);
            s.teardown().unwrap();
        }
        let ids: Vec<_> = hits
            .iter()
            .map(|(v, h)| match h {
                Hit::Breakpoint { gpa, .. } => (v.0, *gpa),
                Hit::Return { .. } => panic!("no return hook was armed"),
            })
            .collect();
        assert_eq!(
            ids,
            [(0, getpid), (1, getpid), (0, schedule)],
            "{placement:?}"
        );
        assert_eq!(
            g.bytes16(getpid),
            original,
            "{placement:?}: the original is back"
        );
        g.assert_clean();
    }
}

#[test]
fn the_handler_adds_and_removes_breakpoints_before_the_vcpu_resumes() {
    for placement in [Placement::Stealth, Placement::InPlace] {
        let g = guest();
        let a = g.text_gpa("__x64_sys_getpid");
        let b = g.text_gpa("__x64_sys_getppid");
        let b_va = g.linux.symbol("__x64_sys_getppid").unwrap();
        let mem = GuestMemory::new(&g.sim);
        let mut seen = Vec::new();
        {
            let mut s = Session::new(&g.sim).unwrap();
            let mut hooks = Hooks::new(&mut s, placement).unwrap();
            let first = hooks.add(&mut s, a).unwrap();
            g.sim
                .script([g.exec(0, a), g.exec(0, b), g.exec(0, a), g.exec(1, b)]);
            let mut second: Option<HookId> = None;
            hooks
                .run(&mut s, &mem, &RUN, |ctx| {
                    if let Some(Hit::Breakpoint { id, gpa }) = ctx.hit() {
                        seen.push(gpa);
                        if id == first {
                            // Replace A by B (by virtual address, in the event's address space).
                            ctx.remove(first)?;
                            second = Some(ctx.add_va(b_va)?);
                        } else if Some(id) == second {
                            ctx.remove(id)?;
                        }
                    }
                    Ok::<_, Error>(Response::proceed())
                })
                .unwrap();
            assert!(hooks.is_empty());
            s.teardown().unwrap();
        }
        // A once (then removed), B once (then removed): the later executions ran unhooked.
        assert_eq!(seen, [a, b], "{placement:?}");
        assert_ne!(g.byte(a), 0xcc);
        assert_ne!(g.byte(b), 0xcc);
        g.assert_clean();
    }
}

#[test]
fn a_guest_write_to_a_hooked_page_is_let_through_and_the_hook_rearmed() {
    for placement in [Placement::Stealth, Placement::InPlace] {
        let g = guest();
        let f = g.text_gpa("__x64_sys_getpid");
        let page = f.page_base();
        // Another spot on the same page, away from the breakpoint.
        let other = Gpa(page.0 + ((f.page_offset() + 0x800) & 0xfff));
        let mem = GuestMemory::new(&g.sim);
        let mut hits = 0;
        let shadow_after;
        let stats;
        {
            let mut s = Session::new(&g.sim).unwrap();
            let mut hooks = Hooks::new(&mut s, placement).unwrap();
            hooks.add(&mut s, f).unwrap();
            // The guest patches its own code (as text_poke does): elsewhere on the page, then
            // the very instruction under the breakpoint. Then it runs and reads it.
            g.sim.script([
                GuestAction::Write {
                    vcpu: VcpuId(0),
                    gpa: other,
                    bytes: vec![0x90, 0x90, 0x90],
                },
                GuestAction::Cpuid {
                    vcpu: VcpuId(0),
                    leaf: 0,
                },
                GuestAction::Write {
                    vcpu: VcpuId(1),
                    gpa: f,
                    bytes: vec![0x0f, 0x1f, 0x44, 0x00, 0x00],
                },
                GuestAction::Cpuid {
                    vcpu: VcpuId(1),
                    leaf: 0,
                },
                g.exec(0, f),
                GuestAction::Read {
                    vcpu: VcpuId(0),
                    gpa: f,
                },
            ]);
            hooks
                .run(&mut s, &mem, &RUN, |ctx| {
                    if ctx.hit().is_some() {
                        hits += 1;
                    }
                    Ok::<_, Error>(Response::proceed())
                })
                .unwrap();
            stats = hooks.stats();
            shadow_after = g.sim.state().extra_frames().first().map(|&frame| {
                let mut b = vec![0u8; 4096];
                g.sim.read_physical(Gpa(frame << 12), &mut b).unwrap();
                b
            });
            if placement == Placement::InPlace {
                // The guest's new byte lies under the int3 that went back on top of it.
                assert_eq!(g.byte(f), 0xcc);
            }
            s.teardown().unwrap();
        }
        assert_eq!(stats.refreshes, 2, "{placement:?}");
        assert_eq!(hits, 1, "{placement:?}: still hooked after the rewrite");
        // The guest's writes landed in its page; teardown did not put the old bytes back.
        assert_eq!(g.byte(other), 0x90);
        assert_eq!(
            &g.bytes16(f)[..5],
            &[0x0f, 0x1f, 0x44, 0x00, 0x00],
            "{placement:?}"
        );
        if let Some(shadow) = shadow_after {
            // The shadow had the new bytes and the int3 on top.
            let at = |a: Gpa| shadow[a.page_offset() as usize];
            assert_eq!((at(other), at(f)), (0x90, 0xcc));
            assert_eq!(shadow[f.page_offset() as usize + 1], 0x1f);
        }
        let read = g.sim.state().outcomes().iter().rev().find_map(|o| match o {
            Outcome::Read(GuestAction::Read { .. }, byte) => Some(*byte),
            _ => None,
        });
        if placement == Placement::Stealth {
            assert_eq!(
                read,
                Some(0x0f),
                "the read saw the guest's byte, not the int3"
            );
        }
        g.assert_clean();
    }
}

#[test]
fn return_hooks_match_their_call_by_stack_pointer_and_cr3() {
    let g = guest();
    let k = g.linux.info().clone();
    let entry = g.text_gpa("__x64_sys_getpid");
    // The caller: a return address inside another function.
    let ret_va = g.linux.symbol("schedule").unwrap().0 + 0x10;
    let ret_gpa = Gpa(k.text_pa.0 + (ret_va - k.text_va.0));
    // A stack slot in the kernel's direct map holding that return address.
    let slot_gpa = Gpa(0x10_0000);
    g.sim
        .write_physical(slot_gpa, &ret_va.to_le_bytes())
        .unwrap();
    let rsp = k.page_offset_base.0 + slot_gpa.0;
    for v in 0..2 {
        let mut r = g.sim.registers(VcpuId(v)).unwrap();
        r.rsp = rsp;
        g.sim.set_registers(VcpuId(v), &r).unwrap();
    }
    let mem = GuestMemory::new(&g.sim);
    let mut seen = Vec::new();
    let stats;
    {
        let mut s = Session::new(&g.sim).unwrap();
        let mut hooks = Hooks::new(&mut s, Placement::Stealth).unwrap();
        let id = hooks.add(&mut s, entry).unwrap();
        g.sim.script([
            g.exec(0, entry),
            // vCPU 0 returns (the `ret` popped 8 bytes: the handler moved rsp for it).
            g.exec(0, ret_gpa),
            // Passed again after the return was reported: no breakpoint there any more.
            g.exec(0, ret_gpa),
        ]);
        hooks
            .run(&mut s, &mem, &RUN, |ctx| {
                match ctx.hit() {
                    Some(Hit::Breakpoint { id: hit, .. }) => {
                        assert_eq!(hit, id);
                        assert_eq!(ctx.return_hook(7)?, ret_gpa);
                        let vcpu = ctx.event().vcpu;
                        let mut r = g.sim.registers(vcpu).unwrap();
                        r.rsp += 8;
                        g.sim.set_registers(vcpu, &r).unwrap();
                        // Meanwhile vCPU 1 passes the return address with another stack
                        // pointer: not this call.
                        let mut other = g.sim.registers(VcpuId(1)).unwrap();
                        other.rsp = rsp + 0x100;
                        g.sim.set_registers(VcpuId(1), &other).unwrap();
                        g.sim.script([g.exec(1, ret_gpa)]);
                    }
                    Some(Hit::Return { entry, tag, gpa }) => {
                        seen.push((ctx.event().vcpu, entry, tag, gpa));
                    }
                    None => {}
                }
                Ok::<_, Error>(Response::proceed())
            })
            .unwrap();
        stats = hooks.stats();
        s.teardown().unwrap();
        assert_eq!(seen, [(VcpuId(0), id, 7, ret_gpa)]);
    }
    assert_eq!(
        (stats.hits, stats.returns, stats.unmatched_returns),
        (1, 1, 1)
    );
    g.assert_clean();
}

#[test]
fn the_guests_own_int3_is_handed_back_to_it() {
    for placement in [Placement::Stealth, Placement::InPlace] {
        let g = guest();
        let ours = g.text_gpa("__x64_sys_getpid");
        // A kprobe-like int3 of the guest's own, elsewhere.
        let theirs = g.text_gpa("__x64_sys_getppid");
        g.sim.write_physical(theirs, &[0xcc]).unwrap();
        let mem = GuestMemory::new(&g.sim);
        let mut handler_calls = 0;
        {
            let mut s = Session::new(&g.sim).unwrap();
            let mut hooks = Hooks::new(&mut s, placement).unwrap();
            hooks.add(&mut s, ours).unwrap();
            g.sim
                .script([g.exec(1, theirs), g.exec(0, ours), g.exec(1, theirs)]);
            hooks
                .run(&mut s, &mem, &RUN, |_| {
                    handler_calls += 1;
                    Ok::<_, Error>(Response::proceed())
                })
                .unwrap();
            assert_eq!(hooks.stats().reinjected, 2);
            s.teardown().unwrap();
        }
        assert_eq!(handler_calls, 1, "only our hit reaches the handler");
        let bp = Injection::breakpoint(1);
        assert_eq!(
            g.sim.state().delivered(),
            [(VcpuId(1), bp), (VcpuId(1), bp)],
            "{placement:?}"
        );
        assert_eq!(g.byte(theirs), 0xcc, "the guest's own int3 stays");
        g.assert_clean();
    }
}

#[test]
fn a_failing_handler_answers_the_vcpu_and_every_hook_is_removed() {
    #[derive(Debug)]
    struct Refused;
    impl std::fmt::Display for Refused {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("refused by the test")
        }
    }
    impl std::error::Error for Refused {}
    for placement in [Placement::Stealth, Placement::InPlace] {
        let g = guest();
        let f = g.text_gpa("__x64_sys_getpid");
        let before = g.bytes16(f);
        let mem = GuestMemory::new(&g.sim);
        let err = {
            let mut s = Session::new(&g.sim).unwrap();
            let mut hooks = Hooks::new(&mut s, placement).unwrap();
            hooks.add(&mut s, f).unwrap();
            g.sim.script([g.exec(0, f), g.exec(1, f)]);
            hooks.run(&mut s, &mem, &RUN, |_| Err(Refused)).unwrap_err()
        };
        match &err {
            Error::Handler(source) => assert!(source.to_string().contains("refused")),
            e => panic!("{e}"),
        }
        assert_eq!(g.bytes16(f), before, "{placement:?}");
        g.assert_clean();
        // A handler that tries to end the session from inside is refused, not obeyed.
        let mut s = Session::new(&g.sim).unwrap();
        g.sim.script([GuestAction::Cpuid {
            vcpu: VcpuId(0),
            leaf: 0,
        }]);
        s.monitor(xenvmi::backend::Monitor::Cpuid).unwrap();
        let mut inner = None;
        s.run_with(&RUN, |ctx| {
            inner = Some(ctx.session().teardown().is_err());
            assert!(matches!(ctx.event().kind, EventKind::Cpuid { .. }));
            Ok::<_, Error>(Response::proceed())
        })
        .unwrap();
        assert_eq!(inner, Some(true));
        s.teardown().unwrap();
        g.assert_clean();
    }
}

#[test]
fn symbols_with_offsets_and_bad_specs() {
    let g = guest();
    let mem = GuestMemory::new(&g.sim);
    let mut s = Session::new(&g.sim).unwrap();
    let mut hooks = Hooks::new(&mut s, Placement::Stealth).unwrap();
    let base = g.text_gpa("do_sys_openat2");
    for (spec, off) in [("do_sys_openat2+0x4", 4), ("do_sys_openat2+16", 16)] {
        let id = hooks.add_symbol(&mut s, &mem, &g.linux, spec).unwrap();
        assert_eq!(hooks.address(id), Some(Gpa(base.0 + off)), "{spec}");
    }
    let missing = hooks
        .add_symbol(&mut s, &mem, &g.linux, "no_such_function")
        .unwrap_err();
    assert!(
        missing.to_string().contains("no_such_function"),
        "{missing}"
    );
    let bad = hooks
        .add_symbol(&mut s, &mem, &g.linux, "schedule+zz")
        .unwrap_err();
    assert!(bad.to_string().contains("schedule+zz"), "{bad}");
    // A user-space address that the kernel's tables do not map.
    let unmapped = hooks
        .add_va(&mut s, &mem, g.linux.info().kernel_space, Gva(0x1000))
        .unwrap_err();
    assert!(
        matches!(unmapped, Error::PageNotPresent { .. }),
        "{unmapped}"
    );
    assert_eq!(hooks.len(), 2);
    s.teardown().unwrap();
    g.assert_clean();
}

#[test]
fn a_guest_int3_under_a_stealth_breakpoint_met_in_view_0_is_the_guests() {
    let g = guest();
    let f = g.text_gpa("__x64_sys_getpid");
    let mem = GuestMemory::new(&g.sim);
    let mut hits = 0;
    {
        let mut s = Session::new(&g.sim).unwrap();
        let mut hooks = Hooks::new(&mut s, Placement::Stealth).unwrap();
        hooks.add(&mut s, f).unwrap();
        // The guest puts an int3 of its own exactly there (a kprobe), then vCPU 0 reads the
        // page (stepped in view 0) and, still in view 0, runs into the guest's int3; then it
        // runs the function in the execute view, where the breakpoint is ours.
        g.sim.script([
            GuestAction::Write {
                vcpu: VcpuId(1),
                gpa: f,
                bytes: vec![0xcc],
            },
            GuestAction::Cpuid {
                vcpu: VcpuId(1),
                leaf: 0,
            },
            GuestAction::Read {
                vcpu: VcpuId(0),
                gpa: f,
            },
            g.exec(0, f),
            g.exec(0, f),
        ]);
        hooks
            .run(&mut s, &mem, &RUN, |ctx| {
                if ctx.hit().is_some() {
                    hits += 1;
                }
                Ok::<_, Error>(Response::proceed())
            })
            .unwrap();
        assert_eq!(hooks.stats().reinjected, 1);
        s.teardown().unwrap();
    }
    assert_eq!(hits, 1, "only the execution in the execute view is our hit");
    assert_eq!(
        g.sim.state().delivered(),
        [(VcpuId(0), Injection::breakpoint(1))]
    );
    assert_eq!(g.byte(f), 0xcc, "the guest's int3 stays");
    g.assert_clean();
}
