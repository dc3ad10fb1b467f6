//! Forensic detail of one process, read from the kernel's own structures (the fields
//! `/proc/PID/{cmdline,environ,exe,status}` and `/proc/PID/task` show): arguments,
//! environment, executable path, credentials and threads.
//!
//! Each part is read on its own: a user page the image does not hold (swapped out, or left
//! out of the capture) fails only the part that needs it, with its reason, not the process.
//! Every walk is bounded: argument and environment areas at [`MAX_ARGS_BYTES`], paths at
//! [`MAX_PATH_COMPONENTS`] components of at most 255 bytes, threads at [`MAX_THREADS`].

use super::files::OpenFile;
use super::maps::Vma;
use super::path::PathOffsets;
use super::sockets::Socket;
use super::Linux;
use crate::addr::Gva;
use crate::backend::PhysicalMemory;
use crate::error::{Error, Result};
use crate::mem::{AddressSpace, GuestMemory};
use crate::os::list::ListWalk;
use crate::os::Process;

/// Most bytes of arguments (or environment) read for one process.
pub const MAX_ARGS_BYTES: u64 = 128 << 10;
pub use super::path::{
    DELETED_SUFFIX, MAX_PATH_BYTES, MAX_PATH_COMPONENTS, MAX_PATH_STEPS, MAX_PATH_TEXT,
};
/// Most threads listed for one process.
pub const MAX_THREADS: usize = 1 << 16;

/// The identities a process runs with (`task->cred`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Credentials {
    /// Real user id.
    pub uid: u32,
    /// Real group id.
    pub gid: u32,
    /// Effective user id.
    pub euid: u32,
    /// Effective group id.
    pub egid: u32,
}

/// One thread of a process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Thread {
    /// Thread id (`task_struct.pid`).
    pub tid: u64,
    /// Its name (`comm`).
    pub name: String,
    /// Its state as `ps` shows it: `R`, `S`, `D`, `T`, `t`, `X`, `Z`, `P`, `I`.
    pub state: char,
}

/// One part of a [`ProcessDetail`]: the value, or the message saying why it could not be read
/// (which page, which field).
pub type Part<T> = std::result::Result<T, String>;

/// What [`Linux::process_detail`] found; each part is the value or why it could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessDetail {
    /// Arguments (`mm->arg_start..arg_end`, split at NUL bytes); empty for kernel threads.
    pub cmdline: Part<Vec<String>>,
    /// Environment (`mm->env_start..env_end`), `NAME=value` strings; empty for kernel threads.
    pub environ: Part<Vec<String>>,
    /// Path of the executable (`mm->exe_file`), `None` for kernel threads.
    pub exe: Part<Option<String>>,
    /// Credentials.
    pub credentials: Part<Credentials>,
    /// Threads, the leader first.
    pub threads: Part<Vec<Thread>>,
    /// The memory map, in address order ([`Linux::memory_map`]); empty for kernel threads.
    pub maps: Part<Vec<Vma>>,
    /// Open files by descriptor ([`Linux::open_files`]).
    pub files: Part<Vec<OpenFile>>,
    /// The sockets among them ([`Linux::sockets`]).
    pub sockets: Part<Vec<Socket>>,
}

/// Field offsets the detail needs, resolved when asked (they are not needed by the process
/// list itself).
struct DetailOffsets {
    mm_arg_start: u64,
    mm_arg_end: u64,
    mm_env_start: u64,
    mm_env_end: u64,
    mm_exe_file: u64,
    path: PathOffsets,
    task_cred: u64,
    cred_uid: u64,
    cred_gid: u64,
    cred_euid: u64,
    cred_egid: u64,
    task_state: u64,
    task_exit_state: u64,
    /// ≤ 6.6: `task_struct.thread_group`; else `signal_struct.thread_head` with
    /// `task_struct.thread_node`.
    threads: ThreadLinks,
}

enum ThreadLinks {
    Group {
        task_thread_group: u64,
    },
    Signal {
        task_signal: u64,
        signal_thread_head: u64,
        task_thread_node: u64,
    },
}

impl DetailOffsets {
    fn resolve(l: &Linux) -> Result<Self> {
        let t = l.types();
        let threads = if let Some(f) = t.field("task_struct", "thread_group") {
            ThreadLinks::Group {
                task_thread_group: f.offset,
            }
        } else {
            ThreadLinks::Signal {
                task_signal: t.require("task_struct", "signal")?,
                signal_thread_head: t.require("signal_struct", "thread_head")?,
                task_thread_node: t.require("task_struct", "thread_node")?,
            }
        };
        let task_state = match t.field("task_struct", "__state") {
            Some(f) => f.offset,
            None => t.require("task_struct", "state")?,
        };
        Ok(DetailOffsets {
            mm_arg_start: t.require("mm_struct", "arg_start")?,
            mm_arg_end: t.require("mm_struct", "arg_end")?,
            mm_env_start: t.require("mm_struct", "env_start")?,
            mm_env_end: t.require("mm_struct", "env_end")?,
            mm_exe_file: t.require("mm_struct", "exe_file")?,
            path: PathOffsets::resolve(l)?,
            task_cred: t.require("task_struct", "cred")?,
            cred_uid: t.require("cred", "uid")?,
            cred_gid: t.require("cred", "gid")?,
            cred_euid: t.require("cred", "euid")?,
            cred_egid: t.require("cred", "egid")?,
            task_state,
            task_exit_state: t.require("task_struct", "exit_state")?,
            threads,
        })
    }
}

fn add(base: Gva, off: u64, what: &'static str) -> Result<Gva> {
    base.checked_add(off).ok_or(Error::Overflow(what))
}

/// NUL-separated strings, as `/proc/PID/cmdline` splits them (a trailing NUL ends the last).
fn split_nul(bytes: &[u8]) -> Vec<String> {
    let body = bytes.strip_suffix(&[0]).unwrap_or(bytes);
    if body.is_empty() {
        return Vec::new();
    }
    body.split(|&b| b == 0)
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

/// `ps`'s letter for a task's state (`fs/proc/array.c`, `task_state_array`).
fn state_letter(state: u32, exit_state: u32) -> char {
    const TASK_UNINTERRUPTIBLE: u32 = 0x2;
    const TASK_NOLOAD: u32 = 0x400;
    const TASK_PARKED: u32 = 0x40;
    if state == TASK_UNINTERRUPTIBLE | TASK_NOLOAD {
        return 'I';
    }
    let s = (state | exit_state) & 0x7f;
    match s {
        0 => 'R',
        _ if s & 0x1 != 0 => 'S',
        _ if s & 0x2 != 0 => 'D',
        _ if s & 0x4 != 0 => 'T',
        _ if s & 0x8 != 0 => 't',
        _ if s & 0x10 != 0 => 'X',
        _ if s & 0x20 != 0 => 'Z',
        _ if s & TASK_PARKED != 0 => 'P',
        _ => '?',
    }
}

impl Linux {
    /// Read what `/proc` would show about `p` beyond the process list (see the module docs).
    /// Each part fails on its own; the kernel's field offsets must be in its types (BTF or
    /// profile), or every part says which one is missing.
    pub fn process_detail<B: PhysicalMemory>(
        &self,
        mem: &GuestMemory<B>,
        p: &Process,
    ) -> ProcessDetail {
        let o = match DetailOffsets::resolve(self) {
            Ok(o) => o,
            Err(e) => {
                let m = e.to_string();
                return ProcessDetail {
                    cmdline: Err(m.clone()),
                    environ: Err(m.clone()),
                    exe: Err(m.clone()),
                    credentials: Err(m.clone()),
                    threads: Err(m.clone()),
                    maps: Err(m.clone()),
                    files: Err(m.clone()),
                    sockets: Err(m),
                };
            }
        };
        let msg = |e: Error| e.to_string();
        ProcessDetail {
            cmdline: self
                .user_area(mem, p, o.mm_arg_start, o.mm_arg_end)
                .map_err(msg),
            environ: self
                .user_area(mem, p, o.mm_env_start, o.mm_env_end)
                .map_err(msg),
            exe: self.exe_of(mem, &o, p).map_err(msg),
            credentials: self.credentials(mem, &o, p.object).map_err(msg),
            threads: self.threads(mem, &o, p.object).map_err(msg),
            maps: self.process_maps(mem, p).map_err(msg),
            files: self.open_files(mem, p.object).map_err(msg),
            sockets: self.sockets(mem, p.object).map_err(msg),
        }
    }

    /// `p`'s arguments alone (the `cmdline` part of [`Linux::process_detail`]), for callers
    /// that need only them (a process-start event).
    ///
    /// # Errors
    /// A missing field offset; memory errors (a page the image lacks).
    pub fn command_line<B: PhysicalMemory>(
        &self,
        mem: &GuestMemory<B>,
        p: &Process,
    ) -> Result<Vec<String>> {
        let t = self.types();
        let start = t.require("mm_struct", "arg_start")?;
        let end = t.require("mm_struct", "arg_end")?;
        self.user_area(mem, p, start, end)
    }

    /// `p`'s executable path alone (the `exe` part of [`Linux::process_detail`]); `None`
    /// for a kernel thread.
    ///
    /// # Errors
    /// As [`Linux::command_line`].
    pub fn executable<B: PhysicalMemory>(
        &self,
        mem: &GuestMemory<B>,
        p: &Process,
    ) -> Result<Option<String>> {
        self.exe_of(mem, &DetailOffsets::resolve(self)?, p)
    }

    /// `p`'s memory map alone (the `maps` part of [`Linux::process_detail`]); empty for a
    /// kernel thread.
    ///
    /// # Errors
    /// As [`Linux::memory_map`]; memory errors reading `task->mm`.
    pub fn process_maps<B: PhysicalMemory>(
        &self,
        mem: &GuestMemory<B>,
        p: &Process,
    ) -> Result<Vec<Vma>> {
        match self.user_mm(mem, p)? {
            Some(mm) => self.memory_map(mem, mm),
            None => Ok(Vec::new()),
        }
    }

    /// `p`'s `mm`, `None` for a kernel thread (or a task whose `mm` is gone).
    fn user_mm<B: PhysicalMemory>(&self, mem: &GuestMemory<B>, p: &Process) -> Result<Option<Gva>> {
        let ks = self.info().kernel_space;
        let mm = mem.read_va(ks, add(p.object, self.offsets().task_mm, "task->mm")?)?;
        Ok((mm.0 != 0 && !p.kernel_thread).then_some(mm))
    }

    /// The NUL-separated strings between two `mm_struct` fields (arguments or environment),
    /// read from `p`'s own address space; empty for a kernel thread.
    fn user_area<B: PhysicalMemory>(
        &self,
        mem: &GuestMemory<B>,
        p: &Process,
        start: u64,
        end: u64,
    ) -> Result<Vec<String>> {
        let ks = self.info().kernel_space;
        let (Some(mm), Some(root)) = (self.user_mm(mem, p)?, p.dtb) else {
            return Ok(Vec::new());
        };
        let space = AddressSpace {
            root,
            mode: ks.mode,
        };
        let a = mem.read_u64(ks, add(mm, start, "mm field")?)?;
        let b = mem.read_u64(ks, add(mm, end, "mm field")?)?;
        if b < a {
            return Err(Error::malformed(
                "mm_struct",
                format!("process {}", p.pid),
                format!("area end {b:#x} below its start {a:#x}"),
            ));
        }
        let len = (b - a).min(MAX_ARGS_BYTES) as usize;
        Ok(split_nul(&mem.read_bytes(space, Gva(a), len)?))
    }

    fn exe_of<B: PhysicalMemory>(
        &self,
        mem: &GuestMemory<B>,
        o: &DetailOffsets,
        p: &Process,
    ) -> Result<Option<String>> {
        match self.user_mm(mem, p)? {
            Some(mm) => self.exe_path(mem, o, mm),
            None => Ok(None),
        }
    }

    fn exe_path<B: PhysicalMemory>(
        &self,
        mem: &GuestMemory<B>,
        o: &DetailOffsets,
        mm: Gva,
    ) -> Result<Option<String>> {
        let ks = self.info().kernel_space;
        let file = mem.read_va(ks, add(mm, o.mm_exe_file, "mm->exe_file")?)?;
        if file.0 == 0 {
            return Ok(None);
        }
        self.file_path(mem, &o.path, file).map(Some)
    }

    fn credentials<B: PhysicalMemory>(
        &self,
        mem: &GuestMemory<B>,
        o: &DetailOffsets,
        task: Gva,
    ) -> Result<Credentials> {
        let ks = self.info().kernel_space;
        let cred = mem.read_va(ks, add(task, o.task_cred, "task->cred")?)?;
        let id = |off: u64| -> Result<u32> { mem.read_u32(ks, add(cred, off, "cred field")?) };
        Ok(Credentials {
            uid: id(o.cred_uid)?,
            gid: id(o.cred_gid)?,
            euid: id(o.cred_euid)?,
            egid: id(o.cred_egid)?,
        })
    }

    fn thread<B: PhysicalMemory>(
        &self,
        mem: &GuestMemory<B>,
        o: &DetailOffsets,
        task: Gva,
    ) -> Result<Thread> {
        let ks = self.info().kernel_space;
        let t = self.read_task(mem, task)?;
        let state = mem.read_u32(ks, add(task, o.task_state, "task->__state")?)?;
        let exit = mem.read_u32(ks, add(task, o.task_exit_state, "task->exit_state")?)?;
        Ok(Thread {
            tid: t.pid,
            name: t.name,
            state: state_letter(state, exit),
        })
    }

    fn threads<B: PhysicalMemory>(
        &self,
        mem: &GuestMemory<B>,
        o: &DetailOffsets,
        leader: Gva,
    ) -> Result<Vec<Thread>> {
        let ks = self.info().kernel_space;
        let (head, node_off, leader_in_list) = match o.threads {
            ThreadLinks::Group { task_thread_group } => (
                add(leader, task_thread_group, "task->thread_group"),
                task_thread_group,
                false,
            ),
            ThreadLinks::Signal {
                task_signal,
                signal_thread_head,
                task_thread_node,
            } => {
                let signal = mem.read_va(ks, add(leader, task_signal, "task->signal")?)?;
                (
                    add(signal, signal_thread_head, "signal->thread_head"),
                    task_thread_node,
                    true,
                )
            }
        };
        let mut out = Vec::new();
        if !leader_in_list {
            out.push(self.thread(mem, o, leader)?);
        }
        for node in ListWalk::new(mem, ks, head, "thread list", MAX_THREADS) {
            let task = Gva(node?.0.wrapping_sub(node_off));
            let t = self.thread(mem, o, task)?;
            if leader_in_list && task == leader {
                out.insert(0, t);
            } else {
                out.push(t);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_split_like_proc_cmdline() {
        assert_eq!(split_nul(b"/bin/sh\0/init\0"), ["/bin/sh", "/init"]);
        assert_eq!(split_nul(b"a\0\0b\0"), ["a", "", "b"]);
        assert_eq!(split_nul(b"no-nul"), ["no-nul"]);
        assert!(split_nul(b"").is_empty() && split_nul(b"\0").is_empty());
    }

    #[test]
    fn states_are_ps_letters() {
        assert_eq!(state_letter(0, 0), 'R');
        assert_eq!(state_letter(1, 0), 'S');
        assert_eq!(state_letter(2, 0), 'D');
        assert_eq!(state_letter(0x402, 0), 'I');
        assert_eq!(state_letter(0, 0x20), 'Z');
        assert_eq!(state_letter(0x80, 0x10), 'X');
    }
}
