//! LiME captures written by the tests: each range is a 32-byte header (`"EMiL"` magic,
//! version 1, start, inclusive end, 8 reserved bytes) followed by its bytes, as LiME's
//! `lime.h` lays them out.
#![allow(dead_code)]

/// The header of one range of `len` bytes at guest-physical `start`.
pub fn header(start: u64, len: u64) -> [u8; 32] {
    let mut h = [0u8; 32];
    h[..4].copy_from_slice(&0x4C69_4D45u32.to_le_bytes());
    h[4..8].copy_from_slice(&1u32.to_le_bytes());
    h[8..16].copy_from_slice(&start.to_le_bytes());
    h[16..24].copy_from_slice(&(start + len - 1).to_le_bytes());
    h
}

/// A whole capture of `ranges` (guest-physical start, bytes), in memory.
pub fn image(ranges: &[(u64, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (start, bytes) in ranges {
        out.extend_from_slice(&header(*start, bytes.len() as u64));
        out.extend_from_slice(bytes);
    }
    out
}
