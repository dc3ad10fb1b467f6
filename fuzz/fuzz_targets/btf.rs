//! BTF parsing, then every lookup the OS layer makes and a walk over every type's members.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xenvmi::os::linux::Offsets;
use xenvmi::os::profile::btf::Btf;
use xenvmi::os::profile::TypeSource;

fuzz_target!(|data: &[u8]| {
    let Ok(btf) = Btf::parse(data.to_vec(), "fuzz") else {
        return;
    };
    for id in 0..btf.type_count().min(4096) as u32 {
        let _ = btf.header(id);
        let _ = btf.name(id);
        let _ = btf.resolve(id);
        for (name, ty, off, bits) in btf.members(id) {
            let _ = (name.len(), ty, off, bits);
        }
    }
    for (t, f) in [
        ("task_struct", "tasks"),
        ("module", "core_layout.base"),
        ("uts_namespace", "name.release"),
        ("a", "b.c.d"),
    ] {
        let _ = btf.field(t, f);
        let _ = btf.struct_size(t);
    }
    let _ = Offsets::resolve(&btf);
});
