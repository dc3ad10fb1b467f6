//! Raw and LiME images of real guest memory, made from the QEMU ELF fixture's own PT_LOAD
//! segments, must give the same memory and the same Linux walk as the ELF core.

mod support;

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use support::fixture::{fixture_file, ground_truth};
use xenvmi::backend::snapshot::{Format, Snapshot};
use xenvmi::backend::PhysicalMemory;
use xenvmi::mem::GuestMemory;
use xenvmi::os::linux::{Linux, ProfileSource};
use xenvmi::Gpa;

/// Write `src` to `out`, leaving runs of zero pages as holes.
fn copy_sparse(src: &[u8], out: &mut File) {
    let mut i = 0;
    while i < src.len() {
        let zero = |c: &[u8]| c.iter().all(|&b| b == 0);
        let start = i;
        let is_zero = zero(&src[i..(i + 4096).min(src.len())]);
        while i < src.len() && zero(&src[i..(i + 4096).min(src.len())]) == is_zero {
            i = (i + 4096).min(src.len());
        }
        if is_zero {
            out.seek(SeekFrom::Current((i - start) as i64)).unwrap();
        } else {
            out.write_all(&src[start..i]).unwrap();
        }
    }
}

fn elf() -> Snapshot {
    Snapshot::open(fixture_file("linux-6.1", "vmcore.elf").unwrap()).unwrap()
}

fn write_raw(elf: &Snapshot, path: &Path) {
    let mut out = File::create(path).unwrap();
    let mut end = 0;
    for r in elf.regions() {
        out.seek(SeekFrom::Start(r.gpa)).unwrap();
        copy_sparse(
            elf.physical_slice(Gpa(r.gpa), r.len as usize).unwrap(),
            &mut out,
        );
        end = end.max(r.gpa + r.len);
    }
    out.set_len(end).unwrap();
}

fn write_lime(elf: &Snapshot, path: &Path) {
    let mut out = File::create(path).unwrap();
    for r in elf.regions() {
        let mut h = Vec::new();
        h.extend_from_slice(&0x4C69_4D45u32.to_le_bytes());
        h.extend_from_slice(&1u32.to_le_bytes());
        h.extend_from_slice(&r.gpa.to_le_bytes());
        h.extend_from_slice(&(r.gpa + r.len - 1).to_le_bytes());
        h.extend_from_slice(&[0u8; 8]);
        out.write_all(&h).unwrap();
        copy_sparse(
            elf.physical_slice(Gpa(r.gpa), r.len as usize).unwrap(),
            &mut out,
        );
    }
    let pos = out.stream_position().unwrap();
    out.set_len(pos).unwrap();
}

fn walk_matches_ground_truth(snap: Snapshot) {
    let gt = ground_truth("linux-6.1");
    let mem = GuestMemory::new(snap);
    let linux = Linux::discover(&mem, &[], ProfileSource::InGuest).unwrap();
    assert_eq!(linux.info().release, gt["kernel_release"].as_str().unwrap());
    let n = linux.processes(&mem).filter(|p| p.is_ok()).count();
    assert_eq!(n as u64, gt["process_count"].as_u64().unwrap());
}

#[test]
fn raw_and_lime_images_of_real_memory() {
    let elf = elf();
    let dir = std::env::temp_dir().join(format!("xenvmi-formats-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let raw = dir.join("physmem.raw");
    let lime = dir.join("physmem.lime");
    write_raw(&elf, &raw);
    write_lime(&elf, &lime);

    let raw_snap = Snapshot::open(&raw).unwrap();
    let lime_snap = Snapshot::open(&lime).unwrap();
    assert_eq!(raw_snap.format(), Format::Raw);
    assert_eq!(lime_snap.format(), Format::Lime);
    assert_eq!(lime_snap.regions().len(), elf.regions().len());
    // Same bytes at a spread of addresses, including the BIOS copy below 4 GiB.
    for r in elf.regions() {
        for off in [0, 0x1234, r.len / 2, r.len - 8] {
            let a = Gpa(r.gpa + off);
            let want = elf.read_physical_u64(a).unwrap();
            assert_eq!(raw_snap.read_physical_u64(a).unwrap(), want, "raw at {a}");
            assert_eq!(lime_snap.read_physical_u64(a).unwrap(), want, "LiME at {a}");
        }
    }
    walk_matches_ground_truth(raw_snap);
    walk_matches_ground_truth(lime_snap);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn elf_notes_give_every_vcpu() {
    let gt = ground_truth("linux-6.1");
    let elf = elf();
    let vcpus = gt["vcpus"].as_array().unwrap();
    assert_eq!(elf.all_registers().len(), vcpus.len());
    for (r, v) in elf.all_registers().iter().zip(vcpus) {
        let h = |k: &str| support::fixture::hex(&v[k]);
        assert_eq!(r.rip, h("rip"));
        assert_eq!(r.cr0, h("cr0"));
        assert_eq!(r.cr3, h("cr3"));
        assert_eq!(r.cr4, h("cr4"));
        assert_eq!(r.cr2, h("cr2"));
        assert_eq!(r.gs_base, h("gs_base"));
        assert_eq!(r.cpl() as u64, v["cpl"].as_u64().unwrap());
    }
}

#[test]
fn truncated_and_missing_images_are_clear_errors() {
    let dir = std::env::temp_dir().join(format!("xenvmi-trunc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut src = Vec::new();
    std::io::Read::read_to_end(
        &mut std::io::Read::take(
            File::open(fixture_file("linux-6.1", "vmcore.elf").unwrap()).unwrap(),
            1 << 20,
        ),
        &mut src,
    )
    .unwrap();
    let p = dir.join("truncated.elf");
    std::fs::write(&p, &src).unwrap();
    let e = Snapshot::open(&p).unwrap_err().to_string();
    assert!(e.contains("truncated"), "{e}");
    let e = Snapshot::open(dir.join("missing.elf"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("missing.elf") && e.contains("No such file"),
        "{e}"
    );
    let empty = dir.join("empty");
    std::fs::write(&empty, b"").unwrap();
    assert!(Snapshot::open(&empty)
        .unwrap_err()
        .to_string()
        .contains("empty"));
    std::fs::remove_dir_all(&dir).unwrap();
}
