//! Guest memory handles: snapshots, in-memory images, and live domains.

use std::cell::Cell;
use std::ffi::c_char;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::domain::{xvmi_domain, DomainMemory, DomainShared};
use super::error::*;
use super::handles::{arg_handle, register, unregister, Handle};
use super::types::{xvmi_region, xvmi_registers};
use crate::addr::{Gpa, Gva, VcpuId, PAGE_SIZE};
use crate::backend::snapshot::Snapshot;
use crate::backend::{PhysicalMemory, PhysicalMemoryWrite, VcpuState};
use crate::mem::{AddressSpace, GuestMemory};
use crate::os::windows::Hints;
use crate::regs::PagingMode;

/// What a memory handle reads from: physical memory and vCPU registers.
pub(crate) trait Source: PhysicalMemory + VcpuState {}
impl<T: PhysicalMemory + VcpuState + ?Sized> Source for T {}

/// Guest memory: a snapshot, an in-memory image, or a live domain's memory, with a
/// translation cache. Every call but `xvmi_memory_free` takes `const xvmi_memory *`, the
/// writes too: they change the guest's memory, not the handle (and only a domain's memory
/// can be written).
pub struct xvmi_memory {
    pub(crate) mem: GuestMemory<Box<dyn Source>>,
    /// Paging mode used for `cr3` arguments.
    mode: Cell<PagingMode>,
    /// For a live domain: the domain and the generation the cache was last valid for.
    live: Option<(Arc<DomainShared>, Cell<u64>)>,
    /// What a Windows crash dump's header says (for Windows discovery).
    pub(crate) dump_hints: Option<Hints>,
}

impl xvmi_memory {
    fn from_snapshot(snap: Snapshot) -> xvmi_memory {
        let hints = snap.windows_dump_info().map(Hints::from);
        let mut m = xvmi_memory::new(Box::new(snap), None);
        m.dump_hints = hints;
        m
    }

    fn new(source: Box<dyn Source>, live: Option<Arc<DomainShared>>) -> xvmi_memory {
        let count = source.vcpu_count();
        let mode = (0..count)
            .filter_map(|v| source.registers(VcpuId(v)).ok())
            .find(|r| r.has_paging_state())
            .map(|r| r.paging_mode())
            .unwrap_or(PagingMode::Level4);
        xvmi_memory {
            mem: GuestMemory::new(source),
            mode: Cell::new(mode),
            live: live.map(|d| {
                let g = d.generation.load(Ordering::SeqCst);
                (d, Cell::new(g))
            }),
            dump_hints: None,
        }
    }

    /// The memory, with cached translations dropped if the live guest ran since they were
    /// made. Every use goes through here.
    pub(crate) fn get(&self) -> &GuestMemory<Box<dyn Source>> {
        if let Some((d, seen)) = &self.live {
            let g = d.generation.load(Ordering::SeqCst);
            if g != seen.get() {
                self.mem.flush_translations();
                seen.set(g);
            }
        }
        &self.mem
    }

    /// The domain behind a memory handle that can be written (one from
    /// [`xvmi_memory_open_domain`]); a snapshot or an in-memory image is read-only.
    fn writable(&self) -> Result<&Arc<DomainShared>, Fail> {
        self.live.as_ref().map(|(d, _)| d).ok_or_else(|| {
            Fail::new(
                XVMI_ERR_UNSUPPORTED,
                "`mem` is a snapshot or an in-memory image, which is read-only (only a memory \
                 handle from xvmi_memory_open_domain can be written): nothing was written",
            )
        })
    }

    fn space(&self, cr3: u64) -> AddressSpace {
        AddressSpace::from_cr3(cr3, self.mode.get())
    }

    /// Register sets of every vCPU (for discovery).
    pub(crate) fn all_registers(&self) -> Vec<crate::Registers> {
        let b = self.mem.backend();
        (0..b.vcpu_count())
            .filter_map(|v| b.registers(VcpuId(v)).ok())
            .collect()
    }
}

fn new_memory(m: xvmi_memory, out: *mut *mut xvmi_memory) {
    // SAFETY: `out` was checked by arg_out and is writable by the caller's contract.
    unsafe { put(out, register(Box::new(m))) };
}

/// Open a memory snapshot: a raw physical-memory dump, a QEMU `dump-guest-memory` ELF core,
/// a LiME capture or a 64-bit Windows kernel crash dump (full or bitmap), detected from
/// content. The file is read as needed, not mapped: if it shrinks while open, reads of what is
/// gone return [`XVMI_ERR_NOT_MAPPED`]. [`XVMI_ERR_IO`] names the file and the errno (also a
/// FIFO, device or directory: only regular files are opened); [`XVMI_ERR_MALFORMED`] says
/// what is wrong with a truncated or corrupt image.
///
/// # Safety
/// `path` is a NUL-terminated string; `out` is valid for a write. On success `*out` is a new
/// handle to release with [`xvmi_memory_free`].
#[no_mangle]
pub unsafe extern "C" fn xvmi_memory_open_snapshot(
    path: *const c_char,
    out: *mut *mut xvmi_memory,
) -> xvmi_result {
    boundary(|| {
        // SAFETY: `path` is NULL (refused by arg_str) or a NUL-terminated string, as this
        // function's `# Safety` requires.
        let path = unsafe { arg_str(path, "path") }?;
        let out = arg_out(out, "out")?;
        let snap = Snapshot::open(path)?;
        new_memory(xvmi_memory::from_snapshot(snap), out);
        Ok(())
    })
}

/// Open an image held in memory (copied): any format [`xvmi_memory_open_snapshot`] reads,
/// detected from content (anything that is not ELF or LiME is raw). [`XVMI_ERR_NO_MEMORY`] if
/// the copy cannot be allocated.
///
/// # Safety
/// `data` is valid for `len` bytes of reads; `out` is valid for a write. On success `*out` is
/// a new handle to release with [`xvmi_memory_free`].
#[no_mangle]
pub unsafe extern "C" fn xvmi_memory_open_buffer(
    data: *const u8,
    len: usize,
    out: *mut *mut xvmi_memory,
) -> xvmi_result {
    boundary(|| {
        // SAFETY: `data` is NULL (refused) or valid for `len` bytes of reads, as this function's `#
        // Safety` requires.
        let data = unsafe { arg_bytes(data, len, "data") }?;
        let out = arg_out(out, "out")?;
        // A caller may hand over more than this process can copy: an error, not an abort.
        let mut copy = Vec::new();
        copy.try_reserve_exact(data.len()).map_err(|_| {
            Fail::new(
                XVMI_ERR_NO_MEMORY,
                format!(
                    "a copy of the {}-byte buffer cannot be allocated",
                    data.len()
                ),
            )
        })?;
        copy.extend_from_slice(data);
        let snap = Snapshot::from_bytes(copy, None)?;
        new_memory(xvmi_memory::from_snapshot(snap), out);
        Ok(())
    })
}

/// Open the live memory and vCPU registers of a domain. The handle keeps the domain alive.
/// Cached translations are dropped automatically whenever the guest may have run (each event
/// delivered, each return from `xvmi_session_run`); call [`xvmi_memory_flush`] yourself if the
/// guest runs otherwise (an unpaused Xen domain between calls).
///
/// # Safety
/// `domain` is NULL or a live handle; `out` is valid for a write. On success `*out` is a new
/// handle to release with [`xvmi_memory_free`].
#[no_mangle]
pub unsafe extern "C" fn xvmi_memory_open_domain(
    domain: *const xvmi_domain,
    out: *mut *mut xvmi_memory,
) -> xvmi_result {
    boundary(|| {
        let d = arg_handle(domain, "domain")?;
        let out = arg_out(out, "out")?;
        let source = Box::new(DomainMemory(Arc::clone(&d.shared)));
        new_memory(xvmi_memory::new(source, Some(Arc::clone(&d.shared))), out);
        Ok(())
    })
}

/// Release a memory handle. `NULL` is a no-op. OS handles discovered on it stay valid (they
/// hold no reference to it).
///
/// Returns [`XVMI_OK`], or [`XVMI_ERR_INVALID_HANDLE`] (nothing freed) for a handle that is
/// not live (a double free) or that a call still running uses (freed from a callback).
///
/// # Safety
/// `mem` is NULL or a pointer this library returned (freed or not: a freed one is refused);
/// no call on another thread uses it meanwhile.
#[no_mangle]
pub unsafe extern "C" fn xvmi_memory_free(mem: *mut xvmi_memory) -> xvmi_result {
    boundary(|| {
        drop(unregister(mem, "mem")?);
        Ok(())
    })
}

/// Read `len` bytes of guest-physical memory at `gpa` into `buf`.
/// [`XVMI_ERR_NOT_MAPPED`] if any byte is not backed; `buf` is then left as it was.
///
/// # Safety
/// `mem` is NULL or a live handle; `buf` is valid for `len` bytes of writes.
#[no_mangle]
pub unsafe extern "C" fn xvmi_memory_read_physical(
    mem: *const xvmi_memory,
    gpa: u64,
    buf: *mut u8,
    len: usize,
) -> xvmi_result {
    boundary(|| {
        let m = arg_handle(mem, "mem")?;
        // SAFETY: `buf` is NULL (refused unless `len` is 0) or valid for `len` bytes of writes, as
        // this function's `# Safety` requires.
        let buf = unsafe { arg_buf_out(buf, len, "buf") }?;
        // Read into a buffer of our own: the caller's is written only on success.
        let mut tmp = scratch(buf.len(), "len")?;
        m.get().read_physical(Gpa(gpa), &mut tmp)?;
        buf.write(&tmp);
        Ok(())
    })
}

/// Read `len` bytes of guest-virtual memory at `va` through the page tables `cr3` selects
/// (PCID and flag bits ignored; 4- or 5-level paging as [`xvmi_memory_set_paging_levels`]
/// says), crossing pages.
///
/// Every page is tried: pages that are not mapped or not backed are zero-filled in `buf`.
/// Returns [`XVMI_OK`] when all `len` bytes were read, [`XVMI_ERR_NOT_MAPPED`] when some were
/// not (the message lists the first missing pages). In both cases `buf` holds the result and
/// `*out_read` (if `out_read` is not NULL) the number of bytes actually read.
///
/// # Safety
/// `mem` is NULL or a live handle; `buf` is valid for `len` bytes of writes; `out_read` is
/// NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn xvmi_memory_read_virtual(
    mem: *const xvmi_memory,
    cr3: u64,
    va: u64,
    buf: *mut u8,
    len: usize,
    out_read: *mut usize,
) -> xvmi_result {
    boundary(|| {
        let m = arg_handle(mem, "mem")?;
        // SAFETY: `buf` is NULL (refused unless `len` is 0) or valid for `len` bytes of writes, as
        // this function's `# Safety` requires.
        let buf = unsafe { arg_buf_out(buf, len, "buf") }?;
        let out_read = if out_read.is_null() {
            None
        } else {
            Some(arg_out(out_read, "out_read")?)
        };
        let space = m.space(cr3);
        let mut tmp = scratch(buf.len(), "len")?;
        let r = m.get().read_partial(space, Gva(va), &mut tmp);
        // Written on success and on a partial read (holes zero-filled), as documented.
        buf.write(&tmp);
        if let Some(o) = out_read {
            // SAFETY: checked by arg_out; written on success and on a partial read, as
            // documented.
            unsafe { put(o, r.bytes_read) };
        }
        if r.bytes_read == len {
            return Ok(());
        }
        let mut msg = format!(
            "read of {len:#x} bytes at virtual address {va:#x} through page tables at {}: {:#x} bytes read; \
             not mapped or not backed (zero-filled):",
            space.root,
            r.bytes_read
        );
        for p in &r.missing_pages {
            let _ = write!(msg, " {p}");
        }
        if r.missing_pages.len() == 64 {
            msg.push_str(" ...");
        }
        Err(Fail::new(XVMI_ERR_NOT_MAPPED, msg))
    })
}

/// One piece of a write: a guest-physical address and the bytes of the caller's buffer that
/// go there (never crossing a page).
struct Piece {
    gpa: Gpa,
    at: std::ops::Range<usize>,
}

/// Write `data` in `pieces` (which cover it) to the domain behind `m`, all or nothing:
///
/// 1. the bytes each piece overwrites are read first, into a copy: a piece that is not backed
///    fails the call before anything is written;
/// 2. the pieces are written in order; if one fails, the pieces before it get their copy back,
///    so the guest keeps its old bytes (the message says so, or, if that fails too, which
///    bytes now hold the new data);
/// 3. every memory handle on the domain drops its cached translations before its next use (the
///    write may have changed page tables).
///
/// `what` describes the write for messages ("write of 0x10 bytes at ...").
fn write_pieces(
    m: &xvmi_memory,
    d: &DomainShared,
    pieces: &[Piece],
    data: &[u8],
    what: &str,
) -> Result<(), Fail> {
    let mut old = scratch(data.len(), "len")?;
    for p in pieces {
        if let Err(e) = m.get().read_physical(p.gpa, &mut old[p.at.clone()]) {
            return Err(Fail::new(
                result_code(&e),
                format!("{what}: nothing was written: {e}"),
            ));
        }
    }
    let failed = pieces.iter().enumerate().find_map(|(i, p)| {
        d.backend
            .write_physical(p.gpa, &data[p.at.clone()])
            .err()
            .map(|e| (i, e))
    });
    // Written or not, the guest's memory may have changed under cached translations.
    d.guest_ran();
    let Some((i, e)) = failed else {
        return Ok(());
    };
    // Put back what the pieces before the failing one overwrote, and the failing one's too
    // (the backend may have written part of it; if it fails again, it wrote none of it).
    let mut kept = Vec::new();
    for (k, p) in pieces[..=i].iter().enumerate() {
        if d.backend.write_physical(p.gpa, &old[p.at.clone()]).is_err() && k < i {
            kept.push(p);
        }
    }
    d.guest_ran();
    let written: usize = pieces[..i].iter().map(|p| p.at.len()).sum();
    let msg = if kept.is_empty() {
        format!(
            "{what}: writing {} failed after {written:#x} bytes, which were restored: nothing \
             was written: {e}",
            pieces[i].gpa
        )
    } else {
        let mut s = format!(
            "{what}: writing {} failed after {written:#x} bytes, and restoring them failed too: \
             guest memory now holds the new bytes at",
            pieces[i].gpa
        );
        for p in kept.iter().take(64) {
            let _ = write!(s, " {}+{:#x}", p.gpa, p.at.len());
        }
        if kept.len() > 64 {
            s.push_str(" ...");
        }
        let _ = write!(s, ": {e}");
        s
    };
    Err(Fail::new(result_code(&e), msg))
}

/// Write `len` bytes from `buf` to guest-physical memory at `gpa`, all or nothing.
///
/// Only a memory handle over a live domain ([`xvmi_memory_open_domain`]) can be written; a
/// snapshot or an in-memory image is read-only: [`XVMI_ERR_UNSUPPORTED`], nothing written.
///
/// Every byte of the range must be backed: otherwise [`XVMI_ERR_NOT_MAPPED`] names the first
/// address that is not, and nothing was written (the bytes to overwrite are read into a copy
/// first). If writing fails part-way ([`XVMI_ERR_BACKEND`]: Xen refused to map a frame
/// writable), the pages already written get their old bytes back from that copy; only if that
/// fails as well does the message list the ranges that now hold the new bytes. A `len` of 0
/// writes nothing and succeeds. Pause the domain
/// ([`xvmi_domain_pause`](super::xvmi_domain_pause)) for a write the guest must not see
/// half-done: it runs on meanwhile otherwise.
///
/// Every memory handle on the domain drops its cached translations before its next use (the
/// bytes may be page tables). The write goes to the domain's memory, not to the shadow copies
/// of stealth hooks ([`xvmi_session_hooks_enable`](super::xvmi_session_hooks_enable)).
///
/// # Safety
/// `mem` is NULL or a live handle; `buf` is valid for `len` bytes of reads.
#[no_mangle]
pub unsafe extern "C" fn xvmi_memory_write_physical(
    mem: *const xvmi_memory,
    gpa: u64,
    buf: *const u8,
    len: usize,
) -> xvmi_result {
    boundary(|| {
        let m = arg_handle(mem, "mem")?;
        // SAFETY: `buf` is NULL (refused unless `len` is 0) or valid for `len` bytes of reads, as
        // this function's `# Safety` requires.
        let data = unsafe { arg_bytes(buf, len, "buf") }?;
        let d = m.writable()?;
        if data.is_empty() {
            return Ok(());
        }
        let what = format!("write of {len:#x} bytes at guest-physical address {gpa:#x}");
        gpa.checked_add(len as u64 - 1).ok_or_else(|| {
            Fail::new(
                XVMI_ERR_OVERFLOW,
                format!("{what}: the range ends past 2^64: nothing was written"),
            )
        })?;
        let mut pieces = Vec::new();
        let mut done = 0usize;
        while done < len {
            let cur = Gpa(gpa + done as u64);
            let n = ((PAGE_SIZE - cur.page_offset()) as usize).min(len - done);
            pieces.push(Piece {
                gpa: cur,
                at: done..done + n,
            });
            done += n;
        }
        write_pieces(&m, d, &pieces, data, &what)
    })
}

/// Write `len` bytes from `buf` to guest-virtual memory at `va` through the page tables `cr3`
/// selects (as [`xvmi_memory_read_virtual`] reads: PCID and flag bits ignored, 4- or 5-level
/// paging as [`xvmi_memory_set_paging_levels`] says), crossing pages, all or nothing.
///
/// Unlike the virtual read there is no partial result: every page of the range is translated
/// first, afresh (never from the translation cache: a stale translation would write into
/// another page), and must be mapped and backed; otherwise [`XVMI_ERR_NOT_MAPPED`] names the
/// first page that is not, and nothing was written. The page tables' own permissions do not
/// matter (a read-only code page is written like any other). Then the bytes are written as
/// [`xvmi_memory_write_physical`] writes them: a failure part-way restores what was written,
/// [`XVMI_ERR_UNSUPPORTED`] for a snapshot or in-memory image, every memory handle on the
/// domain drops its cached translations, and a running guest may see the write half-done
/// (pause it with [`xvmi_domain_pause`](super::xvmi_domain_pause) for a consistent
/// translation and write).
///
/// # Safety
/// `mem` is NULL or a live handle; `buf` is valid for `len` bytes of reads.
#[no_mangle]
pub unsafe extern "C" fn xvmi_memory_write_virtual(
    mem: *const xvmi_memory,
    cr3: u64,
    va: u64,
    buf: *const u8,
    len: usize,
) -> xvmi_result {
    boundary(|| {
        let m = arg_handle(mem, "mem")?;
        // SAFETY: `buf` is NULL (refused unless `len` is 0) or valid for `len` bytes of reads, as
        // this function's `# Safety` requires.
        let data = unsafe { arg_bytes(buf, len, "buf") }?;
        let d = m.writable()?;
        if data.is_empty() {
            return Ok(());
        }
        let space = m.space(cr3);
        let what = format!(
            "write of {len:#x} bytes at virtual address {va:#x} through page tables at {}",
            space.root
        );
        va.checked_add(len as u64 - 1).ok_or_else(|| {
            Fail::new(
                XVMI_ERR_OVERFLOW,
                format!("{what}: the range ends past 2^64: nothing was written"),
            )
        })?;
        let mut pieces = Vec::new();
        let mut done = 0usize;
        while done < len {
            let cur = Gva(va + done as u64);
            let n = ((PAGE_SIZE - cur.page_offset()) as usize).min(len - done);
            let gpa = m
                .get()
                .walk(space, cur)
                .and_then(|w| w.mapped(cur, space.root))
                .map_err(|e| {
                    Fail::new(result_code(&e), format!("{what}: nothing was written: {e}"))
                })?
                .gpa;
            pieces.push(Piece {
                gpa,
                at: done..done + n,
            });
            done += n;
        }
        write_pieces(&m, d, &pieces, data, &what)
    })
}

/// Translate guest-virtual `va` through the page tables `cr3` selects into a guest-physical
/// address. [`XVMI_ERR_NOT_MAPPED`] names the page-table level whose entry is not present.
///
/// # Safety
/// `mem` is NULL or a live handle; `out_gpa` is valid for a write.
#[no_mangle]
pub unsafe extern "C" fn xvmi_memory_translate(
    mem: *const xvmi_memory,
    cr3: u64,
    va: u64,
    out_gpa: *mut u64,
) -> xvmi_result {
    boundary(|| {
        let m = arg_handle(mem, "mem")?;
        let out = arg_out(out_gpa, "out_gpa")?;
        let gpa = m.get().translate_mapped(m.space(cr3), Gva(va))?;
        // SAFETY: checked by arg_out.
        unsafe { put(out, gpa.0) };
        Ok(())
    })
}

/// Use 4-level (`levels` = 4) or 5-level (`levels` = 5, LA57) paging for the `cr3` arguments
/// of this handle. The default is what the first vCPU with paging on uses, else 4.
///
/// # Safety
/// `mem` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn xvmi_memory_set_paging_levels(
    mem: *const xvmi_memory,
    levels: u32,
) -> xvmi_result {
    boundary(|| {
        let m = arg_handle(mem, "mem")?;
        let mode = match levels {
            4 => PagingMode::Level4,
            5 => PagingMode::Level5,
            _ => {
                return Err(Fail::invalid(format!(
                    "`levels` is {levels}: x86-64 paging has 4 or 5 levels"
                )))
            }
        };
        m.mode.set(mode);
        Ok(())
    })
}

/// Drop every cached translation (needed only for a live domain whose guest ran outside
/// `xvmi_session_run`; see [`xvmi_memory_open_domain`]).
///
/// # Safety
/// `mem` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn xvmi_memory_flush(mem: *const xvmi_memory) -> xvmi_result {
    boundary(|| {
        let m = arg_handle(mem, "mem")?;
        m.get().flush_translations();
        Ok(())
    })
}

/// Number of vCPUs the source has (0 for raw and LiME images).
///
/// # Safety
/// `mem` is NULL or a live handle; `out_count` is valid for a write.
#[no_mangle]
pub unsafe extern "C" fn xvmi_memory_vcpu_count(
    mem: *const xvmi_memory,
    out_count: *mut u32,
) -> xvmi_result {
    boundary(|| {
        let m = arg_handle(mem, "mem")?;
        let out = arg_out(out_count, "out_count")?;
        let n = m.get().backend().vcpu_count();
        // SAFETY: checked by arg_out.
        unsafe { put(out, n) };
        Ok(())
    })
}

/// Registers of vCPU `vcpu`. [`XVMI_ERR_NO_SUCH_VCPU`] if `vcpu` is out of range.
///
/// # Safety
/// `mem` is NULL or a live handle; `out` is valid for a write.
#[no_mangle]
pub unsafe extern "C" fn xvmi_memory_registers(
    mem: *const xvmi_memory,
    vcpu: u32,
    out: *mut xvmi_registers,
) -> xvmi_result {
    boundary(|| {
        let m = arg_handle(mem, "mem")?;
        let out = arg_out(out, "out")?;
        let r = m.get().backend().registers(VcpuId(vcpu))?;
        // SAFETY: checked by arg_out.
        unsafe { put(out, xvmi_registers::from(&r)) };
        Ok(())
    })
}

/// Number of backed guest-physical regions (sorted by address; see [`xvmi_memory_region`]).
///
/// # Safety
/// `mem` is NULL or a live handle; `out_count` is valid for a write.
#[no_mangle]
pub unsafe extern "C" fn xvmi_memory_region_count(
    mem: *const xvmi_memory,
    out_count: *mut usize,
) -> xvmi_result {
    boundary(|| {
        let m = arg_handle(mem, "mem")?;
        let out = arg_out(out_count, "out_count")?;
        let n = m.get().backend().physical_range_count();
        // SAFETY: checked by arg_out.
        unsafe { put(out, n) };
        Ok(())
    })
}

/// Backed region number `index` (0-based, below [`xvmi_memory_region_count`]);
/// [`XVMI_ERR_NOT_FOUND`] past the last one.
///
/// # Safety
/// `mem` is NULL or a live handle; `out` is valid for a write.
#[no_mangle]
pub unsafe extern "C" fn xvmi_memory_region(
    mem: *const xvmi_memory,
    index: usize,
    out: *mut xvmi_region,
) -> xvmi_result {
    boundary(|| {
        let m = arg_handle(mem, "mem")?;
        let out = arg_out(out, "out")?;
        let b = m.get().backend();
        let r = b.physical_range(index).ok_or_else(|| {
            Fail::new(
                XVMI_ERR_NOT_FOUND,
                format!(
                    "region {index} does not exist ({} regions)",
                    b.physical_range_count()
                ),
            )
        })?;
        // SAFETY: checked by arg_out.
        unsafe {
            put(
                out,
                xvmi_region {
                    start: r.start,
                    length: r.end - r.start,
                },
            )
        };
        Ok(())
    })
}

impl Handle for xvmi_memory {
    const KIND: &'static str = "xvmi_memory";
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::Gfn;
    use crate::capi::domain::Domain;
    use crate::capi::{xvmi_domain_free, xvmi_sim_open_buffer};
    use std::ptr::null_mut;

    fn last_error() -> String {
        let mut b = [0 as c_char; 1024];
        // SAFETY: a 1024-byte buffer; no length output.
        unsafe { xvmi_last_error(b.as_mut_ptr(), b.len(), null_mut()) };
        // SAFETY: NUL-terminated by xvmi_last_error.
        unsafe { std::ffi::CStr::from_ptr(b.as_ptr()) }
            .to_string_lossy()
            .into_owned()
    }

    /// A simulated domain over 64 KiB whose page `n` is filled with byte `n`, and a memory
    /// handle on it.
    fn domain() -> (*mut xvmi_domain, *mut xvmi_memory) {
        let img: Vec<u8> = (0..0x10000u32).map(|i| (i >> 12) as u8).collect();
        let regs = [xvmi_registers::default()];
        let (mut d, mut m) = (null_mut(), null_mut());
        // SAFETY: a live image and register array, outputs on the stack.
        unsafe {
            assert_eq!(
                xvmi_sim_open_buffer(img.as_ptr(), img.len(), regs.as_ptr(), 1, &mut d),
                XVMI_OK
            );
            assert_eq!(xvmi_memory_open_domain(d, &mut m), XVMI_OK);
        }
        (d, m)
    }

    fn read(m: *const xvmi_memory, gpa: u64, len: usize) -> Vec<u8> {
        let mut b = vec![0u8; len];
        // SAFETY: a live handle and a buffer of `len` bytes.
        let rc = unsafe { xvmi_memory_read_physical(m, gpa, b.as_mut_ptr(), len) };
        assert_eq!(rc, XVMI_OK, "{}", last_error());
        b
    }

    fn sim(m: *const xvmi_memory) -> Arc<DomainShared> {
        // SAFETY: a live handle from xvmi_memory_open_domain.
        let (d, _) = unsafe { &*m }.live.as_ref().expect("a domain's memory");
        assert!(matches!(d.backend, Domain::Sim(_)));
        Arc::clone(d)
    }

    #[test]
    fn a_write_that_fails_part_way_is_undone() {
        let (d, m) = domain();
        let shared = sim(m);
        shared.sim().unwrap().refuse_writes_to([Gfn(3)]);
        let before = read(m, 0x1800, 0x2000);
        let data = vec![0xeeu8; 0x2000];
        // Pages 1 and 2 are written, page 3 refuses: both are restored.
        // SAFETY: live handle, buffer of 0x2000 bytes.
        let rc = unsafe { xvmi_memory_write_physical(m, 0x1800, data.as_ptr(), data.len()) };
        assert_eq!(rc, XVMI_ERR_BACKEND);
        let msg = last_error();
        assert!(msg.contains("0x1800 bytes, which were restored"), "{msg}");
        assert!(msg.contains("nothing was written"), "{msg}");
        assert_eq!(read(m, 0x1800, 0x2000), before);
        // What is writable still is.
        // SAFETY: as above, 0x800 bytes.
        let rc = unsafe { xvmi_memory_write_physical(m, 0x1800, data.as_ptr(), 0x800) };
        assert_eq!(rc, XVMI_OK, "{}", last_error());
        assert_eq!(read(m, 0x1800, 0x800), vec![0xee; 0x800]);
        // SAFETY: live handles, freed once.
        unsafe {
            assert_eq!(xvmi_memory_free(m), XVMI_OK);
            assert_eq!(xvmi_domain_free(d), XVMI_OK);
        }
    }

    #[test]
    fn a_write_past_the_backed_memory_writes_nothing() {
        let (d, m) = domain();
        let gen = sim(m).generation.load(Ordering::SeqCst);
        let data = [0xaau8; 0x1000];
        // SAFETY: live handle, 0x1000-byte buffer.
        let rc = unsafe { xvmi_memory_write_physical(m, 0xf800, data.as_ptr(), data.len()) };
        assert_eq!(rc, XVMI_ERR_NOT_MAPPED);
        assert!(
            last_error().contains("nothing was written"),
            "{}",
            last_error()
        );
        assert_eq!(read(m, 0xf800, 0x800), vec![0x0f; 0x800]);
        // SAFETY: as above; the last byte of the address space.
        let rc = unsafe { xvmi_memory_write_physical(m, u64::MAX, data.as_ptr(), 2) };
        assert_eq!(rc, XVMI_ERR_OVERFLOW);
        // A write that happens drops the translations of every handle on the domain.
        // SAFETY: as above.
        let rc = unsafe { xvmi_memory_write_physical(m, 0x2ffe, data.as_ptr(), 4) };
        assert_eq!(rc, XVMI_OK);
        assert_eq!(read(m, 0x2ffc, 8), [2, 2, 0xaa, 0xaa, 0xaa, 0xaa, 3, 3]);
        assert!(sim(m).generation.load(Ordering::SeqCst) > gen);
        // SAFETY: live handles, freed once.
        unsafe {
            assert_eq!(xvmi_memory_free(m), XVMI_OK);
            assert_eq!(xvmi_domain_free(d), XVMI_OK);
        }
    }

    #[test]
    fn snapshots_and_images_are_read_only() {
        let img = vec![7u8; 0x2000];
        let mut m = null_mut();
        // SAFETY: a live image, output on the stack.
        unsafe {
            assert_eq!(
                xvmi_memory_open_buffer(img.as_ptr(), img.len(), &mut m),
                XVMI_OK
            );
            let data = [1u8; 4];
            assert_eq!(
                xvmi_memory_write_physical(m, 0, data.as_ptr(), 4),
                XVMI_ERR_UNSUPPORTED
            );
            assert!(last_error().contains("read-only"), "{}", last_error());
            assert_eq!(
                xvmi_memory_write_virtual(m, 0x1000, 0, data.as_ptr(), 4),
                XVMI_ERR_UNSUPPORTED
            );
            assert_eq!(
                xvmi_memory_write_physical(m, 0, std::ptr::null(), 4),
                XVMI_ERR_NULL_POINTER
            );
            assert_eq!(read(m, 0, 4), [7; 4]);
            assert_eq!(xvmi_memory_free(m), XVMI_OK);
        }
    }
}
