//! `xenvmi`: the library's introspection as one command (`docs/cli.md`).
//!
//! ```text
//! xenvmi info      [IMAGE | --domain NAME|ID] [--json]
//! xenvmi ps        [IMAGE | --domain NAME|ID] [--json [--detail]]
//! xenvmi modules   [IMAGE | --domain NAME|ID] [--json] [--cross-view]
//! xenvmi dump      (--domain NAME|ID [--pause] | IMAGE) OUT [--force] [--json]
//! xenvmi recover   --domain NAME|ID [--journal PATH] [--json]
//! xenvmi trace     (--domain NAME|ID | --simulate [IMAGE]) [--procs] [--modules] [--syscalls[=LIST]]
//!                  [--files] [--threads] [--pid PID]... [--comm NAME]... [--json] [--in-place] [--seconds N]
//! xenvmi guard     (--domain NAME|ID | --simulate [IMAGE] [--benign]) [--policies SPEC]
//!                  [--remediation R] [--no-text | --text-pages N] [--no-rodata] [--gdt] [--host-view]
//!                  [--alerts-file FILE] [--syslog udp://HOST:PORT|tcp://HOST:PORT]...
//!                  [--capture-dir DIR] [--json] [--seconds N]
//! xenvmi attest learn   [IMAGE | --domain NAME|ID] --manifest FILE [--force] [--json]
//! xenvmi attest enforce [IMAGE | --domain NAME|ID] --manifest FILE [--syslog URL]... [--capture FILE] [--json]
//! xenvmi completions SHELL
//! xenvmi man
//! ```
//!
//! Exit status: 0 done, 1 error (one line on stderr naming the file or domain), 2 usage, 3
//! deviations found (`attest enforce`).
#![forbid(unsafe_code)]

#[path = "../../../tests/support/fixture.rs"]
mod fixture;

/// `println!` into the command's output, which `main` writes at the end (so a closed pipe is
/// one quiet error, not a panic).
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::fmt::Write as _;
        crate::OUT.with_borrow_mut(|o| {
            let _ = writeln!(o, $($arg)*);
        });
    }};
}

thread_local! {
    static OUT: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

mod attest;
mod dump;
mod guard;
mod guest;
mod recover;
mod sinks;
mod trace;
mod triage;
mod xen;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

const EXIT_STATUS: &str = "\
Exit status:
  0  done
  1  error: one line on stderr naming the image, file or domain
  2  usage error (unknown option, missing argument)
  3  attest enforce: the guest deviates from the manifest";

/// Agentless introspection of Linux and Windows guests: from a memory image or a running Xen
/// domain.
#[derive(Parser)]
#[command(name = "xenvmi", version, after_help = EXIT_STATUS)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// What to look at: an image, or a domain.
#[derive(clap::Args)]
struct Target {
    /// Memory image: raw, QEMU ELF core, LiME or Windows crash dump (detected from content;
    /// `.zst` is unpacked once); the bundled Linux 6.1 snapshot when neither IMAGE nor
    /// --domain is given.
    #[arg(value_name = "IMAGE", conflicts_with = "domain")]
    image: Option<PathBuf>,
    /// A running Xen domain, by name or id (needs the `xen` feature, dom0 and root).
    #[arg(long, value_name = "NAME|ID")]
    domain: Option<String>,
    /// Linux: a Volatility3 ISF profile (`.json` or `.json.xz`) instead of the guest's own
    /// BTF and kallsyms. Windows: the ntoskrnl profile, an ISF or PDB file, or a symbol-store
    /// or ISF directory searched by the kernel's PDB GUID and age (default:
    /// $XENVMI_WINDOWS_PROFILES, $XDG_DATA_HOME/xenvmi/windows or
    /// ~/.local/share/xenvmi/windows).
    #[arg(long, value_name = "PROFILE", conflicts_with = "btf")]
    profile: Option<PathBuf>,
    /// Linux only: a BTF file (e.g. /sys/kernel/btf/vmlinux) instead of the guest's own; with
    /// --symbols.
    #[arg(long, value_name = "BTF", requires = "symbols")]
    btf: Option<PathBuf>,
    /// Linux only: a kallsyms or System.map file; with --btf.
    #[arg(long, value_name = "KALLSYMS", requires = "btf")]
    symbols: Option<PathBuf>,
    /// Do the whole kernel discovery, without the kernel-build cache (by default kept in
    /// $XENVMI_CACHE_DIR, $XDG_CACHE_HOME/xenvmi or ~/.cache/xenvmi; XENVMI_CACHE=off also
    /// turns it off).
    #[arg(long)]
    no_cache: bool,
}

#[derive(Subcommand)]
enum Command {
    /// The guest's OS, kernel release and banner (Windows: build, PDB GUID and age), KASLR
    /// placement (Windows: kernel base), the profile used, its vCPUs (Windows: every
    /// processor from the kernel's records, a crash dump's crashing one) and who runs on
    /// each, and the image's format.
    #[command(after_help = EXIT_STATUS)]
    Info {
        #[command(flatten)]
        target: Target,
        /// One JSON object on stdout (docs/cli.md).
        #[arg(long)]
        json: bool,
    },
    /// The guest's processes in the kernel's list order (Linux thread-group leaders, Windows
    /// EPROCESSes).
    #[command(after_help = EXIT_STATUS)]
    Ps {
        #[command(flatten)]
        target: Target,
        /// One JSON object on stdout: `processes`, as the pslist example prints them.
        #[arg(long)]
        json: bool,
        /// With --json: each process's argv, environment, exe, uids, threads, maps, files and
        /// sockets (docs/processes.md). Linux only.
        #[arg(long, requires = "json")]
        detail: bool,
    },
    /// The guest's kernel modules (Windows: drivers, ntoskrnl first), in list order.
    #[command(after_help = EXIT_STATUS)]
    Modules {
        #[command(flatten)]
        target: Target,
        /// One JSON object on stdout: `modules`.
        #[arg(long)]
        json: bool,
        /// Also look for hidden modules: those in /sys/module (`module_kset`'s kobjects) that
        /// are missing from the module list (docs/cli.md). Linux only.
        #[arg(long)]
        cross_view: bool,
    },
    /// The whole guest (memory and every vCPU's registers) as an ELF core that xenvmi and
    /// Volatility3 read: from a Xen domain (live, or --pause), or an image rewritten.
    #[command(after_help = EXIT_STATUS)]
    Dump {
        /// A running Xen domain to capture, by name or id.
        #[arg(long, value_name = "NAME|ID")]
        domain: Option<String>,
        /// Hold the domain paused from its registers to the last byte (consistent).
        #[arg(long, requires = "domain")]
        pause: bool,
        /// IMAGE OUT, or OUT alone with --domain. The core is written to OUT.partial and
        /// renamed to OUT when complete.
        #[arg(value_name = "IMAGE|OUT", required = true, num_args = 1..=2)]
        paths: Vec<PathBuf>,
        /// Replace an existing OUT.
        #[arg(long)]
        force: bool,
        /// The summary as one JSON object on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Clean up after a monitor that was killed without tearing down, from its journal:
    /// monitors off, views and access rights restored, the ring answered and disabled.
    #[command(after_help = EXIT_STATUS)]
    Recover {
        /// The Xen domain the monitor was attached to, by name or id.
        #[arg(long, value_name = "NAME|ID", required = true)]
        domain: String,
        /// The journal (default: $XENVMI_JOURNAL_DIR or /run/xenvmi, then
        /// xen-domain-ID.journal).
        #[arg(long, value_name = "PATH")]
        journal: Option<PathBuf>,
        /// What was done as one JSON object on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Follow what a live Linux guest does, as it does it: programs started (with argv) and
    /// ended, modules loaded and unloaded, system calls with their arguments, files opened with
    /// their result; one line (or JSON object) per event on stdout, until Ctrl-C or --seconds.
    /// Process and module events by default. Breakpoints are removed at the end.
    #[command(after_help = EXIT_STATUS)]
    #[command(group = clap::ArgGroup::new("guest").required(true).args(["domain", "simulate"]))]
    Trace {
        /// A running Xen domain, by name or id (needs the `xen` feature, dom0 and root).
        #[arg(long, value_name = "NAME|ID")]
        domain: Option<String>,
        /// xenvmi's simulated domain (not Xen) over IMAGE, a QEMU ELF core (the bundled
        /// snapshot when no IMAGE is given): vCPU 0 calls each traced function once.
        #[arg(long, value_name = "IMAGE", num_args = 0..=1)]
        simulate: Option<Option<PathBuf>>,
        /// Process starts (with argv and executable) and process exits.
        #[arg(long)]
        procs: bool,
        /// Module loads and unloads.
        #[arg(long)]
        modules: bool,
        /// System calls with their arguments; =LIST (e.g. =openat,execve) traces only those,
        /// named as the guest's own table names them.
        #[arg(long, value_name = "LIST", num_args = 0..=1, require_equals = true, default_missing_value = "")]
        syscalls: Option<String>,
        /// File opens with their path, flags and result (descriptor or errno).
        #[arg(long)]
        files: bool,
        /// Thread exits too.
        #[arg(long)]
        threads: bool,
        /// Only this process (repeatable; decided before anything is read from the guest).
        #[arg(long = "pid", value_name = "PID")]
        pids: Vec<u64>,
        /// Only processes with this name (repeatable).
        #[arg(long = "comm", value_name = "NAME")]
        comms: Vec<String>,
        /// One JSON object per event (docs/tracing.md).
        #[arg(long)]
        json: bool,
        /// Write the breakpoints into the guest's pages instead of hidden copies in an altp2m
        /// view.
        #[arg(long)]
        in_place: bool,
        /// Stop after N seconds.
        #[arg(long, value_name = "N")]
        seconds: Option<u64>,
    },
    /// Protect a live Linux kernel with policies (docs/policies.md): CR0.WP, CR4.SMEP/SMAP/UMIP,
    /// the entry MSRs, the IDT, kernel text and read-only data, modprobe_path, core_pattern,
    /// hidden processes. Each violation is refused (or allowed) as its policy's remediation
    /// says and reported as an alert (docs/alerts.md): one line (or JSON object) on stdout,
    /// and to an alerts file and syslog collectors; until Ctrl-C or --seconds, then every
    /// monitor, protection and view removed. Policies, remediation and sinks are checked (and
    /// collectors connected) before anything is monitored.
    #[command(after_help = EXIT_STATUS)]
    #[command(group = clap::ArgGroup::new("guest").required(true).args(["domain", "simulate"]))]
    Guard {
        /// A running Xen domain, by name or id (needs the `xen` feature, dom0 and root).
        #[arg(long, value_name = "NAME|ID")]
        domain: Option<String>,
        /// xenvmi's simulated domain (not Xen) over IMAGE, a QEMU ELF core (the bundled
        /// snapshot when no IMAGE is given), whose scripted guest clears CR4.SMEP/SMAP, writes
        /// MSR_LSTAR and patches kernel text between benign actions
        /// (xenvmi::policy::simulate).
        #[arg(long, value_name = "IMAGE", num_args = 0..=1)]
        simulate: Option<Option<PathBuf>>,
        /// With --simulate: the scripted guest does only its benign actions (a clean run).
        #[arg(long, requires = "simulate", conflicts_with = "domain")]
        benign: bool,
        /// Which policies, each with its own remediation if wanted: `NAME[=REMEDIATION]`
        /// separated by `;`, e.g. "cr4=deny,pause,capture,resume; msr; kernel-text=allow".
        /// Names: cr0-wp, cr4, msr, descriptor-tables, kernel-text, modprobe-path,
        /// core-pattern, hidden-processes. Default: all of them.
        #[arg(long, value_name = "SPEC")]
        policies: Option<String>,
        /// The remediation of every policy the specification gives none: `deny` or `allow`,
        /// then any of `pause`, `capture`, `capture-live`, `resume` (default: deny).
        #[arg(long, value_name = "R")]
        remediation: Option<String>,
        /// Leave kernel text unprotected (the default policies without kernel-text).
        #[arg(long, conflicts_with_all = ["policies", "text_pages"])]
        no_text: bool,
        /// kernel-text: only the first N pages of kernel text.
        #[arg(long, value_name = "N")]
        text_pages: Option<u64>,
        /// kernel-text: not the kernel's read-only data (sys_call_table).
        #[arg(long)]
        no_rodata: bool,
        /// descriptor-tables: the GDT too.
        #[arg(long)]
        gdt: bool,
        /// Write-protect in the host p2m (view 0) instead of an altp2m view of its own.
        #[arg(long)]
        host_view: bool,
        /// Also append each alert to FILE, one JSON object per line.
        #[arg(long, value_name = "FILE")]
        alerts_file: Option<PathBuf>,
        /// Also send each alert to a syslog collector as RFC 5424 with a CEF payload:
        /// udp://HOST:PORT or tcp://HOST:PORT (repeatable; connected before monitoring).
        #[arg(long, value_name = "TARGET")]
        syslog: Vec<String>,
        /// Where a `capture` remediation writes its cores (an existing directory).
        #[arg(long, value_name = "DIR")]
        capture_dir: Option<PathBuf>,
        /// Alerts on stdout as JSON lines (docs/alerts.md) instead of one line of text each.
        #[arg(long)]
        json: bool,
        /// Stop after N seconds.
        #[arg(long, value_name = "N")]
        seconds: Option<u64>,
    },
    /// Desired state: learn a manifest of what the guest runs (kernel build, executables with
    /// their first code page, modules), or check the guest against one (docs/attest.md).
    #[command(after_help = EXIT_STATUS)]
    Attest {
        #[command(subcommand)]
        action: AttestAction,
    },
    /// A shell completion script on stdout.
    Completions {
        /// bash, elvish, fish, powershell or zsh.
        shell: clap_complete::Shell,
    },
    /// The manual page (roff) on stdout.
    Man,
}

/// `attest`'s two modes.
#[derive(Subcommand)]
enum AttestAction {
    /// Write a manifest from one look at the image or the (paused) domain.
    #[command(after_help = EXIT_STATUS)]
    Learn {
        #[command(flatten)]
        target: Target,
        /// The manifest to write (FILE.partial, then renamed).
        #[arg(long, value_name = "FILE", required = true)]
        manifest: PathBuf,
        /// Replace an existing FILE.
        #[arg(long)]
        force: bool,
        /// A summary as one JSON object on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Check one look at the image or the (paused) domain against a manifest: exit status 0
    /// attested, 3 deviations found.
    #[command(after_help = EXIT_STATUS)]
    Enforce {
        #[command(flatten)]
        target: Target,
        /// The manifest to check against.
        #[arg(long, value_name = "FILE", required = true)]
        manifest: PathBuf,
        /// The attestation as one JSON object on stdout (docs/attest.md).
        #[arg(long)]
        json: bool,
        /// Send one alert per deviation (docs/alerts.md) as RFC 5424 syslog with a CEF
        /// payload to `udp://HOST:PORT` or `tcp://HOST:PORT`; repeatable. Resolved (and on TCP
        /// connected) before the guest is looked at.
        #[arg(long, value_name = "URL")]
        syslog: Vec<String>,
        /// On deviation, capture the domain (paused, then resumed) to FILE, an ELF core
        /// (docs/capture.md); the alerts name it. Needs --domain; FILE must not exist.
        #[arg(long, value_name = "FILE")]
        capture: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = run(cli).and_then(|status| print(OUT.take().as_bytes()).map(|()| status));
    match r {
        Ok(status) => ExitCode::from(status),
        Err(e) => {
            // One line, whatever the error carried: safe for a terminal, newlines folded.
            let e = xenvmi::os::terminal_safe(&e.replace('\n', "; ")).into_owned();
            eprintln!("xenvmi: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Run the command; its exit status (0, or `attest::DEVIATED`).
fn run(cli: Cli) -> Result<u8, String> {
    let done = match cli.command {
        Command::Attest { action } => {
            return match action {
                AttestAction::Learn {
                    target,
                    manifest,
                    force,
                    json,
                } => attest::learn(&target, &manifest, force, json),
                AttestAction::Enforce {
                    target,
                    manifest,
                    json,
                    syslog,
                    capture,
                } => attest::enforce(&target, &manifest, &attest::React { syslog, capture }, json),
            }
        }
        Command::Info { target, json } => guest::info(&target, json),
        Command::Ps {
            target,
            json,
            detail,
        } => guest::ps(&target, json, detail),
        Command::Modules {
            target,
            json,
            cross_view,
        } => guest::modules(&target, json, cross_view),
        Command::Dump {
            domain,
            pause,
            paths,
            force,
            json,
        } => {
            let (image, out) = match (domain.is_some(), paths.as_slice()) {
                (true, [out]) => (None, out.clone()),
                (false, [image, out]) => (Some(image.clone()), out.clone()),
                (true, _) => usage("with --domain, give only OUT"),
                (false, _) => usage("give IMAGE OUT, or --domain NAME OUT"),
            };
            dump::run(&dump::Options {
                domain,
                image,
                out,
                pause,
                force,
                json,
            })
        }
        Command::Recover {
            domain,
            journal,
            json,
        } => recover::run(&domain, journal.as_deref(), json),
        Command::Trace {
            domain,
            simulate,
            procs,
            modules,
            syscalls,
            files,
            threads,
            pids,
            comms,
            json,
            in_place,
            seconds,
        } => trace::run(&trace::Options {
            domain,
            simulate,
            procs,
            modules,
            syscalls,
            files,
            threads,
            pids,
            comms,
            json,
            in_place,
            seconds,
        }),
        Command::Guard {
            domain,
            simulate,
            benign,
            policies,
            remediation,
            no_text,
            text_pages,
            no_rodata,
            gdt,
            host_view,
            alerts_file,
            syslog,
            capture_dir,
            json,
            seconds,
        } => guard::run(&guard::Options {
            domain,
            simulate,
            benign,
            policies,
            remediation,
            no_text,
            text_pages,
            no_rodata,
            gdt,
            host_view,
            alerts_file,
            syslog,
            capture_dir,
            json,
            seconds,
        }),
        Command::Completions { shell } => {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "xenvmi", &mut out);
            print(&out)
        }
        Command::Man => {
            let mut out = Vec::new();
            clap_mangen::Man::new(Cli::command())
                .render(&mut out)
                .map_err(|e| format!("man page: {e}"))?;
            print(&out)
        }
    };
    done.map(|()| 0)
}

/// A usage error: clap's message and exit status 2.
fn usage(msg: &str) -> ! {
    Cli::command()
        .error(clap::error::ErrorKind::WrongNumberOfValues, msg)
        .exit()
}

/// Write to stdout; a reader that went away (`xenvmi ps | head`) is not an error.
fn print(bytes: &[u8]) -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(format!("stdout: {e}")),
        _ => Ok(()),
    }
}
