//! A process's memory map (`/proc/PID/maps`): its VMAs, in address order, each with its range,
//! rights, file offset and backing file (or `[vdso]`, `[vvar]`, `[heap]`, `[stack]`,
//! anonymous).
//!
//! Each area is named as `show_map_vma` (`fs/proc/task_mmu.c`) names it, in its order: the
//! file's path (`d_path`, with ` (deleted)` for an unlinked file); else the name a special
//! mapping gives itself (`vm_ops->name`); else `[heap]` or `[stack]`; else nothing. The only
//! `vm_ops` with a `name` a process gets from the core kernel is `special_mapping_vmops`
//! (`mm/mmap.c`), whose `special_mapping_name` returns
//! `((struct vm_special_mapping *)vma->vm_private_data)->name`: the vDSO's `[vdso]` and
//! `[vvar]` (`arch/x86/entry/vdso/vma.c`), uprobes' `[uprobes]`. An area is one when its
//! `vm_ops` is the address of the kallsyms symbol `special_mapping_vmops`; the name is read
//! through `vm_private_data` (at most [`MAX_SPECIAL_NAME`] bytes, NUL-terminated). Areas of
//! `legacy_special_mapping_vmops` (`install_special_mapping`: 6.1 has it, 6.12 no longer) are
//! not named: that table has no `name`, and their `vm_private_data` is a page array, not a
//! `vm_special_mapping`.
//!
//! Two layouts: from 6.1 the VMAs are the entries of a maple tree (`mm->mm_mt`); before, a
//! list (`mm->mmap`, `vm_area_struct.vm_next`). The maple tree is walked depth first with its
//! node encoding from `lib/maple_tree.c` (a node pointer has bits 0..1 = 2 and its type in bits
//! 3..6; nodes are 256-byte aligned) and the slot and pivot arrays' offsets from the kernel's
//! types. Each node is read up to its data end as the kernel finds it (`ma_data_end`: a node
//! that is not full keeps its metadata, the index of its last slot, in its last slot or, in an
//! allocation-range node, after `gap[]`), never past its slot count. Bounded: at most
//! [`MAX_VMAS`] areas, [`MAX_NODES`] nodes, [`MAX_DEPTH`] levels, and a node or area seen
//! twice ends the walk with an error.

use std::collections::HashSet;

use super::path::PathOffsets;
use super::Linux;
use crate::addr::{Gva, PAGE_SIZE};
use crate::backend::PhysicalMemory;
use crate::error::{Error, Result};
use crate::mem::{AddressSpace, GuestMemory};

/// Most areas listed (the kernel's default `vm.max_map_count` is 65,530).
pub const MAX_VMAS: usize = 65_536;
/// Most maple-tree nodes visited.
pub const MAX_NODES: usize = 1 << 16;
/// Most levels of a maple tree walked: the kernel's `MAPLE_HEIGHT_MAX`.
pub const MAX_DEPTH: usize = 31;
/// Longest special-mapping name read, in bytes before its NUL (the kernel's are short:
/// `[vdso]`, `[vvar]`, `[uprobes]`); a longer one is unreadable.
pub const MAX_SPECIAL_NAME: usize = 64;

/// What an area is backed by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Backing {
    /// A file, by path (ending in ` (deleted)` when it was unlinked, as `/proc` shows it).
    File(String),
    /// A special mapping, by the name the kernel gives it (`vm_ops->name`): `[vdso]`,
    /// `[vvar]`, `[uprobes]`. Read only when the kernel's symbols have
    /// `special_mapping_vmops` and its types `vm_area_struct.vm_ops`/`vm_private_data` and
    /// `vm_special_mapping.name`; without them such areas are [`Backing::Anonymous`].
    Special(String),
    /// The heap (`mm->start_brk..brk`).
    Heap,
    /// The main thread's stack (contains `mm->start_stack`).
    Stack,
    /// Anonymous memory.
    Anonymous,
    /// A file whose path, or a special mapping whose name, could not be read, and why.
    Unreadable(String),
}

/// One virtual memory area.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vma {
    /// First address.
    pub start: u64,
    /// Address after the last.
    pub end: u64,
    /// Readable.
    pub read: bool,
    /// Writable.
    pub write: bool,
    /// Executable.
    pub exec: bool,
    /// Shared (not private copy-on-write).
    pub shared: bool,
    /// Offset in the file, in bytes (`vm_pgoff` << 12); 0 for memory without a file.
    pub offset: u64,
    /// What backs it.
    pub backing: Backing,
}

impl Vma {
    /// The rights as `/proc/PID/maps` shows them (`r-xp`).
    pub fn perms(&self) -> String {
        let f = |b: bool, c: char| if b { c } else { '-' };
        [
            f(self.read, 'r'),
            f(self.write, 'w'),
            f(self.exec, 'x'),
            if self.shared { 's' } else { 'p' },
        ]
        .iter()
        .collect()
    }
}

const VM_READ: u64 = 0x1;
const VM_WRITE: u64 = 0x2;
const VM_EXEC: u64 = 0x4;
const VM_SHARED: u64 = 0x8;

/// Maple node types (`enum maple_type`).
const MAPLE_LEAF_64: u64 = 1;
const MAPLE_RANGE_64: u64 = 2;
const MAPLE_ARANGE_64: u64 = 3;
const MAPLE_NODE_MASK: u64 = 0xff;

struct Offsets {
    vm_start: u64,
    vm_end: u64,
    vm_flags: u64,
    vm_pgoff: u64,
    vm_file: u64,
    start_brk: u64,
    brk: u64,
    start_stack: u64,
    layout: Layout,
    special: Option<Special>,
}

/// What naming a special mapping needs.
struct Special {
    /// `vm_area_struct.vm_ops`.
    vm_ops: u64,
    /// `vm_area_struct.vm_private_data`.
    vm_private_data: u64,
    /// `vm_special_mapping.name`.
    name: u64,
    /// Run-time address of `special_mapping_vmops`.
    vmops: Gva,
}

/// Where a maple node keeps its arrays.
#[derive(Clone, Copy)]
struct NodeLayout {
    /// `pivot[]` offset (`slots - 1` of them).
    pivot: u64,
    /// `slot[]` offset.
    slot: u64,
    /// Number of slots.
    slots: u64,
    /// Offset of `struct maple_metadata` (its first byte is `end`) when it is not the last
    /// slot (allocation-range nodes); `None` for range nodes and leaves.
    meta: Option<u64>,
}

enum Layout {
    Maple {
        mm_mt: u64,
        ma_root: u64,
        /// `maple_range_64` (leaves and range nodes).
        range: NodeLayout,
        /// `maple_arange_64`.
        arange: NodeLayout,
    },
    List {
        mm_mmap: u64,
        vm_next: u64,
    },
}

impl Offsets {
    fn resolve(l: &Linux) -> Result<Offsets> {
        let t = l.types();
        let layout = if let Some(mt) = t.field("mm_struct", "mm_mt") {
            // The slot arrays' lengths from the layout (array fields carry no size here):
            // `maple_range_64.slot[16]` runs to the end of the 256-byte node;
            // `maple_arange_64.slot[10]` runs to `gap[]`.
            let count = |off: u64, end: Option<u64>| -> u64 {
                end.and_then(|e| e.checked_sub(off))
                    .map(|b| b / 8)
                    .filter(|&n| (1..=32).contains(&n))
                    .unwrap_or(16)
            };
            let range_slot = t.require("maple_range_64", "slot")?;
            let arange_slot = t.require("maple_arange_64", "slot")?;
            let gap = t.field("maple_arange_64", "gap").map(|f| f.offset);
            // `pivot[]` follows the parent pointer in both node types.
            let pivot = |ty: &str| t.field(ty, "pivot").map_or(8, |f| f.offset);
            let range = NodeLayout {
                pivot: pivot("maple_range_64"),
                slot: range_slot,
                slots: count(range_slot, t.struct_size("maple_range_64")),
                meta: None,
            };
            let arange_count = count(arange_slot, gap);
            let arange = NodeLayout {
                pivot: pivot("maple_arange_64"),
                slot: arange_slot,
                slots: arange_count,
                // `gap[]` has one entry per slot; `meta` follows it.
                meta: t
                    .field("maple_arange_64", "meta")
                    .map(|f| f.offset)
                    .or_else(|| gap.and_then(|g| g.checked_add(arange_count * 8))),
            };
            Layout::Maple {
                mm_mt: mt.offset,
                ma_root: t.require("maple_tree", "ma_root")?,
                range,
                arange,
            }
        } else {
            Layout::List {
                mm_mmap: t.require("mm_struct", "mmap")?,
                vm_next: t.require("vm_area_struct", "vm_next")?,
            }
        };
        Ok(Offsets {
            vm_start: t.require("vm_area_struct", "vm_start")?,
            vm_end: t.require("vm_area_struct", "vm_end")?,
            vm_flags: t.require("vm_area_struct", "vm_flags")?,
            vm_pgoff: t.require("vm_area_struct", "vm_pgoff")?,
            vm_file: t.require("vm_area_struct", "vm_file")?,
            start_brk: t.require("mm_struct", "start_brk")?,
            brk: t.require("mm_struct", "brk")?,
            start_stack: t.require("mm_struct", "start_stack")?,
            layout,
            special: (|| {
                Some(Special {
                    vm_ops: t.field("vm_area_struct", "vm_ops")?.offset,
                    vm_private_data: t.field("vm_area_struct", "vm_private_data")?.offset,
                    name: t.field("vm_special_mapping", "name")?.offset,
                    vmops: l.symbol("special_mapping_vmops")?,
                })
            })(),
        })
    }
}

fn too_many_areas(format: &'static str, what: &'static str) -> Error {
    Error::malformed(
        format,
        what,
        format!("more than MAX_VMAS ({MAX_VMAS}) areas"),
    )
}

/// `n` little-endian words at `at`.
fn read_words<B: PhysicalMemory>(
    mem: &GuestMemory<B>,
    space: AddressSpace,
    at: Gva,
    n: u64,
) -> Result<Vec<u64>> {
    let mut b = vec![0u8; (n * 8) as usize];
    mem.read(space, at, &mut b)?;
    Ok(b.chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
        .collect())
}

fn add(base: Gva, off: u64) -> Result<Gva> {
    base.checked_add(off)
        .ok_or(Error::Overflow("vm_area_struct field address"))
}

impl Linux {
    /// The memory map of the address space `mm` (a `struct mm_struct *`), in address order.
    ///
    /// # Errors
    /// A field the kernel's types lack; memory errors for the tree or list; a node or area
    /// seen twice, or more than the limits (see the module docs).
    pub fn memory_map<B: PhysicalMemory>(&self, mem: &GuestMemory<B>, mm: Gva) -> Result<Vec<Vma>> {
        let o = Offsets::resolve(self)?;
        let paths = PathOffsets::resolve(self)?;
        let ks = self.info().kernel_space;
        let rd = |a: Gva| mem.read_u64(ks, a);
        let mut areas = Vec::new();
        match o.layout {
            Layout::Maple {
                mm_mt,
                ma_root,
                range,
                arange,
            } => {
                let root = rd(add(add(mm, mm_mt)?, ma_root)?)?;
                let mut seen = HashSet::new();
                // (encoded entry, depth, the node's last index: `mas->max`)
                let mut stack = vec![(root, 0usize, u64::MAX)];
                while let Some((entry, depth, max)) = stack.pop() {
                    if entry == 0 {
                        continue;
                    }
                    let is_node = entry & 3 == 2 && entry > 4096;
                    if !is_node {
                        // A leaf entry: a VMA (the tree's only one when it is the root).
                        areas.push(Gva(entry));
                        if areas.len() > MAX_VMAS {
                            return Err(too_many_areas("maple tree", "mm_mt"));
                        }
                        continue;
                    }
                    let node = entry & !MAPLE_NODE_MASK;
                    let malformed =
                        |reason: String| Error::malformed("maple tree", "mm_mt", reason);
                    if depth >= MAX_DEPTH {
                        return Err(malformed(format!(
                            "node {node:#x} is deeper than {MAX_DEPTH} levels (MAPLE_HEIGHT_MAX)"
                        )));
                    }
                    if !seen.insert(node) {
                        return Err(malformed(format!(
                            "node {node:#x} seen twice (a cycle, or a node under two parents)"
                        )));
                    }
                    if seen.len() > MAX_NODES {
                        return Err(malformed(format!(
                            "more than MAX_NODES ({MAX_NODES}) nodes"
                        )));
                    }
                    let ty = (entry >> 3) & 0xf;
                    let l = match ty {
                        MAPLE_LEAF_64 | MAPLE_RANGE_64 => range,
                        MAPLE_ARANGE_64 => arange,
                        _ => {
                            return Err(malformed(format!(
                                "node {node:#x} has type {ty}, not a range node"
                            )))
                        }
                    };
                    let slots = read_words(mem, ks, add(Gva(node), l.slot)?, l.slots)?;
                    let pivots = read_words(mem, ks, add(Gva(node), l.pivot)?, l.slots - 1)?;
                    // The data end (`ma_data_end`): an allocation-range node keeps it in its
                    // metadata; a range node or leaf in the metadata in its last slot when its
                    // last pivot is 0, else at the pivot equal to its maximum, else it is full.
                    let last = (l.slots - 1) as usize;
                    let meta_end = || -> Result<usize> {
                        Ok(match l.meta {
                            Some(off) => {
                                let mut b = [0u8; 1];
                                mem.read(ks, add(Gva(node), off)?, &mut b)?;
                                usize::from(b[0])
                            }
                            None => (slots[last] & 0xff) as usize,
                        })
                    };
                    let last_pivot = last.checked_sub(1).and_then(|i| pivots.get(i));
                    let end = if l.meta.is_some() || last_pivot == Some(&0) {
                        meta_end()?
                    } else if last_pivot == Some(&max) {
                        last - 1
                    } else {
                        last
                    }
                    .min(last);
                    let used = &slots[..=end];
                    if ty == MAPLE_LEAF_64 {
                        for &v in used.iter().filter(|&&v| v != 0) {
                            // Leaves hold VMAs; a reserved or zero entry marks a gap.
                            if v & 3 == 0 {
                                areas.push(Gva(v));
                            }
                        }
                        if areas.len() > MAX_VMAS {
                            return Err(too_many_areas("maple tree", "mm_mt"));
                        }
                    } else {
                        // Children right to left, so that the stack gives them left to right;
                        // each child ends at its pivot (`mas_logical_pivot`).
                        for (i, &v) in used.iter().enumerate().rev().filter(|(_, &v)| v != 0) {
                            let child_max = match pivots.get(i) {
                                Some(&p) if i < end && (p != 0 || i == 0) => p,
                                _ => max,
                            };
                            stack.push((v, depth + 1, child_max));
                        }
                    }
                }
            }
            Layout::List { mm_mmap, vm_next } => {
                let mut seen = HashSet::new();
                let mut v = Gva(rd(add(mm, mm_mmap)?)?);
                while v.0 != 0 {
                    if !seen.insert(v.0) {
                        return Err(Error::malformed(
                            "vm_area_struct list",
                            "mm->mmap",
                            format!("area {:#x} seen twice (the list loops)", v.0),
                        ));
                    }
                    if seen.len() > MAX_VMAS {
                        return Err(too_many_areas("vm_area_struct list", "mm->mmap"));
                    }
                    areas.push(v);
                    v = Gva(rd(add(v, vm_next)?)?);
                }
            }
        }
        let start_brk = rd(add(mm, o.start_brk)?)?;
        let brk = rd(add(mm, o.brk)?)?;
        let start_stack = rd(add(mm, o.start_stack)?)?;
        let mut out = Vec::with_capacity(areas.len());
        for v in areas {
            let start = rd(add(v, o.vm_start)?)?;
            let end = rd(add(v, o.vm_end)?)?;
            let flags = rd(add(v, o.vm_flags)?)?;
            let pgoff = rd(add(v, o.vm_pgoff)?)?;
            let file = Gva(rd(add(v, o.vm_file)?)?);
            let special = match (&o.special, file.0) {
                (Some(s), 0) => self.special_name(mem, s, v).transpose(),
                _ => None,
            };
            let backing = if file.0 != 0 {
                match self.file_path(mem, &paths, file) {
                    Ok(p) => Backing::File(p),
                    Err(e) => Backing::Unreadable(e.to_string()),
                }
            } else if let Some(name) = special {
                match name {
                    Ok(n) => Backing::Special(n),
                    Err(e) => Backing::Unreadable(e.to_string()),
                }
            } else if start <= brk && end >= start_brk && brk != 0 {
                // As `/proc/PID/maps` names them (`fs/proc/task_mmu.c`).
                Backing::Heap
            } else if start <= start_stack && start_stack <= end {
                Backing::Stack
            } else {
                Backing::Anonymous
            };
            out.push(Vma {
                start,
                end,
                read: flags & VM_READ != 0,
                write: flags & VM_WRITE != 0,
                exec: flags & VM_EXEC != 0,
                shared: flags & VM_SHARED != 0,
                // `/proc/PID/maps` shows the file offset only for file mappings.
                offset: if file.0 != 0 {
                    pgoff.wrapping_mul(4096)
                } else {
                    0
                },
                backing,
            });
        }
        out.sort_by_key(|a| a.start);
        Ok(out)
    }

    /// The name of the area at `vma` if it is a special mapping (`vm_ops` is
    /// `special_mapping_vmops`): `special_mapping_name`'s
    /// `((struct vm_special_mapping *)vm_private_data)->name`. `None` for any other area, and
    /// for a NULL name (the kernel then names the area as any other).
    fn special_name<B: PhysicalMemory>(
        &self,
        mem: &GuestMemory<B>,
        s: &Special,
        vma: Gva,
    ) -> Result<Option<String>> {
        let ks = self.info().kernel_space;
        if mem.read_va(ks, add(vma, s.vm_ops)?)? != s.vmops {
            return Ok(None);
        }
        let spec = mem.read_va(ks, add(vma, s.vm_private_data)?)?;
        if spec.0 == 0 {
            return Err(Error::malformed(
                "vm_area_struct",
                format!("special mapping at {vma}"),
                "vm_private_data is NULL",
            ));
        }
        let name = mem.read_va(ks, add(spec, s.name)?)?;
        if name.0 == 0 {
            return Ok(None);
        }
        let mut bytes = Vec::new();
        let mut at = name;
        // Page by page: a name that ends before a page the image lacks is still read.
        while bytes.len() < MAX_SPECIAL_NAME {
            let n = ((PAGE_SIZE - at.page_offset()) as usize).min(MAX_SPECIAL_NAME - bytes.len());
            let chunk = mem.read_bytes(ks, at, n)?;
            if let Some(end) = chunk.iter().position(|&b| b == 0) {
                bytes.extend_from_slice(&chunk[..end]);
                return Ok(Some(String::from_utf8_lossy(&bytes).into_owned()));
            }
            bytes.extend_from_slice(&chunk);
            at = add(at, n as u64)?;
        }
        Err(Error::malformed(
            "vm_special_mapping",
            format!("name at {name}"),
            format!("no NUL in its first {MAX_SPECIAL_NAME} bytes"),
        ))
    }
}
