//! Opening and reading the files the library is given (images, profiles, symbol files,
//! journals): `open` never blocks (a FIFO or a device is refused, not waited on), only regular
//! files are read, and never more than a cap.

use std::fs::{File, Metadata};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

use crate::error::{Error, Result};

/// What kind of file `meta` describes, for messages.
pub(crate) fn kind(meta: &Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_file() {
        "a regular file"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_symlink() {
        "a symbolic link"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else {
        "not a regular file"
    }
}

/// Open `path` read-only without blocking (`O_NONBLOCK`: a FIFO with no writer would block a
/// plain `open` forever) and check that it is a regular file. `nofollow` refuses a symbolic
/// link as the last component (`O_NOFOLLOW`). Returns the file and its metadata.
///
/// # Errors
/// [`Error::Io`] naming the file: it cannot be opened, or it is not a regular file (a FIFO, a
/// device, a directory, or with `nofollow` a symbolic link).
pub(crate) fn open_regular(path: &Path, nofollow: bool) -> Result<(File, Metadata)> {
    // O_NONBLOCK: a FIFO must not block the open. Miri's file layer does not take the flag (and
    // has no FIFOs); the unit tests run under Miri in CI (scripts/miri.sh).
    let mut flags = libc::O_CLOEXEC;
    if !cfg!(miri) {
        flags |= libc::O_NONBLOCK;
    }
    if nofollow {
        flags |= libc::O_NOFOLLOW;
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(path)
        .map_err(|e| {
            if nofollow && e.raw_os_error() == Some(libc::ELOOP) {
                not_regular(path, "a symbolic link")
            } else {
                Error::io(path, e)
            }
        })?;
    let meta = file.metadata().map_err(|e| Error::io(path, e))?;
    if !meta.file_type().is_file() {
        return Err(not_regular(path, kind(&meta)));
    }
    Ok((file, meta))
}

fn not_regular(path: &Path, what: &str) -> Error {
    Error::io(
        path,
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{what}, not a regular file: refused"),
        ),
    )
}

/// Read all of an open file, refusing one longer than `cap` bytes. The length is checked
/// before reading and the read itself stops after `cap + 1` bytes, so a file that grows (or a
/// `/proc` file that reports length 0) cannot make it read more. `format` and `path` name the
/// file in the error.
///
/// # Errors
/// [`Error::Malformed`] for a file longer than `cap`, [`Error::Io`].
pub(crate) fn read_open_capped(
    mut file: File,
    meta: &Metadata,
    path: &Path,
    cap: u64,
    format: &'static str,
) -> Result<Vec<u8>> {
    let too_long = |len: u64| {
        Error::malformed(
            format,
            path.display().to_string(),
            format!("{len} bytes or more, more than the {cap} allowed"),
        )
    };
    if meta.len() > cap {
        return Err(too_long(meta.len()));
    }
    let mut bytes = Vec::new();
    bytes
        .try_reserve_exact(meta.len() as usize)
        .map_err(|_| too_long(meta.len()))?;
    (&mut file)
        .take(cap.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(path, e))?;
    if bytes.len() as u64 > cap {
        return Err(too_long(bytes.len() as u64));
    }
    Ok(bytes)
}

/// [`open_regular`] (following symbolic links) then [`read_open_capped`].
///
/// # Errors
/// As those two.
pub(crate) fn read_capped(path: &Path, cap: u64, format: &'static str) -> Result<Vec<u8>> {
    let (file, meta) = open_regular(path, false)?;
    read_open_capped(file, &meta, path, cap, format)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("xenvmi-file-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("temp dir");
        d
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let d = dir("fifo");
        let fifo = d.join("f");
        let st = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo");
        assert!(st.success());
        // Without O_NONBLOCK this open would wait for a writer forever.
        let e = read_capped(&fifo, 1 << 20, "test").expect_err("a FIFO");
        assert!(e.to_string().contains("a FIFO"), "{e}");
        std::fs::remove_dir_all(&d).expect("cleanup");
    }

    #[test]
    fn devices_and_directories_are_refused() {
        for (p, what) in [("/dev/zero", "a character device"), ("/", "a directory")] {
            let e = read_capped(Path::new(p), 1 << 20, "test").expect_err(p);
            assert!(e.to_string().contains(what), "{p}: {e}");
        }
    }

    #[test]
    fn a_symlink_is_refused_only_with_nofollow() {
        let d = dir("link");
        let target = d.join("t");
        std::fs::write(&target, b"x").expect("write");
        let link = d.join("l");
        std::os::unix::fs::symlink(&target, &link).expect("symlink");
        assert!(open_regular(&link, false).is_ok());
        let e = open_regular(&link, true).expect_err("nofollow");
        assert!(e.to_string().contains("symbolic link"), "{e}");
        std::fs::remove_dir_all(&d).expect("cleanup");
    }

    #[test]
    fn the_cap_counts_bytes_read_not_the_reported_length() {
        let d = dir("cap");
        let f = d.join("f");
        std::fs::write(&f, vec![b'a'; 100]).expect("write");
        assert_eq!(read_capped(&f, 100, "test").expect("at the cap").len(), 100);
        let e = read_capped(&f, 99, "test").expect_err("over the cap");
        assert!(e.to_string().contains("more than the 99 allowed"), "{e}");
        // A /proc file reports length 0 and is read up to the cap only.
        let e = read_capped(Path::new("/proc/self/maps"), 8, "test").expect_err("over the cap");
        assert!(e.to_string().contains("9 bytes or more"), "{e}");
        std::fs::remove_dir_all(&d).expect("cleanup");
    }
}
