//! See `fuzz/os_identify_harness.rs` for what this target feeds and checks.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../os_identify_harness.rs"]
mod os_identify_harness;

fuzz_target!(|data: &[u8]| os_identify_harness::run(data));
