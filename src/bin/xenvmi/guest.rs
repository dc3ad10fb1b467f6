//! `info`, `ps` and `modules`: open the image or domain, find its Linux kernel, walk what the
//! command asks for, print it (JSON from `xenvmi::report`, the pslist example's schema).

use xenvmi::backend::snapshot::{Format, Snapshot};
use xenvmi::backend::PhysicalMemory;
use xenvmi::mem::GuestMemory;
use xenvmi::os::linux::detail::ProcessDetail;
use xenvmi::os::linux::{BuildCache, Linux, ModuleCrossView, ProfileSource, Scope};
use xenvmi::os::terminal_safe as safe;
use xenvmi::os::{Module, Process};
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
}

/// What was found in one image or domain.
pub struct Found {
    /// The image path or the domain, as errors and `info` name it.
    pub image: Option<String>,
    pub domain: Option<String>,
    format: String,
    linux: Linux,
    regs: Vec<Registers>,
    processes: Vec<Process>,
    detail: Option<Vec<ProcessDetail>>,
    modules: Vec<Module>,
    /// The modules' cross-view, when asked for (its `listed` are `modules`).
    cross_view: Option<ModuleCrossView>,
    /// Who allocated each of the cross-view's unattributed areas (`symbol+offset`).
    area_callers: Vec<Option<String>>,
    /// The attestation observation, when asked for.
    pub observation: Option<xenvmi::attest::Observation>,
    /// Elements of a walk that could not be read (the walk went on).
    warnings: Vec<String>,
}

impl Found {
    pub fn warn(&self) {
        for w in &self.warnings {
            eprintln!("xenvmi: warning: {}", safe(w));
        }
    }
}

pub fn info(t: &Target, json: bool) -> Result<(), String> {
    let f = open(
        t,
        Want {
            processes: true,
            ..Want::default()
        },
    )?;
    let k = f.linux.info();
    let vcpus = report::vcpu_owners(&f.linux, &f.processes, &f.regs);
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
        match (&f.image, &f.domain) {
            (Some(i), _) => outln!("image      {} ({})", safe(i), f.format),
            (_, Some(d)) => outln!("domain     {} ({})", safe(d), f.format),
            _ => {}
        }
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
    f.warn();
    Ok(())
}

pub fn ps(t: &Target, json: bool, detail: bool) -> Result<(), String> {
    let f = open(
        t,
        Want {
            processes: true,
            detail,
            ..Want::default()
        },
    )?;
    if json {
        let out = serde_json::json!({
            "processes": report::linux_processes(&f.processes, f.detail.as_deref()),
        });
        outln!("{out}");
    } else {
        outln!(
            "{:>7} {:>7} {:>7}  {:<5} {:>12}  NAME",
            "PID",
            "TGID",
            "PPID",
            "KIND",
            "DTB"
        );
        for p in &f.processes {
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
    f.warn();
    Ok(())
}

pub fn modules(t: &Target, json: bool, cross_view: bool) -> Result<(), String> {
    let f = open(
        t,
        Want {
            modules: true,
            cross_view,
            ..Want::default()
        },
    )?;
    if json {
        let mut out = serde_json::json!({"modules": report::modules(&f.modules)});
        if let Some(v) = &f.cross_view {
            out["cross_view"] = report::module_cross_view(v, &f.area_callers);
        }
        outln!("{out}");
    } else {
        outln!("{:<24} {:>18} {:>8}", "NAME", "BASE", "SIZE");
        for m in &f.modules {
            outln!("{:<24} {:>18} {:>8}", safe(&m.name), m.base, m.size);
        }
        if let Some(v) = &f.cross_view {
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
            for (a, caller) in v.unattributed.iter().zip(&f.area_callers) {
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
    if snap.format() == Format::WindowsCrashDump {
        return Err(format!(
            "{name} is a Windows crash dump: xenvmi reads Linux guests; for Windows use the \
             pslist example with --windows PROFILE"
        ));
    }
    let format = snap.format().to_string();
    let regs = snap.all_registers().to_vec();
    let mut f = examine(&GuestMemory::new(snap), regs, profile(t), !t.no_cache, want)
        .map_err(|e| format!("{name}: {e}"))?;
    f.image = Some(name);
    f.format = format;
    Ok(f)
}

/// Find the kernel and walk what is wanted. Errors are the library's, unnamed: the caller
/// names the image or domain.
fn examine<B: PhysicalMemory>(
    mem: &GuestMemory<B>,
    regs: Vec<Registers>,
    source: ProfileSource,
    cached: bool,
    want: Want,
) -> Result<Found, xenvmi::Error> {
    // Without registers that place the kernel, discovery searches physical memory: progress
    // on stderr when it is a terminal.
    let mut meter = ProgressMeter::new();
    let mut progress = |p| meter.on_stderr(p);
    let linux = match source {
        ProfileSource::InGuest if cached => {
            // Process detail and attestation (executables, memory maps, the BTF's extent) read
            // structures and symbols beyond the walkers' offsets: every type and symbol.
            let scope = if want.detail || want.attest || want.cross_view {
                Scope::Full
            } else {
                Scope::Walks
            };
            let cache = BuildCache::from_env();
            Linux::discover_cached_observed(mem, &regs, &cache, scope, &mut progress)
        }
        source => Linux::discover_observed(mem, &regs, source, &mut progress),
    };
    meter.finish();
    let linux = linux?;
    let mut warnings = Vec::new();
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
    let observation = want.attest.then(|| xenvmi::attest::observe(mem, &linux));
    Ok(Found {
        image: None,
        domain: None,
        format: String::new(),
        linux,
        regs,
        processes,
        detail,
        modules,
        cross_view,
        area_callers,
        observation,
        warnings,
    })
}

/// A running domain, paused while it is read so that the walks see one instant.
#[cfg(feature = "xen")]
fn open_domain(domain: &str, t: &Target, want: Want) -> Result<Found, String> {
    use xenvmi::backend::{VcpuState, VmControl};
    let dom = crate::xen::open(domain)?;
    let named = |e: xenvmi::Error| format!("domain {domain}: {e}");
    dom.pause().map_err(named)?;
    let regs: Vec<_> = (0..dom.vcpu_count())
        .filter_map(|v| dom.registers(xenvmi::VcpuId(v)).ok())
        .collect();
    let found = examine(&GuestMemory::new(&dom), regs, profile(t), !t.no_cache, want);
    // Resumed whatever the walk found.
    dom.resume().map_err(named)?;
    let mut f = found.map_err(named)?;
    f.domain = Some(domain.to_owned());
    f.format = "Xen domain".into();
    Ok(f)
}

#[cfg(not(feature = "xen"))]
fn open_domain(domain: &str, _t: &Target, _want: Want) -> Result<Found, String> {
    Err(crate::xen::unavailable(domain))
}
