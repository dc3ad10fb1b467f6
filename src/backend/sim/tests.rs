use super::*;
use crate::backend::snapshot::Snapshot;
use crate::event::session::{RunOptions, Session};
use crate::event::{EventKind, Response};

fn domain(vcpus: usize) -> SimDomain {
    let mem = Snapshot::from_bytes(vec![0u8; 1 << 20], None).unwrap();
    let regs = Registers {
        cr0: 0x8005_0033,
        cr3: 0x1000,
        cr4: 0x3006f0,
        ..Registers::default()
    };
    SimDomain::new(mem, &vec![regs; vcpus])
}

const RUN: RunOptions = RunOptions {
    poll: Duration::ZERO,
    max_events: None,
    max_idle_polls: Some(1),
};

fn cr4(v: u32, value: u64) -> GuestAction {
    GuestAction::WriteCr {
        vcpu: VcpuId(v),
        register: ControlRegister::Cr4,
        value,
    }
}

const SYNC_CR4: Monitor = Monitor::ControlRegister {
    register: ControlRegister::Cr4,
    sync: true,
    on_change_only: true,
    ignore_mask: 0,
};

#[test]
fn deny_cancels_a_control_register_write_and_resumes_the_vcpu() {
    let d = domain(1);
    d.script([cr4(0, 0x6f0)]); // clears SMEP/SMAP
    let mut s = Session::new(&d).unwrap();
    s.monitor(SYNC_CR4).unwrap();
    let mut seen = Vec::new();
    let stats = s
        .run(&RUN, |e| {
            seen.push(e.kind);
            Response::deny()
        })
        .unwrap();
    assert_eq!(stats.events, 1);
    assert_eq!(
        seen,
        vec![EventKind::ControlRegister {
            register: ControlRegister::Cr4,
            old: 0x3006f0,
            new: 0x6f0
        }]
    );
    assert_eq!(
        d.registers(VcpuId(0)).unwrap().cr4,
        0x3006f0,
        "write denied"
    );
    assert!(matches!(d.state().outcomes()[0], Outcome::Denied(_)));
    assert!(d.state().paused_vcpus().is_empty());
}

#[test]
fn without_deny_the_write_happens_on_resume() {
    let d = domain(1);
    d.script([
        cr4(0, 0x6f0),
        GuestAction::WriteMsr {
            vcpu: VcpuId(0),
            index: 0xc000_0082,
            value: 0xbad,
        },
    ]);
    let mut s = Session::new(&d).unwrap();
    s.monitor(SYNC_CR4).unwrap();
    s.monitor(Monitor::Msr {
        index: 0xc000_0082,
        on_change_only: false,
    })
    .unwrap();
    s.run(&RUN, |_| Response::proceed()).unwrap();
    assert_eq!(d.registers(VcpuId(0)).unwrap().cr4, 0x6f0);
    assert_eq!(d.state().msr(VcpuId(0), 0xc000_0082), Some(0xbad));
}

#[test]
fn a_response_with_the_wrong_version_leaves_the_vcpu_paused_as_on_xen() {
    let d = domain(1);
    let mut front_page_requests = 0;
    d.script([cr4(0, 0x6f0)]);
    d.set_monitor(SYNC_CR4, true).unwrap();
    assert!(d.run_guest());
    // Answer by hand with version 6.
    let page = d.ring();
    let mut ring = BackRing::attach(page);
    let mut req = [0u8; ENTRY_SIZE];
    while ring.get_request(page, &mut req) {
        front_page_requests += 1;
        req[0..4].copy_from_slice(&6u32.to_le_bytes());
        ring.put_response(page, &req);
    }
    ring.push_responses(page);
    d.notify().unwrap();
    assert_eq!(front_page_requests, 1);
    assert_eq!(d.state().responses_skipped(), 1);
    assert_eq!(
        d.state().paused_vcpus(),
        vec![VcpuId(0)],
        "stranded, exactly the trap xenvmi avoids"
    );
}
use crate::vmevent::ring::BackRing;

#[test]
fn emulate_performs_a_write_the_view_forbids() {
    let d = domain(1);
    let mut s = Session::new(&d).unwrap();
    s.set_mem_access(ViewId::HOST, Gfn(0x10), MemAccess::R | MemAccess::X)
        .unwrap();
    d.script([GuestAction::Write {
        vcpu: VcpuId(0),
        gpa: Gpa(0x10_008),
        bytes: vec![0xaa; 4],
    }]);
    let mut kinds = Vec::new();
    s.run(&RUN, |e| {
        kinds.push(e.kind);
        Response::emulate()
    })
    .unwrap();
    assert!(matches!(
        kinds[0],
        EventKind::MemoryAccess {
            gfn: Gfn(0x10),
            offset: 8,
            access: MemAccess::W,
            ..
        }
    ));
    let mut b = [0u8; 4];
    d.read_physical(Gpa(0x10_008), &mut b).unwrap();
    assert_eq!(b, [0xaa; 4]);
    drop(s);
    assert_eq!(d.state().restrictions(), 0, "access restored at teardown");
}

#[test]
fn view_switch_plus_singlestep_then_switch_back() {
    let d = domain(1);
    let mut s = Session::new(&d).unwrap();
    let v = s.create_view(MemAccess::all()).unwrap();
    s.set_mem_access(v, Gfn(0x20), MemAccess::X).unwrap(); // execute-only in view v
    s.switch_view(v).unwrap();
    s.monitor(Monitor::SingleStep).unwrap();
    d.script([
        GuestAction::Read {
            vcpu: VcpuId(0),
            gpa: Gpa(0x20_000),
        },
        GuestAction::Cpuid {
            vcpu: VcpuId(0),
            leaf: 0,
        },
    ]);
    let mut trace = Vec::new();
    s.run(&RUN, |e| {
        trace.push((e.kind, e.view));
        match e.kind {
            // Read of the protected page: let it through in view 0 for one instruction.
            EventKind::MemoryAccess { .. } => Response::proceed()
                .switch_view(ViewId::HOST)
                .toggle_singlestep(),
            // Back to the protected view after the step.
            EventKind::SingleStep { .. } => Response::proceed().switch_view(v).toggle_singlestep(),
            _ => Response::proceed(),
        }
    })
    .unwrap();
    assert!(
        matches!(trace[0], (EventKind::MemoryAccess { access: MemAccess::R, .. }, Some(x)) if x == v)
    );
    assert!(matches!(
        trace[1],
        (EventKind::SingleStep { .. }, Some(ViewId(0)))
    ));
    assert_eq!(trace.len(), 2);
    // The read completed in view 0 (after the switch), seeing the frame's byte.
    assert!(matches!(
        d.state().outcomes()[0],
        Outcome::Read(GuestAction::Read { .. }, 0)
    ));
    s.teardown().unwrap();
    let st = d.state();
    assert!(
        st.extra_views().is_empty() && st.vcpus_not_clean().is_empty() && st.monitors().is_empty()
    );
}

#[test]
fn more_vcpus_than_ring_slots_are_throttled_and_all_answered() {
    let d = domain(20);
    d.script((0..20).map(|v| cr4(v, 0x6f0)));
    let mut s = Session::new(&d).unwrap();
    s.monitor(SYNC_CR4).unwrap();
    let stats = s.run(&RUN, |_| Response::deny()).unwrap();
    assert_eq!(stats.events, 20);
    assert_eq!(d.state().events_raised(), 20);
    assert!(d.state().paused_vcpus().is_empty());
}

#[test]
fn a_panicking_handler_is_answered_and_everything_is_undone() {
    let d = domain(4);
    d.script((0..4).map(|v| cr4(v, 0x6f0)));
    let mut s = Session::new(&d).unwrap();
    s.monitor(SYNC_CR4).unwrap();
    let v = s.create_view(MemAccess::all()).unwrap();
    s.set_mem_access(v, Gfn(3), MemAccess::R).unwrap();
    s.change_gfn(v, Gfn(4), Gfn(5)).unwrap();
    s.switch_view(v).unwrap();
    let r = s.run(&RUN, |_| -> Response { panic!("handler bug") });
    assert!(
        matches!(r, Err(Error::HandlerPanicked { ref message }) if message == "handler bug"),
        "{r:?}"
    );
    let st = d.state();
    assert!(st.paused_vcpus().is_empty(), "{:?}", st.paused_vcpus());
    assert!(st.monitors().is_empty());
    assert!(st.extra_views().is_empty());
    assert_eq!(st.restrictions(), 0);
    assert!(st.vcpus_not_clean().is_empty());
    assert!(!st.ring_enabled());
}

#[test]
fn dropping_a_session_between_events_answers_the_rest() {
    let d = domain(6);
    d.script((0..6).map(|v| cr4(v, 0x6f0)));
    {
        let mut s = Session::new(&d).unwrap();
        s.monitor(SYNC_CR4).unwrap();
        let opts = RunOptions {
            max_events: Some(2),
            ..RUN
        };
        assert_eq!(s.run(&opts, |_| Response::deny()).unwrap().events, 2);
        assert!(
            !d.state().paused_vcpus().is_empty(),
            "some vCPUs wait for answers"
        );
    }
    assert!(d.state().paused_vcpus().is_empty());
    assert!(!d.state().ring_enabled());
}

#[test]
fn a_view_object_restores_everything_when_dropped() {
    use crate::event::view::View;
    let d = domain(1);
    {
        let mut v = View::create(&d, MemAccess::all()).unwrap();
        v.set_access(Gfn(3), MemAccess::R).unwrap();
        v.set_access(Gfn(3), MemAccess::empty()).unwrap();
        let frame = v.remap_to_new_frame(Gfn(4)).unwrap();
        v.deliver_ve(Gfn(5)).unwrap();
        v.hide().unwrap();
        let st = d.state();
        assert_eq!(st.extra_views(), vec![v.id()]);
        assert_eq!(st.extra_frames(), &[frame.0]);
        assert!(st.restrictions() >= 4);
    }
    let st = d.state();
    assert!(st.extra_views().is_empty());
    assert_eq!(st.restrictions(), 0);
    assert!(st.extra_frames().is_empty());
    assert_eq!(
        d.mem_access(ViewId::HOST, Gfn(3)).unwrap(),
        MemAccess::all()
    );
}

/// A journal path of its own for each test.
fn journal_path(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("xenvmi-sim-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir.join("sim.journal")
}

/// Make a journal look like it was left by a process that is gone (a reaped child's pid).
fn orphan(path: &std::path::Path) {
    let mut child = std::process::Command::new("true")
        .spawn()
        .expect("spawn true");
    let pid = child.id();
    child.wait().expect("reap");
    let text = std::fs::read_to_string(path).expect("journal");
    let (header, rest) = text.split_once('\n').expect("header line");
    // Keep the boot and domain words: only the process changes.
    let bound: Vec<&str> = header.split(' ').skip(4).collect();
    std::fs::write(
        path,
        format!(
            "xenvmi-journal 2 pid={pid} start=1 {}\n{rest}",
            bound.join(" ")
        ),
    )
    .expect("rewrite header");
}

#[test]
fn a_killed_monitor_is_cleaned_up_by_the_next_one() {
    // 10 vCPUs: more than the ring's 8 slots, so release responses go out in two batches.
    let d = domain(10);
    let path = journal_path("killed");
    let mut s = Session::new(&d).unwrap();
    s.persist_journal(&path, "sim").unwrap();
    s.monitor(SYNC_CR4).unwrap();
    let view = s.create_view(MemAccess::all()).unwrap();
    s.set_mem_access(view, Gfn(0x10), MemAccess::R | MemAccess::X)
        .unwrap();
    s.switch_view(view).unwrap();
    // Host-view access too: Xen changes it only while a ring is enabled, so recovery must
    // restore it on a fresh ring (found on real Xen).
    s.set_mem_access(ViewId::HOST, Gfn(0x12), MemAccess::R | MemAccess::X)
        .unwrap();
    let frame = s.alloc_frame().unwrap();
    s.change_gfn(view, Gfn(0x11), frame).unwrap();
    s.singlestep(VcpuId(9), true).unwrap();
    for v in 0..10 {
        d.script([
            cr4(v, 0x6f0),
            GuestAction::Write {
                vcpu: VcpuId(v),
                gpa: Gpa(0x10_000 + u64::from(v) * 8),
                bytes: vec![0xbb; 8],
            },
        ]);
    }
    // Answer a few events, then let the guest raise more and "die" without a teardown: the
    // ring holds unanswered requests and their vCPUs are paused.
    s.run(
        &RunOptions {
            max_events: Some(3),
            ..RUN
        },
        |_| Response::proceed(),
    )
    .unwrap();
    assert!(d.run_guest(), "requests are waiting on the ring");
    let stranded = d.state().paused_vcpus().len();
    assert!(stranded > 0);
    std::mem::forget(s);
    assert!(path.exists(), "the journal outlives its process");

    // The next monitor cannot attach over it, and says why. (A session over another domain
    // handle: in the simulation, a session on `d` would share the dead one's ring page, which
    // on Xen only the dead process had mapped.)
    orphan(&path);
    let other = domain(1);
    let mut next = Session::new(&other).unwrap();
    match next.persist_journal(&path, "sim") {
        Err(Error::JournalInUse { alive, .. }) => assert!(!alive),
        other => panic!("expected JournalInUse, got {other:?}"),
    }
    drop(next);

    let r = Session::recover(&d, &path)
        .unwrap()
        .expect("a journal to recover");
    assert!(r.ring_was_enabled);
    assert_eq!(r.vcpus_released, 10);
    assert!(r.changes >= 7, "{r:?}");
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    {
        let st = d.state();
        assert!(st.paused_vcpus().is_empty(), "{:?}", st.paused_vcpus());
        assert!(st.monitors().is_empty());
        assert!(st.extra_views().is_empty());
        assert_eq!(st.restrictions(), 0);
        assert!(st.vcpus_not_clean().is_empty());
        assert!(st.extra_frames().is_empty());
        assert!(!st.ring_enabled());
        // The CR4 writes the dead monitor never decided were dropped, as Xen drops them.
        let dropped = st
            .outcomes()
            .iter()
            .filter(|o| matches!(o, Outcome::Dropped(GuestAction::WriteCr { .. })))
            .count();
        assert!(dropped > 0 && dropped <= stranded);
    }
    assert!(!path.exists(), "the journal is removed after recovery");
    // The guest runs on to the end of its script, and the next monitor attaches.
    d.run_guest();
    assert_eq!(d.state().script_left(), 0);
    d.enable_ring().unwrap();
    let mut s = Session::new(&d).unwrap();
    s.persist_journal(&path, "sim").unwrap();
    s.monitor(SYNC_CR4).unwrap();
    d.script([cr4(0, 0x3006f0 ^ 0x100)]);
    let stats = s.run(&RUN, |_| Response::deny()).unwrap();
    assert_eq!(stats.events, 1);
    s.teardown().unwrap();
    assert!(!path.exists(), "a clean teardown removes the journal");
    assert!(Session::recover(&d, &path).unwrap().is_none());
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

#[test]
fn recovery_refuses_a_journal_whose_owner_runs() {
    let d = domain(1);
    let path = journal_path("live");
    let mut s = Session::new(&d).unwrap();
    s.persist_journal(&path, "sim").unwrap();
    s.monitor(SYNC_CR4).unwrap();
    match Session::recover(&d, &path) {
        Err(Error::JournalInUse { alive, pid, .. }) => {
            assert!(alive);
            assert_eq!(pid, std::process::id());
        }
        other => panic!("expected JournalInUse, got {other:?}"),
    }
    assert_eq!(d.state().monitors().len(), 1, "nothing was undone");
    drop(s);
    assert!(!path.exists());
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

#[test]
fn recovery_reports_changes_the_dead_monitor_had_undone() {
    // Killed in the middle of its own teardown: the view it lists is already gone.
    let d = domain(1);
    let path = journal_path("partial");
    let mut s = Session::new(&d).unwrap();
    s.persist_journal(&path, "sim").unwrap();
    let view = s.create_view(MemAccess::all()).unwrap();
    std::mem::forget(s);
    d.destroy_view(view).unwrap();
    orphan(&path);
    let r = Session::recover(&d, &path).unwrap().expect("journal");
    assert_eq!(r.warnings.len(), 1, "{:?}", r.warnings);
    assert!(!path.exists());
    assert!(d.state().extra_views().is_empty());
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

#[test]
fn a_guest_int3_that_is_not_ours_is_injected_back_and_taken() {
    let d = domain(2);
    // The guest's own int3 at 0x30_000 on both vCPUs; our monitor is on.
    d.write_physical(Gpa(0x30_000), &[0xcc]).unwrap();
    let at = |v| GuestAction::Execute {
        vcpu: VcpuId(v),
        gpa: Gpa(0x30_000),
    };
    d.script([at(0), at(1), at(0)]);
    let mut s = Session::new(&d).unwrap();
    s.monitor(Monitor::SoftwareBreakpoint).unwrap();
    let mut breakpoints = Vec::new();
    let stats = s
        .run(&RUN, |e| match e.kind {
            EventKind::SoftwareBreakpoint { insn_length, .. } => {
                breakpoints.push(e.vcpu);
                // Not one of ours: the guest gets its own trap.
                Response::proceed().inject(Injection::breakpoint(insn_length as u8))
            }
            _ => Response::proceed(),
        })
        .unwrap();
    assert_eq!(stats.events, 3);
    assert_eq!(breakpoints, [VcpuId(0), VcpuId(1), VcpuId(0)]);
    let st = d.state();
    // Each vCPU took a #BP (vector 3, software exception, past the 1-byte int3) on resume.
    let bp = Injection::breakpoint(1);
    assert_eq!(
        st.delivered(),
        [(VcpuId(0), bp), (VcpuId(1), bp), (VcpuId(0), bp)]
    );
    assert_eq!(bp.kind.vmx_type(), 6);
    assert!(st.injections_pending().is_empty() && st.paused_vcpus().is_empty());
}

#[test]
fn an_injection_the_backend_refuses_still_answers_the_vcpu_and_ends_the_loop() {
    let d = domain(1);
    d.write_physical(Gpa(0x30_000), &[0xcc]).unwrap();
    d.script([GuestAction::Execute {
        vcpu: VcpuId(0),
        gpa: Gpa(0x30_000),
    }]);
    // Another tool injects an event into the paused vCPU first: Xen answers EBUSY to ours.
    let pf = Injection::page_fault(0x7fff_0000_1000, 0x6);
    let mut s = Session::new(&d).unwrap();
    s.monitor(Monitor::SoftwareBreakpoint).unwrap();
    let err = s
        .run(&RUN, |e| {
            d.inject(e.vcpu, &pf).unwrap();
            Response::proceed().inject(Injection::breakpoint(1))
        })
        .unwrap_err();
    assert!(err.to_string().contains("pending"), "{err}");
    let st = d.state();
    assert!(
        st.paused_vcpus().is_empty(),
        "answered although the injection failed"
    );
    assert!(st.monitors().is_empty() && !st.ring_enabled(), "torn down");
    // The vCPU resumed and took the event that was pending, with its CR2 and error code.
    assert_eq!(st.delivered(), [(VcpuId(0), pf)]);
    assert_eq!(
        (pf.vector, pf.error_code, pf.cr2),
        (14, Some(6), 0x7fff_0000_1000)
    );
}

#[test]
fn changes_made_again_and_again_are_journaled_once() {
    // A hook manager re-protecting a page after each guest write, a page-in stepping a vCPU
    // at each context switch: the journal must not grow with the guest's activity.
    let d = domain(2);
    let path = journal_path("repeated");
    let mut s = Session::new(&d).unwrap();
    s.persist_journal(&path, "sim").unwrap();
    let view = s.create_view(MemAccess::all()).unwrap();
    for i in 0..5_000 {
        let a = if i % 2 == 0 {
            MemAccess::R | MemAccess::X
        } else {
            MemAccess::X
        };
        s.set_mem_access(view, Gfn(0x10), a).unwrap();
        s.set_mem_access(ViewId::HOST, Gfn(0x11), a).unwrap();
        s.singlestep(VcpuId(1), i % 2 == 0).unwrap();
        s.monitor(SYNC_CR4).unwrap();
    }
    let lines = std::fs::read_to_string(&path).unwrap().lines().count();
    // The owner line, the view, two accesses, single-step, the monitor.
    assert!(lines <= 6, "{lines} journal lines");
    s.teardown().unwrap();
    // The first recorded old access (the view's default, rwx) is what came back.
    let st = d.state();
    assert_eq!(st.restrictions(), 0);
    assert!(st.monitors().is_empty() && st.vcpus_not_clean().is_empty());
    assert!(!path.exists());
}

#[test]
fn a_view_destroyed_through_the_session_leaves_the_journal_with_its_changes() {
    let d = domain(2);
    let mut s = Session::new(&d).unwrap();
    let v1 = s.create_view(MemAccess::all()).unwrap();
    let v2 = s.create_view(MemAccess::all()).unwrap();
    s.set_mem_access(v1, Gfn(0x10), MemAccess::R).unwrap();
    let frame = s.alloc_frame().unwrap();
    s.change_gfn(v1, Gfn(0x11), frame).unwrap();
    s.set_suppress_ve(v1, Gfn(0x12), false).unwrap();
    s.set_view_visibility(v1, false).unwrap();
    s.set_mem_access(v2, Gfn(0x10), MemAccess::X).unwrap();
    assert_eq!(s.views(), vec![v1, v2]);

    // The view the vCPUs run in, view 0 and views the session never made are refused.
    s.switch_view(v1).unwrap();
    assert_eq!(s.active_view(), v1);
    match s.destroy_view(v1) {
        Err(Error::ViewRefused { view, reason }) => {
            assert_eq!(view, v1);
            assert!(reason.contains("switch"), "{reason}");
        }
        other => panic!("expected ViewRefused, got {other:?}"),
    }
    assert!(matches!(
        s.destroy_view(ViewId::HOST),
        Err(Error::ViewRefused { .. })
    ));
    assert!(matches!(
        s.destroy_view(ViewId(7)),
        Err(Error::UnknownView { view: ViewId(7) })
    ));
    assert_eq!(d.state().extra_views(), vec![v1, v2], "nothing changed");

    s.switch_view(ViewId::HOST).unwrap();
    s.destroy_view(v1).unwrap();
    assert_eq!(s.views(), vec![v2]);
    {
        let st = d.state();
        assert_eq!(st.extra_views(), vec![v2]);
        // v2's one restricted frame is all that is left; the frame stays the session's.
        assert_eq!(st.restrictions(), 1);
        assert_eq!(st.extra_frames(), &[frame.0]);
    }
    assert!(matches!(s.destroy_view(v1), Err(Error::UnknownView { .. })));

    // The backend hands the id out again: the new view is journaled afresh, and teardown
    // undoes it once, without touching what the old one had.
    let v3 = s.create_view(MemAccess::all()).unwrap();
    assert_eq!(v3, v1, "the simulated domain reuses the lowest free id");
    s.set_mem_access(v3, Gfn(0x20), MemAccess::R | MemAccess::X)
        .unwrap();
    assert_eq!(
        d.mem_access(v3, Gfn(0x10)).unwrap(),
        MemAccess::all(),
        "a new view starts from its default access"
    );
    s.teardown().unwrap();
    let st = d.state();
    assert!(st.extra_views().is_empty());
    assert_eq!(st.restrictions(), 0);
    assert!(st.extra_frames().is_empty());
    assert!(st.vcpus_not_clean().is_empty());
    assert_eq!(s.active_view(), ViewId::HOST);
}

#[test]
fn a_view_a_vcpu_still_uses_is_kept_when_the_backend_refuses() {
    let d = domain(1);
    let mut s = Session::new(&d).unwrap();
    let v = s.create_view(MemAccess::all()).unwrap();
    // As an ALTERNATE_P2M response would: the vCPU is in the view, the session did not switch.
    d.switch_view(v).unwrap();
    assert_eq!(s.active_view(), ViewId::HOST);
    assert!(s.destroy_view(v).is_err());
    assert_eq!(s.views(), vec![v], "still journaled");
    d.switch_view(ViewId::HOST).unwrap();
    s.destroy_view(v).unwrap();
    s.teardown().unwrap();
    assert!(d.state().extra_views().is_empty());
}

#[test]
fn recovery_after_a_destroyed_view_warns_about_its_lines_only() {
    // The journal on disk is append-only: the destroyed view's lines stay, and recovery
    // reports them as already undone.
    let d = domain(1);
    let path = journal_path("destroyed-view");
    let mut s = Session::new(&d).unwrap();
    s.persist_journal(&path, "sim").unwrap();
    let gone = s.create_view(MemAccess::all()).unwrap();
    let kept = s.create_view(MemAccess::all()).unwrap();
    s.set_mem_access(kept, Gfn(0x10), MemAccess::R).unwrap();
    s.destroy_view(gone).unwrap();
    std::mem::forget(s);
    orphan(&path);
    let r = Session::recover(&d, &path).unwrap().expect("journal");
    assert_eq!(r.warnings.len(), 1, "{:?}", r.warnings);
    let st = d.state();
    assert!(st.extra_views().is_empty());
    assert_eq!(st.restrictions(), 0);
    assert!(!path.exists());
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}
