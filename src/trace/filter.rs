//! Which events a [`LinuxTracer`](super::LinuxTracer) reports: by process id, by process
//! name and by system call name (the event kinds are the probes placed). Each set left
//! empty lets everything through.

use std::collections::HashSet;

/// What to report (see the module docs). Built with the `with_*` methods:
///
/// ```
/// use xenvmi::trace::TraceFilter;
/// let f = TraceFilter::new().with_comms(["sshd", "bash"]).with_syscalls(["openat", "execve"]);
/// assert!(f.passes_process(7, "bash"));
/// assert!(!f.passes_process(7, "cron"));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TraceFilter {
    pids: HashSet<u64>,
    comms: HashSet<String>,
    syscalls: HashSet<String>,
}

impl TraceFilter {
    /// A filter that lets everything through.
    pub fn new() -> Self {
        Self::default()
    }

    /// Only these processes (`tgid`s).
    pub fn with_pids(mut self, pids: impl IntoIterator<Item = u64>) -> Self {
        self.pids.extend(pids);
        self
    }

    /// Only processes with these names (`comm`, at most 15 bytes: longer names are cut as
    /// the kernel cuts them).
    pub fn with_comms<S: AsRef<str>>(mut self, comms: impl IntoIterator<Item = S>) -> Self {
        self.comms.extend(comms.into_iter().map(|c| {
            let c = c.as_ref();
            let mut end = c.len().min(15);
            while !c.is_char_boundary(end) {
                end -= 1;
            }
            c[..end].to_owned()
        }));
        self
    }

    /// Only these system calls, by name without `sys_` (`openat`); the names are checked
    /// against the guest's own table when the tracer is placed.
    pub fn with_syscalls<S: AsRef<str>>(mut self, names: impl IntoIterator<Item = S>) -> Self {
        self.syscalls
            .extend(names.into_iter().map(|n| n.as_ref().to_owned()));
        self
    }

    /// Whether the filter looks at the process at all.
    pub fn by_process(&self) -> bool {
        !self.pids.is_empty() || !self.comms.is_empty()
    }

    /// Whether a process passes.
    pub fn passes_process(&self, pid: u64, comm: &str) -> bool {
        (self.pids.is_empty() || self.pids.contains(&pid))
            && (self.comms.is_empty() || self.comms.contains(comm))
    }

    /// The system call names asked for (empty: all).
    pub fn syscalls(&self) -> &HashSet<String> {
        &self.syscalls
    }
}
