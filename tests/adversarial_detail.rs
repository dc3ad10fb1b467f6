//! Hostile guests for the forensic walks: a process's memory map (maple tree and VMA list),
//! file paths, open files, threads, arguments and environment, the system call table and the
//! task on a vCPU. Each case starts from a fully described, healthy process
//! (`tests/support/hostile.rs`), corrupts one structure, and checks the bound that stops the
//! walk (the error names the cycle or the cap, or the result is capped), under the 10 s
//! watchdog. `cargo test --release --test adversarial_detail -- --nocapture` prints each
//! case's time; `docs/security.md` records them.

mod support;

use support::guest::*;
use support::hostile::*;
use xenvmi::os::linux::detail::{
    Credentials, ProcessDetail, Thread, MAX_ARGS_BYTES, MAX_PATH_COMPONENTS, MAX_PATH_STEPS,
    MAX_THREADS,
};
use xenvmi::os::linux::files::{OpenFile, MAX_FDS};
use xenvmi::os::linux::maps::{Backing, Vma, MAX_DEPTH, MAX_NODES, MAX_VMAS};
use xenvmi::os::linux::syscalls::{SyscallTable, MAX_SYSCALLS};
use xenvmi::os::linux::RunningThread;
use xenvmi::{Error, Gva};

/// Unmapped kernel memory (the image is mapped at `TEXT_VA` only).
const UNMAPPED: u64 = 0xffff_ffff_a000_0000;

/// `sys_call_table` of `n` entries (the next symbol `8 * n` bytes on).
fn table_end(n: u64) -> u64 {
    kva(SYS_CALL_TABLE) + 8 * n
}

fn boot(h: Hostile, layout: Layout) -> Booted {
    boot_with(h, layout, table_end(16))
}

fn boot_with(h: Hostile, layout: Layout, end: u64) -> Booted {
    h.boot(detail_profile(layout, end))
        .expect("the hostile guest is still found")
}

/// A guest of three tasks whose first is fully described.
fn guest() -> (Hostile, Parts) {
    let mut h = Hostile::new(3);
    let p = h.healthy(0);
    (h, p)
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn has(r: &Result<impl std::fmt::Debug, String>, needles: &[&str]) {
    match r {
        Err(e) => assert!(
            needles.iter().all(|n| e.contains(n)),
            "expected an error with {needles:?}, got `{e}`"
        ),
        Ok(v) => panic!("expected an error with {needles:?}, got {v:?}"),
    }
}

fn maps(name: &str, h: Hostile, layout: Layout, mm: u64) -> Result<Vec<Vma>, String> {
    run(name, move || {
        let b = boot(h, layout);
        b.linux
            .memory_map(&b.mem, Gva(mm))
            .map_err(|e| e.to_string())
    })
}

fn exe(name: &str, h: Hostile, task: u64) -> Result<Option<String>, String> {
    run(name, move || {
        let b = boot(h, Layout::V6_1);
        let p = b.process(task).map_err(|e| e.to_string())?;
        b.linux.executable(&b.mem, &p).map_err(|e| e.to_string())
    })
}

fn files(name: &str, h: Hostile, task: u64) -> Result<Vec<OpenFile>, String> {
    run(name, move || {
        let b = boot(h, Layout::V6_1);
        b.linux
            .open_files(&b.mem, Gva(task))
            .map_err(|e| e.to_string())
    })
}

fn detail(name: &str, h: Hostile, layout: Layout, task: u64) -> ProcessDetail {
    run(name, move || {
        let b = boot(h, layout);
        let p = b.process(task).expect("the task reads");
        b.linux.process_detail(&b.mem, &p)
    })
}

fn syscalls(name: &str, h: Hostile, end: u64) -> Result<SyscallTable, String> {
    run(name, move || {
        let b = boot_with(h, Layout::V6_1, end);
        SyscallTable::read(&b.linux, &b.mem).map_err(|e| e.to_string())
    })
}

// ---------------------------------------------------------------------------------------------
// The healthy process, in the three layouts.

#[test]
fn baseline_detail_is_read_exactly_in_every_layout() {
    for (name, layout) in [
        ("detail baseline (6.1: maple, thread_group)", Layout::V6_1),
        ("detail baseline (6.7+: signal->thread_head)", Layout::V6_7),
        ("detail baseline (5.15: mmap/vm_next list)", Layout::V5_15),
    ] {
        let (mut h, p) = guest();
        h.syscalls_metadata();
        h.syscall(
            0,
            b"sys_read\0",
            3,
            &[
                ("unsigned int", "fd"),
                ("char *", "buf"),
                ("size_t", "count"),
            ],
        );
        h.syscall(
            2,
            b"sys_open\0",
            3,
            &[
                ("const char *", "filename"),
                ("int", "flags"),
                ("umode_t", "mode"),
            ],
        );
        let task = p.task;
        let (d, t, cur) = run(name, move || {
            let b = boot(h, layout);
            let proc_ = b.process(task)?;
            let d = b.linux.process_detail(&b.mem, &proc_);
            let t = SyscallTable::read(&b.linux, &b.mem)?;
            let cur = b.linux.current_thread(&b.mem, &b.regs[0])?;
            let cur_task = b.linux.current_task(&b.mem, &b.regs[0])?;
            assert_eq!(cur_task.object, Gva(task));
            Ok::<_, Error>((d, t, cur))
        })
        .unwrap();
        assert_eq!(d.cmdline, Ok(strings(HEALTHY_ARGS)), "{name}");
        assert_eq!(d.environ, Ok(strings(HEALTHY_ENV)), "{name}");
        assert_eq!(d.exe, Ok(Some("/usr/bin/sh".into())), "{name}");
        assert_eq!(
            d.credentials,
            Ok(Credentials {
                uid: 1000,
                gid: 1001,
                euid: 0,
                egid: 0
            })
        );
        assert_eq!(
            d.threads,
            Ok(vec![
                Thread {
                    tid: 100,
                    name: "task0".into(),
                    state: 'S'
                },
                Thread {
                    tid: 101,
                    name: "task1".into(),
                    state: 'R'
                },
            ]),
            "{name}"
        );
        let m = d.maps.as_ref().unwrap_or_else(|e| panic!("{name}: {e}"));
        let got: Vec<_> = m
            .iter()
            .map(|v| (v.start, v.end, v.perms(), v.backing.clone()))
            .collect();
        assert_eq!(
            got,
            [
                (
                    0x40_0000,
                    0x40_1000,
                    "r-xp".to_string(),
                    Backing::File("/usr/bin/sh".into())
                ),
                (0x60_0000, 0x62_0000, "rw-p".into(), Backing::Heap),
                (0x7ffd_0000, 0x7ffe_0000, "rw-p".into(), Backing::Stack),
            ],
            "{name}"
        );
        let f: Vec<_> = d
            .files
            .as_ref()
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .iter()
            .map(|f| (f.fd, f.path.clone().unwrap()))
            .collect();
        assert_eq!(
            f,
            [
                (0, "/dev/null".to_string()),
                (1, "/dev/null".into()),
                (2, "/dev/null".into()),
                (3, "/usr/bin/sh".into())
            ]
        );
        assert_eq!((t.len(), t.iter().count()), (16, 2));
        let open = t.by_name("open").expect("open");
        assert_eq!(open.nr, 2);
        let args: Vec<_> = open
            .args
            .iter()
            .map(|a| (a.type_name.as_str(), a.name.as_str()))
            .collect();
        assert_eq!(
            args,
            [
                ("const char *", "filename"),
                ("int", "flags"),
                ("umode_t", "mode")
            ]
        );
        assert_eq!(t.get(0).map(|s| s.name.as_str()), Some("read"));
        assert_eq!(
            cur,
            RunningThread {
                task: Gva(task),
                tid: 100,
                pid: 100,
                name: "task0".into()
            }
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 1. The memory map: maple tree (6.1+) and VMA list.

#[test]
fn maple_node_slot_pointing_at_itself_or_its_parent() {
    let (mut h, p) = guest();
    // The root's second slot points at the root itself.
    h.maple_slots(
        p.maple_root,
        MAPLE_ARANGE_64,
        &[
            maple_node(p.leaves[0], MAPLE_LEAF_64),
            maple_node(p.maple_root, MAPLE_ARANGE_64),
        ],
        &[0x61_ffff, u64::MAX],
    );
    let r = maps(
        "maple: slot pointing at its own node",
        h,
        Layout::V6_1,
        p.mm,
    );
    has(&r, &["seen twice", &format!("{:#x}", p.maple_root)]);

    // A range node under the root whose first slot points back at the root.
    let (mut h, p) = guest();
    let child = h.node();
    h.maple_slots(
        child,
        MAPLE_RANGE_64,
        &[
            maple_node(p.maple_root, MAPLE_ARANGE_64),
            maple_node(p.leaves[1], MAPLE_LEAF_64),
        ],
        &[0x7ffc_ffff, u64::MAX],
    );
    h.maple_slots(
        p.maple_root,
        MAPLE_ARANGE_64,
        &[
            maple_node(p.leaves[0], MAPLE_LEAF_64),
            maple_node(child, MAPLE_RANGE_64),
        ],
        &[0x61_ffff, u64::MAX],
    );
    let r = maps(
        "maple: child slot pointing at its parent",
        h,
        Layout::V6_1,
        p.mm,
    );
    has(&r, &["seen twice", &format!("{:#x}", p.maple_root)]);
}

/// A chain of `levels` nodes (range nodes, then a leaf holding the first VMA) as the tree.
fn maple_chain(h: &mut Hostile, p: &Parts, levels: usize) {
    let leaf = h.node();
    h.maple_slots(
        leaf,
        MAPLE_LEAF_64,
        &[0, p.vmas[0]],
        &[0x3f_ffff, 0x40_0fff],
    );
    let mut top = maple_node(leaf, MAPLE_LEAF_64);
    for _ in 1..levels {
        let n = h.node();
        h.maple_slots(n, MAPLE_RANGE_64, &[top], &[]);
        top = maple_node(n, MAPLE_RANGE_64);
    }
    h.set64_va(p.mm + MM_MT + MT_ROOT, top);
}

#[test]
fn maple_tree_deeper_than_the_kernels_maximum_height() {
    // MAPLE_HEIGHT_MAX (31) levels: read.
    let (mut h, p) = guest();
    maple_chain(&mut h, &p, MAX_DEPTH);
    let r = maps("maple: 31 levels (MAPLE_HEIGHT_MAX)", h, Layout::V6_1, p.mm);
    assert_eq!(r.map(|v| v.len()), Ok(1));
    // One more: refused, naming the limit.
    let (mut h, p) = guest();
    maple_chain(&mut h, &p, MAX_DEPTH + 1);
    let r = maps("maple: 32 levels", h, Layout::V6_1, p.mm);
    has(&r, &["deeper than 31 levels"]);
}

#[test]
fn maple_leaf_metadata_as_the_kernel_writes_it() {
    // A leaf of five entries: its metadata (`end` = 4, gap 0) sits in the last slot, where a
    // reader that takes every slot would see a "VMA" at address 4.
    let (mut h, p) = guest();
    let extra: Vec<u64> = (0..3)
        .map(|i| h.vma(3 + i, 0x10_0000 + i * 0x1000, 0x10_1000 + i * 0x1000, 1, 0))
        .collect();
    h.maple_slots(
        p.leaves[0],
        MAPLE_LEAF_64,
        &[extra[0], extra[1], extra[2], p.vmas[0], p.vmas[1]],
        &[0x10_0fff, 0x10_1fff, 0x10_2fff, 0x40_0fff],
    );
    h.set64_va(p.leaves[0] + MR_SLOT + 8 * 15, 4);
    let r = maps(
        "maple: leaf metadata end 4 (kernel layout)",
        h,
        Layout::V6_1,
        p.mm,
    );
    let starts: Vec<u64> = r.expect("read").iter().map(|v| v.start).collect();
    assert_eq!(
        starts,
        [
            0x10_0000,
            0x10_1000,
            0x10_2000,
            0x40_0000,
            0x60_0000,
            0x7ffd_0000
        ]
    );
}

#[test]
fn maple_node_claiming_huge_entry_counts_with_pivots_out_of_order() {
    // The root arange claims 255 entries (`meta.end`); a leaf claims 255 in its last slot
    // (and its last pivot, 0, says to believe it); pivots run backwards. Entries are read
    // up to the node's slot count, no further.
    let (mut h, p) = guest();
    let vmas: Vec<u64> = (0..14)
        .map(|i| {
            h.vma(
                3 + i,
                0x100_0000 - i * 0x1000,
                0x100_1000 - i * 0x1000,
                3,
                0,
            )
        })
        .collect();
    let backwards: Vec<u64> = (0..14).map(|i| 0xffff_0000 - i * 0x1000).collect();
    h.maple_slots(p.leaves[1], MAPLE_LEAF_64, &vmas, &backwards);
    h.set64_va(p.leaves[1] + MR_SLOT + 8 * 15, 0xff);
    h.set64_va(p.maple_root + MA_GAP + 8 * 10, 0xff);
    let r = maps(
        "maple: meta.end 255, pivots backwards",
        h,
        Layout::V6_1,
        p.mm,
    );
    let v = r.expect("read");
    assert_eq!(v.len(), 2 + 14, "{v:?}");
    assert!(v.windows(2).all(|w| w[0].start <= w[1].start), "sorted");

    // A slot holding a node of a type that is not a range node (dense, 0; unknown, 7).
    for ty in [0u64, 7] {
        let (mut h, p) = guest();
        let n = h.node();
        h.maple_slots(
            p.maple_root,
            MAPLE_ARANGE_64,
            &[maple_node(p.leaves[0], MAPLE_LEAF_64), maple_node(n, ty)],
            &[0x61_ffff, u64::MAX],
        );
        let r = maps(&format!("maple: node of type {ty}"), h, Layout::V6_1, p.mm);
        has(&r, &[&format!("has type {ty}")]);
    }
}

#[test]
fn maple_tree_with_more_areas_than_max_vmas() {
    // 4097 full leaves of 16 entries (65,552 areas, all the same VMA) under range nodes.
    let (mut h, p) = guest();
    let leaves = MAX_VMAS / 16 + 1;
    let mut alloc = D_USER;
    let mut level = Vec::with_capacity(leaves);
    let pivots: Vec<u64> = (1..16).map(|i| 0x7000_0000 + i).collect();
    for _ in 0..leaves {
        let n = kva(alloc);
        alloc += 0x100;
        h.maple_slots(n, MAPLE_LEAF_64, &[p.vmas[1]; 16], &pivots);
        level.push(maple_node(n, MAPLE_LEAF_64));
    }
    let root = h.maple_over(level, &mut alloc);
    h.set64_va(p.mm + MM_MT + MT_ROOT, root);
    let r = maps(
        "maple: 4097 full leaves (65,552 areas)",
        h,
        Layout::V6_1,
        p.mm,
    );
    has(&r, &["more than MAX_VMAS (65536) areas"]);
}

#[test]
fn maple_tree_with_more_nodes_than_max_nodes() {
    // 65,537 empty leaves (16 MiB of nodes) under 4,375 range nodes.
    let mut h = Hostile::with_memory(3, 24);
    let p = h.healthy(0);
    let mut alloc = D_BIG;
    let level: Vec<u64> = (0..=MAX_NODES)
        .map(|_| {
            alloc += 0x100;
            maple_node(kva(alloc - 0x100), MAPLE_LEAF_64)
        })
        .collect();
    let root = h.maple_over(level, &mut alloc);
    h.set64_va(p.mm + MM_MT + MT_ROOT, root);
    let r = maps("maple: 65,537 empty leaves", h, Layout::V6_1, p.mm);
    has(&r, &["more than MAX_NODES (65536) nodes"]);
}

#[test]
fn vma_list_cycles_and_overlong_lists() {
    // Before 6.1: vma2 -> vma0 (the list loops back to its first area).
    let (mut h, p) = guest();
    h.set64_va(p.vmas[2] + VMA_NEXT, p.vmas[0]);
    let r = maps(
        "vma list: loops back to its first area",
        h,
        Layout::V5_15,
        p.mm,
    );
    has(&r, &["seen twice", &format!("{:#x}", p.vmas[0])]);

    // 65,537 areas, 8 bytes apart (each `vm_next` is another area's), no cycle.
    let (mut h, p) = guest();
    let base = D_USER + 0x100;
    let n = MAX_VMAS as u64 + 8;
    for j in 2..n + 2 {
        // The word at base + 8 * j is `vm_next` (at 0x10) of the area at base + 8 * (j - 2):
        // it points at the next area, base + 8 * (j - 1).
        h.set64(base + 8 * j, kva(base + 8 * (j - 1)));
    }
    h.set64_va(p.mm + MM_MMAP, kva(base));
    let r = maps("vma list: 65,544 areas", h, Layout::V5_15, p.mm);
    has(&r, &["more than MAX_VMAS (65536) areas"]);
}

// ---------------------------------------------------------------------------------------------
// 2. Dentry paths.

#[test]
fn dentry_parents_cycling_without_a_root() {
    // sh -> bin -> usr -> bin -> usr ...: the root is never reached.
    let (mut h, p) = guest();
    h.set64_va(p.usr_dentry + D_PARENT, p.bin_dentry);
    let r = exe("path: d_parent cycle bin -> usr -> bin", h, p.task);
    has(
        &r,
        &[&format!("deeper than {MAX_PATH_COMPONENTS} components")],
    );
}

#[test]
fn mount_parents_cycling() {
    // The file sits at the root of mount 1, mounted on /mnt of mount 2, itself mounted at the
    // root of mount 1: the walk goes from mount to mount without a component.
    let (mut h, p) = guest();
    let r1 = h.dentry("/", None);
    let r2 = h.dentry("/", None);
    let m1 = kva(D_MOUNTS + 0x100);
    let m2 = kva(D_MOUNTS + 0x200);
    let v1 = h.mount(1, r1, Some((m2, r2)));
    h.mount(2, r2, Some((m1, r1)));
    h.file(0, v1, r1);
    let r = exe("path: mnt_parent cycle", h, p.task);
    has(&r, &["mount cycle"]);
}

#[test]
fn name_of_u32_max_bytes() {
    let (mut h, p) = guest();
    let long = h.bytes(&[b'x'; 300]);
    h.set32_va(p.sh_dentry + D_NAME + QSTR_LEN, u32::MAX);
    h.set64_va(p.sh_dentry + D_NAME + QSTR_NAME, long);
    let r = exe("path: qstr.len = u32::MAX", h, p.task);
    assert_eq!(r, Ok(Some(format!("/usr/bin/{}", "x".repeat(255)))));
}

/// The executable at the end of a chain of `n` directories under `/`.
fn deep_path(h: &mut Hostile, p: &Parts, n: usize) -> u64 {
    let mut d = p.root_dentry;
    for i in 0..n {
        d = h.dentry(&format!("d{i}"), Some(d));
    }
    h.set64_va(p.exe_file + F_PATH + PATH_DENTRY, d);
    d
}

#[test]
fn path_with_more_components_than_the_cap() {
    let (mut h, p) = guest();
    deep_path(&mut h, &p, MAX_PATH_COMPONENTS);
    let r = exe("path: 256 components (the cap)", h, p.task);
    let path = r.expect("read").expect("a path");
    assert_eq!(path.matches('/').count(), MAX_PATH_COMPONENTS);
    let (mut h, p) = guest();
    deep_path(&mut h, &p, 300);
    let r = exe("path: 300 components", h, p.task);
    has(
        &r,
        &[&format!("deeper than {MAX_PATH_COMPONENTS} components")],
    );
}

// ---------------------------------------------------------------------------------------------
// 3. Open files.

#[test]
fn fd_table_of_u32_max_descriptors() {
    // max_fds = u32::MAX and the array in unmapped memory.
    let (mut h, p) = guest();
    h.set32(D_FDT + FDT_MAX, u32::MAX);
    h.set64(D_FDT + FDT_FD, UNMAPPED);
    let r = files("files: max_fds u32::MAX, fd array unmapped", h, p.task);
    has(&r, &["not mapped"]);

    // max_fds = u32::MAX, the same struct file on every descriptor: capped at MAX_FDS.
    let (mut h, p) = guest();
    h.set32(D_FDT + FDT_MAX, u32::MAX);
    h.set64(D_FDT + FDT_FD, kva(D_USER));
    for fd in 0..MAX_FDS + 16 {
        h.set64(D_USER + fd * 8, p.exe_file);
    }
    let r = files("files: one file on 2^16 fds (max_fds u32::MAX)", h, p.task);
    let v = r.expect("read");
    assert_eq!(v.len() as u64, MAX_FDS);
    assert!(v.iter().all(|f| f.path.as_deref() == Ok("/usr/bin/sh")));
    assert_eq!(v.last().map(|f| f.fd), Some(MAX_FDS - 1));
}

#[test]
fn the_same_deep_file_on_every_descriptor() {
    // The worst product of the caps: 2^16 descriptors, each the same file 256 components
    // deep.
    let (mut h, p) = guest();
    deep_path(&mut h, &p, MAX_PATH_COMPONENTS);
    h.set32(D_FDT + FDT_MAX, u32::MAX);
    h.set64(D_FDT + FDT_FD, kva(D_USER));
    for fd in 0..MAX_FDS {
        h.set64(D_USER + fd * 8, p.exe_file);
    }
    let r = files("files: 2^16 fds of a 256-deep file", h, p.task);
    let v = r.expect("read");
    assert_eq!(v.len() as u64, MAX_FDS);
    // The first paths are read whole; the call's path budget ends the rest, each with an
    // error that names it.
    let first = v[0].path.as_ref().expect("the first path reads");
    assert_eq!(first.matches('/').count(), MAX_PATH_COMPONENTS);
    let last = v[v.len() - 1].path.as_ref().expect_err("past the budget");
    assert!(last.to_string().contains("MAX_PATH_STEPS"), "{last}");
    let read = v.iter().filter(|f| f.path.is_ok()).count() as u64;
    assert!(
        read * (MAX_PATH_COMPONENTS as u64) <= MAX_PATH_STEPS,
        "{read} paths read"
    );
}

// ---------------------------------------------------------------------------------------------
// 4. Threads.

#[test]
fn thread_lists_cycling_not_through_their_head() {
    // thread_group: leader -> task1 -> task2 -> task1 ...
    let mut h = Hostile::new(4);
    let p = h.healthy(0);
    let t2 = kva(TASKS + 2 * 0x100);
    h.set64_va(p.thread + T_THREAD_GROUP, t2 + T_THREAD_GROUP);
    h.set64_va(t2 + T_THREAD_GROUP, p.thread + T_THREAD_GROUP);
    let d = detail(
        "threads: thread_group loop past the leader",
        h,
        Layout::V6_1,
        p.task,
    );
    has(
        &d.threads,
        &["thread list", "loops without returning to its head"],
    );
    assert!(
        d.cmdline.is_ok() && d.maps.is_ok() && d.files.is_ok(),
        "{d:?}"
    );

    // 6.7+: signal->thread_head -> leader -> task1 -> leader ...
    let (mut h, p) = guest();
    h.set64_va(p.thread + T_THREAD_NODE, p.task + T_THREAD_NODE);
    let d = detail(
        "threads: signal->thread_head loop (6.7+)",
        h,
        Layout::V6_7,
        p.task,
    );
    has(
        &d.threads,
        &["thread list", "loops without returning to its head"],
    );
}

#[test]
fn thread_list_longer_than_max_threads() {
    // 65,600 list nodes 8 bytes apart (the "tasks" around them overlap; every word is a
    // pointer into the list, so each task's fields read): capped at MAX_THREADS.
    let (mut h, p) = guest();
    let base = D_USER + 0x100;
    for i in 0..0x20 {
        h.set64(D_USER + 8 * i, kva(base));
    }
    let n = MAX_THREADS as u64 + 64;
    for i in 0..n {
        h.set64(base + 8 * i, kva(base + 8 * (i + 1)));
    }
    h.set64(base + 8 * n, kva(base));
    h.set64_va(p.task + T_THREAD_GROUP, kva(base));
    let d = detail(
        "threads: 65,600 thread_group entries",
        h,
        Layout::V6_1,
        p.task,
    );
    has(&d.threads, &[&format!("more than {MAX_THREADS} entries")]);
}

// ---------------------------------------------------------------------------------------------
// 5. Arguments and environment.

#[test]
fn argument_areas_of_2_pow_63_bytes_and_backwards() {
    let (mut h, p) = guest();
    h.write(D_USER, &vec![b'A'; MAX_ARGS_BYTES as usize + 4096]);
    h.set64_va(p.mm + MM_ARG_START, uva(D_USER));
    h.set64_va(p.mm + MM_ARG_END, uva(D_USER) + (1 << 63));
    let env = D_USER + 0x4_0000;
    h.write(env, &b"X=1\0".repeat(40_000));
    h.set64_va(p.mm + MM_ENV_START, uva(env));
    h.set64_va(p.mm + MM_ENV_END, u64::MAX);
    let d = detail(
        "argv: 2^63 bytes, environ to 2^64-1",
        h,
        Layout::V6_1,
        p.task,
    );
    let args = d.cmdline.expect("capped");
    assert_eq!(args.len(), 1);
    assert_eq!(args[0].len() as u64, MAX_ARGS_BYTES);
    let env = d.environ.expect("capped");
    assert_eq!(env.len() as u64, MAX_ARGS_BYTES / 4);

    let (mut h, p) = guest();
    h.set64_va(p.mm + MM_ARG_END, uva(D_USER) - 1);
    h.set64_va(p.mm + MM_ENV_START, u64::MAX);
    let d = detail("argv/environ: end below start", h, Layout::V6_1, p.task);
    has(&d.cmdline, &["area end", "below its start"]);
    has(&d.environ, &["below its start"]);
    assert_eq!(d.exe, Ok(Some("/usr/bin/sh".into())));
}

// ---------------------------------------------------------------------------------------------
// 6. The system call table.

#[test]
fn syscall_metadata_with_lying_argument_counts() {
    let (mut h, _) = guest();
    h.syscalls_metadata();
    let six: Vec<(&str, &str)> = (0..6).map(|_| ("long", "x")).collect();
    h.syscall(1, b"sys_many\0", i32::MAX, &six);
    h.syscall(2, b"sys_negative\0", -1, &six);
    h.syscall(3, b"sys_min\0", i32::MIN, &six);
    let t = syscalls("syscalls: nb_args i32::MAX, -1, i32::MIN", h, table_end(16)).expect("read");
    assert_eq!(t.get(1).map(|s| s.args.len()), Some(6));
    assert_eq!(t.get(2).map(|s| s.args.len()), Some(0));
    assert_eq!(t.get(3).map(|s| s.args.len()), Some(0));
}

#[test]
fn syscall_metadata_arrays_pointing_at_themselves_and_names_without_nul() {
    let (mut h, _) = guest();
    h.syscalls_metadata();
    let m = h.syscall(1, b"sys_self\0", 6, &[]);
    // An array whose every entry is its own address (no zero byte in it): each "string" is
    // the array's bytes, cut at 64.
    let arr = kva(D_USER + 0xf_1108);
    for i in 0..16 {
        h.set64_va(arr + 8 * i, arr);
    }
    h.set64_va(m + SM_TYPES, arr);
    h.set64_va(m + SM_ARGS, arr);
    // Names without a NUL.
    h.syscall(2, &[b'A'; 300], 1, &[("int", "x")]);
    let m3 = h.syscall(3, b"sys_arg\0", 1, &[("int", "x")]);
    let unterminated = h.bytes(&[b'B'; 300]);
    let names = h.bytes(&unterminated.to_le_bytes());
    h.set64_va(m3 + SM_ARGS, names);
    let t = syscalls("syscalls: self-pointing arrays, no NULs", h, table_end(16)).expect("read");
    let s = t.get(1).expect("described");
    assert_eq!(s.args.len(), 6);
    assert!(s
        .args
        .iter()
        .all(|a| a.type_name.chars().count() == 64 && a.name.chars().count() == 64));
    assert_eq!(t.get(2).map(|s| s.name.clone()), Some("A".repeat(64)));
    assert_eq!(
        t.get(3).map(|s| s.args[0].name.clone()),
        Some("B".repeat(64))
    );
}

#[test]
fn sys_call_table_whose_next_symbol_is_absurdly_far() {
    let (mut h, _) = guest();
    h.syscalls_metadata();
    h.syscall(0, b"sys_read\0", 0, &[]);
    let t = syscalls(
        "syscalls: next symbol 1 GiB away",
        h,
        kva(SYS_CALL_TABLE) + (1 << 30),
    )
    .expect("read");
    assert_eq!(t.len(), MAX_SYSCALLS);
    assert_eq!(t.iter().count(), 1);
}

#[test]
fn syscall_metadata_array_unmapped() {
    let (mut h, _) = guest();
    h.set64(SYSCALLS_METADATA, UNMAPPED);
    let r = syscalls("syscalls: metadata array unmapped", h, table_end(16));
    has(&r, &["not mapped"]);
}

// ---------------------------------------------------------------------------------------------
// 7. The task on a vCPU.

#[test]
fn running_task_with_bad_per_cpu_state() {
    type Outcome = (Result<u64, String>, Result<u64, String>);
    fn current(name: &str, h: Hostile, set: fn(&mut xenvmi::Registers)) -> Outcome {
        run(name, move || {
            let b = boot(h, Layout::V6_1);
            let mut r = b.regs[0];
            set(&mut r);
            let task = b.linux.current_task(&b.mem, &r);
            let thread = b.linux.current_thread(&b.mem, &r);
            (
                task.map(|t| t.pid).map_err(|e| e.to_string()),
                thread.map(|t| t.tid).map_err(|e| e.to_string()),
            )
        })
    }
    let (h, _) = guest();
    let (a, b) = current("current: GS base 0", h, |r| r.gs_base = 0);
    has(&a, &["GS base", "zero"]);
    has(&b, &["GS base", "zero"]);
    let (h, _) = guest();
    let (a, b) = current("current: user mode, KERNEL_GS_BASE 0", h, |r| {
        r.cs_sel = 0x33;
        r.kernel_gs_base = 0;
    });
    has(&a, &["zero"]);
    has(&b, &["zero"]);
    let (mut h, _) = guest();
    h.set64(PERCPU + CURRENT_TASK_OFF, UNMAPPED);
    let (a, b) = current("current: per-CPU pointer unmapped", h, |_| {});
    has(&a, &["not mapped"]);
    has(&b, &["not mapped"]);
    let (h, _) = guest();
    let (a, b) = current("current: GS base unmapped", h, |r| r.gs_base = UNMAPPED);
    has(&a, &["not mapped"]);
    has(&b, &["not mapped"]);
    let (h, _) = guest();
    let (a, b) = current("current: GS base 2^64 - 8", h, |r| r.gs_base = u64::MAX - 7);
    has(&a, &["overflow"]);
    has(&b, &["overflow"]);
}
