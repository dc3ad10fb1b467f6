//! Replays fuzz seeds (`fuzz/seeds/<target>/`) and every input a fuzzer ever found failing
//! (`fuzz/regressions/<target>/`, committed when fixed) through the same parser calls as the
//! byte-input fuzz targets, in ordinary `cargo test` (no fuzzer needed).

use std::path::Path;

use xenvmi::backend::snapshot::{Format, Snapshot};
use xenvmi::backend::PhysicalMemory;
use xenvmi::os::linux::Offsets;
use xenvmi::os::profile::btf::Btf;
use xenvmi::os::profile::isf::Isf;
use xenvmi::os::profile::{kallsyms, SymbolTable, TypeSource};
use xenvmi::Gpa;

fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut v = Vec::new();
    for dir in ["seeds", "regressions"] {
        let Ok(rd) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        for e in rd.flatten() {
            if e.path().is_file() {
                v.push((
                    e.path().display().to_string(),
                    std::fs::read(e.path()).unwrap(),
                ));
            }
        }
    }
    v
}

#[test]
fn snapshot_inputs() {
    let all = inputs("snapshot");
    assert!(!all.is_empty(), "seeds missing");
    let mut windows = 0;
    for (name, data) in all {
        for f in [
            None,
            Some(Format::QemuElf),
            Some(Format::Lime),
            Some(Format::Raw),
            Some(Format::WindowsCrashDump),
            Some(Format::XenCore),
        ] {
            if let Ok(s) = Snapshot::from_bytes(data.clone(), f) {
                for r in s.regions() {
                    let _ = s.read_physical_u64(Gpa(r.gpa));
                }
                let _ = s.windows_dump_info();
            }
        }
        // The Windows crash dump seeds must be valid, or the fuzzer starts from nothing.
        if name.contains("/seeds/snapshot/windows-") {
            let s = Snapshot::from_bytes(data, None).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(s.format(), Format::WindowsCrashDump, "{name}");
            assert!(s.windows_dump_info().is_some(), "{name}");
            for r in s.regions() {
                s.read_physical_u64(Gpa(r.gpa + r.len - 8))
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
            }
            windows += 1;
        }
    }
    assert!(windows >= 2, "Windows crash dump seeds missing");
}

#[test]
fn btf_inputs() {
    let all = inputs("btf");
    assert!(!all.is_empty(), "seeds missing");
    let mut parsed = 0;
    for (_, data) in all {
        if let Ok(b) = Btf::parse(data, "seed") {
            parsed += 1;
            for id in 0..b.type_count() as u32 {
                let _ = (b.name(id), b.resolve(id), b.members(id).count());
            }
            let _ = (b.field("task_struct", "tasks"), Offsets::resolve(&b));
        }
    }
    assert!(parsed > 0, "no BTF seed parsed");
}

#[test]
fn kallsyms_inputs() {
    let all = inputs("kallsyms_image");
    assert!(!all.is_empty(), "seeds missing");
    for (name, data) in all {
        if name.contains("/seeds/") {
            // Seeds are well-formed tables of real symbols: they must decode.
            let t = kallsyms::find_in_image(&data)
                .and_then(|l| l.decode(&data, "seed"))
                .unwrap();
            assert!(t.get("_text").is_some() || t.len() > 100, "{name}");
        } else {
            let _ = kallsyms::find_in_image(&data).and_then(|l| l.decode(&data, "seed"));
        }
    }
}

#[test]
fn symbol_text_inputs() {
    let all = inputs("symbol_text");
    assert!(!all.is_empty(), "seeds missing");
    for (_, data) in all {
        if let Ok(t) = SymbolTable::parse_text(&String::from_utf8_lossy(&data), "seed") {
            for (n, _, _) in t.iter() {
                assert!(t.get(n).is_some());
            }
        }
    }
}

#[test]
fn isf_inputs() {
    let all = inputs("isf");
    assert!(!all.is_empty(), "seeds missing");
    for (name, data) in all {
        let isf = Isf::from_bytes(&data, name.clone());
        if name.contains("/seeds/") {
            // The reduced real ISF resolves every offset the Linux walkers need.
            let isf = isf.unwrap();
            Offsets::resolve(&isf).unwrap();
            assert!(isf.field("task_struct", "comm").is_some());
        }
    }
}

#[path = "../fuzz/capi_harness.rs"]
mod capi_harness;

#[test]
fn capi_inputs() {
    // The capi target's own harness: C calls with the checks it makes (no panic, strings
    // terminated, nothing left paused or changed after a session).
    let all = inputs("capi");
    assert!(!all.is_empty(), "seeds missing");
    for (name, data) in all {
        eprintln!("{name}");
        capi_harness::run(&data);
    }
}

#[path = "../fuzz/pe_harness.rs"]
mod pe_harness;

#[test]
fn pe_inputs() {
    // Kernel header pages laid out by the three real ntoskrnl ISFs' builds.
    let all = inputs("pe");
    assert!(!all.is_empty(), "seeds missing");
    for (name, data) in all {
        eprintln!("{name}");
        pe_harness::run(&data);
        if name.contains("/seeds/") {
            let pe = xenvmi::os::pe::Pe::parse(xenvmi::os::pe::FileImage::new(&data, &name))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(
                pe.codeview().unwrap().is_some(),
                "{name}: no CodeView record"
            );
        }
    }
}

#[path = "../fuzz/offset_types.rs"]
mod offset_types;

#[path = "../fuzz/windows_walk_harness.rs"]
mod windows_walk_harness;

#[test]
fn windows_walk_inputs() {
    // Seeds: small guests laid out by the real ISFs; regressions: inputs a fuzzer flagged
    // (`timeout-starved-region-scan`: over libFuzzer's 10 s of wall time while a CI build
    // starved the niced fuzzer; 0.2 s alone under ASan and coverage, milliseconds here).
    let all = inputs("windows_walk");
    assert!(!all.is_empty(), "seeds missing");
    for (name, data) in all {
        eprintln!("{name}");
        windows_walk_harness::run(&data);
    }
}

#[test]
fn windows_dtb_inputs() {
    // Seeds: the windows_walk seeds' guests (each with a low stub and a self-referencing
    // table) with mode bit 3, so that discovery has only memory.
    let all = inputs("windows_dtb");
    assert!(!all.is_empty(), "seeds missing");
    for (name, data) in all {
        eprintln!("{name}");
        windows_walk_harness::run_registerless(&data);
    }
}

#[path = "../fuzz/windows_triage_harness.rs"]
mod windows_triage_harness;

#[test]
fn windows_triage_inputs() {
    // Seeds: triage dumps of real-layout guests, one crashed in a process, one on the idle
    // processor, per ISF (`tests/windows_triage.rs` writes them).
    let all = inputs("windows_triage");
    assert!(all.len() >= 6, "seeds missing");
    for (name, data) in all {
        eprintln!("{name}");
        let read = windows_triage_harness::run(&data);
        assert!(
            read || !name.contains("/seeds/"),
            "{name}: the seed's process was not read"
        );
    }
}

#[path = "../fuzz/os_identify_harness.rs"]
mod os_identify_harness;

#[test]
fn os_identify_inputs() {
    // Seeds: the windows_dtb seeds' guests as raw memory (a low stub, a self-referencing
    // table), one of them again with a vCPU whose MSR_LSTAR is in the Windows kernel region
    // and one with a Linux banner written into it (`fuzz/make-seeds.py`).
    let all = inputs("os_identify");
    assert!(!all.is_empty(), "seeds missing");
    for (name, data) in all {
        eprintln!("{name}");
        os_identify_harness::run(&data);
    }
}

#[test]
fn journal_inputs() {
    // As fuzz/fuzz_targets/journal.rs: every accepted journal's header and lines parse back
    // to themselves. Both seeds (format 1 and the bound format 2) are journals.
    let all = inputs("journal");
    assert!(all.len() >= 2, "seeds missing");
    for (name, data) in all {
        let r = xenvmi::event::journal::inspect(&data);
        if name.contains("/seeds/") {
            assert!(r.is_ok(), "{name}: {:?}", r.err());
        }
        let Ok((owner, lines)) = r else { continue };
        let mut again = owner.header();
        again.push('\n');
        for l in &lines {
            again.push_str(l);
            again.push('\n');
        }
        let (o2, l2) = xenvmi::event::journal::inspect(again.as_bytes()).expect(&name);
        assert_eq!(o2, owner, "{name}");
        assert_eq!(l2, lines, "{name}");
    }
}

#[test]
fn manifest_inputs() {
    // As fuzz/fuzz_targets/manifest.rs: every accepted manifest written back parses to
    // itself. Both seeds are manifests.
    let all = inputs("manifest");
    assert!(all.len() >= 2, "seeds missing");
    for (name, data) in all {
        let r = xenvmi::attest::Manifest::parse(&data, &name);
        if name.contains("/seeds/") {
            assert!(r.is_ok(), "{name}: {:?}", r.err());
        }
        let Ok(m) = r else { continue };
        let again = m.to_json().to_string();
        assert_eq!(
            xenvmi::attest::Manifest::parse(again.as_bytes(), &name).expect(&name),
            m,
            "{name}"
        );
    }
}

#[test]
fn build_cache_inputs() {
    // The seeds are real cache files (the bundled 6.1 guest's build); each must parse.
    let all = inputs("build_cache");
    assert!(!all.is_empty(), "seeds missing");
    for (name, data) in all {
        let got = xenvmi::os::linux::parse_entry(&data);
        if name.contains("/seeds/") {
            let b = got.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(b
                .identity()
                .banner
                .starts_with("Linux version 6.1.0-56-amd64 "));
        }
    }
}

#[test]
fn profile_cache_inputs() {
    // The seeds are real profile cache files (pslist's, on the Windows 11 22000 guest); each
    // must parse, for the key its name gives.
    use xenvmi::os::profile::cache::parse_profile_entry;
    use xenvmi::os::windows::PROFILE_WANTED;
    let all = inputs("profile_cache");
    assert!(!all.is_empty(), "seeds missing");
    for (name, data) in all {
        let got = parse_profile_entry(&data, PROFILE_WANTED);
        if name.contains("/seeds/") {
            let e = got.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(name.ends_with(&e.key.file_name()), "{name} holds {}", e.key);
            assert_eq!(e.key.guid(), "0CE4A95C0CD782A7596B034D8648E585", "{name}");
            assert!(e.file.is_some(), "{name}");
            // The RVA the fixture ISF gives (what the ISF test suite reads from it).
            let isf = xenvmi::os::profile::isf::Isf::from_file(
                Path::new(env!("CARGO_MANIFEST_DIR")).join(
                    "fixtures/windows-isf/ntkrnlmp-0CE4A95C0CD782A7596B034D8648E585-1.json.xz",
                ),
            )
            .unwrap();
            assert_eq!(
                e.profile.symbols.get("PsActiveProcessHead"),
                isf.symbols().get("PsActiveProcessHead"),
                "{name}"
            );
        }
    }
}

#[test]
fn policy_config_inputs() {
    use xenvmi::alert::syslog::parse_target;
    use xenvmi::policy::{PolicyOptions, PolicySet, Remediation};
    let all = inputs("policy_config");
    assert!(!all.is_empty(), "seeds missing");
    for (name, data) in all {
        let text = String::from_utf8_lossy(&data);
        let spec = PolicySet::parse(&text, &PolicyOptions::default()).is_ok();
        let remediation = Remediation::parse(&text).is_ok();
        let target = parse_target(&text).is_ok();
        // Each seed is a valid example of one of the three, or the fuzzer starts from nothing.
        if name.contains("/seeds/") {
            assert!(spec || remediation || target, "{name} parses as nothing");
        }
    }
}

#[test]
fn pdb_inputs() {
    use xenvmi::os::profile::pdb::Pdb;
    let all = inputs("pdb");
    assert!(!all.is_empty(), "seeds missing");
    for (name, data) in all {
        let pdb = Pdb::from_bytes(data, name.clone());
        if name.contains("/seeds/") {
            // The seed is fixtures/pdb/ntkrnlmp.pdb (kernel.c): _EPROCESS is 128 bytes there.
            let pdb = pdb.unwrap();
            assert_eq!(pdb.struct_size("_EPROCESS"), Some(128));
        }
    }
}
