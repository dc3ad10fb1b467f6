//! The teardown guarantee under fault injection, on the simulated domain (not Xen).
//!
//! 1,000 randomized runs (fixed seeds, so failures reproduce): random vCPU counts (up to 16,
//! so the 8-slot ring fills), monitors, views with restricted and remapped frames, planted
//! INT3s, and guest scripts; handlers that answer at random (continue, deny, emulate,
//! switch view, single-step, fast single-step, set registers) and sometimes panic; interrupts
//! from inside the handler; sessions dropped in the middle of an event stream; transient
//! backend errors; monitors killed outright (no teardown at all, as by SIGKILL) and cleaned up
//! by the next one from their on-disk journal. After every run the simulated domain's own state must show 0 vCPUs left
//! paused, 0 monitors, 0 extra views, 0 access changes or remaps, every vCPU in view 0 without
//! single-step, and the ring disabled.
//!
//! The policy library under the same faults (`policies_under_faults_leave_nothing_behind`):
//! random policy sets and remediations (pause, capture paused or live, resume) over the real
//! 6.1 dump, scripted attacks and benign actions, a policy that panics, sinks that fail,
//! failing pauses and register reads (in the middle of a capture). After every run: nothing
//! paused (vCPUs or the domain), nothing monitored or restricted, no view, no partial capture.
//!
//! A refresh of `module-text` (a module gone live, another going) whose `set_mem_access` fails
//! at each point in turn, from `Guard::refresh` and from inside the event handler
//! (`a_refresh_that_fails_half_way_leaves_nothing_behind`): the same clean state after, and
//! the guard refuses to change anything more. `Session::restore_mem_access` (a frame released
//! early, protected again) leaves nothing behind after teardown or after a kill and recovery
//! from the on-disk journal, in an altp2m view and in the host view.

mod support;

use std::cell::Cell;
use std::time::Duration;

use xenvmi::backend::sim::{GuestAction, SimDomain};
use xenvmi::backend::snapshot::Snapshot;
use xenvmi::backend::{
    ControlRegister, EventChannel, EventControl, EventInjection, Injection, MemAccess, Monitor,
    PhysicalMemory, PhysicalMemoryWrite, VcpuState, ViewControl, VmControl,
};
use xenvmi::event::hooks::{HookId, Hooks, Placement};
use xenvmi::event::session::{RecoverOptions, RunOptions, Session};
use xenvmi::event::{EventKind, Response};
use xenvmi::mem::GuestMemory;
use xenvmi::vmevent::ring::RingPage;
use xenvmi::{Error, Gfn, Gpa, Registers, Result, VcpuId, ViewId};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// The simulated domain with transient failures injected into the event path.
struct Faulty {
    sim: SimDomain,
    calls: Cell<u64>,
    fail_at: Option<u64>,
    /// Fail the n-th register read (a capture reads every vCPU's after pausing).
    registers_fail_at: Option<u64>,
    register_calls: Cell<u64>,
    /// Fail the n-th `set_mem_access`.
    access_fail_at: Cell<Option<u64>>,
    access_calls: Cell<u64>,
}

impl Faulty {
    fn maybe_fail(&self, what: &'static str) -> Result<()> {
        let n = self.calls.get() + 1;
        self.calls.set(n);
        if Some(n) == self.fail_at {
            return Err(Error::Unsupported {
                backend: "fault injection",
                capability: what,
            });
        }
        Ok(())
    }
}

impl EventChannel for Faulty {
    fn ring(&self) -> &RingPage {
        self.sim.ring()
    }
    fn wait(&self, t: Duration) -> Result<bool> {
        self.maybe_fail("wait")?;
        self.sim.wait(t)
    }
    fn notify(&self) -> Result<()> {
        // A failed notify still leaves responses on the ring; the next notify delivers them.
        self.maybe_fail("notify")?;
        self.sim.notify()
    }
    fn close_ring(&self) -> Result<()> {
        self.sim.close_ring()
    }
    fn enable_ring(&self) -> Result<()> {
        self.sim.enable_ring()
    }
    fn abandon_ring(&self) -> Result<bool> {
        self.sim.abandon_ring()
    }
    fn domain_uuid(&self) -> Result<String> {
        self.sim.domain_uuid()
    }
}
impl EventControl for Faulty {
    fn set_monitor(&self, m: Monitor, on: bool) -> Result<()> {
        self.sim.set_monitor(m, on)
    }
    fn set_vcpu_singlestep(&self, v: VcpuId, on: bool) -> Result<()> {
        self.sim.set_vcpu_singlestep(v, on)
    }
}
impl PhysicalMemory for Faulty {
    fn name(&self) -> &'static str {
        self.sim.name()
    }
    fn read_physical(&self, gpa: Gpa, buf: &mut [u8]) -> Result<()> {
        self.sim.read_physical(gpa, buf)
    }
    fn physical_ranges(&self) -> Vec<std::ops::Range<u64>> {
        self.sim.physical_ranges()
    }
}
impl PhysicalMemoryWrite for Faulty {
    fn write_physical(&self, gpa: Gpa, buf: &[u8]) -> Result<()> {
        self.sim.write_physical(gpa, buf)
    }
}
impl EventInjection for Faulty {
    fn inject(&self, v: VcpuId, e: &Injection) -> Result<()> {
        // An injection can fail too (Xen: EBUSY): the event must still be answered.
        self.maybe_fail("inject")?;
        self.sim.inject(v, e)
    }
}
impl ViewControl for Faulty {
    fn create_view(&self, a: MemAccess) -> Result<ViewId> {
        self.sim.create_view(a)
    }
    fn destroy_view(&self, v: ViewId) -> Result<()> {
        self.sim.destroy_view(v)
    }
    fn switch_view(&self, v: ViewId) -> Result<()> {
        self.sim.switch_view(v)
    }
    fn set_mem_access(&self, v: ViewId, g: Gfn, a: MemAccess) -> Result<()> {
        let n = self.access_calls.get() + 1;
        self.access_calls.set(n);
        if Some(n) == self.access_fail_at.get() {
            return Err(Error::Unsupported {
                backend: "fault injection",
                capability: "set_mem_access",
            });
        }
        self.sim.set_mem_access(v, g, a)
    }
    fn mem_access(&self, v: ViewId, g: Gfn) -> Result<MemAccess> {
        self.sim.mem_access(v, g)
    }
    fn change_gfn(&self, v: ViewId, g: Gfn, t: Option<Gfn>) -> Result<()> {
        self.sim.change_gfn(v, g, t)
    }
    fn alloc_frame(&self) -> Result<Gfn> {
        self.sim.alloc_frame()
    }
    fn set_suppress_ve(&self, v: ViewId, g: Gfn, s: bool) -> Result<()> {
        self.sim.set_suppress_ve(v, g, s)
    }
    fn set_view_visibility(&self, v: ViewId, on: bool) -> Result<()> {
        self.sim.set_view_visibility(v, on)
    }
    fn free_frame(&self, g: Gfn) -> Result<()> {
        self.sim.free_frame(g)
    }
}
impl VcpuState for Faulty {
    fn vcpu_count(&self) -> u32 {
        self.sim.vcpu_count()
    }
    fn registers(&self, v: VcpuId) -> Result<Registers> {
        let n = self.register_calls.get() + 1;
        self.register_calls.set(n);
        if Some(n) == self.registers_fail_at {
            return Err(Error::Unsupported {
                backend: "fault injection",
                capability: "registers",
            });
        }
        self.sim.registers(v)
    }
}
impl VmControl for Faulty {
    fn pause(&self) -> Result<()> {
        self.maybe_fail("pause")?;
        self.sim.pause()
    }
    fn resume(&self) -> Result<()> {
        self.sim.resume()
    }
}

const GFNS: u64 = 16;

fn random_script(rng: &mut Rng, vcpus: u32) -> Vec<GuestAction> {
    (0..20 + rng.below(150))
        .map(|_| {
            let vcpu = VcpuId(rng.below(vcpus as u64) as u32);
            let gpa = Gpa(rng.below(GFNS) << 12 | rng.below(4000));
            match rng.below(7) {
                0 => GuestAction::WriteCr {
                    vcpu,
                    register: ControlRegister::Cr4,
                    value: rng.below(4) << 20 | 0x6f0,
                },
                1 => GuestAction::WriteCr {
                    vcpu,
                    register: ControlRegister::Cr3,
                    value: rng.below(64) << 12,
                },
                2 => GuestAction::WriteMsr {
                    vcpu,
                    index: 0xc000_0082,
                    value: rng.next(),
                },
                3 => GuestAction::Write {
                    vcpu,
                    gpa,
                    bytes: vec![rng.next() as u8; 1 + rng.below(8) as usize],
                },
                4 => GuestAction::Read { vcpu, gpa },
                5 => GuestAction::Execute { vcpu, gpa },
                _ => GuestAction::Cpuid {
                    vcpu,
                    leaf: rng.below(16) as u32,
                },
            }
        })
        .collect()
}

fn one_run(seed: u64) -> (u64, String) {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let vcpus = 1 + rng.below(16) as u32;
    let mem = Snapshot::from_bytes(vec![0u8; (GFNS as usize + 8) << 12], None).unwrap();
    let regs = Registers {
        cr0: 0x8005_0033,
        cr3: 0x1000,
        cr4: 0x3006f0,
        ..Registers::default()
    };
    let sim = SimDomain::new(mem, &vec![regs; vcpus as usize]);
    // Plant INT3s.
    for _ in 0..rng.below(4) {
        sim.write_physical(Gpa(rng.below(GFNS) << 12 | rng.below(4000)), &[0xcc])
            .unwrap();
    }
    let mut script = random_script(&mut rng, vcpus);
    // A third of the runs put the hook manager on some of the pages the script uses, and run
    // their breakpoints a few times.
    let hooked = rng.chance(33);
    let hook_sites: Vec<u64> = if hooked {
        (0..1 + rng.below(4))
            .map(|_| rng.below(GFNS) << 12 | rng.below(4000))
            .collect()
    } else {
        Vec::new()
    };
    for &gpa in &hook_sites {
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(script.len() as u64 + 1) as usize;
            let vcpu = VcpuId(rng.below(vcpus as u64) as u32);
            script.insert(
                at,
                GuestAction::Execute {
                    vcpu,
                    gpa: Gpa(gpa),
                },
            );
        }
    }
    // Bytes that may hold 0xcc at the end without any hook leaving it: planted int3s and
    // what the script writes.
    let mut may_be_int3: std::collections::HashSet<u64> = std::collections::HashSet::new();
    for a in &script {
        if let GuestAction::Write { gpa, bytes, .. } = a {
            may_be_int3.extend((0..bytes.len() as u64).map(|i| gpa.0 + i));
        }
    }
    for g in 0..GFNS << 12 {
        let mut b = [0u8; 1];
        sim.read_physical(Gpa(g), &mut b).unwrap();
        if b[0] == 0xcc {
            may_be_int3.insert(g);
        }
    }
    sim.script(script);
    let backend = Faulty {
        sim,
        calls: Cell::new(0),
        registers_fail_at: None,
        register_calls: Cell::new(0),
        access_fail_at: Cell::new(None),
        access_calls: Cell::new(0),
        fail_at: if rng.chance(20) {
            Some(1 + rng.below(40))
        } else {
            None
        },
    };
    let mut what;
    let events_seen = Cell::new(0u64);
    // As by SIGKILL: no teardown, no drop; the next monitor recovers from the journal.
    let killed = rng.chance(15);
    // In a directory of its own, which the library creates with mode 0700.
    let journal = std::env::temp_dir()
        .join(format!("xenvmi-fault-{}", std::process::id()))
        .join(format!("{seed}.journal"));
    {
        let mut s = Session::new(&backend).unwrap();
        if killed {
            let _ = std::fs::remove_file(&journal);
            s.persist_journal(&journal, "sim").unwrap();
        }
        let all = [
            Monitor::ControlRegister {
                register: ControlRegister::Cr4,
                sync: true,
                on_change_only: rng.chance(50),
                ignore_mask: 0,
            },
            Monitor::ControlRegister {
                register: ControlRegister::Cr3,
                sync: rng.chance(70),
                on_change_only: true,
                ignore_mask: 0,
            },
            Monitor::Msr {
                index: 0xc000_0082,
                on_change_only: false,
            },
            Monitor::SoftwareBreakpoint,
            Monitor::Cpuid,
            Monitor::SingleStep,
        ];
        for m in all {
            if rng.chance(60) {
                s.monitor(m).unwrap();
            }
        }
        let mut views = vec![ViewId::HOST];
        // Hooked runs leave views and access rights to the hook manager: a restriction of
        // another policy that forbids what the manager's step-over does (executing the page in
        // view 0) would trap the step forever, by design of the two policies, not by a fault.
        let restrictions = if hooked { 0 } else { 1 };
        for _ in 0..rng.below(4) * restrictions {
            let v = s.create_view(MemAccess::all()).unwrap();
            views.push(v);
        }
        for _ in 0..rng.below(12) * restrictions {
            let v = views[rng.below(views.len() as u64) as usize];
            let a = MemAccess::from_bits_truncate(rng.below(8) as u8);
            s.set_mem_access(v, Gfn(rng.below(GFNS)), a).unwrap();
        }
        if views.len() > 1 && rng.chance(50) {
            s.change_gfn(views[1], Gfn(rng.below(GFNS)), Gfn(GFNS + rng.below(8)))
                .unwrap();
        }
        if rng.chance(40) && !hooked {
            let v = views[rng.below(views.len() as u64) as usize];
            s.switch_view(v).unwrap();
        }
        if rng.chance(30) && !hooked {
            let v = views[rng.below(views.len() as u64) as usize];
            s.set_suppress_ve(v, Gfn(rng.below(GFNS)), false).unwrap();
            s.set_view_visibility(v, false).unwrap();
        }
        let panic_at = if rng.chance(25) {
            Some(rng.below(30))
        } else {
            None
        };
        let interrupt_at = if rng.chance(25) {
            Some(rng.below(30))
        } else {
            None
        };
        let stop = s.stop_handle();
        let opts = RunOptions {
            poll: Duration::ZERO,
            max_events: if rng.chance(30) {
                Some(rng.below(20))
            } else {
                None
            },
            max_idle_polls: Some(2),
        };
        let mut hrng = Rng(rng.next() | 1);
        let views_h = views.clone();
        let r = if hooked {
            // The hook manager drives the loop: breakpoints on the pages the script executes,
            // writes and reads; a handler that adds, removes, arms return hooks, fails, panics
            // and stops at random.
            let placement = if rng.chance(50) {
                Placement::Stealth
            } else {
                Placement::InPlace
            };
            let mem = GuestMemory::new(&backend.sim);
            let mut hooks = Hooks::new(&mut s, placement).unwrap();
            let mut ids: Vec<HookId> = Vec::new();
            for &gpa in &hook_sites {
                ids.push(hooks.add(&mut s, Gpa(gpa)).unwrap());
            }
            let fail_at = if rng.chance(20) {
                Some(rng.below(30))
            } else {
                None
            };
            let r = hooks.run(&mut s, &mem, &opts, |ctx| {
                let n = events_seen.get();
                events_seen.set(n + 1);
                if Some(n) == panic_at {
                    panic!("injected handler panic at event {n}");
                }
                if Some(n) == interrupt_at {
                    ctx.stop();
                }
                if Some(n) == fail_at {
                    return Err(Error::Unsupported {
                        backend: "fault injection",
                        capability: "this event (injected handler error)",
                    });
                }
                if ctx.hit().is_some() {
                    match hrng.below(6) {
                        0 if !ids.is_empty() => {
                            let id = ids.swap_remove(hrng.below(ids.len() as u64) as usize);
                            ctx.remove(id)?;
                        }
                        1 => ids.push(ctx.add(Gpa(hrng.below(GFNS) << 12 | hrng.below(4000)))?),
                        // The stack is not mapped here: an error the handler shrugs off.
                        2 => drop(ctx.return_hook(n)),
                        _ => {}
                    }
                }
                Ok(Response::proceed())
            });
            r
        } else {
            s.run(&opts, |e| {
                let n = events_seen.get();
                events_seen.set(n + 1);
                if Some(n) == panic_at {
                    panic!("injected handler panic at event {n}");
                }
                if Some(n) == interrupt_at {
                    stop.stop(); // as SIGINT would
                }
                let view = views_h[hrng.below(views_h.len() as u64) as usize];
                match (hrng.below(8), e.kind) {
                    (0, _) => Response::deny(),
                    (1, EventKind::MemoryAccess { .. }) => Response::emulate(),
                    (2, EventKind::MemoryAccess { .. }) => Response::emulate_nowrite(),
                    (3, _) => Response::proceed().switch_view(view).toggle_singlestep(),
                    (4, _) => Response::proceed().fast_singlestep(view),
                    (5, _) => Response::proceed().set_registers(e.regs),
                    (6, EventKind::SingleStep { .. }) => Response::proceed().toggle_singlestep(),
                    _ => Response::proceed(),
                }
            })
        };
        what = match r {
            Ok(st) if st.interrupted => "interrupted".into(),
            Ok(_) => "returned".into(),
            Err(Error::HandlerPanicked { .. }) => "handler panicked".into(),
            Err(Error::Handler(_)) => "handler failed".into(),
            Err(e) => format!("backend error: {e}"),
        };
        if killed {
            what.push_str(", then killed");
            std::mem::forget(s);
        } else if rng.chance(50) {
            s.teardown()
                .unwrap_or_else(|e| panic!("seed {seed}: teardown: {e}"));
        }
        // Otherwise: dropped here, in whatever state the run left it.
    }
    // A session that tore down before it was killed (after a handler panic) left no journal.
    if killed && journal.exists() {
        // A transient backend error may stop a recovery: it keeps the journal, and is retried.
        let mut tries = 0;
        loop {
            tries += 1;
            // The journal names this test process, which is alive: force, as an operator would for
            // a journal from another PID namespace.
            match Session::recover_with(
                &backend,
                &journal,
                &RecoverOptions {
                    force: true,
                    ..Default::default()
                },
            ) {
                Ok(Some(_)) => break,
                Ok(None) => panic!("seed {seed}: the journal is gone before recovery"),
                Err(e) if tries < 3 => what.push_str(&format!(", recovery retried after: {e}")),
                Err(e) => panic!("seed {seed}: recovery failed {tries} times: {e}"),
            }
        }
        assert!(
            !journal.exists(),
            "seed {seed}: journal left after recovery"
        );
    }
    let st = backend.sim.state();
    let ctx = format!(
        "seed {seed} ({what}, {vcpus} vCPUs, {} events)",
        events_seen.get()
    );
    assert!(
        st.paused_vcpus().is_empty(),
        "{ctx}: paused vCPUs {:?}",
        st.paused_vcpus()
    );
    assert!(
        st.monitors().is_empty(),
        "{ctx}: monitors left {:?}",
        st.monitors()
    );
    assert!(
        st.extra_views().is_empty(),
        "{ctx}: views left {:?}",
        st.extra_views()
    );
    assert_eq!(st.restrictions(), 0, "{ctx}: access changes or remaps left");
    assert!(
        st.vcpus_not_clean().is_empty(),
        "{ctx}: vCPUs not in view 0 / single-stepping {:?}",
        st.vcpus_not_clean()
    );
    assert!(!st.ring_enabled(), "{ctx}: ring still enabled");
    assert!(
        st.extra_frames().is_empty(),
        "{ctx}: shadow frames left {:?}",
        st.extra_frames()
    );
    assert_eq!(
        st.responses_skipped(),
        0,
        "{ctx}: a response Xen would skip"
    );
    drop(st);
    // No in-place int3 left in guest memory.
    for g in 0..GFNS << 12 {
        let mut b = [0u8; 1];
        backend.sim.read_physical(Gpa(g), &mut b).unwrap();
        assert!(
            b[0] != 0xcc || may_be_int3.contains(&g),
            "{ctx}: an int3 left at {g:#x}"
        );
    }
    (events_seen.get(), what)
}

#[test]
fn a_thousand_faulty_runs_leave_nothing_behind() {
    // Injected panics are expected: keep them out of the output, report anything else.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let injected = info
            .payload()
            .downcast_ref::<String>()
            .is_some_and(|m| m.starts_with("injected handler panic"));
        if !injected {
            default_hook(info);
        }
    }));
    let mut events = 0;
    let mut kinds = std::collections::BTreeMap::<String, u32>::new();
    for seed in 0..1000 {
        let (n, what) = one_run(seed);
        events += n;
        let key = if what.starts_with("backend error") {
            "backend error".to_string()
        } else {
            what
        };
        *kinds.entry(key).or_default() += 1;
    }
    eprintln!("1000 runs, {events} events, endings: {kinds:?}");
    // The injected faults really happened.
    for k in [
        "handler panicked",
        "handler failed",
        "interrupted",
        "backend error",
        "returned",
    ] {
        assert!(
            kinds.get(k).copied().unwrap_or(0) > 0,
            "no run ended with {k}: {kinds:?}"
        );
    }
    let killed: u32 = kinds
        .iter()
        .filter(|(k, _)| k.contains("then killed"))
        .map(|(_, n)| n)
        .sum();
    assert!(killed > 50, "too few killed monitors recovered: {kinds:?}");
    assert!(events > 10_000, "too few events to mean anything: {events}");
}

/// A policy that panics on its n-th decision (a bug in a vendor's policy).
struct Boom {
    at: u64,
    seen: u64,
    remediation: xenvmi::policy::Remediation,
}

impl xenvmi::policy::Policy for Boom {
    fn name(&self) -> &str {
        "boom"
    }
    fn remediation(&self) -> &xenvmi::policy::Remediation {
        &self.remediation
    }
    fn plan(&mut self, _: &xenvmi::policy::Guest<'_>) -> Result<xenvmi::policy::Plan> {
        Ok(xenvmi::policy::Plan::default())
    }
    fn decide(
        &mut self,
        _: &xenvmi::policy::Guest<'_>,
        _: &xenvmi::event::Event,
    ) -> xenvmi::policy::Decision {
        self.seen += 1;
        if self.seen == self.at {
            panic!("injected handler panic in a policy");
        }
        xenvmi::policy::Decision::NotMine
    }
}

#[test]
fn policies_under_faults_leave_nothing_behind() {
    use std::sync::Arc;
    use xenvmi::alert::{Alert, Callback};
    use xenvmi::os::linux::{Linux, ProfileSource};
    use xenvmi::policy::{
        Guard, GuardOptions, PolicyOptions, PolicySet, Remediation, POLICY_NAMES,
    };

    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let injected = info
            .payload()
            .downcast_ref::<&str>()
            .is_some_and(|m| m.starts_with("injected handler panic"));
        if !injected {
            default_hook(info);
        }
    }));
    let path = support::fixture::fixture_file("linux-6.1", "vmcore.elf").unwrap();
    let snap = Arc::new(Snapshot::open(&path).unwrap());
    let mut regs = snap.all_registers().to_vec();
    for r in &mut regs {
        r.cr4 |= 0x30_0800; // SMEP, SMAP, UMIP
    }
    let linux = Linux::discover(
        &GuestMemory::new(snap.clone()),
        &regs,
        ProfileSource::InGuest,
    )
    .unwrap();
    let sym = |n: &str| linux.symbol(n).unwrap().0;
    let k = linux.info();
    let text_gpa = |va: u64| Gpa(k.text_pa.0 + (va - k.text_va.0));
    let dir = std::env::temp_dir().join(format!("xenvmi-policy-faults-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let remediations = [
        "deny",
        "allow",
        "deny,pause",
        "deny,pause,resume",
        "allow,pause,capture,resume",
        "deny,capture-live",
        "deny,pause,capture",
    ];
    let mut endings = std::collections::BTreeMap::<String, u32>::new();
    let (mut alerts_total, mut captures, mut capture_failures) = (0u64, 0u64, 0u64);
    for seed in 0..120u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let sim = SimDomain::new(snap.clone(), &regs);
        let n = regs.len() as u64;
        let mut script = Vec::new();
        for _ in 0..5 + rng.below(25) {
            let vcpu = VcpuId(rng.below(n) as u32);
            script.push(match rng.below(8) {
                0 => GuestAction::WriteCr {
                    vcpu,
                    register: ControlRegister::Cr4,
                    value: regs[0].cr4 & !(rng.below(8) << 20),
                },
                1 => GuestAction::WriteCr {
                    vcpu,
                    register: ControlRegister::Cr0,
                    value: regs[0].cr0 & !(rng.below(2) << 16),
                },
                2 => GuestAction::WriteMsr {
                    vcpu,
                    index: 0xc000_0082,
                    value: rng.next(),
                },
                3 => GuestAction::Write {
                    vcpu,
                    gpa: text_gpa(sym("__x64_sys_getpid") + rng.below(64)),
                    bytes: vec![0xcc; 1 + rng.below(4) as usize],
                },
                4 => GuestAction::Write {
                    vcpu,
                    gpa: text_gpa(sym("sys_call_table") + 8 * rng.below(400)),
                    bytes: vec![0x41; 8],
                },
                5 => GuestAction::Read {
                    vcpu,
                    gpa: text_gpa(sym("__x64_sys_getpid")),
                },
                6 => GuestAction::Execute {
                    vcpu,
                    gpa: text_gpa(sym("__x64_sys_getpid")),
                },
                _ => GuestAction::Cpuid { vcpu, leaf: 1 },
            });
        }
        // Every 20th run: a paused capture whose register read fails after the pause (the
        // guard read each vCPU's once when it started).
        let mid_capture = seed % 20 == 3;
        if mid_capture {
            script.insert(
                0,
                GuestAction::WriteCr {
                    vcpu: VcpuId(0),
                    register: ControlRegister::Cr4,
                    value: regs[0].cr4 & !(1 << 20),
                },
            );
        }
        sim.script(script);
        let backend = Faulty {
            sim,
            calls: Cell::new(0),
            fail_at: (!mid_capture && rng.chance(30)).then(|| 1 + rng.below(30)),
            registers_fail_at: if mid_capture {
                Some(n + 1)
            } else {
                rng.chance(30).then(|| 1 + rng.below(6))
            },
            register_calls: Cell::new(0),
            access_fail_at: Cell::new(None),
            access_calls: Cell::new(0),
        };
        let mut set = PolicySet::new();
        let mut with_capture = mid_capture;
        if mid_capture {
            let o = PolicyOptions {
                remediation: Remediation::parse("deny,pause,capture,resume").unwrap(),
                ..PolicyOptions::default()
            };
            set.add("cr4", &o).unwrap();
        }
        for name in POLICY_NAMES {
            if (!mid_capture || *name != "cr4") && rng.chance(50) {
                let mut text = remediations[rng.below(remediations.len() as u64) as usize];
                // Captures write the whole 256 MiB guest: keep them to a few runs.
                if text.contains("capture") && (captures >= 8 || !rng.chance(30)) {
                    text = "deny";
                }
                with_capture |= text.contains("capture");
                let o = PolicyOptions {
                    remediation: Remediation::parse(text).unwrap(),
                    ..PolicyOptions::default()
                };
                set.add(name, &o).unwrap();
            }
        }
        if rng.chance(25) {
            let r = Remediation::parse("deny").unwrap();
            set.push(Box::new(Boom {
                at: 1 + rng.below(10),
                seen: 0,
                remediation: r,
            }))
            .unwrap();
        }
        let fail_sink = rng.chance(30);
        let alerts = Cell::new(0u64);
        let sink = Callback(|_: &Alert| {
            alerts.set(alerts.get() + 1);
            if fail_sink {
                Err(Error::Unsupported {
                    backend: "fault injection",
                    capability: "sink",
                })
            } else {
                Ok(())
            }
        });
        let opts = GuardOptions {
            run: RunOptions {
                poll: Duration::ZERO,
                max_events: None,
                max_idle_polls: Some(1),
            },
            capture_dir: Some(dir.clone()),
            ..GuardOptions::default()
        };
        let ending = match Guard::new(&backend, &linux, set, Box::new(sink), opts) {
            Err(e) => format!(
                "set-up failed: {}",
                if e.to_string().contains("fault injection") {
                    "injected"
                } else {
                    "config"
                }
            ),
            Ok(mut guard) => {
                let r = guard.run();
                if let Ok(s) = &r {
                    captures += s.captures.len() as u64;
                    capture_failures += s.capture_failures;
                }
                let paused = r.as_ref().is_ok_and(|s| s.domain_paused);
                let e = match (&r, paused) {
                    (Ok(_), true) => "returned, domain paused".to_string(),
                    (Ok(_), false) => "returned".to_string(),
                    (Err(Error::HandlerPanicked { .. }), _) => "policy panicked".to_string(),
                    (Err(_), _) => "error".to_string(),
                };
                if rng.chance(50) {
                    let _ = guard.teardown();
                } else {
                    drop(guard);
                }
                let st = backend.sim.state();
                assert!(!st.ring_enabled(), "seed {seed}: ring left on");
                e
            }
        };
        alerts_total += alerts.get();
        let st = backend.sim.state();
        assert!(
            st.paused_vcpus().is_empty(),
            "seed {seed} ({ending}): vCPUs paused {:?}",
            st.paused_vcpus()
        );
        assert_eq!(
            st.pause_count(),
            0,
            "seed {seed} ({ending}): domain left paused"
        );
        assert!(
            st.monitors().is_empty(),
            "seed {seed}: monitors left {:?}",
            st.monitors()
        );
        assert!(
            st.extra_views().is_empty() && st.restrictions() == 0,
            "seed {seed}: views or restrictions left"
        );
        assert!(
            st.vcpus_not_clean().is_empty(),
            "seed {seed}: vCPUs not in view 0"
        );
        let partial: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".partial"))
            .collect();
        assert!(partial.is_empty(), "seed {seed}: partial captures left");
        if with_capture {
            *endings
                .entry("(with a capture remediation)".into())
                .or_default() += 1;
        }
        *endings.entry(ending).or_default() += 1;
    }
    std::fs::remove_dir_all(&dir).unwrap();
    eprintln!(
        "120 policy runs, {alerts_total} alerts, {captures} captures, {capture_failures} failed mid-capture: {endings:?}"
    );
    for k in [
        "returned",
        "returned, domain paused",
        "policy panicked",
        "error",
        "set-up failed: injected",
    ] {
        assert!(
            endings.get(k).copied().unwrap_or(0) > 0,
            "no run ended with {k}: {endings:?}"
        );
    }
    assert!(captures > 0, "no capture was written");
    assert!(capture_failures > 0, "no capture failed in the middle");
    assert!(
        alerts_total > 100,
        "too few alerts to mean anything: {alerts_total}"
    );
}

#[test]
fn a_refresh_that_fails_half_way_leaves_nothing_behind() {
    use std::sync::Arc;
    use xenvmi::alert::{Alert, Callback};
    use xenvmi::os::linux::{Linux, ProfileSource};
    use xenvmi::policy::{Guard, GuardOptions, PolicyOptions, PolicySet};
    use xenvmi::Gva;

    const FIXTURE: &str = "linux-6.1";
    let path = support::fixture::fixture_file(FIXTURE, "vmcore.elf").unwrap();
    let snap = Arc::new(Snapshot::open(&path).unwrap());
    let regs = snap.all_registers().to_vec();
    let linux = Linux::discover(
        &GuestMemory::new(snap.clone()),
        &regs,
        ProfileSource::InGuest,
    )
    .unwrap();
    let ks = linux.info().kernel_space;
    // Ground truth: `struct module` is each module's `__this_module` (kallsyms), its state at
    // the BTF offset of `module.state`, crc7's text at its `base`.
    let gt = support::fixture::ground_truth(FIXTURE);
    let state_off = gt["btf"]["offsets"]["module"]["state"]["offset"]
        .as_u64()
        .unwrap();
    let syms = support::fixture::guest_module_symbols(FIXTURE);
    let object = |m: &str| syms[m].iter().find(|s| s.1 == "__this_module").unwrap().2;
    let crc7_base = gt["modules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "crc7")
        .map(|m| support::fixture::hex(&m["base"]))
        .unwrap();
    let gpa =
        |sim: &SimDomain, va: u64| GuestMemory::new(sim).translate_mapped(ks, Gva(va)).unwrap();
    let set_state = |sim: &SimDomain, m: &str, v: u32| {
        let at = gpa(sim, object(m) + state_off);
        sim.write_physical(at, &v.to_le_bytes()).unwrap();
    };
    let mut endings = std::collections::BTreeMap::<String, u32>::new();
    for k in 1..=8u64 {
        for in_handler in [false, true] {
            let sim = SimDomain::new(snap.clone(), &regs);
            // dummy still COMING when the guard starts: not protected.
            set_state(&sim, "dummy", 1);
            let crc7_text = gpa(&sim, crc7_base);
            let backend = Faulty {
                sim,
                calls: Cell::new(0),
                fail_at: None,
                registers_fail_at: None,
                register_calls: Cell::new(0),
                access_fail_at: Cell::new(None),
                access_calls: Cell::new(0),
            };
            let set = PolicySet::from_names(["module-text"], &PolicyOptions::default()).unwrap();
            let opts = GuardOptions {
                run: RunOptions {
                    poll: Duration::ZERO,
                    max_events: None,
                    max_idle_polls: Some(1),
                },
                refresh_interval: Duration::from_secs(3600),
                ..GuardOptions::default()
            };
            let sink = Box::new(Callback(|_: &Alert| Ok(())));
            let mut guard = Guard::new(&backend, &linux, set, sink, opts).unwrap();
            // dummy goes live, crc7 going: one refresh protects and releases.
            set_state(&backend.sim, "dummy", 0);
            set_state(&backend.sim, "crc7", 2);
            backend
                .access_fail_at
                .set(Some(backend.access_calls.get() + k));
            let r = if in_handler {
                // A write into crc7's text: its owner is gone, the refresh runs before the
                // vCPU resumes.
                backend.sim.script([GuestAction::Write {
                    vcpu: VcpuId(0),
                    gpa: crc7_text,
                    bytes: vec![0x90],
                }]);
                guard.run().map(|_| ())
            } else {
                guard.refresh()
            };
            let ending = format!(
                "{} {}",
                if in_handler {
                    "in handler:"
                } else {
                    "refresh:"
                },
                match &r {
                    Ok(()) => "applied",
                    Err(e) if format!("{e:?}").contains("fault injection") => "injected",
                    Err(_) => "other error",
                }
            );
            if r.is_err() {
                // Torn down: nothing more may change.
                for again in [guard.refresh(), guard.run().map(|_| ())] {
                    let e = again.unwrap_err().to_string();
                    assert!(e.contains("tore the session down"), "{e}");
                }
            }
            if k % 2 == 0 {
                let _ = guard.teardown();
            } else {
                drop(guard);
            }
            let st = backend.sim.state();
            assert!(
                st.paused_vcpus().is_empty(),
                "{ending} at {k}: vCPUs paused"
            );
            assert_eq!(st.pause_count(), 0, "{ending} at {k}: domain paused");
            assert!(
                st.monitors().is_empty() && !st.ring_enabled(),
                "{ending} at {k}"
            );
            assert!(
                st.extra_views().is_empty() && st.restrictions() == 0,
                "{ending} at {k}: views or restrictions left"
            );
            assert!(st.vcpus_not_clean().is_empty(), "{ending} at {k}");
            *endings.entry(ending).or_default() += 1;
        }
    }
    eprintln!("refreshes under faults: {endings:?}");
    for e in [
        "refresh: injected",
        "refresh: applied",
        "in handler: injected",
        "in handler: applied",
    ] {
        assert!(endings.contains_key(e), "no run ended {e}: {endings:?}");
    }
    assert!(
        !endings.keys().any(|e| e.ends_with("other error")),
        "{endings:?}"
    );
}

#[test]
fn access_restored_early_is_neither_left_nor_lost() {
    let regs = Registers {
        cr0: 0x8005_0033,
        cr3: 0x1000,
        cr4: 0x3006f0,
        ..Registers::default()
    };
    let dir = std::env::temp_dir().join(format!("xenvmi-restore-{}", std::process::id()));
    for (killed, host) in [(false, false), (false, true), (true, false), (true, true)] {
        let mem = Snapshot::from_bytes(vec![0u8; 16 << 12], None).unwrap();
        let sim = SimDomain::new(mem, &[regs; 2]);
        let journal = dir.join(format!("{killed}-{host}.journal"));
        let _ = std::fs::remove_file(&journal);
        let mut s = Session::new(&sim).unwrap();
        s.persist_journal(&journal, "sim").unwrap();
        let view = if host {
            ViewId::HOST
        } else {
            let v = s.create_view(MemAccess::all()).unwrap();
            s.switch_view(v).unwrap();
            v
        };
        let (a, b) = (Gfn(3), Gfn(7));
        let rx = MemAccess::R | MemAccess::X;
        s.set_mem_access(view, a, rx).unwrap();
        s.set_mem_access(view, b, rx).unwrap();
        // Released: back to what it had, now.
        assert!(s.restore_mem_access(view, a).unwrap());
        assert_eq!(sim.mem_access(view, a).unwrap(), MemAccess::all());
        assert_eq!(sim.mem_access(view, b).unwrap(), rx);
        assert!(!s.restore_mem_access(view, a).unwrap(), "restored twice");
        assert!(
            !s.restore_mem_access(view, Gfn(9)).unwrap(),
            "never changed"
        );
        // Protected again: journaled afresh, undone at teardown or recovery.
        s.set_mem_access(view, a, MemAccess::R).unwrap();
        if killed {
            std::mem::forget(s);
            let r = Session::recover_with(
                &sim,
                &journal,
                &RecoverOptions {
                    force: true,
                    ..Default::default()
                },
            )
            .unwrap();
            assert!(r.is_some());
        } else {
            s.teardown().unwrap();
        }
        assert!(!journal.exists());
        let st = sim.state();
        assert_eq!(st.restrictions(), 0, "killed {killed}, host {host}");
        assert!(st.extra_views().is_empty() && !st.ring_enabled());
        assert!(st.vcpus_not_clean().is_empty());
    }
    let _ = std::fs::remove_dir_all(&dir);
}
