//! Hostile guests: crafted images and profiles that try to crash, hang or exhaust xenvmi.
//!
//! Each case must end with an error or a partial result, without panicking. Every case runs
//! under a watchdog (a hang detector, not a speed assertion: speed is measured, not asserted);
//! `cargo test --test adversarial -- --nocapture` prints each case's time, and
//! `docs/security.md` records them (each well under 100 ms).

mod support;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::guest::*;
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

/// Run `f` on a worker thread: it must not panic and must finish before the watchdog.
fn run<T: Send + 'static + std::fmt::Debug>(
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
    let o = run("unterminated comm, module name, banner", || walk(g)).unwrap();
    assert_eq!((o.tasks, o.modules), (2, 2));
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
        (n, leaves)
    });
    assert!(o.1 <= 1 << 20);
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
    // 4096 "Linux version " strings and no kernel: the banner search is capped.
    let r = run("4096 banner decoys", || {
        let mut img = vec![0u8; 8 << 20];
        for i in 0..4096 {
            img[i * 2048..i * 2048 + 14].copy_from_slice(b"Linux version ");
        }
        let mem = GuestMemory::new(Snapshot::from_bytes(img, None).unwrap());
        Linux::discover(&mem, &[], ProfileSource::Loaded(profile())).map(|_| ())
    });
    assert!(r.is_err());
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
    assert!(r.is_err());
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
