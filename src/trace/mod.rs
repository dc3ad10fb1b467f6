//! Semantic events: what the guest's kernel is doing, in its own words, from breakpoints on
//! kernel functions found by symbol (no profile), their arguments read from the hit's
//! registers, and the task from the vCPU's per-CPU area ([`Linux::current_task`]).
//!
//! [`LinuxTracer::place`] puts a breakpoint on the function behind each [`Probe`] through a
//! [`Hooks`] manager (either placement); in the manager's handler,
//! [`LinuxTracer::decode`] turns a hit into a [`TraceEvent`]:
//!
//! | probe | breakpoint | what is read |
//! |---|---|---|
//! | module load | `do_init_module(struct module *)` | the module (name, base, size), its init about to run |
//! | module unload | `free_module(struct module *)` | the module, about to be freed |
//! | thread exit | `do_exit(long code)` | the exiting task (tid, process, name) and the code |
//! | process start | `finalize_exec(struct linux_binprm *)` | the task that just executed a program, with its new memory: pid, parent, name, executable, argv |
//!
//! `finalize_exec` is where `load_elf_binary` (and the other loaders) end: the new address
//! space is in place, `mm->arg_start..arg_end` and `exe_file` are set, the name is the new
//! program's. System calls and file opens (the tracing issue) are still to come.

use crate::addr::VcpuId;
use crate::backend::PhysicalMemory;
use crate::error::Result;
use crate::event::hooks::{Hit, HookId, Hooks};
use crate::event::session::{Session, SessionBackend};
use crate::event::Event;
use crate::mem::GuestMemory;
use crate::os::linux::Linux;
use crate::os::Module;

/// What to trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Probe {
    /// A module is loaded (its init function is about to run).
    ModuleLoad,
    /// A module is unloaded.
    ModuleUnload,
    /// A thread exits (the last one's exit ends its process).
    ThreadExit,
    /// A process starts a program (`execve` succeeded).
    ProcessStart,
}

impl Probe {
    /// The kernel function whose entry is hooked.
    pub fn symbol(self) -> &'static str {
        match self {
            Probe::ModuleLoad => "do_init_module",
            Probe::ModuleUnload => "free_module",
            Probe::ThreadExit => "do_exit",
            Probe::ProcessStart => "finalize_exec",
        }
    }
}

/// One semantic event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TraceEvent {
    /// A module is loaded.
    ModuleLoad {
        /// The vCPU.
        vcpu: VcpuId,
        /// The module.
        module: Module,
    },
    /// A module is unloaded.
    ModuleUnload {
        /// The vCPU.
        vcpu: VcpuId,
        /// The module.
        module: Module,
    },
    /// A thread exits.
    ThreadExit {
        /// The vCPU.
        vcpu: VcpuId,
        /// The thread's id.
        tid: u64,
        /// Its process's id (`tgid`).
        pid: u64,
        /// Its name.
        name: String,
        /// The exit code as `do_exit` got it (`status << 8`, or a signal number).
        code: i64,
    },
    /// A process starts a program.
    ProcessStart {
        /// The vCPU.
        vcpu: VcpuId,
        /// Its process id.
        pid: u64,
        /// Its parent's.
        ppid: u64,
        /// Its new name (`comm`).
        name: String,
        /// The program's path, or why it could not be read.
        exe: std::result::Result<String, String>,
        /// Its arguments, or why they could not be read.
        argv: std::result::Result<Vec<String>, String>,
    },
}

/// Probes placed on a hook manager (see the module docs).
#[derive(Clone, Debug, Default)]
pub struct LinuxTracer {
    probes: Vec<(HookId, Probe)>,
}

impl LinuxTracer {
    /// Place a breakpoint for each probe.
    ///
    /// # Errors
    /// [`Error::MissingSymbol`](crate::Error::MissingSymbol) for a kernel without the
    /// function; as [`Hooks::add_symbol`].
    pub fn place<B: SessionBackend, M: PhysicalMemory>(
        hooks: &mut Hooks,
        session: &mut Session<'_, B>,
        mem: &GuestMemory<M>,
        linux: &Linux,
        probes: &[Probe],
    ) -> Result<Self> {
        let mut t = LinuxTracer::default();
        for &p in probes {
            let id = hooks.add_symbol(session, mem, linux, p.symbol())?;
            t.probes.push((id, p));
        }
        Ok(t)
    }

    /// The probes placed, with their breakpoints.
    pub fn probes(&self) -> &[(HookId, Probe)] {
        &self.probes
    }

    /// The event a hit is, if it is one of the tracer's breakpoints (`None` otherwise).
    /// `event` is the hit's event (its registers hold the function's arguments).
    pub fn decode<M: PhysicalMemory>(
        &self,
        linux: &Linux,
        mem: &GuestMemory<M>,
        hit: Hit,
        event: &Event,
    ) -> Option<Result<TraceEvent>> {
        let Hit::Breakpoint { id, .. } = hit else {
            return None;
        };
        let probe = self.probes.iter().find(|(i, _)| *i == id)?.1;
        let r = &event.regs;
        let vcpu = event.vcpu;
        Some(match probe {
            Probe::ModuleLoad => linux
                .read_module(mem, crate::addr::Gva(r.rdi))
                .map(|module| TraceEvent::ModuleLoad { vcpu, module }),
            Probe::ModuleUnload => linux
                .read_module(mem, crate::addr::Gva(r.rdi))
                .map(|module| TraceEvent::ModuleUnload { vcpu, module }),
            Probe::ThreadExit => linux.current_task(mem, r).map(|t| TraceEvent::ThreadExit {
                vcpu,
                tid: t.pid,
                pid: t.tgid,
                name: t.name,
                code: r.rdi as i64,
            }),
            Probe::ProcessStart => linux.current_task(mem, r).map(|t| {
                let d = linux.process_detail(mem, &t);
                TraceEvent::ProcessStart {
                    vcpu,
                    pid: t.tgid,
                    ppid: t.ppid,
                    name: t.name,
                    exe: d.exe.and_then(|e| {
                        e.ok_or_else(|| "no executable (a kernel thread)".to_owned())
                    }),
                    argv: d.cmdline,
                }
            }),
        })
    }
}
