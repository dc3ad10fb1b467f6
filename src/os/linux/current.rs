//! The task a vCPU is running: the kernel's per-CPU `current_task` (6.1 and before) or
//! `pcpu_hot.current_task` (6.2 and later), read at the vCPU's per-CPU base. That base is
//! `GS.base` in kernel mode and `KERNEL_GS_BASE` in user mode (the kernel swaps them with
//! `swapgs` on every entry and exit). Unlike the CR3 owner, this is exact for kernel threads
//! and idle vCPUs, whose CR3 is whatever address space ran last (lazy TLB).

use super::Linux;
use crate::addr::Gva;
use crate::backend::PhysicalMemory;
use crate::error::{Error, Result};
use crate::mem::GuestMemory;
use crate::os::Process;
use crate::regs::Registers;

impl Linux {
    /// The task running on a vCPU with registers `regs` (a thread: its `pid` is the thread's,
    /// `tgid` its process's; an idle vCPU runs its idle task, pid 0).
    ///
    /// # Errors
    /// [`Error::MissingSymbol`] for a kernel without either per-CPU symbol; the vCPU has no
    /// per-CPU base (it is not running Linux's kernel yet); memory errors.
    pub fn current_task<B: PhysicalMemory>(
        &self,
        mem: &GuestMemory<B>,
        regs: &Registers,
    ) -> Result<Process> {
        // Per-CPU symbols are offsets into each CPU's area, recorded as absolute values: the
        // KASLR slide does not apply to them.
        let syms = self.symbols();
        let offset = match syms.get("pcpu_hot") {
            Some(hot) => hot.wrapping_add(
                self.types()
                    .field("pcpu_hot", "current_task")
                    .map_or(0, |f| f.offset),
            ),
            None => syms.require("current_task")?,
        };
        let base = if regs.cpl() == 3 {
            regs.kernel_gs_base
        } else {
            regs.gs_base
        };
        if base == 0 {
            return Err(Error::malformed(
                "vCPU registers",
                "GS base",
                "zero: the vCPU has no per-CPU area (not in Linux's kernel yet)",
            ));
        }
        let at = Gva(base)
            .checked_add(offset)
            .ok_or(Error::Overflow("per-CPU current_task address"))?;
        let task = self.info().kernel_space;
        let t = mem.read_va(task, at)?;
        self.read_task(mem, t)
    }
}
