//! Windows guests (x64): find ntoskrnl under KASLR, choose the matching profile, and walk
//! processes, kernel modules (drivers) and each process's loaded DLLs.
//!
//! # Finding the kernel
//! ntoskrnl is a PE image mapped in the kernel half of every address space. Candidates are
//! looked for, cheapest first:
//! 1. a base the caller already knows ([`Hints::kernel_base`]);
//! 2. scanning down, page by page (at most [`HINT_SCAN`] bytes), from addresses that lie inside
//!    the kernel: a crash dump's `PsActiveProcessHead`/`PsLoadedModuleList`
//!    ([`Hints`]), each vCPU's `MSR_LSTAR` (`KiSystemCall64`) and a kernel-mode `rip`;
//! 3. scanning every mapped page of the kernel image region
//!    (`0xfffff800_00000000..0xfffff880_00000000`, at most [`SCAN_PAGES`] pages).
//!
//! These are looked for in the address spaces the registers and hints give: a crash dump's
//! `DirectoryTableBase`, then each vCPU's CR3. When there are none (a raw image, a LiME
//! capture) or none leads to the kernel, the page-table root is looked for in memory alone
//! ([`dtb`]: the x64 low stub, the self-referencing top-level entry, the System process) and
//! each candidate root is searched the same way, then verified by walking its process list
//! ([`WindowsInfo::root_source`], [`WindowsInfo::rejected_roots`]).
//!
//! A candidate is an x86-64 PE image whose CodeView record names an NT kernel PDB
//! (`ntkrnlmp.pdb`, ...) or whose export directory is `ntoskrnl.exe`. The CodeView GUID and
//! age pick the profile ([`WindowsProfile::Directory`]) or are checked against the given one;
//! then the profile's `PsActiveProcessHead` must be a well-formed list head at
//! `base + RVA` (its `Flink->Blink` points back to it) before the candidate is accepted.
//!
//! # Profiles
//! Volatility3 ISF files for `ntkrnlmp.pdb`: symbol addresses are RVAs, structure layouts
//! change with every build, so every offset is read from the profile.
//!
//! # Processors
//! [`Windows::processors`] reads every processor from the kernel's own records
//! (`KiProcessorBlock` → `KPRCB` → current thread → process, and the saved CR3);
//! [`crashing_processor`] finds the processor a crash dump's `CONTEXT` belongs to, and
//! [`Processors::cross_check`] compares the records with a core's registers (see [`cpus`]).
//!
//! # Bounds
//! Guest memory is attacker-controlled: list walks stop at [`MAX_PROCESSES`]/[`MAX_MODULES`]
//! entries and on the first repeated node, `UNICODE_STRING` lengths are capped at
//! [`MAX_NAME_BYTES`], scans at fixed page budgets.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use crate::addr::{Gpa, Gva};
use crate::backend::snapshot::WindowsDumpInfo;
use crate::backend::PhysicalMemory;
use crate::error::{Error, Result};
use crate::mem::{mapped_ranges, AddressSpace, GuestMemory, PageSize, Walk};
use crate::os::list::ListWalk;
use crate::os::pe::{CodeView, MappedImage, Pe};
use crate::os::profile::cache::{ProfileCache, ProfileKey, SourceFile, Wanted};
use crate::os::profile::isf::Isf;
use crate::os::profile::pdb::{symbol_store_path, Pdb};
use crate::os::profile::{Profile, SymbolTable, TypeSource};
use crate::os::{GuestOs, Module, Process};
use crate::regs::{cr3_to_root, PagingMode, Registers};

pub mod cpus;
pub mod driver_symbols;
pub mod dtb;
pub mod triage;
pub use cpus::{
    crashing_processor, CrashingCpu, KernelCpu, ProcessorView, Processors, RegisterCheck,
    CPU_FIELDS, CPU_SYMBOLS, MAX_PROCESSORS,
};
pub use driver_symbols::{DriverImage, DriverSymbols};
pub use dtb::{RootCandidate, RootSource};

/// Bound on processes walked in one list.
pub const MAX_PROCESSES: usize = 1 << 20;
/// Bound on modules walked in one list (kernel drivers or one process's DLLs).
pub const MAX_MODULES: usize = 1 << 14;
/// Bytes of a `UNICODE_STRING` read at most (512 UTF-16 code units).
pub const MAX_NAME_BYTES: usize = 1024;
/// How far below a hint address the kernel's PE header is looked for.
pub const HINT_SCAN: u64 = 32 << 20;
/// Pages one discovery may check for an `MZ` signature, hint scans and region scans together.
pub const SCAN_PAGES: usize = 1 << 20;
/// Start of the region ntoskrnl is loaded in (x64, all versions since Vista).
pub const KERNEL_REGION_START: u64 = 0xffff_f800_0000_0000;
/// End of that region.
pub const KERNEL_REGION_END: u64 = 0xffff_f880_0000_0000;
/// PDB names of the NT kernel (uniprocessor / multiprocessor, PAE or not).
pub const NT_PDB_NAMES: [&str; 4] = [
    "ntkrnlmp.pdb",
    "ntoskrnl.pdb",
    "ntkrnlpa.pdb",
    "ntkrpamp.pdb",
];
/// Most PE headers one discovery parses (every `MZ` page found by a scan costs a header parse;
/// a hostile guest can put `MZ` on every page).
pub const MAX_PROBES: usize = 256;
/// Most ISF files a [`WindowsProfile::Directory`] search opens to read their metadata.
pub const MAX_PROFILE_FILES: usize = 64;

/// Where the Windows profile comes from.
#[derive(Debug)]
pub enum WindowsProfile {
    /// One Volatility3 ISF file (`.json` or `.json.xz`), or a Microsoft PDB (`.pdb`, read by
    /// [`Pdb`]). Its PDB GUID and age (an ISF's when its metadata records them, a PDB's
    /// always) must match the kernel's.
    Isf(PathBuf),
    /// A symbol-store directory or a directory of ISF files, searched by the GUID and age of
    /// the running kernel's CodeView record: first the PDB at
    /// `<dir>/<pdb name>/<GUID><AGE>/<pdb name>` (the layout debuggers cache symbols in, see
    /// [`symbol_store_path`]), then ISF files whose names contain the GUID (the
    /// `ntkrnlmp-<GUID>-<age>.json.xz` and `<GUID>-<age>.json.xz` conventions), then up to
    /// [`MAX_PROFILE_FILES`] other ISF files by their metadata.
    Directory(PathBuf),
    /// An already-loaded profile (not checked against the kernel's GUID).
    Loaded(Profile),
}

impl WindowsProfile {
    /// A profile named on a command line: a directory is [`WindowsProfile::Directory`]
    /// (searched by GUID and age), anything else one file, [`WindowsProfile::Isf`] (an ISF
    /// or a PDB).
    pub fn from_path(path: &std::path::Path) -> WindowsProfile {
        if path.is_dir() {
            WindowsProfile::Directory(path.to_path_buf())
        } else {
            WindowsProfile::Isf(path.to_path_buf())
        }
    }
}

/// Facts known from outside guest memory that make discovery cheaper or possible.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Hints {
    /// The kernel's image base.
    pub kernel_base: Option<Gva>,
    /// Address of `PsActiveProcessHead` (a crash dump header records it).
    pub ps_active_process_head: Option<Gva>,
    /// Address of `PsLoadedModuleList` (a crash dump header records it).
    pub ps_loaded_module_list: Option<Gva>,
    /// A kernel page-table root (`DirectoryTableBase` of a crash dump header).
    pub directory_table_base: Option<u64>,
}

impl From<&WindowsDumpInfo> for Hints {
    /// The hints a Windows crash dump header gives: `DirectoryTableBase`,
    /// `PsActiveProcessHead` and `PsLoadedModuleList` (zero values are left out). The kernel
    /// base is not in the header.
    ///
    /// ```no_run
    /// use xenvmi::backend::snapshot::Snapshot;
    /// use xenvmi::mem::GuestMemory;
    /// use xenvmi::os::windows::{Hints, Windows, WindowsProfile};
    /// let snap = Snapshot::open("MEMORY.DMP")?;
    /// let hints = snap.windows_dump_info().map(Hints::from).unwrap_or_default();
    /// let regs = snap.all_registers().to_vec();
    /// let mem = GuestMemory::new(snap);
    /// let profile = WindowsProfile::Directory("isf/".into());
    /// let w = Windows::discover_with(&mem, &regs, profile, &hints)?;
    /// println!("ntoskrnl at {}", w.info().kernel_base);
    /// # Ok::<(), xenvmi::Error>(())
    /// ```
    fn from(d: &WindowsDumpInfo) -> Hints {
        let nonzero = |v: u64| (v != 0).then_some(v);
        Hints {
            kernel_base: None,
            ps_active_process_head: nonzero(d.ps_active_process_head).map(Gva),
            ps_loaded_module_list: nonzero(d.ps_loaded_module_list).map(Gva),
            directory_table_base: nonzero(d.directory_table_base),
        }
    }
}

/// How the kernel was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FoundBy {
    /// [`Hints::kernel_base`].
    GivenBase,
    /// Scanning down from an address inside the kernel (named).
    Hint(String),
    /// Scanning the kernel image region.
    RegionScan,
}

/// What was found about the running kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WindowsInfo {
    /// ntoskrnl's image base.
    pub kernel_base: Gva,
    /// Its `SizeOfImage`.
    pub size_of_image: u32,
    /// Its CodeView record (PDB name, GUID, age), when the header page had one.
    pub codeview: Option<CodeView>,
    /// `NtBuildNumber & 0xffff` (7601, 19041, 22000, ...), when readable.
    pub build: Option<u32>,
    /// The kernel's page tables (the System process's `DirectoryTableBase` when readable).
    pub kernel_space: AddressSpace,
    /// How the kernel was found.
    pub found_by: FoundBy,
    /// Where the page-table root the kernel was found in came from (a register, a hint, or
    /// for images without registers one of the [`dtb`] methods).
    pub root_source: RootSource,
    /// Register-less root candidates tried and rejected before this one, each with why.
    pub rejected_roots: Vec<String>,
    /// The profile in use.
    pub profile: String,
}

/// The `(structure, field)` pairs the walkers read, in [`Offsets`] field order (kernel loader
/// entries as `_KLDR_DATA_TABLE_ENTRY`; profiles without it, Windows 7's, give them as
/// `_LDR_DATA_TABLE_ENTRY`). `Pcb.UserDirectoryTableBase` is optional, the rest required.
pub const FIELDS: [(&str, &str); 19] = [
    ("_EPROCESS", "ActiveProcessLinks"),
    ("_EPROCESS", "UniqueProcessId"),
    ("_EPROCESS", "InheritedFromUniqueProcessId"),
    ("_EPROCESS", "ImageFileName"),
    ("_EPROCESS", "Peb"),
    ("_EPROCESS", "Pcb.DirectoryTableBase"),
    ("_EPROCESS", "Pcb.UserDirectoryTableBase"),
    ("_KLDR_DATA_TABLE_ENTRY", "InLoadOrderLinks"),
    ("_KLDR_DATA_TABLE_ENTRY", "DllBase"),
    ("_KLDR_DATA_TABLE_ENTRY", "SizeOfImage"),
    ("_KLDR_DATA_TABLE_ENTRY", "BaseDllName"),
    ("_LDR_DATA_TABLE_ENTRY", "InLoadOrderLinks"),
    ("_LDR_DATA_TABLE_ENTRY", "DllBase"),
    ("_LDR_DATA_TABLE_ENTRY", "SizeOfImage"),
    ("_LDR_DATA_TABLE_ENTRY", "BaseDllName"),
    ("_PEB", "Ldr"),
    ("_PEB_LDR_DATA", "InLoadOrderModuleList"),
    ("_UNICODE_STRING", "Length"),
    ("_UNICODE_STRING", "Buffer"),
];

/// The kernel symbols the walkers and discovery use (RVAs in the profile).
pub const SYMBOLS: [&str; 5] = [
    "PsActiveProcessHead",
    "PsLoadedModuleList",
    "PsInitialSystemProcess",
    "NtBuildNumber",
    "KiSystemCall64",
];

/// Structure offsets, read once from the profile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Offsets {
    /// `_EPROCESS.ActiveProcessLinks`.
    pub eprocess_links: u64,
    /// `_EPROCESS.UniqueProcessId`.
    pub eprocess_pid: u64,
    /// `_EPROCESS.InheritedFromUniqueProcessId`.
    pub eprocess_ppid: u64,
    /// `_EPROCESS.ImageFileName` (15 bytes).
    pub eprocess_name: u64,
    /// `_EPROCESS.Peb`.
    pub eprocess_peb: u64,
    /// `_EPROCESS.Pcb.DirectoryTableBase`.
    pub dtb: u64,
    /// `_EPROCESS.Pcb.UserDirectoryTableBase` (KVA shadow; Windows 10 1803 and later).
    pub user_dtb: Option<u64>,
    /// `InLoadOrderLinks` of the kernel's loader entries (`_KLDR_DATA_TABLE_ENTRY`, or
    /// `_LDR_DATA_TABLE_ENTRY` on kernels whose profile lacks the former).
    pub kldr_links: u64,
    /// `DllBase` of a kernel loader entry.
    pub kldr_base: u64,
    /// `SizeOfImage` of a kernel loader entry.
    pub kldr_size: u64,
    /// `BaseDllName` of a kernel loader entry.
    pub kldr_name: u64,
    /// `_LDR_DATA_TABLE_ENTRY.InLoadOrderLinks` (user mode).
    pub ldr_links: u64,
    /// `_LDR_DATA_TABLE_ENTRY.DllBase`.
    pub ldr_base: u64,
    /// `_LDR_DATA_TABLE_ENTRY.SizeOfImage`.
    pub ldr_size: u64,
    /// `_LDR_DATA_TABLE_ENTRY.BaseDllName`.
    pub ldr_name: u64,
    /// `_PEB.Ldr`.
    pub peb_ldr: u64,
    /// `_PEB_LDR_DATA.InLoadOrderModuleList`.
    pub peb_ldr_list: u64,
    /// `_UNICODE_STRING.Length`.
    pub ustr_len: u64,
    /// `_UNICODE_STRING.Buffer`.
    pub ustr_buffer: u64,
}

impl Offsets {
    /// Read every offset from `types`.
    ///
    /// # Errors
    /// [`Error::MissingField`] naming the first missing field.
    pub fn from_types(types: &dyn TypeSource) -> Result<Offsets> {
        let f = |t: &str, p: &str| types.require(t, p);
        let kldr = if types.field("_KLDR_DATA_TABLE_ENTRY", "DllBase").is_some() {
            "_KLDR_DATA_TABLE_ENTRY"
        } else {
            "_LDR_DATA_TABLE_ENTRY"
        };
        Ok(Offsets {
            eprocess_links: f("_EPROCESS", "ActiveProcessLinks")?,
            eprocess_pid: f("_EPROCESS", "UniqueProcessId")?,
            eprocess_ppid: f("_EPROCESS", "InheritedFromUniqueProcessId")?,
            eprocess_name: f("_EPROCESS", "ImageFileName")?,
            eprocess_peb: f("_EPROCESS", "Peb")?,
            dtb: f("_EPROCESS", "Pcb.DirectoryTableBase")?,
            user_dtb: types
                .field("_EPROCESS", "Pcb.UserDirectoryTableBase")
                .map(|x| x.offset),
            kldr_links: f(kldr, "InLoadOrderLinks")?,
            kldr_base: f(kldr, "DllBase")?,
            kldr_size: f(kldr, "SizeOfImage")?,
            kldr_name: f(kldr, "BaseDllName")?,
            ldr_links: f("_LDR_DATA_TABLE_ENTRY", "InLoadOrderLinks")?,
            ldr_base: f("_LDR_DATA_TABLE_ENTRY", "DllBase")?,
            ldr_size: f("_LDR_DATA_TABLE_ENTRY", "SizeOfImage")?,
            ldr_name: f("_LDR_DATA_TABLE_ENTRY", "BaseDllName")?,
            peb_ldr: f("_PEB", "Ldr")?,
            peb_ldr_list: f("_PEB_LDR_DATA", "InLoadOrderModuleList")?,
            ustr_len: f("_UNICODE_STRING", "Length")?,
            ustr_buffer: f("_UNICODE_STRING", "Buffer")?,
        })
    }
}

/// A Windows kernel found in guest memory, with its profile.
pub struct Windows {
    info: WindowsInfo,
    offsets: Offsets,
    /// Shared with the discovery that tried it on other candidates (and with the caller's
    /// [`ProfileCache`] when it came from one).
    profile: Arc<Profile>,
    /// The loaded drivers' exports, read at the first [`Windows::driver_symbols`].
    driver_symbols: OnceLock<DriverSymbols>,
}

impl std::fmt::Debug for Windows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Windows")
            .field("info", &self.info)
            .field("types", &self.profile.types.source_name())
            .finish()
    }
}

/// The profile as resolved: loaded already; to be picked by the kernel's GUID from a
/// directory (through a cache: the caller's, or one for this discovery so that a file is parsed
/// once whatever the number of candidates); or one file, taken from the caller's cache if it
/// holds the kernel's GUID and age made from this file as it is, else parsed at the first
/// candidate (then `Loaded`).
enum Pending<'c> {
    Loaded(Arc<Profile>, Option<(String, u32)>),
    Directory(PathBuf, &'c ProfileCache),
    File(PathBuf, &'c ProfileCache, SourceFile),
}

/// One discovery's inputs, for searching one address space after another.
struct Search<'a, B: PhysicalMemory> {
    mem: &'a GuestMemory<B>,
    regs: &'a [Registers],
    hints: &'a Hints,
    budget: &'a Budget,
}

impl<B: PhysicalMemory> Search<'_, B> {
    /// Look for the kernel in `space`: at the given base, down from the hint addresses, then
    /// in the kernel image region; the first candidate the profile accepts wins. Rejections
    /// go to `tried`; bases already rejected (`seen`) are not tried again.
    fn in_space(
        &self,
        space: AddressSpace,
        root: &RootSource,
        pending: &mut Pending,
        tried: &mut Vec<String>,
        seen: &mut Vec<u64>,
    ) -> Result<Option<Windows>> {
        let (mem, hints, budget) = (self.mem, self.hints, self.budget);
        let mut hint_vas: Vec<(Gva, String)> = Vec::new();
        if let Some(h) = hints.ps_active_process_head {
            hint_vas.push((h, "PsActiveProcessHead".into()));
        }
        if let Some(h) = hints.ps_loaded_module_list {
            hint_vas.push((h, "PsLoadedModuleList".into()));
        }
        for (i, r) in self.regs.iter().enumerate() {
            if is_kernel_va(r.msr_lstar) {
                hint_vas.push((Gva(r.msr_lstar), format!("vCPU {i} MSR_LSTAR")));
            }
            if is_kernel_va(r.rip) && r.cpl() == 0 {
                hint_vas.push((Gva(r.rip), format!("vCPU {i} rip")));
            }
        }
        // One scan per 2 MiB: vCPUs in the same kernel code share hints.
        let mut seen_hint = std::collections::HashSet::new();
        hint_vas.retain(|(va, _)| seen_hint.insert(va.0 >> 21));
        let mut candidates: Vec<Candidate> = Vec::new();
        if let Some(base) = hints.kernel_base {
            match probe_kernel(mem, space, base, budget) {
                Ok(Some(c)) => candidates.push(Candidate {
                    found_by: FoundBy::GivenBase,
                    ..c
                }),
                Ok(None) => tried.push(format!("{base}: not an NT kernel image")),
                Err(e) => tried.push(format!("{base}: {e}")),
            }
        }
        for (va, what) in hint_vas {
            if let Some(c) = scan_down(mem, space, va, &what, budget) {
                candidates.push(c);
            }
        }
        let mut try_candidates = |cands: Vec<Candidate>,
                                  pending: &mut Pending,
                                  tried: &mut Vec<String>|
         -> Result<Option<Windows>> {
            for c in cands {
                if seen.contains(&c.base.0) {
                    continue;
                }
                seen.push(c.base.0);
                let profile_file = matches!(pending, Pending::File(..));
                match Windows::accept(mem, c, root, pending) {
                    Ok(w) => return Ok(Some(w)),
                    Err(e @ Error::Io { .. }) => return Err(e),
                    // The one profile file given cannot be read: no candidate can use it.
                    Err(e @ Error::Malformed { .. }) if profile_file => return Err(e),
                    // The reason alone: the final error says which kernel was not found
                    // where, once (not "could not find a Windows kernel" inside itself).
                    Err(Error::OsNotFound { reason, .. }) => tried.push(reason),
                    Err(e) => tried.push(e.to_string()),
                }
            }
            Ok(None)
        };
        if let Some(w) = try_candidates(candidates, pending, tried)? {
            return Ok(Some(w));
        }
        let scanned = region_scan(mem, space, budget);
        try_candidates(scanned, pending, tried)
    }
}

/// A kernel image candidate.
struct Candidate {
    base: Gva,
    space: AddressSpace,
    size_of_image: u32,
    codeview: Option<CodeView>,
    found_by: FoundBy,
}

impl Windows {
    /// Find the kernel and load its profile. `regs` are the vCPUs' registers (a live domain's,
    /// a snapshot's); [`Windows::discover_with`] takes extra [`Hints`].
    ///
    /// # Errors
    /// [`Error::OsNotFound`] saying what was tried (and, for a profile that does not match,
    /// which PDB GUID and age are needed); profile loading errors.
    pub fn discover<B: PhysicalMemory>(
        mem: &GuestMemory<B>,
        regs: &[Registers],
        profile: WindowsProfile,
    ) -> Result<Windows> {
        Self::discover_with(mem, regs, profile, &Hints::default())
    }

    /// [`Windows::discover`] with hints (a crash dump header's values, a known base).
    ///
    /// # Errors
    /// As [`Windows::discover`].
    pub fn discover_with<B: PhysicalMemory>(
        mem: &GuestMemory<B>,
        regs: &[Registers],
        profile: WindowsProfile,
        hints: &Hints,
    ) -> Result<Windows> {
        Self::discover_inner(mem, regs, profile, hints, None)
    }

    /// [`Windows::discover_with`] taking the profile from `cache` when it holds the kernel's
    /// PDB GUID and age: from memory (another guest of this process), or from its directory (a
    /// cache file written by an earlier run: no ISF is decompressed or parsed, no PDB read).
    /// For [`WindowsProfile::Isf`] (one file) only a profile made from that file, as it is now
    /// (path, length, modification time), is taken, and the file is parsed only when there is
    /// none; for [`WindowsProfile::Directory`] the GUID and age decide. Otherwise the profile
    /// is found and parsed as without a cache, once, and kept in the cache (a file's only
    /// under its own GUID and age). A profile from the directory holds only what the walkers
    /// read ([`PROFILE_WANTED`]: processes, modules, DLLs, processors), so [`Windows::symbol`]
    /// and [`Windows::types`] answer nothing else. [`WindowsProfile::Loaded`] does not use
    /// the cache.
    ///
    /// # Errors
    /// As [`Windows::discover`]; a cache problem is never an error (see
    /// [`ProfileCache::rejections`]).
    pub fn discover_cached<B: PhysicalMemory>(
        mem: &GuestMemory<B>,
        regs: &[Registers],
        profile: WindowsProfile,
        hints: &Hints,
        cache: &ProfileCache,
    ) -> Result<Windows> {
        Self::discover_inner(mem, regs, profile, hints, Some(cache))
    }

    fn discover_inner<B: PhysicalMemory>(
        mem: &GuestMemory<B>,
        regs: &[Registers],
        profile: WindowsProfile,
        hints: &Hints,
        cache: Option<&ProfileCache>,
    ) -> Result<Windows> {
        let image = mem.backend().name().to_owned();
        let not_found = |reason: String| Error::OsNotFound {
            os: "Windows",
            image: image.clone(),
            reason,
        };
        let local = ProfileCache::in_memory();
        let mut pending = match profile {
            WindowsProfile::Isf(path) if cache.is_some() => {
                let file = SourceFile::of(&path)?;
                Pending::File(path, cache.unwrap_or(&local), file)
            }
            WindowsProfile::Isf(path) => {
                let (profile, id) = load_file(&path)?;
                Pending::Loaded(Arc::new(profile), id)
            }
            WindowsProfile::Loaded(p) => Pending::Loaded(Arc::new(p), None),
            WindowsProfile::Directory(dir) => Pending::Directory(dir, cache.unwrap_or(&local)),
        };

        // Address spaces to look in: the hint's, then every vCPU's (deduplicated).
        let mut spaces: Vec<(AddressSpace, RootSource)> = Vec::new();
        if let Some(dtb) = hints.directory_table_base {
            spaces.push((
                AddressSpace::from_cr3(dtb, PagingMode::Level4),
                RootSource::Hint,
            ));
        }
        for (i, r) in regs.iter().enumerate() {
            if !r.has_paging_state() {
                continue;
            }
            let s = AddressSpace::from_cr3(r.cr3, r.paging_mode());
            if !spaces.iter().any(|(x, _)| *x == s) {
                spaces.push((s, RootSource::Vcpu(i)));
            }
        }

        let budget = Budget::new();
        let mut tried: Vec<String> = Vec::new();
        let mut seen_bases: Vec<u64> = Vec::new();
        for (space, source) in &spaces {
            let search = Search {
                mem,
                regs,
                hints,
                budget: &budget,
            };
            if let Some(w) =
                search.in_space(*space, source, &mut pending, &mut tried, &mut seen_bases)?
            {
                return Ok(w);
            }
        }
        let mut why = Vec::new();
        if spaces.is_empty() {
            why.push(
                "registers: none (no vCPU has paging enabled and no DirectoryTableBase hint)"
                    .to_owned(),
            );
        } else {
            if tried.is_empty() {
                tried.push(format!(
                    "no x86-64 PE image naming an NT kernel PDB or exporting as ntoskrnl.exe in {:#x}..{:#x}",
                    KERNEL_REGION_START, KERNEL_REGION_END,
                ));
            }
            tried.truncate(8);
            why.push(format!(
                "registers and hints ({} page-table root(s)): {}",
                spaces.len(),
                tried.join("; ")
            ));
        }
        // Images without registers, or whose registers led nowhere: roots from memory alone.
        let known: Vec<Gpa> = spaces.iter().map(|(s, _)| s.root).collect();
        match Self::discover_registerless(mem, hints, &mut pending, &known)? {
            Ok(w) => Ok(w),
            Err(reasons) => {
                why.extend(reasons);
                Err(not_found(why.join("; ")))
            }
        }
    }

    /// The register-less fallback (see [`dtb`]): low stub, self-referencing entry, System
    /// process, each candidate searched for the kernel and verified. `Ok(Err(reasons))` names
    /// what each method tried and why it failed.
    fn discover_registerless<B: PhysicalMemory>(
        mem: &GuestMemory<B>,
        hints: &Hints,
        pending: &mut Pending,
        known: &[Gpa],
    ) -> Result<std::result::Result<Windows, Vec<String>>> {
        let backend = mem.backend();
        let mut rejected: Vec<String> = Vec::new();
        let mut reasons = Vec::new();
        let mut seen_roots: Vec<Gpa> = known.to_vec();
        let mut reasons_seen: Vec<(String, String)> = Vec::new();
        // Try one candidate: find the kernel in its space, check the profile, walk the list.
        let mut try_root = |c: RootCandidate,
                            pending: &mut Pending,
                            rejected: &mut Vec<String>|
         -> Result<Option<Windows>> {
            if seen_roots.contains(&c.root) {
                rejected.push(format!(
                    "{} ({}): already searched (a register's, a hint's or an earlier candidate's root)",
                    c.root, c.source
                ));
                return Ok(None);
            }
            seen_roots.push(c.root);
            let space = AddressSpace {
                root: c.root,
                mode: PagingMode::Level4,
            };
            let budget = Budget::new();
            let search = Search {
                mem,
                regs: &[],
                hints,
                budget: &budget,
            };
            let mut tried = Vec::new();
            let found = search.in_space(space, &c.source, pending, &mut tried, &mut Vec::new())?;
            // A kernel was seen in this root's space (and refused), or none was.
            let (why, kernel_seen) = match found {
                Some(mut w) => match dtb::verify_processes(&w, mem) {
                    Ok(_) => {
                        w.info.rejected_roots = std::mem::take(rejected);
                        return Ok(Some(w));
                    }
                    Err(e) => (e, true),
                },
                None if tried.is_empty() => {
                    ("no NT kernel image in its kernel region".to_owned(), false)
                }
                None => {
                    tried.truncate(2);
                    (tried.join("; "), true)
                }
            };
            // The same kernel behind several roots is refused for the same reason (a missing
            // profile, most often): said once, the others name the first. A root with no
            // kernel image keeps its short reason.
            match reasons_seen.iter().find(|(w, _)| kernel_seen && *w == why) {
                Some((_, first)) => rejected.push(format!("{} ({}): as {first}", c.root, c.source)),
                None => {
                    rejected.push(format!("{} ({}): {why}", c.root, c.source));
                    reasons_seen.push((why, c.root.to_string()));
                }
            }
            Ok(None)
        };

        // 1. The low stub.
        let stubs = dtb::low_stub_roots(backend);
        let n = stubs.len();
        let before = rejected.len();
        for c in stubs {
            if let Some(w) = try_root(c, pending, &mut rejected)? {
                return Ok(Ok(w));
            }
        }
        reasons.push(if n == 0 {
            "low stub: no PROCESSOR_START_BLOCK in the first MiB".to_owned()
        } else {
            format!(
                "low stub: {n} PROCESSOR_START_BLOCK(s), rejected: {}",
                rejected[before..].join(", ")
            )
        });

        // 2. The self-referencing top-level entry.
        let mut scan = dtb::SelfRefScan::new();
        let mut n = 0;
        let before = rejected.len();
        while let Some(c) = scan.next_candidate(backend) {
            n += 1;
            if let Some(w) = try_root(c, pending, &mut rejected)? {
                return Ok(Ok(w));
            }
        }
        let limit = if scan.exhausted() {
            format!(" (stopped at the {} page budget)", dtb::MAX_SELF_REF_PAGES)
        } else {
            String::new()
        };
        reasons.push(if n == 0 {
            format!(
                "self-referencing PML4 entry: none in {} pages{limit}",
                scan.pages_read
            )
        } else {
            format!(
                "self-referencing PML4 entry: {n} table(s) in {} pages{limit}, rejected: {}",
                scan.pages_read,
                rejected[before..].join(", ")
            )
        });

        // 3. The System process, with the profile's _EPROCESS layout (or, for a directory,
        // each ISF's there: the kernel's GUID is not known yet).
        // One profile file (to be taken from a cache by GUID): its layout is needed before the
        // GUID is known, so it is parsed now, once, and used as loaded from here on.
        if let Pending::File(path, ..) = pending {
            let (profile, id) = load_file(&path.clone())?;
            *pending = Pending::Loaded(Arc::new(profile), id);
        }
        let layouts: Vec<Offsets> = match pending {
            Pending::Loaded(p, _) => Offsets::from_types(p.types.as_ref())
                .ok()
                .into_iter()
                .collect(),
            Pending::Directory(dir, _) => directory_layouts(dir),
            Pending::File(..) => Vec::new(),
        };
        if layouts.is_empty() {
            reasons.push(
                "System process scan: not tried (no _EPROCESS layout: the profile has none, or the directory holds no ISF file)"
                    .to_owned(),
            );
        } else {
            let mut cands: Vec<RootCandidate> = Vec::new();
            let mut pages = 0;
            for o in &layouts {
                let (found, p) = dtb::system_process_roots(backend, o);
                pages += p;
                for c in found {
                    if cands.len() < dtb::MAX_ROOT_CANDIDATES
                        && !cands.iter().any(|x| x.root == c.root)
                    {
                        cands.push(c);
                    }
                }
            }
            let n = cands.len();
            let before = rejected.len();
            for c in cands {
                if let Some(w) = try_root(c, pending, &mut rejected)? {
                    return Ok(Ok(w));
                }
            }
            let layouts = layouts.len();
            reasons.push(if n == 0 {
                format!("System process scan: no _EPROCESS named System with pid 4 in {pages} pages ({layouts} layout(s))")
            } else {
                format!(
                    "System process scan: {n} candidate(s) in {pages} pages ({layouts} layout(s)), rejected: {}",
                    rejected[before..].join(", ")
                )
            });
        }
        Ok(Err(reasons))
    }

    /// Check a candidate against the profile and build the [`Windows`].
    fn accept<B: PhysicalMemory>(
        mem: &GuestMemory<B>,
        c: Candidate,
        root: &RootSource,
        pending: &mut Pending,
    ) -> Result<Windows> {
        let reject = |reason: String| Error::OsNotFound {
            os: "Windows",
            image: mem.backend().name().to_owned(),
            reason: format!("kernel candidate at {}: {reason}", c.base),
        };
        if let Pending::File(path, cache, file) = pending {
            let key = c
                .codeview
                .as_ref()
                .and_then(|cv| ProfileKey::new(cv.pdb_name(), &cv.guid_string(), cv.age));
            let hit = key
                .as_ref()
                .and_then(|k| cache.lookup(k, PROFILE_WANTED, &check_profile, Some(file)));
            if let Some((profile, _)) = hit {
                return Self::with_profile(mem, &c, root, Arc::new(profile))
                    .map_err(|e| reject(e.to_string()));
            }
            let (profile, id) = load_file(path)?;
            // Kept only under the key it was made for (its own GUID and age).
            let profile = match key {
                Some(k)
                    if id
                        .as_ref()
                        .is_some_and(|(g, a)| g == k.guid() && *a == k.age()) =>
                {
                    cache.insert(&k, profile, PROFILE_WANTED, Some(file.clone()))
                }
                _ => profile,
            };
            *pending = Pending::Loaded(Arc::new(profile), id);
        }
        let profile = match pending {
            // Replaced by `Loaded` above; kept as an error rather than a panic.
            Pending::File(path, ..) => {
                return Err(reject(format!(
                    "the profile {} was not loaded",
                    path.display()
                )))
            }
            Pending::Loaded(p, id) => {
                if let (Some(cv), Some((guid, age))) = (&c.codeview, id.as_ref()) {
                    if !cv.guid_string().eq_ignore_ascii_case(guid) || cv.age != *age {
                        return Err(reject(format!(
                            "the kernel is {} GUID {} age {}, the profile is for GUID {guid} age {age}: use the profile for this build (Volatility3 ISF named {}-{})",
                            cv.pdb_name(),
                            cv.guid_string(),
                            cv.age,
                            cv.guid_string(),
                            cv.age
                        )));
                    }
                }
                Arc::clone(p)
            }
            Pending::Directory(dir, cache) => {
                let Some(cv) = &c.codeview else {
                    return Err(reject(
                        "its header has no CodeView record, so no profile can be chosen from a directory: pass the ISF file".into(),
                    ));
                };
                Arc::new(load_from_directory(dir, cv, cache)?)
            }
        };
        Self::with_profile(mem, &c, root, profile).map_err(|e| reject(e.to_string()))
    }

    /// Validate the profile at a candidate base.
    fn with_profile<B: PhysicalMemory>(
        mem: &GuestMemory<B>,
        c: &Candidate,
        root: &RootSource,
        profile: Arc<Profile>,
    ) -> Result<Windows> {
        let name = profile.types.source_name().to_owned();
        let offsets = Offsets::from_types(profile.types.as_ref())?;
        let sym = |n: &str| profile.symbols.get(n).map(|rva| c.base.wrapping_add(rva));
        let Some(head) = sym("PsActiveProcessHead") else {
            return Err(Error::MissingSymbol {
                symbol: "PsActiveProcessHead".into(),
                source_name: profile.symbols.source_name().into(),
                hint: String::new(),
            });
        };
        check_list_head(mem, c.space, head)?;
        let build = sym("NtBuildNumber")
            .and_then(|a| mem.read_u32(c.space, a).ok())
            .map(|b| b & 0xffff);
        // The System process's page tables are the kernel's own.
        let kernel_space = sym("PsInitialSystemProcess")
            .and_then(|a| mem.read_va(c.space, a).ok())
            .and_then(|ep| ep.checked_add(offsets.dtb))
            .and_then(|a| mem.read_u64(c.space, a).ok())
            .map(|dtb| AddressSpace::from_cr3(dtb, c.space.mode))
            .filter(|s| {
                matches!((mem.walk(*s, c.base), mem.walk(c.space, c.base)),
                (Ok(Walk::Mapped(a)), Ok(Walk::Mapped(b))) if a.gpa == b.gpa)
            })
            .unwrap_or(c.space);
        Ok(Windows {
            info: WindowsInfo {
                kernel_base: c.base,
                size_of_image: c.size_of_image,
                codeview: c.codeview.clone(),
                build,
                kernel_space,
                found_by: c.found_by.clone(),
                root_source: root.clone(),
                rejected_roots: Vec::new(),
                profile: name,
            },
            offsets,
            profile,
            driver_symbols: OnceLock::new(),
        })
    }

    /// Use a kernel whose base and page tables are known, without any search or GUID check
    /// (the list head is still checked).
    ///
    /// # Errors
    /// [`Error::MissingField`]/[`Error::MissingSymbol`] for an incomplete profile; an error
    /// when `PsActiveProcessHead` is not a list head at `base + RVA`.
    pub fn with_kernel<B: PhysicalMemory>(
        mem: &GuestMemory<B>,
        space: AddressSpace,
        base: Gva,
        profile: Profile,
    ) -> Result<Windows> {
        let pe = Pe::parse(MappedImage::new(mem, space, base, "ntoskrnl.exe")).ok();
        let codeview = pe.as_ref().and_then(|pe| pe.codeview().ok().flatten());
        let size_of_image = pe.as_ref().map_or(0, |pe| pe.headers().size_of_image);
        let c = Candidate {
            base,
            space,
            size_of_image,
            codeview,
            found_by: FoundBy::GivenBase,
        };
        Self::with_profile(mem, &c, &RootSource::Hint, Arc::new(profile))
    }

    /// What was found about the kernel.
    pub fn info(&self) -> &WindowsInfo {
        &self.info
    }

    /// The structure offsets in use.
    pub fn offsets(&self) -> &Offsets {
        &self.offsets
    }

    /// The type information in use.
    pub fn types(&self) -> &dyn TypeSource {
        self.profile.types.as_ref()
    }

    /// The profile's symbols (RVAs).
    pub fn symbols(&self) -> &SymbolTable {
        &self.profile.symbols
    }

    /// Run-time address of a kernel symbol (image base + RVA).
    pub fn symbol(&self, name: &str) -> Option<Gva> {
        GuestOs::symbol(self, name)
    }

    fn require_symbol(&self, name: &str) -> Result<Gva> {
        GuestOs::require_symbol(self, name)
    }

    /// The loaded drivers' exports and ntoskrnl's ([`DriverSymbols`]): read from guest memory
    /// at the first call (one walk of the module list, one export table per image, bounded),
    /// then kept in this handle, so symbolizing on a hot path reads no PE header again.
    /// From then on [`GuestOs::symbol_at`] and [`GuestOs::symbol`] cover them too. Drivers
    /// loaded or unloaded later are not seen: [`DriverSymbols::read`] gives a fresh copy.
    pub fn driver_symbols<B: PhysicalMemory>(&self, mem: &GuestMemory<B>) -> &DriverSymbols {
        self.driver_symbols
            .get_or_init(|| DriverSymbols::read(self, mem))
    }

    /// The driver symbols if [`Windows::driver_symbols`] has read them.
    pub fn loaded_driver_symbols(&self) -> Option<&DriverSymbols> {
        self.driver_symbols.get()
    }

    /// The kernel's PE image in memory (for exports, sections, the CodeView record).
    ///
    /// # Errors
    /// As [`Pe::parse`].
    pub fn kernel_image<'m, B: PhysicalMemory>(
        &self,
        mem: &'m GuestMemory<B>,
    ) -> Result<Pe<MappedImage<'m, B>>> {
        Pe::parse(MappedImage::new(
            mem,
            self.info.kernel_space,
            self.info.kernel_base,
            "ntoskrnl.exe",
        ))
    }

    /// Walk `PsActiveProcessHead`: every process in list order (System first). One `Result`
    /// per process; a broken link or a cycle ends the walk with an error item.
    pub fn processes<'a, B: PhysicalMemory>(
        &'a self,
        mem: &'a GuestMemory<B>,
    ) -> impl Iterator<Item = Result<Process>> + 'a {
        let head = self.require_symbol("PsActiveProcessHead");
        let links = self.offsets.eprocess_links;
        ListWalk::new(
            mem,
            self.info.kernel_space,
            head,
            "process list",
            MAX_PROCESSES,
        )
        .map(move |node| {
            node.and_then(|n| self.read_process(mem, n.wrapping_add(0u64.wrapping_sub(links))))
        })
    }

    /// Read one `_EPROCESS`.
    ///
    /// # Errors
    /// Memory errors for its fields.
    pub fn read_process<B: PhysicalMemory>(
        &self,
        mem: &GuestMemory<B>,
        eprocess: Gva,
    ) -> Result<Process> {
        let o = &self.offsets;
        let ks = self.info.kernel_space;
        let at = |off: u64| {
            eprocess
                .checked_add(off)
                .ok_or(Error::Overflow("_EPROCESS field address"))
        };
        let pid = mem.read_u64(ks, at(o.eprocess_pid)?)?;
        let ppid = mem.read_u64(ks, at(o.eprocess_ppid)?)?;
        let mut name = [0u8; 15];
        mem.read(ks, at(o.eprocess_name)?, &mut name)?;
        let peb = mem.read_u64(ks, at(o.eprocess_peb)?)?;
        let dtb = mem.read_u64(ks, at(o.dtb)?)?;
        let user_dtb = match o.user_dtb {
            Some(off) => mem.read_u64(ks, at(off)?)?,
            None => 0,
        };
        // UserDirectoryTableBase is 1 when KVA shadowing is off for the process.
        let user_root = (user_dtb > 1).then(|| cr3_to_root(user_dtb));
        Ok(Process {
            pid,
            tgid: pid,
            ppid,
            name: crate::bytes::c_string(&name),
            kernel_thread: peb == 0,
            dtb: (dtb != 0).then(|| cr3_to_root(dtb)),
            user_dtb: user_root,
            object: eprocess,
        })
    }

    /// Walk `PsLoadedModuleList`: ntoskrnl, hal and every loaded driver, in load order.
    pub fn modules<'a, B: PhysicalMemory>(
        &'a self,
        mem: &'a GuestMemory<B>,
    ) -> impl Iterator<Item = Result<Module>> + 'a {
        let head = self.require_symbol("PsLoadedModuleList");
        let o = &self.offsets;
        let ks = self.info.kernel_space;
        ListWalk::new(mem, ks, head, "kernel module list", MAX_MODULES).map(move |node| {
            node.and_then(|n| {
                let entry = n.wrapping_add(0u64.wrapping_sub(o.kldr_links));
                self.read_loader_entry(mem, ks, entry, o.kldr_base, o.kldr_size, o.kldr_name)
            })
        })
    }

    /// Walk a process's user-mode module list (`Peb->Ldr->InLoadOrderModuleList`) in its own
    /// address space: the executable first, then its DLLs in load order. Processes without a
    /// PEB or page tables (System, Registry) yield one error item.
    pub fn process_modules<'a, B: PhysicalMemory>(
        &'a self,
        mem: &'a GuestMemory<B>,
        process: &Process,
    ) -> impl Iterator<Item = Result<Module>> + 'a {
        let o = &self.offsets;
        let eprocess = process.object;
        let setup = (|| -> Result<(AddressSpace, Gva)> {
            let root = process.dtb.ok_or(Error::Corrupt {
                what: "_EPROCESS",
                addr: eprocess,
                reason: "the process has no page tables".into(),
            })?;
            let space = AddressSpace {
                root,
                mode: self.info.kernel_space.mode,
            };
            let peb = mem.read_va(
                self.info.kernel_space,
                eprocess
                    .checked_add(o.eprocess_peb)
                    .ok_or(Error::Overflow("_EPROCESS.Peb address"))?,
            )?;
            if peb.0 == 0 {
                return Err(Error::Corrupt {
                    what: "_EPROCESS",
                    addr: eprocess,
                    reason: "the process has no PEB (a kernel process)".into(),
                });
            }
            let ldr = mem.read_va(
                space,
                peb.checked_add(o.peb_ldr)
                    .ok_or(Error::Overflow("_PEB.Ldr address"))?,
            )?;
            let head = ldr
                .checked_add(o.peb_ldr_list)
                .ok_or(Error::Overflow("_PEB_LDR_DATA list address"))?;
            Ok((space, head))
        })();
        let (space, head) = match setup {
            Ok((s, h)) => (s, Ok(h)),
            Err(e) => (self.info.kernel_space, Err(e)),
        };
        ListWalk::new(mem, space, head, "process module list", MAX_MODULES).map(move |node| {
            node.and_then(|n| {
                let entry = n.wrapping_add(0u64.wrapping_sub(o.ldr_links));
                self.read_loader_entry(mem, space, entry, o.ldr_base, o.ldr_size, o.ldr_name)
            })
        })
    }

    fn read_loader_entry<B: PhysicalMemory>(
        &self,
        mem: &GuestMemory<B>,
        space: AddressSpace,
        entry: Gva,
        base_off: u64,
        size_off: u64,
        name_off: u64,
    ) -> Result<Module> {
        let at = |off: u64| {
            entry
                .checked_add(off)
                .ok_or(Error::Overflow("loader entry field address"))
        };
        let base = mem.read_va(space, at(base_off)?)?;
        let size = mem.read_u32(space, at(size_off)?)? as u64;
        let name = self.read_unicode_string(mem, space, at(name_off)?)?;
        Ok(Module {
            name,
            base,
            size,
            object: entry,
        })
    }

    /// Read a `_UNICODE_STRING` at `at` (at most [`MAX_NAME_BYTES`] bytes of it; invalid
    /// UTF-16 is replaced).
    ///
    /// # Errors
    /// Memory errors for the structure or its buffer.
    pub fn read_unicode_string<B: PhysicalMemory>(
        &self,
        mem: &GuestMemory<B>,
        space: AddressSpace,
        at: Gva,
    ) -> Result<String> {
        let len_at = at
            .checked_add(self.offsets.ustr_len)
            .ok_or(Error::Overflow("UNICODE_STRING.Length address"))?;
        let buf_at = at
            .checked_add(self.offsets.ustr_buffer)
            .ok_or(Error::Overflow("UNICODE_STRING.Buffer address"))?;
        let mut len = [0u8; 2];
        mem.read(space, len_at, &mut len)?;
        let len = (u16::from_le_bytes(len) as usize).min(MAX_NAME_BYTES) & !1;
        if len == 0 {
            return Ok(String::new());
        }
        let buffer = mem.read_va(space, buf_at)?;
        let mut raw = vec![0u8; len];
        mem.read(space, buffer, &mut raw)?;
        let units: Vec<u16> = raw
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        Ok(String::from_utf16_lossy(&units))
    }

    /// The process whose address space a CR3 value selects (PCID bits ignored; the KVA-shadow
    /// user table matches too), from an already-walked list ([`GuestOs::owner_of_cr3`]).
    pub fn owner_of_cr3<'p>(&self, processes: &'p [Process], cr3: u64) -> Option<&'p Process> {
        GuestOs::owner_of_cr3(self, processes, cr3)
    }

    /// Walk the process list and return the process owning `cr3`
    /// ([`GuestOs::process_for_cr3`]). Errors of the walk are skipped.
    pub fn process_for_cr3<B: PhysicalMemory>(
        &self,
        mem: &GuestMemory<B>,
        cr3: u64,
    ) -> Option<Process> {
        GuestOs::process_for_cr3(self, mem, cr3)
    }
}

fn profile_from_isf(isf: Isf) -> Profile {
    let symbols = isf.symbols().clone();
    Profile {
        types: Box::new(isf),
        symbols,
    }
}

fn profile_from_pdb(pdb: Pdb) -> Profile {
    let symbols = pdb.symbols().clone();
    Profile {
        types: Box::new(pdb),
        symbols,
    }
}

fn is_pdb_path(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("pdb"))
}

/// `(GUID, age)` from an ISF's `metadata.windows.pdb`.
pub fn isf_pdb_id(isf: &Isf) -> Option<(String, u32)> {
    let pdb = isf.metadata().get("windows")?.get("pdb")?;
    let guid = pdb.get("GUID")?.as_str()?.to_ascii_uppercase();
    let age = u32::try_from(pdb.get("age")?.as_u64()?).ok()?;
    Some((guid, age))
}

/// The ISF files (`.json`, `.json.xz`) of `dir`, in name order; at most 4,096 entries of the
/// directory are looked at.
pub(crate) fn isf_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .flatten()
        .take(4096)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(".json") || n.ends_with(".json.xz"))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// The distinct `_EPROCESS` layouts of the ISF files in `dir` (at most [`MAX_PROFILE_FILES`]
/// opened, in name order), for the System-process scan before the kernel's GUID is known.
fn directory_layouts(dir: &Path) -> Vec<Offsets> {
    let Ok(files) = isf_files(dir) else {
        return Vec::new();
    };
    let mut layouts: Vec<Offsets> = Vec::new();
    for path in files.iter().take(MAX_PROFILE_FILES) {
        let Some(o) = Isf::from_file(path)
            .ok()
            .and_then(|isf| Offsets::from_types(&isf).ok())
        else {
            continue;
        };
        if !layouts.iter().any(|l| {
            (l.eprocess_name, l.eprocess_pid, l.dtb, l.eprocess_links)
                == (o.eprocess_name, o.eprocess_pid, o.dtb, o.eprocess_links)
        }) {
            layouts.push(o);
        }
    }
    layouts
}

/// The fields and symbols the walkers read: what a profile cache file keeps
/// ([`Windows::discover_cached`]).
pub const PROFILE_WANTED: Wanted<'static> = Wanted {
    fields: &[&FIELDS, &CPU_FIELDS],
    symbols: &[&SYMBOLS, &CPU_SYMBOLS],
};

/// Whether a profile has what [`Windows`] needs: every required walker offset and
/// `PsActiveProcessHead` (a cache file without them is rejected, not used).
fn check_profile(profile: &Profile) -> Result<()> {
    Offsets::from_types(profile.types.as_ref())?;
    profile.symbols.require("PsActiveProcessHead")?;
    Ok(())
}

/// The profile for `cv` from `dir` ([`find_profile`]), through `cache`.
fn load_from_directory(dir: &Path, cv: &CodeView, cache: &ProfileCache) -> Result<Profile> {
    let parse = || find_profile(dir, cv).map(|(path, p)| (p, SourceFile::of(&path).ok()));
    match ProfileKey::new(cv.pdb_name(), &cv.guid_string(), cv.age) {
        Some(key) => cache
            .get_or_load(&key, PROFILE_WANTED, &check_profile, parse)
            .map(|(p, _)| p),
        None => parse().map(|(p, _)| p),
    }
}

/// Parse one profile file (a `.pdb` as a PDB, anything else as an ISF), with the PDB GUID and
/// age it is for (an ISF's when its metadata records them).
fn load_file(path: &Path) -> Result<(Profile, Option<(String, u32)>)> {
    if is_pdb_path(path) {
        let pdb = Pdb::from_file(path)?;
        let id = Some((pdb.guid().to_owned(), pdb.age()));
        Ok((profile_from_pdb(pdb), id))
    } else {
        let isf = Isf::from_file(path)?;
        let id = isf_pdb_id(&isf);
        Ok((profile_from_isf(isf), id))
    }
}

/// Find and load the profile for `cv` in `dir`: the PDB where a symbol store keeps it, or an
/// ISF. Each file is parsed at most once: the ISF whose metadata matches is the one returned
/// (with its path).
fn find_profile(dir: &Path, cv: &CodeView) -> Result<(PathBuf, Profile)> {
    let guid = cv.guid_string();
    let store = symbol_store_path(dir, cv.pdb_name(), &guid, cv.age);
    if let Some(store) = store.as_ref().filter(|p| p.is_file()) {
        return Ok((store.clone(), profile_from_pdb(Pdb::from_file(store)?)));
    }
    let (by_name, others): (Vec<PathBuf>, Vec<PathBuf>) = isf_files(dir)
        .map_err(|e| Error::io(dir, e))?
        .into_iter()
        .partition(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.to_ascii_uppercase().contains(&guid))
        });
    for path in by_name.iter().chain(others.iter().take(MAX_PROFILE_FILES)) {
        let Ok(isf) = Isf::from_file(path) else {
            continue;
        };
        if let Some((g, age)) = isf_pdb_id(&isf) {
            if g == guid && age == cv.age {
                return Ok((path.clone(), profile_from_isf(isf)));
            }
        }
    }
    Err(Error::OsNotFound {
        os: "Windows",
        image: dir.display().to_string(),
        reason: format!(
            "no profile for {} GUID {guid} age {} in this directory: no PDB at {} and no ISF {}-{guid}-{}.json.xz or other ISF with that GUID and age (the PDB is on Microsoft's symbol server under {}/{}; Volatility3's pdbconv makes an ISF from it)",
            cv.pdb_name(),
            cv.age,
            store.as_deref().unwrap_or(dir).display(),
            dir.join(cv.pdb_name().trim_end_matches(".pdb")).display(),
            cv.age,
            cv.pdb_name(),
            cv.symbol_key()
        ),
    })
}

fn is_kernel_va(va: u64) -> bool {
    va >= 0xffff_8000_0000_0000
}

/// Whether a PE at `base` is an NT kernel; the candidate when it is.
fn probe_kernel<B: PhysicalMemory>(
    mem: &GuestMemory<B>,
    space: AddressSpace,
    base: Gva,
    budget: &Budget,
) -> Result<Option<Candidate>> {
    if !budget.take_probe() {
        return Ok(None);
    }
    let pe = Pe::parse(MappedImage::new(mem, space, base, "kernel candidate"))?;
    let h = pe.headers();
    if h.machine != 0x8664 || !h.pe32_plus {
        return Ok(None);
    }
    let codeview = pe.codeview().ok().flatten();
    let is_nt = match &codeview {
        Some(cv) => NT_PDB_NAMES
            .iter()
            .any(|n| cv.pdb_name().eq_ignore_ascii_case(n)),
        None => pe
            .export_dll_name()
            .ok()
            .flatten()
            .is_some_and(|n| n.eq_ignore_ascii_case("ntoskrnl.exe")),
    };
    Ok(is_nt.then_some(Candidate {
        base,
        space,
        size_of_image: h.size_of_image,
        codeview,
        found_by: FoundBy::RegionScan,
    }))
}

/// What one discovery may spend: PE header parses and page checks, over all address spaces
/// and hints together.
struct Budget {
    probes: Cell<usize>,
    pages: Cell<usize>,
}

impl Budget {
    fn new() -> Self {
        Budget {
            probes: Cell::new(MAX_PROBES),
            pages: Cell::new(SCAN_PAGES),
        }
    }

    fn take_probe(&self) -> bool {
        let left = self.probes.get();
        self.probes.set(left.saturating_sub(1));
        left > 0
    }

    fn take_page(&self) -> bool {
        let left = self.pages.get();
        self.pages.set(left.saturating_sub(1));
        left > 0
    }
}

fn has_mz<B: PhysicalMemory>(mem: &GuestMemory<B>, space: AddressSpace, va: Gva) -> bool {
    let mut b = [0u8; 2];
    mem.read(space, va, &mut b).is_ok() && &b == b"MZ"
}

/// Scan down from `hint` for the kernel image containing it.
fn scan_down<B: PhysicalMemory>(
    mem: &GuestMemory<B>,
    space: AddressSpace,
    hint: Gva,
    what: &str,
    budget: &Budget,
) -> Option<Candidate> {
    let top = hint.0 & !0xfff;
    let bottom = top.saturating_sub(HINT_SCAN);
    let mut va = Gva(top);
    while va.0 >= bottom {
        if !budget.take_page() {
            return None;
        }
        // An unmapped upper-level entry skips its whole span (2 MiB, 1 GiB, ...) at once.
        if let Ok(Walk::NotPresent { level, .. }) = mem.translate(space, va) {
            let span = 1u64 << (12 + 9 * (u32::from(level.clamp(1, 5)) - 1));
            va = Gva((va.0 & !(span - 1)).checked_sub(0x1000)?);
            continue;
        }
        if has_mz(mem, space, va) {
            if let Ok(Some(c)) = probe_kernel(mem, space, va, budget) {
                if hint.0 - va.0 < c.size_of_image as u64 {
                    return Some(Candidate {
                        found_by: FoundBy::Hint(what.to_owned()),
                        ..c
                    });
                }
            }
        }
        va = Gva(va.0.checked_sub(0x1000)?);
    }
    None
}

/// Scan the mapped pages of the kernel image region.
fn region_scan<B: PhysicalMemory>(
    mem: &GuestMemory<B>,
    space: AddressSpace,
    budget: &Budget,
) -> Vec<Candidate> {
    let mut found = Vec::new();
    let backend = mem.backend();
    mapped_ranges(
        backend,
        space.root,
        space.mode,
        Gva(KERNEL_REGION_START),
        Gva(KERNEL_REGION_END),
        SCAN_PAGES,
        &mut |m| {
            let span = match m.size {
                PageSize::Size4K => 0x1000u64,
                PageSize::Size2M => 0x20_0000,
                PageSize::Size1G => 0x4000_0000,
            };
            let mut off = 0;
            while off < span {
                if !budget.take_page() {
                    return false;
                }
                let mut b = [0u8; 2];
                let hit = m
                    .gpa
                    .0
                    .checked_add(off)
                    .is_some_and(|pa| backend.read_physical(Gpa(pa), &mut b).is_ok())
                    && &b == b"MZ";
                if hit {
                    if let Ok(Some(c)) = probe_kernel(mem, space, Gva(m.va.0 + off), budget) {
                        found.push(c);
                        return false;
                    }
                }
                off += 0x1000;
            }
            budget.probes.get() > 0
        },
    );
    found
}

/// A list head is well formed when its `Flink` is a kernel address whose `Blink` points back.
fn check_list_head<B: PhysicalMemory>(
    mem: &GuestMemory<B>,
    space: AddressSpace,
    head: Gva,
) -> Result<()> {
    let flink = mem.read_va(space, head)?;
    // A Flink outside the kernel half is no list head: say so rather than fail to read it.
    let back = if is_kernel_va(flink.0) {
        mem.read_va(
            space,
            flink
                .checked_add(8)
                .ok_or(Error::Overflow("LIST_ENTRY.Blink address"))?,
        )?
    } else {
        Gva(0)
    };
    if !is_kernel_va(flink.0) || back != head {
        return Err(Error::Corrupt {
            what: "PsActiveProcessHead",
            addr: head,
            reason: format!(
                "not a list head (Flink {flink}, whose Blink is {back}): wrong profile or wrong base"
            ),
        });
    }
    Ok(())
}
