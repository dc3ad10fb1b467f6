//! Microsoft PDB loading (MSF container, type and symbol records through the `pdb` crate) and
//! every lookup the Windows layer makes. A panic anywhere, even one `Pdb::from_bytes` would
//! contain, aborts here (libfuzzer's panic hook), so the fuzzer finds the crate's panics too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xenvmi::os::profile::pdb::Pdb;
use xenvmi::os::profile::TypeSource;
use xenvmi::os::windows::Offsets;

fuzz_target!(|data: &[u8]| {
    let Ok(pdb) = Pdb::from_bytes(data.to_vec(), "fuzz") else {
        return;
    };
    for (t, f) in [
        ("_EPROCESS", "Pcb.ProcessListEntry.Blink"),
        ("_EPROCESS", "CreateTime.u.HighPart"),
        ("_LARGE_VALUE", "QuadPart"),
        ("a", "b.c"),
    ] {
        let _ = pdb.field(t, f);
        let _ = pdb.struct_size(t);
    }
    let _ = Offsets::from_types(&pdb);
    let names: Vec<String> = pdb.type_names().take(1000).map(str::to_owned).collect();
    for n in &names {
        let _ = pdb.members(n);
    }
    let _ = pdb.enum_constants("_PROCESS_STATE");
    for (name, _, _) in pdb.symbols().iter().take(10_000) {
        let _ = pdb.symbols().get(name);
    }
});
