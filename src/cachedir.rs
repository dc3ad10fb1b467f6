//! The cache directory that the on-disk caches share (Linux kernel builds,
//! `os/linux/build_file.rs`; Windows profiles, `os/profile/cache.rs`): where it is, whether it
//! may be trusted, how an entry is read (bounded, no symbolic link) and written (to a
//! temporary name, then renamed), and the hash their checksums and names use.
//!
//! Every entry is input: a reader validates it whole before using anything in it, and a
//! directory is used only if it belongs to the user and no one else can write to it.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// `XENVMI_CACHE`: `off`, `0`, `no` or `false` keeps nothing on disk.
pub const CACHE_ENV: &str = "XENVMI_CACHE";
/// `XENVMI_CACHE_DIR`: the cache directory (default `$XDG_CACHE_HOME/xenvmi`, else
/// `~/.cache/xenvmi`).
pub const CACHE_DIR_ENV: &str = "XENVMI_CACHE_DIR";

/// The cache directory the environment asks for: none if [`CACHE_ENV`] is
/// `off`/`0`/`no`/`false`; else the absolute directory [`CACHE_DIR_ENV`] names, else
/// `$XDG_CACHE_HOME/xenvmi`, else `$HOME/.cache/xenvmi`, else none.
pub(crate) fn dir_from_env() -> Option<PathBuf> {
    let off = std::env::var_os(CACHE_ENV)
        .is_some_and(|v| matches!(v.to_str(), Some("off" | "0" | "no" | "false")));
    if off {
        return None;
    }
    let abs = |v: std::ffi::OsString| Some(PathBuf::from(v)).filter(|p| p.is_absolute());
    std::env::var_os(CACHE_DIR_ENV)
        .and_then(abs)
        .or_else(|| {
            std::env::var_os("XDG_CACHE_HOME")
                .and_then(abs)
                .map(|d| d.join("xenvmi"))
        })
        .or_else(|| {
            std::env::var_os("HOME")
                .and_then(abs)
                .map(|d| d.join(".cache").join("xenvmi"))
        })
}

/// A 64-bit hash of bytes (four independent multiply-rotate lanes over 8-byte words, then a
/// finaliser): an identity and a check against damage, not a defence against collisions crafted
/// on purpose (what a cache entry says is checked against the guest before use anyway).
pub(crate) fn hash64(data: &[u8]) -> u64 {
    const K: [u64; 4] = [
        0x9e37_79b9_7f4a_7c15,
        0xc2b2_ae3d_27d4_eb4f,
        0x1656_67b1_9e37_79f9,
        0xd6e8_feb8_6659_fd93,
    ];
    let mut lanes = K;
    let mut chunks = data.chunks_exact(32);
    for c in &mut chunks {
        for (i, lane) in lanes.iter_mut().enumerate() {
            let mut w = [0u8; 8];
            w.copy_from_slice(&c[i * 8..i * 8 + 8]);
            *lane = (*lane ^ u64::from_le_bytes(w))
                .wrapping_mul(K[i])
                .rotate_left(31);
        }
    }
    let mut h = data.len() as u64;
    for (i, lane) in lanes.iter().enumerate() {
        h = (h ^ lane).wrapping_mul(K[(i + 1) % 4]).rotate_left(27);
    }
    for &b in chunks.remainder() {
        h = (h ^ b as u64).wrapping_mul(K[0]).rotate_left(13);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^ (h >> 33)
}

/// Whether `dir` may be trusted: a directory of this user that no one else can write to.
pub(crate) fn trusted(dir: &Path) -> bool {
    let me = effective_uid();
    std::fs::symlink_metadata(dir)
        .is_ok_and(|m| m.is_dir() && m.uid() == me && m.mode() & 0o022 == 0)
}

/// The effective user id without `unsafe`: `/proc/self` is owned by the process's effective
/// user (no user owns `u32::MAX`, so without `/proc` no directory is trusted).
fn effective_uid() -> u32 {
    std::fs::metadata("/proc/self").map_or(u32::MAX, |m| m.uid())
}

/// Read one entry: a regular file (a symbolic link is refused, `O_NOFOLLOW`) of at most `cap`
/// bytes.
///
/// # Errors
/// [`Error::Io`] naming the file; [`Error::Malformed`] for one over `cap`.
pub(crate) fn read_entry(path: &Path, cap: u64, what: &'static str) -> Result<Vec<u8>> {
    let (f, meta) = crate::file::open_regular(path, true)?;
    crate::file::read_open_capped(f, &meta, path, cap, what)
}

/// Write `bytes` as the entry `name` of `dir` (created private to the user if missing): to a
/// temporary file first, then renamed over any older entry of that name, so a reader never
/// sees half of one.
///
/// # Errors
/// [`Error::Io`] naming the directory or file; [`Error::Malformed`] (`what`) if the directory
/// is not the user's alone.
pub(crate) fn write_entry(dir: &Path, name: &str, bytes: &[u8], what: &'static str) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::io(dir, e))?;
    if !trusted(dir) {
        return Err(Error::malformed(
            what,
            dir.display().to_string(),
            "the cache directory is not this user's alone (owner, or writable by others)",
        ));
    }
    let tmp = dir.join(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos())
    ));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, dir.join(name))
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(&tmp, e)
    })
}

/// What every cache entry has around its content: a `format` name, a `version`, and `check`,
/// the [`hash64`] of the entry serialized as JSON with `check` 0.
pub(crate) trait Envelope: serde::Serialize + serde::de::DeserializeOwned {
    /// The entry's `format`.
    fn format(&self) -> &str;
    /// The entry's `version`.
    fn version(&self) -> u32;
    /// The entry's `check` field.
    fn check_mut(&mut self) -> &mut u64;
}

/// The checksum `e` must carry in `check`.
pub(crate) fn checksum<E: Envelope>(e: &mut E) -> u64 {
    let saved = std::mem::replace(e.check_mut(), 0);
    let h = serde_json::to_vec(e).map_or(0, |v| hash64(&v));
    *e.check_mut() = saved;
    h
}

/// Read an entry's envelope from `bytes`: at most `cap` bytes, JSON of the entry's shape,
/// `format` and `version` as expected, `check` right. The content is the caller's to check.
///
/// # Errors
/// [`Error::Malformed`] for `what`'s "entry", naming which of these fails.
pub(crate) fn open_entry<E: Envelope>(
    bytes: &[u8],
    cap: u64,
    format: &str,
    version: u32,
    what: &'static str,
) -> Result<E> {
    let bad = |why: String| Error::malformed(what, "entry", why);
    if bytes.len() as u64 > cap {
        return Err(bad(format!("{} bytes, more than {cap}", bytes.len())));
    }
    let mut e: E = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
    if e.format() != format || e.version() != version {
        return Err(bad(format!(
            "format {:?} version {}, not {format:?} version {version}",
            e.format().chars().take(40).collect::<String>(),
            e.version()
        )));
    }
    // Fuzzing builds (`--cfg fuzzing`) skip the checksum, so the fuzzer reaches the checks
    // after it (it cannot compute the checksum of its own inputs).
    let check = *e.check_mut();
    if !cfg!(fuzzing) && checksum(&mut e) != check {
        return Err(bad("the checksum does not match the content".into()));
    }
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_depends_on_every_byte_and_the_length() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
        let h = hash64(&data);
        for i in [0, 31, 32, 500, 999] {
            let mut d = data.clone();
            d[i] ^= 1;
            assert_ne!(hash64(&d), h, "byte {i}");
        }
        assert_ne!(hash64(&data[..999]), h);
        assert_ne!(hash64(&[]), hash64(&[0]));
    }
}
