//! Backends: where guest state comes from.
//!
//! A backend is split into capability traits, as vmi-rs does, so that each source implements
//! exactly what it can:
//!
//! | trait | snapshot | simulated domain | Xen |
//! |---|---|---|---|
//! | [`PhysicalMemory`] (read) | yes | yes | yes |
//! | [`PhysicalMemoryWrite`] | no | yes | yes |
//! | [`VcpuState`] (read registers) | if the image has them | yes | yes |
//! | [`VcpuStateWrite`] | no | yes | yes |
//! | [`VmControl`] (pause/resume) | no | yes | yes |
//! | [`EventControl`] (monitors) | no | yes | yes |
//! | [`ViewControl`] (altp2m) | no | yes | yes |
//! | [`EventInjection`] (exceptions, interrupts) | no | yes | yes |
//!
//! Everything above the backend (translation, OS parsing, events) is written against these
//! traits, never against a concrete backend.

use std::ops::Range;

use crate::addr::{Gfn, Gpa, VcpuId, ViewId};
use crate::error::Result;
use crate::regs::Registers;

/// Defined in [`crate::vmevent`], the wire format's module, because vm_event requests and
/// responses carry them too.
pub use crate::vmevent::{ControlRegister, Injection, InjectionKind, MemAccess};

pub mod sim;
pub mod snapshot;
#[cfg(feature = "xen")]
pub mod xen;

/// Read access to guest-physical memory.
pub trait PhysicalMemory {
    /// Short name for messages ("QEMU ELF core", "Xen domain 3").
    fn name(&self) -> &'static str;

    /// Fill `buf` from guest-physical memory starting at `gpa`.
    ///
    /// # Errors
    /// [`Error::PhysicalUnmapped`](crate::Error::PhysicalUnmapped) if any byte of the range is not
    /// backed; `buf` may then be partly written.
    fn read_physical(&self, gpa: Gpa, buf: &mut [u8]) -> Result<()>;

    /// The guest-physical ranges that are backed (sorted, non-overlapping). Used to bound scans.
    fn physical_ranges(&self) -> Vec<Range<u64>>;

    /// Forget mappings of guest frames the backend keeps between reads (the Xen backend's
    /// foreign-map cache): after the guest ran, a frame may be backed by another page.
    /// [`GuestMemory::flush_translations`](crate::mem::GuestMemory::flush_translations) calls
    /// it. The default does nothing (a snapshot cannot change).
    fn drop_cached_mappings(&self) {}

    /// How many ranges [`PhysicalMemory::physical_ranges`] has, without building the list
    /// (a snapshot answers in O(1): a hostile dump can have hundreds of thousands).
    fn physical_range_count(&self) -> usize {
        self.physical_ranges().len()
    }

    /// Range `index` of [`PhysicalMemory::physical_ranges`], without building the list (a
    /// snapshot answers in O(1)).
    fn physical_range(&self, index: usize) -> Option<Range<u64>> {
        self.physical_ranges().get(index).cloned()
    }

    /// The highest backed frame.
    fn max_gfn(&self) -> Gfn {
        Gfn(self
            .physical_ranges()
            .last()
            .map(|r| r.end.saturating_sub(1) >> crate::addr::PAGE_SHIFT)
            .unwrap_or(0))
    }

    /// Borrow `len` bytes of guest-physical memory without copying, when the backend holds
    /// them contiguously (a mapped snapshot does; a live domain does not). Used by scans.
    fn physical_slice(&self, _gpa: Gpa, _len: usize) -> Option<&[u8]> {
        None
    }

    /// Read a little-endian `u64` (page-table entries, pointers).
    ///
    /// Read the whole pages from `first` into `buf` (`present.len()` pages of
    /// [`PAGE_SIZE`](crate::addr::PAGE_SIZE) bytes), setting `present[i]` for each page that
    /// could be read; a page that could not is left in `buf` as it was. For bulk copies
    /// (`crate::capture`): the default reads all the pages at once and, when that fails, page
    /// by page; a backend that can map many frames in one call (Xen: one foreign mapping of up
    /// to 1,024 frames with an error per frame) overrides it.
    ///
    /// # Errors
    /// [`Error::Overflow`](crate::Error::Overflow) when `buf` is not `present.len()` pages or
    /// the range wraps; a page that cannot be read is not an error.
    fn read_pages(&self, first: Gfn, buf: &mut [u8], present: &mut [bool]) -> Result<()> {
        let page = crate::addr::PAGE_SIZE as usize;
        check_pages(first, buf, present)?;
        if self
            .read_physical(Gpa(first.0 << crate::addr::PAGE_SHIFT), buf)
            .is_ok()
        {
            present.fill(true);
            return Ok(());
        }
        for (i, (b, p)) in buf
            .chunks_exact_mut(page)
            .zip(present.iter_mut())
            .enumerate()
        {
            let gpa = Gpa((first.0 + i as u64) << crate::addr::PAGE_SHIFT);
            *p = self.read_physical(gpa, b).is_ok();
        }
        Ok(())
    }

    /// # Errors
    /// As [`PhysicalMemory::read_physical`].
    #[inline]
    fn read_physical_u64(&self, gpa: Gpa) -> Result<u64> {
        let mut b = [0u8; 8];
        self.read_physical(gpa, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }
}

/// Write access to guest-physical memory.
pub trait PhysicalMemoryWrite: PhysicalMemory {
    /// Write `buf` to guest-physical memory at `gpa`.
    ///
    /// # Errors
    /// [`Error::PhysicalUnmapped`](crate::Error::PhysicalUnmapped) if the range is not backed.
    fn write_physical(&self, gpa: Gpa, buf: &[u8]) -> Result<()>;
}

/// Read access to vCPU registers.
pub trait VcpuState {
    /// Number of vCPUs.
    fn vcpu_count(&self) -> u32;

    /// Registers of one vCPU.
    ///
    /// # Errors
    /// [`Error::NoSuchVcpu`](crate::Error::NoSuchVcpu), or a backend error.
    fn registers(&self, vcpu: VcpuId) -> Result<Registers>;
}

/// Write access to vCPU registers (the domain must be paused or the vCPU stopped on an event).
pub trait VcpuStateWrite: VcpuState {
    /// Replace the registers of one vCPU.
    ///
    /// # Errors
    /// [`Error::NoSuchVcpu`](crate::Error::NoSuchVcpu), or a backend error.
    fn set_registers(&self, vcpu: VcpuId, regs: &Registers) -> Result<()>;
}

/// Pause and resume a whole domain.
pub trait VmControl {
    /// Pause every vCPU. Pauses nest in Xen: each pause needs one resume.
    ///
    /// # Errors
    /// Backend error.
    fn pause(&self) -> Result<()>;
    /// Undo one [`VmControl::pause`].
    ///
    /// # Errors
    /// Backend error.
    fn resume(&self) -> Result<()>;
}

/// A guest action that can be trapped. Mirrors Xen's `XEN_DOMCTL_MONITOR_EVENT_*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Monitor {
    /// Writes to a control register.
    ControlRegister {
        /// Which register.
        register: ControlRegister,
        /// Pause the vCPU until answered (required to deny the write).
        sync: bool,
        /// Only report writes that change the value.
        on_change_only: bool,
        /// Bits whose changes are ignored.
        ignore_mask: u64,
    },
    /// `wrmsr` to one MSR index.
    Msr {
        /// The MSR index (e.g. 0xc000_0082 for `MSR_LSTAR`).
        index: u32,
        /// Only report writes that change the value.
        on_change_only: bool,
    },
    /// Single-stepping (monitor trap flag) of vCPUs that have it toggled on.
    SingleStep,
    /// `int3` executed in the guest.
    SoftwareBreakpoint,
    /// Debug exceptions (#DB).
    DebugException {
        /// Pause the vCPU until answered.
        sync: bool,
    },
    /// `cpuid`.
    Cpuid,
    /// Loads and stores of descriptor-table registers (LGDT, SIDT, ...).
    DescriptorAccess,
    /// Hypercalls from the guest asking for the monitor.
    GuestRequest {
        /// Pause the vCPU until answered.
        sync: bool,
    },
    /// Instructions Xen's emulator does not implement.
    EmulUnimplemented,
    /// Page faults inside the guest.
    InguestPagefault,
}

/// Trap guest actions (the monitor side of vm_event).
pub trait EventControl {
    /// Turn a monitor on or off.
    ///
    /// # Errors
    /// Backend error, or the hypervisor lacks the capability.
    fn set_monitor(&self, monitor: Monitor, enable: bool) -> Result<()>;

    /// Turn single-stepping (MTF) of one vCPU on or off (`xc_domain_debug_control`).
    ///
    /// # Errors
    /// Backend error.
    fn set_vcpu_singlestep(&self, vcpu: VcpuId, enable: bool) -> Result<()>;
}

/// The vm_event ring of a domain and its notification channel.
pub trait EventChannel {
    /// The shared ring page.
    fn ring(&self) -> &crate::vmevent::ring::RingPage;

    /// Wait until the producer signals new requests, at most `timeout`. `Ok(true)` if it did.
    /// (The simulated domain runs its guest here.)
    ///
    /// # Errors
    /// Backend error (the event channel failed).
    fn wait(&self, timeout: std::time::Duration) -> Result<bool>;

    /// Tell the producer that responses were published (Xen: `xenevtchn_notify`, which runs
    /// `vm_event_resume`).
    ///
    /// # Errors
    /// Backend error.
    fn notify(&self) -> Result<()>;

    /// Disable the ring (Xen: `xc_monitor_disable`). Last step of teardown.
    ///
    /// # Errors
    /// Backend error.
    fn close_ring(&self) -> Result<()>;

    /// Enable a fresh ring on this handle (Xen: `xc_monitor_enable` and binding its event
    /// channel). A no-op if this handle's ring is already enabled.
    ///
    /// # Errors
    /// Backend error; on Xen EBUSY means another consumer's ring is active.
    fn enable_ring(&self) -> Result<()>;

    /// Disable a ring that a consumer which is gone left enabled (it was killed before its
    /// teardown). Xen then lets go of vCPUs blocked on a full ring, but vCPUs paused on an
    /// unanswered sync event stay paused, and the register or MSR write each of them was
    /// waiting to have decided is dropped. `Ok(false)` if no ring was enabled.
    ///
    /// # Errors
    /// Backend error.
    fn abandon_ring(&self) -> Result<bool>;

    /// A stable identity of the domain, which session journals are bound to so that recovery
    /// never applies one domain's journal to another (a domain id or name can be reused): on
    /// Xen the domain's UUID (`xc_domain_getinfolist`'s handle), on the simulated domain a
    /// UUID drawn when it was created.
    ///
    /// # Errors
    /// Backend error.
    fn domain_uuid(&self) -> Result<String>;
}

/// Make a vCPU take an exception or interrupt (Xen: `xendevicemodel_inject_event`). One event
/// can be pending per vCPU; it is delivered when the vCPU next enters the guest, so a vCPU
/// paused on an event takes it when the event is answered.
pub trait EventInjection {
    /// Queue `event` for `vcpu`.
    ///
    /// # Errors
    /// Backend error; on Xen EBUSY while an earlier injection is still pending.
    fn inject(&self, vcpu: VcpuId, event: &Injection) -> Result<()>;
}

/// altp2m views: alternative guest-physical-to-machine maps with their own permissions.
pub trait ViewControl {
    /// Create a view whose frames have `default_access`.
    ///
    /// # Errors
    /// Backend error; altp2m not enabled for the domain.
    fn create_view(&self, default_access: MemAccess) -> Result<ViewId>;
    /// Destroy a view (never view 0). No vCPU may be using it.
    ///
    /// # Errors
    /// Backend error.
    fn destroy_view(&self, view: ViewId) -> Result<()>;
    /// Switch every vCPU to `view`.
    ///
    /// # Errors
    /// Backend error.
    fn switch_view(&self, view: ViewId) -> Result<()>;
    /// Set the access rights of one frame in one view.
    ///
    /// # Errors
    /// Backend error.
    fn set_mem_access(&self, view: ViewId, gfn: Gfn, access: MemAccess) -> Result<()>;
    /// Read the access rights of one frame in one view.
    ///
    /// # Errors
    /// Backend error.
    fn mem_access(&self, view: ViewId, gfn: Gfn) -> Result<MemAccess>;
    /// Make `gfn` in `view` show the frame that backs `target`, or undo that with `None`.
    ///
    /// # Errors
    /// Backend error.
    fn change_gfn(&self, view: ViewId, gfn: Gfn, target: Option<Gfn>) -> Result<()>;

    /// Whether an EPT violation on `gfn` in `view` is kept from the guest (`true`, the default:
    /// it becomes a vm_event) or delivered to it as a #VE (`false`).
    ///
    /// # Errors
    /// Backend error.
    fn set_suppress_ve(&self, view: ViewId, gfn: Gfn, suppress: bool) -> Result<()>;

    /// Whether the guest may switch to `view` itself with VMFUNC (views are visible by default).
    ///
    /// # Errors
    /// Backend error.
    fn set_view_visibility(&self, view: ViewId, visible: bool) -> Result<()>;

    /// Give the domain one more frame, above its RAM, for a shadow page; zero-filled.
    ///
    /// # Errors
    /// Backend error (the domain is at its memory limit and it cannot be raised).
    fn alloc_frame(&self) -> Result<Gfn>;

    /// Return a frame from [`ViewControl::alloc_frame`].
    ///
    /// # Errors
    /// Backend error.
    fn free_frame(&self, gfn: Gfn) -> Result<()>;
}

/// The arguments of [`PhysicalMemory::read_pages`] agree: `buf` holds `present.len()` pages
/// and the frames do not wrap.
pub(crate) fn check_pages(first: Gfn, buf: &[u8], present: &[bool]) -> Result<()> {
    let n = present.len() as u64;
    if buf.len() as u64 != n.saturating_mul(crate::addr::PAGE_SIZE)
        || first
            .0
            .checked_add(n)
            .is_none_or(|e| e > (u64::MAX >> crate::addr::PAGE_SHIFT))
    {
        return Err(crate::Error::Overflow(
            "read_pages: buffer size or frame range",
        ));
    }
    Ok(())
}

macro_rules! forward_physical {
    ($($ty:ty),*) => {$(
        impl<T: PhysicalMemory + ?Sized> PhysicalMemory for $ty {
            fn name(&self) -> &'static str { (**self).name() }
            #[inline]
            fn read_physical(&self, gpa: Gpa, buf: &mut [u8]) -> Result<()> {
                (**self).read_physical(gpa, buf)
            }
            fn physical_ranges(&self) -> Vec<Range<u64>> { (**self).physical_ranges() }
            fn physical_range_count(&self) -> usize { (**self).physical_range_count() }
            fn drop_cached_mappings(&self) { (**self).drop_cached_mappings() }
            fn physical_range(&self, index: usize) -> Option<Range<u64>> {
                (**self).physical_range(index)
            }
            fn max_gfn(&self) -> Gfn { (**self).max_gfn() }
            fn physical_slice(&self, gpa: Gpa, len: usize) -> Option<&[u8]> {
                (**self).physical_slice(gpa, len)
            }
            #[inline]
            fn read_physical_u64(&self, gpa: Gpa) -> Result<u64> { (**self).read_physical_u64(gpa) }
            fn read_pages(&self, first: Gfn, buf: &mut [u8], present: &mut [bool]) -> Result<()> {
                (**self).read_pages(first, buf, present)
            }
        }
        impl<T: VcpuState + ?Sized> VcpuState for $ty {
            fn vcpu_count(&self) -> u32 { (**self).vcpu_count() }
            fn registers(&self, vcpu: VcpuId) -> Result<Registers> { (**self).registers(vcpu) }
        }
    )*};
}
forward_physical!(&T, Box<T>, std::sync::Arc<T>);
