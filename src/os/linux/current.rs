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
        self.read_task(mem, self.current_task_pointer(mem, regs)?)
    }

    /// As [`Linux::current_task`], with only what an event on a hot path needs (the fewest
    /// reads: the per-CPU pointer, the ids, the name).
    ///
    /// # Errors
    /// As [`Linux::current_task`].
    pub fn current_thread<B: PhysicalMemory>(
        &self,
        mem: &GuestMemory<B>,
        regs: &Registers,
    ) -> Result<RunningThread> {
        let task = self.current_task_pointer(mem, regs)?;
        let o = self.offsets();
        let ks = self.info().kernel_space;
        let at = |off: u64| {
            task.checked_add(off)
                .ok_or(Error::Overflow("task_struct field address"))
        };
        // `pid` and `tgid` are neighbours in every kernel's task_struct: one read then.
        let (pid, tgid) = if o.task_tgid == o.task_pid + 4 {
            let both = mem.read_u64(ks, at(o.task_pid)?)?;
            (both as u32 as i32, (both >> 32) as u32 as i32)
        } else {
            (
                mem.read_u32(ks, at(o.task_pid)?)? as i32,
                mem.read_u32(ks, at(o.task_tgid)?)? as i32,
            )
        };
        let mut comm = [0u8; 16];
        mem.read(ks, at(o.task_comm)?, &mut comm)?;
        Ok(RunningThread {
            task,
            tid: pid.max(0) as u64,
            pid: tgid.max(0) as u64,
            name: crate::bytes::c_string(&comm),
        })
    }

    /// The address of the `task_struct` running on a vCPU (see the module docs).
    ///
    /// # Errors
    /// As [`Linux::current_task`].
    pub fn current_task_pointer<B: PhysicalMemory>(
        &self,
        mem: &GuestMemory<B>,
        regs: &Registers,
    ) -> Result<Gva> {
        let offset = match self
            .current_offset
            .get_or_init(|| self.current_task_offset().ok())
        {
            Some(o) => *o,
            None => self.current_task_offset()?, // the error, naming the symbols
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
        mem.read_va(self.info().kernel_space, at)
    }
}

impl Linux {
    /// Where the running task's pointer is in each CPU's per-CPU area.
    fn current_task_offset(&self) -> Result<u64> {
        // Per-CPU symbols are offsets into each CPU's area, recorded as absolute values: the
        // KASLR slide does not apply to them.
        let syms = self.symbols();
        Ok(match syms.get("pcpu_hot") {
            Some(hot) => hot.wrapping_add(
                self.types()
                    .field("pcpu_hot", "current_task")
                    .map_or(0, |f| f.offset),
            ),
            None => syms.require("current_task")?,
        })
    }
}

/// The thread a vCPU runs, as [`Linux::current_thread`] reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunningThread {
    /// Its `task_struct`.
    pub task: Gva,
    /// Thread id (`task_struct.pid`).
    pub tid: u64,
    /// Its process's id (`tgid`).
    pub pid: u64,
    /// Its name (`comm`).
    pub name: String,
}
