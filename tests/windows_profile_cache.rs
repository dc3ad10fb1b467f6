//! The Windows profile cache (`os::profile::cache`, `Windows::discover_cached`) on synthetic
//! guests laid out by the three real ntoskrnl ISFs: a warm run reads no ISF (the ISF file is
//! removed before it), a corrupt, planted, stale or other-version entry is rejected with a
//! reason and the profile parsed again, and every walk gives the same result with and without
//! the cache, equal to the guest's specification.

mod support;

use std::path::{Path, PathBuf};

use support::windows_guest::*;
use xenvmi::backend::snapshot::Snapshot;
use xenvmi::mem::GuestMemory;
use xenvmi::os::profile::cache::{
    encode_profile_entry, parse_profile_entry, ProfileCache, ProfileCacheStats, ProfileKey, Wanted,
};
use xenvmi::os::profile::isf::Isf;
use xenvmi::os::profile::{Field, Profile, TypeSource};
use xenvmi::os::windows::{Hints, Windows, WindowsProfile, FIELDS, PROFILE_WANTED, SYMBOLS};
use xenvmi::os::{Module, Process};
use xenvmi::Registers;

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "xenvmi-profile-cache-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// A directory holding a copy of one fixture ISF (so a test can remove it).
fn isf_copy(name: &str, file: &str) -> PathBuf {
    let d = temp_dir(&format!("{name}-isf"));
    std::fs::create_dir_all(&d).unwrap();
    std::fs::copy(isf_dir().join(file), d.join(file)).unwrap();
    d
}

struct Guest {
    spec: WinSpec,
    regs: Vec<Registers>,
    mem: GuestMemory<Snapshot>,
}

fn guest(file: &str, build_no: u32) -> Guest {
    let g = WinGuest::build(&load_isf(file), WinSpec::with_cpus(build_no, 3));
    Guest {
        spec: g.spec.clone(),
        regs: g.registers(),
        mem: GuestMemory::new(g.snapshot()),
    }
}

/// What `pslist --windows --dlls` reports: processes, drivers, each process's DLLs (or its
/// error), each processor's owner and saved CR3.
#[derive(Debug, PartialEq)]
struct Walked {
    base: u64,
    build: Option<u32>,
    kernel_root: u64,
    processes: Vec<Process>,
    drivers: Vec<Module>,
    dlls: Vec<Result<Vec<Module>, String>>,
    cpus: Vec<(u64, Option<u64>, u64)>,
}

fn walk(g: &Guest, w: &Windows) -> Walked {
    let processes: Vec<Process> = w.processes(&g.mem).map(|p| p.unwrap()).collect();
    let drivers = w.modules(&g.mem).map(|m| m.unwrap()).collect();
    let dlls = processes
        .iter()
        .map(|p| {
            w.process_modules(&g.mem, p)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| e.to_string())
        })
        .collect();
    let cpus = w
        .processors(&g.mem)
        .unwrap()
        .cpus
        .into_iter()
        .map(|c| c.unwrap())
        .map(|c| (c.prcb.0, c.owner.map(|o| o.pid), c.saved_cr3))
        .collect();
    Walked {
        base: w.info().kernel_base.0,
        build: w.info().build,
        kernel_root: w.info().kernel_space.root.0,
        processes,
        drivers,
        dlls,
        cpus,
    }
}

/// The parts of a walk the specification gives, compared with it.
fn check_spec(g: &Guest, got: &Walked) {
    assert_eq!(got.base, g.spec.kernel_base);
    assert_eq!(got.build, Some(g.spec.build));
    let procs: Vec<(u64, u64, String)> = got
        .processes
        .iter()
        .map(|p| (p.pid, p.ppid, p.name.clone()))
        .collect();
    let want: Vec<(u64, u64, String)> = g
        .spec
        .processes
        .iter()
        .map(|p| (p.pid, p.ppid, p.name.chars().take(15).collect()))
        .collect();
    assert_eq!(procs, want);
    let drivers: Vec<(String, u64, u64)> = got
        .drivers
        .iter()
        .map(|m| (m.name.clone(), m.base.0, m.size))
        .collect();
    let want: Vec<(String, u64, u64)> = g
        .spec
        .drivers
        .iter()
        .map(|d| (d.name.clone(), d.base, d.size as u64))
        .collect();
    assert_eq!(drivers, want);
    for (dlls, p) in got.dlls.iter().zip(&g.spec.processes) {
        match (&p.dlls, dlls) {
            (None, Err(_)) => {}
            (Some(want), Ok(have)) => {
                let have: Vec<(String, u64, u64)> = have
                    .iter()
                    .map(|m| (m.name.clone(), m.base.0, m.size))
                    .collect();
                let want: Vec<(String, u64, u64)> = want
                    .iter()
                    .map(|d| (d.name.clone(), d.base, d.size as u64))
                    .collect();
                assert_eq!(have, want, "{}", p.name);
            }
            (want, have) => panic!("{}: {want:?} vs {have:?}", p.name),
        }
    }
    let owners: Vec<Option<u64>> = got.cpus.iter().map(|c| c.1).collect();
    let want: Vec<Option<u64>> = g
        .spec
        .cpus
        .iter()
        .map(|c| Some(c.process.map_or(0, |i| g.spec.processes[i].pid)))
        .collect();
    assert_eq!(owners, want);
}

fn discover(g: &Guest, isfs: &Path, cache: &ProfileCache) -> Windows {
    Windows::discover_cached(
        &g.mem,
        &g.regs,
        WindowsProfile::Directory(isfs.to_path_buf()),
        &Hints::default(),
        cache,
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

fn uncached(g: &Guest) -> Walked {
    let w = Windows::discover(&g.mem, &g.regs, WindowsProfile::Directory(isf_dir())).unwrap();
    walk(g, &w)
}

fn stats(parsed: usize, disk_hits: usize, rejected: usize, written: usize) -> ProfileCacheStats {
    ProfileCacheStats {
        parsed,
        memory_hits: 0,
        disk_hits,
        disk_rejected: rejected,
        disk_written: written,
        write_errors: 0,
    }
}

fn entry_name(file: &str) -> String {
    // ntkrnlmp-<GUID>-<age>.json.xz
    let mut parts = file.trim_end_matches(".json.xz").split('-').skip(1);
    let (guid, age) = (parts.next().unwrap(), parts.next().unwrap());
    format!("windows-ntkrnlmp.pdb-{guid}-{age}.json")
}

#[test]
fn a_warm_run_reads_no_isf_and_every_walk_is_the_same_on_every_profile() {
    for (file, build_no) in PROFILES {
        let g = guest(file, build_no);
        let want = uncached(&g);
        check_spec(&g, &want);
        let dir = temp_dir(&format!("warm-{build_no}"));
        let isfs = isf_copy(&format!("warm-{build_no}"), file);

        // Cold: parsed once, written.
        let cold = ProfileCache::with_dir(&dir);
        let w = discover(&g, &isfs, &cold);
        assert_eq!(walk(&g, &w), want, "{file} cold");
        assert_eq!(cold.stats(), stats(1, 0, 0, 1), "{file}");
        assert!(dir.join(entry_name(file)).is_file());

        // Warm, in a new cache (a new run) and with the ISF gone: nothing can be parsed.
        std::fs::remove_file(isfs.join(file)).unwrap();
        let warm = ProfileCache::with_dir(&dir);
        let w = discover(&g, &isfs, &warm);
        assert_eq!(walk(&g, &w), want, "{file} warm");
        assert_eq!(warm.stats(), stats(0, 1, 0, 0), "{file}");
        assert!(w.info().profile.contains(file), "{}", w.info().profile);
        // What the cache does not keep is not answered.
        assert_eq!(w.symbol("KiSystemServiceStart"), None);

        // A second guest of the build in the same process: shared from memory.
        let w = discover(&g, &isfs, &warm);
        assert_eq!(walk(&g, &w), want);
        assert_eq!(warm.stats().memory_hits, 1);

        // Without a cache entry and without the ISF, the error says what is missing.
        let none = ProfileCache::in_memory();
        let e = Windows::discover_cached(
            &g.mem,
            &g.regs,
            WindowsProfile::Directory(isfs.clone()),
            &Hints::default(),
            &none,
        )
        .unwrap_err();
        assert!(e.to_string().contains("no profile for ntkrnlmp.pdb"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(&isfs);
    }
}

/// One entry for `file`'s build written by a cold run; returns the cache directory and the
/// entry's path.
fn one_entry(name: &str, file: &str, g: &Guest) -> (PathBuf, PathBuf) {
    let dir = temp_dir(name);
    let cache = ProfileCache::with_dir(&dir);
    discover(g, &isf_dir(), &cache);
    assert_eq!(cache.stats(), stats(1, 0, 0, 1));
    (dir.clone(), dir.join(entry_name(file)))
}

/// A run over `dir` rejects the entry (its reason containing `why`), parses the ISF, writes
/// the entry again and walks as without the cache; the run after it reads the new entry.
fn rejected_then_rebuilt(dir: &Path, g: &Guest, why: &str) {
    let cache = ProfileCache::with_dir(dir);
    let w = discover(g, &isf_dir(), &cache);
    assert_eq!(walk(g, &w), uncached(g));
    assert_eq!(cache.stats(), stats(1, 0, 1, 1), "{why}");
    let reasons = cache.rejections();
    assert_eq!(reasons.len(), 1);
    assert!(reasons[0].contains(why), "{reasons:?} lacks {why:?}");
    assert!(reasons[0].contains("windows-ntkrnlmp.pdb-"), "{reasons:?}");
    let again = ProfileCache::with_dir(dir);
    discover(g, &isf_dir(), &again);
    assert_eq!(again.stats(), stats(0, 1, 0, 0), "{why}: rebuilt");
}

#[test]
fn corrupt_entries_are_rejected_and_rebuilt() {
    let (file, build_no) = PROFILES[2];
    let g = guest(file, build_no);
    let (dir, path) = one_entry("corrupt", file, &g);
    let good = std::fs::read_to_string(&path).unwrap();

    // A digit changed: still JSON of the format, but the checksum says no.
    let at = good.find("\"fields\"").expect("fields");
    let digit = good[at..]
        .find(|c: char| c.is_ascii_digit())
        .map(|i| at + i)
        .expect("a digit");
    let mut bytes = good.clone().into_bytes();
    bytes[digit] = if bytes[digit] == b'9' {
        b'8'
    } else {
        bytes[digit] + 1
    };
    std::fs::write(&path, &bytes).unwrap();
    rejected_then_rebuilt(&dir, &g, "checksum");

    let cases: [(&str, Vec<u8>, &str); 4] = [
        (
            "truncated",
            good.as_bytes()[..good.len() / 2].to_vec(),
            "EOF",
        ),
        ("not JSON", b"\x00\xff garbage".to_vec(), "expected value"),
        ("empty", Vec::new(), "EOF"),
        (
            "too long",
            vec![b' '; (xenvmi::os::profile::cache::MAX_PROFILE_ENTRY + 1) as usize],
            "more than",
        ),
    ];
    for (what, bytes, why) in cases {
        std::fs::write(&path, &bytes).unwrap();
        rejected_then_rebuilt(&dir, &g, why);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), good, "{what}");
    }

    // A symbolic link in the entry's place is not followed.
    let elsewhere = dir.join("elsewhere.json");
    std::fs::write(&elsewhere, &good).unwrap();
    std::fs::remove_file(&path).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &path).unwrap();
    rejected_then_rebuilt(&dir, &g, "symbolic link");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn another_builds_entry_under_this_builds_name_is_rejected() {
    let (w10, w10_no) = PROFILES[1];
    let (w11, w11_no) = PROFILES[2];
    let (dir, w10_entry) = one_entry("planted", w10, &guest(w10, w10_no));
    let g = guest(w11, w11_no);
    std::fs::rename(&w10_entry, dir.join(entry_name(w11))).unwrap();
    rejected_then_rebuilt(
        &dir,
        &g,
        "it is for ntkrnlmp.pdb GUID 5278AFF86C341677D7D7835C85B7B844 age 1, not ntkrnlmp.pdb GUID 0CE4A95C0CD782A7596B034D8648E585 age 1",
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn another_version_or_field_list_is_stale() {
    let (file, build_no) = PROFILES[2];
    let g = guest(file, build_no);
    let (dir, path) = one_entry("version", file, &g);
    let good = std::fs::read_to_string(&path).unwrap();
    let old = good.replacen("\"version\": 1,", "\"version\": 0,", 1);
    assert_ne!(old, good);
    std::fs::write(&path, old).unwrap();
    rejected_then_rebuilt(
        &dir,
        &g,
        "format \"xenvmi-windows-profile\" version 0, not \"xenvmi-windows-profile\" version 1",
    );
    let _ = std::fs::remove_dir_all(&dir);

    // An entry made for another list of fields (another xenvmi) is refused by the parser.
    let isf = Isf::from_file(isf_dir().join(file)).unwrap();
    let symbols = isf.symbols().clone();
    let profile = Profile {
        types: Box::new(isf),
        symbols,
    };
    let key = ProfileKey::new("ntkrnlmp.pdb", "0CE4A95C0CD782A7596B034D8648E585", 1).unwrap();
    let bytes = encode_profile_entry(&key, &profile, PROFILE_WANTED, None).unwrap();
    let entry = parse_profile_entry(&bytes, PROFILE_WANTED).unwrap();
    assert_eq!(entry.key, key);
    assert_eq!(entry.file, None);
    let p = entry.profile;
    for (t, f) in FIELDS {
        assert_eq!(p.types.field(t, f), profile.types.field(t, f), "{t}.{f}");
    }
    for s in SYMBOLS {
        assert_eq!(p.symbols.get(s), profile.symbols.get(s), "{s}");
    }
    let fewer = Wanted {
        fields: &[&FIELDS],
        symbols: &[&SYMBOLS],
    };
    let e = parse_profile_entry(&bytes, fewer).unwrap_err();
    assert!(e.to_string().contains("another list of fields"), "{e}");
}

/// A profile without `_EPROCESS.Peb`: what a cache entry made from a broken profile would hold.
struct WithoutPeb(Isf);

impl TypeSource for WithoutPeb {
    fn source_name(&self) -> &str {
        self.0.source_name()
    }
    fn struct_size(&self, name: &str) -> Option<u64> {
        self.0.struct_size(name)
    }
    fn field(&self, t: &str, p: &str) -> Option<Field> {
        if (t, p) == ("_EPROCESS", "Peb") {
            return None;
        }
        self.0.field(t, p)
    }
}

#[test]
fn an_entry_the_walkers_cannot_use_is_rejected() {
    let (file, build_no) = PROFILES[2];
    let g = guest(file, build_no);
    let dir = temp_dir("unusable");
    std::fs::create_dir_all(&dir).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    let isf = Isf::from_file(isf_dir().join(file)).unwrap();
    let symbols = isf.symbols().clone();
    let broken = Profile {
        types: Box::new(WithoutPeb(isf)),
        symbols,
    };
    let key = ProfileKey::new("ntkrnlmp.pdb", "0CE4A95C0CD782A7596B034D8648E585", 1).unwrap();
    let bytes = encode_profile_entry(&key, &broken, PROFILE_WANTED, None).unwrap();
    std::fs::write(dir.join(entry_name(file)), bytes).unwrap();
    rejected_then_rebuilt(&dir, &g, "_EPROCESS");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_directory_others_can_write_is_not_used() {
    use std::os::unix::fs::PermissionsExt;
    let (file, build_no) = PROFILES[2];
    let g = guest(file, build_no);
    let (dir, _) = one_entry("shared", file, &g);
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let cache = ProfileCache::with_dir(&dir);
    let w = discover(&g, &isf_dir(), &cache);
    assert_eq!(walk(&g, &w), uncached(&g));
    let s = cache.stats();
    assert_eq!(
        (s.disk_hits, s.parsed, s.disk_written, s.write_errors),
        (0, 1, 0, 1),
        "{s:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The image `bash scripts/bench-vs-vol.sh --windows` measures: the Windows 11 22000 guest
/// (the newest fixture ISF) as a 256 MiB QEMU ELF core, with a self-referencing PML4 entry (as
/// Windows has, at index 0x1ed) and `KUSER_SHARED_DATA` mapped, so that Volatility3 finds and
/// accepts its page tables. Written to
/// `$XENVMI_BENCH_WIN_IMAGE` and read back: every walk equals the guest's specification.
#[test]
#[ignore = "writes a 256 MiB image: run by scripts/bench-vs-vol.sh --windows"]
fn the_benchmark_image() {
    let Some(path) = std::env::var_os("XENVMI_BENCH_WIN_IMAGE").map(PathBuf::from) else {
        panic!("set XENVMI_BENCH_WIN_IMAGE to the image's path");
    };
    let (file, build_no) = PROFILES[2];
    let mut g = WinGuest::build(&load_isf(file), WinSpec::with_cpus(build_no, 2));
    // KUSER_SHARED_DATA.NtMajorVersion at its fixed kernel address: Volatility3 accepts a
    // page-table root only if it maps that page with a Windows major version.
    g.write_u32(g.kernel_pml4, 0xffff_f780_0000_026c, 10);
    let root = g.kernel_pml4 as usize;
    g.mem[root + 0x1ed * 8..root + 0x1ee * 8]
        .copy_from_slice(&(g.kernel_pml4 | 0x63).to_le_bytes());
    assert!(g.mem.len() <= 256 << 20);
    g.mem.resize(256 << 20, 0);
    let regs = g.registers();
    g.write_elf_core(&regs, &path);
    let snap = Snapshot::open(&path).unwrap();
    let back = Guest {
        spec: g.spec.clone(),
        regs: snap.all_registers().to_vec(),
        mem: GuestMemory::new(snap),
    };
    check_spec(&back, &uncached(&back));
}

fn discover_file(g: &Guest, isf: &Path, cache: &ProfileCache) -> Result<Windows, xenvmi::Error> {
    Windows::discover_cached(
        &g.mem,
        &g.regs,
        WindowsProfile::Isf(isf.to_path_buf()),
        &Hints::default(),
        cache,
    )
}

#[test]
fn one_profile_file_is_parsed_only_when_no_entry_was_made_from_it_as_it_is() {
    let (file, build_no) = PROFILES[2];
    let g = guest(file, build_no);
    let want = uncached(&g);
    let dir = temp_dir("file");
    let isfs = isf_copy("file", file);
    let isf = isfs.join(file);

    // A directory run writes the entry, recording the file it parsed; a run given that file
    // takes it.
    let first = ProfileCache::with_dir(&dir);
    discover(&g, &isfs, &first);
    assert_eq!(first.stats(), stats(1, 0, 0, 1));
    let warm = ProfileCache::with_dir(&dir);
    let w = discover_file(&g, &isf, &warm).unwrap();
    assert_eq!(walk(&g, &w), want);
    assert_eq!(warm.stats(), stats(0, 1, 0, 0));

    // The file changed (its modification time): the entry is not its, the file is parsed.
    let f = std::fs::File::options().append(true).open(&isf).unwrap();
    f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(5))
        .unwrap();
    drop(f);
    rejected_file(&dir, &g, &isf, &want);
    // Another file with the same content at another path: not the file the entry was made
    // from either.
    let other = isfs.join("copy.json.xz");
    std::fs::copy(&isf, &other).unwrap();
    rejected_file(&dir, &g, &other, &want);

    // The file of another build: refused as without a cache, and nothing kept for the
    // kernel's GUID.
    let w10 = isf_dir().join(PROFILES[1].0);
    let empty = temp_dir("file-other");
    let cache = ProfileCache::with_dir(&empty);
    let e = discover_file(&g, &w10, &cache).unwrap_err();
    assert!(
        e.to_string()
            .contains("the profile is for GUID 5278AFF86C341677D7D7835C85B7B844"),
        "{e}"
    );
    assert_eq!(cache.stats(), ProfileCacheStats::default());
    assert!(!empty.exists());

    // A file that is not a profile is an error naming it, not a kernel search that fails.
    let junk = isfs.join("junk.json");
    std::fs::write(&junk, b"{ not json").unwrap();
    let e = discover_file(&g, &junk, &ProfileCache::in_memory()).unwrap_err();
    assert!(matches!(e, xenvmi::Error::Malformed { .. }), "{e}");
    assert!(e.to_string().contains("junk.json"), "{e}");
    for d in [dir, isfs] {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// A run given `isf` rejects the entry in `dir` as made from another file, parses `isf`,
/// writes the entry again, and walks as without the cache.
fn rejected_file(dir: &Path, g: &Guest, isf: &Path, want: &Walked) {
    let cache = ProfileCache::with_dir(dir);
    let w = discover_file(g, isf, &cache).unwrap();
    assert_eq!(walk(g, &w), *want);
    assert_eq!(cache.stats(), stats(1, 0, 1, 1));
    let r = cache.rejections();
    assert!(r[0].contains("it was made from"), "{r:?}");
    let again = ProfileCache::with_dir(dir);
    discover_file(g, isf, &again).unwrap();
    assert_eq!(again.stats(), stats(0, 1, 0, 0));
}
