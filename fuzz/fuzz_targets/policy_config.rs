//! Policy configuration text: a policy-set specification (`PolicySet::parse`), a remediation
//! (`Remediation::parse`) and a syslog target (`syslog::parse_target`, no network). None may
//! panic; what parses is used (names listed, remediations inspected).
#![no_main]

use libfuzzer_sys::fuzz_target;
use xenvmi::alert::syslog::parse_target;
use xenvmi::policy::{PolicyOptions, PolicySet, Remediation};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(mut set) = PolicySet::parse(&text, &PolicyOptions::default()) {
        assert!(!set.is_empty());
        for p in set.policies_mut() {
            let _ = p.remediation().captures();
        }
    }
    if let Ok(r) = Remediation::parse(&text) {
        assert!(r.steps.len() <= 4);
    }
    let _ = parse_target(&text);
});
