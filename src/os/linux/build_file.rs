//! The on-disk form of a [`KernelBuild`]: one small JSON file per build in a cache directory,
//! named `<banner hash>-<linux_banner offset from _text>-<BTF hash>.json`, holding the
//! walkers' symbols (as offsets from `_text`, so KASLR does not matter), the resolved
//! structure offsets and the build's identity.
//!
//! A cache file is input like any other: it is opened with `O_NOFOLLOW`, read up to
//! [`MAX_CACHE_ENTRY`] bytes, and validated whole ([`parse_entry`]) before the build it
//! describes is checked against the guest (`KernelBuild::matches`). The directory, reading and
//! writing are `crate::cachedir`'s, shared with the Windows profile cache.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::build::{hash64, Fingerprint, KernelBuild, OffsetsOnly, REQUIRED_SYMBOLS, WALK_SYMBOLS};
use super::{Offsets, Placement, DEFAULT_TEXT, MAX_BANNER, MAX_BTF};
use crate::backend::PhysicalMemory;
use crate::cachedir::{checksum, open_entry, read_entry, trusted, write_entry, Envelope};
use crate::error::{Error, Result};
use crate::mem::GuestMemory;
use crate::os::profile::SymbolTableBuilder;

/// Version of the cache file format; a file of another version is ignored.
pub const CACHE_ENTRY_VERSION: u32 = 1;
/// Longest cache file read (a real one is about 2 KB).
pub const MAX_CACHE_ENTRY: u64 = 64 << 10;
/// Most directory entries examined when looking for a build.
const MAX_DIR_ENTRIES: usize = 1024;
/// Largest structure offset a cache file may give (a `task_struct` is about 10 KB).
const MAX_FIELD_OFFSET: u64 = 1 << 20;
/// Most module regions (`module_sizes`, `module_bases`).
const MAX_MODULE_REGIONS: usize = 16;
const FORMAT: &str = "xenvmi-kernel-build";
const WHAT: &str = "xenvmi kernel build cache file";

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    format: String,
    version: u32,
    banner: String,
    btf: BtfEntry,
    /// (name, offset from `_text`, kallsyms kind).
    symbols: Vec<(String, u64, u8)>,
    symbol_source: String,
    type_source: String,
    offsets: Offsets,
    /// `hash64` of the compact JSON of this entry with `check` 0: a file damaged after it
    /// was written (a flipped digit still parses) is refused.
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

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct BtfEntry {
    len: u64,
    hash: u64,
    head: u64,
    tail: u64,
}

/// The file name of a build: `<banner hash>-<banner offset>-<BTF hash>.json`.
fn file_name(banner: &str, banner_rel: u64, btf_hash: u64) -> String {
    format!(
        "{:016x}-{banner_rel:x}-{btf_hash:016x}.json",
        hash64(banner.as_bytes())
    )
}

/// The banner hash and `linux_banner` offset a file name gives.
fn parse_name(name: &str) -> Option<(u64, u64)> {
    let stem = name.strip_suffix(".json")?;
    let mut parts = stem.split('-');
    let banner = u64::from_str_radix(parts.next()?, 16).ok()?;
    let rel = u64::from_str_radix(parts.next()?, 16).ok()?;
    u64::from_str_radix(parts.next()?, 16).ok()?;
    parts.next().is_none().then_some((banner, rel))
}

/// The bytes of `build`'s cache file.
///
/// # Errors
/// [`Error::Malformed`] if the build cannot be cached (no `.BTF` fingerprint, a required
/// symbol missing).
pub(super) fn encode(build: &KernelBuild) -> Result<Vec<u8>> {
    let refuse = |why: &str| Error::malformed(WHAT, "(being written)", why.to_owned());
    let btf = build
        .identity
        .btf
        .ok_or_else(|| refuse("the build has no in-guest .BTF section"))?;
    let symbols: Vec<(String, u64, u8)> = WALK_SYMBOLS
        .iter()
        .filter_map(|&n| Some((n.to_owned(), build.rel(n)?, build.symbols.kind(n)?)))
        .collect();
    for r in REQUIRED_SYMBOLS {
        if !symbols.iter().any(|(n, _, _)| n == r) {
            return Err(refuse(&format!("the build has no `{r}`")));
        }
    }
    let mut entry = Entry {
        format: FORMAT.into(),
        version: CACHE_ENTRY_VERSION,
        banner: build.identity.banner.clone(),
        btf: BtfEntry {
            len: btf.len,
            hash: btf.hash,
            head: btf.head,
            tail: btf.tail,
        },
        symbols,
        symbol_source: build.symbols.source_name().to_owned(),
        type_source: build.types.source_name().to_owned(),
        offsets: build.offsets.clone(),
        check: 0,
    };
    entry.check = checksum(&mut entry);
    serde_json::to_vec_pretty(&entry).map_err(|e| refuse(&e.to_string()))
}

/// Parse and validate a cache file's bytes into the (incomplete) build it describes: every
/// field is checked, so what comes out is safe to check against a guest, though not yet known
/// to be that guest's build.
///
/// # Errors
/// [`Error::Malformed`] naming what is wrong: too long, not JSON of this format and version, a
/// checksum that does not match, a banner that is not one, an unknown, repeated or missing symbol, a `.BTF` length that
/// disagrees with its symbols, an offset out of range.
pub fn parse_entry(bytes: &[u8]) -> Result<KernelBuild> {
    let bad = |why: String| Error::malformed(WHAT, "entry", why);
    let e: Entry = open_entry(bytes, MAX_CACHE_ENTRY, FORMAT, CACHE_ENTRY_VERSION, WHAT)?;
    if !e.banner.starts_with("Linux version ")
        || e.banner.len() > MAX_BANNER
        || e.banner.contains('\0')
    {
        return Err(bad("the banner is not a `Linux version` banner".into()));
    }
    if e.btf.len == 0 || e.btf.len > MAX_BTF {
        return Err(bad(format!("a .BTF length of {} bytes", e.btf.len)));
    }
    if e.symbol_source.len() > 256 || e.type_source.len() > 256 {
        return Err(bad("a source name longer than 256 bytes".into()));
    }
    let mut seen: Vec<&str> = Vec::new();
    for (name, _, _) in &e.symbols {
        let Some(&known) = WALK_SYMBOLS.iter().find(|&&n| n == name) else {
            return Err(bad(format!(
                "unknown symbol {:?}",
                name.chars().take(40).collect::<String>()
            )));
        };
        if seen.contains(&known) {
            return Err(bad(format!("symbol `{known}` twice")));
        }
        seen.push(known);
    }
    let rel = |name: &str| {
        e.symbols
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|&(_, r, _)| r)
            .ok_or_else(|| bad(format!("no `{name}`")))
    };
    for r in REQUIRED_SYMBOLS {
        rel(r)?;
    }
    if rel("_text")? != 0 {
        return Err(bad("`_text` is not at offset 0 from itself".into()));
    }
    if rel("__stop_BTF")?.wrapping_sub(rel("__start_BTF")?) != e.btf.len {
        return Err(bad("__stop_BTF - __start_BTF is not the .BTF length".into()));
    }
    check_offsets(&e.offsets).map_err(bad)?;

    let mut t = SymbolTableBuilder::new(format!("kernel build cache ({})", e.symbol_source));
    for (name, r, kind) in &e.symbols {
        t.push(name, DEFAULT_TEXT.wrapping_add(*r), *kind);
    }
    Ok(KernelBuild::new(
        e.banner,
        Some(Fingerprint {
            len: e.btf.len,
            hash: e.btf.hash,
            head: e.btf.head,
            tail: e.btf.tail,
        }),
        t.build(),
        Box::new(OffsetsOnly(format!(
            "kernel build cache (walkers' offsets from the {})",
            e.type_source
        ))),
        e.offsets,
        false,
    ))
}

fn check_offsets(o: &Offsets) -> std::result::Result<(), String> {
    let single = [
        ("task_struct.tasks", o.task_tasks),
        ("task_struct.pid", o.task_pid),
        ("task_struct.tgid", o.task_tgid),
        ("task_struct.comm", o.task_comm),
        ("task_struct.flags", o.task_flags),
        ("task_struct.real_parent", o.task_real_parent),
        ("task_struct.mm", o.task_mm),
        ("mm_struct.pgd", o.mm_pgd),
        ("module.list", o.module_list),
        ("module.name", o.module_name),
        ("module base", o.module_base),
        ("uts_namespace.name.release", o.uts_release.unwrap_or(0)),
    ];
    let many = o.module_sizes.iter().chain(&o.module_bases);
    for (what, v) in single
        .into_iter()
        .chain(many.map(|&v| ("module region", v)))
    {
        if v > MAX_FIELD_OFFSET {
            return Err(format!(
                "offset of {what} {v:#x} is past {MAX_FIELD_OFFSET:#x}"
            ));
        }
    }
    if !(1..=64).contains(&o.module_name_len) {
        return Err(format!("module name length {}", o.module_name_len));
    }
    let n = o.module_sizes.len();
    if n == 0 || n > MAX_MODULE_REGIONS || o.module_bases.len() != n {
        return Err(format!(
            "{n} module sizes and {} bases (1..={MAX_MODULE_REGIONS}, as many of each)",
            o.module_bases.len()
        ));
    }
    Ok(())
}

/// Look in `dir` for the build of the guest `p` points at. Returns the build that passed
/// `KernelBuild::matches`, if any, and how many files were read and refused.
pub(super) fn load_matching<B: PhysicalMemory>(
    dir: &Path,
    mem: &GuestMemory<B>,
    p: &Placement,
) -> (Option<KernelBuild>, usize) {
    if !trusted(dir) {
        return (None, 0);
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return (None, 0);
    };
    let mut rejected = 0;
    let mut banners: Vec<(u64, Option<u64>)> = Vec::new();
    for entry in entries.take(MAX_DIR_ENTRIES).flatten() {
        let name = entry.file_name();
        let Some((banner_hash, rel)) = name.to_str().and_then(parse_name) else {
            continue;
        };
        // The guest's banner at this offset, hashed (read once per offset).
        let have = match banners.iter().find(|(r, _)| *r == rel) {
            Some(&(_, h)) => h,
            None => {
                let h = p
                    .text_va
                    .checked_add(rel)
                    .and_then(|va| mem.read_cstring(p.space, va, MAX_BANNER).ok())
                    .filter(|b| b.starts_with("Linux version "))
                    .map(|b| hash64(b.as_bytes()));
                banners.push((rel, h));
                h
            }
        };
        if have != Some(banner_hash) {
            continue;
        }
        let path = entry.path();
        let build = read_entry(&path, MAX_CACHE_ENTRY, WHAT).and_then(|bytes| parse_entry(&bytes));
        match build {
            Ok(b) if b.matches(mem, p) => return (Some(b), rejected),
            _ => rejected += 1,
        }
    }
    (None, rejected)
}

/// Write `build`'s cache file into `dir` (`cachedir::write_entry`: created private to the
/// user if missing, written to a temporary file first, then renamed).
///
/// # Errors
/// [`Error::Io`] naming the directory or file; [`Error::Malformed`] if the build cannot be
/// cached or the directory is not the user's alone.
pub(super) fn store(dir: &Path, build: &KernelBuild) -> Result<()> {
    let bytes = encode(build)?;
    let btf = build.identity.btf.map_or(0, |f| f.hash);
    let banner_rel = build.rel("linux_banner").unwrap_or(0);
    let name = file_name(&build.identity.banner, banner_rel, btf);
    write_entry(dir, &name, &bytes, WHAT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_junk_is_ignored() {
        let n = file_name("Linux version 6.1", 0x1a2b, 7);
        let (h, rel) = parse_name(&n).expect("own name");
        assert_eq!((h, rel), (hash64(b"Linux version 6.1"), 0x1a2b));
        for junk in [
            "",
            ".json",
            "x-1-2.json",
            "1-2.json",
            "1-2-3-4.json",
            "1-2-3.txt",
        ] {
            assert_eq!(parse_name(junk), None, "{junk:?}");
        }
    }
}
