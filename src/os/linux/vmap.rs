//! The vmap areas of the modules region: the third view of the hidden-module cross-view
//! ([`Linux::module_cross_view`]).
//!
//! Every module's memory is a vmalloc allocation in the modules region (`module_alloc`, or
//! `execmem_alloc` from 6.10), and every vmalloc allocation is a busy `struct vmap_area`
//! (mm/vmalloc.c): on `vmap_area_list` up to 6.8, on each `vmap_nodes[i].busy.head` from 6.9.
//! Both lists are kept in address order. On x86-64 the modules region is
//! `MODULES_VADDR..MODULES_END` (arch/x86/include/asm/pgtable_64_types.h), above the kernel
//! image in the top 2 GiB; no other vmap area lies there, so this view takes the busy areas
//! in `[MODULE_REGION_START, MODULE_REGION_END)`, walking each list backwards from its
//! highest area and stopping at the first one below the region.
//!
//! An area that no listed module's regions ([`Linux::module_regions`]) overlap is searched for
//! a `struct module` of its own ([`Linux::find_module_in_area`]): 64-byte aligned
//! (`____cacheline_aligned`), with a module name (`[A-Za-z0-9_-]`, NUL-terminated) and
//! `mkobj.mod` pointing back at itself (`mod_sysfs_init` sets it before the module goes on
//! any list). Up to 6.3 a module's `struct module` is inside its core allocation; from 6.4 it
//! is inside its `MOD_DATA` region, and its text region is accounted for by the `struct
//! module` found there. A module that unlinked itself from the `modules` list and deleted its
//! kobject is still found this way. A module being loaded is in its allocation before
//! `mkobj.mod` is set, so it is not found until its `struct module` is complete.
//!
//! The areas left ([`super::ModuleCrossView::unattributed`]) are the region's other users: BPF
//! JIT images, kprobe instruction slots, ftrace trampolines, a module's init memory waiting
//! for its deferred free. `vm_struct.caller` names the allocating function.
//!
//! **Limits.** An area unlinked from the busy list, or a `struct module` whose name or
//! `mkobj.mod` was overwritten, is not found. The scan reads at most [`MAX_AREA_SCAN`] bytes
//! of one area and [`MAX_SCAN_PER_CHECK`] per check; an [`AreaScanCache`] lets a monitor that
//! checks again and again scan each area once in its life (identified by start, end and
//! `vm_struct`).
//! At most [`MAX_VMAP_AREAS`] areas are walked over all lists together.

use std::collections::{HashMap, HashSet};

use crate::addr::Gva;
use crate::backend::PhysicalMemory;
use crate::error::{Error, Result};
use crate::mem::GuestMemory;
use crate::os::list::ListWalk;
use crate::os::Module;

use super::Linux;

/// Lowest address of the x86-64 modules region this view takes (the top 2 GiB: the kernel
/// image, then `MODULES_VADDR`).
pub const MODULE_REGION_START: u64 = 0xffff_ffff_8000_0000;
/// End of the x86-64 modules region (`MODULES_END`; the fixmap starts here).
pub const MODULE_REGION_END: u64 = 0xffff_ffff_ff00_0000;
/// Most busy areas walked, over every list together (more ends the walk with an error).
pub const MAX_VMAP_AREAS: usize = 1 << 18;
/// Most `vmap_nodes` read (6.9+; the kernel makes at most one per CPU, capped at 128 today).
pub const MAX_VMAP_NODES: u32 = 1024;
/// Most bytes of one area searched for a `struct module`.
pub const MAX_AREA_SCAN: u64 = 64 << 20;
/// Most bytes searched for `struct module`s in one check (every area together).
pub const MAX_SCAN_PER_CHECK: u64 = 256 << 20;
/// Most areas an [`AreaScanCache`] remembers.
pub const MAX_CACHED_AREAS: usize = 1 << 16;
/// `struct module` is `____cacheline_aligned` (64 bytes on x86-64).
const MODULE_ALIGN: u64 = 64;
const PAGE: u64 = 4096;

/// One busy vmap area of the modules region.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VmapArea {
    /// `va_start`.
    pub start: Gva,
    /// `va_end` (exclusive; the guard page, if any, included).
    pub end: Gva,
    /// Its `struct vm_struct` (0 when none).
    pub vm: Gva,
    /// `vm_struct.flags` (`VM_ALLOC` is 2), 0 without a `vm_struct`.
    pub flags: u64,
    /// `vm_struct.caller`: a return address in the function that allocated it, 0 without a
    /// `vm_struct`.
    pub caller: Gva,
}

impl VmapArea {
    fn key(&self) -> (u64, u64, u64) {
        (self.start.0, self.end.0, self.vm.0)
    }

    /// Whether `[start, end)` overlaps the area.
    pub fn overlaps(&self, start: u64, end: u64) -> bool {
        start < self.end.0 && self.start.0 < end
    }
}

/// What searching an area found: the `struct module` inside, if any.
type ScanResult = Option<Gva>;

/// The areas already searched for a `struct module` and what was found, for a monitor that
/// runs the cross-view again and again: each area is searched once in its life. Entries for
/// areas gone at the last check are dropped; at most [`MAX_CACHED_AREAS`] are kept.
#[derive(Clone, Debug, Default)]
pub struct AreaScanCache {
    scanned: HashMap<(u64, u64, u64), ScanResult>,
}

impl AreaScanCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Areas remembered.
    pub fn len(&self) -> usize {
        self.scanned.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.scanned.is_empty()
    }
}

/// The busy areas of the modules region, in address order, and why a walk stopped early.
#[derive(Clone, Debug, Default)]
pub struct ModuleRegionAreas {
    /// The areas.
    pub areas: Vec<VmapArea>,
    /// Walk errors.
    pub errors: Vec<String>,
}

#[derive(Clone, Copy, Debug)]
struct VmapOffsets {
    va_start: u64,
    va_end: u64,
    va_list: u64,
    va_vm: Option<u64>,
    vm_flags: u64,
    vm_caller: u64,
}

/// Offsets within `struct module` that tell one apart in raw memory.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ModuleShape {
    name: u64,
    name_len: u64,
    /// `mkobj.mod`.
    back: u64,
    state: u64,
}

fn at(base: Gva, off: u64, what: &'static str) -> Result<Gva> {
    base.checked_add(off).ok_or(Error::Overflow(what))
}

/// A kernel module name as `KBUILD_MODNAME` makes it: `[A-Za-z0-9_-]+`, NUL-terminated.
fn is_module_name(bytes: &[u8]) -> bool {
    let Some(len) = bytes.iter().position(|&b| b == 0) else {
        return false;
    };
    len > 0
        && bytes[..len]
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl Linux {
    fn vmap_offsets(&self) -> Result<VmapOffsets> {
        let t = self.types();
        Ok(VmapOffsets {
            va_start: t.require("vmap_area", "va_start")?,
            va_end: t.require("vmap_area", "va_end")?,
            va_list: t.require("vmap_area", "list")?,
            va_vm: t.field("vmap_area", "vm").map(|f| f.offset),
            vm_flags: t.require("vm_struct", "flags")?,
            vm_caller: t.require("vm_struct", "caller")?,
        })
    }

    pub(crate) fn module_shape(&self) -> Result<ModuleShape> {
        let t = self.types();
        let o = self.offsets();
        Ok(ModuleShape {
            name: o.module_name,
            name_len: o.module_name_len.clamp(1, 64),
            back: t
                .require("module", "mkobj")?
                .checked_add(t.require("module_kobject", "mod")?)
                .ok_or(Error::Overflow("module.mkobj.mod offset"))?,
            state: t.require("module", "state")?,
        })
    }

    /// The heads of the busy-area lists: `vmap_area_list` (≤ 6.8) or each
    /// `vmap_nodes[i].busy.head` (6.9+).
    fn busy_list_heads<B: PhysicalMemory>(&self, mem: &GuestMemory<B>) -> Result<Vec<Gva>> {
        if let Some(list) = self.symbol("vmap_area_list") {
            return Ok(vec![list]);
        }
        let ks = self.info().kernel_space;
        let t = self.types();
        let nodes = mem.read_va(ks, self.require_symbol("vmap_nodes")?)?;
        let count = mem.read_u32(ks, self.require_symbol("nr_vmap_nodes")?)?;
        if count == 0 || count > MAX_VMAP_NODES {
            return Err(Error::WalkAborted {
                what: "vmap_nodes",
                addr: nodes,
                reason: format!("nr_vmap_nodes is {count} (1 to {MAX_VMAP_NODES} expected)"),
            });
        }
        let size = t
            .struct_size("vmap_node")
            .ok_or_else(|| Error::MissingField {
                type_name: "vmap_node".into(),
                field: "(size)".into(),
                source_name: t.source_name().into(),
                hint: String::new(),
            })?;
        let head = t.require("vmap_node", "busy.head")?;
        (0..u64::from(count))
            .map(|i| {
                i.checked_mul(size)
                    .and_then(|o| o.checked_add(head))
                    .and_then(|o| nodes.checked_add(o))
                    .ok_or(Error::Overflow("vmap_nodes entry address"))
            })
            .collect()
    }

    /// The busy vmap areas of the modules region (see the module documentation), in address
    /// order. A list that cannot be walked to its end is reported in
    /// [`ModuleRegionAreas::errors`] with the areas read before it stopped.
    ///
    /// # Errors
    /// The kernel's symbols or types lack what the walk needs (`vmap_area_list` or
    /// `vmap_nodes`, `struct vmap_area`, `struct vm_struct`).
    pub fn module_region_areas<B: PhysicalMemory>(
        &self,
        mem: &GuestMemory<B>,
    ) -> Result<ModuleRegionAreas> {
        let o = self.vmap_offsets()?;
        let heads = self.busy_list_heads(mem)?;
        let ks = self.info().kernel_space;
        let mut out = ModuleRegionAreas::default();
        let mut seen = HashSet::new();
        // One budget for every list: nodes × areas must not multiply the bound.
        let mut walked = 0usize;
        for head in heads {
            let left = MAX_VMAP_AREAS.saturating_sub(walked);
            if left == 0 {
                out.errors.push(format!(
                    "vmap areas: more than {MAX_VMAP_AREAS} areas walked over all lists"
                ));
                break;
            }
            let walk = ListWalk::new(mem, ks, Ok(head), "vmap area list", left);
            for node in walk.backward() {
                walked += 1;
                let node = match node {
                    Ok(n) => n,
                    Err(e) => {
                        out.errors.push(format!("vmap areas: {e}"));
                        break;
                    }
                };
                let va = Gva(node.0.wrapping_sub(o.va_list));
                let read = || -> Result<VmapArea> {
                    let start = mem.read_u64(ks, at(va, o.va_start, "vmap_area.va_start")?)?;
                    let end = mem.read_u64(ks, at(va, o.va_end, "vmap_area.va_end")?)?;
                    let vm = match o.va_vm {
                        Some(off) => mem.read_va(ks, at(va, off, "vmap_area.vm")?)?,
                        None => Gva(0),
                    };
                    let (flags, caller) = if vm.0 != 0 && start >= MODULE_REGION_START {
                        (
                            mem.read_u64(ks, at(vm, o.vm_flags, "vm_struct.flags")?)?,
                            mem.read_va(ks, at(vm, o.vm_caller, "vm_struct.caller")?)?,
                        )
                    } else {
                        (0, Gva(0))
                    };
                    Ok(VmapArea {
                        start: Gva(start),
                        end: Gva(end),
                        vm,
                        flags,
                        caller,
                    })
                };
                let area = match read() {
                    Ok(a) => a,
                    Err(e) => {
                        out.errors.push(format!("vmap area {va}: {e}"));
                        break;
                    }
                };
                if area.end.0 <= MODULE_REGION_START {
                    break; // Address order: everything further back is lower.
                }
                if area.start.0 >= MODULE_REGION_END {
                    continue;
                }
                if area.start.0 >= area.end.0 {
                    out.errors.push(format!(
                        "vmap area {va}: start {} not below end {}",
                        area.start, area.end
                    ));
                    continue;
                }
                if seen.insert(area.key()) {
                    out.areas.push(area);
                }
            }
        }
        out.areas.sort_by_key(|a| a.start.0);
        Ok(out)
    }

    /// Search `area` for a `struct module` whose `mkobj.mod` points back at it (see the
    /// module documentation), reading at most [`MAX_AREA_SCAN`] bytes and no more than
    /// `budget` (which is decreased by what was read). Pages that cannot be read are skipped.
    ///
    /// # Errors
    /// [`Error::MissingField`] when the kernel's types lack `module.mkobj`,
    /// `module_kobject.mod` or `module.state`.
    pub fn find_module_in_area<B: PhysicalMemory>(
        &self,
        mem: &GuestMemory<B>,
        area: &VmapArea,
        budget: &mut u64,
    ) -> Result<Option<Gva>> {
        let shape = self.module_shape()?;
        Ok(find_in_area(self, mem, shape, area, budget))
    }

    /// The `struct module` at `object` as [`Linux::read_module`] reads it, with its state.
    pub(crate) fn read_module_and_state<B: PhysicalMemory>(
        &self,
        mem: &GuestMemory<B>,
        shape: ModuleShape,
        object: Gva,
    ) -> Result<(Module, u32)> {
        let m = self.read_module(mem, object)?;
        let state = mem.read_u32(
            self.info().kernel_space,
            at(object, shape.state, "module.state address")?,
        )?;
        Ok((m, state))
    }

    /// The areas of `areas` no listed module accounts for, each searched for a `struct
    /// module` (through `cache`): `(area, found)`. Searching stops, with an error in
    /// `errors`, when [`MAX_SCAN_PER_CHECK`] bytes were read.
    pub(crate) fn orphan_areas<B: PhysicalMemory>(
        &self,
        mem: &GuestMemory<B>,
        areas: &[VmapArea],
        listed_regions: &[(u64, u64)],
        cache: &mut AreaScanCache,
        errors: &mut Vec<String>,
    ) -> Result<Vec<(VmapArea, Option<Gva>)>> {
        let shape = self.module_shape()?;
        let mut budget = MAX_SCAN_PER_CHECK;
        let mut out = Vec::new();
        let mut live = HashSet::new();
        let mut exhausted = false;
        for a in areas {
            if listed_regions.iter().any(|&(s, e)| a.overlaps(s, e)) {
                continue;
            }
            live.insert(a.key());
            let found = match cache.scanned.get(&a.key()) {
                Some(&f) => f,
                None if budget == 0 => {
                    exhausted = true;
                    None
                }
                None => {
                    let f = find_in_area(self, mem, shape, a, &mut budget);
                    if cache.scanned.len() < MAX_CACHED_AREAS {
                        cache.scanned.insert(a.key(), f);
                    }
                    f
                }
            };
            out.push((*a, found));
        }
        if exhausted {
            errors.push(format!(
                "vmap areas: more than {MAX_SCAN_PER_CHECK} bytes to search for struct module; \
                 the rest is searched at the next check"
            ));
        }
        cache.scanned.retain(|k, _| live.contains(k));
        Ok(out)
    }
}

fn find_in_area<B: PhysicalMemory>(
    linux: &Linux,
    mem: &GuestMemory<B>,
    shape: ModuleShape,
    area: &VmapArea,
    budget: &mut u64,
) -> Option<Gva> {
    let ks = linux.info().kernel_space;
    let len = area
        .end
        .0
        .saturating_sub(area.start.0)
        .min(MAX_AREA_SCAN)
        .min(*budget);
    *budget -= len;
    let len = len as usize; // ≤ MAX_AREA_SCAN
    let mut buf = vec![0u8; len];
    for (i, page) in buf.chunks_mut(PAGE as usize).enumerate() {
        let va = Gva(area.start.0 + (i as u64) * PAGE);
        if mem.read(ks, va, page).is_err() {
            page.fill(0);
        }
    }
    let u64_at = |off: u64| -> Option<u64> {
        let o = usize::try_from(off).ok()?;
        let b = buf.get(o..o.checked_add(8)?)?;
        Some(u64::from_le_bytes(b.try_into().ok()?))
    };
    let first = (MODULE_ALIGN - area.start.0 % MODULE_ALIGN) % MODULE_ALIGN;
    let mut off = first;
    while off < len as u64 {
        let object = area.start.0 + off;
        if u64_at(off + shape.back) == Some(object) {
            let name = off + shape.name;
            let name = usize::try_from(name)
                .ok()
                .and_then(|n| buf.get(n..n.checked_add(shape.name_len as usize)?));
            if name.is_some_and(is_module_name) {
                return Some(Gva(object));
            }
        }
        off += MODULE_ALIGN;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::is_module_name;

    #[test]
    fn module_names() {
        assert!(is_module_name(b"xvhide\0\0\0"));
        assert!(is_module_name(b"snd-hda_intel\0"));
        assert!(!is_module_name(b"\0xvhide"));
        assert!(!is_module_name(b"no_nul"));
        assert!(!is_module_name(b"bad name\0"));
        assert!(!is_module_name(b"\x1b[2J\0"));
    }
}
