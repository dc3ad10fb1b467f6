//! A bundled Linux dump opened and its kernel found with no profile (the in-guest BTF and
//! kallsyms): the set-up most snapshot tests share.
#![allow(dead_code)]

use xenvmi::backend::snapshot::Snapshot;
use xenvmi::mem::GuestMemory;
use xenvmi::os::linux::{Linux, ProfileSource};
use xenvmi::Registers;

/// `fixtures/<fixture>/vmcore.elf`, its memory and its Linux kernel.
pub fn open(fixture: &str) -> (GuestMemory<Snapshot>, Linux) {
    let (mem, linux, _) = open_with_registers(fixture);
    (mem, linux)
}

/// As [`open`], with the vCPU registers of the dump.
pub fn open_with_registers(fixture: &str) -> (GuestMemory<Snapshot>, Linux, Vec<Registers>) {
    let path = super::fixture::fixture_file(fixture, "vmcore.elf")
        .unwrap_or_else(|e| panic!("{fixture}: {e}"));
    let snap = Snapshot::open(&path).unwrap_or_else(|e| panic!("{fixture}: {e}"));
    let regs = snap.all_registers().to_vec();
    let mem = GuestMemory::new(snap);
    let linux = Linux::discover(&mem, &regs, ProfileSource::InGuest)
        .unwrap_or_else(|e| panic!("{fixture}: {e}"));
    (mem, linux, regs)
}
