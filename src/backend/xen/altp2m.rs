//! altp2m: the domain's alternate p2m views and per-view access rights, through the control
//! interface. There is no handle of its own to close: the views belong to the domain, and
//! whoever creates them owns their teardown (`event::View`, the session's journal).

use super::{check, errno_reason, fail, sys, XenDomain};
use crate::addr::{Gfn, Gpa, ViewId, PAGE_SIZE};
use crate::backend::{MemAccess, PhysicalMemory, PhysicalMemoryWrite, ViewControl};
use crate::error::Result;

/// Map `MemAccess` bits to `xenmem_access_t` (n=0, r=1, w=2, rw=3, x=4, rx=5, wx=6, rwx=7 — the
/// same bit values).
fn to_xenmem(a: MemAccess) -> u32 {
    a.bits() as u32
}

/// Map a `xenmem_access_t` read back from Xen to what the guest can do with the frame now.
/// `xen` is the hypervisor's (major, minor): 4.20 inserted `XENMEM_access_r_pw` (read-only, but
/// the CPU's page-walk A/D updates allowed) as 10 and moved "default" from 10 to 11.
fn from_xenmem(v: u32, xen: (u32, u32)) -> MemAccess {
    match v {
        0..=7 => MemAccess::from_bits_truncate(v as u8),
        // rx2rw (8): read/execute until the first write; n2rwx (9): nothing until first use.
        8 => MemAccess::R | MemAccess::X,
        9 => MemAccess::empty(),
        10 if xen >= (4, 20) => MemAccess::R,
        // default (10 before 4.20, 11 from 4.20): the domain's default, all rights.
        _ => MemAccess::all(),
    }
}

impl XenDomain {
    fn need_altp2m(&self) -> Result<()> {
        if self.caps.altp2m_mode == sys::XEN_ALTP2M_disabled as u64 {
            return Err(fail(
                format!("altp2m on domain {}", self.domid),
                format!(
                    "altp2m is off for domain {}: set altp2m=\"external\" in its xl config and boot Xen with altp2m=1",
                    self.domid
                ),
            ));
        }
        Ok(())
    }

    /// Whether altp2m view `view` exists in the domain (view 0, the host p2m, always does).
    /// Asks Xen for an access right in the view: a view that does not exist (or altp2m being
    /// off) answers EINVAL.
    ///
    /// # Errors
    /// [`Error::Backend`](crate::Error::Backend) for any other failure.
    pub fn view_exists(&self, view: ViewId) -> Result<bool> {
        if view.0 == 0 {
            return Ok(true);
        }
        let mut a = 0u32;
        // SAFETY: valid handle; out-parameter.
        let rc = unsafe {
            (self.libs().xc_altp2m_get_mem_access)(self.xch(), self.domid, view.0, 0, &mut a)
        };
        if rc >= 0 {
            return Ok(true);
        }
        match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::EINVAL) | Some(libc::EOPNOTSUPP) => Ok(false),
            // ESRCH: the view exists but has not copied gfn 0 from the host p2m yet.
            Some(libc::ESRCH) => Ok(true),
            _ => Err(fail(
                format!("checking whether view {view} exists"),
                errno_reason("", ""),
            )),
        }
    }

    /// The views other than view 0 that exist (Xen 4.17 has at most [`MAX_VIEWS`] - 1).
    ///
    /// # Errors
    /// As [`XenDomain::view_exists`].
    pub fn views(&self) -> Result<Vec<ViewId>> {
        let mut v = Vec::new();
        for i in 1..MAX_VIEWS {
            if self.view_exists(ViewId(i))? {
                v.push(ViewId(i));
            }
        }
        Ok(v)
    }
}

/// altp2m views per domain in Xen 4.17 (`MAX_ALTP2M`), view 0 included.
pub const MAX_VIEWS: u16 = 10;

/// Gfns per `xc_altp2m_set_mem_access_multi` call when a new view is filled.
const POPULATE_BATCH: usize = 4096;

impl XenDomain {
    /// Up to Xen 4.18, a new view copies each entry from the host p2m on the gfn's first EPT
    /// violation, with the host's access and not the view's default (Xen 4.19, commit
    /// 7e5b662b28, fixed that). A view created with a restrictive default would not restrict
    /// what the guest had not touched yet, so on those releases such a view gets every gfn's
    /// entry now, with its default. Xen skips gfns that are not ordinary RAM (holes, MMIO).
    /// A view with every right needs nothing: a lazily copied entry is the host's, which is
    /// what the view shows anyway.
    fn populate_view(&self, view: ViewId, access: MemAccess) -> Result<()> {
        if access == MemAccess::all() || self.caps.xen_version >= (4, 19) {
            return Ok(());
        }
        let end = self.max_gfn().0.saturating_add(1);
        let mut gfns: Vec<u64> = Vec::with_capacity(POPULATE_BATCH);
        let mut access_list = vec![to_xenmem(access) as u8; POPULATE_BATCH];
        let mut g = 0u64;
        while g < end {
            let n = (POPULATE_BATCH as u64).min(end - g);
            gfns.clear();
            gfns.extend(g..g + n);
            // SAFETY: valid handle; both arrays hold at least `n` elements (n <= 4096 fits in
            // u32) and outlive the call, which only reads them.
            let rc = unsafe {
                (self.libs().xc_altp2m_set_mem_access_multi)(
                    self.xch(),
                    self.domid,
                    view.0,
                    access_list.as_mut_ptr(),
                    gfns.as_mut_ptr(),
                    n as u32,
                )
            };
            check(
                rc,
                format!("filling view {view} (gfns {g:#x}..{:#x})", g + n),
            )?;
            g += n;
        }
        Ok(())
    }
}

impl ViewControl for XenDomain {
    fn create_view(&self, default_access: MemAccess) -> Result<ViewId> {
        self.need_altp2m()?;
        // SAFETY: valid handle.
        let rc = unsafe { (self.libs().xc_altp2m_set_domain_state)(self.xch(), self.domid, true) };
        check(rc, "xc_altp2m_set_domain_state")?;
        let mut v = 0u16;
        // SAFETY: valid handle, out-parameter.
        let rc = unsafe {
            (self.libs().xc_altp2m_create_view)(
                self.xch(),
                self.domid,
                to_xenmem(default_access),
                &mut v,
            )
        };
        check(rc, "xc_altp2m_create_view")?;
        let view = ViewId(v);
        if let Err(e) = self.populate_view(view, default_access) {
            // Nothing half-made: a view that could not be filled is not handed out.
            // SAFETY: valid handle; the view was created just above and nobody uses it yet.
            unsafe { (self.libs().xc_altp2m_destroy_view)(self.xch(), self.domid, v) };
            return Err(e);
        }
        Ok(view)
    }

    fn destroy_view(&self, view: ViewId) -> Result<()> {
        // SAFETY: valid handle.
        let rc = unsafe { (self.libs().xc_altp2m_destroy_view)(self.xch(), self.domid, view.0) };
        check(rc, format!("destroying view {view}"))?;
        // The last view is gone: turn altp2m off again, as it was before the first view (a
        // domain with altp2m on and no view behaves like one with it off, but keeps VMFUNC
        // and #VE machinery live). Xen is asked which views exist rather than this handle
        // counting its own: recovery destroys views a dead monitor created.
        if self.views()?.is_empty() {
            // SAFETY: valid handle.
            let rc =
                unsafe { (self.libs().xc_altp2m_set_domain_state)(self.xch(), self.domid, false) };
            check(rc, "turning altp2m off after the last view")?;
        }
        Ok(())
    }

    fn switch_view(&self, view: ViewId) -> Result<()> {
        // SAFETY: valid handle.
        let rc = unsafe { (self.libs().xc_altp2m_switch_to_view)(self.xch(), self.domid, view.0) };
        if rc < 0
            && view.0 == 0
            && std::io::Error::last_os_error().raw_os_error() == Some(libc::EOPNOTSUPP)
        {
            // altp2m is off (`destroy_view` turns it off with the last view, which a session
            // may destroy before its teardown switches back): every vCPU uses the host p2m,
            // which is what view 0 asks for.
            return Ok(());
        }
        check(rc, format!("switching to view {view}"))
    }

    fn set_mem_access(&self, view: ViewId, gfn: Gfn, access: MemAccess) -> Result<()> {
        // SAFETY: valid handle; plain values.
        let rc = unsafe {
            if view.0 == 0 {
                (self.libs().xc_set_mem_access)(self.xch(), self.domid, to_xenmem(access), gfn.0, 1)
            } else {
                (self.libs().xc_altp2m_set_mem_access)(
                    self.xch(),
                    self.domid,
                    view.0,
                    gfn.0 as sys::xen_pfn_t,
                    to_xenmem(access),
                )
            }
        };
        check(rc, format!("setting access of gfn {gfn} in view {view}"))
    }

    fn mem_access(&self, view: ViewId, gfn: Gfn) -> Result<MemAccess> {
        let mut a = 0u32;
        if view.0 != 0 {
            // SAFETY: valid handle; out-parameter.
            let rc = unsafe {
                (self.libs().xc_altp2m_get_mem_access)(
                    self.xch(),
                    self.domid,
                    view.0,
                    gfn.0 as sys::xen_pfn_t,
                    &mut a,
                )
            };
            if rc >= 0 {
                return Ok(from_xenmem(a, self.caps.xen_version));
            }
            // A new view is empty and copies entries from the host p2m on first use; until then
            // Xen answers ESRCH. Up to 4.18 the copied entry takes the host's access, so that is
            // the access this gfn has (seen on Xen 4.17 under Bochs).
            if std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH) {
                return Err(fail(
                    format!("reading access of gfn {gfn} in view {view}"),
                    errno_reason("", ""),
                ));
            }
        }
        // SAFETY: valid handle; out-parameter.
        let rc = unsafe { (self.libs().xc_get_mem_access)(self.xch(), self.domid, gfn.0, &mut a) };
        check(rc, format!("reading access of gfn {gfn} in view {view}"))?;
        Ok(from_xenmem(a, self.caps.xen_version))
    }

    fn change_gfn(&self, view: ViewId, gfn: Gfn, target: Option<Gfn>) -> Result<()> {
        let new = target.map(|t| t.0 as sys::xen_pfn_t).unwrap_or(!0);
        // SAFETY: valid handle; ~0 reverts the remap.
        let rc = unsafe {
            (self.libs().xc_altp2m_change_gfn)(
                self.xch(),
                self.domid,
                view.0,
                gfn.0 as sys::xen_pfn_t,
                new,
            )
        };
        check(rc, format!("remapping gfn {gfn} in view {view}"))
    }

    fn set_suppress_ve(&self, view: ViewId, gfn: Gfn, suppress: bool) -> Result<()> {
        // SAFETY: valid handle; plain values.
        let rc = unsafe {
            (self.libs().xc_altp2m_set_suppress_ve)(
                self.xch(),
                self.domid,
                view.0,
                gfn.0 as sys::xen_pfn_t,
                suppress,
            )
        };
        check(rc, format!("suppress-#VE of gfn {gfn} in view {view}"))
    }

    fn set_view_visibility(&self, view: ViewId, visible: bool) -> Result<()> {
        // SAFETY: valid handle; plain values.
        let rc = unsafe {
            (self.libs().xc_altp2m_set_visibility)(self.xch(), self.domid, view.0, visible)
        };
        check(rc, format!("visibility of view {view}"))
    }

    fn alloc_frame(&self) -> Result<Gfn> {
        let mut info = sys::xc_domaininfo_t::default();
        // SAFETY: valid handle; one record written to `info`.
        let n =
            unsafe { (self.libs().xc_domain_getinfolist)(self.xch(), self.domid, 1, &mut info) };
        if n != 1 {
            return Err(fail("xc_domain_getinfolist", errno_reason("", "")));
        }
        // One more page of allowance (in KiB), then populate the frame above the highest gfn.
        let kib = (info.max_pages + 1) * (PAGE_SIZE / 1024);
        // SAFETY: valid handle; plain values.
        let rc = unsafe { (self.libs().xc_domain_setmaxmem)(self.xch(), self.domid, kib) };
        check(rc, "raising the domain's memory limit for a shadow page")?;
        let mut gfn: sys::xen_pfn_t = (self.max_gfn().0 + 1) as sys::xen_pfn_t;
        // SAFETY: valid handle; one extent of order 0 at `gfn`, written back on success.
        let rc = unsafe {
            (self.libs().xc_domain_populate_physmap_exact)(
                self.xch(),
                self.domid,
                1,
                0,
                0,
                &mut gfn,
            )
        };
        check(rc, "populating a shadow page")?;
        self.write_physical(Gpa((gfn as u64) << 12), &[0u8; PAGE_SIZE as usize])?;
        Ok(Gfn(gfn as u64))
    }

    fn free_frame(&self, gfn: Gfn) -> Result<()> {
        self.fmem.forget(gfn.0);
        let mut pfn = gfn.0 as sys::xen_pfn_t;
        // SAFETY: valid handle; one extent of order 0.
        let rc = unsafe {
            (self.libs().xc_domain_decrease_reservation_exact)(
                self.xch(),
                self.domid,
                1,
                0,
                &mut pfn,
            )
        };
        check(rc, format!("releasing shadow page {gfn}"))?;
        let mut info = sys::xc_domaininfo_t::default();
        // SAFETY: valid handle; one record written to `info`.
        if unsafe { (self.libs().xc_domain_getinfolist)(self.xch(), self.domid, 1, &mut info) } == 1
            && info.max_pages > 0
        {
            // SAFETY: valid handle; give the page of allowance back.
            let rc = unsafe {
                (self.libs().xc_domain_setmaxmem)(
                    self.xch(),
                    self.domid,
                    (info.max_pages - 1) * (PAGE_SIZE / 1024),
                )
            };
            check(rc, "lowering the domain's memory limit")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_values_follow_the_hypervisor_version() {
        for v in 0..8u32 {
            assert_eq!(
                from_xenmem(v, (4, 17)),
                MemAccess::from_bits_truncate(v as u8)
            );
            assert_eq!(to_xenmem(from_xenmem(v, (4, 20))), v);
        }
        assert_eq!(from_xenmem(10, (4, 17)), MemAccess::all());
        assert_eq!(from_xenmem(10, (4, 20)), MemAccess::R);
        assert_eq!(from_xenmem(11, (4, 20)), MemAccess::all());
        assert_eq!(from_xenmem(8, (4, 20)), MemAccess::R | MemAccess::X);
    }
}
