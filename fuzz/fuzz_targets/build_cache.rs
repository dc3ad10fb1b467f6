//! Kernel-build cache files (`os::linux::parse_entry`): any bytes are refused cleanly or give
//! a build whose every field is within the limits the parser promises.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xenvmi::os::linux::{parse_entry, MAX_CACHE_ENTRY};

fuzz_target!(|data: &[u8]| {
    let Ok(b) = parse_entry(data) else {
        return;
    };
    assert!(data.len() as u64 <= MAX_CACHE_ENTRY);
    assert!(!b.is_complete());
    assert!(b.identity().banner.starts_with("Linux version "));
    let btf = b.identity().btf.expect("a cached build has a .BTF fingerprint");
    assert!(btf.len > 0);
    let o = b.offsets();
    assert!(!o.module_sizes.is_empty() && o.module_sizes.len() == o.module_bases.len());
    assert!((1..=64).contains(&o.module_name_len));
});
