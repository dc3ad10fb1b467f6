//! A **simulated** domain — not Xen. It exists so that the event core (ring consumer, event
//! loop, responses, views, teardown) can be tested without a hypervisor.
//!
//! It holds guest memory (any [`PhysicalMemory`], e.g. a real snapshot, with a copy-on-write
//! overlay), vCPUs with registers, and a script of guest actions (control-register and MSR
//! writes, memory reads/writes/executes, `cpuid`). Running the script produces real
//! `vm_event_request_t` bytes on a real ring page through [`FrontRing`], with the codec the
//! event layer uses ([`crate::vmevent::codec`]: requests encoded, responses decoded), and
//! responses are applied the way Xen's `vm_event_resume` documents:
//!
//! - a sync event pauses its vCPU until a response with `VCPU_PAUSED` arrives; a response with
//!   a wrong version or vCPU is skipped, and the vCPU stays paused (as on Xen);
//! - `DENY` cancels a pending CR/MSR write when the response's reason is a CR or MSR write
//!   (`vm_event_register_write_resume`); otherwise the write happens on resume;
//! - `EMULATE` performs the faulting access without lifting the restriction,
//!   `EMULATE_NOWRITE` discards its write; without either, the access is retried in the vCPU's
//!   (possibly switched) view;
//! - `ALTERNATE_P2M` switches the vCPU's view; `TOGGLE_SINGLESTEP` flips single-stepping;
//!   `FAST_SINGLESTEP` steps once then switches view; `SET_REGISTERS` applies registers;
//! - the active view's access rights decide which accesses fault; view 0 is the host p2m;
//! - when the ring is full the vCPU that would produce an event waits (throttling).
//!
//! What it does not simulate: instruction semantics beyond the scripted actions, interrupts,
//! timing, and virtual addresses of code (an `Execute` sets `rip` to the guest-physical address
//! it fetches from). Its [`SimDomain::state`] exposes everything a test needs to assert that nothing was
//! left behind.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::Range;
use std::time::Duration;

use crate::addr::{Gfn, Gpa, VcpuId, ViewId, PAGE_SIZE};
use crate::backend::{
    ControlRegister, EventChannel, EventControl, EventInjection, Injection, MemAccess, Monitor,
    PhysicalMemory, PhysicalMemoryWrite, VcpuState, VcpuStateWrite, ViewControl, VmControl,
};
use crate::error::{Error, Result};
use crate::regs::Registers;
use crate::vmevent::abi::{flag, reason, ENTRY_SIZE, RING_SLOTS};
use crate::vmevent::codec::{decode_response, encode_request, Event, EventKind};
use crate::vmevent::ring::{FrontRing, RingPage};

const NAME: &str = "simulated domain";
/// Views a domain may have (Xen 4.17: `MAX_ALTP2M`).
pub const MAX_VIEWS: usize = 10;

/// One thing the simulated guest does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GuestAction {
    /// `mov crN, value` / `xsetbv`.
    WriteCr {
        /// vCPU.
        vcpu: VcpuId,
        /// Register.
        register: ControlRegister,
        /// New value.
        value: u64,
    },
    /// `wrmsr`.
    WriteMsr {
        /// vCPU.
        vcpu: VcpuId,
        /// MSR index.
        index: u32,
        /// New value.
        value: u64,
    },
    /// A store to guest-physical memory (after the guest's own page-table translation).
    Write {
        /// vCPU.
        vcpu: VcpuId,
        /// Target.
        gpa: Gpa,
        /// Bytes stored (within one page).
        bytes: Vec<u8>,
    },
    /// A load.
    Read {
        /// vCPU.
        vcpu: VcpuId,
        /// Source.
        gpa: Gpa,
    },
    /// An instruction fetch at `gpa`; an `int3` byte there raises a breakpoint.
    Execute {
        /// vCPU.
        vcpu: VcpuId,
        /// Instruction address.
        gpa: Gpa,
    },
    /// `cpuid`.
    Cpuid {
        /// vCPU.
        vcpu: VcpuId,
        /// Leaf.
        leaf: u32,
    },
}

impl GuestAction {
    fn vcpu(&self) -> VcpuId {
        match self {
            GuestAction::WriteCr { vcpu, .. }
            | GuestAction::WriteMsr { vcpu, .. }
            | GuestAction::Write { vcpu, .. }
            | GuestAction::Read { vcpu, .. }
            | GuestAction::Execute { vcpu, .. }
            | GuestAction::Cpuid { vcpu, .. } => *vcpu,
        }
    }
}

/// What happened to each action (for assertions).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It took effect.
    Done(GuestAction),
    /// A DENY response cancelled it.
    Denied(GuestAction),
    /// It was emulated (writes discarded with `EMULATE_NOWRITE`).
    Emulated(GuestAction, bool),
    /// An `int3` answered with `EMULATE | SET_EMUL_INSN_DATA`: Xen's emulator ran these bytes
    /// (the instruction the breakpoint replaced) in its place.
    EmulatedInstruction(GuestAction, [u8; 16]),
    /// A read completed and saw this byte at its address.
    Read(GuestAction, u8),
    /// The ring was disabled while the vCPU waited for this write to be decided (its
    /// monitor died): the write never happens.
    Dropped(GuestAction),
}

#[derive(Clone, Debug, Default)]
struct Vcpu {
    regs: Registers,
    view: u16,
    singlestep: bool,
    fast_singlestep_view: Option<u16>,
    /// Paused by a sync event, waiting for a response.
    paused: bool,
    /// The action that raised the event, to finish on resume.
    pending: Option<GuestAction>,
    msrs: HashMap<u32, u64>,
    /// An injected event the vCPU takes on its next entry into the guest.
    injected: Option<Injection>,
}

#[derive(Clone, Debug)]
struct View {
    default: MemAccess,
    access: HashMap<u64, MemAccess>,
    remap: HashMap<u64, u64>,
    /// Frames whose violations go to the guest as #VE (suppress-#VE cleared).
    ve: std::collections::HashSet<u64>,
    visible: bool,
}

/// Everything a test may inspect.
#[derive(Debug)]
pub struct SimState {
    base: Box<dyn PhysicalMemory + Send>,
    /// Pages written (by the script or by xenvmi), looked up on every read: an integer hash
    /// (the keys are the script's and xenvmi's own writes).
    dirty: crate::inthash::IntMap<u64, Box<[u8]>>,
    vcpus: Vec<Vcpu>,
    monitors: Vec<Monitor>,
    ring_enabled: bool,
    /// A vCPU waits for a free ring slot (Xen: on the ring's wait queue), which makes
    /// disabling the ring fail with EBUSY until the consumer frees slots and the vCPU runs.
    blocked: bool,
    /// Fault injection: this many more `close_ring` calls answer EBUSY.
    busy_closes: u32,
    /// `close_ring` calls that answered EBUSY.
    busy_answers: u32,
    front: FrontRing,
    views: BTreeMap<u16, View>,
    script: VecDeque<GuestAction>,
    pause_count: u32,
    outcomes: Vec<Outcome>,
    events_raised: u64,
    responses_skipped: u64,
    extra_frames: Vec<u64>,
    /// Frames of the base memory released with `free_frame` (Xen releases any page it is
    /// given): reads and writes of them fail.
    freed: std::collections::BTreeSet<u64>,
    /// Drawn at creation: this domain's identity (`EventChannel::domain_uuid`).
    uuid: String,
    /// Byte patches for the next requests, one list per request (fault injection).
    corruptions: VecDeque<Vec<(usize, Vec<u8>)>>,
    /// Injected events the guest took, in order.
    delivered: Vec<(VcpuId, Injection)>,
    /// Fault injection: frames `write_physical` refuses (reads and the guest's own stores
    /// work).
    unwritable: std::collections::BTreeSet<u64>,
}

impl std::fmt::Debug for dyn PhysicalMemory + Send {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl SimState {
    /// One vCPU, or [`Error::NoSuchVcpu`].
    fn vcpu_mut(&mut self, vcpu: VcpuId) -> Result<&mut Vcpu> {
        let count = self.vcpus.len() as u32;
        self.vcpus
            .get_mut(vcpu.0 as usize)
            .ok_or(Error::NoSuchVcpu { vcpu, count })
    }

    /// vCPUs paused by an unanswered event.
    pub fn paused_vcpus(&self) -> Vec<VcpuId> {
        (0..self.vcpus.len())
            .filter(|&i| self.vcpus[i].paused)
            .map(|i| VcpuId(i as u32))
            .collect()
    }
    /// Enabled monitors.
    pub fn monitors(&self) -> &[Monitor] {
        &self.monitors
    }
    /// Views other than the host view.
    pub fn extra_views(&self) -> Vec<ViewId> {
        self.views
            .keys()
            .filter(|&&v| v != 0)
            .map(|&v| ViewId(v))
            .collect()
    }
    /// Frames with restricted access, remapped frames or #VE delivery in any view, and views
    /// hidden from VMFUNC.
    pub fn restrictions(&self) -> usize {
        self.views
            .values()
            .map(|v| v.access.len() + v.remap.len() + v.ve.len() + usize::from(!v.visible))
            .sum()
    }
    /// vCPUs not in view 0, or single-stepping.
    pub fn vcpus_not_clean(&self) -> Vec<VcpuId> {
        (0..self.vcpus.len())
            .filter(|&i| self.vcpus[i].view != 0 || self.vcpus[i].singlestep)
            .map(|i| VcpuId(i as u32))
            .collect()
    }
    /// Whether the vm_event ring is enabled.
    pub fn ring_enabled(&self) -> bool {
        self.ring_enabled
    }
    /// What each finished action did.
    pub fn outcomes(&self) -> &[Outcome] {
        &self.outcomes
    }
    /// Requests written to the ring.
    pub fn events_raised(&self) -> u64 {
        self.events_raised
    }
    /// Responses Xen would have skipped (wrong version / vCPU).
    pub fn responses_skipped(&self) -> u64 {
        self.responses_skipped
    }
    /// `close_ring` calls that answered EBUSY.
    pub fn busy_answers(&self) -> u32 {
        self.busy_answers
    }
    /// Frames of the guest's own memory (not from `alloc_frame`) that `free_frame` released.
    pub fn freed_frames(&self) -> Vec<Gfn> {
        self.freed.iter().map(|&g| Gfn(g)).collect()
    }
    /// Frames given by `alloc_frame` and not freed.
    pub fn extra_frames(&self) -> &[u64] {
        &self.extra_frames
    }
    /// Actions not yet run.
    pub fn script_left(&self) -> usize {
        self.script.len()
    }
    /// Domain-wide pauses outstanding.
    pub fn pause_count(&self) -> u32 {
        self.pause_count
    }
    /// Injected events the guest has taken (its handler ran), in order.
    pub fn delivered(&self) -> &[(VcpuId, Injection)] {
        &self.delivered
    }
    /// vCPUs with an injected event not yet taken.
    pub fn injections_pending(&self) -> Vec<VcpuId> {
        (0..self.vcpus.len())
            .filter(|&i| self.vcpus[i].injected.is_some())
            .map(|i| VcpuId(i as u32))
            .collect()
    }
    /// The value of an MSR of a vCPU (as the simulated guest last wrote it).
    pub fn msr(&self, vcpu: VcpuId, index: u32) -> Option<u64> {
        self.vcpus.get(vcpu.0 as usize)?.msrs.get(&index).copied()
    }
}

/// The simulated domain (see the module docs). Single-threaded: it is driven by the event loop
/// that consumes its ring.
pub struct SimDomain {
    state: RefCell<SimState>,
    ring: Box<RingPage>,
}

impl std::fmt::Debug for SimDomain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimDomain")
            .field("state", &self.state.borrow())
            .finish()
    }
}

/// Xen's `XENMEM_access_op` (host-view access rights) answers ENODEV unless a monitor ring is
/// enabled (seen on Xen 4.17); the altp2m calls for other views do not need one.
fn host_access_needs_ring(st: &SimState, view: ViewId) -> Result<()> {
    if view.0 == 0 && !st.ring_enabled {
        return Err(Error::Unsupported {
            backend: NAME,
            capability: "host-view access rights without an enabled vm_event ring (Xen: ENODEV)",
        });
    }
    Ok(())
}

/// A random UUID from the kernel (`/proc/sys/kernel/random/uuid`), or, where that cannot be
/// read, one made of the process id, a counter and the time: unique per simulated domain.
fn new_uuid() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let p = std::path::Path::new("/proc/sys/kernel/random/uuid");
    if let Ok(b) = crate::file::read_capped(p, 64, "uuid") {
        return String::from_utf8_lossy(&b).trim().to_string();
    }
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "sim-{}-{}-{t}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn access_allows(a: MemAccess, need: MemAccess) -> bool {
    a.contains(need)
}

impl SimDomain {
    /// A simulated domain over `memory` with one vCPU per register set.
    pub fn new(memory: impl PhysicalMemory + Send + 'static, vcpus: &[Registers]) -> SimDomain {
        let ring = RingPage::boxed();
        let front = FrontRing::new(&ring);
        let mut views = BTreeMap::new();
        views.insert(
            0,
            View {
                default: MemAccess::all(),
                access: HashMap::new(),
                remap: HashMap::new(),
                ve: Default::default(),
                visible: true,
            },
        );
        SimDomain {
            state: RefCell::new(SimState {
                base: Box::new(memory),
                dirty: Default::default(),
                vcpus: vcpus
                    .iter()
                    .map(|r| Vcpu {
                        regs: *r,
                        ..Vcpu::default()
                    })
                    .collect(),
                monitors: Vec::new(),
                ring_enabled: true,
                blocked: false,
                busy_closes: 0,
                busy_answers: 0,
                front,
                views,
                script: VecDeque::new(),
                pause_count: 0,
                outcomes: Vec::new(),
                events_raised: 0,
                responses_skipped: 0,
                extra_frames: Vec::new(),
                freed: Default::default(),
                uuid: new_uuid(),
                corruptions: VecDeque::new(),
                delivered: Vec::new(),
                unwritable: Default::default(),
            }),
            ring,
        }
    }

    /// Queue guest actions.
    pub fn script(&self, actions: impl IntoIterator<Item = GuestAction>) {
        self.state.borrow_mut().script.extend(actions);
    }

    /// Fault injection: overwrite bytes of the next requests this domain writes to the ring,
    /// one patch list per request, as `(offset, bytes)` within the 400-byte slot (patches past
    /// the slot are cut off). Models a producer that writes what Xen never would: another
    /// interface version, a reason this crate does not know, garbage flags and payloads. The
    /// vCPU is still paused as Xen would pause it, so the consumer must answer anyway.
    pub fn corrupt_next_requests(&self, patches: impl IntoIterator<Item = Vec<(usize, Vec<u8>)>>) {
        self.state.borrow_mut().corruptions.extend(patches);
    }

    /// Fault injection: the next `n` `close_ring` calls answer EBUSY, as Xen does while vCPUs
    /// wait for a ring slot and wake later than this simulation runs them (`u32::MAX`: a ring
    /// that stays busy).
    pub fn busy_close_rings(&self, n: u32) {
        self.state.borrow_mut().busy_closes = n;
    }

    /// Fault injection: [`PhysicalMemoryWrite::write_physical`] fails on these frames, as Xen
    /// fails to map a frame writable that it maps readable (a read-only p2m type, a grant);
    /// reads, and the simulated guest's own stores, still work. Writes to other frames of the
    /// same call before it have happened, as on Xen.
    pub fn refuse_writes_to(&self, frames: impl IntoIterator<Item = Gfn>) {
        self.state
            .borrow_mut()
            .unwritable
            .extend(frames.into_iter().map(|g| g.0));
    }

    /// Inspect the state.
    pub fn state(&self) -> std::cell::Ref<'_, SimState> {
        self.state.borrow()
    }

    /// Run guest actions, as all vCPUs would run concurrently, until every vCPU with work is
    /// paused on an event, the ring is full, or nothing can run. Returns whether requests are
    /// waiting on the ring.
    pub fn run_guest(&self) -> bool {
        let mut st = self.state.borrow_mut();
        st.blocked = false;
        let mut guard = 0;
        loop {
            guard += 1;
            if guard > 1_000_000 || st.pause_count > 0 {
                break;
            }
            // First runnable action (actions of paused vCPUs wait, keeping their order).
            let Some(i) = st
                .script
                .iter()
                .position(|a| st.vcpus.get(a.vcpu().0 as usize).is_some_and(|v| !v.paused))
            else {
                break;
            };
            if st.ring_enabled && st.front.free_requests() == 0 {
                // Throttled: producing an event needs a free slot; the vCPU waits for one.
                st.blocked = true;
                break;
            }
            let Some(action) = st.script.remove(i) else {
                break;
            };
            self.execute(&mut st, action);
        }
        st.ring_enabled && st.front.free_requests() < RING_SLOTS
    }

    /// Execute one action; true if it raised an event.
    fn execute(&self, st: &mut SimState, action: GuestAction) -> bool {
        let vi = action.vcpu().0 as usize;
        if vi >= st.vcpus.len() {
            return false;
        }
        Self::enter_guest(st, vi);
        if let GuestAction::Execute { gpa, .. } = &action {
            // The simulation uses guest-physical addresses as instruction pointers.
            st.vcpus[vi].regs.rip = gpa.0;
        }
        let raised = match &action {
            GuestAction::WriteCr {
                register, value, ..
            } => {
                let old = cr_value(&st.vcpus[vi].regs, *register);
                let mon = st.monitors.iter().find_map(|m| match m {
                    Monitor::ControlRegister {
                        register: r,
                        sync,
                        on_change_only,
                        ignore_mask,
                    } if r == register => Some((*sync, *on_change_only, *ignore_mask)),
                    _ => None,
                });
                match mon {
                    Some((sync, occ, mask)) if !(occ && (old ^ value) & !mask == 0) => {
                        let kind = EventKind::ControlRegister {
                            register: *register,
                            old,
                            new: *value,
                        };
                        if !sync {
                            set_cr(&mut st.vcpus[vi].regs, *register, *value);
                            st.outcomes.push(Outcome::Done(action.clone()));
                        }
                        self.raise(
                            st,
                            vi,
                            kind,
                            sync,
                            if sync { Some(action.clone()) } else { None },
                        )
                    }
                    _ => {
                        set_cr(&mut st.vcpus[vi].regs, *register, *value);
                        st.outcomes.push(Outcome::Done(action.clone()));
                        false
                    }
                }
            }
            GuestAction::WriteMsr { index, value, .. } => {
                let old = st.vcpus[vi].msrs.get(index).copied().unwrap_or(0);
                let mon = st.monitors.iter().find_map(|m| match m {
                    Monitor::Msr {
                        index: i,
                        on_change_only,
                    } if i == index => Some(*on_change_only),
                    _ => None,
                });
                match mon {
                    Some(occ) if !(occ && old == *value) => {
                        let kind = EventKind::Msr {
                            index: *index as u64,
                            old,
                            new: *value,
                        };
                        self.raise(st, vi, kind, true, Some(action.clone()))
                    }
                    _ => {
                        st.vcpus[vi].msrs.insert(*index, *value);
                        st.outcomes.push(Outcome::Done(action.clone()));
                        false
                    }
                }
            }
            GuestAction::Write { gpa, .. }
            | GuestAction::Read { gpa, .. }
            | GuestAction::Execute { gpa, .. } => {
                let need = match &action {
                    GuestAction::Write { .. } => MemAccess::W,
                    GuestAction::Read { .. } => MemAccess::R,
                    _ => MemAccess::X,
                };
                let gfn = gpa.gfn().0;
                let allowed = st
                    .views
                    .get(&st.vcpus[vi].view)
                    .map(|v| v.access.get(&gfn).copied().unwrap_or(v.default))
                    .unwrap_or(MemAccess::all());
                if !access_allows(allowed, need) && st.ring_enabled {
                    let kind = EventKind::MemoryAccess {
                        gfn: Gfn(gfn),
                        offset: gpa.page_offset(),
                        gla: None,
                        access: need,
                        in_page_table_walk: false,
                    };
                    self.raise(st, vi, kind, true, Some(action.clone()))
                } else if let GuestAction::Execute { .. } = &action {
                    let byte = read_byte(st, vi, *gpa);
                    let bp =
                        byte == Some(0xcc) && st.monitors.contains(&Monitor::SoftwareBreakpoint);
                    if bp {
                        let kind = EventKind::SoftwareBreakpoint {
                            gfn: Gfn(gfn),
                            insn_length: 1,
                            trap_type: 6, // XEN_DMOP_EVENT_sw_exc
                        };
                        self.raise(st, vi, kind, true, Some(action.clone()))
                    } else {
                        self.complete(st, vi, action.clone(), false);
                        false
                    }
                } else {
                    self.complete(st, vi, action.clone(), false);
                    false
                }
            }
            GuestAction::Cpuid { leaf, .. } => {
                if st.monitors.contains(&Monitor::Cpuid) {
                    let kind = EventKind::Cpuid {
                        leaf: *leaf,
                        subleaf: 0,
                        insn_length: 2,
                    };
                    self.raise(st, vi, kind, true, Some(action.clone()))
                } else {
                    st.outcomes.push(Outcome::Done(action.clone()));
                    false
                }
            }
        };
        raised || self.after_instruction(st, vi)
    }

    /// Finish an action (perform its access). `emulated`: performed by the emulator, without
    /// re-checking permissions.
    fn complete(&self, st: &mut SimState, vi: usize, action: GuestAction, emulated: bool) {
        match &action {
            GuestAction::WriteCr {
                register, value, ..
            } => set_cr(&mut st.vcpus[vi].regs, *register, *value),
            GuestAction::WriteMsr { index, value, .. } => {
                st.vcpus[vi].msrs.insert(*index, *value);
            }
            GuestAction::Write { gpa, bytes, .. } => write_bytes(st, vi, *gpa, bytes),
            GuestAction::Read { gpa, .. } if !emulated => {
                let b = read_byte(st, vi, *gpa).unwrap_or(0);
                st.outcomes.push(Outcome::Read(action, b));
                return;
            }
            _ => {}
        }
        st.outcomes.push(if emulated {
            Outcome::Emulated(action, false)
        } else {
            Outcome::Done(action)
        });
    }

    /// Single-step bookkeeping after an instruction of vCPU `vi` retired.
    fn after_instruction(&self, st: &mut SimState, vi: usize) -> bool {
        if let Some(v) = st.vcpus[vi].fast_singlestep_view.take() {
            if st.views.contains_key(&v) {
                st.vcpus[vi].view = v;
            }
            return false;
        }
        if st.vcpus[vi].singlestep && st.monitors.contains(&Monitor::SingleStep) {
            let gfn = Gfn(st.vcpus[vi].regs.rip >> 12);
            return self.raise(st, vi, EventKind::SingleStep { gfn }, true, None);
        }
        false
    }

    /// vCPU `vi` enters the guest: a pending injected event is taken first (its handler runs;
    /// the simulation records it).
    fn enter_guest(st: &mut SimState, vi: usize) {
        if let Some(ev) = st.vcpus[vi].injected.take() {
            st.delivered.push((VcpuId(vi as u32), ev));
        }
    }

    /// Write a request for vCPU `vi` to the ring, as Xen's `vm_event_put_request` does.
    fn raise(
        &self,
        st: &mut SimState,
        vi: usize,
        kind: EventKind,
        sync: bool,
        pending: Option<GuestAction>,
    ) -> bool {
        if !st.ring_enabled {
            if let Some(a) = pending {
                self.complete(st, vi, a, false);
            }
            return false;
        }
        // Xen flags the view only while altp2m is in use.
        let view = (st.views.len() > 1).then_some(ViewId(st.vcpus[vi].view));
        let event = Event::new(VcpuId(vi as u32), view, sync, kind, st.vcpus[vi].regs);
        let mut req = [0u8; ENTRY_SIZE];
        encode_request(&event, &mut req);
        if let Some(patches) = st.corruptions.pop_front() {
            for (off, bytes) in patches {
                let end = off.saturating_add(bytes.len()).min(ENTRY_SIZE);
                if off < end {
                    req[off..end].copy_from_slice(&bytes[..end - off]);
                }
            }
        }
        let mut front = st.front;
        let ok = front.put_request(&self.ring, &req);
        st.front = front;
        if !ok {
            // Callers check for a free slot first; treat a full ring as "run it later".
            if let Some(a) = pending {
                st.script.push_front(a);
            }
            return false;
        }
        st.events_raised += 1;
        if sync {
            st.vcpus[vi].paused = true;
            st.vcpus[vi].pending = pending;
        }
        true
    }

    /// Apply every published response (Xen's `vm_event_resume`).
    fn resume(&self) {
        let mut st = self.state.borrow_mut();
        let mut rsp = [0u8; ENTRY_SIZE];
        loop {
            let mut front = st.front;
            let got = front.get_response(&self.ring, &mut rsp);
            st.front = front;
            if !got {
                break;
            }
            let decoded = decode_response(&rsp).ok();
            let Some(d) = decoded.filter(|d| (d.vcpu.0 as usize) < st.vcpus.len()) else {
                st.responses_skipped += 1; // Xen skips it; the vCPU stays paused
                continue;
            };
            let (vcpu, flags, answer) = (d.vcpu.0 as usize, d.response.flags(), &d.response);
            if !st.vcpus[vcpu].paused {
                continue;
            }
            let pending = st.vcpus[vcpu].pending.take();
            // Order as in vm_event_resume: emulate, deny, single-step, view, registers, unpause.
            let mut finished = false;
            if let Some(a) = &pending {
                if d.reason == reason::SOFTWARE_BREAKPOINT {
                    // vm_event_emulate_check: for a breakpoint, EMULATE counts only with the
                    // instruction bytes to run; without them it is ignored.
                    if let (true, Some(insn)) = (flags & flag::EMULATE != 0, answer.instruction()) {
                        st.outcomes
                            .push(Outcome::EmulatedInstruction(a.clone(), *insn));
                        finished = true;
                    }
                } else if flags & flag::EMULATE != 0 {
                    let nowrite = flags & flag::EMULATE_NOWRITE != 0;
                    if !nowrite {
                        if let GuestAction::Write { gpa, bytes, .. } = a {
                            write_bytes(&mut st, vcpu, *gpa, bytes);
                        }
                    }
                    st.outcomes.push(Outcome::Emulated(a.clone(), nowrite));
                    finished = true;
                } else if flags & flag::DENY != 0
                    // vm_event_register_write_resume acts only on the two write reasons the
                    // response carries; DENY on any other reason is ignored.
                    && matches!(d.reason, reason::WRITE_CTRLREG | reason::MOV_TO_MSR)
                    && matches!(
                        a,
                        GuestAction::WriteCr { .. } | GuestAction::WriteMsr { .. }
                    )
                {
                    st.outcomes.push(Outcome::Denied(a.clone()));
                    finished = true;
                }
            }
            if flags & flag::TOGGLE_SINGLESTEP != 0 {
                st.vcpus[vcpu].singlestep = !st.vcpus[vcpu].singlestep;
            }
            if let Some(ViewId(idx)) = answer.fast_singlestep_view() {
                if st.views.contains_key(&idx) {
                    st.vcpus[vcpu].fast_singlestep_view = Some(idx);
                }
            }
            if let Some(ViewId(idx)) = answer.view() {
                if st.views.contains_key(&idx) {
                    st.vcpus[vcpu].view = idx;
                }
            }
            if let Some(r) = answer.registers() {
                // vm_event_set_registers: general-purpose registers, rflags and rip.
                let v = &mut st.vcpus[vcpu].regs;
                (v.rax, v.rbx, v.rcx, v.rdx, v.rsp, v.rbp, v.rsi, v.rdi) =
                    (r.rax, r.rbx, r.rcx, r.rdx, r.rsp, r.rbp, r.rsi, r.rdi);
                (v.r8, v.r9, v.r10, v.r11, v.r12, v.r13, v.r14, v.r15) =
                    (r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15);
                (v.rflags, v.rip) = (r.rflags, r.rip);
            }
            if d.unpause {
                st.vcpus[vcpu].paused = false;
                Self::enter_guest(&mut st, vcpu);
                if let (Some(a), false) = (pending, finished) {
                    match a {
                        // The write was held until now: it takes effect.
                        GuestAction::WriteCr { .. }
                        | GuestAction::WriteMsr { .. }
                        | GuestAction::Cpuid { .. } => self.complete(&mut st, vcpu, a, false),
                        // The instruction is retried in the (possibly new) view.
                        GuestAction::Write { .. } | GuestAction::Read { .. } => {
                            st.script.push_front(a)
                        }
                        GuestAction::Execute { gpa, .. } => {
                            let bp = read_byte(&st, vcpu, gpa) == Some(0xcc);
                            if bp {
                                // Breakpoint handled by the monitor (re-injection is the
                                // handler's business): the instruction is done.
                                self.complete(&mut st, vcpu, a, false);
                            } else {
                                st.script.push_front(a)
                            }
                        }
                    }
                } else {
                    let _ = pending;
                }
            } else if let Some(a) = pending {
                st.vcpus[vcpu].pending = Some(a); // still paused: keep it
            }
        }
    }
}

fn cr_value(r: &Registers, reg: ControlRegister) -> u64 {
    match reg {
        ControlRegister::Cr0 => r.cr0,
        ControlRegister::Cr3 => r.cr3,
        ControlRegister::Cr4 => r.cr4,
        ControlRegister::Xcr0 => 0,
    }
}

fn set_cr(r: &mut Registers, reg: ControlRegister, v: u64) {
    match reg {
        ControlRegister::Cr0 => r.cr0 = v,
        ControlRegister::Cr3 => r.cr3 = v,
        ControlRegister::Cr4 => r.cr4 = v,
        ControlRegister::Xcr0 => {}
    }
}

/// The frame that backs `gfn` for vCPU `vi` (its view's remap, if any).
fn backing(st: &SimState, vi: usize, gfn: u64) -> u64 {
    let view = st.vcpus.get(vi).map(|v| v.view).unwrap_or(0);
    st.views
        .get(&view)
        .and_then(|v| v.remap.get(&gfn).copied())
        .unwrap_or(gfn)
}

fn read_byte(st: &SimState, vi: usize, gpa: Gpa) -> Option<u8> {
    let gfn = backing(st, vi, gpa.gfn().0);
    let pa = Gpa((gfn << 12) | gpa.page_offset());
    let mut b = [0u8; 1];
    read_phys(st, pa, &mut b).ok()?;
    Some(b[0])
}

/// The error for an access to a frame `free_frame` released.
fn released(st: &SimState, gpa: Gpa, len: usize) -> Error {
    Error::PhysicalUnmapped {
        gpa,
        len,
        backend: NAME,
        max: Gpa(st
            .base
            .physical_ranges()
            .last()
            .map(|r| r.end.saturating_sub(1))
            .unwrap_or(0)),
    }
}

fn read_phys(st: &SimState, gpa: Gpa, buf: &mut [u8]) -> Result<()> {
    let mut done = 0;
    while done < buf.len() {
        let cur = gpa
            .checked_add(done as u64)
            .ok_or(Error::Overflow("simulated read"))?;
        let n = ((PAGE_SIZE - cur.page_offset()) as usize).min(buf.len() - done);
        if st.freed.contains(&cur.gfn().0) {
            return Err(released(st, cur, n));
        }
        if let Some(p) = st.dirty.get(&cur.gfn().0) {
            let o = cur.page_offset() as usize;
            buf[done..done + n].copy_from_slice(&p[o..o + n]);
        } else {
            st.base.read_physical(cur, &mut buf[done..done + n])?;
        }
        done += n;
    }
    Ok(())
}

fn write_phys(st: &mut SimState, gpa: Gpa, bytes: &[u8]) -> Result<()> {
    let mut done = 0;
    while done < bytes.len() {
        let cur = gpa
            .checked_add(done as u64)
            .ok_or(Error::Overflow("simulated write"))?;
        let n = ((PAGE_SIZE - cur.page_offset()) as usize).min(bytes.len() - done);
        let gfn = cur.gfn().0;
        if st.freed.contains(&gfn) {
            return Err(released(st, cur, n));
        }
        if !st.dirty.contains_key(&gfn) {
            let mut page = vec![0u8; PAGE_SIZE as usize].into_boxed_slice();
            // Frames beyond the base image (allocated extra frames) start zeroed.
            let _ = st.base.read_physical(cur.page_base(), &mut page);
            st.dirty.insert(gfn, page);
        }
        let o = cur.page_offset() as usize;
        if let Some(p) = st.dirty.get_mut(&gfn) {
            p[o..o + n].copy_from_slice(&bytes[done..done + n]);
        }
        done += n;
    }
    Ok(())
}

fn write_bytes(st: &mut SimState, vi: usize, gpa: Gpa, bytes: &[u8]) {
    let gfn = backing(st, vi, gpa.gfn().0);
    let _ = write_phys(st, Gpa((gfn << 12) | gpa.page_offset()), bytes);
}

impl PhysicalMemory for SimDomain {
    fn name(&self) -> &'static str {
        NAME
    }
    fn read_physical(&self, gpa: Gpa, buf: &mut [u8]) -> Result<()> {
        read_phys(&self.state.borrow(), gpa, buf)
    }
    fn physical_ranges(&self) -> Vec<Range<u64>> {
        self.state.borrow().base.physical_ranges()
    }
    fn physical_range_count(&self) -> usize {
        self.state.borrow().base.physical_range_count()
    }
    fn physical_range(&self, index: usize) -> Option<Range<u64>> {
        self.state.borrow().base.physical_range(index)
    }
}

impl PhysicalMemoryWrite for SimDomain {
    fn write_physical(&self, gpa: Gpa, buf: &[u8]) -> Result<()> {
        let mut st = self.state.borrow_mut();
        // Page by page, as the Xen backend maps and writes them.
        let mut done = 0;
        while done < buf.len() {
            let cur = gpa
                .checked_add(done as u64)
                .ok_or(Error::Overflow("simulated write"))?;
            let n = ((PAGE_SIZE - cur.page_offset()) as usize).min(buf.len() - done);
            if st.unwritable.contains(&cur.gfn().0) {
                return Err(Error::Backend {
                    backend: NAME,
                    operation: format!("mapping frame {} writable", cur.gfn()),
                    reason: "Permission denied (EACCES): fault injection".into(),
                });
            }
            write_phys(&mut st, cur, &buf[done..done + n])?;
            done += n;
        }
        Ok(())
    }
}

impl VcpuState for SimDomain {
    fn vcpu_count(&self) -> u32 {
        self.state.borrow().vcpus.len() as u32
    }
    fn registers(&self, vcpu: VcpuId) -> Result<Registers> {
        let st = self.state.borrow();
        st.vcpus
            .get(vcpu.0 as usize)
            .map(|v| v.regs)
            .ok_or(Error::NoSuchVcpu {
                vcpu,
                count: st.vcpus.len() as u32,
            })
    }
}

impl VcpuStateWrite for SimDomain {
    fn set_registers(&self, vcpu: VcpuId, regs: &Registers) -> Result<()> {
        self.state.borrow_mut().vcpu_mut(vcpu)?.regs = *regs;
        Ok(())
    }
}

impl VmControl for SimDomain {
    fn pause(&self) -> Result<()> {
        self.state.borrow_mut().pause_count += 1;
        Ok(())
    }
    fn resume(&self) -> Result<()> {
        let mut st = self.state.borrow_mut();
        st.pause_count = st.pause_count.checked_sub(1).ok_or(Error::Unsupported {
            backend: NAME,
            capability: "resume without pause",
        })?;
        Ok(())
    }
}

fn same_monitor(a: &Monitor, b: &Monitor) -> bool {
    match (a, b) {
        (
            Monitor::ControlRegister { register: x, .. },
            Monitor::ControlRegister { register: y, .. },
        ) => x == y,
        (Monitor::Msr { index: x, .. }, Monitor::Msr { index: y, .. }) => x == y,
        _ => std::mem::discriminant(a) == std::mem::discriminant(b),
    }
}

impl EventControl for SimDomain {
    fn set_monitor(&self, monitor: Monitor, enable: bool) -> Result<()> {
        let mut st = self.state.borrow_mut();
        st.monitors.retain(|m| !same_monitor(m, &monitor));
        if enable {
            st.monitors.push(monitor);
        }
        Ok(())
    }

    fn set_vcpu_singlestep(&self, vcpu: VcpuId, enable: bool) -> Result<()> {
        let mut st = self.state.borrow_mut();
        let v = st.vcpu_mut(vcpu)?;
        v.singlestep = enable;
        if !enable {
            v.fast_singlestep_view = None;
        }
        Ok(())
    }
}

impl EventChannel for SimDomain {
    fn ring(&self) -> &RingPage {
        &self.ring
    }

    /// Runs the simulated guest until it raises an event (or cannot run): the simulation's
    /// notion of "wait for the event channel". When it raised none, nothing else can happen
    /// before the timeout, and the call takes the timeout, as a wait on Xen's event channel
    /// does.
    fn wait(&self, timeout: Duration) -> Result<bool> {
        let raised = self.run_guest();
        if !raised && !timeout.is_zero() {
            std::thread::sleep(timeout);
        }
        Ok(raised)
    }

    fn notify(&self) -> Result<()> {
        self.resume();
        Ok(())
    }

    /// As Xen's `vm_event_disable`: EBUSY while a vCPU waits for a ring slot (the consumer must
    /// answer what is on the ring, notify, let the guest run and try again).
    fn close_ring(&self) -> Result<()> {
        let mut st = self.state.borrow_mut();
        if st.ring_enabled && (st.blocked || st.busy_closes > 0) {
            st.busy_closes = st.busy_closes.saturating_sub(1);
            st.busy_answers += 1;
            return Err(Error::Backend {
                backend: NAME,
                operation: "disabling the vm_event ring".into(),
                reason: "Device or resource busy (EBUSY): a vCPU waits for a ring slot".into(),
            });
        }
        st.ring_enabled = false;
        Ok(())
    }

    fn domain_uuid(&self) -> Result<String> {
        Ok(self.state.borrow().uuid.clone())
    }

    fn enable_ring(&self) -> Result<()> {
        let mut st = self.state.borrow_mut();
        if !st.ring_enabled {
            st.front = FrontRing::new(&self.ring);
            st.ring_enabled = true;
        }
        Ok(())
    }

    /// As Xen's `vm_event_disable`: requests left on the ring are lost; a vCPU paused on one
    /// stays paused (only a response with `VCPU_PAUSED` on a later ring releases it); the
    /// control-register or MSR write it was holding is dropped (Xen frees the vCPU's pending
    /// write); memory accesses and breakpoints are retried when it runs again. Monitors stay
    /// set here (Xen 4.17 clears them), so tests see whether recovery turns them off itself.
    fn abandon_ring(&self) -> Result<bool> {
        let mut st = self.state.borrow_mut();
        if !st.ring_enabled {
            return Ok(false);
        }
        st.ring_enabled = false;
        let mut retry = Vec::new();
        for v in 0..st.vcpus.len() {
            match st.vcpus[v].pending.take() {
                Some(a @ (GuestAction::WriteCr { .. } | GuestAction::WriteMsr { .. })) => {
                    st.outcomes.push(Outcome::Dropped(a));
                }
                Some(a) => retry.push(a),
                None => {}
            }
        }
        for a in retry.into_iter().rev() {
            st.script.push_front(a);
        }
        Ok(true)
    }
}

impl EventInjection for SimDomain {
    fn inject(&self, vcpu: VcpuId, event: &Injection) -> Result<()> {
        let mut st = self.state.borrow_mut();
        let v = st.vcpu_mut(vcpu)?;
        if v.injected.is_some() {
            // As Xen's XEN_DMOP_inject_event: one pending event per vCPU.
            return Err(Error::Backend {
                backend: NAME,
                operation: format!("injecting vector {} into vCPU {vcpu}", event.vector),
                reason: "Device or resource busy (errno 16): an injected event is still pending"
                    .into(),
            });
        }
        v.injected = Some(*event);
        Ok(())
    }
}

impl ViewControl for SimDomain {
    fn create_view(&self, default_access: MemAccess) -> Result<ViewId> {
        let mut st = self.state.borrow_mut();
        if st.views.len() >= MAX_VIEWS {
            return Err(Error::Unsupported {
                backend: NAME,
                capability: "more than 10 altp2m views",
            });
        }
        let id = (1..MAX_VIEWS as u16)
            .find(|i| !st.views.contains_key(i))
            .unwrap_or(0);
        st.views.insert(
            id,
            View {
                default: default_access,
                access: HashMap::new(),
                remap: HashMap::new(),
                ve: Default::default(),
                visible: true,
            },
        );
        Ok(ViewId(id))
    }

    fn destroy_view(&self, view: ViewId) -> Result<()> {
        let mut st = self.state.borrow_mut();
        if view.0 == 0 {
            return Err(Error::Unsupported {
                backend: NAME,
                capability: "destroying view 0",
            });
        }
        if st.vcpus.iter().any(|v| v.view == view.0) {
            // As Xen's p2m_destroy_altp2m_by_id while the view has active vCPUs.
            return Err(Error::Backend {
                backend: NAME,
                operation: format!("destroying view {view}"),
                reason: "Device or resource busy (EBUSY): a vCPU uses the view".into(),
            });
        }
        st.views
            .remove(&view.0)
            .map(|_| ())
            .ok_or(Error::Unsupported {
                backend: NAME,
                capability: "destroying a view that does not exist",
            })
    }

    fn switch_view(&self, view: ViewId) -> Result<()> {
        let mut st = self.state.borrow_mut();
        if !st.views.contains_key(&view.0) {
            return Err(Error::Unsupported {
                backend: NAME,
                capability: "switching to a view that does not exist",
            });
        }
        st.vcpus.iter_mut().for_each(|v| v.view = view.0);
        Ok(())
    }

    fn set_mem_access(&self, view: ViewId, gfn: Gfn, access: MemAccess) -> Result<()> {
        let mut st = self.state.borrow_mut();
        host_access_needs_ring(&st, view)?;
        let v = st.views.get_mut(&view.0).ok_or(Error::Unsupported {
            backend: NAME,
            capability: "access in a view that does not exist",
        })?;
        if access == v.default {
            v.access.remove(&gfn.0);
        } else {
            v.access.insert(gfn.0, access);
        }
        Ok(())
    }

    fn mem_access(&self, view: ViewId, gfn: Gfn) -> Result<MemAccess> {
        let st = self.state.borrow();
        host_access_needs_ring(&st, view)?;
        let v = st.views.get(&view.0).ok_or(Error::Unsupported {
            backend: NAME,
            capability: "access in a view that does not exist",
        })?;
        Ok(v.access.get(&gfn.0).copied().unwrap_or(v.default))
    }

    fn set_suppress_ve(&self, view: ViewId, gfn: Gfn, suppress: bool) -> Result<()> {
        let mut st = self.state.borrow_mut();
        let v = st.views.get_mut(&view.0).ok_or(Error::Unsupported {
            backend: NAME,
            capability: "suppress-#VE in a view that does not exist",
        })?;
        if suppress {
            v.ve.remove(&gfn.0);
        } else {
            v.ve.insert(gfn.0);
        }
        Ok(())
    }

    fn set_view_visibility(&self, view: ViewId, visible: bool) -> Result<()> {
        let mut st = self.state.borrow_mut();
        let v = st.views.get_mut(&view.0).ok_or(Error::Unsupported {
            backend: NAME,
            capability: "visibility of a view that does not exist",
        })?;
        v.visible = visible;
        Ok(())
    }

    fn alloc_frame(&self) -> Result<Gfn> {
        let mut st = self.state.borrow_mut();
        let top = st
            .base
            .physical_ranges()
            .last()
            .map(|r| r.end >> 12)
            .unwrap_or(0);
        let next = st
            .extra_frames
            .iter()
            .max()
            .map(|g| g + 1)
            .unwrap_or(top)
            .max(top);
        st.extra_frames.push(next);
        st.dirty
            .insert(next, vec![0u8; PAGE_SIZE as usize].into_boxed_slice());
        Ok(Gfn(next))
    }

    /// As Xen's `XENMEM_decrease_reservation`: any populated frame is released, the guest's
    /// own memory included (it then reads as unbacked); a frame that is not populated is an
    /// error.
    fn free_frame(&self, gfn: Gfn) -> Result<()> {
        let mut st = self.state.borrow_mut();
        if let Some(i) = st.extra_frames.iter().position(|&g| g == gfn.0) {
            st.extra_frames.swap_remove(i);
            st.dirty.remove(&gfn.0);
            return Ok(());
        }
        let mut probe = [0u8; 1];
        if read_phys(&st, Gpa(gfn.0 << 12), &mut probe).is_err() {
            return Err(Error::Backend {
                backend: NAME,
                operation: format!("releasing frame {gfn}"),
                reason: "Invalid argument (EINVAL): the frame is not populated".into(),
            });
        }
        st.dirty.remove(&gfn.0);
        st.freed.insert(gfn.0);
        Ok(())
    }

    fn change_gfn(&self, view: ViewId, gfn: Gfn, target: Option<Gfn>) -> Result<()> {
        let mut st = self.state.borrow_mut();
        let v = st.views.get_mut(&view.0).ok_or(Error::Unsupported {
            backend: NAME,
            capability: "remap in a view that does not exist",
        })?;
        match target {
            Some(t) => v.remap.insert(gfn.0, t.0),
            None => v.remap.remove(&gfn.0),
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests;
