//! Linux discovery and the task/module walks over an arbitrary guest image, with arbitrary
//! vCPU registers and an arbitrary (but well-formed) profile: every iterator is driven to its
//! end, which must come (walks are bounded and detect cycles); each process's detail
//! (arguments, environment, executable path, credentials, threads, memory map with special
//! mapping names, open files with the ` (deleted)` mark, sockets) is read too, and so are
//! kernel addresses as `symbol+offset` (modules' own symbol tables included), each module's state
//! and text (what `module-text` protects), the kernel log and the modules' cross-view (the
//! module list against `module_kset`'s kobjects).
#![no_main]

use libfuzzer_sys::{arbitrary, fuzz_target};
use xenvmi::backend::snapshot::{Format, Snapshot};
use xenvmi::mem::GuestMemory;
use xenvmi::os::linux::{Linux, Profile, ProfileSource};
use xenvmi::os::profile::{Field, SymbolTableBuilder, TypeSource};
use xenvmi::Registers;

#[derive(arbitrary::Arbitrary, Debug)]
struct Input {
    cr3: u32,
    cr4_la57: bool,
    /// Offsets for the fields the walkers use, in a fixed order.
    offsets: [u16; 16],
    /// Offsets for the fields `process_detail`, the symbolizer and the log use, in
    /// `DETAIL_FIELDS` order.
    detail: [u16; 115],
    /// Addresses of the symbols discovery and the walks use.
    symbols: [u32; 17],
    /// Kernel addresses to symbolize, as offsets from `_text` or from a module's base.
    lookups: [u32; 4],
    in_guest: bool,
    image: Vec<u8>,
}

struct Types([u16; 16], [u16; 115]);

const DETAIL_FIELDS: [(&str, &str); 115] = [
    ("mm_struct", "arg_start"),
    ("mm_struct", "arg_end"),
    ("mm_struct", "env_start"),
    ("mm_struct", "env_end"),
    ("mm_struct", "exe_file"),
    ("file", "f_path"),
    ("path", "mnt"),
    ("path", "dentry"),
    ("dentry", "d_parent"),
    ("dentry", "d_name"),
    ("qstr", "len"),
    ("qstr", "name"),
    ("vfsmount", "mnt_root"),
    ("mount", "mnt"),
    ("mount", "mnt_parent"),
    ("mount", "mnt_mountpoint"),
    ("task_struct", "cred"),
    ("cred", "uid"),
    ("cred", "gid"),
    ("cred", "euid"),
    ("cred", "egid"),
    ("task_struct", "__state"),
    ("task_struct", "exit_state"),
    ("task_struct", "thread_group"),
    ("syscall_metadata", "name"),
    ("syscall_metadata", "syscall_nr"),
    ("syscall_metadata", "nb_args"),
    ("syscall_metadata", "types"),
    ("syscall_metadata", "args"),
    ("mm_struct", "mm_mt"),
    ("maple_tree", "ma_root"),
    ("maple_range_64", "slot"),
    ("maple_arange_64", "slot"),
    ("maple_arange_64", "gap"),
    ("vm_area_struct", "vm_start"),
    ("vm_area_struct", "vm_end"),
    ("vm_area_struct", "vm_flags"),
    ("vm_area_struct", "vm_pgoff"),
    ("vm_area_struct", "vm_file"),
    ("mm_struct", "start_brk"),
    ("mm_struct", "brk"),
    ("mm_struct", "start_stack"),
    ("task_struct", "files"),
    ("files_struct", "fdt"),
    ("fdtable", "max_fds"),
    ("fdtable", "fd"),
    ("dentry", "d_sb"),
    ("super_block", "s_magic"),
    ("dentry", "d_inode"),
    ("inode", "i_ino"),
    ("dentry", "d_hash"),
    ("hlist_bl_node", "pprev"),
    ("vm_area_struct", "vm_ops"),
    ("vm_area_struct", "vm_private_data"),
    ("vm_special_mapping", "name"),
    // Sockets.
    ("file", "f_op"),
    ("file", "private_data"),
    ("file", "f_inode"),
    ("inode", "i_mode"),
    ("socket", "file"),
    ("socket", "sk"),
    ("sock", "__sk_common"),
    ("sock_common", "skc_daddr"),
    ("sock_common", "skc_rcv_saddr"),
    ("sock_common", "skc_dport"),
    ("sock_common", "skc_num"),
    ("sock_common", "skc_family"),
    ("sock_common", "skc_state"),
    ("sock_common", "skc_v6_daddr"),
    ("sock_common", "skc_v6_rcv_saddr"),
    ("sock", "sk_type"),
    ("sock", "sk_protocol"),
    ("unix_sock", "sk"),
    ("unix_sock", "addr"),
    ("unix_sock", "peer"),
    ("unix_address", "len"),
    ("unix_address", "name"),
    ("sockaddr_un", "sun_path"),
    // Module symbol tables.
    ("module", "kallsyms"),
    ("mod_kallsyms", "symtab"),
    ("mod_kallsyms", "num_symtab"),
    ("mod_kallsyms", "strtab"),
    // Module state and text (module-text).
    ("module", "state"),
    ("module_layout", "text_size"),
    // The printk ring.
    ("printk_ringbuffer", "desc_ring"),
    ("printk_ringbuffer", "text_data_ring"),
    ("prb_desc_ring", "count_bits"),
    ("prb_desc_ring", "descs"),
    ("prb_desc_ring", "infos"),
    ("prb_desc_ring", "head_id"),
    ("prb_desc_ring", "tail_id"),
    ("prb_data_ring", "size_bits"),
    ("prb_data_ring", "data"),
    ("prb_desc", "state_var"),
    ("prb_desc", "text_blk_lpos"),
    ("prb_data_blk_lpos", "begin"),
    ("prb_data_blk_lpos", "next"),
    ("printk_info", "seq"),
    ("printk_info", "ts_nsec"),
    ("printk_info", "text_len"),
    ("printk_info", "facility"),
    ("printk_info", "level"),
    ("printk_info", "caller_id"),
    // The modules' cross-view (module_kset's kobjects).
    ("kset", "list"),
    ("kobject", "entry"),
    ("module_kobject", "kobj"),
    ("module_kobject", "mod"),
    ("module", "mkobj"),
    ("module", "state"),
    // The vmap areas of the modules region (the cross-view's third view).
    ("vmap_area", "va_start"),
    ("vmap_area", "va_end"),
    ("vmap_area", "list"),
    ("vmap_area", "vm"),
    ("vm_struct", "flags"),
    ("vm_struct", "caller"),
];

const FIELDS: [(&str, &str); 14] = [
    ("task_struct", "tasks"),
    ("task_struct", "pid"),
    ("task_struct", "tgid"),
    ("task_struct", "comm"),
    ("task_struct", "flags"),
    ("task_struct", "real_parent"),
    ("task_struct", "mm"),
    ("mm_struct", "pgd"),
    ("module", "list"),
    ("module", "name"),
    ("module", "core_layout"),
    ("module_layout", "base"),
    ("module_layout", "size"),
    ("module", "init_layout"),
];

impl TypeSource for Types {
    fn source_name(&self) -> &str {
        "fuzz types"
    }
    fn struct_size(&self, _: &str) -> Option<u64> {
        Some(self.0[15] as u64)
    }
    fn field(&self, t: &str, f: &str) -> Option<Field> {
        if let Some(i) = DETAIL_FIELDS.iter().position(|&(a, b)| a == t && b == f) {
            return Some(Field {
                offset: self.1[i] as u64,
                size: Some(8),
            });
        }
        let i = FIELDS.iter().position(|&(a, b)| a == t && b == f)?;
        Some(Field {
            offset: self.0[i] as u64,
            size: Some(self.0[14] as u64 % 80),
        })
    }
}

fuzz_target!(|inp: Input| {
    if inp.image.len() < 64 {
        return;
    }
    let Ok(snap) = Snapshot::from_bytes(inp.image, Some(Format::Raw)) else {
        return;
    };
    let mem = GuestMemory::new(snap);
    let regs = [Registers {
        cr0: 0x8000_0001,
        cr3: (inp.cr3 as u64) << 12,
        cr4: if inp.cr4_la57 { 0x1020 } else { 0x20 },
        gs_base: 0xffff_8880_0000_0000 | ((inp.cr3 as u64) << 12),
        ..Registers::default()
    }];
    let source = if inp.in_guest {
        ProfileSource::InGuest
    } else {
        let base = 0xffff_ffff_8100_0000u64;
        let names = [
            "_text",
            "linux_banner",
            "init_top_pgt",
            "init_task",
            "modules",
            "page_offset_base",
            "__start_BTF",
            "__stop_BTF",
            "sys_call_table",
            "syscalls_metadata",
            "current_task",
            "special_mapping_vmops",
            "socket_file_ops",
            "prb",
            "_end",
            "module_kset",
            "vmap_area_list",
        ];
        let mut b = SymbolTableBuilder::new("fuzz symbols");
        for (n, &a) in names.iter().zip(inp.symbols.iter()) {
            b.push(n, if *n == "_text" { base } else { base + a as u64 }, b'D');
        }
        ProfileSource::Loaded(Profile {
            types: Box::new(Types(inp.offsets, inp.detail)),
            symbols: b.build(),
        })
    };
    let Ok(linux) = Linux::discover(&mem, &regs, source) else {
        return;
    };
    let procs: Vec<_> = linux.processes(&mem).filter_map(Result::ok).collect();
    assert!(procs.len() <= xenvmi::os::linux::MAX_TASKS);
    for p in procs.iter().take(64) {
        let d = linux.process_detail(&mem, p);
        if let Ok(args) = &d.cmdline {
            assert!(args.len() as u64 <= xenvmi::os::linux::detail::MAX_ARGS_BYTES + 1);
        }
        if let Ok(fs) = &d.files {
            assert!(fs.len() as u64 <= xenvmi::os::linux::files::MAX_FDS);
        }
        if let Ok(m) = &d.maps {
            assert!(m.len() <= xenvmi::os::linux::maps::MAX_VMAS + 1);
        }
        if let Ok(t) = &d.threads {
            assert!(t.len() <= xenvmi::os::linux::detail::MAX_THREADS + 1);
        }
        if let Ok(s) = &d.sockets {
            assert!(s.len() as u64 <= xenvmi::os::linux::files::MAX_FDS);
        }
    }
    let mut module_bases = Vec::new();
    for m in linux.modules(&mem).flatten().take(64) {
        module_bases.push(m.base.0);
    }
    if let Ok(walk) = linux.module_texts(&mem) {
        let mut n = 0usize;
        for m in walk.flatten() {
            n += 1;
            assert!(m.size <= u64::from(u32::MAX));
        }
        assert!(n <= xenvmi::os::linux::MAX_MODULES);
    }
    if let Ok(v) = linux.module_cross_view(&mem) {
        use xenvmi::os::linux::{modview::MAX_VIEW_ERRORS, MAX_MODULES};
        assert!(v.listed.len() <= MAX_MODULES && v.kobjects.len() <= MAX_MODULES);
        assert!(v.hidden.len() + v.transitional.len() <= v.kobjects.len() + v.areas);
        assert!(v.unattributed.len() <= v.areas);
        assert!(v.errors.len() <= MAX_VIEW_ERRORS);
    }
    let sym = linux.symbolizer(&mem);
    let text = linux.info().text_va.0;
    for (i, &off) in inp.lookups.iter().enumerate() {
        let base = module_bases.get(i).copied().unwrap_or(text);
        if let Some(k) = sym.symbolize(xenvmi::Gva(base.wrapping_add(off as u64))) {
            let limit = xenvmi::os::linux::symbolize::KSYM_NAME_LEN;
            assert!(k.symbol.map_or(0, |s| s.len()) <= limit * 3);
        }
    }
    if let Ok(log) = linux.kernel_log(&mem) {
        assert!(log.len() <= xenvmi::os::linux::kmsg::MAX_LOG_RECORDS);
        let bytes: usize = log.iter().map(|r| r.text.len()).sum();
        assert!(bytes <= xenvmi::os::linux::kmsg::MAX_LOG_BYTES);
    }
    if let Ok(t) = xenvmi::os::linux::syscalls::SyscallTable::read(&linux, &mem) {
        assert!(t.len() <= xenvmi::os::linux::syscalls::MAX_SYSCALLS);
        if let Some(p) = procs.iter().find(|p| p.dtb.is_some()) {
            let space = xenvmi::mem::AddressSpace {
                root: p.dtb.unwrap_or_default(),
                mode: linux.info().kernel_space.mode,
            };
            for nr in 0..t.len().min(64) as u64 {
                let _ = t.decode(&mem, space, nr, [inp.cr3 as u64; 6]);
            }
        }
    }
    let _ = linux.current_task(&mem, &regs[0]);
    let _ = linux.owner_of_cr3(&procs, regs[0].cr3);
    let _ = linux.process_for_cr3(&mem, regs[0].cr3);
});
