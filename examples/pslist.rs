//! List the processes, modules and vCPU owners of a Linux or Windows guest from a memory image.
//!
//! ```text
//! cargo run --release --example pslist                       # the bundled Debian 6.1 snapshot
//! cargo run --release --example pslist -- [--json] IMAGE      # any Linux image, no profile needed
//! cargo run --release --example pslist -- --no-cache IMAGE     # do the whole discovery every run
//! cargo run --release --example pslist -- --profile debian.json.xz IMAGE
//! cargo run --release --example pslist -- --btf vmlinux.btf --symbols System.map IMAGE
//! cargo run --release --example pslist -- --profile PROFILE [--dlls] WINDOWS-IMAGE
//! cargo run --release --example pslist -- --windows PROFILE [--dlls] IMAGE
//! ```
//!
//! IMAGE is a raw dump, a QEMU `dump-guest-memory` ELF core, a LiME file or a Windows crash
//! dump; `.zst`-compressed images are unpacked once into `target/xenvmi-fixtures/`. The OS is
//! told apart by itself, cheaply, before either OS's search (`xenvmi::os::identify`: a crash
//! dump header, `MSR_LSTAR`, the Windows low stub, the Linux kernel image map or banner, a
//! self-referencing page table), so a Windows image never pays for the Linux search nor the
//! reverse; `--windows PROFILE` skips that and looks for Windows only.
//! Windows needs its ntoskrnl profile (PROFILE, given with `--profile` or `--windows`): one
//! Volatility3 ISF or Microsoft PDB (`ntkrnlmp.pdb`), or a directory searched by the kernel's
//! PDB GUID and age — a symbol store (`ntkrnlmp.pdb/<GUID><AGE>/ntkrnlmp.pdb`, as debuggers
//! cache it) or ISFs (`fixtures/windows-isf` has three builds). Without one, the default
//! place is used: `$XENVMI_WINDOWS_PROFILES`, else `$XDG_DATA_HOME/xenvmi/windows`, else
//! `~/.local/share/xenvmi/windows`. Nothing is downloaded.
//! A Windows image without registers (raw, LiME) has its kernel page-table root found from
//! memory alone (the low stub, the self-referencing entry, the System process:
//! `docs/windows.md`). For Windows, every processor is listed from the kernel's own records (`KiProcessorBlock`:
//! its current thread's process and saved CR3); a crash dump names the processor that crashed
//! (its `CONTEXT` is labelled with that index, never assumed 0), and a core's registers are
//! checked against the records, a disagreement printed (`DISAGREES`, JSON `agrees: false`).
//! A triage dump (DumpType 4, a minidump: no memory) gets a report of what it records instead:
//! the bug check and the driver it points into, the driver list, and with a profile the
//! crashing process, thread and processor (`docs/windows.md`, JSON `"triage"`).
//!
//! With no profile given, what discovery learns about the kernel build is kept in the build
//! cache (`~/.cache/xenvmi`, or `$XDG_CACHE_HOME/xenvmi`, or `$XENVMI_CACHE_DIR`) and the next
//! run on a guest of the same build reuses it after checking it against the guest
//! (`docs/performance.md`). For Windows, the walkers' part of the profile is kept there too,
//! keyed by the kernel's PDB GUID and age (and, for a profile file, made from that file as it
//! is), so the next run does not decompress or parse the ISF (or read the PDB). `--no-cache`
//! or `XENVMI_CACHE=off` turns both off.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use xenvmi::backend::snapshot::{Snapshot, TriageDump};
use xenvmi::mem::GuestMemory;
use xenvmi::os::linux::{BuildCache, Linux, ProfileSource, Scope};
use xenvmi::os::profile::cache::ProfileCache;
use xenvmi::os::terminal_safe as safe;
use xenvmi::os::windows::{Hints, Windows, WindowsProfile};
use xenvmi::os::{DiscoverOptions, Guest, Module, Process};
use xenvmi::progress::ProgressMeter;
use xenvmi::report::{self, VcpuOwner};

struct Args {
    json: bool,
    detail: bool,
    profile: Option<PathBuf>,
    btf: Option<PathBuf>,
    symbols: Option<PathBuf>,
    windows: Option<PathBuf>,
    dlls: bool,
    no_cache: bool,
    image: Option<PathBuf>,
}

const USAGE: &str = "usage: pslist [--json [--detail]] [--no-cache] [--dlls] [--profile PROFILE | --btf BTF --symbols KALLSYMS | --windows PROFILE] [IMAGE]
  PROFILE: a Linux ISF (.json[.xz]); for Windows an ISF or PDB file, or a symbol-store or ISF directory";

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        json: false,
        detail: false,
        profile: None,
        btf: None,
        symbols: None,
        windows: None,
        dlls: false,
        no_cache: false,
        image: None,
    };
    let mut it = std::env::args_os().skip(1);
    while let Some(arg) = it.next() {
        let s = arg.to_string_lossy().into_owned();
        let mut value = |name: &str| {
            it.next()
                .map(PathBuf::from)
                .ok_or_else(|| format!("{name} needs a file\n{USAGE}"))
        };
        match s.as_str() {
            "--json" => a.json = true,
            "--detail" => a.detail = true,
            "--profile" => a.profile = Some(value("--profile")?),
            "--btf" => a.btf = Some(value("--btf")?),
            "--symbols" => a.symbols = Some(value("--symbols")?),
            "--windows" => a.windows = Some(value("--windows")?),
            "--dlls" => a.dlls = true,
            "--no-cache" => a.no_cache = true,
            "-h" | "--help" => return Err(USAGE.into()),
            _ if s.starts_with('-') => return Err(format!("unknown option {s}\n{USAGE}")),
            _ if a.image.is_none() => a.image = Some(PathBuf::from(arg)),
            _ => return Err(format!("more than one image given\n{USAGE}")),
        }
    }
    if a.btf.is_some() != a.symbols.is_some() {
        return Err(format!("--btf and --symbols go together\n{USAGE}"));
    }
    if a.windows.is_some() && (a.profile.is_some() || a.btf.is_some()) {
        return Err(format!("--windows takes its own profile\n{USAGE}"));
    }
    if a.profile.is_some() && a.btf.is_some() {
        return Err(format!("give either --profile or --btf/--symbols\n{USAGE}"));
    }
    Ok(a)
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pslist: {}", safe(&e.to_string()));
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let args = parse_args()?;
    if args.detail && !args.json {
        return Err(format!("--detail goes with --json\n{USAGE}"));
    }
    let image = common::image_path(args.image.as_deref())?;
    let source = match (&args.profile, &args.btf, &args.symbols) {
        (Some(p), _, _) => ProfileSource::Isf(p.clone()),
        (None, Some(b), Some(s)) => ProfileSource::Files {
            btf: b.clone(),
            symbols: s.clone(),
        },
        _ => ProfileSource::InGuest,
    };

    // A triage dump holds no memory to walk: what it records is reported instead.
    if TriageDump::sniff(&image) {
        let profile = args
            .windows
            .as_deref()
            .or(args.profile.as_deref())
            .map(WindowsProfile::from_path)
            .or_else(|| xenvmi::os::default_windows_profiles().map(WindowsProfile::Directory));
        return triage::show(&image, profile, args.json);
    }
    let snap =
        Snapshot::open(&image).map_err(|e| format!("cannot read {}: {e}", image.display()))?;
    let format = snap.format();
    let regs = snap.all_registers().to_vec();
    // A crash dump header says where the process list is: no search needed.
    let hints = snap
        .windows_dump_info()
        .map(Hints::from)
        .unwrap_or_default();
    let bugcheck = snap
        .windows_dump_info()
        .map(|d| (d.bugcheck_code, d.kind.to_string()));
    let mem = GuestMemory::new(snap);
    // What discovery learns is kept per kernel build (Linux) or PDB GUID and age (Windows).
    let build_cache = BuildCache::from_env();
    let profile_cache = if args.no_cache {
        ProfileCache::in_memory()
    } else {
        ProfileCache::from_env()
    };
    // --detail reads structures beyond the walkers' offsets: it needs every type.
    let scope = if args.detail {
        Scope::Full
    } else {
        Scope::Walks
    };
    // A search of physical memory (no registers) shows its progress on a terminal's stderr.
    let mut meter = ProgressMeter::new();
    let mut progress = |p| meter.on_stderr(p);
    let guest = match &args.windows {
        // --windows: Windows only, no identification.
        Some(p) => Windows::discover_cached(
            &mem,
            &regs,
            WindowsProfile::from_path(p),
            &hints,
            &profile_cache,
        )
        .map(Guest::Windows),
        None => {
            let options = DiscoverOptions {
                linux: source,
                build_cache: (!args.no_cache).then_some((&build_cache, scope)),
                windows: args.profile.as_deref().map(WindowsProfile::from_path),
                hints,
                profile_cache: Some(&profile_cache),
            };
            xenvmi::os::discover_observed(&mem, &regs, options, &mut progress)
        }
    };
    meter.finish();
    let guest = guest.map_err(|e| match e {
        xenvmi::Error::Config { .. } => format!(
            "{}: {e}\n(pslist: give it with --profile PROFILE, or --windows PROFILE)",
            image.display()
        ),
        e => format!("{}: {e}", image.display()),
    })?;
    let linux = match guest {
        Guest::Linux(l) => l,
        Guest::Windows(w) => {
            for why in profile_cache.rejections() {
                eprintln!(
                    "pslist: profile cache entry rejected, profile parsed again: {}",
                    safe(&why)
                );
            }
            let run = windows::Run {
                image: &image,
                format,
                regs: &regs,
                bugcheck,
                json: args.json,
                dlls: args.dlls,
            };
            return windows::show(&w, &mem, run);
        }
    };
    let mut processes = Vec::new();
    let mut errors = Vec::new();
    for p in linux.processes(&mem) {
        match p {
            Ok(p) => processes.push(p),
            Err(e) => errors.push(e.to_string()),
        }
    }
    let mut modules = Vec::new();
    for m in linux.modules(&mem) {
        match m {
            Ok(m) => modules.push(m),
            Err(e) => errors.push(e.to_string()),
        }
    }
    let vcpus = report::vcpu_owners(&linux, &processes, &regs);

    if args.json {
        let detail = args.detail.then(|| {
            processes
                .iter()
                .map(|p| linux.process_detail(&mem, p))
                .collect::<Vec<_>>()
        });
        let out = report::linux(
            linux.info(),
            &processes,
            detail.as_deref(),
            &modules,
            &vcpus,
        );
        println!("{out}");
    } else {
        print_table(&image, format, &linux, &processes, &modules, &vcpus);
    }
    for e in &errors {
        eprintln!("pslist: warning: {}", safe(&e.to_string()));
    }
    Ok(())
}

fn print_table(
    image: &std::path::Path,
    format: xenvmi::backend::snapshot::Format,
    linux: &Linux,
    processes: &[Process],
    modules: &[Module],
    vcpus: &[VcpuOwner<'_>],
) {
    let k = linux.info();
    println!("image      {} ({format})", image.display());
    println!("kernel     {}", safe(&k.release));
    println!("banner     {}", safe(k.banner.trim_end()));
    println!(
        "KASLR      _text {} -> pa {}  offset {:#x}  phys_base {:#x}",
        k.text_va, k.text_pa, k.kaslr_offset, k.phys_base
    );
    println!(
        "memory     page_offset_base {}  {}-level paging  kernel CR3 {}",
        k.page_offset_base,
        k.paging.levels(),
        k.kernel_space.root
    );
    println!("found by   {}", k.located_by);
    println!(
        "profile    symbols: {}; types: {}",
        k.symbol_source, k.type_source
    );
    println!();
    println!("{} processes (tree by parent):", processes.len());
    println!(
        "{:>7} {:>7} {:>7}  {:<5} {:>12}  NAME",
        "PID", "TGID", "PPID", "KIND", "DTB"
    );
    let mut children: BTreeMap<u64, Vec<&Process>> = BTreeMap::new();
    for p in processes {
        children.entry(p.ppid).or_default().push(p);
    }
    let pids: std::collections::HashSet<u64> = processes.iter().map(|p| p.pid).collect();
    let mut printed = std::collections::HashSet::new();
    fn show<'a>(
        p: &'a Process,
        depth: usize,
        children: &BTreeMap<u64, Vec<&'a Process>>,
        printed: &mut std::collections::HashSet<u64>,
    ) {
        if !printed.insert(p.pid) || depth > 64 {
            return;
        }
        println!(
            "{:>7} {:>7} {:>7}  {:<5} {:>12}  {}{}",
            p.pid,
            p.tgid,
            p.ppid,
            if p.kernel_thread { "kthr" } else { "user" },
            p.dtb.map(|d| d.to_string()).unwrap_or_else(|| "-".into()),
            "  ".repeat(depth),
            safe(&p.name)
        );
        for c in children.get(&p.pid).into_iter().flatten() {
            show(c, depth + 1, children, printed);
        }
    }
    for p in processes {
        if !pids.contains(&p.ppid) {
            show(p, 0, &children, &mut printed);
        }
    }
    for p in processes {
        show(p, 0, &children, &mut printed);
    }
    println!();
    println!("{} modules (list order):", modules.len());
    println!("{:<24} {:>18} {:>8}", "NAME", "BASE", "SIZE");
    for m in modules {
        println!("{:<24} {:>18} {:>8}", safe(&m.name), m.base, m.size);
    }
    println!();
    println!("vCPUs:");
    for VcpuOwner {
        index: i,
        cr3,
        owner,
        kernel,
    } in vcpus
    {
        let who = match (owner, kernel) {
            (Some(p), _) => format!("pid {} ({})", p.pid, safe(&p.name)),
            (None, true) => "kernel page tables (idle/swapper)".into(),
            (None, false) => "no process owns this CR3".into(),
        };
        println!("  vCPU {i}  CR3 {cr3:#x}  -> {who}");
    }
}

/// A Windows triage dump: its header, bug check, driver list and, with a profile, the
/// crashing process (`xenvmi::os::windows::triage`).
mod triage {
    use std::path::Path;

    use xenvmi::backend::snapshot::TriageDump;
    use xenvmi::os::terminal_safe as safe;
    use xenvmi::os::windows::triage::crashing_process;
    use xenvmi::os::windows::WindowsProfile;

    pub fn show(image: &Path, profile: Option<WindowsProfile>, json: bool) -> Result<(), String> {
        let dump = TriageDump::open(image).map_err(|e| e.to_string())?;
        let reading = match &profile {
            Some(p) => crashing_process(&dump, p).map_err(|e| e.to_string()),
            None => Err("no Windows profile (give one with --profile, or put it in the default place) to read the process copy with".to_owned()),
        };
        if json {
            let mut out = serde_json::json!({
                "image": image.display().to_string(),
                "format": "Windows triage dump",
                "os": "windows",
            });
            out["triage"] =
                xenvmi::report::windows_triage(&dump, reading.as_ref().map_err(|e| e.as_str()));
            println!("{out}");
            return Ok(());
        }
        print!(
            "{}",
            xenvmi::report::windows_triage_text(
                &image.display().to_string(),
                &dump,
                reading.as_ref().map_err(|e| e.as_str())
            )
        );
        for e in dump.drivers.iter().filter_map(|d| d.as_ref().err()) {
            eprintln!("pslist: {}: {}", image.display(), safe(e));
        }
        if dump.drivers_truncated {
            eprintln!(
                "pslist: {}: DriverCount is more than {}: the list was cut",
                image.display(),
                xenvmi::backend::snapshot::MAX_TRIAGE_DRIVERS
            );
        }
        Ok(())
    }
}

mod windows {
    use std::path::Path;

    use xenvmi::backend::snapshot::{Format, Snapshot};
    use xenvmi::mem::GuestMemory;
    use xenvmi::os::terminal_safe as safe;
    use xenvmi::os::windows::Windows;
    use xenvmi::report;
    use xenvmi::Registers;

    /// What the output needs besides the kernel and the memory.
    pub struct Run<'a> {
        pub image: &'a Path,
        pub format: Format,
        pub regs: &'a [Registers],
        pub bugcheck: Option<(u32, String)>,
        pub json: bool,
        pub dlls: bool,
    }

    pub fn show(w: &Windows, mem: &GuestMemory<Snapshot>, run: Run<'_>) -> Result<(), String> {
        let Run {
            image,
            format,
            regs,
            bugcheck,
            json,
            dlls,
        } = run;
        let mut errors = Vec::new();
        let mut processes = Vec::new();
        for p in w.processes(mem) {
            match p {
                Ok(p) => processes.push(p),
                Err(e) => errors.push(e.to_string()),
            }
        }
        let mut drivers = Vec::new();
        for m in w.modules(mem) {
            match m {
                Ok(m) => drivers.push(m),
                Err(e) => errors.push(e.to_string()),
            }
        }
        let mut process_dlls = Vec::new();
        if dlls {
            for p in processes.iter().filter(|p| !p.kernel_thread) {
                let mut list = Vec::new();
                for m in w.process_modules(mem, p) {
                    match m {
                        Ok(m) => list.push(m),
                        Err(e) => errors.push(format!("pid {}: {e}", p.pid)),
                    }
                }
                process_dlls.push((p.pid, list));
            }
        }
        // Every processor from the kernel's own records. A crash dump's one CONTEXT belongs
        // to the processor that crashed (found, never assumed 0); a core's registers are
        // checked against the records.
        let is_dump = format == xenvmi::backend::snapshot::Format::WindowsCrashDump;
        let view = w.processor_view(mem, regs, is_dump);
        errors.extend(view.errors.iter().cloned());
        let (cpus, crashed) = (&view.processors, &view.crashed);
        // The registers' vCPUs: a dump's one CONTEXT is labelled with the crashing
        // processor's index (None when it could not be found).
        let owners = report::windows_vcpu_owners(w, &processes, regs, &view);
        let info = w.info();
        let pdb = report::windows_pdb(info);
        if json {
            let out = report::windows(info, &processes, &drivers, &process_dlls, &owners, &view);
            println!("{out}");
        } else {
            println!("image      {} ({format})", image.display());
            if let Some((code, kind)) = bugcheck {
                println!("dump       {kind}, bugcheck {code:#x}");
            }
            println!(
                "kernel     ntoskrnl.exe at {} (SizeOfImage {:#x}), build {}",
                info.kernel_base,
                info.size_of_image,
                info.build
                    .map(|b| b.to_string())
                    .unwrap_or_else(|| "?".into())
            );
            println!(
                "pdb        {}",
                safe(pdb.as_deref().unwrap_or("(no CodeView record)"))
            );
            println!("profile    {}", info.profile);
            println!(
                "found by   {:?} in the page tables from the {}; kernel DTB {}",
                info.found_by, info.root_source, info.kernel_space.root
            );
            for r in &info.rejected_roots {
                println!("rejected   page-table root {}", safe(r));
            }
            println!();
            println!("{} processes (list order):", processes.len());
            print!("{}", xenvmi::report::windows_processes_text(&processes));
            println!();
            println!("{} drivers (load order):", drivers.len());
            print!("{}", xenvmi::report::windows_drivers_text(&drivers));
            for (pid, list) in &process_dlls {
                println!();
                println!("pid {pid}: {} modules", list.len());
                for m in list {
                    println!("  {:<40} {:>18} {:>10}", safe(&m.name), m.base, m.size);
                }
            }
            println!();
            if let Some(c) = &crashed {
                match c.index() {
                    Some(i) => println!("crashed    on processor {i}: {}", c.explanation()),
                    None => println!(
                        "crashed    on an unknown processor: {}",
                        safe(&c.explanation())
                    ),
                }
            }
            if let Some(c) = &cpus {
                println!(
                    "processors (kernel records, KiProcessorBlock; KeNumberProcessors {}):",
                    c.declared
                );
                for cpu in c.cpus.iter() {
                    let Ok(cpu) = cpu else { continue };
                    let who = match &cpu.owner {
                        Some(p) => format!("pid {} ({})", p.pid, safe(&p.name)),
                        None => format!("EPROCESS {} unreadable", cpu.process),
                    };
                    let mark = if crashed.as_ref().and_then(|c| c.index()) == Some(cpu.index) {
                        "  [crashed]"
                    } else {
                        ""
                    };
                    println!(
                        "  CPU {:<3} KPRCB {}  thread {}  -> {who}  saved CR3 {:#x}{mark}",
                        cpu.index, cpu.prcb, cpu.thread, cpu.saved_cr3
                    );
                    if let Some(r) = cpu.registers.as_ref().filter(|r| !r.agrees) {
                        println!(
                            "           DISAGREES with the registers: {}",
                            safe(&r.detail)
                        );
                    }
                }
            }
            println!("vCPUs (registers):");
            for report::WindowsVcpu {
                index: i,
                cr3,
                owner,
            } in &owners
            {
                let who = owner
                    .map(|p| format!("pid {} ({})", p.pid, safe(&p.name)))
                    .unwrap_or_else(|| "no process owns this CR3".into());
                let label = match (i, is_dump) {
                    (Some(i), true) => format!("CONTEXT of processor {i}"),
                    (None, true) => "CONTEXT of an unknown processor".into(),
                    (Some(i), false) => format!("vCPU {i}"),
                    (None, false) => "vCPU ?".into(),
                };
                // A dump's CONTEXT has no CR3: it is the header's DirectoryTableBase.
                let from = if is_dump { " (DirectoryTableBase)" } else { "" };
                println!("  {label}  CR3 {cr3:#x}{from}  -> {who}");
            }
        }
        for e in &errors {
            eprintln!("pslist: warning: {}", safe(&e.to_string()));
        }
        Ok(())
    }
}
