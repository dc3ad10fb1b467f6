//! Hidden kernel modules: the cross-view between the `modules` list, the kobjects of
//! `module_kset` and the vmap areas of the modules region ([`Linux::module_cross_view`]), run
//! while the guest runs. A module that unlinked itself from the list
//! (`list_del(&THIS_MODULE->list)`) is reported, whether it is still in `/sys/module` or also
//! deleted its kobject. Each vmap area is searched for a `struct module` once in its life
//! ([`AreaScanCache`]).
//!
//! The guard has no timer tick, so the check is driven by CR3 writes (as
//! [`HiddenProcessPolicy`](super::HiddenProcessPolicy)'s): at a CR3 write, when the last check
//! is older than the interval ([`REFRESH_EVERY`] by default,
//! [`HiddenModulePolicy::refreshing_every`]), both views are walked again. The first check runs
//! when the guard starts ([`Policy::plan`]), the second at the first CR3 write whatever the
//! interval (so a module hidden before the guard started is reported at once).
//!
//! A module is reported when two consecutive checks both see it hidden and `LIVE` (a walk of a
//! running guest can meet a list in the middle of a change; a module loading or unloading is
//! not `LIVE`), and only once (at most [`MAX_REPORTED`] are remembered). Findings are given one
//! per CR3 write. The alert is `hidden_module`, `reported` (nothing can be refused): `target` is
//! the module's name, `virtual_address` its `struct module` and `new` its text base.
//!
//! [`Linux::module_cross_view`]: crate::os::linux::Linux::module_cross_view

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

use super::{Decision, Finding, Guest, Plan, Policy, Remediation};
use crate::alert::Attempt;
use crate::backend::ControlRegister;
use crate::error::{Error, Result};
use crate::event::{Event, EventKind};
use crate::os::linux::{AreaScanCache, HiddenModule};

/// Most hidden modules remembered (each is reported once).
pub const MAX_REPORTED: usize = 4096;
/// How often, at most, the two views are walked again (at a CR3 write).
pub const REFRESH_EVERY: Duration = Duration::from_secs(1);

/// The hidden-module check (see the module documentation).
#[derive(Debug)]
pub struct HiddenModulePolicy {
    remediation: Remediation,
    refresh_every: Duration,
    last_check: Option<Instant>,
    /// `struct module` addresses seen hidden by the last check.
    previous: HashSet<u64>,
    reported: HashSet<u64>,
    pending: VecDeque<Finding>,
    /// Checks run (failed ones included).
    checks: u64,
    /// The vmap areas already searched for a `struct module`.
    areas: AreaScanCache,
}

impl HiddenModulePolicy {
    /// `hidden-modules`.
    pub fn new(remediation: Remediation) -> Self {
        HiddenModulePolicy {
            remediation,
            refresh_every: REFRESH_EVERY,
            last_check: None,
            previous: HashSet::new(),
            reported: HashSet::new(),
            pending: VecDeque::new(),
            checks: 0,
            areas: AreaScanCache::new(),
        }
    }

    /// Check again when the last check is older than `every` (one second by default; zero:
    /// at every CR3 write).
    pub fn refreshing_every(mut self, every: Duration) -> Self {
        self.refresh_every = every;
        self
    }

    /// Run the cross-view once; queue a finding for each module hidden now and at the last
    /// check and not yet reported.
    fn check(&mut self, guest: &Guest<'_>) -> Result<()> {
        // A failed check counts too: it is retried at the next interval, not at every event.
        self.checks += 1;
        self.last_check = Some(Instant::now());
        let view = match guest
            .linux
            .module_cross_view_with(guest.mem, &mut self.areas)
        {
            Ok(v) => v,
            Err(e) => {
                // The next sighting is not consecutive with the last.
                self.previous.clear();
                return Err(e);
            }
        };
        let now: HashSet<u64> = view.hidden.iter().map(|h| h.module.object.0).collect();
        for h in &view.hidden {
            let at = h.module.object.0;
            if self.previous.contains(&at)
                && !self.reported.contains(&at)
                && self.reported.len() < MAX_REPORTED
            {
                self.reported.insert(at);
                self.pending.push_back(finding(h));
            }
        }
        self.previous = now;
        Ok(())
    }
}

fn finding(h: &HiddenModule) -> Finding {
    Finding {
        what: "hidden_module".into(),
        severity: 8,
        attempt: Attempt {
            target: Some(h.module.name.clone()),
            new: Some(h.module.base.0),
            virtual_address: Some(h.module.object.0),
            ..Attempt::default()
        },
        deniable: false,
    }
}

impl Policy for HiddenModulePolicy {
    fn name(&self) -> &str {
        "hidden-modules"
    }

    fn remediation(&self) -> &Remediation {
        &self.remediation
    }

    fn plan(&mut self, guest: &Guest<'_>) -> Result<Plan> {
        // Fails, before anything is changed in the guest, on a kernel without `module_kset`
        // or the kobject fields (CONFIG_SYSFS off), naming the policy.
        self.check(guest).map_err(|e| Error::Config {
            what: "policy \"hidden-modules\"".into(),
            reason: format!("cannot compare the module list with module_kset: {e}"),
        })?;
        Ok(Plan::cr3_writes())
    }

    fn decide(&mut self, guest: &Guest<'_>, event: &Event) -> Decision {
        let EventKind::ControlRegister {
            register: ControlRegister::Cr3,
            ..
        } = event.kind
        else {
            return Decision::NotMine;
        };
        let due = self.checks < 2
            || self
                .last_check
                .is_none_or(|t| t.elapsed() >= self.refresh_every);
        if due {
            // A failed check (the guest changing under it) is retried at the next interval.
            let _ = self.check(guest);
        }
        match self.pending.pop_front() {
            Some(mut f) => {
                f.attempt.rip = event.regs.rip;
                Decision::Violation(f)
            }
            None => Decision::Legitimate,
        }
    }
}
