//! Page-table walks over an arbitrary guest image: translate, cached translate, enumerate
//! mappings and read across pages, in 4- and 5-level mode, with arbitrary roots.
#![no_main]

use libfuzzer_sys::{arbitrary, fuzz_target};
use xenvmi::backend::snapshot::{Format, Snapshot};
use xenvmi::mem::{mapped_ranges, AddressSpace, GuestMemory, PagingMode};
use xenvmi::{Gpa, Gva};

#[derive(arbitrary::Arbitrary, Debug)]
struct Input {
    root: u16,
    five_level: bool,
    vas: Vec<u64>,
    range: (u64, u64),
    image: Vec<u8>,
}

fuzz_target!(|inp: Input| {
    if inp.image.is_empty() {
        return;
    }
    let Ok(snap) = Snapshot::from_bytes(inp.image, Some(Format::Raw)) else {
        return;
    };
    let mem = GuestMemory::new(snap);
    let mode = if inp.five_level {
        PagingMode::Level5
    } else {
        PagingMode::Level4
    };
    let space = AddressSpace {
        root: Gpa((inp.root as u64) << 12),
        mode,
    };
    for &va in inp.vas.iter().take(64) {
        let _ = mem.walk(space, Gva(va));
        let _ = mem.translate(space, Gva(va));
        let _ = mem.translate(space, Gva(va)); // cache hit path
        let mut buf = [0u8; 300];
        let _ = mem.read(space, Gva(va), &mut buf);
        let _ = mem.read_partial(space, Gva(va), &mut buf);
        let _ = mem.read_cstring(space, Gva(va), 5000);
        let _ = mem.read_u64(space, Gva(va));
    }
    mem.flush_translations();
    let (a, b) = inp.range;
    let mut n = 0usize;
    mapped_ranges(
        mem.backend(),
        space.root,
        mode,
        Gva(a.min(b)),
        Gva(a.max(b)),
        10_000,
        &mut |_| {
            n += 1;
            true
        },
    );
    assert!(n <= 10_000);
});
