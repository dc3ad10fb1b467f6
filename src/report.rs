//! What the OS and capture layers found, as JSON: one builder per object, so every front end
//! (the `xenvmi` command, the `pslist` and `dump` examples) prints the same schema, for Linux
//! and for Windows guests
//! (`docs/cli.md`; a process's detail fields in `docs/processes.md`; attestation in
//! `docs/attest.md`).
//!
//! Addresses are strings of lower-case hex with `0x` ([`hex`]), because JSON numbers lose
//! precision above 2^53 in most readers. Strings read from the guest are kept as they are:
//! the JSON encoder escapes control characters, so no terminal sees them raw.

use std::path::Path;

use serde_json::{json, Map, Value};

use crate::attest::{Attestation, Deviation, Subject, Unverified};
use crate::backend::snapshot::TriageDump;
use crate::capture::CaptureReport;
use crate::mem::PagingMode;
use crate::os::linux::detail::{Part, ProcessDetail};
use crate::os::linux::maps::Backing;
use crate::os::linux::{HiddenModule, KernelInfo, Linux, ModuleCrossView};
use crate::os::terminal_safe as safe;
use crate::os::windows::triage::{ProfilePick, TriageReading};
use crate::os::windows::{CrashingCpu, ProcessorView, Processors, Windows, WindowsInfo};
use crate::os::{Module, Process};
use crate::regs::Registers;

/// `v` as `"0x…"`.
pub fn hex(v: u64) -> String {
    format!("{v:#x}")
}

/// Who runs on one vCPU: the process whose page tables its CR3 holds, or the kernel's own.
#[derive(Clone, Copy, Debug)]
pub struct VcpuOwner<'a> {
    /// vCPU index.
    pub index: usize,
    /// Its CR3.
    pub cr3: u64,
    /// The process owning that address space, if one does.
    pub owner: Option<&'a Process>,
    /// The CR3 is the kernel's own page tables (an idle vCPU).
    pub kernel: bool,
}

/// The owner of each vCPU's CR3 among `processes`.
pub fn vcpu_owners<'a>(
    linux: &Linux,
    processes: &'a [Process],
    regs: &[Registers],
) -> Vec<VcpuOwner<'a>> {
    regs.iter()
        .enumerate()
        .map(|(index, r)| VcpuOwner {
            index,
            cr3: r.cr3,
            owner: linux.owner_of_cr3(processes, r.cr3),
            kernel: linux.is_kernel_cr3(r.cr3),
        })
        .collect()
}

/// The `kernel` object: release, banner, KASLR placement, paging.
pub fn linux_kernel(k: &KernelInfo) -> Value {
    let levels = match k.paging {
        PagingMode::Level4 => 4,
        PagingMode::Level5 => 5,
    };
    json!({
        "release": k.release,
        "banner": k.banner.trim_end(),
        "kaslr_offset": hex(k.kaslr_offset),
        "text_va": hex(k.text_va.0),
        "text_pa": hex(k.text_pa.0),
        "page_offset_base": hex(k.page_offset_base.0),
        "paging_levels": levels,
    })
}

/// One Linux process; with `detail`, its forensic fields too.
pub fn linux_process(p: &Process, detail: Option<&ProcessDetail>) -> Value {
    let mut j = json!({
        "pid": p.pid, "tgid": p.tgid, "ppid": p.ppid, "comm": p.name,
        "kernel_thread": p.kernel_thread, "dtb": p.dtb.map(|d| hex(d.0)),
    });
    if let (Some(d), Some(o)) = (detail, j.as_object_mut()) {
        o.extend(process_detail(d));
    }
    j
}

/// Processes, each with its detail when `detail` is given (index for index).
pub fn linux_processes(processes: &[Process], detail: Option<&[ProcessDetail]>) -> Value {
    processes
        .iter()
        .enumerate()
        .map(|(i, p)| linux_process(p, detail.and_then(|d| d.get(i))))
        .collect()
}

/// One kernel module.
pub fn module(m: &Module) -> Value {
    json!({"name": m.name, "base": hex(m.base.0), "size": m.size})
}

/// Kernel modules, in list order.
pub fn modules(modules: &[Module]) -> Value {
    modules.iter().map(module).collect()
}

/// A module seen outside the module list (`hidden` or `transitional` of the cross-view).
pub fn hidden_module(h: &HiddenModule) -> Value {
    let views: Vec<&str> = h.views.iter().map(|v| v.as_str()).collect();
    json!({
        "name": h.module.name, "base": hex(h.module.base.0), "size": h.module.size,
        "object": hex(h.module.object.0), "state": h.state, "views": views,
    })
}

/// The modules' cross-view (`xenvmi modules --cross-view`): `listed` and `kobjects` (how many
/// loaded modules each view saw), `areas` (busy vmap areas of the modules region), `hidden`,
/// `transitional` (not `LIVE`: not reported), `other_areas` (areas no module accounts for,
/// with `caller`: `callers[i]`, the allocating function as `symbol+offset`, or its address)
/// and `errors` (walks stopped, entries skipped).
pub fn module_cross_view(v: &ModuleCrossView, callers: &[Option<String>]) -> Value {
    let other: Vec<Value> = v
        .unattributed
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let caller = callers
                .get(i)
                .cloned()
                .flatten()
                .unwrap_or_else(|| hex(a.caller.0));
            json!({"start": hex(a.start.0), "end": hex(a.end.0), "flags": a.flags, "caller": caller})
        })
        .collect();
    json!({
        "listed": v.listed.len(),
        "kobjects": v.kobjects.len(),
        "areas": v.areas,
        "other_areas": other,
        "hidden": v.hidden.iter().map(hidden_module).collect::<Vec<_>>(),
        "transitional": v.transitional.iter().map(hidden_module).collect::<Vec<_>>(),
        "errors": v.errors,
    })
}

/// vCPUs and who runs on each (`pid` 0 for the kernel's own page tables, `null` for no one).
pub fn linux_vcpus(vcpus: &[VcpuOwner<'_>]) -> Value {
    vcpus
        .iter()
        .map(|v| {
            json!({
                "index": v.index, "cr3": hex(v.cr3),
                "pid": v.owner.map(|p| p.pid).or(if v.kernel { Some(0) } else { None }),
            })
        })
        .collect()
}

/// The whole Linux report: `kernel`, `processes`, `modules`, `vcpus`.
pub fn linux(
    k: &KernelInfo,
    processes: &[Process],
    detail: Option<&[ProcessDetail]>,
    mods: &[Module],
    vcpus: &[VcpuOwner<'_>],
) -> Value {
    json!({
        "kernel": linux_kernel(k),
        "processes": linux_processes(processes, detail),
        "modules": modules(mods),
        "vcpus": linux_vcpus(vcpus),
    })
}

/// One register set of a Windows image and who runs on it.
#[derive(Clone, Copy, Debug)]
pub struct WindowsVcpu<'a> {
    /// The processor it belongs to ([`ProcessorView::register_index`]: a crash dump's
    /// `CONTEXT` is the crashing processor's, `None` when that was not found).
    pub index: Option<usize>,
    /// Its CR3 (a crash dump's: the header's `DirectoryTableBase`).
    pub cr3: u64,
    /// The process owning that address space, if one does.
    pub owner: Option<&'a Process>,
}

/// The owner of each register set's CR3 among `processes`, labelled by `view`.
pub fn windows_vcpu_owners<'a>(
    w: &Windows,
    processes: &'a [Process],
    regs: &[Registers],
    view: &ProcessorView,
) -> Vec<WindowsVcpu<'a>> {
    regs.iter()
        .enumerate()
        .map(|(i, r)| WindowsVcpu {
            index: view.register_index(i),
            cr3: r.cr3,
            owner: w.owner_of_cr3(processes, r.cr3),
        })
        .collect()
}

/// The kernel's PDB as a symbol server names it: `ntkrnlmp.pdb <GUID><AGE>`; `None` without
/// a CodeView record.
pub fn windows_pdb(info: &WindowsInfo) -> Option<String> {
    info.codeview
        .as_ref()
        .map(|cv| format!("{} {}", cv.pdb_name(), cv.symbol_key()))
}

/// The Windows `kernel` object: image base and size, build, PDB, profile, how it was found,
/// the page-table root and where it came from.
pub fn windows_kernel(info: &WindowsInfo) -> Value {
    json!({
        "base": hex(info.kernel_base.0),
        "size_of_image": info.size_of_image,
        "build": info.build,
        "pdb": windows_pdb(info),
        "profile": info.profile,
        "found_by": format!("{:?}", info.found_by),
        "root_source": info.root_source.to_string(),
        "rejected_roots": info.rejected_roots,
        "kernel_dtb": hex(info.kernel_space.root.0),
    })
}

/// One Windows process: `pid`, `ppid`, `name`, `kernel`, `dtb`, `user_dtb`, `eprocess`.
pub fn windows_process(p: &Process) -> Value {
    json!({
        "pid": p.pid, "ppid": p.ppid, "name": p.name, "kernel": p.kernel_thread,
        "dtb": p.dtb.map(|d| hex(d.0)), "user_dtb": p.user_dtb.map(|d| hex(d.0)),
        "eprocess": hex(p.object.0),
    })
}

/// Windows processes, in list order.
pub fn windows_processes(processes: &[Process]) -> Value {
    processes.iter().map(windows_process).collect()
}

/// Each process's DLLs: `[{pid, modules}]`.
pub fn windows_dlls(dlls: &[(u64, Vec<Module>)]) -> Value {
    dlls.iter()
        .map(|(pid, list)| json!({"pid": pid, "modules": modules(list)}))
        .collect()
}

/// The register sets and who runs on each: `index` (the processor, `null` when unknown),
/// `cr3`, `pid` (`null` for no one).
pub fn windows_vcpus(vcpus: &[WindowsVcpu<'_>]) -> Value {
    vcpus
        .iter()
        .map(|v| json!({"index": v.index, "cr3": hex(v.cr3), "pid": v.owner.map(|p| p.pid)}))
        .collect()
}

/// A crash dump's crashing processor: `index` (`null` when unknown) and `by` (how it was
/// told, or why not); `null` for other images.
pub fn crashing_cpu(c: Option<&CrashingCpu>) -> Value {
    c.map_or(
        Value::Null,
        |c| json!({"index": c.index(), "by": c.explanation()}),
    )
}

/// Every processor from the kernel's records: `declared`, `truncated`, `cpus` (each its
/// `KPRCB`, current thread, process, saved CR3 and the registers' cross-check, or `error`);
/// `null` when they could not be read.
pub fn windows_processors(p: Option<&Processors>) -> Value {
    let Some(c) = p else { return Value::Null };
    json!({
        "declared": c.declared,
        "truncated": c.truncated,
        "cpus": c.cpus.iter().enumerate().map(|(i, cpu)| match cpu {
            Ok(cpu) => json!({
                "index": cpu.index,
                "number": cpu.number,
                "prcb": hex(cpu.prcb.0),
                "thread": hex(cpu.thread.0),
                "eprocess": hex(cpu.process.0),
                "pid": cpu.owner.as_ref().map(|p| p.pid),
                "name": cpu.owner.as_ref().map(|p| p.name.clone()),
                "owner_error": cpu.owner_error,
                "saved_cr3": hex(cpu.saved_cr3),
                "registers": cpu.registers.as_ref().map(|r| json!({
                    "cr3": hex(r.cr3), "agrees": r.agrees, "detail": r.detail,
                })),
            }),
            Err(e) => json!({ "index": i, "error": e.to_string() }),
        }).collect::<Vec<_>>(),
    })
}

/// The whole Windows report: `kernel`, `processes`, `drivers`, `dlls`, `vcpus`,
/// `crashing_cpu`, `processors`.
pub fn windows(
    info: &WindowsInfo,
    processes: &[Process],
    drivers: &[Module],
    dlls: &[(u64, Vec<Module>)],
    vcpus: &[WindowsVcpu<'_>],
    view: &ProcessorView,
) -> Value {
    json!({
        "kernel": windows_kernel(info),
        "processes": windows_processes(processes),
        "drivers": modules(drivers),
        "dlls": windows_dlls(dlls),
        "vcpus": windows_vcpus(vcpus),
        "crashing_cpu": crashing_cpu(view.crashed.as_ref()),
        "processors": windows_processors(view.processors.as_ref()),
    })
}

/// A detail part as JSON: the value, or `null` with its reason in `unreadable`.
fn part<T>(
    name: &str,
    p: &Part<T>,
    f: impl Fn(&T) -> Value,
    unreadable: &mut Map<String, Value>,
) -> Value {
    match p {
        Ok(v) => f(v),
        Err(why) => {
            unreadable.insert(name.to_owned(), why.clone().into());
            Value::Null
        }
    }
}

/// The detail fields of one process (`docs/processes.md`): `cmdline`, `environ`, `exe`,
/// `uid`, `threads`, `maps`, `files`, `sockets`, and `unreadable` naming each part that
/// could not be read and why.
pub fn process_detail(d: &ProcessDetail) -> Map<String, Value> {
    let mut bad = Map::new();
    let mut m = Map::new();
    m.insert(
        "cmdline".into(),
        part("cmdline", &d.cmdline, |v| json!(v), &mut bad),
    );
    m.insert(
        "environ".into(),
        part("environ", &d.environ, |v| json!(v), &mut bad),
    );
    m.insert("exe".into(), part("exe", &d.exe, |v| json!(v), &mut bad));
    m.insert(
        "uid".into(),
        part(
            "uid",
            &d.credentials,
            |c| json!({"uid": c.uid, "gid": c.gid, "euid": c.euid, "egid": c.egid}),
            &mut bad,
        ),
    );
    m.insert(
        "threads".into(),
        part(
            "threads",
            &d.threads,
            |ts| {
                ts.iter()
                    .map(|t| json!({"tid": t.tid, "name": t.name, "state": t.state.to_string()}))
                    .collect()
            },
            &mut bad,
        ),
    );
    m.insert(
        "maps".into(),
        part(
            "maps",
            &d.maps,
            |vs| {
                vs.iter()
                    .map(|v| {
                        let (path, why) = match &v.backing {
                            Backing::File(p) => (Some(p.clone()), None),
                            Backing::Special(name) => (Some(name.clone()), None),
                            Backing::Heap => (Some("[heap]".to_owned()), None),
                            Backing::Stack => (Some("[stack]".to_owned()), None),
                            Backing::Anonymous => (None, None),
                            Backing::Unreadable(why) => (None, Some(why.clone())),
                        };
                        let mut j = json!({
                            "start": hex(v.start), "end": hex(v.end), "perms": v.perms(),
                            "offset": hex(v.offset), "path": path,
                        });
                        if let (Some(w), Some(o)) = (why, j.as_object_mut()) {
                            o.insert("path_unreadable".into(), w.into());
                        }
                        j
                    })
                    .collect()
            },
            &mut bad,
        ),
    );
    m.insert(
        "files".into(),
        part(
            "files",
            &d.files,
            |fs| {
                fs.iter()
                    .map(|f| match &f.path {
                        Ok(p) => json!({"fd": f.fd, "path": p}),
                        Err(why) => json!({"fd": f.fd, "path": null, "path_unreadable": why}),
                    })
                    .collect()
            },
            &mut bad,
        ),
    );
    m.insert(
        "sockets".into(),
        part(
            "sockets",
            &d.sockets,
            |ss| {
                ss.iter()
                    .map(|s| match &s.sock {
                        Ok(k) => json!({
                            "fd": s.fd, "inode": s.inode, "proto": k.proto,
                            "family": k.family, "type": k.sock_type, "protocol": k.protocol,
                            "local": k.local, "remote": k.remote, "state": k.state,
                        }),
                        Err(why) => json!({
                            "fd": s.fd, "inode": s.inode, "proto": null, "sock_unreadable": why,
                        }),
                    })
                    .collect()
            },
            &mut bad,
        ),
    );
    if !bad.is_empty() {
        m.insert("unreadable".into(), bad.into());
    }
    m
}

fn mib(b: u64) -> f64 {
    b as f64 / (1u64 << 20) as f64
}

/// What a capture to `out` wrote (`docs/capture.md`).
pub fn capture(r: &CaptureReport, out: &Path) -> Value {
    json!({
        "out": out.display().to_string(),
        "consistency": r.consistency.as_str(),
        "vcpus": r.vcpus,
        "bytes_written": r.bytes_written,
        "segments": r.segments,
        "missing_bytes": r.missing_bytes,
        "missing_ranges": r.missing_ranges,
        "missing": r.missing.iter().map(|m| [m.start, m.end]).collect::<Vec<_>>(),
        "file_bytes": r.file_bytes,
        "paused_ms": r.paused_for.map(|d| d.as_secs_f64() * 1e3),
        "elapsed_ms": r.elapsed.as_secs_f64() * 1e3,
        "throughput_mib_s": mib(r.bytes_written) / r.elapsed.as_secs_f64().max(1e-9),
    })
}

/// What a capture to `out` wrote, for people: one line, and one more listing the first
/// missing ranges when there are any.
pub fn capture_text(r: &CaptureReport, out: &Path) -> String {
    let mut s = format!(
        "{}: {:.1} MiB of guest memory in {} ranges, {} vCPUs, {} ({:.2} s, {:.0} MiB/s)",
        out.display(),
        mib(r.bytes_written),
        r.segments,
        r.vcpus,
        match r.paused_for {
            Some(d) => format!("paused for {:.3} s", d.as_secs_f64()),
            None => "live: the guest was not paused".into(),
        },
        r.elapsed.as_secs_f64(),
        mib(r.bytes_written) / r.elapsed.as_secs_f64().max(1e-9),
    );
    if r.missing_ranges > 0 {
        s.push_str(&format!(
            "\nmissing (unreadable, not in the file): {:.1} MiB in {} ranges{}",
            mib(r.missing_bytes),
            r.missing_ranges,
            r.missing
                .iter()
                .take(8)
                .map(|m| format!(" {:#x}-{:#x}", m.start, m.end))
                .collect::<String>()
        ));
    }
    s
}

/// Who deviated: `{"process": {pid, ppid, comm, exe}}`, `{"module": {name, base, size}}` or
/// `{"kernel": {release}}`.
pub fn attest_subject(s: &Subject) -> Value {
    match s {
        Subject::Process {
            pid,
            ppid,
            comm,
            exe,
        } => json!({"process": {"pid": pid, "ppid": ppid, "comm": comm, "exe": exe}}),
        Subject::Module { name, base, size } => {
            json!({"module": {"name": name, "base": hex(base.0), "size": size}})
        }
        Subject::Kernel { release } => json!({"kernel": {"release": release}}),
    }
}

/// One deviation: `kind`, `subject`, `field`, `expected` (`null`: not in the manifest),
/// `seen`, `vcpu` (`null` on a snapshot), `time` (seconds since the epoch).
pub fn deviation(d: &Deviation) -> Value {
    let time = d
        .time
        .duration_since(std::time::UNIX_EPOCH)
        .map(|t| (t.as_micros() as f64) / 1e6)
        .unwrap_or(0.0);
    json!({
        "kind": d.kind.name(),
        "subject": attest_subject(&d.subject),
        "field": d.field,
        "expected": d.expected,
        "seen": d.seen,
        "vcpu": d.vcpu.map(|v| v.0),
        "time": time,
    })
}

/// One entry that could not be checked: `subject`, `reason`.
pub fn unverified(u: &Unverified) -> Value {
    json!({"subject": attest_subject(&u.subject), "reason": u.reason})
}

/// An attestation: `attested`, `deviations`, `unverified`, `processes_checked`,
/// `modules_checked`, `warnings`.
pub fn attestation(a: &Attestation) -> Value {
    json!({
        "attested": a.attested(),
        "deviations": a.deviations.iter().map(deviation).collect::<Vec<_>>(),
        "unverified": a.unverified.iter().map(unverified).collect::<Vec<_>>(),
        "processes_checked": a.processes_checked,
        "modules_checked": a.modules_checked,
        "warnings": a.warnings,
    })
}

/// A Windows triage dump: what it records without a profile (header, bug check, the crashing
/// processor's `rip`/`rsp` and the driver holding `rip`, the driver list) and the crashing
/// process as `crashing` read it (`Err`: why it could not be named).
pub fn windows_triage(
    dump: &TriageDump,
    crashing: std::result::Result<&TriageReading, &str>,
) -> Value {
    let in_driver = |a: u64| {
        dump.driver_at(a)
            .map(|d| format!("{}+{:#x}", d.name, a - d.base))
    };
    let info = &dump.info;
    let addresses: Vec<Value> = info
        .bugcheck_parameters
        .iter()
        .enumerate()
        .filter_map(|(i, &a)| {
            in_driver(a).map(|w| json!({"parameter": i + 1, "address": hex(a), "in": w}))
        })
        .collect();
    let drivers = windows_triage_drivers(dump);
    let errors: Vec<&String> = dump
        .drivers
        .iter()
        .filter_map(|d| d.as_ref().err())
        .collect();
    let mut out = json!({
        "build": info.minor_version,
        "processors": info.number_processors,
        "bugcheck": {
            "code": hex(u64::from(info.bugcheck_code)),
            "parameters": info.bugcheck_parameters.iter().map(|&p| hex(p)).collect::<Vec<_>>(),
            "in_drivers": addresses,
        },
        "system_time": info.system_time,
        "context": {
            "rip": hex(dump.context.rip),
            "rsp": hex(dump.context.rsp),
            "in": in_driver(dump.context.rip),
        },
        "drivers": drivers,
        "driver_errors": errors,
        "drivers_truncated": dump.drivers_truncated,
    });
    out["crashing"] = match crashing {
        Ok(r) => json!({
            "pid": r.process.pid,
            "ppid": r.process.ppid,
            "name": r.process.name,
            "thread_id": r.process.thread_id,
            "thread_process_id": r.process.thread_process_id,
            "processor": r.process.processor,
            "profiles": r.profiles,
            "picked_by": match &r.picked_by {
                ProfilePick::Given => "given",
                ProfilePick::KernelImage { .. } => "kernel_image",
                _ => "layout",
            },
        }),
        Err(why) => json!({"error": why}),
    };
    out
}

/// [`windows_triage`] for people: the header, bug check and `rip` with the drivers they lie
/// in, the crashing process (or why it is not named), and the driver list. Strings from the
/// dump are made terminal-safe.
pub fn windows_triage_text(
    image: &str,
    dump: &TriageDump,
    crashing: std::result::Result<&TriageReading, &str>,
) -> String {
    use std::fmt::Write as _;
    let info = &dump.info;
    let in_driver = |a: u64| {
        dump.driver_at(a)
            .map(|d| format!(" ({}+{:#x})", safe(&d.name), a - d.base))
            .unwrap_or_default()
    };
    let mut s = String::new();
    let _ = writeln!(s, "image      {}", safe(image));
    let _ = writeln!(
        s,
        "format     Windows triage dump (DumpType 4): no physical memory, no process list; what it records:"
    );
    let _ = writeln!(
        s,
        "kernel     build {}, {} processors",
        info.minor_version, info.number_processors
    );
    let params: Vec<String> = info
        .bugcheck_parameters
        .iter()
        .map(|&p| format!("{p:#x}{}", in_driver(p)))
        .collect();
    let _ = writeln!(
        s,
        "bugcheck   {:#x} ({})",
        info.bugcheck_code,
        params.join(", ")
    );
    let _ = writeln!(
        s,
        "context    rip {:#x}{} rsp {:#x}",
        dump.context.rip,
        in_driver(dump.context.rip),
        dump.context.rsp
    );
    match crashing {
        Ok(r) => {
            let p = &r.process;
            let cpu = p
                .processor
                .map_or_else(|| "?".to_owned(), |n| n.to_string());
            let how = match &r.picked_by {
                ProfilePick::Given => "given".to_owned(),
                ProfilePick::KernelImage { image, .. } => {
                    format!("by the GUID of {}", image.display())
                }
                _ => format!(
                    "the {} of {} profiles that read it",
                    r.profiles.len(),
                    r.tried
                ),
            };
            let _ = writeln!(
                s,
                "crashing   pid {} ppid {} {} thread {:#x} on processor {cpu} (profile {}: {})",
                p.pid,
                p.ppid,
                safe(&p.name),
                p.thread_id,
                safe(&r.profiles.join(", ")),
                safe(&how)
            );
            if p.thread_process_id != p.pid {
                let _ = writeln!(
                    s,
                    "           the thread belongs to pid {} (attached)",
                    p.thread_process_id
                );
            }
        }
        Err(why) => {
            let _ = writeln!(s, "crashing   not named: {}", safe(why));
        }
    }
    let _ = writeln!(s);
    s.push_str(&windows_triage_drivers_text(dump));
    s
}

/// A triage dump's driver list: `[{name, base, size, checksum, timestamp}]`.
pub fn windows_triage_drivers(dump: &TriageDump) -> Value {
    dump.drivers
        .iter()
        .flatten()
        .map(|d| {
            json!({
                "name": d.name,
                "base": hex(d.base),
                "size": hex(u64::from(d.size)),
                "checksum": hex(u64::from(d.checksum)),
                "timestamp": hex(u64::from(d.timestamp)),
            })
        })
        .collect()
}

/// A triage dump's driver list for people: a count line, a header, one line per driver.
pub fn windows_triage_drivers_text(dump: &TriageDump) -> String {
    use std::fmt::Write as _;
    let drivers: Vec<_> = dump.drivers.iter().flatten().collect();
    let mut s = format!("{} drivers:\n", drivers.len());
    let _ = writeln!(s, "{:<18} {:>10}  NAME", "BASE", "SIZE");
    for d in drivers {
        let _ = writeln!(s, "{:#018x} {:>#10x}  {}", d.base, d.size, safe(&d.name));
    }
    s
}

/// Windows processes for people: a header, then pid, parent, `kern`/`user`, both page-table
/// roots (`-` for none) and the name, one line each.
pub fn windows_processes_text(processes: &[Process]) -> String {
    use std::fmt::Write as _;
    let mut s = format!(
        "{:>7} {:>7}  {:<5} {:>12} {:>12}  NAME\n",
        "PID", "PPID", "KIND", "DTB", "USER DTB"
    );
    let dtb = |d: Option<crate::Gpa>| d.map_or_else(|| "-".into(), |d| d.to_string());
    for p in processes {
        let _ = writeln!(
            s,
            "{:>7} {:>7}  {:<5} {:>12} {:>12}  {}",
            p.pid,
            p.ppid,
            if p.kernel_thread { "kern" } else { "user" },
            dtb(p.dtb),
            dtb(p.user_dtb),
            safe(&p.name)
        );
    }
    s
}

/// Windows drivers for people: a header, then name, base and size, one line each.
pub fn windows_drivers_text(drivers: &[Module]) -> String {
    use std::fmt::Write as _;
    let mut s = format!("{:<24} {:>18} {:>10}\n", "NAME", "BASE", "SIZE");
    for m in drivers {
        let _ = writeln!(s, "{:<24} {:>18} {:>10}", safe(&m.name), m.base, m.size);
    }
    s
}
