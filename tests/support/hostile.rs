//! Hostile guests for the forensic walks (`process_detail`, `memory_map`, `open_files`, file
//! paths, the system call table, the running task): the synthetic guest of `guest.rs` grown
//! with more mapped memory, a user mapping, one fully described process (memory map, files,
//! threads, credentials, arguments, executable) that tests then corrupt, and the profile
//! layouts of the kernel generations those walks tell apart. Also the `run` watchdog.
#![allow(dead_code)]

use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::guest::*;
use xenvmi::backend::snapshot::Snapshot;
use xenvmi::mem::GuestMemory;
use xenvmi::os::linux::{Linux, Profile, ProfileSource};
use xenvmi::os::profile::{Field, TypeSource};
use xenvmi::os::Process;
use xenvmi::{Error, Gva, Registers};

/// Run `f` on a worker thread: it must not panic and must finish within 10 s (a hang
/// detector, not a speed assertion); prints the case's time as `tests/adversarial.rs` does.
pub fn run<T: Send + 'static + std::fmt::Debug>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    let t0 = Instant::now();
    let h = std::thread::spawn(move || {
        let r = f();
        let _ = tx.send(());
        r
    });
    rx.recv_timeout(Duration::from_secs(10))
        .unwrap_or_else(|_| panic!("{name}: did not finish (hang)"));
    let r = h.join().unwrap_or_else(|_| panic!("{name}: panicked"));
    eprintln!(
        "adversarial {name:<44} {:>8.2?}  -> {:.100}",
        t0.elapsed(),
        format!("{r:?}")
    );
    r
}

// Where things are, as offsets in the kernel image (`kva(off)`; physical `TEXT_PA + off`). The
// image's first 2 MiB are `guest.rs`'s; `Hostile` maps the memory after them too, contiguously.
/// User page tables (PML4[0] -> PDPT_U -> PD_U).
pub const PDPT_U: u64 = 0x1_3000;
pub const PD_U: u64 = 0x1_4000;
/// `mm_struct`s, 0x100 apart.
pub const D_MM: u64 = 0x6_0000;
pub const D_CRED: u64 = 0x6_0400;
pub const D_FILES: u64 = 0x6_0500;
pub const D_FDT: u64 = 0x6_0600;
pub const D_SIGNAL: u64 = 0x6_0700;
pub const D_SUPER: u64 = 0x6_0800;
pub const D_INODE_: u64 = 0x6_0900;
/// `struct mount`s, 0x100 apart (the root mount first).
pub const D_MOUNTS: u64 = 0x6_1000;
/// `struct file`s, 0x100 apart.
pub const D_FILES_: u64 = 0x6_2000;
/// `vm_area_struct`s, 0x100 apart.
pub const D_VMAS: u64 = 0x6_4000;
/// The healthy process's fd array (4096 entries at most).
pub const D_FDARRAY: u64 = 0x6_8000;
/// Strings, bump-allocated.
pub const D_STRINGS: u64 = 0x7_0000;
pub const D_STRINGS_END: u64 = 0x7_f000;
/// `syscalls_metadata` (the variable: a pointer to the array).
pub const SYSCALLS_METADATA: u64 = 0x8_7f00;
/// `sys_call_table` (1024 entries at most).
pub const SYS_CALL_TABLE: u64 = 0x8_8000;
/// The metadata pointer array (1024 entries).
pub const META_ARRAY: u64 = 0x8_a000;
/// `struct syscall_metadata`s, 0x100 apart (64 of them).
pub const METAS: u64 = 0x8_c000;
/// The per-CPU area of vCPU 0 (its GS base), and the per-CPU offset of `current_task`.
pub const PERCPU: u64 = 0x9_0000;
pub const CURRENT_TASK_OFF: u64 = 0x100;
/// Maple-tree nodes (256-byte aligned), bump-allocated.
pub const D_NODES: u64 = 0xa_0000;
pub const D_NODES_END: u64 = 0x10_0000;
/// Dentries, 0x100 apart, bump-allocated.
pub const D_DENTRIES: u64 = 0x10_0000;
pub const D_DENTRIES_END: u64 = 0x20_0000;
/// The second 2 MiB: also mapped at user address `USER_VA`.
pub const D_USER: u64 = 0x20_0000;
pub const USER_VA: u64 = 0x40_0000;
/// Memory past the first 4 MiB of the image (only with `Hostile::with_memory`).
pub const D_BIG: u64 = 0x40_0000;

/// Maple node types (`enum maple_type`).
pub const MAPLE_LEAF_64: u64 = 1;
pub const MAPLE_RANGE_64: u64 = 2;
pub const MAPLE_ARANGE_64: u64 = 3;

/// An encoded maple node pointer (`mt_mk_node`).
pub fn maple_node(node_va: u64, ty: u64) -> u64 {
    assert_eq!(node_va & 0xff, 0, "maple nodes are 256-byte aligned");
    node_va | (ty << 3) | 2
}

/// The user address of an offset in the `D_USER` window.
pub fn uva(off: u64) -> u64 {
    assert!((D_USER..D_USER + (2 << 20)).contains(&off));
    USER_VA + off - D_USER
}

/// Which generation of kernel structures the profile describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// 6.1+: `mm->mm_mt` (a maple tree); before, `mm->mmap` with `vm_next`.
    pub maple: bool,
    /// 6.7+: threads on `signal->thread_head` by `thread_node`; before, `thread_group`.
    pub signal_threads: bool,
}

impl Layout {
    /// 6.1 to 6.6: a maple tree, `thread_group`.
    pub const V6_1: Layout = Layout {
        maple: true,
        signal_threads: false,
    };
    /// 6.7 and later.
    pub const V6_7: Layout = Layout {
        maple: true,
        signal_threads: true,
    };
    /// Before 6.1: the VMA list.
    pub const V5_15: Layout = Layout {
        maple: false,
        signal_threads: false,
    };
}

/// `guest.rs`'s `Types` with the fields of other kernel generations hidden.
pub struct LayoutTypes(pub Layout);

impl TypeSource for LayoutTypes {
    fn source_name(&self) -> &str {
        "adversarial test profile (detail)"
    }
    fn struct_size(&self, t: &str) -> Option<u64> {
        Types.struct_size(t)
    }
    fn field(&self, t: &str, f: &str) -> Option<Field> {
        let hidden = match (t, f) {
            ("mm_struct", "mm_mt") => !self.0.maple,
            ("mm_struct", "mmap") | ("vm_area_struct", "vm_next") => self.0.maple,
            ("task_struct", "thread_group") => self.0.signal_threads,
            ("task_struct", "signal")
            | ("task_struct", "thread_node")
            | ("signal_struct", "thread_head") => !self.0.signal_threads,
            _ => false,
        };
        if hidden {
            None
        } else {
            Types.field(t, f)
        }
    }
}

/// The profile for `layout`: `guest.rs`'s symbols plus `sys_call_table` (ending at
/// `table_end`, the next symbol's address), `syscalls_metadata` and the per-CPU
/// `current_task`.
pub fn detail_profile(layout: Layout, table_end: u64) -> Profile {
    profile_with(
        Box::new(LayoutTypes(layout)),
        &[
            ("syscalls_metadata", kva(SYSCALLS_METADATA), b'D'),
            ("sys_call_table", kva(SYS_CALL_TABLE), b'D'),
            ("after_sys_call_table", table_end, b'D'),
            ("current_task", CURRENT_TASK_OFF, b'A'),
        ],
    )
}

/// The synthetic guest with more memory mapped (see the `D_*` offsets) and bump allocators.
pub struct Hostile {
    pub g: Guest,
    strings: u64,
    nodes: u64,
    dentries: u64,
    /// End (image offset) of the mapped memory.
    pub mapped_end: u64,
}

/// The healthy process `Hostile::healthy` describes, for checks.
pub const HEALTHY_ARGS: &[&str] = &["/bin/sh", "-c", "true"];
pub const HEALTHY_ENV: &[&str] = &["HOME=/", "PATH=/bin"];

/// Addresses of the healthy process's parts (for tests to corrupt).
#[derive(Clone, Copy, Debug)]
pub struct Parts {
    pub task: u64,
    pub thread: u64,
    pub mm: u64,
    pub root_mount: u64,
    pub root_dentry: u64,
    /// `/usr/bin/sh` (the executable) and `/dev/null`.
    pub exe_file: u64,
    pub null_file: u64,
    /// The dentries of `sh`, `bin` and `usr`.
    pub sh_dentry: u64,
    pub bin_dentry: u64,
    pub usr_dentry: u64,
    /// The maple tree's root node (arange) and its two leaves; the three VMAs.
    pub maple_root: u64,
    pub leaves: [u64; 2],
    pub vmas: [u64; 3],
}

impl Hostile {
    /// `guest.rs`'s guest with `ntasks` tasks and 8 MiB of memory: the image's 4 MiB mapped
    /// at `TEXT_VA`, the second half also at user address `USER_VA`.
    pub fn new(ntasks: usize) -> Hostile {
        Hostile::with_memory(ntasks, 4)
    }

    /// As `new` with `mib` MiB (a multiple of 2, at least 4) of the image mapped at
    /// `TEXT_VA`.
    pub fn with_memory(ntasks: usize, mib: u64) -> Hostile {
        assert!(mib >= 4 && mib.is_multiple_of(2));
        let mut g = Guest::new(ntasks, 0);
        let end = TEXT_PA + (mib << 20);
        if g.mem.len() < end as usize {
            g.mem.resize(end as usize, 0);
        }
        for k in 1..mib / 2 {
            g.set_u64(TEXT_PA + PD + (8 + k) * 8, (TEXT_PA + (k << 21)) | 0x83);
        }
        // User: PML4[0] -> PDPT_U[0] -> PD_U[2]: 0x400000 -> the D_USER window.
        g.set_u64(TEXT_PA + PML4, (TEXT_PA + PDPT_U) | 7);
        g.set_u64(TEXT_PA + PDPT_U, (TEXT_PA + PD_U) | 7);
        g.set_u64(TEXT_PA + PD_U + 2 * 8, (TEXT_PA + D_USER) | 0x87);
        Hostile {
            g,
            strings: D_STRINGS,
            nodes: D_NODES,
            dentries: D_DENTRIES,
            mapped_end: mib << 20,
        }
    }

    fn pa(&self, off: u64) -> u64 {
        assert!(off < self.mapped_end, "{off:#x} is not in the mapped image");
        TEXT_PA + off
    }
    /// Write at image offset `off`.
    pub fn write(&mut self, off: u64, b: &[u8]) {
        let pa = self.pa(off);
        self.g.write(pa, b);
    }
    pub fn set64(&mut self, off: u64, v: u64) {
        self.write(off, &v.to_le_bytes());
    }
    pub fn set32(&mut self, off: u64, v: u32) {
        self.write(off, &v.to_le_bytes());
    }
    /// Write at kernel address `va` (in the mapped image).
    pub fn set64_va(&mut self, va: u64, v: u64) {
        self.set64(va - TEXT_VA, v);
    }
    pub fn set32_va(&mut self, va: u64, v: u32) {
        self.set32(va - TEXT_VA, v);
    }
    pub fn write_va(&mut self, va: u64, b: &[u8]) {
        self.write(va - TEXT_VA, b);
    }

    /// Bytes in the string area; their kernel address.
    pub fn bytes(&mut self, b: &[u8]) -> u64 {
        let off = self.strings;
        assert!(off + b.len() as u64 <= D_STRINGS_END, "string area full");
        self.write(off, b);
        self.strings = (off + b.len() as u64 + 8) & !7;
        kva(off)
    }
    /// A NUL-terminated string; its kernel address.
    pub fn cstr(&mut self, s: &str) -> u64 {
        let mut b = s.as_bytes().to_vec();
        b.push(0);
        self.bytes(&b)
    }

    /// A zeroed maple node from the node area; its kernel address.
    pub fn node(&mut self) -> u64 {
        let off = self.nodes;
        assert!(off < D_NODES_END, "node area full");
        self.nodes += 0x100;
        kva(off)
    }

    /// A dentry named `name` under `parent` (`None`: its own parent, a filesystem root).
    pub fn dentry(&mut self, name: &str, parent: Option<u64>) -> u64 {
        let off = self.dentries;
        assert!(off < D_DENTRIES_END, "dentry area full");
        self.dentries += 0x100;
        let d = kva(off);
        let n = self.cstr(name);
        self.dentry_at(d, n, name.len() as u32, parent.unwrap_or(d));
        d
    }

    /// Write a dentry at `d`: its name at `name` (`len` bytes), parent, superblock, inode.
    pub fn dentry_at(&mut self, d: u64, name: u64, len: u32, parent: u64) {
        self.set64_va(d + D_PARENT, parent);
        self.set32_va(d + D_NAME + QSTR_LEN, len);
        self.set64_va(d + D_NAME + QSTR_NAME, name);
        self.set64_va(d + D_SB, kva(D_SUPER));
        self.set64_va(d + D_INODE, kva(D_INODE_));
    }

    /// A `struct mount` (number `i`) whose root is `root`, mounted on `mountpoint` in
    /// `parent` (`None`: the root mount, its own parent). Returns its `vfsmount` (`&mount->mnt`).
    pub fn mount(&mut self, i: u64, root: u64, parent: Option<(u64, u64)>) -> u64 {
        let m = kva(D_MOUNTS + i * 0x100);
        self.set64_va(m + MNT_MNT + VFSMNT_ROOT, root);
        let (p, mp) = parent.unwrap_or((m, root));
        self.set64_va(m + MNT_PARENT, p);
        self.set64_va(m + MNT_MOUNTPOINT, mp);
        m + MNT_MNT
    }

    /// A `struct file` (number `i`) at `dentry` on `vfsmount`.
    pub fn file(&mut self, i: u64, vfsmount: u64, dentry: u64) -> u64 {
        let f = kva(D_FILES_ + i * 0x100);
        self.set64_va(f + F_PATH + PATH_MNT, vfsmount);
        self.set64_va(f + F_PATH + PATH_DENTRY, dentry);
        f
    }

    /// A VMA (number `i`).
    pub fn vma(&mut self, i: u64, start: u64, end: u64, flags: u64, file: u64) -> u64 {
        let v = kva(D_VMAS + i * 0x100);
        self.set64_va(v + VMA_START, start);
        self.set64_va(v + VMA_END, end);
        self.set64_va(v + VMA_FLAGS, flags);
        self.set64_va(v + VMA_FILE, file);
        v
    }

    /// Write a maple node's slots and pivots (`pivots[i]` the last address of slot `i`) and,
    /// when the node is not full, its metadata as the kernel does (`ma_set_meta`: the index of
    /// the last slot used, in the last slot of a range node or after `gap[]` in an arange).
    pub fn maple_slots(&mut self, node: u64, ty: u64, slots: &[u64], pivots: &[u64]) {
        let (so, po, n) = if ty == MAPLE_ARANGE_64 {
            (MA_SLOT, MA_PIVOT, 10)
        } else {
            (MR_SLOT, MR_PIVOT, 16)
        };
        assert!(!slots.is_empty() && slots.len() <= n && pivots.len() < n);
        for (i, &s) in slots.iter().enumerate() {
            self.set64_va(node + so + 8 * i as u64, s);
        }
        for (i, &p) in pivots.iter().enumerate() {
            self.set64_va(node + po + 8 * i as u64, p);
        }
        if slots.len() < n {
            let end = slots.len() as u64 - 1;
            if ty == MAPLE_ARANGE_64 {
                self.set64_va(node + MA_GAP + 8 * 10, end);
            } else {
                self.set64_va(node + MR_SLOT + 8 * 15, end);
            }
        }
    }

    /// Range nodes over `level` (encoded entries, 16 to a node) up to one root, with nodes
    /// from `alloc` (image offsets, 256 bytes each); the root's encoded pointer. Each node's
    /// pivots are increasing and never its maximum, so a full node is read to its last slot.
    pub fn maple_over(&mut self, mut level: Vec<u64>, alloc: &mut u64) -> u64 {
        let mut pivot = 0x1000u64;
        while level.len() > 1 {
            let mut up = Vec::with_capacity(level.len() / 16 + 1);
            for chunk in level.chunks(16) {
                let n = kva(*alloc);
                *alloc += 0x100;
                let pivots: Vec<u64> = (0..chunk.len().min(15))
                    .map(|_| {
                        pivot += 0x1000;
                        pivot
                    })
                    .collect();
                self.maple_slots(n, MAPLE_RANGE_64, chunk, &pivots);
                up.push(maple_node(n, MAPLE_RANGE_64));
            }
            level = up;
        }
        level[0]
    }

    /// Describe task `i` of the guest (`TASKS + i * 0x100`, pid `100 + i`) fully: memory
    /// map (a maple tree and the same VMAs as a list), files, two threads (itself and task
    /// `i + 1`, on both thread lists), credentials, arguments, environment, executable, and
    /// make it the task running on vCPU 0. The guest needs `i + 2` tasks.
    pub fn healthy(&mut self, i: u64) -> Parts {
        let task = kva(TASKS + i * 0x100);
        let thread = kva(TASKS + (i + 1) * 0x100);
        let mm = kva(D_MM + i * 0x100);
        self.set64_va(task + T_MM, mm);
        self.set64_va(thread + T_MM, mm);
        self.set64_va(mm + MM_PGD, kva(PML4));
        // Filesystem: / (the root mount) with /usr/bin/sh and /dev/null.
        self.set64(D_SUPER + SB_MAGIC, 0xef53);
        self.set64(D_INODE_ + I_INO, 42);
        let root = self.dentry("/", None);
        let usr = self.dentry("usr", Some(root));
        let bin = self.dentry("bin", Some(usr));
        let sh = self.dentry("sh", Some(bin));
        let dev = self.dentry("dev", Some(root));
        let null = self.dentry("null", Some(dev));
        let rootmnt = self.mount(0, root, None);
        let exe = self.file(0, rootmnt, sh);
        let nullf = self.file(1, rootmnt, null);
        self.set64_va(mm + MM_EXE_FILE, exe);
        // Arguments and environment in user memory.
        let args = b"/bin/sh\0-c\0true\0";
        let env = b"HOME=/\0PATH=/bin\0";
        self.write(D_USER, args);
        self.write(D_USER + 0x1000, env);
        self.set64_va(mm + MM_ARG_START, uva(D_USER));
        self.set64_va(mm + MM_ARG_END, uva(D_USER) + args.len() as u64);
        self.set64_va(mm + MM_ENV_START, uva(D_USER + 0x1000));
        self.set64_va(mm + MM_ENV_END, uva(D_USER + 0x1000) + env.len() as u64);
        // Memory map: text (the executable), heap, stack.
        let v0 = self.vma(0, 0x40_0000, 0x40_1000, 0x5, exe);
        let v1 = self.vma(1, 0x60_0000, 0x62_0000, 0x3, 0);
        let v2 = self.vma(2, 0x7ffd_0000, 0x7ffe_0000, 0x3, 0);
        self.set64_va(mm + MM_START_BRK, 0x60_0000);
        self.set64_va(mm + MM_BRK, 0x61_0000);
        self.set64_va(mm + MM_START_STACK, 0x7ffd_f000);
        let (root_node, l0, l1) = (self.node(), self.node(), self.node());
        self.maple_slots(
            l0,
            MAPLE_LEAF_64,
            &[0, v0, 0, v1],
            &[0x3f_ffff, 0x40_0fff, 0x5f_ffff, 0x61_ffff],
        );
        self.maple_slots(l1, MAPLE_LEAF_64, &[0, v2], &[0x7ffc_ffff, 0x7ffd_ffff]);
        self.maple_slots(
            root_node,
            MAPLE_ARANGE_64,
            &[maple_node(l0, MAPLE_LEAF_64), maple_node(l1, MAPLE_LEAF_64)],
            &[0x61_ffff, u64::MAX],
        );
        self.set64_va(mm + MM_MT + MT_ROOT, maple_node(root_node, MAPLE_ARANGE_64));
        // The same VMAs as a list (`mm->mmap` shares the maple tree's lock word: only one
        // layout's fields are in a profile).
        self.set64_va(mm + MM_MMAP, v0);
        self.set64_va(v0 + VMA_NEXT, v1);
        self.set64_va(v1 + VMA_NEXT, v2);
        // Open files: 0..2 /dev/null, 3 the executable.
        self.set64_va(task + T_FILES, kva(D_FILES));
        self.set64(D_FILES + FILES_FDT, kva(D_FDT));
        self.set32(D_FDT + FDT_MAX, 64);
        self.set64(D_FDT + FDT_FD, kva(D_FDARRAY));
        for (fd, f) in [nullf, nullf, nullf, exe].into_iter().enumerate() {
            self.set64(D_FDARRAY + fd as u64 * 8, f);
        }
        // Credentials.
        self.set64_va(task + T_CRED, kva(D_CRED));
        self.set32(D_CRED + CRED_UID, 1000);
        self.set32(D_CRED + CRED_GID, 1001);
        self.set32(D_CRED + CRED_EUID, 0);
        self.set32(D_CRED + CRED_EGID, 0);
        // Threads: the leader sleeps, the other runs; both lists.
        self.set32_va(task + T_STATE, 1);
        self.link_threads(task, &[thread]);
        // vCPU 0 runs the leader.
        self.set64(PERCPU + CURRENT_TASK_OFF, task);
        Parts {
            task,
            thread,
            mm,
            root_mount: rootmnt - MNT_MNT,
            root_dentry: root,
            exe_file: exe,
            null_file: nullf,
            sh_dentry: sh,
            bin_dentry: bin,
            usr_dentry: usr,
            maple_root: root_node,
            leaves: [l0, l1],
            vmas: [v0, v1, v2],
        }
    }

    /// Put `others` on `leader`'s thread lists: `thread_group` (circular through the leader)
    /// and `signal->thread_head` (the leader first).
    pub fn link_threads(&mut self, leader: u64, others: &[u64]) {
        let ring: Vec<u64> = std::iter::once(leader)
            .chain(others.iter().copied())
            .collect();
        for (k, &t) in ring.iter().enumerate() {
            let next = ring[(k + 1) % ring.len()];
            self.set64_va(t + T_THREAD_GROUP, next + T_THREAD_GROUP);
            self.set64_va(t + T_SIGNAL, kva(D_SIGNAL));
        }
        let head = kva(D_SIGNAL + SIG_THREAD_HEAD);
        let mut prev = head;
        for &t in &ring {
            self.set64_va(prev, t + T_THREAD_NODE);
            prev = t + T_THREAD_NODE;
        }
        self.set64_va(prev, head);
    }

    /// Point `syscalls_metadata` at the metadata array.
    pub fn syscalls_metadata(&mut self) {
        self.set64(SYSCALLS_METADATA, kva(META_ARRAY));
    }

    /// Describe system call `nr` (< 64): its name's bytes as stored (a NUL or not), `nb_args`
    /// as stored, and the (type, name) pairs of its arguments. Returns its metadata's address.
    pub fn syscall(&mut self, nr: u64, name: &[u8], nb_args: i32, args: &[(&str, &str)]) -> u64 {
        assert!(nr < 64);
        let m = kva(METAS + nr * 0x100);
        self.set64(META_ARRAY + nr * 8, m);
        let n = self.bytes(name);
        self.set64_va(m + SM_NAME, n);
        self.set32_va(m + SM_NR, nr as u32);
        self.set32_va(m + SM_NB_ARGS, nb_args as u32);
        let types: Vec<u64> = args.iter().map(|a| self.cstr(a.0)).collect();
        let names: Vec<u64> = args.iter().map(|a| self.cstr(a.1)).collect();
        let bytes = |v: &[u64]| v.iter().flat_map(|p| p.to_le_bytes()).collect::<Vec<u8>>();
        let (t, a) = (self.bytes(&bytes(&types)), self.bytes(&bytes(&names)));
        self.set64_va(m + SM_TYPES, t);
        self.set64_va(m + SM_ARGS, a);
        m
    }

    /// vCPU 0's registers: kernel mode, GS base at the per-CPU area.
    pub fn registers(&self) -> Vec<Registers> {
        let mut r = self.g.registers();
        r[0].gs_base = kva(PERCPU);
        r
    }

    /// The guest as a snapshot, its registers, the Linux found in it with `profile`.
    pub fn boot(self, profile: Profile) -> Result<Booted, Error> {
        let regs = self.registers();
        let mem = GuestMemory::new(self.g.snapshot());
        let linux = Linux::discover(&mem, &regs, ProfileSource::Loaded(profile))?;
        Ok(Booted { mem, regs, linux })
    }
}

/// A discovered hostile guest.
pub struct Booted {
    pub mem: GuestMemory<Snapshot>,
    pub regs: Vec<Registers>,
    pub linux: Linux,
}

impl Booted {
    /// The task at `task` as the process list reads it.
    pub fn process(&self, task: u64) -> Result<Process, Error> {
        self.linux.read_task(&self.mem, Gva(task))
    }
}
