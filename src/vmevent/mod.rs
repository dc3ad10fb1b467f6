//! The vm_event wire format, version 7: what travels on the ring between Xen (or the
//! simulated domain) and the monitor, in one place below both.
//!
//! - [`abi`]: byte offsets and constants of `vm_event_request_t` / `vm_event_response_t` and
//!   of the ring page header.
//! - [`ring`]: the shared ring page and both of its ends ([`ring::BackRing`], the consumer;
//!   [`ring::FrontRing`], the producer as Xen drives it).
//! - [`codec`]: the one codec, in both directions: a request's 400 bytes to an
//!   [`Event`](codec::Event) and back, a [`Response`](codec::Response) to bytes and back. The
//!   event layer decodes requests and encodes responses; the simulated domain encodes requests
//!   and decodes responses, with the same code.
//! - The vocabulary that events, responses and the backend traits share:
//!   [`ControlRegister`], [`MemAccess`], [`Injection`] (re-exported by [`crate::backend`]).
//!
//! The module depends only on the bottom layer ([`crate::addr`], [`crate::error`],
//! [`crate::regs`]); the backends (`backend::xen`, `backend::sim`) and the event layer
//! ([`crate::event`]) import it.

use bitflags::bitflags;

pub mod abi;
pub mod codec;
pub mod ring;

/// The control registers a monitor can watch (`write_ctrlreg.index` of a request:
/// `VM_EVENT_X86_CR0` ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ControlRegister {
    /// CR0.
    Cr0,
    /// CR3 (address-space switches).
    Cr3,
    /// CR4.
    Cr4,
    /// XCR0 (`xsetbv`).
    Xcr0,
}

/// How an injected event is delivered (Xen's `XEN_DMOP_EVENT_*`, the VMX interruption types).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum InjectionKind {
    /// An external interrupt.
    ExternalInterrupt,
    /// A non-maskable interrupt.
    Nmi,
    /// A fault or abort raised by the processor (`#PF`, `#GP`, `#UD`, ...).
    HardwareException,
    /// `int N`.
    SoftwareInterrupt,
    /// `int1` (`icebp`).
    PrivilegedSoftwareException,
    /// `int3` or `into`: the return address is past the instruction.
    SoftwareException,
}

impl InjectionKind {
    /// The VMX interruption type (`XEN_DMOP_EVENT_ext_int` = 0 ... `sw_exc` = 6).
    pub fn vmx_type(self) -> u8 {
        match self {
            InjectionKind::ExternalInterrupt => 0,
            InjectionKind::Nmi => 2,
            InjectionKind::HardwareException => 3,
            InjectionKind::SoftwareInterrupt => 4,
            InjectionKind::PrivilegedSoftwareException => 5,
            InjectionKind::SoftwareException => 6,
        }
    }
}

/// An exception or interrupt for a vCPU to take on its next entry into the guest, as if the
/// processor had raised it there. The guest's own handler then runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Injection {
    /// The vector (3 for `#BP`, 14 for `#PF`, ...).
    pub vector: u8,
    /// How it is delivered.
    pub kind: InjectionKind,
    /// The error code pushed with it, for the exceptions that have one.
    pub error_code: Option<u32>,
    /// The length of the instruction that raised it (software interrupts and exceptions: the
    /// return address is `rip + insn_len`).
    pub insn_len: u8,
    /// For `#PF`, the faulting address the guest reads from CR2.
    pub cr2: u64,
}

impl Injection {
    /// The guest's own `int3` (`insn_len` 1 for `0xcc`, 2 for `int 3` as `cd 03`), handed back
    /// to it: its `#BP` handler runs with the return address past the instruction.
    pub fn breakpoint(insn_len: u8) -> Self {
        Injection {
            vector: 3,
            kind: InjectionKind::SoftwareException,
            error_code: None,
            insn_len,
            cr2: 0,
        }
    }

    /// A page fault at `va` with `error_code` (bit 1 write, bit 2 user, bit 4 instruction
    /// fetch): how a monitor makes the guest bring a paged-out page in (LibVMI's
    /// `vmi_request_page_fault`).
    pub fn page_fault(va: u64, error_code: u32) -> Self {
        Injection {
            vector: 14,
            kind: InjectionKind::HardwareException,
            error_code: Some(error_code),
            insn_len: 0,
            cr2: va,
        }
    }
}

bitflags! {
    /// Permissions of a guest frame in one p2m view (Xen's `xenmem_access_t`, as bits; the
    /// same bits as `MEM_ACCESS_R/W/X` of a memory-access request).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct MemAccess: u8 {
        /// Reads allowed.
        const R = 1;
        /// Writes allowed.
        const W = 2;
        /// Instruction fetches allowed.
        const X = 4;
    }
}
