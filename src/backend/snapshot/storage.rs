//! The bytes of a snapshot: a read-only memory map of the image file, or an owned buffer
//! (fuzzing, tests, images built in memory).
//!
//! This module holds the one `unsafe` block outside `backend/xen` and `capi`: mapping a file
//! requires it in every Rust mmap crate, because another process could truncate or modify the
//! file while it is mapped. xenvmi maps images read-only and private; the residual risk (a
//! concurrent truncation raising SIGBUS) is documented in `docs/design.md`.
#![allow(unsafe_code)]

use std::path::Path;

use crate::error::{Error, Result};

/// Snapshot bytes: mapped or owned.
pub(crate) enum Storage {
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl Storage {
    /// Map `path` read-only. The file is not read: pages come in on demand.
    pub(crate) fn map(path: &Path) -> Result<Storage> {
        // Without blocking on a FIFO, and only a regular file (a directory used to fail with
        // "No such device" from mmap).
        let (file, meta) = crate::file::open_regular(path, false)?;
        let len = meta.len();
        if len == 0 {
            return Err(Error::malformed(
                "memory image",
                path.display().to_string(),
                "the file is empty",
            ));
        }
        // SAFETY: the mapping is read-only and private (MAP_PRIVATE, PROT_READ), so this process
        // never writes through it and no Rust reference aliases mutable memory. The remaining
        // hazard is another process truncating the file while it is mapped, which would raise
        // SIGBUS on access; images are treated as immutable inputs and this is documented in
        // docs/design.md. The `Mmap` owns the mapping and unmaps it on drop.
        let map =
            unsafe { memmap2::MmapOptions::new().map(&file) }.map_err(|e| Error::io(path, e))?;
        #[cfg(unix)]
        {
            // Random access is the norm (page-table walks); don't read ahead megabytes.
            let _ = map.advise(memmap2::Advice::Random);
        }
        Ok(Storage::Mapped(map))
    }

    #[inline]
    pub(crate) fn bytes(&self) -> &[u8] {
        match self {
            Storage::Mapped(m) => m,
            Storage::Owned(v) => v,
        }
    }
}
