//! BPF Type Format: the type information a Linux kernel carries in its `.BTF` section (and
//! exports as `/sys/kernel/btf/vmlinux`).
//!
//! The parser validates the header and indexes every type once (an offset per type id); names
//! and members are decoded on demand. Type-reference chains (typedef → const → ...) are followed
//! with a hop limit, so a BTF blob with reference loops cannot hang a lookup.

use super::{Field, Param, SymbolTable, SymbolTableBuilder, TypeSource};
use crate::bytes::{u16_at, u32_at};
use crate::error::{Error, Result};

const MAGIC: u16 = 0xeb9f;
const HEADER_MIN: usize = 24;
/// Bound on the number of types indexed (vmlinux has ~100k).
pub const MAX_TYPES: usize = 1 << 21;
/// Bound on reference hops when resolving a type (typedef/const/volatile chains).
const MAX_HOPS: usize = 32;
/// Bound on anonymous-member nesting depth in field lookups.
const MAX_ANON_DEPTH: usize = 8;
/// Bound on members visited by one field lookup (anonymous members can fan out).
const MAX_MEMBER_VISITS: usize = 1 << 16;

/// BTF kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Kind {
    Void,
    Int,
    Ptr,
    Array,
    Struct,
    Union,
    Enum,
    Fwd,
    Typedef,
    Volatile,
    Const,
    Restrict,
    Func,
    FuncProto,
    Var,
    Datasec,
    Float,
    DeclTag,
    TypeTag,
    Enum64,
}

impl Kind {
    fn from_raw(k: u32) -> Option<Kind> {
        Some(match k {
            0 => Kind::Void,
            1 => Kind::Int,
            2 => Kind::Ptr,
            3 => Kind::Array,
            4 => Kind::Struct,
            5 => Kind::Union,
            6 => Kind::Enum,
            7 => Kind::Fwd,
            8 => Kind::Typedef,
            9 => Kind::Volatile,
            10 => Kind::Const,
            11 => Kind::Restrict,
            12 => Kind::Func,
            13 => Kind::FuncProto,
            14 => Kind::Var,
            15 => Kind::Datasec,
            16 => Kind::Float,
            17 => Kind::DeclTag,
            18 => Kind::TypeTag,
            19 => Kind::Enum64,
            _ => return None,
        })
    }
}

/// A parsed BTF blob.
pub struct Btf {
    data: Vec<u8>,
    types_start: usize,
    strings_start: usize,
    strings_len: usize,
    /// Byte offset (inside `data`) of each type, indexed by type id (id 0 = void has none).
    offsets: Vec<u32>,
    /// Struct/union name → first type id, built on the first lookup.
    by_name: std::sync::OnceLock<SymbolTable>,
    source: String,
}

impl std::fmt::Debug for Btf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Btf")
            .field("types", &self.offsets.len())
            .field("source", &self.source)
            .finish()
    }
}

/// A decoded type header.
#[derive(Clone, Copy, Debug)]
pub struct TypeHeader {
    /// Offset of its name in the string section (0 = anonymous).
    pub name_off: u32,
    /// Kind.
    pub kind: Kind,
    /// Number of members/params/values.
    pub vlen: u16,
    /// The kind flag bit.
    pub kind_flag: bool,
    /// `size` for sized kinds, `type` for reference kinds.
    pub size_or_type: u32,
}

fn kind_extra(kind: Kind, vlen: usize) -> Option<usize> {
    Some(match kind {
        Kind::Int => 4,
        Kind::Array => 12,
        Kind::Struct | Kind::Union => vlen.checked_mul(12)?,
        Kind::Enum => vlen.checked_mul(8)?,
        Kind::FuncProto => vlen.checked_mul(8)?,
        Kind::Var => 4,
        Kind::Datasec => vlen.checked_mul(12)?,
        Kind::DeclTag => 4,
        Kind::Enum64 => vlen.checked_mul(12)?,
        _ => 0,
    })
}

impl Btf {
    /// Parse a raw BTF blob (the `.BTF` section or `/sys/kernel/btf/vmlinux`).
    ///
    /// # Errors
    /// [`Error::Malformed`] on a bad header, sections outside the blob, unknown kinds or
    /// truncated type records.
    pub fn parse(data: Vec<u8>, source: impl Into<String>) -> Result<Btf> {
        let source = source.into();
        let bad = |r: String| Error::malformed("BTF", source.clone(), r);
        if u16_at(&data, 0) != Some(MAGIC) {
            return Err(bad("magic 0xeb9f not found (not BTF, or big-endian)".into()));
        }
        if data.get(2) != Some(&1) {
            return Err(bad(format!(
                "version {} is not 1",
                data.get(2).copied().unwrap_or(0)
            )));
        }
        let hdr_len = u32_at(&data, 4).unwrap_or(0) as usize;
        if hdr_len < HEADER_MIN || hdr_len > data.len() {
            return Err(bad(format!("header length {hdr_len} is invalid")));
        }
        let f = |o| u32_at(&data, o).unwrap_or(0) as usize;
        let (type_off, type_len, str_off, str_len) = (f(8), f(12), f(16), f(20));
        let section = |off: usize, len: usize, what: &str| -> Result<usize> {
            let start = hdr_len
                .checked_add(off)
                .ok_or_else(|| bad(format!("{what} offset overflows")))?;
            let end = start
                .checked_add(len)
                .ok_or_else(|| bad(format!("{what} length overflows")))?;
            if end > data.len() {
                return Err(bad(format!(
                    "{what} section {start:#x}..{end:#x} lies past the end ({:#x}; truncated?)",
                    data.len()
                )));
            }
            Ok(start)
        };
        let types_start = section(type_off, type_len, "type")?;
        let strings_start = section(str_off, str_len, "string")?;
        if str_len > 0 && data[strings_start] != 0 {
            return Err(bad(
                "the string section does not start with an empty string".into(),
            ));
        }
        let mut offsets = vec![0u32]; // id 0 = void
        let mut off = types_start;
        let end = types_start + type_len;
        while off < end {
            if offsets.len() > MAX_TYPES {
                return Err(bad(format!("more than {MAX_TYPES} types")));
            }
            let info = u32_at(&data, off + 4)
                .filter(|_| off + 12 <= end)
                .ok_or_else(|| bad(format!("type {} is truncated", offsets.len())))?;
            let kind_raw = (info >> 24) & 0x1f;
            let kind = Kind::from_raw(kind_raw).ok_or_else(|| {
                bad(format!(
                    "type {} has unknown kind {kind_raw}",
                    offsets.len()
                ))
            })?;
            let vlen = (info & 0xffff) as usize;
            let extra = kind_extra(kind, vlen).ok_or_else(|| bad("vlen overflows".into()))?;
            let next = off + 12 + extra;
            if next > end {
                return Err(bad(format!(
                    "type {} ({kind:?}, vlen {vlen}) runs past the type section",
                    offsets.len()
                )));
            }
            offsets.push(off as u32);
            off = next;
        }
        Ok(Btf {
            data,
            types_start,
            strings_start,
            strings_len: str_len,
            offsets,
            by_name: std::sync::OnceLock::new(),
            source,
        })
    }

    /// Number of types including void (id 0).
    pub fn type_count(&self) -> usize {
        self.offsets.len()
    }

    /// The string at `off` in the string section (empty if out of range).
    pub fn string(&self, off: u32) -> &str {
        let off = off as usize;
        if off >= self.strings_len {
            return "";
        }
        let s = &self.data[self.strings_start + off..self.strings_start + self.strings_len];
        let end = memchr::memchr(0, s).unwrap_or(s.len());
        std::str::from_utf8(&s[..end]).unwrap_or("")
    }

    /// The header of type `id`.
    pub fn header(&self, id: u32) -> Option<TypeHeader> {
        if id == 0 {
            return None;
        }
        let off = *self.offsets.get(id as usize)? as usize;
        let info = u32_at(&self.data, off + 4)?;
        Some(TypeHeader {
            name_off: u32_at(&self.data, off)?,
            kind: Kind::from_raw((info >> 24) & 0x1f)?,
            vlen: (info & 0xffff) as u16,
            kind_flag: info >> 31 != 0,
            size_or_type: u32_at(&self.data, off + 8)?,
        })
    }

    /// Name of type `id`.
    pub fn name(&self, id: u32) -> &str {
        self.header(id)
            .map(|h| self.string(h.name_off))
            .unwrap_or("")
    }

    /// Follow typedef/const/volatile/restrict/type-tag links to the underlying type.
    pub fn resolve(&self, mut id: u32) -> u32 {
        for _ in 0..MAX_HOPS {
            match self.header(id) {
                Some(h)
                    if matches!(
                        h.kind,
                        Kind::Typedef
                            | Kind::Volatile
                            | Kind::Const
                            | Kind::Restrict
                            | Kind::TypeTag
                    ) =>
                {
                    id = h.size_or_type;
                }
                _ => return id,
            }
        }
        id
    }

    /// Members of a struct/union: (name, type id, bit offset, bitfield size).
    pub fn members(&self, id: u32) -> impl Iterator<Item = (&str, u32, u32, u32)> + '_ {
        let (off, n, kind_flag) = match self.header(id) {
            Some(h) if matches!(h.kind, Kind::Struct | Kind::Union) => (
                self.offsets[id as usize] as usize + 12,
                h.vlen as usize,
                h.kind_flag,
            ),
            _ => (0, 0, false),
        };
        (0..n).filter_map(move |i| {
            let m = off + i * 12;
            let name = self.string(u32_at(&self.data, m)?);
            let ty = u32_at(&self.data, m + 4)?;
            let raw = u32_at(&self.data, m + 8)?;
            let (bit_off, bits) = if kind_flag {
                (raw & 0x00ff_ffff, raw >> 24)
            } else {
                (raw, 0)
            };
            Some((name, ty, bit_off, bits))
        })
    }

    fn index(&self) -> &SymbolTable {
        self.by_name.get_or_init(|| {
            let mut b = SymbolTableBuilder::new("BTF struct names");
            for id in 1..self.offsets.len() as u32 {
                if let Some(h) = self.header(id) {
                    if matches!(h.kind, Kind::Struct | Kind::Union) && h.name_off != 0 {
                        b.push(self.string(h.name_off), id as u64, 0);
                    }
                }
            }
            b.build()
        })
    }

    /// The id of the struct or union called `name` (the first definition).
    pub fn find_struct(&self, name: &str) -> Option<u32> {
        self.index().get(name).map(|id| id as u32)
    }

    /// Find `field` in struct/union `id`, looking into anonymous members. Returns the byte
    /// offset and the member's type id.
    fn find_member(
        &self,
        id: u32,
        field: &str,
        depth: usize,
        budget: &mut usize,
    ) -> Option<(u64, u32)> {
        if depth > MAX_ANON_DEPTH {
            return None;
        }
        for (name, ty, bit_off, _) in self.members(id) {
            *budget = budget.checked_sub(1)?;
            if name == field {
                return Some(((bit_off / 8) as u64, ty));
            }
        }
        for (name, ty, bit_off, _) in self.members(id) {
            *budget = budget.checked_sub(1)?;
            if name.is_empty() {
                if let Some((o, t)) = self.find_member(self.resolve(ty), field, depth + 1, budget) {
                    return Some(((bit_off / 8) as u64 + o, t));
                }
            }
        }
        None
    }

    /// The id of the function (`BTF_KIND_FUNC`) called `name`: a scan over the types, done
    /// once per probe placed, not per event.
    pub fn find_function(&self, name: &str) -> Option<u32> {
        (1..self.offsets.len() as u32).find(|&id| {
            self.header(id)
                .is_some_and(|h| h.kind == Kind::Func && self.string(h.name_off) == name)
        })
    }

    /// The C spelling of type `id` (`const char *`, `struct pt_regs *`), at most
    /// [`MAX_HOPS`] links deep (a longer or looping chain ends in `...`).
    pub fn type_name(&self, id: u32) -> String {
        let mut prefix = String::new();
        let mut stars = String::new();
        let mut id = id;
        for _ in 0..MAX_HOPS {
            let Some(h) = self.header(id) else {
                return format!("{prefix}void{stars}");
            };
            let name = self.string(h.name_off);
            let base = match h.kind {
                Kind::Ptr => {
                    stars.insert_str(0, " *");
                    id = h.size_or_type;
                    continue;
                }
                Kind::Const | Kind::Volatile | Kind::Restrict | Kind::TypeTag => {
                    if h.kind == Kind::Const {
                        if stars.is_empty() {
                            prefix.push_str("const ");
                        } else {
                            stars.insert_str(0, " const");
                        }
                    }
                    id = h.size_or_type;
                    continue;
                }
                Kind::Struct => format!("struct {name}"),
                Kind::Union => format!("union {name}"),
                Kind::Enum | Kind::Enum64 => format!("enum {name}"),
                Kind::Fwd if h.kind_flag => format!("union {name}"),
                Kind::Fwd => format!("struct {name}"),
                Kind::FuncProto => "fn".to_owned(),
                Kind::Void => "void".to_owned(),
                _ => name.to_owned(),
            };
            return format!("{prefix}{base}{stars}");
        }
        format!("{prefix}...{stars}")
    }

    /// The parameters of the function with type id `func` (a `BTF_KIND_FUNC`).
    fn params_of(&self, func: u32) -> Option<Vec<Param>> {
        let proto = self.header(func)?.size_or_type;
        let h = self.header(proto)?;
        if h.kind != Kind::FuncProto {
            return None;
        }
        let off = *self.offsets.get(proto as usize)? as usize + 12;
        (0..h.vlen as usize)
            .map(|i| {
                let at = off.checked_add(i.checked_mul(8)?)?;
                Some(Param {
                    name: self.string(u32_at(&self.data, at)?).to_owned(),
                    type_name: self.type_name(u32_at(&self.data, at + 4)?),
                })
            })
            .collect()
    }

    /// The raw blob.
    pub fn raw(&self) -> &[u8] {
        &self.data
    }

    /// Start of the type section, for diagnostics.
    pub fn types_offset(&self) -> usize {
        self.types_start
    }
}

impl TypeSource for Btf {
    fn source_name(&self) -> &str {
        &self.source
    }

    fn struct_size(&self, name: &str) -> Option<u64> {
        let id = self.find_struct(name)?;
        Some(self.header(id)?.size_or_type as u64)
    }

    fn field(&self, type_name: &str, path: &str) -> Option<Field> {
        let mut id = self.find_struct(type_name)?;
        let mut offset = 0u64;
        let mut last_ty = 0;
        for (i, part) in path.split('.').enumerate() {
            if i > 0 {
                id = self.resolve(last_ty);
            }
            let mut budget = MAX_MEMBER_VISITS;
            let (o, ty) = self.find_member(id, part, 0, &mut budget)?;
            offset = offset.checked_add(o)?;
            last_ty = ty;
        }
        let t = self.resolve(last_ty);
        let size = self.header(t).and_then(|h| match h.kind {
            Kind::Int | Kind::Struct | Kind::Union | Kind::Enum | Kind::Enum64 | Kind::Float => {
                Some(h.size_or_type as u64)
            }
            Kind::Ptr => Some(8),
            _ => None,
        });
        Some(Field { offset, size })
    }

    fn function_params(&self, name: &str) -> Option<Vec<Param>> {
        self.params_of(self.find_function(name)?)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Build a BTF blob with: int (1), struct list_head {next,prev} (2), ptr to 2 (3),
    /// struct task {int a; anon union { list_head tasks; }; } (4), anon union (5),
    /// typedef loop (6 -> 7 -> 6).
    pub(crate) fn sample() -> Vec<u8> {
        let mut strings = b"\0int\0list_head\0next\0prev\0task\0a\0tasks\0loop\0".to_vec();
        let s = |name: &str, strings: &Vec<u8>| -> u32 {
            let needle = format!("\0{name}\0");
            memchr::memmem::find(strings, needle.as_bytes()).unwrap() as u32 + 1
        };
        let mut t = Vec::new();
        let push = |t: &mut Vec<u8>, v: &[u32]| {
            v.iter().for_each(|x| t.extend_from_slice(&x.to_le_bytes()))
        };
        push(&mut t, &[s("int", &strings), 1 << 24, 4, 32]);
        push(
            &mut t,
            &[
                s("list_head", &strings),
                4 << 24 | 2,
                16,
                s("next", &strings),
                3,
                0,
                s("prev", &strings),
                3,
                64,
            ],
        );
        push(&mut t, &[0, 2 << 24, 2]);
        push(
            &mut t,
            &[
                s("task", &strings),
                4 << 24 | 2,
                40,
                s("a", &strings),
                1,
                0,
                0,
                5,
                64,
            ],
        );
        push(&mut t, &[0, 5 << 24 | 1, 16, s("tasks", &strings), 2, 0]);
        push(&mut t, &[s("loop", &strings), 8 << 24, 7]);
        push(&mut t, &[s("loop", &strings), 8 << 24, 6]);
        strings.push(0);
        let mut b = Vec::new();
        b.extend_from_slice(&MAGIC.to_le_bytes());
        b.extend_from_slice(&[1, 0]);
        for v in [
            24u32,
            0,
            t.len() as u32,
            t.len() as u32,
            strings.len() as u32,
        ] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(&t);
        b.extend_from_slice(&strings);
        b
    }

    #[test]
    fn resolves_fields_through_anonymous_members_and_paths() {
        let btf = Btf::parse(sample(), "sample").unwrap();
        assert_eq!(btf.type_count(), 8);
        assert_eq!(btf.struct_size("task"), Some(40));
        assert_eq!(
            btf.field("task", "a"),
            Some(Field {
                offset: 0,
                size: Some(4)
            })
        );
        assert_eq!(
            btf.field("task", "tasks"),
            Some(Field {
                offset: 8,
                size: Some(16)
            })
        );
        assert_eq!(
            btf.field("task", "tasks.prev"),
            Some(Field {
                offset: 16,
                size: Some(8)
            })
        );
        assert_eq!(btf.field("task", "nope"), None);
        // A typedef loop resolves to something without hanging.
        let _ = btf.resolve(6);
    }

    #[test]
    fn truncation_is_an_error_at_every_length() {
        let full = sample();
        for n in 0..full.len() {
            assert!(Btf::parse(full[..n].to_vec(), "t").is_err(), "length {n}");
        }
    }
}
