//! PDB profiles (src/os/profile/pdb.rs) against ground truth: fixtures/pdb/ntkrnlmp.pdb, built
//! by LLVM from fixtures/pdb/kernel.c (fixtures/pdb/build.sh). Expected values come from
//! - the C source under the x64 MSVC layout rules (sizes and offsets worked out by hand below),
//! - the linker's map (fixtures/pdb/kernel.map, "Publics by Value": RVAs of the globals),
//! - Volatility3's pdbconv run on the same PDB (fixtures/pdb/ntkrnlmp.pdbconv.json).
//!
//! Plus the symbol-store lookup on a synthetic Windows guest (tests/support/windows_guest.rs)
//! and hostile PDBs.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use support::windows_guest::*;
use xenvmi::mem::GuestMemory;
use xenvmi::os::profile::isf::Isf;
use xenvmi::os::profile::pdb::{symbol_store_path, Pdb};
use xenvmi::os::profile::{Field, TypeSource};
use xenvmi::os::windows::{Windows, WindowsProfile};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/pdb")
}

fn pdb() -> Pdb {
    Pdb::from_file(dir().join("ntkrnlmp.pdb")).unwrap()
}

fn pdbconv() -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir().join("ntkrnlmp.pdbconv.json")).unwrap()).unwrap()
}

#[test]
fn committed_pdb_is_what_build_sh_makes_from_kernel_c() {
    // clang, lld-link and llvm come from scripts/setup.sh; the build is reproducible.
    for tool in ["clang", "lld-link"] {
        let found = std::process::Command::new(tool).arg("--version").output();
        assert!(
            found.is_ok_and(|o| o.status.success()),
            "{tool} is missing: run `bash scripts/setup.sh` (it installs clang, lld and llvm)"
        );
    }
    let out = std::env::temp_dir().join(format!("xenvmi-pdb-build-{}", std::process::id()));
    let status = std::process::Command::new("bash")
        .arg(dir().join("build.sh"))
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success(), "fixtures/pdb/build.sh failed");
    for file in ["ntkrnlmp.pdb", "kernel.map", "anon.pdb", "anon.map"] {
        let built = std::fs::read(out.join(file)).unwrap();
        let committed = std::fs::read(dir().join(file)).unwrap();
        assert!(
            built == committed,
            "fixtures/pdb/{file} is not what build.sh makes from kernel.c: rebuild it (and ntkrnlmp.pdbconv.json, see fixtures/pdb/README.md)"
        );
    }
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn layouts_match_the_c_source() {
    let p = pdb();
    let f = |t: &str, path: &str| p.field(t, path).unwrap_or_else(|| panic!("{t}.{path}"));
    let at = |offset, size| Field {
        offset,
        size: Some(size),
    };
    // Sizes and offsets by the x64 MSVC rules: natural alignment, bitfields share a unit of
    // their declared type, structures padded to their largest member's alignment.
    for (ty, size) in [
        ("_LIST_ENTRY", 16),
        ("_UNICODE_STRING", 16),
        ("_VALUE_PARTS", 8),
        ("_LARGE_VALUE", 8),
        ("_FLAGS2_BITS", 4),
        ("_FLAGS2", 4),
        ("_KPROCESS", 40),
        ("_EPROCESS", 128),
    ] {
        assert_eq!(p.struct_size(ty), Some(size), "sizeof({ty})");
    }
    assert_eq!(f("_LIST_ENTRY", "Blink"), at(8, 8));
    assert_eq!(f("_UNICODE_STRING", "MaximumLength"), at(2, 2));
    assert_eq!(f("_UNICODE_STRING", "Buffer"), at(8, 8));
    assert_eq!(f("_LARGE_VALUE", "QuadPart"), at(0, 8));
    assert_eq!(f("_LARGE_VALUE", "Bytes"), at(0, 8));
    assert_eq!(f("_LARGE_VALUE", "u.HighPart"), at(4, 4));
    assert_eq!(f("_FLAGS2", "Bits.AccountingFolded"), at(0, 4));
    assert_eq!(f("_KPROCESS", "DirectoryTableBase"), at(8, 8));
    assert_eq!(f("_KPROCESS", "ProcessListEntry"), at(16, 16));
    assert_eq!(f("_KPROCESS", "Flags"), at(32, 1));
    assert_eq!(f("_KPROCESS", "Spare"), at(36, 4));
    assert_eq!(f("_KPROCESS", "Priority"), at(36, 4));
    assert_eq!(f("_EPROCESS", "Pcb"), at(0, 40));
    assert_eq!(f("_EPROCESS", "Pcb.ProcessListEntry.Blink"), at(24, 8));
    assert_eq!(f("_EPROCESS", "UniqueProcessId"), at(40, 8));
    assert_eq!(f("_EPROCESS", "ActiveProcessLinks"), at(48, 16));
    assert_eq!(f("_EPROCESS", "Flags2"), at(64, 4));
    assert_eq!(f("_EPROCESS", "ImageFileName"), at(68, 15));
    assert_eq!(f("_EPROCESS", "State"), at(84, 4));
    assert_eq!(f("_EPROCESS", "CreateTime.u.HighPart"), at(92, 4));
    assert_eq!(f("_EPROCESS", "Token"), at(96, 8));
    assert_eq!(f("_EPROCESS", "ImagePathName.Buffer"), at(112, 8));
    assert_eq!(f("_EPROCESS", "Parent"), at(120, 8));
    assert_eq!(p.field("_EPROCESS", "Nope"), None);
    assert_eq!(p.field("_NOPE", "Pcb"), None);
    let e = p.require("_EPROCESS", "Nope").unwrap_err().to_string();
    assert!(e.contains("ntkrnlmp.pdb") && e.contains("Nope"), "{e}");
    // The enum, as declared.
    assert_eq!(
        p.enum_constants("_PROCESS_STATE").unwrap(),
        [
            ("ProcessCreated".to_string(), 0),
            ("ProcessRunning".to_string(), 1),
            ("ProcessExiting".to_string(), 5),
            ("ProcessGone".to_string(), -2),
            ("ProcessLast".to_string(), 0x7fff_ffff),
        ]
    );
    assert_eq!(p.enum_size("_PROCESS_STATE"), Some(4));
    assert_eq!(p.enum_constant("_PROCESS_STATE", "ProcessGone"), Some(-2));
}

#[test]
fn anonymous_members_are_searched_through() {
    // anon.c: anonymous unions and structures, as Windows headers use them. (clang, like
    // MSVC, also lists their members in the enclosing structure's own field list.)
    let p = Pdb::from_file(dir().join("anon.pdb")).unwrap();
    let f = |t: &str, path: &str| p.field(t, path).unwrap_or_else(|| panic!("{t}.{path}"));
    let at = |offset, size| Field {
        offset,
        size: Some(size),
    };
    // union { long; struct { 4 x uchar } } at 0 (4 bytes), SignalState at 4, the pointer pair
    // at 8 (aligned to 8): 24 bytes.
    assert_eq!(p.struct_size("_DISPATCHER_HEADER"), Some(24));
    assert_eq!(f("_DISPATCHER_HEADER", "Lock"), at(0, 4));
    assert_eq!(f("_DISPATCHER_HEADER", "Size"), at(2, 1));
    assert_eq!(f("_DISPATCHER_HEADER", "Reserved1"), at(3, 1));
    assert_eq!(f("_DISPATCHER_HEADER", "SignalState"), at(4, 4));
    assert_eq!(f("_DISPATCHER_HEADER", "WaitListBlink"), at(16, 8));
    // Header (24), CycleTime at 24, the bitfield/int union at 32: 40 bytes.
    assert_eq!(p.struct_size("_KTHREAD"), Some(40));
    assert_eq!(f("_KTHREAD", "Header.Signaling"), at(1, 1));
    assert_eq!(f("_KTHREAD", "Header.WaitListFlink"), at(8, 8));
    assert_eq!(f("_KTHREAD", "CycleTime"), at(24, 8));
    assert_eq!(f("_KTHREAD", "ApcQueueable"), at(32, 4));
    assert_eq!(f("_KTHREAD", "MiscFlags"), at(32, 4));
    // The five anonymous aggregates of anon.c (three in _DISPATCHER_HEADER, two in _KTHREAD)
    // are kept apart from each other, though all are `<unnamed-tag>`.
    let unnamed = p
        .type_names()
        .filter(|n| n.contains("<unnamed-tag>"))
        .count();
    assert_eq!(unnamed, 5);
    let expected = map_publics("anon.map");
    assert_eq!(expected.len(), 1);
    assert_eq!(
        p.symbols().get("KiInitialThread"),
        expected.get("KiInitialThread").copied()
    );
}

/// `name -> RVA` from a linker map's "Publics by Value" (`SSSS:OOOOOOOO  name  Rva+Base`).
fn map_publics(file: &str) -> BTreeMap<String, u64> {
    let map = std::fs::read_to_string(dir().join(file)).unwrap();
    let base_line = map
        .lines()
        .find(|l| l.contains("Preferred load address is"))
        .unwrap();
    let base = u64::from_str_radix(base_line.split_whitespace().last().unwrap(), 16).unwrap();
    let mut out = BTreeMap::new();
    let mut in_publics = false;
    for line in map.lines() {
        if line.contains("Publics by Value") {
            in_publics = true;
            continue;
        }
        if line.contains("entry point at") {
            break;
        }
        let w: Vec<&str> = line.split_whitespace().collect();
        if in_publics && w.len() >= 3 && w[0].contains(':') {
            let va = u64::from_str_radix(w[2], 16).unwrap();
            out.insert(w[1].to_string(), va - base);
        }
    }
    out
}

#[test]
fn symbols_are_the_linker_maps_rvas() {
    let p = pdb();
    let expected = map_publics("kernel.map");
    assert_eq!(
        expected.len(),
        8,
        "kernel.c defines 5 globals and 3 functions"
    );
    for (name, rva) in &expected {
        assert_eq!(p.symbols().get(name), Some(*rva), "{name}");
    }
    assert_eq!(p.symbols().len(), expected.len());
    assert_eq!(p.symbols().kind("PsGetProcessId"), Some(b'T'));
    assert_eq!(p.symbols().kind("PsActiveProcessHead"), Some(b'D'));
}

#[test]
fn agrees_with_volatility3_pdbconv() {
    let p = pdb();
    let json = pdbconv();
    // The identity the symbol store and the kernel's CodeView record use.
    let meta = &json["metadata"]["windows"]["pdb"];
    assert_eq!(p.guid(), meta["GUID"].as_str().unwrap());
    assert_eq!(u64::from(p.age()), meta["age"].as_u64().unwrap());
    // Every structure: size and every field's offset, by both readers.
    let isf = Isf::from_file(dir().join("ntkrnlmp.pdbconv.json")).unwrap();
    let user_types = json["user_types"].as_object().unwrap();
    assert_eq!(user_types.len(), 8);
    let mut ours: Vec<&str> = p.type_names().collect();
    ours.sort();
    assert_eq!(
        ours,
        user_types.keys().map(String::as_str).collect::<Vec<_>>()
    );
    let mut fields = 0;
    for (name, t) in user_types {
        assert_eq!(p.struct_size(name), t["size"].as_u64(), "{name}");
        let theirs = t["fields"].as_object().unwrap();
        let mut mine: Vec<(&str, u64)> = p.members(name).unwrap();
        mine.sort();
        let mut want: Vec<(&str, u64)> = theirs
            .iter()
            .map(|(f, v)| (f.as_str(), v["offset"].as_u64().unwrap()))
            .collect();
        want.sort();
        assert_eq!(mine, want, "{name}");
        for field in theirs.keys() {
            let a = p.field(name, field).unwrap();
            let b = isf.field(name, field).unwrap();
            assert_eq!(a.offset, b.offset, "{name}.{field}");
            if let Some(size) = b.size {
                assert_eq!(a.size, Some(size), "{name}.{field}");
            }
            fields += 1;
        }
    }
    assert_eq!(fields, 2 + 3 + 2 + 3 + 2 + 2 + 6 + 10);
    // Enums (pdbconv writes constants as unsigned values of the enum's size).
    let enums = json["enums"].as_object().unwrap();
    assert_eq!(enums.len(), 1);
    for (name, e) in enums {
        let size = e["size"].as_u64().unwrap();
        assert_eq!(p.enum_size(name), Some(size));
        let consts = e["constants"].as_object().unwrap();
        assert_eq!(p.enum_constants(name).unwrap().len(), consts.len());
        for (c, v) in consts {
            let mine = p.enum_constant(name, c).unwrap() as u64 & (u64::MAX >> (64 - 8 * size));
            assert_eq!(mine, v.as_u64().unwrap(), "{name}::{c}");
        }
    }
    // Every symbol, by both readers.
    let symbols = json["symbols"].as_object().unwrap();
    assert_eq!(symbols.len(), p.symbols().len());
    for (name, s) in symbols {
        let rva = s["address"].as_u64().unwrap();
        assert_eq!(p.symbols().get(name), Some(rva), "{name}");
        assert_eq!(isf.symbols().get(name), Some(rva), "{name}");
    }
}

#[test]
fn symbol_store_lookup_by_guid_and_age() {
    let (file, build_no) = PROFILES[1];
    let g = WinGuest::build(&load_isf(file), WinSpec::small(build_no));
    let regs = g.registers();
    let mem = GuestMemory::new(g.snapshot());
    // ntkrnlmp-<GUID>-<age>.json.xz: the kernel's CodeView identity.
    let mut id = file.trim_end_matches(".json.xz").split('-').skip(1);
    let (guid, age) = (
        id.next().unwrap(),
        id.next().unwrap().parse::<u32>().unwrap(),
    );
    let root = std::env::temp_dir().join(format!("xenvmi-symstore-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let right = symbol_store_path(&root, "ntkrnlmp.pdb", guid, age).unwrap();
    assert_eq!(
        right,
        root.join(format!("ntkrnlmp.pdb/{guid}{age:X}/ntkrnlmp.pdb"))
    );
    // Under the wrong age: not found; the error names GUID, age and where the PDB should be.
    let wrong = symbol_store_path(&root, "ntkrnlmp.pdb", guid, age + 1).unwrap();
    std::fs::create_dir_all(wrong.parent().unwrap()).unwrap();
    std::fs::copy(dir().join("ntkrnlmp.pdb"), &wrong).unwrap();
    let e = Windows::discover(&mem, &regs, WindowsProfile::Directory(root.clone()))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no profile for ntkrnlmp.pdb")
            && e.contains(&format!("GUID {guid} age {age}"))
            && e.contains(&right.display().to_string()),
        "{e}"
    );
    // Under the right GUID and age: found and read. (It is the small test PDB, not this
    // kernel's, so discovery then misses the kernel's structures: named in the error, with
    // the store path as the profile's name.)
    std::fs::create_dir_all(right.parent().unwrap()).unwrap();
    std::fs::copy(dir().join("ntkrnlmp.pdb"), &right).unwrap();
    let e = Windows::discover(&mem, &regs, WindowsProfile::Directory(root.clone()))
        .unwrap_err()
        .to_string();
    assert!(e.contains(&right.display().to_string()), "{e}");
    assert!(!e.contains("no profile for"), "{e}");
    // The same PDB passed as a file is checked against the kernel's GUID and age.
    let e = Windows::discover(&mem, &regs, WindowsProfile::Isf(dir().join("ntkrnlmp.pdb")))
        .unwrap_err()
        .to_string();
    assert!(e.contains(guid) && e.contains(pdb().guid()), "{e}");
    std::fs::remove_dir_all(&root).unwrap();
}

/// Every hostile variant is an error naming the file (or parses), never a panic or a hang.
fn check(data: Vec<u8>, what: &str) {
    if let Err(e) = Pdb::from_bytes(data, "hostile.pdb") {
        let s = e.to_string();
        assert!(s.contains("hostile.pdb"), "{what}: {s}");
    }
}

#[test]
fn hostile_pdbs_are_clear_errors() {
    let good = std::fs::read(dir().join("ntkrnlmp.pdb")).unwrap();
    // Wrong magic.
    let mut bad = good.clone();
    bad[0] ^= 0xff;
    let e = Pdb::from_bytes(bad, "hostile.pdb").unwrap_err().to_string();
    assert!(e.contains("hostile.pdb") && e.contains("MSF"), "{e}");
    // Empty and truncated anywhere.
    assert!(Pdb::from_bytes(Vec::new(), "hostile.pdb").is_err());
    for n in (0..good.len())
        .step_by(509)
        .chain([31, 32, 33, 55, 56, 4095, 4096])
    {
        let e = Pdb::from_bytes(good[..n].to_vec(), "hostile.pdb").unwrap_err();
        assert!(e.to_string().contains("hostile.pdb"), "{n}: {e}");
    }
    // Huge counts in the MSF superblock: block size, free map, number of blocks,
    // directory size, and a huge word at the start of every block (stream directory, stream
    // sizes, record lengths and counts).
    for (at, v) in [
        (32, 0xffff_ffffu32),
        (36, 0xffff_ffff),
        (40, 0xffff_ffff),
        (44, 0xffff_fff0),
        (52, 0xffff_ffff),
    ] {
        let mut bad = good.clone();
        bad[at..at + 4].copy_from_slice(&v.to_le_bytes());
        check(bad, &format!("superblock word at {at}"));
    }
    for block in 1..good.len() / 4096 {
        for word in [0usize, 1, 2, 3, 4, 8, 16] {
            let mut bad = good.clone();
            let at = block * 4096 + word * 4;
            bad[at..at + 4].copy_from_slice(&0x7fff_fff0u32.to_le_bytes());
            check(bad, &format!("block {block} word {word}"));
        }
    }
    // The TPI header's index range (version 20040203, header size 56, minimum 0x1000, then the
    // maximum): a maximum far past the records, and one below the minimum.
    let tpi = good
        .windows(12)
        .position(|w| w == [0x0b, 0xca, 0x31, 0x01, 56, 0, 0, 0, 0, 0x10, 0, 0])
        .expect("TPI header");
    for max in [0xffff_ffffu32, 0x0fff] {
        let mut bad = good.clone();
        bad[tpi + 12..tpi + 16].copy_from_slice(&max.to_le_bytes());
        let e = Pdb::from_bytes(bad, "hostile.pdb").unwrap_err().to_string();
        assert!(e.contains("hostile.pdb") && e.contains("TPI"), "{e}");
    }
    // Every byte of the type and symbol records flipped in turn (a deterministic sweep).
    for at in (4096..good.len()).step_by(7) {
        let mut bad = good.clone();
        bad[at] ^= 0xa5;
        check(bad, &format!("byte {at}"));
    }
}
