//! Requests written byte by byte at the offsets of Xen 4.17's `vm_event.h` (as Xen's
//! `vm_event_put_request` does), decoded and answered by the real consumer code; and the
//! producer's directions (requests encoded, responses decoded) checked against them.

use super::*;
use crate::vmevent::ring::{BackRing, FrontRing, RingPage};

/// A request as Xen fills it: version stamped, vCPU paused for sync events.
pub(crate) fn request(
    reason: u32,
    vcpu: u32,
    flags: u32,
    u: &[(usize, &[u8])],
) -> [u8; ENTRY_SIZE] {
    let mut e = [0u8; ENTRY_SIZE];
    e[0..4].copy_from_slice(&7u32.to_le_bytes());
    e[4..8].copy_from_slice(&flags.to_le_bytes());
    e[8..12].copy_from_slice(&reason.to_le_bytes());
    e[12..16].copy_from_slice(&vcpu.to_le_bytes());
    for (off, bytes) in u {
        e[24 + off..24 + off + bytes.len()].copy_from_slice(bytes);
    }
    // Registers: rip and cr3 at their documented offsets in data.regs.x86.
    e[56 + 152..56 + 160].copy_from_slice(&0xffff_ffff_8100_1234u64.to_le_bytes());
    e[56 + 176..56 + 184].copy_from_slice(&0x1a2b_3000u64.to_le_bytes());
    e
}

fn le64(v: u64) -> [u8; 8] {
    v.to_le_bytes()
}

fn word(e: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(e[off..off + 4].try_into().unwrap())
}

#[test]
fn every_reason_decodes_to_its_payload() {
    let cr4 = request(
        4,
        1,
        1,
        &[
            (0, &2u32.to_le_bytes()),
            (8, &le64(0x6f0)),
            (16, &le64(0x3006f0)),
        ],
    );
    let e = decode_request(&cr4).unwrap();
    assert_eq!(e.vcpu, VcpuId(1));
    assert!(e.paused);
    assert_eq!(
        e.kind,
        EventKind::ControlRegister {
            register: ControlRegister::Cr4,
            old: 0x3006f0,
            new: 0x6f0
        }
    );
    assert_eq!(e.regs.rip, 0xffff_ffff_8100_1234);
    assert_eq!(e.regs.cr3, 0x1a2b_3000);

    let msr = request(
        5,
        0,
        1,
        &[
            (0, &le64(0xc000_0082)),
            (8, &le64(0xdead)),
            (16, &le64(0xbeef)),
        ],
    );
    assert_eq!(
        decode_request(&msr).unwrap().kind,
        EventKind::Msr {
            index: 0xc000_0082,
            new: 0xdead,
            old: 0xbeef
        }
    );

    let mut mem = request(
        1,
        0,
        1 | flag::ALTERNATE_P2M,
        &[
            (0, &le64(0x110)),
            (8, &le64(0x18)),
            (16, &le64(0xffff_8880_0011_0018)),
            (24, &(2u32 | 8).to_le_bytes()),
        ],
    );
    mem[16..18].copy_from_slice(&3u16.to_le_bytes());
    let e = decode_request(&mem).unwrap();
    assert_eq!(e.view, Some(ViewId(3)));
    assert_eq!(
        e.kind,
        EventKind::MemoryAccess {
            gfn: Gfn(0x110),
            offset: 0x18,
            gla: Some(Gva(0xffff_8880_0011_0018)),
            access: MemAccess::W,
            in_page_table_walk: false
        }
    );

    let bp = request(
        6,
        0,
        1,
        &[(0, &le64(0x1000)), (16, &1u32.to_le_bytes()), (20, &[6])],
    );
    assert_eq!(
        decode_request(&bp).unwrap().kind,
        EventKind::SoftwareBreakpoint {
            gfn: Gfn(0x1000),
            insn_length: 1,
            trap_type: 6
        }
    );
    let ss = request(7, 0, 1, &[(0, &le64(0x2000))]);
    assert_eq!(
        decode_request(&ss).unwrap().kind,
        EventKind::SingleStep { gfn: Gfn(0x2000) }
    );
    let cpuid = request(
        10,
        0,
        1,
        &[
            (0, &2u32.to_le_bytes()),
            (4, &0x4000_0000u32.to_le_bytes()),
            (8, &1u32.to_le_bytes()),
        ],
    );
    assert_eq!(
        decode_request(&cpuid).unwrap().kind,
        EventKind::Cpuid {
            leaf: 0x4000_0000,
            subleaf: 1,
            insn_length: 2
        }
    );
    let desc = request(
        13,
        0,
        1,
        &[(0, &7u32.to_le_bytes()), (8, &le64(9)), (16, &[2, 1])],
    );
    assert_eq!(
        decode_request(&desc).unwrap().kind,
        EventKind::DescriptorAccess {
            descriptor: 2,
            is_write: true,
            instr_info: 7,
            exit_qualification: 9
        }
    );
    assert_eq!(
        decode_request(&request(8, 0, 1, &[])).unwrap().kind,
        EventKind::GuestRequest
    );
    assert_eq!(
        decode_request(&request(14, 0, 1, &[])).unwrap().kind,
        EventKind::EmulUnimplemented
    );
    let io = request(
        16,
        0,
        1,
        &[
            (0, &4u32.to_le_bytes()),
            (4, &0x3f8u16.to_le_bytes()),
            (6, &[1, 0]),
        ],
    );
    assert_eq!(
        decode_request(&io).unwrap().kind,
        EventKind::IoInstruction {
            bytes: 4,
            port: 0x3f8,
            is_in: true,
            is_string: false
        }
    );
    assert_eq!(
        decode_request(&request(99, 0, 1, &[])).unwrap().kind,
        EventKind::Unknown { reason: 99 }
    );
    // A control-register index Xen does not define.
    let bad_cr = request(4, 0, 1, &[(0, &9u32.to_le_bytes())]);
    assert_eq!(
        decode_request(&bad_cr).unwrap().kind,
        EventKind::Unknown { reason: 4 }
    );
}

#[test]
fn deny_echoes_version_vcpu_reason_and_payload() {
    let req = request(
        4,
        5,
        flag::VCPU_PAUSED,
        &[
            (0, &2u32.to_le_bytes()),
            (8, &le64(0x6f0)),
            (16, &le64(0x3006f0)),
        ],
    );
    let e = decode_request(&req).unwrap();
    let mut out = [0u8; ENTRY_SIZE];
    encode_response(&req, &e, &Response::deny(), &mut out);
    assert_eq!(word(&out, 0), 7, "version");
    assert_eq!(word(&out, 4), flag::VCPU_PAUSED | flag::DENY);
    assert_eq!(word(&out, 8), 4, "reason");
    assert_eq!(word(&out, 12), 5, "vcpu");
    assert_eq!(
        &out[24..56],
        &req[24..56],
        "u payload echoed (DENY needs index)"
    );
}

#[test]
fn responses_carry_views_registers_and_fast_singlestep() {
    let req = request(
        1,
        0,
        flag::VCPU_PAUSED | flag::ALTERNATE_P2M,
        &[(0, &le64(0x110))],
    );
    let e = decode_request(&req).unwrap();
    let mut out = [0u8; ENTRY_SIZE];
    encode_response(
        &req,
        &e,
        &Response::proceed()
            .switch_view(ViewId(0))
            .toggle_singlestep(),
        &mut out,
    );
    assert_eq!(
        word(&out, 4),
        flag::VCPU_PAUSED | flag::ALTERNATE_P2M | flag::TOGGLE_SINGLESTEP
    );
    assert_eq!(u16::from_le_bytes([out[16], out[17]]), 0);

    encode_response(
        &req,
        &e,
        &Response::proceed().fast_singlestep(ViewId(2)),
        &mut out,
    );
    assert_eq!(word(&out, 4), flag::VCPU_PAUSED | flag::FAST_SINGLESTEP);
    assert_eq!(
        u16::from_le_bytes([out[24], out[25]]),
        2,
        "u.fast_singlestep.p2midx"
    );

    let mut regs = e.regs;
    regs.rip += 2;
    regs.rax = 0x1234;
    encode_response(&req, &e, &Response::proceed().set_registers(regs), &mut out);
    assert_eq!(word(&out, 4), flag::VCPU_PAUSED | flag::SET_REGISTERS);
    let back = decode_request(&out).unwrap();
    assert_eq!(
        (back.regs.rip, back.regs.rax, back.regs.cr3),
        (0xffff_ffff_8100_1236, 0x1234, 0x1a2b_3000)
    );

    // An async event (vCPU not paused) must not claim to unpause it.
    let req = request(4, 0, 0, &[(0, &1u32.to_le_bytes())]);
    let e = decode_request(&req).unwrap();
    encode_response(&req, &e, &Response::proceed(), &mut out);
    assert_eq!(word(&out, 4), 0);
}

/// A descriptor-table access (reason 13) is answered with `EMULATE` whatever the handler
/// decided, and so is the safe answer a failed handler gets: Xen carries the instruction out
/// only then, and otherwise re-executes it forever (xen-access answers with `EMULATE` too).
/// Other events keep exactly the handler's flags.
#[test]
fn descriptor_accesses_are_always_answered_with_emulate() {
    let req = request(13, 0, flag::VCPU_PAUSED, &[(16, &[1]), (17, &[0])]);
    let e = decode_request(&req).unwrap();
    assert!(matches!(
        e.kind,
        EventKind::DescriptorAccess { descriptor: 1, .. }
    ));
    let mut out = [0u8; ENTRY_SIZE];
    encode_response(&req, &e, &Response::proceed(), &mut out);
    assert_eq!(word(&out, 4), flag::VCPU_PAUSED | flag::EMULATE);
    encode_safe_response(&req, &mut out);
    assert_eq!(word(&out, 4), flag::VCPU_PAUSED | flag::EMULATE);
    let cr = request(4, 0, flag::VCPU_PAUSED, &[]);
    let e = decode_request(&cr).unwrap();
    encode_response(&cr, &e, &Response::proceed(), &mut out);
    assert_eq!(word(&out, 4), flag::VCPU_PAUSED);
    encode_safe_response(&cr, &mut out);
    assert_eq!(word(&out, 4), flag::VCPU_PAUSED);
}

#[test]
fn wrong_versions_are_rejected_but_still_answered_safely() {
    for v in [0u32, 6, 8, u32::MAX] {
        let mut req = request(4, 3, flag::VCPU_PAUSED, &[]);
        req[0..4].copy_from_slice(&v.to_le_bytes());
        let err = decode_request(&req).unwrap_err().to_string();
        assert!(err.contains(&format!("version {v}")), "{err}");
        let mut out = [0u8; ENTRY_SIZE];
        encode_safe_response(&req, &mut out);
        assert_eq!(
            (word(&out, 0), word(&out, 4), word(&out, 8), word(&out, 12)),
            (7, flag::VCPU_PAUSED, 4, 3)
        );
    }
}

/// One consumer pass: take every request, answer it, publish.
fn drain(page: &RingPage, back: &mut BackRing, answer: impl Fn(&Event) -> Response) -> usize {
    let mut req = [0u8; ENTRY_SIZE];
    let mut out = [0u8; ENTRY_SIZE];
    let mut n = 0;
    while back.get_request(page, &mut req) {
        match decode_request(&req) {
            Ok(e) => encode_response(&req, &e, &answer(&e), &mut out),
            Err(_) => encode_safe_response(&req, &mut out),
        }
        assert!(back.put_response(page, &out));
        n += 1;
    }
    back.push_responses(page);
    n
}

#[test]
fn more_vcpus_than_slots_with_wraparound_all_get_answers() {
    for start in [0u32, u32::MAX - 5] {
        let page = RingPage::boxed();
        let mut front = FrontRing::starting_at(&page, start);
        let mut back = BackRing::attach(&page);
        // 20 vCPUs each raise a CR3 event; the producer (Xen) can only queue 8 at a time and
        // holds the rest paused until responses free slots.
        let mut waiting: Vec<u32> = (0..20).collect();
        let mut answered = [false; 20];
        let mut rounds = 0;
        while answered.iter().any(|a| !a) {
            rounds += 1;
            assert!(rounds < 100, "no progress");
            while let Some(&v) = waiting.first() {
                let req = request(
                    4,
                    v,
                    flag::VCPU_PAUSED,
                    &[(0, &1u32.to_le_bytes()), (8, &le64(0x1000 * v as u64))],
                );
                if !front.put_request(&page, &req) {
                    break;
                }
                waiting.remove(0);
            }
            drain(&page, &mut back, |_| Response::proceed());
            let mut rsp = [0u8; ENTRY_SIZE];
            while front.get_response(&page, &mut rsp) {
                assert_eq!(word(&rsp, 0), 7);
                assert_eq!(
                    word(&rsp, 4) & flag::VCPU_PAUSED,
                    flag::VCPU_PAUSED,
                    "unpauses"
                );
                let v = word(&rsp, 12) as usize;
                assert!(!answered[v], "vCPU {v} answered twice");
                answered[v] = true;
            }
        }
        assert!(rounds >= 3, "20 events through 8 slots need several rounds");
        assert_eq!(back.outstanding(), 0);
    }
}

/// Registers with every field the format carries set to a distinct value (no `msr_cstar`, no
/// IDTR; 32-bit bases for CS, SS, DS, ES).
fn full_regs() -> Registers {
    let mut n = 0x1000u64;
    let mut next = || {
        n += 0x1111;
        n
    };
    Registers {
        rax: next(),
        rbx: next(),
        rcx: next(),
        rdx: next(),
        rsi: next(),
        rdi: next(),
        rsp: next(),
        rbp: next(),
        r8: next(),
        r9: next(),
        r10: next(),
        r11: next(),
        r12: next(),
        r13: next(),
        r14: next(),
        r15: next(),
        rip: next(),
        rflags: next(),
        cr0: next(),
        cr2: next(),
        cr3: next(),
        cr4: next(),
        efer: next(),
        cs_sel: 0x10,
        ss_sel: 0x18,
        cs_base: next(),
        ds_base: next(),
        es_base: next(),
        fs_base: 0xffff_8880_0000_0000 | next(),
        gs_base: 0xffff_8880_1000_0000 | next(),
        ss_base: next(),
        kernel_gs_base: 0x7fff_0000_0000 | next(),
        gdtr_base: 0xffff_fe00_0000_0000 | next(),
        gdtr_limit: 0x7f,
        idtr_base: 0,
        idtr_limit: 0,
        sysenter_cs: next(),
        sysenter_esp: next(),
        sysenter_eip: next(),
        msr_star: next(),
        msr_lstar: next(),
        msr_cstar: 0,
    }
}

#[test]
fn every_kind_encodes_to_a_request_that_decodes_back() {
    let kinds = [
        EventKind::ControlRegister {
            register: ControlRegister::Xcr0,
            old: 3,
            new: 7,
        },
        EventKind::Msr {
            index: 0xc000_0082,
            old: 1,
            new: 2,
        },
        EventKind::MemoryAccess {
            gfn: Gfn(0x110),
            offset: 0x18,
            gla: Some(Gva(0xffff_8880_0011_0018)),
            access: MemAccess::W | MemAccess::X,
            in_page_table_walk: true,
        },
        EventKind::MemoryAccess {
            gfn: Gfn(0x111),
            offset: 0,
            gla: None,
            access: MemAccess::R,
            in_page_table_walk: false,
        },
        EventKind::SoftwareBreakpoint {
            gfn: Gfn(0x1000),
            insn_length: 1,
            trap_type: 6,
        },
        EventKind::SingleStep { gfn: Gfn(0x2000) },
        EventKind::DebugException {
            gfn: Gfn(0x3000),
            pending_dbg: 0x4000,
            insn_length: 2,
            trap_type: 5,
        },
        EventKind::Cpuid {
            leaf: 0x4000_0000,
            subleaf: 1,
            insn_length: 2,
        },
        EventKind::DescriptorAccess {
            descriptor: 2,
            is_write: true,
            instr_info: 7,
            exit_qualification: 9,
        },
        EventKind::GuestRequest,
        EventKind::EmulUnimplemented,
        EventKind::Interrupt {
            vector: 14,
            kind: 3,
            error_code: 2,
            cr2: 0xdead_b000,
        },
        EventKind::VmExit {
            reason: 48,
            qualification: 0x181,
        },
        EventKind::IoInstruction {
            bytes: 4,
            port: 0x3f8,
            is_in: false,
            is_string: true,
        },
        EventKind::Unknown { reason: 99 },
    ];
    let mut raw = [0u8; ENTRY_SIZE];
    for (i, kind) in kinds.into_iter().enumerate() {
        for (view, paused) in [(None, true), (Some(ViewId(3)), false)] {
            let e = Event::new(VcpuId(i as u32), view, paused, kind, full_regs());
            encode_request(&e, &mut raw);
            assert_eq!(word(&raw, 0), INTERFACE_VERSION);
            assert_eq!(decode_request(&raw).unwrap(), e, "{kind:?}");
        }
    }
    // A decoded request encodes to the same bytes, payload bytes its kind does not cover
    // included (here the padding after the CR index).
    let req = request(
        4,
        2,
        flag::VCPU_PAUSED,
        &[
            (0, &1u32.to_le_bytes()),
            (4, &[0xaa; 4]),
            (8, &le64(0x1000)),
        ],
    );
    encode_request(&decode_request(&req).unwrap(), &mut raw);
    assert_eq!(raw, req);
}

#[test]
fn responses_decode_as_xen_reads_them() {
    let req = request(
        6,
        4,
        flag::VCPU_PAUSED | flag::ALTERNATE_P2M,
        &[(0, &le64(0x1000)), (16, &1u32.to_le_bytes()), (20, &[6])],
    );
    let e = decode_request(&req).unwrap();
    let mut regs = e.regs;
    regs.rax = 0x1234;
    let insn = [0x0fu8; 16];
    let answers = [
        Response::proceed(),
        Response::deny(),
        Response::emulate_nowrite(),
        Response::proceed()
            .switch_view(ViewId(2))
            .toggle_singlestep(),
        Response::proceed().fast_singlestep(ViewId(1)),
        Response::proceed().set_registers(regs),
        Response::proceed().emulate_instruction(insn),
    ];
    let mut out = [0u8; ENTRY_SIZE];
    for rsp in answers {
        encode_response(&req, &e, &rsp, &mut out);
        let d = decode_response(&out).unwrap();
        assert_eq!((d.vcpu, d.reason, d.unpause), (VcpuId(4), 6, true));
        assert_eq!(d.response.flags(), rsp.flags(), "{rsp:?}");
        assert_eq!(d.response.view(), rsp.view(), "{rsp:?}");
        assert_eq!(
            d.response.fast_singlestep_view(),
            rsp.fast_singlestep_view(),
            "{rsp:?}"
        );
        assert_eq!(d.response.instruction(), rsp.instruction(), "{rsp:?}");
        // SET_REGISTERS carries the general-purpose registers, rflags and rip; the rest of the
        // area is the request's.
        assert_eq!(
            d.response.registers().map(|r| (r.rax, r.rip, r.cr3)),
            rsp.registers().map(|r| (r.rax, r.rip, r.cr3)),
            "{rsp:?}"
        );
    }
    // An async event's answer does not unpause; a safe answer does nothing else.
    let req = request(4, 1, 0, &[(0, &1u32.to_le_bytes())]);
    encode_safe_response(&req, &mut out);
    let d = decode_response(&out).unwrap();
    assert_eq!((d.unpause, d.response), (false, Response::proceed()));
    encode_release(VcpuId(7), &mut out);
    let d = decode_response(&out).unwrap();
    assert_eq!((d.vcpu, d.unpause), (VcpuId(7), true));
    // Xen skips a response of another version.
    out[0..4].copy_from_slice(&6u32.to_le_bytes());
    let err = decode_response(&out).unwrap_err().to_string();
    assert!(err.contains("version 6"), "{err}");
}
