//! The alert sinks, read back by independent parsers: JSON lines against the schema of
//! `docs/alerts.md`, and syslog over UDP and TCP parsed as RFC 5424 (header grammar of §6,
//! RFC 6587 octet-counting frames on TCP) whose MSG is parsed as CEF by the CEF
//! specification's rules (header fields split at unescaped `|`, `\|` and `\\` unescaped;
//! extension `key=value` pairs split before each unescaped `=`'s key, `\=`, `\\`, `\n`, `\r`
//! unescaped). The alert carries hostile strings (a `comm` with `=`, `|`, `\` and a line
//! break) that must survive both encodings.

mod support;

use std::io::Read;
use std::net::{TcpListener, UdpSocket};
use std::time::Duration;

use support::siem::{parse_5424, parse_cef};

use xenvmi::alert::syslog::Syslog;
use xenvmi::alert::{Actor, Alert, AlertSink, Attempt, JsonLines, Response, Vm, SCHEMA_VERSION};

fn alert() -> Alert {
    Alert {
        // 2026-12-05T13:24:35.25Z (date -u -d @1796477075).
        time: 1_796_477_075.25,
        vm: Vm {
            name: Some("web|01".into()),
            uuid: Some("4a1b9c9e-0d61-4e0b-9a47-1d2f1a2b3c4d".into()),
            domid: Some(7),
        },
        vcpu: Some(1),
        actor: Actor::Process {
            pid: 812,
            comm: "ev=il|x\\y\nz".into(),
        },
        what: "cr4_smep_smap_clear".into(),
        policy: "cr4".into(),
        severity: 9,
        attempt: Attempt {
            target: Some("cr4".into()),
            old: Some(0x3706f0),
            new: Some(0x0706f0),
            rip: 0xffff_ffff_c041_c123,
            rip_symbol: Some("evil_init+0x23 [rootkit]".into()),
            ..Attempt::default()
        },
        response: Response::Denied,
        remediation: vec!["paused".into(), "captured_paused".into(), "resumed".into()],
        capture: Some("/var/lib/xenvmi/x=1.core".into()),
        detail: None,
    }
}

#[test]
fn json_lines_follow_the_schema() {
    let mut sink = JsonLines::new(Vec::new(), "buffer");
    sink.send(&alert()).unwrap();
    sink.send(&alert()).unwrap();
    let out = String::from_utf8(sink.into_inner()).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2);
    let j: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(j["schema"], SCHEMA_VERSION);
    assert_eq!(j["time"], 1_796_477_075.25);
    assert_eq!(j["vm"]["name"], "web|01");
    assert_eq!(j["vm"]["domid"], 7);
    assert_eq!(j["vcpu"], 1);
    assert_eq!(j["what"], "cr4_smep_smap_clear");
    assert_eq!(j["policy"], "cr4");
    assert_eq!(j["severity"], 9);
    assert_eq!(j["process"]["pid"], 812);
    assert_eq!(j["process"]["comm"], "ev=il|x\\y\nz");
    assert_eq!(j["old"], "0x3706f0");
    assert_eq!(j["new"], "0x706f0");
    assert_eq!(j["rip"], "0xffffffffc041c123");
    assert_eq!(j["rip_symbol"], "evil_init+0x23 [rootkit]");
    assert_eq!(j["action"], "denied");
    assert_eq!(j["remediation"][1], "captured_paused");
    assert_eq!(j["capture"], "/var/lib/xenvmi/x=1.core");
    // kernel-guard's greps: compact JSON.
    assert!(lines[0].contains("\"what\":\"cr4_smep_smap_clear\""));
}

fn check_message(m: &str) {
    let s = parse_5424(m);
    // Facility 4 (security), severity 2 (critical) for CEF severity 9: 4 * 8 + 2.
    assert_eq!(s.pri, 34);
    assert_eq!(s.timestamp, "2026-12-05T13:24:35.250000Z");
    assert_ne!(s.hostname, "");
    assert_eq!(s.app, "xenvmi");
    assert_eq!(s.procid, std::process::id().to_string());
    assert_eq!(s.msgid, "cr4_smep_smap_clear");
    let (h, e) = parse_cef(&s.msg);
    assert_eq!(h[0], "0");
    assert_eq!((h[1].as_str(), h[2].as_str()), ("xenvmi", "xenvmi"));
    assert_eq!(h[3], env!("CARGO_PKG_VERSION"));
    assert_eq!(h[4], "cr4_smep_smap_clear");
    assert_eq!(h[6], "9");
    let want = [
        ("rt", "1796477075250"),
        ("act", "denied"),
        ("cs1Label", "policy"),
        ("cs1", "cr4"),
        ("dvchost", "web|01"),
        ("deviceExternalId", "4a1b9c9e-0d61-4e0b-9a47-1d2f1a2b3c4d"),
        ("cn1Label", "domid"),
        ("cn1", "7"),
        ("cn2Label", "vcpu"),
        ("cn2", "1"),
        ("spid", "812"),
        ("sproc", "ev=il|x\\y\nz"),
        ("cat", "cr4"),
        ("cs2Label", "old"),
        ("cs2", "0x3706f0"),
        ("cs3Label", "new"),
        ("cs3", "0x706f0"),
        ("flexString1Label", "rip"),
        ("flexString1", "0xffffffffc041c123 evil_init+0x23 [rootkit]"),
        ("cs6Label", "schema"),
        ("cs6", "1"),
        ("outcome", "paused,captured_paused,resumed"),
        ("filePath", "/var/lib/xenvmi/x=1.core"),
    ];
    for (k, v) in want {
        assert_eq!(e.get(k).map(String::as_str), Some(v), "{k} in {e:?}");
    }
    assert!(e["msg"].contains("cr4 0x3706f0 -> 0x706f0"), "{}", e["msg"]);
}

#[test]
fn syslog_over_udp_is_rfc5424_with_a_cef_payload() {
    let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
    rx.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let target = format!("udp://{}", rx.local_addr().unwrap());
    let mut sink = Syslog::connect(&target).unwrap();
    sink.send(&alert()).unwrap();
    let mut buf = vec![0u8; 65536];
    let n = rx.recv(&mut buf).unwrap();
    check_message(std::str::from_utf8(&buf[..n]).unwrap());
}

#[test]
fn syslog_over_tcp_uses_octet_counting_frames() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = format!("tcp://{}", l.local_addr().unwrap());
    let reader = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut all = Vec::new();
        s.read_to_end(&mut all).unwrap();
        all
    });
    let mut sink = Syslog::connect(&target).unwrap();
    sink.send(&alert()).unwrap();
    sink.send(&alert()).unwrap();
    drop(sink);
    let all = reader.join().unwrap();
    // RFC 6587 §3.4.1: MSG-LEN SP SYSLOG-MSG, MSG-LEN in octets.
    let mut rest = &all[..];
    let mut frames = 0;
    while !rest.is_empty() {
        let sp = rest.iter().position(|&b| b == b' ').unwrap();
        let len: usize = std::str::from_utf8(&rest[..sp]).unwrap().parse().unwrap();
        assert!(!rest[..sp].starts_with(b"0"), "no leading zero");
        let msg = &rest[sp + 1..sp + 1 + len];
        check_message(std::str::from_utf8(msg).unwrap());
        rest = &rest[sp + 1 + len..];
        frames += 1;
    }
    assert_eq!(frames, 2);
}

/// An attestation's deviation as an alert (`Deviation::alert`): what deviated in words
/// (`detail`, CEF `reason`), the `attest` policy, reported (nothing is refused), the process,
/// and the remediation and capture the caller adds.
#[test]
fn a_deviation_alert_says_what_deviated() {
    use xenvmi::attest::{Deviation, DeviationKind, Subject};
    let d = Deviation {
        kind: DeviationKind::UnexpectedExecutable,
        subject: Subject::Process {
            pid: 231,
            ppid: 1,
            comm: "xv-gamma".into(),
            exe: Some("/bin/xv-gamma".into()),
        },
        field: "path",
        expected: None,
        seen: "/bin/xv-gamma".into(),
        vcpu: None,
        // 2026-12-05T13:24:35Z.
        time: std::time::UNIX_EPOCH + Duration::from_secs(1_796_477_075),
    };
    let vm = Vm {
        name: Some("xvguest".into()),
        uuid: None,
        domid: Some(3),
    };
    let mut a = d.alert(vm);
    a.remediation = vec!["captured_paused".into()];
    a.capture = Some("/tmp/gamma.elf".into());

    let j = a.to_json();
    assert_eq!(j["what"], "unexpected_executable");
    assert_eq!(j["policy"], "attest");
    assert_eq!(j["action"], "reported");
    assert_eq!(j["target"], "path");
    assert_eq!(j["process"]["pid"], 231);
    assert_eq!(j["process"]["comm"], "xv-gamma");
    assert_eq!(j["time"], 1_796_477_075.0);
    assert_eq!(j["detail"], "path /bin/xv-gamma: not in the manifest");
    assert_eq!(j["capture"], "/tmp/gamma.elf");
    assert!(j.get("old").is_none() && j.get("gpa").is_none());

    let s = parse_5424(&xenvmi::alert::syslog::format_message(&a, 4, "host"));
    assert_eq!(s.msgid, "unexpected_executable");
    let (h, e) = parse_cef(&s.msg);
    assert_eq!(h[4], "unexpected_executable");
    assert_eq!(
        h[6],
        DeviationKind::UnexpectedExecutable.severity().to_string()
    );
    for (k, v) in [
        ("act", "reported"),
        ("cs1", "attest"),
        ("dvchost", "xvguest"),
        ("cn1", "3"),
        ("spid", "231"),
        ("sproc", "xv-gamma"),
        ("cat", "path"),
        ("reason", "path /bin/xv-gamma: not in the manifest"),
        ("outcome", "captured_paused"),
        ("filePath", "/tmp/gamma.elf"),
    ] {
        assert_eq!(e.get(k).map(String::as_str), Some(v), "{k} in {e:?}");
    }
    assert!(e["msg"].starts_with("path /bin/xv-gamma: not in the manifest by xv-gamma (pid 231)"));
}
