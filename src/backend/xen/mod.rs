//! The Xen backend (feature `xen`): a live HVM domain through libxenctrl, libxenevtchn and
//! libxenforeignmemory (loaded at run time, see [`lib`]).
//!
//! [`XenDomain::open`] checks, before anything else, that the hypervisor speaks vm_event
//! interface 7, then runs a capability preflight on the domain (HVM, HAP, altp2m mode,
//! monitor capabilities, single-step support) and reports every missing piece as an actionable
//! error. Without Xen, opening fails with the device and errno that failed.
//!
//! This is the only module besides the coming C ABI that uses `unsafe`; every block carries a
//! `// SAFETY:` comment.
#![allow(unsafe_code)]

pub mod lib;
pub mod sys;

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{c_void, CStr, CString};
use std::ops::Range;
use std::time::Duration;

use crate::addr::{DomId, Gfn, Gpa, VcpuId, ViewId, PAGE_SIZE};
use crate::backend::{
    ControlRegister, EventChannel, EventControl, EventInjection, Injection, MemAccess, Monitor,
    PhysicalMemory, PhysicalMemoryWrite, VcpuState, VcpuStateWrite, ViewControl, VmControl,
};
use crate::error::{Error, Result};
use crate::regs::Registers;
use crate::vmevent::abi::INTERFACE_VERSION;
use crate::vmevent::ring::RingPage;
use lib::XenLibs;

const NAME: &str = "Xen domain";
/// `HVM_SAVE_CODE(CPU)` (a macro bindgen does not emit).
const HVM_SAVE_CODE_CPU: u16 = 2;
/// Foreign mappings kept at most (one page each).
const MAP_CACHE: usize = 1024;

/// What the domain and hypervisor can do, from the preflight.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// `xc_version`: (major, minor).
    pub xen_version: (u32, u32),
    /// The hypervisor's vm_event interface version.
    pub vm_event_version: u32,
    /// HVM guest.
    pub hvm: bool,
    /// Hardware-assisted paging (EPT): needed for vm_event.
    pub hap: bool,
    /// `HVM_PARAM_ALTP2M` (0 disabled, 1 mixed, 2 external, 3 limited).
    pub altp2m_mode: u64,
    /// `xc_monitor_get_capabilities` bitmap (1 << `XEN_DOMCTL_MONITOR_EVENT_*`).
    pub monitor: u32,
    /// Number of vCPUs.
    pub vcpus: u32,
    /// The domain's UUID (`xc_domain_getinfolist`'s handle; `xl list -v` shows it).
    pub uuid: [u8; 16],
}

impl Capabilities {
    /// Whether single-step events are supported (the CPU has the monitor trap flag).
    pub fn singlestep(&self) -> bool {
        self.monitor & (1 << sys::XEN_DOMCTL_MONITOR_EVENT_SINGLESTEP) != 0
    }
}

/// A mapped foreign page.
struct Mapped(*mut u8);

/// The vm_event ring and event channel, once enabled.
struct Events {
    ring: *mut c_void,
    evtchn: *mut c_void,
    local_port: u32,
}

/// A live Xen HVM domain.
pub struct XenDomain {
    libs: XenLibs,
    xch: *mut c_void,
    fmem: *mut c_void,
    domid: u32,
    caps: Capabilities,
    maps: RefCell<HashMap<u64, Mapped>>,
    events: RefCell<Option<Events>>,
    /// Ring pages of closed rings: kept mapped until drop, because a `&RingPage` handed out
    /// earlier may still be alive.
    retired_rings: RefCell<Vec<*mut c_void>>,
    /// Stands in for the ring until events are enabled (never read by Xen).
    idle_ring: Box<RingPage>,
    /// `XEN_DOMCTL_MONITOR_OP_CONTROL_REGISTERS` was sent for the current ring (Xen clears it
    /// when the ring is disabled).
    registers_held: std::cell::Cell<bool>,
    /// libxendevicemodel's handle, opened on the first injection (null until then).
    dmod: std::cell::Cell<*mut c_void>,
}

impl std::fmt::Debug for XenDomain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XenDomain")
            .field("domid", &self.domid)
            .field("caps", &self.caps)
            .finish()
    }
}

fn errno_reason(what: &str, hint: &str) -> String {
    let e = std::io::Error::last_os_error();
    let code = e.raw_os_error().unwrap_or(0);
    let text = e.to_string();
    let e = text.split(" (os error").next().unwrap_or(&text);
    if hint.is_empty() {
        format!("{e} (errno {code}) {what}")
    } else {
        format!("{e} (errno {code}) {what}; {hint}")
    }
}

fn fail(operation: impl Into<String>, reason: String) -> Error {
    Error::Backend {
        backend: "Xen",
        operation: operation.into(),
        reason,
    }
}

/// The HVM save-record instance of `vcpu` (16 bits): checked before it is narrowed, so vCPU
/// 65536 is an error and not vCPU 0.
fn save_instance(vcpu: VcpuId, count: u32) -> Result<u16> {
    u16::try_from(vcpu.0)
        .ok()
        .filter(|_| vcpu.0 < count)
        .ok_or(Error::NoSuchVcpu { vcpu, count })
}

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
    /// Open a domain by id (`"3"`) or name (`"guest1"`), after checking the hypervisor's
    /// vm_event interface version and running the capability preflight.
    ///
    /// # Errors
    /// [`Error::Backend`] naming the library, device and errno that failed, or the missing
    /// capability and how to enable it.
    pub fn open(domain: &str) -> Result<XenDomain> {
        let libs = XenLibs::load()?;
        // SAFETY: NULL loggers select libxenctrl's default stderr logger; flags 0. The handle is
        // closed in Drop (or below on failure).
        let xch =
            unsafe { (libs.xc_interface_open)(std::ptr::null_mut(), std::ptr::null_mut(), 0) };
        if xch.is_null() {
            return Err(fail(
                "xc_interface_open",
                errno_reason(
                    "opening /dev/xen/privcmd (then /proc/xen/privcmd)",
                    "this host is not running Xen, or this is not dom0, or xenvmi is not run as root",
                ),
            ));
        }
        // SAFETY: as above; NULL logger, flags 0.
        let fmem = unsafe { (libs.xenforeignmemory_open)(std::ptr::null_mut(), 0) };
        let mut d = XenDomain {
            libs,
            xch,
            fmem,
            domid: 0,
            caps: Capabilities {
                xen_version: (0, 0),
                vm_event_version: 0,
                hvm: false,
                hap: false,
                altp2m_mode: 0,
                monitor: 0,
                vcpus: 0,
                uuid: [0; 16],
            },
            maps: RefCell::new(HashMap::new()),
            events: RefCell::new(None),
            retired_rings: RefCell::new(Vec::new()),
            idle_ring: RingPage::boxed(),
            registers_held: std::cell::Cell::new(false),
            dmod: std::cell::Cell::new(std::ptr::null_mut()),
        };
        if fmem.is_null() {
            return Err(fail(
                "xenforeignmemory_open",
                errno_reason("opening /dev/xen/privcmd", ""),
            ));
        }
        // Versions first: a mismatched ring format would strand vCPUs.
        // SAFETY: valid handle; XENVER_version takes a NULL argument and returns (major<<16)|minor.
        let ver =
            unsafe { (d.libs.xc_version)(d.xch, sys::XENVER_version as i32, std::ptr::null_mut()) };
        // SAFETY: valid handle.
        let vmev = unsafe { (d.libs.xc_vm_event_get_version)(d.xch) };
        d.caps.xen_version = ((ver as u32) >> 16, ver as u32 & 0xffff);
        d.caps.vm_event_version = vmev.max(0) as u32;
        if vmev != INTERFACE_VERSION as i32 {
            return Err(fail(
                "checking versions",
                format!(
                    "Xen {}.{} speaks vm_event interface {vmev}, xenvmi speaks {INTERFACE_VERSION} (Xen 4.15-4.22); \
                     using libxenctrl {}",
                    d.caps.xen_version.0, d.caps.xen_version.1, d.libs.xenctrl_soname
                ),
            ));
        }
        d.domid = d.resolve_domain(domain)?;
        d.preflight()?;
        Ok(d)
    }

    /// The domain id.
    pub fn domid(&self) -> DomId {
        DomId(self.domid as u16)
    }

    /// What the preflight found.
    pub fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    fn resolve_domain(&self, domain: &str) -> Result<u32> {
        if let Ok(id) = domain.parse::<u32>() {
            return Ok(id);
        }
        let (Some(open), Some(close), Some(read), Some(dir)) = (
            self.libs.xs_open,
            self.libs.xs_close,
            self.libs.xs_read,
            self.libs.xs_directory,
        ) else {
            return Err(fail(
                format!("looking up domain `{domain}`"),
                "libxenstore.so.4 is not available: give the domain id instead".into(),
            ));
        };
        // SAFETY: flags 0 opens the default xenstore connection; closed below.
        let h = unsafe { open(0) };
        if h.is_null() {
            return Err(fail(
                format!("looking up domain `{domain}`"),
                errno_reason("connecting to xenstored", "is xenstored running?"),
            ));
        }
        let mut found = None;
        let mut n: u32 = 0;
        let root = CString::new("/local/domain").unwrap_or_default();
        // SAFETY: valid handle, NUL-terminated path, out-parameter for the count; the returned
        // array (one allocation) is freed with libc::free below.
        let ids = unsafe { dir(h, 0, root.as_ptr(), &mut n) };
        if !ids.is_null() {
            for i in 0..n.min(65536) as usize {
                // SAFETY: `ids` has `n` valid C-string pointers (xs_directory contract).
                let id = unsafe { CStr::from_ptr(*ids.add(i)) }
                    .to_string_lossy()
                    .into_owned();
                let Ok(path) = CString::new(format!("/local/domain/{id}/name")) else {
                    continue;
                };
                let mut len: u32 = 0;
                // SAFETY: valid handle and path; the result is malloc'ed and freed below.
                let v = unsafe { read(h, 0, path.as_ptr(), &mut len) };
                if v.is_null() {
                    continue;
                }
                // SAFETY: xs_read returns `len` bytes (plus a NUL) at `v`.
                let name =
                    unsafe { std::slice::from_raw_parts(v as *const u8, len as usize) }.to_vec();
                // SAFETY: allocated by libxenstore with malloc.
                unsafe { libc::free(v) };
                if name == domain.as_bytes() {
                    found = id.parse().ok();
                    break;
                }
            }
            // SAFETY: one malloc'ed block holds the array and the strings.
            unsafe { libc::free(ids as *mut c_void) };
        }
        // SAFETY: valid handle, not used afterwards.
        unsafe { close(h) };
        found.ok_or_else(|| {
            fail(
                format!("looking up domain `{domain}`"),
                "no domain of that name in xenstore (`xl list`)".into(),
            )
        })
    }

    fn preflight(&mut self) -> Result<()> {
        let mut info = sys::xc_domaininfo_t::default();
        // SAFETY: valid handle; one record written to `info`.
        let n = unsafe { (self.libs.xc_domain_getinfolist)(self.xch, self.domid, 1, &mut info) };
        if n != 1 || info.domain as u32 != self.domid {
            return Err(fail(
                format!("opening domain {}", self.domid),
                "no such domain (`xl list` shows the ids)".into(),
            ));
        }
        self.caps.hvm = info.flags & sys::XEN_DOMINF_hvm_guest != 0;
        self.caps.hap = info.flags & sys::XEN_DOMINF_hap != 0;
        self.caps.vcpus = info.max_vcpu_id + 1;
        self.caps.uuid = info.handle;
        if !self.caps.hvm {
            return Err(fail(
                format!("opening domain {}", self.domid),
                "it is a PV guest; vm_event introspection needs an HVM or PVH guest".into(),
            ));
        }
        if !self.caps.hap {
            return Err(fail(
                format!("opening domain {}", self.domid),
                "hardware-assisted paging (EPT) is off for it; vm_event needs HAP: set hap=1 in its xl config on an Intel VT-x host".into(),
            ));
        }
        let mut mode = 0u64;
        // SAFETY: valid handle, out-parameter.
        if unsafe {
            (self.libs.xc_hvm_param_get)(self.xch, self.domid, sys::HVM_PARAM_ALTP2M, &mut mode)
        } == 0
        {
            self.caps.altp2m_mode = mode;
        }
        let mut caps = 0u32;
        // SAFETY: valid handle, out-parameter.
        if unsafe { (self.libs.xc_monitor_get_capabilities)(self.xch, self.domid, &mut caps) } != 0
        {
            return Err(fail("xc_monitor_get_capabilities", errno_reason("", "")));
        }
        self.caps.monitor = caps;
        Ok(())
    }

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

    fn check(&self, rc: i32, op: impl Into<String>) -> Result<()> {
        if rc < 0 {
            Err(fail(op, errno_reason("", "")))
        } else {
            Ok(())
        }
    }

    /// Unmap every cached mapping.
    fn unmap_all(&self) {
        for (_, m) in self.maps.borrow_mut().drain() {
            // SAFETY: each pointer was returned by xenforeignmemory_map for one page, and no
            // reference into it outlives the read or write that used it.
            unsafe { (self.libs.xenforeignmemory_unmap)(self.fmem, m.0 as *mut c_void, 1) };
        }
    }

    /// A read-only mapping of one guest frame (cached until the cache is full or
    /// `drop_cached_mappings`).
    fn map(&self, gfn: u64) -> Result<*mut u8> {
        if let Some(m) = self.maps.borrow().get(&gfn) {
            return Ok(m.0);
        }
        if self.maps.borrow().len() >= MAP_CACHE {
            self.unmap_all();
        }
        let p = self.map_uncached(gfn, libc::PROT_READ)?;
        self.maps.borrow_mut().insert(gfn, Mapped(p));
        Ok(p)
    }

    /// A new mapping of one guest frame with `prot`; the caller unmaps it (or caches it).
    fn map_uncached(&self, gfn: u64, prot: i32) -> Result<*mut u8> {
        let pfn: sys::xen_pfn_t = gfn as sys::xen_pfn_t;
        let mut err: i32 = 0;
        // SAFETY: valid handle; one frame number in, one error slot out.
        let p = unsafe {
            (self.libs.xenforeignmemory_map)(self.fmem, self.domid, prot, 1, &pfn, &mut err)
        };
        if p.is_null() || err != 0 {
            return Err(Error::PhysicalUnmapped {
                gpa: Gpa(gfn << 12),
                len: PAGE_SIZE as usize,
                backend: NAME,
                max: Gpa(self.max_gfn().0 << 12),
            });
        }
        Ok(p as *mut u8)
    }
}

impl Drop for XenDomain {
    fn drop(&mut self) {
        let _ = self.close_ring();
        self.unmap_all();
        let mut rings: Vec<*mut c_void> = self.retired_rings.borrow_mut().drain(..).collect();
        rings.extend(self.events.borrow_mut().take().map(|e| e.ring));
        for ring in rings {
            // SAFETY: each ring page was mapped by xc_monitor_enable (the caller unmaps it), and
            // no reference to it can outlive `self`.
            unsafe { libc::munmap(ring, PAGE_SIZE as usize) };
        }
        // SAFETY: handles opened in `open`, not used after this.
        unsafe {
            if !self.fmem.is_null() {
                (self.libs.xenforeignmemory_close)(self.fmem);
            }
            if !self.dmod.get().is_null() {
                (self.libs.xendevicemodel_close)(self.dmod.get());
            }
            (self.libs.xc_interface_close)(self.xch);
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
            let p = self.map(cur.gfn().0)?;
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
        self.unmap_all();
    }

    fn physical_ranges(&self) -> Vec<Range<u64>> {
        let end = (self.max_gfn().0 + 1) << 12;
        std::iter::once(0..end).collect()
    }

    fn max_gfn(&self) -> Gfn {
        let mut g: sys::xen_pfn_t = 0;
        // SAFETY: valid handle, out-parameter.
        unsafe { (self.libs.xc_domain_maximum_gpfn)(self.xch, self.domid, &mut g) };
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
            let p = self.map_uncached(cur.gfn().0, libc::PROT_READ | libc::PROT_WRITE)?;
            // SAFETY: `p` maps one whole page writable; offset + n stays inside it; unmapped
            // right after, no reference kept.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    buf[done..].as_ptr(),
                    p.add(cur.page_offset() as usize),
                    n,
                );
                (self.libs.xenforeignmemory_unmap)(self.fmem, p as *mut c_void, 1);
            };
            done += n;
        }
        Ok(())
    }
}

impl VcpuState for XenDomain {
    fn vcpu_count(&self) -> u32 {
        self.caps.vcpus
    }

    fn registers(&self, vcpu: VcpuId) -> Result<Registers> {
        let instance = save_instance(vcpu, self.caps.vcpus)?;
        let mut c = sys::hvm_hw_cpu::default();
        // SAFETY: valid handle; the CPU record of one vCPU is written into `c` (its exact size).
        let rc = unsafe {
            (self.libs.xc_domain_hvm_getcontext_partial)(
                self.xch,
                self.domid,
                HVM_SAVE_CODE_CPU,
                instance,
                &mut c as *mut _ as *mut c_void,
                std::mem::size_of::<sys::hvm_hw_cpu>() as u32,
            )
        };
        self.check(rc, format!("reading the registers of vCPU {vcpu}"))?;
        Ok(Registers {
            rax: c.rax,
            rbx: c.rbx,
            rcx: c.rcx,
            rdx: c.rdx,
            rsi: c.rsi,
            rdi: c.rdi,
            rsp: c.rsp,
            rbp: c.rbp,
            r8: c.r8,
            r9: c.r9,
            r10: c.r10,
            r11: c.r11,
            r12: c.r12,
            r13: c.r13,
            r14: c.r14,
            r15: c.r15,
            rip: c.rip,
            rflags: c.rflags,
            cr0: c.cr0,
            cr2: c.cr2,
            cr3: c.cr3,
            cr4: c.cr4,
            efer: c.msr_efer,
            cs_sel: c.cs_sel as u16,
            ss_sel: c.ss_sel as u16,
            cs_base: c.cs_base,
            ds_base: c.ds_base,
            es_base: c.es_base,
            fs_base: c.fs_base,
            gs_base: c.gs_base,
            ss_base: c.ss_base,
            kernel_gs_base: c.shadow_gs,
            gdtr_base: c.gdtr_base,
            gdtr_limit: c.gdtr_limit,
            idtr_base: c.idtr_base,
            idtr_limit: c.idtr_limit,
            sysenter_cs: c.sysenter_cs,
            sysenter_esp: c.sysenter_esp,
            sysenter_eip: c.sysenter_eip,
            msr_star: c.msr_star,
            msr_lstar: c.msr_lstar,
            msr_cstar: c.msr_cstar,
        })
    }
}

impl VcpuStateWrite for XenDomain {
    fn set_registers(&self, vcpu: VcpuId, r: &Registers) -> Result<()> {
        // Get the whole context, patch this vCPU's CPU record, set it back.
        // SAFETY: NULL buffer and size 0 ask for the size needed.
        let size = unsafe {
            (self.libs.xc_domain_hvm_getcontext)(self.xch, self.domid, std::ptr::null_mut(), 0)
        };
        self.check(size, "sizing the HVM context")?;
        let mut blob = vec![0u8; size as usize];
        // SAFETY: `blob` has the size Xen asked for.
        let got = unsafe {
            (self.libs.xc_domain_hvm_getcontext)(
                self.xch,
                self.domid,
                blob.as_mut_ptr(),
                size as u32,
            )
        };
        self.check(got, "reading the HVM context")?;
        let desc = std::mem::size_of::<sys::hvm_save_descriptor>();
        let mut off = 0usize;
        while off + desc <= got as usize {
            // Descriptor: u16 typecode, u16 instance, u32 length.
            let tc = u16::from_le_bytes([blob[off], blob[off + 1]]);
            let inst = u16::from_le_bytes([blob[off + 2], blob[off + 3]]);
            let len =
                u32::from_le_bytes([blob[off + 4], blob[off + 5], blob[off + 6], blob[off + 7]])
                    as usize;
            let body = off + desc;
            if tc == HVM_SAVE_CODE_CPU
                && inst as u32 == vcpu.0
                && len >= std::mem::size_of::<sys::hvm_hw_cpu>()
                && body + len <= blob.len()
            {
                // SAFETY: the record is a `struct hvm_hw_cpu` of at least its size (checked);
                // read and written unaligned because the blob is a byte buffer.
                let mut c: sys::hvm_hw_cpu = unsafe {
                    std::ptr::read_unaligned(blob[body..].as_ptr() as *const sys::hvm_hw_cpu)
                };
                (c.rax, c.rbx, c.rcx, c.rdx, c.rsi, c.rdi, c.rsp, c.rbp) =
                    (r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rsp, r.rbp);
                (c.r8, c.r9, c.r10, c.r11, c.r12, c.r13, c.r14, c.r15) =
                    (r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15);
                (c.rip, c.rflags, c.cr0, c.cr2, c.cr3, c.cr4) =
                    (r.rip, r.rflags, r.cr0, r.cr2, r.cr3, r.cr4);
                // SAFETY: as above.
                unsafe {
                    std::ptr::write_unaligned(blob[body..].as_mut_ptr() as *mut sys::hvm_hw_cpu, c)
                };
                // SAFETY: the patched blob has the size Xen produced.
                let rc = unsafe {
                    (self.libs.xc_domain_hvm_setcontext)(
                        self.xch,
                        self.domid,
                        blob.as_mut_ptr(),
                        got as u32,
                    )
                };
                return self.check(rc, format!("writing the registers of vCPU {vcpu}"));
            }
            off = body + len;
        }
        Err(Error::NoSuchVcpu {
            vcpu,
            count: self.caps.vcpus,
        })
    }
}

impl VmControl for XenDomain {
    fn pause(&self) -> Result<()> {
        // SAFETY: valid handle.
        let rc = unsafe { (self.libs.xc_domain_pause)(self.xch, self.domid) };
        self.check(rc, "xc_domain_pause")
    }
    fn resume(&self) -> Result<()> {
        // SAFETY: valid handle.
        let rc = unsafe { (self.libs.xc_domain_unpause)(self.xch, self.domid) };
        self.check(rc, "xc_domain_unpause")
    }
}

impl EventControl for XenDomain {
    fn set_monitor(&self, m: Monitor, on: bool) -> Result<()> {
        // Since Xen 4.15 a control-register or MSR write reported to a monitor is only held
        // back for the monitor's answer (so that DENY can cancel it) once the domain's
        // "control register values" option is on; without it Xen makes the write at once and
        // DENY does nothing. Found on real Xen with a Linux guest: the rootkit module read
        // back the value it wrote after the guard had answered DENY.
        if on
            && matches!(
                m,
                Monitor::ControlRegister { sync: true, .. } | Monitor::Msr { .. }
            )
            && !self.registers_held.get()
        {
            self.hold_register_writes()?;
            self.registers_held.set(true);
        }
        if on && m == Monitor::SingleStep && !self.caps.singlestep() {
            return Err(fail(
                "enabling single-step events",
                "the CPU lacks the monitor trap flag (Xen reports no SINGLESTEP capability for this domain)".into(),
            ));
        }
        let (x, d, l) = (self.xch, self.domid, &self.libs);
        // SAFETY: every arm calls a libxenctrl monitor function with the valid handle, the
        // domain id and plain value arguments; none retains a pointer.
        let rc = unsafe {
            match m {
                Monitor::ControlRegister {
                    register,
                    sync,
                    on_change_only,
                    ignore_mask,
                } => {
                    let idx = match register {
                        ControlRegister::Cr0 => 0,
                        ControlRegister::Cr3 => 1,
                        ControlRegister::Cr4 => 2,
                        ControlRegister::Xcr0 => 3,
                    };
                    (l.xc_monitor_write_ctrlreg)(x, d, idx, on, sync, ignore_mask, on_change_only)
                }
                Monitor::Msr {
                    index,
                    on_change_only,
                } => (l.xc_monitor_mov_to_msr)(x, d, index, on, on_change_only),
                Monitor::SingleStep => (l.xc_monitor_singlestep)(x, d, on),
                Monitor::SoftwareBreakpoint => (l.xc_monitor_software_breakpoint)(x, d, on),
                Monitor::DebugException { sync } => (l.xc_monitor_debug_exceptions)(x, d, on, sync),
                Monitor::Cpuid => (l.xc_monitor_cpuid)(x, d, on),
                Monitor::DescriptorAccess => (l.xc_monitor_descriptor_access)(x, d, on),
                Monitor::GuestRequest { sync } => {
                    (l.xc_monitor_guest_request)(x, d, on, sync, false)
                }
                Monitor::EmulUnimplemented => (l.xc_monitor_emul_unimplemented)(x, d, on),
                // NB: this call takes "disable".
                Monitor::InguestPagefault => (l.xc_monitor_inguest_pagefault)(x, d, !on),
            }
        };
        // Xen answers EEXIST when the monitor is already in the requested state. For "off"
        // that is the goal (disabling a ring clears every monitor: seen after a recovery).
        if rc < 0 && !on && std::io::Error::last_os_error().raw_os_error() == Some(libc::EEXIST) {
            return Ok(());
        }
        self.check(
            rc,
            format!(
                "{} monitor {m:?}",
                if on { "enabling" } else { "disabling" }
            ),
        )
    }

    fn set_vcpu_singlestep(&self, vcpu: VcpuId, on: bool) -> Result<()> {
        let op = if on {
            sys::XEN_DOMCTL_DEBUG_OP_SINGLE_STEP_ON
        } else {
            sys::XEN_DOMCTL_DEBUG_OP_SINGLE_STEP_OFF
        };
        // SAFETY: valid handle; plain values.
        let rc = unsafe { (self.libs.xc_domain_debug_control)(self.xch, self.domid, op, vcpu.0) };
        self.check(
            rc,
            format!(
                "single-step {} on vCPU {vcpu}",
                if on { "on" } else { "off" }
            ),
        )
    }
}

impl EventChannel for XenDomain {
    fn ring(&self) -> &RingPage {
        match &*self.events.borrow() {
            // SAFETY: mapped until Drop (close_ring does not unmap), page-aligned, 4096 bytes.
            Some(e) => unsafe { &*(e.ring as *const RingPage) },
            None => &self.idle_ring,
        }
    }

    fn wait(&self, timeout: Duration) -> Result<bool> {
        let ev = self.events.borrow();
        let Some(e) = ev.as_ref().filter(|e| !e.evtchn.is_null()) else {
            return Err(fail(
                "waiting for events",
                "events are not enabled (no session is open) or the ring was closed".into(),
            ));
        };
        // SAFETY: valid event-channel handle.
        let fd = unsafe { (self.libs.xenevtchn_fd)(e.evtchn) };
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN | libc::POLLERR,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let rc = unsafe {
            libc::poll(
                &mut pfd,
                1,
                timeout.as_millis().min(i32::MAX as u128) as i32,
            )
        };
        if rc < 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                return Ok(false);
            }
            return Err(fail("poll on /dev/xen/evtchn", errno_reason("", "")));
        }
        if rc == 0 {
            return Ok(false);
        }
        // SAFETY: valid handle; poll said a port is pending, so this does not block.
        let port = unsafe { (self.libs.xenevtchn_pending)(e.evtchn) };
        if port < 0 {
            return Err(fail("xenevtchn_pending", errno_reason("", "")));
        }
        // SAFETY: valid handle and port.
        let rc = unsafe { (self.libs.xenevtchn_unmask)(e.evtchn, port as u32) };
        self.check(rc, "xenevtchn_unmask")?;
        Ok(true)
    }

    fn notify(&self) -> Result<()> {
        let ev = self.events.borrow();
        let Some(e) = ev.as_ref().filter(|e| !e.evtchn.is_null()) else {
            return Ok(());
        };
        // SAFETY: valid handle and bound port.
        let rc = unsafe { (self.libs.xenevtchn_notify)(e.evtchn, e.local_port) };
        self.check(rc, "xenevtchn_notify")
    }

    fn close_ring(&self) -> Result<()> {
        let ev = self.events.borrow();
        let Some(e) = ev.as_ref() else { return Ok(()) };
        if e.evtchn.is_null() {
            return Ok(()); // already closed (teardown, then drop)
        }
        // SAFETY: valid handle. Xen answers EBUSY while a vCPU waits for a ring slot: the ring
        // and its event channel then stay as they are, so the caller can drain and retry.
        if unsafe { (self.libs.xc_monitor_disable)(self.xch, self.domid) } < 0 {
            return Err(fail(
                "xc_monitor_disable",
                errno_reason(
                    "",
                    "a vCPU may be waiting for a ring slot: answer the ring and try again",
                ),
            ));
        }
        // SAFETY: valid handles; the ring page stays mapped (unmapped in Drop) so `ring()`
        // never dangles.
        unsafe {
            (self.libs.xenevtchn_unbind)(e.evtchn, e.local_port);
            (self.libs.xenevtchn_close)(e.evtchn);
        }
        self.registers_held.set(false);
        drop(ev);
        if let Some(e) = self.events.borrow_mut().as_mut() {
            e.evtchn = std::ptr::null_mut();
        }
        Ok(())
    }

    /// `xc_monitor_enable` and binding its event channel. EBUSY means another monitor is (or
    /// was) attached.
    fn enable_ring(&self) -> Result<()> {
        {
            let mut ev = self.events.borrow_mut();
            match ev.as_ref() {
                Some(e) if !e.evtchn.is_null() => return Ok(()),
                // Closed by an earlier session's teardown: enable a fresh ring.
                Some(e) => {
                    self.retired_rings.borrow_mut().push(e.ring);
                    *ev = None;
                }
                None => {}
            }
        }
        let mut port = 0u32;
        // SAFETY: valid handle; returns the mapped ring page or NULL.
        let ring = unsafe { (self.libs.xc_monitor_enable)(self.xch, self.domid, &mut port) };
        if ring.is_null() {
            let busy = std::io::Error::last_os_error().raw_os_error() == Some(libc::EBUSY);
            return Err(fail(
                "xc_monitor_enable",
                errno_reason(
                    "",
                    if busy {
                        "another monitor is attached, or a previous one exited without xc_monitor_disable"
                    } else {
                        ""
                    },
                ),
            ));
        }
        // SAFETY: NULL logger, flags 0.
        let evtchn = unsafe { (self.libs.xenevtchn_open)(std::ptr::null_mut(), 0) };
        if evtchn.is_null() {
            // SAFETY: valid handle, ring enabled above.
            unsafe { (self.libs.xc_monitor_disable)(self.xch, self.domid) };
            return Err(fail(
                "xenevtchn_open",
                errno_reason("opening /dev/xen/evtchn", ""),
            ));
        }
        // SAFETY: valid event-channel handle, remote port from xc_monitor_enable.
        let local = unsafe { (self.libs.xenevtchn_bind_interdomain)(evtchn, self.domid, port) };
        if local < 0 {
            // SAFETY: valid handles, undone in reverse order.
            unsafe {
                (self.libs.xenevtchn_close)(evtchn);
                (self.libs.xc_monitor_disable)(self.xch, self.domid);
            }
            return Err(fail("xenevtchn_bind_interdomain", errno_reason("", "")));
        }
        // SAFETY: the ring page is page-aligned, 4096 bytes, and mapped until Drop; RingPage is
        // repr(C, align(4096)) and accessed only through atomics.
        let page = unsafe { &*(ring as *const RingPage) };
        page.init();
        *self.events.borrow_mut() = Some(Events {
            ring,
            evtchn,
            local_port: local as u32,
        });
        Ok(())
    }

    fn domain_uuid(&self) -> Result<String> {
        let u = self.caps.uuid;
        let hex = |r: std::ops::Range<usize>| -> String {
            u[r].iter().map(|b| format!("{b:02x}")).collect()
        };
        Ok(format!(
            "{}-{}-{}-{}-{}",
            hex(0..4),
            hex(4..6),
            hex(6..8),
            hex(8..10),
            hex(10..16)
        ))
    }

    fn abandon_ring(&self) -> Result<bool> {
        if matches!(&*self.events.borrow(), Some(e) if !e.evtchn.is_null()) {
            return Err(fail(
                "abandoning the vm_event ring",
                "this handle's own ring is enabled: close it with a teardown instead".into(),
            ));
        }
        // SAFETY: valid handle; disables whatever ring the domain has.
        let rc = unsafe { (self.libs.xc_monitor_disable)(self.xch, self.domid) };
        self.registers_held.set(false);
        if rc == 0 {
            return Ok(true);
        }
        // Xen answers EINVAL when no monitor ring is enabled.
        if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL) {
            return Ok(false);
        }
        Err(fail("xc_monitor_disable", errno_reason("", "")))
    }
}

impl XenDomain {
    /// Turn on `XEN_DOMCTL_MONITOR_OP_CONTROL_REGISTERS` (libxenctrl has no wrapper for it:
    /// the generic `xc_domctl`, which stamps the library's own domctl interface version). Xen
    /// only ever turns it off again when the monitor ring is disabled, which is teardown's last
    /// step, after every vCPU has resumed (turning it off under a paused vCPU can crash the
    /// guest, says `domctl.h`).
    fn hold_register_writes(&self) -> Result<()> {
        let mut dc = sys::xen_domctl {
            cmd: sys::XEN_DOMCTL_monitor_op,
            domain: self.domid as sys::domid_t,
            ..Default::default()
        };
        dc.u.monitor_op = sys::xen_domctl_monitor_op {
            op: sys::XEN_DOMCTL_MONITOR_OP_CONTROL_REGISTERS,
            ..Default::default()
        };
        // SAFETY: valid handle; `dc` is a complete xen_domctl that libxenctrl bounces to Xen.
        let rc = unsafe { (self.libs.xc_domctl)(self.xch, &mut dc) };
        self.check(
            rc,
            "enabling control-register write control (XEN_DOMCTL_MONITOR_OP_CONTROL_REGISTERS)",
        )
    }

    /// Whether altp2m view `view` exists in the domain (view 0, the host p2m, always does).
    /// Asks Xen for an access right in the view: a view that does not exist (or altp2m being
    /// off) answers EINVAL.
    ///
    /// # Errors
    /// [`Error::Backend`] for any other failure.
    pub fn view_exists(&self, view: ViewId) -> Result<bool> {
        if view.0 == 0 {
            return Ok(true);
        }
        let mut a = 0u32;
        // SAFETY: valid handle; out-parameter.
        let rc = unsafe {
            (self.libs.xc_altp2m_get_mem_access)(self.xch, self.domid, view.0, 0, &mut a)
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

impl EventInjection for XenDomain {
    fn inject(&self, vcpu: VcpuId, event: &Injection) -> Result<()> {
        let what = || format!("injecting vector {} into vCPU {vcpu}", event.vector);
        if vcpu.0 >= self.caps.vcpus {
            return Err(Error::NoSuchVcpu {
                vcpu,
                count: self.caps.vcpus,
            });
        }
        if self.dmod.get().is_null() {
            // SAFETY: NULL logger selects the library's default; flags 0. Closed in Drop.
            let h = unsafe { (self.libs.xendevicemodel_open)(std::ptr::null_mut(), 0) };
            if h.is_null() {
                return Err(fail(
                    "xendevicemodel_open",
                    errno_reason("opening /dev/xen/privcmd", ""),
                ));
            }
            self.dmod.set(h);
        }
        // SAFETY: valid handle; plain values. ~0 is "no error code" (XEN_DMOP_no_error_code
        // is ~0: Xen pushes none).
        let rc = unsafe {
            (self.libs.xendevicemodel_inject_event)(
                self.dmod.get(),
                self.domid as u16,
                vcpu.0 as i32,
                event.vector,
                event.kind.vmx_type(),
                event.error_code.unwrap_or(!0),
                event.insn_len,
                event.cr2,
            )
        };
        self.check(rc, what())
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
                (self.libs.xc_altp2m_set_mem_access_multi)(
                    self.xch,
                    self.domid,
                    view.0,
                    access_list.as_mut_ptr(),
                    gfns.as_mut_ptr(),
                    n as u32,
                )
            };
            self.check(
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
        let rc = unsafe { (self.libs.xc_altp2m_set_domain_state)(self.xch, self.domid, true) };
        self.check(rc, "xc_altp2m_set_domain_state")?;
        let mut v = 0u16;
        // SAFETY: valid handle, out-parameter.
        let rc = unsafe {
            (self.libs.xc_altp2m_create_view)(
                self.xch,
                self.domid,
                to_xenmem(default_access),
                &mut v,
            )
        };
        self.check(rc, "xc_altp2m_create_view")?;
        let view = ViewId(v);
        if let Err(e) = self.populate_view(view, default_access) {
            // Nothing half-made: a view that could not be filled is not handed out.
            // SAFETY: valid handle; the view was created just above and nobody uses it yet.
            unsafe { (self.libs.xc_altp2m_destroy_view)(self.xch, self.domid, v) };
            return Err(e);
        }
        Ok(view)
    }

    fn destroy_view(&self, view: ViewId) -> Result<()> {
        // SAFETY: valid handle.
        let rc = unsafe { (self.libs.xc_altp2m_destroy_view)(self.xch, self.domid, view.0) };
        self.check(rc, format!("destroying view {view}"))?;
        // The last view is gone: turn altp2m off again, as it was before the first view (a
        // domain with altp2m on and no view behaves like one with it off, but keeps VMFUNC
        // and #VE machinery live). Xen is asked which views exist rather than this handle
        // counting its own: recovery destroys views a dead monitor created.
        if self.views()?.is_empty() {
            // SAFETY: valid handle.
            let rc = unsafe { (self.libs.xc_altp2m_set_domain_state)(self.xch, self.domid, false) };
            self.check(rc, "turning altp2m off after the last view")?;
        }
        Ok(())
    }

    fn switch_view(&self, view: ViewId) -> Result<()> {
        // SAFETY: valid handle.
        let rc = unsafe { (self.libs.xc_altp2m_switch_to_view)(self.xch, self.domid, view.0) };
        self.check(rc, format!("switching to view {view}"))
    }

    fn set_mem_access(&self, view: ViewId, gfn: Gfn, access: MemAccess) -> Result<()> {
        // SAFETY: valid handle; plain values.
        let rc = unsafe {
            if view.0 == 0 {
                (self.libs.xc_set_mem_access)(self.xch, self.domid, to_xenmem(access), gfn.0, 1)
            } else {
                (self.libs.xc_altp2m_set_mem_access)(
                    self.xch,
                    self.domid,
                    view.0,
                    gfn.0 as sys::xen_pfn_t,
                    to_xenmem(access),
                )
            }
        };
        self.check(rc, format!("setting access of gfn {gfn} in view {view}"))
    }

    fn mem_access(&self, view: ViewId, gfn: Gfn) -> Result<MemAccess> {
        let mut a = 0u32;
        if view.0 != 0 {
            // SAFETY: valid handle; out-parameter.
            let rc = unsafe {
                (self.libs.xc_altp2m_get_mem_access)(
                    self.xch,
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
        let rc = unsafe { (self.libs.xc_get_mem_access)(self.xch, self.domid, gfn.0, &mut a) };
        self.check(rc, format!("reading access of gfn {gfn} in view {view}"))?;
        Ok(from_xenmem(a, self.caps.xen_version))
    }

    fn change_gfn(&self, view: ViewId, gfn: Gfn, target: Option<Gfn>) -> Result<()> {
        let new = target.map(|t| t.0 as sys::xen_pfn_t).unwrap_or(!0);
        // SAFETY: valid handle; ~0 reverts the remap.
        let rc = unsafe {
            (self.libs.xc_altp2m_change_gfn)(
                self.xch,
                self.domid,
                view.0,
                gfn.0 as sys::xen_pfn_t,
                new,
            )
        };
        self.check(rc, format!("remapping gfn {gfn} in view {view}"))
    }

    fn set_suppress_ve(&self, view: ViewId, gfn: Gfn, suppress: bool) -> Result<()> {
        // SAFETY: valid handle; plain values.
        let rc = unsafe {
            (self.libs.xc_altp2m_set_suppress_ve)(
                self.xch,
                self.domid,
                view.0,
                gfn.0 as sys::xen_pfn_t,
                suppress,
            )
        };
        self.check(rc, format!("suppress-#VE of gfn {gfn} in view {view}"))
    }

    fn set_view_visibility(&self, view: ViewId, visible: bool) -> Result<()> {
        // SAFETY: valid handle; plain values.
        let rc =
            unsafe { (self.libs.xc_altp2m_set_visibility)(self.xch, self.domid, view.0, visible) };
        self.check(rc, format!("visibility of view {view}"))
    }

    fn alloc_frame(&self) -> Result<Gfn> {
        let mut info = sys::xc_domaininfo_t::default();
        // SAFETY: valid handle; one record written to `info`.
        let n = unsafe { (self.libs.xc_domain_getinfolist)(self.xch, self.domid, 1, &mut info) };
        if n != 1 {
            return Err(fail("xc_domain_getinfolist", errno_reason("", "")));
        }
        // One more page of allowance (in KiB), then populate the frame above the highest gfn.
        let kib = (info.max_pages + 1) * (PAGE_SIZE / 1024);
        // SAFETY: valid handle; plain values.
        let rc = unsafe { (self.libs.xc_domain_setmaxmem)(self.xch, self.domid, kib) };
        self.check(rc, "raising the domain's memory limit for a shadow page")?;
        let mut gfn: sys::xen_pfn_t = (self.max_gfn().0 + 1) as sys::xen_pfn_t;
        // SAFETY: valid handle; one extent of order 0 at `gfn`, written back on success.
        let rc = unsafe {
            (self.libs.xc_domain_populate_physmap_exact)(self.xch, self.domid, 1, 0, 0, &mut gfn)
        };
        self.check(rc, "populating a shadow page")?;
        self.write_physical(Gpa((gfn as u64) << 12), &[0u8; PAGE_SIZE as usize])?;
        Ok(Gfn(gfn as u64))
    }

    fn free_frame(&self, gfn: Gfn) -> Result<()> {
        if let Some(m) = self.maps.borrow_mut().remove(&gfn.0) {
            // SAFETY: mapped by xenforeignmemory_map for one page.
            unsafe { (self.libs.xenforeignmemory_unmap)(self.fmem, m.0 as *mut c_void, 1) };
        }
        let mut pfn = gfn.0 as sys::xen_pfn_t;
        // SAFETY: valid handle; one extent of order 0.
        let rc = unsafe {
            (self.libs.xc_domain_decrease_reservation_exact)(self.xch, self.domid, 1, 0, &mut pfn)
        };
        self.check(rc, format!("releasing shadow page {gfn}"))?;
        let mut info = sys::xc_domaininfo_t::default();
        // SAFETY: valid handle; one record written to `info`.
        if unsafe { (self.libs.xc_domain_getinfolist)(self.xch, self.domid, 1, &mut info) } == 1
            && info.max_pages > 0
        {
            // SAFETY: valid handle; give the page of allowance back.
            let rc = unsafe {
                (self.libs.xc_domain_setmaxmem)(
                    self.xch,
                    self.domid,
                    (info.max_pages - 1) * (PAGE_SIZE / 1024),
                )
            };
            self.check(rc, "lowering the domain's memory limit")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod xenmem_tests {
    use super::*;

    #[test]
    fn a_vcpu_index_is_checked_before_it_is_narrowed() {
        assert_eq!(save_instance(VcpuId(3), 4).ok(), Some(3));
        assert!(save_instance(VcpuId(4), 4).is_err());
        // 65536 would truncate to instance 0 (vCPU 0's registers).
        assert!(save_instance(VcpuId(65536), u32::MAX).is_err());
    }

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
