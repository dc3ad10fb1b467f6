//! `cr3-trace`, `kernel-guard` and `trace` as users run them, on the simulated domain over the real
//! Linux 6.1 snapshot; output checked against the guest's ground truth. `cr3-trace` also on a
//! synthetic Windows guest (the OS-neutral API), checked against the guest's spec.

mod support;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;

use support::fixture::{fixture_file, ground_truth};

fn example(name: &str) -> PathBuf {
    support::fixture::example_binary(name)
}

/// `cr3-trace --simulate` on an ELF core of a synthetic Windows 10 guest (laid out by the real
/// 19041 ISF), the OS told apart by itself, the profile from `--profile DIR`: every switch is
/// named, a process by its spec pid and name, the System page tables as the kernel's.
#[test]
fn cr3_trace_names_windows_switches_from_the_guest_spec() {
    use support::windows_guest::{isf_dir, load_isf, WinGuest, WinSpec, PROFILES};
    let (file, build) = PROFILES[1];
    let g = WinGuest::build(&load_isf(file), WinSpec::typical(build));
    let dir = std::env::temp_dir().join(format!("xenvmi-cr3win-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let image = dir.join("win.elf");
    g.write_elf_core(&g.registers(), &image);
    let out = Command::new(example("cr3-trace"))
        .arg("--simulate")
        .arg(&image)
        .arg("--profile")
        .arg(isf_dir())
        .args(["--rounds", "2"])
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("Windows {build}")), "{text}");
    // The first process in list order with each root (kernel processes share System's).
    let mut owners: HashMap<u64, (u64, String)> = HashMap::new();
    for (i, (root, _)) in g.roots.iter().enumerate() {
        let p = &g.spec.processes[i];
        owners
            .entry(*root)
            .or_insert((p.pid, p.name.chars().take(15).collect()));
    }
    let mut seen = std::collections::HashSet::new();
    let mut kernel = 0;
    for line in text.lines().filter(|l| l.starts_with("vCPU ")) {
        let new = line
            .split("-> ")
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap();
        let root = u64::from_str_radix(new.trim_start_matches("0x"), 16).unwrap() & !0xfff;
        if line.contains("kernel page tables") {
            assert_eq!(root, g.kernel_pml4, "{line}");
            kernel += 1;
            continue;
        }
        let (pid, name) = &owners[&root];
        assert!(line.contains(&format!("pid {pid:>5}  {name}")), "{line}");
        seen.insert(*pid);
    }
    let user_roots = owners.keys().filter(|r| **r != g.kernel_pml4).count();
    assert_eq!(seen.len(), user_roots, "{text}");
    assert!(kernel > 0, "{text}");
    assert!(
        text.contains("teardown done: 0 vCPU(s) paused, 0 monitor(s) left"),
        "{text}"
    );
}

#[test]
fn cr3_trace_names_every_switch_like_the_guest_does() {
    let image = fixture_file("linux-6.1", "vmcore.elf").unwrap();
    let out = Command::new(example("cr3-trace"))
        .args(["--simulate"])
        .arg(&image)
        .args(["--rounds", "2"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("SIMULATED domain (not Xen)"));
    let gt = ground_truth("linux-6.1");
    let names: HashMap<u64, String> = gt["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["pid"].as_u64().unwrap(),
                p["comm"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let user: usize = gt["processes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| !p["kthread"].as_bool().unwrap())
        .count();
    let mut switches = 0;
    let mut kernel = 0;
    for line in text.lines().filter(|l| l.starts_with("vCPU ")) {
        switches += 1;
        if line.contains("kernel page tables") {
            kernel += 1;
            continue;
        }
        let tail = line
            .split("pid")
            .nth(1)
            .unwrap_or_else(|| panic!("unresolved: {line}"));
        let mut it = tail.split_whitespace();
        let pid: u64 = it.next().unwrap().parse().unwrap();
        let name = it.next().unwrap();
        assert_eq!(names.get(&pid).map(String::as_str), Some(name), "{line}");
    }
    // Every user process twice (2 rounds), plus the kernel switches in between.
    assert_eq!(switches - kernel, 2 * user, "{text}");
    assert!(kernel > 0);
    assert!(
        text.contains("teardown done: 0 vCPU(s) paused, 0 monitor(s) left"),
        "{text}"
    );
}

#[test]
fn kernel_guard_denies_the_scripted_rootkit_and_keeps_the_guest_intact() {
    let image = fixture_file("linux-6.1", "vmcore.elf").unwrap();
    let out = Command::new(example("kernel-guard"))
        .arg("--simulate")
        .arg(&image)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let alerts: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let whats: Vec<&str> = alerts.iter().map(|a| a["what"].as_str().unwrap()).collect();
    assert_eq!(
        whats,
        [
            "cr4_smep_smap_clear",
            "msr_lstar_write",
            "kernel_text_write"
        ]
    );
    for a in &alerts {
        assert_eq!(a["action"], "denied");
        assert!(a["time"].as_f64().unwrap() > 0.0);
        assert!(a["process"].is_object() || a["process"] == "kernel", "{a}");
    }
    assert!(err.contains("SMEP/SMAP kept: true; LSTAR kept: true; kernel text kept: true; guest released cleanly: true"), "{err}");
}

#[test]
fn trace_reports_the_process_on_vcpu_0_as_the_guest_does() {
    let image = fixture_file("linux-6.1", "vmcore.elf").unwrap();
    let out = Command::new(example("trace"))
        .args(["--simulate"])
        .arg(&image)
        .args(["--procs", "--json"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    // vCPU 0 runs finalize_exec: the start of the process it runs, by the guest's report.
    let gt = ground_truth("linux-6.1");
    let owner = &gt["vcpu_owners"][0];
    let p = gt["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["pid"] == owner["pid"])
        .unwrap();
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let start = events
        .iter()
        .find(|e| e["type"] == "process_start")
        .unwrap_or_else(|| panic!("{events:?}\n{err}"));
    assert_eq!(start["pid"], p["pid"]);
    assert_eq!(start["ppid"], p["ppid"]);
    assert_eq!(start["comm"], owner["comm"]);
    assert_eq!(start["argv"], p["cmdline"]);
    assert!(err.contains("trace: tracing process_start exit"), "{err}");
    assert!(
        err.contains("left behind: 0 vCPU(s) paused, 0 monitor(s), 0 view(s), 0 frame(s)"),
        "{err}"
    );
    // A system call the guest's table lacks: refused by name, non-zero exit.
    let out = Command::new(example("trace"))
        .args(["--simulate"])
        .arg(&image)
        .args(["--syscalls=openat,no_such_call"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("sys_no_such_call"), "{err}");
}

#[test]
fn asking_for_xen_here_is_a_clear_error() {
    let have_xen = std::path::Path::new("/dev/xen/privcmd").exists();
    for ex in ["cr3-trace", "kernel-guard", "trace"] {
        let out = Command::new(example(ex))
            .args(["--domain", "guest1"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        if cfg!(feature = "xen") {
            if have_xen {
                continue;
            }
            // Built with the backend, on a host without Xen: the failing call, device and errno.
            assert!(!out.status.success());
            assert!(
                err.contains("xc_interface_open")
                    && err.contains("/dev/xen/privcmd")
                    && err.contains("errno 2"),
                "{err}"
            );
        } else {
            assert!(!out.status.success());
            assert!(
                err.contains("guest1")
                    && err.contains("--features xen")
                    && err.contains("--simulate"),
                "{err}"
            );
        }
    }
}

#[test]
fn dump_writes_a_paused_core_of_the_guest_and_refuses_bad_paths() {
    use xenvmi::backend::snapshot::Snapshot;
    use xenvmi::backend::PhysicalMemory;
    let image = fixture_file("linux-6.1", "vmcore.elf").unwrap();
    let dir = std::env::temp_dir().join(format!("xenvmi-dump-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let core = dir.join("guest.elf");
    let run =
        |args: &[&std::ffi::OsStr]| Command::new(example("dump")).args(args).output().unwrap();
    let out = run(&[
        "--simulate".as_ref(),
        image.as_os_str(),
        "--pause".as_ref(),
        core.as_os_str(),
        "--json".as_ref(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["consistency"], "paused");
    assert!(v["paused_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(v["missing_bytes"], 0);
    assert!(!dir.join("guest.elf.partial").exists());
    // The core holds the guest's memory and registers exactly.
    let (src, copy) = (
        Snapshot::open(&image).unwrap(),
        Snapshot::open(&core).unwrap(),
    );
    assert_eq!(copy.all_registers(), src.all_registers());
    assert_eq!(copy.physical_ranges(), src.physical_ranges());
    assert_eq!(
        v["bytes_written"],
        src.physical_ranges()
            .iter()
            .map(|r| r.end - r.start)
            .sum::<u64>()
    );
    assert_eq!(v["vcpus"], src.all_registers().len());

    // Errors: one line on stderr naming the path, exit 1, nothing written.
    let fails = |args: &[&std::ffi::OsStr], needle: &str| {
        let out = run(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.starts_with("dump: ") && err.contains(needle), "{err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    };
    fails(
        &[image.as_os_str(), core.as_os_str()],
        &format!("{}: exists; give --force", core.display()),
    );
    let missing = dir.join("no-such-image");
    fails(
        &[missing.as_os_str(), dir.join("x.elf").as_os_str()],
        &missing.display().to_string(),
    );
    fails(&[image.as_os_str(), dir.as_os_str()], "is a directory");
    let truncated = dir.join("truncated.elf");
    std::fs::write(&truncated, &std::fs::read(&core).unwrap()[..4096]).unwrap();
    fails(
        &[truncated.as_os_str(), dir.join("y.elf").as_os_str()],
        &truncated.display().to_string(),
    );
    fails(
        &[
            image.as_os_str(),
            "--pause".as_ref(),
            dir.join("z.elf").as_os_str(),
        ],
        "nothing runs in it",
    );
    for f in ["x.elf", "y.elf", "z.elf", "x.elf.partial", "y.elf.partial"] {
        assert!(!dir.join(f).exists(), "{f} left behind");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
