//! `xenvmi`: the library's introspection as one command (`docs/cli.md`).
//!
//! ```text
//! xenvmi info      [IMAGE | --domain NAME|ID] [--json]
//! xenvmi ps        [IMAGE | --domain NAME|ID] [--json [--detail]]
//! xenvmi modules   [IMAGE | --domain NAME|ID] [--json]
//! xenvmi dump      (--domain NAME|ID [--pause] | IMAGE) OUT [--force] [--json]
//! xenvmi recover   --domain NAME|ID [--journal PATH] [--json]
//! xenvmi completions SHELL
//! xenvmi man
//! ```
//!
//! Exit status: 0 done, 1 error (one line on stderr naming the file or domain), 2 usage.
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

mod dump;
mod guest;
mod recover;
mod xen;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

const EXIT_STATUS: &str = "\
Exit status:
  0  done
  1  error: one line on stderr naming the image, file or domain
  2  usage error (unknown option, missing argument)";

/// Agentless introspection of Linux guests: from a memory image or a running Xen domain.
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
    /// A Volatility3 ISF profile (`.json` or `.json.xz`) instead of the guest's own BTF and
    /// kallsyms.
    #[arg(long, value_name = "ISF", conflicts_with = "btf")]
    profile: Option<PathBuf>,
    /// A BTF file (e.g. /sys/kernel/btf/vmlinux) instead of the guest's own; with --symbols.
    #[arg(long, value_name = "BTF", requires = "symbols")]
    btf: Option<PathBuf>,
    /// A kallsyms or System.map file; with --btf.
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
    /// The guest's OS, kernel release and banner, KASLR placement, the profile used, its
    /// vCPUs and who runs on each, and the image's format.
    #[command(after_help = EXIT_STATUS)]
    Info {
        #[command(flatten)]
        target: Target,
        /// One JSON object on stdout (docs/cli.md).
        #[arg(long)]
        json: bool,
    },
    /// The guest's processes (thread-group leaders), in the kernel's list order.
    #[command(after_help = EXIT_STATUS)]
    Ps {
        #[command(flatten)]
        target: Target,
        /// One JSON object on stdout: `processes`, as the pslist example prints them.
        #[arg(long)]
        json: bool,
        /// With --json: each process's argv, environment, exe, uids, threads, maps, files and
        /// sockets (docs/processes.md).
        #[arg(long, requires = "json")]
        detail: bool,
    },
    /// The guest's kernel modules, in list order.
    #[command(after_help = EXIT_STATUS)]
    Modules {
        #[command(flatten)]
        target: Target,
        /// One JSON object on stdout: `modules`.
        #[arg(long)]
        json: bool,
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
    /// A shell completion script on stdout.
    Completions {
        /// bash, elvish, fish, powershell or zsh.
        shell: clap_complete::Shell,
    },
    /// The manual page (roff) on stdout.
    Man,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = run(cli).and_then(|()| print(OUT.take().as_bytes()));
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line, whatever the error carried: safe for a terminal, newlines folded.
            let e = xenvmi::os::terminal_safe(&e.replace('\n', "; ")).into_owned();
            eprintln!("xenvmi: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Info { target, json } => guest::info(&target, json),
        Command::Ps {
            target,
            json,
            detail,
        } => guest::ps(&target, json, detail),
        Command::Modules { target, json } => guest::modules(&target, json),
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
    }
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
