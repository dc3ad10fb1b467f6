//! Exercise the Xen backend against a live domain: capabilities, registers, foreign memory,
//! monitors (CR0/CR3/CR4, MSR, INT3), mem_access in an altp2m view, DENY and EMULATE responses,
//! and teardown; then check the guest still runs and the ring can be attached again.
//!
//! Written for the real-Xen suite's tiny PVH guest (CR3 loop, writes to gfn 0x110, CR0.WP and
//! CR4.PGE toggles, `wrmsr 0x174`, `int3`), but works on any HVM/PVH domain.
//!
//! ```text
//! cargo build --release --features xen --example xen-probe
//! sudo ./target/release/examples/xen-probe DOMID [SECONDS] [DATA_GFN] [BP_GPA] [BP_COUNT_GPA]
//! ```

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use xenvmi::backend::xen::XenDomain;
use xenvmi::backend::{ControlRegister, MemAccess, PhysicalMemory, VcpuState};
use xenvmi::event::hooks::{Hooks, Placement};
use xenvmi::event::session::{RunOptions, Session};
use xenvmi::event::{EventKind, Response};
use xenvmi::{Gpa, VcpuId, ViewId};

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(2),
        Err(e) => {
            eprintln!("xen-probe: {e}");
            ExitCode::FAILURE
        }
    }
}

fn counter(dom: &XenDomain, gfn: u64) -> Result<u32, String> {
    let mut b = [0u8; 4];
    dom.read_physical(Gpa(gfn << 12), &mut b)
        .map_err(|e| e.to_string())?;
    Ok(u32::from_le_bytes(b))
}

fn run() -> Result<bool, String> {
    let mut args = std::env::args().skip(1);
    let domain = args
        .next()
        .ok_or("usage: xen-probe DOMID [SECONDS] [DATA_GFN] [BP_GPA] [BP_COUNT_GPA]")?;
    let secs: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(10);
    let data_gfn: u64 = args
        .next()
        .and_then(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok())
        .unwrap_or(0x110);
    // Optional: a guest-physical code address for a stealth breakpoint (phase 2).
    let bp_gpa: Option<u64> = args
        .next()
        .and_then(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok());
    // Optional: where the guest's #BP handler counts its int3s (checks their re-injection).
    let bp_count_gpa: Option<u64> = args
        .next()
        .and_then(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok());

    let dom = XenDomain::open(&domain).map_err(|e| e.to_string())?;
    let caps = dom.capabilities().clone();
    println!("PROBE caps {caps:?} singlestep={}", caps.singlestep());
    let r = dom.registers(VcpuId(0)).map_err(|e| e.to_string())?;
    println!(
        "PROBE vcpu0 rip={:#x} cr0={:#x} cr3={:#x} cr4={:#x}",
        r.rip, r.cr0, r.cr3, r.cr4
    );
    let c0 = counter(&dom, data_gfn)?;
    std::thread::sleep(Duration::from_millis(500));
    let c1 = counter(&dom, data_gfn)?;
    println!(
        "PROBE data page counter {c0} -> {c1} (guest running: {})",
        c1 != c0
    );

    let mut counts: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut denied_cr4 = None;
    let mut denied_msr = None;
    // The "old" value of the next write after each denied one: equal to the denied write's
    // old value if DENY really kept the register as it was.
    let mut next_cr4_old = None;
    let mut next_msr_old = None;
    // Values the events carried (a few of each), for the suite to compare with the guest's.
    let mut cr3_values = BTreeSet::new();
    let mut int3_rips = BTreeSet::new();
    let stats;
    {
        let mut s = Session::new(&dom).map_err(|e| e.to_string())?;
        common::trap_tiny_guest(
            &mut s,
            &[
                ControlRegister::Cr0,
                ControlRegister::Cr3,
                ControlRegister::Cr4,
            ],
            data_gfn,
        )?;
        let stop = s.stop_handle();
        stop.stop_on_signals().map_err(|e| e.to_string())?;
        let t0 = Instant::now();
        stats = s
            .run(
                &RunOptions {
                    poll: Duration::from_millis(100),
                    max_events: Some(200_000),
                    max_idle_polls: Some(50),
                },
                |e| {
                    if t0.elapsed() > Duration::from_secs(secs) {
                        stop.stop();
                    }
                    match e.kind {
                        EventKind::ControlRegister { register, old, new } => {
                            *counts
                                .entry(match register {
                                    ControlRegister::Cr0 => "cr0",
                                    ControlRegister::Cr3 => "cr3",
                                    ControlRegister::Cr4 => "cr4",
                                    ControlRegister::Xcr0 => "xcr0",
                                })
                                .or_default() += 1;
                            if register == ControlRegister::Cr3 && cr3_values.len() < 8 {
                                cr3_values.insert(new);
                            }
                            if register == ControlRegister::Cr4 && denied_cr4.is_none() {
                                denied_cr4 = Some((old, new));
                                return Response::deny();
                            }
                            if register == ControlRegister::Cr4 && next_cr4_old.is_none() {
                                next_cr4_old = Some(old);
                            }
                            Response::proceed()
                        }
                        EventKind::Msr { index, old, new } => {
                            *counts.entry("msr").or_default() += 1;
                            if denied_msr.is_none() {
                                denied_msr = Some((index, old, new));
                                return Response::deny();
                            }
                            if next_msr_old.is_none() {
                                next_msr_old = Some(old);
                            }
                            Response::proceed()
                        }
                        EventKind::MemoryAccess { gfn, access, .. } => {
                            *counts
                                .entry(if gfn.0 == data_gfn && access.contains(MemAccess::W) {
                                    "mem_write_data_gfn"
                                } else {
                                    "mem_other"
                                })
                                .or_default() += 1;
                            Response::emulate()
                        }
                        EventKind::SoftwareBreakpoint { insn_length, .. } => {
                            *counts.entry("int3").or_default() += 1;
                            if int3_rips.len() < 8 {
                                int3_rips.insert(e.regs.rip);
                            }
                            // Not re-injected: skip the int3 so the guest goes on.
                            let mut regs = e.regs;
                            regs.rip += insn_length.max(1) as u64;
                            Response::proceed().set_registers(regs)
                        }
                        _ => {
                            *counts.entry("other").or_default() += 1;
                            Response::proceed()
                        }
                    }
                },
            )
            .map_err(|e| e.to_string())?;
        s.teardown().map_err(|e| e.to_string())?;
    }
    println!(
        "PROBE events {} mean {:?} slowest {:?} interrupted {}",
        stats.events,
        stats.mean(),
        stats.slowest,
        stats.interrupted
    );
    println!("PROBE counts {counts:?}");
    println!("PROBE denied cr4 {denied_cr4:x?} msr {denied_msr:x?}");
    println!("PROBE cr3 values {cr3_values:x?} int3 at {int3_rips:x?}");
    let cr4_held = matches!((denied_cr4, next_cr4_old), (Some((o, _)), Some(n)) if o == n);
    let msr_held = matches!((denied_msr, next_msr_old), (Some((_, o, _)), Some(n)) if o == n);
    println!(
        "PROBE deny held: cr4 {cr4_held} msr {msr_held} (next writes saw old cr4 {next_cr4_old:x?} msr {next_msr_old:x?})"
    );
    let view0 = ViewId::HOST;
    let _ = view0;
    let c2 = counter(&dom, data_gfn)?;
    std::thread::sleep(Duration::from_millis(500));
    let c3 = counter(&dom, data_gfn)?;
    println!(
        "PROBE after teardown: counter {c2} -> {c3} (guest running: {})",
        c3 != c2
    );
    let stealth_ok = match bp_gpa {
        Some(gpa) => {
            hooks_phase(&dom, Placement::Stealth, gpa, data_gfn, bp_count_gpa)?
                & hooks_phase(&dom, Placement::InPlace, gpa, data_gfn, bp_count_gpa)?
        }
        None => true,
    };
    drop(dom);
    // A second monitor can attach at once (no EBUSY).
    let again = XenDomain::open(&domain).and_then(|d| Session::new(&d).map(drop));
    println!(
        "PROBE re-attach: {}",
        match &again {
            Ok(()) => "ok".to_string(),
            Err(e) => e.to_string(),
        }
    );
    let ok = stats.events > 0 && c3 != c2 && again.is_ok() && stealth_ok && cr4_held && msr_held;
    println!("PROBE RESULT {}", if ok { "PASS" } else { "FAIL" });
    Ok(ok)
}

/// Phase 2: the hook manager on the guest's loop head at `gpa`, with `placement` (stealth: an
/// `int3` only instruction fetches see, stepped over per vCPU in view 0; in place: the `int3`
/// in the page, stepped over by Xen's emulator), for 5 s. The guest's own `int3`s are handed
/// back to it: its `#BP` handler counts them in `bp_count` (at `bp_count_gpa`), which must grow
/// by exactly the number of int3s the guest executed (one every 16 iterations of its loop,
/// counted in its data page), checked at every hit. (The number of injections can be higher:
/// when the delivery of an injected #BP faults on a hooked page, Xen lets the guest execute the
/// int3 again rather than re-inject, and that raises a second event.)
fn hooks_phase(
    dom: &XenDomain,
    placement: Placement,
    gpa: u64,
    data_gfn: u64,
    bp_count_gpa: Option<u64>,
) -> Result<bool, String> {
    let name = match placement {
        Placement::Stealth => "stealth",
        Placement::InPlace => "in-place",
    };
    let read_u32 = |a: u64| -> Result<u32, String> {
        let mut b = [0u8; 4];
        dom.read_physical(Gpa(a), &mut b)
            .map_err(|e| e.to_string())?;
        Ok(u32::from_le_bytes(b))
    };
    let mut original = [0u8; 1];
    dom.read_physical(Gpa(gpa), &mut original)
        .map_err(|e| e.to_string())?;
    let (mut hits, mut exact, mut first) = (0u64, true, None::<(u32, u32)>);
    let (stats, hook_stats, armed_byte);
    {
        let mut s = Session::new(dom).map_err(|e| e.to_string())?;
        let mut hooks = Hooks::new(&mut s, placement).map_err(|e| e.to_string())?;
        hooks.add(&mut s, Gpa(gpa)).map_err(|e| e.to_string())?;
        // What guest memory (view 0) holds while armed: the original (stealth) or the int3.
        let mut now = [0u8; 1];
        dom.read_physical(Gpa(gpa), &mut now)
            .map_err(|e| e.to_string())?;
        armed_byte = now[0];
        let mem = xenvmi::mem::GuestMemory::new(dom);
        let stop = s.stop_handle();
        let t0 = Instant::now();
        stats = hooks
            .run(
                &mut s,
                &mem,
                &RunOptions {
                    poll: Duration::from_millis(100),
                    max_events: Some(200_000),
                    max_idle_polls: Some(50),
                },
                |ctx| {
                    if t0.elapsed() > Duration::from_secs(5) {
                        stop.stop();
                    }
                    if ctx.hit().is_some() {
                        hits += 1;
                        if let Some(at) = bp_count_gpa {
                            // At the loop head the guest has completed `data_page` iterations
                            // and executed an int3 in every 16th: it must have taken exactly as
                            // many #BPs since the first hit as int3s it executed since then.
                            let count = read_u32(at).map_err(std::io::Error::other)?;
                            let iterations =
                                read_u32(data_gfn << 12).map_err(std::io::Error::other)?;
                            let (c0, i0) = *first.get_or_insert((count, iterations));
                            exact &= count.wrapping_sub(c0) == iterations / 16 - i0 / 16;
                        }
                    }
                    Ok::<_, std::io::Error>(Response::proceed())
                },
            )
            .map_err(|e| e.to_string())?;
        hook_stats = hooks.stats();
        s.teardown().map_err(|e| e.to_string())?;
    }
    let c0 = counter(dom, data_gfn)?;
    std::thread::sleep(Duration::from_millis(500));
    let c1 = counter(dom, data_gfn)?;
    let mut after = [0u8; 1];
    dom.read_physical(Gpa(gpa), &mut after)
        .map_err(|e| e.to_string())?;
    let given = hook_stats.reinjected;
    println!(
        "PROBE hooks {name}: hits {hits} events {} mean {:?}; guest int3s handed back {given}, \
         guest #BPs = int3s executed at every hit: {exact}; armed byte in guest memory {armed_byte:#04x} \
         (original {:#04x}); after teardown byte {:#04x}, counter {c0} -> {c1} (guest running: {})",
        stats.events,
        stats.mean(),
        original[0],
        after[0],
        c1 != c0
    );
    let armed_ok = match placement {
        Placement::Stealth => armed_byte == original[0],
        Placement::InPlace => armed_byte == 0xcc,
    };
    Ok(hits > 0
        && armed_ok
        && after == original
        && c1 != c0
        && (bp_count_gpa.is_none() || (given > 0 && exact)))
}
