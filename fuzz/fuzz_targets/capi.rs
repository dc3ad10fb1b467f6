//! Fuzz the C ABI: a guest image, vCPU registers and a sequence of C calls (see
//! `fuzz/capi_harness.rs` for the input format and what is checked).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../capi_harness.rs"]
mod capi_harness;

fuzz_target!(|data: &[u8]| capi_harness::run(data));
