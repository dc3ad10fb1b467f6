//! Windows triage dumps (DumpType 4): the header, the bug check, the driver list and the
//! crashing process, thread and processor, from synthetic guests laid out by the three real
//! ntoskrnl ISFs (`tests/support/windows_guest.rs`) and written by the test-side triage writer
//! (`tests/support/crashdump.rs`, transcribed from Ghidra's `PAGEDUMP_TRIAGE` field order and
//! the debugger headers' `KLDR_DATA_TABLE_ENTRY64`). Expected values come from each guest's
//! spec.

mod support;

use std::path::PathBuf;

use support::crashdump as dmp;
use support::scratch::Scratch;
use support::triage::{expected, triage_of};
use support::windows_guest::*;
use xenvmi::backend::snapshot::{Snapshot, TriageDump, WindowsDumpKind};
use xenvmi::os::profile::TypeSource;
use xenvmi::os::windows::triage::crashing_process;
use xenvmi::os::windows::WindowsProfile;
use xenvmi::Error;

const N_CPUS: usize = 5;

fn write(dir: &std::path::Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// Every processor of every build crashing in turn (a user process, the idle thread, a
/// kernel thread on behalf of a process, a System thread attached to another process): the
/// driver list, the bug check and the crashing process, thread and processor equal the spec,
/// with the build's ISF given as a file and found in the directory of all three.
#[test]
fn triage_dumps_name_the_crashing_process_and_the_drivers() {
    let dir = Scratch::new("triage-read");
    for (file, build) in PROFILES {
        let isf = load_isf(file);
        let spec = WinSpec::with_cpus(build, N_CPUS);
        let mut g = WinGuest::build(&isf, spec.clone());
        for crashed in 0..N_CPUS {
            let path = write(dir.path(), "mini.dmp", &triage_of(&isf, &mut g, crashed));
            assert!(TriageDump::sniff(&path));
            let dump = TriageDump::open(&path).unwrap();
            assert_eq!(dump.info.kind, WindowsDumpKind::Triage);
            assert_eq!(dump.info.minor_version, build);
            assert_eq!(dump.info.number_processors, N_CPUS as u32);
            assert_eq!(dump.info.bugcheck_code, 0xd1);
            let fault = spec.drivers[1].base + 0x1234;
            assert_eq!(dump.info.bugcheck_parameters[3], fault);
            assert_eq!(dump.context.rip, fault);
            assert_eq!(dump.driver_at(fault).unwrap().name, spec.drivers[1].name);
            assert!(!dump.drivers_truncated);
            let drivers: Vec<_> = dump.drivers.iter().map(|d| d.clone().unwrap()).collect();
            assert_eq!(drivers.len(), spec.drivers.len());
            for (i, (d, s)) in drivers.iter().zip(&spec.drivers).enumerate() {
                assert_eq!(
                    (&d.name, d.base, d.size, d.checksum, d.timestamp),
                    (
                        &s.name,
                        s.base,
                        s.size,
                        0x1_0000 + i as u32,
                        0x5f00_0000 + i as u32
                    ),
                    "{file} driver {i}"
                );
            }
            assert_eq!(dump.call_stack().len(), 64 * 8);

            let want = expected(&spec, crashed);
            let given = crashing_process(&dump, &WindowsProfile::Isf(isf_dir().join(file)))
                .unwrap_or_else(|e| panic!("{file} cpu {crashed}: {e}"));
            assert_eq!(given.process, want, "{file} crashed on {crashed}");
            let found = crashing_process(&dump, &WindowsProfile::Directory(isf_dir()))
                .unwrap_or_else(|e| panic!("{file} cpu {crashed} (directory): {e}"));
            assert_eq!(
                found.process, want,
                "{file} crashed on {crashed} (directory)"
            );
            assert_eq!(found.tried, PROFILES.len());
            assert!(
                found.profiles.iter().any(|p| p.ends_with(file)),
                "{file}: {:?}",
                found.profiles
            );
        }
    }
}

/// The profile of another build does not read the copies as valid: the error names the
/// dump, the profile file and the check that failed. A directory without profiles says so.
#[test]
fn a_triage_dump_with_the_wrong_profile_is_not_misread() {
    let dir = Scratch::new("triage-wrong");
    let (file, build) = PROFILES[1];
    let isf = load_isf(file);
    let mut g = WinGuest::build(&isf, WinSpec::with_cpus(build, N_CPUS));
    let path = write(dir.path(), "mini.dmp", &triage_of(&isf, &mut g, 0));
    let dump = TriageDump::open(&path).unwrap();
    for (other, _) in [PROFILES[0], PROFILES[2]] {
        let e = crashing_process(&dump, &WindowsProfile::Isf(isf_dir().join(other)))
            .unwrap_err()
            .to_string();
        assert!(e.contains("mini.dmp") && e.contains(other), "{e}");
        assert!(e.contains("does not read as valid"), "{e}");
    }
    let empty = Scratch::new("triage-empty");
    let e = crashing_process(&dump, &WindowsProfile::Directory(empty.path().into()))
        .unwrap_err()
        .to_string();
    assert!(e.contains("holds no ISF"), "{e}");
}

/// A full or bitmap dump is not a triage dump and the reverse: `Snapshot::open` refuses a
/// triage dump as unsupported (saying where its report is read), `TriageDump` refuses a
/// kernel dump by its DumpType.
#[test]
fn triage_and_memory_dumps_are_told_apart() {
    let dir = Scratch::new("triage-apart");
    let (file, build) = PROFILES[2];
    let isf = load_isf(file);
    let mut g = WinGuest::build(&isf, WinSpec::with_cpus(build, N_CPUS));
    let triage = write(dir.path(), "mini.dmp", &triage_of(&isf, &mut g, 1));
    match Snapshot::open(&triage) {
        Err(e @ Error::UnsupportedImage { .. }) => {
            let m = e.to_string();
            assert!(m.contains("unsupported DumpType 4 (triage)"), "{m}");
            assert!(m.contains("pslist"), "{m}");
        }
        other => panic!("{other:?}"),
    }
    let h = dmp::Header::example(g.kernel_pml4, g.crash_context(0));
    let full = write(dir.path(), "full.dmp", &dmp::full_dump(&h, &[(0, &g.mem)]));
    assert!(!TriageDump::sniff(&full));
    let e = TriageDump::open(&full).unwrap_err().to_string();
    assert!(e.contains("full.dmp") && e.contains("DumpType 1"), "{e}");
}

/// Broken triage dumps: each gives an error naming the file and the field, or (a driver
/// name outside the file) an error item for that driver while the others are read.
#[test]
fn broken_triage_dumps_are_refused_by_field() {
    let dir = Scratch::new("triage-broken");
    let (file, build) = PROFILES[1];
    let isf = load_isf(file);
    let mut g = WinGuest::build(&isf, WinSpec::with_cpus(build, N_CPUS));
    let good = triage_of(&isf, &mut g, 0);
    let u32_at = |b: &[u8], o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
    type Break<'a> = Box<dyn Fn(&mut Vec<u8>) + 'a>;
    let cases: Vec<(&str, Break, &str)> = vec![
        (
            "no TRGD",
            Box::new(|b: &mut Vec<u8>| {
                let v = u32_at(b, dmp::T_VALID_OFFSET) as usize;
                b[v] ^= 0xff;
            }),
            "TRGD",
        ),
        (
            "truncated",
            Box::new(|b: &mut Vec<u8>| b.truncate(dmp::HEADER + 0x20)),
            "truncated",
        ),
        (
            "process copy outside",
            Box::new(|b: &mut Vec<u8>| {
                let n = b.len() as u32;
                dmp::put32(b, dmp::T_PROCESS_OFFSET, n + 0x100);
            }),
            "ProcessOffset",
        ),
        (
            "driver list past the end",
            Box::new(|b: &mut Vec<u8>| dmp::put32(b, dmp::T_DRIVER_COUNT, 0x1000)),
            "driver list",
        ),
        (
            "stack past the end",
            Box::new(|b: &mut Vec<u8>| dmp::put32(b, dmp::T_SIZE_OF_CALL_STACK, 0x7fff_0000)),
            "SizeOfCallStack",
        ),
    ];
    for (what, break_it, needle) in cases {
        let mut b = good.clone();
        break_it(&mut b);
        let p = write(dir.path(), "broken.dmp", &b);
        let e = TriageDump::open(&p).unwrap_err().to_string();
        assert!(
            e.contains("broken.dmp") && e.contains(needle),
            "{what}: {e}"
        );
    }
    // One driver's name offset points outside the file: that entry is an error, the rest
    // are read.
    let mut b = good.clone();
    let list = u32_at(&b, dmp::T_DRIVER_LIST_OFFSET) as usize;
    let n = b.len() as u32;
    dmp::put32(&mut b, list + dmp::DRIVER_ENTRY, n + 8);
    let p = write(dir.path(), "name.dmp", &b);
    let dump = TriageDump::open(&p).unwrap();
    assert!(dump.drivers[1]
        .as_ref()
        .unwrap_err()
        .contains("driver entry 1"));
    assert_eq!(
        dump.drivers[0].as_ref().unwrap().name,
        g.spec.drivers[0].name
    );
    assert_eq!(
        dump.drivers.iter().filter(|d| d.is_ok()).count(),
        g.spec.drivers.len() - 1
    );
    // A process copy that is not a process (its dispatcher type overwritten) is not named.
    let mut b = good;
    let at = u32_at(&b, dmp::T_PROCESS_OFFSET) as usize;
    b[at] = 0;
    let p = write(dir.path(), "type.dmp", &b);
    let dump = TriageDump::open(&p).unwrap();
    let e = crashing_process(&dump, &WindowsProfile::Isf(isf_dir().join(file)))
        .unwrap_err()
        .to_string();
    assert!(e.contains("ProcessObject"), "{e}");
}

/// `pslist` on a triage dump, as a user runs it: the report (text and JSON) names the
/// crashing process, the processor, the faulting driver and every driver; with the profile
/// from the default place (`XENVMI_WINDOWS_PROFILES`) and from `--profile FILE`. Without any
/// profile the drivers are still listed and the process is said to be unnamed, exit 0.
#[test]
fn pslist_reports_a_triage_dump() {
    use std::process::Command;
    let dir = Scratch::new("triage-pslist");
    let (file, build) = PROFILES[2];
    let isf = load_isf(file);
    let spec = WinSpec::with_cpus(build, N_CPUS);
    let mut g = WinGuest::build(&isf, spec.clone());
    let crashed = 3;
    let path = write(dir.path(), "mini.dmp", &triage_of(&isf, &mut g, crashed));
    let want = expected(&spec, crashed);
    let pslist = support::fixture::example_binary("pslist");
    let run = |args: &[&str], profiles: &std::path::Path| {
        let out = Command::new(&pslist)
            .args(args)
            .arg(&path)
            .env("XENVMI_WINDOWS_PROFILES", profiles)
            .env("XENVMI_CACHE", "off")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let fault = spec.drivers[1].base + 0x1234;

    let v: serde_json::Value = serde_json::from_str(&run(&["--json"], &isf_dir())).unwrap();
    assert_eq!(v["format"], "Windows triage dump");
    let t = &v["triage"];
    assert_eq!(t["build"], build);
    assert_eq!(t["processors"], N_CPUS as u64);
    assert_eq!(t["bugcheck"]["code"], "0xd1");
    assert_eq!(t["bugcheck"]["in_drivers"][0]["parameter"], 4);
    let in_driver = format!("{}+0x1234", spec.drivers[1].name);
    assert_eq!(t["bugcheck"]["in_drivers"][0]["in"], in_driver.as_str());
    assert_eq!(t["context"]["rip"], format!("{fault:#x}"));
    assert_eq!(t["context"]["in"], in_driver.as_str());
    let c = &t["crashing"];
    assert_eq!(c["pid"], want.pid);
    assert_eq!(c["ppid"], want.ppid);
    assert_eq!(c["name"], want.name.as_str());
    assert_eq!(c["thread_id"], want.thread_id);
    assert_eq!(c["processor"], crashed as u64);
    assert_eq!(c["picked_by"], "layout");
    let names: Vec<&str> = t["drivers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    let spec_names: Vec<&str> = spec.drivers.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, spec_names);
    for (d, s) in t["drivers"].as_array().unwrap().iter().zip(&spec.drivers) {
        assert_eq!(d["base"], format!("{:#x}", s.base));
        assert_eq!(d["size"], format!("{:#x}", s.size));
    }

    let file_arg = isf_dir().join(file);
    let text = run(
        &["--profile", file_arg.to_str().unwrap()],
        &dir.path().join("none"),
    );
    let line = format!(
        "crashing   pid {} ppid {} {} thread {:#x} on processor {crashed}",
        want.pid, want.ppid, want.name, want.thread_id
    );
    assert!(text.contains(&line), "{text}");
    for d in &spec.drivers {
        assert!(
            text.contains(&format!("{:#018x} {:>#10x}  {}", d.base, d.size, d.name)),
            "{text}"
        );
    }

    let bare = run(&[], &dir.path().join("none"));
    assert!(bare.contains("crashing   not named"), "{bare}");
    assert!(bare.contains("cannot be read"), "{bare}");
    assert!(
        bare.contains(&format!("{} drivers:", spec.drivers.len())),
        "{bare}"
    );
}

/// Writes the `windows_triage` fuzz seeds: for each build, a triage dump crashed on a
/// user process's processor and one on the idle processor, behind the build's offsets of
/// `TRIAGE_FIELDS`. Run by hand: `cargo test --test windows_triage -- --ignored write_fuzz_seeds`.
#[test]
#[ignore = "writes fuzz/seeds; run by hand when the seed format changes"]
fn write_fuzz_seeds() {
    use xenvmi::os::windows::triage::TRIAGE_FIELDS;
    let dir = support::fixture::repo_root().join("fuzz/seeds/windows_triage");
    std::fs::create_dir_all(&dir).unwrap();
    for (file, build) in PROFILES {
        let isf = load_isf(file);
        let mut g = WinGuest::build(&isf, WinSpec::with_cpus(build, 3));
        for crashed in [1, 2] {
            let mut seed = Vec::new();
            for (t, f) in TRIAGE_FIELDS {
                let off = isf.field(t, f).map_or(0xffff, |x| x.offset as u16);
                seed.extend_from_slice(&off.to_le_bytes());
            }
            seed.extend(triage_of(&isf, &mut g, crashed));
            std::fs::write(dir.join(format!("{build}-cpu{crashed}")), seed).unwrap();
        }
    }
}

/// A directory that is a symbol store holding the kernel's image (under the first driver's
/// name, `TimeDateStamp` and `SizeOfImage`, as debuggers fetch it) picks the profile by the
/// image's CodeView GUID and age, whatever other profiles it holds; an image there that is not
/// the dump's kernel is an error naming it.
#[test]
fn a_symbol_store_with_the_kernel_image_picks_the_profile_by_guid() {
    use xenvmi::os::windows::triage::ProfilePick;
    let store = Scratch::new("triage-store");
    for (file, _) in PROFILES {
        std::fs::copy(isf_dir().join(file), store.path().join(file)).unwrap();
    }
    let (file, build) = PROFILES[1];
    let isf = load_isf(file);
    let mut g = WinGuest::build(&isf, WinSpec::with_cpus(build, N_CPUS));
    let dir = Scratch::new("triage-store-dump");
    let path = write(dir.path(), "mini.dmp", &triage_of(&isf, &mut g, 3));
    let dump = TriageDump::open(&path).unwrap();
    let kernel = dump.drivers[0].clone().unwrap();
    // The kernel image: the guest's ntoskrnl header page as a file (SizeOfHeaders covering
    // the page, so the debug directory's RVA is its file offset), with the driver entry's
    // TimeDateStamp and SizeOfImage.
    let mut image = g.kread(g.spec.kernel_base, 0x1000);
    let pe = u32::from_le_bytes(image[0x3c..0x40].try_into().unwrap()) as usize;
    image[pe + 8..pe + 12].copy_from_slice(&kernel.timestamp.to_le_bytes());
    image[pe + 24 + 56..pe + 24 + 60].copy_from_slice(&kernel.size.to_le_bytes());
    image[pe + 24 + 60..pe + 24 + 64].copy_from_slice(&0x1000u32.to_le_bytes());
    let key = format!("{:08X}{:x}", kernel.timestamp, kernel.size);
    let at = store.path().join(&kernel.name).join(key);
    std::fs::create_dir_all(&at).unwrap();
    std::fs::write(at.join(&kernel.name), &image).unwrap();

    let r = crashing_process(&dump, &WindowsProfile::Directory(store.path().into())).unwrap();
    assert_eq!(r.process, expected(&g.spec, 3));
    assert_eq!(r.tried, 1);
    assert_eq!(r.profiles.len(), 1);
    assert!(r.profiles[0].ends_with(file), "{:?}", r.profiles);
    let (guid, age) = xenvmi::os::windows::isf_pdb_id(&isf).unwrap();
    match r.picked_by {
        ProfilePick::KernelImage {
            guid: g2, age: a2, ..
        } => assert_eq!((g2, a2), (guid, age)),
        other => panic!("{other:?}"),
    }

    // The same key holding another image: refused by name.
    image[pe + 8] ^= 1;
    std::fs::write(at.join(&kernel.name), &image).unwrap();
    let e = crashing_process(&dump, &WindowsProfile::Directory(store.path().into()))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&kernel.name) && e.contains("TimeDateStamp"),
        "{e}"
    );
}
