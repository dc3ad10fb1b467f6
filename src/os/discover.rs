//! Which OS a guest runs, and the one discovery for both: [`identify`] looks for cheap tells
//! first, so that a Windows image never pays for the Linux search (kallsyms, banner
//! placement) nor a Linux image for the Windows one (page-table root and kernel scans);
//! [`discover`] then runs only the matching OS's discovery and gives a [`Guest`].
//!
//! The tells, cheapest first (the first one found decides):
//! 1. the hints of a Windows crash dump header (`DirectoryTableBase`, the list heads);
//! 2. a vCPU's `MSR_LSTAR` (the system-call entry): in the Windows kernel image region
//!    (`KiSystemCall64`), or in the Linux kernel image map or `cpu_entry_area`
//!    (`entry_SYSCALL_64`, its KPTI trampoline). Cores written by QEMU carry no MSRs;
//! 3. the Windows x64 low stub (`PROCESSOR_START_BLOCK`) in the first MiB;
//! 4. a vCPU's page tables mapping the Linux kernel image map from a 2 MiB aligned `_text`;
//! 5. a `Linux version <digit>` string in physical memory (`linux_banner`; one memory scan,
//!    stopping at the first occurrences);
//! 6. a self-referencing top-level page-table entry (Windows), under its page budget.
//!
//! None found is [`Error::OsNotFound`] naming the image and what each check saw.

use std::path::PathBuf;

use crate::addr::Gpa;
use crate::addr::VcpuId;
use crate::backend::{PhysicalMemory, VcpuState, VmControl};
use crate::error::{Error, Result};
use crate::mem::GuestMemory;
use crate::os::guest::{Guest, OsKind};
use crate::os::linux::{self, BuildCache, Linux, ProfileSource, Scope};
use crate::os::profile::cache::ProfileCache;
use crate::os::windows::{self, dtb, Hints, Windows, WindowsProfile};
use crate::progress::Progress;
use crate::regs::Registers;

/// The environment variable naming the default Windows profile directory
/// ([`default_windows_profiles`]).
pub const WINDOWS_PROFILES_ENV: &str = "XENVMI_WINDOWS_PROFILES";

/// Linux `cpu_entry_area` (where `MSR_LSTAR` points under KPTI on kernels 4.15–5.x).
const CPU_ENTRY_AREA: std::ops::Range<u64> = 0xffff_fe00_0000_0000..0xffff_fe80_0000_0000;

/// What [`identify`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identification {
    /// The OS, `None` when no check found a tell.
    pub kind: Option<OsKind>,
    /// What each check saw, in the order they ran; the last one decided when `kind` is
    /// `Some`.
    pub seen: Vec<String>,
    /// The banner search's hits, when it ran: Linux discovery's first search, handed on.
    pub(crate) linux_banners: Option<Vec<Gpa>>,
}

/// [`identify`] on a running guest: its vCPUs' registers and its memory, read with it paused
/// for the few reads the tells take and resumed whatever they find (as
/// [`Linux::discover_paused`] does for the whole discovery). vCPUs whose registers cannot be
/// read are left out.
///
/// # Errors
/// Pausing or resuming the guest fails.
pub fn identify_paused<B: PhysicalMemory + VcpuState + VmControl>(
    backend: &B,
    hints: &Hints,
) -> Result<Identification> {
    backend.pause()?;
    let regs: Vec<Registers> = (0..backend.vcpu_count())
        .filter_map(|v| backend.registers(VcpuId(v)).ok())
        .collect();
    let id = identify(&GuestMemory::new(backend), &regs, hints, &mut |_| {});
    backend.resume()?;
    Ok(id)
}

/// Look for the cheap tells of each OS, the first found deciding: a crash dump header's hints,
/// a vCPU's `MSR_LSTAR` (Windows kernel image region, or Linux kernel image map /
/// `cpu_entry_area`), the Windows low stub, a vCPU's page tables mapping the Linux kernel
/// image map, a `Linux version <digit>` banner, a self-referencing top-level page-table entry
/// (`docs/windows.md`). Reads at most the
/// first MiB, each vCPU's page tables over the Linux kernel image map, one search of
/// physical memory for `Linux version ` and the self-referencing-entry scan's page budget,
/// and stops at the first tell. `progress` hears of the memory search as
/// [`linux::STAGE_BANNER`].
pub fn identify<B: PhysicalMemory>(
    mem: &GuestMemory<B>,
    regs: &[Registers],
    hints: &Hints,
    progress: &mut dyn FnMut(Progress),
) -> Identification {
    let mut seen = Vec::new();
    let found = |kind, seen| Identification {
        kind: Some(kind),
        seen,
        linux_banners: None,
    };
    // 1. A crash dump header.
    if hints.directory_table_base.is_some() || hints.ps_active_process_head.is_some() {
        seen.push("Windows: the crash dump header gives the kernel's page tables".to_owned());
        return found(OsKind::Windows, seen);
    }
    seen.push("crash dump header: none".to_owned());
    // 2. The system-call entry.
    let windows_region = windows::KERNEL_REGION_START..windows::KERNEL_REGION_END;
    let linux_map = linux::START_KERNEL_MAP..linux::KERNEL_MAP_END;
    let mut lstars = 0;
    for (i, r) in regs.iter().enumerate().filter(|(_, r)| r.msr_lstar != 0) {
        lstars += 1;
        let l = r.msr_lstar;
        if windows_region.contains(&l) {
            seen.push(format!(
                "Windows: vCPU {i} MSR_LSTAR {l:#x} is in the Windows kernel image region"
            ));
            return found(OsKind::Windows, seen);
        }
        if linux_map.contains(&l) || CPU_ENTRY_AREA.contains(&l) {
            seen.push(format!(
                "Linux: vCPU {i} MSR_LSTAR {l:#x} is in the Linux kernel image map or cpu_entry_area"
            ));
            return found(OsKind::Linux, seen);
        }
    }
    seen.push(format!(
        "MSR_LSTAR: {} vCPU(s), {lstars} with a value, none in either kernel's range",
        regs.len()
    ));
    // 3. The Windows low stub.
    if let Some(c) = dtb::low_stub_roots(mem.backend()).first() {
        seen.push(format!("Windows: {}", c.source));
        return found(OsKind::Windows, seen);
    }
    seen.push("Windows low stub: no PROCESSOR_START_BLOCK in the first MiB".to_owned());
    // 4. The Linux kernel image map in a vCPU's page tables.
    if let Some(how) = linux::image_map_tell(mem, regs) {
        seen.push(format!("Linux: {how}"));
        return found(OsKind::Linux, seen);
    }
    seen.push(format!(
        "Linux kernel image map: not mapped from a 2 MiB aligned page by any of {} vCPU(s)",
        regs.len()
    ));
    // 5. The Linux banner.
    let (tell, hits) = linux::banner_tell(mem, progress);
    if let Some(at) = tell {
        seen.push(format!("Linux: `Linux version` banner at {at}"));
        return Identification {
            kind: Some(OsKind::Linux),
            seen,
            linux_banners: Some(hits),
        };
    }
    seen.push("Linux banner: no `Linux version <digit>` string in physical memory".to_owned());
    // 6. A self-referencing top-level table.
    let mut scan = dtb::SelfRefScan::new();
    if let Some(c) = scan.next_candidate(mem.backend()) {
        seen.push(format!(
            "Windows: top-level page table at {} has a {}",
            c.root, c.source
        ));
        return found(OsKind::Windows, seen);
    }
    seen.push(format!(
        "Windows self-referencing PML4 entry: none in {} pages{}",
        scan.pages_read,
        if scan.exhausted() {
            " (page budget spent)"
        } else {
            ""
        }
    ));
    Identification {
        kind: None,
        seen,
        linux_banners: None,
    }
}

/// What [`discover`] uses for each OS. The default: Linux from the guest's own kallsyms and
/// BTF without a cache, Windows from [`default_windows_profiles`], no hints, no caches.
#[derive(Debug)]
pub struct DiscoverOptions<'c> {
    /// Where a Linux kernel's types and symbols come from.
    pub linux: ProfileSource,
    /// A kernel-build cache for [`ProfileSource::InGuest`] ([`Linux::discover_cached`]),
    /// with what it keeps on disk.
    pub build_cache: Option<(&'c BuildCache, Scope)>,
    /// A Windows kernel's profile; `None`: the directory [`default_windows_profiles`] names.
    pub windows: Option<WindowsProfile>,
    /// What a crash dump header says (also a tell: such a header is Windows').
    pub hints: Hints,
    /// A Windows profile cache ([`Windows::discover_cached`]).
    pub profile_cache: Option<&'c ProfileCache>,
}

impl Default for DiscoverOptions<'_> {
    fn default() -> Self {
        DiscoverOptions {
            linux: ProfileSource::InGuest,
            build_cache: None,
            windows: None,
            hints: Hints::default(),
            profile_cache: None,
        }
    }
}

/// The default Windows profile directory, a symbol store or a directory of ISF files:
/// `$XENVMI_WINDOWS_PROFILES` ([`WINDOWS_PROFILES_ENV`]), else `$XDG_DATA_HOME/xenvmi/windows`,
/// else `$HOME/.local/share/xenvmi/windows`; the path whether or not it exists, `None` when
/// none of these variables is set.
pub fn default_windows_profiles() -> Option<PathBuf> {
    let var = |n: &str| {
        std::env::var_os(n)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    var(WINDOWS_PROFILES_ENV)
        .or_else(|| var("XDG_DATA_HOME").map(|d| d.join("xenvmi/windows")))
        .or_else(|| var("HOME").map(|h| h.join(".local/share/xenvmi/windows")))
}

/// Find the guest's kernel, whatever its OS: [`identify`], then only that OS's discovery.
///
/// # Errors
/// [`Error::OsNotFound`] naming the image and what each check saw when neither OS is told
/// apart; [`Error::Config`] for a Windows guest with no profile given and none at the
/// default place; otherwise the errors of [`Linux::discover`] / [`Windows::discover`].
pub fn discover<B: PhysicalMemory>(
    mem: &GuestMemory<B>,
    regs: &[Registers],
    options: DiscoverOptions<'_>,
) -> Result<Guest> {
    discover_observed(mem, regs, options, &mut |_| {})
}

/// [`discover`], telling `progress` how far searches of physical memory have come (the
/// banner tell, then Linux discovery's own, as [`Linux::discover_observed`]).
///
/// # Errors
/// As [`discover`].
pub fn discover_observed<B: PhysicalMemory>(
    mem: &GuestMemory<B>,
    regs: &[Registers],
    options: DiscoverOptions<'_>,
    progress: &mut dyn FnMut(Progress),
) -> Result<Guest> {
    let id = identify(mem, regs, &options.hints, progress);
    discover_identified(mem, regs, id, options, progress)
}

/// The second half of [`discover_observed`]: only the discovery of the OS that `id` (from
/// [`identify`] with the same `mem`, `regs` and `options.hints`) names, reusing its search.
/// For a caller that decides something from the OS first (refusing a Linux-only request on
/// a Windows image) without paying for identification twice.
///
/// # Errors
/// As [`discover`].
pub fn discover_identified<B: PhysicalMemory>(
    mem: &GuestMemory<B>,
    regs: &[Registers],
    id: Identification,
    options: DiscoverOptions<'_>,
    progress: &mut dyn FnMut(Progress),
) -> Result<Guest> {
    match id.kind {
        Some(OsKind::Linux) => Ok(Guest::Linux(Linux::discover_from_tell(
            mem,
            regs,
            options.linux,
            options.build_cache,
            id.linux_banners.as_deref(),
            progress,
        )?)),
        Some(OsKind::Windows) => {
            let profile = match options.windows {
                Some(p) => p,
                None => default_windows_directory(mem, &id)?,
            };
            let windows = match options.profile_cache {
                Some(cache) => Windows::discover_cached(mem, regs, profile, &options.hints, cache)?,
                None => Windows::discover_with(mem, regs, profile, &options.hints)?,
            };
            Ok(Guest::Windows(windows))
        }
        None => Err(Error::OsNotFound {
            os: "Linux or Windows",
            image: mem.backend().name().into(),
            reason: id.seen.join("; "),
        }),
    }
}

/// The default profile directory for a Windows guest, or the error saying what to give.
fn default_windows_directory<B: PhysicalMemory>(
    mem: &GuestMemory<B>,
    id: &Identification,
) -> Result<WindowsProfile> {
    let tell = id.seen.last().map(String::as_str).unwrap_or("");
    let reason = match default_windows_profiles() {
        Some(d) if d.is_dir() => return Ok(WindowsProfile::Directory(d)),
        Some(d) => format!("the default place {} is not a directory", d.display()),
        None => {
            format!("no default place ({WINDOWS_PROFILES_ENV}, XDG_DATA_HOME and HOME are unset)")
        }
    };
    Err(Error::Config {
        what: format!("the Windows profile for {}", mem.backend().name()),
        reason: format!(
            "the image holds a Windows kernel ({tell}) but no profile was given and {reason}: \
             give a symbol-store or ISF directory, or one ISF or PDB file (ntkrnlmp.pdb)"
        ),
    })
}
