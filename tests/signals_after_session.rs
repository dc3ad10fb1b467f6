//! SIGINT and SIGTERM stop a session's loop only while the session lives: afterwards they
//! terminate the process again (signal-hook keeps its handler installed after its last action
//! is removed, which used to leave both signals ignored for the life of the process). Run in a
//! child process, which this test binary re-executes, because the outcome is the process
//! dying.

use std::os::unix::process::ExitStatusExt;

use xenvmi::backend::sim::SimDomain;
use xenvmi::backend::snapshot::Snapshot;
use xenvmi::event::session::Session;
use xenvmi::Registers;

const CHILD: &str = "XENVMI_SIGNAL_CHILD";

/// The child: SIGTERM while a session listens sets its flag; after the session is dropped the
/// same signal must kill the process. Exits 0 only if it survives.
fn child() -> ! {
    let mem = Snapshot::from_bytes(vec![0u8; 1 << 16], None).expect("image");
    let d = SimDomain::new(mem, &[Registers::default()]);
    let s = Session::new(&d).unwrap();
    let stop = s.stop_handle();
    stop.stop_on_signals().expect("signals");
    signal_hook::low_level::raise(signal_hook::consts::SIGTERM).expect("raise");
    if !stop.is_stopped() {
        eprintln!("SIGTERM during the session did not set the stop flag");
        std::process::exit(2);
    }
    drop(s);
    signal_hook::low_level::raise(signal_hook::consts::SIGTERM).expect("raise");
    std::thread::sleep(std::time::Duration::from_secs(2));
    eprintln!("survived SIGTERM after the session ended");
    std::process::exit(0);
}

#[test]
fn sigterm_kills_again_after_the_session_ends() {
    if std::env::var_os(CHILD).is_some() {
        child();
    }
    let out = std::process::Command::new(std::env::current_exe().expect("exe"))
        .args([
            "sigterm_kills_again_after_the_session_ends",
            "--exact",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD, "1")
        .output()
        .expect("child");
    assert_eq!(
        out.status.signal(),
        Some(signal_hook::consts::SIGTERM),
        "{:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}
