//! Linux guests: find the kernel under KASLR, load its types and symbols (from the guest's own
//! memory or from a profile), and walk tasks and modules.
//!
//! # Finding the kernel
//! 1. **From vCPU registers** (when the backend has them): walk each vCPU's page tables over the
//!    kernel image map (`__START_KERNEL_map`, the top 2 GiB); after boot the kernel unmaps all
//!    but its own image there, so the first mapped page is `_text`. A CR3 with bit 12 set is a
//!    KPTI user page table, whose kernel twin is the page below it.
//! 2. **From memory alone**: search physical memory for the `linux_banner` string, place the
//!    kernel image around it using symbol offsets, and confirm the placement by walking the
//!    kernel's own top-level page table (`init_top_pgt`), which must map `_text` back to the
//!    same physical address.
//!
//! # Profiles
//! [`ProfileSource::InGuest`] needs no files: the symbol table is decoded from the in-memory
//! kallsyms tables ([`crate::os::profile::kallsyms`]) and the types from the kernel's `.BTF`
//! section. [`ProfileSource::Isf`] and [`ProfileSource::Files`] use a Volatility3 ISF, or a BTF
//! file plus a kallsyms/System.map file. Every source yields the same results.

use std::path::PathBuf;
use std::sync::Arc;

use crate::addr::{Gpa, Gva};
use crate::backend::PhysicalMemory;
use crate::error::{Error, Result};
use crate::mem::{AddressSpace, GuestMemory, Walk};
use crate::os::list::ListWalk;
use crate::os::profile::btf::Btf;
use crate::os::profile::{kallsyms, SymbolTable, TypeSource};
use crate::os::{GuestOs, Module, Process};
use crate::progress::{Progress, Stage};
use crate::regs::{PagingMode, Registers};

mod build;
mod build_file;
mod current;
pub mod detail;
pub mod files;
pub mod kmsg;
mod live;
pub mod maps;
pub mod module_text;
pub mod modview;
mod offsets;
mod path;
mod scan;
pub mod sockets;
pub mod symbolize;
pub mod syscalls;
pub mod vmap;

/// CR3 → process is OS-neutral; re-exported here where Linux users look for it.
pub use crate::os::cr3::{Cr3Owner, Cr3Resolver};
/// Profiles are OS-neutral; re-exported here where Linux users look for them.
pub use crate::os::profile::Profile;
pub use build::{
    BuildCache, BuildIdentity, CacheStats, Fingerprint, KernelBuild, Scope, CACHE_DIR_ENV,
    CACHE_ENV, MAX_BUILDS_IN_MEMORY,
};
pub use build_file::{parse_entry, CACHE_ENTRY_VERSION, MAX_CACHE_ENTRY};
pub use current::RunningThread;
pub use module_text::{ModuleState, ModuleText, ModuleTextLayout};
pub use modview::{HiddenModule, ModuleCrossView, ModuleView};
pub use offsets::Offsets;
pub use vmap::{AreaScanCache, VmapArea};

/// `__START_KERNEL_map`: the kernel image map starts here on x86-64.
pub const START_KERNEL_MAP: u64 = 0xffff_ffff_8000_0000;
/// End of the kernel image map (modules start at `START_KERNEL_MAP + 1 GiB`).
pub const KERNEL_MAP_END: u64 = 0xffff_ffff_c000_0000;
/// `_text` without KASLR in a default x86-64 build (`__START_KERNEL`).
pub const DEFAULT_TEXT: u64 = 0xffff_ffff_8100_0000;
/// `PF_KTHREAD` in `task_struct.flags`.
pub const PF_KTHREAD: u32 = 0x0020_0000;
/// Bound on tasks walked in one list.
pub const MAX_TASKS: usize = 1 << 20;
/// Bound on modules walked.
pub const MAX_MODULES: usize = 1 << 14;
/// Most memory regions read of one `struct module` (6.4+ has 7, `enum mod_mem_type`).
pub const MAX_MODULE_REGIONS: usize = 16;
/// Bound on the size of an in-memory `.BTF` section.
pub const MAX_BTF: u64 = 64 << 20;
/// How far past `_text` the kernel image (and so kallsyms) is searched.
pub const KERNEL_IMAGE_SCAN: u64 = 128 << 20;
/// Longest `linux_banner` read (bytes; a real one is about 150).
pub const MAX_BANNER: usize = 1024;
/// Most `Linux version ` strings the banner search examines when placing the kernel without
/// registers (each costs a page-table check).
pub const MAX_BANNER_HITS: usize = 4096;

/// Discovery's progress stage ([`Linux::discover_observed`]): physical memory searched for
/// `Linux version ` strings, around which kallsyms is looked for first.
pub const STAGE_BANNER: &str = "searching memory for the kernel banner";
/// Discovery's progress stage: physical memory searched for the kallsyms tables (around
/// each banner, then everywhere).
pub const STAGE_KALLSYMS: &str = "searching memory for kallsyms";
/// Discovery's progress stage: physical memory searched again for banners, each checked
/// against the kernel's page tables (`init_top_pgt`) to place the kernel.
pub const STAGE_PLACEMENT: &str = "placing the kernel by its banner";

/// Where types and symbols come from.
#[derive(Debug)]
pub enum ProfileSource {
    /// From the guest's memory alone: kallsyms tables and the `.BTF` section.
    InGuest,
    /// A Volatility3 ISF file (`.json` or `.json.xz`).
    Isf(PathBuf),
    /// A BTF file and a kallsyms or System.map file.
    Files {
        /// Raw BTF (`/sys/kernel/btf/vmlinux`).
        btf: PathBuf,
        /// `/proc/kallsyms` or `System.map` text.
        symbols: PathBuf,
    },
    /// Already-loaded types and symbols.
    Loaded(Profile),
}

/// What was found about the running kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelInfo {
    /// `uname -r`.
    pub release: String,
    /// `linux_banner` (`/proc/version`).
    pub banner: String,
    /// Run-time address of `_text`.
    pub text_va: Gva,
    /// Physical address of `_text`.
    pub text_pa: Gpa,
    /// KASLR virtual offset (`_text - __START_KERNEL`).
    pub kaslr_offset: u64,
    /// `phys_base` (may be "negative", i.e. wrap modulo 2^64).
    pub phys_base: u64,
    /// Start of the direct map of physical memory.
    pub page_offset_base: Gva,
    /// Paging mode of the kernel.
    pub paging: PagingMode,
    /// The kernel's own page tables (`init_top_pgt` / `swapper_pg_dir`).
    pub kernel_space: AddressSpace,
    /// How the kernel was located ("vCPU 1 CR3" or "physical-memory banner search").
    pub located_by: String,
    /// Where symbols came from.
    pub symbol_source: String,
    /// Where types came from.
    pub type_source: String,
}

/// A Linux kernel found in guest memory, ready to walk.
pub struct Linux {
    info: KernelInfo,
    /// What is true of the kernel build (symbols, types, offsets), shared by every guest of
    /// the same build ([`BuildCache`]).
    build: Arc<KernelBuild>,
    /// run-time address = table address + slide.
    slide: u64,
    /// The per-CPU offset of the running task's pointer, worked out on first use
    /// ([`Linux::current_task`]: on the hot path of every traced event).
    current_offset: std::sync::OnceLock<Option<u64>>,
}

impl std::fmt::Debug for Linux {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Linux").field("info", &self.info).finish()
    }
}

/// Where discovery placed the kernel image.
#[derive(Clone, Copy, Debug)]
struct Placement {
    space: AddressSpace,
    text_va: Gva,
    text_pa: Gpa,
}

/// First mapped page of the kernel image map in `space`, if it looks like `_text`.
fn first_kernel_page<B: PhysicalMemory>(
    mem: &GuestMemory<B>,
    space: AddressSpace,
) -> Option<(Gva, Gpa)> {
    let mut found = None;
    crate::mem::mapped_ranges(
        mem.backend(),
        space.root,
        space.mode,
        Gva(START_KERNEL_MAP),
        Gva(KERNEL_MAP_END),
        1,
        &mut |r| {
            found = Some((r.va, r.gpa));
            false
        },
    );
    // _text is 2 MiB aligned (CONFIG_PHYSICAL_ALIGN) and must be backed.
    found.filter(|(va, gpa)| va.0 % (2 << 20) == 0 && mem.backend().read_physical_u64(*gpa).is_ok())
}

/// Candidate page-table roots for a vCPU, kernel one first.
fn candidate_roots(r: &Registers) -> Vec<AddressSpace> {
    let mode = r.paging_mode();
    let root = r.page_table_root();
    let mut v = Vec::new();
    if root.0 & 0x1000 != 0 {
        // KPTI: the user PGD is the second page of an 8 KiB pair.
        v.push(AddressSpace {
            root: Gpa(root.0 & !0x1000),
            mode,
        });
    }
    v.push(AddressSpace { root, mode });
    v
}

fn placements_from_registers<B: PhysicalMemory>(
    mem: &GuestMemory<B>,
    vcpus: &[Registers],
) -> Vec<(Placement, String)> {
    let mut out: Vec<(Placement, String)> = Vec::new();
    for (i, r) in vcpus.iter().enumerate() {
        if !r.has_paging_state() {
            continue;
        }
        for space in candidate_roots(r) {
            if let Some((text_va, text_pa)) = first_kernel_page(mem, space) {
                if !out
                    .iter()
                    .any(|(p, _)| p.text_va == text_va && p.text_pa == text_pa)
                {
                    out.push((
                        Placement {
                            space,
                            text_va,
                            text_pa,
                        },
                        format!("vCPU {i} CR3 {:#x}", r.cr3),
                    ));
                }
            }
        }
    }
    out
}

/// The cheap tell that a vCPU's page tables hold a Linux kernel: the first mapped page of
/// the kernel image map (`__START_KERNEL_map`) is 2 MiB aligned and backed, as `_text` is
/// ([`crate::os::identify`]). Says which vCPU and where, or `None`.
pub(crate) fn image_map_tell<B: PhysicalMemory>(
    mem: &GuestMemory<B>,
    vcpus: &[Registers],
) -> Option<String> {
    placements_from_registers(mem, vcpus)
        .into_iter()
        .next()
        .map(|(p, how)| {
            format!(
                "{how} maps the kernel image map from {} (pa {})",
                p.text_va, p.text_pa
            )
        })
}

/// Most `Linux version ` strings the first banner search keeps (the kallsyms search looks
/// around each; [`banner_tell`] runs the same search).
const BANNER_SEARCH_HITS: usize = 64;

/// The `Linux version ` strings in physical memory, at most [`BANNER_SEARCH_HITS`], in
/// address order; `progress` hears of the search as [`STAGE_BANNER`].
fn banner_search<B: PhysicalMemory>(
    mem: &GuestMemory<B>,
    progress: &mut dyn FnMut(Progress),
) -> Vec<Gpa> {
    scan::find_physical(
        mem.backend(),
        b"Linux version ",
        BANNER_SEARCH_HITS,
        progress,
        STAGE_BANNER,
    )
}

/// The cheap memory-only tell of a Linux kernel: a `Linux version ` string followed by a
/// digit (`linux_banner`, as opposed to a format string) in physical memory. Returns it (or
/// `None`) and every hit of the search, which is the kallsyms search's first step: the
/// discovery that follows takes them instead of searching again
/// ([`Linux::discover_from_tell`]).
pub(crate) fn banner_tell<B: PhysicalMemory>(
    mem: &GuestMemory<B>,
    progress: &mut dyn FnMut(Progress),
) -> (Option<Gpa>, Vec<Gpa>) {
    let hits = banner_search(mem, progress);
    let first = hits.iter().copied().find(|hit| {
        let mut c = [0u8; 1];
        hit.0
            .checked_add(b"Linux version ".len() as u64)
            .is_some_and(|at| mem.backend().read_physical(Gpa(at), &mut c).is_ok())
            && c[0].is_ascii_digit()
    });
    (first, hits)
}

/// Symbol offset from `_text` in a table.
fn rel(symbols: &SymbolTable, name: &str) -> Result<u64> {
    Ok(symbols
        .require(name)?
        .wrapping_sub(symbols.require("_text")?))
}

/// Place the kernel with no registers: find `linux_banner` in physical memory and confirm with
/// `init_top_pgt`.
fn placement_from_banner<B: PhysicalMemory>(
    mem: &GuestMemory<B>,
    symbols: &SymbolTable,
    progress: &mut dyn FnMut(Progress),
) -> Result<Placement> {
    let banner_rel = rel(symbols, "linux_banner")?;
    let pgd_rel = rel(symbols, "init_top_pgt").or_else(|_| rel(symbols, "init_level4_pgt"))?;
    let l5_rel = rel(symbols, "__pgtable_l5_enabled").ok();
    let hits = scan::find_physical(
        mem.backend(),
        b"Linux version ",
        MAX_BANNER_HITS,
        progress,
        STAGE_PLACEMENT,
    );
    let examined = hits.len();
    for hit in hits {
        let Some(text_pa) = hit.0.checked_sub(banner_rel) else {
            continue;
        };
        if text_pa % 4096 != 0 {
            continue;
        }
        let Some(pgd) = text_pa.checked_add(pgd_rel) else {
            continue;
        };
        let l5 = l5_rel
            .and_then(|r| text_pa.checked_add(r))
            .and_then(|pa| mem.backend().read_physical_u64(Gpa(pa)).ok())
            .is_some_and(|v| v as u32 != 0);
        let mode = if l5 {
            PagingMode::Level5
        } else {
            PagingMode::Level4
        };
        let space = AddressSpace {
            root: Gpa(pgd),
            mode,
        };
        if let Some((text_va, pa)) = first_kernel_page(mem, space) {
            if pa.0 == text_pa {
                return Ok(Placement {
                    space,
                    text_va,
                    text_pa: Gpa(text_pa),
                });
            }
        }
    }
    Err(Error::OsNotFound {
        os: "Linux",
        image: mem.backend().name().into(),
        reason: format!(
            "none of the {examined} `Linux version` strings examined in physical memory (at most \
             {MAX_BANNER_HITS}) lines up with a kernel page table (init_top_pgt)"
        ),
    })
}

/// Read a physical window for scanning, without copying when the backend can lend it.
/// `ranges` are the backend's `physical_ranges()` (sorted), built once by the caller.
///
/// A backend that cannot lend its memory (a snapshot read from its file, a live domain) is
/// read in growing windows, 8 MiB then doubling, for as long as `f` fails: the kallsyms tables
/// usually lie in the first megabytes of `.rodata`, and only that much is then read and held.
fn with_image<B: PhysicalMemory, R, E>(
    mem: &GuestMemory<B>,
    ranges: &[std::ops::Range<u64>],
    start: Gpa,
    len: u64,
    mut f: impl FnMut(&[u8]) -> std::result::Result<R, E>,
) -> Option<std::result::Result<R, E>> {
    // Clip to the backed memory that contains `start`: the last range starting at or below it,
    // and the ranges right after it that continue it without a gap (a backend may list
    // contiguous memory as many ranges, e.g. a dump whose pages are stored out of order).
    let i = ranges.partition_point(|r| r.start <= start.0);
    let first = i.checked_sub(1)?;
    let r = ranges.get(first)?;
    if !r.contains(&start.0) {
        return None;
    }
    let want_end = start.0.saturating_add(len.min(KERNEL_IMAGE_SCAN));
    let mut end = r.end;
    for next in &ranges[first + 1..] {
        if end >= want_end || next.start != end {
            break;
        }
        end = next.end;
    }
    let len = len.min(end - start.0).min(KERNEL_IMAGE_SCAN) as usize;
    if let Some(s) = mem.backend().physical_slice(start, len) {
        return Some(f(s));
    }
    const FIRST_WINDOW: usize = 8 << 20;
    let mut v: Vec<u8> = Vec::new();
    let mut want = FIRST_WINDOW.min(len);
    loop {
        let have = v.len();
        v.resize(want, 0);
        let at = start.checked_add(have as u64)?;
        mem.read_physical(at, &mut v[have..]).ok()?;
        let r = f(&v);
        if r.is_ok() || want == len {
            return Some(r);
        }
        want = want.saturating_mul(2).min(len);
    }
}

/// Offset from `_text` of the first no-execute mapping of the kernel image (the start of
/// `.rodata`), or 0 if the page tables do not show one within the image map.
fn first_nx_offset<B: PhysicalMemory>(mem: &GuestMemory<B>, p: &Placement) -> u64 {
    let mut off = 0;
    crate::mem::mapped_ranges(
        mem.backend(),
        p.space.root,
        p.space.mode,
        p.text_va,
        Gva(KERNEL_MAP_END),
        // Text mapped with 4 KiB pages (e.g. after ftrace/kprobes split it) has many leaves.
        1 << 16,
        &mut |r| {
            if r.flags.contains(crate::mem::PageFlags::NX) {
                off = r.va.0.saturating_sub(p.text_va.0);
                false
            } else {
                true
            }
        },
    );
    // The image is physically contiguous; keep the offset page aligned and sane.
    if off >= KERNEL_IMAGE_SCAN {
        0
    } else {
        off & !0xfff
    }
}

/// Symbols from the guest's own kallsyms tables: first inside the image each register-derived
/// placement points at, else anywhere in physical memory.
fn in_guest_symbols<B: PhysicalMemory>(
    mem: &GuestMemory<B>,
    from_regs: &[(Placement, String)],
    banner_hits: Option<&[Gpa]>,
    progress: &mut dyn FnMut(Progress),
) -> Result<(SymbolTable, Option<Placement>, String)> {
    // The backed ranges, once: a hostile dump can have hundreds of thousands.
    let ranges = mem.backend().physical_ranges();
    for (p, how) in from_regs {
        // kallsyms lives in .rodata, which the kernel maps no-execute right after its text:
        // start the scan at the first NX page of the image instead of at _text.
        let skip = first_nx_offset(mem, p);
        let start = Gpa(p.text_pa.0 + skip);
        let got = with_image(mem, &ranges, start, KERNEL_IMAGE_SCAN, |img| {
            kallsyms::find_in_image(img).and_then(|l| l.decode(img, "in-guest kallsyms"))
        });
        if let Some(Ok(t)) = got {
            if t.get("_text") == Some(p.text_va.0) {
                return Ok((t, Some(*p), how.clone()));
            }
        }
    }
    // No usable registers: kallsyms and linux_banner are both in .rodata, so scan around each
    // banner found in physical memory (bounded), then everything as a last resort.
    let mut banners: Vec<(u64, u64)> = Vec::new();
    let hits = match banner_hits {
        Some(h) => h.to_vec(),
        None => banner_search(mem, progress),
    };
    for hit in hits {
        let start = hit.0.saturating_sub(KERNEL_IMAGE_SCAN / 2) & !0xfff;
        if banners.iter().any(|&(s, l)| start >= s && start < s + l) {
            continue;
        }
        banners.push((start, KERNEL_IMAGE_SCAN));
    }
    // Last resort: all of memory, in overlapping windows (the tables span a few MB) so that a
    // backend without zero-copy access never holds more than one window. Bounded by bytes, not
    // by the number of ranges: a range too small to hold the 512-byte token index is skipped,
    // and every window after the banners' shares one search budget.
    const OVERLAP: u64 = 16 << 20;
    let everything = ranges
        .iter()
        .filter(|r| r.end - r.start >= 512)
        .flat_map(|r| {
            let mut next = Some(r.start);
            std::iter::from_fn(move || {
                let start = next.filter(|&s| s < r.end)?;
                // A range ending near 2^64 must not wrap the cursor (found by the capi
                // fuzzer: the wrapped cursor restarted below the range, never ending).
                next = start.checked_add(KERNEL_IMAGE_SCAN - OVERLAP);
                // Progress: the memory this window adds (up to the next window's start), so
                // that the whole of memory counts once.
                let fresh = (r.end - start).min(KERNEL_IMAGE_SCAN - OVERLAP);
                Some((start, KERNEL_IMAGE_SCAN, fresh))
            })
        });
    // Progress in bytes: each banner's window, then all of memory.
    let total = (banners.len() as u64)
        .saturating_mul(KERNEL_IMAGE_SCAN)
        .saturating_add(
            ranges
                .iter()
                .filter(|r| r.end - r.start >= 512)
                .fold(0u64, |t, r| t.saturating_add(r.end - r.start)),
        );
    let mut stage = Stage::new(Some(progress), STAGE_KALLSYMS, total);
    let mut budget = kallsyms::Budget::new();
    let around_banners = banners.iter().map(|&(s, l)| (s, l, l));
    for (i, (start, len, fresh)) in around_banners.chain(everything).enumerate() {
        let shared = i >= banners.len();
        let got = with_image(mem, &ranges, Gpa(start), len, |img| {
            if shared {
                kallsyms::find_in_image_within(img, &mut budget)
            } else {
                kallsyms::find_in_image(img)
            }
            .and_then(|l| l.decode(img, "in-guest kallsyms"))
        });
        if let Some(Ok(t)) = got {
            return Ok((
                t,
                None,
                "physical-memory kallsyms + banner search".to_owned(),
            ));
        }
        stage.advance(fresh);
        if budget.is_spent() {
            break;
        }
    }
    Err(Error::OsNotFound {
        os: "Linux",
        image: mem.backend().name().into(),
        reason:
            "no kernel page tables via vCPU registers, and no kallsyms tables in physical memory"
                .into(),
    })
}

/// The whole discovery of a kernel build from `source`: its symbols, where the image is, its
/// types and the walkers' offsets.
fn build_kernel<B: PhysicalMemory>(
    mem: &GuestMemory<B>,
    from_regs: &[(Placement, String)],
    source: ProfileSource,
    banner_hits: Option<&[Gpa]>,
    progress: &mut dyn FnMut(Progress),
) -> Result<(KernelBuild, Placement, String)> {
    let profile = match source {
        ProfileSource::InGuest => None,
        ProfileSource::Isf(p) => Some(Profile::from_isf(p)?),
        ProfileSource::Files { btf, symbols } => Some(Profile::from_btf_and_symbols(btf, symbols)?),
        ProfileSource::Loaded(p) => Some(p),
    };

    // 1. Symbols, and where the image is.
    let (symbols, placement, located_by, types) = match profile {
        Some(p) => (p.symbols, None, String::new(), Some(p.types)),
        None => {
            let (t, p, how) = in_guest_symbols(mem, from_regs, banner_hits, progress)?;
            (t, p, how, None)
        }
    };
    let text_sym = symbols.require("_text")?;
    let (placement, located_by) = match placement {
        Some(p) => (p, located_by),
        None => {
            // Registers: pick the placement whose banner is at the expected place.
            let banner_rel = rel(&symbols, "linux_banner")?;
            let mut chosen = None;
            for (p, how) in from_regs {
                let Some(bva) = p.text_va.checked_add(banner_rel) else {
                    continue;
                };
                let ok = mem
                    .read_cstring(p.space, bva, 14)
                    .is_ok_and(|s| s == "Linux version ");
                if ok {
                    chosen = Some((*p, how.clone()));
                    break;
                }
            }
            match chosen {
                Some(c) => c,
                None => (
                    placement_from_banner(mem, &symbols, progress)?,
                    "physical-memory banner search".to_owned(),
                ),
            }
        }
    };
    let slide = placement.text_va.0.wrapping_sub(text_sym);

    // 2. Types (the in-guest BTF is hashed: part of the build's identity).
    let mut btf_hash = None;
    let types: Box<dyn TypeSource + Send + Sync> = match types {
        Some(t) => t,
        None => {
            let start = symbols.require("__start_BTF")?.wrapping_add(slide);
            let stop = symbols.require("__stop_BTF")?.wrapping_add(slide);
            let len = stop
                .checked_sub(start)
                .filter(|&l| l > 0 && l <= MAX_BTF)
                .ok_or_else(|| Error::Corrupt {
                    what: "__start_BTF/__stop_BTF",
                    addr: Gva(start),
                    reason: format!(
                        "section length {:#x} is not in 1..={MAX_BTF:#x}",
                        stop.wrapping_sub(start)
                    ),
                })?;
            let data = mem.read_bytes(placement.space, Gva(start), len as usize)?;
            btf_hash = Some(build::Fingerprint::of(&data));
            Box::new(Btf::parse(data, "in-guest .BTF section")?)
        }
    };

    // 3. The banner names the build; the offsets are what the walkers need of its types.
    let banner_va = symbols
        .get("linux_banner")
        .map(|a| Gva(a.wrapping_add(slide)));
    let banner = read_banner(mem, placement.space, banner_va)?;
    let offsets = Offsets::resolve(types.as_ref())?;
    let build = KernelBuild::new(banner, btf_hash, symbols, types, offsets, true);
    Ok((build, placement, located_by))
}

/// `linux_banner`, which must start with `Linux version `.
fn read_banner<B: PhysicalMemory>(
    mem: &GuestMemory<B>,
    space: AddressSpace,
    at: Option<Gva>,
) -> Result<String> {
    let banner = match at {
        Some(a) => mem.read_cstring(space, a, MAX_BANNER)?,
        None => String::new(),
    };
    if !banner.starts_with("Linux version ") {
        return Err(Error::OsNotFound {
            os: "Linux",
            image: mem.backend().name().into(),
            reason: format!(
                "linux_banner does not start with `Linux version ` (found {:?})",
                truncate(&banner, 40)
            ),
        });
    }
    Ok(banner)
}

impl Linux {
    /// Find the kernel and load its profile.
    ///
    /// `vcpus` are the register sets the backend has (may be empty: then memory alone is used).
    /// Every call does the whole discovery; [`Linux::discover_cached`] reuses what an earlier
    /// one learned about the same kernel build.
    ///
    /// # Errors
    /// [`Error::OsNotFound`] if no Linux kernel is found (with what was tried);
    /// [`Error::MissingSymbol`] / [`Error::MissingField`] if the profile lacks what the walks
    /// need; I/O and format errors of profile files.
    pub fn discover<B: PhysicalMemory>(
        mem: &GuestMemory<B>,
        vcpus: &[Registers],
        source: ProfileSource,
    ) -> Result<Linux> {
        Self::discover_observed(mem, vcpus, source, &mut |_| {})
    }

    /// [`Linux::discover`], telling `progress` how far its searches of physical memory have
    /// come. Those run when no vCPU's registers place the kernel (a raw image, a LiME
    /// capture, a dump without register notes) and can take seconds on a large image; each
    /// is a stage ([`STAGE_BANNER`], [`STAGE_KALLSYMS`], [`STAGE_PLACEMENT`]) whose reports
    /// rise to its total (bytes), the last one at the total however the stage ended. With
    /// registers that place the kernel, `progress` is not called. Nothing is printed: a front
    /// end renders the reports (e.g. [`ProgressMeter`](crate::progress::ProgressMeter)).
    ///
    /// # Errors
    /// As [`Linux::discover`].
    pub fn discover_observed<B: PhysicalMemory>(
        mem: &GuestMemory<B>,
        vcpus: &[Registers],
        source: ProfileSource,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Linux> {
        Self::discover_from_tell(mem, vcpus, source, None, None, progress)
    }

    /// [`Linux::discover`] with the guest's own kallsyms and BTF ([`ProfileSource::InGuest`]),
    /// reusing a kernel build `cache` already knows: one held in memory (another guest of the
    /// same build, shared through one `Arc`), else, with [`Scope::Walks`], one from the
    /// cache's directory. A cached build is used only after it is checked against this guest
    /// (`KernelBuild::matches`); otherwise the whole discovery runs and its result is added
    /// to the cache (and written to its directory, if it has one).
    ///
    /// # Errors
    /// As [`Linux::discover`]. A cache entry that is unreadable, corrupt or of another build is
    /// never an error: it is skipped (and counted in [`BuildCache::stats`]).
    pub fn discover_cached<B: PhysicalMemory>(
        mem: &GuestMemory<B>,
        vcpus: &[Registers],
        cache: &BuildCache,
        scope: Scope,
    ) -> Result<Linux> {
        Self::discover_cached_observed(mem, vcpus, cache, scope, &mut |_| {})
    }

    /// [`Linux::discover_cached`] with progress reports, as [`Linux::discover_observed`].
    ///
    /// # Errors
    /// As [`Linux::discover`].
    pub fn discover_cached_observed<B: PhysicalMemory>(
        mem: &GuestMemory<B>,
        vcpus: &[Registers],
        cache: &BuildCache,
        scope: Scope,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Linux> {
        Self::discover_from_tell(
            mem,
            vcpus,
            ProfileSource::InGuest,
            Some((cache, scope)),
            None,
            progress,
        )
    }

    /// The discovery behind [`Linux::discover_observed`] and [`Linux::discover_cached_observed`]
    /// (`cache` used with [`ProfileSource::InGuest`] only), taking the banner search's hits
    /// when [`crate::os::identify`] already ran it ([`banner_tell`]): the same search, not
    /// run twice.
    pub(crate) fn discover_from_tell<B: PhysicalMemory>(
        mem: &GuestMemory<B>,
        vcpus: &[Registers],
        source: ProfileSource,
        cache: Option<(&BuildCache, Scope)>,
        banner_hits: Option<&[Gpa]>,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Linux> {
        let from_regs = placements_from_registers(mem, vcpus);
        match (source, cache) {
            (ProfileSource::InGuest, Some((cache, scope))) => {
                if let Some((build, placement, how)) = cache.find(mem, &from_regs, scope) {
                    return Linux::finish(mem, build, placement, how);
                }
                let (build, placement, located_by) = build_kernel(
                    mem,
                    &from_regs,
                    ProfileSource::InGuest,
                    banner_hits,
                    progress,
                )?;
                let build = cache.insert(build);
                Linux::finish(mem, build, placement, located_by)
            }
            (source, _) => {
                let (build, placement, located_by) =
                    build_kernel(mem, &from_regs, source, banner_hits, progress)?;
                Linux::finish(mem, Arc::new(build), placement, located_by)
            }
        }
    }

    /// What is true of this guest alone: the kernel's page tables, the direct map, the banner
    /// and release as this guest has them, KASLR.
    fn finish<B: PhysicalMemory>(
        mem: &GuestMemory<B>,
        build: Arc<KernelBuild>,
        placement: Placement,
        located_by: String,
    ) -> Result<Linux> {
        let symbols = &build.symbols;
        let text_sym = symbols.require("_text")?;
        let slide = placement.text_va.0.wrapping_sub(text_sym);
        let text_va = placement.text_va;
        let text_pa = placement.text_pa;
        let phys_base = text_pa
            .0
            .wrapping_sub(text_va.0.wrapping_sub(START_KERNEL_MAP));
        let sym = |n: &str| symbols.get(n).map(|a| Gva(a.wrapping_add(slide)));
        let mode = placement.space.mode;
        let kernel_space = sym("init_top_pgt")
            .or_else(|| sym("init_level4_pgt"))
            .map(|pgd| AddressSpace {
                root: Gpa(pgd.0.wrapping_sub(START_KERNEL_MAP).wrapping_add(phys_base)),
                mode,
            })
            .filter(|s| matches!(mem.walk(*s, text_va), Ok(Walk::Mapped(m)) if m.gpa == text_pa))
            .unwrap_or(placement.space);
        let page_offset_base = match sym("page_offset_base") {
            Some(a) => Gva(mem.read_u64(kernel_space, a)?),
            None => Gva(match mode {
                PagingMode::Level4 => 0xffff_8880_0000_0000,
                PagingMode::Level5 => 0xff11_0000_0000_0000,
            }),
        };
        let banner = read_banner(mem, kernel_space, sym("linux_banner"))?;
        let offsets = &build.offsets;
        let release = sym("init_uts_ns")
            .and_then(|u| {
                let off = offsets.uts_release?;
                mem.read_cstring(kernel_space, u.checked_add(off)?, 65).ok()
            })
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| banner.split_whitespace().nth(2).unwrap_or("").to_owned());
        let kaslr_offset =
            vmcoreinfo_kernel_offset(mem, kernel_space, &sym).unwrap_or(if text_sym != text_va.0 {
                text_va.0.wrapping_sub(text_sym)
            } else {
                text_va.0.wrapping_sub(DEFAULT_TEXT)
            });
        let info = KernelInfo {
            release,
            banner,
            text_va,
            text_pa,
            kaslr_offset,
            phys_base,
            page_offset_base,
            paging: mode,
            kernel_space,
            located_by,
            symbol_source: symbols.source_name().to_owned(),
            type_source: build.types.source_name().to_owned(),
        };
        Ok(Linux {
            info,
            build,
            slide,
            current_offset: std::sync::OnceLock::new(),
        })
    }

    /// The kernel build this guest runs (shared with other guests of the same build when it
    /// came from a [`BuildCache`]).
    pub fn build(&self) -> &Arc<KernelBuild> {
        &self.build
    }

    /// What was found about the kernel.
    pub fn info(&self) -> &KernelInfo {
        &self.info
    }

    /// The structure offsets in use.
    pub fn offsets(&self) -> &Offsets {
        &self.build.offsets
    }

    /// The type information in use (for structures the walkers do not cover).
    pub fn types(&self) -> &dyn TypeSource {
        self.build.types.as_ref()
    }

    /// Run-time address of a kernel symbol.
    pub fn symbol(&self, name: &str) -> Option<Gva> {
        GuestOs::symbol(self, name)
    }

    /// The symbol table (addresses as recorded; add [`Linux::slide`] for run-time ones).
    pub fn symbols(&self) -> &SymbolTable {
        &self.build.symbols
    }

    /// Difference between run-time addresses and the symbol table's.
    pub fn slide(&self) -> u64 {
        self.slide
    }

    /// Run-time address of `name`, or an error naming the symbol and the table.
    ///
    /// # Errors
    /// [`Error::MissingSymbol`].
    pub fn require_symbol(&self, name: &str) -> Result<Gva> {
        GuestOs::require_symbol(self, name)
    }

    /// Walk `init_task.tasks`: every thread-group leader except the idle task (pid 0), in list
    /// order. Each item is a `Result`, so one unreadable task does not end the walk; a broken
    /// link or a cycle ends it with an error item.
    pub fn processes<'a, B: PhysicalMemory>(
        &'a self,
        mem: &'a GuestMemory<B>,
    ) -> impl Iterator<Item = Result<Process>> + 'a {
        let head = self
            .require_symbol("init_task")
            .map(|t| t.wrapping_add(self.build.offsets.task_tasks));
        ListWalk::new(mem, self.info.kernel_space, head, "task list", MAX_TASKS).map(move |node| {
            node.and_then(|n| {
                self.read_task(
                    mem,
                    n.wrapping_add(0u64.wrapping_sub(self.build.offsets.task_tasks)),
                )
            })
        })
    }

    /// Read one `task_struct`.
    ///
    /// # Errors
    /// Memory errors for the task's fields.
    pub fn read_task<B: PhysicalMemory>(&self, mem: &GuestMemory<B>, task: Gva) -> Result<Process> {
        let o = &self.build.offsets;
        let ks = self.info.kernel_space;
        let at = |off: u64| {
            task.checked_add(off)
                .ok_or(Error::Overflow("task_struct field address"))
        };
        let pid = mem.read_u32(ks, at(o.task_pid)?)? as i32;
        let tgid = mem.read_u32(ks, at(o.task_tgid)?)? as i32;
        let mut comm = [0u8; 16];
        mem.read(ks, at(o.task_comm)?, &mut comm)?;
        let flags = mem.read_u32(ks, at(o.task_flags)?)?;
        let parent = mem.read_va(ks, at(o.task_real_parent)?)?;
        let ppid = match parent.checked_add(o.task_tgid) {
            Some(a) if parent.0 != 0 => mem.read_u32(ks, a)? as i32,
            _ => 0,
        };
        let mm = mem.read_va(ks, at(o.task_mm)?)?;
        let dtb = if mm.0 == 0 {
            None
        } else {
            let pgd = mem.read_va(
                ks,
                mm.checked_add(o.mm_pgd)
                    .ok_or(Error::Overflow("mm->pgd address"))?,
            )?;
            Some(mem.translate_mapped(ks, pgd)?)
        };
        Ok(Process {
            pid: pid.max(0) as u64,
            tgid: tgid.max(0) as u64,
            ppid: ppid.max(0) as u64,
            name: crate::bytes::c_string(&comm),
            kernel_thread: flags & PF_KTHREAD != 0,
            dtb,
            user_dtb: None,
            object: task,
        })
    }

    /// Walk the `modules` list in list order (most recently loaded first).
    pub fn modules<'a, B: PhysicalMemory>(
        &'a self,
        mem: &'a GuestMemory<B>,
    ) -> impl Iterator<Item = Result<Module>> + 'a {
        let head = self.require_symbol("modules");
        ListWalk::new(
            mem,
            self.info.kernel_space,
            head,
            "module list",
            MAX_MODULES,
        )
        .map(move |node| {
            node.and_then(|n| {
                self.read_module(
                    mem,
                    n.wrapping_add(0u64.wrapping_sub(self.build.offsets.module_list)),
                )
            })
        })
    }

    /// Read one `struct module`.
    ///
    /// # Errors
    /// Memory errors for the module's fields.
    pub fn read_module<B: PhysicalMemory>(
        &self,
        mem: &GuestMemory<B>,
        module: Gva,
    ) -> Result<Module> {
        let o = &self.build.offsets;
        let ks = self.info.kernel_space;
        let at = |off: u64| {
            module
                .checked_add(off)
                .ok_or(Error::Overflow("module field address"))
        };
        let mut name = [0u8; 64];
        let n = (o.module_name_len as usize).clamp(1, 64);
        mem.read(ks, at(o.module_name)?, &mut name[..n])?;
        let base = mem.read_va(ks, at(o.module_base)?)?;
        let mut size = 0u64;
        for &s in &o.module_sizes {
            size = size.saturating_add(mem.read_u32(ks, at(s)?)? as u64);
        }
        Ok(Module {
            name: crate::bytes::c_string(&name[..n]),
            base,
            size,
            object: module,
        })
    }

    /// The memory regions of the `struct module` at `module`, as `[start, end)` pairs: its
    /// `core_layout`/`init_layout` (≤ 6.3) or each `mem[]` region (6.4+), empty and freed
    /// ones (base or size 0) left out.
    ///
    /// # Errors
    /// Memory errors reading a region's base or size.
    pub fn module_regions<B: PhysicalMemory>(
        &self,
        mem: &GuestMemory<B>,
        module: Gva,
    ) -> Result<Vec<(u64, u64)>> {
        let o = &self.build.offsets;
        let ks = self.info.kernel_space;
        let at = |off: u64| {
            module
                .checked_add(off)
                .ok_or(Error::Overflow("module region field address"))
        };
        let mut regions = Vec::new();
        for (&b, &s) in o
            .module_bases
            .iter()
            .zip(&o.module_sizes)
            .take(MAX_MODULE_REGIONS)
        {
            let base = mem.read_u64(ks, at(b)?)?;
            let size = u64::from(mem.read_u32(ks, at(s)?)?);
            if base != 0 && size != 0 {
                if let Some(end) = base.checked_add(size) {
                    regions.push((base, end));
                }
            }
        }
        Ok(regions)
    }

    /// The process whose address space a CR3 value selects (PCID bits and the KPTI user bit
    /// ignored), from an already-walked process list ([`GuestOs::owner_of_cr3`]). A CR3 of
    /// the kernel's own page tables (an idle vCPU) matches nothing here; see
    /// [`Linux::is_kernel_cr3`].
    pub fn owner_of_cr3<'p>(&self, processes: &'p [Process], cr3: u64) -> Option<&'p Process> {
        GuestOs::owner_of_cr3(self, processes, cr3)
    }

    /// Whether a CR3 value selects the kernel's own page tables (`init_mm`).
    pub fn is_kernel_cr3(&self, cr3: u64) -> bool {
        GuestOs::is_kernel_cr3(self, cr3)
    }

    /// Walk the task list and return the process owning `cr3` ([`GuestOs::process_for_cr3`]).
    ///
    /// # Errors
    /// Errors of the task walk are skipped; none is returned.
    pub fn process_for_cr3<B: PhysicalMemory>(
        &self,
        mem: &GuestMemory<B>,
        cr3: u64,
    ) -> Option<Process> {
        GuestOs::process_for_cr3(self, mem, cr3)
    }
}

fn truncate(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// `KERNELOFFSET=` from the kernel's `vmcoreinfo_data` (set at boot when `CONFIG_CRASH_CORE`).
fn vmcoreinfo_kernel_offset<B: PhysicalMemory>(
    mem: &GuestMemory<B>,
    ks: AddressSpace,
    sym: &dyn Fn(&str) -> Option<Gva>,
) -> Option<u64> {
    let ptr = mem.read_va(ks, sym("vmcoreinfo_data")?).ok()?;
    let text = mem.read_cstring(ks, ptr, 4096).ok()?;
    let v = text.lines().find_map(|l| l.strip_prefix("KERNELOFFSET="))?;
    u64::from_str_radix(v.trim(), 16).ok()
}
