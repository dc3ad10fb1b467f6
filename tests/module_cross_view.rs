//! The hidden-module cross-view (`Linux::module_cross_view`) on every real Linux dump, checked
//! against the modules each guest listed about itself (`ground-truth.json`), and on copies of
//! the 6.1 dump with kernel memory edited: a module unlinked from `modules` as `list_del` does,
//! and a corrupt `module_kset` list (a cycle, a wild link, a forged `mod` pointer); a module
//! unlinked from both the list and `module_kset` (found by its vmap area) on a ≤ 6.3 and a
//! 6.4+ layout; a corrupt vmap area list.

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;

use support::fixture::{ground_truth, hex};
use support::linux::FIXTURES;
use support::patched::Patched;
use xenvmi::backend::snapshot::Snapshot;
use xenvmi::mem::GuestMemory;
use xenvmi::os::linux::{Linux, ModuleView, ProfileSource};
use xenvmi::Gva;

/// The ground truth's modules: (name, base), in list order.
fn truth_modules(fixture: &str) -> Vec<(String, u64)> {
    ground_truth(fixture)["modules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["name"].as_str().unwrap().to_owned(), hex(&m["base"])))
        .collect()
}

fn off(linux: &Linux, ty: &str, field: &str) -> u64 {
    linux.types().field(ty, field).unwrap().offset
}

#[test]
fn every_fixture_sees_its_modules_in_both_views_and_none_hidden() {
    for fixture in FIXTURES {
        let (mem, linux) = support::linux::open(fixture);
        let v = linux.module_cross_view(&mem).unwrap();
        let truth = truth_modules(fixture);
        assert!(!truth.is_empty(), "{fixture}: ground truth lists modules");
        let listed: Vec<(String, u64)> = v
            .listed
            .iter()
            .map(|m| (m.name.clone(), m.base.0))
            .collect();
        assert_eq!(listed, truth, "{fixture}: the list view");
        // Every listed module has its /sys/module kobject, and no other loaded module does.
        let kobj: BTreeSet<u64> = v.kobjects.iter().map(|g| g.0).collect();
        let objs: BTreeSet<u64> = v.listed.iter().map(|m| m.object.0).collect();
        assert_eq!(kobj, objs, "{fixture}: the kobject view");
        assert_eq!(v.kobjects.len(), truth.len(), "{fixture}: no duplicates");
        assert!(v.hidden.is_empty(), "{fixture}: {:?}", v.hidden);
        assert!(v.transitional.is_empty(), "{fixture}: {:?}", v.transitional);
        assert!(v.errors.is_empty(), "{fixture}: {:?}", v.errors);
    }
}

const FIXTURE: &str = "linux-6.1";

fn open_61() -> (GuestMemory<Arc<Snapshot>>, Linux) {
    let path = support::fixture::fixture_file(FIXTURE, "vmcore.elf").unwrap();
    let snap = Snapshot::open(&path).unwrap();
    let regs = snap.all_registers().to_vec();
    let mem = GuestMemory::new(Arc::new(snap));
    let linux = Linux::discover(&mem, &regs, ProfileSource::InGuest).unwrap();
    (mem, linux)
}

#[test]
fn a_module_unlinked_from_the_list_is_found_by_its_kobject() {
    let (mem, linux) = open_61();
    let ks = linux.info().kernel_space;
    let truth = truth_modules(FIXTURE);
    // A module in the middle of the list (its neighbours are modules, not the list head).
    let (victim_name, victim_base) = truth[truth.len() / 2].clone();
    let victim = linux
        .modules(&mem)
        .filter_map(Result::ok)
        .find(|m| m.name == victim_name)
        .unwrap();
    assert_eq!(victim.base.0, victim_base);
    let mut p = Patched::new(mem.backend().clone());
    list_del(
        &mut p,
        &mem,
        ks,
        Gva(victim.object.0 + off(&linux, "module", "list")),
    );
    let patched = GuestMemory::new(p);
    let v = linux.module_cross_view(&patched).unwrap();
    let rest: Vec<(String, u64)> = truth
        .iter()
        .filter(|(n, _)| *n != victim_name)
        .cloned()
        .collect();
    let listed: Vec<(String, u64)> = v
        .listed
        .iter()
        .map(|m| (m.name.clone(), m.base.0))
        .collect();
    assert_eq!(listed, rest, "the rest of the list is intact");
    assert_eq!(v.hidden.len(), 1, "{:?}", v.hidden);
    let h = &v.hidden[0];
    assert_eq!(
        (h.module.name.as_str(), h.module.base.0, h.module.object),
        (victim_name.as_str(), victim_base, victim.object)
    );
    // Its memory is still a vmap area holding its `struct module`.
    assert_eq!(h.views, [ModuleView::Kobjects, ModuleView::VmapAreas]);
    assert_eq!(h.state, 0, "MODULE_STATE_LIVE");
    assert!(v.errors.is_empty(), "{:?}", v.errors);
}

#[test]
fn a_corrupt_kset_list_ends_the_walk_with_an_error() {
    let (mem, linux) = open_61();
    let ks = linux.info().kernel_space;
    let mods: Vec<_> = linux.modules(&mem).filter_map(Result::ok).collect();
    let entry_of = |m: &xenvmi::os::Module| {
        Gva(m.object.0
            + off(&linux, "module", "mkobj")
            + off(&linux, "module_kobject", "kobj")
            + off(&linux, "kobject", "entry"))
    };
    let (a, b) = (entry_of(&mods[0]), entry_of(&mods[1]));
    let mod_ptr = |m: &xenvmi::os::Module| {
        Gva(m.object.0 + off(&linux, "module", "mkobj") + off(&linux, "module_kobject", "mod"))
    };
    let cases: Vec<(&str, Patched<Arc<Snapshot>>, &str)> = {
        let mut v = Vec::new();
        // A cycle: each of two kobjects' entry points at the other.
        let mut p = Patched::new(mem.backend().clone());
        p.set_u64(&mem, ks, a, b.0);
        p.set_u64(&mem, ks, b, a.0);
        v.push(("cycle", p, "loops without returning"));
        let mut p = Patched::new(mem.backend().clone());
        p.set_u64(&mem, ks, a, 0xdead_0000_0000_0000);
        v.push(("wild link", p, "module_kset list"));
        let mut p = Patched::new(mem.backend().clone());
        p.set_u64(&mem, ks, a, 0);
        v.push(("NULL link", p, "NULL link"));
        let mut p = Patched::new(mem.backend().clone());
        p.set_u64(&mem, ks, mod_ptr(&mods[0]), mods[1].object.0);
        v.push(("forged mod pointer", p, "does not embed it"));
        v
    };
    for (case, p, says) in cases {
        let patched = GuestMemory::new(p);
        let v = linux.module_cross_view(&patched).unwrap();
        assert!(v.hidden.is_empty(), "{case}: {:?}", v.hidden);
        assert!(
            v.errors.iter().any(|e| e.contains(says)),
            "{case}: {:?}",
            v.errors
        );
        assert_eq!(v.listed.len(), mods.len(), "{case}: the list is untouched");
    }
}

/// Allocators of the modules region other than the module loader (mm/, kernel/bpf/,
/// kernel/kprobes.c, arch/x86/kernel/ftrace.c).
const OTHER_ALLOCATORS: &[&str] = &[
    "bpf_prog_pack_alloc",
    "bpf_jit_binary_alloc",
    "bpf_jit_alloc_exec",
    "alloc_insn_page",
    "create_trampoline",
];

#[test]
fn every_fixture_accounts_for_its_module_memory_by_vmap_area() {
    for fixture in FIXTURES {
        let (mem, linux) = support::linux::open(fixture);
        let v = linux.module_cross_view(&mem).unwrap();
        let areas = linux.module_region_areas(&mem).unwrap();
        assert!(areas.errors.is_empty(), "{fixture}: {:?}", areas.errors);
        assert_eq!(v.areas, areas.areas.len());
        // Every region of every listed module lies inside one busy area.
        for m in &v.listed {
            let regions = linux.module_regions(&mem, m.object).unwrap();
            assert!(!regions.is_empty(), "{fixture}: {}", m.name);
            for (s, e) in regions {
                assert!(
                    areas.areas.iter().any(|a| a.start.0 <= s && e <= a.end.0),
                    "{fixture}: {} region {s:#x}-{e:#x} has no vmap area",
                    m.name
                );
            }
        }
        // The areas no module accounts for come from the region's other allocators.
        for a in &v.unattributed {
            let caller = linux.symbolize(&mem, a.caller).map(|s| s.to_string());
            assert!(
                caller.as_deref().is_some_and(|c| OTHER_ALLOCATORS
                    .iter()
                    .any(|o| c.starts_with(&format!("{o}+")))),
                "{fixture}: area {}-{} allocated by {caller:?}",
                a.start,
                a.end
            );
        }
        assert!(
            v.areas > v.unattributed.len(),
            "{fixture}: module areas are attributed"
        );
        assert!(v.hidden.is_empty(), "{fixture}: {:?}", v.hidden);
        assert!(v.errors.is_empty(), "{fixture}: {:?}", v.errors);
    }
}

/// `list_del(node)` in `p`: `prev->next = next; next->prev = prev`.
fn list_del<I: xenvmi::backend::PhysicalMemory, B: xenvmi::backend::PhysicalMemory>(
    p: &mut Patched<I>,
    mem: &GuestMemory<B>,
    ks: xenvmi::mem::AddressSpace,
    node: Gva,
) {
    let next = mem.read_u64(ks, node).unwrap();
    let prev = mem.read_u64(ks, Gva(node.0 + 8)).unwrap();
    p.set_u64(mem, ks, Gva(prev), next);
    p.set_u64(mem, ks, Gva(next + 8), prev);
}

/// A module hidden from both the `modules` list and `module_kset` (as a rootkit that also
/// deletes its kobject leaves it) is found by its vmap area, and all its memory is accounted
/// for (on 6.12 its text is an area apart from the data holding its `struct module`).
#[test]
fn a_module_unlinked_from_list_and_kset_is_found_by_its_vmap_area() {
    for fixture in [FIXTURE, "linux-6.12"] {
        let (mem, linux) = support::linux::open(fixture);
        let ks = linux.info().kernel_space;
        let truth = truth_modules(fixture);
        let (victim_name, victim_base) = truth[truth.len() / 2].clone();
        let victim = linux
            .modules(&mem)
            .filter_map(Result::ok)
            .find(|m| m.name == victim_name)
            .unwrap();
        let before = linux.module_cross_view(&mem).unwrap();
        let mut p = Patched::new(mem.backend());
        list_del(
            &mut p,
            &mem,
            ks,
            Gva(victim.object.0 + off(&linux, "module", "list")),
        );
        list_del(
            &mut p,
            &mem,
            ks,
            Gva(victim.object.0
                + off(&linux, "module", "mkobj")
                + off(&linux, "module_kobject", "kobj")
                + off(&linux, "kobject", "entry")),
        );
        let patched = GuestMemory::new(p);
        let v = linux.module_cross_view(&patched).unwrap();
        assert_eq!(v.listed.len(), truth.len() - 1, "{fixture}");
        assert_eq!(v.kobjects.len(), truth.len() - 1, "{fixture}");
        assert_eq!(v.hidden.len(), 1, "{fixture}: {:?}", v.hidden);
        let h = &v.hidden[0];
        assert_eq!(
            (h.module.name.as_str(), h.module.base.0, h.module.object),
            (victim_name.as_str(), victim_base, victim.object),
            "{fixture}"
        );
        assert_eq!(h.views, [ModuleView::VmapAreas], "{fixture}");
        assert_eq!(h.state, 0, "{fixture}: MODULE_STATE_LIVE");
        assert_eq!(v.unattributed, before.unattributed, "{fixture}");
        assert!(v.errors.is_empty(), "{fixture}: {:?}", v.errors);
    }
}

#[test]
fn a_corrupt_vmap_area_list_ends_the_walk_with_an_error() {
    let (mem, linux) = open_61();
    let ks = linux.info().kernel_space;
    let list = off(&linux, "vmap_area", "list");
    let head = linux.symbol("vmap_area_list").unwrap();
    // The last two areas (the highest addresses: the modules region).
    let last = Gva(mem.read_u64(ks, Gva(head.0 + 8)).unwrap());
    let before_last = Gva(mem.read_u64(ks, Gva(last.0 + 8)).unwrap());
    assert_ne!(last.0 - list, 0);
    let mut cases = Vec::new();
    // A cycle of the prev links.
    let mut p = Patched::new(mem.backend().clone());
    p.set_u64(&mem, ks, Gva(before_last.0 + 8), last.0);
    cases.push(("cycle", p, "loops without returning"));
    let mut p = Patched::new(mem.backend().clone());
    p.set_u64(&mem, ks, Gva(before_last.0 + 8), 0xdead_0000_0000_0000);
    cases.push(("wild link", p, "vmap area"));
    for (case, p, says) in cases {
        let patched = GuestMemory::new(p);
        let v = linux.module_cross_view(&patched).unwrap();
        assert!(v.hidden.is_empty(), "{case}: {:?}", v.hidden);
        assert!(
            v.errors.iter().any(|e| e.contains(says)),
            "{case}: {:?}",
            v.errors
        );
    }
}
