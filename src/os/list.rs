//! A bounded walk over a circular doubly linked list (Linux `list_head`, Windows
//! `LIST_ENTRY`: both start with the forward link).

use std::collections::HashSet;

use crate::addr::Gva;
use crate::backend::PhysicalMemory;
use crate::error::{Error, Result};
use crate::mem::{AddressSpace, GuestMemory};

/// A bounded walk over a circular `list_head` list, yielding node addresses (not the head).
pub(crate) struct ListWalk<'a, B> {
    mem: &'a GuestMemory<B>,
    space: AddressSpace,
    head: Gva,
    next: Option<Result<Gva>>,
    seen: HashSet<u64>,
    what: &'static str,
    limit: usize,
    done: bool,
    /// Where the followed link is within a node: 0 (`next`, `Flink`) or 8 (`prev`, `Blink`).
    link: u64,
}

impl<'a, B: PhysicalMemory> ListWalk<'a, B> {
    pub(crate) fn new(
        mem: &'a GuestMemory<B>,
        space: AddressSpace,
        head: Result<Gva>,
        what: &'static str,
        limit: usize,
    ) -> Self {
        let (head, next) = match head {
            Ok(h) => (h, Some(mem.read_va(space, h))),
            Err(e) => (Gva(0), Some(Err(e))),
        };
        ListWalk {
            mem,
            space,
            head,
            next,
            seen: HashSet::new(),
            what,
            limit,
            done: false,
            link: 0,
        }
    }

    /// Walk the list backwards, by the `prev` links (the second pointer of each node): from
    /// the last node to the first.
    pub(crate) fn backward(mut self) -> Self {
        if self.link == 0 && !self.done {
            self.link = 8;
            if !matches!(self.next, Some(Err(_))) {
                self.next = Some(
                    self.head
                        .checked_add(8)
                        .ok_or(Error::Overflow("list head prev link"))
                        .and_then(|a| self.mem.read_va(self.space, a)),
                );
            }
        }
        self
    }
}

impl<B: PhysicalMemory> Iterator for ListWalk<'_, B> {
    type Item = Result<Gva>;

    fn next(&mut self) -> Option<Result<Gva>> {
        if self.done {
            return None;
        }
        let node = match self.next.take()? {
            Ok(n) => n,
            Err(e) => {
                self.done = true;
                return Some(Err(e));
            }
        };
        if node == self.head {
            self.done = true;
            return None;
        }
        let abort = |reason: String| Error::WalkAborted {
            what: self.what,
            addr: node,
            reason,
        };
        if node.0 == 0 {
            self.done = true;
            return Some(Err(abort("NULL link".into())));
        }
        if self.seen.len() >= self.limit {
            self.done = true;
            return Some(Err(abort(format!("more than {} entries", self.limit))));
        }
        if !self.seen.insert(node.0) {
            self.done = true;
            return Some(Err(abort(
                "the list loops without returning to its head".into(),
            )));
        }
        self.next = Some(
            node.checked_add(self.link)
                .ok_or(Error::Overflow("list link address"))
                .and_then(|a| self.mem.read_va(self.space, a)),
        );
        Some(Ok(node))
    }
}
