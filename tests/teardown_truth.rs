//! Teardown tells the truth: a ring Xen will not disable (EBUSY while vCPUs wait for a slot)
//! is drained and retried, and if it stays busy teardown says so and keeps the journal for
//! recovery. A stop from another thread ends a long wait promptly. On the simulated domain,
//! which answers EBUSY as Xen does (`SimDomain::busy_close_rings` injects it).

use std::time::{Duration, Instant};

use xenvmi::backend::sim::{GuestAction, SimDomain};
use xenvmi::backend::snapshot::Snapshot;
use xenvmi::backend::{ControlRegister, EventChannel, Monitor, VcpuState};
use xenvmi::event::session::{RecoverOptions, RunOptions, Session};
use xenvmi::event::Response;
use xenvmi::{Error, Registers, VcpuId};

fn domain(vcpus: usize) -> SimDomain {
    let mem = Snapshot::from_bytes(vec![0u8; 1 << 20], None).expect("image");
    let regs = Registers {
        cr4: 0x3006f0,
        ..Registers::default()
    };
    SimDomain::new(mem, &vec![regs; vcpus])
}

const CR4: Monitor = Monitor::ControlRegister {
    register: ControlRegister::Cr4,
    sync: true,
    on_change_only: true,
    ignore_mask: 0,
};

fn journal(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("xenvmi-teardown-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir.join("sim.journal")
}

/// A session with a monitor, a journal and vCPUs waiting on the ring.
fn busy_session<'d>(d: &'d SimDomain, path: &std::path::Path) -> Session<'d, SimDomain> {
    let mut s = Session::new(d).unwrap();
    s.persist_journal(path, "sim").expect("persist");
    s.monitor(CR4).expect("monitor");
    for v in 0..d.vcpu_count() {
        d.script([GuestAction::WriteCr {
            vcpu: VcpuId(v),
            register: ControlRegister::Cr4,
            value: 0x3006f0 ^ 0x80,
        }]);
    }
    let opts = RunOptions {
        poll: Duration::ZERO,
        max_events: Some(1),
        max_idle_polls: Some(1),
    };
    s.run(&opts, |_| Response::proceed()).expect("run");
    assert!(d.run_guest(), "requests wait on the ring");
    s
}

#[test]
fn teardown_drains_and_retries_a_busy_ring_until_it_closes() {
    let d = domain(3);
    let path = journal("retry");
    let mut s = busy_session(&d, &path);
    d.busy_close_rings(3);
    s.teardown()
        .expect("a ring busy three times is closed on the fourth try");
    let st = d.state();
    assert_eq!(st.busy_answers(), 3);
    assert!(!st.ring_enabled());
    assert!(st.paused_vcpus().is_empty(), "{:?}", st.paused_vcpus());
    assert!(st.monitors().is_empty());
    assert!(!path.exists(), "a clean teardown removes the journal");
}

#[test]
fn a_ring_that_stays_busy_is_an_error_and_the_journal_is_kept() {
    let d = domain(3);
    let path = journal("stuck");
    let mut s = busy_session(&d, &path);
    d.busy_close_rings(u32::MAX);
    match s.teardown() {
        Err(Error::Backend { reason, .. }) => assert!(reason.contains("EBUSY"), "{reason}"),
        other => panic!("expected the EBUSY error, got {other:?}"),
    }
    {
        let st = d.state();
        assert!(
            st.ring_enabled(),
            "the ring is still on, as teardown reported"
        );
        // Bounded: it gave up after a fixed number of tries.
        assert!(
            (2..=64).contains(&st.busy_answers()),
            "{}",
            st.busy_answers()
        );
        // Everything that could be answered was: no vCPU is left paused.
        assert!(st.paused_vcpus().is_empty(), "{:?}", st.paused_vcpus());
    }
    assert!(path.exists(), "the journal is kept for recovery");
    drop(s);
    // Once the ring can be disabled, recovery finishes the job. (The journal names this live
    // process: force, as for a journal whose owner is known to be done.)
    d.busy_close_rings(0);
    let opts = RecoverOptions {
        force: true,
        ..Default::default()
    };
    let r = Session::recover_with(&d, &path, &opts)
        .expect("recover")
        .expect("journal");
    assert!(r.ring_was_enabled);
    assert!(!d.state().ring_enabled());
    assert!(!path.exists());
    let _ = std::fs::remove_dir_all(path.parent().expect("dir"));
}

#[test]
fn a_stop_from_another_thread_ends_a_long_wait_promptly() {
    let d = domain(1);
    let mut s = Session::new(&d).unwrap();
    let stop = s.stop_handle();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        stop.stop();
    });
    let t0 = Instant::now();
    let opts = RunOptions {
        // One wait could take this long: the simulated domain's wait honours its timeout.
        poll: Duration::from_secs(30),
        max_events: None,
        max_idle_polls: None,
    };
    let stats = s.run(&opts, |_| Response::proceed()).expect("run");
    let took = t0.elapsed();
    t.join().expect("thread");
    assert!(stats.interrupted);
    assert!(
        took < Duration::from_secs(10),
        "the stop was seen after {took:?}, not within a slice of the 30 s wait"
    );
    s.teardown().expect("teardown");
}

#[test]
fn the_simulated_wait_takes_its_timeout_when_nothing_happens() {
    let d = domain(1);
    let t0 = Instant::now();
    assert!(!d.wait(Duration::from_millis(30)).expect("wait"));
    assert!(t0.elapsed() >= Duration::from_millis(30));
}
