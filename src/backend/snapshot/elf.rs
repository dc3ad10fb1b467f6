//! ELF64 core files as written by QEMU's `dump-guest-memory` (and kdump).
//!
//! Memory comes from `PT_LOAD` segments (`p_paddr` = guest-physical address, so holes and RAM
//! above 4 GiB are just separate segments). Registers come from the per-vCPU notes: `CORE`
//! `NT_PRSTATUS` (general-purpose registers, segment selectors, FS/GS base) and `QEMU` notes
//! (`QEMUCPUState`: control registers, segment bases, GDT/IDT, `kernel_gs_base`).

use super::storage::Source;
use super::{Layout, Region};
use crate::bytes::{align_up, slice_at, u32_at, u64_at};
use crate::error::{Error, Result};
use crate::regs::{Cr0, Cr4, Registers, EFER_LMA};

const FMT: &str = "QEMU ELF core";
const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;
const NT_PRSTATUS: u32 = 1;
/// Bound on program headers (QEMU writes one per RAM block plus one note segment).
const MAX_PHDRS: usize = 1 << 16;
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
    let seg_base = |i: usize| g(152 + i * 24 + 16);
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
    if let Some(sel) = u32_at(d, 152) {
        r.cs_sel = sel as u16;
    }
    if let Some(sel) = u32_at(d, 152 + 5 * 24) {
        r.ss_sel = sel as u16;
    }
    r.cs_base = seg_base(0).unwrap_or(r.cs_base);
    r.ds_base = seg_base(1).unwrap_or(r.ds_base);
    r.es_base = seg_base(2).unwrap_or(r.es_base);
    r.fs_base = seg_base(3).unwrap_or(r.fs_base);
    r.gs_base = seg_base(4).unwrap_or(r.gs_base);
    r.ss_base = seg_base(5).unwrap_or(r.ss_base);
    r.gdtr_base = seg_base(8).unwrap_or(0);
    r.gdtr_limit = u32_at(d, 152 + 8 * 24 + 4).unwrap_or(0);
    r.idtr_base = seg_base(9).unwrap_or(0);
    r.idtr_limit = u32_at(d, 152 + 9 * 24 + 4).unwrap_or(0);
    // cr[0..5] at 392.
    r.cr0 = g(392).unwrap_or(0);
    r.cr2 = g(408).unwrap_or(0);
    r.cr3 = g(416).unwrap_or(0);
    r.cr4 = g(424).unwrap_or(0);
    r.kernel_gs_base = g(432).unwrap_or(0);
    // The note has no EFER. Long mode is active when paging and PAE are on and CS is a 64-bit
    // code segment (descriptor flag L, bit 21 of QEMU's cached flags).
    let cs_flags = u32_at(d, 152 + 8).unwrap_or(0);
    if Cr0::from_bits_retain(r.cr0).contains(Cr0::PG)
        && Cr4::from_bits_retain(r.cr4).contains(Cr4::PAE)
        && cs_flags & (1 << 21) != 0
    {
        r.efer |= EFER_LMA | (1 << 8);
    }
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
