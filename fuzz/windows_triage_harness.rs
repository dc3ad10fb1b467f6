//! Windows triage dumps (`xenvmi::backend::snapshot::TriageDump`, `xenvmi::os::windows::triage`).
//!
//! Input layout (little-endian): 6 × `u16` structure offsets in
//! `xenvmi::os::windows::triage::TRIAGE_FIELDS` order (0xffff = field absent), then the dump
//! file. The file is parsed; when it parses, every driver entry, the stack and the copies are
//! read, and the crashing process is read with the input's layout. Checked: the driver list
//! stays within `MAX_TRIAGE_DRIVERS` and each name within `MAX_DRIVER_NAME` characters, the
//! stack within the file, and a reading is a valid one (a 1..=15-character printable name,
//! handle-valued ids, a processor number below `NumberProcessors`).
//!
//! Shared by `fuzz/fuzz_targets/windows_triage.rs` and `tests/fuzz_regressions.rs`, which
//! replays the seeds and every kept failing input in `cargo test`.
use xenvmi::backend::snapshot::{TriageDump, MAX_DRIVER_NAME, MAX_TRIAGE_DRIVERS};
use xenvmi::os::profile::{Profile, SymbolTableBuilder};
use xenvmi::os::windows::triage::{crashing_process, TRIAGE_FIELDS};
use xenvmi::os::windows::WindowsProfile;

const HEADER: usize = 2 * TRIAGE_FIELDS.len();

// The including crate declares `offset_types` (`fuzz/offset_types.rs`) once for every harness.
use super::offset_types::Types;

/// Run one input (the fuzz target and `tests/fuzz_regressions.rs` both call this); whether
/// the crashing process was read.
pub fn run(data: &[u8]) -> bool {
    if data.len() < HEADER {
        return false;
    }
    let offsets = TRIAGE_FIELDS
        .iter()
        .enumerate()
        .map(|(i, &f)| (f, u16::from_le_bytes([data[2 * i], data[2 * i + 1]])))
        .collect();
    let Ok(dump) = TriageDump::parse(data[HEADER..].to_vec(), "fuzz input") else {
        return false;
    };
    assert!(dump.drivers.len() <= MAX_TRIAGE_DRIVERS);
    for d in dump.drivers.iter().flatten() {
        assert!(d.name.chars().count() <= MAX_DRIVER_NAME);
        let _ = dump.driver_at(d.base);
    }
    assert!(dump.call_stack().len() < data.len());
    let _ = (dump.process_copy(), dump.thread_copy(), dump.prcb_copy());
    let _ = dump.driver_at(dump.context.rip);
    let profile = Profile {
        types: Box::new(Types(offsets)),
        symbols: SymbolTableBuilder::new("fuzz symbols").build(),
    };
    if let Ok(r) = crashing_process(&dump, &WindowsProfile::Loaded(profile)) {
        let p = &r.process;
        assert!((1..=15).contains(&p.name.len()));
        assert!(p.name.bytes().all(|b| (0x20..0x7f).contains(&b)));
        for id in [p.pid, p.ppid, p.thread_id, p.thread_process_id] {
            assert!(id % 4 == 0 && id >> 32 == 0);
        }
        let cpus = dump.info.number_processors;
        if let Some(n) = p.processor {
            assert!(cpus == 0 || n < cpus);
        }
        assert_eq!(r.profiles.len(), 1);
        return true;
    }
    false
}
