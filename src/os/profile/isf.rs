//! Volatility3 Intermediate Symbol Format (ISF) profiles: JSON, optionally xz-compressed.
//!
//! Linux ISFs (from `dwarf2json`) carry link-time symbol addresses; Windows ISFs carry
//! addresses relative to the image base. Both carry full structure layouts. Anonymous members
//! appear as fields named `unnamed_field_*` whose type is a `unnamed_*` struct; lookups search
//! them transparently.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

use super::{path, Field, SymbolTable, SymbolTableBuilder, TypeSource};
use crate::error::{Error, Result};

/// Largest decompressed ISF accepted (real ones are 20–80 MB).
pub const MAX_ISF_BYTES: u64 = 512 << 20;

#[derive(Deserialize)]
struct RawIsf {
    #[serde(default)]
    metadata: serde_json::Value,
    #[serde(default)]
    base_types: HashMap<String, BaseType>,
    #[serde(default)]
    user_types: HashMap<String, UserType>,
    #[serde(default)]
    symbols: HashMap<String, RawSymbol>,
}

#[derive(Deserialize)]
struct BaseType {
    #[serde(default)]
    size: u64,
}

#[derive(Deserialize)]
struct UserType {
    #[serde(default)]
    size: u64,
    #[serde(default)]
    fields: HashMap<String, RawField>,
}

#[derive(Deserialize)]
struct RawField {
    offset: u64,
    #[serde(rename = "type")]
    ty: TypeRef,
}

#[derive(Deserialize)]
pub(crate) struct TypeRef {
    kind: String,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
struct RawSymbol {
    #[serde(default)]
    address: Option<u64>,
}

/// A loaded ISF profile.
pub struct Isf {
    base_types: HashMap<String, BaseType>,
    user_types: HashMap<String, UserType>,
    symbols: SymbolTable,
    metadata: serde_json::Value,
    source: String,
}

impl std::fmt::Debug for Isf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Isf")
            .field("source", &self.source)
            .field("user_types", &self.user_types.len())
            .field("symbols", &self.symbols.len())
            .finish()
    }
}

impl Isf {
    /// Load an ISF file (`.json` or `.json.xz`; compression is detected from content).
    ///
    /// # Errors
    /// [`Error::Io`] (also for a FIFO, device or directory: only regular files are read), or
    /// [`Error::Malformed`] for bad xz data, bad JSON or a file (or its decompressed text)
    /// over [`MAX_ISF_BYTES`].
    pub fn from_file(path: impl AsRef<Path>) -> Result<Isf> {
        let path = path.as_ref();
        // Compressed or not, the file is no larger than what it may decompress to.
        let raw = crate::file::read_capped(path, MAX_ISF_BYTES, "Volatility3 ISF")?;
        Self::from_bytes(&raw, path.display().to_string())
    }

    /// Load an ISF from bytes (JSON, or xz-compressed JSON).
    ///
    /// # Errors
    /// [`Error::Malformed`].
    pub fn from_bytes(raw: &[u8], source: impl Into<String>) -> Result<Isf> {
        let source = source.into();
        let json;
        let text: &[u8] = if raw.starts_with(b"\xfd7zXZ\0") {
            let mut out = Vec::new();
            let mut limited = LimitedWriter {
                inner: &mut out,
                left: MAX_ISF_BYTES,
            };
            let mut input = std::io::BufReader::new(raw);
            lzma_rs::xz_decompress(&mut input, &mut limited).map_err(|e| {
                Error::malformed(
                    "ISF",
                    source.clone(),
                    format!("xz decompression failed: {e}"),
                )
            })?;
            json = out;
            &json
        } else {
            raw
        };
        let parsed: RawIsf = serde_json::from_slice(text)
            .map_err(|e| Error::malformed("ISF", source.clone(), format!("invalid JSON: {e}")))?;
        if parsed.user_types.is_empty() && parsed.symbols.is_empty() {
            return Err(Error::malformed(
                "ISF",
                source,
                "no user_types and no symbols",
            ));
        }
        let mut b = SymbolTableBuilder::new(source.clone());
        for (name, s) in &parsed.symbols {
            if let Some(a) = s.address {
                b.push(name, a, b'?');
            }
        }
        Ok(Isf {
            base_types: parsed.base_types,
            user_types: parsed.user_types,
            symbols: b.build(),
            metadata: parsed.metadata,
            source,
        })
    }

    /// The symbols (addresses as recorded: link-time for Linux, RVAs for Windows).
    pub fn symbols(&self) -> &SymbolTable {
        &self.symbols
    }

    /// The `metadata` object (producer, format, source hashes, PDB GUID for Windows).
    pub fn metadata(&self) -> &serde_json::Value {
        &self.metadata
    }

    fn type_size(&self, r: &TypeRef) -> Option<u64> {
        match r.kind.as_str() {
            "pointer" => Some(8),
            "struct" | "union" => self.user_types.get(r.name.as_deref()?).map(|t| t.size),
            "base" | "enum" => self.base_types.get(r.name.as_deref()?).map(|t| t.size),
            _ => None,
        }
    }
}

struct LimitedWriter<'a> {
    inner: &'a mut Vec<u8>,
    left: u64,
}

impl std::io::Write for LimitedWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if buf.len() as u64 > self.left {
            return Err(std::io::Error::other(
                "decompressed ISF exceeds the size limit",
            ));
        }
        self.left -= buf.len() as u64;
        self.inner.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl TypeSource for Isf {
    fn source_name(&self) -> &str {
        &self.source
    }

    fn struct_size(&self, name: &str) -> Option<u64> {
        self.user_types.get(name).map(|t| t.size)
    }

    fn field(&self, type_name: &str, path: &str) -> Option<Field> {
        path::field(self, type_name, path)
    }
}

impl path::Aggregates for Isf {
    type Member = TypeRef;
    fn direct(&self, ty: &str, name: &str) -> Option<(u64, &TypeRef)> {
        let f = self.user_types.get(ty)?.fields.get(name)?;
        Some((f.offset, &f.ty))
    }
    fn anonymous<'a>(&'a self, ty: &str) -> Vec<(u64, Option<&'a str>)> {
        let Some(t) = self.user_types.get(ty) else {
            return Vec::new();
        };
        t.fields
            .iter()
            .map(|(name, f)| {
                let anon = name.starts_with("unnamed_field");
                (f.offset, if anon { f.ty.name.as_deref() } else { None })
            })
            .collect()
    }
    fn aggregate_of<'a>(&'a self, r: &'a TypeRef) -> Option<&'a str> {
        r.name.as_deref()
    }
    fn size_of(&self, r: &TypeRef) -> Option<u64> {
        self.type_size(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"{
      "metadata": {"format": "6.2.0"},
      "base_types": {"int": {"size": 4, "signed": true, "kind": "int", "endian": "little"}},
      "user_types": {
        "task_struct": {"kind": "struct", "size": 64, "fields": {
          "pid": {"offset": 8, "type": {"kind": "base", "name": "int"}},
          "unnamed_field_0": {"offset": 16, "type": {"kind": "struct", "name": "unnamed_1"}},
          "mm": {"offset": 40, "type": {"kind": "pointer", "subtype": {"kind": "struct", "name": "mm_struct"}}}
        }},
        "unnamed_1": {"kind": "union", "size": 16, "fields": {
          "tasks": {"offset": 0, "type": {"kind": "struct", "name": "list_head"}}
        }},
        "list_head": {"kind": "struct", "size": 16, "fields": {
          "next": {"offset": 0, "type": {"kind": "pointer"}},
          "prev": {"offset": 8, "type": {"kind": "pointer"}}
        }}
      },
      "symbols": {"init_task": {"address": 18446744071606217280}, "_text": {"address": 18446744071578845184}}
    }"#;

    #[test]
    fn fields_symbols_and_anonymous_members() {
        let isf = Isf::from_bytes(SAMPLE.as_bytes(), "sample").unwrap();
        assert_eq!(
            isf.field("task_struct", "pid"),
            Some(Field {
                offset: 8,
                size: Some(4)
            })
        );
        assert_eq!(
            isf.field("task_struct", "tasks"),
            Some(Field {
                offset: 16,
                size: Some(16)
            })
        );
        assert_eq!(
            isf.field("task_struct", "tasks.prev"),
            Some(Field {
                offset: 24,
                size: Some(8)
            })
        );
        assert_eq!(isf.struct_size("task_struct"), Some(64));
        assert_eq!(isf.symbols().get("_text"), Some(0xffffffff81000000));
        assert!(isf
            .require("task_struct", "nope")
            .unwrap_err()
            .to_string()
            .contains("sample"));
    }

    #[test]
    fn bad_inputs_are_errors() {
        assert!(Isf::from_bytes(b"{", "x").is_err());
        assert!(Isf::from_bytes(b"{}", "x").is_err());
        assert!(Isf::from_bytes(b"\xfd7zXZ\0garbage", "x").is_err());
        for n in (0..SAMPLE.len()).step_by(7) {
            let _ = Isf::from_bytes(&SAMPLE.as_bytes()[..n], "t");
        }
    }
}
