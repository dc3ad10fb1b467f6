//! CR3 → process, for CR3-write events, for any [`GuestOs`]: a cache keyed by page-table root
//! that re-walks the process list when it meets a root it does not know (a new process), at
//! most once per miss. The roots are the OS's ([`GuestOs::owner_of_cr3`]'s rules): each
//! process's `dtb` and `user_dtb` (Windows KVA shadow), and on Linux the KPTI user root, the
//! page after `dtb`.

use std::collections::HashMap;

use crate::addr::Gpa;
use crate::backend::PhysicalMemory;
use crate::mem::GuestMemory;
use crate::os::{GuestOs, Process};
use crate::regs::cr3_to_root;

/// Who a CR3 value belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cr3Owner {
    /// A process (KPTI or KVA-shadow user and kernel roots both map to it).
    Process(Process),
    /// The kernel's own page tables ([`GuestOs::is_kernel_cr3`]; Linux `init_mm`: an idle
    /// vCPU or a kernel thread; Windows: the System process's, which kernel-only processes
    /// share).
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
    /// An empty resolver (the first lookup walks the process list).
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of process-list walks done so far.
    pub fn walks(&self) -> u64 {
        self.walks
    }

    /// Walk the process list and rebuild the cache. The guest has run since the last walk, so
    /// cached translations are flushed first (see [`crate::mem::cache`]).
    pub fn refresh<O: GuestOs, B: PhysicalMemory>(&mut self, os: &O, mem: &GuestMemory<B>) {
        mem.flush_translations();
        self.by_root.clear();
        self.misses.clear();
        self.walks += 1;
        for p in os.processes(mem).filter_map(Result::ok) {
            for root in [p.dtb, p.user_dtb].into_iter().flatten() {
                self.by_root.entry(root.0).or_insert_with(|| p.clone());
            }
        }
    }

    /// Who owns `cr3`. A root not in the cache triggers one re-walk (a process may have
    /// started since); a root still unknown after that is remembered until the next walk.
    pub fn resolve<O: GuestOs, B: PhysicalMemory>(
        &mut self,
        os: &O,
        mem: &GuestMemory<B>,
        cr3: u64,
    ) -> Cr3Owner {
        if os.is_kernel_cr3(cr3) {
            return Cr3Owner::Kernel;
        }
        let root = cr3_to_root(cr3).0;
        // Linux KPTI: the user PGD is the page after the kernel one.
        let twin = (os.user_root_is_next_page() && root & 0x1000 != 0).then_some(root & !0x1000);
        let lookup = |m: &HashMap<u64, Process>| {
            m.get(&root)
                .or_else(|| twin.and_then(|t| m.get(&t)))
                .cloned()
        };
        if let Some(p) = lookup(&self.by_root) {
            return Cr3Owner::Process(p);
        }
        if self.misses.contains_key(&root) {
            return Cr3Owner::Unknown;
        }
        self.refresh(os, mem);
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
        let pair = [root, root | 0x1000];
        // The process's other root too (Windows KVA shadow: its `user_dtb`). Dropping an
        // unrelated neighbour's root costs only a re-walk at its next lookup.
        let gone: Vec<crate::addr::Gva> = pair
            .iter()
            .filter_map(|r| self.by_root.get(r))
            .map(|p| p.object)
            .collect();
        self.by_root
            .retain(|r, p| !pair.contains(r) && !gone.contains(&p.object));
        for r in pair {
            self.misses.remove(&r);
        }
    }

    /// The cached owner of a root, without walking.
    pub fn cached(&self, root: Gpa) -> Option<&Process> {
        self.by_root.get(&root.0)
    }
}
