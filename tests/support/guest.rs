//! A seeded guest-image builder for adversarial tests: a tiny but coherent x86-64 Linux-like
//! kernel (page tables, banner, task list, module list) with a matching profile, which tests
//! then corrupt in targeted ways.
#![allow(dead_code)]

use xenvmi::backend::snapshot::{Format, Snapshot};
use xenvmi::os::linux::Profile;
use xenvmi::os::profile::{Field, SymbolTableBuilder, TypeSource};
use xenvmi::Registers;

pub const MEM: usize = 8 << 20;
pub const TEXT_VA: u64 = 0xffff_ffff_8100_0000;
pub const TEXT_PA: u64 = 0x40_0000;
/// Offsets inside the kernel image.
pub const BANNER: u64 = 0x100;
pub const PML4: u64 = 0x1_0000;
pub const PDPT: u64 = 0x1_1000;
pub const PD: u64 = 0x1_2000;
pub const INIT_TASK: u64 = 0x2_0000;
pub const TASKS: u64 = 0x2_1000;
pub const MMS: u64 = 0x3_0000;
pub const MODULES: u64 = 0x4_0000;
pub const MODS: u64 = 0x4_1000;
pub const PAGE_OFFSET_BASE: u64 = 0x5_0000;

/// Field offsets of the synthetic profile.
pub const T_FLAGS: u64 = 0x08;
pub const T_TASKS: u64 = 0x10;
pub const T_PID: u64 = 0x20;
pub const T_TGID: u64 = 0x24;
pub const T_COMM: u64 = 0x30;
pub const T_PARENT: u64 = 0x40;
pub const T_MM: u64 = 0x48;
pub const MM_PGD: u64 = 0x08;
pub const M_LIST: u64 = 0x08;
pub const M_NAME: u64 = 0x18;
pub const M_CORE: u64 = 0x50;
pub const M_INIT: u64 = 0x60;
pub const M_KALLSYMS: u64 = 0x70;

/// More of the image: socket structures, module symbol tables, the printk ring. Each
/// synthetic structure is at most 0x100 bytes (the profile's size of every struct).
pub const SOCKET_FILE_OPS: u64 = 0x6_0000;
pub const PRB: u64 = 0x8_0000;
/// `task_struct.files`; `files_struct.fdt`; `fdtable.max_fds`, `fdtable.fd`.
pub const T_FILES: u64 = 0x50;
pub const FILES_FDT: u64 = 0x08;
pub const FDT_MAX: u64 = 0x00;
pub const FDT_FD: u64 = 0x08;
/// `file.f_op`, `file.private_data`, `file.f_inode`; `inode.i_mode`, `inode.i_ino`.
pub const F_OP: u64 = 0x10;
pub const F_PRIVATE: u64 = 0x18;
pub const F_INODE: u64 = 0x20;
pub const I_MODE: u64 = 0x00;
pub const I_INO: u64 = 0x08;
/// `socket.file`, `socket.sk`.
pub const SOCK_FILE: u64 = 0x10;
pub const SOCK_SK: u64 = 0x18;
/// `struct sock` (its `__sk_common` at 0) and `struct unix_sock` (its `sk` at 0).
pub const SKC_DADDR: u64 = 0x00;
pub const SKC_RCV_SADDR: u64 = 0x04;
pub const SKC_DPORT: u64 = 0x0c;
pub const SKC_NUM: u64 = 0x0e;
pub const SKC_FAMILY: u64 = 0x10;
pub const SKC_STATE: u64 = 0x12;
pub const SKC_V6_DADDR: u64 = 0x38;
pub const SKC_V6_RCV_SADDR: u64 = 0x48;
pub const SK_TYPE: u64 = 0x80;
pub const SK_PROTOCOL: u64 = 0x82;
pub const UNIX_ADDR: u64 = 0xa0;
pub const UNIX_PEER: u64 = 0xa8;
/// `unix_address.len`, `unix_address.name`; `sockaddr_un.sun_path`.
pub const UADDR_LEN: u64 = 0x04;
pub const UADDR_NAME: u64 = 0x08;
pub const SUN_PATH: u64 = 0x02;
/// `mod_kallsyms.symtab`, `.num_symtab`, `.strtab`.
pub const KS_SYMTAB: u64 = 0x00;
pub const KS_NUM: u64 = 0x08;
pub const KS_STRTAB: u64 = 0x10;
/// `printk_ringbuffer.desc_ring` (0) and `.text_data_ring`; `prb_desc_ring`'s and
/// `prb_data_ring`'s fields; `prb_desc` and `printk_info` (each 0x100 bytes apart in their
/// arrays, the profile's struct size).
pub const RB_DATA_RING: u64 = 0x30;
pub const DR_COUNT_BITS: u64 = 0x00;
pub const DR_DESCS: u64 = 0x08;
pub const DR_INFOS: u64 = 0x10;
pub const DR_HEAD: u64 = 0x18;
pub const DR_TAIL: u64 = 0x20;
pub const TR_SIZE_BITS: u64 = 0x00;
pub const TR_DATA: u64 = 0x08;
pub const DESC_SV: u64 = 0x00;
pub const DESC_LPOS: u64 = 0x08;
pub const INFO_SEQ: u64 = 0x00;
pub const INFO_TS: u64 = 0x08;
pub const INFO_LEN: u64 = 0x10;
pub const INFO_FACILITY: u64 = 0x12;
pub const INFO_LEVEL: u64 = 0x13;
pub const INFO_CALLER: u64 = 0x14;

/// Field offsets of the forensic process-detail structures (`process_detail`, `memory_map`,
/// `open_files`, paths, the system call table). The synthetic profile lays them out like a 6.1
/// kernel (a maple tree and `thread_group`); `tests/support/hostile.rs` hides fields to give
/// the older list layout and the 6.7+ thread list. Structures are at most 0x100 bytes.
pub const T_STATE: u64 = 0x58;
pub const T_EXIT_STATE: u64 = 0x5c;
pub const T_CRED: u64 = 0x60;
pub const T_THREAD_GROUP: u64 = 0x68;
pub const T_SIGNAL: u64 = 0x78;
pub const T_THREAD_NODE: u64 = 0x80;
/// `mm_struct.mm_mt` (6.1+) and `mm_struct.mmap` (before) share an offset: a profile has one.
pub const MM_MT: u64 = 0x10;
pub const MM_MMAP: u64 = 0x10;
pub const MM_START_BRK: u64 = 0x20;
pub const MM_BRK: u64 = 0x28;
pub const MM_START_STACK: u64 = 0x30;
pub const MM_ARG_START: u64 = 0x38;
pub const MM_ARG_END: u64 = 0x40;
pub const MM_ENV_START: u64 = 0x48;
pub const MM_ENV_END: u64 = 0x50;
pub const MM_EXE_FILE: u64 = 0x58;
pub const MT_ROOT: u64 = 0x08;
/// `maple_range_64`: 15 pivots, 16 slots (to the end of the 256-byte node).
pub const MR_PIVOT: u64 = 0x08;
pub const MR_SLOT: u64 = 0x80;
/// `maple_arange_64`: 9 pivots, 10 slots, then `gap[]`.
pub const MA_PIVOT: u64 = 0x08;
pub const MA_SLOT: u64 = 0x50;
pub const MA_GAP: u64 = 0xa0;
pub const VMA_START: u64 = 0x00;
pub const VMA_END: u64 = 0x08;
pub const VMA_NEXT: u64 = 0x10;
pub const VMA_FLAGS: u64 = 0x20;
pub const VMA_PGOFF: u64 = 0x28;
pub const VMA_FILE: u64 = 0x30;
pub const F_PATH: u64 = 0x30;
pub const PATH_MNT: u64 = 0x00;
pub const PATH_DENTRY: u64 = 0x08;
pub const D_PARENT: u64 = 0x18;
pub const D_NAME: u64 = 0x20;
pub const D_INODE: u64 = 0x30;
pub const D_SB: u64 = 0x68;
pub const QSTR_LEN: u64 = 0x04;
pub const QSTR_NAME: u64 = 0x08;
pub const SB_MAGIC: u64 = 0x60;
pub const VFSMNT_ROOT: u64 = 0x00;
pub const MNT_PARENT: u64 = 0x10;
pub const MNT_MOUNTPOINT: u64 = 0x18;
pub const MNT_MNT: u64 = 0x20;
pub const CRED_UID: u64 = 0x04;
pub const CRED_GID: u64 = 0x08;
pub const CRED_EUID: u64 = 0x14;
pub const CRED_EGID: u64 = 0x18;
pub const SIG_THREAD_HEAD: u64 = 0x10;
pub const SM_NAME: u64 = 0x00;
pub const SM_NR: u64 = 0x08;
pub const SM_NB_ARGS: u64 = 0x0c;
pub const SM_TYPES: u64 = 0x10;
pub const SM_ARGS: u64 = 0x18;

pub struct Guest {
    pub mem: Vec<u8>,
}

/// `va` of an offset inside the kernel image.
pub fn kva(off: u64) -> u64 {
    TEXT_VA + off
}

impl Guest {
    /// A healthy guest with `ntasks` user tasks and `nmods` modules.
    pub fn new(ntasks: usize, nmods: usize) -> Guest {
        let mut g = Guest {
            mem: vec![0u8; MEM],
        };
        // Page tables inside the image: PML4[511] -> PDPT[510] -> PD[8..16] (2 MiB pages).
        g.set_u64(TEXT_PA + PML4 + 511 * 8, (TEXT_PA + PDPT) | 3);
        g.set_u64(TEXT_PA + PDPT + 510 * 8, (TEXT_PA + PD) | 3);
        // _text = 0xffffffff81000000: PD index 8; map 2 MiB there (the image), NX-free.
        g.set_u64(TEXT_PA + PD + 8 * 8, TEXT_PA | 0x83);
        g.write(
            TEXT_PA + BANNER,
            b"Linux version 6.99.0-adversarial (test) #1 SMP\n\0",
        );
        g.set_u64(TEXT_PA + PAGE_OFFSET_BASE, 0xffff_8880_0000_0000);
        // init_task (pid 0) heads the list.
        let mut prev = kva(INIT_TASK);
        g.init_task();
        for i in 0..ntasks {
            let t = kva(TASKS + i as u64 * 0x100);
            g.task(
                t,
                100 + i as u32,
                &format!("task{i}"),
                kva(INIT_TASK),
                Some(kva(MMS + i as u64 * 0x40)),
            );
            g.link(prev + T_TASKS, t + T_TASKS);
            prev = t;
        }
        g.link(prev + T_TASKS, kva(INIT_TASK + T_TASKS));
        let mut prev = kva(MODULES) - M_LIST; // the head is a bare list_head
        for i in 0..nmods {
            let m = kva(MODS + i as u64 * 0x100);
            g.write_va(m + M_NAME, format!("mod{i}\0").as_bytes());
            g.set_va_u64(m + M_CORE, 0xffff_ffff_c000_0000 + i as u64 * 0x4000);
            g.set_va_u32(m + M_CORE + 8, 0x4000);
            g.link(prev + M_LIST, m + M_LIST);
            prev = m;
        }
        g.link(prev + M_LIST, kva(MODULES));
        g
    }

    fn init_task(&mut self) {
        let t = kva(INIT_TASK);
        self.task(t, 0, "swapper/0", t, None);
    }

    /// Write a task_struct at `t`.
    pub fn task(&mut self, t: u64, pid: u32, comm: &str, parent: u64, mm: Option<u64>) {
        self.set_va_u32(t + T_PID, pid);
        self.set_va_u32(t + T_TGID, pid);
        let mut c = [0u8; 16];
        c[..comm.len().min(15)].copy_from_slice(&comm.as_bytes()[..comm.len().min(15)]);
        self.write_va(t + T_COMM, &c);
        self.set_va_u64(t + T_PARENT, parent);
        self.set_va_u32(t + T_FLAGS, if mm.is_none() { 0x0020_0000 } else { 0 });
        if let Some(mm) = mm {
            self.set_va_u64(t + T_MM, mm);
            // Each process "owns" the kernel PML4 (enough for a pgd translation).
            self.set_va_u64(mm + MM_PGD, kva(PML4));
        }
    }

    /// `*at = to` (a list_head.next).
    pub fn link(&mut self, at: u64, to: u64) {
        self.set_va_u64(at, to);
    }

    fn pa(va: u64) -> u64 {
        assert!(
            (TEXT_VA..TEXT_VA + (2 << 20)).contains(&va),
            "{va:#x} outside the image"
        );
        va - TEXT_VA + TEXT_PA
    }

    pub fn write(&mut self, pa: u64, b: &[u8]) {
        self.mem[pa as usize..pa as usize + b.len()].copy_from_slice(b);
    }
    pub fn set_u64(&mut self, pa: u64, v: u64) {
        self.write(pa, &v.to_le_bytes());
    }
    pub fn write_va(&mut self, va: u64, b: &[u8]) {
        self.write(Self::pa(va), b);
    }
    pub fn set_va_u64(&mut self, va: u64, v: u64) {
        self.set_u64(Self::pa(va), v);
    }
    pub fn set_va_u32(&mut self, va: u64, v: u32) {
        self.write(Self::pa(va), &v.to_le_bytes());
    }

    pub fn registers(&self) -> Vec<Registers> {
        vec![Registers {
            cr0: 0x8000_0011,
            cr3: TEXT_PA + PML4,
            cr4: 0x20,
            cs_sel: 0x10,
            ..Registers::default()
        }]
    }

    pub fn snapshot(self) -> Snapshot {
        Snapshot::from_bytes(self.mem, Some(Format::Raw)).expect("raw image")
    }
}

/// The synthetic profile's types.
pub struct Types;

impl TypeSource for Types {
    fn source_name(&self) -> &str {
        "adversarial test profile"
    }
    fn struct_size(&self, _: &str) -> Option<u64> {
        Some(0x100)
    }
    fn field(&self, t: &str, f: &str) -> Option<Field> {
        let (offset, size) = match (t, f) {
            ("task_struct", "tasks") => (T_TASKS, 16),
            ("task_struct", "pid") => (T_PID, 4),
            ("task_struct", "tgid") => (T_TGID, 4),
            ("task_struct", "comm") => (T_COMM, 16),
            ("task_struct", "flags") => (T_FLAGS, 4),
            ("task_struct", "real_parent") => (T_PARENT, 8),
            ("task_struct", "mm") => (T_MM, 8),
            ("mm_struct", "pgd") => (MM_PGD, 8),
            ("module", "list") => (M_LIST, 16),
            ("module", "name") => (M_NAME, 56),
            ("module", "core_layout") => (M_CORE, 16),
            ("module", "init_layout") => (M_INIT, 16),
            ("module_layout", "base") => (0, 8),
            ("module_layout", "size") => (8, 4),
            ("module", "kallsyms") => (M_KALLSYMS, 8),
            ("mod_kallsyms", "symtab") => (KS_SYMTAB, 8),
            ("mod_kallsyms", "num_symtab") => (KS_NUM, 4),
            ("mod_kallsyms", "strtab") => (KS_STRTAB, 8),
            ("task_struct", "files") => (T_FILES, 8),
            ("files_struct", "fdt") => (FILES_FDT, 8),
            ("fdtable", "max_fds") => (FDT_MAX, 4),
            ("fdtable", "fd") => (FDT_FD, 8),
            ("file", "f_op") => (F_OP, 8),
            ("file", "private_data") => (F_PRIVATE, 8),
            ("file", "f_inode") => (F_INODE, 8),
            ("inode", "i_mode") => (I_MODE, 2),
            ("inode", "i_ino") => (I_INO, 8),
            ("socket", "file") => (SOCK_FILE, 8),
            ("socket", "sk") => (SOCK_SK, 8),
            ("sock", "__sk_common") => (0, 0x78),
            ("sock_common", "skc_daddr") => (SKC_DADDR, 4),
            ("sock_common", "skc_rcv_saddr") => (SKC_RCV_SADDR, 4),
            ("sock_common", "skc_dport") => (SKC_DPORT, 2),
            ("sock_common", "skc_num") => (SKC_NUM, 2),
            ("sock_common", "skc_family") => (SKC_FAMILY, 2),
            ("sock_common", "skc_state") => (SKC_STATE, 1),
            ("sock_common", "skc_v6_daddr") => (SKC_V6_DADDR, 16),
            ("sock_common", "skc_v6_rcv_saddr") => (SKC_V6_RCV_SADDR, 16),
            ("sock", "sk_type") => (SK_TYPE, 2),
            ("sock", "sk_protocol") => (SK_PROTOCOL, 2),
            ("unix_sock", "sk") => (0, 0xa0),
            ("unix_sock", "addr") => (UNIX_ADDR, 8),
            ("unix_sock", "peer") => (UNIX_PEER, 8),
            ("unix_address", "len") => (UADDR_LEN, 4),
            ("unix_address", "name") => (UADDR_NAME, 110),
            ("sockaddr_un", "sun_path") => (SUN_PATH, 108),
            ("printk_ringbuffer", "desc_ring") => (0, 0x30),
            ("printk_ringbuffer", "text_data_ring") => (RB_DATA_RING, 0x20),
            ("prb_desc_ring", "count_bits") => (DR_COUNT_BITS, 4),
            ("prb_desc_ring", "descs") => (DR_DESCS, 8),
            ("prb_desc_ring", "infos") => (DR_INFOS, 8),
            ("prb_desc_ring", "head_id") => (DR_HEAD, 8),
            ("prb_desc_ring", "tail_id") => (DR_TAIL, 8),
            ("prb_data_ring", "size_bits") => (TR_SIZE_BITS, 4),
            ("prb_data_ring", "data") => (TR_DATA, 8),
            ("prb_desc", "state_var") => (DESC_SV, 8),
            ("prb_desc", "text_blk_lpos") => (DESC_LPOS, 16),
            ("prb_data_blk_lpos", "begin") => (0, 8),
            ("prb_data_blk_lpos", "next") => (8, 8),
            ("printk_info", "seq") => (INFO_SEQ, 8),
            ("printk_info", "ts_nsec") => (INFO_TS, 8),
            ("printk_info", "text_len") => (INFO_LEN, 2),
            ("printk_info", "facility") => (INFO_FACILITY, 1),
            ("printk_info", "level") => (INFO_LEVEL, 1),
            ("printk_info", "caller_id") => (INFO_CALLER, 4),
            // Forensic detail (see the `T_STATE` ... `SM_ARGS` constants).
            ("task_struct", "__state") => (T_STATE, 4),
            ("task_struct", "exit_state") => (T_EXIT_STATE, 4),
            ("task_struct", "cred") => (T_CRED, 8),
            ("task_struct", "thread_group") => (T_THREAD_GROUP, 16),
            ("task_struct", "signal") => (T_SIGNAL, 8),
            ("task_struct", "thread_node") => (T_THREAD_NODE, 16),
            ("mm_struct", "mm_mt") => (MM_MT, 16),
            ("mm_struct", "mmap") => (MM_MMAP, 8),
            ("mm_struct", "start_brk") => (MM_START_BRK, 8),
            ("mm_struct", "brk") => (MM_BRK, 8),
            ("mm_struct", "start_stack") => (MM_START_STACK, 8),
            ("mm_struct", "arg_start") => (MM_ARG_START, 8),
            ("mm_struct", "arg_end") => (MM_ARG_END, 8),
            ("mm_struct", "env_start") => (MM_ENV_START, 8),
            ("mm_struct", "env_end") => (MM_ENV_END, 8),
            ("mm_struct", "exe_file") => (MM_EXE_FILE, 8),
            ("maple_tree", "ma_root") => (MT_ROOT, 8),
            ("maple_range_64", "pivot") => (MR_PIVOT, 120),
            ("maple_range_64", "slot") => (MR_SLOT, 128),
            ("maple_arange_64", "pivot") => (MA_PIVOT, 72),
            ("maple_arange_64", "slot") => (MA_SLOT, 80),
            ("maple_arange_64", "gap") => (MA_GAP, 80),
            ("vm_area_struct", "vm_start") => (VMA_START, 8),
            ("vm_area_struct", "vm_end") => (VMA_END, 8),
            ("vm_area_struct", "vm_next") => (VMA_NEXT, 8),
            ("vm_area_struct", "vm_flags") => (VMA_FLAGS, 8),
            ("vm_area_struct", "vm_pgoff") => (VMA_PGOFF, 8),
            ("vm_area_struct", "vm_file") => (VMA_FILE, 8),
            ("file", "f_path") => (F_PATH, 16),
            ("path", "mnt") => (PATH_MNT, 8),
            ("path", "dentry") => (PATH_DENTRY, 8),
            ("dentry", "d_parent") => (D_PARENT, 8),
            ("dentry", "d_name") => (D_NAME, 16),
            ("dentry", "d_inode") => (D_INODE, 8),
            ("dentry", "d_sb") => (D_SB, 8),
            ("qstr", "len") => (QSTR_LEN, 4),
            ("qstr", "name") => (QSTR_NAME, 8),
            ("super_block", "s_magic") => (SB_MAGIC, 8),
            ("vfsmount", "mnt_root") => (VFSMNT_ROOT, 8),
            ("mount", "mnt_parent") => (MNT_PARENT, 8),
            ("mount", "mnt_mountpoint") => (MNT_MOUNTPOINT, 8),
            ("mount", "mnt") => (MNT_MNT, 32),
            ("cred", "uid") => (CRED_UID, 4),
            ("cred", "gid") => (CRED_GID, 4),
            ("cred", "euid") => (CRED_EUID, 4),
            ("cred", "egid") => (CRED_EGID, 4),
            ("signal_struct", "thread_head") => (SIG_THREAD_HEAD, 16),
            ("syscall_metadata", "name") => (SM_NAME, 8),
            ("syscall_metadata", "syscall_nr") => (SM_NR, 4),
            ("syscall_metadata", "nb_args") => (SM_NB_ARGS, 4),
            ("syscall_metadata", "types") => (SM_TYPES, 8),
            ("syscall_metadata", "args") => (SM_ARGS, 8),
            _ => return None,
        };
        Some(Field {
            offset,
            size: Some(size),
        })
    }
}

/// The synthetic profile (types + symbols).
pub fn profile() -> Profile {
    profile_with(Box::new(Types), &[])
}

/// The synthetic profile with other types and extra symbols (name, address, kind: `b'A'`
/// for an absolute value such as a per-CPU offset).
pub fn profile_with(
    types: Box<dyn TypeSource + Send + Sync>,
    extra: &[(&str, u64, u8)],
) -> Profile {
    let mut b = SymbolTableBuilder::new("adversarial test symbols");
    for &(n, a, k) in extra {
        b.push(n, a, k);
    }
    for (n, off) in [
        ("_text", 0),
        ("linux_banner", BANNER),
        ("init_top_pgt", PML4),
        ("init_task", INIT_TASK),
        ("modules", MODULES),
        ("page_offset_base", PAGE_OFFSET_BASE),
        ("socket_file_ops", SOCKET_FILE_OPS),
        ("prb", PRB),
    ] {
        b.push(n, kva(off), b'D');
    }
    Profile {
        types,
        symbols: b.build(),
    }
}
