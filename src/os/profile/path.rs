//! Dotted field paths (`Pcb.DirectoryTableBase`, `tasks.prev`) through a profile's
//! structures, members of anonymous unions and structures included: the one resolver of the
//! ISF and PDB readers.
//!
//! Each part of the path is looked up in the aggregate the previous part's type names: first
//! among its own members, then, depth first, inside its anonymous members (at most
//! [`MAX_ANON_DEPTH`] levels, at most [`MAX_FIELD_VISITS`] members looked at for one part: a
//! profile is an input file and could nest or repeat anonymous members without end).

use super::Field;

/// Deepest nesting of anonymous members searched.
pub(crate) const MAX_ANON_DEPTH: usize = 8;
/// Most members one path part's search looks at.
pub(crate) const MAX_FIELD_VISITS: usize = 1 << 16;

/// What a profile reader gives the resolver.
pub(crate) trait Aggregates {
    /// A member as the reader holds it.
    type Member;
    /// The member called `name` declared in aggregate `ty` itself.
    fn direct(&self, ty: &str, name: &str) -> Option<(u64, &Self::Member)>;
    /// Every member of `ty` in order: its offset, and the aggregate it opens when it is an
    /// anonymous one (`None` for any other member).
    fn anonymous<'a>(&'a self, ty: &str) -> Vec<(u64, Option<&'a str>)>;
    /// The aggregate a member's type names, where the next part of a path is looked up.
    fn aggregate_of<'a>(&'a self, m: &'a Self::Member) -> Option<&'a str>;
    /// A member's size, when the reader knows it.
    fn size_of(&self, m: &Self::Member) -> Option<u64>;
}

/// The offset (from the start of `type_name`) and size of the field `path` names.
pub(crate) fn field<A: Aggregates>(a: &A, type_name: &str, path: &str) -> Option<Field> {
    let mut ty = type_name;
    let mut offset = 0u64;
    let mut last: Option<&A::Member> = None;
    for part in path.split('.') {
        if let Some(m) = last {
            ty = a.aggregate_of(m)?;
        }
        let mut budget = MAX_FIELD_VISITS;
        let (o, m) = find(a, ty, part, 0, &mut budget)?;
        offset = offset.checked_add(o)?;
        last = Some(m);
    }
    Some(Field {
        offset,
        size: last.and_then(|m| a.size_of(m)),
    })
}

fn find<'a, A: Aggregates>(
    a: &'a A,
    ty: &str,
    name: &str,
    depth: usize,
    budget: &mut usize,
) -> Option<(u64, &'a A::Member)> {
    if let Some(hit) = a.direct(ty, name) {
        return Some(hit);
    }
    if depth >= MAX_ANON_DEPTH {
        return None;
    }
    for (offset, inner) in a.anonymous(ty) {
        *budget = budget.checked_sub(1)?;
        if let Some(inner) = inner {
            if let Some((o, m)) = find(a, inner, name, depth + 1, budget) {
                return Some((offset.checked_add(o)?, m));
            }
        }
    }
    None
}
