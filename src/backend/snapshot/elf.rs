//! ELF64 core files as written by QEMU's `dump-guest-memory` (and kdump).
//!
//! Memory comes from `PT_LOAD` segments (`p_paddr` = guest-physical address, so holes and RAM
//! above 4 GiB are just separate segments). Registers come from the per-vCPU notes: `CORE`
//! `NT_PRSTATUS` (general-purpose registers, segment selectors, FS/GS base) and `QEMU` notes
//! (`QEMUCPUState`: control registers, segment bases, GDT/IDT, `kernel_gs_base`).
//!
//! The writing side of the same format is here too ([`file_header`], [`program_header`],
//! [`note`], [`prstatus_note`], [`qemu_note`]), so that what `crate::capture` writes and what
//! this parser reads are one definition.

use super::storage::Source;
use super::{Layout, Region};
use crate::bytes::{align_up, slice_at, u32_at, u64_at};
use crate::error::{Error, Result};
use crate::regs::{Cr0, Cr4, Registers, EFER_LMA};

const FMT: &str = "QEMU ELF core";
pub(crate) const PT_LOAD: u32 = 1;
pub(crate) const PT_NOTE: u32 = 4;
const NT_PRSTATUS: u32 = 1;
/// Bound on program headers (QEMU writes one per RAM block plus one note segment).
pub(crate) const MAX_PHDRS: usize = 1 << 16;
/// Size of the ELF64 file header.
pub(crate) const EHDR_LEN: usize = 64;
/// Size of one ELF64 program header.
pub(crate) const PHDR_LEN: usize = 56;
/// `e_phnum` meaning "the count is in section header 0's `sh_info`".
const PN_XNUM: usize = 0xffff;
/// Size of one ELF64 section header.
pub(crate) const SHDR_LEN: usize = 64;
/// `struct elf_prstatus` on x86-64.
const PRSTATUS_LEN: usize = 336;
/// `QEMUCPUState` version 1 with `kernel_gs_base`.
const QEMU_CPUSTATE_LEN: usize = 440;
/// Offset of the first segment (`cs`) in `QEMUCPUState`; each is 24 bytes.
const QEMU_SEGS: usize = 152;
/// Offset of `cr[5]` in `QEMUCPUState`.
const QEMU_CR: usize = 392;
/// QEMU's cached descriptor flags for a 64-bit ring-0 code segment: present, S, type
/// execute/read/accessed, L, G.
const CS_FLAGS_LONG: u32 = (1 << 15) | (1 << 12) | (0xb << 8) | (1 << 21) | (1 << 23);
/// Bound on notes walked in all note segments.
const MAX_NOTES: usize = 1 << 16;
/// Bound on vCPUs taken from notes.
const MAX_VCPUS: usize = 4096;
/// Offset of `pr_reg` in `struct elf_prstatus` on x86-64.
const PRSTATUS_REG_OFF: usize = 112;
/// Bytes of `pr_reg` (27 registers).
const PRSTATUS_REG_LEN: usize = 27 * 8;
/// Largest VMCOREINFO note kept.
const MAX_VMCOREINFO: usize = 64 * 1024;
/// The owner name of xenvmi's own notes (ignored by other readers).
pub(crate) const XENVMI: &[u8] = b"XENVMI";
/// xenvmi note: one vCPU's MSRs (`efer`, `star`, `lstar`, `cstar`, `sysenter_cs`,
/// `sysenter_esp`, `sysenter_eip`: seven little-endian `u64`), in vCPU order like the others.
pub(crate) const NT_XENVMI_MSRS: u32 = 1;
/// xenvmi note: how the file was captured (UTF-8 JSON, `crate::capture`).
pub(crate) const NT_XENVMI_CAPTURE: u32 = 2;
/// Largest capture note kept.
pub(crate) const MAX_CAPTURE_NOTE: usize = 1 << 20;

pub(super) fn parse<S: Source + ?Sized>(b: &S, what: &str) -> Result<Layout> {
    let bad = |reason: String| Error::malformed(FMT, what, reason);
    if b.size() < 64 || !b.begins_with(b"\x7fELF") {
        return Err(bad("the ELF header is missing or truncated".into()));
    }
    let [class, data] = b.array_at::<2>(4).unwrap_or_default();
    if class != 2 || data != 1 {
        return Err(bad(format!(
            "only little-endian ELF64 is supported (class {class}, data {data})"
        )));
    }
    let e_type = b.u16_at(16).unwrap_or(0);
    let machine = b.u16_at(18).unwrap_or(0);
    if e_type != 4 {
        return Err(bad(format!("ELF type {e_type} is not a core file (4)")));
    }
    if machine != 62 {
        return Err(bad(format!("ELF machine {machine} is not x86-64 (62)")));
    }
    let phoff = b.u64_at(32).unwrap_or(0);
    let phentsize = b.u16_at(54).unwrap_or(0) as usize;
    let mut phnum = b.u16_at(56).unwrap_or(0) as usize;
    if phnum == 0xffff {
        // PN_XNUM: the real count is in sh_info of section header 0.
        let shoff = b.u64_at(40).unwrap_or(0) as usize;
        phnum = shoff
            .checked_add(44)
            .and_then(|o| b.u32_at(o))
            .ok_or_else(|| bad("PN_XNUM is set but section header 0 is missing".into()))?
            as usize;
    }
    if phentsize < 56 {
        return Err(bad(format!("program header size {phentsize} is below 56")));
    }
    if phnum > MAX_PHDRS {
        return Err(bad(format!(
            "{phnum} program headers is more than the limit of {MAX_PHDRS}"
        )));
    }
    let mut layout = Layout::default();
    let mut prstatus: Vec<Registers> = Vec::new();
    let mut qemu: Vec<Vec<u8>> = Vec::new();
    let mut msrs: Vec<Vec<u8>> = Vec::new();
    let mut notes_seen = 0usize;
    for i in 0..phnum {
        let off = (phoff as usize)
            .checked_add(i * phentsize)
            .filter(|o| o.checked_add(56).is_some_and(|e| e <= b.size()))
            .ok_or_else(|| {
                bad(format!(
                    "program header {i} lies outside the file (truncated?)"
                ))
            })?;
        let p_type = b.u32_at(off).unwrap_or(0);
        let p_offset = b.u64_at(off + 8).unwrap_or(0);
        let p_paddr = b.u64_at(off + 24).unwrap_or(0);
        let p_filesz = b.u64_at(off + 32).unwrap_or(0);
        match p_type {
            PT_LOAD => layout.regions.push(Region {
                gpa: p_paddr,
                len: p_filesz,
                file_offset: p_offset,
            }),
            PT_NOTE => {
                let seg = usize::try_from(p_offset)
                    .ok()
                    .zip(usize::try_from(p_filesz).ok())
                    .and_then(|(o, l)| b.bytes_at(o, l))
                    .ok_or_else(|| {
                        bad(format!(
                            "note segment (program header {i}) lies outside the file (truncated?)"
                        ))
                    })?;
                walk_notes(
                    &seg,
                    &mut notes_seen,
                    &mut |name, ntype, desc| match (name, ntype) {
                        (b"CORE", NT_PRSTATUS) if prstatus.len() < MAX_VCPUS => {
                            if let Some(r) = prstatus_regs(desc) {
                                prstatus.push(r);
                            }
                        }
                        (b"QEMU", 0) if qemu.len() < MAX_VCPUS => qemu.push(desc.to_vec()),
                        (XENVMI, NT_XENVMI_MSRS) if msrs.len() < MAX_VCPUS => {
                            msrs.push(desc.to_vec())
                        }
                        (XENVMI, NT_XENVMI_CAPTURE) => {
                            let d = &desc[..desc.len().min(MAX_CAPTURE_NOTE)];
                            layout.capture = Some(String::from_utf8_lossy(d).into_owned());
                        }
                        (b"VMCOREINFO", 0) => {
                            let d = &desc[..desc.len().min(MAX_VMCOREINFO)];
                            layout.vmcoreinfo = Some(crate::bytes::c_string(d));
                        }
                        _ => {}
                    },
                )
                .map_err(|r| bad(format!("note segment (program header {i}): {r}")))?;
            }
            _ => {}
        }
    }
    // QEMU writes, per vCPU, an NT_PRSTATUS note and a QEMU note, in vCPU order.
    let n = prstatus.len().max(qemu.len());
    for i in 0..n {
        let mut r = prstatus.get(i).copied().unwrap_or_default();
        if let Some(d) = qemu.get(i) {
            apply_qemu_cpustate(&mut r, d);
        }
        if let Some(d) = msrs.get(i) {
            apply_msrs(&mut r, d);
        }
        layout.vcpus.push(r);
    }
    Ok(layout)
}

/// Walk the notes of one `PT_NOTE` segment, calling `f(name, type, desc)` for each.
fn walk_notes<'a>(
    seg: &'a [u8],
    seen: &mut usize,
    f: &mut dyn FnMut(&'a [u8], u32, &'a [u8]),
) -> std::result::Result<(), String> {
    let mut off = 0usize;
    while off + 12 <= seg.len() {
        *seen += 1;
        if *seen > MAX_NOTES {
            return Err(format!("more than {MAX_NOTES} notes"));
        }
        let namesz = u32_at(seg, off).unwrap_or(0) as usize;
        let descsz = u32_at(seg, off + 4).unwrap_or(0) as usize;
        let ntype = u32_at(seg, off + 8).unwrap_or(0);
        let name_off = off + 12;
        let desc_off = align_up(
            name_off.checked_add(namesz).ok_or("name size overflows")?,
            4,
        )
        .ok_or("name size overflows")?;
        let name = slice_at(seg, name_off, namesz)
            .ok_or_else(|| format!("note at {off:#x} has a name past the segment end"))?;
        let desc = slice_at(seg, desc_off, descsz)
            .ok_or_else(|| format!("note at {off:#x} has a descriptor past the segment end"))?;
        // Names include their terminating NUL.
        let name = name.strip_suffix(b"\0").unwrap_or(name);
        f(name, ntype, desc);
        off = align_up(desc_off + descsz, 4).ok_or("descriptor size overflows")?;
    }
    Ok(())
}

fn prstatus_regs(desc: &[u8]) -> Option<Registers> {
    let regs = slice_at(desc, PRSTATUS_REG_OFF, PRSTATUS_REG_LEN)?;
    let g = |i: usize| u64_at(regs, i * 8).unwrap_or(0);
    // pr_reg order: r15 r14 r13 r12 rbp rbx r11 r10 r9 r8 rax rcx rdx rsi rdi orig_rax rip cs
    // eflags rsp ss fs_base gs_base ds es fs gs.
    Some(Registers {
        r15: g(0),
        r14: g(1),
        r13: g(2),
        r12: g(3),
        rbp: g(4),
        rbx: g(5),
        r11: g(6),
        r10: g(7),
        r9: g(8),
        r8: g(9),
        rax: g(10),
        rcx: g(11),
        rdx: g(12),
        rsi: g(13),
        rdi: g(14),
        rip: g(16),
        cs_sel: g(17) as u16,
        rflags: g(18),
        rsp: g(19),
        ss_sel: g(20) as u16,
        fs_base: g(21),
        gs_base: g(22),
        ..Registers::default()
    })
}

/// Overlay a `QEMUCPUState` (version 1; 440 bytes with `kernel_gs_base`).
fn apply_qemu_cpustate(r: &mut Registers, d: &[u8]) {
    let size = u32_at(d, 4).unwrap_or(0) as usize;
    let d = &d[..d.len().min(size.max(8))];
    let g = |off: usize| u64_at(d, off);
    let seg_base = |i: usize| g(QEMU_SEGS + i * 24 + 16);
    let names: [&mut u64; 16] = [
        &mut r.rax, &mut r.rbx, &mut r.rcx, &mut r.rdx, &mut r.rsi, &mut r.rdi, &mut r.rsp,
        &mut r.rbp, &mut r.r8, &mut r.r9, &mut r.r10, &mut r.r11, &mut r.r12, &mut r.r13,
        &mut r.r14, &mut r.r15,
    ];
    for (i, slot) in names.into_iter().enumerate() {
        if let Some(v) = g(8 + i * 8) {
            *slot = v;
        }
    }
    if let Some(v) = g(136) {
        r.rip = v;
    }
    if let Some(v) = g(144) {
        r.rflags = v;
    }
    // Segments: cs ds es fs gs ss ldt tr gdt idt, each {u32 sel, u32 limit, u32 flags, u32 pad, u64 base}.
    if let Some(sel) = u32_at(d, QEMU_SEGS) {
        r.cs_sel = sel as u16;
    }
    if let Some(sel) = u32_at(d, QEMU_SEGS + 5 * 24) {
        r.ss_sel = sel as u16;
    }
    r.cs_base = seg_base(0).unwrap_or(r.cs_base);
    r.ds_base = seg_base(1).unwrap_or(r.ds_base);
    r.es_base = seg_base(2).unwrap_or(r.es_base);
    r.fs_base = seg_base(3).unwrap_or(r.fs_base);
    r.gs_base = seg_base(4).unwrap_or(r.gs_base);
    r.ss_base = seg_base(5).unwrap_or(r.ss_base);
    r.gdtr_base = seg_base(8).unwrap_or(0);
    r.gdtr_limit = u32_at(d, QEMU_SEGS + 8 * 24 + 4).unwrap_or(0);
    r.idtr_base = seg_base(9).unwrap_or(0);
    r.idtr_limit = u32_at(d, QEMU_SEGS + 9 * 24 + 4).unwrap_or(0);
    r.cr0 = g(QEMU_CR).unwrap_or(0);
    r.cr2 = g(QEMU_CR + 16).unwrap_or(0);
    r.cr3 = g(QEMU_CR + 24).unwrap_or(0);
    r.cr4 = g(QEMU_CR + 32).unwrap_or(0);
    r.kernel_gs_base = g(QEMU_CR + 40).unwrap_or(0);
    // The note has no EFER. Long mode is active when paging and PAE are on and CS is a 64-bit
    // code segment (descriptor flag L, bit 21 of QEMU's cached flags).
    let cs_flags = u32_at(d, QEMU_SEGS + 8).unwrap_or(0);
    if Cr0::from_bits_retain(r.cr0).contains(Cr0::PG)
        && Cr4::from_bits_retain(r.cr4).contains(Cr4::PAE)
        && cs_flags & (1 << 21) != 0
    {
        r.efer |= EFER_LMA | (1 << 8);
    }
}

// ---------------------------------------------------------------------------------------------
// Writing (the inverse of the parser above).

fn put_u16(b: &mut [u8], off: usize, v: u16) {
    b[off..off + 2].copy_from_slice(&v.to_le_bytes());
}

fn put_u32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_u64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_le_bytes());
}

/// The ELF64 header of an x86-64 core file whose `phnum` program headers are at `phoff`. Past
/// `PN_XNUM - 1` headers the count goes to section header 0 at `shoff` (written with
/// [`xnum_section_header`]), as Linux's own core dumps do; `shoff` is ignored otherwise.
pub(crate) fn file_header(phoff: u64, phnum: usize, shoff: u64) -> [u8; EHDR_LEN] {
    let mut h = [0u8; EHDR_LEN];
    h[..4].copy_from_slice(b"\x7fELF");
    h[4] = 2; // ELFCLASS64
    h[5] = 1; // little endian
    h[6] = 1; // EV_CURRENT
    put_u16(&mut h, 16, 4); // ET_CORE
    put_u16(&mut h, 18, 62); // EM_X86_64
    put_u32(&mut h, 20, 1);
    put_u64(&mut h, 32, phoff);
    put_u16(&mut h, 52, EHDR_LEN as u16);
    put_u16(&mut h, 54, PHDR_LEN as u16);
    if phnum >= PN_XNUM {
        put_u16(&mut h, 56, PN_XNUM as u16);
        put_u64(&mut h, 40, shoff);
        put_u16(&mut h, 58, SHDR_LEN as u16);
        put_u16(&mut h, 60, 1);
    } else {
        put_u16(&mut h, 56, phnum as u16);
    }
    h
}

/// Section header 0 carrying the real program-header count (`PN_XNUM`).
pub(crate) fn xnum_section_header(phnum: usize) -> [u8; SHDR_LEN] {
    let mut h = [0u8; SHDR_LEN];
    put_u32(&mut h, 44, u32::try_from(phnum).unwrap_or(u32::MAX));
    h
}

/// One program header: `PT_LOAD` (`paddr` = guest-physical address) or `PT_NOTE`.
pub(crate) fn program_header(p_type: u32, offset: u64, paddr: u64, len: u64) -> [u8; PHDR_LEN] {
    let mut h = [0u8; PHDR_LEN];
    put_u32(&mut h, 0, p_type);
    if p_type == PT_LOAD {
        put_u32(&mut h, 4, 7); // PF_R | PF_W | PF_X, as QEMU writes
    }
    put_u64(&mut h, 8, offset);
    put_u64(&mut h, 24, paddr);
    put_u64(&mut h, 32, len);
    put_u64(&mut h, 40, len);
    h
}

/// One note (`namesz`, `descsz`, `type`, the name with its NUL, the descriptor, each padded to
/// 4 bytes), appended to `out`.
pub(crate) fn note(out: &mut Vec<u8>, name: &[u8], ntype: u32, desc: &[u8]) {
    let namesz = name.len() + 1;
    out.extend_from_slice(&(namesz as u32).to_le_bytes());
    out.extend_from_slice(&u32::try_from(desc.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(&ntype.to_le_bytes());
    out.extend_from_slice(name);
    out.push(0);
    out.resize(out.len().next_multiple_of(4), 0);
    out.extend_from_slice(desc);
    out.resize(out.len().next_multiple_of(4), 0);
}

/// The `CORE` `NT_PRSTATUS` note of vCPU `index` (QEMU numbers them from 1 in `pr_pid`).
pub(crate) fn prstatus_note(out: &mut Vec<u8>, index: u32, r: &Registers) {
    let mut d = [0u8; PRSTATUS_LEN];
    put_u32(&mut d, 32, index.saturating_add(1));
    let regs = [
        r.r15,
        r.r14,
        r.r13,
        r.r12,
        r.rbp,
        r.rbx,
        r.r11,
        r.r10,
        r.r9,
        r.r8,
        r.rax,
        r.rcx,
        r.rdx,
        r.rsi,
        r.rdi,
        u64::MAX, // orig_rax: not in a system call
        r.rip,
        u64::from(r.cs_sel),
        r.rflags,
        r.rsp,
        u64::from(r.ss_sel),
        r.fs_base,
        r.gs_base,
    ];
    for (i, v) in regs.into_iter().enumerate() {
        put_u64(&mut d, PRSTATUS_REG_OFF + i * 8, v);
    }
    note(out, b"CORE", NT_PRSTATUS, &d);
}

/// The `QEMU` note (`QEMUCPUState` version 1) of one vCPU: control registers, segment bases,
/// GDT/IDT and `kernel_gs_base`, which `NT_PRSTATUS` lacks.
pub(crate) fn qemu_note(out: &mut Vec<u8>, r: &Registers) {
    let mut d = [0u8; QEMU_CPUSTATE_LEN];
    put_u32(&mut d, 0, 1);
    put_u32(&mut d, 4, QEMU_CPUSTATE_LEN as u32);
    let gprs = [
        r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rsp, r.rbp, r.r8, r.r9, r.r10, r.r11, r.r12,
        r.r13, r.r14, r.r15, r.rip, r.rflags,
    ];
    for (i, v) in gprs.into_iter().enumerate() {
        put_u64(&mut d, 8 + i * 8, v);
    }
    // cs ds es fs gs ss ldt tr gdt idt: selector, limit, flags, pad, base.
    let seg = |d: &mut [u8], i: usize, sel: u16, limit: u32, flags: u32, base: u64| {
        let o = QEMU_SEGS + i * 24;
        put_u32(d, o, u32::from(sel));
        put_u32(d, o + 4, limit);
        put_u32(d, o + 8, flags);
        put_u64(d, o + 16, base);
    };
    // Long mode is told by CS's L flag (the note has no EFER).
    let cs_flags = if r.efer & EFER_LMA != 0 {
        CS_FLAGS_LONG
    } else {
        0
    };
    seg(&mut d, 0, r.cs_sel, u32::MAX, cs_flags, r.cs_base);
    seg(&mut d, 1, 0, u32::MAX, 0, r.ds_base);
    seg(&mut d, 2, 0, u32::MAX, 0, r.es_base);
    seg(&mut d, 3, 0, u32::MAX, 0, r.fs_base);
    seg(&mut d, 4, 0, u32::MAX, 0, r.gs_base);
    seg(&mut d, 5, r.ss_sel, u32::MAX, 0, r.ss_base);
    seg(&mut d, 8, 0, r.gdtr_limit, 0, r.gdtr_base);
    seg(&mut d, 9, 0, r.idtr_limit, 0, r.idtr_base);
    for (i, v) in [r.cr0, 0, r.cr2, r.cr3, r.cr4].into_iter().enumerate() {
        put_u64(&mut d, QEMU_CR + i * 8, v);
    }
    put_u64(&mut d, QEMU_CR + 40, r.kernel_gs_base);
    note(out, b"QEMU", 0, &d);
}

/// The MSRs `QEMUCPUState` lacks, from xenvmi's own note ([`NT_XENVMI_MSRS`]).
fn apply_msrs(r: &mut Registers, d: &[u8]) {
    let g = |i: usize| u64_at(d, i * 8);
    if let Some(v) = g(0) {
        r.efer = v;
    }
    r.msr_star = g(1).unwrap_or(r.msr_star);
    r.msr_lstar = g(2).unwrap_or(r.msr_lstar);
    r.msr_cstar = g(3).unwrap_or(r.msr_cstar);
    r.sysenter_cs = g(4).unwrap_or(r.sysenter_cs);
    r.sysenter_esp = g(5).unwrap_or(r.sysenter_esp);
    r.sysenter_eip = g(6).unwrap_or(r.sysenter_eip);
}

/// xenvmi's MSR note of one vCPU ([`NT_XENVMI_MSRS`]).
pub(crate) fn msr_note(out: &mut Vec<u8>, r: &Registers) {
    let mut d = [0u8; 7 * 8];
    let v = [
        r.efer,
        r.msr_star,
        r.msr_lstar,
        r.msr_cstar,
        r.sysenter_cs,
        r.sysenter_esp,
        r.sysenter_eip,
    ];
    for (i, v) in v.into_iter().enumerate() {
        put_u64(&mut d, i * 8, v);
    }
    note(out, XENVMI, NT_XENVMI_MSRS, &d);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(phnum: u16) -> Vec<u8> {
        let mut h = vec![0u8; 64];
        h[..4].copy_from_slice(b"\x7fELF");
        h[4] = 2;
        h[5] = 1;
        h[16..18].copy_from_slice(&4u16.to_le_bytes());
        h[18..20].copy_from_slice(&62u16.to_le_bytes());
        h[32..40].copy_from_slice(&64u64.to_le_bytes());
        h[54..56].copy_from_slice(&56u16.to_le_bytes());
        h[56..58].copy_from_slice(&phnum.to_le_bytes());
        h
    }

    #[test]
    fn truncated_and_foreign_headers_are_errors() {
        assert!(parse(b"\x7fELF", "t").is_err());
        let mut h = header(1);
        h[18] = 3; // i386
        assert!(parse(&h, "t").unwrap_err().to_string().contains("x86-64"));
        let h = header(5); // program headers past the end
        assert!(parse(&h, "t")
            .unwrap_err()
            .to_string()
            .contains("truncated"));
    }

    #[test]
    fn load_segments_become_regions() {
        let mut img = header(1);
        let mut ph = vec![0u8; 56];
        ph[..4].copy_from_slice(&PT_LOAD.to_le_bytes());
        ph[8..16].copy_from_slice(&120u64.to_le_bytes());
        ph[24..32].copy_from_slice(&0x1000u64.to_le_bytes());
        ph[32..40].copy_from_slice(&8u64.to_le_bytes());
        img.extend_from_slice(&ph);
        img.extend_from_slice(&[0xaa; 8]);
        let l = parse(&img, "t").unwrap();
        assert_eq!(
            l.regions,
            vec![Region {
                gpa: 0x1000,
                len: 8,
                file_offset: 120
            }]
        );
        assert!(l.vcpus.is_empty());
    }
}
