//! Linux introspection on real guest memory, checked against what each guest reported about
//! itself (`ground-truth.json`) and against the make-linux-guest reference walker's vCPU owners
//! (`verify-elf.json`). Nothing here compares with output recorded from xenvmi.

mod support;

use std::collections::BTreeSet;

use serde_json::Value;
use support::fixture::{fixture_dir, fixture_file, ground_truth, hex};
use xenvmi::backend::snapshot::Snapshot;
use xenvmi::mem::{AddressSpace, GuestMemory, PagingMode};
use xenvmi::os::linux::{Linux, ProfileSource};
use xenvmi::os::Process;
use xenvmi::{Gva, Registers};

use support::linux::FIXTURES;

/// The guest's `comm` for a ground-truth task. make-truth.py strips `-<workqueue>` from kworker
/// names because /proc appends it; 6.12 rescuer threads carry `kworker/R-<wq>` in `comm`
/// itself, so for those the truth is the /proc text cut to 15 bytes (TASK_COMM_LEN - 1).
fn truth_comm(p: &Value) -> String {
    let proc_text = p["comm_proc"].as_str().unwrap_or("");
    if proc_text.starts_with("kworker/R-") {
        proc_text.chars().take(15).collect()
    } else {
        p["comm"].as_str().unwrap().to_owned()
    }
}

fn open(fixture: &str) -> (GuestMemory<Snapshot>, Vec<Registers>) {
    support::linux::memory(fixture)
}

fn files_source(fixture: &str) -> ProfileSource {
    ProfileSource::Files {
        btf: fixture_file(fixture, "btf-vmlinux").unwrap(),
        symbols: fixture_file(fixture, "kallsyms").unwrap(),
    }
}

/// Check everything the issue asks for against ground truth.
fn check(fixture: &str, linux: &Linux, mem: &GuestMemory<Snapshot>, regs: &[Registers], how: &str) {
    let gt = ground_truth(fixture);
    let ctx = format!("{fixture} ({how})");
    let k = linux.info();

    // Kernel and KASLR.
    assert_eq!(
        k.release,
        gt["kernel_release"].as_str().unwrap(),
        "{ctx}: release"
    );
    assert_eq!(
        k.banner.trim_end(),
        gt["linux_banner_expected"].as_str().unwrap().trim_end(),
        "{ctx}: banner"
    );
    assert_eq!(k.text_va.0, hex(&gt["kaslr"]["text_va"]), "{ctx}: _text");
    assert_eq!(k.text_pa.0, hex(&gt["kaslr"]["text_pa"]), "{ctx}: _text pa");
    assert_eq!(
        k.kaslr_offset,
        hex(&gt["kaslr"]["virt_offset"]),
        "{ctx}: KASLR offset"
    );
    assert_eq!(
        k.phys_base,
        hex(&gt["kaslr"]["phys_base"]),
        "{ctx}: phys_base"
    );
    assert_eq!(
        k.page_offset_base.0,
        hex(&gt["kaslr"]["page_offset_base"]),
        "{ctx}: page_offset_base"
    );
    let la57 = gt["vcpus"][0]["la57"].as_bool().unwrap();
    assert_eq!(
        k.paging,
        if la57 {
            PagingMode::Level5
        } else {
            PagingMode::Level4
        },
        "{ctx}: paging mode"
    );

    // Symbol translation through the kernel page tables vs. the guest's own pa values.
    for (name, s) in gt["symbols"].as_object().unwrap() {
        let (Some(pa), Some(va)) = (s["pa"].as_str(), s["addr"].as_str()) else {
            continue;
        };
        let va = hex(&Value::from(va));
        let pa = hex(&Value::from(pa));
        assert_eq!(
            linux.symbol(name).map(|g| g.0),
            Some(va),
            "{ctx}: symbol {name}"
        );
        assert_eq!(
            mem.translate_mapped(k.kernel_space, Gva(va)).unwrap().0,
            pa,
            "{ctx}: translate {name}"
        );
    }

    // Every task: pid, tgid, ppid, comm, kernel thread.
    let procs: Vec<Process> = linux
        .processes(mem)
        .map(|p| p.unwrap_or_else(|e| panic!("{ctx}: {e}")))
        .collect();
    let got: BTreeSet<(u64, u64, u64, String, bool)> = procs
        .iter()
        .map(|p| (p.pid, p.tgid, p.ppid, p.name.clone(), p.kernel_thread))
        .collect();
    let want: BTreeSet<(u64, u64, u64, String, bool)> = gt["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["pid"].as_u64().unwrap(),
                p["tgid"].as_u64().unwrap(),
                p["ppid"].as_u64().unwrap(),
                truth_comm(p),
                p["kthread"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        procs.len(),
        gt["process_count"].as_u64().unwrap() as usize,
        "{ctx}: task count"
    );
    assert_eq!(got, want, "{ctx}: tasks");
    for p in &procs {
        assert_eq!(
            p.dtb.is_some(),
            !p.kernel_thread,
            "{ctx}: dtb of {} {}",
            p.pid,
            p.name
        );
    }

    // Modules in list order with base and size.
    let mods: Vec<(String, u64, u64)> = linux
        .modules(mem)
        .map(|m| {
            m.map(|m| (m.name, m.base.0, m.size))
                .unwrap_or_else(|e| panic!("{ctx}: {e}"))
        })
        .collect();
    let want_mods: Vec<(String, u64, u64)> = gt["modules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap().to_owned(),
                hex(&m["base"]),
                m["size"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(mods, want_mods, "{ctx}: modules");
    let order: Vec<&str> = gt["module_names_list_order"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        mods.iter().map(|m| m.0.as_str()).collect::<Vec<_>>(),
        order,
        "{ctx}: module order"
    );

    // vCPU CR3 owners.
    for (i, cr3, pid) in support::fixture::vcpu_cr3_owners(fixture, &gt) {
        assert_eq!(regs[i].cr3, cr3, "{ctx}: vCPU {i} CR3 from the ELF notes");
        let owner = linux
            .owner_of_cr3(&procs, cr3)
            .unwrap_or_else(|| panic!("{ctx}: no owner for vCPU {i}"));
        assert_eq!(owner.pid, pid, "{ctx}: owner of vCPU {i}");
    }

    // User-space translation through a process's own page tables vs. QEMU's gva2gpa.
    for (_, chk) in gt["user_va_checks_qemu"].as_object().unwrap() {
        let pid = chk["pid"].as_u64().unwrap();
        let p = procs.iter().find(|p| p.pid == pid).unwrap();
        let space = AddressSpace {
            root: p.dtb.unwrap(),
            mode: k.paging,
        };
        for key in ["start_stack", "arg_start", "env_start"] {
            let va = hex(&chk[key]["va"]);
            let want = chk[key]["gva2gpa"]
                .as_str()
                .unwrap()
                .trim_start_matches("gpa: ");
            let want = u64::from_str_radix(want.trim_start_matches("0x"), 16).unwrap();
            assert_eq!(
                mem.translate_mapped(space, Gva(va)).unwrap().0,
                want,
                "{ctx}: pid {pid} {key}"
            );
        }
    }
}

#[test]
fn zero_configuration_with_vcpu_registers() {
    for f in FIXTURES {
        let (mem, regs) = open(f);
        let linux = Linux::discover(&mem, &regs, ProfileSource::InGuest)
            .unwrap_or_else(|e| panic!("{f}: {e}"));
        assert!(
            linux.info().located_by.contains("vCPU"),
            "{f}: {}",
            linux.info().located_by
        );
        check(f, &linux, &mem, &regs, "in-guest kallsyms + BTF");
    }
}

#[test]
fn zero_configuration_from_memory_alone() {
    for f in FIXTURES {
        let (mem, regs) = open(f);
        let linux = Linux::discover(&mem, &[], ProfileSource::InGuest)
            .unwrap_or_else(|e| panic!("{f}: {e}"));
        assert!(
            linux.info().located_by.contains("physical"),
            "{f}: {}",
            linux.info().located_by
        );
        check(f, &linux, &mem, &regs, "memory alone");
    }
}

#[test]
fn btf_and_kallsyms_files() {
    for f in FIXTURES {
        let (mem, regs) = open(f);
        let linux =
            Linux::discover(&mem, &regs, files_source(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        check(f, &linux, &mem, &regs, "BTF + kallsyms files");
        let linux =
            Linux::discover(&mem, &[], files_source(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        check(f, &linux, &mem, &regs, "BTF + kallsyms files, no registers");
    }
}

#[test]
fn volatility_isf_profile() {
    let f = "linux-6.1";
    let isf = fixture_dir(f).join("debian-6.1.0-56-amd64.json.xz");
    let (mem, regs) = open(f);
    let linux = Linux::discover(&mem, &regs, ProfileSource::Isf(isf.clone())).unwrap();
    check(f, &linux, &mem, &regs, "ISF");
    let linux = Linux::discover(&mem, &[], ProfileSource::Isf(isf)).unwrap();
    check(f, &linux, &mem, &regs, "ISF, no registers");
}

/// KPTI: the only registers given are those of a vCPU in user mode on a user page table
/// (CR3 bit 12 set), where the kernel is not mapped; discovery must find the kernel twin.
#[test]
fn kpti_user_cr3_leads_to_kernel_page_tables() {
    let f = "linux-6.1-cloud-pti";
    let (mem, regs) = open(f);
    let gt = ground_truth(f);
    let user = gt["vcpus"]
        .as_array()
        .unwrap()
        .iter()
        .position(|v| v["cpl"].as_u64() == Some(3))
        .expect("a vCPU in user mode");
    let cr3 = regs[user].cr3;
    assert_ne!(
        cr3 & 0x1000,
        0,
        "{f}: vCPU {user} CR3 {cr3:#x} should be a KPTI user PGD"
    );
    // The user page table really lacks the kernel image.
    let user_space = AddressSpace::from_cr3(cr3, PagingMode::Level4);
    let text = hex(&gt["kaslr"]["text_va"]);
    assert!(
        mem.translate_mapped(user_space, Gva(text)).is_err(),
        "{f}: _text mapped in the user PGD"
    );
    let linux = Linux::discover(&mem, &regs[user..=user], ProfileSource::InGuest).unwrap();
    assert!(
        linux
            .info()
            .located_by
            .contains(&format!("vCPU 0 CR3 {cr3:#x}")),
        "{}",
        linux.info().located_by
    );
    check(f, &linux, &mem, &regs, "KPTI user CR3 only");
}

/// A running guest (the simulated domain over the dump) is paused for discovery and resumed
/// after it, also when no kernel is found.
#[test]
fn discovery_on_a_running_guest_pauses_it_and_resumes_it() {
    use xenvmi::backend::sim::SimDomain;
    let path = fixture_file("linux-6.1", "vmcore.elf").unwrap();
    let snap = Snapshot::open(&path).unwrap();
    let regs = snap.all_registers().to_vec();
    let sim = SimDomain::new(snap, &regs);
    let (linux, seen) = Linux::discover_paused(&sim, ProfileSource::InGuest).unwrap();
    let gt = ground_truth("linux-6.1");
    assert_eq!(linux.info().release, gt["kernel_release"].as_str().unwrap());
    assert_eq!(seen.len(), regs.len());
    assert_eq!(seen[1].cr3, regs[1].cr3);
    assert_eq!(sim.state().pause_count(), 0);

    let zeros = Snapshot::from_bytes(vec![0u8; 1 << 20], None).unwrap();
    let empty = SimDomain::new(zeros, &regs);
    let e = Linux::discover_paused(&empty, ProfileSource::InGuest).unwrap_err();
    assert!(matches!(e, xenvmi::Error::OsNotFound { .. }), "{e}");
    assert_eq!(empty.state().pause_count(), 0);
}
