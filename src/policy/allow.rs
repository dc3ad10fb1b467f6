//! Who may write protected kernel memory: the kernel's own text patching, recognised by the
//! writer's code address, never by lifting the protection.
//!
//! How Linux 6.1 patches its text after boot (`arch/x86/kernel/alternative.c`): jump labels,
//! static calls, kprobes, ftrace and late alternatives all end in `text_poke()` /
//! `text_poke_bp()`, which call `__text_poke()`. That function maps the target's *physical*
//! page at `poking_addr` in a temporary address space (`poking_mm`, switched in with
//! `use_temporary_mm`, so CR3 is neither a process's nor the kernel's) and copies the new
//! bytes through that alias with `text_poke_memcpy()` → `memcpy()` (or `text_poke_memset()` →
//! `memset()`), then checks the result (`BUG_ON(memcmp(addr, opcode, len))`). So:
//!
//! - the write's **virtual** address is not the text address (the protection works on guest
//!   frames, so the alias faults on the same protected frame);
//! - the writing instruction is in `memcpy` (a leaf: `rep movsb; ret`, or `memcpy_orig`
//!   reached by a jump), so the **return address at `[rsp]`** is in `__text_poke` (the
//!   `text_poke_memcpy` wrapper is a tail call);
//! - refusing the write makes the kernel BUG in `__text_poke`'s check, as a real Xen run
//!   showed with a kprobe (alternative.c:1452).
//!
//! The rule ([`WriterAllowList::linux_text_patching`]): a write is the kernel's own when its
//! `rip` is inside the kernel image and resolves (in-guest kallsyms) to a *writer* function
//! (`__text_poke`, `text_poke_memcpy`, `text_poke_memset`), or to a *copy helper* (`memcpy`,
//! `memset` and their variants) whose return address at `[rsp]`, read through the event's own
//! CR3, resolves to a writer. Symbol names are compared without a compiler suffix
//! (`__text_poke.constprop.0` is `__text_poke`). Code in a module never qualifies.
//!
//! **Limit.** This authorises the kernel's patching *path*, not its caller's intent: code that
//! already runs in ring 0 can call `text_poke()` itself (or forge a stack so that a copy
//! helper appears to return into it), and the write is then let through. It stops the common
//! direct writes (a rootkit's `memcpy` into `sys_call_table`, a `cr0`-less text patch, an IDT
//! entry overwrite) and keeps the kernel's own patching working. A stricter check (the whole
//! call chain back to `text_poke_bp_batch` or `arch_jump_label_transform`) needs frame
//! pointers or ORC unwinding, which this does not do.

use super::Guest;
use crate::addr::Gva;
use crate::mem::AddressSpace;
use crate::regs::Registers;

/// Who wrote, as decided by a [`WriterAllowList`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Writer {
    /// `rip` as `symbol+offset`, when it is in the kernel image.
    pub rip_symbol: Option<String>,
    /// Why the write is the kernel's own (`"memcpy+0x3 from __text_poke+0x1a2"`), or `None`
    /// when it is not.
    pub allowed_by: Option<String>,
}

/// The writer functions and copy helpers a write may come from (see the module
/// documentation).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriterAllowList {
    writers: Vec<String>,
    copy_helpers: Vec<String>,
}

/// The function name without a compiler suffix (`.constprop.0`, `.isra.0`, `.cold`).
fn base_name(s: &str) -> &str {
    s.split('.').next().unwrap_or(s)
}

impl WriterAllowList {
    /// Nothing is allowed: every write to a protected range is a violation.
    pub fn none() -> Self {
        WriterAllowList::default()
    }

    /// Linux's text patching on x86-64 (see the module documentation).
    pub fn linux_text_patching() -> Self {
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        WriterAllowList {
            writers: s(&["__text_poke", "text_poke_memcpy", "text_poke_memset"]),
            copy_helpers: s(&[
                "memcpy",
                "__memcpy",
                "memcpy_orig",
                "memcpy_erms",
                "memset",
                "__memset",
                "memset_orig",
                "memset_erms",
            ]),
        }
    }

    /// Also allow writes whose `rip` is in `function` (compared without a compiler suffix).
    pub fn with_writer(mut self, function: &str) -> Self {
        self.writers.push(base_name(function).to_owned());
        self
    }

    /// `addr` as `symbol+offset` if it lies in the kernel's text (`_text` up to `_etext`).
    fn kernel_text_symbol(guest: &Guest<'_>, addr: u64) -> Option<(String, u64)> {
        let l = guest.linux;
        let start = l.info().text_va.0;
        let end = l.symbol("_etext").map_or(u64::MAX, |v| v.0);
        if !(start..end).contains(&addr) {
            return None;
        }
        let s = l.symbols().symbolize(addr.wrapping_sub(l.slide()))?;
        Some((s.name.to_owned(), s.offset))
    }

    /// Decide who wrote, from the registers at the write.
    pub fn judge(&self, guest: &Guest<'_>, regs: &Registers) -> Writer {
        let Some((name, off)) = Self::kernel_text_symbol(guest, regs.rip) else {
            return Writer::default();
        };
        let rip_symbol = format!("{name}+{off:#x}");
        let base = base_name(&name);
        if self.writers.iter().any(|w| w == base) {
            return Writer {
                allowed_by: Some(rip_symbol.clone()),
                rip_symbol: Some(rip_symbol),
            };
        }
        if !self.copy_helpers.iter().any(|h| h == base) {
            return Writer {
                rip_symbol: Some(rip_symbol),
                allowed_by: None,
            };
        }
        let space = AddressSpace::from_cr3(regs.cr3, guest.linux.info().paging);
        let caller = guest
            .mem
            .read_u64(space, Gva(regs.rsp))
            .ok()
            .and_then(|ret| Self::kernel_text_symbol(guest, ret))
            .filter(|(n, _)| self.writers.iter().any(|w| w == base_name(n)));
        Writer {
            allowed_by: caller.map(|(n, o)| format!("{rip_symbol} from {n}+{o:#x}")),
            rip_symbol: Some(rip_symbol),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::base_name;

    #[test]
    fn compiler_suffixes_are_ignored() {
        assert_eq!(base_name("__text_poke.constprop.0"), "__text_poke");
        assert_eq!(base_name("memcpy"), "memcpy");
        assert_eq!(base_name(""), "");
    }
}
