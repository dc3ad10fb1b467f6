//! kallsyms / System.map text parsing; every symbol is visited and looked up again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xenvmi::os::profile::SymbolTable;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(t) = SymbolTable::parse_text(&text, "fuzz") else {
        return;
    };
    for (name, _, _) in t.iter() {
        assert!(t.get(name).is_some());
    }
    let _ = t.require("_text");
});
