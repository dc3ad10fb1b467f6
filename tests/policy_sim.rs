//! The policy library on the simulated domain (not Xen) over the real Linux 6.1 snapshot:
//! each policy's scripted attack is refused and reported and the guest's state is intact
//! afterwards (CR0/CR4 bits, the entry MSRs, text, `sys_call_table`, `modprobe_path`,
//! `core_pattern`, the IDT); the kernel's own text patching (`__text_poke`, `memcpy` returning
//! into it) goes through; a clean run of benign activity raises no alert; remediation pauses,
//! captures (read back by `Snapshot`) and resumes; bad configuration is refused before
//! anything changes. Expected addresses come from the guest's own `/proc/kallsyms` at dump
//! time (the fixture's `kallsyms`), and expected values from the script's own inputs.
//!
//! `module-text`: the modules come from the ground truth (live, in list order, with their
//! bases), each `struct module` is the module's `__this_module` in kallsyms, and each text size
//! is read from the dump at the ground truth's BTF offsets and checked against the module's
//! kallsyms (text symbols inside, data outside). Modules are unlinked, relinked, made
//! `COMING`, `LIVE` or `GOING`, and the list broken, by writing guest memory as the kernel would.

mod support;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use support::fixture::fixture_file;
use xenvmi::alert::{Alert, AlertSink, Callback, Response as Given};
use xenvmi::backend::sim::{GuestAction, Outcome, SimDomain};
use xenvmi::backend::snapshot::Snapshot;
use xenvmi::backend::{
    ControlRegister, PhysicalMemory, PhysicalMemoryWrite, VcpuState, VcpuStateWrite,
};
use xenvmi::event::session::RunOptions;
use xenvmi::event::{Event, EventKind};
use xenvmi::mem::{AddressSpace, GuestMemory};
use xenvmi::os::linux::{Linux, ProfileSource};
use xenvmi::policy::{
    Decision, DescriptorTablePolicy, Guard, GuardOptions, Guest, Policy, PolicyOptions, PolicySet,
    Remediation, ViewMode, MSR_CSTAR, MSR_EFER, MSR_LSTAR, MSR_SYSENTER_EIP, MSR_SYSENTER_ESP,
};
use xenvmi::regs::{Cr0, Cr4};
use xenvmi::{Gpa, Gva, Registers, VcpuId, ViewId};

const FIXTURE: &str = "linux-6.1";
const SMEP_SMAP_UMIP: u64 = Cr4::SMEP.bits() | Cr4::SMAP.bits() | Cr4::UMIP.bits();
const EFER_NXE: u64 = 1 << 11;

fn run_opts() -> RunOptions {
    RunOptions {
        poll: Duration::ZERO,
        max_events: None,
        max_idle_polls: Some(1),
    }
}

struct Fixture {
    sim: SimDomain,
    linux: Linux,
    sym: HashMap<String, u64>,
    vcpus: u32,
}

/// The snapshot as a simulated domain whose CPUs run Linux as a modern x86 does (SMEP, SMAP
/// and UMIP on; the dump's emulated CPU lacked them), with the entry MSRs and EFER holding
/// what Linux's `syscall_init` writes.
fn fixture() -> Fixture {
    let snap = Snapshot::open(fixture_file(FIXTURE, "vmcore.elf").unwrap()).unwrap();
    let mut regs = snap.all_registers().to_vec();
    for r in &mut regs {
        r.cr4 |= SMEP_SMAP_UMIP;
    }
    let sim = SimDomain::new(snap, &regs);
    let linux = Linux::discover(&GuestMemory::new(&sim), &regs, ProfileSource::InGuest).unwrap();
    let sym = support::fixture::guest_kallsyms(FIXTURE);
    let n = regs.len() as u32;
    // EFER as the guest's CPUs had it (the dump's register notes lack NXE and SCE).
    let gt = support::fixture::ground_truth(FIXTURE);
    let efer: Vec<u64> = (0..n as usize)
        .map(|v| support::fixture::hex(&gt["vcpus"][v]["efer"]))
        .collect();
    let boot = (0..n).flat_map(|v| {
        let vcpu = VcpuId(v);
        [
            (MSR_LSTAR, sym["entry_SYSCALL_64"]),
            (MSR_CSTAR, sym["entry_SYSCALL_compat"]),
            (MSR_SYSENTER_EIP, sym["entry_SYSENTER_compat"]),
            (MSR_SYSENTER_ESP, 0xfffffe0000003000 + u64::from(v) * 0x1000),
            (MSR_EFER, efer[v as usize]),
        ]
        .map(|(index, value)| GuestAction::WriteMsr { vcpu, index, value })
    });
    sim.script(boot.collect::<Vec<_>>());
    sim.run_guest();
    Fixture {
        sim,
        linux,
        sym,
        vcpus: n,
    }
}

type Alerts = Rc<RefCell<Vec<Alert>>>;

fn collector() -> (Alerts, Box<dyn AlertSink>) {
    let alerts: Alerts = Rc::default();
    let a = alerts.clone();
    let sink = Callback(move |al: &Alert| {
        a.borrow_mut().push(al.clone());
        Ok(())
    });
    (alerts, Box::new(sink))
}

impl Fixture {
    /// The guest-physical address of a kernel-image address (the image is linear).
    fn image_gpa(&self, va: u64) -> Gpa {
        let k = self.linux.info();
        Gpa(k.text_pa.0 + (va - k.text_va.0))
    }
    fn read(&self, gpa: Gpa, n: usize) -> Vec<u8> {
        let mut b = vec![0; n];
        self.sim.read_physical(gpa, &mut b).unwrap();
        b
    }
    fn set_rip(&self, v: u32, rip: u64) {
        let mut r = self.sim.registers(VcpuId(v)).unwrap();
        r.rip = rip;
        self.sim.set_registers(VcpuId(v), &r).unwrap();
    }
    fn guard(&self, names: &[&str], opts: GuardOptions) -> (Guard<'_, SimDomain>, Alerts) {
        let set = PolicySet::from_names(names.iter().copied(), &PolicyOptions::default()).unwrap();
        let (alerts, sink) = collector();
        (
            Guard::new(&self.sim, &self.linux, set, sink, opts).unwrap(),
            alerts,
        )
    }
    fn assert_clean(&self) {
        let st = self.sim.state();
        assert!(
            st.paused_vcpus().is_empty(),
            "paused {:?}",
            st.paused_vcpus()
        );
        assert_eq!(st.pause_count(), 0);
        assert!(st.extra_views().is_empty() && st.restrictions() == 0);
        assert!(st.monitors().is_empty() && !st.ring_enabled());
        assert!(st.vcpus_not_clean().is_empty());
    }
    fn outcomes(&self) -> Vec<Outcome> {
        self.sim.state().outcomes().to_vec()
    }
}

/// A module in the ground truth, live at dump time.
struct GtModule {
    name: String,
    /// Its `struct module`: its `__this_module` in the guest's kallsyms.
    object: u64,
    /// Its text, from the ground truth's `base`.
    base: u64,
    /// `core_layout.text_size`, read from the dump at the ground truth's BTF offsets.
    text_size: u64,
}

impl GtModule {
    fn pages(&self) -> u64 {
        self.text_size.div_ceil(0x1000)
    }
}

/// A `struct module` field offset from the ground truth's BTF (`gt.btf.offsets`).
fn gt_offset(gt: &serde_json::Value, ty: &str, field: &str) -> u64 {
    gt["btf"]["offsets"][ty][field]["offset"].as_u64().unwrap()
}

impl Fixture {
    /// The guest-physical address of a kernel virtual address (through the kernel's page
    /// tables).
    fn kva_gpa(&self, va: u64) -> Gpa {
        GuestMemory::new(&self.sim)
            .translate_mapped(self.linux.info().kernel_space, Gva(va))
            .unwrap()
    }
    fn read_kva_u64(&self, va: u64) -> u64 {
        u64::from_le_bytes(self.read(self.kva_gpa(va), 8).try_into().unwrap())
    }
    fn write_kva(&self, va: u64, bytes: &[u8]) {
        self.sim.write_physical(self.kva_gpa(va), bytes).unwrap();
    }
    /// The ground truth's live modules. Each text size is checked against the guest's
    /// kallsyms: every text symbol of the module lies inside it, every data symbol outside.
    fn gt_modules(&self) -> Vec<GtModule> {
        let gt = support::fixture::ground_truth(FIXTURE);
        let syms = support::fixture::guest_module_symbols(FIXTURE);
        let core = gt_offset(&gt, "module", "core_layout");
        let text_size = gt_offset(&gt, "module_layout", "text_size");
        let layout_base = gt_offset(&gt, "module_layout", "base");
        let mut v = Vec::new();
        for m in gt["modules"].as_array().unwrap() {
            if m["state"] != "Live" {
                continue;
            }
            let name = m["name"].as_str().unwrap().to_owned();
            let ms = &syms[&name];
            let object = ms.iter().find(|s| s.1 == "__this_module").unwrap().2;
            let base = support::fixture::hex(&m["base"]);
            assert_eq!(
                self.read_kva_u64(object + core + layout_base),
                base,
                "{name}"
            );
            let size = self.read_kva_u64(object + core + text_size) & 0xffff_ffff;
            for (k, n, a) in ms {
                let inside = (base..base + size).contains(a);
                match k {
                    't' | 'T' => assert!(inside, "{name}: text symbol {n} at {a:#x}"),
                    'r' | 'R' | 'd' | 'D' | 'b' | 'B' => {
                        assert!(!inside, "{name}: data symbol {n} at {a:#x}")
                    }
                    _ => {}
                }
            }
            v.push(GtModule {
                name,
                object,
                base,
                text_size: size,
            });
        }
        v
    }
    /// The guest-physical address of each page of a module's text.
    fn text_frames(&self, m: &GtModule) -> Vec<Gpa> {
        (0..m.pages())
            .map(|p| self.kva_gpa(m.base + p * 0x1000))
            .collect()
    }
    /// Unlink a module from the module list as `list_del` does; returns what relinks it.
    fn unlink(&self, m: &GtModule) -> [(u64, [u8; 8]); 2] {
        let gt = support::fixture::ground_truth(FIXTURE);
        let node = m.object + gt_offset(&gt, "module", "list");
        let next = self.read_kva_u64(node);
        let prev = self.read_kva_u64(node + 8);
        // prev->next = next; next->prev = prev.
        let undo = [(prev, node.to_le_bytes()), (next + 8, node.to_le_bytes())];
        self.write_kva(prev, &next.to_le_bytes());
        self.write_kva(next + 8, &prev.to_le_bytes());
        undo
    }
    fn relink(&self, undo: [(u64, [u8; 8]); 2]) {
        for (va, b) in undo {
            self.write_kva(va, &b);
        }
    }
    /// Set a module's `enum module_state` (LIVE 0, COMING 1, GOING 2).
    fn set_module_state(&self, m: &GtModule, state: u32) {
        let gt = support::fixture::ground_truth(FIXTURE);
        self.write_kva(
            m.object + gt_offset(&gt, "module", "state"),
            &state.to_le_bytes(),
        );
    }
}

/// The first text symbol of a module in the guest's kallsyms.
fn module_text_symbol(module: &str) -> u64 {
    let syms = support::fixture::guest_module_symbols(FIXTURE);
    syms[module]
        .iter()
        .filter(|s| matches!(s.0, 't' | 'T'))
        .map(|s| s.2)
        .min()
        .unwrap()
}

fn opts() -> GuardOptions {
    GuardOptions {
        run: run_opts(),
        ..GuardOptions::default()
    }
}

fn hex(v: u64) -> String {
    format!("{v:#x}")
}

#[test]
fn register_policies_refuse_each_attack_and_keep_the_state() {
    let f = fixture();
    let (mut guard, alerts) = f.guard(&["cr0-wp", "cr4", "msr"], opts());
    // Register-only policies protect no memory: no view.
    assert_eq!(guard.view(), None);
    let regs0 = f.sim.registers(VcpuId(0)).unwrap();
    let v1 = VcpuId(f.vcpus - 1);
    let (cr0, cr4) = (regs0.cr0, regs0.cr4);
    let evil = 0xffff_ffff_c041_c000;
    let before = f.outcomes().len();
    let attacks = [
        GuestAction::WriteCr {
            vcpu: v1,
            register: ControlRegister::Cr0,
            value: cr0 & !Cr0::WP.bits(),
        },
        GuestAction::WriteCr {
            vcpu: v1,
            register: ControlRegister::Cr4,
            value: cr4 & !(Cr4::SMEP | Cr4::SMAP).bits(),
        },
        GuestAction::WriteCr {
            vcpu: VcpuId(0),
            register: ControlRegister::Cr4,
            value: cr4 & !Cr4::UMIP.bits(),
        },
        GuestAction::WriteMsr {
            vcpu: VcpuId(0),
            index: MSR_LSTAR,
            value: evil,
        },
        GuestAction::WriteMsr {
            vcpu: v1,
            index: MSR_CSTAR,
            value: evil + 0x40,
        },
        GuestAction::WriteMsr {
            vcpu: v1,
            index: MSR_SYSENTER_EIP,
            value: evil + 0x80,
        },
        GuestAction::WriteMsr {
            vcpu: v1,
            index: MSR_SYSENTER_ESP,
            value: 0xffff_c900_dead_0000,
        },
        GuestAction::WriteMsr {
            vcpu: VcpuId(0),
            index: MSR_EFER,
            value: f.sim.state().msr(VcpuId(0), MSR_EFER).unwrap() & !EFER_NXE,
        },
    ];
    f.sim.script(attacks.clone());
    let stats = guard.run().unwrap();
    guard.teardown().unwrap();
    f.assert_clean();

    // vCPUs run their actions interleaved: compare in a fixed order.
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    let outcomes = f.outcomes()[before..]
        .iter()
        .map(|o| format!("{o:?}"))
        .collect();
    let want = attacks
        .iter()
        .cloned()
        .map(|a| format!("{:?}", Outcome::Denied(a)))
        .collect();
    assert_eq!(sorted(outcomes), sorted(want));
    assert_eq!(stats.denied, attacks.len() as u64);
    let a = alerts.borrow().clone();
    let mut got: Vec<(&str, &str, Option<u32>)> = a
        .iter()
        .map(|a| (a.what.as_str(), a.policy.as_str(), a.vcpu))
        .collect();
    got.sort();
    let last = Some(v1.0);
    let mut want = vec![
        ("cr0_wp_clear", "cr0-wp", last),
        ("cr4_smep_smap_clear", "cr4", last),
        ("cr4_umip_clear", "cr4", Some(0)),
        ("msr_lstar_write", "msr", Some(0)),
        ("msr_cstar_write", "msr", last),
        ("msr_sysenter_eip_write", "msr", last),
        ("msr_sysenter_esp_write", "msr", last),
        ("efer_nxe_clear", "msr", Some(0)),
    ];
    want.sort();
    assert_eq!(got, want);
    assert!(a.iter().all(|a| a.response == Given::Denied));
    // Old and new values are the guest's and the script's.
    let by = |w: &str| a.iter().find(|a| a.what == w).unwrap();
    let wp = by("cr0_wp_clear");
    assert_eq!(
        (wp.attempt.old, wp.attempt.new),
        (Some(cr0), Some(cr0 & !Cr0::WP.bits()))
    );
    let lstar = by("msr_lstar_write");
    assert_eq!(lstar.attempt.old, Some(f.sym["entry_SYSCALL_64"]));
    assert_eq!(lstar.attempt.new, Some(evil));
    let j = lstar.to_json();
    assert_eq!(j["old"], hex(f.sym["entry_SYSCALL_64"]));
    assert_eq!(j["action"], "denied");
    assert_eq!(j["schema"], 1);

    // The guest's state is intact.
    let st = f.sim.state();
    for v in 0..f.vcpus {
        let r = f.sim.registers(VcpuId(v)).unwrap();
        assert_eq!(r.cr0 & Cr0::WP.bits(), Cr0::WP.bits());
        assert_eq!(r.cr4 & SMEP_SMAP_UMIP, SMEP_SMAP_UMIP);
        assert_eq!(
            st.msr(VcpuId(v), MSR_LSTAR),
            Some(f.sym["entry_SYSCALL_64"])
        );
        assert_eq!(
            st.msr(VcpuId(v), MSR_CSTAR),
            Some(f.sym["entry_SYSCALL_compat"])
        );
        assert_eq!(
            st.msr(VcpuId(v), MSR_SYSENTER_EIP),
            Some(f.sym["entry_SYSENTER_compat"])
        );
        assert_eq!(
            st.msr(VcpuId(v), MSR_EFER).map(|e| e & EFER_NXE),
            Some(EFER_NXE)
        );
    }
}

#[test]
fn allowed_register_writes_happen_and_are_reported() {
    let f = fixture();
    let mut set = PolicySet::new();
    let allow = PolicyOptions {
        remediation: Remediation::allow(),
        ..PolicyOptions::default()
    };
    set.add("cr4", &allow).unwrap();
    let (alerts, sink) = collector();
    let mut guard = Guard::new(&f.sim, &f.linux, set, sink, opts()).unwrap();
    let cr4 = f.sim.registers(VcpuId(0)).unwrap().cr4;
    let attack = GuestAction::WriteCr {
        vcpu: VcpuId(0),
        register: ControlRegister::Cr4,
        value: cr4 & !Cr4::SMEP.bits(),
    };
    f.sim.script([attack.clone()]);
    guard.run().unwrap();
    drop(guard);
    f.assert_clean();
    assert_eq!(f.outcomes().last(), Some(&Outcome::Done(attack)));
    let a = alerts.borrow();
    assert_eq!(a.len(), 1);
    assert_eq!(
        (a[0].what.as_str(), a[0].response),
        ("cr4_smep_clear", Given::Allowed)
    );
    assert_eq!(
        f.sim.registers(VcpuId(0)).unwrap().cr4 & Cr4::SMEP.bits(),
        0
    );
}

#[test]
fn kernel_text_and_rodata_writes_are_refused_and_the_kernels_own_patching_goes_through() {
    let f = fixture();
    let (mut guard, alerts) = f.guard(&["kernel-text"], opts());
    let view = guard.view().unwrap();
    assert_ne!(view, ViewId::HOST);
    // _text .. _etext and __start_rodata .. __end_rodata, in pages (ground truth: kallsyms).
    let pages = |a: &str, b: &str| f.sym[b].div_ceil(0x1000) - f.sym[a] / 0x1000;
    assert_eq!(
        guard.protected_pages() as u64,
        pages("_text", "_etext") + pages("__start_rodata", "__end_rodata")
    );
    let getpid = f.image_gpa(f.sym["__x64_sys_getpid"]);
    // sys_call_table[__NR_getpid = 39].
    let slot = f.image_gpa(f.sym["sys_call_table"] + 39 * 8);
    let text_before = f.read(getpid, 16);
    let slot_before = f.read(slot, 8);
    let v1 = f.vcpus - 1;
    // An attacker's code: a module address outside the kernel image.
    f.set_rip(v1, 0xffff_ffff_c041_c123);
    let before = f.outcomes().len();
    let attacks = [
        GuestAction::Write {
            vcpu: VcpuId(v1),
            gpa: getpid,
            bytes: vec![0xe9, 1, 2, 3, 4],
        },
        GuestAction::Write {
            vcpu: VcpuId(v1),
            gpa: slot,
            bytes: 0xffff_ffff_c041_c000u64.to_le_bytes().to_vec(),
        },
    ];
    f.sim.script(attacks.clone());
    guard.run().unwrap();
    // The kernel's jump-label patch: __text_poke writing (rip inside it), and memcpy called
    // from it (the return address at [rsp]); the alias address does not matter, the frame does.
    let poke = f.sym["__text_poke"];
    let patch_a = f.image_gpa(f.sym["__x64_sys_getpid"] + 8);
    f.set_rip(0, poke + 0x10);
    f.sim.script([GuestAction::Write {
        vcpu: VcpuId(0),
        gpa: patch_a,
        bytes: vec![0x0f, 0x1f, 0x44, 0, 0],
    }]);
    guard.run().unwrap();
    let mut r = f.sim.registers(VcpuId(v1)).unwrap();
    assert_eq!(r.cs_sel & 3, 0, "vCPU {v1} runs the kernel in the dump");
    let space = AddressSpace::from_cr3(r.cr3, f.linux.info().paging);
    let mem = GuestMemory::new(&f.sim);
    let ret_slot = mem.translate_mapped(space, Gva(r.rsp)).unwrap();
    let saved = f.read(ret_slot, 8);
    f.sim
        .write_physical(ret_slot, &(poke + 0x1a2).to_le_bytes())
        .unwrap();
    r.rip = f.sym["memcpy"] + 3;
    f.sim.set_registers(VcpuId(v1), &r).unwrap();
    let patch_b = f.image_gpa(f.sym["__x64_sys_getpid"] + 16);
    let kernel_patch = GuestAction::Write {
        vcpu: VcpuId(v1),
        gpa: patch_b,
        bytes: vec![0x66, 0x90],
    };
    f.sim.script([kernel_patch.clone()]);
    guard.run().unwrap();
    // memcpy called from anywhere else is not the kernel's patching.
    f.sim
        .write_physical(ret_slot, &(f.sym["__x64_sys_getpid"] + 5).to_le_bytes())
        .unwrap();
    let forged = GuestAction::Write {
        vcpu: VcpuId(v1),
        gpa: patch_b,
        bytes: vec![0xcc, 0xcc],
    };
    f.sim.script([forged.clone()]);
    let stats = guard.run().unwrap();
    guard.teardown().unwrap();
    f.sim.write_physical(ret_slot, &saved).unwrap();
    f.assert_clean();

    let o = &f.outcomes()[before..];
    assert_eq!(o.len(), 5);
    // `Emulated(_, true)`: emulated with the write discarded.
    assert_eq!(o[0], Outcome::Emulated(attacks[0].clone(), true));
    assert_eq!(o[1], Outcome::Emulated(attacks[1].clone(), true));
    assert!(matches!(&o[2], Outcome::Emulated(_, false)), "{:?}", o[2]);
    assert_eq!(o[3], Outcome::Emulated(kernel_patch, false));
    assert_eq!(o[4], Outcome::Emulated(forged, true));
    assert_eq!(stats.legitimate_writes, 2);
    // Attacks changed nothing; the kernel's patches are in place.
    assert_eq!(f.read(getpid, 5), text_before[..5]);
    assert_eq!(f.read(slot, 8), slot_before);
    assert_eq!(f.read(patch_a, 5), [0x0f, 0x1f, 0x44, 0, 0]);
    assert_eq!(f.read(patch_b, 2), [0x66, 0x90]);

    let a = alerts.borrow();
    let what: Vec<&str> = a.iter().map(|a| a.what.as_str()).collect();
    assert_eq!(
        what,
        [
            "kernel_text_write",
            "kernel_rodata_write",
            "kernel_text_write"
        ]
    );
    // Aliases share the address (__do_sys_getpid is inlined at __x64_sys_getpid): any name
    // the guest's kallsyms lists there.
    let named = |s: &Option<String>, addr: u64| {
        let s = s.as_deref().unwrap();
        f.sym
            .iter()
            .any(|(n, &a)| a == addr && s == format!("{n}+0x0"))
    };
    assert!(
        named(&a[0].attempt.symbol, f.sym["__x64_sys_getpid"]),
        "{:?}",
        a[0].attempt.symbol
    );
    assert_eq!(a[0].attempt.address, Some(getpid.0));
    assert_eq!(
        a[0].attempt.virtual_address,
        Some(f.sym["__x64_sys_getpid"])
    );
    assert_eq!(a[0].attempt.rip, 0xffff_ffff_c041_c123);
    assert_eq!(a[1].attempt.symbol.as_deref(), Some("sys_call_table+0x138"));
    assert_eq!(a[1].attempt.target.as_deref(), Some("kernel_rodata"));
    assert_eq!(a[2].attempt.rip_symbol.as_deref(), Some("__memcpy+0x3"));
    assert!(a
        .iter()
        .all(|a| a.response == Given::Denied && a.policy == "kernel-text"));
}

#[test]
fn modprobe_path_and_core_pattern_are_kept_and_their_neighbours_written() {
    let f = fixture();
    let (mut guard, alerts) = f.guard(
        &["modprobe-path", "core-pattern"],
        GuardOptions {
            view: ViewMode::Host,
            ..opts()
        },
    );
    assert_eq!(guard.view(), Some(ViewId::HOST));
    let space = f.linux.info().kernel_space;
    let mem = GuestMemory::new(&f.sim);
    let gpa = |n: &str| mem.translate_mapped(space, Gva(f.sym[n])).unwrap();
    let (mp, cp) = (gpa("modprobe_path"), gpa("core_pattern"));
    let mp_before = f.read(mp, 256);
    let cp_before = f.read(cp, 128);
    // The kernel's defaults (CONFIG_MODPROBE_PATH, fs/coredump.c).
    assert!(mp_before.starts_with(b"/sbin/modprobe\0"));
    assert!(cp_before.starts_with(b"core\0"));
    // Another variable on modprobe_path's page, before it.
    let neighbour = Gpa(mp.0 & !0xfff);
    assert!(f.sym["modprobe_path"] & 0xfff >= 8);
    f.set_rip(0, 0xffff_ffff_c041_c123);
    let before = f.outcomes().len();
    let script = [
        GuestAction::Write {
            vcpu: VcpuId(0),
            gpa: mp,
            bytes: b"/tmp/x\0".to_vec(),
        },
        GuestAction::Write {
            vcpu: VcpuId(0),
            gpa: Gpa(cp.0 + 4),
            bytes: b"|/tmp/y\0".to_vec(),
        },
        GuestAction::Write {
            vcpu: VcpuId(0),
            gpa: neighbour,
            bytes: vec![1, 2, 3, 4],
        },
    ];
    f.sim.script(script.clone());
    guard.run().unwrap();
    drop(guard);
    f.assert_clean();
    let o = &f.outcomes()[before..];
    assert_eq!(
        o,
        [
            Outcome::Emulated(script[0].clone(), true),
            Outcome::Emulated(script[1].clone(), true),
            Outcome::Emulated(script[2].clone(), false),
        ]
    );
    assert_eq!(f.read(mp, 256), mp_before);
    assert_eq!(f.read(cp, 128), cp_before);
    assert_eq!(f.read(neighbour, 4), [1, 2, 3, 4]);
    let a = alerts.borrow();
    let got: Vec<(&str, &str, Option<&str>)> = a
        .iter()
        .map(|a| {
            (
                a.what.as_str(),
                a.policy.as_str(),
                a.attempt.symbol.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                "modprobe_path_write",
                "modprobe-path",
                Some("modprobe_path+0x0")
            ),
            (
                "core_pattern_write",
                "core-pattern",
                Some("core_pattern+0x4")
            ),
        ]
    );
}

#[test]
fn idt_writes_are_refused_and_descriptor_loads_reported() {
    let f = fixture();
    let regs: Vec<Registers> = (0..f.vcpus)
        .map(|v| f.sim.registers(VcpuId(v)).unwrap())
        .collect();
    let idt = regs[0].idtr_base;
    assert_ne!(idt, 0, "the dump records the IDT base");
    // Linux loads the cpu_entry_area alias of idt_table; its frame is idt_table's.
    let mem = GuestMemory::new(&f.sim);
    let space = f.linux.info().kernel_space;
    let frame = mem.translate_mapped(space, Gva(idt)).unwrap();
    assert_eq!(
        frame,
        mem.translate_mapped(space, Gva(f.sym["idt_table"]))
            .unwrap()
    );
    let (mut guard, alerts) = f.guard(&["descriptor-tables"], opts());
    // Vector 14 (#PF): 16-byte gates.
    let gate = Gpa(frame.0 + 14 * 16);
    let before_bytes = f.read(gate, 16);
    f.set_rip(0, 0xffff_ffff_c041_c123);
    let before = f.outcomes().len();
    let attack = GuestAction::Write {
        vcpu: VcpuId(0),
        gpa: gate,
        bytes: vec![0x41; 8],
    };
    f.sim.script([attack.clone()]);
    guard.run().unwrap();
    drop(guard);
    f.assert_clean();
    assert_eq!(f.outcomes()[before..], [Outcome::Emulated(attack, true)]);
    assert_eq!(f.read(gate, 16), before_bytes);
    let a = alerts.borrow();
    assert_eq!(a.len(), 1);
    assert_eq!(
        (a[0].what.as_str(), a[0].attempt.address),
        ("idt_write", Some(gate.0))
    );

    // A LIDT: the simulated guest cannot execute one, so the policy decides on the event Xen
    // sends (reason 13, IDTR, a load).
    let mut p = DescriptorTablePolicy::new(false, Remediation::deny());
    let mem: GuestMemory<&dyn PhysicalMemory> = GuestMemory::new(&f.sim as &dyn PhysicalMemory);
    let guest = Guest {
        linux: &f.linux,
        mem: &mem,
        baseline: &regs,
    };
    p.plan(&guest).unwrap();
    let load = |descriptor, is_write| {
        Event::new(
            VcpuId(0),
            None,
            true,
            EventKind::DescriptorAccess {
                descriptor,
                is_write,
                instr_info: 0,
                exit_qualification: 0,
            },
            regs[0],
        )
    };
    let Decision::Violation(v) = p.decide(&guest, &load(1, true)) else {
        panic!("LIDT not reported")
    };
    assert_eq!(
        (v.what.as_str(), v.attempt.old, v.deniable),
        ("idt_load", Some(idt), false)
    );
    assert_eq!(p.decide(&guest, &load(1, false)), Decision::Legitimate); // SIDT
    assert_eq!(p.decide(&guest, &load(2, true)), Decision::Legitimate); // LGDT, GDT not asked for
}

#[test]
fn a_clean_run_of_benign_activity_raises_no_alert() {
    let f = fixture();
    let (mut guard, alerts) = f.guard(xenvmi::policy::POLICY_NAMES, opts());
    let r0 = f.sim.registers(VcpuId(0)).unwrap();
    let getpid = f.image_gpa(f.sym["__x64_sys_getpid"]);
    let text_before = f.read(getpid, 16);
    let v1 = VcpuId(f.vcpus - 1);
    let before = f.outcomes().len();
    let benign = vec![
        GuestAction::Read {
            vcpu: VcpuId(0),
            gpa: getpid,
        },
        GuestAction::Execute {
            vcpu: v1,
            gpa: getpid,
        },
        // PGE toggled (a TLB flush), TS set (lazy FPU), both leave the pinned bits alone.
        GuestAction::WriteCr {
            vcpu: VcpuId(0),
            register: ControlRegister::Cr4,
            value: r0.cr4 ^ 0x80,
        },
        GuestAction::WriteCr {
            vcpu: v1,
            register: ControlRegister::Cr0,
            value: r0.cr0 | 8,
        },
        GuestAction::WriteCr {
            vcpu: v1,
            register: ControlRegister::Cr3,
            value: r0.cr3,
        },
        // A CPU brought up again: syscall_init writes the same entry points.
        GuestAction::WriteMsr {
            vcpu: v1,
            index: MSR_LSTAR,
            value: f.sym["entry_SYSCALL_64"],
        },
        GuestAction::WriteMsr {
            vcpu: v1,
            index: MSR_EFER,
            value: f.sim.state().msr(v1, MSR_EFER).unwrap() | 1,
        },
        GuestAction::Cpuid {
            vcpu: VcpuId(0),
            leaf: 7,
        },
        // Ordinary kernel data (the page of init_task) is not protected.
        GuestAction::Write {
            vcpu: VcpuId(0),
            gpa: f.image_gpa(f.sym["init_task"]),
            bytes: vec![0],
        },
        // A module's text read and run, its data (its struct module) written.
        GuestAction::Read {
            vcpu: VcpuId(0),
            gpa: f.kva_gpa(module_text_symbol("dummy")),
        },
        GuestAction::Execute {
            vcpu: v1,
            gpa: f.kva_gpa(module_text_symbol("dummy")),
        },
        GuestAction::Write {
            vcpu: v1,
            gpa: f.kva_gpa(f.gt_modules()[0].object),
            bytes: vec![0],
        },
    ];
    f.sim.script(benign.clone());
    let stats = guard.run().unwrap();
    guard.teardown().unwrap();
    f.assert_clean();
    assert!(alerts.borrow().is_empty(), "{:?}", alerts.borrow());
    assert_eq!(stats.alerts, 0);
    eprintln!(
        "clean run, all policies: {} events, {:.1?} mean, {:.1?} slowest per event",
        stats.run.events,
        stats.run.mean(),
        stats.run.slowest
    );
    assert_eq!(f.read(getpid, 16), text_before);
    let o = &f.outcomes()[before..];
    assert_eq!(o.len(), benign.len());
    assert!(
        o.iter()
            .all(|o| matches!(o, Outcome::Done(_) | Outcome::Read(..))),
        "{o:?}"
    );
}

/// A fresh empty directory for captures.
fn temp_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("xenvmi-policy-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn remediation_pauses_captures_and_resumes() {
    let f = fixture();
    let dir = temp_dir("capture");
    let mut set = PolicySet::new();
    let o = PolicyOptions {
        remediation: Remediation::parse("deny,pause,capture,resume").unwrap(),
        ..PolicyOptions::default()
    };
    set.add("cr4", &o).unwrap();
    let (alerts, sink) = collector();
    let gopts = GuardOptions {
        capture_dir: Some(dir.clone()),
        vm: xenvmi::alert::Vm {
            name: Some("guest-a".into()),
            uuid: None,
            domid: Some(7),
        },
        ..opts()
    };
    let mut guard = Guard::new(&f.sim, &f.linux, set, sink, gopts).unwrap();
    let cr4 = f.sim.registers(VcpuId(0)).unwrap().cr4;
    f.sim.script([GuestAction::WriteCr {
        vcpu: VcpuId(0),
        register: ControlRegister::Cr4,
        value: cr4 & !Cr4::SMAP.bits(),
    }]);
    let stats = guard.run().unwrap();
    assert!(!stats.domain_paused);
    assert_eq!(f.sim.state().pause_count(), 0);
    drop(guard);
    f.assert_clean();
    let a = alerts.borrow();
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].remediation, ["paused", "captured_paused", "resumed"]);
    assert_eq!(a[0].vm.domid, Some(7));
    let path = std::path::PathBuf::from(a[0].capture.as_deref().unwrap());
    assert_eq!(stats.captures, std::slice::from_ref(&path));
    let held = stats.longest_capture_pause.unwrap();
    eprintln!(
        "remediation capture of the {} MiB guest held it paused {held:.2?}",
        f.sim
            .physical_ranges()
            .iter()
            .map(|r| r.end - r.start)
            .sum::<u64>()
            >> 20
    );
    // The capture is the guest at the moment of the attack, refused: SMAP still set, and the
    // kernel found in it again.
    let snap = Snapshot::open(&path).unwrap();
    let regs = snap.all_registers().to_vec();
    assert_eq!(regs.len(), f.vcpus as usize);
    assert_eq!(regs[0].cr4 & Cr4::SMAP.bits(), Cr4::SMAP.bits());
    let mem = GuestMemory::new(snap);
    let linux = Linux::discover(&mem, &regs, ProfileSource::InGuest).unwrap();
    assert_eq!(linux.info().release, f.linux.info().release);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_pause_without_resume_ends_monitoring_and_holds_the_domain_until_released() {
    let f = fixture();
    let mut set = PolicySet::new();
    let o = PolicyOptions {
        remediation: Remediation::parse("deny,pause").unwrap(),
        ..PolicyOptions::default()
    };
    set.add("msr", &o).unwrap();
    let (alerts, sink) = collector();
    let mut guard = Guard::new(&f.sim, &f.linux, set, sink, opts()).unwrap();
    f.sim.script([
        GuestAction::WriteMsr {
            vcpu: VcpuId(0),
            index: MSR_LSTAR,
            value: 0xffff_ffff_c041_c000,
        },
        GuestAction::Cpuid {
            vcpu: VcpuId(0),
            leaf: 0,
        },
    ]);
    let stats = guard.run().unwrap();
    assert!(stats.domain_paused);
    assert_eq!(f.sim.state().pause_count(), 1);
    assert_eq!(alerts.borrow()[0].remediation, ["paused"]);
    guard.resume_domain().unwrap();
    assert_eq!(f.sim.state().pause_count(), 0);
    drop(guard);
    f.assert_clean();
    // Dropped while paused: released too.
    let mut set = PolicySet::new();
    set.add("msr", &o).unwrap();
    let (_, sink) = collector();
    let mut guard = Guard::new(&f.sim, &f.linux, set, sink, opts()).unwrap();
    f.sim.script([GuestAction::WriteMsr {
        vcpu: VcpuId(0),
        index: MSR_CSTAR,
        value: 1,
    }]);
    assert!(guard.run().unwrap().domain_paused);
    drop(guard);
    f.assert_clean();
}

#[test]
fn bad_configuration_is_refused_before_monitoring_starts() {
    let f = fixture();
    let e = PolicySet::from_names(["cr4", "no-such-policy"], &PolicyOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("policy \"no-such-policy\": unknown policy"),
        "{e}"
    );
    // A capture with nowhere to go, or into a missing directory.
    for dir in [None, Some(std::path::PathBuf::from("/nonexistent/xenvmi"))] {
        let o = PolicyOptions {
            remediation: Remediation::parse("deny,capture").unwrap(),
            ..PolicyOptions::default()
        };
        let set = PolicySet::from_names(["kernel-text", "cr4"], &o).unwrap();
        let (_, sink) = collector();
        let e = Guard::new(
            &f.sim,
            &f.linux,
            set,
            sink,
            GuardOptions {
                capture_dir: dir.clone(),
                ..opts()
            },
        )
        .unwrap_err();
        assert!(matches!(e, xenvmi::Error::Config { .. }), "{e}");
        let st = f.sim.state();
        // Untouched: no monitor, no view, no restriction (no session was opened).
        assert!(
            st.monitors().is_empty() && st.restrictions() == 0 && st.extra_views().is_empty(),
            "{e}"
        );
    }
    let (_, sink) = collector();
    let e = Guard::new(&f.sim, &f.linux, PolicySet::new(), sink, opts()).unwrap_err();
    assert_eq!(e.to_string(), "policy set: no policies");
    // A syslog target that cannot be reached: refused when the sink is made, before a guard.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let target = format!("tcp://127.0.0.1:{port}");
    let e = xenvmi::alert::syslog::Syslog::connect(&target)
        .unwrap_err()
        .to_string();
    assert!(e.starts_with(&format!("syslog target {target:?}: ")), "{e}");
    for bad in [
        "127.0.0.1:514",
        "smtp://127.0.0.1:25",
        "udp://127.0.0.1",
        "udp://no-such-host.invalid:514",
    ] {
        let e = xenvmi::alert::syslog::Syslog::connect(bad)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with(&format!("syslog target {bad:?}: ")), "{e}");
    }
}

#[test]
fn a_process_unlinked_from_the_task_list_is_found_by_its_cr3() {
    use xenvmi::policy::HiddenProcessPolicy;
    let f = fixture();
    let mem = GuestMemory::new(&f.sim);
    let procs: Vec<_> = f.linux.processes(&mem).filter_map(Result::ok).collect();
    // The ground truth's long-lived `sleep 999999` is the rootkit's victim; init stays visible.
    let victim = procs.iter().find(|p| p.name == "sleep").unwrap().clone();
    let init = procs.iter().find(|p| p.pid == 1).unwrap().clone();
    let gt = support::fixture::ground_truth(FIXTURE);
    assert!(gt["processes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["comm"] == "sleep" && p["pid"] == victim.pid));
    let mut set = PolicySet::new();
    set.push(Box::new(
        HiddenProcessPolicy::new(Remediation::deny()).refreshing_every(Duration::ZERO),
    ))
    .unwrap();
    let (alerts, sink) = collector();
    let mut guard = Guard::new(&f.sim, &f.linux, set, sink, opts()).unwrap();
    let switch = |p: &xenvmi::os::Process| GuestAction::WriteCr {
        vcpu: VcpuId(0),
        register: ControlRegister::Cr3,
        value: p.dtb.unwrap().0,
    };
    // Visible: no alert.
    f.sim.script([switch(&victim), switch(&init)]);
    guard.run().unwrap();
    assert!(alerts.borrow().is_empty(), "{:?}", alerts.borrow());
    // DKOM: tasks.prev->next = tasks.next; tasks.next->prev = tasks.prev.
    let ks = f.linux.info().kernel_space;
    let tasks = Gva(victim.object.0 + f.linux.offsets().task_tasks);
    let next = mem.read_u64(ks, tasks).unwrap();
    let prev = mem.read_u64(ks, Gva(tasks.0 + 8)).unwrap();
    let pa = |va: u64| mem.translate_mapped(ks, Gva(va)).unwrap();
    f.sim.write_physical(pa(prev), &next.to_le_bytes()).unwrap();
    f.sim
        .write_physical(pa(next + 8), &prev.to_le_bytes())
        .unwrap();
    mem.flush_translations();
    assert!(!f
        .linux
        .processes(&mem)
        .filter_map(Result::ok)
        .any(|p| p.pid == victim.pid));
    f.sim
        .script([switch(&victim), switch(&init), switch(&victim)]);
    guard.run().unwrap();
    drop(guard);
    f.assert_clean();
    let a = alerts.borrow();
    assert_eq!(a.len(), 1, "reported once: {a:?}");
    assert_eq!(
        (a[0].what.as_str(), a[0].response),
        ("hidden_process", Given::Reported)
    );
    assert_eq!(a[0].attempt.new, victim.dtb.map(|d| d.0));
    // The CR3 loads themselves went through.
    assert_eq!(
        f.sim.registers(VcpuId(0)).unwrap().cr3,
        victim.dtb.unwrap().0
    );
}

#[test]
fn module_text_writes_are_refused_and_the_kernels_own_patching_goes_through() {
    let f = fixture();
    let mods = f.gt_modules();
    assert_eq!(mods.len(), 9, "the fixture's nine modules are live");
    let (mut guard, alerts) = f.guard(&["module-text"], opts());
    // Every page of every live module's text, and nothing else.
    let expected: u64 = mods.iter().map(GtModule::pages).sum();
    assert_eq!(guard.protected_pages() as u64, expected);
    for m in &mods {
        for g in f.text_frames(m) {
            assert!(guard.is_protected(g.gfn()), "{} at {g:?}", m.name);
        }
    }
    let syms = support::fixture::guest_module_symbols(FIXTURE);
    let sym = |module: &str, name: &str| {
        syms[module]
            .iter()
            .find(|s| s.1 == name)
            .unwrap_or_else(|| panic!("{name} [{module}]"))
            .2
    };
    let dummy = mods.iter().find(|m| m.name == "dummy").unwrap();
    let xmit = sym("dummy", "dummy_xmit");
    let target = f.kva_gpa(xmit);
    let before = f.read(target, 8);
    let v1 = f.vcpus - 1;
    // An attacker's code in another module.
    let attacker = module_text_symbol("crc_itu_t") + 0x23;
    f.set_rip(v1, attacker);
    let first = f.outcomes().len();
    let attack = GuestAction::Write {
        vcpu: VcpuId(v1),
        gpa: target,
        bytes: vec![0xc3, 0x90],
    };
    f.sim.script([attack.clone()]);
    guard.run().unwrap();
    // A static key flipped in the module: __text_poke writes through its alias.
    let validate = f.kva_gpa(sym("dummy", "dummy_validate"));
    f.set_rip(0, f.sym["__text_poke"] + 0x10);
    let patch = GuestAction::Write {
        vcpu: VcpuId(0),
        gpa: validate,
        bytes: vec![0x0f, 0x1f, 0x44, 0, 0],
    };
    f.sim.script([patch.clone()]);
    let stats = guard.run().unwrap();
    guard.teardown().unwrap();
    f.assert_clean();

    assert_eq!(
        f.outcomes()[first..],
        [
            Outcome::Emulated(attack, true),
            Outcome::Emulated(patch, false)
        ]
    );
    assert_eq!(f.read(target, 8), before);
    assert_eq!(f.read(validate, 5), [0x0f, 0x1f, 0x44, 0, 0]);
    assert_eq!(stats.legitimate_writes, 1);
    let a = alerts.borrow();
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(a[0].what, "module_text_write");
    assert_eq!(a[0].policy, "module-text");
    assert_eq!(a[0].response, Given::Denied);
    assert_eq!(a[0].attempt.target.as_deref(), Some("module_text"));
    assert_eq!(
        a[0].attempt.symbol.as_deref(),
        Some(format!("dummy+{:#x}", xmit - dummy.base).as_str())
    );
    assert_eq!(a[0].attempt.address, Some(target.0));
    assert_eq!(a[0].attempt.virtual_address, Some(xmit));
    assert_eq!(a[0].attempt.rip, attacker);
}

#[test]
fn module_text_protection_follows_modules_as_they_come_and_go() {
    let f = fixture();
    let mods = f.gt_modules();
    let by_name = |n: &str| mods.iter().find(|m| m.name == n).unwrap();
    let (dummy, crc7) = (by_name("dummy"), by_name("crc7"));
    let o = GuardOptions {
        refresh_interval: Duration::from_secs(3600),
        ..opts()
    };
    // Two policies: the module frames are counted apart from the kernel's.
    let (mut guard, alerts) = f.guard(&["kernel-text", "module-text"], o);
    let total = guard.protected_pages();
    let dummy_frames = f.text_frames(dummy);
    let v1 = VcpuId(f.vcpus - 1);
    f.set_rip(v1.0, module_text_symbol("crc_itu_t") + 0x23);
    let first = f.outcomes().len();

    // rmmod dummy: unlinked, then (here) refreshed: its frames are released.
    let undo = f.unlink(dummy);
    guard.refresh().unwrap();
    assert_eq!(guard.protected_pages() as u64, total as u64 - dummy.pages());
    assert!(dummy_frames.iter().all(|g| !guard.is_protected(g.gfn())));
    let reuse = GuestAction::Write {
        vcpu: v1,
        gpa: Gpa(dummy_frames[0].0 + 0x10),
        bytes: vec![0xcc],
    };
    f.sim.script([reuse.clone()]);
    guard.run().unwrap();
    assert_eq!(f.read(Gpa(dummy_frames[0].0 + 0x10), 1), [0xcc]);

    // insmod: back in the list while COMING (the loader still patches it): not protected;
    // LIVE: protected again.
    f.relink(undo);
    f.set_module_state(dummy, 1);
    guard.refresh().unwrap();
    assert!(dummy_frames.iter().all(|g| !guard.is_protected(g.gfn())));
    f.set_module_state(dummy, 0);
    guard.refresh().unwrap();
    assert_eq!(guard.protected_pages(), total);
    assert!(dummy_frames.iter().all(|g| guard.is_protected(g.gfn())));
    let attack = GuestAction::Write {
        vcpu: v1,
        gpa: Gpa(dummy_frames[0].0 + 0x20),
        bytes: vec![0xcc],
    };
    let attack_before = f.read(Gpa(dummy_frames[0].0 + 0x20), 1);
    f.sim.script([attack.clone()]);
    guard.run().unwrap();
    assert_eq!(f.read(Gpa(dummy_frames[0].0 + 0x20), 1), attack_before);

    // crc7 unloaded and its memory reused before the next refresh (the vfree race): the
    // write is let through without an alert and the frame released at once.
    let crc7_frames = f.text_frames(crc7);
    f.unlink(crc7);
    let race = GuestAction::Write {
        vcpu: v1,
        gpa: Gpa(crc7_frames[0].0 + 0x8),
        bytes: vec![0x5a],
    };
    f.sim.script([race.clone()]);
    let stats = guard.run().unwrap();
    assert!(crc7_frames.iter().all(|g| !guard.is_protected(g.gfn())));
    assert_eq!(guard.protected_pages() as u64, total as u64 - crc7.pages());
    assert_eq!(f.read(Gpa(crc7_frames[0].0 + 0x8), 1), [0x5a]);
    guard.teardown().unwrap();
    // Every frame's access restored, those protected mid-session too.
    f.assert_clean();

    assert_eq!(
        f.outcomes()[first..],
        [
            Outcome::Done(reuse),
            Outcome::Emulated(attack, true),
            Outcome::Emulated(race, false)
        ]
    );
    assert_eq!(stats.frames_released, dummy.pages() + crc7.pages());
    assert_eq!(stats.frames_protected, dummy.pages());
    let a = alerts.borrow();
    assert_eq!(a.len(), 1, "{a:?}");
    // dummy's text starts on a page (ground truth: its base).
    assert_eq!(dummy.base % 0x1000, 0);
    assert_eq!(a[0].attempt.symbol.as_deref(), Some("dummy+0x20"));

    // In the host view, with refreshes as often as the loop allows: unlinked modules are
    // released by `run` itself, before the write comes.
    let o = GuardOptions {
        view: ViewMode::Host,
        refresh_interval: Duration::ZERO,
        ..opts()
    };
    let (mut guard, alerts) = f.guard(&["module-text"], o);
    assert_eq!(guard.view(), Some(ViewId::HOST));
    let full = guard.protected_pages();
    f.unlink(dummy);
    let later = GuestAction::Write {
        vcpu: v1,
        gpa: Gpa(dummy_frames[1 % dummy_frames.len()].0 + 0x30),
        bytes: vec![0x11],
    };
    let first = f.outcomes().len();
    f.sim.script([later.clone()]);
    let stats = guard.run().unwrap();
    assert!(stats.refreshes > 0);
    assert_eq!(guard.protected_pages() as u64, full as u64 - dummy.pages());
    guard.teardown().unwrap();
    f.assert_clean();
    assert_eq!(f.outcomes()[first..], [Outcome::Done(later)]);
    assert!(alerts.borrow().is_empty());
}

#[test]
fn a_broken_module_list_releases_nothing() {
    let f = fixture();
    let mods = f.gt_modules();
    let o = GuardOptions {
        refresh_interval: Duration::from_secs(3600),
        ..opts()
    };
    let (mut guard, alerts) = f.guard(&["module-text"], o);
    let total = guard.protected_pages();
    let gt = support::fixture::ground_truth(FIXTURE);
    // dummy's list.next: the modules after it are out of reach.
    let dummy = mods.iter().find(|m| m.name == "dummy").unwrap();
    let next_at = dummy.object + gt_offset(&gt, "module", "list");
    let saved = f.read(f.kva_gpa(next_at), 8);
    // LIST_POISON1 (list_del's, non-canonical), then a cycle back to dummy itself.
    for bad in [0xdead_0000_0000_0100u64, next_at] {
        f.write_kva(next_at, &bad.to_le_bytes());
        guard.refresh().unwrap();
        assert_eq!(guard.protected_pages(), total, "next = {bad:#x}");
        for m in &mods {
            assert!(f.text_frames(m).iter().all(|g| guard.is_protected(g.gfn())));
        }
    }
    // A module after the break still raises its alert.
    let late = mods.last().unwrap();
    let v1 = VcpuId(f.vcpus - 1);
    f.set_rip(v1.0, module_text_symbol("crc_itu_t") + 0x23);
    f.sim.script([GuestAction::Write {
        vcpu: v1,
        gpa: f.text_frames(late)[0],
        bytes: vec![0xcc],
    }]);
    guard.run().unwrap();
    f.write_kva(next_at, &saved);
    guard.refresh().unwrap();
    assert_eq!(guard.protected_pages(), total);
    guard.teardown().unwrap();
    f.assert_clean();
    let a = alerts.borrow();
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(
        a[0].attempt.symbol.as_deref(),
        Some(format!("{}+0x0", late.name).as_str())
    );
}

/// The ground truth's module in the middle of the 6.1 list, as the list walk reads it: its
/// `struct module` address, and the guest-physical addresses of its `list` neighbours' links
/// with the values `list_del` writes there (prev->next = next, next->prev = prev).
fn unlink_plan(f: &Fixture) -> (xenvmi::os::Module, [(Gpa, u64); 2]) {
    let mem = GuestMemory::new(&f.sim);
    let gt = support::fixture::ground_truth(FIXTURE);
    let truth = gt["modules"].as_array().unwrap();
    let want = &truth[truth.len() / 2];
    let victim = f
        .linux
        .modules(&mem)
        .filter_map(Result::ok)
        .find(|m| m.name == want["name"].as_str().unwrap())
        .unwrap();
    assert_eq!(victim.base.0, support::fixture::hex(&want["base"]));
    let ks = f.linux.info().kernel_space;
    let node = Gva(victim.object.0 + f.linux.types().field("module", "list").unwrap().offset);
    let next = mem.read_u64(ks, node).unwrap();
    let prev = mem.read_u64(ks, Gva(node.0 + 8)).unwrap();
    let pa = |va: u64| mem.translate_mapped(ks, Gva(va)).unwrap();
    (victim, [(pa(prev), next), (pa(next + 8), prev)])
}

fn write_all(f: &Fixture, writes: &[(Gpa, u64)]) {
    for &(gpa, v) in writes {
        f.sim.write_physical(gpa, &v.to_le_bytes()).unwrap();
    }
}

/// CR3 writes on vCPU 0 switching between the first two user processes.
fn switches(f: &Fixture, n: usize) -> Vec<GuestAction> {
    let mem = GuestMemory::new(&f.sim);
    let dtbs: Vec<u64> = f
        .linux
        .processes(&mem)
        .filter_map(Result::ok)
        .filter_map(|p| p.dtb.map(|d| d.0))
        .take(2)
        .collect();
    (0..n)
        .map(|i| GuestAction::WriteCr {
            vcpu: VcpuId(0),
            register: ControlRegister::Cr3,
            value: dtbs[i % 2],
        })
        .collect()
}

#[test]
fn a_module_unlinked_from_the_module_list_is_reported_once_by_hidden_modules() {
    let f = fixture();
    let (victim, writes) = unlink_plan(&f);
    // By name, as `xenvmi guard --policies hidden-modules` and the C ABI build it (1 s interval).
    let (mut guard, alerts) = f.guard(&["hidden-modules"], opts());
    f.sim.script(switches(&f, 6));
    guard.run().unwrap();
    assert!(alerts.borrow().is_empty(), "clean: {:?}", alerts.borrow());
    write_all(&f, &writes);
    // Two checks, a second apart, must both see it hidden.
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(1050));
        f.sim.script(switches(&f, 4));
        guard.run().unwrap();
    }
    drop(guard);
    f.assert_clean();
    let a = alerts.borrow();
    assert_eq!(a.len(), 1, "reported once: {a:?}");
    assert_eq!(
        (a[0].what.as_str(), a[0].response),
        ("hidden_module", Given::Reported)
    );
    assert_eq!(a[0].attempt.target.as_deref(), Some(victim.name.as_str()));
    assert_eq!(a[0].attempt.virtual_address, Some(victim.object.0));
    assert_eq!(a[0].attempt.new, Some(victim.base.0));
    // The rest of the list is intact: the ground truth's modules but the victim, in order.
    let mem = GuestMemory::new(&f.sim);
    let gt = support::fixture::ground_truth(FIXTURE);
    let rest: Vec<&str> = gt["modules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .filter(|n| *n != victim.name)
        .collect();
    let listed: Vec<String> = f.linux.modules(&mem).map(|m| m.unwrap().name).collect();
    assert_eq!(listed, rest);
}

#[test]
fn hidden_modules_checks_at_most_once_an_interval_and_needs_two_sightings() {
    use xenvmi::policy::HiddenModulePolicy;
    let policy = |every| {
        let mut set = PolicySet::new();
        set.push(Box::new(
            HiddenModulePolicy::new(Remediation::deny()).refreshing_every(every),
        ))
        .unwrap();
        set
    };
    // An hour's interval: after the start and the first CR3 write, the module hidden since
    // is seen once, never confirmed.
    let f = fixture();
    let (_, writes) = unlink_plan(&f);
    let (alerts, sink) = collector();
    let mut guard = Guard::new(
        &f.sim,
        &f.linux,
        policy(Duration::from_secs(3600)),
        sink,
        opts(),
    )
    .unwrap();
    write_all(&f, &writes);
    f.sim.script(switches(&f, 8));
    guard.run().unwrap();
    drop(guard);
    f.assert_clean();
    assert!(alerts.borrow().is_empty(), "{:?}", alerts.borrow());

    // Every CR3 write checks: the first write after the unlink sees it once (no alert), the
    // second confirms it (one alert), later ones report nothing new.
    let f = fixture();
    let (victim, writes) = unlink_plan(&f);
    let (alerts, sink) = collector();
    let mut guard = Guard::new(&f.sim, &f.linux, policy(Duration::ZERO), sink, opts()).unwrap();
    f.sim.script(switches(&f, 3));
    guard.run().unwrap();
    assert!(alerts.borrow().is_empty(), "clean: {:?}", alerts.borrow());
    write_all(&f, &writes);
    f.sim.script(switches(&f, 1));
    guard.run().unwrap();
    assert!(
        alerts.borrow().is_empty(),
        "one sighting: {:?}",
        alerts.borrow()
    );
    f.sim.script(switches(&f, 5));
    guard.run().unwrap();
    drop(guard);
    f.assert_clean();
    let a = alerts.borrow();
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(a[0].attempt.virtual_address, Some(victim.object.0));
}

#[test]
fn a_corrupt_module_kset_neither_hangs_nor_alerts() {
    use xenvmi::policy::HiddenModulePolicy;
    let f = fixture();
    let mem = GuestMemory::new(&f.sim);
    let ks = f.linux.info().kernel_space;
    let off = |t: &str, n: &str| f.linux.types().field(t, n).unwrap().offset;
    let mods: Vec<_> = f.linux.modules(&mem).filter_map(Result::ok).collect();
    // Each module's `mkobj.kobj.entry` in module_kset's list: its address and frame.
    let entry = |m: &xenvmi::os::Module| {
        let va = m.object.0
            + off("module", "mkobj")
            + off("module_kobject", "kobj")
            + off("kobject", "entry");
        (va, mem.translate_mapped(ks, Gva(va)).unwrap())
    };
    let ((a_va, a), (b_va, b)) = (entry(&mods[0]), entry(&mods[1]));
    let mut set = PolicySet::new();
    set.push(Box::new(
        HiddenModulePolicy::new(Remediation::deny()).refreshing_every(Duration::ZERO),
    ))
    .unwrap();
    let (alerts, sink) = collector();
    let mut guard = Guard::new(&f.sim, &f.linux, set, sink, opts()).unwrap();
    // A cycle of two kobjects, then a wild link, each walked at several CR3 writes.
    write_all(&f, &[(a, b_va), (b, a_va)]);
    f.sim.script(switches(&f, 4));
    guard.run().unwrap();
    write_all(&f, &[(a, 0xdead_0000_0000_0000)]);
    f.sim.script(switches(&f, 4));
    guard.run().unwrap();
    drop(guard);
    f.assert_clean();
    assert!(alerts.borrow().is_empty(), "{:?}", alerts.borrow());
    // The guest's CR3 writes all went through.
    assert_eq!(
        f.sim.registers(VcpuId(0)).unwrap().cr3,
        switches(&f, 8)
            .last()
            .map(|s| match s {
                GuestAction::WriteCr { value, .. } => *value,
                _ => unreachable!(),
            })
            .unwrap()
    );
}

#[test]
fn hidden_modules_without_a_readable_module_kset_is_refused_before_monitoring() {
    let f = fixture();
    // module_kset (a `struct kset *`) made NULL: the kobject view cannot be walked.
    let at = f.image_gpa(f.sym["module_kset"]);
    f.sim.write_physical(at, &0u64.to_le_bytes()).unwrap();
    let set = PolicySet::from_names(["hidden-modules"], &PolicyOptions::default()).unwrap();
    let (_, sink) = collector();
    let Err(e) = Guard::new(&f.sim, &f.linux, set, sink, opts()) else {
        panic!("a guard over an unreadable module_kset was made");
    };
    let e = e.to_string();
    assert!(
        e.starts_with("policy \"hidden-modules\": cannot compare the module list with module_kset")
            && e.contains("NULL kset"),
        "{e}"
    );
    // Untouched: no monitor, no view, no restriction (no session was opened).
    let st = f.sim.state();
    assert!(
        st.monitors().is_empty() && st.restrictions() == 0 && st.extra_views().is_empty(),
        "{:?} {}",
        st.monitors(),
        st.ring_enabled()
    );
}
