//! Live domains: Xen (feature `xen`) and the simulated domain, behind one handle that memory
//! handles and sessions share.

use std::ffi::c_char;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::error::*;
use super::handles::{arg_handle, register, unregister, Handle};
use super::types::xvmi_registers;
use crate::addr::{Gfn, Gpa, VcpuId, ViewId, PAGE_SIZE};
use crate::backend::sim::{GuestAction, Outcome, SimDomain};
use crate::backend::snapshot::{Format, Snapshot};
use crate::backend::{
    ControlRegister, EventChannel, EventControl, EventInjection, Injection, InjectionKind,
    MemAccess, Monitor, PhysicalMemory, PhysicalMemoryWrite, VcpuState, VcpuStateWrite,
    ViewControl, VmControl,
};
use crate::error::Result;
use crate::event::session::{RecoverOptions, Session};
use crate::regs::Registers;
use crate::vmevent::ring::RingPage;

/// The backends a C domain handle can hold.
// One per handle, inside an Arc: the size difference of the variants does not matter.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Domain {
    /// The simulated domain (not Xen).
    Sim(SimDomain),
    /// A live Xen domain.
    #[cfg(feature = "xen")]
    Xen(crate::backend::xen::XenDomain),
}

macro_rules! each {
    ($self:expr, $b:ident => $e:expr) => {
        match $self {
            Domain::Sim($b) => $e,
            #[cfg(feature = "xen")]
            Domain::Xen($b) => $e,
        }
    };
}

impl PhysicalMemory for Domain {
    fn name(&self) -> &'static str {
        each!(self, b => b.name())
    }
    fn read_physical(&self, gpa: Gpa, buf: &mut [u8]) -> Result<()> {
        each!(self, b => b.read_physical(gpa, buf))
    }
    fn physical_ranges(&self) -> Vec<Range<u64>> {
        each!(self, b => b.physical_ranges())
    }
    fn physical_range_count(&self) -> usize {
        each!(self, b => b.physical_range_count())
    }
    fn drop_cached_mappings(&self) {
        each!(self, b => b.drop_cached_mappings())
    }
    fn physical_range(&self, index: usize) -> Option<Range<u64>> {
        each!(self, b => b.physical_range(index))
    }
    fn max_gfn(&self) -> Gfn {
        each!(self, b => b.max_gfn())
    }
    fn physical_slice(&self, gpa: Gpa, len: usize) -> Option<&[u8]> {
        each!(self, b => b.physical_slice(gpa, len))
    }
    fn read_pages(&self, first: Gfn, buf: &mut [u8], present: &mut [bool]) -> Result<()> {
        each!(self, b => b.read_pages(first, buf, present))
    }
}

impl VcpuState for Domain {
    fn vcpu_count(&self) -> u32 {
        each!(self, b => b.vcpu_count())
    }
    fn registers(&self, vcpu: VcpuId) -> Result<Registers> {
        each!(self, b => b.registers(vcpu))
    }
}

impl EventControl for Domain {
    fn set_monitor(&self, monitor: Monitor, enable: bool) -> Result<()> {
        each!(self, b => b.set_monitor(monitor, enable))
    }
    fn set_vcpu_singlestep(&self, vcpu: VcpuId, enable: bool) -> Result<()> {
        each!(self, b => b.set_vcpu_singlestep(vcpu, enable))
    }
}

impl EventChannel for Domain {
    fn ring(&self) -> &RingPage {
        each!(self, b => b.ring())
    }
    fn wait(&self, timeout: Duration) -> Result<bool> {
        each!(self, b => b.wait(timeout))
    }
    fn notify(&self) -> Result<()> {
        each!(self, b => b.notify())
    }
    fn close_ring(&self) -> Result<()> {
        each!(self, b => b.close_ring())
    }
    fn enable_ring(&self) -> Result<()> {
        each!(self, b => b.enable_ring())
    }
    fn abandon_ring(&self) -> Result<bool> {
        each!(self, b => b.abandon_ring())
    }
    fn domain_uuid(&self) -> Result<String> {
        each!(self, b => b.domain_uuid())
    }
}

impl PhysicalMemoryWrite for Domain {
    fn write_physical(&self, gpa: Gpa, buf: &[u8]) -> Result<()> {
        each!(self, b => b.write_physical(gpa, buf))
    }
}

impl VcpuStateWrite for Domain {
    fn set_registers(&self, vcpu: VcpuId, regs: &Registers) -> Result<()> {
        each!(self, b => b.set_registers(vcpu, regs))
    }
}

impl VmControl for Domain {
    fn pause(&self) -> Result<()> {
        each!(self, b => b.pause())
    }
    fn resume(&self) -> Result<()> {
        each!(self, b => b.resume())
    }
}

impl EventInjection for Domain {
    fn inject(&self, vcpu: VcpuId, event: &Injection) -> Result<()> {
        each!(self, b => b.inject(vcpu, event))
    }
}

impl ViewControl for Domain {
    fn create_view(&self, default_access: MemAccess) -> Result<ViewId> {
        each!(self, b => b.create_view(default_access))
    }
    fn destroy_view(&self, view: ViewId) -> Result<()> {
        each!(self, b => b.destroy_view(view))
    }
    fn switch_view(&self, view: ViewId) -> Result<()> {
        each!(self, b => b.switch_view(view))
    }
    fn set_mem_access(&self, view: ViewId, gfn: Gfn, access: MemAccess) -> Result<()> {
        each!(self, b => b.set_mem_access(view, gfn, access))
    }
    fn mem_access(&self, view: ViewId, gfn: Gfn) -> Result<MemAccess> {
        each!(self, b => b.mem_access(view, gfn))
    }
    fn change_gfn(&self, view: ViewId, gfn: Gfn, target: Option<Gfn>) -> Result<()> {
        each!(self, b => b.change_gfn(view, gfn, target))
    }
    fn set_suppress_ve(&self, view: ViewId, gfn: Gfn, suppress: bool) -> Result<()> {
        each!(self, b => b.set_suppress_ve(view, gfn, suppress))
    }
    fn set_view_visibility(&self, view: ViewId, visible: bool) -> Result<()> {
        each!(self, b => b.set_view_visibility(view, visible))
    }
    fn alloc_frame(&self) -> Result<Gfn> {
        each!(self, b => b.alloc_frame())
    }
    fn free_frame(&self, gfn: Gfn) -> Result<()> {
        each!(self, b => b.free_frame(gfn))
    }
}

/// What the domain handle, its memory handles and its session share.
pub(crate) struct DomainShared {
    pub(crate) backend: Domain,
    /// Bumped every time the guest may have run (an event was delivered, a run returned):
    /// memory handles over the domain flush their translation caches when it changes.
    pub(crate) generation: AtomicU64,
    /// A session is open on the domain (one at a time: they would share the ring).
    pub(crate) session_open: AtomicBool,
}

impl DomainShared {
    // Arc although the backend is used by one thread at a time: C may free the handles that
    // share it (domain, memory, session) on different threads, and atomic counts keep that
    // sound.
    #[allow(clippy::arc_with_non_send_sync)]
    fn new(backend: Domain) -> Arc<DomainShared> {
        Arc::new(DomainShared {
            backend,
            generation: AtomicU64::new(0),
            session_open: AtomicBool::new(false),
        })
    }

    pub(crate) fn guest_ran(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    pub(crate) fn sim(&self) -> Result<&SimDomain, Fail> {
        match &self.backend {
            Domain::Sim(s) => Ok(s),
            #[cfg(feature = "xen")]
            Domain::Xen(_) => Err(Fail::new(
                XVMI_ERR_UNSUPPORTED,
                "this call is for simulated domains (xvmi_sim_open_*), and this is a Xen domain",
            )),
        }
    }
}

/// Memory and registers of a domain, for a memory handle (keeps the domain alive).
pub(crate) struct DomainMemory(pub(crate) Arc<DomainShared>);

impl PhysicalMemory for DomainMemory {
    fn name(&self) -> &'static str {
        self.0.backend.name()
    }
    fn read_physical(&self, gpa: Gpa, buf: &mut [u8]) -> Result<()> {
        self.0.backend.read_physical(gpa, buf)
    }
    fn physical_ranges(&self) -> Vec<Range<u64>> {
        self.0.backend.physical_ranges()
    }
    fn physical_range_count(&self) -> usize {
        self.0.backend.physical_range_count()
    }
    fn drop_cached_mappings(&self) {
        self.0.backend.drop_cached_mappings()
    }
    fn physical_range(&self, index: usize) -> Option<Range<u64>> {
        self.0.backend.physical_range(index)
    }
    fn max_gfn(&self) -> Gfn {
        self.0.backend.max_gfn()
    }
    fn physical_slice(&self, gpa: Gpa, len: usize) -> Option<&[u8]> {
        self.0.backend.physical_slice(gpa, len)
    }
    fn read_pages(&self, first: Gfn, buf: &mut [u8], present: &mut [bool]) -> Result<()> {
        self.0.backend.read_pages(first, buf, present)
    }
}

impl VcpuState for DomainMemory {
    fn vcpu_count(&self) -> u32 {
        self.0.backend.vcpu_count()
    }
    fn registers(&self, vcpu: VcpuId) -> Result<Registers> {
        self.0.backend.registers(vcpu)
    }
}

/// A live domain: a Xen domain or a simulated one. Memory handles
/// (`xvmi_memory_open_domain`) and a session
/// (`xvmi_session_open`) opened on it keep it alive:
/// they may be freed before or after it.
pub struct xvmi_domain {
    pub(crate) shared: Arc<DomainShared>,
    /// Pauses [`xvmi_domain_pause`] made through this handle and [`xvmi_domain_resume`] has
    /// not undone: resumed when the handle is freed.
    pauses: AtomicU32,
}

impl xvmi_domain {
    /// Resume every pause this handle still holds (it is being freed). Each is tried; the
    /// count is cleared either way, since no handle is left to retry with.
    fn release_pauses(&self) -> Result<(), Fail> {
        let n = self.pauses.swap(0, Ordering::SeqCst);
        if n == 0 {
            return Ok(());
        }
        let mut failed = 0u32;
        let mut first = None;
        for _ in 0..n {
            if let Err(e) = self.shared.backend.resume() {
                failed += 1;
                first.get_or_insert(e);
            }
        }
        self.shared.guest_ran();
        match first {
            None => Ok(()),
            Some(e) => Err(Fail::new(
                result_code(&e),
                format!(
                    "the domain handle was freed, but {failed} of the {n} pauses it held could not \
                     be resumed, so the domain stays paused (on Xen, `xl unpause` resumes it): {e}"
                ),
            )),
        }
    }
}

impl Drop for xvmi_domain {
    /// A handle dropped without [`xvmi_domain_free`] reporting (a panic on the way) still
    /// leaves no pause behind.
    fn drop(&mut self) {
        let _ = self.release_pauses();
    }
}

fn new_domain(backend: Domain, out: *mut *mut xvmi_domain) {
    let h = Box::new(xvmi_domain {
        shared: DomainShared::new(backend),
        pauses: AtomicU32::new(0),
    });
    // SAFETY: `out` was checked by arg_out and is writable by the caller's contract.
    unsafe { put(out, register(h)) };
}

/// Open a live Xen domain by id (`"3"`) or name (`"guest1"`), after checking the hypervisor's
/// vm_event interface version and the domain's capabilities (needs dom0 and root).
///
/// Returns [`XVMI_ERR_UNSUPPORTED`] in a library built without the `xen` feature, and
/// [`XVMI_ERR_BACKEND`] with the failing call, device and errno on a host without Xen.
///
/// # Safety
/// `name_or_id` is a NUL-terminated string; `out` is valid for a write. On success `*out` is a
/// new handle to release with [`xvmi_domain_free`].
#[no_mangle]
pub unsafe extern "C" fn xvmi_domain_open_xen(
    name_or_id: *const c_char,
    out: *mut *mut xvmi_domain,
) -> xvmi_result {
    boundary(|| {
        // SAFETY: `name_or_id` is NULL (refused by arg_str) or a NUL-terminated string, as this
        // function's `# Safety` requires.
        let name = unsafe { arg_str(name_or_id, "name_or_id") }?;
        let out = arg_out(out, "out")?;
        #[cfg(feature = "xen")]
        {
            let d = crate::backend::xen::XenDomain::open(name)?;
            new_domain(Domain::Xen(d), out);
            Ok(())
        }
        #[cfg(not(feature = "xen"))]
        {
            let _ = out;
            Err(Fail::new(
                XVMI_ERR_UNSUPPORTED,
                format!(
                    "cannot open Xen domain `{name}`: this libxenvmi was built without the Xen backend \
                     (rebuild with `cargo build --release --features xen`, which needs libxen-dev and \
                     libclang-dev)"
                ),
            ))
        }
    })
}

/// Open a **simulated** domain (not Xen) over a memory snapshot, with one vCPU per register
/// set the image records (QEMU ELF cores have them; raw and LiME images do not: use
/// [`xvmi_sim_open_buffer`]). The simulation runs a script of guest actions
/// (`xvmi_sim_script_*`) and raises real vm_event requests for them; see `docs/events.md`.
///
/// # Safety
/// `path` is a NUL-terminated string; `out` is valid for a write. On success `*out` is a new
/// handle to release with [`xvmi_domain_free`].
#[no_mangle]
pub unsafe extern "C" fn xvmi_sim_open_snapshot(
    path: *const c_char,
    out: *mut *mut xvmi_domain,
) -> xvmi_result {
    boundary(|| {
        // SAFETY: `path` is NULL (refused by arg_str) or a NUL-terminated string, as this
        // function's `# Safety` requires.
        let path = unsafe { arg_str(path, "path") }?;
        let out = arg_out(out, "out")?;
        let snap = Snapshot::open(path)?;
        let regs = snap.all_registers().to_vec();
        if regs.is_empty() {
            return Err(Fail::invalid(format!(
                "{path}: the image records no vCPUs to simulate (use xvmi_sim_open_buffer with register sets)"
            )));
        }
        new_domain(Domain::Sim(SimDomain::new(snap, &regs)), out);
        Ok(())
    })
}

/// Open a **simulated** domain (not Xen) over a copy of `len` bytes of raw guest-physical
/// memory (byte offset = guest-physical address), with `vcpu_count` vCPUs whose registers are
/// `vcpus[0..vcpu_count]`. Up to 4096 vCPUs.
///
/// # Safety
/// `data` is valid for `len` bytes of reads; `vcpus` is valid for `vcpu_count` reads (either
/// may be NULL when its length is 0); `out` is valid for a write. On success `*out` is a new
/// handle to release with [`xvmi_domain_free`].
#[no_mangle]
pub unsafe extern "C" fn xvmi_sim_open_buffer(
    data: *const u8,
    len: usize,
    vcpus: *const xvmi_registers,
    vcpu_count: usize,
    out: *mut *mut xvmi_domain,
) -> xvmi_result {
    boundary(|| {
        // SAFETY: `data` is NULL (refused) or valid for `len` bytes of reads, as this function's `#
        // Safety` requires.
        let data = unsafe { arg_bytes(data, len, "data") }?;
        // SAFETY: `vcpus` is NULL (refused unless `vcpu_count` is 0) or valid for `vcpu_count`
        // elements, as this function's `# Safety` requires.
        let vcpus = unsafe { arg_slice(vcpus, vcpu_count, "vcpus") }?;
        let out = arg_out(out, "out")?;
        if vcpus.len() > 4096 {
            return Err(Fail::invalid(format!(
                "{} vCPUs: at most 4096",
                vcpus.len()
            )));
        }
        let snap = Snapshot::from_bytes(data.to_vec(), Some(Format::Raw))?;
        let regs: Vec<Registers> = vcpus.iter().map(Registers::from).collect();
        new_domain(Domain::Sim(SimDomain::new(snap, &regs)), out);
        Ok(())
    })
}

/// Release a domain handle. `NULL` is a no-op. Every pause the handle still holds
/// ([`xvmi_domain_pause`] not undone by [`xvmi_domain_resume`]) is resumed first, also when
/// memory handles or a session keep the domain alive: no vCPU stays paused because of this
/// handle. Memory handles and a session opened on the domain keep it alive until they are
/// freed too; the Xen handles are closed when the last one goes.
///
/// Returns [`XVMI_OK`], or [`XVMI_ERR_INVALID_HANDLE`] (nothing freed) for a handle that is
/// not live (a double free) or that a call still running uses (freed from a callback). If a
/// resume fails ([`XVMI_ERR_BACKEND`]), the handle is freed all the same and the message says
/// how many pauses remain on the domain.
///
/// # Safety
/// `domain` is NULL or a pointer this library returned (freed or not: a freed one is
/// refused); no call on another thread uses it meanwhile.
#[no_mangle]
pub unsafe extern "C" fn xvmi_domain_free(domain: *mut xvmi_domain) -> xvmi_result {
    boundary(|| {
        let Some(h) = unregister(domain, "domain")? else {
            return Ok(());
        };
        let r = h.release_pauses();
        drop(h);
        r
    })
}

/// Pause every vCPU of the domain (Xen: `xc_domain_pause`, which returns once they have
/// stopped). Pauses nest and are counted per handle: each needs one [`xvmi_domain_resume`],
/// and [`xvmi_domain_free`] resumes those the handle still holds. They are independent of an
/// event's pause of its vCPU and of pauses made by others (`xl pause`): a session answering
/// events does not resume the domain, and this handle never resumes another's pause.
///
/// While paused, a session's `xvmi_session_run` gets no new events (the guest does not run)
/// and events raised before are answered as usual; a session's teardown does not resume the
/// domain either. [`xvmi_domain_set_registers`] needs the domain paused.
/// [`XVMI_ERR_INVALID_ARGUMENT`] once the handle holds 2^32 - 1 pauses.
///
/// # Safety
/// `domain` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn xvmi_domain_pause(domain: *const xvmi_domain) -> xvmi_result {
    boundary(|| {
        let d = arg_handle(domain, "domain")?;
        if d.pauses.load(Ordering::SeqCst) == u32::MAX {
            return Err(Fail::invalid(
                "`domain` already holds 2^32 - 1 pauses: resume some first",
            ));
        }
        d.shared.backend.pause()?;
        d.pauses.fetch_add(1, Ordering::SeqCst);
        Ok(())
    })
}

/// Undo one [`xvmi_domain_pause`] of this handle; the domain runs again when no pause is left
/// (this handle's, another tool's, or an event's on a vCPU). Memory handles on the domain
/// drop their cached translations before their next use.
///
/// [`XVMI_ERR_INVALID_ARGUMENT`] if this handle holds no pause (nothing is resumed: a pause
/// made by another tool is never undone here).
///
/// # Safety
/// `domain` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn xvmi_domain_resume(domain: *const xvmi_domain) -> xvmi_result {
    boundary(|| {
        let d = arg_handle(domain, "domain")?;
        if d.pauses.load(Ordering::SeqCst) == 0 {
            return Err(Fail::invalid(
                "`domain` holds no pause to resume (xvmi_domain_resume undoes this handle's own \
                 xvmi_domain_pause calls only): nothing was resumed",
            ));
        }
        d.shared.backend.resume()?;
        d.pauses.fetch_sub(1, Ordering::SeqCst);
        d.shared.guest_ran();
        Ok(())
    })
}

/// The registers [`xvmi_domain_set_registers`] writes; the others must stay as they are.
fn check_settable(vcpu: u32, now: &Registers, new: &Registers) -> Result<(), Fail> {
    let fixed: [(&str, u64, u64); 20] = [
        ("efer", now.efer, new.efer),
        ("cs_base", now.cs_base, new.cs_base),
        ("ds_base", now.ds_base, new.ds_base),
        ("es_base", now.es_base, new.es_base),
        ("fs_base", now.fs_base, new.fs_base),
        ("gs_base", now.gs_base, new.gs_base),
        ("ss_base", now.ss_base, new.ss_base),
        ("kernel_gs_base", now.kernel_gs_base, new.kernel_gs_base),
        ("gdtr_base", now.gdtr_base, new.gdtr_base),
        ("idtr_base", now.idtr_base, new.idtr_base),
        ("sysenter_cs", now.sysenter_cs, new.sysenter_cs),
        ("sysenter_esp", now.sysenter_esp, new.sysenter_esp),
        ("sysenter_eip", now.sysenter_eip, new.sysenter_eip),
        ("msr_star", now.msr_star, new.msr_star),
        ("msr_lstar", now.msr_lstar, new.msr_lstar),
        ("msr_cstar", now.msr_cstar, new.msr_cstar),
        ("gdtr_limit", now.gdtr_limit.into(), new.gdtr_limit.into()),
        ("idtr_limit", now.idtr_limit.into(), new.idtr_limit.into()),
        ("cs_sel", now.cs_sel.into(), new.cs_sel.into()),
        ("ss_sel", now.ss_sel.into(), new.ss_sel.into()),
    ];
    match fixed.iter().find(|(_, a, b)| a != b) {
        None => Ok(()),
        Some((name, a, b)) => Err(Fail::new(
            XVMI_ERR_UNSUPPORTED,
            format!(
                "vCPU {vcpu}: `regs.{name}` is {b:#x} but the vCPU has {a:#x}, and only rax..r15, \
                 rip, rflags, cr0, cr2, cr3 and cr4 can be set (start from xvmi_memory_registers): \
                 nothing was changed"
            ),
        )),
    }
}

/// Set the registers of vCPU `vcpu` to `*regs`. The domain must be paused by this handle
/// ([`xvmi_domain_pause`]); inside an event callback, answer with
/// `XVMI_RESPONSE_SET_REGISTERS` instead.
///
/// Why paused: on Xen the registers are written by reading the whole domain's saved context,
/// changing this vCPU's record and loading it back (`xc_domain_hvm_setcontext`), which would
/// roll back whatever a running vCPU did in between, on every vCPU. So the call is refused,
/// with [`XVMI_ERR_INVALID_ARGUMENT`], while this handle holds no pause; the simulated domain
/// is held to the same rule so that code tested on it works on Xen.
///
/// What is written: `rax`..`r15`, `rip`, `rflags`, `cr0`, `cr2`, `cr3` and `cr4` (what the Xen
/// backend sets). Every other field must equal the vCPU's current value (read them with
/// `xvmi_memory_registers` on a memory handle of the domain and change what you need), else
/// [`XVMI_ERR_UNSUPPORTED`] names the field and nothing is changed; `reserved` must be 0
/// ([`XVMI_ERR_INVALID_ARGUMENT`]). [`XVMI_ERR_NO_SUCH_VCPU`] names a `vcpu` out of range; a
/// value Xen refuses (a CR0 or CR4 it considers invalid) is [`XVMI_ERR_BACKEND`].
///
/// # Safety
/// `domain` is NULL or a live handle; `regs` is NULL or points at an initialised
/// [`xvmi_registers`].
#[no_mangle]
pub unsafe extern "C" fn xvmi_domain_set_registers(
    domain: *const xvmi_domain,
    vcpu: u32,
    regs: *const xvmi_registers,
) -> xvmi_result {
    boundary(|| {
        let d = arg_handle(domain, "domain")?;
        // SAFETY: `regs` is NULL (refused by arg_ref) or points at an initialised
        // xvmi_registers, as this function's `# Safety` requires.
        let r = unsafe { arg_ref(regs, "regs") }?;
        if r.reserved != 0 {
            return Err(Fail::invalid(format!(
                "`regs.reserved` is {:#x}: it must be 0",
                r.reserved
            )));
        }
        let b = &d.shared.backend;
        let count = b.vcpu_count();
        if vcpu >= count {
            return Err(crate::Error::NoSuchVcpu {
                vcpu: VcpuId(vcpu),
                count,
            }
            .into());
        }
        if d.pauses.load(Ordering::SeqCst) == 0 {
            return Err(Fail::invalid(format!(
                "vCPU {vcpu}: the domain is not paused by this handle: call xvmi_domain_pause \
                 first (setting registers rewrites the domain's saved context, which must not run \
                 meanwhile; in an event callback, use XVMI_RESPONSE_SET_REGISTERS): nothing was \
                 changed"
            )));
        }
        let new = Registers::from(r);
        let now = b.registers(VcpuId(vcpu))?;
        check_settable(vcpu, &now, &new)?;
        b.set_registers(VcpuId(vcpu), &new)?;
        Ok(())
    })
}

/// The control registers of [`xvmi_sim_script_write_cr`] and `xvmi_monitor`
/// (Xen's `VM_EVENT_X86_*` indices).
pub const XVMI_REGISTER_CR0: u32 = 0;
/// CR3.
pub const XVMI_REGISTER_CR3: u32 = 1;
/// CR4.
pub const XVMI_REGISTER_CR4: u32 = 2;
/// XCR0.
pub const XVMI_REGISTER_XCR0: u32 = 3;

pub(crate) fn control_register(v: u32, name: &str) -> Result<ControlRegister, Fail> {
    Ok(match v {
        XVMI_REGISTER_CR0 => ControlRegister::Cr0,
        XVMI_REGISTER_CR3 => ControlRegister::Cr3,
        XVMI_REGISTER_CR4 => ControlRegister::Cr4,
        XVMI_REGISTER_XCR0 => ControlRegister::Xcr0,
        _ => {
            return Err(Fail::invalid(format!(
                "`{name}` is {v}: not an XVMI_REGISTER_* value (0..=3)"
            )))
        }
    })
}

pub(crate) fn register_id(r: ControlRegister) -> u32 {
    match r {
        ControlRegister::Cr0 => XVMI_REGISTER_CR0,
        ControlRegister::Cr3 => XVMI_REGISTER_CR3,
        ControlRegister::Cr4 => XVMI_REGISTER_CR4,
        ControlRegister::Xcr0 => XVMI_REGISTER_XCR0,
    }
}

/// Queue one action on a simulated domain.
///
/// # Safety
/// `domain` is NULL or a live handle.
unsafe fn script(
    domain: *const xvmi_domain,
    vcpu: u32,
    action: impl FnOnce(VcpuId) -> Result<GuestAction, Fail>,
) -> xvmi_result {
    boundary(|| {
        let d = arg_handle(domain, "domain")?;
        let sim = d.shared.sim()?;
        let count = sim.vcpu_count();
        if vcpu >= count {
            return Err(crate::Error::NoSuchVcpu {
                vcpu: VcpuId(vcpu),
                count,
            }
            .into());
        }
        sim.script([action(VcpuId(vcpu))?]);
        Ok(())
    })
}

/// [`xvmi_injection::type_`]: an external interrupt.
pub const XVMI_INJECT_EXTERNAL_INTERRUPT: u8 = 0;
/// A non-maskable interrupt.
pub const XVMI_INJECT_NMI: u8 = 2;
/// A fault or abort raised by the processor (`#PF`, `#GP`, `#UD`, ...).
pub const XVMI_INJECT_HARDWARE_EXCEPTION: u8 = 3;
/// `int N`.
pub const XVMI_INJECT_SOFTWARE_INTERRUPT: u8 = 4;
/// `int1` (`icebp`).
pub const XVMI_INJECT_PRIVILEGED_SOFTWARE_EXCEPTION: u8 = 5;
/// `int3` or `into`: the return address is past the instruction (`insn_length`).
pub const XVMI_INJECT_SOFTWARE_EXCEPTION: u8 = 6;

/// An exception or interrupt for a vCPU to take on its next entry into the guest
/// (`xenvmi::backend::Injection`). A guest's own `int3` handed back: vector 3,
/// `XVMI_INJECT_SOFTWARE_EXCEPTION`, `insn_length` 1. A page fault that makes the guest bring
/// a page in: vector 14, `XVMI_INJECT_HARDWARE_EXCEPTION`, `has_error_code` 1, `cr2` the
/// address.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct xvmi_injection {
    /// The vector (3 `#BP`, 14 `#PF`, ...).
    pub vector: u8,
    /// `XVMI_INJECT_*` (the VMX interruption type).
    pub type_: u8,
    /// Length of the instruction that raised it (software interrupts and exceptions).
    pub insn_length: u8,
    /// 1 if `error_code` is pushed with it, else 0.
    pub has_error_code: u8,
    /// The error code (`#PF`: bit 1 write, bit 2 user, bit 4 instruction fetch).
    pub error_code: u32,
    /// For `#PF`, the address the guest reads from CR2.
    pub cr2: u64,
}

impl xvmi_injection {
    /// Validated.
    pub(crate) fn to_rust(self) -> std::result::Result<Injection, Fail> {
        let kind = match self.type_ {
            XVMI_INJECT_EXTERNAL_INTERRUPT => InjectionKind::ExternalInterrupt,
            XVMI_INJECT_NMI => InjectionKind::Nmi,
            XVMI_INJECT_HARDWARE_EXCEPTION => InjectionKind::HardwareException,
            XVMI_INJECT_SOFTWARE_INTERRUPT => InjectionKind::SoftwareInterrupt,
            XVMI_INJECT_PRIVILEGED_SOFTWARE_EXCEPTION => InjectionKind::PrivilegedSoftwareException,
            XVMI_INJECT_SOFTWARE_EXCEPTION => InjectionKind::SoftwareException,
            t => {
                return Err(Fail::invalid(format!(
                    "injection type {t} is not an XVMI_INJECT_* value (0, 2..=6)"
                )))
            }
        };
        let has = arg_bool(self.has_error_code, "has_error_code")?;
        Ok(Injection {
            vector: self.vector,
            kind,
            error_code: has.then_some(self.error_code),
            insn_len: self.insn_length,
            cr2: self.cr2,
        })
    }
}

/// Queue `*injection` for vCPU `vcpu`: it takes it on its next entry into the guest. Inside an
/// event callback, answer with `XVMI_RESPONSE_INJECT` instead. [`XVMI_ERR_BACKEND`] with EBUSY
/// if an event is already pending for that vCPU.
///
/// # Safety
/// `domain` is NULL or a live handle; `injection` points at an initialised [`xvmi_injection`].
#[no_mangle]
pub unsafe extern "C" fn xvmi_domain_inject(
    domain: *const xvmi_domain,
    vcpu: u32,
    injection: *const xvmi_injection,
) -> xvmi_result {
    boundary(|| {
        let d = arg_handle(domain, "domain")?;
        // SAFETY: `injection` points at an initialised value (this function's contract).
        let inj = unsafe { arg_ref(injection, "injection") }?.to_rust()?;
        d.shared.backend.inject(VcpuId(vcpu), &inj)?;
        Ok(())
    })
}

/// Script a simulated guest action: vCPU `vcpu` writes `value` to a control register
/// (`XVMI_REGISTER_*`). Actions run, in order, when a session waits for events.
///
/// # Safety
/// `domain` is NULL or a live handle from `xvmi_sim_open_*`.
#[no_mangle]
pub unsafe extern "C" fn xvmi_sim_script_write_cr(
    domain: *const xvmi_domain,
    vcpu: u32,
    register: u32,
    value: u64,
) -> xvmi_result {
    // SAFETY: `script` needs `domain` to be NULL or a live handle, which is this function's own `#
    // Safety` contract.
    unsafe {
        script(domain, vcpu, |vcpu| {
            Ok(GuestAction::WriteCr {
                vcpu,
                register: control_register(register, "register")?,
                value,
            })
        })
    }
}

/// Script a simulated `wrmsr` of `value` to MSR `index` on vCPU `vcpu`.
///
/// # Safety
/// `domain` is NULL or a live handle from `xvmi_sim_open_*`.
#[no_mangle]
pub unsafe extern "C" fn xvmi_sim_script_write_msr(
    domain: *const xvmi_domain,
    vcpu: u32,
    index: u32,
    value: u64,
) -> xvmi_result {
    // SAFETY: `script` needs `domain` to be NULL or a live handle, which is this function's own `#
    // Safety` contract.
    unsafe {
        script(domain, vcpu, |vcpu| {
            Ok(GuestAction::WriteMsr { vcpu, index, value })
        })
    }
}

/// Script a simulated store of `len` bytes (1..=4096, within one page) at guest-physical
/// `gpa` by vCPU `vcpu`. The bytes are copied.
///
/// # Safety
/// `domain` is NULL or a live handle from `xvmi_sim_open_*`; `bytes` is valid for `len` reads.
#[no_mangle]
pub unsafe extern "C" fn xvmi_sim_script_write(
    domain: *const xvmi_domain,
    vcpu: u32,
    gpa: u64,
    bytes: *const u8,
    len: usize,
) -> xvmi_result {
    // SAFETY: `script` needs `domain` to be NULL or a live handle, which is this function's own `#
    // Safety` contract.
    unsafe {
        script(domain, vcpu, |vcpu| {
            let b = arg_bytes(bytes, len, "bytes")?;
            if b.is_empty() || Gpa(gpa).page_offset() + b.len() as u64 > PAGE_SIZE {
                return Err(Fail::invalid(format!(
                    "a simulated store of {len} bytes at {gpa:#x} must be 1 to 4096 bytes inside one page"
                )));
            }
            Ok(GuestAction::Write {
                vcpu,
                gpa: Gpa(gpa),
                bytes: b.to_vec(),
            })
        })
    }
}

/// Script a simulated load from guest-physical `gpa` by vCPU `vcpu`.
///
/// # Safety
/// `domain` is NULL or a live handle from `xvmi_sim_open_*`.
#[no_mangle]
pub unsafe extern "C" fn xvmi_sim_script_read(
    domain: *const xvmi_domain,
    vcpu: u32,
    gpa: u64,
) -> xvmi_result {
    // SAFETY: `script` needs `domain` to be NULL or a live handle, which is this function's own `#
    // Safety` contract.
    unsafe {
        script(domain, vcpu, |vcpu| {
            Ok(GuestAction::Read {
                vcpu,
                gpa: Gpa(gpa),
            })
        })
    }
}

/// Script a simulated instruction fetch at guest-physical `gpa` by vCPU `vcpu` (an `int3`
/// byte there raises a breakpoint; `rip` becomes `gpa`).
///
/// # Safety
/// `domain` is NULL or a live handle from `xvmi_sim_open_*`.
#[no_mangle]
pub unsafe extern "C" fn xvmi_sim_script_execute(
    domain: *const xvmi_domain,
    vcpu: u32,
    gpa: u64,
) -> xvmi_result {
    // SAFETY: `script` needs `domain` to be NULL or a live handle, which is this function's own `#
    // Safety` contract.
    unsafe {
        script(domain, vcpu, |vcpu| {
            Ok(GuestAction::Execute {
                vcpu,
                gpa: Gpa(gpa),
            })
        })
    }
}

/// Script a simulated `cpuid` of `leaf` by vCPU `vcpu`.
///
/// # Safety
/// `domain` is NULL or a live handle from `xvmi_sim_open_*`.
#[no_mangle]
pub unsafe extern "C" fn xvmi_sim_script_cpuid(
    domain: *const xvmi_domain,
    vcpu: u32,
    leaf: u32,
) -> xvmi_result {
    // SAFETY: `script` needs `domain` to be NULL or a live handle, which is this function's own `#
    // Safety` contract.
    unsafe { script(domain, vcpu, |vcpu| Ok(GuestAction::Cpuid { vcpu, leaf })) }
}

/// What a simulated domain holds now: what a test checks after a session to see that nothing
/// was left behind.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct xvmi_sim_state {
    /// vCPUs paused by an unanswered event.
    pub paused_vcpus: u32,
    /// vCPUs not in view 0, or single-stepping.
    pub vcpus_not_clean: u32,
    /// Enabled monitors.
    pub monitors: u32,
    /// altp2m views besides view 0.
    pub extra_views: u32,
    /// Frames with restricted access, remapped frames or #VE delivery, and hidden views.
    pub restrictions: u64,
    /// Frames from `alloc_frame` not yet freed.
    pub extra_frames: u64,
    /// Requests written to the ring so far.
    pub events_raised: u64,
    /// Responses Xen would have skipped (wrong version or vCPU): the vCPU stays paused.
    pub responses_skipped: u64,
    /// Scripted actions not yet run.
    pub script_left: u64,
    /// Actions that took effect.
    pub done: u64,
    /// Actions a DENY response cancelled.
    pub denied: u64,
    /// Actions emulated (EMULATE or EMULATE_NOWRITE).
    pub emulated: u64,
    /// Loads that completed.
    pub reads: u64,
    /// Writes dropped because the ring was disabled while they waited.
    pub dropped: u64,
    /// Whether the vm_event ring is enabled.
    pub ring_enabled: bool,
    /// Injected events the simulated vCPUs have taken.
    pub injections_delivered: u64,
    /// vCPUs with an injected event not yet taken.
    pub injections_pending: u32,
}

/// Read the state of a simulated domain.
///
/// # Safety
/// `domain` is NULL or a live handle from `xvmi_sim_open_*`; `out` is valid for a write.
#[no_mangle]
pub unsafe extern "C" fn xvmi_sim_get_state(
    domain: *const xvmi_domain,
    out: *mut xvmi_sim_state,
) -> xvmi_result {
    boundary(|| {
        let d = arg_handle(domain, "domain")?;
        let out = arg_out(out, "out")?;
        let st = d.shared.sim()?.state();
        let mut s = xvmi_sim_state {
            paused_vcpus: st.paused_vcpus().len() as u32,
            vcpus_not_clean: st.vcpus_not_clean().len() as u32,
            monitors: st.monitors().len() as u32,
            extra_views: st.extra_views().len() as u32,
            restrictions: st.restrictions() as u64,
            extra_frames: st.extra_frames().len() as u64,
            events_raised: st.events_raised(),
            responses_skipped: st.responses_skipped(),
            script_left: st.script_left() as u64,
            ring_enabled: st.ring_enabled(),
            injections_delivered: st.delivered().len() as u64,
            injections_pending: st.injections_pending().len() as u32,
            ..Default::default()
        };
        for o in st.outcomes() {
            match o {
                Outcome::Done(_) => s.done += 1,
                Outcome::Denied(_) => s.denied += 1,
                Outcome::Emulated(..) | Outcome::EmulatedInstruction(..) => s.emulated += 1,
                Outcome::Read(..) => s.reads += 1,
                Outcome::Dropped(_) => s.dropped += 1,
            }
        }
        // SAFETY: checked by arg_out.
        unsafe { put(out, s) };
        Ok(())
    })
}

/// The domain-wide pauses a simulated domain holds now ([`xvmi_domain_pause`] not yet
/// resumed; not the pauses of vCPUs waiting for an event's answer, which are
/// [`xvmi_sim_state::paused_vcpus`]). The simulated guest runs only at 0.
///
/// # Safety
/// `domain` is NULL or a live handle from `xvmi_sim_open_*`; `out_count` is valid for a write.
#[no_mangle]
pub unsafe extern "C" fn xvmi_sim_pause_count(
    domain: *const xvmi_domain,
    out_count: *mut u32,
) -> xvmi_result {
    boundary(|| {
        let d = arg_handle(domain, "domain")?;
        let out = arg_out(out_count, "out_count")?;
        let n = d.shared.sim()?.state().pause_count();
        // SAFETY: checked by arg_out.
        unsafe { put(out, n) };
        Ok(())
    })
}

/// The value of MSR `index` of a simulated vCPU, as the simulated guest last wrote it.
/// [`XVMI_ERR_NOT_FOUND`] if it never wrote it.
///
/// # Safety
/// `domain` is NULL or a live handle from `xvmi_sim_open_*`; `out_value` is valid for a write.
#[no_mangle]
pub unsafe extern "C" fn xvmi_sim_msr(
    domain: *const xvmi_domain,
    vcpu: u32,
    index: u32,
    out_value: *mut u64,
) -> xvmi_result {
    boundary(|| {
        let d = arg_handle(domain, "domain")?;
        let out = arg_out(out_value, "out_value")?;
        let v = d
            .shared
            .sim()?
            .state()
            .msr(VcpuId(vcpu), index)
            .ok_or_else(|| {
                Fail::new(
                    XVMI_ERR_NOT_FOUND,
                    format!("simulated vCPU {vcpu} has no value for MSR {index:#x}"),
                )
            })?;
        // SAFETY: checked by arg_out.
        unsafe { put(out, v) };
        Ok(())
    })
}

/// What [`xvmi_domain_recover`] found and did.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct xvmi_recovery {
    /// Whether a journal was found (false: nothing to recover, the other fields are 0).
    pub found: bool,
    /// Whether the dead monitor's ring was still enabled (and was disabled).
    pub ring_was_enabled: bool,
    /// Process id of the monitor that did not tear down.
    pub owner_pid: u32,
    /// Changes listed in its journal (all undone, or reported in `warnings`).
    pub changes: u64,
    /// Release responses sent, one per vCPU.
    pub vcpus_released: u32,
    /// Changes that could not be undone (typically already undone by the dead monitor).
    pub warnings: u32,
}

/// `xvmi_domain_recover_with` flag: recover although the journal's owner looks alive (a
/// journal from another PID namespace). No monitor may be attached.
pub const XVMI_RECOVER_FORCE: u32 = 1;
/// `xvmi_domain_recover_with` flag: recover from a journal written for another domain identity
/// or host boot, or one that records neither (format 1), after checking it yourself: recovery
/// releases the frames, destroys the views and disables the ring it names.
pub const XVMI_RECOVER_IGNORE_BINDING: u32 = 2;

/// Undo what a monitor killed before its teardown (SIGKILL, the OOM killer) left in the
/// domain, from the journal it kept with
/// `xvmi_session_persist_journal`, and release
/// the vCPUs it left paused. Call it before opening a session. No journal at `path` is success
/// with `found == false`. See `Session::recover` and `docs/events.md`. The same as
/// `xvmi_domain_recover_with` with no flags.
///
/// [`XVMI_ERR_JOURNAL_IN_USE`] if the journal's owner still runs;
/// [`XVMI_ERR_JOURNAL_REFUSED`] if the journal is not a regular file of this user with mode
/// 0600 in a 0700 directory, or was written for another domain or boot (nothing is changed).
///
/// # Safety
/// `domain` is NULL or a live handle with no session open; `path` is a NUL-terminated
/// string; `out` is valid for a write.
#[no_mangle]
pub unsafe extern "C" fn xvmi_domain_recover(
    domain: *const xvmi_domain,
    path: *const c_char,
    out: *mut xvmi_recovery,
) -> xvmi_result {
    // SAFETY: the same contract.
    unsafe { xvmi_domain_recover_with(domain, path, 0, out) }
}

/// `xvmi_domain_recover` with `flags`: `XVMI_RECOVER_FORCE`, `XVMI_RECOVER_IGNORE_BINDING`
/// (or 0). Each overrides one check only; no flag makes recovery read a journal that is not a
/// regular file of this user with mode 0600 in a 0700 directory. Unknown bits:
/// [`XVMI_ERR_INVALID_ARGUMENT`].
///
/// # Safety
/// As `xvmi_domain_recover`.
#[no_mangle]
pub unsafe extern "C" fn xvmi_domain_recover_with(
    domain: *const xvmi_domain,
    path: *const c_char,
    flags: u32,
    out: *mut xvmi_recovery,
) -> xvmi_result {
    boundary(|| {
        let d = arg_handle(domain, "domain")?;
        // SAFETY: `path` is NULL (refused by arg_str) or a NUL-terminated string, as this
        // function's `# Safety` requires.
        let path = unsafe { arg_str(path, "path") }?;
        let out = arg_out(out, "out")?;
        let known = XVMI_RECOVER_FORCE | XVMI_RECOVER_IGNORE_BINDING;
        if flags & !known != 0 {
            return Err(Fail::invalid(format!(
                "flags {flags:#x}: unknown bits {:#x}",
                flags & !known
            )));
        }
        let opts = RecoverOptions {
            force: flags & XVMI_RECOVER_FORCE != 0,
            ignore_binding: flags & XVMI_RECOVER_IGNORE_BINDING != 0,
        };
        if d.shared.session_open.load(Ordering::SeqCst) {
            return Err(Fail::invalid(
                "a session is open on this domain: recover before opening one",
            ));
        }
        let r = Session::recover_with(&d.shared.backend, path, &opts)?;
        d.shared.guest_ran();
        let r = match r {
            None => xvmi_recovery::default(),
            Some(r) => xvmi_recovery {
                found: true,
                ring_was_enabled: r.ring_was_enabled,
                owner_pid: r.owner.pid,
                changes: r.changes as u64,
                vcpus_released: r.vcpus_released,
                warnings: r.warnings.len() as u32,
            },
        };
        // SAFETY: checked by arg_out.
        unsafe { put(out, r) };
        Ok(())
    })
}

impl Handle for xvmi_domain {
    const KIND: &'static str = "xvmi_domain";
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capi::{xvmi_session, xvmi_session_free, xvmi_session_open};
    use std::ptr::null_mut;

    fn sim_domain(vcpus: usize) -> *mut xvmi_domain {
        let img = vec![0u8; 0x10000];
        let regs = vec![
            xvmi_registers {
                cr0: 0x8005_0033,
                cr3: 0x1000,
                cr4: 0x20,
                efer: 0xd01,
                fs_base: 0x7f00_0000,
                cs_sel: 0x10,
                ..Default::default()
            };
            vcpus
        ];
        let mut d = null_mut();
        // SAFETY: a live image and register array, output on the stack.
        let rc =
            unsafe { xvmi_sim_open_buffer(img.as_ptr(), img.len(), regs.as_ptr(), vcpus, &mut d) };
        assert_eq!(rc, XVMI_OK);
        d
    }

    fn shared(d: *const xvmi_domain) -> Arc<DomainShared> {
        // SAFETY: a live handle.
        Arc::clone(&unsafe { &*d }.shared)
    }

    #[test]
    fn freeing_a_domain_resumes_its_pauses_while_a_session_keeps_it_alive() {
        let d = sim_domain(1);
        let sh = shared(d);
        let mut s: *mut xvmi_session = null_mut();
        // SAFETY: live handles; each freed once.
        unsafe {
            assert_eq!(xvmi_domain_pause(d), XVMI_OK);
            assert_eq!(xvmi_domain_pause(d), XVMI_OK);
            assert_eq!(sh.sim().unwrap().state().pause_count(), 2);
            assert_eq!(xvmi_session_open(d, &mut s), XVMI_OK);
            assert_eq!(xvmi_domain_free(d), XVMI_OK);
            assert_eq!(sh.sim().unwrap().state().pause_count(), 0);
            assert_eq!(xvmi_session_free(s), XVMI_OK);
        }
        assert_eq!(sh.sim().unwrap().state().pause_count(), 0);
    }

    #[test]
    fn a_handle_resumes_only_its_own_pauses() {
        let d = sim_domain(1);
        let sh = shared(d);
        // Another tool's pause (xl pause): not this handle's to undo.
        sh.backend.pause().unwrap();
        // SAFETY: a live handle, freed once.
        unsafe {
            assert_eq!(xvmi_domain_resume(d), XVMI_ERR_INVALID_ARGUMENT);
            assert_eq!(sh.sim().unwrap().state().pause_count(), 1);
            assert_eq!(xvmi_domain_pause(d), XVMI_OK);
            assert_eq!(xvmi_domain_resume(d), XVMI_OK);
            assert_eq!(xvmi_domain_resume(d), XVMI_ERR_INVALID_ARGUMENT);
            assert_eq!(xvmi_domain_free(d), XVMI_OK);
        }
        assert_eq!(
            sh.sim().unwrap().state().pause_count(),
            1,
            "the other pause stays"
        );
    }

    #[test]
    fn registers_are_set_only_while_paused_and_only_where_xen_sets_them() {
        let d = sim_domain(2);
        let sh = shared(d);
        let now = xvmi_registers::from(&sh.backend.registers(VcpuId(1)).unwrap());
        let mut r = now;
        r.rip = 0xffff_ffff_8100_0000;
        r.rax = 42;
        r.cr3 = 0x2000;
        // SAFETY: a live handle, a register set on the stack; freed once.
        unsafe {
            assert_eq!(
                xvmi_domain_set_registers(d, 1, &r),
                XVMI_ERR_INVALID_ARGUMENT
            );
            assert_eq!(xvmi_domain_pause(d), XVMI_OK);
            assert_eq!(xvmi_domain_set_registers(d, 2, &r), XVMI_ERR_NO_SUCH_VCPU);
            let mut bad = r;
            bad.fs_base = 0;
            assert_eq!(xvmi_domain_set_registers(d, 1, &bad), XVMI_ERR_UNSUPPORTED);
            bad = r;
            bad.reserved = 1;
            assert_eq!(
                xvmi_domain_set_registers(d, 1, &bad),
                XVMI_ERR_INVALID_ARGUMENT
            );
            assert_eq!(sh.backend.registers(VcpuId(1)).unwrap().rip, now.rip);
            assert_eq!(xvmi_domain_set_registers(d, 1, &r), XVMI_OK);
            assert_eq!(
                xvmi_domain_set_registers(d, 0, std::ptr::null()),
                XVMI_ERR_NULL_POINTER
            );
            assert_eq!(xvmi_domain_free(d), XVMI_OK);
        }
        let got = sh.backend.registers(VcpuId(1)).unwrap();
        assert_eq!(
            (got.rip, got.rax, got.cr3, got.fs_base),
            (r.rip, 42, 0x2000, now.fs_base)
        );
        assert_eq!(
            sh.backend.registers(VcpuId(0)).unwrap().rip,
            0,
            "vCPU 0 untouched"
        );
    }
}
