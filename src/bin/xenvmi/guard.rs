//! `guard`: protect a live Linux kernel with the policy library (`xenvmi::policy`,
//! `docs/policies.md`): a `PolicySet` from names and remediations, alerts to stdout, a JSON
//! lines file and syslog collectors (`xenvmi::alert`), run by a `Guard` on a Xen domain or on
//! the simulated domain against its scripted rootkit (`xenvmi::policy::simulate`).
//!
//! Everything the user configures (policies, remediation, sinks) is checked, and network
//! collectors connected, before the image or domain is opened: a bad name or an unreachable
//! collector is one error line, and nothing was monitored.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use xenvmi::alert::{Alert, Callback, JsonLines, Sinks, Vm};
use xenvmi::backend::sim::SimDomain;
use xenvmi::backend::snapshot::Snapshot;
use xenvmi::backend::VmControl;
use xenvmi::event::session::{RunOptions, SessionBackend};
use xenvmi::mem::GuestMemory;
use xenvmi::os::linux::{Linux, ProfileSource};
use xenvmi::os::terminal_safe as safe;
use xenvmi::policy::simulate::{simulated_registers, ScriptedAttack};
use xenvmi::policy::{
    Guard, GuardOptions, GuardStats, PolicyOptions, PolicySet, Remediation, ViewMode, POLICY_NAMES,
};

/// The subcommand's options, as parsed.
pub struct Options {
    /// A Xen domain, or
    pub domain: Option<String>,
    /// the simulated domain over this image (`Some(None)`: the bundled snapshot).
    pub simulate: Option<Option<PathBuf>>,
    /// With `simulate`: only the scripted guest's benign actions.
    pub benign: bool,
    /// A `PolicySet::parse` specification (`None`: every policy).
    pub policies: Option<String>,
    /// The remediation of policies the specification gives none.
    pub remediation: Option<String>,
    pub no_text: bool,
    pub text_pages: Option<u64>,
    pub no_rodata: bool,
    pub gdt: bool,
    pub host_view: bool,
    /// A file alerts are appended to, one JSON object per line.
    pub alerts_file: Option<PathBuf>,
    /// Syslog collectors (`udp://HOST:PORT`, `tcp://HOST:PORT`).
    pub syslog: Vec<String>,
    pub capture_dir: Option<PathBuf>,
    pub json: bool,
    #[cfg_attr(not(feature = "xen"), allow(dead_code))]
    pub seconds: Option<u64>,
}

/// The policy set the options name.
fn policy_set(o: &Options) -> Result<PolicySet, String> {
    let remediation = match &o.remediation {
        Some(r) => Remediation::parse(r).map_err(|e| format!("--remediation: {e}"))?,
        None => Remediation::deny(),
    };
    let opts = PolicyOptions {
        remediation,
        text_pages: o.text_pages,
        rodata: !o.no_rodata,
        gdt: o.gdt,
    };
    let spec = match &o.policies {
        Some(s) => s.clone(),
        None => POLICY_NAMES
            .iter()
            .filter(|n| !(o.no_text && **n == "kernel-text"))
            .copied()
            .collect::<Vec<_>>()
            .join(";"),
    };
    PolicySet::parse(&spec, &opts).map_err(|e| format!("--policies: {e}"))
}

/// One line per alert for people: what, the vCPU, the summary, where the writer was.
fn text_line(a: &Alert) -> String {
    let vcpu = a.vcpu.map_or("-".into(), |v| v.to_string());
    let at = a
        .attempt
        .rip_symbol
        .as_deref()
        .map_or(String::new(), |s| format!(" at {s}"));
    safe(&format!(
        "{}  vCPU {vcpu}  {}{at}  [{}]",
        a.what,
        a.summary(),
        a.policy
    ))
    .into_owned()
}

/// Every sink the options ask for: stdout (text or JSON lines), the alerts file, each
/// syslog collector (connected now: an unreachable one is an error before monitoring).
fn sinks(o: &Options) -> Result<Sinks, String> {
    let mut sinks = crate::sinks::syslog(&o.syslog)?;
    if let Some(path) = &o.alerts_file {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| format!("--alerts-file {}: {e}", path.display()))?;
        sinks.push(Box::new(JsonLines::new(f, path.display().to_string())));
    }
    if o.json {
        sinks.push(Box::new(JsonLines::new(std::io::stdout(), "stdout")));
    } else {
        sinks.push(Box::new(Callback(|a: &Alert| {
            let mut out = std::io::stdout().lock();
            writeln!(out, "{}", text_line(a))
                .and_then(|()| out.flush())
                .map_err(|e| xenvmi::Error::io("stdout", e))
        })));
    }
    Ok(sinks)
}

pub fn run(o: &Options) -> Result<(), String> {
    // Configuration first: nothing is opened, read or monitored if any of it is wrong.
    let set = policy_set(o)?;
    let sinks = sinks(o)?;
    let gopts = GuardOptions {
        view: if o.host_view {
            ViewMode::Host
        } else {
            ViewMode::Own
        },
        capture_dir: o.capture_dir.clone(),
        ..GuardOptions::default()
    };
    match (&o.domain, &o.simulate) {
        (Some(d), _) => on_xen(d, o, set, sinks, gopts),
        (None, Some(image)) => on_sim(image.as_deref(), o, set, sinks, gopts),
        (None, None) => Err("give --domain NAME|ID, or --simulate [IMAGE]".into()),
    }
}

/// Set up, run until stopped, tear down; alerts through the sinks, notes and the summary on
/// stderr.
fn guard<B: SessionBackend + VmControl>(
    backend: &B,
    linux: &Linux,
    set: PolicySet,
    sinks: Sinks,
    gopts: GuardOptions,
    seconds: Option<u64>,
    banner: &str,
) -> Result<GuardStats, xenvmi::Error> {
    let mut guard = Guard::new(backend, linux, set, Box::new(sinks), gopts)?;
    eprintln!("xenvmi: {banner}");
    let stop = guard.stop_handle();
    stop.stop_on_signals()?;
    if let Some(s) = seconds {
        let stop = stop.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(s));
            stop.stop();
        });
    }
    let names = guard.policy_names().join(" ");
    match guard.view() {
        Some(v) => eprintln!(
            "xenvmi: guard: policies {names}; {} frame(s) write-protected in view {v}",
            guard.protected_pages()
        ),
        None => eprintln!("xenvmi: guard: policies {names}; no memory write-protected"),
    }
    let stats = guard.run();
    // Torn down whatever the run gave (a failed run has torn the session down already).
    let down = guard.teardown();
    let stats = stats?;
    down?;
    eprintln!(
        "xenvmi: guard: {} alert(s), {} denied, {} legitimate kernel write(s), {} undelivered; \
         {} event(s) ({:.0?} mean); teardown done",
        stats.alerts,
        stats.denied,
        stats.legitimate_writes,
        stats.undelivered,
        stats.run.events,
        stats.run.mean()
    );
    for c in &stats.captures {
        eprintln!("xenvmi: guard: capture {}", c.display());
    }
    Ok(stats)
}

fn on_sim(
    image: Option<&std::path::Path>,
    o: &Options,
    set: PolicySet,
    sinks: Sinks,
    mut gopts: GuardOptions,
) -> Result<(), String> {
    let path = crate::fixture::image_path(image)?;
    let name = path.display().to_string();
    // The library's error names the file.
    let snap = Snapshot::open(&path).map_err(|e| e.to_string())?;
    if snap.all_registers().is_empty() {
        return Err(format!(
            "{name}: the image records no vCPU registers, which the simulated domain needs \
             (a QEMU ELF core has them)"
        ));
    }
    crate::guest::refuse_windows(
        &name,
        &snap,
        "`guard` (the simulated domain runs a Linux kernel)",
    )?;
    let regs = simulated_registers(snap.all_registers());
    let sim = SimDomain::new(snap, &regs);
    let named = |e: xenvmi::Error| format!("{name}: {e}");
    let linux =
        Linux::discover(&GuestMemory::new(&sim), &regs, ProfileSource::InGuest).map_err(named)?;
    let attack = ScriptedAttack::prepare(&sim, &linux).map_err(named)?;
    sim.script(if o.benign {
        attack.benign()
    } else {
        attack.actions()
    });
    let banner = format!(
        "guard on the simulated domain (not Xen) over {name}: Linux {}; the scripted guest {}",
        linux.info().release,
        if o.benign {
            "does only benign things"
        } else {
            "clears SMEP/SMAP, rewrites MSR_LSTAR and patches kernel text"
        }
    );
    gopts.vm = Vm {
        name: Some("simulated".into()),
        ..Vm::default()
    };
    gopts.run = RunOptions {
        poll: Duration::ZERO,
        max_events: None,
        max_idle_polls: Some(1),
    };
    guard(&sim, &linux, set, sinks, gopts, None, &banner).map_err(named)?;
    let outcome = attack.outcome(&sim);
    eprintln!("xenvmi: guard: {outcome}");
    if !outcome.released_cleanly {
        return Err(format!(
            "{name}: the simulated domain was not released cleanly ({outcome})"
        ));
    }
    Ok(())
}

#[cfg(feature = "xen")]
fn on_xen(
    domain: &str,
    o: &Options,
    set: PolicySet,
    sinks: Sinks,
    mut gopts: GuardOptions,
) -> Result<(), String> {
    let dom = crate::xen::open(domain)?;
    let named = |e: xenvmi::Error| format!("domain {domain}: {e}");
    crate::guest::refuse_windows_domain(
        domain,
        &dom,
        "`guard` (its policies protect a Linux kernel)",
    )?;
    let (linux, _) = Linux::discover_paused(&dom, ProfileSource::InGuest).map_err(named)?;
    let banner = format!(
        "guard on Xen domain {domain}: Linux {} (Ctrl-C to stop)",
        linux.info().release
    );
    gopts.vm = Vm {
        name: Some(domain.to_owned()).filter(|d| d.parse::<u32>().is_err()),
        uuid: None,
        domid: Some(u32::from(dom.domid().0)),
    };
    guard(&dom, &linux, set, sinks, gopts, o.seconds, &banner).map_err(named)?;
    Ok(())
}

#[cfg(not(feature = "xen"))]
fn on_xen(
    domain: &str,
    _o: &Options,
    _set: PolicySet,
    _sinks: Sinks,
    _gopts: GuardOptions,
) -> Result<(), String> {
    Err(crate::xen::unavailable(domain))
}
