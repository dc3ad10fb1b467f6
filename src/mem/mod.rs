//! Guest memory: physical reads from a backend, virtual reads through page tables, and the
//! translation cache in between.
//!
//! [`GuestMemory`] owns a backend and a [`TranslationCache`]. An [`AddressSpace`] names a set of
//! page tables (a root and a paging mode); every virtual read says which one it uses, so the
//! same `GuestMemory` serves the kernel and every process.
//!
//! Cache invalidation is explicit: see [`cache`] for the rules and
//! [`GuestMemory::flush_translations`].

use crate::addr::{Gpa, Gva, PAGE_SIZE};
use crate::backend::PhysicalMemory;
use crate::error::{Error, Result};
use crate::regs::cr3_to_root;

pub mod cache;
pub mod paging;

/// Defined with the registers that select it ([`Registers::paging_mode`](crate::Registers::paging_mode)),
/// at the bottom layer; part of an [`AddressSpace`].
pub use crate::regs::PagingMode;
pub use cache::{CachedPage, TranslationCache};
pub use paging::{mapped_ranges, walk, MappedRange, Mapping, PageFlags, PageSize, Walk};

/// Largest single buffer read from the guest on behalf of guest-supplied lengths.
pub const MAX_READ: usize = 64 << 20;

/// A set of page tables: root (CR3 without flags) and paging mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AddressSpace {
    /// Physical address of the top-level table.
    pub root: Gpa,
    /// 4- or 5-level paging.
    pub mode: PagingMode,
}

impl AddressSpace {
    /// An address space from a raw CR3 value (PCID and flag bits are dropped).
    pub fn from_cr3(cr3: u64, mode: PagingMode) -> Self {
        AddressSpace {
            root: cr3_to_root(cr3),
            mode,
        }
    }
}

/// What [`GuestMemory::read_partial`] could read.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct PartialRead {
    /// Bytes that were read (unreadable pages are zero-filled in the buffer).
    pub bytes_read: usize,
    /// First address of each page that could not be read (at most 64 are listed).
    pub missing_pages: Vec<Gva>,
}

/// Guest memory seen through a backend, with a translation cache.
#[derive(Debug)]
pub struct GuestMemory<B> {
    backend: B,
    cache: TranslationCache,
}

impl<B: PhysicalMemory> GuestMemory<B> {
    /// Wrap a backend.
    pub fn new(backend: B) -> Self {
        GuestMemory {
            backend,
            cache: TranslationCache::new(),
        }
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// Give the backend back.
    pub fn into_backend(self) -> B {
        self.backend
    }

    /// Forget all cached translations, and the backend's cached mappings of guest frames
    /// ([`PhysicalMemory::drop_cached_mappings`]). Call after the guest ran, after a view
    /// switch, or after writing to guest page tables (see [`cache`]).
    pub fn flush_translations(&self) {
        self.cache.flush();
        self.backend.drop_cached_mappings();
    }

    /// The guest ran (an event loop's next event): forget cached translations, since its page
    /// tables may have changed, but keep the backend's mappings of guest frames, which change
    /// only with the p2m (a frame freed, ballooning: use [`GuestMemory::flush_translations`]
    /// then). O(1).
    pub fn guest_ran(&self) {
        self.cache.flush();
    }

    /// Forget cached translations of one address space.
    pub fn flush_root(&self, root: Gpa) {
        self.cache.flush_root(root);
    }

    /// Cache (hits, misses).
    pub fn cache_stats(&self) -> (u64, u64) {
        self.cache.stats()
    }

    /// Translate without the cache (a full page-table walk every time).
    ///
    /// # Errors
    /// See [`paging::walk`].
    #[inline]
    pub fn walk(&self, space: AddressSpace, va: Gva) -> Result<Walk> {
        paging::walk(&self.backend, space.root, space.mode, va)
    }

    /// Translate through the cache. Non-present results are not cached.
    ///
    /// # Errors
    /// See [`paging::walk`].
    #[inline]
    pub fn translate(&self, space: AddressSpace, va: Gva) -> Result<Walk> {
        let vpn = va.0 >> 12;
        if let Some(p) = self.cache.get(space.root, space.mode, vpn) {
            return Ok(Walk::Mapped(Mapping {
                gpa: Gpa(p.frame.0 | va.page_offset()),
                size: p.size,
                flags: p.flags,
            }));
        }
        let w = self.walk(space, va)?;
        if let Walk::Mapped(m) = w {
            self.cache.insert(
                space.root,
                space.mode,
                vpn,
                CachedPage {
                    frame: m.gpa.page_base(),
                    size: m.size,
                    flags: m.flags,
                },
            );
        }
        Ok(w)
    }

    /// Translate, treating "not present" as an error.
    ///
    /// # Errors
    /// [`Error::PageNotPresent`], or see [`paging::walk`].
    #[inline]
    pub fn translate_mapped(&self, space: AddressSpace, va: Gva) -> Result<Gpa> {
        Ok(self.translate(space, va)?.mapped(va, space.root)?.gpa)
    }

    /// Read guest-physical memory.
    ///
    /// # Errors
    /// [`Error::PhysicalUnmapped`].
    #[inline]
    pub fn read_physical(&self, gpa: Gpa, buf: &mut [u8]) -> Result<()> {
        self.backend.read_physical(gpa, buf)
    }

    /// Read virtual memory, crossing page boundaries. Fails on the first page that is not
    /// mapped (use [`GuestMemory::read_partial`] to read around holes).
    ///
    /// # Errors
    /// [`Error::PageNotPresent`], [`Error::PhysicalUnmapped`], [`Error::NonCanonical`].
    pub fn read(&self, space: AddressSpace, va: Gva, buf: &mut [u8]) -> Result<()> {
        let mut done = 0usize;
        while done < buf.len() {
            let cur = va
                .checked_add(done as u64)
                .ok_or(Error::Overflow("virtual read range"))?;
            let chunk = ((PAGE_SIZE - cur.page_offset()) as usize).min(buf.len() - done);
            let gpa = self.translate_mapped(space, cur)?;
            self.backend
                .read_physical(gpa, &mut buf[done..done + chunk])?;
            done += chunk;
        }
        Ok(())
    }

    /// Read virtual memory, zero-filling pages that are not mapped or not backed, and report
    /// which they were.
    pub fn read_partial(&self, space: AddressSpace, va: Gva, buf: &mut [u8]) -> PartialRead {
        let mut report = PartialRead::default();
        let mut done = 0usize;
        while done < buf.len() {
            let Some(cur) = va.checked_add(done as u64) else {
                buf[done..].fill(0);
                break;
            };
            let chunk = ((PAGE_SIZE - cur.page_offset()) as usize).min(buf.len() - done);
            let ok = self.translate_mapped(space, cur).and_then(|gpa| {
                self.backend
                    .read_physical(gpa, &mut buf[done..done + chunk])
            });
            if ok.is_ok() {
                report.bytes_read += chunk;
            } else {
                buf[done..done + chunk].fill(0);
                if report.missing_pages.len() < 64 {
                    report.missing_pages.push(cur.page_base());
                }
            }
            done += chunk;
        }
        report
    }

    /// Read `len` bytes into a new buffer. `len` usually comes from the guest, so it is capped
    /// at [`MAX_READ`].
    ///
    /// # Errors
    /// [`Error::Corrupt`] if `len` exceeds the cap; otherwise as [`GuestMemory::read`].
    pub fn read_bytes(&self, space: AddressSpace, va: Gva, len: usize) -> Result<Vec<u8>> {
        if len > MAX_READ {
            return Err(Error::Corrupt {
                what: "read length",
                addr: va,
                reason: format!("{len} bytes is more than the {MAX_READ}-byte cap"),
            });
        }
        let mut v = vec![0u8; len];
        self.read(space, va, &mut v)?;
        Ok(v)
    }

    /// Read a little-endian `u64`.
    ///
    /// # Errors
    /// As [`GuestMemory::read`].
    #[inline]
    pub fn read_u64(&self, space: AddressSpace, va: Gva) -> Result<u64> {
        if va.page_offset() <= PAGE_SIZE - 8 {
            let gpa = self.translate_mapped(space, va)?;
            return self.backend.read_physical_u64(gpa);
        }
        let mut b = [0u8; 8];
        self.read(space, va, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// Read a little-endian `u32`.
    ///
    /// # Errors
    /// As [`GuestMemory::read`].
    #[inline]
    pub fn read_u32(&self, space: AddressSpace, va: Gva) -> Result<u32> {
        let mut b = [0u8; 4];
        self.read(space, va, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    /// Read a pointer-sized value as a virtual address.
    ///
    /// # Errors
    /// As [`GuestMemory::read`].
    #[inline]
    pub fn read_va(&self, space: AddressSpace, va: Gva) -> Result<Gva> {
        self.read_u64(space, va).map(Gva)
    }

    /// Read a NUL-terminated string of at most `max_len` bytes (the terminator is not
    /// required: a string that fills `max_len` is returned as is). Invalid UTF-8 is replaced.
    ///
    /// # Errors
    /// As [`GuestMemory::read`], for the first bytes only; a later unreadable page ends the
    /// string.
    pub fn read_cstring(&self, space: AddressSpace, va: Gva, max_len: usize) -> Result<String> {
        let max_len = max_len.min(MAX_READ);
        let mut out: Vec<u8> = Vec::new();
        let mut cur = va;
        // Short strings are the rule: read a small piece first, then larger ones (each within
        // one page), so a path costs a path's bytes, not a page's.
        let mut step = 128usize;
        while out.len() < max_len {
            let chunk = ((PAGE_SIZE - cur.page_offset()) as usize)
                .min(max_len - out.len())
                .min(step);
            let start = out.len();
            out.resize(start + chunk, 0);
            if let Err(e) = self.read(space, cur, &mut out[start..]) {
                out.truncate(start);
                if start == 0 {
                    return Err(e);
                }
                break;
            }
            if let Some(n) = memchr::memchr(0, &out[start..]) {
                out.truncate(start + n);
                break;
            }
            step = step.saturating_mul(4);
            cur = match cur.checked_add(chunk as u64) {
                Some(c) => c,
                None => break,
            };
        }
        Ok(match String::from_utf8(out) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::snapshot::Snapshot;

    /// A backend that counts how often its cached frame mappings are dropped.
    struct Counting(Snapshot, std::cell::Cell<u32>);

    impl PhysicalMemory for Counting {
        fn name(&self) -> &'static str {
            "counting"
        }
        fn read_physical(&self, gpa: Gpa, buf: &mut [u8]) -> Result<()> {
            self.0.read_physical(gpa, buf)
        }
        fn physical_ranges(&self) -> Vec<std::ops::Range<u64>> {
            self.0.physical_ranges()
        }
        fn drop_cached_mappings(&self) {
            self.1.set(self.1.get() + 1);
        }
    }

    #[test]
    fn a_flush_also_drops_the_backends_frame_mappings() {
        // The Xen backend caches foreign mappings by frame; after the guest ran they may show
        // a page the frame no longer has, so the flush that follows must reach the backend.
        let snap = Snapshot::from_bytes(vec![0u8; 0x2000], None).expect("image");
        let m = GuestMemory::new(Counting(snap, std::cell::Cell::new(0)));
        m.flush_translations();
        m.flush_translations();
        assert_eq!(m.backend().1.get(), 2);
    }

    fn image() -> GuestMemory<Snapshot> {
        let mut m = vec![0u8; 0x10000];
        let mut set = |pa: usize, v: u64| m[pa..pa + 8].copy_from_slice(&v.to_le_bytes());
        // Identity-ish: va 0x40_0000 + i*4K -> pa 0x8000 + i*4K for i in 0..2, page 2 absent.
        set(0x1000, 0x2000 | 7);
        set(0x2000, 0x3000 | 7);
        set(0x3000 + 2 * 8, 0x4000 | 7);
        set(0x4000, 0x8000 | 7);
        set(0x4000 + 8, 0x9000 | 7);
        m[0x8ffc..0x9004].copy_from_slice(b"abcdefgh");
        m[0x9004] = 0;
        GuestMemory::new(Snapshot::from_bytes(m, None).unwrap())
    }

    const SPACE: AddressSpace = AddressSpace {
        root: Gpa(0x1000),
        mode: PagingMode::Level4,
    };

    #[test]
    fn reads_cross_page_boundaries() {
        let g = image();
        let mut b = [0u8; 8];
        g.read(SPACE, Gva(0x40_0ffc), &mut b).unwrap();
        assert_eq!(&b, b"abcdefgh");
        assert_eq!(
            g.read_u64(SPACE, Gva(0x40_0ffc)).unwrap(),
            u64::from_le_bytes(*b"abcdefgh")
        );
        assert_eq!(
            g.read_cstring(SPACE, Gva(0x40_0ffc), 100).unwrap(),
            "abcdefgh"
        );
        assert_eq!(g.read_cstring(SPACE, Gva(0x40_0ffc), 3).unwrap(), "abc");
    }

    #[test]
    fn partial_reads_report_holes() {
        let g = image();
        let mut b = vec![0xffu8; 0x2000];
        let r = g.read_partial(SPACE, Gva(0x40_1000), &mut b);
        assert_eq!(r.bytes_read, 0x1000);
        assert_eq!(r.missing_pages, vec![Gva(0x40_2000)]);
        assert!(b[0x1000..].iter().all(|&x| x == 0));
        assert!(g
            .read(SPACE, Gva(0x40_1000), &mut b)
            .unwrap_err()
            .is_not_mapped());
        assert!(g.read_bytes(SPACE, Gva(0x40_0000), MAX_READ + 1).is_err());
    }

    #[test]
    fn cache_is_used_and_flushable() {
        let g = image();
        g.translate(SPACE, Gva(0x40_0000)).unwrap();
        g.translate(SPACE, Gva(0x40_0010)).unwrap();
        assert_eq!(g.cache_stats(), (1, 1));
        g.flush_translations();
        g.translate(SPACE, Gva(0x40_0000)).unwrap();
        assert_eq!(g.cache_stats(), (1, 2));
    }
}
