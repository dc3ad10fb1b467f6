//! Windows triage dumps (`DumpType` 4, the "small memory dumps" Windows writes to
//! `C:\Windows\Minidump`): no physical memory, but a record of the crash.
//!
//! A triage dump is a `DUMP_HEADER64` (the same 0x2000 bytes as a kernel dump's: bug check,
//! build, processors, the crashing processor's `CONTEXT`; see [`super::WindowsDumpInfo`])
//! followed by a `TRIAGE_DUMP64` at 0x2000 whose fields are byte offsets from the start of the
//! file. The layout read here:
//!
//! | offset in `TRIAGE_DUMP64` | field |
//! |---|---|
//! | 0x00 | `ServicePackBuild`, 0x04 `SizeOfDump`, 0x08 `ValidOffset` |
//! | 0x0c | `ContextOffset`, 0x10 `ExceptionOffset`, 0x14 `MmOffset`, 0x18 `UnloadedDriversOffset` |
//! | 0x1c | `PrcbOffset`: a copy of the crashing processor's `KPRCB` |
//! | 0x20 | `ProcessOffset`: a copy of the current process's `EPROCESS` |
//! | 0x24 | `ThreadOffset`: a copy of the current thread's `ETHREAD` |
//! | 0x28 | `CallStackOffset`, 0x2c `SizeOfCallStack`: the crashing thread's stack |
//! | 0x30 | `DriverListOffset`, 0x34 `DriverCount` |
//! | 0x38 | `StringPoolOffset`, 0x3c `StringPoolSize` |
//! | 0x40 | `BrokenDriverOffset`, 0x44 `TriageOptions` |
//! | 0x48 | `TopOfStack` (u64): the highest address of the call stack |
//!
//! The field order is that of Microsoft's `TRIAGE_DUMP64` as Ghidra's `PAGEDUMP_TRIAGE`
//! reader (Apache-2.0, `ghidra.file.formats.dump.pagedump.TriageDump`) parses it: eighteen
//! `ULONG`s, then the pointer-sized `TopOfStack`. At `ValidOffset` the dump ends with the
//! marker `TRGD` (`0x44475254`); it is checked before anything else is believed.
//!
//! The driver list is an array of `DUMP_DRIVER_ENTRY64`: a `ULONG DriverNameOffset` (a
//! `DUMP_STRING` in the file: a `ULONG` count of UTF-16 characters, then the characters),
//! 4 bytes of padding, and a `KLDR_DATA_TABLE_ENTRY64` as the debugger headers declare it
//! (`wdbgexts.h`: `DllBase` at 0x30, `SizeOfImage` at 0x40, `CheckSum` at 0x78,
//! `TimeDateStamp` at 0x80, 0x88 bytes): entries of 0x90 bytes, `DllBase` at +0x38,
//! `SizeOfImage` at +0x48, `CheckSum` at +0x80, `TimeDateStamp` at +0x88. The list is the
//! kernel's `PsLoadedModuleList` in order, ntoskrnl first.
//!
//! What needs no profile ([`TriageDump`]): the header, the bug check, the crashing
//! processor's registers, the driver list and the stack. The process, thread and processor
//! copies are laid out by the kernel build: `crate::os::windows::triage` reads them with a
//! profile.
//!
//! # Bounds
//! The file is read whole, up to [`MAX_TRIAGE_DUMP`] bytes; every offset is checked against its
//! size; at most [`MAX_TRIAGE_DRIVERS`] entries are read, names are capped at
//! [`MAX_DRIVER_NAME`] characters. An entry whose name is not in the file is an error item of
//! [`TriageDump::drivers`], and the list goes on.

use std::path::Path;

use super::crashdump::{checked_header, context_registers, dump_type, header_info, HEADER_SIZE};
use super::{WindowsDumpInfo, WindowsDumpKind};
use crate::bytes::{slice_at, u32_at, u64_at};
use crate::error::{Error, Result};
use crate::regs::Registers;

const FMT: &str = "Windows triage dump";

/// Largest triage dump read (real ones are 64 KiB to a few MiB).
pub const MAX_TRIAGE_DUMP: u64 = 64 << 20;
/// Most driver entries read.
pub const MAX_TRIAGE_DRIVERS: usize = 1 << 14;
/// Most UTF-16 characters of one driver name.
pub const MAX_DRIVER_NAME: usize = 512;
/// `DumpType` of a triage dump.
pub const DUMP_TYPE_TRIAGE: u32 = 4;
/// `TRGD`: the marker at `ValidOffset`.
pub const TRIAGE_VALID: u32 = 0x4447_5254;
/// Size of one `DUMP_DRIVER_ENTRY64`.
pub const DRIVER_ENTRY_SIZE: usize = 0x90;

const T_VALID: usize = 0x08;
const T_CONTEXT: usize = 0x0c;
const T_PRCB: usize = 0x1c;
const T_PROCESS: usize = 0x20;
const T_THREAD: usize = 0x24;
const T_CALL_STACK: usize = 0x28;
const T_CALL_STACK_SIZE: usize = 0x2c;
const T_DRIVER_LIST: usize = 0x30;
const T_DRIVER_COUNT: usize = 0x34;
const T_TRIAGE_OPTIONS: usize = 0x44;
const T_TOP_OF_STACK: usize = 0x48;
const T_SIZE: usize = 0x50;

const E_BASE: usize = 0x38;
const E_SIZE: usize = 0x48;
const E_CHECKSUM: usize = 0x80;
const E_TIMESTAMP: usize = 0x88;

/// One loaded driver as the triage dump's driver list records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TriageDriver {
    /// The name from the string pool (the loader entry's `BaseDllName`, e.g. `ntoskrnl.exe`).
    pub name: String,
    /// `DllBase`.
    pub base: u64,
    /// `SizeOfImage`.
    pub size: u32,
    /// `CheckSum` of the PE header.
    pub checksum: u32,
    /// `TimeDateStamp` of the PE header (with `SizeOfImage`, a symbol store's key for the
    /// binary).
    pub timestamp: u32,
}

impl TriageDriver {
    /// Whether `addr` lies in the image.
    pub fn contains(&self, addr: u64) -> bool {
        addr.checked_sub(self.base)
            .is_some_and(|o| o < u64::from(self.size))
    }
}

/// A triage dump's contents that need no profile, and the raw copies that do.
#[derive(Clone, Debug)]
pub struct TriageDump {
    /// What the file is called in errors.
    pub what: String,
    /// The header's values (`kind` is [`WindowsDumpKind::Triage`]).
    pub info: WindowsDumpInfo,
    /// The crashing processor's registers from the header's `CONTEXT` (CR3 is the header's
    /// `DirectoryTableBase`).
    pub context: Registers,
    /// `TriageOptions` in effect at the crash.
    pub triage_options: u32,
    /// `TopOfStack`: the highest address of the saved call stack.
    pub top_of_stack: u64,
    /// Every driver list entry in order; an entry that cannot be read is an error item.
    pub drivers: Vec<std::result::Result<TriageDriver, String>>,
    /// `DriverCount` was more than [`MAX_TRIAGE_DRIVERS`].
    pub drivers_truncated: bool,
    bytes: Vec<u8>,
    prcb: u32,
    process: u32,
    thread: u32,
    call_stack: (u32, u32),
}

impl TriageDump {
    /// Whether the file at `path` is a 64-bit Windows triage dump (signature and `DumpType`;
    /// nothing else is checked). Unreadable files are not.
    pub fn sniff(path: impl AsRef<Path>) -> bool {
        use std::io::Read;
        let mut head = vec![0u8; HEADER_SIZE];
        crate::file::open_regular(path.as_ref(), false)
            .is_ok_and(|(mut f, _)| f.read_exact(&mut head).is_ok())
            && checked_header(head.as_slice(), "").is_ok()
            && dump_type(&head) == DUMP_TYPE_TRIAGE
    }

    /// Read the triage dump at `path`: a regular file (never a FIFO or a device) of at most
    /// [`MAX_TRIAGE_DUMP`] bytes.
    ///
    /// # Errors
    /// [`Error::Io`]; [`Error::Malformed`] naming the file and the field for anything that is
    /// not a well-formed triage dump.
    pub fn open(path: impl AsRef<Path>) -> Result<TriageDump> {
        let path = path.as_ref();
        let bytes = crate::file::read_capped(path, MAX_TRIAGE_DUMP, FMT)?;
        TriageDump::parse(bytes, path.display().to_string())
    }

    /// Parse a triage dump held in memory; `what` names it in errors.
    ///
    /// # Errors
    /// [`Error::Malformed`] naming `what` and the field.
    pub fn parse(bytes: Vec<u8>, what: impl Into<String>) -> Result<TriageDump> {
        let what = what.into();
        let bad = |reason: String| Error::malformed(FMT, what.clone(), reason);
        let header = checked_header(bytes.as_slice(), &what)?;
        let t = dump_type(&header);
        if t != DUMP_TYPE_TRIAGE {
            return Err(bad(format!(
                "DumpType {t} ({}) is not a triage dump (4)",
                super::crashdump::dump_type_name(t)
            )));
        }
        let info = header_info(&header, t, WindowsDumpKind::Triage);
        let context = context_registers(&header, info.directory_table_base);
        drop(header);
        let size = bytes.len();
        let tri = slice_at(&bytes, HEADER_SIZE, T_SIZE).ok_or_else(|| {
            bad(format!(
                "TRIAGE_DUMP64 at {HEADER_SIZE:#x} needs {T_SIZE:#x} bytes but the file has {size:#x} (truncated)"
            ))
        })?;
        let field = |off: usize| u32_at(tri, off).unwrap_or(0);
        let valid = field(T_VALID);
        if u32_at(&bytes, valid as usize) != Some(TRIAGE_VALID) {
            return Err(bad(format!(
                "no TRGD marker at TRIAGE_DUMP64.ValidOffset {valid:#x} (file size {size:#x}): not a triage dump this reader knows, or truncated"
            )));
        }
        // Every offset must lie inside the file: a copy or list that does not is refused by
        // name rather than read past the end.
        let inside = |name: &str, off: u32| -> Result<u32> {
            if (off != 0 && (off as usize) < HEADER_SIZE + T_SIZE) || off as usize >= size {
                return Err(bad(format!(
                    "TRIAGE_DUMP64.{name} {off:#x} is outside the dump's data ({:#x}..{size:#x})",
                    HEADER_SIZE + T_SIZE
                )));
            }
            Ok(off)
        };
        let _ = inside("ContextOffset", field(T_CONTEXT))?;
        let prcb = inside("PrcbOffset", field(T_PRCB))?;
        let process = inside("ProcessOffset", field(T_PROCESS))?;
        let thread = inside("ThreadOffset", field(T_THREAD))?;
        let stack = inside("CallStackOffset", field(T_CALL_STACK))?;
        let stack_size = field(T_CALL_STACK_SIZE);
        if stack as usize + stack_size as usize > size {
            return Err(bad(format!(
                "TRIAGE_DUMP64.SizeOfCallStack {stack_size:#x} at CallStackOffset {stack:#x} runs past the end of the file ({size:#x})"
            )));
        }
        let list = inside("DriverListOffset", field(T_DRIVER_LIST))?;
        let count = field(T_DRIVER_COUNT) as usize;
        let drivers_truncated = count > MAX_TRIAGE_DRIVERS;
        let count = count.min(MAX_TRIAGE_DRIVERS);
        if count > 0 && list == 0 {
            return Err(bad(format!(
                "TRIAGE_DUMP64.DriverCount is {count} but DriverListOffset is 0"
            )));
        }
        if list as usize + count * DRIVER_ENTRY_SIZE > size {
            return Err(bad(format!(
                "the driver list ({count} entries of {DRIVER_ENTRY_SIZE:#x} bytes at DriverListOffset {list:#x}) runs past the end of the file ({size:#x})"
            )));
        }
        let drivers = (0..count)
            .map(|i| driver_entry(&bytes, list as usize + i * DRIVER_ENTRY_SIZE, i))
            .collect();
        let top_of_stack = u64_at(tri, T_TOP_OF_STACK).unwrap_or(0);
        let triage_options = field(T_TRIAGE_OPTIONS);
        Ok(TriageDump {
            what,
            info,
            context,
            triage_options,
            top_of_stack,
            drivers,
            drivers_truncated,
            prcb,
            process,
            thread,
            call_stack: (stack, stack_size),
            bytes,
        })
    }

    /// The copy of the current process's `EPROCESS` (from `ProcessOffset` to the end of the
    /// file: its size is the kernel build's), or `None` when the dump has none.
    pub fn process_copy(&self) -> Option<&[u8]> {
        self.copy(self.process)
    }

    /// The copy of the current thread's `ETHREAD`, as [`TriageDump::process_copy`].
    pub fn thread_copy(&self) -> Option<&[u8]> {
        self.copy(self.thread)
    }

    /// The copy of the crashing processor's `KPRCB`, as [`TriageDump::process_copy`].
    pub fn prcb_copy(&self) -> Option<&[u8]> {
        self.copy(self.prcb)
    }

    /// The saved call stack: its bytes, which end at [`TriageDump::top_of_stack`].
    pub fn call_stack(&self) -> &[u8] {
        let (off, len) = self.call_stack;
        slice_at(&self.bytes, off as usize, len as usize).unwrap_or(&[])
    }

    /// The driver whose image holds `addr`.
    pub fn driver_at(&self, addr: u64) -> Option<&TriageDriver> {
        self.drivers.iter().flatten().find(|d| d.contains(addr))
    }

    fn copy(&self, off: u32) -> Option<&[u8]> {
        (off != 0).then(|| self.bytes.get(off as usize..)).flatten()
    }
}

/// Entry `i` of the driver list at `at` (inside the file: checked by the caller).
fn driver_entry(bytes: &[u8], at: usize, i: usize) -> std::result::Result<TriageDriver, String> {
    let e = slice_at(bytes, at, DRIVER_ENTRY_SIZE)
        .ok_or_else(|| format!("driver entry {i}: past the end of the file"))?;
    let name_at = u32_at(e, 0).unwrap_or(0) as usize;
    let name = dump_string(bytes, name_at)
        .map_err(|why| format!("driver entry {i}: DriverNameOffset {name_at:#x}: {why}"))?;
    Ok(TriageDriver {
        name,
        base: u64_at(e, E_BASE).unwrap_or(0),
        size: u32_at(e, E_SIZE).unwrap_or(0),
        checksum: u32_at(e, E_CHECKSUM).unwrap_or(0),
        timestamp: u32_at(e, E_TIMESTAMP).unwrap_or(0),
    })
}

/// The `DUMP_STRING` at `at`: a `ULONG` character count, then UTF-16 (unpaired surrogates
/// become U+FFFD).
fn dump_string(bytes: &[u8], at: usize) -> std::result::Result<String, String> {
    let n = u32_at(bytes, at).ok_or("outside the file")? as usize;
    if n > MAX_DRIVER_NAME {
        return Err(format!(
            "a name of {n} characters (at most {MAX_DRIVER_NAME})"
        ));
    }
    let raw = slice_at(bytes, at + 4, 2 * n).ok_or("the name runs past the end of the file")?;
    let units: Vec<u16> = raw
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    Ok(String::from_utf16_lossy(&units))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dump_string_caps_and_bounds() {
        let mut b = vec![0u8; 16];
        b[0..4].copy_from_slice(&2u32.to_le_bytes());
        b[4..8].copy_from_slice(&[b'o', 0, b'k', 0]);
        assert_eq!(dump_string(&b, 0).unwrap(), "ok");
        b[0..4].copy_from_slice(&(MAX_DRIVER_NAME as u32 + 1).to_le_bytes());
        assert!(dump_string(&b, 0).unwrap_err().contains("at most"));
        b[0..4].copy_from_slice(&7u32.to_le_bytes());
        assert!(dump_string(&b, 0).unwrap_err().contains("past the end"));
        assert!(dump_string(&b, 14).is_err());
    }
}
