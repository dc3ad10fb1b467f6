//! Hidden processes: a cross-view check between the address spaces the vCPUs actually switch
//! to (CR3 writes) and the kernel's task list. A process unlinked from `init_task.tasks`
//! (DKOM) still runs, so its page-table root is loaded into CR3 at every switch to it; a root
//! that no task on the list owns, after a fresh walk of the list
//! ([`Cr3Resolver`]: a miss re-walks once), is reported.
//!
//! Legitimate roots that no task owns are excepted: the kernel's own (`init_mm`,
//! [`Linux::is_kernel_cr3`](crate::os::linux::Linux::is_kernel_cr3)), `text_poke`'s
//! temporary `poking_mm` and the EFI runtime's `efi_mm` (their `pgd`, read when the guard
//! starts, when the kernel has them). KPTI user roots are matched to their kernel twin.
//! Each unknown root is reported once (at most [`MAX_REPORTED`] are remembered).
//!
//! It watches every CR3 write (sync), so it costs one event per context switch; a CR3 load
//! cannot be refused: the alert is `reported`.
//!
//! **Limit.** A root seen for the first time between a process's creation and its insertion in
//! the task list cannot occur (Linux links the task before it first runs), but a root of a
//! process that exited after the switch and before the walk is reported as hidden; the
//! alert's `new` value is the root for an analyst to examine (e.g. in a capture).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use super::{Decision, Finding, Guest, Plan, Policy, Remediation};
use crate::addr::Gva;
use crate::alert::Attempt;
use crate::backend::ControlRegister;
use crate::error::Result;
use crate::event::{Event, EventKind};
use crate::os::linux::{Cr3Owner, Cr3Resolver};
use crate::regs::cr3_to_root;

/// Most unknown roots remembered (each is reported once).
pub const MAX_REPORTED: usize = 4096;
/// How old the cached task list may be before a CR3 write re-walks it (a process unlinked
/// after the last walk stays cached as visible until then).
pub const REFRESH_EVERY: Duration = Duration::from_secs(1);

/// The hidden-process check (see the module documentation).
#[derive(Debug)]
pub struct HiddenProcessPolicy {
    remediation: Remediation,
    resolver: Cr3Resolver,
    ignore: Vec<u64>,
    reported: HashSet<u64>,
    refresh_every: Duration,
    last_walk: Option<Instant>,
}

impl HiddenProcessPolicy {
    /// `hidden-processes`.
    pub fn new(remediation: Remediation) -> Self {
        HiddenProcessPolicy {
            remediation,
            resolver: Cr3Resolver::new(),
            ignore: Vec::new(),
            reported: HashSet::new(),
            refresh_every: REFRESH_EVERY,
            last_walk: None,
        }
    }

    /// Re-walk the task list when it is older than `every` (one second by default;
    /// zero: at every CR3 write).
    pub fn refreshing_every(mut self, every: Duration) -> Self {
        self.refresh_every = every;
        self
    }
}

impl Policy for HiddenProcessPolicy {
    fn name(&self) -> &str {
        "hidden-processes"
    }

    fn remediation(&self) -> &Remediation {
        &self.remediation
    }

    fn plan(&mut self, guest: &Guest<'_>) -> Result<Plan> {
        let l = guest.linux;
        let ks = l.info().kernel_space;
        let pgd = l.offsets().mm_pgd;
        // poking_mm is a pointer to the mm; efi_mm is the mm itself.
        let mms = [
            l.symbol("poking_mm")
                .and_then(|p| guest.mem.read_va(ks, p).ok()),
            l.symbol("efi_mm"),
        ];
        self.ignore = mms
            .into_iter()
            .flatten()
            .filter(|mm| mm.0 != 0)
            .filter_map(|mm| guest.mem.read_va(ks, Gva(mm.0.wrapping_add(pgd))).ok())
            .filter_map(|pgd| guest.mem.translate_mapped(ks, pgd).ok())
            .map(|pa| pa.0)
            .collect();
        self.resolver.refresh(l, guest.mem);
        self.last_walk = Some(Instant::now());
        Ok(Plan::cr3_writes())
    }

    fn decide(&mut self, guest: &Guest<'_>, event: &Event) -> Decision {
        let EventKind::ControlRegister {
            register: ControlRegister::Cr3,
            new,
            old,
        } = event.kind
        else {
            return Decision::NotMine;
        };
        let root = cr3_to_root(new).0;
        // KPTI: the user PGD is the page after the kernel one.
        if self.ignore.contains(&root) || self.ignore.contains(&(root & !0x1000)) {
            return Decision::Legitimate;
        }
        if self
            .last_walk
            .is_none_or(|t| t.elapsed() >= self.refresh_every)
        {
            self.resolver.refresh(guest.linux, guest.mem);
            self.last_walk = Some(Instant::now());
        }
        match self.resolver.resolve(guest.linux, guest.mem, new) {
            Cr3Owner::Process(_) | Cr3Owner::Kernel => Decision::Legitimate,
            Cr3Owner::Unknown => {
                if self.reported.contains(&root) || self.reported.len() >= MAX_REPORTED {
                    return Decision::Legitimate;
                }
                self.reported.insert(root);
                Decision::Violation(Finding {
                    what: "hidden_process".into(),
                    severity: 8,
                    attempt: Attempt {
                        target: Some("cr3".into()),
                        old: Some(old),
                        new: Some(new),
                        rip: event.regs.rip,
                        ..Attempt::default()
                    },
                    deniable: false,
                })
            }
        }
    }
}
