//! The simulated domain (not Xen) over the real Linux 6.1 snapshot, set up to run the
//! kernel's own functions on vCPU 0 as the kernel would call them, with the task that
//! vCPU runs in the guest's report: what the trace and attestation tests script events with.
#![allow(dead_code)]

use std::time::Duration;

use super::fixture::{fixture_file, ground_truth};
use xenvmi::backend::sim::{GuestAction, SimDomain};
use xenvmi::backend::snapshot::Snapshot;
use xenvmi::backend::{PhysicalMemoryWrite, VcpuState, VcpuStateWrite};
use xenvmi::event::hooks::Hooks;
use xenvmi::event::session::{RunOptions, Session};
use xenvmi::event::Response;
use xenvmi::mem::GuestMemory;
use xenvmi::os::linux::{Linux, ProfileSource};
use xenvmi::regs::Registers;
use xenvmi::trace::{LinuxTracer, TraceEvent};
use xenvmi::{Error, Gpa, VcpuId};

pub const RUN: RunOptions = RunOptions {
    poll: Duration::ZERO,
    max_events: None,
    max_idle_polls: Some(1),
};

/// Scratch guest-physical pages (low memory the dump's kernel does not use for these
/// tests' purposes), reached through the kernel's direct map.
pub const RET_SLOT: u64 = 0x10_0000;
pub const FRAME: u64 = 0x10_1000;
pub const HOW: u64 = 0x10_2000;

pub struct Guest {
    pub sim: SimDomain,
    pub linux: Linux,
    /// vCPU 0's registers as on a kernel entry from the process it runs.
    pub kernel_regs: Registers,
    /// The guest's own report about that process.
    pub pid: u64,
    pub ppid: u64,
    pub comm: String,
    pub argv: Vec<String>,
}

pub fn guest() -> Guest {
    let snap = Snapshot::open(fixture_file("linux-6.1", "vmcore.elf").unwrap()).unwrap();
    let regs = snap.all_registers().to_vec();
    let sim = SimDomain::new(snap, &regs);
    let linux = Linux::discover(&GuestMemory::new(&sim), &regs, ProfileSource::InGuest).unwrap();
    // vCPU 0 is in user mode in the dump (the guest's report: pid 106, vmi_busy_loop).
    // Entering the kernel: CPL 0, and swapgs makes the kernel's per-CPU base GS.base.
    let gt = ground_truth("linux-6.1");
    let owner = &gt["vcpu_owners"][0];
    let truth = gt["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["pid"] == owner["pid"])
        .unwrap();
    let mut r = regs[0];
    r.cs_sel = 0x10;
    r.gs_base = regs[0].kernel_gs_base;
    Guest {
        linux,
        kernel_regs: r,
        pid: owner["pid"].as_u64().unwrap(),
        ppid: truth["ppid"].as_u64().unwrap(),
        comm: owner["comm"].as_str().unwrap().to_owned(),
        argv: truth["cmdline"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_owned())
            .collect(),
        sim,
    }
}

impl Guest {
    pub fn text(&self, name: &str) -> Gpa {
        let k = self.linux.info();
        Gpa(k.text_pa.0 + (self.linux.symbol(name).unwrap().0 - k.text_va.0))
    }

    pub fn direct_map(&self, gpa: u64) -> u64 {
        self.linux.info().page_offset_base.0 + gpa
    }

    /// Where the process keeps its arguments (`mm->arg_start`): a user string the
    /// guest's own `/proc/PID/cmdline` showed (argv[0]).
    pub fn arg_start(&self) -> u64 {
        let mem = GuestMemory::new(&self.sim);
        let l = &self.linux;
        let task = l.current_task(&mem, &self.kernel_regs).unwrap();
        let ks = l.info().kernel_space;
        let mm = mem
            .read_u64(ks, task.object.checked_add(l.offsets().task_mm).unwrap())
            .unwrap();
        let off = l.types().require("mm_struct", "arg_start").unwrap();
        mem.read_u64(ks, xenvmi::Gva(mm + off)).unwrap()
    }

    /// Run `func` once on vCPU 0 with `set` applied to its kernel-entry registers; a
    /// `ret` to `then` follows when given (with `rax` the return value).
    pub fn call(
        &self,
        hooks: &mut Hooks,
        s: &mut Session<'_, SimDomain>,
        tracer: &mut LinuxTracer,
        func: &str,
        set: impl FnOnce(&mut Registers),
        ret: Option<u64>,
    ) -> Vec<Result<TraceEvent, Error>> {
        let mem = GuestMemory::new(&self.sim);
        let mut r = self.kernel_regs;
        set(&mut r);
        let ret_va = self.linux.symbol("schedule").unwrap().0 + 0x10;
        let k = self.linux.info();
        let ret_gpa = Gpa(k.text_pa.0 + (ret_va - k.text_va.0));
        self.sim
            .write_physical(Gpa(RET_SLOT), &ret_va.to_le_bytes())
            .unwrap();
        r.rsp = self.direct_map(RET_SLOT);
        self.sim.set_registers(VcpuId(0), &r).unwrap();
        self.sim.script([GuestAction::Execute {
            vcpu: VcpuId(0),
            gpa: self.text(func),
        }]);
        let mut events = Vec::new();
        let sim = &self.sim;
        hooks
            .run(s, &mem, &RUN, |ctx| {
                let returning = matches!(
                    ctx.hit(),
                    Some(xenvmi::event::hooks::Hit::Breakpoint { .. })
                );
                if let Some(e) = tracer.handle(&self.linux, ctx) {
                    events.push(e);
                }
                if let (true, Some(rax)) = (returning, ret) {
                    // The function returns: `ret` pops the slot, rax holds the result.
                    let mut r = sim.registers(VcpuId(0)).unwrap();
                    r.rsp += 8;
                    r.rax = rax;
                    sim.set_registers(VcpuId(0), &r).unwrap();
                    sim.script([GuestAction::Execute {
                        vcpu: VcpuId(0),
                        gpa: ret_gpa,
                    }]);
                }
                Ok::<_, Error>(Response::proceed())
            })
            .unwrap();
        events
    }

    pub fn assert_clean(&self) {
        let st = self.sim.state();
        assert!(st.paused_vcpus().is_empty());
        assert!(st.monitors().is_empty());
        assert!(st.extra_views().is_empty());
        assert!(st.extra_frames().is_empty());
    }
}
