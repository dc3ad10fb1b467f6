//! The crashing process, thread and processor of a Windows triage dump
//! ([`TriageDump`]): read from the dump's copies of the `EPROCESS`, `ETHREAD` and `KPRCB` with
//! the kernel build's layout.
//!
//! # Which profile
//! A triage dump holds no kernel image, so the kernel's CodeView GUID, which picks the profile
//! of a full dump, is not in it. The profile is:
//! - the one given as a file ([`WindowsProfile::Isf`], a `.pdb` too) or already loaded
//!   ([`WindowsProfile::Loaded`]): its layout must read the copies as valid (below), or the
//!   error says which check failed;
//! - for a directory ([`WindowsProfile::Directory`]) that is a symbol store holding the
//!   kernel's image (`<dir>/ntoskrnl.exe/<TimeDateStamp><SizeOfImage>/ntoskrnl.exe`, keyed by
//!   the first driver entry, which is the kernel's, as debuggers fetch images): the profile of
//!   that image's CodeView GUID and age, found in the directory as for a memory dump
//!   ([`ProfilePick::KernelImage`]);
//! - for any other directory: every ISF file in it and every PDB of an NT kernel name in its
//!   symbol-store layout (`<dir>/ntkrnlmp.pdb/<GUID><AGE>/ntkrnlmp.pdb`), at most
//!   [`MAX_PROFILE_FILES`] in name order, is tried. The profiles whose layouts read the
//!   copies as valid must all read the same process, thread and processor; then that is the
//!   answer, with the profiles named ([`ProfilePick::Layout`]). Two different readings are an
//!   error naming both.
//!
//! # What makes a reading valid
//! - the process copy starts with a dispatcher header of `Type` 3 (`ProcessObject`: `KPROCESS`
//!   is the first member of `EPROCESS`, `DISPATCHER_HEADER` the first of `KPROCESS`, `Type` its
//!   first byte, in every NT build), the thread copy with `Type` 6 (`ThreadObject`);
//! - `ImageFileName` is 1 to 15 printable ASCII characters up to its NUL;
//! - `UniqueProcessId`, `InheritedFromUniqueProcessId` and the thread's `Cid.UniqueThread` are
//!   handle values: multiples of 4 below 2^32, the thread's not 0 unless the process is the
//!   idle process (pid 0);
//! - the `KPRCB` copy's `Number` is below the header's `NumberProcessors`.
//!
//! Every field must lie inside the copy as the file holds it; nothing outside the file is read.

use std::path::{Path, PathBuf};

use super::{find_profile, isf_files, load_file, WindowsProfile, MAX_PROFILE_FILES, NT_PDB_NAMES};
use crate::backend::snapshot::TriageDump;
use crate::bytes::{slice_at, u32_at, u64_at};
use crate::error::{Error, Result};
use crate::os::pe::{CodeView, FileImage, Pe};
use crate::os::profile::pdb::image_store_paths;
use crate::os::profile::{Profile, TypeSource};

/// `DISPATCHER_HEADER.Type` of a process object.
pub const PROCESS_OBJECT: u8 = 3;
/// `DISPATCHER_HEADER.Type` of a thread object.
pub const THREAD_OBJECT: u8 = 6;

/// The crash's process, thread and processor as the dump's copies record them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TriageProcess {
    /// `EPROCESS.UniqueProcessId`.
    pub pid: u64,
    /// `EPROCESS.InheritedFromUniqueProcessId`.
    pub ppid: u64,
    /// `EPROCESS.ImageFileName` (at most 15 characters).
    pub name: String,
    /// `ETHREAD.Cid.UniqueThread`.
    pub thread_id: u64,
    /// `ETHREAD.Cid.UniqueProcess`: the thread's own process, which differs from `pid` when
    /// the thread was attached to another process's address space.
    pub thread_process_id: u64,
    /// `KPRCB.Number` of the crashing processor, when the profile has the field and the dump
    /// a `KPRCB` copy.
    pub processor: Option<u32>,
}

/// A reading of the copies, and the profiles that gave it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TriageReading {
    /// What the copies say.
    pub process: TriageProcess,
    /// The profile sources (file names) whose layouts read the copies this way.
    pub profiles: Vec<String>,
    /// How many profiles were tried.
    pub tried: usize,
    /// How the profile was chosen.
    pub picked_by: ProfilePick,
}

/// How a triage dump's profile was chosen.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProfilePick {
    /// The one given (a file, or loaded).
    Given,
    /// By the kernel's own PDB GUID and age, read from its image in the symbol store: the
    /// first driver's name, `TimeDateStamp` and `SizeOfImage` give the image's path there
    /// ([`image_store_paths`]).
    KernelImage {
        /// The image file.
        image: PathBuf,
        /// The PDB GUID of its CodeView record.
        guid: String,
        /// The PDB age.
        age: u32,
    },
    /// Every profile of the directory tried, and those whose layouts read the copies as
    /// valid agreed.
    Layout,
}

/// The offsets one profile gives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Layout {
    pid: u64,
    ppid: u64,
    name: u64,
    cid_process: u64,
    cid_thread: u64,
    prcb_number: Option<(u64, u64)>,
}

/// The `(structure, field)` pairs a reading uses; `_KPRCB.Number` may be absent.
pub const TRIAGE_FIELDS: [(&str, &str); 6] = [
    ("_EPROCESS", "UniqueProcessId"),
    ("_EPROCESS", "InheritedFromUniqueProcessId"),
    ("_EPROCESS", "ImageFileName"),
    ("_ETHREAD", "Cid.UniqueProcess"),
    ("_ETHREAD", "Cid.UniqueThread"),
    ("_KPRCB", "Number"),
];

impl Layout {
    fn of(types: &dyn TypeSource) -> Result<Layout> {
        let [pid, ppid, name, cid_process, cid_thread, number] = TRIAGE_FIELDS;
        let f = |(t, p): (&str, &str)| types.require(t, p);
        Ok(Layout {
            pid: f(pid)?,
            ppid: f(ppid)?,
            name: f(name)?,
            cid_process: f(cid_process)?,
            cid_thread: f(cid_thread)?,
            prcb_number: types
                .field(number.0, number.1)
                .map(|x| (x.offset, x.size.unwrap_or(4).clamp(1, 4))),
        })
    }

    /// Read the copies with this layout; why not, when they do not read as valid.
    fn read(&self, dump: &TriageDump) -> std::result::Result<TriageProcess, String> {
        let ep = dump
            .process_copy()
            .ok_or("the dump has no process copy (ProcessOffset 0)")?;
        let th = dump
            .thread_copy()
            .ok_or("the dump has no thread copy (ThreadOffset 0)")?;
        let at = |copy: &[u8], what: &str, off: u64| {
            usize::try_from(off)
                .ok()
                .and_then(|o| u64_at(copy, o))
                .ok_or_else(|| format!("{what} at {off:#x} is past the end of the file"))
        };
        if ep.first() != Some(&PROCESS_OBJECT) {
            return Err(format!(
                "the process copy's dispatcher header Type is {:?}, not {PROCESS_OBJECT} (ProcessObject)",
                ep.first()
            ));
        }
        if th.first() != Some(&THREAD_OBJECT) {
            return Err(format!(
                "the thread copy's dispatcher header Type is {:?}, not {THREAD_OBJECT} (ThreadObject)",
                th.first()
            ));
        }
        let handle = |what: &str, v: u64, zero_ok: bool| {
            if !v.is_multiple_of(4) || v >> 32 != 0 || (v == 0 && !zero_ok) {
                Err(format!("{what} {v:#x} is not a handle value"))
            } else {
                Ok(v)
            }
        };
        let pid = handle(
            "EPROCESS.UniqueProcessId",
            at(ep, "EPROCESS.UniqueProcessId", self.pid)?,
            true,
        )?;
        let ppid = handle(
            "EPROCESS.InheritedFromUniqueProcessId",
            at(ep, "EPROCESS.InheritedFromUniqueProcessId", self.ppid)?,
            true,
        )?;
        let name = image_file_name(ep, self.name)?;
        // The idle threads (of the idle process, pid 0) have thread id 0; no other does.
        let thread_id = handle(
            "ETHREAD.Cid.UniqueThread",
            at(th, "ETHREAD.Cid.UniqueThread", self.cid_thread)?,
            pid == 0,
        )?;
        let thread_process_id = handle(
            "ETHREAD.Cid.UniqueProcess",
            at(th, "ETHREAD.Cid.UniqueProcess", self.cid_process)?,
            true,
        )?;
        let processor = match (self.prcb_number, dump.prcb_copy()) {
            (Some((off, size)), Some(prcb)) => {
                let n = usize::try_from(off)
                    .ok()
                    .and_then(|o| u32_at(prcb, o))
                    .ok_or_else(|| {
                        format!("KPRCB.Number at {off:#x} is past the end of the file")
                    })?;
                let n = if size >= 4 {
                    n
                } else {
                    n & ((1 << (8 * size)) - 1)
                };
                let cpus = dump.info.number_processors;
                if cpus != 0 && n >= cpus {
                    return Err(format!(
                        "KPRCB.Number {n} is not below NumberProcessors {cpus}"
                    ));
                }
                Some(n)
            }
            _ => None,
        };
        Ok(TriageProcess {
            pid,
            ppid,
            name,
            thread_id,
            thread_process_id,
            processor,
        })
    }
}

/// `ImageFileName` at `off`: up to 15 printable ASCII bytes before a NUL, at least one.
fn image_file_name(ep: &[u8], off: u64) -> std::result::Result<String, String> {
    let raw = usize::try_from(off)
        .ok()
        .and_then(|o| slice_at(ep, o, 15))
        .ok_or_else(|| format!("EPROCESS.ImageFileName at {off:#x} is past the end of the file"))?;
    let name: Vec<u8> = raw.iter().copied().take_while(|&b| b != 0).collect();
    if name.is_empty() || !name.iter().all(|b| (0x20..0x7f).contains(b)) {
        return Err(format!(
            "EPROCESS.ImageFileName {:?} is not a printable name",
            String::from_utf8_lossy(&name)
        ));
    }
    Ok(String::from_utf8_lossy(&name).into_owned())
}

/// The crashing process, thread and processor of `dump`, read with `profile` (see the
/// module documentation for how a directory is searched).
///
/// # Errors
/// [`Error::Config`] naming the dump and the profile: no profile reads the copies as
/// valid (with each one's reason), two read them differently, or the dump has no copies;
/// errors loading a given profile file.
pub fn crashing_process(dump: &TriageDump, profile: &WindowsProfile) -> Result<TriageReading> {
    let fail = |reason: String| Error::Config {
        what: dump.what.clone(),
        reason,
    };
    let mut pick = ProfilePick::Given;
    let candidates: Vec<(String, Result<Layout>)> = match profile {
        WindowsProfile::Loaded(p) => vec![(
            p.types.source_name().to_owned(),
            Layout::of(p.types.as_ref()),
        )],
        WindowsProfile::Isf(path) => vec![(
            path.display().to_string(),
            load_file(path).and_then(|(p, _)| layout_of(&p)),
        )],
        WindowsProfile::Directory(dir) => match kernel_image(dump, dir)? {
            Some((image, cv)) => {
                let (path, profile) = find_profile(dir, &cv)?;
                pick = ProfilePick::KernelImage {
                    image,
                    guid: cv.guid_string(),
                    age: cv.age,
                };
                vec![(path.display().to_string(), layout_of(&profile))]
            }
            None => {
                let files = profile_files(dir).map_err(|e| {
                    fail(format!(
                        "no Windows profile to read the process copy with: the profile directory {} cannot be read ({e})",
                        dir.display()
                    ))
                })?;
                if files.is_empty() {
                    return Err(fail(format!(
                        "{} holds no ISF (.json, .json.xz) and no NT kernel PDB in symbol-store layout to read the triage dump's process copy with",
                        dir.display()
                    )));
                }
                pick = ProfilePick::Layout;
                files
                    .into_iter()
                    .map(|f| {
                        let layout = load_file(&f).and_then(|(p, _)| layout_of(&p));
                        (f.display().to_string(), layout)
                    })
                    .collect()
            }
        },
    };
    let tried = candidates.len();
    let mut readings: Vec<TriageReading> = Vec::new();
    let mut reasons = Vec::new();
    for (source, layout) in candidates {
        match layout.map_err(|e| e.to_string()).and_then(|l| l.read(dump)) {
            Ok(p) => match readings.iter_mut().find(|r| r.process == p) {
                Some(r) => r.profiles.push(source),
                None => readings.push(TriageReading {
                    process: p,
                    profiles: vec![source],
                    tried,
                    picked_by: pick.clone(),
                }),
            },
            Err(why) => reasons.push(format!("{source}: {why}")),
        }
    }
    match readings.len() {
        1 => Ok(readings.remove(0)),
        0 => Err(fail(format!(
            "the triage dump's process copy does not read as valid with {}: {}",
            if tried == 1 { "the profile" } else { "any profile" },
            reasons.join("; ")
        ))),
        _ => Err(fail(format!(
            "the profiles read the triage dump's process copy differently: {}; give the profile of this kernel build as a file",
            readings
                .iter()
                .map(|r| format!(
                    "{} read pid {} {:?}",
                    r.profiles.join(", "),
                    r.process.pid,
                    r.process.name
                ))
                .collect::<Vec<_>>()
                .join("; ")
        ))),
    }
}

/// Largest kernel image read from a symbol store.
pub const MAX_KERNEL_IMAGE: u64 = 256 << 20;

/// The kernel's image in the symbol store at `dir`, by the first driver's (the kernel's) name,
/// `TimeDateStamp` and `SizeOfImage`, and its CodeView record; `None` when the store does not
/// have it.
///
/// # Errors
/// The image is there but cannot be read, does not match the driver entry, or has no
/// CodeView record: the error names the file.
fn kernel_image(dump: &TriageDump, dir: &Path) -> Result<Option<(PathBuf, CodeView)>> {
    let Some(Ok(kernel)) = dump.drivers.first() else {
        return Ok(None);
    };
    let Some(path) = image_store_paths(dir, &kernel.name, kernel.timestamp, kernel.size)
        .into_iter()
        .find(|p| p.is_file())
    else {
        return Ok(None);
    };
    let what = path.display().to_string();
    let bytes = crate::file::read_capped(&path, MAX_KERNEL_IMAGE, "PE image")?;
    let pe = Pe::parse(FileImage::new(&bytes, what.clone()))?;
    let h = pe.headers();
    if (h.timestamp, h.size_of_image) != (kernel.timestamp, kernel.size) {
        return Err(Error::malformed(
            "PE image",
            what,
            format!(
                "its TimeDateStamp {:#x} and SizeOfImage {:#x} are not the triage dump's kernel's ({:#x}, {:#x}), under whose key the symbol store keeps it",
                h.timestamp, h.size_of_image, kernel.timestamp, kernel.size
            ),
        ));
    }
    match pe.codeview()? {
        Some(cv) => Ok(Some((path, cv))),
        None => Err(Error::malformed(
            "PE image",
            what,
            "no CodeView (RSDS) record names the kernel's PDB",
        )),
    }
}

fn layout_of(p: &Profile) -> Result<Layout> {
    Layout::of(p.types.as_ref())
}

/// The profile files of `dir`: ISF files, then the PDBs of NT kernel names in symbol-store
/// layout; at most [`MAX_PROFILE_FILES`], each group in name order.
fn profile_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut isf = isf_files(dir)?;
    let mut pdbs = Vec::new();
    for name in NT_PDB_NAMES {
        let Ok(rd) = std::fs::read_dir(dir.join(name)) else {
            continue;
        };
        let mut found: Vec<PathBuf> = rd
            .flatten()
            .take(4096)
            .map(|e| e.path().join(name))
            .filter(|p| p.is_file())
            .collect();
        found.sort();
        pdbs.extend(found);
    }
    isf.extend(pdbs);
    isf.truncate(MAX_PROFILE_FILES);
    Ok(isf)
}
