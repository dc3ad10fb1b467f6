//! Kernel addresses as `symbol+offset` (`Linux::symbolizer`, `Linux::symbolize`) on the six
//! real Linux dumps, checked against each guest's own `/proc/kallsyms` at dump time
//! (`kallsyms.zst`): its kernel symbols, and its module symbols (`addr type name [module]`),
//! which come from each module's own symbol table, less the local labels the kernel's own
//! lookup passes over. Nothing here compares with output recorded from xenvmi.

mod support;

use std::collections::{BTreeMap, BTreeSet};

use support::fixture::{fixture_file, ground_truth};
use xenvmi::Gva;

use support::linux::FIXTURES;

/// The guest's `/proc/kallsyms`: names by address, for the kernel (`None`) and each module.
type Names = BTreeMap<Option<String>, BTreeMap<u64, BTreeSet<String>>>;

fn guest_kallsyms(f: &str) -> Names {
    let text = std::fs::read_to_string(fixture_file(f, "kallsyms").unwrap()).unwrap();
    let mut out = Names::new();
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let (Some(addr), Some(kind), Some(name)) = (it.next(), it.next(), it.next()) else {
            continue;
        };
        if kind.eq_ignore_ascii_case("a") {
            continue; // per-CPU offsets and constants, not addresses
        }
        if name.starts_with(".L") || name.starts_with('$') {
            // Local labels (`.LC0`) that /proc/kallsyms lists for modules, but the kernel's
            // own lookup (`find_kallsyms_symbol`, `is_mapping_symbol`) never answers with.
            continue;
        }
        let module = it
            .next()
            .map(|m| m.trim_matches(|c| c == '[' || c == ']').to_owned());
        let addr = u64::from_str_radix(addr, 16).unwrap();
        out.entry(module)
            .or_default()
            .entry(addr)
            .or_default()
            .insert(name.to_owned());
    }
    out
}

#[test]
fn kernel_and_module_addresses_resolve_as_the_guests_kallsyms_says() {
    for f in FIXTURES {
        let (mem, linux) = support::linux::open(f);
        let names = guest_kallsyms(f);
        let gt = ground_truth(f);
        let modules: BTreeSet<String> = gt["module_names_list_order"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m.as_str().unwrap().to_owned())
            .collect();
        let sym = linux.symbolizer(&mem);
        assert_eq!(sym.module_count(), modules.len(), "{f}");

        // The kernel: every 61st symbol of the image, at its address and one byte on.
        let text = linux.info().text_va.0;
        let end = linux.symbol("_end").unwrap().0;
        let core: Vec<(&u64, &BTreeSet<String>)> = names[&None].range(text..end).collect();
        let mut kernel = 0;
        for (i, w) in core.windows(2).enumerate().step_by(61) {
            let ((&a, at), (&next, _)) = (w[0], w[1]);
            let got = sym
                .symbolize(Gva(a))
                .unwrap_or_else(|| panic!("{f}: {a:#x}"));
            let name = got.symbol.clone().unwrap();
            assert!(at.contains(&name), "{f}: {a:#x}: {got} not one of {at:?}");
            assert_eq!((got.offset, &got.module), (0, &None), "{f}: {a:#x}");
            if next > a + 1 {
                let got = sym.symbolize(Gva(a + 1)).unwrap();
                assert!(at.contains(got.symbol.as_deref().unwrap()), "{f}: {got}");
                assert_eq!(got.offset, 1, "{f}: {i}");
            }
            kernel += 1;
        }

        // Every module symbol, at its address and between it and the next.
        let mut in_modules = 0;
        for (module, by_addr) in names.iter().filter_map(|(m, v)| Some((m.as_ref()?, v))) {
            if !modules.contains(module) {
                continue; // [bpf], [__builtin__ftrace] trampolines: no struct module
            }
            let addrs: Vec<_> = by_addr.iter().collect();
            for (k, &(&a, at)) in addrs.iter().enumerate() {
                let got = sym
                    .symbolize(Gva(a))
                    .unwrap_or_else(|| panic!("{f}: [{module}] {a:#x} {at:?}"));
                assert_eq!(got.module.as_deref(), Some(module.as_str()), "{f}: {got}");
                let name = got.symbol.clone().unwrap_or_default();
                assert!(at.contains(&name), "{f}: {a:#x}: {got} not one of {at:?}");
                assert_eq!(got.offset, 0, "{f}: {got}");
                // One byte on, when that is before the next symbol (6.4+ modules have
                // several regions, with gaps the guest's list does not show).
                let next = addrs.get(k + 1).map_or(a + 2, |n| *n.0);
                if next > a + 1 {
                    let got = sym
                        .symbolize(Gva(a + 1))
                        .unwrap_or_else(|| panic!("{f}: [{module}] {a:#x}+1 {at:?}"));
                    assert!(
                        at.contains(got.symbol.as_deref().unwrap_or("")),
                        "{f}: {got}"
                    );
                    assert_eq!(got.offset, 1, "{f}: {got}");
                }
                in_modules += 1;
            }
        }
        // A module's base, one-off: the same answer.
        let m = linux.modules(&mem).next().unwrap().unwrap();
        let one = linux.symbolize(&mem, m.base).unwrap();
        assert_eq!(Some(&one), sym.symbolize(m.base).as_ref(), "{f}");
        assert_eq!(one.module.as_deref(), Some(m.name.as_str()), "{f}");
        // Outside the image and every module: nothing.
        assert_eq!(sym.symbolize(Gva(0x1000)), None, "{f}");
        assert_eq!(sym.symbolize(linux.info().page_offset_base), None, "{f}");
        eprintln!("{f}: {kernel} kernel and {in_modules} module symbols as the guest lists them");
        assert!(
            kernel > 1000 && in_modules > 100,
            "{f}: {kernel} {in_modules}"
        );
    }
}
