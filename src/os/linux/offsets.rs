//! The structure offsets the Linux walkers need, resolved once from any [`TypeSource`].

use crate::error::{Error, Result};
use crate::os::profile::TypeSource;

/// Byte offsets of the fields the walkers read.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Offsets {
    /// `task_struct.tasks`.
    pub task_tasks: u64,
    /// `task_struct.pid`.
    pub task_pid: u64,
    /// `task_struct.tgid`.
    pub task_tgid: u64,
    /// `task_struct.comm`.
    pub task_comm: u64,
    /// `task_struct.flags`.
    pub task_flags: u64,
    /// `task_struct.real_parent`.
    pub task_real_parent: u64,
    /// `task_struct.mm`.
    pub task_mm: u64,
    /// `mm_struct.pgd`.
    pub mm_pgd: u64,
    /// `module.list`.
    pub module_list: u64,
    /// `module.name`.
    pub module_name: u64,
    /// Size of `module.name` (`MODULE_NAME_LEN`).
    pub module_name_len: u64,
    /// Base of the module's core text: `core_layout.base` (≤ 6.3) or `mem[MOD_TEXT].base`.
    pub module_base: u64,
    /// The `u32` sizes whose sum `/proc/modules` reports: one per memory region of the
    /// module (`core_layout`, `init_layout`, `data_layout`; or each `mem[]`).
    pub module_sizes: Vec<u64>,
    /// The base pointer of each region, in the order of [`Offsets::module_sizes`].
    pub module_bases: Vec<u64>,
    /// `uts_namespace.name.release`, if known.
    pub uts_release: Option<u64>,
}

impl Offsets {
    /// Resolve from a type source.
    ///
    /// # Errors
    /// [`Error::MissingField`] naming the first field the source lacks.
    pub fn resolve(t: &dyn TypeSource) -> Result<Offsets> {
        let module_name = t.require("module", "name")?;
        let module_name_len = t.field("module", "name").and_then(|f| f.size).unwrap_or(56);
        let (module_base, module_sizes, module_bases) =
            if let Some(core) = t.field("module", "core_layout") {
                // ≤ 6.3: struct module_layout core_layout, init_layout (+ data_layout with
                // CONFIG_ARCH_WANTS_MODULES_DATA_SECTIONS).
                let base = t.require("module_layout", "base")?;
                let size = t.require("module_layout", "size")?;
                let mut sizes = vec![core.offset + size];
                let mut bases = vec![core.offset + base];
                for l in ["init_layout", "data_layout"] {
                    if let Some(f) = t.field("module", l) {
                        sizes.push(f.offset + size);
                        bases.push(f.offset + base);
                    }
                }
                (core.offset + base, sizes, bases)
            } else if let Some(mem) = t.field("module", "mem") {
                // ≥ 6.4: struct module_memory mem[MOD_MEM_NUM_TYPES]; MOD_TEXT is 0.
                let elem = t
                    .struct_size("module_memory")
                    .filter(|&s| s > 0)
                    .ok_or_else(|| missing(t, "module_memory", ""))?;
                let count = mem.size.map(|s| s / elem).unwrap_or(7).min(16);
                let base = t.require("module_memory", "base")?;
                let size = t.require("module_memory", "size")?;
                (
                    mem.offset + base,
                    (0..count).map(|i| mem.offset + i * elem + size).collect(),
                    (0..count).map(|i| mem.offset + i * elem + base).collect(),
                )
            } else {
                return Err(missing(t, "module", "core_layout` or `mem"));
            };
        Ok(Offsets {
            task_tasks: t.require("task_struct", "tasks")?,
            task_pid: t.require("task_struct", "pid")?,
            task_tgid: t.require("task_struct", "tgid")?,
            task_comm: t.require("task_struct", "comm")?,
            task_flags: t.require("task_struct", "flags")?,
            task_real_parent: t.require("task_struct", "real_parent")?,
            task_mm: t.require("task_struct", "mm")?,
            mm_pgd: t.require("mm_struct", "pgd")?,
            module_list: t.require("module", "list")?,
            module_name,
            module_name_len,
            module_base,
            module_sizes,
            module_bases,
            uts_release: t.field("uts_namespace", "name.release").map(|f| f.offset),
        })
    }
}

fn missing(t: &dyn TypeSource, ty: &str, field: &str) -> Error {
    Error::MissingField {
        type_name: ty.into(),
        field: field.into(),
        source_name: t.source_name().into(),
        hint: String::new(),
    }
}
