//! The registry of live C handles. Every handle this library returns is entered here when it
//! is made and removed when it is freed; every call that takes a handle looks it up first and
//! holds a use on it until the call returns. So:
//!
//! - a handle that was freed (or never was one) is refused with [`XVMI_ERR_INVALID_HANDLE`]
//!   instead of being dereferenced: use after free and double free become error codes;
//! - a handle cannot be freed while a call is using it (a walk whose callback frees the `os`
//!   or `mem` handle it walks): the free is refused with [`XVMI_ERR_INVALID_HANDLE`] and the
//!   walk goes on over memory that is still alive;
//! - a handle of one type passed where another is expected is refused.
//!
//! What it cannot catch: a freed handle whose address the allocator has reused for a new
//! handle of the same type refers to that new handle (memory-safe, but the wrong object), and
//! `xvmi_session_stop`, which must stay async-signal-safe, does not look its handle up.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::error::{check_ptr, Fail, XVMI_ERR_INVALID_HANDLE};

/// A C handle type.
pub(crate) trait Handle {
    /// Its C name, for messages.
    const KIND: &'static str;
}

struct Entry {
    kind: &'static str,
    /// Calls using it now.
    uses: u32,
}

static LIVE: Mutex<BTreeMap<usize, Entry>> = Mutex::new(BTreeMap::new());

fn live() -> std::sync::MutexGuard<'static, BTreeMap<usize, Entry>> {
    // A panic while the lock is held cannot leave an entry half-changed: every critical
    // section is a single map operation.
    LIVE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Enter a new handle and give its pointer out.
pub(crate) fn register<T: Handle>(h: Box<T>) -> *mut T {
    let p = Box::into_raw(h);
    live().insert(
        p as usize,
        Entry {
            kind: T::KIND,
            uses: 0,
        },
    );
    p
}

fn not_live<T: Handle>(name: &str, p: usize, kind: Option<&str>) -> Fail {
    Fail::new(
        XVMI_ERR_INVALID_HANDLE,
        match kind {
            Some(k) => format!("`{name}` ({p:#x}) is a live {k} handle, not a {}", T::KIND),
            None => format!(
                "`{name}` ({p:#x}) is not a live {} handle: freed already, or never returned by \
                 this library",
                T::KIND
            ),
        },
    )
}

/// A handle in use by the current call; released when dropped.
pub(crate) struct Borrowed<'a, T> {
    r: &'a T,
    key: usize,
}

impl<T> std::ops::Deref for Borrowed<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.r
    }
}

impl<T> Drop for Borrowed<'_, T> {
    fn drop(&mut self) {
        if let Some(e) = live().get_mut(&self.key) {
            e.uses = e.uses.saturating_sub(1);
        }
    }
}

/// Look a handle argument up and hold a use on it for the rest of the call.
///
/// # Errors
/// [`XVMI_ERR_NULL_POINTER`](super::error::XVMI_ERR_NULL_POINTER) for NULL,
/// [`XVMI_ERR_INVALID_HANDLE`] for a pointer that is not a live handle of this type.
pub(crate) fn arg_handle<'a, T: Handle>(p: *const T, name: &str) -> Result<Borrowed<'a, T>, Fail> {
    check_ptr(p, name)?;
    let key = p as usize;
    {
        let mut map = live();
        match map.get_mut(&key) {
            Some(e) if e.kind == T::KIND => e.uses += 1,
            Some(e) => return Err(not_live::<T>(name, key, Some(e.kind))),
            None => return Err(not_live::<T>(name, key, None)),
        }
    }
    // SAFETY: the registry holds `key` with this type from `register` (a `Box<T>` leaked by
    // `Box::into_raw`) until `unregister` removes it, which it refuses while `uses` > 0; this
    // borrow holds one use until it is dropped, so the box stays allocated for `'a`. Shared
    // references only: handle types use atomics or their own guards for mutation.
    let r = unsafe { &*p };
    Ok(Borrowed { r, key })
}

/// Remove a handle that is about to be freed and hand back its box (`None` for NULL).
///
/// # Errors
/// [`XVMI_ERR_INVALID_HANDLE`] for a pointer that is not a live handle of this type (a double
/// free) or one a call is still using (freed from a walk's callback).
pub(crate) fn unregister<T: Handle>(p: *mut T, name: &str) -> Result<Option<Box<T>>, Fail> {
    if p.is_null() {
        return Ok(None);
    }
    let key = p as usize;
    {
        let mut map = live();
        match map.get(&key) {
            Some(e) if e.kind != T::KIND => return Err(not_live::<T>(name, key, Some(e.kind))),
            None => return Err(not_live::<T>(name, key, None)),
            Some(e) if e.uses > 0 => {
                return Err(Fail::new(
                    XVMI_ERR_INVALID_HANDLE,
                    format!(
                        "`{name}` is in use by a call that has not returned (freed from a walk's \
                         or an event's callback?): it was not freed"
                    ),
                ))
            }
            Some(_) => {
                map.remove(&key);
            }
        }
    }
    // SAFETY: `p` came from `Box::into_raw` in `register` (it was in the registry with this
    // type) and was just removed, so no other call can reach it and it is freed only here.
    Ok(Some(unsafe { Box::from_raw(p) }))
}
