//! The descriptor tables: a load of IDTR or GDTR after the guard started (LIDT/LGDT, seen by
//! the descriptor monitor) is reported, and writes to the tables themselves are refused.
//!
//! Xen reports a descriptor load before the instruction runs and cannot refuse it (no DENY
//! for descriptor access): the alert names the table and the base it had (`old`); the new
//! base is not in the event. What a rootkit does in practice, overwriting an IDT entry, is a
//! write to the table's frame, which is write-protected like kernel text: each vCPU's table
//! (`idtr_base` .. `+ idtr_limit`) as its registers give it when the guard starts, through
//! the kernel's page tables (Linux loads the read-only `cpu_entry_area` alias; the frame is
//! `idt_table`'s, so writes through any alias are caught).
//!
//! The GDT is protected only when asked (`gdt = true`): Linux rewrites the three TLS entries
//! (`GDT_ENTRY_TLS_MIN` = 12 .. 14, bytes 96..120) of the running CPU's GDT on every context
//! switch (`load_TLS`), so those bytes are left out, and the other writes on those pages still
//! cost an emulation each.

use super::{
    Decision, Finding, Guest, Plan, Policy, ProtectedRange, Remediation, WriteProtectPolicy,
    WriterAllowList,
};
use crate::addr::Gva;
use crate::alert::Attempt;
use crate::backend::Monitor;
use crate::error::{Error, Result};
use crate::event::{Event, EventKind};

/// Bytes of the GDT's TLS entries, which Linux rewrites on every context switch.
const GDT_TLS: std::ops::Range<u64> = 96..120;

/// IDT and GDT protection (see the module documentation).
#[derive(Clone, Debug)]
pub struct DescriptorTablePolicy {
    gdt: bool,
    remediation: Remediation,
    tables: Option<WriteProtectPolicy>,
}

impl DescriptorTablePolicy {
    /// `descriptor-tables`: IDT (and with `gdt`, the GDT but its TLS entries).
    pub fn new(gdt: bool, remediation: Remediation) -> Self {
        DescriptorTablePolicy {
            gdt,
            remediation,
            tables: None,
        }
    }

    /// Frames write-protected (after [`Policy::plan`]).
    pub fn page_count(&self) -> usize {
        self.tables
            .as_ref()
            .map_or(0, WriteProtectPolicy::page_count)
    }
}

fn table(what: &str, target: &str, start: u64, end: u64) -> ProtectedRange {
    ProtectedRange {
        what: what.into(),
        target: target.into(),
        start: Gva(start),
        end: Gva(end),
    }
}

impl Policy for DescriptorTablePolicy {
    fn name(&self) -> &str {
        "descriptor-tables"
    }

    fn remediation(&self) -> &Remediation {
        &self.remediation
    }

    fn plan(&mut self, guest: &Guest<'_>) -> Result<Plan> {
        let mut ranges: Vec<ProtectedRange> = Vec::new();
        for r in guest.baseline {
            let idt_end = r.idtr_base.saturating_add(u64::from(r.idtr_limit) + 1);
            if r.idtr_base != 0 && !ranges.iter().any(|x| x.start.0 == r.idtr_base) {
                ranges.push(table("idt_write", "idt", r.idtr_base, idt_end));
            }
            if self.gdt && r.gdtr_base != 0 {
                let end = r.gdtr_base.saturating_add(u64::from(r.gdtr_limit) + 1);
                let b = r.gdtr_base;
                if !ranges.iter().any(|x| x.start.0 == b) {
                    ranges.push(table("gdt_write", "gdt", b, end.min(b + GDT_TLS.start)));
                    if end > b + GDT_TLS.end {
                        ranges.push(table("gdt_write", "gdt", b + GDT_TLS.end, end));
                    }
                }
            }
        }
        if ranges.is_empty() {
            return Err(Error::Config {
                what: "policy \"descriptor-tables\"".into(),
                reason: "no vCPU reports an IDT base (idtr_base is 0 in every vCPU's registers)"
                    .into(),
            });
        }
        let mut tables = WriteProtectPolicy::ranges(
            "descriptor-tables",
            ranges,
            WriterAllowList::none(),
            self.remediation.clone(),
        );
        let mut plan = tables.plan(guest)?;
        plan.monitors.push(Monitor::DescriptorAccess);
        self.tables = Some(tables);
        Ok(plan)
    }

    fn decide(&mut self, guest: &Guest<'_>, event: &Event) -> Decision {
        match event.kind {
            EventKind::DescriptorAccess {
                descriptor,
                is_write: true,
                ..
            } if descriptor == 1 || (descriptor == 2 && self.gdt) => {
                let (name, old) = match (descriptor, guest.baseline.get(event.vcpu.0 as usize)) {
                    (1, r) => ("idt", r.map(|r| r.idtr_base)),
                    (_, r) => ("gdt", r.map(|r| r.gdtr_base)),
                };
                Decision::Violation(Finding {
                    what: format!("{name}_load"),
                    severity: 7,
                    attempt: Attempt {
                        target: Some(format!("{name}r")),
                        old,
                        rip: event.regs.rip,
                        ..Attempt::default()
                    },
                    deniable: false,
                })
            }
            EventKind::DescriptorAccess { .. } => Decision::Legitimate,
            _ => match &mut self.tables {
                Some(t) => t.decide(guest, event),
                None => Decision::NotMine,
            },
        }
    }
}
