//! What a policy does about a violation: refuse it or let it through (the [`Verdict`]), then
//! further [`Step`]s in order: pause the domain, capture its memory (paused or live), resume.

use crate::error::{Error, Result};

/// Refuse the attempt, or let it happen and report it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Refuse: DENY for a register or MSR write, emulation with the write discarded for a
    /// memory write. An attempt that cannot be refused (a descriptor-table load) is reported.
    Deny,
    /// Let it happen (emulated, the protection stays in place) and report.
    Allow,
}

/// How a capture holds the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CaptureMode {
    /// Paused around the capture ([`crate::capture`]: consistent, the pause measured).
    Paused,
    /// Read while the guest runs (its other vCPUs; the one that raised the event waits for
    /// the answer).
    Live,
}

/// A remediation step after the verdict, carried out before the event's vCPU resumes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Pause the whole domain. Without a later [`Step::Resume`] the guard stops monitoring
    /// and the domain stays paused until [`Guard::resume_domain`](super::Guard::resume_domain)
    /// or until the guard is dropped.
    Pause,
    /// Write the whole guest as a QEMU-ELF core into the guard's capture directory.
    Capture(CaptureMode),
    /// Resume a domain this remediation paused.
    Resume,
}

impl Step {
    /// The step as it is named in configuration and in alerts (`"pause"`, `"capture"`,
    /// `"capture-live"`, `"resume"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Pause => "pause",
            Step::Capture(CaptureMode::Paused) => "capture",
            Step::Capture(CaptureMode::Live) => "capture-live",
            Step::Resume => "resume",
        }
    }
}

/// A policy's response to a violation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Remediation {
    /// Refuse or allow.
    pub verdict: Verdict,
    /// Further steps, in order.
    pub steps: Vec<Step>,
}

impl Default for Remediation {
    /// Deny and report.
    fn default() -> Self {
        Remediation::deny()
    }
}

impl Remediation {
    /// Deny and report, nothing more.
    pub fn deny() -> Self {
        Remediation {
            verdict: Verdict::Deny,
            steps: Vec::new(),
        }
    }

    /// Allow and report, nothing more.
    pub fn allow() -> Self {
        Remediation {
            verdict: Verdict::Allow,
            steps: Vec::new(),
        }
    }

    /// Whether a capture is among the steps.
    pub fn captures(&self) -> bool {
        self.steps.iter().any(|s| matches!(s, Step::Capture(_)))
    }

    /// Parse `VERDICT[,STEP...]`: `deny` or `allow`, then any of `pause`, `capture`,
    /// `capture-live`, `resume` (`"deny,pause,capture,resume"`).
    ///
    /// # Errors
    /// [`Error::Config`] naming the text: an unknown word, no verdict first, a `resume`
    /// with no `pause` before it, or a step given twice.
    pub fn parse(text: &str) -> Result<Remediation> {
        let bad = |reason: String| Error::Config {
            what: format!("remediation {text:?}"),
            reason,
        };
        let mut words = text.split(',').map(str::trim);
        let verdict = match words.next() {
            Some("deny") => Verdict::Deny,
            Some("allow") => Verdict::Allow,
            w => {
                return Err(bad(format!(
                    "starts with {:?}; expected \"deny\" or \"allow\"",
                    w.unwrap_or("")
                )))
            }
        };
        let mut steps = Vec::new();
        for w in words {
            let step = match w {
                "pause" => Step::Pause,
                "capture" => Step::Capture(CaptureMode::Paused),
                "capture-live" => Step::Capture(CaptureMode::Live),
                "resume" => Step::Resume,
                w => {
                    return Err(bad(format!(
                        "unknown step {w:?} (pause, capture, capture-live, resume)"
                    )))
                }
            };
            let same = |s: &Step| std::mem::discriminant(s) == std::mem::discriminant(&step);
            if steps.iter().any(same) {
                return Err(bad(format!("{w:?} given twice")));
            }
            if step == Step::Resume && !steps.contains(&Step::Pause) {
                return Err(bad("\"resume\" without a \"pause\" before it".into()));
            }
            steps.push(step);
        }
        Ok(Remediation { verdict, steps })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_verdicts_and_steps() {
        assert_eq!(Remediation::parse("deny").unwrap(), Remediation::deny());
        assert_eq!(Remediation::parse("allow").unwrap(), Remediation::allow());
        let r = Remediation::parse("deny, pause,capture,resume").unwrap();
        assert_eq!(r.verdict, Verdict::Deny);
        assert_eq!(
            r.steps,
            [
                Step::Pause,
                Step::Capture(CaptureMode::Paused),
                Step::Resume
            ]
        );
        assert!(r.captures());
        let r = Remediation::parse("allow,capture-live").unwrap();
        assert_eq!(r.steps, [Step::Capture(CaptureMode::Live)]);
    }

    #[test]
    fn refuses_what_it_cannot_do() {
        for (text, says) in [
            ("", "expected \"deny\" or \"allow\""),
            ("capture", "expected \"deny\" or \"allow\""),
            ("deny,explode", "unknown step \"explode\""),
            ("deny,resume", "without a \"pause\""),
            ("deny,capture,capture-live", "given twice"),
        ] {
            let e = Remediation::parse(text).unwrap_err().to_string();
            assert!(e.contains(says), "{text:?}: {e}");
            assert!(e.contains(&format!("remediation {text:?}")), "{e}");
        }
    }
}
