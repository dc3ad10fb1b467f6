//! Windows triage dumps and the crashing process read from them: see
//! `fuzz/windows_triage_harness.rs` for the input layout and what is checked.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../offset_types.rs"]
mod offset_types;
#[path = "../windows_triage_harness.rs"]
mod windows_triage_harness;

fuzz_target!(|data: &[u8]| {
    windows_triage_harness::run(data);
});
