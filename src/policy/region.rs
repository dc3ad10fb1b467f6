//! Write protection of kernel memory by guest frame: kernel text and read-only data
//! (`sys_call_table` included), `modprobe_path`, `core_pattern`, or any ranges given. Every
//! page holding part of a protected range is made read/execute-only in the guard's view; a
//! write to a protected byte is a violation unless the [`WriterAllowList`] says it is the
//! kernel's own; a write elsewhere on such a page (another variable sharing it) is let
//! through by emulation, the protection staying in place.
//!
//! **Limit.** Xen reports where a write *starts*; a write that starts before a protected
//! range (on the same page) and runs into it is attributed to where it starts. Whole-page
//! ranges (text, read-only data, the IDT) are not affected.

use std::collections::HashMap;

use super::{Decision, Finding, Guest, Plan, Policy, Remediation, Writer, WriterAllowList};
use crate::addr::{Gfn, Gva, PAGE_SIZE};
use crate::alert::Attempt;
use crate::backend::MemAccess;
use crate::error::{Error, Result};
use crate::event::{Event, EventKind};

/// The most pages one policy write-protects (a 6.x kernel's text and read-only data are
/// ~8,000; 2^20 pages is 4 GiB).
pub const MAX_PAGES: u64 = 1 << 20;

/// One protected range of kernel virtual addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProtectedRange {
    /// What a write to it is reported as (`"kernel_text_write"`).
    pub what: String,
    /// What it is (`"kernel_text"`, `"modprobe_path"`), the alert's `target`.
    pub target: String,
    /// First byte.
    pub start: Gva,
    /// One past the last byte.
    pub end: Gva,
}

/// How a [`WriteProtectPolicy`] finds its ranges when it is planned.
#[derive(Clone, Debug)]
enum Ranges {
    /// `_text.._etext` (its first `text_pages` pages when limited) and, with `rodata`,
    /// `__start_rodata..__end_rodata`.
    KernelText {
        text_pages: Option<u64>,
        rodata: bool,
    },
    /// A kernel variable of at most `len` bytes (less when the next symbol starts sooner).
    Variable { symbol: &'static str, len: u64 },
    /// Given.
    Fixed(Vec<ProtectedRange>),
}

/// Where a protected byte range lies on one frame.
#[derive(Clone, Debug)]
struct OnPage {
    /// Byte offsets within the frame.
    from: u16,
    to: u16,
    /// Index into `ranges`.
    range: usize,
    /// The virtual address of the frame's first byte in that range's mapping.
    page_va: u64,
}

/// Write-protected kernel ranges (see the module documentation).
#[derive(Clone, Debug)]
pub struct WriteProtectPolicy {
    name: String,
    spec: Ranges,
    allow: WriterAllowList,
    remediation: Remediation,
    severity: u8,
    ranges: Vec<ProtectedRange>,
    pages: HashMap<u64, Vec<OnPage>>,
}

impl WriteProtectPolicy {
    fn with(name: &str, spec: Ranges, allow: WriterAllowList, remediation: Remediation) -> Self {
        WriteProtectPolicy {
            name: name.into(),
            spec,
            allow,
            remediation,
            severity: 10,
            ranges: Vec::new(),
            pages: HashMap::new(),
        }
    }

    /// `kernel-text`: kernel text (`_text` to `_etext`; only its first `text_pages` pages when
    /// given) and, with `rodata`, read-only data (`__start_rodata` to `__end_rodata`, which
    /// holds `sys_call_table`). The kernel's own patching is allowed
    /// ([`WriterAllowList::linux_text_patching`]).
    pub fn kernel_text(text_pages: Option<u64>, rodata: bool, remediation: Remediation) -> Self {
        Self::with(
            "kernel-text",
            Ranges::KernelText { text_pages, rodata },
            WriterAllowList::linux_text_patching(),
            remediation,
        )
    }

    /// `modprobe-path`: the usermode-helper path the kernel runs to load modules
    /// (`char modprobe_path[KMOD_PATH_LEN]`, 256 bytes). Nothing in the kernel writes it but
    /// the sysctl: writes are reported and refused unless allowed by `allow`.
    pub fn modprobe_path(allow: WriterAllowList, remediation: Remediation) -> Self {
        Self::with(
            "modprobe-path",
            Ranges::Variable {
                symbol: "modprobe_path",
                len: 256,
            },
            allow,
            remediation,
        )
    }

    /// `core-pattern`: the core-dump pattern (`char core_pattern[CORENAME_MAX_SIZE]`, 128
    /// bytes), which a `|program` value makes the kernel run as root.
    pub fn core_pattern(allow: WriterAllowList, remediation: Remediation) -> Self {
        Self::with(
            "core-pattern",
            Ranges::Variable {
                symbol: "core_pattern",
                len: 128,
            },
            allow,
            remediation,
        )
    }

    /// Any ranges, under the policy name `name`.
    pub fn ranges(
        name: &str,
        ranges: Vec<ProtectedRange>,
        allow: WriterAllowList,
        remediation: Remediation,
    ) -> Self {
        Self::with(name, Ranges::Fixed(ranges), allow, remediation)
    }

    /// The ranges protected (after [`Policy::plan`]).
    pub fn protected(&self) -> &[ProtectedRange] {
        &self.ranges
    }

    /// Frames protected (after [`Policy::plan`]).
    pub fn page_count(&self) -> usize {
        self.pages.len()
    }

    fn resolve(&self, guest: &Guest<'_>) -> Result<Vec<ProtectedRange>> {
        let l = guest.linux;
        let sym = |n: &str| l.require_symbol(n);
        let range = |what: &str, target: &str, start: Gva, end: Gva| ProtectedRange {
            what: what.into(),
            target: target.into(),
            start,
            end,
        };
        Ok(match &self.spec {
            Ranges::KernelText { text_pages, rodata } => {
                let start = l.info().text_va;
                let mut end = sym("_etext")?;
                if let Some(n) = text_pages {
                    let limit = start.0.saturating_add(n.saturating_mul(PAGE_SIZE));
                    end = Gva(end.0.min(limit));
                }
                let mut v = vec![range("kernel_text_write", "kernel_text", start, end)];
                if *rodata {
                    v.push(range(
                        "kernel_rodata_write",
                        "kernel_rodata",
                        sym("__start_rodata")?,
                        sym("__end_rodata")?,
                    ));
                }
                v
            }
            Ranges::Variable { symbol, len } => {
                let start = sym(symbol)?;
                let next = l
                    .symbols()
                    .next_above(start.0.wrapping_sub(l.slide()))
                    .map(|a| a.wrapping_add(l.slide()))
                    .filter(|&a| a > start.0)
                    .unwrap_or(u64::MAX);
                let end = Gva(start.0.saturating_add(*len).min(next));
                vec![range(&format!("{symbol}_write"), symbol, start, end)]
            }
            Ranges::Fixed(v) => v.clone(),
        })
    }
}

impl Policy for WriteProtectPolicy {
    fn name(&self) -> &str {
        &self.name
    }

    fn remediation(&self) -> &Remediation {
        &self.remediation
    }

    fn plan(&mut self, guest: &Guest<'_>) -> Result<Plan> {
        let ranges = self.resolve(guest)?;
        let space = guest.linux.info().kernel_space;
        let mut pages: HashMap<u64, Vec<OnPage>> = HashMap::new();
        let mut count = 0u64;
        for (i, r) in ranges.iter().enumerate() {
            let mut va = r.start.0 & !(PAGE_SIZE - 1);
            while va < r.end.0 {
                count += 1;
                if count > MAX_PAGES {
                    return Err(Error::Config {
                        what: format!("policy {:?}", self.name),
                        reason: format!("more than {MAX_PAGES} pages to protect"),
                    });
                }
                let gpa = guest.mem.translate_mapped(space, Gva(va))?;
                let from = r.start.0.max(va) - va;
                let to = r.end.0.min(va + PAGE_SIZE) - va;
                pages.entry(gpa.gfn().0).or_default().push(OnPage {
                    from: from as u16,
                    to: to as u16,
                    range: i,
                    page_va: va,
                });
                va += PAGE_SIZE;
            }
        }
        self.ranges = ranges;
        self.pages = pages;
        let mut write_protect: Vec<Gfn> = self.pages.keys().map(|&g| Gfn(g)).collect();
        write_protect.sort_unstable();
        Ok(Plan {
            monitors: Vec::new(),
            write_protect,
        })
    }

    fn decide(&mut self, guest: &Guest<'_>, event: &Event) -> Decision {
        let Some(w) = PageWrite::of(event) else {
            return Decision::NotMine;
        };
        let Some(on) = self.pages.get(&w.gfn).and_then(|v| {
            v.iter()
                .find(|o| (u64::from(o.from)..u64::from(o.to)).contains(&w.offset))
        }) else {
            return Decision::NotMine;
        };
        let writer = self.allow.judge(guest, &event.regs);
        if writer.allowed_by.is_some() {
            return Decision::Legitimate;
        }
        let r = &self.ranges[on.range];
        let va = on.page_va + w.offset;
        let l = guest.linux;
        let symbol = l
            .symbols()
            .symbolize(va.wrapping_sub(l.slide()))
            .map(|s| format!("{}+{:#x}", s.name, s.offset));
        w.violation(&r.what, &r.target, self.severity, va, symbol, event, writer)
    }
}

/// A write to guest memory: the event's frame and the offset in its page.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PageWrite {
    /// The frame written.
    pub gfn: u64,
    /// The offset in the page.
    pub offset: u64,
}

impl PageWrite {
    /// The write an event reports, or `None` for any other event (a read or an execution).
    pub fn of(event: &Event) -> Option<PageWrite> {
        match event.kind {
            EventKind::MemoryAccess {
                gfn,
                offset,
                access,
                ..
            } if access.contains(MemAccess::W) => Some(PageWrite {
                gfn: gfn.0,
                offset: offset & 0xfff,
            }),
            _ => None,
        }
    }

    /// The violation this write is, at `va` (named `symbol`), by the writer `writer` judged
    /// not legitimate: deniable, as every protected write is.
    #[allow(clippy::too_many_arguments)]
    pub fn violation(
        self,
        what: &str,
        target: &str,
        severity: u8,
        va: u64,
        symbol: Option<String>,
        event: &Event,
        writer: Writer,
    ) -> Decision {
        Decision::Violation(Finding {
            what: what.into(),
            severity,
            attempt: Attempt {
                target: Some(target.into()),
                address: Some((self.gfn << 12) | self.offset),
                virtual_address: Some(va),
                symbol,
                rip: event.regs.rip,
                rip_symbol: writer.rip_symbol,
                ..Attempt::default()
            },
            deniable: true,
        })
    }
}
