//! Windows driver symbols: the export tables of the loaded drivers, read from guest memory,
//! resolve addresses as `driver!Export+off` (or `driver+off`), and `driver!Export` names to
//! addresses, through `Windows::driver_symbols` and the OS-neutral `GuestOs` calls. Guests
//! are synthetic, laid out by the real ntoskrnl ISFs (tests/support/windows_guest.rs), their
//! drivers' export tables written from the spec; every expected value comes from the spec,
//! or, for real PE files (Wine's hal.dll and ntoskrnl.exe loaded as drivers), from binutils'
//! `objdump -p`.

mod support;

use support::windows_guest::*;
use xenvmi::mem::GuestMemory;
use xenvmi::os::windows::{DriverSymbols, Windows, WindowsProfile};
use xenvmi::os::{discover, DiscoverOptions, GuestOs};
use xenvmi::Gva;

/// The name without its extension, as `driver!Export` spells the driver.
fn short(name: &str) -> &str {
    name.rsplit_once('.').map(|(s, _)| s).unwrap_or(name)
}

/// The guest, its memory and its Windows kernel.
fn guest(build: u32) -> (WinGuest, GuestMemory<xenvmi::backend::snapshot::Snapshot>) {
    let file = PROFILES.iter().find(|(_, b)| *b == build).unwrap().0;
    let g = WinGuest::build(&load_isf(file), WinSpec::with_driver_exports(build));
    let mem = GuestMemory::new(
        xenvmi::backend::snapshot::Snapshot::from_bytes(g.mem.clone(), None).unwrap(),
    );
    (g, mem)
}

fn windows(g: &WinGuest, mem: &GuestMemory<xenvmi::backend::snapshot::Snapshot>) -> Windows {
    Windows::discover(mem, &g.registers(), WindowsProfile::Directory(isf_dir())).unwrap()
}

/// Every address the spec gives a name resolves to it, every name to its address.
fn check_against_spec(
    spec: &WinSpec,
    at: impl Fn(u64) -> Option<String>,
    by: impl Fn(&str) -> Option<Gva>,
) {
    for d in spec.drivers.iter().filter(|d| d.name != "ntoskrnl.exe") {
        let s = short(&d.name);
        let mut exports: Vec<(u32, &str)> = d
            .exports
            .iter()
            .flatten()
            .map(|(n, r)| (*r, n.as_str()))
            .collect();
        exports.sort();
        // Below the first export (the header): driver+off from the base.
        let first = exports.first().map(|e| e.0).unwrap_or(d.size);
        for off in [0u32, 0x10, first - 1] {
            assert_eq!(
                at(d.base + u64::from(off)),
                Some(format!("{s}+{off:#x}")),
                "{}",
                d.name
            );
        }
        for (i, (rva, name)) in exports.iter().enumerate() {
            let end = exports.get(i + 1).map(|e| e.0).unwrap_or(d.size);
            for off in [0, 1, end - rva - 1] {
                assert_eq!(
                    at(d.base + u64::from(rva + off)),
                    Some(format!("{s}!{name}+{off:#x}")),
                    "{}",
                    d.name
                );
            }
            assert_eq!(
                by(&format!("{s}!{name}")),
                Some(Gva(d.base + u64::from(*rva)))
            );
        }
    }
}

#[test]
fn driver_exports_resolve_both_ways_on_every_profile() {
    for (_, build) in PROFILES {
        let (g, mem) = guest(build);
        let w = windows(&g, &mem);
        let syms = DriverSymbols::read(&w, &mem);
        let names: Vec<&str> = syms.images().iter().map(|i| i.name.as_str()).collect();
        let mut want: Vec<&ImageSpec> = g
            .spec
            .drivers
            .iter()
            .filter(|d| d.name != "ntoskrnl.exe")
            .collect();
        want.sort_by_key(|d| d.base);
        assert_eq!(
            names,
            want.iter().map(|d| d.name.as_str()).collect::<Vec<_>>()
        );
        let total: usize = g
            .spec
            .drivers
            .iter()
            .flat_map(|d| d.exports.iter().flatten())
            .count();
        assert_eq!(syms.export_count(), total);
        check_against_spec(
            &g.spec,
            |a| syms.symbol_at(Gva(a)).map(|s| s.to_string()),
            |n| syms.symbol(n),
        );
        // xenvbd.sys has no image in memory: named as a problem, still resolved by range.
        assert_eq!(syms.problems().len(), 1, "{:?}", syms.problems());
        assert!(
            syms.problems()[0].starts_with("xenvbd.sys at "),
            "{:?}",
            syms.problems()
        );
        // Past every image's end: nothing.
        let last = want.last().unwrap();
        assert!(syms
            .symbol_at(Gva(last.base + u64::from(last.size)))
            .is_none());
    }
}

#[test]
fn guest_os_symbols_cover_drivers_once_read_and_keep_them() {
    let (g, mem) = guest(19041);
    let regs = g.registers();
    let options = DiscoverOptions {
        windows: Some(WindowsProfile::Directory(isf_dir())),
        ..DiscoverOptions::default()
    };
    let guest = discover(&mem, &regs, options).unwrap();
    let acpi = g
        .spec
        .drivers
        .iter()
        .find(|d| d.name == "ACPI.sys")
        .unwrap();
    let addr = Gva(acpi.base + 0x8000 + 0x24);
    // Before: the profile's table only, which does not name a driver's code.
    let before = guest.symbol_at(addr).map(|s| s.to_string());
    assert!(
        before.as_deref().is_none_or(|s| !s.contains("ACPI")),
        "{before:?}"
    );
    assert_eq!(guest.symbol("ACPI!AcpiGetTable"), None);
    let w = guest.as_windows().unwrap();
    let read = w.driver_symbols(&mem) as *const DriverSymbols;
    // Cached: the second call is the same table, read once.
    assert!(std::ptr::eq(read, w.driver_symbols(&mem)));
    assert_eq!(
        guest.symbol_at(addr).map(|s| s.to_string()).as_deref(),
        Some("ACPI!AcpiGetTable+0x24")
    );
    assert_eq!(
        guest.symbol("ACPI!AcpiGetTable"),
        Some(Gva(acpi.base + 0x8000))
    );
    check_against_spec(
        &g.spec,
        |a| guest.symbol_at(Gva(a)).map(|s| s.to_string()),
        |n| guest.symbol(n),
    );
    // The kernel's own symbols are still the profile's.
    let base = g.spec.kernel_base;
    let head = base + g.rva["PsActiveProcessHead"];
    assert_eq!(guest.symbol("PsActiveProcessHead"), Some(Gva(head)));
    let s = guest.symbol_at(Gva(head)).unwrap();
    assert_eq!((s.name, s.offset), ("PsActiveProcessHead", 0));
}

/// Export-directory fields (offsets into `IMAGE_EXPORT_DIRECTORY`).
const NUMBER_OF_FUNCTIONS: u64 = 20;
const ADDRESS_OF_FUNCTIONS: u64 = 28;

#[test]
fn corrupt_export_tables_are_problems_not_panics() {
    let file = PROFILES.iter().find(|(_, b)| *b == 22000).unwrap().0;
    let mut g = WinGuest::build(&load_isf(file), WinSpec::with_driver_exports(22000));
    let spec = g.spec.clone();
    let d = |n: &str| spec.drivers.iter().find(|d| d.name == n).unwrap().clone();
    let (hal, acpi) = (d("hal.dll"), d("ACPI.sys"));
    let dir = WinGuest::EXPORT_DIR_RVA;
    // hal.dll claims 4 billion functions; ACPI.sys's address table lies far outside memory.
    g.kwrite(
        hal.base + dir + NUMBER_OF_FUNCTIONS,
        &u32::MAX.to_le_bytes(),
    );
    g.kwrite(
        acpi.base + dir + ADDRESS_OF_FUNCTIONS,
        &0x7fff_0000u32.to_le_bytes(),
    );
    let mem = GuestMemory::new(
        xenvmi::backend::snapshot::Snapshot::from_bytes(g.mem.clone(), None).unwrap(),
    );
    let w = windows(&g, &mem);
    let syms = DriverSymbols::read(&w, &mem);
    let problems = syms.problems().join("\n");
    assert!(
        problems.contains("hal.dll at ") && problems.contains("claims 4294967295 functions"),
        "{problems}"
    );
    assert!(problems.contains("ACPI.sys at "), "{problems}");
    // Both still resolve by range, with no export.
    assert_eq!(
        syms.symbol_at(Gva(hal.base + 0x3100))
            .map(|s| s.to_string())
            .as_deref(),
        Some("hal+0x3100")
    );
    assert_eq!(
        syms.symbol_at(Gva(acpi.base + 0x8000))
            .map(|s| s.to_string())
            .as_deref(),
        Some("ACPI+0x8000")
    );
    assert_eq!(syms.symbol("hal!HalGetBusData"), None);
    // kd.dll has a header and no exports.
    let kd = d("kd.dll");
    assert_eq!(
        syms.symbol_at(Gva(kd.base + 0x2000))
            .map(|s| s.to_string())
            .as_deref(),
        Some("kd+0x2000")
    );
}

#[test]
fn real_pe_files_as_drivers_resolve_as_objdump_reads_their_exports() {
    use support::wine::{objdump_exports, wine_file};
    let (file, build) = PROFILES[1];
    let mut spec = WinSpec::typical(build);
    // Wine's hal.dll and ntoskrnl.exe (as "wntos.sys": not the kernel) in place of two drivers.
    let files = [("hal.dll", "hal.dll"), ("ntoskrnl.exe", "wntos.sys")];
    let mut placed = Vec::new();
    for (i, (f, as_name)) in files.iter().enumerate() {
        let path = wine_file(f);
        let (want, _, size, _) = objdump_exports(&path);
        let d = &mut spec.drivers[1 + i];
        d.name = (*as_name).into();
        d.size = size;
        placed.push((path, d.base, want, short(as_name).to_owned()));
    }
    let mut g = WinGuest::build(&load_isf(file), spec);
    for (path, base, _, _) in &placed {
        g.map_pe_file(*base, &std::fs::read(path).unwrap());
    }
    let mem = GuestMemory::new(
        xenvmi::backend::snapshot::Snapshot::from_bytes(g.mem.clone(), None).unwrap(),
    );
    let w = windows(&g, &mem);
    let syms = DriverSymbols::read(&w, &mem);
    for (path, base, want, s) in &placed {
        // Named exports that are code of this image (objdump: an RVA, no forwarder).
        let code: Vec<(u32, &Vec<String>)> = want
            .values()
            .filter(|e| e.2.is_none() && !e.3.is_empty())
            .map(|e| (e.1, &e.3))
            .collect();
        assert!(
            code.len() > 50,
            "{}: {} exports",
            path.display(),
            code.len()
        );
        let rvas: std::collections::BTreeSet<u32> = code.iter().map(|e| e.0).collect();
        for (rva, names) in &code {
            let at = syms.symbol_at(Gva(base + u64::from(*rva))).unwrap();
            let all_here: Vec<String> = code
                .iter()
                .filter(|e| e.0 == *rva)
                .flat_map(|e| e.1.iter().map(|n| format!("{s}!{n}")))
                .collect();
            assert!(
                all_here.iter().any(|n| n == at.name),
                "{} at {rva:#x}: {}",
                path.display(),
                at.name
            );
            assert_eq!(at.offset, 0);
            if !rvas.contains(&(rva + 1)) {
                let next = syms.symbol_at(Gva(base + u64::from(*rva) + 1)).unwrap();
                assert_eq!((next.name, next.offset), (at.name, 1));
            }
            if let [only] = names.as_slice() {
                assert_eq!(
                    syms.symbol(&format!("{s}!{only}")),
                    Some(Gva(base + u64::from(*rva)))
                );
            }
        }
        // Below the first export: the image by its base.
        let first = *rvas.iter().next().unwrap();
        assert_eq!(
            syms.symbol_at(Gva(*base + u64::from(first) - 1))
                .map(|x| x.to_string()),
            Some(format!("{s}+{:#x}", first - 1))
        );
    }
}
