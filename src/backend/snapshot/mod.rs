//! Read-only snapshot backends: raw physical memory, QEMU `dump-guest-memory` ELF cores, LiME
//! captures and 64-bit Windows kernel crash dumps (`MEMORY.DMP`). The image is read with
//! `pread` as needed, never copied whole (and not mapped: a file truncated under a mapping
//! kills the process with SIGBUS); the format is detected from content.
//!
//! | format | detected by | memory | registers | extra |
//! |---|---|---|---|---|
//! | [`Format::Raw`] | anything else | file offset = guest-physical address | none | |
//! | [`Format::QemuElf`] | `\x7fELF` | `PT_LOAD` segments | every vCPU (notes) | [`Snapshot::vmcoreinfo`] |
//! | [`Format::Lime`] | `EMiL` | one range per header | none | |
//! | [`Format::WindowsCrashDump`] | `PAGEDU64` | runs (DumpType 1) or a page bitmap (2, 5, 6, 7) | the crashing processor only, from the header's `CONTEXT` | [`Snapshot::windows_dump_info`] |
//!
//! A Windows crash dump records one processor's `CONTEXT` and no control registers: vCPU 0's
//! CR3 is the header's `DirectoryTableBase` and CR0/CR4/EFER are set to 4-level long mode (see
//! [`Format::WindowsCrashDump`]). Bitmap dumps can hold many thousands of regions; lookups
//! switch from a linear scan to a binary search above a handful.
//!
//! ```no_run
//! use xenvmi::backend::snapshot::Snapshot;
//! use xenvmi::backend::{PhysicalMemory, VcpuState};
//! let snap = Snapshot::open("vmcore.elf")?;
//! println!("{} with {} vCPUs", snap.format(), snap.vcpu_count());
//! # Ok::<(), xenvmi::Error>(())
//! ```

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::addr::{Gfn, Gpa, VcpuId};
use crate::backend::{PhysicalMemory, VcpuState};
use crate::error::{Error, Result};
use crate::regs::Registers;

mod crashdump;
pub(crate) mod elf;
mod lime;
mod storage;
mod triage;
mod xen_core;

pub use crashdump::{WindowsDumpInfo, WindowsDumpKind};
use storage::{Source, Storage};
pub use triage::{
    TriageDriver, TriageDump, DRIVER_ENTRY_SIZE, DUMP_TYPE_TRIAGE, MAX_DRIVER_NAME,
    MAX_TRIAGE_DRIVERS, MAX_TRIAGE_DUMP, TRIAGE_VALID,
};

/// The on-disk format of a snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Format {
    /// File offset = guest-physical address.
    Raw,
    /// ELF core from QEMU's `dump-guest-memory` (or any ELF64 x86-64 core with PT_LOAD
    /// segments whose `p_paddr` are guest-physical addresses).
    QemuElf,
    /// LiME (`lime-forensics`) format: ranges each behind a 32-byte header.
    Lime,
    /// 64-bit Windows kernel crash dump (`MEMORY.DMP`, `PAGEDU64`): full (DumpType 1: the
    /// header's physical-memory runs, stored in run order from 0x2000) or bitmap (DumpType 5
    /// and 6: a page bitmap after an `SDMP`/`FDMP` header at 0x2000, present pages stored from
    /// `FirstPage`; summary (2) and automatic (7) dumps in that layout too). Header-only,
    /// triage, RDMP and unknown DumpTypes give [`crate::Error::UnsupportedImage`]
    /// (`unsupported DumpType N (name): ...`); 32-bit `PAGEDUMP` files are refused.
    ///
    /// Registers: the header holds a single `CONTEXT`, that of the processor that crashed,
    /// which is the snapshot's one vCPU (general registers, rip, rflags, cs, ss); which
    /// processor it was, and what the others ran, is in guest memory
    /// (`crate::os::windows::Windows::processors`). A `CONTEXT` has no control registers, so
    /// CR3 is the header's `DirectoryTableBase` and CR0 = PE|WP|PG (0x8001_0001), CR4 = PAE
    /// (0x20), EFER = LME|LMA (0x500): what every running x64 Windows kernel has on, making
    /// [`Registers::has_paging_state`] true and [`Registers::paging_mode`] 4-level. 5-level
    /// paging cannot be told from the header and is not assumed. Header values are in
    /// [`Snapshot::windows_dump_info`].
    WindowsCrashDump,
    /// Xen's own core file, as `xl dump-core` writes it for an HVM or PVH domain: an ELF64
    /// core without program headers whose pages and their frame numbers are in sections
    /// (`.xen_pages`, `.xen_pfn`), with each vCPU's `vcpu_guest_context` (`.xen_prstatus`).
    /// PV domains' dumps are refused (their page tables hold machine frames).
    XenCore,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Raw => "raw",
            Format::QemuElf => "QEMU ELF core",
            Format::Lime => "LiME",
            Format::WindowsCrashDump => "Windows crash dump",
            Format::XenCore => "Xen dump-core",
        })
    }
}

/// One backed range of guest-physical memory and where it is in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    /// First guest-physical address.
    pub gpa: u64,
    /// Length in bytes.
    pub len: u64,
    /// Offset of the first byte in the file.
    pub file_offset: u64,
}

impl Region {
    fn end(&self) -> u64 {
        self.gpa + self.len
    }
}

/// What a format parser found in an image.
#[derive(Debug, Default)]
pub(crate) struct Layout {
    pub(crate) regions: Vec<Region>,
    pub(crate) vcpus: Vec<Registers>,
    pub(crate) vmcoreinfo: Option<String>,
    /// xenvmi's capture note (JSON), in a core `crate::capture` wrote.
    pub(crate) capture: Option<String>,
    pub(crate) windows: Option<WindowsDumpInfo>,
}

/// A read-only memory snapshot.
pub struct Snapshot {
    storage: Storage,
    format: Format,
    regions: Vec<Region>,
    vcpus: Vec<Registers>,
    vmcoreinfo: Option<String>,
    capture: Option<String>,
    windows: Option<WindowsDumpInfo>,
    source: PathBuf,
}

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snapshot")
            .field("source", &self.source)
            .field("format", &self.format)
            .field("regions", &self.regions)
            .field("vcpus", &self.vcpus.len())
            .finish()
    }
}

/// Detect the format of an image from its first bytes (64 tell an ELF core of QEMU's layout
/// from Xen's).
///
/// 32-bit Windows dumps (`PAGEDUMP`) are detected as [`Format::WindowsCrashDump`] too, so that
/// opening one fails with a clear error instead of reading the file as raw memory.
pub fn detect_format(head: &[u8]) -> Format {
    if head.starts_with(b"\x7fELF") {
        if xen_core::looks_like(head) {
            Format::XenCore
        } else {
            Format::QemuElf
        }
    } else if head.starts_with(crashdump::SIGNATURE_64) || head.starts_with(crashdump::SIGNATURE_32)
    {
        Format::WindowsCrashDump
    } else if crate::bytes::u32_at(head, 0) == Some(lime::LIME_MAGIC) {
        Format::Lime
    } else {
        Format::Raw
    }
}

impl Snapshot {
    /// Open an image file and detect its format from content. The file is read with `pread`
    /// as needed, not mapped: if it shrinks while open, reads of what is gone fail with
    /// [`Error::PhysicalUnmapped`] (a mapping would kill the process with SIGBUS).
    ///
    /// # Errors
    /// [`Error::Io`] if the file cannot be opened or is not a regular file (the message names
    /// the file and the errno); [`Error::Malformed`] if it is truncated or corrupt.
    pub fn open(path: impl AsRef<Path>) -> Result<Snapshot> {
        let path = path.as_ref();
        let storage = Storage::open(path)?;
        let head = storage.bytes_at(0, storage.size().min(64));
        let format = detect_format(head.as_deref().unwrap_or_default());
        Self::build(storage, format, path.to_path_buf())
    }

    /// Map an image file and parse it as `format`, without detection.
    ///
    /// # Errors
    /// As [`Snapshot::open`].
    pub fn open_as(path: impl AsRef<Path>, format: Format) -> Result<Snapshot> {
        let path = path.as_ref();
        Self::build(Storage::open(path)?, format, path.to_path_buf())
    }

    /// Parse an image held in memory (tests, fuzzing, images built on the fly).
    ///
    /// # Errors
    /// [`Error::Malformed`] if it is truncated or corrupt.
    pub fn from_bytes(bytes: Vec<u8>, format: Option<Format>) -> Result<Snapshot> {
        let format = format.unwrap_or_else(|| detect_format(&bytes));
        Self::build(Storage::Owned(bytes), format, PathBuf::from("<memory>"))
    }

    fn build(storage: Storage, format: Format, source: PathBuf) -> Result<Snapshot> {
        let what = source.display().to_string();
        let layout = match format {
            Format::Raw => {
                if storage.len() == 0 {
                    return Err(Error::malformed("raw image", what, "the image is empty"));
                }
                Layout {
                    regions: vec![Region {
                        gpa: 0,
                        len: storage.len(),
                        file_offset: 0,
                    }],
                    ..Layout::default()
                }
            }
            Format::QemuElf => elf::parse(&storage, &what)?,
            Format::Lime => lime::parse(&storage, &what)?,
            Format::WindowsCrashDump => crashdump::parse(&storage, &what)?,
            Format::XenCore => xen_core::parse(&storage, &what)?,
        };
        let regions = normalize_regions(layout.regions, storage.len(), format, &what)?;
        Ok(Snapshot {
            storage,
            format,
            regions,
            vcpus: layout.vcpus,
            vmcoreinfo: layout.vmcoreinfo,
            capture: layout.capture,
            windows: layout.windows,
            source,
        })
    }

    /// The detected or requested format.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Where the image came from.
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// The backed guest-physical regions, sorted by address.
    pub fn regions(&self) -> &[Region] {
        &self.regions
    }

    /// The `VMCOREINFO` note text, if the image has one (kdump cores, QEMU with `vmcoreinfo`).
    pub fn vmcoreinfo(&self) -> Option<&str> {
        self.vmcoreinfo.as_deref()
    }

    /// How xenvmi captured this core, when it did (`crate::capture`): the JSON text of its
    /// `XENVMI` note, with the consistency (`paused` or `live`) and the guest-physical ranges
    /// that could not be read and are absent from the file.
    pub fn capture_info(&self) -> Option<&str> {
        self.capture.as_deref()
    }

    /// All vCPU register sets recorded in the image (empty for raw and LiME; one, vCPU 0, for a
    /// Windows crash dump).
    pub fn all_registers(&self) -> &[Registers] {
        &self.vcpus
    }

    /// The header values of a Windows crash dump (`None` for every other format): the kernel's
    /// page-table root, `PsActiveProcessHead`, `PsLoadedModuleList`, `KdDebuggerDataBlock`,
    /// the bug check and the dump type.
    ///
    /// ```no_run
    /// use xenvmi::backend::snapshot::Snapshot;
    /// let snap = Snapshot::open("MEMORY.DMP")?;
    /// if let Some(w) = snap.windows_dump_info() {
    ///     println!("Windows build {}, DTB {:#x}, processes at {:#x}",
    ///              w.minor_version, w.directory_table_base, w.ps_active_process_head);
    /// }
    /// # Ok::<(), xenvmi::Error>(())
    /// ```
    pub fn windows_dump_info(&self) -> Option<&WindowsDumpInfo> {
        self.windows.as_ref()
    }

    #[inline]
    fn region_for(&self, gpa: u64) -> Option<&Region> {
        // Raw, ELF and LiME images have 1-4 regions: a linear scan beats a binary search there.
        // Bitmap crash dumps can have many thousands: those go out of line.
        if self.regions.len() <= LINEAR_REGION_SCAN {
            return self.regions.iter().find(|r| gpa >= r.gpa && gpa < r.end());
        }
        self.region_for_many(gpa)
    }

    /// Binary search: regions are sorted and disjoint, so the candidate is the last one that
    /// starts at or below `gpa`.
    #[inline(never)]
    fn region_for_many(&self, gpa: u64) -> Option<&Region> {
        let i = self.regions.partition_point(|r| r.gpa <= gpa);
        let r = self.regions.get(i.checked_sub(1)?)?;
        (gpa < r.end()).then_some(r)
    }

    fn unmapped(&self, gpa: Gpa, len: usize) -> Error {
        Error::PhysicalUnmapped {
            gpa,
            len,
            backend: self.name(),
            max: Gpa(self
                .regions
                .last()
                .map(|r| r.end().saturating_sub(1))
                .unwrap_or(0)),
        }
    }
}

/// Up to this many regions, `region_for` scans linearly.
const LINEAR_REGION_SCAN: usize = 8;

/// Sort regions, check them against the file, reject overlaps.
fn normalize_regions(
    mut regions: Vec<Region>,
    file_len: u64,
    format: Format,
    what: &str,
) -> Result<Vec<Region>> {
    let fmt_name = match format {
        Format::Raw => "raw image",
        Format::QemuElf => "QEMU ELF core",
        Format::Lime => "LiME image",
        Format::WindowsCrashDump => "Windows crash dump",
        Format::XenCore => "Xen dump-core",
    };
    regions.retain(|r| r.len > 0);
    for r in &regions {
        let file_end = r.file_offset.checked_add(r.len).ok_or_else(|| {
            Error::malformed(fmt_name, what, "a memory range's file offset overflows")
        })?;
        if file_end > file_len {
            return Err(Error::malformed(
                fmt_name,
                what,
                format!(
                    "memory range {:#x}..{:#x} needs file bytes up to {file_end:#x}, but the file has {file_len:#x} (truncated?)",
                    r.gpa,
                    r.gpa.saturating_add(r.len)
                ),
            ));
        }
        if r.gpa.checked_add(r.len).is_none() {
            return Err(Error::malformed(
                fmt_name,
                what,
                "a memory range wraps around the address space",
            ));
        }
    }
    regions.sort_by_key(|r| r.gpa);
    for w in regions.windows(2) {
        if w[0].end() > w[1].gpa {
            return Err(Error::malformed(
                fmt_name,
                what,
                format!(
                    "memory ranges at {:#x} and {:#x} overlap",
                    w[0].gpa, w[1].gpa
                ),
            ));
        }
    }
    if regions.is_empty() {
        return Err(Error::malformed(
            fmt_name,
            what,
            "the image contains no memory",
        ));
    }
    Ok(regions)
}

impl PhysicalMemory for Snapshot {
    fn name(&self) -> &'static str {
        match self.format {
            Format::Raw => "raw snapshot",
            Format::QemuElf => "QEMU ELF snapshot",
            Format::Lime => "LiME snapshot",
            Format::WindowsCrashDump => "Windows crash dump snapshot",
            Format::XenCore => "Xen dump-core snapshot",
        }
    }

    #[inline]
    fn read_physical(&self, gpa: Gpa, buf: &mut [u8]) -> Result<()> {
        let mut done = 0usize;
        while done < buf.len() {
            let cur = gpa
                .0
                .checked_add(done as u64)
                .ok_or_else(|| self.unmapped(gpa, buf.len()))?;
            let r = self
                .region_for(cur)
                .ok_or_else(|| self.unmapped(gpa, buf.len()))?;
            let avail = (r.end() - cur).min((buf.len() - done) as u64) as usize;
            let off = r.file_offset + (cur - r.gpa);
            // Regions were checked against the file length when the snapshot was built; a
            // file that shrank since fails here instead.
            if !self.storage.read_at(off, &mut buf[done..done + avail]) {
                return Err(self.unmapped(gpa, buf.len()));
            }
            done += avail;
        }
        Ok(())
    }

    #[inline]
    fn read_physical_u64(&self, gpa: Gpa) -> Result<u64> {
        if let Some(r) = self.region_for(gpa.0) {
            if gpa.0 + 8 <= r.end() {
                let off = r.file_offset + (gpa.0 - r.gpa);
                let mut b = [0u8; 8];
                if self.storage.read_at(off, &mut b) {
                    return Ok(u64::from_le_bytes(b));
                }
            }
        }
        let mut b = [0u8; 8];
        self.read_physical(gpa, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    fn physical_ranges(&self) -> Vec<Range<u64>> {
        self.regions.iter().map(|r| r.gpa..r.end()).collect()
    }

    fn physical_range_count(&self) -> usize {
        self.regions.len()
    }

    fn physical_range(&self, index: usize) -> Option<Range<u64>> {
        self.regions.get(index).map(|r| r.gpa..r.end())
    }

    fn max_gfn(&self) -> Gfn {
        // Without building `physical_ranges` (bitmap dumps can have many regions).
        Gfn(self
            .regions
            .last()
            .map(|r| r.end().saturating_sub(1) >> crate::addr::PAGE_SHIFT)
            .unwrap_or(0))
    }

    fn physical_slice(&self, gpa: Gpa, len: usize) -> Option<&[u8]> {
        let r = self.region_for(gpa.0)?;
        if gpa.0.checked_add(len as u64)? > r.end() {
            return None;
        }
        self.storage.slice(r.file_offset + (gpa.0 - r.gpa), len)
    }
}

impl VcpuState for Snapshot {
    fn vcpu_count(&self) -> u32 {
        self.vcpus.len() as u32
    }

    fn registers(&self, vcpu: VcpuId) -> Result<Registers> {
        self.vcpus
            .get(vcpu.0 as usize)
            .copied()
            .ok_or(Error::NoSuchVcpu {
                vcpu,
                count: self.vcpus.len() as u32,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_reads_and_reports_unbacked() {
        let mut img = vec![0u8; 8192];
        img[4096..4104].copy_from_slice(&0x1122_3344_5566_7788u64.to_le_bytes());
        let s = Snapshot::from_bytes(img, None).unwrap();
        assert_eq!(s.format(), Format::Raw);
        assert_eq!(
            s.read_physical_u64(Gpa(4096)).unwrap(),
            0x1122_3344_5566_7788
        );
        let mut b = [0u8; 16];
        let e = s.read_physical(Gpa(8190), &mut b).unwrap_err();
        assert!(e.is_not_mapped(), "{e}");
        assert!(s.read_physical_u64(Gpa(u64::MAX - 3)).is_err());
        assert_eq!(s.vcpu_count(), 0);
        assert!(matches!(
            s.registers(VcpuId(0)),
            Err(Error::NoSuchVcpu { .. })
        ));
    }

    #[test]
    fn many_regions_are_found_by_binary_search() {
        // 100 one-page regions at every other page, each backed by its own file page.
        let regions: Vec<Region> = (0..100u64)
            .map(|i| Region {
                gpa: 2 * i * 0x1000,
                len: 0x1000,
                file_offset: i * 0x1000,
            })
            .collect();
        let mut bytes = vec![0u8; 100 * 0x1000];
        for i in 0..100usize {
            bytes[i * 0x1000] = i as u8;
        }
        let regions = normalize_regions(regions, bytes.len() as u64, Format::Raw, "t").unwrap();
        let s = Snapshot {
            storage: Storage::Owned(bytes),
            format: Format::Raw,
            regions,
            vcpus: Vec::new(),
            vmcoreinfo: None,
            capture: None,
            windows: None,
            source: PathBuf::from("t"),
        };
        assert!(s.regions.len() > LINEAR_REGION_SCAN);
        for page in 0..202u64 {
            for off in [0u64, 1, 0xfff] {
                let gpa = page * 0x1000 + off;
                let linear = s.regions.iter().find(|r| gpa >= r.gpa && gpa < r.end());
                assert_eq!(s.region_for(gpa), linear, "{gpa:#x}");
            }
            if page % 2 == 0 && page < 200 {
                let mut b = [0u8; 1];
                s.read_physical(Gpa(page * 0x1000), &mut b).unwrap();
                assert_eq!(b[0], (page / 2) as u8);
            }
        }
        assert_eq!(s.region_for(u64::MAX), None);
        assert_eq!(s.max_gfn(), Gfn(198));
    }

    #[test]
    fn empty_image_is_an_error() {
        assert!(matches!(
            Snapshot::from_bytes(Vec::new(), None),
            Err(Error::Malformed { .. })
        ));
    }
}
