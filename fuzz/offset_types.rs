//! A `TypeSource` of structure offsets taken from a fuzz input: the layouts the Windows
//! harnesses (`windows_walk_harness.rs`, `windows_triage_harness.rs`) read guests with.
use xenvmi::os::profile::{Field, TypeSource};

/// Field offsets by `(structure, field)`; 0xffff is a field the profile lacks. Every
/// structure is 0x1000 bytes.
pub struct Types(pub Vec<((&'static str, &'static str), u16)>);

impl TypeSource for Types {
    fn source_name(&self) -> &str {
        "fuzz types"
    }
    fn struct_size(&self, _: &str) -> Option<u64> {
        Some(0x1000)
    }
    fn field(&self, t: &str, f: &str) -> Option<Field> {
        let &(_, off) = self.0.iter().find(|((a, b), _)| *a == t && *b == f)?;
        (off != 0xffff).then_some(Field {
            offset: off as u64,
            size: None,
        })
    }
}
