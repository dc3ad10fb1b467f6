//! Foreign memory: libxenforeignmemory's handle with its cache of read-only page mappings
//! ([`ForeignMemory`]), and the domain's physical memory read and written through it.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::c_void;
use std::ops::Range;
use std::ptr::NonNull;
use std::rc::Rc;

use super::lib::XenLibs;
use super::{errno_reason, fail, sys, XenDomain, NAME};
use crate::addr::{Gfn, Gpa, PAGE_SIZE};
use crate::backend::{PhysicalMemory, PhysicalMemoryWrite};
use crate::error::{Error, Result};

/// Foreign mappings kept at most (one page each).
const MAP_CACHE: usize = 1024;
/// Frames mapped by one call in a bulk read (`read_pages`).
const MAP_BATCH: usize = 1024;

/// A mapped foreign page.
struct Mapped(*mut u8);

/// libxenforeignmemory's handle (`xenforeignmemory_open`) and the read-only mappings of guest
/// frames it keeps between reads. On drop every cached mapping is unmapped, then the handle is
/// closed.
pub(super) struct ForeignMemory {
    handle: NonNull<c_void>,
    maps: RefCell<HashMap<u64, Mapped>>,
    libs: Rc<XenLibs>,
}

impl ForeignMemory {
    /// Open libxenforeignmemory (`/dev/xen/privcmd`).
    pub(super) fn open(libs: Rc<XenLibs>) -> Result<ForeignMemory> {
        // SAFETY: NULL logger, flags 0. The handle is closed by this type's Drop.
        let fmem = unsafe { (libs.xenforeignmemory_open)(std::ptr::null_mut(), 0) };
        let Some(handle) = NonNull::new(fmem) else {
            return Err(fail(
                "xenforeignmemory_open",
                errno_reason("opening /dev/xen/privcmd", ""),
            ));
        };
        Ok(ForeignMemory {
            handle,
            maps: RefCell::new(HashMap::new()),
            libs,
        })
    }

    fn as_ptr(&self) -> *mut c_void {
        self.handle.as_ptr()
    }

    /// Unmap every cached mapping.
    pub(super) fn unmap_all(&self) {
        for (_, m) in self.maps.borrow_mut().drain() {
            // SAFETY: each pointer was returned by xenforeignmemory_map for one page, and no
            // reference into it outlives the read or write that used it.
            unsafe { (self.libs.xenforeignmemory_unmap)(self.as_ptr(), m.0 as *mut c_void, 1) };
        }
    }

    /// Unmap the cached mapping of `gfn`, if there is one (the frame is about to go).
    pub(super) fn forget(&self, gfn: u64) {
        if let Some(m) = self.maps.borrow_mut().remove(&gfn) {
            // SAFETY: mapped by xenforeignmemory_map for one page.
            unsafe { (self.libs.xenforeignmemory_unmap)(self.as_ptr(), m.0 as *mut c_void, 1) };
        }
    }

    /// A read-only mapping of one frame of domain `domid` (cached until the cache is full or
    /// [`ForeignMemory::unmap_all`]); `None` if Xen cannot map it.
    fn map(&self, domid: u32, gfn: u64) -> Option<*mut u8> {
        if let Some(m) = self.maps.borrow().get(&gfn) {
            return Some(m.0);
        }
        if self.maps.borrow().len() >= MAP_CACHE {
            self.unmap_all();
        }
        let p = self.map_uncached(domid, gfn, libc::PROT_READ)?;
        self.maps.borrow_mut().insert(gfn, Mapped(p));
        Some(p)
    }

    /// Copy the frames `first..first + present.len()` of domain `domid` into `buf`, mapped
    /// read-only [`MAP_BATCH`] at a time with one error slot per frame; `present[i]` tells
    /// whether frame `i` could be mapped.
    fn copy_frames(&self, domid: u32, first: u64, buf: &mut [u8], present: &mut [bool]) {
        let page = PAGE_SIZE as usize;
        for (k, (bufs, pres)) in buf
            .chunks_mut(MAP_BATCH * page)
            .zip(present.chunks_mut(MAP_BATCH))
            .enumerate()
        {
            let n = pres.len();
            let base = first + (k * MAP_BATCH) as u64;
            let pfns: Vec<sys::xen_pfn_t> = (0..n as u64)
                .map(|i| (base + i) as sys::xen_pfn_t)
                .collect();
            let mut errs = vec![0i32; n];
            // SAFETY: valid handle (this value's, open until Drop); `pfns` and `errs` both hold
            // exactly `n` elements, as the call's count says. With an error array the call maps
            // what it can and reports each frame's failure there instead of failing whole.
            let p = unsafe {
                (self.libs.xenforeignmemory_map)(
                    self.as_ptr(),
                    domid,
                    libc::PROT_READ,
                    n,
                    pfns.as_ptr(),
                    errs.as_mut_ptr(),
                )
            };
            if p.is_null() {
                pres.fill(false);
                continue;
            }
            let p = p as *const u8;
            for (i, (dst, ok)) in bufs.chunks_exact_mut(page).zip(pres.iter_mut()).enumerate() {
                *ok = errs[i] == 0;
                if *ok {
                    // SAFETY: the mapping spans `n` pages from `p` and frame `i < n` mapped
                    // (its error slot is 0; a failed frame's page is never touched: privcmd
                    // leaves it unpopulated and a read there would raise SIGBUS). The guest
                    // may write the page meanwhile, like DMA: bytes are copied out, no
                    // reference is kept.
                    unsafe {
                        std::ptr::copy_nonoverlapping(p.add(i * page), dst.as_mut_ptr(), page)
                    };
                }
            }
            // SAFETY: `p` is the start of this call's mapping of `n` pages, unmapped once, here;
            // nothing refers into it any more.
            unsafe { (self.libs.xenforeignmemory_unmap)(self.as_ptr(), p as *mut c_void, n) };
        }
    }

    /// A new mapping of one frame of domain `domid` with `prot`; the caller unmaps it (or
    /// caches it). `None` if Xen cannot map it.
    fn map_uncached(&self, domid: u32, gfn: u64, prot: i32) -> Option<*mut u8> {
        let pfn: sys::xen_pfn_t = gfn as sys::xen_pfn_t;
        let mut err: i32 = 0;
        // SAFETY: valid handle (this value's, open until Drop); one frame number in, one error
        // slot out.
        let p = unsafe {
            (self.libs.xenforeignmemory_map)(self.as_ptr(), domid, prot, 1, &pfn, &mut err)
        };
        if p.is_null() || err != 0 {
            return None;
        }
        Some(p as *mut u8)
    }
}

impl Drop for ForeignMemory {
    fn drop(&mut self) {
        self.unmap_all();
        // SAFETY: the handle came from xenforeignmemory_open, its mappings are gone, and it is
        // closed once, here.
        unsafe { (self.libs.xenforeignmemory_close)(self.as_ptr()) };
    }
}

impl XenDomain {
    /// The error for a frame that could not be mapped.
    fn unmapped(&self, gfn: Gfn) -> Error {
        Error::PhysicalUnmapped {
            gpa: Gpa(gfn.0 << 12),
            len: PAGE_SIZE as usize,
            backend: NAME,
            max: Gpa(self.max_gfn().0 << 12),
        }
    }
}

impl PhysicalMemory for XenDomain {
    fn name(&self) -> &'static str {
        NAME
    }

    fn read_physical(&self, gpa: Gpa, buf: &mut [u8]) -> Result<()> {
        let mut done = 0;
        while done < buf.len() {
            let cur = gpa
                .checked_add(done as u64)
                .ok_or(Error::Overflow("Xen physical read"))?;
            let n = ((PAGE_SIZE - cur.page_offset()) as usize).min(buf.len() - done);
            let p = self
                .fmem
                .map(self.domid, cur.gfn().0)
                .ok_or_else(|| self.unmapped(cur.gfn()))?;
            // SAFETY: `p` maps one whole page; offset + n stays inside it. The guest may write
            // the page concurrently (like DMA): bytes are copied out, no reference is kept.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    p.add(cur.page_offset() as usize),
                    buf[done..].as_mut_ptr(),
                    n,
                )
            };
            done += n;
        }
        Ok(())
    }

    /// The guest ran: a cached mapping may show a page the frame no longer has.
    fn drop_cached_mappings(&self) {
        self.fmem.unmap_all();
    }

    fn read_pages(&self, first: Gfn, buf: &mut [u8], present: &mut [bool]) -> Result<()> {
        crate::backend::check_pages(first, buf, present)?;
        self.fmem.copy_frames(self.domid, first.0, buf, present);
        Ok(())
    }

    fn physical_ranges(&self) -> Vec<Range<u64>> {
        let end = (self.max_gfn().0 + 1) << 12;
        std::iter::once(0..end).collect()
    }

    fn max_gfn(&self) -> Gfn {
        let mut g: sys::xen_pfn_t = 0;
        // SAFETY: valid handle, out-parameter.
        unsafe { (self.libs().xc_domain_maximum_gpfn)(self.xch(), self.domid, &mut g) };
        Gfn(g as u64)
    }
}

impl PhysicalMemoryWrite for XenDomain {
    fn write_physical(&self, gpa: Gpa, buf: &[u8]) -> Result<()> {
        let mut done = 0;
        while done < buf.len() {
            let cur = gpa
                .checked_add(done as u64)
                .ok_or(Error::Overflow("Xen physical write"))?;
            let n = ((PAGE_SIZE - cur.page_offset()) as usize).min(buf.len() - done);
            // Reads map frames read-only; a write maps its frame writable for the copy only.
            let p = self
                .fmem
                .map_uncached(self.domid, cur.gfn().0, libc::PROT_READ | libc::PROT_WRITE)
                .ok_or_else(|| self.unmapped(cur.gfn()))?;
            // SAFETY: `p` maps one whole page writable; offset + n stays inside it; unmapped
            // right after, no reference kept.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    buf[done..].as_ptr(),
                    p.add(cur.page_offset() as usize),
                    n,
                );
                (self.fmem.libs.xenforeignmemory_unmap)(self.fmem.as_ptr(), p as *mut c_void, 1);
            };
            done += n;
        }
        Ok(())
    }
}
