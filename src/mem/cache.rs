//! The translation cache: a direct-mapped table of recent (root, page) → frame translations.
//!
//! # Invalidation rules
//! The cache never invalidates itself. Translations depend on guest page tables, which the
//! guest can change at any time it runs, so the owner must call
//! [`TranslationCache::flush`] (or [`TranslationCache::flush_root`]) when:
//! - the guest has run since the last lookup (every resume of a paused domain, every answered
//!   event): call `flush`;
//! - a CR3 write event says an address space was replaced: `flush_root(old_root)` is enough
//!   for that space, but page tables shared between spaces (the kernel half) may also have
//!   changed, so `flush` is the safe choice after the guest ran;
//! - the altp2m view in use changes (another view can map a gfn to another frame): `flush`;
//! - guest memory is written through the backend at a page-table page: `flush`.
//!
//! A read-only snapshot never changes, so its cache is never flushed. Only present mappings
//! are cached; "not present" is always re-walked, because it is the answer most likely to
//! change next.
//!
//! Flushing everything is O(1): entries carry a generation number.

use std::cell::Cell;

use crate::addr::Gpa;
use crate::mem::paging::{PageFlags, PageSize};
use crate::regs::PagingMode;

const SETS: usize = 4096;

#[derive(Clone, Copy, Default)]
struct Entry {
    /// `root | mode bit`, or 0 when empty.
    tag_root: u64,
    /// Virtual page number.
    vpn: u64,
    /// Guest-physical frame base of the 4 KiB page.
    frame: u64,
    generation: u32,
    size: u8,
    flags: u8,
}

/// A direct-mapped translation cache with explicit invalidation (see the module docs).
pub struct TranslationCache {
    entries: Box<[Cell<Entry>]>,
    generation: Cell<u32>,
    hits: Cell<u64>,
    misses: Cell<u64>,
}

impl std::fmt::Debug for TranslationCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TranslationCache")
            .field("sets", &SETS)
            .field("hits", &self.hits.get())
            .field("misses", &self.misses.get())
            .finish()
    }
}

impl Default for TranslationCache {
    fn default() -> Self {
        Self::new()
    }
}

/// A cached translation of one 4 KiB page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CachedPage {
    /// Guest-physical base of the 4 KiB page.
    pub frame: Gpa,
    /// Size of the leaf that mapped it.
    pub size: PageSize,
    /// Effective rights.
    pub flags: PageFlags,
}

#[inline]
fn tag(root: Gpa, mode: PagingMode) -> u64 {
    // Roots are page aligned, so bit 0 is free for the mode and the tag is never 0 for a
    // valid entry (bit 1 marks "occupied").
    root.0 | 2 | matches!(mode, PagingMode::Level5) as u64
}

#[inline]
fn set_index(tag: u64, vpn: u64) -> usize {
    let h =
        (vpn ^ (tag >> 12).wrapping_mul(0x9E37_79B9_7F4A_7C15)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (h >> (64 - 12)) as usize & (SETS - 1)
}

impl TranslationCache {
    /// An empty cache.
    pub fn new() -> Self {
        TranslationCache {
            entries: (0..SETS).map(|_| Cell::new(Entry::default())).collect(),
            generation: Cell::new(1),
            hits: Cell::new(0),
            misses: Cell::new(0),
        }
    }

    /// Look up the translation of virtual page `vpn` in the space `(root, mode)`.
    #[inline]
    pub fn get(&self, root: Gpa, mode: PagingMode, vpn: u64) -> Option<CachedPage> {
        let t = tag(root, mode);
        let e = self.entries[set_index(t, vpn)].get();
        if e.tag_root == t && e.vpn == vpn && e.generation == self.generation.get() {
            self.hits.set(self.hits.get() + 1);
            Some(CachedPage {
                frame: Gpa(e.frame),
                size: match e.size {
                    2 => PageSize::Size1G,
                    1 => PageSize::Size2M,
                    _ => PageSize::Size4K,
                },
                flags: PageFlags::from_bits_truncate(e.flags),
            })
        } else {
            self.misses.set(self.misses.get() + 1);
            None
        }
    }

    /// Remember a translation.
    #[inline]
    pub fn insert(&self, root: Gpa, mode: PagingMode, vpn: u64, page: CachedPage) {
        let t = tag(root, mode);
        self.entries[set_index(t, vpn)].set(Entry {
            tag_root: t,
            vpn,
            frame: page.frame.0,
            generation: self.generation.get(),
            size: match page.size {
                PageSize::Size4K => 0,
                PageSize::Size2M => 1,
                PageSize::Size1G => 2,
            },
            flags: page.flags.bits(),
        });
    }

    /// Forget every translation (O(1)).
    pub fn flush(&self) {
        let g = self.generation.get().wrapping_add(1);
        if g == 0 {
            // After 2^32 flushes, really clear so that stale generation numbers cannot match.
            for e in self.entries.iter() {
                e.set(Entry::default());
            }
            self.generation.set(1);
        } else {
            self.generation.set(g);
        }
    }

    /// Forget the translations of one address space (both paging modes).
    pub fn flush_root(&self, root: Gpa) {
        let r = root.0 & !0xfff;
        for e in self.entries.iter() {
            let v = e.get();
            if v.tag_root & !0xfff == r {
                e.set(Entry::default());
            }
        }
    }

    /// (hits, misses) since creation.
    pub fn stats(&self) -> (u64, u64) {
        (self.hits.get(), self.misses.get())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hit_miss_and_flushes() {
        let c = TranslationCache::new();
        let page = CachedPage {
            frame: Gpa(0x5000),
            size: PageSize::Size4K,
            flags: PageFlags::WRITABLE,
        };
        assert_eq!(c.get(Gpa(0x1000), PagingMode::Level4, 7), None);
        c.insert(Gpa(0x1000), PagingMode::Level4, 7, page);
        assert_eq!(c.get(Gpa(0x1000), PagingMode::Level4, 7), Some(page));
        assert_eq!(
            c.get(Gpa(0x1000), PagingMode::Level5, 7),
            None,
            "mode is part of the key"
        );
        assert_eq!(
            c.get(Gpa(0x2000), PagingMode::Level4, 7),
            None,
            "root is part of the key"
        );
        c.flush();
        assert_eq!(c.get(Gpa(0x1000), PagingMode::Level4, 7), None);
        c.insert(Gpa(0x1000), PagingMode::Level4, 7, page);
        c.insert(Gpa(0x2000), PagingMode::Level4, 9, page);
        c.flush_root(Gpa(0x1000));
        assert_eq!(c.get(Gpa(0x1000), PagingMode::Level4, 7), None);
        assert_eq!(c.get(Gpa(0x2000), PagingMode::Level4, 9), Some(page));
    }
}
