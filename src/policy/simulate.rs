//! A scripted rootkit for the simulated domain ([`SimDomain`], not Xen): what
//! `kernel-guard --simulate` and `xenvmi guard --simulate` run a guard against, over a real
//! snapshot's memory and registers.
//!
//! The guest is first brought to the state a modern x86 boots Linux into
//! ([`simulated_registers`]: CR4.SMEP and SMAP set, which the snapshot's emulated CPU may lack;
//! [`ScriptedAttack::prepare`]: `MSR_LSTAR` = `entry_SYSCALL_64` on every vCPU, as
//! `syscall_init` writes it). Then, with `n` vCPUs ([`ScriptedAttack::actions`]):
//!
//! | # | vCPU | action | a guard with `cr4`, `msr` and `kernel-text` |
//! |---|---|---|---|
//! | 1 | 0 | reads 8 bytes of `__x64_sys_getpid` | nothing (reads are not watched) |
//! | 2 | 0 | toggles CR4.PGE (a TLB flush) | nothing |
//! | 3 | n-1 | **clears CR4.SMEP and SMAP** (`cr4 & !(SMEP\|SMAP)`, from vCPU 0's CR4) | `cr4_smep_smap_clear` |
//! | 4 | 0 | **writes [`ROOTKIT_LSTAR`] to `MSR_LSTAR`** | `msr_lstar_write` |
//! | 5 | n-1 | **writes `e9 00 00 00 00` (a `jmp`) over `__x64_sys_getpid`** | `kernel_text_write` |
//! | 6 | 0 | executes `__x64_sys_getpid` | nothing |
//! | 7 | n-1 | sets CR0.TS (lazy FPU) | nothing |
//! | 8 | n-1 | loads vCPU 0's CR3 (a context switch to a listed process) | nothing |
//! | 9 | n-1 | writes `entry_SYSCALL_64` to `MSR_LSTAR` (a CPU brought up again) | nothing |
//! | 10 | 0 | `cpuid` leaf 7 | nothing |
//! | 11 | 0 | writes one byte of `init_task` (ordinary kernel data) | nothing |
//!
//! [`ScriptedAttack::benign`] is the same without 3–5: a clean run, which raises no alert
//! with any of [`POLICY_NAMES`](super::POLICY_NAMES). [`ScriptedAttack::outcome`] says
//! afterwards whether the guest's state was kept and the domain released.

use crate::addr::{Gpa, VcpuId};
use crate::backend::sim::{GuestAction, SimDomain};
use crate::backend::{ControlRegister, EventChannel, PhysicalMemory, VcpuState};
use crate::error::{Error, Result};
use crate::os::linux::Linux;
use crate::regs::{Cr4, Registers};

use super::MSR_LSTAR;

/// CR4.SMEP | CR4.SMAP.
pub const SMEP_SMAP: u64 = Cr4::SMEP.bits() | Cr4::SMAP.bits();

/// CR4.PGE (bit 7, global pages): toggling it flushes the TLB (Intel SDM vol. 3A, 2.5).
const CR4_PGE: u64 = 1 << 7;
/// CR0.TS (bit 3, task switched): set for lazy FPU switching (Intel SDM vol. 3A, 2.5).
const CR0_TS: u64 = 1 << 3;

/// The value the scripted rootkit writes to `MSR_LSTAR`: a module address (its own system-call
/// entry).
pub const ROOTKIT_LSTAR: u64 = 0xffff_ffff_c041_c000;

/// The bytes the scripted rootkit writes over `__x64_sys_getpid` (`jmp rel32 0`).
pub const ROOTKIT_PATCH: [u8; 5] = [0xe9, 0, 0, 0, 0];

/// The kernel function the scripted rootkit patches.
pub const PATCHED_FUNCTION: &str = "__x64_sys_getpid";

/// A snapshot's registers as the simulated domain should run them: SMEP and SMAP set, as
/// Linux runs on any x86-64 CPU that has them.
pub fn simulated_registers(snapshot_registers: &[Registers]) -> Vec<Registers> {
    snapshot_registers
        .iter()
        .map(|r| {
            let mut r = *r;
            r.cr4 |= SMEP_SMAP;
            r
        })
        .collect()
}

/// The scripted rootkit, prepared for one simulated guest (see the module documentation).
#[derive(Clone, Debug)]
pub struct ScriptedAttack {
    vcpus: u32,
    cr4: u64,
    cr0: u64,
    cr3: u64,
    lstar: u64,
    patch: Gpa,
    init_task: Gpa,
    text_before: [u8; 16],
}

/// Whether the guest's state survived the run (see [`ScriptedAttack::outcome`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttackOutcome {
    /// Every vCPU still has CR4.SMEP and SMAP set.
    pub smep_smap_kept: bool,
    /// Every vCPU's `MSR_LSTAR` is still `entry_SYSCALL_64`.
    pub lstar_kept: bool,
    /// The first 16 bytes of the patched function are as they were.
    pub text_kept: bool,
    /// No vCPU paused, no monitor, view or access restriction left.
    pub released_cleanly: bool,
}

impl std::fmt::Display for AttackOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SMEP/SMAP kept: {}; LSTAR kept: {}; kernel text kept: {}; guest released cleanly: {}",
            self.smep_smap_kept, self.lstar_kept, self.text_kept, self.released_cleanly
        )
    }
}

impl ScriptedAttack {
    /// Bring `sim` to its boot-time state (every vCPU's `MSR_LSTAR` written with
    /// `entry_SYSCALL_64` and run, before any monitor is on) and record what
    /// [`ScriptedAttack::outcome`] compares with.
    ///
    /// # Errors
    /// [`Error::MissingSymbol`] when the kernel lacks `entry_SYSCALL_64`,
    /// [`PATCHED_FUNCTION`] or `init_task`; [`Error::Config`] for a domain with no vCPU;
    /// the simulated domain's errors.
    pub fn prepare(sim: &SimDomain, linux: &Linux) -> Result<Self> {
        let vcpus = sim.vcpu_count();
        if vcpus == 0 {
            return Err(Error::Config {
                what: "simulated domain".into(),
                reason: "has no vCPU".into(),
            });
        }
        let k = linux.info();
        let image_gpa = |name: &str| -> Result<Gpa> {
            let va = linux.require_symbol(name)?;
            Ok(Gpa(k
                .text_pa
                .0
                .wrapping_add(va.0.wrapping_sub(k.text_va.0))))
        };
        let lstar = linux.require_symbol("entry_SYSCALL_64")?.0;
        let patch = image_gpa(PATCHED_FUNCTION)?;
        let init_task = image_gpa("init_task")?;
        sim.script((0..vcpus).map(|v| GuestAction::WriteMsr {
            vcpu: VcpuId(v),
            index: MSR_LSTAR,
            value: lstar,
        }));
        sim.wait(std::time::Duration::ZERO)?;
        let mut text_before = [0u8; 16];
        sim.read_physical(patch, &mut text_before)?;
        let r0 = sim.registers(VcpuId(0))?;
        Ok(ScriptedAttack {
            vcpus,
            cr4: r0.cr4,
            cr0: r0.cr0,
            cr3: r0.cr3,
            lstar,
            patch,
            init_task,
            text_before,
        })
    }

    /// The last vCPU (the rootkit's register and text attacks run there).
    fn last(&self) -> VcpuId {
        VcpuId(self.vcpus - 1)
    }

    /// The three attacks (rows 3–5 of the module documentation).
    fn attacks(&self) -> Vec<GuestAction> {
        vec![
            GuestAction::WriteCr {
                vcpu: self.last(),
                register: ControlRegister::Cr4,
                value: self.cr4 & !SMEP_SMAP,
            },
            GuestAction::WriteMsr {
                vcpu: VcpuId(0),
                index: MSR_LSTAR,
                value: ROOTKIT_LSTAR,
            },
            GuestAction::Write {
                vcpu: self.last(),
                gpa: self.patch,
                bytes: ROOTKIT_PATCH.to_vec(),
            },
        ]
    }

    /// The benign actions (rows 1, 2, 6–11 of the module documentation), in order.
    pub fn benign(&self) -> Vec<GuestAction> {
        let v0 = VcpuId(0);
        let vn = self.last();
        vec![
            GuestAction::Read {
                vcpu: v0,
                gpa: self.patch,
            },
            GuestAction::WriteCr {
                vcpu: v0,
                register: ControlRegister::Cr4,
                value: self.cr4 ^ CR4_PGE,
            },
            GuestAction::Execute {
                vcpu: v0,
                gpa: self.patch,
            },
            GuestAction::WriteCr {
                vcpu: vn,
                register: ControlRegister::Cr0,
                value: self.cr0 | CR0_TS,
            },
            GuestAction::WriteCr {
                vcpu: vn,
                register: ControlRegister::Cr3,
                value: self.cr3,
            },
            GuestAction::WriteMsr {
                vcpu: vn,
                index: MSR_LSTAR,
                value: self.lstar,
            },
            GuestAction::Cpuid { vcpu: v0, leaf: 7 },
            GuestAction::Write {
                vcpu: v0,
                gpa: self.init_task,
                bytes: vec![0],
            },
        ]
    }

    /// The whole script: the benign actions with the three attacks after the first two (the
    /// table of the module documentation, in order).
    pub fn actions(&self) -> Vec<GuestAction> {
        let mut a = self.benign();
        let rest = a.split_off(2);
        a.extend(self.attacks());
        a.extend(rest);
        a
    }

    /// `entry_SYSCALL_64`, the value every vCPU's `MSR_LSTAR` holds after
    /// [`ScriptedAttack::prepare`].
    pub fn lstar(&self) -> u64 {
        self.lstar
    }

    /// The guest-physical address of [`PATCHED_FUNCTION`].
    pub fn patched_address(&self) -> Gpa {
        self.patch
    }

    /// What became of the guest's state (call after the guard's teardown).
    pub fn outcome(&self, sim: &SimDomain) -> AttackOutcome {
        let mut text_after = [0u8; 16];
        let text_kept = sim.read_physical(self.patch, &mut text_after).is_ok()
            && text_after == self.text_before;
        let smep_smap_kept = (0..self.vcpus).all(|v| {
            sim.registers(VcpuId(v))
                .is_ok_and(|r| r.cr4 & SMEP_SMAP == SMEP_SMAP)
        });
        let st = sim.state();
        let lstar_kept = (0..self.vcpus).all(|v| st.msr(VcpuId(v), MSR_LSTAR) == Some(self.lstar));
        let released_cleanly = st.paused_vcpus().is_empty()
            && st.pause_count() == 0
            && st.extra_views().is_empty()
            && st.restrictions() == 0
            && st.monitors().is_empty();
        AttackOutcome {
            smep_smap_kept,
            lstar_kept,
            text_kept,
            released_cleanly,
        }
    }
}
