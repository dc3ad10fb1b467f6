//! Bringing a paged-out user page in (`event::pagein`) on the simulated domain (not Xen) over
//! the real Linux 6.1 snapshot: a real user process's page is made not present, the process
//! is scheduled in (a CR3 write), its vCPU is stepped to user mode, a page fault is injected
//! there (never in kernel mode), and once the simulated guest's handler has mapped the page
//! again the helper reports it present. A guest that never maps it costs at most
//! `MAX_INJECTIONS` faults and ends the loop cleanly.

mod support;

use std::time::Duration;

use support::fixture::fixture_file;
use xenvmi::backend::sim::{GuestAction, SimDomain};
use xenvmi::backend::snapshot::Snapshot;
use xenvmi::backend::{
    ControlRegister, Injection, PhysicalMemory, PhysicalMemoryWrite, VcpuState, VcpuStateWrite,
};
use xenvmi::event::pagein::{PageIn, PageInStatus, MAX_INJECTIONS};
use xenvmi::event::session::{RunOptions, Session};
use xenvmi::event::EventKind;
use xenvmi::mem::paging::{mapped_ranges, PageSize};
use xenvmi::mem::{AddressSpace, GuestMemory};
use xenvmi::os::linux::{Linux, ProfileSource};
use xenvmi::{Error, Gpa, Gva, VcpuId};

const RUN: RunOptions = RunOptions {
    poll: Duration::ZERO,
    max_events: None,
    max_idle_polls: Some(1),
};

struct Setup {
    sim: SimDomain,
    space: AddressSpace,
    cr3: u64,
    other_cr3: u64,
    va: Gva,
    pte_gpa: Gpa,
    pte: u64,
}

fn read_u64(sim: &SimDomain, gpa: u64) -> u64 {
    let mut b = [0u8; 8];
    sim.read_physical(Gpa(gpa), &mut b).unwrap();
    u64::from_le_bytes(b)
}

/// A user process of the fixture, the first 4 KiB page of its user half, and that page's PTE,
/// which is then cleared: the page is "paged out".
fn setup() -> Setup {
    let snap = Snapshot::open(fixture_file("linux-6.1", "vmcore.elf").unwrap()).unwrap();
    let regs = snap.all_registers().to_vec();
    let sim = SimDomain::new(snap, &regs);
    let mem = GuestMemory::new(&sim);
    let linux = Linux::discover(&mem, &regs, ProfileSource::InGuest).unwrap();
    let mode = regs[0].paging_mode();
    let (space, va) = linux
        .processes(&mem)
        .filter_map(Result::ok)
        .filter(|p| !p.kernel_thread)
        .filter_map(|p| p.dtb)
        .find_map(|root| {
            let mut first = None;
            mapped_ranges(
                &sim,
                root,
                mode,
                Gva(0x1000),
                Gva(0x7fff_ffff_f000),
                64,
                &mut |r| {
                    if r.size == PageSize::Size4K {
                        first = Some(r.va);
                        false
                    } else {
                        true
                    }
                },
            );
            first.map(|va| (AddressSpace { root, mode }, va))
        })
        .expect("a user process with a 4 KiB page");
    // The level-1 entry, by hand (4-level paging).
    let mut table = space.root.0;
    let mut entry_gpa = 0;
    for shift in [39u32, 30, 21, 12] {
        entry_gpa = table + ((va.0 >> shift) & 0x1ff) * 8;
        table = read_u64(&sim, entry_gpa) & 0x000f_ffff_ffff_f000;
    }
    let pte = read_u64(&sim, entry_gpa);
    assert_eq!(pte & 1, 1, "present before");
    sim.write_physical(Gpa(entry_gpa), &(pte & !1).to_le_bytes())
        .unwrap();
    Setup {
        sim,
        space,
        cr3: space.root.0,
        other_cr3: regs[0].cr3,
        va,
        pte_gpa: Gpa(entry_gpa),
        pte,
    }
}

/// Another address space, then the process's, on vCPU 0 (a CR3 write event each), then it
/// runs a while.
fn schedule_in(s: &Setup, steps: usize) -> Vec<GuestAction> {
    let mut v = vec![
        GuestAction::WriteCr {
            vcpu: VcpuId(0),
            register: ControlRegister::Cr3,
            value: s.other_cr3,
        },
        GuestAction::WriteCr {
            vcpu: VcpuId(0),
            register: ControlRegister::Cr3,
            value: s.cr3,
        },
    ];
    v.extend((0..steps).map(|_| GuestAction::Cpuid {
        vcpu: VcpuId(0),
        leaf: 0,
    }));
    v
}

fn set_cpl(sim: &SimDomain, cpl: u16) {
    let mut r = sim.registers(VcpuId(0)).unwrap();
    r.cs_sel = if cpl == 3 { 0x33 } else { 0x10 };
    sim.set_registers(VcpuId(0), &r).unwrap();
}

fn page_faults(sim: &SimDomain, va: Gva) -> usize {
    sim.state()
        .delivered()
        .iter()
        .filter(|(_, i)| *i == Injection::page_fault(va.0, 4))
        .count()
}

#[test]
fn a_page_fault_injected_in_user_mode_brings_the_page_in() {
    let s = setup();
    set_cpl(&s.sim, 0);
    let mem = GuestMemory::new(&s.sim);
    let mut cpl_at_injection = Vec::new();
    let mut found = None;
    {
        let mut session = Session::new(&s.sim).unwrap();
        let mut p = PageIn::start(&mut session, s.space, s.va, false).unwrap();
        assert_eq!(p.present(&mem).unwrap(), None);
        // Scheduled in, stepped in kernel mode, returns to user mode, takes the fault; later
        // scheduled in again, when the page is back.
        s.sim.script(schedule_in(&s, 4));
        s.sim.script(schedule_in(&s, 1));
        let mut steps = 0;
        session
            .run_with(&RUN, |ctx| {
                mem.guest_ran();
                // The simulated guest's fault handler: once it took the fault, the page is
                // mapped again.
                if page_faults(&s.sim, s.va) > 0 {
                    s.sim
                        .write_physical(s.pte_gpa, &s.pte.to_le_bytes())
                        .unwrap();
                }
                let ev = ctx.event().clone();
                let (status, rsp) = p.on_event(ctx, &mem)?;
                if rsp.injection().is_some() {
                    cpl_at_injection.push(ev.regs.cpl());
                }
                if let EventKind::SingleStep { .. } = ev.kind {
                    steps += 1;
                    if steps == 2 {
                        set_cpl(&s.sim, 3); // the kernel returned to user mode
                    }
                }
                if let PageInStatus::Present(gpa) = status {
                    found = Some(gpa);
                    ctx.stop();
                }
                Ok::<_, Error>(rsp)
            })
            .unwrap();
        assert_eq!(p.injections(), 1);
    }
    assert_eq!(cpl_at_injection, [3], "injected once, in user mode");
    assert_eq!(
        page_faults(&s.sim, s.va),
        1,
        "the guest took one page fault"
    );
    let want = Gpa((s.pte & 0x000f_ffff_ffff_f000) | (s.va.0 & 0xfff));
    assert_eq!(found, Some(want));
    let st = s.sim.state();
    assert!(st.paused_vcpus().is_empty() && st.vcpus_not_clean().is_empty());
    assert!(st.monitors().is_empty() && !st.ring_enabled());
}

#[test]
fn a_page_the_guest_never_brings_in_costs_at_most_max_injections_faults() {
    let s = setup();
    let mem = GuestMemory::new(&s.sim);
    let err = {
        let mut session = Session::new(&s.sim).unwrap();
        let mut p = PageIn::start(&mut session, s.space, s.va, false).unwrap();
        for _ in 0..MAX_INJECTIONS + 2 {
            s.sim.script(schedule_in(&s, 3));
        }
        set_cpl(&s.sim, 3);
        session
            .run_with(&RUN, |ctx| {
                mem.guest_ran();
                p.on_event(ctx, &mem).map(|(_, rsp)| rsp)
            })
            .unwrap_err()
    };
    assert!(matches!(err, Error::Handler(_)), "{err}");
    assert!(err.to_string().contains("page-in"), "{err}");
    assert_eq!(page_faults(&s.sim, s.va), MAX_INJECTIONS as usize);
    let st = s.sim.state();
    assert!(st.paused_vcpus().is_empty() && st.vcpus_not_clean().is_empty());
    assert!(st.monitors().is_empty() && !st.ring_enabled());
}
