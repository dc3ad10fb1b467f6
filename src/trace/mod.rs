//! Semantic events: what the guest's kernel is doing, in its own words, from breakpoints on
//! kernel functions found by symbol (no profile), their arguments found by name in the
//! function's BTF prototype and read from the hit's registers, and the task from the vCPU's
//! per-CPU area ([`Linux::current_task`](crate::os::linux::Linux::current_task)).
//!
//! [`LinuxTracer::place`] puts a breakpoint on the function behind each [`Probe`] through a
//! [`Hooks`](crate::event::hooks::Hooks) manager (either placement); in the manager's
//! handler, [`LinuxTracer::handle`] turns a hit into a [`TraceEvent`]:
//!
//! | probe | breakpoint | events |
//! |---|---|---|
//! | [`Probe::ProcessStart`] | `finalize_exec(bprm)` | [`What::ProcessStart`]: the task that just executed a program, with its new memory: parent, name, executable, argv |
//! | [`Probe::Exit`] | `taskstats_exit(tsk, group_dead)`, else `do_exit(code)` | [`What::ProcessExit`] for the last thread of a process, [`What::ThreadExit`] for the others, with the exit code |
//! | [`Probe::ModuleLoad`] | `do_init_module(mod)` | [`What::ModuleLoad`]: the module (name, base, size), its init about to run |
//! | [`Probe::ModuleUnload`] | `free_module(mod)` | [`What::ModuleUnload`] |
//! | [`Probe::Syscall`] | `do_syscall_64(regs, nr)` | [`What::Syscall`]: number, name and arguments decoded from the kernel's own `syscalls_metadata` ([`SyscallTable`](crate::os::linux::syscalls::SyscallTable)) |
//! | [`Probe::FileOpen`] | `do_sys_openat2(dfd, filename, how)` (else `do_sys_open`) and its return | [`What::FileOpen`]: path, flags, mode, and the descriptor or error it returned |
//!
//! `finalize_exec` is where `load_elf_binary` (and the other loaders) end: the new address
//! space is in place, `mm->arg_start..arg_end` and `exe_file` are set, the name is the new
//! program's. `taskstats_exit` gets `group_dead` from `do_exit` itself (the thread that
//! brought the process's live count to zero), so the process's end is exact even when its
//! threads exit at once on several vCPUs; `do_exit`'s fallback reads that count instead.
//! System calls are seen at entry (their arguments), from the 64-bit entry only (32-bit
//! `int 0x80` calls are not traced).
//!
//! A [`TraceFilter`] is applied before the event is decoded: the probe and the system call
//! number come from registers, the process from a [`Cr3Resolver`](crate::os::linux::Cr3Resolver)
//! cache of page-table roots, so an event that does not pass reads no guest memory (the
//! cache walks the task list once per new address space).

mod filter;
mod json;
mod linux;
mod run;
mod text;

use std::sync::Arc;
use std::time::SystemTime;

pub use filter::TraceFilter;
pub use linux::{LinuxTracer, NotPlaced};
pub use run::{simulated_calls, TraceOptions, TraceSummary, Tracing};

use crate::addr::VcpuId;
use crate::os::linux::syscalls::{ArgValue, SyscallInfo};
use crate::os::Module;

/// What to trace: each probe is one kernel function (the first of [`Probe::symbols`] the
/// kernel has).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Probe {
    /// A process starts a program (`execve` succeeded).
    ProcessStart,
    /// A thread exits; the last one's exit ends its process.
    Exit,
    /// A module is loaded (its init function is about to run).
    ModuleLoad,
    /// A module is unloaded.
    ModuleUnload,
    /// A system call is made (64-bit entry).
    Syscall,
    /// A file is opened (`open`, `openat`, `openat2`, `creat`), with its result.
    FileOpen,
}

impl Probe {
    /// Every probe.
    pub const ALL: [Probe; 6] = [
        Probe::ProcessStart,
        Probe::Exit,
        Probe::ModuleLoad,
        Probe::ModuleUnload,
        Probe::Syscall,
        Probe::FileOpen,
    ];

    /// The kernel functions that can carry the probe, preferred first.
    pub fn symbols(self) -> &'static [&'static str] {
        match self {
            Probe::ProcessStart => &["finalize_exec"],
            Probe::Exit => &["taskstats_exit", "do_exit"],
            Probe::ModuleLoad => &["do_init_module"],
            Probe::ModuleUnload => &["free_module"],
            Probe::Syscall => &["do_syscall_64"],
            Probe::FileOpen => &["do_sys_openat2", "do_sys_open"],
        }
    }

    /// The probe's name in messages (`process_start`, ...; `exit` for both exit events).
    pub fn name(self) -> &'static str {
        match self {
            Probe::ProcessStart => "process_start",
            Probe::Exit => "exit",
            Probe::ModuleLoad => "module_load",
            Probe::ModuleUnload => "module_unload",
            Probe::Syscall => "syscall",
            Probe::FileOpen => "file_open",
        }
    }
}

/// One part of an event that could not be read has its reason instead (which page, which
/// field); the rest of the event stands.
pub type Part<T> = std::result::Result<T, String>;

/// One semantic event: who (the task running on the vCPU) and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceEvent {
    /// When the event was decoded (host time: the guest was paused at it).
    pub time: SystemTime,
    /// The vCPU.
    pub vcpu: VcpuId,
    /// The process (`tgid`).
    pub pid: u64,
    /// The thread (`task_struct.pid`).
    pub tid: u64,
    /// The thread's name (`comm`).
    pub comm: String,
    /// What happened.
    pub what: What,
}

impl TraceEvent {
    /// The event's type name, as in JSON output (`process_start`, `syscall`, ...).
    pub fn type_name(&self) -> &'static str {
        self.what.type_name()
    }
}

/// What an event reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum What {
    /// The process started a program.
    ProcessStart {
        /// Its parent's process id.
        ppid: u64,
        /// The program's path.
        exe: Part<String>,
        /// Its arguments.
        argv: Part<Vec<String>>,
    },
    /// The process ended (its last thread exited).
    ProcessExit {
        /// The exit code.
        code: ExitCode,
    },
    /// A thread exited; its process goes on.
    ThreadExit {
        /// The exit code.
        code: ExitCode,
    },
    /// A module is loaded.
    ModuleLoad {
        /// The module.
        module: Module,
    },
    /// A module is unloaded.
    ModuleUnload {
        /// The module.
        module: Module,
    },
    /// A system call (at its entry).
    Syscall {
        /// Its number.
        nr: u64,
        /// Its declaration, when the kernel's metadata has one for the number.
        info: Option<Arc<SyscallInfo>>,
        /// The six argument registers as the caller set them.
        raw: [u64; 6],
        /// The declared arguments' values (empty without a declaration).
        args: Vec<ArgValue>,
    },
    /// A file was opened (or failed to open).
    FileOpen {
        /// The directory descriptor the path is relative to (`-100` is `AT_FDCWD`).
        dfd: i64,
        /// The path as the caller gave it.
        path: Part<String>,
        /// The `O_*` flags.
        flags: u64,
        /// The creation mode.
        mode: u64,
        /// The new descriptor, or the negated `errno`; `None` if the call's return could not
        /// be followed (the reason is in `unfollowed`).
        result: Option<i64>,
        /// Why the return was not followed, when it was not.
        unfollowed: Option<String>,
    },
}

impl What {
    /// The type name (`process_start`, `process_exit`, `thread_exit`, `module_load`,
    /// `module_unload`, `syscall`, `file_open`).
    pub fn type_name(&self) -> &'static str {
        match self {
            What::ProcessStart { .. } => "process_start",
            What::ProcessExit { .. } => "process_exit",
            What::ThreadExit { .. } => "thread_exit",
            What::ModuleLoad { .. } => "module_load",
            What::ModuleUnload { .. } => "module_unload",
            What::Syscall { .. } => "syscall",
            What::FileOpen { .. } => "file_open",
        }
    }
}

/// An exit code as the kernel keeps it (`wait(2)`'s status word).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExitCode(pub i64);

impl ExitCode {
    /// The status given to `exit` (`Some` for a normal exit).
    pub fn status(self) -> Option<u8> {
        (self.0 & 0x7f == 0).then_some(((self.0 >> 8) & 0xff) as u8)
    }

    /// The signal that ended it (`Some` when a signal did).
    pub fn signal(self) -> Option<u8> {
        (self.0 & 0x7f != 0).then_some((self.0 & 0x7f) as u8)
    }
}
