//! The session journal on disk, so that a monitor killed with SIGKILL (or by the OOM killer, or a
//! power cut of its own process) can be cleaned up by the next one.
//!
//! A [`Session`](super::session::Session) keeps every change it makes to the guest in memory.
//! With [`Session::persist_journal`](super::session::Session::persist_journal) it also appends
//! each change, as one text line, to a file — before the change is made where the change is
//! known in advance (write-ahead), right after it where the backend picks the value (a view id,
//! a frame number). A clean teardown removes the file. A file that is still there names a
//! process that did not tear down; [`Session::recover`](super::session::Session::recover) undoes
//! what it lists once that process is gone.
//!
//! The format is line-oriented text, one change per line, so that a half-written last line (the
//! process died in the middle of `write`) is detected and skipped:
//!
//! ```text
//! xenvmi-journal 2 pid=4242 start=123456 boot=2f0c…-… domain=6c1b…-… target=xen:domain-3
//! monitor cr 3 sync=1 change=1 mask=0x0
//! view 1
//! access 1 0x110 rx
//! switched
//! ```
//!
//! The header binds the journal to the host boot (`/proc/sys/kernel/random/boot_id`) and to
//! the domain's identity (its UUID on Xen), so that recovery never applies it to another domain
//! or to a domain id reused after a reboot.
//!
//! The file sits on the monitoring host (e.g. `/run/xenvmi`), not in the guest, but whoever can
//! write it decides what recovery undoes (frames released, views destroyed, rings disabled):
//! it is created mode 0600 in a directory of this user with mode 0700 (created so), written
//! with `fdatasync` before each change it records, and read back only if it is still a regular
//! file of this user with those modes, opened without following links or blocking, and with
//! limits: at most [`MAX_JOURNAL_BYTES`] bytes and [`MAX_ENTRIES`] entries.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::addr::{Gfn, Gpa, VcpuId, ViewId};
use crate::backend::{ControlRegister, MemAccess, Monitor};
use crate::error::{Error, Result};

/// Largest journal file recovery reads.
pub const MAX_JOURNAL_BYTES: u64 = 16 << 20;
/// Most entries recovery reads.
pub const MAX_ENTRIES: usize = 1 << 20;

/// One change to undo.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Change {
    Monitor(Monitor),
    Access {
        view: ViewId,
        gfn: Gfn,
        old: MemAccess,
    },
    View(ViewId),
    Remap {
        view: ViewId,
        gfn: Gfn,
    },
    Frame(Gfn),
    SuppressVe {
        view: ViewId,
        gfn: Gfn,
    },
    Visibility(ViewId),
    Switched,
    Singlestep(VcpuId),
    /// A byte of guest memory overwritten with `new` (an in-place breakpoint): `old` goes
    /// back, unless the guest has written that byte itself since (it no longer holds `new`).
    Poke {
        gpa: Gpa,
        old: u8,
        new: u8,
    },
}

fn access_str(a: MemAccess) -> String {
    let mut s = String::new();
    for (bit, c) in [
        (MemAccess::R, 'r'),
        (MemAccess::W, 'w'),
        (MemAccess::X, 'x'),
    ] {
        if a.contains(bit) {
            s.push(c);
        }
    }
    if s.is_empty() {
        s.push('-');
    }
    s
}

fn parse_access(s: &str) -> Option<MemAccess> {
    let mut a = MemAccess::empty();
    if s == "-" {
        return Some(a);
    }
    for c in s.chars() {
        a |= match c {
            'r' => MemAccess::R,
            'w' => MemAccess::W,
            'x' => MemAccess::X,
            _ => return None,
        };
    }
    Some(a)
}

fn cr_name(r: ControlRegister) -> &'static str {
    match r {
        ControlRegister::Cr0 => "0",
        ControlRegister::Cr3 => "3",
        ControlRegister::Cr4 => "4",
        ControlRegister::Xcr0 => "xcr0",
    }
}

impl Change {
    /// The journal line (without the newline).
    pub(crate) fn to_line(self) -> String {
        let b = |v: bool| u8::from(v);
        match self {
            Change::Monitor(m) => match m {
                Monitor::ControlRegister {
                    register,
                    sync,
                    on_change_only,
                    ignore_mask,
                } => format!(
                    "monitor cr {} sync={} change={} mask={ignore_mask:#x}",
                    cr_name(register),
                    b(sync),
                    b(on_change_only)
                ),
                Monitor::Msr {
                    index,
                    on_change_only,
                } => format!("monitor msr {index:#x} change={}", b(on_change_only)),
                Monitor::SingleStep => "monitor singlestep".into(),
                Monitor::SoftwareBreakpoint => "monitor int3".into(),
                Monitor::DebugException { sync } => format!("monitor debug sync={}", b(sync)),
                Monitor::Cpuid => "monitor cpuid".into(),
                Monitor::DescriptorAccess => "monitor descriptor".into(),
                Monitor::GuestRequest { sync } => format!("monitor guest-request sync={}", b(sync)),
                Monitor::EmulUnimplemented => "monitor emul-unimplemented".into(),
                Monitor::InguestPagefault => "monitor inguest-pagefault".into(),
            },
            Change::Access { view, gfn, old } => {
                format!("access {} {:#x} {}", view.0, gfn.0, access_str(old))
            }
            Change::View(v) => format!("view {}", v.0),
            Change::Remap { view, gfn } => format!("remap {} {:#x}", view.0, gfn.0),
            Change::Frame(g) => format!("frame {:#x}", g.0),
            Change::SuppressVe { view, gfn } => format!("suppress-ve {} {:#x}", view.0, gfn.0),
            Change::Visibility(v) => format!("visibility {}", v.0),
            Change::Switched => "switched".into(),
            Change::Singlestep(v) => format!("singlestep {}", v.0),
            Change::Poke { gpa, old, new } => format!("poke {:#x} {:#x} {:#x}", gpa.0, old, new),
        }
    }

    /// Parse a journal line; `None` if it is not one this version writes.
    pub(crate) fn parse(line: &str) -> Option<Change> {
        let mut w = line.split(' ');
        let num = |s: Option<&str>| -> Option<u64> {
            let s = s?;
            match s.strip_prefix("0x") {
                Some(h) => u64::from_str_radix(h, 16).ok(),
                None => s.parse().ok(),
            }
        };
        let flag = |s: Option<&str>, key: &str| -> Option<bool> {
            match s?.strip_prefix(key)?.strip_prefix('=')? {
                "0" => Some(false),
                "1" => Some(true),
                _ => None,
            }
        };
        let view = |s: Option<&str>| -> Option<ViewId> {
            num(s).and_then(|v| u16::try_from(v).ok()).map(ViewId)
        };
        let c = match w.next()? {
            "monitor" => Change::Monitor(match w.next()? {
                "cr" => {
                    let register = match w.next()? {
                        "0" => ControlRegister::Cr0,
                        "3" => ControlRegister::Cr3,
                        "4" => ControlRegister::Cr4,
                        "xcr0" => ControlRegister::Xcr0,
                        _ => return None,
                    };
                    let sync = flag(w.next(), "sync")?;
                    let on_change_only = flag(w.next(), "change")?;
                    let ignore_mask = num(w.next()?.strip_prefix("mask="))?;
                    Monitor::ControlRegister {
                        register,
                        sync,
                        on_change_only,
                        ignore_mask,
                    }
                }
                "msr" => Monitor::Msr {
                    index: u32::try_from(num(w.next())?).ok()?,
                    on_change_only: flag(w.next(), "change")?,
                },
                "singlestep" => Monitor::SingleStep,
                "int3" => Monitor::SoftwareBreakpoint,
                "debug" => Monitor::DebugException {
                    sync: flag(w.next(), "sync")?,
                },
                "cpuid" => Monitor::Cpuid,
                "descriptor" => Monitor::DescriptorAccess,
                "guest-request" => Monitor::GuestRequest {
                    sync: flag(w.next(), "sync")?,
                },
                "emul-unimplemented" => Monitor::EmulUnimplemented,
                "inguest-pagefault" => Monitor::InguestPagefault,
                _ => return None,
            }),
            "access" => Change::Access {
                view: view(w.next())?,
                gfn: Gfn(num(w.next())?),
                old: parse_access(w.next()?)?,
            },
            "view" => Change::View(view(w.next())?),
            "remap" => Change::Remap {
                view: view(w.next())?,
                gfn: Gfn(num(w.next())?),
            },
            "frame" => Change::Frame(Gfn(num(w.next())?)),
            "suppress-ve" => Change::SuppressVe {
                view: view(w.next())?,
                gfn: Gfn(num(w.next())?),
            },
            "visibility" => Change::Visibility(view(w.next())?),
            "switched" => Change::Switched,
            "singlestep" => Change::Singlestep(VcpuId(u32::try_from(num(w.next())?).ok()?)),
            "poke" => Change::Poke {
                gpa: Gpa(num(w.next())?),
                old: u8::try_from(num(w.next())?).ok()?,
                new: u8::try_from(num(w.next())?).ok()?,
            },
            _ => return None,
        };
        // Trailing words mean a line from another format: reject it.
        w.next().is_none().then_some(c)
    }
}

/// The process that wrote a journal, and what the journal is bound to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    /// Its process id.
    pub pid: u32,
    /// Its start time (field 22 of `/proc/PID/stat`, clock ticks since boot), to tell it from
    /// a later process that reuses the pid. 0 if unknown.
    pub start_time: u64,
    /// The host boot it was written in (`/proc/sys/kernel/random/boot_id`); `None` in a
    /// format-1 journal, which did not record it.
    pub boot: Option<String>,
    /// The identity of the domain it changed ([`EventChannel::domain_uuid`]: the domain's
    /// UUID on Xen); `None` in a format-1 journal.
    ///
    /// [`EventChannel::domain_uuid`]: crate::backend::EventChannel::domain_uuid
    pub domain: Option<String>,
    /// What it monitored (free text, e.g. `xen:domain-3`).
    pub target: String,
}

/// One header word: no spaces or newlines (they delimit the header).
fn word(s: &str) -> String {
    s.replace(['\n', ' '], "_")
}

impl Owner {
    /// This process, monitoring the domain whose identity is `domain`, in this host boot.
    ///
    /// # Errors
    /// [`Error::Io`] if the boot id cannot be read.
    pub fn current(target: &str, domain: &str) -> Result<Owner> {
        let pid = std::process::id();
        Ok(Owner {
            pid,
            start_time: start_time(pid).unwrap_or(0),
            boot: Some(boot_id()?),
            domain: Some(word(domain)),
            target: word(target),
        })
    }

    /// Whether the process is still running (same pid, same start time).
    pub fn is_alive(&self) -> bool {
        match start_time(self.pid) {
            None => false,
            Some(t) => self.start_time == 0 || t == self.start_time,
        }
    }

    /// Why this journal does not belong to domain `domain` in this host boot (`boot`), or
    /// `None` if it does.
    pub fn mismatch(&self, domain: &str, boot: &str) -> Option<String> {
        match (&self.boot, &self.domain) {
            (None, _) | (_, None) => Some(
                "it is a format-1 journal, which records neither the domain nor the host boot"
                    .into(),
            ),
            (Some(b), _) if b != boot => Some(format!(
                "it was written in another boot of this host (boot id {b}, now {boot}): the \
                 domain it changed is gone"
            )),
            (_, Some(d)) if *d != word(domain) => Some(format!(
                "it was written for domain {d}, and this domain is {}",
                word(domain)
            )),
            _ => None,
        }
    }

    /// The journal's first line (without the newline).
    pub fn header(&self) -> String {
        match (&self.boot, &self.domain) {
            (Some(boot), Some(domain)) => format!(
                "xenvmi-journal 2 pid={} start={} boot={boot} domain={domain} target={}",
                self.pid, self.start_time, self.target
            ),
            _ => format!(
                "xenvmi-journal 1 pid={} start={} target={}",
                self.pid, self.start_time, self.target
            ),
        }
    }

    fn parse(line: &str) -> Option<Owner> {
        let (v2, rest) = match line.strip_prefix("xenvmi-journal 2 ") {
            Some(r) => (true, r),
            None => (false, line.strip_prefix("xenvmi-journal 1 ")?),
        };
        let mut w = rest.splitn(if v2 { 5 } else { 3 }, ' ');
        let pid = w.next()?.strip_prefix("pid=")?.parse().ok()?;
        let start_time = w.next()?.strip_prefix("start=")?.parse().ok()?;
        let (boot, domain) = if v2 {
            let b = w.next()?.strip_prefix("boot=")?.to_string();
            let d = w.next()?.strip_prefix("domain=")?.to_string();
            (Some(b), Some(d))
        } else {
            (None, None)
        };
        let target = w.next()?.strip_prefix("target=")?.to_string();
        Some(Owner {
            pid,
            start_time,
            boot,
            domain,
            target,
        })
    }
}

/// A process's start time from `/proc/PID/stat` (`None` if there is no such process).
fn start_time(pid: u32) -> Option<u64> {
    let path = PathBuf::from(format!("/proc/{pid}/stat"));
    let stat = crate::file::read_capped(&path, 4096, "proc stat").ok()?;
    let stat = String::from_utf8_lossy(&stat);
    // The command name (field 2) is in parentheses and may contain spaces: count after it.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

/// This host boot's id (`/proc/sys/kernel/random/boot_id`, a UUID the kernel draws at boot).
///
/// # Errors
/// [`Error::Io`] if it cannot be read.
pub fn boot_id() -> Result<String> {
    let path = Path::new("/proc/sys/kernel/random/boot_id");
    let b = crate::file::read_capped(path, 64, "boot id")?;
    Ok(word(String::from_utf8_lossy(&b).trim()))
}

/// The effective user id of this process (field 3 of `Uid:` in `/proc/self/status`).
fn euid() -> Result<u32> {
    let path = Path::new("/proc/self/status");
    let s = crate::file::read_capped(path, 1 << 16, "proc status")?;
    String::from_utf8_lossy(&s)
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|u| u.parse().ok())
        .ok_or_else(|| Error::malformed("proc status", "/proc/self/status", "no effective uid"))
}

/// The default place for a domain's journal: `$XENVMI_JOURNAL_DIR` or `/run/xenvmi`, then
/// `<target>.journal` (e.g. `/run/xenvmi/xen-domain-3.journal`).
pub fn default_path(target: &str) -> PathBuf {
    let dir = std::env::var_os("XENVMI_JOURNAL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/run/xenvmi"));
    let name: String = target
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    dir.join(format!("{name}.journal"))
}

/// A journal refused, and why.
fn refused(path: &Path, reason: impl Into<String>) -> Error {
    Error::JournalRefused {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// The directory a journal lives in (`.` for a bare file name).
fn dir_of(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// Check the journal directory: a directory (not a symbolic link), owned by `uid`, mode 0700,
/// so that no other user can plant, replace or read a journal in it.
fn check_dir(journal: &Path, uid: u32) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let dir = dir_of(journal);
    let meta = std::fs::symlink_metadata(dir).map_err(|e| Error::io(dir, e))?;
    if !meta.file_type().is_dir() {
        return Err(refused(
            journal,
            format!(
                "its directory {} is {}, not a directory",
                dir.display(),
                crate::file::kind(&meta)
            ),
        ));
    }
    if meta.uid() != uid || meta.mode() & 0o777 != 0o700 {
        return Err(refused(
            journal,
            format!(
                "its directory {} is owned by uid {} with mode {:04o}; it must be owned by uid \
                 {uid} (this process) with mode 0700",
                dir.display(),
                meta.uid(),
                meta.mode() & 0o7777
            ),
        ));
    }
    Ok(())
}

/// Check an open journal file's metadata: owned by `uid`, mode 0600, one link.
fn check_file(journal: &Path, meta: &std::fs::Metadata, uid: u32) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    if meta.uid() != uid || meta.mode() & 0o7777 != 0o600 {
        return Err(refused(
            journal,
            format!(
                "it is owned by uid {} with mode {:04o}; a journal is owned by uid {uid} (this \
                 process) with mode 0600",
                meta.uid(),
                meta.mode() & 0o7777
            ),
        ));
    }
    if meta.nlink() != 1 {
        return Err(refused(
            journal,
            format!("it has {} hard links; a journal has one", meta.nlink()),
        ));
    }
    Ok(())
}

/// Create the journal directory if it is missing, mode 0700 (whatever the umask).
fn make_dir(journal: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let dir = dir_of(journal);
    if let Some(parent) = dir.parent() {
        if !parent.as_os_str().is_empty() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
    }
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io(dir, e)),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(Error::io(dir, e)),
    }
}

/// An open journal file being appended to.
#[derive(Debug)]
pub(crate) struct Writer {
    file: File,
    pub(crate) path: PathBuf,
}

impl Writer {
    /// Create the file (it must not exist: an existing one belongs to another monitor, live or
    /// dead), mode 0600 in a 0700 directory of this user (created if missing), write the header
    /// and `existing` entries, and flush them to disk.
    pub(crate) fn create(path: &Path, owner: &Owner, existing: &[Change]) -> Result<Writer> {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        make_dir(path)?;
        check_dir(path, euid()?)?;
        let file = match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            // create_new is O_CREAT|O_EXCL: an existing name (a FIFO, a link) is refused before
            // it is opened, so nothing here can block.
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let (other, _) = read(path)?;
                return Err(Error::JournalInUse {
                    path: path.to_path_buf(),
                    pid: other.pid,
                    alive: other.is_alive(),
                });
            }
            Err(e) => return Err(Error::io(path, e)),
        };
        // The umask may have taken bits away; 0600 exactly.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(|e| Error::io(path, e))?;
        let mut w = Writer {
            file,
            path: path.to_path_buf(),
        };
        let mut text = owner.header();
        text.push('\n');
        for c in existing {
            text.push_str(&c.to_line());
            text.push('\n');
        }
        w.write(&text)?;
        // The directory entry too, so the file survives a crash of the host's page cache.
        if let Ok(d) = File::open(dir_of(path)) {
            let _ = d.sync_all();
        }
        Ok(w)
    }

    /// Write and flush to disk (`fdatasync`): a change is on disk before it is made.
    fn write(&mut self, text: &str) -> Result<()> {
        self.file
            .write_all(text.as_bytes())
            .and_then(|()| self.file.sync_data())
            .map_err(|e| Error::io(&self.path, e))
    }

    /// Append one change (one `write`, so a kill leaves either the whole line or a torn last
    /// line that [`read`] skips), flushed to disk before it returns.
    pub(crate) fn append(&mut self, c: Change) -> Result<()> {
        let mut line = c.to_line();
        line.push('\n');
        self.write(&line)
    }

    /// Remove the file (after a clean teardown).
    pub(crate) fn remove(self) -> Result<()> {
        std::fs::remove_file(&self.path).map_err(|e| Error::io(&self.path, e))
    }
}

/// Read a journal: its owner and its changes in the order they were made. A torn last line
/// (no newline) is ignored; any other line that does not parse is an error.
///
/// The file is opened without following a symbolic link and without blocking (`O_NOFOLLOW |
/// O_NONBLOCK`), and must be a regular file owned by this process's user, mode 0600, with one
/// link, in a directory of that user with mode 0700; at most [`MAX_JOURNAL_BYTES`] are read.
///
/// # Errors
/// [`Error::JournalRefused`] for a file or directory that fails those checks, [`Error::Io`],
/// or [`Error::Malformed`] for a file that is not a journal, too large, or has too many
/// entries.
pub(crate) fn read(path: &Path) -> Result<(Owner, Vec<Change>)> {
    let uid = euid()?;
    check_dir(path, uid)?;
    let (file, meta) = crate::file::open_regular(path, true)
        .map_err(|e| refused(path, format!("it cannot be opened safely: {e}")))?;
    check_file(path, &meta, uid)?;
    let bytes =
        crate::file::read_open_capped(file, &meta, path, MAX_JOURNAL_BYTES, "xenvmi journal")?;
    parse(&bytes, &path.display().to_string())
}

/// Parse a journal's bytes (`what` names it in errors).
fn parse(bytes: &[u8], what: &str) -> Result<(Owner, Vec<Change>)> {
    let bad = |reason: String| Error::malformed("xenvmi journal", what, reason);
    if bytes.len() as u64 > MAX_JOURNAL_BYTES {
        return Err(bad(format!(
            "{} bytes, more than the {MAX_JOURNAL_BYTES} allowed",
            bytes.len()
        )));
    }
    let text = String::from_utf8_lossy(bytes);
    let complete = match text.rfind('\n') {
        Some(i) => &text[..i],
        None => "",
    };
    let mut lines = complete.split('\n');
    let owner = lines
        .next()
        .and_then(Owner::parse)
        .ok_or_else(|| bad("no `xenvmi-journal 2` (or 1) header line".into()))?;
    let mut changes = Vec::new();
    for (i, line) in lines.enumerate() {
        if changes.len() >= MAX_ENTRIES {
            return Err(bad(format!("more than {MAX_ENTRIES} entries")));
        }
        let c = Change::parse(line).ok_or_else(|| {
            bad(format!(
                "line {}: `{}` is not a journal entry",
                i + 2,
                line.chars().take(80).collect::<String>()
            ))
        })?;
        changes.push(c);
    }
    Ok((owner, changes))
}

/// What a journal says, for a person or a tool deciding what to do about it: its owner, and
/// its changes as journal lines, oldest first (what [`Session::recover`] would undo, newest
/// first).
///
/// [`Session::recover`]: super::session::Session::recover
///
/// # Errors
/// [`Error::Malformed`] for bytes that are not a journal, too many of them, or too many entries.
pub fn inspect(bytes: &[u8]) -> Result<(Owner, Vec<String>)> {
    let (owner, changes) = parse(bytes, "journal bytes")?;
    Ok((owner, changes.into_iter().map(Change::to_line).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_changes() -> Vec<Change> {
        let mut v = vec![
            Change::Access {
                view: ViewId(3),
                gfn: Gfn(0x1_2345),
                old: MemAccess::R | MemAccess::X,
            },
            Change::Access {
                view: ViewId(0),
                gfn: Gfn(0),
                old: MemAccess::empty(),
            },
            Change::View(ViewId(9)),
            Change::Remap {
                view: ViewId(1),
                gfn: Gfn(0x110),
            },
            Change::Frame(Gfn(0x8000)),
            Change::Poke {
                gpa: Gpa(0x1234_5678),
                old: 0x55,
                new: 0xcc,
            },
            Change::SuppressVe {
                view: ViewId(2),
                gfn: Gfn(7),
            },
            Change::Visibility(ViewId(4)),
            Change::Switched,
            Change::Singlestep(VcpuId(5)),
        ];
        for register in [
            ControlRegister::Cr0,
            ControlRegister::Cr3,
            ControlRegister::Cr4,
            ControlRegister::Xcr0,
        ] {
            v.push(Change::Monitor(Monitor::ControlRegister {
                register,
                sync: register != ControlRegister::Cr3,
                on_change_only: true,
                ignore_mask: 0x80,
            }));
        }
        for m in [
            Monitor::Msr {
                index: 0xc000_0082,
                on_change_only: false,
            },
            Monitor::SingleStep,
            Monitor::SoftwareBreakpoint,
            Monitor::DebugException { sync: true },
            Monitor::Cpuid,
            Monitor::DescriptorAccess,
            Monitor::GuestRequest { sync: false },
            Monitor::EmulUnimplemented,
            Monitor::InguestPagefault,
        ] {
            v.push(Change::Monitor(m));
        }
        v
    }

    #[test]
    fn every_change_survives_a_round_trip() {
        for c in all_changes() {
            assert_eq!(Change::parse(&c.to_line()), Some(c), "{}", c.to_line());
        }
    }

    #[test]
    fn foreign_lines_are_rejected() {
        for l in [
            "",
            "monitor",
            "monitor cr 5 sync=1 change=1 mask=0x0",
            "access 70000 0x1 r",
            "access 1 0x1 rq",
            "view 1 extra",
            "frame zz",
        ] {
            assert_eq!(Change::parse(l), None, "{l:?}");
        }
    }

    #[test]
    fn a_torn_last_line_is_skipped_and_the_owner_is_read() {
        let dir = std::env::temp_dir().join(format!("xenvmi-journal-{}", std::process::id()));
        let path = dir.join("t.journal");
        let _ = std::fs::remove_dir_all(&dir);
        let owner = Owner::current("sim test", "uuid-1").expect("owner");
        assert!(owner.is_alive());
        let mut w = Writer::create(&path, &owner, &[Change::Switched]).expect("create");
        w.append(Change::View(ViewId(1))).expect("append");
        drop(w);
        // A second writer finds the live owner.
        match Writer::create(&path, &owner, &[]) {
            Err(Error::JournalInUse { pid, alive, .. }) => {
                assert_eq!(pid, std::process::id());
                assert!(alive);
            }
            other => panic!("expected JournalInUse, got {other:?}"),
        }
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("open");
        f.write_all(b"access 1 0x1").expect("torn write");
        let (o, changes) = read(&path).expect("read");
        assert_eq!(o.pid, owner.pid);
        assert_eq!(o.target, "sim_test");
        assert_eq!(changes, vec![Change::Switched, Change::View(ViewId(1))]);
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn inspect_lists_what_recovery_would_undo() {
        let text = "xenvmi-journal 1 pid=7 start=99 target=xen:domain-3\nview 1\naccess 1 0x110 rwx\nswitched\nmonitor cr 4 sync=1 change=1 mask=0x0\n";
        let (o, lines) = inspect(text.as_bytes()).expect("a journal");
        assert_eq!(
            (o.pid, o.start_time, o.target.as_str()),
            (7, 99, "xen:domain-3")
        );
        let expected: Vec<&str> = text.lines().skip(1).collect();
        assert_eq!(lines, expected);
        for bad in [
            &b""[..],
            b"hello\n",
            b"xenvmi-journal 1 pid=x start=1 target=t\n",
        ] {
            assert!(inspect(bad).is_err());
        }
    }

    #[test]
    #[cfg_attr(miri, ignore = "spawns a process, which Miri cannot")]
    fn a_reaped_child_is_not_alive() {
        let mut child = std::process::Command::new("true")
            .spawn()
            .expect("spawn true");
        let pid = child.id();
        child.wait().expect("wait");
        let o = Owner {
            pid,
            start_time: 1,
            boot: None,
            domain: None,
            target: String::new(),
        };
        assert!(!o.is_alive());
    }

    #[test]
    fn another_users_journal_is_refused() {
        let dir = std::env::temp_dir().join(format!("xenvmi-journal-uid-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("t.journal");
        let owner = Owner::current("t", "u").expect("owner");
        drop(Writer::create(&path, &owner, &[]).expect("create"));
        let uid = euid().expect("euid");
        let meta = std::fs::metadata(&path).expect("meta");
        assert!(check_file(&path, &meta, uid).is_ok());
        let e = check_file(&path, &meta, uid + 1).expect_err("another uid");
        assert!(
            e.to_string().contains(&format!("owned by uid {uid}")),
            "{e}"
        );
        let e = check_dir(&path, uid + 1).expect_err("another uid's directory");
        assert!(e.to_string().contains("its directory"), "{e}");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn the_binding_names_what_does_not_match() {
        let o = Owner {
            pid: 1,
            start_time: 1,
            boot: Some("b1".into()),
            domain: Some("d1".into()),
            target: "t".into(),
        };
        assert_eq!(o.mismatch("d1", "b1"), None);
        assert!(o
            .mismatch("d2", "b1")
            .is_some_and(|m| m.contains("domain d1")));
        assert!(o
            .mismatch("d1", "b2")
            .is_some_and(|m| m.contains("another boot")));
        let v1 = Owner {
            boot: None,
            domain: None,
            ..o.clone()
        };
        assert!(v1
            .mismatch("d1", "b1")
            .is_some_and(|m| m.contains("format-1")));
        let (back, _) = parse(format!("{}\n", o.header()).as_bytes(), "t").expect("v2");
        assert_eq!(back, o);
    }

    #[test]
    fn default_path_is_one_file_name() {
        let p = default_path("xen:domain/3");
        assert_eq!(
            p.file_name().and_then(|s| s.to_str()),
            Some("xen-domain-3.journal")
        );
    }
}
