//! A process's open files (`/proc/PID/fd`): each descriptor and the path of its file, read
//! from `task->files->fdt`. Files of pseudo filesystems are named as `/proc` names them
//! (`socket:[ino]`, `pipe:[ino]`, `anon_inode:[eventpoll]`). Bounded by [`MAX_FDS`]
//! descriptors.

use super::path::PathOffsets;
use super::Linux;
use crate::addr::Gva;
use crate::backend::PhysicalMemory;
use crate::error::{Error, Result};
use crate::mem::GuestMemory;

/// Most descriptors read for one process.
pub const MAX_FDS: u64 = 1 << 16;

/// One open descriptor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenFile {
    /// The descriptor number.
    pub fd: u64,
    /// The file's path, or why it could not be read.
    pub path: std::result::Result<String, String>,
}

fn add(base: Gva, off: u64, what: &'static str) -> Result<Gva> {
    base.checked_add(off).ok_or(Error::Overflow(what))
}

impl Linux {
    /// The open files of the task at `task` (a `struct task_struct *`), by descriptor. A
    /// kernel thread (no `files`) has none.
    ///
    /// # Errors
    /// A field the kernel's types lack; memory errors for the table itself (one file whose
    /// path cannot be read only fails that entry's path).
    pub fn open_files<B: PhysicalMemory>(
        &self,
        mem: &GuestMemory<B>,
        task: Gva,
    ) -> Result<Vec<OpenFile>> {
        let paths = PathOffsets::resolve(self)?;
        Ok(self
            .descriptors(mem, task)?
            .into_iter()
            .map(|(fd, file)| OpenFile {
                fd,
                path: self.file_path(mem, &paths, file).map_err(|e| e.to_string()),
            })
            .collect())
    }

    /// Every open descriptor of the task at `task` with its `struct file *`, in descriptor
    /// order: the non-NULL slots of `task->files->fdt->fd[0..max_fds]`, at most [`MAX_FDS`].
    /// A kernel thread (no `files`) has none.
    pub(crate) fn descriptors<B: PhysicalMemory>(
        &self,
        mem: &GuestMemory<B>,
        task: Gva,
    ) -> Result<Vec<(u64, Gva)>> {
        let t = self.types();
        let task_files = t.require("task_struct", "files")?;
        let files_fdt = t.require("files_struct", "fdt")?;
        let fdt_max = t.require("fdtable", "max_fds")?;
        let fdt_fd = t.require("fdtable", "fd")?;
        let ks = self.info().kernel_space;
        let files = mem.read_va(ks, add(task, task_files, "task->files")?)?;
        if files.0 == 0 {
            return Ok(Vec::new());
        }
        let fdt = mem.read_va(ks, add(files, files_fdt, "files->fdt")?)?;
        let max = u64::from(mem.read_u32(ks, add(fdt, fdt_max, "fdt->max_fds")?)?).min(MAX_FDS);
        let array = mem.read_va(ks, add(fdt, fdt_fd, "fdt->fd")?)?;
        let mut out = Vec::new();
        // The pointer array in page-sized pieces.
        let mut fd = 0u64;
        while fd < max {
            let n = (max - fd).min(512);
            let mut buf = vec![0u8; (n * 8) as usize];
            mem.read(ks, add(array, fd * 8, "fdt->fd[]")?, &mut buf)?;
            for (i, c) in buf.chunks_exact(8).enumerate() {
                let file = u64::from_le_bytes(c.try_into().unwrap_or([0; 8]));
                if file != 0 {
                    out.push((fd + i as u64, Gva(file)));
                }
            }
            fd += n;
        }
        Ok(out)
    }
}
