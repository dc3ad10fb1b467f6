//! Desired state (`xenvmi::attest`) on the real Linux dumps, checked against each guest's own
//! report (`ground-truth.json`) and values computed without xenvmi: a manifest learned from
//! a guest attests that guest with no deviation; another kernel build, a program or module
//! dropped from the manifest, a changed code hash are each reported exactly; live, on the
//! simulated domain, a program started after learning that is not in the manifest is a
//! deviation; malformed manifests are refused with the file and field named.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use support::fixture::{fixture_file, ground_truth, hex};
use support::traced::guest;
use xenvmi::attest::{
    self, attest, observe, Deviation, DeviationKind, Enforcer, Learner, Manifest, Sha256, Subject,
};
use xenvmi::backend::PhysicalMemoryWrite;
use xenvmi::event::hooks::{Hooks, Placement};
use xenvmi::event::session::Session;
use xenvmi::mem::GuestMemory;
use xenvmi::trace::{LinuxTracer, Probe, TraceFilter};
use xenvmi::Gva;

/// `sha256sum` of a fixture file: the digest computed by another program.
fn sha256sum(path: &Path) -> String {
    let out = std::process::Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()[..64].to_owned()
}

/// The guest's user processes (pid, comm), from its report.
fn user_processes(fixture: &str) -> BTreeSet<(u64, String)> {
    ground_truth(fixture)["processes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["kthread"] == false)
        .map(|p| {
            (
                p["pid"].as_u64().unwrap(),
                p["comm"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// The guest's modules (name, size, base), from its report.
fn modules(fixture: &str) -> Vec<(String, u64, u64)> {
    ground_truth(fixture)["modules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap().to_owned(),
                m["size"].as_u64().unwrap(),
                hex(&m["base"]),
            )
        })
        .collect()
}

fn learned(fixture: &str) -> Manifest {
    let (mem, linux) = support::linux::open(fixture);
    let l = Learner::from_observation(&observe(&mem, &linux));
    assert!(l.warnings().is_empty(), "{:?}", l.warnings());
    l.manifest()
}

fn enforce(fixture: &str, m: &Manifest) -> xenvmi::attest::Attestation {
    let (mem, linux) = support::linux::open(fixture);
    attest(m, &observe(&mem, &linux))
}

fn process_of(d: &Deviation) -> (u64, String) {
    match &d.subject {
        Subject::Process { pid, comm, .. } => (*pid, comm.clone()),
        s => panic!("not a process: {s:?}"),
    }
}

#[test]
fn a_manifest_learned_from_a_guest_is_the_guests_state_and_attests_it() {
    let m = learned("linux-6.1");
    let gt = ground_truth("linux-6.1");
    // The kernel build: the guest's own banner and release, and the SHA-256 of its BTF as
    // sha256sum computes it over the guest's /sys/kernel/btf/vmlinux.
    assert_eq!(m.kernel.release, gt["kernel_release"].as_str().unwrap());
    assert_eq!(
        m.kernel.banner,
        gt["linux_banner_expected"].as_str().unwrap().trim_end()
    );
    let btf = fixture_file("linux-6.1", "btf-vmlinux").unwrap();
    assert_eq!(
        m.kernel.btf_sha256.map(|h| h.to_hex()),
        Some(sha256sum(&btf))
    );
    // Every module the guest listed, with the size /proc/modules showed.
    let want: BTreeSet<(String, u64)> = modules("linux-6.1")
        .into_iter()
        .map(|(n, s, _)| (n, s))
        .collect();
    let got: BTreeSet<(String, u64)> = m.modules.iter().map(|(n, e)| (n.clone(), e.size)).collect();
    assert_eq!(got, want);
    // The guest's programs are busybox applets and scripts (fixtures/README.md): one
    // executable, its first code page present and hashed.
    assert_eq!(m.executables.keys().collect::<Vec<_>>(), ["/bin/busybox"]);
    let page = m.executables["/bin/busybox"].code_page.unwrap();
    assert!(page.sha256.is_some());
    // No false positives: the same guest attests, every user process checked.
    let a = enforce("linux-6.1", &m);
    assert!(a.attested(), "{:?}", a.deviations);
    assert!(a.unverified.is_empty(), "{:?}", a.unverified);
    assert_eq!(a.processes_checked, user_processes("linux-6.1").len());
    assert_eq!(a.modules_checked, want.len());
    // The manifest file round trip.
    let text = m.to_json().to_string();
    assert_eq!(Manifest::parse(text.as_bytes(), "m").unwrap(), m);
}

#[test]
fn another_kernel_build_is_reported_with_its_module_changes() {
    let m = learned("linux-6.1");
    let a = enforce("linux-6.12", &m);
    let gt61 = ground_truth("linux-6.1");
    let gt612 = ground_truth("linux-6.12");
    let kernel: Vec<&Deviation> = a
        .deviations
        .iter()
        .filter(|d| d.kind == DeviationKind::KernelBuildChanged)
        .collect();
    assert_eq!(kernel.len(), 2, "{kernel:?}");
    assert_eq!(kernel[0].field, "kernel.banner");
    assert_eq!(
        kernel[0].expected.as_deref(),
        Some(gt61["linux_banner_expected"].as_str().unwrap().trim_end())
    );
    assert_eq!(
        kernel[0].seen,
        gt612["linux_banner_expected"].as_str().unwrap().trim_end()
    );
    assert_eq!(kernel[1].field, "kernel.btf_sha256");
    assert_eq!(
        kernel[1].seen,
        sha256sum(&fixture_file("linux-6.12", "btf-vmlinux").unwrap())
    );
    assert!(matches!(&kernel[0].subject, Subject::Kernel { release }
        if release == gt612["kernel_release"].as_str().unwrap()));
    // Modules: each of 6.12's that 6.1 did not list is unexpected, each listed with another
    // size is a mismatch, as the two reports give them.
    let old: std::collections::BTreeMap<String, u64> = modules("linux-6.1")
        .into_iter()
        .map(|(n, s, _)| (n, s))
        .collect();
    let mut want = BTreeSet::new();
    for (name, size, base) in modules("linux-6.12") {
        match old.get(&name) {
            None => {
                want.insert((DeviationKind::UnexpectedModule, name, base, None, size));
            }
            Some(&s) if s != size => {
                want.insert((DeviationKind::ModuleMismatch, name, base, Some(s), size));
            }
            Some(_) => {}
        }
    }
    assert!(!want.is_empty());
    let got: BTreeSet<_> = a
        .deviations
        .iter()
        .filter_map(|d| match &d.subject {
            Subject::Module { name, base, size } => Some((
                d.kind,
                name.clone(),
                base.0,
                d.expected.as_ref().map(|e| e.parse::<u64>().unwrap()),
                *size,
            )),
            _ => None,
        })
        .collect();
    assert_eq!(got, want);
    // Processes: 6.12's every user process was checked; both guests run the same busybox
    // binary (the same first code page), so none deviates.
    assert_eq!(a.processes_checked, user_processes("linux-6.12").len());
    assert!(a
        .deviations
        .iter()
        .all(|d| !matches!(d.subject, Subject::Process { .. })));
    assert_eq!(a.deviations.len(), 2 + want.len());
}

#[test]
fn a_program_dropped_from_the_manifest_is_reported_for_each_process_running_it() {
    let mut m = learned("linux-6.1");
    assert!(m.executables.remove("/bin/busybox").is_some());
    let a = enforce("linux-6.1", &m);
    for d in &a.deviations {
        assert_eq!(d.kind, DeviationKind::UnexpectedExecutable);
        assert_eq!(d.field, "path");
        assert_eq!(d.expected, None);
        assert_eq!(d.seen, "/bin/busybox");
        assert!(matches!(&d.subject, Subject::Process { exe: Some(e), .. } if e == "/bin/busybox"));
        assert_eq!(d.vcpu, None);
    }
    let got: BTreeSet<(u64, String)> = a.deviations.iter().map(process_of).collect();
    assert_eq!(got.len(), a.deviations.len());
    assert_eq!(got, user_processes("linux-6.1"));
}

#[test]
fn a_module_dropped_from_the_manifest_is_exactly_that_module() {
    let mut m = learned("linux-6.1");
    let (name, size, base) = modules("linux-6.1")[2].clone();
    assert!(m.modules.remove(&name).is_some());
    let a = enforce("linux-6.1", &m);
    assert_eq!(a.deviations.len(), 1, "{:?}", a.deviations);
    let d = &a.deviations[0];
    assert_eq!(d.kind, DeviationKind::UnexpectedModule);
    assert_eq!(d.seen, name);
    assert_eq!(
        d.subject,
        Subject::Module {
            name: name.clone(),
            base: Gva(base),
            size
        }
    );
}

#[test]
fn a_changed_code_page_hash_is_a_code_mismatch_for_each_process() {
    let mut m = learned("linux-6.1");
    let page = m
        .executables
        .get_mut("/bin/busybox")
        .unwrap()
        .code_page
        .as_mut()
        .unwrap();
    let real = page.sha256.unwrap();
    page.sha256 = Some(Sha256::of(b"another program"));
    let a = enforce("linux-6.1", &m);
    let got: BTreeSet<(u64, String)> = a.deviations.iter().map(process_of).collect();
    assert_eq!(got, user_processes("linux-6.1"));
    for d in &a.deviations {
        assert_eq!(d.kind, DeviationKind::CodeMismatch);
        assert_eq!(d.field, "code_page.sha256");
        assert_eq!(d.seen, real.to_hex());
    }
}

/// Rename the file the process on vCPU 0 runs (its `exe_file` dentry's name, `busybox`, 7
/// bytes) to `new`, of the same length, in the simulated guest's memory: the guest now runs
/// `/bin/<new>`.
fn rename_exe(g: &support::traced::Guest, new: &[u8; 7]) {
    let mem = GuestMemory::new(&g.sim);
    let l = &g.linux;
    let t = l.types();
    let ks = l.info().kernel_space;
    let task = l.current_task(&mem, &g.kernel_regs).unwrap();
    let read = |va: u64| mem.read_u64(ks, Gva(va)).unwrap();
    let mm = read(task.object.0 + l.offsets().task_mm);
    let file = read(mm + t.require("mm_struct", "exe_file").unwrap());
    let dentry =
        read(file + t.require("file", "f_path").unwrap() + t.require("path", "dentry").unwrap());
    let name =
        read(dentry + t.require("dentry", "d_name").unwrap() + t.require("qstr", "name").unwrap());
    let mut old = [0u8; 8];
    mem.read(ks, Gva(name), &mut old).unwrap();
    assert_eq!(&old, b"busybox\0");
    let gpa = mem.translate_mapped(ks, Gva(name)).unwrap();
    g.sim.write_physical(gpa, new).unwrap();
}

#[test]
fn live_a_program_started_after_learning_and_not_in_the_manifest_is_a_deviation() {
    let g = guest();
    let mem = GuestMemory::new(&g.sim);
    // Learn: one look when monitoring starts.
    let manifest = Learner::from_observation(&observe(&mem, &g.linux)).manifest();
    let module = g.linux.modules(&mem).next().unwrap().unwrap();
    let mut without_module = manifest.clone();
    without_module.modules.remove(&module.name);
    let enforcer = Enforcer::new(manifest);
    let strict = Enforcer::new(without_module);
    assert!(enforcer.check_kernel(&mem, &g.linux).is_empty());
    let mut results = Vec::new();
    {
        let mut s = Session::new(&g.sim).unwrap();
        let mut hooks = Hooks::new(&mut s, Placement::Stealth).unwrap();
        let mut t = LinuxTracer::place(
            &mut hooks,
            &mut s,
            &mem,
            &g.linux,
            &[Probe::ProcessStart, Probe::ModuleLoad],
            TraceFilter::new(),
        )
        .unwrap();
        let m = module.object.0;
        let mut step = |func: &str, rdi: Option<u64>, hooks: &mut Hooks, s: &mut _| {
            let events = g.call(
                hooks,
                s,
                &mut t,
                func,
                |r| {
                    if let Some(v) = rdi {
                        r.rdi = v
                    }
                },
                None,
            );
            assert_eq!(events.len(), 1, "{func}");
            let e = events.into_iter().next().unwrap().unwrap();
            let mem = GuestMemory::new(&g.sim);
            (
                enforcer.check_event(&mem, &g.linux, &e),
                strict.check_event(&mem, &g.linux, &e),
            )
        };
        // A program and a module the manifest lists: nothing.
        results.push(step("finalize_exec", None, &mut hooks, &mut s));
        results.push(step("do_init_module", Some(m), &mut hooks, &mut s));
        // The guest now starts /bin/xvgamma.
        rename_exe(&g, b"xvgamma");
        results.push(step("finalize_exec", None, &mut hooks, &mut s));
        s.teardown().unwrap();
    }
    let (known, _) = &results[0];
    assert!(known.attested(), "{:?}", known.deviations);
    assert!(known.unverified.is_empty(), "{:?}", known.unverified);
    let (module_ok, module_strict) = &results[1];
    assert!(module_ok.attested());
    assert_eq!(module_strict.deviations.len(), 1);
    let d = &module_strict.deviations[0];
    assert_eq!(d.kind, DeviationKind::UnexpectedModule);
    assert_eq!(d.seen, module.name);
    assert_eq!(d.vcpu, Some(xenvmi::VcpuId(0)));
    let (gamma, _) = &results[2];
    assert_eq!(gamma.deviations.len(), 1, "{:?}", gamma.deviations);
    let d = &gamma.deviations[0];
    assert_eq!(d.kind, DeviationKind::UnexpectedExecutable);
    assert_eq!(d.seen, "/bin/xvgamma");
    assert_eq!(d.vcpu, Some(xenvmi::VcpuId(0)));
    // The process is the one the guest's report puts on vCPU 0.
    assert_eq!(
        d.subject,
        Subject::Process {
            pid: g.pid,
            ppid: g.ppid,
            comm: g.comm.clone(),
            exe: Some("/bin/xvgamma".into()),
        }
    );
    g.assert_clean();
}

#[test]
fn live_learning_accumulates_the_programs_and_modules_the_events_show() {
    let g = guest();
    let mem = GuestMemory::new(&g.sim);
    let snapshot_learned = Learner::from_observation(&observe(&mem, &g.linux)).manifest();
    // Learning from events alone: only what started or loaded during the period.
    let mut learner = Learner::new(attest::kernel_build(&mem, &g.linux));
    let module = g.linux.modules(&mem).next().unwrap().unwrap();
    {
        let mut s = Session::new(&g.sim).unwrap();
        let mut hooks = Hooks::new(&mut s, Placement::InPlace).unwrap();
        let mut t = LinuxTracer::place(
            &mut hooks,
            &mut s,
            &mem,
            &g.linux,
            &[Probe::ProcessStart, Probe::ModuleLoad],
            TraceFilter::new(),
        )
        .unwrap();
        let m = module.object.0;
        for (func, rdi) in [("finalize_exec", None), ("do_init_module", Some(m))] {
            let events = g.call(
                &mut hooks,
                &mut s,
                &mut t,
                func,
                |r| {
                    if let Some(v) = rdi {
                        r.rdi = v
                    }
                },
                None,
            );
            assert_eq!(events.len(), 1, "{func}");
            let e = events.into_iter().next().unwrap().unwrap();
            learner.add_event(&GuestMemory::new(&g.sim), &g.linux, &e);
        }
        s.teardown().unwrap();
    }
    assert!(learner.warnings().is_empty(), "{:?}", learner.warnings());
    let m = learner.manifest();
    assert_eq!(m.kernel, snapshot_learned.kernel);
    // The started program, with the code page the process on vCPU 0 has present: the same
    // entry as learned from the whole snapshot.
    assert_eq!(m.executables, snapshot_learned.executables);
    // The loaded module alone, with the size the guest's report gives it.
    let (name, size, _) = modules("linux-6.1")
        .into_iter()
        .find(|(n, _, _)| *n == module.name)
        .unwrap();
    assert_eq!(
        m.modules.into_iter().collect::<Vec<_>>(),
        [(name, xenvmi::attest::ExpectedModule { size })]
    );
    g.assert_clean();
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("xenvmi-attest-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A valid manifest's JSON to break.
fn valid() -> serde_json::Value {
    serde_json::json!({
        "format": "xenvmi-attest-manifest",
        "version": 1,
        "kernel": {"release": "6.1.0", "banner": "Linux version 6.1.0", "btf_sha256": null},
        "executables": [{"path": "/bin/busybox", "code_page": {
            "file_offset": 4096, "present": true, "sha256": "ab".repeat(32)}}],
        "modules": [{"name": "dummy", "size": 16384}],
    })
}

#[test]
fn malformed_manifests_are_refused_naming_the_file_and_the_field() {
    let d = scratch("bad");
    let load = |name: &str, bytes: &[u8]| {
        let p = d.join(name);
        std::fs::write(&p, bytes).unwrap();
        Manifest::load(&p).map(|_| ()).unwrap_err().to_string()
    };
    assert!(Manifest::load(&{
        let p = d.join("ok.json");
        std::fs::write(&p, valid().to_string()).unwrap();
        p
    })
    .is_ok());
    let edit = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut v = valid();
        f(&mut v);
        v.to_string().into_bytes()
    };
    let cases: Vec<(&str, Vec<u8>, &[&str])> = vec![
        ("json.json", b"{\"format\": ".to_vec(), &["not valid JSON"]),
        (
            "version.json",
            edit(&|v| v["version"] = 2.into()),
            &["field version", "2"],
        ),
        (
            "format.json",
            edit(&|v| v["format"] = "other".into()),
            &["field format"],
        ),
        (
            "unknown.json",
            edit(&|v| v["modules"][0]["signed"] = true.into()),
            &["field modules[0].signed", "unknown field"],
        ),
        (
            "unknown-top.json",
            edit(&|v| v["policy"] = 1.into()),
            &["field policy", "unknown field"],
        ),
        (
            "hash.json",
            edit(&|v| v["executables"][0]["code_page"]["sha256"] = "ab".repeat(31).into()),
            &[
                "field executables[0].code_page.sha256",
                "64 hex digits",
                "62",
            ],
        ),
        (
            "btf.json",
            edit(&|v| v["kernel"]["btf_sha256"] = "zz".repeat(32).into()),
            &["field kernel.btf_sha256", "non-hex"],
        ),
        (
            "missing.json",
            edit(&|v| {
                v["kernel"].as_object_mut().unwrap().remove("banner");
            }),
            &["field kernel.banner", "missing"],
        ),
        (
            "type.json",
            edit(&|v| v["modules"][0]["size"] = "big".into()),
            &["field modules[0].size", "expected an integer"],
        ),
        (
            "present.json",
            edit(&|v| v["executables"][0]["code_page"]["present"] = false.into()),
            &["field executables[0].code_page.sha256", "present false"],
        ),
        (
            "twice.json",
            edit(&|v| {
                let e = v["executables"][0].clone();
                v["executables"].as_array_mut().unwrap().push(e);
            }),
            &["field executables[1].path", "listed twice"],
        ),
        (
            "name.json",
            edit(&|v| v["modules"][0]["name"] = "m".repeat(65).into()),
            &["field modules[0].name", "65 bytes"],
        ),
    ];
    for (name, bytes, needles) in cases {
        let e = load(name, &bytes);
        assert!(e.contains(name), "{name}: {e}");
        assert!(e.contains("attestation manifest"), "{name}: {e}");
        for n in needles {
            assert!(e.contains(n), "{name}: {n:?} not in {e}");
        }
    }
    // Huge: refused from its length, before it is read.
    let huge = d.join("huge.json");
    let f = std::fs::File::create(&huge).unwrap();
    f.set_len(xenvmi::attest::MAX_MANIFEST_BYTES + 1).unwrap();
    let e = Manifest::load(&huge).unwrap_err().to_string();
    assert!(e.contains("huge.json") && e.contains("allowed"), "{e}");
    // A symbolic link, even to a valid manifest.
    let link = d.join("link.json");
    std::os::unix::fs::symlink(d.join("ok.json"), &link).unwrap();
    let e = Manifest::load(&link).unwrap_err().to_string();
    assert!(
        e.contains("link.json") && e.contains("symbolic link"),
        "{e}"
    );
    // A directory, and a file that is not there.
    let e = Manifest::load(&d).unwrap_err().to_string();
    assert!(e.contains("a directory"), "{e}");
    let e = Manifest::load(&d.join("none.json"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("none.json"), "{e}");
    std::fs::remove_dir_all(&d).unwrap();
}
