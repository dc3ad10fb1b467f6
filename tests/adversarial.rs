//! Hostile guests: crafted images and profiles that try to crash, hang or exhaust xenvmi.
//!
//! Each case must end with an error or a partial result, without panicking. Every case runs
//! under a watchdog (a hang detector, not a speed assertion: speed is measured, not asserted);
//! `cargo test --test adversarial -- --nocapture` prints each case's time, and
//! `docs/security.md` records them (each well under 100 ms).

mod support;

use std::sync::Arc;

use support::guest::*;
use support::hostile::run;
use xenvmi::backend::snapshot::{Format, Snapshot};
use xenvmi::mem::{AddressSpace, GuestMemory, PagingMode};
use xenvmi::os::linux::{Linux, ProfileSource};
use xenvmi::os::profile::btf::Btf;
use xenvmi::os::profile::isf::Isf;
use xenvmi::os::profile::{kallsyms, SymbolTable, TypeSource};
use xenvmi::{Error, Gpa, Gva};

/// What a walk produced: Ok items, and the error items.
#[derive(Debug, Default)]
struct Outcome {
    tasks: usize,
    modules: usize,
    errors: Vec<String>,
}

fn walk(g: Guest) -> Result<Outcome, Error> {
    let regs = g.registers();
    let mem = GuestMemory::new(g.snapshot());
    let linux = Linux::discover(&mem, &regs, ProfileSource::Loaded(profile()))?;
    let mut o = Outcome::default();
    for t in linux.processes(&mem) {
        match t {
            Ok(_) => o.tasks += 1,
            Err(e) => o.errors.push(e.to_string()),
        }
    }
    for m in linux.modules(&mem) {
        match m {
            Ok(_) => o.modules += 1,
            Err(e) => o.errors.push(e.to_string()),
        }
    }
    Ok(o)
}

fn expect_walk_error(o: &Outcome, needle: &str) {
    assert!(
        o.errors.iter().any(|e| e.contains(needle)),
        "expected an error with `{needle}`, got {o:?}"
    );
}

#[test]
fn baseline_synthetic_guest_is_read_exactly() {
    let o = run("baseline", || walk(Guest::new(5, 3))).unwrap();
    assert_eq!((o.tasks, o.modules, o.errors.len()), (5, 3, 0), "{o:?}");
}

#[test]
fn cyclic_task_list_not_through_head() {
    let mut g = Guest::new(5, 0);
    // task4.next -> task2: a loop that never returns to init_task.
    g.link(
        kva(TASKS + 4 * 0x100 + T_TASKS),
        kva(TASKS + 2 * 0x100 + T_TASKS),
    );
    let o = run("cyclic task list", || walk(g)).unwrap();
    assert_eq!(o.tasks, 5);
    expect_walk_error(&o, "loops");
}

#[test]
fn self_referencing_task() {
    let mut g = Guest::new(3, 0);
    let t = kva(TASKS + T_TASKS);
    g.link(t, t);
    let o = run("self-referencing task", || walk(g)).unwrap();
    assert_eq!(o.tasks, 1);
    expect_walk_error(&o, "loops");
}

#[test]
fn null_task_link() {
    let mut g = Guest::new(3, 0);
    g.link(kva(TASKS + 0x100 + T_TASKS), 0);
    let o = run("NULL task link", || walk(g)).unwrap();
    assert_eq!(o.tasks, 2);
    expect_walk_error(&o, "NULL");
}

#[test]
fn task_link_outside_memory_and_noncanonical() {
    let mut g = Guest::new(3, 0);
    g.link(kva(TASKS + T_TASKS), 0xffff_ffff_9000_0000);
    let o = run("task link to unmapped memory", || walk(g)).unwrap();
    expect_walk_error(&o, "not mapped");
    let mut g = Guest::new(3, 0);
    g.link(kva(TASKS + T_TASKS), 0x0000_8000_0000_0000);
    let o = run("non-canonical task link", || walk(g)).unwrap();
    expect_walk_error(&o, "canonical");
}

#[test]
fn task_fields_in_unmapped_memory_give_per_item_errors() {
    let mut g = Guest::new(3, 0);
    // task1's mm points to unmapped memory: that task errs, the walk goes on.
    g.set_va_u64(kva(TASKS + 0x100 + T_MM), 0xffff_ffff_a000_0000);
    let o = run("task with unmapped mm", || walk(g)).unwrap();
    assert_eq!(o.tasks, 2);
    assert_eq!(o.errors.len(), 1, "{o:?}");
}

#[test]
fn cyclic_and_broken_module_lists() {
    let mut g = Guest::new(1, 4);
    g.link(kva(MODS + 3 * 0x100 + M_LIST), kva(MODS + 0x100 + M_LIST));
    let o = run("cyclic module list", || walk(g)).unwrap();
    assert_eq!(o.modules, 4);
    expect_walk_error(&o, "loops");
    let mut g = Guest::new(1, 4);
    g.link(kva(MODS + M_LIST), 0xdead_beef);
    let o = run("module link to garbage", || walk(g)).unwrap();
    assert_eq!(o.modules, 1);
    assert!(!o.errors.is_empty());
}

#[test]
fn strings_without_terminators() {
    let mut g = Guest::new(2, 2);
    g.write_va(kva(TASKS + T_COMM), &[b'A'; 16]);
    g.write_va(kva(MODS + M_NAME), &[b'B'; 56]);
    // Banner without a NUL running to the end of the image mapping.
    let banner_end = kva(BANNER + 14);
    g.write_va(banner_end, &[b'x'; 0x8000]);
    let o = run("unterminated comm, module name, banner", move || {
        let regs = g.registers();
        let mem = GuestMemory::new(g.snapshot());
        let linux = Linux::discover(&mem, &regs, ProfileSource::Loaded(profile()))?;
        let tasks: Vec<String> = linux
            .processes(&mem)
            .map(|t| t.map(|t| t.name))
            .collect::<Result<_, _>>()?;
        let mods: Vec<String> = linux
            .modules(&mem)
            .map(|m| m.map(|m| m.name))
            .collect::<Result<_, _>>()?;
        Ok::<_, Error>((tasks, mods, linux.info().banner.clone()))
    })
    .unwrap();
    assert_eq!((o.0.len(), o.1.len()), (2, 2));
    // Each string stops at its field or cap: comm is 16 bytes (TASK_COMM_LEN), a module name
    // the profile's 56, the banner MAX_BANNER.
    assert!(o.0.contains(&"A".repeat(16)), "{:?}", o.0);
    assert!(o.1.contains(&"B".repeat(56)), "{:?}", o.1);
    assert_eq!(o.2.len(), xenvmi::os::linux::MAX_BANNER);
    assert!(o.2.starts_with("Linux version xxx"), "{}", &o.2[..20]);
}

#[test]
fn page_tables_pointing_to_themselves() {
    let mut g = Guest::new(2, 1);
    // PML4[0] -> PML4 (recursive), PDPT[0] -> PML4, PD[0] -> PDPT: walks of low addresses loop
    // through the same pages; every walk still ends after its levels.
    g.set_u64(TEXT_PA + PML4, (TEXT_PA + PML4) | 7);
    g.set_u64(TEXT_PA + PDPT, (TEXT_PA + PML4) | 7);
    g.set_u64(TEXT_PA + PD, (TEXT_PA + PDPT) | 7);
    let o = run("self-referencing page tables", || {
        let regs = g.registers();
        let mem = GuestMemory::new(g.snapshot());
        let space = AddressSpace::from_cr3(regs[0].cr3, PagingMode::Level4);
        let mut n = 0;
        for va in (0..64u64).map(|i| i << 21) {
            n += mem.translate(space, Gva(va)).is_ok() as usize;
        }
        let mut leaves = 0;
        xenvmi::mem::mapped_ranges(
            mem.backend(),
            space.root,
            space.mode,
            Gva(0),
            Gva(u64::MAX),
            1 << 20,
            &mut |_| {
                leaves += 1;
                true
            },
        );
        (n, mem.translate_mapped(space, Gva(0)).ok(), leaves)
    });
    // From the construction: va 0 goes PML4[0] -> PML4 (as PDPT) [0] -> PML4 (as PD) [0] ->
    // PML4 (as PT) [0] -> the PML4 page itself: four levels, then a leaf, never a fifth.
    assert!(o.0 >= 1);
    assert_eq!(o.1, Some(Gpa(TEXT_PA + PML4)));
    // The enumeration ended because the levels ran out, not at its leaf limit.
    assert!(o.2 < 1 << 20, "{} leaves", o.2);
}

#[test]
fn page_tables_fanning_out_to_one_table_everywhere() {
    // Every entry of every level present and pointing at the same table: 512^4 "mappings".
    let mut g = Guest::new(1, 0);
    for i in 0..512 {
        g.set_u64(TEXT_PA + PML4 + i * 8, (TEXT_PA + PDPT) | 7);
        g.set_u64(TEXT_PA + PDPT + i * 8, (TEXT_PA + PD) | 7);
        g.set_u64(TEXT_PA + PD + i * 8, (TEXT_PA + PD) | 7);
    }
    let r = run("fan-out page tables (512^4 entries)", || {
        let regs = g.registers();
        let mem = GuestMemory::new(g.snapshot());
        let mut leaves = 0usize;
        let space = AddressSpace::from_cr3(regs[0].cr3, PagingMode::Level4);
        xenvmi::mem::mapped_ranges(
            mem.backend(),
            space.root,
            space.mode,
            Gva(0),
            Gva(u64::MAX),
            usize::MAX,
            &mut |_| {
                leaves += 1;
                true
            },
        );
        let d = Linux::discover(&mem, &regs, ProfileSource::Loaded(profile()));
        (leaves, d.is_err())
    });
    assert!(r.0 <= xenvmi::mem::paging::MAX_ENTRY_READS);
}

#[test]
fn page_tables_past_the_end_of_memory() {
    let mut g = Guest::new(2, 0);
    g.set_u64(TEXT_PA + PDPT + 510 * 8, 0x7_0000_0000 | 3); // PD far beyond the 8 MiB image
    let r = run("page tables past end of memory", || walk(g));
    assert!(matches!(r, Err(Error::OsNotFound { .. })), "{r:?}");
}

#[test]
fn truncated_image() {
    let g = Guest::new(3, 1);
    let regs = g.registers();
    let mut bytes = g.mem;
    bytes.truncate((TEXT_PA + PD + 8) as usize); // cut inside the page directory
    let r = run("truncated image", move || {
        let mem = GuestMemory::new(Snapshot::from_bytes(bytes, Some(Format::Raw)).unwrap());
        Linux::discover(&mem, &regs, ProfileSource::Loaded(profile())).map(|_| ())
    });
    assert!(r.is_err());
}

#[test]
fn zero_and_random_images_are_not_linux() {
    let r = run("all-zero image, no registers", || {
        let mem = GuestMemory::new(Snapshot::from_bytes(vec![0; 8 << 20], None).unwrap());
        Linux::discover(&mem, &[], ProfileSource::InGuest).map(|_| ())
    });
    assert!(matches!(r, Err(Error::OsNotFound { .. })), "{r:?}");
    let r = run("random image, no registers", || {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let img: Vec<u8> = (0..(8 << 20))
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let mem = GuestMemory::new(Snapshot::from_bytes(img, None).unwrap());
        Linux::discover(&mem, &[], ProfileSource::InGuest).map(|_| ())
    });
    assert!(r.is_err());
}

#[test]
fn banner_decoys_everywhere() {
    // Twice as many "Linux version " strings as the search examines, and no kernel: the
    // search stops at its cap, and says so.
    let decoys = 2 * xenvmi::os::linux::MAX_BANNER_HITS;
    let r = run("8192 banner decoys", move || {
        let mut img = vec![0u8; decoys * 2048];
        for i in 0..decoys {
            img[i * 2048..i * 2048 + 14].copy_from_slice(b"Linux version ");
        }
        let mem = GuestMemory::new(Snapshot::from_bytes(img, None).unwrap());
        Linux::discover(&mem, &[], ProfileSource::Loaded(profile())).map(|_| ())
    });
    let e = r.expect_err("no kernel");
    let want = format!(
        "none of the {0} `Linux version` strings examined in physical memory (at most {0})",
        xenvmi::os::linux::MAX_BANNER_HITS
    );
    assert!(e.to_string().contains(&want), "{e}");
}

#[test]
fn kallsyms_look_alikes() {
    // Valid token tables + indexes repeated over 4 MiB, with no markers or names behind them.
    let r = run("kallsyms token-table look-alikes", || {
        let mut unit = Vec::new();
        let mut idx = Vec::new();
        for i in 0..256u32 {
            idx.push(unit.len() as u16);
            unit.push(if (0x21..0x7f).contains(&i) {
                i as u8
            } else {
                b'#'
            });
            unit.push(0);
        }
        for i in idx {
            unit.extend_from_slice(&i.to_le_bytes());
        }
        let mut img = Vec::new();
        while img.len() < 4 << 20 {
            img.extend_from_slice(&unit);
        }
        kallsyms::find_in_image(&img).map(|_| ())
    });
    // It ends because its verification budget ran out, not because a look-alike was taken
    // for the tables or the image ended first.
    let e = r.expect_err("no tables");
    let want = format!(
        "gave up after {} verification steps",
        kallsyms::MAX_SEARCH_WORK
    );
    assert!(e.to_string().contains(&want), "{e}");
}

fn btf_blob(types: &[u32], strings: &[u8]) -> Vec<u8> {
    let t: Vec<u8> = types.iter().flat_map(|x| x.to_le_bytes()).collect();
    let mut b = vec![0x9f, 0xeb, 1, 0];
    for v in [
        24u32,
        0,
        t.len() as u32,
        t.len() as u32,
        strings.len() as u32,
    ] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    b.extend_from_slice(&t);
    b.extend_from_slice(strings);
    b
}

#[test]
fn btf_with_type_loops_and_self_containing_structs() {
    let strings = b"\0task_struct\0pid\0loop\0";
    // 1: typedef loop -> 2 -> 1; 3: struct task_struct { anon: 4 } ; 4: union { anon: 3, anon: 4 }
    let types = [
        13,
        8 << 24,
        2, // typedef "loop" -> 2
        13,
        8 << 24,
        1, // typedef "loop" -> 1
        1,
        (4 << 24) | 1,
        8,
        0,
        4,
        0, // struct task_struct { <anon> 4 @0 }
        0,
        (5 << 24) | 2,
        8,
        0,
        3,
        0,
        0,
        4,
        0, // union { <anon> 3, <anon> 4 }
    ];
    let r = run(
        "BTF type loops + self-containing anonymous members",
        move || {
            let b = Btf::parse(btf_blob(&types, strings), "crafted").unwrap();
            (
                b.resolve(1),
                b.field("task_struct", "pid"),
                b.field("task_struct", "a.b.c"),
            )
        },
    );
    // Typedef 1 -> 2 -> 1: resolution stops after its hop limit on one of the loop's own ids,
    // never on a type outside it.
    assert!(r.0 == 1 || r.0 == 2, "{}", r.0);
    assert_eq!(r.1, None);
    assert_eq!(r.2, None);
}

#[test]
fn btf_with_lying_lengths() {
    let r = run("BTF huge vlen / sections past the end", || {
        let a = Btf::parse(btf_blob(&[1, (4 << 24) | 0xffff, 8], b"\0x\0"), "vlen").is_err();
        let mut b = btf_blob(&[], b"\0");
        b[20..24].copy_from_slice(&u32::MAX.to_le_bytes()); // str_len
        let b = Btf::parse(b, "strings").is_err();
        let mut c = btf_blob(&[], b"\0");
        c[4..8].copy_from_slice(&u32::MAX.to_le_bytes()); // hdr_len
        let c = Btf::parse(c, "header").is_err();
        (a, b, c)
    });
    assert_eq!(r, (true, true, true));
}

#[test]
fn isf_truncated_and_self_referencing() {
    let json = r#"{"base_types":{},"symbols":{"_text":{"address":1}},"user_types":{
        "task_struct":{"kind":"struct","size":8,"fields":{"unnamed_field_0":{"offset":0,"type":{"kind":"struct","name":"task_struct"}},
        "unnamed_field_1":{"offset":8,"type":{"kind":"struct","name":"task_struct"}}}}}}"#;
    let r = run(
        "ISF self-referencing anonymous members + truncation",
        move || {
            let isf = Isf::from_bytes(json.as_bytes(), "crafted").unwrap();
            let lookup = isf.field("task_struct", "pid");
            let truncated = (1..json.len())
                .step_by(13)
                .all(|n| Isf::from_bytes(&json.as_bytes()[..n], "t").is_err());
            (lookup, truncated)
        },
    );
    assert_eq!(r, (None, true));
}

#[test]
fn symbol_files_with_garbage() {
    let r = run("symbol file of garbage lines", || {
        let mut s = String::new();
        for i in 0..100_000 {
            s.push_str(&format!("{i:x} {i} {}\n", "y".repeat(i % 300)));
        }
        SymbolTable::parse_text(&s, "garbage").map(|t| t.len())
    });
    // Only the nine lines whose type column is one character (i = 1..=9) are symbols.
    assert_eq!(r.unwrap(), 9);
}

#[test]
fn elf_and_lime_headers_that_lie() {
    let r = run("ELF/LiME headers that lie", || {
        let mut out = Vec::new();
        // ELF: 65535 program headers (PN_XNUM) with no section header.
        let mut e = vec![0u8; 64];
        e[..4].copy_from_slice(b"\x7fELF");
        e[4] = 2;
        e[5] = 1;
        e[16] = 4;
        e[18] = 62;
        e[32] = 64;
        e[54] = 56;
        e[56..58].copy_from_slice(&0xffffu16.to_le_bytes());
        out.push(Snapshot::from_bytes(e.clone(), None).is_err());
        // ELF: a note segment whose note claims a 4 GiB descriptor.
        let mut e2 = e.clone();
        e2[56..58].copy_from_slice(&1u16.to_le_bytes());
        let mut ph = vec![0u8; 56];
        ph[0] = 4;
        ph[8..16].copy_from_slice(&120u64.to_le_bytes());
        ph[32..40].copy_from_slice(&24u64.to_le_bytes());
        e2.extend_from_slice(&ph);
        e2.extend_from_slice(&[
            5, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 1, 0, 0, 0, b'C', b'O', b'R', b'E', 0, 0, 0, 0, 0,
            0, 0, 0,
        ]);
        out.push(Snapshot::from_bytes(e2, None).is_err());
        // ELF: two overlapping PT_LOADs.
        let mut e3 = e.clone();
        e3[56..58].copy_from_slice(&2u16.to_le_bytes());
        for _ in 0..2 {
            let mut ph = vec![0u8; 56];
            ph[0] = 1;
            ph[8..16].copy_from_slice(&176u64.to_le_bytes());
            ph[32..40].copy_from_slice(&16u64.to_le_bytes());
            e3.extend_from_slice(&ph);
        }
        e3.extend_from_slice(&[0; 16]);
        out.push(Snapshot::from_bytes(e3, None).is_err());
        // LiME: end below start, and a range claiming all of memory.
        let mut l = Vec::new();
        l.extend_from_slice(&0x4C69_4D45u32.to_le_bytes());
        l.extend_from_slice(&1u32.to_le_bytes());
        l.extend_from_slice(&0x2000u64.to_le_bytes());
        l.extend_from_slice(&0x1000u64.to_le_bytes());
        l.extend_from_slice(&[0; 8]);
        out.push(Snapshot::from_bytes(l.clone(), None).is_err());
        l[8..16].copy_from_slice(&0u64.to_le_bytes());
        l[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
        out.push(Snapshot::from_bytes(l, None).is_err());
        out
    });
    assert!(r.iter().all(|&x| x), "{r:?}");
}

#[test]
fn reads_with_guest_sized_lengths_are_capped() {
    let g = Guest::new(1, 0);
    let r = run(
        "guest-sized reads (4 GiB length, 1 GiB string)",
        move || {
            let regs = g.registers();
            let mem = GuestMemory::new(g.snapshot());
            let space = AddressSpace::from_cr3(regs[0].cr3, PagingMode::Level4);
            let big = mem.read_bytes(space, Gva(TEXT_VA), 4 << 30).is_err();
            let s = mem
                .read_cstring(space, Gva(TEXT_VA + PML4), 1 << 30)
                .map(|s| s.len());
            let phys = mem
                .read_physical(Gpa(u64::MAX - 4), &mut [0u8; 16])
                .is_err();
            (big, s, phys)
        },
    );
    assert!(r.0 && r.2);
    assert!(r.1.unwrap() <= 2 << 20);
}

// ---------------------------------------------------------------------------------------------
// Windows guests: synthetic images laid out by the real Windows 10 19041 profile
// (tests/support/windows_guest.rs), then corrupted.

use support::windows_guest as wg;
use xenvmi::os::pe::{FileImage, Pe};
use xenvmi::os::profile::Profile;
use xenvmi::os::windows::{Windows, WindowsProfile, MAX_NAME_BYTES};

const WIN10: &str = wg::PROFILES[1].0;

/// What a Windows walk produced.
#[derive(Debug, Default)]
struct WinOutcome {
    processes: usize,
    drivers: usize,
    dlls: usize,
    longest_name: usize,
    errors: Vec<String>,
}

fn win10() -> (wg::WinGuest, xenvmi::os::profile::isf::Isf) {
    let isf = wg::load_isf(WIN10);
    let g = wg::WinGuest::build(&isf, wg::WinSpec::typical(19041));
    (g, isf)
}

fn win_profile() -> Profile {
    Profile::from_isf(wg::isf_dir().join(WIN10)).unwrap()
}

fn win_walk(g: wg::WinGuest, profile: Profile) -> Result<WinOutcome, Error> {
    let regs = g.registers();
    let mem = GuestMemory::new(g.snapshot());
    let w = Windows::discover(&mem, &regs, WindowsProfile::Loaded(profile))?;
    let mut o = WinOutcome::default();
    let mut procs = Vec::new();
    for p in w.processes(&mem) {
        match p {
            Ok(p) => procs.push(p),
            Err(e) => o.errors.push(e.to_string()),
        }
    }
    o.processes = procs.len();
    let note = |m: Result<xenvmi::os::Module, Error>, n: &mut usize, o: &mut WinOutcome| match m {
        Ok(m) => {
            *n += 1;
            o.longest_name = o.longest_name.max(m.name.chars().count());
        }
        Err(e) => o.errors.push(e.to_string()),
    };
    let mut drivers = 0;
    for m in w.modules(&mem) {
        note(m, &mut drivers, &mut o);
    }
    o.drivers = drivers;
    let mut dlls = 0;
    for p in &procs {
        for m in w.process_modules(&mem, p) {
            note(m, &mut dlls, &mut o);
        }
    }
    o.dlls = dlls;
    Ok(o)
}

fn win_expect_error(o: &WinOutcome, needle: &str) {
    assert!(
        o.errors.iter().any(|e| e.contains(needle)),
        "expected an error with `{needle}`, got {o:?}"
    );
}

/// `ActiveProcessLinks` of the i-th process.
fn links(g: &wg::WinGuest, isf: &xenvmi::os::profile::isf::Isf, i: usize) -> u64 {
    g.eprocess[i] + isf.require("_EPROCESS", "ActiveProcessLinks").unwrap()
}

#[test]
fn windows_baseline_synthetic_guest_is_read_exactly() {
    let (g, _) = win10();
    let spec = g.spec.clone();
    let p = win_profile();
    let o = run("windows: healthy guest", move || win_walk(g, p)).unwrap();
    assert!(
        o.errors.len() == 2,
        "only the two kernel processes' DLL walks fail: {o:?}"
    );
    assert_eq!(o.processes, spec.processes.len());
    assert_eq!(o.drivers, spec.drivers.len());
    let dlls: usize = spec
        .processes
        .iter()
        .filter_map(|p| p.dlls.as_ref())
        .map(|d| d.len())
        .sum();
    assert_eq!(o.dlls, dlls);
}

#[test]
fn windows_cyclic_process_list_not_through_head() {
    let (mut g, isf) = win10();
    let (from, to) = (links(&g, &isf, 4), links(&g, &isf, 1));
    g.kwrite_u64(from, to);
    let p = win_profile();
    let o = run("windows: process list loops back to #1", move || {
        win_walk(g, p)
    })
    .unwrap();
    win_expect_error(&o, "loops");
    assert_eq!(o.processes, 5);
}

#[test]
fn windows_self_referencing_and_null_process_links() {
    let (mut g, isf) = win10();
    let l = links(&g, &isf, 2);
    g.kwrite_u64(l, l);
    let p = win_profile();
    let o = run("windows: EPROCESS linking to itself", move || {
        win_walk(g, p)
    })
    .unwrap();
    win_expect_error(&o, "loops");
    let (mut g, isf) = win10();
    let l = links(&g, &isf, 2);
    g.kwrite_u64(l, 0);
    let p = win_profile();
    let o = run("windows: NULL Flink", move || win_walk(g, p)).unwrap();
    win_expect_error(&o, "NULL");
    assert_eq!(o.processes, 3);
}

#[test]
fn windows_huge_and_dangling_unicode_strings() {
    let (mut g, isf) = win10();
    // Every driver name claims 65,535 bytes; the last one's buffer points nowhere.
    let kldr_name = isf
        .require("_KLDR_DATA_TABLE_ENTRY", "BaseDllName")
        .unwrap();
    let links_off = isf
        .require("_KLDR_DATA_TABLE_ENTRY", "InLoadOrderLinks")
        .unwrap();
    let head = g.spec.kernel_base + g.rva["PsLoadedModuleList"];
    let mut node = g.read_u64(g.kernel_pml4, head);
    let mut n = 0;
    while node != head && n < 16 {
        let entry = node - links_off;
        g.kwrite(entry + kldr_name, &0xffffu16.to_le_bytes());
        node = g.read_u64(g.kernel_pml4, node);
        if node == head {
            g.kwrite_u64(entry + kldr_name + 8, 0xffff_f7ff_ffff_0000);
        }
        n += 1;
    }
    let p = win_profile();
    let o = run("windows: UNICODE_STRING lengths 0xffff", move || {
        win_walk(g, p)
    })
    .unwrap();
    assert!(o.longest_name <= MAX_NAME_BYTES / 2, "{o:?}");
    win_expect_error(&o, "not mapped");
    assert_eq!(o.drivers, 4);
}

#[test]
fn windows_user_module_list_cycles_and_missing_peb() {
    let (mut g, isf) = win10();
    // explorer.exe (index 4): its second DLL entry links back to its first.
    let (root, _) = g.roots[4];
    let peb = g.pebs[4].unwrap();
    let ldr = g.read_u64(root, peb + isf.require("_PEB", "Ldr").unwrap());
    let head = ldr
        + isf
            .require("_PEB_LDR_DATA", "InLoadOrderModuleList")
            .unwrap();
    let first = g.read_u64(root, head);
    let second = g.read_u64(root, first);
    g.write_u64(root, second, first);
    // csrss.exe (index 3): its PEB pointer leads nowhere.
    let peb_off = isf.require("_EPROCESS", "Peb").unwrap();
    g.kwrite_u64(g.eprocess[3] + peb_off, 0x7fff_dead_0000);
    let p = win_profile();
    let o = run("windows: DLL list cycle + dangling PEB", move || {
        win_walk(g, p)
    })
    .unwrap();
    win_expect_error(&o, "loops");
    win_expect_error(&o, "not mapped");
    assert_eq!(o.processes, 6);
}

#[test]
fn windows_corrupt_kernel_headers() {
    // NumberOfSections far over the loader's limit: no candidate, a clear error.
    let (mut g, _) = win10();
    let base = g.spec.kernel_base;
    g.kwrite(base + 0x108 + 6, &0xffffu16.to_le_bytes());
    let p = win_profile();
    let r = run("windows: kernel with 65535 sections", move || {
        win_walk(g, p)
    });
    assert!(matches!(r, Err(Error::OsNotFound { .. })), "{r:?}");
    // e_lfanew past the header page.
    let (mut g, _) = win10();
    let base = g.spec.kernel_base;
    g.kwrite(base + 0x3c, &0xffff_fff0u32.to_le_bytes());
    let p = win_profile();
    let r = run("windows: kernel e_lfanew 0xfffffff0", move || {
        win_walk(g, p)
    });
    assert!(matches!(r, Err(Error::OsNotFound { .. })), "{r:?}");
}

#[test]
fn windows_mz_decoys_on_every_page_of_the_kernel_region() {
    // 512 GiB of the kernel region, every 4 KiB page a valid (non-NT) PE header, and no
    // register hints: the scan stops at its probe budget, in the registers' address spaces
    // and in every register-less candidate's.
    let (mut g, _) = win10();
    let decoy = {
        let mut h = vec![0u8; 4096];
        h[..2].copy_from_slice(b"MZ");
        h[0x3c..0x40].copy_from_slice(&0x80u32.to_le_bytes());
        h[0x80..0x84].copy_from_slice(b"PE\0\0");
        h[0x84..0x86].copy_from_slice(&0x8664u16.to_le_bytes());
        h[0x94..0x96].copy_from_slice(&240u16.to_le_bytes());
        h[0x98..0x9a].copy_from_slice(&0x20bu16.to_le_bytes());
        h[0x98 + 56..0x98 + 60].copy_from_slice(&0x1000u32.to_le_bytes());
        h
    };
    // A 2 MiB-aligned chunk of decoys, mapped by every PD entry of one PD, reached by every
    // PDPT entry of one PDPT, from PML4 entry 496 (0xfffff800_00000000).
    let align = (0x20_0000 - g.mem.len() % 0x20_0000) % 0x20_0000;
    g.mem.resize(g.mem.len() + align, 0);
    let chunk = g.mem.len();
    for i in 0..512 {
        g.mem.extend_from_slice(&decoy);
        let _ = i;
    }
    let pd = g.mem.len();
    g.mem.resize(pd + 0x2000, 0);
    let pdpt = pd + 0x1000;
    for i in 0..512 {
        g.mem[pd + i * 8..pd + i * 8 + 8].copy_from_slice(&((chunk as u64) | 0x83).to_le_bytes());
        g.mem[pdpt + i * 8..pdpt + i * 8 + 8].copy_from_slice(&((pd as u64) | 3).to_le_bytes());
    }
    // In every top-level table (the kernel's and each process's), so that the register-less
    // fallback's candidates (the low stub's root, each self-referencing table) meet the same
    // decoys, each within its own budget, and none finds the kernel.
    let mut tables: Vec<u64> = g.roots.iter().map(|r| r.0).collect();
    tables.push(g.kernel_pml4);
    for k in tables {
        let k = k as usize;
        g.mem[k + 496 * 8..k + 496 * 8 + 8].copy_from_slice(&((pdpt as u64) | 3).to_le_bytes());
    }
    let mut regs = g.registers();
    for r in &mut regs {
        r.msr_lstar = 0;
        r.rip = 0x7ff6_0000_1000;
        r.cs_sel = 0x33;
    }
    let p = win_profile();
    let r = run("windows: MZ decoys on 2^27 pages", move || {
        let mem = GuestMemory::new(g.snapshot());
        Windows::discover(&mem, &regs, WindowsProfile::Loaded(p)).map(|w| w.info().kernel_base)
    });
    assert!(matches!(r, Err(Error::OsNotFound { .. })), "{r:?}");
}

#[test]
fn pe_with_overlapping_sections_and_lying_tables() {
    let (g, _) = win10();
    let mut g = g;
    let base = g.spec.kernel_base;
    let mut page = vec![0u8; 4096];
    for (i, b) in page.iter_mut().enumerate() {
        *b = g
            .read_u64(g.kernel_pml4, base + (i as u64 & !7))
            .to_le_bytes()[i % 8];
    }
    let r = run("pe: overlapping sections, lying tables", move || {
        let mut img = page.clone();
        img.resize(0x4000, 0xcc);
        let opt = 0x108 + 24;
        let sec = opt + 240;
        img[0x108 + 6..0x108 + 8].copy_from_slice(&3u16.to_le_bytes());
        for i in 0..3 {
            let s = sec + 40 * i;
            img[s..s + 8].copy_from_slice(b".overlap");
            img[s + 8..s + 12].copy_from_slice(&0x3000u32.to_le_bytes());
            img[s + 12..s + 16].copy_from_slice(&(0x1000u32 + 0x800 * i as u32).to_le_bytes());
            img[s + 16..s + 20].copy_from_slice(&0xffff_f000u32.to_le_bytes());
            img[s + 20..s + 24].copy_from_slice(&0x1000u32.to_le_bytes());
        }
        // Export directory: 2^31 names.
        img[0x800 + 24..0x800 + 28].copy_from_slice(&0x8000_0000u32.to_le_bytes());
        let pe = Pe::parse(FileImage::new(&img, "overlapping")).map_err(|e| e.to_string())?;
        let sections = pe.headers().sections.len();
        let exports = pe.exports().map(|e| e.count()).map_err(|e| e.to_string());
        Ok::<_, String>((sections, exports, pe.codeview().is_ok()))
    })
    .unwrap();
    assert_eq!(r.0, 3);
    assert!(r.1.unwrap_err().contains("names"));
}

// ---------------------------------------------------------------------------------------------
// The vm_event ring: requests no Xen 4.17 writes (other interface versions, unknown reasons,
// garbage flags and payloads), from the simulated domain (not Xen) through the real ring code.

#[test]
fn ring_requests_with_wrong_versions_and_unknown_reasons_are_all_answered() {
    use xenvmi::backend::sim::{GuestAction, Outcome as SimOutcome, SimDomain};
    use xenvmi::backend::{ControlRegister, Monitor};
    use xenvmi::event::session::{RunOptions, Session};
    use xenvmi::event::Response;
    use xenvmi::vmevent::abi::entry;
    use xenvmi::{Registers, VcpuId};

    let r = run("ring: wrong versions, unknown reasons", || {
        let regs = vec![
            Registers {
                cr0: 0x8000_0011,
                cr3: 0x1000,
                ..Registers::default()
            };
            4
        ];
        let snap = Snapshot::from_bytes(vec![0u8; 1 << 20], Some(Format::Raw)).unwrap();
        let sim = SimDomain::new(snap, &regs);
        let word = |v: u32| v.to_le_bytes().to_vec();
        sim.corrupt_next_requests([
            vec![(entry::VERSION, word(6))],
            vec![(entry::VERSION, word(8))],
            vec![(entry::VERSION, word(u32::MAX))],
            vec![(entry::REASON, word(99))],
            vec![
                (entry::REASON, word(u32::MAX)),
                (entry::FLAGS + 1, vec![0xff; 3]),
            ],
            vec![(entry::REASON + 4 + 4, vec![0xa5; 200])], // payload garbage
            vec![(entry::VERSION, word(0)), (entry::REASON, word(0))],
        ]);
        let writes = 12u32;
        sim.script((0..writes).map(|i| GuestAction::WriteCr {
            vcpu: VcpuId(i % 4),
            register: ControlRegister::Cr4,
            value: 0x1000 + i as u64,
        }));
        let mut decoded = 0u64;
        let stats = {
            let mut s = Session::new(&sim).unwrap();
            s.monitor(Monitor::ControlRegister {
                register: ControlRegister::Cr4,
                sync: true,
                on_change_only: false,
                ignore_mask: 0,
            })
            .unwrap();
            let opts = RunOptions {
                poll: std::time::Duration::ZERO,
                max_events: None,
                max_idle_polls: Some(1),
            };
            let stats = s
                .run(&opts, |_| {
                    decoded += 1;
                    Response::deny()
                })
                .unwrap();
            s.teardown().unwrap();
            stats
        };
        let st = sim.state();
        let denied = st
            .outcomes()
            .iter()
            .filter(|o| matches!(o, SimOutcome::Denied(_)))
            .count();
        (
            stats.events,
            decoded,
            denied,
            st.events_raised(),
            st.responses_skipped(),
            st.paused_vcpus().len(),
        )
    });
    let (answered, decoded, denied, raised, skipped, paused) = r;
    assert_eq!(raised, 12, "{r:?}");
    assert_eq!(answered, raised, "every request got a response: {r:?}");
    assert_eq!(skipped, 0, "no response was one Xen would skip: {r:?}");
    assert_eq!(paused, 0, "no vCPU left paused: {r:?}");
    // The four requests with another interface version never reach the handler (they get the
    // safe response); the two with unknown reasons reach it as `EventKind::Unknown`, and
    // its DENY does nothing there (Xen acts on DENY only for CR/MSR-write reasons), so 12 - 4
    // decoded, 12 - 4 - 2 writes denied.
    assert_eq!(decoded, 12 - 4, "{r:?}");
    assert_eq!(denied as u64, 12 - 4 - 2, "{r:?}");
}

// ---------------------------------------------------------------------------------------------
// Windows crash dumps (synthetic containers from `support::crashdump`) whose headers lie.

use support::crashdump::{self as dmp, Header};
use xenvmi::backend::PhysicalMemory;
use xenvmi::Registers;

fn dump_header() -> Header {
    Header::example(0x1ad000, Registers::default())
}

/// Each input parsed with detection; the error messages (or `Ok`).
fn parse_all(inputs: Vec<Vec<u8>>) -> Vec<Result<(), String>> {
    inputs
        .into_iter()
        .map(|d| {
            Snapshot::from_bytes(d, None)
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
        .collect()
}

/// One error per input, each containing its needle.
fn expect_errors(r: &[Result<(), String>], needles: &[&str]) {
    assert_eq!(r.len(), needles.len());
    for (x, n) in r.iter().zip(needles) {
        assert!(
            matches!(x, Err(e) if e.contains(n)),
            "expected `{n}`: {x:?}"
        );
    }
}

#[test]
fn windows_dump_runs_that_lie() {
    let h = dump_header();
    let page = vec![0x5au8; 4096];
    let mut inputs = Vec::new();
    // 43 runs (the most the header has room for), each claiming 2^51 pages.
    let runs: Vec<(u64, u64)> = (0..43).map(|i| (i << 40, 1 << 51)).collect();
    let mut d = dmp::full_header(&h, &runs);
    d.extend_from_slice(&page);
    inputs.push(d);
    // NumberOfRuns still holding the "PAGE" fill (a header never written).
    let mut d = dmp::full_dump(&h, &[(0, &page)]);
    d[dmp::NUMBER_OF_RUNS..dmp::NUMBER_OF_RUNS + 4].copy_from_slice(b"PAGE");
    inputs.push(d);
    // Page counts that would wrap the total to a small number (2^64 - 1 then 2): the first
    // run already exceeds the file.
    let mut d = dmp::full_header(&h, &[(0, u64::MAX), (0x100, 2)]);
    d.extend_from_slice(&page);
    inputs.push(d);
    // Two runs mapping the same frames from different file pages.
    let two = [page.clone(), page.clone()].concat();
    inputs.push(dmp::full_dump(&h, &[(0x1000, &two), (0x2000, &page)]));
    let r = run("Windows dump: runs that lie", move || parse_all(inputs));
    expect_errors(
        &r,
        &[
            "truncated",
            "NumberOfRuns 1162297680",
            "truncated",
            "overlap",
        ],
    );
}

#[test]
fn windows_dump_bitmaps_that_lie() {
    let h = dump_header();
    let page = vec![0xa5u8; 4096];
    let mut inputs = Vec::new();
    // A bitmap of 2^64 - 1 pages in a file of a few pages.
    let mut d = dmp::bitmap_dump(&h, 5, b"FDMP", 8, &[(0, &page)]);
    dmp::put64(&mut d, dmp::BMP_PAGES, u64::MAX);
    inputs.push(d);
    // 1 MiB of set bits (8 Mi pages present) with 4 pages stored.
    let mut d = dmp::bitmap_header(&h, 5, b"FDMP", 8 << 20, &[]);
    d[dmp::BMP_BITMAP..dmp::BMP_BITMAP + (1 << 20)].fill(0xff);
    for _ in 0..4 {
        d.extend_from_slice(&page);
    }
    inputs.push(d);
    // FirstPage at the end of the 64-bit file space.
    let mut d = dmp::bitmap_dump(&h, 6, b"SDMP", 8, &[(3, &page)]);
    dmp::put64(&mut d, dmp::BMP_FIRST_PAGE, u64::MAX);
    inputs.push(d);
    let r = run("Windows dump: bitmaps that lie", move || parse_all(inputs));
    expect_errors(&r, &["needs", "marks more than", "marks more than"]);
}

#[test]
fn windows_dump_bitmap_fragmented_into_one_page_regions() {
    // Valid, but as fragmented as a bitmap can be: every other frame present, 4096 one-page
    // regions. Opening and reading every page stays cheap (binary-search lookups).
    let h = dump_header();
    let pages: Vec<Vec<u8>> = (0..4096u64)
        .map(|i| (i as u32).to_le_bytes().repeat(1024))
        .collect();
    let list: Vec<(u64, &[u8])> = pages
        .iter()
        .enumerate()
        .map(|(i, p)| (2 * i as u64, p.as_slice()))
        .collect();
    let d = dmp::bitmap_dump(&h, 5, b"FDMP", 8192, &list);
    let r = run("Windows dump: 4096 one-page bitmap regions", move || {
        let s = Snapshot::from_bytes(d, None).map_err(|e| e.to_string())?;
        let mut ok = 0;
        for i in 0..4096u64 {
            let v = s.read_physical_u64(Gpa(2 * i * 4096 + 4088)).ok();
            let hole = s.read_physical_u64(Gpa((2 * i + 1) * 4096)).is_err();
            if v == Some(i | i << 32) && hole {
                ok += 1;
            }
        }
        Ok::<_, String>((s.regions().len(), ok))
    });
    assert_eq!(r, Ok((4096, 4096)));
}

#[test]
fn memory_at_the_top_of_the_physical_address_space() {
    // One LiME range ending at 2^64 - 2 and no registers: Linux discovery's last-resort scan
    // walks every backed range in windows; its cursor must not wrap past 2^64 (found by the
    // capi fuzzer: the cursor wrapped below the range and the loop never ended).
    let r = run("memory at the top of the address space", || {
        let len = 0x4000u64;
        let start = u64::MAX - 1 - (len - 1);
        let mut img = Vec::new();
        img.extend_from_slice(&0x4C69_4D45u32.to_le_bytes());
        img.extend_from_slice(&1u32.to_le_bytes());
        img.extend_from_slice(&start.to_le_bytes());
        img.extend_from_slice(&(start + len - 1).to_le_bytes());
        img.extend_from_slice(&[0u8; 8]);
        img.extend(std::iter::repeat_n(0x4c, len as usize)); // "LLLL…"
        let snap = Snapshot::from_bytes(img, None).map_err(|e| e.to_string())?;
        let mem = GuestMemory::new(snap);
        Linux::discover(&mem, &[], ProfileSource::InGuest)
            .map(|_| ())
            .map_err(|e| e.to_string())
    });
    assert!(r.unwrap_err().contains("could not find a Linux kernel"));
}

/// The real 6.1 guest with sockets and known files, discovered once, for cases that change
/// one kernel field of a real guest through an overlay (`support::patched`).
fn net_guest() -> (GuestMemory<Arc<Snapshot>>, Linux) {
    let path = support::fixture::fixture_file("linux-6.1-net", "vmcore.elf").unwrap();
    let snap = Arc::new(Snapshot::open(path).unwrap());
    let mem = GuestMemory::new(snap);
    let linux = net_linux(&mem);
    (mem, linux)
}

/// Discovery on the (unpatched) dump: each case moves its own `Linux` to the watchdog thread.
fn net_linux(mem: &GuestMemory<Arc<Snapshot>>) -> Linux {
    let regs = mem.backend().all_registers().to_vec();
    Linux::discover(mem, &regs, ProfileSource::InGuest).unwrap()
}

/// Each user process's areas named as `pslist --json` names them: the name, or the reason it
/// could not be read (`!why`), and `""` for anonymous memory.
fn area_names<B: xenvmi::backend::PhysicalMemory>(
    linux: &Linux,
    mem: &GuestMemory<B>,
) -> Vec<(u64, Vec<String>)> {
    use xenvmi::os::linux::maps::Backing;
    linux
        .processes(mem)
        .map(Result::unwrap)
        .filter(|p| !p.kernel_thread)
        .map(|p| {
            let maps = linux.process_detail(mem, &p).maps.unwrap();
            let names = maps
                .iter()
                .map(|v| match &v.backing {
                    Backing::File(s) | Backing::Special(s) => s.clone(),
                    Backing::Heap => "[heap]".into(),
                    Backing::Stack => "[stack]".into(),
                    Backing::Anonymous => String::new(),
                    Backing::Unreadable(why) => format!("!{why}"),
                })
                .collect();
            (p.pid, names)
        })
        .collect()
}

#[test]
fn special_mapping_names_that_lie() {
    // `[vdso]` is `vdso_mapping.name`, reached through each vDSO area's `vm_private_data`.
    // That pointer and the name are changed in a real guest: a non-canonical pointer, a NULL
    // name (the kernel then names the area as any other: anonymous), 80 bytes without a NUL,
    // a NULL `vm_private_data` and one pointing at unmapped memory in one process. Each costs
    // the vDSO area of the processes it touches its name, with a reason; `[vvar]`, the other
    // areas and the other processes are read as before.
    use support::patched::Patched;
    let (mem, linux) = net_guest();
    let ks = linux.info().kernel_space;
    let before = area_names(&linux, &mem);
    let off = |t: &str, f: &str| linux.types().field(t, f).unwrap().offset;
    let name_ptr = Gva(linux.symbol("vdso_mapping").unwrap().0 + off("vm_special_mapping", "name"));
    let name = mem.read_va(ks, name_ptr).unwrap();
    assert_eq!(mem.read_cstring(ks, name, 16).unwrap(), "[vdso]");
    // pid 133's vDSO area: its `vm_area_struct` found in physical memory by its range
    // (`vm_start`, `vm_end`) and `vm_ops`.
    let (vdso_start, vdso_end) = {
        let p = linux
            .processes(&mem)
            .map(Result::unwrap)
            .find(|p| p.pid == 133)
            .unwrap();
        let maps = linux.process_detail(&mem, &p).maps.unwrap();
        let v = maps
            .iter()
            .find(|v| v.perms() == "r-xp" && v.offset == 0 && v.start > 1 << 40);
        let v = v.unwrap();
        (v.start, v.end)
    };
    let (vm_start, vm_end, vm_ops) = (
        off("vm_area_struct", "vm_start"),
        off("vm_area_struct", "vm_end"),
        off("vm_area_struct", "vm_ops"),
    );
    assert_eq!((vm_start, vm_end), (0, 8));
    let vmops = linux.symbol("special_mapping_vmops").unwrap().0;
    let mut vmas = Vec::new();
    for r in mem.backend().physical_ranges() {
        let mut buf = vec![0u8; 1 << 20];
        let mut at = r.start;
        while at < r.end {
            let n = ((r.end - at) as usize).min(buf.len());
            mem.backend().read_physical(Gpa(at), &mut buf[..n]).unwrap();
            let ops = vm_ops as usize;
            for i in (0..n.saturating_sub(ops + 8)).step_by(8) {
                if buf[i..i + 8] == vdso_start.to_le_bytes()
                    && buf[i + 8..i + 16] == vdso_end.to_le_bytes()
                    && buf[i + ops..i + ops + 8] == vmops.to_le_bytes()
                {
                    vmas.push(at + i as u64);
                }
            }
            at += n as u64;
        }
    }
    assert!(!vmas.is_empty(), "pid 133's vDSO area not found");
    let private = off("vm_area_struct", "vm_private_data");

    // (case, memory, the one process it touches (else every one), what its `[vdso]` becomes:
    // "" = anonymous, else words of the reason)
    type Case = (
        &'static str,
        Patched<Arc<Snapshot>>,
        Option<u64>,
        &'static str,
    );
    let cases: Vec<Case> = {
        let mut v = Vec::new();
        let mut p = Patched::new(mem.backend().clone());
        p.set_u64(&mem, ks, name_ptr, 0xdead_beef_dead_beef);
        v.push(("name pointer not canonical", p, None, "not canonical"));
        let mut p = Patched::new(mem.backend().clone());
        p.set_u64(&mem, ks, name_ptr, 0);
        v.push(("NULL name", p, None, ""));
        // 80 bytes of 'A' across two pages that were zero, in the direct map.
        let mut p = Patched::new(mem.backend().clone());
        let zero = (0x10_0000..0x800_0000u64)
            .step_by(4096)
            .find(|&pa| {
                let mut b = vec![1u8; 8192];
                mem.read_physical(Gpa(pa), &mut b).is_ok() && b.iter().all(|&x| x == 0)
            })
            .unwrap();
        p.set(zero + 4096 - 40, &[b'A'; 80]);
        p.set_u64(
            &mem,
            ks,
            name_ptr,
            linux.info().page_offset_base.0 + zero + 4096 - 40,
        );
        v.push((
            "name without a NUL in 80 bytes, across a page",
            p,
            None,
            "no NUL in its first 64 bytes",
        ));
        for (what, value, why) in [
            ("NULL vm_private_data", 0u64, "vm_private_data is NULL"),
            (
                "vm_private_data unmapped",
                0xffff_8000_dead_0000,
                "is not mapped",
            ),
        ] {
            let mut p = Patched::new(mem.backend().clone());
            for &a in &vmas {
                p.set(a + private, &value.to_le_bytes());
            }
            v.push((what, p, Some(133), why));
        }
        v
    };
    for (what, patched, only, want) in cases {
        let before = before.clone();
        let linux = net_linux(&mem);
        let r = run(&format!("special mapping: {what}"), move || {
            let pmem = GuestMemory::new(patched);
            area_names(&linux, &pmem)
        });
        let mut touched = 0;
        for ((pid, b), (pid2, a)) in before.iter().zip(&r) {
            assert_eq!(pid, pid2);
            assert_eq!(a.len(), b.len(), "{what}: pid {pid}");
            for (x, y) in b.iter().zip(a) {
                if x != "[vdso]" {
                    assert_eq!(x, y, "{what}: pid {pid}");
                    continue;
                }
                if only.is_some_and(|o| o != *pid) {
                    assert_eq!(y, "[vdso]", "{what}: pid {pid}");
                } else if want.is_empty() {
                    assert_eq!(y, "", "{what}: pid {pid}");
                } else {
                    assert!(
                        y.starts_with('!') && y.contains(want),
                        "{what}: pid {pid}: {y}"
                    );
                    touched += 1;
                }
            }
        }
        eprintln!("  {what}: {touched} areas unreadable, with a reason");
    }
}

#[test]
fn dentry_hash_links_that_loop() {
    // Only `d_hash.pprev` is read (NULL means unhashed, so " (deleted)"), never the hash
    // chain: a dentry whose hash links point at themselves, or at garbage, is "hashed", and
    // its path is read as before.
    use support::patched::Patched;
    let (mem, linux) = net_guest();
    let ks = linux.info().kernel_space;
    let off = |t: &str, f: &str| linux.types().field(t, f).unwrap().offset;
    let p133 = linux
        .processes(&mem)
        .map(Result::unwrap)
        .find(|p| p.pid == 133)
        .unwrap();
    let rd = |a: u64| mem.read_u64(ks, Gva(a)).unwrap();
    let mm = rd(p133.object.0 + off("task_struct", "mm"));
    let file = rd(mm + off("mm_struct", "exe_file"));
    let dentry = rd(file + off("file", "f_path") + off("path", "dentry"));
    let node = dentry + off("dentry", "d_hash");
    let (next, pprev) = (
        node + off("hlist_bl_node", "next"),
        node + off("hlist_bl_node", "pprev"),
    );
    for (what, n, pp) in [
        ("hash links pointing at themselves", next, pprev),
        (
            "hash links to garbage",
            0xdead_beef_dead_beef,
            0xffff_8000_dead_0000,
        ),
    ] {
        let mut patched = Patched::new(mem.backend().clone());
        patched.set_u64(&mem, ks, Gva(next), n);
        patched.set_u64(&mem, ks, Gva(pprev), pp);
        let linux = net_linux(&mem);
        let p = p133.clone();
        let exe = run(&format!("dentry: {what}"), move || {
            let pmem = GuestMemory::new(patched);
            linux.process_detail(&pmem, &p).exe
        });
        assert_eq!(exe, Ok(Some("/bin/busybox".to_owned())), "{what}");
    }
}

// ---------------------------------------------------------------------------------------------
// Sockets, module symbol tables and the printk ring (tests/support/guest.rs lays them out in
// the synthetic image), then corrupted.

use xenvmi::os::linux::kmsg::{Caller, LogRecord};
use xenvmi::os::linux::sockets::{Sock, Socket};

/// Where the socket structures of task 0 live (image offsets).
const FILES: u64 = 0x6_1000;
const FDT: u64 = 0x6_1100;
const FD_ARRAY: u64 = 0x10_0000;
const FILE: u64 = 0x6_2000;
const INODE: u64 = 0x6_4000;
const SOCKET: u64 = 0x6_6000;
const SK: u64 = 0x6_8000;
const UADDR: u64 = 0x6_a000;
const S_IFSOCK: u32 = 0o140_000;

/// One open file of task 0: descriptor `fd`, slot `i` of the structures above; a socket when
/// `sk` is given (its `struct sock` at slot `i` too).
fn open_file(g: &mut Guest, fd: u64, i: u64, ino: u64, socket: bool) {
    let (file, inode, sock) = (
        kva(FILE + i * 0x100),
        kva(INODE + i * 0x100),
        kva(SOCKET + i * 0x100),
    );
    g.set_va_u64(kva(FD_ARRAY) + fd * 8, file);
    g.set_va_u64(file + F_INODE, inode);
    g.set_va_u64(inode + I_INO, ino);
    if socket {
        g.set_va_u64(file + F_OP, kva(SOCKET_FILE_OPS));
        g.set_va_u64(file + F_PRIVATE, sock);
        g.set_va_u32(inode + I_MODE, S_IFSOCK);
        g.set_va_u64(sock + SOCK_FILE, file);
        g.set_va_u64(sock + SOCK_SK, kva(SK + i * 0x100));
    } else {
        g.set_va_u64(file + F_OP, kva(SOCKET_FILE_OPS + 0x100));
        g.set_va_u32(inode + I_MODE, 0o100_644);
    }
}

/// The `struct sock` of slot `i`.
#[allow(clippy::too_many_arguments)]
fn sock(g: &mut Guest, i: u64, family: u16, ty: u16, proto: u16, state: u8, l: &[u8], r: &[u8]) {
    let sk = kva(SK + i * 0x100);
    g.write_va(sk + SKC_FAMILY, &family.to_le_bytes());
    g.write_va(sk + SKC_STATE, &[state]);
    g.write_va(sk + SK_TYPE, &ty.to_le_bytes());
    g.write_va(sk + SK_PROTOCOL, &proto.to_le_bytes());
    match (l.len(), r.len()) {
        (6, 6) => {
            // IPv4 address then port, both in network order.
            g.write_va(sk + SKC_RCV_SADDR, &l[..4]);
            g.write_va(sk + SKC_DADDR, &r[..4]);
            g.write_va(
                sk + SKC_NUM,
                &u16::from_be_bytes([l[4], l[5]]).to_le_bytes(),
            );
            g.write_va(sk + SKC_DPORT, &r[4..]);
        }
        (18, 18) => {
            g.write_va(sk + SKC_V6_RCV_SADDR, &l[..16]);
            g.write_va(sk + SKC_V6_DADDR, &r[..16]);
            g.write_va(
                sk + SKC_NUM,
                &u16::from_be_bytes([l[16], l[17]]).to_le_bytes(),
            );
            g.write_va(sk + SKC_DPORT, &r[16..]);
        }
        _ => {}
    }
}

/// Bind the UNIX socket of slot `i` to `path` (`unix_address` at slot `i`).
fn unix_bind(g: &mut Guest, i: u64, path: &[u8]) {
    let a = kva(UADDR + i * 0x100);
    g.set_va_u64(kva(SK + i * 0x100) + UNIX_ADDR, a);
    g.set_va_u32(a + UADDR_LEN, (SUN_PATH as usize + path.len()) as u32);
    g.write_va(a + UADDR_NAME + SUN_PATH, path);
}

/// A guest whose task 0 holds: fd 0 a regular file, fd 3 a TCP connection, fd 4 a listening
/// UNIX socket connected to an abstract-named peer (slot 3, no descriptor), fd 6 a UDP6 socket.
fn socket_guest() -> Guest {
    let mut g = Guest::new(2, 1);
    let task = kva(TASKS);
    g.set_va_u64(task + T_FILES, kva(FILES));
    g.set_va_u64(kva(FILES) + FILES_FDT, kva(FDT));
    g.set_va_u32(kva(FDT) + FDT_MAX, 64);
    g.set_va_u64(kva(FDT) + FDT_FD, kva(FD_ARRAY));
    open_file(&mut g, 0, 0, 11, false);
    open_file(&mut g, 3, 1, 4242, true);
    sock(
        &mut g,
        1,
        2,
        1,
        6,
        1,
        &[10, 0, 0, 1, 0, 22],
        &[10, 0, 0, 2, 0x15, 0xb3],
    );
    open_file(&mut g, 4, 2, 4243, true);
    sock(&mut g, 2, 1, 1, 0, 10, &[], &[]);
    unix_bind(&mut g, 2, b"/run/a.sock\0");
    unix_bind(&mut g, 3, b"\0xyz");
    g.set_va_u64(kva(SK + 2 * 0x100) + UNIX_PEER, kva(SK + 3 * 0x100));
    open_file(&mut g, 6, 4, 4244, true);
    let mut l = [0u8; 18];
    l[15] = 1;
    l[17] = 53;
    sock(&mut g, 4, 10, 2, 17, 7, &l, &[0; 18]);
    g
}

fn sockets_of(g: Guest) -> Result<Vec<Socket>, Error> {
    let regs = g.registers();
    let mem = GuestMemory::new(g.snapshot());
    let linux = Linux::discover(&mem, &regs, ProfileSource::Loaded(profile()))?;
    linux.sockets(&mem, Gva(kva(TASKS)))
}

#[test]
fn sockets_are_read_exactly() {
    let got = run("sockets: TCP, UNIX with a peer, UDP6", || {
        sockets_of(socket_guest())
    })
    .unwrap();
    let s = |fd,
             inode,
             family,
             sock_type,
             protocol,
             proto: &str,
             l: &str,
             r: Option<&str>,
             st: &str| Socket {
        fd,
        inode,
        sock: Ok(Sock {
            family,
            sock_type,
            protocol,
            proto: proto.into(),
            local: Some(l.into()),
            remote: r.map(Into::into),
            state: st.into(),
        }),
    };
    assert_eq!(
        got,
        [
            s(
                3,
                4242,
                2,
                1,
                6,
                "tcp",
                "10.0.0.1:22",
                Some("10.0.0.2:5555"),
                "ESTABLISHED"
            ),
            s(
                4,
                4243,
                1,
                1,
                0,
                "unix",
                "/run/a.sock",
                Some("@xyz"),
                "LISTEN"
            ),
            s(
                6,
                4244,
                10,
                2,
                17,
                "udp6",
                "[::1]:53",
                Some("[::]:0"),
                "CLOSE"
            ),
        ]
    );
}

#[test]
fn hostile_sockets_give_bounded_errors() {
    // The TCP socket's sk pointing back at its own struct socket: read as a sock, garbage
    // but bounded.
    let mut g = socket_guest();
    g.set_va_u64(kva(SOCKET + 0x100) + SOCK_SK, kva(SOCKET + 0x100));
    let r = run("socket whose sk points at itself", || sockets_of(g)).unwrap();
    assert_eq!(r.len(), 3);
    // A UNIX name claiming 4 GiB, and a peer that is the socket itself.
    let mut g = socket_guest();
    g.set_va_u32(kva(UADDR + 2 * 0x100) + UADDR_LEN, u32::MAX);
    let r = run("UNIX address length u32::MAX", || sockets_of(g)).unwrap();
    let e = r[1].sock.as_ref().unwrap_err();
    assert!(e.contains("unix_address.len"), "{e}");
    let mut g = socket_guest();
    g.set_va_u64(kva(SK + 2 * 0x100) + UNIX_PEER, kva(SK + 2 * 0x100));
    let r = run("UNIX socket whose peer is itself", || sockets_of(g)).unwrap();
    assert_eq!(
        r[1].sock.as_ref().unwrap().remote.as_deref(),
        Some("/run/a.sock")
    );
    // A struct socket that does not point back at its file; a NULL sk.
    let mut g = socket_guest();
    g.set_va_u64(kva(SOCKET + 0x100) + SOCK_FILE, kva(FILE));
    let e = run("socket.file not its file", || sockets_of(g)).unwrap_err();
    assert!(e.to_string().contains("socket.file"), "{e}");
    let mut g = socket_guest();
    g.set_va_u64(kva(SOCKET + 0x100) + SOCK_SK, 0);
    let r = run("socket with a NULL sk", || sockets_of(g)).unwrap();
    assert!(r[0].sock.as_ref().unwrap_err().contains("NULL"), "{r:?}");
    // 2^32 - 1 descriptors claimed: the walk stops at MAX_FDS and finds the same three.
    let mut g = socket_guest();
    g.set_va_u32(kva(FDT) + FDT_MAX, u32::MAX);
    let r = run("fdtable.max_fds u32::MAX", || sockets_of(g)).unwrap();
    assert_eq!(r.len(), 3);
    // The descriptor array outside memory.
    let mut g = socket_guest();
    g.set_va_u64(kva(FDT) + FDT_FD, 0xffff_ffff_a000_0000);
    let e = run("fdtable.fd unmapped", || sockets_of(g)).unwrap_err();
    assert!(e.to_string().contains("not mapped"), "{e}");
}

/// Module 0's symbol table: `names` at `values`, `num_symtab` claimed.
const SYMTAB: u64 = 0x7_0000;
const STRTAB: u64 = 0x7_2000;
const MOD_KALLSYMS: u64 = 0x7_3000;
/// Module 0's core base (tests/support/guest.rs).
const MOD0: u64 = 0xffff_ffff_c000_0000;

fn module_symbols(g: &mut Guest, syms: &[(&str, u64)], num_symtab: u32) {
    let ks = kva(MOD_KALLSYMS);
    g.set_va_u64(kva(MODS) + M_KALLSYMS, ks);
    g.set_va_u64(ks + KS_SYMTAB, kva(SYMTAB));
    g.set_va_u32(ks + KS_NUM, num_symtab);
    g.set_va_u64(ks + KS_STRTAB, kva(STRTAB));
    let mut str_off = 1u32; // strtab[0] is the empty name
    for (i, (name, value)) in syms.iter().enumerate() {
        let e = kva(SYMTAB) + (i as u64 + 1) * 24; // entry 0 is the null symbol
        g.set_va_u32(e, str_off);
        g.write_va(e + 6, &1u16.to_le_bytes()); // st_shndx: defined
        g.set_va_u64(e + 8, *value);
        g.write_va(kva(STRTAB) + str_off as u64, name.as_bytes());
        str_off += name.len() as u32 + 1;
    }
}

fn symbolize_in(g: Guest, addrs: Vec<u64>) -> Vec<Option<String>> {
    let regs = g.registers();
    let mem = GuestMemory::new(g.snapshot());
    let linux = Linux::discover(&mem, &regs, ProfileSource::Loaded(profile())).unwrap();
    let s = linux.symbolizer(&mem);
    addrs
        .into_iter()
        .map(|a| s.symbolize(Gva(a)).map(|k| k.to_string()))
        .collect()
}

#[test]
fn module_symbol_tables_that_lie_are_bounded() {
    let syms = [
        ("mod0_init", MOD0),
        ("mod0_work", MOD0 + 0x100),
        ("$x", MOD0 + 0x180),
    ];
    let mut g = Guest::new(1, 2);
    module_symbols(&mut g, &syms, 4);
    let r = run("module symbols", move || {
        symbolize_in(
            g,
            vec![MOD0 + 0x10, MOD0 + 0x1f0, MOD0 + 0x4000 + 8, MOD0 - 1],
        )
    });
    assert_eq!(
        r,
        [
            Some("mod0_init+0x10 [mod0]".into()),
            Some("mod0_work+0xf0 [mod0]".into()), // the mapping symbol $x passed over
            Some("mod1+0x8".into()),              // mod1 has no symbol table
            None,
        ]
    );
    // num_symtab u32::MAX: more than is read, the module and offset only.
    let mut g = Guest::new(1, 1);
    module_symbols(&mut g, &syms, u32::MAX);
    let r = run("module num_symtab u32::MAX", move || {
        symbolize_in(g, vec![MOD0 + 0x10])
    });
    assert_eq!(r, [Some("mod0+0x10".into())]);
    // Every entry at one value with an empty name: the name reads stop at their bound.
    let mut g = Guest::new(1, 1);
    let empty: Vec<(&str, u64)> = (0..1000).map(|_| ("", MOD0)).collect();
    module_symbols(&mut g, &empty, 1001);
    let r = run("1000 unnamed module symbols", move || {
        symbolize_in(g, vec![MOD0 + 0x10])
    });
    assert_eq!(r, [Some("mod0+0x10".into())]);
    // A name without a terminator: cut at KSYM_NAME_LEN.
    let mut g = Guest::new(1, 1);
    let long = "n".repeat(4000);
    module_symbols(&mut g, &[(&long, MOD0)], 2);
    let r = run("unterminated module symbol name", move || {
        symbolize_in(g, vec![MOD0])
    });
    let name = r[0].clone().unwrap();
    assert_eq!(
        name,
        format!(
            "{}+0x0 [mod0]",
            "n".repeat(xenvmi::os::linux::symbolize::KSYM_NAME_LEN)
        )
    );
}

/// The printk ring: `prb` -> ring at RING; descriptors, infos and text data.
const RING: u64 = 0x8_0100;
const DESCS: u64 = 0x8_1000;
const INFOS: u64 = 0x8_2000;
const TEXT: u64 = 0x8_4000;

/// A ring of 4 descriptors and 4 KiB of text holding `texts` as records 0.., all finalized.
fn printk_guest(texts: &[&str]) -> Guest {
    let mut g = Guest::new(1, 0);
    g.set_va_u64(kva(PRB), kva(RING));
    g.set_va_u32(kva(RING) + DR_COUNT_BITS, 2);
    g.set_va_u64(kva(RING) + DR_DESCS, kva(DESCS));
    g.set_va_u64(kva(RING) + DR_INFOS, kva(INFOS));
    g.set_va_u64(kva(RING) + DR_TAIL, 0);
    g.set_va_u64(kva(RING) + DR_HEAD, texts.len() as u64 - 1);
    g.set_va_u32(kva(RING + RB_DATA_RING) + TR_SIZE_BITS, 12);
    g.set_va_u64(kva(RING + RB_DATA_RING) + TR_DATA, kva(TEXT));
    let mut lpos = 0u64;
    for (id, t) in texts.iter().enumerate() {
        let (d, i) = (
            kva(DESCS) + id as u64 * 0x100,
            kva(INFOS) + id as u64 * 0x100,
        );
        g.set_va_u64(d + DESC_SV, 2 << 62 | id as u64);
        let next = lpos + (8 + t.len() as u64).next_multiple_of(8);
        g.set_va_u64(d + DESC_LPOS, lpos);
        g.set_va_u64(d + DESC_LPOS + 8, next);
        g.set_va_u64(kva(TEXT) + lpos, id as u64);
        g.write_va(kva(TEXT) + lpos + 8, t.as_bytes());
        g.set_va_u64(i + INFO_SEQ, 100 + id as u64);
        g.set_va_u64(i + INFO_TS, 1_000 * id as u64);
        g.write_va(i + INFO_LEN, &(t.len() as u16).to_le_bytes());
        g.write_va(i + INFO_LEVEL, &[(id as u8 % 8) << 5 | 0x1f]); // flags bits set too
        g.set_va_u32(i + INFO_CALLER, if id == 1 { 0x8000_0001 } else { 7 });
        lpos = next;
    }
    g
}

fn log_of(g: Guest) -> Result<Vec<LogRecord>, Error> {
    let regs = g.registers();
    let mem = GuestMemory::new(g.snapshot());
    let linux = Linux::discover(&mem, &regs, ProfileSource::Loaded(profile()))?;
    linux.kernel_log(&mem)
}

#[test]
fn printk_records_are_read_exactly() {
    let r = run("printk ring: 3 records", || {
        log_of(printk_guest(&["first", "second line", "third"]))
    })
    .unwrap();
    let rec = |seq, ts_nsec, level, caller, text: &str| LogRecord {
        seq,
        ts_nsec,
        level,
        facility: 0,
        caller,
        text: text.into(),
    };
    assert_eq!(
        r,
        [
            rec(100, 0, 0, Caller::Task(7), "first"),
            rec(101, 1000, 1, Caller::Cpu(1), "second line"),
            rec(102, 2000, 2, Caller::Task(7), "third"),
        ]
    );
}

#[test]
fn printk_rings_that_lie_are_bounded() {
    let texts = ["first", "second line", "third"];
    // count_bits 63: refused, naming the field.
    let mut g = printk_guest(&texts);
    g.set_va_u32(kva(RING) + DR_COUNT_BITS, 63);
    let e = run("printk count_bits 63", || log_of(g)).unwrap_err();
    assert!(e.to_string().contains("count_bits"), "{e}");
    let mut g = printk_guest(&texts);
    g.set_va_u32(kva(RING + RB_DATA_RING) + TR_SIZE_BITS, 0);
    let e = run("printk size_bits 0", || log_of(g)).unwrap_err();
    assert!(e.to_string().contains("size_bits"), "{e}");
    // tail one past head: 2^62 - 1 ids claimed in use; one lap of the 4 descriptors is read.
    let mut g = printk_guest(&texts);
    g.set_va_u64(kva(RING) + DR_TAIL, 3);
    let r = run("printk tail past head", || log_of(g)).unwrap();
    assert_eq!(r.len(), 3);
    // Every record claims 65535 bytes, in one block as large as the ring allows (a lap less
    // 8 bytes): each text stops at its block. A block of a whole lap (it would wrap onto
    // itself) is no block.
    let mut g = printk_guest(&texts);
    for id in 0..3u64 {
        let d = kva(DESCS) + id * 0x100;
        g.set_va_u64(d + DESC_LPOS, 0x1000);
        g.set_va_u64(d + DESC_LPOS + 8, 0x1ff8);
        g.write_va(kva(INFOS) + id * 0x100 + INFO_LEN, &u16::MAX.to_le_bytes());
    }
    g.set_va_u64(kva(DESCS) + 2 * 0x100 + DESC_LPOS + 8, 0x2000);
    let r = run("printk blocks of a whole lap, text_len 65535", || log_of(g)).unwrap();
    assert_eq!(r.len(), 2, "{r:?}");
    assert!(r.iter().all(|x| x.text.len() == 0x1000 - 16), "{r:?}");
    // The largest ring accepted (2^26 descriptors) with 2^20 + 5 ids in use and its arrays
    // outside memory: at most MAX_LOG_RECORDS are tried, none read.
    let mut g = printk_guest(&texts);
    g.set_va_u32(kva(RING) + DR_COUNT_BITS, 26);
    g.set_va_u64(kva(RING) + DR_HEAD, (1 << 20) + 5);
    g.set_va_u64(kva(RING) + DR_DESCS, 0xffff_ffff_a000_0000);
    let r = run("printk 2^26 descriptors, unmapped", || log_of(g)).unwrap();
    assert!(r.is_empty());
    // Descriptors whose ids are another lap's: not records.
    let mut g = printk_guest(&texts);
    for id in 0..3u64 {
        g.set_va_u64(kva(DESCS) + id * 0x100 + DESC_SV, 2 << 62 | (id + 4));
    }
    let r = run("printk descriptors of another lap", || log_of(g)).unwrap();
    assert!(r.is_empty());
}
