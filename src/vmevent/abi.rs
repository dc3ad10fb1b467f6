//! The vm_event wire format, version 7 (Xen 4.15 to at least 4.22): byte offsets of
//! `vm_event_request_t` / `vm_event_response_t` (the same 400-byte `struct vm_event_st`) and of
//! the shared ring page, as `xen/include/public/vm_event.h` and `xen/io/ring.h` define them.
//!
//! Everything is read and written by offset from byte arrays, so the layout is checked here,
//! once, by tests against the sizes measured on the 4.17 headers, and never depends on Rust
//! struct layout.

/// `VM_EVENT_INTERFACE_VERSION` this crate speaks.
pub const INTERFACE_VERSION: u32 = 7;
/// `sizeof(vm_event_request_t)` (= response) in version 7.
pub const ENTRY_SIZE: usize = 400;
/// Bytes of the `vm_event_sring` header before the first entry.
pub const RING_HEADER: usize = 64;
/// Size of the ring page.
pub const RING_PAGE: usize = 4096;
/// Entries in one page: `__RD32((4096 - 64) / 400)` = 8.
pub const RING_SLOTS: u32 = 8;

/// Offsets in the ring header.
pub mod sring {
    /// `req_prod` (written by Xen).
    pub const REQ_PROD: usize = 0;
    /// `req_event`.
    pub const REQ_EVENT: usize = 4;
    /// `rsp_prod` (written by the consumer).
    pub const RSP_PROD: usize = 8;
    /// `rsp_event`.
    pub const RSP_EVENT: usize = 12;
}

/// Offsets in an entry.
pub mod entry {
    /// `u32 version`.
    pub const VERSION: usize = 0;
    /// `u32 flags`.
    pub const FLAGS: usize = 4;
    /// `u32 reason`.
    pub const REASON: usize = 8;
    /// `u32 vcpu_id`.
    pub const VCPU_ID: usize = 12;
    /// `u16 altp2m_idx`.
    pub const ALTP2M_IDX: usize = 16;
    /// The 32-byte `u` union.
    pub const U: usize = 24;
    /// Size of `u`.
    pub const U_SIZE: usize = 32;
    /// The 344-byte `data` union (`regs.x86`, `emul.read`, `emul.insn`).
    pub const DATA: usize = 56;
    /// Size of `data`.
    pub const DATA_SIZE: usize = 344;
}

/// Offsets in `struct vm_event_regs_x86` (344 bytes), relative to [`entry::DATA`].
#[allow(missing_docs)]
pub mod regs {
    pub const RAX: usize = 0;
    pub const RCX: usize = 8;
    pub const RDX: usize = 16;
    pub const RBX: usize = 24;
    pub const RSP: usize = 32;
    pub const RBP: usize = 40;
    pub const RSI: usize = 48;
    pub const RDI: usize = 56;
    pub const R8: usize = 64;
    pub const RFLAGS: usize = 128;
    pub const DR6: usize = 136;
    pub const DR7: usize = 144;
    pub const RIP: usize = 152;
    pub const CR0: usize = 160;
    pub const CR2: usize = 168;
    pub const CR3: usize = 176;
    pub const CR4: usize = 184;
    pub const SYSENTER_CS: usize = 192;
    pub const SYSENTER_ESP: usize = 200;
    pub const SYSENTER_EIP: usize = 208;
    pub const MSR_EFER: usize = 216;
    pub const MSR_STAR: usize = 224;
    pub const MSR_LSTAR: usize = 232;
    pub const GDTR_BASE: usize = 240;
    pub const NPT_BASE: usize = 248;
    pub const VMTRACE_POS: usize = 256;
    pub const CS_BASE: usize = 264;
    pub const SS_BASE: usize = 268;
    pub const DS_BASE: usize = 272;
    pub const ES_BASE: usize = 276;
    pub const FS_BASE: usize = 280;
    pub const GS_BASE: usize = 288;
    pub const SHADOW_GS: usize = 320;
    pub const GDTR_LIMIT: usize = 328;
    pub const CS_SEL: usize = 330;
    pub const SS_SEL: usize = 332;
    pub const DS_SEL: usize = 334;
    pub const ES_SEL: usize = 336;
    pub const FS_SEL: usize = 338;
    pub const GS_SEL: usize = 340;
    pub const SIZE: usize = 344;
}

/// `VM_EVENT_REASON_*`.
#[allow(missing_docs)]
pub mod reason {
    pub const UNKNOWN: u32 = 0;
    pub const MEM_ACCESS: u32 = 1;
    pub const MEM_SHARING: u32 = 2;
    pub const MEM_PAGING: u32 = 3;
    pub const WRITE_CTRLREG: u32 = 4;
    pub const MOV_TO_MSR: u32 = 5;
    pub const SOFTWARE_BREAKPOINT: u32 = 6;
    pub const SINGLESTEP: u32 = 7;
    pub const GUEST_REQUEST: u32 = 8;
    pub const DEBUG_EXCEPTION: u32 = 9;
    pub const CPUID: u32 = 10;
    pub const PRIVILEGED_CALL: u32 = 11;
    pub const INTERRUPT: u32 = 12;
    pub const DESCRIPTOR_ACCESS: u32 = 13;
    pub const EMUL_UNIMPLEMENTED: u32 = 14;
    pub const VMEXIT: u32 = 15;
    /// Xen 4.18+ (no interface-version bump).
    pub const IO_INSTRUCTION: u32 = 16;
}

/// `VM_EVENT_FLAG_*` bits.
#[allow(missing_docs)]
pub mod flag {
    pub const VCPU_PAUSED: u32 = 1 << 0;
    pub const FOREIGN: u32 = 1 << 1;
    pub const EMULATE: u32 = 1 << 2;
    pub const EMULATE_NOWRITE: u32 = 1 << 3;
    pub const TOGGLE_SINGLESTEP: u32 = 1 << 4;
    pub const SET_EMUL_READ_DATA: u32 = 1 << 5;
    pub const DENY: u32 = 1 << 6;
    pub const ALTERNATE_P2M: u32 = 1 << 7;
    pub const SET_REGISTERS: u32 = 1 << 8;
    pub const SET_EMUL_INSN_DATA: u32 = 1 << 9;
    pub const GET_NEXT_INTERRUPT: u32 = 1 << 10;
    pub const FAST_SINGLESTEP: u32 = 1 << 11;
    pub const NESTED_P2M: u32 = 1 << 12;
    pub const RESET_VMTRACE: u32 = 1 << 13;
    pub const RESET_FORK_STATE: u32 = 1 << 14;
    pub const RESET_FORK_MEMORY: u32 = 1 << 15;
}

/// `VM_EVENT_X86_*` control-register indices in `write_ctrlreg.index`.
#[allow(missing_docs)]
pub mod ctrlreg {
    pub const CR0: u32 = 0;
    pub const CR3: u32 = 1;
    pub const CR4: u32 = 2;
    pub const XCR0: u32 = 3;
}

/// `MEM_ACCESS_*` bits in `mem_access.flags`.
#[allow(missing_docs)]
pub mod mem_access {
    pub const R: u32 = 1 << 0;
    pub const W: u32 = 1 << 1;
    pub const X: u32 = 1 << 2;
    pub const GLA_VALID: u32 = 1 << 3;
    pub const FAULT_WITH_GLA: u32 = 1 << 4;
    pub const FAULT_IN_GPT: u32 = 1 << 5;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_the_4_17_headers() {
        // Sizes measured by compiling Debian's 4.17 headers (docs in shared/xen-interface.md).
        assert_eq!(entry::DATA + entry::DATA_SIZE, ENTRY_SIZE);
        assert_eq!(entry::U + entry::U_SIZE, entry::DATA);
        assert_eq!(regs::SIZE, entry::DATA_SIZE);
        assert_eq!(
            (regs::RIP, regs::CR3, regs::NPT_BASE, regs::VMTRACE_POS),
            (152, 176, 248, 256)
        );
        assert_eq!(
            (
                regs::CS_BASE,
                regs::FS_BASE,
                regs::SHADOW_GS,
                regs::GDTR_LIMIT
            ),
            (264, 280, 320, 328)
        );
        assert_eq!(regs::GS_SEL + 2, 342); // then u16 _pad
                                           // __RD32 rounds (4096 - 64) / 400 = 10 down to a power of two.
        let fit = ((RING_PAGE - RING_HEADER) / ENTRY_SIZE) as u32;
        assert_eq!(fit, 10);
        assert_eq!(1u32 << (31 - fit.leading_zeros()), RING_SLOTS);
    }
}
