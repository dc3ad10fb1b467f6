//! System calls as the guest kernel describes them: for each number, its name and its
//! arguments' C types and names, read from the kernel's own `syscalls_metadata` table (built
//! with `CONFIG_FTRACE_SYSCALLS`, as distribution kernels are), never from a table written
//! here. [`SyscallTable::decode`] then turns one call's six argument registers into values:
//! integers, pointers, and strings read from the caller's memory.
//!
//! `syscalls_metadata` is an array, allocated at boot, of one `struct syscall_metadata *` per
//! entry of `sys_call_table` (NULL where the number has none); its length is the extent of
//! `sys_call_table` (the next symbol's address), at most [`MAX_SYSCALLS`].

use super::Linux;
use crate::addr::Gva;
use crate::backend::PhysicalMemory;
use crate::error::{Error, Result};
use crate::mem::{AddressSpace, GuestMemory};

/// Most system call numbers read.
pub const MAX_SYSCALLS: usize = 1024;
/// Longest name or C type read from the metadata.
const MAX_NAME: usize = 64;
/// Longest string argument read from the caller's memory.
pub const MAX_STRING_ARG: usize = 4096;

/// One argument's declaration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyscallArg {
    /// Its C type as the kernel's `SYSCALL_DEFINE` wrote it (`const char __user *`).
    pub type_name: String,
    /// Its name (`filename`).
    pub name: String,
}

/// One system call's declaration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyscallInfo {
    /// Its number on this architecture.
    pub nr: u32,
    /// Its name without the `sys_` prefix (`openat`).
    pub name: String,
    /// Its arguments, in register order (at most 6).
    pub args: Vec<SyscallArg>,
    /// How each argument is decoded, worked out once from its type when the table is read.
    kinds: Vec<Kind>,
}

/// A decoded argument value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ArgValue {
    /// An integer (the register, sign-extended from the declared width for signed types).
    Int(i64),
    /// An unsigned integer, flags or a size (the register, truncated to the declared width).
    Uint(u64),
    /// A pointer whose target is not decoded (a buffer, a structure).
    Pointer(u64),
    /// A NUL-terminated string read from the caller's memory (at most [`MAX_STRING_ARG`]
    /// bytes, lossy UTF-8).
    Str(String),
    /// A string pointer that could not be read: its address and why.
    Unreadable {
        /// The pointer.
        addr: u64,
        /// Why (a page not present, ...).
        reason: String,
    },
}

/// The system calls of one kernel (see the module docs).
#[derive(Clone, Debug, Default)]
pub struct SyscallTable {
    by_nr: Vec<Option<std::sync::Arc<SyscallInfo>>>,
}

/// How a declared C type is decoded.
fn classify(type_name: &str, arg_name: &str) -> Kind {
    let t = type_name.trim();
    if t.ends_with('*') {
        // `const char __user *` (`const char *` once `__user` is preprocessed away, as the
        // metadata has it) names a string, except the data buffers of write-like calls, which
        // are bytes; `const char *const *` (argv) and `char *` (an output buffer) do not.
        let bare: String = t.replace("__user", "").split_whitespace().collect();
        let is_string = bare == "constchar*";
        let is_buffer = matches!(arg_name, "buf" | "ubuf" | "data" | "value" | "optval");
        return if is_string && !is_buffer {
            Kind::Str
        } else {
            Kind::Ptr
        };
    }
    let width = match t {
        _ if t.contains("char") => 8,
        _ if t.contains("short") => 16,
        _ if t.contains("long")
            || t == "size_t"
            || t == "loff_t"
            || t == "off_t"
            || t == "ssize_t" =>
        {
            64
        }
        _ if t.starts_with("u64") || t.starts_with("__u64") || t.starts_with("s64") => 64,
        _ => 32,
    };
    let unsigned = t.contains("unsigned")
        || t.starts_with('u')
        || t.starts_with("__u")
        || t == "size_t"
        || t.ends_with("_t")
            && !matches!(
                t,
                "pid_t"
                    | "off_t"
                    | "loff_t"
                    | "ssize_t"
                    | "clockid_t"
                    | "timer_t"
                    | "key_serial_t"
                    | "mqd_t"
            );
    if unsigned {
        Kind::Uint(width)
    } else {
        Kind::Int(width)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Int(u32),
    Uint(u32),
    Ptr,
    Str,
}

impl SyscallTable {
    /// Read the table from the guest kernel.
    ///
    /// # Errors
    /// [`Error::MissingSymbol`] when the kernel has no `syscalls_metadata` (built without
    /// `CONFIG_FTRACE_SYSCALLS`) or no `sys_call_table`; [`Error::MissingField`] when its types
    /// lack `struct syscall_metadata`; memory errors for the array itself (its first entry
    /// unreadable; a later unreadable entry only leaves its number undescribed).
    pub fn read<B: PhysicalMemory>(linux: &Linux, mem: &GuestMemory<B>) -> Result<Self> {
        let ks = linux.info().kernel_space;
        let t = linux.types();
        let o_name = t.require("syscall_metadata", "name")?;
        let o_nr = t.require("syscall_metadata", "syscall_nr")?;
        let o_nb = t.require("syscall_metadata", "nb_args")?;
        let o_types = t.require("syscall_metadata", "types")?;
        let o_args = t.require("syscall_metadata", "args")?;
        let table = linux.require_symbol("sys_call_table")?;
        let meta = linux.require_symbol("syscalls_metadata")?;
        // The table's extent: up to the next symbol (a run-time address: symbols are stored
        // at link time plus the slide).
        let slide = linux.slide();
        let count = linux
            .symbols()
            .next_above(table.0.wrapping_sub(slide))
            .map(|next| (next.wrapping_add(slide).wrapping_sub(table.0) / 8) as usize)
            .filter(|&n| n > 0)
            .unwrap_or(MAX_SYSCALLS)
            .min(MAX_SYSCALLS);
        let array = mem.read_va(ks, meta)?;
        if array.0 == 0 {
            return Err(Error::malformed(
                "syscalls_metadata",
                "the kernel's table",
                "NULL: the kernel did not allocate it (syscall tracing off at boot)",
            ));
        }
        let at = |base: Gva, off: u64| {
            base.checked_add(off)
                .ok_or(Error::Overflow("syscall metadata"))
        };
        let string = |p: Gva| -> Result<String> { mem.read_cstring(ks, p, MAX_NAME) };
        // The array itself must be there: its first entry unreadable is an error, not a
        // table describing nothing (a later entry unreadable leaves only its number out).
        mem.read_va(ks, array)?;
        let mut by_nr = Vec::with_capacity(count);
        for nr in 0..count {
            let entry = (|| -> Result<Option<SyscallInfo>> {
                let m = mem.read_va(ks, at(array, nr as u64 * 8)?)?;
                if m.0 == 0 {
                    return Ok(None);
                }
                let name = string(mem.read_va(ks, at(m, o_name)?)?)?;
                // The slot's own number is kept: the metadata's `syscall_nr` is checked to
                // be a number at all (a stray pointer would not have one in range).
                let declared = mem.read_u32(ks, at(m, o_nr)?)?;
                if declared as usize >= MAX_SYSCALLS {
                    return Ok(None);
                }
                let nb = (mem.read_u32(ks, at(m, o_nb)?)? as i32).clamp(0, 6) as u64;
                let types = mem.read_va(ks, at(m, o_types)?)?;
                let names = mem.read_va(ks, at(m, o_args)?)?;
                let mut args = Vec::with_capacity(nb as usize);
                for i in 0..nb {
                    args.push(SyscallArg {
                        type_name: string(mem.read_va(ks, at(types, i * 8)?)?)?,
                        name: string(mem.read_va(ks, at(names, i * 8)?)?)?,
                    });
                }
                let name = name.strip_prefix("sys_").unwrap_or(&name).to_owned();
                let kinds = args
                    .iter()
                    .map(|a| classify(&a.type_name, &a.name))
                    .collect();
                Ok(Some(SyscallInfo {
                    nr: nr as u32,
                    name,
                    args,
                    kinds,
                }))
            })();
            by_nr.push(entry.unwrap_or(None).map(std::sync::Arc::new));
        }
        Ok(SyscallTable { by_nr })
    }

    /// The declaration of number `nr`.
    pub fn get(&self, nr: u64) -> Option<&SyscallInfo> {
        self.by_nr.get(usize::try_from(nr).ok()?)?.as_deref()
    }

    /// The declaration of number `nr`, shared (events carry it without copying its strings).
    pub fn shared(&self, nr: u64) -> Option<std::sync::Arc<SyscallInfo>> {
        self.by_nr.get(usize::try_from(nr).ok()?)?.clone()
    }

    /// The declaration named `name` (`openat`).
    pub fn by_name(&self, name: &str) -> Option<&SyscallInfo> {
        self.iter().find(|s| s.name == name)
    }

    /// Every described system call, by number.
    pub fn iter(&self) -> impl Iterator<Item = &SyscallInfo> {
        self.by_nr.iter().flatten().map(|a| &**a)
    }

    /// Numbers the table covers (described or not).
    pub fn len(&self) -> usize {
        self.by_nr.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.by_nr.is_empty()
    }

    /// Decode one call: `regs` are its six argument registers in order (x86-64: `rdi`, `rsi`,
    /// `rdx`, `r10`, `r8`, `r9`, as `pt_regs` holds them at the syscall's entry), `space` the
    /// caller's address space, for string arguments. `None` for a number the table does not
    /// describe.
    pub fn decode<B: PhysicalMemory>(
        &self,
        mem: &GuestMemory<B>,
        space: AddressSpace,
        nr: u64,
        regs: [u64; 6],
    ) -> Option<Vec<(&SyscallArg, ArgValue)>> {
        let info = self.get(nr)?;
        Some(
            info.args
                .iter()
                .zip(decode_values(mem, space, info, regs))
                .collect(),
        )
    }
}

/// The values of `info`'s arguments in one call (see [`SyscallTable::decode`]), in order.
pub fn decode_values<B: PhysicalMemory>(
    mem: &GuestMemory<B>,
    space: AddressSpace,
    info: &SyscallInfo,
    regs: [u64; 6],
) -> Vec<ArgValue> {
    info.kinds
        .iter()
        .zip(regs)
        .map(|(&k, v)| match k {
            Kind::Int(w) => ArgValue::Int(sign_extend(v, w)),
            Kind::Uint(w) => ArgValue::Uint(if w >= 64 { v } else { v & ((1u64 << w) - 1) }),
            Kind::Ptr => ArgValue::Pointer(v),
            Kind::Str if v == 0 => ArgValue::Pointer(0),
            Kind::Str => match mem.read_cstring(space, Gva(v), MAX_STRING_ARG) {
                Ok(s) => ArgValue::Str(s),
                Err(e) => ArgValue::Unreadable {
                    addr: v,
                    reason: e.to_string(),
                },
            },
        })
        .collect()
}

fn sign_extend(v: u64, width: u32) -> i64 {
    if width >= 64 {
        v as i64
    } else {
        let shift = 64 - width;
        ((v << shift) as i64) >> shift
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c_types_decide_the_decoding() {
        assert_eq!(classify("const char __user *", "filename"), Kind::Str);
        assert_eq!(classify("const char __user *", "buf"), Kind::Ptr);
        assert_eq!(classify("char __user *", "buf"), Kind::Ptr);
        assert_eq!(
            classify("const char __user *const __user *", "argv"),
            Kind::Ptr
        );
        assert_eq!(classify("int", "dfd"), Kind::Int(32));
        assert_eq!(classify("unsigned int", "fd"), Kind::Uint(32));
        assert_eq!(classify("size_t", "count"), Kind::Uint(64));
        assert_eq!(classify("umode_t", "mode"), Kind::Uint(32));
        assert_eq!(classify("pid_t", "pid"), Kind::Int(32));
        assert_eq!(classify("unsigned long", "addr"), Kind::Uint(64));
        assert_eq!(classify("long", "x"), Kind::Int(64));
        assert_eq!(sign_extend(0xffff_ff9c, 32), -100); // AT_FDCWD
        assert_eq!(sign_extend(5, 32), 5);
    }
}
