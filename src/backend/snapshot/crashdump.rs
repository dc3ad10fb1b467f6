//! 64-bit Windows kernel crash dumps (`MEMORY.DMP`, signature `PAGEDU64`).
//!
//! The file starts with a `DUMP_HEADER64` of 0x2000 bytes. The offsets used here were checked
//! against 0vercl0k's `kdmp-parser` (MIT; `src/lib/kdmp-parser-structs.h`, whose
//! `static_assert`s pin `BugCheckCodeParameter` at 0x40, `KdDebuggerDataBlock` at 0x80,
//! `ContextRecord` at 0x348, `Exception` at 0xf00, `Comment` at 0xfb0 and the bitmap header at
//! 0x2000) and its Rust port `kdmp-parser-rs` (MIT), and cross-checked with the `DUMP_TYPES`
//! values of the WDK and the natural alignment of `PHYSICAL_MEMORY_DESCRIPTOR64`:
//!
//! | offset | field |
//! |---|---|
//! | 0x000 | `"PAGE"`, `"DU64"` |
//! | 0x008 | `MajorVersion`, `MinorVersion` (u32 each) |
//! | 0x010 | `DirectoryTableBase` (the kernel's CR3) |
//! | 0x018 | `PfnDataBase` |
//! | 0x020 | `PsLoadedModuleList` |
//! | 0x028 | `PsActiveProcessHead` |
//! | 0x030 | `MachineImageType` (0x8664), `NumberProcessors` (u32 each) |
//! | 0x038 | `BugCheckCode` (u32), 0x040: four `BugCheckCodeParameter` (u64) |
//! | 0x080 | `KdDebuggerDataBlock` |
//! | 0x088 | `PhysicalMemoryBlockBuffer`: `NumberOfRuns` (u32, then 4 bytes of padding), `NumberOfPages` (u64 at 0x090), `Run[]` from 0x098 (`BasePage`, `PageCount`, u64 each) |
//! | 0x348 | `ContextRecord`: an x64 `CONTEXT` |
//! | 0xf98 | `DumpType` (u32) |
//! | 0xfa0 | `RequiredDumpSpace`, 0xfa8: `SystemTime` (FILETIME), 0x1030: `SystemUpTime` |
//!
//! `DumpType` takes the values of Microsoft's `DUMP_TYPES` enumeration (documented with the
//! WDK's bug-check callbacks: 1 full, 2 summary, 3 header, 4 triage, 5 bitmap full, 6 bitmap
//! kernel, 7 automatic). Two page layouts are read:
//! - **DumpType 1 (full)**: the pages of each run of `PhysicalMemoryBlockBuffer` follow the
//!   header at 0x2000, run after run, with no gaps.
//! - **Bitmap (DumpType 5 and 6; 2 and 7 when they use it)**: a bitmap header at 0x2000
//!   (`"SDMP"` or `"FDMP"`, `"DUMP"`, then `FirstPage` at 0x2020, `TotalPresentPages` at
//!   0x2028, `Pages` at 0x2030) and a bitmap from 0x2038, one bit per page frame (bit `i` of
//!   byte `j` is frame `8 * j + i`). Present pages are stored consecutively from file offset
//!   `FirstPage`. `TotalPresentPages` is informational: the bitmap decides. A kernel memory
//!   dump (summary, 2) and an automatic memory dump (7, which Microsoft documents as holding
//!   the same information as a kernel memory dump) are read when their bitmap header is there;
//!   without it they are unsupported, not malformed.
//!
//! Header-only (3) and triage (4) dumps hold no physical memory to read, and the RDMP layouts
//! 8–10 that newer debuggers write, like any other value, are not read: all of these give
//! [`Error::UnsupportedImage`] with `unsupported DumpType N (name): ...`. 32-bit
//! (`PAGEDUMP`) dumps are rejected too.
//!
//! Registers: the header holds one `CONTEXT`, that of the processor which crashed (or wrote
//! the dump); it is the one vCPU of the snapshot, whatever `NumberProcessors` says. Which
//! processor that is, and what every other processor was running, is only in guest memory
//! (`KiProcessorBlock`, each `KPRCB`): `crate::os::windows::Windows::processors` reads it and
//! `crate::os::windows::crashing_processor` finds the one this `CONTEXT` belongs to. A
//! `CONTEXT` has no control registers: CR3 is taken from `DirectoryTableBase`, and CR0, CR4
//! and EFER are set to the bits any running 64-bit Windows kernel has on (CR0.PE/WP/PG,
//! CR4.PAE, EFER.LME/LMA), so [`Registers::has_paging_state`] holds and
//! [`Registers::paging_mode`] reads as 4-level long mode. 5-level paging (CR4.LA57) cannot be
//! told from the header and is not assumed.

use std::fmt;

use super::storage::Source;
use super::{Layout, Region};
use crate::bytes::{u16_at, u32_at, u64_at};
use crate::error::{Error, Result};
use crate::regs::{Cr0, Cr4, Registers, EFER_LMA};

const FMT: &str = "Windows crash dump";
/// `"PAGEDU64"`: the 64-bit header's signature and `ValidDump` fields.
pub(super) const SIGNATURE_64: &[u8; 8] = b"PAGEDU64";
/// `"PAGEDUMP"`: a 32-bit dump (detected, then rejected with a clear error).
pub(super) const SIGNATURE_32: &[u8; 8] = b"PAGEDUMP";

const PAGE: u64 = 0x1000;
/// Size of `DUMP_HEADER64`; full dumps' pages start here, bitmap dumps' bitmap header too.
pub(super) const HEADER_SIZE: usize = 0x2000;

const OFF_MAJOR: usize = 0x08;
const OFF_MINOR: usize = 0x0c;
const OFF_DTB: usize = 0x10;
const OFF_PFN_DATABASE: usize = 0x18;
const OFF_LOADED_MODULES: usize = 0x20;
const OFF_ACTIVE_PROCESSES: usize = 0x28;
const OFF_MACHINE: usize = 0x30;
const OFF_NUM_PROCESSORS: usize = 0x34;
const OFF_BUGCHECK_CODE: usize = 0x38;
const OFF_BUGCHECK_PARAMS: usize = 0x40;
const OFF_KDDEBUGGER_DATA: usize = 0x80;
const OFF_NUMBER_OF_RUNS: usize = 0x88;
const OFF_RUNS: usize = 0x98;
const OFF_CONTEXT: usize = 0x348;
const OFF_DUMP_TYPE: usize = 0xf98;
const OFF_REQUIRED_SPACE: usize = 0xfa0;
const OFF_SYSTEM_TIME: usize = 0xfa8;
const OFF_SYSTEM_UP_TIME: usize = 0x1030;

/// The runs of `PhysicalMemoryBlockBuffer` that fit before `ContextRecord`:
/// (0x348 - 0x98) / 16 = 43.
const MAX_RUNS: usize = (OFF_CONTEXT - OFF_RUNS) / 16;

/// `IMAGE_FILE_MACHINE_AMD64`.
const MACHINE_AMD64: u32 = 0x8664;

/// Offsets in the bitmap header (relative to the file).
const OFF_BMP_SIGNATURE: usize = HEADER_SIZE;
const OFF_BMP_VALID: usize = HEADER_SIZE + 4;
const OFF_BMP_FIRST_PAGE: usize = HEADER_SIZE + 0x20;
const OFF_BMP_PRESENT_PAGES: usize = HEADER_SIZE + 0x28;
const OFF_BMP_PAGES: usize = HEADER_SIZE + 0x30;
const OFF_BMP_BITMAP: usize = HEADER_SIZE + 0x38;

// x64 `CONTEXT` offsets (relative to the record).
const CTX_SEG_CS: usize = 0x38;
const CTX_SEG_SS: usize = 0x42;
const CTX_EFLAGS: usize = 0x44;
const CTX_RAX: usize = 0x78;
const CTX_RIP: usize = 0xf8;

/// How the pages of a Windows crash dump are laid out in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WindowsDumpKind {
    /// DumpType 1: every page of every run of physical memory, in run order.
    Full,
    /// DumpType 5 or 6 with a `"FDMP"` bitmap header: the pages the bitmap marks present.
    BitmapFull,
    /// DumpType 5 or 6 with an `"SDMP"` (summary) bitmap header: the pages the bitmap marks
    /// present, usually kernel memory only.
    BitmapKernel,
    /// DumpType 4: a triage dump ("minidump"), which holds no physical memory: it is never a
    /// [`super::Snapshot`]; [`super::TriageDump`] reads what it records.
    Triage,
}

impl fmt::Display for WindowsDumpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WindowsDumpKind::Full => "full (run-based)",
            WindowsDumpKind::BitmapFull => "bitmap (FDMP)",
            WindowsDumpKind::BitmapKernel => "bitmap (SDMP, kernel)",
            WindowsDumpKind::Triage => "triage (no physical memory)",
        })
    }
}

/// Values from the header of a Windows crash dump that a Windows walker needs to find the
/// kernel without scanning. Addresses are kernel virtual addresses unless named otherwise;
/// they are copied from the file and not checked (a corrupt dump can hold anything).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct WindowsDumpInfo {
    /// `MajorVersion` (0xf for a free build, 0xc for a checked build).
    pub major_version: u32,
    /// `MinorVersion`: the Windows build number.
    pub minor_version: u32,
    /// `DirectoryTableBase`: the physical address of the kernel's top-level page table (the
    /// System process's CR3). The one vCPU's CR3 is this value.
    pub directory_table_base: u64,
    /// `PfnDataBase`: the address of the page frame database (`MmPfnDatabase`).
    pub pfn_database: u64,
    /// `PsLoadedModuleList`: head of the kernel's module list (`KLDR_DATA_TABLE_ENTRY`s).
    pub ps_loaded_module_list: u64,
    /// `PsActiveProcessHead`: head of the process list (`EPROCESS.ActiveProcessLinks`).
    pub ps_active_process_head: u64,
    /// `KdDebuggerDataBlock`: the address of `KDDEBUGGER_DATA64` (it may be encoded on
    /// recent Windows versions).
    pub kd_debugger_data_block: u64,
    /// `NumberProcessors`. Only the crashing processor's registers are in the header.
    pub number_processors: u32,
    /// `BugCheckCode` (0 or a `MANUALLY_INITIATED_CRASH` code for dumps taken on purpose).
    pub bugcheck_code: u32,
    /// `BugCheckCodeParameter[0..4]`.
    pub bugcheck_parameters: [u64; 4],
    /// `DumpType` as written: 1, 2, 5, 6 or 7.
    pub dump_type: u32,
    /// The page layout (`DumpType` and, for bitmap dumps, the bitmap header's signature).
    pub kind: WindowsDumpKind,
    /// `RequiredDumpSpace`: the size the dump was meant to have, in bytes.
    pub required_dump_space: u64,
    /// `SystemTime`: when the dump was written (FILETIME: 100 ns since 1601-01-01 UTC).
    pub system_time: u64,
    /// `SystemUpTime`: time since boot, in 100 ns units.
    pub system_up_time: u64,
}

/// The name of a `DumpType` value (Microsoft's `DUMP_TYPES`; 8-10 are the RDMP layouts of
/// newer debuggers).
pub(crate) fn dump_type_name(t: u32) -> &'static str {
    match t {
        0 => "unknown",
        1 => "full",
        2 => "summary",
        3 => "header only",
        4 => "triage",
        5 => "bitmap full",
        6 => "bitmap kernel",
        7 => "automatic",
        8 => "kernel memory, RDMP layout",
        9 => "kernel and user memory, RDMP layout",
        10 => "complete memory, RDMP layout",
        0xffff_ffff => "invalid",
        _ => "not a known type",
    }
}

/// What a dump of an unsupported type holds, and what to write instead.
fn unsupported_reason(t: u32) -> String {
    let what = match t {
        3 => "the file has the header (bug check, CONTEXT, a few addresses) but no memory",
        4 => "a triage dump (minidump) holds the crashing thread's stack and a few selected pages, not physical memory (what it records, the crashing process and the driver list, is read by TriageDump: `xenvmi info` and the `pslist` example print it)",
        8..=10 => "the RDMP page layout is not read",
        _ => "this value is not one the reader knows",
    };
    format!(
        "unsupported DumpType {t} ({}): {what}; xenvmi reads full (1) and bitmap (5, 6) dumps, and summary (2) and automatic (7) ones in the bitmap layout: configure Windows to write a complete, kernel or automatic memory dump",
        dump_type_name(t)
    )
}

/// The checked `DUMP_HEADER64` of a 64-bit x86-64 dump: the signature, the size and the
/// machine, with errors naming `what`.
pub(super) fn checked_header<'b, S: Source + ?Sized>(
    b: &'b S,
    what: &str,
) -> Result<std::borrow::Cow<'b, [u8]>> {
    let bad = |reason: String| Error::malformed(FMT, what, reason);
    if b.begins_with(SIGNATURE_32) {
        return Err(bad(
            "this is a 32-bit dump (PAGEDUMP); only 64-bit dumps (PAGEDU64) are supported".into(),
        ));
    }
    if !b.begins_with(SIGNATURE_64) {
        return Err(bad(
            "the signature is not PAGEDU64 (a 64-bit Windows kernel dump)".into(),
        ));
    }
    let header = b.bytes_at(0, HEADER_SIZE).ok_or_else(|| {
        bad(format!(
            "the header needs {HEADER_SIZE:#x} bytes but the file has {:#x} (truncated)",
            b.size()
        ))
    })?;
    let machine = u32_at(&header, OFF_MACHINE).unwrap_or(0);
    if machine != MACHINE_AMD64 {
        return Err(bad(format!(
            "MachineImageType {machine:#x} is not x86-64 ({MACHINE_AMD64:#x})"
        )));
    }
    Ok(header)
}

/// `DumpType` of a checked header.
pub(super) fn dump_type(header: &[u8]) -> u32 {
    u32_at(header, OFF_DUMP_TYPE).unwrap_or(0)
}

pub(super) fn parse<S: Source + ?Sized>(b: &S, what: &str) -> Result<Layout> {
    let bad = |reason: String| Error::malformed(FMT, what, reason);
    let header = checked_header(b, what)?;
    let header: &[u8] = &header;
    let dump_type = dump_type(header);
    let unsupported = |reason: String| Error::UnsupportedImage {
        format: FMT,
        what: what.to_owned(),
        reason,
    };
    let (kind, regions) = match dump_type {
        1 => (WindowsDumpKind::Full, run_regions(b, header, &bad)?),
        5 | 6 => bitmap_regions(b, &bad)?,
        // Kernel (summary) and automatic dumps: the bitmap layout when it is there.
        2 | 7 => {
            let sig: Option<[u8; 8]> = b.array_at(OFF_BMP_SIGNATURE);
            match sig {
                Some(s) if matches!(&s, b"SDMPDUMP" | b"FDMPDUMP") => bitmap_regions(b, &bad)?,
                _ => {
                    return Err(unsupported(format!(
                        "unsupported DumpType {dump_type} ({}): no SDMP/FDMP bitmap header at {OFF_BMP_SIGNATURE:#x}, and no other layout of this type is read",
                        dump_type_name(dump_type)
                    )))
                }
            }
        }
        t => return Err(unsupported(unsupported_reason(t))),
    };

    let info = header_info(header, dump_type, kind);
    let vcpu0 = context_registers(header, info.directory_table_base);
    Ok(Layout {
        regions,
        vcpus: vec![vcpu0],
        windows: Some(info),
        ..Layout::default()
    })
}

/// The header's values (`header` is a checked `DUMP_HEADER64`).
pub(super) fn header_info(header: &[u8], dump_type: u32, kind: WindowsDumpKind) -> WindowsDumpInfo {
    // Every read is inside the 0x2000-byte header, so none can fail.
    let h32 = |off: usize| u32_at(header, off).unwrap_or(0);
    let h64 = |off: usize| u64_at(header, off).unwrap_or(0);
    WindowsDumpInfo {
        major_version: h32(OFF_MAJOR),
        minor_version: h32(OFF_MINOR),
        directory_table_base: h64(OFF_DTB),
        pfn_database: h64(OFF_PFN_DATABASE),
        ps_loaded_module_list: h64(OFF_LOADED_MODULES),
        ps_active_process_head: h64(OFF_ACTIVE_PROCESSES),
        kd_debugger_data_block: h64(OFF_KDDEBUGGER_DATA),
        number_processors: h32(OFF_NUM_PROCESSORS),
        bugcheck_code: h32(OFF_BUGCHECK_CODE),
        bugcheck_parameters: [0, 1, 2, 3].map(|i| h64(OFF_BUGCHECK_PARAMS + 8 * i)),
        dump_type,
        kind,
        required_dump_space: h64(OFF_REQUIRED_SPACE),
        system_time: h64(OFF_SYSTEM_TIME),
        system_up_time: h64(OFF_SYSTEM_UP_TIME),
    }
}

/// Push a region of `pages` pages at frame `pfn`, stored at `file_offset`, merging it with the
/// previous region when both the memory and the file bytes are contiguous.
fn push_region(regions: &mut Vec<Region>, pfn: u64, pages: u64, file_offset: u64) -> Option<()> {
    let gpa = pfn.checked_mul(PAGE)?;
    let len = pages.checked_mul(PAGE)?;
    gpa.checked_add(len)?;
    if let Some(last) = regions.last_mut() {
        if last.gpa.checked_add(last.len) == Some(gpa)
            && last.file_offset.checked_add(last.len) == Some(file_offset)
        {
            last.len = last.len.checked_add(len)?;
            return Some(());
        }
    }
    regions.push(Region {
        gpa,
        len,
        file_offset,
    });
    Some(())
}

/// DumpType 1: the runs of `PhysicalMemoryBlockBuffer`, their pages stored from 0x2000 on.
fn run_regions<S: Source + ?Sized>(
    b: &S,
    header: &[u8],
    bad: &dyn Fn(String) -> Error,
) -> Result<Vec<Region>> {
    let runs = u32_at(header, OFF_NUMBER_OF_RUNS).unwrap_or(0) as usize;
    if runs > MAX_RUNS {
        return Err(bad(format!(
            "NumberOfRuns {runs} is more than the {MAX_RUNS} runs the header has room for"
        )));
    }
    if runs == 0 {
        return Err(bad("NumberOfRuns is 0: the dump contains no memory".into()));
    }
    // `NumberOfPages` (0x90) should be the sum of the runs' page counts; like kdmp-parser and
    // Volatility, the parser relies on the runs alone and does not read it.
    // Pages the file can hold after the header; no run may claim more, in total.
    let file_pages = (b.size() - HEADER_SIZE) as u64 / PAGE;
    let mut regions = Vec::with_capacity(runs);
    let mut total: u64 = 0;
    for i in 0..runs {
        let base = u64_at(header, OFF_RUNS + 16 * i).unwrap_or(0);
        let count = u64_at(header, OFF_RUNS + 16 * i + 8).unwrap_or(0);
        let file_offset = total
            .checked_mul(PAGE)
            .and_then(|o| o.checked_add(HEADER_SIZE as u64));
        total = total.checked_add(count).ok_or_else(|| {
            bad(format!(
                "run {i}: PageCount {count:#x} makes the page total overflow"
            ))
        })?;
        if total > file_pages {
            return Err(bad(format!(
                "run {i} (BasePage {base:#x}, PageCount {count:#x}) brings the dump to {total:#x} pages, but the file holds {file_pages:#x} after the header (truncated?)"
            )));
        }
        // `total <= file_pages`, so the file offset cannot overflow; keep the check anyway.
        let file_offset =
            file_offset.ok_or_else(|| bad(format!("run {i}: file offset overflows")))?;
        push_region(&mut regions, base, count, file_offset).ok_or_else(|| {
            bad(format!(
                "run {i} (BasePage {base:#x}, PageCount {count:#x}) lies beyond the 64-bit address space"
            ))
        })?;
    }
    Ok(regions)
}

/// DumpType 5/6: the bitmap header at 0x2000, the bitmap, and the present pages from
/// `FirstPage` on.
fn bitmap_regions<S: Source + ?Sized>(
    b: &S,
    bad: &dyn Fn(String) -> Error,
) -> Result<(WindowsDumpKind, Vec<Region>)> {
    let truncated = || {
        bad(format!(
            "the bitmap header needs {OFF_BMP_BITMAP:#x} bytes but the file has {:#x} (truncated)",
            b.size()
        ))
    };
    let sig: [u8; 4] = b.array_at(OFF_BMP_SIGNATURE).ok_or_else(truncated)?;
    let valid: [u8; 4] = b.array_at(OFF_BMP_VALID).ok_or_else(truncated)?;
    let kind = match &sig {
        b"FDMP" => WindowsDumpKind::BitmapFull,
        b"SDMP" => WindowsDumpKind::BitmapKernel,
        _ => {
            return Err(bad(format!(
                "the bitmap header's signature {:?} is neither SDMP nor FDMP",
                String::from_utf8_lossy(&sig)
            )))
        }
    };
    if &valid != b"DUMP" {
        return Err(bad(format!(
            "the bitmap header's ValidDump {:?} is not DUMP",
            String::from_utf8_lossy(&valid)
        )));
    }
    let first_page = b.u64_at(OFF_BMP_FIRST_PAGE).ok_or_else(truncated)?;
    let _present = b.u64_at(OFF_BMP_PRESENT_PAGES).ok_or_else(truncated)?;
    let pages = b.u64_at(OFF_BMP_PAGES).ok_or_else(truncated)?;
    if b.size() < OFF_BMP_BITMAP {
        return Err(truncated());
    }
    let room = (b.size() - OFF_BMP_BITMAP) as u64;
    // ceil(pages / 8) without overflow.
    let bitmap_len = pages / 8 + u64::from(pages % 8 != 0);
    if bitmap_len > room {
        return Err(bad(format!(
            "the bitmap of {pages:#x} pages needs {bitmap_len:#x} bytes but the file has {room:#x} after the bitmap header (truncated?)"
        )));
    }
    // bitmap_len <= room < file length, so it fits in usize.
    let bitmap_end = OFF_BMP_BITMAP + bitmap_len as usize;
    if first_page < bitmap_end as u64 {
        return Err(bad(format!(
            "FirstPage {first_page:#x} lies inside the headers or the bitmap (which end at {bitmap_end:#x})"
        )));
    }
    let file_pages = (b.size() as u64).saturating_sub(first_page) / PAGE;
    let bitmap = b
        .bytes_at(OFF_BMP_BITMAP, bitmap_end - OFF_BMP_BITMAP)
        .ok_or_else(truncated)?;

    let mut regions = Vec::new();
    let mut stored: u64 = 0; // present pages seen so far
    let mut run_start: Option<u64> = None; // frame where the current run of set bits began
    let close = |regions: &mut Vec<Region>, start: u64, end: u64, stored: u64| {
        let count = end - start;
        // `stored <= file_pages`, so the offset stays inside the file.
        let file_offset = first_page + (stored - count) * PAGE;
        push_region(regions, start, count, file_offset).ok_or_else(|| {
            bad(format!(
                "pages {start:#x}..{end:#x} lie beyond the 64-bit address space"
            ))
        })
    };
    for (w, chunk) in bitmap.chunks(8).enumerate() {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        let word = u64::from_le_bytes(word);
        let base = w as u64 * 64;
        // Bits of this word that describe frames below `pages`.
        let nbits = (pages - base).min(64) as u32;
        let mut i = 0u32;
        while i < nbits {
            let rest = word >> i; // i < 64
            if run_start.is_some() {
                let ones = rest.trailing_ones().min(nbits - i);
                stored += u64::from(ones);
                if stored > file_pages {
                    return Err(bad(format!(
                        "the bitmap marks more than {file_pages:#x} pages present, but the file holds only {file_pages:#x} from FirstPage {first_page:#x} (truncated?)"
                    )));
                }
                i += ones;
                if i < nbits {
                    if let Some(start) = run_start.take() {
                        close(&mut regions, start, base + u64::from(i), stored)?;
                    }
                }
            } else {
                let zeros = rest.trailing_zeros().min(nbits - i);
                i += zeros;
                if i < nbits {
                    run_start = Some(base + u64::from(i));
                }
            }
        }
    }
    if let Some(start) = run_start {
        close(&mut regions, start, pages, stored)?;
    }
    Ok((kind, regions))
}

/// vCPU 0 from the header's `CONTEXT`, with the control registers a running x64 Windows kernel
/// has (see the module documentation).
pub(super) fn context_registers(header: &[u8], directory_table_base: u64) -> Registers {
    let c = |off: usize| u64_at(header, OFF_CONTEXT + off).unwrap_or(0);
    // CONTEXT integer registers, in order: rax rcx rdx rbx rsp rbp rsi rdi r8..r15.
    let g = |i: usize| c(CTX_RAX + 8 * i);
    Registers {
        rax: g(0),
        rcx: g(1),
        rdx: g(2),
        rbx: g(3),
        rsp: g(4),
        rbp: g(5),
        rsi: g(6),
        rdi: g(7),
        r8: g(8),
        r9: g(9),
        r10: g(10),
        r11: g(11),
        r12: g(12),
        r13: g(13),
        r14: g(14),
        r15: g(15),
        rip: c(CTX_RIP),
        rflags: u64::from(u32_at(header, OFF_CONTEXT + CTX_EFLAGS).unwrap_or(0)),
        cs_sel: u16_at(header, OFF_CONTEXT + CTX_SEG_CS).unwrap_or(0),
        ss_sel: u16_at(header, OFF_CONTEXT + CTX_SEG_SS).unwrap_or(0),
        cr3: directory_table_base,
        cr0: (Cr0::PE | Cr0::WP | Cr0::PG).bits(),
        cr4: Cr4::PAE.bits(),
        // EFER.LME (bit 8) and EFER.LMA.
        efer: EFER_LMA | (1 << 8),
        ..Registers::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(dump_type: u32) -> Vec<u8> {
        let mut h = vec![0u8; HEADER_SIZE];
        h[..8].copy_from_slice(SIGNATURE_64);
        h[OFF_MACHINE..OFF_MACHINE + 4].copy_from_slice(&MACHINE_AMD64.to_le_bytes());
        h[OFF_DUMP_TYPE..OFF_DUMP_TYPE + 4].copy_from_slice(&dump_type.to_le_bytes());
        h[OFF_DTB..OFF_DTB + 8].copy_from_slice(&0x1ad000u64.to_le_bytes());
        h
    }

    fn put64(h: &mut [u8], off: usize, v: u64) {
        h[off..off + 8].copy_from_slice(&v.to_le_bytes());
    }

    /// A full dump with `runs`, followed by as many pages as the runs claim (at most 16).
    fn full(runs: &[(u64, u64)]) -> Vec<u8> {
        let mut h = header(1);
        h[OFF_NUMBER_OF_RUNS..OFF_NUMBER_OF_RUNS + 4]
            .copy_from_slice(&(runs.len() as u32).to_le_bytes());
        let mut pages = 0u64;
        for (i, &(base, count)) in runs.iter().enumerate() {
            put64(&mut h, OFF_RUNS + 16 * i, base);
            put64(&mut h, OFF_RUNS + 16 * i + 8, count);
            pages = pages.wrapping_add(count);
        }
        put64(&mut h, 0x90, pages); // NumberOfPages (not checked by the parser)
        for p in 0..pages.min(16) {
            h.extend(std::iter::repeat_n(p as u8 + 1, PAGE as usize));
        }
        h
    }

    fn bitmap(sig: &[u8; 4], bits: &[u8], pages: u64, stored: usize) -> Vec<u8> {
        bitmap_typed(5, sig, bits, pages, stored)
    }

    fn bitmap_typed(t: u32, sig: &[u8; 4], bits: &[u8], pages: u64, stored: usize) -> Vec<u8> {
        let mut b = header(t);
        b.extend_from_slice(sig);
        b.extend_from_slice(b"DUMP");
        b.resize(OFF_BMP_FIRST_PAGE, 0);
        let first = 0x3000u64;
        b.extend_from_slice(&first.to_le_bytes());
        b.extend_from_slice(&(stored as u64).to_le_bytes());
        b.extend_from_slice(&pages.to_le_bytes());
        b.extend_from_slice(bits);
        b.resize(first as usize, 0);
        for p in 0..stored {
            b.extend(std::iter::repeat_n(p as u8 + 1, PAGE as usize));
        }
        b
    }

    #[test]
    fn full_dump_runs_become_regions() {
        let img = full(&[(1, 2), (3, 1), (0x10, 1)]);
        let l = parse(&img, "t").unwrap();
        // Runs 0 and 1 are contiguous in memory and in the file: one region.
        assert_eq!(
            l.regions,
            vec![
                Region {
                    gpa: 0x1000,
                    len: 0x3000,
                    file_offset: 0x2000
                },
                Region {
                    gpa: 0x10000,
                    len: 0x1000,
                    file_offset: 0x5000
                }
            ]
        );
        assert_eq!(l.vcpus.len(), 1);
        assert!(l.vcpus[0].has_paging_state());
        assert_eq!(l.vcpus[0].cr3, 0x1ad000);
        let info = l.windows.unwrap();
        assert_eq!(info.kind, WindowsDumpKind::Full);
        assert_eq!(info.directory_table_base, 0x1ad000);
    }

    #[test]
    fn bitmap_bits_become_regions() {
        // Frames 0, 1, 2, 9 and 63..=65 present; 70 pages in the bitmap.
        let mut bits = [0u8; 9];
        for f in [0usize, 1, 2, 9, 63, 64, 65] {
            bits[f / 8] |= 1 << (f % 8);
        }
        // A bit past `pages` must be ignored.
        bits[8] |= 0x80;
        let img = bitmap(b"SDMP", &bits, 70, 7);
        let l = parse(&img, "t").unwrap();
        assert_eq!(
            l.regions,
            vec![
                Region {
                    gpa: 0,
                    len: 0x3000,
                    file_offset: 0x3000
                },
                Region {
                    gpa: 0x9000,
                    len: 0x1000,
                    file_offset: 0x6000
                },
                Region {
                    gpa: 63 * 0x1000,
                    len: 0x3000,
                    file_offset: 0x7000
                },
            ]
        );
        assert_eq!(l.windows.unwrap().kind, WindowsDumpKind::BitmapKernel);
        // One page fewer in the file than the bitmap marks present.
        let mut short = img.clone();
        short.truncate(short.len() - 1);
        let e = parse(&short, "t").unwrap_err().to_string();
        assert!(e.contains("marks more than"), "{e}");
        // A run reaching the last bitmap page.
        let img = bitmap(b"FDMP", &[0xff], 8, 8);
        let l = parse(&img, "t").unwrap();
        assert_eq!(l.regions.len(), 1);
        assert_eq!(l.regions[0].len, 8 * PAGE);
    }

    #[test]
    fn bad_headers_are_errors() {
        let err = |b: &[u8]| parse(b, "t").unwrap_err().to_string();
        assert!(err(&header(1)[..0x1000]).contains("truncated"));
        let mut h = full(&[(0, 1)]);
        h[OFF_MACHINE..OFF_MACHINE + 4].copy_from_slice(&0x14cu32.to_le_bytes());
        assert!(err(&h).contains("MachineImageType 0x14c"));
        // Unsupported types: a clear "unsupported", a different error from "malformed".
        for (t, name) in [
            (3, "header only"),
            (4, "triage"),
            (8, "kernel memory, RDMP layout"),
            (0x77, "not a known type"),
            (0, "unknown"),
        ] {
            let e = parse(&header(t), "t").unwrap_err();
            assert!(matches!(e, Error::UnsupportedImage { .. }), "{e}");
            let want = format!("Windows crash dump t: unsupported DumpType {t} ({name}): ");
            assert!(e.to_string().starts_with(&want), "{e}");
        }
        // Summary and automatic dumps in the bitmap layout are read like DumpType 5.
        for t in [2, 6, 7] {
            let l = parse(&bitmap_typed(t, b"SDMP", &[0b101], 3, 2), "t").unwrap();
            let info = l.windows.unwrap();
            assert_eq!(
                (info.dump_type, info.kind),
                (t, WindowsDumpKind::BitmapKernel)
            );
            assert_eq!(l.regions.len(), 2);
        }
        // A summary or automatic dump without a bitmap header is unsupported too.
        for t in [2, 7] {
            let mut h = header(t);
            h.resize(2 * HEADER_SIZE, 0);
            let e = parse(&h, "t").unwrap_err();
            assert!(matches!(e, Error::UnsupportedImage { .. }), "{e}");
            assert!(
                e.to_string()
                    .contains(&format!("unsupported DumpType {t} (")),
                "{e}"
            );
        }
        let mut h = full(&[(0, 1)]);
        h[OFF_NUMBER_OF_RUNS..OFF_NUMBER_OF_RUNS + 4].copy_from_slice(&44u32.to_le_bytes());
        assert!(err(&h).contains("NumberOfRuns 44"));
        let h = full(&[(0, u64::MAX), (5, 2)]);
        assert!(err(&h).contains("truncated"));
        let mut h = full(&[(0, 1), (5, 1)]);
        put64(&mut h, OFF_RUNS + 24, u64::MAX);
        assert!(err(&h).contains("overflow"));
        let h = full(&[(u64::MAX / PAGE, 1)]);
        assert!(err(&h).contains("beyond the 64-bit address space"));
        let mut h = b"PAGEDUMP".to_vec();
        h.resize(HEADER_SIZE, 0);
        assert!(err(&h).contains("32-bit"));
        assert!(err(&bitmap(b"XDMP", &[1], 8, 1)).contains("neither SDMP nor FDMP"));
        assert!(err(&bitmap(b"SDMP", &[1], u64::MAX, 1)).contains("needs"));
        assert!(err(&header(5)).contains("truncated"));
    }
}
