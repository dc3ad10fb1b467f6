//! The kernel log (`dmesg`): the records of the printk ring buffer of 5.10 and later
//! (`kernel/printk/printk_ringbuffer.h`).
//!
//! The symbol `prb` points at the `struct printk_ringbuffer` in use (`printk_rb_static`, or
//! `printk_rb_dynamic` once `setup_log_buf` enlarged it). Its `desc_ring` has `1 <<
//! count_bits` descriptors (`descs`, each a `state_var` and a `text_blk_lpos`) and as many
//! `struct printk_info`s (`infos`: sequence number, time stamp, level, facility, caller,
//! text length); the records in use are those with ids `tail_id..=head_id`, each at index
//! `id % count`. A descriptor's `state_var` holds its id in the low 62 bits and its state in
//! the top two (reserved, committed, finalized, reusable); committed and finalized records
//! whose id matches are read, as Volatility3's `linux.kmsg` does. The text is a block of the
//! `text_data_ring` (`1 << size_bits` bytes at `data`): `begin` and `next` are logical
//! positions whose low `size_bits` bits are the index; a block that wraps starts again at
//! index 0; every block begins with its descriptor id (8 bytes), the text follows.
//!
//! The level is `printk_info.level`, the top three bits of the byte it shares with `flags`
//! (`u8 flags:5; u8 level:3;`, unchanged since 5.10).
//!
//! Bounded: `count_bits` at most [`MAX_COUNT_BITS`] and `size_bits` at most
//! [`MAX_SIZE_BITS`] (the kernel's own limits), at most [`MAX_LOG_RECORDS`] records and
//! [`MAX_LOG_BYTES`] bytes of text, the newest kept.

use super::Linux;
use crate::addr::Gva;
use crate::backend::PhysicalMemory;
use crate::error::{Error, Result};
use crate::mem::GuestMemory;

/// Most records read (the newest are kept).
pub const MAX_LOG_RECORDS: usize = 1 << 20;
/// Most bytes of text read in all (the newest records are kept).
pub const MAX_LOG_BYTES: usize = 32 << 20;
/// Largest `desc_ring.count_bits` accepted (the kernel's largest buffer, 2 GiB, has 2^26
/// descriptors).
pub const MAX_COUNT_BITS: u32 = 26;
/// Largest `text_data_ring.size_bits` accepted (`LOG_BUF_LEN_MAX` is 2^31 bytes).
pub const MAX_SIZE_BITS: u32 = 31;

/// Descriptor states (the top two bits of `state_var`).
const DESC_COMMITTED: u64 = 1;
const DESC_FINALIZED: u64 = 2;
const DESC_FLAGS_SHIFT: u32 = 62;
const DESC_ID_MASK: u64 = (1 << DESC_FLAGS_SHIFT) - 1;
/// `text_blk_lpos` of a record without text (`NO_LPOS` for both ends).
const NO_LPOS: u64 = 0x3;

/// Who logged a record (`printk_info.caller_id`, what `CONFIG_PRINTK_CALLER` prints).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Caller {
    /// A task, by thread id (`[T123]`).
    Task(u32),
    /// A CPU outside task context (`[C1]`).
    Cpu(u32),
}

impl std::fmt::Display for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Caller::Task(t) => write!(f, "T{t}"),
            Caller::Cpu(c) => write!(f, "C{c}"),
        }
    }
}

/// One record of the kernel log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRecord {
    /// Sequence number (consecutive unless records were lost or overwritten).
    pub seq: u64,
    /// Nanoseconds since boot (`local_clock`), as `dmesg` shows `[secs.micros]`.
    pub ts_nsec: u64,
    /// Level: 0 emergency ... 7 debug (`KERN_*`).
    pub level: u8,
    /// Syslog facility (0 kernel).
    pub facility: u8,
    /// Who logged it.
    pub caller: Caller,
    /// The text, without the trailing newline (invalid UTF-8 replaced).
    pub text: String,
}

/// The offsets the ring walk needs.
struct RingOffsets {
    desc_ring: u64,
    count_bits: u64,
    descs: u64,
    infos: u64,
    head_id: u64,
    tail_id: u64,
    data_ring: u64,
    size_bits: u64,
    data: u64,
    desc_size: u64,
    state_var: u64,
    lpos_begin: u64,
    lpos_next: u64,
    info_size: u64,
    seq: u64,
    ts_nsec: u64,
    text_len: u64,
    facility: u64,
    level: u64,
    caller_id: u64,
}

impl RingOffsets {
    fn resolve(l: &Linux) -> Result<RingOffsets> {
        let t = l.types();
        let size = |s: &str| {
            t.struct_size(s)
                .filter(|&n| n > 0)
                .ok_or_else(|| Error::MissingField {
                    type_name: s.into(),
                    field: String::new(),
                    source_name: t.source_name().into(),
                    hint: "; its size is needed to index its array".into(),
                })
        };
        let lpos = t.require("prb_desc", "text_blk_lpos")?;
        Ok(RingOffsets {
            desc_ring: t.require("printk_ringbuffer", "desc_ring")?,
            count_bits: t.require("prb_desc_ring", "count_bits")?,
            descs: t.require("prb_desc_ring", "descs")?,
            infos: t.require("prb_desc_ring", "infos")?,
            head_id: t.require("prb_desc_ring", "head_id")?,
            tail_id: t.require("prb_desc_ring", "tail_id")?,
            data_ring: t.require("printk_ringbuffer", "text_data_ring")?,
            size_bits: t.require("prb_data_ring", "size_bits")?,
            data: t.require("prb_data_ring", "data")?,
            desc_size: size("prb_desc")?,
            state_var: t.require("prb_desc", "state_var")?,
            lpos_begin: lpos + t.require("prb_data_blk_lpos", "begin")?,
            lpos_next: lpos + t.require("prb_data_blk_lpos", "next")?,
            info_size: size("printk_info")?,
            seq: t.require("printk_info", "seq")?,
            ts_nsec: t.require("printk_info", "ts_nsec")?,
            text_len: t.require("printk_info", "text_len")?,
            facility: t.require("printk_info", "facility")?,
            level: t.require("printk_info", "level")?,
            caller_id: t.require("printk_info", "caller_id")?,
        })
    }
}

fn add(base: Gva, off: u64, what: &'static str) -> Result<Gva> {
    base.checked_add(off).ok_or(Error::Overflow(what))
}

/// Where a record's text lies in the data ring: (index of the block, bytes of text at most),
/// or `None` for a record without text. `get_data` in `printk_ringbuffer.c`.
fn text_block(
    begin: u64,
    next: u64,
    size_bits: u32,
) -> std::result::Result<Option<(u64, u64)>, String> {
    if begin & 1 == 1 && next & 1 == 1 {
        return if begin == NO_LPOS && next == NO_LPOS {
            Ok(None)
        } else {
            Err(format!("data-less block {begin:#x}..{next:#x} (text lost)"))
        };
    }
    let size = 1u64 << size_bits;
    let wraps = |lpos: u64| lpos >> size_bits;
    let (start, len) = if wraps(begin) == wraps(next) && begin < next {
        (begin & (size - 1), next - begin)
    } else if wraps(begin.wrapping_add(size)) == wraps(next) {
        // The block wrapped: its data starts again at index 0.
        (0, next & (size - 1))
    } else {
        return Err(format!("block {begin:#x}..{next:#x} is not in the ring"));
    };
    if !begin.is_multiple_of(8) || !next.is_multiple_of(8) || len < 8 {
        return Err(format!(
            "block {begin:#x}..{next:#x} is misaligned or too short"
        ));
    }
    Ok(Some((start, len - 8)))
}

impl Linux {
    /// The kernel log, oldest record first (see the module docs).
    ///
    /// # Errors
    /// [`Error::MissingSymbol`] for `prb` (a kernel before 5.10 has no such ring); a field
    /// the kernel's types lack; memory errors for the ring's header;
    /// [`Error::Corrupt`] naming `count_bits` or `size_bits` when over the bounds. A record
    /// whose descriptor, information or text cannot be read is left out.
    pub fn kernel_log<B: PhysicalMemory>(&self, mem: &GuestMemory<B>) -> Result<Vec<LogRecord>> {
        let o = RingOffsets::resolve(self)?;
        let ks = self.info().kernel_space;
        let prb = mem.read_va(ks, self.require_symbol("prb")?)?;
        let ring = add(prb, o.desc_ring, "printk_ringbuffer.desc_ring")?;
        let data_ring = add(prb, o.data_ring, "printk_ringbuffer.text_data_ring")?;
        let count_bits = mem.read_u32(ks, add(ring, o.count_bits, "prb_desc_ring.count_bits")?)?;
        if count_bits > MAX_COUNT_BITS {
            return Err(Error::Corrupt {
                what: "prb_desc_ring.count_bits",
                addr: ring,
                reason: format!("{count_bits} is more than {MAX_COUNT_BITS}"),
            });
        }
        let size_bits =
            mem.read_u32(ks, add(data_ring, o.size_bits, "prb_data_ring.size_bits")?)?;
        if !(3..=MAX_SIZE_BITS).contains(&size_bits) {
            return Err(Error::Corrupt {
                what: "prb_data_ring.size_bits",
                addr: data_ring,
                reason: format!("{size_bits} is not in 3..={MAX_SIZE_BITS}"),
            });
        }
        let descs = mem.read_va(ks, add(ring, o.descs, "prb_desc_ring.descs")?)?;
        let infos = mem.read_va(ks, add(ring, o.infos, "prb_desc_ring.infos")?)?;
        let head = mem.read_u64(ks, add(ring, o.head_id, "prb_desc_ring.head_id")?)? & DESC_ID_MASK;
        let tail = mem.read_u64(ks, add(ring, o.tail_id, "prb_desc_ring.tail_id")?)? & DESC_ID_MASK;
        let data = mem.read_va(ks, add(data_ring, o.data, "prb_data_ring.data")?)?;
        let count = 1u64 << count_bits;
        // From the newest back to the oldest, at most one lap of the ring.
        let span = head.wrapping_sub(tail) & DESC_ID_MASK;
        let steps = span
            .saturating_add(1)
            .min(count)
            .min(MAX_LOG_RECORDS as u64);
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for k in 0..steps {
            let id = head.wrapping_sub(k) & DESC_ID_MASK;
            let index = id & (count - 1);
            let Ok(r) = self.log_record(mem, &o, descs, infos, data, index, id, size_bits) else {
                continue;
            };
            let Some(r) = r else { continue };
            bytes = bytes.saturating_add(r.text.len());
            if bytes > MAX_LOG_BYTES {
                break;
            }
            out.push(r);
        }
        out.reverse();
        Ok(out)
    }

    /// The record at `index` if its descriptor holds `id` committed or finalized.
    #[allow(clippy::too_many_arguments)]
    fn log_record<B: PhysicalMemory>(
        &self,
        mem: &GuestMemory<B>,
        o: &RingOffsets,
        descs: Gva,
        infos: Gva,
        data: Gva,
        index: u64,
        id: u64,
        size_bits: u32,
    ) -> Result<Option<LogRecord>> {
        let ks = self.info().kernel_space;
        let desc = add(
            descs,
            index
                .checked_mul(o.desc_size)
                .ok_or(Error::Overflow("prb_desc_ring.descs[]"))?,
            "prb_desc_ring.descs[]",
        )?;
        let sv = mem.read_u64(ks, add(desc, o.state_var, "prb_desc.state_var")?)?;
        let state = sv >> DESC_FLAGS_SHIFT;
        if sv & DESC_ID_MASK != id || !matches!(state, DESC_COMMITTED | DESC_FINALIZED) {
            return Ok(None);
        }
        let begin = mem.read_u64(ks, add(desc, o.lpos_begin, "prb_data_blk_lpos.begin")?)?;
        let next = mem.read_u64(ks, add(desc, o.lpos_next, "prb_data_blk_lpos.next")?)?;
        let info = add(
            infos,
            index
                .checked_mul(o.info_size)
                .ok_or(Error::Overflow("prb_desc_ring.infos[]"))?,
            "prb_desc_ring.infos[]",
        )?;
        let seq = mem.read_u64(ks, add(info, o.seq, "printk_info.seq")?)?;
        let ts_nsec = mem.read_u64(ks, add(info, o.ts_nsec, "printk_info.ts_nsec")?)?;
        let mut b = [0u8; 2];
        mem.read(ks, add(info, o.text_len, "printk_info.text_len")?, &mut b)?;
        let text_len = u64::from(u16::from_le_bytes(b));
        mem.read(
            ks,
            add(info, o.facility, "printk_info.facility")?,
            &mut b[..1],
        )?;
        let facility = b[0];
        mem.read(ks, add(info, o.level, "printk_info.level")?, &mut b[..1])?;
        let level = b[0] >> 5;
        let caller_id = mem.read_u32(ks, add(info, o.caller_id, "printk_info.caller_id")?)?;
        let caller = if caller_id & 0x8000_0000 != 0 {
            Caller::Cpu(caller_id & 0x7fff_ffff)
        } else {
            Caller::Task(caller_id)
        };
        let text = match text_block(begin, next, size_bits).map_err(|reason| Error::Corrupt {
            what: "prb_desc.text_blk_lpos",
            addr: desc,
            reason,
        })? {
            None => String::new(),
            Some((start, room)) => {
                let at = add(data, start + 8, "prb_data_ring.data[]")?;
                let n = text_len.min(room) as usize;
                String::from_utf8_lossy(&mem.read_bytes(ks, at, n)?).into_owned()
            }
        };
        Ok(Some(LogRecord {
            seq,
            ts_nsec,
            level,
            facility,
            caller,
            text,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_blocks_as_get_data_finds_them() {
        // A 4 KiB ring: a block inside one lap, one that wraps, one without text.
        assert_eq!(text_block(0x1010, 0x1050, 12), Ok(Some((0x10, 0x38))));
        assert_eq!(text_block(0x1ff0, 0x2030, 12), Ok(Some((0, 0x28))));
        assert_eq!(text_block(NO_LPOS, NO_LPOS, 12), Ok(None));
        assert!(text_block(0x1, 0x1, 12).is_err()); // FAILED_LPOS
        assert!(text_block(0x1000, 0x5000, 12).is_err()); // more than a lap
        assert!(text_block(0x1004, 0x1050, 12).is_err()); // misaligned
        assert!(text_block(0x1000, 0x1004, 12).is_err());
    }

    #[test]
    fn callers_are_shown_as_printk_caller_shows_them() {
        assert_eq!(Caller::Task(123).to_string(), "T123");
        assert_eq!(Caller::Cpu(1).to_string(), "C1");
    }
}
