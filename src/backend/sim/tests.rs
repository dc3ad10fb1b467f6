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
    let mut s = Session::new(&d);
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
    let mut s = Session::new(&d);
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
use crate::event::ring::BackRing;

#[test]
fn emulate_performs_a_write_the_view_forbids() {
    let d = domain(1);
    let mut s = Session::new(&d);
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
    let mut s = Session::new(&d);
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
    let mut s = Session::new(&d);
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
    let mut s = Session::new(&d);
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
        let mut s = Session::new(&d);
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
