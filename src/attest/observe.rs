//! What a Linux guest runs, as a manifest states it: the kernel build, each user process's
//! executable with its first code page, each module.

use super::manifest::{CodePage, KernelBuild, Sha256};
use crate::addr::{Gva, PAGE_SIZE};
use crate::backend::PhysicalMemory;
use crate::error::{Error, Result};
use crate::mem::{AddressSpace, GuestMemory, Walk};
use crate::os::linux::maps::Backing;
use crate::os::linux::{Linux, MAX_BTF};
use crate::os::{Module, Process};

/// One user process and what it runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessSeen {
    /// The process.
    pub process: Process,
    /// Its executable's path (`/proc/PID/exe`), or why it could not be read.
    pub exe: std::result::Result<String, String>,
    /// Its executable's first code page ([`CodePage`]), `Ok(None)` when it has no executable
    /// mapping of that file, or why its memory map could not be read.
    pub code_page: std::result::Result<Option<CodePage>, String>,
}

/// A guest as a manifest sees it, at one instant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observation {
    /// The kernel build.
    pub kernel: KernelBuild,
    /// User processes (kernel threads have no executable), in task-list order.
    pub processes: Vec<ProcessSeen>,
    /// Modules, in list order.
    pub modules: Vec<Module>,
    /// Elements of the task or module walk that could not be read (the walk went on).
    pub warnings: Vec<String>,
}

/// Look at the guest once: its kernel build, its user processes with their executables and
/// code pages, its modules. No walk's error ends the observation: an element that could not
/// be read is in [`Observation::warnings`], a part of a process in its [`ProcessSeen`].
pub fn observe<B: PhysicalMemory>(mem: &GuestMemory<B>, linux: &Linux) -> Observation {
    let mut warnings = Vec::new();
    let mut processes = Vec::new();
    for p in linux.processes(mem) {
        match p {
            Ok(p) if p.kernel_thread || p.dtb.is_none() => {}
            Ok(p) => processes.push(process_seen(mem, linux, p)),
            Err(e) => warnings.push(format!("task list: {e}")),
        }
    }
    let mut modules = Vec::new();
    for m in linux.modules(mem) {
        match m {
            Ok(m) => modules.push(m),
            Err(e) => warnings.push(format!("module list: {e}")),
        }
    }
    Observation {
        kernel: kernel_build(mem, linux),
        processes,
        modules,
        warnings,
    }
}

/// The kernel build: release, banner, and the SHA-256 of the kernel's BTF when it has a
/// `.BTF` section (`__start_BTF..__stop_BTF`, at most [`MAX_BTF`] bytes) that can be read.
pub fn kernel_build<B: PhysicalMemory>(mem: &GuestMemory<B>, linux: &Linux) -> KernelBuild {
    let k = linux.info();
    let btf = || -> Option<Sha256> {
        let start = linux.symbol("__start_BTF")?;
        let stop = linux.symbol("__stop_BTF")?;
        let len = stop
            .0
            .checked_sub(start.0)
            .filter(|&l| l > 0 && l <= MAX_BTF)?;
        let bytes = mem.read_bytes(k.kernel_space, start, len as usize).ok()?;
        Some(Sha256::of(&bytes))
    };
    KernelBuild {
        release: k.release.clone(),
        banner: k.banner.trim_end().to_owned(),
        btf_sha256: btf(),
    }
}

/// One process's executable and code page.
pub fn process_seen<B: PhysicalMemory>(
    mem: &GuestMemory<B>,
    linux: &Linux,
    process: Process,
) -> ProcessSeen {
    let exe = match linux.executable(mem, &process) {
        Ok(Some(path)) => Ok(path),
        Ok(None) => Err("the process has no executable (mm->exe_file is NULL)".to_owned()),
        Err(e) => Err(e.to_string()),
    };
    let code_page = match &exe {
        Ok(path) => code_page(mem, linux, &process, path).map_err(|e| e.to_string()),
        Err(why) => Err(format!("no executable: {why}")),
    };
    ProcessSeen {
        process,
        exe,
        code_page,
    }
}

/// The first page of the lowest executable area of `p`'s memory map backed by the file
/// `exe`, hashed when it is present in `p`'s page tables; `None` when no such area exists.
///
/// # Errors
/// The memory map cannot be read; the page tables are outside guest memory; a present page
/// cannot be read.
pub fn code_page<B: PhysicalMemory>(
    mem: &GuestMemory<B>,
    linux: &Linux,
    p: &Process,
    exe: &str,
) -> Result<Option<CodePage>> {
    let Some(root) = p.dtb else {
        return Ok(None);
    };
    let maps = linux.process_maps(mem, p)?;
    let Some(vma) = maps
        .iter()
        .filter(|v| v.exec && matches!(&v.backing, Backing::File(f) if f == exe))
        .min_by_key(|v| v.start)
    else {
        return Ok(None);
    };
    let space = AddressSpace {
        root,
        mode: linux.info().kernel_space.mode,
    };
    let va = Gva(vma.start);
    let sha256 = match mem.translate(space, va)? {
        Walk::NotPresent { .. } => None,
        Walk::Mapped(_) => {
            let mut page = vec![0u8; PAGE_SIZE as usize];
            mem.read(space, va, &mut page).map_err(|e| match e {
                Error::PhysicalUnmapped { .. } => Error::malformed(
                    "memory map",
                    format!("process {}", p.pid),
                    format!("code page {va} maps memory the image does not hold: {e}"),
                ),
                e => e,
            })?;
            Some(Sha256::of(&page))
        }
    };
    Ok(Some(CodePage {
        file_offset: vma.offset,
        sha256,
    }))
}
