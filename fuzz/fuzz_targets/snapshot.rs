//! Every snapshot format (raw, QEMU ELF core, LiME, Windows crash dump, Xen dump-core) on
//! arbitrary bytes:
//! parse with detection and with each format forced, then read every region and every vCPU.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xenvmi::backend::snapshot::{Format, Snapshot};
use xenvmi::backend::{PhysicalMemory, VcpuState};
use xenvmi::{Gpa, VcpuId};

fuzz_target!(|data: &[u8]| {
    for format in [
        None,
        Some(Format::QemuElf),
        Some(Format::Lime),
        Some(Format::Raw),
        Some(Format::WindowsCrashDump),
        Some(Format::XenCore),
    ] {
        let Ok(s) = Snapshot::from_bytes(data.to_vec(), format) else {
            continue;
        };
        let mut buf = [0u8; 64];
        for r in s.regions() {
            let _ = s.read_physical(Gpa(r.gpa), &mut buf);
            let _ = s.read_physical(Gpa(r.gpa.wrapping_add(r.len).wrapping_sub(8)), &mut buf);
            let _ = s.read_physical_u64(Gpa(r.gpa.wrapping_add(r.len)));
            let _ = s.physical_slice(Gpa(r.gpa), r.len as usize);
        }
        let _ = s.max_gfn();
        for i in 0..s.vcpu_count().min(64) {
            let r = s.registers(VcpuId(i)).expect("vCPU in range");
            let _ = (r.paging_mode(), r.page_table_root(), r.cpl());
        }
        let _ = s.vmcoreinfo();
        let _ = s.capture_info();
        let _ = s.windows_dump_info();
    }
});
