//! Operating systems found in guest memory: one OS-neutral handle, walks with callbacks.

use std::ffi::{c_char, c_void};

use super::error::*;
use super::handles::{arg_handle, register, unregister, Handle};
use super::memory::xvmi_memory;
use super::types::{xvmi_module, xvmi_process};
use crate::addr::{Gpa, Gva};
use crate::error::Error;
use crate::os::linux::{Linux, ProfileSource};
use crate::os::windows::{Hints, Windows, WindowsProfile};
use crate::os::{discover, DiscoverOptions, Guest, GuestOs, Module, OsKind, Process};
use crate::regs::PagingMode;

/// What an [`xvmi_os`] holds: the kernel, whichever OS, as the Rust API's [`Guest`], and
/// the physical address of its image.
pub(crate) struct Os {
    pub(crate) guest: Guest,
    /// Physical address of the kernel image, translated at discovery (0 if unmapped).
    pub(crate) base_pa: u64,
}

impl Os {
    /// The Linux kernel, if the handle holds one.
    pub(crate) fn linux(&self) -> Option<&Linux> {
        self.guest.as_linux()
    }
}

/// A guest operating system found in memory (Linux or Windows), ready to walk. It
/// holds no reference to the memory handle it was discovered on: pass a memory handle of the
/// same guest to each call (the same one, or another on the same domain or image).
pub struct xvmi_os {
    pub(crate) os: std::sync::Arc<Os>,
}

/// [`xvmi_os_info::kind`]: a Linux kernel.
pub const XVMI_OS_LINUX: u32 = 1;
/// [`xvmi_os_info::kind`]: a Windows (x64) kernel.
pub const XVMI_OS_WINDOWS: u32 = 2;

/// [`xvmi_process_callback`] / [`xvmi_module_callback`] return value: go on with the walk.
pub const XVMI_WALK_CONTINUE: i32 = 0;
/// [`xvmi_process_callback`] / [`xvmi_module_callback`] return value: stop the walk (any value
/// other than 0 stops it; the walk then returns [`XVMI_OK`]).
pub const XVMI_WALK_STOP: i32 = 1;

/// Called once per process of a walk, in list order. `status` is [`XVMI_OK`] and `process`
/// points at the process (valid only during the call); or, for an element that could not be
/// read (one unreadable `task_struct`, the walk goes on), `status` is its error code,
/// `process` is NULL and [`xvmi_last_error`] has the message. Return [`XVMI_WALK_CONTINUE`]
/// (0) to go on, anything else to stop.
pub type xvmi_process_callback = Option<
    unsafe extern "C" fn(
        userdata: *mut c_void,
        process: *const xvmi_process,
        status: xvmi_result,
    ) -> i32,
>;

/// Called once per module of a walk; as [`xvmi_process_callback`].
pub type xvmi_module_callback = Option<
    unsafe extern "C" fn(
        userdata: *mut c_void,
        module: *const xvmi_module,
        status: xvmi_result,
    ) -> i32,
>;

/// What was found about the kernel. Fields that do not apply to the OS are 0.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct xvmi_os_info {
    /// `XVMI_OS_LINUX` or `XVMI_OS_WINDOWS`.
    pub kind: u32,
    /// Paging levels the kernel uses (4, or 5 with LA57).
    pub paging_levels: u32,
    /// KASLR virtual offset (Linux: `_text - 0xffffffff81000000`; 0 on Windows, whose
    /// kernel has no fixed link address).
    pub kaslr_offset: u64,
    /// Run-time virtual address of the kernel image (Linux `_text`, Windows ntoskrnl's image
    /// base).
    pub kernel_base: u64,
    /// Guest-physical address of the kernel image (0 if its first page is not mapped).
    pub kernel_base_pa: u64,
    /// Linux `phys_base` (may wrap modulo 2^64).
    pub phys_base: u64,
    /// Start of the direct map of physical memory (Linux `page_offset_base`).
    pub page_offset_base: u64,
    /// The kernel's own page-table root, usable as a `cr3` argument (Linux `init_top_pgt`,
    /// Windows the System process's `DirectoryTableBase`).
    pub kernel_cr3: u64,
    /// Size of the kernel image (Windows `SizeOfImage`).
    pub image_size: u64,
    /// Windows build number (`NtBuildNumber & 0xffff`: 7601, 19041, 22000, ...), when readable.
    pub build: u32,
}

fn levels(m: PagingMode) -> u32 {
    match m {
        PagingMode::Level4 => 4,
        PagingMode::Level5 => 5,
    }
}

fn new_os(os: Os, out: *mut *mut xvmi_os) {
    // SAFETY: `out` was checked by arg_out and is writable by the caller's contract.
    unsafe {
        put(
            out,
            register(Box::new(xvmi_os {
                os: std::sync::Arc::new(os),
            })),
        )
    };
}

fn discover_linux(
    m: &xvmi_memory,
    source: ProfileSource,
    out: *mut *mut xvmi_os,
) -> Result<(), Fail> {
    let regs = m.all_registers();
    let linux = Linux::discover(m.get(), &regs, source)?;
    new_guest(m, Guest::Linux(linux), out);
    Ok(())
}

/// Find a Linux kernel in guest memory (under KASLR), from the vCPU registers the memory
/// handle has or from memory alone.
///
/// `isf_path` NULL: no profile at all; symbols come from the kernel's own kallsyms tables and
/// types from its BTF, both read from guest memory. Otherwise the path of a Volatility3 ISF
/// (`.json` or `.json.xz`). Results are the same either way.
///
/// [`XVMI_ERR_OS_NOT_FOUND`] says what was tried; [`XVMI_ERR_MISSING_SYMBOL`] /
/// [`XVMI_ERR_MISSING_FIELD`] name what the profile lacks.
///
/// # Safety
/// `mem` is NULL or a live handle; `isf_path` is NULL or a NUL-terminated string; `out` is
/// valid for a write. On success `*out` is a new handle to release with [`xvmi_os_free`].
#[no_mangle]
pub unsafe extern "C" fn xvmi_os_linux_discover(
    mem: *const xvmi_memory,
    isf_path: *const c_char,
    out: *mut *mut xvmi_os,
) -> xvmi_result {
    boundary(|| {
        let m = arg_handle(mem, "mem")?;
        // SAFETY: `isf_path` is NULL or a NUL-terminated string, as this function's `# Safety`
        // requires.
        let isf = unsafe { arg_opt_str(isf_path, "isf_path") }?;
        let out = arg_out(out, "out")?;
        discover_linux(&m, linux_source(isf), out)
    })
}

/// Find a Linux kernel with a BTF file (`/sys/kernel/btf/vmlinux`) and a kallsyms or
/// `System.map` file as its profile. Otherwise as [`xvmi_os_linux_discover`].
///
/// # Safety
/// `mem` is NULL or a live handle; `btf_path` and `symbols_path` are NUL-terminated strings;
/// `out` is valid for a write. On success `*out` is a new handle to release with
/// [`xvmi_os_free`].
#[no_mangle]
pub unsafe extern "C" fn xvmi_os_linux_discover_btf(
    mem: *const xvmi_memory,
    btf_path: *const c_char,
    symbols_path: *const c_char,
    out: *mut *mut xvmi_os,
) -> xvmi_result {
    boundary(|| {
        let m = arg_handle(mem, "mem")?;
        // SAFETY: `btf_path` is NULL (refused by arg_str) or a NUL-terminated string, as this
        // function's `# Safety` requires.
        let btf = unsafe { arg_str(btf_path, "btf_path") }?;
        // SAFETY: `symbols_path` is NULL (refused by arg_str) or a NUL-terminated string, as this
        // function's `# Safety` requires.
        let symbols = unsafe { arg_str(symbols_path, "symbols_path") }?;
        let out = arg_out(out, "out")?;
        let source = ProfileSource::Files {
            btf: btf.into(),
            symbols: symbols.into(),
        };
        discover_linux(&m, source, out)
    })
}

/// Facts known from outside guest memory that make Windows discovery cheaper or possible
/// (`xenvmi::os::windows::Hints`). 0 means unknown.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct xvmi_windows_hints {
    /// ntoskrnl's image base.
    pub kernel_base: u64,
    /// Address of `PsActiveProcessHead` (a crash dump header records it).
    pub ps_active_process_head: u64,
    /// Address of `PsLoadedModuleList` (a crash dump header records it).
    pub ps_loaded_module_list: u64,
    /// A kernel page-table root (`DirectoryTableBase` of a crash dump header).
    pub directory_table_base: u64,
}

/// Find a Windows (x64) kernel in guest memory under KASLR, from the vCPU registers the
/// memory handle has (`MSR_LSTAR`, a kernel-mode `rip`, the page tables), the optional
/// `hints` (NULL: none) and, for a Windows crash dump, what its header records
/// (`DirectoryTableBase`, `PsActiveProcessHead`, `PsLoadedModuleList`; a non-zero `hints`
/// field takes precedence).
///
/// `profile_path` is a Volatility3 ISF for the kernel's `ntkrnlmp.pdb` (`.json` or
/// `.json.xz`) or that PDB itself (`.pdb`), or a directory searched by the running kernel's PDB
/// GUID and age: a symbol store (`ntkrnlmp.pdb/<GUID><AGE>/ntkrnlmp.pdb`) or ISF files. Nothing
/// is downloaded. [`XVMI_ERR_OS_NOT_FOUND`] says what was tried, and for a profile that does
/// not match or is missing, which GUID and age are needed and where the file should be.
///
/// # Safety
/// `mem` is NULL or a live handle; `profile_path` is a NUL-terminated string; `hints` is NULL
/// or points at an initialised [`xvmi_windows_hints`]; `out` is valid for a write. On success
/// `*out` is a new handle to release with [`xvmi_os_free`].
#[no_mangle]
pub unsafe extern "C" fn xvmi_os_windows_discover(
    mem: *const xvmi_memory,
    profile_path: *const c_char,
    hints: *const xvmi_windows_hints,
    out: *mut *mut xvmi_os,
) -> xvmi_result {
    boundary(|| {
        let m = arg_handle(mem, "mem")?;
        // SAFETY: `profile_path` is NULL (refused by arg_str) or a NUL-terminated string, as this
        // function's `# Safety` requires.
        let path = unsafe { arg_str(profile_path, "profile_path") }?;
        // SAFETY: as this function's `# Safety` requires of `hints`.
        let h = unsafe { arg_hints(hints) }?;
        let out = arg_out(out, "out")?;
        let hints = windows_hints(&m, &h);
        let profile = WindowsProfile::from_path(std::path::Path::new(path));
        let regs = m.all_registers();
        let windows = Windows::discover_with(m.get(), &regs, profile, &hints)?;
        new_guest(&m, Guest::Windows(windows), out);
        Ok(())
    })
}

/// The Windows hints of one call: the caller's non-zero fields first, then what a crash dump's
/// header says.
fn windows_hints(m: &xvmi_memory, h: &xvmi_windows_hints) -> Hints {
    let dump = m.dump_hints.unwrap_or_default();
    let nonzero = |v: u64| (v != 0).then_some(v);
    Hints {
        kernel_base: nonzero(h.kernel_base).map(Gva).or(dump.kernel_base),
        ps_active_process_head: nonzero(h.ps_active_process_head)
            .map(Gva)
            .or(dump.ps_active_process_head),
        ps_loaded_module_list: nonzero(h.ps_loaded_module_list)
            .map(Gva)
            .or(dump.ps_loaded_module_list),
        directory_table_base: nonzero(h.directory_table_base).or(dump.directory_table_base),
    }
}

/// The caller's hints, all zero (none) for NULL.
///
/// # Safety
/// `hints` is NULL or points at an initialised [`xvmi_windows_hints`].
unsafe fn arg_hints(hints: *const xvmi_windows_hints) -> Result<xvmi_windows_hints, Fail> {
    if hints.is_null() {
        return Ok(xvmi_windows_hints::default());
    }
    // SAFETY: `hints` is non-NULL here and points at an initialised value, as this function's
    // `# Safety` requires.
    Ok(*unsafe { arg_ref(hints, "hints") }?)
}

/// A Linux profile path: NULL for the kernel's own kallsyms and BTF, else an ISF.
fn linux_source(isf: Option<&str>) -> ProfileSource {
    match isf {
        None => ProfileSource::InGuest,
        Some(p) => ProfileSource::Isf(p.into()),
    }
}

/// A new OS handle for a discovered kernel, with the physical address of its image.
fn new_guest(m: &xvmi_memory, guest: Guest, out: *mut *mut xvmi_os) {
    let base_pa = match &guest {
        Guest::Linux(l) => l.info().text_pa.0,
        Guest::Windows(w) => m
            .get()
            .translate_mapped(w.info().kernel_space, w.info().kernel_base)
            .map(|p: Gpa| p.0)
            .unwrap_or(0),
    };
    new_os(Os { guest, base_pa }, out);
}

/// Find the guest's kernel whatever its OS (`xenvmi::os::discover`): cheap tells decide
/// between Linux and Windows first — a crash dump header (or `hints`), a vCPU's `MSR_LSTAR`,
/// the Windows low stub, the Linux kernel image map in a vCPU's page tables, a
/// `Linux version` banner, a self-referencing top-level page-table entry — then only that
/// OS's discovery runs. [`xvmi_os_get_info`]'s `kind` says which OS the handle holds.
///
/// `linux_isf_path`: for a Linux guest, as [`xvmi_os_linux_discover`]'s `isf_path` (NULL: no
/// profile, the kernel's own kallsyms and BTF from guest memory). `windows_profile_path`: for
/// a Windows guest, as [`xvmi_os_windows_discover`]'s `profile_path` (an ISF or PDB file, or
/// a directory); NULL: the default place, `$XENVMI_WINDOWS_PROFILES`, else
/// `$XDG_DATA_HOME/xenvmi/windows`, else `$HOME/.local/share/xenvmi/windows`. Only the path
/// of the OS found is used. `hints` (NULL: none) and a crash dump's header are used as by
/// [`xvmi_os_windows_discover`], and are a tell of Windows themselves.
///
/// [`XVMI_ERR_OS_NOT_FOUND`] names the image and what each check saw when neither OS is told
/// apart, or what the found OS's discovery tried; [`XVMI_ERR_INVALID_ARGUMENT`] for a Windows
/// guest with no profile given and no directory at the default place (the message says
/// where); other errors as the OS's own discovery (an unreadable profile is
/// [`XVMI_ERR_IO`] naming the file).
///
/// # Safety
/// `mem` is NULL or a live handle; `linux_isf_path` and `windows_profile_path` are NULL or
/// NUL-terminated strings; `hints` is NULL or points at an initialised
/// [`xvmi_windows_hints`]; `out` is valid for a write. On success `*out` is a new handle to
/// release with [`xvmi_os_free`].
#[no_mangle]
pub unsafe extern "C" fn xvmi_os_discover(
    mem: *const xvmi_memory,
    linux_isf_path: *const c_char,
    windows_profile_path: *const c_char,
    hints: *const xvmi_windows_hints,
    out: *mut *mut xvmi_os,
) -> xvmi_result {
    boundary(|| {
        let m = arg_handle(mem, "mem")?;
        // SAFETY: `linux_isf_path` is NULL or a NUL-terminated string, as this function's
        // `# Safety` requires.
        let linux = unsafe { arg_opt_str(linux_isf_path, "linux_isf_path") }?;
        // SAFETY: `windows_profile_path` is NULL or a NUL-terminated string, as this
        // function's `# Safety` requires.
        let windows = unsafe { arg_opt_str(windows_profile_path, "windows_profile_path") }?;
        // SAFETY: as this function's `# Safety` requires of `hints`.
        let h = unsafe { arg_hints(hints) }?;
        let out = arg_out(out, "out")?;
        let options = DiscoverOptions {
            linux: linux_source(linux),
            windows: windows.map(|p| WindowsProfile::from_path(std::path::Path::new(p))),
            hints: windows_hints(&m, &h),
            ..DiscoverOptions::default()
        };
        let regs = m.all_registers();
        let guest = discover(m.get(), &regs, options)?;
        new_guest(&m, guest, out);
        Ok(())
    })
}

/// Release an OS handle. `NULL` is a no-op.
///
/// Returns [`XVMI_OK`], or [`XVMI_ERR_INVALID_HANDLE`] (nothing freed) for a handle that is
/// not live (a double free) or that a call still running uses (freed from a callback).
///
/// # Safety
/// `os` is NULL or a pointer this library returned (freed or not: a freed one is refused);
/// no call on another thread uses it meanwhile.
#[no_mangle]
pub unsafe extern "C" fn xvmi_os_free(os: *mut xvmi_os) -> xvmi_result {
    boundary(|| {
        drop(unregister(os, "os")?);
        Ok(())
    })
}

/// What was found about the kernel.
///
/// # Safety
/// `os` is NULL or a live handle; `out` is valid for a write.
#[no_mangle]
pub unsafe extern "C" fn xvmi_os_get_info(
    os: *const xvmi_os,
    out: *mut xvmi_os_info,
) -> xvmi_result {
    boundary(|| {
        let os = arg_handle(os, "os")?;
        let out = arg_out(out, "out")?;
        let info = match &os.os.guest {
            Guest::Windows(windows) => {
                let w = windows.info();
                xvmi_os_info {
                    kind: XVMI_OS_WINDOWS,
                    paging_levels: levels(w.kernel_space.mode),
                    kernel_base: w.kernel_base.0,
                    kernel_base_pa: os.os.base_pa,
                    kernel_cr3: w.kernel_space.root.0,
                    image_size: w.size_of_image as u64,
                    build: w.build.unwrap_or(0),
                    ..Default::default()
                }
            }
            Guest::Linux(l) => {
                let k = l.info();
                xvmi_os_info {
                    kind: XVMI_OS_LINUX,
                    paging_levels: levels(k.paging),
                    kaslr_offset: k.kaslr_offset,
                    kernel_base: k.text_va.0,
                    kernel_base_pa: os.os.base_pa,
                    phys_base: k.phys_base,
                    page_offset_base: k.page_offset_base.0,
                    kernel_cr3: k.kernel_space.root.0,
                    image_size: 0,
                    build: 0,
                }
            }
        };
        // SAFETY: checked by arg_out.
        unsafe { put(out, info) };
        Ok(())
    })
}

/// The kernel release as a NUL-terminated string in `buf`: Linux `uname -r`
/// (`6.1.0-56-amd64`), Windows the build number (`19041`; [`XVMI_ERR_NOT_FOUND`] if it could
/// not be read). [`XVMI_ERR_BUFFER_TOO_SMALL`] if `len` is not more than its length (the buffer is
/// then untouched). `*out_len` (if not NULL) receives its length without the NUL, on success
/// and on `XVMI_ERR_BUFFER_TOO_SMALL`.
///
/// # Safety
/// `os` is NULL or a live handle; `buf` is valid for `len` bytes of writes (NULL if `len` is
/// 0); `out_len` is NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn xvmi_os_release(
    os: *const xvmi_os,
    buf: *mut c_char,
    len: usize,
    out_len: *mut usize,
) -> xvmi_result {
    boundary(|| {
        let os = arg_handle(os, "os")?;
        let s = os.os.guest.os_info().release;
        if s.is_empty() && os.os.guest.kind() == OsKind::Windows {
            return Err(Fail::new(
                XVMI_ERR_NOT_FOUND,
                "the Windows build number (NtBuildNumber) could not be read",
            ));
        }
        // SAFETY: `buf` is NULL or valid for `len` bytes of writes and `out_len` NULL or valid for
        // a write, as this function's `# Safety` requires.
        unsafe { string_out(&s, buf, len, out_len, "the release") }
    })
}

/// The kernel banner into `buf`, as [`xvmi_os_release`]: Linux `linux_banner` (as
/// `/proc/version` shows it); Windows the kernel's PDB name and symbol-server key with the
/// profile in use (`ntkrnlmp.pdb 5278AFF86C341677D7D7835C85B7B8441 (profile ...)`).
///
/// # Safety
/// As [`xvmi_os_release`].
#[no_mangle]
pub unsafe extern "C" fn xvmi_os_banner(
    os: *const xvmi_os,
    buf: *mut c_char,
    len: usize,
    out_len: *mut usize,
) -> xvmi_result {
    boundary(|| {
        let os = arg_handle(os, "os")?;
        let s = os.os.guest.os_info().banner;
        // SAFETY: `buf` is NULL or valid for `len` bytes of writes and `out_len` NULL or valid for
        // a write, as this function's `# Safety` requires.
        unsafe { string_out(&s, buf, len, out_len, "the banner") }
    })
}

/// Run-time virtual address of a kernel symbol (`"init_task"`). [`XVMI_ERR_NOT_FOUND`] if
/// the symbol table does not have it. On Windows, after the first [`xvmi_os_symbol_at`] on
/// the handle, also a driver's export as `driver!Export` (`"ACPI!AcpiGetTable"`, the
/// driver's name without its extension) and the exports of ntoskrnl.
///
/// # Safety
/// `os` is NULL or a live handle; `name` is a NUL-terminated string; `out_va` is valid for a
/// write.
#[no_mangle]
pub unsafe extern "C" fn xvmi_os_symbol(
    os: *const xvmi_os,
    name: *const c_char,
    out_va: *mut u64,
) -> xvmi_result {
    boundary(|| {
        let os = arg_handle(os, "os")?;
        // SAFETY: `name` is NULL (refused by arg_str) or a NUL-terminated string, as this
        // function's `# Safety` requires.
        let name = unsafe { arg_str(name, "name") }?;
        let out = arg_out(out_va, "out_va")?;
        let guest = &os.os.guest;
        let (va, source) = (guest.symbol(name), guest.symbol_table().source_name());
        let va = va.ok_or_else(|| {
            Fail::new(
                XVMI_ERR_NOT_FOUND,
                format!("symbol `{name}` is not in the {source} symbol table"),
            )
        })?;
        // SAFETY: checked by arg_out.
        unsafe { put(out, va.0) };
        Ok(())
    })
}

/// The kernel symbol at or below `va` as a NUL-terminated string in `buf`, as
/// [`xvmi_os_release`] writes strings: on Windows `KiSystemCall64+0x10` (the profile), an
/// export of ntoskrnl the profile lacks, `ACPI!AcpiGetTable+0x24` inside a driver or
/// `kd+0x80` inside one below its first export; on Linux `schedule+0x3c`, or
/// `ext4_sync_fs+0x20 [ext4]` inside a module. [`XVMI_ERR_NOT_FOUND`] when nothing holds
/// `va`.
///
/// Windows: the first call on a handle reads the loaded drivers' export tables through `mem`
/// (bounded; what cannot be read is left out) and keeps them in the handle, so later calls
/// read nothing; drivers loaded after it are not seen. From then on [`xvmi_os_symbol`] also
/// takes `driver!Export` names. Linux: each call walks the module list.
///
/// # Safety
/// `os` and `mem` are NULL or live handles; `buf` is valid for `len` bytes of writes (NULL
/// if `len` is 0); `out_len` is NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn xvmi_os_symbol_at(
    os: *const xvmi_os,
    mem: *const xvmi_memory,
    va: u64,
    buf: *mut c_char,
    len: usize,
    out_len: *mut usize,
) -> xvmi_result {
    boundary(|| {
        let os = arg_handle(os, "os")?;
        let m = arg_handle(mem, "mem")?;
        let mem = m.get();
        let found = match &os.os.guest {
            Guest::Linux(l) => l.symbolize(mem, Gva(va)).map(|k| k.to_string()),
            Guest::Windows(w) => {
                w.driver_symbols(mem);
                GuestOs::symbol_at(w, Gva(va)).map(|s| s.to_string())
            }
        };
        let s = found.ok_or_else(|| {
            Fail::new(
                XVMI_ERR_NOT_FOUND,
                format!("no kernel symbol, module or driver holds {va:#x}"),
            )
        })?;
        // SAFETY: `buf` is NULL or valid for `len` bytes of writes and `out_len` NULL or valid for
        // a write, as this function's `# Safety` requires.
        unsafe { string_out(&s, buf, len, out_len, "the symbol") }
    })
}

/// Drive a walk: element errors that are followed by more items go to the callback; an
/// error that ends the walk is the result.
fn walk<T, C>(
    items: impl Iterator<Item = Result<T, Error>>,
    convert: impl Fn(&T) -> C,
    mut call: impl FnMut(*const C, xvmi_result) -> i32,
) -> Result<(), Fail> {
    let mut items = items.peekable();
    while let Some(item) = items.next() {
        let verdict = match item {
            Ok(v) => {
                let c = convert(&v);
                call(&c, XVMI_OK)
            }
            Err(e) => {
                if items.peek().is_none() {
                    return Err(e.into());
                }
                let code = report(Fail::from(e));
                call(std::ptr::null(), code)
            }
        };
        if verdict != XVMI_WALK_CONTINUE {
            break;
        }
    }
    Ok(())
}

/// Walk the guest's processes (Linux: `init_task.tasks`, every thread-group leader except
/// the idle task; Windows: `PsActiveProcessHead`), calling `callback(userdata, process, status)` for each, in list order.
///
/// Errors: an element that cannot be read while the walk goes on (one unreadable task) is
/// reported **to the callback** (`process` NULL, `status` its code, message in
/// [`xvmi_last_error`]). An error that ends the walk — a broken or looping link, the entry
/// limit ([`XVMI_ERR_WALK_ABORTED`]), an unreadable link, a missing symbol — is **the return
/// value**, after the callback has seen every element before it. (An unreadable last element
/// cannot be told apart from an unreadable link and is returned the same way.) A callback
/// that stops the walk early makes it return [`XVMI_OK`].
///
/// The callback may call other xenvmi functions (read memory through `mem`, for example) but
/// must not free `os` or `mem`.
///
/// # Safety
/// `os` and `mem` are NULL or live handles; `callback` is a function that does not unwind
/// (no C++ exception, no `longjmp` out of it); `userdata` is passed through untouched.
#[no_mangle]
pub unsafe extern "C" fn xvmi_os_processes(
    os: *const xvmi_os,
    mem: *const xvmi_memory,
    callback: xvmi_process_callback,
    userdata: *mut c_void,
) -> xvmi_result {
    boundary(|| {
        let os = arg_handle(os, "os")?;
        let m = arg_handle(mem, "mem")?;
        let cb = callback.ok_or_else(|| Fail::new(XVMI_ERR_NULL_POINTER, "`callback` is NULL"))?;
        let mem = m.get();
        let call = |p: *const xvmi_process, status| {
            // SAFETY: a C function pointer given by the caller; `p` is NULL or points at a
            // process that lives until the call returns.
            unsafe { cb(userdata, p, status) }
        };
        let convert = |p: &Process| xvmi_process::from(p);
        walk(os.os.guest.processes(mem), convert, call)
    })
}

/// Walk the kernel's modules (Linux: the `modules` list, most recently loaded first; Windows:
/// `PsLoadedModuleList`, the drivers in load order, ntoskrnl first), calling
/// `callback(userdata, module, status)` for each. Errors and stopping as
/// [`xvmi_os_processes`].
///
/// # Safety
/// As [`xvmi_os_processes`].
#[no_mangle]
pub unsafe extern "C" fn xvmi_os_modules(
    os: *const xvmi_os,
    mem: *const xvmi_memory,
    callback: xvmi_module_callback,
    userdata: *mut c_void,
) -> xvmi_result {
    boundary(|| {
        let os = arg_handle(os, "os")?;
        let m = arg_handle(mem, "mem")?;
        let cb = callback.ok_or_else(|| Fail::new(XVMI_ERR_NULL_POINTER, "`callback` is NULL"))?;
        let mem = m.get();
        let call = |m: *const xvmi_module, status| {
            // SAFETY: as in xvmi_os_processes.
            unsafe { cb(userdata, m, status) }
        };
        let convert = |m: &Module| xvmi_module::from(m);
        walk(os.os.guest.modules(mem), convert, call)
    })
}

/// The process whose address space `cr3` selects (PCID bits ignored; Linux's KPTI user table
/// and Windows' KVA-shadow user table match too),
/// from a fresh walk of the process list (elements that cannot be read are skipped).
/// [`XVMI_ERR_NOT_FOUND`] if none has it; the message says when `cr3` is the kernel's own
/// page tables (an idle vCPU or a kernel thread).
///
/// # Safety
/// `os` and `mem` are NULL or live handles; `out` is valid for a write.
#[no_mangle]
pub unsafe extern "C" fn xvmi_os_process_for_cr3(
    os: *const xvmi_os,
    mem: *const xvmi_memory,
    cr3: u64,
    out: *mut xvmi_process,
) -> xvmi_result {
    boundary(|| {
        let os = arg_handle(os, "os")?;
        let m = arg_handle(mem, "mem")?;
        let out = arg_out(out, "out")?;
        let mem = m.get();
        let guest = &os.os.guest;
        let found = guest.process_for_cr3(mem, cr3);
        if found.is_none() && guest.as_linux().is_some_and(|l| l.is_kernel_cr3(cr3)) {
            return Err(Fail::new(
                XVMI_ERR_NOT_FOUND,
                format!(
                    "CR3 {cr3:#x} selects the kernel's own page tables (init_mm), not a process"
                ),
            ));
        }
        let p = found.ok_or_else(|| {
            Fail::new(
                XVMI_ERR_NOT_FOUND,
                format!("no process has the address space CR3 {cr3:#x} selects"),
            )
        })?;
        // SAFETY: checked by arg_out.
        unsafe { put(out, xvmi_process::from(&p)) };
        Ok(())
    })
}

/// Read the fields of a caller's process record that a walk needs, without assuming its
/// booleans are valid Rust `bool`s (C may have changed them).
///
/// # Safety
/// `p` is non-NULL, aligned and points at an initialised `xvmi_process`.
unsafe fn process_from_c(p: *const xvmi_process) -> Result<Process, Fail> {
    // SAFETY: valid for reads by contract; each field is read by value, the booleans as the
    // byte they are in C, and validated.
    let (pid, tgid, ppid, dtb, user_dtb, object, kthread, has_dtb, has_user_dtb) = unsafe {
        (
            std::ptr::addr_of!((*p).pid).read(),
            std::ptr::addr_of!((*p).tgid).read(),
            std::ptr::addr_of!((*p).ppid).read(),
            std::ptr::addr_of!((*p).dtb).read(),
            std::ptr::addr_of!((*p).user_dtb).read(),
            std::ptr::addr_of!((*p).object).read(),
            std::ptr::addr_of!((*p).kernel_thread).cast::<u8>().read(),
            std::ptr::addr_of!((*p).has_dtb).cast::<u8>().read(),
            std::ptr::addr_of!((*p).has_user_dtb).cast::<u8>().read(),
        )
    };
    Ok(Process {
        pid,
        tgid,
        ppid,
        name: String::new(),
        kernel_thread: arg_bool(kthread, "process.kernel_thread")?,
        dtb: arg_bool(has_dtb, "process.has_dtb")?.then_some(Gpa(dtb)),
        user_dtb: arg_bool(has_user_dtb, "process.has_user_dtb")?.then_some(Gpa(user_dtb)),
        object: Gva(object),
    })
}

/// Walk the modules loaded in one process's address space (Windows: the DLLs of its PEB
/// loader list, in load order, the executable first), calling `callback(userdata, module,
/// status)` for each. `process` is a record a process walk gave (copied out of its callback)
/// or [`xvmi_os_process_for_cr3`] wrote. Errors and stopping as [`xvmi_os_processes`]; a
/// process without user space (System) is [`XVMI_ERR_CORRUPT`] saying so.
/// [`XVMI_ERR_UNSUPPORTED`] for Linux guests (their user-space mappings are not walked yet).
///
/// # Safety
/// As [`xvmi_os_processes`]; `process` is NULL or points at an initialised [`xvmi_process`].
#[no_mangle]
pub unsafe extern "C" fn xvmi_os_process_modules(
    os: *const xvmi_os,
    mem: *const xvmi_memory,
    process: *const xvmi_process,
    callback: xvmi_module_callback,
    userdata: *mut c_void,
) -> xvmi_result {
    boundary(|| {
        let os = arg_handle(os, "os")?;
        let m = arg_handle(mem, "mem")?;
        if process.is_null() {
            return Err(Fail::new(XVMI_ERR_NULL_POINTER, "`process` is NULL"));
        }
        if !process.is_aligned() {
            return Err(Fail::invalid("`process` is not aligned"));
        }
        // SAFETY: non-NULL and aligned (checked); initialised by contract.
        let p = unsafe { process_from_c(process) }?;
        let cb = callback.ok_or_else(|| Fail::new(XVMI_ERR_NULL_POINTER, "`callback` is NULL"))?;
        let mem = m.get();
        let call = |m: *const xvmi_module, status| {
            // SAFETY: as in xvmi_os_processes.
            unsafe { cb(userdata, m, status) }
        };
        match &os.os.guest {
            Guest::Linux(_) => Err(Fail::new(
                XVMI_ERR_UNSUPPORTED,
                "walking the user-space modules of a Linux process is not supported yet",
            )),
            Guest::Windows(windows) => walk(
                windows.process_modules(mem, &p),
                |m: &Module| xvmi_module::from(m),
                call,
            ),
        }
    })
}

impl Handle for xvmi_os {
    const KIND: &'static str = "xvmi_os";
}
