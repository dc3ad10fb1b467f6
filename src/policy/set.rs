//! A set of policies, built from names and options (what a configuration file, a command
//! line or the C ABI gives) or from policy values.

use super::{
    ControlRegisterPolicy, DescriptorTablePolicy, HiddenModulePolicy, HiddenProcessPolicy,
    ModuleTextPolicy, MsrPolicy, Policy, Remediation, WriteProtectPolicy, WriterAllowList,
};
use crate::error::{Error, Result};
use crate::regs::Cr4;

/// The names [`PolicySet::add`] knows, in the order [`PolicySet::all`] adds them.
pub const POLICY_NAMES: &[&str] = &[
    "cr0-wp",
    "cr4",
    "msr",
    "descriptor-tables",
    "kernel-text",
    "module-text",
    "modprobe-path",
    "core-pattern",
    "hidden-processes",
    "hidden-modules",
];

/// Options of the policies made by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyOptions {
    /// The response and remediation.
    pub remediation: Remediation,
    /// `kernel-text`: protect only the first N pages of kernel text (`None`: all).
    pub text_pages: Option<u64>,
    /// `kernel-text`: read-only data too (`sys_call_table`); on by default.
    pub rodata: bool,
    /// `descriptor-tables`: the GDT too (off by default; see [`DescriptorTablePolicy`]).
    pub gdt: bool,
}

impl Default for PolicyOptions {
    fn default() -> Self {
        PolicyOptions {
            remediation: Remediation::deny(),
            text_pages: None,
            rodata: true,
            gdt: false,
        }
    }
}

/// Several policies that one [`Guard`](super::Guard) runs together; each keeps its own
/// remediation. Names are unique within a set.
#[derive(Default)]
pub struct PolicySet {
    policies: Vec<Box<dyn Policy>>,
}

impl std::fmt::Debug for PolicySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

impl PolicySet {
    /// An empty set.
    pub fn new() -> Self {
        PolicySet::default()
    }

    /// Every policy of [`POLICY_NAMES`] with the same options.
    ///
    /// # Errors
    /// As [`PolicySet::add`].
    pub fn all(opts: &PolicyOptions) -> Result<Self> {
        Self::from_names(POLICY_NAMES.iter().copied(), opts)
    }

    /// The named policies with the same options.
    ///
    /// # Errors
    /// As [`PolicySet::add`].
    pub fn from_names<'a>(
        names: impl IntoIterator<Item = &'a str>,
        opts: &PolicyOptions,
    ) -> Result<Self> {
        let mut set = PolicySet::new();
        for n in names {
            set.add(n, opts)?;
        }
        Ok(set)
    }

    /// A set from a one-line specification: policies separated by `;`, each `NAME` or
    /// `NAME=REMEDIATION` ([`Remediation::parse`]), e.g.
    /// `"cr4=deny,pause,capture,resume; msr; kernel-text=allow"`. Other options come from
    /// `opts` (whose remediation applies where none is given).
    ///
    /// # Errors
    /// [`Error::Config`] naming the entry: an unknown or repeated name, a bad remediation, or
    /// no policy at all.
    pub fn parse(spec: &str, opts: &PolicyOptions) -> Result<Self> {
        let mut set = PolicySet::new();
        for entry in spec.split(';').map(str::trim).filter(|e| !e.is_empty()) {
            let (name, remediation) = match entry.split_once('=') {
                Some((n, r)) => (n.trim(), Some(Remediation::parse(r.trim())?)),
                None => (entry, None),
            };
            let o = PolicyOptions {
                remediation: remediation.unwrap_or_else(|| opts.remediation.clone()),
                ..opts.clone()
            };
            set.add(name, &o)?;
        }
        if set.is_empty() {
            return Err(Error::Config {
                what: format!("policy specification {spec:?}"),
                reason: "names no policy".into(),
            });
        }
        Ok(set)
    }

    /// Add the policy called `name` (one of [`POLICY_NAMES`]).
    ///
    /// # Errors
    /// [`Error::Config`] naming the policy when the name is unknown or already in the set.
    pub fn add(&mut self, name: &str, opts: &PolicyOptions) -> Result<()> {
        let r = opts.remediation.clone();
        let p: Box<dyn Policy> = match name {
            "cr0-wp" => Box::new(ControlRegisterPolicy::cr0_wp(r)),
            "cr4" => Box::new(ControlRegisterPolicy::cr4(Cr4::empty(), r)),
            "msr" => Box::new(MsrPolicy::new(r)),
            "descriptor-tables" => Box::new(DescriptorTablePolicy::new(opts.gdt, r)),
            "kernel-text" => Box::new(WriteProtectPolicy::kernel_text(
                opts.text_pages,
                opts.rodata,
                r,
            )),
            "module-text" => Box::new(ModuleTextPolicy::new(r)),
            "modprobe-path" => Box::new(WriteProtectPolicy::modprobe_path(
                WriterAllowList::none(),
                r,
            )),
            "core-pattern" => {
                Box::new(WriteProtectPolicy::core_pattern(WriterAllowList::none(), r))
            }
            "hidden-processes" => Box::new(HiddenProcessPolicy::new(r)),
            "hidden-modules" => Box::new(HiddenModulePolicy::new(r)),
            _ => {
                return Err(Error::Config {
                    what: format!("policy {name:?}"),
                    reason: format!("unknown policy; known: {}", POLICY_NAMES.join(", ")),
                })
            }
        };
        self.push(p)
    }

    /// Add a policy value (one of this module's types, or your own).
    ///
    /// # Errors
    /// [`Error::Config`] when a policy of that name is already in the set.
    pub fn push(&mut self, policy: Box<dyn Policy>) -> Result<()> {
        if self.policies.iter().any(|p| p.name() == policy.name()) {
            return Err(Error::Config {
                what: format!("policy {:?}", policy.name()),
                reason: "given twice".into(),
            });
        }
        self.policies.push(policy);
        Ok(())
    }

    /// The policies' names, in order.
    pub fn names(&self) -> Vec<&str> {
        self.policies.iter().map(|p| p.name()).collect()
    }

    /// How many policies there are.
    pub fn len(&self) -> usize {
        self.policies.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }

    /// The policies.
    pub fn policies_mut(&mut self) -> &mut [Box<dyn Policy>] {
        &mut self.policies
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_build_policies_and_bad_names_are_refused() {
        let set = PolicySet::all(&PolicyOptions::default()).unwrap();
        assert_eq!(set.names(), POLICY_NAMES);
        let e = PolicySet::from_names(["cr4", "cr9"], &PolicyOptions::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("policy \"cr9\": unknown policy; known: cr0-wp"),
            "{e}"
        );
        let e = PolicySet::from_names(["msr", "msr"], &PolicyOptions::default())
            .unwrap_err()
            .to_string();
        assert_eq!(e, "policy \"msr\": given twice");
    }

    #[test]
    fn a_specification_gives_each_policy_its_remediation() {
        let mut set = PolicySet::parse(
            " cr4=deny,pause,capture,resume; msr ;kernel-text=allow;",
            &PolicyOptions::default(),
        )
        .unwrap();
        assert_eq!(set.names(), ["cr4", "msr", "kernel-text"]);
        let r: Vec<String> = set
            .policies_mut()
            .iter()
            .map(|p| format!("{:?}", p.remediation().verdict))
            .collect();
        assert_eq!(r, ["Deny", "Deny", "Allow"]);
        assert!(set.policies_mut()[0].remediation().captures());
        for (spec, says) in [
            ("", "names no policy"),
            (" ; ", "names no policy"),
            ("cr4=maybe", "remediation \"maybe\""),
            ("cr4;cr5", "policy \"cr5\": unknown policy"),
            ("cr4;cr4=allow", "policy \"cr4\": given twice"),
        ] {
            let e = PolicySet::parse(spec, &PolicyOptions::default())
                .unwrap_err()
                .to_string();
            assert!(e.contains(says), "{spec:?}: {e}");
        }
    }
}
