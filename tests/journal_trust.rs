//! Recovery trusts a session journal only if it is this user's private regular file, written
//! for this domain in this boot of the host. Each case plants what an attacker (or an accident)
//! could leave where recovery looks, and checks that recovery refuses it, says why, and changes
//! nothing in the domain.

use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use xenvmi::backend::sim::SimDomain;
use xenvmi::backend::snapshot::Snapshot;
use xenvmi::backend::{EventChannel, MemAccess, ViewControl};
use xenvmi::event::journal;
use xenvmi::event::session::{RecoverOptions, Session};
use xenvmi::{Error, Gfn, Registers, ViewId};

fn domain() -> SimDomain {
    let mem = Snapshot::from_bytes(vec![0u8; 1 << 20], None).expect("image");
    SimDomain::new(mem, &[Registers::default()])
}

/// A private directory (0700) of its own for each case.
fn private_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("xenvmi-trust-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .expect("dir");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    dir
}

/// The pid of a process that is gone.
fn dead_pid() -> u32 {
    let mut c = std::process::Command::new("true").spawn().expect("spawn");
    let pid = c.id();
    c.wait().expect("reap");
    pid
}

/// What the planted journal asked for: restrict two host-view frames and release one
/// of the guest's own frames.
const PAYLOAD: &str = "access 0 0x10 rx\naccess 0 0x11 -\nframe 0x12\n";

/// Write `text` as a journal: mode 0600, in `dir`.
fn plant(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("planted.journal");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .expect("plant");
    std::io::Write::write_all(&mut f, text.as_bytes()).expect("write");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    path
}

fn header(boot: &str, domain: &str) -> String {
    format!(
        "xenvmi-journal 2 pid={} start=1 boot={boot} domain={domain} target=sim\n",
        dead_pid()
    )
}

/// Nothing the payload asks for happened.
fn untouched(d: &SimDomain) {
    let st = d.state();
    assert_eq!(st.restrictions(), 0);
    assert!(st.freed_frames().is_empty(), "{:?}", st.freed_frames());
    assert!(st.ring_enabled(), "the domain's ring was left alone");
}

fn refused(r: xenvmi::Result<Option<xenvmi::event::session::Recovery>>, why: &str) {
    match r {
        Err(Error::JournalRefused { reason, .. }) => {
            assert!(reason.contains(why), "expected `{why}` in: {reason}")
        }
        other => panic!("expected JournalRefused ({why}), got {other:?}"),
    }
}

#[test]
fn a_journal_for_another_domain_is_refused_unless_overridden() {
    let d = domain();
    let dir = private_dir("domain");
    let boot = journal::boot_id().expect("boot id");
    let other = "00000000-0000-0000-0000-000000000001";
    let path = plant(&dir, &(header(&boot, other) + PAYLOAD));
    refused(Session::recover(&d, &path), "written for domain 00000000");
    untouched(&d);
    assert!(path.exists(), "a refused journal is kept");
    // The documented override applies it anyway: exactly what the journal lists happens.
    let opts = RecoverOptions {
        ignore_binding: true,
        ..Default::default()
    };
    let r = Session::recover_with(&d, &path, &opts)
        .expect("override")
        .expect("a journal");
    assert_eq!(r.changes, 3);
    assert_eq!(d.state().restrictions(), 2);
    assert_eq!(d.state().freed_frames(), vec![Gfn(0x12)]);
    assert!(!path.exists());
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

#[test]
fn a_journal_for_this_domain_and_boot_is_recovered() {
    let d = domain();
    let dir = private_dir("match");
    let boot = journal::boot_id().expect("boot id");
    let uuid = d.domain_uuid().expect("uuid");
    let path = plant(&dir, &(header(&boot, &uuid) + "view 1\n"));
    let view = d.create_view(MemAccess::all()).expect("view");
    assert_eq!(view, ViewId(1));
    let r = Session::recover(&d, &path)
        .expect("recover")
        .expect("journal");
    assert_eq!(r.changes, 1);
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    assert!(d.state().extra_views().is_empty());
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

#[test]
fn a_journal_from_another_boot_or_without_binding_is_refused() {
    let d = domain();
    let uuid = d.domain_uuid().expect("uuid");
    let dir = private_dir("boot");
    let path = plant(
        &dir,
        &(header("11111111-2222-3333-4444-555555555555", &uuid) + PAYLOAD),
    );
    refused(Session::recover(&d, &path), "another boot of this host");
    untouched(&d);
    std::fs::remove_file(&path).expect("rm");
    let v1 = format!(
        "xenvmi-journal 1 pid={} start=1 target=sim\n{PAYLOAD}",
        dead_pid()
    );
    let path = plant(&dir, &v1);
    refused(Session::recover(&d, &path), "format-1 journal");
    untouched(&d);
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

#[test]
fn files_that_are_not_a_private_regular_journal_are_refused() {
    let d = domain();
    let boot = journal::boot_id().expect("boot id");
    let good = header(&boot, &d.domain_uuid().expect("uuid")) + PAYLOAD;

    // A symbolic link to /dev/zero: once read until memory ran out.
    let dir = private_dir("files");
    let link = dir.join("zero.journal");
    std::os::unix::fs::symlink("/dev/zero", &link).expect("symlink");
    refused(Session::recover(&d, &link), "symbolic link");
    // Persisting over it reads the "owner" of the existing file: refused the same way.
    let mut s = Session::new(&d).unwrap();
    match s.persist_journal(&link, "sim") {
        Err(Error::JournalRefused { reason, .. }) => assert!(reason.contains("symbolic link")),
        other => panic!("expected JournalRefused, got {other:?}"),
    }
    drop(s); // its teardown disables the ring: enable it again for `untouched`
    d.enable_ring().expect("ring");

    // A FIFO with no writer: once blocked recovery forever in open().
    let fifo = dir.join("fifo.journal");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo")
        .success());
    refused(Session::recover(&d, &fifo), "a FIFO");

    // Readable by others.
    let path = plant(&dir, &good);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    refused(Session::recover(&d, &path), "mode 0644");
    // A second name for the file (someone else may hold it).
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let twin = dir.join("twin");
    std::fs::hard_link(&path, &twin).expect("link");
    refused(Session::recover(&d, &path), "2 hard links");
    std::fs::remove_file(&twin).expect("rm");
    // Another user's file (needs root to make; the check itself is unit-tested in journal.rs
    // with another uid).
    let root = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false);
    if root {
        std::os::unix::fs::chown(&path, Some(65534), None).expect("chown");
        refused(Session::recover(&d, &path), "owned by uid 65534");
        std::os::unix::fs::chown(&path, Some(0), None).expect("chown back");
    }
    // In a directory others can write to (or plant in).
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    refused(Session::recover(&d, &path), "mode 0755");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    untouched(&d);
    // None of these is overridable.
    let opts = RecoverOptions {
        force: true,
        ignore_binding: true,
    };
    refused(Session::recover_with(&d, &link, &opts), "symbolic link");
    refused(Session::recover_with(&d, &fifo, &opts), "a FIFO");
    untouched(&d);
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

#[test]
fn a_persisted_journal_is_private_and_bound() {
    use std::os::unix::fs::MetadataExt;
    let d = domain();
    let root = std::env::temp_dir().join(format!("xenvmi-trust-{}-new", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let path = root.join("journals").join("sim.journal");
    let mut s = Session::new(&d).unwrap();
    s.persist_journal(&path, "sim").expect("persist");
    let dir = std::fs::metadata(path.parent().expect("dir")).expect("dir");
    assert_eq!(dir.mode() & 0o7777, 0o700);
    let f = std::fs::symlink_metadata(&path).expect("file");
    assert!(f.file_type().is_file());
    assert_eq!(f.mode() & 0o7777, 0o600);
    let text = std::fs::read_to_string(&path).expect("read");
    let (owner, _) = journal::inspect(text.as_bytes()).expect("journal");
    assert_eq!(owner.domain, Some(d.domain_uuid().expect("uuid")));
    assert_eq!(owner.boot, Some(journal::boot_id().expect("boot")));
    s.teardown().expect("teardown");
    assert!(!path.exists());
    std::fs::remove_dir_all(&root).expect("cleanup");
}
