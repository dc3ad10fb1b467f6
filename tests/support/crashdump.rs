//! A test-side writer of 64-bit Windows kernel crash dumps (`PAGEDU64`).
//!
//! There is no real Windows dump on this machine: the containers these functions write are
//! synthetic, made by following the published layout (0vercl0k's kdmp-parser, MIT:
//! `DUMP_HEADER64`, `PHYSMEM_DESC`, `BMP_HEADER64`, the x64 `CONTEXT`), transcribed here
//! independently of the parser in `src/backend/snapshot/crashdump.rs`. The tests fill them
//! with a real guest's physical memory (the Linux fixtures), so the memory inside is real.
//!
//! Like Windows, the header is first filled with the bytes `PAGE` and the fields written over
//! them, so fields the writer does not set read as 0x45474150... .
#![allow(dead_code)]

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};

use xenvmi::Registers;

pub const PAGE: usize = 0x1000;
pub const HEADER: usize = 0x2000;

// DUMP_HEADER64
pub const DTB: usize = 0x10;
pub const PFN_DATABASE: usize = 0x18;
pub const LOADED_MODULES: usize = 0x20;
pub const ACTIVE_PROCESSES: usize = 0x28;
pub const MACHINE: usize = 0x30;
pub const NUMBER_PROCESSORS: usize = 0x34;
pub const BUGCHECK_CODE: usize = 0x38;
pub const BUGCHECK_PARAMS: usize = 0x40;
pub const KD_DEBUGGER_DATA: usize = 0x80;
pub const NUMBER_OF_RUNS: usize = 0x88;
pub const NUMBER_OF_PAGES: usize = 0x90;
pub const RUNS: usize = 0x98;
pub const CONTEXT: usize = 0x348;
pub const DUMP_TYPE: usize = 0xf98;
pub const REQUIRED_SPACE: usize = 0xfa0;
pub const SYSTEM_TIME: usize = 0xfa8;
pub const SYSTEM_UP_TIME: usize = 0x1030;
// BMP_HEADER64, at 0x2000
pub const BMP_FIRST_PAGE: usize = HEADER + 0x20;
pub const BMP_PRESENT: usize = HEADER + 0x28;
pub const BMP_PAGES: usize = HEADER + 0x30;
pub const BMP_BITMAP: usize = HEADER + 0x38;

/// What the writer puts in the header.
#[derive(Clone, Debug)]
pub struct Header {
    pub major: u32,
    pub minor: u32,
    pub dtb: u64,
    pub pfn_database: u64,
    pub ps_loaded_module_list: u64,
    pub ps_active_process_head: u64,
    pub kd_debugger_data_block: u64,
    pub number_processors: u32,
    pub bugcheck_code: u32,
    pub bugcheck_parameters: [u64; 4],
    pub required_dump_space: u64,
    pub system_time: u64,
    pub system_up_time: u64,
    /// Written into the `CONTEXT` record (general registers, rip, rflags, cs, ss).
    pub context: Registers,
}

impl Header {
    /// Made-up but plausible header values (Windows 10 22H2's build number, a manual crash).
    pub fn example(dtb: u64, context: Registers) -> Header {
        Header {
            major: 0xf,
            minor: 19045,
            dtb,
            pfn_database: 0xffff_c800_0000_0000,
            ps_loaded_module_list: 0xffff_f806_1a42_a2d0,
            ps_active_process_head: 0xffff_f806_1a41_e1c0,
            kd_debugger_data_block: 0xffff_f806_1a40_0b20,
            number_processors: 2,
            bugcheck_code: 0xe2, // MANUALLY_INITIATED_CRASH
            bugcheck_parameters: [1, 2, 3, 4],
            required_dump_space: 0,
            system_time: 0x01db_5e8f_3c2a_1000,
            system_up_time: 1_234_567_890,
            context,
        }
    }
}

pub fn put32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

pub fn put64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_le_bytes());
}

/// The 0x2000-byte `DUMP_HEADER64` of a dump of `dump_type`.
pub fn header(h: &Header, dump_type: u32) -> Vec<u8> {
    let mut b: Vec<u8> = b"PAGE".iter().copied().cycle().take(HEADER).collect();
    b[4..8].copy_from_slice(b"DU64");
    put32(&mut b, 0x08, h.major);
    put32(&mut b, 0x0c, h.minor);
    put64(&mut b, DTB, h.dtb);
    put64(&mut b, PFN_DATABASE, h.pfn_database);
    put64(&mut b, LOADED_MODULES, h.ps_loaded_module_list);
    put64(&mut b, ACTIVE_PROCESSES, h.ps_active_process_head);
    put32(&mut b, MACHINE, 0x8664);
    put32(&mut b, NUMBER_PROCESSORS, h.number_processors);
    put32(&mut b, BUGCHECK_CODE, h.bugcheck_code);
    put32(&mut b, BUGCHECK_CODE + 4, 0);
    for (i, p) in h.bugcheck_parameters.iter().enumerate() {
        put64(&mut b, BUGCHECK_PARAMS + 8 * i, *p);
    }
    put64(&mut b, KD_DEBUGGER_DATA, h.kd_debugger_data_block);
    write_context(&mut b[CONTEXT..CONTEXT + 0x4d0], &h.context);
    put32(&mut b, DUMP_TYPE, dump_type);
    put64(&mut b, REQUIRED_SPACE, h.required_dump_space);
    put64(&mut b, SYSTEM_TIME, h.system_time);
    put64(&mut b, SYSTEM_UP_TIME, h.system_up_time);
    b
}

/// An x64 `CONTEXT` (0x4d0 bytes) with the registers of `r`.
fn write_context(c: &mut [u8], r: &Registers) {
    c.fill(0);
    put32(c, 0x30, 0x0010_000b); // ContextFlags: CONTEXT_AMD64 | CONTROL | INTEGER | FLOATING_POINT
    put32(c, 0x34, 0x1f80); // MxCsr
    let seg = |c: &mut [u8], off: usize, v: u16| c[off..off + 2].copy_from_slice(&v.to_le_bytes());
    seg(c, 0x38, r.cs_sel); // SegCs
    seg(c, 0x3a, 0x2b); // SegDs
    seg(c, 0x3c, 0x2b); // SegEs
    seg(c, 0x3e, 0x53); // SegFs
    seg(c, 0x40, 0x2b); // SegGs
    seg(c, 0x42, r.ss_sel); // SegSs
    put32(c, 0x44, r.rflags as u32); // EFlags
    let gprs = [
        r.rax, r.rcx, r.rdx, r.rbx, r.rsp, r.rbp, r.rsi, r.rdi, r.r8, r.r9, r.r10, r.r11, r.r12,
        r.r13, r.r14, r.r15,
    ];
    for (i, v) in gprs.iter().enumerate() {
        put64(c, 0x78 + 8 * i, *v);
    }
    put64(c, 0xf8, r.rip);
    put32(c, 0x118, 0x1f80); // FltSave.MxCsr (kdmp-parser checks it equals MxCsr)
}

/// A full (DumpType 1) dump header describing `runs` of (BasePage, PageCount).
pub fn full_header(h: &Header, runs: &[(u64, u64)]) -> Vec<u8> {
    let mut b = header(h, 1);
    put32(&mut b, NUMBER_OF_RUNS, runs.len() as u32);
    put32(&mut b, NUMBER_OF_RUNS + 4, 0);
    put64(
        &mut b,
        NUMBER_OF_PAGES,
        runs.iter().fold(0u64, |a, r| a.wrapping_add(r.1)),
    );
    for (i, (base, count)) in runs.iter().enumerate() {
        put64(&mut b, RUNS + 16 * i, *base);
        put64(&mut b, RUNS + 16 * i + 8, *count);
    }
    b
}

/// A whole full dump in memory: `runs` are (guest-physical address, page-aligned bytes).
pub fn full_dump(h: &Header, runs: &[(u64, &[u8])]) -> Vec<u8> {
    let desc: Vec<(u64, u64)> = runs
        .iter()
        .map(|(gpa, data)| (gpa / PAGE as u64, (data.len() / PAGE) as u64))
        .collect();
    let mut b = full_header(h, &desc);
    for (_, data) in runs {
        b.extend_from_slice(data);
    }
    b
}

/// Header, bitmap header and bitmap of a bitmap dump whose frames `present` (sorted) are
/// stored, in a bitmap of `pages` bits; the result is padded to `FirstPage` (page aligned).
pub fn bitmap_header(
    h: &Header,
    dump_type: u32,
    signature: &[u8; 4],
    pages: u64,
    present: &[u64],
) -> Vec<u8> {
    let mut b = header(h, dump_type);
    let bitmap_len = pages.div_ceil(8) as usize;
    let first_page = (BMP_BITMAP + bitmap_len).div_ceil(PAGE) * PAGE;
    b.resize(first_page, 0);
    b[HEADER..HEADER + 4].copy_from_slice(signature);
    b[HEADER + 4..HEADER + 8].copy_from_slice(b"DUMP");
    put64(&mut b, BMP_FIRST_PAGE, first_page as u64);
    put64(&mut b, BMP_PRESENT, present.len() as u64);
    put64(&mut b, BMP_PAGES, pages);
    for &pfn in present {
        b[BMP_BITMAP + (pfn / 8) as usize] |= 1 << (pfn % 8);
    }
    b
}

/// A whole bitmap dump in memory: `pages` are (frame, 4 KiB of bytes), sorted by frame.
pub fn bitmap_dump(
    h: &Header,
    dump_type: u32,
    signature: &[u8; 4],
    total_pages: u64,
    pages: &[(u64, &[u8])],
) -> Vec<u8> {
    let present: Vec<u64> = pages.iter().map(|p| p.0).collect();
    let mut b = bitmap_header(h, dump_type, signature, total_pages, &present);
    for (_, data) in pages {
        assert_eq!(data.len(), PAGE);
        b.extend_from_slice(data);
    }
    b
}

/// Write `src` at the current position of `out`, leaving runs of zero pages as holes.
pub fn write_sparse(src: &[u8], out: &mut File) {
    for chunk in src.chunks(PAGE) {
        if chunk.iter().all(|&b| b == 0) {
            out.seek(SeekFrom::Current(chunk.len() as i64)).unwrap();
        } else {
            out.write_all(chunk).unwrap();
        }
    }
}

/// A driver in a triage dump's driver list.
#[derive(Clone, Debug)]
pub struct TriageDriverSpec {
    pub name: String,
    pub base: u64,
    pub size: u32,
    pub checksum: u32,
    pub timestamp: u32,
}

/// What a triage dump (DumpType 4) records besides its header.
#[derive(Clone, Debug, Default)]
pub struct Triage {
    /// Copies of the crashing processor's `KPRCB`, the current process's `EPROCESS` and the
    /// current thread's `ETHREAD`, as many bytes as the build's structures have.
    pub prcb: Vec<u8>,
    pub process: Vec<u8>,
    pub thread: Vec<u8>,
    /// The saved stack, ending at `top_of_stack`.
    pub stack: Vec<u8>,
    pub top_of_stack: u64,
    pub drivers: Vec<TriageDriverSpec>,
}

// TRIAGE_DUMP64 at 0x2000: eighteen ULONGs then TopOfStack, in the order of Ghidra's
// PAGEDUMP_TRIAGE reader (Apache-2.0, ghidra.file.formats.dump.pagedump.TriageDump).
pub const T_SERVICE_PACK_BUILD: usize = HEADER;
pub const T_SIZE_OF_DUMP: usize = HEADER + 0x04;
pub const T_VALID_OFFSET: usize = HEADER + 0x08;
pub const T_CONTEXT_OFFSET: usize = HEADER + 0x0c;
pub const T_EXCEPTION_OFFSET: usize = HEADER + 0x10;
pub const T_MM_OFFSET: usize = HEADER + 0x14;
pub const T_UNLOADED_DRIVERS_OFFSET: usize = HEADER + 0x18;
pub const T_PRCB_OFFSET: usize = HEADER + 0x1c;
pub const T_PROCESS_OFFSET: usize = HEADER + 0x20;
pub const T_THREAD_OFFSET: usize = HEADER + 0x24;
pub const T_CALL_STACK_OFFSET: usize = HEADER + 0x28;
pub const T_SIZE_OF_CALL_STACK: usize = HEADER + 0x2c;
pub const T_DRIVER_LIST_OFFSET: usize = HEADER + 0x30;
pub const T_DRIVER_COUNT: usize = HEADER + 0x34;
pub const T_STRING_POOL_OFFSET: usize = HEADER + 0x38;
pub const T_STRING_POOL_SIZE: usize = HEADER + 0x3c;
pub const T_BROKEN_DRIVER_OFFSET: usize = HEADER + 0x40;
pub const T_TRIAGE_OPTIONS: usize = HEADER + 0x44;
pub const T_TOP_OF_STACK: usize = HEADER + 0x48;
/// `DUMP_DRIVER_ENTRY64`: `DriverNameOffset`, padding, then the debugger headers'
/// `KLDR_DATA_TABLE_ENTRY64` (0x88 bytes: `DllBase` 0x30, `SizeOfImage` 0x40, `CheckSum` 0x78,
/// `TimeDateStamp` 0x80).
pub const DRIVER_ENTRY: usize = 0x90;
/// `TRGD`, written at `ValidOffset`.
pub const TRIAGE_VALID: u32 = 0x4447_5254;

/// A triage dump: the header, `TRIAGE_DUMP64`, then (each 8-aligned) the `CONTEXT` copy, the
/// `KPRCB`, `EPROCESS` and `ETHREAD` copies, the stack, the driver list, the string pool
/// (`DUMP_STRING`s: a ULONG character count, UTF-16, a NUL), and `TRGD` last.
pub fn triage_dump(h: &Header, t: &Triage) -> Vec<u8> {
    let mut b = header(h, 4);
    b.resize(HEADER + 0x100, 0);
    let place = |b: &mut Vec<u8>, bytes: &[u8]| -> usize {
        b.resize(b.len().next_multiple_of(8), 0);
        let at = b.len();
        b.extend_from_slice(bytes);
        at
    };
    let context = b[CONTEXT..CONTEXT + 0x4d0].to_vec();
    let context_at = place(&mut b, &context);
    let prcb_at = place(&mut b, &t.prcb);
    let process_at = place(&mut b, &t.process);
    let thread_at = place(&mut b, &t.thread);
    let stack_at = place(&mut b, &t.stack);
    let list_at = place(&mut b, &vec![0u8; DRIVER_ENTRY * t.drivers.len()]);
    let pool_at = b.len().next_multiple_of(8);
    for (i, d) in t.drivers.iter().enumerate() {
        let units: Vec<u16> = d.name.encode_utf16().collect();
        let mut s = (units.len() as u32).to_le_bytes().to_vec();
        for u in units.iter().chain([0u16].iter()) {
            s.extend_from_slice(&u.to_le_bytes());
        }
        let name_at = place(&mut b, &s);
        let e = list_at + DRIVER_ENTRY * i;
        put32(&mut b, e, name_at as u32);
        put64(&mut b, e + 8 + 0x30, d.base);
        put32(&mut b, e + 8 + 0x40, d.size);
        put32(&mut b, e + 8 + 0x78, d.checksum);
        put32(&mut b, e + 8 + 0x80, d.timestamp);
    }
    let pool_size = b.len() - pool_at;
    let valid_at = place(&mut b, &TRIAGE_VALID.to_le_bytes());
    let size = b.len();
    put32(&mut b, T_SERVICE_PACK_BUILD, h.minor);
    put32(&mut b, T_SIZE_OF_DUMP, size as u32);
    put32(&mut b, T_VALID_OFFSET, valid_at as u32);
    put32(&mut b, T_CONTEXT_OFFSET, context_at as u32);
    put32(&mut b, T_PRCB_OFFSET, prcb_at as u32);
    put32(&mut b, T_PROCESS_OFFSET, process_at as u32);
    put32(&mut b, T_THREAD_OFFSET, thread_at as u32);
    put32(&mut b, T_CALL_STACK_OFFSET, stack_at as u32);
    put32(&mut b, T_SIZE_OF_CALL_STACK, t.stack.len() as u32);
    put32(&mut b, T_DRIVER_LIST_OFFSET, list_at as u32);
    put32(&mut b, T_DRIVER_COUNT, t.drivers.len() as u32);
    put32(&mut b, T_STRING_POOL_OFFSET, pool_at as u32);
    put32(&mut b, T_STRING_POOL_SIZE, pool_size as u32);
    put32(&mut b, T_TRIAGE_OPTIONS, 0xffff_ffff);
    put64(&mut b, T_TOP_OF_STACK, t.top_of_stack);
    b
}
