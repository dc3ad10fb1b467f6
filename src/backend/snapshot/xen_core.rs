//! Xen dump-core files, as `xl dump-core DOMAIN FILE` writes them (libxenguest's
//! `xc_domain_dumpcore`; format: Xen's `docs/misc/dump-core-format.txt`).
//!
//! An ELF64 `ET_CORE` file without program headers; its sections, found by name:
//!
//! | section | what |
//! |---|---|
//! | `.note.Xen` | notes named `Xen`: `XEN_ELFNOTE_DUMPCORE_HEADER` (magic, vCPU count, page count, page size) and the format version |
//! | `.xen_prstatus` | one `vcpu_guest_context` (x86-64: 5,168 bytes) per vCPU |
//! | `.xen_pfn` | HVM and PVH guests: the guest frame number of each page in `.xen_pages`, in any order |
//! | `.xen_p2m` | PV guests: `{pfn, gmfn}` pairs instead |
//! | `.xen_pages` | the pages |
//!
//! Memory: page `i` of `.xen_pages` is guest-physical frame `pfn[i]`; runs of consecutive
//! frames become one region each; entries of `~0` (no frame) are skipped. Registers: from each
//! `vcpu_guest_context`: the general registers, selectors, CR0/CR2/CR3/CR4 (`ctrlreg`), FS base
//! and both GS bases (Xen stores them as kernel and user: the one in use is told by the CPL).
//! The context has no EFER: long mode (LMA|LME) is set when CR0.PG and CR4.PAE are on, which
//! a 64-bit guest has; a 32-bit PAE guest would be misread.
//!
//! PV guests (`XC_CORE_MAGIC`) are refused: their page tables and CR3 hold machine frame
//! numbers, which xenvmi does not translate. Bounded: at most [`MAX_SECTIONS`] sections,
//! [`MAX_VCPUS`] vCPUs, and never more pages than the file holds.

use super::storage::Source;
use super::{Layout, Region};
use crate::bytes::{u16_at, u64_at};
use crate::error::{Error, Result};
use crate::regs::{Cr0, Cr4, Registers, EFER_LMA};

const FMT: &str = "Xen dump-core";
/// Most section headers read.
pub(crate) const MAX_SECTIONS: usize = 4096;
/// Most vCPU contexts read.
pub(crate) const MAX_VCPUS: usize = 4096;
/// `XC_CORE_MAGIC`: a paravirtualized domain.
const MAGIC_PV: u64 = 0xF00F_EBED;
/// `XC_CORE_MAGIC_HVM`: an HVM or PVH domain.
const MAGIC_HVM: u64 = 0xF00F_EBEE;
/// `XEN_ELFNOTE_DUMPCORE_HEADER`.
const NOTE_HEADER: u32 = 0x200_0001;
/// `sizeof(vcpu_guest_context_t)` on x86-64, and the offsets read in it (Xen's public
/// `arch-x86/xen.h` and `xen-x86_64.h`).
const CTX_LEN: usize = 5168;
const CTX_USER_REGS: usize = 520;
const CTX_CTRLREG: usize = 4984;
const CTX_FS_BASE: usize = 5144;
const CTX_GS_BASE_KERNEL: usize = 5152;
const CTX_GS_BASE_USER: usize = 5160;
/// `INVALID_PFN`: a `.xen_pfn` entry without a frame.
const INVALID_PFN: u64 = u64::MAX;
/// Frame numbers read from the file at a time.
const PFN_BATCH: usize = 1 << 16;
const PAGE: u64 = 4096;

/// Whether an ELF image is a Xen dump-core rather than a QEMU-style core: no program headers,
/// and section headers (`e_phnum` 0, `e_shnum` > 0, from the first 64 bytes).
pub(super) fn looks_like(head: &[u8]) -> bool {
    head.len() >= 64 && u16_at(head, 56) == Some(0) && u16_at(head, 60).is_some_and(|n| n > 0)
}

struct Section {
    name: String,
    offset: u64,
    size: u64,
}

pub(super) fn parse<S: Source + ?Sized>(b: &S, what: &str) -> Result<Layout> {
    let bad = |reason: String| Error::malformed(FMT, what, reason);
    if b.size() < 64 || !b.begins_with(b"\x7fELF") {
        return Err(bad("the ELF header is missing or truncated".into()));
    }
    if b.array_at::<1>(4) != Some([2]) || b.u16_at(16) != Some(4) {
        return Err(bad("not an ELF64 core file (ET_CORE)".into()));
    }
    let sections = sections(b, &bad)?;
    let find = |name: &str| sections.iter().find(|s| s.name == name);
    let need = |name: &str| {
        find(name).ok_or_else(|| {
            bad(format!(
                "section {name} is missing (not written by xl dump-core?)"
            ))
        })
    };
    // The header note: magic, vCPUs, pages, page size.
    let notes = need(".note.Xen")?;
    let seg = read(b, notes, &bad)?;
    let mut header = None;
    let mut off = 0usize;
    while off + 12 <= seg.len() && header.is_none() {
        let namesz = crate::bytes::u32_at(&seg, off).unwrap_or(0) as usize;
        let descsz = crate::bytes::u32_at(&seg, off + 4).unwrap_or(0) as usize;
        let ntype = crate::bytes::u32_at(&seg, off + 8).unwrap_or(0);
        let desc_off = (off + 12).saturating_add(namesz.next_multiple_of(4));
        let desc = crate::bytes::slice_at(&seg, desc_off, descsz).ok_or_else(|| {
            bad(format!(
                "note at {off:#x} of .note.Xen runs past the section"
            ))
        })?;
        if ntype == NOTE_HEADER && desc.len() >= 32 {
            let g = |i: usize| u64_at(desc, i * 8).unwrap_or(0);
            header = Some((g(0), g(1), g(2), g(3)));
        }
        off = desc_off.saturating_add(descsz.next_multiple_of(4));
    }
    let (magic, nr_vcpus, nr_pages, page_size) =
        header.ok_or_else(|| bad("no XEN_ELFNOTE_DUMPCORE_HEADER note in .note.Xen".into()))?;
    match magic {
        MAGIC_HVM => {}
        MAGIC_PV => {
            return Err(bad(
                "a paravirtualized domain (XC_CORE_MAGIC): its page tables and CR3 hold machine \
                 frame numbers, which xenvmi does not translate; HVM and PVH dumps are read"
                    .into(),
            ))
        }
        m => {
            return Err(bad(format!(
                "header magic {m:#x} is neither XC_CORE_MAGIC_HVM nor XC_CORE_MAGIC"
            )))
        }
    }
    if page_size != PAGE {
        return Err(bad(format!("page size {page_size} is not 4096")));
    }
    // vCPU registers.
    let prstatus = need(".xen_prstatus")?;
    let n = usize::try_from(nr_vcpus).unwrap_or(usize::MAX);
    if n > MAX_VCPUS || (n as u64).saturating_mul(CTX_LEN as u64) > prstatus.size {
        return Err(bad(format!(
            "{nr_vcpus} vCPUs claimed, but .xen_prstatus holds {} bytes ({CTX_LEN} per x86-64 \
             vcpu_guest_context; at most {MAX_VCPUS})",
            prstatus.size
        )));
    }
    let mut vcpus = Vec::with_capacity(n);
    for i in 0..n {
        let ctx = b
            .bytes_at(prstatus.offset as usize + i * CTX_LEN, CTX_LEN)
            .ok_or_else(|| {
                bad(format!(
                    "vCPU {i}'s context lies outside the file (truncated?)"
                ))
            })?;
        vcpus.push(registers(&ctx));
    }
    // Pages and their frame numbers.
    let pages = need(".xen_pages")?;
    let pfns = need(".xen_pfn")?;
    let count = nr_pages.min(pages.size / PAGE).min(pfns.size / 8);
    if count < nr_pages {
        return Err(bad(format!(
            "{nr_pages} pages claimed, but .xen_pages holds {} and .xen_pfn {} (truncated?)",
            pages.size / PAGE,
            pfns.size / 8
        )));
    }
    let mut regions: Vec<Region> = Vec::new();
    let mut i = 0u64;
    while i < count {
        let k = (count - i).min(PFN_BATCH as u64) as usize;
        let raw = b
            .bytes_at((pfns.offset + i * 8) as usize, k * 8)
            .ok_or_else(|| bad(".xen_pfn lies outside the file (truncated?)".into()))?;
        for j in 0..k {
            let pfn = u64_at(&raw, j * 8).unwrap_or(INVALID_PFN);
            if pfn == INVALID_PFN || pfn > (u64::MAX >> 12) - 1 {
                continue;
            }
            let (gpa, at) = (pfn << 12, pages.offset + (i + j as u64) * PAGE);
            match regions.last_mut() {
                Some(r) if r.gpa + r.len == gpa && r.file_offset + r.len == at => r.len += PAGE,
                _ => regions.push(Region {
                    gpa,
                    len: PAGE,
                    file_offset: at,
                }),
            }
        }
        i += k as u64;
    }
    Ok(Layout {
        regions,
        vcpus,
        ..Layout::default()
    })
}

/// The section headers, with their names from the section-name string table.
fn sections<S: Source + ?Sized>(b: &S, bad: &dyn Fn(String) -> Error) -> Result<Vec<Section>> {
    let shoff = b.u64_at(40).unwrap_or(0) as usize;
    let shentsize = b.u16_at(58).unwrap_or(0) as usize;
    let shnum = b.u16_at(60).unwrap_or(0) as usize;
    let shstrndx = b.u16_at(62).unwrap_or(0) as usize;
    if shentsize < 64 || shnum == 0 || shnum > MAX_SECTIONS || shstrndx >= shnum {
        return Err(bad(format!(
            "section headers: {shnum} of {shentsize} bytes, names in section {shstrndx}"
        )));
    }
    let header = |i: usize| -> Result<(u32, u64, u64)> {
        let at = shoff
            .checked_add(i * shentsize)
            .filter(|o| o.checked_add(64).is_some_and(|e| e <= b.size()))
            .ok_or_else(|| {
                bad(format!(
                    "section header {i} lies outside the file (truncated?)"
                ))
            })?;
        Ok((
            b.u32_at(at).unwrap_or(0),
            b.u64_at(at + 24).unwrap_or(0),
            b.u64_at(at + 32).unwrap_or(0),
        ))
    };
    let (_, str_off, str_size) = header(shstrndx)?;
    let names = b
        .bytes_at(str_off as usize, (str_size as usize).min(1 << 16))
        .ok_or_else(|| bad("the section-name table lies outside the file".into()))?;
    (0..shnum)
        .map(|i| {
            let (name, offset, size) = header(i)?;
            let name = crate::bytes::slice_at(
                &names,
                name as usize,
                names.len().saturating_sub(name as usize),
            )
            .map(|s| crate::bytes::c_string(&s[..s.len().min(64)]))
            .unwrap_or_default();
            Ok(Section { name, offset, size })
        })
        .collect()
}

/// A whole section's bytes (only small ones: notes).
fn read<S: Source + ?Sized>(b: &S, s: &Section, bad: &dyn Fn(String) -> Error) -> Result<Vec<u8>> {
    if s.size > 1 << 20 {
        return Err(bad(format!("section {} claims {} bytes", s.name, s.size)));
    }
    b.bytes_at(s.offset as usize, s.size as usize)
        .map(|c| c.into_owned())
        .ok_or_else(|| {
            bad(format!(
                "section {} lies outside the file (truncated?)",
                s.name
            ))
        })
}

/// One vCPU's registers from its `vcpu_guest_context` (HVM/PVH).
fn registers(ctx: &[u8]) -> Registers {
    let g = |off: usize| u64_at(ctx, off).unwrap_or(0);
    let u = |i: usize| g(CTX_USER_REGS + i * 8);
    let cr = |i: usize| g(CTX_CTRLREG + i * 8);
    let sel = |off: usize| u16_at(ctx, CTX_USER_REGS + off).unwrap_or(0);
    let mut r = Registers {
        r15: u(0),
        r14: u(1),
        r13: u(2),
        r12: u(3),
        rbp: u(4),
        rbx: u(5),
        r11: u(6),
        r10: u(7),
        r9: u(8),
        r8: u(9),
        rax: u(10),
        rcx: u(11),
        rdx: u(12),
        rsi: u(13),
        rdi: u(14),
        rip: u(16),
        cs_sel: sel(136),
        rflags: u(18),
        rsp: u(19),
        ss_sel: sel(160),
        cr0: cr(0),
        cr2: cr(2),
        cr3: cr(3),
        cr4: cr(4),
        fs_base: g(CTX_FS_BASE),
        ..Registers::default()
    };
    // Xen names the GS bases by ring: the kernel's is in GS.base while the vCPU is in ring 0,
    // in MSR_KERNEL_GS_BASE (swapgs) while it is in user mode.
    let (kernel, user) = (g(CTX_GS_BASE_KERNEL), g(CTX_GS_BASE_USER));
    (r.gs_base, r.kernel_gs_base) = if r.cpl() == 0 {
        (kernel, user)
    } else {
        (user, kernel)
    };
    if Cr0::from_bits_retain(r.cr0).contains(Cr0::PG)
        && Cr4::from_bits_retain(r.cr4).contains(Cr4::PAE)
    {
        r.efer |= EFER_LMA | (1 << 8);
    }
    r
}
