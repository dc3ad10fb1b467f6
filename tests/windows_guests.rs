//! Windows discovery and walks on synthetic guests laid out by the three real ntoskrnl ISF
//! profiles (Windows 7 SP1, 10 19041, 11 22000). See `tests/support/windows_guest.rs` for what
//! is synthetic: the memory image is; every offset and RVA in it is the real profile's.
//! Expected values come from the spec each guest was built from.

mod support;

use support::windows_guest::*;
use xenvmi::mem::GuestMemory;
use xenvmi::os::windows::{FoundBy, Hints, Windows, WindowsProfile};
use xenvmi::os::Process;
use xenvmi::{Error, Gpa, Gva, Registers};

struct Built {
    spec: WinSpec,
    roots: Vec<(u64, Option<u64>)>,
    eprocess: Vec<u64>,
    kernel_pml4: u64,
    regs: Vec<Registers>,
    head: u64,
    mem: GuestMemory<xenvmi::backend::snapshot::Snapshot>,
}

fn build(file: &str, spec: WinSpec) -> Built {
    let isf = load_isf(file);
    let g = WinGuest::build(&isf, spec);
    let regs = g.registers();
    Built {
        spec: g.spec.clone(),
        roots: g.roots.clone(),
        eprocess: g.eprocess.clone(),
        kernel_pml4: g.kernel_pml4,
        head: g.spec.kernel_base + g.rva["PsActiveProcessHead"],
        regs,
        mem: GuestMemory::new(g.snapshot()),
    }
}

fn pdb_id(file: &str) -> String {
    // ntkrnlmp-<GUID>-<age>.json.xz
    let mut parts = file.trim_end_matches(".json.xz").split('-').skip(1);
    format!("{}{}", parts.next().unwrap(), parts.next().unwrap())
}

/// Everything the walkers report must equal the spec.
fn check_walks(b: &Built, w: &Windows) {
    let procs: Vec<Process> = w.processes(&b.mem).map(|p| p.unwrap()).collect();
    assert_eq!(procs.len(), b.spec.processes.len());
    for (i, (p, s)) in procs.iter().zip(&b.spec.processes).enumerate() {
        assert_eq!(p.pid, s.pid);
        assert_eq!(p.tgid, s.pid);
        assert_eq!(p.ppid, s.ppid);
        assert_eq!(p.name, s.name.chars().take(15).collect::<String>());
        assert_eq!(p.kernel_thread, s.dlls.is_none(), "{}", s.name);
        assert_eq!(p.dtb, Some(Gpa(b.roots[i].0)));
        assert_eq!(p.user_dtb, b.roots[i].1.map(Gpa));
        assert_eq!(p.object, Gva(b.eprocess[i]));
        // DLLs in the process's own address space.
        let mods: Vec<_> = w.process_modules(&b.mem, p).collect();
        match &s.dlls {
            None => {
                assert_eq!(mods.len(), 1);
                assert!(mods[0].is_err());
            }
            Some(dlls) => {
                let got: Vec<(String, u64, u64)> = mods
                    .into_iter()
                    .map(|m| m.unwrap())
                    .map(|m| (m.name, m.base.0, m.size))
                    .collect();
                let want: Vec<(String, u64, u64)> = dlls
                    .iter()
                    .map(|d| (d.name.clone(), d.base, d.size as u64))
                    .collect();
                assert_eq!(got, want);
            }
        }
        // CR3 -> process, with PCID/no-flush bits, for both roots.
        let owner = w.owner_of_cr3(&procs, b.roots[i].0 | 0x8000_0000_0000_0002);
        let first_with_root = procs.iter().find(|q| q.dtb == p.dtb).unwrap();
        assert_eq!(owner.map(|o| o.pid), Some(first_with_root.pid));
        if let Some(u) = b.roots[i].1 {
            assert_eq!(w.owner_of_cr3(&procs, u | 1).map(|o| o.pid), Some(p.pid));
            assert_eq!(
                w.process_for_cr3(&b.mem, u).map(|o| o.object),
                Some(p.object)
            );
        }
    }
    let drivers: Vec<(String, u64, u64)> = w
        .modules(&b.mem)
        .map(|m| m.unwrap())
        .map(|m| (m.name, m.base.0, m.size))
        .collect();
    let want: Vec<(String, u64, u64)> = b
        .spec
        .drivers
        .iter()
        .map(|d| (d.name.clone(), d.base, d.size as u64))
        .collect();
    assert_eq!(drivers, want);
}

#[test]
fn every_profile_discovered_from_registers_and_walked() {
    for (file, build_no) in PROFILES {
        let b = build(file, WinSpec::typical(build_no));
        let w = Windows::discover(&b.mem, &b.regs, WindowsProfile::Directory(isf_dir()))
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        let info = w.info();
        assert!(info.profile.ends_with(file), "{} vs {file}", info.profile);
        assert_eq!(info.kernel_base, Gva(b.spec.kernel_base));
        assert_eq!(info.size_of_image, b.spec.size_of_image);
        assert_eq!(info.build, Some(build_no));
        let cv = info.codeview.as_ref().unwrap();
        assert_eq!(cv.symbol_key(), pdb_id(file));
        assert_eq!(cv.pdb_name(), "ntkrnlmp.pdb");
        // vCPU 0 is on a KVA-shadow user root (no kernel half) where the profile has one, so
        // the kernel is found in vCPU 1's space from vCPU 0's MSR_LSTAR.
        assert_eq!(info.found_by, FoundBy::Hint("vCPU 0 MSR_LSTAR".into()));
        assert_eq!(info.kernel_space.root, Gpa(b.kernel_pml4));
        check_walks(&b, &w);
        let pe = w.kernel_image(&b.mem).unwrap();
        assert_eq!(pe.codeview().unwrap().as_ref(), Some(cv));
        assert_eq!(pe.exports().unwrap().dll_name(), Some("ntoskrnl.exe"));
    }
}

#[test]
fn region_scan_finds_the_kernel_without_register_hints() {
    let (file, build_no) = PROFILES[2];
    let mut b = build(file, WinSpec::typical(build_no));
    for r in &mut b.regs {
        r.msr_lstar = 0;
        r.rip = 0x7ff6_0000_1000;
        r.cs_sel = 0x33;
    }
    let w = Windows::discover(&b.mem, &b.regs, WindowsProfile::Directory(isf_dir())).unwrap();
    assert_eq!(w.info().found_by, FoundBy::RegionScan);
    assert_eq!(w.info().kernel_base, Gva(b.spec.kernel_base));
    check_walks(&b, &w);
}

#[test]
fn crash_dump_header_values_alone_are_enough() {
    let (file, build_no) = PROFILES[1];
    let b = build(file, WinSpec::typical(build_no));
    let hints = Hints {
        directory_table_base: Some(b.kernel_pml4),
        ps_active_process_head: Some(Gva(b.head)),
        ..Hints::default()
    };
    let w =
        Windows::discover_with(&b.mem, &[], WindowsProfile::Directory(isf_dir()), &hints).unwrap();
    assert_eq!(
        w.info().found_by,
        FoundBy::Hint("PsActiveProcessHead".into())
    );
    check_walks(&b, &w);
    // And a known base skips every search.
    let hints = Hints {
        directory_table_base: Some(b.kernel_pml4),
        kernel_base: Some(Gva(b.spec.kernel_base)),
        ..Hints::default()
    };
    let w = Windows::discover_with(
        &b.mem,
        &[],
        WindowsProfile::Isf(isf_dir().join(file)),
        &hints,
    )
    .unwrap();
    assert_eq!(w.info().found_by, FoundBy::GivenBase);
}

/// The synthetic Windows 10 guest written as Windows crash dumps (full and bitmap; the dump
/// containers are synthetic too, by `support::crashdump`): `Snapshot::open` detects them, the
/// header's values become `Hints`, and discovery from the dump alone (vCPU 0 from the header's
/// `CONTEXT`, no `MSR_LSTAR`) walks exactly the spec.
#[test]
fn crash_dumps_of_the_guest_are_discovered_from_their_header() {
    use support::crashdump as dmp;
    use xenvmi::backend::snapshot::{Format, Snapshot, WindowsDumpKind};

    let (file, build_no) = PROFILES[1];
    let isf = load_isf(file);
    let g = WinGuest::build(&isf, WinSpec::typical(build_no));
    let mut ctx = g.registers()[1];
    ctx.rflags = 0x246;
    let mut h = dmp::Header::example(g.kernel_pml4, ctx);
    h.minor = build_no;
    h.ps_active_process_head = g.spec.kernel_base + g.rva["PsActiveProcessHead"];
    h.ps_loaded_module_list = g.spec.kernel_base + g.rva["PsLoadedModuleList"];
    let full = dmp::full_dump(&h, &[(0, &g.mem)]);
    let pages: Vec<(u64, &[u8])> = g
        .mem
        .chunks(4096)
        .enumerate()
        .filter(|(_, p)| p.iter().any(|&b| b != 0))
        .map(|(i, p)| (i as u64, p))
        .collect();
    let bitmap = dmp::bitmap_dump(&h, 6, b"SDMP", (g.mem.len() / 4096) as u64, &pages);
    let dir = std::env::temp_dir().join(format!("xenvmi-windump-guest-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, bytes, kind) in [
        ("full.dmp", full, WindowsDumpKind::Full),
        ("bitmap.dmp", bitmap, WindowsDumpKind::BitmapKernel),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        let snap = Snapshot::open(&path).unwrap();
        assert_eq!(snap.format(), Format::WindowsCrashDump);
        let info = snap.windows_dump_info().unwrap().clone();
        assert_eq!(info.kind, kind);
        assert_eq!(info.minor_version, build_no);
        let hints = Hints::from(&info);
        assert_eq!(hints.directory_table_base, Some(g.kernel_pml4));
        assert_eq!(
            hints.ps_active_process_head,
            Some(Gva(h.ps_active_process_head))
        );
        assert_eq!(
            hints.ps_loaded_module_list,
            Some(Gva(h.ps_loaded_module_list))
        );
        let regs = snap.all_registers().to_vec();
        assert_eq!(regs.len(), 1);
        assert_eq!((regs[0].rip, regs[0].cs_sel), (ctx.rip, 0x10));
        let b = Built {
            spec: g.spec.clone(),
            roots: g.roots.clone(),
            eprocess: g.eprocess.clone(),
            kernel_pml4: g.kernel_pml4,
            head: h.ps_active_process_head,
            regs: regs.clone(),
            mem: GuestMemory::new(snap),
        };
        let w = Windows::discover_with(&b.mem, &regs, WindowsProfile::Directory(isf_dir()), &hints)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(w.info().kernel_base, Gva(g.spec.kernel_base), "{name}");
        assert_eq!(w.info().kernel_space.root, Gpa(g.kernel_pml4), "{name}");
        assert_eq!(w.info().build, Some(build_no), "{name}");
        // Found from a header value or the CONTEXT's rip, never by scanning the region.
        assert!(
            matches!(w.info().found_by, FoundBy::Hint(_)),
            "{name}: {:?}",
            w.info().found_by
        );
        check_walks(&b, &w);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_profile_for_another_build_is_refused_naming_the_one_needed() {
    let (file10, b10) = PROFILES[1];
    let b = build(file10, WinSpec::typical(b10));
    let e = Windows::discover(
        &b.mem,
        &b.regs,
        WindowsProfile::Isf(isf_dir().join(PROFILES[0].0)),
    )
    .unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, Error::OsNotFound { .. }), "{msg}");
    let guid = &pdb_id(file10)[..32];
    assert!(msg.contains(guid), "{msg}");
    // A directory without the right file says what to fetch.
    let dir = std::env::temp_dir().join(format!("xenvmi-isf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(isf_dir().join(PROFILES[0].0), dir.join(PROFILES[0].0)).unwrap();
    let e = Windows::discover(&b.mem, &b.regs, WindowsProfile::Directory(dir.clone()))
        .unwrap_err()
        .to_string();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        e.contains("no profile for ntkrnlmp.pdb") && e.contains(guid),
        "{e}"
    );
}

#[test]
fn kernels_without_codeview_are_found_by_export_name_with_an_explicit_profile() {
    let (file, build_no) = PROFILES[0];
    let spec = WinSpec {
        codeview: false,
        ..WinSpec::typical(build_no)
    };
    let b = build(file, spec);
    let e = Windows::discover(&b.mem, &b.regs, WindowsProfile::Directory(isf_dir()))
        .unwrap_err()
        .to_string();
    assert!(e.contains("CodeView"), "{e}");
    let w = Windows::discover(&b.mem, &b.regs, WindowsProfile::Isf(isf_dir().join(file))).unwrap();
    assert_eq!(w.info().codeview, None);
    check_walks(&b, &w);
}

#[test]
fn without_kva_shadow_every_vcpu_sees_the_kernel() {
    let (file, build_no) = PROFILES[1];
    let spec = WinSpec {
        kva_shadow: false,
        ..WinSpec::typical(build_no)
    };
    let b = build(file, spec);
    let w = Windows::discover(&b.mem, &b.regs, WindowsProfile::Directory(isf_dir())).unwrap();
    // vCPU 0's own (process) root maps the kernel half now.
    assert_eq!(w.info().found_by, FoundBy::Hint("vCPU 0 MSR_LSTAR".into()));
    check_walks(&b, &w);
    assert!(w.processes(&b.mem).all(|p| p.unwrap().user_dtb.is_none()));
}

/// Writes the `windows_walk` and `pe` fuzz seeds from real-layout guests (one per profile).
/// Run by hand: `cargo test --test windows_guests -- --ignored write_fuzz_seeds`.
#[test]
#[ignore = "writes fuzz/seeds; run by hand when the seed format changes"]
fn write_fuzz_seeds() {
    use xenvmi::os::profile::TypeSource;
    let dir = support::fixture::repo_root().join("fuzz/seeds");
    for (file, build_no) in PROFILES {
        let isf = load_isf(file);
        let g = WinGuest::build(&isf, WinSpec::small(build_no));
        let mut seed = Vec::new();
        seed.extend_from_slice(&g.kernel_pml4.to_le_bytes());
        seed.extend_from_slice(&g.spec.kernel_base.to_le_bytes());
        seed.push(1); // discovery from MSR_LSTAR
        for (t, f) in xenvmi::os::windows::FIELDS {
            let off = isf
                .field(t, f)
                .or_else(|| isf.field(&t.replace("_KLDR", "_LDR"), f))
                .map(|x| x.offset as u16)
                .unwrap_or(0xffff);
            seed.extend_from_slice(&off.to_le_bytes());
        }
        for n in xenvmi::os::windows::SYMBOLS {
            seed.extend_from_slice(&(g.rva[n] as u32).to_le_bytes());
        }
        // The kernel header page, as a PE seed.
        let header = {
            let base = g.spec.kernel_base;
            let root = g.kernel_pml4;
            let mut gg = g;
            let mut page = vec![0u8; 4096];
            for (i, b) in page.iter_mut().enumerate() {
                let v = gg.read_u64(root, base + (i as u64 & !7));
                *b = v.to_le_bytes()[i % 8];
            }
            seed.extend_from_slice(&gg.mem);
            page
        };
        let build_name = file.split('-').nth(1).unwrap();
        std::fs::write(
            dir.join("windows_walk")
                .join(format!("{build_no}-{build_name}")),
            &seed,
        )
        .unwrap();
        std::fs::write(
            dir.join("pe").join(format!("ntoskrnl-header-{build_no}")),
            &header,
        )
        .unwrap();
        assert!(
            seed.len() < 131072,
            "seed of {} bytes is over fuzz/run.sh's -max_len",
            seed.len()
        );
    }
}
