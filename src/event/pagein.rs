//! Bringing a paged-out user page in: inject a page fault into the guest at a moment when the
//! process that owns the page runs in user mode, let the guest's own fault handler bring the
//! page in, and tell the caller when the page is present (LibVMI's `vmi_request_page_fault`,
//! plus the waiting that its users write by hand).
//!
//! A page fault injected while the vCPU runs kernel code would be taken as a fault of the
//! kernel on a user address, which the kernel treats as a bug unless the faulting instruction
//! has an exception-table entry. So [`PageIn`] injects only when the event's vCPU is at CPL 3
//! in the page's address space. To get such a moment it needs two monitors, which
//! [`PageIn::start`] turns on: CR3 writes (the process is scheduled in) and single-step. At a
//! CR3 write into the process's address space it single-steps that vCPU (in kernel mode,
//! towards the return to user mode), injects at the first step at CPL 3, and turns the step
//! off. Each later event re-checks the page: present, it is done; still absent after the
//! guest ran the injected fault, it injects again, at most [`MAX_INJECTIONS`] times.
//!
//! Everything it turns on goes through the session, so teardown undoes it.

use super::session::{EventContext, Session, SessionBackend};
use super::{Event, EventKind, Response};
use crate::addr::{Gpa, Gva, VcpuId};
use crate::backend::{ControlRegister, Injection, Monitor, PhysicalMemory};
use crate::error::{Error, Result};
use crate::mem::paging::Walk;
use crate::mem::{AddressSpace, GuestMemory};

/// Page faults injected for one page before [`PageIn`] gives up.
pub const MAX_INJECTIONS: u32 = 3;
/// Single-steps spent on one vCPU looking for user mode before that attempt is abandoned
/// (it resumes at the next CR3 write into the address space).
pub const MAX_STEPS: u32 = 100_000;

/// `#PF` error code bits.
const PF_WRITE: u32 = 1 << 1;
const PF_USER: u32 = 1 << 2;

/// Where a [`PageIn`] stands after an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageInStatus {
    /// The page is present, at this guest-physical address (of `va`, not of its page).
    Present(Gpa),
    /// Not yet: answer the event with the response [`PageIn::on_event`] returned.
    Waiting,
}

/// Bringing one user page in (see the module docs).
#[derive(Debug)]
pub struct PageIn {
    space: AddressSpace,
    va: Gva,
    error_code: u32,
    /// The vCPU being stepped towards user mode, and steps so far.
    stepping: Option<(VcpuId, u32)>,
    /// A page fault was injected on this vCPU and it has not run since.
    outstanding: Option<VcpuId>,
    injections: u32,
}

/// Whether `cr3` (a raw CR3 value, PCID and the KPTI user bit included) is `space`'s.
fn same_space(cr3: u64, space: AddressSpace) -> bool {
    // Bit 12 selects the KPTI user half of a pair of page tables; bits 0..11 are the PCID.
    const IGNORED: u64 = 0x1fff;
    const PHYS: u64 = 0x000f_ffff_ffff_f000;
    (cr3 & PHYS & !IGNORED) == (space.root.0 & PHYS & !IGNORED)
}

impl PageIn {
    /// Turn on the monitors it needs (CR3 writes, sync; single-step) and start. `write`:
    /// bring the page in for writing (a copy-on-write page gets its private copy).
    ///
    /// # Errors
    /// The backend refuses a monitor.
    pub fn start<B: SessionBackend>(
        session: &mut Session<'_, B>,
        space: AddressSpace,
        va: Gva,
        write: bool,
    ) -> Result<Self> {
        session.monitor(Monitor::ControlRegister {
            register: ControlRegister::Cr3,
            sync: true,
            on_change_only: true,
            ignore_mask: 0,
        })?;
        session.monitor(Monitor::SingleStep)?;
        Ok(PageIn {
            space,
            va,
            error_code: PF_USER | if write { PF_WRITE } else { 0 },
            stepping: None,
            outstanding: None,
            injections: 0,
        })
    }

    /// Page faults injected so far.
    pub fn injections(&self) -> u32 {
        self.injections
    }

    /// The page's guest-physical address if it is present now.
    ///
    /// # Errors
    /// The page tables cannot be read.
    pub fn present<M: PhysicalMemory>(&self, mem: &GuestMemory<M>) -> Result<Option<Gpa>> {
        Ok(match mem.translate(self.space, self.va)? {
            Walk::Mapped(m) => Some(m.gpa),
            Walk::NotPresent { .. } => None,
        })
    }

    /// Look at one event: whether the page is present, and the response for the event (with
    /// a page fault injected when this is the moment for one). Call it for every event while
    /// the page is wanted; `mem`'s translations must be fresh (the guest ran).
    ///
    /// # Errors
    /// [`Error::Unsupported`] after [`MAX_INJECTIONS`] page faults that did not bring the page
    /// in (the address is not valid in the process, or the guest refuses); backend errors.
    pub fn on_event<B: SessionBackend, M: PhysicalMemory>(
        &mut self,
        ctx: &mut EventContext<'_, '_, B>,
        mem: &GuestMemory<M>,
    ) -> Result<(PageInStatus, Response)> {
        let e: &Event = ctx.event();
        let vcpu = e.vcpu;
        if self.outstanding == Some(vcpu) {
            // The vCPU ran the injected fault since: the guest handled it.
            self.outstanding = None;
        }
        if let Some(gpa) = self.present(mem)? {
            self.stop_stepping(ctx)?;
            return Ok((PageInStatus::Present(gpa), Response::proceed()));
        }
        let stepping_this = self.stepping.map(|(v, _)| v) == Some(vcpu);
        match e.kind {
            EventKind::ControlRegister {
                register: ControlRegister::Cr3,
                new,
                ..
            } if self.stepping.is_none() && self.outstanding.is_none() => {
                if same_space(new, self.space) {
                    ctx.session().singlestep(vcpu, true)?;
                    self.stepping = Some((vcpu, 0));
                }
                Ok((PageInStatus::Waiting, Response::proceed()))
            }
            EventKind::SingleStep { .. } if stepping_this => {
                let (_, steps) = self.stepping.unwrap_or((vcpu, 0));
                if !same_space(e.regs.cr3, self.space) || steps >= MAX_STEPS {
                    // Scheduled out before reaching user mode, or too long: wait for the next
                    // switch into the address space.
                    self.stop_stepping(ctx)?;
                    return Ok((PageInStatus::Waiting, Response::proceed()));
                }
                if e.regs.cpl() != 3 || self.outstanding.is_some() {
                    self.stepping = Some((vcpu, steps + 1));
                    return Ok((PageInStatus::Waiting, Response::proceed()));
                }
                self.stop_stepping(ctx)?;
                if self.injections >= MAX_INJECTIONS {
                    return Err(Error::Unsupported {
                        backend: "page-in",
                        capability: "bringing in a page that MAX_INJECTIONS page faults did not",
                    });
                }
                self.injections += 1;
                self.outstanding = Some(vcpu);
                let pf = Injection::page_fault(self.va.0, self.error_code);
                Ok((PageInStatus::Waiting, Response::proceed().inject(pf)))
            }
            _ => Ok((PageInStatus::Waiting, Response::proceed())),
        }
    }

    fn stop_stepping<B: SessionBackend>(
        &mut self,
        ctx: &mut EventContext<'_, '_, B>,
    ) -> Result<()> {
        if let Some((v, _)) = self.stepping.take() {
            ctx.session().singlestep(v, false)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem::PagingMode;

    #[test]
    fn a_kpti_user_cr3_with_a_pcid_is_the_same_space() {
        let s = AddressSpace::from_cr3(0x1234_4000, PagingMode::Level4);
        assert!(same_space(0x1234_4000, s));
        assert!(same_space(0x1234_5000 | 0x805, s)); // user half, PCID 5
        assert!(same_space(0x8000_0000_1234_4003, s)); // NOFLUSH bit
        assert!(!same_space(0x1234_6000, s));
    }
}
