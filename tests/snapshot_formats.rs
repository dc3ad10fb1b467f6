//! Raw and LiME images of real guest memory, made from the QEMU ELF fixture's own PT_LOAD
//! segments, must give the same memory and the same Linux walk as the ELF core.

mod support;

use std::fs::File;
use std::io::{Seek, Write};
use std::path::Path;

use support::fixture::{fixture_file, ground_truth};
use xenvmi::backend::snapshot::{Format, Snapshot};
use xenvmi::backend::PhysicalMemory;
use xenvmi::mem::GuestMemory;
use xenvmi::os::linux::{Linux, ProfileSource};
use xenvmi::Gpa;

fn elf() -> Snapshot {
    Snapshot::open(fixture_file("linux-6.1", "vmcore.elf").unwrap()).unwrap()
}

fn write_lime(elf: &Snapshot, path: &Path) {
    let mut out = File::create(path).unwrap();
    for r in elf.regions() {
        out.write_all(&support::lime::header(r.gpa, r.len)).unwrap();
        dmp::write_sparse(&region_bytes(elf, r), &mut out);
    }
    let pos = out.stream_position().unwrap();
    out.set_len(pos).unwrap();
}

fn walk_matches_ground_truth(snap: Snapshot) {
    let gt = ground_truth("linux-6.1");
    let mem = GuestMemory::new(snap);
    let linux = Linux::discover(&mem, &[], ProfileSource::InGuest).unwrap();
    assert_eq!(linux.info().release, gt["kernel_release"].as_str().unwrap());
    let n = linux.processes(&mem).filter(|p| p.is_ok()).count();
    assert_eq!(n as u64, gt["process_count"].as_u64().unwrap());
}

#[test]
fn raw_and_lime_images_of_real_memory() {
    let elf = elf();
    let dir = std::env::temp_dir().join(format!("xenvmi-formats-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let raw = dir.join("physmem.raw");
    let lime = dir.join("physmem.lime");
    support::linux::write_raw(&elf, &raw);
    write_lime(&elf, &lime);

    let raw_snap = Snapshot::open(&raw).unwrap();
    let lime_snap = Snapshot::open(&lime).unwrap();
    assert_eq!(raw_snap.format(), Format::Raw);
    assert_eq!(lime_snap.format(), Format::Lime);
    assert_eq!(lime_snap.regions().len(), elf.regions().len());
    // Same bytes at a spread of addresses, including the BIOS copy below 4 GiB.
    for r in elf.regions() {
        for off in [0, 0x1234, r.len / 2, r.len - 8] {
            let a = Gpa(r.gpa + off);
            let want = elf.read_physical_u64(a).unwrap();
            assert_eq!(raw_snap.read_physical_u64(a).unwrap(), want, "raw at {a}");
            assert_eq!(lime_snap.read_physical_u64(a).unwrap(), want, "LiME at {a}");
        }
    }
    walk_matches_ground_truth(raw_snap);
    walk_matches_ground_truth(lime_snap);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn elf_notes_give_every_vcpu() {
    let gt = ground_truth("linux-6.1");
    let elf = elf();
    let vcpus = gt["vcpus"].as_array().unwrap();
    assert_eq!(elf.all_registers().len(), vcpus.len());
    for (r, v) in elf.all_registers().iter().zip(vcpus) {
        let h = |k: &str| support::fixture::hex(&v[k]);
        assert_eq!(r.rip, h("rip"));
        assert_eq!(r.cr0, h("cr0"));
        assert_eq!(r.cr3, h("cr3"));
        assert_eq!(r.cr4, h("cr4"));
        assert_eq!(r.cr2, h("cr2"));
        assert_eq!(r.gs_base, h("gs_base"));
        assert_eq!(r.cpl() as u64, v["cpl"].as_u64().unwrap());
    }
}

#[test]
fn truncated_and_missing_images_are_clear_errors() {
    let dir = std::env::temp_dir().join(format!("xenvmi-trunc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut src = Vec::new();
    std::io::Read::read_to_end(
        &mut std::io::Read::take(
            File::open(fixture_file("linux-6.1", "vmcore.elf").unwrap()).unwrap(),
            1 << 20,
        ),
        &mut src,
    )
    .unwrap();
    let p = dir.join("truncated.elf");
    std::fs::write(&p, &src).unwrap();
    let e = Snapshot::open(&p).unwrap_err().to_string();
    assert!(e.contains("truncated"), "{e}");
    let e = Snapshot::open(dir.join("missing.elf"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("missing.elf") && e.contains("No such file"),
        "{e}"
    );
    let empty = dir.join("empty");
    std::fs::write(&empty, b"").unwrap();
    assert!(Snapshot::open(&empty)
        .unwrap_err()
        .to_string()
        .contains("empty"));
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---------------------------------------------------------------------------------------------
// Windows crash dumps. No real Windows dump exists on this machine: the dumps below are
// synthetic containers (written by `support::crashdump`, following kdmp-parser's published
// layout) holding the real Linux 6.1 guest's physical memory from the QEMU ELF fixture, so
// every byte read back can be compared with the ELF core.

use support::crashdump::{self as dmp, Header};
use xenvmi::backend::snapshot::WindowsDumpKind;
use xenvmi::backend::VcpuState;
use xenvmi::mem::{AddressSpace, PagingMode, Walk};
use xenvmi::{Gva, Registers, VcpuId};

/// The kernel-mode vCPU of the fixture (vCPU 1, idle in the kernel): its registers go into the
/// dump's `CONTEXT`, its CR3 into `DirectoryTableBase`.
fn kernel_vcpu(elf: &Snapshot) -> Registers {
    let r = elf.all_registers()[1];
    assert_eq!(r.cpl(), 0, "fixture vCPU 1 is expected in the kernel");
    r
}

/// A full (DumpType 1) dump of every ELF region, one run each, pages written sparsely.
fn write_full_dump(elf: &Snapshot, h: &Header, path: &Path) {
    let runs: Vec<(u64, u64)> = elf
        .regions()
        .iter()
        .map(|r| (r.gpa / 4096, r.len / 4096))
        .collect();
    let mut out = File::create(path).unwrap();
    out.write_all(&dmp::full_header(h, &runs)).unwrap();
    for r in elf.regions() {
        assert_eq!((r.gpa % 4096, r.len % 4096), (0, 0), "page-aligned regions");
        dmp::write_sparse(&region_bytes(elf, r), &mut out);
    }
    let pos = out.stream_position().unwrap();
    out.set_len(pos).unwrap();
}

/// A bitmap (DumpType 5, "FDMP") dump holding only the non-zero pages, as Windows leaves out
/// pages it does not need: many regions, and holes where the ELF core has zero pages.
/// Returns the number of pages stored.
fn write_bitmap_dump(elf: &Snapshot, h: &Header, path: &Path) -> u64 {
    let mut present = Vec::new();
    for r in elf.regions() {
        let data = &region_bytes(elf, r);
        for (i, page) in data.chunks(4096).enumerate() {
            if page.iter().any(|&b| b != 0) {
                present.push(r.gpa / 4096 + i as u64);
            }
        }
    }
    let total = elf.max_gfn().0 + 1;
    let mut out = File::create(path).unwrap();
    out.write_all(&dmp::bitmap_header(h, 5, b"FDMP", total, &present))
        .unwrap();
    for pfn in &present {
        let mut page = [0u8; 4096];
        elf.read_physical(Gpa(pfn * 4096), &mut page).unwrap();
        out.write_all(&page).unwrap();
    }
    present.len() as u64
}

fn check_header_and_vcpu(dump: &Snapshot, h: &Header, kind: WindowsDumpKind, dump_type: u32) {
    assert_eq!(dump.format(), Format::WindowsCrashDump);
    assert_eq!(dump.format().to_string(), "Windows crash dump");
    let w = dump.windows_dump_info().expect("Windows dump info");
    assert_eq!(w.kind, kind);
    assert_eq!(w.dump_type, dump_type);
    assert_eq!((w.major_version, w.minor_version), (h.major, h.minor));
    assert_eq!(w.directory_table_base, h.dtb);
    assert_eq!(w.pfn_database, h.pfn_database);
    assert_eq!(w.ps_loaded_module_list, h.ps_loaded_module_list);
    assert_eq!(w.ps_active_process_head, h.ps_active_process_head);
    assert_eq!(w.kd_debugger_data_block, h.kd_debugger_data_block);
    assert_eq!(w.number_processors, h.number_processors);
    assert_eq!(w.bugcheck_code, h.bugcheck_code);
    assert_eq!(w.bugcheck_parameters, h.bugcheck_parameters);
    assert_eq!(w.system_time, h.system_time);
    assert_eq!(w.system_up_time, h.system_up_time);
    // One vCPU (the header has one CONTEXT), whatever NumberProcessors says.
    assert_eq!(dump.vcpu_count(), 1);
    assert!(dump.registers(VcpuId(1)).is_err());
    let r = dump.registers(VcpuId(0)).unwrap();
    let c = &h.context;
    let gprs = |r: &Registers| {
        [
            r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rsp, r.rbp, r.r8, r.r9, r.r10, r.r11,
            r.r12, r.r13, r.r14, r.r15, r.rip,
        ]
    };
    assert_eq!(gprs(&r), gprs(c));
    assert_eq!(r.rflags, c.rflags & 0xffff_ffff);
    assert_eq!((r.cs_sel, r.ss_sel), (c.cs_sel, c.ss_sel));
    assert_eq!(r.cr3, h.dtb);
    assert!(r.has_paging_state());
    assert_eq!(r.paging_mode(), PagingMode::Level4);
    assert_eq!(r.efer & xenvmi::regs::EFER_LMA, xenvmi::regs::EFER_LMA);
    assert_eq!(r.cpl(), 0);
}

/// Kernel addresses the ground truth gives physical addresses for, plus direct-map pages.
fn kernel_addresses() -> Vec<(u64, Option<u64>)> {
    let gt = ground_truth("linux-6.1");
    let mut v = Vec::new();
    for (_, s) in gt["symbols"].as_object().unwrap() {
        if s["pa"].is_string() {
            v.push((
                support::fixture::hex(&s["addr"]),
                Some(support::fixture::hex(&s["pa"])),
            ));
        }
    }
    let pob = support::fixture::hex(&gt["kaslr"]["page_offset_base"]);
    for pa in [0x1000u64, 0x10_0000, 0x200_0000, 0xae0_0000] {
        v.push((pob + pa, Some(pa)));
    }
    assert!(v.len() >= 6, "{v:?}");
    v
}

#[test]
fn windows_crash_dumps_of_real_memory() {
    let elf = elf();
    let ctx = kernel_vcpu(&elf);
    let mut h = Header::example(ctx.cr3, ctx);
    let dir = std::env::temp_dir().join(format!("xenvmi-windump-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let full_path = dir.join("full.dmp");
    let bmp_path = dir.join("bitmap.dmp");
    let elf_bytes: u64 = elf.regions().iter().map(|r| r.len).sum();
    h.required_dump_space = 0x2000 + elf_bytes;
    write_full_dump(&elf, &h, &full_path);
    let stored = write_bitmap_dump(&elf, &h, &bmp_path);

    let full = Snapshot::open(&full_path).unwrap();
    let bmp = Snapshot::open(&bmp_path).unwrap();
    check_header_and_vcpu(&full, &h, WindowsDumpKind::Full, 1);
    check_header_and_vcpu(&bmp, &h, WindowsDumpKind::BitmapFull, 5);
    assert_eq!(full.regions().len(), elf.regions().len());
    // Zero pages left out: the bitmap dump has many regions (binary-search lookups).
    assert!(bmp.regions().len() > 100, "{}", bmp.regions().len());
    let bmp_pages: u64 = bmp.regions().iter().map(|r| r.len / 4096).sum();
    assert_eq!(bmp_pages, stored);
    eprintln!(
        "full dump: {} regions; bitmap dump: {} regions, {stored} of {} pages",
        full.regions().len(),
        bmp.regions().len(),
        elf_bytes / 4096
    );

    // Every page of the ELF core: in the full dump byte-identical (whole page); in the bitmap
    // dump identical when non-zero, unbacked when zero. First and last 8 bytes also through
    // the u64 fast path.
    let mut buf = vec![0u8; 4096];
    let (mut compared, mut holes) = (0u64, 0u64);
    for r in elf.regions() {
        let data = &region_bytes(&elf, r);
        for (i, want) in data.chunks(4096).enumerate() {
            let gpa = r.gpa + i as u64 * 4096;
            full.read_physical(Gpa(gpa), &mut buf).unwrap();
            assert!(buf == want, "full dump differs in page {gpa:#x}");
            let first = u64::from_le_bytes(want[..8].try_into().unwrap());
            let last = u64::from_le_bytes(want[4088..].try_into().unwrap());
            assert_eq!(full.read_physical_u64(Gpa(gpa)).unwrap(), first);
            assert_eq!(full.read_physical_u64(Gpa(gpa + 4088)).unwrap(), last);
            if want.iter().any(|&b| b != 0) {
                bmp.read_physical(Gpa(gpa), &mut buf).unwrap();
                assert!(buf == want, "bitmap dump differs in page {gpa:#x}");
                assert_eq!(bmp.read_physical_u64(Gpa(gpa)).unwrap(), first);
                assert_eq!(bmp.read_physical_u64(Gpa(gpa + 4088)).unwrap(), last);
                compared += 1;
            } else {
                let e = bmp.read_physical(Gpa(gpa), &mut buf).unwrap_err();
                assert!(e.is_not_mapped(), "{e}");
                holes += 1;
            }
        }
    }
    assert_eq!(compared, stored);
    assert!(holes > 0);
    // Reads spanning several pages and regions of the full dump (the BIOS copy at the top).
    let top = elf.regions().last().unwrap();
    let mut big = vec![0u8; top.len as usize];
    full.read_physical(Gpa(top.gpa), &mut big).unwrap();
    assert!(big == region_bytes(&elf, top));

    // Page tables: translate kernel addresses through the dump's own vCPU 0 (CR3 =
    // DirectoryTableBase, synthetic 4-level paging state) and compare with the ELF core
    // walked with the fixture's own CR3 and with the guest's own report.
    let elf_mem = GuestMemory::new(elf);
    let elf_space = AddressSpace::from_cr3(ctx.cr3, PagingMode::Level4);
    for dump in [full, bmp] {
        let regs = dump.registers(VcpuId(0)).unwrap();
        let space = AddressSpace::from_cr3(regs.cr3, regs.paging_mode());
        let mem = GuestMemory::new(dump);
        for &(va, pa) in &kernel_addresses() {
            let want = elf_mem.translate(elf_space, Gva(va)).unwrap();
            let got = mem.translate(space, Gva(va)).unwrap();
            assert_eq!(got, want, "{va:#x}");
            if let (Walk::Mapped(m), Some(pa)) = (&got, pa) {
                assert_eq!(m.gpa.0, pa, "{va:#x}");
            } else {
                panic!("{va:#x} not mapped: {got:?}");
            }
            let mut a = [0u8; 256];
            let mut b = [0u8; 256];
            elf_mem.read(elf_space, Gva(va), &mut a).unwrap();
            match mem.read(space, Gva(va), &mut b) {
                Ok(()) => assert_eq!(a, b, "{va:#x}"),
                // Only the bitmap dump has holes, and only where the ELF page is all zero.
                Err(e) => {
                    assert!(e.is_not_mapped(), "{va:#x}: {e}");
                    let page = pa.unwrap() & !0xfff;
                    let mut z = vec![0u8; 4096];
                    elf_mem.read_physical(Gpa(page), &mut z).unwrap();
                    assert!(z.iter().all(|&x| x == 0), "{va:#x}: {e}");
                    assert_eq!(mem.backend().windows_dump_info().unwrap().dump_type, 5);
                }
            }
        }
        // And the Linux walk from the dump's registers finds the same kernel and processes.
        let gt = ground_truth("linux-6.1");
        let regs = mem.backend().all_registers().to_vec();
        let linux = Linux::discover(&mem, &regs, ProfileSource::InGuest).unwrap();
        assert_eq!(linux.info().release, gt["kernel_release"].as_str().unwrap());
        let n = linux.processes(&mem).filter(|p| p.is_ok()).count();
        assert_eq!(n as u64, gt["process_count"].as_u64().unwrap());
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A small valid full dump (3 runs, 5 pages) and bitmap dump (5 pages) of patterned pages.
fn small_dumps() -> (Vec<u8>, Vec<u8>) {
    let page = |n: u8| vec![n; 4096];
    let (p1, p2, p3, p4, p5) = (page(1), page(2), page(3), page(4), page(5));
    let h = Header::example(0x1ad000, Registers::default());
    let two = [p1.clone(), p2.clone()].concat();
    let full = dmp::full_dump(
        &h,
        &[
            (0x1000, &two),
            (0x9000, &p3),
            (0x10_0000, &[p4.clone(), p5.clone()].concat()),
        ],
    );
    let bmp = dmp::bitmap_dump(
        &h,
        6,
        b"SDMP",
        0x120,
        &[(1, &p1), (2, &p2), (9, &p3), (0x100, &p4), (0x11f, &p5)],
    );
    (full, bmp)
}

fn malformed(bytes: Vec<u8>, needle: &str) {
    match Snapshot::from_bytes(bytes, None) {
        Err(e @ xenvmi::Error::Malformed { .. }) => {
            let s = e.to_string();
            assert!(s.contains("Windows crash dump"), "{s}");
            assert!(s.contains(needle), "expected `{needle}` in: {s}");
        }
        Err(e) => panic!("expected Malformed with `{needle}`, got {e}"),
        Ok(s) => panic!("expected an error with `{needle}`, got {s:?}"),
    }
}

#[test]
fn windows_crash_dump_small_layouts_read_back() {
    let (full, bmp) = small_dumps();
    let full = Snapshot::from_bytes(full, None).unwrap();
    let bmp = Snapshot::from_bytes(bmp, None).unwrap();
    for (s, pages) in [
        (&full, [0x1000u64, 0x2000, 0x9000, 0x10_0000, 0x10_1000]),
        (&bmp, [0x1000, 0x2000, 0x9000, 0x10_0000, 0x11_f000]),
    ] {
        for (i, gpa) in pages.into_iter().enumerate() {
            let want = (i as u64 + 1) * 0x0101_0101_0101_0101;
            assert_eq!(s.read_physical_u64(Gpa(gpa)).unwrap(), want);
            assert_eq!(s.read_physical_u64(Gpa(gpa + 4088)).unwrap(), want);
        }
        assert!(s.read_physical_u64(Gpa(0)).is_err());
        assert!(s.read_physical_u64(Gpa(0x3000)).is_err());
    }
    assert_eq!(
        bmp.windows_dump_info().unwrap().kind,
        WindowsDumpKind::BitmapKernel
    );
    assert_eq!(bmp.windows_dump_info().unwrap().dump_type, 6);
    // Detection; other formats have no Windows header.
    assert_eq!(
        xenvmi::backend::snapshot::detect_format(b"PAGEDU64"),
        Format::WindowsCrashDump
    );
    let raw = Snapshot::from_bytes(vec![1u8; 4096], None).unwrap();
    assert_eq!(raw.format(), Format::Raw);
    assert!(raw.windows_dump_info().is_none());
}

#[test]
fn windows_crash_dump_corruptions_are_errors() {
    let (full, bmp) = small_dumps();
    let h = Header::example(0x1ad000, Registers::default());

    // Truncated header, and a 32-bit dump.
    malformed(full[..0x1800].to_vec(), "truncated");
    let mut d32 = full.clone();
    d32[4..8].copy_from_slice(b"DUMP");
    malformed(d32, "32-bit");
    // Truncated page data (one byte short of the last page).
    malformed(full[..full.len() - 1].to_vec(), "truncated");
    // Runs overlapping: the second run starts inside the first.
    let mut hdr = dmp::full_header(&h, &[(1, 2), (2, 1)]);
    hdr.extend(vec![7u8; 3 * 4096]);
    malformed(hdr, "overlap");
    // Run count over the cap (43 runs fit between 0x98 and the CONTEXT at 0x348).
    let mut over = full.clone();
    dmp::put32(&mut over, dmp::NUMBER_OF_RUNS, 44);
    malformed(over, "NumberOfRuns 44");
    // A header never filled in: NumberOfRuns still reads "PAGE".
    let mut unset = full.clone();
    over_write(&mut unset, dmp::NUMBER_OF_RUNS, b"PAGE");
    malformed(unset, "NumberOfRuns 1162297680");
    // Page counts overflowing the total, and a run past the 64-bit address space.
    let mut ovf = full.clone();
    dmp::put64(&mut ovf, dmp::RUNS + 8, u64::MAX);
    malformed(ovf, "truncated");
    let mut ovf = full.clone();
    dmp::put64(&mut ovf, dmp::RUNS + 16 + 8, u64::MAX);
    malformed(ovf, "overflow");
    let mut far = full.clone();
    dmp::put64(&mut far, dmp::RUNS, u64::MAX >> 12);
    malformed(far, "beyond the 64-bit address space");
    // Bitmap claiming more pages than the file holds: more set bits than stored pages...
    let mut more = bmp.clone();
    more[dmp::BMP_BITMAP] |= 0x01; // frame 0 too
    malformed(more, "marks more than");
    // ...and a bitmap longer than the file.
    let mut long = bmp.clone();
    dmp::put64(&mut long, dmp::BMP_PAGES, 1 << 40);
    malformed(long, "bitmap of");
    // FirstPage pointing into the bitmap, and a bitmap header that is not one.
    let mut fp = bmp.clone();
    dmp::put64(&mut fp, dmp::BMP_FIRST_PAGE, dmp::BMP_BITMAP as u64);
    malformed(fp, "FirstPage");
    let mut sig = bmp.clone();
    sig[0x2000..0x2004].copy_from_slice(b"PAGE");
    malformed(sig, "neither SDMP nor FDMP");
    malformed(bmp[..0x2010].to_vec(), "truncated");
    // Wrong machine type, unknown and unsupported DumpTypes.
    let mut m = full.clone();
    dmp::put32(&mut m, dmp::MACHINE, 0xaa64);
    malformed(m, "MachineImageType 0xaa64");
    // Types that are not read are "unsupported", with the exact wording, never "malformed";
    // names from Microsoft's DUMP_TYPES. A summary (2) or automatic (7) dump is read only in
    // the bitmap layout: this one has pages, not an SDMP/FDMP header, at 0x2000.
    for (t, name) in [
        (0u32, "unknown"),
        (2, "summary"),
        (3, "header only"),
        (4, "triage"),
        (7, "automatic"),
        (8, "kernel memory, RDMP layout"),
        (0x77, "not a known type"),
    ] {
        let mut d = full.clone();
        dmp::put32(&mut d, dmp::DUMP_TYPE, t);
        match Snapshot::from_bytes(d, None) {
            Err(e @ xenvmi::Error::UnsupportedImage { .. }) => {
                let s = e.to_string();
                let want =
                    format!("Windows crash dump <memory>: unsupported DumpType {t} ({name}): ");
                assert!(s.starts_with(&want), "expected `{want}` in: {s}");
            }
            Err(e) => panic!("DumpType {t}: expected UnsupportedImage, got {e}"),
            Ok(s) => panic!("DumpType {t}: expected an error, got {s:?}"),
        }
    }
    // A bitmap dump relabelled as automatic (7) or summary (2) is read like the bitmap one.
    for t in [2u32, 7] {
        let mut d = bmp.clone();
        dmp::put32(&mut d, dmp::DUMP_TYPE, t);
        let snap = Snapshot::from_bytes(d, None).unwrap();
        assert_eq!(snap.windows_dump_info().unwrap().dump_type, t);
        assert_eq!(
            snap.regions().len(),
            Snapshot::from_bytes(bmp.clone(), None)
                .unwrap()
                .regions()
                .len()
        );
    }
    // Every truncation of a valid dump is an error, never a panic.
    for img in [&full, &bmp] {
        for len in (0..img.len()).step_by(509) {
            assert!(
                Snapshot::from_bytes(img[..len].to_vec(), Some(Format::WindowsCrashDump)).is_err()
            );
        }
    }
    // Forcing the format on something else.
    let e = Snapshot::from_bytes(vec![0u8; 0x3000], Some(Format::WindowsCrashDump)).unwrap_err();
    assert!(e.to_string().contains("signature"), "{e}");
}

fn over_write(b: &mut [u8], off: usize, v: &[u8]) {
    b[off..off + v.len()].copy_from_slice(v);
}

/// The bytes of one region of `s` (a file-backed snapshot lends none: it reads them).
fn region_bytes(s: &Snapshot, r: &xenvmi::backend::snapshot::Region) -> Vec<u8> {
    support::linux::region_bytes(s, r)
}

/// Discovery with no registers searches physical memory, as it does for a raw image or a
/// LiME capture, and reports how far it has come: the banner search first, over all of the
/// backed memory; in each stage the reports rise and the last one is at the stage's total.
/// With registers that place the kernel, there is no search and no report.
#[test]
fn discovery_reports_its_search_of_memory() {
    use xenvmi::os::linux::{STAGE_BANNER, STAGE_KALLSYMS, STAGE_PLACEMENT};
    use xenvmi::progress::Progress;
    let gt = ground_truth("linux-6.1");
    let elf = elf();
    let regs = elf.all_registers().to_vec();
    let backed: u64 = elf.physical_ranges().iter().map(|r| r.end - r.start).sum();
    let mem = GuestMemory::new(elf);
    let mut seen: Vec<Progress> = Vec::new();
    let linux =
        Linux::discover_observed(&mem, &[], ProfileSource::InGuest, &mut |p| seen.push(p)).unwrap();
    assert_eq!(
        linux.info().text_pa.0,
        support::fixture::hex(&gt["kaslr"]["text_pa"])
    );
    assert!(!seen.is_empty());
    assert_eq!(seen[0].stage, STAGE_BANNER);
    assert_eq!((seen[0].done, seen[0].total), (0, backed));
    // Consecutive reports of one stage form a run; each run starts at 0, rises, ends at its
    // total.
    let mut runs: Vec<&[Progress]> = Vec::new();
    let mut rest = &seen[..];
    while let Some(first) = rest.first() {
        let n = rest.iter().take_while(|p| p.stage == first.stage).count();
        runs.push(&rest[..n]);
        rest = &rest[n..];
    }
    for run in &runs {
        let stage = run[0].stage;
        assert!(
            [STAGE_BANNER, STAGE_KALLSYMS, STAGE_PLACEMENT].contains(&stage),
            "{stage}"
        );
        assert_eq!(run[0].done, 0, "{stage}");
        assert!(run
            .iter()
            .all(|p| p.total == run[0].total && p.written.is_none()));
        assert!(
            run.windows(2).all(|w| w[0].done < w[1].done),
            "{stage}: {run:?}"
        );
        let last = run.last().unwrap();
        assert_eq!(last.done, last.total, "{stage}");
    }
    let stages: Vec<&str> = runs.iter().map(|r| r[0].stage).collect();
    assert_eq!(stages, [STAGE_BANNER, STAGE_KALLSYMS, STAGE_PLACEMENT]);

    let mut called = false;
    Linux::discover_observed(&mem, &regs, ProfileSource::InGuest, &mut |_| called = true).unwrap();
    assert!(!called, "the registers place the kernel: no search");
}
