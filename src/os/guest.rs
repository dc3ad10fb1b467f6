//! One OS-neutral view of a guest kernel: [`GuestOs`], implemented by [`Linux`] and
//! [`Windows`], and [`Guest`], either of them as [`crate::os::discover`] finds it.
//!
//! What both kernels answer the same way lives here once: symbol lookup both ways (the
//! profile's table plus the kernel's load slide: KASLR on Linux, the image base on Windows,
//! whose tables hold RVAs), the CR3 → process rules and the kernel's address space. The walks
//! themselves (`task_struct` / `_EPROCESS` lists) stay with each OS; code that only needs
//! processes, modules and symbols is written once against the trait:
//!
//! ```no_run
//! use xenvmi::backend::snapshot::Snapshot;
//! use xenvmi::mem::GuestMemory;
//! use xenvmi::os::{discover, DiscoverOptions, GuestOs};
//! let snap = Snapshot::open("guest.elf")?;
//! let regs = snap.all_registers().to_vec();
//! let mem = GuestMemory::new(snap);
//! let guest = discover(&mem, &regs, DiscoverOptions::default())?;
//! println!("{} {}", guest.kind(), guest.os_info().release);
//! for p in guest.processes(&mem).flatten() {
//!     println!("{} {}", p.pid, p.name);
//! }
//! # Ok::<(), xenvmi::Error>(())
//! ```

use crate::addr::{Gpa, Gva};
use crate::backend::PhysicalMemory;
use crate::error::{Error, Result};
use crate::mem::{AddressSpace, GuestMemory};
use crate::os::linux::Linux;
use crate::os::profile::{SymbolOffset, SymbolTable};
use crate::os::windows::{Windows, WindowsInfo};
use crate::os::{Module, Process};
use crate::regs::cr3_to_root;

/// Which operating system a guest runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OsKind {
    /// A Linux kernel (x86-64).
    Linux,
    /// A Windows (x64) kernel, ntoskrnl.
    Windows,
}

impl std::fmt::Display for OsKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OsKind::Linux => "Linux",
            OsKind::Windows => "Windows",
        })
    }
}

/// What every OS says about its kernel (each OS's own info has more: [`Linux::info`],
/// [`Windows::info`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OsInfo {
    /// Which OS.
    pub kind: OsKind,
    /// The kernel release: Linux `uname -r` (`6.1.0-56-amd64`), Windows the build number
    /// (`NtBuildNumber & 0xffff`, `19041`), empty when it could not be read.
    pub release: String,
    /// Linux `linux_banner` (`/proc/version`); Windows the kernel's PDB name and
    /// symbol-server key with the profile in use
    /// (`ntkrnlmp.pdb 5278AFF86C341677D7D7835C85B7B8441 (profile ...)`).
    pub banner: String,
    /// Run-time address of the kernel image (Linux `_text`, Windows ntoskrnl's image base).
    pub kernel_base: Gva,
    /// The kernel's own page tables (Linux `init_top_pgt`, Windows the System process's
    /// `DirectoryTableBase`).
    pub kernel_space: AddressSpace,
    /// Where the symbols came from (a profile file, the in-guest kallsyms tables).
    pub symbol_source: String,
}

/// A guest kernel found in memory, ready to walk, whatever its OS.
///
/// Implementors give their symbol table, its slide, the two list walks and what the
/// kernel's own page tables are; symbol lookup both ways and CR3 → process are provided,
/// the same for every OS.
pub trait GuestOs {
    /// Which OS this is.
    fn kind(&self) -> OsKind;

    /// What was found about the kernel.
    fn os_info(&self) -> OsInfo;

    /// The kernel's own address space (its page tables, paging mode).
    fn kernel_space(&self) -> AddressSpace;

    /// The profile's symbol table, addresses as recorded (add [`GuestOs::symbol_slide`]).
    fn symbol_table(&self) -> &SymbolTable;

    /// run-time address = table address + slide (Linux: the KASLR slide against the table;
    /// Windows: the image base, the table holding RVAs).
    fn symbol_slide(&self) -> u64;

    /// Every process, in the kernel's list order; one `Result` per element (see each OS's
    /// walk: [`Linux::processes`], [`Windows::processes`]).
    fn processes<'a, B: PhysicalMemory>(
        &'a self,
        mem: &'a GuestMemory<B>,
    ) -> impl Iterator<Item = Result<Process>> + 'a;

    /// Every kernel module (Linux modules, Windows drivers with ntoskrnl first), in the
    /// kernel's list order; one `Result` per element.
    fn modules<'a, B: PhysicalMemory>(
        &'a self,
        mem: &'a GuestMemory<B>,
    ) -> impl Iterator<Item = Result<Module>> + 'a;

    /// Whether the user half of a process's page tables is the page after its kernel root
    /// (Linux KPTI's 8 KiB pair), so that a CR3 with bit 12 set belongs to the process whose
    /// root is the page below. Windows keeps a separate `UserDirectoryTableBase` instead
    /// ([`Process::user_dtb`]).
    fn user_root_is_next_page(&self) -> bool;

    /// Run-time address of a kernel symbol (on Windows also `driver!Export` and ntoskrnl's
    /// exports, once [`Windows::driver_symbols`] has read them).
    fn symbol(&self, name: &str) -> Option<Gva> {
        self.symbol_table()
            .get(name)
            .map(|a| Gva(a.wrapping_add(self.symbol_slide())))
    }

    /// Run-time address of `name`, or an error naming the symbol and the table.
    ///
    /// # Errors
    /// [`Error::MissingSymbol`].
    fn require_symbol(&self, name: &str) -> Result<Gva> {
        self.symbol(name).ok_or_else(|| Error::MissingSymbol {
            symbol: name.into(),
            source_name: self.symbol_table().source_name().into(),
            hint: String::new(),
        })
    }

    /// The kernel symbol at or below a run-time address (`schedule+0x3c`,
    /// `KiSystemCall64+0x10`). On Linux from the profile's table only (modules are not
    /// searched: [`Linux::symbolize`] covers them); on Windows the loaded drivers' exports
    /// too (`ACPI!AcpiGetTable+0x10`, `kd+0x80`) once [`Windows::driver_symbols`] has read
    /// them. [`SymbolOffset::addr`] is the symbol's run-time address. `None` below the first
    /// symbol and more than 1 MiB past the last, outside every driver.
    fn symbol_at(&self, addr: Gva) -> Option<SymbolOffset<'_>> {
        profile_symbol_at(self, addr)
    }

    /// Whether a CR3 value selects the kernel's own page tables (an idle vCPU, a kernel
    /// thread, a kernel process sharing them). PCID bits are ignored, and on Linux the KPTI
    /// user twin of the kernel's root counts too.
    fn is_kernel_cr3(&self, cr3: u64) -> bool {
        let root = cr3_to_root(cr3).0;
        let root = if self.user_root_is_next_page() {
            root & !0x1000
        } else {
            root
        };
        root == self.kernel_space().root.0
    }

    /// The process whose address space a CR3 value selects, from an already-walked list:
    /// its root (PCID bits ignored) is a process's `dtb` or `user_dtb`; failing that, on
    /// Linux, a KPTI user root (bit 12 set) matches the process whose root is the page below.
    /// A CR3 of the kernel's own page tables matches only a process that has them as its own.
    fn owner_of_cr3<'p>(&self, processes: &'p [Process], cr3: u64) -> Option<&'p Process> {
        let root = cr3_to_root(cr3);
        processes
            .iter()
            .find(|p| p.dtb == Some(root) || p.user_dtb == Some(root))
            .or_else(|| {
                let twin = Gpa(root.0 & !0x1000);
                (self.user_root_is_next_page() && root.0 & 0x1000 != 0)
                    .then(|| processes.iter().find(|p| p.dtb == Some(twin)))
                    .flatten()
            })
    }

    /// Walk the process list and return the process owning `cr3` ([`GuestOs::owner_of_cr3`]).
    /// Elements of the walk that cannot be read are skipped; for many lookups keep the list
    /// (or a [`crate::os::linux::Cr3Resolver`]).
    fn process_for_cr3<B: PhysicalMemory>(&self, mem: &GuestMemory<B>, cr3: u64) -> Option<Process>
    where
        Self: Sized,
    {
        let procs: Vec<Process> = self.processes(mem).filter_map(|p| p.ok()).collect();
        self.owner_of_cr3(&procs, cr3).cloned()
    }
}

/// The profile's symbol at or below `addr` (table address + slide): [`GuestOs::symbol_at`]
/// for an OS with nothing more.
fn profile_symbol_at<O: GuestOs + ?Sized>(os: &O, addr: Gva) -> Option<SymbolOffset<'_>> {
    let slide = os.symbol_slide();
    os.symbol_table()
        .symbolize(addr.0.wrapping_sub(slide))
        .map(|s| SymbolOffset {
            addr: s.addr.wrapping_add(slide),
            ..s
        })
}

impl GuestOs for Linux {
    fn kind(&self) -> OsKind {
        OsKind::Linux
    }

    fn os_info(&self) -> OsInfo {
        let k = self.info();
        OsInfo {
            kind: OsKind::Linux,
            release: k.release.clone(),
            banner: k.banner.clone(),
            kernel_base: k.text_va,
            kernel_space: k.kernel_space,
            symbol_source: k.symbol_source.clone(),
        }
    }

    fn kernel_space(&self) -> AddressSpace {
        self.info().kernel_space
    }

    fn symbol_table(&self) -> &SymbolTable {
        self.symbols()
    }

    fn symbol_slide(&self) -> u64 {
        self.slide()
    }

    fn processes<'a, B: PhysicalMemory>(
        &'a self,
        mem: &'a GuestMemory<B>,
    ) -> impl Iterator<Item = Result<Process>> + 'a {
        Linux::processes(self, mem)
    }

    fn modules<'a, B: PhysicalMemory>(
        &'a self,
        mem: &'a GuestMemory<B>,
    ) -> impl Iterator<Item = Result<Module>> + 'a {
        Linux::modules(self, mem)
    }

    fn user_root_is_next_page(&self) -> bool {
        true
    }
}

/// The Windows banner: the kernel's PDB name and symbol-server key, and the profile.
pub(crate) fn windows_banner(w: &WindowsInfo) -> String {
    match &w.codeview {
        Some(cv) => format!(
            "{} {}{:X} (profile {})",
            cv.pdb_path,
            cv.guid_string(),
            cv.age,
            w.profile
        ),
        None => format!("(no CodeView record) (profile {})", w.profile),
    }
}

impl GuestOs for Windows {
    fn kind(&self) -> OsKind {
        OsKind::Windows
    }

    fn os_info(&self) -> OsInfo {
        let w = self.info();
        OsInfo {
            kind: OsKind::Windows,
            release: w.build.map(|b| b.to_string()).unwrap_or_default(),
            banner: windows_banner(w),
            kernel_base: w.kernel_base,
            kernel_space: w.kernel_space,
            symbol_source: self.symbols().source_name().to_owned(),
        }
    }

    fn kernel_space(&self) -> AddressSpace {
        self.info().kernel_space
    }

    fn symbol_table(&self) -> &SymbolTable {
        self.symbols()
    }

    fn symbol_slide(&self) -> u64 {
        self.info().kernel_base.0
    }

    fn symbol(&self, name: &str) -> Option<Gva> {
        self.symbols()
            .get(name)
            .map(|a| Gva(a.wrapping_add(self.symbol_slide())))
            .or_else(|| self.loaded_driver_symbols()?.symbol(name))
    }

    fn symbol_at(&self, addr: Gva) -> Option<SymbolOffset<'_>> {
        let Some(drivers) = self.loaded_driver_symbols() else {
            return profile_symbol_at(self, addr);
        };
        if !drivers.in_kernel(addr) {
            // Inside a driver its own symbols; the profile's only past ntoskrnl's end.
            return drivers
                .symbol_at(addr)
                .or_else(|| profile_symbol_at(self, addr));
        }
        // In ntoskrnl: the nearer of the profile's symbol and the kernel's export.
        match (profile_symbol_at(self, addr), drivers.symbol_at(addr)) {
            (Some(p), Some(e)) if e.addr > p.addr => Some(e),
            (p, e) => p.or(e),
        }
    }

    fn processes<'a, B: PhysicalMemory>(
        &'a self,
        mem: &'a GuestMemory<B>,
    ) -> impl Iterator<Item = Result<Process>> + 'a {
        Windows::processes(self, mem)
    }

    fn modules<'a, B: PhysicalMemory>(
        &'a self,
        mem: &'a GuestMemory<B>,
    ) -> impl Iterator<Item = Result<Module>> + 'a {
        Windows::modules(self, mem)
    }

    fn user_root_is_next_page(&self) -> bool {
        false
    }
}

/// A guest kernel of either OS, as [`crate::os::discover`] finds it. It is a [`GuestOs`];
/// [`Guest::as_linux`] / [`Guest::as_windows`] reach what only one OS has (Linux process
/// detail and symbolization with modules, Windows DLLs and processors).
#[derive(Debug)]
// One per discovered guest: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
pub enum Guest {
    /// A Linux kernel.
    Linux(Linux),
    /// A Windows kernel.
    Windows(Windows),
}

impl Guest {
    /// The Linux kernel, if this is one.
    pub fn as_linux(&self) -> Option<&Linux> {
        match self {
            Guest::Linux(l) => Some(l),
            Guest::Windows(_) => None,
        }
    }

    /// The Windows kernel, if this is one.
    pub fn as_windows(&self) -> Option<&Windows> {
        match self {
            Guest::Windows(w) => Some(w),
            Guest::Linux(_) => None,
        }
    }
}

/// The walk of whichever OS a [`Guest`] holds.
enum Either<L, W> {
    Linux(L),
    Windows(W),
}

impl<T, L: Iterator<Item = T>, W: Iterator<Item = T>> Iterator for Either<L, W> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        match self {
            Either::Linux(l) => l.next(),
            Either::Windows(w) => w.next(),
        }
    }
}

/// Forward one [`GuestOs`] method to the OS a [`Guest`] holds.
macro_rules! forward {
    ($self:ident, $os:ident => $e:expr) => {
        match $self {
            Guest::Linux($os) => $e,
            Guest::Windows($os) => $e,
        }
    };
}

impl GuestOs for Guest {
    fn kind(&self) -> OsKind {
        forward!(self, os => GuestOs::kind(os))
    }

    fn os_info(&self) -> OsInfo {
        forward!(self, os => os.os_info())
    }

    fn kernel_space(&self) -> AddressSpace {
        forward!(self, os => GuestOs::kernel_space(os))
    }

    fn symbol_table(&self) -> &SymbolTable {
        forward!(self, os => os.symbol_table())
    }

    fn symbol_slide(&self) -> u64 {
        forward!(self, os => os.symbol_slide())
    }

    fn symbol(&self, name: &str) -> Option<Gva> {
        forward!(self, os => GuestOs::symbol(os, name))
    }

    fn symbol_at(&self, addr: Gva) -> Option<SymbolOffset<'_>> {
        forward!(self, os => os.symbol_at(addr))
    }

    fn processes<'a, B: PhysicalMemory>(
        &'a self,
        mem: &'a GuestMemory<B>,
    ) -> impl Iterator<Item = Result<Process>> + 'a {
        match self {
            Guest::Linux(l) => Either::Linux(l.processes(mem)),
            Guest::Windows(w) => Either::Windows(w.processes(mem)),
        }
    }

    fn modules<'a, B: PhysicalMemory>(
        &'a self,
        mem: &'a GuestMemory<B>,
    ) -> impl Iterator<Item = Result<Module>> + 'a {
        match self {
            Guest::Linux(l) => Either::Linux(l.modules(mem)),
            Guest::Windows(w) => Either::Windows(w.modules(mem)),
        }
    }

    fn user_root_is_next_page(&self) -> bool {
        forward!(self, os => os.user_root_is_next_page())
    }
}
