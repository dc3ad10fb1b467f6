//! The kernel's own symbol table, found and decoded in guest memory (`CONFIG_KALLSYMS`).
//!
//! `scripts/kallsyms` emits, into `.rodata`, a compressed name stream and the tables to expand
//! it. Every table starts 8-byte aligned. The pieces and how they are recognised:
//!
//! - `kallsyms_token_index`: 256 `u16` offsets into the token table, strictly increasing from 0.
//!   This is what the scan looks for; it is then confirmed against the token table.
//! - `kallsyms_token_table`: 256 NUL-terminated tokens, immediately before the index.
//! - `kallsyms_markers`: `u32` (or, in old kernels, `u64`) offsets of every 256th name, before
//!   the token table; 6.2–6.3 kernels put `kallsyms_seqs_of_names` (3 bytes per symbol) in
//!   between, which is searched for.
//! - `kallsyms_num_syms` and `kallsyms_names`: the count, then per symbol a length (one byte,
//!   or two as ULEB128 since 6.1) and that many token numbers. The first expanded character is
//!   the type letter.
//! - addresses: `kallsyms_offsets` + `kallsyms_relative_base` (base-relative, with or without
//!   absolute per-CPU symbols) either before `kallsyms_num_syms` (≤ 6.3) or after the token
//!   index (newer); or plain `kallsyms_addresses` (old kernels). Candidates are accepted only
//!   when the decoded addresses are sorted, as the kernel sorts them.
//!
//! All offsets here are relative to the scanned slice, which must start 8-byte aligned in the
//! guest (any page-aligned physical range does).

use super::{SymbolTable, SymbolTableBuilder, MAX_SYMBOLS};
use crate::bytes::{i32_at, u16_at, u32_at, u64_at};
use crate::error::{Error, Result};

/// How the addresses are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressEncoding {
    /// `kallsyms_offsets[i]` relative to `kallsyms_relative_base`, unsigned.
    Relative {
        /// `kallsyms_offsets` position.
        offsets: usize,
        /// `kallsyms_relative_base` value (a run-time address: it is relocated by KASLR).
        base: u64,
    },
    /// Positive offsets are absolute (per-CPU symbols); negative ones are
    /// `relative_base - 1 - offset` (`CONFIG_KALLSYMS_ABSOLUTE_PERCPU`, x86-64 SMP).
    AbsolutePercpu {
        /// `kallsyms_offsets` position.
        offsets: usize,
        /// `kallsyms_relative_base` value.
        base: u64,
    },
    /// `kallsyms_addresses[i]`, absolute `u64`.
    Absolute {
        /// `kallsyms_addresses` position.
        addresses: usize,
    },
}

/// Where the kallsyms tables are inside a scanned slice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KallsymsLayout {
    /// Number of symbols.
    pub num_syms: usize,
    /// Start of `kallsyms_names`.
    pub names: usize,
    /// Start of `kallsyms_markers`.
    pub markers: usize,
    /// Start of `kallsyms_token_table`.
    pub token_table: usize,
    /// Start of `kallsyms_token_index`.
    pub token_index: usize,
    /// Token offsets (copied from the index).
    pub token_offsets: Vec<u16>,
    /// Address encoding and position.
    pub addresses: AddressEncoding,
}

/// Bound on the search for `kallsyms_seqs_of_names` between markers and token table.
const MAX_SEQS_BYTES: usize = 3 * (1 << 21);
/// Bound on the verification work of one search (candidate checks beyond the cheap prefilter).
/// A real kernel needs at most ~1.5 * 10^6 steps (names, markers, address candidates and, for
/// 6.2-6.3 layouts, the seqs_of_names search); crafted memory full of near-misses stops here.
pub const MAX_SEARCH_WORK: usize = 1 << 23;

/// Work left for one search (or for several: a scan of many windows shares one).
pub(crate) struct Budget(usize);

impl Budget {
    /// The budget of one search: [`MAX_SEARCH_WORK`] steps.
    pub(crate) fn new() -> Budget {
        Budget(MAX_SEARCH_WORK)
    }

    /// Whether it is spent.
    pub(crate) fn is_spent(&self) -> bool {
        self.0 == 0
    }

    #[inline]
    fn spend(&mut self, n: usize) -> bool {
        if self.0 < n {
            self.0 = 0;
            false
        } else {
            self.0 -= n;
            true
        }
    }
}

fn align8(v: usize) -> usize {
    (v + 7) & !7
}

/// Check that `p` starts a token index with a matching token table before it; returns the
/// token table start.
fn check_token_index(img: &[u8], p: usize, b: &mut Budget) -> Option<(usize, Vec<u16>)> {
    if !b.spend(512) {
        return None;
    }
    let mut idx = Vec::with_capacity(256);
    let mut prev = None;
    for i in 0..256 {
        let v = u16_at(img, p + 2 * i)?;
        if let Some(pv) = prev {
            if v <= pv || v - pv > 128 {
                return None;
            }
        } else if v != 0 {
            return None;
        }
        prev = Some(v);
        idx.push(v);
    }
    // The table starts 8-aligned, its last token ends with a NUL, and zero padding (< 8 bytes)
    // separates it from the index. Try each aligned start that leaves room for the last token.
    let last = idx[255] as usize;
    let min_len = last + 2;
    let mut table_len = align8(min_len);
    while table_len <= align8(last + 130) {
        if let Some(start) = p.checked_sub(table_len) {
            let tail = img.get(start + last..p)?;
            if let Some(nul) = tail.iter().position(|&b| b == 0) {
                let tok_end = start + last + nul + 1;
                if nul > 0
                    && p - tok_end < 8
                    && img[tok_end..p].iter().all(|&b| b == 0)
                    && tokens_ok(img, start, &idx)
                {
                    return Some((start, idx));
                }
            }
        }
        table_len += 8;
    }
    None
}

fn tokens_ok(img: &[u8], table: usize, idx: &[u16]) -> bool {
    for i in 0..256 {
        let s = table + idx[i] as usize;
        let Some(rest) = img.get(s..) else {
            return false;
        };
        let Some(len) = memchr::memchr(0, &rest[..rest.len().min(256)]) else {
            return false;
        };
        if len == 0 || !rest[..len].iter().all(|&b| (0x20..0x7f).contains(&b)) {
            return false;
        }
        if i < 255 && s + len + 1 != table + idx[i + 1] as usize {
            return false;
        }
    }
    true
}

/// Walk a marker array backwards from `end` (exclusive). Returns (start, markers).
fn markers_before(img: &[u8], end: usize, wide: bool, b: &mut Budget) -> Option<(usize, Vec<u64>)> {
    let w = if wide { 8 } else { 4 };
    let rd = |o: usize| {
        if wide {
            u64_at(img, o)
        } else {
            u32_at(img, o).map(u64::from)
        }
    };
    let mut pos = end;
    // Skip alignment padding (at most one zero u32 before an 8-aligned label).
    if !wide && rd(pos.checked_sub(4)?)? == 0 && rd(pos.checked_sub(8)?)? != 0 {
        pos -= 4;
    }
    let mut rev = Vec::new();
    let mut prev = u64::MAX;
    loop {
        pos = pos.checked_sub(w)?;
        if !b.spend(1) {
            return None;
        }
        let v = rd(pos)?;
        if v >= prev || rev.len() > (MAX_SYMBOLS >> 8) + 1 {
            return None;
        }
        rev.push(v);
        prev = v;
        if v == 0 {
            break;
        }
    }
    if rev.len() < 2 || !pos.is_multiple_of(8) {
        return None;
    }
    rev.reverse();
    Some((pos, rev))
}

/// Length prefix of one name entry: (length, bytes used).
#[inline]
fn name_len(img: &[u8], off: usize) -> Option<(usize, usize)> {
    let b0 = *img.get(off)? as usize;
    if b0 & 0x80 != 0 {
        let b1 = *img.get(off + 1)? as usize;
        Some(((b0 & 0x7f) | (b1 << 7), 2))
    } else {
        Some((b0, 1))
    }
}

/// Check a names-stream candidate: walking `n` entries from `start` must hit every marker and
/// end just before `end` (padding < 8).
fn names_ok(
    img: &[u8],
    start: usize,
    n: usize,
    markers: &[u64],
    end: usize,
    b: &mut Budget,
) -> bool {
    let mut off = start;
    for i in 0..n {
        if !b.spend(1) {
            return false;
        }
        if i % 256 == 0 && markers.get(i / 256).map(|&m| m as usize) != Some(off - start) {
            return false;
        }
        let Some((len, used)) = name_len(img, off) else {
            return false;
        };
        if len == 0 {
            return false;
        }
        off += used + len;
        if off > end {
            return false;
        }
    }
    end - off < 8
}

/// Decode the address of symbol `i`.
fn address(img: &[u8], enc: AddressEncoding, i: usize) -> Option<u64> {
    Some(match enc {
        AddressEncoding::Relative { offsets, base } => {
            base.wrapping_add(u32_at(img, offsets + 4 * i)? as u64)
        }
        AddressEncoding::AbsolutePercpu { offsets, base } => {
            let o = i32_at(img, offsets + 4 * i)?;
            if o >= 0 {
                o as u64
            } else {
                base.wrapping_sub(1).wrapping_sub(o as i64 as u64)
            }
        }
        AddressEncoding::Absolute { addresses } => u64_at(img, addresses + 8 * i)?,
    })
}

/// Whether an encoding yields addresses sorted as the kernel sorts them and a plausible base.
fn addresses_ok(img: &[u8], enc: AddressEncoding, n: usize, b: &mut Budget) -> bool {
    if !b.spend(n) {
        return false;
    }
    if let AddressEncoding::Relative { base, .. } | AddressEncoding::AbsolutePercpu { base, .. } =
        enc
    {
        // x86-64 kernel image addresses live in the top 2 GiB.
        if base < 0xffff_ffff_8000_0000 {
            return false;
        }
    }
    let mut prev = 0u64;
    let mut kernel_seen = 0usize;
    for i in 0..n {
        let Some(a) = address(img, enc, i) else {
            return false;
        };
        if a < prev {
            return false;
        }
        if a >= 0xffff_8000_0000_0000 {
            kernel_seen += 1;
        }
        prev = a;
    }
    kernel_seen > n / 2
}

fn find_addresses(
    img: &[u8],
    num_syms_pos: usize,
    token_index: usize,
    n: usize,
    b: &mut Budget,
) -> Option<AddressEncoding> {
    let bytes4 = align8(n.checked_mul(4)?);
    let bytes8 = n.checked_mul(8)?;
    let mut cands = Vec::new();
    // (a) before kallsyms_num_syms: offsets, then relative_base.
    if let Some(rb) = num_syms_pos.checked_sub(8) {
        if let (Some(base), Some(offsets)) = (u64_at(img, rb), rb.checked_sub(bytes4)) {
            cands.push(AddressEncoding::AbsolutePercpu { offsets, base });
            cands.push(AddressEncoding::Relative { offsets, base });
        }
    }
    // (b) after the token index (512 bytes): offsets, then relative_base.
    let offsets = align8(token_index + 512);
    if let Some(base) = u64_at(img, offsets + bytes4) {
        cands.push(AddressEncoding::AbsolutePercpu { offsets, base });
        cands.push(AddressEncoding::Relative { offsets, base });
    }
    // (c) absolute addresses before kallsyms_num_syms.
    if let Some(addresses) = num_syms_pos.checked_sub(bytes8) {
        cands.push(AddressEncoding::Absolute { addresses });
    }
    cands.into_iter().find(|&enc| {
        // Absolute-percpu needs some negative offsets, or it is plain relative.
        if let AddressEncoding::AbsolutePercpu { offsets, .. } = enc {
            if !(0..n.min(4096)).any(|i| i32_at(img, offsets + 4 * i).is_some_and(|o| o < 0)) {
                return false;
            }
        }
        addresses_ok(img, enc, n, b)
    })
}

/// Try to build the full layout from a confirmed token index at `p`.
fn layout_at(
    img: &[u8],
    p: usize,
    table: usize,
    token_offsets: Vec<u16>,
    b: &mut Budget,
) -> Option<KallsymsLayout> {
    // Markers directly before the token table, or before kallsyms_seqs_of_names.
    let mut marker_cands = Vec::new();
    for wide in [false, true] {
        if let Some(m) = markers_before(img, table, wide, b) {
            marker_cands.push((m, wide));
        }
    }
    if marker_cands.is_empty() {
        let mut e = table;
        while table - e < MAX_SEQS_BYTES && e >= 8 {
            e -= 8;
            if b.0 == 0 {
                break;
            }
            if let Some((start, m)) = markers_before(img, e, false, b) {
                let k = m.len();
                let seq = table - e;
                // seqs_of_names is 3*n bytes, n in ((k-1)*256, k*256].
                if seq >= align8(3 * ((k - 1) * 256 + 1)) && seq <= align8(3 * k * 256) {
                    marker_cands.push(((start, m), false));
                    break;
                }
            }
        }
    }
    for ((markers_pos, markers), _) in marker_cands {
        let k = markers.len();
        let last = *markers.last()? as usize;
        // names_start <= markers_pos - last; the last block holds at most 256 names of at most
        // 2 + 0x3fff bytes, but real ones are short: search a bounded window.
        let hi = markers_pos.checked_sub(last)?;
        let lo = hi.saturating_sub(256 * 512);
        let mut cand = hi & !7;
        while cand >= lo.max(8) {
            let num_pos = cand - 8;
            if let Some(n) = u32_at(img, num_pos).map(|v| v as usize) {
                if n > 0
                    && n <= MAX_SYMBOLS
                    && n.div_ceil(256) == k
                    && names_ok(img, cand, n, &markers, markers_pos, b)
                {
                    let addresses = find_addresses(img, num_pos, p, n, b)?;
                    return Some(KallsymsLayout {
                        num_syms: n,
                        names: cand,
                        markers: markers_pos,
                        token_table: table,
                        token_index: p,
                        token_offsets,
                        addresses,
                    });
                }
            }
            if cand < 8 {
                break;
            }
            cand -= 8;
        }
    }
    None
}

/// Scan `img` for the kallsyms tables.
///
/// # Errors
/// [`Error::OsNotFound`] if no consistent set of tables is found.
pub fn find_in_image(img: &[u8]) -> Result<KallsymsLayout> {
    find_in_image_within(img, &mut Budget::new())
}

/// [`find_in_image`] spending from `budget`, which the caller may share between searches.
///
/// # Errors
/// As [`find_in_image`]; also when `budget` is spent.
pub(crate) fn find_in_image_within(img: &[u8], budget: &mut Budget) -> Result<KallsymsLayout> {
    let mut p = 0usize;
    // The index is 512 bytes: the last candidate starts exactly 512 bytes before the end.
    while p + 512 <= img.len() {
        // Cheap prefilter: idx[0] == 0, 2 <= idx[1] <= 129, idx[1] < idx[2] < idx[3].
        if let Some(v) = u64_at(img, p) {
            let a = v as u16;
            let b = (v >> 16) as u16;
            let c = (v >> 32) as u16;
            let d = (v >> 48) as u16;
            if a == 0 && (2..=129).contains(&b) && b < c && c < d && d - c <= 128 {
                if let Some((table, idx)) = check_token_index(img, p, budget) {
                    if let Some(l) = layout_at(img, p, table, idx, budget) {
                        return Ok(l);
                    }
                }
                if budget.0 == 0 {
                    return Err(Error::OsNotFound {
                        os: "Linux",
                        image: "the scanned memory".into(),
                        reason: format!(
                            "kallsyms search gave up after {MAX_SEARCH_WORK} verification steps (memory full of table look-alikes)"
                        ),
                    });
                }
            }
        }
        p += 8;
    }
    Err(Error::OsNotFound {
        os: "Linux",
        image: "the scanned memory".into(),
        reason: "no kallsyms tables (kallsyms_token_index/token_table/names) were found".into(),
    })
}

impl KallsymsLayout {
    /// Expand every name and address into a symbol table.
    ///
    /// # Errors
    /// [`Error::Malformed`] if the name stream or a token is truncated.
    pub fn decode(&self, img: &[u8], source: impl Into<String>) -> Result<SymbolTable> {
        let source = source.into();
        let bad = |r: &str| Error::malformed("kallsyms", source.clone(), r.to_owned());
        // Tokens as fixed 16-byte blocks: expanding a token is then one unconditional 16-byte
        // copy (tokens longer than 16 bytes take the slow path).
        let mut short = [[0u8; 16]; 256];
        let mut lens = [0u8; 256];
        let mut long: Vec<(usize, &[u8])> = Vec::new();
        for (i, &o) in self.token_offsets.iter().enumerate() {
            let s = self.token_table + o as usize;
            let t = img.get(s..).ok_or_else(|| bad("token outside image"))?;
            let e = memchr::memchr(0, &t[..t.len().min(256)])
                .ok_or_else(|| bad("unterminated token"))?;
            if e <= 16 {
                short[i][..e].copy_from_slice(&t[..e]);
                lens[i] = e as u8;
            } else {
                lens[i] = 0xff;
                long.push((i, &t[..e]));
            }
        }
        let mut b = SymbolTableBuilder::new(source.clone());
        b.reserve(self.num_syms, self.num_syms * 24);
        let mut off = self.names;
        const NAME_MAX: usize = 4096;
        let mut name = [0u8; NAME_MAX + 16];
        for i in 0..self.num_syms {
            let (len, used) = name_len(img, off).ok_or_else(|| bad("truncated name stream"))?;
            let data = img
                .get(off + used..off + used + len)
                .ok_or_else(|| bad("truncated name stream"))?;
            off += used + len;
            let mut pos = 0usize;
            for &t in data {
                let l = lens[t as usize];
                if l != 0xff {
                    name[pos..pos + 16].copy_from_slice(&short[t as usize]);
                    pos += l as usize;
                } else if let Some((_, tok)) = long.iter().find(|(j, _)| *j == t as usize) {
                    let end = (pos + tok.len()).min(NAME_MAX);
                    name[pos..end].copy_from_slice(&tok[..end - pos]);
                    pos = end;
                }
                if pos > NAME_MAX - 16 {
                    return Err(bad("symbol name longer than 4 KiB"));
                }
            }
            let name = &name[..pos];
            let Some((&kind, rest)) = name.split_first() else {
                continue;
            };
            let addr =
                address(img, self.addresses, i).ok_or_else(|| bad("truncated address table"))?;
            // Tokens were checked to be printable ASCII, so this is valid UTF-8.
            let n = std::str::from_utf8(rest).map_err(|_| bad("symbol name is not ASCII"))?;
            if !b.push(n, addr, kind) {
                break;
            }
        }
        Ok(b.build())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Build a 6.1-layout kallsyms blob for the given (type+name, address) list, sorted by
    /// address, with absolute-percpu offsets relative to `base`. Tokens are single bytes (token
    /// i = char i for printable i, otherwise "\x01"-free placeholders).
    pub(crate) fn build(syms: &[(&str, u64)], base: u64, lead: usize) -> Vec<u8> {
        let mut out = vec![0u8; lead];
        let pad = |v: &mut Vec<u8>| {
            while !v.len().is_multiple_of(8) {
                v.push(0)
            }
        };
        // offsets
        for &(_, a) in syms {
            let o: i32 = if a < 0x1_0000_0000 {
                a as i32
            } else {
                -((a - base) as i32) - 1
            };
            out.extend_from_slice(&o.to_le_bytes());
        }
        pad(&mut out);
        out.extend_from_slice(&base.to_le_bytes());
        out.extend_from_slice(&(syms.len() as u32).to_le_bytes());
        pad(&mut out);
        let names_start = out.len();
        let mut markers = Vec::new();
        for (i, (n, _)) in syms.iter().enumerate() {
            if i % 256 == 0 {
                markers.push((out.len() - names_start) as u32);
            }
            out.push(n.len() as u8);
            out.extend_from_slice(n.as_bytes());
        }
        pad(&mut out);
        for m in markers {
            out.extend_from_slice(&m.to_le_bytes());
        }
        pad(&mut out);
        let table = out.len();
        let mut idx = Vec::new();
        for i in 0..256u32 {
            idx.push((out.len() - table) as u16);
            let c = if (0x21..0x7f).contains(&i) {
                i as u8
            } else {
                b'#'
            };
            out.push(c);
            out.push(0);
        }
        pad(&mut out);
        for i in idx {
            out.extend_from_slice(&i.to_le_bytes());
        }
        out.extend_from_slice(&[0u8; 64]);
        out
    }

    #[test]
    fn finds_and_decodes_a_built_table() {
        let base = 0xffff_ffff_8660_0000;
        let mut names: Vec<(String, u64)> =
            vec![("Afixed_percpu_data".into(), 0), ("T_text".into(), base)];
        for i in 0..600u64 {
            names.push((format!("tfunc_{i:04}"), base + 0x10 * (i + 1)));
        }
        names.push(("Dinit_task".into(), base + 0x1a1aa40));
        let syms: Vec<(&str, u64)> = names.iter().map(|(n, a)| (n.as_str(), *a)).collect();
        let img = build(&syms, base, 4096);
        let l = find_in_image(&img).unwrap();
        assert_eq!(l.num_syms, syms.len());
        assert!(matches!(
            l.addresses,
            AddressEncoding::AbsolutePercpu { .. }
        ));
        let t = l.decode(&img, "test").unwrap();
        assert_eq!(t.get("_text"), Some(base));
        assert_eq!(t.get("init_task"), Some(base + 0x1a1aa40));
        assert_eq!(t.get("func_0599"), Some(base + 0x10 * 600));
        assert_eq!(t.get("fixed_percpu_data"), Some(0));
        assert_eq!(t.kind("init_task"), Some(b'D'));
        // The token index may end exactly at the end of the scanned memory.
        let tight = &img[..img.len() - 64];
        assert_eq!(find_in_image(tight).unwrap().num_syms, syms.len());
    }

    #[test]
    fn no_tables_is_an_error_and_truncation_never_panics() {
        assert!(find_in_image(&[0u8; 100_000]).is_err());
        let base = 0xffff_ffff_8100_0000;
        let img = build(&[("T_text", base), ("Tx", base + 16)], base, 0);
        for n in 0..img.len() {
            let _ = find_in_image(&img[..n]).map(|l| l.decode(&img[..n], "t"));
        }
    }
}
