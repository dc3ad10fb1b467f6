//! The manifest: a guest's desired state as a JSON document (`docs/attest.md`), its strict
//! parser and its writer.
//!
//! The parser does not use serde's derive: its messages for a wrong type ("invalid type:
//! integer, expected a string at line 1 column 40") do not name the field. The document is
//! parsed into a `serde_json::Value` (serde_json's recursion limit bounds the nesting) and
//! each object is then read by [`Fields`], which names the field by its path
//! (`executables[3].code_page.sha256`) in every error and refuses any key it was not asked
//! for: `deny_unknown_fields`, with the field's name in the message.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{json, Map, Value};

use crate::error::{Error, Result};

/// The `format` every manifest carries.
pub const FORMAT: &str = "xenvmi-attest-manifest";
/// The manifest version this library reads and writes.
pub const VERSION: u64 = 1;
/// Largest manifest file read, in bytes.
pub const MAX_MANIFEST_BYTES: u64 = 16 << 20;
/// Most executables in one manifest.
pub const MAX_EXECUTABLES: usize = 1 << 16;
/// Most modules in one manifest (the module walk's own bound).
pub const MAX_MODULES: usize = crate::os::linux::MAX_MODULES;
/// Longest executable path, in bytes: the longest the path walk builds (the kernel's
/// `PATH_MAX`) and a ` (deleted)` suffix.
pub const MAX_PATH: usize =
    crate::os::linux::detail::MAX_PATH_BYTES + crate::os::linux::detail::DELETED_SUFFIX.len();
/// Longest module name, in bytes: what the module walk reads (`MODULE_NAME_LEN` is 56 on
/// x86-64; a hostile module can fill the field it reads).
pub const MAX_MODULE_NAME: usize = 64;
/// Longest kernel banner or release, in bytes (the banner read's own bound).
pub const MAX_BANNER: usize = crate::os::linux::MAX_BANNER;

/// The name errors give the format.
const WHAT: &str = "attestation manifest";

/// A SHA-256 digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256(pub [u8; 32]);

impl Sha256 {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        use sha2::Digest;
        Sha256(sha2::Sha256::digest(bytes).into())
    }

    /// 64 lower-case hex digits.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Parse 64 hex digits (either case).
    pub fn from_hex(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        if b.len() != 64 {
            return None;
        }
        let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
        let mut out = [0u8; 32];
        for (i, o) in out.iter_mut().enumerate() {
            *o = digit(b[2 * i])? << 4 | digit(b[2 * i + 1])?;
        }
        Some(Sha256(out))
    }
}

impl std::fmt::Debug for Sha256 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl std::fmt::Display for Sha256 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// The kernel build: what identifies the kernel a guest runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelBuild {
    /// `uname -r`.
    pub release: String,
    /// `linux_banner` (`/proc/version`), trailing newline removed.
    pub banner: String,
    /// SHA-256 of the kernel's own BTF (`__start_BTF..__stop_BTF`): its types, which change
    /// with any change to the kernel's structures or configuration. `None` when the kernel
    /// has no such section (or it could not be read).
    pub btf_sha256: Option<Sha256>,
}

/// The first page of an executable's code, as mapped in a process.
///
/// Which page: the lowest executable area (VMA) of the process's memory map whose file is
/// the process's executable, its first page, read through the process's own page tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CodePage {
    /// Its offset in the file (the area's `vm_pgoff` in bytes).
    pub file_offset: u64,
    /// Its SHA-256 (4096 bytes), or `None`: the page was not present in memory (not yet
    /// faulted in, or reclaimed), so it was not hashed.
    pub sha256: Option<Sha256>,
}

/// An expected executable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Executable {
    /// Its first code page; `None` when no executable mapping of the file was found where it
    /// was learned (or the memory map could not be read), so only the path is checked.
    pub code_page: Option<CodePage>,
}

/// An expected kernel module.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpectedModule {
    /// Its size as `/proc/modules` reports it (the sum of its memory areas). A module's text
    /// is not hashed: the kernel relocates it for the address it is loaded at, which KASLR
    /// randomises at each boot, so the bytes differ from boot to boot for the same module.
    pub size: u64,
}

/// A guest's desired state (`docs/attest.md`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// The kernel build.
    pub kernel: KernelBuild,
    /// Expected executables, by path.
    pub executables: BTreeMap<String, Executable>,
    /// Expected kernel modules, by name.
    pub modules: BTreeMap<String, ExpectedModule>,
}

impl Manifest {
    /// Read and parse the manifest at `path`: a regular file (a symbolic link, FIFO or device
    /// is refused, `O_NOFOLLOW`), at most [`MAX_MANIFEST_BYTES`].
    ///
    /// # Errors
    /// [`Error::Io`] naming the file; [`Error::Malformed`] naming the file and the field.
    pub fn load(path: &Path) -> Result<Self> {
        let (file, meta) = crate::file::open_regular(path, true)?;
        let bytes = crate::file::read_open_capped(file, &meta, path, MAX_MANIFEST_BYTES, WHAT)?;
        Self::parse(&bytes, &path.display().to_string())
    }

    /// Parse a manifest from `bytes`; `name` names it in errors (a file name).
    ///
    /// # Errors
    /// [`Error::Malformed`] naming `name` and the field: not JSON, not UTF-8, another format
    /// or version, a missing, unknown or mistyped field, a hash that is not 64 hex digits,
    /// a name too long, a duplicate path or module, too many entries.
    pub fn parse(bytes: &[u8], name: &str) -> Result<Self> {
        let bad = |reason: String| Error::malformed(WHAT, name.to_owned(), reason);
        if bytes.len() as u64 > MAX_MANIFEST_BYTES {
            return Err(bad(format!(
                "{} bytes, more than the {MAX_MANIFEST_BYTES} allowed",
                bytes.len()
            )));
        }
        let v: Value =
            serde_json::from_slice(bytes).map_err(|e| bad(format!("not valid JSON: {e}")))?;
        parse_value(&v).map_err(bad)
    }

    /// The manifest as JSON (keys sorted; entries by path and name), the form
    /// [`Manifest::parse`] reads.
    pub fn to_json(&self) -> Value {
        let executables: Vec<Value> = self
            .executables
            .iter()
            .map(|(path, e)| {
                json!({
                    "path": path,
                    "code_page": e.code_page.map(|c| json!({
                        "file_offset": c.file_offset,
                        "present": c.sha256.is_some(),
                        "sha256": c.sha256.map(|h| h.to_hex()),
                    })),
                })
            })
            .collect();
        let modules: Vec<Value> = self
            .modules
            .iter()
            .map(|(name, m)| json!({"name": name, "size": m.size}))
            .collect();
        json!({
            "format": FORMAT,
            "version": VERSION,
            "kernel": {
                "release": self.kernel.release,
                "banner": self.kernel.banner,
                "btf_sha256": self.kernel.btf_sha256.map(|h| h.to_hex()),
            },
            "executables": executables,
            "modules": modules,
        })
    }
}

/// One JSON object being read: each field taken is checked off, and [`Fields::done`]
/// refuses whatever is left. Errors name the field by its path.
struct Fields<'a> {
    path: String,
    map: &'a Map<String, Value>,
    taken: Vec<&'static str>,
}

type Parsed<T> = std::result::Result<T, String>;

impl<'a> Fields<'a> {
    fn new(path: String, v: &'a Value) -> Parsed<Self> {
        match v {
            Value::Object(map) => Ok(Fields {
                path,
                map,
                taken: Vec::new(),
            }),
            other => Err(format!(
                "field {}: expected an object, found {}",
                name_of(&path),
                type_of(other)
            )),
        }
    }

    fn field(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn get(&mut self, key: &'static str) -> Parsed<&'a Value> {
        self.taken.push(key);
        self.map
            .get(key)
            .ok_or_else(|| format!("field {}: missing", self.field(key)))
    }

    fn string(&mut self, key: &'static str, max: usize) -> Parsed<String> {
        let f = self.field(key);
        match self.get(key)? {
            Value::String(s) if s.len() > max => Err(format!(
                "field {f}: {} bytes, more than the {max} allowed",
                s.len()
            )),
            Value::String(s) => Ok(s.clone()),
            other => Err(format!(
                "field {f}: expected a string, found {}",
                type_of(other)
            )),
        }
    }

    fn u64(&mut self, key: &'static str) -> Parsed<u64> {
        let f = self.field(key);
        match self.get(key)? {
            Value::Number(n) => n.as_u64().ok_or_else(|| {
                format!("field {f}: expected an integer from 0 to 2^64-1, found {n}")
            }),
            other => Err(format!(
                "field {f}: expected an integer, found {}",
                type_of(other)
            )),
        }
    }

    fn bool(&mut self, key: &'static str) -> Parsed<bool> {
        let f = self.field(key);
        match self.get(key)? {
            Value::Bool(b) => Ok(*b),
            other => Err(format!(
                "field {f}: expected true or false, found {}",
                type_of(other)
            )),
        }
    }

    /// A SHA-256 as 64 hex digits, or `null`.
    fn sha256_or_null(&mut self, key: &'static str) -> Parsed<Option<Sha256>> {
        let f = self.field(key);
        match self.get(key)? {
            Value::Null => Ok(None),
            Value::String(s) => Sha256::from_hex(s).map(Some).ok_or_else(|| {
                format!(
                    "field {f}: a SHA-256 is 64 hex digits, found {} characters{}",
                    s.chars().count(),
                    if s.len() == 64 {
                        " with a non-hex one"
                    } else {
                        ""
                    }
                )
            }),
            other => Err(format!(
                "field {f}: expected 64 hex digits or null, found {}",
                type_of(other)
            )),
        }
    }

    fn array(&mut self, key: &'static str, max: usize) -> Parsed<&'a Vec<Value>> {
        let f = self.field(key);
        match self.get(key)? {
            Value::Array(a) if a.len() > max => Err(format!(
                "field {f}: {} entries, more than the {max} allowed",
                a.len()
            )),
            Value::Array(a) => Ok(a),
            other => Err(format!(
                "field {f}: expected an array, found {}",
                type_of(other)
            )),
        }
    }

    /// Refuse any key not taken.
    fn done(self) -> Parsed<()> {
        let mut unknown: Vec<&String> = self
            .map
            .keys()
            .filter(|k| !self.taken.contains(&k.as_str()))
            .collect();
        unknown.sort();
        match unknown.first() {
            None => Ok(()),
            Some(k) => Err(format!(
                "field {}: unknown field (expected one of: {})",
                self.field(k),
                self.taken.join(", ")
            )),
        }
    }
}

fn name_of(path: &str) -> &str {
    if path.is_empty() {
        "(the document)"
    } else {
        path
    }
}

fn type_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn parse_value(v: &Value) -> Parsed<Manifest> {
    let mut top = Fields::new(String::new(), v)?;
    let format = top.string("format", 64)?;
    if format != FORMAT {
        return Err(format!(
            "field format: {format:?}, expected {FORMAT:?} (not an attestation manifest)"
        ));
    }
    let version = top.u64("version")?;
    if version != VERSION {
        return Err(format!(
            "field version: {version} is not a version this xenvmi reads (it reads {VERSION})"
        ));
    }
    let kernel = {
        let mut k = Fields::new("kernel".into(), top.get("kernel")?)?;
        let build = KernelBuild {
            release: k.string("release", MAX_BANNER)?,
            banner: k.string("banner", MAX_BANNER)?,
            btf_sha256: k.sha256_or_null("btf_sha256")?,
        };
        k.done()?;
        build
    };
    let mut executables = BTreeMap::new();
    for (i, e) in top
        .array("executables", MAX_EXECUTABLES)?
        .iter()
        .enumerate()
    {
        let at = format!("executables[{i}]");
        let mut f = Fields::new(at.clone(), e)?;
        let path = f.string("path", MAX_PATH)?;
        if path.is_empty() {
            return Err(format!("field {at}.path: empty"));
        }
        let code_page = match f.get("code_page")? {
            Value::Null => None,
            c => {
                let mut c = Fields::new(format!("{at}.code_page"), c)?;
                let file_offset = c.u64("file_offset")?;
                if file_offset % crate::addr::PAGE_SIZE != 0 {
                    return Err(format!(
                        "field {at}.code_page.file_offset: {file_offset:#x} is not a multiple \
                         of the page size"
                    ));
                }
                let present = c.bool("present")?;
                let sha256 = c.sha256_or_null("sha256")?;
                if present != sha256.is_some() {
                    return Err(format!(
                        "field {at}.code_page.sha256: {} with present {present}",
                        if present { "null" } else { "a hash" }
                    ));
                }
                c.done()?;
                Some(CodePage {
                    file_offset,
                    sha256,
                })
            }
        };
        f.done()?;
        if executables
            .insert(path.clone(), Executable { code_page })
            .is_some()
        {
            return Err(format!("field {at}.path: {path:?} is listed twice"));
        }
    }
    let mut modules = BTreeMap::new();
    for (i, m) in top.array("modules", MAX_MODULES)?.iter().enumerate() {
        let at = format!("modules[{i}]");
        let mut f = Fields::new(at.clone(), m)?;
        let name = f.string("name", MAX_MODULE_NAME)?;
        if name.is_empty() {
            return Err(format!("field {at}.name: empty"));
        }
        let size = f.u64("size")?;
        f.done()?;
        if modules
            .insert(name.clone(), ExpectedModule { size })
            .is_some()
        {
            return Err(format!("field {at}.name: {name:?} is listed twice"));
        }
    }
    top.done()?;
    Ok(Manifest {
        kernel,
        executables,
        modules,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// FIPS 180-4's examples (NIST CSRC "SHA256.pdf"): the digests of "abc" and of the
    /// empty string.
    #[test]
    fn sha256_matches_the_standards_examples() {
        assert_eq!(
            Sha256::of(b"abc").to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            Sha256::of(b"").to_hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let h = Sha256::of(b"abc");
        assert_eq!(Sha256::from_hex(&h.to_hex()), Some(h));
        assert_eq!(Sha256::from_hex(&h.to_hex().to_uppercase()), Some(h));
        assert_eq!(Sha256::from_hex("ab"), None);
        assert_eq!(Sha256::from_hex(&"g".repeat(64)), None);
        // A multi-byte character must not be split by the digit pairs.
        assert_eq!(Sha256::from_hex(&format!("é{}", "0".repeat(62))), None);
    }

    #[test]
    fn a_manifest_reads_back_what_it_wrote() {
        let mut m = Manifest {
            kernel: KernelBuild {
                release: "6.1.0".into(),
                banner: "Linux version 6.1.0".into(),
                btf_sha256: Some(Sha256::of(b"btf")),
            },
            executables: BTreeMap::new(),
            modules: BTreeMap::new(),
        };
        m.executables.insert(
            "/bin/a".into(),
            Executable {
                code_page: Some(CodePage {
                    file_offset: 0x1000,
                    sha256: Some(Sha256::of(b"a")),
                }),
            },
        );
        m.executables.insert(
            "/bin/b".into(),
            Executable {
                code_page: Some(CodePage {
                    file_offset: 0,
                    sha256: None,
                }),
            },
        );
        m.executables
            .insert("/bin/c".into(), Executable { code_page: None });
        m.modules
            .insert("dummy".into(), ExpectedModule { size: 12288 });
        let text = m.to_json().to_string();
        assert_eq!(Manifest::parse(text.as_bytes(), "m.json").unwrap(), m);
    }
}
