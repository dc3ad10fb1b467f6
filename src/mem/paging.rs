//! x86-64 page-table walks: 4-level and 5-level paging, 2 MiB and 1 GiB pages.
//!
//! The walk is table-driven: each level differs only in the shift of its index and whether a
//! large page may end it. A non-present entry is a normal outcome ([`Walk::NotPresent`]), not
//! an error; only a page-table read that falls outside guest memory is an error.

use bitflags::bitflags;

use crate::addr::{Gpa, Gva};
use crate::backend::PhysicalMemory;
use crate::error::{Error, Result};
use crate::regs::PagingMode;

/// Physical-address bits of a paging-structure entry (bits 12..51).
pub const PTE_ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;
const P: u64 = 1 << 0;
const RW: u64 = 1 << 1;
const US: u64 = 1 << 2;
const PS: u64 = 1 << 7;
const NX: u64 = 1 << 63;

bitflags! {
    /// Effective access rights of a mapping, combined over all levels of the walk.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct PageFlags: u8 {
        /// Writable at every level.
        const WRITABLE = 1;
        /// User-accessible at every level.
        const USER = 2;
        /// No-execute at some level.
        const NX = 4;
    }
}

/// Size of the page that maps an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PageSize {
    /// 4 KiB.
    Size4K,
    /// 2 MiB.
    Size2M,
    /// 1 GiB.
    Size1G,
}

impl PageSize {
    /// Size in bytes.
    pub const fn bytes(self) -> u64 {
        match self {
            PageSize::Size4K => 1 << 12,
            PageSize::Size2M => 1 << 21,
            PageSize::Size1G => 1 << 30,
        }
    }
}

/// A successful translation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    /// The guest-physical address the virtual address maps to.
    pub gpa: Gpa,
    /// The page that maps it.
    pub size: PageSize,
    /// Effective rights.
    pub flags: PageFlags,
}

/// The outcome of one page-table walk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Walk {
    /// The address is mapped.
    Mapped(Mapping),
    /// No present entry at `level` (5..=1); `entry` is the raw value found.
    NotPresent {
        /// Level of the first non-present entry.
        level: u8,
        /// The raw entry.
        entry: u64,
    },
}

impl Walk {
    /// The mapping, or an [`Error::PageNotPresent`] naming the level.
    ///
    /// # Errors
    /// [`Error::PageNotPresent`] if the address is not mapped.
    pub fn mapped(self, va: Gva, root: Gpa) -> Result<Mapping> {
        match self {
            Walk::Mapped(m) => Ok(m),
            Walk::NotPresent { level, entry } => Err(Error::PageNotPresent {
                va,
                root,
                level,
                entry,
            }),
        }
    }
}

/// Shift of the index into the table at `level` (1 = page table).
#[inline]
const fn level_shift(level: u8) -> u32 {
    12 + 9 * (level as u32 - 1)
}

/// Walk the page tables rooted at `root` for `va`.
///
/// # Errors
/// [`Error::NonCanonical`] for a non-canonical address; a physical-read error if a paging
/// structure lies outside guest memory (a corrupt or hostile table).
#[inline]
pub fn walk<M: PhysicalMemory + ?Sized>(
    mem: &M,
    root: Gpa,
    mode: PagingMode,
    va: Gva,
) -> Result<Walk> {
    if !va.is_canonical(mode.va_bits()) {
        return Err(Error::NonCanonical {
            va,
            bits: mode.va_bits(),
        });
    }
    let mut table = root.0 & PTE_ADDR_MASK;
    let mut writable = true;
    let mut user = true;
    let mut nx = false;
    let mut level = mode.levels();
    loop {
        let shift = level_shift(level);
        let index = (va.0 >> shift) & 0x1ff;
        let entry = mem.read_physical_u64(Gpa(table | (index << 3)))?;
        if entry & P == 0 {
            return Ok(Walk::NotPresent { level, entry });
        }
        writable &= entry & RW != 0;
        user &= entry & US != 0;
        nx |= entry & NX != 0;
        let large = (level == 2 || level == 3) && entry & PS != 0;
        if level == 1 || large {
            let page_mask = (1u64 << shift) - 1;
            let base = entry & PTE_ADDR_MASK & !page_mask;
            let mut flags = PageFlags::empty();
            flags.set(PageFlags::WRITABLE, writable);
            flags.set(PageFlags::USER, user);
            flags.set(PageFlags::NX, nx);
            let size = match level {
                3 => PageSize::Size1G,
                2 => PageSize::Size2M,
                _ => PageSize::Size4K,
            };
            return Ok(Walk::Mapped(Mapping {
                gpa: Gpa(base | (va.0 & page_mask)),
                size,
                flags,
            }));
        }
        table = entry & PTE_ADDR_MASK;
        level -= 1;
    }
}

/// One contiguous run of mapped virtual pages, as [`mapped_ranges`] reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MappedRange {
    /// First virtual address.
    pub va: Gva,
    /// Guest-physical address of `va`.
    pub gpa: Gpa,
    /// Size of the leaf page.
    pub size: PageSize,
    /// Effective rights.
    pub flags: PageFlags,
}

/// Bound on paging-structure entries [`mapped_ranges`] reads in one call.
pub const MAX_ENTRY_READS: usize = 1 << 20;

/// Visit the leaf mappings of `[start, end)` in address order, at most `limit` of them.
///
/// Sign-extension of the top level is handled, so kernel ranges work as written. Paging
/// structures that cannot be read are skipped. Cost is bounded by `limit` leaves and by
/// [`MAX_ENTRY_READS`] entry reads (guest page tables may share or loop tables to make a
/// range look enormous); the walk just stops when either runs out.
pub fn mapped_ranges<M: PhysicalMemory + ?Sized>(
    mem: &M,
    root: Gpa,
    mode: PagingMode,
    start: Gva,
    end: Gva,
    limit: usize,
    visit: &mut dyn FnMut(MappedRange) -> bool,
) {
    struct Ctx<'a, M: ?Sized> {
        mem: &'a M,
        start: u64,
        end: u64,
        left: usize,
        reads: usize,
        bits: u32,
    }
    fn rec<M: PhysicalMemory + ?Sized>(
        c: &mut Ctx<'_, M>,
        table: u64,
        level: u8,
        base: u64,
        rights: (bool, bool, bool),
        visit: &mut dyn FnMut(MappedRange) -> bool,
    ) -> bool {
        let shift = level_shift(level);
        let span = 1u64 << shift;
        for index in 0..512u64 {
            if c.left == 0 {
                return false;
            }
            let raw = base | (index << shift);
            // Sign-extend to a canonical address.
            let sh = 64 - c.bits;
            let lo = (((raw << sh) as i64) >> sh) as u64;
            let hi = lo.saturating_add(span - 1);
            if hi < c.start || lo >= c.end {
                continue;
            }
            if c.reads == 0 {
                return false;
            }
            c.reads -= 1;
            let Ok(entry) = c
                .mem
                .read_physical_u64(Gpa((table & PTE_ADDR_MASK) | (index << 3)))
            else {
                continue;
            };
            if entry & P == 0 {
                continue;
            }
            let r = (
                rights.0 && entry & RW != 0,
                rights.1 && entry & US != 0,
                rights.2 || entry & NX != 0,
            );
            let large = (level == 2 || level == 3) && entry & PS != 0;
            if level == 1 || large {
                c.left -= 1;
                let mut flags = PageFlags::empty();
                flags.set(PageFlags::WRITABLE, r.0);
                flags.set(PageFlags::USER, r.1);
                flags.set(PageFlags::NX, r.2);
                let size = match level {
                    3 => PageSize::Size1G,
                    2 => PageSize::Size2M,
                    _ => PageSize::Size4K,
                };
                let gpa = Gpa(entry & PTE_ADDR_MASK & !(span - 1));
                if !visit(MappedRange {
                    va: Gva(lo),
                    gpa,
                    size,
                    flags,
                }) {
                    return false;
                }
            } else if !rec(c, entry & PTE_ADDR_MASK, level - 1, raw, r, visit) {
                return false;
            }
        }
        true
    }
    let mut c = Ctx {
        mem,
        start: start.0,
        end: end.0,
        left: limit,
        reads: MAX_ENTRY_READS,
        bits: mode.va_bits(),
    };
    rec(&mut c, root.0, mode.levels(), 0, (true, true, false), visit);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::snapshot::Snapshot;

    /// Build a tiny image: root at 0x1000, tables below, mapping a few pages.
    fn image() -> Snapshot {
        let mut m = vec![0u8; 0x20000];
        let mut set = |pa: usize, v: u64| m[pa..pa + 8].copy_from_slice(&v.to_le_bytes());
        // va 0xffff_8000_0000_0000 + 0x1234: PML4[256] -> PDPT 0x2000 -> PD 0x3000 -> PT 0x4000
        set(0x1000 + 256 * 8, 0x2000 | 0x7);
        set(0x2000, 0x3000 | 0x3);
        set(0x3000, 0x4000 | 0x7);
        set(0x4000 + 8, 0x9000 | 0x7 | (1 << 63));
        // PD[1]: a 2 MiB page at 0x200000 (outside the image; walk does not touch it)
        set(0x3000 + 8, 0x20_0000 | 0x83);
        // PDPT[1]: 1 GiB page at 0x4000_0000
        set(0x2000 + 8, 0x4000_0000 | 0x83);
        // PML4[0] -> table beyond the image: walks must fail cleanly.
        set(0x1000, 0xdead_0000 | 0x7);
        Snapshot::from_bytes(m, None).unwrap()
    }

    #[test]
    fn walks_4k_2m_1g_and_reports_rights() {
        let s = image();
        let root = Gpa(0x1000);
        let w = walk(&s, root, PagingMode::Level4, Gva(0xffff_8000_0000_1234)).unwrap();
        let Walk::Mapped(m) = w else { panic!("{w:?}") };
        assert_eq!(m.gpa, Gpa(0x9234));
        assert_eq!(m.size, PageSize::Size4K);
        assert_eq!(m.flags, PageFlags::WRITABLE | PageFlags::NX); // PDPT entry is supervisor-only
        let w = walk(&s, root, PagingMode::Level4, Gva(0xffff_8000_0020_0042)).unwrap();
        assert_eq!(
            w,
            Walk::Mapped(Mapping {
                gpa: Gpa(0x20_0042),
                size: PageSize::Size2M,
                flags: PageFlags::WRITABLE
            })
        );
        let w = walk(&s, root, PagingMode::Level4, Gva(0xffff_8000_4000_0007)).unwrap();
        assert!(matches!(
            w,
            Walk::Mapped(Mapping {
                gpa: Gpa(0x4000_0007),
                size: PageSize::Size1G,
                ..
            })
        ));
    }

    #[test]
    fn not_present_is_reported_with_level() {
        let s = image();
        let w = walk(
            &s,
            Gpa(0x1000),
            PagingMode::Level4,
            Gva(0xffff_8000_0000_2000),
        )
        .unwrap();
        assert_eq!(w, Walk::NotPresent { level: 1, entry: 0 });
        let w = walk(
            &s,
            Gpa(0x1000),
            PagingMode::Level4,
            Gva(0xffff_ff00_0000_0000),
        )
        .unwrap();
        assert!(matches!(w, Walk::NotPresent { level: 4, .. }));
        let e = w
            .mapped(Gva(0xffff_ff00_0000_0000), Gpa(0x1000))
            .unwrap_err();
        assert!(e.to_string().contains("level 4"), "{e}");
    }

    #[test]
    fn tables_outside_memory_and_noncanonical_are_errors() {
        let s = image();
        assert!(walk(&s, Gpa(0x1000), PagingMode::Level4, Gva(0x1000))
            .unwrap_err()
            .is_not_mapped());
        assert!(matches!(
            walk(
                &s,
                Gpa(0x1000),
                PagingMode::Level4,
                Gva(0x0000_8000_0000_0000)
            ),
            Err(Error::NonCanonical { .. })
        ));
    }

    #[test]
    fn mapped_ranges_enumerates_in_order() {
        let s = image();
        let mut seen = Vec::new();
        mapped_ranges(
            &s,
            Gpa(0x1000),
            PagingMode::Level4,
            Gva(0xffff_8000_0000_0000),
            Gva(0xffff_ffff_ffff_ffff),
            100,
            &mut |r| {
                seen.push((r.va.0, r.size));
                true
            },
        );
        assert_eq!(
            seen,
            vec![
                (0xffff_8000_0000_1000, PageSize::Size4K),
                (0xffff_8000_0020_0000, PageSize::Size2M),
                (0xffff_8000_4000_0000, PageSize::Size1G)
            ]
        );
    }
}
