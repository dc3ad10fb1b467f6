//! Operating systems found in guest memory: one OS-neutral handle, walks with callbacks.

use std::ffi::{c_char, c_void};

use super::error::*;
use super::memory::xvmi_memory;
use super::types::{xvmi_module, xvmi_process};
use crate::error::Error;
use crate::mem::PagingMode;
use crate::os::linux::{Linux, ProfileSource};
use crate::os::Process;

/// The kernels an [`xvmi_os`] can hold.
pub(crate) enum Os {
    Linux(Linux),
}

/// A guest operating system found in memory (Linux today; Windows next), ready to walk. It
/// holds no reference to the memory handle it was discovered on: pass a memory handle of the
/// same guest to each call (the same one, or another on the same domain or image).
pub struct xvmi_os {
    pub(crate) os: Os,
}

/// [`xvmi_os_info::kind`]: a Linux kernel.
pub const XVMI_OS_LINUX: u32 = 1;
/// [`xvmi_os_info::kind`]: a Windows kernel (reserved for the coming Windows support).
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

/// What was found about the kernel.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct xvmi_os_info {
    /// `XVMI_OS_LINUX` (or `XVMI_OS_WINDOWS`).
    pub kind: u32,
    /// Paging levels the kernel uses (4, or 5 with LA57).
    pub paging_levels: u32,
    /// KASLR virtual offset (Linux: `_text - 0xffffffff81000000`).
    pub kaslr_offset: u64,
    /// Run-time virtual address of the kernel image (Linux `_text`).
    pub kernel_base: u64,
    /// Guest-physical address of the kernel image.
    pub kernel_base_pa: u64,
    /// Linux `phys_base` (may wrap modulo 2^64).
    pub phys_base: u64,
    /// Start of the direct map of physical memory (Linux `page_offset_base`).
    pub page_offset_base: u64,
    /// The kernel's own page-table root, usable as a `cr3` argument (Linux `init_top_pgt`).
    pub kernel_cr3: u64,
}

fn new_os(os: Os, out: *mut *mut xvmi_os) {
    // SAFETY: `out` was checked by arg_out and is writable by the caller's contract.
    unsafe { put(out, Box::into_raw(Box::new(xvmi_os { os }))) };
}

fn discover_linux(
    m: &xvmi_memory,
    source: ProfileSource,
    out: *mut *mut xvmi_os,
) -> Result<(), Fail> {
    let regs = m.all_registers();
    let linux = Linux::discover(m.get(), &regs, source)?;
    new_os(Os::Linux(linux), out);
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
        // SAFETY: forwarded contract.
        let m = unsafe { arg_ref(mem, "mem") }?;
        // SAFETY: forwarded contract.
        let isf = unsafe { arg_opt_str(isf_path, "isf_path") }?;
        let out = arg_out(out, "out")?;
        let source = match isf {
            None => ProfileSource::InGuest,
            Some(p) => ProfileSource::Isf(p.into()),
        };
        discover_linux(m, source, out)
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
        // SAFETY: forwarded contract.
        let m = unsafe { arg_ref(mem, "mem") }?;
        // SAFETY: forwarded contract.
        let btf = unsafe { arg_str(btf_path, "btf_path") }?;
        // SAFETY: forwarded contract.
        let symbols = unsafe { arg_str(symbols_path, "symbols_path") }?;
        let out = arg_out(out, "out")?;
        let source = ProfileSource::Files {
            btf: btf.into(),
            symbols: symbols.into(),
        };
        discover_linux(m, source, out)
    })
}

/// Release an OS handle. `NULL` is a no-op.
///
/// # Safety
/// `os` is NULL or a handle from `xvmi_os_*_discover` not yet freed, and no other call is
/// using it.
#[no_mangle]
pub unsafe extern "C" fn xvmi_os_free(os: *mut xvmi_os) {
    let _ = boundary(|| {
        if !os.is_null() {
            // SAFETY: a handle from Box::into_raw (contract), freed once.
            drop(unsafe { Box::from_raw(os) });
        }
        Ok(())
    });
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
        // SAFETY: forwarded contract.
        let os = unsafe { arg_ref(os, "os") }?;
        let out = arg_out(out, "out")?;
        let info = match &os.os {
            Os::Linux(l) => {
                let k = l.info();
                xvmi_os_info {
                    kind: XVMI_OS_LINUX,
                    paging_levels: match k.paging {
                        PagingMode::Level4 => 4,
                        PagingMode::Level5 => 5,
                    },
                    kaslr_offset: k.kaslr_offset,
                    kernel_base: k.text_va.0,
                    kernel_base_pa: k.text_pa.0,
                    phys_base: k.phys_base,
                    page_offset_base: k.page_offset_base.0,
                    kernel_cr3: k.kernel_space.root.0,
                }
            }
        };
        // SAFETY: checked by arg_out.
        unsafe { put(out, info) };
        Ok(())
    })
}

/// The kernel release (`uname -r`, e.g. `6.1.0-56-amd64`) as a NUL-terminated string in
/// `buf`. [`XVMI_ERR_BUFFER_TOO_SMALL`] if `len` is not more than its length (the buffer is
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
        // SAFETY: forwarded contract.
        let os = unsafe { arg_ref(os, "os") }?;
        let s = match &os.os {
            Os::Linux(l) => l.info().release.as_str(),
        };
        // SAFETY: forwarded contract.
        unsafe { string_out(s, buf, len, out_len, "the release") }
    })
}

/// The kernel banner (Linux `linux_banner`, as `/proc/version` shows it) into `buf`; as
/// [`xvmi_os_release`].
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
        // SAFETY: forwarded contract.
        let os = unsafe { arg_ref(os, "os") }?;
        let s = match &os.os {
            Os::Linux(l) => l.info().banner.as_str(),
        };
        // SAFETY: forwarded contract.
        unsafe { string_out(s, buf, len, out_len, "the banner") }
    })
}

/// Run-time virtual address of a kernel symbol (`"init_task"`). [`XVMI_ERR_NOT_FOUND`] if
/// the symbol table does not have it.
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
        // SAFETY: forwarded contract.
        let os = unsafe { arg_ref(os, "os") }?;
        // SAFETY: forwarded contract.
        let name = unsafe { arg_str(name, "name") }?;
        let out = arg_out(out_va, "out_va")?;
        let va = match &os.os {
            Os::Linux(l) => l.symbol(name).ok_or_else(|| {
                Fail::new(
                    XVMI_ERR_NOT_FOUND,
                    format!(
                        "symbol `{name}` is not in the {} symbol table",
                        l.info().symbol_source
                    ),
                )
            })?,
        };
        // SAFETY: checked by arg_out.
        unsafe { put(out, va.0) };
        Ok(())
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
/// the idle task), calling `callback(userdata, process, status)` for each, in list order.
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
        // SAFETY: forwarded contract.
        let os = unsafe { arg_ref(os, "os") }?;
        // SAFETY: forwarded contract.
        let m = unsafe { arg_ref(mem, "mem") }?;
        let cb = callback.ok_or_else(|| Fail::new(XVMI_ERR_NULL_POINTER, "`callback` is NULL"))?;
        let mem = m.get();
        match &os.os {
            Os::Linux(l) => walk(
                l.processes(mem),
                |p: &Process| xvmi_process::from(p),
                |p, status| {
                    // SAFETY: a C function pointer given by the caller; `p` is NULL or points at a
                    // process that lives until the call returns.
                    unsafe { cb(userdata, p, status) }
                },
            ),
        }
    })
}

/// Walk the kernel's modules (Linux: the `modules` list, most recently loaded first), calling
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
        // SAFETY: forwarded contract.
        let os = unsafe { arg_ref(os, "os") }?;
        // SAFETY: forwarded contract.
        let m = unsafe { arg_ref(mem, "mem") }?;
        let cb = callback.ok_or_else(|| Fail::new(XVMI_ERR_NULL_POINTER, "`callback` is NULL"))?;
        let mem = m.get();
        match &os.os {
            Os::Linux(l) => walk(
                l.modules(mem),
                |m: &crate::os::Module| xvmi_module::from(m),
                |p, status| {
                    // SAFETY: as in xvmi_os_processes.
                    unsafe { cb(userdata, p, status) }
                },
            ),
        }
    })
}

/// The process whose address space `cr3` selects (PCID bits and the KPTI user bit ignored),
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
        // SAFETY: forwarded contract.
        let os = unsafe { arg_ref(os, "os") }?;
        // SAFETY: forwarded contract.
        let m = unsafe { arg_ref(mem, "mem") }?;
        let out = arg_out(out, "out")?;
        let mem = m.get();
        let found: Option<Process> = match &os.os {
            Os::Linux(l) => match l.process_for_cr3(mem, cr3) {
                Some(p) => Some(p),
                None if l.is_kernel_cr3(cr3) => {
                    return Err(Fail::new(
                        XVMI_ERR_NOT_FOUND,
                        format!("CR3 {cr3:#x} selects the kernel's own page tables (init_mm), not a process"),
                    ))
                }
                None => None,
            },
        };
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
