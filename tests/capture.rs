//! `capture`: the whole guest written as an ELF core, read back by `Snapshot` and by the Linux
//! walk, against the source it was taken from and the guest's own ground truth.
//!
//! - Real dumps (6.12 with 4-level paging, 6.1 with 5-level): every byte and every register
//!   round-trips; the process list read from the copy equals the ground truth's.
//! - A paused capture of the simulated domain: paused exactly while it runs, resumed after,
//!   also when the output fails.
//! - Pages that cannot be read are absent from the file (reads there fail), listed in the
//!   capture note, and their neighbours are intact.
//! - More than `PN_XNUM` program headers; more readable ranges than the format can hold.

mod support;

use std::cell::Cell;
use std::io::{Seek, SeekFrom, Write};
use std::ops::Range;

use support::fixture::{fixture_file, ground_truth};
use xenvmi::backend::sim::SimDomain;
use xenvmi::backend::snapshot::Snapshot;
use xenvmi::backend::{PhysicalMemory, VcpuState};
use xenvmi::capture::{
    capture, capture_to_file, CaptureOptions, Consistency, Progress, MAX_SEGMENTS,
};
use xenvmi::mem::GuestMemory;
use xenvmi::os::linux::{Linux, ProfileSource};
use xenvmi::{Error, Gpa, Registers, Result, VcpuId};

fn tmp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("xenvmi-capture-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

/// Every byte of `a`'s ranges equals `b`'s, and both have the same ranges.
fn same_memory(a: &impl PhysicalMemory, b: &impl PhysicalMemory) {
    assert_eq!(a.physical_ranges(), b.physical_ranges());
    let (mut x, mut y) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    for r in a.physical_ranges() {
        let mut at = r.start;
        while at < r.end {
            let n = ((r.end - at) as usize).min(x.len());
            a.read_physical(Gpa(at), &mut x[..n]).unwrap();
            b.read_physical(Gpa(at), &mut y[..n]).unwrap();
            assert!(x[..n] == y[..n], "memory differs in {at:#x}+{n:#x}");
            at += n as u64;
        }
    }
}

fn pids_and_names<B: PhysicalMemory>(
    mem: &GuestMemory<B>,
    regs: &[Registers],
) -> Vec<(u64, String)> {
    let linux = Linux::discover(mem, regs, ProfileSource::InGuest).expect("Linux found");
    let mut v: Vec<(u64, String)> = linux
        .processes(mem)
        .map(|p| {
            let p = p.expect("task reads");
            (p.pid, p.name)
        })
        .collect();
    v.sort();
    v
}

#[test]
fn real_dumps_round_trip_byte_for_byte_with_every_register() {
    for fixture in ["linux-6.12", "linux-6.1-la57"] {
        let src = Snapshot::open(fixture_file(fixture, "vmcore.elf").unwrap()).unwrap();
        let out = tmp(&format!("{fixture}.elf"));
        let mut seen = Vec::new();
        let mut progress = |p: Progress| seen.push(p);
        let report = capture_to_file(
            &src,
            &out,
            CaptureOptions {
                pause: None,
                progress: Some(&mut progress),
            },
        )
        .unwrap();
        let total: u64 = src.physical_ranges().iter().map(|r| r.end - r.start).sum();
        assert_eq!(report.consistency, Consistency::Live);
        assert_eq!(report.bytes_written, total, "{fixture}");
        assert_eq!(report.missing_bytes, 0);
        assert_eq!(report.segments, src.physical_ranges().len());
        assert_eq!(report.file_bytes, std::fs::metadata(&out).unwrap().len());
        let last = seen.last().copied().unwrap();
        assert_eq!(
            (last.stage, last.done, last.total, last.written),
            ("capture", total, total, Some(total))
        );
        assert!(seen.windows(2).all(|w| w[0].done < w[1].done));

        let copy = Snapshot::open(&out).unwrap();
        same_memory(&src, &copy);
        assert_eq!(copy.all_registers(), src.all_registers(), "{fixture}");
        let info: serde_json::Value = serde_json::from_str(copy.capture_info().unwrap()).unwrap();
        assert_eq!(info["consistency"], "live");
        assert_eq!(info["vcpus"], src.vcpu_count());
        assert_eq!(info["missing_ranges"], 0);

        // The copy is a guest the Linux walk reads: the same processes as the source, and
        // the guest's own (its ground truth's `comm` is the task name with /proc's kworker
        // suffix stripped, so a prefix of it).
        let regs = copy.all_registers().to_vec();
        let got = pids_and_names(&GuestMemory::new(copy), &regs);
        let src_regs = src.all_registers().to_vec();
        assert_eq!(got, pids_and_names(&GuestMemory::new(src), &src_regs));
        let gt = ground_truth(fixture);
        let mut want: Vec<(u64, String)> = gt["processes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["pid"].as_u64().unwrap(),
                    p["comm"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        want.sort();
        assert_eq!(got.len(), want.len(), "{fixture}");
        for ((pid, name), (gt_pid, gt_comm)) in got.iter().zip(&want) {
            assert_eq!(pid, gt_pid, "{fixture}");
            assert!(
                name.starts_with(gt_comm.as_str()),
                "{fixture}: pid {pid} {name} / {gt_comm}"
            );
        }
        std::fs::remove_file(&out).unwrap();
    }
}

#[test]
fn a_paused_capture_holds_the_domain_exactly_while_it_runs() {
    let snap = Snapshot::open(fixture_file("linux-6.12", "vmcore.elf").unwrap()).unwrap();
    let mut regs = snap.all_registers().to_vec();
    // One more vCPU with other registers: each vCPU's own state is written.
    let mut second = regs[0];
    second.rip ^= 0x1000;
    second.msr_lstar = 0xffff_ffff_8160_0000;
    second.sysenter_eip = 0x1234;
    regs.push(second);
    let sim = SimDomain::new(snap, &regs);
    let out = tmp("paused.elf");
    let held = Cell::new(0usize);
    let mut progress = |_: Progress| {
        assert_eq!(sim.state().pause_count(), 1, "paused while it is read");
        held.set(held.get() + 1);
    };
    let report = capture_to_file(
        &sim,
        &out,
        CaptureOptions {
            pause: Some(&sim),
            progress: Some(&mut progress),
        },
    )
    .unwrap();
    assert!(held.get() > 0);
    assert_eq!(sim.state().pause_count(), 0, "resumed");
    assert_eq!(report.consistency, Consistency::Paused);
    let paused_for = report.paused_for.expect("the pause is measured");
    assert!(paused_for <= report.elapsed);
    assert_eq!(report.vcpus as usize, regs.len());
    let copy = Snapshot::open(&out).unwrap();
    assert_eq!(copy.all_registers(), &regs[..]);
    same_memory(&sim, &copy);
    let info: serde_json::Value = serde_json::from_str(copy.capture_info().unwrap()).unwrap();
    assert_eq!(info["consistency"], "paused");
    std::fs::remove_file(&out).unwrap();
}

/// An output that fails after `left` bytes.
struct FailingWriter {
    left: usize,
}

impl Write for FailingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            return Err(std::io::Error::other("disk full"));
        }
        let n = buf.len().min(self.left);
        self.left -= n;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Seek for FailingWriter {
    fn seek(&mut self, _: SeekFrom) -> std::io::Result<u64> {
        Ok(0)
    }
}

#[test]
fn a_failing_output_still_resumes_the_domain() {
    let snap = Snapshot::open(fixture_file("linux-6.12", "vmcore.elf").unwrap()).unwrap();
    let regs = snap.all_registers().to_vec();
    let sim = SimDomain::new(snap, &regs);
    let e = capture(
        &sim,
        FailingWriter { left: 10 << 20 },
        CaptureOptions {
            pause: Some(&sim),
            progress: None,
        },
    )
    .unwrap_err();
    assert!(matches!(&e, Error::Io { .. }), "{e}");
    assert!(e.to_string().contains("disk full"), "{e}");
    assert_eq!(sim.state().pause_count(), 0, "resumed after the failure");
}

/// Memory made up on the fly (each 8-byte word is its own address), with chosen ranges that
/// fail to read, and one vCPU.
struct Synthetic {
    ranges: Vec<Range<u64>>,
    bad: Vec<Range<u64>>,
}

impl PhysicalMemory for Synthetic {
    fn name(&self) -> &'static str {
        "synthetic"
    }
    fn read_physical(&self, gpa: Gpa, buf: &mut [u8]) -> Result<()> {
        let end = gpa.0 + buf.len() as u64;
        let backed = self.ranges.iter().any(|r| r.start <= gpa.0 && end <= r.end);
        let bad = self.bad.iter().any(|b| b.start < end && gpa.0 < b.end);
        if !backed || bad {
            return Err(Error::PhysicalUnmapped {
                gpa,
                len: buf.len(),
                backend: "synthetic",
                max: Gpa(0),
            });
        }
        for (i, b) in buf.iter_mut().enumerate() {
            let a = gpa.0 + i as u64;
            *b = (a & !7).to_le_bytes()[(a & 7) as usize];
        }
        Ok(())
    }
    fn physical_ranges(&self) -> Vec<Range<u64>> {
        self.ranges.clone()
    }
}

impl VcpuState for Synthetic {
    fn vcpu_count(&self) -> u32 {
        1
    }
    fn registers(&self, vcpu: VcpuId) -> Result<Registers> {
        if vcpu.0 != 0 {
            return Err(Error::NoSuchVcpu { vcpu, count: 1 });
        }
        Ok(Registers {
            rip: 0xffff_ffff_8100_0000,
            ..Registers::default()
        })
    }
}

#[test]
fn unreadable_pages_are_missing_not_zero() {
    let mib = 1u64 << 20;
    let m = Synthetic {
        ranges: vec![0..8 * mib, 16 * mib..16 * mib + 0x3800],
        // One page, three pages across a chunk boundary, a whole chunk, a page at the end of
        // the second range (a partial page: the range ends mid-page).
        bad: vec![
            0x5000..0x6000,
            mib - 0x1000..mib + 0x2000,
            4 * mib..5 * mib,
            16 * mib + 0x3000..16 * mib + 0x3800,
        ],
    };
    let out = tmp("missing.elf");
    let r = capture_to_file(&m, &out, CaptureOptions::default()).unwrap();
    let missing = vec![
        0x5000..0x6000,
        mib - 0x1000..mib + 0x2000,
        4 * mib..5 * mib,
        16 * mib + 0x3000..16 * mib + 0x3800,
    ];
    assert_eq!(r.missing, missing);
    assert_eq!(r.missing_ranges, 4);
    assert_eq!(r.missing_bytes, 0x1000 + 0x3000 + mib + 0x800);
    // Readable runs: [0,5000) [6000, 1M-1000) [1M+2000, 4M) [5M, 8M) [16M, 16M+3000).
    assert_eq!(r.segments, 5);
    assert_eq!(r.bytes_written, 8 * mib + 0x3800 - r.missing_bytes);

    let copy = Snapshot::open(&out).unwrap();
    let info: serde_json::Value = serde_json::from_str(copy.capture_info().unwrap()).unwrap();
    let listed: Vec<Range<u64>> = info["missing"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[0].as_u64().unwrap()..p[1].as_u64().unwrap())
        .collect();
    assert_eq!(listed, missing);
    let mut b = [0u8; 8];
    for gap in &missing {
        // Nothing was invented there: the copy has no memory at either end of the gap.
        assert!(
            copy.read_physical(Gpa(gap.start), &mut b).is_err(),
            "{gap:x?}"
        );
        assert!(
            copy.read_physical(Gpa(gap.end - 8), &mut b).is_err(),
            "{gap:x?}"
        );
    }
    // The neighbours of each gap are intact.
    for a in [
        0x4ff8,
        0x6000,
        mib - 0x1008,
        mib + 0x2000,
        4 * mib - 8,
        5 * mib,
        16 * mib + 0x2ff8,
    ] {
        copy.read_physical(Gpa(a), &mut b).unwrap();
        assert_eq!(u64::from_le_bytes(b), a, "at {a:#x}");
    }
    assert_eq!(copy.all_registers()[0].rip, 0xffff_ffff_8100_0000);
    std::fs::remove_file(&out).unwrap();
}

#[test]
fn past_pn_xnum_program_headers_and_past_what_the_format_holds() {
    // 65,534 separate 16-byte ranges: with the note's, 65,535 program headers, which only
    // PN_XNUM can count.
    let ranges: Vec<Range<u64>> = (0..65_534u64)
        .map(|i| i * 0x1000..i * 0x1000 + 16)
        .collect();
    let m = Synthetic {
        ranges: ranges.clone(),
        bad: vec![],
    };
    let out = tmp("xnum.elf");
    let r = capture_to_file(&m, &out, CaptureOptions::default()).unwrap();
    assert_eq!(r.segments, 65_534);
    let raw = std::fs::read(&out).unwrap();
    assert_eq!(
        u16::from_le_bytes([raw[56], raw[57]]),
        0xffff,
        "e_phnum = PN_XNUM"
    );
    let copy = Snapshot::open(&out).unwrap();
    assert_eq!(copy.physical_ranges(), ranges);
    let mut b = [0u8; 8];
    copy.read_physical(Gpa(65_533 * 0x1000 + 8), &mut b)
        .unwrap();
    assert_eq!(u64::from_le_bytes(b), 65_533 * 0x1000 + 8);
    std::fs::remove_file(&out).unwrap();

    // One more range than the program headers of a readable core allow: refused, by name.
    let m = Synthetic {
        ranges: (0..MAX_SEGMENTS as u64 + 1)
            .map(|i| i * 0x1000..i * 0x1000 + 16)
            .collect(),
        bad: vec![],
    };
    let e = capture(
        &m,
        std::io::Cursor::new(Vec::new()),
        CaptureOptions::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("too fragmented"), "{e}");
}

/// The `snapshot` fuzz target's seed `fuzz/seeds/snapshot/xenvmi-capture`: a capture of two
/// pages with one unreadable between them, with its notes (written again with
/// `XENVMI_WRITE_SEED=1`). It must stay a core that reads back as written.
#[test]
#[allow(clippy::single_range_in_vec_init)] // one range of pages, not a vector of its numbers
fn the_fuzz_seed_is_a_readable_capture() {
    let seed = support::fixture::repo_root().join("fuzz/seeds/snapshot/xenvmi-capture");
    if std::env::var_os("XENVMI_WRITE_SEED").is_some() {
        // One range of guest memory and one unreadable range in it, not lists of addresses.
        #[allow(clippy::single_range_in_vec_init)]
        let m = Synthetic {
            ranges: vec![0..0x3000],
            bad: vec![0x1000..0x2000],
        };
        let r = capture_to_file(&m, &seed, CaptureOptions::default()).unwrap();
        assert_eq!(r.segments, 2);
    }
    let s = Snapshot::open(&seed).unwrap();
    assert_eq!(s.physical_ranges(), vec![0..0x1000, 0x2000..0x3000]);
    assert_eq!(s.all_registers()[0].rip, 0xffff_ffff_8100_0000);
    let info: serde_json::Value = serde_json::from_str(s.capture_info().unwrap()).unwrap();
    assert_eq!(info["missing"], serde_json::json!([[0x1000, 0x2000]]));
    let mut b = [0u8; 8];
    s.read_physical(Gpa(0x2008), &mut b).unwrap();
    assert_eq!(u64::from_le_bytes(b), 0x2008);
}
