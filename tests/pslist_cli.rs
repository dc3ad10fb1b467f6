//! The `pslist` example as a user runs it: JSON on the bundled snapshot, and clear failures.

mod support;

use std::path::PathBuf;
use std::process::Command;

use support::fixture::{fixture_file, ground_truth, hex};

fn pslist() -> PathBuf {
    support::fixture::example_binary("pslist")
}

#[test]
fn json_output_matches_ground_truth() {
    let image = fixture_file("linux-6.1", "vmcore.elf").unwrap();
    let out = Command::new(pslist())
        .arg("--json")
        .arg(&image)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let gt = ground_truth("linux-6.1");
    assert_eq!(v["kernel"]["release"], gt["kernel_release"]);
    assert_eq!(
        hex(&v["kernel"]["kaslr_offset"]),
        hex(&gt["kaslr"]["virt_offset"])
    );
    assert_eq!(hex(&v["kernel"]["text_va"]), hex(&gt["kaslr"]["text_va"]));
    assert_eq!(hex(&v["kernel"]["text_pa"]), hex(&gt["kaslr"]["text_pa"]));
    assert_eq!(
        hex(&v["kernel"]["page_offset_base"]),
        hex(&gt["kaslr"]["page_offset_base"])
    );
    assert_eq!(v["kernel"]["paging_levels"], 4);
    assert_eq!(
        v["processes"].as_array().unwrap().len() as u64,
        gt["process_count"].as_u64().unwrap()
    );
    for p in v["processes"].as_array().unwrap() {
        let t = gt["processes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["pid"] == p["pid"])
            .unwrap();
        assert_eq!(p["comm"], t["comm"]);
        assert_eq!(p["ppid"], t["ppid"]);
        assert_eq!(p["kernel_thread"], t["kthread"]);
        assert_eq!(p["dtb"].is_null(), p["kernel_thread"].as_bool().unwrap());
    }
    let names: Vec<&serde_json::Value> = v["modules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| &m["name"])
        .collect();
    let want: Vec<&serde_json::Value> = gt["module_names_list_order"]
        .as_array()
        .unwrap()
        .iter()
        .collect();
    assert_eq!(names, want);
    for o in gt["vcpu_owners"].as_array().unwrap() {
        let c = &v["vcpus"][o["index"].as_u64().unwrap() as usize];
        assert_eq!(hex(&c["cr3"]), hex(&o["cr3"]));
        assert_eq!(c["pid"], o["pid"]);
    }
}

/// `--json --detail` on `linux-6.1-net`: each socket the guest's `/proc/net` lists with an
/// owner is in that process's `sockets`, with its inode, protocol and ends.
#[test]
fn detail_json_sockets_match_the_guests_proc_net() {
    let f = "linux-6.1-net";
    let image = fixture_file(f, "vmcore.elf").unwrap();
    let out = Command::new(pslist())
        .args(["--json", "--detail"])
        .arg(&image)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let gt = ground_truth(f);
    let mut compared = 0;
    for t in gt["sockets"].as_array().unwrap() {
        let (pid, fd) = (&t["pid"], &t["fd"]);
        if t["inode"] == 0 {
            continue;
        }
        let p = v["processes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| &p["pid"] == pid)
            .unwrap_or_else(|| panic!("pid {pid} not listed"));
        let s = p["sockets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| &s["fd"] == fd)
            .unwrap_or_else(|| panic!("pid {pid} fd {fd}: {}", p["sockets"]));
        for k in ["inode", "proto", "local", "remote"] {
            assert_eq!(s[k], t[k], "{k}: {s} vs {t}");
        }
        compared += 1;
    }
    assert!(compared >= 8, "{compared}");
}

#[test]
fn not_linux_and_unreadable_images_fail_clearly() {
    let dir = std::env::temp_dir().join(format!("xenvmi-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let zeros = dir.join("zeros.raw");
    std::fs::write(&zeros, vec![0u8; 4 << 20]).unwrap();
    let out = Command::new(pslist()).arg(&zeros).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    // Neither OS's tell: the message says what each check saw.
    assert!(
        err.contains("could not find a Linux or Windows kernel") && err.contains("low stub"),
        "{err}"
    );

    let out = Command::new(pslist())
        .arg(dir.join("nope.elf"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("nope.elf") && err.contains("No such file"),
        "{err}"
    );

    let out = Command::new(pslist()).arg("--bogus").output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("usage"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `pslist --windows` on a Windows crash dump: the synthetic Windows 11 guest (laid out by the
/// real 22000 ISF) in a synthetic full-dump container, profile chosen from
/// `fixtures/windows-isf` by the kernel's PDB GUID. Expected values come from the guest's spec.
#[test]
fn windows_crash_dump_json_matches_the_guest_it_was_made_from() {
    use support::crashdump as dmp;
    use support::windows_guest::{isf_dir, load_isf, WinGuest, WinSpec, PROFILES};

    let (file, build) = PROFILES[2];
    let isf = load_isf(file);
    let g = WinGuest::build(&isf, WinSpec::typical(build));
    let ctx = g.crash_context(1);
    let mut h = dmp::Header::example(g.kernel_pml4, ctx);
    h.ps_active_process_head = g.spec.kernel_base + g.rva["PsActiveProcessHead"];
    h.ps_loaded_module_list = g.spec.kernel_base + g.rva["PsLoadedModuleList"];
    let dir = std::env::temp_dir().join(format!("xenvmi-cli-win-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let image = dir.join("MEMORY.DMP");
    std::fs::write(&image, dmp::full_dump(&h, &[(0, &g.mem)])).unwrap();

    // No cache: a warm one names its entry, not the ISF, as the profile.
    let out = Command::new(pslist())
        .env("XENVMI_CACHE", "off")
        .args(["--json", "--dlls", "--windows"])
        .arg(isf_dir())
        .arg(&image)
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let hexs = |x: u64| format!("{x:#x}");
    assert_eq!(v["kernel"]["base"], hexs(g.spec.kernel_base));
    assert_eq!(v["kernel"]["build"], build);
    assert!(v["kernel"]["profile"].as_str().unwrap().ends_with(file));
    let procs = v["processes"].as_array().unwrap();
    assert_eq!(procs.len(), g.spec.processes.len());
    for (i, (p, s)) in procs.iter().zip(&g.spec.processes).enumerate() {
        assert_eq!(p["pid"], s.pid);
        assert_eq!(p["ppid"], s.ppid);
        assert_eq!(p["name"], s.name.chars().take(15).collect::<String>());
        assert_eq!(p["dtb"], hexs(g.roots[i].0));
        assert_eq!(p["eprocess"], hexs(g.eprocess[i]));
        if let Some(dlls) = &s.dlls {
            let got = v["dlls"]
                .as_array()
                .unwrap()
                .iter()
                .find(|d| d["pid"] == s.pid)
                .unwrap()["modules"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["name"].as_str().unwrap().to_string())
                .collect::<Vec<_>>();
            let want: Vec<String> = dlls.iter().map(|d| d.name.clone()).collect();
            assert_eq!(got, want);
        }
    }
    let drivers: Vec<&str> = v["drivers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    let want: Vec<&str> = g.spec.drivers.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(drivers, want);
    // The dump's one vCPU context runs on the kernel's page tables: the System process's.
    assert_eq!(v["vcpus"][0]["pid"], 4);
    // It is processor 1's (the spec's crashing processor), found from the kernel's records,
    // not labelled 0; every processor's owner is the spec's.
    assert_eq!(v["crashing_cpu"]["index"], 1);
    assert_eq!(v["vcpus"][0]["index"], 1);
    let cpus = v["processors"]["cpus"].as_array().unwrap();
    assert_eq!(cpus.len(), g.spec.cpus.len());
    for (i, (c, s)) in cpus.iter().zip(&g.spec.cpus).enumerate() {
        let p = &g.spec.processes[s.process.unwrap()];
        assert_eq!(c["index"], i);
        assert_eq!(c["pid"], p.pid);
        assert_eq!(c["prcb"], hexs(g.prcbs[i]));
        assert_eq!(c["registers"], serde_json::Value::Null); // a dump is not cross-checked
    }

    // Without --windows, a crash dump says what it needs.
    let dir = std::env::temp_dir().join(format!("xenvmi-cli-win2-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let image = dir.join("MEMORY.DMP");
    std::fs::write(&image, dmp::full_dump(&h, &[(0, &g.mem)])).unwrap();
    let out = Command::new(pslist())
        .env("XENVMI_WINDOWS_PROFILES", dir.join("no-profiles-here"))
        .arg(&image)
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--profile")
            && err.contains("--windows")
            && err.contains("holds a Windows kernel")
            && err.contains("no-profiles-here"),
        "{err}"
    );
}

/// `pslist --windows` on an ELF core of a 4-processor Windows 10 guest whose vCPU 3 runs on
/// page tables the kernel's records do not name for processor 3: every processor's owner is
/// printed from `KiProcessorBlock` and the disagreement is shown, not hidden.
#[test]
fn windows_elf_core_shows_every_processor_and_a_disagreement() {
    use support::windows_guest::{isf_dir, load_isf, WinGuest, WinSpec, PROFILES};
    let (file, build) = PROFILES[1];
    let g = WinGuest::build(&load_isf(file), WinSpec::with_cpus(build, 4));
    let mut regs = g.registers();
    assert_eq!(g.spec.cpus[3].process, Some(2)); // smss.exe
    regs[3].cr3 = g.roots[4].0 | 0x2; // explorer.exe's page tables
    let dir = std::env::temp_dir().join(format!("xenvmi-cli-wincpu-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let image = dir.join("win.elf");
    g.write_elf_core(&regs, &image);
    let out = Command::new(pslist())
        .arg("--windows")
        .arg(isf_dir())
        .arg(&image)
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cpu_lines: Vec<&str> = text.lines().filter(|l| l.starts_with("  CPU ")).collect();
    assert_eq!(cpu_lines.len(), 4, "{text}");
    // Owners from the spec: a process by pid and 15-byte name, or the idle process.
    let want: Vec<String> = g
        .spec
        .cpus
        .iter()
        .map(|c| match c.process {
            Some(p) => {
                let p = &g.spec.processes[p];
                format!(
                    "pid {} ({})",
                    p.pid,
                    p.name.chars().take(15).collect::<String>()
                )
            }
            None => "pid 0 (Idle)".into(),
        })
        .collect();
    for (line, who) in cpu_lines.iter().zip(&want) {
        assert!(line.contains(who.as_str()), "{line} should name {who}");
    }
    let dis: Vec<&str> = text.lines().filter(|l| l.contains("DISAGREES")).collect();
    assert_eq!(dis.len(), 1, "{text}");
    assert!(
        dis[0].contains("pid 388") && dis[0].contains("processor 3"),
        "{}",
        dis[0]
    );
}

/// `pslist --windows DIR` on a raw image and a LiME capture of a seeded Windows 10 guest
/// (no registers in either): every process, DLL and driver equals the spec, the root came
/// from the low stub, and every processor's owner is read from the kernel's records.
#[test]
fn windows_raw_and_lime_images_list_the_guest_they_were_made_from() {
    use support::windows_guest::{isf_dir, load_isf, WinGuest, WinSpec, PROFILES};
    let (file, build) = PROFILES[1];
    let g = WinGuest::build(&load_isf(file), WinSpec::seeded(build, 0x9a11));
    let dir = std::env::temp_dir().join(format!("xenvmi-cli-winraw-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let hexs = |x: u64| format!("{x:#x}");
    let lime = support::lime::image(&[(0, &g.mem[..0x9f000]), (0x10_0000, &g.mem[0x10_0000..])]);
    for (name, bytes) in [("win.raw", g.mem.clone()), ("win.lime", lime)] {
        let image = dir.join(name);
        std::fs::write(&image, bytes).unwrap();
        let out = Command::new(pslist())
            .args(["--json", "--dlls", "--windows"])
            .arg(isf_dir())
            .arg(&image)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["kernel"]["base"], hexs(g.spec.kernel_base), "{name}");
        assert_eq!(v["kernel"]["kernel_dtb"], hexs(g.kernel_pml4), "{name}");
        assert_eq!(
            v["kernel"]["root_source"],
            format!("low stub at {:#x}", g.spec.low_stub.unwrap()),
            "{name}"
        );
        let procs = v["processes"].as_array().unwrap();
        let got: Vec<(u64, u64, &str)> = procs
            .iter()
            .map(|p| {
                (
                    p["pid"].as_u64().unwrap(),
                    p["ppid"].as_u64().unwrap(),
                    p["name"].as_str().unwrap(),
                )
            })
            .collect();
        let names: Vec<String> = g
            .spec
            .processes
            .iter()
            .map(|p| p.name.chars().take(15).collect())
            .collect();
        let want: Vec<(u64, u64, &str)> = g
            .spec
            .processes
            .iter()
            .zip(&names)
            .map(|(p, n)| (p.pid, p.ppid, n.as_str()))
            .collect();
        assert_eq!(got, want, "{name}");
        for s in &g.spec.processes {
            let Some(dlls) = &s.dlls else { continue };
            let entry = v["dlls"]
                .as_array()
                .unwrap()
                .iter()
                .find(|d| d["pid"] == s.pid)
                .unwrap();
            let got: Vec<(String, String)> = entry["modules"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| {
                    (
                        m["name"].as_str().unwrap().to_owned(),
                        m["base"].as_str().unwrap().to_owned(),
                    )
                })
                .collect();
            let want: Vec<(String, String)> = dlls
                .iter()
                .map(|d| (d.name.clone(), hexs(d.base)))
                .collect();
            assert_eq!(got, want, "{name} pid {}", s.pid);
        }
        let drivers: Vec<&str> = v["drivers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["name"].as_str().unwrap())
            .collect();
        let want: Vec<&str> = g.spec.drivers.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(drivers, want, "{name}");
        // No registers: no vCPU rows, but every processor from KiProcessorBlock.
        assert_eq!(v["vcpus"].as_array().unwrap().len(), 0, "{name}");
        let cpus = v["processors"]["cpus"].as_array().unwrap();
        assert_eq!(cpus.len(), g.spec.cpus.len());
        for (c, s) in cpus.iter().zip(&g.spec.cpus) {
            let p = &g.spec.processes[s.process.unwrap()];
            assert_eq!(c["pid"], p.pid, "{name}");
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn guest_names_cannot_drive_the_terminal() {
    use xenvmi::backend::snapshot::Snapshot;
    use xenvmi::mem::GuestMemory;
    use xenvmi::os::linux::{Linux, ProfileSource};
    use xenvmi::Gva;

    // A copy of the real snapshot whose pid 1 is renamed, in guest memory, to an escape
    // sequence that sets the window title and clears the screen.
    let image = fixture_file("linux-6.1", "vmcore.elf").unwrap();
    let snap = Snapshot::open(&image).unwrap();
    let regs = snap.all_registers().to_vec();
    let mem = GuestMemory::new(snap);
    let linux = Linux::discover(&mem, &regs, ProfileSource::InGuest).unwrap();
    let init = linux
        .processes(&mem)
        .filter_map(Result::ok)
        .find(|p| p.pid == 1)
        .expect("pid 1");
    let comm = Gva(init.object.0 + linux.offsets().task_comm);
    let gpa = mem
        .translate_mapped(linux.info().kernel_space, comm)
        .unwrap()
        .0;
    let r = mem
        .backend()
        .regions()
        .iter()
        .find(|r| gpa >= r.gpa && gpa < r.gpa + r.len)
        .expect("backed");
    let at = r.file_offset + (gpa - r.gpa);
    drop(mem);
    let dir = std::env::temp_dir().join(format!("xenvmi-pslist-esc-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let copy = dir.join("vmcore.elf");
    std::fs::copy(&image, &copy).unwrap();
    let evil = b"\x1b]0;pwned\x07\x1b[2J\0";
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::OpenOptions::new().write(true).open(&copy).unwrap();
        f.seek(SeekFrom::Start(at)).unwrap();
        f.write_all(evil).unwrap();
    }
    let out = Command::new(pslist()).arg(&copy).output().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.stdout.contains(&0x1b) && !out.stdout.contains(&0x07),
        "raw control bytes reached the terminal"
    );
    assert!(
        text.lines()
            .any(|l| l.trim_start().starts_with("1 ")
                && l.ends_with("\\u{1b}]0;pwned\\u{7}\\u{1b}[2J")),
        "{text}"
    );
}

#[test]
fn a_corrupt_zst_leaves_no_partial_file() {
    let dir = std::env::temp_dir().join(format!("xenvmi-zst-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // A valid zstd frame header, then garbage.
    let src = dir.join("bad.elf.zst");
    let mut bytes = vec![0x28, 0xb5, 0x2f, 0xfd, 0x04, 0x58];
    bytes.extend(std::iter::repeat_n(0xa5u8, 4096));
    std::fs::write(&src, &bytes).unwrap();
    let dst = dir.join("out").join("bad.elf");
    assert!(support::fixture::unpack_zstd(&src, &dst).is_err());
    let left: Vec<_> = std::fs::read_dir(dst.parent().unwrap())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_build_cache_changes_nothing_but_the_profile_line() {
    // A private cache directory: the first run writes the build, the second reads it. Their
    // JSON equals that of a run without the cache (ground truth above checks that one).
    let image = fixture_file("linux-6.1", "vmcore.elf").unwrap();
    let dir = std::env::temp_dir().join(format!("xenvmi-pslist-cache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let run = |args: &[&str]| {
        let out = Command::new(pslist())
            .args(args)
            .arg(&image)
            .env("XENVMI_CACHE_DIR", &dir)
            .env_remove("XENVMI_CACHE")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let without = run(&["--json", "--no-cache"]);
    assert!(!dir.exists(), "--no-cache wrote the cache");
    let cold = run(&["--json"]);
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
    let warm = run(&["--json"]);
    assert_eq!(cold, without);
    assert_eq!(warm, without);
    // The table names where the profile came from.
    let table = run(&[]);
    assert!(table.contains("profile    symbols: kernel build cache (in-guest kallsyms)"));
    // --detail needs every type: it discovers, and equals a run without the cache.
    assert_eq!(
        run(&["--json", "--detail"]),
        run(&["--json", "--detail", "--no-cache"])
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `pslist --profile DIR IMAGE` (no `--windows`) on a seeded Windows 7 guest as a raw image
/// and as an ELF core with its vCPUs' registers, and `pslist IMAGE` with the profile directory
/// at the default place (`XENVMI_WINDOWS_PROFILES`): the OS is told apart by itself and every
/// process, DLL, driver and vCPU owner equals the guest's spec.
#[test]
fn windows_images_are_listed_without_the_windows_flag() {
    use support::windows_guest::{isf_dir, load_isf, WinGuest, WinSpec, PROFILES};
    let (file, build) = PROFILES[0];
    let g = WinGuest::build(&load_isf(file), WinSpec::seeded(build, 0x7a1d));
    let regs = g.registers();
    let dir = std::env::temp_dir().join(format!("xenvmi-cli-winauto-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let raw = dir.join("win.raw");
    std::fs::write(&raw, &g.mem).unwrap();
    let elf = dir.join("win.elf");
    g.write_elf_core(&regs, &elf);
    let hexs = |x: u64| format!("{x:#x}");
    // The first process in list order with a page-table root (kernel processes may share one).
    let owner = |cr3: u64| {
        let r = cr3 & 0x000f_ffff_ffff_f000;
        let j = g
            .roots
            .iter()
            .position(|x| x.0 == r || x.1 == Some(r))
            .unwrap();
        g.spec.processes[j].pid
    };
    let runs: [(&str, &std::path::Path, bool); 3] = [
        ("raw --profile", &raw, true),
        ("ELF --profile", &elf, true),
        ("raw, default place", &raw, false),
    ];
    for (what, image, flag) in runs {
        let mut cmd = Command::new(pslist());
        cmd.env("XENVMI_CACHE", "off").args(["--json", "--dlls"]);
        if flag {
            cmd.env("XENVMI_WINDOWS_PROFILES", dir.join("none"));
            cmd.arg("--profile").arg(isf_dir());
        } else {
            cmd.env("XENVMI_WINDOWS_PROFILES", isf_dir());
        }
        let out = cmd.arg(image).output().unwrap();
        assert!(
            out.status.success(),
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["kernel"]["base"], hexs(g.spec.kernel_base), "{what}");
        assert_eq!(v["kernel"]["build"], build, "{what}");
        assert!(v["kernel"]["profile"].as_str().unwrap().ends_with(file));
        let got: Vec<(u64, u64, String)> = v["processes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["pid"].as_u64().unwrap(),
                    p["ppid"].as_u64().unwrap(),
                    p["name"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        let want: Vec<(u64, u64, String)> = g
            .spec
            .processes
            .iter()
            .map(|p| (p.pid, p.ppid, p.name.chars().take(15).collect()))
            .collect();
        assert_eq!(got, want, "{what}");
        for s in &g.spec.processes {
            let Some(dlls) = &s.dlls else { continue };
            let entry = v["dlls"]
                .as_array()
                .unwrap()
                .iter()
                .find(|d| d["pid"] == s.pid)
                .unwrap();
            let got: Vec<(String, String)> = entry["modules"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| {
                    (
                        m["name"].as_str().unwrap().to_owned(),
                        m["base"].as_str().unwrap().to_owned(),
                    )
                })
                .collect();
            let want: Vec<(String, String)> = dlls
                .iter()
                .map(|d| (d.name.clone(), hexs(d.base)))
                .collect();
            assert_eq!(got, want, "{what} pid {}", s.pid);
        }
        let drivers: Vec<&str> = v["drivers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["name"].as_str().unwrap())
            .collect();
        let want: Vec<&str> = g.spec.drivers.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(drivers, want, "{what}");
        let vcpus = v["vcpus"].as_array().unwrap();
        if image == elf.as_path() {
            assert_eq!(vcpus.len(), regs.len(), "{what}");
            for (c, r) in vcpus.iter().zip(&regs) {
                assert_eq!(c["pid"], owner(r.cr3), "{what}");
            }
        } else {
            assert!(vcpus.is_empty(), "{what}");
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
