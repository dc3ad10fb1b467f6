//! Volatility3 ISF loading (JSON and xz) and every lookup the OS layer makes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xenvmi::os::linux::Offsets;
use xenvmi::os::profile::isf::Isf;
use xenvmi::os::profile::TypeSource;

fuzz_target!(|data: &[u8]| {
    let Ok(isf) = Isf::from_bytes(data, "fuzz") else {
        return;
    };
    for (t, f) in [
        ("task_struct", "tasks"),
        ("module", "core_layout.base"),
        ("_EPROCESS", "Pcb.DirectoryTableBase"),
        ("a", "b.c"),
    ] {
        let _ = isf.field(t, f);
        let _ = isf.struct_size(t);
    }
    let _ = Offsets::resolve(&isf);
    for (name, _, _) in isf.symbols().iter().take(10_000) {
        let _ = isf.symbols().get(name);
    }
});
