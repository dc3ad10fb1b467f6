//! PE parsing: the input is a PE file, parsed twice, once from the file layout and once as an
//! image mapped in guest memory (the input's pages placed at a kernel address behind 4-level
//! page tables, pages past its end unmapped). After parsing, the CodeView lookup and the export
//! iterator run to their end.
//!
//! Shared by `fuzz/fuzz_targets/pe.rs` and `tests/fuzz_regressions.rs`, which replays
//! the seeds and every kept failing input in `cargo test`.
use xenvmi::backend::snapshot::{Format, Snapshot};
use xenvmi::mem::{AddressSpace, GuestMemory, PagingMode};
use xenvmi::os::pe::{FileImage, MappedImage, Pe, PeSource, MAX_EXPORTS, MAX_SECTIONS};
use xenvmi::Gva;

const BASE: u64 = 0xffff_f800_0000_0000;

fn drive<S: PeSource>(pe: &Pe<S>) {
    assert!(pe.headers().sections.len() <= MAX_SECTIONS);
    let _ = pe.codeview();
    let _ = pe.export_dll_name();
    if let Ok(exports) = pe.exports() {
        let mut n = 0u32;
        for e in exports {
            let _ = e;
            n += 1;
        }
        assert!(n <= MAX_EXPORTS);
    }
    let _ = pe.export_rva("PsLoadedModuleList");
}

/// Physical memory: the input's pages at 0.., then a PML4, PDPT, PD and PT that map
/// BASE + i * 4K to page i (at most 512 pages).
fn mapped(data: &[u8]) -> Vec<u8> {
    let pages = data.len().div_ceil(4096).clamp(1, 512);
    let mut mem = vec![0u8; (pages + 4) * 4096];
    mem[..data.len().min(pages * 4096)].copy_from_slice(&data[..data.len().min(pages * 4096)]);
    let t = (pages * 4096) as u64;
    let set = |m: &mut Vec<u8>, at: u64, v: u64| {
        m[at as usize..at as usize + 8].copy_from_slice(&v.to_le_bytes())
    };
    let idx = |shift: u32| (BASE >> shift) & 511;
    set(&mut mem, t + idx(39) * 8, (t + 0x1000) | 3);
    set(&mut mem, t + 0x1000 + idx(30) * 8, (t + 0x2000) | 3);
    set(&mut mem, t + 0x2000 + idx(21) * 8, (t + 0x3000) | 3);
    for i in 0..pages as u64 {
        set(&mut mem, t + 0x3000 + i * 8, (i * 4096) | 3);
    }
    mem
}

/// Run one input (the fuzz target and `tests/fuzz_regressions.rs` both call this).
pub fn run(data: &[u8]) {
    if let Ok(pe) = Pe::parse(FileImage::new(data, "fuzz")) {
        drive(&pe);
    }
    let mem = mapped(data);
    let root = (mem.len() - 4 * 4096) as u64;
    let Ok(snap) = Snapshot::from_bytes(mem, Some(Format::Raw)) else {
        return;
    };
    let mem = GuestMemory::new(snap);
    let space = AddressSpace::from_cr3(root, PagingMode::Level4);
    if let Ok(pe) = Pe::parse(MappedImage::new(&mem, space, Gva(BASE), "fuzz")) {
        drive(&pe);
    }
}
