//! Xen dump-core files (`xl dump-core`), laid out here from Xen's own description of the format
//! (`docs/misc/dump-core-format.txt`; `vcpu_guest_context` offsets from Xen's public headers,
//! checked with `offsetof` against Debian's libxen-dev 4.17), holding the pages of a real Linux
//! dump in shuffled order with holes, and read back: every page where it belongs, every
//! register, the guest's own processes. Then the same file corrupted.

mod support;

use support::fixture::{fixture_file, ground_truth};
use xenvmi::backend::snapshot::{Format, Snapshot};
use xenvmi::backend::PhysicalMemory;
use xenvmi::mem::GuestMemory;
use xenvmi::os::linux::{Linux, ProfileSource};
use xenvmi::{Gpa, Registers};

const PAGE: usize = 4096;
const CTX: usize = 5168;

fn put(b: &mut [u8], off: usize, v: &[u8]) {
    b[off..off + v.len()].copy_from_slice(v);
}

fn note(out: &mut Vec<u8>, ntype: u32, desc: &[u8]) {
    out.extend_from_slice(&4u32.to_le_bytes());
    out.extend_from_slice(&(desc.len() as u32).to_le_bytes());
    out.extend_from_slice(&ntype.to_le_bytes());
    out.extend_from_slice(b"Xen\0");
    out.extend_from_slice(desc);
}

/// `vcpu_guest_context` (x86-64) of `r`, as Xen's `arch_get_info_guest` fills it for an HVM
/// vCPU: user_regs at 520, ctrlreg[] at 4984, fs_base 5144, gs_base_kernel 5152,
/// gs_base_user 5160 (the kernel's GS base is the one in use in ring 0).
fn context(r: &Registers) -> Vec<u8> {
    let mut c = vec![0u8; CTX];
    let regs = [
        r.r15, r.r14, r.r13, r.r12, r.rbp, r.rbx, r.r11, r.r10, r.r9, r.r8, r.rax, r.rcx, r.rdx,
        r.rsi, r.rdi,
    ];
    for (i, v) in regs.iter().enumerate() {
        put(&mut c, 520 + i * 8, &v.to_le_bytes());
    }
    put(&mut c, 648, &r.rip.to_le_bytes());
    put(&mut c, 656, &r.cs_sel.to_le_bytes());
    put(&mut c, 664, &r.rflags.to_le_bytes());
    put(&mut c, 672, &r.rsp.to_le_bytes());
    put(&mut c, 680, &r.ss_sel.to_le_bytes());
    for (i, v) in [r.cr0, 0, r.cr2, r.cr3, r.cr4].iter().enumerate() {
        put(&mut c, 4984 + i * 8, &v.to_le_bytes());
    }
    put(&mut c, 5144, &r.fs_base.to_le_bytes());
    let (kernel, user) = if r.cs_sel & 3 == 0 {
        (r.gs_base, r.kernel_gs_base)
    } else {
        (r.kernel_gs_base, r.gs_base)
    };
    put(&mut c, 5152, &kernel.to_le_bytes());
    put(&mut c, 5160, &user.to_le_bytes());
    c
}

/// A dump-core file of `pfns` (in file order) from `src`, with `vcpus` and `magic`.
fn dump_core(src: &Snapshot, pfns: &[u64], vcpus: &[Registers], magic: u64) -> Vec<u8> {
    let mut notes = Vec::new();
    note(&mut notes, 0x200_0000, &[]);
    let mut h = Vec::new();
    for v in [magic, vcpus.len() as u64, pfns.len() as u64, PAGE as u64] {
        h.extend_from_slice(&v.to_le_bytes());
    }
    note(&mut notes, 0x200_0001, &h);
    note(&mut notes, 0x200_0003, &1u64.to_le_bytes());
    let prstatus: Vec<u8> = vcpus.iter().flat_map(context).collect();
    let pfn_bytes: Vec<u8> = pfns.iter().flat_map(|p| p.to_le_bytes()).collect();
    let names = b"\0.shstrtab\0.note.Xen\0.xen_prstatus\0.xen_pfn\0.xen_pages\0";
    let name_at = |n: &str| {
        names
            .windows(n.len())
            .position(|w| w == n.as_bytes())
            .unwrap() as u32
    };
    // Layout: header, names, notes, prstatus, pfns, (page-aligned) pages, section headers.
    let mut f = vec![0u8; 64];
    let add = |f: &mut Vec<u8>, data: &[u8], align: usize| {
        f.resize(f.len().next_multiple_of(align), 0);
        let off = f.len();
        f.extend_from_slice(data);
        (off as u64, data.len() as u64)
    };
    let s_names = add(&mut f, names, 8);
    let s_notes = add(&mut f, &notes, 8);
    let s_prstatus = add(&mut f, &prstatus, 8);
    let s_pfn = add(&mut f, &pfn_bytes, 8);
    f.resize(f.len().next_multiple_of(PAGE), 0);
    let pages_off = f.len() as u64;
    let mut page = vec![0u8; PAGE];
    for &p in pfns {
        page.fill(0);
        if p != u64::MAX {
            src.read_physical(Gpa(p << 12), &mut page).unwrap();
        }
        f.extend_from_slice(&page);
    }
    let s_pages = (pages_off, (pfns.len() * PAGE) as u64);
    f.resize(f.len().next_multiple_of(8), 0);
    let shoff = f.len() as u64;
    let sections = [
        (0u32, 0u32, (0u64, 0u64)),
        (name_at(".shstrtab"), 3, s_names),
        (name_at(".note.Xen"), 7, s_notes),
        (name_at(".xen_prstatus"), 1, s_prstatus),
        (name_at(".xen_pfn"), 1, s_pfn),
        (name_at(".xen_pages"), 1, s_pages),
    ];
    for (name, ty, (off, size)) in sections {
        let mut sh = [0u8; 64];
        put(&mut sh, 0, &name.to_le_bytes());
        put(&mut sh, 4, &ty.to_le_bytes());
        put(&mut sh, 24, &off.to_le_bytes());
        put(&mut sh, 32, &size.to_le_bytes());
        f.extend_from_slice(&sh);
    }
    put(&mut f, 0, b"\x7fELF\x02\x01\x01");
    put(&mut f, 16, &4u16.to_le_bytes());
    put(&mut f, 18, &62u16.to_le_bytes());
    put(&mut f, 20, &1u32.to_le_bytes());
    put(&mut f, 40, &shoff.to_le_bytes());
    put(&mut f, 52, &64u16.to_le_bytes());
    put(&mut f, 58, &64u16.to_le_bytes());
    put(&mut f, 60, &(sections.len() as u16).to_le_bytes());
    put(&mut f, 62, &1u16.to_le_bytes());
    f
}

/// Every frame of `src`, in a shuffled order (a fixed permutation of blocks of 64 pages),
/// without the frames of `holes`, and with an `INVALID_PFN` entry.
fn shuffled_frames(src: &Snapshot, holes: &[u64]) -> Vec<u64> {
    let mut frames: Vec<u64> = src
        .physical_ranges()
        .iter()
        .flat_map(|r| (r.start >> 12)..(r.end >> 12))
        .filter(|f| !holes.contains(f))
        .collect();
    let blocks: Vec<Vec<u64>> = frames.chunks(64).map(|c| c.to_vec()).collect();
    let n = blocks.len();
    frames = (0..n)
        .map(|i| (i * 7919) % n)
        .flat_map(|i| blocks[i].clone())
        .collect();
    frames.insert(frames.len() / 2, u64::MAX);
    frames
}

fn processes(s: Snapshot) -> Vec<(u64, u64)> {
    let regs = s.all_registers().to_vec();
    let mem = GuestMemory::new(s);
    let linux = Linux::discover(&mem, &regs, ProfileSource::InGuest).expect("Linux found");
    let mut v: Vec<(u64, u64)> = linux
        .processes(&mem)
        .map(|p| {
            let p = p.expect("task reads");
            (p.pid, p.ppid)
        })
        .collect();
    v.sort();
    v
}

#[test]
fn an_hvm_dump_core_reads_back_page_for_page_with_the_guests_processes() {
    let src = Snapshot::open(fixture_file("linux-6.12", "vmcore.elf").unwrap()).unwrap();
    let holes = [0x10, 0x11, 0x12];
    let frames = shuffled_frames(&src, &holes);
    let vcpus = src.all_registers().to_vec();
    let path = std::env::temp_dir().join(format!("xenvmi-xen-core-{}", std::process::id()));
    std::fs::write(&path, dump_core(&src, &frames, &vcpus, 0xF00F_EBEE)).unwrap();
    let core = Snapshot::open(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(core.format(), Format::XenCore);
    assert_eq!(core.format().to_string(), "Xen dump-core");
    // Every page where its frame number says, the holes absent.
    let (mut a, mut b) = (vec![0u8; PAGE], vec![0u8; PAGE]);
    for f in frames.iter().filter(|&&f| f != u64::MAX) {
        src.read_physical(Gpa(f << 12), &mut a).unwrap();
        core.read_physical(Gpa(f << 12), &mut b).unwrap();
        assert!(a == b, "frame {f:#x}");
    }
    for h in holes {
        assert!(
            core.read_physical(Gpa(h << 12), &mut b).is_err(),
            "hole {h:#x}"
        );
    }
    // Registers as the QEMU core has them (EFER: long mode from CR0.PG + CR4.PAE).
    assert_eq!(core.all_registers().len(), vcpus.len());
    for (got, want) in core.all_registers().iter().zip(&vcpus) {
        let want = Registers {
            // Not in a vcpu_guest_context: segment bases other than FS/GS, descriptor tables.
            cs_base: 0,
            ds_base: 0,
            es_base: 0,
            ss_base: 0,
            gdtr_base: 0,
            gdtr_limit: 0,
            idtr_base: 0,
            idtr_limit: 0,
            ..*want
        };
        assert_eq!(*got, want);
    }
    // The Linux walk finds the guest's own processes.
    let gt = ground_truth("linux-6.12");
    let mut want: Vec<(u64, u64)> = gt["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["pid"].as_u64().unwrap(), p["ppid"].as_u64().unwrap()))
        .collect();
    want.sort();
    assert_eq!(processes(core), want);
}

#[test]
fn dump_cores_that_lie_or_are_pv_are_refused_by_name() {
    let src = Snapshot::open(fixture_file("linux-6.12", "vmcore.elf").unwrap()).unwrap();
    let frames: Vec<u64> = (0..64).collect();
    let vcpus = src.all_registers().to_vec();
    let good = dump_core(&src, &frames, &vcpus, 0xF00F_EBEE);
    let err = |bytes: Vec<u8>| match Snapshot::from_bytes(bytes, None) {
        Ok(_) => panic!("accepted"),
        Err(e) => e.to_string(),
    };
    // A PV domain's dump.
    let e = err(dump_core(&src, &frames, &vcpus, 0xF00F_EBED));
    assert!(
        e.contains("paravirtualized") && e.contains("machine frame"),
        "{e}"
    );
    // Truncated in the pages.
    let e = err(good[..good.len() / 2].to_vec());
    assert!(e.contains("Xen dump-core"), "{e}");
    // More vCPUs claimed than contexts stored: the header note's second field.
    let mut lie = good.clone();
    let at = lie
        .windows(8)
        .position(|w| w == 0xF00F_EBEEu64.to_le_bytes())
        .unwrap();
    lie[at + 8..at + 16].copy_from_slice(&u64::MAX.to_le_bytes());
    let e = err(lie);
    assert!(e.contains("vCPUs claimed"), "{e}");
    // More pages claimed than stored.
    let mut lie = good.clone();
    lie[at + 16..at + 24].copy_from_slice(&(1u64 << 40).to_le_bytes());
    let e = err(lie);
    assert!(e.contains("pages claimed"), "{e}");
    // Section headers past the end; 65,535 of them.
    let mut lie = good.clone();
    lie[40..48].copy_from_slice(&(u64::MAX - 8).to_le_bytes());
    let e = err(lie);
    assert!(e.contains("section header"), "{e}");
    let mut lie = good.clone();
    lie[60..62].copy_from_slice(&u16::MAX.to_le_bytes());
    let e = err(lie);
    assert!(e.contains("section headers"), "{e}");
}

/// The `snapshot` fuzz target's seed `fuzz/seeds/snapshot/xen-dump-core`: four frames of the
/// real 6.12 dump out of order with an `INVALID_PFN` entry, one vCPU (written again with
/// `XENVMI_WRITE_SEED=1`). It must stay a dump-core that reads back as laid out.
#[test]
fn the_fuzz_seed_is_a_readable_dump_core() {
    let seed = support::fixture::repo_root().join("fuzz/seeds/snapshot/xen-dump-core");
    let src = Snapshot::open(fixture_file("linux-6.12", "vmcore.elf").unwrap()).unwrap();
    if std::env::var_os("XENVMI_WRITE_SEED").is_some() {
        let vcpus = &src.all_registers()[..1];
        std::fs::write(
            &seed,
            dump_core(&src, &[3, 1, u64::MAX, 2, 0], vcpus, 0xF00F_EBEE),
        )
        .unwrap();
    }
    let s = Snapshot::open(&seed).unwrap();
    assert_eq!(s.format(), Format::XenCore);
    // No two frames are stored next to each other: four ranges of one page.
    assert_eq!(
        s.physical_ranges(),
        vec![0..0x1000, 0x1000..0x2000, 0x2000..0x3000, 0x3000..0x4000]
    );
    let (mut a, mut b) = (vec![0u8; PAGE], vec![0u8; PAGE]);
    for f in 0..4u64 {
        src.read_physical(Gpa(f << 12), &mut a).unwrap();
        s.read_physical(Gpa(f << 12), &mut b).unwrap();
        assert!(a == b, "frame {f}");
    }
    assert_eq!(s.all_registers()[0].cr3, src.all_registers()[0].cr3);
}
