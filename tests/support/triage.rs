//! Triage dumps (DumpType 4) of synthetic Windows guests (`windows_guest.rs`), written by the
//! test-side writer (`crashdump.rs`), and what the spec says they record.
#![allow(dead_code)]

use super::crashdump as dmp;
use super::windows_guest::{WinGuest, WinSpec};
use xenvmi::os::profile::isf::Isf;
use xenvmi::os::profile::TypeSource;
use xenvmi::os::windows::triage::TriageProcess;

/// A triage dump of `g` crashed on processor `crashed`, with the drivers of the spec (each
/// with a checksum and timestamp made from its index).
pub fn triage_of(isf: &Isf, g: &mut WinGuest, crashed: usize) -> Vec<u8> {
    let size = |t: &str| isf.struct_size(t).unwrap() as usize;
    let mut h = dmp::Header::example(g.kernel_pml4, g.crash_context(crashed));
    h.minor = g.spec.build;
    h.number_processors = g.spec.cpus.len() as u32;
    h.bugcheck_code = 0xd1; // DRIVER_IRQL_NOT_LESS_OR_EQUAL: parameter 4 is the faulting address
    let fault = g.spec.drivers[1].base + 0x1234;
    h.bugcheck_parameters = [0x28, 2, 0, fault];
    h.context.rip = fault;
    let prcb = g.prcbs[crashed];
    let thread = g.threads[crashed];
    let process = match g.spec.cpus[crashed].process {
        Some(p) => g.eprocess[p],
        None => g.idle_eprocess.unwrap(),
    };
    let (_, stack_base) = WinGuest::stack(crashed);
    let t = dmp::Triage {
        prcb: g.kread(prcb, size("_KPRCB")),
        process: g.kread(process, size("_EPROCESS")),
        thread: g.kread(thread, size("_ETHREAD")),
        stack: (0..64u64).flat_map(|i| (fault + i).to_le_bytes()).collect(),
        top_of_stack: stack_base,
        drivers: g
            .spec
            .drivers
            .iter()
            .enumerate()
            .map(|(i, d)| dmp::TriageDriverSpec {
                name: d.name.clone(),
                base: d.base,
                size: d.size,
                checksum: 0x1_0000 + i as u32,
                timestamp: 0x5f00_0000 + i as u32,
            })
            .collect(),
    };
    dmp::triage_dump(&h, &t)
}

/// What the spec says processor `i` was running.
pub fn expected(spec: &WinSpec, i: usize) -> TriageProcess {
    let c = &spec.cpus[i];
    let (pid, ppid, name) = match c.process {
        Some(p) => (
            spec.processes[p].pid,
            spec.processes[p].ppid,
            spec.processes[p].name.chars().take(15).collect(),
        ),
        None => (0, 0, "Idle".to_owned()),
    };
    TriageProcess {
        pid,
        ppid,
        name,
        thread_id: if c.process.is_some() {
            WinGuest::thread_id(i)
        } else {
            0
        },
        thread_process_id: c.home.or(c.process).map_or(0, |h| spec.processes[h].pid),
        processor: Some(i as u32),
    }
}
