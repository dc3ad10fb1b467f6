//! Learn: build a manifest from observation. On a snapshot, one [`Observation`]; live, an
//! observation when monitoring starts, then every process start and module load the tracer
//! reports over the period.

use std::collections::BTreeMap;

use super::manifest::{CodePage, Executable, ExpectedModule, KernelBuild, Manifest};
use super::observe::{self, Observation};
use crate::backend::PhysicalMemory;
use crate::mem::GuestMemory;
use crate::os::linux::Linux;
use crate::os::Module;
use crate::trace::{TraceEvent, What};

/// Accumulates what the guest runs into a [`Manifest`].
///
/// An executable seen several times keeps the first code page that was hashed (one that was
/// not present is replaced by one that is); two different hashed pages for one path are a
/// warning (the file changed while learning) and the first is kept. A module seen with two
/// sizes keeps the first, with a warning.
#[derive(Clone, Debug)]
pub struct Learner {
    kernel: KernelBuild,
    executables: BTreeMap<String, Executable>,
    modules: BTreeMap<String, ExpectedModule>,
    warnings: Vec<String>,
}

impl Learner {
    /// Start learning a guest whose kernel is `kernel`.
    pub fn new(kernel: KernelBuild) -> Self {
        Learner {
            kernel,
            executables: BTreeMap::new(),
            modules: BTreeMap::new(),
            warnings: Vec::new(),
        }
    }

    /// Start from one observation (its kernel build, processes and modules).
    pub fn from_observation(obs: &Observation) -> Self {
        let mut l = Learner::new(obs.kernel.clone());
        l.add_observation(obs);
        l
    }

    /// Add what `obs` shows. Its kernel build must be the one being learned, or it is a
    /// warning and its contents are still added.
    pub fn add_observation(&mut self, obs: &Observation) {
        if obs.kernel != self.kernel {
            self.warnings.push(format!(
                "kernel build changed while learning: {:?} then {:?}",
                self.kernel.banner, obs.kernel.banner
            ));
        }
        self.warnings.extend(obs.warnings.iter().cloned());
        for p in &obs.processes {
            match &p.exe {
                Ok(exe) => {
                    let page = match &p.code_page {
                        Ok(c) => *c,
                        Err(why) => {
                            self.warnings.push(format!(
                                "process {} ({exe}): code page not learned: {why}",
                                p.process.pid
                            ));
                            None
                        }
                    };
                    self.add_executable(exe, page);
                }
                Err(why) => self.warnings.push(format!(
                    "process {} ({}): executable not learned: {why}",
                    p.process.pid, p.process.name
                )),
            }
        }
        for m in &obs.modules {
            self.add_module(m);
        }
    }

    /// Add what one trace event shows: a `process_start`'s executable (with its code page,
    /// read from the started process when it is present; at the start of a program it
    /// usually is not yet), a `module_load`'s module. Other events add nothing. `mem` must
    /// show the guest at the event.
    pub fn add_event<B: PhysicalMemory>(
        &mut self,
        mem: &GuestMemory<B>,
        linux: &Linux,
        e: &TraceEvent,
    ) {
        match &e.what {
            What::ProcessStart { exe, .. } => match exe {
                Ok(exe) => {
                    let process = linux
                        .processes(mem)
                        .filter_map(|p| p.ok())
                        .find(|p| p.pid == e.pid && p.tgid == e.pid);
                    let page = match process {
                        Some(p) => match observe::code_page(mem, linux, &p, exe) {
                            Ok(c) => c,
                            Err(why) => {
                                self.warnings.push(format!(
                                    "process {} ({exe}): code page not learned: {why}",
                                    e.pid
                                ));
                                None
                            }
                        },
                        None => None,
                    };
                    self.add_executable(exe, page);
                }
                Err(why) => self.warnings.push(format!(
                    "process {} ({}): executable not learned: {why}",
                    e.pid, e.comm
                )),
            },
            What::ModuleLoad { module } => self.add_module(module),
            _ => {}
        }
    }

    fn add_executable(&mut self, exe: &str, page: Option<CodePage>) {
        let Some(known) = self.executables.get_mut(exe) else {
            self.executables
                .insert(exe.to_owned(), Executable { code_page: page });
            return;
        };
        match (&mut known.code_page, page) {
            (_, None) => {}
            (slot @ None, Some(p)) => *slot = Some(p),
            (Some(k), Some(p)) if k.sha256.is_none() => {
                if p.sha256.is_some() {
                    *k = p;
                }
            }
            (Some(k), Some(p)) => {
                if p.sha256.is_some() && (p.sha256 != k.sha256 || p.file_offset != k.file_offset) {
                    self.warnings.push(format!(
                        "{exe}: two different code pages seen while learning; the first kept"
                    ));
                }
            }
        }
    }

    fn add_module(&mut self, m: &Module) {
        match self.modules.get(&m.name) {
            None => {
                self.modules
                    .insert(m.name.clone(), ExpectedModule { size: m.size });
            }
            Some(k) if k.size != m.size => self.warnings.push(format!(
                "module {}: sizes {} and {} seen while learning; the first kept",
                m.name, k.size, m.size
            )),
            Some(_) => {}
        }
    }

    /// What was learned that needs a look: entries not learned, conflicts.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The manifest learned.
    pub fn manifest(&self) -> Manifest {
        Manifest {
            kernel: self.kernel.clone(),
            executables: self.executables.clone(),
            modules: self.modules.clone(),
        }
    }
}
