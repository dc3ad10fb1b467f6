//! `trace`: what a live Linux guest does, as it does it, over `xenvmi::trace::Tracing`
//! (`docs/tracing.md`): on a Xen domain, or on the simulated domain over an image.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use xenvmi::backend::sim::SimDomain;
use xenvmi::backend::snapshot::Snapshot;
use xenvmi::event::hooks::Placement;
use xenvmi::event::session::{RunOptions, SessionBackend};
use xenvmi::os::linux::{Linux, ProfileSource};
use xenvmi::trace::{simulated_calls, Probe, TraceFilter, TraceOptions, Tracing};

/// The subcommand's options, as parsed.
pub struct Options {
    /// A Xen domain, or
    pub domain: Option<String>,
    /// the simulated domain over this image (`Some(None)`: the bundled snapshot).
    pub simulate: Option<Option<PathBuf>>,
    pub procs: bool,
    pub modules: bool,
    /// `Some("")`: every system call; `Some("a,b")`: those.
    pub syscalls: Option<String>,
    pub files: bool,
    pub threads: bool,
    pub pids: Vec<u64>,
    pub comms: Vec<String>,
    pub json: bool,
    pub in_place: bool,
    #[cfg_attr(not(feature = "xen"), allow(dead_code))]
    pub seconds: Option<u64>,
}

impl Options {
    /// The library's options: the probes asked for (process and module events by default).
    fn trace(&self) -> TraceOptions {
        let mut o = TraceOptions::default();
        let mut probes = Vec::new();
        if self.procs {
            probes.extend([Probe::ProcessStart, Probe::Exit]);
        }
        if self.threads {
            o.threads = true;
            probes.push(Probe::Exit);
        }
        if self.modules {
            probes.extend([Probe::ModuleLoad, Probe::ModuleUnload]);
        }
        if self.files {
            probes.push(Probe::FileOpen);
        }
        let mut filter = TraceFilter::new();
        if let Some(list) = &self.syscalls {
            probes.push(Probe::Syscall);
            if !list.is_empty() {
                filter = filter.with_syscalls(list.split(','));
            }
        }
        filter = filter
            .with_pids(self.pids.iter().copied())
            .with_comms(self.comms.iter().cloned());
        if !probes.is_empty() {
            probes.sort();
            probes.dedup();
            o.probes = probes;
        }
        o.filter = filter;
        if self.in_place {
            o.placement = Placement::InPlace;
        }
        o
    }
}

pub fn run(o: &Options) -> Result<(), String> {
    match (&o.domain, &o.simulate) {
        (Some(d), _) => on_xen(d, o),
        (None, Some(image)) => on_sim(image.as_deref(), o),
        (None, None) => Err("give --domain NAME|ID, or --simulate [IMAGE]".into()),
    }
}

/// Place, run until stopped, tear down; events on stdout, notes and the summary on stderr.
fn trace<B: SessionBackend>(
    backend: &B,
    linux: &Linux,
    o: &Options,
    until: Option<Instant>,
    opts: &RunOptions,
) -> Result<(), xenvmi::Error> {
    let tracing = Tracing::start(backend, linux, &o.trace())?;
    tracing.stop_handle().stop_on_signals()?;
    for n in tracing.not_placed() {
        eprintln!("xenvmi: trace: no {} events: {}", n.probe.name(), n.reason);
    }
    let placed: Vec<&str> = tracing.placed().iter().map(|p| p.name()).collect();
    eprintln!("xenvmi: trace: tracing {}", placed.join(" "));
    let summary = tracing.run_to(
        opts,
        until,
        o.json,
        &mut std::io::stdout().lock(),
        |vcpu, e| eprintln!("xenvmi: trace: an event on vCPU {vcpu} could not be read: {e}"),
    )?;
    eprintln!("xenvmi: trace: {summary}");
    Ok(())
}

fn on_sim(image: Option<&std::path::Path>, o: &Options) -> Result<(), String> {
    let path = crate::fixture::image_path(image)?;
    let name = path.display().to_string();
    // The library's error names the file.
    let snap = Snapshot::open(&path).map_err(|e| e.to_string())?;
    let regs = snap.all_registers().to_vec();
    if regs.is_empty() {
        return Err(format!(
            "{name}: the image records no vCPU registers, which the simulated domain needs \
             (a QEMU ELF core has them)"
        ));
    }
    crate::guest::refuse_windows(
        &name,
        &snap,
        "`trace` (the simulated domain runs a Linux kernel)",
    )?;
    let sim = SimDomain::new(snap, &regs);
    let (linux, _) =
        Linux::discover_paused(&sim, ProfileSource::InGuest).map_err(|e| format!("{name}: {e}"))?;
    eprintln!(
        "xenvmi: trace on the simulated domain (not Xen) over {name}: Linux {}",
        linux.info().release
    );
    sim.script(simulated_calls(&linux, &o.trace().probes));
    let opts = RunOptions {
        poll: Duration::ZERO,
        max_events: None,
        max_idle_polls: Some(1),
    };
    trace(&sim, &linux, o, None, &opts).map_err(|e| format!("{name}: {e}"))?;
    let st = sim.state();
    let left = st.paused_vcpus().len() + st.monitors().len() + st.extra_views().len();
    if left != 0 {
        return Err(format!(
            "{name}: the simulated domain was left with {} paused vCPU(s), {} monitor(s), {} \
             view(s)",
            st.paused_vcpus().len(),
            st.monitors().len(),
            st.extra_views().len()
        ));
    }
    Ok(())
}

#[cfg(feature = "xen")]
fn on_xen(domain: &str, o: &Options) -> Result<(), String> {
    let dom = crate::xen::open(domain)?;
    let named = |e: xenvmi::Error| format!("domain {domain}: {e}");
    crate::guest::refuse_windows_domain(domain, &dom, "`trace` (its events are a Linux kernel's)")?;
    let (linux, _) = Linux::discover_paused(&dom, ProfileSource::InGuest).map_err(named)?;
    eprintln!(
        "xenvmi: trace on Xen domain {domain}: Linux {} (Ctrl-C to stop)",
        linux.info().release
    );
    let until = o.seconds.map(|s| Instant::now() + Duration::from_secs(s));
    trace(&dom, &linux, o, until, &RunOptions::default()).map_err(named)
}

#[cfg(not(feature = "xen"))]
fn on_xen(domain: &str, _o: &Options) -> Result<(), String> {
    Err(crate::xen::unavailable(domain))
}
