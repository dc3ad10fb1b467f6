//! Wine 8.0's 64-bit PE files (from Debian's libwine, downloaded by `scripts/setup.sh`) and
//! what binutils' `objdump -p` says about their export tables: ground truth for the PE
//! parser and for driver symbols.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;

pub const FILES: [&str; 4] = ["ntoskrnl.exe", "hal.dll", "ntdll.dll", "kernel32.dll"];

pub fn wine_file(name: &str) -> PathBuf {
    let p = super::fixture::repo_root()
        .join("target/xenvmi-fixtures/wine")
        .join(name);
    assert!(
        p.exists(),
        "{} is missing: run `bash scripts/setup.sh` (it downloads Debian's libwine)",
        p.display()
    );
    p
}

/// What `objdump -p` says about the export table: index -> (ordinal, rva, forwarder, names).
pub type ObjdumpExports = HashMap<u32, (u32, u32, Option<String>, Vec<String>)>;

pub fn objdump_exports(path: &PathBuf) -> (ObjdumpExports, u64, u32, String) {
    let out = Command::new("objdump")
        .arg("-p")
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let mut map: ObjdumpExports = HashMap::new();
    let mut image_base = 0;
    let mut size_of_image = 0;
    let mut dll_name = String::new();
    let mut section = "";
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("ImageBase\t\t") {
            image_base = u64::from_str_radix(v.trim(), 16).unwrap();
        }
        if let Some(v) = line.strip_prefix("SizeOfImage\t\t") {
            size_of_image = u32::from_str_radix(v.trim(), 16).unwrap();
        }
        // Name \t\t\t\t000000000003d0e0 ntoskrnl.exe  (in the export directory dump)
        if let Some(v) = line.strip_prefix("Name ") {
            if let Some(n) = v.split_whitespace().nth(1) {
                dll_name = n.to_string();
            }
        }
        if line.starts_with("Export Address Table -- Ordinal Base") {
            section = "eat";
            continue;
        }
        if line.starts_with("[Ordinal/Name Pointer] Table") {
            section = "names";
            continue;
        }
        if line.trim().is_empty() {
            section = "";
            continue;
        }
        let l = line.trim();
        match section {
            "eat" => {
                // [   0] +base[   1] 20260 Export RVA
                // [   0] +base[   1] 4561f Forwarder RVA -- NTDLL.RtlAcquireSRWLockExclusive
                let idx: u32 = l[1..l.find(']').unwrap()].trim().parse().unwrap();
                let rest = &l[l.find("+base[").unwrap() + 6..];
                let ord: u32 = rest[..rest.find(']').unwrap()].trim().parse().unwrap();
                let rest = rest[rest.find(']').unwrap() + 1..].trim();
                let rva = u32::from_str_radix(rest.split_whitespace().next().unwrap(), 16).unwrap();
                let fwd = rest.split_once(" -- ").map(|(_, f)| f.to_string());
                map.entry(idx).or_default();
                let e = map.get_mut(&idx).unwrap();
                e.0 = ord;
                e.1 = rva;
                e.2 = fwd;
            }
            "names" => {
                let idx: u32 = l[1..l.find(']').unwrap()].trim().parse().unwrap();
                let name = l[l.find(']').unwrap() + 1..].trim().to_string();
                map.entry(idx).or_default().3.push(name);
            }
            _ => {}
        }
    }
    (map, image_base, size_of_image, dll_name)
}
