//! Windows discovery and walks over an arbitrary guest image with an arbitrary profile layout.
//!
//! Input layout (little-endian), so that seeds can be real-layout guests from the test-suite's
//! builder (`tests/windows_guests.rs` writes them):
//! - `u64` kernel page-table root, `u64` kernel base, `u8` mode (bit 0: full discovery with a
//!   register hint, else a known base; bit 1: 5-level paging);
//! - 19 × `u16`: the structure offsets, in `xenvmi::os::windows::FIELDS` order (0xffff =
//!   field absent);
//! - 5 × `u32`: RVAs of the symbols in `xenvmi::os::windows::SYMBOLS` order;
//! - the rest: physical memory.
//!
//! Every iterator (processes, kernel modules, each process's modules, the kernel's exports)
//! is driven to its end, which must come.
//!
//! Shared by `fuzz/fuzz_targets/windows_walk.rs` and `tests/fuzz_regressions.rs`, which replays
//! the seeds and every kept failing input in `cargo test`.
use xenvmi::backend::snapshot::{Format, Snapshot};
use xenvmi::mem::{AddressSpace, GuestMemory, PagingMode};
use xenvmi::os::profile::{Field, Profile, SymbolTableBuilder, TypeSource};
use xenvmi::os::windows::{
    Hints, Windows, WindowsProfile, FIELDS, MAX_MODULES, MAX_PROCESSES, SYMBOLS,
};
use xenvmi::{Gva, Registers};

const HEADER: usize = 8 + 8 + 1 + 2 * 19 + 4 * 5;

struct Types([u16; 19]);

impl TypeSource for Types {
    fn source_name(&self) -> &str {
        "fuzz types"
    }
    fn struct_size(&self, _: &str) -> Option<u64> {
        Some(0x1000)
    }
    fn field(&self, t: &str, f: &str) -> Option<Field> {
        let i = FIELDS.iter().position(|&(a, b)| a == t && b == f)?;
        (self.0[i] != 0xffff).then_some(Field {
            offset: self.0[i] as u64,
            size: None,
        })
    }
}

/// Run one input (the fuzz target and `tests/fuzz_regressions.rs` both call this).
pub fn run(data: &[u8]) {
    if data.len() < HEADER + 64 {
        return;
    }
    let u64_at = |o: usize| u64::from_le_bytes(data[o..o + 8].try_into().unwrap());
    let u16_at = |o: usize| u16::from_le_bytes(data[o..o + 2].try_into().unwrap());
    let u32_at = |o: usize| u32::from_le_bytes(data[o..o + 4].try_into().unwrap());
    let root = u64_at(0);
    let base = Gva(u64_at(8));
    let mode = data[16];
    let mut offsets = [0u16; 19];
    for (i, o) in offsets.iter_mut().enumerate() {
        *o = u16_at(17 + 2 * i);
    }
    let mut symbols = SymbolTableBuilder::new("fuzz symbols");
    let mut rvas = [0u64; 5];
    for (i, n) in SYMBOLS.iter().enumerate() {
        rvas[i] = u32_at(17 + 38 + 4 * i) as u64;
        symbols.push(n, rvas[i], b'D');
    }
    let profile = Profile {
        types: Box::new(Types(offsets)),
        symbols: symbols.build(),
    };
    let Ok(snap) = Snapshot::from_bytes(data[HEADER..].to_vec(), Some(Format::Raw)) else {
        return;
    };
    let mem = GuestMemory::new(snap);
    let paging = if mode & 2 != 0 {
        PagingMode::Level5
    } else {
        PagingMode::Level4
    };
    let space = AddressSpace::from_cr3(root, paging);
    let windows = if mode & 1 != 0 {
        let regs = [Registers {
            cr0: 0x8000_0011,
            cr3: root,
            cr4: if mode & 2 != 0 { 0x1020 } else { 0x20 },
            msr_lstar: base.0.wrapping_add(rvas[4]),
            ..Registers::default()
        }];
        Windows::discover_with(
            &mem,
            &regs,
            WindowsProfile::Loaded(profile),
            &Hints::default(),
        )
    } else {
        Windows::with_kernel(&mem, space, base, profile)
    };
    let Ok(w) = windows else {
        return;
    };
    let procs: Vec<_> = w.processes(&mem).filter_map(Result::ok).collect();
    assert!(procs.len() <= MAX_PROCESSES);
    assert!(w.modules(&mem).count() <= MAX_MODULES + 1);
    for p in procs.iter().take(16) {
        assert!(w.process_modules(&mem, p).count() <= MAX_MODULES + 1);
        let _ = w.owner_of_cr3(&procs, p.dtb.map(|d| d.0).unwrap_or(0));
    }
    let _ = w.process_for_cr3(&mem, root);
    if let Ok(pe) = w.kernel_image(&mem) {
        let _ = pe.codeview();
        if let Ok(e) = pe.exports() {
            let _ = e.count();
        }
    }
}
