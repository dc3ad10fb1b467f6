//! Plain C structures shared by several handles: registers, processes, modules, regions.

use std::ffi::c_char;

use super::error::fixed_string;
use crate::os::{Module, Process};
use crate::regs::Registers;

/// Size of the name arrays in [`xvmi_process`] and [`xvmi_module`], NUL included. Longer names
/// are cut at a UTF-8 character boundary (Linux `comm` has at most 15 bytes and module names
/// at most 55; Windows names are cut if needed).
pub const XVMI_NAME_LEN: usize = 256;

/// Register state of one x86-64 vCPU (`xenvmi::Registers`). Fields a source does not provide
/// are zero (a QEMU core has no `msr_star`, for example).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[allow(missing_docs)] // register names document themselves
pub struct xvmi_registers {
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
    pub cs_base: u64,
    pub ds_base: u64,
    pub es_base: u64,
    pub fs_base: u64,
    pub gs_base: u64,
    pub ss_base: u64,
    /// `MSR_KERNEL_GS_BASE` (the value `swapgs` swaps in).
    pub kernel_gs_base: u64,
    pub gdtr_base: u64,
    pub idtr_base: u64,
    pub sysenter_cs: u64,
    pub sysenter_esp: u64,
    pub sysenter_eip: u64,
    pub msr_star: u64,
    pub msr_lstar: u64,
    pub msr_cstar: u64,
    pub gdtr_limit: u32,
    pub idtr_limit: u32,
    pub cs_sel: u16,
    pub ss_sel: u16,
    /// Always zero (explicit padding, so the layout has no hidden bytes).
    pub reserved: u32,
}

macro_rules! regs_convert {
    ($($f:ident),*) => {
        impl From<&Registers> for xvmi_registers {
            fn from(r: &Registers) -> Self {
                xvmi_registers { $($f: r.$f,)* reserved: 0 }
            }
        }
        impl From<&xvmi_registers> for Registers {
            fn from(r: &xvmi_registers) -> Self {
                Registers { $($f: r.$f,)* }
            }
        }
    };
}

regs_convert!(
    rax,
    rbx,
    rcx,
    rdx,
    rsi,
    rdi,
    rsp,
    rbp,
    r8,
    r9,
    r10,
    r11,
    r12,
    r13,
    r14,
    r15,
    rip,
    rflags,
    cr0,
    cr2,
    cr3,
    cr4,
    efer,
    cs_base,
    ds_base,
    es_base,
    fs_base,
    gs_base,
    ss_base,
    kernel_gs_base,
    gdtr_base,
    idtr_base,
    sysenter_cs,
    sysenter_esp,
    sysenter_eip,
    msr_star,
    msr_lstar,
    msr_cstar,
    gdtr_limit,
    idtr_limit,
    cs_sel,
    ss_sel
);

/// A process (`xenvmi::os::Process`): a thread-group leader on Linux, an `EPROCESS` on
/// Windows.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct xvmi_process {
    /// Process id.
    pub pid: u64,
    /// Thread-group id (Linux `tgid`; equals `pid` on Windows).
    pub tgid: u64,
    /// Parent's process id.
    pub ppid: u64,
    /// Page-table root of its address space (Linux `__pa(mm->pgd)`, Windows
    /// `DirectoryTableBase`), valid when `has_dtb`; 0 otherwise.
    pub dtb: u64,
    /// The user-mode page-table root when the kernel keeps a separate one (Windows KVA
    /// shadow: `UserDirectoryTableBase`), valid when `has_user_dtb`; 0 otherwise. Linux's KPTI
    /// user table is always the page after `dtb` and is not reported here.
    pub user_dtb: u64,
    /// Guest-virtual address of the kernel object (`task_struct` / `EPROCESS`).
    pub object: u64,
    /// A kernel thread (no user address space; on Windows a process without a PEB, such as
    /// System).
    pub kernel_thread: bool,
    /// Whether `dtb` is set.
    pub has_dtb: bool,
    /// Whether `user_dtb` is set.
    pub has_user_dtb: bool,
    /// Short name (Linux `comm`, Windows `ImageFileName`), NUL-terminated UTF-8.
    pub name: [c_char; XVMI_NAME_LEN],
}

impl From<&Process> for xvmi_process {
    fn from(p: &Process) -> Self {
        xvmi_process {
            pid: p.pid,
            tgid: p.tgid,
            ppid: p.ppid,
            dtb: p.dtb.map(|d| d.0).unwrap_or(0),
            user_dtb: p.user_dtb.map(|d| d.0).unwrap_or(0),
            object: p.object.0,
            kernel_thread: p.kernel_thread,
            has_dtb: p.dtb.is_some(),
            has_user_dtb: p.user_dtb.is_some(),
            name: fixed_string(&p.name),
        }
    }
}

/// A kernel module or driver (`xenvmi::os::Module`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct xvmi_module {
    /// Guest-virtual base of its core (text) mapping.
    pub base: u64,
    /// Size in bytes as the kernel reports it (`/proc/modules`).
    pub size: u64,
    /// Guest-virtual address of the kernel object (`struct module` /
    /// `LDR_DATA_TABLE_ENTRY`).
    pub object: u64,
    /// Name, NUL-terminated UTF-8.
    pub name: [c_char; XVMI_NAME_LEN],
}

impl From<&Module> for xvmi_module {
    fn from(m: &Module) -> Self {
        xvmi_module {
            base: m.base.0,
            size: m.size,
            object: m.object.0,
            name: fixed_string(&m.name),
        }
    }
}

/// One backed range of guest-physical memory.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct xvmi_region {
    /// First guest-physical address.
    pub start: u64,
    /// Length in bytes.
    pub length: u64,
}
