//! Critical registers: control-register bits that must not be cleared (CR0.WP, CR4.SMEP,
//! SMAP, UMIP) and MSRs that must keep their value (the system-call entry points) or a bit
//! (EFER.NXE). Each watches its register with a synchronous monitor, so a violation can be
//! refused (DENY) before the write takes effect. Linux pins these bits itself
//! (`cr4_pinned_bits`, CR0.WP in `native_write_cr0`) and writes the entry MSRs only when a CPU
//! is brought up, with the values it had at boot: a write that breaks them is an attack.

use super::{Decision, Finding, Guest, Plan, Policy, Remediation};
use crate::alert::Attempt;
use crate::backend::{ControlRegister, Monitor};
use crate::event::{Event, EventKind};
use crate::regs::{Cr0, Cr4, Registers};

/// `IA32_EFER`.
pub const MSR_EFER: u32 = 0xc000_0080;
/// `IA32_LSTAR`: the 64-bit `syscall` entry.
pub const MSR_LSTAR: u32 = 0xc000_0082;
/// `IA32_CSTAR`: the compatibility-mode `syscall` entry.
pub const MSR_CSTAR: u32 = 0xc000_0083;
/// `IA32_SYSENTER_ESP`.
pub const MSR_SYSENTER_ESP: u32 = 0x175;
/// `IA32_SYSENTER_EIP`: the `sysenter` entry.
pub const MSR_SYSENTER_EIP: u32 = 0x176;
/// `EFER.NXE`: no-execute enabled.
const EFER_NXE: u64 = 1 << 11;

/// Bits of a control register that must not be cleared (see the module documentation).
#[derive(Clone, Debug)]
pub struct ControlRegisterPolicy {
    name: String,
    register: ControlRegister,
    /// (bit mask, lower-case name) in the order they are named in `what`.
    bits: Vec<(u64, &'static str)>,
    remediation: Remediation,
    /// Report every violation as this instead of naming the cleared bits.
    what: Option<String>,
}

impl ControlRegisterPolicy {
    /// Report every violation under one identifier (e.g. `"cr4_smep_smap_clear"` whichever
    /// of the two was cleared, as `kernel-guard` always has) instead of naming the bits.
    pub fn reporting_as(mut self, what: &str) -> Self {
        self.what = Some(what.to_owned());
        self
    }

    /// `cr0-wp`: CR0.WP (write protection of read-only pages in ring 0) must stay set.
    pub fn cr0_wp(remediation: Remediation) -> Self {
        ControlRegisterPolicy {
            name: "cr0-wp".into(),
            register: ControlRegister::Cr0,
            bits: vec![(Cr0::WP.bits(), "wp")],
            remediation,
            what: None,
        }
    }

    /// `cr4`: the given CR4 bits, of SMEP, SMAP and UMIP, must stay set (all three when
    /// `bits` is empty).
    pub fn cr4(bits: Cr4, remediation: Remediation) -> Self {
        let all = [
            (Cr4::SMEP, "smep"),
            (Cr4::SMAP, "smap"),
            (Cr4::UMIP, "umip"),
        ];
        let bits = if bits.is_empty() {
            Cr4::SMEP | Cr4::SMAP | Cr4::UMIP
        } else {
            bits
        };
        ControlRegisterPolicy {
            name: "cr4".into(),
            register: ControlRegister::Cr4,
            bits: all
                .iter()
                .filter(|(b, _)| bits.contains(*b))
                .map(|(b, n)| (b.bits(), *n))
                .collect(),
            remediation,
            what: None,
        }
    }

    fn label(&self) -> &'static str {
        match self.register {
            ControlRegister::Cr0 => "cr0",
            ControlRegister::Cr3 => "cr3",
            ControlRegister::Cr4 => "cr4",
            ControlRegister::Xcr0 => "xcr0",
        }
    }
}

impl Policy for ControlRegisterPolicy {
    fn name(&self) -> &str {
        &self.name
    }

    fn remediation(&self) -> &Remediation {
        &self.remediation
    }

    fn plan(&mut self, _guest: &Guest<'_>) -> crate::Result<Plan> {
        Ok(Plan {
            monitors: vec![Monitor::ControlRegister {
                register: self.register,
                sync: true,
                on_change_only: true,
                ignore_mask: 0,
            }],
            write_protect: Vec::new(),
        })
    }

    fn decide(&mut self, _guest: &Guest<'_>, event: &Event) -> Decision {
        let EventKind::ControlRegister { register, old, new } = event.kind else {
            return Decision::NotMine;
        };
        if register != self.register {
            return Decision::NotMine;
        }
        let cleared: Vec<&str> = self
            .bits
            .iter()
            .filter(|(b, _)| old & b & !new != 0)
            .map(|(_, n)| *n)
            .collect();
        if cleared.is_empty() {
            return Decision::Legitimate;
        }
        Decision::Violation(Finding {
            what: self
                .what
                .clone()
                .unwrap_or_else(|| format!("{}_{}_clear", self.label(), cleared.join("_"))),
            severity: 9,
            attempt: Attempt {
                target: Some(self.label().into()),
                old: Some(old),
                new: Some(new),
                rip: event.regs.rip,
                ..Attempt::default()
            },
            deniable: true,
        })
    }
}

/// One MSR an [`MsrPolicy`] watches.
#[derive(Clone, Debug)]
struct WatchedMsr {
    index: u32,
    label: &'static str,
    /// The symbol whose address is always a legitimate value (the kernel's entry point).
    symbol: Option<&'static str>,
    /// A value recorded at the start from this register of each vCPU.
    baseline: fn(&Registers) -> u64,
}

/// The MSRs that hold the kernel's entry points must keep their value, and EFER.NXE must stay
/// set (see the module documentation). A write to an entry MSR is legitimate when its value is
/// the one that vCPU had when the guard started, or the entry symbol's address
/// (`entry_SYSCALL_64` for LSTAR, `entry_SYSCALL_compat` for CSTAR, `entry_SYSENTER_compat`
/// for SYSENTER_EIP).
#[derive(Clone, Debug)]
pub struct MsrPolicy {
    msrs: Vec<WatchedMsr>,
    nxe: bool,
    /// Per watched MSR, the symbol's address (filled by `plan`).
    expected: Vec<Option<u64>>,
    remediation: Remediation,
}

impl MsrPolicy {
    /// `msr`: LSTAR, CSTAR, SYSENTER_EIP, SYSENTER_ESP and EFER.NXE.
    pub fn new(remediation: Remediation) -> Self {
        Self::only(
            &[
                MSR_LSTAR,
                MSR_CSTAR,
                MSR_SYSENTER_EIP,
                MSR_SYSENTER_ESP,
                MSR_EFER,
            ],
            remediation,
        )
    }

    /// Only some of them (indices of [`MSR_LSTAR`], [`MSR_CSTAR`], [`MSR_SYSENTER_EIP`],
    /// [`MSR_SYSENTER_ESP`], [`MSR_EFER`]; others are ignored).
    pub fn only(indices: &[u32], remediation: Remediation) -> Self {
        let all = [
            WatchedMsr {
                index: MSR_LSTAR,
                label: "lstar",
                symbol: Some("entry_SYSCALL_64"),
                baseline: |r| r.msr_lstar,
            },
            WatchedMsr {
                index: MSR_CSTAR,
                label: "cstar",
                symbol: Some("entry_SYSCALL_compat"),
                baseline: |r| r.msr_cstar,
            },
            WatchedMsr {
                index: MSR_SYSENTER_EIP,
                label: "sysenter_eip",
                symbol: Some("entry_SYSENTER_compat"),
                baseline: |r| r.sysenter_eip,
            },
            WatchedMsr {
                index: MSR_SYSENTER_ESP,
                label: "sysenter_esp",
                symbol: None,
                baseline: |r| r.sysenter_esp,
            },
        ];
        MsrPolicy {
            msrs: all
                .into_iter()
                .filter(|m| indices.contains(&m.index))
                .collect(),
            nxe: indices.contains(&MSR_EFER),
            expected: Vec::new(),
            remediation,
        }
    }
}

impl Policy for MsrPolicy {
    fn name(&self) -> &str {
        "msr"
    }

    fn remediation(&self) -> &Remediation {
        &self.remediation
    }

    fn plan(&mut self, guest: &Guest<'_>) -> crate::Result<Plan> {
        self.expected = self
            .msrs
            .iter()
            .map(|m| m.symbol.and_then(|s| guest.linux.symbol(s)).map(|v| v.0))
            .collect();
        let mut monitors: Vec<Monitor> = self
            .msrs
            .iter()
            .map(|m| Monitor::Msr {
                index: m.index,
                on_change_only: true,
            })
            .collect();
        if self.nxe {
            monitors.push(Monitor::Msr {
                index: MSR_EFER,
                on_change_only: true,
            });
        }
        Ok(Plan {
            monitors,
            write_protect: Vec::new(),
        })
    }

    fn decide(&mut self, guest: &Guest<'_>, event: &Event) -> Decision {
        let EventKind::Msr { index, old, new } = event.kind else {
            return Decision::NotMine;
        };
        let attempt = |target: &str| Attempt {
            target: Some(target.into()),
            old: Some(old),
            new: Some(new),
            rip: event.regs.rip,
            ..Attempt::default()
        };
        if index == u64::from(MSR_EFER) && self.nxe {
            if old & EFER_NXE != 0 && new & EFER_NXE == 0 {
                return Decision::Violation(Finding {
                    what: "efer_nxe_clear".into(),
                    severity: 9,
                    attempt: attempt("msr_efer"),
                    deniable: true,
                });
            }
            return Decision::Legitimate;
        }
        let Some(i) = self.msrs.iter().position(|m| u64::from(m.index) == index) else {
            return Decision::NotMine;
        };
        let m = &self.msrs[i];
        let baseline = guest
            .baseline
            .get(event.vcpu.0 as usize)
            .map(m.baseline)
            .filter(|&v| v != 0);
        let symbol = self.expected.get(i).copied().flatten();
        if new == old || Some(new) == baseline || Some(new) == symbol {
            return Decision::Legitimate;
        }
        Decision::Violation(Finding {
            what: format!("msr_{}_write", m.label),
            severity: 10,
            attempt: attempt(&format!("msr_{}", m.label)),
            deniable: true,
        })
    }
}
