//! Whole-guest memory capture: a running domain (or any backend with memory and registers)
//! written as a QEMU-ELF-style core that [`Snapshot`](crate::backend::snapshot::Snapshot) and
//! Volatility3 read.
//!
//! The file is the format QEMU's `dump-guest-memory` writes, laid out for streaming:
//!
//! | part | what |
//! |---|---|
//! | ELF header | `ET_CORE`, `EM_X86_64`; its `e_phoff` points at the program headers at the end |
//! | memory, from offset 4096 | every readable byte of guest-physical memory, one `PT_LOAD` per contiguous readable range (`p_paddr` = guest-physical address) |
//! | notes | per vCPU: `CORE` `NT_PRSTATUS`, `QEMU` (`QEMUCPUState`: control registers, segment bases, GDT/IDT, `kernel_gs_base`) and xenvmi's `XENVMI` MSR note (`efer`, `lstar`, ...); then one `XENVMI` capture note (JSON: consistency, vCPUs, the ranges that could not be read) |
//! | program headers | `PT_NOTE` first, then the `PT_LOAD`s in address order; past 65,534 of them, `PN_XNUM` and a section header 0 with the count, as Linux's own core dumps do |
//!
//! **Memory that cannot be read is missing, not zero.** The backend's ranges are read in
//! 1 MiB chunks of whole pages ([`PhysicalMemory::read_pages`]: on Xen one foreign mapping of
//! 256 frames with an error per frame), and each page that cannot be read ends the current
//! `PT_LOAD` and is listed in the capture note. A reader of the file sees no
//! memory there ([`Error::PhysicalUnmapped`]), never invented zeros.
//!
//! **Consistency.** With [`CaptureOptions::pause`] the domain is paused before its registers
//! are read and resumed after the last byte is written (also when writing fails), so the
//! registers and every page are of one instant: [`CaptureReport::paused_for`] says how long the
//! guest was held. Without it the guest runs on while it is read: each vCPU's registers are
//! those of the start, and pages are read one after another while the guest changes them, so
//! structures that span pages (lists, page tables, a process's memory against its `task_struct`)
//! may disagree. The capture note and [`CaptureReport::consistency`] record which it was.
//!
//! Bounded: at most [`MAX_SEGMENTS`] `PT_LOAD`s (the most [`Snapshot`] accepts; a guest whose
//! memory is more fragmented than that is refused with an error, not written unreadable), and
//! the note lists at most [`MAX_MISSING_LISTED`] missing ranges (their total count and size are
//! always given).
//!
//! [`Snapshot`]: crate::backend::snapshot::Snapshot

use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::addr::{Gfn, Gpa, VcpuId, PAGE_SIZE};
use crate::backend::snapshot::elf;
use crate::backend::{PhysicalMemory, VcpuState, VmControl};
use crate::error::{Error, Result};
use crate::regs::Registers;

/// Progress reports and their terminal rendering (defined in [`crate::progress`], shared with
/// kernel discovery).
pub use crate::progress::{Progress, ProgressMeter};

/// Most `PT_LOAD` segments written (one program header is the notes').
pub const MAX_SEGMENTS: usize = elf::MAX_PHDRS - 1;
/// Most missing ranges listed in the capture note.
pub const MAX_MISSING_LISTED: usize = 4096;
/// Bytes read from the backend at a time.
const CHUNK: u64 = 1 << 20;
/// Where the memory starts in the file (page-aligned after the ELF header).
const DATA_START: u64 = 4096;

/// Whether the guest was held still while it was captured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Consistency {
    /// Paused around the capture: registers and memory of one instant.
    Paused,
    /// Read while the guest ran: see the module documentation.
    Live,
}

impl Consistency {
    /// `"paused"` or `"live"`, as the capture note and JSON outputs say it.
    pub fn as_str(self) -> &'static str {
        match self {
            Consistency::Paused => "paused",
            Consistency::Live => "live",
        }
    }
}

/// What a capture asks for.
#[derive(Default)]
pub struct CaptureOptions<'a> {
    /// Pause the domain around the capture (consistent), through this control; `None` reads
    /// it live.
    pub pause: Option<&'a dyn VmControl>,
    /// Called after each chunk.
    pub progress: Option<&'a mut dyn FnMut(Progress)>,
}

/// What a capture wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaptureReport {
    /// Paused or live.
    pub consistency: Consistency,
    /// vCPUs whose registers were written.
    pub vcpus: u32,
    /// Bytes of guest memory in the file.
    pub bytes_written: u64,
    /// `PT_LOAD` segments written.
    pub segments: usize,
    /// Bytes of the backend's ranges that could not be read (absent from the file).
    pub missing_bytes: u64,
    /// How many separate ranges could not be read.
    pub missing_ranges: u64,
    /// The first [`MAX_MISSING_LISTED`] of them.
    pub missing: Vec<Range<u64>>,
    /// Size of the file.
    pub file_bytes: u64,
    /// How long the domain was paused (from the pause to the resume), when it was.
    pub paused_for: Option<Duration>,
    /// The whole capture.
    pub elapsed: Duration,
}

impl CaptureReport {
    /// Guest bytes written per second.
    pub fn throughput(&self) -> f64 {
        self.bytes_written as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Capture `backend` into the file `path` (created or truncated). See [`capture`].
///
/// # Errors
/// As [`capture`]; [`Error::Io`] naming the file.
pub fn capture_to_file<B: PhysicalMemory + VcpuState + ?Sized>(
    backend: &B,
    path: &Path,
    opts: CaptureOptions<'_>,
) -> Result<CaptureReport> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::create(path).map_err(io)?;
    let report = capture(backend, &file, opts).map_err(|e| match e {
        Error::Io { source, .. } => io(source),
        e => e,
    })?;
    file.sync_all().map_err(io)?;
    Ok(report)
}

/// Capture `backend` into a new file `out`, all or nothing: the core is written to
/// `OUT.partial` and renamed to `out` when complete, so `out` never holds a half-written core;
/// on any error the partial file is removed. An existing `out` is replaced only with
/// `replace`.
///
/// # Errors
/// [`Error::Io`] naming `out` when it is a directory, when it exists and `replace` is false
/// (kind [`std::io::ErrorKind::AlreadyExists`]), or when the rename fails; otherwise as
/// [`capture_to_file`] (naming the partial file).
pub fn capture_to_new_file<B: PhysicalMemory + VcpuState + ?Sized>(
    backend: &B,
    out: &Path,
    replace: bool,
    opts: CaptureOptions<'_>,
) -> Result<CaptureReport> {
    if out.is_dir() {
        return Err(Error::io(
            out,
            std::io::Error::other("is a directory, not an output file"),
        ));
    }
    if out.exists() && !replace {
        return Err(Error::io(
            out,
            std::io::Error::new(std::io::ErrorKind::AlreadyExists, "exists"),
        ));
    }
    let mut partial = out.as_os_str().to_owned();
    partial.push(".partial");
    let partial = std::path::PathBuf::from(partial);
    let r = capture_to_file(backend, &partial, opts).and_then(|r| {
        std::fs::rename(&partial, out)
            .map(|()| r)
            .map_err(|e| Error::io(out, e))
    });
    if r.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    r
}

/// Capture every readable byte of `backend`'s memory and every vCPU's registers into `out`,
/// which is written from its current start (offset 0 of the file).
///
/// # Errors
/// [`Error::Io`] when writing fails (the path is `"capture output"`; [`capture_to_file`] names
/// the file), the backend's errors for pausing or registers,
/// [`Error::Malformed`] when the memory is too fragmented (more than [`MAX_SEGMENTS`]
/// readable ranges). When the pause succeeded, the domain is resumed whatever happens; a
/// failing resume is an [`Error::Backend`] that says the domain may still be paused.
pub fn capture<B: PhysicalMemory + VcpuState + ?Sized, W: Write + Seek>(
    backend: &B,
    out: W,
    mut opts: CaptureOptions<'_>,
) -> Result<CaptureReport> {
    let start = Instant::now();
    let Some(control) = opts.pause else {
        return write_core(backend, out, &mut opts, Consistency::Live, start);
    };
    control.pause()?;
    let paused = Instant::now();
    let result = write_core(backend, out, &mut opts, Consistency::Paused, start);
    let resumed = control.resume();
    let held = paused.elapsed();
    match (result, resumed) {
        (Ok(mut r), Ok(())) => {
            r.paused_for = Some(held);
            r.elapsed = start.elapsed();
            Ok(r)
        }
        (_, Err(e)) => Err(Error::Backend {
            backend: "capture",
            operation: "resume after the capture".into(),
            reason: format!("{e}; the domain may still be paused: resume it (`xl unpause`)"),
        }),
        (Err(e), Ok(())) => Err(e),
    }
}

fn write_err(source: std::io::Error) -> Error {
    Error::Io {
        path: "capture output".into(),
        source,
    }
}

/// Tracks `PT_LOAD` segments and missing ranges while memory is streamed.
struct Layout {
    /// `(gpa, file offset, length)`.
    segments: Vec<(u64, u64, u64)>,
    missing: Vec<Range<u64>>,
    missing_ranges: u64,
    missing_bytes: u64,
    /// Where the last missing range ended (to merge adjacent pages).
    last_missing_end: Option<u64>,
    offset: u64,
}

impl Layout {
    fn readable(&mut self, gpa: u64, len: u64) -> Result<()> {
        match self.segments.last_mut() {
            Some((g, off, l)) if *g + *l == gpa && *off + *l == self.offset => *l += len,
            _ => {
                if self.segments.len() >= MAX_SEGMENTS {
                    return Err(Error::malformed(
                        "capture",
                        "guest memory",
                        format!(
                            "more than {MAX_SEGMENTS} separate readable ranges: too fragmented \
                             for an ELF core (its program headers)"
                        ),
                    ));
                }
                self.segments.push((gpa, self.offset, len));
            }
        }
        self.offset += len;
        Ok(())
    }

    fn missing(&mut self, gpa: u64, len: u64) {
        self.missing_bytes += len;
        if self.last_missing_end == Some(gpa) {
            if let Some(r) = self.missing.last_mut().filter(|r| r.end == gpa) {
                r.end += len;
            }
        } else {
            self.missing_ranges += 1;
            if self.missing.len() < MAX_MISSING_LISTED {
                self.missing.push(gpa..gpa + len);
            }
        }
        self.last_missing_end = Some(gpa + len);
    }
}

fn write_core<B: PhysicalMemory + VcpuState + ?Sized, W: Write + Seek>(
    backend: &B,
    out: W,
    opts: &mut CaptureOptions<'_>,
    consistency: Consistency,
    start: Instant,
) -> Result<CaptureReport> {
    let vcpus: Vec<Registers> = (0..backend.vcpu_count())
        .map(|i| backend.registers(VcpuId(i)))
        .collect::<Result<_>>()?;
    let mut w = BufWriter::with_capacity(4 << 20, out);
    w.seek(SeekFrom::Start(DATA_START)).map_err(write_err)?;
    let ranges = backend.physical_ranges();
    let total: u64 = ranges.iter().map(|r| r.end.saturating_sub(r.start)).sum();
    let mut layout = Layout {
        segments: Vec::new(),
        missing: Vec::new(),
        missing_ranges: 0,
        missing_bytes: 0,
        last_missing_end: None,
        offset: DATA_START,
    };
    let mut buf = vec![0u8; CHUNK as usize];
    let mut present = vec![false; (CHUNK / PAGE_SIZE) as usize];
    let mut done = 0u64;
    for r in &ranges {
        let mut at = r.start;
        while at < r.end {
            // Chunks end on CHUNK boundaries, so that a failing chunk splits into whole pages.
            let end = (at - at % CHUNK).saturating_add(CHUNK).min(r.end);
            let len = (end - at) as usize;
            if at % PAGE_SIZE == 0 && end % PAGE_SIZE == 0 {
                // Whole pages: one bulk read, each page kept or recorded missing.
                let pages = len / PAGE_SIZE as usize;
                let present = &mut present[..pages];
                backend.read_pages(Gfn(at / PAGE_SIZE), &mut buf[..len], present)?;
                for (i, &ok) in present.iter().enumerate() {
                    let (p, page) = (at + i as u64 * PAGE_SIZE, i * PAGE_SIZE as usize);
                    if ok {
                        w.write_all(&buf[page..page + PAGE_SIZE as usize])
                            .map_err(write_err)?;
                        layout.readable(p, PAGE_SIZE)?;
                    } else {
                        layout.missing(p, PAGE_SIZE);
                    }
                }
            } else {
                // A range that starts or ends inside a page: its pieces page by page.
                let mut p = at;
                while p < end {
                    let pe = (p - p % PAGE_SIZE).saturating_add(PAGE_SIZE).min(end);
                    let n = (pe - p) as usize;
                    if backend.read_physical(Gpa(p), &mut buf[..n]).is_ok() {
                        w.write_all(&buf[..n]).map_err(write_err)?;
                        layout.readable(p, n as u64)?;
                    } else {
                        layout.missing(p, n as u64);
                    }
                    p = pe;
                }
            }
            done += len as u64;
            at = end;
            if let Some(f) = opts.progress.as_mut() {
                f(Progress {
                    stage: "capture",
                    done,
                    total,
                    written: Some(layout.offset - DATA_START),
                });
            }
        }
    }
    // Notes: per vCPU, then the capture note.
    let mut notes = Vec::new();
    for (i, r) in vcpus.iter().enumerate() {
        elf::prstatus_note(&mut notes, i as u32, r);
        elf::qemu_note(&mut notes, r);
        elf::msr_note(&mut notes, r);
    }
    let info = serde_json::json!({
        "tool": "xenvmi",
        "version": env!("CARGO_PKG_VERSION"),
        "consistency": consistency.as_str(),
        "vcpus": vcpus.len(),
        "missing_bytes": layout.missing_bytes,
        "missing_ranges": layout.missing_ranges,
        "missing": layout.missing.iter().map(|r| [r.start, r.end]).collect::<Vec<_>>(),
    });
    elf::note(
        &mut notes,
        elf::XENVMI,
        elf::NT_XENVMI_CAPTURE,
        info.to_string().as_bytes(),
    );
    let notes_off = layout.offset;
    w.write_all(&notes).map_err(write_err)?;
    let phoff = (notes_off + notes.len() as u64).next_multiple_of(8);
    w.write_all(&vec![
        0u8;
        (phoff - notes_off - notes.len() as u64) as usize
    ])
    .map_err(write_err)?;
    let phnum = layout.segments.len() + 1;
    w.write_all(&elf::program_header(
        elf::PT_NOTE,
        notes_off,
        0,
        notes.len() as u64,
    ))
    .map_err(write_err)?;
    for &(gpa, off, len) in &layout.segments {
        w.write_all(&elf::program_header(elf::PT_LOAD, off, gpa, len))
            .map_err(write_err)?;
    }
    let shoff = phoff + (phnum * elf::PHDR_LEN) as u64;
    let mut file_bytes = shoff;
    if phnum >= 0xffff {
        w.write_all(&elf::xnum_section_header(phnum))
            .map_err(write_err)?;
        file_bytes += elf::SHDR_LEN as u64;
    }
    w.seek(SeekFrom::Start(0)).map_err(write_err)?;
    w.write_all(&elf::file_header(phoff, phnum, shoff))
        .map_err(write_err)?;
    w.flush().map_err(write_err)?;
    Ok(CaptureReport {
        consistency,
        vcpus: vcpus.len() as u32,
        bytes_written: layout.offset - DATA_START,
        segments: layout.segments.len(),
        missing_bytes: layout.missing_bytes,
        missing_ranges: layout.missing_ranges,
        missing: layout.missing,
        file_bytes,
        paused_for: None,
        elapsed: start.elapsed(),
    })
}
