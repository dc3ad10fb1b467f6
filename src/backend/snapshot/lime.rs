//! LiME captures: a sequence of `{magic, version, s_addr, e_addr (inclusive), reserved}` headers
//! (32 bytes), each followed by `e_addr - s_addr + 1` bytes of memory.

use super::storage::Source;
use super::{Layout, Region};
use crate::error::{Error, Result};

/// `"EMiL"` read as a little-endian u32.
pub(super) const LIME_MAGIC: u32 = 0x4C69_4D45;
const HEADER: usize = 32;
/// Bound on ranges (real captures have a handful).
const MAX_RANGES: usize = 1 << 16;

pub(super) fn parse<S: Source + ?Sized>(b: &S, what: &str) -> Result<Layout> {
    let mut layout = Layout::default();
    let mut off = 0usize;
    while off < b.size() {
        let bad = |reason: String| {
            Error::malformed(
                "LiME image",
                what,
                format!("range header at file offset {off:#x}: {reason}"),
            )
        };
        if layout.regions.len() >= MAX_RANGES {
            return Err(bad(format!("more than {MAX_RANGES} ranges")));
        }
        let magic = b.u32_at(off).ok_or_else(|| bad("truncated".into()))?;
        if magic != LIME_MAGIC {
            return Err(bad(format!(
                "magic {magic:#x} is not LiME's {LIME_MAGIC:#x}"
            )));
        }
        let version = b.u32_at(off + 4).ok_or_else(|| bad("truncated".into()))?;
        if version != 1 {
            return Err(bad(format!("version {version} is not 1")));
        }
        let s = b.u64_at(off + 8).ok_or_else(|| bad("truncated".into()))?;
        let e = b.u64_at(off + 16).ok_or_else(|| bad("truncated".into()))?;
        if off + HEADER > b.size() {
            return Err(bad("truncated".into()));
        }
        if e < s {
            return Err(bad(format!("end {e:#x} is below start {s:#x}")));
        }
        let len = (e - s)
            .checked_add(1)
            .ok_or_else(|| bad("range covers all of memory".into()))?;
        let data = off + HEADER;
        if (b.size() - data) as u64 <= len.saturating_sub(1) {
            return Err(bad(format!(
                "range {s:#x}..={e:#x} needs {len:#x} bytes but only {:#x} remain (truncated?)",
                b.size() - data
            )));
        }
        layout.regions.push(Region {
            gpa: s,
            len,
            file_offset: data as u64,
        });
        off = data + len as usize;
    }
    Ok(layout)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(s: u64, data: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&LIME_MAGIC.to_le_bytes());
        v.extend_from_slice(&1u32.to_le_bytes());
        v.extend_from_slice(&s.to_le_bytes());
        v.extend_from_slice(&(s + data.len() as u64 - 1).to_le_bytes());
        v.extend_from_slice(&[0; 8]);
        v.extend_from_slice(data);
        v
    }

    #[test]
    fn parses_ranges_and_rejects_truncation() {
        let mut img = range(0x1000, &[1; 16]);
        img.extend(range(0x100000, &[2; 8]));
        let l = parse(&img, "t").unwrap();
        assert_eq!(l.regions.len(), 2);
        assert_eq!(
            l.regions[1],
            Region {
                gpa: 0x100000,
                len: 8,
                file_offset: 48 + 32
            }
        );
        img.truncate(img.len() - 1);
        assert!(parse(&img, "t")
            .unwrap_err()
            .to_string()
            .contains("truncated"));
    }
}
