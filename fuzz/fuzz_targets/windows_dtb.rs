//! Register-less Windows discovery (`xenvmi::os::windows::dtb`): the `windows_walk` input
//! with mode bit 3 forced, so the page-table root comes from memory alone. See
//! `fuzz/windows_walk_harness.rs` for the input layout and what is checked.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../offset_types.rs"]
mod offset_types;
#[path = "../windows_walk_harness.rs"]
mod windows_walk_harness;

fuzz_target!(|data: &[u8]| windows_walk_harness::run_registerless(data));
