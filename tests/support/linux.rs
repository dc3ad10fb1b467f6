//! A bundled Linux dump opened and its kernel found with no profile (the in-guest BTF and
//! kallsyms): the set-up most snapshot tests share.
#![allow(dead_code)]

use xenvmi::backend::snapshot::Snapshot;
use xenvmi::mem::GuestMemory;
use xenvmi::os::linux::{Linux, ProfileSource};
use xenvmi::Registers;

/// Every bundled Linux dump (`../shared/fixtures`, copied by scripts/setup.sh).
pub const FIXTURES: &[&str] = &[
    "linux-6.1",
    "linux-6.1-la57",
    "linux-6.1-cloud-pti",
    "linux-6.1-mem4g",
    "linux-6.12",
    "linux-6.1-net",
];

/// `fixtures/<fixture>/vmcore.elf` and the vCPU registers it records, no kernel looked for.
pub fn memory(fixture: &str) -> (GuestMemory<Snapshot>, Vec<Registers>) {
    let path = super::fixture::fixture_file(fixture, "vmcore.elf")
        .unwrap_or_else(|e| panic!("{fixture}: {e}"));
    let snap = Snapshot::open(&path).unwrap_or_else(|e| panic!("{fixture}: {e}"));
    let regs = snap.all_registers().to_vec();
    (GuestMemory::new(snap), regs)
}

/// `fixtures/<fixture>/vmcore.elf`, its memory and its Linux kernel.
pub fn open(fixture: &str) -> (GuestMemory<Snapshot>, Linux) {
    let (mem, linux, _) = open_with_registers(fixture);
    (mem, linux)
}

/// As [`open`], with the vCPU registers of the dump.
pub fn open_with_registers(fixture: &str) -> (GuestMemory<Snapshot>, Linux, Vec<Registers>) {
    let (mem, regs) = memory(fixture);
    let linux = Linux::discover(&mem, &regs, ProfileSource::InGuest)
        .unwrap_or_else(|e| panic!("{fixture}: {e}"));
    (mem, linux, regs)
}

/// The bytes of one region of a snapshot.
pub fn region_bytes(s: &Snapshot, r: &xenvmi::backend::snapshot::Region) -> Vec<u8> {
    use xenvmi::backend::PhysicalMemory;
    let mut v = vec![0u8; r.len as usize];
    s.read_physical(xenvmi::Gpa(r.gpa), &mut v).unwrap();
    v
}

/// Write `elf`'s memory as a raw image at `path` (file offset = guest-physical address,
/// zero pages left as holes): a dump with no registers, whose kernel discovery must find by
/// searching memory.
pub fn write_raw(elf: &Snapshot, path: &std::path::Path) {
    use std::io::{Seek, SeekFrom};
    let mut out = std::fs::File::create(path).unwrap();
    let mut end = 0;
    for r in elf.regions() {
        out.seek(SeekFrom::Start(r.gpa)).unwrap();
        super::crashdump::write_sparse(&region_bytes(elf, r), &mut out);
        end = end.max(r.gpa + r.len);
    }
    out.set_len(end).unwrap();
}
