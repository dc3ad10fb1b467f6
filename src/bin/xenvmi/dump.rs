//! `dump`: the whole guest as an ELF core, over `xenvmi::capture` (`docs/capture.md`).

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use xenvmi::backend::snapshot::{Format, Snapshot};
use xenvmi::backend::{PhysicalMemory, VcpuState, VmControl};
use xenvmi::capture::{capture_to_new_file, CaptureOptions, ProgressMeter};
use xenvmi::report;

pub struct Options {
    /// A Xen domain to capture, or
    pub domain: Option<String>,
    /// an image to rewrite (one of the two is set).
    pub image: Option<PathBuf>,
    pub out: PathBuf,
    #[cfg_attr(not(feature = "xen"), allow(dead_code))]
    pub pause: bool,
    pub force: bool,
    pub json: bool,
}

pub fn run(o: &Options) -> Result<(), String> {
    match (&o.domain, &o.image) {
        (Some(d), _) => on_xen(d, o),
        (None, Some(image)) => {
            let image = crate::fixture::image_path(Some(image))?;
            // The library's error names the file.
            let snap = Snapshot::open(&image).map_err(|e| e.to_string())?;
            if snap.format() == Format::WindowsCrashDump {
                // Its one CONTEXT is the crashing processor's, whichever that is, and its CR3
                // the header's DirectoryTableBase: a core would give them as vCPU 0's.
                return Err(format!(
                    "{}: a Windows crash dump is not rewritten as an ELF core: its one CONTEXT \
                     belongs to the processor that crashed, which a core would present as \
                     vCPU 0; read the dump itself (xenvmi info|ps|modules IMAGE)",
                    image.display()
                ));
            }
            write(&snap, None, o)
        }
        (None, None) => Err("give IMAGE OUT, or --domain NAME OUT".into()),
    }
}

#[cfg(feature = "xen")]
fn on_xen(domain: &str, o: &Options) -> Result<(), String> {
    let dom = crate::xen::open(domain)?;
    write(&dom, o.pause.then_some(&dom as &dyn VmControl), o)
        .map_err(|e| format!("domain {domain}: {e}"))
}

#[cfg(not(feature = "xen"))]
fn on_xen(domain: &str, _o: &Options) -> Result<(), String> {
    Err(crate::xen::unavailable(domain))
}

/// Capture to `OUT.partial`, rename to `OUT`, print the summary; progress on a terminal.
fn write<B: PhysicalMemory + VcpuState + ?Sized>(
    b: &B,
    pause: Option<&dyn VmControl>,
    o: &Options,
) -> Result<(), String> {
    let mut meter = ProgressMeter::new();
    let r = capture_to_new_file(
        b,
        &o.out,
        o.force,
        CaptureOptions {
            pause,
            progress: Some(&mut |p| meter.on_stderr(p)),
        },
    );
    meter.finish();
    let r = r.map_err(|e| match e {
        xenvmi::Error::Io { path, source } if source.kind() == ErrorKind::AlreadyExists => {
            exists(&path)
        }
        e => e.to_string(),
    })?;
    if o.json {
        outln!("{}", report::capture(&r, &o.out));
    } else {
        outln!("{}", report::capture_text(&r, &o.out));
    }
    Ok(())
}

fn exists(path: &Path) -> String {
    format!("{}: exists; give --force to replace it", path.display())
}
