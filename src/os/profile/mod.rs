//! Kernel profiles: symbol addresses and structure layouts, from whichever source is at hand.
//!
//! | source | symbols | types |
//! |---|---|---|
//! | Volatility3 ISF JSON (`.json` or `.json.xz`) | [`isf::Isf`] | [`isf::Isf`] |
//! | Microsoft PDB (`ntkrnlmp.pdb`, MSF 7.0) | [`pdb::Pdb`] (RVAs) | [`pdb::Pdb`] |
//! | BTF file (`/sys/kernel/btf/vmlinux`) | – | [`btf::Btf`] |
//! | kallsyms / System.map file | [`SymbolTable::parse_text`] | – |
//! | the running kernel's memory (no files at all) | [`kallsyms::find_in_image`] | `.BTF` section via [`btf::Btf`] |
//!
//! Symbol addresses may be link-time (ISF, System.map) or run-time (kallsyms, in-memory
//! tables); the OS layer computes the KASLR slide from `_text` and applies it, so every source
//! gives the same result.

use std::path::Path;

use crate::error::{Error, Result};

pub mod btf;
pub mod cache;
pub mod isf;
pub mod kallsyms;
mod path;
pub mod pdb;

/// Types plus symbols.
pub struct Profile {
    /// Structure layouts.
    pub types: Box<dyn TypeSource + Send + Sync>,
    /// Symbol addresses (link-time or run-time).
    pub symbols: SymbolTable,
}

impl std::fmt::Debug for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Profile")
            .field("types", &self.types.source_name())
            .field("symbols", &self.symbols.source_name())
            .finish()
    }
}

impl Profile {
    /// Load a Volatility3 ISF.
    ///
    /// # Errors
    /// See [`isf::Isf::from_file`].
    pub fn from_isf(path: impl AsRef<Path>) -> Result<Profile> {
        let isf = isf::Isf::from_file(path)?;
        let symbols = isf.symbols().clone();
        Ok(Profile {
            types: Box::new(isf),
            symbols,
        })
    }

    /// Load a Microsoft PDB (symbols as RVAs, as a Windows ISF has them).
    ///
    /// # Errors
    /// See [`pdb::Pdb::from_file`].
    pub fn from_pdb(path: impl AsRef<Path>) -> Result<Profile> {
        let pdb = pdb::Pdb::from_file(path)?;
        let symbols = pdb.symbols().clone();
        Ok(Profile {
            types: Box::new(pdb),
            symbols,
        })
    }

    /// Load a BTF file (at most [`MAX_BTF`](crate::os::linux::MAX_BTF) bytes) and a
    /// kallsyms/System.map file (at most [`MAX_SYMBOL_FILE_BYTES`]).
    ///
    /// # Errors
    /// [`Error::Io`] (also for a FIFO, device or directory), [`Error::Malformed`] (also for a
    /// file over its cap).
    pub fn from_btf_and_symbols(
        btf: impl AsRef<Path>,
        symbols: impl AsRef<Path>,
    ) -> Result<Profile> {
        let btf = btf.as_ref();
        let data = crate::file::read_capped(btf, crate::os::linux::MAX_BTF, "BTF")?;
        Ok(Profile {
            types: Box::new(btf::Btf::parse(data, btf.display().to_string())?),
            symbols: SymbolTable::from_file(symbols)?,
        })
    }
}

/// A field's location inside a structure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    /// Byte offset from the start of the outermost structure.
    pub offset: u64,
    /// Size of the field's type in bytes, when the source knows it.
    pub size: Option<u64>,
}

/// One parameter of a kernel function, as its prototype declares it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Param {
    /// Its name (empty if the prototype has none).
    pub name: String,
    /// Its C type, as written (`struct pt_regs *`, `const char *`, `long`).
    pub type_name: String,
}

/// Structure layouts (and, where the source has them, function prototypes).
pub trait TypeSource {
    /// Where the types came from (for messages).
    fn source_name(&self) -> &str;
    /// Size of a structure.
    fn struct_size(&self, name: &str) -> Option<u64>;
    /// Location of a field. `path` may name nested members: `"core_layout.base"`. Anonymous
    /// struct/union members are searched transparently.
    fn field(&self, type_name: &str, path: &str) -> Option<Field>;

    /// Like [`TypeSource::field`] but an error naming the source when missing.
    ///
    /// # Errors
    /// [`Error::MissingField`].
    fn require(&self, type_name: &str, path: &str) -> Result<u64> {
        self.field(type_name, path)
            .map(|f| f.offset)
            .ok_or_else(|| Error::MissingField {
                type_name: type_name.to_owned(),
                field: path.to_owned(),
                source_name: self.source_name().to_owned(),
                hint: String::new(),
            })
    }

    /// The parameters of kernel function `name`, in order, when the source has its prototype
    /// (BTF does; an ISF does not). Tracing uses them to find an argument's register by name.
    fn function_params(&self, name: &str) -> Option<Vec<Param>> {
        let _ = name;
        None
    }
}

/// A shared profile: many guests of one build (a fleet of identical VMs) can use one loaded
/// profile, `Arc::clone`d into each [`Profile`].
impl<T: TypeSource + ?Sized> TypeSource for std::sync::Arc<T> {
    fn source_name(&self) -> &str {
        (**self).source_name()
    }
    fn struct_size(&self, name: &str) -> Option<u64> {
        (**self).struct_size(name)
    }
    fn field(&self, type_name: &str, path: &str) -> Option<Field> {
        (**self).field(type_name, path)
    }
    fn function_params(&self, name: &str) -> Option<Vec<Param>> {
        (**self).function_params(name)
    }
}

/// Symbol kinds as in `nm`/kallsyms (`T`, `t`, `D`, `d`, `B`, `R`, `A`, ...).
pub type SymbolKind = u8;

#[derive(Clone, Copy, Debug)]
struct SymEntry {
    name_off: u32,
    name_len: u32,
    addr: u64,
    kind: SymbolKind,
}

/// A compact, immutable table of symbol names and addresses, searchable by name.
///
/// Names live in one arena and entries keep their source order (address order for kallsyms);
/// lookups go through an open-addressing hash index. Duplicate names (static functions in
/// several files) keep every entry; [`SymbolTable::get`] returns the first in source order.
#[derive(Clone, Debug, Default)]
pub struct SymbolTable {
    names: String,
    entries: Vec<SymEntry>,
    /// Slots hold entry index + 1 (0 = empty); length is a power of two.
    index: Vec<u32>,
    /// Entry indices in address order, absolute symbols left out; built on the first
    /// address lookup (most runs only look names up).
    by_addr: std::sync::OnceLock<Vec<u32>>,
    source: String,
}

/// Addresses past the last symbol of a table resolve to it only this far (past the kernel
/// image's end an address belongs to something the table does not describe).
const MAX_TAIL_OFFSET: u64 = 1 << 20;

/// An address resolved to the symbol at or below it: `name+0xoffset` when displayed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SymbolOffset<'a> {
    /// The symbol's name.
    pub name: &'a str,
    /// The symbol's address.
    pub addr: u64,
    /// How far past the symbol's address the resolved address lies.
    pub offset: u64,
}

impl std::fmt::Display for SymbolOffset<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}+{:#x}", self.name, self.offset)
    }
}

/// Bound on symbols in one table.
pub const MAX_SYMBOLS: usize = 1 << 22;
/// Largest kallsyms / System.map file read: [`MAX_SYMBOLS`] lines of 64 bytes on average
/// (a real `/proc/kallsyms` has about 200,000 lines of 50 bytes).
pub const MAX_SYMBOL_FILE_BYTES: u64 = (MAX_SYMBOLS as u64) * 64;

/// Builds a [`SymbolTable`].
#[derive(Debug, Default)]
pub struct SymbolTableBuilder {
    table: SymbolTable,
}

impl SymbolTableBuilder {
    /// A builder for symbols from `source`.
    pub fn new(source: impl Into<String>) -> Self {
        SymbolTableBuilder {
            table: SymbolTable {
                source: source.into(),
                ..SymbolTable::default()
            },
        }
    }

    /// Reserve room for `n` symbols with names of `bytes` bytes in all.
    pub fn reserve(&mut self, n: usize, bytes: usize) {
        self.table.entries.reserve(n.min(MAX_SYMBOLS));
        self.table.names.reserve(bytes.min(MAX_SYMBOLS * 64));
    }

    /// Add a symbol. Returns `false` (and adds nothing) once [`MAX_SYMBOLS`] is reached.
    pub fn push(&mut self, name: &str, addr: u64, kind: SymbolKind) -> bool {
        if self.table.entries.len() >= MAX_SYMBOLS || name.len() > u32::MAX as usize {
            return false;
        }
        let Ok(name_off) = u32::try_from(self.table.names.len()) else {
            return false;
        };
        self.table.names.push_str(name);
        self.table.entries.push(SymEntry {
            name_off,
            name_len: name.len() as u32,
            addr,
            kind,
        });
        true
    }

    /// Finish: build the hash index (the first of duplicate names wins).
    pub fn build(mut self) -> SymbolTable {
        let t = &mut self.table;
        let slots = (t.entries.len() * 2).next_power_of_two().max(16);
        let mut index = vec![0u32; slots];
        let mask = slots - 1;
        for (i, e) in t.entries.iter().enumerate() {
            let name = name_of(&t.names, e);
            let mut s = name_hash(name) as usize & mask;
            loop {
                match index[s] {
                    0 => {
                        index[s] = i as u32 + 1;
                        break;
                    }
                    j if name_of(&t.names, &t.entries[j as usize - 1]) == name => break,
                    _ => s = (s + 1) & mask,
                }
            }
        }
        t.index = index;
        self.table
    }
}

/// A fast non-cryptographic hash of a symbol name (symbol tables are not adversarial to the
/// host beyond slower lookups; every probe sequence is bounded by the table size).
fn name_hash(name: &str) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut h = name.len() as u64;
    let b = name.as_bytes();
    let mut chunks = b.chunks_exact(8);
    for c in &mut chunks {
        let mut a = [0u8; 8];
        a.copy_from_slice(c);
        h = (h ^ u64::from_le_bytes(a)).wrapping_mul(K).rotate_left(31);
    }
    let mut tail = 0u64;
    for (i, &x) in chunks.remainder().iter().enumerate() {
        tail |= (x as u64) << (8 * i);
    }
    h = (h ^ tail).wrapping_mul(K);
    h ^ (h >> 29)
}

fn name_of<'a>(names: &'a str, e: &SymEntry) -> &'a str {
    names
        .get(e.name_off as usize..(e.name_off + e.name_len) as usize)
        .unwrap_or("")
}

impl SymbolTable {
    /// Parse `/proc/kallsyms` or `System.map` text: `ADDRESS TYPE NAME [\[MODULE\]]` per line.
    /// Module symbols (with a `[module]` column) are skipped: they are not part of the kernel
    /// image. Malformed lines are skipped; a file with no symbol at all is an error.
    ///
    /// # Errors
    /// [`Error::Malformed`] if no line could be parsed.
    pub fn parse_text(text: &str, source: impl Into<String>) -> Result<SymbolTable> {
        let source = source.into();
        let mut b = SymbolTableBuilder::new(source.clone());
        for line in text.lines() {
            let mut it = line.split_ascii_whitespace();
            let (Some(addr), Some(kind), Some(name)) = (it.next(), it.next(), it.next()) else {
                continue;
            };
            if it.next().is_some() {
                continue; // module symbol
            }
            let (Ok(addr), [kind]) = (u64::from_str_radix(addr, 16), kind.as_bytes()) else {
                continue;
            };
            if !b.push(name, addr, *kind) {
                break;
            }
        }
        let t = b.build();
        if t.is_empty() {
            return Err(Error::malformed(
                "symbol file",
                source,
                "no `ADDRESS TYPE NAME` line found",
            ));
        }
        Ok(t)
    }

    /// Read and parse a kallsyms / System.map file (at most [`MAX_SYMBOL_FILE_BYTES`]).
    ///
    /// # Errors
    /// [`Error::Io`] (also for a FIFO, device or directory), [`Error::Malformed`] for a file
    /// over the cap, or as [`SymbolTable::parse_text`].
    pub fn from_file(path: impl AsRef<Path>) -> Result<SymbolTable> {
        let path = path.as_ref();
        let text = crate::file::read_capped(path, MAX_SYMBOL_FILE_BYTES, "symbol file")?;
        Self::parse_text(&String::from_utf8_lossy(&text), path.display().to_string())
    }

    /// Where the symbols came from.
    pub fn source_name(&self) -> &str {
        &self.source
    }

    /// Number of symbols.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn find(&self, name: &str) -> Option<&SymEntry> {
        if self.index.is_empty() {
            return None;
        }
        let mask = self.index.len() - 1;
        let mut s = name_hash(name) as usize & mask;
        for _ in 0..self.index.len() {
            let i = *self.index.get(s)?;
            if i == 0 {
                return None;
            }
            let e = self.entries.get(i as usize - 1)?;
            if name_of(&self.names, e) == name {
                return Some(e);
            }
            s = (s + 1) & mask;
        }
        None
    }

    /// Address of `name` as recorded (link-time or run-time, depending on the source).
    pub fn get(&self, name: &str) -> Option<u64> {
        self.find(name).map(|e| e.addr)
    }

    /// Kind letter of `name`.
    pub fn kind(&self, name: &str) -> Option<SymbolKind> {
        self.find(name).map(|e| e.kind)
    }

    /// Address of `name`, or an error naming the table.
    ///
    /// # Errors
    /// [`Error::MissingSymbol`].
    pub fn require(&self, name: &str) -> Result<u64> {
        self.get(name).ok_or_else(|| Error::MissingSymbol {
            symbol: name.to_owned(),
            source_name: self.source.clone(),
            hint: String::new(),
        })
    }

    /// The symbol at or below `addr` (`schedule+0x3c`): the highest-addressed symbol not above
    /// it, the first in source order among several at one address. Absolute symbols (`A`, `a`:
    /// per-CPU offsets, constants) are not addresses and never match. `None` below the first
    /// symbol, and more than 1 MiB past the last one.
    ///
    /// The address index is built on the first call (a sort of the table, a few ms for a
    /// kernel's ~150,000 symbols) and kept.
    pub fn symbolize(&self, addr: u64) -> Option<SymbolOffset<'_>> {
        let order = self.by_addr();
        // Entries with an address <= addr form a prefix of `order`.
        let n = order.partition_point(|&i| self.entries[i as usize].addr <= addr);
        let last = self.entries.get(*order.get(n.checked_sub(1)?)? as usize)?;
        // The first in source order among the symbols at that address (the sort is stable).
        let first = order[..n].partition_point(|&i| self.entries[i as usize].addr < last.addr);
        let e = self.entries.get(*order.get(first)? as usize)?;
        let offset = addr - e.addr;
        if n == order.len() && offset > MAX_TAIL_OFFSET {
            return None;
        }
        Some(SymbolOffset {
            name: name_of(&self.names, e),
            addr: e.addr,
            offset,
        })
    }

    /// The lowest symbol address above `addr` (absolute symbols excepted): where the object
    /// at `addr` ends at the latest, e.g. the extent of a table that kallsyms lists without a
    /// size.
    pub fn next_above(&self, addr: u64) -> Option<u64> {
        let order = self.by_addr();
        let n = order.partition_point(|&i| self.entries[i as usize].addr <= addr);
        order.get(n).map(|&i| self.entries[i as usize].addr)
    }

    /// Indices of the non-absolute entries sorted by address (built on first use).
    fn by_addr(&self) -> &[u32] {
        self.by_addr.get_or_init(|| {
            let mut v: Vec<u32> = (0..self.entries.len() as u32)
                .filter(|&i| !matches!(self.entries[i as usize].kind, b'A' | b'a'))
                .collect();
            v.sort_by_key(|&i| self.entries[i as usize].addr);
            v
        })
    }

    /// All symbols in source order: `(name, address, kind)`.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u64, SymbolKind)> + '_ {
        self.entries
            .iter()
            .map(|e| (name_of(&self.names, e), e.addr, e.kind))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kallsyms_text_and_skips_modules_and_junk() {
        let t = SymbolTable::parse_text(
            "ffffffff86600000 T _text\nnot a line\nffffffff8801aa40 D init_task\nffffffffc041c000 t crc_itu_t_init\t[crc_itu_t]\nzzzz T bad\n0000000000001000 A cpu_debug_store\n",
            "test",
        )
        .unwrap();
        assert_eq!(t.len(), 3);
        assert_eq!(t.get("init_task"), Some(0xffffffff8801aa40));
        assert_eq!(t.kind("_text"), Some(b'T'));
        assert_eq!(t.get("crc_itu_t_init"), None);
        assert!(t.require("nope").unwrap_err().to_string().contains("test"));
        assert!(SymbolTable::parse_text("", "empty").is_err());
    }

    #[test]
    fn duplicates_keep_first() {
        let mut b = SymbolTableBuilder::new("t");
        b.push("x", 1, b't');
        b.push("a", 2, b't');
        b.push("x", 3, b't');
        let t = b.build();
        assert_eq!(t.get("x"), Some(1));
        assert_eq!(t.iter().map(|s| s.0).collect::<Vec<_>>(), ["x", "a", "x"]);
        assert_eq!(t.get("missing"), None);
    }

    #[test]
    fn symbolize_finds_the_symbol_at_or_below() {
        let t = SymbolTable::parse_text(
            "ffffffff81000000 T _text\n\
             ffffffff81000000 T _stext\n\
             ffffffff81000100 t helper\n\
             0000000000001000 A fixed_percpu_data\n\
             ffffffff81000080 T early\n\
             ffffffff81000200 D last\n",
            "test",
        )
        .unwrap();
        let at = |a| t.symbolize(a).map(|s| s.to_string());
        assert_eq!(at(0xffffffff81000000).as_deref(), Some("_text+0x0"));
        assert_eq!(at(0xffffffff8100007f).as_deref(), Some("_text+0x7f"));
        // out of source order: the address order decides
        assert_eq!(at(0xffffffff81000090).as_deref(), Some("early+0x10"));
        assert_eq!(at(0xffffffff81000123).as_deref(), Some("helper+0x23"));
        assert_eq!(
            at(0xffffffff81000200 + 0x1000).as_deref(),
            Some("last+0x1000")
        );
        // absolute symbols are not addresses; below the first symbol; far past the last
        assert_eq!(at(0x1000), None);
        assert_eq!(at(0xffffffff80ffffff), None);
        assert_eq!(at(0xffffffff81000200 + (1 << 20) + 1), None);
        assert_eq!(SymbolTable::default().symbolize(0), None);
    }
}
