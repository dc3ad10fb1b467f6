//! A kernel build: what discovery learns about a Linux kernel that is the same in every guest
//! running that build (its symbols relative to `_text`, its types and the walkers' offsets),
//! and [`BuildCache`], which shares one build between the guests of a process (one `Arc`) and,
//! optionally, across runs through a directory of small files (`build_file.rs`).
//!
//! A cached build is never trusted by its name: before it is used for a guest,
//! `KernelBuild::matches` checks it against that guest's memory (the banner at the build's
//! `linux_banner` after the slide, the first and last 4 KiB of its `.BTF` section, and
//! `init_task.comm` through the build's offsets). A build that does not match is skipped and
//! the whole discovery runs.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::{Offsets, Placement, MAX_BANNER, MAX_BTF};
use crate::addr::Gva;
use crate::backend::PhysicalMemory;
use crate::mem::GuestMemory;
use crate::os::profile::{Field, SymbolTable, TypeSource};

/// The symbols a build keeps when it is written to a cache directory: what discovery, the
/// kernel facts and the process and module walks need, and nothing else.
pub(super) const WALK_SYMBOLS: &[&str] = &[
    "_text",
    "_etext",
    "_end",
    "linux_banner",
    "init_top_pgt",
    "init_level4_pgt",
    "__pgtable_l5_enabled",
    "page_offset_base",
    "init_uts_ns",
    "vmcoreinfo_data",
    "__start_BTF",
    "__stop_BTF",
    "init_task",
    "modules",
];

/// Symbols a cache entry must have (the rest of [`WALK_SYMBOLS`] are optional in a kernel).
pub(super) const REQUIRED_SYMBOLS: &[&str] = &[
    "_text",
    "linux_banner",
    "__start_BTF",
    "__stop_BTF",
    "init_task",
    "modules",
];

/// Bytes hashed at each end of the `.BTF` section when a build is checked against a guest.
pub(super) const BTF_ANCHOR: usize = 4096;

/// Most builds one [`BuildCache`] holds in memory (the oldest is dropped past this).
pub const MAX_BUILDS_IN_MEMORY: usize = 64;

pub(super) use crate::cachedir::hash64;

/// What identifies a `.BTF` section: its length, a hash of all of it, and hashes of its first
/// and last 4 KiB (checked against a guest without reading the whole section).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fingerprint {
    /// Length of the section in bytes.
    pub len: u64,
    /// Hash of the whole section.
    pub hash: u64,
    /// Hash of its first 4 KiB (or all of it, if shorter).
    pub head: u64,
    /// Hash of its last 4 KiB (or all of it, if shorter).
    pub tail: u64,
}

impl Fingerprint {
    /// The fingerprint of a `.BTF` section.
    pub fn of(data: &[u8]) -> Fingerprint {
        let n = data.len().min(BTF_ANCHOR);
        Fingerprint {
            len: data.len() as u64,
            hash: hash64(data),
            head: hash64(&data[..n]),
            tail: hash64(&data[data.len() - n..]),
        }
    }
}

/// What names a kernel build: its `linux_banner` and its `.BTF` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildIdentity {
    /// `linux_banner` (`/proc/version`): release, builder, compiler, build number and date.
    pub banner: String,
    /// The in-guest `.BTF` section's fingerprint (`None` for a build from profile files,
    /// which is never cached).
    pub btf: Option<Fingerprint>,
}

/// What discovery learned about one kernel build, shared (through an `Arc`) by every guest that
/// runs it. Addresses in [`KernelBuild::symbols`] are the table's own; a guest adds its slide.
pub struct KernelBuild {
    pub(super) identity: BuildIdentity,
    pub(super) symbols: SymbolTable,
    pub(super) types: Box<dyn TypeSource + Send + Sync>,
    pub(super) offsets: Offsets,
    complete: bool,
}

impl std::fmt::Debug for KernelBuild {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelBuild")
            .field("identity", &self.identity)
            .field("symbols", &self.symbols.len())
            .field("types", &self.types.source_name())
            .field("complete", &self.complete)
            .finish()
    }
}

impl KernelBuild {
    pub(super) fn new(
        banner: String,
        btf: Option<Fingerprint>,
        symbols: SymbolTable,
        types: Box<dyn TypeSource + Send + Sync>,
        offsets: Offsets,
        complete: bool,
    ) -> KernelBuild {
        KernelBuild {
            identity: BuildIdentity { banner, btf },
            symbols,
            types,
            offsets,
            complete,
        }
    }

    /// The build's banner and `.BTF` fingerprint.
    pub fn identity(&self) -> &BuildIdentity {
        &self.identity
    }

    /// The build's symbols (addresses as the table has them; a guest adds its slide).
    pub fn symbols(&self) -> &SymbolTable {
        &self.symbols
    }

    /// The build's types (none for a build read from a cache directory).
    pub fn types(&self) -> &dyn TypeSource {
        self.types.as_ref()
    }

    /// The structure offsets the walkers use.
    pub fn offsets(&self) -> &Offsets {
        &self.offsets
    }

    /// Whether the build has every symbol and all types (from a discovery), or only what the
    /// process and module walks need (read from a cache directory: see [`Scope`]).
    pub fn is_complete(&self) -> bool {
        self.complete
    }

    /// Offset of `name` from `_text` in this build.
    pub(super) fn rel(&self, name: &str) -> Option<u64> {
        Some(
            self.symbols
                .get(name)?
                .wrapping_sub(self.symbols.get("_text")?),
        )
    }

    /// Whether the guest whose kernel image `placement` points at runs this build: its
    /// `linux_banner` (at the build's offset from `_text`) is the build's banner, the first and
    /// last 4 KiB of its `.BTF` section hash as the build's do and have the build's length, and
    /// `init_task.comm` (through the build's offsets) is `swapper…`. A few page reads.
    pub(super) fn matches<B: PhysicalMemory>(
        &self,
        mem: &GuestMemory<B>,
        placement: &Placement,
    ) -> bool {
        self.check(mem, placement).is_some()
    }

    fn check<B: PhysicalMemory>(&self, mem: &GuestMemory<B>, p: &Placement) -> Option<()> {
        let btf = self.identity.btf?;
        let at = |name: &str| self.rel(name).and_then(|r| p.text_va.checked_add(r));
        let banner = mem
            .read_cstring(p.space, at("linux_banner")?, MAX_BANNER)
            .ok()?;
        if banner != self.identity.banner {
            return None;
        }
        let start = at("__start_BTF")?;
        let stop = at("__stop_BTF")?;
        if stop.0.checked_sub(start.0)? != btf.len || btf.len == 0 || btf.len > MAX_BTF {
            return None;
        }
        let n = (btf.len as usize).min(BTF_ANCHOR);
        let mut buf = vec![0u8; n];
        mem.read(p.space, start, &mut buf).ok()?;
        if hash64(&buf) != btf.head {
            return None;
        }
        mem.read(p.space, Gva(stop.0 - n as u64), &mut buf).ok()?;
        if hash64(&buf) != btf.tail {
            return None;
        }
        let mut comm = [0u8; 16];
        let comm_at = at("init_task")?.checked_add(self.offsets.task_comm)?;
        mem.read(p.space, comm_at, &mut comm).ok()?;
        comm.starts_with(b"swapper").then_some(())
    }
}

/// What a [`BuildCache`] may answer with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Any matching build, including one read from the cache directory, which holds only what
    /// the process and module walks, CR3 owners and [`super::KernelInfo`] need: its
    /// [`super::Linux::types`] answer no type and [`super::Linux::symbol`] only
    /// the walkers' symbols. For `pslist`-like jobs.
    Walks,
    /// Only a complete build (every symbol and all types): process detail, symbolisation,
    /// system calls, the kernel log and tracing work. A build from the directory is not used
    /// (but a complete one made in this process is).
    Full,
}

/// Counters of what a [`BuildCache`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Whole discoveries run (the cache had no build that matched).
    pub discoveries: usize,
    /// Guests answered by a build already in memory.
    pub memory_hits: usize,
    /// Guests answered by a build read from the cache directory.
    pub disk_hits: usize,
    /// Cache files read and refused: unreadable, malformed, another version, or not this
    /// guest's build.
    pub disk_rejected: usize,
    /// Cache files written.
    pub disk_written: usize,
    /// Cache files that could not be written (the run goes on without them).
    pub write_errors: usize,
}

/// Kernel builds shared between guests of one process and, with a directory, across runs.
///
/// ```no_run
/// use xenvmi::backend::snapshot::Snapshot;
/// use xenvmi::mem::GuestMemory;
/// use xenvmi::os::linux::{BuildCache, Linux, Scope};
///
/// let cache = BuildCache::from_env(); // ~/.cache/xenvmi unless XENVMI_CACHE=off
/// for image in ["a.elf", "b.elf"] {
///     let snap = Snapshot::open(image)?;
///     let regs = snap.all_registers().to_vec();
///     let mem = GuestMemory::new(snap);
///     let linux = Linux::discover_cached(&mem, &regs, &cache, Scope::Walks)?;
///     println!("{image}: {}", linux.info().release);
/// }
/// println!("{:?}", cache.stats()); // one discovery for two guests of one build
/// # Ok::<(), xenvmi::Error>(())
/// ```
#[derive(Debug, Default)]
pub struct BuildCache {
    dir: Option<PathBuf>,
    builds: Mutex<Vec<Arc<KernelBuild>>>,
    stats: Mutex<CacheStats>,
}

pub use crate::cachedir::{CACHE_DIR_ENV, CACHE_ENV};

impl BuildCache {
    /// A cache in memory only: builds are shared by the guests of this process.
    pub fn in_memory() -> BuildCache {
        BuildCache::default()
    }

    /// A cache in memory and in `dir` (created, private to the user, on first write).
    pub fn with_dir(dir: impl Into<PathBuf>) -> BuildCache {
        BuildCache {
            dir: Some(dir.into()),
            ..BuildCache::default()
        }
    }

    /// The cache the environment asks for: none on disk if [`CACHE_ENV`] is `off`/`0`/`no`;
    /// else the directory [`CACHE_DIR_ENV`] names, else `$XDG_CACHE_HOME/xenvmi`, else
    /// `$HOME/.cache/xenvmi`, else memory only.
    pub fn from_env() -> BuildCache {
        match crate::cachedir::dir_from_env() {
            Some(d) => BuildCache::with_dir(d),
            None => BuildCache::in_memory(),
        }
    }

    /// The cache directory, if any.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// What the cache has done so far.
    pub fn stats(&self) -> CacheStats {
        *lock(&self.stats)
    }

    /// The builds held in memory.
    pub fn builds(&self) -> Vec<Arc<KernelBuild>> {
        lock(&self.builds).clone()
    }

    fn count(&self, f: impl FnOnce(&mut CacheStats)) {
        f(&mut lock(&self.stats));
    }

    /// A build that matches one of the guest's placements: in memory first, then (for
    /// [`Scope::Walks`]) from the directory.
    pub(super) fn find<B: PhysicalMemory>(
        &self,
        mem: &GuestMemory<B>,
        from_regs: &[(Placement, String)],
        scope: Scope,
    ) -> Option<(Arc<KernelBuild>, Placement, String)> {
        let builds = self.builds();
        for (p, how) in from_regs {
            for b in &builds {
                if (scope == Scope::Walks || b.complete) && b.matches(mem, p) {
                    self.count(|s| s.memory_hits += 1);
                    return Some((b.clone(), *p, how.clone()));
                }
            }
        }
        if scope == Scope::Full {
            return None;
        }
        let dir = self.dir.as_deref()?;
        for (p, how) in from_regs {
            let (found, rejected) = super::build_file::load_matching(dir, mem, p);
            self.count(|s| s.disk_rejected += rejected);
            if let Some(b) = found {
                self.count(|s| s.disk_hits += 1);
                let b = self.remember(Arc::new(b));
                return Some((b, *p, how.clone()));
            }
        }
        None
    }

    /// Add a build a whole discovery made; write it to the directory if it can be cached.
    pub(super) fn insert(&self, build: KernelBuild) -> Arc<KernelBuild> {
        self.count(|s| s.discoveries += 1);
        let build = self.remember(Arc::new(build));
        if let (Some(dir), true) = (&self.dir, build.identity.btf.is_some()) {
            match super::build_file::store(dir, &build) {
                Ok(()) => self.count(|s| s.disk_written += 1),
                Err(_) => self.count(|s| s.write_errors += 1),
            }
        }
        build
    }

    /// Keep `build` in memory, replacing a build of the same identity (a complete build
    /// replaces one read from the directory).
    fn remember(&self, build: Arc<KernelBuild>) -> Arc<KernelBuild> {
        let mut builds = lock(&self.builds);
        builds.retain(|b| b.identity != build.identity);
        if builds.len() >= MAX_BUILDS_IN_MEMORY {
            builds.remove(0);
        }
        builds.push(build.clone());
        build
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The types of a build read from a cache directory: none (the walkers' offsets are stored
/// resolved). Its name says so and where the offsets came from; every question gets no answer.
pub(super) struct OffsetsOnly(pub(super) String);

impl TypeSource for OffsetsOnly {
    fn source_name(&self) -> &str {
        &self.0
    }
    fn struct_size(&self, _name: &str) -> Option<u64> {
        None
    }
    fn field(&self, _type_name: &str, _path: &str) -> Option<Field> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_ends_cover_short_sections_whole() {
        let f = Fingerprint::of(b"abc");
        assert_eq!((f.len, f.head, f.tail), (3, hash64(b"abc"), hash64(b"abc")));
        let long = vec![7u8; BTF_ANCHOR * 3];
        let f = Fingerprint::of(&long);
        assert_eq!(f.head, hash64(&long[..BTF_ANCHOR]));
        assert_eq!(f.tail, hash64(&long[2 * BTF_ANCHOR..]));
    }
}
