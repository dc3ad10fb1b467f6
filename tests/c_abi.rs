//! The C ABI from C: builds the programs in `tests/c/` and `examples/c/pslist.c` against the
//! committed `include/xenvmi.h` with `-std=c11 -Wall -Wextra -Werror -pedantic` under
//! AddressSanitizer (leak checking on) and UndefinedBehaviorSanitizer, links them to
//! `libxenvmi.a`, runs them on the real Linux 6.1 fixture and compares what they print with the
//! guest's own report (`fixtures/linux-6.1/ground-truth.json`). Nothing is compared with
//! recorded xenvmi output.
//!
//! The sanitizers instrument the C side only; the Rust library is linked uninstrumented, and
//! ASan still sees every allocation (Rust uses the C allocator), so a handle that `_free` does
//! not release shows up as a leak. Each test program is also built without sanitizers and run
//! under valgrind's memcheck, which checks the Rust side's memory accesses too, and must print
//! the same. Without a C compiler (`$CC`, else `cc`) the tests are
//! skipped with a message; CI has gcc (`scripts/setup.sh`).

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use support::fixture::{fixture_file, ground_truth, hex};
use support::windows_guest::{isf_dir, load_isf, WinGuest, WinSpec, PROFILES};

fn compiler() -> Option<String> {
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let ok = Command::new(&cc)
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if ok {
        Some(cc)
    } else {
        eprintln!(
            "SKIPPED: no C compiler (`{cc}` did not run; set CC or install gcc): the C ABI tests need one"
        );
        None
    }
}

/// `target/<profile>`, where cargo puts `libxenvmi.a` next to the test binaries' `deps/`.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>")
        .to_path_buf()
}

/// The `libxenvmi.a` cargo built for this test run. The library unit that `cargo test` builds
/// has all the crate types of `[lib]` and no hash in its file names (it has a cdylib), so its
/// archive is `target/<profile>/deps/libxenvmi.a`; `cargo build` puts one in
/// `target/<profile>/` as well. The newer of the two is this run's.
fn static_lib() -> PathBuf {
    let dir = profile_dir();
    [dir.join("deps/libxenvmi.a"), dir.join("libxenvmi.a")]
        .into_iter()
        .filter_map(|p| Some((std::fs::metadata(&p).ok()?.modified().ok()?, p)))
        .max()
        .map(|(_, p)| p)
        .unwrap_or_else(|| {
            panic!(
                "no libxenvmi.a in {} or its deps/: cargo builds it with the library (crate-type staticlib)",
                dir.display()
            )
        })
}

/// Compile and link one C program against the static library, under ASan and UBSan.
fn build(cc: &str, source: &str, name: &str) -> PathBuf {
    compile(
        cc,
        source,
        name,
        &[
            "-fsanitize=address,undefined",
            "-fno-sanitize-recover=undefined",
        ],
    )
}

/// Compile and link one C program against the static library with `extra` flags.
fn compile(cc: &str, source: &str, name: &str, extra: &[&str]) -> PathBuf {
    let root = support::fixture::repo_root();
    let lib = static_lib();
    let out_dir = profile_dir().join("c-tests");
    std::fs::create_dir_all(&out_dir).unwrap();
    let out = out_dir.join(name);
    let o = Command::new(cc)
        .args([
            "-std=c11",
            "-D_POSIX_C_SOURCE=200809L",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-pedantic",
            "-g",
            "-O1",
            "-fno-omit-frame-pointer",
        ])
        .args(extra)
        .arg("-I")
        .arg(root.join("include"))
        .arg("-I")
        .arg(root.join("tests/c"))
        .arg(root.join(source))
        .arg(&lib)
        // What `rustc --print native-static-libs` lists for libxenvmi.a on Linux.
        .args([
            "-lgcc_s",
            "-lutil",
            "-lrt",
            "-lpthread",
            "-lm",
            "-ldl",
            "-pthread",
        ])
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap_or_else(|e| panic!("{cc}: {e}"));
    assert!(
        o.status.success(),
        "compiling {source} failed:\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

/// Run a test program under the sanitizers; its stdout, after checking it succeeded.
fn run(exe: &Path, args: &[&Path]) -> String {
    run_env(exe, args, &[])
}

/// [`run`] with these environment variables set for the program.
fn run_env(exe: &Path, args: &[&Path], env: &[(&str, &Path)]) -> String {
    let o = Command::new(exe)
        .args(args)
        .envs(env.iter().copied())
        // Leaks are errors; any sanitizer report fails the run.
        .env(
            "ASAN_OPTIONS",
            "detect_leaks=1:halt_on_error=1:abort_on_error=0:exitcode=86",
        )
        .env("UBSAN_OPTIONS", "halt_on_error=1:print_stacktrace=1")
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", exe.display()));
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&o.stderr);
    println!(
        "--- {} stdout:\n{stdout}--- stderr:\n{stderr}",
        exe.display()
    );
    assert!(
        o.status.success(),
        "{} failed ({}):\n{stdout}\n{stderr}",
        exe.display(),
        o.status
    );
    assert!(
        !stderr.contains("Sanitizer"),
        "sanitizer report from {}:\n{stderr}",
        exe.display()
    );
    assert_eq!(
        stdout.lines().last(),
        Some("done"),
        "{} did not finish",
        exe.display()
    );
    stdout
}

/// Build `source` without sanitizers and run it under valgrind's memcheck (invalid reads and
/// writes, uses of uninitialised values, and definite or indirect leaks are errors), which sees
/// the Rust library's side as well (the sanitizers instrument only the C side). Its stdout
/// must equal the sanitizer run's. Without valgrind the run is skipped with a message; CI
/// installs it (`scripts/setup.sh`).
fn run_valgrind(cc: &str, source: &str, name: &str, args: &[&Path], asan_stdout: &str) {
    let have = Command::new("valgrind")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !have {
        eprintln!("SKIPPED: valgrind is not installed: {source} ran under the sanitizers only");
        return;
    }
    let exe = compile(cc, source, &format!("{name}-valgrind"), &[]);
    let o = Command::new("valgrind")
        .args([
            "--quiet",
            "--error-exitcode=99",
            "--leak-check=full",
            "--errors-for-leak-kinds=definite,indirect",
            "--show-leak-kinds=definite,indirect",
        ])
        .arg(&exe)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("valgrind {}: {e}", exe.display()));
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success(),
        "{} under valgrind failed ({}):\n{stderr}",
        exe.display(),
        o.status
    );
    assert_eq!(
        stdout, asan_stdout,
        "{source}: valgrind and sanitizer runs differ"
    );
}

fn vmcore() -> PathBuf {
    fixture_file("linux-6.1", "vmcore.elf").expect("unpack fixtures/linux-6.1/vmcore.elf.zst")
}

/// (pid, tgid, ppid, kernel thread, comm) of every task in the ground truth.
fn truth_tasks(gt: &Value) -> BTreeSet<(u64, u64, u64, bool, String)> {
    gt["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["pid"].as_u64().unwrap(),
                p["tgid"].as_u64().unwrap(),
                p["ppid"].as_u64().unwrap(),
                p["kthread"].as_bool().unwrap(),
                p["comm"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Linux tasks a test program printed on lines starting with `prefix`: pid, tgid, ppid,
/// kernel thread (`1`), name.
fn linux_tasks(out: &str, prefix: &str) -> BTreeSet<(u64, u64, u64, bool, String)> {
    out.lines()
        .filter_map(|l| l.strip_prefix(prefix))
        .map(|l| {
            let f: Vec<&str> = l.splitn(5, ' ').collect();
            (
                f[0].parse().unwrap(),
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
                f[3] == "1",
                f[4].to_owned(),
            )
        })
        .collect()
}

/// Linux modules a test program printed (`module NAME BASE SIZE`), in list order.
fn linux_modules(out: &str) -> Vec<(String, u64, u64)> {
    out.lines()
        .filter_map(|l| l.strip_prefix("module "))
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f[0].to_owned(), hex_str(f[1]), f[2].parse().unwrap())
        })
        .collect()
}

/// The modules the guest reported, in list order: name, base, size.
fn truth_modules(gt: &Value) -> Vec<(String, u64, u64)> {
    gt["modules"]
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
        .collect()
}

/// The value after `key ` on the line that starts with it.
fn field<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no `{key}` line in:\n{out}"))
}

fn hex_str(s: &str) -> u64 {
    hex(&Value::from(s))
}

#[test]
fn c_snapshot_introspection_matches_ground_truth() {
    let Some(cc) = compiler() else { return };
    let exe = build(&cc, "tests/c/test_snapshot.c", "test_snapshot");
    let isf = support::fixture::fixture_dir("linux-6.1").join("debian-6.1.0-56-amd64.json.xz");
    let out = run(&exe, &[&vmcore(), &isf]);
    run_valgrind(
        &cc,
        "tests/c/test_snapshot.c",
        "test_snapshot",
        &[&vmcore(), &isf],
        &out,
    );
    let gt = ground_truth("linux-6.1");

    assert_eq!(
        field(&out, "release"),
        gt["kernel_release"].as_str().unwrap()
    );
    assert_eq!(
        field(&out, "banner"),
        gt["linux_banner_expected"].as_str().unwrap().trim_end()
    );
    let k = &gt["kaslr"];
    assert_eq!(hex_str(field(&out, "kaslr_offset")), hex(&k["virt_offset"]));
    assert_eq!(hex_str(field(&out, "kernel_base")), hex(&k["text_va"]));
    assert_eq!(hex_str(field(&out, "kernel_base_pa")), hex(&k["text_pa"]));
    assert_eq!(hex_str(field(&out, "phys_base")), hex(&k["phys_base"]));
    assert_eq!(
        hex_str(field(&out, "page_offset_base")),
        hex(&k["page_offset_base"])
    );
    assert_eq!(hex_str(field(&out, "isf-kernel-base")), hex(&k["text_va"]));
    let la57 = gt["vcpus"][0]["la57"].as_bool().unwrap();
    assert_eq!(field(&out, "paging_levels"), if la57 { "5" } else { "4" });

    // linux_banner: its run-time address and physical address as the guest reported them.
    let sym: Vec<&str> = field(&out, "symbol linux_banner").split(' ').collect();
    let want = &gt["symbols"]["linux_banner"];
    assert_eq!(hex_str(sym[0]), hex(&want["addr"]));
    assert_eq!(hex_str(sym[1]), hex(&want["pa"]));

    // vCPUs and their CR3 values.
    let vcpus = gt["vcpus"].as_array().unwrap();
    assert_eq!(field(&out, "vcpus"), vcpus.len().to_string());
    for (i, v) in vcpus.iter().enumerate() {
        let line = field(&out, &format!("vcpu {i}"));
        let cr3 = line.split(' ').nth(1).unwrap();
        assert_eq!(hex_str(cr3), hex(&v["cr3"]), "vCPU {i}");
    }

    // Every task, exactly.
    assert_eq!(linux_tasks(&out, "process "), truth_tasks(&gt), "processes");
    assert_eq!(
        field(&out, "process-count"),
        gt["process_count"].as_u64().unwrap().to_string()
    );
    assert!(
        !out.contains("process-error") && !out.contains("module-error"),
        "{out}"
    );

    // Modules in list order, with base and size.
    assert_eq!(linux_modules(&out), truth_modules(&gt), "modules");

    // Who owns each vCPU's address space.
    for o in gt["vcpu_owners"].as_array().unwrap() {
        let i = o["index"].as_u64().unwrap();
        let line = field(&out, &format!("owner {i}"));
        let (pid, name) = line.split_once(' ').unwrap();
        assert_eq!(
            pid,
            o["pid"].as_u64().unwrap().to_string(),
            "owner of vCPU {i}"
        );
        assert_eq!(name, o["comm"].as_str().unwrap(), "owner of vCPU {i}");
    }

    // The error messages name what failed.
    assert!(field(&out, "io-error").contains("/nonexistent/xenvmi-c-test.elf"));
    assert!(field(&out, "partial-read").contains("0x1000 bytes read"));
}

#[test]
fn c_event_session_on_the_simulated_domain() {
    let Some(cc) = compiler() else { return };
    let exe = build(&cc, "tests/c/test_events.c", "test_events");
    let out = run(&exe, &[&vmcore()]);
    run_valgrind(
        &cc,
        "tests/c/test_events.c",
        "test_events",
        &[&vmcore()],
        &out,
    );
    let gt = ground_truth("linux-6.1");
    let tasks = truth_tasks(&gt);

    // Each CR3 write was named, by the C callback, after a real user process of the guest.
    let cr3: Vec<(u64, u64, String)> = out
        .lines()
        .filter_map(|l| l.strip_prefix("cr3 "))
        .map(|l| {
            let f: Vec<&str> = l.splitn(3, ' ').collect();
            (
                hex_str(f[0]),
                f[1].parse().unwrap_or_else(|_| panic!("{l}")),
                f[2].to_owned(),
            )
        })
        .collect();
    assert_eq!(cr3.len(), 3, "{out}");
    for (value, pid, name) in &cr3 {
        assert!(
            tasks
                .iter()
                .any(|(p, _, _, kthread, comm)| p == pid && comm == name && !kthread),
            "CR3 {value:#x} named {pid} {name}, which is not a user process of the guest"
        );
    }
    let distinct: BTreeSet<u64> = cr3.iter().map(|c| c.1).collect();
    assert_eq!(distinct.len(), 3, "three different processes: {cr3:?}");
    assert!(field(&out, "garbage").contains("torn down"));
}

#[test]
fn c_control_writes_registers_pauses_and_views_on_the_simulated_domain() {
    let Some(cc) = compiler() else { return };
    let exe = build(&cc, "tests/c/test_control.c", "test_control");
    let out = run(&exe, &[]);
    run_valgrind(&cc, "tests/c/test_control.c", "test_control", &[], &out);
    // Every part ran to its end (each checks its values itself and exits 1 otherwise).
    let parts: Vec<&str> = out.lines().collect();
    assert_eq!(
        parts,
        [
            "memory writes ok",
            "snapshot read-only ok",
            "registers ok",
            "views ok",
            "pauses ok",
            "capture ok",
            "done"
        ],
        "{out}"
    );
}

#[test]
fn c_hooks_and_injection_on_the_simulated_domain() {
    let Some(cc) = compiler() else { return };
    let exe = build(&cc, "tests/c/test_hooks.c", "test_hooks");
    let out = run(&exe, &[&vmcore()]);
    run_valgrind(
        &cc,
        "tests/c/test_hooks.c",
        "test_hooks",
        &[&vmcore()],
        &out,
    );
    // Each placement: getpid (placed before the run, by symbol), getppid (placed from the
    // callback at getpid's hit, removed at its own first hit: once although executed three
    // times), schedule (placed by virtual address), in the guest's order.
    let hits: Vec<&str> = out.lines().filter(|l| l.starts_with("hit ")).collect();
    assert_eq!(
        hits,
        [
            "hit stealth __x64_sys_getpid",
            "hit stealth __x64_sys_getppid",
            "hit stealth schedule",
            "hit in-place __x64_sys_getpid",
            "hit in-place __x64_sys_getppid",
            "hit in-place schedule",
        ],
        "{out}"
    );
    assert!(out.lines().any(|l| l == "done"), "{out}");
}

#[test]
fn c_trace_events_name_what_the_guest_reported() {
    let Some(cc) = compiler() else { return };
    let exe = build(&cc, "tests/c/test_trace.c", "test_trace");
    let out = run(&exe, &[&vmcore()]);
    run_valgrind(
        &cc,
        "tests/c/test_trace.c",
        "test_trace",
        &[&vmcore()],
        &out,
    );
    // The process on vCPU 0, as the guest itself reported it.
    let gt = ground_truth("linux-6.1");
    let owner = &gt["vcpu_owners"][0];
    let p = gt["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["pid"] == owner["pid"])
        .unwrap();
    let argv: Vec<&str> = p["cmdline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    for placement in ["stealth", "in-place"] {
        let want = format!(
            "start {placement} pid={} ppid={} comm={} argc={}",
            p["pid"],
            p["ppid"],
            owner["comm"].as_str().unwrap(),
            argv.len()
        );
        assert!(out.lines().any(|l| l == want), "{want}\n{out}");
        assert!(
            out.lines().any(|l| l == format!("filtered {placement}")),
            "{out}"
        );
    }
    let got: Vec<&str> = out
        .lines()
        .filter_map(|l| l.strip_prefix("argv "))
        .map(|l| l.split_once(' ').map_or("", |x| x.1))
        .collect();
    assert_eq!(got, [argv.clone(), argv.clone()].concat(), "{out}");
    assert!(out.lines().any(|l| l == "done"), "{out}");
}

#[test]
fn c_policies_guard_and_attestation_on_the_simulated_domain() {
    let Some(cc) = compiler() else { return };
    let dir = std::env::temp_dir().join(format!("xenvmi-c-policy-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let exe = build(&cc, "tests/c/test_policy.c", "test_policy");
    let out = run(&exe, &[&vmcore(), &dir]);
    run_valgrind(
        &cc,
        "tests/c/test_policy.c",
        "test_policy",
        &[&vmcore(), &dir],
        &out,
    );
    let _ = std::fs::remove_dir_all(&dir);
    // The C program checked each alert's values against its own script; here, that every
    // part ran and the three attacks were each denied once, by the policy that owns them.
    let mut alerts: Vec<&str> = out.lines().filter(|l| l.starts_with("alert ")).collect();
    alerts.sort();
    assert_eq!(
        alerts,
        [
            "alert cr4_smep_smap_clear cr4 denied",
            "alert kernel_text_write kernel-text denied",
            "alert msr_lstar_write msr denied",
        ],
        "{out}"
    );
    for part in ["bad input ok", "guard ok", "pause ok", "attestation ok"] {
        assert!(out.lines().any(|l| l == part), "{part}\n{out}");
    }
    // The deviation names a module the guest reported, with the size it reported, and the
    // manifest's changed size.
    let d: Vec<&str> = out
        .lines()
        .find_map(|l| l.strip_prefix("deviation "))
        .unwrap_or_else(|| panic!("no deviation line\n{out}"))
        .split(' ')
        .collect();
    let [kind, field, name, expected, seen] = d[..] else {
        panic!("{d:?}")
    };
    assert_eq!((kind, field), ("module_mismatch", "size"));
    let gt = ground_truth("linux-6.1");
    let m = gt["modules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name)
        .unwrap_or_else(|| panic!("module {name} is not in the guest's own list"));
    let size = m["size"].as_u64().unwrap();
    assert_eq!(seen.parse::<u64>().unwrap(), size);
    assert_eq!(expected.parse::<u64>().unwrap(), size + 1);
    // The first module of the manifest, which lists modules by name.
    let first = gt["modules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .min()
        .unwrap();
    assert_eq!(name, first);
}

#[test]
fn c_windows_guest_matches_its_spec() {
    let Some(cc) = compiler() else { return };
    let exe = build(&cc, "tests/c/test_windows.c", "test_windows");
    // Windows 10 19041, laid out by the real ntoskrnl ISF (the memory image is synthetic:
    // tests/support/windows_guest.rs); the C side gets the image and the vCPU registers.
    let (file, build_no) = PROFILES
        .iter()
        .copied()
        .find(|(_, b)| *b == 19041)
        .expect("the Windows 10 profile");
    let g = WinGuest::build(&load_isf(file), WinSpec::typical(build_no));
    let regs = g.registers();
    let (spec, roots, kernel_root) = (g.spec.clone(), g.roots.clone(), g.kernel_pml4);
    let image = profile_dir().join("c-tests").join("windows-19041.raw");
    std::fs::create_dir_all(image.parent().unwrap()).unwrap();
    std::fs::write(&image, &g.mem).unwrap();
    let h = |v: u64| format!("{v:x}");
    let mut args: Vec<String> = vec![
        image.display().to_string(),
        isf_dir().display().to_string(),
        h(regs[0].cr0),
        h(regs[0].cr4),
        h(regs[0].efer),
        h(regs[0].msr_lstar),
    ];
    for r in &regs[..2] {
        args.extend([h(r.cr3), h(r.rip), h(r.cs_sel as u64)]);
    }
    let paths: Vec<PathBuf> = args.iter().map(PathBuf::from).collect();
    let refs: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
    let out = run(&exe, &refs);
    run_valgrind(&cc, "tests/c/test_windows.c", "test_windows", &refs, &out);
    check_windows(
        &out,
        &WinTruth {
            spec: &spec,
            roots: &roots,
        },
        file,
        build_no,
    );
    // vCPU 0 runs the last process (on its user page tables); vCPU 1 is on the kernel's,
    // which belong to the process whose root they are.
    let last = spec.processes.last().unwrap();
    assert_eq!(
        field(&out, "owner 0"),
        format!("{} {}", last.pid, last.name)
    );
    let (i, _) = roots
        .iter()
        .enumerate()
        .find(|(_, r)| r.0 == kernel_root)
        .expect("a process on the kernel's page tables");
    let sys = &spec.processes[i];
    assert_eq!(field(&out, "owner 1"), format!("{} {}", sys.pid, sys.name));
}

#[test]
fn c_windows_crash_dump_is_discovered_from_its_header() {
    use support::crashdump as dmp;
    let Some(cc) = compiler() else { return };
    let exe = build(&cc, "tests/c/test_windows.c", "test_windows");
    // Windows 11 22000 in a full crash dump (a synthetic container by the published layout):
    // discovery from the dump's DirectoryTableBase and list heads, no registers given.
    let (file, build_no) = PROFILES
        .iter()
        .copied()
        .find(|(_, b)| *b == 22000)
        .expect("the Windows 11 profile");
    let g = WinGuest::build(&load_isf(file), WinSpec::typical(build_no));
    let mut h = dmp::Header::example(g.kernel_pml4, g.registers()[1]);
    h.ps_active_process_head = g.spec.kernel_base + g.rva["PsActiveProcessHead"];
    h.ps_loaded_module_list = g.spec.kernel_base + g.rva["PsLoadedModuleList"];
    let image = profile_dir().join("c-tests").join("windows-22000.dmp");
    std::fs::create_dir_all(image.parent().unwrap()).unwrap();
    std::fs::write(&image, dmp::full_dump(&h, &[(0, &g.mem)])).unwrap();
    let out = run(&exe, &[&image, &isf_dir()]);
    run_valgrind(
        &cc,
        "tests/c/test_windows.c",
        "test_windows",
        &[&image, &isf_dir()],
        &out,
    );
    check_windows(
        &out,
        &WinTruth {
            spec: &g.spec,
            roots: &g.roots,
        },
        file,
        build_no,
    );
}

/// `test_discover.c`'s arguments: an image, a Linux ISF and a Windows profile (`None`: `-`,
/// NULL).
fn discover_args(image: &Path, linux: Option<&Path>, windows: Option<&Path>) -> Vec<PathBuf> {
    let none = Path::new("-");
    vec![
        image.to_path_buf(),
        linux.unwrap_or(none).to_path_buf(),
        windows.unwrap_or(none).to_path_buf(),
    ]
}

#[test]
fn c_discover_tells_linux_from_windows_and_walks_either() {
    let Some(cc) = compiler() else { return };
    let exe = build(&cc, "tests/c/test_discover.c", "test_discover");
    let go = |args: &[PathBuf], env: &[(&str, &Path)]| {
        let a: Vec<&Path> = args.iter().map(PathBuf::as_path).collect();
        run_env(&exe, &a, env)
    };
    let missing_linux = Path::new("/nonexistent/xenvmi-linux.json.xz");
    let missing_windows = Path::new("/nonexistent/xenvmi-windows-profiles");
    let env_var = "XENVMI_WINDOWS_PROFILES";

    // The real Linux 6.1 dump, no profile: the kernel's own kallsyms and BTF. The Windows
    // profile given (which does not exist) is not used for a Linux guest.
    let out = go(&discover_args(&vmcore(), None, Some(missing_windows)), &[]);
    let gt = ground_truth("linux-6.1");
    assert_eq!(field(&out, "os"), "linux", "{out}");
    assert_eq!(
        field(&out, "release"),
        gt["kernel_release"].as_str().unwrap()
    );
    let k = &gt["kaslr"];
    assert_eq!(hex_str(field(&out, "kaslr_offset")), hex(&k["virt_offset"]));
    assert_eq!(hex_str(field(&out, "kernel_base")), hex(&k["text_va"]));
    assert_eq!(linux_tasks(&out, "task "), truth_tasks(&gt), "processes");
    assert_eq!(linux_modules(&out), truth_modules(&gt), "modules");
    assert_eq!(field(&out, "symbol_at linux_banner+8"), "linux_banner+0x8");

    // A Linux ISF that is not there: an error naming it, no handle.
    let out = go(&discover_args(&vmcore(), Some(missing_linux), None), &[]);
    let e = field(&out, "error");
    assert!(
        e.starts_with("XVMI_ERR_IO ") && e.contains(&missing_linux.display().to_string()),
        "{out}"
    );

    // A synthetic Windows 10 19041 guest laid out by the real ntoskrnl ISF, as a raw image
    // (no registers: the kernel's page tables come from the low stub).
    let (file, build_no) = PROFILES
        .iter()
        .copied()
        .find(|(_, b)| *b == 19041)
        .expect("the Windows 10 profile");
    let g = WinGuest::build(&load_isf(file), WinSpec::with_driver_exports(build_no));
    let image = profile_dir()
        .join("c-tests")
        .join("discover-windows-19041.raw");
    std::fs::create_dir_all(image.parent().unwrap()).unwrap();
    std::fs::write(&image, &g.mem).unwrap();
    let truth = WinTruth {
        spec: &g.spec,
        roots: &g.roots,
    };
    // The profile directory given; the Linux ISF given (missing) is not used.
    let args = discover_args(&image, Some(missing_linux), Some(&isf_dir()));
    let out = go(&args, &[]);
    assert_eq!(field(&out, "os"), "windows", "{out}");
    check_windows(&out, &truth, file, build_no);
    check_driver_symbols(&out, &g.spec);
    let a: Vec<&Path> = args.iter().map(PathBuf::as_path).collect();
    run_valgrind(&cc, "tests/c/test_discover.c", "test_discover", &a, &out);
    // No profile given: the default place, $XENVMI_WINDOWS_PROFILES.
    let out = go(&discover_args(&image, None, None), &[(env_var, &isf_dir())]);
    assert_eq!(field(&out, "os"), "windows", "{out}");
    check_windows(&out, &truth, file, build_no);
    // No profile given and nothing at the default place: an error saying where it looked.
    let out = go(
        &discover_args(&image, None, None),
        &[(env_var, missing_windows)],
    );
    let e = field(&out, "error");
    assert!(
        e.starts_with("XVMI_ERR_INVALID_ARGUMENT ")
            && e.contains(&missing_windows.display().to_string())
            && e.contains("Windows"),
        "{out}"
    );
    // A profile file that is not there: an error naming it.
    let bad = Path::new("/nonexistent/ntkrnlmp.json.xz");
    let out = go(&discover_args(&image, None, Some(bad)), &[]);
    let e = field(&out, "error");
    assert!(
        !e.is_empty() && e.contains(&bad.display().to_string()),
        "{out}"
    );

    // Neither OS: an error naming the image (by its backend) and what each check saw.
    let mut unknown = vec![0u8; 4 << 20];
    for (i, chunk) in unknown.chunks_mut(64).enumerate() {
        chunk[..8].copy_from_slice(&(i as u64).to_le_bytes());
    }
    let unknown_image = profile_dir().join("c-tests").join("discover-unknown.raw");
    std::fs::write(&unknown_image, &unknown).unwrap();
    let args = discover_args(&unknown_image, None, None);
    let out = go(&args, &[(env_var, &isf_dir())]);
    let e = field(&out, "error");
    assert!(
        e.starts_with("XVMI_ERR_OS_NOT_FOUND ")
            && e.contains("raw snapshot")
            && e.contains("Linux banner")
            && e.contains("Windows low stub"),
        "{out}"
    );
}

/// The `symbol_at DRIVER OFFSET SYMBOL` and `symbol ACPI!AcpiGetTable` lines of
/// test_discover.c against the drivers' export tables in the spec: the nearest export at or
/// below the offset, or the driver's base.
fn check_driver_symbols(out: &str, spec: &support::windows_guest::WinSpec) {
    let got: Vec<(String, u64, String)> = out
        .lines()
        .filter_map(|l| l.strip_prefix("symbol_at "))
        .filter(|l| !l.starts_with("linux_banner"))
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f[0].to_owned(), hex_str(f[1]), f[2].to_owned())
        })
        .collect();
    let mut want = Vec::new();
    for d in spec.drivers.iter().filter(|d| d.name != "ntoskrnl.exe") {
        let short = d.name.rsplit_once('.').map_or(d.name.as_str(), |(s, _)| s);
        for off in [0x10u64, 0x2345, 0x3100, 0x8024, 0x2a000] {
            if off >= u64::from(d.size) {
                continue;
            }
            let nearest = d
                .exports
                .iter()
                .flatten()
                .filter(|(_, rva)| u64::from(*rva) <= off)
                .max_by_key(|(_, rva)| *rva);
            let sym = match nearest {
                Some((name, rva)) => format!("{short}!{name}+{:#x}", off - u64::from(*rva)),
                None => format!("{short}+{off:#x}"),
            };
            want.push((d.name.clone(), off, sym));
        }
    }
    assert_eq!(got, want, "driver symbols");
    assert!(got.iter().any(|(_, _, s)| s.contains('!')), "{got:?}");
    let acpi = spec.drivers.iter().find(|d| d.name == "ACPI.sys").unwrap();
    let rva = acpi
        .exports
        .iter()
        .flatten()
        .find(|(n, _)| n == "AcpiGetTable")
        .unwrap()
        .1;
    assert_eq!(
        hex_str(field(out, "symbol ACPI!AcpiGetTable")),
        acpi.base + u64::from(rva)
    );
}

/// What a Windows test program's output must show.
struct WinTruth<'a> {
    spec: &'a support::windows_guest::WinSpec,
    roots: &'a [(u64, Option<u64>)],
}

/// Kernel, processes, DLLs and drivers printed by test_windows.c against the guest's spec.
fn check_windows(out: &str, t: &WinTruth, file: &str, build_no: u32) {
    let (spec, roots) = (t.spec, t.roots);
    assert_eq!(hex_str(field(out, "kernel_base")), spec.kernel_base);
    assert_eq!(hex_str(field(out, "image_size")), spec.size_of_image as u64);
    assert_eq!(field(out, "build"), build_no.to_string());
    assert_eq!(field(out, "release"), build_no.to_string());
    let key = file
        .trim_start_matches("ntkrnlmp-")
        .trim_end_matches(".json.xz")
        .replace('-', "");
    assert!(
        field(out, "banner").starts_with(&format!("ntkrnlmp.pdb {key} ")),
        "{out}"
    );

    // Processes in list order: pid, ppid, kernel or not, page-table roots, name.
    let procs: Vec<(u64, u64, bool, u64, u64, String)> = out
        .lines()
        .filter_map(|l| l.strip_prefix("process "))
        .map(|l| {
            let f: Vec<&str> = l.splitn(6, ' ').collect();
            (
                f[0].parse().unwrap(),
                f[1].parse().unwrap(),
                f[2] == "1",
                hex_str(f[3]),
                hex_str(f[4]),
                f[5].to_owned(),
            )
        })
        .collect();
    let want: Vec<(u64, u64, bool, u64, u64, String)> = spec
        .processes
        .iter()
        .zip(roots)
        .map(|(p, (root, user))| {
            (
                p.pid,
                p.ppid,
                p.dlls.is_none(),
                *root,
                user.unwrap_or(0),
                p.name.chars().take(15).collect(),
            )
        })
        .collect();
    assert_eq!(procs, want, "processes");

    // Each process's DLLs, in load order.
    for p in &spec.processes {
        let got: Vec<(String, u64, u64)> = out
            .lines()
            .filter_map(|l| l.strip_prefix(&format!("dll {} ", p.pid)))
            .map(|l| {
                let (rest, size) = l.rsplit_once(' ').unwrap();
                let (name, base) = rest.rsplit_once(' ').unwrap();
                (name.to_owned(), hex_str(base), hex_str(size))
            })
            .collect();
        let want: Vec<(String, u64, u64)> = p
            .dlls
            .iter()
            .flatten()
            .map(|d| (d.name.clone(), d.base, d.size as u64))
            .collect();
        assert_eq!(got, want, "DLLs of {} {}", p.pid, p.name);
    }

    // Drivers, in load order.
    let drivers: Vec<(String, u64, u64)> = out
        .lines()
        .filter_map(|l| l.strip_prefix("driver "))
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f[0].to_owned(), hex_str(f[1]), hex_str(f[2]))
        })
        .collect();
    let want: Vec<(String, u64, u64)> = spec
        .drivers
        .iter()
        .map(|d| (d.name.clone(), d.base, d.size as u64))
        .collect();
    assert_eq!(drivers, want, "drivers");
}

#[test]
fn c_example_pslist_builds_and_lists_the_guest() {
    let Some(cc) = compiler() else { return };
    let exe = build(&cc, "examples/c/pslist.c", "pslist");
    let o = Command::new(&exe)
        .arg(vmcore())
        .env("ASAN_OPTIONS", "detect_leaks=1:halt_on_error=1")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let gt = ground_truth("linux-6.1");
    assert!(
        out.contains(gt["kernel_release"].as_str().unwrap()),
        "{out}"
    );
    for (pid, _, _, kthread, comm) in truth_tasks(&gt) {
        // Kernel threads are printed as [name], like ps does.
        let name = if kthread {
            format!("[{comm}]")
        } else {
            comm.clone()
        };
        assert!(
            out.lines().any(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.first() == Some(&pid.to_string().as_str()) && l.trim_end().ends_with(&name)
            }),
            "pid {pid} {comm} missing:\n{out}"
        );
    }
    for m in gt["modules"].as_array().unwrap() {
        assert!(out.contains(m["name"].as_str().unwrap()), "{out}");
    }
    // A missing image: exit 1 with the library's message naming the file.
    let o = Command::new(&exe)
        .arg("/nonexistent/image")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent/image"));
}

#[test]
fn header_compiles_as_cxx() {
    // Vendors include the header from C++ too (cpp_compat: extern "C").
    let cxx = std::env::var("CXX").unwrap_or_else(|_| "c++".into());
    if !Command::new(&cxx)
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
    {
        eprintln!("SKIPPED: no C++ compiler (`{cxx}`); the header is still checked as C");
        return;
    }
    let root = support::fixture::repo_root();
    let o = Command::new(&cxx)
        .args([
            "-std=c++11",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-fsyntax-only",
            "-x",
            "c++",
        ])
        .arg(root.join("include/xenvmi.h"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}
