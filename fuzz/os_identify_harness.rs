//! OS identification and the one discovery (`xenvmi::os::identify`, `xenvmi::os::discover`) over
//! an arbitrary image, registers and hint.
//!
//! Input layout (little-endian):
//! - `u8`: number of vCPUs, modulo 5;
//! - per vCPU, 5 × `u64`: CR0, CR3, CR4, EFER, `MSR_LSTAR`;
//! - `u64`: a `DirectoryTableBase` hint (0: none, as for every image that is not a crash dump);
//! - the rest: physical memory.
//!
//! Checks: identification ends, says what each check saw (at most one line per check) and the
//! last line names the OS it decided; discovery agrees with it (neither OS: `OsNotFound`
//! naming both; a guest found is of the OS identified), and a found guest's processes and
//! modules end and its symbols resolve both ways. Windows is discovered with a profile that
//! has no types, so its searches run and every candidate is refused.
//!
//! Shared by `fuzz/fuzz_targets/os_identify.rs` and `tests/fuzz_regressions.rs`, which replays
//! the seeds and every kept failing input in `cargo test`.
use xenvmi::backend::snapshot::{Format, Snapshot};
use xenvmi::mem::GuestMemory;
use xenvmi::os::profile::{Field, Profile, SymbolTable, TypeSource};
use xenvmi::os::windows::{Hints, WindowsProfile};
use xenvmi::os::{discover, identify, DiscoverOptions, GuestOs};
use xenvmi::{Error, Gva, Registers};

/// Identification runs six checks.
const CHECKS: usize = 6;

/// A profile without types: every Windows candidate is refused after the searches.
struct NoTypes;

impl TypeSource for NoTypes {
    fn source_name(&self) -> &str {
        "fuzz: no types"
    }
    fn struct_size(&self, _: &str) -> Option<u64> {
        None
    }
    fn field(&self, _: &str, _: &str) -> Option<Field> {
        None
    }
}

/// Run one input (see the module docs).
pub fn run(data: &[u8]) {
    let Some((&n, mut rest)) = data.split_first() else {
        return;
    };
    let u64s = |rest: &mut &[u8]| -> Option<u64> {
        let (v, r) = rest.split_first_chunk::<8>()?;
        *rest = r;
        Some(u64::from_le_bytes(*v))
    };
    let mut regs = Vec::new();
    for _ in 0..n % 5 {
        let (Some(cr0), Some(cr3), Some(cr4), Some(efer), Some(lstar)) = (
            u64s(&mut rest),
            u64s(&mut rest),
            u64s(&mut rest),
            u64s(&mut rest),
            u64s(&mut rest),
        ) else {
            return;
        };
        regs.push(Registers {
            cr0,
            cr3,
            cr4,
            efer,
            msr_lstar: lstar,
            ..Registers::default()
        });
    }
    let Some(dtb) = u64s(&mut rest) else {
        return;
    };
    if rest.is_empty() {
        return;
    }
    let hints = Hints {
        directory_table_base: (dtb != 0).then_some(dtb),
        ..Hints::default()
    };
    let Ok(snap) = Snapshot::from_bytes(rest.to_vec(), Some(Format::Raw)) else {
        return;
    };
    let mem = GuestMemory::new(snap);

    let id = identify(&mem, &regs, &hints, &mut |_| {});
    assert!(
        !id.seen.is_empty() && id.seen.len() <= CHECKS,
        "{:?}",
        id.seen
    );
    if let Some(kind) = id.kind {
        let last = id.seen.last().map(String::as_str).unwrap_or("");
        assert!(last.starts_with(&format!("{kind}:")), "{kind}: {last}");
    }

    let options = DiscoverOptions {
        windows: Some(WindowsProfile::Loaded(Profile {
            types: Box::new(NoTypes),
            symbols: SymbolTable::default(),
        })),
        hints,
        ..DiscoverOptions::default()
    };
    match discover(&mem, &regs, options) {
        Ok(guest) => {
            assert_eq!(Some(guest.kind()), id.kind);
            for p in guest.processes(&mem) {
                let _ = p;
            }
            for m in guest.modules(&mem) {
                let _ = m;
            }
            let base = guest.os_info().kernel_base;
            for off in [0u64, 1, 0x1000, 0x10_0000] {
                if let Some(s) = guest.symbol_at(Gva(base.0.wrapping_add(off))) {
                    assert!(s.addr <= base.0.wrapping_add(off) || s.offset == 0);
                    assert!(guest.symbol(s.name).is_some());
                }
            }
        }
        Err(Error::OsNotFound { os, .. }) if id.kind.is_none() => {
            assert_eq!(os, "Linux or Windows");
        }
        Err(e) => assert!(id.kind.is_some(), "{e}"),
    }
}
