//! Stealth breakpoints on the simulated domain (not Xen) over the real Linux 6.1 snapshot: an
//! `int3` at a real kernel function is hit when the code executes, while reads of the same bytes
//! see the original instruction, and teardown leaves no view, remap or shadow frame behind.

mod support;

use std::time::Duration;

use support::fixture::fixture_file;
use xenvmi::backend::sim::{GuestAction, Outcome, SimDomain};
use xenvmi::backend::snapshot::Snapshot;
use xenvmi::backend::PhysicalMemory;
use xenvmi::event::session::{RunOptions, Session};
use xenvmi::event::stealth::{Handled, StealthBreakpoints};
use xenvmi::event::Response;
use xenvmi::mem::GuestMemory;
use xenvmi::os::linux::{Linux, ProfileSource};
use xenvmi::{Gpa, VcpuId};

#[test]
fn int3_is_hit_on_execute_and_invisible_to_reads() {
    let snap = Snapshot::open(fixture_file("linux-6.1", "vmcore.elf").unwrap()).unwrap();
    let regs = snap.all_registers().to_vec();
    let sim = SimDomain::new(snap, &regs);
    let linux = Linux::discover(&GuestMemory::new(&sim), &regs, ProfileSource::InGuest).unwrap();
    let k = linux.info();
    let func = linux.symbol("__x64_sys_getpid").unwrap().0;
    let target = Gpa(k.text_pa.0 + (func - k.text_va.0));
    let mut original = [0u8; 1];
    sim.read_physical(target, &mut original).unwrap();
    assert_ne!(original[0], 0xcc);

    let mut hits = Vec::new();
    {
        let mut s = Session::new(&sim);
        let mut bps = StealthBreakpoints::new(&mut s).unwrap();
        bps.add(&mut s, target).unwrap();
        bps.activate(&mut s).unwrap();
        // Guest memory itself (view 0) still holds the original byte.
        let mut b = [0u8; 1];
        sim.read_physical(target, &mut b).unwrap();
        assert_eq!(b, original);
        sim.script([
            GuestAction::Execute {
                vcpu: VcpuId(0),
                gpa: target,
            }, // hit
            GuestAction::Read {
                vcpu: VcpuId(1),
                gpa: target,
            }, // must see the original
            GuestAction::Execute {
                vcpu: VcpuId(0),
                gpa: Gpa(target.0 + 0x40),
            }, // same page, no breakpoint
            GuestAction::Execute {
                vcpu: VcpuId(1),
                gpa: target,
            }, // hit again
        ]);
        let opts = RunOptions {
            poll: Duration::ZERO,
            max_events: None,
            max_idle_polls: Some(1),
        };
        s.run(&opts, |e| match bps.handle(e) {
            Some(Handled::Hit(gpa, rsp)) => {
                hits.push((e.vcpu, gpa));
                rsp
            }
            Some(Handled::Internal(rsp)) => rsp,
            None => Response::proceed(),
        })
        .unwrap();
        let st = sim.state();
        let read = st.outcomes().iter().find_map(|o| match o {
            Outcome::Read(GuestAction::Read { .. }, byte) => Some(*byte),
            _ => None,
        });
        assert_eq!(
            read,
            Some(original[0]),
            "a read of the breakpoint address saw the int3"
        );
        assert_eq!(st.extra_frames().len(), 1, "one shadow page");
    }
    assert_eq!(hits, vec![(VcpuId(0), target), (VcpuId(1), target)]);
    let st = sim.state();
    assert!(st.extra_views().is_empty() && st.restrictions() == 0 && st.extra_frames().is_empty());
    assert!(st.paused_vcpus().is_empty() && st.vcpus_not_clean().is_empty());
}
