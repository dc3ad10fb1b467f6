//! A copy-on-read overlay over a real dump: reads come from the dump, then the patched bytes
//! are laid over them. Tests use it to change one kernel field of a real guest (a dentry's
//! hash link, a special mapping's name pointer) and see what the walkers make of it, without
//! copying the whole image.
#![allow(dead_code)]

use std::ops::Range;

use xenvmi::backend::PhysicalMemory;
use xenvmi::mem::{AddressSpace, GuestMemory};
use xenvmi::{Gpa, Gva};

/// `inner` with `patches` (guest-physical address, bytes) laid over it.
pub struct Patched<B> {
    pub inner: B,
    pub patches: Vec<(u64, Vec<u8>)>,
}

impl<B: PhysicalMemory> Patched<B> {
    pub fn new(inner: B) -> Self {
        Patched {
            inner,
            patches: Vec::new(),
        }
    }

    /// Patch the bytes at guest-physical `gpa`.
    pub fn set(&mut self, gpa: u64, bytes: &[u8]) {
        self.patches.push((gpa, bytes.to_vec()));
    }

    /// Patch the `u64` at kernel virtual address `va`, translated through `space` in `mem`
    /// (the unpatched memory).
    pub fn set_u64<M: PhysicalMemory>(
        &mut self,
        mem: &GuestMemory<M>,
        space: AddressSpace,
        va: Gva,
        v: u64,
    ) {
        self.set_bytes(mem, space, va, &v.to_le_bytes());
    }

    /// Patch bytes at kernel virtual address `va` (they must not cross a page).
    pub fn set_bytes<M: PhysicalMemory>(
        &mut self,
        mem: &GuestMemory<M>,
        space: AddressSpace,
        va: Gva,
        bytes: &[u8],
    ) {
        assert!(
            va.0 % 4096 + bytes.len() as u64 <= 4096,
            "{va} + {}",
            bytes.len()
        );
        let gpa = mem.translate_mapped(space, va).unwrap();
        self.set(gpa.0, bytes);
    }
}

impl<B: PhysicalMemory> PhysicalMemory for Patched<B> {
    fn name(&self) -> &'static str {
        "patched dump"
    }

    fn read_physical(&self, gpa: Gpa, buf: &mut [u8]) -> xenvmi::Result<()> {
        self.inner.read_physical(gpa, buf)?;
        let (start, end) = (gpa.0, gpa.0 + buf.len() as u64);
        for (at, bytes) in &self.patches {
            let (ps, pe) = (*at, *at + bytes.len() as u64);
            let (s, e) = (start.max(ps), end.min(pe));
            if s < e {
                buf[(s - start) as usize..(e - start) as usize]
                    .copy_from_slice(&bytes[(s - ps) as usize..(e - ps) as usize]);
            }
        }
        Ok(())
    }

    fn physical_ranges(&self) -> Vec<Range<u64>> {
        self.inner.physical_ranges()
    }
}
