//! Windows profile cache files (`os::profile::cache::parse_profile_entry`): any bytes are
//! refused cleanly or give a key that names a safe file and a profile holding only the
//! walkers' fields and symbols, each within the limits the parser promises.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xenvmi::os::profile::cache::{
    parse_profile_entry, ProfileKey, MAX_FIELD_OFFSET, MAX_PROFILE_ENTRY, MAX_RVA,
};
use xenvmi::os::windows::{CPU_FIELDS, CPU_SYMBOLS, FIELDS, PROFILE_WANTED, SYMBOLS};

fuzz_target!(|data: &[u8]| {
    let Ok(entry) = parse_profile_entry(data, PROFILE_WANTED) else {
        return;
    };
    let (key, profile) = (entry.key, entry.profile);
    assert!(entry.file.is_none_or(|f| f.path.len() <= 1024));
    assert!(data.len() as u64 <= MAX_PROFILE_ENTRY);
    // The key survives its own validation unchanged, so its file name is a safe one.
    assert_eq!(
        ProfileKey::new(key.pdb_name(), key.guid(), key.age()).as_ref(),
        Some(&key)
    );
    assert!(!key.file_name().contains('/'));
    for (t, f) in FIELDS.iter().chain(&CPU_FIELDS) {
        if let Some(x) = profile.types.field(t, f) {
            assert!(x.offset <= MAX_FIELD_OFFSET);
            assert!(x.size.is_none_or(|s| s <= MAX_FIELD_OFFSET));
        }
    }
    // Nothing but the walkers' fields and symbols.
    assert_eq!(profile.types.field("_EPROCESS", "Token"), None);
    let known = SYMBOLS.len() + CPU_SYMBOLS.len();
    assert!(profile.symbols.len() <= known);
    for (name, rva, _) in profile.symbols.iter() {
        assert!(SYMBOLS.contains(&name) || CPU_SYMBOLS.contains(&name));
        assert!(rva <= MAX_RVA);
    }
});
