//! Every processor from the kernel's own records: `KiProcessorBlock[i]` → `KPRCB` → current
//! thread → the process whose address space it runs in, and the special registers the kernel
//! saved in the `KPRCB`.
//!
//! # What is read
//! For `i` in `0..KeNumberProcessors` (a `ULONG`; at most [`MAX_PROCESSORS`] are walked):
//! - `KiProcessorBlock[i]`: the processor's `KPRCB` (inside its `KPCR`);
//! - `KPRCB.Number`, `KPRCB.CurrentThread` (a `KTHREAD`, the first member of `ETHREAD`);
//! - the thread's `ApcState.Process` (the process whose address space is current, which an
//!   attached thread changes) and `Process` (the thread's own process);
//! - `KPRCB.ProcessorState.SpecialRegisters.Cr3` and `ProcessorState.ContextFrame.Rip`/`Rsp`:
//!   what the kernel saved when it last stopped the processor (a bug check, a debugger break,
//!   the freeze of the other processors while a dump is written). On a running system these are
//!   stale; in a crash dump they are the processors' state at the crash.
//!
//! Every offset comes from the profile ([`CPU_FIELDS`], [`CPU_SYMBOLS`]).
//!
//! # The crashing processor of a crash dump
//! The dump header's one `CONTEXT` is the crashing processor's: the bug check saves the same
//! context in that processor's `KPRCB.ProcessorState.ContextFrame` before the dump is written
//! (WinDbg's `.cxr` on a crash dump and Volatility3 both take the context from the header;
//! the processor is found here by matching). [`crashing_processor`] takes the processor whose
//! saved `ContextFrame` has the header's `rip` and `rsp`; failing that, the one processor whose
//! current thread's kernel stack (`StackLimit..StackBase`) holds the header's `rsp`. It never
//! assumes processor 0: no match, or more than one, is [`CrashingCpu::Unknown`] saying why.
//!
//! # Cross-check with a core's registers
//! A QEMU ELF core carries every vCPU's registers. [`Processors::cross_check`] compares each
//! vCPU's CR3 with the page tables of the process the kernel says that processor runs
//! (`DirectoryTableBase`, or `UserDirectoryTableBase` under KVA shadow) and records the
//! result in [`KernelCpu::registers`]; a disagreement is reported, not hidden.
//!
//! # Bounds
//! `KeNumberProcessors` is capped at [`MAX_PROCESSORS`] ([`Processors::truncated`] says so);
//! each processor costs a fixed number of reads; a NULL, unreadable or repeated `KPRCB`
//! pointer (two entries naming one `KPRCB`, the array's form of a cycle) is an error item for
//! that processor and the walk goes on.

use std::collections::HashMap;

use super::Windows;
use crate::addr::Gva;
use crate::backend::PhysicalMemory;
use crate::error::{Error, Result};
use crate::mem::GuestMemory;
use crate::os::Process;
use crate::regs::{cr3_to_root, Registers};

/// Most processors walked (Windows' own limit is 2048 logical processors in 32 groups; a
/// guest claiming more than this is capped, and [`Processors::truncated`] says so).
pub const MAX_PROCESSORS: u32 = 1024;

/// The `(structure, field)` pairs the processor walk reads. `_KTHREAD.ApcState.Process` is
/// used when the profile has it, `_KTHREAD.Process` otherwise; both are read when present.
pub const CPU_FIELDS: [(&str, &str); 9] = [
    ("_KPRCB", "CurrentThread"),
    ("_KPRCB", "Number"),
    ("_KPRCB", "ProcessorState.SpecialRegisters.Cr3"),
    ("_KPRCB", "ProcessorState.ContextFrame.Rip"),
    ("_KPRCB", "ProcessorState.ContextFrame.Rsp"),
    ("_KTHREAD", "ApcState.Process"),
    ("_KTHREAD", "Process"),
    ("_KTHREAD", "StackBase"),
    ("_KTHREAD", "StackLimit"),
];

/// The kernel symbols the processor walk reads (RVAs in the profile).
pub const CPU_SYMBOLS: [&str; 2] = ["KiProcessorBlock", "KeNumberProcessors"];

/// One processor as the kernel records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelCpu {
    /// Its index in `KiProcessorBlock`.
    pub index: u32,
    /// Address of its `KPRCB`.
    pub prcb: Gva,
    /// `KPRCB.Number` (equal to `index` on a consistent kernel).
    pub number: u32,
    /// `KPRCB.CurrentThread`.
    pub thread: Gva,
    /// The `EPROCESS` whose address space the thread runs in (`ApcState.Process`, or
    /// `Process` when the profile has no `ApcState`).
    pub process: Gva,
    /// The thread's own process (`KTHREAD.Process`) when the profile has the field; it differs
    /// from [`KernelCpu::process`] while the thread is attached to another process.
    pub home_process: Option<Gva>,
    /// The process at [`KernelCpu::process`], read (pid, name, page tables). The idle
    /// process is not in the active process list but reads like any other.
    pub owner: Option<Process>,
    /// Why [`KernelCpu::owner`] could not be read, when it could not.
    pub owner_error: Option<String>,
    /// `ProcessorState.SpecialRegisters.Cr3`, as saved (see the module documentation).
    pub saved_cr3: u64,
    /// `ProcessorState.ContextFrame.Rip`.
    pub context_rip: u64,
    /// `ProcessorState.ContextFrame.Rsp`.
    pub context_rsp: u64,
    /// The current thread's kernel stack, `StackLimit..StackBase` (0..0 when unreadable).
    pub stack: (u64, u64),
    /// The comparison with a core's registers for this vCPU, once
    /// [`Processors::cross_check`] ran and the core has a vCPU with paging for it.
    pub registers: Option<RegisterCheck>,
}

/// A core's registers for one vCPU compared with the kernel's record of that processor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegisterCheck {
    /// CR3 from the core (its notes).
    pub cr3: u64,
    /// Whether that CR3 selects the page tables of the process the kernel says runs there.
    pub agrees: bool,
    /// What was compared, in words (for a disagreement, both sides).
    pub detail: String,
}

/// Every processor the kernel records.
#[derive(Debug)]
pub struct Processors {
    /// `KeNumberProcessors` as read.
    pub declared: u32,
    /// Whether `declared` was over [`MAX_PROCESSORS`] and the walk stopped there.
    pub truncated: bool,
    /// One item per walked processor, in index order; a processor whose records cannot be
    /// read is an error item naming the field.
    pub cpus: Vec<Result<KernelCpu>>,
    /// How many vCPUs the registers given to [`Processors::cross_check`] had.
    pub register_vcpus: Option<usize>,
}

/// Which processor a crash dump's `CONTEXT` belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CrashingCpu {
    /// The processor whose `KPRCB.ProcessorState.ContextFrame` holds the `CONTEXT`'s `rip`
    /// and `rsp`.
    ContextFrame(u32),
    /// The one processor whose current thread's kernel stack holds the `CONTEXT`'s `rsp`
    /// (no saved context matched).
    Stack(u32),
    /// Not found; why (nothing matched, or several processors did).
    Unknown(String),
}

impl CrashingCpu {
    /// The processor index, when found.
    pub fn index(&self) -> Option<u32> {
        match self {
            CrashingCpu::ContextFrame(i) | CrashingCpu::Stack(i) => Some(*i),
            CrashingCpu::Unknown(_) => None,
        }
    }

    /// How the processor was told (or why it was not), in words.
    pub fn explanation(&self) -> String {
        match self {
            CrashingCpu::ContextFrame(_) => {
                "its KPRCB's saved ContextFrame is the dump's CONTEXT".to_owned()
            }
            CrashingCpu::Stack(_) => {
                "its current thread's kernel stack holds the CONTEXT's rsp".to_owned()
            }
            CrashingCpu::Unknown(why) => why.clone(),
        }
    }
}

/// The processors of one image as a front end shows them ([`Windows::processor_view`]): the
/// kernel's records, a crash dump's crashing processor, a core's registers checked against
/// the records, and what could not be read.
#[derive(Debug)]
pub struct ProcessorView {
    /// Every processor from `KiProcessorBlock`; `None` when the walk could not start (the
    /// reason is in [`ProcessorView::errors`]). Cross-checked with the registers unless they
    /// are a crash dump's.
    pub processors: Option<Processors>,
    /// For a crash dump: the processor its `CONTEXT` belongs to ([`crashing_processor`]).
    pub crashed: Option<CrashingCpu>,
    /// Whether the registers were a crash dump's one `CONTEXT`.
    pub crash_dump: bool,
    /// What could not be read, one line each: the walk, single processors, a truncated count.
    pub errors: Vec<String>,
}

impl ProcessorView {
    /// The processor that register set `i` belongs to: a crash dump's `CONTEXT` is the
    /// crashing processor's (`None` when it was not found; never assumed 0); a core's vCPU
    /// `i` is processor `i`.
    pub fn register_index(&self, i: usize) -> Option<usize> {
        if self.crash_dump {
            self.crashed
                .as_ref()
                .and_then(|c| c.index())
                .map(|i| i as usize)
        } else {
            Some(i)
        }
    }
}

impl Windows {
    /// [`Windows::processors`] as an image's reader wants them: with `crash_dump` (the
    /// registers are a crash dump's one `CONTEXT`) the crashing processor is found
    /// ([`crashing_processor`]); otherwise the records are checked against `regs`
    /// ([`Processors::cross_check`]). Errors, of the walk or of single processors, and a
    /// `KeNumberProcessors` over [`MAX_PROCESSORS`] are lines of [`ProcessorView::errors`].
    pub fn processor_view<B: PhysicalMemory>(
        &self,
        mem: &GuestMemory<B>,
        regs: &[Registers],
        crash_dump: bool,
    ) -> ProcessorView {
        let mut errors = Vec::new();
        let mut processors = match self.processors(mem) {
            Ok(c) => Some(c),
            Err(e) => {
                errors.push(format!("processors (KiProcessorBlock): {e}"));
                None
            }
        };
        let crashed = match (&processors, crash_dump, regs.first()) {
            (Some(c), true, Some(ctx)) => Some(crashing_processor(c, ctx)),
            _ => None,
        };
        if let (Some(c), false) = (processors.as_mut(), crash_dump) {
            c.cross_check(regs);
        }
        for c in processors.iter().flat_map(|c| c.cpus.iter()) {
            if let Err(e) = c {
                errors.push(e.to_string());
            }
        }
        if let Some(c) = processors.as_ref().filter(|c| c.truncated) {
            errors.push(format!(
                "KeNumberProcessors is {}: only the first {MAX_PROCESSORS} processors were read",
                c.declared
            ));
        }
        ProcessorView {
            processors,
            crashed,
            crash_dump,
            errors,
        }
    }
}

/// Offsets of [`CPU_FIELDS`], read once per walk.
struct CpuOffsets {
    current_thread: u64,
    number: u64,
    cr3: u64,
    rip: u64,
    rsp: u64,
    apc_process: u64,
    process: Option<u64>,
    stack_base: u64,
    stack_limit: u64,
}

impl Windows {
    /// Walk `KiProcessorBlock`: every processor's `KPRCB`, current thread, the process it runs
    /// in, and the registers the kernel saved (see [`crate::os::windows::cpus`]).
    ///
    /// # Errors
    /// [`Error::MissingSymbol`]/[`Error::MissingField`] when the profile lacks what the walk
    /// reads; a memory error or [`Error::Corrupt`] when `KeNumberProcessors` cannot be read or
    /// is 0. Errors of single processors are items of [`Processors::cpus`].
    pub fn processors<B: PhysicalMemory>(&self, mem: &GuestMemory<B>) -> Result<Processors> {
        let t = self.types();
        let o = CpuOffsets {
            current_thread: t.require("_KPRCB", "CurrentThread")?,
            number: t.require("_KPRCB", "Number")?,
            cr3: t.require("_KPRCB", "ProcessorState.SpecialRegisters.Cr3")?,
            rip: t.require("_KPRCB", "ProcessorState.ContextFrame.Rip")?,
            rsp: t.require("_KPRCB", "ProcessorState.ContextFrame.Rsp")?,
            apc_process: match t.field("_KTHREAD", "ApcState.Process") {
                Some(f) => f.offset,
                None => t.require("_KTHREAD", "Process")?,
            },
            process: t.field("_KTHREAD", "Process").map(|f| f.offset),
            stack_base: t.require("_KTHREAD", "StackBase")?,
            stack_limit: t.require("_KTHREAD", "StackLimit")?,
        };
        let block = self.require_symbol("KiProcessorBlock")?;
        let count_at = self.require_symbol("KeNumberProcessors")?;
        let ks = self.info().kernel_space;
        let declared = mem.read_u32(ks, count_at)?;
        if declared == 0 {
            return Err(Error::Corrupt {
                what: "KeNumberProcessors",
                addr: count_at,
                reason: "it is 0: a running kernel has at least one processor".into(),
            });
        }
        let walked = declared.min(MAX_PROCESSORS);
        let mut seen: HashMap<u64, u32> = HashMap::new();
        let mut cpus = Vec::with_capacity(walked as usize);
        for i in 0..walked {
            // Memory errors name an address only: say which processor's records they are in.
            let cpu = self
                .read_cpu(mem, &o, block, i, &mut seen)
                .map_err(|e| match e {
                    e @ Error::Corrupt { .. } => e,
                    e => Error::Corrupt {
                        what: "KiProcessorBlock",
                        addr: block.wrapping_add(u64::from(i) * 8),
                        reason: format!("processor {i}'s records cannot be read: {e}"),
                    },
                });
            cpus.push(cpu);
        }
        Ok(Processors {
            declared,
            truncated: declared > MAX_PROCESSORS,
            cpus,
            register_vcpus: None,
        })
    }

    fn read_cpu<B: PhysicalMemory>(
        &self,
        mem: &GuestMemory<B>,
        o: &CpuOffsets,
        block: Gva,
        i: u32,
        seen: &mut HashMap<u64, u32>,
    ) -> Result<KernelCpu> {
        let ks = self.info().kernel_space;
        let at = |base: Gva, off: u64, what: &'static str| {
            base.checked_add(off).ok_or(Error::Overflow(what))
        };
        let slot = at(block, u64::from(i) * 8, "KiProcessorBlock entry address")?;
        let prcb = mem.read_va(ks, slot)?;
        if prcb.0 == 0 {
            return Err(Error::Corrupt {
                what: "KiProcessorBlock",
                addr: slot,
                reason: format!("entry {i} is NULL although KeNumberProcessors counts it"),
            });
        }
        if let Some(j) = seen.insert(prcb.0, i) {
            return Err(Error::Corrupt {
                what: "KiProcessorBlock",
                addr: slot,
                reason: format!("entry {i} names the KPRCB at {prcb} that entry {j} names too"),
            });
        }
        let number = mem.read_u32(ks, at(prcb, o.number, "KPRCB.Number address")?)?;
        let thread = mem.read_va(
            ks,
            at(prcb, o.current_thread, "KPRCB.CurrentThread address")?,
        )?;
        let saved_cr3 = mem.read_u64(ks, at(prcb, o.cr3, "KPRCB saved CR3 address")?)?;
        let context_rip = mem.read_u64(ks, at(prcb, o.rip, "KPRCB ContextFrame.Rip address")?)?;
        let context_rsp = mem.read_u64(ks, at(prcb, o.rsp, "KPRCB ContextFrame.Rsp address")?)?;
        if thread.0 == 0 {
            return Err(Error::Corrupt {
                what: "KPRCB",
                addr: prcb,
                reason: format!("processor {i} has no CurrentThread (NULL)"),
            });
        }
        let process = mem.read_va(
            ks,
            at(thread, o.apc_process, "KTHREAD.ApcState.Process address")?,
        )?;
        let home_process = match o.process {
            Some(off) => Some(mem.read_va(ks, at(thread, off, "KTHREAD.Process address")?)?),
            None => None,
        };
        let stack = (|| -> Result<(u64, u64)> {
            let limit = mem.read_u64(ks, at(thread, o.stack_limit, "KTHREAD.StackLimit")?)?;
            let base = mem.read_u64(ks, at(thread, o.stack_base, "KTHREAD.StackBase")?)?;
            Ok((limit, base))
        })()
        .unwrap_or((0, 0));
        let (owner, owner_error) = if process.0 == 0 {
            (
                None,
                Some("the thread's process pointer is NULL".to_owned()),
            )
        } else {
            match self.read_process(mem, process) {
                Ok(p) => (Some(p), None),
                Err(e) => (None, Some(e.to_string())),
            }
        };
        Ok(KernelCpu {
            index: i,
            prcb,
            number,
            thread,
            process,
            home_process,
            owner,
            owner_error,
            saved_cr3,
            context_rip,
            context_rsp,
            stack,
            registers: None,
        })
    }
}

impl Processors {
    /// The processors that could be read.
    pub fn read(&self) -> impl Iterator<Item = &KernelCpu> {
        self.cpus.iter().filter_map(|c| c.as_ref().ok())
    }

    /// Compare each vCPU's CR3 in `regs` (a core's notes, vCPU `i` for processor `i`) with
    /// the page tables of the process the kernel says processor `i` runs, and record the
    /// result in [`KernelCpu::registers`]. vCPUs without paging state are left unchecked.
    pub fn cross_check(&mut self, regs: &[Registers]) {
        self.register_vcpus = Some(regs.len());
        for cpu in self.cpus.iter_mut().filter_map(|c| c.as_mut().ok()) {
            let Some(r) = regs.get(cpu.index as usize) else {
                continue;
            };
            if !r.has_paging_state() {
                continue;
            }
            let root = cr3_to_root(r.cr3);
            let (agrees, detail) = match &cpu.owner {
                Some(p) => {
                    let agrees = p.dtb == Some(root) || p.user_dtb == Some(root);
                    let tables = match (p.dtb, p.user_dtb) {
                        (Some(k), Some(u)) => format!("{k} (user {u})"),
                        (Some(k), None) => k.to_string(),
                        _ => "none".into(),
                    };
                    let verb = if agrees { "selects" } else { "does not select" };
                    (
                        agrees,
                        format!(
                            "the registers' CR3 {:#x} {verb} the page tables {tables} of pid {} ({}), which the kernel says processor {} runs",
                            r.cr3, p.pid, p.name, cpu.index
                        ),
                    )
                }
                None => (
                    false,
                    format!(
                        "the registers' CR3 is {:#x}; the process the kernel names for processor {} ({}) could not be read: {}",
                        r.cr3,
                        cpu.index,
                        cpu.process,
                        cpu.owner_error.as_deref().unwrap_or("unknown error")
                    ),
                ),
            };
            cpu.registers = Some(RegisterCheck {
                cr3: r.cr3,
                agrees,
                detail,
            });
        }
    }

    /// The processors whose records disagree with the registers given to
    /// [`Processors::cross_check`].
    pub fn disagreements(&self) -> impl Iterator<Item = &KernelCpu> {
        self.read()
            .filter(|c| c.registers.as_ref().is_some_and(|r| !r.agrees))
    }
}

/// Which processor a crash dump's `CONTEXT` (`context`, the dump's one vCPU) belongs to: see
/// the module documentation.
pub fn crashing_processor(cpus: &Processors, context: &Registers) -> CrashingCpu {
    // Zeroed saved contexts would all "match" an empty CONTEXT.
    if context.rip == 0 && context.rsp == 0 {
        return CrashingCpu::Unknown("the dump's CONTEXT has neither rip nor rsp".into());
    }
    let by_frame: Vec<u32> = cpus
        .read()
        .filter(|c| c.context_rip == context.rip && c.context_rsp == context.rsp)
        .map(|c| c.index)
        .collect();
    match by_frame.as_slice() {
        [i] => return CrashingCpu::ContextFrame(*i),
        [] => {}
        many => {
            return CrashingCpu::Unknown(format!(
                "processors {many:?} all saved the dump's rip {:#x} and rsp {:#x}",
                context.rip, context.rsp
            ))
        }
    }
    let by_stack: Vec<u32> = cpus
        .read()
        .filter(|c| c.stack.0 < c.stack.1 && (c.stack.0..c.stack.1).contains(&context.rsp))
        .map(|c| c.index)
        .collect();
    match by_stack.as_slice() {
        [i] => CrashingCpu::Stack(*i),
        [] => CrashingCpu::Unknown(format!(
            "no processor saved the dump's rip {:#x} and rsp {:#x}, and no current thread's kernel stack holds that rsp",
            context.rip, context.rsp
        )),
        many => CrashingCpu::Unknown(format!(
            "no processor saved the dump's context, and the kernel stacks of processors {many:?} all hold its rsp {:#x}",
            context.rsp
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpu(index: u32, rip: u64, rsp: u64, stack: (u64, u64)) -> Result<KernelCpu> {
        Ok(KernelCpu {
            index,
            prcb: Gva(0xffff_f800_0000_0000 + u64::from(index) * 0x1000),
            number: index,
            thread: Gva(0xffff_a000_0000_0000 + u64::from(index) * 0x1000),
            process: Gva(0xffff_a100_0000_0000),
            home_process: None,
            owner: None,
            owner_error: Some("not read".into()),
            saved_cr3: 0x1ad000,
            context_rip: rip,
            context_rsp: rsp,
            stack,
            registers: None,
        })
    }

    fn procs(cpus: Vec<Result<KernelCpu>>) -> Processors {
        Processors {
            declared: cpus.len() as u32,
            truncated: false,
            cpus,
            register_vcpus: None,
        }
    }

    fn ctx(rip: u64, rsp: u64) -> Registers {
        Registers {
            rip,
            rsp,
            ..Registers::default()
        }
    }

    /// A crash dump's one register set is labelled with the crashing processor (none when it
    /// was not found, never 0 by default); a core's vCPU `i` is processor `i`.
    #[test]
    fn register_sets_are_labelled_by_the_crashing_processor_only_in_a_dump() {
        let view = |crashed, crash_dump| ProcessorView {
            processors: None,
            crashed,
            crash_dump,
            errors: Vec::new(),
        };
        let dump = view(Some(CrashingCpu::Stack(3)), true);
        assert_eq!(dump.register_index(0), Some(3));
        let unknown = view(Some(CrashingCpu::Unknown("no match".into())), true);
        assert_eq!(unknown.register_index(0), None);
        assert_eq!(view(None, true).register_index(0), None);
        let core = view(None, false);
        assert_eq!(
            (core.register_index(0), core.register_index(5)),
            (Some(0), Some(5))
        );
        assert_eq!(
            CrashingCpu::Unknown("two matched".into()).explanation(),
            "two matched"
        );
    }

    #[test]
    fn the_crashing_processor_is_matched_never_assumed() {
        let p = procs(vec![
            cpu(0, 0x10, 0x1f00, (0x1000, 0x2000)),
            Err(Error::Overflow("unreadable processor")),
            cpu(2, 0x30, 0x3f00, (0x3000, 0x4000)),
        ]);
        assert_eq!(
            crashing_processor(&p, &ctx(0x30, 0x3f00)),
            CrashingCpu::ContextFrame(2)
        );
        // rip differs, rsp on processor 0's stack.
        assert_eq!(
            crashing_processor(&p, &ctx(0x99, 0x1800)),
            CrashingCpu::Stack(0)
        );
        let none = crashing_processor(&p, &ctx(0x99, 0x9000));
        assert!(matches!(&none, CrashingCpu::Unknown(w) if w.contains("no processor")));
        // Two processors with the same saved context, or overlapping stacks: ambiguous.
        let twins = procs(vec![
            cpu(0, 0x10, 0x1f00, (0x1000, 0x2000)),
            cpu(1, 0x10, 0x1f00, (0x1000, 0x2000)),
        ]);
        let both = crashing_processor(&twins, &ctx(0x10, 0x1f00));
        assert!(matches!(&both, CrashingCpu::Unknown(w) if w.contains("[0, 1]")));
        let both = crashing_processor(&twins, &ctx(0x11, 0x1800));
        assert!(matches!(&both, CrashingCpu::Unknown(w) if w.contains("[0, 1]")));
        assert_eq!(both.index(), None);
    }

    #[test]
    fn cross_check_reports_an_unreadable_owner_as_a_disagreement() {
        let mut p = procs(vec![cpu(0, 0, 0, (0, 0))]);
        let regs = [Registers {
            cr0: 0x8000_0011,
            cr3: 0x1ad000,
            cr4: 0x20,
            efer: 0x500,
            ..Registers::default()
        }];
        p.cross_check(&regs);
        assert_eq!(p.register_vcpus, Some(1));
        let bad: Vec<&KernelCpu> = p.disagreements().collect();
        assert_eq!(bad.len(), 1);
        let detail = &bad[0].registers.as_ref().unwrap().detail;
        assert!(detail.contains("could not be read: not read"), "{detail}");
    }
}
