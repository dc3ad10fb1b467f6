//! Operating-system layer: what guest memory means.
//!
//! [`profile`] loads type and symbol information (Volatility3 ISF, BTF, kallsyms/System.map, or
//! the kernel's own tables in guest memory); [`linux`] walks a Linux kernel with it, [`windows`]
//! a Windows kernel (with [`pe`] for the images it loads). The types
//! here are OS-neutral so that Windows guests fit the same API: [`GuestOs`] is what both
//! kernels answer, and [`discover`] tells the OS apart cheaply and finds its kernel.

use crate::addr::{Gpa, Gva};

pub mod cr3;
mod discover;
mod guest;
pub mod linux;
pub(crate) mod list;
pub mod pe;
pub mod profile;
pub mod windows;

pub use cr3::{Cr3Owner, Cr3Resolver};
pub use discover::{
    default_windows_profiles, discover, discover_identified, discover_observed, identify,
    identify_paused, DiscoverOptions, Identification, WINDOWS_PROFILES_ENV,
};
pub use guest::{Guest, GuestOs, OsInfo, OsKind};

/// A process (a thread-group leader on Linux, an `EPROCESS` on Windows).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Process {
    /// Process id (Linux: `task_struct.pid` of the leader).
    pub pid: u64,
    /// Thread-group id (Linux `tgid`; equals `pid` on Windows).
    pub tgid: u64,
    /// Parent's process id (Linux: `real_parent->tgid`).
    pub ppid: u64,
    /// Short name (Linux `comm`, at most 15 bytes; Windows `ImageFileName`).
    pub name: String,
    /// Kernel thread (no user address space).
    pub kernel_thread: bool,
    /// Page-table root of its address space (Linux `__pa(mm->pgd)`, Windows
    /// `DirectoryTableBase`), `None` for kernel threads.
    pub dtb: Option<Gpa>,
    /// The user-mode page-table root when the kernel keeps a separate one (Windows KVA
    /// shadow: `UserDirectoryTableBase`). `None` on Linux, whose KPTI user table is always
    /// the page after `dtb` ([`linux::Linux::owner_of_cr3`] matches it).
    pub user_dtb: Option<Gpa>,
    /// Address of the kernel object (`task_struct` / `EPROCESS`).
    pub object: Gva,
}

/// A loaded kernel module / driver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Module {
    /// Name.
    pub name: String,
    /// Base of its core (text) mapping.
    pub base: Gva,
    /// Size in bytes as the kernel reports it (`/proc/modules`).
    pub size: u64,
    /// Address of the kernel object (`struct module` / `LDR_DATA_TABLE_ENTRY`).
    pub object: Gva,
}

/// `s`, a string read from the guest, made safe to show on a terminal: control characters
/// (C0, DEL, C1: escape sequences that clear the screen or set the window title), a backslash
/// (so the escapes cannot be forged) and the Unicode direction overrides (which reorder what
/// is shown) are written as `\u{..}` / `\\`. Everything else is kept. JSON output needs no
/// such step (its encoder escapes control characters).
pub fn terminal_safe(s: &str) -> std::borrow::Cow<'_, str> {
    let bad = |c: char| {
        c.is_control()
            || c == '\\'
            || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !s.chars().any(bad) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c == '\\' {
            out.push_str("\\\\");
        } else if bad(c) {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod terminal_tests {
    use super::terminal_safe;

    #[test]
    fn escape_sequences_cannot_reach_the_terminal() {
        assert_eq!(terminal_safe("systemd"), "systemd");
        assert_eq!(
            terminal_safe("\u{1b}]0;pwned\u{7}\u{1b}[2J"),
            "\\u{1b}]0;pwned\\u{7}\\u{1b}[2J"
        );
        assert_eq!(terminal_safe("a\\u{1b}"), "a\\\\u{1b}");
        assert_eq!(
            terminal_safe("\u{9b}\u{7f}\u{202e}x"),
            "\\u{9b}\\u{7f}\\u{202e}x"
        );
        assert_eq!(terminal_safe("tab\there"), "tab\\u{9}here");
    }
}
