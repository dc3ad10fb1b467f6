//! CR3 → process, for CR3-write events: a cache keyed by page-table root that re-walks the
//! task list when it meets a root it does not know (a new process), at most once per miss.

use std::collections::HashMap;

use super::Linux;
use crate::addr::Gpa;
use crate::backend::PhysicalMemory;
use crate::mem::GuestMemory;
use crate::os::Process;
use crate::regs::cr3_to_root;

/// Who a CR3 value belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cr3Owner {
    /// A process (KPTI user and kernel roots both map to it).
    Process(Process),
    /// The kernel's own page tables (`init_mm`: idle vCPU or kernel thread).
    Kernel,
    /// No process had this root when the task list was last walked.
    Unknown,
}

/// Caches page-table roots → processes.
#[derive(Debug, Default)]
pub struct Cr3Resolver {
    by_root: HashMap<u64, Process>,
    /// Roots that were not found by the last walk (not re-walked until the next refresh).
    misses: HashMap<u64, u64>,
    walks: u64,
}

impl Cr3Resolver {
    /// An empty resolver (the first lookup walks the task list).
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of task-list walks done so far.
    pub fn walks(&self) -> u64 {
        self.walks
    }

    /// Walk the task list and rebuild the cache. The guest has run since the last walk, so
    /// cached translations are flushed first (see [`crate::mem::cache`]).
    pub fn refresh<B: PhysicalMemory>(&mut self, linux: &Linux, mem: &GuestMemory<B>) {
        mem.flush_translations();
        self.by_root.clear();
        self.misses.clear();
        self.walks += 1;
        for p in linux.processes(mem).filter_map(Result::ok) {
            if let Some(d) = p.dtb {
                self.by_root.entry(d.0).or_insert(p);
            }
        }
    }

    /// Who owns `cr3`. A root not in the cache triggers one re-walk (a process may have
    /// started since); a root still unknown after that is remembered until the next walk.
    pub fn resolve<B: PhysicalMemory>(
        &mut self,
        linux: &Linux,
        mem: &GuestMemory<B>,
        cr3: u64,
    ) -> Cr3Owner {
        if linux.is_kernel_cr3(cr3) {
            return Cr3Owner::Kernel;
        }
        let root = cr3_to_root(cr3).0;
        let twin = root & !0x1000; // KPTI: the user PGD is the page after the kernel one
        let lookup = |m: &HashMap<u64, Process>| {
            m.get(&root)
                .or_else(|| (root & 0x1000 != 0).then(|| m.get(&twin)).flatten())
                .cloned()
        };
        if let Some(p) = lookup(&self.by_root) {
            return Cr3Owner::Process(p);
        }
        if self.misses.contains_key(&root) {
            return Cr3Owner::Unknown;
        }
        self.refresh(linux, mem);
        match lookup(&self.by_root) {
            Some(p) => Cr3Owner::Process(p),
            None => {
                self.misses.insert(root, self.walks);
                Cr3Owner::Unknown
            }
        }
    }

    /// Drop what is known about `cr3`'s root (its process exited: the page may become another
    /// process's root, which must then be looked up afresh, not taken for this one).
    pub fn forget(&mut self, cr3: u64) {
        let root = cr3_to_root(cr3).0 & !0x1000;
        for r in [root, root | 0x1000] {
            self.by_root.remove(&r);
            self.misses.remove(&r);
        }
    }

    /// The cached owner of a root, without walking.
    pub fn cached(&self, root: Gpa) -> Option<&Process> {
        self.by_root.get(&root.0)
    }
}
