//! The `xenvmi` command as a user runs it (`docs/cli.md`): each subcommand on the bundled
//! fixtures, checked against what the guest reported about itself (`ground-truth.json`), and
//! every error path: exit status as documented, one line on stderr naming the file or domain.
//! `info`, `ps` and `modules` on synthetic Windows guests too (`mod win` below), checked
//! against each guest's specification.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::fixture::{fixture_file, ground_truth, guest_kallsyms, hex};

fn xenvmi(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xenvmi"))
        .args(args)
        .output()
        .unwrap()
}

/// Run, expect success, parse stdout as one JSON object.
fn json(args: &[&std::ffi::OsStr]) -> serde_json::Value {
    let out = xenvmi(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn image() -> PathBuf {
    fixture_file("linux-6.1", "vmcore.elf").unwrap()
}

/// A fresh directory for one test.
fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("xenvmi-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `ps --json` of `image` has exactly the guest's processes: pid, ppid, comm, kernel thread.
fn assert_processes_are_the_guests(v: &serde_json::Value, fixture: &str) {
    let gt = ground_truth(fixture);
    let got = v["processes"].as_array().unwrap();
    assert_eq!(got.len() as u64, gt["process_count"].as_u64().unwrap());
    let want = gt["processes"].as_array().unwrap();
    for p in got {
        let t = want
            .iter()
            .find(|t| t["pid"] == p["pid"])
            .unwrap_or_else(|| panic!("pid {} is not the guest's", p["pid"]));
        assert_eq!(p["ppid"], t["ppid"]);
        assert_eq!(p["comm"], t["comm"]);
        assert_eq!(p["kernel_thread"], t["kthread"]);
    }
}

#[test]
fn info_json_is_the_guests_kernel_placement_and_vcpus() {
    let i = image();
    let v = json(&["info".as_ref(), "--json".as_ref(), i.as_os_str()]);
    let gt = ground_truth("linux-6.1");
    assert_eq!(v["os"], "linux");
    assert_eq!(v["format"], "QEMU ELF core");
    assert_eq!(v["image"], i.display().to_string());
    assert_eq!(v["kernel"]["release"], gt["kernel_release"]);
    assert_eq!(
        v["kernel"]["banner"].as_str().unwrap(),
        gt["linux_banner_expected"].as_str().unwrap().trim_end()
    );
    assert_eq!(
        hex(&v["kernel"]["kaslr_offset"]),
        hex(&gt["kaslr"]["virt_offset"])
    );
    assert_eq!(hex(&v["kernel"]["text_va"]), hex(&gt["kaslr"]["text_va"]));
    assert_eq!(hex(&v["kernel"]["text_pa"]), hex(&gt["kaslr"]["text_pa"]));
    assert!(v["profile"]["symbols"]
        .as_str()
        .unwrap()
        .contains("in-guest"));
    assert!(v["profile"]["types"].as_str().unwrap().contains("BTF"));
    let vcpus = v["vcpus"].as_array().unwrap();
    assert_eq!(vcpus.len(), gt["vcpus"].as_array().unwrap().len());
    for o in gt["vcpu_owners"].as_array().unwrap() {
        let c = &vcpus[o["index"].as_u64().unwrap() as usize];
        assert_eq!(hex(&c["cr3"]), hex(&o["cr3"]));
        assert_eq!(c["pid"], o["pid"]);
    }
}

#[test]
fn info_reads_a_newer_kernel_and_an_isf_profile() {
    let i = fixture_file("linux-6.12", "vmcore.elf").unwrap();
    let v = json(&["info".as_ref(), "--json".as_ref(), i.as_os_str()]);
    let gt = ground_truth("linux-6.12");
    assert_eq!(v["kernel"]["release"], gt["kernel_release"]);
    assert_eq!(
        hex(&v["kernel"]["kaslr_offset"]),
        hex(&gt["kaslr"]["virt_offset"])
    );
    // The same guest through its Volatility3 ISF: the same placement, the profile named.
    let isf = support::fixture::fixture_dir("linux-6.1").join("debian-6.1.0-56-amd64.json.xz");
    let v = json(&[
        "info".as_ref(),
        "--json".as_ref(),
        "--profile".as_ref(),
        isf.as_os_str(),
        image().as_os_str(),
    ]);
    let gt = ground_truth("linux-6.1");
    assert_eq!(v["kernel"]["release"], gt["kernel_release"]);
    assert_eq!(
        hex(&v["kernel"]["kaslr_offset"]),
        hex(&gt["kaslr"]["virt_offset"])
    );
    assert!(!v["profile"]["types"].as_str().unwrap().contains("in-guest"));
}

#[test]
fn ps_json_is_the_guests_process_list() {
    let v = json(&["ps".as_ref(), "--json".as_ref(), image().as_os_str()]);
    assert_processes_are_the_guests(&v, "linux-6.1");
    // With no image: the bundled snapshot, the same guest.
    let v = json(&["ps".as_ref(), "--json".as_ref()]);
    assert_processes_are_the_guests(&v, "linux-6.1");
}

#[test]
fn ps_detail_has_each_processes_argv_as_the_guest_reported_it() {
    let v = json(&[
        "ps".as_ref(),
        "--json".as_ref(),
        "--detail".as_ref(),
        image().as_os_str(),
    ]);
    assert_processes_are_the_guests(&v, "linux-6.1");
    let gt = ground_truth("linux-6.1");
    let mut checked = 0;
    for t in gt["processes"].as_array().unwrap() {
        let Some(want) = t["cmdline"].as_array() else {
            continue;
        };
        let p = v["processes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["pid"] == t["pid"])
            .unwrap();
        for key in [
            "environ", "exe", "uid", "threads", "maps", "files", "sockets",
        ] {
            assert!(p.get(key).is_some(), "pid {}: no {key}", p["pid"]);
        }
        if want.is_empty() {
            continue;
        }
        let got = p["cmdline"]
            .as_array()
            .unwrap_or_else(|| panic!("pid {}: {}", p["pid"], p["unreadable"]));
        assert_eq!(got, want, "pid {}", p["pid"]);
        checked += 1;
    }
    assert!(checked > 0);
}

#[test]
fn modules_json_is_the_guests_module_list() {
    let v = json(&["modules".as_ref(), "--json".as_ref(), image().as_os_str()]);
    let gt = ground_truth("linux-6.1");
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
    for m in gt["modules"].as_array().unwrap() {
        let got = v["modules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["name"] == m["name"])
            .unwrap();
        assert_eq!(got["size"], m["size"]);
        assert_eq!(hex(&got["base"]), hex(&m["base"]));
    }
}

#[test]
fn text_output_names_the_guests_kernel_processes_and_modules() {
    let i = image();
    let gt = ground_truth("linux-6.1");
    let text = |cmd: &str| {
        let out = xenvmi(&[cmd.as_ref(), i.as_os_str()]);
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    assert!(text("info").contains(gt["kernel_release"].as_str().unwrap()));
    let ps = text("ps");
    assert_eq!(
        ps.lines().count() as u64 - 1,
        gt["process_count"].as_u64().unwrap()
    );
    let modules = text("modules");
    for m in gt["module_names_list_order"].as_array().unwrap() {
        assert!(modules.contains(m.as_str().unwrap()), "{modules}");
    }
}

#[test]
fn dump_round_trip_holds_the_guests_processes() {
    let dir = scratch("dump");
    let out = dir.join("copy.elf");
    let v = json(&[
        "dump".as_ref(),
        image().as_os_str(),
        out.as_os_str(),
        "--json".as_ref(),
    ]);
    assert_eq!(v["consistency"], "live");
    assert_eq!(v["missing_bytes"], 0);
    assert_eq!(v["out"], out.display().to_string());
    assert_eq!(
        v["vcpus"].as_u64().unwrap() as usize,
        ground_truth("linux-6.1")["vcpus"].as_array().unwrap().len()
    );
    assert!(!dir.join("copy.elf.partial").exists());
    let v = json(&["ps".as_ref(), "--json".as_ref(), out.as_os_str()]);
    assert_processes_are_the_guests(&v, "linux-6.1");
    // An existing OUT is kept without --force, replaced with it.
    let again = xenvmi(&["dump".as_ref(), image().as_os_str(), out.as_os_str()]);
    assert_one_line_error(&again, 1, &out.display().to_string());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    let forced = xenvmi(&[
        "dump".as_ref(),
        image().as_os_str(),
        out.as_os_str(),
        "--force".as_ref(),
    ]);
    assert!(forced.status.success());
    let _ = std::fs::remove_dir_all(&dir);
}

/// `trace --simulate`: vCPU 0 of the dump runs `finalize_exec` with its own registers, so the
/// one process start reported is that of the process the guest had on vCPU 0, with the argv
/// of its `/proc/PID/cmdline`; a filter on another pid drops it before anything is read.
#[test]
fn trace_on_the_simulated_domain_reports_the_guests_own_process() {
    let gt = ground_truth("linux-6.1");
    let owner = &gt["vcpu_owners"][0];
    let truth = gt["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["pid"] == owner["pid"])
        .unwrap();
    let out = xenvmi(&[
        "trace".as_ref(),
        "--simulate".as_ref(),
        image().as_os_str(),
        "--procs".as_ref(),
        "--json".as_ref(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let events: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let starts: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["type"] == "process_start")
        .collect();
    assert_eq!(starts.len(), 1, "{events:?}");
    let e = starts[0];
    assert_eq!(e["pid"], owner["pid"]);
    assert_eq!(e["comm"], truth["comm"]);
    assert_eq!(e["ppid"], truth["ppid"]);
    assert_eq!(e["argv"], truth["cmdline"]);
    assert!(err.contains("tracing process_start exit"), "{err}");
    assert!(err.contains("teardown done"), "{err}");

    let other = xenvmi(&[
        "trace".as_ref(),
        "--simulate".as_ref(),
        image().as_os_str(),
        "--procs".as_ref(),
        "--pid".as_ref(),
        "1".as_ref(),
        "--json".as_ref(),
    ]);
    let err = String::from_utf8_lossy(&other.stderr);
    assert!(other.status.success(), "{err}");
    assert!(
        other.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&other.stdout)
    );
    // Both probes (finalize_exec, taskstats_exit) are called once by pid 106: both dropped.
    assert!(err.contains("0 events (none); 2 filtered out"), "{err}");
}

/// A kernel build read back from the cache directory holds only what the process walkers
/// need; `attest learn` must still learn the same manifest as with no cache at all (the
/// executables with their code pages, the kernel's BTF hash), not an empty one.
#[test]
fn attest_learns_the_same_with_a_warm_build_cache() {
    let dir = scratch("attest-cache");
    let cache = dir.join("cache");
    let learn = |manifest: &Path, cache_env: (&str, &std::ffi::OsStr)| -> serde_json::Value {
        let out = Command::new(env!("CARGO_BIN_EXE_xenvmi"))
            .env_remove("XENVMI_CACHE")
            .env(cache_env.0, cache_env.1)
            .args(["attest".as_ref(), "learn".as_ref(), image().as_os_str()])
            .args(["--manifest".as_ref(), manifest.as_os_str()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&std::fs::read(manifest).unwrap()).unwrap()
    };
    let cold = learn(&dir.join("cold.json"), ("XENVMI_CACHE", "off".as_ref()));
    // Warm the cache with a walk-only run, then learn through it.
    let ps = Command::new(env!("CARGO_BIN_EXE_xenvmi"))
        .env_remove("XENVMI_CACHE")
        .env("XENVMI_CACHE_DIR", &cache)
        .args(["ps".as_ref(), image().as_os_str()])
        .output()
        .unwrap();
    assert!(ps.status.success());
    assert!(
        std::fs::read_dir(&cache).unwrap().count() > 0,
        "no build file written"
    );
    let warm = learn(
        &dir.join("warm.json"),
        ("XENVMI_CACHE_DIR", cache.as_os_str()),
    );
    assert!(!cold["executables"].as_array().unwrap().is_empty());
    assert_eq!(warm["executables"], cold["executables"]);
    assert_eq!(warm["kernel"], cold["kernel"]);
    assert_eq!(warm["modules"], cold["modules"]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Exit status `code`, exactly one line on stderr, which contains `needle`.
fn assert_one_line_error(out: &Output, code: i32, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{err}");
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(err.starts_with("xenvmi: "), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains(needle), "`{needle}` not in: {err}");
}

/// The argument lists that run `cmd` on `image` (dump writes to a file in `dir`).
fn on_image(cmd: &str, image: &Path, dir: &Path) -> Vec<std::ffi::OsString> {
    let mut a = vec![cmd.into()];
    if cmd == "trace" || cmd == "guard" {
        a.push("--simulate".into());
    }
    a.push(image.into());
    if cmd == "dump" {
        a.push(dir.join("never-written.elf").into());
    }
    a.push("--json".into());
    a
}

fn run_os(args: &[std::ffi::OsString]) -> Output {
    let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    xenvmi(&args)
}

#[test]
fn bad_images_are_one_line_errors_naming_the_file() {
    let dir = scratch("bad");
    let missing = dir.join("no-such-image.elf");
    let truncated = dir.join("truncated.elf");
    let whole = std::fs::read(image()).map(|b| b[..4096].to_vec());
    std::fs::write(&truncated, whole.unwrap()).unwrap();
    for cmd in ["info", "ps", "modules", "dump", "trace", "guard"] {
        for bad in [&missing, &dir, &truncated] {
            let out = run_os(&on_image(cmd, bad, &dir));
            assert_one_line_error(&out, 1, &bad.display().to_string());
        }
        assert!(!dir.join("never-written.elf").exists());
        assert!(!dir.join("never-written.elf.partial").exists());
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_unknown_domain_is_a_one_line_error_naming_it() {
    let dir = scratch("domain");
    let out_file = dir.join("x.elf");
    let cases: [&[&str]; 7] = [
        &["info", "--domain", "no-such-domain", "--json"],
        &["guard", "--domain", "no-such-domain", "--json"],
        &["trace", "--domain", "no-such-domain", "--json"],
        &["ps", "--domain", "no-such-domain", "--json"],
        &["modules", "--domain", "no-such-domain", "--json"],
        &["dump", "--domain", "no-such-domain", "OUT", "--json"],
        &["recover", "--domain", "no-such-domain", "--json"],
    ];
    for args in cases {
        let args: Vec<&std::ffi::OsStr> = args
            .iter()
            .map(|a| {
                if *a == "OUT" {
                    out_file.as_os_str()
                } else {
                    a.as_ref()
                }
            })
            .collect();
        let out = xenvmi(&args);
        assert_one_line_error(&out, 1, "no-such-domain");
        if !cfg!(feature = "xen") {
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains("without the Xen backend"), "{err}");
            assert!(err.contains("--features cli,xen"), "{err}");
        }
    }
    assert!(!out_file.exists());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Run as an unprivileged user (65534), when this test runs as root and `setpriv` exists.
fn as_nobody(args: &[&std::ffi::OsStr]) -> Option<Output> {
    let root = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false);
    let setpriv = ["/usr/bin/setpriv", "/bin/setpriv"]
        .into_iter()
        .find(|p| Path::new(p).exists())?;
    if !root {
        return None;
    }
    Some(
        Command::new(setpriv)
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_xenvmi"))
            .args(args)
            .output()
            .unwrap(),
    )
}

#[test]
fn without_root_the_error_says_so_and_names_the_domain_or_file() {
    if cfg!(feature = "xen") {
        // With the Xen backend: --domain needs root, and says so.
        for cmd in ["info", "ps", "modules", "recover", "trace", "guard"] {
            let Some(out) = as_nobody(&[cmd.as_ref(), "--domain".as_ref(), "x".as_ref()]) else {
                eprintln!("not root or no setpriv: skipped");
                return;
            };
            assert_one_line_error(&out, 1, "domain x");
            assert!(String::from_utf8_lossy(&out.stderr).contains("root"));
        }
    }
    // An image the user may not read: the error names it.
    let dir = scratch("noroot");
    let secret = dir.join("secret.elf");
    std::fs::copy(image(), &secret).unwrap();
    let mode =
        |m| std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(m));
    mode(0o000).unwrap();
    let _ = std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755));
    for cmd in ["info", "ps", "modules"] {
        let Some(out) = as_nobody(&[cmd.as_ref(), secret.as_os_str()]) else {
            eprintln!("not root or no setpriv: skipped");
            break;
        };
        assert_one_line_error(&out, 1, &secret.display().to_string());
        assert!(String::from_utf8_lossy(&out.stderr).contains("ermission denied"));
    }
    for cmd in ["trace", "guard"] {
        let Some(out) = as_nobody(&[cmd.as_ref(), "--simulate".as_ref(), secret.as_os_str()])
        else {
            break;
        };
        assert_one_line_error(&out, 1, &secret.display().to_string());
        assert!(String::from_utf8_lossy(&out.stderr).contains("ermission denied"));
    }
    mode(0o600).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["ps", "--detail"][..],
        &["dump", "only-one-path"],
        &["info", "--no-such-flag"],
        &["info", "a.elf", "--domain", "x"],
        &["recover"],
        &["trace"],
        &["trace", "--domain", "x", "--simulate"],
        &["trace", "--simulate", "--pid", "not-a-pid"],
        &["guard"],
        &["guard", "--domain", "x", "--simulate"],
        &["guard", "--domain", "x", "--benign"],
        &["guard", "--simulate", "--no-text", "--policies", "cr4"],
        &["guard", "--simulate", "--text-pages", "many"],
        &["completions", "no-such-shell"],
    ] {
        let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_ref()).collect();
        let out = xenvmi(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
    let help = xenvmi(&["--help".as_ref()]);
    assert!(help.status.success());
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("Exit status") && help.contains("2  usage"),
        "{help}"
    );
}

#[test]
fn completions_and_man_page_come_from_the_definitions() {
    let subcommands = [
        "info",
        "ps",
        "modules",
        "dump",
        "recover",
        "trace",
        "guard",
        "completions",
        "man",
    ];
    let out = xenvmi(&["completions".as_ref(), "bash".as_ref()]);
    assert!(out.status.success());
    let bash = String::from_utf8(out.stdout).unwrap();
    assert!(!bash.is_empty());
    for s in subcommands {
        assert!(bash.contains(s), "{s} not in the bash completions");
    }
    let out = xenvmi(&["man".as_ref()]);
    assert!(out.status.success());
    let man = String::from_utf8(out.stdout).unwrap();
    // clap_mangen writes two roff requests that define a quote string, then the header.
    let first_macro = man
        .lines()
        .find(|l| l.starts_with(".TH") || l.starts_with(".SH"))
        .unwrap();
    assert!(first_macro.starts_with(".TH xenvmi 1"), "{man}");
    for s in subcommands {
        assert!(man.contains(s), "{s} not in the man page");
    }
}

/// `attest learn` then `attest enforce`: the same guest attests (exit 0), the 6.12 guest
/// deviates (exit 3) in its kernel build, with the two guests' own banners; a malformed
/// manifest is one error line naming the file and the field (exit 1), before the image is
/// read; an existing manifest is kept without --force; no --manifest is a usage error.
#[test]
fn attest_learn_then_enforce_exit_codes_and_reports() {
    let dir = scratch("attest");
    let m = dir.join("m.json");
    let s = |p: &Path| p.as_os_str().to_owned();
    let learn: Vec<std::ffi::OsString> = vec![
        "attest".into(),
        "learn".into(),
        s(&image()),
        "--manifest".into(),
        s(&m),
        "--json".into(),
    ];
    let out = run_os(&learn);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let gt = ground_truth("linux-6.1");
    assert_eq!(v["kernel"], gt["kernel_release"]);
    assert_eq!(v["modules"], gt["modules"].as_array().unwrap().len());
    assert!(!dir.join("m.json.partial").exists());
    // Learned again: refused, the manifest kept.
    let before = std::fs::read(&m).unwrap();
    assert_one_line_error(&run_os(&learn), 1, "--force");
    assert_eq!(std::fs::read(&m).unwrap(), before);

    let enforce = |img: &Path, manifest: &Path| -> Output {
        run_os(&[
            "attest".into(),
            "enforce".into(),
            s(img),
            "--manifest".into(),
            s(manifest),
            "--json".into(),
        ])
    };
    let out = enforce(&image(), &m);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["attested"], true);
    assert_eq!(v["deviations"], serde_json::json!([]));
    let users = gt["processes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["kthread"] == false)
        .count();
    assert_eq!(v["processes_checked"], users);

    let other = fixture_file("linux-6.12", "vmcore.elf").unwrap();
    let out = enforce(&other, &m);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["attested"], false);
    let banner = v["deviations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["field"] == "kernel.banner")
        .expect("a banner deviation");
    assert_eq!(banner["kind"], "kernel_build_changed");
    assert_eq!(
        banner["expected"].as_str(),
        gt["linux_banner_expected"].as_str().map(str::trim_end)
    );
    assert_eq!(
        banner["seen"].as_str(),
        ground_truth("linux-6.12")["linux_banner_expected"]
            .as_str()
            .map(str::trim_end)
    );
    assert_eq!(
        banner["subject"]["kernel"]["release"],
        ground_truth("linux-6.12")["kernel_release"]
    );
    assert_eq!(banner["vcpu"], serde_json::Value::Null);

    // A manifest with an unknown field: the file and the field named, exit 1.
    let bad = dir.join("bad.json");
    let mut j: serde_json::Value = serde_json::from_slice(&before).unwrap();
    j["kernel"]["extra"] = 1.into();
    std::fs::write(&bad, j.to_string()).unwrap();
    let out = enforce(&dir.join("no-such-image"), &bad);
    assert_one_line_error(&out, 1, "bad.json");
    assert!(String::from_utf8_lossy(&out.stderr).contains("field kernel.extra"));

    let out = run_os(&["attest".into(), "enforce".into(), s(&image())]);
    assert_eq!(out.status.code(), Some(2));
    let _ = std::fs::remove_dir_all(&dir);
}

/// CR4.SMEP | CR4.SMAP (Intel SDM vol. 3A, 2.5: bits 20 and 21).
const SMEP_SMAP: u64 = (1 << 20) | (1 << 21);

/// What the scripted rootkit of `xenvmi::policy::simulate` does, as its documentation states
/// it, with the values the guest itself reported (`ground-truth.json`, `/proc/kallsyms`): the
/// alerts `guard --simulate` must raise, in order, as (what, policy, vCPU, fields).
fn the_scripted_rootkits_moves() -> Vec<(&'static str, &'static str, u64, serde_json::Value)> {
    let gt = ground_truth("linux-6.1");
    let sym = guest_kallsyms("linux-6.1");
    let last = gt["vcpus"].as_array().unwrap().len() as u64 - 1;
    // The simulated CPUs run with SMEP and SMAP set.
    let cr4 = |v: u64| hex(&gt["vcpus"][v as usize]["cr4"]) | SMEP_SMAP;
    let getpid = sym["__x64_sys_getpid"];
    let getpid_pa = hex(&gt["kaslr"]["text_pa"]) + (getpid - hex(&gt["kaslr"]["text_va"]));
    let h = |v: u64| serde_json::json!(format!("{v:#x}"));
    vec![
        // The last vCPU clears SMEP and SMAP from vCPU 0's CR4.
        (
            "cr4_smep_smap_clear",
            "cr4",
            last,
            serde_json::json!({"target": "cr4", "old": h(cr4(last)), "new": h(cr4(0) & !SMEP_SMAP)}),
        ),
        // vCPU 0 points LSTAR at the rootkit's own entry, over the kernel's.
        (
            "msr_lstar_write",
            "msr",
            0,
            serde_json::json!({"target": "msr_lstar", "old": h(sym["entry_SYSCALL_64"]),
                               "new": h(0xffff_ffff_c041_c000)}),
        ),
        // The last vCPU writes a jmp over __x64_sys_getpid.
        (
            "kernel_text_write",
            "kernel-text",
            last,
            serde_json::json!({"gpa": h(getpid_pa), "gva": h(getpid)}),
        ),
    ]
}

/// The task the guest ran on `vcpu` when it was dumped, as an alert names it: a vCPU halted
/// in the kernel (the ground truth's `hlt`) runs its idle task, named `"kernel"`; otherwise
/// the process the guest reported there (`vcpu_owners`: the owner of its CR3, which is the
/// running task's own when the vCPU is not idle).
fn owner_of_vcpu(vcpu: u64) -> serde_json::Value {
    let gt = ground_truth("linux-6.1");
    let regs = &gt["vcpus"][vcpu as usize];
    if (regs["hlt"] == 1 || regs["hlt"] == true) && regs["cpl"] == 0 {
        return serde_json::json!("kernel");
    }
    let o = gt["vcpu_owners"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["index"] == vcpu)
        .unwrap()
        .clone();
    serde_json::json!({"pid": o["pid"], "comm": o["comm"]})
}

/// stdout as JSON lines.
fn json_lines(bytes: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(bytes)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

/// `guard --simulate` with every policy: one alert per move of the scripted rootkit, each
/// with the values the script used and the process the guest ran on that vCPU, denied, and
/// the guest's SMEP/SMAP, LSTAR and kernel text intact; the alerts file holds the same lines.
#[test]
fn guard_on_the_simulated_domain_alerts_on_each_move_of_the_scripted_rootkit() {
    let dir = scratch("guard");
    let file = dir.join("alerts.jsonl");
    let out = xenvmi(&[
        "guard".as_ref(),
        "--simulate".as_ref(),
        image().as_os_str(),
        "--json".as_ref(),
        "--alerts-file".as_ref(),
        file.as_os_str(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let alerts = json_lines(&out.stdout);
    let gt = ground_truth("linux-6.1");
    let moves = the_scripted_rootkits_moves();
    assert_eq!(alerts.len(), moves.len(), "{alerts:?}");
    for (a, (what, policy, vcpu, fields)) in alerts.iter().zip(&moves) {
        assert_eq!(a["what"], *what, "{a}");
        assert_eq!(a["policy"], *policy, "{a}");
        assert_eq!(a["vcpu"], *vcpu, "{a}");
        assert_eq!(a["action"], "denied", "{a}");
        assert_eq!(a["schema"], 1, "{a}");
        assert_eq!(a["vm"]["name"], "simulated", "{a}");
        assert_eq!(a["process"], owner_of_vcpu(*vcpu), "{a}");
        assert_eq!(
            hex(&a["rip"]),
            hex(&gt["vcpus"][*vcpu as usize]["rip"]),
            "{a}"
        );
        for (k, v) in fields.as_object().unwrap() {
            assert_eq!(&a[k], v, "{k} of {a}");
        }
    }
    // The written address by name: a symbol the guest's kallsyms has at __x64_sys_getpid's
    // address (it has aliases there), offset 0.
    let sym = guest_kallsyms("linux-6.1");
    let named = alerts[2]["symbol"].as_str().unwrap();
    let (name, offset) = named.split_once('+').unwrap();
    assert_eq!(offset, "0x0", "{named}");
    assert_eq!(sym.get(name), Some(&sym["__x64_sys_getpid"]), "{named}");
    assert_eq!(json_lines(&std::fs::read(&file).unwrap()), alerts);
    assert!(
        err.contains(
            "SMEP/SMAP kept: true; LSTAR kept: true; kernel text kept: true; guest released \
             cleanly: true"
        ),
        "{err}"
    );
    assert!(err.contains("3 alert(s), 3 denied"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Text output: one line per alert, naming what and the response; a clean run of the scripted
/// guest's benign actions, with every policy, raises none.
#[test]
fn guard_text_lines_and_a_clean_run() {
    let out = xenvmi(&["guard".as_ref(), "--simulate".as_ref(), image().as_os_str()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let moves = the_scripted_rootkits_moves();
    assert_eq!(lines.len(), moves.len(), "{text}");
    for (l, (what, policy, ..)) in lines.iter().zip(&moves) {
        assert!(l.starts_with(what), "{l}");
        assert!(
            l.contains(": denied") && l.ends_with(&format!("[{policy}]")),
            "{l}"
        );
    }

    let out = xenvmi(&[
        "guard".as_ref(),
        "--simulate".as_ref(),
        image().as_os_str(),
        "--benign".as_ref(),
        "--json".as_ref(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(err.contains("0 alert(s), 0 denied"), "{err}");
    assert!(err.contains("guest released cleanly: true"), "{err}");
}

/// Per-policy remediation from `--policies`: CR4 allowed and reported (SMEP/SMAP really
/// cleared), the rest denied; policies left out raise nothing.
#[test]
fn guard_gives_each_policy_its_own_remediation() {
    let out = xenvmi(&[
        "guard".as_ref(),
        "--simulate".as_ref(),
        image().as_os_str(),
        "--json".as_ref(),
        "--policies".as_ref(),
        "cr4=allow; kernel-text".as_ref(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let alerts = json_lines(&out.stdout);
    let whats: Vec<&str> = alerts.iter().map(|a| a["what"].as_str().unwrap()).collect();
    assert_eq!(whats, ["cr4_smep_smap_clear", "kernel_text_write"]);
    assert_eq!(alerts[0]["action"], "allowed");
    assert_eq!(alerts[1]["action"], "denied");
    assert!(err.contains("policies cr4 kernel-text;"), "{err}");
    assert!(
        err.contains("SMEP/SMAP kept: false; LSTAR kept: false; kernel text kept: true"),
        "{err}"
    );
}

/// `--syslog udp://...`: each alert reaches the collector as an RFC 5424 message whose MSGID
/// is the alert's `what` and whose MSG is a CEF record of it (read by tests/support/siem.rs).
#[test]
fn guard_sends_each_alert_to_a_syslog_collector() {
    let collector = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    collector
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let target = format!("udp://{}", collector.local_addr().unwrap());
    let out = xenvmi(&[
        "guard".as_ref(),
        "--simulate".as_ref(),
        image().as_os_str(),
        "--syslog".as_ref(),
        target.as_ref(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (what, ..) in the_scripted_rootkits_moves() {
        let mut buf = vec![0u8; 65536];
        let n = collector.recv(&mut buf).unwrap();
        let msg = String::from_utf8_lossy(&buf[..n]);
        // tests/support/siem.rs: the RFC 5424 header and the CEF record, by their rules.
        let s = support::siem::parse_5424(&msg);
        assert_eq!(s.msgid, what, "{msg}");
        let (h, e) = support::siem::parse_cef(&s.msg);
        assert_eq!(h[4], what, "{msg}");
        assert_eq!(e["act"], "denied", "{msg}");
    }
}

/// Bad configuration is refused before anything is opened or monitored: one line naming the
/// option and the value, exit 1. The image given does not exist, so an error about it would
/// mean the configuration was checked too late.
#[test]
fn guard_refuses_bad_configuration_before_monitoring() {
    let dir = scratch("guard-config");
    let missing = dir.join("no-such-image.elf");
    // A TCP port nobody listens on: bound, then released.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let closed = format!("tcp://{closed}");
    let unwritable = dir.join("no-such-dir").join("alerts.jsonl");
    let cases: Vec<(Vec<&std::ffi::OsStr>, Vec<&str>)> = vec![
        (
            vec!["--policies".as_ref(), "cr4;no-such-policy".as_ref()],
            vec!["--policies", "policy \"no-such-policy\"", "unknown policy"],
        ),
        (
            vec!["--policies".as_ref(), "msr=maybe".as_ref()],
            vec!["--policies", "remediation \"maybe\""],
        ),
        (
            vec!["--remediation".as_ref(), "deny,explode".as_ref()],
            vec!["--remediation", "deny,explode"],
        ),
        (
            vec!["--syslog".as_ref(), closed.as_ref()],
            vec!["--syslog", &closed],
        ),
        (
            vec!["--syslog".as_ref(), "udp://no-port".as_ref()],
            vec!["--syslog", "udp://no-port", "HOST:PORT"],
        ),
        (
            vec!["--alerts-file".as_ref(), unwritable.as_os_str()],
            vec!["--alerts-file", "alerts.jsonl"],
        ),
    ];
    for (extra, needles) in cases {
        let mut args: Vec<&std::ffi::OsStr> =
            vec!["guard".as_ref(), "--simulate".as_ref(), missing.as_os_str()];
        args.extend(extra);
        let out = xenvmi(&args);
        assert_one_line_error(&out, 1, needles[0]);
        let err = String::from_utf8_lossy(&out.stderr);
        for n in needles {
            assert!(err.contains(n), "{n} not in {err}");
        }
        assert!(!err.contains("no-such-image"), "{err}");
    }
    // A capture without a directory: refused by the guard before the session starts.
    let out = xenvmi(&[
        "guard".as_ref(),
        "--simulate".as_ref(),
        image().as_os_str(),
        "--remediation".as_ref(),
        "deny,capture".as_ref(),
    ]);
    assert_one_line_error(&out, 1, "no capture directory");
    assert!(!unwritable.exists());
    let _ = std::fs::remove_dir_all(&dir);
}

/// A raw image has no registers: discovery searches its memory, which on a terminal shows a
/// progress line on stderr. Here stderr is a pipe: nothing but the result is printed, and the
/// kernel found is the guest's.
#[test]
fn a_raw_image_is_searched_without_progress_output_off_a_terminal() {
    let dir = scratch("raw");
    let raw = dir.join("physmem.raw");
    let elf = xenvmi::backend::snapshot::Snapshot::open(image()).unwrap();
    support::linux::write_raw(&elf, &raw);
    drop(elf);
    let out = Command::new(env!("CARGO_BIN_EXE_xenvmi"))
        .env("XENVMI_CACHE", "off")
        .args(["info".as_ref(), "--json".as_ref(), raw.as_os_str()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let gt = ground_truth("linux-6.1");
    assert_eq!(v["format"], "raw");
    assert_eq!(hex(&v["kernel"]["text_pa"]), hex(&gt["kaslr"]["text_pa"]));
    assert_eq!(
        hex(&v["kernel"]["kaslr_offset"]),
        hex(&gt["kaslr"]["virt_offset"])
    );
    // No registers: no vCPUs to list.
    assert_eq!(v["vcpus"], serde_json::json!([]));
    let _ = std::fs::remove_dir_all(&dir);
}

/// `attest enforce --syslog`: each deviation goes to the SIEM as one RFC 5424 message with a
/// CEF payload (read back by an independent parser, tests/support/siem.rs): the 6.1 guest's
/// manifest against the 6.12 guest, whose kernel build deviates with its own release named.
/// A syslog target that cannot be reached, or a capture asked of an image, is refused before
/// the guest is read (a missing image is not what the error names).
#[test]
fn attest_enforce_sends_each_deviation_to_syslog() {
    use support::siem::{parse_5424, parse_cef};
    let dir = scratch("attest-syslog");
    let m = dir.join("m.json");
    let s = |p: &Path| p.as_os_str().to_owned();
    let out = run_os(&[
        "attest".into(),
        "learn".into(),
        s(&image()),
        "--manifest".into(),
        s(&m),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    rx.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let url = format!("udp://{}", rx.local_addr().unwrap());
    let other = fixture_file("linux-6.12", "vmcore.elf").unwrap();
    let out = run_os(&[
        "attest".into(),
        "enforce".into(),
        s(&other),
        "--manifest".into(),
        s(&m),
        "--syslog".into(),
        url.clone().into(),
        "--json".into(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let devs = v["deviations"].as_array().unwrap();
    assert!(!devs.is_empty());
    let mut buf = vec![0u8; 65536];
    let mut got = Vec::new();
    for _ in devs {
        let n = rx.recv(&mut buf).expect("one datagram per deviation");
        got.push(String::from_utf8(buf[..n].to_vec()).unwrap());
    }
    let release = ground_truth("linux-6.12")["kernel_release"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut kinds: Vec<String> = Vec::new();
    for m in &got {
        let s = parse_5424(m);
        let (h, e) = parse_cef(&s.msg);
        assert_eq!(s.app, "xenvmi");
        assert_eq!(h[4], s.msgid);
        assert_eq!(e["cs1"], "attest");
        assert_eq!(e["act"], "reported");
        if h[4] == "kernel_build_changed" {
            assert!(
                e["reason"].starts_with(&format!("kernel {release}: kernel.")),
                "{e:?}"
            );
        }
        kinds.push(h[4].clone());
    }
    let mut want: Vec<String> = devs
        .iter()
        .map(|d| d["kind"].as_str().unwrap().to_owned())
        .collect();
    kinds.sort();
    want.sort();
    assert_eq!(kinds, want);
    assert!(kinds.iter().any(|k| k == "kernel_build_changed"));

    // Refused before the guest is read: the image does not exist, the error is the flag's.
    let missing = dir.join("no-such-image");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let enforce_with = |extra: &[&str]| {
        let mut a = vec![
            "attest".into(),
            "enforce".into(),
            s(&missing),
            "--manifest".into(),
            s(&m),
        ];
        a.extend(extra.iter().map(std::ffi::OsString::from));
        run_os(&a)
    };
    let tcp = format!("tcp://127.0.0.1:{port}");
    assert_one_line_error(
        &enforce_with(&["--syslog", &tcp]),
        1,
        &format!("--syslog {tcp}"),
    );
    assert_one_line_error(&enforce_with(&["--syslog", "udp://"]), 1, "--syslog udp://");
    let cap = dir.join("c.elf");
    assert_one_line_error(
        &enforce_with(&["--capture", cap.to_str().unwrap()]),
        1,
        "give --domain",
    );
    assert!(!cap.exists());
    let _ = std::fs::remove_dir_all(&dir);
}

/// `modules --cross-view --json` on `image`: the ground truth's modules of `fixture` on the
/// list, each with its /sys/module kobject.
fn cross_view(image: &Path) -> serde_json::Value {
    json(&[
        "modules".as_ref(),
        "--cross-view".as_ref(),
        "--json".as_ref(),
        image.as_os_str(),
    ])
}

fn truth_names(fixture: &str) -> Vec<String> {
    ground_truth(fixture)["module_names_list_order"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_owned())
        .collect()
}

fn listed_names(v: &serde_json::Value) -> Vec<String> {
    v["modules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn modules_cross_view_finds_no_hidden_module_on_any_fixture() {
    for fixture in support::linux::FIXTURES {
        let v = cross_view(&fixture_file(fixture, "vmcore.elf").unwrap());
        let want = truth_names(fixture);
        assert_eq!(listed_names(&v), want, "{fixture}");
        let c = &v["cross_view"];
        assert_eq!(c["listed"], want.len(), "{fixture}");
        assert_eq!(c["kobjects"], want.len(), "{fixture}");
        assert_eq!(c["hidden"], serde_json::json!([]), "{fixture}");
        assert_eq!(c["transitional"], serde_json::json!([]), "{fixture}");
        assert_eq!(c["errors"], serde_json::json!([]), "{fixture}");
        // Every fixture's guest ran BPF programs: its pack is the one area no module accounts
        // for (tests/module_cross_view.rs checks the areas themselves).
        let other = c["other_areas"].as_array().unwrap();
        assert!(
            other.iter().all(|a| a["caller"]
                .as_str()
                .unwrap()
                .starts_with("bpf_prog_pack_alloc+")),
            "{fixture}: {other:?}"
        );
        assert!(
            c["areas"].as_u64().unwrap() > other.len() as u64,
            "{fixture}"
        );
    }
    // Text: the summary line.
    let out = xenvmi(&[
        "modules".as_ref(),
        "--cross-view".as_ref(),
        image().as_os_str(),
    ]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("cross-view: 9 on the module list, 9 in /sys/module (module_kset), "),
        "{text}"
    );
    assert!(text.contains(" 0 hidden\n"), "{text}");
}

/// A module the 6.1 ground truth lists, as the list walk reads it.
struct Victim {
    name: String,
    base: u64,
    object: u64,
}

/// A copy of the 6.1 dump in `dir` with the ground truth's middle module unlinked from
/// `modules` as `list_del` does (prev->next = next, next->prev = prev, in the file), and with
/// `kobject` also its kobject from `module_kset`'s list (as `kobject_del` leaves it).
fn unlinked_copy(dir: &Path, kobject: bool) -> (PathBuf, Victim) {
    use std::io::{Read, Seek, SeekFrom, Write};
    use xenvmi::Gva;
    let (mem, linux) = support::linux::open("linux-6.1");
    let names = truth_names("linux-6.1");
    let name = names[names.len() / 2].clone();
    let gt = ground_truth("linux-6.1");
    let base = gt["modules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name.as_str())
        .map(|m| hex(&m["base"]))
        .unwrap();
    let m = linux
        .modules(&mem)
        .filter_map(Result::ok)
        .find(|m| m.name == name)
        .unwrap();
    assert_eq!(m.base.0, base);
    let ks = linux.info().kernel_space;
    let off = |ty: &str, f: &str| linux.types().field(ty, f).unwrap().offset;
    let mut nodes = vec![Gva(m.object.0 + off("module", "list"))];
    if kobject {
        nodes.push(Gva(m.object.0
            + off("module", "mkobj")
            + off("module_kobject", "kobj")
            + off("kobject", "entry")));
    }
    let file_offset = |va: u64| {
        let gpa = mem.translate_mapped(ks, Gva(va)).unwrap().0;
        let r = mem
            .backend()
            .regions()
            .iter()
            .find(|r| (r.gpa..r.gpa + r.len).contains(&gpa))
            .unwrap();
        r.file_offset + (gpa - r.gpa)
    };
    let mut patches = Vec::new();
    for node in nodes {
        let next = mem.read_u64(ks, node).unwrap();
        let prev = mem.read_u64(ks, Gva(node.0 + 8)).unwrap();
        patches.extend([(file_offset(prev), next), (file_offset(next + 8), prev)]);
    }
    let copy = dir.join("unlinked.elf");
    let mut src = std::fs::File::open(image()).unwrap();
    let mut out = std::fs::File::create(&copy).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0u64;
    loop {
        let n = src.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        support::crashdump::write_sparse(&buf[..n], &mut out);
        len += n as u64;
    }
    out.set_len(len).unwrap();
    for (at, v) in patches {
        out.seek(SeekFrom::Start(at)).unwrap();
        out.write_all(&v.to_le_bytes()).unwrap();
    }
    let victim = Victim {
        name,
        base,
        object: m.object.0,
    };
    (copy, victim)
}

#[test]
fn modules_cross_view_and_guard_report_a_module_unlinked_in_a_patched_image() {
    let dir = scratch("cross-view");
    let (copy, victim) = unlinked_copy(&dir, false);
    let v = cross_view(&copy);
    let rest: Vec<String> = truth_names("linux-6.1")
        .into_iter()
        .filter(|n| *n != victim.name)
        .collect();
    assert_eq!(listed_names(&v), rest);
    let hidden = v["cross_view"]["hidden"].as_array().unwrap();
    assert_eq!(hidden.len(), 1, "{hidden:?}");
    assert_eq!(hidden[0]["name"], victim.name.as_str());
    assert_eq!(hex(&hidden[0]["base"]), victim.base);
    assert_eq!(hex(&hidden[0]["object"]), victim.object);
    assert_eq!(
        hidden[0]["views"],
        serde_json::json!(["module_kset", "vmap_areas"])
    );
    let out = xenvmi(&[
        "modules".as_ref(),
        "--cross-view".as_ref(),
        copy.as_os_str(),
    ]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.lines()
            .any(|l| l.starts_with("HIDDEN") && l.contains(victim.name.as_str())),
        "{text}"
    );

    // The guard, the policy by name, on the simulated domain over the patched image: the
    // module hidden before it started is reported at the first CR3 write, once.
    let out = xenvmi(&[
        "guard".as_ref(),
        "--simulate".as_ref(),
        copy.as_os_str(),
        "--policies".as_ref(),
        "hidden-modules".as_ref(),
        "--benign".as_ref(),
        "--json".as_ref(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let alerts = json_lines(&out.stdout);
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let a = &alerts[0];
    assert_eq!(
        (&a["what"], &a["policy"], &a["action"]),
        (
            &serde_json::json!("hidden_module"),
            &serde_json::json!("hidden-modules"),
            &serde_json::json!("reported")
        )
    );
    assert_eq!(a["target"], victim.name.as_str());
    assert_eq!(hex(&a["gva"]), victim.object);
    assert_eq!(hex(&a["new"]), victim.base);
    assert!(err.contains("guest released cleanly: true"), "{err}");
    // The unpatched image: nothing.
    let out = xenvmi(&[
        "guard".as_ref(),
        "--simulate".as_ref(),
        image().as_os_str(),
        "--policies".as_ref(),
        "hidden-modules".as_ref(),
        "--benign".as_ref(),
        "--json".as_ref(),
    ]);
    assert!(out.status.success());
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A module unlinked from both `modules` and `module_kset` (a rootkit that also deletes its
/// kobject): found only by its vmap area, by `modules --cross-view` and by the guard's
/// `hidden-modules` policy.
#[test]
fn modules_cross_view_and_guard_find_a_module_without_list_entry_or_kobject() {
    let dir = scratch("cross-view-vmap");
    let (copy, victim) = unlinked_copy(&dir, true);
    let v = cross_view(&copy);
    let c = &v["cross_view"];
    assert_eq!(c["kobjects"], truth_names("linux-6.1").len() - 1);
    let hidden = c["hidden"].as_array().unwrap();
    assert_eq!(hidden.len(), 1, "{hidden:?}");
    assert_eq!(hidden[0]["name"], victim.name.as_str());
    assert_eq!(hex(&hidden[0]["base"]), victim.base);
    assert_eq!(hex(&hidden[0]["object"]), victim.object);
    assert_eq!(hidden[0]["views"], serde_json::json!(["vmap_areas"]));
    let out = xenvmi(&[
        "guard".as_ref(),
        "--simulate".as_ref(),
        copy.as_os_str(),
        "--policies".as_ref(),
        "hidden-modules".as_ref(),
        "--benign".as_ref(),
        "--json".as_ref(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let alerts = json_lines(&out.stdout);
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["what"], "hidden_module");
    assert_eq!(alerts[0]["target"], victim.name.as_str());
    assert_eq!(hex(&alerts[0]["gva"]), victim.object);
    assert!(err.contains("guest released cleanly: true"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---- Windows guests ------------------------------------------------------------------------
//
// Synthetic Windows guests laid out by the three real ntoskrnl ISFs in `fixtures/windows-isf`
// (`tests/support/windows_guest.rs`), written as a crash dump, a raw image, a LiME capture and
// an ELF core. Every expected value comes from the guest's specification (or, for the PDB
// GUID and age, from the ISF's file name), never from a run of xenvmi.

mod win {
    use std::ffi::OsString;
    use std::path::{Path, PathBuf};

    use super::support::crashdump as dmp;
    use super::support::windows_guest::{isf_dir, load_isf, WinGuest, WinSpec, PROFILES};
    use super::{assert_one_line_error, run_os};

    pub fn hexs(x: u64) -> String {
        format!("{x:#x}")
    }

    /// A guest by profile `p` (index into PROFILES) and spec.
    pub fn guest(p: usize, spec: impl FnOnce(u32) -> WinSpec) -> WinGuest {
        let (file, build) = PROFILES[p];
        WinGuest::build(&load_isf(file), spec(build))
    }

    /// (GUID, age) from the ISF's file name, `ntkrnlmp-<GUID>-<age>.json.xz`.
    pub fn pdb_of(p: usize) -> (String, u32) {
        let mut parts = PROFILES[p]
            .0
            .trim_end_matches(".json.xz")
            .split('-')
            .skip(1);
        let guid = parts.next().unwrap().to_owned();
        (guid, parts.next().unwrap().parse().unwrap())
    }

    /// A full crash dump of `g` whose CONTEXT is processor `crashed`'s.
    pub fn crash_dump(g: &WinGuest, crashed: usize, path: &Path) {
        let mut h = dmp::Header::example(g.kernel_pml4, g.crash_context(crashed));
        h.number_processors = g.spec.cpus.len() as u32;
        h.ps_active_process_head = g.spec.kernel_base + g.rva["PsActiveProcessHead"];
        h.ps_loaded_module_list = g.spec.kernel_base + g.rva["PsLoadedModuleList"];
        std::fs::write(path, dmp::full_dump(&h, &[(0, &g.mem)])).unwrap();
    }

    /// How the profile reaches xenvmi.
    #[derive(Clone, Copy)]
    pub enum Profile<'a> {
        /// `--profile PATH` (and nothing at the default place).
        Flag(&'a Path),
        /// `XENVMI_WINDOWS_PROFILES=PATH`, no flag.
        DefaultPlace(&'a Path),
    }

    /// Run `xenvmi ARGS` with the profile given as `p`, no cache.
    pub fn run(args: &[&std::ffi::OsStr], p: Profile<'_>) -> std::process::Output {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_xenvmi"));
        cmd.env("XENVMI_CACHE", "off").args(args);
        match p {
            Profile::Flag(path) => {
                cmd.env(
                    "XENVMI_WINDOWS_PROFILES",
                    "/nonexistent/xenvmi-windows-profiles",
                );
                cmd.arg("--profile").arg(path);
            }
            Profile::DefaultPlace(path) => {
                cmd.env("XENVMI_WINDOWS_PROFILES", path);
            }
        }
        cmd.output().unwrap()
    }

    pub fn json(args: &[&std::ffi::OsStr], p: Profile<'_>) -> serde_json::Value {
        let out = run(args, p);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// `ps --json` and `modules --json` on `image` list exactly the spec's processes (pid,
    /// ppid, 15-byte name, kernel or user, both page-table roots, EPROCESS) and drivers.
    pub fn check_ps_and_modules(g: &WinGuest, image: &Path, p: Profile<'_>, what: &str) {
        let v = json(&["ps".as_ref(), "--json".as_ref(), image.as_os_str()], p);
        let got = v["processes"].as_array().unwrap();
        assert_eq!(got.len(), g.spec.processes.len(), "{what}");
        for (i, (p, s)) in got.iter().zip(&g.spec.processes).enumerate() {
            assert_eq!(p["pid"], s.pid, "{what}");
            assert_eq!(p["ppid"], s.ppid, "{what}");
            assert_eq!(
                p["name"],
                s.name.chars().take(15).collect::<String>(),
                "{what}"
            );
            assert_eq!(p["kernel"], s.dlls.is_none(), "{what} {}", s.name);
            assert_eq!(p["dtb"], hexs(g.roots[i].0), "{what}");
            assert_eq!(
                p["user_dtb"],
                g.roots[i]
                    .1
                    .map_or(serde_json::Value::Null, |u| hexs(u).into()),
                "{what}"
            );
            assert_eq!(p["eprocess"], hexs(g.eprocess[i]), "{what}");
        }
        let v = json(
            &["modules".as_ref(), "--json".as_ref(), image.as_os_str()],
            p,
        );
        let got: Vec<(String, String, u64)> = v["drivers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["name"].as_str().unwrap().to_owned(),
                    m["base"].as_str().unwrap().to_owned(),
                    m["size"].as_u64().unwrap(),
                )
            })
            .collect();
        let want: Vec<(String, String, u64)> = g
            .spec
            .drivers
            .iter()
            .map(|d| (d.name.clone(), hexs(d.base), u64::from(d.size)))
            .collect();
        assert_eq!(got, want, "{what}");
    }

    /// The pid the spec says processor `i` runs (the idle process is pid 0).
    pub fn cpu_pid(g: &WinGuest, i: usize) -> u64 {
        g.spec.cpus[i]
            .process
            .map_or(0, |p| g.spec.processes[p].pid)
    }

    /// The first process in list order whose page-table root (kernel or user) a CR3 selects.
    pub fn owner_pid(g: &WinGuest, cr3: u64) -> u64 {
        let r = cr3 & 0x000f_ffff_ffff_f000;
        let j = g
            .roots
            .iter()
            .position(|x| x.0 == r || x.1 == Some(r))
            .unwrap();
        g.spec.processes[j].pid
    }

    /// `info --json` on `image`: Windows, the spec's kernel base and build, the PDB of the
    /// profile's file name, and every processor from the kernel's records running the
    /// process the spec says.
    pub fn check_info(
        g: &WinGuest,
        pi: usize,
        image: &Path,
        p: Profile<'_>,
        what: &str,
    ) -> serde_json::Value {
        let v = json(&["info".as_ref(), "--json".as_ref(), image.as_os_str()], p);
        let (file, build) = PROFILES[pi];
        let (guid, age) = pdb_of(pi);
        assert_eq!(v["os"], "windows", "{what}");
        assert_eq!(v["image"], image.display().to_string(), "{what}");
        assert_eq!(v["kernel"]["base"], hexs(g.spec.kernel_base), "{what}");
        assert_eq!(v["kernel"]["size_of_image"], g.spec.size_of_image, "{what}");
        assert_eq!(v["kernel"]["build"], build, "{what}");
        assert_eq!(v["kernel"]["kernel_dtb"], hexs(g.kernel_pml4), "{what}");
        assert!(
            v["kernel"]["profile"].as_str().unwrap().ends_with(file),
            "{what}: {}",
            v["kernel"]["profile"]
        );
        assert_eq!(v["pdb"]["name"], "ntkrnlmp.pdb", "{what}");
        assert_eq!(v["pdb"]["guid"], guid, "{what}");
        assert_eq!(v["pdb"]["age"], age, "{what}");
        assert_eq!(
            v["kernel"]["pdb"],
            format!("ntkrnlmp.pdb {guid}{age:X}"),
            "{what}"
        );
        let cpus = v["processors"]["cpus"].as_array().unwrap();
        assert_eq!(v["processors"]["declared"], g.spec.cpus.len(), "{what}");
        assert_eq!(cpus.len(), g.spec.cpus.len(), "{what}");
        for (i, c) in cpus.iter().enumerate() {
            assert_eq!(c["index"], i, "{what}");
            assert_eq!(c["prcb"], hexs(g.prcbs[i]), "{what}");
            assert_eq!(c["thread"], hexs(g.threads[i]), "{what}");
            assert_eq!(c["pid"], cpu_pid(g, i), "{what} processor {i}");
        }
        v
    }

    /// The profile directory and the ISF file of profile `pi` in it.
    pub fn profiles(pi: usize) -> (PathBuf, PathBuf) {
        (isf_dir(), isf_dir().join(PROFILES[pi].0))
    }

    /// `xenvmi A... IMAGE`.
    pub fn args(a: &[&str], image: &Path) -> Vec<OsString> {
        let mut v: Vec<OsString> = a.iter().map(OsString::from).collect();
        v.push(image.into());
        v
    }

    /// Exit status 1, one line on stderr naming the image and containing `needle`.
    pub fn refused(out: &std::process::Output, image: &Path, needle: &str) {
        assert_one_line_error(out, 1, needle);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&image.display().to_string()), "{err}");
    }

    /// `xenvmi A...` with no profile anywhere.
    pub fn run_bare(a: &[OsString]) -> std::process::Output {
        run_os(a)
    }
}

/// A crash dump of a 4-processor Windows 11 guest that crashed on processor 2: `info` names
/// processor 2 as the crashing one (its CONTEXT labelled 2, never 0) and every processor's
/// owner as the spec says; `ps` and `modules` are the spec's, with the profile directory given
/// by `--profile` and at the default place, and with one ISF file.
#[test]
fn windows_crash_dump_info_ps_modules_are_the_guests() {
    let pi = 2;
    let g = win::guest(pi, |b| support::windows_guest::WinSpec::with_cpus(b, 4));
    let dir = scratch("win-dmp");
    let image = dir.join("MEMORY.DMP");
    win::crash_dump(&g, 2, &image);
    let (isfs, file) = win::profiles(pi);
    for p in [
        win::Profile::Flag(&isfs),
        win::Profile::DefaultPlace(&isfs),
        win::Profile::Flag(&file),
    ] {
        let v = win::check_info(&g, pi, &image, p, "crash dump");
        assert_eq!(v["format"], "Windows crash dump");
        assert_eq!(v["crashing_cpu"]["index"], 2);
        let vcpus = v["vcpus"].as_array().unwrap();
        assert_eq!(vcpus.len(), 1);
        assert_eq!(vcpus[0]["index"], 2);
        // The CONTEXT's CR3 is the header's DirectoryTableBase: the kernel's page tables.
        assert_eq!(vcpus[0]["cr3"], win::hexs(g.kernel_pml4));
        assert_eq!(vcpus[0]["pid"], win::owner_pid(&g, g.kernel_pml4));
        assert_eq!(v["dump"]["bugcheck"], "0xe2");
        for c in v["processors"]["cpus"].as_array().unwrap() {
            assert_eq!(c["registers"], serde_json::Value::Null); // a dump is not cross-checked
        }
        win::check_ps_and_modules(&g, &image, p, "crash dump");
    }
    // The text names the crashing processor and marks it.
    let out = win::run(
        &["info".as_ref(), image.as_os_str()],
        win::Profile::Flag(&isfs),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(text.contains("os         Windows"), "{text}");
    assert!(text.contains("crashed    on processor 2:"), "{text}");
    let marked: Vec<&str> = text.lines().filter(|l| l.ends_with("[crashed]")).collect();
    assert_eq!(marked.len(), 1, "{text}");
    assert!(marked[0].starts_with("  CPU 2 "), "{text}");
    assert!(text.contains("  CONTEXT of processor 2  CR3"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A raw image and a LiME capture of a seeded Windows 7 guest (no registers) with the profile
/// directory at the default place, and an ELF core of a 4-processor Windows 10 guest with
/// `--profile DIR`: processes, drivers, processors and each vCPU's owner are the spec's.
#[test]
fn windows_raw_lime_and_elf_images_are_the_guests() {
    let dir = scratch("win-raw");
    let pi = 0;
    let g = win::guest(pi, |b| support::windows_guest::WinSpec::seeded(b, 0x51ce));
    let (isfs, _) = win::profiles(pi);
    let lime = support::lime::image(&[(0, &g.mem[..0x9f000]), (0x10_0000, &g.mem[0x10_0000..])]);
    for (name, bytes, format) in [
        ("win.raw", g.mem.clone(), "raw"),
        ("win.lime", lime, "LiME"),
    ] {
        let image = dir.join(name);
        std::fs::write(&image, bytes).unwrap();
        let p = win::Profile::DefaultPlace(&isfs);
        let v = win::check_info(&g, pi, &image, p, name);
        assert!(
            v["format"].as_str().unwrap().contains(format),
            "{}",
            v["format"]
        );
        assert_eq!(v["vcpus"].as_array().unwrap().len(), 0, "{name}");
        assert_eq!(v["crashing_cpu"], serde_json::Value::Null);
        win::check_ps_and_modules(&g, &image, p, name);
    }

    let pi = 1;
    let g = win::guest(pi, |b| support::windows_guest::WinSpec::with_cpus(b, 4));
    let regs = g.registers();
    let image = dir.join("win.elf");
    g.write_elf_core(&regs, &image);
    let (isfs, _) = win::profiles(pi);
    let p = win::Profile::Flag(&isfs);
    let v = win::check_info(&g, pi, &image, p, "ELF core");
    let vcpus = v["vcpus"].as_array().unwrap();
    assert_eq!(vcpus.len(), regs.len());
    for (i, (c, r)) in vcpus.iter().zip(&regs).enumerate() {
        assert_eq!(c["index"], i);
        assert_eq!(c["cr3"], win::hexs(r.cr3));
        assert_eq!(c["pid"], win::owner_pid(&g, r.cr3), "vCPU {i}");
    }
    for c in v["processors"]["cpus"].as_array().unwrap() {
        assert_eq!(c["registers"]["agrees"], true, "{c}");
    }
    win::check_ps_and_modules(&g, &image, p, "ELF core");
    // `ps` text: the spec's processes, one line each, with both page-table roots.
    let out = win::run(&["ps".as_ref(), image.as_os_str()], p);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    let rows: Vec<&str> = text.lines().skip(1).collect();
    assert_eq!(rows.len(), g.spec.processes.len(), "{text}");
    for (i, (row, s)) in rows.iter().zip(&g.spec.processes).enumerate() {
        let cols: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cols[0], s.pid.to_string(), "{row}");
        assert_eq!(cols[1], s.ppid.to_string(), "{row}");
        assert_eq!(
            cols[2],
            if s.dlls.is_none() { "kern" } else { "user" },
            "{row}"
        );
        assert_eq!(cols[3], win::hexs(g.roots[i].0), "{row}");
        assert!(
            row.ends_with(&s.name.chars().take(15).collect::<String>()),
            "{row}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The Linux-only commands on a Windows ELF core and crash dump: one line naming the image
/// and what is Linux-only, exit 1, nothing written; a missing profile names the GUID, the age
/// and where the file should be; `dump` rewrites a raw image (the same guest read back) but
/// not a crash dump (its CONTEXT is the crashing processor's, not vCPU 0's).
#[test]
fn windows_images_refuse_linux_only_commands_and_name_a_missing_profile() {
    let dir = scratch("win-refuse");
    let pi = 1;
    let g = win::guest(pi, |b| support::windows_guest::WinSpec::with_cpus(b, 4));
    let elf = dir.join("win.elf");
    g.write_elf_core(&g.registers(), &elf);
    let dump = dir.join("MEMORY.DMP");
    win::crash_dump(&g, 3, &dump);
    let manifest = dir.join("manifest.json");
    let m = manifest.to_str().unwrap();
    for image in [&elf, &dump] {
        let cases: [(&[&str], &str); 6] = [
            (&["ps", "--json", "--detail"], "`ps --detail`"),
            (&["modules", "--cross-view"], "`modules --cross-view`"),
            (&["attest", "learn", "--manifest", m], "`attest`"),
            (&["trace", "--simulate"], "`trace`"),
            (&["guard", "--simulate"], "`guard`"),
            (
                &["ps", "--btf", "a.btf", "--symbols", "System.map"],
                "--btf/--symbols",
            ),
        ];
        for (a, what) in cases {
            let out = win::run_bare(&win::args(a, image));
            win::refused(&out, image, "holds a Windows kernel");
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                err.contains(what) && err.contains("is Linux-only"),
                "{a:?}: {err}"
            );
        }
        assert!(!manifest.exists());
        assert!(!dir.join("manifest.json.partial").exists());
    }

    // No profile at the default place: the GUID and age the kernel needs, and where.
    let empty = dir.join("profiles");
    std::fs::create_dir_all(&empty).unwrap();
    let (guid, age) = win::pdb_of(pi);
    for image in [&elf, &dump] {
        let out = win::run(
            &["ps".as_ref(), image.as_os_str()],
            win::Profile::DefaultPlace(&empty),
        );
        win::refused(&out, image, &format!("GUID {guid} age {age}"));
        let err = String::from_utf8_lossy(&out.stderr);
        let pdb = empty.join(format!("ntkrnlmp.pdb/{guid}{age:X}/ntkrnlmp.pdb"));
        assert!(err.contains(&pdb.display().to_string()), "{err}");
    }
    // A default place that is not there: named, with what to give.
    let gone = dir.join("not-there");
    let out = win::run(
        &["info".as_ref(), elf.as_os_str()],
        win::Profile::DefaultPlace(&gone),
    );
    win::refused(&out, &elf, &gone.display().to_string());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--profile"));

    // dump: a raw image becomes an ELF core of the same guest; a crash dump is refused.
    let raw = dir.join("win.raw");
    std::fs::write(&raw, &g.mem).unwrap();
    let core = dir.join("rewritten.elf");
    let out = win::run_bare(&["dump".into(), raw.clone().into(), core.clone().into()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    win::check_ps_and_modules(
        &g,
        &core,
        win::Profile::Flag(&win::profiles(pi).0),
        "dump of raw",
    );
    let not_written = dir.join("never.elf");
    let out = win::run_bare(&[
        "dump".into(),
        dump.clone().into(),
        not_written.clone().into(),
    ]);
    win::refused(&out, &dump, "a Windows crash dump is not rewritten");
    assert!(!not_written.exists());
    assert!(!dir.join("never.elf.partial").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

/// A Windows triage dump (DumpType 4): `info` reports the crashing process, thread and
/// processor (profile from `--profile` or the default place) and the drivers, `modules` lists
/// the drivers, `ps` exits 1 saying where the crashing process is reported; `--btf` is refused
/// by name. Expected values from the guest's spec.
#[test]
fn windows_triage_dump_info_modules_and_ps() {
    use support::triage::{expected, triage_of};
    use support::windows_guest::{isf_dir, load_isf, WinGuest, WinSpec, PROFILES};
    let dir = scratch("win-triage");
    let (file, build) = PROFILES[0];
    let isf = load_isf(file);
    let spec = WinSpec::with_cpus(build, 5);
    let mut g = WinGuest::build(&isf, spec.clone());
    let crashed = 4; // a System thread attached to another process
    let image = dir.join("mini.dmp");
    std::fs::write(&image, triage_of(&isf, &mut g, crashed)).unwrap();
    let want = expected(&spec, crashed);
    let run = |args: &[&std::ffi::OsStr], profiles: &Path| {
        Command::new(env!("CARGO_BIN_EXE_xenvmi"))
            .args(args)
            .env("XENVMI_WINDOWS_PROFILES", profiles)
            .output()
            .unwrap()
    };
    let ok = |out: &Output| {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout.clone()).unwrap()
    };

    let v: serde_json::Value = serde_json::from_str(&ok(&run(
        &["info".as_ref(), image.as_os_str(), "--json".as_ref()],
        &isf_dir(),
    )))
    .unwrap();
    assert_eq!(v["os"], "windows");
    assert_eq!(v["format"], "Windows triage dump");
    let c = &v["triage"]["crashing"];
    assert_eq!(
        (
            &c["pid"],
            &c["name"],
            &c["thread_id"],
            &c["thread_process_id"],
            &c["processor"]
        ),
        (
            &serde_json::json!(want.pid),
            &serde_json::json!(want.name),
            &serde_json::json!(want.thread_id),
            &serde_json::json!(want.thread_process_id),
            &serde_json::json!(crashed)
        )
    );
    assert_ne!(
        want.thread_process_id, want.pid,
        "the spec's processor 4 is attached"
    );

    let text = ok(&run(
        &[
            "info".as_ref(),
            image.as_os_str(),
            "--profile".as_ref(),
            isf_dir().join(file).as_os_str(),
        ],
        &dir.join("none"),
    ));
    assert!(
        text.contains(&format!(
            "crashing   pid {} ppid {} {} thread {:#x} on processor {crashed}",
            want.pid, want.ppid, want.name, want.thread_id
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "the thread belongs to pid {}",
            want.thread_process_id
        )),
        "{text}"
    );

    let m: serde_json::Value = serde_json::from_str(&ok(&run(
        &["modules".as_ref(), image.as_os_str(), "--json".as_ref()],
        &dir.join("none"),
    )))
    .unwrap();
    let drivers = m["drivers"].as_array().unwrap();
    assert_eq!(drivers.len(), spec.drivers.len());
    for (d, s) in drivers.iter().zip(&spec.drivers) {
        assert_eq!(d["name"], s.name.as_str());
        assert_eq!(d["base"], format!("{:#x}", s.base));
        assert_eq!(d["size"], format!("{:#x}", s.size));
    }
    let mtext = ok(&run(
        &["modules".as_ref(), image.as_os_str()],
        &dir.join("none"),
    ));
    assert!(
        mtext.starts_with(&format!("{} drivers:", spec.drivers.len())),
        "{mtext}"
    );

    for (args, needle) in [
        (
            vec!["ps".as_ref(), image.as_os_str()],
            "holds no process list",
        ),
        (
            vec![
                "modules".as_ref(),
                image.as_os_str(),
                "--cross-view".as_ref(),
            ],
            "--cross-view",
        ),
        (
            vec![
                "info".as_ref(),
                image.as_os_str(),
                "--btf".as_ref(),
                "x".as_ref(),
                "--symbols".as_ref(),
                "y".as_ref(),
            ],
            "--btf",
        ),
    ] {
        let out = run(&args, &isf_dir());
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("mini.dmp") && err.contains(needle), "{err}");
    }
}
