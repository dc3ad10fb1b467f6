//! A cache of parsed profiles keyed by PDB name, GUID and age ([`ProfileKey`]): in memory, one
//! shared profile per key for the guests of a process, and on disk, one small JSON file per
//! key in the cache directory the Linux kernel-build cache uses (`XENVMI_CACHE_DIR`, else
//! `$XDG_CACHE_HOME/xenvmi`, else `~/.cache/xenvmi`; `XENVMI_CACHE=off` keeps nothing on disk).
//!
//! A profile is parsed once (an ISF is xz-decompressed and its JSON parsed, a PDB read); what
//! the caller says it uses ([`Wanted`]: the fields and symbols of its walkers) is then written
//! to `windows-<pdb name>-<GUID>-<age>.json`, resolved (offsets, sizes, RVAs). The next run
//! reads that instead of the profile: no decompression, no ISF or PDB parsing. A profile read
//! from disk answers only the wanted fields and symbols; a profile held in memory is what was
//! kept (the whole profile when it was parsed in this process), so one cache serves one
//! [`Wanted`] list.
//!
//! The file is input: it is read (no symbolic link) up to [`MAX_PROFILE_ENTRY`] bytes and
//! validated whole by [`parse_profile_entry`] (format and version, a checksum, the key it is
//! for, the field list it was made for, known names only and each once, offsets and RVAs in
//! range), then by the caller's own check (the walkers' required fields and symbols). Anything
//! wrong rejects the entry with a reason ([`ProfileCache::rejections`]) and the profile is
//! parsed and the entry written again: never an error, never trusted.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::{Field, Profile, SymbolTable, SymbolTableBuilder, TypeSource};
use crate::cachedir::{checksum, hash64, open_entry, read_entry, trusted, write_entry, Envelope};
use crate::error::{Error, Result};

/// Version of the profile cache file format; a file of another version is rejected.
pub const PROFILE_ENTRY_VERSION: u32 = 1;
/// Longest profile cache file read (a Windows walkers' entry is about 3 KB).
pub const MAX_PROFILE_ENTRY: u64 = 64 << 10;
/// Most profiles one [`ProfileCache`] holds in memory (the oldest is dropped past this).
pub const MAX_PROFILES_IN_MEMORY: usize = 16;
/// Most rejection reasons kept by one [`ProfileCache`].
pub const MAX_REJECTIONS: usize = 32;
/// Most fields, and most symbols, a [`Wanted`] list (and so an entry) may name.
pub const MAX_WANTED: usize = 256;
/// Largest field offset or size an entry may give (a `_KPRCB` is about 64 KB).
pub const MAX_FIELD_OFFSET: u64 = 1 << 24;
/// Largest symbol RVA an entry may give (an image is smaller than 4 GiB).
pub const MAX_RVA: u64 = u32::MAX as u64;
/// Longest source name kept in an entry.
const MAX_SOURCE: usize = 1024;
const FORMAT: &str = "xenvmi-windows-profile";
const WHAT: &str = "xenvmi profile cache file";

/// What names a profile: the PDB's file name (lower case), its GUID (32 upper-case hex
/// digits) and its age: the symbol-server key of the image the profile describes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ProfileKey {
    pdb_name: String,
    guid: String,
    age: u32,
}

impl ProfileKey {
    /// A key, or `None` when the parts cannot name a cache file: a PDB name that is not 1–64
    /// characters of `A-Z a-z 0-9 . _ -`, a GUID that is not 32 hex digits (dashes are
    /// dropped first).
    pub fn new(pdb_name: &str, guid: &str, age: u32) -> Option<ProfileKey> {
        let name_ok = (1..=64).contains(&pdb_name.len())
            && pdb_name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
            && !pdb_name.starts_with('.');
        let guid: String = guid.chars().filter(|&c| c != '-').collect();
        let guid_ok = guid.len() == 32 && guid.bytes().all(|b| b.is_ascii_hexdigit());
        (name_ok && guid_ok).then(|| ProfileKey {
            pdb_name: pdb_name.to_ascii_lowercase(),
            guid: guid.to_ascii_uppercase(),
            age,
        })
    }

    /// The PDB file name (lower case).
    pub fn pdb_name(&self) -> &str {
        &self.pdb_name
    }

    /// The GUID (32 upper-case hex digits).
    pub fn guid(&self) -> &str {
        &self.guid
    }

    /// The age.
    pub fn age(&self) -> u32 {
        self.age
    }

    /// The cache file's name: `windows-<pdb name>-<GUID>-<age>.json`.
    pub fn file_name(&self) -> String {
        format!("windows-{}-{}-{}.json", self.pdb_name, self.guid, self.age)
    }
}

impl std::fmt::Display for ProfileKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} GUID {} age {}", self.pdb_name, self.guid, self.age)
    }
}

/// The part of a profile a caller uses, and so what a cache file keeps: `(structure, field
/// path)` pairs and symbol names, each given as a few lists (a caller's walkers each have
/// their own). An entry made for another list is stale and rejected.
#[derive(Clone, Copy, Debug)]
pub struct Wanted<'a> {
    /// `(structure, field path)` pairs, as [`TypeSource::field`] takes them.
    pub fields: &'a [&'a [(&'a str, &'a str)]],
    /// Symbol names.
    pub symbols: &'a [&'a [&'a str]],
}

impl Wanted<'_> {
    fn fields(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.fields.iter().flat_map(|l| l.iter().copied())
    }

    fn symbols(&self) -> impl Iterator<Item = &str> + '_ {
        self.symbols.iter().flat_map(|l| l.iter().copied())
    }

    /// A hash of the lists, names and order: what an entry records to say which list it was
    /// made for.
    fn hash(&self) -> u64 {
        let mut text = String::new();
        for (t, p) in self.fields() {
            text.push_str(t);
            text.push('.');
            text.push_str(p);
            text.push('\n');
        }
        text.push('\n');
        for s in self.symbols() {
            text.push_str(s);
            text.push('\n');
        }
        hash64(text.as_bytes())
    }
}

/// The profile file an entry was made from: its canonical path, length and modification
/// time. A profile named by its file ([`crate::os::windows::WindowsProfile::Isf`]) is taken
/// from the cache only if that file is still the one the entry was made from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceFile {
    /// Canonical path (symbolic links resolved).
    pub path: String,
    /// Length in bytes.
    pub len: u64,
    /// Modification time: seconds since the epoch.
    pub mtime: i64,
    /// Modification time: nanoseconds.
    pub mtime_nsec: i64,
}

impl SourceFile {
    /// The identity of the file at `path` now.
    ///
    /// # Errors
    /// [`Error::Io`] naming the file (missing, unreadable directory).
    pub fn of(path: &Path) -> Result<SourceFile> {
        use std::os::unix::fs::MetadataExt;
        let canonical = std::fs::canonicalize(path).map_err(|e| Error::io(path, e))?;
        let meta = std::fs::metadata(&canonical).map_err(|e| Error::io(path, e))?;
        Ok(SourceFile {
            path: canonical.display().to_string(),
            len: meta.len(),
            mtime: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
        })
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    format: String,
    version: u32,
    pdb: String,
    guid: String,
    age: u32,
    /// [`Wanted::hash`] of the list the entry was made for.
    wanted: u64,
    /// Where the profile was parsed from (for messages).
    source: String,
    /// The file it was parsed from, when known.
    file: Option<SourceFile>,
    /// `(structure, field path, offset, size)` of each wanted field the profile has.
    fields: Vec<(String, String, u64, Option<u64>)>,
    /// `(name, RVA)` of each wanted symbol the profile has.
    symbols: Vec<(String, u64)>,
    /// `hash64` of the compact JSON of this entry with `check` 0.
    check: u64,
}

impl Envelope for Entry {
    fn format(&self) -> &str {
        &self.format
    }
    fn version(&self) -> u32 {
        self.version
    }
    fn check_mut(&mut self) -> &mut u64 {
        &mut self.check
    }
}

/// The types of a profile read from a cache file: the wanted fields, resolved.
struct CachedTypes {
    source: String,
    fields: Vec<(String, String, Field)>,
}

impl TypeSource for CachedTypes {
    fn source_name(&self) -> &str {
        &self.source
    }
    fn struct_size(&self, _name: &str) -> Option<u64> {
        None
    }
    fn field(&self, type_name: &str, path: &str) -> Option<Field> {
        self.fields
            .iter()
            .find(|(t, p, _)| t == type_name && p == path)
            .map(|&(_, _, f)| f)
    }
}

/// The bytes of the cache file for `profile` under `key`: the fields and symbols of `wanted`
/// that the profile has, and the file it was parsed from.
///
/// # Errors
/// [`Error::Malformed`] if `wanted` is longer than [`MAX_WANTED`] or a value is out of the
/// range an entry may hold.
pub fn encode_profile_entry(
    key: &ProfileKey,
    profile: &Profile,
    wanted: Wanted,
    file: Option<&SourceFile>,
) -> Result<Vec<u8>> {
    let refuse = |why: String| Error::malformed(WHAT, key.file_name(), why);
    if wanted.fields().count() > MAX_WANTED || wanted.symbols().count() > MAX_WANTED {
        return Err(refuse(format!("more than {MAX_WANTED} fields or symbols")));
    }
    let mut fields = Vec::new();
    for (t, p) in wanted.fields() {
        if let Some(f) = profile.types.field(t, p) {
            if f.offset > MAX_FIELD_OFFSET || f.size.is_some_and(|s| s > MAX_FIELD_OFFSET) {
                return Err(refuse(format!("{t}.{p} is out of range")));
            }
            fields.push((t.to_owned(), p.to_owned(), f.offset, f.size));
        }
    }
    let mut symbols = Vec::new();
    for s in wanted.symbols() {
        if let Some(rva) = profile.symbols.get(s) {
            if rva > MAX_RVA {
                return Err(refuse(format!("`{s}` at {rva:#x} is not an RVA")));
            }
            symbols.push((s.to_owned(), rva));
        }
    }
    let mut entry = Entry {
        format: FORMAT.into(),
        version: PROFILE_ENTRY_VERSION,
        pdb: key.pdb_name.clone(),
        guid: key.guid.clone(),
        age: key.age,
        wanted: wanted.hash(),
        source: profile
            .types
            .source_name()
            .chars()
            .take(MAX_SOURCE)
            .collect(),
        file: file.filter(|f| f.path.len() <= MAX_SOURCE).cloned(),
        fields,
        symbols,
        check: 0,
    };
    entry.check = checksum(&mut entry);
    serde_json::to_vec_pretty(&entry).map_err(|e| refuse(e.to_string()))
}

/// A cache file, parsed and validated.
#[derive(Debug)]
pub struct ProfileEntry {
    /// The profile it is for.
    pub key: ProfileKey,
    /// The fields and symbols of the [`Wanted`] list it was parsed for that the original
    /// profile had; nothing else.
    pub profile: Profile,
    /// The file the profile was parsed from, when the entry records it.
    pub file: Option<SourceFile>,
}

/// Parse and validate a cache file's bytes into the key it is for and the profile it holds
/// (the fields and symbols of `wanted` the original profile had; nothing else).
///
/// # Errors
/// [`Error::Malformed`] naming what is wrong: too long, not JSON of this format and version, a
/// checksum that does not match, a key that is not one, made for another field list, a name
/// not in `wanted` or given twice, an offset, size or RVA out of range.
pub fn parse_profile_entry(bytes: &[u8], wanted: Wanted) -> Result<ProfileEntry> {
    let bad = |why: String| Error::malformed(WHAT, "entry", why);
    let e: Entry = open_entry(
        bytes,
        MAX_PROFILE_ENTRY,
        FORMAT,
        PROFILE_ENTRY_VERSION,
        WHAT,
    )?;
    let key = ProfileKey::new(&e.pdb, &e.guid, e.age)
        .filter(|k| k.pdb_name == e.pdb && k.guid == e.guid)
        .ok_or_else(|| bad("the PDB name or GUID is not one".into()))?;
    if e.wanted != wanted.hash() {
        return Err(bad(
            "made for another list of fields and symbols (another xenvmi version)".into(),
        ));
    }
    if e.source.len() > MAX_SOURCE || e.file.as_ref().is_some_and(|f| f.path.len() > MAX_SOURCE) {
        return Err(bad(format!("a source name longer than {MAX_SOURCE} bytes")));
    }
    let mut fields: Vec<(String, String, Field)> =
        Vec::with_capacity(e.fields.len().min(MAX_WANTED));
    for (t, p, offset, size) in e.fields {
        if !wanted.fields().any(|(wt, wp)| wt == t && wp == p) {
            return Err(bad(format!(
                "field {:?} is not one the entry was made for",
                format!("{t}.{p}").chars().take(80).collect::<String>()
            )));
        }
        if fields.iter().any(|(ft, fp, _)| *ft == t && *fp == p) {
            return Err(bad(format!("field {t}.{p} twice")));
        }
        if offset > MAX_FIELD_OFFSET || size.is_some_and(|s| s > MAX_FIELD_OFFSET) {
            return Err(bad(format!("field {t}.{p} out of range")));
        }
        fields.push((t, p, Field { offset, size }));
    }
    let mut b = SymbolTableBuilder::new(format!("profile cache ({})", e.source));
    let mut seen: Vec<&str> = Vec::new();
    for (name, rva) in &e.symbols {
        let Some(known) = wanted.symbols().find(|s| s == name) else {
            return Err(bad(format!(
                "symbol {:?} is not one the entry was made for",
                name.chars().take(40).collect::<String>()
            )));
        };
        if seen.contains(&known) {
            return Err(bad(format!("symbol `{known}` twice")));
        }
        seen.push(known);
        if *rva > MAX_RVA {
            return Err(bad(format!("symbol `{known}` at {rva:#x} is not an RVA")));
        }
        b.push(known, *rva, b'?');
    }
    let profile = Profile {
        types: Box::new(CachedTypes {
            source: format!("profile cache ({})", e.source),
            fields,
        }),
        symbols: b.build(),
    };
    Ok(ProfileEntry {
        key,
        profile,
        file: e.file,
    })
}

/// Where a profile from [`ProfileCache::get_or_load`] came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProfileOrigin {
    /// Parsed by the loader just now.
    Parsed,
    /// Shared with an earlier guest of this process.
    Memory,
    /// Read from the cache directory (only the wanted fields and symbols).
    Disk,
}

/// Counters of what a [`ProfileCache`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProfileCacheStats {
    /// Profiles parsed and kept (no usable entry in memory or on disk).
    pub parsed: usize,
    /// Profiles shared from memory.
    pub memory_hits: usize,
    /// Profiles read from the cache directory.
    pub disk_hits: usize,
    /// Cache files read and rejected (their reasons: [`ProfileCache::rejections`]).
    pub disk_rejected: usize,
    /// Cache files written.
    pub disk_written: usize,
    /// Cache files that could not be written (the run goes on without them).
    pub write_errors: usize,
}

struct Shared {
    key: ProfileKey,
    file: Option<SourceFile>,
    types: Arc<dyn TypeSource + Send + Sync>,
    symbols: SymbolTable,
}

impl Shared {
    fn profile(&self) -> Profile {
        Profile {
            types: Box::new(Arc::clone(&self.types)),
            symbols: self.symbols.clone(),
        }
    }
}

/// Parsed profiles shared by the guests of a process and, with a directory, across runs.
///
/// ```no_run
/// use xenvmi::backend::snapshot::Snapshot;
/// use xenvmi::mem::GuestMemory;
/// use xenvmi::os::profile::cache::ProfileCache;
/// use xenvmi::os::windows::{Hints, Windows, WindowsProfile};
///
/// let cache = ProfileCache::from_env(); // ~/.cache/xenvmi unless XENVMI_CACHE=off
/// let snap = Snapshot::open("win11.elf")?;
/// let regs = snap.all_registers().to_vec();
/// let mem = GuestMemory::new(snap);
/// let profiles = WindowsProfile::Directory("fixtures/windows-isf".into());
/// let w = Windows::discover_cached(&mem, &regs, profiles, &Hints::default(), &cache)?;
/// println!("{} ({:?})", w.info().profile, cache.stats());
/// # Ok::<(), xenvmi::Error>(())
/// ```
#[derive(Default)]
pub struct ProfileCache {
    dir: Option<PathBuf>,
    profiles: Mutex<Vec<Shared>>,
    stats: Mutex<ProfileCacheStats>,
    rejections: Mutex<Vec<String>>,
}

impl std::fmt::Debug for ProfileCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProfileCache")
            .field("dir", &self.dir)
            .field("stats", &self.stats())
            .finish()
    }
}

impl ProfileCache {
    /// A cache in memory only: a profile is shared by the guests of this process.
    pub fn in_memory() -> ProfileCache {
        ProfileCache::default()
    }

    /// A cache in memory and in `dir` (created, private to the user, on first write).
    pub fn with_dir(dir: impl Into<PathBuf>) -> ProfileCache {
        ProfileCache {
            dir: Some(dir.into()),
            ..ProfileCache::default()
        }
    }

    /// The cache the environment asks for, as the kernel-build cache reads it
    /// ([`crate::os::linux::CACHE_ENV`], [`crate::os::linux::CACHE_DIR_ENV`]).
    pub fn from_env() -> ProfileCache {
        match crate::cachedir::dir_from_env() {
            Some(d) => ProfileCache::with_dir(d),
            None => ProfileCache::in_memory(),
        }
    }

    /// The cache directory, if any.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// What the cache has done so far.
    pub fn stats(&self) -> ProfileCacheStats {
        *lock(&self.stats)
    }

    /// Why cache files were rejected (at most [`MAX_REJECTIONS`], oldest first): each names
    /// the file and the reason; the profile was parsed instead and the file written again.
    pub fn rejections(&self) -> Vec<String> {
        lock(&self.rejections).clone()
    }

    fn count(&self, f: impl FnOnce(&mut ProfileCacheStats)) {
        f(&mut lock(&self.stats));
    }

    fn reject(&self, path: &Path, why: String) {
        self.count(|s| s.disk_rejected += 1);
        let mut r = lock(&self.rejections);
        if r.len() < MAX_REJECTIONS {
            r.push(format!("{}: {why}", path.display()));
        }
    }

    /// The profile for `key`: from memory, else from the cache directory (an entry that
    /// [`parse_profile_entry`] accepts for this key and `check` accepts), else from `load`
    /// (the profile and the file it was parsed from), which is then kept ([`ProfileCache::insert`]).
    ///
    /// # Errors
    /// Only `load`'s: a cache problem is never an error (a rejected entry is recorded in
    /// [`ProfileCache::rejections`], a failed write in [`ProfileCacheStats::write_errors`]).
    pub fn get_or_load(
        &self,
        key: &ProfileKey,
        wanted: Wanted,
        check: &dyn Fn(&Profile) -> Result<()>,
        load: impl FnOnce() -> Result<(Profile, Option<SourceFile>)>,
    ) -> Result<(Profile, ProfileOrigin)> {
        if let Some(hit) = self.lookup(key, wanted, check, None) {
            return Ok(hit);
        }
        let (profile, file) = load()?;
        Ok((
            self.insert(key, profile, wanted, file),
            ProfileOrigin::Parsed,
        ))
    }

    /// The profile for `key` from memory or from the cache directory, without parsing
    /// anything; with `file`, only one made from that file as it is now. An entry that fails
    /// [`parse_profile_entry`], `check` or the `file` comparison is rejected (recorded in
    /// [`ProfileCache::rejections`]).
    pub fn lookup(
        &self,
        key: &ProfileKey,
        wanted: Wanted,
        check: &dyn Fn(&Profile) -> Result<()>,
        file: Option<&SourceFile>,
    ) -> Option<(Profile, ProfileOrigin)> {
        let in_memory = lock(&self.profiles)
            .iter()
            .find(|s| s.key == *key && file.is_none_or(|f| s.file.as_ref() == Some(f)))
            .map(Shared::profile);
        if let Some(p) = in_memory {
            self.count(|c| c.memory_hits += 1);
            return Some((p, ProfileOrigin::Memory));
        }
        let entry = self.load_file(key, wanted, check, file)?;
        self.count(|c| c.disk_hits += 1);
        let p = self.remember(key, entry.profile, entry.file);
        Some((p, ProfileOrigin::Disk))
    }

    /// Keep a profile just parsed for `key` (from `file`): in memory, and its `wanted` part
    /// in the cache directory. Returns the profile, now shared.
    pub fn insert(
        &self,
        key: &ProfileKey,
        profile: Profile,
        wanted: Wanted,
        file: Option<SourceFile>,
    ) -> Profile {
        self.count(|c| c.parsed += 1);
        if let Some(dir) = self.dir.as_deref() {
            let written = encode_profile_entry(key, &profile, wanted, file.as_ref())
                .and_then(|bytes| write_entry(dir, &key.file_name(), &bytes, WHAT));
            match written {
                Ok(()) => self.count(|c| c.disk_written += 1),
                Err(_) => self.count(|c| c.write_errors += 1),
            }
        }
        self.remember(key, profile, file)
    }

    /// The directory's entry for `key`, validated; `None` (with a rejection recorded if there
    /// was a file) otherwise.
    fn load_file(
        &self,
        key: &ProfileKey,
        wanted: Wanted,
        check: &dyn Fn(&Profile) -> Result<()>,
        file: Option<&SourceFile>,
    ) -> Option<ProfileEntry> {
        let dir = self.dir.as_deref().filter(|d| trusted(d))?;
        let path = dir.join(key.file_name());
        let bytes = match read_entry(&path, MAX_PROFILE_ENTRY, WHAT) {
            Ok(b) => b,
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                return None
            }
            Err(e) => {
                self.reject(&path, e.to_string());
                return None;
            }
        };
        let bad = |why: String| Error::malformed(WHAT, "entry", why);
        let checked = parse_profile_entry(&bytes, wanted).and_then(|e| {
            if e.key != *key {
                return Err(bad(format!("it is for {}, not {key}", e.key)));
            }
            if let Some(f) = file.filter(|&f| e.file.as_ref() != Some(f)) {
                return Err(bad(format!(
                    "it was made from {}, not from {} as it is now",
                    e.file
                        .as_ref()
                        .map_or("an unrecorded file".into(), |g| format!("{g:?}")),
                    f.path
                )));
            }
            check(&e.profile).map(|()| e)
        });
        match checked {
            Ok(e) => Some(e),
            Err(e) => {
                self.reject(&path, e.to_string());
                None
            }
        }
    }

    fn remember(&self, key: &ProfileKey, profile: Profile, file: Option<SourceFile>) -> Profile {
        let shared = Shared {
            key: key.clone(),
            file,
            types: Arc::from(profile.types),
            symbols: profile.symbols,
        };
        let out = shared.profile();
        let mut all = lock(&self.profiles);
        all.retain(|s| s.key != *key);
        if all.len() >= MAX_PROFILES_IN_MEMORY {
            all.remove(0);
        }
        all.push(shared);
        out
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_files_only_from_safe_parts() {
        let k = ProfileKey::new("NtKrnlMp.pdb", "0ce4a95c-0cd7-82a7-596b-034d8648e585", 1)
            .expect("a key");
        assert_eq!(
            k.file_name(),
            "windows-ntkrnlmp.pdb-0CE4A95C0CD782A7596B034D8648E585-1.json"
        );
        let g = "0CE4A95C0CD782A7596B034D8648E585";
        for (name, guid) in [
            ("../x.pdb", g),
            ("a/b.pdb", g),
            (".pdb", g),
            ("", g),
            ("ntkrnlmp.pdb", "0CE4"),
            ("ntkrnlmp.pdb", "0CE4A95C0CD782A7596B034D8648E58G"),
        ] {
            assert_eq!(ProfileKey::new(name, guid, 1), None, "{name:?} {guid:?}");
        }
    }
}
