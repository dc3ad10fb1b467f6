//! A synthetic Windows x64 guest, laid out by a **real** Volatility3 ISF profile.
//!
//! There is no real Windows memory image in this repository. This builder makes physical
//! memory with 4-level page tables, an ntoskrnl PE header at a KASLR-style base (with the
//! profile's own PDB GUID/age in its CodeView record), `PsActiveProcessHead` with `_EPROCESS`
//! objects, `PsLoadedModuleList` with loader entries, and per-process address spaces holding a
//! PEB, its loader data and DLL entries. Every structure offset and every symbol RVA comes from
//! the profile, so one spec yields three different real layouts (Windows 7, 10, 11).
//! Tests compare what xenvmi reads with the spec they built from, never with recorded output.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;

use xenvmi::backend::snapshot::{Format, Snapshot};
use xenvmi::os::profile::isf::Isf;
use xenvmi::os::profile::TypeSource;
use xenvmi::Registers;

/// Most physical memory a builder may use.
pub const MAX_MEM: usize = 64 << 20;
/// Kernel pool region (outside the kernel image region, as on Windows 10).
pub const POOL_BASE: u64 = 0xffff_a580_0000_0000;
const PRESENT_RW: u64 = 0x3;
const USER: u64 = 0x4;

/// The three profiles: (file, build number from the fixture README).
pub const PROFILES: [(&str, u32); 3] = [
    ("ntkrnlmp-339E74133576439CBCDF7E0229DA3773-1.json.xz", 7601),
    ("ntkrnlmp-5278AFF86C341677D7D7835C85B7B844-1.json.xz", 19041),
    ("ntkrnlmp-0CE4A95C0CD782A7596B034D8648E585-1.json.xz", 22000),
];

/// `fixtures/windows-isf`.
pub fn isf_dir() -> PathBuf {
    super::fixture::fixture_dir("windows-isf")
}

/// Load one of [`PROFILES`] (each test binary caches the parsed files).
/// `DISPATCHER_HEADER.Type` of a process (`ProcessObject`) and a thread (`ThreadObject`):
/// the WDK's `KOBJECTS` values.
pub const PROCESS_OBJECT: u8 = 3;
pub const THREAD_OBJECT: u8 = 6;

pub fn load_isf(file: &str) -> Isf {
    Isf::from_file(isf_dir().join(file)).expect("fixture ISF")
}

/// A DLL or driver in the spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageSpec {
    pub name: String,
    pub base: u64,
    pub size: u32,
    /// Drivers only: `None`, nothing of the image is in memory (only its loader entry);
    /// `Some`, a PE header at `base` with an export table of these (name, RVA) pairs, in
    /// function-index order (RVAs at or above 0x2000, below `size`).
    pub exports: Option<Vec<(String, u32)>>,
}

/// A process in the spec.
#[derive(Clone, Debug)]
pub struct ProcSpec {
    pub pid: u64,
    pub ppid: u64,
    pub name: String,
    /// `None`: a kernel process (no PEB, the kernel's page tables).
    pub dlls: Option<Vec<ImageSpec>>,
}

/// A processor in the spec: what its current thread runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuSpec {
    /// Index into [`WinSpec::processes`] of the process the current thread runs in; `None`:
    /// the idle thread (the idle process, pid 0, on the kernel's page tables).
    pub process: Option<usize>,
    /// Running user code: its registers' CR3 is the process's user root under KVA shadow.
    pub user_mode: bool,
    /// The thread's own process (`KTHREAD.Process`) when it differs from `process`: a thread
    /// of this process attached to `process`'s address space (`ApcState.Process`).
    pub home: Option<usize>,
}

/// What to build.
#[derive(Clone, Debug)]
pub struct WinSpec {
    pub kernel_base: u64,
    pub size_of_image: u32,
    /// Put a CodeView record (the profile's GUID/age) in the kernel header.
    pub codeview: bool,
    /// Give each user process a separate user page-table root (KVA shadow), where the profile
    /// has `UserDirectoryTableBase`.
    pub kva_shadow: bool,
    pub build: u32,
    pub processes: Vec<ProcSpec>,
    pub drivers: Vec<ImageSpec>,
    /// Physical memory below the first page the builder uses (left zero).
    pub reserved_low: usize,
    /// The processors, in `KiProcessorBlock` order (`KeNumberProcessors` is their count).
    pub cpus: Vec<CpuSpec>,
    /// Index of the top-level entry through which every process's table maps itself
    /// (`0x1ed` before Windows 10 1607, randomised in `256..=510` since); `None`: no
    /// self-reference.
    pub self_ref: Option<u16>,
    /// Physical address of the x64 low stub (`PROCESSOR_START_BLOCK`, in the first MiB and
    /// below `reserved_low`) that records the kernel's page-table root; `None`: no stub.
    pub low_stub: Option<u64>,
}

impl WinSpec {
    /// A typical small system.
    pub fn typical(build: u32) -> WinSpec {
        let img = |n: &str, base: u64, size: u32| ImageSpec {
            name: n.into(),
            base,
            size,
            exports: None,
        };
        let user = |pid: u64, ppid: u64, name: &str, exe: &str, extra: &[&str]| {
            let mut dlls = vec![
                img(exe, 0x7ff6_1230_0000 + pid * 0x10_0000, 0x2_3000),
                img("ntdll.dll", 0x7ffb_6a00_0000, 0x1f_8000),
                img("KERNEL32.DLL", 0x7ffb_6800_0000, 0xbd_000),
            ];
            for (i, d) in extra.iter().enumerate() {
                dlls.push(img(d, 0x7ffb_5000_0000 + i as u64 * 0x100_0000, 0x4_0000));
            }
            ProcSpec {
                pid,
                ppid,
                name: name.into(),
                dlls: Some(dlls),
            }
        };
        WinSpec {
            kernel_base: 0xffff_f803_4a60_0000,
            size_of_image: 0x0104_6000,
            codeview: true,
            kva_shadow: true,
            build,
            processes: vec![
                ProcSpec {
                    pid: 4,
                    ppid: 0,
                    name: "System".into(),
                    dlls: None,
                },
                ProcSpec {
                    pid: 108,
                    ppid: 4,
                    name: "Registry".into(),
                    dlls: None,
                },
                user(388, 4, "smss.exe", "smss.exe", &[]),
                user(
                    512,
                    500,
                    "csrss.exe",
                    "csrss.exe",
                    &["CSRSRV.dll", "basesrv.DLL"],
                ),
                user(
                    4412,
                    4388,
                    "explorer.exe",
                    "Explorer.EXE",
                    &["USER32.dll", "ünïcødé-ψ.dll"],
                ),
                // A 15-byte ImageFileName (the field's limit) and a long DLL name.
                user(
                    7000,
                    4412,
                    "averyveryverylo",
                    "averyveryverylongname.exe",
                    &["a-dll-with-a-rather-long-name-to-check-unicode-string-lengths.dll"],
                ),
            ],
            drivers: vec![
                img("ntoskrnl.exe", 0xffff_f803_4a60_0000, 0x0104_6000),
                img("hal.dll", 0xffff_f803_4a00_0000, 0x6_c000),
                img("kd.dll", 0xffff_f803_4c80_0000, 0xb_000),
                img("ACPI.sys", 0xffff_f803_4d10_0000, 0x8_9000),
                img("xenvbd.sys", 0xffff_f803_4e20_0000, 0x2_4000),
            ],
            reserved_low: 0x10_0000,
            // vCPU 0 in user mode in the last process, vCPU 1 in the kernel (System).
            cpus: vec![
                CpuSpec {
                    process: Some(5),
                    user_mode: true,
                    home: None,
                },
                CpuSpec {
                    process: Some(0),
                    user_mode: false,
                    home: None,
                },
            ],
            self_ref: Some(0x1ed),
            low_stub: Some(0x13000),
        }
    }

    /// [`WinSpec::typical`] whose drivers have images in memory: hal.dll and ACPI.sys with
    /// export tables (RVAs not in name or address order), kd.dll a PE header exporting
    /// nothing; xenvbd.sys stays without an image.
    pub fn with_driver_exports(build: u32) -> WinSpec {
        let mut s = WinSpec::typical(build);
        let list = |v: &[(&str, u32)]| Some(v.iter().map(|(n, r)| ((*n).into(), *r)).collect());
        for d in &mut s.drivers {
            d.exports = match d.name.as_str() {
                "hal.dll" => list(&[
                    ("KeStallExecutionProcessor", 0x3100),
                    ("HalGetBusData", 0x2340),
                    ("HalReturnToFirmware", 0x5000),
                ]),
                "ACPI.sys" => list(&[("AcpiInitialize", 0x2_0000), ("AcpiGetTable", 0x8000)]),
                "kd.dll" => list(&[]),
                _ => None,
            };
        }
        s
    }

    /// [`WinSpec::typical`] varied by `seed`: the kernel base (a 2 MiB-aligned KASLR slot;
    /// the `ntoskrnl.exe` driver entry follows it), the self-referencing entry's index (one of
    /// `256..=510` no other kernel mapping of the guest uses), the low stub's page (below 640 KiB, as the HAL allocates it), every
    /// user process's pid and the processes' order after System and Registry.
    pub fn seeded(build: u32, seed: u64) -> WinSpec {
        let mut rng = SplitMix(seed);
        let mut s = WinSpec::typical(build);
        s.kernel_base = 0xffff_f800_0000_0000 + (0x100 + rng.below(0x3000)) * 0x20_0000;
        s.drivers[0].base = s.kernel_base;
        // Indices the guest maps: the kernel region, the pool and the stacks.
        let used = [
            (s.kernel_base >> 39) & 511,
            (POOL_BASE >> 39) & 511,
            (WinGuest::stack(0).0 >> 39) & 511,
        ];
        s.self_ref = loop {
            let i = 256 + rng.below(255);
            if !used.contains(&i) {
                break Some(i as u16);
            }
        };
        s.low_stub = Some(0x1000 * (1 + rng.below(0x9d)));
        let mut pids: Vec<u64> = Vec::new();
        for p in s.processes.iter_mut().skip(2) {
            let pid = loop {
                let pid = 4 * (30 + rng.below(4000));
                if !pids.contains(&pid) {
                    break pid;
                }
            };
            pids.push(pid);
            p.pid = pid;
        }
        // Parents stay in the system: each user process's parent is the one before it.
        for i in 3..s.processes.len() {
            s.processes[i].ppid = s.processes[i - 1].pid;
        }
        // Shuffle the user processes (and the processors' references to them).
        let n = s.processes.len();
        let mut order: Vec<usize> = (0..n).collect();
        for i in (3..n).rev() {
            let j = 2 + rng.below(i as u64 - 1) as usize;
            order.swap(i, j);
        }
        let old = s.processes.clone();
        s.processes = order.iter().map(|&i| old[i].clone()).collect();
        for c in &mut s.cpus {
            for p in [&mut c.process, &mut c.home].into_iter().flatten() {
                *p = order.iter().position(|&o| o == *p).unwrap();
            }
        }
        s
    }

    /// [`WinSpec::typical`] with `n` processors (at least 3): the first two as there, the
    /// third idle, the rest in the kernel on behalf of processes 2, 3, ... in turn; the fifth
    /// (when there is one) a System thread attached to its process.
    pub fn with_cpus(build: u32, n: usize) -> WinSpec {
        let mut s = WinSpec::typical(build);
        let procs = s.processes.len();
        for i in 2..n {
            s.cpus.push(CpuSpec {
                process: (i > 2).then(|| 2 + (i - 3) % (procs - 2)),
                user_mode: false,
                home: (i == 4).then_some(0),
            });
        }
        s
    }

    /// The smallest interesting system (System, one process with two DLLs, two drivers, no
    /// KVA shadow, nothing reserved): small enough for a fuzz seed.
    pub fn small(build: u32) -> WinSpec {
        let mut s = WinSpec::typical(build);
        s.processes.truncate(3);
        s.processes.remove(1);
        if let Some(d) = s.processes[1].dlls.as_mut() {
            d.truncate(2);
        }
        s.drivers.truncate(2);
        s.kva_shadow = false;
        s.reserved_low = 0x2000;
        s.low_stub = Some(0x1000);
        s.cpus[0].process = Some(1);
        s
    }
}

/// SplitMix64 (Steele, Lea, Flood 2014): a small seeded generator for [`WinSpec::seeded`].
pub struct SplitMix(pub u64);

impl SplitMix {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A value in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Physical memory under construction.
pub struct WinGuest {
    pub mem: Vec<u8>,
    pub kernel_pml4: u64,
    /// (kernel pml4 root, user root) per spec process, in spec order.
    pub roots: Vec<(u64, Option<u64>)>,
    /// `_EPROCESS` address per spec process.
    pub eprocess: Vec<u64>,
    /// Per-process user PEB address.
    pub pebs: Vec<Option<u64>>,
    pub spec: WinSpec,
    pub rva: HashMap<&'static str, u64>,
    /// `KPRCB` address per spec processor.
    pub prcbs: Vec<u64>,
    /// Current thread (`ETHREAD`) per spec processor.
    pub threads: Vec<u64>,
    /// The idle process's `EPROCESS`, when a processor is idle.
    pub idle_eprocess: Option<u64>,
    pool_next: u64,
    process_pml4s: Vec<u64>,
    user_next: HashMap<u64, u64>,
}

impl WinGuest {
    fn alloc_page(&mut self) -> u64 {
        let pa = self.mem.len() as u64;
        assert!(
            self.mem.len() + 4096 <= MAX_MEM,
            "synthetic guest too large"
        );
        self.mem.resize(self.mem.len() + 4096, 0);
        pa
    }

    fn u64_at(&self, pa: u64) -> u64 {
        u64::from_le_bytes(self.mem[pa as usize..pa as usize + 8].try_into().unwrap())
    }

    fn set_u64(&mut self, pa: u64, v: u64) {
        self.mem[pa as usize..pa as usize + 8].copy_from_slice(&v.to_le_bytes());
    }

    /// The physical page backing `va` in `pml4`, mapping a fresh page if needed.
    fn page(&mut self, pml4: u64, va: u64) -> u64 {
        let user = if va < 0x8000_0000_0000 { USER } else { 0 };
        let mut table = pml4;
        for shift in [39u32, 30, 21] {
            let e = table + ((va >> shift) & 511) * 8;
            let mut entry = self.u64_at(e);
            if entry & 1 == 0 {
                let t = self.alloc_page();
                entry = t | PRESENT_RW | user;
                self.set_u64(e, entry);
            }
            table = entry & 0x000f_ffff_ffff_f000;
        }
        let e = table + ((va >> 12) & 511) * 8;
        let mut entry = self.u64_at(e);
        if entry & 1 == 0 {
            let p = self.alloc_page();
            entry = p | PRESENT_RW | user;
            self.set_u64(e, entry);
        }
        entry & 0x000f_ffff_ffff_f000
    }

    /// Write bytes at `va` in the address space `pml4`, mapping pages as needed.
    pub fn write(&mut self, pml4: u64, va: u64, bytes: &[u8]) {
        let mut done = 0usize;
        while done < bytes.len() {
            let cur = va + done as u64;
            let n = ((4096 - (cur & 0xfff)) as usize).min(bytes.len() - done);
            let pa = self.page(pml4, cur) + (cur & 0xfff);
            self.mem[pa as usize..pa as usize + n].copy_from_slice(&bytes[done..done + n]);
            done += n;
        }
    }

    pub fn write_u64(&mut self, pml4: u64, va: u64, v: u64) {
        self.write(pml4, va, &v.to_le_bytes());
    }

    pub fn write_u32(&mut self, pml4: u64, va: u64, v: u32) {
        self.write(pml4, va, &v.to_le_bytes());
    }

    pub fn write_u16(&mut self, pml4: u64, va: u64, v: u16) {
        self.write(pml4, va, &v.to_le_bytes());
    }

    /// Kernel-space write.
    pub fn kwrite(&mut self, va: u64, bytes: &[u8]) {
        let k = self.kernel_pml4;
        self.write(k, va, bytes);
    }

    pub fn kwrite_u64(&mut self, va: u64, v: u64) {
        self.kwrite(va, &v.to_le_bytes());
    }

    /// Read back a u64 through `pml4` (for tests that corrupt things).
    pub fn read_u64(&mut self, pml4: u64, va: u64) -> u64 {
        let pa = self.page(pml4, va) + (va & 0xfff);
        self.u64_at(pa)
    }

    /// Allocate `size` bytes of kernel pool (16-byte aligned, zeroed, mapped).
    pub fn pool(&mut self, size: u64) -> u64 {
        let va = self.pool_next;
        self.pool_next = (va + size + 0x30) & !0xf;
        // Map the pages now so later reads of zeroed fields succeed.
        self.kwrite(va, &vec![0u8; size as usize]);
        va
    }

    /// Reserve `size` bytes of kernel pool without mapping them: pages are mapped (zeroed) by
    /// the first write into them, so a large structure of which a few fields are written (a
    /// `KPCR`) costs a few pages.
    pub fn pool_reserve(&mut self, size: u64) -> u64 {
        let va = self.pool_next;
        self.pool_next = (va + size + 0x30) & !0xf;
        va
    }

    /// Allocate `size` bytes of user memory in `pml4`.
    fn user_alloc(&mut self, pml4: u64, size: u64) -> u64 {
        let next = self.user_next.entry(pml4).or_insert(0x0000_00d5_1a2b_0000);
        let va = *next;
        *next = (va + size + 0x40) & !0xf;
        self.write(pml4, va, &vec![0u8; size as usize]);
        va
    }

    /// Write a `_UNICODE_STRING` at `at` whose buffer is allocated by `alloc`.
    fn unicode(&mut self, pml4: u64, at: u64, s: &str, buffer: u64, ty: &Isf) {
        let units: Vec<u16> = s.encode_utf16().collect();
        let bytes: Vec<u8> = units.iter().flat_map(|u| u.to_le_bytes()).collect();
        let len_off = ty.require("_UNICODE_STRING", "Length").unwrap();
        let max_off = ty.require("_UNICODE_STRING", "MaximumLength").unwrap();
        let buf_off = ty.require("_UNICODE_STRING", "Buffer").unwrap();
        self.write_u16(pml4, at + len_off, bytes.len() as u16);
        self.write_u16(pml4, at + max_off, bytes.len() as u16 + 2);
        self.write_u64(pml4, at + buf_off, buffer);
        let mut z = bytes;
        z.extend_from_slice(&[0, 0]);
        self.write(pml4, buffer, &z);
    }

    /// Circular doubly linked list: `head` and the `LIST_ENTRY`s at `nodes`, in order.
    pub fn link_list(&mut self, pml4: u64, head: u64, nodes: &[u64]) {
        let mut all = vec![head];
        all.extend_from_slice(nodes);
        for i in 0..all.len() {
            let next = all[(i + 1) % all.len()];
            let prev = all[(i + all.len() - 1) % all.len()];
            self.write_u64(pml4, all[i], next);
            self.write_u64(pml4, all[i] + 8, prev);
        }
    }

    /// Just a kernel page-table root and no content (for placing images by hand).
    pub fn empty() -> WinGuest {
        let mut g = WinGuest {
            mem: vec![0u8; 0x10_0000],
            kernel_pml4: 0,
            roots: Vec::new(),
            eprocess: Vec::new(),
            pebs: Vec::new(),
            spec: WinSpec::typical(0),
            rva: HashMap::new(),
            prcbs: Vec::new(),
            threads: Vec::new(),
            idle_eprocess: None,
            pool_next: POOL_BASE + 0x1000,
            process_pml4s: Vec::new(),
            user_next: HashMap::new(),
        };
        g.kernel_pml4 = g.alloc_page();
        g
    }

    /// Build the guest described by `spec` with the layout of `isf`.
    pub fn build(isf: &Isf, spec: WinSpec) -> WinGuest {
        let mut g = WinGuest {
            mem: vec![0u8; spec.reserved_low],
            kernel_pml4: 0,
            roots: Vec::new(),
            eprocess: Vec::new(),
            pebs: Vec::new(),
            spec: spec.clone(),
            rva: HashMap::new(),
            prcbs: Vec::new(),
            threads: Vec::new(),
            idle_eprocess: None,
            pool_next: POOL_BASE + 0x1000,
            process_pml4s: Vec::new(),
            user_next: HashMap::new(),
        };
        g.kernel_pml4 = g.alloc_page();
        let sym = |n: &'static str| isf.symbols().get(n).unwrap_or_else(|| panic!("{n}"));
        for n in [
            "PsActiveProcessHead",
            "PsLoadedModuleList",
            "PsInitialSystemProcess",
            "NtBuildNumber",
            "KiSystemCall64",
            "KiProcessorBlock",
            "KeNumberProcessors",
            "PsIdleProcess",
        ] {
            g.rva.insert(n, sym(n));
        }
        let base = spec.kernel_base;
        g.kernel_header(isf, &spec);
        g.kwrite(
            base + g.rva["NtBuildNumber"],
            &(0xf000_0000u32 | spec.build).to_le_bytes(),
        );
        // A few bytes of "code" at KiSystemCall64, so the page exists like the real one.
        g.kwrite(base + g.rva["KiSystemCall64"], &[0x0f, 0x01, 0xf8]);

        let t = |ty: &str, f: &str| isf.require(ty, f).unwrap();
        let ep_size = isf.struct_size("_EPROCESS").unwrap();
        let has_user_dtb = isf
            .field("_EPROCESS", "Pcb.UserDirectoryTableBase")
            .is_some();
        let kldr = if isf.field("_KLDR_DATA_TABLE_ENTRY", "DllBase").is_some() {
            "_KLDR_DATA_TABLE_ENTRY"
        } else {
            "_LDR_DATA_TABLE_ENTRY"
        };

        // Processes.
        let mut links = Vec::new();
        for p in &spec.processes {
            let ep = g.pool(ep_size);
            let (root, user_root) = if p.dlls.is_some() {
                let pml4 = g.alloc_page();
                g.process_pml4s.push(pml4);
                let user = if spec.kva_shadow && has_user_dtb {
                    // The KVA-shadow user root: user pages only (the few kernel pages real
                    // Windows maps there for system-call entry are left out).
                    Some(g.alloc_page())
                } else {
                    None
                };
                (pml4, user)
            } else {
                (g.kernel_pml4, None)
            };
            // Pcb.Header.Type: KPROCESS opens EPROCESS, DISPATCHER_HEADER opens KPROCESS.
            g.kwrite(ep, &[PROCESS_OBJECT]);
            g.kwrite_u64(ep + t("_EPROCESS", "UniqueProcessId"), p.pid);
            g.kwrite_u64(ep + t("_EPROCESS", "InheritedFromUniqueProcessId"), p.ppid);
            let mut name = [0u8; 15];
            let n = p.name.len().min(15);
            name[..n].copy_from_slice(&p.name.as_bytes()[..n]);
            g.kwrite(ep + t("_EPROCESS", "ImageFileName"), &name);
            // PCID bits in DirectoryTableBase, as Windows 10 sets them for KVA shadow.
            let pcid = if spec.kva_shadow { 0x2 } else { 0 };
            g.kwrite_u64(ep + t("_EPROCESS", "Pcb.DirectoryTableBase"), root | pcid);
            if has_user_dtb {
                g.kwrite_u64(
                    ep + t("_EPROCESS", "Pcb.UserDirectoryTableBase"),
                    user_root.map(|u| u | 0x8000_0000_0000_0001).unwrap_or(1),
                );
            }
            let peb = p
                .dlls
                .as_ref()
                .map(|dlls| g.user_modules(isf, root, user_root, &p.name, dlls));
            g.kwrite_u64(ep + t("_EPROCESS", "Peb"), peb.unwrap_or(0));
            links.push(ep + t("_EPROCESS", "ActiveProcessLinks"));
            g.eprocess.push(ep);
            g.roots.push((root, user_root));
            g.pebs.push(peb);
        }
        let head = base + g.rva["PsActiveProcessHead"];
        let k = g.kernel_pml4;
        g.link_list(k, head, &links);
        let system = g.eprocess.first().copied().unwrap_or(0);
        g.kwrite_u64(base + g.rva["PsInitialSystemProcess"], system);

        // Drivers.
        let mut links = Vec::new();
        let entry_size = isf.struct_size(kldr).unwrap();
        for d in &spec.drivers {
            let e = g.pool(entry_size);
            g.kwrite_u64(e + t(kldr, "DllBase"), d.base);
            g.kwrite(e + t(kldr, "SizeOfImage"), &d.size.to_le_bytes());
            let buf = g.pool(2 * d.name.len() as u64 + 2);
            g.unicode(k, e + t(kldr, "BaseDllName"), &d.name, buf, isf);
            links.push(e + t(kldr, "InLoadOrderLinks"));
            if let Some(exports) = &d.exports {
                g.driver_image(d, exports);
            }
        }
        g.link_list(k, base + g.rva["PsLoadedModuleList"], &links);
        g.processors(isf, &spec);
        g.share_kernel_half();
        if let Some(i) = spec.self_ref {
            g.self_reference(i);
        }
        if let Some(at) = spec.low_stub {
            g.low_stub(isf, at, g.kernel_pml4);
        }
        g
    }

    /// Every top-level table (the kernel's and each process's) maps itself through entry
    /// `index`: present, writable, supervisor-only, accessed and dirty, as Windows sets it.
    fn self_reference(&mut self, index: u16) {
        let mut tables = vec![self.kernel_pml4];
        tables.extend(self.process_pml4s.iter().copied());
        for t in tables {
            self.set_u64(t + 8 * index as u64, t | 0x63);
        }
    }

    /// A `PROCESSOR_START_BLOCK` at physical `at` recording `cr3`: the `jmp` and
    /// `CompletionFlag`, `LmTarget` (a HAL address) and `SelfMap`, and
    /// `ProcessorState.SpecialRegisters.Cr3` placed by the profile's own `_KPROCESSOR_STATE`
    /// layout after the block's fixed head (`ProcessorState` at `0x90`: the WDK declaration).
    pub fn low_stub(&mut self, isf: &Isf, at: u64, cr3: u64) {
        assert!(
            at >= 0x1000 && at + 0x1000 <= self.spec.reserved_low as u64 && at < 0x10_0000,
            "the low stub must be in the first MiB, below the pages the builder uses"
        );
        let special = isf
            .require("_KPROCESSOR_STATE", "SpecialRegisters")
            .unwrap();
        let cr3_off = isf.require("_KSPECIAL_REGISTERS", "Cr3").unwrap();
        let a = at as usize;
        // e9 (jmp) with a 16-bit offset, then CompletionFlag 1.
        self.mem[a..a + 8].copy_from_slice(&[0xe9, 0x5a, 0x06, 0x00, 1, 0, 0, 0]);
        let hal = self
            .spec
            .drivers
            .get(1)
            .map_or(0xffff_f803_4a00_0000, |d| d.base);
        self.set_u64(at + 0x70, hal + 0x4_5a10);
        self.set_u64(at + 0x78, 0xffff_f7c4_4001_3000);
        self.set_u64(at + 0x90 + special + cr3_off, cr3);
    }

    /// A top-level table at physical `at` (a free page below `reserved_low`) that maps itself
    /// through entry `index` and shares the kernel half, except that the page holding
    /// `corrupt_va` is replaced by a page of zeros (fresh copies of the tables on its path):
    /// a decoy the self-referencing scan finds in which ntoskrnl is found but
    /// `PsActiveProcessHead` is no list.
    pub fn decoy_table(&mut self, at: u64, index: u16, corrupt_va: u64) {
        assert!(at + 0x1000 <= self.spec.reserved_low as u64);
        for i in 256..512u64 {
            let e = self.u64_at(self.kernel_pml4 + i * 8);
            self.set_u64(at + i * 8, e);
        }
        let mut table = at;
        for shift in [39u32, 30, 21, 12] {
            let e = table + ((corrupt_va >> shift) & 511) * 8;
            let old = self.u64_at(e);
            let copy = self.alloc_page();
            if shift != 12 {
                let from = (old & 0x000f_ffff_ffff_f000) as usize;
                let page = self.mem[from..from + 4096].to_vec();
                self.mem[copy as usize..copy as usize + 4096].copy_from_slice(&page);
            }
            self.set_u64(e, copy | (old & 0xfff));
            table = copy;
        }
        self.set_u64(at + 8 * index as u64, at | 0x63);
    }

    /// `ContextFrame` rip and rsp the builder saves for processor `i` (distinct per processor;
    /// rsp inside its current thread's stack, [`WinGuest::stack`]).
    pub fn context_of(&self, i: usize) -> (u64, u64) {
        let (_, base) = Self::stack(i);
        (
            self.spec.kernel_base + 0x4_1000 + 0x100 * i as u64,
            base - 0x1000 - 0x40 * i as u64,
        )
    }

    /// `Cid.UniqueThread` of processor `i`'s current thread (an idle thread's is 0).
    pub fn thread_id(i: usize) -> u64 {
        0x1f04 + 8 * i as u64
    }

    /// `len` bytes at kernel address `va` (pages never written read as zero).
    pub fn kread(&mut self, va: u64, len: usize) -> Vec<u8> {
        let k = self.kernel_pml4;
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            let cur = va + out.len() as u64;
            let n = ((4096 - (cur & 0xfff)) as usize).min(len - out.len());
            let pa = (self.page(k, cur) + (cur & 0xfff)) as usize;
            out.extend_from_slice(&self.mem[pa..pa + n]);
        }
        out
    }

    /// The kernel stack (`StackLimit`, `StackBase`) of processor `i`'s current thread.
    pub fn stack(i: usize) -> (u64, u64) {
        let limit = 0xffff_d08a_1230_0000 + 0x1_0000 * i as u64;
        (limit, limit + 0x6000)
    }

    /// The page-table roots (kernel, user) of the process processor `i` runs.
    pub fn cpu_roots(&self, i: usize) -> (u64, Option<u64>) {
        match self.spec.cpus[i].process {
            Some(p) => self.roots[p],
            None => (self.kernel_pml4, None),
        }
    }

    /// `KiProcessorBlock`, a `KPCR`/`KPRCB`, a current thread and its process per spec
    /// processor, and `KeNumberProcessors`, laid out by the profile.
    fn processors(&mut self, isf: &Isf, spec: &WinSpec) {
        let t = |ty: &str, f: &str| isf.require(ty, f).unwrap();
        let base = spec.kernel_base;
        let k = self.kernel_pml4;
        if spec.cpus.iter().any(|c| c.process.is_none()) {
            let ep = self.pool(isf.struct_size("_EPROCESS").unwrap());
            self.kwrite(ep, &[PROCESS_OBJECT]);
            self.kwrite_u64(ep + t("_EPROCESS", "UniqueProcessId"), 0);
            self.kwrite(ep + t("_EPROCESS", "ImageFileName"), b"Idle\0");
            self.kwrite_u64(ep + t("_EPROCESS", "Pcb.DirectoryTableBase"), k);
            if isf
                .field("_EPROCESS", "Pcb.UserDirectoryTableBase")
                .is_some()
            {
                self.kwrite_u64(ep + t("_EPROCESS", "Pcb.UserDirectoryTableBase"), 1);
            }
            self.kwrite_u64(base + self.rva["PsIdleProcess"], ep);
            self.idle_eprocess = Some(ep);
        }
        let kpcr_size = isf.struct_size("_KPCR").unwrap();
        let thread_size = isf.struct_size("_ETHREAD").unwrap();
        let prcb_in_kpcr = t("_KPCR", "Prcb");
        let pcid = if spec.kva_shadow { 0x2 } else { 0 };
        for (i, c) in spec.cpus.iter().enumerate() {
            // Only the written fields' pages are mapped: the rest of a KPCR is never read.
            let kpcr = self.pool_reserve(kpcr_size);
            let prcb = kpcr + prcb_in_kpcr;
            self.kwrite_u64(kpcr + t("_KPCR", "Self"), kpcr);
            self.kwrite_u64(kpcr + t("_KPCR", "CurrentPrcb"), prcb);
            self.kwrite(prcb + t("_KPRCB", "Number"), &(i as u32).to_le_bytes());
            let thread = self.pool(thread_size);
            self.kwrite_u64(prcb + t("_KPRCB", "CurrentThread"), thread);
            let ep = match c.process {
                Some(p) => self.eprocess[p],
                None => self.idle_eprocess.unwrap(),
            };
            self.kwrite_u64(thread + t("_ETHREAD", "Tcb.ApcState.Process"), ep);
            let home = c.home.map_or(ep, |h| self.eprocess[h]);
            self.kwrite_u64(thread + t("_ETHREAD", "Tcb.Process"), home);
            // Tcb.Header.Type, and the client id: the thread's own process and its id.
            self.kwrite(thread, &[THREAD_OBJECT]);
            let home_pid = c.home.or(c.process).map_or(0, |h| spec.processes[h].pid);
            self.kwrite_u64(thread + t("_ETHREAD", "Cid.UniqueProcess"), home_pid);
            let tid = if c.process.is_some() {
                Self::thread_id(i)
            } else {
                0
            };
            self.kwrite_u64(thread + t("_ETHREAD", "Cid.UniqueThread"), tid);
            let (limit, stack_base) = Self::stack(i);
            self.kwrite_u64(thread + t("_KTHREAD", "StackLimit"), limit);
            self.kwrite_u64(thread + t("_KTHREAD", "StackBase"), stack_base);
            let (rip, rsp) = self.context_of(i);
            let frame = t("_KPRCB", "ProcessorState.ContextFrame");
            self.kwrite_u64(prcb + frame + t("_CONTEXT", "Rip"), rip);
            self.kwrite_u64(prcb + frame + t("_CONTEXT", "Rsp"), rsp);
            let cr3 = t("_KPRCB", "ProcessorState.SpecialRegisters.Cr3");
            let root = self.cpu_roots(i).0;
            self.kwrite_u64(prcb + cr3, root | pcid);
            self.kwrite_u64(base + self.rva["KiProcessorBlock"] + 8 * i as u64, prcb);
            self.prcbs.push(prcb);
            self.threads.push(thread);
        }
        self.kwrite(
            base + self.rva["KeNumberProcessors"],
            &(spec.cpus.len() as u32).to_le_bytes(),
        );
    }

    /// The crash dump `CONTEXT` of processor `i` crashing: its saved rip and rsp, in the
    /// kernel.
    pub fn crash_context(&self, i: usize) -> Registers {
        let (rip, rsp) = self.context_of(i);
        Registers {
            rip,
            rsp,
            rflags: 0x246,
            cs_sel: 0x10,
            ss_sel: 0x18,
            ..Registers::default()
        }
    }

    /// PEB, loader data and entries in the process's address space; returns the PEB address.
    fn user_modules(
        &mut self,
        isf: &Isf,
        pml4: u64,
        user_root: Option<u64>,
        _name: &str,
        dlls: &[ImageSpec],
    ) -> u64 {
        let t = |ty: &str, f: &str| isf.require(ty, f).unwrap();
        let peb = self.user_alloc(pml4, isf.struct_size("_PEB").unwrap());
        let ldr = self.user_alloc(pml4, isf.struct_size("_PEB_LDR_DATA").unwrap());
        self.write_u64(pml4, peb + t("_PEB", "Ldr"), ldr);
        if let Some(first) = dlls.first() {
            self.write_u64(pml4, peb + t("_PEB", "ImageBaseAddress"), first.base);
        }
        let entry_size = isf.struct_size("_LDR_DATA_TABLE_ENTRY").unwrap();
        let mut links = Vec::new();
        for d in dlls {
            let e = self.user_alloc(pml4, entry_size);
            self.write_u64(pml4, e + t("_LDR_DATA_TABLE_ENTRY", "DllBase"), d.base);
            self.write_u32(pml4, e + t("_LDR_DATA_TABLE_ENTRY", "SizeOfImage"), d.size);
            let buf = self.user_alloc(pml4, 2 * d.name.chars().count() as u64 * 2 + 2);
            self.unicode(
                pml4,
                e + t("_LDR_DATA_TABLE_ENTRY", "BaseDllName"),
                &d.name,
                buf,
                isf,
            );
            links.push(e + t("_LDR_DATA_TABLE_ENTRY", "InLoadOrderLinks"));
        }
        self.link_list(
            pml4,
            ldr + t("_PEB_LDR_DATA", "InLoadOrderModuleList"),
            &links,
        );
        // The KVA-shadow user root maps the same user pages.
        if let Some(u) = user_root {
            for i in 0..256u64 {
                let e = self.u64_at(pml4 + i * 8);
                self.set_u64(u + i * 8, e);
            }
        }
        peb
    }

    /// A PE32+ header for ntoskrnl: one section, a CodeView record with the profile's GUID
    /// (when `spec.codeview`) and an export directory naming `ntoskrnl.exe`.
    fn kernel_header(&mut self, isf: &Isf, spec: &WinSpec) {
        let mut h = vec![0u8; 0x1000];
        h[..2].copy_from_slice(b"MZ");
        h[0x3c..0x40].copy_from_slice(&0x108u32.to_le_bytes());
        let pe = 0x108;
        h[pe..pe + 4].copy_from_slice(b"PE\0\0");
        let put16 =
            |h: &mut Vec<u8>, o: usize, v: u16| h[o..o + 2].copy_from_slice(&v.to_le_bytes());
        let put32 =
            |h: &mut Vec<u8>, o: usize, v: u32| h[o..o + 4].copy_from_slice(&v.to_le_bytes());
        put16(&mut h, pe + 4, 0x8664);
        put16(&mut h, pe + 6, 1);
        put16(&mut h, pe + 20, 240);
        put16(&mut h, pe + 22, 0x22);
        let opt = pe + 24;
        put16(&mut h, opt, 0x20b);
        h[opt + 24..opt + 32].copy_from_slice(&0x1_4000_0000u64.to_le_bytes());
        put32(&mut h, opt + 56, spec.size_of_image);
        put32(&mut h, opt + 60, 0x600);
        put16(&mut h, opt + 68, 1); // native
        put32(&mut h, opt + 108, 16);
        // Export directory at 0x800 (name only), debug directory at 0x900 -> RSDS at 0x940.
        put32(&mut h, opt + 112, 0x800);
        put32(&mut h, opt + 116, 0x40);
        put32(&mut h, 0x800 + 12, 0x830);
        h[0x830..0x83d].copy_from_slice(b"ntoskrnl.exe\0");
        if spec.codeview {
            let pdb = isf.metadata()["windows"]["pdb"].clone();
            let guid_hex = pdb["GUID"].as_str().unwrap();
            let age = pdb["age"].as_u64().unwrap() as u32;
            let raw: Vec<u8> = (0..16)
                .map(|i| u8::from_str_radix(&guid_hex[2 * i..2 * i + 2], 16).unwrap())
                .collect();
            // Stored form: Data1 (LE u32), Data2, Data3 (LE u16), Data4 bytes.
            let mut guid = [0u8; 16];
            guid[..4].copy_from_slice(&[raw[3], raw[2], raw[1], raw[0]]);
            guid[4..6].copy_from_slice(&[raw[5], raw[4]]);
            guid[6..8].copy_from_slice(&[raw[7], raw[6]]);
            guid[8..].copy_from_slice(&raw[8..]);
            put32(&mut h, opt + 112 + 6 * 8, 0x900);
            put32(&mut h, opt + 112 + 6 * 8 + 4, 28);
            put32(&mut h, 0x900 + 12, 2);
            put32(&mut h, 0x900 + 16, 24 + 13);
            put32(&mut h, 0x900 + 20, 0x940);
            h[0x940..0x944].copy_from_slice(b"RSDS");
            h[0x944..0x954].copy_from_slice(&guid);
            put32(&mut h, 0x954, age);
            h[0x958..0x965].copy_from_slice(b"ntkrnlmp.pdb\0");
        }
        let sec = opt + 240;
        h[sec..sec + 5].copy_from_slice(b".text");
        put32(&mut h, sec + 8, spec.size_of_image - 0x1000);
        put32(&mut h, sec + 12, 0x1000);
        self.kwrite(spec.kernel_base, &h);
    }

    /// Load a PE file at `base` in the kernel's address space the way the Windows loader lays
    /// images out: its headers, then every section at its RVA.
    pub fn map_pe_file(&mut self, base: u64, bytes: &[u8]) {
        use xenvmi::os::pe::{FileImage, Pe};
        let pe = Pe::parse(FileImage::new(bytes, "PE file")).unwrap();
        let h = pe.headers();
        let k = self.kernel_pml4;
        self.write(k, base, &bytes[..h.size_of_headers as usize]);
        for s in &h.sections {
            let n = s.raw_size.min(if s.virtual_size == 0 {
                s.raw_size
            } else {
                s.virtual_size
            });
            let src = &bytes[s.raw_offset as usize..(s.raw_offset + n) as usize];
            self.write(k, base + s.virtual_address as u64, src);
        }
    }

    /// RVA of a driver image's export directory ([`WinGuest::driver_image`]).
    pub const EXPORT_DIR_RVA: u64 = 0x1000;

    /// A driver's PE header (PE32+, one section from 0x1000) and export directory at
    /// [`WinGuest::EXPORT_DIR_RVA`]: functions in the spec's order, names sorted as the loader
    /// wants them, ordinal base 1, the DLL name.
    fn driver_image(&mut self, d: &ImageSpec, exports: &[(String, u32)]) {
        let put16 = |h: &mut [u8], o: usize, v: u16| h[o..o + 2].copy_from_slice(&v.to_le_bytes());
        let put32 = |h: &mut [u8], o: usize, v: u32| h[o..o + 4].copy_from_slice(&v.to_le_bytes());
        let n = exports.len();
        let dir = Self::EXPORT_DIR_RVA as u32;
        let (funcs, names) = (dir + 40, dir + 40 + 4 * n as u32);
        let ords = names + 4 * n as u32;
        let mut e = vec![0u8; (ords - dir) as usize + 2 * n];
        let strings = |e: &mut Vec<u8>, s: &str| {
            let at = dir + e.len() as u32;
            e.extend_from_slice(s.as_bytes());
            e.push(0);
            at
        };
        let dll = strings(&mut e, &d.name);
        put32(&mut e, 12, dll);
        put32(&mut e, 16, 1);
        put32(&mut e, 20, n as u32);
        put32(&mut e, 24, n as u32);
        put32(&mut e, 28, funcs);
        put32(&mut e, 32, names);
        put32(&mut e, 36, ords);
        let mut sorted: Vec<(usize, &(String, u32))> = exports.iter().enumerate().collect();
        sorted.sort_by(|a, b| a.1 .0.cmp(&b.1 .0));
        for (k, (index, (name, rva))) in sorted.into_iter().enumerate() {
            assert!(
                *rva >= 0x2000 && *rva < d.size,
                "export RVA {rva:#x} of {}",
                d.name
            );
            put32(&mut e, (funcs - dir) as usize + 4 * index, *rva);
            let at = strings(&mut e, name);
            put32(&mut e, (names - dir) as usize + 4 * k, at);
            put16(&mut e, (ords - dir) as usize + 2 * k, index as u16);
        }
        assert!(
            e.len() < 0x1000,
            "the export data of {} fits its page",
            d.name
        );

        let mut h = vec![0u8; 0x1000];
        h[..2].copy_from_slice(b"MZ");
        let pe = 0x80;
        put32(&mut h, 0x3c, pe as u32);
        h[pe..pe + 4].copy_from_slice(b"PE\0\0");
        put16(&mut h, pe + 4, 0x8664);
        put16(&mut h, pe + 6, 1);
        put16(&mut h, pe + 20, 240);
        put16(&mut h, pe + 22, 0x2022);
        let opt = pe + 24;
        put16(&mut h, opt, 0x20b);
        h[opt + 24..opt + 32].copy_from_slice(&0x1_c000_0000u64.to_le_bytes());
        put32(&mut h, opt + 56, d.size);
        put32(&mut h, opt + 60, 0x400);
        put16(&mut h, opt + 68, 1); // native
        put32(&mut h, opt + 108, 16);
        put32(&mut h, opt + 112, dir);
        put32(&mut h, opt + 116, e.len() as u32);
        let sec = opt + 240;
        h[sec..sec + 5].copy_from_slice(b".text");
        put32(&mut h, sec + 8, d.size - 0x1000);
        put32(&mut h, sec + 12, 0x1000);
        self.kwrite(d.base, &h);
        self.kwrite(d.base + Self::EXPORT_DIR_RVA, &e);
    }

    /// Every process root shares the kernel's upper half.
    fn share_kernel_half(&mut self) {
        for pml4 in self.process_pml4s.clone() {
            for i in 256..512u64 {
                let e = self.u64_at(self.kernel_pml4 + i * 8);
                self.set_u64(pml4 + i * 8, e);
            }
        }
    }

    /// Registers of every spec processor (vCPU `i` for processor `i`): user mode on the
    /// process's user root (when KVA shadow is on) or kernel mode on its kernel root, the
    /// kernel-mode ones at their saved context. `MSR_LSTAR` points at `KiSystemCall64` on
    /// all, as on a running system. The typical spec gives vCPU 0 in user mode in the last
    /// process and vCPU 1 in the kernel on the System page tables.
    pub fn registers(&self) -> Vec<Registers> {
        let lstar = self.spec.kernel_base + self.rva["KiSystemCall64"];
        let base = Registers {
            cr0: 0x8005_0033,
            cr4: 0x0035_06f8 & !0x1000,
            efer: 0xd01,
            msr_lstar: lstar,
            ..Registers::default()
        };
        (0..self.spec.cpus.len())
            .map(|i| {
                let (root, user) = self.cpu_roots(i);
                if self.spec.cpus[i].user_mode {
                    Registers {
                        cr3: user.unwrap_or(root) | 0x8000_0000_0000_0001,
                        cs_sel: 0x33,
                        rip: 0x7ff6_1234_5678,
                        ..base
                    }
                } else {
                    let (rip, rsp) = self.context_of(i);
                    Registers {
                        cr3: root | 0x2,
                        cs_sel: 0x10,
                        rip,
                        rsp,
                        ..base
                    }
                }
            })
            .collect()
    }

    /// Write the guest as a QEMU-style ELF core with `regs` as its vCPUs' notes (by xenvmi's
    /// own capture, from a simulated domain holding this memory and these registers).
    pub fn write_elf_core(&self, regs: &[Registers], path: &std::path::Path) {
        use xenvmi::backend::sim::SimDomain;
        use xenvmi::capture::{capture_to_file, CaptureOptions};
        let raw = Snapshot::from_bytes(self.mem.clone(), Some(Format::Raw)).expect("raw image");
        let dom = SimDomain::new(raw, regs);
        capture_to_file(&dom, path, CaptureOptions::default()).expect("ELF core");
    }

    /// The finished image as a raw snapshot.
    pub fn snapshot(self) -> Snapshot {
        Snapshot::from_bytes(self.mem, Some(Format::Raw)).expect("raw image")
    }
}
