//! Symbols of the loaded drivers: the exports of every image on `PsLoadedModuleList`, read
//! from its PE export table in guest memory, so that an address inside a driver resolves to
//! `driver!Export+0x10` (or `driver+0x10` when no export precedes it), and ntoskrnl's own
//! exports for what the profile's symbol table lacks.
//!
//! Everything here comes from the guest and is bounded: at most [`MAX_SYMBOL_DRIVERS`]
//! images, [`MAX_DRIVER_EXPORTS`] exports each and [`MAX_TOTAL_EXPORTS`] in all (and
//! [`crate::os::pe`]'s own caps on each table); an image whose header or export table cannot
//! be read is kept as a range (`driver+off`) and named in [`DriverSymbols::problems`]; images
//! that overlap one already taken (or the kernel) are left out, so each address has at most
//! one owner. Lookups are a binary search over what was read once; nothing is read again.

use std::collections::HashMap;

use crate::addr::Gva;
use crate::backend::PhysicalMemory;
use crate::mem::GuestMemory;
use crate::os::pe::{MappedImage, Pe};
use crate::os::profile::SymbolOffset;
use crate::os::windows::Windows;

/// Most images (drivers, with ntoskrnl) whose exports are read.
pub const MAX_SYMBOL_DRIVERS: usize = 4096;
/// Most exports taken from one image (ntoskrnl has about 3,000).
pub const MAX_DRIVER_EXPORTS: usize = 1 << 14;
/// Most exports taken from all images together.
pub const MAX_TOTAL_EXPORTS: usize = 1 << 18;

/// Index of the kernel in [`DriverSymbols`]' export list (drivers have their image index).
const KERNEL: usize = usize::MAX;

/// A loaded image the symbols cover.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DriverImage {
    /// Its name as the module list records it (`ACPI.sys`).
    pub name: String,
    /// The name without its extension (`ACPI`): the `driver` of `driver!Export`.
    pub short: String,
    /// Image base.
    pub base: Gva,
    /// `SizeOfImage` as the module list records it.
    pub size: u64,
    /// How many of its exports were taken.
    pub exports: usize,
}

/// The loaded drivers' exports (and ntoskrnl's), read once from guest memory
/// ([`DriverSymbols::read`], or cached in the [`Windows`] handle by
/// [`Windows::driver_symbols`]).
#[derive(Debug, Default)]
pub struct DriverSymbols {
    /// Drivers (not the kernel), sorted by base, none overlapping another or the kernel.
    images: Vec<DriverImage>,
    /// (run-time address, image index or [`KERNEL`], name), sorted by address. Driver
    /// exports are named `driver!Export`; the kernel's plainly, as its profile names symbols.
    exports: Vec<(u64, usize, Box<str>)>,
    /// Name → address, the first of equal names.
    by_name: HashMap<Box<str>, u64>,
    /// ntoskrnl's image: base and end.
    kernel: (u64, u64),
    /// What could not be read, each naming the image.
    problems: Vec<String>,
}

/// One image as read, before ordering.
struct Read {
    image: DriverImage,
    exports: Vec<(u64, String)>,
}

/// `ACPI.sys` → `ACPI`; a name that is all extension stays as it is.
fn short_name(name: &str) -> &str {
    match name.rsplit_once('.') {
        Some((s, _)) if !s.is_empty() => s,
        _ => name,
    }
}

/// The named, non-forwarded exports of the image at `base` (at most [`MAX_DRIVER_EXPORTS`],
/// and no more than `room`), as (run-time address, name), each inside the image.
fn read_exports<B: PhysicalMemory>(
    mem: &GuestMemory<B>,
    windows: &Windows,
    name: &str,
    base: Gva,
    size: u64,
    room: usize,
    problems: &mut Vec<String>,
) -> Vec<(u64, String)> {
    let space = windows.info().kernel_space;
    let pe = match Pe::parse(MappedImage::new(mem, space, base, name)) {
        Ok(pe) => pe,
        Err(e) => {
            problems.push(format!("{name} at {base}: {e}"));
            return Vec::new();
        }
    };
    let exports = match pe.exports() {
        Ok(x) => x,
        Err(e) => {
            problems.push(format!("{name} at {base}: export table: {e}"));
            return Vec::new();
        }
    };
    let cap = room.min(MAX_DRIVER_EXPORTS);
    let mut out = Vec::new();
    let mut outside = 0usize;
    for e in exports {
        let e = match e {
            Ok(e) => e,
            Err(err) => {
                problems.push(format!("{name} at {base}: export table: {err}"));
                break;
            }
        };
        let (Some(export), None) = (e.name, e.forwarder) else {
            continue; // by ordinal only, or code of another module
        };
        if u64::from(e.rva) >= size {
            outside += 1;
            continue;
        }
        if out.len() == cap {
            problems.push(format!(
                "{name} at {base}: more than {cap} exports; the rest are left out"
            ));
            break;
        }
        out.push((base.0.wrapping_add(u64::from(e.rva)), export));
    }
    if outside > 0 {
        problems.push(format!(
            "{name} at {base}: {outside} export(s) outside the image's {size:#x} bytes left out"
        ));
    }
    out
}

impl DriverSymbols {
    /// Walk the kernel's module list now and read every image's export table.
    /// Never fails: what cannot be read is left out and named in
    /// [`DriverSymbols::problems`] (a driver whose exports cannot be read still resolves as
    /// `driver+off`).
    pub fn read<B: PhysicalMemory>(windows: &Windows, mem: &GuestMemory<B>) -> DriverSymbols {
        let info = windows.info();
        let kernel_base = info.kernel_base.0;
        let kernel = (
            kernel_base,
            kernel_base.saturating_add(u64::from(info.size_of_image)),
        );
        let mut problems = Vec::new();
        let mut kernel_exports = Vec::new();
        let mut drivers: Vec<Read> = Vec::new();
        let mut total = 0usize;
        for (i, m) in windows.modules(mem).enumerate() {
            if i == MAX_SYMBOL_DRIVERS {
                problems.push(format!(
                    "more than {MAX_SYMBOL_DRIVERS} modules: the rest are left out"
                ));
                break;
            }
            let m = match m {
                Ok(m) => m,
                Err(e) => {
                    problems.push(format!("module list entry {i}: {e}"));
                    continue;
                }
            };
            let room = MAX_TOTAL_EXPORTS - total;
            if m.base.0 == kernel_base {
                if kernel_exports.is_empty() {
                    let size = kernel.1 - kernel.0;
                    kernel_exports =
                        read_exports(mem, windows, &m.name, m.base, size, room, &mut problems);
                    total += kernel_exports.len();
                }
                continue;
            }
            let exports = read_exports(mem, windows, &m.name, m.base, m.size, room, &mut problems);
            total += exports.len();
            if total == MAX_TOTAL_EXPORTS && room > 0 {
                problems.push(format!(
                    "{MAX_TOTAL_EXPORTS} exports read: later images' are left out"
                ));
            }
            drivers.push(Read {
                image: DriverImage {
                    short: short_name(&m.name).to_owned(),
                    name: m.name,
                    base: m.base,
                    size: m.size,
                    exports: exports.len(),
                },
                exports,
            });
        }
        Self::assemble(kernel, kernel_exports, drivers, problems)
    }

    /// Order the images, drop overlapping ones, index the exports.
    fn assemble(
        kernel: (u64, u64),
        kernel_exports: Vec<(u64, String)>,
        mut drivers: Vec<Read>,
        mut problems: Vec<String>,
    ) -> DriverSymbols {
        drivers.sort_by_key(|r| r.image.base.0);
        let overlaps = |a: (u64, u64), b: (u64, u64)| a.0 < b.1 && b.0 < a.1;
        let mut s = DriverSymbols {
            kernel,
            ..DriverSymbols::default()
        };
        let mut last_end = 0u64;
        for r in drivers {
            let range = (r.image.base.0, r.image.base.0.saturating_add(r.image.size));
            if r.image.size == 0 || r.image.base.0 < last_end || overlaps(range, kernel) {
                problems.push(format!(
                    "{} at {} (size {:#x}) overlaps another image or is empty: left out",
                    r.image.name, r.image.base, r.image.size
                ));
                continue;
            }
            last_end = range.1;
            let index = s.images.len();
            for (addr, export) in r.exports {
                let name: Box<str> = format!("{}!{export}", r.image.short).into();
                s.by_name.entry(name.clone()).or_insert(addr);
                s.exports.push((addr, index, name));
            }
            s.images.push(r.image);
        }
        for (addr, export) in kernel_exports {
            let name: Box<str> = export.into();
            s.by_name.entry(name.clone()).or_insert(addr);
            s.exports.push((addr, KERNEL, name));
        }
        s.exports.sort_by_key(|e| e.0);
        s.problems = problems;
        s
    }

    /// The images covered (drivers, not ntoskrnl), by base.
    pub fn images(&self) -> &[DriverImage] {
        &self.images
    }

    /// How many exports were read (drivers' and ntoskrnl's).
    pub fn export_count(&self) -> usize {
        self.exports.len()
    }

    /// What could not be read or was left out, one line each, naming the image.
    pub fn problems(&self) -> &[String] {
        &self.problems
    }

    /// Run-time address of `driver!Export` (`ACPI!AcpiGetTable`; the driver name without
    /// its extension, as the module list spells it) or of a name ntoskrnl exports.
    pub fn symbol(&self, name: &str) -> Option<Gva> {
        self.by_name.get(name).copied().map(Gva)
    }

    /// The export at or below `addr` in the image holding it: `driver!Export+off`; inside a
    /// driver below its first export (or with none read), `driver+off` from its base; inside
    /// ntoskrnl, its nearest export (`None` below the first). `None` outside every image.
    /// [`SymbolOffset::addr`] is the export's (or the base's) run-time address.
    pub fn symbol_at(&self, addr: Gva) -> Option<SymbolOffset<'_>> {
        let a = addr.0;
        let (owner, start) = if (self.kernel.0..self.kernel.1).contains(&a) {
            (KERNEL, self.kernel.0)
        } else {
            let i = self
                .images
                .partition_point(|m| m.base.0 <= a)
                .checked_sub(1)?;
            let m = &self.images[i];
            if a - m.base.0 >= m.size {
                return None;
            }
            (i, m.base.0)
        };
        // Images do not overlap: every export between the image's start and `addr` is its own.
        let below = self.exports.partition_point(|e| e.0 <= a);
        let nearest = below
            .checked_sub(1)
            .map(|i| &self.exports[i])
            .filter(|e| e.0 >= start && e.1 == owner);
        match (nearest, owner) {
            (Some((at, _, name)), _) => Some(SymbolOffset {
                name,
                addr: *at,
                offset: a - at,
            }),
            (None, KERNEL) => None,
            (None, i) => Some(SymbolOffset {
                name: &self.images[i].short,
                addr: start,
                offset: a - start,
            }),
        }
    }

    /// Whether `addr` lies in ntoskrnl's image.
    pub fn in_kernel(&self, addr: Gva) -> bool {
        (self.kernel.0..self.kernel.1).contains(&addr.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(name: &str, base: u64, size: u64, exports: &[(u64, &str)]) -> Read {
        Read {
            image: DriverImage {
                name: name.into(),
                short: short_name(name).into(),
                base: Gva(base),
                size,
                exports: exports.len(),
            },
            exports: exports
                .iter()
                .map(|(rva, n)| (base + rva, (*n).to_owned()))
                .collect(),
        }
    }

    #[test]
    fn lookups_by_address_and_name() {
        let k = (0xffff_f800_0000_0000, 0xffff_f800_0100_0000);
        let s = DriverSymbols::assemble(
            k,
            vec![(k.0 + 0x2000, "ExAllocatePool2".into())],
            vec![
                image(
                    "B.sys",
                    0x9000_0000,
                    0x4000,
                    &[(0x1000, "Two"), (0x3000, "Three")],
                ),
                image("a.dll", 0x8000_0000, 0x2000, &[]),
                // Overlaps B.sys: left out.
                image("evil.sys", 0x9000_2000, 0x1000, &[(0x10, "Shadow")]),
            ],
            Vec::new(),
        );
        let at = |a: u64| s.symbol_at(Gva(a)).map(|x| (x.to_string(), x.addr));
        assert_eq!(at(0x9000_1010), Some(("B!Two+0x10".into(), 0x9000_1000)));
        assert_eq!(at(0x9000_3fff), Some(("B!Three+0xfff".into(), 0x9000_3000)));
        assert_eq!(at(0x9000_0800), Some(("B+0x800".into(), 0x9000_0000)));
        assert_eq!(at(0x8000_0001), Some(("a+0x1".into(), 0x8000_0000)));
        assert_eq!(at(0x9000_4000), None);
        assert_eq!(at(0x7fff_ffff), None);
        assert_eq!(
            at(k.0 + 0x2008),
            Some(("ExAllocatePool2+0x8".into(), k.0 + 0x2000))
        );
        assert_eq!(at(k.0 + 0x1000), None);
        assert_eq!(s.symbol("B!Three"), Some(Gva(0x9000_3000)));
        assert_eq!(s.symbol("ExAllocatePool2"), Some(Gva(k.0 + 0x2000)));
        assert_eq!(s.symbol("evil!Shadow"), None);
        assert_eq!(s.images().len(), 2);
        assert!(s.problems()[0].contains("evil.sys"), "{:?}", s.problems());
    }

    #[test]
    fn short_names() {
        assert_eq!(short_name("ACPI.sys"), "ACPI");
        assert_eq!(short_name("hal.dll"), "hal");
        assert_eq!(short_name("a.b.sys"), "a.b");
        assert_eq!(short_name(".sys"), ".sys");
        assert_eq!(short_name("noext"), "noext");
    }
}
