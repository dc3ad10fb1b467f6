//! Finding the kernel of a running guest: discovery reads page tables, kallsyms and BTF spread
//! over many pages, which must not change under it, so the guest is paused for it.

use super::{Linux, ProfileSource};
use crate::addr::VcpuId;
use crate::backend::{PhysicalMemory, VcpuState, VmControl};
use crate::error::Result;
use crate::mem::GuestMemory;
use crate::regs::Registers;

impl Linux {
    /// Pause `backend`, read every vCPU's registers (those that cannot be read are left out),
    /// find the kernel ([`Linux::discover`]) and resume, also when discovery failed. Returns
    /// the kernel and the registers it was found with.
    ///
    /// # Errors
    /// The pause's, discovery's or the resume's error (a failed resume is reported even when
    /// discovery succeeded: the guest would be left paused).
    pub fn discover_paused<B: PhysicalMemory + VcpuState + VmControl>(
        backend: &B,
        source: ProfileSource,
    ) -> Result<(Linux, Vec<Registers>)> {
        backend.pause()?;
        let regs: Vec<Registers> = (0..backend.vcpu_count())
            .filter_map(|v| backend.registers(VcpuId(v)).ok())
            .collect();
        let linux = Linux::discover(&GuestMemory::new(backend), &regs, source);
        backend.resume()?;
        Ok((linux?, regs))
    }
}
