//! `module-text`: write protection of each loaded module's core text, followed as modules
//! load and unload.
//!
//! At plan time and at each [`Policy::refresh`], the module list is walked
//! ([`Linux::module_texts`](crate::os::linux::Linux::module_texts)) and the frames of the text
//! of every module in state `MODULE_STATE_LIVE` are wanted protected. A module still `COMING`
//! is left alone (the loader is relocating it and applying its alternatives and jump labels
//! with plain writes); a module that left the list or went `GOING` is released.
//!
//! A write to a protected module frame:
//! 1. from the kernel's own patching ([`WriterAllowList::linux_text_patching`]: `text_poke`,
//!    which jump labels, static calls, kprobes and ftrace use on live modules) is
//!    [`Decision::Legitimate`];
//! 2. otherwise the owner is checked again by a fresh walk: if the module is no longer in the
//!    list as `LIVE`, or its text no longer holds the page on that frame, the module's memory
//!    is being freed (`free_module` unlinks it, then `vfree`s its memory, which the page
//!    allocator hands out again) and the write is the new owner's: it is let through without
//!    an alert and the policy asks for a refresh ([`Policy::refresh_requested`]), which
//!    releases the frame before the vCPU resumes. This is the race between `vfree` and the
//!    next periodic refresh;
//! 3. otherwise it is a violation, `module_text_write`, naming the written address and
//!    `module+offset` (from the start of the module's text).
//!
//! Bounds: the walk is the module walk's ([`MAX_MODULES`](crate::os::linux::MAX_MODULES)
//! entries, cycles detected); a module with more than [`MAX_MODULE_TEXT_PAGES`] pages of text
//! is skipped ([`ModuleTextPolicy::skipped`]); at most [`MAX_PAGES`] frames in all.
//! A walk that was not complete (a broken link, an unreadable `struct module`, a text page
//! that is not mapped, a bound reached) releases nothing: only modules seen gone are released.
//!
//! **Limits.** A module's state and list links are not protected: code already running in
//! ring 0 can unlink a module or mark it `GOING` to have its text released at the next
//! refresh (or on its next write). The init text (freed after init) and module data are not
//! protected.

use std::collections::{BTreeSet, HashMap};

use super::region::{PageWrite, MAX_PAGES};
use super::{Decision, Guest, Plan, PlanChange, Policy, Remediation, WriterAllowList};
use crate::addr::{Gfn, Gva, PAGE_SIZE};
use crate::error::Result;
use crate::event::Event;
use crate::os::linux::{ModuleState, ModuleText};

/// The most pages of text one module may have to be protected (64 MiB; the largest in-tree
/// modules have a few MiB of text).
pub const MAX_MODULE_TEXT_PAGES: u64 = 1 << 14;

/// Who a protected frame belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Owner {
    /// The module's name.
    name: String,
    /// Its `struct module`.
    object: Gva,
    /// The start of its text.
    base: u64,
    /// The virtual address of the frame's page in the module's text.
    page_va: u64,
}

/// One walk of the module list.
struct Scan {
    pages: HashMap<u64, Vec<Owner>>,
    /// Every module was read and every page of every live module's text translated.
    complete: bool,
    /// Modules whose text was too large.
    skipped: usize,
}

/// Write protection of live modules' text (see the module documentation).
#[derive(Clone, Debug)]
pub struct ModuleTextPolicy {
    allow: WriterAllowList,
    remediation: Remediation,
    severity: u8,
    pages: HashMap<u64, Vec<Owner>>,
    skipped: usize,
    stale: bool,
}

impl ModuleTextPolicy {
    /// The policy, with the kernel's own patching allowed
    /// ([`WriterAllowList::linux_text_patching`]).
    pub fn new(remediation: Remediation) -> Self {
        ModuleTextPolicy {
            allow: WriterAllowList::linux_text_patching(),
            remediation,
            severity: 10,
            pages: HashMap::new(),
            skipped: 0,
            stale: false,
        }
    }

    /// Frames protected now.
    pub fn page_count(&self) -> usize {
        self.pages.len()
    }

    /// The names of the modules whose text is protected now, sorted.
    pub fn modules(&self) -> Vec<String> {
        let names: BTreeSet<&str> = self
            .pages
            .values()
            .flatten()
            .map(|o| o.name.as_str())
            .collect();
        names.into_iter().map(str::to_owned).collect()
    }

    /// Live modules left unprotected by the last walk because their text was larger than
    /// [`MAX_MODULE_TEXT_PAGES`].
    pub fn skipped(&self) -> usize {
        self.skipped
    }

    fn scan(guest: &Guest<'_>) -> Result<Scan> {
        let space = guest.linux.info().kernel_space;
        let mut scan = Scan {
            pages: HashMap::new(),
            complete: true,
            skipped: 0,
        };
        let mut total = 0u64;
        for m in guest.linux.module_texts(guest.mem)? {
            let Ok(m) = m else {
                scan.complete = false;
                continue;
            };
            if m.state != ModuleState::Live || m.size == 0 {
                continue;
            }
            let first = m.base.0 & !(PAGE_SIZE - 1);
            let Some(end) = m.base.0.checked_add(m.size) else {
                scan.complete = false;
                continue;
            };
            let n = (end - first).div_ceil(PAGE_SIZE);
            if n > MAX_MODULE_TEXT_PAGES {
                scan.skipped += 1;
                scan.complete = false;
                continue;
            }
            if total + n > MAX_PAGES {
                scan.complete = false;
                break;
            }
            total += n;
            for i in 0..n {
                let va = first + i * PAGE_SIZE;
                let Ok(gpa) = guest.mem.translate_mapped(space, Gva(va)) else {
                    scan.complete = false;
                    continue;
                };
                scan.pages.entry(gpa.gfn().0).or_default().push(Owner {
                    name: m.name.clone(),
                    object: m.object,
                    base: m.base.0,
                    page_va: va,
                });
            }
        }
        Ok(scan)
    }

    /// Whether `owner` still owns frame `gfn`: a fresh walk finds its module `LIVE` with
    /// that page in its text, mapped to that frame.
    fn still_owns(guest: &Guest<'_>, owner: &Owner, gfn: u64) -> bool {
        let Ok(walk) = guest.linux.module_texts(guest.mem) else {
            return true;
        };
        let space = guest.linux.info().kernel_space;
        let holds = |m: &ModuleText| {
            m.object == owner.object
                && m.state == ModuleState::Live
                && m.base.0 & !(PAGE_SIZE - 1) <= owner.page_va
                && m.base
                    .0
                    .checked_add(m.size)
                    .is_some_and(|e| owner.page_va < e)
        };
        let mut complete = true;
        for m in walk {
            match m {
                Ok(m) if holds(&m) => {
                    return guest
                        .mem
                        .translate_mapped(space, Gva(owner.page_va))
                        .is_ok_and(|g| g.gfn().0 == gfn);
                }
                Ok(_) => {}
                Err(_) => complete = false,
            }
        }
        // Not found: gone, unless the walk could not see every module (then keep the
        // protection: an attacker breaking the list must not turn alerts off).
        !complete
    }
}

impl Policy for ModuleTextPolicy {
    fn name(&self) -> &str {
        "module-text"
    }

    fn remediation(&self) -> &Remediation {
        &self.remediation
    }

    fn plan(&mut self, guest: &Guest<'_>) -> Result<Plan> {
        let scan = Self::scan(guest)?;
        self.pages = scan.pages;
        self.skipped = scan.skipped;
        self.stale = false;
        let mut write_protect: Vec<Gfn> = self.pages.keys().map(|&g| Gfn(g)).collect();
        write_protect.sort_unstable();
        Ok(Plan {
            monitors: Vec::new(),
            write_protect,
        })
    }

    fn refresh(&mut self, guest: &Guest<'_>) -> Result<PlanChange> {
        let scan = Self::scan(guest)?;
        let mut pages = scan.pages;
        let mut change = PlanChange::default();
        for (&g, owners) in &self.pages {
            if pages.contains_key(&g) {
                continue;
            }
            if scan.complete {
                change.release.push(Gfn(g));
            } else {
                pages.insert(g, owners.clone());
            }
        }
        change.protect = pages
            .keys()
            .filter(|g| !self.pages.contains_key(g))
            .map(|&g| Gfn(g))
            .collect();
        change.protect.sort_unstable();
        change.release.sort_unstable();
        self.pages = pages;
        self.skipped = scan.skipped;
        self.stale = false;
        Ok(change)
    }

    fn refresh_requested(&self) -> bool {
        self.stale
    }

    fn decide(&mut self, guest: &Guest<'_>, event: &Event) -> Decision {
        let Some(w) = PageWrite::of(event) else {
            return Decision::NotMine;
        };
        let Some(owners) = self.pages.get(&w.gfn) else {
            return Decision::NotMine;
        };
        let writer = self.allow.judge(guest, &event.regs);
        if writer.allowed_by.is_some() {
            return Decision::Legitimate;
        }
        let Some(owner) = owners.iter().find(|o| Self::still_owns(guest, o, w.gfn)) else {
            // Its module is being freed: the write is the memory's next owner's.
            self.stale = true;
            return Decision::Legitimate;
        };
        let va = owner.page_va + w.offset;
        let symbol = format!("{}+{:#x}", owner.name, va.wrapping_sub(owner.base));
        w.violation(
            "module_text_write",
            "module_text",
            self.severity,
            va,
            Some(symbol),
            event,
            writer,
        )
    }
}
