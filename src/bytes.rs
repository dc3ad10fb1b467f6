//! Bounds-checked little-endian reads from byte slices. Every parser in the crate reads through
//! these, so a truncated or hostile input yields `None`, never a panic.

/// `N` bytes at `off`, or `None` if they are not all inside `buf`.
#[inline]
pub fn array_at<const N: usize>(buf: &[u8], off: usize) -> Option<[u8; N]> {
    let end = off.checked_add(N)?;
    buf.get(off..end)?.try_into().ok()
}

/// Little-endian `u16` at `off`.
#[inline]
pub fn u16_at(buf: &[u8], off: usize) -> Option<u16> {
    array_at(buf, off).map(u16::from_le_bytes)
}

/// Little-endian `u32` at `off`.
#[inline]
pub fn u32_at(buf: &[u8], off: usize) -> Option<u32> {
    array_at(buf, off).map(u32::from_le_bytes)
}

/// Little-endian `i32` at `off`.
#[inline]
pub fn i32_at(buf: &[u8], off: usize) -> Option<i32> {
    array_at(buf, off).map(i32::from_le_bytes)
}

/// Little-endian `u64` at `off`.
#[inline]
pub fn u64_at(buf: &[u8], off: usize) -> Option<u64> {
    array_at(buf, off).map(u64::from_le_bytes)
}

/// `len` bytes at `off`.
#[inline]
pub fn slice_at(buf: &[u8], off: usize, len: usize) -> Option<&[u8]> {
    buf.get(off..off.checked_add(len)?)
}

/// The NUL-terminated string at the start of `bytes` (all of it if there is no NUL), lossily
/// decoded.
pub fn c_string(bytes: &[u8]) -> String {
    let end = memchr::memchr(0, bytes).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// Round `v` up to a multiple of `align` (a power of two), or `None` on overflow.
#[inline]
pub fn align_up(v: usize, align: usize) -> Option<usize> {
    Some(v.checked_add(align - 1)? & !(align - 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_bounds_checked() {
        let b = [1u8, 2, 3, 4, 5, 6, 7, 8, 9];
        assert_eq!(u32_at(&b, 0), Some(0x0403_0201));
        assert_eq!(u64_at(&b, 1), Some(0x0908_0706_0504_0302));
        assert_eq!(u64_at(&b, 2), None);
        assert_eq!(u16_at(&b, usize::MAX), None);
        assert_eq!(slice_at(&b, 8, 2), None);
        assert_eq!(c_string(b"abc\0def"), "abc");
        assert_eq!(c_string(b"abc"), "abc");
        assert_eq!(align_up(9, 8), Some(16));
        assert_eq!(align_up(usize::MAX, 8), None);
    }
}
