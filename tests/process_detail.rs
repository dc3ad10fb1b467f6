//! Forensic process detail (`Linux::process_detail`) on the five real Linux dumps (6.1 in four
//! configurations, and 6.12 whose threads hang off `signal_struct`), checked against what each
//! guest reported about itself from `/proc` when the dump was taken (`ground-truth.json`:
//! `cmdline` is `/proc/PID/cmdline`; `start_stack` and `arg_start` are `/proc/PID/stat`'s). Nothing here compares with output recorded from xenvmi.

mod support;

use support::fixture::{fixture_file, ground_truth, hex};
use xenvmi::backend::snapshot::Snapshot;
use xenvmi::mem::GuestMemory;
use xenvmi::os::linux::maps::Backing;
use xenvmi::os::linux::{Linux, ProfileSource};

use support::linux::FIXTURES;

#[test]
fn arguments_executables_credentials_and_threads_match_the_guests_own_proc() {
    for f in FIXTURES {
        let (mem, linux) = support::linux::open(f);
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
    let (mem, linux) = support::linux::open("linux-6.1");
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
                out.write_all(&support::lime::header(p.start, p.end - p.start))
                    .unwrap();
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
        let (mem, linux, regs) = support::linux::open_with_registers(f);
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

/// The dump with sockets, pipes and known descriptors (`fixtures/linux-6.1-net`).
const NET: &str = "linux-6.1-net";

fn open(f: &str) -> (GuestMemory<Snapshot>, Linux) {
    let (mem, linux) = support::linux::open(f);
    (mem, linux)
}

/// A map's name as `/proc/PID/maps` prints it ("" for anonymous memory).
fn maps_name(b: &Backing) -> String {
    match b {
        Backing::File(p) | Backing::Special(p) => p.clone(),
        Backing::Heap => "[heap]".into(),
        Backing::Stack => "[stack]".into(),
        Backing::Anonymous => String::new(),
        Backing::Unreadable(why) => panic!("unreadable: {why}"),
    }
}

#[test]
fn open_files_and_maps_equal_the_guests_own_proc_on_the_net_dump() {
    // `ground-truth.json` has, for each user process, `readlink /proc/PID/fd/N` and the parsed
    // `/proc/PID/maps` the guest itself printed: pseudo files (`socket:[N]`, `pipe:[N]`), an
    // unlinked file (`/tmp/vmi_deleted.txt (deleted)`, pid 133 fd 8), `[vvar]` and `[vdso]`.
    // Every one must be equal: descriptors and targets, and every area's range, rights, file
    // offset and name, in order.
    let (mem, linux) = open(NET);
    let gt = ground_truth(NET);
    let procs: Vec<_> = linux.processes(&mem).map(Result::unwrap).collect();
    let (mut compared, mut areas, mut fds) = (0, 0, 0);
    for t in gt["processes"].as_array().unwrap() {
        let Some(want_maps) = t.get("maps").and_then(|m| m.as_array()) else {
            continue;
        };
        let pid = t["pid"].as_u64().unwrap();
        let p = procs
            .iter()
            .find(|p| p.pid == pid)
            .unwrap_or_else(|| panic!("pid {pid} is not in the dump"));
        let d = linux.process_detail(&mem, p);
        // Descriptors: exactly the guest's, each with the guest's target.
        let files = d.files.unwrap_or_else(|e| panic!("pid {pid}: {e}"));
        let got: std::collections::BTreeMap<u64, String> = files
            .iter()
            .map(|f| {
                let path = f.path.clone().unwrap_or_else(|e| panic!("pid {pid}: {e}"));
                (f.fd, path)
            })
            .collect();
        let want: std::collections::BTreeMap<u64, String> = t["fds"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(fd, target)| (fd.parse().unwrap(), target.as_str().unwrap().to_owned()))
            .collect();
        assert_eq!(got, want, "pid {pid} ({}): fds", p.name);
        fds += want.len();
        // Memory map: every area, in order.
        let maps = d.maps.unwrap_or_else(|e| panic!("pid {pid}: {e}"));
        let got: Vec<(u64, u64, String, u64, String)> = maps
            .iter()
            .map(|v| (v.start, v.end, v.perms(), v.offset, maps_name(&v.backing)))
            .collect();
        let want: Vec<(u64, u64, String, u64, String)> = want_maps
            .iter()
            .map(|m| {
                (
                    hex(&m["start"]),
                    hex(&m["end"]),
                    m["perms"].as_str().unwrap().to_owned(),
                    hex(&m["pgoff"]),
                    m["path"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        assert_eq!(got, want, "pid {pid} ({}): maps", p.name);
        areas += want.len();
        compared += 1;
    }
    eprintln!("{NET}: {compared} processes, {fds} descriptors and {areas} areas equal to /proc's");
    // Every user process of the guest's report: 29, with 111 descriptors and 290 areas.
    assert_eq!((compared, fds, areas), (29, 111, 290));
}

#[test]
fn vdso_and_vvar_are_named_in_every_dump() {
    // x86-64 maps the vDSO as two special mappings (`arch/x86/entry/vdso/vma.c`): `[vvar]`
    // (read-only data pages) right below `[vdso]` (the code). Every user process of every
    // dump has both, named. Where Volatility3 read the dump (`volatility3/linux.proc.Maps.json`),
    // its `[vdso]` areas (it names the vDSO, not vvar) are the same ranges.
    for f in FIXTURES.iter().chain([&NET]) {
        let (mem, linux) = open(f);
        let vol: Vec<serde_json::Value> = std::fs::read(
            support::fixture::fixture_dir(f).join("volatility3/linux.proc.Maps.json"),
        )
        .map(|b| serde_json::from_slice(&b).unwrap())
        .unwrap_or_default();
        let (mut users, mut vol_vdso) = (0, 0);
        for p in linux.processes(&mem).map(Result::unwrap) {
            if p.kernel_thread {
                continue;
            }
            let maps = linux.process_detail(&mem, &p).maps.unwrap();
            let named = |n: &str| -> Vec<_> {
                maps.iter()
                    .filter(|v| v.backing == Backing::Special(n.into()))
                    .collect()
            };
            let (vdso, vvar) = (named("[vdso]"), named("[vvar]"));
            assert_eq!(
                (vdso.len(), vvar.len()),
                (1, 1),
                "{f}: pid {}: {maps:?}",
                p.pid
            );
            assert_eq!(vdso[0].perms(), "r-xp", "{f}");
            assert_eq!(vvar[0].perms(), "r--p", "{f}");
            assert_eq!(vvar[0].end, vdso[0].start, "{f}: pid {}", p.pid);
            assert!(
                !maps
                    .iter()
                    .any(|v| matches!(v.backing, Backing::Unreadable(_))),
                "{f}: {maps:?}"
            );
            for r in vol.iter().filter(|r| r["PID"].as_u64() == Some(p.pid)) {
                if r["File Path"] == "[vdso]" {
                    assert_eq!(
                        (r["Start"].as_u64(), r["End"].as_u64()),
                        (Some(vdso[0].start), Some(vdso[0].end)),
                        "{f}: pid {}",
                        p.pid
                    );
                    vol_vdso += 1;
                }
            }
            users += 1;
        }
        eprintln!("{f}: {users} processes with [vvar] and [vdso]; {vol_vdso} [vdso] equal to Volatility3's");
        assert!(users >= 10, "{f}: {users}");
        if !vol.is_empty() {
            assert_eq!(vol_vdso, users, "{f}");
        }
    }
}

/// Reads of kernel fields by name (the guest's BTF), for tests that patch one of them.
struct Fields<'a> {
    linux: &'a Linux,
    mem: &'a GuestMemory<Snapshot>,
}

impl Fields<'_> {
    fn off(&self, t: &str, f: &str) -> u64 {
        self.linux.types().field(t, f).unwrap().offset
    }
    fn ptr(&self, base: u64, t: &str, f: &str) -> u64 {
        let ks = self.linux.info().kernel_space;
        self.mem
            .read_u64(ks, xenvmi::Gva(base + self.off(t, f)))
            .unwrap()
    }
    /// `file->f_path.dentry`.
    fn dentry(&self, file: u64) -> u64 {
        self.ptr(file + self.off("file", "f_path"), "path", "dentry")
    }
    /// `task->files->fdt->fd[fd]`.
    fn fd_file(&self, task: u64, fd: u64) -> u64 {
        let files = self.ptr(task, "task_struct", "files");
        let fdt = self.ptr(files, "files_struct", "fdt");
        let array = self.ptr(fdt, "fdtable", "fd");
        let ks = self.linux.info().kernel_space;
        self.mem.read_u64(ks, xenvmi::Gva(array + 8 * fd)).unwrap()
    }
    /// `&dentry->d_hash.pprev`.
    fn hash_pprev(&self, dentry: u64) -> xenvmi::Gva {
        xenvmi::Gva(dentry + self.off("dentry", "d_hash") + self.off("hlist_bl_node", "pprev"))
    }
}

#[test]
fn an_unlinked_dentry_is_marked_deleted_in_exe_maps_and_fds_as_d_path_marks_it() {
    // The kernel's `d_path` appends " (deleted)" when `d_unlinked(dentry)`: the dentry is
    // unhashed (`d_hash.pprev == NULL`) and not a root (`d_parent != dentry`). The real dump
    // has one such file (pid 133's fd 8, checked against the guest above); here single fields
    // of the real guest are changed to see that the rule is the kernel's, for each place
    // `/proc` uses `d_path`:
    // - busybox's dentry unhashed, as if `/bin/busybox` had been removed while running:
    //   `exe` and every file mapping of every process say `/bin/busybox (deleted)`;
    // - the unlinked file's dentry hashed again (its `pprev` pointing at itself): no mark;
    // - `/lib/modules` (fd 7) unhashed but made its own parent, a root: `/`, and no mark.
    use support::patched::Patched;
    let (mem, linux) = open(NET);
    let ks = linux.info().kernel_space;
    let fields = Fields {
        linux: &linux,
        mem: &mem,
    };
    let procs: Vec<_> = linux.processes(&mem).map(Result::unwrap).collect();
    let sleeper = procs.iter().find(|p| p.pid == 133).unwrap();
    let mm = fields.ptr(sleeper.object.0, "task_struct", "mm");
    let busybox = fields.dentry(fields.ptr(mm, "mm_struct", "exe_file"));
    let deleted = fields.dentry(fields.fd_file(sleeper.object.0, 8));
    let modules = fields.dentry(fields.fd_file(sleeper.object.0, 7));
    let mut patched = Patched::new(mem.backend());
    patched.set_u64(&mem, ks, fields.hash_pprev(busybox), 0);
    let pprev = fields.hash_pprev(deleted);
    patched.set_u64(&mem, ks, pprev, pprev.0);
    patched.set_u64(&mem, ks, fields.hash_pprev(modules), 0);
    let parent = xenvmi::Gva(modules + fields.off("dentry", "d_parent"));
    patched.set_u64(&mem, ks, parent, modules);
    let pmem = GuestMemory::new(patched);

    let mut mappings = 0;
    for p in procs.iter().filter(|p| !p.kernel_thread) {
        let d = linux.process_detail(&pmem, p);
        assert_eq!(
            d.exe,
            Ok(Some("/bin/busybox (deleted)".to_owned())),
            "pid {}",
            p.pid
        );
        for v in d.maps.unwrap() {
            if let Backing::File(path) = &v.backing {
                assert_eq!(path, "/bin/busybox (deleted)", "pid {}", p.pid);
                mappings += 1;
            }
        }
    }
    assert!(mappings >= 5 * 29, "{mappings}");
    let files = linux.process_detail(&pmem, sleeper).files.unwrap();
    let path = |fd: u64| files.iter().find(|f| f.fd == fd).unwrap().path.clone();
    assert_eq!(path(8).as_deref(), Ok("/tmp/vmi_deleted.txt"));
    assert_eq!(path(7).as_deref(), Ok("/"));
    assert_eq!(path(3).as_deref(), Ok("/tmp/vmi_known.txt"));
    // And on the unpatched dump, the exe is not marked.
    let d = linux.process_detail(&mem, sleeper);
    assert_eq!(d.exe, Ok(Some("/bin/busybox".to_owned())));
}
