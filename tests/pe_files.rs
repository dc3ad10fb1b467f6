//! The PE parser on real 64-bit PE files (Wine 8.0's ntoskrnl.exe, hal.dll, ntdll.dll and
//! kernel32.dll from Debian's libwine, downloaded by `scripts/setup.sh`), checked against
//! binutils' `objdump -p` of the same files, then against itself after loading each file into
//! a synthetic guest the way the Windows loader lays images out (headers, then every section
//! at its RVA).

mod support;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;

use support::windows_guest::WinGuest;
use xenvmi::mem::{AddressSpace, GuestMemory, PagingMode};
use xenvmi::os::pe::{Export, FileImage, MappedImage, Pe};
use xenvmi::Gva;

const FILES: [&str; 4] = ["ntoskrnl.exe", "hal.dll", "ntdll.dll", "kernel32.dll"];

fn wine_file(name: &str) -> PathBuf {
    let p = support::fixture::repo_root()
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
type ObjdumpExports = HashMap<u32, (u32, u32, Option<String>, Vec<String>)>;

fn objdump_exports(path: &PathBuf) -> (ObjdumpExports, u64, u32, String) {
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

fn check_exports(exports: &[Export], want: &ObjdumpExports, base: u32, what: &str) {
    let with_entry = want
        .values()
        .filter(|e| e.1 != 0 || !e.3.is_empty())
        .count();
    assert_eq!(exports.len(), with_entry, "{what}: export count");
    for e in exports {
        let idx = e.ordinal - base;
        let w = &want[&idx];
        assert_eq!((e.ordinal, e.rva), (w.0, w.1), "{what}: index {idx}");
        assert_eq!(e.forwarder, w.2, "{what}: forwarder of index {idx}");
        match &e.name {
            Some(n) => assert!(w.3.contains(n), "{what}: {n} not among {:?}", w.3),
            None => assert!(w.3.is_empty(), "{what}: index {idx} has names {:?}", w.3),
        }
    }
}

#[test]
fn real_pe_files_parse_like_objdump_reads_them() {
    for f in FILES {
        let path = wine_file(f);
        let bytes = std::fs::read(&path).unwrap();
        let pe = Pe::parse(FileImage::new(&bytes, f)).unwrap();
        let (want, image_base, size_of_image, dll_name) = objdump_exports(&path);
        let h = pe.headers();
        assert_eq!(h.machine, 0x8664);
        assert!(h.pe32_plus);
        assert_eq!(h.image_base, image_base, "{f}");
        assert_eq!(h.size_of_image, size_of_image, "{f}");
        let ex = pe.exports().unwrap();
        assert_eq!(ex.dll_name(), Some(dll_name.as_str()), "{f}");
        // objdump lists (index, biased ordinal) pairs: the ordinal base is their difference.
        let base = want.iter().map(|(i, w)| w.0 - i).next().unwrap();
        let all: Vec<Export> = ex.map(|e| e.unwrap()).collect();
        assert!(all.len() > 50, "{f}: {} exports", all.len());
        check_exports(&all, &want, base, f);
        // Wine's images have no debug directory: no CodeView record, and no error for it.
        assert_eq!(pe.codeview().unwrap(), None);
    }
}

#[test]
fn real_pe_files_read_from_guest_memory_match_the_files() {
    let mut g = WinGuest::empty();
    let mut placed = Vec::new();
    for (i, f) in FILES.iter().enumerate() {
        let bytes = std::fs::read(wine_file(f)).unwrap();
        let file_pe = Pe::parse(FileImage::new(&bytes, *f)).unwrap();
        let base = 0xffff_f806_1000_0000u64 + i as u64 * 0x0100_0000;
        let h = file_pe.headers();
        let k = g.kernel_pml4;
        g.write(k, base, &bytes[..h.size_of_headers as usize]);
        for s in &h.sections {
            let n = s.raw_size.min(if s.virtual_size == 0 {
                s.raw_size
            } else {
                s.virtual_size
            });
            let src = &bytes[s.raw_offset as usize..(s.raw_offset + n) as usize];
            g.write(k, base + s.virtual_address as u64, src);
        }
        let file_exports: Vec<Export> = file_pe.exports().unwrap().map(|e| e.unwrap()).collect();
        placed.push((f, base, file_pe.headers().clone(), file_exports));
    }
    let root = g.kernel_pml4;
    let mem = GuestMemory::new(g.snapshot());
    let space = AddressSpace::from_cr3(root, PagingMode::Level4);
    for (f, base, headers, exports) in placed {
        let pe = Pe::parse(MappedImage::new(&mem, space, Gva(base), *f)).unwrap();
        assert_eq!(pe.headers(), &headers, "{f}");
        let mapped: Vec<Export> = pe.exports().unwrap().map(|e| e.unwrap()).collect();
        assert_eq!(mapped, exports, "{f}");
        // A named export resolves to the same RVA both ways.
        let named = exports
            .iter()
            .find(|e| e.name.is_some() && e.forwarder.is_none())
            .unwrap();
        assert_eq!(
            pe.export_rva(named.name.as_deref().unwrap()).unwrap(),
            Some(named.rva)
        );
    }
}
