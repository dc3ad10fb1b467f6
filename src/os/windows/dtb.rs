//! Finding the kernel's page-table root without registers (raw images, LiME captures).
//!
//! A raw image or a LiME capture holds memory only: no vCPU's CR3, no crash dump header. The
//! candidates for the kernel's page-table root (the System process's `DirectoryTableBase`)
//! are looked for in physical memory, cheapest and surest first:
//! 1. **the x64 low stub** ([`low_stub_roots`]): the `PROCESSOR_START_BLOCK` the HAL leaves
//!    in the first MiB to start secondary processors. It begins with a 16-bit `jmp` (`e9`,
//!    offset `0x0006`) and a `CompletionFlag` of 1; its `LmTarget` (offset
//!    [`LOW_STUB_LM_TARGET`]) is a kernel address `0xfffff800_00000000` or above, and its
//!    `ProcessorState.SpecialRegisters.Cr3` (offset [`LOW_STUB_CR3`]) a page-aligned root
//!    below 1 TiB. The offsets follow from the structure's declaration in the WDK headers
//!    (`ntddk.h`: `FAR_JMP_16 Jmp; ULONG CompletionFlag; PSEUDO_DESCRIPTOR_32 Gdt32, Idt32;
//!    KGDTENTRY64 Gdt[4]; ULONG64 TiledCr3; FAR_TARGET_32 PmTarget, LmIdentityTarget;
//!    PVOID LmTarget; ... KPROCESSOR_STATE ProcessorState` at `0x90`, whose
//!    `SpecialRegisters.Cr3` is at `0x10` in every profile in `fixtures/windows-isf`);
//!    MemProcFS and Volatility3 read the same fields.
//! 2. **the self-referencing PML4 entry** ([`SelfRefScan`]): every Windows x64 top-level table
//!    maps itself through one entry in the kernel half (index `0x1ed` before Windows 10 1607,
//!    randomised since). A page is a candidate when exactly one present entry points back at
//!    the page itself, that entry is at an index in `256..=510`, writable and supervisor-only,
//!    no present entry sets the reserved large-page bit, and at least one other kernel-half
//!    entry is present. Pages in `0x1a0000..0x2a0000` and `0x650000..0x6f0000` (where recent
//!    Windows puts the System process's table, as Volatility3 observes) are looked at first,
//!    then every backed page in address order, at most [`MAX_SELF_REF_PAGES`].
//! 3. **the System process** ([`system_process_roots`]), with the `_EPROCESS` layout of the
//!    profile file, or of each ISF file in a profile directory (the kernel's GUID, which
//!    would choose one, is not known yet): an `ImageFileName` of `System`
//!    (zero-padded to 15 bytes) whose `UniqueProcessId` is 4, whose `DirectoryTableBase` is a
//!    backed page and whose `ActiveProcessLinks` are kernel addresses. The fields are read
//!    physically contiguous with the name, so an `_EPROCESS` split over frames that are not
//!    adjacent is missed.
//!
//! Candidates are taken as 4-level tables (a guest with 5-level paging needs registers).
//!
//! No candidate is trusted: [`Windows::discover_with`](super::Windows::discover_with) looks for
//! ntoskrnl in the address space each one gives, checks the profile's `PsActiveProcessHead`
//! there, and then [`verify_processes`] walks the process list (it must close without a
//! broken link and hold pid 4, `System`) before the candidate is accepted. At most
//! [`MAX_ROOT_CANDIDATES`] candidates per method are tried.

use std::ops::Range;

use crate::addr::Gpa;
use crate::backend::PhysicalMemory;
use crate::error::Result;
use crate::mem::GuestMemory;
use crate::regs::cr3_to_root;

use super::{Offsets, Windows};

/// End of the memory the low stub is looked for in (the first MiB).
pub const LOW_STUB_END: u64 = 0x10_0000;
/// Mask applied to the first eight bytes of a page before comparing with [`LOW_STUB_JMP`]
/// (the `jmp`'s low offset byte varies).
pub const LOW_STUB_JMP_MASK: u64 = 0xffff_ffff_ffff_00ff;
/// `jmp` (`e9`, offset `0x0006`) then `CompletionFlag` 1, as the first eight bytes read
/// little-endian.
pub const LOW_STUB_JMP: u64 = 0x0000_0001_0006_00e9;
/// Offset of `PROCESSOR_START_BLOCK.LmTarget`.
pub const LOW_STUB_LM_TARGET: u64 = 0x70;
/// Offset of `PROCESSOR_START_BLOCK.ProcessorState.SpecialRegisters.Cr3`.
pub const LOW_STUB_CR3: u64 = 0xa0;
/// Pages the self-referencing-entry scan reads at most (8 GiB of memory).
pub const MAX_SELF_REF_PAGES: u64 = 1 << 21;
/// Pages the System-process scan reads at most (8 GiB of memory).
pub const MAX_SYSTEM_SCAN_PAGES: u64 = 1 << 21;
/// `System` names the System-process scan checks at most (a hostile image can repeat the
/// name on every 15 bytes).
pub const MAX_SYSTEM_NAME_HITS: usize = 1 << 14;
/// Candidates tried at most per method.
pub const MAX_ROOT_CANDIDATES: usize = 8;
/// Processes [`verify_processes`] walks at most (a longer list is not an error).
pub const MAX_VERIFY_PROCESSES: usize = 1 << 16;
/// Physical ranges where recent Windows puts the System process's top-level table, scanned
/// first by [`SelfRefScan`].
pub const SELF_REF_FIRST: [Range<u64>; 2] = [0x1a_0000..0x2a_0000, 0x65_0000..0x6f_0000];

/// Where the page-table root the kernel was found in came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RootSource {
    /// Given by the caller: a crash dump header's `DirectoryTableBase`
    /// ([`Hints`](super::Hints)), or the space passed to
    /// [`Windows::with_kernel`](super::Windows::with_kernel).
    Hint,
    /// A vCPU's CR3 (its index).
    Vcpu(usize),
    /// A `PROCESSOR_START_BLOCK` in low memory, at this physical address.
    LowStub {
        /// Physical address of the start block.
        at: Gpa,
    },
    /// A top-level table that maps itself through entry `index`.
    SelfRef {
        /// The self-referencing entry's index (256..=510).
        index: u16,
    },
    /// The `DirectoryTableBase` of an `_EPROCESS` named `System` with pid 4.
    SystemProcess {
        /// Physical address of that `_EPROCESS`.
        eprocess: Gpa,
    },
}

impl std::fmt::Display for RootSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RootSource::Hint => write!(f, "DirectoryTableBase hint"),
            RootSource::Vcpu(i) => write!(f, "vCPU {i} CR3"),
            RootSource::LowStub { at } => write!(f, "low stub at {at}"),
            RootSource::SelfRef { index } => write!(f, "self-referencing entry {index:#x}"),
            RootSource::SystemProcess { eprocess } => {
                write!(f, "System _EPROCESS at physical {eprocess}")
            }
        }
    }
}

/// A page-table root to try.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RootCandidate {
    /// Physical address of the top-level table.
    pub root: Gpa,
    /// Where it came from.
    pub source: RootSource,
}

fn read_u64<B: PhysicalMemory>(mem: &B, pa: u64) -> Option<u64> {
    let mut b = [0u8; 8];
    mem.read_physical(Gpa(pa), &mut b).ok()?;
    Some(u64::from_le_bytes(b))
}

/// Whether `pa` lies in a backed physical range (ranges are sorted: binary search).
fn is_backed<B: PhysicalMemory>(mem: &B, pa: u64) -> bool {
    let n = mem.physical_range_count();
    let (mut lo, mut hi) = (0usize, n);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match mem.physical_range(mid) {
            Some(r) if pa < r.start => hi = mid,
            Some(r) if pa >= r.end => lo = mid + 1,
            Some(_) => return true,
            None => return false,
        }
    }
    false
}

/// The page-table roots recorded by `PROCESSOR_START_BLOCK`s in the first MiB (page-aligned,
/// page 0 excluded), at most [`MAX_ROOT_CANDIDATES`], in address order. Unreadable pages are
/// skipped.
pub fn low_stub_roots<B: PhysicalMemory>(mem: &B) -> Vec<RootCandidate> {
    let mut found = Vec::new();
    let mut pa = 0x1000;
    while pa < LOW_STUB_END && found.len() < MAX_ROOT_CANDIDATES {
        let mut block = [0u8; (LOW_STUB_CR3 + 8) as usize];
        if mem.read_physical(Gpa(pa), &mut block).is_ok() {
            let at = |o: u64| {
                let o = o as usize;
                u64::from_le_bytes(block[o..o + 8].try_into().unwrap_or([0; 8]))
            };
            let lm_target = at(LOW_STUB_LM_TARGET);
            let cr3 = at(LOW_STUB_CR3);
            if at(0) & LOW_STUB_JMP_MASK == LOW_STUB_JMP
                && lm_target & 0xffff_f800_0000_0003 == 0xffff_f800_0000_0000
                && cr3 & 0xffff_ff00_0000_0fff == 0
                && cr3 != 0
            {
                found.push(RootCandidate {
                    root: Gpa(cr3),
                    source: RootSource::LowStub { at: Gpa(pa) },
                });
            }
        }
        pa += 0x1000;
    }
    found
}

/// The index of the one entry through which the top-level table `page` (at physical `pa`)
/// maps itself, when the page passes the checks in the [module docs](self).
pub fn self_ref_index(page: &[u8], pa: u64) -> Option<u16> {
    if pa == 0 || page.len() != 0x1000 {
        return None;
    }
    let mut self_ref = None;
    let mut other_kernel = false;
    for (i, e) in page.chunks_exact(8).enumerate() {
        let e = u64::from_le_bytes(e.try_into().ok()?);
        if e & 1 == 0 {
            continue;
        }
        if e & 0x80 != 0 {
            return None; // reserved in a PML4 entry
        }
        if e & 0x000f_ffff_ffff_f000 == pa {
            if self_ref.is_some() {
                return None;
            }
            self_ref = Some((i, e));
        } else if i >= 256 {
            other_kernel = true;
        }
    }
    let (i, e) = self_ref?;
    let writable_supervisor = e & 0x2 != 0 && e & 0x4 == 0;
    ((256..=510).contains(&i) && writable_supervisor && other_kernel).then_some(i as u16)
}

/// The self-referencing-entry scan, page by page: [`SELF_REF_FIRST`] first, then every other
/// backed page in address order, at most [`MAX_SELF_REF_PAGES`] read.
pub struct SelfRefScan {
    first: usize,
    range: usize,
    next: u64,
    pages_left: u64,
    found: usize,
    /// Pages read so far.
    pub pages_read: u64,
}

impl Default for SelfRefScan {
    fn default() -> Self {
        Self::new()
    }
}

impl SelfRefScan {
    /// A scan from the start.
    pub fn new() -> Self {
        SelfRefScan {
            first: 0,
            range: 0,
            next: SELF_REF_FIRST[0].start,
            pages_left: MAX_SELF_REF_PAGES,
            found: 0,
            pages_read: 0,
        }
    }

    /// Whether the page budget ran out before the end of memory.
    pub fn exhausted(&self) -> bool {
        self.pages_left == 0
    }

    /// The next candidate, or `None` at the end of memory, after [`MAX_ROOT_CANDIDATES`], or
    /// when the page budget is spent.
    pub fn next_candidate<B: PhysicalMemory>(&mut self, mem: &B) -> Option<RootCandidate> {
        let mut page = vec![0u8; 0x1000];
        while self.found < MAX_ROOT_CANDIDATES && self.pages_left > 0 {
            let pa = self.next_page(mem)?;
            self.pages_left -= 1;
            if mem.read_physical(Gpa(pa), &mut page).is_err() {
                continue;
            }
            self.pages_read += 1;
            if let Some(index) = self_ref_index(&page, pa) {
                self.found += 1;
                return Some(RootCandidate {
                    root: Gpa(pa),
                    source: RootSource::SelfRef { index },
                });
            }
        }
        None
    }

    /// The next page address to look at.
    fn next_page<B: PhysicalMemory>(&mut self, mem: &B) -> Option<u64> {
        // The preferred ranges (only their backed pages).
        while self.first < SELF_REF_FIRST.len() {
            let r = &SELF_REF_FIRST[self.first];
            if self.next < r.start {
                self.next = r.start;
            }
            while self.next < r.end {
                let pa = self.next;
                self.next += 0x1000;
                if is_backed(mem, pa) {
                    return Some(pa);
                }
            }
            self.first += 1;
            self.next = 0;
        }
        // Then every backed range, skipping what was seen.
        loop {
            let r = mem.physical_range(self.range)?;
            let start = r.start.checked_add(0xfff)? & !0xfff;
            if self.next < start {
                self.next = start;
            }
            while self.next.checked_add(0x1000).is_some_and(|e| e <= r.end) {
                let pa = self.next;
                self.next += 0x1000;
                if !SELF_REF_FIRST.iter().any(|f| f.contains(&pa)) {
                    return Some(pa);
                }
            }
            self.range += 1;
        }
    }
}

/// `(name, pid, DirectoryTableBase, ActiveProcessLinks)` offsets of `_EPROCESS`.
fn system_fields(o: &Offsets) -> [u64; 4] {
    [o.eprocess_name, o.eprocess_pid, o.dtb, o.eprocess_links]
}

/// The `DirectoryTableBase`s of `_EPROCESS` objects that look like the System process under
/// the layout `offsets` (see the [module docs](self)), at most [`MAX_ROOT_CANDIDATES`], in
/// address order; at most [`MAX_SYSTEM_SCAN_PAGES`] pages are read and
/// [`MAX_SYSTEM_NAME_HITS`] names checked. Returns the candidates and the number of pages
/// read.
pub fn system_process_roots<B: PhysicalMemory>(
    mem: &B,
    offsets: &Offsets,
) -> (Vec<RootCandidate>, u64) {
    const NAME: &[u8; 15] = b"System\0\0\0\0\0\0\0\0\0";
    let [name_off, pid_off, dtb_off, links_off] = system_fields(offsets);
    let mut found: Vec<RootCandidate> = Vec::new();
    let mut pages = 0u64;
    // A page plus the name's length, so that a name across a page boundary is seen.
    let mut buf = vec![0u8; 0x1000 + NAME.len()];
    let mut index = 0;
    let mut hits = 0usize;
    'ranges: while let Some(r) = mem.physical_range(index) {
        index += 1;
        let mut pa = r.start & !0xfff;
        while pa < r.end {
            if pages >= MAX_SYSTEM_SCAN_PAGES || found.len() >= MAX_ROOT_CANDIDATES {
                break 'ranges;
            }
            pages += 1;
            let n = if mem.read_physical(Gpa(pa), &mut buf).is_ok() {
                buf.len()
            } else if mem.read_physical(Gpa(pa), &mut buf[..0x1000]).is_ok() {
                0x1000
            } else {
                0
            };
            for (i, w) in buf[..n].windows(NAME.len()).enumerate().take(0x1000) {
                if w != NAME {
                    continue;
                }
                hits += 1;
                if hits > MAX_SYSTEM_NAME_HITS {
                    break 'ranges;
                }
                let Some(ep) = (pa + i as u64).checked_sub(name_off) else {
                    continue;
                };
                let field = |off: u64| ep.checked_add(off).and_then(|a| read_u64(mem, a));
                let (Some(pid), Some(dtb), Some(flink), Some(blink)) = (
                    field(pid_off),
                    field(dtb_off),
                    field(links_off),
                    links_off.checked_add(8).and_then(field),
                ) else {
                    continue;
                };
                let root = cr3_to_root(dtb);
                let kernel = |va: u64| va >= 0xffff_8000_0000_0000;
                if pid == 4
                    && root.0 != 0
                    && kernel(flink)
                    && kernel(blink)
                    && is_backed(mem, root.0)
                    && !found.iter().any(|c| c.root == root)
                {
                    found.push(RootCandidate {
                        root,
                        source: RootSource::SystemProcess { eprocess: Gpa(ep) },
                    });
                }
            }
            let Some(next) = pa.checked_add(0x1000) else {
                break 'ranges;
            };
            pa = next;
        }
    }
    (found, pages)
}

/// Walk the process list of a kernel found from a register-less candidate: at most
/// [`MAX_VERIFY_PROCESSES`] processes, every one readable, and pid 4 named `System` among
/// them.
///
/// # Errors
/// The first broken entry, or a list without the System process, as a reason.
pub fn verify_processes<B: PhysicalMemory>(
    w: &Windows,
    mem: &GuestMemory<B>,
) -> std::result::Result<usize, String> {
    let mut system = false;
    let mut n = 0;
    for p in w.processes(mem).take(MAX_VERIFY_PROCESSES) {
        let p: Result<_> = p;
        let p = p.map_err(|e| format!("process list entry {n}: {e}"))?;
        system |= p.pid == 4 && p.name == "System";
        n += 1;
    }
    if !system {
        return Err(format!(
            "the process list ({n} entries) has no pid 4 named System"
        ));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(pa: u64, entries: &[(usize, u64)]) -> Vec<u8> {
        let mut page = vec![0u8; 0x1000];
        for &(i, e) in entries {
            page[i * 8..i * 8 + 8].copy_from_slice(&e.to_le_bytes());
        }
        let _ = pa;
        page
    }

    #[test]
    fn self_ref_pages_are_told_from_others() {
        let pa = 0x1ad000;
        let kernel = (0x1f0, 0x4000 | 0x63);
        // Windows 7's fixed index, and a randomised one.
        for i in [0x1ed, 0x1a3] {
            let p = table(pa, &[(i, pa | 0x63), kernel]);
            assert_eq!(self_ref_index(&p, pa), Some(i as u16));
        }
        // User half, the last entry, user-accessible, read-only, twice, large-page bit,
        // nothing else mapped, page 0.
        let cases: [Vec<(usize, u64)>; 7] = [
            vec![(0x10, pa | 0x63), kernel],
            vec![(511, pa | 0x63), kernel],
            vec![(0x1ed, pa | 0x67), kernel],
            vec![(0x1ed, pa | 0x61), kernel],
            vec![(0x1ed, pa | 0x63), (0x1ee, pa | 0x63), kernel],
            vec![(0x1ed, pa | 0x63), (0x1f0, 0x4000 | 0xe3)],
            vec![(0x1ed, pa | 0x63)],
        ];
        for c in cases {
            assert_eq!(self_ref_index(&table(pa, &c), pa), None, "{c:x?}");
        }
        assert_eq!(self_ref_index(&table(0, &[(0x1ed, 0x63), kernel]), 0), None);
        assert_eq!(self_ref_index(&[0u8; 8], pa), None);
    }

    fn offsets() -> Offsets {
        Offsets {
            eprocess_links: 0x448,
            eprocess_pid: 0x440,
            eprocess_ppid: 0x540,
            eprocess_name: 0x5a8,
            eprocess_peb: 0x550,
            dtb: 0x28,
            user_dtb: None,
            kldr_links: 0,
            kldr_base: 0x30,
            kldr_size: 0x40,
            kldr_name: 0x58,
            ldr_links: 0,
            ldr_base: 0x30,
            ldr_size: 0x40,
            ldr_name: 0x58,
            peb_ldr: 0x18,
            peb_ldr_list: 0x10,
            ustr_len: 0,
            ustr_buffer: 8,
        }
    }

    /// Memory that is `System` names end to end, each with pid 4, a root and kernel links
    /// read from the same bytes: the scan stops at its name budget and its candidate cap.
    #[test]
    fn a_flood_of_system_names_is_bounded() {
        use crate::backend::snapshot::{Format, Snapshot};
        let name = b"System\0\0\0\0\0\0\0\0\0";
        let mem: Vec<u8> = name.iter().copied().cycle().take(8 << 20).collect();
        let snap = Snapshot::from_bytes(mem, Some(Format::Raw)).unwrap();
        let (c, pages) = system_process_roots(&snap, &offsets());
        assert!(c.len() <= MAX_ROOT_CANDIDATES);
        // 273 names a page: the name budget ends the scan long before 2048 pages.
        assert!(
            pages < 2048 && pages as usize * 272 >= MAX_SYSTEM_NAME_HITS,
            "{pages}"
        );
        // Nothing there is a low stub or a self-referencing table.
        assert!(low_stub_roots(&snap).is_empty());
        let mut scan = SelfRefScan::new();
        assert_eq!(scan.next_candidate(&snap), None);
        assert_eq!(scan.pages_read, 2048);
    }
}
