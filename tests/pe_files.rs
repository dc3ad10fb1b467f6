//! The PE parser on real 64-bit PE files (Wine 8.0's ntoskrnl.exe, hal.dll, ntdll.dll and
//! kernel32.dll from Debian's libwine, downloaded by `scripts/setup.sh`), checked against
//! binutils' `objdump -p` of the same files, then against itself after loading each file into
//! a synthetic guest the way the Windows loader lays images out (headers, then every section
//! at its RVA).

mod support;

use support::windows_guest::WinGuest;
use support::wine::{objdump_exports, wine_file, ObjdumpExports, FILES};
use xenvmi::mem::{AddressSpace, GuestMemory, PagingMode};
use xenvmi::os::pe::{Export, FileImage, MappedImage, Pe};
use xenvmi::Gva;

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
        g.map_pe_file(base, &bytes);
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
