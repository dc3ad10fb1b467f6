//! Where each loaded module's core text is, and the module's state, read by the kernel's own
//! field names (BTF or ISF):
//!
//! - up to 6.3, `struct module_layout core_layout`: the text is the first `text_size` bytes
//!   from `base` (`kernel/module/main.c` `layout_sections` puts text first and, with
//!   `CONFIG_STRICT_MODULE_RWX`, pads it to a page);
//! - from 6.4, `struct module_memory mem[MOD_MEM_NUM_TYPES]`: the text is `mem[MOD_TEXT]`
//!   (`MOD_TEXT` is 0), `base` and `size`.
//!
//! `module.state` is an `enum module_state` (`include/linux/module.h`, unchanged since 2.6):
//! `LIVE` 0, `COMING` 1, `GOING` 2, `UNFORMED` 3.
//!
//! Bounded as the module walk is ([`super::MAX_MODULES`] entries, cycles detected); each
//! module's fields are read with checked address arithmetic; a module whose fields cannot be
//! read is an error item, not the end of the walk.

use super::Linux;
use crate::addr::Gva;
use crate::backend::PhysicalMemory;
use crate::error::{Error, Result};
use crate::mem::GuestMemory;

/// A module's `enum module_state`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModuleState {
    /// `MODULE_STATE_LIVE` (0): loaded and initialised.
    Live,
    /// `MODULE_STATE_COMING` (1): being relocated, patched and initialised by the loader.
    Coming,
    /// `MODULE_STATE_GOING` (2): being unloaded (or its init failed).
    Going,
    /// `MODULE_STATE_UNFORMED` (3): still being set up, or being freed.
    Unformed,
    /// Any other value (corrupt or unknown).
    Other(u32),
}

impl ModuleState {
    /// The state a raw `enum module_state` value names.
    pub fn from_raw(v: u32) -> Self {
        match v {
            0 => ModuleState::Live,
            1 => ModuleState::Coming,
            2 => ModuleState::Going,
            3 => ModuleState::Unformed,
            n => ModuleState::Other(n),
        }
    }
}

/// One module's core text and state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModuleText {
    /// The module's name.
    pub name: String,
    /// The `struct module`.
    pub object: Gva,
    /// Its state.
    pub state: ModuleState,
    /// First byte of its core text.
    pub base: Gva,
    /// Bytes of core text.
    pub size: u64,
}

/// Offsets within `struct module` of the fields [`Linux::module_texts`] reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModuleTextLayout {
    state: u64,
    base: u64,
    size: u64,
}

impl Linux {
    /// Where `struct module` keeps its state and its core text (see the module
    /// documentation).
    ///
    /// # Errors
    /// [`Error::MissingField`] naming the first field the kernel's types lack.
    pub fn module_text_layout(&self) -> Result<ModuleTextLayout> {
        let t = self.types();
        let state = t.require("module", "state")?;
        if let Some(core) = t.field("module", "core_layout") {
            Ok(ModuleTextLayout {
                state,
                base: add_off(core.offset, t.require("module_layout", "base")?)?,
                size: add_off(core.offset, t.require("module_layout", "text_size")?)?,
            })
        } else {
            // `mem[MOD_TEXT]` is `mem[0]`.
            let mem = t.require("module", "mem")?;
            Ok(ModuleTextLayout {
                state,
                base: add_off(mem, t.require("module_memory", "base")?)?,
                size: add_off(mem, t.require("module_memory", "size")?)?,
            })
        }
    }

    /// Walk the module list (as [`Linux::modules`]) and read each module's state and core
    /// text.
    ///
    /// # Errors
    /// As [`Linux::module_text_layout`]; the walk's own errors are items.
    pub fn module_texts<'a, B: PhysicalMemory>(
        &'a self,
        mem: &'a GuestMemory<B>,
    ) -> Result<impl Iterator<Item = Result<ModuleText>> + 'a> {
        let layout = self.module_text_layout()?;
        Ok(self
            .modules(mem)
            .map(move |m| m.and_then(|m| self.read_module_text(mem, layout, m.object, m.name))))
    }

    /// Read the state and core text of the `struct module` at `object`, named `name`.
    ///
    /// # Errors
    /// Memory errors for its fields; [`Error::Overflow`] for a field address past the top.
    pub fn read_module_text<B: PhysicalMemory>(
        &self,
        mem: &GuestMemory<B>,
        layout: ModuleTextLayout,
        object: Gva,
        name: String,
    ) -> Result<ModuleText> {
        let ks = self.info().kernel_space;
        let at = |off: u64| {
            object
                .checked_add(off)
                .ok_or(Error::Overflow("module field address"))
        };
        let state = ModuleState::from_raw(mem.read_u32(ks, at(layout.state)?)?);
        let base = mem.read_va(ks, at(layout.base)?)?;
        let size = u64::from(mem.read_u32(ks, at(layout.size)?)?);
        Ok(ModuleText {
            name,
            object,
            state,
            base,
            size,
        })
    }
}

fn add_off(a: u64, b: u64) -> Result<u64> {
    a.checked_add(b)
        .ok_or(Error::Overflow("struct module field offset"))
}

#[cfg(test)]
mod tests {
    use super::ModuleState;

    #[test]
    fn states_are_the_kernels_enum() {
        // include/linux/module.h: enum module_state { LIVE, COMING, GOING, UNFORMED }.
        assert_eq!(ModuleState::from_raw(0), ModuleState::Live);
        assert_eq!(ModuleState::from_raw(1), ModuleState::Coming);
        assert_eq!(ModuleState::from_raw(2), ModuleState::Going);
        assert_eq!(ModuleState::from_raw(3), ModuleState::Unformed);
        assert_eq!(ModuleState::from_raw(7), ModuleState::Other(7));
    }
}
