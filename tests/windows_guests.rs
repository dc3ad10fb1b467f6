//! Windows discovery and walks on synthetic guests laid out by the three real ntoskrnl ISF
//! profiles (Windows 7 SP1, 10 19041, 11 22000). See `tests/support/windows_guest.rs` for what
//! is synthetic: the memory image is; every offset and RVA in it is the real profile's.
//! Expected values come from the spec each guest was built from.

mod support;

use support::windows_guest::*;
use xenvmi::mem::GuestMemory;
use xenvmi::os::profile::TypeSource;
use xenvmi::os::windows::{FoundBy, Hints, RootSource, Windows, WindowsProfile};
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
        // Registers first: a vCPU's root, no register-less candidate tried.
        assert!(
            matches!(info.root_source, RootSource::Vcpu(_)),
            "{:?}",
            info.root_source
        );
        assert!(info.rejected_roots.is_empty());
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
        // Found from a header value or the CONTEXT's rip, never by scanning the region, in
        // the header's DirectoryTableBase: the register-less search is not needed.
        assert!(
            matches!(w.info().found_by, FoundBy::Hint(_)),
            "{name}: {:?}",
            w.info().found_by
        );
        assert_eq!(w.info().root_source, RootSource::Hint, "{name}");
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
    assert!(
        e.contains("no profile for ntkrnlmp.pdb") && e.contains(guid),
        "{e}"
    );
    assert_eq!(
        e.matches("could not find a Windows kernel").count(),
        1,
        "{e}"
    );
    // Without registers, every root candidate (the low stub's, the self-referencing
    // table's) leads to the same kernel and the same missing profile: said once, the other
    // candidates name the first.
    let e = Windows::discover(&b.mem, &[], WindowsProfile::Directory(dir.clone()))
        .unwrap_err()
        .to_string();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(e.matches("no profile for ntkrnlmp.pdb").count(), 1, "{e}");
    assert_eq!(
        e.matches("could not find a Windows kernel").count(),
        1,
        "{e}"
    );
    assert!(e.contains(": as 0x"), "{e}");
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

/// Writes the `windows_walk`, `windows_dtb` and `pe` fuzz seeds from real-layout guests (one per profile).
/// Run by hand: `cargo test --test windows_guests -- --ignored write_fuzz_seeds`.
#[test]
#[ignore = "writes fuzz/seeds; run by hand when the seed format changes"]
fn write_fuzz_seeds() {
    use xenvmi::os::profile::TypeSource;
    let dir = support::fixture::repo_root().join("fuzz/seeds");
    for (file, build_no) in PROFILES {
        let isf = load_isf(file);
        let mut spec = WinSpec::small(build_no);
        // Its drivers with images and export tables, for the driver-symbol reads.
        let exports = WinSpec::with_driver_exports(build_no).drivers;
        for d in &mut spec.drivers {
            d.exports = exports
                .iter()
                .find(|e| e.name == d.name)
                .and_then(|e| e.exports.clone());
        }
        let g = WinGuest::build(&isf, spec);
        // The register-less seed must get past discovery: from its low stub.
        {
            use xenvmi::backend::snapshot::{Format, Snapshot};
            let snap = Snapshot::from_bytes(g.mem.clone(), Some(Format::Raw)).unwrap();
            let mem = GuestMemory::new(snap);
            let w = Windows::discover(&mem, &[], WindowsProfile::Directory(isf_dir())).unwrap();
            assert!(matches!(w.info().root_source, RootSource::LowStub { .. }));
        }
        let mut seed = Vec::new();
        seed.extend_from_slice(&g.kernel_pml4.to_le_bytes());
        seed.extend_from_slice(&g.spec.kernel_base.to_le_bytes());
        seed.push(1 | 4); // discovery from MSR_LSTAR, and the per-processor walk
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
        for (t, f) in xenvmi::os::windows::CPU_FIELDS {
            let off = isf.field(t, f).map(|x| x.offset as u16).unwrap_or(0xffff);
            seed.extend_from_slice(&off.to_le_bytes());
        }
        for n in xenvmi::os::windows::CPU_SYMBOLS {
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
        // The same guest with no registers (mode bit 3): the register-less search's seed.
        let mut registerless = seed.clone();
        registerless[16] |= 8;
        std::fs::create_dir_all(dir.join("windows_dtb")).unwrap();
        std::fs::write(
            dir.join("windows_dtb")
                .join(format!("{build_no}-{build_name}")),
            &registerless,
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

/// Every processor's record must equal the spec: `KPRCB`, current thread, the process it runs
/// (pid and name from the spec; the idle process for an idle processor) and the saved CR3.
fn check_processors(g: &WinGuest, procs: &xenvmi::os::windows::Processors) {
    assert_eq!(procs.declared as usize, g.spec.cpus.len());
    assert!(!procs.truncated);
    assert_eq!(procs.cpus.len(), g.spec.cpus.len());
    for (i, (cpu, spec)) in procs.cpus.iter().zip(&g.spec.cpus).enumerate() {
        let cpu = cpu
            .as_ref()
            .unwrap_or_else(|e| panic!("processor {i}: {e}"));
        assert_eq!(cpu.index as usize, i);
        assert_eq!(cpu.number as usize, i);
        assert_eq!(cpu.prcb, Gva(g.prcbs[i]));
        assert_eq!(cpu.thread, Gva(g.threads[i]));
        let (ep, pid, name) = match spec.process {
            Some(p) => (
                g.eprocess[p],
                g.spec.processes[p].pid,
                g.spec.processes[p]
                    .name
                    .chars()
                    .take(15)
                    .collect::<String>(),
            ),
            None => (g.idle_eprocess.unwrap(), 0, "Idle".to_string()),
        };
        assert_eq!(cpu.process, Gva(ep), "processor {i}");
        // An attached thread: its own process (KTHREAD.Process) is another one.
        let home = spec.home.map_or(ep, |h| g.eprocess[h]);
        assert_eq!(cpu.home_process, Some(Gva(home)));
        let owner = cpu.owner.as_ref().unwrap();
        assert_eq!((owner.pid, owner.name.as_str()), (pid, name.as_str()));
        assert_eq!(
            xenvmi::regs::cr3_to_root(cpu.saved_cr3),
            Gpa(g.cpu_roots(i).0)
        );
        assert_eq!((cpu.context_rip, cpu.context_rsp), g.context_of(i));
        assert_eq!(cpu.stack, WinGuest::stack(i));
    }
}

/// The registers of an ELF core (written by xenvmi's capture from the guest's memory and the
/// spec's registers), reopened from the file.
fn elf_core(g: &WinGuest, regs: &[Registers], name: &str) -> xenvmi::backend::snapshot::Snapshot {
    use xenvmi::backend::snapshot::{Format, Snapshot};
    let path =
        std::env::temp_dir().join(format!("xenvmi-wincpu-{}-{name}.elf", std::process::id()));
    g.write_elf_core(regs, &path);
    let snap = Snapshot::open(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(snap.format(), Format::QemuElf);
    snap
}

/// Every processor from `KiProcessorBlock` on ELF cores of guests with 4 and 6 processors,
/// by all three profiles, with and without KVA shadow: the records equal the spec and agree
/// with the core's registers; a vCPU whose CR3 is another process's is reported.
#[test]
fn every_processor_is_read_from_the_kernel_records_and_checked_against_the_core() {
    for (file, build_no) in PROFILES {
        let isf = load_isf(file);
        for (n, kva) in [(4, true), (6, false)] {
            let spec = WinSpec {
                kva_shadow: kva,
                ..WinSpec::with_cpus(build_no, n)
            };
            let g = WinGuest::build(&isf, spec);
            let regs = g.registers();
            let snap = elf_core(&g, &regs, &format!("{build_no}-{n}"));
            let core_regs = snap.all_registers().to_vec();
            assert_eq!(core_regs.len(), n);
            let mem = GuestMemory::new(snap);
            let w = Windows::discover(&mem, &core_regs, WindowsProfile::Directory(isf_dir()))
                .unwrap_or_else(|e| panic!("{file}: {e}"));
            let mut procs = w.processors(&mem).unwrap();
            check_processors(&g, &procs);
            procs.cross_check(&core_regs);
            assert_eq!(procs.register_vcpus, Some(n));
            for cpu in procs.read() {
                let check = cpu.registers.as_ref().unwrap();
                assert!(
                    check.agrees,
                    "{file} processor {}: {}",
                    cpu.index, check.detail
                );
                assert_eq!(check.cr3, regs[cpu.index as usize].cr3);
            }
            assert_eq!(procs.disagreements().count(), 0);
            if n > 4 {
                // Processor 4 runs a System thread attached to another process: the address
                // space in use (and so the registers' CR3) is the attached process's.
                let c4 = procs.cpus[4].as_ref().unwrap();
                assert_eq!(g.spec.cpus[4].home, Some(0));
                assert_eq!(c4.home_process, Some(Gva(g.eprocess[0])));
                assert_ne!(c4.process, Gva(g.eprocess[0]));
            }

            // vCPU 3 on the page tables of a process the kernel does not say it runs.
            let mut wrong = core_regs.clone();
            let other = g.roots[4].0; // explorer.exe; processor 3 runs process 2 (smss.exe)
            assert_eq!(g.spec.cpus[3].process, Some(2));
            wrong[3].cr3 = other | 0x2;
            let mut procs = w.processors(&mem).unwrap();
            procs.cross_check(&wrong);
            let bad: Vec<_> = procs.disagreements().map(|c| c.index).collect();
            assert_eq!(bad, vec![3], "{file}");
            let detail = &procs.cpus[3]
                .as_ref()
                .unwrap()
                .registers
                .as_ref()
                .unwrap()
                .detail;
            assert!(
                detail.contains(&format!("{:#x}", other | 0x2)) && detail.contains("pid 388"),
                "{detail}"
            );
        }
    }
}

/// Crash dumps (full and bitmap) of a 4-processor guest whose crashing processor is 0, 1 and
/// the last: the header's CONTEXT is found on the right processor (never assumed 0), and
/// every processor's record equals the spec. With the saved contexts wiped, the crashing
/// thread's stack still finds it; with a CONTEXT that matches nothing, it is unknown.
#[test]
fn crash_dumps_name_the_processor_that_crashed() {
    use support::crashdump as dmp;
    use xenvmi::backend::snapshot::Snapshot;
    use xenvmi::os::windows::{crashing_processor, CrashingCpu};

    for (pi, (file, build_no)) in PROFILES.into_iter().enumerate() {
        let isf = load_isf(file);
        let n = 4;
        for crashed in [0usize, 1, n - 1] {
            let spec = WinSpec {
                kva_shadow: pi != 0,
                ..WinSpec::with_cpus(build_no, n)
            };
            let mut g = WinGuest::build(&isf, spec);
            for wiped in [false, true] {
                if wiped {
                    let frame = isf
                        .require("_KPRCB", "ProcessorState.ContextFrame")
                        .unwrap();
                    let rip = isf.require("_CONTEXT", "Rip").unwrap();
                    for p in g.prcbs.clone() {
                        g.kwrite_u64(p + frame + rip, 0);
                    }
                }
                let mut h = dmp::Header::example(g.kernel_pml4, g.crash_context(crashed));
                h.number_processors = n as u32;
                h.ps_active_process_head = g.spec.kernel_base + g.rva["PsActiveProcessHead"];
                h.ps_loaded_module_list = g.spec.kernel_base + g.rva["PsLoadedModuleList"];
                let pages: Vec<(u64, &[u8])> = g
                    .mem
                    .chunks(4096)
                    .enumerate()
                    .filter(|(_, p)| p.iter().any(|&b| b != 0))
                    .map(|(i, p)| (i as u64, p))
                    .collect();
                let images = [
                    dmp::full_dump(&h, &[(0, &g.mem)]),
                    dmp::bitmap_dump(&h, 5, b"SDMP", (g.mem.len() / 4096) as u64, &pages),
                ];
                for img in images {
                    let snap = Snapshot::from_bytes(img, None).unwrap();
                    let hints = Hints::from(snap.windows_dump_info().unwrap());
                    let regs = snap.all_registers().to_vec();
                    assert_eq!(regs.len(), 1);
                    let mem = GuestMemory::new(snap);
                    let w = Windows::discover_with(
                        &mem,
                        &regs,
                        WindowsProfile::Directory(isf_dir()),
                        &hints,
                    )
                    .unwrap();
                    let procs = w.processors(&mem).unwrap();
                    let found = crashing_processor(&procs, &regs[0]);
                    let want = if wiped {
                        CrashingCpu::Stack(crashed as u32)
                    } else {
                        CrashingCpu::ContextFrame(crashed as u32)
                    };
                    assert_eq!(found, want, "{file} crashed on {crashed}, wiped {wiped}");
                    if !wiped {
                        check_processors(&g, &procs);
                    }
                    // A CONTEXT from nowhere matches no processor: unknown, not 0.
                    let stray = Registers {
                        rip: 1,
                        rsp: 0xffff_e000_0000_0000,
                        ..regs[0]
                    };
                    let found = crashing_processor(&procs, &stray);
                    assert!(matches!(found, CrashingCpu::Unknown(_)), "{found:?}");
                    assert_eq!(found.index(), None);
                    // An empty CONTEXT matches nothing either, even wiped saved contexts.
                    let empty = Registers::default();
                    let found = crashing_processor(&procs, &empty);
                    assert!(matches!(found, CrashingCpu::Unknown(_)), "{found:?}");
                }
            }
        }
    }
}

/// Hostile processor records: a huge `KeNumberProcessors` is capped, NULL, unmapped and
/// repeated `KiProcessorBlock` entries are errors for their processor only, a thread whose
/// process pointer goes nowhere leaves the owner unread (and the cross-check disagreeing),
/// and `KeNumberProcessors` 0 is an error.
#[test]
fn hostile_processor_records_are_bounded_and_reported() {
    use xenvmi::os::windows::MAX_PROCESSORS;
    let (file, build_no) = PROFILES[1];
    let isf = load_isf(file);
    let mut g = WinGuest::build(&isf, WinSpec::with_cpus(build_no, 4));
    let base = g.spec.kernel_base;
    let block = base + g.rva["KiProcessorBlock"];
    let count = base + g.rva["KeNumberProcessors"];
    g.kwrite(count, &u32::MAX.to_le_bytes());
    g.kwrite_u64(block + 8, 0xffff_9999_0000_0000); // unmapped
    g.kwrite_u64(block + 16, g.prcbs[0]); // a cycle: entry 2 names entry 0's KPRCB
    let apc = isf.require("_ETHREAD", "Tcb.ApcState.Process").unwrap();
    let t3 = g.threads[3];
    g.kwrite_u64(t3 + apc, 0xffff_9999_1234_0000);
    let regs = g.registers();
    let kernel_pml4 = g.kernel_pml4;
    let head = base + g.rva["PsActiveProcessHead"];
    let mem = GuestMemory::new(g.snapshot());
    let hints = Hints {
        directory_table_base: Some(kernel_pml4),
        ps_active_process_head: Some(Gva(head)),
        ..Hints::default()
    };
    let w =
        Windows::discover_with(&mem, &regs, WindowsProfile::Directory(isf_dir()), &hints).unwrap();
    let mut procs = w.processors(&mem).unwrap();
    assert_eq!(procs.declared, u32::MAX);
    assert!(procs.truncated);
    assert_eq!(procs.cpus.len(), MAX_PROCESSORS as usize);
    assert!(procs.cpus[0].is_ok());
    let e1 = procs.cpus[1].as_ref().unwrap_err().to_string();
    assert!(
        e1.contains("processor 1's records") && e1.contains("0xffff9999000000"),
        "{e1}"
    );
    let e2 = procs.cpus[2].as_ref().unwrap_err().to_string();
    assert!(e2.contains("entry 2") && e2.contains("entry 0"), "{e2}");
    let c3 = procs.cpus[3].as_ref().unwrap();
    assert!(c3.owner.is_none());
    assert!(c3.owner_error.is_some());
    // Past the spec's processors the array holds zeros: NULL entries, each an error.
    let e4 = procs.cpus[4].as_ref().unwrap_err().to_string();
    assert!(e4.contains("NULL"), "{e4}");
    assert!(procs.cpus.iter().skip(4).all(|c| c.is_err()));
    procs.cross_check(&regs);
    let bad: Vec<u32> = procs.disagreements().map(|c| c.index).collect();
    assert_eq!(bad, vec![3]);

    // KeNumberProcessors 0.
    let mut g = WinGuest::build(&isf, WinSpec::with_cpus(build_no, 3));
    g.kwrite(count, &0u32.to_le_bytes());
    let regs = g.registers();
    let mem = GuestMemory::new(g.snapshot());
    let w = Windows::discover(&mem, &regs, WindowsProfile::Directory(isf_dir())).unwrap();
    let e = w.processors(&mem).unwrap_err().to_string();
    assert!(e.contains("KeNumberProcessors"), "{e}");
}

/// The guest's memory as a LiME capture: the RAM below the legacy VGA/BIOS hole and the RAM
/// above 1 MiB, as two ranges (LiME writes the host's "System RAM" ranges).
fn lime_of(mem: &[u8]) -> Vec<u8> {
    support::lime::image(&[(0, &mem[..0x9f000]), (0x10_0000, &mem[0x10_0000..])])
}

/// A raw image and a LiME capture of `g` (each opened from a file, so that the format is
/// detected as a user's would be), with nothing but memory: no registers, no hints.
fn raw_and_lime(g: &WinGuest, name: &str) -> Vec<(&'static str, Built)> {
    use xenvmi::backend::snapshot::{Format, Snapshot};
    let dir = std::env::temp_dir().join(format!("xenvmi-winraw-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut out = Vec::new();
    for (form, bytes, format) in [
        ("raw", g.mem.clone(), Format::Raw),
        ("LiME", lime_of(&g.mem), Format::Lime),
    ] {
        let path = dir.join(format!("win.{form}"));
        std::fs::write(&path, bytes).unwrap();
        let snap = Snapshot::open(&path).unwrap();
        assert_eq!(snap.format(), format);
        assert!(snap.all_registers().is_empty());
        assert!(snap.windows_dump_info().is_none());
        out.push((
            form,
            Built {
                spec: g.spec.clone(),
                roots: g.roots.clone(),
                eprocess: g.eprocess.clone(),
                kernel_pml4: g.kernel_pml4,
                regs: Vec::new(),
                head: g.spec.kernel_base + g.rva["PsActiveProcessHead"],
                mem: GuestMemory::new(snap),
            },
        ));
    }
    std::fs::remove_dir_all(&dir).unwrap();
    out
}

/// Raw images and LiME captures of seeded guests by all three profiles, with and without KVA
/// shadow: the kernel's page-table root comes from the low stub, and every process, DLL,
/// driver and processor record equals the spec.
#[test]
fn raw_and_lime_images_are_read_without_registers() {
    for (pi, (file, build_no)) in PROFILES.into_iter().enumerate() {
        for (seed, kva) in [
            (0x5eed_0001 + pi as u64, true),
            (0xc0ffee + pi as u64, false),
        ] {
            let spec = WinSpec {
                kva_shadow: kva,
                ..WinSpec::seeded(build_no, seed)
            };
            let isf = load_isf(file);
            let g = WinGuest::build(&isf, spec);
            for (form, b) in raw_and_lime(&g, &format!("{build_no}-{seed:x}")) {
                let what = format!("{file} seed {seed:#x} {form}");
                let w = Windows::discover(&b.mem, &[], WindowsProfile::Directory(isf_dir()))
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
                let info = w.info();
                assert_eq!(info.kernel_base, Gva(g.spec.kernel_base), "{what}");
                assert_eq!(info.build, Some(build_no), "{what}");
                assert_eq!(info.found_by, FoundBy::RegionScan, "{what}");
                assert_eq!(
                    info.root_source,
                    RootSource::LowStub {
                        at: Gpa(g.spec.low_stub.unwrap())
                    },
                    "{what}"
                );
                assert!(info.rejected_roots.is_empty(), "{what}");
                assert_eq!(info.kernel_space.root, Gpa(g.kernel_pml4), "{what}");
                check_walks(&b, &w);
                check_processors(&g, &w.processors(&b.mem).unwrap());
            }
        }
    }
}

/// Without a low stub (firmware that hides the first MiB, or a capture that leaves it out),
/// the self-referencing top-level entry finds the root, at the seed's randomised index.
#[test]
fn without_a_low_stub_the_self_referencing_entry_finds_the_root() {
    for (pi, (file, build_no)) in PROFILES.into_iter().enumerate() {
        let seed = 0x5e1f_0000 + pi as u64;
        let spec = WinSpec {
            low_stub: None,
            ..WinSpec::seeded(build_no, seed)
        };
        let index = spec.self_ref.unwrap();
        let isf = load_isf(file);
        let g = WinGuest::build(&isf, spec);
        for (form, b) in raw_and_lime(&g, &format!("selfref-{build_no}")) {
            let what = format!("{file} seed {seed:#x} {form}");
            // A profile file as well as a directory.
            for profile in [
                WindowsProfile::Directory(isf_dir()),
                WindowsProfile::Isf(isf_dir().join(file)),
            ] {
                let w = Windows::discover(&b.mem, &[], profile)
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
                let info = w.info();
                assert_eq!(info.root_source, RootSource::SelfRef { index }, "{what}");
                assert_eq!(info.kernel_base, Gva(g.spec.kernel_base), "{what}");
                // The System process's own table, whichever table the scan met first.
                assert_eq!(info.kernel_space.root, Gpa(g.kernel_pml4), "{what}");
                check_walks(&b, &w);
                check_processors(&g, &w.processors(&b.mem).unwrap());
            }
        }
    }
}

/// Two decoy tables where the self-referencing scan looks first: one maps everything the
/// kernel's does except the page of `PsActiveProcessHead` (ntoskrnl is found in it, the list
/// head is not), one maps nothing of the kernel. Both are rejected, with their reasons, and
/// the real table after them is used.
#[test]
fn decoy_tables_found_by_the_self_referencing_scan_are_rejected() {
    let (file, build_no) = PROFILES[1];
    let spec = WinSpec {
        low_stub: None,
        reserved_low: 0x30_0000,
        ..WinSpec::seeded(build_no, 0xdec0)
    };
    let index = spec.self_ref.unwrap();
    let isf = load_isf(file);
    let mut g = WinGuest::build(&isf, spec);
    let head = g.spec.kernel_base + g.rva["PsActiveProcessHead"];
    g.decoy_table(0x1a_0000, index, head);
    // The second: its self-reference and one kernel-half entry to an empty table.
    let e = |g: &mut WinGuest, at: u64, i: u64, v: u64| {
        g.mem[(at + 8 * i) as usize..(at + 8 * i + 8) as usize].copy_from_slice(&v.to_le_bytes())
    };
    e(&mut g, 0x1a_8000, index as u64, 0x1a_8000 | 0x63);
    e(&mut g, 0x1a_8000, 0x1f0, 0x1a_9000 | 0x63);
    for (form, b) in raw_and_lime(&g, "decoy") {
        let w = Windows::discover(&b.mem, &[], WindowsProfile::Directory(isf_dir()))
            .unwrap_or_else(|e| panic!("{form}: {e}"));
        let info = w.info();
        assert_eq!(info.root_source, RootSource::SelfRef { index }, "{form}");
        assert_eq!(info.kernel_space.root, Gpa(g.kernel_pml4), "{form}");
        let r = &info.rejected_roots;
        assert_eq!(r.len(), 2, "{form}: {r:?}");
        assert!(
            r[0].starts_with("0x1a0000") && r[0].contains("not a list head"),
            "{form}: {}",
            r[0]
        );
        assert!(
            r[1].starts_with("0x1a8000") && r[1].contains("no NT kernel image"),
            "{form}: {}",
            r[1]
        );
        check_walks(&b, &w);
    }
}

/// With neither a low stub nor a self-referencing entry, the System process is found by the
/// profile's `_EPROCESS` layout: a profile file's, or each one's in a directory; a directory
/// without ISF files says the scan was not tried and why.
#[test]
fn the_system_process_scan_is_the_last_resort() {
    let (file, build_no) = PROFILES[2];
    let spec = WinSpec {
        low_stub: None,
        self_ref: None,
        ..WinSpec::seeded(build_no, 0x5175)
    };
    let isf = load_isf(file);
    let g = WinGuest::build(&isf, spec);
    let empty = std::env::temp_dir().join(format!("xenvmi-noisf-{}", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    for (form, b) in raw_and_lime(&g, "system") {
        let e = Windows::discover(&b.mem, &[], WindowsProfile::Directory(empty.clone()))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("System process scan: not tried") && e.contains("no ISF file"),
            "{form}: {e}"
        );
        // The System _EPROCESS's physical address, translated by the test.
        let ks = xenvmi::mem::AddressSpace {
            root: Gpa(g.kernel_pml4),
            mode: xenvmi::mem::PagingMode::Level4,
        };
        let ep = b.mem.translate_mapped(ks, Gva(g.eprocess[0])).unwrap();
        for profile in [
            WindowsProfile::Directory(isf_dir()),
            WindowsProfile::Isf(isf_dir().join(file)),
        ] {
            let w =
                Windows::discover(&b.mem, &[], profile).unwrap_or_else(|e| panic!("{form}: {e}"));
            let info = w.info();
            assert_eq!(
                info.root_source,
                RootSource::SystemProcess { eprocess: ep },
                "{form}"
            );
            assert_eq!(info.kernel_space.root, Gpa(g.kernel_pml4), "{form}");
            check_walks(&b, &w);
        }
    }
    std::fs::remove_dir_all(&empty).unwrap();
}

/// Memory with no Windows in it (noise, zeros, and a low stub, a self-referencing table and
/// a System-named object that each lead nowhere): a clear error naming the image and what
/// each method found, after a bounded search.
#[test]
fn an_image_without_windows_is_refused_naming_every_method() {
    use xenvmi::backend::snapshot::{Format, Snapshot};
    let mut rng = SplitMix(0x0bad_5eed);
    let mut mem = vec![0u8; 24 << 20];
    for chunk in mem[0x40_0000..0x80_0000].chunks_mut(8) {
        chunk.copy_from_slice(&rng.next().to_le_bytes());
    }
    let put = |m: &mut Vec<u8>, at: usize, v: u64| m[at..at + 8].copy_from_slice(&v.to_le_bytes());
    // A start block whose CR3 is a page of zeros.
    m_stub(&mut mem, 0x9000, 0x20_0000);
    // A self-referencing table mapping an empty table.
    put(&mut mem, 0x1a_0000 + 8 * 0x1ed, 0x1a_0000 | 0x63);
    put(&mut mem, 0x1a_0000 + 8 * 0x1f0, 0x1a_1000 | 0x63);
    // "System" with pid 4 and a root, under the Windows 10 layout.
    let isf = load_isf(PROFILES[1].0);
    let off = |f: &str| isf.require("_EPROCESS", f).unwrap() as usize;
    let ep = 0x90_0000;
    mem[ep + off("ImageFileName")..ep + off("ImageFileName") + 6].copy_from_slice(b"System");
    put(&mut mem, ep + off("UniqueProcessId"), 4);
    put(&mut mem, ep + off("Pcb.DirectoryTableBase"), 0x1a_1000);
    put(
        &mut mem,
        ep + off("ActiveProcessLinks"),
        0xffff_a580_0000_1448,
    );
    put(
        &mut mem,
        ep + off("ActiveProcessLinks") + 8,
        0xffff_a580_0000_1448,
    );
    let snap = Snapshot::from_bytes(mem, Some(Format::Raw)).unwrap();
    let gm = GuestMemory::new(snap);
    let t = std::time::Instant::now();
    let e = Windows::discover(&gm, &[], WindowsProfile::Isf(isf_dir().join(PROFILES[1].0)))
        .unwrap_err();
    let msg = e.to_string();
    eprintln!("refused in {:?}: {msg}", t.elapsed());
    assert!(matches!(e, Error::OsNotFound { .. }), "{msg}");
    for want in [
        "could not find a Windows kernel in raw snapshot",
        "registers: none",
        "low stub: 1 PROCESSOR_START_BLOCK(s), rejected: 0x200000 (low stub at 0x9000): no NT kernel image",
        "self-referencing PML4 entry: 1 table(s) in ",
        "0x1a0000 (self-referencing entry 0x1ed): no NT kernel image",
        // 24 MiB: 6144 pages, one layout (the profile file's).
        "System process scan: 1 candidate(s) in 6144 pages (1 layout(s))",
        "0x1a1000 (System _EPROCESS at physical 0x900000): no NT kernel image",
    ] {
        assert!(msg.contains(want), "{want:?} not in {msg}");
    }
    // All zeros: nothing found by any method.
    let snap = Snapshot::from_bytes(vec![0u8; 4 << 20], Some(Format::Raw)).unwrap();
    let msg = Windows::discover(
        &GuestMemory::new(snap),
        &[],
        WindowsProfile::Directory(isf_dir()),
    )
    .unwrap_err()
    .to_string();
    // The directory's distinct (ImageFileName, UniqueProcessId, DirectoryTableBase,
    // ActiveProcessLinks) layouts, each scanning all 1024 pages.
    let mut layouts: Vec<[u64; 4]> = Vec::new();
    for (f, _) in PROFILES {
        let isf = load_isf(f);
        let o = |n: &str| isf.require("_EPROCESS", n).unwrap();
        let l = [
            o("ImageFileName"),
            o("UniqueProcessId"),
            o("Pcb.DirectoryTableBase"),
            o("ActiveProcessLinks"),
        ];
        if !layouts.contains(&l) {
            layouts.push(l);
        }
    }
    let n = layouts.len();
    let system = format!(
        "System process scan: no _EPROCESS named System with pid 4 in {} pages ({n} layout(s))",
        1024 * n
    );
    for want in [
        "low stub: no PROCESSOR_START_BLOCK in the first MiB",
        "self-referencing PML4 entry: none in 1024 pages",
        system.as_str(),
    ] {
        assert!(msg.contains(want), "{want:?} not in {msg}");
    }
}

/// A `PROCESSOR_START_BLOCK` head at `at` recording `cr3`, written by hand from the WDK
/// layout (jmp + CompletionFlag, `LmTarget` at 0x70, `Cr3` at 0xa0).
fn m_stub(mem: &mut [u8], at: usize, cr3: u64) {
    mem[at..at + 8].copy_from_slice(&[0xe9, 0x5a, 0x06, 0x00, 1, 0, 0, 0]);
    mem[at + 0x70..at + 0x78].copy_from_slice(&0xffff_f803_4a04_5a10u64.to_le_bytes());
    mem[at + 0xa0..at + 0xa8].copy_from_slice(&cr3.to_le_bytes());
}
