//! The in-memory kallsyms search and decoder on arbitrary memory; every decoded symbol is
//! visited and looked up again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xenvmi::os::profile::kallsyms::find_in_image;

fuzz_target!(|data: &[u8]| {
    let Ok(layout) = find_in_image(data) else {
        return;
    };
    let Ok(table) = layout.decode(data, "fuzz") else {
        return;
    };
    for (name, addr, kind) in table.iter() {
        let _ = (addr, kind);
        assert!(table.get(name).is_some());
    }
});
