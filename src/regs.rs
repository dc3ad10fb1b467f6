//! x86-64 vCPU register state, as snapshots record it and as Xen's `vm_event_regs_x86` carries it.
//!
//! Also the [`PagingMode`] the control registers select, which the page walker (`mem`) takes:
//! it is defined here, at the bottom layer, so that `regs` and `mem` do not import each other.

use bitflags::bitflags;

use crate::addr::Gpa;

bitflags! {
    /// CR0 bits that introspection cares about.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct Cr0: u64 {
        /// Protected mode enable.
        const PE = 1 << 0;
        /// Write protect (supervisor writes honour read-only pages).
        const WP = 1 << 16;
        /// Paging enable.
        const PG = 1 << 31;
        /// Every other bit, kept so that values round-trip.
        const _ = !0;
    }
}

bitflags! {
    /// CR4 bits that introspection cares about.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct Cr4: u64 {
        /// Physical address extension (required for long mode).
        const PAE = 1 << 5;
        /// User-mode instruction prevention (SGDT, SIDT, SLDT, SMSW, STR fault in ring 3).
        const UMIP = 1 << 11;
        /// 57-bit linear addresses (5-level paging).
        const LA57 = 1 << 12;
        /// VMX enable.
        const VMXE = 1 << 13;
        /// Process-context identifiers (CR3 bits 0..11 are a PCID).
        const PCIDE = 1 << 17;
        /// Supervisor-mode execution prevention.
        const SMEP = 1 << 20;
        /// Supervisor-mode access prevention.
        const SMAP = 1 << 21;
        /// Every other bit, kept so that values round-trip.
        const _ = !0;
    }
}

/// EFER.LMA: long mode active.
pub const EFER_LMA: u64 = 1 << 10;

/// Which paging structure hierarchy CR4 selects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PagingMode {
    /// 4-level paging (48-bit virtual addresses).
    Level4,
    /// 5-level paging (57-bit virtual addresses, CR4.LA57).
    Level5,
}

impl PagingMode {
    /// Number of table levels.
    pub const fn levels(self) -> u8 {
        match self {
            PagingMode::Level4 => 4,
            PagingMode::Level5 => 5,
        }
    }

    /// Width of a canonical virtual address.
    pub const fn va_bits(self) -> u32 {
        match self {
            PagingMode::Level4 => 48,
            PagingMode::Level5 => 57,
        }
    }
}

/// Register state of one x86-64 vCPU.
///
/// Fields a source does not provide are zero (a QEMU core has no MSR values besides
/// `kernel_gs_base`, for example); [`Registers::has_paging_state`] tells whether the control
/// registers are meaningful.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[allow(missing_docs)] // register names document themselves
pub struct Registers {
    pub rax: u64,
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rsp: u64,
    pub rbp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
    pub rip: u64,
    pub rflags: u64,
    pub cr0: u64,
    pub cr2: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub efer: u64,
    pub cs_sel: u16,
    pub ss_sel: u16,
    pub cs_base: u64,
    pub ds_base: u64,
    pub es_base: u64,
    pub fs_base: u64,
    pub gs_base: u64,
    pub ss_base: u64,
    /// `MSR_KERNEL_GS_BASE` (the value `swapgs` swaps in).
    pub kernel_gs_base: u64,
    pub gdtr_base: u64,
    pub gdtr_limit: u32,
    pub idtr_base: u64,
    pub idtr_limit: u32,
    pub sysenter_cs: u64,
    pub sysenter_esp: u64,
    pub sysenter_eip: u64,
    pub msr_star: u64,
    pub msr_lstar: u64,
    pub msr_cstar: u64,
}

impl Registers {
    /// Whether CR0/CR3/CR4 were provided and paging is on.
    pub fn has_paging_state(&self) -> bool {
        Cr0::from_bits_retain(self.cr0).contains(Cr0::PG) && self.cr3 != 0
    }

    /// Current privilege level, from the low bits of CS (0 = kernel, 3 = user).
    pub fn cpl(&self) -> u8 {
        (self.cs_sel & 3) as u8
    }

    /// The paging mode CR4 selects (5-level when CR4.LA57 is set).
    pub fn paging_mode(&self) -> PagingMode {
        if Cr4::from_bits_retain(self.cr4).contains(Cr4::LA57) {
            PagingMode::Level5
        } else {
            PagingMode::Level4
        }
    }

    /// The page-table root CR3 points at: CR3 without the PCID / flag bits (0..11) and without
    /// bit 63 (the "no flush" hint of `mov cr3` with PCIDs).
    pub fn page_table_root(&self) -> Gpa {
        cr3_to_root(self.cr3)
    }
}

/// Strip the PCID/flag bits (0..11) and the no-flush bit 63 from a CR3 value.
pub fn cr3_to_root(cr3: u64) -> Gpa {
    Gpa(cr3 & 0x000f_ffff_ffff_f000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cr3_root_masks_pcid_and_noflush() {
        assert_eq!(cr3_to_root(0x8000_0000_02a0_a123), Gpa(0x2a0a000));
        let r = Registers {
            cr0: 0x8005_0033,
            cr3: 0x2a0a000,
            cr4: 0x1000,
            cs_sel: 0x33,
            ..Default::default()
        };
        assert!(r.has_paging_state());
        assert_eq!(r.cpl(), 3);
        assert_eq!(r.paging_mode(), PagingMode::Level5);
    }
}
