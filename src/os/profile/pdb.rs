//! Microsoft PDB (MSF 7.0) profiles: structure and union layouts, enums and global symbol RVAs
//! read from a program database, into the same model as an ISF ([`TypeSource`] and
//! [`SymbolTable`]).
//!
//! The container and its records are parsed by the `pdb` crate (MIT OR Apache-2.0, pure Rust);
//! this module turns them into layouts. A PDB is attacker-controlled input, so:
//! - the file is read whole, at most [`MAX_PDB_BYTES`];
//! - at most [`MAX_PDB_TYPES`] type records are indexed and [`MAX_PDB_MEMBERS`] members kept;
//!   field-list continuation chains are followed at most [`MAX_FIELD_LIST_CHAIN`] records deep,
//!   and type references (modifiers, arrays, forward references) at most [`MAX_TYPE_DEPTH`];
//! - the crate sees only what it handles safely: the MSF superblock and the TPI header's index
//!   range are checked first, and only the record kinds a layout needs are parsed through it
//!   (structures, unions, enums, field lists, modifiers, bitfields; public and data symbols).
//!   It panics on malformed pointer and array records and reserves memory by the count in an
//!   `LF_ARGLIST`, so those are never handed to it: pointer and array sizes are decoded here
//!   from the raw records. The `pdb` fuzz target checks this;
//! - every failure is an [`Error::Malformed`] naming the file and what is wrong, and a panic
//!   the crate might still have is caught and reported the same way (when the library is built
//!   with `panic = "unwind"`, the default).
//!
//! Symbols are the public symbols (`S_PUB32`: functions and data the linker saw) followed by
//! global data (`S_GDATA32`, `S_LDATA32`) not already named, each as an RVA (section offset
//! translated through the PDB's section headers and OMAP, as Volatility3's ISF records them).
//! Structures and unions are named as in the PDB (`_EPROCESS`); anonymous ones (`<unnamed-tag>`,
//! `<anonymous-tag>`, `__unnamed`) are kept under their name and type index and their members
//! are searched transparently, as [`TypeSource::field`] promises.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use pdb::FallibleIterator;

use super::{path, Field, SymbolTable, SymbolTableBuilder, TypeSource, MAX_SYMBOLS};
use crate::error::{Error, Result};

/// Largest PDB file read (`ntkrnlmp.pdb` is 8–15 MB).
pub const MAX_PDB_BYTES: u64 = 512 << 20;
/// Most type records indexed (`ntkrnlmp.pdb` has about 30,000 in its TPI stream).
pub const MAX_PDB_TYPES: usize = 1 << 21;
/// Most structure/union members kept, over all types.
pub const MAX_PDB_MEMBERS: usize = 1 << 22;
/// Most `LF_FIELDLIST` records one type's members span (continuations via `LF_INDEX`).
pub const MAX_FIELD_LIST_CHAIN: usize = 256;
/// Most type references followed to find one type's size or name (modifiers, arrays,
/// forward references, enums' underlying types).
pub const MAX_TYPE_DEPTH: usize = 32;

const FORMAT: &str = "PDB";

/// One member of a structure or union.
#[derive(Clone, Debug)]
pub(crate) struct Member {
    name: String,
    offset: u64,
    size: Option<u64>,
    /// Key into [`Pdb::types`] when the member is itself a structure or union.
    type_key: Option<String>,
}

/// A structure or union definition.
#[derive(Clone, Debug)]
struct UserType {
    size: u64,
    members: Vec<Member>,
}

/// An enum: its size and constants in declaration order.
#[derive(Clone, Debug)]
struct Enum {
    size: Option<u64>,
    constants: Vec<(String, i64)>,
}

/// A loaded PDB profile.
pub struct Pdb {
    types: HashMap<String, UserType>,
    enums: HashMap<String, Enum>,
    symbols: SymbolTable,
    guid: String,
    age: u32,
    source: String,
}

impl std::fmt::Debug for Pdb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pdb")
            .field("source", &self.source)
            .field("guid", &self.guid)
            .field("age", &self.age)
            .field("types", &self.types.len())
            .field("enums", &self.enums.len())
            .field("symbols", &self.symbols.len())
            .finish()
    }
}

/// Where a symbol store (the layout debuggers cache downloads in) keeps a PDB:
/// `<root>/<pdb_name>/<GUID><AGE>/<pdb_name>`, the GUID as 32 upper-case hex digits and the
/// age in upper-case hex without padding. `None` unless `pdb_name` is a plain file name (it
/// comes from guest memory: no separator, not `.` or `..`, no NUL), so the path stays under
/// `root`.
pub fn symbol_store_path(root: &Path, pdb_name: &str, guid: &str, age: u32) -> Option<PathBuf> {
    store_path(
        root,
        pdb_name,
        &format!("{}{age:X}", guid.to_ascii_uppercase()),
    )
}

/// Where a symbol store keeps an executable image (`ntoskrnl.exe`, a driver):
/// `<root>/<name>/<TimeDateStamp><SizeOfImage>/<name>`, the time stamp as 8 upper-case hex
/// digits and the size in hex without padding (`%08X%x`: the key debuggers download images
/// by, e.g. `ntoskrnl.exe/5F1F8B3F1046000/ntoskrnl.exe`), and the same with the size in
/// upper case (a store copied through a tool that changed it; on Windows' file systems both are
/// one). `None` unless `name` is a plain file name, as for [`symbol_store_path`].
pub fn image_store_paths(root: &Path, name: &str, timestamp: u32, size: u32) -> Vec<PathBuf> {
    let mut keys = vec![format!("{timestamp:08X}{size:x}")];
    if size > 9 && format!("{size:x}") != format!("{size:X}") {
        keys.push(format!("{timestamp:08X}{size:X}"));
    }
    keys.iter()
        .filter_map(|k| store_path(root, name, k))
        .collect()
}

fn store_path(root: &Path, name: &str, key: &str) -> Option<PathBuf> {
    let plain =
        !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\', '\0']);
    plain.then(|| root.join(name).join(key).join(name))
}

impl Pdb {
    /// Read a PDB file (at most [`MAX_PDB_BYTES`]).
    ///
    /// # Errors
    /// [`Error::Io`] (also for a FIFO, device or directory), [`Error::Malformed`] naming the
    /// file for one over the cap or as [`Pdb::from_bytes`].
    pub fn from_file(path: impl AsRef<Path>) -> Result<Pdb> {
        let path = path.as_ref();
        let data = crate::file::read_capped(path, MAX_PDB_BYTES, "PDB")?;
        Self::from_bytes(data, path.display().to_string())
    }

    /// Parse a PDB held in memory; `source` names it in messages.
    ///
    /// # Errors
    /// [`Error::Malformed`] naming `source` and what is wrong: not an MSF 7.0 file, a damaged
    /// stream directory or record, no type information, more than [`MAX_PDB_TYPES`] types or
    /// [`MAX_PDB_MEMBERS`] members, no structure and no symbol at all.
    pub fn from_bytes(data: Vec<u8>, source: impl Into<String>) -> Result<Pdb> {
        let source = source.into();
        let bad = |reason: String| Error::malformed(FORMAT, source.clone(), reason);
        if data.len() as u64 > MAX_PDB_BYTES {
            return Err(bad(format!(
                "{} bytes, over the {MAX_PDB_BYTES}-byte limit",
                data.len()
            )));
        }
        check_superblock(&data).map_err(bad)?;
        // The crate indexes into its buffers; on input it does not expect it may panic. Keep
        // such a panic inside this call, as an error.
        let parsed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            parse(std::io::Cursor::new(data), &source)
        }));
        let mut pdb = match parsed {
            Ok(r) => r.map_err(bad)?,
            Err(p) => {
                let msg = p
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                return Err(bad(format!("the PDB parser failed on it ({msg})")));
            }
        };
        if pdb.types.is_empty() && pdb.symbols.is_empty() {
            return Err(bad("no structure, union and symbol in it".into()));
        }
        pdb.source = source;
        Ok(pdb)
    }

    /// The PDB's GUID in symbol-server form: 32 upper-case hex digits, as a PE's CodeView
    /// record gives it ([`CodeView::guid_string`](crate::os::pe::CodeView::guid_string)).
    pub fn guid(&self) -> &str {
        &self.guid
    }

    /// The PDB's age (from its PDB information stream).
    pub fn age(&self) -> u32 {
        self.age
    }

    /// The symbols: public symbols then global data, as RVAs.
    pub fn symbols(&self) -> &SymbolTable {
        &self.symbols
    }

    /// The value of constant `name` of enum `enum_name` (`_POOL_TYPE`, `NonPagedPool`).
    pub fn enum_constant(&self, enum_name: &str, name: &str) -> Option<i64> {
        self.enums
            .get(enum_name)?
            .constants
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| *v)
    }

    /// The constants of enum `enum_name` in declaration order.
    pub fn enum_constants(&self, enum_name: &str) -> Option<&[(String, i64)]> {
        self.enums.get(enum_name).map(|e| e.constants.as_slice())
    }

    /// The size in bytes of enum `enum_name` (its underlying integer type's).
    pub fn enum_size(&self, enum_name: &str) -> Option<u64> {
        self.enums.get(enum_name)?.size
    }

    /// Names of the structures and unions (anonymous ones as `<unnamed-tag>@UNIQUE-NAME`, or
    /// `<unnamed-tag>@0x1234` by type index when the PDB gives no unique name).
    pub fn type_names(&self) -> impl Iterator<Item = &str> + '_ {
        self.types.keys().map(String::as_str)
    }

    /// The named members of structure or union `type_name`, as `(name, offset)` in
    /// declaration order (anonymous members themselves left out).
    pub fn members(&self, type_name: &str) -> Option<Vec<(&str, u64)>> {
        Some(
            self.types
                .get(type_name)?
                .members
                .iter()
                .filter(|m| !is_anonymous_member(m))
                .map(|m| (m.name.as_str(), m.offset))
                .collect(),
        )
    }
}

impl TypeSource for Pdb {
    fn source_name(&self) -> &str {
        &self.source
    }

    fn struct_size(&self, name: &str) -> Option<u64> {
        self.types.get(name).map(|t| t.size)
    }

    fn field(&self, type_name: &str, path: &str) -> Option<Field> {
        path::field(self, type_name, path)
    }
}

impl path::Aggregates for Pdb {
    type Member = Member;
    fn direct(&self, ty: &str, name: &str) -> Option<(u64, &Member)> {
        let m = self
            .types
            .get(ty)?
            .members
            .iter()
            .find(|m| m.name == name)?;
        Some((m.offset, m))
    }
    fn anonymous<'a>(&'a self, ty: &str) -> Vec<(u64, Option<&'a str>)> {
        let Some(t) = self.types.get(ty) else {
            return Vec::new();
        };
        t.members
            .iter()
            .map(|m| {
                let anon = is_anonymous_member(m);
                (m.offset, if anon { m.type_key.as_deref() } else { None })
            })
            .collect()
    }
    fn aggregate_of<'a>(&'a self, m: &'a Member) -> Option<&'a str> {
        m.type_key.as_deref()
    }
    fn size_of(&self, m: &Member) -> Option<u64> {
        m.size
    }
}

/// The MSF 7.0 signature that starts every PDB.
const MSF_MAGIC: &[u8; 32] = b"Microsoft C/C++ MSF 7.00\r\n\x1aDS\0\0\0";

/// Check the MSF superblock: the signature, a block size MSF allows, and a file holding every
/// block the superblock counts (a truncated file is reported as such, whether or not the
/// blocks it lost are ones a reader would touch).
fn check_superblock(data: &[u8]) -> std::result::Result<(), String> {
    if data.len() < 56 || &data[..32] != MSF_MAGIC {
        return Err(
            "not a PDB: no MSF 7.0 signature (`Microsoft C/C++ MSF 7.00`) at its start".into(),
        );
    }
    let word = |at: usize| u32::from_le_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]);
    let (block_size, blocks) = (word(32), word(40));
    if !matches!(block_size, 512 | 1024 | 2048 | 4096) {
        return Err(format!(
            "MSF block size {block_size} (512, 1024, 2048 or 4096 expected)"
        ));
    }
    let need = u64::from(block_size) * u64::from(blocks);
    if (data.len() as u64) < need {
        return Err(format!(
            "truncated: the MSF superblock counts {blocks} blocks of {block_size} bytes ({need} bytes), the file has {}",
            data.len()
        ));
    }
    Ok(())
}

/// Type records the `pdb` crate (0.8) must never parse, because it panics on malformed ones:
/// `LF_POINTER` (`unreachable!()` for a pointer mode past 4) and the arrays (`assert!` that no
/// bytes follow the dimensions). Their sizes are decoded here from the raw records
/// ([`RawTypes`]).
const LF_POINTER: u16 = 0x1002;
const LF_ARRAY_ST: u16 = 0x1003;
const LF_ARRAY: u16 = 0x1503;
const LF_STRIDED_ARRAY: u16 = 0x1516;

fn crate_must_not_parse(kind: u16) -> bool {
    matches!(kind, LF_POINTER | LF_ARRAY_ST | LF_ARRAY | LF_STRIDED_ARRAY)
}

/// The records parsed through the crate: only those a layout needs (structures, unions,
/// enums, field lists, modifiers, bitfields). Others are never parsed: some make the crate
/// allocate by a count in the record (`LF_ARGLIST`: up to 2^32 type indices) or panic
/// ([`crate_must_not_parse`]).
fn crate_may_parse(kind: u16) -> bool {
    matches!(
        kind,
        0x1001 // LF_MODIFIER
            | 0x1004..=0x1007 // LF_CLASS_ST, LF_STRUCTURE_ST, LF_UNION_ST, LF_ENUM_ST
            | 0x1203 // LF_FIELDLIST
            | 0x1205 // LF_BITFIELD
            | 0x1504..=0x1507 // LF_CLASS, LF_STRUCTURE, LF_UNION, LF_ENUM
            | 0x1519 // LF_INTERFACE
    )
}

/// Parse a type record through the crate: primitives, and the kinds [`crate_may_parse`].
fn parse_type<'t>(item: &pdb::Type<'t>) -> Option<pdb::TypeData<'t>> {
    if item.index().0 >= 0x1000 && !crate_may_parse(item.raw_kind()) {
        return None;
    }
    item.parse().ok()
}

/// The raw records of the TPI stream (stream 2), by type index, read the way the crate's own
/// iterator reads them (a 16-bit length, at least 2, then the record from its kind on).
struct RawTypes {
    stream: Vec<u8>,
    first: u32,
    /// `(offset, length)` of each record in `stream`.
    records: Vec<(usize, usize)>,
}

impl RawTypes {
    fn read(file: &mut pdb::PDB<'_, std::io::Cursor<Vec<u8>>>) -> RawTypes {
        let stream = file
            .raw_stream(pdb::StreamIndex(2))
            .ok()
            .flatten()
            .map(|s| s.as_slice().to_vec())
            .unwrap_or_default();
        let word = |at: usize| {
            stream
                .get(at..at + 4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        };
        let (header_size, first) = (word(4).unwrap_or(0) as usize, word(8).unwrap_or(0));
        let mut records = Vec::new();
        let mut pos = header_size;
        while records.len() < MAX_PDB_TYPES {
            let Some(len) = stream
                .get(pos..pos + 2)
                .map(|b| u16::from_le_bytes([b[0], b[1]]))
            else {
                break;
            };
            let len = usize::from(len);
            if len < 2 || pos + 2 + len > stream.len() {
                break;
            }
            records.push((pos + 2, len));
            pos += 2 + len;
        }
        RawTypes {
            stream,
            first,
            records,
        }
    }

    /// Check the TPI header's index range before the crate sizes its index by it (it computes
    /// `maximum - minimum` unchecked and reserves room for that many records).
    fn check_header(&self) -> std::result::Result<(), String> {
        let word = |at: usize| {
            self.stream
                .get(at..at + 4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        };
        let (Some(min), Some(max)) = (word(8), word(12)) else {
            return Ok(()); // no or empty TPI stream: the crate reads no index range
        };
        let count = max.checked_sub(min).ok_or_else(|| {
            format!(
                "type information (TPI) header: maximum index {max:#x} below the minimum {min:#x}"
            )
        })?;
        // Every record takes at least 4 bytes (its length and kind).
        if count as usize > MAX_PDB_TYPES || count as usize > self.stream.len() / 4 {
            return Err(format!(
                "type information (TPI) header claims {count} records, more than its {} bytes hold (or over {MAX_PDB_TYPES})",
                self.stream.len()
            ));
        }
        Ok(())
    }

    fn get(&self, index: pdb::TypeIndex) -> Option<&[u8]> {
        let i = usize::try_from(index.0.checked_sub(self.first)?).ok()?;
        let &(at, len) = self.records.get(i)?;
        self.stream.get(at..at + len)
    }

    /// The size of a pointer or array record, decoded from its bytes.
    fn size(&self, index: pdb::TypeIndex, pointer_size: u64) -> Option<u64> {
        let r = self.get(index)?;
        let u16_at = |at: usize| r.get(at..at + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
        let u32_at = |at: usize| {
            r.get(at..at + 4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        };
        match u16_at(0)? {
            LF_POINTER => {
                // kind, underlying type, attributes: bits 0-4 the pointer kind, 13-18 the size.
                let attrs = u32_at(6)?;
                match ((attrs >> 13) & 0x3f, attrs & 0x1f) {
                    (0, 0x0a | 0x0b) => Some(4),
                    (0, 0x0c) => Some(8),
                    (0, _) => Some(pointer_size),
                    (size, _) => Some(u64::from(size)),
                }
            }
            // kind, element type, index type, [stride,] size in bytes as a numeric leaf.
            LF_ARRAY | LF_ARRAY_ST => numeric_leaf(r.get(10..)?),
            LF_STRIDED_ARRAY => numeric_leaf(r.get(14..)?),
            _ => None,
        }
    }
}

/// A CodeView numeric leaf as an unsigned size (`None` for negative or unknown encodings).
fn numeric_leaf(b: &[u8]) -> Option<u64> {
    let word = |n: usize| b.get(2..2 + n);
    let v = u16::from_le_bytes([*b.first()?, *b.get(1)?]);
    let le = |x: &[u8]| {
        let mut a = [0u8; 8];
        a[..x.len()].copy_from_slice(x);
        u64::from_le_bytes(a)
    };
    match v {
        0..=0x7fff => Some(u64::from(v)),
        0x8000 => word(1).map(le).filter(|x| *x < 0x80),
        0x8001 => word(2).map(le).filter(|x| *x < 0x8000),
        0x8002 => word(2).map(le),
        0x8003 => word(4).map(le).filter(|x| *x < 0x8000_0000),
        0x8004 => word(4).map(le),
        0x8009 => word(8).map(le).filter(|x| *x < 1 << 63),
        0x800a => word(8).map(le),
        _ => None,
    }
}

/// Whether a type name is one the compiler made up for an anonymous structure or union.
fn is_unnamed(name: &str) -> bool {
    name.is_empty()
        || name.contains("<unnamed-")
        || name.contains("<anonymous-")
        || name.starts_with("__unnamed")
}

fn is_anonymous_member(m: &Member) -> bool {
    m.name.is_empty()
        || m.name.starts_with("<unnamed")
        || m.type_key.as_deref().is_some_and(|k| k.contains('@'))
}

/// The key a structure/union is stored under: its name, or for an anonymous one (many share
/// `<unnamed-tag>`) its name and decorated unique name (which its forward references share,
/// MSVC's `.?AT<unnamed-type-u>@_KPROCESS@@`), or without one its type index.
fn type_key(name: &str, unique: Option<pdb::RawString<'_>>, index: pdb::TypeIndex) -> String {
    match unique {
        _ if !is_unnamed(name) => name.to_owned(),
        Some(u) => format!("{name}@{u}"),
        None => format!("{name}@{:#x}", index.0),
    }
}

/// A structure/union definition found in the first pass.
struct Def {
    index: pdb::TypeIndex,
    size: u64,
    fields: Option<pdb::TypeIndex>,
}

fn parse(source: std::io::Cursor<Vec<u8>>, name: &str) -> std::result::Result<Pdb, String> {
    let mut file =
        pdb::PDB::open(source).map_err(|e| format!("not a readable MSF 7.0 PDB: {e}"))?;
    let info = file
        .pdb_information()
        .map_err(|e| format!("PDB information stream: {e}"))?;
    let guid = info.guid.simple().to_string().to_ascii_uppercase();
    let age = info.age;
    let raw = RawTypes::read(&mut file);
    raw.check_header()?;
    let tpi = file
        .type_information()
        .map_err(|e| format!("type information (TPI) stream: {e}"))?;
    let mut finder = tpi.finder();
    let mut iter = tpi.iter();
    let mut defs: HashMap<String, Def> = HashMap::new();
    let mut enum_defs: Vec<(String, pdb::TypeIndex, pdb::TypeIndex)> = Vec::new();
    let mut count = 0usize;
    while let Some(item) = iter
        .next()
        .map_err(|e| format!("type record {}: {e}", count))?
    {
        count += 1;
        if count > MAX_PDB_TYPES {
            return Err(format!("more than {MAX_PDB_TYPES} type records"));
        }
        finder.update(&iter);
        // Records the crate does not know (and pointers) are not layouts: skip them.
        let Some(data) = parse_type(&item) else {
            continue;
        };
        match data {
            pdb::TypeData::Class(c) if !c.properties.forward_reference() => {
                let key = type_key(&c.name.to_string(), c.unique_name, item.index());
                defs.entry(key).or_insert(Def {
                    index: item.index(),
                    size: c.size,
                    fields: c.fields,
                });
            }
            pdb::TypeData::Union(u) if !u.properties.forward_reference() => {
                let key = type_key(&u.name.to_string(), u.unique_name, item.index());
                defs.entry(key).or_insert(Def {
                    index: item.index(),
                    size: u.size,
                    fields: Some(u.fields),
                });
            }
            pdb::TypeData::Enumeration(e) if !e.properties.forward_reference() => {
                enum_defs.push((e.name.to_string().into_owned(), e.fields, e.underlying_type));
            }
            _ => {}
        }
    }
    let sizes: HashMap<String, u64> = defs.iter().map(|(k, d)| (k.clone(), d.size)).collect();
    let resolver = Resolver {
        finder: &finder,
        sizes: &sizes,
        pointer_size: pointer_size(&mut file),
        raw: &raw,
    };
    let mut members_left = MAX_PDB_MEMBERS;
    let mut types = HashMap::with_capacity(defs.len());
    for (key, def) in &defs {
        let mut members = Vec::new();
        for_each_field(&finder, def.fields, |f| {
            if let pdb::TypeData::Member(m) = f {
                members_left = members_left
                    .checked_sub(1)
                    .ok_or_else(|| format!("more than {MAX_PDB_MEMBERS} structure members"))?;
                let (size, type_key) = resolver.describe(m.field_type);
                members.push(Member {
                    name: m.name.to_string().into_owned(),
                    offset: m.offset,
                    size,
                    type_key,
                });
            }
            Ok(())
        })
        .map_err(|e| format!("members of {key} (type {:#x}): {e}", def.index.0))?;
        types.insert(
            key.clone(),
            UserType {
                size: def.size,
                members,
            },
        );
    }
    let mut enums = HashMap::new();
    for (ename, fields, underlying) in enum_defs {
        if enums.contains_key(&ename) {
            continue;
        }
        let mut constants = Vec::new();
        for_each_field(&finder, Some(fields), |f| {
            if let pdb::TypeData::Enumerate(c) = f {
                members_left = members_left
                    .checked_sub(1)
                    .ok_or_else(|| format!("more than {MAX_PDB_MEMBERS} members"))?;
                constants.push((c.name.to_string().into_owned(), c.value));
            }
            Ok(())
        })
        .map_err(|e| format!("constants of enum {ename}: {e}"))?;
        let size = resolver.describe(underlying).0;
        let signed = resolver.is_signed(underlying);
        let constants = constants
            .into_iter()
            .map(|(n, v)| (n, variant_value(v, size, signed)))
            .collect();
        enums.insert(ename, Enum { size, constants });
    }
    let symbols = read_symbols(&mut file, name)?;
    Ok(Pdb {
        types,
        enums,
        symbols,
        guid,
        age,
        source: String::new(),
    })
}

/// Call `f` on every record of the field list at `start` and its continuations.
fn for_each_field(
    finder: &pdb::TypeFinder<'_>,
    start: Option<pdb::TypeIndex>,
    mut f: impl FnMut(&pdb::TypeData<'_>) -> std::result::Result<(), String>,
) -> std::result::Result<(), String> {
    let mut next = start;
    for _ in 0..MAX_FIELD_LIST_CHAIN {
        let Some(index) = next else { return Ok(()) };
        let item = finder
            .find(index)
            .map_err(|e| format!("field list {:#x}: {e}", index.0))?;
        if item.raw_kind() != 0x1203 {
            return Err(format!("type {:#x} is not a field list", index.0));
        }
        let data = item
            .parse()
            .map_err(|e| format!("field list {:#x}: {e}", index.0))?;
        let pdb::TypeData::FieldList(list) = data else {
            return Err(format!("type {:#x} is not a field list", index.0));
        };
        for field in &list.fields {
            f(field)?;
        }
        next = list.continuation;
    }
    Err(format!(
        "field list continues past {MAX_FIELD_LIST_CHAIN} records"
    ))
}

/// An enum constant as the enum's underlying type reads it: compilers store e.g. `-2` of an
/// `int` enum as the unsigned `0xfffffffe`.
fn variant_value(v: pdb::Variant, size: Option<u64>, signed: bool) -> i64 {
    let raw = variant_raw(v);
    match size {
        Some(s @ 1..=7) if signed => {
            let shift = 64 - 8 * s as u32;
            (raw << shift) >> shift
        }
        Some(s @ 1..=7) => raw & ((1i64 << (8 * s as u32)) - 1),
        _ => raw,
    }
}

fn variant_raw(v: pdb::Variant) -> i64 {
    match v {
        pdb::Variant::U8(x) => x.into(),
        pdb::Variant::U16(x) => x.into(),
        pdb::Variant::U32(x) => x.into(),
        pdb::Variant::U64(x) => x as i64,
        pdb::Variant::I8(x) => x.into(),
        pdb::Variant::I16(x) => x.into(),
        pdb::Variant::I32(x) => x.into(),
        pdb::Variant::I64(x) => x,
    }
}

/// Sizes and structure names of type references.
struct Resolver<'a, 't> {
    finder: &'a pdb::TypeFinder<'t>,
    sizes: &'a HashMap<String, u64>,
    pointer_size: u64,
    raw: &'a RawTypes,
}

impl Resolver<'_, '_> {
    /// Whether type `index` (after modifiers) is a signed integer primitive.
    fn is_signed(&self, index: pdb::TypeIndex) -> bool {
        use pdb::PrimitiveKind as K;
        let mut index = index;
        for _ in 0..MAX_TYPE_DEPTH {
            let Ok(item) = self.finder.find(index) else {
                return false;
            };
            match parse_type(&item) {
                Some(pdb::TypeData::Modifier(m)) => index = m.underlying_type,
                Some(pdb::TypeData::Primitive(p)) => {
                    return p.indirection.is_none()
                        && matches!(
                            p.kind,
                            K::Char
                                | K::I8
                                | K::Short
                                | K::I16
                                | K::Long
                                | K::I32
                                | K::Quad
                                | K::I64
                        )
                }
                _ => return false,
            }
        }
        false
    }

    /// The size of type `index` and, for a structure or union, its key.
    fn describe(&self, index: pdb::TypeIndex) -> (Option<u64>, Option<String>) {
        let mut index = index;
        for _ in 0..MAX_TYPE_DEPTH {
            let Ok(item) = self.finder.find(index) else {
                return (None, None);
            };
            if index.0 >= 0x1000 && crate_must_not_parse(item.raw_kind()) {
                return (self.raw.size(index, self.pointer_size), None);
            }
            let Some(data) = parse_type(&item) else {
                return (None, None);
            };
            match data {
                pdb::TypeData::Primitive(p) => return (primitive_size(&p), None),
                pdb::TypeData::Modifier(m) => index = m.underlying_type,
                pdb::TypeData::Bitfield(b) => index = b.underlying_type,
                pdb::TypeData::Enumeration(e) => index = e.underlying_type,
                pdb::TypeData::Class(c) => {
                    let key = type_key(&c.name.to_string(), c.unique_name, index);
                    return (self.sizes.get(&key).copied(), Some(key));
                }
                pdb::TypeData::Union(u) => {
                    let key = type_key(&u.name.to_string(), u.unique_name, index);
                    return (self.sizes.get(&key).copied(), Some(key));
                }
                _ => return (None, None),
            }
        }
        (None, None)
    }
}

/// The target's pointer size: 4 for an x86 PDB, else 8 (x64, ARM64; the DBI stream's machine
/// type, 8 when it has none).
fn pointer_size(file: &mut pdb::PDB<'_, std::io::Cursor<Vec<u8>>>) -> u64 {
    match file
        .debug_information()
        .ok()
        .and_then(|d| d.machine_type().ok())
    {
        Some(pdb::MachineType::X86) => 4,
        _ => 8,
    }
}

fn primitive_size(p: &pdb::PrimitiveType) -> Option<u64> {
    use pdb::{Indirection as I, PrimitiveKind as K};
    if let Some(ind) = p.indirection {
        return match ind {
            I::Near16 => Some(2),
            I::Far16 | I::Huge16 | I::Near32 => Some(4),
            I::Far32 => Some(6),
            I::Near64 => Some(8),
            I::Near128 => Some(16),
        };
    }
    Some(match p.kind {
        K::Char | K::UChar | K::RChar | K::I8 | K::U8 | K::Bool8 => 1,
        K::WChar | K::RChar16 | K::Short | K::UShort | K::I16 | K::U16 | K::F16 | K::Bool16 => 2,
        K::RChar32
        | K::Long
        | K::ULong
        | K::I32
        | K::U32
        | K::F32
        | K::F32PP
        | K::Bool32
        | K::HRESULT => 4,
        K::F48 => 6,
        K::Quad | K::UQuad | K::I64 | K::U64 | K::F64 | K::Bool64 | K::Complex32 => 8,
        K::F80 => 10,
        K::Octa | K::UOcta | K::I128 | K::U128 | K::F128 | K::Complex64 => 16,
        _ => return None,
    })
}

fn read_symbols(
    file: &mut pdb::PDB<'_, std::io::Cursor<Vec<u8>>>,
    name: &str,
) -> std::result::Result<SymbolTable, String> {
    let map = file
        .address_map()
        .map_err(|e| format!("section headers/OMAP (address map): {e}"))?;
    let globals = file
        .global_symbols()
        .map_err(|e| format!("global symbol stream: {e}"))?;
    let mut publics = Vec::new();
    let mut data = Vec::new();
    let mut iter = globals.iter();
    let mut n = 0usize;
    while let Some(sym) = iter
        .next()
        .map_err(|e| format!("global symbol record {n}: {e}"))?
    {
        n += 1;
        if n > MAX_SYMBOLS {
            return Err(format!("more than {MAX_SYMBOLS} global symbol records"));
        }
        // Only public and data symbols are parsed (as with types, the crate sees no record
        // kind it need not).
        if !matches!(
            sym.raw_kind(),
            0x1007..=0x1009 | 0x110c..=0x110e // S_LDATA32(_ST), S_GDATA32(_ST), S_PUB32(_ST)
        ) {
            continue;
        }
        match sym.parse() {
            Ok(pdb::SymbolData::Public(p)) => {
                if let Some(rva) = p.offset.to_rva(&map) {
                    let kind = if p.function { b'T' } else { b'D' };
                    publics.push((p.name.to_string().into_owned(), rva.0, kind));
                }
            }
            Ok(pdb::SymbolData::Data(d)) => {
                if let Some(rva) = d.offset.to_rva(&map) {
                    let kind = if d.global { b'D' } else { b'd' };
                    data.push((d.name.to_string().into_owned(), rva.0, kind));
                }
            }
            _ => {}
        }
    }
    let mut b = SymbolTableBuilder::new(name);
    let mut seen = std::collections::HashSet::new();
    for (sym, rva, kind) in publics.iter().chain(data.iter()) {
        if seen.insert(sym.as_str()) && !b.push(sym, u64::from(*rva), *kind) {
            break;
        }
    }
    Ok(b.build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbol_store_layout() {
        assert_eq!(
            symbol_store_path(
                Path::new("/sym"),
                "ntkrnlmp.pdb",
                "5278aff86c341677d7d7835c85b7b844",
                0x1a
            ),
            Some(PathBuf::from(
                "/sym/ntkrnlmp.pdb/5278AFF86C341677D7D7835C85B7B8441A/ntkrnlmp.pdb"
            ))
        );
        for name in ["", ".", "..", "a/b.pdb", "a\\b.pdb", "a\0.pdb"] {
            assert_eq!(
                symbol_store_path(Path::new("/sym"), name, "00", 1),
                None,
                "{name:?}"
            );
        }
    }

    #[test]
    fn image_store_layout() {
        // The example Microsoft's debugger prints when it looks an image up by index:
        // `mysvc.exe\6281E561252000\mysvc.exe` (TimeDateStamp 6281E561, SizeOfImage 252000).
        assert_eq!(
            image_store_paths(Path::new("/sym"), "mysvc.exe", 0x6281_e561, 0x25_2000),
            vec![PathBuf::from("/sym/mysvc.exe/6281E561252000/mysvc.exe")]
        );
        // A size with letters: `%x` first, then the upper-case spelling; a short time stamp
        // keeps its 8 digits.
        assert_eq!(
            image_store_paths(Path::new("/sym"), "ntoskrnl.exe", 0x5f, 0xa4000),
            vec![
                PathBuf::from("/sym/ntoskrnl.exe/0000005Fa4000/ntoskrnl.exe"),
                PathBuf::from("/sym/ntoskrnl.exe/0000005FA4000/ntoskrnl.exe"),
            ]
        );
        for name in ["", ".", "..", "a/b.exe", "a\\b.exe", "a\0.exe"] {
            assert!(
                image_store_paths(Path::new("/sym"), name, 1, 2).is_empty(),
                "{name:?}"
            );
        }
    }

    #[test]
    fn not_a_pdb_is_a_clear_error() {
        let e = Pdb::from_bytes(b"MZ\x90\0".to_vec(), "x.pdb").unwrap_err();
        let s = e.to_string();
        assert!(s.contains("x.pdb") && s.contains("MSF"), "{s}");
        assert!(Pdb::from_bytes(Vec::new(), "empty.pdb").is_err());
    }
}
