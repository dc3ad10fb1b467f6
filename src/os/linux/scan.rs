//! Bounded searches over guest-physical memory.

use crate::addr::Gpa;
use crate::backend::PhysicalMemory;
use crate::progress::{Progress, Stage};

/// Window size for backends that cannot lend their memory.
const WINDOW: usize = 4 << 20;

/// Every occurrence of `needle` in backed physical memory, in address order, at most `max`.
/// `progress` hears of it as stage `stage` (bytes of backed memory searched).
pub(crate) fn find_physical<M: PhysicalMemory + ?Sized>(
    mem: &M,
    needle: &[u8],
    max: usize,
    progress: &mut dyn FnMut(Progress),
    stage: &'static str,
) -> Vec<Gpa> {
    let ranges = mem.physical_ranges();
    let total = ranges
        .iter()
        .fold(0u64, |t, r| t.saturating_add(r.end - r.start));
    let mut stage = Stage::new(Some(progress), stage, total);
    let mut hits = Vec::new();
    let finder = memchr::memmem::Finder::new(needle);
    let overlap = needle.len().saturating_sub(1);
    // One window buffer for every range (a hostile image can have hundreds of thousands of
    // small ones: a buffer per range made the cost grow with their number).
    let mut buf: Vec<u8> = Vec::new();
    for r in ranges {
        let len = r.end - r.start;
        if let Some(s) = usize::try_from(len)
            .ok()
            .and_then(|l| mem.physical_slice(Gpa(r.start), l))
        {
            for off in finder.find_iter(s) {
                hits.push(Gpa(r.start + off as u64));
                if hits.len() >= max {
                    return hits;
                }
            }
            stage.advance(len);
            continue;
        }
        // Windowed reads with overlap so matches across window edges are found once.
        let cap = usize::try_from(len)
            .unwrap_or(usize::MAX)
            .min(WINDOW + overlap);
        if buf.len() < cap {
            buf.resize(cap, 0);
        }
        let win = &mut buf[..cap];
        let mut pos = r.start;
        while pos < r.end {
            let n = ((r.end - pos) as usize).min(win.len());
            if mem.read_physical(Gpa(pos), &mut win[..n]).is_ok() {
                for off in finder.find_iter(&win[..n]) {
                    if off < WINDOW || n < win.len() {
                        hits.push(Gpa(pos + off as u64));
                        if hits.len() >= max {
                            return hits;
                        }
                    }
                }
            }
            stage.advance((n as u64).min(WINDOW as u64));
            pos = match pos.checked_add(WINDOW as u64) {
                Some(p) => p,
                None => break, // a range ending near 2^64
            };
        }
    }
    hits
}
