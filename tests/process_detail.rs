//! Forensic process detail (`Linux::process_detail`) on the five real Linux dumps (6.1 in four
//! configurations, and 6.12 whose threads hang off `signal_struct`), checked against what each
//! guest reported about itself from `/proc` when the dump was taken (`ground-truth.json`:
//! `cmdline` is `/proc/PID/cmdline`; `start_stack` and `arg_start` are `/proc/PID/stat`'s). Nothing here compares with output recorded from xenvmi.

mod support;

use support::fixture::{fixture_file, ground_truth};
use xenvmi::backend::snapshot::Snapshot;
use xenvmi::mem::GuestMemory;
use xenvmi::os::linux::maps::Backing;
use xenvmi::os::linux::{Linux, ProfileSource};

const FIXTURES: &[&str] = &[
    "linux-6.1",
    "linux-6.1-la57",
    "linux-6.1-cloud-pti",
    "linux-6.1-mem4g",
    "linux-6.12",
    "linux-6.1-net",
];

#[test]
fn arguments_executables_credentials_and_threads_match_the_guests_own_proc() {
    for f in FIXTURES {
        let snap = Snapshot::open(fixture_file(f, "vmcore.elf").unwrap()).unwrap();
        let regs = snap.all_registers().to_vec();
        let mem = GuestMemory::new(snap);
        let linux = Linux::discover(&mem, &regs, ProfileSource::InGuest).unwrap();
        let gt = ground_truth(f);
        let truth = gt["processes"].as_array().unwrap();
        let procs: Vec<_> = linux.processes(&mem).map(Result::unwrap).collect();
        let (mut compared, mut unreadable, mut exes) = (0, 0, 0);
        for p in &procs {
            let d = linux.process_detail(&mem, p);
            let t = truth
                .iter()
                .find(|t| t["pid"].as_u64() == Some(p.pid))
                .unwrap_or_else(|| panic!("{f}: pid {} not in the ground truth", p.pid));
            // Threads: the leader first, under the process's own pid and name.
            let threads = d.threads.as_ref().unwrap_or_else(|e| panic!("{f}: {e}"));
            assert_eq!(threads[0].tid, p.pid, "{f}: {p:?}");
            assert_eq!(threads[0].name, p.name, "{f}");
            assert!(threads.iter().all(|th| "RSDTtXZPI".contains(th.state)));
            let c = d
                .credentials
                .as_ref()
                .unwrap_or_else(|e| panic!("{f}: {e}"));
            if p.pid == 1 {
                assert_eq!((c.uid, c.euid, c.gid), (0, 0, 0), "{f}: init runs as root");
            }
            if p.kernel_thread {
                assert_eq!(d.cmdline.as_deref(), Ok(&[][..]), "{f}: {}", p.name);
                assert_eq!(d.exe, Ok(None), "{f}: {}", p.name);
                continue;
            }
            let want: Vec<String> = t["cmdline"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap().to_owned())
                .collect();
            match &d.cmdline {
                Ok(args) => {
                    assert_eq!(args, &want, "{f}: pid {} ({})", p.pid, p.name);
                    compared += 1;
                }
                // A page the dump does not hold: the reason names it.
                Err(e) => {
                    assert!(
                        e.contains("not present") || e.contains("not in"),
                        "{f}: {e}"
                    );
                    unreadable += 1;
                }
            }
            match &d.exe {
                Ok(Some(path)) => {
                    assert!(path.starts_with('/') && !path.contains("//"), "{f}: {path}");
                    exes += 1;
                }
                other => panic!("{f}: pid {} exe {other:?}", p.pid),
            }
            // The memory map: in order, not overlapping; the stack holds the guest's own
            // `start_stack`; the executable is mapped, one part of it executable.
            let maps = d
                .maps
                .as_ref()
                .unwrap_or_else(|e| panic!("{f}: pid {}: {e}", p.pid));
            assert!(maps.len() >= 3, "{f}: pid {}: {maps:?}", p.pid);
            for w in maps.windows(2) {
                assert!(
                    w[0].start < w[0].end && w[0].end <= w[1].start,
                    "{f}: {w:?}"
                );
            }
            let start_stack = support::fixture::hex(&t["start_stack"]);
            let stack: Vec<_> = maps
                .iter()
                .filter(|v| v.backing == Backing::Stack)
                .collect();
            assert_eq!(stack.len(), 1, "{f}: pid {}: {maps:?}", p.pid);
            assert!(stack[0].start <= start_stack && start_stack < stack[0].end);
            assert_eq!(stack[0].perms(), "rw-p", "{f}");
            // The argument area (arg_start) is inside the stack mapping, as the kernel puts it.
            let arg_start = support::fixture::hex(&t["arg_start"]);
            assert!(
                stack[0].start <= arg_start && arg_start < stack[0].end,
                "{f}"
            );
            let exe = d.exe.clone().unwrap().unwrap();
            assert!(
                maps.iter()
                    .any(|v| v.backing == Backing::File(exe.clone()) && v.perms() == "r-xp"),
                "{f}: pid {}: no executable mapping of {exe}: {maps:?}",
                p.pid
            );
            // Open files: by descriptor, each path absolute or a pseudo file's name (the
            // sockets and pipes of linux-6.1-net, compared exactly in its own test).
            let files = d.files.as_ref().unwrap_or_else(|e| panic!("{f}: {e}"));
            assert!(
                files.windows(2).all(|w| w[0].fd < w[1].fd),
                "{f}: {files:?}"
            );
            for of in files {
                let path = of.path.as_ref().unwrap_or_else(|e| panic!("{f}: {e}"));
                assert!(
                    path.starts_with('/')
                        || path.starts_with("socket:[")
                        || path.starts_with("pipe:["),
                    "{f}: {path}"
                );
            }
            if let Ok(env) = &d.environ {
                assert!(env.iter().all(|v| v.contains('=')), "{f}: {env:?}");
            }
        }
        eprintln!("{f}: {compared} command lines equal to /proc's, {unreadable} not in the dump, {exes} executables");
        assert!(compared >= 5, "{f}: only {compared} command lines compared");
        assert!(unreadable * 4 <= compared, "{f}: too many unreadable");
    }
}

#[test]
fn init_is_the_shell_running_the_init_script() {
    // The make-linux-guest images boot busybox: PID 1 is `/bin/sh /init`, whose executable is
    // busybox itself.
    let snap = Snapshot::open(fixture_file("linux-6.1", "vmcore.elf").unwrap()).unwrap();
    let regs = snap.all_registers().to_vec();
    let mem = GuestMemory::new(snap);
    let linux = Linux::discover(&mem, &regs, ProfileSource::InGuest).unwrap();
    let init = linux
        .processes(&mem)
        .map(Result::unwrap)
        .find(|p| p.pid == 1)
        .unwrap();
    let d = linux.process_detail(&mem, &init);
    assert_eq!(d.cmdline.unwrap(), ["/bin/sh", "/init"]);
    let exe = d.exe.unwrap().unwrap();
    assert!(exe.ends_with("/busybox") || exe.ends_with("/sh"), "{exe}");
    // The kernel gives init /dev/console as descriptors 0, 1 and 2 (`console_on_rootfs`), and
    // the shell keeps its script, its argv[1], open to read it.
    let files = d.files.unwrap();
    let path = |fd: u64| {
        files
            .iter()
            .find(|f| f.fd == fd)
            .map(|f| f.path.clone().unwrap())
    };
    for fd in 0..3 {
        assert_eq!(path(fd).as_deref(), Some("/dev/console"), "{files:?}");
    }
    assert!(
        files
            .iter()
            .any(|f| f.fd > 2 && f.path.as_deref() == Ok("/init")),
        "{files:?}"
    );
}

#[test]
fn a_page_the_capture_left_out_costs_one_part_of_one_process() {
    // A LiME capture of the 6.1 guest (LiME takes ranges, and has no registers) that leaves out
    // the page holding init's arguments: init's `cmdline` is unreadable with a reason naming
    // the page; its other parts, and every other process, are read as before.
    let f = "linux-6.1";
    let snap = Snapshot::open(fixture_file(f, "vmcore.elf").unwrap()).unwrap();
    let regs = snap.all_registers().to_vec();
    let full = GuestMemory::new(snap);
    let linux = Linux::discover(&full, &regs, ProfileSource::InGuest).unwrap();
    let init = linux
        .processes(&full)
        .map(Result::unwrap)
        .find(|p| p.pid == 1)
        .unwrap();
    let gt = ground_truth(f);
    let p1 = gt["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["pid"] == 1)
        .unwrap();
    let space = xenvmi::mem::AddressSpace {
        root: init.dtb.unwrap(),
        mode: linux.info().kernel_space.mode,
    };
    let hole = full
        .translate_mapped(space, xenvmi::Gva(support::fixture::hex(&p1["arg_start"])))
        .unwrap()
        .0
        & !0xfff;
    // Write the capture: every range of the dump, split around the hole.
    let path = std::env::temp_dir().join(format!("xenvmi-hole-{}.lime", std::process::id()));
    {
        use std::io::Write;
        let mut out = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        let src = full.backend();
        for r in xenvmi::backend::PhysicalMemory::physical_ranges(src) {
            let pieces = if r.start <= hole && hole < r.end {
                vec![r.start..hole, hole + 0x1000..r.end]
            } else {
                vec![r]
            };
            for p in pieces.into_iter().filter(|p| p.start < p.end) {
                let mut h = Vec::new();
                h.extend_from_slice(&0x4C69_4D45u32.to_le_bytes());
                h.extend_from_slice(&1u32.to_le_bytes());
                h.extend_from_slice(&p.start.to_le_bytes());
                h.extend_from_slice(&(p.end - 1).to_le_bytes());
                h.extend_from_slice(&[0u8; 8]);
                out.write_all(&h).unwrap();
                let mut at = p.start;
                let mut buf = vec![0u8; 1 << 20];
                while at < p.end {
                    let n = ((p.end - at) as usize).min(buf.len());
                    full.read_physical(xenvmi::Gpa(at), &mut buf[..n]).unwrap();
                    out.write_all(&buf[..n]).unwrap();
                    at += n as u64;
                }
            }
        }
    }
    let lime = GuestMemory::new(Snapshot::open(&path).unwrap());
    // No registers in a LiME capture: discovery finds the kernel from memory alone.
    let linux2 = Linux::discover(&lime, &[], ProfileSource::InGuest).unwrap();
    let procs: Vec<_> = linux2.processes(&lime).map(Result::unwrap).collect();
    assert_eq!(procs.len(), linux.processes(&full).count());
    for p in &procs {
        let d = linux2.process_detail(&lime, p);
        if p.pid == 1 {
            let why = d.cmdline.unwrap_err();
            // "guest-physical range 0x...+0x.. is not backed by LiME snapshot": in the hole.
            assert!(why.contains("not backed"), "{why}");
            assert!(why.contains(&format!("{:#x}", hole >> 12)), "{why}");
            assert!(d.exe.unwrap().is_some() && d.threads.is_ok() && d.credentials.is_ok());
            assert!(d.files.is_ok() && d.maps.is_ok());
        } else if !p.kernel_thread {
            assert!(d.cmdline.is_ok(), "pid {}: {:?}", p.pid, d.cmdline);
        }
    }
    let _ = std::fs::remove_file(&path);
}

#[test]
fn the_task_on_each_vcpu_is_read_from_its_per_cpu_area() {
    // A vCPU in user mode runs the process whose page tables its CR3 holds (the guest's own
    // report, or the reference walker's); an idle vCPU runs its idle task, pid 0, which the
    // kernel names `swapper/N`, whatever CR3 it kept (lazy TLB).
    let mut user = 0;
    for f in FIXTURES {
        let snap = Snapshot::open(fixture_file(f, "vmcore.elf").unwrap()).unwrap();
        let regs = snap.all_registers().to_vec();
        let mem = GuestMemory::new(snap);
        let linux = Linux::discover(&mem, &regs, ProfileSource::InGuest).unwrap();
        let gt = ground_truth(f);
        for (i, _cr3, pid) in support::fixture::vcpu_cr3_owners(f, &gt) {
            let cur = linux
                .current_task(&mem, &regs[i])
                .unwrap_or_else(|e| panic!("{f}: vCPU {i}: {e}"));
            if regs[i].cpl() == 3 {
                assert_eq!(cur.tgid, pid, "{f}: vCPU {i}: {cur:?}");
                user += 1;
            } else if cur.pid == 0 {
                assert_eq!(cur.name, format!("swapper/{i}"), "{f}: vCPU {i}");
            } else {
                // In the kernel on behalf of a task: a real one of this guest.
                assert!(
                    linux
                        .processes(&mem)
                        .map(Result::unwrap)
                        .any(|p| p.tgid == cur.tgid),
                    "{f}: vCPU {i}: {cur:?}"
                );
            }
        }
    }
    assert!(user >= 1, "no vCPU in user mode to compare");
}
