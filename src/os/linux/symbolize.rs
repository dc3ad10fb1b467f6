//! Kernel addresses as `symbol+offset`, modules included (what `%pS` prints: `schedule+0x3c`,
//! `dummy_init_one+0x12 [dummy]`).
//!
//! An address inside the kernel image (`_text` up to `_end`) is resolved with the kernel's
//! symbol table (the in-guest kallsyms tables, or the profile's). An address inside a loaded
//! module's memory (each region of `struct module`: `core_layout`/`init_layout` up to 6.3,
//! `mem[]` from 6.4) is resolved with that module's own symbol table, as the kernel's
//! `find_kallsyms_symbol` does: `module->kallsyms` is a `struct mod_kallsyms` whose `symtab`
//! holds `num_symtab` ELF symbols (`Elf64_Sym`, 24 bytes) with run-time values and whose
//! `strtab` holds their names; the symbol is the highest-valued defined one at or below the
//! address (the first in table order among equals), skipping unnamed and mapping symbols.
//! A module whose table cannot be read, or is larger than [`MAX_MODULE_SYMBOLS`], resolves to
//! `module+offset` from the start of the region holding the address.
//!
//! Bounded: the module walk by [`super::MAX_MODULES`], a module's table by
//! [`MAX_MODULE_SYMBOLS`] entries read in 64 KiB pieces, names by [`KSYM_NAME_LEN`] bytes
//! and at most [`MAX_NAME_READS`] candidates per address.

use super::Linux;
use crate::addr::Gva;
use crate::backend::PhysicalMemory;
use crate::error::{Error, Result};
use crate::mem::GuestMemory;

/// Most entries of one module's symbol table read (a large module has tens of thousands).
pub const MAX_MODULE_SYMBOLS: u64 = 1 << 18;
/// Longest symbol name read (the kernel's `KSYM_NAME_LEN`).
pub const KSYM_NAME_LEN: usize = 512;
/// Most candidate names read for one address (candidates with an empty or mapping-symbol
/// name are passed over, as the kernel does).
pub const MAX_NAME_READS: usize = 64;

/// Size of an `Elf64_Sym`.
const ELF64_SYM: u64 = 24;
/// Symbol-table entries read at once (64 KiB).
const SYMS_PER_READ: u64 = 2730;

/// A kernel address resolved (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelSymbol {
    /// The symbol at or below the address; `None` for a module whose symbols could not be
    /// read.
    pub symbol: Option<String>,
    /// How far past the symbol the address lies; without a symbol, past the start of the
    /// module's memory region that holds it.
    pub offset: u64,
    /// The module, `None` for the kernel image.
    pub module: Option<String>,
}

impl std::fmt::Display for KernelSymbol {
    /// `name+0x10`, `name+0x10 [module]`, or `module+0x10` without a symbol.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.symbol, &self.module) {
            (Some(s), None) => write!(f, "{s}+{:#x}", self.offset),
            (Some(s), Some(m)) => write!(f, "{s}+{:#x} [{m}]", self.offset),
            (None, Some(m)) => write!(f, "{m}+{:#x}", self.offset),
            (None, None) => write!(f, "{:#x}", self.offset),
        }
    }
}

/// Where a module's symbols are (`struct mod_kallsyms`).
#[derive(Clone, Copy, Debug)]
struct ModKallsyms {
    symtab: Gva,
    num_symtab: u32,
    strtab: Gva,
}

/// What a [`Symbolizer`] keeps of one module.
#[derive(Clone, Debug)]
struct ModuleMemory {
    name: String,
    /// `[start, end)` of each non-empty region.
    regions: Vec<(u64, u64)>,
    kallsyms: Option<ModKallsyms>,
}

/// Resolves many addresses against one walk of the module list (see the module docs).
/// Made by [`Linux::symbolizer`]; the module list is read once, a module's symbols at each
/// lookup.
pub struct Symbolizer<'a, B> {
    linux: &'a Linux,
    mem: &'a GuestMemory<B>,
    /// `[_text, _end)` at run time (`None` without `_end`: then the symbol table's own
    /// bound applies).
    image: Option<(u64, u64)>,
    modules: Vec<ModuleMemory>,
}

impl<B> std::fmt::Debug for Symbolizer<'_, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Symbolizer")
            .field("image", &self.image)
            .field("modules", &self.modules.len())
            .finish()
    }
}

fn add(base: Gva, off: u64, what: &'static str) -> Result<Gva> {
    base.checked_add(off).ok_or(Error::Overflow(what))
}

/// The names the kernel's `is_mapping_symbol` passes over (`$a`, `$x.1`, `.L...`).
fn is_mapping_symbol(name: &str) -> bool {
    let b = name.as_bytes();
    if b.starts_with(b".L") {
        return true;
    }
    b.first() == Some(&b'$')
        && b.get(1).is_some_and(|c| b"axtd".contains(c))
        && matches!(b.get(2), None | Some(b'.'))
}

impl Linux {
    /// A symbolizer over the modules loaded now (one walk of the module list; modules whose
    /// `struct module` cannot be read are left out).
    pub fn symbolizer<'a, B: PhysicalMemory>(
        &'a self,
        mem: &'a GuestMemory<B>,
    ) -> Symbolizer<'a, B> {
        let image = self
            .symbol("_end")
            .map(|end| (self.info().text_va.0, end.0));
        let modules = self
            .modules(mem)
            .filter_map(|m| m.ok())
            .filter_map(|m| self.module_memory(mem, m.object, m.name).ok())
            .collect();
        Symbolizer {
            linux: self,
            mem,
            image,
            modules,
        }
    }

    /// Resolve one kernel address as `symbol+offset` (see [`crate::os::linux::symbolize`]);
    /// `None` outside the kernel image and every module. For many addresses, make one
    /// [`Linux::symbolizer`].
    pub fn symbolize<B: PhysicalMemory>(
        &self,
        mem: &GuestMemory<B>,
        addr: Gva,
    ) -> Option<KernelSymbol> {
        self.symbolizer(mem).symbolize(addr)
    }

    /// The regions and symbol table of the `struct module` at `module`.
    fn module_memory<B: PhysicalMemory>(
        &self,
        mem: &GuestMemory<B>,
        module: Gva,
        name: String,
    ) -> Result<ModuleMemory> {
        let regions = self.module_regions(mem, module)?;
        let kallsyms = self.mod_kallsyms(mem, module).ok().flatten();
        Ok(ModuleMemory {
            name,
            regions,
            kallsyms,
        })
    }

    /// `module->kallsyms`, `None` when NULL or when the kernel's types lack it.
    fn mod_kallsyms<B: PhysicalMemory>(
        &self,
        mem: &GuestMemory<B>,
        module: Gva,
    ) -> Result<Option<ModKallsyms>> {
        let t = self.types();
        let ks = self.info().kernel_space;
        let ptr = mem.read_va(
            ks,
            add(module, t.require("module", "kallsyms")?, "module.kallsyms")?,
        )?;
        if ptr.0 == 0 {
            return Ok(None);
        }
        let field = |f: &str| t.require("mod_kallsyms", f);
        Ok(Some(ModKallsyms {
            symtab: mem.read_va(ks, add(ptr, field("symtab")?, "mod_kallsyms.symtab")?)?,
            num_symtab: mem.read_u32(
                ks,
                add(ptr, field("num_symtab")?, "mod_kallsyms.num_symtab")?,
            )?,
            strtab: mem.read_va(ks, add(ptr, field("strtab")?, "mod_kallsyms.strtab")?)?,
        }))
    }
}

impl<B: PhysicalMemory> Symbolizer<'_, B> {
    /// How many modules were found.
    pub fn module_count(&self) -> usize {
        self.modules.len()
    }

    /// Resolve `addr` (see the module docs); `None` outside the kernel image and every
    /// module.
    pub fn symbolize(&self, addr: Gva) -> Option<KernelSymbol> {
        let a = addr.0;
        let in_image = match self.image {
            Some((start, end)) => (start..end).contains(&a),
            None => a >= self.linux.info().text_va.0,
        };
        if in_image {
            let core = self
                .linux
                .symbols()
                .symbolize(a.wrapping_sub(self.linux.slide()));
            if let Some(s) = core {
                return Some(KernelSymbol {
                    symbol: Some(s.name.to_owned()),
                    offset: s.offset,
                    module: None,
                });
            }
        }
        let (m, &(start, end)) = self.modules.iter().find_map(|m| {
            m.regions
                .iter()
                .find(|(s, e)| (*s..*e).contains(&a))
                .map(|r| (m, r))
        })?;
        let found = m
            .kallsyms
            .and_then(|k| self.module_symbol(k, a, start, end).ok().flatten());
        Some(match found {
            Some((name, value)) => KernelSymbol {
                symbol: Some(name),
                offset: a - value,
                module: Some(m.name.clone()),
            },
            None => KernelSymbol {
                symbol: None,
                offset: a - start,
                module: Some(m.name.clone()),
            },
        })
    }

    /// The module symbol at or below `addr`, inside the region `[start, end)` holding it:
    /// its name and value.
    fn module_symbol(
        &self,
        k: ModKallsyms,
        addr: u64,
        start: u64,
        end: u64,
    ) -> Result<Option<(String, u64)>> {
        let ks = self.linux.info().kernel_space;
        let n = u64::from(k.num_symtab);
        if n > MAX_MODULE_SYMBOLS {
            return Err(Error::Corrupt {
                what: "mod_kallsyms.num_symtab",
                addr: k.symtab,
                reason: format!("{n} symbols is more than the {MAX_MODULE_SYMBOLS} read"),
            });
        }
        // (value, index, st_name) of every defined symbol in [start, addr]; entry 0 is the
        // ELF null symbol.
        let mut candidates: Vec<(u64, u64, u32)> = Vec::new();
        let mut i = 1u64;
        while i < n {
            let count = (n - i).min(SYMS_PER_READ);
            let at = add(k.symtab, i * ELF64_SYM, "mod_kallsyms.symtab[]")?;
            let buf = self.mem.read_bytes(ks, at, (count * ELF64_SYM) as usize)?;
            for (j, e) in buf.chunks_exact(ELF64_SYM as usize).enumerate() {
                let le32 = |o: usize| u32::from_le_bytes([e[o], e[o + 1], e[o + 2], e[o + 3]]);
                let st_name = le32(0);
                let st_shndx = u16::from_le_bytes([e[6], e[7]]);
                let value = u64::from(le32(8)) | u64::from(le32(12)) << 32;
                if st_shndx != 0 && (start..=addr).contains(&value) && value < end {
                    candidates.push((value, i + j as u64, st_name));
                }
            }
            i += count;
        }
        // Highest value first; among equal values the first in the table.
        candidates.sort_unstable_by(|x, y| y.0.cmp(&x.0).then(x.1.cmp(&y.1)));
        for &(value, _, st_name) in candidates.iter().take(MAX_NAME_READS) {
            let at = add(k.strtab, u64::from(st_name), "mod_kallsyms.strtab")?;
            let Ok(name) = self.mem.read_cstring(ks, at, KSYM_NAME_LEN) else {
                continue;
            };
            if !name.is_empty() && !is_mapping_symbol(&name) {
                return Ok(Some((name, value)));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping_symbols_are_those_the_kernel_skips() {
        for m in ["$a", "$x", "$t.1", "$d", ".Ltmp0"] {
            assert!(is_mapping_symbol(m), "{m}");
        }
        for n in ["$ab", "$", "dummy_init", "$z", ".text"] {
            assert!(!is_mapping_symbol(n), "{n}");
        }
    }

    #[test]
    fn shown_as_the_kernel_prints_them() {
        let s = |symbol: Option<&str>, offset, module: Option<&str>| KernelSymbol {
            symbol: symbol.map(str::to_owned),
            offset,
            module: module.map(str::to_owned),
        };
        assert_eq!(s(Some("schedule"), 0x3c, None).to_string(), "schedule+0x3c");
        assert_eq!(
            s(Some("dummy_init"), 0, Some("dummy")).to_string(),
            "dummy_init+0x0 [dummy]"
        );
        assert_eq!(s(None, 0x10, Some("dummy")).to_string(), "dummy+0x10");
    }
}
