//! The kernel log (`Linux::kernel_log`) on the six real Linux dumps, checked against lines
//! every boot of these kernels prints, whose text the guest reported itself:
//! `start_kernel`'s `pr_notice("%s", linux_banner)` is `/proc/version` (ground truth
//! `proc_version`), `setup_arch`'s `printk(KERN_INFO "Command line: %s\n", ...)` and
//! `start_kernel`'s `pr_notice("Kernel command line: %s\n", ...)` are `/proc/cmdline`
//! (`kernel_cmdline`). The banner is logged by the boot CPU's idle task (pid 0) before the
//! clock runs. Nothing here compares with output recorded from xenvmi.

mod support;

use support::fixture::ground_truth;
use xenvmi::os::linux::kmsg::{Caller, LogRecord};

use support::linux::FIXTURES;

const KERN_NOTICE: u8 = 5;
const KERN_INFO: u8 = 6;

fn one<'a>(f: &str, log: &'a [LogRecord], text: &str) -> &'a LogRecord {
    let hits: Vec<_> = log.iter().filter(|r| r.text == text).collect();
    assert_eq!(hits.len(), 1, "{f}: {text:?} logged {} times", hits.len());
    hits[0]
}

#[test]
fn boot_lines_are_the_guests_own_version_and_command_line() {
    for f in FIXTURES {
        let (mem, linux) = support::linux::open(f);
        let gt = ground_truth(f);
        let log = linux
            .kernel_log(&mem)
            .unwrap_or_else(|e| panic!("{f}: {e}"));
        assert!(log.len() >= 100, "{f}: {} records", log.len());
        assert!(
            log.windows(2).all(|w| w[0].seq < w[1].seq),
            "{f}: sequence numbers out of order"
        );
        assert!(log.iter().all(|r| r.level <= 7 && r.facility == 0), "{f}");

        let banner = one(f, &log, gt["proc_version"].as_str().unwrap());
        assert_eq!(banner.level, KERN_NOTICE, "{f}: {banner:?}");
        assert_eq!(banner.caller, Caller::Task(0), "{f}: {banner:?}");
        assert!(banner.ts_nsec < 1_000_000_000, "{f}: {banner:?}");
        let cmdline = gt["kernel_cmdline"].as_str().unwrap();
        let arch = one(f, &log, &format!("Command line: {cmdline}"));
        assert_eq!(arch.level, KERN_INFO, "{f}: {arch:?}");
        let main = one(f, &log, &format!("Kernel command line: {cmdline}"));
        assert_eq!(main.level, KERN_NOTICE, "{f}: {main:?}");
        // In the order start_kernel prints them.
        assert!(banner.seq < arch.seq && arch.seq < main.seq, "{f}");
        eprintln!(
            "{f}: {} records, seq {}..={}",
            log.len(),
            log[0].seq,
            log[log.len() - 1].seq
        );
    }
}
