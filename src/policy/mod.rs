//! Protections as composable library types over the event core: each [`Policy`] says what it
//! monitors ([`Plan`]: monitors and write-protected pages), how it decides ([`Policy::decide`]
//! on each event), which response it gives ([`Remediation`], chosen per policy) and what it
//! reports ([`Finding`], turned into an [`Alert`](crate::alert::Alert)). A [`PolicySet`] holds
//! several, built from names and options (so that a configuration file or the C ABI can name
//! them); a [`Guard`] runs them in one [`Session`](crate::event::session::Session).
//!
//! | name | policy | watches | what it reports |
//! |---|---|---|---|
//! | `cr0-wp` | [`ControlRegisterPolicy`] | CR0 writes (sync) | `cr0_wp_clear` |
//! | `cr4` | [`ControlRegisterPolicy`] | CR4 writes (sync) | `cr4_smep_smap_clear`, `cr4_umip_clear`, ... |
//! | `msr` | [`MsrPolicy`] | `wrmsr` to LSTAR, CSTAR, SYSENTER_EIP/ESP, EFER | `msr_lstar_write`, ..., `efer_nxe_clear` |
//! | `descriptor-tables` | [`DescriptorTablePolicy`] | LIDT/LGDT (descriptor monitor); writes to the IDT's pages (and the GDT's, optionally) | `idt_load`, `gdt_load`, `idt_write`, `gdt_write` |
//! | `kernel-text` | [`WriteProtectPolicy`] | writes to kernel text and read-only data (`sys_call_table` included) | `kernel_text_write`, `kernel_rodata_write` |
//! | `module-text` | [`ModuleTextPolicy`] | writes to the text of each live module, followed as modules load and unload ([`Policy::refresh`]) | `module_text_write` |
//! | `modprobe-path`, `core-pattern` | [`WriteProtectPolicy`] | writes to those strings | `modprobe_path_write`, `core_pattern_write` |
//! | `hidden-processes` | [`HiddenProcessPolicy`] | CR3 writes: roots no task on the list owns | `hidden_process` |
//! | `hidden-modules` | [`HiddenModulePolicy`] | CR3 writes drive a cross-view, at most once a second: modules in `/sys/module` (`module_kset`) missing from the `modules` list | `hidden_module` |
//!
//! Write protection is physical: a page is protected by its guest frame, so every alias of it
//! (the kernel's direct map, `text_poke`'s temporary `poking_mm` mapping at another virtual
//! address) is covered. The kernel's own text patching is told apart from an attack by who
//! writes ([`WriterAllowList`]), never by lifting the protection.
//!
//! [`simulate`] holds the scripted rootkit that the `kernel-guard` example and
//! `xenvmi guard --simulate` run a guard against on the simulated domain.

mod allow;
mod descriptor;
mod guard;
mod hidden;
mod hidden_modules;
mod module_text;
mod region;
mod registers;
mod remediation;
mod set;
pub mod simulate;

pub use allow::{Writer, WriterAllowList};
pub use descriptor::DescriptorTablePolicy;
pub use guard::{Guard, GuardOptions, GuardStats, ViewMode};
pub use hidden::HiddenProcessPolicy;
pub use hidden_modules::HiddenModulePolicy;
pub use module_text::{ModuleTextPolicy, MAX_MODULE_TEXT_PAGES};
pub use region::{ProtectedRange, WriteProtectPolicy};
pub use registers::{
    ControlRegisterPolicy, MsrPolicy, MSR_CSTAR, MSR_EFER, MSR_LSTAR, MSR_SYSENTER_EIP,
    MSR_SYSENTER_ESP,
};
pub use remediation::{CaptureMode, Remediation, Step, Verdict};
pub use set::{PolicyOptions, PolicySet, POLICY_NAMES};

use crate::addr::Gfn;
use crate::alert::Attempt;
use crate::backend::{Monitor, PhysicalMemory};
use crate::event::Event;
use crate::mem::GuestMemory;
use crate::os::linux::Linux;
use crate::regs::Registers;

/// What a policy works on: the kernel, guest memory, and the vCPUs' registers when the guard
/// started (the baseline register-watching policies compare with).
pub struct Guest<'a> {
    /// The guest's kernel (symbols, types, layout).
    pub linux: &'a Linux,
    /// Guest memory (any backend).
    pub mem: &'a GuestMemory<&'a dyn PhysicalMemory>,
    /// Each vCPU's registers when the guard was set up.
    pub baseline: &'a [Registers],
}

impl std::fmt::Debug for Guest<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guest")
            .field("vcpus", &self.baseline.len())
            .finish()
    }
}

/// What a policy needs from the event core, computed once before monitoring starts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Monitors to turn on (shared ones are turned on once).
    pub monitors: Vec<Monitor>,
    /// Frames whose writes the policy must see (made read/execute-only in the guard's view).
    pub write_protect: Vec<Gfn>,
}

/// Frames a policy starts and stops protecting while monitoring runs ([`Policy::refresh`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PlanChange {
    /// Frames to write-protect from now on.
    pub protect: Vec<Gfn>,
    /// Frames this policy no longer wants protected (the guard lifts the protection once no
    /// policy wants the frame).
    pub release: Vec<Gfn>,
}

impl PlanChange {
    /// Nothing to change.
    pub fn is_empty(&self) -> bool {
        self.protect.is_empty() && self.release.is_empty()
    }
}

impl Plan {
    /// Every CR3 write, synchronously (the cross-view checks run on address-space switches),
    /// and nothing write-protected.
    pub fn cr3_writes() -> Plan {
        Plan {
            monitors: vec![Monitor::ControlRegister {
                register: crate::backend::ControlRegister::Cr3,
                sync: true,
                on_change_only: true,
                ignore_mask: 0,
            }],
            write_protect: Vec::new(),
        }
    }
}

/// What a policy made of an event.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Not this policy's concern.
    NotMine,
    /// This policy's concern, and legitimate (e.g. the kernel's own text patching): let it
    /// happen, report nothing.
    Legitimate,
    /// A violation: respond with the policy's [`Remediation`] and report.
    Violation(Finding),
}

/// A violation as a policy reports it (the guard adds the VM, process, response and
/// remediation to make an [`Alert`](crate::alert::Alert)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// A stable identifier (`"cr4_smep_smap_clear"`).
    pub what: String,
    /// Severity, 0 to 10 (CEF).
    pub severity: u8,
    /// What was attempted.
    pub attempt: Attempt,
    /// Whether the attempt can be refused at all (a descriptor-table load cannot: it is
    /// reported only).
    pub deniable: bool,
}

/// A protection (see the module documentation). Implement it to add one; the guard calls
/// [`Policy::plan`] once, before changing anything in the guest, then [`Policy::decide`] for
/// each event, and [`Policy::refresh`] periodically ([`GuardOptions::refresh_interval`]) and
/// right after an event whose decision left [`Policy::refresh_requested`] set.
pub trait Policy {
    /// The policy's name, as a [`PolicySet`] knows it (`"cr4"`).
    fn name(&self) -> &str;

    /// The response and remediation this policy gives on a violation.
    fn remediation(&self) -> &Remediation;

    /// What to monitor. Called once, before monitoring starts; an error here means nothing
    /// has been changed in the guest yet.
    ///
    /// # Errors
    /// The kernel lacks what the policy needs (a symbol), or guest memory cannot be read.
    fn plan(&mut self, guest: &Guest<'_>) -> crate::Result<Plan>;

    /// Decide about one event. Must not panic on any guest input (a panic is caught: the
    /// event gets a safe answer and the guard tears down).
    fn decide(&mut self, guest: &Guest<'_>, event: &Event) -> Decision;

    /// What to protect now, relative to what the plan and earlier refreshes asked for (for
    /// protections whose memory comes and goes while monitoring runs: modules load and
    /// unload). The default changes nothing.
    ///
    /// # Errors
    /// Guest memory cannot be read at all; the guard then ends monitoring and tears down.
    fn refresh(&mut self, guest: &Guest<'_>) -> crate::Result<PlanChange> {
        let _ = guest;
        Ok(PlanChange::default())
    }

    /// Whether the last [`Policy::decide`] found its protection out of date (a module it
    /// protects was being freed): the guard then calls [`Policy::refresh`] before the event's
    /// vCPU resumes. The default is `false`.
    fn refresh_requested(&self) -> bool {
        false
    }
}
