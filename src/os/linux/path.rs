//! Paths of open files (`d_path`): a `struct file`'s dentry chain up to its mount's root,
//! then the mountpoint in the parent mount, up to the root mount. Bounded: at most
//! [`MAX_PATH_COMPONENTS`] components of at most 255 bytes and [`MAX_PATH_BYTES`] in all; a
//! mount cycle is an error. The paths read for one call (every descriptor of a process, every
//! area of its memory map) share a budget of [`MAX_PATH_STEPS`] steps and [`MAX_PATH_TEXT`]
//! bytes: a guest giving each of 65,536 descriptors the deepest path costs that much, and the
//! paths past the budget are errors.
//!
//! As the kernel's `d_path` (`fs/d_path.c`) does, a file whose dentry was unlinked gets the
//! suffix [`DELETED_SUFFIX`]: `d_unlinked(dentry)`, i.e. the dentry is unhashed
//! (`dentry->d_hash.pprev == NULL`) and is not a root (`dentry->d_parent != dentry`). This is
//! what `/proc/PID/fd/N`, `/proc/PID/exe` and `/proc/PID/maps` show for an open file, a running
//! executable or a mapping whose name was removed (`/tmp/x (deleted)`). Only the one pointer
//! is read: the hash chain is never followed.

use std::cell::Cell;

use super::Linux;
use crate::addr::Gva;
use crate::backend::PhysicalMemory;
use crate::error::{Error, Result};
use crate::mem::GuestMemory;

/// Most path components followed from a dentry up to the root.
pub const MAX_PATH_COMPONENTS: usize = 256;
/// Longest path built, in bytes: the kernel's `PATH_MAX` (its `d_path` fails with
/// `ENAMETOOLONG` past a buffer of that size).
pub const MAX_PATH_BYTES: usize = 4096;
/// Most steps (a dentry or a mount crossed) taken by all the paths of one call.
pub const MAX_PATH_STEPS: u64 = 1 << 20;
/// Most bytes of paths built by one call.
pub const MAX_PATH_TEXT: u64 = 16 << 20;

/// What `d_path` appends to the path of an unlinked dentry (`/tmp/x (deleted)`).
pub const DELETED_SUFFIX: &str = " (deleted)";

/// The field offsets a path walk needs, resolved once per walk of many files, with that walk's
/// budget: resolve them per call, never cache them across calls.
#[derive(Clone, Debug)]
pub(crate) struct PathOffsets {
    file_path: u64,
    path_mnt: u64,
    path_dentry: u64,
    dentry_parent: u64,
    dentry_name: u64,
    qstr_len: u64,
    qstr_name: u64,
    vfsmount_root: u64,
    mount_mnt: u64,
    mount_parent: u64,
    mount_mountpoint: u64,
    /// `dentry.d_sb`, `super_block.s_magic`, `dentry.d_inode`, `inode.i_ino`: to name files of
    /// pseudo filesystems as the kernel does (`socket:[ino]`).
    pseudo: Option<(u64, u64, u64, u64)>,
    /// `dentry.d_hash` and `hlist_bl_node.pprev`: to tell an unlinked dentry
    /// ([`DELETED_SUFFIX`]). Without them (a profile that lacks the types) paths carry no
    /// mark.
    unlinked: Option<(u64, u64)>,
    /// What the paths read with these offsets have used: steps, bytes (see the module docs).
    used: Cell<(u64, u64)>,
}

impl PathOffsets {
    pub(crate) fn resolve(l: &Linux) -> Result<Self> {
        let t = l.types();
        Ok(PathOffsets {
            file_path: t.require("file", "f_path")?,
            path_mnt: t.require("path", "mnt")?,
            path_dentry: t.require("path", "dentry")?,
            dentry_parent: t.require("dentry", "d_parent")?,
            dentry_name: t.require("dentry", "d_name")?,
            qstr_len: t.require("qstr", "len")?,
            qstr_name: t.require("qstr", "name")?,
            vfsmount_root: t.require("vfsmount", "mnt_root")?,
            mount_mnt: t.require("mount", "mnt")?,
            mount_parent: t.require("mount", "mnt_parent")?,
            mount_mountpoint: t.require("mount", "mnt_mountpoint")?,
            pseudo: (|| {
                Some((
                    t.field("dentry", "d_sb")?.offset,
                    t.field("super_block", "s_magic")?.offset,
                    t.field("dentry", "d_inode")?.offset,
                    t.field("inode", "i_ino")?.offset,
                ))
            })(),
            unlinked: (|| {
                Some((
                    t.field("dentry", "d_hash")?.offset,
                    t.field("hlist_bl_node", "pprev")?.offset,
                ))
            })(),
            used: Cell::new((0, 0)),
        })
    }

    /// Take one step of the budget.
    fn step(&self, at: Gva) -> Result<()> {
        let (steps, text) = self.used.get();
        if steps >= MAX_PATH_STEPS {
            return Err(Error::WalkAborted {
                what: "file paths",
                addr: at,
                reason: format!(
                    "the paths of this call took MAX_PATH_STEPS ({MAX_PATH_STEPS}) steps"
                ),
            });
        }
        self.used.set((steps + 1, text));
        Ok(())
    }

    /// Account for a path of `len` bytes.
    fn text(&self, at: Gva, len: usize) -> Result<()> {
        let (steps, text) = self.used.get();
        let text = text.saturating_add(len as u64);
        if text > MAX_PATH_TEXT {
            return Err(Error::WalkAborted {
                what: "file paths",
                addr: at,
                reason: format!(
                    "the paths of this call exceed MAX_PATH_TEXT ({MAX_PATH_TEXT}) bytes"
                ),
            });
        }
        self.used.set((steps, text));
        Ok(())
    }
}

fn add(base: Gva, off: u64, what: &'static str) -> Result<Gva> {
    base.checked_add(off).ok_or(Error::Overflow(what))
}

impl Linux {
    /// The path of an open file (a `struct file *`).
    pub(crate) fn file_path<B: PhysicalMemory>(
        &self,
        mem: &GuestMemory<B>,
        o: &PathOffsets,
        file: Gva,
    ) -> Result<String> {
        let ks = self.info().kernel_space;
        let path = add(file, o.file_path, "file->f_path")?;
        let mnt = mem.read_va(ks, add(path, o.path_mnt, "path.mnt")?)?;
        let dentry = mem.read_va(ks, add(path, o.path_dentry, "path.dentry")?)?;
        let name = match self.pseudo_name(mem, o, dentry)? {
            Some(name) => name,
            None => {
                let mut p = self.d_path(mem, o, mnt, dentry)?;
                if self.d_unlinked(mem, o, dentry)? {
                    p.push_str(DELETED_SUFFIX);
                }
                p
            }
        };
        o.text(file, name.len())?;
        Ok(name)
    }

    /// The kernel's `d_unlinked`: `dentry` is unhashed (`d_hash.pprev` is NULL) and not the
    /// root of its filesystem (`d_parent` is not itself). `false` when the types lack the
    /// fields. One pointer of the hash node is read; the chain is not followed.
    fn d_unlinked<B: PhysicalMemory>(
        &self,
        mem: &GuestMemory<B>,
        o: &PathOffsets,
        dentry: Gva,
    ) -> Result<bool> {
        let Some((d_hash, pprev)) = o.unlinked else {
            return Ok(false);
        };
        let ks = self.info().kernel_space;
        let node = add(dentry, d_hash, "dentry.d_hash")?;
        if mem.read_u64(ks, add(node, pprev, "hlist_bl_node.pprev")?)? != 0 {
            return Ok(false);
        }
        let parent = mem.read_va(ks, add(dentry, o.dentry_parent, "dentry.d_parent")?)?;
        Ok(parent != dentry)
    }

    /// Files of the kernel's pseudo filesystems have no path; `/proc` names them from their
    /// inode (`d_dname`): `socket:[ino]`, `pipe:[ino]`, `anon_inode:[name]`.
    fn pseudo_name<B: PhysicalMemory>(
        &self,
        mem: &GuestMemory<B>,
        o: &PathOffsets,
        dentry: Gva,
    ) -> Result<Option<String>> {
        const SOCKFS_MAGIC: u64 = 0x534f_434b;
        const PIPEFS_MAGIC: u64 = 0x5049_5045;
        const ANON_INODE_FS_MAGIC: u64 = 0x0904_1934;
        let Some((d_sb, s_magic, d_inode, i_ino)) = o.pseudo else {
            return Ok(None);
        };
        o.step(dentry)?;
        let ks = self.info().kernel_space;
        let sb = mem.read_va(ks, add(dentry, d_sb, "dentry.d_sb")?)?;
        let magic = mem.read_u64(ks, add(sb, s_magic, "super_block.s_magic")?)?;
        let ino = || -> Result<u64> {
            let inode = mem.read_va(ks, add(dentry, d_inode, "dentry.d_inode")?)?;
            mem.read_u64(ks, add(inode, i_ino, "inode.i_ino")?)
        };
        Ok(match magic {
            SOCKFS_MAGIC => Some(format!("socket:[{}]", ino()?)),
            PIPEFS_MAGIC => Some(format!("pipe:[{}]", ino()?)),
            ANON_INODE_FS_MAGIC => {
                Some(format!("anon_inode:{}", self.dentry_name(mem, o, dentry)?))
            }
            _ => None,
        })
    }

    /// The name of one dentry (at most 255 bytes).
    fn dentry_name<B: PhysicalMemory>(
        &self,
        mem: &GuestMemory<B>,
        o: &PathOffsets,
        dentry: Gva,
    ) -> Result<String> {
        let ks = self.info().kernel_space;
        let qstr = add(dentry, o.dentry_name, "dentry.d_name")?;
        let len = mem
            .read_u32(ks, add(qstr, o.qstr_len, "qstr.len")?)?
            .min(255) as usize;
        let name = mem.read_va(ks, add(qstr, o.qstr_name, "qstr.name")?)?;
        Ok(String::from_utf8_lossy(&mem.read_bytes(ks, name, len)?).into_owned())
    }

    /// The path of `dentry` on mount `mnt` up to the root of the mount tree (`d_path`),
    /// bounded.
    fn d_path<B: PhysicalMemory>(
        &self,
        mem: &GuestMemory<B>,
        o: &PathOffsets,
        mut vfsmnt: Gva,
        mut dentry: Gva,
    ) -> Result<String> {
        let ks = self.info().kernel_space;
        let mut parts: Vec<String> = Vec::new();
        // The length of "/" + parts joined by '/'.
        let mut len = 1usize;
        let mut at_root = false;
        for _ in 0..MAX_PATH_COMPONENTS * 2 {
            o.step(dentry)?;
            let mnt_root = mem.read_va(ks, add(vfsmnt, o.vfsmount_root, "vfsmount.mnt_root")?)?;
            if dentry == mnt_root {
                // At the root of this mount: continue at its mountpoint in the parent mount.
                let mount = Gva(vfsmnt.0.wrapping_sub(o.mount_mnt));
                let parent = mem.read_va(ks, add(mount, o.mount_parent, "mount.mnt_parent")?)?;
                if parent == mount || parent.0 == 0 {
                    at_root = true;
                    break;
                }
                dentry =
                    mem.read_va(ks, add(mount, o.mount_mountpoint, "mount.mnt_mountpoint")?)?;
                vfsmnt = add(parent, o.mount_mnt, "mount.mnt")?;
                continue;
            }
            let parent = mem.read_va(ks, add(dentry, o.dentry_parent, "dentry.d_parent")?)?;
            if parent == dentry {
                at_root = true; // the root of a filesystem that is not mounted here
                break;
            }
            if parts.len() >= MAX_PATH_COMPONENTS {
                return Err(Error::malformed(
                    "dentry",
                    "path",
                    format!("deeper than {MAX_PATH_COMPONENTS} components (a dentry cycle?)"),
                ));
            }
            let name = self.dentry_name(mem, o, dentry)?;
            len += name.len() + usize::from(!parts.is_empty());
            if len > MAX_PATH_BYTES {
                return Err(Error::malformed(
                    "dentry",
                    "path",
                    format!("longer than PATH_MAX ({MAX_PATH_BYTES} bytes)"),
                ));
            }
            parts.push(name);
            dentry = parent;
        }
        if !at_root {
            return Err(Error::malformed(
                "mount",
                "path",
                "the walk to the root did not end (a mount cycle?)",
            ));
        }
        parts.reverse();
        Ok(format!("/{}", parts.join("/")))
    }
}
