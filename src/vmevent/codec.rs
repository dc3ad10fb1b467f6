//! The vm_event codec, both directions: requests to [`Event`]s and back, [`Response`]s to
//! bytes and back.
//!
//! The event layer decodes each request once, at the ring, into an [`Event`] (the vCPU, the
//! view it occurred in, its registers and a typed [`EventKind`]), and a handler answers with a
//! [`Response`] (continue, deny, emulate, set registers, toggle single-step, fast single-step
//! into a view, switch view), which [`encode_response`] turns into the 400 bytes Xen expects.
//! Every response carries the interface version, the vCPU id, the request's reason and its
//! echoed payload (Xen needs them for DENY), and unpauses the vCPU if the request paused it,
//! also for reasons this crate does not know.
//!
//! The simulated domain runs the other two directions, as Xen does: [`encode_request`] writes
//! an [`Event`] built with [`Event::new`] as a request, and [`decode_response`] reads what the
//! monitor answered. Each field is read and written at one place, so producer and consumer
//! cannot disagree on the layout.

use super::abi::{
    ctrlreg, entry, flag, mem_access, reason, regs as r, ENTRY_SIZE, INTERFACE_VERSION,
};
use super::{ControlRegister, Injection, MemAccess};
use crate::addr::{Gfn, Gva, VcpuId, ViewId};
use crate::bytes::{u16_at, u32_at, u64_at};
use crate::error::{Error, Result};
use crate::regs::Registers;

/// What happened, with the payload of its reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventKind {
    /// A write to CR0/CR3/CR4/XCR0 (before it takes effect on sync monitors).
    ControlRegister {
        /// Which register.
        register: ControlRegister,
        /// Value before.
        old: u64,
        /// Value being written.
        new: u64,
    },
    /// `wrmsr`.
    Msr {
        /// MSR index.
        index: u64,
        /// Value before.
        old: u64,
        /// Value being written.
        new: u64,
    },
    /// An access that the frame's permissions in the current view do not allow.
    MemoryAccess {
        /// The frame.
        gfn: Gfn,
        /// Offset inside the frame.
        offset: u64,
        /// The linear address, when Xen knows it.
        gla: Option<Gva>,
        /// The kind of access that faulted.
        access: MemAccess,
        /// The fault happened while the CPU walked guest page tables.
        in_page_table_walk: bool,
    },
    /// `int3`.
    SoftwareBreakpoint {
        /// Frame of the instruction.
        gfn: Gfn,
        /// Instruction length.
        insn_length: u32,
        /// Event type for re-injection (`XEN_DMOP_EVENT_*`).
        trap_type: u8,
    },
    /// One single-step completed.
    SingleStep {
        /// Frame of the next instruction.
        gfn: Gfn,
    },
    /// A debug exception.
    DebugException {
        /// Frame of the instruction.
        gfn: Gfn,
        /// Pending debug exceptions (DR6 bits).
        pending_dbg: u64,
        /// Instruction length.
        insn_length: u32,
        /// Event type for re-injection.
        trap_type: u8,
    },
    /// `cpuid`.
    Cpuid {
        /// Leaf (EAX).
        leaf: u32,
        /// Sub-leaf (ECX).
        subleaf: u32,
        /// Instruction length.
        insn_length: u32,
    },
    /// LGDT/SGDT/LIDT/SIDT/LLDT/SLDT/LTR/STR.
    DescriptorAccess {
        /// 1 IDTR, 2 GDTR, 3 LDTR, 4 TR.
        descriptor: u8,
        /// A load (write to the register) rather than a store.
        is_write: bool,
        /// VMX instruction information.
        instr_info: u32,
        /// VMX exit qualification.
        exit_qualification: u64,
    },
    /// A hypercall from the guest asking for the monitor.
    GuestRequest,
    /// An instruction Xen's emulator does not implement.
    EmulUnimplemented,
    /// An interrupt (after `GET_NEXT_INTERRUPT`).
    Interrupt {
        /// Vector.
        vector: u32,
        /// Type.
        kind: u32,
        /// Error code.
        error_code: u32,
        /// CR2 (for page faults).
        cr2: u64,
    },
    /// A VM exit (vmexit monitor).
    VmExit {
        /// Exit reason.
        reason: u64,
        /// Exit qualification.
        qualification: u64,
    },
    /// An I/O instruction (Xen 4.18+).
    IoInstruction {
        /// Access size.
        bytes: u32,
        /// Port.
        port: u16,
        /// `in` rather than `out`.
        is_in: bool,
        /// String instruction.
        is_string: bool,
    },
    /// A reason this crate does not decode (newer Xen, or memory sharing/paging). It still
    /// gets a response that unpauses the vCPU.
    Unknown {
        /// The raw reason number.
        reason: u32,
    },
}

/// A vm_event request as Rust sees it: decoded from the ring ([`decode_request`]), or built by
/// a producer ([`Event::new`]) to be encoded ([`encode_request`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// The vCPU it happened on.
    pub vcpu: VcpuId,
    /// The altp2m view it happened in (`None` when Xen did not flag one).
    pub view: Option<ViewId>,
    /// Whether the vCPU is paused until answered (sync event).
    pub paused: bool,
    /// What happened.
    pub kind: EventKind,
    /// The vCPU's registers at the event.
    pub regs: Registers,
    /// Raw `flags`, `reason` and `u` payload, echoed in the response.
    raw_flags: u32,
    raw_reason: u32,
    raw_u: [u8; entry::U_SIZE],
}

fn gfn_at(u: &[u8], off: usize) -> Gfn {
    Gfn(u64_at(u, off).unwrap_or(0))
}

fn decode_regs(d: &[u8]) -> Registers {
    let q = |o: usize| u64_at(d, o).unwrap_or(0);
    let d32 = |o: usize| u32_at(d, o).unwrap_or(0) as u64;
    let w = |o: usize| u16_at(d, o).unwrap_or(0);
    Registers {
        rax: q(r::RAX),
        rcx: q(r::RCX),
        rdx: q(r::RDX),
        rbx: q(r::RBX),
        rsp: q(r::RSP),
        rbp: q(r::RBP),
        rsi: q(r::RSI),
        rdi: q(r::RDI),
        r8: q(r::R8),
        r9: q(r::R8 + 8),
        r10: q(r::R8 + 16),
        r11: q(r::R8 + 24),
        r12: q(r::R8 + 32),
        r13: q(r::R8 + 40),
        r14: q(r::R8 + 48),
        r15: q(r::R8 + 56),
        rflags: q(r::RFLAGS),
        rip: q(r::RIP),
        cr0: q(r::CR0),
        cr2: q(r::CR2),
        cr3: q(r::CR3),
        cr4: q(r::CR4),
        sysenter_cs: q(r::SYSENTER_CS),
        sysenter_esp: q(r::SYSENTER_ESP),
        sysenter_eip: q(r::SYSENTER_EIP),
        efer: q(r::MSR_EFER),
        msr_star: q(r::MSR_STAR),
        msr_lstar: q(r::MSR_LSTAR),
        msr_cstar: 0,
        gdtr_base: q(r::GDTR_BASE),
        gdtr_limit: w(r::GDTR_LIMIT) as u32,
        idtr_base: 0,
        idtr_limit: 0,
        cs_base: d32(r::CS_BASE),
        ss_base: d32(r::SS_BASE),
        ds_base: d32(r::DS_BASE),
        es_base: d32(r::ES_BASE),
        fs_base: q(r::FS_BASE),
        gs_base: q(r::GS_BASE),
        kernel_gs_base: q(r::SHADOW_GS),
        cs_sel: w(r::CS_SEL),
        ss_sel: w(r::SS_SEL),
    }
}

fn put(d: &mut [u8], off: usize, bytes: &[u8]) {
    d[off..off + bytes.len()].copy_from_slice(bytes);
}

/// Write `regs` into a `data.regs.x86` area: every field [`decode_regs`] reads, so a request
/// decodes to the registers it was encoded from (the format has no `msr_cstar` and no IDTR;
/// segment bases other than FS and GS are 32-bit in it).
fn encode_regs(d: &mut [u8], regs: &Registers) {
    let quads = [
        (r::RAX, regs.rax),
        (r::RCX, regs.rcx),
        (r::RDX, regs.rdx),
        (r::RBX, regs.rbx),
        (r::RSP, regs.rsp),
        (r::RBP, regs.rbp),
        (r::RSI, regs.rsi),
        (r::RDI, regs.rdi),
        (r::R8, regs.r8),
        (r::R8 + 8, regs.r9),
        (r::R8 + 16, regs.r10),
        (r::R8 + 24, regs.r11),
        (r::R8 + 32, regs.r12),
        (r::R8 + 40, regs.r13),
        (r::R8 + 48, regs.r14),
        (r::R8 + 56, regs.r15),
        (r::RFLAGS, regs.rflags),
        (r::RIP, regs.rip),
        (r::CR0, regs.cr0),
        (r::CR2, regs.cr2),
        (r::CR3, regs.cr3),
        (r::CR4, regs.cr4),
        (r::SYSENTER_CS, regs.sysenter_cs),
        (r::SYSENTER_ESP, regs.sysenter_esp),
        (r::SYSENTER_EIP, regs.sysenter_eip),
        (r::MSR_EFER, regs.efer),
        (r::MSR_STAR, regs.msr_star),
        (r::MSR_LSTAR, regs.msr_lstar),
        (r::GDTR_BASE, regs.gdtr_base),
        (r::FS_BASE, regs.fs_base),
        (r::GS_BASE, regs.gs_base),
        (r::SHADOW_GS, regs.kernel_gs_base),
    ];
    for (off, v) in quads {
        put(d, off, &v.to_le_bytes());
    }
    for (off, v) in [
        (r::CS_BASE, regs.cs_base),
        (r::SS_BASE, regs.ss_base),
        (r::DS_BASE, regs.ds_base),
        (r::ES_BASE, regs.es_base),
    ] {
        put(d, off, &(v as u32).to_le_bytes());
    }
    put(d, r::GDTR_LIMIT, &(regs.gdtr_limit as u16).to_le_bytes());
    put(d, r::CS_SEL, &regs.cs_sel.to_le_bytes());
    put(d, r::SS_SEL, &regs.ss_sel.to_le_bytes());
}

/// Write the registers Xen applies on `SET_REGISTERS` (general-purpose, rflags, rip) into a
/// `data.regs.x86` area that already holds the request's registers.
fn encode_set_registers(d: &mut [u8], regs: &Registers) {
    let mut put = |o: usize, v: u64| d[o..o + 8].copy_from_slice(&v.to_le_bytes());
    put(r::RAX, regs.rax);
    put(r::RCX, regs.rcx);
    put(r::RDX, regs.rdx);
    put(r::RBX, regs.rbx);
    put(r::RSP, regs.rsp);
    put(r::RBP, regs.rbp);
    put(r::RSI, regs.rsi);
    put(r::RDI, regs.rdi);
    for (i, v) in [
        regs.r8, regs.r9, regs.r10, regs.r11, regs.r12, regs.r13, regs.r14, regs.r15,
    ]
    .into_iter()
    .enumerate()
    {
        put(r::R8 + 8 * i, v);
    }
    put(r::RFLAGS, regs.rflags);
    put(r::RIP, regs.rip);
}

/// Write the payload of `kind` into the `u` union (over what `u` holds: bytes the kind does
/// not cover are kept) and return its reason number. The inverse of the payload decoding in
/// [`decode_request`]; [`EventKind::Unknown`] writes nothing.
fn encode_kind(kind: &EventKind, u: &mut [u8; entry::U_SIZE]) -> u32 {
    match *kind {
        EventKind::ControlRegister { register, old, new } => {
            let index = match register {
                ControlRegister::Cr0 => ctrlreg::CR0,
                ControlRegister::Cr3 => ctrlreg::CR3,
                ControlRegister::Cr4 => ctrlreg::CR4,
                ControlRegister::Xcr0 => ctrlreg::XCR0,
            };
            put(u, 0, &index.to_le_bytes());
            put(u, 8, &new.to_le_bytes());
            put(u, 16, &old.to_le_bytes());
            reason::WRITE_CTRLREG
        }
        EventKind::Msr { index, old, new } => {
            put(u, 0, &index.to_le_bytes());
            put(u, 8, &new.to_le_bytes());
            put(u, 16, &old.to_le_bytes());
            reason::MOV_TO_MSR
        }
        EventKind::MemoryAccess {
            gfn,
            offset,
            gla,
            access,
            in_page_table_walk,
        } => {
            let mut f = 0;
            for (bit, wire) in [
                (MemAccess::R, mem_access::R),
                (MemAccess::W, mem_access::W),
                (MemAccess::X, mem_access::X),
            ] {
                if access.contains(bit) {
                    f |= wire;
                }
            }
            if let Some(gla) = gla {
                f |= mem_access::GLA_VALID;
                put(u, 16, &gla.0.to_le_bytes());
            }
            if in_page_table_walk {
                f |= mem_access::FAULT_IN_GPT;
            }
            put(u, 0, &gfn.0.to_le_bytes());
            put(u, 8, &offset.to_le_bytes());
            put(u, 24, &f.to_le_bytes());
            reason::MEM_ACCESS
        }
        EventKind::SoftwareBreakpoint {
            gfn,
            insn_length,
            trap_type,
        } => {
            put(u, 0, &gfn.0.to_le_bytes());
            put(u, 16, &insn_length.to_le_bytes());
            u[20] = trap_type;
            reason::SOFTWARE_BREAKPOINT
        }
        EventKind::SingleStep { gfn } => {
            put(u, 0, &gfn.0.to_le_bytes());
            reason::SINGLESTEP
        }
        EventKind::DebugException {
            gfn,
            pending_dbg,
            insn_length,
            trap_type,
        } => {
            put(u, 0, &gfn.0.to_le_bytes());
            put(u, 8, &pending_dbg.to_le_bytes());
            put(u, 16, &insn_length.to_le_bytes());
            u[20] = trap_type;
            reason::DEBUG_EXCEPTION
        }
        EventKind::Cpuid {
            leaf,
            subleaf,
            insn_length,
        } => {
            put(u, 0, &insn_length.to_le_bytes());
            put(u, 4, &leaf.to_le_bytes());
            put(u, 8, &subleaf.to_le_bytes());
            reason::CPUID
        }
        EventKind::DescriptorAccess {
            descriptor,
            is_write,
            instr_info,
            exit_qualification,
        } => {
            put(u, 0, &instr_info.to_le_bytes());
            put(u, 8, &exit_qualification.to_le_bytes());
            u[16] = descriptor;
            u[17] = is_write as u8;
            reason::DESCRIPTOR_ACCESS
        }
        EventKind::GuestRequest => reason::GUEST_REQUEST,
        EventKind::EmulUnimplemented => reason::EMUL_UNIMPLEMENTED,
        EventKind::Interrupt {
            vector,
            kind,
            error_code,
            cr2,
        } => {
            put(u, 0, &vector.to_le_bytes());
            put(u, 4, &kind.to_le_bytes());
            put(u, 8, &error_code.to_le_bytes());
            put(u, 16, &cr2.to_le_bytes());
            reason::INTERRUPT
        }
        EventKind::VmExit {
            reason: exit_reason,
            qualification,
        } => {
            put(u, 0, &exit_reason.to_le_bytes());
            put(u, 8, &qualification.to_le_bytes());
            reason::VMEXIT
        }
        EventKind::IoInstruction {
            bytes,
            port,
            is_in,
            is_string,
        } => {
            put(u, 0, &bytes.to_le_bytes());
            put(u, 4, &port.to_le_bytes());
            u[6] = is_in as u8;
            u[7] = is_string as u8;
            reason::IO_INSTRUCTION
        }
        EventKind::Unknown { reason } => reason,
    }
}

impl Event {
    /// An event as a producer reports it (the simulated domain, tests): its flags follow from
    /// `paused` (`VCPU_PAUSED`) and `view` (`ALTERNATE_P2M`), its reason and payload from
    /// `kind`. [`encode_request`] writes it as a request.
    pub fn new(
        vcpu: VcpuId,
        view: Option<ViewId>,
        paused: bool,
        kind: EventKind,
        regs: Registers,
    ) -> Event {
        let mut raw_u = [0u8; entry::U_SIZE];
        let raw_reason = encode_kind(&kind, &mut raw_u);
        let mut raw_flags = 0;
        if paused {
            raw_flags |= flag::VCPU_PAUSED;
        }
        if view.is_some() {
            raw_flags |= flag::ALTERNATE_P2M;
        }
        Event {
            vcpu,
            view,
            paused,
            kind,
            regs,
            raw_flags,
            raw_reason,
            raw_u,
        }
    }
}

/// Encode `event` as the request a producer puts on the ring (what Xen's
/// `vm_event_put_request` writes): version 7, the vCPU, `VCPU_PAUSED` if `paused`,
/// `ALTERNATE_P2M` and the view if `view` is set (other flags as the event was decoded), the
/// reason and payload of `kind` (written over the payload the event was decoded with, which an
/// [`EventKind::Unknown`] keeps as it was) and `regs`. [`decode_request`] gives the event back.
pub fn encode_request(event: &Event, out: &mut [u8; ENTRY_SIZE]) {
    out.fill(0);
    let mut u = event.raw_u;
    let rsn = encode_kind(&event.kind, &mut u);
    let mut flags = event.raw_flags & !(flag::VCPU_PAUSED | flag::ALTERNATE_P2M);
    if event.paused {
        flags |= flag::VCPU_PAUSED;
    }
    if let Some(view) = event.view {
        flags |= flag::ALTERNATE_P2M;
        put(out, entry::ALTP2M_IDX, &view.0.to_le_bytes());
    }
    put(out, entry::VERSION, &INTERFACE_VERSION.to_le_bytes());
    put(out, entry::FLAGS, &flags.to_le_bytes());
    put(out, entry::REASON, &rsn.to_le_bytes());
    put(out, entry::VCPU_ID, &event.vcpu.0.to_le_bytes());
    put(out, entry::U, &u);
    encode_regs(
        &mut out[entry::DATA..entry::DATA + entry::DATA_SIZE],
        &event.regs,
    );
}

/// Decode a request. Checks the interface version; unknown reasons decode to
/// [`EventKind::Unknown`].
///
/// # Errors
/// [`Error::Malformed`] if the version is not [`INTERFACE_VERSION`]. The caller must still
/// answer such a request (see [`encode_safe_response`]) or its vCPU stays paused.
pub fn decode_request(raw: &[u8; ENTRY_SIZE]) -> Result<Event> {
    let version = u32_at(raw, entry::VERSION).unwrap_or(0);
    if version != INTERFACE_VERSION {
        return Err(Error::malformed(
            "vm_event request",
            format!("vCPU {}", u32_at(raw, entry::VCPU_ID).unwrap_or(0)),
            format!("interface version {version}, expected {INTERFACE_VERSION} (Xen and xenvmi disagree on the ring format)"),
        ));
    }
    let flags = u32_at(raw, entry::FLAGS).unwrap_or(0);
    let rsn = u32_at(raw, entry::REASON).unwrap_or(0);
    let mut u = [0u8; entry::U_SIZE];
    u.copy_from_slice(&raw[entry::U..entry::U + entry::U_SIZE]);
    let kind = match rsn {
        reason::WRITE_CTRLREG => match u32_at(&u, 0).unwrap_or(u32::MAX) {
            i @ 0..=3 => EventKind::ControlRegister {
                register: [
                    ControlRegister::Cr0,
                    ControlRegister::Cr3,
                    ControlRegister::Cr4,
                    ControlRegister::Xcr0,
                ][i as usize],
                new: u64_at(&u, 8).unwrap_or(0),
                old: u64_at(&u, 16).unwrap_or(0),
            },
            _ => EventKind::Unknown { reason: rsn },
        },
        reason::MOV_TO_MSR => EventKind::Msr {
            index: u64_at(&u, 0).unwrap_or(0),
            new: u64_at(&u, 8).unwrap_or(0),
            old: u64_at(&u, 16).unwrap_or(0),
        },
        reason::MEM_ACCESS => {
            let f = u32_at(&u, 24).unwrap_or(0);
            let mut access = MemAccess::empty();
            access.set(MemAccess::R, f & mem_access::R != 0);
            access.set(MemAccess::W, f & mem_access::W != 0);
            access.set(MemAccess::X, f & mem_access::X != 0);
            EventKind::MemoryAccess {
                gfn: gfn_at(&u, 0),
                offset: u64_at(&u, 8).unwrap_or(0),
                gla: (f & mem_access::GLA_VALID != 0).then(|| Gva(u64_at(&u, 16).unwrap_or(0))),
                access,
                in_page_table_walk: f & mem_access::FAULT_IN_GPT != 0,
            }
        }
        reason::SOFTWARE_BREAKPOINT => EventKind::SoftwareBreakpoint {
            gfn: gfn_at(&u, 0),
            insn_length: u32_at(&u, 16).unwrap_or(0),
            trap_type: u[20],
        },
        reason::SINGLESTEP => EventKind::SingleStep { gfn: gfn_at(&u, 0) },
        reason::DEBUG_EXCEPTION => EventKind::DebugException {
            gfn: gfn_at(&u, 0),
            pending_dbg: u64_at(&u, 8).unwrap_or(0),
            insn_length: u32_at(&u, 16).unwrap_or(0),
            trap_type: u[20],
        },
        reason::CPUID => EventKind::Cpuid {
            insn_length: u32_at(&u, 0).unwrap_or(0),
            leaf: u32_at(&u, 4).unwrap_or(0),
            subleaf: u32_at(&u, 8).unwrap_or(0),
        },
        reason::DESCRIPTOR_ACCESS => EventKind::DescriptorAccess {
            instr_info: u32_at(&u, 0).unwrap_or(0),
            exit_qualification: u64_at(&u, 8).unwrap_or(0),
            descriptor: u[16],
            is_write: u[17] != 0,
        },
        reason::GUEST_REQUEST => EventKind::GuestRequest,
        reason::EMUL_UNIMPLEMENTED => EventKind::EmulUnimplemented,
        reason::INTERRUPT => EventKind::Interrupt {
            vector: u32_at(&u, 0).unwrap_or(0),
            kind: u32_at(&u, 4).unwrap_or(0),
            error_code: u32_at(&u, 8).unwrap_or(0),
            cr2: u64_at(&u, 16).unwrap_or(0),
        },
        reason::VMEXIT => EventKind::VmExit {
            reason: u64_at(&u, 0).unwrap_or(0),
            qualification: u64_at(&u, 8).unwrap_or(0),
        },
        reason::IO_INSTRUCTION => EventKind::IoInstruction {
            bytes: u32_at(&u, 0).unwrap_or(0),
            port: u16_at(&u, 4).unwrap_or(0),
            is_in: u[6] != 0,
            is_string: u[7] != 0,
        },
        other => EventKind::Unknown { reason: other },
    };
    Ok(Event {
        vcpu: VcpuId(u32_at(raw, entry::VCPU_ID).unwrap_or(0)),
        view: (flags & flag::ALTERNATE_P2M != 0)
            .then(|| ViewId(u16_at(raw, entry::ALTP2M_IDX).unwrap_or(0))),
        paused: flags & flag::VCPU_PAUSED != 0,
        kind,
        regs: decode_regs(&raw[entry::DATA..entry::DATA + entry::DATA_SIZE]),
        raw_flags: flags,
        raw_reason: rsn,
        raw_u: u,
    })
}

/// How to answer an event. Build with the constructors and chain the modifiers:
/// `Response::deny()`, `Response::proceed().switch_view(v).toggle_singlestep()`.
/// Everything but [`Response::inject`] travels in the response's bytes ([`encode_response`]);
/// the injection is made through the backend (`EventInjection`) before the answer is published.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[must_use]
pub struct Response {
    flags: u32,
    view: Option<ViewId>,
    fast_singlestep_view: Option<ViewId>,
    regs: Option<Registers>,
    inject: Option<Injection>,
    insn: Option<[u8; 16]>,
}

impl Response {
    /// Let the guest continue (the vCPU is unpaused; nothing else changes).
    pub fn proceed() -> Self {
        Response::default()
    }

    /// Cancel the pending control-register or MSR write (sync monitors only).
    pub fn deny() -> Self {
        Response {
            flags: flag::DENY,
            ..Default::default()
        }
    }

    /// Emulate the faulting instruction without lifting the restriction.
    pub fn emulate() -> Self {
        Response {
            flags: flag::EMULATE,
            ..Default::default()
        }
    }

    /// Emulate with writes discarded.
    pub fn emulate_nowrite() -> Self {
        Response {
            flags: flag::EMULATE | flag::EMULATE_NOWRITE,
            ..Default::default()
        }
    }

    /// Answer an `int3` event by having Xen's emulator execute `bytes` (the instruction that
    /// the breakpoint replaced, and what follows it: 16 bytes) at the breakpoint's address,
    /// without restoring the byte in memory or single-stepping: other vCPUs keep hitting the
    /// breakpoint meanwhile. Xen honours this for software-breakpoint events only
    /// (`EMULATE | SET_EMUL_INSN_DATA`); an instruction its emulator cannot run becomes a `#UD`
    /// in the guest. The bytes share the response's data area with registers, so this drops
    /// [`Response::set_registers`].
    pub fn emulate_instruction(mut self, bytes: [u8; 16]) -> Self {
        self.flags = (self.flags | flag::EMULATE | flag::SET_EMUL_INSN_DATA) & !flag::SET_REGISTERS;
        self.insn = Some(bytes);
        self.regs = None;
        self
    }

    /// The instruction bytes of an [`Response::emulate_instruction`] answer.
    pub fn instruction(&self) -> Option<&[u8; 16]> {
        self.insn.as_ref()
    }

    /// Apply `regs` (general-purpose registers, rflags, rip) before resuming. Drops an
    /// [`Response::emulate_instruction`] (the two share the response's data area).
    pub fn set_registers(mut self, regs: Registers) -> Self {
        if self.insn.take().is_some() {
            self.flags &= !(flag::EMULATE | flag::SET_EMUL_INSN_DATA);
        }
        self.flags |= flag::SET_REGISTERS;
        self.regs = Some(regs);
        self
    }

    /// Flip single-stepping (MTF) for this vCPU.
    pub fn toggle_singlestep(mut self) -> Self {
        self.flags |= flag::TOGGLE_SINGLESTEP;
        self
    }

    /// Step one instruction, then switch this vCPU to `view` (done inside Xen).
    pub fn fast_singlestep(mut self, view: ViewId) -> Self {
        self.flags |= flag::FAST_SINGLESTEP;
        self.fast_singlestep_view = Some(view);
        self
    }

    /// Have the vCPU take `event` as it resumes (injected before the answer is given). For the
    /// guest's own `int3`: `Response::proceed().inject(Injection::breakpoint(insn_len))`, so
    /// its `#BP` handler runs as it would with no monitor.
    pub fn inject(mut self, event: Injection) -> Self {
        self.inject = Some(event);
        self
    }

    /// The event to inject, if any.
    pub fn injection(&self) -> Option<&Injection> {
        self.inject.as_ref()
    }

    /// Resume this vCPU in `view`.
    pub fn switch_view(mut self, view: ViewId) -> Self {
        self.flags |= flag::ALTERNATE_P2M;
        self.view = Some(view);
        self
    }

    /// The `VM_EVENT_FLAG_*` bits this response sets (besides `VCPU_PAUSED`).
    pub fn flags(&self) -> u32 {
        self.flags
    }

    /// The view a `switch_view` response resumes in.
    pub fn view(&self) -> Option<ViewId> {
        self.view
    }

    /// The view a fast single-step ends in.
    pub fn fast_singlestep_view(&self) -> Option<ViewId> {
        self.fast_singlestep_view
    }

    /// Registers to apply.
    pub fn registers(&self) -> Option<&Registers> {
        self.regs.as_ref()
    }
}

/// Encode the answer to `request` (the raw bytes it was decoded from) as Xen expects it:
/// version 7, the same vCPU, reason and `u` payload echoed, `VCPU_PAUSED` if the request had
/// it, `data` echoed (with the new registers on `SET_REGISTERS`).
pub fn encode_response(
    request: &[u8; ENTRY_SIZE],
    event: &Event,
    rsp: &Response,
    out: &mut [u8; ENTRY_SIZE],
) {
    out.copy_from_slice(request);
    let flags =
        (event.raw_flags & flag::VCPU_PAUSED) | rsp.flags | required_flags(event.raw_reason);
    out[entry::VERSION..entry::VERSION + 4].copy_from_slice(&INTERFACE_VERSION.to_le_bytes());
    out[entry::FLAGS..entry::FLAGS + 4].copy_from_slice(&flags.to_le_bytes());
    out[entry::REASON..entry::REASON + 4].copy_from_slice(&event.raw_reason.to_le_bytes());
    out[entry::VCPU_ID..entry::VCPU_ID + 4].copy_from_slice(&event.vcpu.0.to_le_bytes());
    out[entry::U..entry::U + entry::U_SIZE].copy_from_slice(&event.raw_u);
    let view = rsp.view.map(|v| v.0).unwrap_or(0);
    out[entry::ALTP2M_IDX..entry::ALTP2M_IDX + 2].copy_from_slice(&view.to_le_bytes());
    if let Some(v) = rsp.fast_singlestep_view {
        // u.fast_singlestep.p2midx replaces the echoed payload (Xen reads it for this flag).
        out[entry::U..entry::U + 2].copy_from_slice(&v.0.to_le_bytes());
    }
    if let Some(regs) = &rsp.regs {
        encode_set_registers(&mut out[entry::DATA..entry::DATA + entry::DATA_SIZE], regs);
    }
    if let Some(insn) = &rsp.insn {
        // data.emul.insn.data[16]: what Xen's emulator fetches instead of guest memory.
        out[entry::DATA..entry::DATA + 16].copy_from_slice(insn);
    }
}

/// Flags an answer to an event of `reason` must carry whatever the handler decided.
///
/// A descriptor-table access (SIDT, SGDT, LIDT, LGDT, SLDT, STR, LLDT, LTR) is reported
/// before the instruction runs, and Xen (`hvm_descriptor_access_intercept`) leaves it to the
/// monitor: only a response with `EMULATE` has Xen's emulator carry it out on resume
/// (`vm_event_emulate_check`). Without it the vCPU re-executes the instruction, traps again
/// and never gets past it (seen on real Xen: a guest kernel stuck on `sidt` in a soft
/// lockup). Xen's own `xen-access` answers these events with `EMULATE` too.
fn required_flags(reason: u32) -> u32 {
    if reason == reason::DESCRIPTOR_ACCESS {
        flag::EMULATE
    } else {
        0
    }
}

/// The answer for a request that could not be decoded (wrong version) or whose handler failed:
/// version 7, its vCPU and reason, `VCPU_PAUSED` echoed and nothing else, so the vCPU resumes.
pub fn encode_safe_response(request: &[u8; ENTRY_SIZE], out: &mut [u8; ENTRY_SIZE]) {
    out.copy_from_slice(request);
    let reason = u32_at(request, entry::REASON).unwrap_or(0);
    let flags =
        (u32_at(request, entry::FLAGS).unwrap_or(0) & flag::VCPU_PAUSED) | required_flags(reason);
    out[entry::VERSION..entry::VERSION + 4].copy_from_slice(&INTERFACE_VERSION.to_le_bytes());
    out[entry::FLAGS..entry::FLAGS + 4].copy_from_slice(&flags.to_le_bytes());
    out[entry::ALTP2M_IDX..entry::ALTP2M_IDX + 2].copy_from_slice(&0u16.to_le_bytes());
}

/// A response that answers no request: version 7, `vcpu`, `VCPU_PAUSED` and nothing else.
/// Xen's `vm_event_resume` takes one pause off the vCPU if it is paused by vm_event and
/// ignores it otherwise ("too many unpause attempts"). Used to release vCPUs that a killed
/// consumer left paused; see [`Session::recover`](crate::event::session::Session::recover).
pub fn encode_release(vcpu: VcpuId, out: &mut [u8; ENTRY_SIZE]) {
    out.fill(0);
    out[entry::VERSION..entry::VERSION + 4].copy_from_slice(&INTERFACE_VERSION.to_le_bytes());
    out[entry::FLAGS..entry::FLAGS + 4].copy_from_slice(&flag::VCPU_PAUSED.to_le_bytes());
    out[entry::VCPU_ID..entry::VCPU_ID + 4].copy_from_slice(&vcpu.0.to_le_bytes());
}

/// A response as Xen's `vm_event_resume` reads it (see [`decode_response`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodedResponse {
    /// The vCPU it answers.
    pub vcpu: VcpuId,
    /// The reason it echoes (Xen applies DENY only to the two write reasons, and emulation
    /// data only to the reasons that can carry it).
    pub reason: u32,
    /// `VCPU_PAUSED`: it takes one vm_event pause off the vCPU.
    pub unpause: bool,
    /// What it asks for: its other flags ([`Response::flags`]) and what those flags say it
    /// carries: the view (`ALTERNATE_P2M`), the fast-single-step view (`FAST_SINGLESTEP`),
    /// registers (`SET_REGISTERS`) and instruction bytes (`SET_EMUL_INSN_DATA`).
    pub response: Response,
}

/// Decode a response as Xen's `vm_event_resume` does (the producer's side, which the
/// simulated domain runs). The inverse of [`encode_response`] for what Xen reads.
///
/// # Errors
/// [`Error::Malformed`] if the version is not [`INTERFACE_VERSION`]: Xen skips such a
/// response, and the vCPU it was meant for stays paused.
pub fn decode_response(raw: &[u8; ENTRY_SIZE]) -> Result<DecodedResponse> {
    let version = u32_at(raw, entry::VERSION).unwrap_or(0);
    let vcpu = u32_at(raw, entry::VCPU_ID).unwrap_or(0);
    if version != INTERFACE_VERSION {
        return Err(Error::malformed(
            "vm_event response",
            format!("vCPU {vcpu}"),
            format!("interface version {version}, expected {INTERFACE_VERSION}"),
        ));
    }
    let flags = u32_at(raw, entry::FLAGS).unwrap_or(0);
    let data = &raw[entry::DATA..entry::DATA + entry::DATA_SIZE];
    let mut insn = [0u8; 16];
    insn.copy_from_slice(&data[..16]);
    Ok(DecodedResponse {
        vcpu: VcpuId(vcpu),
        reason: u32_at(raw, entry::REASON).unwrap_or(0),
        unpause: flags & flag::VCPU_PAUSED != 0,
        response: Response {
            flags: flags & !flag::VCPU_PAUSED,
            view: (flags & flag::ALTERNATE_P2M != 0)
                .then(|| ViewId(u16_at(raw, entry::ALTP2M_IDX).unwrap_or(0))),
            fast_singlestep_view: (flags & flag::FAST_SINGLESTEP != 0)
                .then(|| ViewId(u16_at(raw, entry::U).unwrap_or(0))),
            regs: (flags & flag::SET_REGISTERS != 0).then(|| decode_regs(data)),
            inject: None,
            insn: (flags & flag::SET_EMUL_INSN_DATA != 0).then_some(insn),
        },
    })
}

#[cfg(test)]
#[path = "codec_tests.rs"]
mod tests;
