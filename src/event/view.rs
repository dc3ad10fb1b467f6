//! An altp2m view as an owned object: everything done through it (access rights, remapped
//! frames, extra frames, suppress-#VE, visibility) is undone, and the view destroyed, when it
//! is dropped. Use it for protections that live on their own; inside an event loop, the
//! [`Session`](super::session::Session) journal gives the same guarantee together with its
//! monitors and ring.

use crate::addr::{Gfn, ViewId};
use crate::backend::{MemAccess, ViewControl};
use crate::error::Result;

#[derive(Debug, Clone, Copy)]
enum Undo {
    Access(Gfn, MemAccess),
    Remap(Gfn),
    Frame(Gfn),
    SuppressVe(Gfn),
    Visible,
}

/// An altp2m view that cleans up after itself.
#[derive(Debug)]
pub struct View<'b, B: ViewControl> {
    backend: &'b B,
    id: ViewId,
    undo: Vec<Undo>,
}

impl<'b, B: ViewControl> View<'b, B> {
    /// Create a view whose frames have `default_access`.
    ///
    /// # Errors
    /// Backend error (altp2m off for the domain).
    pub fn create(backend: &'b B, default_access: MemAccess) -> Result<Self> {
        Ok(View {
            backend,
            id: backend.create_view(default_access)?,
            undo: Vec::new(),
        })
    }

    /// The view's id (for `switch_view` and responses).
    pub fn id(&self) -> ViewId {
        self.id
    }

    /// Set the access of a frame in this view.
    ///
    /// # Errors
    /// Backend error.
    pub fn set_access(&mut self, gfn: Gfn, access: MemAccess) -> Result<()> {
        let old = self.backend.mem_access(self.id, gfn)?;
        self.backend.set_mem_access(self.id, gfn, access)?;
        self.undo.push(Undo::Access(gfn, old));
        Ok(())
    }

    /// Show a fresh, zeroed extra frame at `gfn` in this view; returns the frame.
    ///
    /// # Errors
    /// Backend error.
    pub fn remap_to_new_frame(&mut self, gfn: Gfn) -> Result<Gfn> {
        let frame = self.backend.alloc_frame()?;
        self.undo.push(Undo::Frame(frame));
        self.backend.change_gfn(self.id, gfn, Some(frame))?;
        self.undo.push(Undo::Remap(gfn));
        Ok(frame)
    }

    /// Deliver violations on `gfn` to the guest as #VE.
    ///
    /// # Errors
    /// Backend error.
    pub fn deliver_ve(&mut self, gfn: Gfn) -> Result<()> {
        self.backend.set_suppress_ve(self.id, gfn, false)?;
        self.undo.push(Undo::SuppressVe(gfn));
        Ok(())
    }

    /// Hide the view from the guest's VMFUNC.
    ///
    /// # Errors
    /// Backend error.
    pub fn hide(&mut self) -> Result<()> {
        self.backend.set_view_visibility(self.id, false)?;
        self.undo.push(Undo::Visible);
        Ok(())
    }

    /// Undo everything and destroy the view now (drop does the same, ignoring errors).
    /// vCPUs must no longer use the view (switch them to view 0 first).
    ///
    /// # Errors
    /// The first backend error; every step is still attempted.
    pub fn destroy(mut self) -> Result<()> {
        self.cleanup()
    }

    fn cleanup(&mut self) -> Result<()> {
        let mut first = None;
        let b = self.backend;
        for u in std::mem::take(&mut self.undo).into_iter().rev() {
            let r = match u {
                Undo::Access(gfn, old) => b.set_mem_access(self.id, gfn, old),
                Undo::Remap(gfn) => b.change_gfn(self.id, gfn, None),
                Undo::Frame(frame) => b.free_frame(frame),
                Undo::SuppressVe(gfn) => b.set_suppress_ve(self.id, gfn, true),
                Undo::Visible => b.set_view_visibility(self.id, true),
            };
            if let Err(e) = r {
                first.get_or_insert(e);
            }
        }
        if self.id != ViewId::HOST {
            // Frames are released above only after their remaps are reverted (reverse order).
            if let Err(e) = b.destroy_view(self.id) {
                first.get_or_insert(e);
            }
            self.id = ViewId::HOST;
        }
        first.map_or(Ok(()), Err)
    }
}

impl<B: ViewControl> Drop for View<'_, B> {
    fn drop(&mut self) {
        if let Err(e) = self.cleanup() {
            eprintln!("xenvmi: restoring altp2m view on drop failed: {e}");
        }
    }
}
