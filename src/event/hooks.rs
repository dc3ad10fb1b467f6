//! The hook manager: breakpoints on guest code that a live, multi-vCPU guest survives.
//!
//! Breakpoints are `int3` bytes placed one of two ways behind one API ([`Placement`]):
//!
//! - **stealth** (the default, DRAKVUF's technique): each code page with breakpoints gets a
//!   shadow copy in an extra frame, carrying the `int3`s. An execute view shows the shadow in
//!   place of the page, execute-only. The guest's reads of the page fault and are performed in
//!   view 0 (the real page), so it never sees an `int3`. A hit is stepped over by switching
//!   *that vCPU alone* to view 0 for one single-step, then back: the other vCPUs stay in the
//!   execute view and keep hitting the breakpoint meanwhile;
//! - **in place**, for hosts or guests without altp2m: the `int3` is written into the page
//!   itself (journaled: teardown and crash recovery put the byte back). A hit is answered by
//!   having Xen's emulator run the original instruction from bytes the response carries
//!   (`EMULATE | SET_EMUL_INSN_DATA`): the `int3` stays in memory the whole time, so no vCPU
//!   ever runs the page without it, and there is no single-step. The guest can read the
//!   `int3`s: this placement is not hidden.
//!
//! The guest writes its own code (Linux: `text_poke`, jump labels, alternatives, module
//! loading). A write to a hooked page traps (execute-only in the stealth view; read/execute
//! in view 0 in place) and is let through: stealth performs it in view 0 during a single-step
//! of the writing vCPU; in place has Xen's emulator perform it. On the writing vCPU's next
//! instruction the manager copies the page again (stealth: the shadow gets the new bytes and
//! the `int3`s again; in place: a breakpoint byte the guest replaced takes the guest's new
//! byte as its original and gets its `int3` back), so the guest does not run stale code after
//! its own write completes.
//!
//! An `int3` the manager did not place is the guest's own: it is injected back
//! ([`Injection::breakpoint`]), so the guest's debugger or kprobes see it.
//!
//! Breakpoints are placed by guest-physical address, by guest-virtual address in an address
//! space, or by kernel symbol and `symbol+offset`; they can be added and removed from inside
//! the handler ([`HookContext`]), which is called on each hit before the vCPU resumes. A
//! handler can also arm a **return hook** on an entry hit: the return address is read from the
//! stack and gets a breakpoint that reports only the return whose stack pointer and CR3 match
//! this call ([`Hit::Return`]).
//!
//! Everything goes through the [`Session`], so teardown (also after a handler error, a panic
//! or a signal) removes the view, the remaps, the frames and every in-place `int3`.

use std::collections::BTreeMap;

use super::session::{EventContext, RunOptions, RunStats, Session, SessionBackend};
use super::{Event, EventKind, Response};
use crate::addr::{Gfn, Gpa, Gva, VcpuId, ViewId, PAGE_SIZE};
use crate::backend::{Injection, MemAccess, Monitor, PhysicalMemory};
use crate::error::{Error, Result};
use crate::mem::{AddressSpace, GuestMemory};
use crate::os::linux::Linux;

/// Return hooks pending at once, over all breakpoints (calls that never return, e.g. a task
/// that exits inside the function, would otherwise accumulate without bound).
pub const MAX_PENDING_RETURNS: usize = 4096;
/// Breakpoints at once (each hooked page keeps a 4 KiB copy: at most 64 MiB).
pub const MAX_BREAKPOINTS: usize = 16_384;

const INT3: u8 = 0xcc;
/// Bits of CR3 that are not the page-table root (PCID, flags), ignored when a return is
/// matched to its call.
const CR3_FLAGS: u64 = 0xfff | (1 << 63);

// Every key of the manager's maps (frames, addresses, vCPUs, ids) is inserted by the
// manager itself, never chosen by the guest, which only makes lookups: a keyed hash would buy
// nothing and be most of a hit's cost.
use crate::inthash::IntMap;

/// How breakpoints are placed (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// A shadow page in an altp2m execute view; hits stepped over per vCPU.
    Stealth,
    /// `int3` written into the page; hits answered by emulating the original instruction.
    InPlace,
}

/// A placed breakpoint (or return hook's entry), as returned by the `add` calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HookId(pub u64);

/// What a hit was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hit {
    /// A breakpoint was executed.
    Breakpoint {
        /// Which one.
        id: HookId,
        /// Where (the instruction's guest-physical address).
        gpa: Gpa,
    },
    /// A call whose entry armed a return hook ([`HookContext::return_hook`]) returned.
    Return {
        /// The breakpoint whose hit armed it.
        entry: HookId,
        /// The value given to [`HookContext::return_hook`].
        tag: u64,
        /// The return address's guest-physical address.
        gpa: Gpa,
    },
}

/// Counters, for tests and benches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HookStats {
    /// Breakpoint hits reported.
    pub hits: u64,
    /// Returns reported.
    pub returns: u64,
    /// Hits at a return address whose stack pointer or CR3 matched no pending call.
    pub unmatched_returns: u64,
    /// Guest `int3`s handed back to the guest.
    pub reinjected: u64,
    /// Guest reads and writes of hooked pages performed for it.
    pub accesses: u64,
    /// Hooked pages copied again after the guest wrote them.
    pub refreshes: u64,
}

#[derive(Debug)]
struct Page {
    /// Stealth: the frame the execute view shows instead of the page.
    shadow: Option<Gfn>,
    /// The page as the guest has it, without our `int3`s.
    original: Box<[u8]>,
    /// Offsets with an `int3`, and how many breakpoints and return hooks share each.
    armed: BTreeMap<u16, u32>,
}

#[derive(Clone, Copy, Debug)]
struct PendingReturn {
    entry: HookId,
    rsp: u64,
    cr3: u64,
    tag: u64,
}

/// Why a vCPU is single-stepping in view 0 (stealth).
#[derive(Clone, Copy, Debug)]
enum Step {
    /// Over a breakpoint, or a read of a hooked page.
    Over,
    /// Over a write to this hooked page: copy it again afterwards.
    Write(Gfn),
}

/// The manager's answer to an event, or the user's turn.
enum Decision {
    Answer(Response),
    Hits(HitList, Response),
    User,
}

/// The hits of one event: a return and the breakpoints at one address (usually one), without
/// an allocation for the usual case.
#[derive(Default)]
struct HitList {
    head: [Option<Hit>; 2],
    rest: Vec<Hit>,
}

impl HitList {
    fn push(&mut self, h: Hit) {
        match self.head.iter_mut().find(|s| s.is_none()) {
            Some(slot) => *slot = Some(h),
            None => self.rest.push(h),
        }
    }
    fn into_iter(self) -> impl Iterator<Item = Hit> {
        self.head.into_iter().flatten().chain(self.rest)
    }
}

/// Breakpoints and return hooks (see the module docs).
#[derive(Debug)]
pub struct Hooks {
    placement: Placement,
    /// Stealth: the execute view; in place: view 0.
    view: ViewId,
    pages: IntMap<u64, Page>,
    entries: IntMap<u64, Vec<HookId>>,
    ids: IntMap<HookId, u64>,
    returns: IntMap<u64, Vec<PendingReturn>>,
    pending_returns: usize,
    steps: IntMap<u32, Step>,
    next: u64,
    stats: HookStats,
}

impl Hooks {
    /// Turn on the monitors the placement needs (breakpoints, single-step) and, for stealth,
    /// create the execute view and switch every vCPU into it.
    ///
    /// # Errors
    /// Backend errors: altp2m off for the domain (stealth), no single-step support.
    pub fn new<B: SessionBackend>(
        session: &mut Session<'_, B>,
        placement: Placement,
    ) -> Result<Self> {
        let view = match placement {
            Placement::Stealth => session.create_view(MemAccess::all())?,
            Placement::InPlace => ViewId::HOST,
        };
        session.monitor(Monitor::SoftwareBreakpoint)?;
        session.monitor(Monitor::SingleStep)?;
        if placement == Placement::Stealth {
            session.switch_view(view)?;
        }
        Ok(Hooks {
            placement,
            view,
            pages: IntMap::default(),
            entries: IntMap::default(),
            ids: IntMap::default(),
            returns: IntMap::default(),
            pending_returns: 0,
            steps: IntMap::default(),
            next: 1,
            stats: HookStats::default(),
        })
    }

    /// The placement.
    pub fn placement(&self) -> Placement {
        self.placement
    }

    /// The view the guest runs in while hooked (the execute view for stealth, view 0 in
    /// place).
    pub fn view(&self) -> ViewId {
        self.view
    }

    /// Counters so far.
    pub fn stats(&self) -> HookStats {
        self.stats
    }

    /// Breakpoints placed (return hooks not counted).
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether no breakpoint is placed.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The guest-physical address of a breakpoint.
    pub fn address(&self, id: HookId) -> Option<Gpa> {
        self.ids.get(&id).map(|&g| Gpa(g))
    }

    /// Place a breakpoint at a guest-physical address (the first byte of an instruction).
    ///
    /// # Errors
    /// Backend errors (no extra frame, the page is not backed); more than
    /// [`MAX_BREAKPOINTS`].
    pub fn add<B: SessionBackend>(
        &mut self,
        session: &mut Session<'_, B>,
        gpa: Gpa,
    ) -> Result<HookId> {
        if self.ids.len() >= MAX_BREAKPOINTS {
            return Err(Error::Unsupported {
                backend: "hook manager",
                capability: "more than MAX_BREAKPOINTS breakpoints",
            });
        }
        self.arm(session, gpa)?;
        let id = HookId(self.next);
        self.next += 1;
        self.ids.insert(id, gpa.0);
        self.entries.entry(gpa.0).or_default().push(id);
        Ok(id)
    }

    /// Place a breakpoint at a guest-virtual address, translated through `space` now (kernel
    /// code is mapped the same way in every address space).
    ///
    /// # Errors
    /// The address is not mapped; as [`Hooks::add`].
    pub fn add_va<B: SessionBackend, M: PhysicalMemory>(
        &mut self,
        session: &mut Session<'_, B>,
        mem: &GuestMemory<M>,
        space: AddressSpace,
        va: Gva,
    ) -> Result<HookId> {
        let gpa = mem.translate_mapped(space, va)?;
        self.add(session, gpa)
    }

    /// Place a breakpoint at a kernel symbol, `name` or `name+offset` (`schedule`,
    /// `do_sys_openat2+0x4`, `x64_sys_call+16`), at its run-time address.
    ///
    /// # Errors
    /// [`Error::MissingSymbol`] naming the symbol and where the symbols came from; a malformed
    /// offset; as [`Hooks::add_va`].
    pub fn add_symbol<B: SessionBackend, M: PhysicalMemory>(
        &mut self,
        session: &mut Session<'_, B>,
        mem: &GuestMemory<M>,
        linux: &Linux,
        spec: &str,
    ) -> Result<HookId> {
        let va = resolve_symbol(linux, spec)?;
        self.add_va(session, mem, linux.info().kernel_space, va)
    }

    /// Remove a breakpoint. Return hooks it armed stay armed until their returns.
    ///
    /// # Errors
    /// Backend error; an unknown id is not an error (it may have been removed already).
    pub fn remove<B: SessionBackend>(
        &mut self,
        session: &mut Session<'_, B>,
        id: HookId,
    ) -> Result<()> {
        let Some(gpa) = self.ids.remove(&id) else {
            return Ok(());
        };
        if let Some(list) = self.entries.get_mut(&gpa) {
            list.retain(|&i| i != id);
            if list.is_empty() {
                self.entries.remove(&gpa);
            }
        }
        self.disarm(session, Gpa(gpa))
    }

    /// Answer every event with the manager's own answer where the event is the hooks'
    /// business, and call `handler` for each hit and for every event that is not (its answer
    /// is used for those). Stops as [`Session::run_with`] does.
    ///
    /// The handler's answer to a hit is not used: the manager steps over the breakpoint. What
    /// the handler changes through the [`HookContext`] (breakpoints added or removed, return
    /// hooks) applies before the vCPU resumes. `mem`'s translations are flushed at each event
    /// ([`GuestMemory::guest_ran`]), since the guest ran in between.
    ///
    /// # Errors
    /// As [`Session::run_with`]; a handler error ends the loop with [`Error::Handler`].
    pub fn run<'b, B, M, E>(
        &mut self,
        session: &mut Session<'b, B>,
        mem: &GuestMemory<M>,
        opts: &RunOptions,
        mut handler: impl FnMut(&mut HookContext<'_, '_, 'b, B, M>) -> std::result::Result<Response, E>,
    ) -> Result<RunStats>
    where
        B: SessionBackend,
        M: PhysicalMemory,
        E: std::error::Error + Send + Sync + 'static,
    {
        session.run_with(opts, |ctx| {
            mem.guest_ran();
            let event = ctx.event();
            match self.decide(ctx, event) {
                Ok(Decision::Answer(rsp)) => Ok(rsp),
                Ok(Decision::Hits(hits, rsp)) => {
                    for hit in hits.into_iter() {
                        let mut hc = HookContext {
                            hooks: self,
                            ctx,
                            mem,
                            hit: Some(hit),
                        };
                        // The answer to a hit is the step-over; the handler only observes.
                        let _ = handler(&mut hc).map_err(HookError::Handler)?;
                    }
                    Ok(rsp)
                }
                Ok(Decision::User) => {
                    let mut hc = HookContext {
                        hooks: self,
                        ctx,
                        mem,
                        hit: None,
                    };
                    handler(&mut hc).map_err(HookError::Handler)
                }
                Err(e) => Err(HookError::Hooks(e)),
            }
        })
    }

    /// What to do with `e`: the manager's answer, hits for the handler, or the handler's turn.
    fn decide<B: SessionBackend>(
        &mut self,
        ctx: &mut EventContext<'_, '_, B>,
        e: &Event,
    ) -> Result<Decision> {
        match e.kind {
            EventKind::SoftwareBreakpoint {
                gfn, insn_length, ..
            } => {
                let gpa = (gfn.0 << 12) | (e.regs.rip & (PAGE_SIZE - 1));
                // Stealth int3s exist only in the execute view: one raised in another view (a
                // vCPU stepping in view 0 ran into an int3 the guest wrote at the same address)
                // is the guest's own.
                let foreign_view =
                    self.placement == Placement::Stealth && e.view.is_some_and(|v| v != self.view);
                let mut hits = if foreign_view {
                    None
                } else {
                    self.match_return(ctx.session(), gpa, e)?
                };
                let ours = !foreign_view && (hits.is_some() || self.is_armed(gpa));
                if !ours {
                    // Not ours: the guest's own int3, handed back to it.
                    self.stats.reinjected += 1;
                    let len = u8::try_from(insn_length).unwrap_or(1);
                    return Ok(Decision::Answer(
                        Response::proceed().inject(Injection::breakpoint(len)),
                    ));
                }
                let mut list = HitList::default();
                if let Some(r) = hits.take() {
                    list.push(r);
                }
                for &id in self.entries.get(&gpa).map(Vec::as_slice).unwrap_or(&[]) {
                    list.push(Hit::Breakpoint { id, gpa: Gpa(gpa) });
                    self.stats.hits += 1;
                }
                let rsp = self.step_over(ctx, e.vcpu, Gpa(gpa))?;
                Ok(Decision::Hits(list, rsp))
            }
            EventKind::MemoryAccess { gfn, access, .. }
                if self.pages.contains_key(&gfn.0)
                    && e.view.unwrap_or(ViewId::HOST) == self.view
                    && !access.contains(MemAccess::X) =>
            {
                self.stats.accesses += 1;
                let write = access.contains(MemAccess::W);
                Ok(Decision::Answer(match self.placement {
                    Placement::Stealth => {
                        self.steps
                            .insert(e.vcpu.0, if write { Step::Write(gfn) } else { Step::Over });
                        Response::proceed()
                            .switch_view(ViewId::HOST)
                            .toggle_singlestep()
                    }
                    // In place only writes trap: Xen's emulator performs the write; the step
                    // after it re-arms what the write replaced.
                    Placement::InPlace => {
                        self.steps.insert(e.vcpu.0, Step::Write(gfn));
                        Response::emulate().toggle_singlestep()
                    }
                }))
            }
            EventKind::SingleStep { .. } => match self.steps.remove(&e.vcpu.0) {
                None => Ok(Decision::User),
                Some(step) => {
                    if let Step::Write(gfn) = step {
                        self.refresh(ctx.session(), gfn)?;
                    }
                    Ok(Decision::Answer(match self.placement {
                        Placement::Stealth => Response::proceed()
                            .switch_view(self.view)
                            .toggle_singlestep(),
                        Placement::InPlace => Response::proceed().toggle_singlestep(),
                    }))
                }
            },
            _ => Ok(Decision::User),
        }
    }

    /// The answer that runs the instruction under the breakpoint at `gpa` for this vCPU only.
    fn step_over<B: SessionBackend>(
        &mut self,
        ctx: &mut EventContext<'_, '_, B>,
        vcpu: VcpuId,
        gpa: Gpa,
    ) -> Result<Response> {
        Ok(match self.placement {
            Placement::Stealth => {
                self.steps.insert(vcpu.0, Step::Over);
                Response::proceed()
                    .switch_view(ViewId::HOST)
                    .toggle_singlestep()
            }
            Placement::InPlace => {
                Response::proceed().emulate_instruction(self.original_bytes(ctx.backend(), gpa)?)
            }
        })
    }

    /// The 16 bytes at `gpa` as the guest wrote them: our `int3`s replaced by the bytes they
    /// cover (the instruction may run into the next page, hooked or not).
    fn original_bytes<B: SessionBackend>(&self, b: &B, gpa: Gpa) -> Result<[u8; 16]> {
        let mut out = [0u8; 16];
        for (i, byte) in out.iter_mut().enumerate() {
            let a = gpa.0 + i as u64;
            let (gfn, off) = (a >> 12, (a & (PAGE_SIZE - 1)) as usize);
            *byte = match self.pages.get(&gfn) {
                Some(p) => p.original.get(off).copied().unwrap_or(0),
                None => {
                    let mut one = [0u8; 1];
                    // Past the end of guest memory the emulator gets zeros it never decodes
                    // (no x86 instruction is longer than 15 bytes).
                    if b.read_physical(Gpa(a), &mut one).is_err() {
                        break;
                    }
                    one[0]
                }
            };
        }
        Ok(out)
    }

    fn is_armed(&self, gpa: u64) -> bool {
        self.pages
            .get(&(gpa >> 12))
            .is_some_and(|p| p.armed.contains_key(&((gpa & (PAGE_SIZE - 1)) as u16)))
    }

    /// A return at `gpa`: the pending call it ends, by stack pointer and CR3 (`ret` has popped
    /// the return address, so the stack pointer is 8 above the entry's). The breakpoint goes
    /// once no call is pending there and no entry breakpoint shares it.
    fn match_return<B: SessionBackend>(
        &mut self,
        session: &mut Session<'_, B>,
        gpa: u64,
        e: &Event,
    ) -> Result<Option<Hit>> {
        let Some(list) = self.returns.get_mut(&gpa) else {
            return Ok(None);
        };
        let cr3 = e.regs.cr3 & !CR3_FLAGS;
        let Some(i) = list
            .iter()
            .position(|p| p.rsp.wrapping_add(8) == e.regs.rsp && p.cr3 == cr3)
        else {
            self.stats.unmatched_returns += 1;
            return Ok(None);
        };
        let p = list.swap_remove(i);
        if list.is_empty() {
            self.returns.remove(&gpa);
        }
        self.pending_returns -= 1;
        self.stats.returns += 1;
        self.disarm(session, Gpa(gpa))?;
        Ok(Some(Hit::Return {
            entry: p.entry,
            tag: p.tag,
            gpa: Gpa(gpa),
        }))
    }

    /// Put an `int3` at `gpa` (or count one more user of it).
    fn arm<B: SessionBackend>(&mut self, session: &mut Session<'_, B>, gpa: Gpa) -> Result<()> {
        let gfn = gpa.gfn();
        let off = gpa.page_offset() as u16;
        if !self.pages.contains_key(&gfn.0) {
            let page = self.hook_page(session, gfn)?;
            self.pages.insert(gfn.0, page);
        }
        let Some(page) = self.pages.get_mut(&gfn.0) else {
            return Ok(());
        };
        let users = page.armed.entry(off).or_insert(0);
        *users += 1;
        if *users == 1 {
            if let Err(e) = write_int3(session, self.placement, page.shadow, gpa) {
                page.armed.remove(&off);
                return Err(e);
            }
        }
        Ok(())
    }

    /// One user less of the `int3` at `gpa`; the last one puts the original byte back.
    fn disarm<B: SessionBackend>(&mut self, session: &mut Session<'_, B>, gpa: Gpa) -> Result<()> {
        let off = gpa.page_offset() as u16;
        let Some(page) = self.pages.get_mut(&gpa.gfn().0) else {
            return Ok(());
        };
        let Some(users) = page.armed.get_mut(&off) else {
            return Ok(());
        };
        *users -= 1;
        if *users > 0 {
            return Ok(());
        }
        page.armed.remove(&off);
        let byte = page.original.get(off as usize).copied().unwrap_or(INT3);
        let target = match page.shadow {
            Some(s) => Gpa((s.0 << 12) | off as u64),
            None => gpa,
        };
        session.backend().write_physical(target, &[byte])
    }

    /// Start hooking a page: read it; stealth: a shadow frame with its bytes, shown
    /// execute-only in the execute view; in place: writes to it trap in view 0.
    fn hook_page<B: SessionBackend>(&self, session: &mut Session<'_, B>, gfn: Gfn) -> Result<Page> {
        let mut original = vec![0u8; PAGE_SIZE as usize].into_boxed_slice();
        session
            .backend()
            .read_physical(Gpa(gfn.0 << 12), &mut original)?;
        let shadow = match self.placement {
            Placement::Stealth => {
                let shadow = session.alloc_frame()?;
                session
                    .backend()
                    .write_physical(Gpa(shadow.0 << 12), &original)?;
                session.change_gfn(self.view, gfn, shadow)?;
                session.set_mem_access(self.view, gfn, MemAccess::X)?;
                Some(shadow)
            }
            Placement::InPlace => {
                session.set_mem_access(ViewId::HOST, gfn, MemAccess::R | MemAccess::X)?;
                None
            }
        };
        Ok(Page {
            shadow,
            original,
            armed: BTreeMap::new(),
        })
    }

    /// The guest wrote hooked page `gfn`: take its new bytes as the original and put the
    /// `int3`s back (stealth: a new shadow copy; in place: only the breakpoint bytes the write
    /// replaced need their `int3` again).
    fn refresh<B: SessionBackend>(&mut self, session: &mut Session<'_, B>, gfn: Gfn) -> Result<()> {
        let placement = self.placement;
        let Some(page) = self.pages.get_mut(&gfn.0) else {
            return Ok(());
        };
        self.stats.refreshes += 1;
        let mut now = vec![0u8; PAGE_SIZE as usize];
        session
            .backend()
            .read_physical(Gpa(gfn.0 << 12), &mut now)?;
        match placement {
            Placement::Stealth => {
                page.original.copy_from_slice(&now);
                let shadow = page.shadow.unwrap_or(gfn);
                let mut copy = now;
                for &off in page.armed.keys() {
                    if let Some(b) = copy.get_mut(off as usize) {
                        *b = INT3;
                    }
                }
                session
                    .backend()
                    .write_physical(Gpa(shadow.0 << 12), &copy)?;
            }
            Placement::InPlace => {
                for (i, &b) in now.iter().enumerate() {
                    let armed = page.armed.contains_key(&(i as u16));
                    if !armed {
                        page.original[i] = b;
                    } else if b != INT3 {
                        // The guest replaced the instruction under this breakpoint: its new
                        // byte is the original from now on, and the int3 goes back on top.
                        page.original[i] = b;
                        session.poke(Gpa((gfn.0 << 12) | i as u64), INT3)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Arm a return hook for the call whose entry `id` the event `e` hit.
    fn arm_return<B: SessionBackend, M: PhysicalMemory>(
        &mut self,
        session: &mut Session<'_, B>,
        mem: &GuestMemory<M>,
        e: &Event,
        entry: HookId,
        tag: u64,
    ) -> Result<Gpa> {
        if self.pending_returns >= MAX_PENDING_RETURNS {
            return Err(Error::Unsupported {
                backend: "hook manager",
                capability: "more than MAX_PENDING_RETURNS pending return hooks",
            });
        }
        let space = AddressSpace::from_cr3(e.regs.cr3, e.regs.paging_mode());
        let ret = mem.read_u64(space, Gva(e.regs.rsp))?;
        let gpa = mem.translate_mapped(space, Gva(ret))?;
        self.arm(session, gpa)?;
        self.returns.entry(gpa.0).or_default().push(PendingReturn {
            entry,
            rsp: e.regs.rsp,
            cr3: e.regs.cr3 & !CR3_FLAGS,
            tag,
        });
        self.pending_returns += 1;
        Ok(gpa)
    }
}

/// `name` or `name+offset` (hex with `0x`, else decimal) at its run-time address.
fn resolve_symbol(linux: &Linux, spec: &str) -> Result<Gva> {
    let (name, off) = match spec.split_once('+') {
        Some((n, o)) => {
            let o = o.trim();
            let parsed = match o.strip_prefix("0x").or_else(|| o.strip_prefix("0X")) {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => o.parse(),
            };
            let off = parsed.map_err(|_| {
                Error::malformed("breakpoint", spec, "the offset after '+' is not a number")
            })?;
            (n.trim(), off)
        }
        None => (spec.trim(), 0),
    };
    let base = linux.require_symbol(name)?;
    base.0
        .checked_add(off)
        .map(Gva)
        .ok_or(Error::Overflow("symbol+offset"))
}

/// Write an `int3` for a breakpoint at `gpa`: into the shadow frame (stealth) or, journaled,
/// into the page itself (in place).
fn write_int3<B: SessionBackend>(
    session: &mut Session<'_, B>,
    placement: Placement,
    shadow: Option<Gfn>,
    gpa: Gpa,
) -> Result<()> {
    match (placement, shadow) {
        (Placement::Stealth, Some(s)) => session
            .backend()
            .write_physical(Gpa((s.0 << 12) | gpa.page_offset()), &[INT3]),
        _ => session.poke(gpa, INT3).map(|_| ()),
    }
}

/// Errors inside [`Hooks::run`]'s handler closure: the manager's own, or the user's.
#[derive(Debug)]
enum HookError<E> {
    Hooks(Error),
    Handler(E),
}

impl<E: std::fmt::Display> std::fmt::Display for HookError<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HookError::Hooks(e) => write!(f, "hook manager: {e}"),
            HookError::Handler(e) => e.fmt(f),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for HookError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HookError::Hooks(e) => Some(e),
            HookError::Handler(e) => Some(e),
        }
    }
}

/// What the handler of [`Hooks::run`] gets: the event, the hit (if it was one), guest memory,
/// and the hooks and the session to change before the vCPU resumes.
pub struct HookContext<'h, 'c, 'b, B: SessionBackend, M> {
    hooks: &'h mut Hooks,
    ctx: &'h mut EventContext<'c, 'b, B>,
    mem: &'h GuestMemory<M>,
    hit: Option<Hit>,
}

impl<'c, 'b, B: SessionBackend, M: PhysicalMemory> HookContext<'_, 'c, 'b, B, M> {
    /// The event.
    pub fn event(&self) -> &'c Event {
        self.ctx.event()
    }

    /// The hit this call is for, `None` for an event that is not the hooks' business.
    pub fn hit(&self) -> Option<Hit> {
        self.hit
    }

    /// Guest memory (translations flushed for this event).
    pub fn memory(&self) -> &GuestMemory<M> {
        self.mem
    }

    /// The session (monitors, views, access rights), for changes before the vCPU resumes.
    pub fn session(&mut self) -> &mut Session<'b, B> {
        self.ctx.session()
    }

    /// The manager's counters.
    pub fn stats(&self) -> HookStats {
        self.hooks.stats
    }

    /// Place a breakpoint at a guest-physical address (live before the vCPU resumes).
    ///
    /// # Errors
    /// As [`Hooks::add`].
    pub fn add(&mut self, gpa: Gpa) -> Result<HookId> {
        self.hooks.add(self.ctx.session(), gpa)
    }

    /// Place a breakpoint at a guest-virtual address of the event's address space.
    ///
    /// # Errors
    /// As [`Hooks::add_va`].
    pub fn add_va(&mut self, va: Gva) -> Result<HookId> {
        let r = &self.ctx.event().regs;
        let space = AddressSpace::from_cr3(r.cr3, r.paging_mode());
        self.hooks.add_va(self.ctx.session(), self.mem, space, va)
    }

    /// Place a breakpoint at a kernel symbol, `name` or `name+offset`.
    ///
    /// # Errors
    /// As [`Hooks::add_symbol`].
    pub fn add_symbol(&mut self, linux: &Linux, spec: &str) -> Result<HookId> {
        self.hooks
            .add_symbol(self.ctx.session(), self.mem, linux, spec)
    }

    /// Remove a breakpoint.
    ///
    /// # Errors
    /// As [`Hooks::remove`].
    pub fn remove(&mut self, id: HookId) -> Result<()> {
        self.hooks.remove(self.ctx.session(), id)
    }

    /// On a breakpoint hit at a function's first instruction: report this call's return as
    /// [`Hit::Return`] with `tag`. The return address is read from the stack now; the return
    /// is matched to this call by stack pointer and CR3. Returns the return address's
    /// guest-physical address.
    ///
    /// # Errors
    /// Not a breakpoint hit; the stack or the return address is not mapped; more than
    /// [`MAX_PENDING_RETURNS`] pending.
    pub fn return_hook(&mut self, tag: u64) -> Result<Gpa> {
        let Some(Hit::Breakpoint { id, .. }) = self.hit else {
            return Err(Error::Unsupported {
                backend: "hook manager",
                capability: "a return hook outside a breakpoint hit",
            });
        };
        let e = self.ctx.event();
        self.hooks
            .arm_return(self.ctx.session(), self.mem, e, id, tag)
    }

    /// End the loop after this batch of events is answered.
    pub fn stop(&self) {
        self.ctx.stop();
    }
}
