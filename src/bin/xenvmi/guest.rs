//! `info`, `ps` and `modules`: open the image or domain, tell its OS apart, find its Linux or
//! Windows kernel, walk what the command asks for, print it (JSON from `xenvmi::report`, the
//! pslist example's schema for either OS).

use xenvmi::backend::snapshot::{Format, Snapshot};
use xenvmi::backend::PhysicalMemory;
use xenvmi::mem::GuestMemory;
use xenvmi::os::linux::detail::ProcessDetail;
use xenvmi::os::linux::{BuildCache, Linux, ModuleCrossView, ProfileSource, Scope};
use xenvmi::os::profile::cache::ProfileCache;
use xenvmi::os::terminal_safe as safe;
use xenvmi::os::windows::{Hints, ProcessorView, Windows, WindowsProfile};
use xenvmi::os::{DiscoverOptions, Guest, Identification, Module, OsKind, Process};
use xenvmi::progress::ProgressMeter;
use xenvmi::report;
use xenvmi::Registers;

use crate::Target;

/// What to walk besides the kernel itself.
#[derive(Clone, Copy, Default)]
pub struct Want {
    pub processes: bool,
    pub detail: bool,
    pub modules: bool,
    /// The modules' cross-view (`Linux::module_cross_view`): needs every type.
    pub cross_view: bool,
    /// What an attestation manifest states (`xenvmi::attest::observe`).
    pub attest: bool,
    /// Every processor from a Windows kernel's records (`info`).
    pub processors: bool,
}

impl Want {
    /// The part of this request only a Linux guest answers, as the user asked for it.
    fn linux_only(&self) -> Option<&'static str> {
        if self.detail {
            Some("`ps --detail` (argv, maps, files, sockets)")
        } else if self.cross_view {
            Some("`modules --cross-view`")
        } else if self.attest {
            Some("`attest`")
        } else {
            None
        }
    }
}

/// What the Linux-only command `what` says about a Windows image: one line naming the image
/// and the tell that decided.
fn linux_only(name: &str, id: &Identification, what: &str) -> String {
    let tell = id.seen.last().map(String::as_str).unwrap_or("");
    format!("{name} holds a Windows kernel ({tell}): {what} is Linux-only")
}

/// Refuse an image that holds a Windows kernel for the Linux-only command `what` (`trace`,
/// `guard`), from the cheap OS tells alone, before any kernel search.
pub fn refuse_windows(name: &str, snap: &Snapshot, what: &str) -> Result<(), String> {
    let hints = snap
        .windows_dump_info()
        .map(Hints::from)
        .unwrap_or_default();
    refuse_windows_in(
        name,
        &GuestMemory::new(snap),
        snap.all_registers(),
        &hints,
        what,
    )
}

/// [`refuse_windows`] for a live Xen domain (`xenvmi::os::identify_paused`: paused for the
/// few reads the tells take, resumed whatever they find).
#[cfg(feature = "xen")]
pub fn refuse_windows_domain<B>(domain: &str, dom: &B, what: &str) -> Result<(), String>
where
    B: PhysicalMemory + xenvmi::backend::VcpuState + xenvmi::backend::VmControl,
{
    let name = format!("domain {domain}");
    let id =
        xenvmi::os::identify_paused(dom, &Hints::default()).map_err(|e| format!("{name}: {e}"))?;
    match id.kind {
        Some(OsKind::Windows) => Err(linux_only(&name, &id, what)),
        _ => Ok(()),
    }
}

fn refuse_windows_in<B: PhysicalMemory>(
    name: &str,
    mem: &GuestMemory<B>,
    regs: &[Registers],
    hints: &Hints,
    what: &str,
) -> Result<(), String> {
    let id = xenvmi::os::identify(mem, regs, hints, &mut |_| {});
    match id.kind {
        Some(OsKind::Windows) => Err(linux_only(name, &id, what)),
        _ => Ok(()),
    }
}

/// What was found in one image or domain.
pub struct Found {
    /// The image path or the domain, as errors and `info` name it.
    pub image: Option<String>,
    pub domain: Option<String>,
    format: String,
    regs: Vec<Registers>,
    os: Os,
    /// The attestation observation, when asked for.
    pub observation: Option<xenvmi::attest::Observation>,
    /// Elements of a walk that could not be read (the walk went on).
    warnings: Vec<String>,
}

/// The kernel found and what was walked, by OS.
// One per command run: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
enum Os {
    Linux(LinuxWalks),
    Windows(WindowsWalks),
}

struct LinuxWalks {
    linux: Linux,
    processes: Vec<Process>,
    detail: Option<Vec<ProcessDetail>>,
    modules: Vec<Module>,
    /// The modules' cross-view, when asked for (its `listed` are `modules`).
    cross_view: Option<ModuleCrossView>,
    /// Who allocated each of the cross-view's unattributed areas (`symbol+offset`).
    area_callers: Vec<Option<String>>,
}

struct WindowsWalks {
    windows: Windows,
    processes: Vec<Process>,
    drivers: Vec<Module>,
    /// Every processor from the kernel's records, when asked for.
    view: Option<ProcessorView>,
    /// A crash dump's kind and bug check code.
    dump: Option<(String, u32)>,
}

impl Found {
    pub fn warn(&self) {
        for w in &self.warnings {
            eprintln!("xenvmi: warning: {}", safe(w));
        }
    }
}

pub fn info(t: &Target, json: bool) -> Result<(), String> {
    if let Some(image) = crate::triage::image(t) {
        return crate::triage::info(t, &image, json);
    }
    let f = open(
        t,
        Want {
            processes: true,
            processors: true,
            ..Want::default()
        },
    )?;
    match &f.os {
        Os::Linux(l) => linux_info(&f, l, json),
        Os::Windows(w) => windows_info(&f, w, json),
    }
    f.warn();
    Ok(())
}

fn linux_info(f: &Found, l: &LinuxWalks, json: bool) {
    let k = l.linux.info();
    let vcpus = report::vcpu_owners(&l.linux, &l.processes, &f.regs);
    if json {
        let out = serde_json::json!({
            "image": f.image,
            "domain": f.domain,
            "format": f.format,
            "os": "linux",
            "kernel": report::linux_kernel(k),
            "profile": {"symbols": k.symbol_source, "types": k.type_source},
            "located_by": k.located_by,
            "vcpus": report::linux_vcpus(&vcpus),
        });
        outln!("{out}");
    } else {
        f.name_line();
        outln!("os         Linux");
        outln!("kernel     {}", safe(&k.release));
        outln!("banner     {}", safe(k.banner.trim_end()));
        outln!(
            "KASLR      offset {:#x}  _text {} -> pa {}  phys_base {:#x}",
            k.kaslr_offset,
            k.text_va,
            k.text_pa,
            k.phys_base
        );
        outln!(
            "memory     page_offset_base {}  {}-level paging",
            k.page_offset_base,
            k.paging.levels()
        );
        outln!(
            "profile    symbols: {}; types: {}",
            k.symbol_source,
            k.type_source
        );
        outln!("found by   {}", k.located_by);
        outln!("vCPUs      {}", vcpus.len());
        for v in &vcpus {
            let who = match (v.owner, v.kernel) {
                (Some(p), _) => format!("pid {} ({})", p.pid, safe(&p.name)),
                (None, true) => "kernel page tables (idle/swapper)".into(),
                (None, false) => "no process owns this CR3".into(),
            };
            outln!("  vCPU {}  CR3 {:#x}  -> {who}", v.index, v.cr3);
        }
    }
}

/// A Windows guest's `info`: the kernel (build, PDB, base, profile), how it was found, every
/// processor from the kernel's records with who runs on it, a crash dump's crashing
/// processor, and the registers' owners.
fn windows_info(f: &Found, w: &WindowsWalks, json: bool) {
    let info = w.windows.info();
    // `info` asks for the processors (`Want::processors`): the view is there.
    let Some(view) = &w.view else { return };
    let vcpus = report::windows_vcpu_owners(&w.windows, &w.processes, &f.regs, view);
    if json {
        let out = serde_json::json!({
            "image": f.image,
            "domain": f.domain,
            "format": f.format,
            "os": "windows",
            "dump": w.dump.as_ref().map(|(kind, code)| serde_json::json!({
                "kind": kind, "bugcheck": report::hex(u64::from(*code)),
            })),
            "kernel": report::windows_kernel(info),
            "pdb": info.codeview.as_ref().map(|cv| serde_json::json!({
                "name": cv.pdb_name(), "guid": cv.guid_string(), "age": cv.age,
            })),
            "vcpus": report::windows_vcpus(&vcpus),
            "crashing_cpu": report::crashing_cpu(view.crashed.as_ref()),
            "processors": report::windows_processors(view.processors.as_ref()),
        });
        outln!("{out}");
        return;
    }
    f.name_line();
    outln!("os         Windows");
    if let Some((kind, code)) = &w.dump {
        outln!("dump       {kind}, bugcheck {code:#x}");
    }
    outln!(
        "kernel     ntoskrnl.exe at {} (SizeOfImage {:#x}), build {}",
        info.kernel_base,
        info.size_of_image,
        info.build.map_or_else(|| "?".into(), |b| b.to_string())
    );
    outln!(
        "pdb        {}",
        safe(
            report::windows_pdb(info)
                .as_deref()
                .unwrap_or("(no CodeView record)")
        )
    );
    outln!("profile    {}", safe(&info.profile));
    outln!(
        "found by   {:?} in the page tables from the {}; kernel DTB {}",
        info.found_by,
        info.root_source,
        info.kernel_space.root
    );
    for r in &info.rejected_roots {
        outln!("rejected   page-table root {}", safe(r));
    }
    if let Some(c) = &view.crashed {
        match c.index() {
            Some(i) => outln!("crashed    on processor {i}: {}", c.explanation()),
            None => outln!(
                "crashed    on an unknown processor: {}",
                safe(&c.explanation())
            ),
        }
    }
    if let Some(c) = &view.processors {
        outln!(
            "processors {} (kernel records, KiProcessorBlock; KeNumberProcessors {})",
            c.cpus.len(),
            c.declared
        );
        for cpu in c.read() {
            let who = match &cpu.owner {
                Some(p) => format!("pid {} ({})", p.pid, safe(&p.name)),
                None => format!("EPROCESS {} unreadable", cpu.process),
            };
            let crashed = view.crashed.as_ref().and_then(|c| c.index()) == Some(cpu.index);
            outln!(
                "  CPU {:<3} KPRCB {}  thread {}  -> {who}  saved CR3 {:#x}{}",
                cpu.index,
                cpu.prcb,
                cpu.thread,
                cpu.saved_cr3,
                if crashed { "  [crashed]" } else { "" }
            );
            if let Some(r) = cpu.registers.as_ref().filter(|r| !r.agrees) {
                outln!(
                    "           DISAGREES with the registers: {}",
                    safe(&r.detail)
                );
            }
        }
    }
    outln!("vCPUs      {} (registers)", vcpus.len());
    for v in &vcpus {
        let who = v.owner.map_or_else(
            || "no process owns this CR3".into(),
            |p| format!("pid {} ({})", p.pid, safe(&p.name)),
        );
        let label = match (v.index, view.crash_dump) {
            (Some(i), true) => format!("CONTEXT of processor {i}"),
            (None, true) => "CONTEXT of an unknown processor".into(),
            (Some(i), false) => format!("vCPU {i}"),
            (None, false) => "vCPU ?".into(),
        };
        // A dump's CONTEXT has no CR3: it is the header's DirectoryTableBase.
        let from = if view.crash_dump {
            " (DirectoryTableBase)"
        } else {
            ""
        };
        outln!("  {label}  CR3 {:#x}{from}  -> {who}", v.cr3);
    }
}

pub fn ps(t: &Target, json: bool, detail: bool) -> Result<(), String> {
    if let Some(image) = crate::triage::image(t) {
        return Err(crate::triage::no_processes(&image));
    }
    let f = open(
        t,
        Want {
            processes: true,
            detail,
            ..Want::default()
        },
    )?;
    match &f.os {
        Os::Linux(l) => linux_ps(l, json),
        Os::Windows(w) => windows_ps(w, json),
    }
    f.warn();
    Ok(())
}

fn linux_ps(l: &LinuxWalks, json: bool) {
    if json {
        let out = serde_json::json!({
            "processes": report::linux_processes(&l.processes, l.detail.as_deref()),
        });
        outln!("{out}");
        return;
    }
    outln!(
        "{:>7} {:>7} {:>7}  {:<5} {:>12}  NAME",
        "PID",
        "TGID",
        "PPID",
        "KIND",
        "DTB"
    );
    for p in &l.processes {
        outln!(
            "{:>7} {:>7} {:>7}  {:<5} {:>12}  {}",
            p.pid,
            p.tgid,
            p.ppid,
            if p.kernel_thread { "kthr" } else { "user" },
            p.dtb.map(|d| d.to_string()).unwrap_or_else(|| "-".into()),
            safe(&p.name)
        );
    }
}

/// Windows processes as the pslist example lists them: pid, parent, kernel or user, both
/// page-table roots, name.
fn windows_ps(w: &WindowsWalks, json: bool) {
    if json {
        let out = serde_json::json!({
            "processes": report::windows_processes(&w.processes),
        });
        outln!("{out}");
        return;
    }
    crate::OUT.with_borrow_mut(|o| o.push_str(&report::windows_processes_text(&w.processes)));
}

pub fn modules(t: &Target, json: bool, cross_view: bool) -> Result<(), String> {
    if let Some(image) = crate::triage::image(t) {
        return crate::triage::modules(t, &image, json, cross_view);
    }
    let f = open(
        t,
        Want {
            modules: true,
            cross_view,
            ..Want::default()
        },
    )?;
    let l = match &f.os {
        Os::Linux(l) => l,
        Os::Windows(w) => {
            // The drivers, ntoskrnl first, in load order: `drivers` as the pslist example.
            if json {
                outln!(
                    "{}",
                    serde_json::json!({"drivers": report::modules(&w.drivers)})
                );
            } else {
                crate::OUT
                    .with_borrow_mut(|o| o.push_str(&report::windows_drivers_text(&w.drivers)));
            }
            f.warn();
            return Ok(());
        }
    };
    if json {
        let mut out = serde_json::json!({"modules": report::modules(&l.modules)});
        if let Some(v) = &l.cross_view {
            out["cross_view"] = report::module_cross_view(v, &l.area_callers);
        }
        outln!("{out}");
    } else {
        outln!("{:<24} {:>18} {:>8}", "NAME", "BASE", "SIZE");
        for m in &l.modules {
            outln!("{:<24} {:>18} {:>8}", safe(&m.name), m.base, m.size);
        }
        if let Some(v) = &l.cross_view {
            outln!(
                "cross-view: {} on the module list, {} in /sys/module (module_kset), {} vmap \
                 areas in the modules region ({} not a module's), {} hidden",
                v.listed.len(),
                v.kobjects.len(),
                v.areas,
                v.unattributed.len(),
                v.hidden.len()
            );
            for (h, what) in v
                .hidden
                .iter()
                .map(|h| (h, "HIDDEN"))
                .chain(v.transitional.iter().map(|h| (h, "not live")))
            {
                let views: Vec<&str> = h.views.iter().map(|w| w.as_str()).collect();
                outln!(
                    "{what} {:<24} {:>18} {:>8} struct module {} state {} seen in {}",
                    safe(&h.module.name),
                    h.module.base,
                    h.module.size,
                    h.module.object,
                    h.state,
                    views.join(",")
                );
            }
            for (a, caller) in v.unattributed.iter().zip(&l.area_callers) {
                outln!(
                    "other area {}-{} allocated by {}",
                    a.start,
                    a.end,
                    caller
                        .as_deref()
                        .map_or_else(|| a.caller.to_string().into(), safe)
                );
            }
        }
    }
    f.warn();
    Ok(())
}

impl Found {
    /// The `image` / `domain` line of `info`.
    fn name_line(&self) {
        match (&self.image, &self.domain) {
            (Some(i), _) => outln!("image      {} ({})", safe(i), self.format),
            (_, Some(d)) => outln!("domain     {} ({})", safe(d), self.format),
            _ => {}
        }
    }
}

/// Where the Linux kernel's types and symbols come from.
fn profile(t: &Target) -> ProfileSource {
    match (&t.profile, &t.btf, &t.symbols) {
        (Some(p), _, _) => ProfileSource::Isf(p.clone()),
        (None, Some(b), Some(s)) => ProfileSource::Files {
            btf: b.clone(),
            symbols: s.clone(),
        },
        _ => ProfileSource::InGuest,
    }
}

pub fn open(t: &Target, want: Want) -> Result<Found, String> {
    if let Some(domain) = &t.domain {
        return open_domain(domain, t, want);
    }
    let image = crate::fixture::image_path(t.image.as_deref())?;
    let name = image.display().to_string();
    // The library's error names the file.
    let snap = Snapshot::open(&image).map_err(|e| e.to_string())?;
    let format = snap.format().to_string();
    let regs = snap.all_registers().to_vec();
    // A crash dump header says where the kernel's lists are (and that it is Windows).
    let hints = snap
        .windows_dump_info()
        .map(Hints::from)
        .unwrap_or_default();
    let dump = snap
        .windows_dump_info()
        .map(|d| (d.kind.to_string(), d.bugcheck_code));
    let crash_dump = snap.format() == Format::WindowsCrashDump;
    let guest = Look {
        name: &name,
        target: t,
        hints,
        crash_dump,
        want,
    };
    let mut f = examine(&GuestMemory::new(snap), regs, guest)?;
    if let Os::Windows(w) = &mut f.os {
        w.dump = dump;
    }
    f.image = Some(name);
    f.format = format;
    Ok(f)
}

/// How to look at one image or domain.
struct Look<'a> {
    /// The image or domain, as errors name it.
    name: &'a str,
    target: &'a Target,
    /// A crash dump header's hints.
    hints: Hints,
    /// The registers are a crash dump's one `CONTEXT`.
    crash_dump: bool,
    want: Want,
}

/// Tell the OS apart, refuse what that OS cannot answer, find the kernel and walk what is
/// wanted. Errors name the image or domain.
fn examine<B: PhysicalMemory>(
    mem: &GuestMemory<B>,
    regs: Vec<Registers>,
    look: Look<'_>,
) -> Result<Found, String> {
    let Look {
        name,
        target: t,
        hints,
        crash_dump,
        want,
    } = look;
    let named = |e: xenvmi::Error| format!("{name}: {e}");
    // Without registers that place the kernel, the searches read physical memory: progress
    // on stderr when it is a terminal.
    let mut meter = ProgressMeter::new();
    let mut progress = |p| meter.on_stderr(p);
    let id = xenvmi::os::identify(mem, &regs, &hints, &mut progress);
    if id.kind == Some(OsKind::Windows) {
        // Refused before any Windows search or profile lookup.
        if let Some(what) = want.linux_only() {
            meter.finish();
            return Err(linux_only(name, &id, what));
        }
        if t.btf.is_some() {
            meter.finish();
            return Err(format!(
                "{}; give the Windows profile (an ISF or PDB file, or a symbol-store or ISF \
                 directory) with --profile",
                linux_only(
                    name,
                    &id,
                    "--btf/--symbols (a Linux kernel's types and symbols)"
                )
            ));
        }
    }
    // Process detail and attestation (executables, memory maps, the BTF's extent) read
    // structures and symbols beyond the walkers' offsets: every type and symbol.
    let scope = if want.detail || want.attest || want.cross_view {
        Scope::Full
    } else {
        Scope::Walks
    };
    let build_cache = BuildCache::from_env();
    let profile_cache = if t.no_cache {
        ProfileCache::in_memory()
    } else {
        ProfileCache::from_env()
    };
    let source = profile(t);
    let options = DiscoverOptions {
        build_cache: (!t.no_cache && matches!(source, ProfileSource::InGuest))
            .then_some((&build_cache, scope)),
        linux: source,
        // --profile is the Windows profile for a Windows image; none: the default place.
        windows: t.profile.as_deref().map(WindowsProfile::from_path),
        hints,
        profile_cache: Some(&profile_cache),
    };
    let guest = xenvmi::os::discover_identified(mem, &regs, id, options, &mut progress);
    meter.finish();
    let guest = guest.map_err(|e| match e {
        xenvmi::Error::Config { .. } => format!("{name}: {e} (give it with --profile PROFILE)"),
        e => named(e),
    })?;
    let mut warnings = Vec::new();
    let found = |os| Found {
        image: None,
        domain: None,
        format: String::new(),
        regs: Vec::new(),
        os,
        observation: None,
        warnings: Vec::new(),
    };
    let mut f = match guest {
        Guest::Linux(linux) => {
            let walks = linux_walks(mem, linux, want, &mut warnings).map_err(named)?;
            let mut f = found(Os::Linux(walks));
            if let (true, Os::Linux(l)) = (want.attest, &f.os) {
                f.observation = Some(xenvmi::attest::observe(mem, &l.linux));
            }
            f
        }
        Guest::Windows(windows) => {
            for why in profile_cache.rejections() {
                warnings.push(format!(
                    "profile cache entry rejected, profile parsed again: {why}"
                ));
            }
            found(Os::Windows(windows_walks(
                mem,
                windows,
                &regs,
                crash_dump,
                want,
                &mut warnings,
            )))
        }
    };
    f.regs = regs;
    f.warnings = warnings;
    Ok(f)
}

fn linux_walks<B: PhysicalMemory>(
    mem: &GuestMemory<B>,
    linux: Linux,
    want: Want,
    warnings: &mut Vec<String>,
) -> Result<LinuxWalks, xenvmi::Error> {
    let mut processes = Vec::new();
    if want.processes {
        for p in linux.processes(mem) {
            match p {
                Ok(p) => processes.push(p),
                Err(e) => warnings.push(e.to_string()),
            }
        }
    }
    let detail = want.detail.then(|| {
        processes
            .iter()
            .map(|p| linux.process_detail(mem, p))
            .collect()
    });
    let mut modules = Vec::new();
    let mut cross_view = None;
    let mut area_callers = Vec::new();
    if want.cross_view {
        let v = linux.module_cross_view(mem)?;
        warnings.extend(v.errors.iter().cloned());
        let symbolizer = linux.symbolizer(mem);
        area_callers = v
            .unattributed
            .iter()
            .map(|a| symbolizer.symbolize(a.caller).map(|s| s.to_string()))
            .collect();
        modules = v.listed.clone();
        cross_view = Some(v);
    } else if want.modules {
        for m in linux.modules(mem) {
            match m {
                Ok(m) => modules.push(m),
                Err(e) => warnings.push(e.to_string()),
            }
        }
    }
    Ok(LinuxWalks {
        linux,
        processes,
        detail,
        modules,
        cross_view,
        area_callers,
    })
}

fn windows_walks<B: PhysicalMemory>(
    mem: &GuestMemory<B>,
    windows: Windows,
    regs: &[Registers],
    crash_dump: bool,
    want: Want,
    warnings: &mut Vec<String>,
) -> WindowsWalks {
    let mut processes = Vec::new();
    if want.processes {
        for p in windows.processes(mem) {
            match p {
                Ok(p) => processes.push(p),
                Err(e) => warnings.push(e.to_string()),
            }
        }
    }
    let mut drivers = Vec::new();
    if want.modules {
        for m in windows.modules(mem) {
            match m {
                Ok(m) => drivers.push(m),
                Err(e) => warnings.push(e.to_string()),
            }
        }
    }
    let view = want.processors.then(|| {
        let v = windows.processor_view(mem, regs, crash_dump);
        warnings.extend(v.errors.iter().cloned());
        v
    });
    WindowsWalks {
        windows,
        processes,
        drivers,
        view,
        dump: None,
    }
}

/// A running domain, paused while it is read so that the walks see one instant.
#[cfg(feature = "xen")]
fn open_domain(domain: &str, t: &Target, want: Want) -> Result<Found, String> {
    use xenvmi::backend::{VcpuState, VmControl};
    let dom = crate::xen::open(domain)?;
    let name = format!("domain {domain}");
    let named = |e: xenvmi::Error| format!("{name}: {e}");
    dom.pause().map_err(named)?;
    let regs: Vec<_> = (0..dom.vcpu_count())
        .filter_map(|v| dom.registers(xenvmi::VcpuId(v)).ok())
        .collect();
    let look = Look {
        name: &name,
        target: t,
        hints: Hints::default(),
        crash_dump: false,
        want,
    };
    let found = examine(&GuestMemory::new(&dom), regs, look);
    // Resumed whatever the walk found.
    dom.resume().map_err(named)?;
    let mut f = found?;
    f.domain = Some(domain.to_owned());
    f.format = "Xen domain".into();
    Ok(f)
}

#[cfg(not(feature = "xen"))]
fn open_domain(domain: &str, _t: &Target, _want: Want) -> Result<Found, String> {
    Err(crate::xen::unavailable(domain))
}
