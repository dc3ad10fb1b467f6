//! The kernel-build cache (`BuildCache`, `Linux::discover_cached`) on the real Linux dumps:
//! what a cached build yields equals what the whole discovery yields (which
//! tests/linux_fixtures.rs checks against each guest's own ground truth); one build is
//! discovered once and shared by every guest running it (four of the fixtures run the same
//! Debian 6.1.0-56 build, under different KASLR slides and paging modes); a cache file that
//! is truncated, damaged, of another build, planted under another build's name or a symbolic
//! link is refused and the whole discovery runs instead. Counts, never timings.

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use xenvmi::backend::snapshot::Snapshot;
use xenvmi::mem::GuestMemory;
use xenvmi::os::linux::{parse_entry, BuildCache, CacheStats, Linux, ProfileSource, Scope};
use xenvmi::os::{Module, Process};
use xenvmi::Registers;

use support::linux::FIXTURES;

/// The fixtures whose ground truth gives the same `/proc/version` (one kernel build).
const SAME_BUILD: &[&str] = &[
    "linux-6.1",
    "linux-6.1-la57",
    "linux-6.1-mem4g",
    "linux-6.1-net",
];

fn open(fixture: &str) -> (GuestMemory<Snapshot>, Vec<Registers>) {
    support::linux::memory(fixture)
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("xenvmi-build-cache-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Everything a walk-only job reports: kernel facts, processes, modules, vCPU owners.
#[derive(Debug, PartialEq)]
struct Walked {
    release: String,
    banner: String,
    text: (u64, u64),
    kaslr: u64,
    phys_base: u64,
    page_offset_base: u64,
    kernel_cr3: u64,
    located_by: String,
    processes: Vec<Process>,
    modules: Vec<Module>,
    owners: Vec<Option<u64>>,
}

fn walk(mem: &GuestMemory<Snapshot>, regs: &[Registers], linux: &Linux) -> Walked {
    let k = linux.info();
    let processes: Vec<Process> = linux.processes(mem).map(|p| p.unwrap()).collect();
    let modules: Vec<Module> = linux.modules(mem).map(|m| m.unwrap()).collect();
    let owners = regs
        .iter()
        .map(|r| linux.owner_of_cr3(&processes, r.cr3).map(|p| p.pid))
        .collect();
    Walked {
        release: k.release.clone(),
        banner: k.banner.clone(),
        text: (k.text_va.0, k.text_pa.0),
        kaslr: k.kaslr_offset,
        phys_base: k.phys_base,
        page_offset_base: k.page_offset_base.0,
        kernel_cr3: k.kernel_space.root.0,
        located_by: k.located_by.clone(),
        processes,
        modules,
        owners,
    }
}

fn uncached(fixture: &str) -> Walked {
    let (mem, regs) = open(fixture);
    let linux = Linux::discover(&mem, &regs, ProfileSource::InGuest).unwrap();
    walk(&mem, &regs, &linux)
}

fn cached(fixture: &str, cache: &BuildCache, scope: Scope) -> (Walked, Linux) {
    let (mem, regs) = open(fixture);
    let linux = Linux::discover_cached(&mem, &regs, cache, scope)
        .unwrap_or_else(|e| panic!("{fixture}: {e}"));
    (walk(&mem, &regs, &linux), linux)
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn every_fixture_walks_the_same_with_a_cold_and_a_warm_cache() {
    let dir = temp_dir("every");
    for f in FIXTURES {
        let want = uncached(f);
        assert!(!want.processes.is_empty(), "{f}");
        // Cold: the whole discovery runs and its build is written, unless a fixture before
        // ran the same build (then its file is found, under another KASLR slide).
        let cold = BuildCache::with_dir(&dir);
        let (got, linux) = cached(f, &cold, Scope::Walks);
        assert_eq!(got, want, "{f}: cold cache");
        let s = cold.stats();
        let first_of_build = !SAME_BUILD.contains(f) || *f == SAME_BUILD[0];
        assert_eq!(
            (s.discoveries, s.disk_hits),
            if first_of_build { (1, 0) } else { (0, 1) },
            "{f}: {s:?}"
        );
        assert_eq!(linux.build().is_complete(), first_of_build, "{f}");
        // Warm, in a new cache (a new run): the build comes from the directory.
        let warm = BuildCache::with_dir(&dir);
        let (got, linux) = cached(f, &warm, Scope::Walks);
        assert_eq!(got, want, "{f}: build read from the cache directory");
        assert!(!linux.build().is_complete(), "{f}");
        let s = warm.stats();
        assert_eq!((s.discoveries, s.disk_hits), (0, 1), "{f}: {s:?}");
    }
    // One file per build: the 6.1.0-56 build is one file for four fixtures.
    assert_eq!(files(&dir).len(), 3, "{:?}", files(&dir));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn one_build_is_discovered_once_for_twenty_guests() {
    let cache = BuildCache::in_memory();
    let mut linuxes = Vec::new();
    let mut first = None;
    for i in 0..20 {
        let f = SAME_BUILD[i % SAME_BUILD.len()];
        let (got, linux) = cached(f, &cache, Scope::Full);
        if i < SAME_BUILD.len() {
            assert_eq!(got, uncached(f), "{f}");
        }
        first.get_or_insert_with(|| linux.build().clone());
        linuxes.push(linux);
    }
    let first = first.unwrap();
    for l in &linuxes {
        assert!(Arc::ptr_eq(l.build(), &first));
    }
    let s = cache.stats();
    assert_eq!(
        s,
        CacheStats {
            discoveries: 1,
            memory_hits: 19,
            ..CacheStats::default()
        }
    );
    // Another build is discovered, not taken for this one.
    let (_, other) = cached("linux-6.1-cloud-pti", &cache, Scope::Full);
    assert!(!Arc::ptr_eq(other.build(), &first));
    assert_eq!(cache.stats().discoveries, 2);
    assert_eq!(cache.builds().len(), 2);
}

#[test]
fn a_full_scope_does_not_take_a_build_from_the_directory() {
    let dir = temp_dir("full");
    cached("linux-6.1", &BuildCache::with_dir(&dir), Scope::Walks);
    let cache = BuildCache::with_dir(&dir);
    let (_, walks) = cached("linux-6.1", &cache, Scope::Walks);
    assert!(!walks.build().is_complete());
    // The offsets-only build answers no type: detail needs the full discovery.
    assert!(walks.types().struct_size("task_struct").is_none());
    let (got, full) = cached("linux-6.1", &cache, Scope::Full);
    assert!(full.build().is_complete());
    assert!(full.types().struct_size("task_struct").is_some());
    assert_eq!(got, uncached("linux-6.1"));
    let s = cache.stats();
    assert_eq!((s.disk_hits, s.discoveries), (1, 1), "{s:?}");
    // The complete build replaced the partial one in memory.
    assert_eq!(cache.builds().len(), 1);
    assert!(cache.builds()[0].is_complete());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Write the cache file of `fixture`'s build into a new directory; return it and the file.
fn one_entry(name: &str, fixture: &str) -> (PathBuf, PathBuf) {
    let dir = temp_dir(name);
    cached(fixture, &BuildCache::with_dir(&dir), Scope::Walks);
    let f = files(&dir);
    assert_eq!(f.len(), 1, "{f:?}");
    (dir, f[0].clone())
}

/// A run over `dir` must refuse its file (counted), discover, and walk as without a cache.
fn falls_back(dir: &Path, what: &str) {
    let cache = BuildCache::with_dir(dir);
    let (got, linux) = cached("linux-6.1", &cache, Scope::Walks);
    assert_eq!(got, uncached("linux-6.1"), "{what}");
    assert!(linux.build().is_complete(), "{what}");
    let s = cache.stats();
    assert_eq!((s.disk_hits, s.discoveries), (0, 1), "{what}: {s:?}");
    assert!(s.disk_rejected >= 1, "{what}: {s:?}");
}

#[test]
fn damaged_and_planted_files_fall_back_to_discovery() {
    let (dir, file) = one_entry("damaged", "linux-6.1");
    let good = std::fs::read(&file).unwrap();
    assert!(parse_entry(&good).is_ok());
    let text = String::from_utf8(good.clone()).unwrap();

    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("truncated", good[..good.len() / 2].to_vec()),
        ("one byte short", good[..good.len() - 1].to_vec()),
        ("not JSON", b"\x00\xff garbage".to_vec()),
        ("too long", vec![b' '; 70_000]),
    ];
    // A changed number still parses: the checksum refuses it.
    let comm = text.find("\"task_comm\": ").unwrap() + "\"task_comm\": ".len();
    let mut flipped = good.clone();
    flipped[comm] = if flipped[comm] == b'1' { b'2' } else { b'1' };
    cases.push(("a digit of task_comm changed", flipped));
    cases.push((
        "another version",
        text.replacen("\"version\": 1", "\"version\": 2", 1)
            .into_bytes(),
    ));
    for (what, bytes) in cases {
        std::fs::write(&file, &bytes).unwrap();
        if what != "another version" {
            assert!(parse_entry(&bytes).is_err(), "{what}");
        }
        falls_back(&dir, what);
    }

    // A symbolic link where the file was is not followed.
    let elsewhere = dir.with_extension("target");
    std::fs::write(&elsewhere, &good).unwrap();
    std::fs::remove_file(&file).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &file).unwrap();
    falls_back(&dir, "a symbolic link");
    let _ = std::fs::remove_file(&elsewhere);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn another_builds_file_is_never_used() {
    // 6.12's file in 6.1's directory, under its own name: never even read.
    let (dir, mine) = one_entry("other", "linux-6.1");
    let (other_dir, theirs) = one_entry("other-612", "linux-6.12");
    std::fs::remove_file(&mine).unwrap();
    std::fs::copy(&theirs, dir.join(theirs.file_name().unwrap())).unwrap();
    let cache = BuildCache::with_dir(&dir);
    let (got, _) = cached("linux-6.1", &cache, Scope::Walks);
    assert_eq!(got, uncached("linux-6.1"));
    let s = cache.stats();
    assert_eq!((s.disk_hits, s.discoveries), (0, 1), "{s:?}");

    // Planted under 6.1's name (a valid file of another build): read, checked, refused.
    let dir2 = temp_dir("planted");
    std::fs::create_dir_all(&dir2).unwrap();
    std::fs::copy(&theirs, dir2.join(mine.file_name().unwrap())).unwrap();
    falls_back(&dir2, "6.12's build under 6.1's name");
    // And the cloud build (same release line, other config) in its place too.
    let (cloud_dir, cloud) = one_entry("other-cloud", "linux-6.1-cloud-pti");
    std::fs::copy(&cloud, dir2.join(mine.file_name().unwrap())).unwrap();
    falls_back(&dir2, "the cloud build under 6.1's name");
    for d in [dir, dir2, other_dir, cloud_dir] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[test]
fn a_directory_others_can_write_is_not_used() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, _) = one_entry("shared", "linux-6.1");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let cache = BuildCache::with_dir(&dir);
    let (got, _) = cached("linux-6.1", &cache, Scope::Walks);
    assert_eq!(got, uncached("linux-6.1"));
    let s = cache.stats();
    assert_eq!(
        (s.disk_hits, s.discoveries, s.disk_written, s.write_errors),
        (0, 1, 0, 1),
        "{s:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_environment_chooses_the_directory_or_none() {
    // One test sets the variables (tests in one binary share the environment).
    std::env::set_var("XENVMI_CACHE_DIR", "/some/where");
    std::env::remove_var("XENVMI_CACHE");
    assert_eq!(BuildCache::from_env().dir(), Some(Path::new("/some/where")));
    std::env::set_var("XENVMI_CACHE", "off");
    assert_eq!(BuildCache::from_env().dir(), None);
    std::env::remove_var("XENVMI_CACHE");
    std::env::remove_var("XENVMI_CACHE_DIR");
    std::env::set_var("XDG_CACHE_HOME", "/xdg");
    assert_eq!(BuildCache::from_env().dir(), Some(Path::new("/xdg/xenvmi")));
    std::env::remove_var("XDG_CACHE_HOME");
    std::env::set_var("HOME", "/home/me");
    assert_eq!(
        BuildCache::from_env().dir(),
        Some(Path::new("/home/me/.cache/xenvmi"))
    );
}
