//! Portable Executable (PE/COFF) images: headers, sections, the CodeView debug record (which
//! names the PDB a profile must match) and exports.
//!
//! An image is read either from a file ([`FileImage`]: RVAs go through the section table to file
//! offsets) or from guest memory where the loader mapped it ([`MappedImage`]: RVA = offset from
//! the image base). Both are [`PeSource`]s; [`Pe`] parses either the same way.
//!
//! The image is attacker-controlled (a guest can forge or corrupt any header it maps). Every
//! read is bounds-checked, every count is capped ([`MAX_SECTIONS`], [`MAX_EXPORTS`]), every
//! string has a length cap ([`MAX_NAME`]), and export iteration reads one entry at a time.
//!
//! ```no_run
//! use xenvmi::os::pe::{FileImage, Pe};
//! let bytes = std::fs::read("ntoskrnl.exe")?;
//! let pe = Pe::parse(FileImage::new(&bytes, "ntoskrnl.exe"))?;
//! println!("{} sections, SizeOfImage {:#x}", pe.headers().sections.len(), pe.headers().size_of_image);
//! for export in pe.exports()? {
//!     let export = export?;
//!     println!("{:>5} {:#010x} {}", export.ordinal, export.rva, export.name.as_deref().unwrap_or("-"));
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;

use crate::addr::Gva;
use crate::backend::PhysicalMemory;
use crate::bytes::{u16_at, u32_at, u64_at};
use crate::error::{Error, Result};
use crate::mem::{AddressSpace, GuestMemory};

/// Bytes read for the headers (DOS header, NT headers, section table). The Windows loader
/// maps the headers in the first page; larger `SizeOfHeaders` values are read up to this cap.
pub const HEADER_BYTES: usize = 0x1000;
/// Most sections accepted (the Windows loader's own limit is 96).
pub const MAX_SECTIONS: usize = 96;
/// Most export-table entries (functions) visited; real kernels export about 3,000.
pub const MAX_EXPORTS: u32 = 1 << 16;
/// Longest name read (export names, the export directory's DLL name, the PDB path).
pub const MAX_NAME: usize = 512;
/// Largest `SizeOfImage` accepted (1 GiB; ntoskrnl is about 16 MiB).
pub const MAX_IMAGE_SIZE: u32 = 1 << 30;

const FORMAT: &str = "PE image";
/// `IMAGE_DIRECTORY_ENTRY_EXPORT`.
pub const DIR_EXPORT: usize = 0;
/// `IMAGE_DIRECTORY_ENTRY_DEBUG`.
pub const DIR_DEBUG: usize = 6;
/// `IMAGE_DEBUG_TYPE_CODEVIEW`.
const DEBUG_TYPE_CODEVIEW: u32 = 2;
/// Most debug-directory entries looked at.
const MAX_DEBUG_ENTRIES: u32 = 32;

/// Where a PE image's bytes come from, addressed by RVA.
pub trait PeSource {
    /// A name for messages (`ntoskrnl.exe at 0xfffff80..`, a file path).
    fn name(&self) -> String;
    /// Read `buf.len()` bytes at `rva`.
    ///
    /// # Errors
    /// Any error when a byte is not available.
    fn read_rva(&self, rva: u32, buf: &mut [u8]) -> Result<()>;
    /// Called once the section table is known (file images map RVAs through it).
    fn set_sections(&mut self, _sections: &[Section]) {}
    /// How many bytes of headers to read at RVA 0: [`HEADER_BYTES`], or less for a file
    /// shorter than that.
    fn header_len(&self) -> usize {
        HEADER_BYTES
    }
}

/// A PE file's bytes (on-disk layout: RVAs are translated through the section table).
#[derive(Clone, Debug)]
pub struct FileImage<'a> {
    bytes: &'a [u8],
    name: String,
    /// (rva, rva_end, file offset) per section with raw data.
    map: Vec<(u32, u32, u32)>,
    headers_end: u32,
}

impl<'a> FileImage<'a> {
    /// A file image.
    pub fn new(bytes: &'a [u8], name: impl Into<String>) -> Self {
        FileImage {
            bytes,
            name: name.into(),
            map: Vec::new(),
            headers_end: HEADER_BYTES as u32,
        }
    }

    fn offset_of(&self, rva: u32, len: usize) -> Option<usize> {
        let end = rva.checked_add(u32::try_from(len).ok()?)?;
        if end <= self.headers_end {
            return Some(rva as usize);
        }
        self.map
            .iter()
            .find(|(s, e, _)| rva >= *s && end <= *e)
            .map(|(s, _, off)| (*off as usize).saturating_add((rva - s) as usize))
    }
}

impl PeSource for FileImage<'_> {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn header_len(&self) -> usize {
        self.bytes.len().min(HEADER_BYTES)
    }

    fn read_rva(&self, rva: u32, buf: &mut [u8]) -> Result<()> {
        let src = self
            .offset_of(rva, buf.len())
            .and_then(|off| crate::bytes::slice_at(self.bytes, off, buf.len()))
            .ok_or_else(|| {
                Error::malformed(
                    FORMAT,
                    self.name.clone(),
                    format!(
                        "RVA {rva:#x}+{:#x} is not backed by the file's sections",
                        buf.len()
                    ),
                )
            })?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn set_sections(&mut self, sections: &[Section]) {
        self.map = sections
            .iter()
            .filter(|s| s.raw_size > 0)
            .map(|s| {
                let size = s.raw_size.min(if s.virtual_size == 0 {
                    s.raw_size
                } else {
                    s.virtual_size
                });
                (
                    s.virtual_address,
                    s.virtual_address.saturating_add(size),
                    s.raw_offset,
                )
            })
            .collect();
        self.headers_end = self
            .map
            .iter()
            .map(|m| m.0)
            .min()
            .unwrap_or(HEADER_BYTES as u32)
            .min(HEADER_BYTES as u32);
    }
}

/// A PE image mapped in guest virtual memory (as the loader lays it out).
pub struct MappedImage<'m, B> {
    mem: &'m GuestMemory<B>,
    space: AddressSpace,
    base: Gva,
    label: String,
}

impl<B> fmt::Debug for MappedImage<'_, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MappedImage")
            .field("base", &self.base)
            .field("space", &self.space)
            .field("label", &self.label)
            .finish()
    }
}

impl<'m, B: PhysicalMemory> MappedImage<'m, B> {
    /// The image at `base` in `space`; `label` names it in messages (`ntoskrnl.exe`).
    pub fn new(
        mem: &'m GuestMemory<B>,
        space: AddressSpace,
        base: Gva,
        label: impl Into<String>,
    ) -> Self {
        MappedImage {
            mem,
            space,
            base,
            label: label.into(),
        }
    }

    /// The image base.
    pub fn base(&self) -> Gva {
        self.base
    }
}

impl<B: PhysicalMemory> PeSource for MappedImage<'_, B> {
    fn name(&self) -> String {
        format!("{} at {}", self.label, self.base)
    }

    fn read_rva(&self, rva: u32, buf: &mut [u8]) -> Result<()> {
        let va = self
            .base
            .checked_add(rva as u64)
            .ok_or(Error::Overflow("PE image base + RVA"))?;
        self.mem.read(self.space, va, buf)
    }
}

/// One data directory entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DataDirectory {
    /// RVA of the data.
    pub rva: u32,
    /// Size in bytes.
    pub size: u32,
}

/// One section header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Section {
    /// Name (at most 8 bytes, NUL-trimmed, lossy UTF-8).
    pub name: String,
    /// `VirtualSize`.
    pub virtual_size: u32,
    /// `VirtualAddress` (an RVA).
    pub virtual_address: u32,
    /// `SizeOfRawData`.
    pub raw_size: u32,
    /// `PointerToRawData`.
    pub raw_offset: u32,
    /// `Characteristics` (`IMAGE_SCN_*`).
    pub characteristics: u32,
}

impl Section {
    /// Whether `rva` lies inside the section's virtual range.
    pub fn contains(&self, rva: u32) -> bool {
        let size = self.virtual_size.max(self.raw_size);
        rva >= self.virtual_address && (rva - self.virtual_address) < size
    }
}

/// The parsed headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeHeaders {
    /// `IMAGE_FILE_HEADER.Machine` (0x8664 for x86-64, 0x14c for x86).
    pub machine: u16,
    /// `TimeDateStamp`.
    pub timestamp: u32,
    /// `IMAGE_FILE_HEADER.Characteristics`.
    pub characteristics: u16,
    /// PE32+ (64-bit optional header) rather than PE32.
    pub pe32_plus: bool,
    /// Preferred load address.
    pub image_base: u64,
    /// `SizeOfImage`.
    pub size_of_image: u32,
    /// `SizeOfHeaders`.
    pub size_of_headers: u32,
    /// RVA of the entry point.
    pub entry_point: u32,
    /// `CheckSum`.
    pub checksum: u32,
    /// `Subsystem` (1 = native, 2 = GUI, 3 = console, 10+ = EFI).
    pub subsystem: u16,
    /// `DllCharacteristics`.
    pub dll_characteristics: u16,
    /// Data directories (at most 16).
    pub data_directories: Vec<DataDirectory>,
    /// Section headers (at most [`MAX_SECTIONS`]).
    pub sections: Vec<Section>,
}

impl PeHeaders {
    /// A data directory, if present and non-empty.
    pub fn directory(&self, index: usize) -> Option<DataDirectory> {
        self.data_directories
            .get(index)
            .copied()
            .filter(|d| d.rva != 0 && d.size != 0)
    }

    /// The section containing `rva`.
    pub fn section_of(&self, rva: u32) -> Option<&Section> {
        self.sections.iter().find(|s| s.contains(rva))
    }
}

/// A CodeView (`RSDS`) debug record: identifies the PDB, and so the profile, of an image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodeView {
    /// The PDB GUID as stored (`Data1` little-endian u32, `Data2`/`Data3` u16, `Data4` bytes).
    pub guid: [u8; 16],
    /// The PDB age.
    pub age: u32,
    /// The PDB path as recorded (`ntkrnlmp.pdb`, often a full build path).
    pub pdb_path: String,
}

impl CodeView {
    /// The GUID in symbol-server form: 32 upper-case hex digits
    /// (`5278AFF86C341677D7D7835C85B7B844`), as Volatility3 ISF metadata records it.
    pub fn guid_string(&self) -> String {
        let g = &self.guid;
        let d1 = u32::from_le_bytes([g[0], g[1], g[2], g[3]]);
        let d2 = u16::from_le_bytes([g[4], g[5]]);
        let d3 = u16::from_le_bytes([g[6], g[7]]);
        let mut s = format!("{d1:08X}{d2:04X}{d3:04X}");
        for b in &g[8..] {
            s.push_str(&format!("{b:02X}"));
        }
        s
    }

    /// The symbol-server key: GUID followed by the age in hex (`5278AF...B8441`).
    pub fn symbol_key(&self) -> String {
        format!("{}{:X}", self.guid_string(), self.age)
    }

    /// The file name of the PDB (the path's last component).
    pub fn pdb_name(&self) -> &str {
        self.pdb_path
            .rsplit(['\\', '/'])
            .next()
            .unwrap_or(&self.pdb_path)
    }
}

/// One exported function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Export {
    /// Biased ordinal (`Base` + index).
    pub ordinal: u32,
    /// Name, for exports by name.
    pub name: Option<String>,
    /// RVA of the function (for a forwarder: of the forwarder string).
    pub rva: u32,
    /// `"DLL.Function"` when the export forwards to another module.
    pub forwarder: Option<String>,
}

/// A parsed PE image.
#[derive(Debug)]
pub struct Pe<S> {
    src: S,
    headers: PeHeaders,
}

impl<S: PeSource> Pe<S> {
    /// Parse the DOS header, NT headers and section table.
    ///
    /// # Errors
    /// [`Error::Malformed`] for a missing or corrupt header (the reason says which field);
    /// memory errors from the source when the header page cannot be read.
    pub fn parse(mut src: S) -> Result<Pe<S>> {
        let name = src.name();
        let bad = |reason: String| Error::malformed(FORMAT, name.clone(), reason);
        // The headers must be readable: the whole header page, or all of a shorter file.
        let mut head = vec![0u8; src.header_len()];
        src.read_rva(0, &mut head)?;
        if head.get(..2) != Some(b"MZ") {
            return Err(bad("no MZ signature".into()));
        }
        let lfanew = u32_at(&head, 0x3c).unwrap_or(u32::MAX) as usize;
        if !(0x40..=HEADER_BYTES - 24).contains(&lfanew) {
            return Err(bad(format!(
                "e_lfanew {lfanew:#x} is outside the header page"
            )));
        }
        if head.get(lfanew..lfanew + 4) != Some(b"PE\0\0") {
            return Err(bad(format!("no PE signature at e_lfanew {lfanew:#x}")));
        }
        let fh = lfanew + 4;
        let field16 = |off: usize, what: &str| {
            u16_at(&head, off).ok_or_else(|| bad(format!("header ends before {what}")))
        };
        let field32 = |off: usize, what: &str| {
            u32_at(&head, off).ok_or_else(|| bad(format!("header ends before {what}")))
        };
        let machine = field16(fh, "Machine")?;
        let nsections = field16(fh + 2, "NumberOfSections")? as usize;
        let timestamp = field32(fh + 4, "TimeDateStamp")?;
        let opt_size = field16(fh + 16, "SizeOfOptionalHeader")? as usize;
        let characteristics = field16(fh + 18, "Characteristics")?;
        let opt = fh + 20;
        let magic = field16(opt, "the optional header")?;
        let pe32_plus = match magic {
            0x20b => true,
            0x10b => false,
            m => {
                return Err(bad(format!(
                    "optional header magic {m:#x} is neither PE32 nor PE32+"
                )))
            }
        };
        let (image_base, ndirs_off, dirs_off) = if pe32_plus {
            (
                u64_at(&head, opt + 24)
                    .ok_or_else(|| bad("header ends before ImageBase".into()))?,
                opt + 108,
                opt + 112,
            )
        } else {
            (field32(opt + 28, "ImageBase")? as u64, opt + 92, opt + 96)
        };
        let entry_point = field32(opt + 16, "AddressOfEntryPoint")?;
        let size_of_image = field32(opt + 56, "SizeOfImage")?;
        let size_of_headers = field32(opt + 60, "SizeOfHeaders")?;
        let checksum = field32(opt + 64, "CheckSum")?;
        let subsystem = field16(opt + 68, "Subsystem")?;
        let dll_characteristics = field16(opt + 70, "DllCharacteristics")?;
        if size_of_image == 0 || size_of_image > MAX_IMAGE_SIZE {
            return Err(bad(format!(
                "SizeOfImage {size_of_image:#x} is not in 1..={MAX_IMAGE_SIZE:#x}"
            )));
        }
        let ndirs = (field32(ndirs_off, "NumberOfRvaAndSizes")? as usize).min(16);
        // The directories must fit inside the declared optional header.
        let dirs_fit = (opt_size.saturating_sub(dirs_off - opt)) / 8;
        let ndirs = ndirs.min(dirs_fit);
        let mut data_directories = Vec::with_capacity(ndirs);
        for i in 0..ndirs {
            let o = dirs_off + 8 * i;
            data_directories.push(DataDirectory {
                rva: field32(o, "a data directory")?,
                size: field32(o + 4, "a data directory")?,
            });
        }
        if nsections > MAX_SECTIONS {
            return Err(bad(format!(
                "NumberOfSections {nsections} is over the loader's limit of {MAX_SECTIONS}"
            )));
        }
        let sec_table = opt + opt_size;
        let mut sections = Vec::with_capacity(nsections);
        for i in 0..nsections {
            let o = sec_table + 40 * i;
            let raw = head
                .get(o..o + 40)
                .ok_or_else(|| bad(format!("section table entry {i} is past the headers")))?;
            let name_bytes = &raw[..8];
            let end = name_bytes.iter().position(|&b| b == 0).unwrap_or(8);
            let name = String::from_utf8_lossy(&name_bytes[..end]).into_owned();
            let u = |off: usize| u32_at(raw, off).unwrap_or(0);
            sections.push(Section {
                name,
                virtual_size: u(8),
                virtual_address: u(12),
                raw_size: u(16),
                raw_offset: u(20),
                characteristics: u(36),
            });
        }
        src.set_sections(&sections);
        Ok(Pe {
            src,
            headers: PeHeaders {
                machine,
                timestamp,
                characteristics,
                pe32_plus,
                image_base,
                size_of_image,
                size_of_headers,
                entry_point,
                checksum,
                subsystem,
                dll_characteristics,
                data_directories,
                sections,
            },
        })
    }

    /// The headers.
    pub fn headers(&self) -> &PeHeaders {
        &self.headers
    }

    /// The source (for reading further data by RVA).
    pub fn source(&self) -> &S {
        &self.src
    }

    fn bad(&self, reason: impl Into<String>) -> Error {
        Error::malformed(FORMAT, self.src.name(), reason)
    }

    fn read_u32(&self, rva: u32) -> Result<u32> {
        let mut b = [0u8; 4];
        self.src.read_rva(rva, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    /// Read a NUL-terminated string at `rva`, at most [`MAX_NAME`] bytes; pages that cannot be
    /// read end the string where they start.
    ///
    /// # Errors
    /// When the first byte cannot be read.
    pub fn read_string(&self, rva: u32) -> Result<String> {
        let mut out = Vec::new();
        let mut at = rva;
        while out.len() < MAX_NAME {
            // Read up to the next 64-byte boundary (never across a page the guest may not map).
            let chunk = (64 - (at as usize % 64)).min(MAX_NAME - out.len());
            let mut buf = [0u8; 64];
            if let Err(e) = self.src.read_rva(at, &mut buf[..chunk]) {
                if out.is_empty() {
                    return Err(e);
                }
                break;
            }
            if let Some(n) = buf[..chunk].iter().position(|&b| b == 0) {
                out.extend_from_slice(&buf[..n]);
                return Ok(String::from_utf8_lossy(&out).into_owned());
            }
            out.extend_from_slice(&buf[..chunk]);
            at = match at.checked_add(chunk as u32) {
                Some(a) => a,
                None => break,
            };
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    /// The CodeView (`RSDS`) record of the debug directory, if the image has one.
    ///
    /// # Errors
    /// Memory errors when the debug directory cannot be read (a kernel may have paged it out);
    /// [`Error::Malformed`] for a corrupt record.
    pub fn codeview(&self) -> Result<Option<CodeView>> {
        let Some(dir) = self.headers.directory(DIR_DEBUG) else {
            return Ok(None);
        };
        let count = (dir.size / 28).min(MAX_DEBUG_ENTRIES);
        for i in 0..count {
            let mut e = [0u8; 28];
            let at = dir
                .rva
                .checked_add(i * 28)
                .ok_or_else(|| self.bad("debug directory RVA overflows"))?;
            self.src.read_rva(at, &mut e)?;
            let ty = u32_at(&e, 12).unwrap_or(0);
            let size = u32_at(&e, 16).unwrap_or(0);
            let rva = u32_at(&e, 20).unwrap_or(0);
            if ty != DEBUG_TYPE_CODEVIEW || rva == 0 {
                continue;
            }
            if size < 24 {
                return Err(self.bad(format!("CodeView record of {size} bytes is too short")));
            }
            let mut rec = [0u8; 24];
            self.src.read_rva(rva, &mut rec)?;
            if &rec[..4] != b"RSDS" {
                // NB10 (PDB 2.0) and others: not used by any 64-bit Windows kernel.
                continue;
            }
            let mut guid = [0u8; 16];
            guid.copy_from_slice(&rec[4..20]);
            let age = u32_at(&rec, 20).unwrap_or(0);
            let pdb_path = self.read_string(rva + 24).unwrap_or_default();
            return Ok(Some(CodeView {
                guid,
                age,
                pdb_path,
            }));
        }
        Ok(None)
    }

    /// The module name the export directory records (`ntoskrnl.exe`), without reading the
    /// export tables: two small reads.
    ///
    /// # Errors
    /// Memory errors for the directory.
    pub fn export_dll_name(&self) -> Result<Option<String>> {
        let Some(dir) = self.headers.directory(DIR_EXPORT) else {
            return Ok(None);
        };
        let name_rva = self.read_u32(
            dir.rva
                .checked_add(12)
                .ok_or_else(|| self.bad("export directory RVA overflows"))?,
        )?;
        if name_rva == 0 {
            return Ok(None);
        }
        self.read_string(name_rva).map(Some)
    }

    /// The export directory: the DLL name it records and an iterator over its entries.
    /// `Ok(None)` when the image exports nothing.
    ///
    /// # Errors
    /// Memory errors or [`Error::Malformed`] for the directory itself; entry errors come from
    /// the iterator, one per entry.
    pub fn exports(&self) -> Result<Exports<'_, S>> {
        let Some(dir) = self.headers.directory(DIR_EXPORT) else {
            return Ok(Exports::empty(self));
        };
        let mut d = [0u8; 40];
        self.src.read_rva(dir.rva, &mut d)?;
        let u = |off: usize| u32_at(&d, off).unwrap_or(0);
        let name_rva = u(12);
        let dll_name = if name_rva != 0 {
            self.read_string(name_rva).ok()
        } else {
            None
        };
        let base = u(16);
        let nfuncs = u(20);
        let nnames = u(24);
        if nfuncs > MAX_EXPORTS || nnames > MAX_EXPORTS {
            return Err(self.bad(format!(
                "export directory claims {nfuncs} functions and {nnames} names (limit {MAX_EXPORTS})"
            )));
        }
        // Names map to function indices through the ordinal table; build the reverse map once
        // (bounded: at most MAX_EXPORTS u16 + u32 pairs, read in chunks).
        let mut by_index: Vec<(u16, u32)> = Vec::new();
        let (names_rva, ords_rva) = (u(32), u(36));
        let mut chunk = [0u8; 256];
        let mut i = 0u32;
        while i < nnames {
            let n = (nnames - i).min(64);
            let Some(ords_at) = ords_rva.checked_add(i * 2) else {
                break;
            };
            let Some(names_at) = names_rva.checked_add(i * 4) else {
                break;
            };
            let mut ords = [0u8; 128];
            if self
                .src
                .read_rva(ords_at, &mut ords[..2 * n as usize])
                .is_err()
                || self
                    .src
                    .read_rva(names_at, &mut chunk[..4 * n as usize])
                    .is_err()
            {
                // A name table the source cannot serve: exports stay reachable by ordinal.
                break;
            }
            for k in 0..n as usize {
                let ord = u16_at(&ords, 2 * k).unwrap_or(0);
                let name = u32_at(&chunk, 4 * k).unwrap_or(0);
                by_index.push((ord, name));
            }
            i += n;
        }
        by_index.sort_unstable();
        Ok(Exports {
            pe: self,
            dll_name,
            dir,
            base,
            nfuncs,
            funcs_rva: u(28),
            names: by_index,
            next: 0,
            name_cursor: 0,
        })
    }

    /// The RVA of the export named `name` (forwarders excluded).
    ///
    /// # Errors
    /// As [`Pe::exports`].
    pub fn export_rva(&self, name: &str) -> Result<Option<u32>> {
        for e in self.exports()?.flatten() {
            if e.name.as_deref() == Some(name) && e.forwarder.is_none() {
                return Ok(Some(e.rva));
            }
        }
        Ok(None)
    }
}

/// Iterator over an image's exports, in function-index order, one `Result` per entry.
#[derive(Debug)]
pub struct Exports<'p, S> {
    pe: &'p Pe<S>,
    dll_name: Option<String>,
    dir: DataDirectory,
    base: u32,
    nfuncs: u32,
    funcs_rva: u32,
    /// (function index, name RVA), sorted.
    names: Vec<(u16, u32)>,
    next: u32,
    name_cursor: usize,
}

impl<'p, S: PeSource> Exports<'p, S> {
    fn empty(pe: &'p Pe<S>) -> Self {
        Exports {
            pe,
            dll_name: None,
            dir: DataDirectory::default(),
            base: 0,
            nfuncs: 0,
            funcs_rva: 0,
            names: Vec::new(),
            next: 0,
            name_cursor: 0,
        }
    }

    /// The module name the export directory records (`ntoskrnl.exe`).
    pub fn dll_name(&self) -> Option<&str> {
        self.dll_name.as_deref()
    }

    /// Number of export-table entries (functions).
    pub fn len(&self) -> u32 {
        self.nfuncs
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.nfuncs == 0
    }
}

impl<S: PeSource> Iterator for Exports<'_, S> {
    type Item = Result<Export>;

    fn next(&mut self) -> Option<Result<Export>> {
        loop {
            if self.next >= self.nfuncs {
                return None;
            }
            let index = self.next;
            self.next += 1;
            let rva = match self
                .funcs_rva
                .checked_add(index * 4)
                .ok_or_else(|| self.pe.bad("export address table RVA overflows"))
                .and_then(|at| self.pe.read_u32(at))
            {
                Ok(r) => r,
                Err(e) => {
                    // The rest of the table is as unreadable: end the walk with this error.
                    self.next = self.nfuncs;
                    return Some(Err(e));
                }
            };
            // Names of this index (usually one; aliases are reported once, first name wins).
            let mut name = None;
            while let Some(&(ord, name_rva)) = self.names.get(self.name_cursor) {
                if u32::from(ord) > index {
                    break;
                }
                self.name_cursor += 1;
                if u32::from(ord) == index && name.is_none() {
                    name = self.pe.read_string(name_rva).ok();
                }
            }
            if rva == 0 && name.is_none() {
                continue; // an unused slot
            }
            let in_dir = rva >= self.dir.rva && rva - self.dir.rva < self.dir.size;
            let forwarder = if in_dir {
                self.pe.read_string(rva).ok()
            } else {
                None
            };
            return Some(Ok(Export {
                ordinal: self.base.wrapping_add(index),
                name,
                rva,
                forwarder,
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal PE32+ image in file layout: headers, one section, a debug directory with an
    /// RSDS record and an export directory with two named exports and one forwarder.
    pub(crate) fn tiny_pe() -> Vec<u8> {
        let mut b = vec![0u8; 0x3000];
        b[..2].copy_from_slice(b"MZ");
        b[0x3c..0x40].copy_from_slice(&0x80u32.to_le_bytes());
        b[0x80..0x84].copy_from_slice(b"PE\0\0");
        let fh = 0x84;
        b[fh..fh + 2].copy_from_slice(&0x8664u16.to_le_bytes());
        b[fh + 2..fh + 4].copy_from_slice(&1u16.to_le_bytes());
        b[fh + 16..fh + 18].copy_from_slice(&240u16.to_le_bytes());
        let opt = fh + 20;
        b[opt..opt + 2].copy_from_slice(&0x20bu16.to_le_bytes());
        b[opt + 24..opt + 32].copy_from_slice(&0x1_4000_0000u64.to_le_bytes());
        b[opt + 56..opt + 60].copy_from_slice(&0x3000u32.to_le_bytes());
        b[opt + 60..opt + 64].copy_from_slice(&0x400u32.to_le_bytes());
        b[opt + 108..opt + 112].copy_from_slice(&16u32.to_le_bytes());
        let dir = |b: &mut Vec<u8>, i: usize, rva: u32, size: u32| {
            let o = opt + 112 + 8 * i;
            b[o..o + 4].copy_from_slice(&rva.to_le_bytes());
            b[o + 4..o + 8].copy_from_slice(&size.to_le_bytes());
        };
        dir(&mut b, DIR_EXPORT, 0x1000, 0x200);
        dir(&mut b, DIR_DEBUG, 0x1800, 28);
        let sec = opt + 240;
        b[sec..sec + 6].copy_from_slice(b".rdata");
        b[sec + 8..sec + 12].copy_from_slice(&0x2000u32.to_le_bytes()); // VirtualSize
        b[sec + 12..sec + 16].copy_from_slice(&0x1000u32.to_le_bytes()); // VirtualAddress
        b[sec + 16..sec + 20].copy_from_slice(&0x2000u32.to_le_bytes()); // SizeOfRawData
        b[sec + 20..sec + 24].copy_from_slice(&0x1000u32.to_le_bytes()); // PointerToRawData
                                                                         // Export directory at RVA 0x1000 (file 0x1000).
        let e = 0x1000;
        let put =
            |b: &mut Vec<u8>, off: usize, v: u32| b[off..off + 4].copy_from_slice(&v.to_le_bytes());
        put(&mut b, e + 12, 0x1100); // Name
        put(&mut b, e + 16, 7); // Base
        put(&mut b, e + 20, 3); // NumberOfFunctions
        put(&mut b, e + 24, 2); // NumberOfNames
        put(&mut b, e + 28, 0x1040); // AddressOfFunctions
        put(&mut b, e + 32, 0x1060); // AddressOfNames
        put(&mut b, e + 36, 0x1070); // AddressOfNameOrdinals
        put(&mut b, 0x1040, 0x1500);
        put(&mut b, 0x1044, 0x1120); // forwarder (inside the directory)
        put(&mut b, 0x1048, 0x1600);
        put(&mut b, 0x1060, 0x1140);
        put(&mut b, 0x1064, 0x1150);
        b[0x1070..0x1072].copy_from_slice(&2u16.to_le_bytes());
        b[0x1072..0x1074].copy_from_slice(&0u16.to_le_bytes());
        b[0x1100..0x110d].copy_from_slice(b"ntoskrnl.exe\0");
        b[0x1120..0x1131].copy_from_slice(b"HAL.HalFunction1\0");
        b[0x1140..0x114c].copy_from_slice(b"KeBugCheck\0\0");
        b[0x1150..0x1163].copy_from_slice(b"PsLoadedModuleList\0");
        // Debug directory entry at 0x1800 -> RSDS at 0x1900.
        put(&mut b, 0x1800 + 12, DEBUG_TYPE_CODEVIEW);
        put(&mut b, 0x1800 + 16, 24 + 13);
        put(&mut b, 0x1800 + 20, 0x1900);
        b[0x1900..0x1904].copy_from_slice(b"RSDS");
        let guid = [
            0xf8, 0xaf, 0x78, 0x52, 0x34, 0x6c, 0x77, 0x16, 0xd7, 0xd7, 0x83, 0x5c, 0x85, 0xb7,
            0xb8, 0x44,
        ];
        b[0x1904..0x1914].copy_from_slice(&guid);
        put(&mut b, 0x1914, 1);
        b[0x1918..0x1925].copy_from_slice(b"ntkrnlmp.pdb\0");
        b
    }

    #[test]
    fn parses_headers_codeview_and_exports() {
        let img = tiny_pe();
        let pe = Pe::parse(FileImage::new(&img, "tiny")).unwrap();
        let h = pe.headers();
        assert_eq!(h.machine, 0x8664);
        assert!(h.pe32_plus);
        assert_eq!(h.image_base, 0x1_4000_0000);
        assert_eq!(h.sections.len(), 1);
        assert_eq!(h.sections[0].name, ".rdata");
        let cv = pe.codeview().unwrap().unwrap();
        assert_eq!(cv.guid_string(), "5278AFF86C341677D7D7835C85B7B844");
        assert_eq!(cv.symbol_key(), "5278AFF86C341677D7D7835C85B7B8441");
        assert_eq!(cv.pdb_name(), "ntkrnlmp.pdb");
        let ex = pe.exports().unwrap();
        assert_eq!(ex.dll_name(), Some("ntoskrnl.exe"));
        let all: Vec<Export> = ex.map(|e| e.unwrap()).collect();
        assert_eq!(all.len(), 3);
        assert_eq!(all[0].name.as_deref(), Some("PsLoadedModuleList"));
        assert_eq!((all[0].ordinal, all[0].rva), (7, 0x1500));
        assert_eq!(all[1].forwarder.as_deref(), Some("HAL.HalFunction1"));
        assert_eq!(all[1].name, None);
        assert_eq!(all[2].name.as_deref(), Some("KeBugCheck"));
        assert_eq!(pe.export_rva("KeBugCheck").unwrap(), Some(0x1600));
        assert_eq!(pe.export_rva("Nope").unwrap(), None);
    }

    #[test]
    fn every_truncation_is_an_error_or_a_shorter_result() {
        let img = tiny_pe();
        for n in 0..img.len() {
            if let Ok(pe) = Pe::parse(FileImage::new(&img[..n], "cut")) {
                let _ = pe.codeview();
                if let Ok(ex) = pe.exports() {
                    assert!(ex.count() <= 3);
                }
            }
        }
    }

    #[test]
    fn lying_counts_are_refused() {
        let mut img = tiny_pe();
        img[0x1000 + 20..0x1000 + 24].copy_from_slice(&u32::MAX.to_le_bytes());
        let pe = Pe::parse(FileImage::new(&img, "huge")).unwrap();
        let e = pe.exports().unwrap_err().to_string();
        assert!(e.contains("functions"), "{e}");
        let mut img = tiny_pe();
        img[0x86..0x88].copy_from_slice(&1000u16.to_le_bytes());
        let e = Pe::parse(FileImage::new(&img, "sections")).unwrap_err();
        assert!(e.to_string().contains("NumberOfSections"), "{e}");
        let mut img = tiny_pe();
        img[0x3c..0x40].copy_from_slice(&0xffff_fff0u32.to_le_bytes());
        let e = Pe::parse(FileImage::new(&img, "lfanew")).unwrap_err();
        assert!(e.to_string().contains("e_lfanew"), "{e}");
    }
}
