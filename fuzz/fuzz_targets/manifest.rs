//! Attestation manifest parsing (`xenvmi::attest::Manifest::parse`): no panic, hang or
//! unbounded allocation on any input, and every accepted manifest written back parses to
//! itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xenvmi::attest::Manifest;

fuzz_target!(|data: &[u8]| {
    let Ok(m) = Manifest::parse(data, "fuzz") else {
        return;
    };
    let again = m.to_json().to_string();
    let m2 = Manifest::parse(again.as_bytes(), "again").expect("a manifest's own JSON parses");
    assert_eq!(m2, m);
});
