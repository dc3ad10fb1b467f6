//! Hidden kernel modules: a cross-view between the `modules` list and the kernel's sysfs
//! records of loaded modules.
//!
//! * **List view**: the `modules` list ([`Linux::modules`]), what `/proc/modules` and `lsmod`
//!   show.
//! * **Kobject view**: `module_kset` (a `struct kset *`), whose `list` links the `struct kobject`
//!   of every `/sys/module/NAME` directory by `kobject.entry`. A loaded module's kobject is
//!   `module.mkobj.kobj` (a `struct module_kobject` embedded in the `struct module`), and
//!   `module_kobject.mod` points back at the module. Built-in modules with parameters have a
//!   kobject too, with `mod` NULL: they are not loaded modules and are skipped. An entry whose
//!   `mod` does not embed the kobject (`mod + offsetof(module, mkobj.kobj) != kobject`) is not a
//!   loaded module's either: it is counted as an error and skipped, so a forged entry cannot make
//!   the check read an arbitrary "module".
//!
//! The classic rootkit hide, `list_del(&THIS_MODULE->list)`, leaves the module in the kobject
//! view: it is reported as hidden ([`HiddenModule`]).
//!
//! **Loading and unloading.** A module being loaded is on the list before its kobject exists
//! (`add_unformed_module` precedes `mod_sysfs_setup`), and one being unloaded leaves sysfs
//! before the list (`mod_sysfs_teardown` precedes `list_del_rcu`), so neither is ever in the
//! kobject view alone while `LIVE`. Modules seen only in the kobject view whose `state` is not
//! `MODULE_STATE_LIVE` (a failed load unwinding) are kept apart
//! ([`ModuleCrossView::transitional`]) and not reported; the `hidden-modules` policy further
//! requires a module to be seen hidden by two consecutive checks (a walk of a running guest can see a list being
//! changed).
//!
//! * **Vmap view**: the busy vmap areas of the modules region ([`crate::os::linux::vmap`]). An
//!   area no listed module's memory overlaps is searched for a `struct module` that points back
//!   at itself. A module that unlinked itself from both the list and `module_kset` (or removed
//!   its kobject with `kobject_del`) is found here; the areas no module accounts for (BPF JIT
//!   images, kprobe slots, ftrace trampolines live there too) are listed apart
//!   ([`ModuleCrossView::unattributed`]), not reported.
//!
//! **Limits.** A module that also unlinked its vmap area from the busy list, or overwrote its
//! own name or `mkobj.mod`, is in no view. A `modules` list broken part-way makes the modules after the break look
//! hidden (the break is in [`ModuleCrossView::errors`]). Every walk is bounded ([`MAX_MODULES`] entries, cycle
//! detection) and every read checked.

use std::collections::HashSet;

use crate::addr::Gva;
use crate::backend::PhysicalMemory;
use crate::error::{Error, Result};
use crate::mem::GuestMemory;
use crate::os::list::ListWalk;
use crate::os::profile::TypeSource;
use crate::os::Module;

use super::vmap::{AreaScanCache, VmapArea};
use super::{Linux, MAX_MODULES};

/// `MODULE_STATE_LIVE` of `enum module_state` (include/linux/module.h).
pub const MODULE_STATE_LIVE: u32 = 0;
/// Most walk errors a [`ModuleCrossView`] keeps.
pub const MAX_VIEW_ERRORS: usize = 64;

/// Where a module was seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ModuleView {
    /// The `modules` list.
    List,
    /// The kobjects of `module_kset` (`/sys/module`).
    Kobjects,
    /// The vmap areas of the modules region, searched for a `struct module`
    /// ([`crate::os::linux::vmap`]).
    VmapAreas,
}

impl ModuleView {
    /// `"modules"`, `"module_kset"` or `"vmap_areas"`: the kernel structure each view walks.
    pub fn as_str(self) -> &'static str {
        match self {
            ModuleView::List => "modules",
            ModuleView::Kobjects => "module_kset",
            ModuleView::VmapAreas => "vmap_areas",
        }
    }
}

/// A loaded module missing from the `modules` list but seen by another view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HiddenModule {
    /// `module.name`, text base and size as [`Linux::read_module`] reads them, and the address
    /// of the `struct module`.
    pub module: Module,
    /// `module.state` (`MODULE_STATE_LIVE` is 0).
    pub state: u32,
    /// The views that saw it (never [`ModuleView::List`]).
    pub views: Vec<ModuleView>,
}

/// What each view saw, and the modules missing from the list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModuleCrossView {
    /// The `modules` list, in list order.
    pub listed: Vec<Module>,
    /// The `struct module` addresses of the loaded modules' kobjects in `module_kset`, in list
    /// order (built-in modules' kobjects excluded).
    pub kobjects: Vec<Gva>,
    /// The busy vmap areas of the modules region ([`Linux::module_region_areas`]).
    pub areas: usize,
    /// `LIVE` modules seen in the kobject view or the vmap areas but not on the list.
    pub hidden: Vec<HiddenModule>,
    /// Modules seen in another view but not on the list whose state is not `LIVE` (loading
    /// or unloading): not reported as hidden.
    pub transitional: Vec<HiddenModule>,
    /// Areas of the modules region that no module, listed or found, accounts for: BPF JIT
    /// images, kprobe instruction slots, ftrace trampolines, init memory waiting to be freed
    /// (`VmapArea::caller` names who allocated each).
    pub unattributed: Vec<VmapArea>,
    /// Why a walk stopped early or an entry was skipped (at most [`MAX_VIEW_ERRORS`]).
    pub errors: Vec<String>,
}

/// The offsets the kobject view needs, from the kernel's types (by field name).
#[derive(Clone, Copy, Debug)]
struct KsetOffsets {
    kset_list: u64,
    kobject_entry: u64,
    mk_kobj: u64,
    mk_mod: u64,
    module_mkobj: u64,
    module_state: u64,
}

impl KsetOffsets {
    fn resolve(t: &dyn TypeSource) -> Result<Self> {
        Ok(KsetOffsets {
            kset_list: t.require("kset", "list")?,
            kobject_entry: t.require("kobject", "entry")?,
            mk_kobj: t.require("module_kobject", "kobj")?,
            mk_mod: t.require("module_kobject", "mod")?,
            module_mkobj: t.require("module", "mkobj")?,
            module_state: t.require("module", "state")?,
        })
    }
}

fn push_error(errors: &mut Vec<String>, e: String) {
    if errors.len() < MAX_VIEW_ERRORS {
        errors.push(e);
    }
}

impl Linux {
    /// Compare the `modules` list with the kobjects of `module_kset` (see the module
    /// documentation). Walk errors do not end the check: they are listed in
    /// [`ModuleCrossView::errors`].
    ///
    /// # Errors
    /// The kernel lacks `module_kset` or one of the fields the kobject view needs, or
    /// `module_kset` cannot be read.
    pub fn module_cross_view<B: PhysicalMemory>(
        &self,
        mem: &GuestMemory<B>,
    ) -> Result<ModuleCrossView> {
        self.module_cross_view_with(mem, &mut AreaScanCache::new())
    }

    /// [`Linux::module_cross_view`] for a monitor that checks again and again: each vmap area
    /// is searched for a `struct module` once in its life (`cache`).
    ///
    /// # Errors
    /// As [`Linux::module_cross_view`].
    pub fn module_cross_view_with<B: PhysicalMemory>(
        &self,
        mem: &GuestMemory<B>,
        cache: &mut AreaScanCache,
    ) -> Result<ModuleCrossView> {
        let o = KsetOffsets::resolve(self.types())?;
        let ks = self.info().kernel_space;
        let kset = mem.read_va(ks, self.require_symbol("module_kset")?)?;
        if kset.0 == 0 {
            return Err(Error::WalkAborted {
                what: "module_kset",
                addr: kset,
                reason: "NULL kset".into(),
            });
        }
        let mut view = ModuleCrossView::default();
        for m in self.modules(mem) {
            match m {
                Ok(m) => view.listed.push(m),
                Err(e) => push_error(&mut view.errors, format!("module list: {e}")),
            }
        }
        let listed: HashSet<u64> = view.listed.iter().map(|m| m.object.0).collect();
        let head = kset
            .checked_add(o.kset_list)
            .ok_or(Error::Overflow("module_kset list address"));
        let embed = o.module_mkobj.wrapping_add(o.mk_kobj);
        let mut seen = HashSet::new();
        for node in ListWalk::new(mem, ks, head, "module_kset list", MAX_MODULES) {
            let node = match node {
                Ok(n) => n,
                Err(e) => {
                    push_error(&mut view.errors, format!("module_kset list: {e}"));
                    continue;
                }
            };
            let kobj = Gva(node.0.wrapping_sub(o.kobject_entry));
            let mk = Gva(kobj.0.wrapping_sub(o.mk_kobj));
            let module = match mk
                .checked_add(o.mk_mod)
                .ok_or(Error::Overflow("module_kobject.mod address"))
                .and_then(|a| mem.read_va(ks, a))
            {
                Ok(m) => m,
                Err(e) => {
                    push_error(&mut view.errors, format!("kobject {kobj}: {e}"));
                    continue;
                }
            };
            if module.0 == 0 {
                continue; // A built-in module's parameters.
            }
            if module.0.wrapping_add(embed) != kobj.0 {
                push_error(
                    &mut view.errors,
                    format!("kobject {kobj}: its module {module} does not embed it"),
                );
                continue;
            }
            if !seen.insert(module.0) {
                continue;
            }
            view.kobjects.push(module);
            if listed.contains(&module.0) {
                continue;
            }
            let read = self.read_module(mem, module).and_then(|m| {
                let state = module
                    .checked_add(o.module_state)
                    .ok_or(Error::Overflow("module.state address"))
                    .and_then(|a| mem.read_u32(ks, a))?;
                Ok((m, state))
            });
            match read {
                Ok((module, state)) => {
                    let h = HiddenModule {
                        module,
                        state,
                        views: vec![ModuleView::Kobjects],
                    };
                    if state == MODULE_STATE_LIVE {
                        view.hidden.push(h);
                    } else {
                        view.transitional.push(h);
                    }
                }
                Err(e) => push_error(&mut view.errors, format!("module {module}: {e}")),
            }
        }
        if let Err(e) = self.vmap_view(mem, cache, &mut view) {
            push_error(&mut view.errors, format!("vmap areas: {e}"));
        }
        Ok(view)
    }

    /// Add the vmap view to `view` (whose list and kobject views are done).
    fn vmap_view<B: PhysicalMemory>(
        &self,
        mem: &GuestMemory<B>,
        cache: &mut AreaScanCache,
        view: &mut ModuleCrossView,
    ) -> Result<()> {
        let region = self.module_region_areas(mem)?;
        for e in region.errors {
            push_error(&mut view.errors, e);
        }
        view.areas = region.areas.len();
        let mut listed_regions = Vec::new();
        for m in &view.listed {
            match self.module_regions(mem, m.object) {
                Ok(r) => listed_regions.extend(r),
                Err(e) => push_error(&mut view.errors, format!("module {}: {e}", m.name)),
            }
        }
        let listed: HashSet<u64> = view.listed.iter().map(|m| m.object.0).collect();
        let orphans =
            self.orphan_areas(mem, &region.areas, &listed_regions, cache, &mut view.errors)?;
        let shape = self.module_shape()?;
        for object in orphans.iter().filter_map(|(_, f)| *f) {
            if listed.contains(&object.0) {
                continue;
            }
            let known = view
                .hidden
                .iter_mut()
                .chain(view.transitional.iter_mut())
                .find(|h| h.module.object == object);
            if let Some(h) = known {
                if !h.views.contains(&ModuleView::VmapAreas) {
                    h.views.push(ModuleView::VmapAreas);
                }
                continue;
            }
            match self.read_module_and_state(mem, shape, object) {
                Ok((module, state)) => {
                    let h = HiddenModule {
                        module,
                        state,
                        views: vec![ModuleView::VmapAreas],
                    };
                    if state == MODULE_STATE_LIVE {
                        view.hidden.push(h);
                    } else {
                        view.transitional.push(h);
                    }
                }
                Err(e) => push_error(&mut view.errors, format!("module {object}: {e}")),
            }
        }
        let mut found_regions = Vec::new();
        for h in view.hidden.iter().chain(&view.transitional) {
            if let Ok(r) = self.module_regions(mem, h.module.object) {
                found_regions.extend(r);
            }
        }
        view.unattributed = orphans
            .into_iter()
            .filter(|(a, f)| f.is_none() && !found_regions.iter().any(|&(s, e)| a.overlaps(s, e)))
            .map(|(a, _)| a)
            .collect();
        Ok(())
    }
}
