//! See `fuzz/windows_walk_harness.rs` for what this target feeds and checks.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../offset_types.rs"]
mod offset_types;
#[path = "../windows_walk_harness.rs"]
mod windows_walk_harness;

fuzz_target!(|data: &[u8]| windows_walk_harness::run(data));
