//! The control interface: libxenctrl's handle ([`XcInterface`]), and what goes through it
//! alone: vCPU registers, pause and resume.

use std::ffi::c_void;
use std::ptr::NonNull;
use std::rc::Rc;

use super::lib::XenLibs;
use super::{check, errno_reason, fail, sys, XenDomain};
use crate::addr::VcpuId;
use crate::backend::{VcpuState, VcpuStateWrite, VmControl};
use crate::error::{Error, Result};
use crate::regs::Registers;

/// `HVM_SAVE_CODE(CPU)` (a macro bindgen does not emit).
const HVM_SAVE_CODE_CPU: u16 = 2;

/// libxenctrl's interface handle (`xc_interface_open`), closed on drop. Every other part of the
/// backend that calls libxenctrl shares it (`Rc`), so it is closed last.
///
/// "Valid handle" in this backend's `// SAFETY:` comments means [`XcInterface::as_ptr`]: it is
/// the handle `xc_interface_open` returned (never NULL), open for as long as this value lives.
pub(super) struct XcInterface {
    handle: NonNull<c_void>,
    libs: Rc<XenLibs>,
}

impl XcInterface {
    /// Open libxenctrl's interface to the hypervisor (`/dev/xen/privcmd`).
    pub(super) fn open(libs: Rc<XenLibs>) -> Result<XcInterface> {
        // SAFETY: NULL loggers select libxenctrl's default stderr logger; flags 0. The handle is
        // closed by this type's Drop.
        let xch =
            unsafe { (libs.xc_interface_open)(std::ptr::null_mut(), std::ptr::null_mut(), 0) };
        let Some(handle) = NonNull::new(xch) else {
            return Err(fail(
                "xc_interface_open",
                errno_reason(
                    "opening /dev/xen/privcmd (then /proc/xen/privcmd)",
                    "this host is not running Xen, or this is not dom0, or xenvmi is not run as root",
                ),
            ));
        };
        Ok(XcInterface { handle, libs })
    }

    /// The loaded libraries (kept loaded while this handle lives).
    pub(super) fn libs(&self) -> &XenLibs {
        &self.libs
    }

    /// The loaded libraries, for a handle of another library that must keep them loaded.
    pub(super) fn shared_libs(&self) -> Rc<XenLibs> {
        Rc::clone(&self.libs)
    }

    /// The `xc_interface *` to pass to libxenctrl.
    pub(super) fn as_ptr(&self) -> *mut c_void {
        self.handle.as_ptr()
    }
}

impl Drop for XcInterface {
    fn drop(&mut self) {
        // SAFETY: the handle came from xc_interface_open and is closed once, here; every user
        // holds this value (through `Rc`), so none is left to call with it.
        unsafe { (self.libs.xc_interface_close)(self.handle.as_ptr()) };
    }
}

/// The HVM save-record instance of `vcpu` (16 bits): checked before it is narrowed, so vCPU
/// 65536 is an error and not vCPU 0.
fn save_instance(vcpu: VcpuId, count: u32) -> Result<u16> {
    u16::try_from(vcpu.0)
        .ok()
        .filter(|_| vcpu.0 < count)
        .ok_or(Error::NoSuchVcpu { vcpu, count })
}

impl VcpuState for XenDomain {
    fn vcpu_count(&self) -> u32 {
        self.caps.vcpus
    }

    fn registers(&self, vcpu: VcpuId) -> Result<Registers> {
        let instance = save_instance(vcpu, self.caps.vcpus)?;
        let mut c = sys::hvm_hw_cpu::default();
        // SAFETY: valid handle; the CPU record of one vCPU is written into `c` (its exact size).
        let rc = unsafe {
            (self.libs().xc_domain_hvm_getcontext_partial)(
                self.xch(),
                self.domid,
                HVM_SAVE_CODE_CPU,
                instance,
                &mut c as *mut _ as *mut c_void,
                std::mem::size_of::<sys::hvm_hw_cpu>() as u32,
            )
        };
        check(rc, format!("reading the registers of vCPU {vcpu}"))?;
        Ok(Registers {
            rax: c.rax,
            rbx: c.rbx,
            rcx: c.rcx,
            rdx: c.rdx,
            rsi: c.rsi,
            rdi: c.rdi,
            rsp: c.rsp,
            rbp: c.rbp,
            r8: c.r8,
            r9: c.r9,
            r10: c.r10,
            r11: c.r11,
            r12: c.r12,
            r13: c.r13,
            r14: c.r14,
            r15: c.r15,
            rip: c.rip,
            rflags: c.rflags,
            cr0: c.cr0,
            cr2: c.cr2,
            cr3: c.cr3,
            cr4: c.cr4,
            efer: c.msr_efer,
            cs_sel: c.cs_sel as u16,
            ss_sel: c.ss_sel as u16,
            cs_base: c.cs_base,
            ds_base: c.ds_base,
            es_base: c.es_base,
            fs_base: c.fs_base,
            gs_base: c.gs_base,
            ss_base: c.ss_base,
            kernel_gs_base: c.shadow_gs,
            gdtr_base: c.gdtr_base,
            gdtr_limit: c.gdtr_limit,
            idtr_base: c.idtr_base,
            idtr_limit: c.idtr_limit,
            sysenter_cs: c.sysenter_cs,
            sysenter_esp: c.sysenter_esp,
            sysenter_eip: c.sysenter_eip,
            msr_star: c.msr_star,
            msr_lstar: c.msr_lstar,
            msr_cstar: c.msr_cstar,
        })
    }
}

impl VcpuStateWrite for XenDomain {
    fn set_registers(&self, vcpu: VcpuId, r: &Registers) -> Result<()> {
        // Get the whole context, patch this vCPU's CPU record, set it back.
        // SAFETY: NULL buffer and size 0 ask for the size needed.
        let size = unsafe {
            (self.libs().xc_domain_hvm_getcontext)(self.xch(), self.domid, std::ptr::null_mut(), 0)
        };
        check(size, "sizing the HVM context")?;
        let mut blob = vec![0u8; size as usize];
        // SAFETY: `blob` has the size Xen asked for.
        let got = unsafe {
            (self.libs().xc_domain_hvm_getcontext)(
                self.xch(),
                self.domid,
                blob.as_mut_ptr(),
                size as u32,
            )
        };
        check(got, "reading the HVM context")?;
        let desc = std::mem::size_of::<sys::hvm_save_descriptor>();
        let mut off = 0usize;
        while off + desc <= got as usize {
            // Descriptor: u16 typecode, u16 instance, u32 length.
            let tc = u16::from_le_bytes([blob[off], blob[off + 1]]);
            let inst = u16::from_le_bytes([blob[off + 2], blob[off + 3]]);
            let len =
                u32::from_le_bytes([blob[off + 4], blob[off + 5], blob[off + 6], blob[off + 7]])
                    as usize;
            let body = off + desc;
            if tc == HVM_SAVE_CODE_CPU
                && inst as u32 == vcpu.0
                && len >= std::mem::size_of::<sys::hvm_hw_cpu>()
                && body + len <= blob.len()
            {
                // SAFETY: the record is a `struct hvm_hw_cpu` of at least its size (checked);
                // read and written unaligned because the blob is a byte buffer.
                let mut c: sys::hvm_hw_cpu = unsafe {
                    std::ptr::read_unaligned(blob[body..].as_ptr() as *const sys::hvm_hw_cpu)
                };
                (c.rax, c.rbx, c.rcx, c.rdx, c.rsi, c.rdi, c.rsp, c.rbp) =
                    (r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rsp, r.rbp);
                (c.r8, c.r9, c.r10, c.r11, c.r12, c.r13, c.r14, c.r15) =
                    (r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15);
                (c.rip, c.rflags, c.cr0, c.cr2, c.cr3, c.cr4) =
                    (r.rip, r.rflags, r.cr0, r.cr2, r.cr3, r.cr4);
                // SAFETY: as above.
                unsafe {
                    std::ptr::write_unaligned(blob[body..].as_mut_ptr() as *mut sys::hvm_hw_cpu, c)
                };
                // SAFETY: the patched blob has the size Xen produced.
                let rc = unsafe {
                    (self.libs().xc_domain_hvm_setcontext)(
                        self.xch(),
                        self.domid,
                        blob.as_mut_ptr(),
                        got as u32,
                    )
                };
                return check(rc, format!("writing the registers of vCPU {vcpu}"));
            }
            off = body + len;
        }
        Err(Error::NoSuchVcpu {
            vcpu,
            count: self.caps.vcpus,
        })
    }
}

impl VmControl for XenDomain {
    fn pause(&self) -> Result<()> {
        // SAFETY: valid handle.
        let rc = unsafe { (self.libs().xc_domain_pause)(self.xch(), self.domid) };
        check(rc, "xc_domain_pause")
    }
    fn resume(&self) -> Result<()> {
        // SAFETY: valid handle.
        let rc = unsafe { (self.libs().xc_domain_unpause)(self.xch(), self.domid) };
        check(rc, "xc_domain_unpause")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vcpu_index_is_checked_before_it_is_narrowed() {
        assert_eq!(save_instance(VcpuId(3), 4).ok(), Some(3));
        assert!(save_instance(VcpuId(4), 4).is_err());
        // 65536 would truncate to instance 0 (vCPU 0's registers).
        assert!(save_instance(VcpuId(65536), u32::MAX).is_err());
    }
}
