//! Windows discovery and walks over an arbitrary guest image with an arbitrary profile layout.
//!
//! Input layout (little-endian), so that seeds can be real-layout guests from the test-suite's
//! builder (`tests/windows_guests.rs` writes them):
//! - `u64` kernel page-table root, `u64` kernel base, `u8` mode (bit 0: full discovery with a
//!   register hint, else a known base; bit 1: 5-level paging);
//! - 19 × `u16`: the structure offsets, in `xenvmi::os::windows::FIELDS` order (0xffff =
//!   field absent);
//! - 5 × `u32`: RVAs of the symbols in `xenvmi::os::windows::SYMBOLS` order;
//! - when mode bit 2 is set (the per-processor walk): 9 × `u16` offsets in
//!   `xenvmi::os::windows::CPU_FIELDS` order (0xffff = absent), then 2 × `u32` RVAs in
//!   `CPU_SYMBOLS` order; inputs without the bit keep the older layout;
//! - mode bit 3: no registers and no hints (a raw image or a LiME capture): the page-table
//!   root is looked for in memory alone (`xenvmi::os::windows::dtb`: low stub,
//!   self-referencing entry, System process with the input's `_EPROCESS` layout), and those
//!   three searches are also run on their own and their bounds checked; the header's root is
//!   then used only as a CR3 to resolve;
//! - the rest: physical memory.
//!
//! Every iterator (processes, kernel modules, each process's modules, the kernel's exports)
//! is driven to its end, which must come. The drivers' export tables are read
//! (`Windows::driver_symbols`) and looked up at each driver's edges and an address from the
//! input (the first word of memory). With mode bit 2, every processor is read from
//! `KiProcessorBlock` (at most `MAX_PROCESSORS`), cross-checked with the register hint, and
//! the crashing processor looked for with a context taken from the input.
//!
//! Shared by `fuzz/fuzz_targets/windows_walk.rs` and `tests/fuzz_regressions.rs`, which replays
//! the seeds and every kept failing input in `cargo test`.
use xenvmi::backend::snapshot::{Format, Snapshot};
use xenvmi::mem::{AddressSpace, GuestMemory, PagingMode};
use xenvmi::os::profile::{Profile, SymbolTableBuilder, TypeSource};
use xenvmi::os::windows::driver_symbols::{
    MAX_DRIVER_EXPORTS, MAX_SYMBOL_DRIVERS, MAX_TOTAL_EXPORTS,
};
use xenvmi::os::windows::{
    crashing_processor, dtb, Hints, Offsets, Windows, WindowsProfile, CPU_FIELDS, CPU_SYMBOLS,
    FIELDS, MAX_MODULES, MAX_PROCESSES, MAX_PROCESSORS, SYMBOLS,
};
use xenvmi::os::GuestOs;
use xenvmi::{Gva, Registers};

const HEADER: usize = 8 + 8 + 1 + 2 * 19 + 4 * 5;
/// What mode bit 2 adds to the header.
const CPU_HEADER: usize = 2 * 9 + 4 * 2;

// The including crate declares `offset_types` (`fuzz/offset_types.rs`) once for every harness.
use super::offset_types::Types;

/// Run one input with mode bit 3 forced (`fuzz/fuzz_targets/windows_dtb.rs`).
// (This file is a module of both targets; windows_walk does not call this one.)
#[allow(dead_code)]
pub fn run_registerless(data: &[u8]) {
    let mut d = data.to_vec();
    if let Some(mode) = d.get_mut(16) {
        *mode |= 8;
    }
    run(&d);
}

/// The register-less searches on their own: each stays within its bounds.
fn registerless_searches(mem: &GuestMemory<Snapshot>, types: &dyn TypeSource) {
    use xenvmi::backend::PhysicalMemory;
    let backend = mem.backend();
    assert!(dtb::low_stub_roots(backend).len() <= dtb::MAX_ROOT_CANDIDATES);
    let mut scan = dtb::SelfRefScan::new();
    let mut n = 0;
    while let Some(c) = scan.next_candidate(backend) {
        n += 1;
        assert!(
            matches!(c.source, dtb::RootSource::SelfRef { index } if (256..=510).contains(&index))
        );
    }
    assert!(n <= dtb::MAX_ROOT_CANDIDATES);
    assert!(scan.pages_read <= dtb::MAX_SELF_REF_PAGES);
    assert!(scan.pages_read <= backend.max_gfn().0 + 1);
    if let Ok(o) = Offsets::from_types(types) {
        let (c, pages) = dtb::system_process_roots(backend, &o);
        assert!(c.len() <= dtb::MAX_ROOT_CANDIDATES);
        assert!(pages <= dtb::MAX_SYSTEM_SCAN_PAGES);
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
    let cpu_walk = mode & 4 != 0;
    let header = if cpu_walk {
        HEADER + CPU_HEADER
    } else {
        HEADER
    };
    if data.len() < header + 64 {
        return;
    }
    let mut offsets: Vec<((&'static str, &'static str), u16)> = FIELDS
        .iter()
        .enumerate()
        .map(|(i, &f)| (f, u16_at(17 + 2 * i)))
        .collect();
    let mut symbols = SymbolTableBuilder::new("fuzz symbols");
    let mut rvas = [0u64; 5];
    for (i, n) in SYMBOLS.iter().enumerate() {
        rvas[i] = u32_at(17 + 38 + 4 * i) as u64;
        symbols.push(n, rvas[i], b'D');
    }
    if cpu_walk {
        for (i, &f) in CPU_FIELDS.iter().enumerate() {
            offsets.push((f, u16_at(HEADER + 2 * i)));
        }
        for (i, n) in CPU_SYMBOLS.iter().enumerate() {
            symbols.push(n, u32_at(HEADER + 18 + 4 * i) as u64, b'D');
        }
    }
    let profile = Profile {
        types: Box::new(Types(offsets)),
        symbols: symbols.build(),
    };
    let Ok(snap) = Snapshot::from_bytes(data[header..].to_vec(), Some(Format::Raw)) else {
        return;
    };
    let mem = GuestMemory::new(snap);
    let paging = if mode & 2 != 0 {
        PagingMode::Level5
    } else {
        PagingMode::Level4
    };
    let space = AddressSpace::from_cr3(root, paging);
    let regs = [Registers {
        cr0: 0x8000_0011,
        cr3: root,
        cr4: if mode & 2 != 0 { 0x1020 } else { 0x20 },
        msr_lstar: base.0.wrapping_add(rvas[4]),
        ..Registers::default()
    }];
    let registerless = mode & 8 != 0;
    if registerless {
        registerless_searches(&mem, profile.types.as_ref());
    }
    let windows = if registerless {
        Windows::discover(&mem, &[], WindowsProfile::Loaded(profile))
    } else if mode & 1 != 0 {
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
    if cpu_walk {
        if let Ok(mut cpus) = w.processors(&mem) {
            assert!(cpus.cpus.len() <= MAX_PROCESSORS as usize);
            assert!(cpus.cpus.len() as u64 <= u64::from(cpus.declared));
            cpus.cross_check(&regs);
            let _ = cpus.disagreements().count();
            // A context from the input: the first two words of memory as rip and rsp.
            let ctx = Registers {
                rip: u64_at(header),
                rsp: u64_at(header + 8),
                ..regs[0]
            };
            let _ = crashing_processor(&cpus, &ctx).index();
        }
    }
    if let Ok(pe) = w.kernel_image(&mem) {
        let _ = pe.codeview();
        if let Ok(e) = pe.exports() {
            let _ = e.count();
        }
    }
    driver_symbols(&w, &mem, u64_at(header));
}

/// The drivers' exports: read within their caps; an address at the start, middle and end of
/// each image resolves inside that image (`driver!Export+off` or `driver+off`), the same
/// through `GuestOs::symbol_at`, and every name found resolves back.
fn driver_symbols(w: &Windows, mem: &GuestMemory<Snapshot>, probe: u64) {
    let syms = w.driver_symbols(mem);
    assert!(std::ptr::eq(syms, w.driver_symbols(mem)));
    assert!(syms.images().len() <= MAX_SYMBOL_DRIVERS);
    assert!(syms.export_count() <= MAX_TOTAL_EXPORTS);
    assert!(syms.problems().len() <= 4 * MAX_SYMBOL_DRIVERS + 4);
    for img in syms.images().iter().take(64) {
        assert!(img.exports <= MAX_DRIVER_EXPORTS);
        assert!(img.size > 0);
        let Some(last) = img.base.0.checked_add(img.size - 1) else {
            continue;
        };
        for a in [img.base.0, img.base.0 + (img.size - 1) / 2, last] {
            let s = syms.symbol_at(Gva(a)).expect("an address inside a driver");
            assert!(s.addr >= img.base.0 && s.addr <= a && s.offset == a - s.addr);
            assert!(s.name.starts_with(img.short.as_str()));
            let via_trait = GuestOs::symbol_at(w, Gva(a)).map(|x| x.to_string());
            assert_eq!(via_trait, Some(s.to_string()));
            if s.name.contains('!') {
                assert!(syms.symbol(s.name).is_some());
            }
        }
    }
    let _ = syms.symbol_at(Gva(probe));
    let _ = GuestOs::symbol_at(w, Gva(probe));
}
