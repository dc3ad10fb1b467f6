//! Stealth breakpoints: an `int3` that only instruction fetches see.
//!
//! The DRAKVUF technique on altp2m: each code page with breakpoints gets a shadow copy in an
//! extra frame; the copy carries the `int3` bytes; an execute view maps the original gfn to the
//! shadow and allows only execution there. So:
//! - executing the page in the execute view runs the shadow and hits the `int3`
//!   ([`EventKind::SoftwareBreakpoint`]); the answer switches that vCPU to view 0 (the original
//!   bytes) for one single-step, then back;
//! - reading or writing the page in the execute view faults (execute-only), and gets the same
//!   answer: the access is performed in view 0 and sees or changes the original bytes, never
//!   the `int3`.
//!
//! Everything goes through the [`Session`], so teardown removes the view, the remaps and the
//! frames.

use std::collections::{HashMap, HashSet};

use super::session::{Session, SessionBackend};
use super::{Event, EventKind, Response};
use crate::addr::{Gfn, Gpa, ViewId, PAGE_SIZE};
use crate::backend::{MemAccess, Monitor, PhysicalMemoryWrite};
use crate::error::Result;

/// What [`StealthBreakpoints::handle`] decided about an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handled {
    /// One of the breakpoints was hit, at this guest-physical address.
    Hit(Gpa, Response),
    /// A read/write of a shadowed page or the single-step after it: answer with this.
    Internal(Response),
}

/// Breakpoints hidden from the guest's reads (see the module docs).
#[derive(Debug)]
pub struct StealthBreakpoints {
    exec_view: ViewId,
    shadows: HashMap<u64, Gfn>,
    points: HashSet<u64>,
    stepping: HashSet<u32>,
}

impl StealthBreakpoints {
    /// Create the execute view and the monitors the technique needs (breakpoints and
    /// single-step).
    ///
    /// # Errors
    /// Backend errors (altp2m off, no single-step support).
    pub fn new<B: SessionBackend>(session: &mut Session<'_, B>) -> Result<Self> {
        let exec_view = session.create_view(MemAccess::all())?;
        session.monitor(Monitor::SoftwareBreakpoint)?;
        session.monitor(Monitor::SingleStep)?;
        Ok(StealthBreakpoints {
            exec_view,
            shadows: HashMap::new(),
            points: HashSet::new(),
            stepping: HashSet::new(),
        })
    }

    /// The execute view.
    pub fn view(&self) -> ViewId {
        self.exec_view
    }

    /// Place a breakpoint at a guest-physical address (the page is shadowed on first use).
    ///
    /// # Errors
    /// Backend errors (no extra frame, memory not readable).
    pub fn add<B: SessionBackend + PhysicalMemoryWrite>(
        &mut self,
        session: &mut Session<'_, B>,
        gpa: Gpa,
    ) -> Result<()> {
        let gfn = gpa.gfn();
        let shadow = match self.shadows.get(&gfn.0) {
            Some(s) => *s,
            None => {
                let shadow = session.alloc_frame()?;
                let mut page = vec![0u8; PAGE_SIZE as usize];
                let b = session.backend();
                b.read_physical(gpa.page_base(), &mut page)?;
                b.write_physical(Gpa(shadow.0 << 12), &page)?;
                session.change_gfn(self.exec_view, gfn, shadow)?;
                // Execute-only in the execute view: reads and writes of the page trap.
                session.set_mem_access(self.exec_view, gfn, MemAccess::X)?;
                self.shadows.insert(gfn.0, shadow);
                shadow
            }
        };
        session
            .backend()
            .write_physical(Gpa((shadow.0 << 12) | gpa.page_offset()), &[0xcc])?;
        self.points.insert(gpa.0);
        Ok(())
    }

    /// Switch every vCPU into the execute view: the breakpoints become live.
    ///
    /// # Errors
    /// Backend error.
    pub fn activate<B: SessionBackend>(&self, session: &mut Session<'_, B>) -> Result<()> {
        session.switch_view(self.exec_view)
    }

    /// The answer for an event that belongs to the breakpoints, `None` for any other event.
    pub fn handle(&mut self, e: &Event) -> Option<Handled> {
        let step_in_host = Response::proceed()
            .switch_view(ViewId::HOST)
            .toggle_singlestep();
        match e.kind {
            EventKind::SoftwareBreakpoint { gfn, .. } => {
                let gpa = (gfn.0 << 12) | (e.regs.rip & (PAGE_SIZE - 1));
                if !self.points.contains(&gpa) {
                    return None;
                }
                self.stepping.insert(e.vcpu.0);
                Some(Handled::Hit(Gpa(gpa), step_in_host))
            }
            EventKind::MemoryAccess { gfn, .. }
                if self.shadows.contains_key(&gfn.0) && e.view == Some(self.exec_view) =>
            {
                self.stepping.insert(e.vcpu.0);
                Some(Handled::Internal(step_in_host))
            }
            EventKind::SingleStep { .. } if self.stepping.remove(&e.vcpu.0) => {
                Some(Handled::Internal(
                    Response::proceed()
                        .switch_view(self.exec_view)
                        .toggle_singlestep(),
                ))
            }
            _ => None,
        }
    }
}
