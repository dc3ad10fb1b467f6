//! The OS-neutral API: `os::identify` tells the OS apart by its cheap tells, `os::discover`
//! finds its kernel, and `GuestOs` answers the same questions for both. Expected values come
//! from the real Linux fixture's ground truth and from the spec each synthetic Windows guest
//! (laid out by the real ntoskrnl ISFs) was built from.

mod support;

use support::fixture::{ground_truth, hex};
use support::windows_guest::{isf_dir, load_isf, WinGuest, WinSpec, PROFILES};
use xenvmi::backend::snapshot::{Format, Snapshot};
use xenvmi::mem::GuestMemory;
use xenvmi::os::windows::{Hints, WindowsProfile};
use xenvmi::os::{discover, identify, DiscoverOptions, Guest, GuestOs, OsKind, Process};
use xenvmi::{Error, Gpa, Gva};

fn windows_options() -> DiscoverOptions<'static> {
    DiscoverOptions {
        windows: Some(WindowsProfile::Directory(isf_dir())),
        ..DiscoverOptions::default()
    }
}

/// The Linux fixture with its registers: told apart by the kernel image map the vCPUs' page
/// tables hold (QEMU's cores carry no MSRs), then every answer of the trait against the
/// guest's own record of itself.
#[test]
fn linux_fixture_through_the_neutral_api() {
    let gt = ground_truth("linux-6.1");
    let (mem, regs) = support::linux::memory("linux-6.1");
    let id = identify(&mem, &regs, &Hints::default(), &mut |_| {});
    assert_eq!(id.kind, Some(OsKind::Linux), "{:?}", id.seen);
    assert!(
        id.seen.last().unwrap().contains("kernel image map"),
        "{:?}",
        id.seen
    );
    // The Windows checks that ran found nothing, and none of them searched memory widely.
    assert!(
        id.seen.iter().any(|s| s.contains("low stub: no")),
        "{:?}",
        id.seen
    );

    let guest = discover(&mem, &regs, DiscoverOptions::default()).unwrap();
    assert!(matches!(guest, Guest::Linux(_)));
    assert_eq!(guest.kind(), OsKind::Linux);
    let info = guest.os_info();
    assert_eq!(info.release, gt["kernel_release"].as_str().unwrap());
    assert_eq!(info.banner.trim_end(), gt["proc_version"].as_str().unwrap());
    assert_eq!(info.kernel_base, Gva(hex(&gt["kaslr"]["text_va"])));

    // Symbols both ways, against the guest's /proc/kallsyms.
    let mut checked = 0;
    for (name, s) in gt["symbols"].as_object().unwrap() {
        if !matches!(
            s["type"].as_str(),
            Some("T" | "t" | "D" | "d" | "B" | "b" | "R" | "r")
        ) {
            continue;
        }
        let addr = hex(&s["addr"]);
        assert_eq!(guest.symbol(name), Some(Gva(addr)), "{name}");
        assert_eq!(guest.require_symbol(name).unwrap(), Gva(addr), "{name}");
        let at = guest.symbol_at(Gva(addr + 1)).unwrap();
        // Another name may share the address (an alias); the address and offset may not.
        assert_eq!((at.addr, at.offset), (addr, 1), "{name}");
        checked += 1;
    }
    assert!(checked >= 5, "{checked}");
    let e = guest.require_symbol("no_such_symbol_xyz").unwrap_err();
    assert!(matches!(e, Error::MissingSymbol { .. }), "{e}");

    // Processes and modules, and each vCPU's owner.
    let procs: Vec<Process> = guest.processes(&mem).map(|p| p.unwrap()).collect();
    let mut got: Vec<u64> = procs.iter().map(|p| p.pid).collect();
    let mut want: Vec<u64> = gt["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["pid"].as_u64().unwrap())
        .collect();
    got.sort_unstable();
    want.sort_unstable();
    assert_eq!(got, want);
    let modules: Vec<String> = guest.modules(&mem).map(|m| m.unwrap().name).collect();
    let want: Vec<String> = gt["module_names_list_order"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(modules, want);
    for o in gt["vcpu_owners"].as_array().unwrap() {
        let cr3 = hex(&o["cr3"]);
        let p = guest.process_for_cr3(&mem, cr3).unwrap();
        assert_eq!(p.pid, o["pid"].as_u64().unwrap());
        assert_eq!(guest.owner_of_cr3(&procs, cr3 | 0x1000).unwrap().pid, p.pid);
    }
    assert!(guest.is_kernel_cr3(GuestOs::kernel_space(&guest).root.0));
}

/// The Linux fixture as a raw image (no registers): told apart by its banner, found by the
/// memory-only discovery.
#[test]
fn linux_raw_image_is_told_apart_by_its_banner() {
    let gt = ground_truth("linux-6.1");
    let (elf, _) = support::linux::memory("linux-6.1");
    let dir = std::env::temp_dir().join(format!("xenvmi-guestos-raw-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("linux.raw");
    support::linux::write_raw(elf.backend(), &path);
    let mem = GuestMemory::new(Snapshot::open(&path).unwrap());
    let id = identify(&mem, &[], &Hints::default(), &mut |_| {});
    assert_eq!(id.kind, Some(OsKind::Linux), "{:?}", id.seen);
    assert!(id.seen.last().unwrap().contains("banner"), "{:?}", id.seen);
    let guest = discover(&mem, &[], DiscoverOptions::default()).unwrap();
    assert_eq!(
        guest.os_info().release,
        gt["kernel_release"].as_str().unwrap()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Everything the neutral API says of a Windows guest equals its spec.
fn check_windows(g: &WinGuest, guest: &Guest, mem: &GuestMemory<Snapshot>, what: &str) {
    assert_eq!(guest.kind(), OsKind::Windows, "{what}");
    let info = guest.os_info();
    assert_eq!(info.kernel_base, Gva(g.spec.kernel_base), "{what}");
    assert_eq!(info.release, g.spec.build.to_string(), "{what}");
    assert_eq!(info.kernel_space.root, Gpa(g.kernel_pml4), "{what}");
    for name in [
        "PsActiveProcessHead",
        "PsLoadedModuleList",
        "KiSystemCall64",
    ] {
        let va = g.spec.kernel_base + g.rva[name];
        assert_eq!(guest.symbol(name), Some(Gva(va)), "{what} {name}");
        let at = guest.symbol_at(Gva(va + 4)).unwrap();
        assert_eq!((at.addr, at.offset), (va, 4), "{what} {name}");
    }
    let procs: Vec<Process> = guest.processes(mem).map(|p| p.unwrap()).collect();
    let got: Vec<(u64, u64)> = procs.iter().map(|p| (p.pid, p.ppid)).collect();
    let want: Vec<(u64, u64)> = g.spec.processes.iter().map(|p| (p.pid, p.ppid)).collect();
    assert_eq!(got, want, "{what}");
    let drivers: Vec<String> = guest.modules(mem).map(|m| m.unwrap().name).collect();
    let want: Vec<String> = g.spec.drivers.iter().map(|d| d.name.clone()).collect();
    assert_eq!(drivers, want, "{what}");
    // CR3 -> process, by either root under KVA shadow, PCID bits ignored: the first process
    // in list order with that root (kernel processes may share the System process's).
    let first_with = |r: u64| {
        let j = g
            .roots
            .iter()
            .position(|x| x.0 == r || x.1 == Some(r))
            .unwrap();
        g.spec.processes[j].pid
    };
    for (root, user) in &g.roots {
        let p = guest.owner_of_cr3(&procs, root | 0x5).unwrap();
        assert_eq!(p.pid, first_with(*root), "{what}");
        if let Some(u) = user {
            let p = guest.owner_of_cr3(&procs, *u).unwrap();
            assert_eq!(p.pid, first_with(*u), "{what}");
        }
    }
    let (root, _) = g.roots[g.spec.processes.len() - 1];
    assert_eq!(
        guest.process_for_cr3(mem, root).unwrap().pid,
        first_with(root)
    );
}

/// Synthetic Windows guests of every profile, with registers (told by `MSR_LSTAR`) and as raw
/// images (told by the low stub, or without one by the self-referencing entry), never
/// reaching the Linux banner search.
#[test]
fn windows_guests_are_told_apart_without_a_linux_search() {
    for (file, build) in PROFILES {
        let isf = load_isf(file);
        let g = WinGuest::build(&isf, WinSpec::seeded(build, 0x6e05 + build as u64));
        let regs = g.registers();
        let raw = GuestMemory::new(Snapshot::from_bytes(g.mem.clone(), Some(Format::Raw)).unwrap());
        // With registers.
        let id = identify(&raw, &regs, &Hints::default(), &mut |_| {});
        assert_eq!(id.kind, Some(OsKind::Windows), "{file}: {:?}", id.seen);
        assert!(
            id.seen.last().unwrap().contains("MSR_LSTAR"),
            "{:?}",
            id.seen
        );
        let guest = discover(&raw, &regs, windows_options()).unwrap();
        check_windows(&g, &guest, &raw, &format!("{file} registers"));
        // Memory alone: the low stub decides before any search of memory.
        let id = identify(&raw, &[], &Hints::default(), &mut |_| {});
        assert_eq!(id.kind, Some(OsKind::Windows), "{file}: {:?}", id.seen);
        assert!(
            id.seen.last().unwrap().contains("low stub"),
            "{:?}",
            id.seen
        );
        assert!(
            !id.seen.iter().any(|s| s.contains("banner")),
            "{:?}",
            id.seen
        );
        let guest = discover(&raw, &[], windows_options()).unwrap();
        check_windows(&g, &guest, &raw, &format!("{file} raw"));
    }
    // No low stub: the self-referencing entry tells, after a banner search that finds none.
    let (file, build) = PROFILES[1];
    let mut spec = WinSpec::seeded(build, 0x5e1f);
    spec.low_stub = None;
    let g = WinGuest::build(&load_isf(file), spec);
    let raw = GuestMemory::new(Snapshot::from_bytes(g.mem.clone(), Some(Format::Raw)).unwrap());
    let id = identify(&raw, &[], &Hints::default(), &mut |_| {});
    assert_eq!(id.kind, Some(OsKind::Windows), "{:?}", id.seen);
    assert!(
        id.seen.last().unwrap().contains("self-referencing"),
        "{:?}",
        id.seen
    );
    let guest = discover(&raw, &[], windows_options()).unwrap();
    check_windows(&g, &guest, &raw, "no low stub");
}

/// A crash dump header is a Windows tell by itself.
#[test]
fn a_crash_dump_header_is_a_windows_tell() {
    let (file, build) = PROFILES[2];
    let g = WinGuest::build(&load_isf(file), WinSpec::typical(build));
    let raw = GuestMemory::new(Snapshot::from_bytes(g.mem.clone(), Some(Format::Raw)).unwrap());
    let hints = Hints {
        directory_table_base: Some(g.kernel_pml4),
        ..Hints::default()
    };
    let id = identify(&raw, &[], &hints, &mut |_| {});
    assert_eq!(id.kind, Some(OsKind::Windows));
    assert_eq!(id.seen.len(), 1, "{:?}", id.seen);
}

/// Neither OS: the error names the image and what each check saw.
#[test]
fn neither_os_is_a_clear_error() {
    let mem =
        GuestMemory::new(Snapshot::from_bytes(vec![0u8; 4 << 20], Some(Format::Raw)).unwrap());
    let e = discover(&mem, &[], DiscoverOptions::default()).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, Error::OsNotFound { .. }), "{msg}");
    for part in [
        "could not find a Linux or Windows kernel",
        "low stub",
        "Linux banner",
        "self-referencing",
        "MSR_LSTAR",
    ] {
        assert!(msg.contains(part), "{part}: {msg}");
    }
}

/// `Cr3Resolver` on a Windows guest: both roots of a KVA-shadow process resolve to it, the
/// System page tables are the kernel's, an unknown root costs one re-walk and is then
/// remembered, and `forget` drops both roots of a process.
#[test]
fn cr3_resolver_works_on_windows() {
    use xenvmi::os::{Cr3Owner, Cr3Resolver};
    let (file, build) = PROFILES[1];
    let g = WinGuest::build(&load_isf(file), WinSpec::typical(build));
    let mem = GuestMemory::new(Snapshot::from_bytes(g.mem.clone(), Some(Format::Raw)).unwrap());
    let guest = discover(&mem, &g.registers(), windows_options()).unwrap();
    let mut r = Cr3Resolver::new();
    assert_eq!(
        r.resolve(&guest, &mem, g.kernel_pml4 | 0x2),
        Cr3Owner::Kernel
    );
    assert_eq!(r.walks(), 0);
    let (i, (root, user)) = g
        .roots
        .iter()
        .enumerate()
        .find(|(_, (root, user))| *root != g.kernel_pml4 && user.is_some())
        .expect("a KVA-shadow process");
    let pid = g.spec.processes[i].pid;
    let owner = |o: Cr3Owner| match o {
        Cr3Owner::Process(p) => Some(p.pid),
        _ => None,
    };
    assert_eq!(owner(r.resolve(&guest, &mem, *root)), Some(pid));
    assert_eq!(
        owner(r.resolve(&guest, &mem, user.unwrap() | (1 << 63))),
        Some(pid)
    );
    assert_eq!(r.walks(), 1);
    let nobody = 0x7fff_f000;
    assert_eq!(r.resolve(&guest, &mem, nobody), Cr3Owner::Unknown);
    assert_eq!(r.resolve(&guest, &mem, nobody), Cr3Owner::Unknown);
    assert_eq!(r.walks(), 2);
    r.forget(*root);
    assert!(r.cached(Gpa(*root)).is_none());
    assert!(r.cached(Gpa(user.unwrap())).is_none());
    // Linux, through the same type: the fixture's vCPU owners.
    let gt = ground_truth("linux-6.1");
    let (lmem, regs) = support::linux::memory("linux-6.1");
    let linux = discover(&lmem, &regs, DiscoverOptions::default()).unwrap();
    let mut r = Cr3Resolver::new();
    for o in gt["vcpu_owners"].as_array().unwrap() {
        let got = owner(r.resolve(&linux, &lmem, hex(&o["cr3"]) | 0x1000));
        assert_eq!(got, o["pid"].as_u64(), "{o}");
    }
}

/// A running guest (the simulated domain) is identified with it paused and resumed after:
/// a Windows guest and the Linux fixture, each told apart as `identify` tells its image, the
/// pause count back to 0.
#[test]
fn a_running_guest_is_identified_paused_then_resumed() {
    use xenvmi::backend::sim::SimDomain;
    use xenvmi::os::identify_paused;
    for (file, build) in PROFILES {
        let isf = load_isf(file);
        let g = WinGuest::build(&isf, WinSpec::typical(build));
        let regs = g.registers();
        let sim = SimDomain::new(g.snapshot(), &regs);
        let id = identify_paused(&sim, &Hints::default()).unwrap();
        assert_eq!(id.kind, Some(OsKind::Windows), "{file}: {:?}", id.seen);
        assert_eq!(sim.state().pause_count(), 0, "{file}");
    }
    let image = support::fixture::fixture_file("linux-6.1", "vmcore.elf").unwrap();
    let snap = Snapshot::open(&image).unwrap();
    let regs = snap.all_registers().to_vec();
    let sim = SimDomain::new(snap, &regs);
    let id = identify_paused(&sim, &Hints::default()).unwrap();
    assert_eq!(id.kind, Some(OsKind::Linux), "{:?}", id.seen);
    assert_eq!(sim.state().pause_count(), 0);
}
