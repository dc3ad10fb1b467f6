//! Cost per region stays flat when a hostile image has very many: a sparse Windows bitmap dump
//! with 131,072 one-page regions and a QEMU-style ELF core with 65,534 one-page `PT_LOAD`s
//! (both written sparse: a few hundred KB on disk), enumerated through the C ABI and searched by
//! Linux discovery with no registers (its last-resort scan of all memory). Each stage's time
//! is printed (`--nocapture`) for docs/performance.md; no time is asserted. Before the fix the
//! C enumeration rebuilt the region list on every call and discovery searched it linearly
//! once per region: 30 s and 33 s on the bitmap dump (the measurements).

mod support;

use std::ffi::CString;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use support::crashdump::{self as dmp, Header};
use xenvmi::backend::snapshot::Snapshot;
use xenvmi::capi::*;
use xenvmi::mem::GuestMemory;
use xenvmi::os::linux::{Linux, ProfileSource};
use xenvmi::{Error, Registers};

const PAGE: u64 = 4096;

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("xenvmi-scale-{}-{name}", std::process::id()))
}

/// A bitmap dump marking every other frame of `2 * n` present: `n` one-page regions, every
/// stored page zero (holes in the file).
fn sparse_bitmap_dump(path: &Path, n: u64) {
    let h = Header::example(0x1ad000, Registers::default());
    let present: Vec<u64> = (0..n).map(|i| 2 * i).collect();
    let head = dmp::bitmap_header(&h, 5, b"FDMP", 2 * n, &present);
    let mut f = File::create(path).expect("create");
    f.write_all(&head).expect("header");
    f.set_len(head.len() as u64 + n * PAGE)
        .expect("pages as a hole");
}

/// An ELF64 core with `n` `PT_LOAD`s of one page each, frame `2 * i` at file page `i + 1`
/// (pages zero: holes in the file). No notes: no registers.
fn sparse_elf_core(path: &Path, n: u64) {
    let phoff = 64u64;
    let data = (phoff + 56 * n).div_ceil(PAGE) * PAGE;
    let mut b = Vec::with_capacity(data as usize);
    b.extend_from_slice(b"\x7fELF\x02\x01\x01\0");
    b.extend_from_slice(&[0u8; 8]);
    b.extend_from_slice(&4u16.to_le_bytes()); // ET_CORE
    b.extend_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    b.extend_from_slice(&1u32.to_le_bytes());
    b.extend_from_slice(&0u64.to_le_bytes()); // entry
    b.extend_from_slice(&phoff.to_le_bytes());
    b.extend_from_slice(&0u64.to_le_bytes()); // shoff
    b.extend_from_slice(&0u32.to_le_bytes()); // flags
    b.extend_from_slice(&64u16.to_le_bytes()); // ehsize
    b.extend_from_slice(&56u16.to_le_bytes()); // phentsize
    b.extend_from_slice(&(n as u16).to_le_bytes());
    b.extend_from_slice(&[0u8; 6]); // shentsize, shnum, shstrndx
    for i in 0..n {
        b.extend_from_slice(&1u32.to_le_bytes()); // PT_LOAD
        b.extend_from_slice(&6u32.to_le_bytes()); // RW
        b.extend_from_slice(&(data + i * PAGE).to_le_bytes()); // offset
        b.extend_from_slice(&0u64.to_le_bytes()); // vaddr
        b.extend_from_slice(&(2 * i * PAGE).to_le_bytes()); // paddr
        b.extend_from_slice(&PAGE.to_le_bytes()); // filesz
        b.extend_from_slice(&PAGE.to_le_bytes()); // memsz
        b.extend_from_slice(&PAGE.to_le_bytes()); // align
    }
    let mut f = File::create(path).expect("create");
    f.write_all(&b).expect("headers");
    f.set_len(data + n * PAGE).expect("pages as a hole");
}

/// Enumerate every region through the C ABI, checking each against the construction: region
/// `i` is frame `2 * i`, one page.
fn enumerate_through_c(path: &Path, n: u64) {
    let c = CString::new(path.to_str().expect("utf-8")).expect("path");
    let mut m = std::ptr::null_mut();
    // SAFETY: a NUL-terminated path and a valid out-pointer.
    assert_eq!(
        unsafe { xvmi_memory_open_snapshot(c.as_ptr(), &mut m) },
        XVMI_OK
    );
    let t = Instant::now();
    let mut count = 0usize;
    // SAFETY: a live handle and a valid out-pointer.
    assert_eq!(unsafe { xvmi_memory_region_count(m, &mut count) }, XVMI_OK);
    assert_eq!(count as u64, n);
    for i in 0..count {
        let mut r = xvmi_region::default();
        // SAFETY: as above.
        assert_eq!(unsafe { xvmi_memory_region(m, i, &mut r) }, XVMI_OK);
        assert_eq!(
            (r.start, r.length),
            (2 * i as u64 * PAGE, PAGE),
            "region {i}"
        );
    }
    println!(
        "{}: {n} regions enumerated through the C ABI in {:?}",
        path.display(),
        t.elapsed()
    );
    // SAFETY: a live handle, freed once.
    unsafe { xvmi_memory_free(m) };
}

/// Linux discovery with no registers: the banner search, then the last-resort scan of every
/// region. All memory is zero: it must end with `OsNotFound`.
fn discover(path: &Path) {
    let snap = Snapshot::open(path).expect("open");
    let mem = GuestMemory::new(snap);
    let t = Instant::now();
    let r = Linux::discover(&mem, &[], ProfileSource::InGuest);
    println!(
        "{}: Linux discovery without registers over {} regions: {:?}",
        path.display(),
        mem.backend().regions().len(),
        t.elapsed()
    );
    assert!(matches!(r, Err(Error::OsNotFound { .. })), "{:?}", r.err());
}

#[test]
fn a_bitmap_dump_with_131072_regions() {
    let path = temp("bitmap.dmp");
    let t = Instant::now();
    sparse_bitmap_dump(&path, 131_072);
    let snap = Snapshot::open(&path).expect("open");
    assert_eq!(snap.regions().len(), 131_072);
    drop(snap);
    println!("bitmap dump written and opened in {:?}", t.elapsed());
    enumerate_through_c(&path, 131_072);
    discover(&path);
    std::fs::remove_file(&path).expect("cleanup");
}

#[test]
fn an_elf_core_with_65534_pt_loads() {
    let path = temp("core.elf");
    let t = Instant::now();
    sparse_elf_core(&path, 65_534);
    let snap = Snapshot::open(&path).expect("open");
    assert_eq!(snap.regions().len(), 65_534);
    drop(snap);
    println!("ELF core written and opened in {:?}", t.elapsed());
    enumerate_through_c(&path, 65_534);
    discover(&path);
    std::fs::remove_file(&path).expect("cleanup");
}
