//! See `fuzz/pe_harness.rs` for what this target feeds and checks.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../pe_harness.rs"]
mod pe_harness;

fuzz_target!(|data: &[u8]| pe_harness::run(data));
