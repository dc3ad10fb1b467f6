//! The bytes of a snapshot: an image file read with `pread`, or an owned buffer (fuzzing,
//! tests, images built in memory).
//!
//! The file is not memory-mapped. A mapped file that another process truncates raises SIGBUS
//! on the next access to a page past the new end, which kills the process (the C ABI's host
//! included), and a private mapping does see other writers' changes. `pread` (`read_exact_at`)
//! cannot fault: a shrunk file makes the read fail, and the read becomes an error. To keep
//! small reads (page-table entries, list links) cheap, the first 4 MiB are read at open and
//! 4 KiB pages read later are kept in a small direct-mapped cache; what was read before the
//! file shrank stays readable. Costs are in `docs/performance.md`. No `unsafe` is needed.

use std::borrow::Cow;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Mutex;

use crate::error::{Error, Result};

/// Bytes read at open time from the start of a file and kept: the formats' headers and
/// tables live there (ELF program headers for 65,536 segments take 3.5 MiB), so parsing
/// needs few system calls.
const PREFIX: usize = 4 << 20;
/// Pages in the read cache (4 MiB).
const CACHE_PAGES: usize = 1024;
const PAGE: u64 = 4096;

/// A direct-mapped cache of whole 4 KiB pages of the file.
pub(crate) struct PageCache {
    /// The page held in each set (`u64::MAX`: none).
    tags: Vec<u64>,
    data: Vec<u8>,
}

impl PageCache {
    fn new() -> PageCache {
        PageCache {
            tags: vec![u64::MAX; CACHE_PAGES],
            data: vec![0; CACHE_PAGES * PAGE as usize],
        }
    }
}

/// Snapshot bytes: a file or owned.
pub(crate) enum Storage {
    File {
        file: File,
        len: u64,
        /// The first `min(len, PREFIX)` bytes.
        prefix: Vec<u8>,
        /// Pages read since (`Mutex`: a snapshot is shared between threads).
        cache: Mutex<PageCache>,
    },
    Owned(Vec<u8>),
}

impl Storage {
    /// Open `path` (a regular file, without blocking on a FIFO) for reading. Only its first
    /// bytes are read now.
    pub(crate) fn open(path: &Path) -> Result<Storage> {
        let (file, meta) = crate::file::open_regular(path, false)?;
        let len = meta.len();
        if len == 0 {
            return Err(Error::malformed(
                "memory image",
                path.display().to_string(),
                "the file is empty",
            ));
        }
        let mut prefix = vec![0u8; len.min(PREFIX as u64) as usize];
        file.read_exact_at(&mut prefix, 0)
            .map_err(|e| Error::io(path, e))?;
        Ok(Storage::File {
            file,
            len,
            prefix,
            cache: Mutex::new(PageCache::new()),
        })
    }

    /// The length of the image.
    pub(crate) fn len(&self) -> u64 {
        match self {
            Storage::File { len, .. } => *len,
            Storage::Owned(v) => v.len() as u64,
        }
    }

    /// Copy `buf.len()` bytes at `off` into `buf`. `false` if they are not all in the image
    /// (or no longer: the file shrank, or a read failed).
    #[inline]
    pub(crate) fn read_at(&self, off: u64, buf: &mut [u8]) -> bool {
        match self {
            Storage::Owned(v) => match usize::try_from(off)
                .ok()
                .and_then(|o| crate::bytes::slice_at(v, o, buf.len()))
            {
                Some(s) => {
                    buf.copy_from_slice(s);
                    true
                }
                None => false,
            },
            Storage::File {
                file,
                prefix,
                len,
                cache,
            } => {
                if let Some(s) = usize::try_from(off)
                    .ok()
                    .and_then(|o| crate::bytes::slice_at(prefix, o, buf.len()))
                {
                    buf.copy_from_slice(s);
                    return true;
                }
                let page = off / PAGE;
                let in_page = (off % PAGE) as usize;
                let whole_page_in_file =
                    (page + 1).checked_mul(PAGE).is_some_and(|end| end <= *len);
                if in_page + buf.len() > PAGE as usize || !whole_page_in_file {
                    return file.read_exact_at(buf, off).is_ok();
                }
                let mut c = cache.lock().unwrap_or_else(|p| p.into_inner());
                let set = (page % CACHE_PAGES as u64) as usize;
                let at = set * PAGE as usize;
                if c.tags[set] != page {
                    c.tags[set] = u64::MAX;
                    if file
                        .read_exact_at(&mut c.data[at..at + PAGE as usize], page * PAGE)
                        .is_err()
                    {
                        return false;
                    }
                    c.tags[set] = page;
                }
                buf.copy_from_slice(&c.data[at + in_page..at + in_page + buf.len()]);
                true
            }
        }
    }

    /// Borrow `len` bytes at `off` without copying: only an owned buffer can lend them.
    #[inline]
    pub(crate) fn slice(&self, off: u64, len: usize) -> Option<&[u8]> {
        match self {
            Storage::Owned(v) => crate::bytes::slice_at(v, usize::try_from(off).ok()?, len),
            Storage::File { .. } => None,
        }
    }
}

/// What the format parsers read: the image's bytes, in memory or in a file.
pub(crate) trait Source {
    /// Length in bytes.
    fn size(&self) -> usize;
    /// `len` bytes at `off` (borrowed where they are in memory), or `None` past the end.
    fn bytes_at(&self, off: usize, len: usize) -> Option<Cow<'_, [u8]>>;

    /// `N` bytes at `off`.
    fn array_at<const N: usize>(&self, off: usize) -> Option<[u8; N]> {
        self.bytes_at(off, N)?.as_ref().try_into().ok()
    }
    /// Little-endian `u16` at `off`.
    fn u16_at(&self, off: usize) -> Option<u16> {
        self.array_at(off).map(u16::from_le_bytes)
    }
    /// Little-endian `u32` at `off`.
    fn u32_at(&self, off: usize) -> Option<u32> {
        self.array_at(off).map(u32::from_le_bytes)
    }
    /// Little-endian `u64` at `off`.
    fn u64_at(&self, off: usize) -> Option<u64> {
        self.array_at(off).map(u64::from_le_bytes)
    }
    /// Whether the image starts with `p`.
    fn begins_with(&self, p: &[u8]) -> bool {
        self.bytes_at(0, p.len()).is_some_and(|b| *b == *p)
    }
}

impl Source for [u8] {
    fn size(&self) -> usize {
        self.len()
    }
    fn bytes_at(&self, off: usize, len: usize) -> Option<Cow<'_, [u8]>> {
        crate::bytes::slice_at(self, off, len).map(Cow::Borrowed)
    }
}

impl Source for Storage {
    fn size(&self) -> usize {
        // Only 64-bit hosts are supported: a file length fits.
        usize::try_from(self.len()).unwrap_or(usize::MAX)
    }
    fn bytes_at(&self, off: usize, len: usize) -> Option<Cow<'_, [u8]>> {
        match self {
            Storage::Owned(v) => v.as_slice().bytes_at(off, len),
            Storage::File {
                prefix, len: flen, ..
            } => {
                if let Some(s) = crate::bytes::slice_at(prefix, off, len) {
                    return Some(Cow::Borrowed(s));
                }
                // Past the prefix: read, within the file only (a hostile length must not
                // become an allocation larger than the file).
                let end = (off as u64).checked_add(len as u64)?;
                if end > *flen {
                    return None;
                }
                let mut v = Vec::new();
                v.try_reserve_exact(len).ok()?;
                v.resize(len, 0);
                self.read_at(off as u64, &mut v).then_some(Cow::Owned(v))
            }
        }
    }
}

// The parsers' unit tests hand them vectors and arrays.
#[cfg(test)]
impl Source for Vec<u8> {
    fn size(&self) -> usize {
        self.len()
    }
    fn bytes_at(&self, off: usize, len: usize) -> Option<Cow<'_, [u8]>> {
        self.as_slice().bytes_at(off, len)
    }
}

#[cfg(test)]
impl<const N: usize> Source for [u8; N] {
    fn size(&self) -> usize {
        N
    }
    fn bytes_at(&self, off: usize, len: usize) -> Option<Cow<'_, [u8]>> {
        self.as_slice().bytes_at(off, len)
    }
}
