//! [`LinuxTracer`]: the probes of [`super`] on a Linux guest (placement, filtering, decoding).

use std::collections::{BTreeMap, HashSet};
use std::time::SystemTime;

use super::{ExitCode, Probe, TraceEvent, TraceFilter, What};
use crate::addr::{Gva, VcpuId};
use crate::backend::PhysicalMemory;
use crate::error::{Error, Result};
use crate::event::hooks::{Hit, HookContext, HookId, Hooks};
use crate::event::session::{Session, SessionBackend};
use crate::mem::{AddressSpace, GuestMemory};
use crate::os::linux::syscalls::{decode_values, SyscallTable, MAX_STRING_ARG};
use crate::os::linux::{Cr3Owner, Cr3Resolver, Linux, RunningThread};
use crate::os::Process;
use crate::regs::Registers;

/// Most file opens whose return is awaited at once; past it the oldest is dropped (its
/// call never returned through its hook: the task was killed, or the hook was removed).
pub const MAX_PENDING_OPENS: usize = 4096;

/// Most bytes of `pt_regs` read per system call (the six argument registers).
const MAX_FRAME_SPAN: usize = 256;

/// A probe that could not be placed, and why (its functions are not in the kernel, its
/// prototype is not the one expected, ...). The other probes are placed.
#[derive(Debug)]
pub struct NotPlaced {
    /// The probe.
    pub probe: Probe,
    /// Why, naming the function.
    pub reason: Error,
}

/// Where a probe's function keeps what the event needs: argument registers (by position,
/// found by name in the BTF prototype) and field offsets.
#[derive(Clone, Copy, Debug)]
enum Layout {
    Start,
    Module {
        module: usize,
    },
    TaskstatsExit {
        tsk: usize,
        group_dead: usize,
        exit_code: u64,
    },
    DoExit {
        code: usize,
        signal: u64,
        live: u64,
    },
    Syscall {
        regs: usize,
        nr: usize,
        /// Offsets of `di, si, dx, r10, r8, r9` (the argument registers) from `lo`.
        args: [u64; 6],
        /// The span of `pt_regs` that holds them: its offset and length (one read).
        lo: u64,
        len: usize,
    },
    OpenAt2 {
        dfd: usize,
        filename: usize,
        how: usize,
        flags: u64,
        mode: u64,
    },
    Open {
        dfd: usize,
        filename: usize,
        flags: usize,
        mode: usize,
    },
}

#[derive(Clone, Copy, Debug)]
struct Site {
    id: HookId,
    probe: Probe,
    layout: Layout,
    /// Placed for the tracer's own bookkeeping (exits keep the process cache exact), its
    /// events not reported.
    report: bool,
}

/// Probes placed on a hook manager, with their filter (see [`super`]).
#[derive(Debug, Default)]
pub struct LinuxTracer {
    sites: Vec<Site>,
    not_placed: Vec<NotPlaced>,
    filter: TraceFilter,
    /// Wanted system call numbers (empty: all).
    syscall_nrs: HashSet<u64>,
    table: Option<SyscallTable>,
    resolver: Cr3Resolver,
    /// File opens awaiting their return, by return-hook tag.
    pending: BTreeMap<u64, TraceEvent>,
    next_tag: u64,
    filtered: u64,
}

/// Argument register `i` of the x86-64 SysV calling convention.
fn arg(r: &Registers, i: usize) -> u64 {
    match i {
        0 => r.rdi,
        1 => r.rsi,
        2 => r.rdx,
        3 => r.rcx,
        4 => r.r8,
        5 => r.r9,
        _ => 0,
    }
}

/// Position of parameter `name` of `func`: from its BTF prototype when the types have one
/// (and then the name must be there), else `default` (the signature the probe expects).
fn param(linux: &Linux, func: &str, name: &str, default: usize) -> Result<usize> {
    match linux.types().function_params(func) {
        None => Ok(default),
        Some(ps) => ps
            .iter()
            .position(|p| p.name == name)
            .filter(|&i| i < 6)
            .ok_or_else(|| Error::MissingField {
                type_name: format!("{func}()"),
                field: name.to_owned(),
                source_name: linux.types().source_name().to_owned(),
                hint: format!(
                    "; its prototype is ({}), not the one this probe reads",
                    ps.iter()
                        .map(|p| format!("{} {}", p.type_name, p.name))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }),
    }
}

fn layout(linux: &Linux, func: &str) -> Result<Layout> {
    let t = linux.types();
    Ok(match func {
        "finalize_exec" => Layout::Start,
        "do_init_module" | "free_module" => Layout::Module {
            module: param(linux, func, "mod", 0)?,
        },
        "taskstats_exit" => Layout::TaskstatsExit {
            tsk: param(linux, func, "tsk", 0)?,
            group_dead: param(linux, func, "group_dead", 1)?,
            exit_code: t.require("task_struct", "exit_code")?,
        },
        "do_exit" => Layout::DoExit {
            code: param(linux, func, "code", 0)?,
            signal: t.require("task_struct", "signal")?,
            live: t.require("signal_struct", "live")?,
        },
        "do_syscall_64" => {
            let f = |n: &str| t.require("pt_regs", n);
            let abs = [f("di")?, f("si")?, f("dx")?, f("r10")?, f("r8")?, f("r9")?];
            let lo = abs.iter().copied().min().unwrap_or(0);
            let len = abs.iter().map(|o| o - lo + 8).max().unwrap_or(8);
            if len > MAX_FRAME_SPAN as u64 {
                return Err(Error::malformed(
                    "kernel types",
                    "struct pt_regs",
                    format!("its argument registers span {len} bytes, not one frame"),
                ));
            }
            Layout::Syscall {
                regs: param(linux, func, "regs", 0)?,
                nr: param(linux, func, "nr", 1)?,
                args: abs.map(|o| o - lo),
                lo,
                len: len as usize,
            }
        }
        "do_sys_openat2" => Layout::OpenAt2 {
            dfd: param(linux, func, "dfd", 0)?,
            filename: param(linux, func, "filename", 1)?,
            how: param(linux, func, "how", 2)?,
            flags: t.require("open_how", "flags")?,
            mode: t.require("open_how", "mode")?,
        },
        "do_sys_open" => Layout::Open {
            dfd: param(linux, func, "dfd", 0)?,
            filename: param(linux, func, "filename", 1)?,
            flags: param(linux, func, "flags", 2)?,
            mode: param(linux, func, "mode", 3)?,
        },
        _ => {
            return Err(Error::Unsupported {
                backend: "tracer",
                capability: "a probe on this function",
            })
        }
    })
}

impl LinuxTracer {
    /// Place a breakpoint for each probe, on the first of its [`Probe::symbols`] the kernel
    /// has. A probe that cannot be placed is listed in [`LinuxTracer::not_placed`] with its
    /// reason; the others go on. A filter on processes also places the exit probe, unreported
    /// if not asked for: a process's exit makes its page-table root free for another process.
    ///
    /// # Errors
    /// The filter names a system call the guest's table does not have, or system calls are
    /// filtered by name and the table cannot be read; errors of the hook manager.
    pub fn place<B: SessionBackend, M: PhysicalMemory>(
        hooks: &mut Hooks,
        session: &mut Session<'_, B>,
        mem: &GuestMemory<M>,
        linux: &Linux,
        probes: &[Probe],
        filter: TraceFilter,
    ) -> Result<Self> {
        let mut t = LinuxTracer {
            filter,
            ..Default::default()
        };
        let mut wanted: Vec<(Probe, bool)> = Vec::new();
        for &p in probes {
            if !wanted.iter().any(|&(w, _)| w == p) {
                wanted.push((p, true));
            }
        }
        if t.filter.by_process() && !probes.contains(&Probe::Exit) {
            wanted.push((Probe::Exit, false));
        }
        if probes.contains(&Probe::Syscall) {
            match SyscallTable::read(linux, mem) {
                Ok(table) => t.table = Some(table),
                Err(e) if !t.filter.syscalls().is_empty() => return Err(e),
                Err(_) => {} // events keep their numbers and raw registers
            }
            if let Some(table) = &t.table {
                for name in t.filter.syscalls() {
                    let info = table.by_name(name).ok_or_else(|| Error::MissingSymbol {
                        symbol: format!("sys_{name}"),
                        source_name: "guest kernel's syscalls_metadata".to_owned(),
                        hint: "; the filter names a system call this kernel does not have"
                            .to_owned(),
                    })?;
                    t.syscall_nrs.insert(info.nr.into());
                }
            }
        }
        for (probe, report) in wanted {
            match Self::place_one(hooks, session, mem, linux, probe) {
                Ok((id, layout)) => t.sites.push(Site {
                    id,
                    probe,
                    layout,
                    report,
                }),
                Err(reason) if report => t.not_placed.push(NotPlaced { probe, reason }),
                Err(reason) => {
                    // Without it the process cache may keep a dead process's root.
                    t.not_placed.push(NotPlaced { probe, reason });
                }
            }
        }
        Ok(t)
    }

    fn place_one<B: SessionBackend, M: PhysicalMemory>(
        hooks: &mut Hooks,
        session: &mut Session<'_, B>,
        mem: &GuestMemory<M>,
        linux: &Linux,
        probe: Probe,
    ) -> Result<(HookId, Layout)> {
        let Some(func) = probe.symbols().iter().find(|s| linux.symbol(s).is_some()) else {
            let source_name = match linux.require_symbol(probe.symbols()[0]) {
                Err(Error::MissingSymbol { source_name, .. }) => source_name,
                _ => "kernel".to_owned(),
            };
            return Err(Error::MissingSymbol {
                symbol: probe.symbols().join("` or `"),
                source_name,
                hint: format!("; {} events are not traced", probe.name()),
            });
        };
        let layout = layout(linux, func)?;
        let id = hooks.add_symbol(session, mem, linux, func)?;
        Ok((id, layout))
    }

    /// The probes placed: their breakpoints, and whether their events are reported.
    pub fn probes(&self) -> impl Iterator<Item = (HookId, Probe, bool)> + '_ {
        self.sites.iter().map(|s| (s.id, s.probe, s.report))
    }

    /// The probes that could not be placed, with why.
    pub fn not_placed(&self) -> &[NotPlaced] {
        &self.not_placed
    }

    /// The probes that could not be placed, with why, taken out of the tracer.
    pub fn take_not_placed(&mut self) -> Vec<NotPlaced> {
        std::mem::take(&mut self.not_placed)
    }

    /// Hits that the filter dropped before decoding.
    pub fn filtered(&self) -> u64 {
        self.filtered
    }

    /// The system call table read from the guest, when system calls are traced and the
    /// kernel has its metadata.
    pub fn syscall_table(&self) -> Option<&SyscallTable> {
        self.table.as_ref()
    }

    /// The event a hit is, if it is one of the tracer's and passes its filter (`None`
    /// otherwise, and for a file open's entry, whose event comes at its return).
    pub fn handle<B: SessionBackend, M: PhysicalMemory>(
        &mut self,
        linux: &Linux,
        ctx: &mut HookContext<'_, '_, '_, B, M>,
    ) -> Option<Result<TraceEvent>> {
        match ctx.hit()? {
            Hit::Return { entry, tag, .. } => {
                let site = self.sites.iter().find(|s| s.id == entry)?;
                if site.probe != Probe::FileOpen {
                    return None;
                }
                let mut e = self.pending.remove(&tag)?;
                if let What::FileOpen { result, .. } = &mut e.what {
                    *result = Some(ctx.event().regs.rax as i64);
                }
                Some(Ok(e))
            }
            Hit::Breakpoint { id, .. } => {
                let site = *self.sites.iter().find(|s| s.id == id)?;
                let regs = ctx.event().regs;
                // The filter, from registers and the page-table-root cache only.
                if let Layout::Syscall { nr, .. } = site.layout {
                    let nr = arg(&regs, nr) as u32 as u64;
                    if !self.syscall_nrs.is_empty() && !self.syscall_nrs.contains(&nr) {
                        self.filtered += 1;
                        return None;
                    }
                }
                if site.report
                    && self.filter.by_process()
                    && !self.passes(linux, ctx.memory(), &regs)
                {
                    self.filtered += 1;
                    return None;
                }
                let vcpu = ctx.event().vcpu;
                let r = self.decode(linux, ctx.memory(), &site, &regs, vcpu);
                match r {
                    Ok(Some(e)) if matches!(e.what, What::FileOpen { .. }) => {
                        Some(Ok(self.await_return(ctx, e)?))
                    }
                    Ok(Some(e)) => site.report.then_some(Ok(e)),
                    Ok(None) => None,
                    Err(e) => site.report.then_some(Err(e)),
                }
            }
        }
    }

    /// Whether the process on the vCPU passes the filter: its page-table root's owner from
    /// the cache; a kernel root (a kernel thread, or an idle vCPU) asks the per-CPU task.
    fn passes<M: PhysicalMemory>(
        &mut self,
        linux: &Linux,
        mem: &GuestMemory<M>,
        r: &Registers,
    ) -> bool {
        match self.resolver.resolve(linux, mem, r.cr3) {
            Cr3Owner::Process(p) => self.filter.passes_process(p.tgid, &p.name),
            Cr3Owner::Kernel | Cr3Owner::Unknown => match linux.current_task(mem, r) {
                Ok(t) => self.filter.passes_process(t.tgid, &t.name),
                Err(_) => false,
            },
        }
    }

    /// Arm the return hook of a file open; its event waits for the return. If the return
    /// cannot be followed, the event is reported now, saying so.
    fn await_return<B: SessionBackend, M: PhysicalMemory>(
        &mut self,
        ctx: &mut HookContext<'_, '_, '_, B, M>,
        mut e: TraceEvent,
    ) -> Option<TraceEvent> {
        let tag = self.next_tag;
        self.next_tag = self.next_tag.wrapping_add(1);
        match ctx.return_hook(tag) {
            Ok(_) => {
                if self.pending.len() >= MAX_PENDING_OPENS {
                    self.pending.pop_first();
                }
                self.pending.insert(tag, e);
                None
            }
            Err(err) => {
                if let What::FileOpen { unfollowed, .. } = &mut e.what {
                    *unfollowed = Some(err.to_string());
                }
                Some(e)
            }
        }
    }

    fn decode<M: PhysicalMemory>(
        &mut self,
        linux: &Linux,
        mem: &GuestMemory<M>,
        site: &Site,
        r: &Registers,
        vcpu: VcpuId,
    ) -> Result<Option<TraceEvent>> {
        let ks = linux.info().kernel_space;
        let user = AddressSpace::from_cr3(r.cr3, ks.mode);
        // The hot probes read the running thread alone; the rare ones the whole task.
        let (task, thread) = match site.layout {
            Layout::Syscall { .. } | Layout::OpenAt2 { .. } | Layout::Open { .. } => {
                (None, linux.current_thread(mem, r)?)
            }
            Layout::TaskstatsExit { tsk, .. } => {
                task_and_thread(linux.read_task(mem, Gva(arg(r, tsk)))?)
            }
            _ => task_and_thread(linux.current_task(mem, r)?),
        };
        let what = match site.layout {
            Layout::Start => {
                // The whole task is read for this probe (the match above).
                let t = match task.as_ref() {
                    Some(t) => t,
                    None => &linux.read_task(mem, thread.task)?,
                };
                What::ProcessStart {
                    ppid: t.ppid,
                    exe: linux
                        .executable(mem, t)
                        .map_err(|e| e.to_string())
                        .and_then(|e| {
                            e.ok_or_else(|| "no executable (a kernel thread)".to_owned())
                        }),
                    argv: linux.command_line(mem, t).map_err(|e| e.to_string()),
                }
            }
            Layout::Module { module } => {
                let m = linux.read_module(mem, Gva(arg(r, module)))?;
                if site.probe == Probe::ModuleLoad {
                    What::ModuleLoad { module: m }
                } else {
                    What::ModuleUnload { module: m }
                }
            }
            Layout::TaskstatsExit {
                tsk,
                group_dead,
                exit_code,
            } => {
                let at = Gva(arg(r, tsk))
                    .checked_add(exit_code)
                    .ok_or(Error::Overflow("task->exit_code"))?;
                let code = ExitCode(i64::from(mem.read_u32(ks, at)? as i32));
                self.exit(task.as_ref(), r, arg(r, group_dead) as u32 != 0, code)
            }
            Layout::DoExit { code, signal, live } => {
                let sig = mem.read_va(
                    ks,
                    thread
                        .task
                        .checked_add(signal)
                        .ok_or(Error::Overflow("task->signal"))?,
                )?;
                let at = sig
                    .checked_add(live)
                    .ok_or(Error::Overflow("signal->live"))?;
                let live = mem.read_u32(ks, at)? as i32;
                self.exit(task.as_ref(), r, live <= 1, ExitCode(arg(r, code) as i64))
            }
            Layout::Syscall {
                regs,
                nr,
                args,
                lo,
                len,
            } => {
                let nr = arg(r, nr) as u32 as u64;
                let mut frame = [0u8; MAX_FRAME_SPAN];
                let frame = &mut frame[..len];
                let at = Gva(arg(r, regs))
                    .checked_add(lo)
                    .ok_or(Error::Overflow("pt_regs argument registers"))?;
                mem.read(ks, at, frame)?;
                let raw = args.map(|o| {
                    let o = o as usize;
                    frame
                        .get(o..o + 8)
                        .map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
                });
                let info = self.table.as_ref().and_then(|t| t.shared(nr));
                let args = info
                    .as_deref()
                    .map(|i| decode_values(mem, user, i, raw))
                    .unwrap_or_default();
                What::Syscall {
                    nr,
                    info,
                    raw,
                    args,
                }
            }
            Layout::OpenAt2 {
                dfd,
                filename,
                how,
                flags,
                mode,
            } => {
                let how = Gva(arg(r, how));
                let field = |off: u64| -> Result<u64> {
                    mem.read_u64(ks, how.checked_add(off).ok_or(Error::Overflow("open_how"))?)
                };
                What::FileOpen {
                    dfd: i64::from(arg(r, dfd) as u32 as i32),
                    path: read_path(mem, user, arg(r, filename)),
                    flags: field(flags)?,
                    mode: field(mode)?,
                    result: None,
                    unfollowed: None,
                }
            }
            Layout::Open {
                dfd,
                filename,
                flags,
                mode,
            } => What::FileOpen {
                dfd: i64::from(arg(r, dfd) as u32 as i32),
                path: read_path(mem, user, arg(r, filename)),
                flags: arg(r, flags) & 0xffff_ffff,
                mode: arg(r, mode) & 0xffff,
                result: None,
                unfollowed: None,
            },
        };
        Ok(Some(TraceEvent {
            time: SystemTime::now(),
            vcpu,
            pid: thread.pid,
            tid: thread.tid,
            comm: thread.name,
            what,
        }))
    }

    /// A thread's exit; the last one's also forgets its process's page-table root.
    fn exit(
        &mut self,
        task: Option<&Process>,
        r: &Registers,
        group_dead: bool,
        code: ExitCode,
    ) -> What {
        if group_dead {
            if task.is_some_and(|t| !t.kernel_thread) {
                self.resolver.forget(r.cr3);
            }
            What::ProcessExit { code }
        } else {
            What::ThreadExit { code }
        }
    }
}

/// The whole task, and the running-thread view of it events report.
fn task_and_thread(t: Process) -> (Option<Process>, RunningThread) {
    let thread = RunningThread {
        task: t.object,
        tid: t.pid,
        pid: t.tgid,
        name: t.name.clone(),
    };
    (Some(t), thread)
}

/// A path argument from the caller's memory.
fn read_path<M: PhysicalMemory>(
    mem: &GuestMemory<M>,
    space: AddressSpace,
    p: u64,
) -> super::Part<String> {
    if p == 0 {
        return Err("NULL path".to_owned());
    }
    mem.read_cstring(space, Gva(p), MAX_STRING_ARG)
        .map_err(|e| e.to_string())
}
