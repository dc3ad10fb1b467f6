//! Test, example and `xenvmi` command support: locate the bundled fixtures and unpack compressed ones once.
//!
//! Unpacked files go to `target/xenvmi-fixtures/<fixture>/<name>` (or `$XENVMI_FIXTURE_CACHE`),
//! written sparsely (runs of zero pages become holes) and published with an atomic rename, so
//! concurrent test binaries never see a half-written file.
#![allow(dead_code)]

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `fixtures/<name>`.
pub fn fixture_dir(name: &str) -> PathBuf {
    repo_root().join("fixtures").join(name)
}

fn cache_dir() -> PathBuf {
    std::env::var_os("XENVMI_FIXTURE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target").join("xenvmi-fixtures"))
}

/// Path of `fixtures/<fixture>/<file>`, unpacking `<file>.zst` first if needed.
pub fn fixture_file(fixture: &str, file: &str) -> io::Result<PathBuf> {
    let plain = fixture_dir(fixture).join(file);
    if plain.exists() {
        return Ok(plain);
    }
    let packed = fixture_dir(fixture).join(format!("{file}.zst"));
    let out = cache_dir().join(fixture).join(file);
    unpack_zstd(&packed, &out)?;
    Ok(out)
}

/// Decompress `src` (zstd) to `dst` unless `dst` exists and is newer than `src`.
pub fn unpack_zstd(src: &Path, dst: &Path) -> io::Result<()> {
    // Threads of one test binary share the tmp name below: serialise them.
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let src_meta = fs::metadata(src)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", src.display())))?;
    if let Ok(m) = fs::metadata(dst) {
        if m.modified()? >= src_meta.modified()? {
            return Ok(());
        }
    }
    if let Some(parent) = dst.parent() {
        fs::create_dir_all(parent)?;
    }
    let tmp = dst.with_extension(format!("tmp{}", std::process::id()));
    // A corrupt or truncated source must not leave its partial output behind.
    let r = decompress(src, &tmp);
    if r.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    r?;
    fs::rename(&tmp, dst)
}

/// Decompress `src` (zstd) into a new file `tmp`, sparse.
fn decompress(src: &Path, tmp: &Path) -> io::Result<()> {
    {
        let input = io::BufReader::with_capacity(1 << 20, File::open(src)?);
        let mut dec = ruzstd::decoding::StreamingDecoder::new(input).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {e}", src.display()),
            )
        })?;
        let mut out = File::create(tmp)?;
        let mut buf = vec![0u8; 1 << 20];
        let mut len = 0u64;
        loop {
            let mut filled = 0;
            while filled < buf.len() {
                let n = dec.read(&mut buf[filled..])?;
                if n == 0 {
                    break;
                }
                filled += n;
            }
            if filled == 0 {
                break;
            }
            // Sparse write: skip 4 KiB blocks of zeros.
            for chunk in buf[..filled].chunks(4096) {
                if chunk.iter().all(|&b| b == 0) {
                    out.seek(SeekFrom::Current(chunk.len() as i64))?;
                } else {
                    out.write_all(chunk)?;
                }
            }
            len += filled as u64;
        }
        out.set_len(len)?;
        out.sync_all()?;
    }
    Ok(())
}

/// The image a program opens (the examples, the `xenvmi` command): `arg`, unpacked once into
/// `target/xenvmi-fixtures/user/` if it ends in `.zst`, or the bundled Linux 6.1 snapshot.
pub fn image_path(arg: Option<&Path>) -> Result<PathBuf, String> {
    match arg {
        Some(p) if p.extension().is_some_and(|e| e == "zst") => {
            // One cache file per source path: "/a/b/vmcore.elf.zst" -> "_a_b_vmcore.elf".
            let abs = std::fs::canonicalize(p).map_err(|e| format!("{}: {e}", p.display()))?;
            let name: String = abs
                .with_extension("")
                .to_string_lossy()
                .replace(['/', '\\'], "_");
            let out = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("target/xenvmi-fixtures/user")
                .join(name);
            unpack_zstd(p, &out).map_err(|e| format!("cannot unpack {}: {e}", p.display()))?;
            Ok(out)
        }
        Some(p) => Ok(p.to_path_buf()),
        None => fixture_file("linux-6.1", "vmcore.elf")
            .map_err(|e| format!("cannot unpack the bundled snapshot: {e}")),
    }
}

/// `ground-truth.json` of a fixture.
pub fn ground_truth(fixture: &str) -> serde_json::Value {
    let p = fixture_dir(fixture).join("ground-truth.json");
    serde_json::from_slice(&fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Parse a "0x…" string from ground truth.
pub fn hex(v: &serde_json::Value) -> u64 {
    let s = v.as_str().unwrap_or_else(|| panic!("not a string: {v}"));
    u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap_or_else(|e| panic!("{s}: {e}"))
}

/// The guest's `/proc/kallsyms` at dump time (the fixture's `kallsyms`): kernel symbol ->
/// address, the first of each name.
pub fn guest_kallsyms(fixture: &str) -> std::collections::HashMap<String, u64> {
    let p = fixture_file(fixture, "kallsyms").unwrap_or_else(|e| panic!("{fixture}: {e}"));
    let text = fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let mut m = std::collections::HashMap::new();
    for l in text.lines() {
        let mut f = l.split_whitespace();
        if let (Some(a), Some(_), Some(n), None) = (f.next(), f.next(), f.next(), f.next()) {
            if let Ok(a) = u64::from_str_radix(a, 16) {
                m.entry(n.to_owned()).or_insert(a);
            }
        }
    }
    m
}

/// The modules' symbols in the guest's `/proc/kallsyms` at dump time (lines ending in
/// `[module]`): per module, each symbol's kind letter, name and address.
pub fn guest_module_symbols(
    fixture: &str,
) -> std::collections::HashMap<String, Vec<(char, String, u64)>> {
    let p = fixture_file(fixture, "kallsyms").unwrap_or_else(|e| panic!("{fixture}: {e}"));
    let text = fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let mut m: std::collections::HashMap<String, Vec<(char, String, u64)>> =
        std::collections::HashMap::new();
    for l in text.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if let [a, k, n, module] = f[..] {
            let (Ok(a), Some(module), Some(k)) = (
                u64::from_str_radix(a, 16),
                module.strip_prefix('[').and_then(|x| x.strip_suffix(']')),
                k.chars().next(),
            ) else {
                continue;
            };
            m.entry(module.to_owned())
                .or_default()
                .push((k, n.to_owned(), a));
        }
    }
    m
}

/// `target/<profile>/examples/<name>`, built by `cargo test` next to the test binaries.
pub fn example_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>");
    let p = dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        p.exists(),
        "{} is missing: run the whole suite with `cargo test` (it builds the examples) or `cargo build --examples` first",
        p.display()
    );
    p
}

/// Expected vCPU owners by CR3: (vCPU index, cr3, pid), from the guest's own report
/// (`vcpu_owners`) or the make-linux-guest reference walker (`verify-elf.json`).
pub fn vcpu_cr3_owners(fixture: &str, gt: &serde_json::Value) -> Vec<(usize, u64, u64)> {
    if let Some(owners) = gt.get("vcpu_owners").and_then(serde_json::Value::as_array) {
        return owners
            .iter()
            .map(|o| {
                (
                    o["index"].as_u64().unwrap() as usize,
                    hex(&o["cr3"]),
                    o["pid"].as_u64().unwrap(),
                )
            })
            .collect();
    }
    let v: serde_json::Value = serde_json::from_slice(
        &std::fs::read(fixture_dir(fixture).join("verify-elf.json")).unwrap(),
    )
    .unwrap();
    let map = v["vcpu_cr3_owner"].as_object().unwrap();
    map.iter()
        .map(|(i, o)| {
            let owners = o[2].as_array().unwrap();
            assert_eq!(
                owners.len(),
                1,
                "{fixture}: reference walker found {owners:?}"
            );
            let pid: u64 = owners[0]
                .as_str()
                .unwrap()
                .split(':')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            (i.parse().unwrap(), hex(&o[0]), pid)
        })
        .collect()
}
